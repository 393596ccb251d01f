"""The span of a call, attribute for attribute, for chat, stream, error, retry and cached
calls of every bundled provider (openai, azure, huggingface, anthropic), under ``Client``
and ``AsyncClient``, exported by the real SDK's in-memory exporter."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from opentelemetry.trace import SpanKind, StatusCode

import chatcore
from chatcore_opentelemetry import conventions as sc

from .conftest import Target


def request_attributes(target: Target, *, stream: bool = False) -> dict[str, Any]:
    """What every span of ``target`` starts with: the conventions' request attributes."""
    out: dict[str, Any] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": target.semconv_name,
        "gen_ai.request.model": target.model_id,
        "server.address": "127.0.0.1",
        "server.port": target.server.port,
        "chatcore.provider": target.name,
        "gen_ai.request.temperature": 0.5,
        "gen_ai.request.max_tokens": 50,
    }
    if "top_p" in target.params:
        out["gen_ai.request.top_p"] = 0.9
    if "seed" in target.params:
        out["gen_ai.request.seed"] = 7
    if stream:
        out["gen_ai.request.stream"] = True
    return out


def usage_attributes(response: chatcore.ChatResponse) -> dict[str, Any]:
    usage = response.usage
    assert usage is not None and usage.prompt_tokens > 0 and usage.completion_tokens > 0
    out = {
        "gen_ai.usage.input_tokens": usage.prompt_tokens,
        "gen_ai.usage.output_tokens": usage.completion_tokens,
    }
    if usage.cached_tokens is not None:
        out["gen_ai.usage.cache_read.input_tokens"] = usage.cached_tokens
    if usage.cache_creation_tokens is not None:
        out["gen_ai.usage.cache_creation.input_tokens"] = usage.cache_creation_tokens
    if usage.reasoning_tokens is not None:
        out["gen_ai.usage.reasoning.output_tokens"] = usage.reasoning_tokens
    return out


def response_attributes(response: chatcore.ChatResponse, *, attempts: int = 1) -> dict[str, Any]:
    assert response.id and response.model
    out: dict[str, Any] = {
        "gen_ai.response.id": response.id,
        "gen_ai.response.model": response.model,
        "gen_ai.response.finish_reasons": (response.choices[0].finish_reason,),
        "chatcore.attempts": attempts,
        "chatcore.cached": False,
        **usage_attributes(response),
    }
    if response.request_id:
        out["chatcore.request_id"] = response.request_id
    return out


def attempt_events(span: Any) -> list[dict[str, Any]]:
    events = [e for e in span.events if e.name == "chatcore.attempt"]
    assert len(events) == len(span.events)
    out = []
    for event in events:
        attributes = dict(event.attributes)
        duration = attributes.pop("chatcore.attempt.duration")
        assert isinstance(duration, float) and duration >= 0
        out.append(attributes)
    return out


def test_a_chat_span(telemetry, make_client, target):
    client = make_client(target, telemetry.tracer())
    response = client.chat(target.model, "Hello", **target.params)
    span = telemetry.span()
    assert span.name == f"chat {target.model_id}"
    assert span.kind is SpanKind.CLIENT
    assert span.status.status_code is StatusCode.UNSET
    assert span.parent is None
    assert dict(span.attributes) == {**request_attributes(target), **response_attributes(response)}
    assert attempt_events(span) == [{"chatcore.attempt.number": 1}]
    assert span.instrumentation_scope.name == "chatcore_opentelemetry"
    assert span.instrumentation_scope.schema_url == "https://opentelemetry.io/schemas/1.41.0"


def test_a_stream_span_covers_the_whole_stream(telemetry, make_client, target):
    client = make_client(target, telemetry.tracer())
    with client.stream(target.model, "Hello", **target.params) as stream:
        first = next(stream)
        assert first is not None
        assert telemetry.chat_spans() == []  # still open while the stream is read
        for _ in stream:
            pass
    response = stream.response
    assert response is not None
    span = telemetry.span()
    attributes = dict(span.attributes)
    ttfc = attributes.pop("gen_ai.response.time_to_first_chunk")
    assert isinstance(ttfc, float) and 0 < ttfc * 1e9 <= span.end_time - span.start_time
    expected = {**request_attributes(target, stream=True), **response_attributes(response)}
    assert attributes == expected
    assert attempt_events(span) == [{"chatcore.attempt.number": 1}]


