"""Metrics: the events the pipeline hands to every sink, and the built-in in-memory sink.

The client builds one :class:`RequestEvent` per call (``kind="request"``) and may build one
per attempt (``kind="attempt"``); every sink's ``record(event)`` is called in its own guard.
:class:`InMemoryMetrics` aggregates them per ``(provider, model)`` in constant memory:

- counters (requests, ok, errors by type, retries, cache hits/misses, prompt/completion
  tokens and their typed parts: cached, cache-creation and reasoning tokens, attempts);
- latency and time-to-first-token quantiles from a log-bucket histogram (DDSketch-style):
  every reported quantile is within 1% (relative) of the exact nearest-rank quantile of the
  recorded values, or within 1 microsecond for values under 1 microsecond; values of 10^5 s
  and more are reported as about 10^5 s;
- availability: the success ratio of the last ``window`` (100) requests that reached the
  provider, in a ring buffer per ``(provider, model)``, per provider and overall;
- the last error's type and time (``event.timestamp``, or the injectable ``clock``).

Cache hits never reach the provider: they count in ``requests``, ``ok`` and cache hits only;
latency, time to first token, tokens, tokens per second and availability describe answers
from the provider.

Label cardinality is bounded: at most ``max_providers`` providers and ``max_keys``
``(provider, model)`` pairs are tracked; events past either cap are aggregated under the
model (and provider) ``"__other__"``. Provider and model names are the only free text kept
(error types are exception class names); they are truncated, passed through the secret
redactor, and escaped in the Prometheus output. Recording one event takes one lock and a
few dictionary and integer operations: no per-request state is kept.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from typing import Any, Protocol

import attrs

from chatcore._redact import redact

__all__ = [
    "COST_HELP",
    "OTHER",
    "PROMETHEUS_CONTENT_TYPE",
    "QUANTILES",
    "RELATIVE_ACCURACY",
    "SAVED_HELP",
    "TOKEN_DETAILS_HELP",
    "TOKEN_DETAIL_KINDS",
    "InMemoryMetrics",
    "MetricsSink",
    "RequestEvent",
    "escape_label_value",
    "render_prometheus",
]

OTHER = "__other__"
"""The provider or model name that events past the cardinality caps are aggregated under."""

PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""The ``Content-Type`` of :meth:`InMemoryMetrics.prometheus_text` (for a ``/metrics``)."""

TOKEN_DETAIL_KINDS: tuple[str, ...] = ("cached", "cache_creation", "reasoning")
"""The ``kind`` values of ``chatcore_token_details_total``: the parts of the prompt tokens
read from (``cached``) and written to (``cache_creation``) the provider's prompt cache, and
the part of the completion tokens spent reasoning (``reasoning``). They are a family of
their own, not kinds of ``chatcore_tokens_total``, whose sum stays the total."""

TOKEN_DETAILS_HELP = (
    "Parts of the reported tokens: of the prompt, read from (cached) or written to "
    "(cache_creation) the prompt cache; of the completion, reasoning."
)
"""The help text of ``chatcore_token_details_total`` (shared with chatcore-prometheus)."""

COST_HELP = "USD spent: each answer's usage at its model's prices (unpriced calls count 0)."
"""The help text of ``chatcore_cost_usd_total`` (shared with chatcore-prometheus)."""
SAVED_HELP = "USD the answers served from chatcore's cache would have cost."
"""The help text of ``chatcore_cache_saved_usd_total`` (shared with chatcore-prometheus)."""

QUANTILES: tuple[tuple[str, int], ...] = (("p50", 50), ("p95", 95), ("p99", 99))
"""The reported quantiles: name and percent (nearest-rank definition)."""

RELATIVE_ACCURACY = 0.01
"""Bound on the relative error of every reported quantile (for values in [1 us, 1e5 s])."""

