"""chatcore._validate: every rule at its boundary, and bad input of any kind as a
ValidationError naming the path, before anything is sent (over a real stand-in server)."""

from __future__ import annotations

import json
import math
import types
from collections.abc import Iterator
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import chatcore
from chatcore._plugins import PluginHost
from chatcore._validate import build_request, json_problems, show, split_model
from chatcore.exceptions import ValidationError
from chatcore.models import Message, Tool
from chatcore.testing.server import StandInServer
from chatcore.testing.strategies import PARAM_NAMES, garbage, garbage_messages, garbage_params

from .conftest import TEST_KEY, WirePlugin
from .test_stream import StreamingPlugin


def _problems(messages: Any = "hi", **params: Any) -> list[tuple[str, str]]:
    with pytest.raises(ValidationError) as info:
        build_request("p", "m", messages, params)
    problems = list(info.value.problems)
    assert problems
    str(info.value).encode("utf-8")  # the message itself can always be printed
    return problems


def _ok(messages: Any = "hi", **params: Any) -> chatcore.ChatRequest:
    return build_request("p", "m", messages, params)


def _strict_json(request: chatcore.ChatRequest) -> bytes:
    """The body as the transport sends it, refusing anything that is not strict JSON."""
    return json.dumps(request.to_openai_dict(), ensure_ascii=False, allow_nan=False).encode()


# --- items 12 and 13: bad input is a ValidationError naming the path, nothing is sent ------

_cycle: dict[str, Any] = {}
_cycle["self"] = _cycle
_CALL = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
_SURROGATE_ARGS = {
    "id": "c1",
    "type": "function",
    "function": {"name": "f", "arguments": '{"a": "\ud800"}'},
}
_TOOL = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}


def _conversation(call: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "c1", "content": "r"},
    ]


BAD_INPUT: list[tuple[str, Any, dict[str, Any], str, str]] = [
    # (case, messages, params, path, words in the message)
    ("message with an int key", {0: None}, {}, "messages[0]", "keys must be strings"),
    (
        "message list with an int key",
        [{"role": "user", "content": "x", 1: 2}],
        {},
        "messages[0]",
        "keys must be strings",
    ),
    ("metadata a set", "hi", {"metadata": set()}, "metadata", "got set"),
    ("surrogate content", "\ud800", {}, "messages[0].content", "lone surrogate"),
    (
        "surrogate in a text part",
        [{"role": "user", "content": [{"type": "text", "text": "a\udfff"}]}],
        {},
        "messages[0].content[0].text",
        "lone surrogate",
    ),
    (
        "surrogate name",
        [{"role": "user", "content": "x", "name": "\ud800"}],
        {},
        "messages[0].name",
        "lone surrogate",
    ),
    ("surrogate user", "hi", {"user": "\ud800"}, "user", "lone surrogate"),
    ("surrogate metadata", "hi", {"metadata": {"k": "\udfff"}}, "metadata.k", "lone surrogate"),
    ("surrogate extra", "hi", {"extra": {"foo": "\ud800"}}, "extra.foo", "lone surrogate"),
    ("surrogate extra key", "hi", {"extra": {"\ud800": 1}}, "extra['\\ud800']", "surrogate"),
    (
        "surrogate tool arguments",
        _conversation(_SURROGATE_ARGS),
        {},
        "messages[1].tool_calls[0].function.arguments",
        "lone surrogate",
    ),
    ("surrogate stop", "hi", {"stop": ["ok", "\ud800"]}, "stop[1]", "lone surrogate"),
    ("extra NaN", "hi", {"extra": {"foo": math.nan}}, "extra.foo", "nan is not a JSON number"),
    ("metadata inf", "hi", {"metadata": {"a": math.inf}}, "metadata.a", "inf is not a JSON"),
    (
        "schema -inf",
        "hi",
        {
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "x", "schema": {"maximum": -math.inf}},
            }
        },
        "response_format.json_schema.schema.maximum",
        "-inf is not a JSON number",
    ),
    (
        "tool parameters NaN",
        "hi",
        {
            "tools": [
                {"type": "function", "function": {"name": "f", "parameters": {"m": [math.nan]}}}
            ]
        },
        "tools[0].function.parameters.m[0]",
        "nan is not a JSON number",
    ),
    (
        "Tool object parameters inf",
        "hi",
        {"tools": [Tool(chatcore.models.FunctionDefinition("f", parameters={"m": math.inf}))]},
        "tools[0].function.parameters.m",
        "inf is not a JSON number",
    ),
    (
        "tool_choice NaN",
        "hi",
        {"tools": [_TOOL], "tool_choice": {"type": "function", "w": math.nan}},
        "tool_choice.w",
        "nan is not a JSON number",
    ),
    (
        "audio NaN",
        [{"role": "assistant", "content": "x", "audio": {"id": math.nan}}],
        {},
        "messages[0].audio.id",
        "nan is not a JSON number",
    ),
    ("bytes in extra", "hi", {"extra": {"foo": b"x"}}, "extra.foo", "got bytes"),
    ("object in extra", "hi", {"extra": {"foo": object()}}, "extra.foo", "got object"),
    (
        "mapping proxy in extra",
        "hi",
        {"extra": {"foo": types.MappingProxyType({"a": 1})}},
        "extra.foo",
        "expected a dict",
    ),
    ("tuple key in extra", "hi", {"extra": {"foo": {(1,): 2}}}, "extra.foo", "keys must be"),
    ("cycle in extra", "hi", {"extra": {"d": _cycle}}, "extra.d.self", "nested deeper"),
    ("huge seed", "hi", {"seed": 10**5000}, "seed", "too large"),
    ("huge max_tokens", "hi", {"max_tokens": 10**5000}, "max_tokens", "too large"),
    ("huge negative n", "hi", {"n": -(10**5000)}, "n", "expected an integer >= 1"),
    ("huge n", "hi", {"n": 10**5000}, "n", "must be at most 128"),
    ("huge temperature", "hi", {"temperature": 10**5000}, "temperature", "expected a number"),
    ("huge top_logprobs", "hi", {"top_logprobs": 10**5000}, "top_logprobs", "from 0 to 20"),
    ("huge logprobs", "hi", {"logprobs": 10**5000}, "logprobs", "true or false"),
    (
        "Message object with a set as content",
        [Message(role="user", content={1})],  # type: ignore[arg-type]
        {},
        "messages[0].content",
        "got set",
    ),
    (
        "Message object with an int role",
        [Message(role=5, content="x")],  # type: ignore[arg-type]
        {},
        "messages[0].role",
        "expected a string",
    ),
    (
        "Message object with a surrogate",
        [Message(role="user", content="\ud800")],
        {},
        "messages[0].content",
        "lone surrogate",
    ),
]


