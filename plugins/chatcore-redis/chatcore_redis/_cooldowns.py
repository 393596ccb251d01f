"""Route cooldowns, failure counts and in-flight counts in Redis, seen by every worker.

chatcore's routes ask the client's cooldown store (:class:`chatcore._routes.CooldownStore`)
which deployments are cooling down, count a deployment's failures in a window, cool one
down, and count the calls in flight on each. :class:`RedisRateLimiter` offers those
methods (and their ``a``-prefixed coroutines for the ``AsyncClient``), kept here in Redis:

- a cooldown is a key with a ``PX`` expiry, only ever extended;
- failures are a sorted set scored by the Redis server's clock (``TIME``), trimmed to the
  window by the script that adds one, so every worker counts the same failures;
- calls in flight are a counter that never goes below 0 and expires ten minutes after its
  last change (a worker that died mid-call cannot leave a deployment busy for ever).

Keys are ``{prefix}rt:{route:NAME}:...``: the route is a hash tag, so one query for a
route's deployments lands in one cluster slot. When Redis is unreachable the same
bookkeeping is kept in memory (logged like the limiter's failures); a route never fails a
call because its cooldowns could not be read.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from chatcore._routes import InMemoryCooldowns
from chatcore_redis._config import BACKEND_ERRORS, FailureGuard
from chatcore_redis._io import Command, Driver, Flow, LuaScript

__all__ = ["COOLING_LUA", "FAILED_LUA", "IN_FLIGHT_LUA", "RedisCooldowns"]

#: KEYS: cooldown keys. Returns each key's remaining milliseconds (<= 0: not cooling).
COOLING_LUA = """
local out = {}
for i = 1, #KEYS do
  out[i] = redis.call('PTTL', KEYS[i])
end
return out
"""

#: KEYS[1]: a cooldown key. ARGV[1]: milliseconds. Extends, never shortens.
COOL_DOWN_LUA = """
local ms = tonumber(ARGV[1])
if redis.call('PTTL', KEYS[1]) < ms then
  redis.call('SET', KEYS[1], '1', 'PX', ms)
end
return 1
"""

#: KEYS[1]: a failures sorted set. ARGV[1]: window in microseconds, ARGV[2]: a unique id.
#: Adds one failure at the server's time, drops those out of the window, returns the count.
FAILED_LUA = """
if redis.replicate_commands then pcall(redis.replicate_commands) end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local window = tonumber(ARGV[1])
redis.call('ZADD', KEYS[1], now, string.format('%d-%s', now, ARGV[2]))
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%d', now - window))
redis.call('PEXPIRE', KEYS[1], math.ceil(window / 1000) + 1000)
return redis.call('ZCARD', KEYS[1])
"""

#: KEYS[1]: an in-flight counter. ARGV[1]: the change. Never below 0; expires 10 minutes
#: after its last change.
IN_FLIGHT_LUA = """
local n = redis.call('INCRBY', KEYS[1], tonumber(ARGV[1]))
if n < 0 then
  redis.call('SET', KEYS[1], '0')
  n = 0
end
redis.call('PEXPIRE', KEYS[1], 600000)
return n
"""

COOLING = LuaScript(COOLING_LUA)
COOL_DOWN = LuaScript(COOL_DOWN_LUA)
FAILED = LuaScript(FAILED_LUA)
IN_FLIGHT = LuaScript(IN_FLIGHT_LUA)


class RedisCooldowns:
    """The cooldown store of routes in Redis (see the module); every method is a flow run
    by the limiter's driver, so the sync and async clients share the same keys."""

    def __init__(self, driver: Driver, prefix: str, guard: FailureGuard) -> None:
        self._io = driver
        self.prefix = prefix
        self._guard = guard
        #: Serves while Redis is unreachable.
        self.local = InMemoryCooldowns()
        self._ids = 0

    def key(self, kind: str, deployment: str) -> str:
        """The Redis key of ``deployment``'s (``route:NAME/DEPLOYMENT``) ``kind``."""
        route, _, name = deployment.partition("/")
        return f"{self.prefix}rt:{{{route}}}:{kind}:{name}"

    def _guarded(self, flow: Flow[Any], fallback: Any, what: str) -> Flow[Any]:
        if not self._guard.should_try():
            flow.close()
            self._guard.failed(None, f"route {what} kept in memory")
            return fallback()
        try:
            result = yield from flow
        except BACKEND_ERRORS as exc:
            self._guard.failed(exc, f"route {what} kept in memory")
            return fallback()
        self._guard.succeeded()
        return result

    # --- flows -----------------------------------------------------------------------

    def cooling_flow(self, keys: Sequence[str]) -> Flow[dict[str, float]]:
        keys = list(keys)
        if not keys:
            return {}
        found: Any = yield from self._guarded(
            COOLING.run([self.key("cool", k) for k in keys], []),
            lambda: None,
            "cooldowns",
        )
        if found is None:
            return self.local.cooling(keys)
        return {k: int(ms) / 1000.0 for k, ms in zip(keys, found) if int(ms) > 0}

    def cool_down_flow(self, key: str, seconds: float) -> Flow[None]:
        self.local.cool_down(key, seconds)
        ms = max(1, int(seconds * 1000))
        yield from self._guarded(
            COOL_DOWN.run([self.key("cool", key)], [ms]), lambda: None, "cooldowns"
        )

    def failed_flow(self, key: str, window: float) -> Flow[int]:
        self._ids += 1
        unique = f"{id(self):x}.{self._ids}"
        count = yield from self._guarded(
            FAILED.run([self.key("fail", key)], [int(window * 1_000_000), unique]),
            lambda: self.local.failed(key, window),
            "failure counts",
        )
        return int(count)

    def in_flight_flow(self, key: str, delta: int) -> Flow[int]:
        count = yield from self._guarded(
            IN_FLIGHT.run([self.key("busy", key)], [int(delta)]),
            lambda: self.local.in_flight(key, delta),
            "in-flight counts",
        )
        return int(count)

    def in_flight_counts_flow(self, keys: Sequence[str]) -> Flow[dict[str, int]]:
        keys = list(keys)
        if not keys:
            return {}
        found = yield from self._guarded(
            _mget([self.key("busy", k) for k in keys]), lambda: None, "in-flight counts"
        )
        if found is None:
            return self.local.in_flight_counts(keys)
        return {k: max(0, int(v)) if v is not None else 0 for k, v in zip(keys, found)}


def _mget(keys: list[str]) -> Flow[Any]:
    return (yield Command("mget", (keys,)))
