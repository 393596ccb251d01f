"""The transport-independent rules of chatcore._http: origins, the redirect policy, body
caps, deadline arithmetic and credential-free causes (pure logic, no sockets)."""

from __future__ import annotations

import math

import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st

from chatcore._http import (
    AttemptClock,
    Origin,
    RedirectPolicy,
    TransportCause,
    cap_total,
    declared_length,
    detached_cause,
    dumps_body,
    is_event_stream,
    read_capped,
    read_truncated,
    too_large,
)
from chatcore.exceptions import ConfigurationError, RedirectError, ValidationError

KEY = "sk-http-test-0123456789"
BASE = "https://api.example.test/v1"


def policy(max_redirects: int = 2) -> RedirectPolicy:
    return RedirectPolicy(Origin.of(BASE), max_redirects)


@pytest.mark.parametrize(
    ("url", "origin"),
    [
        ("https://API.Example.test/v1", "https://api.example.test:443"),
        ("http://h/x", "http://h:80"),
        ("http://h:8080", "http://h:8080"),
        ("https://user:pw@h:8443/p?q=1#f", "https://h:8443"),
        ("http://[::1]:9/x", "http://[::1]:9"),
    ],
)
def test_origin_of(url: str, origin: str) -> None:
    assert str(Origin.of(url)) == origin


@pytest.mark.parametrize("url", ["ftp://h/x", "/relative", "http://", "http://h:99999/"])
def test_origin_of_refuses_what_is_not_an_http_url(url: str) -> None:
    with pytest.raises(ValueError):
        Origin.of(url)


@pytest.mark.parametrize("status", [307, 308])
@pytest.mark.parametrize("method", ["POST", "GET"])
def test_same_origin_method_keeping_redirects_are_followed(method: str, status: int) -> None:
    nxt = policy().follow(
        method=method, status=status, location="/v2/x?a=1", url=f"{BASE}/chat", hops=0
    )
    assert nxt == (method, "https://api.example.test/v2/x?a=1")


@pytest.mark.parametrize("status", [301, 302, 303])
def test_get_follows_301_to_303_and_post_does_not(status: int) -> None:
    assert policy().follow(method="get", status=status, location="/m", url=BASE, hops=0) == (
        "GET",
        "https://api.example.test/m",
    )
    with pytest.raises(RedirectError, match="into a GET"):
        policy().follow(method="POST", status=status, location="/m", url=BASE, hops=0)


@pytest.mark.parametrize("max_redirects", [0, 1, 3])
def test_the_hop_limit_is_exact(max_redirects: int) -> None:
    rule = policy(max_redirects)
    for hops in range(max_redirects):
        rule.follow(method="POST", status=307, location="/l", url=BASE, hops=hops)
    with pytest.raises(RedirectError, match=f"max_redirects={max_redirects}") as info:
        rule.follow(method="POST", status=307, location="/l", url=BASE, hops=max_redirects)
    assert f"{max_redirects + 1} HTTP request" in str(info.value)
    assert info.value.should_retry is False


@pytest.mark.parametrize("status", [300, 304, 305, 399])
def test_other_3xx_are_not_followed(status: int) -> None:
    with pytest.raises(RedirectError, match="follows only"):
        policy().follow(method="GET", status=status, location="/l", url=BASE, hops=0)


@pytest.mark.parametrize("location", [None, "", "ftp://api.example.test/x", "http://h:0x/"])
def test_missing_or_unusable_locations_are_refused(location: str | None) -> None:
    with pytest.raises(RedirectError) as info:
        policy().follow(method="POST", status=307, location=location, url=BASE, hops=0)
    assert info.value.location is None


_hosts = st.sampled_from(["api.example.test", "evil.test", "127.0.0.2", "API.EXAMPLE.TEST"])


@given(
    scheme=st.sampled_from(["http", "https"]),
    host=_hosts,
    port=st.one_of(st.none(), st.integers(1, 65535)),
    path=st.text("abc/?=&%", max_size=20),
)
def test_any_other_origin_is_refused_and_named_without_path_or_query(
    scheme: str, host: str, port: int | None, path: str
) -> None:
    netloc = host if port is None else f"{host}:{port}"
    location = f"{scheme}://{netloc}/{path}?key={KEY}"
    target = Origin.of(location)
    if target == Origin.of(BASE):
        assert policy().follow(method="POST", status=307, location=location, url=BASE, hops=0)
        return
    with pytest.raises(RedirectError) as info:
        policy().follow(
            method="POST", status=307, location=location, url=BASE, hops=0, secrets=[KEY]
        )
    assert info.value.location == str(target)
    assert KEY not in str(info.value) and "key=" not in str(info.value)


def test_check_target() -> None:
    policy().check_target("https://api.example.test:443/v1/x")
    for url in ("http://api.example.test/v1", "https://api.example.test:8443/", "mailto:x"):
        with pytest.raises(ConfigurationError):
            policy().check_target(url)


