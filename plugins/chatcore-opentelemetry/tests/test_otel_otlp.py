"""End to end over the wire: the real OTLP/HTTP exporters send a call's span and metrics to
a small receiver on 127.0.0.1, which decodes the protobuf it receives."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span as ProtoSpan
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from chatcore_opentelemetry import OpenTelemetryTracer

from .conftest import OPENAI_KEY


class Receiver(http.server.ThreadingHTTPServer):
    """An OTLP/HTTP receiver: keeps every request's path, content type and body."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.received: list[tuple[str, str, bytes]] = []
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def bodies(self, path: str) -> list[bytes]:
        with self.lock:
            return [body for p, _, body in self.received if p == path]


class _Handler(http.server.BaseHTTPRequestHandler):
    server: Receiver

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        with self.server.lock:
            self.server.received.append((self.path, self.headers["Content-Type"], body))
        answer = (
            ExportTraceServiceResponse()
            if self.path == "/v1/traces"
            else ExportMetricsServiceResponse()
        ).SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def _session() -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # straight to loopback, whatever the environment's proxies
    return session


def attributes(items: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kv in items:
        kind = kv.value.WhichOneof("value")
        value = getattr(kv.value, kind)
        if kind == "array_value":
            value = tuple(getattr(v, v.WhichOneof("value")) for v in value.values)
        out[kv.key] = value
    return out


def test_a_call_exported_over_otlp_http(receiver, make_client, openai_target):
    resource = Resource.create({"service.name": "otlp-test"})
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(
        SimpleSpanProcessor(
            OTLPSpanExporter(endpoint=f"{receiver.url}/v1/traces", session=_session())
        )
    )
    reader = PeriodicExportingMetricReader(
        OTLPMetricExporter(endpoint=f"{receiver.url}/v1/metrics", session=_session()),
        export_interval_millis=3_600_000,
    )
    meter_provider = MeterProvider(resource=resource, metric_readers=[reader])
    try:
        tracer = OpenTelemetryTracer(tracer_provider, meter_provider, environ={})
        response = make_client(openai_target, tracer).chat(openai_target.model, "Hello")
        assert meter_provider.force_flush()
    finally:
        tracer_provider.shutdown()
        meter_provider.shutdown()

    assert {ct for _, ct, _ in receiver.received} == {"application/x-protobuf"}
    (traces,) = receiver.bodies("/v1/traces")
    request = ExportTraceServiceRequest.FromString(traces)
    (resource_spans,) = request.resource_spans
    assert attributes(resource_spans.resource.attributes)["service.name"] == "otlp-test"
    (scope,) = resource_spans.scope_spans
    assert scope.scope.name == "chatcore_opentelemetry"
    assert scope.schema_url == "https://opentelemetry.io/schemas/1.41.0"
    (span,) = scope.spans
    assert span.name == "chat gpt-4o-mini"
    assert span.kind == ProtoSpan.SPAN_KIND_CLIENT
    found = attributes(span.attributes)
    assert found["gen_ai.operation.name"] == "chat"
    assert found["gen_ai.provider.name"] == "openai"
    assert found["gen_ai.request.model"] == "gpt-4o-mini"
    assert found["gen_ai.response.id"] == response.id
    assert found["gen_ai.response.finish_reasons"] == ("stop",)
    assert response.usage is not None
    assert found["gen_ai.usage.input_tokens"] == response.usage.prompt_tokens
    assert found["server.port"] == openai_target.server.port
    assert [e.name for e in span.events] == ["chatcore.attempt"]
    assert OPENAI_KEY.encode() not in traces

    names: dict[str, Any] = {}
    for body in receiver.bodies("/v1/metrics"):
        for rm in ExportMetricsServiceRequest.FromString(body).resource_metrics:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    names[metric.name] = metric
    duration = names["gen_ai.client.operation.duration"]
    assert duration.unit == "s"
    (point,) = duration.histogram.data_points
    assert point.count == 1
    assert list(point.explicit_bounds)[:3] == [0.01, 0.02, 0.04]
    usage = names["gen_ai.client.token.usage"]
    kinds = {
        attributes(p.attributes)["gen_ai.token.type"]: p.sum for p in usage.histogram.data_points
    }
    assert kinds == {
        "input": response.usage.prompt_tokens,
        "output": response.usage.completion_tokens,
    }
