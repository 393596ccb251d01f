"""Redis going away: the failure policies, never hanging, logging once per interval,
recovery after a restart on the same port, and passwords never shown."""

from __future__ import annotations

import io
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from chatcore_redis_testing import response
from loguru import logger as loguru_logger

import chatcore
from chatcore.exceptions import RateLimitExceeded
from chatcore_redis import RedisCache, RedisRateLimiter, RedisUnavailableError

PASSWORD = "s3cret-Passw0rd-xyz"


@pytest.fixture
def log_sink() -> Iterator[io.StringIO]:
    sink = io.StringIO()
    handler = chatcore.configure_logging("DEBUG", sink=sink)
    yield sink
    chatcore.configure_logging(None)
    assert handler is not None
    loguru_logger.remove(handler)


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts TCP connections and never answers (a hung server)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield int(sock.getsockname()[1])


def _unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_fail_open_kill_mid_run_then_recover(
    own_redis: Any, make_client: Any, standin: Any
) -> None:
    server = own_redis()
    prefix = f"t-{uuid.uuid4().hex[:8]}:"
    limiter = RedisRateLimiter(
        server.url,
        limits={"wire": {"rps": 100, "burst": 5, "tpm": 600_000}},
        prefix=prefix,
        reconnect_interval=0.1,
    )
    cache = RedisCache(server.url, prefix=prefix, reconnect_interval=0.1)
    client = make_client(rate_limiter=limiter, cache=cache)
    stop = threading.Event()
    answered: list[int] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def run(worker: int) -> None:
        n = 0
        while not stop.is_set():
            n += 1
            try:
                client.chat("wire:gpt-4o-mini", f"worker {worker} request {n}")
            except BaseException as exc:  # pragma: no cover - reported below
                with lock:
                    errors.append(exc)
                return
            with lock:
                answered.append(worker)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(0.3)
    before_kill = len(answered)
    server.stop()  # SIGTERM mid-run
    time.sleep(0.5)
    during = len(answered) - before_kill
    assert not limiter.available
    server.start()  # the same port
    time.sleep(0.5)
    stop.set()
    for thread in threads:
        thread.join(timeout=10)
    assert not errors
    assert before_kill > 0 and during > 0, "requests went on while Redis was down"
    assert len(standin.requests) == len(answered), "no request was lost"
    assert limiter.fallback_grants > 0
    # recovered: Redis is used again by both
    fallback_after = limiter.fallback_grants
    client.chat("wire:gpt-4o-mini", "after the restart")
    assert (limiter.available, cache.available) == (True, True)
    assert limiter.fallback_grants == fallback_after
    assert limiter.status()["wire"]["requests_available"] < 5
    assert cache.get("missing") is None and cache.stats().size >= 1
    limiter.close()
    cache.close()


def test_fail_closed_refuses_then_recovers(own_redis: Any, make_client: Any, standin: Any) -> None:
    server = own_redis(password=PASSWORD)
    limiter = RedisRateLimiter(
        server.url,
        limits={"wire": {"rps": 100}},
        failure_policy="fail_closed",
        reconnect_interval=0.1,
    )
    client = make_client(rate_limiter=limiter)
    client.chat("wire:gpt-4o-mini", "hello")
    server.stop()
    with pytest.raises(RateLimitExceeded) as info:
        client.chat("wire:gpt-4o-mini", "hello again")
    message = str(info.value)
    assert PASSWORD not in message and PASSWORD not in repr(info.value)
    assert f"redis://:***@127.0.0.1:{server.port}/0" in message
    assert "fail_closed" in message
    assert len(standin.requests) == 1, "nothing was sent without the limiter"
    # within the reconnect interval it fails at once, without asking Redis again
    with pytest.raises(RateLimitExceeded):
        limiter.acquire("wire", "m", 1)
    server.start()
    time.sleep(0.15)
    assert client.chat("wire:gpt-4o-mini", "back").text
    assert limiter.available
    assert PASSWORD not in repr(limiter)
    limiter.close()


