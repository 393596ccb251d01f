"""The requests transport against hostile servers on loopback (issue 11): credentials stay
on their origin, every HTTP request is counted, causes carry no credentials, deadlines
hold against dripping servers, answers are capped after decompression, and request
bodies are valid JSON. Both credential styles: OpenAI's ``Authorization: Bearer`` and
Azure's ``api-key``, through the bundled openai plugin."""

from __future__ import annotations

import importlib.metadata
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import urllib3
import urllib3.connection
import urllib3.connectionpool
import urllib3.response

import chatcore
from chatcore._plugins import PluginHost
from chatcore._transport import HttpTransport
from chatcore.exceptions import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    BadRequestError,
    ConfigurationError,
    RedirectError,
    ResponseTooLargeError,
    ValidationError,
)
from chatcore.testing.helpers import MetricsRecorder, capture_logs
from chatcore.testing.hostile import Hostile, HostileServer, loopback_available
from chatcore.testing.server import Reply, StandInServer

OPENAI_KEY = "sk-transport-test-0123456789"
AZURE_KEY = "azureTransportKEY0123456789abcdef"
KEYS = {"openai": OPENAI_KEY, "azure": AZURE_KEY}
MiB = 1 << 20


def _no_sleep(_seconds: float) -> None:
    return None


@pytest.fixture(scope="module")
def host() -> PluginHost:
    eps = [ep for ep in importlib.metadata.entry_points(group="chatcore") if ep.name == "openai"]
    assert eps, "chatcore-openai is not installed"
    return PluginHost(entry_points=eps, environ={})


@pytest.fixture
def make(host: PluginHost) -> Iterator[Any]:
    clients: list[chatcore.Client] = []

    def build(
        provider: str, server: Any, *, max_retries: int = 2, metrics: Any = None, **options: Any
    ) -> chatcore.Client:
        if provider == "openai":
            config = {"api_key": OPENAI_KEY, "base_url": server.base_url}
        else:
            config = {"api_key": AZURE_KEY, "endpoint": server.url, "api_version": "2024-10-21"}
        client = chatcore.Client(
            plugin_host=host,
            providers={provider: {**config, **options}},
            environ={},
            retry=chatcore.RetryPolicy(sleep=_no_sleep, max_retries=max_retries),
            metrics_sinks=[metrics] if metrics is not None else [],
        )
        clients.append(client)
        return client

    yield build
    for client in clients:
        client.close()


@pytest.fixture(params=["127.0.0.1", "127.0.0.2"], ids=["other-port", "other-host"])
def other_host(request: pytest.FixtureRequest) -> str:
    if not loopback_available(request.param):
        pytest.skip(f"{request.param} cannot be bound on this machine")
    return str(request.param)


PROVIDERS = pytest.mark.parametrize("provider", ["openai", "azure"])


def _call(client: chatcore.Client, provider: str, *, stream: bool, **options: Any) -> Any:
    """One chat, or one stream read to its end."""
    if stream:
        return list(client.stream(f"{provider}:gpt-4o-mini", "hello", **options))
    return client.chat(f"{provider}:gpt-4o-mini", "hello", **options)


# -- item 1: credentials never leave their origin ------------------------------------------


@PROVIDERS
@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_cross_origin_redirect_contacts_nothing_there(
    make: Any, provider: str, status: int, other_host: str
) -> None:
    key = KEYS[provider]
    with HostileServer(other_host) as other, HostileServer() as server:
        server.default = Hostile.redirect(f"{other.url}/v1/chat/completions?key={key}", status)
        client = make(provider, server)
        with pytest.raises(RedirectError) as info:
            client.chat(f"{provider}:gpt-4o-mini", "hello")
        assert other.requests == [], "the second origin was contacted"
        assert len(server.requests) == 1, "a refused redirect was retried"
        first = server.requests[0].headers
        assert key in (first.get("authorization", "") + first.get("api-key", ""))
    error = info.value
    assert error.location == other.url
    assert error.attempts == 1
    assert error.status_code == status
    for text in (str(error), repr(error), str(error.location)):
        assert key not in text and "/v1/chat/completions" not in text


@PROVIDERS
def test_same_origin_307_is_followed_with_method_body_and_key(make: Any, provider: str) -> None:
    with HostileServer() as server:
        server.enqueue(Hostile.redirect("/moved/chat/completions", 307))
        with capture_logs("DEBUG") as logs:
            text = make(provider, server).chat(f"{provider}:gpt-4o-mini", "hello").text
        first, second = server.requests
    # the hop is chatcore's, counted and logged (requests' own following is off)
    assert len([line for line in logs.lines if "following same-origin redirect" in line]) == 1
    assert text == "Hello from a hostile server"
    assert second.path == "/moved/chat/completions"
    assert (second.method, second.body) == (first.method, first.body) == ("POST", first.body)
    assert first.body
    key = KEYS[provider]
    assert key in (second.headers.get("authorization", "") + second.headers.get("api-key", ""))


