"""chatcore pricing plugin: ``response.cost`` for every call, from pydantic's
``genai-prices`` database (per provider and model; cached-input, cache-write and reasoning
tokens at their own rates; dated and tiered prices).

Installed, it answers the ``chatcore_pricing`` hook; the user's own ``prices`` (in code or
``chatcore.toml``) still win. Prices come from the data bundled with the installed
``genai-prices``: nothing is fetched at run time unless :func:`refresh_prices` is called.
genai-prices (with pydantic and httpx2) is imported on the first price asked, never when
the plugin is loaded.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from chatcore import hookimpl

if TYPE_CHECKING:
    from chatcore_cost._prices import GenaiPrices

__version__ = "0.1.0"

__all__ = [
    "GenaiPrices",
    "__version__",
    "chatcore_pricing",
    "refresh_prices",
    "use_bundled_prices",
]


def __getattr__(name: str) -> Any:
    if name in ("GenaiPrices", "GenaiPrice", "refresh_prices", "use_bundled_prices"):
        from chatcore_cost import _prices

        value = getattr(_prices, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'chatcore_cost' has no attribute {name!r}")


@hookimpl
def chatcore_pricing(settings: Any) -> GenaiPrices:
    """The genai-prices source (the core puts the user's ``prices`` in front of it)."""
    from chatcore_cost._prices import GenaiPrices

    return GenaiPrices()
