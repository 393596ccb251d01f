"""Checks of a chat request before anything is sent: every problem, with its path."""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Mapping
from typing import Any

import attrs

from chatcore.exceptions import ValidationError
from chatcore.models import (
    COMMON_PARAMS,
    OPENAI_PASSTHROUGH_PARAMS,
    ROLES,
    ChatRequest,
    Message,
    Tool,
    _strict,
    normalize_messages,
)

_MODEL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
_NUMBER_RANGES: dict[str, tuple[float, float]] = {
    "temperature": (0.0, 2.0),
    "top_p": (0.0, 1.0),
    "presence_penalty": (-2.0, 2.0),
    "frequency_penalty": (-2.0, 2.0),
}
_INT_MIN: dict[str, int] = {"n": 1, "max_tokens": 1, "max_completion_tokens": 1}
_N_MAX = 128
_TOP_LOGPROBS_MAX = 20
_LOGIT_BIAS_MAX = 100
_STOP_MAX = 4
_RESPONSE_FORMATS = ("text", "json_object", "json_schema")
_TOOL_CHOICES = ("none", "auto", "required")
#: Nesting deeper than this is refused (it also stops a value that contains itself).
MAX_JSON_DEPTH = 64
#: Integers longer than this many bits are checked against Python's int-to-text limit.
_BIG_INT_BITS = 4096
_SURROGATE_RE = re.compile("[\ud800-\udfff]")
_MESSAGE_FIELDS = tuple(f.name for f in attrs.fields(Message) if f.name not in ("role", "content"))
_message_extras = operator.attrgetter(*_MESSAGE_FIELDS)
_NO_EXTRAS = (None,) * len(_MESSAGE_FIELDS)


def show(value: Any, limit: int = 60) -> str:
    """``repr(value)`` for an error message: shortened, and never raising (a huge int or a
    broken ``__repr__`` gives its type instead)."""
    try:
        text = repr(value)
    except Exception:  # a value whose repr fails is still described by its type
        return f"a {type(value).__name__}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _key_path(path: str, key: str) -> str:
    return f"{path}.{key}" if key.isidentifier() else f"{path}[{show(key)}]"


def json_problems(value: Any, path: str, problems: list[tuple[str, str]], depth: int = 0) -> None:
    """Append a ``(path, message)`` for every part of ``value`` that would not be sent as
    valid JSON in UTF-8: NaN and infinities, lone surrogates, non-string keys, integers
    too long to write, and anything that is not a JSON value (sets, bytes, objects).
    chatcore's own attrs values (messages, parts, tools) are walked field by field."""
    if isinstance(value, str):
        if not value.isascii() and _SURROGATE_RE.search(value):
            problems.append(
                (path, "contains a lone surrogate (such as '\\ud800'), which is not valid UTF-8")
            )
    elif value is None or isinstance(value, bool):
        return
    elif isinstance(value, int):
        if value.bit_length() > _BIG_INT_BITS:
            try:
                str(value)
            except ValueError:
                problems.append((path, "integer too large to send as JSON"))
    elif isinstance(value, float):
        if not math.isfinite(value):
            problems.append((path, f"{value!r} is not a JSON number (NaN and infinities are not)"))
    elif depth >= MAX_JSON_DEPTH:
        problems.append((path, f"nested deeper than {MAX_JSON_DEPTH} levels (or contains itself)"))
    elif isinstance(value, dict):
        for key, item in value.items():
            if type(key) is not str:
                if not isinstance(key, str):
                    problems.append((path, f"object keys must be strings, got {show(key)}"))
                    continue
            elif _plain(item) and key.isascii():
                continue  # the common case, decided without building a path
            where = _key_path(path, key)
            if not key.isascii() and _SURROGATE_RE.search(key):
                problems.append((where, "the key contains a lone surrogate, not valid UTF-8"))
            json_problems(item, where, problems, depth + 1)
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            if not _plain(item):
                json_problems(item, f"{path}[{i}]", problems, depth + 1)
    elif attrs.has(type(value)) and type(value).__module__ == __name__.replace(
        "_validate", "models"
    ):
        for field in attrs.fields(type(value)):
            item = getattr(value, field.name)
            if item is not None and not _plain(item):
                json_problems(item, _key_path(path, field.name), problems, depth + 1)
    elif isinstance(value, Mapping):
        problems.append((path, f"expected a dict, got {type(value).__name__} (pass dict(...))"))
    else:
        problems.append(
            (
                path,
                "expected a JSON value (string, number, boolean, None, list or dict),"
                f" got {type(value).__name__}",
            )
        )


