"""chatcore tracing plugin for OpenTelemetry: a ``chat {model}`` CLIENT span per call, current
while the call runs, and the ``gen_ai.client.*`` metrics, in the OpenTelemetry GenAI
semantic conventions (the version is :data:`conventions.SEMCONV_VERSION`).

Installed, its ``chatcore_tracers`` hook gives every client one tracer on the global
tracer and meter providers: configure the OpenTelemetry SDK in the application as usual
(until then the API records nothing). Prompts and completions are recorded only with
``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true``, redacted; the trace context
is sent to the provider only with ``CHATCORE_OTEL_PROPAGATE_CONTEXT=true``. With explicit
providers::

    from chatcore_opentelemetry import OpenTelemetryTracer

    tracer = OpenTelemetryTracer(tracer_provider=provider, meter_provider=meter_provider)
    client = chatcore.Client(tracers=[tracer])   # with CHATCORE_DISABLE_PLUGINS=opentelemetry
"""

from __future__ import annotations

from typing import Any

from chatcore import hookimpl
from chatcore_opentelemetry import conventions
from chatcore_opentelemetry._tracer import CallSpan, OpenTelemetryTracer

__version__ = "0.1.0"

__all__ = [
    "CallSpan",
    "OpenTelemetryTracer",
    "__version__",
    "chatcore_tracers",
    "conventions",
]


@hookimpl
def chatcore_tracers(settings: Any) -> list[OpenTelemetryTracer]:
    """One tracer per client, on the global tracer and meter providers, configured from
    the environment when the client is made."""
    return [OpenTelemetryTracer()]
