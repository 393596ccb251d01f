"""chatcore plugin: a rate limiter and a response cache shared through Redis by every
process and host of an application.

Installing it changes nothing: the hooks defer to the core's in-memory defaults unless
``CHATCORE_REDIS_LIMITER=1`` / ``CHATCORE_REDIS_CACHE=1`` / ``CHATCORE_REDIS_BUDGETS=1``
are set with
``CHATCORE_REDIS_URL``. In code, pass the objects directly::

    from chatcore_redis import RedisCache, RedisRateLimiter

    client = chatcore.Client(
        rate_limiter=RedisRateLimiter("redis://127.0.0.1:6379/0", limits={"openai": {"rpm": 500}}),
        cache=RedisCache("redis://127.0.0.1:6379/0", ttl=600),
    )
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from chatcore import hookimpl

if TYPE_CHECKING:
    from chatcore_redis._budget import RedisBudgetStore
    from chatcore_redis._cache import RedisCache, RedisCacheStats
    from chatcore_redis._config import (
        ENV_VARIABLES,
        RedisSettings,
        RedisUnavailableError,
        mask_url,
    )
    from chatcore_redis._limiter import RedisRateLimiter, RedisTicket

__version__ = "0.1.0"

__all__ = [
    "ENV_VARIABLES",
    "RedisBudgetStore",
    "RedisCache",
    "RedisCacheStats",
    "RedisRateLimiter",
    "RedisSettings",
    "RedisTicket",
    "RedisUnavailableError",
    "__version__",
    "chatcore_budget_store",
    "chatcore_cache",
    "chatcore_rate_limiter",
    "mask_url",
]

# redis-py is imported on first use, not when the plugin host loads the plugin: an
# application that has the plugin installed but not configured does not pay for it.
_LAZY = {
    "RedisBudgetStore": "chatcore_redis._budget",
    "RedisCache": "chatcore_redis._cache",
    "RedisCacheStats": "chatcore_redis._cache",
    "ENV_VARIABLES": "chatcore_redis._config",
    "RedisSettings": "chatcore_redis._config",
    "RedisUnavailableError": "chatcore_redis._config",
    "mask_url": "chatcore_redis._config",
    "RedisRateLimiter": "chatcore_redis._limiter",
    "RedisTicket": "chatcore_redis._limiter",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'chatcore_redis' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


def _settings_of(settings: Any) -> Any:
    """The plugin's settings from the environment the hooks can see, or ``None`` when
    neither switch is on (checked without importing redis)."""
    from chatcore_redis._env import enabled, environ_of

    environ = environ_of(settings)
    if not enabled(environ):
        return None
    from chatcore_redis._config import RedisSettings

    return RedisSettings.from_environ(environ)


@hookimpl
def chatcore_rate_limiter(settings: Any) -> RedisRateLimiter | None:
    """A :class:`RedisRateLimiter` with the client's ``rate_limits`` and
    ``max_server_hold`` when ``CHATCORE_REDIS_LIMITER=1``; otherwise ``None`` (the core's
    limiter is used)."""
    config = _settings_of(settings)
    if config is None or not config.limiter:
        return None
    from chatcore._limits import DEFAULT_MAX_SERVER_HOLD
    from chatcore_redis._config import shared_client
    from chatcore_redis._limiter import RedisRateLimiter

    return RedisRateLimiter(
        config.url,
        limits=getattr(settings, "rate_limits", None),
        max_server_hold=getattr(settings, "max_server_hold", DEFAULT_MAX_SERVER_HOLD),
        client=shared_client(config),
        password=config.password,
        prefix=config.prefix,
        failure_policy=config.failure_policy,
        socket_timeout=config.socket_timeout,
        connect_timeout=config.connect_timeout,
    )


@hookimpl
def chatcore_cache(settings: Any) -> RedisCache | None:
    """A :class:`RedisCache` with the client's ``cache_ttl`` when
    ``CHATCORE_REDIS_CACHE=1`` (the Client asks only when caching is on); otherwise
    ``None`` (the core's in-memory cache is used)."""
    config = _settings_of(settings)
    if config is None or not config.cache:
        return None
    from chatcore_redis._cache import RedisCache
    from chatcore_redis._config import shared_client

    return RedisCache(
        config.url,
        ttl=getattr(settings, "cache_ttl", 3600.0),
        client=shared_client(config),
        password=config.password,
        prefix=config.prefix,
        max_value_bytes=config.cache_max_bytes,
        failure_policy=config.failure_policy,
        socket_timeout=config.socket_timeout,
        connect_timeout=config.connect_timeout,
    )


@hookimpl
def chatcore_budget_store(settings: Any) -> RedisBudgetStore | None:
    """A :class:`RedisBudgetStore` when ``CHATCORE_REDIS_BUDGETS=1`` (the client asks only
    when budgets are configured); otherwise ``None`` (budgets stay in memory)."""
    config = _settings_of(settings)
    if config is None or not config.budgets:
        return None
    from chatcore_redis._budget import RedisBudgetStore
    from chatcore_redis._config import shared_client

    return RedisBudgetStore(
        config.url,
        client=shared_client(config),
        password=config.password,
        prefix=config.prefix,
        failure_policy=config.failure_policy,
        socket_timeout=config.socket_timeout,
        connect_timeout=config.connect_timeout,
    )