@pytest.mark.parametrize(
    ("status", "error_type"),
    [(400, "BadRequestError"), (401, "AuthenticationError"), (404, "NotFoundError")],
)
def test_an_error_span(telemetry, make_client, target, status, error_type):
    client = make_client(target, telemetry.tracer())
    target.server.enqueue(target.error(status, "that will not do"))
    with pytest.raises(chatcore.APIError) as caught:
        client.chat(target.model, "Hello", **target.params)
    assert type(caught.value).__name__ == error_type
    span = telemetry.span()
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description.startswith(f"{error_type}: ")
    expected = {
        **request_attributes(target),
        "error.type": error_type,
        "chatcore.attempts": 1,
        "http.response.status_code": status,
    }
    if caught.value.request_id:
        expected["chatcore.request_id"] = caught.value.request_id
    assert dict(span.attributes) == expected
    assert attempt_events(span) == [
        {
            "chatcore.attempt.number": 1,
            "error.type": error_type,
            "http.response.status_code": status,
        }
    ]


def test_a_retried_call_has_one_event_per_attempt(telemetry, make_client, target):
    client = make_client(target, telemetry.tracer())
    target.server.enqueue(target.error(503, "busy"), target.error(429, "slow down"))
    response = client.chat(target.model, "Hello", **target.params)
    assert response.attempts == 3
    span = telemetry.span()
    assert span.status.status_code is StatusCode.UNSET
    expected = {**request_attributes(target), **response_attributes(response, attempts=3)}
    assert dict(span.attributes) == expected
    assert attempt_events(span) == [
        {
            "chatcore.attempt.number": 1,
            "error.type": "ServiceUnavailableError",
            "http.response.status_code": 503,
        },
        {
            "chatcore.attempt.number": 2,
            "error.type": "RateLimitError",
            "http.response.status_code": 429,
        },
        {"chatcore.attempt.number": 3},
    ]


def test_retries_that_run_out_end_the_span_with_the_last_error(telemetry, make_client, target):
    client = make_client(target, telemetry.tracer())
    target.server.enqueue(*[target.error(503, "busy")] * 3)
    with pytest.raises(chatcore.ServiceUnavailableError):
        client.chat(target.model, "Hello", **target.params)
    span = telemetry.span()
    assert span.attributes["error.type"] == "ServiceUnavailableError"
    assert span.attributes["chatcore.attempts"] == 3
    assert [e["chatcore.attempt.number"] for e in attempt_events(span)] == [1, 2, 3]


def test_a_cached_call_span(telemetry, make_client, target):
    client = make_client(target, telemetry.tracer(), cache=True)
    client.chat(target.model, "Hello", **target.params)
    hit = client.chat(target.model, "Hello", **target.params)
    assert hit.cached
    sent, cached = telemetry.chat_spans()
    expected = {
        **request_attributes(target),
        **response_attributes(hit, attempts=0),
        "chatcore.cached": True,
        "chatcore.cost_usd": 0.0,  # an answer from chatcore's cache costs nothing
    }
    assert "chatcore.cost_usd" not in sent.attributes  # no price known for the sent call
    for key in list(expected):  # a cache hit used no tokens
        if key.startswith("gen_ai.usage."):
            del expected[key]
    assert dict(cached.attributes) == expected
    assert cached.events == ()
    assert sent.attributes["chatcore.cached"] is False


def test_a_stream_that_breaks_ends_its_span_with_a_stream_error(
    telemetry, make_client, openai_target
):
    from chatcore.testing.server import Reply

    client = make_client(openai_target, telemetry.tracer())
    openai_target.server.enqueue(Reply.chat_stream("one two three four five", die_after=2))
    with pytest.raises(chatcore.StreamError), client.stream(openai_target.model, "Hi") as stream:
        for _ in stream:
            pass
    span = telemetry.span()
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes["error.type"] == "StreamError"
    assert "gen_ai.response.id" not in span.attributes


def test_a_stream_closed_early_ends_its_span_without_an_error(
    telemetry, make_client, openai_target
):
    client = make_client(openai_target, telemetry.tracer())
    with client.stream(openai_target.model, "Hello there") as stream:
        next(stream)
    span = telemetry.span()
    assert span.status.status_code is StatusCode.UNSET
    assert span.attributes[sc.CHATCORE_STREAM_CLOSED_EARLY] is True
    assert "error.type" not in span.attributes
    assert span.attributes[sc.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK] > 0


