"""chatcore's pytest plugin: fixtures for testing chatcore plugins and applications.

Activated by the ``pytest11`` entry point of the chatcore distribution (or, explicitly,
``pytest_plugins = ["chatcore.testing.plugin"]`` / ``pytest -p chatcore.testing.plugin``).
No fixture is autouse: nothing changes unless a test asks for it. The module imports only
pytest at import time; chatcore, ``requests`` and the stand-in server are imported when a
fixture is first used.

Fixtures:

``chatcore_plugin_host``
    a fresh plugin host with no entry-point plugins and an empty environment;
``register_plugin``
    ``register_plugin(plugin, name=None)`` registers a plugin into that host (unregistered
    at teardown);
``scripted_provider``
    a :class:`~chatcore.testing.helpers.ScriptedProvider` registered as provider
    ``"scripted"`` (capabilities chat and stream);
``standin_server`` / ``fault_server``
    two independent, started OpenAI-flavor :class:`~chatcore.testing.server.StandInServer`
    instances (script replies and faults with ``enqueue``);
``make_standin_server``
    ``make_standin_server(flavor="openai", api_key=None, model_list=None)``, for Azure or TGI
    flavors and servers that require a key;
``metrics_recorder``
    a metrics sink keeping every ``RequestEvent`` (attached to every client the factory
    builds);
``chatcore_retry_sleep``
    the never-sleeping ``sleep`` of the factory's retry policy (``.delays``);
``chatcore_client_factory``
    ``chatcore_client_factory(providers=None, **client_kwargs)``: a client on the fresh host,
    ``environ={}``, retries that never sleep; closed at teardown;
``chatcore_logs``
    chatcore's logging turned on (redacted records collected) for the test.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from chatcore._plugins import PluginHost
    from chatcore.testing.helpers import (
        ClientFactory,
        LogCapture,
        MetricsRecorder,
        RecordingSleep,
        ScriptedProvider,
    )
    from chatcore.testing.server import Flavor, StandInServer

__all__ = [
    "chatcore_client_factory",
    "chatcore_logs",
    "chatcore_plugin_host",
    "chatcore_retry_sleep",
    "fault_server",
    "make_standin_server",
    "metrics_recorder",
    "register_plugin",
    "scripted_provider",
    "standin_server",
]

# Plain-assert helpers get pytest's assertion messages (only if not imported yet: pytest
# warns about modules it can no longer rewrite).
for _module in ("chatcore.testing.conformance", "chatcore.testing.helpers"):
    if _module not in sys.modules:
        pytest.register_assert_rewrite(_module)

RegisterPlugin = Callable[..., str]
"""``register_plugin(plugin, name=None) -> name``."""

MakeStandInServer = Callable[..., "StandInServer"]
"""``make_standin_server(flavor="openai", api_key=None, model_list=None) -> StandInServer``."""


@pytest.fixture
def chatcore_plugin_host() -> PluginHost:
    """A fresh plugin host: no entry-point plugins, an empty environment."""
    from chatcore._plugins import PluginHost

    return PluginHost(load_entry_points=False, environ={})


@pytest.fixture
def register_plugin(chatcore_plugin_host: PluginHost) -> Iterator[RegisterPlugin]:
    """``register_plugin(plugin, name=None)``: register a plugin (a module or an object with
    ``@chatcore.hookimpl`` methods) into ``chatcore_plugin_host``; returns its name. A plugin
    the host rejects raises ``ValueError``. Every plugin is unregistered at teardown."""
    from chatcore.testing import helpers

    registered: list[tuple[object, str]] = []

    def register(plugin: object, name: str | None = None) -> str:
        registered_name = helpers.register_plugin(chatcore_plugin_host, plugin, name)
        registered.append((plugin, registered_name))
        return registered_name

    yield register
    for plugin, name in reversed(registered):
        helpers.unregister_plugin(chatcore_plugin_host, plugin, name)


@pytest.fixture
def scripted_provider(register_plugin: RegisterPlugin) -> ScriptedProvider:
    """A :class:`~chatcore.testing.helpers.ScriptedProvider` registered as ``"scripted"``
    (chat and stream): ``.queue(...)`` replies, read ``.calls`` / ``.requests``."""
    from chatcore.testing.helpers import ScriptedProvider

    provider = ScriptedProvider()
    register_plugin(provider, name="chatcore.testing.scripted")
    return provider


@pytest.fixture
def make_standin_server() -> Iterator[MakeStandInServer]:
    """``make_standin_server(flavor="openai", api_key=None, model_list=None)``: a started
    :class:`~chatcore.testing.server.StandInServer`; every one is stopped at teardown."""
    from chatcore.testing.server import StandInServer

    servers: list[StandInServer] = []

    def make(
        flavor: Flavor = "openai",
        api_key: str | None = None,
        model_list: Sequence[str] | None = None,
    ) -> StandInServer:
        server = StandInServer(flavor=flavor, api_key=api_key, model_list=model_list)
        servers.append(server)
        return server.start()

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def standin_server(make_standin_server: MakeStandInServer) -> StandInServer:
    """A started OpenAI-flavor stand-in server (no key required); ``.base_url`` is its
    ``/v1`` URL."""
    return make_standin_server("openai")


@pytest.fixture
def fault_server(make_standin_server: MakeStandInServer) -> StandInServer:
    """A second, independent OpenAI-flavor stand-in server for fault injection
    (``enqueue(Reply.reset())``, ``Reply.hang(...)``, ``Reply.error(503, ...)``), so a test
    can have a failing and a healthy server at once."""
    return make_standin_server("openai")


@pytest.fixture
def metrics_recorder() -> MetricsRecorder:
    """A metrics sink keeping every ``RequestEvent`` (``.events``, ``.requests``,
    ``.attempts``); clients from ``chatcore_client_factory`` report to it."""
    from chatcore.testing.helpers import MetricsRecorder

    return MetricsRecorder()


@pytest.fixture
def chatcore_retry_sleep() -> RecordingSleep:
    """The ``sleep`` of the factory's retry policy: returns at once, records ``.delays``."""
    from chatcore.testing.helpers import RecordingSleep

    return RecordingSleep()


@pytest.fixture
def chatcore_client_factory(
    chatcore_plugin_host: PluginHost,
    metrics_recorder: MetricsRecorder,
    chatcore_retry_sleep: RecordingSleep,
) -> Iterator[ClientFactory]:
    """``chatcore_client_factory(providers=None, **client_kwargs)``: a ``chatcore.Client``
    on ``chatcore_plugin_host`` with ``environ={}``, ``RetryPolicy(sleep=<never sleeps>)``
    and ``metrics_recorder`` as a sink. Every client is closed at teardown."""
    from chatcore.testing.helpers import ClientFactory

    factory = ClientFactory(
        chatcore_plugin_host, sleep=chatcore_retry_sleep, sinks=[metrics_recorder]
    )
    yield factory
    factory.close()


@pytest.fixture
def chatcore_logs() -> Iterator[LogCapture]:
    """chatcore's logging turned on at DEBUG for this test; ``.lines`` / ``.text`` hold the
    (redacted) output. Logging is turned off again afterwards."""
    from chatcore.testing.helpers import capture_logs

    with capture_logs("DEBUG") as capture:
        yield capture
