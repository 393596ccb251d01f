"""Tool calling: tool definitions from Python functions, and the call-execute-answer loop.

* :func:`tool_from_function` derives a :class:`~chatcore.Tool` from a function's signature,
  type hints and docstring (first paragraph; ``:param x:`` lines, a Google ``Args:`` section
  or a NumPy ``Parameters`` section describe the parameters).
* :func:`run_tools` calls the model with the tools, runs every requested call, sends the
  results back as ``tool`` messages and repeats until the model answers without tool calls.
  A failing call (the function raised, the arguments are not JSON or do not fit the schema,
  no such tool) becomes ``{"error": "<type>: <message>"}`` for the model, never a crash.
  Running out of turns raises :class:`ToolLoopError` (``on_max_turns="return"`` returns the
  run with ``completed=False`` instead).
"""

from __future__ import annotations

import functools
import inspect
import json
import re
import time
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal

import attrs

from chatcore._pipeline import Effect, run_async, run_sync
from chatcore._structured import (
    SchemaBuilder,
    accepts_none,
    apply_defaults,
    converter,
    nullable,
    validate_json,
)
from chatcore.exceptions import ChatcoreError, ConfigurationError, ValidationError
from chatcore.models import (
    ChatResponse,
    FunctionDefinition,
    Message,
    Tool,
    ToolCall,
    _problems,
    normalize_messages,
    strict_converter,
)

__all__ = [
    "ToolCallRecord",
    "ToolLoopError",
    "ToolRun",
    "tool_from_function",
    "run_tools",
]

_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


# --------------------------------------------------------------------------------------
# Results and errors


@attrs.frozen
class ToolCallRecord:
    """One executed tool call.

    ``arguments`` is the decoded JSON object (``None`` when it was not valid JSON, see
    ``raw_arguments``), ``result`` what the function returned (``None`` on error),
    ``error`` the ``"<type>: <message>"`` text sent to the model instead, ``content`` the
    ``tool`` message content that was sent, ``duration`` the function's run time in
    seconds and ``turn`` the model call (1-based) that requested it."""

    id: str
    name: str
    arguments: Mapping[str, Any] | None
    raw_arguments: str
    result: Any
    error: str | None
    content: str
    duration: float
    turn: int

    @property
    def ok(self) -> bool:
        """Whether the call succeeded."""
        return self.error is None


@attrs.frozen
class ToolRun:
    """The outcome of :func:`run_tools`.

    ``response`` is the last :class:`~chatcore.ChatResponse`; ``messages`` the whole
    conversation (the input, every assistant message, every ``tool`` message, and the final
    answer), ready to be sent again; ``calls`` every executed call in order; ``turns`` the
    number of model calls; ``completed`` is ``False`` when the loop stopped at ``max_turns``
    with tool calls still being requested."""

    response: ChatResponse
    messages: tuple[Message, ...]
    calls: tuple[ToolCallRecord, ...]
    turns: int
    completed: bool = True

    @property
    def text(self) -> str:
        """The final answer's text."""
        return self.response.text


class ToolLoopError(ChatcoreError):
    """The model still asked for tools after ``max_turns`` model calls; ``.run`` is the
    :class:`ToolRun` so far (``completed=False``; the last turn's calls were executed, so
    ``run.messages`` can be passed to :func:`run_tools` again to continue)."""

    def __init__(self, message: str, *, run: ToolRun) -> None:
        super().__init__(message)
        self.run = run


# --------------------------------------------------------------------------------------
# Docstrings


