"""The Prometheus sink: chatcore :class:`~chatcore.RequestEvent` records turned into
``prometheus_client`` counters and histograms, with bounded label cardinality.

One set of metric objects exists per ``(registry, namespace)``: a second
:class:`PrometheusSink` on the same registry and namespace shares the first one's metrics and
cardinality bookkeeping (``prometheus_client`` refuses to register a metric name twice).
"""

from __future__ import annotations

import math
import threading
import weakref
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram

import chatcore.exceptions
from chatcore._metrics import COST_HELP, SAVED_HELP, TOKEN_DETAIL_KINDS, TOKEN_DETAILS_HELP
from chatcore._redact import redact

__all__ = [
    "DEFAULT_BUCKETS",
    "DEFAULT_TTFT_BUCKETS",
    "ERROR_TYPES",
    "OTHER",
    "UNKNOWN",
    "PrometheusSink",
]

OTHER = "__other__"
"""The label value of everything past a cardinality cap (and of foreign error types)."""

UNKNOWN = "unknown"
"""The label value of an empty name, or of a failed request without an error type."""

DEFAULT_BUCKETS: tuple[float, ...] = (
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    20.0,
    30.0,
    60.0,
    120.0,
    300.0,
)
"""Request latency buckets in seconds (chat completions take from ~100 ms to minutes)."""

DEFAULT_TTFT_BUCKETS: tuple[float, ...] = (
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.0,
    5.0,
    10.0,
    30.0,
)
"""Time-to-first-token buckets in seconds."""


def _chatcore_error_names() -> frozenset[str]:
    """The class names of :class:`chatcore.ChatcoreError` and all its subclasses loaded so
    far (chatcore's own, and those of plugins that subclass it)."""
    names: set[str] = set()
    todo: list[type[BaseException]] = [chatcore.exceptions.ChatcoreError]
    while todo:
        cls = todo.pop()
        if cls.__name__ not in names:
            names.add(cls.__name__)
            todo.extend(cls.__subclasses__())
    return frozenset(names)


ERROR_TYPES: frozenset[str] = _chatcore_error_names()
"""chatcore's exception class names when the plugin was imported (``ChatcoreError`` and its
subclasses). They, and subclasses defined later, are the ``error_type`` label values kept
as they are; any other exception name is reported as ``"__other__"``."""

_MAX_NAME = 200  # longest provider / model label kept (characters)
_MAX_ALIASES = 4096  # raw (provider, model) -> labels decisions remembered


def _clean(name: object) -> str:
    """A bounded, secret-free label value (``prometheus_client`` escapes it)."""
    text = name if isinstance(name, str) else str(name)
    text = redact(text[:_MAX_NAME]).strip()
    return text or UNKNOWN


_known_errors = ERROR_TYPES
_MAX_ERROR_TYPES = 200  # bounds the label set even if classes are created at runtime


def _error_label(error_type: object) -> str:
    """``error_type`` when it names a chatcore exception class, else ``"__other__"``."""
    global _known_errors
    if not error_type:
        return UNKNOWN
    if not isinstance(error_type, str):
        return OTHER
    if error_type in _known_errors:
        return error_type
    # a subclass defined after import (a plugin's)? look again, within a fixed bound
    if len(_known_errors) < _MAX_ERROR_TYPES:
        found = _chatcore_error_names()
        if len(found) <= _MAX_ERROR_TYPES:
            _known_errors = found
            if error_type in found:
                return error_type
    return OTHER


def _check_buckets(name: str, buckets: Sequence[float]) -> tuple[float, ...]:
    values = tuple(float(b) for b in buckets)
    if not values or any(not math.isfinite(b) for b in values):
        raise ValueError(f"{name}={buckets!r}: expected finite upper bounds (+Inf is implied)")
    if list(values) != sorted(set(values)):
        raise ValueError(f"{name}={buckets!r}: expected strictly increasing upper bounds")
    return values


def _check_cap(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}={value!r}: expected an integer >= 1")
    return value


