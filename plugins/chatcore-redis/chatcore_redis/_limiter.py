"""A rate limiter shared by every worker through Redis: the token buckets of
:class:`chatcore.InMemoryRateLimiter` (requests and tokens, per provider and per
``provider:model``) kept in Redis hashes and updated by Lua scripts that read the Redis
server's clock, plus adaptive holds (``PEXPIRE``'d keys) learned from provider headers
and 429 answers, seen by every worker at once. A hold lasts at most ``max_server_hold``
seconds: the cap is applied before a hold is written, by the script that writes it, and by
the acquire script to any longer hold it finds (written by a worker with a larger cap or by
an older version), so one hostile answer cannot stall the fleet for longer.

Nothing sleeps inside Redis: the acquire script grants at once or answers how long to
wait, and the caller sleeps (injectable ``sleep``) before asking again.

Every operation is written once, as a flow (:mod:`chatcore_redis._io`), and run by the
blocking redis-py client (``acquire``/``reconcile``/``observe``, the sync ``Client``) or by
``redis.asyncio`` (``aacquire``/``areconcile``/``aobserve``, the ``AsyncClient``, which
never blocks the event loop): the same keys, scripts, holds and failure policy, so sync and
async workers share one budget.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs
import redis

from chatcore._limits import (
    DEFAULT_MAX_SERVER_HOLD,
    InMemoryRateLimiter,
    RateLimit,
    Ticket,
    check_wait,
    rate_limit_signals,
    throttle_delay,
)
from chatcore.exceptions import (
    ConfigurationError,
    RateLimitExceeded,
)
from chatcore_redis._config import (
    BACKEND_ERRORS,
    DEFAULT_LOG_INTERVAL,
    DEFAULT_PREFIX,
    DEFAULT_RECONNECT_INTERVAL,
    DEFAULT_SOCKET_TIMEOUT,
    FailureGuard,
    FailurePolicy,
    check_policy,
    check_timeout,
    connect,
    url_password,
)
from chatcore_redis._cooldowns import RedisCooldowns
from chatcore_redis._io import Command, Driver, Flow, Local, LuaScript, Pause

__all__ = ["ACQUIRE_LUA", "ADJUST_LUA", "HOLD_LUA", "RedisRateLimiter", "RedisTicket"]

# Times are integer microseconds of the Redis server's clock (TIME): exact in a Lua double
# (< 2**53) and the same for every worker, whatever their own clocks say. A bucket is a
# hash {level, stamp}; a missing bucket is a full one, so each write PEXPIREs the hash at
# the moment it would be full again (plus a second), and idle keys leave Redis by
# themselves.

_LUA_PRELUDE = """
if redis.replicate_commands then pcall(redis.replicate_commands) end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])

local function load(key, rate, cap)
  local v = redis.call('HMGET', key, 'level', 'stamp')
  local level, stamp = tonumber(v[1]), tonumber(v[2])
  if level == nil or stamp == nil then
    return cap
  end
  if now > stamp then
    level = math.min(cap, level + (now - stamp) * rate)
  end
  return level
end

local function store(key, rate, cap, level)
  redis.call('HSET', key, 'level', string.format('%.17g', level), 'stamp',
             string.format('%d', now))
  local full_in_ms = math.ceil((cap - level) / rate / 1000)
  if full_in_ms < 0 then full_in_ms = 0 end
  redis.call('PEXPIRE', key, full_in_ms + 1000)
end
"""

#: KEYS: the n bucket hashes, then the hold keys.
#: ARGV: n, then per bucket: rate (per second), capacity, amount; then the longest hold in
#: milliseconds (a hold found longer is cut to it).
#: Returns {1, 0} when granted (every bucket charged), else {0, microseconds to wait}.
ACQUIRE_LUA = (
    _LUA_PRELUDE
    + """
local n = tonumber(ARGV[1])
local max_hold_ms = tonumber(ARGV[3 * n + 2])
local wait = 0
local levels = {}
for i = 1, n do
  local rate = tonumber(ARGV[3 * i - 1]) / 1000000
  local cap = tonumber(ARGV[3 * i])
  local amount = tonumber(ARGV[3 * i + 1])
  local level = load(KEYS[i], rate, cap)
  levels[i] = level
  local missing = amount - level
  if missing > 1e-9 then
    wait = math.max(wait, missing / rate)
  end
