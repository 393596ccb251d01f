"""Structured output: schemas from attrs classes, parsing, and the request sent over HTTP."""

from __future__ import annotations

import enum
import json
import types
import typing
from collections.abc import Iterator
from typing import Any, Literal, Optional

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import chatcore
from chatcore._plugins import PluginHost
from chatcore._structured import (
    StructuredOutputError,
    StructuredResponse,
    chat_json,
    chat_structured,
    ensure_json_hint,
    json_schema_for,
    parse_structured,
    response_format_for,
    schema_name,
    validate_json,
)
from chatcore._structured import converter as structured_converter
from chatcore.exceptions import ConfigurationError, ValidationError
from chatcore.models import ChatResponse, Message
from chatcore.provider import Option, ProviderSpec
from chatcore.testing.server import Reply, StandInServer

from .conftest import TEST_KEY, WireProvider, no_sleep


class Mood(enum.Enum):
    HAPPY = "happy"
    SAD = "sad"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


@attrs.frozen
class Address:
    street: str
    city: str
    zip: Optional[str] = None  # noqa: UP045 - typing.Optional is supported too


@attrs.frozen
class Person:
    """A person we know."""

    name: str = attrs.field(metadata={"description": "The full name"})
    age: int
    mood: Mood
    address: Address
    nicknames: list[str]
    scores: tuple[float, ...] = ()
    level: Level = Level.LOW
    kind: Literal["friend", "colleague"] = "friend"
    previous: Address | None = None
    active: bool = True
    note: int | str = 0


@attrs.frozen
class Team:
    name: str
    members: list[Person]
    lead: Optional[Person] = None  # noqa: UP045


@attrs.frozen
class Small:
    title: str
    count: int = 1


@attrs.define
class Node:
    value: int
    children: list[Node] = attrs.Factory(list)


@attrs.frozen
class WithMapping:
    labels: dict[str, int]


# --------------------------------------------------------------------------------------
# Schemas


def test_strict_schema_exact() -> None:
    assert json_schema_for(Small) == {
        "type": "object",
        "properties": {"title": {"type": "string"}, "count": {"type": ["integer", "null"]}},
        "required": ["title", "count"],
        "additionalProperties": False,
    }
    assert json_schema_for(Small, strict=False) == {
        "type": "object",
        "properties": {"title": {"type": "string"}, "count": {"type": "integer", "default": 1}},
        "required": ["title"],
        "additionalProperties": False,
    }


def _objects(schema: Any) -> Iterator[dict[str, Any]]:
    if isinstance(schema, dict):
        if schema.get("type") == "object":
            yield schema
        for value in schema.values():
            yield from _objects(value)
    elif isinstance(schema, list):
        for item in schema:
            yield from _objects(item)


@pytest.mark.parametrize("cls", [Person, Team, Address, Small])
def test_strict_schema_rules(cls: type[Any]) -> None:
    schema = json_schema_for(cls)
    objects = list(_objects(schema))
    assert objects
    for obj in objects:  # OpenAI strict mode: closed objects, every property required
        assert obj["additionalProperties"] is False
        assert obj["required"] == list(obj["properties"])


def test_person_schema_details() -> None:
    schema = json_schema_for(Person)
    props = schema["properties"]
    assert schema["description"] == "A person we know."
    assert props["name"] == {"type": "string", "description": "The full name"}
    assert props["mood"] == {"type": "string", "enum": ["happy", "sad"]}
    assert props["level"] == {"anyOf": [{"type": "integer", "enum": [1, 2]}, {"type": "null"}]}
    assert props["previous"]["anyOf"][1] == {"type": "null"}
    assert props["note"] == {"anyOf": [{"type": "integer"}, {"type": "string"}, {"type": "null"}]}
    assert props["scores"] == {
        "anyOf": [{"type": "array", "items": {"type": "number"}}, {"type": "null"}]
    }


