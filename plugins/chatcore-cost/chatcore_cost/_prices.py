"""Prices from ``genai-prices`` (pydantic's database of LLM prices), for chatcore's
``chatcore_pricing`` hook.

The bundled snapshot is used: nothing is fetched unless :func:`refresh_prices` is called.
A model's price is looked up once (per hour, so dated prices roll over); a flat price made
of token prices only becomes a :class:`chatcore._cost.Rates` (a few microseconds per call,
the same arithmetic as ``genai_prices.calc_price``); anything else (tiered prices, a
per-request fee, modality-specific prices) is priced by ``calc_price`` itself.
"""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from chatcore._cost import MILLION, Rates
from chatcore.models import Usage

__all__ = [
    "GenaiPrice",
    "GenaiPrices",
    "genai_provider",
    "refresh_prices",
    "use_bundled_prices",
]

#: genai-prices' price keys that chatcore's typed usage maps to, and the ``Rates`` field.
_TOKEN_KEYS = {
    "input_mtok": "input",
    "output_mtok": "output",
    "cache_read_mtok": "cached_input",
    "cache_write_mtok": "cache_write",
    "output_reasoning_mtok": "reasoning",
}
#: Priced units a chat's usage never reports (searches, code runs, TTL-specific cache
#: writes): genai-prices prices them at zero for such a usage, and so does ``Rates``.
_NOT_REPORTED = frozenset(
    {
        "web_searches_kcount",
        "storage_searches_kcount",
        "social_searches_kcount",
        "code_executions_kcount",
        "cache_write_5m_mtok",
        "cache_write_1h_mtok",
    }
)

#: chatcore provider name -> genai-prices provider id, where they differ.
_PROVIDER_IDS: dict[str, str] = {}


def genai_provider(provider: str, model: str) -> tuple[str, str] | None:
    """``(genai-prices provider id, model ref)`` for a chatcore ``provider:model``, or
    ``None`` when the price cannot be known (a Hugging Face model without a
    ``:inference-provider`` suffix is routed to whichever provider the router picks)."""
    if provider == "huggingface":
        name, sep, via = model.rpartition(":")
        if not sep or not name or via in ("fastest", "cheapest", "auto"):
            return None
        return f"huggingface_{via}", name
    return _PROVIDER_IDS.get(provider, provider), model


def _genai_usage(usage: Usage) -> Any:
    from genai_prices import Usage as GUsage

    values: dict[str, int] = {
        "input_tokens": usage.prompt_tokens,
        "output_tokens": usage.completion_tokens,
    }
    if usage.cached_tokens:
        values["cache_read_tokens"] = usage.cached_tokens
    if usage.cache_creation_tokens:
        values["cache_write_tokens"] = usage.cache_creation_tokens
    if usage.reasoning_tokens:
        values["output_reasoning_tokens"] = usage.reasoning_tokens
    return GUsage(**values)


class GenaiPrice:
    """A price ``genai_prices`` computes itself (tiered prices and other shapes)."""

    def __init__(self, model_price: Any) -> None:
        self.model_price = model_price

    def cost(self, usage: Usage) -> Decimal:
        result = self.model_price.calc_price(_genai_usage(usage))
        return Decimal(result["total_price"])

    def worst_case(self, input_tokens: int, output_tokens: int) -> Decimal:
        """The dearest input and output token prices (the top tier of a tiered price),
        plus one call of every other priced unit."""
        top_in = max((_top(v) for k, v in _items(self.model_price) if _is_input(k)), default=0)
        top_out = max((_top(v) for k, v in _items(self.model_price) if _is_output(k)), default=0)
        fee = Decimal(0)
        requests = getattr(self.model_price, "requests_kcount", None)
        if requests is not None:
            fee = _top(requests) / 1000
        return (input_tokens * Decimal(top_in) + output_tokens * Decimal(top_out)) / MILLION + fee


def _items(model_price: Any) -> list[tuple[str, Any]]:
    return [(k, v) for k, v in vars(model_price).items() if v is not None]


def _is_input(key: str) -> bool:
    return key.endswith("_mtok") and key.startswith(("input", "cache"))


def _is_output(key: str) -> bool:
    return key.endswith("_mtok") and key.startswith("output")


def _top(price: Any) -> Decimal:
    """A flat price, or the highest of a tiered one's."""
    if isinstance(price, Decimal):
        return price
    return Decimal(max([price.base, *(tier.price for tier in price.tiers)]))


def _as_rates(model_price: Any) -> Rates | None:
    """The flat token prices of ``model_price`` as ``Rates``, or ``None`` when it needs
    genai-prices' own arithmetic."""
    rates: dict[str, Decimal] = {}
    for key, value in _items(model_price):
        if key in _NOT_REPORTED:
            continue
        field = _TOKEN_KEYS.get(key)
        if field is None or not isinstance(value, Decimal):
            return None
        rates[field] = value
    if "input" not in rates or "output" not in rates:
        return None
    return Rates(**rates)


class GenaiPrices:
    """A price source (``price_of(provider, model)``) over the genai-prices snapshot in
    use: the bundled one, or the one :func:`refresh_prices` installed."""

    def price_of(self, provider: str, model: str) -> Rates | GenaiPrice | None:
        found = genai_provider(provider, model)
        if found is None:
            return None
        provider_id, model_ref = found
        from genai_prices import data_snapshot

        try:
            _, info = data_snapshot.get_snapshot().find_provider_model(
                model_ref, None, provider_id, None
            )
        except LookupError:
            return None
        model_price = info.get_prices(datetime.now(timezone.utc))
        return _as_rates(model_price) or GenaiPrice(model_price)

    def __repr__(self) -> str:
        return "<GenaiPrices (genai-prices snapshot)>"


def refresh_prices(url: str | None = None, timeout: float = 30.0) -> bool:
    """Download the latest genai-prices data now (by default from the project's GitHub
    repository; ``url``: a mirror of its ``data.json``) and use it from then on, in this
    process. Opt-in: chatcore never calls it. Returns whether new data was installed.
    Clients price models they have not priced yet (or whose remembered price is older
    than an hour) with it; a failed download raises and changes nothing."""
    from genai_prices import data_snapshot
    from genai_prices.update_prices import UpdatePrices

    updater = UpdatePrices(request_timeout=timeout)  # type: ignore[arg-type]
    if url is not None:
        updater.url = url
    snapshot = updater.fetch()
    if snapshot is None:
        return False
    data_snapshot.set_custom_snapshot(snapshot)
    return True


def use_bundled_prices() -> None:
    """Go back to the prices bundled with the installed genai-prices."""
    from genai_prices import data_snapshot

    data_snapshot.set_custom_snapshot(None)
