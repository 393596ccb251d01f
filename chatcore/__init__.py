"""chatcore: one client, one pipeline, any chat LLM provider (as plugins).

```python
import chatcore

client = chatcore.Client()
print(client.chat("openai:gpt-4o-mini", "Hello").text)
```

Importing chatcore imports no plugin and touches no network; plugins are discovered from
the ``chatcore`` entry-point group on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

from chatcore._client import Client
from chatcore._limits import InMemoryRateLimiter, RateLimit
from chatcore._log import configure_logging
from chatcore._metrics import InMemoryMetrics, MetricsSink, RequestEvent
from chatcore._plugins import PluginRecord, PluginWarning, list_plugins
from chatcore._retry import RetryPolicy, with_retry
from chatcore._settings import Settings, load_settings
from chatcore._stream import ChatStream
from chatcore.exceptions import (
    APIConnectionError,
    APIError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ChatcoreError,
    ConfigurationError,
    ConflictError,
    ContextWindowExceededError,
    ModelNotFoundError,
    NotFoundError,
    PermissionDeniedError,
    PluginError,
    PluginLoadError,
    ProviderNotFoundError,
    QuotaExceededError,
    RateLimitError,
    RateLimitExceeded,
    RequestTooLargeError,
    ResponseDecodeError,
    ServerError,
    ServiceUnavailableError,
    StreamError,
    UnprocessableEntityError,
    ValidationError,
)
from chatcore.hookspecs import hookimpl
from chatcore.models import (
    ChatChunk,
    ChatRequest,
    ChatResponse,
    Choice,
    ImagePart,
    Message,
    TextPart,
    Tool,
    ToolCall,
    Usage,
)
from chatcore.provider import ModelInfo, Provider, ProviderSpec

if TYPE_CHECKING:
    from chatcore._cache import CacheStats, InMemoryCache, ResponseCache, cache_key
    from chatcore._health import HealthReport, ProviderHealth

#: Names imported on first access (PEP 562): they pull in modules that ``import chatcore``
#: does not need (the cache's cachetools, the health server's http.server).
_LAZY = {
    "CacheStats": "chatcore._cache",
    "InMemoryCache": "chatcore._cache",
    "ResponseCache": "chatcore._cache",
    "cache_key": "chatcore._cache",
    "HealthReport": "chatcore._health",
    "ProviderHealth": "chatcore._health",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'chatcore' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "APIConnectionError",
    "APIError",
    "APIStatusError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "CacheStats",
    "ChatChunk",
    "ChatRequest",
    "ChatResponse",
    "ChatStream",
    "ChatcoreError",
    "Choice",
    "Client",
    "ConfigurationError",
    "ConflictError",
    "ContextWindowExceededError",
    "HealthReport",
    "ImagePart",
    "InMemoryCache",
    "InMemoryMetrics",
    "InMemoryRateLimiter",
    "Message",
    "MetricsSink",
    "ModelInfo",
    "ModelNotFoundError",
    "NotFoundError",
    "PermissionDeniedError",
    "PluginError",
    "PluginLoadError",
    "PluginRecord",
    "PluginWarning",
    "Provider",
    "ProviderHealth",
    "ProviderNotFoundError",
    "ProviderSpec",
    "QuotaExceededError",
    "RateLimit",
    "RateLimitError",
    "RateLimitExceeded",
    "RequestEvent",
    "RequestTooLargeError",
    "ResponseCache",
    "ResponseDecodeError",
    "RetryPolicy",
    "ServerError",
    "ServiceUnavailableError",
    "Settings",
    "StreamError",
    "TextPart",
    "Tool",
    "ToolCall",
    "UnprocessableEntityError",
    "Usage",
    "ValidationError",
    "__version__",
    "cache_key",
    "configure_logging",
    "hookimpl",
    "list_plugins",
    "load_settings",
    "with_retry",
]
