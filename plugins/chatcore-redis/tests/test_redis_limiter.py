"""RedisRateLimiter against a real redis-server: the Lua token buckets, reconciliation,
holds shared by several limiter instances, and the in-memory limiter's interface."""

from __future__ import annotations

import json
import math
import random
import threading
import time
import uuid
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chatcore.exceptions import (
    ConfigurationError,
    QuotaExceededError,
    RateLimitError,
    RateLimitExceeded,
    error_from_response,
)
from chatcore.testing.strategies import estimated_times, rate_limit_headers
from chatcore_redis import RedisRateLimiter, RedisTicket
from chatcore_redis._limiter import HOLD_LUA


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


# --- holds learnt from servers are capped; nonsense numbers are ignored (issue 11) ------


def _wait_named(limiter: RedisRateLimiter) -> float | None:
    """0 when a non-blocking acquire is granted, else the wait its refusal names."""
    try:
        limiter.acquire("p", "m", 1, blocking=False)
    except RateLimitExceeded as exc:
        return exc.retry_after  # None would fail the caller's comparison
    return 0.0


def _hold_ttls(limiter: RedisRateLimiter, provider: str = "p") -> list[int]:
    return [int(limiter.redis.pttl(key)) for key in limiter.hold_keys(provider)]


def test_a_429_demanding_a_day_holds_the_fleet_for_max_server_hold_at_most(
    make_limiter: Any,
) -> None:
    a = make_limiter()
    b = make_limiter()
    a.observe("p", "m", None, RateLimitError("slow", status_code=429, retry_after=99999))
    requests_ttl, _ = _hold_ttls(a)
    assert 110_000 < requests_ttl <= 120_000
    with pytest.raises(RateLimitExceeded) as info:
        b.acquire("p", "m", 1, blocking=False)
    assert info.value.retry_after is not None and 110 < info.value.retry_after <= 120