def _plain(value: Any) -> bool:
    """A scalar that is certainly fine as JSON (the fast path of :func:`json_problems`)."""
    kind = type(value)
    if kind is str:
        return str.isascii(value)
    if kind is int:
        return int.bit_length(value) <= _BIG_INT_BITS
    if kind is float:
        return math.isfinite(value)
    return kind is bool or value is None


#: Model strings already found valid (a client uses a few; bounded all the same).
_SPLIT: dict[str, tuple[str, str]] = {}


def split_model(model: Any) -> tuple[str, str]:
    """Split ``"provider:model"`` at the first colon, or raise :class:`ValidationError`."""
    if type(model) is str:
        found = _SPLIT.get(model)
        if found is not None:
            return found
    found = _split_model(model)
    if type(model) is str and len(_SPLIT) < 1024:
        _SPLIT[model] = found
    return found


def _split_model(model: Any) -> tuple[str, str]:
    if not isinstance(model, str):
        raise ValidationError(
            [("model", f"expected a string like 'openai:gpt-4o-mini', got {type(model).__name__}")]
        )
    provider, sep, name = model.partition(":")
    if not sep or not provider or not name.strip():
        meant = "" if sep else _model_suggestion(model.strip())
        raise ValidationError(
            [
                (
                    "model",
                    f"{show(model)} is not 'provider:model'; did you mean {meant!r}?"
                    if meant
                    else f"{show(model)} is not 'provider:model' (e.g. 'openai:gpt-4o-mini',"
                    " 'huggingface:meta-llama/Llama-3.1-8B-Instruct')",
                )
            ]
        )
    if not _MODEL_RE.match(provider):
        raise ValidationError([("model", f"{show(provider)} is not a valid provider name")])
    if any(c.isspace() for c in name) or any(ord(c) < 32 for c in name):
        raise ValidationError([("model", f"model id {show(name)} contains whitespace")])
    if not name.isascii() and _SURROGATE_RE.search(name):
        raise ValidationError(
            [("model", f"model id {show(name)} contains a lone surrogate, not valid UTF-8")]
        )
    return provider, name


#: Per-call options the clients take next to the request parameters.
CALL_OPTIONS = frozenset({"max_retries", "timeout_total", "cache", "cache_ttl"})

#: Names passed per call that are not request parameters: what to do instead, in Python
#: and on the command line. (Never "put it in extra": that would send a key in the body.)
_NOT_PARAMETERS: dict[str, tuple[str, str]] = {
    "api_key": (
        "the API key is a provider option (never sent in the body): set the provider's key"
        " variable (OPENAI_API_KEY, ...) or pass Client(providers={'<provider>':"
        " {'api_key': ...}})",
        "the API key is a provider option (never sent in the body): store it with"
        " `chatcore keys set <provider>` or set the provider's key variable (OPENAI_API_KEY,"
        " ...)",
    ),
    "base_url": (
        "the base URL is a provider option: pass Client(providers={'<provider>':"
        " {'base_url': ...}}) or set CHATCORE_<PROVIDER>_BASE_URL",
        "the base URL is a provider option: set CHATCORE_<PROVIDER>_BASE_URL or"
        " [providers.<provider>] base_url in chatcore.toml",
    ),
    "timeout": (
        "for a deadline across every attempt pass timeout_total=SECONDS; the timeout of"
        " each request is the provider option 'timeout' (Client(providers={'<provider>':"
        " {'timeout': 30}}))",
        "for a deadline across every attempt use -o timeout_total=SECONDS; the timeout of"
        " each request is the provider option 'timeout' (CHATCORE_<PROVIDER>_TIMEOUT=30)",
    ),
    "stream": (
        "to stream, call client.stream(model, messages, ...) instead of passing stream=True",
        "the command streams by default; --no-stream waits for the whole answer",
    ),
    "model": ("the model is the first argument", "the model is given with -m"),
    "messages": ("the messages are the second argument", "the prompt is the argument"),
}
_NOT_PARAMETERS["api_base"] = _NOT_PARAMETERS["base_url"]
_NOT_PARAMETERS["request_timeout"] = _NOT_PARAMETERS["timeout"]


