"""chatcore metrics plugin for Prometheus: counters and histograms of every chat request
(outcome, error type, latency, time to first token, tokens, retries, attempts, cache), with
bounded label cardinality, a ``/metrics`` endpoint and multiprocess support.

Installed, it does nothing until enabled: ``CHATCORE_PROMETHEUS=1`` (or a ``prometheus``
setting) makes its ``chatcore_metrics_sinks`` hook add one process-wide
:class:`PrometheusSink` on ``prometheus_client.REGISTRY`` to every client. In code, pass a
sink yourself::

    from prometheus_client import CollectorRegistry
    from chatcore_prometheus import PrometheusSink, serve_metrics

    registry = CollectorRegistry()
    client = chatcore.Client(metrics_sinks=[PrometheusSink(registry=registry)])
    serve_metrics(9464, registry=registry)  # http://127.0.0.1:9464/metrics
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from typing import Any

from chatcore import hookimpl
from chatcore_prometheus._exposition import (
    CONTENT_TYPE,
    MetricsServer,
    metrics_text,
    multiprocess_dir,
    scrape_registry,
    serve_metrics,
)
from chatcore_prometheus._sink import (
    DEFAULT_BUCKETS,
    DEFAULT_TTFT_BUCKETS,
    ERROR_TYPES,
    OTHER,
    PrometheusSink,
)

__version__ = "0.1.0"

__all__ = [
    "CONTENT_TYPE",
    "DEFAULT_BUCKETS",
    "DEFAULT_TTFT_BUCKETS",
    "ENV_VAR",
    "ERROR_TYPES",
    "OTHER",
    "MetricsServer",
    "PrometheusSink",
    "__version__",
    "chatcore_metrics_sinks",
    "default_sink",
    "enabled",
    "metrics_text",
    "multiprocess_dir",
    "scrape_registry",
    "serve_metrics",
]

ENV_VAR = "CHATCORE_PROMETHEUS"
"""The environment variable that enables the hook (``1``/``true``/``yes``/``on``)."""

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})

_default: PrometheusSink | None = None
_default_lock = threading.Lock()


def _flag(value: object) -> bool | None:
    """``True``/``False`` for a boolean-like value, ``None`` when it says nothing."""
    if value is None:
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value != 0
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    return None


def enabled(settings: Any = None, environ: Mapping[str, str] | None = None) -> bool:
    """Whether the hook adds the sink: a ``prometheus`` setting (an attribute of the
    client's settings, or a key when ``settings`` is a mapping) decides when present;
    otherwise ``CHATCORE_PROMETHEUS`` in ``environ`` (default ``os.environ``)."""
    if isinstance(settings, Mapping):
        value = settings.get("prometheus")
    else:
        value = getattr(settings, "prometheus", None)
    decided = _flag(value)
    if decided is not None:
        return decided
    env = os.environ if environ is None else environ
    return _flag(env.get(ENV_VAR)) is True


def default_sink() -> PrometheusSink:
    """The process-wide sink the hook hands out (on ``prometheus_client.REGISTRY``,
    namespace ``chatcore``), created on first use."""
    global _default
    with _default_lock:
        if _default is None:
            _default = PrometheusSink()
        return _default


@hookimpl
def chatcore_metrics_sinks(settings: Any) -> list[PrometheusSink]:
    """The process-wide :class:`PrometheusSink` when enabled (see :func:`enabled`), else
    nothing: being installed is not enough."""
    return [default_sink()] if enabled(settings) else []