def test_a_reset_of_99999h_holds_the_fleet_for_max_server_hold_at_most(
    make_limiter: Any,
) -> None:
    a = make_limiter(max_server_hold=30)
    assert a.max_server_hold == 30.0
    a.observe("p", "m", {"x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "99999h"})
    _, tokens_ttl = _hold_ttls(a)
    assert 20_000 < tokens_ttl <= 30_000
    assert a.failures == 0


@pytest.mark.parametrize(
    "headers",
    [
        {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "inf"},
        {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "nan"},
        {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "1e308"},
        {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "9" * 400 + "h"},
        {"x-ratelimit-remaining-requests": "inf", "x-ratelimit-reset-requests": "1s"},
        {"x-ratelimit-remaining-tokens": "1e400", "x-ratelimit-reset-tokens": "1s"},
        {"x-ratelimit-remaining-tokens": "-inf", "x-ratelimit-reset-tokens": "1s"},
    ],
)
def test_nonsense_headers_never_make_observe_raise(
    make_limiter: Any, headers: dict[str, str]
) -> None:
    limiter = make_limiter(limits={"p": {"rps": 10, "burst": 5, "tpm": 6000}})
    limiter.observe("p", "m", headers)
    assert limiter.failures == 0  # no Redis command failed (and was swallowed) either
    assert all(ttl <= 120_000 for ttl in _hold_ttls(limiter))
    status = limiter.status()["p"]
    assert all(math.isfinite(v) for v in status.values())


@pytest.mark.parametrize("retry_after", [float("inf"), float("nan"), 1e308, -5.0])
def test_nonsense_retry_after_never_makes_observe_raise(
    make_limiter: Any, retry_after: float
) -> None:
    limiter = make_limiter(default_retry_after=0.5)
    limiter.observe("p", "m", None, RateLimitError("x", status_code=429, retry_after=retry_after))
    assert limiter.failures == 0
    requests_ttl, _ = _hold_ttls(limiter)
    expected = 120_000 if retry_after == 1e308 else 500
    assert expected - 1000 < requests_ttl <= expected


@pytest.mark.parametrize("headers", [{"retry-after": "inf"}, {"retry-after": "99999"}])
def test_a_hostile_429_over_http_never_breaks_the_call_or_stalls_the_fleet(
    make_client: Any, make_limiter: Any, standin: Any, headers: dict[str, str]
) -> None:
    import chatcore
    from chatcore.testing.server import Reply

    limiter = make_limiter(max_server_hold=3)
    other_worker = make_limiter(max_server_hold=3)
    client = make_client(rate_limiter=limiter, retry=chatcore.RetryPolicy(max_retries=0))
    standin.enqueue(Reply.error(429, "slow down", headers=headers))
    with pytest.raises(RateLimitError) as info:
        client.chat("wire:gpt-4o-mini", "hello")
    assert info.value.retry_after is None or info.value.retry_after == 99999.0
    assert limiter.failures == 0
    requests_ttl, _ = _hold_ttls(limiter, "wire")
    # inf is ignored (the default 1 s hold); 99999 s is cut to the cap
    assert 0 < requests_ttl <= (1000 if info.value.retry_after is None else 3000)
    with pytest.raises(RateLimitExceeded) as held:
        other_worker.acquire("wire", "gpt-4o-mini", 1, blocking=False)
    assert held.value.retry_after is not None and held.value.retry_after <= 3


def test_acquire_cuts_a_longer_hold_to_its_own_cap(make_limiter: Any) -> None:
    """A hold written by a worker with a larger cap (or by an older version that had
    none) stalls a worker for no longer than its own ``max_server_hold``."""
    generous = make_limiter(max_server_hold=3600)
    strict = make_limiter(max_server_hold=2)
    generous.observe("p", "m", None, RateLimitError("x", status_code=429, retry_after=3000))
    assert _hold_ttls(generous)[0] > 2_000_000
    with pytest.raises(RateLimitExceeded) as info:
        strict.acquire("p", "m", 1, blocking=False)
    assert info.value.retry_after is not None and 1 < info.value.retry_after <= 2
    assert _hold_ttls(strict)[0] <= 2000  # cut for the whole fleet
    strict.redis.set(strict.hold_keys("p")[1], "1", px=10**12)  # an uncapped legacy hold
    with pytest.raises(RateLimitExceeded):
        strict.acquire("p", "m", 1, blocking=False)
    assert 0 < _hold_ttls(strict)[1] <= 2000


def test_the_hold_script_caps_what_it_is_given(make_limiter: Any) -> None:
    limiter = make_limiter()
    key = limiter.hold_keys("p")[0]
    hold = limiter.redis.register_script(HOLD_LUA)
    hold(keys=[key], args=[10**12, 5000])
    assert 4000 < limiter.redis.pttl(key) <= 5000
    hold(keys=[key], args=[1000, 5000])  # never shortened
    assert limiter.redis.pttl(key) > 4000


def test_bad_max_server_hold_is_a_configuration_error(redis_url: str) -> None:
    for bad in (0, -1.0, float("inf"), float("nan")):
        with pytest.raises(ConfigurationError, match="max_server_hold"):
            RedisRateLimiter(redis_url, max_server_hold=bad)


@given(
    headers=rate_limit_headers(),
    status=st.sampled_from([200, 429, 503]),
    estimated=estimated_times(),
    cap=st.sampled_from([0.5, 2.0, 120.0]),
)
@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
def test_no_answer_makes_observe_raise_or_hold_the_fleet_past_the_cap(
    redis_url: str, headers: dict[str, str], status: int, estimated: Any, cap: float
) -> None:
    error = None
    if status != 200:
        body = json.dumps({"error": "Model m is currently loading", "estimated_time": estimated})
        error = error_from_response(status, body, headers)
    limiter = RedisRateLimiter(
        redis_url,
        limits={"p": {"rps": 10, "burst": 1, "tpm": 6000}},
        prefix=f"t-{uuid.uuid4().hex[:12]}:",
        max_server_hold=cap,
    )
    try:
        limiter.observe("p", "m", headers, error)
        assert limiter.failures == 0
        assert all(ttl <= cap * 1000 for ttl in _hold_ttls(limiter))
        wait = _wait_named(limiter)
        assert wait is not None and wait <= max(cap, 0.1)
        assert limiter.failures == 0
    finally:
        for key in limiter.redis.scan_iter(match=f"{limiter.prefix}*"):
            limiter.redis.delete(key)
        limiter.close()


def test_the_plugin_passes_max_server_hold_to_the_limiter(redis_url: str) -> None:
    import chatcore_redis

    settings_like = SimpleNamespace(
        environ={"CHATCORE_REDIS_URL": redis_url, "CHATCORE_REDIS_LIMITER": "1"},
        rate_limits={},
        max_server_hold=12.5,
    )
    limiter = chatcore_redis.chatcore_rate_limiter(settings_like)
    assert isinstance(limiter, RedisRateLimiter)
    assert limiter.max_server_hold == 12.5
    assert limiter._local.max_server_hold == 12.5
