"""Budgets shared by every process and host through Redis: each budget's window is a hash
``{spent, reserved}`` (integer nano-dollars) that Lua scripts check and change atomically,
all the budgets of a call at once, so two workers can never both take the last dollar.

Keys carry the ``{budget}`` hash tag (one cluster slot: a call's budgets are reserved in
one script) and expire a day after their window ends. The same failure policy as the
limiter: ``fail_open`` falls back to an in-memory store of this process while Redis is
unreachable (its reservations are settled there), ``fail_closed`` refuses the call with a
:class:`~chatcore.exceptions.BudgetExceededError` naming the URL (password masked).

Written once as flows (:mod:`chatcore_redis._io`): ``reserve`` / ``settle`` / ``usage``
over the blocking client, ``areserve`` / ``asettle`` / ``ausage`` over ``redis.asyncio``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

import redis

from chatcore._budget import Charge, InMemoryBudgetStore, Reservation, refusal
from chatcore.exceptions import BudgetExceededError, ConfigurationError
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
from chatcore_redis._io import Command, Driver, Flow, LuaScript

__all__ = ["RESERVE_LUA", "SETTLE_LUA", "RedisBudgetStore"]

#: KEYS: one hash per budget window. ARGV: the amount, then per key its limit and the
#: Unix millisecond its hash may expire at. Returns {1} when reserved in every key, else
#: {0, index of the first key that refused, its spent, its reserved}.
RESERVE_LUA = """
local amount = tonumber(ARGV[1])
for i = 1, #KEYS do
  local v = redis.call('HMGET', KEYS[i], 'spent', 'reserved')
  local spent = tonumber(v[1]) or 0
  local reserved = tonumber(v[2]) or 0
  if spent + reserved + amount > tonumber(ARGV[2 * i]) then
    return {0, i, spent, reserved}
  end
end
for i = 1, #KEYS do
  redis.call('HINCRBY', KEYS[i], 'reserved', amount)
  redis.call('PEXPIREAT', KEYS[i], ARGV[2 * i + 1])
end
return {1}
"""

#: KEYS: the hashes a reservation was made in. ARGV: the amount reserved, the amount
#: charged. A hash that expired (its window long over) is left alone.
SETTLE_LUA = """
for i = 1, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    redis.call('HINCRBY', KEYS[i], 'reserved', -tonumber(ARGV[1]))
    redis.call('HINCRBY', KEYS[i], 'spent', tonumber(ARGV[2]))
  end
