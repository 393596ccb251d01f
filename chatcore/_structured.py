"""Structured output: JSON schemas from attrs classes, and answers parsed back into them.

* :func:`json_schema_for` turns an attrs class into a JSON schema. The default, ``strict=True``,
  is the form OpenAI's strict structured outputs require: every object has
  ``additionalProperties: false`` and lists *every* property in ``required``; a field with a
  default becomes a nullable union (``null`` means "use the default").
* :func:`response_format_for` wraps it as ``{"type": "json_schema", "json_schema": {...}}``.
* :func:`parse_structured` reads the first choice's JSON (a ```json fenced block is
  tolerated) and structures it with a strict cattrs converter (unknown keys rejected);
  anything that does not fit raises :class:`StructuredOutputError` with every problem's path.
* :func:`chat_structured` does both around one :meth:`Client.chat` call, falling back to
  ``json_object`` + the schema in a system message when the provider does not declare
  ``json_schema``; :func:`chat_json` is the plain ``json_object`` mode.

The type mapping (shared with :mod:`chatcore._tools`): ``str``, ``int``, ``float``, ``bool``,
``None``, ``X | None``, unions, ``list[X]`` / ``Sequence[X]`` / ``tuple[X, ...]``,
``dict[str, X]`` (not in strict mode), ``Literal[...]``, ``enum.Enum`` subclasses, attrs
classes (nested objects), and ``Annotated[X, "description"]``.
"""

from __future__ import annotations

import collections.abc
import enum
import inspect
import json
import re
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Generic, Literal, TypeVar, Union

import attrs
import cattrs

from chatcore._validate import split_model
from chatcore.exceptions import ChatcoreError, ConfigurationError, ValidationError
from chatcore.models import ChatResponse, Message, _problems, normalize_messages

__all__ = [
    "StructuredOutputError",
    "StructuredResponse",
    "chat_json",
    "chat_structured",
    "ensure_json_hint",
    "json_schema_for",
    "parse_structured",
    "response_format_for",
    "schema_name",
    "validate_json",
]

T = TypeVar("T")

_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_PRIMITIVES: dict[Any, str] = {str: "string", int: "integer", float: "number", bool: "boolean"}
_SCALARS = (str, int, float, bool, type(None))
_SUPPORTED = (
    "str, int, float, bool, None, X | None, unions, list[X], tuple[X, ...], "
    "dict[str, X], Literal[...], Enum subclasses and attrs classes"
)

JSON_HINT = "Respond with a single JSON object."


# --------------------------------------------------------------------------------------
# Errors and results


class StructuredOutputError(ChatcoreError):
    """The model's answer is not JSON, or does not fit the requested class.

    ``raw_text`` is the answer as received, ``problems`` the ``(path, message)`` pairs
    (``$`` is the root), ``response`` the :class:`~chatcore.ChatResponse` (``None`` when a
    string was parsed)."""

    def __init__(
        self,
        message: str,
        *,
        raw_text: str,
        problems: Iterable[tuple[str, str]] = (),
        response: ChatResponse | None = None,
    ) -> None:
        self.raw_text = raw_text
        self.problems: tuple[tuple[str, str], ...] = tuple(problems)
        self.response = response
        lines = [f"{path}: {msg}" if path else msg for path, msg in self.problems]
        if lines:
            message = f"{message}:\n  " + "\n  ".join(lines)
        super().__init__(message)


@attrs.frozen
class StructuredResponse(Generic[T]):
    """The answer (``response``) and its parsed value (``parsed``); ``mode`` is the
    ``response_format`` type that was sent (``"json_schema"`` or ``"json_object"``)."""

    response: ChatResponse
    parsed: T
    mode: str = "json_schema"

    @property
    def text(self) -> str:
        """The raw answer text."""
        return self.response.text


# --------------------------------------------------------------------------------------
# Type annotations -> JSON schema (shared with chatcore._tools)


def _strip_annotated(tp: Any) -> tuple[Any, str | None]:
    """``Annotated[X, "desc", ...]`` -> ``(X, "desc")``; other types unchanged."""
    description = None
    while typing.get_origin(tp) is typing.Annotated:
        args = typing.get_args(tp)
        for meta in args[1:]:
            if isinstance(meta, str) and description is None:
                description = meta
        tp = args[0]
    return tp, description


