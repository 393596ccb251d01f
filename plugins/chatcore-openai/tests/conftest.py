"""Fixtures of the chatcore-openai tests: stand-in servers over real HTTP, and clients that
find the plugin through its ``chatcore`` entry point, in an empty environment, with no
retries (so nothing ever sleeps)."""

from __future__ import annotations

import importlib.metadata
import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import chatcore
from chatcore._plugins import PluginHost
from chatcore.testing.server import StandInServer

OPENAI_KEY = "sk-test-openaiSECRET0123456789abcdef"
AZURE_KEY = "azureSECRETkey0123456789abcdef"

MakeClient = Callable[..., chatcore.Client]


def plugin_host() -> PluginHost:
    """A host loading only this plugin, through its real entry point (another plugin being
    broken in the checkout must not fail these tests)."""
    eps = [ep for ep in importlib.metadata.entry_points(group="chatcore") if ep.name == "openai"]
    assert eps, "chatcore-openai is not installed (pip install -e plugins/chatcore-openai)"
    return PluginHost(entry_points=eps, environ={})


@pytest.fixture(scope="session")
def openai_key() -> str:
    """The key the OpenAI stand-in accepts (a test module cannot import conftest under
    ``--import-mode=importlib``, so constants travel as fixtures)."""
    return OPENAI_KEY


@pytest.fixture(scope="session")
def azure_key() -> str:
    """The key the Azure stand-in accepts."""
    return AZURE_KEY


@pytest.fixture(scope="session")
def host() -> PluginHost:
    return plugin_host()


@pytest.fixture
def server() -> Iterator[StandInServer]:
    with StandInServer(flavor="openai", api_key=OPENAI_KEY) as srv:
        yield srv


@pytest.fixture
def azure_server() -> Iterator[StandInServer]:
    with StandInServer(flavor="azure", api_key=AZURE_KEY) as srv:
        yield srv


@pytest.fixture
def make_client(host: PluginHost) -> Iterator[MakeClient]:
    """``make_client(providers=..., environ=..., **client_kwargs)``; closed at teardown."""
    clients: list[chatcore.Client] = []

    def make(
        providers: dict[str, dict[str, Any]] | None = None,
        environ: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> chatcore.Client:
        kwargs.setdefault("max_retries", 0)
        client = chatcore.Client(
            providers=providers,
            environ={} if environ is None else environ,
            plugin_host=host,
            **kwargs,
        )
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def client(make_client: MakeClient, server: StandInServer) -> chatcore.Client:
    """A client whose ``openai`` provider points at the OpenAI stand-in."""
    return make_client({"openai": {"api_key": OPENAI_KEY, "base_url": server.base_url}})


@pytest.fixture
def closed_port() -> int:
    """A local port nothing listens on."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = int(sock.getsockname()[1])
    sock.close()
    return port


def _walk(value: Any) -> Iterator[Any]:
    yield value
    if isinstance(value, dict):
        for v in value.values():
            yield from _walk(v)
    elif isinstance(value, list):
        for v in value:
            yield from _walk(v)


@pytest.fixture(scope="session")
def walk_values() -> Callable[[Any], Iterator[Any]]:
    """``walk_values(doc)`` yields every value nested in a JSON document."""
    return _walk
