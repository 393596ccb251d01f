"""A local stand-in for the OpenAI, Azure OpenAI, Hugging Face router, TGI and Anthropic HTTP
APIs.

:class:`StandInServer` is a small threaded HTTP/1.1 server (keep-alive, ``Content-Length`` or
chunked framing) bound to ``127.0.0.1`` on a free port. It serves two purposes:

* **Tests.** Core and plugin tests talk to it over real sockets. Replies can be scripted with
  :meth:`StandInServer.enqueue` and the :class:`Reply` constructors (JSON bodies, OpenAI and TGI
  error bodies, SSE streams, and faults such as connection resets, hangs and truncated bodies).
  Every request is recorded as a :class:`RecordedRequest`.
* **Demos.** When nothing is scripted, the server answers like the real service would, with a
  clearly labelled, deterministic stand-in reply. ``POST /v1/chat/completions`` validates the
  request body strictly, as the real OpenAI API does, so that plugins sending bad requests fail
  in tests rather than in production.

The ``flavor`` selects the default behaviour:

``"openai"``
    OpenAI (and the OpenAI-compatible Hugging Face router): ``POST /v1/chat/completions``,
    ``GET /v1/models``, ``GET /v1/models/{id}``.
``"azure"``
    Azure OpenAI: ``POST /openai/deployments/{deployment}/chat/completions?api-version=...``
    and the GA ``POST /openai/v1/chat/completions``; ``api-key`` header authentication;
    content-filter annotations; streams open with an empty-``choices`` chunk.
``"tgi"``
    Hugging Face text-generation-inference: ``POST /v1/chat/completions``, ``POST /generate``,
    ``POST /generate_stream``, ``POST /``, ``GET /info``, ``GET /health`` with TGI's validation
    rules and ``{"error", "error_type"}`` error bodies.
``"anthropic"``
    Anthropic's Messages API: ``POST /v1/messages`` (answers and event streams),
    ``GET /v1/models``, ``GET /v1/models/{id}``; the module
    :mod:`chatcore.testing.anthropic_server` implements it (its checks, answers and reply
    builders are described there). Its :attr:`StandInServer.base_url` is the server's
    root, as Anthropic's base URL has no ``/v1``.

Default replies are deterministic apart from ``id``/``created``: the assistant text is
``"Hello from the chatcore stand-in server. You said: <last user text>"``; token counts are
``ceil(chars / 4)`` (prompt: per message, plus 3 each); ``max_completion_tokens`` /
``max_tokens`` truncate the text (``finish_reason: "length"``); ``stop`` cuts it; ``n`` repeats
the choice; ``tool_choice: "required"`` (or a named function) produces a tool call with
arguments ``"{}"`` (a named function reports ``finish_reason: "stop"``, as the real API does).

Fidelity notes: validation follows the OpenAI spec 2.3.0 (``CreateChatCompletionRequest``) plus
the documented cross-field rules; unknown keys inside messages, content parts and tools are
rejected as well. TGI's chat route ignores unknown top-level keys (serde's default), its ``/``
route answers non-streamed requests with a one-element list (as its OpenAPI spec says), and
``/generate_stream`` reports parameter validation errors as an SSE error event, as TGI does.

Run ``python -m chatcore.testing.server --flavor openai`` for an offline stand-in service.

Only the standard library and ``attrs`` are used, so the module imports quickly.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import email.utils
import http
import ipaddress
import itertools
import json
import math
import re
import signal
import socket
import struct
import sys
import threading
import time
import traceback
from collections.abc import Iterable, Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from typing import Any, Literal, cast
from urllib.parse import parse_qs, urlsplit

import attrs

__all__ = [
    "DEFAULT_MODELS",
    "STANDIN_NOTICE",
    "Flavor",
    "RecordedRequest",
    "Reply",
    "StandInServer",
    "main",
]

Flavor = Literal["openai", "azure", "tgi", "anthropic"]
"""The default behaviours the server can imitate."""

HeaderInput = Mapping[str, object] | Iterable[tuple[str, object]] | None
"""Extra response headers: a mapping or pairs; values are converted with ``str()``."""

STANDIN_NOTICE = "Hello from the chatcore stand-in server."
"""The opening of every default reply, so that stand-in output is never mistaken for a model's."""

DEFAULT_MODELS: dict[str, tuple[str, ...]] = {
    "openai": ("gpt-4o-mini", "gpt-4o", "gpt-4.1-mini", "meta-llama/Llama-3.1-8B-Instruct"),
    "azure": ("gpt-4o-mini", "gpt-4o"),
    "tgi": ("meta-llama/Llama-3.1-8B-Instruct",),
    "anthropic": ("claude-sonnet-4-5", "claude-haiku-4-5", "claude-opus-4-6"),
}
"""The model list served by ``GET /v1/models`` when ``model_list`` is not given."""

_JSON_CT = "application/json"
_SSE_CT = "text/event-stream"
_OPENAI_FINGERPRINT = "fp_chatcore_standin"
_TGI_FINGERPRINT = "3.3.6-native"
_TGI_VERSION = "3.3.6"
_RATE_LIMIT_REQUESTS = 10_000
_RATE_LIMIT_TOKENS = 30_000_000
_TGI_MAX_TOTAL_TOKENS = 4096
_TGI_MAX_STOP = 4
_TGI_MAX_BEST_OF = 2
_TGI_MAX_TOP_N = 5

_ROLES = ("developer", "system", "user", "assistant", "tool", "function")
_NAME_PATTERN = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_API_VERSION_PATTERN = re.compile(r"^\d{4}-\d{2}-\d{2}(-preview)?$")
_WORDS = re.compile(r"\s*\S+|\s+$")

_OPENAI_PARSE_ERROR = (
    "We could not parse the JSON body of your request. (HINT: This likely means you aren't "
    "using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was "
    "sent was not valid JSON. If you have trouble figuring out how to fix this, please contact "
    "us through our help center at help.openai.com.)"
)
_AZURE_401 = (
    "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide "
    "a valid key for an active subscription and use a correct regional API endpoint for your "
    "resource."
)

_FILTER_OK: dict[str, Any] = {
    "hate": {"filtered": False, "severity": "safe"},
    "self_harm": {"filtered": False, "severity": "safe"},
    "sexual": {"filtered": False, "severity": "safe"},
    "violence": {"filtered": False, "severity": "safe"},
}
_PROMPT_FILTER_RESULTS: list[dict[str, Any]] = [
    {
        "prompt_index": 0,
        "content_filter_results": {
            **_FILTER_OK,
            "jailbreak": {"filtered": False, "detected": False},
        },
    }
]


