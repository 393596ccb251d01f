"""The plugin's hooks and configuration: enabled by settings, never by being installed."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from chatcore_redis_testing import TEST_KEY, WirePlugin

import chatcore
import chatcore_redis
from chatcore._plugins import PluginHost
from chatcore.exceptions import ConfigurationError
from chatcore_redis import (
    ENV_VARIABLES,
    RedisCache,
    RedisRateLimiter,
    RedisSettings,
    mask_url,
)
from chatcore_redis._env import environ_of

PASSWORD = "pl4in-Secret-value"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No CHATCORE_* variable from outside, and a working directory without files."""
    import os

    for name in list(os.environ):
        if name.startswith("CHATCORE_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def redis_host() -> PluginHost:
    """The wire provider plus this plugin, through its real entry point."""
    eps = [ep for ep in importlib.metadata.entry_points(group="chatcore") if ep.name == "redis"]
    assert eps, "chatcore-redis is not installed (pip install -e plugins/chatcore-redis)"
    host = PluginHost(entry_points=eps, plugins=[WirePlugin()], environ={})
    record = next(r for r in host.records() if r.name == "redis")
    assert record.ok and record.distribution == "chatcore-redis"
    assert record.hooks == ("chatcore_budget_store", "chatcore_cache", "chatcore_rate_limiter")
    return host


def make(**kwargs: Any) -> chatcore.Client:
    return chatcore.Client(
        plugin_host=redis_host(),
        providers={"wire": {"api_key": TEST_KEY, "base_url": "http://127.0.0.1:9/v1"}},
        **kwargs,
    )


def test_installed_but_not_configured_defers_to_the_core() -> None:
    client = make(rate_limits={"wire": {"rps": 5}}, cache=True, environ={})
    assert isinstance(client.rate_limiter, chatcore.InMemoryRateLimiter)
    assert isinstance(client.cache, chatcore.InMemoryCache)
    assert chatcore_redis.chatcore_rate_limiter(client.settings) is None
    assert chatcore_redis.chatcore_cache(client.settings) is None


def test_enabled_by_the_environment(
    monkeypatch: pytest.MonkeyPatch, redis_url: str, prefix: str
) -> None:
    monkeypatch.setenv("CHATCORE_REDIS_URL", redis_url)
    monkeypatch.setenv("CHATCORE_REDIS_LIMITER", "1")
    monkeypatch.setenv("CHATCORE_REDIS_CACHE", "true")
    monkeypatch.setenv("CHATCORE_REDIS_PREFIX", prefix)
    monkeypatch.setenv("CHATCORE_REDIS_FAILURE_POLICY", "fail-closed")
    monkeypatch.setenv("CHATCORE_REDIS_SOCKET_TIMEOUT", "0.5")
    monkeypatch.setenv("CHATCORE_REDIS_CACHE_MAX_BYTES", "4096")
    # the real environment (environ=None): CHATCORE_REDIS_* are not taken for typos
    client = make(rate_limits={"wire": {"rpm": 120, "tpm": 1000}}, cache_ttl=42)
    limiter = client.rate_limiter
    assert isinstance(limiter, RedisRateLimiter)
    assert limiter.limits == client.settings.rate_limits
    assert limiter.prefix == prefix and limiter.failure_policy == "fail_closed"
    limiter.acquire("wire", "m", 10, blocking=False)
    assert client.cache is None  # caching is off: the cache hook is not asked
    cache = client._call_cache(True)
    assert isinstance(cache, RedisCache)
    assert cache.ttl == 42 and cache.max_value_bytes == 4096
    assert cache.redis is limiter.redis  # one connection pool for both
    assert make(cache=True).cache.redis is limiter.redis  # type: ignore[union-attr]


def test_settings_environ_is_preferred(redis_url: str) -> None:
    loaded = SimpleNamespace(
        environ={"CHATCORE_REDIS_URL": redis_url, "CHATCORE_REDIS_LIMITER": "yes"},
        rate_limits={"p": chatcore.RateLimit(rps=3)},
    )
    assert environ_of(loaded) is loaded.environ
    limiter = chatcore_redis.chatcore_rate_limiter(loaded)
    assert isinstance(limiter, RedisRateLimiter)
    assert limiter.limits == {"p": chatcore.RateLimit(rps=3)}
    assert chatcore_redis.chatcore_cache(loaded) is None


def test_switch_without_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHATCORE_REDIS_LIMITER", "1")
    with pytest.raises(ConfigurationError, match="needs CHATCORE_REDIS_URL"):
        make(environ={})


@pytest.mark.parametrize(
    ("name", "value", "match"),
    [
        ("CHATCORE_REDIS_LIMITER", "perhaps", "CHATCORE_REDIS_LIMITER='perhaps'"),
        ("CHATCORE_REDIS_FAILURE_POLICY", "sometimes", "CHATCORE_REDIS_FAILURE_POLICY"),
        ("CHATCORE_REDIS_SOCKET_TIMEOUT", "abc", "CHATCORE_REDIS_SOCKET_TIMEOUT"),
        ("CHATCORE_REDIS_SOCKET_TIMEOUT", "-1", "CHATCORE_REDIS_SOCKET_TIMEOUT"),
        ("CHATCORE_REDIS_CONNECT_TIMEOUT", "inf", "CHATCORE_REDIS_CONNECT_TIMEOUT"),
        ("CHATCORE_REDIS_CACHE_MAX_BYTES", "0", "CHATCORE_REDIS_CACHE_MAX_BYTES"),
        ("CHATCORE_REDIS_CACHE_MAX_BYTES", "1k", "CHATCORE_REDIS_CACHE_MAX_BYTES"),
    ],
)
def test_bad_values_name_the_variable(name: str, value: str, match: str) -> None:
    environ = {
        "CHATCORE_REDIS_URL": "redis://127.0.0.1:6379/0",
        "CHATCORE_REDIS_LIMITER": "1",
        name: value,
    }
    with pytest.raises(ConfigurationError, match=match):
        RedisSettings.from_environ(environ)


def test_bad_urls_are_masked() -> None:
    for url in (f"http://:{PASSWORD}@example.com/", f"redis://:{PASSWORD}@host:notaport/0"):
        environ = {"CHATCORE_REDIS_URL": url, "CHATCORE_REDIS_CACHE": "1"}
        with pytest.raises(ConfigurationError) as info:
            RedisSettings.from_environ(environ)
        assert PASSWORD not in str(info.value)
        assert "***" in str(info.value)


def test_settings_defaults_and_repr() -> None:
    settings = RedisSettings.from_environ(
        {
            "CHATCORE_REDIS_URL": f"rediss://:{PASSWORD}@cache.internal:6380/2",
            "CHATCORE_REDIS_CACHE": "1",
            "CHATCORE_REDIS_PASSWORD": "other",
        }
    )
    assert settings.failure_policy == "fail_open"
    assert settings.prefix == "chatcore:"
    assert settings.socket_timeout == 0.25
    assert settings.cache_max_bytes == 1024 * 1024
    assert PASSWORD not in repr(settings) and "other" not in repr(settings)
    assert "url='rediss://:***@cache.internal:6380/2'" in repr(settings)
    assert settings.masked_url == "rediss://:***@cache.internal:6380/2"
    assert set(ENV_VARIABLES) >= {
        "CHATCORE_REDIS_URL",
        "CHATCORE_REDIS_PASSWORD",
        "CHATCORE_REDIS_LIMITER",
        "CHATCORE_REDIS_CACHE",
        "CHATCORE_REDIS_FAILURE_POLICY",
        "CHATCORE_REDIS_PREFIX",
        "CHATCORE_REDIS_SOCKET_TIMEOUT",
        "CHATCORE_REDIS_CACHE_MAX_BYTES",
    }


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        (f"redis://:{PASSWORD}@h:1/0", "redis://:***@h:1/0"),
        (f"redis://user:{PASSWORD}@h/0", "redis://user:***@h/0"),
        (f"rediss://u:{PASSWORD}@h:6380", "rediss://u:***@h:6380"),
        (f"unix:///tmp/r.sock?db=1&password={PASSWORD}", "unix:///tmp/r.sock?db=1&password=***"),
        (f"redis://:{PASSWORD}@[::1:6379/0", "redis://***"),
    ],
)
def test_mask_url(url: str, masked: str) -> None:
    assert mask_url(url) == masked
    assert PASSWORD not in mask_url(url)


def test_mask_url_masks_a_separate_password() -> None:
    assert mask_url(f"redis://h/0?x={PASSWORD}", PASSWORD) == "redis://h/0?x=***"


def test_version() -> None:
    assert chatcore_redis.__version__ == importlib.metadata.version("chatcore-redis")


def test_loading_the_plugin_does_not_import_redis() -> None:
    import subprocess
    import sys

    code = (
        "import sys; from chatcore._plugins import PluginHost; import chatcore_redis;"
        " host = PluginHost(); import chatcore;"
        " chatcore_redis.chatcore_rate_limiter(None); chatcore_redis.chatcore_cache(None);"
        " print('redis' in sys.modules)"
    )
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("CHATCORE_")}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
