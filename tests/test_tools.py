"""Tool definitions from Python functions and the tool loop, end to end over real HTTP."""

from __future__ import annotations

import enum
import json
from collections.abc import Sequence
from typing import Annotated, Any, Literal, Optional

import attrs
import pytest

import chatcore
from chatcore._tools import (
    ToolLoopError,
    ToolRun,
    parse_docstring,
    run_tools,
    tool_from_function,
)
from chatcore.exceptions import ConfigurationError, ValidationError
from chatcore.models import FunctionDefinition, Message, Tool
from chatcore.testing.server import Reply

MODEL = "wire:gpt-4o-mini"


class Unit(enum.Enum):
    C = "celsius"
    F = "fahrenheit"


@attrs.frozen
class Point:
    """A point on the map."""

    lat: float
    lon: float
    label: str | None = None


def get_weather(city: str, unit: Literal["c", "f"] = "c") -> dict[str, Any]:
    """Get the current weather in a city.

    More text that is not part of the description.

    :param city: The city, e.g. Paris.
    :param unit: Temperature unit.
    """
    return {"city": city, "temp": 21 if unit == "c" else 70, "unit": unit}


def add(a: int, b: int) -> int:
    """Add two integers.

    Args:
        a: The first number.
        b (int): The second
            number, continued.

    Returns:
        The sum.
    """
    return a + b


# --------------------------------------------------------------------------------------
# Schema derivation


def test_schema_from_simple_function() -> None:
    tool = tool_from_function(get_weather)
    assert tool.type == "function"
    fn = tool.function
    assert fn.name == "get_weather"
    assert fn.description == "Get the current weather in a city."
    assert fn.strict is None
    assert fn.parameters == {
        "type": "object",
        "properties": {
            "city": {"type": "string", "description": "The city, e.g. Paris."},
            "unit": {
                "type": "string",
                "enum": ["c", "f"],
                "default": "c",
                "description": "Temperature unit.",
            },
        },
        "required": ["city"],
        "additionalProperties": False,
    }


def test_google_style_docstring() -> None:
    fn = tool_from_function(add).function
    assert fn.description == "Add two integers."
    assert fn.parameters is not None
    props = fn.parameters["properties"]
    assert props["a"] == {"type": "integer", "description": "The first number."}
    assert props["b"] == {"type": "integer", "description": "The second number, continued."}
    assert fn.parameters["required"] == ["a", "b"]


def test_numpy_style_docstring() -> None:
    doc = """Scale a value.

    Parameters
    ----------
    x : float
        The value.
    factor : float, optional
        How much.

    Returns
    -------
    float
    """
    description, params = parse_docstring(doc)
    assert description == "Scale a value."
    assert params == {"x": "The value.", "factor": "How much."}


def test_sphinx_typed_param_and_no_docstring() -> None:
    description, params = parse_docstring(":param int x: the x\n:param y: the y\n   more y")
    assert description is None
    assert params == {"x": "the x", "y": "the y more y"}
    assert parse_docstring(None) == (None, {})