def _dumps(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _tokens(text: str) -> int:
    """Deterministic token estimate: ``ceil(len(text) / 4)``."""
    return math.ceil(len(text) / 4)


def _split_words(text: str) -> list[str]:
    """Split into word pieces that concatenate back to ``text`` (whitespace leads a piece)."""
    return _WORDS.findall(text)


def _normalize_headers(headers: HeaderInput) -> tuple[tuple[str, str], ...]:
    if headers is None:
        return ()
    items = headers.items() if isinstance(headers, Mapping) else headers
    return tuple((str(k), str(v)) for k, v in items)


def _frame_sse(data: str, space: bool) -> bytes:
    if data.startswith(":"):
        return (data + "\n\n").encode("utf-8")
    prefix = "data: " if space else "data:"
    return ("".join(prefix + line + "\n" for line in data.split("\n")) + "\n").encode("utf-8")


def _sse_json(obj: object, space: bool) -> bytes:
    return (b"data: " if space else b"data:") + _dumps(obj) + b"\n\n"


def _describe(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a decimal"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


# ---------------------------------------------------------------------------------------------
# Public data types
# ---------------------------------------------------------------------------------------------


@attrs.frozen
class RecordedRequest:
    """One request as the server received it."""

    method: str
    """The HTTP method, e.g. ``"POST"``."""
    path: str
    """The path without the query string, e.g. ``"/v1/chat/completions"``."""
    query: dict[str, list[str]]
    """The parsed query string (``urllib.parse.parse_qs``, blank values kept)."""
    headers: dict[str, str]
    """Request headers with lower-cased names (repeated headers joined with ``", "``)."""
    body: bytes
    """The raw request body (chunked request bodies are de-chunked)."""
    time: float
    """``time.monotonic()`` when the request line arrived."""
    target: str = ""
    """The raw request target (path and query) as sent."""

    def header(self, name: str, default: str | None = None) -> str | None:
        """Return a header value by case-insensitive name."""
        return self.headers.get(name.lower(), default)

    def json(self) -> Any:
        """Decode the body as JSON (raises ``ValueError`` if it is not JSON)."""
        return json.loads(self.body)

    @property
    def text(self) -> str:
        """The body decoded as UTF-8 (with replacement characters)."""
        return self.body.decode("utf-8", "replace")


@attrs.frozen
class _ChatSpec:
    text: str | None
    model: str | None
    finish_reason: str | None
    usage: Mapping[str, Any] | None
    tool_calls: tuple[Mapping[str, Any], ...] | None
    include_usage: bool | None


@attrs.frozen
class Reply:
    """A scripted reply; build one with the classmethod constructors (``Reply.json(...)`` etc.).

    Every constructor accepts ``headers`` (added to, or replacing by name, the reply's headers)
    and ``delay`` (seconds to wait before anything is sent; interrupted by ``stop()``).
    """

    kind: str
    status: int = 200
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    content_type: str | None = _JSON_CT
    events: tuple[bytes, ...] = ()
    done: bool = True
    space: bool = True
    delay: float = 0.0
    delay_between: float = 0.0
    die_after: int | None = None
    hang_seconds: float = 0.0
    claimed_length: int = 0
    then: Reply | None = None
    chat_spec: _ChatSpec | None = None

    # -- bodies ------------------------------------------------------------------------------

    @classmethod
    def json(
        cls, body: object, status: int = 200, headers: HeaderInput = None, *, delay: float = 0.0
    ) -> Reply:
        """Reply with ``body`` encoded as JSON."""
        return cls(
            "body",
            status=status,
            headers=_normalize_headers(headers),
            body=_dumps(body),
            delay=delay,
        )

    @classmethod
    def raw(
        cls,
        body: bytes | str,
        status: int = 200,
        headers: HeaderInput = None,
        content_type: str | None = _JSON_CT,
        *,
        delay: float = 0.0,
    ) -> Reply:
        """Reply with these exact body bytes (e.g. invalid JSON); ``content_type=None`` omits it."""
        data = body.encode("utf-8") if isinstance(body, str) else bytes(body)
        return cls(
            "body",
            status=status,
            headers=_normalize_headers(headers),
            body=data,
            content_type=content_type,
            delay=delay,
        )

    @classmethod
    def error(
        cls,
        status: int,
        message: str,
        *,
        type: str | None = None,
        code: str | None = None,
        param: str | None = None,
        headers: HeaderInput = None,
        delay: float = 0.0,
    ) -> Reply:
        """Reply with an OpenAI error body ``{"error": {"message", "type", "param", "code"}}``.

        ``type`` defaults by status: ``requests`` for 429, ``server_error`` for 5xx,
        ``invalid_request_error`` otherwise.
        """
        if type is None:
            type = (
                "requests"
                if status == 429
                else "server_error"
                if status >= 500
                else ("invalid_request_error")
            )
        body = {"error": {"message": message, "type": type, "param": param, "code": code}}
        return cls.json(body, status, headers, delay=delay)

    @classmethod
    def tgi_error(
        cls,
        status: int,
        message: str,
        error_type: str,
        *,
        headers: HeaderInput = None,
        delay: float = 0.0,
    ) -> Reply:
        """Reply with a TGI error body ``{"error": message, "error_type": error_type}``."""
        return cls.json({"error": message, "error_type": error_type}, status, headers, delay=delay)

    @classmethod
    def hf_loading(
        cls,
        estimated_time: float = 20.0,
        *,
        model: str = "meta-llama/Llama-3.1-8B-Instruct",
        headers: HeaderInput = None,
        delay: float = 0.0,
    ) -> Reply:
        """Reply 503 ``{"error": "Model X is currently loading", "estimated_time": ...}``."""
        body = {"error": f"Model {model} is currently loading", "estimated_time": estimated_time}
        return cls.json(body, 503, headers, delay=delay)

    @classmethod
    def chat(
        cls,
        text: str | None = None,
        *,
        model: str | None = None,
        finish_reason: str | None = None,
        usage: Mapping[str, Any] | None = None,
        tool_calls: Sequence[Mapping[str, Any]] | None = None,
        headers: HeaderInput = None,
        delay: float = 0.0,
    ) -> Reply:
        """Reply with a realistic non-streamed ``chat.completion`` in the server's flavor.

        ``text`` defaults to the stand-in greeting (or ``null`` content when ``tool_calls`` are
        given). ``model`` defaults to the requested model (Azure: the deployment).
        ``finish_reason`` defaults to ``"tool_calls"`` with tool calls, else ``"stop"``.
        ``usage`` defaults to deterministic counts. ``tool_calls`` items may be full
        ``{"id", "type", "function": {"name", "arguments"}}`` objects or the short form
        ``{"name": ..., "arguments": str | dict}``. The flavor's usual headers are sent.
        """
        spec = _ChatSpec(
            text, model, finish_reason, usage, tuple(tool_calls) if tool_calls else None, None
        )
        return cls("chat", headers=_normalize_headers(headers), delay=delay, chat_spec=spec)

    @classmethod
    def chat_stream(
        cls,
        text: str | None = None,
        *,
        model: str | None = None,
        finish_reason: str | None = None,
        usage: Mapping[str, Any] | None = None,
        tool_calls: Sequence[Mapping[str, Any]] | None = None,
        include_usage: bool | None = None,
        headers: HeaderInput = None,
        delay: float = 0.0,
        delay_between: float = 0.0,
        die_after: int | None = None,
    ) -> Reply:
        """Like :meth:`chat` but streamed as ``chat.completion.chunk`` SSE events.

        The text is split into word chunks and tool calls into ``index``-keyed deltas.
        ``include_usage`` defaults to the request's ``stream_options.include_usage``.
        """
        spec = _ChatSpec(
            text,
            model,
            finish_reason,
            usage,
            tuple(tool_calls) if tool_calls else None,
            include_usage,
        )
        return cls(
            "chat_stream",
            headers=_normalize_headers(headers),
            delay=delay,
            delay_between=delay_between,
            die_after=die_after,
            chat_spec=spec,
            content_type=_SSE_CT,
        )

    @classmethod
    def sse(
        cls,
        events: Sequence[str | Mapping[str, Any]],
        *,
        done: bool = True,
        space: bool = True,
        headers: HeaderInput = None,
        delay: float = 0.0,
        delay_between: float = 0.0,
        die_after: int | None = None,
        status: int = 200,
    ) -> Reply:
        """Reply with a Server-Sent Events stream (chunked transfer encoding).

        Mapping events are JSON-encoded; strings are sent as the ``data`` value (a string with
        newlines becomes several ``data`` lines; a string starting with ``:`` is sent verbatim
        as an SSE comment such as ``": keep-alive"``). ``space=False`` writes ``data:x`` as TGI
        does. ``done`` appends ``data: [DONE]``. ``delay_between`` waits between events.
        ``die_after=k`` closes the connection after ``k`` events with no terminator at all
        (neither ``[DONE]`` nor the final empty chunk).
        """
        framed = tuple(
            _frame_sse(e, space) if isinstance(e, str) else _sse_json(e, space) for e in events
        )
        return cls(
            "sse",
            status=status,
            headers=_normalize_headers(headers),
            content_type=_SSE_CT,
            events=framed,
            done=done,
            space=space,
            delay=delay,
            delay_between=delay_between,
            die_after=die_after,
        )

    @classmethod
    def default(cls, *, headers: HeaderInput = None, delay: float = 0.0) -> Reply:
        """Give the flavor's default answer, optionally delayed and with extra headers."""
        return cls("default", headers=_normalize_headers(headers), delay=delay)

    # -- faults ------------------------------------------------------------------------------

    @classmethod
    def reset(cls, *, delay: float = 0.0) -> Reply:
        """Read the request, then reset the connection (TCP RST) without sending anything."""
        return cls("reset", delay=delay)

    @classmethod
    def hang(cls, seconds: float, *, then: Reply | None = None) -> Reply:
        """Wait ``seconds`` before sending anything (for read-timeout tests).

        Afterwards, send ``then`` (default: the flavor's default answer). ``stop()`` interrupts
        the wait and closes the connection.
        """
        return cls("hang", hang_seconds=seconds, then=then)

    @classmethod
    def truncated(
        cls,
        body_bytes: bytes | str,
        claimed_length: int,
        *,
        status: int = 200,
        headers: HeaderInput = None,
        content_type: str | None = _JSON_CT,
        delay: float = 0.0,
    ) -> Reply:
        """Send ``Content-Length: claimed_length`` but only ``body_bytes``, then close."""
        data = body_bytes.encode("utf-8") if isinstance(body_bytes, str) else bytes(body_bytes)
        if claimed_length <= len(data):
            raise ValueError("claimed_length must exceed the number of bytes sent")
        return cls(
            "truncated",
            status=status,
            headers=_normalize_headers(headers),
            body=data,
            content_type=content_type,
            claimed_length=claimed_length,
            delay=delay,
        )

    # -- modifiers ---------------------------------------------------------------------------

    def with_headers(self, headers: HeaderInput) -> Reply:
        """Return a copy with extra headers."""
        return attrs.evolve(self, headers=self.headers + _normalize_headers(headers))

    def with_delay(self, delay: float) -> Reply:
        """Return a copy that waits ``delay`` seconds before sending anything."""
        return attrs.evolve(self, delay=delay)


# ---------------------------------------------------------------------------------------------
# Internal response representation
# ---------------------------------------------------------------------------------------------


@attrs.define
class _Out:
    status: int
    headers: list[tuple[str, str]]
    body: bytes | None = None
    events: list[bytes] | None = None
    terminator: bytes | None = None
    delay_between: float = 0.0
    die_after: int | None = None


class _Invalid(Exception):
    """A request validation failure: an OpenAI-style (dict) or TGI-style error."""

    def __init__(
        self,
        message: str,
        param: str | None = None,
        code: str | None = None,
        status: int = 400,
        error_type: str = "invalid_request_error",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code
        self.status = status
        self.error_type = error_type


def _openai_error(
    status: int,
    message: str,
    *,
    type_: str = "invalid_request_error",
    param: str | None = None,
    code: str | None = None,
) -> _Out:
    body = {"error": {"message": message, "type": type_, "param": param, "code": code}}
    return _Out(status, [("Content-Type", _JSON_CT)], _dumps(body))


def _tgi_error(status: int, message: str, error_type: str) -> _Out:
    return _Out(
        status, [("Content-Type", _JSON_CT)], _dumps({"error": message, "error_type": error_type})
    )


def _azure_error(status: int, message: str) -> _Out:
    body = {"error": {"code": str(status), "message": message}}
    return _Out(status, [("Content-Type", _JSON_CT)], _dumps(body))


# ---------------------------------------------------------------------------------------------
# OpenAI request validation
# ---------------------------------------------------------------------------------------------

# CreateChatCompletionRequest properties, including the allOf-inherited ones (spec 2.3.0).
_CHAT_FIELDS = frozenset(
    {
        "audio", "frequency_penalty", "function_call", "functions", "logit_bias", "logprobs",
        "max_completion_tokens", "max_tokens", "messages", "metadata", "modalities", "model",
        "moderation", "n", "parallel_tool_calls", "prediction", "presence_penalty",
        "prompt_cache_key", "prompt_cache_options", "prompt_cache_retention", "reasoning_effort",
        "response_format", "safety_identifier", "seed", "service_tier", "stop", "store", "stream",
        "stream_options", "temperature", "tool_choice", "tools", "top_logprobs", "top_p", "user",
        "verbosity", "web_search_options",
    }
)  # fmt: skip

# name -> (kind, nullable, minimum, maximum, enum)
_FieldRule = tuple[str, bool, float | None, float | None, tuple[str, ...] | None]
_SIMPLE_RULES: dict[str, _FieldRule] = {
    "audio": ("object", True, None, None, None),
    "frequency_penalty": ("number", True, -2, 2, None),
    "presence_penalty": ("number", True, -2, 2, None),
    "logit_bias": ("object", True, None, None, None),
    "logprobs": ("boolean", True, None, None, None),
    "max_completion_tokens": ("integer", True, 1, None, None),
    "max_tokens": ("integer", True, 1, None, None),
    "metadata": ("object", True, None, None, None),
    "modalities": ("array", True, None, None, None),
    "moderation": ("object", True, None, None, None),
    "n": ("integer", True, 1, 128, None),
    "parallel_tool_calls": ("boolean", False, None, None, None),
    "prediction": ("object", True, None, None, None),
    "prompt_cache_key": ("string", True, None, None, None),
    "prompt_cache_options": ("object", True, None, None, None),
    "prompt_cache_retention": ("string", True, None, None, ("in_memory", "24h")),
    "reasoning_effort": (
        "string",
        True,
        None,
        None,
        ("none", "minimal", "low", "medium", "high", "xhigh", "max"),
    ),
    "response_format": ("object", False, None, None, None),
    "safety_identifier": ("string", True, None, None, None),
    "seed": ("integer", True, None, None, None),
    "service_tier": (
        "string",
        True,
        None,
        None,
        ("auto", "default", "flex", "scale", "priority", "fast"),
    ),
    "store": ("boolean", True, None, None, None),
    "stream": ("boolean", True, None, None, None),
    "stream_options": ("object", True, None, None, None),
    "temperature": ("number", True, 0, 2, None),
    "top_logprobs": ("integer", True, 0, 20, None),
    "top_p": ("number", True, 0, 1, None),
    "tools": ("array", False, None, None, None),
    "functions": ("array", False, None, None, None),
    "user": ("string", False, None, None, None),
    "verbosity": ("string", True, None, None, ("low", "medium", "high")),
    "web_search_options": ("object", False, None, None, None),
}

_KIND_WORDS = {
    "number": "a decimal",
    "integer": "an integer",
    "boolean": "a boolean",
    "string": "a string",
    "object": "an object",
    "array": "an array",
}


def _is_kind(value: object, kind: str) -> bool:
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "integer":
        return (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, float) and value.is_integer()
        )
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "string":
        return isinstance(value, str)
    if kind == "object":
        return isinstance(value, dict)
    if kind == "array":
        return isinstance(value, list)
    return True


def _require_kind(value: object, kind: str, param: str, nullable: bool = False) -> None:
    if value is None and nullable:
        return
    if not _is_kind(value, kind):
        raise _Invalid(
            f"Invalid type for '{param}': expected {_KIND_WORDS[kind]}, "
            f"but got {_describe(value)} instead.",
            param,
            "invalid_type",
        )


def _require_enum(value: object, allowed: Sequence[str], param: str) -> None:
    if value not in allowed:
        quoted = [f"'{a}'" for a in allowed]
        supported = (
            quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + f", and {quoted[-1]}"
        )
        raise _Invalid(
            f"Invalid value: '{value}'. Supported values are: {supported}.", param, "invalid_value"
        )


def _require_keys(obj: Mapping[str, Any], allowed: Iterable[str], where: str) -> None:
    allowed_set = set(allowed)
    for key in obj:
        if key not in allowed_set:
            raise _Invalid(
                f"Additional properties are not allowed ('{key}' was unexpected) - '{where}'.",
                where,
                "unknown_parameter",
            )


def _require_present(obj: Mapping[str, Any], key: str, param: str) -> Any:
    if key not in obj:
        raise _Invalid(
            f"Missing required parameter: '{param}'.", param, "missing_required_parameter"
        )
    return obj[key]


def _check_range(value: float, lo: float | None, hi: float | None, param: str, kind: str) -> None:
    word = "integer" if kind == "integer" else "decimal"
    if lo is not None and value < lo:
        raise _Invalid(
            f"Invalid '{param}': {word} below minimum value. Expected a value >= {lo:g}, "
            f"but got {value:g} instead.",
            param,
            f"{word}_below_min_value",
        )
    if hi is not None and value > hi:
        raise _Invalid(
            f"Invalid '{param}': {word} above maximum value. Expected a value <= {hi:g}, "
            f"but got {value:g} instead.",
            param,
            f"{word}_above_max_value",
        )


def _check_array_len(value: list[Any], lo: int | None, hi: int | None, param: str) -> None:
    if lo is not None and len(value) < lo:
        if not value:
            raise _Invalid(
                f"Invalid '{param}': empty array. Expected an array with minimum length {lo}, "
                "but got an empty array instead.",
                param,
                "empty_array",
            )
        raise _Invalid(
            f"Invalid '{param}': array too short. Expected an array with minimum length {lo}, "
            f"but got an array with length {len(value)} instead.",
            param,
            "array_below_min_length",
        )
    if hi is not None and len(value) > hi:
        raise _Invalid(
            f"Invalid '{param}': array too long. Expected an array with maximum length {hi}, "
            f"but got an array with length {len(value)} instead.",
            param,
            "array_above_max_length",
        )


_PART_KEYS: dict[str, tuple[str, ...]] = {
    "text": ("type", "text", "prompt_cache_breakpoint"),
    "image_url": ("type", "image_url", "prompt_cache_breakpoint"),
    "input_audio": ("type", "input_audio", "prompt_cache_breakpoint"),
    "file": ("type", "file", "prompt_cache_breakpoint"),
    "refusal": ("type", "refusal"),
}
_ROLE_PARTS: dict[str, tuple[str, ...]] = {
    "developer": ("text",),
    "system": ("text",),
    "tool": ("text",),
    "user": ("text", "image_url", "input_audio", "file"),
    "assistant": ("text", "refusal"),
}
_ROLE_KEYS: dict[str, tuple[str, ...]] = {
    "developer": ("role", "content", "name"),
    "system": ("role", "content", "name"),
    "user": ("role", "content", "name"),
    "assistant": (
        "role", "content", "refusal", "name", "audio", "tool_calls", "function_call",
    ),
    "tool": ("role", "content", "tool_call_id"),
    "function": ("role", "content", "name"),
}  # fmt: skip


def _validate_part(part: object, role: str, param: str) -> None:
    _require_kind(part, "object", param)
    part = cast("dict[str, Any]", part)
    ptype = _require_present(part, "type", f"{param}.type")
    _require_enum(ptype, _ROLE_PARTS[role], f"{param}.type")
    _require_keys(part, _PART_KEYS[ptype], param)
    if ptype == "text":
        _require_kind(_require_present(part, "text", f"{param}.text"), "string", f"{param}.text")
    elif ptype == "refusal":
        value = _require_present(part, "refusal", f"{param}.refusal")
        _require_kind(value, "string", f"{param}.refusal")
    elif ptype == "image_url":
        img = _require_present(part, "image_url", f"{param}.image_url")
        _require_kind(img, "object", f"{param}.image_url")
        _require_keys(img, ("url", "detail"), f"{param}.image_url")
        url = _require_present(img, "url", f"{param}.image_url.url")
        _require_kind(url, "string", f"{param}.image_url.url")
        if not url.startswith(("http://", "https://", "data:")):
            raise _Invalid(
                f"Invalid '{param}.image_url.url': Expected a valid URL, but got a value with "
                "an invalid format.",
                f"{param}.image_url.url",
                "invalid_value",
            )
        if "detail" in img:
            _require_enum(img["detail"], ("auto", "low", "high"), f"{param}.image_url.detail")
    elif ptype == "input_audio":
        audio = _require_present(part, "input_audio", f"{param}.input_audio")
        _require_kind(audio, "object", f"{param}.input_audio")
        _require_keys(audio, ("data", "format"), f"{param}.input_audio")
        data = _require_present(audio, "data", f"{param}.input_audio.data")
        _require_kind(data, "string", f"{param}.input_audio.data")
        fmt = _require_present(audio, "format", f"{param}.input_audio.format")
        _require_enum(fmt, ("wav", "mp3"), f"{param}.input_audio.format")
    elif ptype == "file":
        file = _require_present(part, "file", f"{param}.file")
        _require_kind(file, "object", f"{param}.file")
        _require_keys(file, ("filename", "file_data", "file_id"), f"{param}.file")
        for key, value in file.items():
            _require_kind(value, "string", f"{param}.file.{key}")


def _validate_content(content: object, role: str, param: str) -> None:
    if isinstance(content, str):
        return
    if not isinstance(content, list):
        raise _Invalid(
            f"Invalid type for '{param}': expected one of a string or array of objects, "
            f"but got {_describe(content)} instead.",
            param,
            "invalid_type",
        )
    _check_array_len(content, 1, None, param)
    for j, part in enumerate(content):
        _validate_part(part, role, f"{param}[{j}]")


def _validate_tool_calls(calls: object, param: str) -> list[str]:
    _require_kind(calls, "array", param)
    ids: list[str] = []
    for j, call in enumerate(cast("list[Any]", calls)):
        p = f"{param}[{j}]"
        _require_kind(call, "object", p)
        ctype = _require_present(call, "type", f"{p}.type")
        _require_enum(ctype, ("function", "custom"), f"{p}.type")
        _require_keys(call, ("id", "type", ctype), p)
        cid = _require_present(call, "id", f"{p}.id")
        _require_kind(cid, "string", f"{p}.id")
        ids.append(cid)
        inner = _require_present(call, ctype, f"{p}.{ctype}")
        _require_kind(inner, "object", f"{p}.{ctype}")
        fields = ("name", "arguments") if ctype == "function" else ("name", "input")
        _require_keys(inner, fields, f"{p}.{ctype}")
        for key in fields:
            value = _require_present(inner, key, f"{p}.{ctype}.{key}")
            _require_kind(value, "string", f"{p}.{ctype}.{key}")
    return ids


def _validate_messages(messages: object) -> None:
    _require_kind(messages, "array", "messages")
    messages = cast("list[Any]", messages)
    _check_array_len(messages, 1, None, "messages")
    pending: list[str] = []  # tool_call ids still awaiting a tool message
    pending_from = -1
    for i, msg in enumerate(messages):
        p = f"messages[{i}]"
        _require_kind(msg, "object", p)
        role = _require_present(msg, "role", f"{p}.role")
        _require_enum(role, _ROLES, f"{p}.role")
        _require_keys(msg, _ROLE_KEYS[role], p)
        if role != "tool" and pending:
            raise _Invalid(
                "An assistant message with 'tool_calls' must be followed by tool messages "
                "responding to each 'tool_call_id'. The following tool_call_ids did not have "
                f"response messages: {', '.join(pending)}",
                f"messages.[{pending_from}].role",
            )
        if "name" in msg:
            _require_kind(msg["name"], "string", f"{p}.name")
        if role in ("developer", "system", "user", "tool"):
            _validate_content(
                _require_present(msg, "content", f"{p}.content"), role, f"{p}.content"
            )
        if role == "function":
            content = _require_present(msg, "content", f"{p}.content")
            _require_kind(content, "string", f"{p}.content", nullable=True)
            _require_kind(_require_present(msg, "name", f"{p}.name"), "string", f"{p}.name")
        if role == "tool":
            tcid = _require_present(msg, "tool_call_id", f"{p}.tool_call_id")
            _require_kind(tcid, "string", f"{p}.tool_call_id")
            if tcid not in pending:
                raise _Invalid(
                    "Invalid parameter: messages with role 'tool' must be a response to a "
                    "preceeding message with 'tool_calls'.",
                    f"messages.[{i}].role",
                )
            pending.remove(tcid)
        if role == "assistant":
            has_calls = msg.get("tool_calls") is not None or msg.get("function_call") is not None
            content = msg.get("content")
            if content is None and not has_calls:
                raise _Invalid(
                    f"Invalid value for '{p}.content': expected a string, got null.",
                    f"{p}.content",
                )
            if content is not None:
                _validate_content(content, role, f"{p}.content")
            if msg.get("refusal") is not None:
                _require_kind(msg["refusal"], "string", f"{p}.refusal")
            if msg.get("audio") is not None:
                _require_kind(msg["audio"], "object", f"{p}.audio")
                _require_present(msg["audio"], "id", f"{p}.audio.id")
            if msg.get("function_call") is not None:
                _require_kind(msg["function_call"], "object", f"{p}.function_call")
            if "tool_calls" in msg:
                ids = _validate_tool_calls(msg["tool_calls"], f"{p}.tool_calls")
                pending = ids
                pending_from = i
    if pending:
        raise _Invalid(
            "An assistant message with 'tool_calls' must be followed by tool messages responding "
            "to each 'tool_call_id'. The following tool_call_ids did not have response "
            f"messages: {', '.join(pending)}",
            f"messages.[{pending_from}].role",
        )


def _validate_tools(tools: list[Any]) -> None:
    _check_array_len(tools, 1, 128, "tools")
    for i, tool in enumerate(tools):
        p = f"tools[{i}]"
        _require_kind(tool, "object", p)
        ttype = _require_present(tool, "type", f"{p}.type")
        _require_enum(ttype, ("function", "custom"), f"{p}.type")
        _require_keys(tool, ("type", ttype), p)
        inner = _require_present(tool, ttype, f"{p}.{ttype}")
        _require_kind(inner, "object", f"{p}.{ttype}")
        allowed = (
            ("name", "description", "parameters", "strict")
            if ttype == "function"
            else ("name", "description", "format")
        )
        _require_keys(inner, allowed, f"{p}.{ttype}")
        name = _require_present(inner, "name", f"{p}.{ttype}.name")
        _require_kind(name, "string", f"{p}.{ttype}.name")
        if not _NAME_PATTERN.match(name):
            raise _Invalid(
                f"Invalid '{p}.{ttype}.name': string does not match pattern. Expected a string "
                "that matches the pattern '^[a-zA-Z0-9_-]+$'.",
                f"{p}.{ttype}.name",
                "invalid_value",
            )
        if "description" in inner:
            _require_kind(inner["description"], "string", f"{p}.{ttype}.description")
        if "parameters" in inner:
            _require_kind(inner["parameters"], "object", f"{p}.{ttype}.parameters")
        if "strict" in inner:
            _require_kind(inner["strict"], "boolean", f"{p}.{ttype}.strict", nullable=True)


def _validate_tool_choice(choice: object) -> None:
    if isinstance(choice, str):
        _require_enum(choice, ("none", "auto", "required"), "tool_choice")
        return
    _require_kind(choice, "object", "tool_choice")
    choice = cast("dict[str, Any]", choice)
    ctype = _require_present(choice, "type", "tool_choice.type")
    _require_enum(ctype, ("function", "allowed_tools", "custom"), "tool_choice.type")
    _require_keys(choice, ("type", ctype), "tool_choice")
    inner = _require_present(choice, ctype, f"tool_choice.{ctype}")
    _require_kind(inner, "object", f"tool_choice.{ctype}")
    if ctype in ("function", "custom"):
        name = _require_present(inner, "name", f"tool_choice.{ctype}.name")
        _require_kind(name, "string", f"tool_choice.{ctype}.name")


def _validate_response_format(fmt: dict[str, Any]) -> None:
    ftype = _require_present(fmt, "type", "response_format.type")
    _require_enum(ftype, ("text", "json_object", "json_schema"), "response_format.type")
    if ftype != "json_schema":
        _require_keys(fmt, ("type",), "response_format")
        return
    _require_keys(fmt, ("type", "json_schema"), "response_format")
    schema = _require_present(fmt, "json_schema", "response_format.json_schema")
    _require_kind(schema, "object", "response_format.json_schema")
    _require_keys(
        schema, ("name", "description", "schema", "strict"), "response_format.json_schema"
    )
    name = _require_present(schema, "name", "response_format.json_schema.name")
    _require_kind(name, "string", "response_format.json_schema.name")
    if not _NAME_PATTERN.match(name):
        raise _Invalid(
            "Invalid 'response_format.json_schema.name': string does not match pattern. "
            "Expected a string that matches the pattern '^[a-zA-Z0-9_-]+$'.",
            "response_format.json_schema.name",
            "invalid_value",
        )
    if "schema" in schema:
        _require_kind(schema["schema"], "object", "response_format.json_schema.schema")
    if "strict" in schema:
        _require_kind(schema["strict"], "boolean", "response_format.json_schema.strict", True)


def _validate_openai_chat(req: object, *, model_required: bool = True) -> dict[str, Any]:
    """Validate a chat request like the OpenAI API; return it or raise :class:`_Invalid`."""
    if not isinstance(req, dict):
        raise _Invalid(
            f"Invalid type for 'body': expected an object, but got {_describe(req)} instead.",
            None,
            "invalid_type",
        )
    for key in req:
        if key not in _CHAT_FIELDS:
            raise _Invalid(f"Unrecognized request argument supplied: {key}")
    if "model" in req or model_required:
        model = _require_present(req, "model", "model")
        _require_kind(model, "string", "model")
    _validate_messages(_require_present(req, "messages", "messages"))

    for name, (kind, nullable, lo, hi, enum) in _SIMPLE_RULES.items():
        if name not in req:
            continue
        value = req[name]
        _require_kind(value, kind, name, nullable)
        if value is None:
            continue
        if kind in ("number", "integer"):
            _check_range(float(value), lo, hi, name, kind)
        if enum is not None:
            _require_enum(value, enum, name)

    stop = req.get("stop")
    if stop is not None and not isinstance(stop, str):
        if not isinstance(stop, list):
            raise _Invalid(
                "Invalid type for 'stop': expected one of a string or array of strings, "
                f"but got {_describe(stop)} instead.",
                "stop",
                "invalid_type",
            )
        _check_array_len(stop, 1, 4, "stop")
        for i, item in enumerate(stop):
            _require_kind(item, "string", f"stop[{i}]")

    logit_bias = req.get("logit_bias")
    if logit_bias:
        for key, value in logit_bias.items():
            if not key.isdigit():
                raise _Invalid(
                    f"Invalid key in 'logit_bias': {key}. You should only be submitting "
                    "non-negative integers.",
                    "logit_bias",
                    "invalid_value",
                )
            _require_kind(value, "integer", f"logit_bias.{key}")
            _check_range(float(value), -100, 100, f"logit_bias.{key}", "integer")

    metadata = req.get("metadata")
    if metadata:
        if len(metadata) > 16:
            raise _Invalid(
                "Invalid 'metadata': too many properties. Expected an object with at most 16 "
                f"properties, but got an object with {len(metadata)} properties instead.",
                "metadata",
                "object_above_max_properties",
            )
        for key, value in metadata.items():
            _require_kind(value, "string", f"metadata.{key}")

    modalities = req.get("modalities")
    if modalities:
        for i, item in enumerate(modalities):
            _require_enum(item, ("text", "audio"), f"modalities[{i}]")

    safety = req.get("safety_identifier")
    if isinstance(safety, str) and len(safety) > 64:
        raise _Invalid(
            "Invalid 'safety_identifier': string too long. Expected a string with maximum length "
            f"64, but got a string with length {len(safety)} instead.",
            "safety_identifier",
            "string_above_max_length",
        )

    if "response_format" in req:
        _validate_response_format(req["response_format"])
    if "functions" in req:
        _check_array_len(req["functions"], 1, 128, "functions")
    if "function_call" in req:
        fc = req["function_call"]
        if isinstance(fc, str):
            _require_enum(fc, ("none", "auto"), "function_call")
        else:
            _require_kind(fc, "object", "function_call")
            _require_present(fc, "name", "function_call.name")

    stream_options = req.get("stream_options")
    if stream_options is not None:
        _require_keys(stream_options, ("include_usage", "include_obfuscation"), "stream_options")
        for key, value in stream_options.items():
            _require_kind(value, "boolean", f"stream_options.{key}")
        if req.get("stream") is not True:
            raise _Invalid(
                "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                "stream_options",
                "invalid_value",
            )

    has_tools = "tools" in req
    if has_tools:
        _validate_tools(req["tools"])
    if "tool_choice" in req:
        if not has_tools:
            raise _Invalid(
                "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' "
                "are specified.",
                "tool_choice",
            )
        _validate_tool_choice(req["tool_choice"])
    if "parallel_tool_calls" in req and not has_tools:
        raise _Invalid(
            "Invalid value for 'parallel_tool_calls': 'parallel_tool_calls' is only allowed "
            "when 'tools' are specified.",
            "parallel_tool_calls",
        )

    if req.get("top_logprobs") is not None and req.get("logprobs") is not True:
        raise _Invalid(
            "Invalid value for 'logprobs': must be true when 'top_logprobs' is specified.",
            "logprobs",
            "invalid_value",
        )
    return req


# ---------------------------------------------------------------------------------------------
# Chat completion rendering (shared by all flavors)
# ---------------------------------------------------------------------------------------------


def _message_text(msg: Mapping[str, Any]) -> str:
    content = msg.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)
        )
    return ""