end
for j = n + 1, #KEYS do
  local ttl = redis.call('PTTL', KEYS[j])
  if ttl > max_hold_ms then
    redis.call('PEXPIRE', KEYS[j], max_hold_ms)
    ttl = max_hold_ms
  end
  if ttl > 0 then
    wait = math.max(wait, ttl * 1000)
  end
end
if wait > 0 then
  return {0, math.ceil(wait)}
end
for i = 1, n do
  local rate = tonumber(ARGV[3 * i - 1]) / 1000000
  local cap = tonumber(ARGV[3 * i])
  store(KEYS[i], rate, cap, levels[i] - tonumber(ARGV[3 * i + 1]))
end
return {1, 0}
"""
)

#: KEYS: bucket hashes. ARGV: per bucket: rate (per second), capacity, delta, ceiling.
#: Each bucket, refilled, becomes min(capacity, ceiling, level + delta): a positive delta
#: returns tokens, a negative one charges them (into debt if need be), a ceiling lowers
#: the level to what the provider says remains.
ADJUST_LUA = (
    _LUA_PRELUDE
    + """
for i = 1, #KEYS do
  local rate = tonumber(ARGV[4 * i - 3]) / 1000000
  local cap = tonumber(ARGV[4 * i - 2])
  local delta = tonumber(ARGV[4 * i - 1])
  local ceiling = tonumber(ARGV[4 * i])
  local level = load(KEYS[i], rate, cap)
  store(KEYS[i], rate, cap, math.min(cap, ceiling, level + delta))
end
return 1
"""
)

#: KEYS[1]: a hold key. ARGV[1]: milliseconds, ARGV[2]: the longest hold in milliseconds.
#: Extends the hold (up to that cap), never shortens it.
HOLD_LUA = """
local ms = math.min(tonumber(ARGV[1]), tonumber(ARGV[2]))
if redis.call('PTTL', KEYS[1]) < ms then
  redis.call('SET', KEYS[1], '1', 'PX', ms)