def test_many_types() -> None:
    def f(
        s: str,
        i: int,
        x: float,
        b: bool,
        nothing: None,
        maybe: Optional[int],  # noqa: UP045 - typing.Optional is supported too
        maybe2: str | None,
        tags: list[str],
        seq: Sequence[int],
        tup: tuple[float, ...],
        scores: dict[str, float],
        unit: Unit,
        point: Point,
        points: list[Point],
        either: int | str,
        lit: Literal[1, 2, "x"],
        described: Annotated[str, "A described value"],
        defaulted: int = 3,
    ) -> None:
        """Many types."""

    params = tool_from_function(f).function.parameters
    assert params is not None
    props = params["properties"]
    point = {
        "type": "object",
        "description": "A point on the map.",
        "properties": {
            "lat": {"type": "number"},
            "lon": {"type": "number"},
            "label": {"type": ["string", "null"], "default": None},
        },
        "required": ["lat", "lon"],
        "additionalProperties": False,
    }
    assert props == {
        "s": {"type": "string"},
        "i": {"type": "integer"},
        "x": {"type": "number"},
        "b": {"type": "boolean"},
        "nothing": {"type": "null"},
        "maybe": {"type": ["integer", "null"]},
        "maybe2": {"type": ["string", "null"]},
        "tags": {"type": "array", "items": {"type": "string"}},
        "seq": {"type": "array", "items": {"type": "integer"}},
        "tup": {"type": "array", "items": {"type": "number"}},
        "scores": {"type": "object", "additionalProperties": {"type": "number"}},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        "point": point,
        "points": {"type": "array", "items": point},
        "either": {"anyOf": [{"type": "integer"}, {"type": "string"}]},
        "lit": {"type": ["integer", "string"], "enum": [1, 2, "x"]},
        "described": {"type": "string", "description": "A described value"},
        "defaulted": {"type": "integer", "default": 3},
    }
    assert "defaulted" not in params["required"]
    assert len(params["required"]) == len(props) - 1


def test_strict_form() -> None:
    tool = tool_from_function(get_weather, strict=True, name="weather", description="Weather.")
    fn = tool.function
    assert (fn.name, fn.description, fn.strict) == ("weather", "Weather.", True)
    assert fn.parameters == {
        "type": "object",
        "properties": {
            "city": {"type": "string", "description": "The city, e.g. Paris."},
            "unit": {
                "anyOf": [{"type": "string", "enum": ["c", "f"]}, {"type": "null"}],
                "description": "Temperature unit.",
            },
        },
        "required": ["city", "unit"],
        "additionalProperties": False,
    }


def test_no_parameters() -> None:
    def now() -> str:
        return "noon"

    fn = tool_from_function(now).function
    assert fn.parameters == {"type": "object", "properties": {}, "additionalProperties": False}
    assert fn.description is None


@pytest.mark.parametrize(
    ("annotation", "needle"),
    [
        (set[int], "parameter 'x'"),
        (tuple[int, str], "fixed-length tuples"),
        (dict[int, str], "string keys"),
        (list, "parameter 'x'"),
        (complex, "unsupported type annotation complex"),
        (Any, "parameter 'x'"),
    ],
)
def test_unsupported_annotations_name_the_parameter(annotation: Any, needle: str) -> None:
    def f(x):  # type: ignore[no-untyped-def]
        return x

    f.__annotations__ = {"x": annotation}
    strict = annotation is Any  # Any is allowed unless strict
    with pytest.raises(ConfigurationError) as info:
        tool_from_function(f, strict=strict)
    assert needle in str(info.value)
    assert "'f'" in str(info.value)


def test_async_functions_are_tools_too(make_client, server) -> None:
    """An async tool gets its schema from its signature; the sync client runs it to its
    end (the async client awaits it: tests/test_aclient.py)."""

    async def double(x: int) -> int:
        """Twice x."""
        return 2 * x

    tool = tool_from_function(double)
    assert tool.function.name == "double"
    assert tool.function.parameters["properties"]["x"] == {"type": "integer"}
    server.enqueue(
        Reply.chat(tool_calls=[{"name": "double", "arguments": {"x": 21}}]),
        Reply.chat(text="42"),
    )
    run = make_client().run_tools("wire:m", "double 21", [double])
    assert run.calls[0].result == 42
    assert run.calls[0].error is None


def test_other_configuration_errors() -> None:
    def unannotated(x):  # type: ignore[no-untyped-def]
        return x

    def star(*args: int) -> None:
        return None

    with pytest.raises(ConfigurationError, match="'x' has no type annotation"):
        tool_from_function(unannotated)
    with pytest.raises(ConfigurationError, match=r"\*args is not supported"):
        tool_from_function(star)
    with pytest.raises(ConfigurationError, match=r"must match \[A-Za-z0-9_-\]"):
        tool_from_function(lambda x: x)
    with pytest.raises(ConfigurationError, match="must match"):
        tool_from_function(add, name="bad name")
    with pytest.raises(ConfigurationError, match="strict mode"):
        tool_from_function(_takes_mapping, strict=True)