@pytest.mark.parametrize(
    ("messages", "params", "path", "words"),
    [case[1:] for case in BAD_INPUT],
    ids=[case[0] for case in BAD_INPUT],
)
def test_bad_input_is_a_validation_error_naming_the_path(messages, params, path, words):
    problems = _problems(messages, **params)
    # a value that contains itself is reported where the walk gives up, below ``path``
    exact = words != "nested deeper"
    assert any(
        (where == path if exact else where.startswith(path + ".self")) and words in msg
        for where, msg in problems
    ), problems


@pytest.mark.parametrize(
    ("messages", "params", "path"),
    [(m, p, where) for _, m, p, where, _ in BAD_INPUT],
    ids=[case[0] for case in BAD_INPUT],
)
def test_bad_input_reaches_no_server_from_chat_or_stream(
    make_validate_client, server, messages, params, path
):
    client = make_validate_client()
    for call in (client.chat, client.stream):
        with pytest.raises(ValidationError) as info:
            call("sse:m", messages, **params)
        assert any(where.startswith(path) for where, _ in info.value.problems)
    assert server.requests == []


def test_a_surrogate_in_the_model_id_is_refused():
    with pytest.raises(ValidationError, match="lone surrogate"):
        split_model("openai:gpt\ud800")


# --- the properties: garbage anywhere gives a valid request or a ValidationError ----------


@given(messages=garbage_messages(), params=garbage_params())
@settings(max_examples=600, deadline=None)
def test_garbage_gives_a_valid_request_or_a_validation_error(messages, params):
    try:
        request = build_request("p", "m", messages, params)
    except ValidationError as exc:
        refused: ValidationError | None = exc
    else:
        refused = None
    if refused is not None:
        assert refused.problems
        str(refused).encode("utf-8")
        return
    body = json.loads(_strict_json(request), parse_constant=_no_constants)
    assert body["model"] == "m"
    assert len(body["messages"]) == len(request.messages) >= 1


def _no_constants(name: str) -> Any:
    raise AssertionError(f"{name} in a request body")


