"""Streaming through the ``openai`` and ``azure`` providers against the stand-in servers:
the body the strict server accepts, chunks, usage, request ids, Azure's empty first chunk,
tool-call deltas, and errors before the stream."""

from __future__ import annotations

import json
from typing import Any

import pytest

import chatcore
from chatcore import exceptions as exc
from chatcore.models import ChatChunk
from chatcore.testing.server import Reply, StandInServer

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


@pytest.fixture
def azure(make_client: Any, azure_server: StandInServer, azure_key: str) -> chatcore.Client:
    return make_client({"azure": {"api_key": azure_key, "endpoint": azure_server.url}})


def test_stream_body_and_chunks(client: chatcore.Client, server: StandInServer) -> None:
    stream = client.stream("openai:gpt-4o-mini", "Stream this", temperature=0.5, max_tokens=40)
    chunks = list(stream)
    assert all(isinstance(c, ChatChunk) and c.provider == "openai" for c in chunks)

    sent = server.last_request
    assert sent.path == "/v1/chat/completions"
    assert sent.json() == {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "Stream this"}],
        "temperature": 0.5,
        "max_tokens": 40,
        "stream": True,
        "stream_options": {"include_usage": True},
    }

    text = "".join(c.text for c in chunks)
    assert text == "Hello from the chatcore stand-in server. You said: Stream this"
    assert stream.text == text
    # the usage chunk comes last, with empty choices; the finish chunk just before it
    assert chunks[-1].choices == () and chunks[-1].usage is not None
    assert chunks[-2].finish_reason == "stop"
    assert all(c.usage is None for c in chunks[:-1])

    response = stream.response
    assert response is not None
    assert response.text == text
    assert response.choices[0].finish_reason == "stop"
    assert response.usage == chunks[-1].usage
    assert response.usage.completion_tokens > 0
    assert response.provider == "openai" and response.model == "gpt-4o-mini"
    assert response.id.startswith("chatcmpl-")


def test_stream_request_id_from_the_response_headers(
    client: chatcore.Client, server: StandInServer
) -> None:
    server.enqueue(Reply.chat_stream("Hi there", headers={"x-request-id": "req_stream123"}))
    stream = client.stream("openai:gpt-4o-mini", "hi")
    first = next(stream)
    assert first.request_id == "req_stream123"
    assert stream.request_id == "req_stream123"
    assert stream.read().request_id == "req_stream123"


def test_caller_stream_options_are_kept(client: chatcore.Client, server: StandInServer) -> None:
    response = client.stream(
        "openai:gpt-4o-mini", "no usage", extra={"stream_options": {"include_usage": False}}
    ).read()
    assert server.last_request.json()["stream_options"] == {"include_usage": False}
    assert response.usage is None
    assert response.text.endswith("no usage")


def test_obfuscation_keys_are_ignored(client: chatcore.Client, server: StandInServer) -> None:
    stream = client.stream("openai:gpt-4o-mini", "obfuscated")
    chunks = list(stream)
    assert all("obfuscation" not in c.to_dict() for c in chunks)
    assert stream.text.endswith("obfuscated")


def test_tool_call_stream(client: chatcore.Client, server: StandInServer) -> None:
    server.enqueue(
        Reply.chat_stream(
            tool_calls=[
                {"name": "get_weather", "arguments": {"city": "Paris, France"}},
                {"name": "get_weather", "arguments": {"city": "Tokyo"}},
            ]
        )
    )
    stream = client.stream(
        "openai:gpt-4o-mini", "weather in Paris and Tokyo?", tools=[WEATHER_TOOL]
    )
    deltas = [d for c in stream for d in c.tool_call_deltas]
    assert len(deltas) > 2  # the arguments arrive in pieces
    assert {d["index"] for d in deltas} == {0, 1}
    response = stream.response
    assert response is not None
    choice = response.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    calls = choice.message.tool_calls
    assert [c.function.name for c in calls] == ["get_weather", "get_weather"]
    assert [json.loads(c.function.arguments) for c in calls] == [
        {"city": "Paris, France"},
        {"city": "Tokyo"},
    ]
    assert calls[0].id != calls[1].id
    assert server.last_request.json()["tools"] == [WEATHER_TOOL]


def test_hand_written_tool_call_deltas(client: chatcore.Client, server: StandInServer) -> None:
    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {
            "id": "chatcmpl-t",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "gpt-4o-mini",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }

    server.enqueue(
        Reply.sse(
            [
                chunk({"role": "assistant", "content": None}),
                chunk(
                    {
                        "tool_calls": [
                            {
                                "index": 0,
                                "id": "call_1",
                                "type": "function",
                                "function": {"name": "get_weather", "arguments": ""},
                            }
                        ]
                    }
                ),
                chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"ci'}}]}),
                chunk({"tool_calls": [{"index": 0, "function": {"arguments": 'ty": "Oslo"}'}}]}),
                chunk({}, "tool_calls"),
            ]
        )
    )
    response = client.stream("openai:gpt-4o-mini", "Oslo?", tools=[WEATHER_TOOL]).read()
    (call,) = response.choices[0].message.tool_calls
    assert (call.id, call.function.name, call.function.arguments) == (
        "call_1",
        "get_weather",
        '{"city": "Oslo"}',
    )