def test_async_chat_and_stream_spans(telemetry, make_async_client, target):
    async def main() -> tuple[chatcore.ChatResponse, chatcore.ChatResponse]:
        async with make_async_client(target, telemetry.tracer()) as client:
            response = await client.chat(target.model, "Hello", **target.params)
            async with client.stream(target.model, "Hello", **target.params) as stream:
                async for _ in stream:
                    pass
            assert stream.response is not None
            return response, stream.response

    response, streamed = asyncio.run(main())
    chat, stream = telemetry.chat_spans()
    assert dict(chat.attributes) == {**request_attributes(target), **response_attributes(response)}
    attributes = dict(stream.attributes)
    assert attributes.pop("gen_ai.response.time_to_first_chunk") > 0
    expected = {**request_attributes(target, stream=True), **response_attributes(streamed)}
    assert attributes == expected


def test_request_parameters_the_conventions_name(telemetry, make_client, openai_target):
    client = make_client(openai_target, telemetry.tracer())
    client.chat(
        openai_target.model,
        "Reply in JSON",
        n=2,
        stop=["x", "y"],
        frequency_penalty=0.25,
        presence_penalty=-0.5,
        max_completion_tokens=40,
        response_format={"type": "json_object"},
    )
    attributes = telemetry.span().attributes
    assert attributes["gen_ai.request.choice.count"] == 2
    assert attributes["gen_ai.request.stop_sequences"] == ("x", "y")
    assert attributes["gen_ai.request.frequency_penalty"] == 0.25
    assert attributes["gen_ai.request.presence_penalty"] == -0.5
    assert attributes["gen_ai.request.max_tokens"] == 40
    assert attributes["gen_ai.output.type"] == "json"
    assert len(attributes["gen_ai.response.finish_reasons"]) == 2


class Routed:
    """What a routed response may carry (routes and cost are being built): the tracer
    reads them when they are there."""

    def __init__(self, response: chatcore.ChatResponse, deployment: Any, cost: Any) -> None:
        self._response = response
        self.deployment = deployment
        self.cost = cost

    def __getattr__(self, name: str) -> Any:
        return getattr(self._response, name)


@pytest.mark.parametrize(
    ("deployment", "cost", "expected"),
    [
        ("eu-west", 0.0125, {"chatcore.deployment": "eu-west", "chatcore.cost_usd": 0.0125}),
        (None, None, {}),
        ("", 0, {"chatcore.cost_usd": 0.0}),
    ],
)
def test_deployment_and_cost_when_the_response_has_them(
    telemetry, make_client, openai_target, deployment, cost, expected
):
    tracer = telemetry.tracer()
    response = make_client(openai_target, telemetry.tracer()).chat(openai_target.model, "Hi")
    call = chatcore.TracedCall("chat", response_request(response), openai_target.server.base_url)
    handle = tracer.start(call)
    handle.end(Routed(response, deployment, cost), None)  # type: ignore[arg-type]
    _, span = telemetry.chat_spans()
    names = (sc.CHATCORE_DEPLOYMENT, sc.CHATCORE_COST_USD)
    assert {k: v for k, v in span.attributes.items() if k in names} == expected


def response_request(response: chatcore.ChatResponse) -> chatcore.ChatRequest:
    return chatcore.ChatRequest(
        provider=response.provider, model="gpt-4o-mini", messages=(chatcore.Message("user", "Hi"),)
    )


def test_a_real_routed_and_priced_call_sets_deployment_and_cost(
    telemetry, make_client, openai_target
):
    """Through a route of the core, with a price: the span names the deployment that
    answered and the call's cost (``response.deployment``, ``response.cost``)."""
    routes = {"main": {"deployments": [{"model": openai_target.model, "name": "primary"}]}}
    prices = {openai_target.model: {"input": 2, "output": 8}}
    client = make_client(openai_target, telemetry.tracer(), routes=routes, prices=prices)
    response = client.chat("route:main", "Hi")
    assert response.deployment == "route:main/primary" and response.cost is not None
    span = telemetry.span()
    assert span.attributes[sc.CHATCORE_DEPLOYMENT] == "route:main/primary"
    assert span.attributes[sc.CHATCORE_COST_USD] == float(response.cost)