_SECTION_RE = re.compile(
    r"^(Args|Arguments|Parameters|Params|Keyword Args|Keyword Arguments|Other Parameters)"
    r"\s*:?\s*$"
)
_STOP_RE = re.compile(
    r"^(Returns?|Yields?|Raises?|Examples?|Notes?|See Also|Attributes|Warnings?|References)"
    r"\s*:?\s*$"
)
_SPHINX_RE = re.compile(r"^:param\s+(?:[^:]*?\s)?\*{0,2}(\w+)\s*:\s*(.*)$")
_GOOGLE_RE = re.compile(r"^\*{0,2}(\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")
_NUMPY_RE = re.compile(r"^\*{0,2}(\w+)\s*(?::.*)?$")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def parse_docstring(doc: str | None) -> tuple[str | None, dict[str, str]]:
    """``(description, {parameter: description})`` from a docstring: the first paragraph, and
    Sphinx ``:param x:``, Google ``Args:`` or NumPy ``Parameters`` entries."""
    if not doc:
        return None, {}
    lines = inspect.cleandoc(doc).splitlines()
    head: list[str] = []
    for line in lines:
        stripped = line.strip()
        if not stripped:
            if head:
                break
            continue
        if stripped.startswith(":") or _SECTION_RE.match(stripped) or _STOP_RE.match(stripped):
            break
        head.append(stripped)
    params: dict[str, str] = {}

    def add(name: str, text: list[str]) -> None:
        joined = " ".join(t for t in text if t)
        if joined and name not in params:
            params[name] = joined

    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        sphinx = _SPHINX_RE.match(stripped)
        if sphinx:
            name, text = sphinx.group(1), [sphinx.group(2).strip()]
            base = _indent(line)
            i += 1
            while i < len(lines) and lines[i].strip() and not lines[i].strip().startswith(":"):
                if _indent(lines[i]) <= base and not text[-1]:
                    break
                text.append(lines[i].strip())
                i += 1
            add(name, text)
            continue
        section = _SECTION_RE.match(stripped)
        if section:
            base = _indent(line)
            numpy = i + 1 < len(lines) and set(lines[i + 1].strip()) == {"-"}
            i += 2 if numpy else 1
            entry: str | None = None
            text = []
            entry_indent: int | None = None
            while i < len(lines):
                cur = lines[i]
                cur_stripped = cur.strip()
                if not cur_stripped:
                    i += 1
                    continue
                ind = _indent(cur)
                if numpy:
                    if ind <= base:
                        if (
                            i + 1 < len(lines)
                            and lines[i + 1].strip()
                            and set(lines[i + 1].strip()) == {"-"}
                        ):
                            break  # the next NumPy section
                        match = _NUMPY_RE.match(cur_stripped)
                        if match is None:
                            break
                        if entry:
                            add(entry, text)
                        entry, text = match.group(1), []
                    else:
                        text.append(cur_stripped)
                else:
                    if ind <= base:
                        break  # the section ended
                    if entry_indent is None:
                        entry_indent = ind
                    match = _GOOGLE_RE.match(cur_stripped) if ind <= entry_indent else None
                    if match:
                        if entry:
                            add(entry, text)
                        entry, text = match.group(1), [match.group(2).strip()]
                    else:
                        text.append(cur_stripped)
                i += 1
            if entry:
                add(entry, text)
            continue
        i += 1
    return (" ".join(head) or None), params


# --------------------------------------------------------------------------------------
# Tool definitions from functions


@attrs.frozen
class _Param:
    name: str
    annotation: Any  # None: unannotated, passed through as decoded
    has_default: bool
    positional_only: bool
    default: Any = None


def _hints(func: Callable[..., Any], name: str) -> dict[str, Any]:
    target: Any = func
    while isinstance(target, functools.partial):
        target = target.func
    if not (inspect.isfunction(target) or inspect.ismethod(target)) and callable(target):
        call = getattr(type(target), "__call__", None)  # noqa: B004 - a callable object
        target = call if call is not None else target
    try:
        return typing.get_type_hints(target, include_extras=True)
    except Exception as exc:
        raise ConfigurationError(
            f"tool {name!r}: cannot resolve the type annotations of {func!r} "
            f"({type(exc).__name__}: {exc})"
        ) from exc


def _params(func: Callable[..., Any], name: str, *, require_annotations: bool) -> list[_Param]:
    try:
        sig = inspect.signature(func)
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"tool {name!r}: cannot read the signature of {func!r}") from exc
    hints = _hints(func, name)
    out: list[_Param] = []
    for p in sig.parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            if require_annotations:
                star = "*" if p.kind is p.VAR_POSITIONAL else "**"
                raise ConfigurationError(
                    f"tool {name!r}: parameter {star}{p.name} is not supported; a tool takes "
                    "named parameters only"
                )
            continue
        annotation = hints.get(p.name)
        if annotation is None and require_annotations:
            raise ConfigurationError(
                f"tool {name!r}: parameter {p.name!r} has no type annotation (annotate it, "
                "e.g. `city: str`)"
            )
        out.append(
            _Param(
                p.name,
                annotation,
                p.default is not inspect.Parameter.empty,
                p.kind is p.POSITIONAL_ONLY,
                None if p.default is inspect.Parameter.empty else p.default,
            )
        )
    return out


