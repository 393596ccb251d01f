from __future__ import annotations

import json

import attrs
import pytest
from hypothesis import given, settings

from chatcore.exceptions import ResponseDecodeError, ValidationError
from chatcore.models import (
    ChatRequest,
    ChatResponse,
    ImagePart,
    Message,
    TextPart,
    message_from_dict,
    normalize_messages,
)
from chatcore.testing.strategies import chat_completions, garbage_messages, messages


@given(chat_completions())
def test_response_round_trip_is_exact(body):
    assert ChatResponse.from_dict(body).to_dict() == body


@given(chat_completions())
def test_response_survives_json(body):
    resp = ChatResponse.from_dict(json.loads(json.dumps(body)), provider="p", latency=0.5)
    assert ChatResponse.from_dict(resp.to_dict()) == ChatResponse.from_dict(body)
    assert resp.provider == "p"
    assert "provider" not in resp.to_dict()


@given(messages())
def test_message_round_trip_is_exact(msg):
    assert message_from_dict(msg).to_dict() == msg


def test_string_means_one_user_message():
    assert normalize_messages("Hello") == (Message(role="user", content="Hello"),)


def test_mixed_inputs_are_normalized():
    out = normalize_messages(
        [
            {"role": "system", "content": "be brief"},
            Message(
                role="user",
                content=(TextPart("look"), ImagePart.from_url("https://x.invalid/a.png")),
            ),
        ]
    )
    assert out[0].role == "system"
    assert out[1].text == "look"


def test_every_problem_is_listed_with_its_path():
    with pytest.raises(ValidationError) as info:
        normalize_messages(
            [
                {"role": "user", "content": 5, "bogus": 1},
                {"role": "user", "content": [{"type": "nope"}]},
                7,
                {"content": "no role"},
            ]
        )
    paths = [p for p, _ in info.value.problems]
    assert paths == [
        "messages[0].content",
        "messages[0]",
        "messages[1].content[0].type",
        "messages[2]",
        "messages[3].role",
    ]
    assert "bogus" in str(info.value)


@given(garbage_messages())
@settings(max_examples=300, deadline=None)
def test_garbage_messages_raise_only_validation_error(garbage):
    try:
        result = normalize_messages(garbage)
    except ValidationError as exc:
        refused: ValidationError | None = exc
    else:
        refused = None
    if refused is not None:
        assert refused.problems
        assert all(where.startswith("messages") for where, _ in refused.problems)
        str(refused).encode("utf-8")
        return
    assert all(isinstance(m, Message) for m in result)
    if isinstance(garbage, str):
        assert result == (Message(role="user", content=garbage),)
    elif isinstance(garbage, (dict, Message)):
        assert len(result) == 1
    else:
        assert len(result) == len(garbage)


def test_unknown_payload_keys_are_ignored_and_required_ones_checked():
    body = {
        "id": "x",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "hi", "new": 1},
                "finish_reason": "stop",
            }
        ],
        "brand_new_field": True,
    }
    assert ChatResponse.from_dict(body).text == "hi"
    with pytest.raises(ResponseDecodeError) as info:
        ChatResponse.from_dict({"id": "x"}, provider="wire")
    assert "model" in str(info.value) or "choices" in str(info.value)


def test_request_body_omits_unset_parameters():
    req = ChatRequest(provider="p", model="m", messages=normalize_messages("hi"), temperature=0.0)
    assert req.to_openai_dict() == {
        "model": "m",
        "messages": [{"role": "user", "content": "hi"}],
        "temperature": 0.0,
    }


def test_response_helpers():
    resp = ChatResponse.from_dict(
        {
            "id": "x",
            "model": "m",
            "created": 1,
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": None,
                        "tool_calls": [
                            {
                                "id": "c1",
                                "type": "function",
                                "function": {"name": "f", "arguments": "{}"},
                            }
                        ],
                    },
                    "finish_reason": "tool_calls",
                }
            ],
        }
    )
    assert resp.text == ""
    assert resp.finish_reason == "tool_calls"
    assert resp.tool_calls[0].function.name == "f"


@given(chat_completions())
def test_fast_decoder_agrees_with_cattrs(body):
    from chatcore.models import _fast_response, _lenient

    fast = _fast_response(body, "p", {"request_id": "r"})
    slow = attrs.evolve(_lenient().structure(body, ChatResponse), provider="p", request_id="r")
    if fast is not None:
        assert fast == slow
        assert fast.to_dict() == slow.to_dict()
        assert (fast.provider, fast.request_id) == ("p", "r")


def test_fast_decoder_takes_the_common_shape_and_declines_the_rest():
    from chatcore.models import _fast_response

    plain = {
        "id": "c",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "hi",
                    "refusal": None,
                    "annotations": [],
                },
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3},
    }
    assert _fast_response(plain, "", {}) is not None
    with_tools = json.loads(json.dumps(plain))
    with_tools["choices"][0]["message"]["tool_calls"] = []
    assert _fast_response(with_tools, "", {}) is None
    as_bool = json.loads(json.dumps(plain))
    as_bool["usage"]["total_tokens"] = True
    assert _fast_response(as_bool, "", {}) is None


