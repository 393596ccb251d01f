"""Rate limiting: bucket arithmetic under a fake clock (hypothesis), adaptive holds, and
16 threads against a local server at a configured rate."""

from __future__ import annotations

import json
import math
import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chatcore._limits import (
    DEFAULT_MAX_SERVER_HOLD,
    InMemoryRateLimiter,
    RateLimit,
    Ticket,
    parse_duration,
    rate_limit_signals,
    throttle_delay,
)
from chatcore.exceptions import (
    ConfigurationError,
    QuotaExceededError,
    RateLimitError,
    RateLimitExceeded,
    error_from_response,
    parse_retry_after,
)
from chatcore.testing.server import Reply
from chatcore.testing.strategies import HOSTILE_NUMBERS, estimated_times, rate_limit_headers


class FakeClock:
    """A clock that only moves when slept on. A limiter that keeps sleeping without ever
    granting (a wait that never shrinks) fails the test instead of hanging it."""

    MOST_SLEEPS = 10_000

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps = 0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps += 1
        assert self.sleeps <= self.MOST_SLEEPS, "the limiter sleeps forever"
        assert seconds > 0, f"slept {seconds!r}"
        self.now += seconds


def limiter(limits, clock=None, **kw):
    clock = clock or FakeClock()
    return InMemoryRateLimiter(limits, clock=clock, sleep=clock.sleep, **kw), clock


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1s", 1.0),
        ("6m0s", 360.0),
        ("12ms", 0.012),
        ("1h2m3s", 3723.0),
        ("1.5s", 1.5),
        ("250us", 0.00025),
        ("0s", 0.0),
        ("7", 7.0),
        ("", None),
        ("soon", None),
        ("1x", None),
        ("inf", None),
        ("nan", None),
        ("-1", None),
        ("-0", 0.0),
        ("1e308", 1e308),
        ("9" * 400 + "h", None),
        ("1e308s", None),
        ("0.5h", 1800.0),
        ("1h30m", 5400.0),
        ("3ns", 3e-9),
        ("4µs", 4e-6),
        (" 2s ", 2.0),
        ("2s ", 2.0),
        ("s", None),
        ("1s2", None),
        ("x1s", None),
    ],
)
def test_parse_duration(text, seconds):
    assert parse_duration(text) == (pytest.approx(seconds) if seconds is not None else None)


@given(
    rate=st.floats(0.5, 200),
    burst=st.floats(1, 50),
    gaps=st.lists(st.floats(0, 2), min_size=1, max_size=120),
    window=st.floats(0.1, 30),
)
@settings(max_examples=150, deadline=None)
def test_grants_in_any_window_never_exceed_rate_times_window_plus_burst(rate, burst, gaps, window):
    lim, clock = limiter({"p": {"rps": rate, "burst": burst}})
    grants = []
    for gap in gaps:
        clock.now += gap
        lim.acquire("p", "m", 1)
        grants.append(clock.now)
    # every window [t, t + window] starting at a grant
    for i, start in enumerate(grants):
        inside = sum(1 for t in grants[i:] if t <= start + window + 1e-9)
        assert inside <= rate * window + burst + 1e-6


@given(
    tpm=st.integers(600, 100_000),
    requests=st.lists(st.tuples(st.integers(1, 500), st.integers(0, 800)), min_size=1, max_size=40),
)
@settings(max_examples=100, deadline=None)
def test_token_reservations_reconcile_exactly(tpm, requests):
    lim, clock = limiter({"p": {"tpm": tpm}})
    bucket = lim._tokens["p"]
    for estimate, used in requests:
        bucket.refill(clock.now)
        before, asked_at = bucket.level, clock.now
        ticket = lim.acquire("p", "m", estimate)
        after_acquire = bucket.level
        if clock.now == asked_at:  # granted without waiting: exactly the estimate was taken
            assert after_acquire == pytest.approx(before - estimate)
        else:  # waited until exactly enough had refilled
            assert after_acquire == pytest.approx(0.0, abs=1e-6)
        lim.reconcile(ticket, used)
        # no time passed in between: the net charge is exactly what was used
        refill = (clock.now - bucket.stamp) * bucket.rate
        assert refill == 0
        expected = min(bucket.capacity, after_acquire + (estimate - used))
        assert bucket.level == pytest.approx(expected)
        lim.reconcile(ticket, used)  # settling twice changes nothing
        assert bucket.level == pytest.approx(expected)
        clock.now += 1.0