def _last_user_text(req: Mapping[str, Any]) -> str:
    messages = req.get("messages")
    if isinstance(messages, list):
        for msg in reversed(messages):
            if isinstance(msg, dict) and msg.get("role") == "user":
                return _message_text(msg)
    return ""


def _prompt_tokens(req: Mapping[str, Any]) -> int:
    """Deterministic prompt size: ``ceil(chars / 4)`` of each message's text, plus 3 each."""
    messages = req.get("messages")
    if not isinstance(messages, list):
        return 0
    return sum(_tokens(_message_text(m)) + 3 for m in messages if isinstance(m, dict))


def _default_text(req: Mapping[str, Any]) -> str:
    return f"{STANDIN_NOTICE} You said: {_last_user_text(req)}"


def _usage(prompt: int, completion: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _normalize_tool_calls(calls: Iterable[Mapping[str, Any]], seed: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i, call in enumerate(calls):
        if "function" in call:
            fn = dict(call["function"])
        else:
            fn = {"name": call["name"], "arguments": call.get("arguments", "{}")}
        if not isinstance(fn.get("arguments"), str):
            fn["arguments"] = json.dumps(fn.get("arguments", {}), separators=(",", ":"))
        cid = call.get("id") or f"call_standin{seed:06d}{i:02d}"
        out.append({"id": cid, "type": call.get("type", "function"), "function": fn})
    return out


@attrs.define
class _Choice:
    content: str | None
    tool_calls: list[dict[str, Any]] | None
    finish_reason: str


@attrs.define
class _Completion:
    id: str
    created: int
    model: str
    fingerprint: str
    choices: list[_Choice]
    usage: dict[str, Any]
    flavor: str
    logprobs: int | None = None  # None: no logprobs; k: top_logprobs count
    obfuscation: bool = False

    def _choice_extras(self, body: dict[str, Any]) -> dict[str, Any]:
        if self.flavor == "azure":
            body["content_filter_results"] = _FILTER_OK
        return body

    def _logprobs(self, content: str | None) -> dict[str, Any] | None:
        if self.logprobs is None:
            return None
        entries = []
        for word in _split_words(content or ""):
            top = [{"token": word, "logprob": -0.25, "bytes": list(word.encode())}] * self.logprobs
            entries.append(
                {"token": word, "logprob": -0.25, "bytes": list(word.encode()), "top_logprobs": top}
            )
        return {"content": entries, "refusal": None}

    def body(self) -> dict[str, Any]:
        choices = []
        for i, c in enumerate(self.choices):
            message: dict[str, Any] = {
                "role": "assistant",
                "content": c.content,
                "refusal": None,
                "annotations": [],
            }
            if c.tool_calls:
                message["tool_calls"] = c.tool_calls
            choices.append(
                self._choice_extras(
                    {
                        "index": i,
                        "message": message,
                        "logprobs": self._logprobs(c.content),
                        "finish_reason": c.finish_reason,
                    }
                )
            )
        body: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": choices,
            "usage": self.usage,
        }
        if self.flavor == "azure":
            body["prompt_filter_results"] = _PROMPT_FILTER_RESULTS
        elif self.flavor == "openai":
            body["service_tier"] = "default"
        body["system_fingerprint"] = self.fingerprint
        return body

    def stream(self, include_usage: bool) -> tuple[list[bytes], bytes]:
        """Return the SSE events and the ``[DONE]`` terminator."""
        space = self.flavor != "tgi"
        tgi = self.flavor == "tgi"
        events: list[bytes] = []
        counter = itertools.count()

        def chunk(choices: list[dict[str, Any]], usage: object = None) -> None:
            obj: dict[str, Any] = {
                "id": self.id,
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": self.model,
                "system_fingerprint": self.fingerprint,
                "choices": choices,
            }
            if self.flavor == "openai":
                obj["service_tier"] = "default"
            if include_usage or tgi:
                obj["usage"] = usage
            if self.obfuscation:
                obj["obfuscation"] = "standin"[: 1 + next(counter) % 7]
            events.append(_sse_json(obj, space))

        def choice(i: int, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            body: dict[str, Any] = {
                "index": i,
                "delta": delta,
                "logprobs": None,
                "finish_reason": finish,
            }
            if self.flavor == "azure" and delta:
                body["content_filter_results"] = _FILTER_OK
            return body

        if self.flavor == "azure":
            obj = {
                "id": "",
                "object": "",
                "created": 0,
                "model": "",
                "choices": [],
                "prompt_filter_results": _PROMPT_FILTER_RESULTS,
            }
            events.append(_sse_json(obj, space))

        pieces = [_split_words(c.content or "") for c in self.choices]
        if not tgi:
            first: list[dict[str, Any]] = []
            for i, c in enumerate(self.choices):
                content = "" if c.content is not None else None
                first.append(choice(i, {"role": "assistant", "content": content, "refusal": None}))
            chunk(first)
        longest = max((len(p) for p in pieces), default=0)
        for w in range(longest):
            row: list[dict[str, Any]] = []
            for i, p in enumerate(pieces):
                if w < len(p):
                    delta: dict[str, Any] = {"content": p[w]}
                    if tgi:
                        delta = {"role": "assistant", **delta}
                    row.append(choice(i, delta))
            chunk(row)
        for i, c in enumerate(self.choices):
            for k, call in enumerate(c.tool_calls or ()):
                fn = call["function"]
                opening: dict[str, Any] = {
                    "index": k,
                    "id": call["id"],
                    "type": "function",
                    "function": {"name": fn["name"], "arguments": ""},
                }
                call_delta: dict[str, Any] = {"tool_calls": [opening]}
                if tgi:
                    call_delta = {"role": "assistant", **call_delta}
                chunk([choice(i, call_delta)])
                args = fn["arguments"]
                for start in range(0, len(args), 8):
                    piece = {"index": k, "function": {"arguments": args[start : start + 8]}}
                    chunk([choice(i, {"tool_calls": [piece]})])
        chunk([choice(i, {}, c.finish_reason) for i, c in enumerate(self.choices)])
        if include_usage:
            chunk([], self.usage)
        return events, (b"data: [DONE]\n\n" if space else b"data:[DONE]\n\n")


# ---------------------------------------------------------------------------------------------
# The server
# ---------------------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "chatcore-standin/1.0"
    sys_version = ""
    disable_nagle_algorithm = True
    timeout = 120

    def log_message(self, format: str, *args: Any) -> None:
        """Silence per-request logging."""

    @property
    def _srv(self) -> StandInServer:
        return cast("StandInServer", self.server)

    def setup(self) -> None:
        super().setup()
        self._srv._track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self._srv._track(self.connection, add=False)

    def do_GET(self) -> None:
        self._dispatch()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_GET

    # -- request -----------------------------------------------------------------------------

    def _read_body(self) -> bytes:
        te = self.headers.get("Transfer-Encoding", "")
        if "chunked" in te.lower():
            parts: list[bytes] = []
            while True:
                line = self.rfile.readline(65537)
                size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline(65537)
        length = self.headers.get("Content-Length")
        if length:
            n = int(length)
            if n < 0:
                raise ValueError("negative Content-Length")
            return self.rfile.read(n)
        return b""

    def _dispatch(self) -> None:
        srv = self._srv
        arrived = time.monotonic()
        try:
            try:
                body = self._read_body()
            except ValueError:
                self.close_connection = True
                self._write(_Out(400, [("Content-Type", "text/plain")], b"bad request body"))
                return
            split = urlsplit(self.path)
            headers: dict[str, str] = {}
            for name, value in self.headers.items():
                key = name.lower()
                headers[key] = f"{headers[key]}, {value}" if key in headers else value
            rec = RecordedRequest(
                method=self.command,
                path=split.path,
                query=parse_qs(split.query, keep_blank_values=True),
                headers=headers,
                body=body,
                time=arrived,
                target=self.path,
            )
            srv._record(rec)
            denied = srv._check_auth(rec)
            if denied is not None:
                self._write(denied)
                return
            reply = srv._pop_reply(rec.path)
            if reply is None:
                self._write(srv._default(rec))
            else:
                self._play(reply, rec)
        except OSError:  # the client went away, or a fault closed the socket
            self.close_connection = True
        except Exception:  # a bug in the stand-in itself: say so loudly, answer 500
            traceback.print_exc()
            self.close_connection = True
            with contextlib.suppress(OSError):
                self._write(
                    _openai_error(500, "chatcore stand-in server error", type_="server_error")
                )

    # -- response ----------------------------------------------------------------------------

    def _wait(self, seconds: float) -> bool:
        """Sleep, interruptibly; True if the server is stopping."""
        return seconds > 0 and self._srv._stopping.wait(seconds)

    def _play(self, reply: Reply, rec: RecordedRequest) -> None:
        srv = self._srv
        if reply.delay and self._wait(reply.delay):
            self._abort(rst=False)
            return
        kind = reply.kind
        if kind == "reset":
            self._abort(rst=True)
            return
        if kind == "hang":
            if self._wait(reply.hang_seconds) or srv._stopping.is_set():
                self._abort(rst=False)
                return
            if reply.then is not None:
                self._play(reply.then, rec)
            else:
                self._write(srv._default(rec))
            return
        if kind == "truncated":
            head = [("Content-Length", str(reply.claimed_length))]
            if reply.content_type:
                head.append(("Content-Type", reply.content_type))
            self.wfile.write(self._head(reply.status, _merge(head, reply.headers)) + reply.body)
            self._abort(rst=False)
            return
        if kind == "default":
            out = srv._default(rec)
        elif kind in ("chat", "chat_stream"):
            out = srv._scripted_chat(reply, rec)
        elif kind == "sse":
            out = _Out(
                reply.status,
                [("Content-Type", _SSE_CT), ("Cache-Control", "no-cache")],
                events=list(reply.events),
                terminator=(b"data: [DONE]\n\n" if reply.space else b"data:[DONE]\n\n")
                if reply.done
                else None,
                delay_between=reply.delay_between,
                die_after=reply.die_after,
            )
        else:
            head = [("Content-Type", reply.content_type)] if reply.content_type else []
            out = _Out(reply.status, head, reply.body)
        out.headers = _merge(out.headers, reply.headers)
        self._write(out)

    def _head(self, status: int, headers: Iterable[tuple[str, str]]) -> bytes:
        try:
            phrase = http.HTTPStatus(status).phrase
        except ValueError:
            phrase = "Status"
        lines = [
            f"HTTP/1.1 {status} {phrase}\r\n",
            f"Date: {email.utils.formatdate(usegmt=True)}\r\n",
        ]
        lines.extend(f"{k}: {v}\r\n" for k, v in headers)
        if self.close_connection:
            lines.append("Connection: close\r\n")
        lines.append("\r\n")
        return "".join(lines).encode("latin-1")

    def _write(self, out: _Out) -> None:
        if out.events is None:
            body = out.body or b""
            headers = [h for h in out.headers if h[0].lower() != "content-length"]
            headers.append(("Content-Length", str(len(body))))
            payload = self._head(out.status, headers)
            if self.command != "HEAD":
                payload += body
            self.wfile.write(payload)
            return
        chunked = self.request_version == "HTTP/1.1"
        if not chunked:
            self.close_connection = True
        headers = [h for h in out.headers if h[0].lower() != "content-length"]
        if chunked:
            headers.append(("Transfer-Encoding", "chunked"))

        def frame(data: bytes) -> bytes:
            return b"%x\r\n%s\r\n" % (len(data), data) if chunked else data

        events = out.events
        if out.die_after is not None:
            events = events[: out.die_after]
        head = self._head(out.status, headers)
        if out.delay_between <= 0:
            payload = head + b"".join(frame(e) for e in events)
            if out.die_after is None:
                if out.terminator:
                    payload += frame(out.terminator)
                if chunked:
                    payload += b"0\r\n\r\n"
            self.wfile.write(payload)
        else:
            self.wfile.write(head)
            for i, event in enumerate(events):
                if i and self._wait(out.delay_between):
                    self._abort(rst=False)
                    return
                self.wfile.write(frame(event))
            if out.die_after is None:
                if out.terminator:
                    if events and self._wait(out.delay_between):
                        self._abort(rst=False)
                        return
                    self.wfile.write(frame(out.terminator))
                if chunked:
                    self.wfile.write(b"0\r\n\r\n")
        if out.die_after is not None:
            self._abort(rst=False)
        elif not chunked:
            self.connection.shutdown(socket.SHUT_WR)

    def _abort(self, *, rst: bool) -> None:
        """Close the connection now: with a TCP RST (``rst``) or a plain FIN."""
        self.close_connection = True
        conn = self.connection
        try:
            if rst:
                # Detach so rfile/wfile (which still reference ``conn``) fail cleanly with
                # EBADF instead of keeping the descriptor alive; then close with linger 0.
                raw = socket.socket(fileno=conn.detach())
                raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                raw.close()
            else:
                conn.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def _int_or(value: object, default: int | None, *, lo: int, hi: int | None = None) -> int | None:
    """``value`` as an int clamped to ``[lo, hi]``, or ``default`` when it is not a number."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return default
    result = max(lo, int(value))
    return min(result, hi) if hi is not None else result


def _merge(
    base: Iterable[tuple[str, str]], extra: Iterable[tuple[str, str]]
) -> list[tuple[str, str]]:
    extra = list(extra)
    names = {k.lower() for k, _ in extra}
    return [h for h in base if h[0].lower() not in names] + extra


def _go_duration(seconds: float) -> str:
    """Format like Go's ``time.Duration.String()`` (``0s``, ``12ms``, ``1s``, ``6m0s``)."""
    if seconds <= 0:
        return "0s"
    if seconds < 1:
        return f"{int(seconds * 1000)}ms"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs}s" if minutes else f"{secs}s"


class StandInServer(ThreadingHTTPServer):
    """A local OpenAI / Azure OpenAI / HF router / TGI / Anthropic stand-in, for tests and
    offline demos.

    Example::

        with StandInServer(flavor="openai", api_key="sk-test") as srv:
            srv.enqueue(Reply.error(429, "Rate limit reached", headers={"retry-after": "1"}))
            ...  # point a client at srv.base_url
            assert srv.requests[0].path == "/v1/chat/completions"

    Scripted replies (:meth:`enqueue`) are consumed first-in first-out; when none is queued for
    a request the flavor's default behaviour answers. When ``api_key`` is set, requests without
    the right credentials get 401 before any scripted reply is consumed.
    """

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        flavor: Flavor = "openai",
        api_key: str | None = None,
        model_list: Sequence[str] | None = None,
    ) -> None:
        """Bind to ``host:port`` (port 0 picks a free port); call :meth:`start` to serve."""
        if flavor not in DEFAULT_MODELS:
            raise ValueError(f"unknown flavor {flavor!r}; expected openai, azure, tgi or anthropic")
        self.flavor: Flavor = flavor
        self.api_key = api_key
        self.model_list: tuple[str, ...] = (
            tuple(model_list) if model_list is not None else DEFAULT_MODELS[flavor]
        )
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._queue: collections.deque[tuple[str | None, Reply]] = collections.deque()
        self._records: list[RecordedRequest] = []
        self._conns: set[socket.socket] = set()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._ids = itertools.count(1)
        self._served = itertools.count(1)
        self._created = int(time.time())
        #: State a flavor keeps across requests (the anthropic flavor's prompt cache).
        self._flavor_state: dict[str, Any] = {}
        if ":" in host:
            self.address_family = socket.AF_INET6
        super().__init__((host, port), _Handler)
        self._models_body = _dumps(
            {"object": "list", "data": [self._model_obj(m) for m in self.model_list]}
        )
        self._openai_headers = [
            ("openai-version", "2020-10-01"),
            ("openai-organization", "chatcore-standin"),
            ("x-ratelimit-limit-requests", str(_RATE_LIMIT_REQUESTS)),
            ("x-ratelimit-limit-tokens", str(_RATE_LIMIT_TOKENS)),
            ("x-ratelimit-reset-requests", _go_duration(6 / 1000)),
            ("x-ratelimit-reset-tokens", _go_duration(0.0)),
        ]

    def server_bind(self) -> None:
        """Bind without the reverse DNS lookup ``HTTPServer`` does (it can be slow)."""
        import socketserver

        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Stay quiet about clients that disconnect; report real handler bugs."""
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError):
            return
        super().handle_error(request, client_address)

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def host(self) -> str:
        """The bound host address."""
        return str(self.server_address[0])

    @property
    def port(self) -> int:
        """The bound port."""
        return int(self.server_address[1])

    @property
    def url(self) -> str:
        """``http://host:port`` (no trailing slash)."""
        host = self.host
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"

    @property
    def base_url(self) -> str:
        """The base URL a client of this flavor is configured with: :attr:`url` + ``"/v1"``
        (OpenAI style), or :attr:`url` itself for the anthropic flavor."""
        if self.flavor == "anthropic":
            return self.url
        return self.url + "/v1"

    def start(self) -> StandInServer:
        """Serve in a daemon thread; returns ``self``."""
        if self._thread is None:
            self._stopping.clear()
            self._thread = threading.Thread(
                target=self.serve_forever,
                kwargs={"poll_interval": 0.05},
                name=f"chatcore-standin-{self.port}",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close the socket and all open connections, and join the thread."""
        self._stopping.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            self.shutdown()
        self.server_close()
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> StandInServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _track(self, conn: socket.socket, *, add: bool) -> None:
        with self._lock:
            if add:
                self._conns.add(conn)
            else:
                self._conns.discard(conn)

    # -- scripting and records ---------------------------------------------------------------

    def enqueue(self, *replies: Reply, path: str | None = None) -> None:
        """Queue scripted replies (FIFO); with ``path``, only requests to that path use them."""
        with self._lock:
            self._queue.extend((path, r) for r in replies)

    @property
    def pending_replies(self) -> int:
        """How many scripted replies are still queued."""
        with self._lock:
            return len(self._queue)

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of the requests received so far, oldest first."""
        with self._lock:
            return list(self._records)

    @property
    def last_request(self) -> RecordedRequest:
        """The most recent request (``IndexError`` if none)."""
        with self._lock:
            return self._records[-1]

    def clear(self) -> None:
        """Forget queued replies and recorded requests."""
        with self._lock:
            self._queue.clear()
            self._records.clear()

    def wait_for_requests(self, n: int, timeout: float = 5.0) -> list[RecordedRequest]:
        """Wait until at least ``n`` requests were recorded; raise ``TimeoutError`` otherwise."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self._records) >= n, timeout):
                raise TimeoutError(f"expected {n} requests, got {len(self._records)}")
            return list(self._records)

    def _record(self, rec: RecordedRequest) -> None:
        with self._cond:
            self._records.append(rec)
            self._cond.notify_all()

    def _pop_reply(self, path: str) -> Reply | None:
        with self._lock:
            for i, (bound, reply) in enumerate(self._queue):
                if bound is None or bound == path:
                    del self._queue[i]
                    return reply
        return None

    # -- auth --------------------------------------------------------------------------------

    def _check_auth(self, rec: RecordedRequest) -> _Out | None:
        if self.flavor == "anthropic":
            from chatcore.testing import anthropic_server

            return anthropic_server.check_auth(self, rec)
        key = self.api_key
        if key is None:
            return None
        auth = rec.headers.get("authorization", "")
        if auth == f"Bearer {key}":
            return None
        if self.flavor == "azure":
            if rec.headers.get("api-key") == key:
                return None
            return _azure_error(401, _AZURE_401)
        if self.flavor == "tgi":
            return _tgi_error(401, "Unauthorized", "authentication")
        if not auth:
            return _openai_error(
                401,
                "You didn't provide an API key. You need to provide your API key in an "
                "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), "
                "or as the password field (with blank username) if you're accessing the API "
                "from your browser and are prompted for a username and password. You can "
                "obtain an API key from https://platform.openai.com/account/api-keys.",
            )
        shown = auth.removeprefix("Bearer ")
        shown = shown[:3] + "*" * 6 + shown[-4:] if len(shown) > 8 else "***"
        return _openai_error(
            401,
            f"Incorrect API key provided: {shown}. You can find your API key at "
            "https://platform.openai.com/account/api-keys.",
            code="invalid_api_key",
        )

    # -- default behaviour -------------------------------------------------------------------

    def _model_obj(self, model: str) -> dict[str, Any]:
        owner = "openai" if model.startswith(("gpt", "o1", "o3", "o4")) else model.split("/")[0]
        if self.flavor == "tgi":
            owner = model
        return {"id": model, "object": "model", "created": self._created, "owned_by": owner}

    def _openai_like_headers(self, rec: RecordedRequest, tokens: int) -> list[tuple[str, str]]:
        n = next(self._served)
        elapsed = int((time.monotonic() - rec.time) * 1000)
        if self.flavor == "tgi":
            return [("x-compute-type", "gpu+optimized"), ("x-compute-time", "0.001")]
        headers = [
            ("x-request-id", f"req_{n:032x}"),
            *self._openai_headers,
            ("openai-processing-ms", str(elapsed)),
            ("x-ratelimit-remaining-requests", str(max(0, _RATE_LIMIT_REQUESTS - n))),
            ("x-ratelimit-remaining-tokens", str(max(0, _RATE_LIMIT_TOKENS - tokens))),
        ]
        if self.flavor == "azure":
            headers.append(("apim-request-id", f"{n:08x}-0000-4000-8000-000000000000"))
            headers.append(("x-ms-region", "Stand-in"))
        return headers

    def _default(self, rec: RecordedRequest) -> _Out:
        if self.flavor == "anthropic":
            from chatcore.testing import anthropic_server

            return anthropic_server.default(self, rec)
        if self.flavor == "openai":
            return self._default_openai(rec)
        if self.flavor == "azure":
            return self._default_azure(rec)
        return self._default_tgi(rec)

    def _models(self, rec: RecordedRequest, prefix: str) -> _Out | None:
        if rec.method != "GET":
            return None
        if rec.path == prefix:
            return _Out(200, [("Content-Type", _JSON_CT)], self._models_body)
        if rec.path.startswith(prefix + "/"):
            model = rec.path[len(prefix) + 1 :]
            if model in self.model_list:
                return _Out(200, [("Content-Type", _JSON_CT)], _dumps(self._model_obj(model)))
            return _openai_error(
                404,
                f"The model '{model}' does not exist",
                param="model",
                code="model_not_found",
            )
        return None

    def _default_openai(self, rec: RecordedRequest) -> _Out:
        if rec.path == "/v1/chat/completions" and rec.method == "POST":
            return self._chat(rec, model_required=True, deployment=None)
        models = self._models(rec, "/v1/models")
        if models is not None:
            return models
        return _openai_error(404, f"Invalid URL ({rec.method} {rec.path})")

    def _default_azure(self, rec: RecordedRequest) -> _Out:
        parts = rec.path.split("/")
        # ['', 'openai', 'deployments', '{dep}', 'chat', 'completions']
        if (
            rec.method == "POST"
            and len(parts) == 6
            and parts[1:3] == ["openai", "deployments"]
            and parts[4:] == ["chat", "completions"]
            and parts[3]
        ):
            version = rec.query.get("api-version", [""])[0]
            if not _API_VERSION_PATTERN.match(version):
                return _azure_error(404, "Resource not found")
            return self._chat(rec, model_required=False, deployment=parts[3])
        if rec.path == "/openai/v1/chat/completions" and rec.method == "POST":
            return self._chat(rec, model_required=True, deployment=None)
        models = self._models(rec, "/openai/v1/models")
        if models is not None:
            return models
        return _azure_error(404, "Resource not found")

    def _parse_json(self, rec: RecordedRequest) -> Any:
        try:
            return json.loads(rec.body)
        except ValueError:
            if self.flavor == "tgi":
                raise _Invalid(
                    "Failed to parse the request body as JSON", status=400, error_type="validation"
                ) from None
            raise _Invalid(_OPENAI_PARSE_ERROR) from None

    def _chat(self, rec: RecordedRequest, *, model_required: bool, deployment: str | None) -> _Out:
        try:
            req = _validate_openai_chat(self._parse_json(rec), model_required=model_required)
        except _Invalid as exc:
            return _openai_error(exc.status, exc.message, param=exc.param, code=exc.code)
        model = deployment or req["model"]
        return self._render_chat(rec, req, model, _ChatSpec(None, None, None, None, None, None))

    def _completion(
        self, req: Mapping[str, Any], model: str, spec: _ChatSpec
    ) -> tuple[_Completion, bool]:
        """Build the completion for ``req``; returns it and whether to stream usage."""
        seed = next(self._ids)
        choices: list[_Choice] = []
        n = _int_or(req.get("n"), 1, lo=1, hi=128) or 1
        calls: list[dict[str, Any]] | None = None
        text = spec.text
        finish = spec.finish_reason
        if spec.tool_calls:
            calls = _normalize_tool_calls(spec.tool_calls, seed)
            finish = finish or "tool_calls"
        elif spec.text is None and isinstance(req.get("tools"), list):
            choice = req.get("tool_choice")
            tools = [t for t in req["tools"] if isinstance(t, dict) and t.get("type") == "function"]
            named = isinstance(choice, dict) and choice.get("type") == "function"
            if tools and (choice == "required" or named):
                forced = choice if isinstance(choice, dict) and named else tools[0]
                fn = forced.get("function")
                name = fn.get("name") if isinstance(fn, dict) else None
                if isinstance(name, str):
                    calls = _normalize_tool_calls([{"name": name, "arguments": "{}"}], seed)
                    # The real API reports "stop" when a specific function is forced.
                    finish = finish or ("stop" if named else "tool_calls")
        if calls is None and text is None:
            text = _default_text(req)
            limit = _int_or(req.get("max_completion_tokens"), None, lo=1)
            limit = limit or _int_or(req.get("max_tokens"), None, lo=1)
            stop = req.get("stop")
            for s in [stop] if isinstance(stop, str) else stop if isinstance(stop, list) else []:
                if isinstance(s, str) and s and s in text:
                    text = text[: text.index(s)]
            if isinstance(limit, int) and _tokens(text) > limit:
                text = text[: limit * 4]
                finish = finish or "length"
        for _ in range(n):
            choices.append(_Choice(text, calls, finish or "stop"))
        if spec.usage is not None:
            usage = dict(spec.usage)
        else:
            completion = sum(
                _tokens(c.content or "")
                + sum(_tokens(t["function"]["arguments"]) + 4 for t in c.tool_calls or ())
                for c in choices
            )
            usage = _usage(_prompt_tokens(req), completion)
        stream_options = req.get("stream_options")
        if not isinstance(stream_options, dict):
            stream_options = {}
        include_usage = (
            spec.include_usage
            if spec.include_usage is not None
            else bool(stream_options.get("include_usage"))
        )
        top = _int_or(req.get("top_logprobs"), 0, lo=0, hi=20) or 0
        completion_obj = _Completion(
            id="" if self.flavor == "tgi" else f"chatcmpl-{seed}",
            created=int(time.time()),
            model=spec.model or model,
            fingerprint=_TGI_FINGERPRINT if self.flavor == "tgi" else _OPENAI_FINGERPRINT,
            choices=choices,
            usage=usage,
            flavor=self.flavor,
            logprobs=top if req.get("logprobs") else None,
            obfuscation=self.flavor == "openai"
            and stream_options.get("include_obfuscation") is not False,
        )
        return completion_obj, include_usage

    def _render_chat(
        self,
        rec: RecordedRequest,
        req: Mapping[str, Any],
        model: str,
        spec: _ChatSpec,
        *,
        stream: bool | None = None,
    ) -> _Out:
        completion, include_usage = self._completion(req, model, spec)
        headers = self._openai_like_headers(rec, completion.usage.get("total_tokens", 0))
        if stream if stream is not None else req.get("stream") is True:
            events, done = completion.stream(include_usage)
            headers = [("Content-Type", _SSE_CT), ("Cache-Control", "no-cache"), *headers]
            if self.flavor == "tgi":
                headers.append(("X-Accel-Buffering", "no"))
            return _Out(200, headers, events=events, terminator=done)
        headers = [("Content-Type", _JSON_CT), *headers]
        return _Out(200, headers, _dumps(completion.body()))

    def _scripted_chat(self, reply: Reply, rec: RecordedRequest) -> _Out:
        if self.flavor == "anthropic":
            from chatcore.testing import anthropic_server

            return anthropic_server.scripted(self, reply, rec)
        try:
            req = json.loads(rec.body)
        except ValueError:
            req = {}
        if not isinstance(req, dict):
            req = {}
        spec = reply.chat_spec or _ChatSpec(None, None, None, None, None, None)
        model = req.get("model") if isinstance(req.get("model"), str) else None
        if self.flavor == "azure":
            parts = rec.path.split("/")
            if len(parts) > 3 and parts[1:3] == ["openai", "deployments"]:
                model = parts[3]
        if self.flavor == "tgi":
            model = self.model_list[0] if self.model_list else "tgi"
        out = self._render_chat(
            rec, req, model or "gpt-4o-mini", spec, stream=reply.kind == "chat_stream"
        )
        out.delay_between = reply.delay_between
        out.die_after = reply.die_after
        return out

    # -- TGI ---------------------------------------------------------------------------------

    def _default_tgi(self, rec: RecordedRequest) -> _Out:
        path, method = rec.path, rec.method
        try:
            if method == "POST" and path == "/v1/chat/completions":
                return self._tgi_chat(rec)
            if method == "POST" and path in ("/generate", "/generate_stream", "/"):
                return self._tgi_generate(rec, path)
            if method == "GET" and path == "/info":
                return _Out(200, [("Content-Type", _JSON_CT)], _dumps(self._tgi_info()))
            if method == "GET" and path == "/health":
                return _Out(200, [], b"")
            if method == "GET" and path == "/v1/models":
                return _Out(200, [("Content-Type", _JSON_CT)], self._models_body)
        except _Invalid as exc:
            return _tgi_error(exc.status, exc.message, exc.error_type)
        return _tgi_error(404, f"Not Found: {method} {path}", "not_found")

    def _tgi_info(self) -> dict[str, Any]:
        return {
            "model_id": self.model_list[0] if self.model_list else "tgi",
            "model_sha": "0e9e39f249a16976918f6564b8830bc894c89659",
            "model_pipeline_tag": "text-generation",
            "max_concurrent_requests": 128,
            "max_best_of": _TGI_MAX_BEST_OF,
            "max_stop_sequences": _TGI_MAX_STOP,
            "max_input_tokens": _TGI_MAX_TOTAL_TOKENS - 1,
            "max_total_tokens": _TGI_MAX_TOTAL_TOKENS,
            "validation_workers": 2,
            "max_client_batch_size": 4,
            "router": "text-generation-router",
            "version": _TGI_VERSION,
            "sha": "db931fcf42da018a3657580c64bf2720f167f9ab",
            "docker_label": "sha-db931fc",
        }

    @staticmethod
    def _deser_error(detail: str) -> _Invalid:
        return _Invalid(
            f"Failed to deserialize the JSON body into the target type: {detail}",
            status=422,
            error_type="validation",
        )

    @staticmethod
    def _tgi_invalid(message: str) -> _Invalid:
        return _Invalid(message, status=422, error_type="validation")

    def _tgi_chat(self, rec: RecordedRequest) -> _Out:
        req = self._parse_json(rec)
        if not isinstance(req, dict):
            raise self._deser_error(f"invalid type: {_describe(req)}, expected struct ChatRequest")
        messages = req.get("messages")
        if "messages" not in req:
            raise self._deser_error("missing field `messages`")
        if not isinstance(messages, list) or not messages:
            raise self._deser_error("messages: invalid type, expected a non-empty sequence")
        for i, msg in enumerate(messages):
            if not isinstance(msg, dict) or not isinstance(msg.get("role"), str):
                raise self._deser_error(f"messages[{i}]: missing field `role`")
        stop = req.get("stop")
        if stop is not None:
            if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
                raise self._deser_error(
                    f"stop: invalid type: {_describe(stop)}, expected a sequence"
                )
            if len(stop) > _TGI_MAX_STOP:
                raise self._tgi_invalid(
                    f"`stop` supports up to {_TGI_MAX_STOP} stop sequences. Given: {len(stop)}"
                )
        for name in ("temperature", "top_p", "frequency_penalty", "presence_penalty"):
            value = req.get(name)
            if value is not None and (isinstance(value, bool) or not _is_kind(value, "number")):
                raise self._deser_error(f"{name}: invalid type: {_describe(value)}, expected f32")
        top_p = req.get("top_p")
        if top_p is not None and not 0 < top_p < 1:
            raise self._tgi_invalid("`top_p` must be > 0.0 and < 1.0")
        temperature = req.get("temperature")
        if temperature is not None and temperature < 0:
            raise self._tgi_invalid("`temperature` must be strictly positive")
        if req.get("response_format") is not None and req.get("tools") is not None:
            raise _Invalid(
                "Grammar and tools are mutually exclusive", status=422, error_type="tool_error"
            )
        max_tokens = req.get("max_tokens")
        if max_tokens is not None and (not _is_kind(max_tokens, "integer") or max_tokens < 0):
            raise self._deser_error(f"max_tokens: invalid value: {max_tokens!r}, expected u32")
        model = self.model_list[0] if self.model_list else "tgi"
        spec = _ChatSpec(None, None, None, None, None, None)
        return self._render_chat(rec, req, model, spec)

    def _tgi_generate(self, rec: RecordedRequest, path: str) -> _Out:
        req = self._parse_json(rec)
        if not isinstance(req, dict):
            raise self._deser_error(
                f"invalid type: {_describe(req)}, expected struct GenerateRequest"
            )
        if "inputs" not in req:
            raise self._deser_error("missing field `inputs`")
        inputs = req["inputs"]
        if not isinstance(inputs, str):
            raise self._deser_error(f"inputs: invalid type: {_describe(inputs)}, expected a string")
        params = req.get("parameters") or {}
        if not isinstance(params, dict):
            raise self._deser_error(
                f"parameters: invalid type: {_describe(params)}, expected struct GenerateParameters"
            )
        stream = path == "/generate_stream" or (path == "/" and req.get("stream") is True)
        try:
            plan = _tgi_plan(inputs, params, stream)
        except _Invalid as exc:
            if stream and exc.message.startswith("`"):
                # TGI reports validation failures inside an already-started stream.
                event = _sse_json({"error": exc.message, "error_type": exc.error_type}, False)
                return _Out(
                    200, [("Content-Type", _SSE_CT), ("X-Accel-Buffering", "no")], events=[event]
                )
            raise
        headers = [
            ("x-compute-type", "gpu+optimized"),
            ("x-compute-time", "0.001"),
            ("x-compute-characters", str(len(inputs))),
            ("x-total-time", "1"),
            ("x-validation-time", "0"),
            ("x-queue-time", "0"),
            ("x-inference-time", "1"),
            ("x-time-per-token", "0"),
            ("x-prompt-tokens", str(plan.input_tokens)),
            ("x-generated-tokens", str(len(plan.tokens))),
        ]
        if stream:
            events = plan.stream_events()
            headers = [
                ("Content-Type", _SSE_CT),
                ("Cache-Control", "no-cache"),
                ("X-Accel-Buffering", "no"),
                *headers,
            ]
            return _Out(200, headers, events=events)
        body: object = plan.response()
        if path == "/":
            body = [body]
        return _Out(200, [("Content-Type", _JSON_CT), *headers], _dumps(body))


_TGI_PARAMS: dict[str, str] = {
    "adapter_id": "string",
    "best_of": "integer",
    "decoder_input_details": "boolean",
    "details": "boolean",
    "do_sample": "boolean",
    "frequency_penalty": "number",
    "grammar": "object",
    "max_new_tokens": "integer",
    "repetition_penalty": "number",
    "return_full_text": "boolean",
    "seed": "integer",
    "stop": "array",
    "temperature": "number",
    "top_k": "integer",
    "top_n_tokens": "integer",
    "top_p": "number",
    "truncate": "integer",
    "typical_p": "number",
    "watermark": "boolean",
}
_RUST_TYPES = {
    "string": "a string",
    "integer": "u32",
    "boolean": "a boolean",
    "number": "f32",
    "object": "struct GrammarType",
    "array": "a sequence",
}


@attrs.define
class _TgiPlan:
    generated: str
    prefix: str
    tokens: list[str]
    finish_reason: str
    seed: int | None
    details: bool
    input_tokens: int

    def _token(self, i: int, text: str) -> dict[str, Any]:
        return {"id": 1000 + i, "text": text, "logprob": -0.25, "special": False}

    def response(self) -> dict[str, Any]:
        body: dict[str, Any] = {"generated_text": self.prefix + self.generated}
        if self.details:
            body["details"] = {
                "finish_reason": self.finish_reason,
                "generated_tokens": len(self.tokens),
                "seed": self.seed,
                "prefill": [],
                "tokens": [self._token(i, t) for i, t in enumerate(self.tokens)],
            }
        return body

    def stream_events(self) -> list[bytes]:
        events = []
        last = len(self.tokens) - 1
        for i, text in enumerate(self.tokens):
            event: dict[str, Any] = {
                "index": i + 1,
                "token": self._token(i, text),
                "generated_text": None,
                "details": None,
            }
            if i == last:
                event["generated_text"] = self.prefix + self.generated
                if self.details:
                    event["details"] = {
                        "finish_reason": self.finish_reason,
                        "generated_tokens": len(self.tokens),
                        "input_length": self.input_tokens,
                        "seed": self.seed,
                    }
            events.append(_sse_json(event, False))
        return events


def _tgi_plan(inputs: str, params: Mapping[str, Any], stream: bool) -> _TgiPlan:
    """Validate TGI ``GenerateParameters`` (as ``router/src/validation.rs``) and plan a reply."""

    def invalid(message: str) -> _Invalid:
        return _Invalid(message, status=422, error_type="validation")

    def deser(message: str) -> _Invalid:
        return _Invalid(
            f"Failed to deserialize the JSON body into the target type: {message}",
            status=422,
            error_type="validation",
        )

    for key, value in params.items():
        kind = _TGI_PARAMS.get(key)
        if kind is None:
            expected = ", ".join(f"`{k}`" for k in _TGI_PARAMS)
            raise deser(f"parameters: unknown field `{key}`, expected one of {expected}")
        if value is None:
            continue
        if not _is_kind(value, kind) or (kind == "integer" and isinstance(value, float)):
            raise deser(
                f"parameters.{key}: invalid type: {_describe(value)}, expected {_RUST_TYPES[kind]}"
            )
        if kind == "integer" and value < 0:
            raise deser(f"parameters.{key}: invalid value: integer `{value}`, expected u32")
    get = params.get
    if not inputs:
        raise invalid("`inputs` cannot be empty")
    do_sample = bool(get("do_sample"))
    best_of = get("best_of")
    if best_of is not None:
        if best_of <= 0 or best_of > _TGI_MAX_BEST_OF:
            raise invalid(f"`best_of` must be > 0 and <= {_TGI_MAX_BEST_OF}. Given: {best_of}")
        if best_of > 1:
            sampling = do_sample or any(
                get(k) is not None for k in ("temperature", "top_k", "top_p", "typical_p")
            )
            if not sampling:
                raise invalid("you must use sampling when `best_of` is > 1")
            if get("seed") is not None:
                raise invalid("`seed` must not be set when `best_of` > 1")
            if stream:
                raise invalid("`best_of` != 1 is not supported when streaming tokens")
    temperature = get("temperature")
    if temperature is not None and temperature <= 0:
        raise invalid("`temperature` must be strictly positive")
    penalty = get("repetition_penalty")
    if penalty is not None and penalty <= 0:
        raise invalid("`repetition_penalty` must be strictly positive")
    freq = get("frequency_penalty")
    if freq is not None and not -2 <= freq <= 2:
        raise invalid("`frequency_penalty` must be >= -2.0 and <= 2.0")
    top_p = get("top_p")
    if top_p is not None and not 0 < top_p < 1:
        raise invalid("`top_p` must be > 0.0 and < 1.0")
    typical_p = get("typical_p")
    if typical_p is not None and not 0 < typical_p < 1:
        raise invalid("`typical_p` must be > 0.0 and < 1.0")
    top_k = get("top_k")
    if top_k is not None and top_k <= 0:
        raise invalid("`top_k` must be strictly positive")
    max_new = get("max_new_tokens")
    if max_new is not None and max_new <= 0:
        raise invalid("`max_new_tokens` must be strictly positive")
    stop = get("stop") or []
    if len(stop) > _TGI_MAX_STOP:
        raise invalid(f"`stop` supports up to {_TGI_MAX_STOP} stop sequences. Given: {len(stop)}")
    if not all(isinstance(s, str) for s in stop):
        raise deser("parameters.stop: invalid type, expected a string")
    top_n = get("top_n_tokens")
    if top_n is not None and top_n > _TGI_MAX_TOP_N:
        raise invalid(f"`top_n_tokens` must be >= 0 and <= {_TGI_MAX_TOP_N}. Given: {top_n}")
    if stream and get("decoder_input_details"):
        raise invalid("`decoder_input_details` == true is not supported when streaming tokens")
    input_tokens = max(1, _tokens(inputs))
    budget = max_new if max_new is not None else 100
    if input_tokens + budget > _TGI_MAX_TOTAL_TOKENS:
        raise invalid(
            f"`inputs` tokens + `max_new_tokens` must be <= {_TGI_MAX_TOTAL_TOKENS}. "
            f"Given: {input_tokens} `inputs` tokens and {budget} `max_new_tokens`"
        )

    tokens = _split_words(f" {STANDIN_NOTICE} You said: {inputs}")
    finish = "eos_token"
    text = "".join(tokens)
    cut = [text.index(s) + len(s) for s in stop if s and s in text]
    if cut:
        text = text[: min(cut)]
        tokens = _split_words(text)
        finish = "stop_sequence"
    if len(tokens) > budget:
        tokens = tokens[:budget]
        finish = "length"
    seed = get("seed")
    if seed is None and (do_sample or temperature is not None or top_k is not None):
        seed = 4242
    return _TgiPlan(
        generated="".join(tokens),
        prefix=inputs if get("return_full_text") else "",
        tokens=tokens,
        finish_reason=finish,
        seed=seed,
        details=bool(get("details")),
        input_tokens=input_tokens,
    )


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def main(argv: Sequence[str] | None = None) -> int:
    """Run the stand-in server until interrupted (``python -m chatcore.testing.server``)."""
    parser = argparse.ArgumentParser(
        prog="python -m chatcore.testing.server",
        description="Offline stand-in for the OpenAI, Azure OpenAI, HF router, TGI and "
        "Anthropic APIs. "
        "Replies are canned and labelled as coming from the stand-in server.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--flavor", choices=sorted(DEFAULT_MODELS), default="openai")
    parser.add_argument("--api-key", default=None, help="require this key (default: no auth)")
    parser.add_argument(
        "--allow-non-loopback",
        action="store_true",
        help="allow binding to a non-loopback address (the server has no real security)",
    )
    args = parser.parse_args(argv)
    if not args.allow_non_loopback and not _is_loopback(args.host):
        parser.error(
            f"refusing to bind to non-loopback host {args.host!r}; "
            "pass --allow-non-loopback to override"
        )

    # SIGTERM only sets an event: raising from the handler (as KeyboardInterrupt) escaped
    # main() when the signal came while the announcement was being printed.
    stopping = threading.Event()

    def _terminate(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, _terminate)
    server = StandInServer(args.host, args.port, flavor=args.flavor, api_key=args.api_key)
    server.start()
    try:
        print(
            f"chatcore stand-in server ({args.flavor}) listening on {server.url}\n"
            f"base_url: {server.base_url}",
            flush=True,
        )
        while not stopping.wait(3600):
            pass
    except KeyboardInterrupt:  # Ctrl-C
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
