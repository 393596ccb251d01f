"""The ``azure`` provider: Azure OpenAI Chat Completions, either a dated API version
(``{endpoint}/openai/deployments/{deployment}/chat/completions?api-version=...``) or the
GA v1 API (``{endpoint}/openai/v1/chat/completions``, ``api_version="v1"``)."""

from __future__ import annotations

import re
from urllib.parse import quote

from chatcore.exceptions import ConfigurationError
from chatcore.models import ChatRequest
from chatcore.provider import HttpResult, Option, ProviderConfig
from chatcore_openai._wire import (
    ChatCompletionsProvider,
    header_value,
    http_url,
    option,
    provider_spec,
)

DEFAULT_API_VERSION = "2024-10-21"
V1 = "v1"

CAPABILITIES = frozenset(
    {"chat", "stream", "models", "tools", "json_object", "json_schema", "vision"}
)

_DATED_VERSION = re.compile(r"^\d{4}-\d{2}-\d{2}(-preview)?$")
_ENDPOINT_SUFFIX = re.compile(r"/openai(/v1)?$")

OPTIONS: dict[str, Option] = {
    "api_key": option(
        secret=True,
        env=("AZURE_OPENAI_API_KEY",),
        help="resource key, sent as the api-key header (or set ad_token)",
    ),
    "ad_token": option(
        secret=True,
        env=("AZURE_OPENAI_AD_TOKEN",),
        help="Microsoft Entra ID token, sent as 'Authorization: Bearer <token>' (or set api_key)",
    ),
    "endpoint": option(
        required=True,
        env=("AZURE_OPENAI_ENDPOINT",),
        help="resource endpoint, e.g. https://myres.openai.azure.com",
    ),
    "api_version": option(
        default=DEFAULT_API_VERSION,
        env=("OPENAI_API_VERSION",),
        help="dated API version (YYYY-MM-DD[-preview]), or 'v1' for the GA v1 API",
    ),
    "deployment": option(
        help="deployment name; by default the model part of 'azure:<deployment>'",
    ),
    "base_url": option(help="not used by azure: URLs are built from endpoint"),
}


def _credentials(config: ProviderConfig) -> dict[str, str]:
    """The auth header: ``api-key`` or ``Authorization: Bearer``. With both configured, an
    explicitly passed one wins over one from the environment; otherwise the Entra ID token
    is used, as the OpenAI SDK does."""
    key = header_value(config, "api_key")
    token = header_value(config, "ad_token")
    if key is None and token is None:
        spec = config.spec
        keys = " or ".join(spec.env_names("api_key"))
        tokens = " or ".join(spec.env_names("ad_token"))
        raise ConfigurationError(
            f"{spec.name}: an API key or a Microsoft Entra ID token is required; set {keys} "
            f"(sent as api-key), or {tokens} (sent as Authorization: Bearer), or pass "
            f"providers={{{spec.name!r}: {{'api_key': ...}}}} to Client"
        )
    if key is not None and token is not None:
        explicit_key = config.sources.get("api_key") == "argument"
        explicit_token = config.sources.get("ad_token") == "argument"
        if explicit_key and not explicit_token:
            token = None
    if token is not None:
        return {"Authorization": f"Bearer {token}"}
    assert key is not None
    return {"api-key": key}


class AzureOpenAIProvider(ChatCompletionsProvider):
    """Azure OpenAI: a deployment per model, ``api-key`` or Entra ID auth, ``api-version``
    on every dated-API request."""

    def __init__(self, config: ProviderConfig) -> None:
        super().__init__(config)
        config = self.config
        name = config.spec.name
        if config.get("base_url"):
            source = config.sources.get("base_url", "default")
            raise ConfigurationError(
                f"{name}: option 'base_url' (from {source}) is not used by azure; set 'endpoint' "
                "(AZURE_OPENAI_ENDPOINT), e.g. https://myres.openai.azure.com"
            )
        headers = _credentials(config)
        endpoint = http_url(config, "endpoint", str(config.require("endpoint")))
        self.endpoint = _ENDPOINT_SUFFIX.sub("", endpoint)
        version = str(config.get("api_version") or DEFAULT_API_VERSION).strip()
        if version != V1 and not _DATED_VERSION.match(version):
            source = config.sources.get("api_version", "default")
            raise ConfigurationError(
                f"{name}: option 'api_version' (from {source}) must be a dated version such as "
                f"{DEFAULT_API_VERSION!r} (optionally with '-preview'), or 'v1', got {version!r}"
            )
        self.api_version = version
        self.deployment: str | None = header_value(config, "deployment")
        if version == V1:
            self.set_target(f"{self.endpoint}/openai/v1", headers=headers)
        else:
            self.set_target(
                f"{self.endpoint}/openai", headers=headers, params={"api-version": version}
            )

    @property
    def v1(self) -> bool:
        """True when talking to the GA v1 API (no ``api-version``, model in the body)."""
        return self.api_version == V1

    @property
    def base_url(self) -> str:
        """Where requests go (part of cache keys; never the key): the v1 base, or the
        deployments path with its ``api-version``. (The target's base URL, which requests
        are built on, is ``{endpoint}/openai`` for dated versions.)"""
        if self.v1:
            return f"{self.endpoint}/openai/v1"
        path = f"{self.endpoint}/openai/deployments"
        if self.deployment:
            path += "/" + quote(self.deployment, safe="")
        return f"{path}?api-version={self.api_version}"

    def chat_route(self, request: ChatRequest) -> tuple[str, str | None]:
        """Dated versions post to the deployment and leave ``model`` out of the body; v1
        posts to ``/chat/completions`` with the deployment as ``model``."""
        deployment = self.deployment or request.model
        if self.v1:
            return "/chat/completions", deployment
        return f"/deployments/{quote(deployment, safe='')}/chat/completions", None

    def request_id(self, result: HttpResult) -> str | None:
        """``x-request-id``, or Azure's ``apim-request-id``."""
        return result.request_id or result.headers.get("apim-request-id")


SPEC = provider_spec(
    name="azure",
    factory=AzureOpenAIProvider,
    options=OPTIONS,
    capabilities=CAPABILITIES,
    description="Azure OpenAI (dated API versions with deployments, or the GA v1 API)",
)
