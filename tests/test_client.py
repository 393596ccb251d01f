"""The Client pipeline over real HTTP with the in-test ``wire`` provider (no plugin needed)."""

from __future__ import annotations

import socket
import threading

import pytest

import chatcore
from chatcore.exceptions import (
    APIConnectionError,
    APITimeoutError,
    AuthenticationError,
    ConfigurationError,
    QuotaExceededError,
    RateLimitError,
    ResponseDecodeError,
    ServerError,
    ValidationError,
)
from chatcore.testing.server import Reply

from .conftest import TEST_KEY


def test_chat_round_trip(make_client, server):
    client = make_client()
    resp = client.chat("wire:gpt-4o-mini", "Hello there", temperature=0.2, max_tokens=20)
    assert "Hello there" in resp.text
    assert resp.provider == "wire"
    assert resp.model == "gpt-4o-mini"
    assert resp.attempts == 1
    assert resp.latency > 0
    assert resp.request_id and resp.request_id.startswith("req_")
    assert resp.usage is not None and resp.usage.total_tokens > 0
    sent = server.requests[-1]
    assert sent.path == "/v1/chat/completions"
    assert sent.json() == {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "Hello there"}],
        "temperature": 0.2,
        "max_tokens": 20,
    }
    assert sent.header("authorization") == f"Bearer {TEST_KEY}"
    assert sent.header("user-agent").startswith("chatcore/")


def test_messages_as_dicts_and_messages(make_client):
    client = make_client()
    resp = client.chat(
        "wire:m",
        [
            {"role": "system", "content": "be brief"},
            chatcore.Message(role="user", content="question?"),
        ],
    )
    assert "question?" in resp.text


def test_transport_pool_and_timeouts_are_configurable(make_client, server):
    client = make_client(
        providers={
            "wire": {
                "api_key": TEST_KEY,
                "base_url": server.base_url,
                "pool_maxsize": 64,
                "timeout": 30,
                "connect_timeout": 2,
            }
        }
    )
    transport = client.provider("wire").sync_transport()
    adapter = transport.session.get_adapter(server.base_url)
    assert adapter._pool_maxsize == 64
    assert transport.timeout == (2.0, 30.0)
    default = make_client().provider("wire").sync_transport()
    assert default.session.get_adapter(server.base_url)._pool_maxsize >= 32
    assert default.timeout == (5.0, 600.0)


def test_bad_input_is_rejected_before_sending(make_client, server):
    client = make_client()
    with pytest.raises(ValidationError) as info:
        client.chat(
            "wire:m", [{"role": "wizard", "content": 3}], temperature=5, top_p="x", temprature=1
        )
    text = str(info.value)
    assert "messages[0].content" in text
    assert "temperature" in text
    assert "top_p" in text
    assert "did you mean 'temperature'" in text
    assert server.requests == []


@pytest.mark.parametrize("model", ["gpt-4o", "wire:", ":m", "wire: m", 42])
def test_model_syntax(make_client, model):
    with pytest.raises(ValidationError):
        make_client().chat(model, "hi")


def test_missing_key_is_a_configuration_error_before_network(server):
    from chatcore._plugins import PluginHost

    from .conftest import WirePlugin

    host = PluginHost(load_entry_points=False, plugins=[WirePlugin()], environ={})
    client = chatcore.Client(
        plugin_host=host, providers={"wire": {"base_url": server.base_url}}, environ={}
    )
    with pytest.raises(ConfigurationError) as info:
        client.chat("wire:m", "hi")
    assert "WIRE_API_KEY" in str(info.value)
    assert "CHATCORE_WIRE_API_KEY" in str(info.value)
    assert server.requests == []


def test_configuration_from_environment(server):
    from chatcore._plugins import PluginHost

    from .conftest import WirePlugin

    host = PluginHost(load_entry_points=False, plugins=[WirePlugin()], environ={})
    env = {
        "WIRE_API_KEY": TEST_KEY,
        "WIRE_BASE_URL": "http://127.0.0.1:9/v1",
        "CHATCORE_WIRE_BASE_URL": server.base_url,
    }
    with chatcore.Client(plugin_host=host, environ=env) as client:
        assert "hi" in client.chat("wire:m", "hi").text
        config = client.provider("wire").config
        assert config.sources["base_url"] == "env CHATCORE_WIRE_BASE_URL"
        assert TEST_KEY not in repr(config)