class _Metrics:
    """The metric objects of one ``(registry, namespace)`` and its label bookkeeping."""

    def __init__(
        self,
        registry: CollectorRegistry,
        namespace: str,
        buckets: tuple[float, ...],
        ttft_buckets: tuple[float, ...],
        max_models: int,
        max_providers: int,
    ) -> None:
        self.config = (buckets, ttft_buckets, max_models, max_providers)
        self.max_models = max_models
        self.max_providers = max_providers
        self.lock = threading.Lock()
        # provider label -> admitted model labels; raw (provider, model) -> labels
        self.models: dict[str, set[str]] = {}
        self.aliases: dict[tuple[str, str], tuple[str, str]] = {}
        pm = ("provider", "model")
        kw: dict[str, Any] = {"namespace": namespace, "registry": registry}
        self.requests = Counter(
            "requests_total", "Requests finished, by outcome (ok|error).", [*pm, "outcome"], **kw
        )
        self.errors = Counter(
            "errors_total",
            "Failed requests, by chatcore exception class name.",
            [*pm, "error_type"],
            **kw,
        )
        self.latency = Histogram(
            "request_latency_seconds",
            "Request latency over all attempts and retry waits; cache hits excluded.",
            list(pm),
            buckets=buckets,
            **kw,
        )
        self.ttft = Histogram(
            "time_to_first_token_seconds",
            "Time from the call to the first streamed chunk (streams only).",
            list(pm),
            buckets=ttft_buckets,
            **kw,
        )
        self.tokens = Counter(
            "tokens_total",
            "Tokens the provider reported, by kind (prompt|completion); cache hits excluded.",
            [*pm, "kind"],
            **kw,
        )
        # a family of its own: its kinds are parts of the prompt and completion tokens
        self.token_details = Counter(
            "token_details_total",
            TOKEN_DETAILS_HELP + " Cache hits excluded.",
            [*pm, "kind"],
            **kw,
        )
        self.cost = Counter("cost_usd_total", COST_HELP, list(pm), **kw)
        self.saved = Counter("cache_saved_usd_total", SAVED_HELP, list(pm), **kw)
        self.retries = Counter(
            "retries_total", "Attempts beyond the first, over all requests.", list(pm), **kw
        )
        self.attempts = Counter(
            "attempts_total", "Attempts sent to the provider, by outcome.", [*pm, "outcome"], **kw
        )
        self.cache_hits = Counter(
            "cache_hits_total", "Requests answered from the response cache.", list(pm), **kw
        )
        self.cache_misses = Counter(
            "cache_misses_total",
            "Requests sent to the provider (not from the cache).",
            list(pm),
            **kw,
        )

    def labels_for(self, provider: str, model: str) -> tuple[str, str]:
        """The ``(provider, model)`` label values of a raw pair, admitting it while under
        the caps (and creating its zero-valued series), else ``"__other__"``."""
        key = (provider, model)
        found = self.aliases.get(key)
        if found is not None:
            return found
        with self.lock:
            found = self.aliases.get(key)
            if found is not None:
                return found
            provider_label = _clean(provider)
            models = self.models.get(provider_label)
            if models is None:
                if len(self.models) < self.max_providers:
                    models = self.models[provider_label] = set()
                else:
                    provider_label = OTHER
                    models = self.models.setdefault(OTHER, set())
            if provider_label == OTHER:
                model_label = OTHER
            else:
                model_label = _clean(model)
                if model_label not in models and len(models) >= self.max_models:
                    model_label = OTHER
            if model_label not in models:
                models.add(model_label)
                self._initialize(provider_label, model_label)
            labels = (provider_label, model_label)
            if len(self.aliases) < _MAX_ALIASES:
                self.aliases[key] = labels
            return labels

    def _initialize(self, provider: str, model: str) -> None:
        """Create the series of a new label pair at zero, so that ``rate()`` and ratios
        work from the first scrape on."""
        for outcome in ("ok", "error"):
            self.requests.labels(provider, model, outcome)
            self.attempts.labels(provider, model, outcome)
        for kind in ("prompt", "completion"):
            self.tokens.labels(provider, model, kind)
        for kind in TOKEN_DETAIL_KINDS:
            self.token_details.labels(provider, model, kind)
        self.retries.labels(provider, model)
        self.cost.labels(provider, model)
        self.saved.labels(provider, model)
        self.cache_hits.labels(provider, model)
        self.cache_misses.labels(provider, model)

    def record(self, event: Any) -> None:
        provider, model = self.labels_for(str(event.provider), str(event.model))
        ok = event.outcome == "ok"
        outcome = "ok" if ok else "error"
        if event.kind == "attempt":
            self.attempts.labels(provider, model, outcome).inc()
            return
        self.requests.labels(provider, model, outcome).inc()
        if not ok:
            self.errors.labels(provider, model, _error_label(event.error_type)).inc()
        attempts = event.attempts
        if isinstance(attempts, int) and attempts > 1:
            self.retries.labels(provider, model).inc(attempts - 1)
        if event.cached:
            self.cache_hits.labels(provider, model).inc()
            saved = _usd(getattr(event, "saved_cost", None))
            if saved:
                self.saved.labels(provider, model).inc(saved)
            return
        self.cache_misses.labels(provider, model).inc()
        cost = _usd(getattr(event, "cost", None))
        if cost:
            self.cost.labels(provider, model).inc(cost)
        latency = _seconds(event.latency)
        if latency is not None:
            self.latency.labels(provider, model).observe(latency)
        ttft = _seconds(event.time_to_first_token)
        if ttft is not None:
            self.ttft.labels(provider, model).observe(ttft)
        for kind, tokens in (
            ("prompt", event.prompt_tokens),
            ("completion", event.completion_tokens),
        ):
            if isinstance(tokens, int) and tokens > 0:
                self.tokens.labels(provider, model, kind).inc(tokens)
        for kind, tokens in (
            ("cached", getattr(event, "cached_tokens", None)),
            ("cache_creation", getattr(event, "cache_creation_tokens", None)),
            ("reasoning", getattr(event, "reasoning_tokens", None)),
        ):
            if isinstance(tokens, int) and not isinstance(tokens, bool) and tokens > 0:
                self.token_details.labels(provider, model, kind).inc(tokens)


