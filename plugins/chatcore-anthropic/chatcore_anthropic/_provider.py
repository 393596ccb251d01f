"""The ``anthropic`` provider: its options, and the translate-only :class:`Provider` that
turns requests into :class:`~chatcore.provider.HttpCall` objects for the Messages API and
its answers into responses, chunks and typed errors. The core's transports send (requests
for ``Client``, aiohttp for ``AsyncClient``); nothing here does I/O, retries or sleeps."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from chatcore.exceptions import APIStatusError, ConfigurationError
from chatcore.models import ChatRequest, ChatResponse
from chatcore.provider import (
    HttpCall,
    HttpResult,
    ModelInfo,
    Option,
    Provider,
    ProviderConfig,
    ProviderSpec,
)
from chatcore_anthropic._answer import (
    MODELS_PAGE_LIMIT,
    map_error,
    models_from_payload,
    parse_message,
    rate_limit_headers,
)
from chatcore_anthropic._request import DEFAULT_MAX_TOKENS, messages_body
from chatcore_anthropic._stream import MessagesStreamDecoder

__all__ = ["DEFAULT_BASE_URL", "DEFAULT_VERSION", "OPTIONS", "SPEC", "AnthropicProvider"]

DISTRIBUTION = "chatcore-anthropic"
DEFAULT_BASE_URL = "https://api.anthropic.com"
#: The ``anthropic-version`` sent unless configured: the stable version every model and
#: the official SDK use.
DEFAULT_VERSION = "2023-06-01"
MESSAGES_PATH = "/v1/messages"
MODELS_PATH = "/v1/models"

CAPABILITIES = frozenset({"chat", "stream", "models", "tools", "json_schema", "vision"})

_UNSAFE_HEADER_CHARS = re.compile(r"[\x00-\x1f\x7f]")
_VERSION = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _option(**fields: Any) -> Option:
    # built through **fields: attrs' converter=tuple on Option.env gives mypy an
    # unsolvable parameter type
    return Option(**fields)


OPTIONS: dict[str, Option] = {
    "api_key": _option(
        secret=True,
        env=("ANTHROPIC_API_KEY",),
        help="API key, sent as the x-api-key header (or give auth_token)",
    ),
    "auth_token": _option(
        secret=True,
        env=("ANTHROPIC_AUTH_TOKEN",),
        help="a bearer token, sent as 'Authorization: Bearer <token>' (instead of an api_key)",
    ),
    "base_url": _option(
        default=DEFAULT_BASE_URL,
        env=("ANTHROPIC_BASE_URL",),
        help="API base URL, without /v1 (requests go to {base_url}/v1/messages)",
    ),
    "api_version": _option(
        default=DEFAULT_VERSION, help="the anthropic-version header sent with every request"
    ),
    "beta": _option(
        help="anthropic-beta header: comma-separated beta names sent with every request"
    ),
    "sampling_params": _option(
        type=bool,
        default=False,
        env=(),
        help="send temperature / top_p / extra top_k (the current API refuses them: off by "
        "default, so they are a ValidationError; turn on for an older anthropic-version or "
        "a compatible server that takes them)",
    ),
    "default_max_tokens": _option(
        type=int,
        default=DEFAULT_MAX_TOKENS,
        minimum=1,
        help="max_tokens when a request gives none (the API requires it); with thinking "
        "enabled, the thinking budget is added",
    ),
}


def _header_value(config: ProviderConfig, name: str) -> str | None:
    """Option ``name`` as a header value, or ``None``; whitespace around it or a control
    character (a trailing newline from a file) is a ConfigurationError that never shows it."""
    value = config.get(name)
    if value is None or value == "":
        return None
    text = str(value)
    if _UNSAFE_HEADER_CHARS.search(text) or text != text.strip():
        source = config.sources.get(name, "default")
        raise ConfigurationError(
            f"{config.spec.name}: option {name!r} (from {source}) has leading or trailing "
            "whitespace or a control character (a trailing newline?); remove it"
        )
    return text


def _with_plugin_version(config: ProviderConfig) -> ProviderConfig:
    """``config`` naming this plugin and its version (for the User-Agent) when the core
    could not tell them (a plugin registered in code rather than by its distribution)."""
    if config.spec.version:
        return config
    from chatcore_anthropic import __version__

    spec = attrs.evolve(config.spec, plugin=DISTRIBUTION, version=__version__)
    return attrs.evolve(config, spec=spec)


class AnthropicProvider(Provider):
    """The Messages API at ``base_url``: ``POST /v1/messages`` (answers and event streams)
    and ``GET /v1/models``, with ``x-api-key`` (or ``Authorization: Bearer``),
    ``anthropic-version`` and the optional ``anthropic-beta`` headers."""

    #: The clock of ``created`` timestamps and of rate-limit resets without a ``Date``.
    clock: Callable[[], float] = staticmethod(time.time)

    def __init__(self, config: ProviderConfig) -> None:
        super().__init__(_with_plugin_version(config))
        config = self.config
        key = _header_value(config, "api_key")
        token = _header_value(config, "auth_token")
        if key is None and token is None:
            config.require("api_key", "(or an auth_token: ANTHROPIC_AUTH_TOKEN)")
        base_url = str(config.get("base_url") or DEFAULT_BASE_URL).rstrip("/")
        if not base_url.startswith(("http://", "https://")) or len(base_url) <= len("https://"):
            raise ConfigurationError(
                f"{self.name}: option 'base_url' (from {config.sources.get('base_url')}) must "
                f"be an http:// or https:// URL, got {base_url!r}"
            )
        version = _header_value(config, "api_version") or DEFAULT_VERSION
        if not _VERSION.match(version):
            raise ConfigurationError(
                f"{self.name}: option 'api_version' must be a date like {DEFAULT_VERSION!r}, "
                f"got {version!r}"
            )
        headers = {"anthropic-version": version}
        if key is not None:
            headers["x-api-key"] = key
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        beta = _header_value(config, "beta")
        if beta is not None:
            headers["anthropic-beta"] = beta
        self.default_max_tokens = int(config.get("default_max_tokens") or DEFAULT_MAX_TOKENS)
        self.sampling_params = bool(config.get("sampling_params"))
        self.set_target(base_url, headers=headers)

    def _call(self, request: ChatRequest, *, stream: bool) -> HttpCall:
        body, headers = messages_body(
            request,
            default_max_tokens=self.default_max_tokens,
            stream=stream,
            sampling_params=self.sampling_params,
        )
        shared = self.target.headers.get("anthropic-beta") if self.target else None
        if shared and "anthropic-beta" in headers:
            headers["anthropic-beta"] = f"{shared},{headers['anthropic-beta']}"
        return HttpCall("POST", MESSAGES_PATH, json=body, headers=headers or None, stream=stream)

    def prepare_chat(self, request: ChatRequest) -> HttpCall:
        """``POST /v1/messages``; what the API would refuse raises ``ValidationError``."""
        return self._call(request, stream=False)

    def parse_chat(self, request: ChatRequest, result: HttpResult) -> ChatResponse:
        """The response of a 2xx ``message`` answer (``ResponseDecodeError`` otherwise)."""
        return parse_message(
            result,
            request,
            provider=self.name,
            secrets=self.config.secrets,
            created=int(self.clock()),
        )

    def prepare_stream(self, request: ChatRequest) -> HttpCall:
        """The streaming ``POST /v1/messages`` (``"stream": true``)."""
        return self._call(request, stream=True)

    def stream_decoder(self, request: ChatRequest, result: HttpResult) -> MessagesStreamDecoder:
        """A fresh decoder of one Messages event stream."""
        return MessagesStreamDecoder(
            provider=self.name,
            model=request.model,
            created=int(self.clock()),
            secrets=self.config.secrets,
        )

    def prepare_models(self) -> HttpCall:
        """``GET /v1/models`` with the largest page (the API serves at most 1,000 a page;
        the contract has one call per listing)."""
        return HttpCall("GET", MODELS_PATH, params={"limit": str(MODELS_PAGE_LIMIT)})

    def parse_models(self, result: HttpResult) -> list[ModelInfo]:
        """The models of a 2xx ``GET /v1/models`` answer."""
        return models_from_payload(result, provider=self.name, secrets=self.config.secrets)

    def map_error(
        self, status_code: int, body: bytes, headers: Mapping[str, str]
    ) -> APIStatusError | None:
        """The typed error of an Anthropic error body (see
        :func:`chatcore_anthropic._answer.map_error`)."""
        return map_error(status_code, body, headers)

    def rate_limit_headers(self, headers: Mapping[str, str]) -> Mapping[str, str]:
        """``anthropic-ratelimit-*`` translated into the ``x-ratelimit-*`` family."""
        return rate_limit_headers(headers, self.clock())


SPEC = ProviderSpec(
    name="anthropic",
    factory=AnthropicProvider,
    options=OPTIONS,
    capabilities=CAPABILITIES,
    description="Anthropic Messages API (Claude)",
)
