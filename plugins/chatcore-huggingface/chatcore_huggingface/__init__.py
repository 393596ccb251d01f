"""chatcore provider plugin for Hugging Face: the Inference Providers router, dedicated
Inference Endpoints and text-generation-inference (TGI) servers.

Registers the ``huggingface`` provider through the ``chatcore`` entry point; the provider
code itself is imported only when a client first uses it.
"""

from __future__ import annotations

from collections.abc import Iterable

from chatcore import hookimpl
from chatcore.provider import ProviderSpec

__version__ = "0.1.0"

__all__ = ["__version__", "chatcore_providers"]


@hookimpl
def chatcore_providers() -> Iterable[ProviderSpec]:
    """The ``huggingface`` provider."""
    from chatcore_huggingface._spec import provider_spec

    return [provider_spec()]
