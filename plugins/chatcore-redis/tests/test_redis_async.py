"""The async path (``aacquire``/``areconcile``/``aobserve``, ``aget``/``aset``) over real
sockets: a ``chatcore.AsyncClient`` and a sync ``Client`` sharing one limit, holds and
cache entries through the session's redis-server; many tasks under one limit; the failure
policies behaving exactly as on the sync path; the event loop never blocked; one asyncio
pool per event loop, closed without a warning.

No pytest-asyncio: each test drives its coroutines with ``asyncio.run``.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import logging
import re
import socket
import sys
import threading
import time
import warnings
from collections.abc import Awaitable, Callable, Iterator
from types import SimpleNamespace
from typing import Any

import attrs
import pytest
import redis
from chatcore_redis_testing import MODEL, TEST_KEY, WirePlugin, response

import chatcore
from chatcore._plugins import PluginHost
from chatcore.exceptions import RateLimitError, RateLimitExceeded
from chatcore.testing.server import Reply, StandInServer
from chatcore_redis import (
    RedisCache,
    RedisCacheStats,
    RedisRateLimiter,
    RedisTicket,
    RedisUnavailableError,
)

PASSWORD = "s3cret-Passw0rd-xyz"
RATE = 25.0
#: A burst of 2, not 1: with a bucket of one request, every millisecond a waiter wakes
#: up late (asyncio's timers are up to 1 ms late) is capacity lost for good; with two, it
#: is absorbed and the measured rate is the limiter's, not the timers'.
BURST = 2
DURATION = 3.0


# ------------------------------------------------------------------------------------------
# Helpers


class Recording(RedisRateLimiter):
    """A limiter noting every grant: ``(path, monotonic time)``, path ``sync`` for
    :meth:`acquire` and ``async`` for :meth:`aacquire`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.grants: list[tuple[str, float]] = []
        self._grants_lock = threading.Lock()

    def _note(self, path: str) -> None:
        with self._grants_lock:
            self.grants.append((path, time.monotonic()))

    def acquire(self, *args: Any, **kwargs: Any) -> RedisTicket:
        ticket = super().acquire(*args, **kwargs)
        self._note("sync")
        return ticket

    async def aacquire(self, *args: Any, **kwargs: Any) -> RedisTicket:
        ticket = await super().aacquire(*args, **kwargs)
        self._note("async")
        return ticket


def _async_client(base_url: str, **kwargs: Any) -> chatcore.AsyncClient:
    host = PluginHost(load_entry_points=False, plugins=[WirePlugin()], environ={})
    kwargs.setdefault("retry", chatcore.RetryPolicy(max_retries=0))
    return chatcore.AsyncClient(
        plugin_host=host,
        providers={"wire": {"api_key": TEST_KEY, "base_url": base_url}},
        environ={},
        **kwargs,
    )


def _sync_client(base_url: str, **kwargs: Any) -> chatcore.Client:
    host = PluginHost(load_entry_points=False, plugins=[WirePlugin()], environ={})
    kwargs.setdefault("retry", chatcore.RetryPolicy(max_retries=0))
    return chatcore.Client(
        plugin_host=host,
        providers={"wire": {"api_key": TEST_KEY, "base_url": base_url}},
        environ={},
        **kwargs,
    )


def _rate(times: list[float]) -> float:
    """Grants per second once the initial burst is spent: from the grant after it to
    the last (whatever the bucket held at the start, at most ``BURST``)."""
    times = sorted(times)
    return (len(times) - 1 - BURST) / (times[-1] - times[BURST])


def _busiest_second(times: list[float]) -> int:
    """The most grants within any one-second window."""
    times = sorted(times)
    most = 0
    for i, start in enumerate(times):
        most = max(most, sum(1 for t in times[i:] if t < start + 1.0))
    return most


class Heartbeat:
    """A task ticking every 5 ms: the longest gap between ticks is how long the event
    loop was blocked."""

    def __init__(self) -> None:
        self.ticks: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def _beat(self) -> None:
        while True:
            self.ticks.append(time.monotonic())
            await asyncio.sleep(0.005)

    def __enter__(self) -> Heartbeat:
        self.ticks.append(time.monotonic())  # a loop blocked before the first beat counts
        self._task = asyncio.get_running_loop().create_task(self._beat())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()

    @property
    def longest_gap(self) -> float:
        ticks = [*self.ticks, time.monotonic()]
        return max(b - a for a, b in itertools.pairwise(ticks))


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts TCP connections and never answers (a hung server)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield int(sock.getsockname()[1])