#: ``model`` is positional: passing it again is Python's TypeError, before chatcore runs.
_CLIENT_PARAMS = tuple(name for name in PARAM_NAMES if name != "model")


@given(messages=garbage_messages(), params=garbage_params(_CLIENT_PARAMS))
@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_garbage_through_the_client_is_sent_as_json_or_not_at_all(
    make_validate_client, server, messages, params
):
    client = make_validate_client()
    for call in (client.chat, client.stream):
        before = len(server.requests)
        error: Exception | None = None
        try:
            result = call("sse:m", messages, **dict(params))
            if isinstance(result, chatcore.ChatStream):
                with result:
                    list(result)
        except (ValidationError, chatcore.APIStatusError) as exc:
            error = exc
        if isinstance(error, ValidationError):
            assert error.problems
            assert len(server.requests) == before
            continue
        if error is not None:  # valid input the stand-in server (checking like the API) refused
            assert getattr(error, "status_code", None) == 400, error
        assert len(server.requests) == before + 1
        json.loads(server.requests[-1].body, parse_constant=_no_constants)


@given(value=garbage())
@settings(max_examples=400, deadline=None)
def test_json_problems_agrees_with_the_strict_encoder(value):
    problems: list[tuple[str, str]] = []
    json_problems(value, "v", problems)
    try:
        json.dumps(value, ensure_ascii=False, allow_nan=False).encode("utf-8")
        encodes = True
    except (TypeError, ValueError, RecursionError):
        encodes = False
    if not problems:
        assert encodes
    assert all(where.startswith("v") for where, _ in problems)


@pytest.fixture
def make_validate_client(server: StandInServer) -> Iterator[Any]:
    clients: list[chatcore.Client] = []

    def make(**kwargs: Any) -> chatcore.Client:
        host = PluginHost(
            load_entry_points=False, plugins=[StreamingPlugin(), WirePlugin()], environ={}
        )
        client = chatcore.Client(
            plugin_host=host,
            providers={"sse": {"api_key": TEST_KEY, "base_url": server.base_url}},
            environ={},
            retry=chatcore.RetryPolicy(max_retries=0, sleep=lambda _s: None),
            **kwargs,
        )
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


# --- every rule at its boundary -------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "words"),
    [
        (5, "expected a string like 'openai:gpt-4o-mini', got int"),
        ("gpt-4o", "is not 'provider:model'"),
        (":gpt-4o", "is not 'provider:model'"),
        ("openai:", "is not 'provider:model'"),
        ("openai:  ", "is not 'provider:model'"),
        ("-openai:m", "is not a valid provider name"),
        ("open ai:m", "is not a valid provider name"),
        ("openai:gpt 4o", "contains whitespace"),
        ("openai:gpt\x014o", "contains whitespace"),
    ],
)
def test_split_model_refuses(model, words):
    with pytest.raises(ValidationError) as info:
        split_model(model)
    assert info.value.problems[0][0] == "model"
    assert words in info.value.problems[0][1]


def test_split_model_splits_at_the_first_colon():
    assert split_model("openai:gpt-4o") == ("openai", "gpt-4o")
    assert split_model("huggingface:meta-llama/L-3:novita") == (
        "huggingface",
        "meta-llama/L-3:novita",
    )
    assert split_model("a_b.c-d:x") == ("a_b.c-d", "x")


@pytest.mark.parametrize(
    ("name", "lo", "hi"),
    [
        ("temperature", 0.0, 2.0),
        ("top_p", 0.0, 1.0),
        ("presence_penalty", -2.0, 2.0),
        ("frequency_penalty", -2.0, 2.0),
    ],
)
def test_number_ranges_at_their_bounds(name, lo, hi):
    assert getattr(_ok(**{name: lo}), name) == lo
    assert getattr(_ok(**{name: hi}), name) == hi
    assert getattr(_ok(**{name: int(hi)}), name) == hi
    for outside in (math.nextafter(lo, -math.inf), math.nextafter(hi, math.inf), hi + 0.5):
        assert _problems(**{name: outside}) == [
            (name, f"must be between {lo:g} and {hi:g}, got {outside!r}")
        ]
    for wrong in (True, "1", math.nan, math.inf, None if False else [1]):
        assert _problems(**{name: wrong}) == [
            (name, f"expected a number from {lo:g} to {hi:g}, got {wrong!r}")
        ]