end
return 1
"""

ACQUIRE = LuaScript(ACQUIRE_LUA)
ADJUST = LuaScript(ADJUST_LUA)
HOLD = LuaScript(HOLD_LUA)


@attrs.define(eq=False)
class RedisTicket(Ticket):
    """A grant of :class:`RedisRateLimiter`; ``local`` is the fallback limiter's ticket
    when the grant came from it (fail-open while Redis was unreachable)."""

    local: Ticket | None = None


@attrs.frozen
class _BucketSpec:
    redis_key: str
    rate: float  # per second
    capacity: float


class RedisRateLimiter:
    """Token buckets per provider and per ``provider:model``, in requests and tokens,
    shared by every process that uses the same Redis and ``prefix``; adaptive holds
    learned from provider headers and 429s are shared too.

    Same interface as :class:`chatcore.InMemoryRateLimiter`: :meth:`acquire` blocks
    (``sleep`` outside Redis) until every bucket grants, up to ``max_wait`` (then
    :class:`~chatcore.RateLimitExceeded`), or raises at once with ``blocking=False``.

    ``max_server_hold``: the longest hold (seconds) a provider's answer may install for the
    fleet (a 429's ``Retry-After``, ``x-ratelimit-reset-*`` with nothing remaining).

    ``failure_policy``: ``fail_open`` falls back to a local in-memory limiter with the
    same limits while Redis is unreachable (logging once per ``log_interval``);
    ``fail_closed`` raises :class:`~chatcore.RateLimitExceeded` naming the URL (password
    masked). Redis is tried again ``reconnect_interval`` seconds after a failure.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        limits: Mapping[str, Any] | None = None,
        client: redis.Redis | None = None,
        password: str | None = None,
        prefix: str = DEFAULT_PREFIX,
        failure_policy: FailurePolicy | str = "fail_open",
        socket_timeout: float = DEFAULT_SOCKET_TIMEOUT,
        connect_timeout: float | None = None,
        adaptive: bool = True,
        default_retry_after: float = 1.0,
        max_server_hold: float = DEFAULT_MAX_SERVER_HOLD,
        log_interval: float = DEFAULT_LOG_INTERVAL,
        reconnect_interval: float = DEFAULT_RECONNECT_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if client is None and url is None:
            raise ConfigurationError("RedisRateLimiter needs a Redis URL or a redis client")
        policy = check_policy(str(failure_policy))
        socket_timeout = check_timeout(socket_timeout, "socket_timeout")
        if connect_timeout is not None:
            connect_timeout = check_timeout(connect_timeout, "connect_timeout")
        # The local limiter validates the limits and serves while Redis is unreachable.
        self._local = InMemoryRateLimiter(
            limits,
            adaptive=adaptive,
            default_retry_after=default_retry_after,
            max_server_hold=max_server_hold,
            clock=clock,
            sleep=sleep,
        )
        self.limits: dict[str, RateLimit] = dict(self._local.limits)
        backend = connect(
            url,
            client,
            password=password,
            socket_timeout=socket_timeout,
            connect_timeout=connect_timeout,
        )
        self.redis, self.url, self._owns_client = backend.client, backend.url, backend.owned
        self._io = Driver(backend.client, backend.connector)
        self.prefix = prefix
        self.failure_policy: FailurePolicy = policy
        self.adaptive = adaptive
        self.default_retry_after = default_retry_after
        #: The longest hold an answer may install, in seconds (validated by the local limiter).
        self.max_server_hold = self._local.max_server_hold
        self._max_hold_ms = _hold_ms(self.max_server_hold)
        self.clock = clock
        self.sleep = sleep
        secrets = [s for s in (password, url_password(url)) if s]
        self._guard = FailureGuard(
            component="rate limiter",
            url=self.url,
            secrets=secrets,
            policy=policy,
            log_interval=log_interval,
            reconnect_interval=reconnect_interval,
            clock=clock,
        )
        self._requests: dict[str, _BucketSpec] = {}
        self._tokens: dict[str, _BucketSpec] = {}
        for key, limit in self.limits.items():
            provider = key.split(":", 1)[0]
            rate = limit.request_rate
            if rate is not None:
                capacity = limit.burst if limit.burst is not None else max(1.0, rate)
                self._requests[key] = _BucketSpec(self._key(provider, "req", key), rate, capacity)
            if limit.tpm is not None:
                capacity = limit.token_burst if limit.token_burst is not None else limit.tpm
                self._tokens[key] = _BucketSpec(
                    self._key(provider, "tok", key), limit.tpm / 60.0, capacity
                )
        #: Route cooldowns, failure and in-flight counts, shared like the buckets.
        self.routes = RedisCooldowns(self._io, prefix, self._guard)
        self._counters = threading.Lock()
        #: Grants that had to wait, and the seconds they waited (like the in-memory one).
        self.waits = 0
        self.wait_seconds = 0.0
        #: Grants served by the local fallback while Redis was unreachable.
        self.fallback_grants = 0

    # --- keys ------------------------------------------------------------------------

    def _key(self, provider: str, kind: str, name: str) -> str:
        # {provider} is a hash tag: every key one acquire touches lands in the same slot.
        return f"{self.prefix}rl:{{{provider}}}:{kind}:{name}"

    def hold_keys(self, provider: str) -> tuple[str, str]:
        """The Redis keys of the provider's request and token holds."""
        return self._key(provider, "hold", "requests"), self._key(provider, "hold", "tokens")

    # --- the interface: the blocking client (Client) and the asyncio one (AsyncClient) --

    def acquire(
        self,
        provider: str,
        model: str,
        tokens: int,
        *,
        max_wait: float | None = None,
        blocking: bool = True,
    ) -> RedisTicket:
        """Wait until every applicable bucket and hold allows one attempt of ``tokens``
        estimated tokens; return the ticket to :meth:`reconcile`."""
        return self._io.run(self._acquire_flow(provider, model, tokens, max_wait, blocking))

    async def aacquire(
        self,
        provider: str,
        model: str,
        tokens: int,
        *,
        max_wait: float | None = None,
        blocking: bool = True,
    ) -> RedisTicket:
        """:meth:`acquire` for the async client: the same buckets, holds, waits and failure
        policy over ``redis.asyncio``; waits with the event loop's sleep (or the injected
        ``sleep`` when it is not :func:`time.sleep`), never blocking the loop."""
        return await self._io.arun(self._acquire_flow(provider, model, tokens, max_wait, blocking))

    def reconcile(self, ticket: Any, used_tokens: int | None) -> None:
        """Return unused reserved tokens, or charge the excess (the buckets may go into
        debt). Never raises for a Redis failure: it is logged and the adjustment lost."""
        self._io.run(self._reconcile_flow(ticket, used_tokens))

    async def areconcile(self, ticket: Any, used_tokens: int | None) -> None:
        """:meth:`reconcile` for the async client."""
        await self._io.arun(self._reconcile_flow(ticket, used_tokens))

    def observe(
        self,
        provider: str,
        model: str,
        headers: Mapping[str, str] | None,
        error: BaseException | None = None,
    ) -> None:
        """Adapt to ``x-ratelimit-*`` headers and 429s (not quota errors), for every
        worker: lowers the provider's shared buckets and stores holds in Redis (each at most
        ``max_server_hold``). The local fallback learns the same. Never raises for a Redis
        failure, nor for what the answer says (unusable numbers are ignored)."""
        self._io.run(self._observe_flow(provider, model, headers, error))

    async def aobserve(
        self,
        provider: str,
        model: str,
        headers: Mapping[str, str] | None,
        error: BaseException | None = None,
    ) -> None:
        """:meth:`observe` for the async client."""
        await self._io.arun(self._observe_flow(provider, model, headers, error))

    # --- route cooldowns (chatcore's CooldownStore), shared by every worker ----------

    def cooling(self, keys: Sequence[str]) -> dict[str, float]:
        """Seconds of cooldown left for each deployment key that is cooling down."""
        return self._io.run(self.routes.cooling_flow(keys))

    async def acooling(self, keys: Sequence[str]) -> dict[str, float]:
        """:meth:`cooling` for the async client."""
        return await self._io.arun(self.routes.cooling_flow(keys))

    def cool_down(self, key: str, seconds: float) -> None:
        """Cool deployment ``key`` down for ``seconds`` (never shortens a cooldown)."""
        self._io.run(self.routes.cool_down_flow(key, seconds))

    async def acool_down(self, key: str, seconds: float) -> None:
        """:meth:`cool_down` for the async client."""
        await self._io.arun(self.routes.cool_down_flow(key, seconds))

    def failed(self, key: str, window: float) -> int:
        """Count one failure of deployment ``key``; the failures within ``window``."""
        return self._io.run(self.routes.failed_flow(key, window))

    async def afailed(self, key: str, window: float) -> int:
        """:meth:`failed` for the async client."""
        return await self._io.arun(self.routes.failed_flow(key, window))

    def in_flight(self, key: str, delta: int) -> int:
        """Change the calls in flight on deployment ``key`` by ``delta``; the new count."""
        return self._io.run(self.routes.in_flight_flow(key, delta))

    async def ain_flight(self, key: str, delta: int) -> int:
        """:meth:`in_flight` for the async client."""
        return await self._io.arun(self.routes.in_flight_flow(key, delta))

    def in_flight_counts(self, keys: Sequence[str]) -> dict[str, int]:
        """The calls in flight on each deployment key."""
        return self._io.run(self.routes.in_flight_counts_flow(keys))

    async def ain_flight_counts(self, keys: Sequence[str]) -> dict[str, int]:
        """:meth:`in_flight_counts` for the async client."""
        return await self._io.arun(self.routes.in_flight_counts_flow(keys))

    # --- the flows (see chatcore_redis._io): the logic, written once -----------------

    def _acquire_flow(
        self,
        provider: str,
        model: str,
        tokens: int,
        max_wait: float | None,
        blocking: bool,
    ) -> Flow[RedisTicket]:
        keys = (provider, f"{provider}:{model}")
        names: list[str] = []
        args: list[float] = []
        for key in keys:
            bucket = self._requests.get(key)
            if bucket is not None:
                names.append(bucket.redis_key)
                args += [bucket.rate, bucket.capacity, 1.0]
            tbucket = self._tokens.get(key)
            if tbucket is not None:
                if tokens > tbucket.capacity:
                    raise RateLimitExceeded(
                        f"{key}: the request needs about {tokens} tokens, more than the"
                        f" {tbucket.capacity:g} the token limit ever grants at once;"
                        " shorten the request or raise tpm/token_burst",
                        key=key,
                    )
                names.append(tbucket.redis_key)
                args += [tbucket.rate, tbucket.capacity, float(tokens)]
        count = len(names)
        names += self.hold_keys(provider)
        script_args: list[str | int] = [count, *(_num(a) for a in args), self._max_hold_ms]
        started = self.clock()
        deadline = None if max_wait is None else started + max_wait
        waited = False
        while True:
            if not self._guard.should_try():
                return (
                    yield from self._fallback(
                        provider, model, tokens, keys, None, deadline, blocking
                    )
                )
            try:
                granted, wait_us = yield from ACQUIRE.run(names, script_args)
            except BACKEND_ERRORS as exc:
                return (
                    yield from self._fallback(
                        provider, model, tokens, keys, exc, deadline, blocking
                    )
                )
            self._guard.succeeded()
            if int(granted) == 1:
                if waited:
                    with self._counters:
                        self.waits += 1
                        self.wait_seconds += self.clock() - started
                return RedisTicket(keys=keys, tokens=tokens)
            wait = int(wait_us) / 1e6
            check_wait(
                f"{provider}:{model}",
                wait,
                blocking=blocking,
                remaining=None if deadline is None else deadline - self.clock(),
                max_wait=max_wait,
                scope="shared",
            )
            waited = True
            yield Pause(wait, self.sleep)

    def _fallback(
        self,
        provider: str,
        model: str,
        tokens: int,
        keys: tuple[str, ...],
        exc: BaseException | None,
        deadline: float | None,
        blocking: bool,
    ) -> Flow[RedisTicket]:
        """Redis failed (``exc``) or is known to be down (``None``): apply the policy."""
        if self.failure_policy == "fail_closed":
            error = self._guard.failed(exc, "refusing requests (fail_closed)")
            raise RateLimitExceeded(
                self._guard.unavailable_message(error),
                key=f"{provider}:{model}",
                retry_after=self._guard.reconnect_interval,
            )
        self._guard.failed(exc, "limiting with a local in-memory limiter (fail_open)")
        max_wait = None if deadline is None else max(0.0, deadline - self.clock())
        local: Ticket
        if blocking:
            local = yield Local(
                lambda: self._local.acquire(provider, model, tokens, max_wait=max_wait),
                lambda: self._local.aacquire(provider, model, tokens, max_wait=max_wait),
            )
        else:  # never waits
            local = self._local.acquire(provider, model, tokens, blocking=False)
        with self._counters:
            self.fallback_grants += 1
        return RedisTicket(keys=keys, tokens=tokens, local=local)

    def _reconcile_flow(self, ticket: Any, used_tokens: int | None) -> Flow[None]:
        if not isinstance(ticket, RedisTicket) or ticket.settled:
            return
        ticket.settled = True
        if ticket.local is not None:
            self._local.reconcile(ticket.local, used_tokens)
            return
        delta = ticket.tokens - (used_tokens if used_tokens is not None else 0)
        if delta == 0:
            return
        names: list[str] = []
        args: list[str] = []
        for key in ticket.keys:
            bucket = self._tokens.get(key)
            if bucket is not None:
                names.append(bucket.redis_key)
                cap = _num(bucket.capacity)
                args += [_num(bucket.rate), cap, _num(delta), cap]
        if names:
            yield from self._bookkeeping(ADJUST.run(names, args), "reconcile")

    def _observe_flow(
        self,
        provider: str,
        model: str,
        headers: Mapping[str, str] | None,
        error: BaseException | None,
    ) -> Flow[None]:
        if not self.adaptive:
            return
        self._local.observe(provider, model, headers, error)
        req_hold, tok_hold = self.hold_keys(provider)
        cap = self.max_server_hold
        delay = throttle_delay(error, self.default_retry_after, max_hold=cap)
        if delay is not None:
            yield from self._set_hold(req_hold, delay)
            return
        for dim, remaining, reset in rate_limit_signals(headers, max_hold=cap):
            bucket = (self._requests if dim == "requests" else self._tokens).get(provider)
            if bucket is not None:
                args = [_num(bucket.rate), _num(bucket.capacity), "0", _num(remaining)]
                yield from self._bookkeeping(ADJUST.run([bucket.redis_key], args), "observe")
            if remaining < 1:
                yield from self._set_hold(req_hold if dim == "requests" else tok_hold, reset)

    def _set_hold(self, key: str, seconds: float) -> Flow[None]:
        ms = min(_hold_ms(seconds), self._max_hold_ms)
        yield from self._bookkeeping(HOLD.run([key], [ms, self._max_hold_ms]), "observe")

    def _bookkeeping(self, command: Flow[Any], what: str) -> Flow[None]:
        """Run a bookkeeping command (reconcile, observe); a Redis failure is logged."""
        if not self._guard.should_try():
            command.close()
            self._guard.failed(None, f"{what} kept locally only")
            return
        try:
            yield from command
        except BACKEND_ERRORS as exc:
            self._guard.failed(exc, f"{what} kept locally only")
            return
        self._guard.succeeded()

    def _status_flow(self) -> Flow[dict[str, dict[str, float]]]:
        out: dict[str, dict[str, float]] = {}
        now_s, now_us = yield Command("time")
        now = int(now_s) * 1_000_000 + int(now_us)
        for name, table in (("requests", self._requests), ("tokens", self._tokens)):
            for key, bucket in table.items():
                level_raw, stamp_raw = yield Command(
                    "hmget", (bucket.redis_key, ["level", "stamp"])
                )
                if level_raw is None or stamp_raw is None:
                    level = bucket.capacity
                else:
                    elapsed = max(0, now - int(float(stamp_raw)))
                    level = min(bucket.capacity, float(level_raw) + elapsed * bucket.rate / 1e6)
                out.setdefault(key, {})[f"{name}_available"] = level
        providers = {key.split(":", 1)[0] for key in self.limits}
        for provider in sorted(providers):
            ttls = []
            for hold in self.hold_keys(provider):
                ttls.append(int((yield Command("pttl", (hold,)))))
            held = max([0, *ttls]) / 1000.0
            if held > 0:
                out.setdefault(provider, {})["held_for"] = held
        return out

    # --- diagnostics -----------------------------------------------------------------

    @property
    def available(self) -> bool:
        """Whether the last Redis command succeeded."""
        return not self._guard.down

    @property
    def failures(self) -> int:
        """Redis failures (and calls skipped while it was down) since creation."""
        return self._guard.failures

    def status(self) -> dict[str, dict[str, float]]:
        """A snapshot of every shared bucket (``*_available``) and hold (``held_for``),
        read from Redis without changing anything. Raises on a Redis failure."""
        return self._io.run(self._status_flow())

    async def astatus(self) -> dict[str, dict[str, float]]:
        """:meth:`status` over the running loop's asyncio client."""
        return await self._io.arun(self._status_flow())

    # --- lifecycle -------------------------------------------------------------------

    def close(self) -> None:
        """Close the blocking connection pool, when this limiter created it. (The asyncio
        pools are closed by :meth:`aclose`, or when their event loop shuts down.)"""
        if self._owns_client:
            self.redis.close()

    async def aclose(self) -> None:
        """Close the running event loop's asyncio connection pool (shared with the objects
        built on the same blocking client; the next async call opens a new one), then
        :meth:`close`."""
        await self._io.connector.aclose()
        self.close()

    def __enter__(self) -> RedisRateLimiter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> RedisRateLimiter:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return (
            f"<RedisRateLimiter url={self.url} prefix={self.prefix!r}"
            f" policy={self.failure_policy} limits={sorted(self.limits)}>"
        )


def _hold_ms(seconds: float) -> int:
    """A hold of ``seconds`` (finite, >= 0) in whole milliseconds, at least 1."""
    return max(1, math.ceil(seconds * 1000))


def _num(value: float) -> str:
    """A number as Lua's ``tonumber`` reads it exactly."""
    return repr(float(value))
