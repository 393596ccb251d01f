"""The Chat Completions wire module (``chatcore_openai._wire``) at its boundaries, without
HTTP: the body it builds, the messages it reshapes, the answers it refuses, and the checks
on its options."""

from __future__ import annotations

from typing import Any

import attrs
import pytest

from chatcore.exceptions import ConfigurationError, ResponseDecodeError, ValidationError
from chatcore.models import ChatRequest, FunctionDefinition, Message, Tool
from chatcore.provider import HttpResult, Option, Provider, ProviderSpec, resolve_config
from chatcore.testing.server import Reply
from chatcore_openai import __version__, _wire

SECRET = "wireSECRETvalue0123"


def request(**kw: Any) -> ChatRequest:
    kw.setdefault("provider", "openai")
    kw.setdefault("model", "gpt-4o-mini")
    kw.setdefault("messages", (Message("user", "Hello"),))
    return ChatRequest(**kw)


TOOL = Tool(FunctionDefinition("lookup", parameters={"type": "object"}))


def result(data: Any, status: int = 200, request_id: str | None = "req_1") -> HttpResult:
    return HttpResult(
        status_code=status,
        headers={"x-request-id": request_id or ""},
        data=data,
        elapsed=0.01,
        request_id=request_id,
    )


COMPLETION = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1,
    "model": "gpt-4o-mini",
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}
    ],
}


# --------------------------------------------------------------------------------------
# chat_body


def test_the_body_of_a_plain_request():
    assert _wire.chat_body(request(), model="gpt-4o-mini") == {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "Hello"}],
    }


def test_model_none_leaves_the_model_out_and_a_model_replaces_it():
    assert "model" not in _wire.chat_body(request(), model=None)
    assert _wire.chat_body(request(), model="deployment-1")["model"] == "deployment-1"


def test_stream_and_stream_options_go_only_with_a_stream():
    req = request(stream=True, extra={"stream_options": {"include_usage": False}})
    body = _wire.chat_body(req, model="m")
    assert "stream" not in body
    assert "stream_options" not in body
    body = _wire.chat_body(
        request(extra={"stream_options": {"include_usage": False}}), model="m", stream=True
    )
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": False}


def test_tool_choice_and_parallel_tool_calls_go_only_with_tools():
    req = request(tool_choice="auto", parallel_tool_calls=False)
    body = _wire.chat_body(req, model="m")
    assert not {"tools", "tool_choice", "parallel_tool_calls"} & set(body)
    body = _wire.chat_body(attrs.evolve(req, tools=(TOOL,)), model="m")
    assert body["tool_choice"] == "auto"
    assert body["parallel_tool_calls"] is False
    assert body["tools"][0]["function"]["name"] == "lookup"


def test_an_empty_tools_list_is_not_sent():
    body = _wire.chat_body(request(extra={"tools": [], "tool_choice": "auto"}), model="m")
    assert not {"tools", "tool_choice"} & set(body)


def test_no_null_is_sent():
    body = _wire.chat_body(request(extra={"seed": None, "top_k": 3}), model="m")
    assert body["top_k"] == 3
    assert "seed" not in body


@pytest.mark.parametrize("key", ["model", "messages"])
def test_extra_cannot_override_the_request(key):
    with pytest.raises(ValidationError) as info:
        _wire.chat_body(request(extra={key: "x"}), model="m")
    assert info.value.problems == (
        (f"extra.{key}", f"{key!r} comes from the request; it cannot be set in extra"),
    )


def test_tgi_parameters_are_refused_with_what_to_use_instead():
    with pytest.raises(ValidationError) as info:
        _wire.chat_body(request(extra={"max_new_tokens": 5, "do_sample": True, "ok": 1}), model="m")
    assert info.value.problems == (
        (
            "extra.max_new_tokens",
            "'max_new_tokens' is a text-generation-inference parameter that OpenAI-compatible "
            "APIs reject; use max_completion_tokens (or max_tokens)",
        ),
        (
            "extra.do_sample",
            "'do_sample' is a text-generation-inference parameter that OpenAI-compatible APIs "
            "reject; use temperature (0 for greedy decoding)",
        ),
    )