@pytest.mark.parametrize("name", ["n", "max_tokens", "max_completion_tokens"])
def test_integer_minimums(name):
    assert getattr(_ok(**{name: 1}), name) == 1
    for wrong in (0, -1, True, 1.0, "2"):
        assert _problems(**{name: wrong}) == [(name, f"expected an integer >= 1, got {wrong!r}")]


def test_n_maximum_is_128():
    assert _ok(n=128).n == 128
    assert _problems(n=129) == [("n", "must be at most 128, got 129")]
    assert _ok(max_tokens=129).max_tokens == 129  # only n has a maximum


def test_seed_is_an_integer():
    assert _ok(seed=-3).seed == -3
    assert _ok(seed=0).seed == 0
    for wrong in (True, 1.5, "1"):
        assert _problems(seed=wrong) == [("seed", f"expected an integer, got {wrong!r}")]


def test_stop_is_a_string_or_one_to_four_strings():
    assert _ok(stop="END").stop == "END"
    assert _ok(stop=["a"]).stop == ("a",)
    assert _ok(stop=("a", "b", "c", "d")).stop == ("a", "b", "c", "d")
    message = ("stop", "expected a string or a list of 1 to 4 non-empty strings")
    for wrong in ([], ["a", "b", "c", "d", "e"], ["a", ""], ["a", 1], 5, {"a"}):
        assert _problems(stop=wrong) == [message]


@pytest.mark.parametrize("name", ["logprobs", "parallel_tool_calls"])
def test_booleans(name):
    extra = {"tools": [_TOOL]} if name == "parallel_tool_calls" else {}
    assert getattr(_ok(**{name: False}, **extra), name) is False
    assert getattr(_ok(**{name: True}, **extra), name) is True
    for wrong in (1, 0, "true"):
        assert _problems(**{name: wrong}, **extra) == [
            (name, f"expected true or false, got {wrong!r}")
        ]


def test_top_logprobs_range_and_logprobs_rule():
    assert _ok(top_logprobs=0, logprobs=True).top_logprobs == 0
    assert _ok(top_logprobs=20, logprobs=True).top_logprobs == 20
    for wrong in (-1, 21, True, 1.0):
        assert _problems(top_logprobs=wrong, logprobs=True) == [
            ("top_logprobs", f"expected an integer from 0 to 20, got {wrong!r}")
        ]
    assert _problems(top_logprobs=3) == [("top_logprobs", "requires logprobs=True")]
    assert ("top_logprobs", "requires logprobs=True") in _problems(top_logprobs=3, logprobs=1)


def test_user_is_a_string():
    assert _ok(user="u-1").user == "u-1"
    assert _ok(user="").user == ""
    for wrong in (5, None if False else ["u"], b"u"):
        assert _problems(user=wrong) == [("user", f"expected a string, got {type(wrong).__name__}")]


def test_logit_bias_shape_and_range():
    assert _ok(logit_bias={"50256": -100, "1": 100, "2": 0}).logit_bias == {
        "50256": -100,
        "1": 100,
        "2": 0,
    }
    assert _ok(logit_bias={}).logit_bias == {}
    message = ("logit_bias", "expected a mapping of token id (a string) to an integer -100..100")
    for wrong in ({"1": -101}, {"1": 101}, {1: 5}, {"1": True}, {"1": 1.0}, [("1", 1)], "x"):
        assert _problems(logit_bias=wrong) == [message]


def test_response_format_types():
    for kind in ("text", "json_object", "json_schema"):
        assert _ok(response_format={"type": kind}).response_format == {"type": kind}
    message = ("response_format", "expected {'type': 'text' | 'json_object' | 'json_schema', ...}")
    for wrong in ({"type": "json"}, {}, "json_object", [{"type": "text"}]):
        assert _problems(response_format=wrong) == [message]


def test_tools_must_be_a_non_empty_list_and_are_structured():
    request = _ok(tools=[_TOOL])
    assert request.tools == (
        Tool(chatcore.models.FunctionDefinition("f", None, {"type": "object"})),
    )
    assert _ok(tools=(_TOOL,)).tools == request.tools
    assert _ok(tools=list(request.tools)).tools == request.tools
    for wrong in ([], (), _TOOL, "f"):
        assert _problems(tools=wrong) == [("tools", "expected a non-empty list of tools")]
    bad = _problems(tools=[{"type": "function", "function": {"nome": "f"}}])
    assert [where for where, _ in bad] == ["tools[0].function.name", "tools[0].function"]