def _takes_mapping(scores: dict[str, int]) -> int:
    return sum(scores.values())


# --------------------------------------------------------------------------------------
# The loop, over HTTP


def _call(name: str, arguments: Any, call_id: str) -> dict[str, Any]:
    args = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": args}}


def test_loop_end_to_end(server: Any, make_client: Any) -> None:
    seen: list[tuple[str, str]] = []

    def weather(city: str, unit: Literal["c", "f"] = "c") -> dict[str, Any]:
        """Weather in a city."""
        seen.append((city, unit))
        return {"city": city, "temp": 21}

    server.enqueue(
        Reply.chat(tool_calls=[_call("weather", {"city": "Paris", "unit": "f"}, "call_1")]),
        Reply.chat(text="It is 21 degrees in Paris."),
    )
    client = make_client()
    run = run_tools(client, MODEL, "Weather in Paris?", [weather], temperature=0)
    assert isinstance(run, ToolRun)
    assert run.completed and run.turns == 2
    assert run.text == "It is 21 degrees in Paris."
    assert seen == [("Paris", "f")]
    [record] = run.calls
    assert (record.id, record.name, record.turn) == ("call_1", "weather", 1)
    assert record.arguments == {"city": "Paris", "unit": "f"}
    assert record.result == {"city": "Paris", "temp": 21}
    assert record.ok and record.error is None and record.duration >= 0
    assert [m.role for m in run.messages] == ["user", "assistant", "tool", "assistant"]
    assert run.messages[-1].text == "It is 21 degrees in Paris."

    first, second = (r.json() for r in server.requests)
    assert first["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "weather",
                "description": "Weather in a city.",
                "parameters": tool_from_function(weather).function.parameters,
            },
        }
    ]
    assert first["temperature"] == 0
    assert "tool_choice" not in first
    assert [m["role"] for m in second["messages"]] == ["user", "assistant", "tool"]
    assistant, tool_msg = second["messages"][1:]
    assert assistant["tool_calls"][0]["id"] == "call_1"
    assert "annotations" not in assistant
    assert tool_msg == {
        "role": "tool",
        "tool_call_id": "call_1",
        "content": json.dumps({"city": "Paris", "temp": 21}),
    }
    assert second["tools"] == first["tools"] and second["temperature"] == 0


def test_parallel_calls_in_one_turn(server: Any, make_client: Any) -> None:
    def lookup(key: str) -> str:
        return f"value of {key}"

    server.enqueue(
        Reply.chat(
            tool_calls=[
                _call("add", {"a": 1, "b": 2}, "call_a"),
                _call("lookup", {"key": "k"}, "call_b"),
                _call("add", {"a": 40, "b": 2}, "call_c"),
            ]
        ),
        Reply.chat(text="done"),
    )
    run = run_tools(
        make_client(), MODEL, "go", {"add": add, "lookup": lookup}, parallel_tool_calls=True
    )
    assert [c.result for c in run.calls] == [3, "value of k", 42]
    second = server.requests[1].json()
    assert server.requests[0].json()["parallel_tool_calls"] is True
    tool_msgs = [m for m in second["messages"] if m["role"] == "tool"]
    assert [(m["tool_call_id"], m["content"]) for m in tool_msgs] == [
        ("call_a", "3"),
        ("call_b", "value of k"),  # strings are sent as they are
        ("call_c", "42"),
    ]


