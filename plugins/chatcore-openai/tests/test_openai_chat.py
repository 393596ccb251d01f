"""The ``openai`` provider over real HTTP: the round trip, the exact request sent, and
bodies the stand-in server validates as strictly as the real API."""

from __future__ import annotations

import json
from typing import Any

import pytest

import chatcore
from chatcore.testing.server import DEFAULT_MODELS, STANDIN_NOTICE, Reply, StandInServer

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather of a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


def test_round_trip(client: chatcore.Client, server: StandInServer) -> None:
    usage = {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12}
    server.enqueue(Reply.chat("Hi there!", usage=usage))

    response = client.chat("openai:gpt-4o-mini", "Hello")

    assert response.text == "Hi there!"
    assert response.finish_reason == "stop"
    assert response.model == "gpt-4o-mini"
    assert response.id.startswith("chatcmpl-")
    assert response.usage is not None
    assert (response.usage.prompt_tokens, response.usage.completion_tokens) == (9, 3)
    assert response.usage.total_tokens == 12
    assert response.request_id is not None
    assert response.request_id.startswith("req_")
    assert response.latency > 0
    assert response.attempts == 1
    assert response.provider == "openai"
    assert not response.cached
    assert len(server.requests) == 1


def test_default_answer_of_the_strict_endpoint(client: chatcore.Client) -> None:
    response = client.chat("openai:gpt-4o-mini", "Hello")
    assert response.text.startswith(STANDIN_NOTICE)


def test_exact_request_body_and_headers(
    make_client: Any, server: StandInServer, openai_key: str
) -> None:
    client = make_client(
        {
            "openai": {
                "api_key": openai_key,
                "base_url": server.base_url,
                "organization": "org-test",
                "project": "proj_test",
            }
        }
    )
    client.chat(
        "openai:gpt-4o-mini",
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"}],
        temperature=0.5,
        max_completion_tokens=20,
    )

    sent = server.last_request
    assert sent.method == "POST"
    assert sent.path == "/v1/chat/completions"
    assert sent.query == {}
    assert sent.json() == {
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hello"},
        ],
        "temperature": 0.5,
        "max_completion_tokens": 20,
    }
    assert sent.header("authorization") == f"Bearer {openai_key}"
    assert sent.header("openai-organization") == "org-test"
    assert sent.header("openai-project") == "proj_test"
    assert sent.header("content-type") == "application/json"
    assert sent.header("accept") == "application/json"
    user_agent = sent.header("user-agent") or ""
    assert f"chatcore/{chatcore.__version__}" in user_agent
    assert "chatcore-openai/0.1.0" in user_agent
    assert "api-key" not in sent.headers


def test_optional_headers_are_absent_when_unset(
    client: chatcore.Client, server: StandInServer
) -> None:
    client.chat("openai:gpt-4o-mini", "Hello")
    assert "openai-organization" not in server.last_request.headers
    assert "openai-project" not in server.last_request.headers


TOOL_TURN = [
    {"role": "developer", "content": "Use tools."},
    {"role": "user", "content": "Weather in Paris?"},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
            }
        ],
    },
    {"role": "tool", "tool_call_id": "call_1", "content": "sunny, 21 C"},
]

IMAGE_TURN = [
    {
        "role": "user",
        "content": [
            {"type": "text", "text": "What is this?"},
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
            {
                "type": "image_url",
                "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"},
            },
        ],
    }
]

SPREAD: dict[str, tuple[Any, dict[str, Any]]] = {
    "temperature-top_p": ("Hi", {"temperature": 0.0, "top_p": 1.0}),
    "stop-str": ("Hi", {"stop": "\n"}),
    "stop-list": ("Hi", {"stop": ["END", "STOP", "\n\n", "###"]}),
    "max_tokens": ("Hi", {"max_tokens": 16}),
    "max_completion_tokens": ("Hi", {"max_completion_tokens": 16}),
    "n-penalties": ("Hi", {"n": 2, "presence_penalty": 0.5, "frequency_penalty": -0.5}),
    "seed-user": ("Hi", {"seed": 42, "user": "user-1234"}),
    "logprobs": ("Hi", {"logprobs": True, "top_logprobs": 3}),
    "logit_bias": ("Hi", {"logit_bias": {"50256": -100, "1234": 5}}),
    "tools-auto": ("Hi", {"tools": [WEATHER_TOOL], "tool_choice": "auto"}),
    "tools-named": (
        "Hi",
        {
            "tools": [WEATHER_TOOL],
            "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
            "parallel_tool_calls": False,
        },
    ),
    "tools-strict": (
        "Hi",
        {
            "tools": [
                {
                    "type": "function",
                    "function": {**WEATHER_TOOL["function"], "strict": True},
                }
            ],
            "tool_choice": "required",
        },
    ),
    "json_object": ("Reply in JSON", {"response_format": {"type": "json_object"}}),
    "json_schema": (
        "Hi",
        {
            "response_format": {
                "type": "json_schema",
                "json_schema": {
                    "name": "answer",
                    "strict": True,
                    "schema": {
                        "type": "object",
                        "properties": {"a": {"type": ["string", "null"], "default": None}},
                        "required": ["a"],
                        "additionalProperties": False,
                    },
                },
            }
        },
    ),
    "passthrough-kwargs": (
        "Hi",
        {
            "reasoning_effort": "low",
            "service_tier": "auto",
            "metadata": {"run": "test"},
            "store": False,
            "safety_identifier": "u-1",
            "prompt_cache_key": "k1",
            "verbosity": "low",
        },
    ),
    "passthrough-extra": ("Hi", {"extra": {"reasoning_effort": "medium", "verbosity": None}}),
    "stream_options-dropped": ("Hi", {"stream_options": {"include_usage": True}}),
    "tool-conversation": (TOOL_TURN, {"tools": [WEATHER_TOOL]}),
    "image-parts": (IMAGE_TURN, {}),
}