def not_a_parameter(key: str, *, cli: bool = False) -> str:
    """Why ``key`` is refused as a request parameter and what to write instead (``cli``:
    in the command line's ``-o`` syntax)."""
    known = _NOT_PARAMETERS.get(key)
    if known is not None:
        return f"not a request parameter; {known[cli]}"
    import difflib

    close = difflib.get_close_matches(
        key, [*COMMON_PARAMS, *OPENAI_PASSTHROUGH_PARAMS, *CALL_OPTIONS]
    )
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    where = "-o extra='{\"name\": value}'" if cli else "extra={...}"
    return f"unknown parameter{hint}; provider-specific parameters go in {where}"


def is_parameter(key: str) -> bool:
    """Whether a chat call takes ``key`` (a request parameter, ``extra`` or a per-call
    option)."""
    return (
        key in COMMON_PARAMS
        or key in OPENAI_PASSTHROUGH_PARAMS
        or key in CALL_OPTIONS
        or key == "extra"
    )


def _model_suggestion(model: str) -> str:
    """``'provider:model'`` most likely meant by ``model`` (which has no colon)."""
    from chatcore.exceptions import KNOWN_PROVIDER_DISTRIBUTIONS

    head, slash, tail = model.partition("/")
    if slash and head.lower() in KNOWN_PROVIDER_DISTRIBUTIONS and tail:
        return f"{head.lower()}:{tail}"
    if slash:
        return f"huggingface:{model}"
    lowered = model.lower()
    if lowered.startswith("claude"):
        return f"anthropic:{model}"
    if lowered.startswith(("gpt", "chatgpt", "o1", "o3", "o4", "text-embedding", "davinci")):
        return f"openai:{model}"
    return ""


def is_number(value: Any) -> bool:
    """A finite int or float (not a bool) that converts to a float."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float is out of every range anyway
        return False


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def build_request(
    provider: str,
    model: str,
    messages: Any,
    params: Mapping[str, Any],
    *,
    stream: bool = False,
    max_total_chars: int = 100_000,
    max_messages: int = 2048,
    max_request_bytes: int = 4 * 1024 * 1024,
) -> ChatRequest:
    """Normalize and check everything; raise one :class:`ValidationError` listing every
    problem found (messages, parameters, conversation rules)."""
    problems: list[tuple[str, str]] = []
    msgs: tuple[Message, ...] = ()
    try:
        msgs = normalize_messages(messages)
    except ValidationError as exc:
        problems.extend(exc.problems)
    if not msgs and not problems:
        problems.append(("messages", "at least one message is required"))
    problems.extend(_check_messages(msgs, max_total_chars))
    if len(msgs) > max_messages:
        problems.append(
            ("messages", f"{len(msgs)} messages, over the limit of {max_messages} (max_messages)")
        )

    kwargs: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    raw_extra = params.get("extra")
    if raw_extra is not None:
        if isinstance(raw_extra, Mapping) and all(isinstance(k, str) for k in raw_extra):
            for key in ("model", "messages", "stream"):
                if key in raw_extra:
                    problems.append((f"extra.{key}", f"{key!r} cannot be overridden through extra"))
            json_problems(dict(raw_extra), "extra", problems)
            extra.update(raw_extra)
        else:
            problems.append(("extra", "expected a mapping of parameter names to values"))
    for key, value in params.items():
        if key == "extra":
            continue
        if key in COMMON_PARAMS:
            if value is not None:
                kwargs[key] = value
        elif key in OPENAI_PASSTHROUGH_PARAMS:
            if value is not None:
                json_problems(value, key, problems)
                extra[key] = value
        else:
            problems.append((key, not_a_parameter(key)))
    param_problems = _check_params(kwargs)
    problems.extend(param_problems)
    flagged = {where for where, _ in param_problems}  # reported once, as a wrong shape
    for key, value in kwargs.items():
        if key not in _NUMBER_RANGES and key not in flagged:
            json_problems(value, key, problems)
    if "tools" in kwargs and not problems:
        kwargs["tools"] = tuple(
            _tool(t, f"tools[{i}]", problems) for i, t in enumerate(kwargs["tools"])
        )
    if problems:
        raise ValidationError(problems)
    request = ChatRequest(
        provider=provider, model=model, messages=msgs, stream=stream, extra=extra, **kwargs
    )
    if max_request_bytes and _may_exceed(request, max_request_bytes):
        size = _request_bytes(request)
        if size > max_request_bytes:
            raise ValidationError(
                [
                    (
                        "request",
                        f"the request body is {size} bytes, over the limit of"
                        f" {max_request_bytes} (max_request_bytes)",
                    )
                ]
            )
    return request


def _tool(tool: Any, path: str, problems: list[tuple[str, str]]) -> Any:
    if isinstance(tool, Tool):
        return tool
    try:
        return _strict().structure(tool, Tool)
    except Exception as exc:  # cattrs raises several classes, all meaning "does not fit"
        from chatcore.models import _problems

        problems.extend(_problems(exc, path))
        return None


def _may_exceed(request: ChatRequest, limit: int) -> bool:
    """A cheap upper bound of the body's size: only measure the exact JSON when the bound
    reaches the limit. Every string may grow to 6 bytes a character once escaped; numbers,
    punctuation and field names are over-counted; messages, parameters, tools and
    ``extra`` all count."""
    total = 256 + 6 * len(request.model)
    for m in request.messages:
        content = m.content
        if (
            isinstance(content, str)
            and m.tool_calls is None
            and m.name is None
            and m.tool_call_id is None
            and m.refusal is None
            and m.annotations is None
            and m.reasoning_content is None
            and m.reasoning_details is None
        ):
            total += 64 + 6 * len(content)  # the common message: role and text
        else:
            total += _size_bound(m)
    for name in COMMON_PARAMS:
        value = getattr(request, name)
        if value is not None:
            total += len(name) + 4 + _size_bound(value)
    if request.extra:
        total += _size_bound(request.extra)
    return total >= limit


def _size_bound(value: Any, depth: int = 0) -> int:
    """An upper bound of ``value``'s JSON size (values were checked to be JSON-able)."""
    if isinstance(value, str):
        return 2 + 6 * len(value)
    if value is None or isinstance(value, (bool, float)):
        return 32
    if isinstance(value, int):
        return 32 if -(10**30) < value < 10**30 else 2 + len(str(value))
    if depth > 80:  # deeper than validation allows: measure exactly
        return 1 << 62
    if isinstance(value, Mapping):
        return 2 + sum(
            4 + _size_bound(k, depth + 1) + _size_bound(v, depth + 1) for k, v in value.items()
        )
    if isinstance(value, (list, tuple)):
        return 2 + sum(1 + _size_bound(v, depth + 1) for v in value)
    if attrs.has(type(value)):
        return 2 + sum(
            4 + 6 * len(f.name) + _size_bound(getattr(value, f.name), depth + 1)
            for f in attrs.fields(type(value))
        )
    return 1 << 62  # unknown: measure exactly