def test_failures_become_error_results_and_the_loop_continues(
    server: Any, make_client: Any
) -> None:
    def boom(x: int) -> int:
        raise RuntimeError(f"cannot handle {x}")

    server.enqueue(
        Reply.chat(
            tool_calls=[
                _call("boom", {"x": 1}, "c1"),
                _call("add", "{not json", "c2"),
                _call("nope", {}, "c3"),
                _call("add", {"a": "one", "b": 2}, "c4"),
                _call("add", {"a": 1, "b": 2, "c": 3}, "c5"),
                _call("add", {"a": 1}, "c6"),
                _call("add", "[1, 2]", "c7"),
            ]
        ),
        Reply.chat(tool_calls=[_call("add", {"a": 2, "b": 2}, "c8")]),
        Reply.chat(text="recovered"),
    )
    run = run_tools(make_client(), MODEL, "go", [boom, add])
    assert run.completed and run.turns == 3 and run.text == "recovered"
    errors = [json.loads(c.content)["error"] for c in run.calls[:7]]
    assert errors[0] == "RuntimeError: cannot handle 1"
    assert errors[1].startswith("InvalidArguments: arguments are not valid JSON")
    assert errors[2] == "UnknownTool: no tool named 'nope' (available: add, boom)"
    assert errors[3] == "InvalidArguments: arguments.a: expected integer, got a string"
    assert errors[4] == "InvalidArguments: arguments: unknown key(s) 'c'"
    assert errors[5] == "InvalidArguments: arguments.b: required key missing"
    assert errors[6] == "InvalidArguments: arguments must be a JSON object"
    assert all(not c.ok and c.result is None for c in run.calls[:7])
    assert run.calls[0].arguments == {"x": 1} and run.calls[1].arguments is None
    assert run.calls[7].ok and run.calls[7].result == 4

    sent = server.requests[1].json()["messages"]
    assert [m["tool_call_id"] for m in sent if m["role"] == "tool"] == [
        f"c{i}" for i in range(1, 8)
    ]
    assert sent[2]["content"] == json.dumps({"error": "RuntimeError: cannot handle 1"})


def test_max_turns_raises_with_the_run(server: Any, make_client: Any) -> None:
    calls: list[int] = []

    def ping(n: int = 0) -> str:
        calls.append(n)
        return "pong"

    # tool_choice "required" on every turn: the stand-in server always calls the tool
    with pytest.raises(ToolLoopError) as info:
        run_tools(
            make_client(),
            MODEL,
            "go",
            [ping],
            max_turns=3,
            tool_choice="required",
            reset_tool_choice=False,
        )
    run = info.value.run
    assert isinstance(info.value, chatcore.ChatcoreError)
    assert "max_turns=3" in str(info.value)
    assert not run.completed and run.turns == 3 and len(run.calls) == 3
    assert calls == [0, 0, 0]
    assert len(server.requests) == 3
    assert all(r.json()["tool_choice"] == "required" for r in server.requests)
    assert run.messages[-1].role == "tool"  # the last turn's calls were executed

    # the run can be continued from its messages
    server.enqueue(Reply.chat(text="finally"))
    more = run_tools(make_client(), MODEL, run.messages, [ping])
    assert more.text == "finally" and more.turns == 1


def test_max_turns_return_and_tool_choice_reset(server: Any, make_client: Any) -> None:
    def ping() -> str:
        return "pong"

    server.enqueue(Reply.chat(tool_calls=[_call("ping", {}, "p1")]))
    run = run_tools(
        make_client(), MODEL, "go", [ping], max_turns=2, tool_choice="required",
        on_max_turns="return",
    )  # fmt: skip
    # turn 1 forced; turn 2 reset to the default (auto), so the stand-in answers in text
    assert run.completed and run.turns == 2
    first, second = (r.json() for r in server.requests)
    assert first["tool_choice"] == "required" and "tool_choice" not in second

    server.clear()
    run = run_tools(
        make_client(), MODEL, "go", [ping], max_turns=1, tool_choice="required",
        on_max_turns="return",
    )  # fmt: skip
    assert not run.completed and run.turns == 1 and [c.content for c in run.calls] == ["pong"]


def test_named_tool_choice_default_reply(server: Any, make_client: Any) -> None:
    def ping() -> str:
        return "pong"

    choice = {"type": "function", "function": {"name": "ping"}}
    run = run_tools(make_client(), MODEL, "go", [ping], tool_choice=choice)
    assert run.turns == 2 and run.calls[0].arguments == {} and run.calls[0].result == "pong"