@pytest.mark.parametrize("limit", [1, 5, 10])
def test_read_capped_boundary(limit: int) -> None:
    assert read_capped([b"ab", b"c" * (limit - 2)] if limit >= 2 else [b"a"], limit) is not None
    assert read_capped([b"x" * limit], limit) == b"x" * limit
    assert read_capped([b"x" * limit, b"y"], limit) is None
    assert read_capped([], limit) == b""


def test_read_capped_stops_reading_at_the_cap() -> None:
    pulled: list[int] = []

    def chunks() -> object:
        for i in range(100):
            pulled.append(i)
            yield b"0123456789"

    assert read_capped(chunks(), 25) is None  # type: ignore[arg-type]
    assert pulled == [0, 1, 2]


@given(st.lists(st.binary(max_size=50), max_size=20), st.integers(0, 300))
def test_read_truncated_is_a_prefix(chunks: list[bytes], limit: int) -> None:
    whole = b"".join(chunks)
    assert read_truncated(chunks, limit) == whole[:limit]


def test_cap_total() -> None:
    over = too_large("it", 4, "max_response_bytes")
    assert list(cap_total([b"ab", b"cd"], 4, lambda: over)) == [b"ab", b"cd"]
    with pytest.raises(type(over)) as info:
        list(cap_total([b"ab", b"cde"], 4, lambda: over))
    assert info.value.limit == 4 and "max_response_bytes=4" in str(info.value)


@pytest.mark.parametrize(
    ("headers", "size"),
    [
        ({"content-length": "11"}, 11),
        ({"content-length": "0"}, 0),
        ({"content-length": "11", "content-encoding": "gzip"}, None),
        ({"content-length": "11", "content-encoding": "identity"}, 11),
        ({"content-length": "x"}, None),
        ({"content-length": "-1"}, None),
        ({}, None),
    ],
)
def test_declared_length(headers: dict[str, str], size: int | None) -> None:
    assert declared_length(headers) == size


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("text/event-stream", True),
        ("Text/Event-Stream; charset=utf-8", True),
        ("application/json", False),
        ("text/event-streams", False),
        ("", False),
        (None, False),
    ],
)
def test_is_event_stream(value: str | None, expected: bool) -> None:
    assert is_event_stream(value) is expected


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_dumps_body_refuses_nan_and_infinities(bad: float) -> None:
    with pytest.raises(ValidationError, match="not JSON"):
        dumps_body({"a": {"b": [1, bad]}})


def test_dumps_body_is_compact_utf8() -> None:
    assert dumps_body({"a": "é", "b": [1, 2.5]}) == '{"a":"é","b":[1,2.5]}'.encode()


def test_attempt_clock_takes_the_earliest_deadline() -> None:
    assert AttemptClock(100.0, 10.0).first_deadline == 110.0
    assert AttemptClock(100.0, 10.0, call_deadline=103.0).first_deadline == 103.0
    assert AttemptClock(100.0, 10.0, call_deadline=200.0).first_deadline == 110.0
    clock = AttemptClock(100.0, 10.0, call_deadline=105.0, chunk_timeout=2.0)
    assert clock.first_deadline == 102.0
    assert "chunk_timeout=2s" in str(clock.expired())
    assert "timeout_total" in AttemptClock(100.0, 10.0, 103.0).which()
    assert "timeout=10s" in AttemptClock(100.0, 10.0, 130.0).which()


def test_socket_timeouts_are_cut_to_what_remains() -> None:
    clock = AttemptClock(100.0, 10.0, call_deadline=103.0)
    assert clock.socket_timeouts(5.0, 600.0, now=100.0) == (3.0, 3.0)
    assert clock.socket_timeouts(1.0, 2.0, now=100.0) == (1.0, 2.0)
    assert clock.socket_timeouts(5.0, 600.0, now=104.0) == (0.001, 0.001)


def test_detached_cause_drops_the_request_and_the_key() -> None:
    prepared = requests.Request(
        "POST", "http://h/x", headers={"Authorization": f"Bearer {KEY}"}
    ).prepare()
    original = requests.ConnectionError(f"failed for {KEY}", request=prepared)
    original.__cause__ = ValueError("inner")
    clean = detached_cause(original, [KEY])
    assert type(clean) is requests.ConnectionError
    assert clean.request is None and clean.response is None  # type: ignore[attr-defined]
    assert KEY not in str(clean) and "failed for" in str(clean)
    assert clean.__cause__ is None and clean.__context__ is None
    assert clean.__traceback__ is None


def test_detached_cause_falls_back_to_a_builtin_or_a_stand_in() -> None:
    import json

    try:
        json.loads("{")
    except ValueError as exc:
        clean = detached_cause(exc)
    assert type(clean) is ValueError  # JSONDecodeError needs more than a message

    class Needy(Exception):
        def __init__(self, a: str, b: str) -> None:
            super().__init__(a, b)

    class Holder(Exception):
        def __init__(self, message: str) -> None:
            super().__init__(message)
            self.held = object()

    assert type(detached_cause(Needy("x", "y"))) is Exception
    fallback = detached_cause(Holder("m"))
    assert isinstance(fallback, (TransportCause, Exception))
    assert not any(not isinstance(v, (str, type(None))) for v in vars(fallback).values())