_MIN_VALUE = 1e-6  # values at or below are reported as 0.0 (absolute error <= 1 us)
_MAX_VALUE = 1e5  # values above are clamped here
_GAMMA = (1.0 + RELATIVE_ACCURACY) / (1.0 - RELATIVE_ACCURACY)
_LOG_GAMMA = math.log(_GAMMA)
_UNDERFLOW = math.ceil(math.log(_MIN_VALUE) / _LOG_GAMMA) - 1
_TOP = math.ceil(math.log(_MAX_VALUE) / _LOG_GAMMA)
MAX_BUCKETS = _TOP - _UNDERFLOW + 1
"""The most buckets one histogram can ever hold (its memory bound)."""

_MAX_NAME = 200  # longest provider/model/error-type name kept
_MAX_ERROR_TYPES = 50  # distinct error types kept per (provider, model)


@attrs.frozen
class RequestEvent:
    """One finished request (``kind="request"``) or one attempt of it (``kind="attempt"``).

    ``latency`` is in seconds (all attempts, for a request); ``attempts`` is the number of
    attempts the request took, ``attempt`` the number of this attempt (attempt events);
    ``time_to_first_token`` and ``tokens_per_second`` are set for streams; ``timestamp`` is
    ``time.time()`` at the end (``0.0``: the sink's clock is used). ``cached_tokens`` and
    ``cache_creation_tokens`` are the parts of ``prompt_tokens`` read from and written to the
    provider's prompt cache, ``reasoning_tokens`` the part of ``completion_tokens`` spent
    reasoning (see :class:`~chatcore.models.Usage`; ``None``: not reported). ``route``
    and ``deployment`` say which route and deployment a routed call went through.
    """

    provider: str
    model: str
    outcome: str
    latency: float
    attempts: int = 1
    error_type: str | None = None
    status_code: int | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cached: bool = False
    kind: str = "request"
    attempt: int = 1
    time_to_first_token: float | None = None
    tokens_per_second: float | None = None
    timestamp: float = 0.0
    cached_tokens: int | None = None
    cache_creation_tokens: int | None = None
    reasoning_tokens: int | None = None
    #: Through a route: its name, and the deployment (``route:NAME/DEPLOYMENT``) that
    #: served the call or this attempt (``provider`` and ``model`` are the deployment's).
    route: str | None = None
    deployment: str | None = None
    #: What the request cost in USD (``None``: unknown price or usage); for a cache hit
    #: ``0``, with what it would have cost in ``saved_cost``.
    cost: Decimal | None = None
    saved_cost: Decimal | None = None


class MetricsSink(Protocol):
    """What the pipeline asks of a metrics sink (``Client(metrics_sinks=...)`` and the
    ``chatcore_metrics_sinks`` hook). It should be fast and thread-safe; an exception it
    raises is swallowed by the client."""

    def record(self, event: RequestEvent) -> None:
        """Take one event."""


# --- building blocks -----------------------------------------------------------------------