@pytest.mark.parametrize("param", [{"tool_choice": "auto"}, {"parallel_tool_calls": True}])
def test_tool_choice_and_parallel_tool_calls_need_tools(param):
    assert _problems(**param) == [("tool_choice", "tool_choice and parallel_tool_calls need tools")]
    assert _ok(tools=[_TOOL], **param)


def test_tool_choice_shapes():
    for choice in ("none", "auto", "required", {"type": "function", "function": {"name": "f"}}):
        assert _ok(tools=[_TOOL], tool_choice=choice).tool_choice == choice
    message = ("tool_choice", "expected 'none', 'auto', 'required' or an object")
    for wrong in ("any", "", 1, ["auto"]):
        assert _problems(tools=[_TOOL], tool_choice=wrong) == [message]


def test_max_total_chars_counts_every_message_and_part():
    text = [{"role": "user", "content": [{"type": "text", "text": "abc"}]}]
    limited = {"max_total_chars": 10}

    def build(messages: Any) -> chatcore.ChatRequest:
        return build_request("p", "m", messages, {}, **limited)

    assert build([{"role": "system", "content": "12345"}, {"role": "user", "content": "67890"}])
    assert build(text * 3)
    with pytest.raises(ValidationError) as info:
        build([{"role": "system", "content": "12345"}, {"role": "user", "content": "678901"}])
    assert info.value.problems == (
        ("messages", "total content is 11 characters, over the limit of 10"),
    )
    with pytest.raises(ValidationError, match="total content is 12 characters"):
        build(text * 4)


def test_max_messages_at_its_bound():
    four = [{"role": "user", "content": "x"}] * 4
    assert build_request("p", "m", four, {}, max_messages=4)
    with pytest.raises(ValidationError) as info:
        build_request("p", "m", four, {}, max_messages=3)
    assert info.value.problems == (("messages", "4 messages, over the limit of 3 (max_messages)"),)


def test_max_request_bytes_at_its_bound():
    request = _ok("y" * 1000)
    size = len(json.dumps(request.to_openai_dict(), ensure_ascii=False).encode())
    assert build_request("p", "m", "y" * 1000, {}, max_request_bytes=size)
    with pytest.raises(ValidationError) as info:
        build_request("p", "m", "y" * 1000, {}, max_request_bytes=size - 1)
    assert info.value.problems == (
        (
            "request",
            f"the request body is {size} bytes, over the limit of {size - 1} (max_request_bytes)",
        ),
    )
    assert build_request("p", "m", "y" * 1000, {}, max_request_bytes=0)  # 0: no limit
    # a tiny limit is enforced too: the body's JSON structure counts, not only its text
    tiny = len(json.dumps(_ok("y" * 10).to_openai_dict(), ensure_ascii=False).encode())
    with pytest.raises(ValidationError, match="max_request_bytes"):
        build_request("p", "m", "y" * 10, {}, max_request_bytes=tiny - 1)
    assert build_request("p", "m", "y" * 10, {}, max_request_bytes=tiny)


@pytest.mark.parametrize(
    "params",
    [
        {"extra": {"x": "y" * 5000}},
        {"metadata": {"k": "y" * 5000}},
        {"tools": [{"type": "function", "function": {"name": "f", "description": "y" * 5000}}]},
        {
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "s", "description": "y" * 5000, "schema": {}},
            }
        },
        {"stop": ["y" * 2500, "z" * 2500]},
    ],
    ids=["extra", "metadata", "tools", "response_format", "stop"],
)
def test_max_request_bytes_counts_every_part_of_the_body(params):
    """The limit bounds the whole body: parameters, tools and ``extra`` count, not only
    the messages' text (a 5 MB ``extra`` once passed a 4 MiB limit)."""
    request = build_request("p", "m", "hi", dict(params))
    size = len(json.dumps(request.to_openai_dict(), ensure_ascii=False).encode())
    assert size > 5000
    with pytest.raises(ValidationError) as info:
        build_request("p", "m", "hi", dict(params), max_request_bytes=size - 1)
    assert info.value.problems == (
        (
            "request",
            f"the request body is {size} bytes, over the limit of {size - 1} (max_request_bytes)",
        ),
    )
    assert build_request("p", "m", "hi", dict(params), max_request_bytes=size)