def test_waits_then_grants_and_model_limits_apply_too():
    lim, clock = limiter({"p": {"rps": 10, "burst": 1}, "p:big": {"rpm": 6, "burst": 1}})
    t0 = clock.now
    lim.acquire("p", "big", 1)
    lim.acquire("p", "big", 1)  # model bucket: 6/min -> 10 s
    assert clock.now - t0 == pytest.approx(10.0)
    t1 = clock.now
    lim.acquire("p", "small", 1)  # only the provider bucket (10/s) applies to this model
    assert clock.now - t1 == pytest.approx(0.1)


def test_max_wait_and_non_blocking():
    lim, _clock = limiter({"p": {"rps": 1, "burst": 1}})
    lim.acquire("p", "m", 1)
    with pytest.raises(RateLimitExceeded) as info:
        lim.acquire("p", "m", 1, max_wait=0.1)
    assert info.value.retry_after == pytest.approx(1.0)
    with pytest.raises(RateLimitExceeded):
        lim.acquire("p", "m", 1, blocking=False)


def test_request_larger_than_token_capacity_is_refused_clearly():
    lim, _ = limiter({"p": {"tpm": 1000}})
    with pytest.raises(RateLimitExceeded, match="more than the 1000 the token limit"):
        lim.acquire("p", "m", 5000)


def test_bad_limits_are_configuration_errors():
    with pytest.raises(ConfigurationError, match="unknown key"):
        InMemoryRateLimiter({"p": {"rqm": 5}})
    with pytest.raises(ConfigurationError, match="rpm"):
        InMemoryRateLimiter({"p": {"rpm": -1}})
    with pytest.raises(ConfigurationError):
        InMemoryRateLimiter({"p": 5})
    assert RateLimit(rpm=120).request_rate == 2.0


def test_headers_shrink_grants_until_reset():
    lim, clock = limiter({"p": {"rps": 100, "burst": 100}})
    lim.observe(
        "p", "m", {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "2s"}
    )
    t0 = clock.now
    lim.acquire("p", "m", 1)
    assert clock.now - t0 == pytest.approx(2.0)
    lim.observe(
        "p", "m", {"x-ratelimit-remaining-requests": "3", "x-ratelimit-reset-requests": "1s"}
    )
    assert lim._requests["p"].level <= 3


