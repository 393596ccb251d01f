"""RedisRateLimiter against a real redis-server: the Lua token buckets, reconciliation,
holds shared by several limiter instances, and the in-memory limiter's interface."""

from __future__ import annotations

import random
import threading
import time
from typing import Any

import pytest

from chatcore.exceptions import (
    ConfigurationError,
    QuotaExceededError,
    RateLimitError,
    RateLimitExceeded,
)
from chatcore_redis import RedisRateLimiter, RedisTicket


@pytest.fixture
def make_limiter(redis_url: str, prefix: str) -> Any:
    made: list[RedisRateLimiter] = []

    def make(**kwargs: Any) -> RedisRateLimiter:
        kwargs.setdefault("prefix", prefix)
        limiter = RedisRateLimiter(redis_url, **kwargs)
        made.append(limiter)
        return limiter

    yield make
    for limiter in made:
        limiter.close()


def _take_all(
    limiter: RedisRateLimiter, provider: str = "p", model: str = "m", most: int = 100
) -> int:
    """Grants available right now (non-blocking), up to ``most``."""
    granted = 0
    while granted < most:
        try:
            limiter.acquire(provider, model, 1, blocking=False)
        except RateLimitExceeded:
            return granted
        granted += 1
    return granted


def test_burst_is_shared_by_two_instances(make_limiter: Any) -> None:
    a = make_limiter(limits={"p": {"rpm": 6, "burst": 5}})
    b = make_limiter(limits={"p": {"rpm": 6, "burst": 5}})
    assert _take_all(a) + _take_all(b) == 5
    with pytest.raises(RateLimitExceeded) as info:
        b.acquire("p", "m", 1, blocking=False)
    # 6 per minute: the next request is 10 s away
    assert info.value.retry_after == pytest.approx(10.0, abs=0.2)
    assert info.value.key == "p:m"


