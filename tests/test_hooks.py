"""One test per hook in chatcore.hookspecs: a plugin's implementation replaces (or adds to)
the core's default, and the pipeline uses it over real HTTP."""

from __future__ import annotations

from typing import Any

import pytest

import chatcore
from chatcore._plugins import PluginHost
from chatcore.provider import ProviderSpec

from .conftest import TEST_KEY, WirePlugin, WireProvider, no_sleep


def client_with(server, *plugins: Any, **kwargs: Any) -> chatcore.Client:
    host = PluginHost(load_entry_points=False, plugins=[WirePlugin(), *plugins], environ={})
    kwargs.setdefault("providers", {"wire": {"api_key": TEST_KEY, "base_url": server.base_url}})
    return chatcore.Client(plugin_host=host, environ={}, **kwargs)


def test_chatcore_providers_adds_a_provider(server):
    class Second:
        @chatcore.hookimpl
        def chatcore_providers(self):
            return [ProviderSpec(name="second", factory=WireProvider, capabilities={"chat"})]

    client = client_with(
        server,
        Second(),
        providers={
            "wire": {"api_key": TEST_KEY, "base_url": server.base_url},
            "second": {"api_key": TEST_KEY, "base_url": server.base_url},
        },
    )
    assert client.available_providers() == ["second", "wire"]
    assert client.chat("second:m", "hi").provider == "second"


def test_chatcore_retry_policy_replaces_the_default(server):
    from chatcore.testing.server import Reply

    class FiveRetries:
        @chatcore.hookimpl
        def chatcore_retry_policy(self, settings):
            return chatcore.RetryPolicy(max_retries=5, sleep=no_sleep)

    client = client_with(server, FiveRetries())
    server.enqueue(*[Reply.error(503, "busy")] * 5)
    assert client.chat("wire:m", "hi").attempts == 6


def test_chatcore_rate_limiter_replaces_the_default(server):
    calls: list[tuple[str, ...]] = []

    class Recording:
        def acquire(self, provider, model, tokens, *, max_wait=None):
            calls.append(("acquire", provider, model))
            return "ticket"

        def reconcile(self, ticket, used_tokens):
            calls.append(("reconcile", ticket))

        def observe(self, provider, model, headers, error=None):
            calls.append(("observe", provider))

    class Plugin:
        @chatcore.hookimpl
        def chatcore_rate_limiter(self, settings):
            return Recording()

    client = client_with(server, Plugin())
    client.chat("wire:m", "hi")
    assert calls == [("acquire", "wire", "m"), ("reconcile", "ticket"), ("observe", "wire")]


def test_chatcore_cache_replaces_the_default_when_caching_is_on(server):
    stored: dict[str, Any] = {}

    class DictCache:
        def get(self, key):
            return stored.get(key)

        def set(self, key, response, ttl=None):
            stored[key] = response

        def stats(self):
            return len(stored)

        def clear(self):
            stored.clear()

    class Plugin:
        @chatcore.hookimpl
        def chatcore_cache(self, settings):
            return DictCache()

    assert client_with(server, Plugin()).cache is None  # not consulted unless caching is on
    client = client_with(server, Plugin(), cache=True)
    client.chat("wire:m", "hi")
    assert client.chat("wire:m", "hi").cached
    assert len(stored) == 1
    assert len(server.requests) == 1


def test_chatcore_metrics_sinks_are_all_called_and_isolated(server):
    seen: list[str] = []

    class Good:
        def record(self, event):
            seen.append(event.kind)

    class Broken:
        def record(self, event):
            raise RuntimeError("sink down")

    class Plugin:
        @chatcore.hookimpl
        def chatcore_metrics_sinks(self, settings):
            return [Broken(), Good()]

    client = client_with(server, Plugin())
    client.chat("wire:m", "hi")
    assert seen == ["attempt", "request"]


@pytest.mark.parametrize(
    "hook",
    ["chatcore_retry_policy", "chatcore_rate_limiter", "chatcore_cache", "chatcore_metrics_sinks"],
)
def test_core_defaults_are_registered_trylast(hook):
    host = PluginHost(load_entry_points=False, environ={})
    impls = getattr(host.pm.hook, hook).get_hookimpls()
    defaults = [i for i in impls if i.plugin_name == "chatcore.defaults"]
    assert defaults
    assert all(i.trylast for i in defaults)
