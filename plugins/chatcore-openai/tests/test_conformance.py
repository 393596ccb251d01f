"""The ``openai`` and ``azure`` providers pass chatcore's provider conformance suite, over
real HTTP against stand-in servers of their wire flavors, resolved through the plugin's
``chatcore`` entry point."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from chatcore.testing.conformance import ProviderConformance
from chatcore.testing.server import StandInServer


class TestOpenAIConformance(ProviderConformance):
    provider_name = "openai"
    model = "gpt-4o-mini"
    server_flavor = "openai"
    api_key = "sk-test-conformance-openai-0123456789"
    entry_point_name = "openai"

    def provider_options(self, server: StandInServer) -> dict[str, Any]:
        return {"api_key": self.api_key, "base_url": server.base_url}


class TestAzureConformance(ProviderConformance):
    provider_name = "azure"
    model = "gpt-4o-mini"  # the deployment
    server_flavor = "azure"
    # not shaped like any known credential: only the provider's own redaction can hide it
    api_key = "azureConformanceKEY0123456789abcdef"
    entry_point_name = "openai"
    # the stand-in serves the model list of the GA v1 API only (/openai/v1/models)
    capability_options: ClassVar[Mapping[str, Mapping[str, Any]]] = {
        "models": {"api_version": "v1"}
    }

    def provider_options(self, server: StandInServer) -> dict[str, Any]:
        return {"api_key": self.api_key, "endpoint": server.url, "api_version": "2024-10-21"}