def test_grants_never_exceed_rate_times_window_plus_burst(make_limiter: Any) -> None:
    """A fake workload: 8 threads of 2 limiter instances, random token sizes, hammering
    for ~1.2 s; counted against the Redis server's own clock."""
    rate, burst, tpm, token_burst = 25.0, 3.0, 6000.0, 400.0
    limits = {"p": {"rps": rate, "burst": burst}, "p:m": {"tpm": tpm, "token_burst": token_burst}}
    limiters = [make_limiter(limits=limits), make_limiter(limits=limits)]
    server = limiters[0].redis
    grants: list[tuple[float, int]] = []
    lock = threading.Lock()
    start_s, start_us = server.time()
    start = start_s + start_us / 1e6
    stop = time.monotonic() + 1.2

    def work(limiter: RedisRateLimiter, seed: int) -> None:
        rng = random.Random(seed)
        while time.monotonic() < stop:
            tokens = rng.randint(1, 60)
            try:
                limiter.acquire("p", "m", tokens, max_wait=0.5)
            except RateLimitExceeded:
                continue
            now_s, now_us = server.time()
            with lock:
                grants.append((now_s + now_us / 1e6, tokens))

    threads = [threading.Thread(target=work, args=(limiters[i % 2], i)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert grants
    window = max(t for t, _ in grants) - start
    requests = len(grants)
    tokens = sum(n for _, n in grants)
    # never above the bucket's promise (a little slack for the clock reads around the grant)
    assert requests <= burst + rate * (window + 0.01)
    assert tokens <= token_burst + tpm / 60.0 * (window + 0.01)
    # and the limiter is not needlessly strict: most of the budget is used
    assert requests >= 0.8 * rate * window or tokens >= 0.8 * tpm / 60.0 * window


def test_blocking_waits_with_the_injected_sleep(make_limiter: Any) -> None:
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        time.sleep(seconds)

    limiter = make_limiter(limits={"p": {"rps": 10, "burst": 1}}, sleep=sleep)
    limiter.acquire("p", "m", 1)
    started = time.monotonic()
    limiter.acquire("p", "m", 1)
    elapsed = time.monotonic() - started
    assert slept, "the second grant had to wait"
    assert 0.0 < slept[0] <= 0.1 + 1e-3
    assert elapsed == pytest.approx(0.1, abs=0.05)
    assert limiter.waits == 1
    assert limiter.wait_seconds > 0


def test_max_wait_raises_with_retry_after(make_limiter: Any) -> None:
    limiter = make_limiter(limits={"p": {"rpm": 60, "burst": 1}})
    limiter.acquire("p", "m", 1)
    with pytest.raises(RateLimitExceeded) as info:
        limiter.acquire("p", "m", 1, max_wait=0.2)
    assert info.value.retry_after == pytest.approx(1.0, abs=0.1)
    assert "max_wait" in str(info.value)


def test_model_bucket_and_provider_bucket_both_apply(make_limiter: Any) -> None:
    limiter = make_limiter(limits={"p": {"rpm": 60, "burst": 3}, "p:big": {"rpm": 60, "burst": 1}})
    assert _take_all(limiter, "p", "big") == 1
    assert _take_all(limiter, "p", "small") == 2  # the provider bucket had 3
    assert _take_all(limiter, "other", "x") == 100  # no limit configured: unlimited


def test_tokens_reconcile(make_limiter: Any) -> None:
    limiter = make_limiter(limits={"p": {"tpm": 60, "token_burst": 100}})  # 1 token/s
    ticket = limiter.acquire("p", "m", 80)
    assert isinstance(ticket, RedisTicket)
    with pytest.raises(RateLimitExceeded):
        limiter.acquire("p", "m", 50, blocking=False)
    limiter.reconcile(ticket, 20)  # 60 unused tokens come back
    second = limiter.acquire("p", "m", 50, blocking=False)
    limiter.reconcile(second, 50)
    limiter.reconcile(second, 0)  # settled once only
    available = limiter.status()["p"]["tokens_available"]
    assert available == pytest.approx(30, abs=2)
    # charging more than reserved puts the bucket into debt
    third = limiter.acquire("p", "m", 20, blocking=False)
    limiter.reconcile(third, 120)
    assert limiter.status()["p"]["tokens_available"] == pytest.approx(-90, abs=2)
    with pytest.raises(RateLimitExceeded) as info:
        limiter.acquire("p", "m", 1, blocking=False)
    assert info.value.retry_after == pytest.approx(91, abs=2)
    # a failed attempt gets its whole reservation back (used=None)
    limiter.reconcile(RedisTicket(keys=("p", "p:m"), tokens=100), None)
    assert limiter.status()["p"]["tokens_available"] == pytest.approx(10, abs=2)
    limiter.reconcile(object(), 5)  # not a ticket of this limiter: ignored


def test_request_larger_than_the_token_bucket_fails_at_once(make_limiter: Any) -> None:
    limiter = make_limiter(limits={"p:m": {"tpm": 1000, "token_burst": 100}})
    with pytest.raises(RateLimitExceeded, match="more than the 100"):
        limiter.acquire("p", "m", 101)


def test_429_hold_is_shared_across_instances(make_limiter: Any) -> None:
    a = make_limiter()
    b = make_limiter()
    b.acquire("p", "m", 1, blocking=False)  # no limits, no hold: granted
    a.observe("p", "m", None, RateLimitError("slow down", status_code=429, retry_after=0.4))
    with pytest.raises(RateLimitExceeded) as info:
        b.acquire("p", "m", 1, blocking=False)
    assert 0.2 < (info.value.retry_after or 0) <= 0.4
    started = time.monotonic()
    b.acquire("p", "other-model", 1)  # the whole provider is held
    assert time.monotonic() - started == pytest.approx(0.4, abs=0.15)
    b.acquire("q", "m", 1, blocking=False)  # another provider is not


def test_429_without_retry_after_holds_the_default(make_limiter: Any) -> None:
    a = make_limiter(default_retry_after=0.3)
    b = make_limiter()
    a.observe("p", "m", {}, RateLimitError("slow down", status_code=429))
    with pytest.raises(RateLimitExceeded) as info:
        b.acquire("p", "m", 1, blocking=False)
    assert 0.1 < (info.value.retry_after or 0) <= 0.3


def test_a_shorter_hold_never_shortens_a_longer_one(make_limiter: Any) -> None:
    a = make_limiter()
    a.observe("p", "m", None, RateLimitError("x", status_code=429, retry_after=5))
    a.observe("p", "m", None, RateLimitError("x", status_code=429, retry_after=0.1))
    assert a.redis.pttl(a.hold_keys("p")[0]) > 4000


def test_quota_errors_and_placeholders_are_not_signals(make_limiter: Any) -> None:
    a = make_limiter()
    a.observe("p", "m", None, QuotaExceededError("insufficient_quota", status_code=429))
    a.observe(
        "p",
        "m",
        {"x-ratelimit-remaining-requests": "-1", "x-ratelimit-reset-requests": "0s"},
    )
    a.observe("p", "m", {"x-ratelimit-remaining-requests": "zero"})
    a.acquire("p", "m", 1, blocking=False)


def test_headers_hold_and_clamp_shared_across_instances(make_limiter: Any) -> None:
    limits = {"p": {"rpm": 600, "burst": 10, "tpm": 60000}}
    a = make_limiter(limits=limits)
    b = make_limiter(limits=limits)
    # two requests remain: every worker gets at most two more
    a.observe(
        "p",
        "m",
        {"x-ratelimit-remaining-requests": "2", "x-ratelimit-reset-requests": "1s"},
    )
    assert _take_all(b) == 2
    # none remain on tokens for 300 ms: every worker holds
    a.observe(
        "p",
        "m",
        {"x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "300ms"},
    )
    with pytest.raises(RateLimitExceeded) as info:
        b.acquire("p", "m", 1, blocking=False)
    assert 0.25 < (info.value.retry_after or 0) <= 0.31
    status = a.status()
    assert status["p"]["held_for"] > 0.2
    assert status["p"]["tokens_available"] == pytest.approx(0, abs=300)


def test_adaptive_off_learns_nothing(make_limiter: Any) -> None:
    a = make_limiter(adaptive=False)
    a.observe("p", "m", None, RateLimitError("x", status_code=429, retry_after=5))
    a.acquire("p", "m", 1, blocking=False)


def test_worker_clocks_do_not_matter(make_limiter: Any) -> None:
    """Two workers whose clocks disagree by an hour share one bucket exactly: refill is
    computed from the Redis server's TIME."""
    limits = {"p": {"rps": 5, "burst": 2}}
    a = make_limiter(limits=limits, clock=lambda: time.monotonic() + 3600.0)
    b = make_limiter(limits=limits, clock=lambda: time.monotonic() - 3600.0)
    assert _take_all(a) + _take_all(b) == 2
    time.sleep(0.45)  # 2.25 requests refill
    assert _take_all(b) + _take_all(a) == 2


def test_idle_buckets_expire_from_redis(make_limiter: Any) -> None:
    limiter = make_limiter(limits={"p": {"rps": 100, "burst": 1}})
    limiter.acquire("p", "m", 1)
    keys = list(limiter.redis.scan_iter(match=f"{limiter.prefix}*"))
    assert len(keys) == 1
    ttl = limiter.redis.pttl(keys[0])
    assert 0 < ttl <= 1100  # full again in 10 ms, plus a second of margin


def test_bad_limits_are_configuration_errors(redis_url: str) -> None:
    with pytest.raises(ConfigurationError, match="unknown key"):
        RedisRateLimiter(redis_url, limits={"p": {"rpx": 3}})
    with pytest.raises(ConfigurationError, match="provider:model"):
        RedisRateLimiter(redis_url, limits={":m": {"rps": 3}})
    with pytest.raises(ConfigurationError, match="failure_policy"):
        RedisRateLimiter(redis_url, failure_policy="sometimes")
    with pytest.raises(ConfigurationError, match="socket_timeout"):
        RedisRateLimiter(redis_url, socket_timeout=0)
    with pytest.raises(ConfigurationError, match="URL"):
        RedisRateLimiter()


def test_an_existing_redis_client_can_be_passed(redis_client: Any, prefix: str) -> None:
    limiter = RedisRateLimiter(client=redis_client, limits={"p": {"rps": 1}}, prefix=prefix)
    assert _take_all(limiter) == 1
    assert limiter.url.startswith("redis://127.0.0.1:")
    limiter.close()  # not ours: left open
    assert redis_client.ping()


def test_client_pipeline_uses_the_limiter(make_client: Any, make_limiter: Any) -> None:
    limiter = make_limiter(limits={"wire": {"rps": 5, "burst": 2, "tpm": 60000}})
    client = make_client(rate_limiter=limiter)
    for _ in range(3):
        assert client.chat("wire:gpt-4o-mini", "hello").text
    assert limiter.waits >= 1  # the third request waited for the bucket
    status = limiter.status()["wire"]
    # reconciled with the reported usage: far less than the estimate stays charged
    assert status["tokens_available"] > 60000 - 3 * 200