def test_argument_conversion(server: Any, make_client: Any) -> None:
    got: list[Any] = []

    def place(point: Point, unit: Unit, tags: tuple[str, ...], /, extra: int = 5) -> str:
        got.extend([point, unit, tags, extra])
        return "ok"

    server.enqueue(
        Reply.chat(
            tool_calls=[
                _call(
                    "place",
                    {
                        "point": {"lat": 1, "lon": 2.5},
                        "unit": "celsius",
                        "tags": ["a"],
                        "extra": None,
                    },
                    "c1",
                )
            ]
        ),
        Reply.chat(text="ok"),
    )
    run = run_tools(make_client(), MODEL, "go", [place])
    # non-strict schema: null for a non-nullable parameter is rejected
    assert run.calls[0].error == "InvalidArguments: arguments.extra: expected integer, got null"

    server.clear()
    server.enqueue(
        Reply.chat(
            tool_calls=[
                _call(
                    "place",
                    {
                        "point": {"lat": 1, "lon": 2.5, "label": None},
                        "unit": "celsius",
                        "tags": ["a"],
                        "extra": None,
                    },
                    "c1",
                )
            ]
        ),
        Reply.chat(text="ok"),
    )
    strict_tool = tool_from_function(place, strict=True)
    run = run_tools(make_client(), MODEL, "go", [(place, strict_tool)])
    assert run.calls[0].ok, run.calls[0].error
    # strict: null means "use the default"; values converted to the annotations
    assert got == [Point(1.0, 2.5), Unit.C, ("a",), 5]
    assert server.requests[0].json()["tools"][0]["function"]["strict"] is True


def test_explicit_tool_pairs(server: Any, make_client: Any) -> None:
    def search(**kwargs: Any) -> list[str]:
        return sorted(kwargs)

    spec: dict[str, Any] = {
        "type": "function",
        "function": {
            "name": "search",
            "parameters": {
                "type": "object",
                "properties": {"q": {"type": "string"}},
                "required": ["q"],
            },
        },
    }
    server.enqueue(
        Reply.chat(tool_calls=[_call("search", {"q": "x", "page": 2}, "c1")]),
        Reply.chat(text="ok"),
    )
    run = run_tools(make_client(), MODEL, "go", [(search, spec)])
    # not strict and no additionalProperties: extra keys are allowed through
    assert run.calls[0].result == ["page", "q"]
    assert server.requests[0].json()["tools"] == [spec]

    strict_spec = Tool(
        FunctionDefinition("search", parameters=spec["function"]["parameters"], strict=True)
    )
    server.clear()
    server.enqueue(
        Reply.chat(tool_calls=[_call("search", {"q": "x", "page": 2}, "c1")]),
        Reply.chat(text="ok"),
    )
    run = run_tools(make_client(), MODEL, "go", [(search, strict_spec)])
    assert run.calls[0].error == "InvalidArguments: arguments: unknown key(s) 'page'"


def test_result_serialization(server: Any, make_client: Any) -> None:
    def obj() -> Point:
        return Point(1.0, 2.0, "home")

    def nothing() -> None:
        return None

    def weird() -> Any:
        return {"s": {3}, "u": Unit.F, "o": object}

    server.enqueue(
        Reply.chat(
            tool_calls=[_call("obj", {}, "a"), _call("nothing", {}, "b"), _call("weird", {}, "c")]
        ),
        Reply.chat(text="ok"),
    )
    run = run_tools(make_client(), MODEL, "go", [obj, nothing, weird])
    contents = [c.content for c in run.calls]
    assert json.loads(contents[0]) == {"lat": 1.0, "lon": 2.0, "label": "home"}
    assert contents[1] == "null"
    assert json.loads(contents[2]) == {"s": [3], "u": "fahrenheit", "o": str(object)}


