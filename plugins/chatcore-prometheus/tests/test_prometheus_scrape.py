"""Real requests through a client (ok, retried, failed, cached, streamed) against the
stand-in server, then a scrape of ``/metrics`` over HTTP, checked number by number."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

import chatcore
from chatcore._health import HealthChecker, HealthServer
from chatcore.testing.server import Reply, StandInServer
from chatcore_prometheus import PrometheusSink, metrics_text, serve_metrics

MODEL = "openai:gpt-4o-mini"
PM = {("provider", "openai"), ("model", "gpt-4o-mini")}


def key(name: str, **labels: str) -> tuple[str, frozenset[tuple[str, str]]]:
    return name, frozenset(PM | set(labels.items()))


def run_traffic(client: chatcore.Client, server: StandInServer) -> dict[str, int]:
    """One of each: ok, 503-then-ok, 401 (not retried), stream, cache miss, cache hit.
    Returns the token totals the provider reported."""
    usages = []
    usages.append(client.chat(MODEL, "Hello there").usage)

    server.enqueue(Reply.error(503, "busy"))
    retried = client.chat(MODEL, "Again please")
    assert retried.attempts == 2
    usages.append(retried.usage)

    server.enqueue(Reply.error(401, "Incorrect API key provided", code="invalid_api_key"))
    with pytest.raises(chatcore.AuthenticationError):
        client.chat(MODEL, "Denied")

    with client.stream(MODEL, "Stream this for me") as stream:
        assert "".join(chunk.text for chunk in stream)
    assert stream.response is not None
    usages.append(stream.response.usage)

    miss = client.chat(MODEL, "Cache me", cache=True)
    hit = client.chat(MODEL, "Cache me", cache=True)
    assert not miss.cached and hit.cached
    usages.append(miss.usage)

    assert all(u is not None for u in usages)
    return {
        "prompt": sum(u.prompt_tokens for u in usages if u is not None),
        "completion": sum(u.completion_tokens for u in usages if u is not None),
    }


def check_numbers(samples: dict[Any, float], tokens: dict[str, int]) -> None:
    expected = {
        key("chatcore_requests_total", outcome="ok"): 5,
        key("chatcore_requests_total", outcome="error"): 1,
        key("chatcore_errors_total", error_type="AuthenticationError"): 1,
        key("chatcore_retries_total"): 1,
        key("chatcore_attempts_total", outcome="ok"): 4,
        key("chatcore_attempts_total", outcome="error"): 2,
        key("chatcore_cache_hits_total"): 1,
        key("chatcore_cache_misses_total"): 5,
        key("chatcore_tokens_total", kind="prompt"): tokens["prompt"],
        key("chatcore_tokens_total", kind="completion"): tokens["completion"],
        key("chatcore_request_latency_seconds_count"): 5,
        key("chatcore_request_latency_seconds_bucket", le="+Inf"): 5,
        key("chatcore_time_to_first_token_seconds_count"): 1,
        key("chatcore_time_to_first_token_seconds_bucket", le="+Inf"): 1,
    }
    for k, value in expected.items():
        assert samples.get(k) == value, (k, samples.get(k), value)
    assert 0 < samples[key("chatcore_request_latency_seconds_sum")] < 30
    assert 0 < samples[key("chatcore_time_to_first_token_seconds_sum")] < 30
    # histogram buckets are cumulative and end at the count
    buckets = sorted(
        (float(dict(labels)["le"]), value)
        for (name, labels), value in samples.items()
        if name == "chatcore_request_latency_seconds_bucket"
    )
    assert [b[1] for b in buckets] == sorted(b[1] for b in buckets)
    # only chatcore class names as error types, only the one model
    error_types = {dict(lb)["error_type"] for (n, lb) in samples if n == "chatcore_errors_total"}
    assert error_types == {"AuthenticationError"}
    models = {dict(lb).get("model") for (n, lb) in samples if n.startswith("chatcore_")}
    assert models == {"gpt-4o-mini"}


def test_real_traffic_scraped_from_own_port(
    make_client: Callable[..., chatcore.Client],
    server: StandInServer,
    registry: CollectorRegistry,
    openai_key: str,
    scrape: Callable[[str], tuple[str, str, dict[Any, float]]],
) -> None:
    sink = PrometheusSink(registry=registry)
    client = make_client(metrics_sinks=[sink])
    assert sink in client.metrics_sinks
    tokens = run_traffic(client, server)
    assert tokens["prompt"] > 0 and tokens["completion"] > 0
    assert sink.dropped_events == 0

    with serve_metrics(0, registry=registry) as metrics_server:
        assert metrics_server.port > 0
        assert metrics_server.url == f"http://127.0.0.1:{metrics_server.port}/metrics"
        content_type, text, samples = scrape(metrics_server.url)
    assert not metrics_server.running
    assert content_type.startswith("text/plain; version=0.0.4")
    check_numbers(samples, tokens)
    # the key reached the server on every request, and never reaches the metrics
    assert server.requests and all(
        r.header("authorization") == f"Bearer {openai_key}" for r in server.requests
    )
    assert openai_key not in text
    assert openai_key[3:20] not in text
    # the in-memory aggregator saw the same traffic
    totals = client.metrics.snapshot()["totals"]
    assert (totals["ok"], totals["errors"], totals["retries"]) == (5, 1, 1)


def test_metrics_text_in_the_core_health_server(
    make_client: Callable[..., chatcore.Client],
    server: StandInServer,
    registry: CollectorRegistry,
    openai_key: str,
    scrape: Callable[[str], tuple[str, str, dict[Any, float]]],
) -> None:
    """The health server serves any ``Callable[[], str]``: the plugin's text plugs in."""
    sink = PrometheusSink(registry=registry)
    client = make_client(metrics_sinks=[sink])
    tokens = run_traffic(client, server)
    assert sink.prometheus_text() == metrics_text(registry)
    health = HealthServer(HealthChecker(client), port=0, metrics=sink.prometheus_text)
    with health:
        content_type, text, samples = scrape(health.url + "/metrics")
    assert content_type.startswith("text/plain; version=0.0.4")
    check_numbers(samples, tokens)
    assert openai_key not in text


def test_secret_looking_model_name_is_redacted(
    make_client: Callable[..., chatcore.Client],
    server: StandInServer,
    registry: CollectorRegistry,
    openai_key: str,
) -> None:
    client = make_client(metrics_sinks=[PrometheusSink(registry=registry)])
    server.enqueue(Reply.error(404, "The model does not exist", code="model_not_found"))
    with pytest.raises(chatcore.NotFoundError) as info:
        client.chat(f"openai:{openai_key}", "hi")
    text = metrics_text(registry)
    assert openai_key not in text
    assert 'model="sk-***"' in text
    assert f'error_type="{type(info.value).__name__}"' in text
