"""Fixtures of the chatcore-opentelemetry tests: the real OpenTelemetry SDK with its
in-memory span exporter and metric reader (fresh per test, never the global providers), a
stand-in server per bundled provider over real HTTP, and clients on them whose tracer is
an :class:`OpenTelemetryTracer` on the test's providers."""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable, Iterator
from typing import Any

import attrs
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import chatcore
from chatcore._plugins import PluginHost
from chatcore.testing.anthropic_server import anthropic_error
from chatcore.testing.server import Reply, StandInServer
from chatcore_opentelemetry import OpenTelemetryTracer

OPENAI_KEY = "sk-test-otelSECRET0123456789abcdefXYZ"
AZURE_KEY = "azure-test-otelSECRET0123456789abcdef"
HF_TOKEN = "hf-token-of-the-otel-tests-not-real"
ANTHROPIC_KEY = "sk-ant-test-otelSECRET0123456789abcdef"
SECRETS = (OPENAI_KEY, AZURE_KEY, HF_TOKEN, ANTHROPIC_KEY)

PROVIDERS = ("openai", "azure", "huggingface", "anthropic")


def plugin_host() -> PluginHost:
    """The bundled provider plugins through their real entry points (the opentelemetry
    plugin's own hook is tested on its own: here each test gives its tracer)."""
    wanted = {"openai", "huggingface", "anthropic"}
    eps = [ep for ep in importlib.metadata.entry_points(group="chatcore") if ep.name in wanted]
    assert {ep.name for ep in eps} == wanted, "install the bundled provider plugins"
    return PluginHost(entry_points=eps, environ={})


@attrs.frozen
class Point:
    """One histogram data point, with its metric's unit."""

    unit: str
    attributes: dict[str, Any]
    count: int
    sum: float
    explicit_bounds: Any


class Telemetry:
    """An SDK tracer provider and meter provider with in-memory exporters."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])

    def tracer(self, **kwargs: Any) -> OpenTelemetryTracer:
        kwargs.setdefault("environ", {})
        return OpenTelemetryTracer(self.tracer_provider, self.meter_provider, **kwargs)

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def chat_spans(self) -> list[ReadableSpan]:
        return [s for s in self.spans() if s.name.startswith("chat ")]

    def span(self) -> ReadableSpan:
        (span,) = self.chat_spans()
        return span

    def histograms(self) -> dict[str, list[Any]]:
        """Metric name -> its histogram data points."""
        out: dict[str, list[Any]] = {}
        data = self.reader.get_metrics_data()
        if data is None:
            return out
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    out.setdefault(metric.name, []).extend(
                        Point(metric.unit, dict(p.attributes), p.count, p.sum, p.explicit_bounds)
                        for p in metric.data.data_points
                    )
        return out

    def shutdown(self) -> None:
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    t = Telemetry()
    yield t
    t.shutdown()


@attrs.define
class Target:
    """One bundled provider on its stand-in: what a test needs to call it and to know
    what its span should say."""

    name: str
    model_id: str
    server: StandInServer
    options: dict[str, Any]
    semconv_name: str
    params: dict[str, Any]

    @property
    def model(self) -> str:
        return f"{self.name}:{self.model_id}"

    def error(self, status: int, message: str = "nope") -> Reply:
        """An error answer in this provider's shape."""
        if self.name == "anthropic":
            return anthropic_error(status, message)
        return Reply.error(status, message)


_SAMPLING = {"temperature": 0.5, "top_p": 0.9, "max_tokens": 50, "seed": 7}


def _target(name: str, server: StandInServer) -> Target:
    if name == "openai":
        options = {"api_key": OPENAI_KEY, "base_url": server.base_url}
        return Target(name, "gpt-4o-mini", server, options, "openai", dict(_SAMPLING))
    if name == "azure":
        options = {"api_key": AZURE_KEY, "endpoint": server.url}
        return Target(name, "gpt-4o-mini", server, options, "azure.ai.openai", dict(_SAMPLING))
    if name == "huggingface":
        options = {"api_key": HF_TOKEN, "base_url": server.base_url}
        model = "meta-llama/Llama-3.1-8B-Instruct"
        return Target(name, model, server, options, "huggingface", dict(_SAMPLING))
    options = {"api_key": ANTHROPIC_KEY, "base_url": server.base_url, "sampling_params": True}
    params = {"temperature": 0.5, "max_tokens": 50}
    return Target(name, "claude-haiku-4-5", server, options, "anthropic", params)


_FLAVORS = {"openai": "openai", "azure": "azure", "huggingface": "openai", "anthropic": "anthropic"}
_KEYS = {"openai": OPENAI_KEY, "azure": AZURE_KEY, "huggingface": HF_TOKEN}


@pytest.fixture(params=PROVIDERS)
def target(request: pytest.FixtureRequest) -> Iterator[Target]:
    name = request.param
    with StandInServer(flavor=_FLAVORS[name], api_key=_KEYS.get(name, ANTHROPIC_KEY)) as srv:
        yield _target(name, srv)


@pytest.fixture
def openai_target() -> Iterator[Target]:
    with StandInServer(flavor="openai", api_key=OPENAI_KEY) as srv:
        yield _target("openai", srv)


@pytest.fixture(scope="session")
def host() -> PluginHost:
    return plugin_host()


MakeClient = Callable[..., chatcore.Client]


def _no_sleep(_seconds: float) -> None:
    return None


@pytest.fixture
def make_client(host: PluginHost) -> Iterator[MakeClient]:
    """``make_client(target, tracer, **client_kwargs)``: a client for ``target`` whose
    retries never sleep; closed at teardown."""
    clients: list[chatcore.Client] = []

    def make(target: Target, tracer: Any, **kwargs: Any) -> chatcore.Client:
        kwargs.setdefault("retry", chatcore.RetryPolicy(sleep=_no_sleep))
        client = chatcore.Client(
            providers={target.name: target.options},
            environ={},
            plugin_host=host,
            tracers=[tracer],
            **kwargs,
        )
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def make_async_client(host: PluginHost) -> Callable[..., chatcore.AsyncClient]:
    """``make_async_client(target, tracer, **client_kwargs)`` (open it in the coroutine)."""

    def make(target: Target, tracer: Any, **kwargs: Any) -> chatcore.AsyncClient:
        kwargs.setdefault("retry", chatcore.RetryPolicy(sleep=_no_sleep))
        return chatcore.AsyncClient(
            providers={target.name: target.options},
            environ={},
            plugin_host=host,
            tracers=[tracer],
            **kwargs,
        )

    return make


def all_strings(span: ReadableSpan) -> list[str]:
    """Every string a span carries: name, status, attribute values, events."""
    out = [span.name, span.status.description or ""]

    def add(attributes: Any) -> None:
        for key, value in (attributes or {}).items():
            out.append(key)
            values = value if isinstance(value, (tuple, list)) else (value,)
            out.extend(str(v) for v in values)

    add(span.attributes)
    for event in span.events:
        out.append(event.name)
        add(event.attributes)
    return out
