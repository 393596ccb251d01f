"""What a call costs: per-token prices (``Rates``) applied to typed usage, from the
user's own prices first and then the ``chatcore_pricing`` hook (``chatcore-cost`` answers
it from the ``genai-prices`` database). Unknown is ``None``, never a guess.

Nothing here imports a price table: the core knows only the user's overrides; a plugin
supplies the rest, on first use.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping
from decimal import ROUND_CEILING, Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any, Protocol

import attrs

from chatcore.exceptions import ConfigurationError

if TYPE_CHECKING:
    from chatcore.models import ChatRequest, ChatResponse, Usage

__all__ = [
    "MILLION",
    "ZERO",
    "Price",
    "PriceSource",
    "Pricing",
    "Rates",
    "parse_prices",
]

ZERO = Decimal(0)
MILLION = Decimal(1_000_000)

#: The keys of a price entry (``[prices."provider:model"]`` in ``chatcore.toml``), in USD
#: per million tokens.
PRICE_KEYS: tuple[str, ...] = ("input", "output", "cached_input", "cache_write", "reasoning")


class Price(Protocol):
    """What a price source hands out for one model: the cost of a usage, and the most a
    call of so many input and output tokens can cost (for budget reservations)."""

    def cost(self, usage: Usage) -> Decimal:
        """The USD cost of ``usage``."""

    def worst_case(self, input_tokens: int, output_tokens: int) -> Decimal:
        """An upper bound of the USD cost of a call of these token counts."""


class PriceSource(Protocol):
    """What the ``chatcore_pricing`` hook returns."""

    def price_of(self, provider: str, model: str) -> Price | None:
        """The price of ``model`` served by chatcore provider ``provider``, or ``None``."""


def _rate(value: Decimal | None, fallback: Decimal) -> Decimal:
    return fallback if value is None else value


@attrs.frozen
class Rates:
    """Flat prices in USD per million tokens. A part of the usage whose own price is not
    given is priced like its whole: cached and cache-write input tokens at ``input``,
    reasoning tokens at ``output``.

    ``cost(usage)``: ``prompt_tokens`` and ``completion_tokens`` count every token (as in
    :class:`~chatcore.models.Usage`), so each typed part is taken out of its whole and
    priced at its own rate: nothing counted twice, nothing left out."""

    input: Decimal
    output: Decimal
    cached_input: Decimal | None = None
    cache_write: Decimal | None = None
    reasoning: Decimal | None = None

    def cost(self, usage: Usage) -> Decimal:
        cached = usage.cached_tokens or 0
        written = usage.cache_creation_tokens or 0
        reasoning = usage.reasoning_tokens or 0
        plain_in = max(0, usage.prompt_tokens - cached - written)
        plain_out = max(0, usage.completion_tokens - reasoning)
        total = plain_in * self.input + plain_out * self.output
        if cached:
            total += cached * _rate(self.cached_input, self.input)
        if written:
            total += written * _rate(self.cache_write, self.input)
        if reasoning:
            total += reasoning * _rate(self.reasoning, self.output)
        return total / MILLION

    def worst_case(self, input_tokens: int, output_tokens: int) -> Decimal:
        top_in = max(self.input, _rate(self.cache_write, self.input))
        top_out = max(self.output, _rate(self.reasoning, self.output))
        return (input_tokens * top_in + output_tokens * top_out) / MILLION

    @classmethod
    def parse(cls, where: str, value: Any) -> Rates:
        """Rates from a mapping like ``{"input": 2.5, "output": 10}`` (numbers or decimal
        strings, USD per million tokens); a bad entry raises :class:`ConfigurationError`
        naming it."""
        if isinstance(value, Rates):
            return value
        if not isinstance(value, Mapping):
            raise ConfigurationError(
                f"prices[{where!r}]: expected a table of USD per million tokens like "
                "{input = 2.5, output = 10}, got " + type(value).__name__
            )
        unknown = sorted(set(value) - set(PRICE_KEYS))
        if unknown:
            raise ConfigurationError(
                f"prices[{where!r}]: unknown key(s) {', '.join(map(repr, unknown))} "
                f"(allowed: {', '.join(PRICE_KEYS)})"
            )
        missing = [k for k in ("input", "output") if k not in value]
        if missing:
            raise ConfigurationError(
                f"prices[{where!r}]: {' and '.join(missing)} must be given (USD per million "
                "tokens; 0 for a free model)"
            )
        rates = {k: _decimal(where, k, value[k]) for k in PRICE_KEYS if value.get(k) is not None}
        return cls(**rates)


def _decimal(where: str, key: str, value: Any) -> Decimal:
    """A finite, non-negative price as a ``Decimal`` (floats through their shortest
    spelling, so ``2.5`` is exactly 2.5)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str, Decimal)):
        raise ConfigurationError(
            f"prices[{where!r}].{key}={value!r}: expected a number of USD per million tokens"
        )
    try:
        number = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    except InvalidOperation:
        number = Decimal("NaN")
    if not number.is_finite() or number < 0:
        raise ConfigurationError(
            f"prices[{where!r}].{key}={value!r}: expected a finite number >= 0 of USD per "
            "million tokens"
        )
    return number


