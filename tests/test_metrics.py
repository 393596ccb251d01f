"""Metrics: exact aggregates for a known sequence, quantile accuracy against an exact
computation (hypothesis), bounded memory and cardinality, the availability window, the
Prometheus text (checked with a small parser), label escaping and thread safety."""

from __future__ import annotations

import json
import math
import random
import re
import threading
import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import chatcore
from chatcore._metrics import (
    MAX_BUCKETS,
    OTHER,
    RELATIVE_ACCURACY,
    InMemoryMetrics,
    MetricsSink,
    RequestEvent,
    escape_label_value,
    format_value,
)
from chatcore._redact import redact
from chatcore.testing.server import Reply


class FakeClock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def ev(model="m", outcome="ok", latency=0.1, provider="p", **kw):
    return RequestEvent(provider=provider, model=model, outcome=outcome, latency=latency, **kw)


def err(model="m", error_type="ServerError", **kw):
    return ev(model=model, outcome="error", error_type=error_type, **kw)


def nearest_rank(values, percent):
    """The exact nearest-rank quantile: the ceil(p/100 * n)-th smallest value."""
    ordered = sorted(values)
    rank = max(1, -(-percent * len(ordered) // 100))
    return ordered[rank - 1]


# --- the event -----------------------------------------------------------------------------


def test_request_event_keeps_its_fields_and_positions():
    event = RequestEvent("openai", "gpt-4o", "error", 1.5, 3, "RateLimitError", 429, 10, 20, True)
    assert (event.provider, event.model, event.outcome, event.latency) == (
        "openai",
        "gpt-4o",
        "error",
        1.5,
    )
    assert (event.attempts, event.error_type, event.status_code) == (3, "RateLimitError", 429)
    assert (event.prompt_tokens, event.completion_tokens, event.cached) == (10, 20, True)
    assert event.kind == "request"
    assert event.attempt == 1
    assert event.time_to_first_token is None
    assert event.tokens_per_second is None
    assert event.timestamp == 0.0
    with pytest.raises(AttributeError):
        event.outcome = "ok"  # type: ignore[misc]


def test_in_memory_metrics_is_a_sink():
    sink: MetricsSink = InMemoryMetrics()
    sink.record(ev())
    assert isinstance(sink, InMemoryMetrics)
    assert "keys=1" in repr(sink)


@pytest.mark.parametrize(
    "kwargs",
    [{"window": 0}, {"max_keys": 0}, {"max_providers": -1}, {"window": 1.5}, {"window": True}],
)
def test_bad_settings_are_rejected(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        InMemoryMetrics(**kwargs)


# --- exact aggregates ----------------------------------------------------------------------


def test_known_sequence_gives_exact_numbers():
    clock = FakeClock()
    m = InMemoryMetrics(clock=clock)
    m.record(ev("a", latency=0.1, prompt_tokens=10, completion_tokens=5, cached_tokens=4))
    m.record(
        ev(
            "a",
            latency=0.2,
            prompt_tokens=20,
            completion_tokens=7,
            attempts=2,
            cache_creation_tokens=6,
            reasoning_tokens=3,
        )
    )
    m.record(err("a", "RateLimitError", latency=0.4, attempts=3, status_code=429))
    clock.now += 10
    m.record(err("a", "ServerError", latency=0.3, status_code=500))
    m.record(
        ev("a", latency=0.0, cached=True, prompt_tokens=99, completion_tokens=99, cached_tokens=9)
    )
    m.record(
        ev("b", latency=1.0, time_to_first_token=0.25, tokens_per_second=40.0, completion_tokens=8)
    )
    m.record(err("b", None, latency=2.0, timestamp=123.5))
    m.record(ev("c", provider="q", latency=0.05))
    # attempts are counted on their own, not as requests
    m.record(err("a", "ServerError", latency=0.1, kind="attempt", attempt=1))
    m.record(ev("a", latency=0.1, kind="attempt", attempt=2))

    snap = m.snapshot()
    json.dumps(snap)  # JSON-ready
    a = snap["providers"]["p"]["models"]["a"]
    assert a["requests"] == 5
    assert a["ok"] == 3
    assert a["errors"] == 2
    assert a["error_rate"] == pytest.approx(0.4)
    assert a["errors_by_type"] == {"RateLimitError": 1, "ServerError": 1}
    assert a["retries"] == 1 + 2
    assert a["cache"] == {"hits": 1, "misses": 4, "hit_rate": pytest.approx(0.2)}
    # the cache hit's tokens and latency are not the provider's
    assert a["tokens"] == {
        "prompt": 30,
        "completion": 12,
        "total": 42,
        "cached": 4,
        "cache_creation": 6,
        "reasoning": 3,
    }
    lat = a["latency_seconds"]
    assert lat["count"] == 4
    assert lat["sum"] == pytest.approx(1.0)
    assert lat["mean"] == pytest.approx(0.25)
    assert lat["max"] == 0.4
    assert lat["p50"] == pytest.approx(0.2, rel=RELATIVE_ACCURACY)  # 2nd of 4
    assert lat["p95"] == pytest.approx(0.4, rel=RELATIVE_ACCURACY)
    assert lat["p99"] == pytest.approx(0.4, rel=RELATIVE_ACCURACY)
    assert a["time_to_first_token_seconds"]["count"] == 0
    assert a["time_to_first_token_seconds"]["p50"] is None
    assert a["availability"] == {"ratio": 0.5, "window": 100, "observed": 4}
    assert a["attempts"] == {
        "count": 2,
        "ok": 1,
        "errors": 1,
        "errors_by_type": {"ServerError": 1},
    }
    assert a["last_error"] == {
        "type": "ServerError",
        "timestamp": clock.now,
        "status_code": 500,
    }

    b = snap["providers"]["p"]["models"]["b"]
    assert b["requests"] == 2
    assert b["errors_by_type"] == {"unknown": 1}
    assert b["last_error"] == {"type": "unknown", "timestamp": 123.5, "status_code": None}
    ttft = b["time_to_first_token_seconds"]
    assert ttft["count"] == 1
    assert ttft["p50"] == pytest.approx(0.25, rel=RELATIVE_ACCURACY)
    assert ttft["p95"] == pytest.approx(0.25, rel=RELATIVE_ACCURACY)
    assert b["tokens_per_second"] == {"count": 1, "mean": 40.0}

    p = snap["providers"]["p"]
    assert sorted(p["models"]) == ["a", "b"]
    assert p["requests"] == 7
    assert p["errors"] == 3
    assert p["errors_by_type"] == {"RateLimitError": 1, "ServerError": 1, "unknown": 1}
    assert p["tokens"] == {
        "prompt": 30,
        "completion": 20,
        "total": 50,
        "cached": 4,
        "cache_creation": 6,
        "reasoning": 3,
    }
    assert p["latency_seconds"]["count"] == 6
    assert p["availability"]["observed"] == 6
    assert p["availability"]["ratio"] == pytest.approx(3 / 6)
    assert p["last_error"]["type"] == "ServerError"  # the latest of a's and b's

    t = snap["totals"]
    assert t["requests"] == 8
    assert t["ok"] == 5
    assert t["errors"] == 3
    assert t["retries"] == 3
    assert t["cache"]["hits"] == 1
    assert t["availability"]["ratio"] == pytest.approx(4 / 7)
    assert t["attempts"]["count"] == 2
    assert snap["keys"] == 3
    assert snap["overflow_events"] == 0
    assert snap["providers"]["q"]["models"]["c"]["requests"] == 1


def test_empty_snapshot():
    snap = InMemoryMetrics().snapshot()
    assert snap["providers"] == {}
    assert snap["totals"]["requests"] == 0
    assert snap["totals"]["error_rate"] == 0.0
    assert snap["totals"]["availability"]["ratio"] is None
    assert snap["totals"]["last_error"] is None
    assert InMemoryMetrics().prometheus_text().count("# TYPE") == 15


def test_odd_values_never_raise():
    m = InMemoryMetrics()
    for latency in (math.nan, math.inf, -1.0, 0.0, 1e-9, 1e9):
        m.record(
            ev(
                latency=latency,
                tokens_per_second=math.inf,
                prompt_tokens=-5,
                cached_tokens=-5,
                reasoning_tokens=-1,
            )
        )
    m.record(ev(outcome="weird"))  # anything but "ok" is a failure
    lat = m.snapshot()["totals"]["latency_seconds"]
    assert lat["count"] == 7
    assert math.isfinite(lat["sum"])
    assert lat["max"] == 1e5
    assert lat["p50"] == 0.0
    assert m.snapshot()["totals"]["tokens"]["prompt"] == 0
    assert m.snapshot()["totals"]["tokens"]["cached"] == 0
    assert m.snapshot()["totals"]["tokens"]["reasoning"] == 0
    assert m.snapshot()["totals"]["tokens_per_second"]["count"] == 0
    assert m.snapshot()["totals"]["errors"] == 1


def test_reset_forgets_everything():
    m = InMemoryMetrics()
    for i in range(10):
        m.record(ev(f"m{i}"))
    m.reset()
    assert m.snapshot()["providers"] == {}
    assert m.sizes()["keys"] == 0
    m.record(ev())
    assert m.snapshot()["totals"]["requests"] == 1


# --- quantile accuracy ---------------------------------------------------------------------

latencies = st.lists(
    st.floats(min_value=0.0, max_value=1e4, allow_nan=False, allow_infinity=False),
    min_size=1,
    max_size=300,
)


def within_accuracy(reported, exact):
    return abs(reported - exact) <= RELATIVE_ACCURACY * exact * (1 + 1e-9) + 1e-6


@settings(max_examples=300, deadline=None)
@given(values=latencies)
def test_quantiles_are_within_the_documented_accuracy(values):
    m = InMemoryMetrics()
    for v in values:
        m.record(ev(latency=v, time_to_first_token=v))
    snap = m.snapshot()["providers"]["p"]["models"]["m"]
    for field in ("latency_seconds", "time_to_first_token_seconds"):
        summary = snap[field]
        assert summary["count"] == len(values)
        assert summary["max"] == max(values)
        assert summary["sum"] == pytest.approx(math.fsum(values))
        for name, percent in (("p50", 50), ("p95", 95), ("p99", 99)):
            exact = nearest_rank(values, percent)
            assert within_accuracy(summary[name], exact), (name, summary[name], exact)


@settings(max_examples=50, deadline=None)
@given(a=latencies, b=latencies)
def test_merged_quantiles_for_providers_and_totals(a, b):
    m = InMemoryMetrics()
    for v in a:
        m.record(ev("x", latency=v))
    for v in b:
        m.record(ev("y", latency=v, provider="other"))
    snap = m.snapshot()
    total = snap["totals"]["latency_seconds"]
    assert total["count"] == len(a) + len(b)
    for name, percent in (("p50", 50), ("p95", 95), ("p99", 99)):
        assert within_accuracy(total[name], nearest_rank(a + b, percent))
        assert within_accuracy(
            snap["providers"]["p"]["latency_seconds"][name], nearest_rank(a, percent)
        )


def test_quantiles_of_a_wide_random_sample():
    rng = random.Random(7)
    values = [rng.lognormvariate(-1.0, 2.0) for _ in range(20_000)]
    m = InMemoryMetrics()
    for v in values:
        m.record(ev(latency=v))
    lat = m.snapshot()["totals"]["latency_seconds"]
    for name, percent in (("p50", 50), ("p95", 95), ("p99", 99)):
        assert within_accuracy(lat[name], nearest_rank(values, percent))


# --- bounded memory and cardinality --------------------------------------------------------


def test_memory_stays_bounded_over_200k_events():
    rng = random.Random(1)
    latencies = [rng.lognormvariate(-1.5, 1.5) for _ in range(997)]
    models = [f"model-{i}" for i in range(20)]
    types = ["RateLimitError", "ServerError", "APITimeoutError"]
    m = InMemoryMetrics()

    def burst(start, n):
        for i in range(start, start + n):
            lat = latencies[i % len(latencies)]
            if i % 7 == 0:
                m.record(err(models[i % 20], types[i % 3], latency=lat, attempts=2))
            else:
                m.record(
                    ev(models[i % 20], latency=lat, time_to_first_token=lat / 3, prompt_tokens=5)
                )

    burst(0, 100_000)
    sizes = m.sizes()
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        burst(100_000, 100_000)
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert m.sizes() == sizes
    assert after - before < 16_384  # no per-request state
    assert sizes["keys"] == 20
    assert sizes["latency_buckets"] <= MAX_BUCKETS
    assert sizes["ring_bytes"] == 100
    assert m.snapshot()["totals"]["requests"] == 200_000


def test_distinct_model_names_are_capped():
    m = InMemoryMetrics(max_keys=10, max_providers=3)
    for i in range(5_000):
        m.record(ev(f"model-{i}", latency=0.01 * (i % 50 + 1)))
    snap = m.snapshot()
    models = snap["providers"]["p"]["models"]
    assert len(models) == 11
    assert models[OTHER]["requests"] == 5_000 - 10
    assert snap["totals"]["requests"] == 5_000
    assert snap["overflow_events"] == 5_000 - 10
    sizes = m.sizes()
    assert sizes["keys"] == 11
    assert sizes["raw_aliases"] <= 20
    # an already admitted model keeps its own series
    m.record(ev("model-3"))
    assert m.snapshot()["providers"]["p"]["models"]["model-3"]["requests"] == 2


def test_distinct_providers_are_capped():
    m = InMemoryMetrics(max_keys=1000, max_providers=3)
    for i in range(500):
        m.record(ev("m", provider=f"prov-{i}"))
    snap = m.snapshot()
    assert sorted(snap["providers"]) == [OTHER, "prov-0", "prov-1", "prov-2"]
    assert snap["providers"][OTHER]["models"][OTHER]["requests"] == 497
    assert m.sizes()["providers"] <= 4
    assert m.sizes()["provider_aliases"] <= 6


def test_error_types_are_capped():
    m = InMemoryMetrics()
    for i in range(200):
        m.record(err(error_type=f"Error{i}"))
    types = m.snapshot()["totals"]["errors_by_type"]
    assert len(types) == 51
    assert types[OTHER] == 150
    assert m.sizes()["error_types"] == 51


def test_long_names_are_truncated():
    m = InMemoryMetrics()
    m.record(ev("x" * 10_000, error_type="E" * 1000))
    (model,) = m.snapshot()["providers"]["p"]["models"]
    assert len(model) == 200


def test_secrets_never_reach_the_metrics():
    secret = "sk-abcdefghijklmnop0123456789"
    m = InMemoryMetrics()
    m.record(ev(f"gpt-4o?key={secret}"))
    m.record(err(f"Bearer {secret}", error_type=f"boom {secret}"))
    m.record(ev("m", provider=f"hf_{secret[3:]}"))
    text = m.prometheus_text() + json.dumps(m.snapshot())
    assert secret not in text
    assert secret[3:] not in text
    assert "***" in text


# --- availability --------------------------------------------------------------------------


def test_availability_is_a_rolling_window_of_requests():
    m = InMemoryMetrics(window=5)
    outcomes = [True, True, False, True, False, False, False, True, True, True, True, True]
    seen = []
    for ok in outcomes:
        m.record(ev() if ok else err())
        m.record(ev(cached=True))  # cache hits never reach the provider: not counted
        seen.append(ok)
        recent = seen[-5:]
        av = m.snapshot()["providers"]["p"]["models"]["m"]["availability"]
        assert av["observed"] == len(recent)
        assert av["ratio"] == pytest.approx(sum(recent) / len(recent))
    assert av == {"ratio": 1.0, "window": 5, "observed": 5}
    assert m.sizes()["ring_bytes"] == 5


@settings(max_examples=100, deadline=None)
@given(
    outcomes=st.lists(st.tuples(st.sampled_from("ab"), st.booleans()), min_size=1, max_size=60),
    window=st.integers(1, 20),
)
def test_availability_windows_per_model_provider_and_total(outcomes, window):
    m = InMemoryMetrics(window=window)
    for model, ok in outcomes:
        m.record(ev(model) if ok else err(model))
    snap = m.snapshot()

    def ratio(flags):
        recent = flags[-window:]
        return sum(recent) / len(recent)

    flags = [ok for _, ok in outcomes]
    assert snap["totals"]["availability"]["ratio"] == pytest.approx(ratio(flags))
    assert snap["providers"]["p"]["availability"]["ratio"] == pytest.approx(ratio(flags))
    for model in {m for m, _ in outcomes}:
        mine = [ok for name, ok in outcomes if name == model]
        got = snap["providers"]["p"]["models"][model]["availability"]["ratio"]
        assert got == pytest.approx(ratio(mine))


def test_last_error_time_comes_from_the_event_or_the_clock():
    clock = FakeClock(50.0)
    m = InMemoryMetrics(clock=clock)
    m.record(err(error_type="A"))
    assert m.snapshot()["totals"]["last_error"]["timestamp"] == 50.0
    m.record(err(error_type="B", timestamp=60.0, status_code=503))
    assert m.snapshot()["totals"]["last_error"] == {
        "type": "B",
        "timestamp": 60.0,
        "status_code": 503,
    }


# --- Prometheus text -----------------------------------------------------------------------

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_SAMPLE = re.compile(rf"^({_NAME})(?:\{{(.*)\}})? (\S+)$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"(,|$)')


def _unescape(value):
    return re.sub(r"\\([\\\"n])", lambda m: "\n" if m.group(1) == "n" else m.group(1), value)


def _value(text):
    special = {"+Inf": math.inf, "-Inf": -math.inf, "NaN": math.nan}
    if text in special:
        return special[text]
    assert re.fullmatch(r"-?\d+(\.\d+)?([eE][-+]?\d+)?", text), text
    return float(text)


def parse_prometheus(text):
    """A strict reader of the text format 0.0.4: returns {family: {"type", "help",
    "samples": [(name, labels, value)]}} and fails on anything malformed."""
    assert text.endswith("\n")
    families = {}
    current = None
    for line in text[:-1].split("\n"):
        assert line, "no blank lines"
        if line.startswith("# HELP "):
            name, _, help_text = line[7:].partition(" ")
            assert re.fullmatch(_NAME, name)
            assert name not in families, f"{name} described twice"
            families[name] = {"help": help_text, "type": None, "samples": []}
            current = name
        elif line.startswith("# TYPE "):
            name, kind = line[7:].split(" ")
            assert name == current, "TYPE follows its HELP"
            assert kind in {"counter", "gauge", "summary", "histogram", "untyped"}
            assert families[name]["type"] is None
            families[name]["type"] = kind
        else:
            assert not line.startswith("#")
            match = _SAMPLE.match(line)
            assert match, line
            name, label_text, value = match.groups()
            family = families[current]
            allowed = {current}
            if family["type"] == "summary":
                allowed |= {f"{current}_sum", f"{current}_count"}
            assert name in allowed, (name, current)
            labels = {}
            pos = 0
            label_text = label_text or ""
            while pos < len(label_text):
                lm = _LABEL.match(label_text, pos)
                assert lm, label_text[pos:]
                assert lm.group(1) not in labels
                labels[lm.group(1)] = _unescape(lm.group(2))
                pos = lm.end()
            family["samples"].append((name, labels, _value(value)))
    for name, family in families.items():
        assert family["type"] is not None, name
        if family["type"] == "counter":
            assert name.endswith("_total")
    seen = set()
    for family in families.values():
        for name, labels, _ in family["samples"]:
            key = (name, tuple(sorted(labels.items())))
            assert key not in seen, f"duplicate series {key}"
            seen.add(key)
    return families


def samples(families, name):
    out = {}
    for family in families.values():
        for sample_name, labels, value in family["samples"]:
            if sample_name == name:
                out[tuple(sorted(labels.items()))] = value
    return out


def key(**labels):
    return tuple(sorted(labels.items()))


def test_prometheus_text_parses_and_matches_the_snapshot():
    m = InMemoryMetrics(clock=FakeClock(1000.0))
    rng = random.Random(3)
    for i in range(500):
        model = ["gpt-4o", "gpt-4o-mini", "llama"][i % 3]
        provider = "hf" if model == "llama" else "openai"
        if i % 11 == 0:
            m.record(
                err(
                    model,
                    ["RateLimitError", "ServerError"][i % 2],
                    provider=provider,
                    latency=rng.random(),
                    attempts=1 + i % 3,
                )
            )
        else:
            m.record(
                ev(
                    model,
                    provider=provider,
                    latency=rng.random(),
                    cached=i % 5 == 0,
                    time_to_first_token=rng.random() / 10 if i % 2 else None,
                    prompt_tokens=i,
                    completion_tokens=2 * i,
                    cached_tokens=i // 2,
                    cache_creation_tokens=i // 3 if i % 3 else None,
                    reasoning_tokens=i // 4,
                )
            )
        if i % 4 == 0:
            m.record(ev(model, provider=provider, kind="attempt", attempt=1 + i % 2))
    snap = m.snapshot()
    families = parse_prometheus(m.prometheus_text())

    expected_families = {
        "chatcore_requests_total": "counter",
        "chatcore_errors_total": "counter",
        "chatcore_retries_total": "counter",
        "chatcore_attempts_total": "counter",
        "chatcore_cache_hits_total": "counter",
        "chatcore_cache_misses_total": "counter",
        "chatcore_tokens_total": "counter",
        "chatcore_token_details_total": "counter",
        "chatcore_cost_usd_total": "counter",
        "chatcore_cache_saved_usd_total": "counter",
        "chatcore_request_latency_seconds": "summary",
        "chatcore_time_to_first_token_seconds": "summary",
        "chatcore_availability_ratio": "gauge",
        "chatcore_provider_availability_ratio": "gauge",
        "chatcore_last_error_timestamp_seconds": "gauge",
    }
    assert {n: f["type"] for n, f in families.items()} == expected_families

    requests = samples(families, "chatcore_requests_total")
    errors = samples(families, "chatcore_errors_total")
    latency = samples(families, "chatcore_request_latency_seconds")
    ttft = samples(families, "chatcore_time_to_first_token_seconds")
    checked = 0
    for provider, entry in snap["providers"].items():
        assert samples(families, "chatcore_provider_availability_ratio")[
            key(provider=provider)
        ] == pytest.approx(entry["availability"]["ratio"])
        for model, s in entry["models"].items():
            pm = {"provider": provider, "model": model}
            assert requests[key(**pm, outcome="ok")] == s["ok"]
            assert requests[key(**pm, outcome="error")] == s["errors"]
            for error_type, n in s["errors_by_type"].items():
                assert errors[key(**pm, error_type=error_type)] == n
            assert samples(families, "chatcore_retries_total")[key(**pm)] == s["retries"]
            assert samples(families, "chatcore_cache_hits_total")[key(**pm)] == s["cache"]["hits"]
            assert (
                samples(families, "chatcore_cache_misses_total")[key(**pm)] == s["cache"]["misses"]
            )
            tokens = samples(families, "chatcore_tokens_total")
            assert tokens[key(**pm, kind="prompt")] == s["tokens"]["prompt"]
            assert tokens[key(**pm, kind="completion")] == s["tokens"]["completion"]
            details = samples(families, "chatcore_token_details_total")
            for kind in ("cached", "cache_creation", "reasoning"):
                assert details[key(**pm, kind=kind)] == s["tokens"][kind]
            attempts = samples(families, "chatcore_attempts_total")
            assert attempts[key(**pm, outcome="ok")] == s["attempts"]["ok"]
            for quantile, name in (("0.5", "p50"), ("0.95", "p95"), ("0.99", "p99")):
                assert latency[key(**pm, quantile=quantile)] == s["latency_seconds"][name]
                assert (
                    ttft[key(**pm, quantile=quantile)] == (s["time_to_first_token_seconds"][name])
                )
            assert samples(families, "chatcore_request_latency_seconds_sum")[
                key(**pm)
            ] == pytest.approx(s["latency_seconds"]["sum"])
            assert (
                samples(families, "chatcore_request_latency_seconds_count")[key(**pm)]
                == s["latency_seconds"]["count"]
            )
            assert (
                samples(families, "chatcore_availability_ratio")[key(**pm)]
                == s["availability"]["ratio"]
            )
            assert samples(families, "chatcore_last_error_timestamp_seconds")[key(**pm)] == 1000.0
            checked += 1
    assert checked == 3
    assert sum(requests.values()) == snap["totals"]["requests"] == 500


@pytest.mark.parametrize(
    ("raw", "escaped"),
    [
        ("plain", "plain"),
        ('a"b', 'a\\"b'),
        ("a\\b", "a\\\\b"),
        ("a\nb", "a\\nb"),
        ('\\"\n', '\\\\\\"\\n'),
    ],
)
def test_label_escaping(raw, escaped):
    assert escape_label_value(raw) == escaped


@pytest.mark.parametrize(
    ("value", "text"),
    [(3, "3"), (0.5, "0.5"), (1e-7, "1e-07"), (math.inf, "+Inf"), (-math.inf, "-Inf")],
)
def test_sample_values(value, text):
    assert format_value(value) == text
    assert format_value(math.nan) == "NaN"


@settings(max_examples=200, deadline=None)
@given(names=st.lists(st.text(max_size=40), min_size=1, max_size=5, unique=True))
def test_any_model_name_is_escaped_and_round_trips(names):
    m = InMemoryMetrics()
    for name in names:
        m.record(err(name, error_type="ServerError", latency=0.5))
    snap = m.snapshot()
    expected = {redact(name[:200]) or "unknown" for name in names}
    assert set(snap["providers"]["p"]["models"]) == expected
    families = parse_prometheus(m.prometheus_text())
    got = {labels["model"] for _, labels, _ in families["chatcore_requests_total"]["samples"]}
    assert got == expected
    count = samples(families, "chatcore_request_latency_seconds_count")
    for model, s in snap["providers"]["p"]["models"].items():
        assert count[key(provider="p", model=model)] == s["latency_seconds"]["count"]


# --- threads -------------------------------------------------------------------------------


def test_eight_threads_give_exact_totals():
    m = InMemoryMetrics()
    per_thread = 5_000

    def work(n):
        for i in range(per_thread):
            if i % 10 == 0:
                m.record(err(f"m{i % 4}", provider=f"p{n % 2}", attempts=2, latency=0.01))
            else:
                m.record(ev(f"m{i % 4}", provider=f"p{n % 2}", prompt_tokens=1, latency=0.02))

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    t = m.snapshot()["totals"]
    assert t["requests"] == 8 * per_thread
    assert t["errors"] == 8 * per_thread // 10
    assert t["ok"] == 8 * per_thread * 9 // 10
    assert t["retries"] == 8 * per_thread // 10
    assert t["tokens"]["prompt"] == 8 * per_thread * 9 // 10
    assert t["latency_seconds"]["count"] == 8 * per_thread
    for provider in ("p0", "p1"):
        p = m.snapshot()["providers"][provider]
        assert p["requests"] == 4 * per_thread
        for model in ("m0", "m1", "m2", "m3"):
            assert p["models"][model]["requests"] == per_thread


# --- with the client -----------------------------------------------------------------------


def test_the_client_feeds_a_sink(make_client, server):
    metrics = InMemoryMetrics()
    client = make_client(metrics_sinks=[metrics], max_retries=0)
    client.chat("wire:m", "hi")
    server.enqueue(Reply.error(400, "nope"))
    with pytest.raises(chatcore.BadRequestError):
        client.chat("wire:m", "hi")
    s = metrics.snapshot()["providers"]["wire"]["models"]["m"]
    assert (s["requests"], s["ok"], s["errors"]) == (2, 1, 1)
    assert s["errors_by_type"] == {"BadRequestError": 1}
    assert s["tokens"]["prompt"] > 0
    assert s["latency_seconds"]["count"] == 2
    parse_prometheus(metrics.prometheus_text())