def _check_name(name: str, func: Any) -> str:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ConfigurationError(
            f"tool name {name!r} (of {func!r}) must match [A-Za-z0-9_-]{{1,64}}; pass name=..."
        )
    return name


def _check_callable(func: Any, what: str) -> None:
    if not callable(func):
        raise ConfigurationError(f"{what}: expected a function, got {type(func).__name__}")


def tool_from_function(
    func: Callable[..., Any],
    *,
    name: str | None = None,
    description: str | None = None,
    strict: bool | None = None,
) -> Tool:
    """A :class:`~chatcore.Tool` for ``func``.

    The name is ``func.__name__`` (or ``name``), the description the docstring's first
    paragraph (or ``description``). Parameters become the properties of an ``object``
    schema; parameters with a default are not required (their JSON-scalar defaults are
    shown as ``default``). Supported annotations are those of
    :func:`chatcore._structured.json_schema_for` (``str``, ``int``, ``float``, ``bool``,
    ``None``/``Optional``, ``list[X]``, ``dict[str, X]``, ``Literal``, ``Enum``, attrs classes,
    ``Annotated[X, "description"]``). ``strict=True`` generates OpenAI's strict form (every
    parameter required, those with a default nullable: ``null`` means the default) and sets
    ``strict`` on the definition. Raises :class:`~chatcore.ConfigurationError` naming the
    parameter of an unsupported annotation."""
    tool_name = _check_name(name if name is not None else getattr(func, "__name__", ""), func)
    _check_callable(func, f"tool {tool_name!r}")
    params = _params(func, tool_name, require_annotations=True)
    doc_description, doc_params = parse_docstring(inspect.getdoc(func))
    builder = SchemaBuilder(strict=bool(strict))
    properties: dict[str, Any] = {}
    required: list[str] = []
    for p in params:
        prop = builder.schema(p.annotation, f"tool {tool_name!r}: parameter {p.name!r}")
        if strict:
            if p.has_default and not accepts_none(p.annotation):
                prop = nullable(prop)
            required.append(p.name)
        elif not p.has_default:
            required.append(p.name)
        elif isinstance(p.default, (str, int, float, bool, type(None))):
            prop = {**prop, "default": p.default}
        if p.name in doc_params and "description" not in prop:
            prop = {**prop, "description": doc_params[p.name]}
        properties[p.name] = prop
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required or strict:
        schema["required"] = required
    schema["additionalProperties"] = False
    text = description if description is not None else doc_description
    return Tool(FunctionDefinition(tool_name, text or None, schema, strict))


# --------------------------------------------------------------------------------------
# The registry of callable tools


@attrs.frozen
class _Registered:
    name: str
    tool: Tool
    func: Callable[..., Any]
    params: tuple[_Param, ...]

    def validate(self, arguments: Any) -> list[tuple[str, str]]:
        schema = self.tool.function.parameters or {"type": "object"}
        return validate_json(arguments, schema, "arguments", closed=bool(self.tool.function.strict))

    def bind(self, arguments: Mapping[str, Any]) -> tuple[list[Any], dict[str, Any]]:
        """Positional and keyword arguments for the function, converted to its annotations
        (raises a cattrs error when a value does not fit)."""
        known = {p.name: p for p in self.params}
        args: list[Any] = []
        kwargs: dict[str, Any] = {}
        for key, value in arguments.items():
            p = known.get(key)
            if p is None:
                kwargs[key] = value  # an explicit Tool with a **kwargs function
                continue
            if p.annotation is not None:
                if value is None and p.has_default and not accepts_none(p.annotation):
                    continue  # strict mode's "use the default"
                value = converter.structure(apply_defaults(value, p.annotation), p.annotation)
            if p.positional_only:
                continue
            kwargs[key] = value
        for p in self.params:  # positional-only parameters, in order
            if p.positional_only and p.name in arguments:
                value = arguments[p.name]
                if p.annotation is not None:
                    value = converter.structure(apply_defaults(value, p.annotation), p.annotation)
                args.append(value)
        return args, kwargs