def test_headers_apply_even_without_configured_limits():
    lim, clock = limiter({}, max_server_hold=600)
    lim.observe("p", "m", {"x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "6m0s"})
    t0 = clock.now
    lim.acquire("p", "m", 10)
    assert clock.now - t0 == pytest.approx(360.0)


def test_429_holds_everyone_but_quota_does_not():
    lim, clock = limiter({})
    lim.observe("p", "m", None, RateLimitError("slow", retry_after=3.0))
    t0 = clock.now
    lim.acquire("p", "other-model", 1)
    assert clock.now - t0 == pytest.approx(3.0)
    lim.observe("p", "m", None, QuotaExceededError("quota", retry_after=30.0))
    t1 = clock.now
    lim.acquire("p", "m", 1)
    assert clock.now == t1


def test_azure_minus_one_headers_are_ignored():
    lim, clock = limiter({})
    lim.observe(
        "p", "m", {"x-ratelimit-remaining-requests": "-1", "x-ratelimit-reset-requests": "0s"}
    )
    t0 = clock.now
    lim.acquire("p", "m", 1)
    assert clock.now == t0


def test_ticket_type_and_foreign_tickets_change_nothing():
    lim, _ = limiter({"p": {"tpm": 6000}})
    ticket = lim.acquire("p", "m", 5)
    assert isinstance(ticket, Ticket)
    assert ticket.keys == ("p", "p:m") and ticket.tokens == 5 and not ticket.settled
    assert lim._tokens["p"].level == 5995
    lim.reconcile(None, 0)  # foreign tickets are ignored: nothing is refunded
    lim.reconcile(object(), 0)
    assert lim._tokens["p"].level == 5995
    lim.reconcile(ticket, 2)
    assert ticket.settled and lim._tokens["p"].level == 5998


def test_client_uses_configured_limits_and_adapts_to_429(make_client, server):
    client = make_client(rate_limits={"wire": {"rps": 50, "burst": 1}})
    assert isinstance(client.rate_limiter, InMemoryRateLimiter)
    server.enqueue(Reply.error(429, "slow down", headers={"retry-after-ms": "50"}))
    resp = client.chat("wire:m", "hi")
    assert resp.attempts == 2
    assert client.retries == 1


def test_client_rejects_bad_rate_limits(make_client):
    with pytest.raises(ConfigurationError):
        make_client(rate_limits={"wire": {"rpm": "many"}})


@pytest.mark.slow
@pytest.mark.timing
def test_sixteen_threads_share_one_limit_against_a_local_server(make_client, server):
    # well under what one Python test server on 2 cores serves, even with coverage on
    rate = 200.0
    # a small burst absorbs thread wake-up jitter; over 3,200 requests it adds < 0.5%
    client = make_client(rate_limits={"wire": {"rps": rate, "burst": 10}})
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(200):
                client.chat("wire:m", "hi")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(16)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    elapsed = time.monotonic() - started
    assert not any(t.is_alive() for t in threads), "deadlock: threads still running"
    assert errors == []
    times = sorted(r.time for r in server.requests)
    assert len(times) == 3200
    measured = (len(times) - 1) / (times[-1] - times[0])
    assert measured <= rate * 1.05, measured
    assert measured >= rate * 0.95, (measured, elapsed)


def test_client_obeys_provider_headers_before_the_next_call(make_client, server):
    slept: list[float] = []
    clock = FakeClock()

    def fake_sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.sleep(seconds)

    lim = InMemoryRateLimiter({}, clock=clock, sleep=fake_sleep)
    client = make_client(rate_limiter=lim)
    server.enqueue(
        Reply.chat(
            "first",
            headers={"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "250ms"},
        )
    )
    assert client.chat("wire:m", "hi").text == "first"
    assert slept == []
    client.chat("wire:m", "hi")
    assert slept == [pytest.approx(0.25)]


def test_rate_limit_signals_skip_placeholders_and_garbage():
    headers = {
        "x-ratelimit-remaining-requests": "nan",
        "x-ratelimit-reset-requests": "1s",
        "x-ratelimit-remaining-tokens": "12",
        "x-ratelimit-reset-tokens": "6m0s",
    }
    assert list(rate_limit_signals(headers, max_hold=600)) == [("tokens", 12.0, 360.0)]
    assert list(rate_limit_signals(None)) == []
    assert throttle_delay(RateLimitError("x", retry_after=2.5), 1.0) == 2.5
    assert throttle_delay(RateLimitError("x"), 1.0) == 1.0
    assert throttle_delay(QuotaExceededError("q", retry_after=9), 1.0) is None
    assert throttle_delay(None, 1.0) is None


# --- holds learnt from servers are capped; nonsense numbers are ignored (issue 11) ------


def recording_limiter(**kw):
    """An in-memory limiter on a fake clock that records every sleep."""
    clock = FakeClock()
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.sleep(seconds)

    return InMemoryRateLimiter({}, clock=clock, sleep=sleep, **kw), slept


def wait_named(lim, provider: str = "p", model: str = "m") -> float | None:
    """0 when a non-blocking acquire is granted, else the wait its refusal names."""
    try:
        lim.acquire(provider, model, 1, blocking=False)
    except RateLimitExceeded as exc:
        return exc.retry_after  # None would fail the caller's comparison
    return 0.0


def held_for(lim: InMemoryRateLimiter, key: str = "p") -> float:
    return lim.status().get(key, {}).get("held_for", 0.0)


def test_a_429_demanding_a_day_holds_the_provider_for_max_server_hold_at_most(make_client, server):
    lim, slept = recording_limiter()
    client = make_client(rate_limiter=lim)
    server.enqueue(Reply.error(429, "slow down", headers={"retry-after": "99999"}))
    with pytest.raises(RateLimitError) as info:
        client.chat("wire:m", "hi")
    # raised at once (more than max_retry_after), with what the server said
    assert info.value.retry_after == 99999.0
    assert info.value.attempts == 1
    assert len(server.requests) == 1
    assert client.chat("wire:m", "hi").text
    assert slept == [pytest.approx(DEFAULT_MAX_SERVER_HOLD)]


def test_a_reset_of_99999h_with_nothing_remaining_holds_for_max_server_hold_at_most(
    make_client, server
):
    lim, slept = recording_limiter()
    client = make_client(rate_limiter=lim)
    headers = {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "99999h"}
    server.enqueue(Reply.chat("first", headers=headers))
    assert client.chat("wire:m", "hi").text == "first"
    assert held_for(lim, "wire") == pytest.approx(120.0)
    client.chat("wire:m", "hi")
    assert slept == [pytest.approx(120.0)]


def test_max_server_hold_setting_reaches_the_default_limiter(make_client, server):
    client = make_client(max_server_hold=5)
    assert client.settings.max_server_hold == 5.0
    assert isinstance(client.rate_limiter, InMemoryRateLimiter)
    assert client.rate_limiter.max_server_hold == 5.0
    server.enqueue(Reply.error(429, "slow down", headers={"retry-after": "99999"}))
    with pytest.raises(RateLimitError):
        client.chat("wire:m", "hi")
    # the real clock runs on: the hold is at most the cap, and there is one
    assert 0 < held_for(client.rate_limiter, "wire") <= 5.0


def test_max_server_hold_setting_reaches_the_limiter_built_for_rate_limits(make_client):
    client = make_client(
        rate_limits={"wire": {"rps": 5}}, environ={"CHATCORE_MAX_SERVER_HOLD": "7"}
    )
    assert client.rate_limiter.max_server_hold == 7.0


@pytest.mark.parametrize(
    "headers",
    [
        {"retry-after": "inf"},
        {"retry-after": "1e308"},
        {"retry-after": "nan"},
        {"retry-after": "-5"},
        {"retry-after-ms": "inf"},
        {"retry-after-ms": "1e308"},
        {"retry-after-ms": "nan"},
        {"retry-after-ms": "-5"},
        {"retry-after": "Fri, 31 Dec 9999 23:59:59 GMT"},
        {"retry-after": "Thu, 01 Jan 1970 00:00:00 GMT"},
    ],
)
def test_nonsense_retry_after_never_breaks_the_next_call(make_client, server, headers):
    lim, slept = recording_limiter()
    client = make_client(rate_limiter=lim, max_retries=0)
    server.enqueue(Reply.error(429, "slow down", headers=headers))
    with pytest.raises(RateLimitError) as info:
        client.chat("wire:m", "hi")
    retry_after = info.value.retry_after
    assert retry_after is None or (math.isfinite(retry_after) and retry_after >= 0)
    assert client.chat("wire:m", "hi").text
    assert len(slept) == 1 and 0 < slept[0] <= 120.0
    assert all(math.isfinite(s) for s in slept)


@pytest.mark.parametrize(
    ("remaining", "reset"),
    [
        ("0", "inf"),
        ("0", "nan"),
        ("0", "1e308"),
        ("0", "1e308s"),
        ("0", "-5"),
        ("0", "9" * 400 + "h"),
        ("0", "99999999999999999999h"),
        ("nan", "99999h"),
        ("-1", "99999h"),
        ("inf", "1s"),
        ("1e400", "1s"),
        ("-0", "99999h"),
    ],
)
def test_nonsense_rate_limit_headers_never_break_the_next_call(
    make_client, server, remaining, reset
):
    lim, slept = recording_limiter()
    client = make_client(rate_limiter=lim, rate_limits={"wire": {"rps": 100}})
    headers = {"x-ratelimit-remaining-requests": remaining, "x-ratelimit-reset-requests": reset}
    server.enqueue(Reply.chat("first", headers=headers))
    assert client.chat("wire:m", "hi").text == "first"
    assert held_for(lim, "wire") <= 120.0
    assert client.chat("wire:m", "hi").text
    assert all(math.isfinite(s) and 0 < s <= 120.0 for s in slept)


@given(
    headers=rate_limit_headers(),
    status=st.sampled_from([200, 429, 503]),
    estimated=estimated_times(),
    cap=st.sampled_from([0.5, 1.0, 120.0, 3600.0]),
)
@settings(max_examples=400, deadline=None)
def test_no_answer_makes_observe_raise_or_hold_past_the_cap(headers, status, estimated, cap):
    error = None
    if status != 200:
        body = json.dumps({"error": "Model m is currently loading", "estimated_time": estimated})
        error = error_from_response(status, body, headers)
        assert error.retry_after is None or (
            math.isfinite(error.retry_after) and error.retry_after >= 0
        )
    demanded = parse_retry_after(headers)
    assert demanded is None or (math.isfinite(demanded) and demanded >= 0)
    lim, clock = limiter({"p": {"rps": 10, "burst": 1, "tpm": 6000}}, max_server_hold=cap)
    lim.observe("p", "m", headers, error)
    assert held_for(lim) <= cap
    for dim, remaining, hold in rate_limit_signals(headers, max_hold=cap):
        assert dim in ("requests", "tokens")
        assert math.isfinite(remaining) and remaining >= 0
        assert math.isfinite(hold) and 0 < hold <= cap
    # a hold, or the request bucket lowered to what remains (0.1 s per request)
    wait = wait_named(lim)
    assert wait is not None and wait <= max(cap, 0.1) + 1e-9
    started = clock.now
    lim.acquire("p", "m", 1)
    assert clock.now - started <= max(cap, 0.1) + 1e-9


@pytest.mark.parametrize("text", HOSTILE_NUMBERS)
def test_parse_duration_is_finite_and_non_negative_or_none(text):
    seconds = parse_duration(text)
    assert seconds is None or (math.isfinite(seconds) and seconds >= 0)


@pytest.mark.parametrize(
    "value", [0, -1, float("nan"), float("inf"), 86400.001, 1e300, "120", True, None]
)
def test_bad_max_server_hold_is_a_configuration_error(value):
    with pytest.raises(ConfigurationError, match="max_server_hold") as info:
        InMemoryRateLimiter({}, max_server_hold=value)
    assert "seconds > 0 and at most 86400" in str(info.value)


def test_the_largest_max_server_hold_holds_a_day_and_no_more():
    lim, slept = recording_limiter(max_server_hold=86400)
    lim.observe("p", "m", None, RateLimitError("x", retry_after=1e300))
    lim.acquire("p", "m", 1)
    assert slept == [86400.0]


def test_the_hold_cap_boundary():
    lim, _ = limiter({}, max_server_hold=10)
    lim.observe("p", "m", None, RateLimitError("x", retry_after=9.5))
    assert held_for(lim) == pytest.approx(9.5)  # under the cap: as given
    lim.observe("p", "m", None, RateLimitError("x", retry_after=10.5))
    assert held_for(lim) == pytest.approx(10.0)  # over it: the cap
    lim2, _ = limiter({}, max_server_hold=10)
    lim2.observe("p", "m", {"x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "10s"})
    assert held_for(lim2) == pytest.approx(10.0)
    lim2.observe("p", "m", {"x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "11s"})
    assert held_for(lim2) == pytest.approx(10.0)
    assert lim.max_server_hold == 10.0
    assert InMemoryRateLimiter().max_server_hold == DEFAULT_MAX_SERVER_HOLD == 120.0


def test_throttle_delay_ignores_unusable_retry_after_and_caps():
    for bad in (float("nan"), float("inf"), -3.0, 0.0):
        assert throttle_delay(RateLimitError("x", retry_after=bad), 1.5) == 1.5
    assert throttle_delay(RateLimitError("x", retry_after=1e-3), 1.5) == 1e-3
    assert throttle_delay(RateLimitError("x", retry_after=500), 1.0, max_hold=60) == 60
    assert throttle_delay(RateLimitError("x"), 90.0, max_hold=60) == 60  # the default too
    assert throttle_delay(RateLimitError("x", retry_after=500), 1.0) == DEFAULT_MAX_SERVER_HOLD


# --- each adaptive rule at its boundary ----------------------------------------------


@pytest.mark.parametrize("reset", ["0", "0s", "0ms", "0.0"])
def test_a_zero_reset_is_a_placeholder_that_neither_clamps_nor_holds(reset):
    lim, _ = limiter({"p": {"rps": 10, "burst": 5}})
    lim.observe(
        "p", "m", {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": reset}
    )
    assert lim._requests["p"].level == 5
    assert held_for(lim) == 0.0
    lim.acquire("p", "m", 1, blocking=False)


def test_the_smallest_reset_clamps_and_holds():
    lim, _ = limiter({"p": {"rps": 10, "burst": 5}})
    lim.observe(
        "p", "m", {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "1ms"}
    )
    assert lim._requests["p"].level == 0
    assert held_for(lim) == pytest.approx(0.001)


@pytest.mark.parametrize(("remaining", "holds"), [("1", False), ("0.99", True), ("0", True)])
def test_a_hold_starts_below_one_remaining(remaining, holds):
    lim, _ = limiter({"p": {"rps": 10, "burst": 5}})
    lim.observe(
        "p", "m", {"x-ratelimit-remaining-requests": remaining, "x-ratelimit-reset-requests": "3s"}
    )
    assert lim._requests["p"].level == pytest.approx(float(remaining))
    assert held_for(lim) == (pytest.approx(3.0) if holds else 0.0)


def test_token_headers_lower_the_token_bucket_only():
    lim, _ = limiter({"p": {"rps": 10, "burst": 5, "tpm": 6000}})
    lim.observe("p", "m", {"x-ratelimit-remaining-tokens": "100", "x-ratelimit-reset-tokens": "1s"})
    assert lim._tokens["p"].level == 100
    assert lim._requests["p"].level == 5
    lim.observe(
        "p", "m", {"x-ratelimit-remaining-requests": "2", "x-ratelimit-reset-requests": "1s"}
    )
    assert lim._requests["p"].level == 2
    assert lim._tokens["p"].level == 100
    # a remaining count above the level never raises it
    lim.observe(
        "p", "m", {"x-ratelimit-remaining-tokens": "9000", "x-ratelimit-reset-tokens": "1s"}
    )
    assert lim._tokens["p"].level == 100


def test_token_and_request_holds_are_kept_apart_and_both_block():
    lim, clock = limiter({})
    lim.observe("p", "m", {"x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "4s"})
    hold = lim._holds["p"]
    assert hold.tokens_until == pytest.approx(clock.now + 4) and hold.requests_until == 0
    lim.observe(
        "p", "m", {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "2s"}
    )
    assert hold.requests_until == pytest.approx(clock.now + 2)
    t0 = clock.now
    lim.acquire("p", "m", 1)
    assert clock.now - t0 == pytest.approx(4.0)


def test_holds_are_per_provider_and_only_ever_extended():
    lim, _ = limiter({})
    lim.observe("p", "m", None, RateLimitError("x", retry_after=5))
    lim.observe("p", "m", None, RateLimitError("x", retry_after=1))
    assert held_for(lim) == pytest.approx(5.0)
    lim.observe(
        "p", "m", {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "2s"}
    )
    assert held_for(lim) == pytest.approx(5.0)
    lim.acquire("q", "m", 1, blocking=False)  # another provider is not held
    assert "q" not in lim._holds


def test_a_429_holds_by_its_retry_after_not_by_its_headers():
    lim, _ = limiter({"p": {"rps": 10, "burst": 5}})
    headers = {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "60s"}
    lim.observe("p", "m", headers, RateLimitError("x", retry_after=2))
    assert held_for(lim) == pytest.approx(2.0)
    assert lim._requests["p"].level == 5


def test_a_429_with_no_usable_retry_after_holds_the_default():
    lim, _ = limiter({}, default_retry_after=0.25)
    lim.observe("p", "m", None, RateLimitError("x", retry_after=0))
    assert held_for(lim) == pytest.approx(0.25)


def test_adaptive_off_learns_nothing():
    lim, _ = limiter({"p": {"rps": 10, "burst": 5}}, adaptive=False)
    lim.observe("p", "m", None, RateLimitError("x", retry_after=5))
    lim.observe(
        "p", "m", {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "9s"}
    )
    assert lim._holds == {}
    assert lim._requests["p"].level == 5
    lim.acquire("p", "m", 1, blocking=False)


def test_other_errors_are_not_throttling():
    lim, _ = limiter({})
    lim.observe("p", "m", None, RuntimeError("boom"))
    lim.observe("p", "m", {}, None)
    assert lim._holds == {}


def test_refusals_name_the_key_and_the_wait():
    lim, _ = limiter({"p": {"rps": 1, "burst": 1}})
    lim.acquire("p", "m", 1)
    with pytest.raises(
        RateLimitExceeded, match=r"^p:m: rate limit reached; next grant in 1\.000s$"
    ) as info:
        lim.acquire("p", "m", 1, blocking=False)
    assert info.value.key == "p:m" and info.value.retry_after == pytest.approx(1.0)
    with pytest.raises(
        RateLimitExceeded,
        match=r"^p:m: the local rate limit would need 1\.000s, more than max_wait=0\.5s$",
    ) as info:
        lim.acquire("p", "m", 1, max_wait=0.5)
    assert info.value.key == "p:m" and info.value.retry_after == pytest.approx(1.0)


def test_a_max_wait_equal_to_the_wait_is_enough():
    lim, clock = limiter({"p": {"rps": 1, "burst": 1}})
    lim.acquire("p", "m", 1)
    t0 = clock.now
    lim.acquire("p", "m", 1, max_wait=1.0)
    assert clock.now - t0 == pytest.approx(1.0)


def test_a_pair_without_a_usable_reset_is_skipped_and_the_other_dimension_still_read():
    assert list(rate_limit_signals({"x-ratelimit-remaining-requests": "0"})) == []
    headers = {
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": "later",
        "x-ratelimit-remaining-tokens": "5",
        "x-ratelimit-reset-tokens": "2s",
    }
    assert list(rate_limit_signals(headers)) == [("tokens", 5.0, 2.0)]
    headers["x-ratelimit-reset-requests"] = ""
    assert list(rate_limit_signals(headers)) == [("tokens", 5.0, 2.0)]


def test_a_ticket_settled_without_usage_gets_its_whole_estimate_back():
    lim, _ = limiter({"p": {"tpm": 6000}})
    ticket = lim.acquire("p", "m", 500)
    assert lim._tokens["p"].level == 5500
    lim.reconcile(ticket, None)
    assert lim._tokens["p"].level == 6000


def test_status_reports_buckets_and_holds_and_expired_holds_as_zero():
    lim, clock = limiter({"p": {"rps": 2, "burst": 4, "tpm": 600}})
    lim.acquire("p", "m", 100)
    lim.observe("p", "m", None, RateLimitError("x", retry_after=3))
    assert lim.status() == {
        "p": {"requests_available": 3.0, "tokens_available": 500.0, "held_for": 3.0}
    }
    clock.now += 10
    assert lim.status() == {
        "p": {"requests_available": 4.0, "tokens_available": 600.0, "held_for": 0.0}
    }


def test_booleans_are_not_rates():
    for key in ("rps", "rpm", "tpm", "burst", "token_burst"):
        with pytest.raises(ConfigurationError, match=f"{key}=True: expected a number > 0"):
            RateLimit.parse("p", {key: True})


def test_a_shortfall_within_rounding_is_granted():
    lim, _ = limiter({"p": {"tpm": 60}})
    lim._tokens["p"].level = -1e-9  # 1e-9 short of a zero-token request: rounding
    lim.acquire("p", "m", 0, blocking=False)
    lim._tokens["p"].level = -2e-9
    with pytest.raises(RateLimitExceeded):
        lim.acquire("p", "m", 0, blocking=False)


def test_bad_limit_messages_name_the_key_and_what_is_allowed():
    with pytest.raises(ConfigurationError) as info:
        RateLimit.parse("p", {"rqm": 5, "bust": 1})
    assert str(info.value) == (
        "rate_limits['p']: unknown key(s) bust, rqm (allowed: burst, rpm, rps, token_burst, tpm)"
    )
    with pytest.raises(ConfigurationError) as info:
        RateLimit.parse("p", 5)
    assert str(info.value) == (
        "rate_limits['p']: expected a mapping like {'rpm': 500, 'tpm': 200000}"
    )
    with pytest.raises(ConfigurationError, match=r"^rate_limits key ':m': expected"):
        InMemoryRateLimiter({":m": {"rps": 1}})
    assert RateLimit.parse("p", RateLimit(rps=1)) == RateLimit(rps=1)


def test_a_request_of_exactly_the_token_capacity_is_granted_and_one_more_is_refused():
    lim, _ = limiter({"p:m": {"tpm": 1000, "token_burst": 100}})
    lim.acquire("p", "m", 100, blocking=False)
    with pytest.raises(RateLimitExceeded) as info:
        lim.acquire("p", "m", 101)
    assert str(info.value) == (
        "p:m: the request needs about 101 tokens, more than the 100 the token limit ever"
        " grants at once; shorten the request or raise tpm/token_burst"
    )
    assert info.value.key == "p:m" and info.value.retry_after is None


def test_waits_are_counted_with_the_seconds_waited():
    lim, clock = limiter({"p": {"rps": 2, "burst": 1}})
    lim.acquire("p", "m", 1)  # granted at once: not a wait
    assert (lim.waits, lim.wait_seconds) == (0, 0.0)
    lim.acquire("p", "m", 1)
    lim.acquire("p", "m", 1)
    assert lim.waits == 2
    assert lim.wait_seconds == pytest.approx(1.0)
    clock.now += 5
    lim.acquire("p", "m", 1)
    assert lim.waits == 2


def test_limits_at_their_boundaries():
    for key in ("rps", "rpm", "tpm", "burst", "token_burst"):
        with pytest.raises(ConfigurationError, match=f"rate_limits\\['p:m'\\]: {key}=0: expected"):
            InMemoryRateLimiter({"p:m": {key: 0}})
    with pytest.raises(ConfigurationError, match="rate_limits key 'p:'"):
        InMemoryRateLimiter({"p:": {"rps": 1}})
    with pytest.raises(ConfigurationError, match="rate_limits key ''"):
        InMemoryRateLimiter({"": {"rps": 1}})
    lim, clock = limiter(
        {"slow": {"rps": 0.5}, "fast": {"rps": 5}, "tok": {"tpm": 6000, "token_burst": 100}}
    )
    status = lim.status()
    # the burst defaults to one second's worth, at least one request
    assert status["slow"] == {"requests_available": 1.0}
    assert status["fast"] == {"requests_available": 5.0}
    assert status["tok"] == {"tokens_available": 100.0}
    lim.acquire("tok", "m", 100)
    clock.now += 0.5  # 6000 per minute: 50 tokens in half a second
    assert lim.status()["tok"] == {"tokens_available": pytest.approx(50.0)}


def test_the_default_hold_of_a_429_without_retry_after_is_one_second():
    lim, _ = limiter({})
    lim.observe("p", "m", None, RateLimitError("x"))
    assert held_for(lim) == 1.0
