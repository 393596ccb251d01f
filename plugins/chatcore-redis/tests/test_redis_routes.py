"""Route cooldowns, failure counts and in-flight counts kept in Redis: what one worker
learns about a deployment (a bad key, a run of failures) every other worker sees, in
another process, under the sync and the async client, and a Redis outage never fails a
routed call."""

from __future__ import annotations

import asyncio
import multiprocessing
from collections.abc import Iterator
from typing import Any

import pytest
from chatcore_redis_testing import TEST_KEY, WirePlugin, route_worker

import chatcore
from chatcore._plugins import PluginHost
from chatcore.testing.server import Reply, StandInServer
from chatcore_redis import RedisRateLimiter


@pytest.fixture
def pair() -> Iterator[tuple[StandInServer, StandInServer]]:
    with StandInServer(api_key=TEST_KEY) as a, StandInServer(api_key=TEST_KEY) as b:
        yield a, b


def routes(a: StandInServer, b: StandInServer, **extra: Any) -> dict[str, Any]:
    def deployment(name: str, srv: StandInServer) -> dict[str, Any]:
        options = {"base_url": srv.base_url, "api_key": TEST_KEY}
        return {"model": "wire:gpt-4o-mini", "name": name, "options": options}

    return {
        "main": {
            "strategy": "ordered",
            "cooldown_seconds": 60,
            "deployments": [deployment("a", a), deployment("b", b)],
            **extra,
        }
    }


def client(limiter: Any, table: dict[str, Any], cls: Any = chatcore.Client) -> Any:
    host = PluginHost(load_entry_points=False, plugins=[WirePlugin()], environ={})
    return cls(
        plugin_host=host,
        environ={},
        routes=table,
        rate_limiter=limiter,
        retry=chatcore.RetryPolicy(sleep=lambda _s: None),
    )


def test_a_cooldown_written_by_one_process_is_obeyed_by_another(redis_url, prefix, pair):
    a, b = pair
    a.enqueue(Reply.error(401, "bad key"))
    table = routes(a, b)
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    proc = ctx.Process(target=route_worker, args=(redis_url, prefix, table, 1, results))
    proc.start()
    served = results.get(timeout=60)
    proc.join(timeout=30)
    assert proc.exitcode == 0
    assert served == ["route:main/b"]  # a refused the key: cooled down, b answered
    assert len(a.requests) == 1

    # this process never saw a fail; it learns the cooldown from Redis
    with RedisRateLimiter(redis_url, prefix=prefix) as limiter, client(limiter, table) as mine:
        for _ in range(4):
            assert mine.chat("route:main", "Hi").deployment == "route:main/b"
        left = limiter.cooling(["route:main/a", "route:main/b"])
    assert set(left) == {"route:main/a"} and 50 < left["route:main/a"] <= 60
    assert (len(a.requests), len(b.requests)) == (1, 5)


def test_failures_are_counted_across_workers_sync_and_async(redis_url, prefix, pair):
    a, b = pair
    a.enqueue(Reply.error(503, "busy"), Reply.error(503, "busy"))
    table = routes(a, b, allowed_failures=2)
    one = RedisRateLimiter(redis_url, prefix=prefix)
    two = RedisRateLimiter(redis_url, prefix=prefix)
    with client(one, table) as sync_client:
        assert sync_client.chat("route:main", "Hi").deployments == (
            "route:main/a",
            "route:main/b",
        )
    assert one.cooling(["route:main/a"]) == {}  # one failure of the two allowed

    async def second() -> Any:
        async with client(two, table, chatcore.AsyncClient) as async_client:
            first = await async_client.chat("route:main", "Hi")
            again = await async_client.chat("route:main", "Hi")
            return first, again

    first, again = asyncio.run(second())
    assert first.deployments == ("route:main/a", "route:main/b")  # the second failure
    assert again.deployments == ("route:main/b",)  # a cools down for every worker
    assert set(one.cooling(["route:main/a"])) == {"route:main/a"}
    assert len(a.requests) == 2
    one.close()
    two.close()


def test_in_flight_counts_are_shared_and_never_negative(redis_url, prefix):
    with (
        RedisRateLimiter(redis_url, prefix=prefix) as one,
        RedisRateLimiter(redis_url, prefix=prefix) as two,
    ):
        assert one.in_flight("route:r/x", 1) == 1
        assert two.in_flight("route:r/x", 1) == 2
        assert one.in_flight_counts(["route:r/x", "route:r/y"]) == {"route:r/x": 2, "route:r/y": 0}
        assert two.in_flight("route:r/x", -5) == 0
        assert one.in_flight_counts(["route:r/x"]) == {"route:r/x": 0}


def test_a_cooldown_is_only_ever_extended(redis_url, prefix):
    with RedisRateLimiter(redis_url, prefix=prefix) as limiter:
        limiter.cool_down("route:r/x", 30)
        limiter.cool_down("route:r/x", 5)
        assert 25 < limiter.cooling(["route:r/x"])["route:r/x"] <= 30


def test_redis_down_keeps_routes_working_from_memory(own_redis, pair):
    a, b = pair
    server = own_redis()
    a.enqueue(Reply.error(401, "bad key"))
    limiter = RedisRateLimiter(server.url, prefix="down:", socket_timeout=0.5)
    with client(limiter, routes(a, b)) as routed:
        server.stop()
        assert routed.chat("route:main", "Hi").deployments == ("route:main/a", "route:main/b")
        # the cooldown was kept in memory: a gets nothing more
        assert routed.chat("route:main", "Hi").deployment == "route:main/b"
    assert len(a.requests) == 1
    assert limiter.failures > 0
    limiter.close()