def test_stream_broken_mid_way(client: chatcore.Client, server: StandInServer) -> None:
    server.enqueue(Reply.chat_stream("one two three four", die_after=3))
    stream = client.stream("openai:gpt-4o-mini", "x")
    with pytest.raises(exc.StreamError) as info:
        stream.read()
    assert info.value.partial_text == "one two"
    assert info.value.provider == "openai"
    assert len(server.requests) == 1


def test_in_band_error(client: chatcore.Client, server: StandInServer) -> None:
    server.enqueue(
        Reply.sse(
            [
                {
                    "id": "c",
                    "object": "chat.completion.chunk",
                    "created": 1,
                    "model": "gpt-4o-mini",
                    "choices": [{"index": 0, "delta": {"content": "Par"}, "finish_reason": None}],
                },
                {"error": {"message": "Upstream overloaded", "type": "server_error", "code": None}},
            ],
            done=False,
        )
    )
    with pytest.raises(exc.StreamError) as info:
        client.stream("openai:gpt-4o-mini", "x").read()
    assert "Upstream overloaded" in str(info.value)
    assert info.value.partial_text == "Par"


@pytest.mark.parametrize(
    ("extra", "needle"),
    [({"max_new_tokens": 5}, "max_completion_tokens"), ({"model": "gpt-4o"}, "'model'")],
)
def test_bad_extras_are_rejected_before_the_stream_is_opened(
    client: chatcore.Client, server: StandInServer, extra: dict[str, Any], needle: str
) -> None:
    with pytest.raises(exc.ValidationError) as info:
        client.stream("openai:gpt-4o-mini", "Hi", extra=extra)
    assert needle in str(info.value)
    assert server.requests == []


def test_401_before_the_stream(make_client: Any, server: StandInServer, openai_key: str) -> None:
    wrong = "sk-proj-WRONGsecretKEY0123456789abcdefXYZ"
    client = make_client({"openai": {"api_key": wrong, "base_url": server.base_url}})
    with pytest.raises(exc.AuthenticationError) as info:
        client.stream("openai:gpt-4o-mini", "x")
    err = info.value
    assert err.status_code == 401
    for text in (str(err), repr(err), json.dumps(err.body), err.message):
        assert wrong not in text
        assert openai_key not in text
    assert len(server.requests) == 1


def test_error_status_before_the_stream_is_retried(
    make_client: Any, server: StandInServer, openai_key: str
) -> None:
    client = make_client(
        {"openai": {"api_key": openai_key, "base_url": server.base_url}},
        max_retries=None,
        retry=chatcore.RetryPolicy(sleep=lambda _s: None),
    )
    server.enqueue(Reply.error(500, "The server had an error"))
    stream = client.stream("openai:gpt-4o-mini", "retry")
    assert stream.attempts == 2
    assert stream.read().text.endswith("retry")
    assert len(server.requests) == 2


# --------------------------------------------------------------------------------------
# Azure


def test_azure_stream_with_empty_first_chunk(
    azure: chatcore.Client, azure_server: StandInServer, azure_key: str
) -> None:
    stream = azure.stream("azure:my-gpt4o", "Azure stream")
    chunks = list(stream)
    first = chunks[0]
    assert first.choices == () and first.id == ""
    assert first.request_id  # x-request-id / apim-request-id of the answer
    text = "".join(c.text for c in chunks)
    assert text == "Hello from the chatcore stand-in server. You said: Azure stream"
    response = stream.response
    assert response is not None
    assert response.text == text
    assert response.id.startswith("chatcmpl-")  # not the empty id of the first chunk
    assert response.model == "my-gpt4o"
    assert response.provider == "azure"
    assert response.choices[0].finish_reason == "stop"
    assert response.usage is not None and response.usage.total_tokens > 0
    assert response.request_id == first.request_id

    sent = azure_server.last_request
    assert sent.path == "/openai/deployments/my-gpt4o/chat/completions"
    assert sent.header("api-key") == azure_key
    assert sent.json() == {
        "messages": [{"role": "user", "content": "Azure stream"}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }


def test_azure_request_id_falls_back_to_apim(
    azure: chatcore.Client, azure_server: StandInServer
) -> None:
    azure_server.enqueue(
        Reply.sse([{"id": "", "choices": []}], headers={"apim-request-id": "apim-1"})
    )
    stream = azure.stream("azure:my-gpt4o", "x")
    assert stream.request_id == "apim-1"
    assert stream.read().choices == ()


def test_azure_401_before_the_stream(
    make_client: Any, azure_server: StandInServer, azure_key: str
) -> None:
    wrong = "0123456789abcdefWRONGazureKEY0000"
    client = make_client({"azure": {"api_key": wrong, "endpoint": azure_server.url}})
    with pytest.raises(exc.AuthenticationError) as info:
        client.stream("azure:my-gpt4o", "x")
    for text in (str(info.value), repr(info.value), json.dumps(info.value.body)):
        assert wrong not in text
        assert azure_key not in text
