"""The ``huggingface`` provider passes chatcore's provider conformance suite against a
stand-in Hugging Face router (OpenAI-compatible) and a stand-in TGI server, resolved through
the plugin's ``chatcore`` entry point."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from chatcore.testing.conformance import ProviderConformance
from chatcore.testing.server import StandInServer


class TestRouterConformance(ProviderConformance):
    provider_name = "huggingface"
    model = "meta-llama/Llama-3.1-8B-Instruct"
    server_flavor = "openai"
    api_key = "hf_ConformanceRouterTOKEN0123"
    entry_point_name = "huggingface"
    skip_checks: ClassVar[Mapping[str, str]] = {
        "capability_text_generation": "the router has no native /generate route (see the TGI "
        "class, which exercises it)",
    }

    def provider_options(self, server: StandInServer) -> dict[str, Any]:
        return {"api_key": self.api_key, "base_url": server.base_url}


class TestTGIConformance(ProviderConformance):
    provider_name = "huggingface"
    model = "tgi"
    server_flavor = "tgi"
    api_key = "hf_ConformanceTGITOKEN0123456"
    entry_point_name = "huggingface"
    capability_options: ClassVar[Mapping[str, Mapping[str, Any]]] = {
        "text_generation": {"api": "generate"}
    }

    def provider_options(self, server: StandInServer) -> dict[str, Any]:
        return {"api_key": self.api_key, "base_url": server.url}
