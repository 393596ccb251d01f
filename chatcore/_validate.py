"""Checks of a chat request before anything is sent: every problem, with its path."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

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


def split_model(model: Any) -> tuple[str, str]:
    """Split ``"provider:model"`` at the first colon, or raise :class:`ValidationError`."""
    if not isinstance(model, str):
        raise ValidationError(
            [("model", f"expected a string like 'openai:gpt-4o-mini', got {type(model).__name__}")]
        )
    provider, sep, name = model.partition(":")
    if not sep or not provider or not name.strip():
        raise ValidationError(
            [
                (
                    "model",
                    f"{model!r} is not 'provider:model' (e.g. 'openai:gpt-4o-mini',"
                    " 'huggingface:meta-llama/Llama-3.1-8B-Instruct')",
                )
            ]
        )
    if not _MODEL_RE.match(provider):
        raise ValidationError([("model", f"{provider!r} is not a valid provider name")])
    if any(c.isspace() for c in name) or any(ord(c) < 32 for c in name):
        raise ValidationError([("model", f"model id {name!r} contains whitespace")])
    return provider, name


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


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
                extra[key] = value
        elif key in ("model", "messages", "stream"):
            problems.append(
                (key, f"{key!r} is given positionally or by the method, not as a parameter")
            )
        else:
            import difflib

            close = difflib.get_close_matches(
                key, [*COMMON_PARAMS, *OPENAI_PASSTHROUGH_PARAMS], n=1
            )
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            problems.append(
                (
                    key,
                    f"unknown parameter{hint}; provider-specific parameters go in extra={{...}}",
                )
            )
    problems.extend(_check_params(kwargs))
    if "tools" in kwargs and not problems:
        try:
            kwargs["tools"] = tuple(
                t if isinstance(t, Tool) else _strict().structure(t, Tool) for t in kwargs["tools"]
            )
        except Exception as exc:
            from chatcore.models import _problems

            problems.extend(_problems(exc, "tools"))
    if problems:
        raise ValidationError(problems)
    request = ChatRequest(
        provider=provider, model=model, messages=msgs, stream=stream, extra=extra, **kwargs
    )
    if max_request_bytes and _may_exceed(msgs, max_request_bytes):
        size = _request_bytes(request)
        if size is None:
            raise ValidationError([("extra", "parameters must be JSON values")])
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


def _may_exceed(msgs: tuple[Message, ...], limit: int) -> bool:
    """A cheap lower-bound check: only measure the exact JSON size when the text alone
    could reach the limit after JSON escaping (images as data URLs are counted by their URL)."""
    total = 0
    for m in msgs:
        if isinstance(m.content, str):
            total += len(m.content)
        elif m.content:
            for part in m.content:
                url = getattr(getattr(part, "image_url", None), "url", "")
                total += len(getattr(part, "text", "")) + len(url)
    return total * 6 >= limit  # JSON escaping grows a character to at most 6 bytes


def _request_bytes(request: ChatRequest) -> int | None:
    import json

    try:
        return len(json.dumps(request.to_openai_dict(), ensure_ascii=False).encode("utf-8"))
    except (TypeError, ValueError):
        return None


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
            pending_calls.discard(m.tool_call_id or "")
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
                if getattr(part, "type", None) != "text":
                    problems.append(
                        (f"{path}.content[{j}]", f"{m.role} messages take text parts only")
                    )
        total += len(m.text)
    if total > max_total_chars:
        problems.append(
            (
                "messages",
                f"total content is {total} characters, over the limit of {max_total_chars}",
            )
        )
    return problems


def _check_params(kwargs: dict[str, Any]) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    for key, (lo, hi) in _NUMBER_RANGES.items():
        if key in kwargs:
            v = kwargs[key]
            if not _is_number(v):
                problems.append((key, f"expected a number from {lo:g} to {hi:g}, got {v!r}"))
            elif not lo <= v <= hi:
                problems.append((key, f"must be between {lo:g} and {hi:g}, got {v!r}"))
    for key, lo_int in _INT_MIN.items():
        if key in kwargs:
            v = kwargs[key]
            if not isinstance(v, int) or isinstance(v, bool) or v < lo_int:
                problems.append((key, f"expected an integer >= {lo_int}, got {v!r}"))
            elif key == "n" and v > 128:
                problems.append(("n", f"must be at most 128, got {v}"))
    if "seed" in kwargs and (
        not isinstance(kwargs["seed"], int) or isinstance(kwargs["seed"], bool)
    ):
        problems.append(("seed", f"expected an integer, got {kwargs['seed']!r}"))
    if "stop" in kwargs:
        stop = kwargs["stop"]
        if isinstance(stop, str):
            pass
        elif (
            isinstance(stop, (list, tuple))
            and 1 <= len(stop) <= 4
            and all(isinstance(s, str) and s for s in stop)
        ):
            kwargs["stop"] = tuple(stop)
        else:
            problems.append(("stop", "expected a string or a list of 1 to 4 non-empty strings"))
    for key in ("logprobs", "parallel_tool_calls"):
        if key in kwargs and not isinstance(kwargs[key], bool):
            problems.append((key, f"expected true or false, got {kwargs[key]!r}"))
    if "top_logprobs" in kwargs:
        v = kwargs["top_logprobs"]
        if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= 20:
            problems.append(("top_logprobs", f"expected an integer from 0 to 20, got {v!r}"))
        elif kwargs.get("logprobs") is not True:
            problems.append(("top_logprobs", "requires logprobs=True"))
    if "user" in kwargs and not isinstance(kwargs["user"], str):
        problems.append(("user", "expected a string"))
    if "logit_bias" in kwargs:
        lb = kwargs["logit_bias"]
        if not isinstance(lb, Mapping) or not all(
            isinstance(k, str)
            and isinstance(v, int)
            and not isinstance(v, bool)
            and -100 <= v <= 100
            for k, v in lb.items()
        ):
            problems.append(
                ("logit_bias", "expected a mapping of token id to an integer -100..100")
            )
    if "response_format" in kwargs:
        rf = kwargs["response_format"]
        if not isinstance(rf, Mapping) or rf.get("type") not in (
            "text",
            "json_object",
            "json_schema",
        ):
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
        if not (isinstance(tc, str) and tc in ("none", "auto", "required")) and not isinstance(
            tc, Mapping
        ):
            problems.append(("tool_choice", "expected 'none', 'auto', 'required' or an object"))
    return problems
