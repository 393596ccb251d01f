"""The retry policy: rules in isolation, and attempts counted on the server over HTTP."""

from __future__ import annotations

import email.utils
import math
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import chatcore
from chatcore import exceptions as ex
from chatcore.retry import RetryPolicy, with_retry
from chatcore.testing.server import Reply
from chatcore.testing.strategies import rate_limit_headers

from .conftest import TEST_KEY


def policy(**kw):
    kw.setdefault("sleep", lambda s: None)
    kw.setdefault("random", lambda: 0.0)
    return RetryPolicy(**kw)


@pytest.mark.parametrize("status", [408, 409, 429, 500, 502, 503, 504])
def test_retried_statuses_make_three_attempts(make_client, server, status):
    server.enqueue(*[Reply.error(status, "transient")] * 3)
    with pytest.raises(ex.APIStatusError) as info:
        make_client(retry=policy()).chat("wire:m", "hi")
    assert info.value.attempts == 3
    assert len(server.requests) == 3


@pytest.mark.parametrize(
    "reply",
    [
        Reply.error(400, "bad"),
        Reply.error(401, "key"),
        Reply.error(403, "no"),
        Reply.error(404, "where"),
        Reply.error(413, "big"),
        Reply.error(422, "odd"),
        Reply.error(429, "quota", type="insufficient_quota", code="insufficient_quota"),
        Reply.error(400, "too long", code="context_length_exceeded"),
    ],
)
def test_final_errors_are_never_retried(make_client, server, reply):
    server.enqueue(reply)
    with pytest.raises(ex.APIStatusError) as info:
        make_client(retry=policy()).chat("wire:m", "hi")
    assert info.value.attempts == 1
    assert len(server.requests) == 1


def test_x_should_retry_overrides_status(make_client, server):
    server.enqueue(Reply.error(400, "try again", headers={"x-should-retry": "true"}))
    assert make_client(retry=policy()).chat("wire:m", "hi").attempts == 2
    server.clear()
    server.enqueue(Reply.error(500, "do not", headers={"x-should-retry": "false"}))
    with pytest.raises(ex.ServerError):
        make_client(retry=policy()).chat("wire:m", "hi")
    assert len(server.requests) == 1


def test_validation_errors_are_not_retried_and_send_nothing(make_client, server):
    with pytest.raises(ex.ValidationError):
        make_client(retry=policy()).chat("wire:m", [])
    assert server.requests == []


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after-ms": "1234"}, 1.234),
        ({"retry-after": "7"}, 7.0),
        ({"retry-after": "http-date in 20 s"}, 20.0),
    ],
)
def test_server_delay_is_used_as_given(make_client, server, headers, expected):
    if headers.get("retry-after", "").startswith("http-date"):
        headers = {"retry-after": email.utils.formatdate(time.time() + 20, usegmt=True)}
    slept = []
    server.enqueue(Reply.error(429, "wait", headers=headers))
    resp = make_client(retry=policy(sleep=slept.append)).chat("wire:m", "hi")
    assert resp.attempts == 2
    assert slept == [pytest.approx(expected, abs=1.5)]


def test_hf_loading_estimated_time_is_the_delay(make_client, server):
    slept = []
    server.enqueue(Reply.hf_loading(estimated_time=4.5))
    make_client(retry=policy(sleep=slept.append)).chat("wire:m", "hi")
    assert slept == [4.5]


def test_too_long_demanded_delay_ends_retrying(make_client, server):
    server.enqueue(Reply.error(503, "later", headers={"retry-after": "121"}))
    with pytest.raises(ex.ServiceUnavailableError) as info:
        make_client(retry=policy()).chat("wire:m", "hi")
    assert info.value.retry_after == 121
    assert info.value.attempts == 1
    server.clear()
    server.enqueue(Reply.error(503, "later", headers={"retry-after": "121"}))
    assert make_client(retry=policy(max_retry_after=200)).chat("wire:m", "hi").attempts == 2


def test_backoff_formula():
    p = RetryPolicy(random=lambda: 1.0)
    assert [p.backoff(n) for n in range(6)] == [0.375, 0.75, 1.5, 3.0, 6.0, 6.0]
    p = RetryPolicy(random=lambda: 0.0)
    assert [p.backoff(n) for n in range(6)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]


