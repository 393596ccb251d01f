"""The pipeline's operational features wired into the Client, over real HTTP: cache,
settings, validation limits, redaction everywhere, health wiring."""

from __future__ import annotations

import io
import json
import math
import string
import urllib.request

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import chatcore
from chatcore.exceptions import ConfigurationError, ValidationError
from chatcore.testing.server import Reply, StandInServer

from .conftest import TEST_KEY, WirePlugin, no_sleep

# --- cache ---------------------------------------------------------------------------


def test_cache_hit_skips_the_provider(make_client, server):
    client = make_client(cache=True)
    first = client.chat("wire:m", "cache me", temperature=0.1)
    second = client.chat("wire:m", "cache me", temperature=0.1)
    assert not first.cached
    assert second.cached
    assert second.attempts == 0
    assert second.text == first.text
    assert second.to_dict() == first.to_dict()
    assert len(server.requests) == 1
    stats = client.cache.stats()
    assert (stats.hits, stats.misses, stats.size) == (1, 1, 1)
    snapshot = client.metrics.snapshot()
    assert snapshot["totals"]["cache"]["hits"] == 1


def test_cache_key_covers_parameters_and_per_call_switches(make_client, server):
    client = make_client(cache=True)
    client.chat("wire:m", "q", temperature=0.1)
    client.chat("wire:m", "q", temperature=0.2)
    client.chat("wire:m", "q", temperature=0.1, cache=False)
    assert len(server.requests) == 3
    plain = make_client()
    assert plain.cache is None
    plain.chat("wire:m", "q", cache=True)
    assert plain.chat("wire:m", "q", cache=True).cached
    assert plain.cache is not None
    with pytest.raises(ValidationError):
        plain.chat("wire:m", "q", cache="yes")
    with pytest.raises(ValidationError):
        plain.chat("wire:m", "q", cache_ttl=-1)


def test_errors_are_never_cached(make_client, server):
    client = make_client(cache=True, max_retries=0)
    server.enqueue(Reply.error(500, "down"))
    with pytest.raises(chatcore.ServerError):
        client.chat("wire:m", "q")
    assert client.chat("wire:m", "q").cached is False
    assert len(server.requests) == 2


def test_a_broken_cache_backend_never_fails_a_request(make_client, server):
    class Broken:
        def get(self, key):
            raise RuntimeError("cache down")

        def set(self, key, response, ttl=None):
            raise RuntimeError("cache down")

        def stats(self):
            return None

        def clear(self):
            return None

    client = make_client(cache=Broken())
    assert client.chat("wire:m", "q").text
    assert client.chat("wire:m", "q").cached is False


def test_cache_hook_replaces_the_backend(server):
    from chatcore._plugins import PluginHost

    made = []

    class Backend(chatcore.InMemoryCache):
        pass

    class Plugin:
        @chatcore.hookimpl
        def chatcore_cache(self, settings):
            made.append(settings.cache_ttl)
            return Backend(maxsize=4, ttl=settings.cache_ttl)

    host = PluginHost(load_entry_points=False, plugins=[WirePlugin(), Plugin()], environ={})
    client = chatcore.Client(
        plugin_host=host,
        providers={"wire": {"api_key": TEST_KEY, "base_url": server.base_url}},
        environ={},
        cache=True,
        cache_ttl=30,
    )
    assert isinstance(client.cache, Backend)
    assert made == [30]


# --- settings --------------------------------------------------------------------------


def _host():
    from chatcore._plugins import PluginHost

    return PluginHost(load_entry_points=False, plugins=[WirePlugin()], environ={})


def test_settings_file_environment_and_arguments_layer(tmp_path, server):
    config = tmp_path / "chatcore.toml"
    config.write_text(
        "max_retries = 5\n"
        "cache = true\n"
        f'[providers.wire]\nbase_url = "{server.base_url}"\napi_key = "{TEST_KEY}"\n'
    )
    client = chatcore.Client(plugin_host=_host(), environ={}, config_path=config)
    assert client.retry_policy.max_retries == 5
    assert client.cache is not None
    assert "hi" in client.chat("wire:m", "hi").text
    env_client = chatcore.Client(
        plugin_host=_host(), environ={"CHATCORE_MAX_RETRIES": "1"}, config_path=config
    )
    assert env_client.retry_policy.max_retries == 1
    arg_client = chatcore.Client(
        plugin_host=_host(),
        environ={"CHATCORE_MAX_RETRIES": "1"},
        config_path=config,
        max_retries=0,
    )
    assert arg_client.retry_policy.max_retries == 0


def test_profiles_apply_to_the_retry_policy():
    client = chatcore.Client(plugin_host=_host(), environ={"CHATCORE_ENV": "prod"})
    assert client.settings.env == "prod"
    assert client.retry_policy.timeout_total == client.settings.timeout_total


def test_bad_settings_are_reported_together():
    with pytest.raises(ConfigurationError) as info:
        chatcore.Client(plugin_host=_host(), environ={"CHATCORE_MAX_RETRIES": "lots"}, cache_ttl=-3)
    assert "max_retries" in str(info.value)
    assert "cache_ttl" in str(info.value)


# --- validation limits and fuzzing -------------------------------------------------------