def test_bad_provider_options_are_reported_together(make_client):
    client = make_client(
        providers={"wire": {"api_key": TEST_KEY, "timeout": "soon", "colour": "red"}}
    )
    with pytest.raises(ConfigurationError) as info:
        client.chat("wire:m", "hi")
    assert "colour" in str(info.value)
    assert "timeout" in str(info.value)
    assert TEST_KEY not in str(info.value)


def test_retries_transient_errors_then_succeeds(make_client, server):
    server.enqueue(
        Reply.error(503, "busy"), Reply.error(429, "slow", headers={"retry-after-ms": "10"})
    )
    slept = []
    client = make_client(retry=chatcore.RetryPolicy(sleep=slept.append))
    resp = client.chat("wire:m", "hi")
    assert resp.attempts == 3
    assert len(server.requests) == 3
    assert slept[1] == 0.01
    assert 0.375 <= slept[0] <= 0.5


def test_gives_up_after_max_retries_with_attempts_on_error(make_client, server):
    server.enqueue(*[Reply.error(500, "down")] * 5)
    client = make_client(max_retries=1)
    with pytest.raises(ServerError) as info:
        client.chat("wire:m", "hi")
    assert info.value.attempts == 2
    assert len(server.requests) == 2


def test_quota_is_never_retried(make_client, server):
    server.enqueue(
        Reply.error(
            429,
            "You exceeded your current quota",
            type="insufficient_quota",
            code="insufficient_quota",
        )
    )
    with pytest.raises(QuotaExceededError) as info:
        make_client().chat("wire:m", "hi")
    assert info.value.attempts == 1
    assert len(server.requests) == 1


def test_demanded_delay_over_limit_stops_retrying(make_client, server):
    server.enqueue(Reply.error(429, "later", headers={"retry-after": "3600"}))
    with pytest.raises(RateLimitError) as info:
        make_client().chat("wire:m", "hi")
    assert info.value.retry_after == 3600
    assert len(server.requests) == 1


def test_per_call_max_retries(make_client, server):
    server.enqueue(Reply.error(502, "bad gateway"), Reply.error(502, "bad gateway"))
    with pytest.raises(ServerError):
        make_client().chat("wire:m", "hi", max_retries=0)
    assert len(server.requests) == 1


def test_auth_error_key_never_leaks(server):
    from chatcore._plugins import PluginHost

    from .conftest import WirePlugin

    host = PluginHost(load_entry_points=False, plugins=[WirePlugin()], environ={})
    wrong = "sk-wrongWRONGwrong0123456789"
    server.enqueue(Reply.error(401, f"Incorrect API key provided: {wrong}", code="invalid_api_key"))
    client = chatcore.Client(
        plugin_host=host,
        providers={"wire": {"api_key": wrong, "base_url": server.base_url}},
        environ={},
    )
    with pytest.raises(AuthenticationError) as info:
        client.chat("wire:m", "hi")
    err = info.value
    for text in (str(err), repr(err), repr(err.body), repr(err.__dict__)):
        assert wrong not in text


def test_malformed_json_is_a_decode_error(make_client, server):
    server.enqueue(Reply.raw(b"{not json", content_type="application/json"))
    with pytest.raises(ResponseDecodeError):
        make_client(max_retries=0).chat("wire:m", "hi")


def test_wrong_shape_is_a_decode_error(make_client, server):
    server.enqueue(Reply.json({"id": "x", "object": "chat.completion"}))
    with pytest.raises(ResponseDecodeError, match="choices"):
        make_client(max_retries=0).chat("wire:m", "hi")


def test_connection_refused(make_client):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = make_client(
        providers={"wire": {"api_key": TEST_KEY, "base_url": f"http://127.0.0.1:{port}/v1"}},
        max_retries=0,
    )
    with pytest.raises(APIConnectionError) as info:
        client.chat("wire:m", "hi")
    assert not isinstance(info.value, APITimeoutError)


def test_connection_reset_is_retried(make_client, server):
    server.enqueue(Reply.reset())
    resp = make_client().chat("wire:m", "hi")
    assert resp.attempts == 2


def test_read_timeout(make_client, server):
    server.enqueue(Reply.hang(2.0))
    client = make_client(
        providers={"wire": {"api_key": TEST_KEY, "base_url": server.base_url, "timeout": 0.2}},
        max_retries=0,
    )
    with pytest.raises(APITimeoutError):
        client.chat("wire:m", "hi")


