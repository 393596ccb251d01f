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
from chatcore._limits import InMemoryRateLimiter
from chatcore._retry import RETRY_STATUSES
from chatcore.retry import RetryPolicy, with_retry
from chatcore.testing.server import Reply
from chatcore.testing.strategies import rate_limit_headers

from .conftest import TEST_KEY


def policy(**kw):
    kw.setdefault("sleep", lambda s: None)
    kw.setdefault("random", lambda: 0.0)
    return RetryPolicy(**kw)


class FakeTime:
    """A monotonic clock that only moves when something sleeps on it; ``slept`` lists the
    sleeps of the retry policy (``sleep``), ``limiter_slept`` those of the rate limiter."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []
        self.limiter_slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds

    def limiter_sleep(self, seconds: float) -> None:
        self.limiter_slept.append(seconds)
        self.now += seconds

    def limiter(self) -> InMemoryRateLimiter:
        """The default (adaptive) limiter on this clock: a hold it learns from a 429 is
        waited out in fake time, never for real."""
        return InMemoryRateLimiter(clock=self.clock, sleep=self.limiter_sleep)


@pytest.mark.parametrize("status", [408, 409, 429, 500, 502, 503, 504, 599])
def test_retried_statuses_make_three_attempts(make_client, server, status):
    t = FakeTime()
    server.enqueue(*[Reply.error(status, "transient")] * 3)
    client = make_client(retry=policy(sleep=t.sleep, clock=t.clock), rate_limiter=t.limiter())
    with pytest.raises(ex.APIStatusError) as info:
        client.chat("wire:m", "hi")
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
        Reply.error(407, "proxy"),
        Reply.error(410, "gone"),
        Reply.error(422, "odd"),
        Reply.error(499, "client closed"),
        Reply.error(429, "quota", type="insufficient_quota", code="insufficient_quota"),
        Reply.error(400, "too long", code="context_length_exceeded"),
        Reply.error(
            429,
            "quota",
            code="insufficient_quota",
            headers={"x-should-retry": "true"},
        ),
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
    """The policy sleeps what the server demanded; the hold the limiter learnt from the same
    429 runs on the same (fake) clock, so nothing waits for real."""
    if headers.get("retry-after", "").startswith("http-date"):
        headers = {"retry-after": email.utils.formatdate(time.time() + 20, usegmt=True)}
    t = FakeTime()
    server.enqueue(Reply.error(429, "wait", headers=headers))
    client = make_client(retry=policy(sleep=t.sleep, clock=t.clock), rate_limiter=t.limiter())
    resp = client.chat("wire:m", "hi")
    assert resp.attempts == 2
    assert t.slept == [pytest.approx(expected, abs=1.5)]
    assert sum(t.limiter_slept) < 1.5


def test_hf_loading_estimated_time_is_the_delay(make_client, server):
    slept = []
    server.enqueue(Reply.hf_loading(estimated_time=4.5))
    make_client(retry=policy(sleep=slept.append)).chat("wire:m", "hi")
    assert slept == [4.5]


def test_too_long_demanded_delay_ends_retrying(make_client, server):
    t = FakeTime()
    server.enqueue(Reply.error(503, "later", headers={"retry-after": "121"}))
    with pytest.raises(ex.ServiceUnavailableError) as info:
        make_client(retry=policy(), rate_limiter=t.limiter()).chat("wire:m", "hi")
    assert info.value.retry_after == 121
    assert info.value.attempts == 1
    server.clear()
    server.enqueue(Reply.error(503, "later", headers={"retry-after": "121"}))
    client = make_client(
        retry=policy(max_retry_after=200, sleep=t.sleep, clock=t.clock), rate_limiter=t.limiter()
    )
    assert client.chat("wire:m", "hi").attempts == 2
    assert t.slept == [121.0]


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
    server.enqueue(Reply.hang(30.0), Reply.hang(30.0))
    client = make_client(retry=policy(timeout_total=0.4))
    started = time.monotonic()
    with pytest.raises(ex.APITimeoutError) as info:
        client.chat("wire:m", "hi")
    # a correctness bound of the 0.4 s deadline against a 30 s hang, not a timing target
    assert time.monotonic() - started < 10
    assert info.value.attempts == 1
    assert len(server.requests) == 1


def test_a_total_deadline_with_room_left_still_retries(make_client, server):
    server.enqueue(Reply.error(500, "transient"), Reply.error(502, "transient"))
    t = FakeTime()
    client = make_client(retry=policy(timeout_total=60.0, sleep=t.sleep, clock=t.clock))
    assert client.chat("wire:m", "hi").attempts == 3
    assert len(server.requests) == 3
    assert t.slept == [0.5, 1.0]


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


# --------------------------------------------------------------------------------------
# The rules at their boundaries, without HTTP


def failing(*errors, result="ok"):
    """An attempt function raising ``errors`` in turn, then returning ``result``; it
    records the attempt numbers it was called with."""
    calls = []

    def attempt(number):
        calls.append(number)
        if len(calls) <= len(errors):
            raise errors[len(calls) - 1]
        return result

    attempt.calls = calls
    return attempt


def server_error(status=500, **kw):
    return ex.APIStatusError("boom", status_code=status, **kw)


def test_defaults_follow_the_openai_sdk():
    p = RetryPolicy()
    assert (p.max_retries, p.initial_delay, p.max_delay, p.jitter) == (2, 0.5, 8.0, 0.25)
    assert p.max_retry_after == 120.0
    assert p.timeout_total is None
    assert p.retry_statuses == RETRY_STATUSES
    assert frozenset({408, 409, 429, *range(500, 600)}) == RETRY_STATUSES


@pytest.mark.parametrize("value", [-1, 1.5, True, "2", None])
def test_max_retries_must_be_an_integer_of_zero_or_more(value):
    with pytest.raises(ex.ConfigurationError, match=r"max_retries=.*expected an integer >= 0"):
        RetryPolicy(max_retries=value)


def test_zero_retries_is_allowed():
    assert RetryPolicy(max_retries=0).max_retries == 0


@pytest.mark.parametrize("name", ["initial_delay", "max_delay", "max_retry_after", "timeout_total"])
@pytest.mark.parametrize("value", [0, 0.0, -0.5, True, "1"])
def test_seconds_must_be_positive(name, value):
    with pytest.raises(ex.ConfigurationError, match=rf"^{name}=.*expected seconds > 0$"):
        RetryPolicy(**{name: value})


@pytest.mark.parametrize("name", ["initial_delay", "max_delay", "max_retry_after", "timeout_total"])
def test_tiny_positive_seconds_are_allowed(name):
    assert getattr(RetryPolicy(**{name: 1e-9}), name) == 1e-9
    assert getattr(RetryPolicy(**{name: 3}), name) == 3


def test_timeout_total_may_be_none():
    assert RetryPolicy(timeout_total=None).timeout_total is None


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (ValueError("not chatcore"), False),
        (ex.ChatcoreError("not an API error"), False),
        (ex.APIConnectionError("refused"), True),
        (ex.APITimeoutError("slow"), True),
        (ex.ResponseDecodeError("garbled"), False),
        (ex.StreamError("broken"), False),
        (server_error(500), True),
        (server_error(599), True),
        (server_error(600), False),
        (server_error(499), False),
        (server_error(408), True),
        (server_error(409), True),
        (server_error(429), True),
        (server_error(400), False),
        (server_error(400, should_retry=True), True),
        (server_error(500, should_retry=False), False),
        (ex.APIConnectionError("bad url", should_retry=False), False),
        (ex.ResponseDecodeError("retry me", should_retry=True), True),
        (ex.QuotaExceededError("quota", status_code=429), False),
        (ex.QuotaExceededError("quota", status_code=429, should_retry=True), False),
        (ex.ContextWindowExceededError("long", status_code=400, should_retry=True), False),
    ],
)
def test_should_retry(error, expected):
    assert RetryPolicy().should_retry(error) is expected


def test_retry_statuses_can_be_chosen():
    p = RetryPolicy(retry_statuses=frozenset({418}))
    assert p.should_retry(server_error(418))
    assert not p.should_retry(server_error(500))


def test_backoff_is_capped_and_jittered():
    p = RetryPolicy(initial_delay=1.0, max_delay=3.0, random=lambda: 0.0)
    assert [p.backoff(n) for n in range(4)] == [1.0, 2.0, 3.0, 3.0]
    p = RetryPolicy(jitter=0.5, random=lambda: 1.0)
    assert p.backoff(0) == 0.25
    p = RetryPolicy(jitter=0.5, random=lambda: 0.5)
    assert p.backoff(1) == 0.75


@pytest.mark.parametrize(
    ("retry_after", "expected"),
    [
        (None, 1.0),
        (0, 1.0),
        (0.0, 1.0),
        (-5.0, 1.0),
        (1e-3, 1e-3),
        (7, 7.0),
        (120.0, 120.0),
        (120.001, None),
        (99999.0, None),
    ],
)
def test_next_delay_uses_a_demanded_delay_up_to_max_retry_after(retry_after, expected):
    p = RetryPolicy(random=lambda: 0.0)
    error = ex.RateLimitError("slow down", status_code=429, retry_after=retry_after)
    delay = p.next_delay(1, error)
    assert delay == expected
    if expected is not None:
        assert type(delay) is float
    assert p.next_delay(1, ValueError("no retry_after")) == 1.0


def test_with_overrides_ignores_none_and_returns_self_when_nothing_changes():
    p = RetryPolicy()
    assert p.with_overrides() is p
    assert p.with_overrides(max_retries=None, timeout_total=None) is p
    q = p.with_overrides(max_retries=5, timeout_total=None, max_retry_after=3.0)
    assert (q.max_retries, q.timeout_total, q.max_retry_after) == (5, None, 3.0)
    assert p.max_retries == 2


def test_call_returns_the_result_and_the_attempt_count():
    attempt = failing()
    assert policy().call(attempt) == ("ok", 1)
    assert attempt.calls == [1]
    attempt = failing(server_error(500), ex.APIConnectionError("reset"))
    assert policy().call(attempt) == ("ok", 3)
    assert attempt.calls == [1, 2, 3]


def test_call_stops_after_max_retries_and_sets_attempts():
    errors = [server_error(500) for _ in range(5)]
    with pytest.raises(ex.APIStatusError) as info:
        policy(max_retries=3).call(failing(*errors))
    assert info.value is errors[3]
    assert [e.attempts for e in errors[:4]] == [1, 2, 3, 4]


def test_call_with_zero_retries_raises_the_first_error():
    error = server_error(500)
    attempt = failing(error)
    with pytest.raises(ex.APIStatusError) as info:
        policy(max_retries=0).call(attempt)
    assert info.value is error
    assert error.attempts == 1
    assert attempt.calls == [1]


def test_call_does_not_retry_a_final_error_or_a_foreign_exception():
    attempt = failing(server_error(400))
    with pytest.raises(ex.APIStatusError):
        policy().call(attempt)
    assert attempt.calls == [1]
    attempt = failing(server_error(500), KeyError("bug"))
    with pytest.raises(KeyError):
        policy().call(attempt)
    assert attempt.calls == [1, 2]
    attempt = failing(KeyError("bug"))
    with pytest.raises(KeyError):
        policy().call(attempt)
    assert attempt.calls == [1]


def test_call_stops_when_a_later_answer_demands_too_long_a_wait():
    t = FakeTime()
    late = ex.RateLimitError("later", status_code=429, retry_after=121.0)
    attempt = failing(server_error(500), late)
    with pytest.raises(ex.RateLimitError) as info:
        policy(sleep=t.sleep).call(attempt)
    assert info.value is late
    assert late.attempts == 2
    assert t.slept == [0.5]


def test_call_sleeps_the_backoff_then_the_demanded_delay():
    t = FakeTime()
    attempt = failing(server_error(500), ex.RateLimitError("wait", status_code=429, retry_after=7))
    assert policy(sleep=t.sleep, max_retries=4).call(attempt) == ("ok", 3)
    assert t.slept == [0.5, 7.0]


@pytest.mark.parametrize(
    ("timeout_total", "attempts", "slept"),
    [
        (0.5, 1, []),  # 0 s spent + a 0.5 s wait reaches the deadline: no retry
        (0.51, 2, [0.5]),  # room for the first wait, not for the second (0.5 + 1.0)
        (1.5, 2, [0.5]),
        (1.51, 3, [0.5, 1.0]),
        (None, 3, [0.5, 1.0]),
    ],
)
def test_call_retries_only_while_the_wait_ends_before_the_total_deadline(
    timeout_total, attempts, slept
):
    t = FakeTime()
    errors = [server_error(500) for _ in range(3)]
    p = policy(sleep=t.sleep, clock=t.clock, timeout_total=timeout_total)
    with pytest.raises(ex.APIStatusError) as info:
        p.call(failing(*errors))
    assert info.value is errors[attempts - 1]
    assert info.value.attempts == attempts
    assert t.slept == slept


def test_the_total_deadline_counts_the_time_attempts_take():
    t = FakeTime()

    def slow(number):
        t.now += 2.0  # each attempt takes 2 s of (fake) time
        raise server_error(500)

    with pytest.raises(ex.APIStatusError) as info:
        policy(sleep=t.sleep, clock=t.clock, timeout_total=4.0).call(slow)
    # after attempt 1: 2 s + 0.5 s < 4 s, retry; after attempt 2: 4.5 s + 1 s >= 4 s, stop
    assert info.value.attempts == 2
    assert t.slept == [0.5]


def test_on_retry_callbacks_see_each_retry_and_cannot_break_it():
    seen_policy, seen_call = [], []

    def broken(number, error, delay):
        seen_call.append((number, error.status_code, delay))
        raise RuntimeError("a callback bug")

    p = policy(on_retry=lambda n, e, d: seen_policy.append((n, e.status_code, d)))
    attempt = failing(server_error(500), server_error(503))
    assert p.call(attempt, on_retry=broken) == ("ok", 3)
    assert seen_policy == [(1, 500, 0.5), (2, 503, 1.0)]
    assert seen_call == seen_policy


def test_with_retry_applies_settings_over_a_given_policy():
    calls = []

    @with_retry(policy(max_retries=5), max_retries=1)
    def flaky():
        calls.append(1)
        raise server_error(500)

    with pytest.raises(ex.APIStatusError) as info:
        flaky()
    assert info.value.attempts == 2
    assert len(calls) == 2

    @with_retry(max_retries=0)
    def once():
        calls.append(2)
        raise server_error(500)

    with pytest.raises(ex.APIStatusError):
        once()
    assert calls.count(2) == 1


def test_with_retry_uses_the_given_policy_as_it_is():
    calls = []

    @with_retry(policy(max_retries=1))
    def flaky():
        calls.append(1)
        raise server_error(500)

    with pytest.raises(ex.APIStatusError) as info:
        flaky()
    assert info.value.attempts == 2
    assert len(calls) == 2


def test_a_zero_backoff_sleeps_zero_seconds():
    t = FakeTime()
    p = policy(jitter=1.0, random=lambda: 1.0, sleep=t.sleep)
    assert p.call(failing(server_error(500), server_error(500))) == ("ok", 3)
    assert t.slept == [0.0, 0.0]
