"""Budgets: limits in USD per calendar period for a scope, enforced before anything is
sent.

A call reserves its worst-case cost (estimated prompt tokens at the dearest input price,
plus ``max_completion_tokens`` / ``max_tokens``, or :data:`ASSUMED_OUTPUT_TOKENS`, at the
dearest output price) in every budget that applies to it, all or none; a reservation that
would take a scope past its limit refuses the call with
:class:`~chatcore.exceptions.BudgetExceededError`. When the call ends, the reservation is
replaced by the real cost. Periods are calendar windows in UTC (``minute``, ``hour``,
``day``, ``month``); a reservation is reconciled in the window it was made in.

Amounts are kept as integer nano-dollars (USD 1e-9, rounded up), so the in-memory store and
the Redis one (``chatcore-redis``, Lua) do exact integer arithmetic.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from decimal import ROUND_CEILING, Decimal
from typing import Any, Protocol

import attrs

from chatcore.exceptions import BudgetExceededError, ConfigurationError, ValidationError

__all__ = [
    "ASSUMED_OUTPUT_TOKENS",
    "PERIODS",
    "Budget",
    "BudgetState",
    "BudgetStore",
    "Budgets",
    "Charge",
    "InMemoryBudgetStore",
    "Reservation",
    "from_nanos",
    "parse_budgets",
    "to_nanos",
    "window_of",
]

#: Output tokens reserved for a call that sets neither ``max_completion_tokens`` nor
#: ``max_tokens`` (an answer longer than this is charged what it really cost).
ASSUMED_OUTPUT_TOKENS = 4096
PERIODS: tuple[str, ...] = ("minute", "hour", "day", "month")
_NANO = Decimal("1e-9")
_PER_USD = Decimal(1_000_000_000)
_MAX_KEY = 200


def to_nanos(usd: Decimal) -> int:
    """USD as whole nano-dollars, rounded up (a reservation never falls short)."""
    return int((usd / _NANO).to_integral_value(rounding=ROUND_CEILING))


def from_nanos(nanos: int) -> Decimal:
    """Nano-dollars as USD (``Decimal('0.0007')``, not ``0.000700000``)."""
    return Decimal(nanos) / _PER_USD


def window_of(period: str, now: float) -> tuple[int, int]:
    """The calendar window (UTC) holding Unix time ``now``: ``(start, end)`` seconds."""
    t = int(now)
    if period == "minute":
        start = t - t % 60
        return start, start + 60
    if period == "hour":
        start = t - t % 3600
        return start, start + 3600
    if period == "day":
        start = t - t % 86400
        return start, start + 86400
    tm = time.gmtime(t)
    start = t - ((tm.tm_mday - 1) * 86400 + tm.tm_hour * 3600 + tm.tm_min * 60 + tm.tm_sec)
    return start, start + 86400 * _month_days(tm.tm_year, tm.tm_mon)


def _month_days(year: int, month: int) -> int:
    if month == 2:
        return 29 if year % 4 == 0 and (year % 100 != 0 or year % 400 == 0) else 28
    return 30 if month in (4, 6, 9, 11) else 31


@attrs.frozen
class Budget:
    """``limit`` USD per ``period`` for ``scope``: ``"client"`` (every call), a provider
    (``"openai"``), a ``"provider:model"``, ``"route:NAME"``, ``"key:ID"`` (calls made
    with ``budget_key="ID"``) or ``"key:*"`` (each key its own ``limit``)."""

    scope: str
    limit: Decimal
    period: str = "day"

    @classmethod
    def parse(cls, scope: Any, value: Any) -> Budget:
        """A budget from ``{usd = 10, period = "day"}``; a bad entry raises
        :class:`ConfigurationError` naming it."""
        if not isinstance(scope, str) or not scope or scope.endswith(":") or len(scope) > 300:
            raise ConfigurationError(
                f"budgets key {scope!r}: expected 'client', 'provider', 'provider:model', "
                "'route:NAME', 'key:ID' or 'key:*'"
            )
        if isinstance(value, Budget):
            return value
        if not isinstance(value, Mapping):
            raise ConfigurationError(
                f'budgets[{scope!r}]: expected a table like {{usd = 10, period = "day"}}'
            )
        unknown = sorted(set(value) - {"usd", "period"})
        if unknown:
            raise ConfigurationError(
                f"budgets[{scope!r}]: unknown key(s) {', '.join(map(repr, unknown))} "
                "(allowed: usd, period)"
            )
        usd = value.get("usd")
        if isinstance(usd, bool) or not isinstance(usd, (int, float, str, Decimal)):
            raise ConfigurationError(f"budgets[{scope!r}].usd={usd!r}: expected USD > 0")
        try:
            limit = Decimal(repr(usd)) if isinstance(usd, float) else Decimal(usd)
        except ArithmeticError:
            limit = Decimal("NaN")
        if not limit.is_finite() or limit <= 0:
            raise ConfigurationError(f"budgets[{scope!r}].usd={usd!r}: expected USD > 0")
        period = value.get("period", "day")
        if period not in PERIODS:
            raise ConfigurationError(
                f"budgets[{scope!r}].period={period!r}: expected one of {', '.join(PERIODS)}"
            )
        return cls(scope, limit, period)


def parse_budgets(raw: Mapping[str, Any] | Iterable[Budget] | None) -> list[Budget]:
    """Budgets from a mapping of scope to ``{usd, period}`` (or ``Budget`` objects)."""
    if raw is None:
        return []
    if isinstance(raw, Mapping):
        return [Budget.parse(scope, value) for scope, value in raw.items()]
    out = []
    for item in raw:
        if not isinstance(item, Budget):
            raise ConfigurationError(f"budgets: expected Budget objects, got {item!r}")
        out.append(item)
    return out


@attrs.frozen
class Charge:
    """One budget a call counts against, in one window: the store's key, the limit and
    the window's end (Unix seconds)."""

    key: str
    scope: str
    period: str
    limit: int
    window: int
    ends: int