@PROVIDERS
@pytest.mark.parametrize("status", [301, 302, 303])
def test_method_changing_redirect_of_a_post_is_refused(
    make: Any, provider: str, status: int
) -> None:
    with HostileServer() as server:
        server.enqueue(Hostile.redirect("/v1/chat/completions", status))
        with pytest.raises(RedirectError, match="into a GET"):
            make(provider, server).chat(f"{provider}:gpt-4o-mini", "hello")
        assert len(server.requests) == 1


def test_absolute_url_to_another_origin_is_refused_before_sending() -> None:
    with HostileServer() as server, HostileServer() as other:
        transport = HttpTransport(
            provider="t", base_url=server.base_url, headers={"api-key": AZURE_KEY}
        )
        try:
            with pytest.raises(ConfigurationError, match="refusing to send credentials"):
                transport.request("GET", f"{other.url}/v1/models")
            assert transport.request("GET", f"{server.url}/v1/models").status_code == 200
        finally:
            transport.close()
        assert other.requests == []


# -- item 2: every HTTP request counts -----------------------------------------------------


@PROVIDERS
@pytest.mark.parametrize("max_redirects", [0, 1, 3])
def test_redirect_loop_stops_at_the_limit_and_counts_every_request(
    make: Any, provider: str, max_redirects: int
) -> None:
    metrics = MetricsRecorder()
    with HostileServer(default=Hostile.redirect("/loop", 308)) as server:
        client = make(provider, server, max_redirects=max_redirects, metrics=metrics)
        with pytest.raises(RedirectError) as info:
            client.chat(f"{provider}:gpt-4o-mini", "hello")
        seen = len(server.requests)
    assert seen == max_redirects + 1
    assert info.value.attempts == 1
    assert f"({seen} HTTP request" in str(info.value)
    assert [e.attempt for e in metrics.attempts] == [1]
    assert metrics.requests[0].attempts == 1


# -- item 4: the exception chain carries no credentials ------------------------------------


def _reachable(error: BaseException) -> Iterator[Any]:
    """Everything an error tracker could serialize: the chain and every attribute."""
    todo: list[tuple[Any, int]] = [(error, 0)]
    seen: set[int] = set()
    while todo:
        obj, depth = todo.pop()
        if id(obj) in seen or depth > 8:
            continue
        seen.add(id(obj))
        yield obj
        if isinstance(obj, BaseException):
            todo += [(obj.__cause__, depth + 1), (obj.__context__, depth + 1)]
            todo += [(a, depth + 1) for a in obj.args]
        if isinstance(obj, dict):
            todo += [(v, depth + 1) for v in obj.values()]
            todo += [(k, depth + 1) for k in obj]
        elif isinstance(obj, (list, tuple, set)):
            todo += [(v, depth + 1) for v in obj]
        elif hasattr(obj, "__dict__") and not isinstance(obj, type):
            todo += [(v, depth + 1) for v in vars(obj).values()]


_LOWER_LAYER = (
    urllib3.connectionpool.ConnectionPool,
    urllib3.response.BaseHTTPResponse,
    urllib3.connection.HTTPConnection,
    requests.Session,
)


def _faulty_server(fault: str) -> Any:
    server = StandInServer(flavor="openai")
    if fault == "refused":
        server.stop()  # bound, then closed: nothing listens on its port
        return server
    reply = {
        "reset": Reply.reset(),
        "timeout": Reply.hang(30),
        "mid-body": Reply.truncated('{"id": "chatcmpl-1", "choices": [', 4096),
    }[fault]
    server.start()
    for _ in range(3):
        server.enqueue(reply)
    return server


@PROVIDERS
@pytest.mark.parametrize("fault", ["refused", "reset", "timeout", "mid-body"])
def test_the_cause_chain_carries_no_credentials(make: Any, provider: str, fault: str) -> None:
    server = _faulty_server(fault)
    try:
        client = make(provider, server, max_retries=0, timeout=0.5)
        with pytest.raises(APIConnectionError) as info:
            client.chat(f"{provider}:gpt-4o-mini", "hello")
    finally:
        server.stop()
    error = info.value
    assert error.__cause__ is not None, "the cause was dropped instead of cleaned"
    # detached: the cause has no chain of its own (where requests keeps its objects)
    assert error.__cause__.__cause__ is None and error.__cause__.__context__ is None
    assert error.__context__ is None or error.__context__ is error.__cause__
    key = KEYS[provider]
    for obj in _reachable(error):
        assert not isinstance(obj, (requests.PreparedRequest, requests.Response)), obj
        assert not isinstance(obj, _LOWER_LAYER), obj
        if isinstance(obj, (str, bytes)):
            assert key not in str(obj)
    if fault == "timeout":
        assert isinstance(error, APITimeoutError)
    assert type(error.__cause__).__name__ != "TransportCause"  # same class, rebuilt


# -- item 8: deadlines hold against slow bodies --------------------------------------------


