"""Shared fixtures of the core test suite: local stand-in servers and an in-test provider
plugin that speaks the OpenAI wire format (so the core is tested with no plugin installed)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import chatcore
from chatcore.models import ChatRequest, ChatResponse
from chatcore.provider import ModelInfo, Option, Provider, ProviderConfig, ProviderSpec, model_infos
from chatcore.testing.server import StandInServer

TEST_KEY = "sk-testSECRETkey0123456789abcdef"


class WireProvider(Provider):
    """A minimal OpenAI-wire provider used to test the core pipeline."""

    def __init__(self, config: ProviderConfig) -> None:
        super().__init__(config)
        key = config.require("api_key")
        self.transport = self.make_transport(
            base_url=config["base_url"], headers={"Authorization": f"Bearer {key}"}
        )

    def chat(self, request: ChatRequest) -> ChatResponse:
        assert self.transport is not None
        result = self.transport.request(
            "POST", "/chat/completions", json_body=request.to_openai_dict(), model=request.model
        )
        return ChatResponse.from_dict(
            result.data, provider=self.name, request_id=result.request_id, headers=result.headers
        )

    def list_models(self) -> list[ModelInfo]:
        assert self.transport is not None
        return model_infos(self.name, self.transport.request("GET", "/models").data["data"])


class WirePlugin:
    """Registered in-code: offers the ``wire`` provider."""

    @chatcore.hookimpl
    def chatcore_providers(self) -> list[ProviderSpec]:
        return [
            ProviderSpec(
                name="wire",
                factory=WireProvider,
                options={
                    "api_key": Option(secret=True, env=("WIRE_API_KEY",), required=False),
                    "base_url": Option(default="http://127.0.0.1:9/v1", env=("WIRE_BASE_URL",)),
                },
                capabilities={"chat", "models"},
            )
        ]


@pytest.fixture
def server() -> Iterator[StandInServer]:
    with StandInServer(flavor="openai", api_key=TEST_KEY) as srv:
        yield srv


def no_sleep(_seconds: float) -> None:
    return None


@pytest.fixture
def make_client(server: StandInServer) -> Any:
    """Build a client with the in-test ``wire`` provider pointed at the stand-in server,
    no entry-point plugins, an empty environment, and retries that never sleep."""
    from chatcore._plugins import PluginHost

    clients: list[chatcore.Client] = []

    def make(**kwargs: Any) -> chatcore.Client:
        host = PluginHost(load_entry_points=False, plugins=[WirePlugin()], environ={})
        providers = kwargs.pop("providers", None) or {
            "wire": {"api_key": TEST_KEY, "base_url": server.base_url}
        }
        kwargs.setdefault("retry", chatcore.RetryPolicy(sleep=no_sleep))
        client = chatcore.Client(
            plugin_host=host, providers=providers, environ=kwargs.pop("environ", {}), **kwargs
        )
        clients.append(client)
        return client

    yield make
    for c in clients:
        c.close()