@attrs.define(eq=False)
class Reservation:
    """A call's reservation: what was reserved (nano-dollars) in which charges;
    ``local`` is a fallback store's reservation (Redis unreachable, fail-open)."""

    charges: tuple[Charge, ...]
    amount: int
    settled: bool = False
    local: Any = None


@attrs.frozen
class BudgetState:
    """A budget's state in its current window (``client.spend()``): USD ``spent``
    (reconciled), ``reserved`` (calls in flight), ``remaining`` and when it resets."""

    scope: str
    period: str
    limit: Decimal
    spent: Decimal
    reserved: Decimal
    remaining: Decimal
    resets_at: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (amounts as decimal strings)."""
        return {
            "scope": self.scope,
            "period": self.period,
            "limit_usd": str(self.limit),
            "spent_usd": str(self.spent),
            "reserved_usd": str(self.reserved),
            "remaining_usd": str(self.remaining),
            "resets_at": self.resets_at,
        }


class BudgetStore(Protocol):
    """Where reservations live (in memory, or Redis through ``chatcore-redis``). The
    ``chatcore_budget_store`` hook returns one."""

    def reserve(self, charges: tuple[Charge, ...], amount: int) -> Reservation:
        """Reserve ``amount`` in every charge, or raise ``BudgetExceededError``."""

    def settle(self, reservation: Reservation, actual: int) -> None:
        """Replace the reservation by the real cost ``actual`` (never raises)."""

    def usage(self, charges: Iterable[Charge]) -> dict[str, tuple[int, int]]:
        """``{key: (spent, reserved)}`` of the charges' current windows."""


def refusal(charge: Charge, spent: int, reserved: int, amount: int) -> BudgetExceededError:
    """The error of a refused reservation."""
    limit, used = from_nanos(charge.limit), from_nanos(spent)
    held, asked = from_nanos(reserved), from_nanos(amount)
    return BudgetExceededError(
        f"budget {charge.scope!r} ({_usd(limit)} per {charge.period}) would be exceeded: "
        f"spent {_usd(used)}, {_usd(held)} reserved by calls in flight, this call may cost "
        f"up to {_usd(asked)}; nothing was sent. It resets at "
        f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(charge.ends))} (set max_tokens "
        "to lower the reservation, or raise the limit)",
        scope=charge.scope,
        period=charge.period,
        limit=limit,
        spent=used,
        reserved=held,
        requested=asked,
        resets_at=float(charge.ends),
    )


def _usd(value: Decimal) -> str:
    return f"${value.quantize(Decimal('0.000001')).normalize():f}"