def test_max_request_bytes_counts_tool_calls_in_messages():
    arguments = json.dumps({"q": "y" * 5000})
    messages = [
        {"role": "user", "content": "hi"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "f", "arguments": arguments}}
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "ok"},
    ]
    size = _body_size(messages)
    with pytest.raises(ValidationError, match="max_request_bytes"):
        build_request("p", "m", messages, {}, max_request_bytes=size - 1)
    assert build_request("p", "m", messages, {}, max_request_bytes=size)


def test_messages_are_required():
    for empty in ([], ()):
        assert _problems(empty) == [("messages", "at least one message is required")]
    assert _problems(5) == [
        ("messages", "expected a string, a message, or a list of messages, got int")
    ]


def test_extra_rules():
    request = _ok(extra={"top_k": 5}, metadata={"a": "b"}, temperature=None)
    assert request.extra == {"top_k": 5, "metadata": {"a": "b"}}
    assert request.temperature is None
    assert _ok(extra=None).extra == {}
    for wrong in ([("a", 1)], {1: "a"}, "x"):
        assert _problems(extra=wrong) == [
            ("extra", "expected a mapping of parameter names to values")
        ]
    for key in ("model", "messages", "stream"):
        assert _problems(extra={key: 1}) == [
            (f"extra.{key}", f"{key!r} cannot be overridden through extra")
        ]
        with pytest.raises(ValidationError) as info:
            build_request("p", "m", "hi", {key: 1})
        assert info.value.problems[0][0] == key
        assert info.value.problems[0][1].startswith("not a request parameter; ")
    with pytest.raises(ValidationError, match=r"call client\.stream\(model, messages"):
        build_request("p", "m", "hi", {"stream": True})


def test_unknown_parameters_get_a_hint():
    assert _problems(temprature=1) == [
        (
            "temprature",
            "unknown parameter (did you mean 'temperature'?); provider-specific parameters"
            " go in extra={...}",
        )
    ]
    assert _problems(zzzz=1) == [
        ("zzzz", "unknown parameter; provider-specific parameters go in extra={...}")
    ]


@pytest.mark.parametrize(
    ("key", "advice"),
    [
        ("api_key", "the API key is a provider option (never sent in the body)"),
        ("api_base", "the base URL is a provider option"),
        ("base_url", "the base URL is a provider option"),
        ("timeout", "pass timeout_total=SECONDS"),
        ("request_timeout", "pass timeout_total=SECONDS"),
    ],
)
def test_client_options_passed_per_call_are_not_sent_to_extra(key, advice):
    (problem,) = _problems(**{key: 1})
    assert problem[0] == key
    assert advice in problem[1]
    assert "extra=" not in problem[1]


@pytest.mark.parametrize(
    ("model", "meant"),
    [
        ("openai/gpt-4o-mini", "openai:gpt-4o-mini"),
        ("gpt-4o-mini", "openai:gpt-4o-mini"),
        ("o3-mini", "openai:o3-mini"),
        ("claude-3-5-haiku-latest", "anthropic:claude-3-5-haiku-latest"),
        ("meta-llama/Llama-3.1-8B-Instruct", "huggingface:meta-llama/Llama-3.1-8B-Instruct"),
    ],
)
def test_a_model_without_its_provider_gets_the_likely_spelling(model, meant):
    with pytest.raises(ValidationError) as info:
        split_model(model)
    assert f"did you mean {meant!r}?" in str(info.value)


def test_every_problem_is_listed_at_once():
    problems = _problems([{"role": "robot", "content": "x"}], temperature=3, n=0)
    assert [where for where, _ in problems] == ["messages[0].role", "temperature", "n"]


def test_conversation_rules():
    assert _problems([{"role": "robot", "content": "x"}]) == [
        (
            "messages[0].role",
            "unknown role 'robot' (allowed: assistant, developer, function, system, tool, user)",
        )
    ]
    assert _problems([{"role": "user", "content": None}]) == [
        ("messages[0].content", "a user message needs content")
    ]
    assert _ok([{"role": "assistant", "content": None}])
    assert _problems([{"role": "tool", "content": "r"}]) == [
        ("messages[0].tool_call_id", "a tool message needs tool_call_id")
    ]
    assert _problems(
        [{"role": "user", "content": "q"}, {"role": "tool", "tool_call_id": "c1", "content": "r"}]
    ) == [("messages[1]", "a tool message must follow an assistant message with tool_calls")]
    wrong_id = _conversation(_CALL)
    wrong_id[2] = {"role": "tool", "tool_call_id": "c2", "content": "r"}
    assert _problems(wrong_id) == [
        ("messages[2].tool_call_id", "'c2' answers no tool call of the assistant message before it")
    ]
    unanswered = [*_conversation(_CALL)[:2], {"role": "user", "content": "again"}]
    assert _problems(unanswered) == [("messages[2]", "tool calls 'c1' have no tool result message")]
    assert _ok(_conversation(_CALL))
    assert _problems([{"role": "user", "content": "q", "tool_calls": [_CALL]}]) == [
        ("messages[0].tool_calls", "only assistant messages carry tool_calls")
    ]
    image = {"type": "image_url", "image_url": {"url": "https://example.invalid/a.png"}}
    for role in ("system", "developer"):
        assert _problems([{"role": role, "content": [{"type": "text", "text": "t"}, image]}]) == [
            ("messages[0].content[1]", f"{role} messages take text parts only")
        ]
    assert _ok([{"role": "user", "content": [{"type": "text", "text": "t"}, image]}])