def test_sleeps_follow_backoff_between_attempts(make_client, server):
    slept = []
    server.enqueue(*[Reply.error(500, "x")] * 3)
    with pytest.raises(ex.ServerError):
        make_client(retry=policy(sleep=slept.append, random=lambda: 0.5)).chat("wire:m", "hi")
    assert slept == [0.4375, 0.875]


def test_connection_errors_and_timeouts_are_retried(make_client, server):
    server.enqueue(Reply.reset(), Reply.hang(1.0))
    client = make_client(
        retry=policy(),
        providers={"wire": {"api_key": TEST_KEY, "base_url": server.base_url, "timeout": 0.2}},
    )
    assert client.chat("wire:m", "hi").attempts == 3


def test_total_deadline_cuts_the_attempt_and_stops_retrying(make_client, server):
    server.enqueue(Reply.hang(3.0), Reply.hang(3.0))
    client = make_client(retry=policy(timeout_total=0.4))
    started = time.monotonic()
    with pytest.raises(ex.APITimeoutError) as info:
        client.chat("wire:m", "hi")
    assert time.monotonic() - started < 2.5
    assert info.value.attempts >= 1


def test_max_retries_per_client_and_per_call(make_client, server):
    server.enqueue(*[Reply.error(500, "x")] * 10)
    client = make_client(retry=policy(), max_retries=4)
    with pytest.raises(ex.ServerError) as info:
        client.chat("wire:m", "hi")
    assert info.value.attempts == 5
    with pytest.raises(ex.ServerError) as info:
        client.chat("wire:m", "hi", max_retries=1)
    assert info.value.attempts == 2
    with pytest.raises(ex.ValidationError):
        client.chat("wire:m", "hi", max_retries=-1)


def test_retries_are_counted_and_logged_redacted(make_client, server):
    from loguru import logger

    records = []
    logger.enable("chatcore")
    sink = logger.add(lambda m: records.append(m.record), level="WARNING")
    try:
        server.enqueue(Reply.error(500, "Incorrect API key provided: sk-0123456789abcdefgh"))
        client = make_client(retry=policy())
        client.chat("wire:m", "hi")
    finally:
        logger.remove(sink)
        logger.disable("chatcore")
    assert client.retries == 1
    assert len(records) == 1
    assert "retrying wire:m after attempt 1" in records[0]["message"]
    assert "sk-0123456789abcdefgh" not in records[0]["message"]


def test_with_retry_decorator_reuses_the_policy():
    calls = []

    @with_retry(max_retries=3, sleep=lambda s: None)
    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ex.ServerError("boom", status_code=500)
        return "ok"

    assert flaky() == "ok"
    assert len(calls) == 3

    @with_retry(policy(max_retries=5))
    def final() -> None:
        calls.append(2)
        raise ex.AuthenticationError("no", status_code=401)

    with pytest.raises(ex.AuthenticationError):
        final()
    assert calls.count(2) == 1
    assert chatcore.with_retry is with_retry


def test_server_sees_the_retry_after_the_demanded_delay(make_client, server):
    """With the real sleep, the second attempt reaches the server no sooner than the
    ``retry-after-ms`` the first answer demanded (a lower bound, not a timing target)."""
    server.enqueue(Reply.error(429, "slow down", headers={"retry-after-ms": "150"}))
    client = make_client(retry=RetryPolicy(max_retries=1))
    assert client.chat("wire:m", "hi").attempts == 2
    first, second = server.requests
    assert second.time - first.time >= 0.15


# --- server-demanded delays that are not finite numbers >= 0 are ignored (issue 11) ---

_UNUSABLE_DELAYS = [
    {"retry-after": "inf"},
    {"retry-after": "nan"},
    {"retry-after": "-5"},
    {"retry-after": "1e400"},
    {"retry-after-ms": "inf"},
    {"retry-after-ms": "nan"},
    {"retry-after-ms": "-5"},
    {"retry-after": "Sat, 01 Jan 10000 00:00:00 GMT"},
]


@pytest.mark.parametrize("headers", _UNUSABLE_DELAYS)
def test_an_unusable_retry_after_is_not_on_the_error(make_client, server, headers):
    server.enqueue(Reply.error(429, "slow down", headers=headers))
    with pytest.raises(ex.RateLimitError) as info:
        make_client(retry=policy(max_retries=0)).chat("wire:m", "hi")
    assert info.value.retry_after is None