def _usd(value: object) -> float | None:
    """A cost fit for a counter: a finite amount > 0 (a ``Decimal`` from chatcore), else
    ``None``."""
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
        return None
    amount = float(value)
    return amount if math.isfinite(amount) and amount > 0 else None


def _seconds(value: object) -> float | None:
    """A duration fit for a histogram: ``None`` for missing or non-finite values,
    negatives as 0."""
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if not math.isfinite(value):
        return None
    return max(0.0, float(value))


_SHARED: weakref.WeakKeyDictionary[CollectorRegistry, dict[str, _Metrics]] = (
    weakref.WeakKeyDictionary()
)
_SHARED_LOCK = threading.Lock()


def _metrics_for(
    registry: CollectorRegistry,
    namespace: str,
    buckets: tuple[float, ...],
    ttft_buckets: tuple[float, ...],
    max_models: int,
    max_providers: int,
) -> _Metrics:
    with _SHARED_LOCK:
        per_namespace = _SHARED.setdefault(registry, {})
        metrics = per_namespace.get(namespace)
        config = (buckets, ttft_buckets, max_models, max_providers)
        if metrics is None:
            metrics = _Metrics(registry, namespace, *config)
            per_namespace[namespace] = metrics
        elif metrics.config != config:
            raise ValueError(
                f"a PrometheusSink with namespace {namespace!r} already uses this registry with "
                f"other buckets or caps {metrics.config!r}; use the same settings, another "
                "namespace or another registry"
            )
        return metrics


class PrometheusSink:
    """A chatcore metrics sink exporting Prometheus counters and histograms.

    ``registry`` defaults to ``prometheus_client.REGISTRY``; ``namespace`` prefixes every
    metric name (``chatcore_requests_total``); ``buckets`` and ``ttft_buckets`` are the
    upper bounds of the latency and time-to-first-token histograms. At most
    ``max_providers`` provider labels and ``max_models`` model labels per provider are
    created; events past a cap are counted under ``"__other__"``.

    :meth:`record` is thread-safe and never raises: an unexpected failure is counted in
    :attr:`dropped_events` and the event is skipped.
    """

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        namespace: str = "chatcore",
        buckets: Sequence[float] = DEFAULT_BUCKETS,
        *,
        ttft_buckets: Sequence[float] = DEFAULT_TTFT_BUCKETS,
        max_models: int = 100,
        max_providers: int = 50,
    ) -> None:
        self.registry: CollectorRegistry = REGISTRY if registry is None else registry
        self.namespace = namespace
        self.max_models = _check_cap("max_models", max_models)
        self.max_providers = _check_cap("max_providers", max_providers)
        self.buckets = _check_buckets("buckets", buckets)
        self.ttft_buckets = _check_buckets("ttft_buckets", ttft_buckets)
        self._metrics = _metrics_for(
            self.registry,
            namespace,
            self.buckets,
            self.ttft_buckets,
            self.max_models,
            self.max_providers,
        )
        #: Events skipped because recording them failed unexpectedly.
        self.dropped_events = 0

    def record(self, event: Any) -> None:
        """Count one :class:`~chatcore.RequestEvent` (``kind="request"`` or ``"attempt"``)."""
        try:
            self._metrics.record(event)
        except Exception:
            self.dropped_events += 1

    def prometheus_text(self) -> str:
        """This sink's registry in the Prometheus text format (what ``/metrics`` serves);
        in multiprocess mode, the default registry's values summed over all processes."""
        from chatcore_prometheus._exposition import metrics_text

        return metrics_text(None if self.registry is REGISTRY else self.registry)

    def label_sets(self) -> dict[str, list[str]]:
        """The admitted model labels per provider label (to inspect the cardinality)."""
        with self._metrics.lock:
            return {p: sorted(m) for p, m in sorted(self._metrics.models.items())}

    def __repr__(self) -> str:
        return (
            f"<PrometheusSink namespace={self.namespace!r} max_providers={self.max_providers} "
            f"max_models={self.max_models}>"
        )
