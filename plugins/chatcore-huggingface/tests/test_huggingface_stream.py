"""Streaming through the ``huggingface`` provider: the router (OpenAI SSE), TGI's chat route
(``data:`` without a space, ``data:[DONE]``) and TGI's native ``/generate_stream`` (token
events, no ``[DONE]``, finish reason and usage in the last event's ``details``)."""

from __future__ import annotations

import logging
from typing import Any

import pytest

import chatcore
from chatcore import exceptions as exc
from chatcore.testing.server import Reply, StandInServer

MODEL = "huggingface:meta-llama/Llama-3.1-8B-Instruct"


def token_event(i: int, text: str, *, special: bool = False, final: dict[str, Any] | None = None):
    event: dict[str, Any] = {
        "index": i,
        "token": {"id": 100 + i, "text": text, "logprob": -0.5, "special": special},
        "generated_text": None,
        "details": None,
    }
    if final is not None:
        event.update(final)
    return event


# --------------------------------------------------------------------------------------
# Chat route


def test_router_stream(router: StandInServer, make_client: Any, token: str) -> None:
    client = make_client(router.base_url)
    stream = client.stream(MODEL + ":fastest", "Hello router", max_tokens=64)
    chunks = list(stream)
    text = "".join(c.text for c in chunks)
    assert text == "Hello from the chatcore stand-in server. You said: Hello router"
    response = stream.response
    assert response is not None
    assert response.text == text
    assert response.provider == "huggingface"
    assert response.choices[0].finish_reason == "stop"
    assert response.usage is not None and response.usage.completion_tokens > 0
    assert stream.request_id and stream.request_id.startswith("req_")
    sent = router.last_request
    assert sent.path == "/v1/chat/completions"
    assert sent.header("authorization") == f"Bearer {token}"
    body = sent.json()
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert body["model"] == "meta-llama/Llama-3.1-8B-Instruct:fastest"


def test_tgi_chat_stream(tgi: StandInServer, make_client: Any) -> None:
    client = make_client(tgi.url, token=None)
    stream = client.stream("huggingface:tgi", "Hello TGI")
    text = "".join(c.text for c in stream)
    assert text == "Hello from the chatcore stand-in server. You said: Hello TGI"
    response = stream.response
    assert response is not None
    assert response.choices[0].finish_reason == "stop"
    assert response.usage is not None and response.usage.total_tokens > 0
    assert tgi.last_request.path == "/v1/chat/completions"
    assert tgi.last_request.json()["stream"] is True


def test_tgi_chat_stream_without_space_and_done_without_space(
    tgi: StandInServer, make_client: Any
) -> None:
    events = [
        {
            "id": "",
            "model": "tgi",
            "choices": [{"index": 0, "delta": {"role": "assistant", "content": "no"}}],
        },
        {
            "id": "",
            "model": "tgi",
            "choices": [{"index": 0, "delta": {"content": " space"}, "finish_reason": "stop"}],
        },
    ]
    tgi.enqueue(Reply.sse(events, space=False))
    response = make_client(tgi.url, token=None).stream("huggingface:tgi", "x").read()
    assert response.text == "no space"
    assert response.choices[0].finish_reason == "stop"


def test_tgi_chat_stream_cut_is_a_stream_error(tgi: StandInServer, make_client: Any) -> None:
    tgi.enqueue(Reply.chat_stream("one two three", die_after=2))
    with pytest.raises(exc.StreamError) as info:
        make_client(tgi.url, token=None).stream("huggingface:tgi", "x").read()
    assert info.value.partial_text == "one two"
    assert len(tgi.requests) == 1


# --------------------------------------------------------------------------------------
# /generate_stream


def test_generate_stream(tgi: StandInServer, make_client: Any) -> None:
    client = make_client(tgi.url, token=None, api="generate")
    stream = client.stream("huggingface:tgi", "Hello generate", max_tokens=50)
    chunks = list(stream)
    text = "".join(c.text for c in chunks)
    assert text == " Hello from the chatcore stand-in server. You said: Hello generate"
    assert chunks[0].choices[0]["delta"]["role"] == "assistant"
    assert chunks[-1].finish_reason == "stop"  # eos_token
    response = stream.response
    assert response is not None
    assert response.text == text
    assert response.choices[0].finish_reason == "stop"
    usage = response.usage
    assert usage is not None
    assert usage.completion_tokens == len(chunks) - 1  # one chunk per token, then the finish
    assert usage.prompt_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    sent = tgi.last_request
    assert sent.path == "/generate_stream"
    assert sent.json()["parameters"]["max_new_tokens"] == 50
    assert sent.json()["parameters"]["details"] is True


