"""What chatcore-opentelemetry adds to a call: ``Client.chat`` against the local benchmark
server without a tracer, with the plugin on the API alone (no SDK configured), and with
the OpenTelemetry SDK (a span processor and a metric reader whose exporters do nothing),
interleaved in one run; plus the tracer's own work per call without the network.

    python -m benchmarks.otel_overhead            # writes its section of docs/benchmarks.md
    python -m benchmarks.otel_overhead --no-doc   # prints it only

Needs ``chatcore-openai``, ``chatcore-opentelemetry`` and ``opentelemetry-sdk`` (its
``test`` extra). The target (issue 16): under 30 microseconds per call with the SDK.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make ``benchmarks`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import payloads
from benchmarks.contenders import Contender, _check
from benchmarks.measure import micro, sequential
from benchmarks.report import write_section
from benchmarks.server import BenchServer

START = "<!-- otel_overhead: start (benchmarks/otel_overhead.py writes this section) -->"
END = "<!-- otel_overhead: end -->"
TARGET_US = 30.0
MODEL = f"openai:{payloads.MODEL}"


def _host() -> Any:
    from chatcore._plugins import PluginHost

    eps = [ep for ep in importlib.metadata.entry_points(group="chatcore") if ep.name == "openai"]
    return PluginHost(entry_points=eps, environ={})


def sdk_tracer(capture: bool = False, exporter: Any = None) -> Any:
    """The plugin's tracer on an SDK tracer provider (a simple span processor exporting to
    an exporter that drops everything) and an SDK meter provider (a reader never read)."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

    from chatcore_opentelemetry import OpenTelemetryTracer

    class Drop(SpanExporter):
        def export(self, spans: Sequence[Any]) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter or Drop()))
    meters = MeterProvider(metric_readers=[InMemoryMetricReader()])
    return OpenTelemetryTracer(provider, meters, capture_content=capture, environ={})


def api_tracer() -> Any:
    """The plugin's tracer with no SDK: the API's no-op providers (it traces nothing)."""
    from opentelemetry.metrics import NoOpMeterProvider
    from opentelemetry.trace import NoOpTracerProvider

    from chatcore_opentelemetry import OpenTelemetryTracer

    return OpenTelemetryTracer(NoOpTracerProvider(), NoOpMeterProvider(), environ={})


class Traced(Contender):
    group = "chatcore"

    def __init__(self, name: str, base_url: str, tracers: list[Any]) -> None:
        import chatcore

        self.name = name
        self.client = chatcore.Client(
            providers={"openai": {"api_key": payloads.API_KEY, "base_url": base_url}},
            environ={},
            plugin_host=_host(),
            tracers=tracers,
        )
        assert self.client.tracers == tuple(tracers)

    def chat(self) -> None:
        _check(self.client.chat(MODEL, "Hello").text)

    def close(self) -> None:
        self.client.close()


def tracer_work(tracer: Any, repeats: int) -> float:
    """Microseconds of one call's tracing without the network: the core's guard
    (``Tracing.start``, ``CallTrace``) and the tracer's start, activate, attempt, end."""
    import chatcore
    from chatcore._redact import KnownSecrets
    from chatcore._tracing import Tracing

    response = chatcore.ChatResponse.from_dict(payloads.CHAT_COMPLETION, provider="openai")
    request = chatcore.Client(
        providers={"openai": {"api_key": payloads.API_KEY, "base_url": "http://127.0.0.1:9/v1"}},
        environ={},
        plugin_host=_host(),
    ).build_request(MODEL, "Hello")
    tracing = Tracing([tracer])
    secrets = KnownSecrets([payloads.API_KEY])

    def one() -> None:
        trace = tracing.start(request, "http://127.0.0.1:9/v1", secrets)
        if trace is None:  # nothing would record it (no SDK): not traced, the check is all
            return
        trace._enter()
        trace._each("attempt_started", 1)
        trace._each("attempt_ended", 1, None)
        trace._exit()
        trace.end(response, None)

    return micro(one, repeats)


