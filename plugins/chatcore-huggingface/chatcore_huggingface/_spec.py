"""The ``huggingface`` provider record: its options (with environment variables and
defaults), its capabilities, and a factory that checks the token before any network."""

from __future__ import annotations

from collections.abc import Mapping

from chatcore.provider import Option, Provider, ProviderConfig, ProviderSpec

__all__ = [
    "CAPABILITIES",
    "DEFAULT_BASE_URL",
    "OPTIONS",
    "PROVIDER_NAME",
    "TOKEN_ENV",
    "create_provider",
    "provider_spec",
    "requires_token",
]

PROVIDER_NAME = "huggingface"

#: The Inference Providers router (OpenAI-compatible chat).
DEFAULT_BASE_URL = "https://router.huggingface.co/v1"

#: The vendor variables of the token, in order of precedence (after
#: ``CHATCORE_HUGGINGFACE_API_KEY``), as ``huggingface_hub`` reads them.
TOKEN_ENV: tuple[str, ...] = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")

#: Hosts that never answer without a token.
_TOKEN_HOSTS = frozenset({"router.huggingface.co", "api-inference.huggingface.co"})

#: Declared honestly: ``json_schema`` is not declared because TGI servers
#: take their own grammar shape (see the README).
CAPABILITIES = frozenset({"chat", "stream", "models", "text_generation", "tools", "json_object"})


OPTIONS: Mapping[str, Option] = {
    "api_key": Option(
        secret=True,
        env=TOKEN_ENV,
        help="Hugging Face token (hf_...); required for the router, optional for a "
        "dedicated endpoint or a local TGI server",
    ),
    "base_url": Option(
        default=DEFAULT_BASE_URL,
        help="the HF router, or the URL of a dedicated Inference Endpoint or TGI server",
    ),
    "api": Option(
        default="chat",
        choices=("chat", "generate"),
        help="'chat' (OpenAI-style /v1/chat/completions) or 'generate' (TGI's native "
        "POST /generate, for text-generation-only models)",
    ),
    "bill_to": Option(help="bill an organization you belong to (sent as the X-HF-Bill-To header)"),
    "wait_for_model": Option(
        type=bool,
        default=False,
        help="send 'x-wait-for-model: true' so a cold model on the legacy HF Inference API "
        "is waited for instead of answering 503",
    ),
}


def requires_token(base_url: str) -> bool:
    """Whether ``base_url`` is a Hugging Face-hosted API that always needs a token (the
    router and the legacy serverless API); dedicated endpoints and TGI servers may not."""
    from urllib.parse import urlsplit

    host = (urlsplit(base_url).hostname or "").lower()
    return host in _TOKEN_HOSTS


def create_provider(config: ProviderConfig) -> Provider:
    """Build the provider; a missing token for the router is a
    :class:`~chatcore.exceptions.ConfigurationError` naming ``HF_TOKEN``, raised before
    any network."""
    base_url = str(config.get("base_url") or DEFAULT_BASE_URL)
    if requires_token(base_url):
        config.require(
            "api_key",
            f"to call the Hugging Face router ({base_url}); create a token with the "
            "'Make calls to Inference Providers' permission at "
            "https://huggingface.co/settings/tokens",
        )
    from chatcore_huggingface._provider import HuggingFaceProvider

    return HuggingFaceProvider(config)


def provider_spec() -> ProviderSpec:
    """The spec the plugin's ``chatcore_providers`` hook returns."""
    return ProviderSpec(
        name=PROVIDER_NAME,
        factory=create_provider,
        options=OPTIONS,
        capabilities=CAPABILITIES,
        description="Hugging Face Inference Providers router, Inference Endpoints and TGI",
    )
