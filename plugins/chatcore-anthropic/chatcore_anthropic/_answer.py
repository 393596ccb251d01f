"""Answers of the Anthropic Messages API, with no I/O: a ``message`` as a
:class:`~chatcore.models.ChatResponse` (content blocks, finish reason, usage), model lists,
error bodies as typed errors, and the ``anthropic-ratelimit-*`` headers in the family the
core's limiter reads."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any

from chatcore.exceptions import (
    APIStatusError,
    ContextWindowExceededError,
    ModelNotFoundError,
    QuotaExceededError,
    ResponseDecodeError,
    ServiceUnavailableError,
    error_from_response,
)
from chatcore.models import (
    ChatRequest,
    ChatResponse,
    Choice,
    FunctionCall,
    Message,
    ToolCall,
    Usage,
)
from chatcore.provider import HttpResult, ModelInfo
from chatcore_anthropic._request import _is_int

__all__ = [
    "FINISH_REASONS",
    "MODELS_PAGE_LIMIT",
    "finish_reason",
    "map_error",
    "message_from_blocks",
    "models_from_payload",
    "parse_message",
    "parse_timestamp",
    "rate_limit_headers",
    "usage_from",
]

#: The largest page ``GET /v1/models`` serves (one call lists every model).
MODELS_PAGE_LIMIT = 1000
#: ``stop_reason`` -> chatcore's (OpenAI's) ``finish_reason``; any other value (``pause_turn``,
#: and reasons the API adds later) is kept as it is.
FINISH_REASONS: Mapping[str, str] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}

_QUOTA_CODES = frozenset({"enforced_spend_limit_reached", "insufficient_quota"})
_RFC3339 = re.compile(
    r"^(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}:\d{2})(\.\d+)?(Z|z|[+-]\d{2}:?\d{2})?$"
)


# --------------------------------------------------------------------------------------
# Messages


def finish_reason(stop_reason: Any) -> str | None:
    """chatcore's finish reason for an Anthropic ``stop_reason`` (see
    :data:`FINISH_REASONS`)."""
    if not isinstance(stop_reason, str):
        return None
    return FINISH_REASONS.get(stop_reason, stop_reason)


def usage_from(raw: Any) -> Usage | None:
    """chatcore's :class:`~chatcore.models.Usage` of an Anthropic ``usage`` object:
    ``prompt_tokens`` counts every input token (``input_tokens``, which excludes cached
    ones, plus cache writes and cache reads), ``completion_tokens`` the output tokens; the
    cache reads also go in ``prompt_tokens_details.cached_tokens`` and the thinking tokens
    in ``completion_tokens_details.reasoning_tokens``, as OpenAI reports them."""
    if not isinstance(raw, Mapping):
        return None
    fresh = _count(raw.get("input_tokens")) or 0
    output = _count(raw.get("output_tokens")) or 0
    written = _count(raw.get("cache_creation_input_tokens"))
    read = _count(raw.get("cache_read_input_tokens"))
    details = raw.get("output_tokens_details")
    thinking = _count(details.get("thinking_tokens")) if isinstance(details, Mapping) else None
    prompt = fresh + (written or 0) + (read or 0)
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=output,
        total_tokens=prompt + output,
        prompt_tokens_details={"cached_tokens": read} if read is not None else None,
        completion_tokens_details={"reasoning_tokens": thinking} if thinking is not None else None,
        cached_tokens=read,
        cache_creation_tokens=written,
        reasoning_tokens=thinking,
    )


def _count(value: Any) -> int | None:
    return value if _is_int(value) and value >= 0 else None


def message_from_blocks(
    content: list[Any],
    stop_reason: Any,
    stop_details: Any,
    fail: Callable[[str], Exception],
) -> Message:
    """The assistant :class:`~chatcore.models.Message` of a ``message``'s content blocks:
    text blocks joined into ``content``, ``tool_use`` blocks as tool calls (``input`` as
    JSON text), ``thinking`` text joined into ``reasoning_content`` and the ``thinking`` /
    ``redacted_thinking`` blocks kept in ``reasoning_details``; blocks of server tools are
    left out. ``fail(why)`` makes the error raised for a block that is not well formed."""
    texts: list[str] = []
    calls: list[ToolCall] = []
    thoughts: list[str] = []
    details: list[dict[str, Any]] = []
    for i, block in enumerate(content):
        if not isinstance(block, Mapping) or block.get("type") is None:
            raise fail(f"content[{i}] is not a content block")
        kind = block["type"]
        if kind == "text":
            if not isinstance(block.get("text"), str):
                raise fail(f"content[{i}]: a text block without text")
            texts.append(block["text"])
        elif kind == "tool_use":
            if not (
                isinstance(block.get("id"), str)
                and isinstance(block.get("name"), str)
                and isinstance(block.get("input"), Mapping)
            ):
                raise fail(f"content[{i}]: a tool_use block needs id, name and an input object")
            arguments = json.dumps(block["input"], ensure_ascii=False)
            calls.append(ToolCall(block["id"], FunctionCall(block["name"], arguments)))
        elif kind == "thinking":
            thinking, signature = block.get("thinking"), block.get("signature")
            if not isinstance(thinking, str) or not isinstance(signature, str):
                raise fail(f"content[{i}]: a thinking block needs thinking and signature")
            thoughts.append(thinking)
            details.append({"type": "thinking", "thinking": thinking, "signature": signature})
        elif kind == "redacted_thinking":
            if not isinstance(block.get("data"), str):
                raise fail(f"content[{i}]: a redacted_thinking block needs data")
            details.append({"type": "redacted_thinking", "data": block["data"]})
    refusal = None
    if stop_reason == "refusal":
        info = stop_details if isinstance(stop_details, Mapping) else {}
        refusal = str(info.get("explanation") or info.get("category") or "refused")
    return Message(
        role="assistant",
        content="".join(texts) if texts or not calls else None,
        tool_calls=tuple(calls) or None,
        refusal=refusal,
        reasoning_content="".join(thoughts) if thoughts else None,
        reasoning_details=tuple(details) or None,
    )


def _kind(value: Any) -> str:
    if value is None:
        return "an empty body"
    if isinstance(value, list):
        return "a JSON array"
    if isinstance(value, Mapping):
        return "a JSON object"
    return f"a JSON {type(value).__name__}"


def parse_message(
    result: HttpResult,
    request: ChatRequest,
    *,
    provider: str,
    secrets: tuple[str, ...],
    created: int,
) -> ChatResponse:
    """The :class:`~chatcore.models.ChatResponse` of a 2xx ``message`` answer, or a
    :class:`~chatcore.exceptions.ResponseDecodeError` naming what does not fit."""
    data = result.data

    def fail(why: str) -> ResponseDecodeError:
        return ResponseDecodeError(
            f"expected an Anthropic message, got {why}",
            provider=provider,
            model=request.model,
            status_code=result.status_code,
            request_id=result.request_id,
            body=data if isinstance(data, (Mapping, list, str)) else None,
            secrets=secrets,
        )

    if not isinstance(data, Mapping):
        raise fail(_kind(data))
    if data.get("type") == "error":
        error = data.get("error")
        detail = error.get("message") if isinstance(error, Mapping) else error
        raise fail(f"an error body with status {result.status_code}: {detail}")
    content = data.get("content")
    if data.get("type") != "message" or not isinstance(content, list):
        keys = ", ".join(sorted(str(k) for k in data)[:10]) or "none"
        raise fail(f"an object that is not a message with content (keys: {keys})")
    message = message_from_blocks(content, data.get("stop_reason"), data.get("stop_details"), fail)
    rid = data.get("id")
    model = data.get("model")
    return ChatResponse(
        id=rid if isinstance(rid, str) else result.request_id or "",
        model=model if isinstance(model, str) and model else request.model,
        choices=(Choice(0, message, finish_reason(data.get("stop_reason"))),),
        created=created,
        usage=usage_from(data.get("usage")),
        provider=provider,
        request_id=result.request_id,
        headers=result.headers,
    )


def models_from_payload(
    result: HttpResult, *, provider: str, secrets: tuple[str, ...]
) -> list[ModelInfo]:
    """The models a ``GET /v1/models`` page lists (``created_at`` as Unix seconds)."""
    data = result.data
    items = data.get("data") if isinstance(data, Mapping) else None
    if not isinstance(items, list):
        raise ResponseDecodeError(
            f"expected a model list with a 'data' array, got {_kind(data)}",
            provider=provider,
            status_code=result.status_code,
            request_id=result.request_id,
            body=data if isinstance(data, (Mapping, list, str)) else None,
            secrets=secrets,
        )
    out = []
    for item in items:
        if isinstance(item, Mapping) and isinstance(item.get("id"), str):
            when = parse_timestamp(item.get("created_at"))
            out.append(
                ModelInfo(
                    id=item["id"],
                    provider=provider,
                    owned_by="anthropic",
                    created=int(when) if when is not None else None,
                    raw=dict(item),
                )
            )
    return out


# --------------------------------------------------------------------------------------
# Errors and rate limits


def map_error(status_code: int, body: bytes, headers: Mapping[str, str]) -> APIStatusError | None:
    """The typed error of an Anthropic error body ``{"type": "error", "error": {"type",
    "message"}, "request_id"}``, or ``None`` for another body (the core maps it).

    On top of the core's mapping by status: 529 ``overloaded_error`` is a
    :class:`~chatcore.exceptions.ServiceUnavailableError` (retried like a 503); a
    ``billing_error`` (402), a 400 "credit balance is too low" and a 429 whose
    ``error.details.error_code`` is ``enforced_spend_limit_reached`` are
    :class:`~chatcore.exceptions.QuotaExceededError` (never retried); "prompt is too long"
    is a :class:`~chatcore.exceptions.ContextWindowExceededError`; a 404 on a model is a
    :class:`~chatcore.exceptions.ModelNotFoundError`."""
    try:
        data = json.loads(body.decode("utf-8", "replace")) if body else None
    except ValueError:
        return None
    error = data.get("error") if isinstance(data, Mapping) else None
    if (
        not isinstance(data, Mapping)
        or data.get("type") != "error"
        or not isinstance(error, Mapping)
    ):
        return None
    base = error_from_response(status_code, body, headers)
    kind = error.get("type") if isinstance(error.get("type"), str) else None
    message = str(error.get("message") or base.message)
    lowered = message.lower()
    details = error.get("details")
    code = details.get("error_code") if isinstance(details, Mapping) else None
    code = code if isinstance(code, str) else None
    cls: type[APIStatusError] = type(base)
    if status_code == 529 or kind == "overloaded_error":
        cls = ServiceUnavailableError
    elif (
        kind == "billing_error"
        or status_code == 402
        or "credit balance is too low" in lowered
        or (status_code == 429 and code in _QUOTA_CODES)
    ):
        cls = QuotaExceededError
    elif status_code in (400, 413) and (
        "prompt is too long" in lowered or "context window" in lowered
    ):
        cls = ContextWindowExceededError
    elif status_code == 404 and lowered.startswith("model:"):
        cls = ModelNotFoundError
    request_id = base.request_id or data.get("request_id")
    return cls(
        message,
        status_code=status_code,
        request_id=request_id if isinstance(request_id, str) else None,
        body=data,
        code=code,
        error_type=kind,
        retry_after=base.retry_after,
        should_retry=base.should_retry,
        headers=headers,
    )


def parse_timestamp(value: Any) -> float | None:
    """Unix seconds of an RFC 3339 timestamp (``2026-01-01T00:00:30Z``), or ``None``."""
    if not isinstance(value, str):
        return None
    match = _RFC3339.match(value.strip())
    if match is None:
        return None
    date, clock, fraction, zone = match.groups()
    zone = "+00:00" if zone in (None, "Z", "z") else zone
    if len(zone) == 5:  # +0100
        zone = zone[:3] + ":" + zone[3:]
    try:
        when = datetime.fromisoformat(f"{date}T{clock}{zone}")
    except ValueError:
        return None
    return when.timestamp() + (float(fraction) if fraction else 0.0)


def _http_date(value: Any) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.timestamp()


def _duration(seconds: float) -> str:
    """A Go-style duration the limiter parses (``0s``, ``250ms``, ``12.500s``)."""
    if seconds <= 0:
        return "0s"
    if seconds < 1:
        return f"{max(round(seconds * 1000), 1)}ms"
    return f"{seconds:.3f}s"


def rate_limit_headers(headers: Mapping[str, str], now: float) -> Mapping[str, str]:
    """``headers`` (names lowercased) with the ``x-ratelimit-remaining-*`` /
    ``x-ratelimit-reset-*`` pairs the core's limiter reads, from the
    ``anthropic-ratelimit-*`` family: ``requests`` from ``requests-*``, ``tokens`` from the
    most constrained of ``tokens-*``, ``input-tokens-*`` and ``output-tokens-*``. A reset is
    an RFC 3339 time, turned into a duration from the answer's ``Date`` (the server's clock;
    ``now`` without one)."""
    if not any(str(k).lower().startswith("anthropic-ratelimit-") for k in headers):
        return headers  # nothing to translate (an error body, another server)
    out = {str(k).lower(): v for k, v in headers.items()}
    reference = _http_date(out.get("date"))
    if reference is None:
        reference = now
    pairs: dict[str, list[tuple[float, float]]] = {"requests": [], "tokens": []}
    for family, dimension in (
        ("requests", "requests"),
        ("tokens", "tokens"),
        ("input-tokens", "tokens"),
        ("output-tokens", "tokens"),
    ):
        try:
            remaining = float(out.get(f"anthropic-ratelimit-{family}-remaining", ""))
        except ValueError:
            continue
        reset = parse_timestamp(out.get(f"anthropic-ratelimit-{family}-reset"))
        if reset is None or not math.isfinite(remaining) or remaining < 0:
            continue
        pairs[dimension].append((remaining, max(reset - reference, 0.0)))
    for dimension, found in pairs.items():
        if found:
            remaining, hold = min(found)
            out[f"x-ratelimit-remaining-{dimension}"] = str(int(remaining))
            out[f"x-ratelimit-reset-{dimension}"] = _duration(hold)
    return out