def test_schema_errors() -> None:
    with pytest.raises(ConfigurationError, match="not an attrs class"):
        json_schema_for(dict)
    with pytest.raises(ConfigurationError, match=r"WithMapping\.labels.*strict"):
        json_schema_for(WithMapping)
    assert json_schema_for(WithMapping, strict=False)["properties"]["labels"] == {
        "type": "object",
        "additionalProperties": {"type": "integer"},
    }
    with pytest.raises(ConfigurationError, match="recursive"):
        json_schema_for(Node)


def test_schema_name() -> None:
    assert schema_name(Person) == "Person"
    weird = type("Ünï côde.Thing" + "x" * 80, (), {})
    name = schema_name(weird)
    assert len(name) == 64 and name.startswith("_n__c_de_Thing")
    fmt = response_format_for(Small, name="custom-name", description="A small thing")
    assert fmt == {
        "type": "json_schema",
        "json_schema": {
            "name": "custom-name",
            "description": "A small thing",
            "schema": json_schema_for(Small),
            "strict": True,
        },
    }
    with pytest.raises(ConfigurationError):
        response_format_for(Small, name="no spaces allowed")


# --------------------------------------------------------------------------------------
# Hypothesis: instances -> schema-valid JSON -> equal instances


def _strategy(tp: Any) -> st.SearchStrategy[Any]:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is str:
        return st.text(max_size=12)
    if tp is int:
        return st.integers(-(2**40), 2**40)
    if tp is float:
        return st.floats(allow_nan=False, allow_infinity=False)
    if tp is bool:
        return st.booleans()
    if tp is type(None):
        return st.none()
    if origin is Literal:
        return st.sampled_from(args)
    if origin in (typing.Union, types.UnionType):
        return st.one_of(*(_strategy(a) for a in args))
    if origin is list:
        return st.lists(_strategy(args[0]), max_size=3)
    if origin is tuple:
        return st.lists(_strategy(args[0]), max_size=3).map(tuple)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return st.sampled_from(list(tp))
    if attrs.has(tp):
        hints = typing.get_type_hints(tp)
        fields = {f.name: _strategy(hints[f.name]) for f in attrs.fields(tp)}
        return st.builds(tp, **fields)
    raise AssertionError(tp)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(_strategy(Person), _strategy(Team), _strategy(Small)))
def test_round_trip(instance: Any) -> None:
    cls = type(instance)
    text = json.dumps(structured_converter.unstructure(instance))
    data = json.loads(text)
    assert validate_json(data, json_schema_for(cls)) == []
    assert validate_json(data, json_schema_for(cls, strict=False)) == []
    assert parse_structured(text, cls) == instance
    assert parse_structured(f"Here you go:\n```json\n{text}\n```\n", cls) == instance


@settings(max_examples=30, deadline=None)
@given(_strategy(Person))
def test_nulls_mean_defaults(person: Person) -> None:
    data = structured_converter.unstructure(person)
    data.update(scores=None, level=None, kind=None, active=None, note=None)
    assert validate_json(data, json_schema_for(Person)) == []
    expected = attrs.evolve(person, scores=(), level=Level.LOW, kind="friend", active=True, note=0)
    assert parse_structured(json.dumps(data), Person) == expected


def test_validator_problems() -> None:
    schema = json_schema_for(Person)
    data = {
        "name": 3,
        "age": 1.5,
        "mood": "angry",
        "address": {"street": "s", "city": "c", "zip": None, "extra": 1},
        "nicknames": ["a", None],
        "scores": None,
        "level": True,
        "kind": "friend",
        "previous": None,
        "note": [],
    }
    problems = dict(validate_json(data, schema))
    assert problems == {
        "$.name": "expected string, got a number",
        "$.age": "expected integer, got a number",
        "$.mood": 'expected one of "happy", "sad", got "angry"',
        "$.address": "unknown key(s) 'extra'",
        "$.nicknames[1]": "expected string, got null",
        "$.level": "a boolean matches none of the allowed forms",
        "$.active": "required key missing",
        "$.note": "an array matches none of the allowed forms",
    }


# --------------------------------------------------------------------------------------
# Parsing