#: Functions, ``(function, Tool | dict)`` pairs, or a mapping of tool name to function.
ToolsArg = Mapping[str, Callable[..., Any]] | Iterable[Any]


def _register(tools: Any) -> dict[str, _Registered]:
    items: list[tuple[str | None, Any]]
    if isinstance(tools, Mapping):
        items = list(tools.items())
    elif callable(tools):
        items = [(None, tools)]
    elif isinstance(tools, Iterable) and not isinstance(tools, (str, bytes)):
        items = [(None, t) for t in tools]
    else:
        raise ConfigurationError(
            "tools: expected functions, (function, Tool) pairs, or a mapping of name to "
            f"function; got {type(tools).__name__}"
        )
    if not items:
        raise ConfigurationError("tools: at least one tool is required")
    out: dict[str, _Registered] = {}
    for i, (key, item) in enumerate(items):
        if isinstance(item, tuple) and len(item) == 2:
            func, spec = item
            if isinstance(spec, Mapping):
                try:
                    spec = strict_converter.structure(spec, Tool)
                except Exception as exc:
                    problems = "; ".join(f"{p}: {m}" for p, m in _problems(exc, f"tools[{i}]"))
                    raise ConfigurationError(f"tools[{i}]: not a valid tool: {problems}") from exc
            if not isinstance(spec, Tool):
                raise ConfigurationError(
                    f"tools[{i}]: expected (function, Tool), got a {type(spec).__name__}"
                )
            name = _check_name(spec.function.name, func)
            _check_callable(func, f"tool {name!r}")
            params = tuple(_params(func, name, require_annotations=False))
            reg = _Registered(name, spec, func, params)
        elif isinstance(item, (Tool, Mapping)):
            raise ConfigurationError(
                f"tools[{i}]: a tool definition without a function cannot be run; pass "
                "(function, tool)"
            )
        else:
            tool = tool_from_function(item, name=key)
            name = tool.function.name
            params = tuple(_params(item, name, require_annotations=True))
            reg = _Registered(name, tool, item, params)
        if name in out:
            raise ConfigurationError(f"tools: two tools are named {name!r}")
        out[name] = reg
    return out


# --------------------------------------------------------------------------------------
# The loop


def _jsonable(value: Any) -> Any:
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=repr)
    return str(value)


def _content(result: Any) -> str:
    if isinstance(result, str):
        return result
    return json.dumps(converter.unstructure(result), ensure_ascii=False, default=_jsonable)


def _error(kind: str, message: str) -> str:
    return json.dumps({"error": f"{kind}: {message}"}, ensure_ascii=False)


@attrs.frozen
class _Bound:
    """A tool call whose arguments passed validation, ready to run."""

    reg: _Registered
    arguments: dict[str, Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]


def _bind_call(
    registry: Mapping[str, _Registered], call: ToolCall, turn: int
) -> _Bound | ToolCallRecord:
    """The call ready to run, or the record of why it cannot (unknown tool, arguments
    that are not a JSON object or do not fit the signature)."""
    name, raw = call.function.name, call.function.arguments
    reg = registry.get(name) if call.type == "function" else None
    if reg is None:
        available = ", ".join(sorted(registry))
        return _failed(
            call, turn, "UnknownTool", f"no tool named {name!r} (available: {available})"
        )
    try:
        arguments = json.loads(raw) if raw.strip() else {}
    except ValueError as exc:
        return _failed(call, turn, "InvalidArguments", f"arguments are not valid JSON ({exc})")
    if not isinstance(arguments, dict):
        return _failed(call, turn, "InvalidArguments", "arguments must be a JSON object")
    problems = reg.validate(arguments)
    if problems:
        text = "; ".join(f"{p}: {m}" for p, m in problems)
        return _failed(call, turn, "InvalidArguments", text, arguments)
    try:
        args, kwargs = reg.bind(arguments)
    except Exception as exc:
        text = "; ".join(f"{p}: {m}" for p, m in _problems(exc, "arguments"))
        return _failed(call, turn, "InvalidArguments", text, arguments)
    return _Bound(reg, arguments, tuple(args), dict(kwargs))