def test_generate_stream_length_limit(tgi: StandInServer, make_client: Any) -> None:
    client = make_client(tgi.url, token=None, api="generate")
    response = client.stream("huggingface:tgi", "Hello", max_tokens=3).read()
    assert response.text == " Hello from the"
    assert response.choices[0].finish_reason == "length"
    assert response.usage is not None and response.usage.completion_tokens == 3


def test_generate_stream_stop_sequence(tgi: StandInServer, make_client: Any) -> None:
    client = make_client(tgi.url, token=None, api="generate")
    response = client.stream("huggingface:tgi", "Hello", stop=["stand-in"]).read()
    assert response.text.endswith("stand-in")
    assert response.choices[0].finish_reason == "stop"


def test_generate_stream_special_tokens_and_request_id(
    tgi: StandInServer, make_client: Any
) -> None:
    final = {
        "generated_text": "Hi there",
        "details": {
            "finish_reason": "eos_token",
            "generated_tokens": 3,
            "input_length": 7,
            "seed": None,
        },
    }
    tgi.enqueue(
        Reply.sse(
            [
                token_event(1, "Hi"),
                token_event(2, " there"),
                token_event(3, "</s>", special=True, final=final),
            ],
            done=False,
            space=False,
            headers={"x-request-id": "tgi-req-1"},
        )
    )
    stream = make_client(tgi.url, token=None, api="generate").stream("huggingface:tgi", "x")
    first = next(stream)
    assert first.request_id == "tgi-req-1"
    response = stream.read()
    assert response.text == "Hi there"  # the special token is not text
    assert response.id == "tgi-req-1"
    assert response.request_id == "tgi-req-1"
    assert response.usage is not None
    assert (response.usage.prompt_tokens, response.usage.completion_tokens) == (7, 3)


def test_generate_stream_first_chunk_carries_headers(tgi: StandInServer, make_client: Any) -> None:
    stream = make_client(tgi.url, token=None, api="generate").stream("huggingface:tgi", "x")
    assert stream.headers is not None
    assert stream.headers.get("x-compute-type") == "gpu+optimized"
    stream.close()