def test_message_count_and_request_size_limits(make_client, server):
    client = make_client(max_messages=3, max_request_bytes=2000)
    with pytest.raises(ValidationError, match="max_messages"):
        client.chat("wire:m", [{"role": "user", "content": "x"}] * 4)
    with pytest.raises(ValidationError, match="max_request_bytes"):
        client.chat("wire:m", "y" * 1000 + "\x01" * 300)
    assert server.requests == []


json_like = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
param_names = st.sampled_from(
    [
        "temperature",
        "top_p",
        "n",
        "stop",
        "max_tokens",
        "seed",
        "tools",
        "tool_choice",
        "response_format",
        "logprobs",
        "top_logprobs",
        "user",
        "logit_bias",
        "presence_penalty",
        "frequency_penalty",
        "parallel_tool_calls",
        "extra",
        "bogus",
    ]
)


@given(messages=json_like, params=st.dictionaries(param_names, json_like, max_size=4))
@example(messages="hi", params={"extra": {"x": math.nan}})
@example(messages={0: None}, params={})
@example(messages="hi", params={"user": "\ud800"})
@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_garbage_input_raises_only_validation_error_and_sends_nothing(
    make_client, server, messages, params
):
    client = make_client()
    before = len(server.requests)
    error: Exception | None = None
    try:
        client.chat("wire:m", messages, **params)
    except (ValidationError, chatcore.APIStatusError) as exc:
        error = exc
    if isinstance(error, ValidationError):
        assert error.problems
        assert len(server.requests) == before
        return
    if error is not None:  # valid input the stand-in server (which checks like the API) refused
        assert getattr(error, "status_code", None) == 400, error
    assert len(server.requests) == before + 1
    json.loads(server.requests[-1].body, parse_constant=_refuse_constant)


def _refuse_constant(name: str) -> None:
    raise AssertionError(f"{name} was sent in a request body")


# --- redaction everywhere -----------------------------------------------------------------

secrets_st = st.text(alphabet=string.ascii_letters + string.digits, min_size=12, max_size=40).map(
    lambda s: "sk-" + s
)


@given(secret=secrets_st, status=st.sampled_from([200, 400, 401, 429, 500]))
@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_a_secret_never_appears_in_logs_errors_metrics_cache_or_config(
    tmp_path_factory, secret, status
):
    from loguru import logger

    from chatcore._settings import load_settings, render_config

    records = io.StringIO()
    handler = chatcore.configure_logging("DEBUG", sink=records)
    seen: list[str] = []
    try:
        with StandInServer() as srv:
            host = _host()
            client = chatcore.Client(
                plugin_host=host,
                providers={"wire": {"api_key": secret, "base_url": srv.base_url}},
                environ={},
                cache=True,
                retry=chatcore.RetryPolicy(max_retries=1, sleep=no_sleep),
            )
            if status != 200:
                srv.enqueue(
                    *[Reply.error(status, f"bad key {secret} Bearer {secret}", code=secret)] * 2
                )
            try:
                response = client.chat("wire:m", "hello")
                seen.append(repr(response))
                seen.append(json.dumps(response.to_dict()))
            except chatcore.ChatcoreError as exc:
                seen += [str(exc), repr(exc), repr(getattr(exc, "body", None)), repr(vars(exc))]
            seen.append(json.dumps(client.metrics.snapshot()))
            seen.append(client.metrics.prometheus_text())
            seen.append(repr(client.provider("wire").config))
            seen.append(repr(client.cache.stats()))
            for key in list(getattr(client.cache, "_store", {}) or {}):
                seen.append(repr(client.cache.get(key)))
            client.close()
        path = tmp_path_factory.mktemp("cfg") / "chatcore.toml"
        path.write_text(f'[providers.wire]\napi_key = "{secret}"\n')
        loaded = load_settings(config_path=path, environ={"OPENAI_API_KEY": secret}, dotenv=False)
        seen.append(render_config(loaded))
        seen.append(render_config(loaded, json=True))
    finally:
        logger.remove(handler)
        chatcore.configure_logging(None)
    seen.append(records.getvalue())
    for text in seen:
        assert secret not in text


# --- health wiring --------------------------------------------------------------------


def test_client_health_and_endpoints(make_client, server):
    client = make_client()
    client.chat("wire:m", "hi")
    report = client.health()
    assert report.ready
    assert report.provider("wire").status == "ok"
    srv = client.serve_health(port=0)
    try:
        with urllib.request.urlopen(srv.url + "/readyz", timeout=5) as resp:
            assert resp.status == 200
        with urllib.request.urlopen(srv.url + "/metrics", timeout=5) as resp:
            body = resp.read().decode()
        assert 'chatcore_requests_total{provider="wire"' in body
    finally:
        srv.stop()
    client.close()


def test_the_fast_response_update_equals_attrs_evolve():
    import attrs

    from chatcore._pipeline import _updated

    response = chatcore.ChatResponse.from_dict(
        {
            "id": "c1",
            "object": "chat.completion",
            "created": 1,
            "model": "m",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "hi"},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3},
        },
        provider="p",
        request_id="req_1",
        headers={"x-request-id": "req_1"},
    )
    changes = {"provider": "wire", "latency": 0.25, "attempts": 2, "cached": True}
    fast, slow = _updated(response, **changes), attrs.evolve(response, **changes)
    assert fast == slow
    assert fast.to_dict() == slow.to_dict()
    assert repr(fast) == repr(slow)
    assert (fast.headers, fast.request_id) == (slow.headers, slow.request_id)
    assert response.latency != 0.25  # the original is untouched
