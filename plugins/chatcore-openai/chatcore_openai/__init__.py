"""chatcore provider plugin for OpenAI Chat Completions, OpenAI-compatible servers (vLLM,
Ollama, LM Studio, Together, Groq, OpenRouter) and Azure OpenAI.

It offers two providers, ``openai`` and ``azure``; use them as ``"openai:gpt-4o-mini"`` and
``"azure:<deployment>"`` with :class:`chatcore.Client`.
"""

from __future__ import annotations

from chatcore import hookimpl
from chatcore.provider import ProviderSpec

__version__ = "0.1.0"

__all__ = ["__version__", "chatcore_providers"]


@hookimpl
def chatcore_providers() -> list[ProviderSpec]:
    """The ``openai`` and ``azure`` providers."""
    from chatcore_openai import _azure, _provider

    return [_provider.SPEC, _azure.SPEC]