@pytest.mark.parametrize("headers", _UNUSABLE_DELAYS)
def test_an_unusable_retry_after_means_the_computed_backoff(make_client, server, headers):
    slept = []
    server.enqueue(Reply.error(429, "slow down", headers=headers))
    resp = make_client(retry=policy(sleep=slept.append)).chat("wire:m", "hi")
    assert resp.attempts == 2
    assert len(server.requests) == 2
    assert slept == [0.5]


def test_an_unusable_retry_after_ms_falls_back_to_retry_after(make_client, server):
    slept = []
    server.enqueue(
        Reply.error(429, "slow down", headers={"retry-after-ms": "inf", "retry-after": "3"})
    )
    assert make_client(retry=policy(sleep=slept.append)).chat("wire:m", "hi").attempts == 2
    assert slept == [3.0]


def test_a_retry_after_date_in_the_past_is_zero(make_client, server):
    past = email.utils.formatdate(time.time() - 3600, usegmt=True)
    server.enqueue(Reply.error(429, "slow down", headers={"retry-after": past}))
    with pytest.raises(ex.RateLimitError) as info:
        make_client(retry=policy(max_retries=0)).chat("wire:m", "hi")
    assert info.value.retry_after == 0.0


@pytest.mark.parametrize("estimated", ["NaN", "Infinity", "-Infinity", "-4", "1" + "0" * 400])
def test_an_unusable_estimated_time_is_ignored(make_client, server, estimated):
    body = '{"error": "Model m is currently loading", "estimated_time": ' + estimated + "}"
    server.enqueue(Reply.raw(body, 503))
    with pytest.raises(ex.ServiceUnavailableError) as info:
        make_client(retry=policy(max_retries=0)).chat("wire:m", "hi")
    assert info.value.retry_after is None
    slept = []
    server.enqueue(Reply.raw(body, 503))
    assert make_client(retry=policy(sleep=slept.append)).chat("wire:m", "hi").attempts == 2
    assert slept == [0.5]


@pytest.mark.parametrize("demanded", [float("inf"), float("-inf"), float("nan"), -1.0, 0.0])
def test_next_delay_ignores_a_demand_that_is_not_a_finite_positive_number(demanded):
    p = policy()
    assert p.next_delay(1, ex.RateLimitError("x", retry_after=demanded)) == p.backoff(1) == 1.0


def test_next_delay_honours_a_demand_up_to_max_retry_after():
    p = policy(max_retry_after=10)
    assert p.next_delay(0, ex.RateLimitError("x", retry_after=10)) == 10.0
    assert p.next_delay(0, ex.RateLimitError("x", retry_after=10.001)) is None
    assert p.next_delay(0, ex.RateLimitError("x", retry_after=1e-3)) == 1e-3


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "0"}, 0.0),
        ({"retry-after": "-0"}, 0.0),
        ({"retry-after": " 7 "}, 7.0),
        ({"retry-after": "1e308"}, 1e308),
        ({"retry-after-ms": "1500"}, 1.5),
        ({"retry-after-ms": "0"}, 0.0),
        ({"retry-after-ms": "nan", "retry-after": "2"}, 2.0),
        ({"retry-after-ms": "soon", "retry-after": "2"}, 2.0),
        ({"retry-after": "Thu, 01 Jan 1970 00:00:10 GMT"}, 5.0),
        ({"retry-after": "Thu, 01 Jan 1970 00:00:01 GMT"}, 0.0),
        ({"retry-after": "Fri, 31 Dec 9999 23:59:59 GMT"}, 253402300794.0),
        ({"retry-after": "Sun, 32 Nov 1994 08:49:37 GMT"}, None),
        ({"retry-after": "soon"}, None),
        ({"retry-after": ""}, None),
        ({}, None),
    ],
)
def test_parse_retry_after_edges(headers, expected):
    assert ex.parse_retry_after(headers, now=5.0) == expected


@given(
    headers=rate_limit_headers()
    | st.dictionaries(st.sampled_from(["retry-after", "retry-after-ms"]), st.text()),
    now=st.floats(-1e12, 1e12),
)
@settings(max_examples=500, deadline=None)
def test_parse_retry_after_is_none_or_finite_and_non_negative(headers, now):
    delay = ex.parse_retry_after(headers, now=now)
    assert delay is None or (isinstance(delay, float) and math.isfinite(delay) and delay >= 0)
    on_error = ex.error_from_response(429, b"", headers).retry_after
    assert on_error is None or (math.isfinite(on_error) and on_error >= 0)
