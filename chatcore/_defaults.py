"""The core's own hook implementations, registered ``trylast`` so any plugin wins."""

from __future__ import annotations

from typing import Any

from chatcore._limits import DEFAULT_MAX_SERVER_HOLD, InMemoryRateLimiter
from chatcore._retry import RetryPolicy
from chatcore.hookspecs import hookimpl


@hookimpl(trylast=True)
def chatcore_retry_policy(settings: Any) -> RetryPolicy:
    """The OpenAI-SDK-like default policy (2 retries), with the settings' retry knobs."""
    return RetryPolicy(
        max_retries=getattr(settings, "max_retries", 2),
        timeout_total=getattr(settings, "timeout_total", None),
        max_retry_after=getattr(settings, "max_retry_after", 120.0),
    )


@hookimpl(trylast=True)
def chatcore_rate_limiter(settings: Any) -> InMemoryRateLimiter:
    """In-memory token buckets for the configured ``rate_limits`` (adaptive to provider
    headers and 429s even when no limits are configured; holds capped by
    ``max_server_hold``)."""
    return InMemoryRateLimiter(
        getattr(settings, "rate_limits", None),
        max_server_hold=getattr(settings, "max_server_hold", DEFAULT_MAX_SERVER_HOLD),
    )


@hookimpl(trylast=True)
def chatcore_cache(settings: Any) -> Any:
    """The in-memory LRU + TTL cache (called only when caching is turned on)."""
    from chatcore._cache import InMemoryCache

    return InMemoryCache(
        maxsize=getattr(settings, "cache_maxsize", 1024),
        ttl=getattr(settings, "cache_ttl", 600.0),
    )


@hookimpl(trylast=True)
def chatcore_metrics_sinks(settings: Any) -> list[Any]:
    """No extra sinks."""
    return []


@hookimpl(trylast=True)
def chatcore_pricing(settings: Any) -> None:
    """No price source: only the user's own ``prices`` are known."""
    return None


@hookimpl(trylast=True)
def chatcore_budget_store(settings: Any) -> Any:
    """Budgets in this process's memory."""
    from chatcore._budget import InMemoryBudgetStore

    return InMemoryBudgetStore()