def test_parse_errors_carry_text_and_paths() -> None:
    raw = '{"title": 5, "count": "x", "bogus": true}'
    with pytest.raises(StructuredOutputError) as info:
        parse_structured(raw, Small)
    err = info.value
    assert isinstance(err, chatcore.ChatcoreError)
    assert err.raw_text == raw and err.response is None
    assert dict(err.problems) == {
        "$.title": "expected a string, got a number",
        "$.count": "expected an integer, got a string",
        "$": "unknown key(s) (bogus)",
    }
    assert "$.title" in str(err)

    for text, problem in [
        ("not json at all", "not valid JSON"),
        ("", "the answer is empty"),
        ("[1, 2]", "expected an object, got an array"),
        ("```json\n{broken\n```", "the fenced block is not valid JSON"),
        ("{}", "required key missing"),
    ]:
        with pytest.raises(StructuredOutputError) as info:
            parse_structured(text, Small)
        assert problem in info.value.problems[0][1], text
        assert info.value.raw_text == text


def test_parse_refusal() -> None:
    response = ChatResponse.from_dict(
        {
            "id": "x",
            "model": "m",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": None, "refusal": "No."},
                    "finish_reason": "stop",
                }
            ],
        }
    )
    with pytest.raises(StructuredOutputError, match="refused") as info:
        parse_structured(response, Small)
    assert info.value.response is response and info.value.problems == (("$", "No."),)


# --------------------------------------------------------------------------------------
# Over HTTP, with providers declaring different capabilities


class CapsPlugin:
    @chatcore.hookimpl
    def chatcore_providers(self) -> list[ProviderSpec]:
        options = {
            "api_key": Option(secret=True, required=False),
            "base_url": Option(default="http://127.0.0.1:9/v1"),
        }
        caps = {
            "full": {"chat", "json_schema", "json_object"},
            "jsononly": {"chat", "json_object"},
            "plain": {"chat"},
        }
        return [
            ProviderSpec(name=n, factory=WireProvider, options=options, capabilities=c)
            for n, c in caps.items()
        ]


@pytest.fixture
def client(server: StandInServer) -> Iterator[chatcore.Client]:
    host = PluginHost(load_entry_points=False, plugins=[CapsPlugin()], environ={})
    opts = {"api_key": TEST_KEY, "base_url": server.base_url}
    with chatcore.Client(
        plugin_host=host,
        providers={"full": opts, "jsononly": opts, "plain": opts},
        environ={},
        retry=chatcore.RetryPolicy(sleep=no_sleep),
    ) as c:
        yield c


ALICE = Person(
    name="Alice",
    age=30,
    mood=Mood.HAPPY,
    address=Address("1 Main St", "Springfield"),
    nicknames=["Al"],
    scores=(1.5, 2.0),
    level=Level.HIGH,
)


def _alice_json(**changes: Any) -> str:
    data = structured_converter.unstructure(ALICE)
    data.update(changes)
    return json.dumps(data)


def test_json_schema_request_and_parse(server: StandInServer, client: chatcore.Client) -> None:
    server.enqueue(Reply.chat(text=_alice_json()))
    result = chat_structured(client, "full:gpt-4o-mini", "Describe Alice.", Person, temperature=0)
    assert isinstance(result, StructuredResponse)
    assert result.parsed == ALICE and result.mode == "json_schema"
    assert result.text == _alice_json()
    body = server.requests[0].json()
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "Person", "schema": json_schema_for(Person), "strict": True},
    }
    assert body["messages"] == [{"role": "user", "content": "Describe Alice."}]
    assert body["temperature"] == 0


def test_fenced_answer_is_tolerated(server: StandInServer, client: chatcore.Client) -> None:
    server.enqueue(Reply.chat(text=f"Sure!\n\n```json\n{_alice_json()}\n```"))
    assert chat_structured(client, "full:m", "Alice?", Person).parsed == ALICE


