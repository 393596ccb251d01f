"""Chat over real sockets, through ``Client`` and ``AsyncClient`` (``[sync]`` / ``[async]``),
against the stand-in's Messages API flavor: what is sent (path, headers, body), what comes
back (text, usage with the cache parts, request id), configuration, model listing, the
health probe, and the limiter learning from the ``anthropic-ratelimit-*`` headers."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timezone
from typing import Any

import pytest

import chatcore
from chatcore._limits import InMemoryRateLimiter
from chatcore.exceptions import ConfigurationError, ValidationError
from chatcore.provider import resolve_config
from chatcore.testing.helpers import MetricsRecorder
from chatcore.testing.server import STANDIN_NOTICE, Reply, StandInServer
from chatcore_anthropic._provider import SPEC, AnthropicProvider


def test_a_chat_round_trip(either, server, anthropic_key):
    response = either.chat(
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"}],
        max_tokens=64,
    )
    assert response.text == f"{STANDIN_NOTICE} You said: Hello"
    assert (response.provider, response.model, response.finish_reason) == (
        "anthropic",
        "claude-haiku-4-5",
        "stop",
    )
    assert response.id.startswith("msg_")
    assert response.request_id is not None and response.request_id.startswith("req_")
    assert response.usage is not None and response.usage.completion_tokens > 0
    (sent,) = server.requests
    assert (sent.method, sent.path) == ("POST", "/v1/messages")
    assert sent.headers["x-api-key"] == anthropic_key
    assert sent.headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in sent.headers
    assert sent.headers["user-agent"].startswith("chatcore/")
    assert "chatcore-anthropic/" in sent.headers["user-agent"]
    assert sent.json() == {
        "model": "claude-haiku-4-5",
        "max_tokens": 64,
        "system": "Be brief.",
        "messages": [{"role": "user", "content": "Hello"}],
    }


def test_a_bearer_token_and_beta_headers(either, server, anthropic_key):
    options = {"api_key": None, "auth_token": anthropic_key, "beta": "beta-one"}
    either.chat("Hi", options=options, extra={"betas": ["beta-two"]})
    either.chat("Hi", options=options)
    first, second = server.requests
    assert first.headers["authorization"] == f"Bearer {anthropic_key}"
    assert "x-api-key" not in first.headers
    assert first.headers["anthropic-beta"] == "beta-one,beta-two"
    assert second.headers["anthropic-beta"] == "beta-one"
    assert "betas" not in first.json()


def test_the_configured_version_is_sent_and_a_wrong_key_is_refused(either, server):
    either.chat("Hi", options={"api_version": "2023-01-01"})
    assert server.last_request.headers["anthropic-version"] == "2023-01-01"
    with pytest.raises(chatcore.AuthenticationError) as info:
        either.chat("Hi", options={"api_key": "sk-ant-wrong-0123456789"})
    assert info.value.status_code == 401
    assert info.value.request_id is not None and info.value.request_id.startswith("req_")
    assert "invalid x-api-key" in str(info.value)


def test_what_the_api_would_refuse_is_never_sent(either, server):
    with pytest.raises(ValidationError) as info:
        either.chat("Hi", seed=3, temperature=1.5, extra={"thinking": {"type": "enabled"}})
    paths = {path for path, _ in info.value.problems}
    assert {"seed", "temperature", "extra.thinking.budget_tokens"} <= paths
    assert server.requests == []


def test_prompt_caching_is_reported_in_the_typed_usage(either, server):
    """The stand-in writes the prefix up to the last breakpoint, then reads it; the usage's
    prompt tokens count them all, and the typed parts say which were which."""
    rules = "Follow these long rules. " * 40
    system = [{"type": "text", "text": rules, "cache_control": {"type": "ephemeral"}}]
    first = either.chat("What now?", extra={"system": system})
    second = either.chat("What next?", extra={"system": system})
    assert first.usage is not None and second.usage is not None
    assert first.usage.cache_creation_tokens == second.usage.cached_tokens > 0
    assert first.usage.cached_tokens == 0 and second.usage.cache_creation_tokens == 0
    for usage in (first.usage, second.usage):
        parts = (usage.cached_tokens or 0) + (usage.cache_creation_tokens or 0)
        assert usage.prompt_tokens > parts  # the uncached rest is counted too
        assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert second.usage.prompt_tokens_details == {"cached_tokens": second.usage.cached_tokens}
    # automatic caching: a top-level breakpoint
    either.chat("Cache all of it", extra={"cache_control": {"type": "ephemeral", "ttl": "1h"}})
    assert server.last_request.json()["cache_control"] == {"type": "ephemeral", "ttl": "1h"}


def test_metrics_carry_the_typed_token_parts(make_client, server):
    recorder = MetricsRecorder()
    client = make_client(client_kwargs={"metrics_sinks": [recorder]})
    system = [{"type": "text", "text": "Rules. " * 50, "cache_control": {"type": "ephemeral"}}]
    client.chat("anthropic:claude-haiku-4-5", "One", extra={"system": system})
    client.chat("anthropic:claude-haiku-4-5", "Two", extra={"system": system})
    thinking = {"type": "enabled", "budget_tokens": 1024}
    client.chat("anthropic:claude-haiku-4-5", "Three", extra={"thinking": thinking})
    written, read, thought = recorder.requests
    assert written.cache_creation_tokens and not written.cached_tokens
    assert read.cached_tokens == written.cache_creation_tokens
    assert thought.reasoning_tokens and thought.reasoning_tokens > 0
    tokens = client.metrics.snapshot()["totals"]["tokens"]
    assert tokens["cached"] == read.cached_tokens
    assert tokens["cache_creation"] == written.cache_creation_tokens
    assert tokens["reasoning"] == thought.reasoning_tokens


def test_scripted_usage_and_request_id(either, server):
    server.enqueue(
        Reply.chat(
            "Counted.",
            usage={
                "input_tokens": 5,
                "output_tokens": 3,
                "cache_creation_input_tokens": 7,
                "cache_read_input_tokens": 11,
            },
            headers={"request-id": "req_fixed_1"},
        )
    )
    response = either.chat("Count")
    assert response.request_id == "req_fixed_1"
    assert response.usage is not None
    assert (response.usage.prompt_tokens, response.usage.total_tokens) == (23, 26)
    assert (response.usage.cached_tokens, response.usage.cache_creation_tokens) == (11, 7)


def test_models_are_listed_in_one_page(either, server):
    models = either.list_models()
    assert [m.id for m in models] == list(server.model_list)
    assert all(m.provider == "anthropic" and m.created for m in models)
    sent = server.last_request
    assert (sent.path, sent.query) == ("/v1/models", {"limit": ["1000"]})


def test_the_health_probe_lists_models(make_client, make_async_client, server):
    report = make_client().health()
    (probe,) = [p for p in report.providers if p.name == "anthropic"]
    assert probe.status == "ok" and report.ready

    async def main() -> Any:
        async with make_async_client() as client:
            return await client.health()

    (probe,) = [p for p in asyncio.run(main()).providers if p.name == "anthropic"]
    assert probe.status == "ok"
    assert [r.path for r in server.requests] == ["/v1/models", "/v1/models"]


def test_the_limiter_learns_from_anthropic_rate_limit_headers(make_client, server):
    """A nearly spent request budget (``anthropic-ratelimit-requests-remaining: 0``, reset
    in 30 s) makes the limiter hold the next call instead of sending it."""
    now = 1_700_000_000.0
    limiter = InMemoryRateLimiter(clock=lambda: now, sleep=lambda s: None, max_server_hold=120)
    client = make_client(client_kwargs={"rate_limiter": limiter})
    # 30 s after the answer's Date (the server's clock, the reference of the reset)
    reset = datetime.fromtimestamp(time.time() + 30, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    server.enqueue(
        Reply.chat(
            "Spent.",
            headers={
                "anthropic-ratelimit-requests-remaining": "0",
                "anthropic-ratelimit-requests-reset": reset,
            },
        )
    )
    client.chat("anthropic:claude-haiku-4-5", "Hi")
    with pytest.raises(chatcore.RateLimitExceeded) as info:
        client.chat("anthropic:claude-haiku-4-5", "Again", timeout_total=5)
    assert info.value.retry_after == pytest.approx(30, abs=2)
    assert len(server.requests) == 1


def test_missing_credentials_name_the_variables(host):
    with pytest.raises(ConfigurationError) as info:
        chatcore.Client(plugin_host=host, environ={}).chat("anthropic:claude-haiku-4-5", "Hi")
    assert "ANTHROPIC_API_KEY" in str(info.value)
    assert "ANTHROPIC_AUTH_TOKEN" in str(info.value)


def test_vendor_variables_configure_the_provider():
    config = resolve_config(
        SPEC,
        environ={
            "ANTHROPIC_API_KEY": "sk-ant-env-0123456789",
            "ANTHROPIC_BASE_URL": "https://proxy.example/anthropic/",
        },
    )
    provider = AnthropicProvider(config)
    assert provider.base_url == "https://proxy.example/anthropic"
    assert provider.target is not None
    assert provider.target.headers["x-api-key"] == "sk-ant-env-0123456789"
    assert "sk-ant-env" not in repr(provider) and "sk-ant-env" not in repr(config)


@pytest.mark.parametrize(
    ("options", "needle"),
    [
        ({"api_key": "sk-ant-x\n"}, "whitespace"),
        ({"base_url": "ftp://host"}, "http"),
        ({"api_version": "latest"}, "api_version"),
        ({"default_max_tokens": 0}, "default_max_tokens"),
    ],
)
def test_bad_options_are_configuration_errors(options, needle):
    with pytest.raises(ConfigurationError) as info:
        AnthropicProvider(resolve_config(SPEC, {"api_key": "sk-ant-0123456789", **options}, {}))
    assert needle in str(info.value)
    assert "sk-ant-x" not in str(info.value)


def test_the_stand_in_base_url_has_no_v1():
    with StandInServer(flavor="anthropic") as srv:
        assert srv.base_url == srv.url