def test_truncated_body(make_client, server):
    server.enqueue(Reply.truncated(b'{"id": "x", "choices": [', 500))
    with pytest.raises((APIConnectionError, ResponseDecodeError)):
        make_client(max_retries=0).chat("wire:m", "hi")


def test_metrics_sink_sees_events_and_a_failing_sink_is_harmless(make_client, server):
    events = []

    class Good:
        def record(self, event):
            events.append(event)

    class Bad:
        def record(self, event):
            raise RuntimeError("sink down")

    client = make_client(metrics_sinks=[Bad(), Good()])
    client.chat("wire:m", "hi")
    server.enqueue(Reply.error(400, "nope"))
    with pytest.raises(chatcore.BadRequestError):
        client.chat("wire:m", "hi")
    requests_ = [e for e in events if e.kind == "request"]
    attempts = [e for e in events if e.kind == "attempt"]
    assert [e.outcome for e in requests_] == ["ok", "error"]
    assert requests_[1].error_type == "BadRequestError"
    assert requests_[0].prompt_tokens is not None
    assert [(e.attempt, e.outcome) for e in attempts] == [(1, "ok"), (1, "error")]
    snapshot = client.metrics.snapshot()
    assert snapshot["totals"]["requests"] == 2


def test_client_is_thread_safe(make_client, server):
    client = make_client()
    errors = []

    def work():
        try:
            for _ in range(10):
                assert client.chat("wire:m", "hi").text
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(server.requests) == 80


def test_list_models(make_client):
    models = make_client().list_models("wire")
    assert "gpt-4o-mini" in [m.id for m in models]


def test_hooks_override_defaults(server):
    from chatcore._plugins import PluginHost

    from .conftest import WirePlugin

    custom = chatcore.RetryPolicy(max_retries=7)

    class Policy:
        @chatcore.hookimpl
        def chatcore_retry_policy(self, settings):
            return custom

    host = PluginHost(load_entry_points=False, plugins=[WirePlugin(), Policy()], environ={})
    assert chatcore.Client(plugin_host=host, environ={}).retry_policy is custom


def test_configuring_an_uninstalled_provider_is_an_error(make_client):
    with pytest.raises(ConfigurationError, match=r"did you mean 'wire'"):
        make_client(providers={"wyre": {"api_key": TEST_KEY}})
    with pytest.raises(ConfigurationError, match="pip install chatcore-anthropic"):
        make_client(providers={"anthropic": {}})


@pytest.mark.parametrize(
    "bad",
    [{"max_retries": True}, {"max_retries": -1}, {"timeout_total": 0}, {"timeout_total": "1"}],
)
def test_bad_retry_settings(make_client, bad):
    with pytest.raises(ConfigurationError):
        make_client(**bad)
    with pytest.raises(ValidationError):
        make_client().chat("wire:m", "hi", **bad)
    with pytest.raises(ConfigurationError):
        chatcore.RetryPolicy(**bad)


def test_invalid_base_url_is_not_retried(make_client):
    client = make_client(providers={"wire": {"api_key": TEST_KEY, "base_url": "127.0.0.1:1/v1"}})
    with pytest.raises(APIConnectionError, match="base_url") as info:
        client.chat("wire:m", "hi")
    assert info.value.attempts == 1


def test_passing_an_installed_plugin_again_is_harmless(server):
    from chatcore._plugins import PluginHost

    from .conftest import WirePlugin

    plugin = WirePlugin()
    host = PluginHost(load_entry_points=False, plugins=[plugin, plugin], environ={})
    assert host.provider_spec("wire")


def test_provider_failures_of_any_kind_reach_metrics(make_client, server):
    events = []

    class Sink:
        def record(self, event):
            events.append(event)

    client = make_client(metrics_sinks=[Sink()])
    server.enqueue(Reply.raw(b"not json"))
    with pytest.raises(ResponseDecodeError):
        client.chat("wire:m", "hi")
    assert [e for e in events if e.kind == "request"][-1].error_type == "ResponseDecodeError"


def test_n_is_bounded(make_client):
    with pytest.raises(ValidationError, match="at most 128"):
        make_client().chat("wire:m", "hi", n=129)