def test_answer_that_does_not_fit(server: StandInServer, client: chatcore.Client) -> None:
    bad = _alice_json(age="thirty", extra=1)
    server.enqueue(Reply.chat(text=bad))
    with pytest.raises(StructuredOutputError) as info:
        chat_structured(client, "full:m", "Alice?", Person)
    err = info.value
    assert err.raw_text == bad
    assert dict(err.problems) == {
        "$.age": "expected an integer, got a string",
        "$": "unknown key(s) (extra)",
    }
    assert err.response is not None and err.response.text == bad

    server.enqueue(Reply.chat(text="I am not JSON"))
    with pytest.raises(StructuredOutputError, match="not valid JSON"):
        chat_structured(client, "full:m", "Alice?", Person)


def test_fallback_to_json_object(server: StandInServer, client: chatcore.Client) -> None:
    server.enqueue(Reply.chat(text=json.dumps({"title": "t"})))
    messages = [
        Message(role="system", content="You are terse."),
        Message(role="user", content="A small thing please."),
    ]
    result = chat_structured(client, "jsononly:m", messages, Small)
    assert result.parsed == Small("t") and result.mode == "json_object"
    body = server.requests[0].json()
    assert body["response_format"] == {"type": "json_object"}
    roles = [m["role"] for m in body["messages"]]
    assert roles == ["system", "system", "user"]
    hint = body["messages"][1]["content"]
    assert "JSON" in hint and json.dumps(json_schema_for(Small), separators=(",", ":")) in hint

    server.enqueue(Reply.chat(text=json.dumps({"title": "t", "count": 3})))
    forced = chat_structured(client, "full:m", "thing", Small, mode="json_object")
    assert forced.parsed == Small("t", 3) and forced.mode == "json_object"


def test_no_structured_capability(server: StandInServer, client: chatcore.Client) -> None:
    with pytest.raises(ValidationError, match="neither the 'json_schema' nor the 'json_object'"):
        chat_structured(client, "plain:m", "x", Small)
    with pytest.raises(ValidationError, match="response_format"):
        chat_structured(client, "full:m", "x", Small, response_format={"type": "text"})
    with pytest.raises(ValidationError, match="mode"):
        chat_structured(client, "full:m", "x", Small, mode="xml")  # type: ignore[arg-type]
    assert server.requests == []


def test_chat_json_adds_hint_only_when_needed(
    server: StandInServer, client: chatcore.Client
) -> None:
    server.enqueue(Reply.chat(text='{"a": 1}'), Reply.chat(text='{"b": [2]}'))
    first = chat_json(client, "full:m", "Give me a number.")
    second = chat_json(client, "full:m", "Give me a json list.")
    assert first.parsed == {"a": 1} and second.parsed == {"b": [2]}
    one, two = (r.json() for r in server.requests)
    assert one["response_format"] == {"type": "json_object"}
    assert one["messages"][0]["role"] == "system" and "JSON" in one["messages"][0]["content"]
    assert two["messages"] == [{"role": "user", "content": "Give me a json list."}]

    server.enqueue(Reply.chat(text="[1]"))
    with pytest.raises(StructuredOutputError, match="expected an object"):
        chat_json(client, "full:m", "json?")


def test_ensure_json_hint() -> None:
    msgs = ensure_json_hint("hi")
    assert [m.role for m in msgs] == ["system", "user"]
    after_dev = ensure_json_hint(
        [{"role": "developer", "content": "d"}, {"role": "user", "content": "u"}]
    )
    assert [m.role for m in after_dev] == ["developer", "system", "user"]
    kept = ensure_json_hint([Message(role="user", content="answer in Json")])
    assert len(kept) == 1


@attrs.frozen
class City:
    name: str
    population: int


def test_client_chat_response_model_sets_parsed(
    server: StandInServer, client: chatcore.Client
) -> None:
    server.enqueue(Reply.chat('{"name": "Paris", "population": 2100000}'))
    response = client.chat("full:m", "A city as JSON", response_model=City)
    assert response.parsed == City("Paris", 2100000)
    assert "parsed" not in response.to_dict()
    assert server.requests[-1].json()["response_format"]["type"] == "json_schema"
