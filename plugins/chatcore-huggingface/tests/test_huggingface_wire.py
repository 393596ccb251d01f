"""Unit tests of the wire translation (``chatcore_huggingface._wire``): URL rules, TGI's
parameter rules, the /generate mapping and the checks made before sending."""

from __future__ import annotations

import pytest

from chatcore.exceptions import ResponseDecodeError, ValidationError
from chatcore.models import ChatRequest, ImagePart, ImageURL, Message, TextPart, Tool
from chatcore_huggingface._wire import (
    build_prompt,
    chat_body,
    chat_response,
    endpoints,
    generate_body,
    generate_response,
    models_from_payload,
    unsupported_combinations,
)


def request(**kwargs: object) -> ChatRequest:
    messages = kwargs.pop("messages", (Message(role="user", content="Hi"),))
    return ChatRequest(
        provider="huggingface",
        model=str(kwargs.pop("model", "tgi")),
        messages=messages,  # type: ignore[arg-type]
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(
    ("base", "chat", "models", "generate"),
    [
        (
            "https://router.huggingface.co/v1",
            "https://router.huggingface.co/v1/chat/completions",
            "https://router.huggingface.co/v1/models",
            "https://router.huggingface.co/generate",
        ),
        (
            "https://xyz.endpoints.huggingface.cloud/",
            "https://xyz.endpoints.huggingface.cloud/v1/chat/completions",
            "https://xyz.endpoints.huggingface.cloud/v1/models",
            "https://xyz.endpoints.huggingface.cloud/generate",
        ),
        (
            "http://localhost:8080/v1/",
            "http://localhost:8080/v1/chat/completions",
            "http://localhost:8080/v1/models",
            "http://localhost:8080/generate",
        ),
        (
            "https://router.huggingface.co/hf-inference/models/gpt2",
            "https://router.huggingface.co/hf-inference/models/gpt2/v1/chat/completions",
            "https://router.huggingface.co/hf-inference/models/gpt2/v1/models",
            "https://router.huggingface.co/hf-inference/models/gpt2/generate",
        ),
    ],
)
def test_endpoints_follow_huggingface_hub_url_rules(
    base: str, chat: str, models: str, generate: str
) -> None:
    urls = endpoints(base)
    assert (urls.chat, urls.models, urls.generate) == (chat, models, generate)


def test_chat_body_applies_tgi_rules_and_drops_nulls() -> None:
    body = chat_body(
        request(
            stop="\n",
            top_p=1.0,
            temperature=0.0,
            messages=(Message(role="user", content="Hi"),),
            extra={"ignored": None, "top_k": 5},
        )
    )
    assert body == {
        "model": "tgi",
        "messages": [{"role": "user", "content": "Hi"}],
        "stop": ["\n"],
        "temperature": 0.0,
        "top_k": 5,
    }


def test_chat_body_keeps_a_valid_top_p_and_a_stop_list() -> None:
    body = chat_body(request(top_p=0.9, stop=("a", "b")))
    assert body["top_p"] == 0.9
    assert body["stop"] == ["a", "b"]


def test_chat_body_sends_the_model_suffix_as_is() -> None:
    assert chat_body(request(model="openai/gpt-oss-120b:groq"))["model"] == (
        "openai/gpt-oss-120b:groq"
    )


def test_top_p_zero_is_rejected_in_both_modes() -> None:
    for build in (chat_body, generate_body):
        with pytest.raises(ValidationError, match="top_p") as info:
            build(request(top_p=0.0))
        assert info.value.problems[0][0] == "top_p"


def test_top_p_zero_in_extra_is_rejected_too() -> None:
    with pytest.raises(ValidationError, match="top_p"):
        chat_body(request(extra={"top_p": 0}))


def test_response_format_with_tools_is_rejected_for_chat() -> None:
    from chatcore.models import FunctionDefinition

    tool = Tool(function=FunctionDefinition(name="f"))
    req = request(tools=(tool,), response_format={"type": "json_object"})
    assert [p for p, _ in unsupported_combinations(req)] == ["response_format"]
    with pytest.raises(ValidationError, match="mutually exclusive"):
        chat_body(req)


def test_generate_body_maps_parameters() -> None:
    body = generate_body(
        request(
            max_tokens=20,
            temperature=0.5,
            top_p=0.9,
            stop="END",
            seed=7,
            frequency_penalty=0.5,
            extra={"top_k": 5, "return_full_text": None},
        )
    )
    assert body == {
        "inputs": "Hi",
        "parameters": {
            "max_new_tokens": 20,
            "temperature": 0.5,
            "do_sample": True,
            "top_p": 0.9,
            "stop": ["END"],
            "seed": 7,
            "frequency_penalty": 0.5,
            "return_full_text": False,
            "details": True,
            "top_k": 5,
        },
    }


def test_generate_body_greedy_and_max_completion_tokens() -> None:
    params = generate_body(
        request(temperature=0.0, top_p=1.0, max_tokens=5, max_completion_tokens=9)
    )["parameters"]
    assert params == {
        "max_new_tokens": 9,
        "do_sample": False,
        "return_full_text": False,
        "details": True,
    }


def test_extra_overrides_generate_defaults() -> None:
    params = generate_body(request(extra={"details": False, "return_full_text": True}))[
        "parameters"
    ]
    assert params["details"] is False
    assert params["return_full_text"] is True


def test_generate_rejects_what_it_cannot_express() -> None:
    image = ImagePart(image_url=ImageURL(url="https://example.com/a.png"))
    req = request(
        messages=(Message(role="user", content=(TextPart("look"), image)),),
        response_format={"type": "json_object"},
        logprobs=True,
        n=2,
    )
    paths = [p for p, _ in unsupported_combinations(req, "generate")]
    assert paths == ["response_format", "logprobs", "n", "messages[0].content"]
    with pytest.raises(ValidationError) as info:
        generate_body(req)
    assert len(info.value.problems) == 4


def test_build_prompt_single_user_message_is_sent_as_is() -> None:
    assert build_prompt([Message(role="user", content="Tell me a joke")]) == "Tell me a joke"


def test_build_prompt_transcript() -> None:
    prompt = build_prompt(
        [
            Message(role="system", content="Be brief."),
            Message(role="user", content="Hi"),
            Message(role="assistant", content="Hello!"),
            Message(role="user", content="Bye"),
        ]
    )
    assert prompt == "System: Be brief.\n\nUser: Hi\n\nAssistant: Hello!\n\nUser: Bye\n\nAssistant:"


def test_build_prompt_continues_a_final_assistant_message() -> None:
    prompt = build_prompt(
        [Message(role="user", content="Count"), Message(role="assistant", content="1, 2,")]
    )
    assert prompt == "User: Count\n\nAssistant: 1, 2,"


def test_generate_response_dict_and_legacy_list() -> None:
    req = request()
    resp = generate_response(
        {"generated_text": "ok", "details": {"finish_reason": "length", "generated_tokens": 2}},
        {"x-prompt-tokens": "3"},
        req,
        request_id="r1",
    )
    assert (resp.text, resp.finish_reason, resp.id, resp.model) == ("ok", "length", "r1", "tgi")
    assert resp.usage is not None
    assert (resp.usage.prompt_tokens, resp.usage.completion_tokens) == (3, 2)
    legacy = generate_response([{"generated_text": "old"}], {}, req, request_id=None)
    assert legacy.text == "old"
    assert legacy.usage is None
    assert legacy.finish_reason is None
    assert legacy.id.startswith("gen-")


@pytest.mark.parametrize("data", [None, {}, [], {"generated_text": 3}, "text"])
def test_generate_response_rejects_other_payloads(data: object) -> None:
    with pytest.raises(ResponseDecodeError):
        generate_response(data, {}, request(), request_id=None)


def test_chat_response_fills_missing_id_and_model_and_stringifies_arguments() -> None:
    data = {
        "id": "",
        "object": "text_completion",
        "created": 1,
        "choices": [
            {
                "index": 0,
                "finish_reason": "tool_calls",
                "message": {
                    "role": "assistant",
                    "tool_calls": [
                        {
                            "id": "0",
                            "type": "function",
                            "function": {"name": "f", "arguments": {"x": 1}},
                        }
                    ],
                },
            }
        ],
    }
    resp = chat_response(data, request(model="m"), request_id=None)
    assert resp.id.startswith("chatcmpl-")
    assert resp.model == "m"
    assert resp.object == "chat.completion"
    assert resp.tool_calls[0].function.arguments == '{"x": 1}'


@pytest.mark.parametrize(
    "data",
    [None, [], {"object": "list", "data": []}, {"error": "boom"}, {"choices": [], "object": "x"}],
)
def test_chat_response_rejects_what_is_not_a_chat_completion(data: object) -> None:
    with pytest.raises(ResponseDecodeError):
        chat_response(data, request(), request_id=None)


def test_models_from_payload_accepts_list_and_tgi_single_object() -> None:
    listed = models_from_payload({"object": "list", "data": [{"id": "a"}, {"id": "b"}]})
    assert [m.id for m in listed] == ["a", "b"]
    single = models_from_payload({"id": "tgi-model", "object": "model", "owned_by": "me"})
    assert [(m.id, m.owned_by, m.provider) for m in single] == [("tgi-model", "me", "huggingface")]
    with pytest.raises(ResponseDecodeError):
        models_from_payload("nope")
