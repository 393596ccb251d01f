"""The sink on its own: label cardinality caps, error-type and name sanitizing, odd values,
failures that never escape, shared registries, thread safety, the endpoint's guards."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from chatcore import RequestEvent, ServerError
from chatcore_prometheus import ERROR_TYPES, OTHER, PrometheusSink, metrics_text, serve_metrics

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def event(provider: str = "p", model: str = "m", **kw: Any) -> RequestEvent:
    kw.setdefault("outcome", "ok")
    kw.setdefault("latency", 0.2)
    return RequestEvent(provider=provider, model=model, **kw)


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def series(samples: Samples, name: str, label: str) -> set[str]:
    return {dict(lb)[label] for (n, lb) in samples if n == name}


def test_model_cap_per_provider(
    registry: CollectorRegistry, parse_text: Callable[[str], Samples]
) -> None:
    sink = PrometheusSink(registry=registry, max_models=3)
    for i in range(10):
        for _ in range(i + 1):
            sink.record(event("openai", f"model-{i}"))
    sink.record(event("other", "model-9"))  # the cap is per provider
    samples = parse_text(metrics_text(registry))
    assert series(samples, "chatcore_requests_total", "model") == {
        "model-0",
        "model-1",
        "model-2",
        OTHER,
        "model-9",
    }
    ok = "chatcore_requests_total"
    assert value(samples, ok, provider="openai", model="model-2", outcome="ok") == 3
    assert value(samples, ok, provider="openai", model=OTHER, outcome="ok") == sum(range(4, 11))
    assert value(samples, ok, provider="other", model="model-9", outcome="ok") == 1
    assert sink.label_sets() == {
        "openai": [OTHER, "model-0", "model-1", "model-2"],
        "other": ["model-9"],
    }
    # an admitted model keeps its own series after the cap is reached
    sink.record(event("openai", "model-0"))
    samples = parse_text(metrics_text(registry))
    assert value(samples, ok, provider="openai", model="model-0", outcome="ok") == 2


def test_provider_cap(registry: CollectorRegistry, parse_text: Callable[[str], Samples]) -> None:
    sink = PrometheusSink(registry=registry, max_providers=2, max_models=5)
    for i in range(6):
        sink.record(event(f"prov-{i}", f"model-{i}"))
    samples = parse_text(metrics_text(registry))
    pairs = {
        (dict(lb)["provider"], dict(lb)["model"])
        for (n, lb) in samples
        if n == "chatcore_requests_total"
    }
    assert pairs == {("prov-0", "model-0"), ("prov-1", "model-1"), (OTHER, OTHER)}
    total = "chatcore_requests_total"
    assert value(samples, total, provider=OTHER, model=OTHER, outcome="ok") == 4


def test_series_count_stays_bounded(
    registry: CollectorRegistry, parse_text: Callable[[str], Samples]
) -> None:
    sink = PrometheusSink(registry=registry, max_providers=3, max_models=4)
    for i in range(2000):
        sink.record(event(f"prov-{i % 7}", f"model-{i}", outcome="error", error_type=f"E{i}"))
    samples = parse_text(metrics_text(registry))
    pairs = {
        (dict(lb)["provider"], dict(lb)["model"])
        for (n, lb) in samples
        if n == "chatcore_requests_total"
    }
    # per provider: max_models names and "__other__"; plus ("__other__", "__other__")
    assert len(pairs) == 3 * (4 + 1) + 1
    assert series(samples, "chatcore_errors_total", "error_type") == {OTHER}
    assert sum(v for (n, _), v in samples.items() if n == "chatcore_requests_total") == 2000


def test_error_types_are_chatcore_class_names(
    registry: CollectorRegistry, parse_text: Callable[[str], Samples]
) -> None:
    sink = PrometheusSink(registry=registry)
    for error_type in (
        "ServerError",
        "RateLimitError",
        "APITimeoutError",
        "KeyError",
        'Evil"\nname{}',
        "sk-abcdefghijklmnop",
        None,
        "",
    ):
        sink.record(event(outcome="error", error_type=error_type))
    samples = parse_text(metrics_text(registry))
    errors = "chatcore_errors_total"
    assert series(samples, errors, "error_type") == {
        "ServerError",
        "RateLimitError",
        "APITimeoutError",
        OTHER,
        "unknown",
    }
    assert value(samples, errors, provider="p", model="m", error_type=OTHER) == 3
    assert value(samples, errors, provider="p", model="m", error_type="unknown") == 2
    assert value(samples, "chatcore_requests_total", provider="p", model="m", outcome="error") == 8


def test_names_are_bounded_redacted_and_escaped(
    registry: CollectorRegistry, parse_text: Callable[[str], Samples]
) -> None:
    sink = PrometheusSink(registry=registry)
    secret = "sk-proj-abcdefghijklmnopqrstuvwxyz0123"
    sink.record(event("openai", f"ft:{secret}"))
    sink.record(event("hf", "Bearer hf_abcdefghijklmnop"))
    sink.record(event('we"ird\nprov\\', "x" * 1000))
    sink.record(event("", "  "))
    text = metrics_text(registry)
    assert "abcdefghijklmnop" not in text
    samples = parse_text(text)
    models = series(samples, "chatcore_requests_total", "model")
    providers = series(samples, "chatcore_requests_total", "provider")
    assert "ft:sk-***" in models
    assert "Bearer ***" in models
    assert "x" * 200 in models and max(len(m) for m in models) == 200
    assert 'we"ird\nprov\\' in providers  # escaped in the text, intact once parsed
    assert "unknown" in providers and "unknown" in models


def test_request_and_attempt_events(
    registry: CollectorRegistry, parse_text: Callable[[str], Samples]
) -> None:
    sink = PrometheusSink(registry=registry, buckets=(0.1, 1.0), ttft_buckets=(0.5,))
    sink.record(event(kind="attempt", outcome="error", error_type="ServerError", attempt=1))
    sink.record(event(kind="attempt", attempt=2))
    sink.record(
        event(
            latency=0.5,
            attempts=2,
            prompt_tokens=7,
            completion_tokens=11,
            time_to_first_token=0.25,
        )
    )
    sink.record(event(latency=0.0, attempts=0, cached=True, prompt_tokens=7))
    sink.record(event(latency=float("nan"), completion_tokens=-3, time_to_first_token=float("inf")))
    sink.record(event(latency=-1.0))
    samples = parse_text(metrics_text(registry))
    pm = {"provider": "p", "model": "m"}
    assert value(samples, "chatcore_attempts_total", **pm, outcome="error") == 1
    assert value(samples, "chatcore_attempts_total", **pm, outcome="ok") == 1
    assert value(samples, "chatcore_requests_total", **pm, outcome="ok") == 4
    assert value(samples, "chatcore_retries_total", **pm) == 1
    assert value(samples, "chatcore_cache_hits_total", **pm) == 1
    assert value(samples, "chatcore_cache_misses_total", **pm) == 3
    assert value(samples, "chatcore_tokens_total", **pm, kind="prompt") == 7
    assert value(samples, "chatcore_tokens_total", **pm, kind="completion") == 11
    lat = "chatcore_request_latency_seconds"
    assert value(samples, f"{lat}_count", **pm) == 2  # NaN skipped, negative as 0
    assert value(samples, f"{lat}_sum", **pm) == 0.5
    assert value(samples, f"{lat}_bucket", **pm, le="0.1") == 1
    assert value(samples, f"{lat}_bucket", **pm, le="1.0") == 2
    ttft = "chatcore_time_to_first_token_seconds"
    assert value(samples, f"{ttft}_count", **pm) == 1
    assert value(samples, f"{ttft}_bucket", **pm, le="0.5") == 1


def test_new_pairs_start_at_zero(
    registry: CollectorRegistry, parse_text: Callable[[str], Samples]
) -> None:
    PrometheusSink(registry=registry).record(event())
    samples = parse_text(metrics_text(registry))
    pm = {"provider": "p", "model": "m"}
    assert value(samples, "chatcore_requests_total", **pm, outcome="error") == 0
    assert value(samples, "chatcore_attempts_total", **pm, outcome="error") == 0
    assert value(samples, "chatcore_cache_hits_total", **pm) == 0
    assert value(samples, "chatcore_retries_total", **pm) == 0


def test_record_never_raises(registry: CollectorRegistry) -> None:
    sink = PrometheusSink(registry=registry)
    sink.record(object())
    sink.record(None)
    assert sink.dropped_events == 2
    sink.record(event())
    assert sink.dropped_events == 2


def test_sinks_on_one_registry_share_metrics(
    registry: CollectorRegistry, parse_text: Callable[[str], Samples]
) -> None:
    first = PrometheusSink(registry=registry)
    second = PrometheusSink(registry=registry)
    first.record(event())
    second.record(event())
    samples = parse_text(metrics_text(registry))
    assert value(samples, "chatcore_requests_total", provider="p", model="m", outcome="ok") == 2
    with pytest.raises(ValueError, match="other buckets or caps"):
        PrometheusSink(registry=registry, max_models=5)
    PrometheusSink(registry=registry, namespace="llm").record(event())
    samples = parse_text(metrics_text(registry))
    assert value(samples, "llm_requests_total", provider="p", model="m", outcome="ok") == 1


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_models": 0},
        {"max_providers": True},
        {"buckets": ()},
        {"buckets": (1.0, 0.5)},
        {"ttft_buckets": (float("inf"),)},
    ],
)
def test_bad_arguments(registry: CollectorRegistry, kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        PrometheusSink(registry=registry, **kwargs)


def test_thread_safety(registry: CollectorRegistry, parse_text: Callable[[str], Samples]) -> None:
    sink = PrometheusSink(registry=registry, max_models=5)
    per_thread, threads = 500, 8
    start = threading.Barrier(threads)

    def work(n: int) -> None:
        start.wait()
        for i in range(per_thread):
            sink.record(event("p", f"m{(n + i) % 20}", completion_tokens=1))

    workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    samples = parse_text(metrics_text(registry))
    assert len(series(samples, "chatcore_requests_total", "model")) == 6
    total = sum(v for (n, _), v in samples.items() if n == "chatcore_requests_total")
    tokens = sum(v for (n, _), v in samples.items() if n == "chatcore_tokens_total")
    assert total == tokens == per_thread * threads
    assert sink.dropped_events == 0


def test_serve_metrics_guards(registry: CollectorRegistry) -> None:
    with pytest.raises(ValueError, match="non-loopback"):
        serve_metrics(0, host="0.0.0.0", registry=registry)
    with pytest.raises(ValueError, match="port"):
        serve_metrics(70000, registry=registry)
    server = serve_metrics(0, host="localhost", registry=registry)
    assert server.running and "localhost" in repr(server)
    server.stop()
    server.stop()  # idempotent
    assert not server.running


def test_error_subclass_defined_later_is_kept(
    registry: CollectorRegistry, parse_text: Callable[[str], Samples]
) -> None:
    class PluginSpecificError(ServerError):
        pass

    class NotChatcoreError(Exception):
        pass

    sink = PrometheusSink(registry=registry)
    for error_type in (PluginSpecificError.__name__, NotChatcoreError.__name__):
        sink.record(event(outcome="error", error_type=error_type))
    samples = parse_text(metrics_text(registry))
    assert series(samples, "chatcore_errors_total", "error_type") == {
        "PluginSpecificError",
        OTHER,
    }
    assert "RateLimitExceeded" in ERROR_TYPES and "ChatcoreError" in ERROR_TYPES
    assert "PluginSpecificError" not in ERROR_TYPES  # the import-time set stays as it was


def test_typed_token_parts_have_their_own_family(
    registry: CollectorRegistry, parse_text: Callable[[str], Samples]
) -> None:
    """Cached, cache-creation and reasoning tokens are counted in
    ``chatcore_token_details_total`` (parts of the prompt and completion tokens), so that
    summing ``chatcore_tokens_total`` still gives the total; cache hits and odd values do
    not count, and an event of an older core without the fields is still recorded."""
    sink = PrometheusSink(registry=registry)
    sink.record(
        event(
            prompt_tokens=100,
            completion_tokens=40,
            cached_tokens=60,
            cache_creation_tokens=30,
            reasoning_tokens=25,
        )
    )
    sink.record(event(prompt_tokens=10, cached=True, cached_tokens=10))
    sink.record(event(cached_tokens=-1, reasoning_tokens=None))

    class OldEvent:
        provider, model, outcome, kind, latency = "p", "m", "ok", "request", 0.1
        attempts, cached, time_to_first_token = 1, False, None
        prompt_tokens, completion_tokens, error_type = 5, 5, None

    sink.record(OldEvent())
    samples = parse_text(metrics_text(registry))
    pm = {"provider": "p", "model": "m"}
    details = "chatcore_token_details_total"
    assert value(samples, details, **pm, kind="cached") == 60
    assert value(samples, details, **pm, kind="cache_creation") == 30
    assert value(samples, details, **pm, kind="reasoning") == 25
    assert sum(v for (n, _), v in samples.items() if n == "chatcore_tokens_total") == 150
    assert sink.dropped_events == 0


def test_spend_counters(registry: CollectorRegistry, parse_text: Callable[[str], Samples]) -> None:
    """``chatcore_cost_usd_total`` sums what answers cost (Decimals from chatcore; unknown
    and odd values count nothing), ``chatcore_cache_saved_usd_total`` what cache hits
    would have cost; both series exist at zero from the first event."""
    from decimal import Decimal

    sink = PrometheusSink(registry=registry)
    sink.record(event(model="fresh"))
    sink.record(event(cost=Decimal("0.00125")))
    sink.record(event(cost=Decimal("0.5")))
    sink.record(event(cost=None))
    sink.record(event(cost=Decimal("NaN")))
    sink.record(event(cached=True, cost=Decimal(0), saved_cost=Decimal("0.25")))
    samples = parse_text(metrics_text(registry))
    assert value(samples, "chatcore_cost_usd_total", provider="p", model="m") == 0.50125
    assert value(samples, "chatcore_cache_saved_usd_total", provider="p", model="m") == 0.25
    assert value(samples, "chatcore_cost_usd_total", provider="p", model="fresh") == 0
    assert value(samples, "chatcore_cache_saved_usd_total", provider="p", model="fresh") == 0
    assert sink.dropped_events == 0
