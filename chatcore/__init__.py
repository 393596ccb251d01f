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

__version__ = "0.1.0"

from chatcore._client import Client
from chatcore._plugins import PluginRecord, PluginWarning, list_plugins
from chatcore._retry import RetryPolicy, with_retry
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

__all__ = [
    "APIConnectionError",
    "APIError",
    "APIStatusError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "ChatChunk",
    "ChatRequest",
    "ChatResponse",
    "ChatcoreError",
    "Choice",
    "Client",
    "ConfigurationError",
    "ConflictError",
    "ContextWindowExceededError",
    "ImagePart",
    "Message",
    "ModelInfo",
    "ModelNotFoundError",
    "NotFoundError",
    "PermissionDeniedError",
    "PluginError",
    "PluginLoadError",
    "PluginRecord",
    "PluginWarning",
    "Provider",
    "ProviderNotFoundError",
    "ProviderSpec",
    "QuotaExceededError",
    "RateLimitError",
    "RateLimitExceeded",
    "RequestTooLargeError",
    "ResponseDecodeError",
    "RetryPolicy",
    "ServerError",
    "ServiceUnavailableError",
    "StreamError",
    "TextPart",
    "Tool",
    "ToolCall",
    "UnprocessableEntityError",
    "Usage",
    "ValidationError",
    "__version__",
    "hookimpl",
    "list_plugins",
    "with_retry",
]
