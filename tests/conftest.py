"""Shared fixtures of the core test suite: local stand-in servers and an in-test provider
plugin that speaks the OpenAI wire format (so the core is tested with no plugin installed)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import chatcore
from chatcore.provider import Option, ProviderSpec
from chatcore.testing.helpers import OpenAIWireProvider
from chatcore.testing.server import StandInServer

TEST_KEY = "sk-testSECRETkey0123456789abcdef"


#: The OpenAI-wire test provider of ``chatcore.testing`` (its ``stream`` is only reachable
#: where a spec declares the "stream" capability; the ``wire`` spec below does not).
WireProvider = OpenAIWireProvider


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