@pytest.mark.parametrize(("messages", "params"), SPREAD.values(), ids=SPREAD.keys())
def test_strict_server_accepts_every_body(
    client: chatcore.Client,
    server: StandInServer,
    walk_values: Any,
    messages: Any,
    params: dict[str, Any],
) -> None:
    response = client.chat("openai:gpt-4o-mini", messages, **params)

    assert response.choices  # the strict default endpoint answered 200
    body = server.last_request.json()
    # no null anywhere (a user's JSON schema may hold one, e.g. a default: it is sent as given)
    outside_schema = {k: v for k, v in body.items() if k != "response_format"}
    assert all(v is not None for v in walk_values(outside_schema))
    assert "stream" not in body
    assert "stream_options" not in body
    for key, value in params.items():
        if key in ("extra", "stream_options"):
            continue
        expected = list(value) if isinstance(value, tuple) else value
        assert body[key] == expected, key


def test_extras_are_sent_and_nones_dropped(client: chatcore.Client, server: StandInServer) -> None:
    client.chat("openai:gpt-4o-mini", "Hi", extra={"reasoning_effort": "high", "verbosity": None})
    body = server.last_request.json()
    assert body["reasoning_effort"] == "high"
    assert "verbosity" not in body


def test_tool_only_keys_need_tools(client: chatcore.Client, server: StandInServer) -> None:
    # extra bypasses the core's check; the body must still be one the API accepts
    client.chat(
        "openai:gpt-4o-mini", "Hi", extra={"parallel_tool_calls": True, "tool_choice": "auto"}
    )
    body = server.last_request.json()
    assert "parallel_tool_calls" not in body
    assert "tool_choice" not in body


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        ({"max_new_tokens": 5}, "max_completion_tokens"),
        ({"stop_sequences": ["x"]}, "use stop"),
        ({"details": True}, "details"),
        ({"model": "gpt-4o"}, "'model'"),
        ({"messages": []}, "'messages'"),
    ],
)
def test_bad_extras_are_rejected_before_sending(
    client: chatcore.Client, server: StandInServer, extra: dict[str, Any], needle: str
) -> None:
    with pytest.raises(chatcore.ValidationError) as info:
        client.chat("openai:gpt-4o-mini", "Hi", extra=extra)
    assert needle in str(info.value)
    assert server.requests == []


def test_a_previous_answer_can_be_sent_back(client: chatcore.Client, server: StandInServer) -> None:
    first = client.chat("openai:gpt-4o-mini", "Hello")
    assert first.message is not None
    second = client.chat(
        "openai:gpt-4o-mini",
        [{"role": "user", "content": "Hello"}, first.message, {"role": "user", "content": "And?"}],
    )
    assert second.choices
    sent = server.last_request.json()["messages"][1]
    assert sent == {"role": "assistant", "content": first.text}


def test_tool_call_answer(client: chatcore.Client, server: StandInServer) -> None:
    server.enqueue(Reply.chat(tool_calls=[{"name": "get_weather", "arguments": {"city": "Paris"}}]))
    response = client.chat("openai:gpt-4o-mini", "Weather?", tools=[WEATHER_TOOL])
    assert response.finish_reason == "tool_calls"
    (call,) = response.tool_calls
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    assert response.text == ""


def test_unknown_response_fields_are_ignored(
    client: chatcore.Client, server: StandInServer
) -> None:
    server.enqueue(
        Reply.json(
            {
                "id": "chatcmpl-x",
                "object": "chat.completion",
                "created": 1,
                "model": "llama3",
                "brand_new_field": {"a": 1},
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "ok", "reasoning": "hmm"},
                        "finish_reason": "stop",
                        "stop_reason": None,
                    }
                ],
            }
        )
    )
    response = client.chat("openai:llama3", "Hi")
    assert response.text == "ok"
    assert response.usage is None
    assert response.request_id is None


def test_list_models(client: chatcore.Client, server: StandInServer, openai_key: str) -> None:
    models = client.list_models("openai")
    assert [m.id for m in models] == list(DEFAULT_MODELS["openai"])
    assert all(m.provider == "openai" for m in models)
    assert models[0].owned_by == "openai"
    sent = server.last_request
    assert (sent.method, sent.path) == ("GET", "/v1/models")
    assert sent.header("authorization") == f"Bearer {openai_key}"
    assert sent.body == b""


def test_list_models_rejects_a_non_list(client: chatcore.Client, server: StandInServer) -> None:
    server.enqueue(Reply.json({"object": "list"}))
    with pytest.raises(chatcore.ResponseDecodeError, match="'data' array"):
        client.list_models("openai")
