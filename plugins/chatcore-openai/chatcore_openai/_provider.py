"""The ``openai`` provider: OpenAI Chat Completions, and any server that speaks it (vLLM,
Ollama, LM Studio, Together, Groq, OpenRouter, ...) through ``base_url``."""

from __future__ import annotations

from chatcore.provider import Option, ProviderConfig
from chatcore_openai._wire import (
    ChatCompletionsProvider,
    header_value,
    http_url,
    option,
    provider_spec,
)

DEFAULT_BASE_URL = "https://api.openai.com/v1"

CAPABILITIES = frozenset(
    {"chat", "stream", "models", "tools", "json_object", "json_schema", "vision"}
)

OPTIONS: dict[str, Option] = {
    "api_key": option(
        secret=True,
        required=True,
        env=("OPENAI_API_KEY",),
        help="API key, sent as 'Authorization: Bearer <key>' (any placeholder for a local "
        "server that needs none)",
    ),
    "base_url": option(
        default=DEFAULT_BASE_URL,
        env=("OPENAI_BASE_URL",),
        help="API base URL including the version prefix (e.g. http://localhost:11434/v1)",
    ),
    "organization": option(
        env=("OPENAI_ORG_ID",), help="organization id, sent as the OpenAI-Organization header"
    ),
    "project": option(
        env=("OPENAI_PROJECT_ID",), help="project id, sent as the OpenAI-Project header"
    ),
}


class OpenAIProvider(ChatCompletionsProvider):
    """OpenAI Chat Completions at ``base_url``: ``POST {base_url}/chat/completions`` and
    ``GET {base_url}/models`` with ``Authorization: Bearer <api_key>`` (described as
    :class:`~chatcore.provider.HttpCall` objects; the core sends them)."""

    def __init__(self, config: ProviderConfig) -> None:
        super().__init__(config)
        config = self.config
        # resolve_config already requires the key; require() covers a config built by hand
        key = header_value(config, "api_key") or str(config.require("api_key"))
        base_url = http_url(config, "base_url", str(config.get("base_url") or ""))
        headers = {"Authorization": f"Bearer {key}"}
        for name, header in (
            ("organization", "OpenAI-Organization"),
            ("project", "OpenAI-Project"),
        ):
            value = header_value(config, name)
            if value is not None:
                headers[header] = value
        # base_url (the target's) is the resolved URL without a trailing slash
        self.set_target(base_url, headers=headers)


SPEC = provider_spec(
    name="openai",
    factory=OpenAIProvider,
    options=OPTIONS,
    capabilities=CAPABILITIES,
    description="OpenAI Chat Completions and OpenAI-compatible servers (set base_url)",
)