end
return 1
"""

RESERVE = LuaScript(RESERVE_LUA)
SETTLE = LuaScript(SETTLE_LUA)
_KEEP_MS = 86_400_000  # a window's hash outlives its end by a day (late settles, reports)


class RedisBudgetStore:
    """The ``chatcore._budget.BudgetStore`` protocol over Redis, shared by every process
    using the same Redis and ``prefix``."""

    def __init__(
        self,
        url: str | None = None,
        *,
        client: redis.Redis | None = None,
        password: str | None = None,
        prefix: str = DEFAULT_PREFIX,
        failure_policy: FailurePolicy | str = "fail_open",
        socket_timeout: float = DEFAULT_SOCKET_TIMEOUT,
        connect_timeout: float | None = None,
        log_interval: float = DEFAULT_LOG_INTERVAL,
        reconnect_interval: float = DEFAULT_RECONNECT_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if client is None and url is None:
            raise ConfigurationError("RedisBudgetStore needs a Redis URL or a redis client")
        policy = check_policy(str(failure_policy))
        socket_timeout = check_timeout(socket_timeout, "socket_timeout")
        if connect_timeout is not None:
            connect_timeout = check_timeout(connect_timeout, "connect_timeout")
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
        self._guard = FailureGuard(
            component="budget store",
            url=self.url,
            secrets=[s for s in (password, url_password(url)) if s],
            policy=policy,
            log_interval=log_interval,
            reconnect_interval=reconnect_interval,
            clock=clock,
        )
        #: Serves (fail-open) while Redis is unreachable.
        self.local = InMemoryBudgetStore()
        #: Reservations the local store made while Redis was unreachable.
        self.fallback_reservations = 0

    def key(self, charge: Charge) -> str:
        """The Redis key of a budget window."""
        return f"{self.prefix}budget:{{budget}}:{charge.key}"

    # --- the protocol ----------------------------------------------------------------

    def reserve(self, charges: tuple[Charge, ...], amount: int) -> Reservation:
        """Reserve ``amount`` in every charge, atomically, or raise
        :class:`BudgetExceededError` (also while Redis is down under ``fail_closed``)."""
        return self._io.run(self._reserve_flow(charges, amount))

    async def areserve(self, charges: tuple[Charge, ...], amount: int) -> Reservation:
        """:meth:`reserve` over ``redis.asyncio``."""
        return await self._io.arun(self._reserve_flow(charges, amount))

    def settle(self, reservation: Reservation, actual: int) -> None:
        """Replace the reservation by ``actual``; a Redis failure is logged (the
        reservation then stays held until its window's hash expires)."""
        self._io.run(self._settle_flow(reservation, actual))

    async def asettle(self, reservation: Reservation, actual: int) -> None:
        """:meth:`settle` over ``redis.asyncio``."""
        await self._io.arun(self._settle_flow(reservation, actual))

    def usage(self, charges: Iterable[Charge]) -> dict[str, tuple[int, int]]:
        """``{charge key: (spent, reserved)}`` read from Redis (raises on a failure)."""
        return self._io.run(self._usage_flow(tuple(charges)))

    async def ausage(self, charges: Iterable[Charge]) -> dict[str, tuple[int, int]]:
        """:meth:`usage` over ``redis.asyncio``."""
        return await self._io.arun(self._usage_flow(tuple(charges)))

    # --- the flows -------------------------------------------------------------------

    def _reserve_flow(self, charges: tuple[Charge, ...], amount: int) -> Flow[Reservation]:
        if not self._guard.should_try():
            return self._fallback(charges, amount, None)
        keys = [self.key(c) for c in charges]
        args: list[int] = [amount]
        for charge in charges:
            args += [charge.limit, charge.ends * 1000 + _KEEP_MS]
        try:
            answer = yield from RESERVE.run(keys, args)
        except BACKEND_ERRORS as exc:
            return self._fallback(charges, amount, exc)
        self._guard.succeeded()
        if int(answer[0]) != 1:
            index, spent, reserved = (int(x) for x in answer[1:4])
            raise refusal(charges[index - 1], spent, reserved, amount)
        return Reservation(charges, amount)

    def _fallback(
        self, charges: tuple[Charge, ...], amount: int, exc: BaseException | None
    ) -> Reservation:
        if self.failure_policy == "fail_closed":
            error = self._guard.failed(exc, "refusing calls under budgets (fail_closed)")
            first = charges[0]
            raise BudgetExceededError(
                self._guard.unavailable_message(error) + "; nothing was sent",
                scope=first.scope,
                period=first.period,
                limit=None,
                resets_at=float(first.ends),
            )
        self._guard.failed(exc, "keeping budgets in this process only (fail_open)")
        local = self.local.reserve(charges, amount)
        self.fallback_reservations += 1
        return Reservation(charges, amount, local=local)

    def _settle_flow(self, reservation: Reservation, actual: int) -> Flow[None]:
        if reservation.settled:
            return
        reservation.settled = True
        if reservation.local is not None:
            self.local.settle(reservation.local, actual)
            return
        if not self._guard.should_try():
            self._guard.failed(None, "a budget settle was lost")
            return
        keys = [self.key(c) for c in reservation.charges]
        try:
            yield from SETTLE.run(keys, [reservation.amount, actual])
        except BACKEND_ERRORS as exc:
            self._guard.failed(exc, "a budget settle was lost")
            return
        self._guard.succeeded()

    def _usage_flow(self, charges: tuple[Charge, ...]) -> Flow[dict[str, tuple[int, int]]]:
        out: dict[str, tuple[int, int]] = {}
        for charge in charges:
            spent, reserved = yield Command("hmget", (self.key(charge), ["spent", "reserved"]))
            out[charge.key] = (int(spent or 0), int(reserved or 0))
        return out

    # --- lifecycle -------------------------------------------------------------------

    @property
    def available(self) -> bool:
        """Whether the last Redis command succeeded."""
        return not self._guard.down

    def close(self) -> None:
        """Close the blocking pool, when this store created it."""
        if self._owns_client:
            self.redis.close()

    async def aclose(self) -> None:
        """Close the running loop's asyncio pool, then :meth:`close`."""
        await self._io.connector.aclose()
        self.close()

    def __repr__(self) -> str:
        return (
            f"<RedisBudgetStore url={self.url} prefix={self.prefix!r} policy={self.failure_policy}>"
        )
