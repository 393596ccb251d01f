"""Fixtures of the chatcore-redis tests: a real ``redis-server`` on 127.0.0.1 (a free port,
no persistence), unique key prefixes, and clients with the in-test ``wire`` provider
pointed at chatcore's stand-in server.

``redis-server`` is looked up on PATH. When it is missing and the tests run as root with
``CI`` or ``CHATCORE_INSTALL_REDIS=1`` set, ``apt-get install -y redis-server`` is tried;
otherwise every test that needs Redis is skipped, saying why.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import chatcore
from chatcore._plugins import PluginHost
from chatcore.testing.server import StandInServer

sys.path.insert(0, str(Path(__file__).parent))

from chatcore_redis_testing import (
    TEST_KEY,
    RedisServer,
    WirePlugin,
)


def _find_redis_server() -> str | None:
    """``redis-server`` on PATH; installed with apt-get first when allowed (root, and
    ``CI`` or ``CHATCORE_INSTALL_REDIS=1``)."""
    found = shutil.which("redis-server")
    if found:
        return found
    allowed = os.environ.get("CI") or os.environ.get("CHATCORE_INSTALL_REDIS") == "1"
    if not (allowed and hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get")):
        return None
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-qq", "redis-server"]
    if subprocess.run(install, capture_output=True, env=env, timeout=600).returncode != 0:
        subprocess.run(["apt-get", "update", "-qq"], capture_output=True, env=env, timeout=600)
        subprocess.run(install, capture_output=True, env=env, timeout=600)
    return shutil.which("redis-server")


@pytest.fixture(scope="session")
def redis_binary() -> str:
    found = _find_redis_server()
    if found is None:
        pytest.skip(
            "redis-server is not on PATH (install it: apt-get install -y redis-server; the"
            " tests install it themselves when run as root with CI or"
            " CHATCORE_INSTALL_REDIS=1 set)"
        )
    return found


@pytest.fixture(scope="session")
def redis_server(redis_binary: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One redis-server for the session (tests keep apart by key prefix)."""
    server = RedisServer(redis_binary, workdir=tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def own_redis(redis_binary: str, tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """Start a private redis-server (to kill and restart, or with a password)."""
    servers: list[RedisServer] = []

    def start(**kwargs: Any) -> RedisServer:
        server = RedisServer(redis_binary, workdir=tmp_path, **kwargs)
        server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def redis_url(redis_server: Any) -> str:
    return str(redis_server.url)


@pytest.fixture
def prefix() -> str:
    """A key prefix of this test alone."""
    return f"t-{uuid.uuid4().hex[:12]}:"


@pytest.fixture
def redis_client(redis_server: Any) -> Iterator[Any]:
    import redis

    client = redis.Redis.from_url(redis_server.url)
    yield client
    client.close()


@pytest.fixture
def api_key() -> str:
    return TEST_KEY


@pytest.fixture
def standin() -> Iterator[StandInServer]:
    with StandInServer(flavor="openai", api_key=TEST_KEY) as srv:
        yield srv


def _no_sleep(_seconds: float) -> None:
    return None


@pytest.fixture
def make_client(standin: StandInServer) -> Iterator[Callable[..., chatcore.Client]]:
    """A client with the in-test ``wire`` provider pointed at the stand-in server, no
    entry-point plugins (unless ``plugins`` is given), an empty environment and retries
    that never sleep."""
    clients: list[chatcore.Client] = []

    def make(**kwargs: Any) -> chatcore.Client:
        plugins = [WirePlugin(), *kwargs.pop("plugins", ())]
        host = PluginHost(load_entry_points=False, plugins=plugins, environ={})
        kwargs.setdefault("retry", chatcore.RetryPolicy(sleep=_no_sleep))
        client = chatcore.Client(
            plugin_host=host,
            providers={"wire": {"api_key": TEST_KEY, "base_url": standin.base_url}},
            environ=kwargs.pop("environ", {}),
            **kwargs,
        )
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()