def _is_union(tp: Any) -> bool:
    origin = typing.get_origin(tp)
    return origin is Union or origin is types.UnionType


def accepts_none(tp: Any) -> bool:
    """Whether ``None`` is a valid value of annotation ``tp``."""
    tp, _ = _strip_annotated(tp)
    if tp is None or tp is type(None) or tp is Any:
        return True
    if _is_union(tp):
        return any(accepts_none(a) for a in typing.get_args(tp))
    if typing.get_origin(tp) is Literal:
        return None in typing.get_args(tp)
    return False


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    raise TypeError(type(value).__name__)


def _enum_schema(values: Sequence[Any], where: str) -> dict[str, Any]:
    kinds: list[str] = []
    for v in values:
        if not isinstance(v, _SCALARS):
            raise ConfigurationError(
                f"{where}: choice {v!r} is not a JSON scalar (str, int, float, bool or None)"
            )
        kind = _json_type(v)
        if kind not in kinds:
            kinds.append(kind)
    if "integer" in kinds and "number" in kinds:
        kinds.remove("integer")
    return {"type": kinds[0] if len(kinds) == 1 else kinds, "enum": list(values)}


def nullable(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` or ``null``: ``{"type": [t, "null"]}`` for a plain type, else ``anyOf``."""
    kind = schema.get("type")
    if set(schema) == {"type"} and isinstance(kind, str):
        return {"type": [kind, "null"]}
    if set(schema) == {"type"} and isinstance(kind, list):
        return {"type": [*kind, "null"]} if "null" not in kind else schema
    if set(schema) <= {"anyOf", "description"} and isinstance(schema.get("anyOf"), list):
        branches = schema["anyOf"]
        if {"type": "null"} not in branches:
            branches = [*branches, {"type": "null"}]
        return {**schema, "anyOf": branches}
    description = schema.get("description")
    inner = {k: v for k, v in schema.items() if k != "description"}
    out: dict[str, Any] = {"anyOf": [inner, {"type": "null"}]}
    if description is not None:
        out["description"] = description
    return out


def first_paragraph(doc: str | None) -> str | None:
    """The first paragraph of a docstring, joined into one line."""
    if not doc:
        return None
    lines: list[str] = []
    for line in inspect.cleandoc(doc).splitlines():
        if not line.strip():
            if lines:
                break
            continue
        lines.append(line.strip())
    return " ".join(lines) or None


class SchemaBuilder:
    """Builds JSON schemas from annotations; ``strict`` selects OpenAI's strict form."""

    def __init__(self, *, strict: bool) -> None:
        self.strict = strict
        self._stack: list[type[Any]] = []

    def schema(self, tp: Any, where: str) -> dict[str, Any]:
        """The schema of annotation ``tp``; ``where`` names it in errors
        (``"parameter 'x'"``, ``"Person.address"``)."""
        tp, description = _strip_annotated(tp)
        out = self._schema(tp, where)
        if description:
            out = {**out, "description": description}
        return out

    def _fail(self, where: str, tp: Any, why: str = "") -> ConfigurationError:
        shown = getattr(tp, "__name__", None) if isinstance(tp, type) else None
        shown = shown or repr(tp)
        why = why or f"supported: {_SUPPORTED}"
        return ConfigurationError(f"{where}: unsupported type annotation {shown} ({why})")

    def _schema(self, tp: Any, where: str) -> dict[str, Any]:
        if tp is Any:
            if self.strict:
                raise self._fail(where, tp, "Any cannot be expressed in strict mode")
            return {}
        if tp is None or tp is type(None):
            return {"type": "null"}
        if tp in _PRIMITIVES:
            return {"type": _PRIMITIVES[tp]}
        origin = typing.get_origin(tp)
        args = typing.get_args(tp)
        if origin is Literal:
            return _enum_schema(args, where)
        if _is_union(tp):
            members = [a for a in args if a is not type(None)]
            has_none = len(members) < len(args)
            if len(members) == 1:
                base = self.schema(members[0], where)
                return nullable(base) if has_none else base
            branches = [self.schema(a, where) for a in members]
            if has_none:
                branches.append({"type": "null"})
            return {"anyOf": branches}
        if origin in (list, collections.abc.Sequence, collections.abc.MutableSequence):
            if len(args) != 1:
                raise self._fail(where, tp, "give the item type, e.g. list[str]")
            return {"type": "array", "items": self.schema(args[0], f"{where}[]")}
        if origin is tuple:
            if len(args) == 2 and args[1] is Ellipsis:
                return {"type": "array", "items": self.schema(args[0], f"{where}[]")}
            raise self._fail(where, tp, "fixed-length tuples: use tuple[X, ...] or list[X]")
        if origin in (dict, collections.abc.Mapping, collections.abc.MutableMapping):
            if len(args) != 2 or args[0] is not str:
                raise self._fail(where, tp, "mappings need string keys, e.g. dict[str, int]")
            if self.strict:
                raise self._fail(
                    where,
                    tp,
                    "free-form mappings cannot be expressed in OpenAI strict mode; "
                    "use an attrs class, or strict=False",
                )
            return {
                "type": "object",
                "additionalProperties": self.schema(args[1], f"{where}[]"),
            }
        if isinstance(tp, type) and issubclass(tp, enum.Enum):
            values = [m.value for m in tp]
            if not values:
                raise self._fail(where, tp, "an Enum without members")
            return _enum_schema(values, where)
        if isinstance(tp, type) and attrs.has(tp):
            return self.object_schema(tp)
        if tp in (list, tuple, dict, set, frozenset) or origin in (set, frozenset):
            raise self._fail(where, tp, f"use one of: {_SUPPORTED}")
        raise self._fail(where, tp)

    def object_schema(self, cls: type[Any]) -> dict[str, Any]:
        """The ``object`` schema of an attrs class."""
        if cls in self._stack:
            chain = " -> ".join(c.__name__ for c in [*self._stack, cls])
            raise ConfigurationError(
                f"{cls.__name__}: recursive classes are not supported ({chain})"
            )
        self._stack.append(cls)
        try:
            hints = _class_hints(cls)
            properties: dict[str, Any] = {}
            required: list[str] = []
            for field in attrs.fields(cls):
                if not field.init:
                    continue
                where = f"{cls.__name__}.{field.name}"
                tp = hints.get(field.name, field.type)
                if tp is None:
                    raise ConfigurationError(f"{where}: the field has no type annotation")
                prop = self.schema(tp, where)
                has_default = field.default is not attrs.NOTHING
                if self.strict:
                    if has_default and not accepts_none(tp):
                        prop = nullable(prop)
                    required.append(field.name)
                elif not has_default:
                    required.append(field.name)
                elif isinstance(field.default, _SCALARS):
                    prop = {**prop, "default": field.default}
                description = field.metadata.get("description")
                if isinstance(description, str) and description:
                    prop = {**prop, "description": description}
                properties[field.name] = prop
        finally:
            self._stack.pop()
        out: dict[str, Any] = {"type": "object"}
        doc = first_paragraph(cls.__dict__.get("__doc__"))
        if doc:
            out["description"] = doc
        out["properties"] = properties
        if required or self.strict:
            out["required"] = required
        out["additionalProperties"] = False
        return out


def _class_hints(cls: type[Any]) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls, include_extras=True)
    except Exception as exc:
        raise ConfigurationError(
            f"{cls.__name__}: cannot resolve its type annotations ({type(exc).__name__}: {exc});"
            " define the classes it refers to at module level"
        ) from exc


def schema_name(cls: type[Any]) -> str:
    """The class name made to fit OpenAI's ``[A-Za-z0-9_-]{1,64}`` name rule."""
    name = re.sub(r"[^A-Za-z0-9_-]", "_", getattr(cls, "__name__", "") or "")[:64]
    return name or "response"


def json_schema_for(cls: type[Any], *, strict: bool = True) -> dict[str, Any]:
    """The JSON schema of attrs class ``cls`` (see the module docstring for the types).

    ``strict=True`` generates OpenAI's strict form (all properties required, fields with a
    default as nullable unions, ``additionalProperties: false``); ``strict=False`` a plain
    schema where fields with a default are not required. Raises
    :class:`~chatcore.ConfigurationError` naming the field of an unsupported annotation."""
    if not (isinstance(cls, type) and attrs.has(cls)):
        raise ConfigurationError(
            f"{cls!r} is not an attrs class; structured output needs an @attrs.define/frozen"
            " class (the JSON root must be an object)"
        )
    return SchemaBuilder(strict=strict).object_schema(cls)


def response_format_for(
    cls: type[Any],
    *,
    strict: bool = True,
    name: str | None = None,
    description: str | None = None,
) -> dict[str, Any]:
    """``{"type": "json_schema", "json_schema": {"name", "schema", "strict"}}`` for ``cls``."""
    name = schema_name(cls) if name is None else name
    if not _NAME_RE.match(name):
        raise ConfigurationError(f"name={name!r}: must match [A-Za-z0-9_-]{{1,64}}")
    inner: dict[str, Any] = {"name": name}
    if description:
        inner["description"] = description
    inner["schema"] = json_schema_for(cls, strict=strict)
    inner["strict"] = strict
    return {"type": "json_schema", "json_schema": inner}


# --------------------------------------------------------------------------------------
# A validator for the JSON-schema subset generated above


def _is_kind(value: Any, kind: str) -> bool:
    if kind == "null":
        return value is None
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "integer":
        return (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, float) and value.is_integer()
        )
    if kind == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "string":
        return isinstance(value, str)
    if kind == "array":
        return isinstance(value, list)
    if kind == "object":
        return isinstance(value, dict)
    return True  # an unknown type name: not ours to judge


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    return bool(a == b)


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def validate_json(
    value: Any, schema: Mapping[str, Any], path: str = "$", *, closed: bool = False
) -> list[tuple[str, str]]:
    """Check a decoded JSON value against a schema of the subset chatcore generates (``type``,
    ``enum``, ``const``, ``properties``, ``required``, ``additionalProperties``, ``items``,
    ``anyOf``); other keywords are ignored. ``closed`` treats objects without
    ``additionalProperties`` as closed (OpenAI strict mode). Returns ``(path, message)``
    problems, empty when the value fits."""
    problems: list[tuple[str, str]] = []
    any_of = schema.get("anyOf")
    branches = [s for s in any_of if isinstance(s, Mapping)] if isinstance(any_of, list) else []
    if branches:
        results = [validate_json(value, s, path, closed=closed) for s in branches]
        if all(results):
            typed = [r for s, r in zip(branches, results) if _type_matches(value, s.get("type"))]
            if len(typed) == 1:
                problems.extend(typed[0])
            else:
                problems.append((path, f"{_describe(value)} matches none of the allowed forms"))
            return problems
    kind = schema.get("type")
    if kind is not None and not _type_matches(value, kind):
        kinds = kind if isinstance(kind, list) else [kind]
        shown = " or ".join(str(k) for k in kinds)
        problems.append((path, f"expected {shown}, got {_describe(value)}"))
        return problems
    enum_values = schema.get("enum")
    if isinstance(enum_values, list) and not any(_same(value, e) for e in enum_values):
        allowed = ", ".join(json.dumps(e) for e in enum_values)
        problems.append((path, f"expected one of {allowed}, got {json.dumps(value)}"))
        return problems
    if "const" in schema and not _same(value, schema["const"]):
        problems.append((path, f"expected {json.dumps(schema['const'])}"))
        return problems
    if isinstance(value, dict):
        props = schema.get("properties")
        props = props if isinstance(props, Mapping) else {}
        required = schema.get("required")
        for key in required if isinstance(required, list) else ():
            if key not in value:
                problems.append((f"{path}.{key}", "required key missing"))
        extra_schema = schema.get("additionalProperties", not closed)
        unknown: list[str] = []
        for key, item in value.items():
            where = f"{path}.{key}"
            if key in props:
                sub = props[key]
                if isinstance(sub, Mapping):
                    problems.extend(validate_json(item, sub, where, closed=closed))
            elif extra_schema is False:
                unknown.append(key)
            elif isinstance(extra_schema, Mapping):
                problems.extend(validate_json(item, extra_schema, where, closed=closed))
        if unknown:
            problems.append((path, "unknown key(s) " + ", ".join(repr(k) for k in unknown)))
    elif isinstance(value, list):
        items = schema.get("items")
        if isinstance(items, Mapping):
            for i, item in enumerate(value):
                problems.extend(validate_json(item, items, f"{path}[{i}]", closed=closed))
    return problems


def _type_matches(value: Any, kind: Any) -> bool:
    if kind is None:
        return True
    kinds = kind if isinstance(kind, list) else [kind]
    return any(_is_kind(value, k) for k in kinds if isinstance(k, str))


# --------------------------------------------------------------------------------------
# JSON -> Python values (strict cattrs converter)


def _scalar_hook(expected: type[Any], name: str) -> Callable[[Any, Any], Any]:
    def hook(value: Any, _type: Any) -> Any:
        if expected is float:
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return float(value)
        elif expected is int:
            if isinstance(value, float) and value.is_integer():
                return int(value)  # JSON 1.0 is an integer
            if isinstance(value, int) and not isinstance(value, bool):
                return value
        elif isinstance(value, expected):
            return value
        raise TypeError(f"expected {name}, got {_describe(value)}")

    return hook


def _union_hook(conv: cattrs.Converter) -> Callable[[Any, Any], Any]:
    def hook(value: Any, tp: Any) -> Any:
        args = typing.get_args(tp)
        if value is None:
            if type(None) in args:
                return None
            raise TypeError("expected a value, got null")
        members = [a for a in args if a is not type(None)]
        if len(members) == 1:  # Optional[X]: X's own errors, with their paths
            return conv.structure(value, members[0])
        # an exact primitive match first (True is a bool, not an int)
        for member in members:
            if member in _PRIMITIVES and type(value) is member:
                return value
        for member in members:
            try:
                return conv.structure(value, member)
            except Exception:
                continue
        raise ValueError(f"{_describe(value)} matches none of the allowed types")

    return hook


def _enum_hook(value: Any, tp: Any) -> Any:
    try:
        return tp(value)
    except ValueError:
        allowed = ", ".join(json.dumps(m.value) for m in tp)
        raise ValueError(f"expected one of {allowed}, got {value!r}") from None


def _is_enum(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, enum.Enum)


def _make_converter() -> cattrs.Converter:
    conv = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)
    conv.register_structure_hook(str, _scalar_hook(str, "a string"))
    conv.register_structure_hook(int, _scalar_hook(int, "an integer"))
    conv.register_structure_hook(float, _scalar_hook(float, "a number"))
    conv.register_structure_hook(bool, _scalar_hook(bool, "a boolean"))
    conv.register_structure_hook_func(_is_union, _union_hook(conv))
    conv.register_structure_hook_func(_is_enum, _enum_hook)
    return conv


#: Structures JSON values into annotated types: unknown keys and wrong types are errors.
converter: cattrs.Converter = _make_converter()


def apply_defaults(value: Any, tp: Any) -> Any:
    """Drop ``null`` values of fields that have a default but do not accept ``None`` (the
    strict schema's "use the default"), recursively; returns a new value."""
    tp, _ = _strip_annotated(tp)
    if value is None:
        return value
    if isinstance(tp, type) and attrs.has(tp) and isinstance(value, dict):
        hints = _class_hints(tp)
        out = {}
        for key, item in value.items():
            field = getattr(attrs.fields(tp), key, None) if isinstance(key, str) else None
            if field is None:
                out[key] = item  # rejected by the converter
                continue
            ftype = hints.get(key, field.type)
            if item is None and field.default is not attrs.NOTHING and not accepts_none(ftype):
                continue
            out[key] = apply_defaults(item, ftype)
        return out
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if _is_union(tp):
        members = [a for a in args if a is not type(None)]
        return apply_defaults(value, members[0]) if len(members) == 1 else value
    sequences = (list, tuple, collections.abc.Sequence, collections.abc.MutableSequence)
    mappings = (dict, collections.abc.Mapping, collections.abc.MutableMapping)
    if origin in sequences and isinstance(value, list) and args:
        return [apply_defaults(v, args[0]) for v in value]
    if origin in mappings and isinstance(value, dict) and len(args) == 2:
        return {k: apply_defaults(v, args[1]) for k, v in value.items()}
    return value


# --------------------------------------------------------------------------------------
# Parsing answers

_FENCE_RE = re.compile(r"```[ \t]*(?:json|JSON|json5)?[ \t]*\r?\n(.*?)\r?\n?[ \t]*```", re.DOTALL)


def _decode(text: str) -> tuple[Any, str | None]:
    """The JSON in ``text`` (whole, else the first fenced block) or an error message."""
    stripped = text.strip()
    if not stripped:
        return None, "the answer is empty"
    try:
        return json.loads(stripped), None
    except ValueError as exc:
        first_error = f"not valid JSON ({exc})"
    for match in _FENCE_RE.finditer(text):
        try:
            return json.loads(match.group(1)), None
        except ValueError as exc:
            return None, f"the fenced block is not valid JSON ({exc})"
    return None, first_error


def parse_structured(response: ChatResponse | str, cls: type[T]) -> T:
    """Parse the first choice's text as JSON (a ```json fenced block is tolerated) into an
    instance of attrs class ``cls``, strictly: unknown keys, missing fields and wrong types
    raise :class:`StructuredOutputError` listing every problem's path. ``null`` for a field
    with a default (the strict schema's way to leave it out) means the default."""
    resp = response if isinstance(response, ChatResponse) else None
    text = response.text if isinstance(response, ChatResponse) else response
    if resp is not None and resp.message is not None and resp.message.refusal and not text:
        raise StructuredOutputError(
            "the model refused to answer",
            raw_text=text,
            problems=[("$", resp.message.refusal)],
            response=resp,
        )
    data, error = _decode(text)
    if error is not None:
        raise StructuredOutputError(
            f"the answer does not fit {cls.__name__}",
            raw_text=text,
            problems=[("$", error)],
            response=resp,
        )
    if not isinstance(data, dict):
        raise StructuredOutputError(
            f"the answer does not fit {cls.__name__}",
            raw_text=text,
            problems=[("$", f"expected an object, got {_describe(data)}")],
            response=resp,
        )
    try:
        result: T = converter.structure(apply_defaults(data, cls), cls)
    except Exception as exc:
        raise StructuredOutputError(
            f"the answer does not fit {cls.__name__}",
            raw_text=text,
            problems=_problems(exc, "$"),
            response=resp,
        ) from exc
    return result


# --------------------------------------------------------------------------------------
# Calling the model


def _mentions_json(messages: Sequence[Message]) -> bool:
    return any("json" in m.text.lower() for m in messages)


def _with_system(messages: Sequence[Message], text: str) -> tuple[Message, ...]:
    """Insert a system message after the leading system/developer messages."""
    at = 0
    while at < len(messages) and messages[at].role in ("system", "developer"):
        at += 1
    return (*messages[:at], Message(role="system", content=text), *messages[at:])


def ensure_json_hint(messages: Any) -> tuple[Message, ...]:
    """``messages`` normalized, plus a short system message asking for JSON when none of them
    mentions "JSON" (OpenAI's ``json_object`` mode rejects a request whose messages do not
    contain the word)."""
    msgs = normalize_messages(messages)
    if _mentions_json(msgs):
        return msgs
    return _with_system(msgs, JSON_HINT)


def _schema_instruction(cls: type[Any], schema: Mapping[str, Any]) -> str:
    return (
        f"Respond with a single JSON object (no prose, no code fence) that matches this JSON "
        f"schema, named {schema_name(cls)}:\n{json.dumps(schema, separators=(',', ':'))}"
    )


def _capabilities(client: Any, model: str) -> tuple[str, frozenset[str]]:
    name, _ = split_model(model)
    return name, frozenset(client.provider(name).capabilities)


def _structured_call(
    client: Any,
    model: str,
    messages: Any,
    response_model: type[T],
    *,
    strict: bool,
    mode: str,
    name: str | None,
    **params: Any,
) -> tuple[Any, dict[str, Any], Literal["json_schema", "json_object"]]:
    """The messages, chat parameters and mode a structured call sends."""
    if "response_format" in params:
        raise ValidationError(
            [("response_format", "chat_structured sets response_format itself; do not pass it")]
        )
    if mode not in ("auto", "json_schema", "json_object"):
        raise ValidationError(
            [("mode", f"expected 'auto', 'json_schema' or 'json_object', got {mode!r}")]
        )
    schema_format = response_format_for(response_model, strict=strict, name=name)
    provider, caps = _capabilities(client, model)
    if mode == "auto":
        if "json_schema" in caps:
            mode = "json_schema"
        elif "json_object" in caps:
            mode = "json_object"
        else:
            raise ValidationError(
                [
                    (
                        "response_format",
                        f"provider {provider!r} declares neither the 'json_schema' nor the "
                        "'json_object' capability, so structured output cannot be requested",
                    )
                ]
            )
    msgs = normalize_messages(messages)
    if mode == "json_schema":
        return msgs, {**params, "response_format": schema_format}, "json_schema"
    schema = schema_format["json_schema"]["schema"]
    msgs = _with_system(msgs, _schema_instruction(response_model, schema))
    return msgs, {**params, "response_format": {"type": "json_object"}}, "json_object"


def chat_structured(
    client: Any,
    model: str,
    messages: Any,
    response_model: type[T],
    *,
    strict: bool = True,
    mode: Literal["auto", "json_schema", "json_object"] = "auto",
    name: str | None = None,
    **params: Any,
) -> StructuredResponse[T]:
    """Ask for an answer shaped like attrs class ``response_model`` and parse it.

    ``mode="auto"`` sends ``response_format={"type": "json_schema", ...}`` (the strict form
    with ``strict=True``) when the provider declares the ``json_schema`` capability, else
    ``{"type": "json_object"}`` with the schema in a system message when it declares
    ``json_object``, else raises :class:`~chatcore.ValidationError` before sending.
    ``params`` go to :meth:`Client.chat`. Raises :class:`StructuredOutputError` when the
    answer does not fit."""
    msgs, call_params, chosen = _structured_call(
        client, model, messages, response_model, strict=strict, mode=mode, name=name, **params
    )
    response = client.chat(model, msgs, **call_params)
    return StructuredResponse(response, parse_structured(response, response_model), chosen)


async def achat_structured(
    client: Any,
    model: str,
    messages: Any,
    response_model: type[T],
    *,
    strict: bool = True,
    mode: Literal["auto", "json_schema", "json_object"] = "auto",
    name: str | None = None,
    **params: Any,
) -> StructuredResponse[T]:
    """:func:`chat_structured` for an :class:`~chatcore.AsyncClient`."""
    msgs, call_params, chosen = _structured_call(
        client, model, messages, response_model, strict=strict, mode=mode, name=name, **params
    )
    response = await client.chat(model, msgs, **call_params)
    return StructuredResponse(response, parse_structured(response, response_model), chosen)


def chat_json(client: Any, model: str, messages: Any, **params: Any) -> StructuredResponse[Any]:
    """``json_object`` mode: send ``response_format={"type": "json_object"}`` (adding a short
    system hint when no message mentions "JSON", see :func:`ensure_json_hint`) and decode the
    answer (``.parsed`` is the decoded value). Raises :class:`StructuredOutputError` when the
    answer is not a JSON object."""
    if "response_format" in params:
        raise ValidationError(
            [("response_format", "chat_json sets response_format itself; do not pass it")]
        )
    response = client.chat(
        model, ensure_json_hint(messages), response_format={"type": "json_object"}, **params
    )
    data, error = _decode(response.text)
    if error is None and not isinstance(data, dict):
        error = f"expected an object, got {_describe(data)}"
    if error is not None:
        raise StructuredOutputError(
            "the answer is not a JSON object",
            raw_text=response.text,
            problems=[("$", error)],
            response=response,
        )
    return StructuredResponse(response, data, "json_object")