def parse_prices(raw: Mapping[str, Any] | None) -> dict[str, Rates]:
    """Validate a ``prices`` mapping (``"provider"`` or ``"provider:model"`` to rates)."""
    out: dict[str, Rates] = {}
    for key, value in (raw or {}).items():
        if not isinstance(key, str) or not key.strip(":") or key.startswith(":"):
            raise ConfigurationError(f"prices key {key!r}: expected 'provider' or 'provider:model'")
        out[key] = Rates.parse(key, value)
    return out


_MISSING = object()


class Pricing:
    """Prices for a client: the user's ``overrides`` (``"provider:model"``, then
    ``"provider"`` for every model of a provider) win over ``source`` (the
    ``chatcore_pricing`` hook's). Lookups are remembered for ``ttl`` seconds (so dated
    prices roll over) in a bounded table; safe to share across threads."""

    def __init__(
        self,
        overrides: Mapping[str, Rates] | None = None,
        source: PriceSource | None = None,
        *,
        ttl: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.overrides = dict(overrides or {})
        self.source = source
        self.ttl = ttl
        self.clock = clock
        self._known: dict[tuple[str, str], tuple[float, Price | None]] = {}
        self._factors: dict[Rates, tuple[Decimal, Decimal]] = {}
        self._lock = threading.Lock()

    def price_of(self, provider: str, model: str) -> Price | None:
        """The price of ``provider:model``, or ``None`` when nobody knows it."""
        key = (provider, model)
        found = self._known.get(key)
        now = self.clock()
        if found is not None and found[0] > now:
            return found[1]
        price: Price | None = self.overrides.get(f"{provider}:{model}")
        if price is None:
            price = self.overrides.get(provider)
        if price is None and self.source is not None:
            try:
                price = self.source.price_of(provider, model)
            except Exception:  # a broken source means "unknown", never a failed call
                price = None
        with self._lock:
            if len(self._known) >= 4096:
                self._known.clear()
            self._known[key] = (now + self.ttl, price)
        return price

    def cost(self, request: ChatRequest, response: ChatResponse) -> Decimal | None:
        """What ``response`` cost: its usage at the price of the model the caller asked
        for when the user priced it (a deployment name), else of the model the provider
        says answered, else of the one asked for. ``None`` when either is unknown."""
        usage = response.usage
        if usage is None:
            return None
        provider = request.provider
        price: Price | None = self.overrides.get(f"{provider}:{request.model}")
        if price is None and response.model and response.model != request.model:
            price = self.price_of(provider, response.model)
        if price is None:
            price = self.price_of(provider, request.model)
        return None if price is None else price.cost(usage)

    def worst_case_nanos(self, request: ChatRequest, input_tokens: int, output_tokens: int) -> int:
        """:meth:`worst_case` in whole nano-dollars, rounded up (what a budget reserves);
        flat ``Rates`` take a cached integer-friendly path."""
        price = self.price_of(request.provider, request.model)
        if isinstance(price, Rates):
            factors = self._factors.get(price)
            if factors is None:
                top_in = max(price.input, _rate(price.cache_write, price.input))
                top_out = max(price.output, _rate(price.reasoning, price.output))
                factors = self._factors[price] = (top_in * 1000, top_out * 1000)
            nanos = input_tokens * factors[0] + output_tokens * factors[1]
            return int(nanos.to_integral_value(rounding=ROUND_CEILING))
        worst = self.worst_case(request, input_tokens, output_tokens)
        return int((worst * 1_000_000_000).to_integral_value(rounding=ROUND_CEILING))

    def worst_case(self, request: ChatRequest, input_tokens: int, output_tokens: int) -> Decimal:
        """The most the call can cost, or raise :class:`ConfigurationError` when the
        model's price is unknown (a budget cannot hold a call it cannot price)."""
        price = self.price_of(request.provider, request.model)
        if price is None:
            raise ConfigurationError(
                f"a budget applies to {request.provider}:{request.model} but its price is "
                "unknown: install chatcore-cost (pip install chatcore-cost) or give its "
                f'price, e.g. prices={{"{request.provider}:{request.model}": '
                '{"input": 2.5, "output": 10}} (USD per million tokens) or '
                f'[prices."{request.provider}:{request.model}"] in chatcore.toml'
            )
        return price.worst_case(input_tokens, output_tokens)


def usd(value: Decimal | None) -> float | None:
    """A cost as a float (for metrics), ``None`` kept."""
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None
