"""The pure translation, with no server: requests into Messages bodies (and the refusals of
what the API would answer 400), answers and event streams into responses and chunks, usage,
finish reasons, error bodies, model lists and rate-limit headers."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chatcore._stream import StreamAssembler
from chatcore._validate import build_request
from chatcore.exceptions import (
    AuthenticationError,
    BadRequestError,
    ContextWindowExceededError,
    ModelNotFoundError,
    NotFoundError,
    QuotaExceededError,
    RateLimitError,
    RequestTooLargeError,
    ResponseDecodeError,
    ServerError,
    ServiceUnavailableError,
    StreamError,
    ValidationError,
)
from chatcore.models import ChatRequest
from chatcore.provider import HttpResult, SSEEvent
from chatcore_anthropic._answer import (
    FINISH_REASONS,
    map_error,
    models_from_payload,
    parse_message,
    parse_timestamp,
    rate_limit_headers,
    usage_from,
)
from chatcore_anthropic._request import messages_body
from chatcore_anthropic._stream import MessagesStreamDecoder

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 16
PDF = b"%PDF-1.7\n%stand-in\n"

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


def request(messages: Any = "Hello", **params: Any) -> ChatRequest:
    return build_request("anthropic", "claude-haiku-4-5", messages, params)


def body(messages: Any = "Hello", *, sampling: bool = False, **params: Any) -> dict[str, Any]:
    return messages_body(request(messages, **params), sampling_params=sampling)[0]


def problems(messages: Any = "Hello", *, sampling: bool = False, **params: Any) -> dict[str, str]:
    with pytest.raises(ValidationError) as info:
        messages_body(request(messages, **params), sampling_params=sampling)
    return dict(info.value.problems)


def data_url(mime: str, raw: bytes) -> str:
    return f"data:{mime};base64,{base64.b64encode(raw).decode()}"


# --------------------------------------------------------------------------------------
# Messages


def test_the_smallest_body_has_the_required_max_tokens():
    assert body() == {
        "model": "claude-haiku-4-5",
        "max_tokens": 4096,
        "messages": [{"role": "user", "content": "Hello"}],
    }
    assert messages_body(request(), default_max_tokens=100)[0]["max_tokens"] == 100
    assert body(max_tokens=7)["max_tokens"] == 7
    assert body(max_completion_tokens=9)["max_tokens"] == 9
    assert "max_tokens" in problems(max_tokens=7, max_completion_tokens=9)
    assert messages_body(request(), stream=True)[0]["stream"] is True


def test_system_messages_lead_into_system_and_later_ones_are_system_turns():
    sent = body(
        [
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": [{"type": "text", "text": "Use French."}]},
            {"role": "user", "content": "Hello"},
            {"role": "assistant", "content": "Bonjour"},
            {"role": "system", "content": "Now use German."},
            {"role": "user", "content": "Again"},
        ]
    )
    assert sent["system"] == [
        {"type": "text", "text": "Be brief."},
        {"type": "text", "text": "Use French."},
    ]
    assert sent["messages"] == [
        {"role": "user", "content": "Hello"},
        {"role": "assistant", "content": "Bonjour"},
        {
            "role": "system",
            "content": [
                {
                    "type": "mid_conv_system",
                    "content": [{"type": "text", "text": "Now use German."}],
                }
            ],
        },
        {"role": "user", "content": "Again"},
    ]
    one = [{"role": "system", "content": "One."}, {"role": "user", "content": "Hi"}]
    assert body(one)["system"] == "One."


def test_a_tool_loop_becomes_tool_use_and_user_tool_results_first():
    sent = body(
        [
            {"role": "user", "content": "Weather in Paris and Rome?"},
            {
                "role": "assistant",
                "content": "Let me look.",
                "tool_calls": [
                    {
                        "id": "toolu_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                    },
                    {
                        "id": "toolu_2",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": ""},
                    },
                ],
            },
            {"role": "tool", "tool_call_id": "toolu_1", "content": "sunny"},
            {"role": "tool", "tool_call_id": "toolu_2", "content": ""},
            {"role": "user", "content": "Thanks, and tomorrow?"},
        ],
        tools=[WEATHER],
    )
    assert sent["messages"][1] == {
        "role": "assistant",
        "content": [
            {"type": "text", "text": "Let me look."},
            {
                "type": "tool_use",
                "id": "toolu_1",
                "name": "get_weather",
                "input": {"city": "Paris"},
            },
            {"type": "tool_use", "id": "toolu_2", "name": "get_weather", "input": {}},
        ],
    }
    assert sent["messages"][2] == {
        "role": "user",
        "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"},
            {"type": "tool_result", "tool_use_id": "toolu_2"},
            {"type": "text", "text": "Thanks, and tomorrow?"},
        ],
    }
    assert len(sent["messages"]) == 3


def test_turns_of_one_role_merge_and_empty_assistant_turns_are_left_out():
    sent = body(
        [
            {"role": "user", "content": "one"},
            {"role": "assistant", "content": ""},
            {"role": "user", "content": [{"type": "text", "text": "two"}]},
            {"role": "assistant", "content": "   "},
        ]
    )
    assert sent["messages"] == [
        {
            "role": "user",
            "content": [{"type": "text", "text": "one"}, {"type": "text", "text": "two"}],
        }
    ]


def test_refusals_of_what_the_api_refuses_in_messages():
    found = problems(
        [
            {"role": "user", "content": " "},
            {"role": "assistant", "content": "a prefill with a trailing space "},
        ]
    )
    assert "messages[0].content" in found
    assert "whitespace" in found["messages"]  # every problem is listed at once
    found = problems([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "x "}])
    assert "whitespace" in found["messages"]
    bad_arguments = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "t", "type": "function", "function": {"name": "f", "arguments": "[1]"}}
        ],
    }
    found = problems([{"role": "user", "content": "hi"}, bad_arguments])
    assert "JSON object" in found["messages[1].tool_calls[0].function.arguments"]
    audio = {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}
    found = problems([{"role": "user", "content": [audio]}])
    assert "input_audio" in found["messages[0].content[0]"]


def test_images_are_sent_as_their_bytes_say():
    sent = body(
        [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Compare"},
                    # declared PNG, but JPEG bytes: the API would answer 400
                    {"type": "image_url", "image_url": {"url": data_url("image/png", JPEG)}},
                    {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
                ],
            }
        ]
    )
    blocks = sent["messages"][0]["content"]
    assert blocks[1] == {
        "type": "image",
        "source": {
            "type": "base64",
            "media_type": "image/jpeg",
            "data": base64.b64encode(JPEG).decode(),
        },
    }
    assert blocks[2] == {
        "type": "image",
        "source": {"type": "url", "url": "https://example.com/a.png"},
    }
    bmp = data_url("image/bmp", b"BM" + b"\x00" * 20)
    found = problems(
        [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": bmp}}]}]
    )
    assert "JPEG, PNG, GIF or WebP" in found["messages[0].content[0]"]
    broken = "data:image/png;base64,***not base64***"
    found = problems(
        [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": broken}}]}]
    )
    assert "base64" in found["messages[0].content[0]"]


def test_files_become_documents():
    pdf = {
        "type": "file",
        "file": {"file_data": data_url("application/pdf", PDF), "filename": "a.pdf"},
    }
    text = {"type": "file", "file": {"file_data": data_url("text/plain", "héllo".encode())}}
    sent = body([{"role": "user", "content": [pdf, text, {"type": "text", "text": "Summarize"}]}])
    blocks = sent["messages"][0]["content"]
    assert blocks[0] == {
        "type": "document",
        "source": {
            "type": "base64",
            "media_type": "application/pdf",
            "data": base64.b64encode(PDF).decode(),
        },
        "title": "a.pdf",
    }
    assert blocks[1]["source"] == {"type": "text", "media_type": "text/plain", "data": "héllo"}
    found = problems([{"role": "user", "content": [{"type": "file", "file": {"file_id": "f1"}}]}])
    assert "Files API" in found["messages[0].content[0].file"]


# --------------------------------------------------------------------------------------
# Parameters


def test_sampling_parameters_are_refused_unless_the_option_allows_them():
    """The current Messages API has no temperature / top_p / top_k: a ValidationError
    that names each and the option, before anything is sent."""
    found = problems(temperature=0.3, top_p=0.9, extra={"top_k": 5})
    assert set(found) == {"temperature", "top_p", "extra.top_k"}
    assert all("sampling_params" in message for message in found.values())
    assert "temperature" not in body()
    assert body(sampling=True, temperature=0.3)["temperature"] == 0.3


def test_parameters_map_onto_the_messages_api():
    sent = body(
        sampling=True,
        temperature=0.3,
        top_p=0.9,
        stop=["\n\n", "END"],
        user="user-7",
        n=1,
        extra={"top_k": 5, "service_tier": "auto", "cache_control": {"type": "ephemeral"}},
    )
    assert sent["temperature"] == 0.3 and sent["top_p"] == 0.9
    assert sent["stop_sequences"] == ["\n\n", "END"]
    assert sent["metadata"] == {"user_id": "user-7"}
    assert sent["top_k"] == 5 and sent["service_tier"] == "auto"
    assert sent["cache_control"] == {"type": "ephemeral"}
    assert "n" not in sent
    assert body(stop="END")["stop_sequences"] == ["END"]


def test_what_the_messages_api_lacks_is_refused_all_at_once():
    found = problems(
        sampling=True,
        temperature=1.5,
        seed=1,
        presence_penalty=0.1,
        frequency_penalty=0.1,
        logit_bias={"1": 1},
        logprobs=True,
        top_logprobs=2,
        n=2,
        response_format={"type": "json_object"},
        extra={"store": True, "top_k": -1, "service_tier": "flex"},
    )
    for name in (
        "temperature",
        "seed",
        "presence_penalty",
        "frequency_penalty",
        "logit_bias",
        "logprobs",
        "top_logprobs",
        "n",
        "response_format",
        "extra.store",
        "extra.top_k",
        "extra.service_tier",
    ):
        assert name in found, name


def test_thinking_and_its_rules():
    thinking = {"type": "enabled", "budget_tokens": 2048}
    sent = body(extra={"thinking": thinking})
    assert sent["thinking"] == thinking
    assert sent["max_tokens"] == 4096 + 2048  # the default plus the budget
    assert body(max_tokens=4000, extra={"thinking": thinking})["max_tokens"] == 4000
    assert "extra.thinking.budget_tokens" in problems(max_tokens=1024, extra={"thinking": thinking})
    assert "extra.thinking.budget_tokens" in problems(
        extra={"thinking": {"type": "enabled", "budget_tokens": 512}}
    )
    assert "extra.thinking" in problems(extra={"thinking": {"type": "sometimes"}})
    found = problems(
        sampling=True,
        temperature=0.5,
        top_p=0.5,
        tools=[WEATHER],
        tool_choice="required",
        extra={"thinking": {"type": "adaptive"}, "top_k": 3},
    )
    assert {"temperature", "top_p", "tool_choice", "extra.top_k"} <= set(found)
    assert (
        body(sampling=True, temperature=1, extra={"thinking": {"type": "adaptive"}})["temperature"]
        == 1
    )
    assert body(extra={"thinking": {"type": "disabled"}})["thinking"] == {"type": "disabled"}


def test_structured_output_goes_to_output_config():
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    sent = body(
        response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": schema}},
        reasoning_effort="high",
    )
    assert sent["output_config"] == {
        "effort": "high",
        "format": {"type": "json_schema", "schema": schema},
    }
    assert "response_format" not in sent
    assert body(response_format={"type": "text"}).get("output_config") is None
    assert "reasoning_effort" in problems(reasoning_effort="minimal")
    assert "response_format" in problems(
        response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": schema}},
        extra={"output_config": {"format": {"type": "json_schema", "schema": schema}}},
    )


@pytest.mark.parametrize(
    ("choice", "parallel", "expected"),
    [
        ("auto", None, {"type": "auto"}),
        ("none", None, {"type": "none"}),
        ("required", None, {"type": "any"}),
        (
            {"type": "function", "function": {"name": "get_weather"}},
            None,
            {"type": "tool", "name": "get_weather"},
        ),
        ({"type": "any"}, None, {"type": "any"}),
        (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
        ("required", False, {"type": "any", "disable_parallel_tool_use": True}),
        (None, None, None),
    ],
)
def test_tool_choice(choice, parallel, expected):
    params: dict[str, Any] = {"tools": [WEATHER]}
    if choice is not None:
        params["tool_choice"] = choice
    if parallel is not None:
        params["parallel_tool_calls"] = parallel
    sent = body(**params)
    assert sent.get("tool_choice") == expected
    assert sent["tools"] == [
        {
            "name": "get_weather",
            "description": "The weather in a city",
            "input_schema": WEATHER["function"]["parameters"],
        }
    ]


def test_tool_definitions_and_choices_the_api_refuses():
    found = problems(
        tools=[WEATHER], tool_choice={"type": "function", "function": {"name": "nope"}}
    )
    assert "tool_choice" in found
    odd = {"type": "function", "function": {"name": "f", "parameters": {"type": "array"}}}
    assert "tools[0].function.parameters" in problems(tools=[odd])
    bare = {"type": "function", "function": {"name": "f"}}
    assert body(tools=[bare])["tools"] == [
        {"name": "f", "input_schema": {"type": "object", "properties": {}}}
    ]


def test_native_parameters_in_extra():
    system = [
        {"type": "text", "text": "Long rules.", "cache_control": {"type": "ephemeral", "ttl": "1h"}}
    ]
    native_tool = {"name": "web_search", "type": "web_search_20250305"}
    sent, headers = messages_body(
        request(extra={"system": system, "tools": [native_tool], "betas": ["b1", "b2"]})
    )
    assert sent["system"] == system
    assert sent["tools"] == [native_tool]
    assert headers == {"anthropic-beta": "b1,b2"}
    assert "extra.system" in problems(
        [{"role": "system", "content": "x"}, {"role": "user", "content": "hi"}],
        extra={"system": "y"},
    )
    assert "extra.tools" in problems(tools=[WEATHER], extra={"tools": [native_tool]})
    assert "extra.cache_control" in problems(extra={"cache_control": {"type": "forever"}})
    assert "extra.metadata" in problems(extra={"metadata": {"tag": "x"}})
    assert "extra.betas" in problems(extra={"betas": [1]})
    unknown = problems(extra={"stop_reason": "x"})
    assert "thinking" in unknown["extra.stop_reason"]  # it lists what extra may hold


# --------------------------------------------------------------------------------------
# Answers


def result(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> HttpResult:
    headers = {"request-id": "req_1", **(headers or {})}
    return HttpResult(status, headers, data, 0.01, headers.get("request-id"))


def message(content: list[dict[str, Any]], stop: str = "end_turn", **usage: Any) -> dict[str, Any]:
    return {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-haiku-4-5",
        "content": content,
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": {"input_tokens": 10, "output_tokens": 5, **usage},
    }


def parse(data: Any) -> Any:
    return parse_message(result(data), request(), provider="anthropic", secrets=(), created=7)


def test_a_message_with_every_block_kind():
    thinking = {"type": "thinking", "thinking": "Plan it.", "signature": "sig"}
    redacted = {"type": "redacted_thinking", "data": "opaque"}
    response = parse(
        message(
            [
                thinking,
                redacted,
                {"type": "text", "text": "Checking "},
                {"type": "server_tool_use", "id": "s", "name": "web_search", "input": {}},
                {"type": "text", "text": "the weather."},
                {
                    "type": "tool_use",
                    "id": "toolu_1",
                    "name": "get_weather",
                    "input": {"city": "Paris"},
                },
            ],
            stop="tool_use",
        )
    )
    assert (response.id, response.model, response.created) == ("msg_1", "claude-haiku-4-5", 7)
    assert (response.provider, response.request_id) == ("anthropic", "req_1")
    assert response.text == "Checking the weather."
    assert response.finish_reason == "tool_calls"
    (call,) = response.tool_calls
    assert (call.id, call.function.name, json.loads(call.function.arguments)) == (
        "toolu_1",
        "get_weather",
        {"city": "Paris"},
    )
    assert response.message.reasoning_content == "Plan it."
    assert response.message.reasoning_details == (thinking, redacted)
    assert response.to_dict()["choices"][0]["message"]["reasoning_content"] == "Plan it."


def test_tool_use_only_has_no_content_and_refusals_say_so():
    only_call = parse(
        message([{"type": "tool_use", "id": "t", "name": "f", "input": {}}], "tool_use")
    )
    assert only_call.message.content is None
    refused = parse(
        {
            **message([], "refusal"),
            "stop_details": {"type": "refusal", "category": "cyber", "explanation": "No."},
        }
    )
    assert (refused.text, refused.finish_reason, refused.message.refusal) == (
        "",
        "content_filter",
        "No.",
    )


@pytest.mark.parametrize("stop_reason", [*FINISH_REASONS, "pause_turn", "a_new_reason"])
def test_finish_reasons(stop_reason):
    expected = FINISH_REASONS.get(stop_reason, stop_reason)
    assert parse(message([{"type": "text", "text": "x"}], stop_reason)).finish_reason == expected
    assert {
        "end_turn": "stop",
        "stop_sequence": "stop",
        "max_tokens": "length",
        "model_context_window_exceeded": "length",
        "tool_use": "tool_calls",
        "refusal": "content_filter",
    }.get(stop_reason, stop_reason) == expected


def test_usage_counts_every_input_token_and_types_the_parts():
    usage = usage_from(
        {
            "input_tokens": 10,
            "output_tokens": 50,
            "cache_creation_input_tokens": 200,
            "cache_read_input_tokens": 1000,
            "output_tokens_details": {"thinking_tokens": 30},
            "service_tier": "standard",
        }
    )
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (1210, 50, 1260)
    assert (usage.cached_tokens, usage.cache_creation_tokens, usage.reasoning_tokens) == (
        1000,
        200,
        30,
    )
    assert usage.prompt_tokens_details == {"cached_tokens": 1000}
    assert usage.completion_tokens_details == {"reasoning_tokens": 30}
    plain = usage_from({"input_tokens": 3, "output_tokens": 4})
    assert plain is not None and plain.cached_tokens is None and plain.reasoning_tokens is None
    assert usage_from(None) is None
    odd = usage_from({"input_tokens": True, "output_tokens": -1})
    assert odd is not None and (odd.prompt_tokens, odd.completion_tokens) == (0, 0)


@pytest.mark.parametrize(
    "data",
    [
        None,
        [],
        "text",
        {"type": "message"},
        {"type": "completion", "content": []},
        {"type": "error", "error": {"type": "api_error", "message": "boom"}},
        message([{"type": "text"}]),
        message([{"type": "tool_use", "id": "t", "name": "f", "input": "x"}]),
        message([{"type": "thinking", "thinking": "x"}]),
        message([{"type": "redacted_thinking"}]),
        message(["not a block"]),  # type: ignore[list-item]
    ],
)
def test_what_is_not_a_message_is_a_decode_error(data):
    with pytest.raises(ResponseDecodeError) as info:
        parse(data)
    assert info.value.provider == "anthropic"


def test_models_from_a_page():
    page = {
        "data": [
            {
                "type": "model",
                "id": "claude-a",
                "display_name": "A",
                "created_at": "2025-02-19T00:00:00Z",
            },
            {"type": "model", "id": "claude-b", "display_name": "B", "created_at": "soon"},
            {"type": "model"},
        ],
        "has_more": False,
    }
    models = models_from_payload(result(page), provider="anthropic", secrets=())
    assert [(m.id, m.owned_by, m.created) for m in models] == [
        ("claude-a", "anthropic", 1739923200),
        ("claude-b", "anthropic", None),
    ]
    with pytest.raises(ResponseDecodeError):
        models_from_payload(result({"models": []}), provider="anthropic", secrets=())


# --------------------------------------------------------------------------------------
# Errors


def error(
    status: int, kind: str, text: str, headers: dict[str, str] | None = None, **extra: Any
) -> Any:
    raw = {
        "type": "error",
        "error": {"type": kind, "message": text, **extra},
        "request_id": "req_body",
    }
    return map_error(status, json.dumps(raw).encode(), headers or {})


@pytest.mark.parametrize(
    ("status", "kind", "text", "cls"),
    [
        (400, "invalid_request_error", "messages: Field required", BadRequestError),
        (
            400,
            "invalid_request_error",
            "prompt is too long: 208000 tokens > 200000 maximum",
            ContextWindowExceededError,
        ),
        (
            400,
            "invalid_request_error",
            "Your credit balance is too low to access the Anthropic API.",
            QuotaExceededError,
        ),
        (401, "authentication_error", "invalid x-api-key", AuthenticationError),
        (402, "billing_error", "Payment required", QuotaExceededError),
        (404, "not_found_error", "model: claude-nope", ModelNotFoundError),
        (404, "not_found_error", "Not Found", NotFoundError),
        (413, "request_too_large", "Request exceeds the maximum size", RequestTooLargeError),
        (
            429,
            "rate_limit_error",
            "Number of request tokens has exceeded your rate limit",
            RateLimitError,
        ),
        (500, "api_error", "Internal server error", ServerError),
        (504, "timeout_error", "Request timed out", ServerError),
        (529, "overloaded_error", "Overloaded", ServiceUnavailableError),
    ],
)
def test_error_bodies_map_to_typed_errors(status, kind, text, cls):
    mapped = error(status, kind, text)
    assert type(mapped) is cls
    assert (mapped.status_code, mapped.error_type, mapped.message) == (status, kind, text)
    assert mapped.request_id == "req_body"  # the body's, when no header says it


def test_quota_and_throttling_are_told_apart():
    spend = error(
        429, "rate_limit_error", "limit", details={"error_code": "enforced_spend_limit_reached"}
    )
    assert isinstance(spend, QuotaExceededError) and spend.code == "enforced_spend_limit_reached"
    throttled = error(
        429, "rate_limit_error", "slow down", {"retry-after": "7", "request-id": "req_h"}
    )
    assert type(throttled) is RateLimitError
    assert (throttled.retry_after, throttled.request_id) == (7.0, "req_h")
    assert (
        error(529, "overloaded_error", "Overloaded", {"x-should-retry": "false"}).should_retry
        is False
    )


def test_other_error_bodies_are_left_to_the_core():
    assert map_error(400, b'{"error": {"message": "openai shape"}}', {}) is None
    assert map_error(502, b"<html>bad gateway</html>", {}) is None
    assert map_error(500, b"", {}) is None
    assert map_error(400, b'{"type": "error", "error": "a string"}', {}) is None


# --------------------------------------------------------------------------------------
# Rate limits


def test_rate_limit_headers_become_the_limiters_family():
    headers = {
        "Date": "Wed, 01 Jan 2025 00:00:00 GMT",
        "anthropic-ratelimit-requests-remaining": "49",
        "anthropic-ratelimit-requests-reset": "2025-01-01T00:00:12Z",
        "anthropic-ratelimit-tokens-remaining": "8000",
        "anthropic-ratelimit-tokens-reset": "2025-01-01T00:01:00Z",
        "anthropic-ratelimit-input-tokens-remaining": "5000",
        "anthropic-ratelimit-input-tokens-reset": "2025-01-01T00:00:00.250Z",
        "anthropic-ratelimit-output-tokens-remaining": "oops",
        "anthropic-ratelimit-output-tokens-reset": "2025-01-01T00:00:30Z",
    }
    out = rate_limit_headers(headers, now=0.0)  # the Date header is the reference
    assert out["x-ratelimit-remaining-requests"] == "49"
    assert out["x-ratelimit-reset-requests"] == "12.000s"
    # the most constrained token family: input tokens
    assert out["x-ratelimit-remaining-tokens"] == "5000"
    assert out["x-ratelimit-reset-tokens"] == "250ms"
    assert out["anthropic-ratelimit-requests-remaining"] == "49"  # the rest is kept
    from chatcore._limits import rate_limit_signals

    assert sorted(rate_limit_signals(out)) == [("requests", 49.0, 12.0), ("tokens", 5000.0, 0.25)]


def test_rate_limit_headers_without_a_date_use_the_clock_and_skip_what_is_unusable():
    now = parse_timestamp("2025-01-01T00:00:00Z")
    assert now is not None
    headers = {
        "anthropic-ratelimit-requests-remaining": "3",
        "anthropic-ratelimit-requests-reset": "2024-12-31T23:59:00Z",  # already past
        "anthropic-ratelimit-tokens-remaining": "inf",
        "anthropic-ratelimit-tokens-reset": "2025-01-01T00:00:05Z",
    }
    out = rate_limit_headers(headers, now=now)
    assert out["x-ratelimit-reset-requests"] == "0s"
    assert "x-ratelimit-remaining-tokens" not in out
    untouched = {"X-Other": "1"}
    assert rate_limit_headers(untouched, now=now) is untouched


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2025-01-01T00:00:00Z", 1735689600.0),
        ("2025-01-01T01:00:00+01:00", 1735689600.0),
        ("2025-01-01T01:00:00+0100", 1735689600.0),
        ("2025-01-01T00:00:00.5z", 1735689600.5),
        ("2025-01-01 00:00:00", 1735689600.0),
        ("2025-13-01T00:00:00Z", None),
        ("yesterday", None),
        (None, None),
    ],
)
def test_parse_timestamp(text, expected):
    assert parse_timestamp(text) == expected


# --------------------------------------------------------------------------------------
# Streams


def events_of(message_: dict[str, Any], splits: int = 2) -> list[SSEEvent]:
    """The event stream the API sends for ``message_`` (text and JSON in ``splits`` pieces)."""

    def pieces(text: str) -> list[str]:
        size = max(1, -(-len(text) // splits))
        return [text[i : i + size] for i in range(0, len(text), size)] or [""]

    out: list[dict[str, Any]] = []
    start = {**message_, "content": [], "stop_reason": None}
    start["usage"] = {**message_["usage"], "output_tokens": 1}
    out.append({"type": "message_start", "message": start})
    for index, block in enumerate(message_["content"]):
        kind = block["type"]
        if kind == "text":
            opening: dict[str, Any] = {"type": "text", "text": ""}
            deltas = [{"type": "text_delta", "text": p} for p in pieces(block["text"])]
        elif kind == "thinking":
            opening = {"type": "thinking", "thinking": "", "signature": ""}
            deltas = [{"type": "thinking_delta", "thinking": p} for p in pieces(block["thinking"])]
            deltas.append({"type": "signature_delta", "signature": block["signature"]})
        elif kind == "tool_use":
            opening = {**block, "input": {}}
            deltas = [
                {"type": "input_json_delta", "partial_json": p}
                for p in pieces(json.dumps(block["input"], ensure_ascii=False))
            ]
        else:
            opening, deltas = block, []
        out.append({"type": "content_block_start", "index": index, "content_block": opening})
        out.append({"type": "ping"})
        out += [{"type": "content_block_delta", "index": index, "delta": d} for d in deltas]
        out.append({"type": "content_block_stop", "index": index})
    delta = {"stop_reason": message_["stop_reason"], "stop_sequence": None}
    out.append({"type": "message_delta", "delta": delta, "usage": message_["usage"]})
    out.append({"type": "message_stop"})
    return [SSEEvent(json.dumps(e), e["type"]) for e in out]


def decode(events: list[SSEEvent]) -> tuple[list[Any], MessagesStreamDecoder]:
    decoder = MessagesStreamDecoder(provider="anthropic", model="claude-haiku-4-5", created=7)
    chunks = [c for e in events for c in decoder.feed(e)]
    chunks += list(decoder.end())
    return chunks, decoder


def assembled(chunks: list[Any]) -> Any:
    assembler = StreamAssembler()
    for chunk in chunks:
        assembler.add(chunk)
    return assembler.response(provider="anthropic")


_text = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=30)
_json_value = st.recursive(
    st.none() | st.booleans() | st.integers(-1000, 1000) | _text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3),
    max_leaves=6,
)
_blocks = st.lists(
    st.one_of(
        st.builds(lambda t: {"type": "text", "text": t}, _text),
        st.builds(
            lambda i, n, v: {"type": "tool_use", "id": f"toolu_{i}", "name": n, "input": v},
            st.integers(0, 999),
            st.from_regex(r"[a-z_]{1,12}", fullmatch=True),
            st.dictionaries(_text, _json_value, max_size=3),
        ),
        st.builds(
            lambda t, s: {"type": "thinking", "thinking": t, "signature": s},
            _text,
            st.from_regex(r"[A-Za-z0-9+/]{4,20}", fullmatch=True),
        ),
        st.builds(lambda d: {"type": "redacted_thinking", "data": d}, _text),
    ),
    max_size=5,
)
_usages = st.fixed_dictionaries(
    {"input_tokens": st.integers(0, 10**6), "output_tokens": st.integers(0, 10**6)},
    optional={
        "cache_creation_input_tokens": st.integers(0, 10**5),
        "cache_read_input_tokens": st.integers(0, 10**5),
        "output_tokens_details": st.fixed_dictionaries({"thinking_tokens": st.integers(0, 99)}),
    },
)


@settings(max_examples=150, deadline=None)
@given(
    _blocks,
    st.sampled_from(
        ["end_turn", "max_tokens", "tool_use", "stop_sequence", "refusal", "pause_turn"]
    ),
    _usages,
    st.integers(1, 5),
)
def test_a_stream_assembles_to_the_same_answer_as_the_message(blocks, stop, usage, splits):
    """Generated answers: whatever the blocks and however the text and tool input are split
    into deltas, the streamed answer assembles to what the same message decodes to."""
    data = message(blocks, stop, **usage)
    data["usage"] = usage
    whole = parse(data)
    chunks, decoder = decode(events_of(data, splits))
    assert decoder.done
    streamed = assembled(chunks)
    got, want = streamed.message, whole.message
    assert got.content == want.content
    assert got.reasoning_content == want.reasoning_content
    assert got.reasoning_details == want.reasoning_details
    assert [c.id for c in got.tool_calls or ()] == [c.id for c in want.tool_calls or ()]
    assert [json.loads(c.function.arguments) for c in got.tool_calls or ()] == [
        json.loads(c.function.arguments) for c in want.tool_calls or ()
    ]
    assert streamed.finish_reason == whole.finish_reason
    assert streamed.usage == whole.usage
    assert streamed.id == "msg_1" and all(c.id == "msg_1" for c in chunks)
    assert [c.choices[0]["delta"].get("role") for c in chunks[:1]] == ["assistant"]


def test_a_tool_call_whose_input_streams_nothing_gets_an_empty_object():
    data = message([{"type": "tool_use", "id": "t1", "name": "now", "input": {}}], "tool_use")
    events = [e for e in events_of(data) if '"input_json_delta"' not in e.data]
    (call,) = assembled(decode(events)[0]).tool_calls
    assert call.function.arguments == "{}"


def test_stream_events_that_are_not_content():
    decoder = MessagesStreamDecoder(provider="anthropic", model="m", created=0)
    assert decoder.feed(SSEEvent('{"type": "ping"}', "ping")) == ()
    assert decoder.feed(SSEEvent('{"type": "a_future_event"}', "a_future_event")) == ()
    assert decoder.feed(SSEEvent("[1, 2]", "message")) == ()
    # a delta for a block that never started is still text
    (chunk,) = decoder.feed(
        SSEEvent(
            json.dumps(
                {
                    "type": "content_block_delta",
                    "index": 3,
                    "delta": {"type": "text_delta", "text": "x"},
                }
            ),
            "content_block_delta",
        )
    )
    assert chunk.text == "x"
    assert decoder.done is False
    assert decoder.feed(SSEEvent('{"type": "message_stop"}', "message_stop")) == ()
    assert decoder.done is True
    assert decoder.feed(SSEEvent('{"type": "message_start"}', "message_start")) == ()
    assert decoder.end() == ()


@pytest.mark.parametrize(
    ("kind", "retry"),
    [("overloaded_error", True), ("api_error", True), ("invalid_request_error", False)],
)
def test_an_error_event_is_a_stream_error(kind, retry):
    decoder = MessagesStreamDecoder(
        provider="anthropic", model="m", created=0, secrets=["sk-ant-zzz-0123456789"]
    )
    start = message([{"type": "text", "text": "partial"}])
    for event in events_of(start)[:5]:
        decoder.feed(event)
    payload = {
        "type": "error",
        "error": {"type": kind, "message": "Overloaded sk-ant-zzz-0123456789"},
    }
    with pytest.raises(StreamError) as info:
        decoder.feed(SSEEvent(json.dumps(payload), "error"))
    assert info.value.error_type == kind
    assert info.value.should_retry is retry
    assert info.value.partial_text == "partial"
    assert "sk-ant-zzz" not in str(info.value)


def test_a_stream_that_is_cut_or_garbled_is_a_stream_error():
    decoder = MessagesStreamDecoder(provider="anthropic", model="m", created=0)
    for event in events_of(message([{"type": "text", "text": "half"}]))[:-1]:
        decoder.feed(event)
    with pytest.raises(StreamError, match="message_stop"):
        decoder.end()
    with pytest.raises(StreamError, match="not JSON"):
        MessagesStreamDecoder(provider="anthropic", model="m", created=0).feed(
            SSEEvent("{oops", "x")
        )


def test_the_plugin_has_no_io_of_its_own():
    """The provider translates only: no module of the plugin imports an HTTP library, a
    socket, a thread or a sleep (the core's transports send; its pipeline waits)."""
    import ast
    import pathlib

    import chatcore_anthropic

    forbidden = {
        "aiohttp",
        "anthropic",
        "asyncio",
        "http",
        "httpx",
        "requests",
        "socket",
        "ssl",
        "threading",
        "urllib",
        "urllib3",
    }
    package = pathlib.Path(chatcore_anthropic.__file__).parent
    found = []
    for path in sorted(package.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            found += [(path.name, n) for n in names if n.split(".")[0] in forbidden]
            if isinstance(node, ast.Attribute) and node.attr == "sleep":
                found.append((path.name, "sleep"))
    assert found == []


def test_what_is_carried_across_events_is_masked_by_the_decoder():
    """The core masks a chunk when its own event holds a secret; the decoder masks what it
    carries from earlier events: the message's id and model, and a thinking block whose
    text held the key in pieces."""
    key = "sk-ant-echoed-0123456789abcdef"
    thinking = {"type": "thinking", "thinking": f"the key is {key}", "signature": "sig"}
    data = message([thinking, {"type": "text", "text": "done"}])
    data["model"] = key
    data["id"] = f"msg_{key}"
    decoder = MessagesStreamDecoder(provider="anthropic", model="m", created=0, secrets=[key])
    chunks = [c for e in events_of(data, splits=7) for c in decoder.feed(e)]
    carried = [c for c in chunks if "reasoning_details" in c.choices[0]["delta"]]
    assert carried and all(key not in repr(c) for c in carried)
    assert all(key not in c.model and key not in c.id for c in chunks)
    assert carried[0].choices[0]["delta"]["reasoning_details"][0]["thinking"] == "the key is ***"