class _Histogram:
    """Counts per logarithmic bucket ``(gamma^(i-1), gamma^i]``; at most ``MAX_BUCKETS``."""

    __slots__ = ("buckets", "count", "max", "total")

    def __init__(self) -> None:
        self.buckets: dict[int, int] = {}
        self.count = 0
        self.total = 0.0
        self.max = 0.0

    def add(self, value: float) -> None:
        if value > _MIN_VALUE:
            if value < _MAX_VALUE:
                index = math.ceil(math.log(value) / _LOG_GAMMA)
            else:
                value = _MAX_VALUE
                index = _TOP
        else:
            value = 0.0 if not value > 0.0 else value  # NaN and negatives count as 0
            index = _UNDERFLOW
        buckets = self.buckets
        buckets[index] = buckets.get(index, 0) + 1
        self.count += 1
        self.total += value
        if value > self.max:
            self.max = value

    def merge(self, other: _Histogram) -> None:
        for index, n in other.buckets.items():
            self.buckets[index] = self.buckets.get(index, 0) + n
        self.count += other.count
        self.total += other.total
        self.max = max(self.max, other.max)

    def quantiles(self) -> dict[str, float | None]:
        """Nearest-rank quantiles: the bucket holding the ``ceil(p/100 * n)``-th value."""
        if not self.count:
            return {name: None for name, _ in QUANTILES}
        ranks = [(name, max(1, -(-percent * self.count // 100))) for name, percent in QUANTILES]
        out: dict[str, float | None] = {}
        seen = 0
        pending = iter(ranks)
        name, rank = next(pending)
        for index in sorted(self.buckets):
            seen += self.buckets[index]
            while rank <= seen:
                # never above the exact maximum (which is in the same bucket or higher)
                out[name] = min(_representative(index), self.max)
                try:
                    name, rank = next(pending)
                except StopIteration:
                    return out
        return out  # pragma: no cover - the last rank is at most count

    def summary(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "sum": self.total,
            "mean": self.total / self.count if self.count else None,
            "max": self.max if self.count else None,
            **self.quantiles(),
        }


def _representative(index: int) -> float:
    if index <= _UNDERFLOW:
        return 0.0
    return min(_MAX_VALUE, 2.0 * _GAMMA**index / (_GAMMA + 1.0))


class _Ring:
    """Success flags of the last ``size`` requests and how many of them succeeded."""

    __slots__ = ("filled", "flags", "good", "pos", "size")

    def __init__(self, size: int) -> None:
        self.size = size
        self.flags = bytearray(size)
        self.pos = 0
        self.filled = 0
        self.good = 0

    def add(self, ok: bool) -> None:
        pos = self.pos
        if self.filled == self.size:
            self.good -= self.flags[pos]
        else:
            self.filled += 1
        flag = 1 if ok else 0
        self.flags[pos] = flag
        self.good += flag
        self.pos = pos + 1 if pos + 1 < self.size else 0

    def summary(self) -> dict[str, Any]:
        return {
            "ratio": self.good / self.filled if self.filled else None,
            "window": self.size,
            "observed": self.filled,
        }


class _Stats:
    """The aggregates of one ``(provider, model)``."""

    __slots__ = (
        "attempt_errors",
        "attempt_ok",
        "attempts",
        "cache_creation_tokens",
        "cache_hits",
        "cache_misses",
        "cached_tokens",
        "completion_tokens",
        "cost",
        "costed",
        "error_types",
        "errors",
        "last_error",
        "latency",
        "model",
        "ok",
        "prompt_tokens",
        "provider",
        "reasoning_tokens",
        "requests",
        "retries",
        "ring",
        "saved_cost",
        "tps_count",
        "tps_sum",
        "ttft",
    )

    def __init__(self, provider: str, model: str, window: int) -> None:
        self.provider = provider
        self.model = model
        self.requests = 0
        self.ok = 0
        self.errors = 0
        self.error_types: dict[str, int] = {}
        self.latency = _Histogram()
        self.ttft = _Histogram()
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.cached_tokens = 0
        self.cache_creation_tokens = 0
        self.reasoning_tokens = 0
        self.cost = Decimal(0)
        self.costed = 0
        self.saved_cost = Decimal(0)
        self.tps_count = 0
        self.tps_sum = 0.0
        self.cache_hits = 0
        self.cache_misses = 0
        self.retries = 0
        self.attempts = 0
        self.attempt_ok = 0
        self.attempt_errors: dict[str, int] = {}
        self.ring = _Ring(window)
        self.last_error: tuple[str, float, int | None] | None = None


def _count_type(table: dict[str, int], name: str | None) -> str:
    key = _clean_type(name)
    if key not in table and len(table) >= _MAX_ERROR_TYPES:
        key = OTHER
    table[key] = table.get(key, 0) + 1
    return key


def _clean_type(name: str | None) -> str:
    if not name:
        return "unknown"
    if len(name) > _MAX_NAME or not name.isidentifier():
        return _clean_name(name)
    return name


def _clean_name(name: object) -> str:
    """A bounded, secret-free label value (escaping happens in the exposition)."""
    text = name if isinstance(name, str) else str(name)
    text = redact(text[:_MAX_NAME])
    return text or "unknown"


# --- the sink ----------------------------------------------------------------------------


class InMemoryMetrics:
    """Thread-safe aggregation of :class:`RequestEvent` per ``(provider, model)``, in
    constant memory; read with :meth:`snapshot` or :meth:`prometheus_text`.

    ``window`` is the number of recent requests availability is computed over;
    ``max_keys`` and ``max_providers`` cap the label cardinality (overflow is aggregated
    under ``"__other__"``); ``clock`` gives the time of an error whose event has no
    ``timestamp``.
    """

    def __init__(
        self,
        *,
        window: int = 100,
        max_keys: int = 1000,
        max_providers: int = 100,
        clock: Callable[[], float] = time.time,
    ) -> None:
        for name, value in (
            ("window", window),
            ("max_keys", max_keys),
            ("max_providers", max_providers),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}={value!r}: expected an integer >= 1")
        self.window = window
        self.max_keys = max_keys
        self.max_providers = max_providers
        self.clock = clock
        self._lock = threading.Lock()
        self._init_state()

    def _init_state(self) -> None:
        # (raw provider, raw model) -> stats; labels -> stats; raw provider -> label
        self._by_raw: dict[tuple[str, str], _Stats] = {}
        self._by_label: dict[tuple[str, str], _Stats] = {}
        self._provider_labels: dict[str, str] = {}
        self._provider_rings: dict[str, _Ring] = {}
        self._ring = _Ring(self.window)
        self._overflow_events = 0

    # --- recording -----------------------------------------------------------------------

    def record(self, event: RequestEvent) -> None:
        """Aggregate one event (a few microseconds; never raises for odd values)."""
        with self._lock:
            stats = self._by_raw.get((event.provider, event.model))
            if stats is None:
                stats = self._admit(event.provider, event.model)
            ok = event.outcome == "ok"
            if event.kind == "attempt":
                stats.attempts += 1
                if ok:
                    stats.attempt_ok += 1
                else:
                    _count_type(stats.attempt_errors, event.error_type)
                return
            stats.requests += 1
            if ok:
                stats.ok += 1
            else:
                stats.errors += 1
                error_type = _count_type(stats.error_types, event.error_type)
                stats.last_error = (
                    error_type,
                    event.timestamp or self.clock(),
                    event.status_code,
                )
            attempts = event.attempts
            if attempts > 1:
                stats.retries += attempts - 1
            if event.cached:
                stats.cache_hits += 1
                saved = event.saved_cost
                if saved is not None and saved > 0:
                    stats.saved_cost += saved
                return
            cost = event.cost
            if cost is not None:
                stats.costed += 1
                if cost > 0:
                    stats.cost += cost
            stats.cache_misses += 1
            stats.latency.add(event.latency)
            ttft = event.time_to_first_token
            if ttft is not None:
                stats.ttft.add(ttft)
            tps = event.tokens_per_second
            if tps is not None and tps >= 0.0 and tps < math.inf:
                stats.tps_count += 1
                stats.tps_sum += tps
            tokens = event.prompt_tokens
            if tokens is not None and tokens > 0:
                stats.prompt_tokens += tokens
            tokens = event.completion_tokens
            if tokens is not None and tokens > 0:
                stats.completion_tokens += tokens
            tokens = event.cached_tokens
            if tokens is not None and tokens > 0:
                stats.cached_tokens += tokens
            tokens = event.cache_creation_tokens
            if tokens is not None and tokens > 0:
                stats.cache_creation_tokens += tokens
            tokens = event.reasoning_tokens
            if tokens is not None and tokens > 0:
                stats.reasoning_tokens += tokens
            stats.ring.add(ok)
            self._provider_rings[stats.provider].add(ok)
            self._ring.add(ok)

    def _admit(self, provider: str, model: str) -> _Stats:
        """The stats of a new raw ``(provider, model)`` (under the lock): its own while
        under the caps, else the provider's (or everyone's) ``"__other__"``."""
        provider_label = self._provider_labels.get(provider)
        if provider_label is None:
            if len(self._provider_rings) < self.max_providers:
                provider_label = _clean_name(provider)
                if len(self._provider_labels) < 2 * self.max_providers:
                    self._provider_labels[provider] = provider_label
            else:
                provider_label = OTHER
        if provider_label == OTHER:
            model_label = OTHER
        elif len(self._by_label) < self.max_keys:
            model_label = _clean_name(model)
        else:
            model_label = OTHER
        label = (provider_label, model_label)
        stats = self._by_label.get(label)
        if stats is None:
            stats = _Stats(provider_label, model_label, self.window)
            self._by_label[label] = stats
            if provider_label not in self._provider_rings:
                self._provider_rings[provider_label] = _Ring(self.window)
        if model_label == OTHER:
            self._overflow_events += 1  # not remembered: the raw names are unbounded
        elif len(self._by_raw) < 2 * self.max_keys:
            self._by_raw[(provider, model)] = stats
        return stats

    def reset(self) -> None:
        """Forget everything recorded."""
        with self._lock:
            self._init_state()

    # --- reading -------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Every aggregate, JSON-ready (see docs/metrics.md for the shape)."""
        with self._lock:
            per_provider: dict[str, list[_Stats]] = {}
            for stats in self._by_label.values():
                per_provider.setdefault(stats.provider, []).append(stats)
            providers: dict[str, Any] = {}
            for provider in sorted(per_provider):
                group = sorted(per_provider[provider], key=lambda s: s.model)
                entry = _summarize(group, self._provider_rings[provider])
                entry["models"] = {s.model: _summarize([s], s.ring) for s in group}
                providers[provider] = entry
            totals = _summarize(list(self._by_label.values()), self._ring)
            return {
                "window": self.window,
                "max_keys": self.max_keys,
                "max_providers": self.max_providers,
                "keys": len(self._by_label),
                "overflow_events": self._overflow_events,
                "totals": totals,
                "providers": providers,
            }

    def prometheus_text(self) -> str:
        """The aggregates in the Prometheus text exposition format 0.0.4."""
        return render_prometheus(self.snapshot())

    def sizes(self) -> dict[str, int]:
        """How big the internal tables are (to check that memory stays bounded)."""
        with self._lock:
            keys = list(self._by_label.values())
            return {
                "keys": len(self._by_label),
                "raw_aliases": len(self._by_raw),
                "providers": len(self._provider_rings),
                "provider_aliases": len(self._provider_labels),
                "latency_buckets": max((len(s.latency.buckets) for s in keys), default=0),
                "ttft_buckets": max((len(s.ttft.buckets) for s in keys), default=0),
                "error_types": max((len(s.error_types) for s in keys), default=0),
                "ring_bytes": max((len(s.ring.flags) for s in keys), default=0),
            }

    def __repr__(self) -> str:
        return f"<InMemoryMetrics keys={len(self._by_label)} window={self.window}>"


def _summarize(group: list[_Stats], ring: _Ring) -> dict[str, Any]:
    """One stats dict for one or more ``(provider, model)`` aggregates."""
    latency = _Histogram()
    ttft = _Histogram()
    errors_by_type: dict[str, int] = {}
    attempt_errors: dict[str, int] = {}
    last: tuple[str, float, int | None] | None = None
    sums = dict.fromkeys(
        (
            "requests",
            "ok",
            "errors",
            "prompt_tokens",
            "completion_tokens",
            "cached_tokens",
            "cache_creation_tokens",
            "reasoning_tokens",
            "cache_hits",
            "cache_misses",
            "retries",
            "attempts",
            "attempt_ok",
            "tps_count",
        ),
        0,
    )
    tps_sum = 0.0
    cost = saved = Decimal(0)
    costed = 0
    for stats in group:
        for name in sums:
            sums[name] += getattr(stats, name)
        tps_sum += stats.tps_sum
        cost += stats.cost
        saved += stats.saved_cost
        costed += stats.costed
        latency.merge(stats.latency)
        ttft.merge(stats.ttft)
        _add_counts(errors_by_type, stats.error_types.items())
        _add_counts(attempt_errors, stats.attempt_errors.items())
        if stats.last_error is not None and (last is None or stats.last_error[1] > last[1]):
            last = stats.last_error
    requests = sums["requests"]
    hits, misses = sums["cache_hits"], sums["cache_misses"]
    return {
        "requests": requests,
        "ok": sums["ok"],
        "errors": sums["errors"],
        "error_rate": sums["errors"] / requests if requests else 0.0,
        "errors_by_type": dict(sorted(errors_by_type.items())),
        "retries": sums["retries"],
        "latency_seconds": latency.summary(),
        "time_to_first_token_seconds": ttft.summary(),
        "tokens": {
            "prompt": sums["prompt_tokens"],
            "completion": sums["completion_tokens"],
            "total": sums["prompt_tokens"] + sums["completion_tokens"],
            "cached": sums["cached_tokens"],
            "cache_creation": sums["cache_creation_tokens"],
            "reasoning": sums["reasoning_tokens"],
        },
        "cost_usd": {
            "total": float(cost),
            "priced_requests": costed,
            "unpriced_requests": sums["cache_misses"] - costed,
            "saved_by_cache": float(saved),
        },
        "tokens_per_second": {
            "count": sums["tps_count"],
            "mean": tps_sum / sums["tps_count"] if sums["tps_count"] else None,
        },
        "cache": {
            "hits": hits,
            "misses": misses,
            "hit_rate": hits / (hits + misses) if hits + misses else 0.0,
        },
        "availability": ring.summary(),
        "attempts": {
            "count": sums["attempts"],
            "ok": sums["attempt_ok"],
            "errors": sums["attempts"] - sums["attempt_ok"],
            "errors_by_type": dict(sorted(attempt_errors.items())),
        },
        "last_error": None
        if last is None
        else {"type": last[0], "timestamp": last[1], "status_code": last[2]},
    }


def _add_counts(into: dict[str, int], items: Iterable[tuple[str, int]]) -> None:
    for key, n in items:
        into[key] = into.get(key, 0) + n


# --- Prometheus exposition -----------------------------------------------------------------


def escape_label_value(value: str) -> str:
    """A label value escaped for the text format: backslash, double quote and newline."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def format_value(value: float) -> str:
    """A sample value: integers exactly, floats by ``repr``, ``+Inf``/``-Inf``/``NaN``."""
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def _labels(pairs: Mapping[str, str]) -> str:
    return ",".join(f'{k}="{escape_label_value(v)}"' for k, v in pairs.items())


class _Exposition:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(self, name: str, kind: str, help_text: str) -> None:
        self.lines.append(f"# HELP {name} {help_text}")
        self.lines.append(f"# TYPE {name} {kind}")

    def sample(self, name: str, labels: Mapping[str, str], value: float) -> None:
        self.lines.append(f"{name}{{{_labels(labels)}}} {format_value(value)}")


def render_prometheus(snapshot: Mapping[str, Any]) -> str:
    """Render a :meth:`InMemoryMetrics.snapshot` as Prometheus text format 0.0.4."""
    models: list[tuple[dict[str, str], Mapping[str, Any]]] = [
        ({"provider": provider, "model": model}, stats)
        for provider, entry in snapshot["providers"].items()
        for model, stats in entry["models"].items()
    ]
    out = _Exposition()

    out.family("chatcore_requests_total", "counter", "Requests finished, by outcome.")
    for labels, s in models:
        for outcome in ("ok", "error"):
            value = s["ok"] if outcome == "ok" else s["errors"]
            out.sample("chatcore_requests_total", {**labels, "outcome": outcome}, value)

    out.family("chatcore_errors_total", "counter", "Failed requests, by error type.")
    for labels, s in models:
        for error_type, n in s["errors_by_type"].items():
            out.sample("chatcore_errors_total", {**labels, "error_type": error_type}, n)

    out.family("chatcore_retries_total", "counter", "Attempts beyond the first, over all requests.")
    for labels, s in models:
        out.sample("chatcore_retries_total", labels, s["retries"])

    out.family("chatcore_attempts_total", "counter", "Attempts reported as attempt events.")
    for labels, s in models:
        a = s["attempts"]
        for outcome, value in (("ok", a["ok"]), ("error", a["errors"])):
            out.sample("chatcore_attempts_total", {**labels, "outcome": outcome}, value)

    out.family("chatcore_cache_hits_total", "counter", "Requests answered from the cache.")
    for labels, s in models:
        out.sample("chatcore_cache_hits_total", labels, s["cache"]["hits"])
    out.family("chatcore_cache_misses_total", "counter", "Requests sent to the provider.")
    for labels, s in models:
        out.sample("chatcore_cache_misses_total", labels, s["cache"]["misses"])

    out.family("chatcore_tokens_total", "counter", "Tokens the provider reported, by kind.")
    for labels, s in models:
        for kind in ("prompt", "completion"):
            out.sample("chatcore_tokens_total", {**labels, "kind": kind}, s["tokens"][kind])

    out.family("chatcore_token_details_total", "counter", TOKEN_DETAILS_HELP)
    for labels, s in models:
        for kind in TOKEN_DETAIL_KINDS:
            out.sample("chatcore_token_details_total", {**labels, "kind": kind}, s["tokens"][kind])

    out.family("chatcore_cost_usd_total", "counter", COST_HELP)
    for labels, s in models:
        out.sample("chatcore_cost_usd_total", labels, s["cost_usd"]["total"])
    out.family("chatcore_cache_saved_usd_total", "counter", SAVED_HELP)
    for labels, s in models:
        out.sample("chatcore_cache_saved_usd_total", labels, s["cost_usd"]["saved_by_cache"])

    for name, field, help_text in (
        (
            "chatcore_request_latency_seconds",
            "latency_seconds",
            "Request latency (all attempts), cache hits excluded; quantiles within 1%.",
        ),
        (
            "chatcore_time_to_first_token_seconds",
            "time_to_first_token_seconds",
            "Time to the first streamed token; quantiles within 1%.",
        ),
    ):
        out.family(name, "summary", help_text)
        for labels, s in models:
            summary = s[field]
            if not summary["count"]:
                continue
            for quantile, key in (("0.5", "p50"), ("0.95", "p95"), ("0.99", "p99")):
                out.sample(name, {**labels, "quantile": quantile}, summary[key])
            out.sample(f"{name}_sum", labels, summary["sum"])
            out.sample(f"{name}_count", labels, summary["count"])

    out.family(
        "chatcore_availability_ratio",
        "gauge",
        f"Success ratio of the last {snapshot['window']} requests sent to the provider.",
    )
    for labels, s in models:
        ratio = s["availability"]["ratio"]
        if ratio is not None:
            out.sample("chatcore_availability_ratio", labels, ratio)
    out.family(
        "chatcore_provider_availability_ratio",
        "gauge",
        f"Success ratio of the last {snapshot['window']} requests sent to each provider.",
    )
    for provider, entry in snapshot["providers"].items():
        ratio = entry["availability"]["ratio"]
        if ratio is not None:
            out.sample("chatcore_provider_availability_ratio", {"provider": provider}, ratio)

    out.family(
        "chatcore_last_error_timestamp_seconds", "gauge", "Unix time of the last failed request."
    )
    for labels, s in models:
        last = s["last_error"]
        if last is not None:
            out.sample("chatcore_last_error_timestamp_seconds", labels, last["timestamp"])

    return "\n".join(out.lines) + "\n"