@pytest.fixture
def made(redis_url: str, prefix: str) -> Iterator[Callable[..., Any]]:
    """Build limiters and caches on the session's server under this test's prefix; they
    are closed at the end."""
    objects: list[Any] = []

    def make(kind: type[Any] = RedisRateLimiter, **kwargs: Any) -> Any:
        kwargs.setdefault("prefix", prefix)
        obj = kind(kwargs.pop("url", redis_url), **kwargs)
        objects.append(obj)
        return obj

    yield make
    for obj in objects:
        obj.close()


# ------------------------------------------------------------------------------------------
# One limit for the sync and the async client


#: The sync side: threads pausing between requests. Polling waiters have no queue: the
#: first to ask when a request is due gets it, and a thread (time.sleep) wakes up before
#: an asyncio task (whose timers are up to 1 ms late), so threads that never paused would
#: take every grant while they run. Two pausing threads ask for less than the limit; the
#: tasks ask for all of it: together they ask for far more.
SYNC_THREADS = 2
THINK = 0.1
ASYNC_TASKS = 8


@pytest.mark.slow
@pytest.mark.timing
def test_an_async_and_a_sync_client_share_one_limit(made: Any, standin: StandInServer) -> None:
    limits = {"wire": {"rps": RATE, "burst": BURST}}
    sync_limiter = made(Recording, limits=limits)
    async_limiter = made(Recording, limits=limits)  # another worker, same Redis and prefix
    sync_client = _sync_client(standin.base_url, rate_limiter=sync_limiter)
    stop: list[float] = []
    answered = {"sync": 0, "async": 0}
    errors: list[BaseException] = []
    lock = threading.Lock()

    def sync_side() -> None:
        sync_client.chat(MODEL, "warm up", cache=False)
        ready.wait()

        def run() -> None:
            while time.monotonic() < stop[0]:
                try:
                    sync_client.chat(MODEL, "hello from a thread", cache=False)
                except BaseException as exc:  # pragma: no cover - reported below
                    with lock:
                        errors.append(exc)
                    return
                with lock:
                    answered["sync"] += 1
                time.sleep(THINK)

        threads = [threading.Thread(target=run) for _ in range(SYNC_THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    async def async_side() -> None:
        client = _async_client(standin.base_url, rate_limiter=async_limiter)
        try:
            await client.chat(MODEL, "warm up", cache=False)
            await asyncio.to_thread(ready.wait)

            async def run() -> None:
                while time.monotonic() < stop[0]:
                    await client.chat(MODEL, "hello from a task", cache=False)
                    answered["async"] += 1

            await asyncio.gather(*(run() for _ in range(ASYNC_TASKS)))
        finally:
            await client.aclose()
            await async_limiter.aclose()

    def warmed_up() -> None:
        sync_limiter.grants.clear()
        async_limiter.grants.clear()
        stop.append(time.monotonic() + DURATION)

    ready = threading.Barrier(2, timeout=30, action=warmed_up)
    worker = threading.Thread(target=sync_side)
    worker.start()
    asyncio.run(async_side())
    worker.join(timeout=30)
    assert not errors
    grants = [t for _, t in sync_limiter.grants + async_limiter.grants]
    assert {path for path, _ in async_limiter.grants} == {"async"}, "the native async path"
    rate = _rate(grants)
    busiest = _busiest_second(grants)
    print(
        f"\nsync Client ({SYNC_THREADS} threads) + AsyncClient ({ASYNC_TASKS} tasks),"
        f" limit {RATE:g}/s: {len(grants)}"
        f" grants = {rate:.2f}/s (sync {len(sync_limiter.grants)}, async"
        f" {len(async_limiter.grants)}); busiest second {busiest}"
    )
    assert rate == pytest.approx(RATE, rel=0.05)
    assert busiest <= BURST + RATE * 1.05
    # both sides were served
    assert len(sync_limiter.grants) >= 0.15 * len(grants)
    assert len(async_limiter.grants) >= 0.15 * len(grants)
    assert len(standin.requests) == answered["sync"] + answered["async"] + 2  # + warm-ups


@pytest.mark.slow
@pytest.mark.timing
def test_many_tasks_under_one_limit(made: Any, standin: StandInServer) -> None:
    limiter = made(Recording, limits={"wire": {"rps": RATE, "burst": BURST}})
    answered = 0

    async def main() -> None:
        nonlocal answered
        async with limiter:
            client = _async_client(standin.base_url, rate_limiter=limiter)
            await client.chat(MODEL, "warm up", cache=False)
            limiter.grants.clear()
            stop = time.monotonic() + DURATION

            async def run(n: int) -> None:
                nonlocal answered
                while time.monotonic() < stop:
                    await client.chat(MODEL, f"task {n}", cache=False)
                    answered += 1

            await asyncio.gather(*(run(n) for n in range(64)))
            await client.aclose()

    asyncio.run(main())
    times = [t for _, t in limiter.grants]
    rate = _rate(times)
    busiest = _busiest_second(times)
    print(
        f"\n64 tasks, limit {RATE:g}/s: {len(times)} grants = {rate:.2f}/s;"
        f" busiest second {busiest}; waits {limiter.waits}"
    )
    assert rate == pytest.approx(RATE, rel=0.05)
    assert busiest <= BURST + RATE * 1.05
    assert limiter.waits > 0 and limiter.fallback_grants == 0
    assert len(standin.requests) == answered + 1


# ------------------------------------------------------------------------------------------
# Holds learnt on one path, seen by the other (and capped)


def _hold_ttl(limiter: RedisRateLimiter, provider: str = "wire") -> int:
    return max(int(limiter.redis.pttl(k)) for k in limiter.hold_keys(provider))


@pytest.mark.timing
def test_a_429_learnt_by_the_async_client_holds_the_sync_one(
    made: Any, standin: StandInServer
) -> None:
    async_limiter = made(max_server_hold=1.0)
    sync_limiter = made(max_server_hold=1.0)
    standin.enqueue(Reply.error(429, "slow down", headers={"retry-after": "99999"}))

    async def learn() -> None:
        client = _async_client(standin.base_url, rate_limiter=async_limiter)
        with pytest.raises(RateLimitError) as info:
            await client.chat(MODEL, "hello")
        assert info.value.retry_after == 99999.0
        await client.aclose()
        await async_limiter.aclose()

    asyncio.run(learn())
    assert 0 < _hold_ttl(sync_limiter) <= 1000, "99999 s cut to max_server_hold"
    with pytest.raises(RateLimitExceeded) as held:
        sync_limiter.acquire("wire", "gpt-4o-mini", 1, blocking=False)
    assert held.value.retry_after is not None and 0.5 < held.value.retry_after <= 1.0
    client = _sync_client(standin.base_url, rate_limiter=sync_limiter)
    started = time.monotonic()
    assert client.chat(MODEL, "after the hold").text
    assert 0.4 < time.monotonic() - started < 1.3, "held, for no longer than the cap"
    assert sync_limiter.waits == 1
    assert (async_limiter.failures, sync_limiter.failures) == (0, 0)
    client.close()


@pytest.mark.timing
def test_a_429_learnt_by_the_sync_client_holds_the_async_one(
    made: Any, standin: StandInServer
) -> None:
    sync_limiter = made(max_server_hold=1.0)
    async_limiter = made(max_server_hold=1.0)
    standin.enqueue(Reply.error(429, "slow down", headers={"retry-after": "99999"}))
    client = _sync_client(standin.base_url, rate_limiter=sync_limiter)
    with pytest.raises(RateLimitError):
        client.chat(MODEL, "hello")
    client.close()
    assert 0 < _hold_ttl(async_limiter) <= 1000

    async def held() -> float:
        with pytest.raises(RateLimitExceeded) as info:
            await async_limiter.aacquire("wire", "gpt-4o-mini", 1, blocking=False)
        assert info.value.retry_after is not None and 0.5 < info.value.retry_after <= 1.0
        with pytest.raises(RateLimitExceeded, match="max_wait"):
            await async_limiter.aacquire("wire", "gpt-4o-mini", 1, max_wait=0.1)
        aclient = _async_client(standin.base_url, rate_limiter=async_limiter)
        with Heartbeat() as beat:
            started = time.monotonic()
            assert (await aclient.chat(MODEL, "after the hold")).text
            elapsed = time.monotonic() - started
        assert beat.longest_gap < 0.1, "waited on the event loop, never blocking it"
        await aclient.aclose()
        await async_limiter.aclose()
        return elapsed

    elapsed = asyncio.run(held())
    assert 0.3 < elapsed < 1.3, "held, for no longer than the cap"
    assert async_limiter.waits == 1


def test_header_holds_and_clamps_cross_both_ways(made: Any) -> None:
    limits = {"p": {"rps": 100, "burst": 10}}
    sync_limiter = made(limits=limits, max_server_hold=2.0)
    async_limiter = made(limits=limits, max_server_hold=2.0)
    spent = {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "10m"}

    async def learn() -> None:
        await async_limiter.aobserve("p", "m", spent)
        await async_limiter.aclose()

    asyncio.run(learn())
    status = sync_limiter.status()
    assert 1.5 < status["p"]["held_for"] <= 2.0, "10 minutes cut to the 2 s cap"
    assert status["p"]["requests_available"] < 1
    sync_limiter.redis.delete(*sync_limiter.hold_keys("p"))
    sync_limiter.observe("p", "m", {**spent, "x-ratelimit-reset-requests": "1s"})

    async def see() -> dict[str, dict[str, float]]:
        try:
            with pytest.raises(RateLimitExceeded) as info:
                await async_limiter.aacquire("p", "m", 1, blocking=False)
            assert info.value.retry_after is not None and 0.5 < info.value.retry_after <= 1.0
            return await async_limiter.astatus()
        finally:
            await async_limiter.aclose()

    seen = asyncio.run(see())
    assert 0.5 < seen["p"]["held_for"] <= 1.0


def test_reconcile_on_either_path_settles_the_shared_token_bucket(made: Any) -> None:
    limits = {"p": {"tpm": 6000, "token_burst": 1000}}
    sync_limiter = made(limits=limits)
    async_limiter = made(limits=limits)

    async def spend() -> None:
        ticket = await async_limiter.aacquire("p", "m", 900)
        assert sync_limiter.status()["p"]["tokens_available"] < 150
        await async_limiter.areconcile(ticket, 100)  # 800 reserved tokens given back
        await async_limiter.areconcile(ticket, 100)  # settled once only
        await async_limiter.aclose()

    asyncio.run(spend())
    assert 880 < sync_limiter.status()["p"]["tokens_available"] <= 1000
    ticket = sync_limiter.acquire("p", "m", 500)
    sync_limiter.reconcile(ticket, 900)  # 400 more than reserved: charged

    async def look() -> float:
        try:
            return (await async_limiter.astatus())["p"]["tokens_available"]
        finally:
            await async_limiter.aclose()

    assert asyncio.run(look()) < 120


# ------------------------------------------------------------------------------------------
# One cache for both clients


def test_cache_entries_cross_between_the_async_and_the_sync_client(
    made: Any, standin: StandInServer
) -> None:
    async_cache = made(RedisCache, ttl=60)
    sync_cache = made(RedisCache, ttl=60)
    sync_client = _sync_client(standin.base_url, cache=sync_cache)

    async def main() -> None:
        client = _async_client(standin.base_url, cache=async_cache)
        try:
            first = await client.chat(MODEL, "written by the async client")
            assert not first.cached
            served = sync_client.chat(MODEL, "written by the async client")
            assert served.cached and served.text == first.text
            written = sync_client.chat(MODEL, "written by the sync client")
            assert not written.cached
            read = await client.chat(MODEL, "written by the sync client")
            assert read.cached and read.text == written.text
            assert (await async_cache.astats()).size == 2
        finally:
            await client.aclose()
            await async_cache.aclose()

    asyncio.run(main())
    sync_client.close()
    assert len(standin.requests) == 2, "each answer fetched once, served twice"
    for cache in (async_cache, sync_cache):
        stats = cache.stats()
        assert (stats.hits, stats.misses, stats.stores, stats.errors) == (1, 1, 1, 0)


def test_async_cache_operations(made: Any) -> None:
    cache = made(RedisCache, ttl=60)
    other = made(RedisCache, prefix=cache.prefix + "other:")

    async def main() -> None:
        try:
            assert await cache.aget("k") is None
            await cache.aset("k", response("stored"), ttl=0.2)
            found = await cache.aget("k")
            assert found is not None and found.text == "stored"
            await other.aset("k", response("elsewhere"))
            await asyncio.sleep(0.3)
            assert await cache.aget("k") is None, "expired by Redis"
            for n in range(1200):  # more than one SCAN page and one UNLINK batch
                await cache.aset(f"n{n}", response())
            assert (await cache.astats()).size == 1200
            await cache.aclear()
            assert (await cache.astats()).size == 0
            assert (await other.astats()).size == 1, "clear() touched its prefix only"
            await cache.aset("big", response("x" * 2_000_000))
        finally:
            await cache.aclose()
            await other.aclose()

    asyncio.run(main())
    stats = cache.stats()
    assert (stats.hits, stats.misses, stats.oversize, stats.errors) == (1, 2, 1, 0)
    assert len(cache) == 0 and len(other) == 1


# ------------------------------------------------------------------------------------------
# Redis stopped: the async path behaves exactly as the sync one


def _normalized(value: Any) -> Any:
    """An outcome without what differs from run to run: timings, the error text of the
    socket layer (its type is kept)."""
    if isinstance(value, BaseException):
        text = re.sub(r"unavailable \((\w+):[^)]*(\)[^;]*)*\);", r"unavailable (\1);", str(value))
        text = re.sub(r"\d+\.\d+s", "#s", text)
        retry_after = getattr(value, "retry_after", None)
        return (
            type(value).__name__,
            text,
            None if retry_after is None else round(retry_after, 1),
            getattr(value, "key", None),
            getattr(value, "url", None),
        )
    if isinstance(value, RedisTicket):
        return ("ticket", value.keys, value.tokens, value.local is not None, value.settled)
    if isinstance(value, RedisCacheStats):
        return attrs.asdict(value)
    if isinstance(value, chatcore.ChatResponse):
        return ("response", value.text)
    return value


Call = Callable[..., Awaitable[Any]]


async def _limiter_scenario(call: Call) -> list[Any]:
    """The same calls, made through ``call(method, *args, **kwargs)``."""
    outcomes: list[Any] = []

    async def attempt(method: str, *args: Any, **kwargs: Any) -> Any:
        try:
            value = await call(method, *args, **kwargs)
        except Exception as exc:
            outcomes.append(_normalized(exc))
            return None
        outcomes.append(_normalized(value))
        return value

    ticket = await attempt("acquire", "p", "m", 100)
    await attempt("acquire", "p", "m", 100, blocking=False)
    await attempt("reconcile", ticket, 10)
    await attempt("observe", "p", "m", None, RateLimitError("x", status_code=429, retry_after=5))
    await attempt("acquire", "p", "m", 1, max_wait=0.05)
    await attempt("acquire", "q", "m", 1)
    spent = {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "2s"}
    await attempt("observe", "q", "m", spent)
    await attempt("acquire", "q", "m", 1, blocking=False)
    outcomes.append(_normalized(ticket))
    return outcomes


async def _cache_scenario(call: Call) -> list[Any]:
    outcomes: list[Any] = []
    for method, args in (
        ("get", ("k",)),
        ("set", ("k", response())),
        ("set", ("big", response("x" * 5000))),
        ("get", ("k",)),
        ("stats", ()),
        ("clear", ()),
    ):
        try:
            outcomes.append(_normalized(await call(method, *args)))
        except Exception as exc:
            outcomes.append(_normalized(exc))
    return outcomes


def _run_both(obj_sync: Any, obj_async: Any, scenario: Callable[[Call], Any]) -> tuple[Any, Any]:
    """``scenario`` with the sync methods of ``obj_sync``, then with the async methods
    of ``obj_async`` (each on its own event loop)."""

    async def sync_call(method: str, *args: Any, **kwargs: Any) -> Any:
        return getattr(obj_sync, method)(*args, **kwargs)

    async def async_call(method: str, *args: Any, **kwargs: Any) -> Any:
        return await getattr(obj_async, "a" + method)(*args, **kwargs)

    async def run_async() -> Any:
        try:
            return await scenario(async_call)
        finally:
            await obj_async.aclose()

    return asyncio.run(scenario(sync_call)), asyncio.run(run_async())


@pytest.mark.parametrize("policy", ["fail_open", "fail_closed"])
@pytest.mark.parametrize("reconnect_interval", [0.0, 60.0])
def test_a_stopped_redis_fails_the_same_way_on_both_paths(
    own_redis: Any, policy: str, reconnect_interval: float
) -> None:
    server = own_redis(password=PASSWORD)
    options: dict[str, Any] = {
        "failure_policy": policy,
        "reconnect_interval": reconnect_interval,
        "log_interval": 3600.0,
    }
    limits = {"p": {"rps": 10, "burst": 1, "tpm": 60_000}}
    limiters = [RedisRateLimiter(server.url, limits=limits, **options) for _ in range(2)]
    caches = [RedisCache(server.url, max_value_bytes=4000, **options) for _ in range(2)]
    limiters[0].acquire("warm", "up", 1)  # both paths had a connection before the stop

    async def warm() -> None:
        await limiters[1].aacquire("warm", "up", 1)
        await caches[1].aget("warm")
        await limiters[1].aclose()
        await caches[1].aclose()

    asyncio.run(warm())
    caches[0].get("warm")
    server.stop()
    sync_outcomes, async_outcomes = _run_both(limiters[0], limiters[1], _limiter_scenario)
    assert async_outcomes == sync_outcomes
    sync_cache, async_cache = _run_both(caches[0], caches[1], _cache_scenario)
    assert async_cache == sync_cache
    for a, b in (limiters, caches):
        assert (a.available, b.available) == (False, False)
        assert b._guard.failures == a._guard.failures > 0
        assert b._guard.last_error.split(":")[0] == a._guard.last_error.split(":")[0]
    assert limiters[1].fallback_grants == limiters[0].fallback_grants
    text = repr(sync_outcomes + async_outcomes + sync_cache + async_cache)
    assert PASSWORD not in text
    if policy == "fail_open":
        assert limiters[1].fallback_grants == 2
        assert "fail_closed" not in text
    else:
        assert limiters[1].fallback_grants == 0
        assert f"redis://:***@127.0.0.1:{server.port}/0" in text
        assert "RedisUnavailableError" in text and "RateLimitExceeded" in text
    for obj in (*limiters, *caches):
        obj.close()


def test_the_async_client_under_both_policies(own_redis: Any, standin: StandInServer) -> None:
    server = own_redis(password=PASSWORD)
    limits = {"wire": {"rps": 100}}
    open_limiter = RedisRateLimiter(server.url, limits=limits, reconnect_interval=0.1)
    closed_limiter = RedisRateLimiter(
        server.url, limits=limits, failure_policy="fail_closed", reconnect_interval=0.1
    )
    closed_cache = RedisCache(server.url, failure_policy="fail_closed", reconnect_interval=0.1)

    async def main() -> None:
        open_client = _async_client(standin.base_url, rate_limiter=open_limiter)
        closed_client = _async_client(
            standin.base_url, rate_limiter=closed_limiter, cache=closed_cache
        )
        try:
            assert (await closed_client.chat(MODEL, "before")).text
            server.stop()
            # fail_open: requests go on, granted by the local limiter
            assert (await open_client.chat(MODEL, "open while down")).text
            assert open_limiter.fallback_grants == 1
            # fail_closed: refused, nothing sent, the password masked
            sent = len(standin.requests)
            with pytest.raises(RateLimitExceeded) as info:
                await closed_client.chat(MODEL, "closed while down")
            assert PASSWORD not in str(info.value)
            assert f"redis://:***@127.0.0.1:{server.port}/0" in str(info.value)
            assert len(standin.requests) == sent
            # the cache: an error the client treats as a miss
            with pytest.raises(RedisUnavailableError):
                await closed_cache.aget("k")
            await asyncio.to_thread(server.start)
            await asyncio.sleep(0.15)
            # back: both reconnect by themselves (new connections on the same pool)
            assert (await closed_client.chat(MODEL, "back")).text
            assert (await closed_client.chat(MODEL, "back")).cached
            assert (await open_client.chat(MODEL, "back again")).text
            assert closed_limiter.available and closed_cache.available
            assert open_limiter.available and open_limiter.fallback_grants == 1
        finally:
            await open_client.aclose()
            await closed_client.aclose()
            for obj in (open_limiter, closed_limiter, closed_cache):
                await obj.aclose()

    asyncio.run(main())


# ------------------------------------------------------------------------------------------
# The event loop is never blocked


@pytest.mark.timing
def test_waiting_never_blocks_the_event_loop(made: Any) -> None:
    limiter = made(limits={"p": {"rps": 10, "burst": 1}})

    async def main() -> float:
        try:
            with Heartbeat() as beat:
                started = time.monotonic()
                await asyncio.gather(*(limiter.aacquire("p", "m", 1) for _ in range(6)))
                await limiter.aobserve(
                    "p", "m", None, RateLimitError("x", status_code=429, retry_after=0.3)
                )
                await limiter.aacquire("p", "m", 1)
                elapsed = time.monotonic() - started
            assert beat.longest_gap < 0.08, f"the loop was blocked {beat.longest_gap:.3f}s"
            return elapsed
        finally:
            await limiter.aclose()

    elapsed = asyncio.run(main())
    assert 0.7 < elapsed < 1.5  # 5 waits of 0.1 s, then the 0.3 s hold
    assert limiter.waits >= 5


@pytest.mark.timing
def test_a_hung_redis_never_blocks_the_event_loop(silent_port: int) -> None:
    url = f"redis://127.0.0.1:{silent_port}/0"
    options: dict[str, Any] = {"socket_timeout": 0.3, "reconnect_interval": 0.0}
    limiter = RedisRateLimiter(url, limits={"p": {"rps": 10, "burst": 1}}, **options)
    cache = RedisCache(url, **options)

    async def main() -> None:
        try:
            with Heartbeat() as beat:
                started = time.monotonic()
                await limiter.aacquire("p", "m", 1)  # a timeout, then the local limiter
                await limiter.aacquire("p", "m", 1)  # a timeout, then a 0.1 s local wait
                assert await cache.aget("k") is None
                elapsed = time.monotonic() - started
            assert beat.longest_gap < 0.1, f"the loop was blocked {beat.longest_gap:.3f}s"
            assert 0.8 < elapsed < 1.5, "three socket timeouts of 0.3 s and a 0.1 s wait"
        finally:
            await limiter.aclose()
            await cache.aclose()

    asyncio.run(main())
    assert limiter.fallback_grants == 2
    assert "Timeout" in (limiter._guard.last_error or "")
    assert cache.stats().errors >= 1
    limiter.close()
    cache.close()


def test_a_cancelled_wait_leaves_the_limiter_usable(made: Any) -> None:
    limiter = made(limits={"p": {"rps": 1, "burst": 1}})

    async def main() -> None:
        try:
            await limiter.aacquire("p", "m", 1)
            waiting = asyncio.ensure_future(limiter.aacquire("p", "m", 1))
            await asyncio.sleep(0.1)
            waiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiting
            with pytest.raises(RateLimitExceeded):  # the wait took nothing
                await limiter.aacquire("p", "m", 1, blocking=False)
            assert limiter.available
        finally:
            await limiter.aclose()

    asyncio.run(main())


# ------------------------------------------------------------------------------------------
# Connections: one asyncio pool per event loop, closed without a warning


class _Trouble:
    """Collects warnings, unraisable exceptions (``__del__`` of an unclosed connection)
    and the asyncio logger's complaints (a task destroyed while pending)."""

    def __init__(self) -> None:
        self.records: list[str] = []

    def __enter__(self) -> _Trouble:
        # what earlier tests of this process left for the collector is theirs, not ours
        gc.collect()
        gc.collect()
        self._warnings = warnings.catch_warnings(record=True)
        self._caught = self._warnings.__enter__()
        warnings.simplefilter("always")
        self._hook = sys.unraisablehook
        sys.unraisablehook = lambda u: self.records.append(f"unraisable: {u.exc_value!r}")
        self._handler = logging.Handler(logging.WARNING)
        self._handler.emit = lambda r: self.records.append(f"asyncio: {r.getMessage()}")  # type: ignore[method-assign]
        logging.getLogger("asyncio").addHandler(self._handler)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.collect()
        gc.collect()
        logging.getLogger("asyncio").removeHandler(self._handler)
        sys.unraisablehook = self._hook
        self.records += [f"{w.category.__name__}: {w.message}" for w in self._caught]
        self._warnings.__exit__(*exc)


def _use_from_many_loops(redis_url: str, prefix: str) -> None:
    """Use a limiter and a cache from several event loops, one after the other and at
    the same time, closing them the documented ways (its locals die on return)."""
    limiter = RedisRateLimiter(redis_url, limits={"p": {"rps": 1000}}, prefix=prefix)
    cache = RedisCache(redis_url, prefix=prefix)
    connector = limiter._io.connector

    async def use() -> Any:
        await limiter.aacquire("p", "m", 1)
        await cache.aset("k", response())
        assert await cache.aget("k") is not None
        return await connector.client()

    async def use_then_close() -> None:
        await use()
        await limiter.aclose()
        await cache.aclose()
        assert connector.loops == 0

    # asyncio.run, closed by aclose(); then another loop, left to asyncio.run's
    # shutdown of async generators
    asyncio.run(use_then_close())
    asyncio.run(use())
    assert connector.loops == 0
    # two loops at the same time, in two threads: two pools
    both = threading.Barrier(2, timeout=10)
    clients: list[Any] = []

    async def concurrently() -> None:
        clients.append(await use())
        await asyncio.to_thread(both.wait)
        assert connector.loops == 2
        await asyncio.to_thread(both.wait)

    thread = threading.Thread(target=asyncio.run, args=(concurrently(),))
    thread.start()
    asyncio.run(concurrently())
    thread.join(timeout=10)
    assert len(clients) == 2 and clients[0] is not clients[1]
    assert connector.loops == 0
    # a loop run by hand, closed with aclose() before the loop
    loop = asyncio.new_event_loop()
    loop.run_until_complete(use())
    loop.run_until_complete(limiter.aclose())
    loop.run_until_complete(cache.aclose())
    loop.close()
    assert connector.loops == 0
    # the sync path is unaffected by all this
    limiter.acquire("p", "m", 1)
    assert cache.get("k") is not None
    limiter.close()
    cache.close()


def test_one_pool_per_loop_closed_without_a_warning(redis_url: str, prefix: str) -> None:
    with _Trouble() as trouble:
        _use_from_many_loops(redis_url, prefix)
    assert trouble.records == []


def test_an_unclosed_loop_client_is_detected(redis_url: str, prefix: str) -> None:
    """The check above can fail: a connection left open on a dead loop is reported."""
    with _Trouble() as trouble:
        limiter = RedisRateLimiter(redis_url, prefix=prefix)
        loop = asyncio.new_event_loop()
        loop.run_until_complete(limiter.aacquire("p", "m", 1))
        loop.close()  # neither aclose() nor shutdown_asyncgens()
        del limiter
    assert any("nclosed" in r for r in trouble.records)


def test_the_hooks_share_one_async_pool_per_loop(redis_url: str, prefix: str) -> None:
    import chatcore_redis

    environ = {
        "CHATCORE_REDIS_URL": redis_url,
        "CHATCORE_REDIS_LIMITER": "1",
        "CHATCORE_REDIS_CACHE": "1",
        "CHATCORE_REDIS_PREFIX": prefix,
    }
    settings = SimpleNamespace(environ=environ, rate_limits={"p": {"rps": 100}}, cache_ttl=60)
    limiter = chatcore_redis.chatcore_rate_limiter(settings)
    cache = chatcore_redis.chatcore_cache(settings)
    again = chatcore_redis.chatcore_rate_limiter(settings)
    assert limiter is not None and cache is not None and again is not None
    assert limiter._io.connector is cache._io.connector is again._io.connector

    async def main() -> None:
        await limiter.aacquire("p", "m", 1)
        await cache.aset("k", response())
        assert await cache.aget("k") is not None
        assert limiter._io.connector.loops == 1

    asyncio.run(main())
    assert limiter._io.connector.loops == 0, "closed with the loop"


def test_a_client_built_elsewhere_lends_its_settings_to_the_async_path(own_redis: Any) -> None:
    server = own_redis(password=PASSWORD)
    blocking = redis.Redis.from_url(server.url, socket_timeout=0.5)
    limiter = RedisRateLimiter(client=blocking, limits={"p": {"rps": 100}})
    cache = RedisCache(client=blocking)

    async def main() -> None:
        try:
            await limiter.aacquire("p", "m", 1)
            await cache.aset("k", response())
            assert await cache.aget("k") is not None
            client = await limiter._io.connector.client()
            options = client.connection_pool.connection_kwargs
            assert (options["password"], options["socket_timeout"]) == (PASSWORD, 0.5)
        finally:
            await limiter.aclose()

    asyncio.run(main())
    assert limiter.available and limiter.fallback_grants == 0
    assert PASSWORD not in repr(limiter) and PASSWORD not in limiter.url
    assert blocking.ping(), "aclose() leaves a client it was given open"
    blocking.close()