def test_message_history_and_system_prompt(server: Any, make_client: Any) -> None:
    server.enqueue(Reply.chat(tool_calls=[_call("add", {"a": 1, "b": 1}, "x")]), Reply.chat("2"))
    history = [
        Message(role="system", content="Be brief."),
        {"role": "user", "content": "1+1?"},
    ]
    run = run_tools(make_client(), MODEL, history, [add])
    assert [m.role for m in run.messages] == ["system", "user", "assistant", "tool", "assistant"]
    assert server.requests[1].json()["messages"][0] == {"role": "system", "content": "Be brief."}


def test_bad_usage() -> None:
    with pytest.raises(ValidationError, match="max_turns"):
        run_tools(None, MODEL, "x", [add], max_turns=0)
    with pytest.raises(ValidationError, match="on_max_turns"):
        run_tools(None, MODEL, "x", [add], on_max_turns="ignore")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="stream"):
        run_tools(None, MODEL, "x", [add], stream=True)
    with pytest.raises(ConfigurationError, match="two tools are named 'add'"):
        run_tools(None, MODEL, "x", [add, add])
    with pytest.raises(ConfigurationError, match="without a function"):
        run_tools(None, MODEL, "x", [tool_from_function(add)])
    with pytest.raises(ConfigurationError, match="at least one tool"):
        run_tools(None, MODEL, "x", [])
    with pytest.raises(ConfigurationError, match="not a valid tool"):
        run_tools(None, MODEL, "x", [(add, {"type": "function"})])


def test_methods_partials_and_callable_objects(server: Any, make_client: Any) -> None:
    import functools

    class Calc:
        """A calculator."""

        def __init__(self, base: int) -> None:
            self.base = base

        def plus(self, x: int) -> int:
            """Add to the base."""
            return self.base + x

        def __call__(self, y: int) -> int:
            return self.base * y

    calc = Calc(10)
    method = tool_from_function(calc.plus).function
    assert (method.name, method.description) == ("plus", "Add to the base.")
    assert method.parameters is not None and list(method.parameters["properties"]) == ["x"]
    partial = tool_from_function(functools.partial(add, 1), name="inc").function
    assert partial.parameters is not None and partial.parameters["required"] == ["b"]
    with pytest.raises(ConfigurationError, match="pass name="):
        tool_from_function(calc)

    server.enqueue(
        Reply.chat(
            tool_calls=[
                _call("plus", {"x": 1}, "a"),
                _call("inc", {"b": 2}, "b"),
                _call("times", {"y": 3}, "c"),
            ]
        ),
        Reply.chat(text="ok"),
    )
    run = run_tools(
        make_client(),
        MODEL,
        "go",
        {"plus": calc.plus, "inc": functools.partial(add, 1), "times": calc},
    )
    assert [c.result for c in run.calls] == [11, 3, 30]


def test_client_run_tools_method(make_client, server) -> None:
    def add(a: int, b: int) -> int:
        """Add two numbers."""
        return a + b

    server.enqueue(
        Reply.chat(
            tool_calls=[
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "add", "arguments": '{"a": 2, "b": 3}'},
                }
            ]
        ),
        Reply.chat("5"),
    )
    run = make_client().run_tools("wire:m", "2+3?", [add])
    assert run.text == "5"
    assert run.calls[0].result == 5


def test_resent_assistant_message_keeps_its_reasoning() -> None:
    """The loop sends the assistant's message back with its reasoning (Anthropic refuses a
    tool-use turn of a thinking model without its signed thinking block) and without what
    requests may not carry (annotations)."""
    from chatcore._tools import _resendable
    from chatcore.models import FunctionCall, ToolCall

    block = {"type": "thinking", "thinking": "look it up", "signature": "sig"}
    answer = Message(
        role="assistant",
        content=None,
        tool_calls=(ToolCall("t1", FunctionCall("f", "{}")),),
        annotations=({"type": "url_citation"},),
        reasoning_content="look it up",
        reasoning_details=(block,),
    )
    resent = _resendable(answer)
    assert resent.reasoning_content == "look it up"
    assert resent.reasoning_details == (block,)
    assert resent.annotations is None
    assert resent.tool_calls == answer.tool_calls
