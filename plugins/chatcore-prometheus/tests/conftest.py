"""Fixtures of the chatcore-prometheus tests: an OpenAI stand-in server over real HTTP, a
client that finds the ``openai`` and ``prometheus`` plugins through their entry points (in an
empty environment, retries that never sleep), a fresh registry per test, and a scrape helper
that reads ``/metrics`` over HTTP and parses it with ``prometheus_client``'s parser."""

from __future__ import annotations

import importlib.metadata
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

import chatcore
from chatcore._plugins import PluginHost
from chatcore.testing.server import StandInServer

OPENAI_KEY = "sk-test-promSECRET0123456789abcdefXYZ"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def plugin_host() -> PluginHost:
    """A host loading only the ``openai`` and ``prometheus`` plugins, through their real
    entry points."""
    wanted = {"openai", "prometheus"}
    eps = [ep for ep in importlib.metadata.entry_points(group="chatcore") if ep.name in wanted]
    assert {ep.name for ep in eps} == wanted, (
        "install the plugins: pip install -e plugins/chatcore-openai -e plugins/chatcore-prometheus"
    )
    return PluginHost(entry_points=eps, environ={})


def parse(text: str) -> Samples:
    """Every sample of an exposition: ``(name, frozenset(labels)) -> value``."""
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = (sample.name, frozenset(sample.labels.items()))
            assert key not in out, f"duplicate series {key}"
            out[key] = sample.value
    return out


@pytest.fixture(scope="session")
def openai_key() -> str:
    return OPENAI_KEY


@pytest.fixture(scope="session")
def host() -> PluginHost:
    return plugin_host()


@pytest.fixture
def server() -> Iterator[StandInServer]:
    with StandInServer(flavor="openai", api_key=OPENAI_KEY) as srv:
        yield srv


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def make_client(
    host: PluginHost, server: StandInServer
) -> Iterator[Callable[..., chatcore.Client]]:
    """``make_client(**client_kwargs)``: the ``openai`` provider points at the stand-in."""
    clients: list[chatcore.Client] = []

    def make(**kwargs: Any) -> chatcore.Client:
        kwargs.setdefault("retry", chatcore.RetryPolicy(sleep=lambda _s: None))
        client = chatcore.Client(
            providers={"openai": {"api_key": OPENAI_KEY, "base_url": server.base_url}},
            environ={},
            plugin_host=host,
            **kwargs,
        )
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture(scope="session")
def parse_text() -> Callable[[str], Samples]:
    return parse


@pytest.fixture(scope="session")
def scrape() -> Callable[[str], tuple[str, str, Samples]]:
    """``scrape(url)`` -> ``(content_type, text, samples)``, over real HTTP."""

    def get(url: str) -> tuple[str, str, Samples]:
        with urllib.request.urlopen(url, timeout=10) as response:
            assert response.status == 200
            text = response.read().decode("utf-8")
            return response.headers["Content-Type"], text, parse(text)

    return get
