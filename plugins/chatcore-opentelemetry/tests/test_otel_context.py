"""The call's span is current while the call runs: it is the child of the application's
span, and what runs inside the call (here a rate limiter that records its own spans) is its
child, in threads and in asyncio tasks; the trace context goes to the provider only when
asked; a failing SDK never fails a call nor leaks a context."""

from __future__ import annotations

import asyncio
import concurrent.futures
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import SpanProcessor

from chatcore.testing.server import Reply


class TracedLimiter:
    """A rate limiter that records a span per grant (as a Redis-backed one would, with the
    Redis instrumentation on), on the test's tracer provider."""

    def __init__(self, tracer_provider: Any) -> None:
        self.tracer = tracer_provider.get_tracer("limiter")

    def acquire(self, provider: str, model: str, tokens: int, *, max_wait: Any = None) -> None:
        with self.tracer.start_as_current_span("limiter acquire"):
            pass

    async def aacquire(
        self, provider: str, model: str, tokens: int, *, max_wait: Any = None
    ) -> None:
        with self.tracer.start_as_current_span("limiter acquire"):
            await asyncio.sleep(0)

    def reconcile(self, ticket: Any, used: Any) -> None:
        pass

    def observe(self, provider: str, model: str, headers: Any, error: Any = None) -> None:
        pass


def by_name(spans: list[Any], name: str) -> list[Any]:
    return [s for s in spans if s.name == name]


def check_nesting(spans: list[Any], calls: int) -> None:
    """Each app span has one chat span as its child, which has the limiter spans."""
    apps = {s.context.span_id: s for s in spans if s.name.startswith("app ")}
    chats = by_name(spans, "chat gpt-4o-mini")
    limits = by_name(spans, "limiter acquire")
    assert len(apps) == len(chats) == calls
    assert {c.parent.span_id for c in chats} == set(apps)
    for chat in chats:
        assert chat.context.trace_id == apps[chat.parent.span_id].context.trace_id
    children: dict[int, int] = {}
    for limit in limits:
        children[limit.parent.span_id] = children.get(limit.parent.span_id, 0) + 1
    assert set(children) == {c.context.span_id for c in chats}


def test_spans_nest_in_threads(telemetry, make_client, openai_target):
    limiter = TracedLimiter(telemetry.tracer_provider)
    client = make_client(openai_target, telemetry.tracer(), rate_limiter=limiter)
    app = telemetry.tracer_provider.get_tracer("app")
    for _ in range(8):
        openai_target.server.enqueue(Reply.chat("hi", delay=0.02))

    def work(i: int) -> None:
        with app.start_as_current_span(f"app {i}"):
            client.chat(openai_target.model, f"Hello {i}")
            # the call's span is not current any more once it returned
            assert trace.get_current_span().name == f"app {i}"  # type: ignore[attr-defined]

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        list(pool.map(work, range(8)))
    check_nesting(telemetry.spans(), 8)


def test_spans_nest_in_asyncio_tasks(telemetry, make_async_client, openai_target):
    limiter = TracedLimiter(telemetry.tracer_provider)
    app = telemetry.tracer_provider.get_tracer("app")
    for _ in range(8):
        openai_target.server.enqueue(Reply.chat("hi", delay=0.02))

    async def main() -> None:
        async with make_async_client(
            openai_target, telemetry.tracer(), rate_limiter=limiter
        ) as client:

            async def one(i: int) -> None:
                with app.start_as_current_span(f"app {i}"):
                    await client.chat(openai_target.model, f"Hello {i}")
                    assert trace.get_current_span().name == f"app {i}"  # type: ignore[attr-defined]

            await asyncio.gather(*(one(i) for i in range(8)))

    asyncio.run(main())
    check_nesting(telemetry.spans(), 8)


def test_a_streams_span_is_current_while_it_opens_only(telemetry, make_client, openai_target):
    limiter = TracedLimiter(telemetry.tracer_provider)
    client = make_client(openai_target, telemetry.tracer(), rate_limiter=limiter)
    app = telemetry.tracer_provider.get_tracer("app")
    with (
        app.start_as_current_span("app 0") as outer,
        client.stream(openai_target.model, "Hello") as stream,
    ):
        for _ in stream:  # the caller's work between chunks is not inside the call
            with app.start_as_current_span("between chunks") as between:
                assert between.parent.span_id == outer.get_span_context().span_id
    spans = telemetry.spans()
    assert len(by_name(spans, "between chunks")) >= 2
    check_nesting([s for s in spans if s.name != "between chunks"], 1)


def traceparent(span: Any) -> str:
    """The W3C ``traceparent`` of ``span``."""
    ctx = span.context
    assert ctx.trace_flags.sampled
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"


def test_no_trace_context_is_sent_unless_asked(telemetry, make_client, openai_target):
    make_client(openai_target, telemetry.tracer()).chat(openai_target.model, "Hello")
    assert openai_target.server.last_request.header("traceparent") is None


def test_the_trace_context_goes_with_every_attempt_when_asked(
    telemetry, make_client, openai_target
):
    tracer = telemetry.tracer(environ={"CHATCORE_OTEL_PROPAGATE_CONTEXT": "true"})
    assert tracer.propagate_context
    client = make_client(openai_target, tracer)
    openai_target.server.enqueue(Reply.error(503, "busy"))
    client.chat(openai_target.model, "Hello")
    span = telemetry.span()
    sent = [r.header("traceparent") for r in openai_target.server.requests]
    assert sent == [traceparent(span)] * 2


def test_the_trace_context_goes_with_a_stream_when_asked(telemetry, make_client, openai_target):
    client = make_client(openai_target, telemetry.tracer(propagate_context=True))
    with client.stream(openai_target.model, "Hello") as stream:
        stream.read()
    span = telemetry.span()
    parent = openai_target.server.last_request.header("traceparent")
    assert parent == traceparent(span)


class Exploding(SpanProcessor):
    def __init__(self, where: str) -> None:
        self.where = where

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        if self.where == "start":
            raise RuntimeError("processor down")

    def on_end(self, span: Any) -> None:
        if self.where == "end":
            raise RuntimeError("processor down")


@pytest.mark.parametrize("where", ["start", "end"])
def test_a_failing_sdk_never_fails_a_call_nor_leaks_its_context(
    telemetry, make_client, openai_target, where
):
    telemetry.tracer_provider.add_span_processor(Exploding(where))
    client = make_client(openai_target, telemetry.tracer())
    assert client.chat(openai_target.model, "Hello").text
    with client.stream(openai_target.model, "Hello") as stream:
        assert stream.read().text
    assert trace.get_current_span() is trace.INVALID_SPAN


def test_a_client_without_sdk_records_nothing_and_works(make_client, openai_target):
    """The API alone (no SDK provider given or set): spans do not record, calls work."""
    from chatcore_opentelemetry import OpenTelemetryTracer

    tracer = OpenTelemetryTracer(
        trace.NoOpTracerProvider(), None, environ={}, propagate_context=True
    )
    client = make_client(openai_target, tracer)
    assert client.chat(openai_target.model, "Hello").text
    # a non-recording span has an invalid context: nothing to propagate
    assert openai_target.server.last_request.header("traceparent") is None