def test_two_tool_calls_answered_in_turn():
    calls = [dict(_CALL, id="c1"), dict(_CALL, id="c2")]
    messages = [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": None, "tool_calls": calls},
        {"role": "tool", "tool_call_id": "c2", "content": "r"},
        {"role": "tool", "tool_call_id": "c1", "content": "r"},
        {"role": "user", "content": "thanks"},
    ]
    assert _ok(messages)
    assert _problems(messages[:3] + messages[4:]) == [
        ("messages[3]", "tool calls 'c1' have no tool result message")
    ]


def test_show_never_raises_and_shortens():
    class Broken:
        def __repr__(self) -> str:
            raise RuntimeError("no repr")

    assert show(Broken()) == "a Broken"
    assert show(10**5000) == "a int"
    assert show("x" * 100) == repr("x" * 100)[:57] + "..."
    assert len(show("x" * 100)) == 60
    assert show("x" * 58) == repr("x" * 58)


def test_json_problems_paths_and_plain_values():
    problems: list[tuple[str, str]] = []
    json_problems({"a": [1, 2.5, None, True, "é", {"b c": math.nan}], "ok": 10**100}, "v", problems)
    assert problems == [("v.a[5]['b c']", "nan is not a JSON number (NaN and infinities are not)")]
    deep: Any = "leaf"
    for _ in range(64):
        deep = [deep]
    problems = []
    json_problems(deep, "v", problems)
    assert problems == []
    problems = []
    json_problems([deep], "v", problems)
    assert problems == [("v" + "[0]" * 64, "nested deeper than 64 levels (or contains itself)")]


@given(st.text(max_size=20))
@settings(deadline=None)
def test_text_without_surrogates_is_always_fine(text):
    problems: list[tuple[str, str]] = []
    json_problems({text: [text]}, "v", problems)
    assert problems == []


# --- exact messages and the less travelled branches -------------------------------------


def test_split_model_messages_in_full():
    cases = {
        "gpt-4o": "'gpt-4o' is not 'provider:model'; did you mean 'openai:gpt-4o'?",
        "mistral": "'mistral' is not 'provider:model' (e.g. 'openai:gpt-4o-mini',"
        " 'huggingface:meta-llama/Llama-3.1-8B-Instruct')",
        "-x:m": "'-x' is not a valid provider name",
        "openai:a b": "model id 'a b' contains whitespace",
        "openai:a\ud800": "model id 'a\\ud800' contains a lone surrogate, not valid UTF-8",
    }
    for model, message in cases.items():
        with pytest.raises(ValidationError) as info:
            split_model(model)
        assert info.value.problems == (("model", message),)
    assert split_model("openai:modèle-ü") == ("openai", "modèle-ü")  # non-ASCII is fine