@pytest.mark.parametrize("head", [False, True], ids=["body", "head"])
@pytest.mark.parametrize("stream", [False, True], ids=["chat", "stream"])
@pytest.mark.parametrize(
    ("timeout", "chunk_timeout", "total", "named"),
    [
        (2, 2, 3, "timeout="),
        (10, 10, 3, "timeout_total"),
        (2, 10, None, "timeout=2s"),
        (10, 2, None, "chunk_timeout=2s"),
    ],
    ids=["issue", "timeout_total", "timeout", "chunk_timeout"],
)
def test_a_dripping_server_cannot_outlast_the_deadlines(
    make: Any,
    head: bool,
    stream: bool,
    timeout: float,
    chunk_timeout: float,
    total: float | None,
    named: str,
) -> None:
    if named == "chunk_timeout=2s" and not stream:
        pytest.skip("chunk_timeout bounds streams only")
    answer = Hostile.drip(interval=0.5, head=head, stream=stream)
    with HostileServer(default=answer) as server:
        client = make("openai", server, max_retries=0, timeout=timeout, chunk_timeout=chunk_timeout)
        options = {"timeout_total": total} if total is not None else {}
        started = time.monotonic()
        with pytest.raises(APITimeoutError) as info:
            _call(client, "openai", stream=stream, **options)
        waited = time.monotonic() - started
    # 20 s and more before the fix; every deadline here is 2 or 3 s
    assert waited < 8, f"a 0.5 s drip held the call {waited:.1f} s"
    assert named in str(info.value)


def test_chunk_timeout_bounds_the_gap_between_events(make: Any) -> None:
    with HostileServer(default=Hostile.staged_stream(framing="close", wait=30)) as server:
        client = make("openai", server, max_retries=0, chunk_timeout=1.5)
        stream = client.stream("openai:gpt-4o-mini", "hello")
        assert next(iter(stream)).text == "first"
        started = time.monotonic()
        with pytest.raises(APIError) as info:
            list(stream)
        waited = time.monotonic() - started
    assert waited < 8, f"chunk_timeout=1.5 waited {waited:.1f} s for the next event"
    assert "chunk_timeout" in str(info.value) or "timed out" in str(info.value)


# -- item 9: memory is bounded -------------------------------------------------------------


@PROVIDERS
@pytest.mark.parametrize(
    ("answer", "stream", "limit"),
    [
        (Hostile.gzip_bomb(4 << 30), False, "response"),
        (Hostile.gzip_bomb(4 << 30, stream=True), True, "event"),
        (Hostile.huge(512 * MiB), False, "response"),
        (Hostile.huge(512 * MiB, framing="length"), False, "response"),
        (Hostile.huge(128 * MiB, stream=True), True, "event"),
    ],
    ids=["gzip-chat", "gzip-stream", "plain", "declared-length", "sse-line"],
)
def test_answers_are_capped_after_decompression(
    make: Any, provider: str, answer: Hostile, stream: bool, limit: str
) -> None:
    with HostileServer(default=answer) as server:
        client = make(provider, server, max_retries=2)
        with pytest.raises(ResponseTooLargeError) as info:
            _call(client, provider, stream=stream)
        assert server.completed == 0, "the client read the whole answer"
        assert len(server.requests) == 1, "a capped answer was retried"
    error = info.value
    assert error.limit == (32 * MiB if limit == "response" else 4 * MiB)
    assert (error.provider, error.model) == (provider, "gpt-4o-mini")
    assert f"max_{limit}_bytes" in str(error)


def test_the_stream_total_is_capped_too(make: Any) -> None:
    with HostileServer(default=Hostile.huge(64 * MiB, stream=True)) as server:
        client = make("openai", server, max_response_bytes=MiB, max_event_bytes=8 * MiB)
        with pytest.raises(ResponseTooLargeError) as info:
            list(client.stream("openai:gpt-4o-mini", "hello"))
    assert info.value.limit == MiB
    assert "max_response_bytes" in str(info.value)


def test_error_bodies_are_read_only_up_to_a_small_cap(make: Any) -> None:
    # spaces, not letters: redact() is quadratic on long runs of letters (left to _redact)
    body = b'{"error": {"message": "' + b" " * (64 * MiB) + b'"}}'
    answer = Hostile.answer(body, status=400, framing="close")
    with HostileServer(default=answer) as server:
        with pytest.raises(BadRequestError) as info:
            make("openai", server).chat("openai:gpt-4o-mini", "hello")
        assert server.completed == 0
    # the body was cut at 64 KiB: no longer JSON, so kept as (truncated) text
    assert isinstance(info.value.body, str) and len(info.value.body) <= 64 * 1024


# -- request bodies ------------------------------------------------------------------------


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_nan_and_infinities_are_refused_before_sending(value: float) -> None:
    with HostileServer() as server:
        transport = HttpTransport(provider="t", base_url=server.base_url)
        try:
            with pytest.raises(ValidationError, match="not JSON"):
                transport.request("POST", "/chat/completions", json_body={"x": [value]})
        finally:
            transport.close()
        assert server.requests == []