def test_every_tgi_parameter_is_refused():
    for key in _wire.TGI_ONLY_PARAMS:
        with pytest.raises(ValidationError, match=f"extra.{key}: '{key}' is a text-gen"):
            _wire.chat_body(request(extra={key: 1}), model="m")


# --------------------------------------------------------------------------------------
# wire_message


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (
            {"role": "user", "content": "x", "name": "n", "tool_calls": [], "refusal": None},
            {"role": "user", "content": "x", "name": "n"},
        ),
        (
            {"role": "system", "content": "x", "tool_call_id": "t"},
            {"role": "system", "content": "x"},
        ),
        (
            {"role": "developer", "content": "x", "audio": {"id": "a"}},
            {"role": "developer", "content": "x"},
        ),
        (
            {"role": "tool", "content": "42", "tool_call_id": "t1", "name": "lookup"},
            {"role": "tool", "content": "42", "tool_call_id": "t1"},
        ),
        (
            {"role": "assistant", "content": None, "refusal": "no", "tool_call_id": "t"},
            {"role": "assistant", "refusal": "no"},
        ),
        (
            {"role": "assistant", "content": "x", "audio": {"id": "aud_1", "data": "AAAA"}},
            {"role": "assistant", "content": "x", "audio": {"id": "aud_1"}},
        ),
        (
            {"role": "assistant", "content": "x", "audio": {"id": None, "data": "AAAA"}},
            {"role": "assistant", "content": "x"},
        ),
        (
            {"role": "assistant", "content": "x", "audio": "aud_raw"},
            {"role": "assistant", "content": "x", "audio": "aud_raw"},
        ),
        (
            {
                "role": "assistant",
                "tool_calls": [{"id": "c", "type": "function", "extra": None}],
                "function_call": {"name": "f", "arguments": None},
            },
            {
                "role": "assistant",
                "tool_calls": [{"id": "c", "type": "function"}],
                "function_call": {"name": "f"},
            },
        ),
        (
            {"role": "function", "content": None, "name": "f", "tool_call_id": "t"},
            {"role": "function", "content": None, "name": "f"},
        ),
        ({"role": "user", "content": None}, {"role": "user"}),
        (
            {"role": "user", "tool_calls": [], "content": "x", "name": "n"},
            {"role": "user", "content": "x", "name": "n"},
        ),
        (
            {"role": "assistant", "audio": {"id": None}, "content": "x", "name": "n"},
            {"role": "assistant", "content": "x", "name": "n"},
        ),
        ({"role": ["user"], "content": "x"}, {"role": ["user"], "content": "x"}),
        (
            {"role": "robot", "content": "x", "any": 1, "gone": None},
            {"role": "robot", "content": "x", "any": 1},
        ),
        ({"role": 3, "content": "x", "any": 1}, {"role": 3, "content": "x", "any": 1}),
        (
            {"role": "user", "content": [{"type": "text", "text": "a", "x": None}, [None, 1]]},
            {"role": "user", "content": [{"type": "text", "text": "a"}, [None, 1]]},
        ),
    ],
)
def test_wire_message(message, expected):
    assert _wire.wire_message(message) == expected


def test_message_keys_follow_the_spec():
    assert _wire.MESSAGE_KEYS["tool"] == {"role", "content", "tool_call_id"}
    assert _wire.MESSAGE_KEYS["user"] == {"role", "content", "name"}
    assert "tool_calls" in _wire.MESSAGE_KEYS["assistant"]


# --------------------------------------------------------------------------------------
# decode_chat and decode_models


def decode(data: Any, **kw: Any):
    return _wire.decode_chat(
        result(data, **kw), provider="openai", model="gpt-4o-mini", secrets=(SECRET,)
    )


def test_a_completion_is_decoded_with_its_request_id():
    response = decode(COMPLETION)
    assert response.text == "hi"
    assert response.request_id == "req_1"
    assert response.provider == "openai"
    assert response.headers == {"x-request-id": "req_1"}