def test_generate_stream_returns_its_connection_to_the_pool(
    tgi: StandInServer, make_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    client = make_client(tgi.url, token=None, api="generate")
    client.chat("huggingface:tgi", "warm up")
    client.stream("huggingface:tgi", "complete").read()
    with caplog.at_level(logging.DEBUG, logger="urllib3.connectionpool"):
        client.chat("huggingface:tgi", "after")
    assert not [
        r
        for r in caplog.records
        if "Starting new" in r.getMessage() or "Resetting dropped" in r.getMessage()
    ]


def test_generate_stream_cut_before_the_final_event(tgi: StandInServer, make_client: Any) -> None:
    tgi.enqueue(
        Reply.sse([token_event(1, "Half"), token_event(2, " way")], done=False, space=False)
    )
    stream = make_client(tgi.url, token=None, api="generate").stream("huggingface:tgi", "x")
    with pytest.raises(exc.StreamError) as info:
        stream.read()
    assert info.value.partial_text == "Half way"
    assert "final event" in info.value.message
    assert stream.response is None
    assert len(tgi.requests) == 1


def test_generate_stream_connection_dies(tgi: StandInServer, make_client: Any) -> None:
    events = [token_event(1, "A"), token_event(2, "B"), token_event(3, "C")]
    tgi.enqueue(Reply.sse(events, done=False, space=False, die_after=2))
    stream = make_client(tgi.url, token=None, api="generate").stream("huggingface:tgi", "x")
    with pytest.raises(exc.StreamError) as info:
        stream.read()
    assert info.value.partial_text == "AB"
    assert len(tgi.requests) == 1


def test_generate_stream_in_band_error_mid_way(tgi: StandInServer, make_client: Any) -> None:
    tgi.enqueue(
        Reply.sse(
            [
                token_event(1, "Par"),
                token_event(2, "tial"),
                {"error": "Request failed during generation: CUDA OOM", "error_type": "generation"},
            ],
            done=False,
            space=False,
        )
    )
    stream = make_client(tgi.url, token=None, api="generate").stream("huggingface:tgi", "x")
    with pytest.raises(exc.StreamError) as info:
        stream.read()
    err = info.value
    assert "CUDA OOM" in str(err)
    assert err.error_type == "generation"
    assert err.partial_text == "Partial"
    assert err.provider == "huggingface"


def test_generate_stream_validation_error_event(tgi: StandInServer, make_client: Any) -> None:
    # TGI reports parameter validation failures inside an already-started 200 stream
    client = make_client(tgi.url, token=None, api="generate")
    with pytest.raises(exc.StreamError) as info:
        client.stream("huggingface:tgi", "x", extra={"top_k": 0})
    assert "`top_k` must be strictly positive" in str(info.value)
    assert info.value.error_type == "validation"
    assert info.value.should_retry is False
    assert info.value.partial_text == ""


def test_generate_stream_overloaded_first_event_is_retried(
    tgi: StandInServer, make_client: Any
) -> None:
    tgi.enqueue(
        Reply.sse(
            [{"error": "Model is overloaded", "error_type": "overloaded"}], done=False, space=False
        )
    )
    policy = chatcore.RetryPolicy(max_retries=2, sleep=lambda _s: None)
    client = make_client(tgi.url, token=None, api="generate", retry=policy)
    stream = client.stream("huggingface:tgi", "retry me")
    assert stream.attempts == 2
    assert stream.read().text.endswith("retry me")
    assert len(tgi.requests) == 2


def test_generate_stream_error_status_before_the_stream(
    tgi: StandInServer, make_client: Any
) -> None:
    tgi.enqueue(
        Reply.tgi_error(422, "Input validation error: `inputs` must not be empty", "validation")
    )
    with pytest.raises(exc.UnprocessableEntityError) as info:
        make_client(tgi.url, token=None, api="generate").stream("huggingface:tgi", "x")
    assert "inputs" in str(info.value)


# --------------------------------------------------------------------------------------
# Checks made before sending, and the provider's own entry points


TOOLS = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]


@pytest.mark.parametrize(
    ("api", "options", "match"),
    [
        ("generate", {"tools": TOOLS}, "tools need api='chat'"),
        ("chat", {"tools": TOOLS, "response_format": {"type": "json_object"}}, "exclusive"),
        ("chat", {"top_p": 0}, "top_p"),
    ],
)
def test_stream_validation_errors_are_raised_unsent_and_not_retried(
    tgi: StandInServer, make_client: Any, api: str, options: dict[str, Any], match: str
) -> None:
    slept: list[float] = []
    policy = chatcore.RetryPolicy(max_retries=2, sleep=slept.append)
    client = make_client(tgi.url, token=None, api=api, retry=policy)
    with pytest.raises(chatcore.ValidationError, match=match):
        client.stream("huggingface:tgi", "Hi", **options)
    assert tgi.requests == []
    assert slept == []


def test_the_provider_alone_sends_through_the_core(tgi: StandInServer, make_client: Any) -> None:
    # chat / stream / list_models are the base class's: the plugin only translates
    from chatcore.models import ChatRequest, Message

    provider = make_client(tgi.url, token=None, api="generate").provider("huggingface")
    request = ChatRequest(
        provider="huggingface", model="tgi", messages=(Message(role="user", content="Hi"),)
    )
    chunks = provider.stream(request)
    assert tgi.requests == []  # lazy: nothing is sent before next()
    assert "".join(c.text for c in chunks).endswith("You said: Hi")
    assert tgi.last_request.path == "/generate_stream"
    assert provider.chat(request).text.endswith("You said: Hi")
    assert tgi.last_request.path == "/generate"
    assert [m.id for m in provider.list_models()]
    assert tgi.last_request.path == "/v1/models"
    assert len(tgi.requests) == 3
