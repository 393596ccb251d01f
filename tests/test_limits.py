"""Rate limiting: bucket arithmetic under a fake clock (hypothesis), adaptive holds, and
16 threads against a local server at a configured rate."""

from __future__ import annotations

import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chatcore._limits import InMemoryRateLimiter, RateLimit, Ticket, parse_duration
from chatcore.exceptions import (
    ConfigurationError,
    QuotaExceededError,
    RateLimitError,
    RateLimitExceeded,
)
from chatcore.testing.server import Reply


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
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


def test_ticket_type():
    lim, _ = limiter({"p": {"tpm": 6000}})
    assert isinstance(lim.acquire("p", "m", 5), Ticket)
    lim.reconcile(None, 5)  # foreign tickets are ignored


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
    from chatcore._limits import rate_limit_signals, throttle_delay

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