def test_cache_failure_policies(own_redis: Any, make_client: Any, standin: Any) -> None:
    server = own_redis(password=PASSWORD)
    open_cache = RedisCache(server.url, reconnect_interval=0.05)
    closed_cache = RedisCache(server.url, failure_policy="fail_closed", reconnect_interval=0.05)
    server.stop()
    # fail_open: a miss, a skipped store, counted
    assert open_cache.get("k") is None
    open_cache.set("k", response())
    stats = open_cache.stats()
    assert stats.errors >= 2 and stats.size == -1 and stats.misses == 1
    # fail_closed: a clear error naming the URL, password masked
    with pytest.raises(RedisUnavailableError) as info:
        closed_cache.get("k")
    assert PASSWORD not in str(info.value)
    assert info.value.url == f"redis://:***@127.0.0.1:{server.port}/0"
    with pytest.raises(RedisUnavailableError):
        closed_cache.clear()
    # the Client never fails a request for its cache: a miss, logged
    client = make_client(cache=closed_cache)
    assert client.chat("wire:gpt-4o-mini", "still answered").text
    server.start()
    time.sleep(0.1)
    closed_cache.set("k", response())
    assert closed_cache.get("k") is not None
    open_cache.close()
    closed_cache.close()


def test_never_hangs_on_a_silent_server(silent_port: int) -> None:
    limiter = RedisRateLimiter(
        f"redis://127.0.0.1:{silent_port}/0",
        limits={"p": {"rps": 1000}},
        socket_timeout=0.2,
        reconnect_interval=5.0,
    )
    started = time.monotonic()
    limiter.acquire("p", "m", 1)  # one socket timeout, then the local fallback
    first = time.monotonic() - started
    started = time.monotonic()
    for _ in range(20):
        limiter.acquire("p", "m", 1)  # Redis is known to be down: not asked again
    rest = time.monotonic() - started
    assert first < 1.0
    assert rest < 0.1
    assert limiter.fallback_grants == 21
    assert "Timeout" in (limiter._guard.last_error or "")
    limiter.close()


def test_unreachable_redis_logs_once_per_interval_without_the_password(
    log_sink: io.StringIO,
) -> None:
    url = f"redis://user:{PASSWORD}@127.0.0.1:{_unused_port()}/0"
    limiter = RedisRateLimiter(url, limits={"p": {"rps": 1000}}, reconnect_interval=0.0)
    for _ in range(25):
        limiter.acquire("p", "m", 1)
    cache = RedisCache(url, reconnect_interval=0.0, log_interval=0.0)
    cache.get("a")
    cache.get("b")
    text = log_sink.getvalue()
    assert PASSWORD not in text
    assert text.count("redis rate limiter at redis://user:***@127.0.0.1") == 1
    assert text.count("redis cache at") == 2  # log_interval=0: every failure
    assert limiter.failures == 25
    assert "chatcore.redis" in text
    assert PASSWORD not in repr(limiter) and PASSWORD not in repr(cache)
    assert limiter.url == f"redis://user:***@{url.split('@')[1]}"
    limiter.close()
    cache.close()


def test_recovery_is_logged(own_redis: Any, log_sink: io.StringIO) -> None:
    server = own_redis()
    limiter = RedisRateLimiter(server.url, reconnect_interval=0.05)
    server.stop()
    limiter.acquire("p", "m", 1)
    server.start()
    time.sleep(0.1)
    limiter.acquire("p", "m", 1)
    assert "is reachable again" in log_sink.getvalue()
    limiter.close()


def test_authentication(own_redis: Any) -> None:
    server = own_redis(password=PASSWORD)
    bare = f"redis://127.0.0.1:{server.port}/0"
    with RedisRateLimiter(server.url, limits={"p": {"rps": 5}}) as limiter:
        limiter.acquire("p", "m", 1, blocking=False)
        assert limiter.available
    with RedisRateLimiter(bare, password=PASSWORD, limits={"p": {"rps": 5}}) as limiter:
        limiter.acquire("p", "m", 1, blocking=False)
        assert limiter.available
    wrong = f"redis://:wrong-{PASSWORD}@127.0.0.1:{server.port}/0"
    with RedisRateLimiter(wrong, failure_policy="fail_closed") as limiter:
        with pytest.raises(RateLimitExceeded) as info:
            limiter.acquire("p", "m", 1)
        assert PASSWORD not in str(info.value)
        assert "Error" in str(info.value)