def sdk_floor(repeats: int) -> float:
    """Microseconds of what the SDK alone costs for the same telemetry: one span with the
    attributes a call's span ends with and one event, and the three histogram records,
    made directly (the part of the plugin's figure no instrumentation can avoid)."""
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import SpanKind

    exporter = InMemorySpanExporter()
    tracer_work(sdk_tracer(exporter=exporter), 1)
    span = exporter.get_finished_spans()[-1]
    attributes, name = dict(span.attributes), span.name
    event = dict(span.events[0].attributes)
    labels = {
        k: v
        for k, v in attributes.items()
        if k.startswith(
            (
                "gen_ai.operation",
                "gen_ai.provider",
                "gen_ai.request.model",
                "gen_ai.response.model",
                "server.",
            )
        )
    }
    sdk = sdk_tracer()

    def one() -> None:
        s = sdk.tracer.start_span(name, kind=SpanKind.CLIENT, attributes=attributes)
        s.add_event("chatcore.attempt", event)
        s.end()
        sdk.duration.record(0.5, labels)
        sdk.token_usage.record(10, {**labels, "gen_ai.token.type": "input"})
        sdk.token_usage.record(20, {**labels, "gen_ai.token.type": "output"})

    return micro(one, repeats)


def measure(prefer: str, calls: int, repeats: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with BenchServer(prefer) as server:
        contenders = [
            Traced("no tracer", server.base_url, []),
            Traced("plugin, API only (no SDK)", server.base_url, [api_tracer()]),
            Traced("plugin + SDK (no-op exporters)", server.base_url, [sdk_tracer()]),
            Traced("plugin + SDK, content captured", server.base_url, [sdk_tracer(True)]),
        ]
        try:
            out["server"] = server.description
            out["chat"] = sequential(contenders, calls, repeats, progress=lambda m: None)
        finally:
            for c in contenders:
                c.close()
    out["micro"] = {
        "API only (no SDK)": tracer_work(api_tracer(), repeats),
        "SDK (no-op exporters)": tracer_work(sdk_tracer(), repeats),
        "SDK, content captured": tracer_work(sdk_tracer(True), repeats),
        "SDK floor: the same span, event and records made directly": sdk_floor(repeats),
    }
    return out


def markdown(results: dict[str, Any], calls: int, repeats: int) -> str:
    chat = results["chat"]
    base = chat["no tracer"]
    lines = [
        START,
        "## OpenTelemetry plugin overhead",
        "",
        "`python -m benchmarks.otel_overhead`: `Client.chat` against the local benchmark",
        f"server ({results['server']}), {calls:,} calls x {repeats} repeats per client,",
        "interleaved in blocks, without a tracer and with chatcore-opentelemetry; the SDK",
        "runs a simple span processor and a metric reader whose exporters do nothing. Then",
        "the tracing work of one call without the network (the core's guard and the",
        "tracer's start, activate, attempt and end; timeit, median).",
        f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs; target: under",
        f"{TARGET_US:g} us per call with the SDK.",
        "",
        "| client | median per call (us) | CPU per call (us) | added CPU (us) |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, res in chat.items():
        added = "" if res is base else f"{res['cpu_us'] - base['cpu_us']:+.1f}"
        lines.append(f"| {name} | {res['median_us']:.1f} | {res['cpu_us']:.1f} | {added} |")
    lines += [
        "",
        "| tracing work per call, no network | us |",
        "| --- | ---: |",
    ]
    for name, us in results["micro"].items():
        lines.append(f"| {name} | {us:.1f} |")
    micro_ = results["micro"]
    sdk = micro_["SDK (no-op exporters)"]
    floor = micro_["SDK floor: the same span, event and records made directly"]
    verdict = "met" if sdk < TARGET_US else "missed"
    lines += [
        "",
        f"Target {verdict}: the tracing work per call with the SDK is {sdk:.1f} us "
        f"(target < {TARGET_US:g} us), of which {floor:.1f} us is the SDK making the same "
        f"span, event and histogram records directly, and {sdk - floor:.1f} us chatcore's "
        "guard and the plugin's own work. Without a tracer the pipeline does no tracing "
        "work (one attribute check per call).",
        END,
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default="auto", choices=("auto", "nginx", "stdlib"))
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--doc", default="docs/benchmarks.md")
    parser.add_argument("--no-doc", action="store_true")
    args = parser.parse_args(argv)
    results = measure(args.server, args.calls, args.repeats)
    section = markdown(results, args.calls, args.repeats)
    print(section)
    if not args.no_doc:
        write_section(Path(args.doc), START, END, section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