def test_json_problems_messages_in_full():
    def found(value: Any) -> list[tuple[str, str]]:
        problems: list[tuple[str, str]] = []
        json_problems(value, "v", problems)
        return problems

    for fine in (None, True, False, 0, -(10**100), 1.5, "", "é", [], {}, ()):
        assert found(fine) == []
    assert found("a\ud800") == [
        ("v", "contains a lone surrogate (such as '\\ud800'), which is not valid UTF-8")
    ]
    assert found({"k\udfff": 1}) == [
        ("v['k\\udfff']", "the key contains a lone surrogate, not valid UTF-8")
    ]
    assert found(10**5000) == [("v", "integer too large to send as JSON")]
    assert found(2**4097) == []  # long, but still writable
    assert found([math.nan]) == [("v[0]", "nan is not a JSON number (NaN and infinities are not)")]
    assert found({1: "a", 2: "b", "c": math.inf}) == [
        ("v", "object keys must be strings, got 1"),
        ("v", "object keys must be strings, got 2"),
        ("v.c", "inf is not a JSON number (NaN and infinities are not)"),
    ]
    assert found(b"x") == [
        ("v", "expected a JSON value (string, number, boolean, None, list or dict), got bytes")
    ]
    assert found(types.MappingProxyType({})) == [
        ("v", "expected a dict, got mappingproxy (pass dict(...))")
    ]
    part = chatcore.models.TextPart("a\ud800")
    assert found([part]) == [
        ("v[0].text", "contains a lone surrogate (such as '\\ud800'), which is not valid UTF-8")
    ]


def test_the_default_limits():
    assert build_request("p", "m", "x" * 100_000, {})
    with pytest.raises(ValidationError, match="total content is 100001 characters"):
        build_request("p", "m", "x" * 100_001, {})
    many = [{"role": "user", "content": "x"}] * 2048
    assert len(build_request("p", "m", many, {}).messages) == 2048
    with pytest.raises(ValidationError, match="2049 messages, over the limit of 2048"):
        build_request("p", "m", [*many, {"role": "user", "content": "x"}], {})


def test_stream_flag_is_kept():
    assert build_request("p", "m", "hi", {}, stream=True).stream is True
    assert build_request("p", "m", "hi", {}).stream is False


def _body_size(messages: Any) -> int:
    return len(json.dumps(_ok(messages).to_openai_dict(), ensure_ascii=False).encode())


@pytest.mark.parametrize(
    "messages",
    [
        # two short messages: only their sum can reach the limit
        [{"role": "system", "content": "a" * 10}, {"role": "user", "content": "b" * 10}],
        # an image part: its URL is counted
        [
            {
                "role": "user",
                "content": [
                    {"type": "image_url", "image_url": {"url": "https://x.invalid/" + "a" * 30}}
                ],
            }
        ],
        # text that JSON escaping grows six-fold: the body is over 6 x the characters
        "\x01" * 40,
    ],
    ids=["sum of messages", "image url", "escaped text"],
)
def test_max_request_bytes_is_never_skipped_when_the_body_is_over(messages):
    size = _body_size(messages)
    limit = size - 1
    if isinstance(messages, str):
        limit = 6 * len(messages)  # exactly at the lower bound: must still be measured
        assert size > limit
    with pytest.raises(ValidationError, match="max_request_bytes"):
        build_request("p", "m", messages, {}, max_request_bytes=limit)


def test_pending_tool_calls_are_listed_and_tool_messages_take_text_only():
    calls = [dict(_CALL, id="c2"), dict(_CALL, id="c1")]
    messages = [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": None, "tool_calls": calls},
        {"role": "user", "content": "again"},
    ]
    assert _problems(messages) == [
        ("messages[2]", "tool calls 'c1', 'c2' have no tool result message")
    ]
    image = {"type": "image_url", "image_url": {"url": "https://example.invalid/a.png"}}
    tool_answer = _conversation(_CALL)
    tool_answer[2] = {"role": "tool", "tool_call_id": "c1", "content": [image]}
    assert _problems(tool_answer) == [
        ("messages[2].content[0]", "tool messages take text parts only")
    ]
    unnamed = _conversation(_CALL)
    unnamed[2] = {"role": "tool", "content": "r"}
    assert _problems(unnamed) == [
        ("messages[2].tool_call_id", "a tool message needs tool_call_id"),
    ]


def test_a_bad_shape_is_reported_once():
    assert _problems(logit_bias={1: 5}) == [
        ("logit_bias", "expected a mapping of token id (a string) to an integer -100..100")
    ]
    assert _problems(stop={"a"}) == [
        ("stop", "expected a string or a list of 1 to 4 non-empty strings")
    ]


def test_depth_counts_dict_levels_and_foreign_attrs_values_are_refused():
    deep: Any = "leaf"
    for _ in range(64):
        deep = {"k": deep}
    problems: list[tuple[str, str]] = []
    json_problems(deep, "v", problems)
    assert problems == []

    @attrs.frozen
    class Point:
        x: int

    problems = []
    json_problems({"p": Point(1)}, "v", problems)
    assert problems == [
        ("v.p", "expected a JSON value (string, number, boolean, None, list or dict), got Point")
    ]