@pytest.mark.parametrize(
    ("data", "message", "body"),
    [
        (None, "expected a chat.completion object, got an empty body", None),
        ([1], "expected a chat.completion object, got a JSON array", [1]),
        ("text", "expected a chat.completion object, got a JSON str", "text"),
        (3, "expected a chat.completion object, got a JSON int", None),
        (
            {"error": {"message": f"boom {SECRET}"}},
            "the server answered 200 with an error body: boom ***",
            {"error": {"message": "boom ***"}},
        ),
        (
            {"error": "plain"},
            "the server answered 200 with an error body: plain",
            {"error": "plain"},
        ),
        (
            {"object": "x", "id": 1},
            "expected a chat.completion object with a 'choices' list (keys: id, object)",
            {"object": "x", "id": 1},
        ),
        (
            {},
            "expected a chat.completion object with a 'choices' list (keys: none)",
            {},
        ),
        (
            {"choices": {"0": 1}},
            "expected a chat.completion object with a 'choices' list (keys: choices)",
            {"choices": {"0": 1}},
        ),
        (
            {"error": None, "x": 1},
            "expected a chat.completion object with a 'choices' list (keys: error, x)",
            {"error": None, "x": 1},
        ),
    ],
)
def test_what_is_not_a_completion_is_a_decode_error(data, message, body):
    with pytest.raises(ResponseDecodeError) as info:
        decode(data, status=201, request_id="req_9")
    err = info.value
    assert err.message == message.replace("200", "201")
    assert err.body == body
    assert (err.provider, err.model, err.status_code, err.request_id) == (
        "openai",
        "gpt-4o-mini",
        201,
        "req_9",
    )


def test_an_error_body_next_to_choices_is_still_a_completion():
    assert decode({**COMPLETION, "error": {"message": "ignored"}}).text == "hi"


def test_the_keys_listed_are_the_first_ten_sorted():
    data = {f"k{i:02d}": i for i in range(12)}
    with pytest.raises(ResponseDecodeError) as info:
        decode(data)
    listed = ", ".join(f"k{i:02d}" for i in range(10))
    assert info.value.message.endswith(f"(keys: {listed})")


def test_a_malformed_choice_is_a_decode_error_with_the_context():
    data = {**COMPLETION, "choices": [{"index": "zero", "message": 5}]}
    with pytest.raises(ResponseDecodeError) as info:
        decode(data, request_id="req_7")
    err = info.value
    assert (err.provider, err.model, err.status_code, err.request_id) == (
        "openai",
        "gpt-4o-mini",
        200,
        "req_7",
    )
    assert err.body == data
    assert err.__cause__ is not None


def test_decode_models():
    data = {"object": "list", "data": [{"id": "m1", "object": "model", "owned_by": "o"}]}
    models = _wire.decode_models(result(data), provider="openai", secrets=())
    assert [m.id for m in models] == ["m1"]
    for bad, kind in (
        ({"data": {}}, "a JSON object"),
        ([], "a JSON array"),
        (None, "an empty body"),
    ):
        with pytest.raises(ResponseDecodeError) as info:
            _wire.decode_models(result(bad, status=203), provider="openai", secrets=())
        assert info.value.message == (
            f"expected a model list object with a 'data' array, got {kind}"
        )
        assert (info.value.provider, info.value.status_code, info.value.request_id) == (
            "openai",
            203,
            "req_1",
        )
        assert info.value.body == (bad if bad is not None else None)


# --------------------------------------------------------------------------------------
# Options


class Bare(Provider):
    pass


def config(value: Any, *, version: str | None = "1.0"):
    spec = ProviderSpec(
        name="acme",
        factory=Bare,
        options={"org": Option(), "base_url": Option(default="https://x.invalid/v1")},
        version=version,
    )
    return resolve_config(spec, {} if value is None else {"org": value}, environ={})


@pytest.mark.parametrize("value", [None, ""])
def test_an_unset_header_option_is_none(value):
    assert _wire.header_value(config(value), "org") is None


def test_a_header_option_is_sent_as_text():
    assert _wire.header_value(config("org-1"), "org") == "org-1"


