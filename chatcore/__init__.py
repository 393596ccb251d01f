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
from chatcore._log import configure_logging, register_secrets
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
    BudgetExceededError,
    ChatcoreError,
    ConfigurationError,
    ConflictError,
    ContextWindowExceededError,
    ModelNotFoundError,
    NoDeploymentAvailableError,
    NotFoundError,
    PermissionDeniedError,
    PluginError,
    PluginLoadError,
    ProviderNotFoundError,
    QuotaExceededError,
    RateLimitError,
    RateLimitExceeded,
    RedirectError,
    RequestTooLargeError,
    ResponseDecodeError,
    ResponseTooLargeError,
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
    from chatcore._aclient import AsyncClient
    from chatcore._budget import Budget, BudgetState, InMemoryBudgetStore
    from chatcore._cache import (
        CacheStats,
        InMemoryCache,
        ResponseCache,
        cache_key,
        freeze_for_cache,
        thaw_from_cache,
    )
    from chatcore._cost import Rates
    from chatcore._health import HealthReport, ProviderHealth
    from chatcore._images import image_part, user_message_with_images
    from chatcore._metrics import PROMETHEUS_CONTENT_TYPE
    from chatcore._stream import AsyncChatStream
    from chatcore._structured import (
        StructuredOutputError,
        StructuredResponse,
        achat_structured,
        chat_json,
        chat_structured,
        json_schema_for,
        parse_structured,
        response_format_for,
    )
    from chatcore._tools import (
        ToolCallRecord,
        ToolLoopError,
        ToolRun,
        arun_tools,
        run_tools,
        tool_from_function,
    )
    from chatcore._tracing import TracedCall

#: Names imported on first access (PEP 562): they pull in modules that ``import chatcore``
#: does not need (the cache's cachetools, the health server's http.server).
_LAZY = {
    "AsyncClient": "chatcore._aclient",
    "AsyncChatStream": "chatcore._stream",
    "achat_structured": "chatcore._structured",
    "arun_tools": "chatcore._tools",
    "Budget": "chatcore._budget",
    "BudgetState": "chatcore._budget",
    "InMemoryBudgetStore": "chatcore._budget",
    "Rates": "chatcore._cost",
    "CacheStats": "chatcore._cache",
    "InMemoryCache": "chatcore._cache",
    "ResponseCache": "chatcore._cache",
    "cache_key": "chatcore._cache",
    "freeze_for_cache": "chatcore._cache",
    "thaw_from_cache": "chatcore._cache",
    "PROMETHEUS_CONTENT_TYPE": "chatcore._metrics",
    "HealthReport": "chatcore._health",
    "ProviderHealth": "chatcore._health",
    "image_part": "chatcore._images",
    "user_message_with_images": "chatcore._images",
    "StructuredOutputError": "chatcore._structured",
    "StructuredResponse": "chatcore._structured",
    "chat_json": "chatcore._structured",
    "chat_structured": "chatcore._structured",
    "json_schema_for": "chatcore._structured",
    "parse_structured": "chatcore._structured",
    "response_format_for": "chatcore._structured",
    "ToolCallRecord": "chatcore._tools",
    "ToolLoopError": "chatcore._tools",
    "ToolRun": "chatcore._tools",
    "TracedCall": "chatcore._tracing",
    "run_tools": "chatcore._tools",
    "tool_from_function": "chatcore._tools",
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
    "__version__",
    "achat_structured",
    "APIConnectionError",
    "APIError",
    "APIStatusError",
    "APITimeoutError",
    "arun_tools",
    "AsyncChatStream",
    "AsyncClient",
    "AuthenticationError",
    "BadRequestError",
    "Budget",
    "BudgetExceededError",
    "BudgetState",
    "cache_key",
    "CacheStats",
    "chat_json",
    "chat_structured",
    "ChatChunk",
    "ChatcoreError",
    "ChatRequest",
    "ChatResponse",
    "ChatStream",
    "Choice",
    "Client",
    "ConfigurationError",
    "configure_logging",
    "ConflictError",
    "ContextWindowExceededError",
    "freeze_for_cache",
    "HealthReport",
    "hookimpl",
    "image_part",
    "ImagePart",
    "InMemoryBudgetStore",
    "InMemoryCache",
    "InMemoryMetrics",
    "InMemoryRateLimiter",
    "json_schema_for",
    "list_plugins",
    "load_settings",
    "Message",
    "MetricsSink",
    "ModelInfo",
    "ModelNotFoundError",
    "NoDeploymentAvailableError",
    "NotFoundError",
    "parse_structured",
    "PermissionDeniedError",
    "PluginError",
    "PluginLoadError",
    "PluginRecord",
    "PluginWarning",
    "PROMETHEUS_CONTENT_TYPE",
    "Provider",
    "ProviderHealth",
    "ProviderNotFoundError",
    "ProviderSpec",
    "QuotaExceededError",
    "RateLimit",
    "RateLimitError",
    "RateLimitExceeded",
    "Rates",
    "RedirectError",
    "register_secrets",
    "RequestEvent",
    "RequestTooLargeError",
    "response_format_for",
    "ResponseCache",
    "ResponseDecodeError",
    "ResponseTooLargeError",
    "RetryPolicy",
    "run_tools",
    "ServerError",
    "ServiceUnavailableError",
    "Settings",
    "StreamError",
    "StructuredOutputError",
    "StructuredResponse",
    "TextPart",
    "thaw_from_cache",
    "Tool",
    "tool_from_function",
    "ToolCall",
    "ToolCallRecord",
    "ToolLoopError",
    "ToolRun",
    "TracedCall",
    "UnprocessableEntityError",
    "Usage",
    "user_message_with_images",
    "ValidationError",
    "with_retry",
]
