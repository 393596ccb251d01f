"""RedisCache against a real redis-server: round trips, TTL by Redis expiry, JSON values,
the size cap, stats, and clear() touching the prefix's entries only."""

from __future__ import annotations

import json
import math
import time
from typing import Any

import pytest
from chatcore_redis_testing import response

import chatcore
from chatcore._cache import ResponseCache
from chatcore.exceptions import ConfigurationError
from chatcore_redis import RedisCache, RedisCacheStats


@pytest.fixture
def make_cache(redis_url: str, prefix: str) -> Any:
    made: list[RedisCache] = []

    def make(**kwargs: Any) -> RedisCache:
        kwargs.setdefault("prefix", prefix)
        cache = RedisCache(redis_url, **kwargs)
        made.append(cache)
        return cache

    yield make
    for cache in made:
        cache.close()


def test_is_a_response_cache(make_cache: Any) -> None:
    assert isinstance(make_cache(), ResponseCache)


def test_round_trip_without_call_metadata(make_cache: Any) -> None:
    cache = make_cache()
    original = response("Ünïcode ✓", latency=2.5, headers={"x": "y"}, attempts=3)
    assert cache.get("k1") is None
    cache.set("k1", original)
    found = cache.get("k1")
    assert found is not None
    assert found.text == "Ünïcode ✓"
    assert found.request_id == "req-1"
    assert found.provider == "wire"
    assert found.usage == original.usage
    assert found.latency == 0.0 and found.headers is None and found.attempts == 1
    stats = cache.stats()
    assert isinstance(stats, RedisCacheStats)
    assert (stats.hits, stats.misses, stats.stores, stats.size) == (1, 1, 1, 1)
    assert stats.hit_ratio == 0.5
    assert stats.maxsize is None
    assert stats.to_dict()["errors"] == 0


def test_two_instances_share_entries(make_cache: Any) -> None:
    make_cache().set("shared", response("from a"))
    found = make_cache().get("shared")
    assert found is not None and found.text == "from a"


def test_values_are_json_under_the_prefix(make_cache: Any, redis_client: Any) -> None:
    cache = make_cache()
    cache.set("abc", response())
    raw = redis_client.get(f"{cache.prefix}cache:abc")
    data = json.loads(raw)  # JSON, never pickle
    assert data["v"] == 1
    assert data["response"]["choices"][0]["message"]["content"] == "hi"


def test_ttl_is_a_redis_expiry(make_cache: Any, redis_client: Any) -> None:
    cache = make_cache(ttl=0.3)
    cache.set("short", response())
    cache.set("long", response(), ttl=60)
    cache.set("forever", response(), ttl=math.inf)
    ns = cache.namespace
    assert 0 < redis_client.pttl(ns + "short") <= 300
    assert 59_000 < redis_client.pttl(ns + "long") <= 60_000
    assert redis_client.pttl(ns + "forever") == -1
    time.sleep(0.35)
    assert cache.get("short") is None
    assert cache.get("long") is not None
    no_ttl = make_cache(ttl=None)
    no_ttl.set("none", response())
    assert redis_client.pttl(ns + "none") == -1


def test_bad_ttls(make_cache: Any, redis_url: str) -> None:
    cache = make_cache()
    with pytest.raises(ConfigurationError):
        cache.set("k", response(), ttl=0)
    with pytest.raises(ConfigurationError, match="cache_ttl"):
        RedisCache(redis_url, ttl=-1)
    with pytest.raises(ConfigurationError, match="max_value_bytes"):
        RedisCache(redis_url, max_value_bytes=0)


def test_oversize_values_are_skipped_and_counted(make_cache: Any) -> None:
    cache = make_cache(max_value_bytes=2000)
    cache.set("small", response("x" * 100))
    cache.set("big", response("x" * 5000))
    assert cache.get("small") is not None
    assert cache.get("big") is None
    stats = cache.stats()
    assert stats.oversize == 1
    assert stats.stores == 1
    assert stats.size == 1


def test_an_unreadable_entry_is_a_miss(make_cache: Any, redis_client: Any) -> None:
    cache = make_cache()
    redis_client.set(cache.namespace + "junk", b"\x80not json")
    redis_client.set(cache.namespace + "old", json.dumps({"v": 0}))
    assert cache.get("junk") is None
    assert cache.get("old") is None
    stats = cache.stats()
    assert (stats.misses, stats.errors) == (2, 2)


def test_clear_deletes_the_prefix_only(make_cache: Any, redis_client: Any, prefix: str) -> None:
    cache = make_cache()
    other = make_cache(prefix=prefix + "other[*]:")
    for i in range(1203):
        cache.set(f"k{i}", response())
    other.set("kept", response())
    redis_client.set(prefix + "rl:{p}:req:p", "limiter state, not a cache entry")
    assert len(cache) == 1203
    cache.clear()
    assert len(cache) == 0
    assert cache.stats().size == 0
    assert other.get("kept") is not None
    assert redis_client.get(prefix + "rl:{p}:req:p") is not None
    other.clear()
    assert len(other) == 0


def test_server_counters_in_stats(make_cache: Any) -> None:
    stats = make_cache().stats()
    assert stats.server_expired_keys >= 0
    assert stats.server_evicted_keys >= 0
    assert stats.evictions == 0 and stats.expirations == 0


def test_client_pipeline_hits_the_redis_cache(
    make_client: Any, make_cache: Any, standin: Any
) -> None:
    cache = make_cache(ttl=60)
    first = make_client(cache=cache)
    second = make_client(cache=make_cache(ttl=60))  # another "worker", same Redis
    a = first.chat("wire:gpt-4o-mini", "cache me")
    b = second.chat("wire:gpt-4o-mini", "cache me")
    assert not a.cached and b.cached
    assert a.text == b.text
    assert len(standin.requests) == 1
    assert second.chat("wire:gpt-4o-mini", "cache me", cache=False).cached is False
    assert len(standin.requests) == 2
    assert repr(cache).startswith("<RedisCache url=redis://127.0.0.1:")
    assert isinstance(first.cache_ttl, float) and isinstance(chatcore.__version__, str)