def _failed(
    call: ToolCall,
    turn: int,
    kind: str,
    message: str,
    arguments: Any = None,
    duration: float = 0.0,
) -> ToolCallRecord:
    error = f"{kind}: {message}"
    return ToolCallRecord(
        call.id,
        call.function.name,
        arguments,
        call.function.arguments,
        None,
        error,
        _error(kind, message),
        duration,
        turn,
    )


def _finished(
    call: ToolCall, turn: int, bound: _Bound, result: Any, duration: float
) -> ToolCallRecord:
    try:
        content = _content(result)
    except Exception as exc:
        return _failed(
            call,
            turn,
            type(exc).__name__,
            f"the result cannot be sent as JSON: {exc}",
            bound.arguments,
            duration,
        )
    return ToolCallRecord(
        call.id,
        call.function.name,
        bound.arguments,
        call.function.arguments,
        result,
        None,
        content,
        duration,
        turn,
    )


def _execute(registry: Mapping[str, _Registered], call: ToolCall, turn: int) -> ToolCallRecord:
    bound = _bind_call(registry, call, turn)
    if isinstance(bound, ToolCallRecord):
        return bound
    started = time.perf_counter()
    try:
        result = bound.reg.func(*bound.args, **bound.kwargs)
        if inspect.isawaitable(result):  # an async tool under the sync client
            result = _run_awaitable(result)
    except Exception as exc:
        duration = time.perf_counter() - started
        return _failed(call, turn, type(exc).__name__, str(exc), bound.arguments, duration)
    return _finished(call, turn, bound, result, time.perf_counter() - started)


def _run_awaitable(awaitable: Any) -> Any:
    """Run an async tool's awaitable to its end from sync code: on a fresh event loop, in
    a worker thread when this thread already runs one (sync code called from async)."""
    import asyncio

    async def wait() -> Any:
        return await awaitable

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(wait())
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="chatcore-tool") as pool:
        return pool.submit(asyncio.run, wait()).result()


async def _aexecute(
    registry: Mapping[str, _Registered], call: ToolCall, turn: int
) -> ToolCallRecord:
    """:func:`_execute` for the async client: an async tool is awaited, a plain one runs
    in a worker thread (so a blocking tool never stalls the event loop)."""
    import asyncio

    bound = _bind_call(registry, call, turn)
    if isinstance(bound, ToolCallRecord):
        return bound
    func = bound.reg.func
    started = time.perf_counter()
    try:
        if inspect.iscoroutinefunction(func):
            result = await func(*bound.args, **bound.kwargs)
        else:
            result = await asyncio.to_thread(func, *bound.args, **bound.kwargs)
            if inspect.isawaitable(result):
                result = await result
    except Exception as exc:
        duration = time.perf_counter() - started
        return _failed(call, turn, type(exc).__name__, str(exc), bound.arguments, duration)
    return _finished(call, turn, bound, result, time.perf_counter() - started)


def _resendable(msg: Message) -> Message:
    """The assistant message as a request may carry it (no ``annotations``/``audio``; its
    reasoning kept: a provider such as Anthropic needs it back with the tool calls)."""
    content = msg.content
    if content is None and not msg.tool_calls:
        content = ""
    return Message(
        role="assistant",
        content=content,
        name=msg.name,
        tool_calls=msg.tool_calls or None,
        refusal=msg.refusal,
        reasoning_content=msg.reasoning_content,
        reasoning_details=msg.reasoning_details,
    )


@attrs.define(slots=True)
class _Turn(Effect[ChatResponse]):
    """One model call of the loop: ``client.chat``, awaited under the async client."""

    client: Any
    model: str
    messages: list[Message]
    params: dict[str, Any]

    def run_sync(self) -> ChatResponse:
        response: ChatResponse = self.client.chat(self.model, self.messages, **self.params)
        return response

    async def run_async(self) -> ChatResponse:
        response: ChatResponse = await self.client.chat(self.model, self.messages, **self.params)
        return response


