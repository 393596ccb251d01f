"""The tracer: a CLIENT span per chat call, current while the call runs, and the GenAI
client metrics, on the OpenTelemetry API only (the application brings the SDK)."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

from opentelemetry import context as otel_context
from opentelemetry import metrics, propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from chatcore._redact import KnownSecrets, redact
from chatcore._tracing import TracedCall
from chatcore.models import ChatRequest, ChatResponse
from chatcore_opentelemetry import conventions as sc
from chatcore_opentelemetry._content import input_messages, output_messages

__all__ = ["CallSpan", "OpenTelemetryTracer", "env_flag"]

#: Values of ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`` that turn capture on
#: (``span_only`` / ``span_and_event`` are what the newest GenAI instrumentations accept;
#: content goes on the span either way).
_CAPTURE_ON = frozenset({"true", "1", "yes", "on", "span_only", "span_and_event"})
_TRUE = frozenset({"true", "1", "yes", "on"})


def env_flag(
    name: str, environ: Mapping[str, str] | None = None, on: frozenset[str] = _TRUE
) -> bool:
    """Whether the environment variable ``name`` is set to one of ``on`` (any case)."""
    value = (os.environ if environ is None else environ).get(name, "")
    return value.strip().lower() in on


def _server(base_url: str) -> tuple[str | None, int | None]:
    """``server.address`` and ``server.port`` of a base URL (never its user info, path or
    query, which may hold a credential)."""
    try:
        parts = urlsplit(base_url)
        host, port = parts.hostname, parts.port
    except ValueError:
        return None, None
    if port is None and host:
        port = {"https": 443, "http": 80}.get(parts.scheme)
    return host, port


def _request_attributes(request: ChatRequest) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if request.temperature is not None:
        out[sc.GEN_AI_REQUEST_TEMPERATURE] = float(request.temperature)
    if request.top_p is not None:
        out[sc.GEN_AI_REQUEST_TOP_P] = float(request.top_p)
    max_tokens = request.max_completion_tokens or request.max_tokens
    if max_tokens is not None:
        out[sc.GEN_AI_REQUEST_MAX_TOKENS] = int(max_tokens)
    if request.seed is not None:
        out[sc.GEN_AI_REQUEST_SEED] = int(request.seed)
    if request.frequency_penalty is not None:
        out[sc.GEN_AI_REQUEST_FREQUENCY_PENALTY] = float(request.frequency_penalty)
    if request.presence_penalty is not None:
        out[sc.GEN_AI_REQUEST_PRESENCE_PENALTY] = float(request.presence_penalty)
    if request.stop is not None:
        stop = (request.stop,) if isinstance(request.stop, str) else tuple(request.stop)
        out[sc.GEN_AI_REQUEST_STOP_SEQUENCES] = stop
    if request.n is not None and request.n != 1:
        out[sc.GEN_AI_REQUEST_CHOICE_COUNT] = int(request.n)
    if request.stream:
        out[sc.GEN_AI_REQUEST_STREAM] = True
    fmt = request.response_format
    if fmt:
        kind = fmt.get("type")
        if kind in ("json_object", "json_schema"):
            out[sc.GEN_AI_OUTPUT_TYPE] = "json"
        elif kind == "text":
            out[sc.GEN_AI_OUTPUT_TYPE] = "text"
    return out


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float, Decimal)) and math.isfinite(value):
        return float(value)
    return None


def _cost_usd(response: Any) -> float | None:
    """The call's cost in USD when the response carries one (chatcore's ``cost``, a
    ``Decimal``; or ``cost_usd``, or ``cost`` as a number or an object with a ``total``)."""
    for name in ("cost_usd", "cost"):
        value = getattr(response, name, None)
        if value is None:
            continue
        found = _number(value)
        if found is None:
            found = _number(getattr(value, "total_usd", None))
        if found is None:
            found = _number(getattr(value, "total", None))
        if found is not None:
            return found
    return None


def _deployment(source: Any) -> str | None:
    value = getattr(source, "deployment", None)
    if value is None:
        return None
    if isinstance(value, str):
        return value or None
    name = getattr(value, "name", None)
    return name if isinstance(name, str) and name else None


_metrics_state: Any
try:  # the API's module globals: None until the application sets a provider
    from opentelemetry.metrics import _internal as _metrics_state
except ImportError:  # pragma: no cover - a future API without them: the public checks only
    _metrics_state = None

#: The variables that make the API load a provider itself on first use.
_PROVIDER_VARIABLES = ("OTEL_PYTHON_TRACER_PROVIDER", "OTEL_PYTHON_METER_PROVIDER")


def _none_set() -> bool:
    """True while the application has set no global provider (read from the API's module
    globals, without the environment lookups ``get_tracer_provider`` makes each call);
    False when unsure."""
    return (
        getattr(trace, "_TRACER_PROVIDER", False) is None
        and getattr(_metrics_state, "_METER_PROVIDER", False) is None
    )


def _records_nothing(
    tracer_provider: trace.TracerProvider | None, meter_provider: metrics.MeterProvider | None
) -> bool:
    """True when neither provider would record anything: the API's no-op ones, or the
    global ones while the application has set none (the API's proxies)."""
    tracing = tracer_provider if tracer_provider is not None else trace.get_tracer_provider()
    meters = meter_provider if meter_provider is not None else metrics.get_meter_provider()
    return isinstance(tracing, (trace.ProxyTracerProvider, trace.NoOpTracerProvider)) and (
        type(meters).__name__ in ("_ProxyMeterProvider", "NoOpMeterProvider")
    )


class OpenTelemetryTracer:
    """A chatcore tracer (see ``docs/opentelemetry.md``): a ``chat {model}`` CLIENT span
    per call and the ``gen_ai.client.*`` metrics.

    ``tracer_provider`` / ``meter_provider`` default to the global ones (which may be set
    after the client is made). While no provider records anything (no SDK configured: the
    API's proxies or no-op providers), a call is not traced at all: :meth:`start` returns
    ``None`` and the call costs nothing more than a check. ``capture_content`` and
    ``propagate_context`` default to ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`` and
    ``CHATCORE_OTEL_PROPAGATE_CONTEXT`` (both off unless ``true``).
    """

    def __init__(
        self,
        tracer_provider: trace.TracerProvider | None = None,
        meter_provider: metrics.MeterProvider | None = None,
        *,
        capture_content: bool | None = None,
        propagate_context: bool | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        from chatcore_opentelemetry import __version__

        if capture_content is None:
            capture_content = env_flag(sc.ENV_CAPTURE_CONTENT, environ, _CAPTURE_ON)
        if propagate_context is None:
            propagate_context = env_flag(sc.ENV_PROPAGATE, environ)
        self.capture_content = capture_content
        self.propagate_context = propagate_context
        self._providers = (tracer_provider, meter_provider)
        #: Both providers given, neither recording: no call is ever traced. (With a
        #: global one, whether it records is asked per call: it may be set later.)
        self._never = (
            tracer_provider is not None
            and meter_provider is not None
            and _records_nothing(tracer_provider, meter_provider)
        )
        self._global = tracer_provider is None or meter_provider is None
        #: Both global and no variable loads one: the quick check applies.
        self._quick = (
            tracer_provider is None
            and meter_provider is None
            and not any(
                name in (os.environ if environ is None else environ) for name in _PROVIDER_VARIABLES
            )
        )
        self.tracer = trace.get_tracer(
            "chatcore_opentelemetry",
            __version__,
            tracer_provider=tracer_provider,
            schema_url=sc.SCHEMA_URL,
        )
        meter = metrics.get_meter(
            "chatcore_opentelemetry",
            __version__,
            meter_provider=meter_provider,
            schema_url=sc.SCHEMA_URL,
        )
        self.duration = meter.create_histogram(
            sc.METRIC_OPERATION_DURATION,
            unit="s",
            description="GenAI operation duration.",
            explicit_bucket_boundaries_advisory=sc.DURATION_BUCKETS,
        )
        self.token_usage = meter.create_histogram(
            sc.METRIC_TOKEN_USAGE,
            unit="{token}",
            description="Number of input and output tokens used.",
            explicit_bucket_boundaries_advisory=sc.TOKEN_BUCKETS,
        )
        self.time_to_first_chunk = meter.create_histogram(
            sc.METRIC_TIME_TO_FIRST_CHUNK,
            unit="s",
            description="Time to receive the first chunk of a streamed answer.",
            explicit_bucket_boundaries_advisory=sc.DURATION_BUCKETS,
        )
        #: base URL -> (server.address, server.port); a client has a few providers.
        self._servers: dict[str, tuple[str | None, int | None]] = {}
        #: (model id, provider secrets) -> the model id redacted (a model name that holds
        #: a secret is masked).
        self._models: dict[tuple[str, KnownSecrets], str] = {}

    def _server_of(self, base_url: str) -> tuple[str | None, int | None]:
        found = self._servers.get(base_url)
        if found is None:
            found = _server(base_url)
            if len(self._servers) < 256:
                self._servers[base_url] = found
        return found

    def start(self, call: TracedCall) -> CallSpan | None:
        """Open the call's span (a child of whatever span is current in the caller);
        ``None`` while no SDK is configured (nothing would be recorded)."""
        if self._never or (self._quick and _none_set()):
            return None
        if self._global and _records_nothing(*self._providers):
            return None
        request = call.request
        key = (request.model, call.secrets)
        model = self._models.get(key)
        if model is None:
            model = redact(request.model, call.secrets)
            if len(self._models) < 1024:
                self._models[key] = model
        common: dict[str, Any] = {
            sc.GEN_AI_OPERATION_NAME: call.operation,
            sc.GEN_AI_PROVIDER_NAME: sc.provider_name(request.provider),
            sc.GEN_AI_REQUEST_MODEL: model,
        }
        address, port = self._server_of(call.base_url)
        if address:
            common[sc.SERVER_ADDRESS] = address
            if port is not None:
                common[sc.SERVER_PORT] = port
        attributes = _request_attributes(request)
        attributes.update(common)
        attributes[sc.CHATCORE_PROVIDER] = request.provider
        span = self.tracer.start_span(
            f"{call.operation} {model}",
            kind=SpanKind.CLIENT,
            attributes=attributes,
            record_exception=False,
            set_status_on_exception=False,
        )
        if self.capture_content and span.is_recording():  # never serialized for nothing
            span.set_attribute(
                sc.GEN_AI_INPUT_MESSAGES, input_messages(request.messages, call.secrets)
            )
        return CallSpan(self, call, span, common)


class CallSpan:
    """One call's span: the handle the pipeline drives (``chatcore._tracing.CallHandle``)."""

    __slots__ = (
        "_attempt_started",
        "_first_chunk",
        "_started",
        "_token",
        "call",
        "common",
        "span",
        "tracer",
    )

    def __init__(
        self,
        tracer: OpenTelemetryTracer,
        call: TracedCall,
        span: trace.Span,
        common: dict[str, Any],
    ) -> None:
        self.tracer = tracer
        self.call = call
        self.span = span
        #: The attributes the metrics share with the span.
        self.common = common
        self._started = time.perf_counter()
        self._attempt_started = self._started
        self._first_chunk: float | None = None
        self._token: object | None = None

    # -- the span is current while the call runs ------------------------------------------

    def activate(self) -> CallSpan:
        return self

    def __enter__(self) -> CallSpan:
        self._token = otel_context.attach(trace.set_span_in_context(self.span))
        return self

    def __exit__(self, *exc: object) -> None:
        token, self._token = self._token, None
        if token is not None:
            otel_context.detach(token)  # type: ignore[arg-type]

    def headers(self) -> dict[str, str] | None:
        if not self.tracer.propagate_context:
            return None
        carrier: dict[str, str] = {}
        propagate.inject(carrier, context=trace.set_span_in_context(self.span))
        return carrier or None

    # -- attempts and chunks ----------------------------------------------------------------

    def attempt_started(self, number: int) -> None:
        self._attempt_started = time.perf_counter()

    def attempt_ended(self, number: int, error: BaseException | None) -> None:
        span = self.span
        if not span.is_recording():
            return
        attributes: dict[str, Any] = {
            sc.CHATCORE_ATTEMPT_NUMBER: number,
            sc.CHATCORE_ATTEMPT_DURATION: time.perf_counter() - self._attempt_started,
        }
        if error is not None:
            attributes[sc.ERROR_TYPE] = type(error).__name__
            status = getattr(error, "status_code", None)
            if isinstance(status, int):
                attributes[sc.HTTP_RESPONSE_STATUS_CODE] = status
        span.add_event(sc.EVENT_ATTEMPT, attributes)

    def first_chunk(self) -> None:
        if self._first_chunk is None:
            self._first_chunk = time.perf_counter()

    # -- the end ----------------------------------------------------------------------------

    def end(self, response: ChatResponse | None, error: BaseException | None) -> None:
        span = self.span
        duration = time.perf_counter() - self._started
        ttfc = None if self._first_chunk is None else self._first_chunk - self._started
        recording = span.is_recording()
        common = self.common
        if response is None and error is None:  # a stream closed before its end
            if recording:
                span.set_attribute(sc.CHATCORE_STREAM_CLOSED_EARLY, True)
                if ttfc is not None:
                    span.set_attribute(sc.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK, ttfc)
            span.end()
            return
        labels = dict(common)
        if response is not None:
            if response.model:
                labels[sc.GEN_AI_RESPONSE_MODEL] = response.model
            if recording:
                span.set_attributes(self._response_attributes(response, ttfc))
        else:
            assert error is not None
            error_type = type(error).__name__
            labels[sc.ERROR_TYPE] = error_type
            if recording:
                span.set_attributes(self._error_attributes(error, error_type))
                message = redact(str(error), self.call.secrets)
                span.set_status(Status(StatusCode.ERROR, f"{error_type}: {message}"[:1024]))
        span.end()
        self._record_metrics(response, labels, duration, ttfc)

    def _response_attributes(self, response: ChatResponse, ttfc: float | None) -> dict[str, Any]:
        out: dict[str, Any] = {
            sc.CHATCORE_ATTEMPTS: response.attempts,
            sc.CHATCORE_CACHED: bool(response.cached),
        }
        if response.id:
            out[sc.GEN_AI_RESPONSE_ID] = response.id
        if response.model:
            out[sc.GEN_AI_RESPONSE_MODEL] = response.model
        reasons = tuple(c.finish_reason for c in response.choices if c.finish_reason)
        if reasons:
            out[sc.GEN_AI_RESPONSE_FINISH_REASONS] = reasons
        usage = response.usage
        if usage is not None and not response.cached:  # a cache hit used no tokens
            out[sc.GEN_AI_USAGE_INPUT_TOKENS] = usage.prompt_tokens
            out[sc.GEN_AI_USAGE_OUTPUT_TOKENS] = usage.completion_tokens
            if usage.cached_tokens is not None:
                out[sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS] = usage.cached_tokens
            if usage.cache_creation_tokens is not None:
                out[sc.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS] = usage.cache_creation_tokens
            if usage.reasoning_tokens is not None:
                out[sc.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS] = usage.reasoning_tokens
        if ttfc is not None:
            out[sc.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK] = ttfc
        if response.request_id:
            out[sc.CHATCORE_REQUEST_ID] = response.request_id
        deployment = _deployment(response)
        if deployment is not None:
            out[sc.CHATCORE_DEPLOYMENT] = deployment
        cost = _cost_usd(response)
        if cost is not None:
            out[sc.CHATCORE_COST_USD] = cost
        if self.tracer.capture_content:
            out[sc.GEN_AI_OUTPUT_MESSAGES] = output_messages(response, self.call.secrets)
        return out

    def _error_attributes(self, error: BaseException, error_type: str) -> dict[str, Any]:
        out: dict[str, Any] = {sc.ERROR_TYPE: error_type}
        attempts = getattr(error, "attempts", None)
        if isinstance(attempts, int):
            out[sc.CHATCORE_ATTEMPTS] = attempts
        status = getattr(error, "status_code", None)
        if isinstance(status, int):
            out[sc.HTTP_RESPONSE_STATUS_CODE] = status
        request_id = getattr(error, "request_id", None)
        if isinstance(request_id, str) and request_id:
            out[sc.CHATCORE_REQUEST_ID] = redact(request_id, self.call.secrets)
        deployment = _deployment(error)
        if deployment is not None:
            out[sc.CHATCORE_DEPLOYMENT] = deployment
        return out

    def _record_metrics(
        self,
        response: ChatResponse | None,
        labels: dict[str, Any],
        duration: float,
        ttfc: float | None,
    ) -> None:
        tracer = self.tracer
        cached = response is not None and response.cached
        if cached:
            labels[sc.CHATCORE_CACHED] = True
        tracer.duration.record(duration, labels)
        if ttfc is not None:
            tracer.time_to_first_chunk.record(ttfc, labels)
        usage = response.usage if response is not None else None
        if usage is not None and not cached:
            token_labels = {k: v for k, v in labels.items() if k != sc.ERROR_TYPE}
            tracer.token_usage.record(
                usage.prompt_tokens, {**token_labels, sc.GEN_AI_TOKEN_TYPE: sc.TOKEN_TYPE_INPUT}
            )
            tracer.token_usage.record(
                usage.completion_tokens,
                {**token_labels, sc.GEN_AI_TOKEN_TYPE: sc.TOKEN_TYPE_OUTPUT},
            )