@pytest.mark.parametrize(
    "value", ["org-1\n", " org-1", "org-1 ", "or\rg", "o\x00rg", "o\x7frg", "\t"]
)
def test_a_header_option_with_whitespace_or_control_characters_is_refused(value):
    with pytest.raises(ConfigurationError) as info:
        _wire.header_value(config(value), "org")
    assert str(info.value) == (
        "acme: option 'org' (from argument) has leading or trailing whitespace or a control "
        "character (a trailing newline?); remove it"
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("https://api.example.invalid/v1/", "https://api.example.invalid/v1"),
        ("http://127.0.0.1:8080//", "http://127.0.0.1:8080"),
        ("https://h", "https://h"),
        ("http://hh", "http://hh"),
    ],
)
def test_http_url_strips_trailing_slashes(value, expected):
    assert _wire.http_url(config(None), "base_url", value) == expected


@pytest.mark.parametrize(
    "value", ["ftp://h", "api.openai.com", "https://", "http://", "http:/x", "HTTPS://h"]
)
def test_http_url_refuses_what_is_not_an_http_url(value):
    with pytest.raises(ConfigurationError) as info:
        _wire.http_url(config(None), "base_url", value)
    assert str(info.value) == (
        f"acme: option 'base_url' (from default) must be an http:// or https:// URL, got {value!r}"
    )


def test_http_url_names_where_the_value_came_from():
    explicit = resolve_config(config(None).spec, {"base_url": "https://x.invalid/v1"}, environ={})
    with pytest.raises(ConfigurationError, match=r"option 'base_url' \(from argument\)"):
        _wire.http_url(explicit, "base_url", "ftp://x")
    with pytest.raises(ConfigurationError, match=r"option 'other' \(from default\)"):
        _wire.http_url(explicit, "other", "ftp://x")


def test_http_url_strips_only_slashes():
    assert _wire.http_url(config(None), "base_url", "https://h.invalid/vX/") == (
        "https://h.invalid/vX"
    )


def test_with_plugin_version_fills_in_only_a_missing_version():
    named = config(None)
    assert _wire.with_plugin_version(named) is named
    unnamed = config(None, version=None)
    filled = _wire.with_plugin_version(unnamed)
    assert filled.spec.version == __version__
    assert filled.spec.plugin == _wire.DISTRIBUTION == "chatcore-openai"
    assert filled.spec.name == "acme"


def test_a_refused_model_list_never_shows_a_secret():
    with pytest.raises(ResponseDecodeError) as info:
        _wire.decode_models(
            result({"error": f"bad key {SECRET}"}), provider="openai", secrets=(SECRET,)
        )
    assert info.value.body == {"error": "bad key ***"}


def test_a_subclass_may_name_the_request_id(server, openai_key):
    from chatcore_openai._provider import SPEC, OpenAIProvider

    class Renamed(OpenAIProvider):
        def request_id(self, result: HttpResult) -> str | None:
            return f"renamed-{result.request_id}"

    spec = attrs.evolve(SPEC, factory=Renamed)
    provider = Renamed(
        resolve_config(spec, {"api_key": openai_key, "base_url": server.base_url}, environ={})
    )
    try:
        response = provider.chat(request())
    finally:
        provider.close()
    assert response.request_id.startswith("renamed-req_")
    assert server.requests[-1].method == "POST"
    server.enqueue(Reply.json([1]))
    provider = Renamed(
        resolve_config(spec, {"api_key": openai_key, "base_url": server.base_url}, environ={})
    )
    try:
        with pytest.raises(ResponseDecodeError) as info:
            provider.chat(request())
    finally:
        provider.close()
    assert (info.value.provider, info.value.model) == ("openai", "gpt-4o-mini")


def test_a_refused_answer_keeps_the_decoder_s_own_cause():
    data = {**COMPLETION, "choices": [{"index": "zero", "message": 5}]}
    with pytest.raises(ResponseDecodeError) as info:
        decode(data)
    assert info.value.__cause__ is not None
    assert not isinstance(info.value.__cause__, ResponseDecodeError)


def test_a_model_list_that_is_not_json_text_or_object_has_no_body():
    with pytest.raises(ResponseDecodeError) as info:
        _wire.decode_models(result(5), provider="openai", secrets=())
    assert info.value.body is None
    assert info.value.message.endswith("got a JSON int")