def _request_bytes(request: ChatRequest) -> int:
    """The body's size in bytes (every value was checked to be JSON: this cannot fail)."""
    import json

    return len(json.dumps(request.to_openai_dict(), ensure_ascii=False).encode("utf-8"))


def _check_messages(msgs: tuple[Message, ...], max_total_chars: int) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    total = 0
    pending_calls: set[str] = set()
    for i, m in enumerate(msgs):
        path = f"messages[{i}]"
        if m.role not in ROLES:
            problems.append(
                (f"{path}.role", f"unknown role {m.role!r} (allowed: {', '.join(sorted(ROLES))})")
            )
        if m.content is None and not m.tool_calls and m.role != "assistant":
            problems.append((f"{path}.content", f"a {m.role} message needs content"))
        if m.role == "tool":
            if not m.tool_call_id:
                problems.append((f"{path}.tool_call_id", "a tool message needs tool_call_id"))
            elif pending_calls and m.tool_call_id not in pending_calls:
                problems.append(
                    (
                        f"{path}.tool_call_id",
                        f"{m.tool_call_id!r} answers no tool call of the assistant"
                        " message before it",
                    )
                )
            elif not pending_calls:
                problems.append(
                    (path, "a tool message must follow an assistant message with tool_calls")
                )
            if m.tool_call_id is not None:
                pending_calls.discard(m.tool_call_id)
        else:
            if pending_calls:
                problems.append(
                    (
                        path,
                        "tool calls "
                        + ", ".join(sorted(repr(c) for c in pending_calls))
                        + " have no tool result message",
                    )
                )
            pending_calls = {c.id for c in m.tool_calls} if m.tool_calls else set()
        if m.tool_calls and m.role != "assistant":
            problems.append((f"{path}.tool_calls", "only assistant messages carry tool_calls"))
        if isinstance(m.content, tuple) and m.role in ("system", "developer", "tool"):
            for j, part in enumerate(m.content):
                if part.type != "text":
                    problems.append(
                        (f"{path}.content[{j}]", f"{m.role} messages take text parts only")
                    )
        total += len(m.text)
        _message_json_problems(m, path, problems)
    if total > max_total_chars:
        problems.append(
            (
                "messages",
                f"total content is {total} characters, over the limit of {max_total_chars}",
            )
        )
    return problems