class InMemoryBudgetStore:
    """Budgets of one process: a lock and a table of ``key -> [spent, reserved]`` per
    window. Windows that ended are dropped as new ones start (memory stays bounded by
    the scopes in use)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._table: dict[str, list[int]] = {}

    def reserve(self, charges: tuple[Charge, ...], amount: int) -> Reservation:
        with self._lock:
            table = self._table
            for charge in charges:
                row = table.get(charge.key)
                if row is not None and row[0] + row[1] + amount > charge.limit:
                    raise refusal(charge, row[0], row[1], amount)
                if row is None and amount > charge.limit:
                    raise refusal(charge, 0, 0, amount)
            for charge in charges:
                row = table.get(charge.key)
                if row is None:
                    if len(table) >= 10_000:
                        self._drop_ended(charge.window)
                    table[charge.key] = [0, amount, charge.ends]
                else:
                    row[1] += amount
        return Reservation(charges, amount)

    def _drop_ended(self, now: int) -> None:
        for key in [k for k, row in self._table.items() if row[2] <= now]:
            del self._table[key]

    def settle(self, reservation: Reservation, actual: int) -> None:
        if reservation.settled:
            return
        reservation.settled = True
        with self._lock:
            for charge in reservation.charges:
                row = self._table.get(charge.key)
                if row is not None:  # else its window ended and was dropped
                    row[1] -= reservation.amount
                    row[0] += actual

    def usage(self, charges: Iterable[Charge]) -> dict[str, tuple[int, int]]:
        with self._lock:
            out = {}
            for charge in charges:
                row = self._table.get(charge.key)
                out[charge.key] = (row[0], row[1]) if row is not None else (0, 0)
            return out


class Budgets:
    """The budgets of one client: which apply to a call, its worst case, and the store.

    ``clock`` is Unix time (windows are calendar periods)."""

    def __init__(
        self,
        budgets: Iterable[Budget],
        store: Any = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.budgets = tuple(budgets)
        self.store: Any = InMemoryBudgetStore() if store is None else store
        #: The store is this process's memory (called directly, not as a pipeline effect).
        self.in_process = type(self.store) is InMemoryBudgetStore
        self.clock = clock
        self._client = [b for b in self.budgets if b.scope == "client"]
        self._by_scope: dict[str, list[Budget]] = {}
        for budget in self.budgets:
            if budget.scope != "client":
                self._by_scope.setdefault(budget.scope, []).append(budget)
        #: (provider, model, route, key) -> (the earliest window end, the charges)
        self._charges: dict[tuple[str, str, str | None, str | None], tuple[int, Any]] = {}

    def charges_of(self, request: Any, route: str | None, key: Any) -> tuple[Charge, ...]:
        """:meth:`charges` of a request (``key``: the caller's ``budget_key``, checked)."""
        return self.charges(request.provider, request.model, route, check_budget_key(key))

    @staticmethod
    def output_cap(request: Any) -> int:
        """See :func:`output_cap`."""
        return output_cap(request)

    @staticmethod
    def settle_amount(error: BaseException | None, reserved: int, cost: Decimal | None) -> int:
        """See :func:`settle_amount`."""
        return settle_amount(error, reserved, cost)

    def charges(
        self,
        provider: str,
        model: str,
        route: str | None = None,
        key: str | None = None,
    ) -> tuple[Charge, ...]:
        """The budgets a call of ``provider:model`` (through ``route``, for ``key``)
        counts against, in their current windows (remembered until one of them ends)."""
        now = self.clock()
        call = (provider, model, route, key)
        found_before = self._charges.get(call)
        if found_before is not None and now < found_before[0]:
            return found_before[1]  # type: ignore[no-any-return]
        charges = self._charges_at(now, provider, model, route, key)
        if len(self._charges) >= 4096:
            self._charges.clear()
        self._charges[call] = (min((c.ends for c in charges), default=2**62), charges)
        return charges

    def _charges_at(
        self, now: float, provider: str, model: str, route: str | None, key: str | None
    ) -> tuple[Charge, ...]:
        found: list[tuple[Budget, str]] = [(b, "client") for b in self._client]
        scopes = [provider, f"{provider}:{model}"]
        if route is not None:
            scopes += [f"route:{route}", "route:*"]
        if key is not None:
            scopes += [f"key:{key}", "key:*"]
        by_scope = self._by_scope
        for scope in scopes:
            for budget in by_scope.get(scope, ()):
                actual = scope
                if scope == "route:*":
                    actual = f"route:{route}"
                elif scope == "key:*":
                    actual = f"key:{key}"
                found.append((budget, actual))
        out = []
        for budget, scope in found:
            start, end = window_of(budget.period, now)
            out.append(
                Charge(
                    key=f"{scope}|{budget.period}|{start}",
                    scope=scope,
                    period=budget.period,
                    limit=to_nanos(budget.limit),
                    window=start,
                    ends=end,
                )
            )
        return tuple(out)

    def state(self) -> list[BudgetState]:
        """Every configured budget in its current window (``key:*`` and ``route:*``
        budgets are per key: ask :meth:`state_of` with the key)."""
        return self._states(
            [(b, b.scope) for b in self.budgets if b.scope not in ("key:*", "route:*")]
        )

    def state_of(self, scope: str) -> list[BudgetState]:
        """The budgets of ``scope`` (``key:ID`` includes what ``key:*`` gives it)."""
        pairs = [(b, scope) for b in self.budgets if b.scope == scope]
        if scope.startswith("key:"):
            pairs += [(b, scope) for b in self.budgets if b.scope == "key:*"]
        if scope.startswith("route:"):
            pairs += [(b, scope) for b in self.budgets if b.scope == "route:*"]
        return self._states(pairs)

    def _states(self, pairs: list[tuple[Budget, str]]) -> list[BudgetState]:
        now = self.clock()
        charges = []
        for budget, scope in pairs:
            start, end = window_of(budget.period, now)
            charges.append(
                Charge(
                    f"{scope}|{budget.period}|{start}",
                    scope,
                    budget.period,
                    to_nanos(budget.limit),
                    start,
                    end,
                )
            )
        used = self.store.usage(charges) if charges else {}
        out = []
        for (budget, _scope), charge in zip(pairs, charges):
            spent, reserved = used.get(charge.key, (0, 0))
            out.append(
                BudgetState(
                    scope=charge.scope,
                    period=budget.period,
                    limit=budget.limit,
                    spent=from_nanos(spent),
                    reserved=from_nanos(reserved),
                    remaining=max(Decimal(0), budget.limit - from_nanos(spent + reserved)),
                    resets_at=charge.ends,
                )
            )
        return out


def check_budget_key(value: Any) -> str | None:
    """A per-call ``budget_key`` (a tenant or user id), validated."""
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > _MAX_KEY or not value.isprintable():
        raise ValidationError(
            [
                (
                    "budget_key",
                    f"expected a printable string of 1 to {_MAX_KEY} characters (a tenant "
                    f"or user id), got {value!r:.60}",
                )
            ]
        )
    return value


def output_cap(request: Any) -> int:
    """The output tokens a call may produce at most (its cap, or the assumption)."""
    cap = request.max_completion_tokens or request.max_tokens
    return cap if cap else ASSUMED_OUTPUT_TOKENS


def settle_amount(error: BaseException | None, reserved: int, cost: Decimal | None) -> int:
    """What a finished call is charged: its cost; nothing when the provider refused it
    (a status error) or it never left (a local refusal); the reservation otherwise (a
    timeout, a broken stream, a cancellation: the provider may have billed it)."""
    if error is None:
        return reserved if cost is None else to_nanos(cost)
    from chatcore.exceptions import APIError, APIStatusError, ChatcoreError

    if isinstance(error, APIStatusError):
        return 0
    if isinstance(error, APIError):  # connection, timeout, bad answer, broken stream
        return reserved
    if isinstance(error, ChatcoreError):  # refused or invalid before anything was sent
        return 0
    return reserved


def cost_components(
    host: Any, settings: Any, budgets: Any, store: Any, owned: list[Any]
) -> tuple[Any, Budgets | None]:
    """A client's :class:`~chatcore._cost.Pricing` (the user's ``prices`` over the
    ``chatcore_pricing`` hook's source) and :class:`Budgets` (``None`` without budgets;
    the store from ``store``, else the ``chatcore_budget_store`` hook)."""
    from chatcore._cost import Pricing, parse_prices

    pricing = Pricing(parse_prices(settings.prices), host.pricing(settings))
    in_code = None if budgets is None or isinstance(budgets, Mapping) else budgets
    given = parse_budgets(in_code)
    configured = [*parse_budgets(settings.budgets), *given]
    if not configured:
        return pricing, None
    if store is None:
        store = host.budget_store(settings)
        if store is not None:
            owned.append(store)
    return pricing, Budgets(configured, store)