@attrs.define(slots=True)
class _Call(Effect[ToolCallRecord]):
    """One tool call of the loop."""

    registry: Mapping[str, _Registered]
    call: ToolCall
    turn: int

    def run_sync(self) -> ToolCallRecord:
        return _execute(self.registry, self.call, self.turn)

    async def run_async(self) -> ToolCallRecord:
        return await _aexecute(self.registry, self.call, self.turn)


def run_tools(client: Any, model: str, messages: Any, tools: ToolsArg, **kwargs: Any) -> ToolRun:
    """Run the tool loop with a :class:`~chatcore.Client`: call ``model`` with ``tools``,
    execute the calls it asks for, send the results back, and repeat until it answers
    without tool calls.

    ``tools`` are functions (schemas derived by :func:`tool_from_function`), ``(function,
    Tool)`` pairs (your own schema), or a mapping of tool name to function. Calls of one turn
    run one after another in the model's order; each becomes one ``tool`` message (a string
    result as is, anything else as JSON). A call that fails becomes
    ``{"error": "<type>: <message>"}`` for the model and the loop goes on.

    ``max_turns`` caps the model calls; when the last one still asks for tools, those calls
    are executed and :class:`ToolLoopError` is raised with the run so far (or, with
    ``on_max_turns="return"``, the run is returned with ``completed=False``).
    ``tool_choice`` applies to the first call only when ``reset_tool_choice`` (the default;
    ``"required"`` would otherwise never let the model answer). ``params`` go to every
    :meth:`Client.chat` call."""
    return run_sync(_tool_loop(client, model, messages, tools, **kwargs))


async def arun_tools(
    client: Any, model: str, messages: Any, tools: ToolsArg, **kwargs: Any
) -> ToolRun:
    """The same loop with an :class:`~chatcore.AsyncClient`: model calls awaited, async
    tools awaited, plain tools run in a worker thread."""
    return await run_async(_tool_loop(client, model, messages, tools, **kwargs))


async def _tool_loop(
    client: Any,
    model: str,
    messages: Any,
    tools: ToolsArg,
    *,
    max_turns: int = 5,
    tool_choice: str | Mapping[str, Any] | None = None,
    parallel_tool_calls: bool | None = None,
    reset_tool_choice: bool = True,
    on_max_turns: Literal["raise", "return"] = "raise",
    **params: Any,
) -> ToolRun:
    """The tool loop, written once (see :func:`run_tools`)."""
    if not isinstance(max_turns, int) or isinstance(max_turns, bool) or max_turns < 1:
        raise ValidationError([("max_turns", f"expected an integer >= 1, got {max_turns!r}")])
    if on_max_turns not in ("raise", "return"):
        raise ValidationError(
            [("on_max_turns", f"expected 'raise' or 'return', got {on_max_turns!r}")]
        )
    for key in ("tools", "stream"):
        if key in params:
            raise ValidationError([(key, f"run_tools sets {key!r} itself; do not pass it")])
    registry = _register(tools)
    wire_tools = [r.tool for r in registry.values()]
    conversation: list[Message] = list(normalize_messages(messages))
    records: list[ToolCallRecord] = []
    choice = tool_choice
    response: ChatResponse | None = None
    for turn in range(1, max_turns + 1):
        call_params = dict(params)
        call_params["tools"] = wire_tools
        if choice is not None:
            call_params["tool_choice"] = choice
        if parallel_tool_calls is not None:
            call_params["parallel_tool_calls"] = parallel_tool_calls
        response = await _Turn(client, model, list(conversation), call_params)
        message = response.message
        calls = response.tool_calls
        if message is not None:
            conversation.append(_resendable(message))
        if not calls:
            return ToolRun(response, tuple(conversation), tuple(records), turn, completed=True)
        for call in calls:
            record = await _Call(registry, call, turn)
            records.append(record)
            conversation.append(Message(role="tool", content=record.content, tool_call_id=call.id))
        if reset_tool_choice:
            choice = None
    assert response is not None
    run = ToolRun(response, tuple(conversation), tuple(records), max_turns, completed=False)
    if on_max_turns == "return":
        return run
    names = ", ".join(c.function.name for c in response.tool_calls)
    raise ToolLoopError(
        f"the model still asked for tools ({names}) after max_turns={max_turns} model calls; "
        "the run so far is in .run",
        run=run,
    )