def _message_json_problems(m: Message, path: str, problems: list[tuple[str, str]]) -> None:
    content = m.content
    if isinstance(content, str):
        if not content.isascii():
            json_problems(content, f"{path}.content", problems)
    elif content is not None:
        json_problems(content, f"{path}.content", problems)
    values = _message_extras(m)
    if values == _NO_EXTRAS:
        return  # a plain message: role and content only
    for name, value in zip(_MESSAGE_FIELDS, values):
        if value is not None:
            json_problems(value, f"{path}.{name}", problems)


def _check_params(kwargs: dict[str, Any]) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    for key, (lo, hi) in _NUMBER_RANGES.items():
        if key in kwargs:
            v = kwargs[key]
            if not is_number(v):
                problems.append((key, f"expected a number from {lo:g} to {hi:g}, got {show(v)}"))
            elif not lo <= v <= hi:
                problems.append((key, f"must be between {lo:g} and {hi:g}, got {show(v)}"))
    for key, lo_int in _INT_MIN.items():
        if key in kwargs:
            v = kwargs[key]
            if not _is_int(v) or v < lo_int:
                problems.append((key, f"expected an integer >= {lo_int}, got {show(v)}"))
            elif key == "n" and v > _N_MAX:
                problems.append(("n", f"must be at most {_N_MAX}, got {show(v)}"))
    if "seed" in kwargs and not _is_int(kwargs["seed"]):
        problems.append(("seed", f"expected an integer, got {show(kwargs['seed'])}"))
    if "stop" in kwargs:
        stop = kwargs["stop"]
        if isinstance(stop, str):
            pass
        elif (
            isinstance(stop, (list, tuple))
            and 1 <= len(stop) <= _STOP_MAX
            and all(isinstance(s, str) and s for s in stop)
        ):
            kwargs["stop"] = tuple(stop)
        else:
            problems.append(
                ("stop", f"expected a string or a list of 1 to {_STOP_MAX} non-empty strings")
            )
    for key in ("logprobs", "parallel_tool_calls"):
        if key in kwargs and not isinstance(kwargs[key], bool):
            problems.append((key, f"expected true or false, got {show(kwargs[key])}"))
    if "top_logprobs" in kwargs:
        v = kwargs["top_logprobs"]
        if not _is_int(v) or not 0 <= v <= _TOP_LOGPROBS_MAX:
            problems.append(
                (
                    "top_logprobs",
                    f"expected an integer from 0 to {_TOP_LOGPROBS_MAX}, got {show(v)}",
                )
            )
        elif kwargs.get("logprobs") is not True:
            problems.append(("top_logprobs", "requires logprobs=True"))
    if "user" in kwargs and not isinstance(kwargs["user"], str):
        problems.append(("user", f"expected a string, got {type(kwargs['user']).__name__}"))
    if "logit_bias" in kwargs:
        lb = kwargs["logit_bias"]
        if not isinstance(lb, Mapping) or not all(
            isinstance(k, str) and _is_int(v) and -_LOGIT_BIAS_MAX <= v <= _LOGIT_BIAS_MAX
            for k, v in lb.items()
        ):
            problems.append(
                (
                    "logit_bias",
                    "expected a mapping of token id (a string) to an integer"
                    f" -{_LOGIT_BIAS_MAX}..{_LOGIT_BIAS_MAX}",
                )
            )
    if "response_format" in kwargs:
        rf = kwargs["response_format"]
        if not isinstance(rf, Mapping) or rf.get("type") not in _RESPONSE_FORMATS:
            problems.append(
                (
                    "response_format",
                    "expected {'type': 'text' | 'json_object' | 'json_schema', ...}",
                )
            )
    if "tools" in kwargs:
        tools = kwargs["tools"]
        if not isinstance(tools, (list, tuple)) or not tools:
            problems.append(("tools", "expected a non-empty list of tools"))
    elif "tool_choice" in kwargs or "parallel_tool_calls" in kwargs:
        problems.append(("tool_choice", "tool_choice and parallel_tool_calls need tools"))
    if "tool_choice" in kwargs:
        tc = kwargs["tool_choice"]
        if not (isinstance(tc, str) and tc in _TOOL_CHOICES) and not isinstance(tc, Mapping):
            problems.append(("tool_choice", "expected 'none', 'auto', 'required' or an object"))
    return problems