# --- typed usage and reasoning ------------------------------------------------------------


def test_usage_typed_fields_come_from_the_openai_details():
    from chatcore.models import Usage

    usage = Usage(
        10,
        5,
        15,
        prompt_tokens_details={"cached_tokens": 4, "audio_tokens": 0},
        completion_tokens_details={"reasoning_tokens": 2},
    )
    assert (usage.cached_tokens, usage.cache_creation_tokens, usage.reasoning_tokens) == (
        4,
        None,
        2,
    )
    # not reported, or not a count: None (a boolean is not a count)
    assert Usage(1, 1, 2).cached_tokens is None
    assert Usage(1, 1, 2, {"cached_tokens": True}, {"reasoning_tokens": "2"}).cached_tokens is None
    assert (
        Usage(1, 1, 2, {"cached_tokens": True}, {"reasoning_tokens": "2"}).reasoning_tokens is None
    )


@pytest.mark.parametrize("decode", ["fast", "cattrs"])
def test_usage_details_fill_the_typed_fields_whichever_decoder(decode):
    from chatcore.models import _fast_response, _lenient

    body = {
        "id": "c",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [],
        "usage": {
            "prompt_tokens": 100,
            "completion_tokens": 50,
            "total_tokens": 150,
            "prompt_tokens_details": {"cached_tokens": 64},
            "completion_tokens_details": {"reasoning_tokens": 32},
        },
    }
    response = (
        _fast_response(body, "", {})
        if decode == "fast"
        else _lenient().structure(body, ChatResponse)
    )
    assert response is not None and response.usage is not None
    assert (response.usage.cached_tokens, response.usage.reasoning_tokens) == (64, 32)
    assert response.usage.cache_creation_tokens is None
    assert response.to_dict() == body  # what the details say is not written twice


def test_usage_typed_fields_survive_the_dict_form():
    """A provider that fills the typed fields itself (Anthropic: cache writes have no OpenAI
    detail) keeps them through ``to_dict`` / ``from_dict`` (the response cache's form)."""
    from chatcore.models import Usage

    usage = Usage(
        120,
        30,
        150,
        prompt_tokens_details={"cached_tokens": 80},
        cached_tokens=80,
        cache_creation_tokens=20,
        reasoning_tokens=12,
    )
    response = ChatResponse("r", "m", (), usage=usage)
    data = response.to_dict()
    assert data["usage"] == {
        "prompt_tokens": 120,
        "completion_tokens": 30,
        "total_tokens": 150,
        "prompt_tokens_details": {"cached_tokens": 80},
        "cache_creation_tokens": 20,
        "reasoning_tokens": 12,
    }
    assert ChatResponse.from_dict(json.loads(json.dumps(data))).usage == usage
    # a typed field that disagrees with the details is kept as given
    odd = Usage(1, 1, 2, {"cached_tokens": 1}, cached_tokens=None)
    again = ChatResponse.from_dict(ChatResponse("r", "m", (), usage=odd).to_dict())
    assert again.usage == odd and again.usage is not None and again.usage.cached_tokens is None


def test_message_reasoning_round_trips_exactly():
    data = {
        "role": "assistant",
        "content": "42",
        "reasoning_content": "six times seven",
        "reasoning_details": [
            {"type": "thinking", "thinking": "six times seven", "signature": "EqQB"},
            {"type": "redacted_thinking", "data": "opaque"},
        ],
    }
    message = message_from_dict(data)
    assert message.reasoning_content == "six times seven"
    assert message.reasoning_details is not None and len(message.reasoning_details) == 2
    assert message.to_dict() == data
    body = {
        "id": "c",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [
            {
                "index": 0,
                "message": {**data, "refusal": None},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
    }
    assert ChatResponse.from_dict(body).to_dict() == body
    plain = json.loads(json.dumps(body))
    del plain["choices"][0]["message"]["reasoning_details"]
    from chatcore.models import _fast_response

    fast = _fast_response(plain, "", {})  # DeepSeek/vLLM's shape takes the fast path
    assert fast is not None and fast.message is not None
    assert fast.message.reasoning_content == "six times seven"
    assert fast.to_dict() == plain


def test_message_reasoning_is_checked_strictly():
    with pytest.raises(ValidationError) as info:
        normalize_messages(
            [
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": "x", "reasoning_details": ["not an object"]},
                {"role": "assistant", "content": "x", "reasoning_content": 5},
            ]
        )
    paths = [path for path, _ in info.value.problems]
    assert any(p.startswith("messages[1].reasoning_details") for p in paths), paths
    assert any(p.startswith("messages[2].reasoning_content") for p in paths), paths
    built = Message(role="assistant", content="x", reasoning_content=5)  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        normalize_messages([{"role": "user", "content": "hi"}, built])
