"""The Anthropic Messages API flavor of the stand-in server (``StandInServer(flavor="anthropic")``).

It serves ``POST /v1/messages`` (answers and event streams), ``GET /v1/models`` (paginated
with ``limit``, ``after_id``, ``before_id``) and ``GET /v1/models/{id}``, with
``x-api-key`` or ``Authorization: Bearer`` authentication, a required ``anthropic-version``
header, a ``request-id`` on every answer and the ``anthropic-ratelimit-*`` headers (resets as
RFC 3339 times). Errors have the API's shape ``{"type": "error", "error": {"type",
"message"}, "request_id"}``.

Requests are checked as the real API checks them, so that a plugin's tests catch bodies it
would refuse: a missing ``max_tokens``, unknown keys (top level, messages, blocks, tools),
malformed content blocks, a block in a role that does not take it, a ``tool_result`` outside
a user turn, not answering a ``tool_use`` of the assistant turn just before it, or after
other content; a ``tool_use`` left without its result; empty or whitespace-only text; a final
assistant message ending in whitespace; an image whose bytes are not its ``media_type``; a
``thinking`` block whose signature is not the one this server gave; the rules of extended
thinking (budget at least 1,024 and below ``max_tokens``, no forced tool use, no
``temperature`` but 1, no ``top_k``, ``top_p`` at least 0.95, and the last assistant turn of
a tool loop starting with its thinking block); more than four ``cache_control`` breakpoints;
a model that is not in the server's ``model_list`` (404 ``not_found_error``).

The default answer is ``"Hello from the chatcore stand-in server. You said: <last user
text>"`` (a JSON instance of the schema with ``output_config.format``; a ``tool_use`` with
input ``{}`` when ``tool_choice`` forces a tool; a signed ``thinking`` block first when
thinking is on), cut by ``stop_sequences`` (``stop_sequence``) and ``max_tokens``
(``max_tokens``, ``ceil(chars / 4)`` tokens a word piece). Prompt caching is simulated: the
prefix up to the last ``cache_control`` breakpoint (tools, then system, then messages; the
whole prompt with a top-level ``cache_control``) is written on its first use and read after.

Scripted replies: ``Reply.chat`` / ``Reply.chat_stream`` answer in the Messages shape (the
request is checked first); their ``finish_reason`` may be OpenAI's or Anthropic's, their
``usage`` OpenAI-shaped (``prompt_tokens``...) or Anthropic-shaped. :func:`anthropic_error`,
:func:`overloaded` and :func:`anthropic_events` build the API's errors and raw event streams.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import attrs

from chatcore._images import sniff_image_type
from chatcore.testing.server import (
    _JSON_CT,
    _SSE_CT,
    STANDIN_NOTICE,
    HeaderInput,
    RecordedRequest,
    Reply,
    _ChatSpec,
    _dumps,
    _Invalid,
    _normalize_headers,
    _Out,
    _split_words,
    _tokens,
)

if TYPE_CHECKING:
    from chatcore.testing.server import StandInServer

__all__ = [
    "ANTHROPIC_VERSIONS",
    "anthropic_error",
    "anthropic_events",
    "check_auth",
    "default",
    "overloaded",
    "scripted",
    "sign_thinking",
]

#: The ``anthropic-version`` values the stand-in accepts.
ANTHROPIC_VERSIONS = ("2023-06-01", "2023-01-01")

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}
_LIMITS = {
    "requests": 4_000,
    "tokens": 2_000_000,
    "input-tokens": 1_600_000,
    "output-tokens": 400_000,
}
_TOP_LEVEL = frozenset(
    {
        "model", "max_tokens", "messages", "system", "stop_sequences", "metadata", "tools",
        "tool_choice", "thinking", "output_config", "stream", "temperature", "top_p",
        "top_k", "service_tier", "container", "inference_geo", "cache_control",
    }
)  # fmt: skip
_BLOCK_KEYS: dict[str, frozenset[str]] = {
    "text": frozenset({"type", "text", "cache_control", "citations"}),
    "image": frozenset({"type", "source", "cache_control"}),
    "document": frozenset({"type", "source", "cache_control", "citations", "context", "title"}),
    "tool_use": frozenset({"type", "id", "name", "input", "cache_control", "caller"}),
    "tool_result": frozenset({"type", "tool_use_id", "content", "is_error", "cache_control"}),
    "thinking": frozenset({"type", "thinking", "signature"}),
    "redacted_thinking": frozenset({"type", "data"}),
    "mid_conv_system": frozenset({"type", "content", "cache_control"}),
}
_ROLE_BLOCKS = {
    "user": frozenset({"text", "image", "document", "tool_result"}),
    "assistant": frozenset({"text", "tool_use", "thinking", "redacted_thinking"}),
    "system": frozenset({"mid_conv_system"}),
}
_TOOL_KEYS = frozenset(
    {
        "name", "description", "input_schema", "cache_control", "strict", "type",
        "input_examples", "defer_loading", "allowed_callers", "eager_input_streaming",
    }
)  # fmt: skip
_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,128}$")
_SERVER_TOOL = re.compile(r"^[a-z_]+_\d{8}$")
_IMAGE_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")
_OPENAI_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "content_filter": "refusal",
}
_SIGNATURE_KEY = b"chatcore-standin-thinking"


# ---------------------------------------------------------------------------------------------
# Public reply builders


def error_body(error_type: str, message: str, request_id: str | None = None) -> dict[str, Any]:
    """The Messages API's error body."""
    body: dict[str, Any] = {"type": "error", "error": {"type": error_type, "message": message}}
    if request_id is not None:
        body["request_id"] = request_id
    return body


def anthropic_error(
    status: int,
    message: str,
    *,
    type: str | None = None,
    details: Mapping[str, Any] | None = None,
    request_id: str | None = "req_standin_error",
    headers: HeaderInput = None,
    delay: float = 0.0,
) -> Reply:
    """An error answer in the Messages API's shape; ``type`` defaults by status
    (``invalid_request_error`` for 400, ``overloaded_error`` for 529, ...), ``details`` is
    put in ``error.details`` (e.g. ``{"error_code": "enforced_spend_limit_reached"}``)."""
    kind = type or _ERROR_TYPES.get(
        status, "api_error" if status >= 500 else "invalid_request_error"
    )
    body = error_body(kind, message, request_id)
    if details is not None:
        body["error"]["details"] = dict(details)
    extra = [("request-id", request_id)] if request_id else []
    return Reply.json(body, status, [*extra, *_normalize_headers(headers)], delay=delay)


def overloaded(*, headers: HeaderInput = None, delay: float = 0.0) -> Reply:
    """HTTP 529 ``overloaded_error``, as the API answers when it is overloaded."""
    return anthropic_error(529, "Overloaded", headers=headers, delay=delay)


def frame_event(event: Mapping[str, Any] | tuple[str, Any] | str) -> bytes:
    """One Server-Sent Event of the Messages API: ``event: <type>`` and its JSON ``data``
    (a mapping's ``type`` names it; a ``(name, data)`` pair names it explicitly; a string
    is sent as the raw ``data``)."""
    if isinstance(event, tuple):
        name, data = event
        text = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
        return f"event: {name}\ndata: {text}\n\n".encode()
    if isinstance(event, str):
        return f"data: {event}\n\n".encode()
    name = str(event.get("type", "message"))
    return f"event: {name}\ndata: {json.dumps(event, separators=(',', ':'))}\n\n".encode()


def anthropic_events(
    events: Sequence[Mapping[str, Any] | tuple[str, Any] | str],
    *,
    headers: HeaderInput = None,
    delay: float = 0.0,
    delay_between: float = 0.0,
    die_after: int | None = None,
    status: int = 200,
) -> Reply:
    """A raw Messages event stream (see :func:`frame_event`), with no ``[DONE]``: the stream
    ends with its last event (``die_after=k``: the connection is cut after ``k`` events)."""
    return Reply(
        "sse",
        status=status,
        headers=_normalize_headers(headers),
        content_type=_SSE_CT,
        events=tuple(frame_event(e) for e in events),
        done=False,
        delay=delay,
        delay_between=delay_between,
        die_after=die_after,
    )


def sign_thinking(thinking: str) -> str:
    """The signature this stand-in gives a thinking text (and checks when it comes back)."""
    digest = hashlib.sha256(_SIGNATURE_KEY + thinking.encode()).digest()
    return "Sig" + base64.b64encode(digest).decode()


# ---------------------------------------------------------------------------------------------
# The server's hooks


def check_auth(srv: StandInServer, rec: RecordedRequest) -> _Out | None:
    """401 unless the request carries the server's key (``x-api-key`` or a bearer token)."""
    key = srv.api_key
    if key is None:
        return None
    given = rec.headers.get("x-api-key")
    if given == key or rec.headers.get("authorization") == f"Bearer {key}":
        return None
    if given is None and "authorization" not in rec.headers:
        return _error(srv, 401, "authentication_error", "x-api-key header is required")
    return _error(srv, 401, "authentication_error", "invalid x-api-key")


def default(srv: StandInServer, rec: RecordedRequest) -> _Out:
    """The flavor's own answer to ``rec``."""
    if rec.path == "/v1/messages" and rec.method == "POST":
        try:
            req = _checked_request(srv, rec)
        except _Invalid as exc:
            return _error(srv, exc.status, exc.error_type, exc.message)
        if req["model"] not in srv.model_list:
            return _error(srv, 404, "not_found_error", f"model: {req['model']}")
        return _render(srv, rec, req, _plan(srv, req, None))
    if rec.method == "GET" and rec.path == "/v1/models":
        return _models(srv, rec)
    if rec.method == "GET" and rec.path.startswith("/v1/models/"):
        model = rec.path[len("/v1/models/") :]
        if model in srv.model_list:
            return _Out(200, [("Content-Type", _JSON_CT)], _dumps(_model_obj(srv, model)))
        return _error(srv, 404, "not_found_error", f"model: {model}")
    return _error(srv, 404, "not_found_error", "Not Found")


def scripted(srv: StandInServer, reply: Reply, rec: RecordedRequest) -> _Out:
    """A ``Reply.chat`` / ``Reply.chat_stream`` in the Messages shape (after the checks a
    real answer passes)."""
    try:
        req = _checked_request(srv, rec)
    except _Invalid as exc:
        return _error(srv, exc.status, exc.error_type, exc.message)
    spec = reply.chat_spec or _ChatSpec(None, None, None, None, None, None)
    out = _render(srv, rec, req, _plan(srv, req, spec), stream=reply.kind == "chat_stream")
    out.delay_between = reply.delay_between
    out.die_after = reply.die_after
    return out


def _error(srv: StandInServer, status: int, error_type: str, message: str) -> _Out:
    rid = _request_id(srv)
    return _Out(
        status,
        [("Content-Type", _JSON_CT), ("request-id", rid)],
        _dumps(error_body(error_type, message, rid)),
    )


def _request_id(srv: StandInServer) -> str:
    return f"req_standin{next(srv._served):017d}"


def _rfc3339(when: float) -> str:
    return datetime.fromtimestamp(when, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _headers(srv: StandInServer, tokens: int) -> list[tuple[str, str]]:
    rid = _request_id(srv)
    n = int(rid[-8:])
    now = time.time()
    headers = [("request-id", rid), ("anthropic-organization-id", "org-standin")]
    for family, limit in _LIMITS.items():
        used = n if family == "requests" else tokens
        reset = now + (1 if family == "requests" else 6)
        headers += [
            (f"anthropic-ratelimit-{family}-limit", str(limit)),
            (f"anthropic-ratelimit-{family}-remaining", str(max(0, limit - used))),
            (f"anthropic-ratelimit-{family}-reset", _rfc3339(reset)),
        ]
    return headers


# ---------------------------------------------------------------------------------------------
# Models


def _model_obj(srv: StandInServer, model: str) -> dict[str, Any]:
    return {
        "type": "model",
        "id": model,
        "display_name": model.replace("-", " ").title(),
        "created_at": _rfc3339(srv._created),
    }


def _models(srv: StandInServer, rec: RecordedRequest) -> _Out:
    query = {k: v[-1] for k, v in rec.query.items()}
    try:
        limit = int(query.get("limit", "20"))
    except ValueError:
        limit = 0
    if not 1 <= limit <= 1000:
        return _error(srv, 400, "invalid_request_error", "limit: must be between 1 and 1000")
    ids = list(srv.model_list)
    start, end = 0, len(ids)
    if "after_id" in query and query["after_id"] in ids:
        start = ids.index(query["after_id"]) + 1
    if "before_id" in query and query["before_id"] in ids:
        end = ids.index(query["before_id"])
        start = max(start, end - limit)
    page = ids[start:end][:limit]
    body = {
        "data": [_model_obj(srv, m) for m in page],
        "has_more": start + len(page) < end,
        "first_id": page[0] if page else None,
        "last_id": page[-1] if page else None,
    }
    return _Out(200, [("Content-Type", _JSON_CT), ("request-id", _request_id(srv))], _dumps(body))


# ---------------------------------------------------------------------------------------------
# Request checks


def _invalid(message: str) -> _Invalid:
    return _Invalid(message, status=400, error_type="invalid_request_error")


def _checked_request(srv: StandInServer, rec: RecordedRequest) -> dict[str, Any]:
    version = rec.headers.get("anthropic-version")
    if version is None:
        raise _invalid("anthropic-version: header is required")
    if version not in ANTHROPIC_VERSIONS:
        raise _invalid(f"anthropic-version: {version!r} is not a valid version")
    try:
        req = json.loads(rec.body)
    except ValueError:
        raise _invalid("There was an error parsing the body of your request as JSON") from None
    if not isinstance(req, dict):
        raise _invalid("The request body must be a JSON object")
    _check_request(req)
    return req


def _kind(value: Any, kind: type | tuple[type, ...], path: str, what: str) -> None:
    if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        raise _invalid(f"{path}: Input should be {what}")
    if not isinstance(value, kind):
        raise _invalid(f"{path}: Input should be {what}")


def _keys(obj: Mapping[str, Any], allowed: frozenset[str], path: str) -> None:
    for key in obj:
        if key not in allowed:
            raise _invalid(f"{path}.{key}: Extra inputs are not permitted")


def _check_request(req: dict[str, Any]) -> None:
    _keys(req, _TOP_LEVEL, "body")
    for required in ("model", "max_tokens", "messages"):
        if required not in req:
            raise _invalid(f"{required}: Field required")
    _kind(req["model"], str, "model", "a valid string")
    _kind(req["max_tokens"], int, "max_tokens", "a valid integer")
    if req["max_tokens"] < 0:
        raise _invalid("max_tokens: Input should be greater than or equal to 0")
    for name, lo, hi in (("temperature", 0, 1), ("top_p", 0, 1)):
        if name in req:
            _kind(req[name], (int, float), name, "a valid number")
            if not lo <= req[name] <= hi:
                raise _invalid(f"{name}: Input should be between {lo} and {hi}")
    if "top_k" in req:
        _kind(req["top_k"], int, "top_k", "a valid integer")
    if "stream" in req:
        _kind(req["stream"], bool, "stream", "a valid boolean")
    if "stop_sequences" in req:
        _kind(req["stop_sequences"], list, "stop_sequences", "a valid list")
        for i, s in enumerate(req["stop_sequences"]):
            _kind(s, str, f"stop_sequences.{i}", "a valid string")
    if "metadata" in req:
        _kind(req["metadata"], dict, "metadata", "a valid dictionary")
        _keys(req["metadata"], frozenset({"user_id"}), "metadata")
        if req["metadata"].get("user_id") is not None:
            _kind(req["metadata"]["user_id"], str, "metadata.user_id", "a valid string")
    if "service_tier" in req and req["service_tier"] not in ("auto", "standard_only"):
        raise _invalid("service_tier: Input should be 'auto' or 'standard_only'")
    breakpoints = 0
    if "cache_control" in req:
        _check_cache_control(req["cache_control"], "cache_control")
        breakpoints += 1
    if "system" in req:
        system = req["system"]
        if isinstance(system, list):
            for i, block in enumerate(system):
                _check_block(block, f"system.{i}", frozenset({"text"}))
                breakpoints += "cache_control" in block
        else:
            _kind(system, str, "system", "a valid string or a list of text blocks")
    names = _check_tools(req)
    breakpoints += sum("cache_control" in t for t in req.get("tools", []))
    _check_tool_choice(req, names)
    thinking = _check_thinking(req)
    if "output_config" in req:
        _check_output_config(req["output_config"])
    breakpoints += _check_messages(req["messages"], thinking)
    if breakpoints > 4:
        raise _invalid(
            f"A maximum of 4 blocks with cache_control may be provided. Found {breakpoints}."
        )


def _check_cache_control(value: Any, path: str) -> None:
    _kind(value, dict, path, "a valid dictionary")
    _keys(value, frozenset({"type", "ttl"}), path)
    if value.get("type") != "ephemeral":
        raise _invalid(f"{path}.type: Input should be 'ephemeral'")
    if value.get("ttl", "5m") not in ("5m", "1h"):
        raise _invalid(f"{path}.ttl: Input should be '5m' or '1h'")


def _check_tools(req: Mapping[str, Any]) -> set[str]:
    names: set[str] = set()
    if "tools" not in req:
        return names
    _kind(req["tools"], list, "tools", "a valid list")
    for i, tool in enumerate(req["tools"]):
        path = f"tools.{i}"
        _kind(tool, dict, path, "a valid dictionary")
        kind = tool.get("type", "custom")
        name = tool.get("name")
        if kind not in (None, "custom") and isinstance(kind, str) and _SERVER_TOOL.match(kind):
            if isinstance(name, str):
                names.add(name)
            continue  # a server tool: its own keys
        _keys(tool, _TOOL_KEYS, path)
        if not isinstance(name, str) or not _TOOL_NAME.match(name):
            raise _invalid(f"{path}.name: String should match pattern '^[a-zA-Z0-9_-]{{1,128}}$'")
        if name in names:
            raise _invalid(f"tools: Tool names must be unique (got {name!r} twice)")
        names.add(name)
        schema = tool.get("input_schema")
        if not isinstance(schema, dict):
            raise _invalid(f"{path}.input_schema: Field required")
        if schema.get("type") != "object":
            raise _invalid(f"{path}.input_schema.type: Input should be 'object'")
        if "description" in tool:
            _kind(tool["description"], str, f"{path}.description", "a valid string")
        if "cache_control" in tool:
            _check_cache_control(tool["cache_control"], f"{path}.cache_control")
    return names


def _check_tool_choice(req: Mapping[str, Any], names: set[str]) -> None:
    if "tool_choice" not in req:
        return
    choice = req["tool_choice"]
    _kind(choice, dict, "tool_choice", "a valid dictionary")
    kind = choice.get("type")
    allowed = {
        "auto": {"type", "disable_parallel_tool_use"},
        "any": {"type", "disable_parallel_tool_use"},
        "tool": {"type", "name", "disable_parallel_tool_use"},
        "none": {"type"},
    }.get(kind)
    if allowed is None:
        raise _invalid("tool_choice.type: Input should be 'auto', 'any', 'tool' or 'none'")
    _keys(choice, frozenset(allowed), "tool_choice")
    if kind in ("any", "tool") and not names:
        raise _invalid("tool_choice: tool_choice forces tool use, but no tools were provided")
    if kind == "tool" and choice.get("name") not in names:
        raise _invalid(f"tool_choice.name: Tool {choice.get('name')!r} not found in tools")


def _check_thinking(req: Mapping[str, Any]) -> bool:
    """Check ``thinking`` and the rules that go with it; whether thinking is on."""
    if "thinking" not in req:
        return False
    thinking = req["thinking"]
    _kind(thinking, dict, "thinking", "a valid dictionary")
    kind = thinking.get("type")
    allowed = {
        "enabled": {"type", "budget_tokens", "display"},
        "adaptive": {"type", "display"},
        "disabled": {"type"},
    }.get(kind)
    if allowed is None:
        raise _invalid("thinking.type: Input should be 'enabled', 'adaptive' or 'disabled'")
    _keys(thinking, frozenset(allowed), "thinking")
    if kind == "disabled":
        return False
    if kind == "enabled":
        budget = thinking.get("budget_tokens")
        _kind(budget, int, "thinking.budget_tokens", "a valid integer")
        if budget < 1024:
            raise _invalid("thinking.budget_tokens: Input should be greater than or equal to 1024")
        if budget >= req["max_tokens"]:
            raise _invalid("`max_tokens` must be greater than `thinking.budget_tokens`")
    choice = req.get("tool_choice")
    if isinstance(choice, dict) and choice.get("type") in ("any", "tool"):
        raise _invalid("Thinking may not be enabled when tool_choice forces tool use.")
    if req.get("temperature", 1) != 1:
        raise _invalid("`temperature` may only be set to 1 when thinking is enabled.")
    if "top_k" in req:
        raise _invalid("`top_k` may not be set when thinking is enabled.")
    if req.get("top_p", 1) < 0.95:
        raise _invalid("`top_p` must be greater than or equal to 0.95 when thinking is enabled.")
    return True


def _check_output_config(config: Any) -> None:
    _kind(config, dict, "output_config", "a valid dictionary")
    _keys(config, frozenset({"effort", "format"}), "output_config")
    effort = config.get("effort")
    if effort is not None and effort not in ("low", "medium", "high", "xhigh", "max"):
        raise _invalid("output_config.effort: Input should be 'low', 'medium', 'high', ...")
    fmt = config.get("format")
    if fmt is not None:
        _kind(fmt, dict, "output_config.format", "a valid dictionary")
        _keys(fmt, frozenset({"type", "schema"}), "output_config.format")
        if fmt.get("type") != "json_schema" or not isinstance(fmt.get("schema"), dict):
            raise _invalid("output_config.format: expected {type: json_schema, schema: {...}}")


def _check_messages(messages: Any, thinking: bool) -> int:
    """Check the messages; the number of ``cache_control`` breakpoints in them."""
    _kind(messages, list, "messages", "a valid list")
    if not messages:
        raise _invalid("messages: at least one message is required")
    breakpoints = 0
    previous_tool_uses: set[str] = set()
    last = len(messages) - 1
    for i, message in enumerate(messages):
        path = f"messages.{i}"
        _kind(message, dict, path, "a valid dictionary")
        _keys(message, frozenset({"role", "content"}), path)
        role = message.get("role")
        if role not in _ROLE_BLOCKS:
            raise _invalid(f"{path}.role: Input should be 'user', 'assistant' or 'system'")
        if "content" not in message:
            raise _invalid(f"{path}.content: Field required")
        content = message["content"]
        final_assistant = i == last and role == "assistant"
        if isinstance(content, str):
            if not content.strip() and not (final_assistant and content == ""):
                raise _invalid(
                    f"{path}: all messages must have non-empty content except for the "
                    "optional final assistant message"
                )
            blocks: list[Any] = [{"type": "text", "text": content}] if content else []
        else:
            _kind(content, list, f"{path}.content", "a valid string or a list of blocks")
            if not content and not final_assistant:
                raise _invalid(
                    f"{path}: all messages must have non-empty content except for the "
                    "optional final assistant message"
                )
            blocks = content
            for j, block in enumerate(blocks):
                _check_block(block, f"{path}.content.{j}", _ROLE_BLOCKS[role])
                breakpoints += "cache_control" in block
        results = [b for b in blocks if b.get("type") == "tool_result"]
        if results:
            ids = [b.get("tool_use_id") for b in results]
            if blocks[: len(results)] != results:
                raise _invalid(
                    f"{path}: tool_result blocks must come first in the content, before any "
                    "other block"
                )
            stray = [t for t in ids if t not in previous_tool_uses]
            if stray:
                raise _invalid(
                    f"{path}.content: unexpected `tool_use_id` found in `tool_result` blocks: "
                    f"{stray[0]}. Each `tool_result` block must have a corresponding "
                    "`tool_use` block in the previous message."
                )
        if previous_tool_uses:
            answered = {b.get("tool_use_id") for b in results}
            missing = sorted(previous_tool_uses - answered)
            if missing:
                raise _invalid(
                    f"messages.{i - 1}: `tool_use` ids were found without `tool_result` blocks "
                    f"immediately after: {', '.join(missing)}. Each `tool_use` block must have "
                    "a corresponding `tool_result` block in the next message."
                )
        uses = [b for b in blocks if b.get("type") == "tool_use"] if role == "assistant" else []
        previous_tool_uses = {b["id"] for b in uses}
        if final_assistant and blocks:
            text = blocks[-1].get("text")
            if isinstance(text, str) and text != text.rstrip():
                raise _invalid("final assistant content cannot end with trailing whitespace")
    if thinking:
        _check_thinking_turn(messages)
    return breakpoints


def _check_thinking_turn(messages: list[Any]) -> None:
    """With thinking on, a tool loop's last assistant turn must start with its thinking."""
    if len(messages) < 2 or messages[-1].get("role") != "user":
        return
    content = messages[-1]["content"]
    if not isinstance(content, list) or not any(b.get("type") == "tool_result" for b in content):
        return
    assistant = messages[-2]
    blocks = assistant.get("content")
    first = blocks[0].get("type") if isinstance(blocks, list) and blocks else "text"
    if assistant.get("role") == "assistant" and first not in ("thinking", "redacted_thinking"):
        raise _invalid(
            f"messages.{len(messages) - 2}.content.0.type: Expected `thinking` or "
            f"`redacted_thinking`, but found `{first}`. When `thinking` is enabled, a final "
            "`assistant` message must start with a thinking block."
        )


def _check_block(block: Any, path: str, allowed: frozenset[str]) -> None:
    _kind(block, dict, path, "a valid dictionary")
    kind = block.get("type")
    if kind not in _BLOCK_KEYS:
        raise _invalid(f"{path}.type: Input tag {kind!r} found using 'type' does not match any")
    if kind not in allowed:
        raise _invalid(f"{path}: a `{kind}` block is not allowed in this message")
    _keys(block, _BLOCK_KEYS[kind], path)
    if "cache_control" in block:
        _check_cache_control(block["cache_control"], f"{path}.cache_control")
    if kind == "text":
        text = block.get("text")
        _kind(text, str, f"{path}.text", "a valid string")
        if not text.strip():
            raise _invalid(f"{path}: text content blocks must contain non-whitespace text")
    elif kind == "image":
        _check_image(block.get("source"), f"{path}.source")
    elif kind == "document":
        _check_document(block.get("source"), f"{path}.source")
    elif kind == "tool_use":
        _kind(block.get("id"), str, f"{path}.id", "a valid string")
        _kind(block.get("name"), str, f"{path}.name", "a valid string")
        _kind(block.get("input"), dict, f"{path}.input", "a valid dictionary")
    elif kind == "tool_result":
        _kind(block.get("tool_use_id"), str, f"{path}.tool_use_id", "a valid string")
        if "is_error" in block:
            _kind(block["is_error"], bool, f"{path}.is_error", "a valid boolean")
        content = block.get("content")
        if isinstance(content, list):
            for k, inner in enumerate(content):
                _check_block(inner, f"{path}.content.{k}", frozenset({"text", "image", "document"}))
        elif content is not None:
            _kind(content, str, f"{path}.content", "a valid string or a list of blocks")
    elif kind == "thinking":
        thinking, signature = block.get("thinking"), block.get("signature")
        _kind(thinking, str, f"{path}.thinking", "a valid string")
        _kind(signature, str, f"{path}.signature", "a valid string")
        if signature != sign_thinking(thinking):
            raise _invalid(f"{path}: Invalid `signature` in `thinking` block")
    elif kind == "redacted_thinking":
        _kind(block.get("data"), str, f"{path}.data", "a valid string")
    elif kind == "mid_conv_system":
        content = block.get("content")
        _kind(content, list, f"{path}.content", "a valid list")
        if not content:
            raise _invalid(f"{path}.content: List should have at least 1 item")
        for k, inner in enumerate(content):
            _check_block(inner, f"{path}.content.{k}", frozenset({"text"}))


def _check_image(source: Any, path: str) -> None:
    _kind(source, dict, path, "a valid dictionary")
    kind = source.get("type")
    if kind == "url":
        _keys(source, frozenset({"type", "url"}), path)
        _kind(source.get("url"), str, f"{path}.url", "a valid string")
        return
    if kind != "base64":
        raise _invalid(f"{path}.type: Input should be 'base64' or 'url'")
    _keys(source, frozenset({"type", "media_type", "data"}), path)
    media_type = source.get("media_type")
    if media_type not in _IMAGE_TYPES:
        raise _invalid(
            f"{path}.media_type: Input should be 'image/jpeg', 'image/png', 'image/gif' or "
            "'image/webp'"
        )
    data = _base64(source.get("data"), f"{path}.data")
    actual = sniff_image_type(data)
    if actual != media_type:
        raise _invalid(
            f"{path}: The image was specified using the {media_type} media type, but the image "
            f"appears to be {'a ' + actual if actual else 'an unsupported'} image"
        )


def _check_document(source: Any, path: str) -> None:
    _kind(source, dict, path, "a valid dictionary")
    kind = source.get("type")
    if kind == "base64":
        _keys(source, frozenset({"type", "media_type", "data"}), path)
        if source.get("media_type") != "application/pdf":
            raise _invalid(f"{path}.media_type: Input should be 'application/pdf'")
        if not _base64(source.get("data"), f"{path}.data").startswith(b"%PDF-"):
            raise _invalid(f"{path}: The PDF specified was not valid.")
    elif kind == "text":
        _keys(source, frozenset({"type", "media_type", "data"}), path)
        if source.get("media_type") != "text/plain":
            raise _invalid(f"{path}.media_type: Input should be 'text/plain'")
        _kind(source.get("data"), str, f"{path}.data", "a valid string")
    elif kind == "url":
        _keys(source, frozenset({"type", "url"}), path)
        _kind(source.get("url"), str, f"{path}.url", "a valid string")
    else:
        raise _invalid(f"{path}.type: Input should be 'base64', 'text' or 'url'")


def _base64(data: Any, path: str) -> bytes:
    _kind(data, str, path, "a valid string")
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise _invalid(f"{path}: invalid base64 data") from None


# ---------------------------------------------------------------------------------------------
# Answers


@attrs.define
class _Plan:
    """What the answer holds: its content blocks, why it stopped, and its usage."""

    id: str
    model: str
    blocks: list[dict[str, Any]]
    stop_reason: str
    stop_sequence: str | None
    usage: dict[str, Any]


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            b["text"] for b in content if isinstance(b, dict) and isinstance(b.get("text"), str)
        )
    return ""


def _last_user_text(req: Mapping[str, Any]) -> str:
    for message in reversed(req["messages"]):
        if message.get("role") == "user":
            text = _text_of(message.get("content"))
            if text:
                return text
    return ""


def _segments(req: Mapping[str, Any]) -> list[tuple[dict[str, Any], int]]:
    """The cacheable prompt in the API's order (tools, system, message blocks): each block
    and its tokens."""
    out: list[tuple[dict[str, Any], int]] = []
    for tool in req.get("tools", []):
        out.append((tool, _tokens(json.dumps(tool))))
    system = req.get("system")
    blocks = [{"type": "text", "text": system}] if isinstance(system, str) else system or []
    for block in blocks:
        out.append((block, _tokens(block.get("text", ""))))
    for message in req["messages"]:
        content = message["content"]
        blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content
        for block in blocks:
            kind = block.get("type")
            if kind == "text":
                size = _tokens(block["text"])
            elif kind in ("image", "document"):
                size = 100
            elif kind == "tool_result":
                size = _tokens(_text_of(block.get("content"))) + 4
            elif kind == "tool_use":
                size = _tokens(json.dumps(block.get("input"))) + 4
            else:
                size = _tokens(json.dumps(block))
            out.append((block, size))
    return out


def _prompt_usage(srv: StandInServer, req: Mapping[str, Any]) -> dict[str, Any]:
    segments = _segments(req)
    total = sum(size for _, size in segments) + 3 * len(req["messages"])
    marks = [i for i, (block, _) in enumerate(segments) if "cache_control" in block]
    if "cache_control" in req and segments:
        marks.append(len(segments) - 1)
    written = read = 0
    if marks:
        end = max(marks) + 1
        prefix = [{k: v for k, v in b.items() if k != "cache_control"} for b, _ in segments[:end]]
        key = hashlib.sha256(
            json.dumps([req["model"], prefix], sort_keys=True).encode()
        ).hexdigest()
        cached = sum(size for _, size in segments[:end])
        with srv._lock:
            seen: set[str] = srv._flavor_state.setdefault("anthropic_cache", set())
            if key in seen:
                read = cached
            else:
                seen.add(key)
                written = cached
    return {
        "input_tokens": total - written - read,
        "cache_creation_input_tokens": written,
        "cache_read_input_tokens": read,
    }


def _instance(schema: Any, depth: int = 0) -> Any:
    """A small value of a JSON schema (the stand-in's "structured output")."""
    if not isinstance(schema, Mapping) or depth > 8:
        return None
    for key in ("const",):
        if key in schema:
            return schema[key]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    for key in ("anyOf", "oneOf"):
        options = schema.get(key)
        if isinstance(options, list) and options:
            return _instance(options[0], depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        props = schema.get("properties")
        props = props if isinstance(props, Mapping) else {}
        required = schema.get("required")
        names = required if isinstance(required, list) else []
        return {n: _instance(props.get(n), depth + 1) for n in names}
    if kind == "array":
        return []
    return {"string": "stand-in", "integer": 0, "number": 0, "boolean": False}.get(str(kind))


def _plan(srv: StandInServer, req: Mapping[str, Any], spec: _ChatSpec | None) -> _Plan:
    seed = next(srv._ids)
    blocks: list[dict[str, Any]] = []
    thinking = req.get("thinking", {}).get("type") in ("enabled", "adaptive")
    stop_reason = "end_turn"
    stop_sequence = None
    if thinking:  # a scripted answer thinks too: the API puts the thinking first
        thought = f"The stand-in considers: {_last_user_text(req)[:200]}"
        blocks.append(
            {"type": "thinking", "thinking": thought, "signature": sign_thinking(thought)}
        )
    calls = list(spec.tool_calls or ()) if spec is not None else []
    text = spec.text if spec is not None else None
    choice = req.get("tool_choice")
    if not calls and text is None and isinstance(choice, dict):
        if choice.get("type") == "any" and req.get("tools"):
            calls = [{"name": req["tools"][0]["name"], "arguments": {}}]
        elif choice.get("type") == "tool":
            calls = [{"name": choice["name"], "arguments": {}}]
    if calls:
        stop_reason = "tool_use"
    if text is None and not calls:
        fmt = req.get("output_config", {}).get("format")
        if isinstance(fmt, Mapping):
            text = json.dumps(_instance(fmt.get("schema")))
        else:
            text = f"{STANDIN_NOTICE} You said: {_last_user_text(req)}"
        for s in req.get("stop_sequences", []):
            if s and s in text:
                text, stop_reason, stop_sequence = text[: text.index(s)], "stop_sequence", s
                break
        pieces, used = [], sum(_tokens(b["thinking"]) for b in blocks)
        for piece in _split_words(text):
            if used + _tokens(piece) > req["max_tokens"]:
                stop_reason, stop_sequence = "max_tokens", None
                break
            pieces.append(piece)
            used += _tokens(piece)
        text = "".join(pieces)
    if text:
        blocks.append({"type": "text", "text": text})
    for i, call in enumerate(calls):
        if "function" in call:
            name, arguments = call["function"]["name"], call["function"].get("arguments", "{}")
        else:
            name, arguments = call["name"], call.get("arguments", {})
        value = json.loads(arguments) if isinstance(arguments, str) else arguments
        cid = call.get("id") or f"toolu_standin{seed:06d}{i:02d}"
        blocks.append({"type": "tool_use", "id": cid, "name": name, "input": value or {}})
    if spec is not None and spec.finish_reason is not None:
        stop_reason = _OPENAI_REASONS.get(spec.finish_reason, spec.finish_reason)
    usage = _prompt_usage(srv, req)
    output = sum(
        _tokens(b.get("text") or b.get("thinking") or json.dumps(b.get("input", "")))
        for b in blocks
    )
    usage["output_tokens"] = output
    thinking_tokens = sum(_tokens(b["thinking"]) for b in blocks if b["type"] == "thinking")
    if thinking_tokens:
        usage["output_tokens_details"] = {"thinking_tokens": thinking_tokens}
    if spec is not None and spec.usage is not None:
        given = dict(spec.usage)
        if "prompt_tokens" in given or "completion_tokens" in given:
            given = {
                "input_tokens": given.get("prompt_tokens", 0),
                "output_tokens": given.get("completion_tokens", 0),
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
            }
        usage = given
    model = (spec.model if spec is not None else None) or req["model"]
    return _Plan(f"msg_standin{seed:013d}", model, blocks, stop_reason, stop_sequence, usage)


def _message(plan: _Plan) -> dict[str, Any]:
    return {
        "id": plan.id,
        "type": "message",
        "role": "assistant",
        "model": plan.model,
        "content": plan.blocks,
        "stop_reason": plan.stop_reason,
        "stop_sequence": plan.stop_sequence,
        "usage": plan.usage,
    }


def _events(plan: _Plan) -> list[bytes]:
    start_usage = {k: v for k, v in plan.usage.items() if k != "output_tokens_details"}
    start_usage["output_tokens"] = min(1, int(plan.usage.get("output_tokens", 0)))
    start = {**_message(plan), "content": [], "stop_reason": None, "stop_sequence": None}
    start["usage"] = start_usage
    events: list[dict[str, Any]] = [{"type": "message_start", "message": start}]
    for index, block in enumerate(plan.blocks):
        kind = block["type"]
        if kind == "text":
            opening: dict[str, Any] = {"type": "text", "text": ""}
            deltas = [{"type": "text_delta", "text": p} for p in _split_words(block["text"])]
        elif kind == "thinking":
            opening = {"type": "thinking", "thinking": "", "signature": ""}
            deltas = [
                {"type": "thinking_delta", "thinking": p} for p in _split_words(block["thinking"])
            ]
            deltas.append({"type": "signature_delta", "signature": block["signature"]})
        else:
            opening = {**block, "input": {}}
            raw = json.dumps(block["input"])
            half = len(raw) // 2
            deltas = [
                {"type": "input_json_delta", "partial_json": part}
                for part in (raw[:half], raw[half:])
                if raw != "{}"
            ]
        events.append({"type": "content_block_start", "index": index, "content_block": opening})
        if index == 0:
            events.append({"type": "ping"})
        events += [{"type": "content_block_delta", "index": index, "delta": d} for d in deltas]
        events.append({"type": "content_block_stop", "index": index})
    final_usage: dict[str, Any] = {"output_tokens": plan.usage.get("output_tokens", 0)}
    for key in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"):
        if key in plan.usage:
            final_usage[key] = plan.usage[key]
    if "output_tokens_details" in plan.usage:
        final_usage["output_tokens_details"] = plan.usage["output_tokens_details"]
    delta = {"stop_reason": plan.stop_reason, "stop_sequence": plan.stop_sequence}
    events.append({"type": "message_delta", "delta": delta, "usage": final_usage})
    events.append({"type": "message_stop"})
    return [frame_event(e) for e in events]


def _render(
    srv: StandInServer,
    rec: RecordedRequest,
    req: Mapping[str, Any],
    plan: _Plan,
    *,
    stream: bool | None = None,
) -> _Out:
    tokens = sum(v for k, v in plan.usage.items() if isinstance(v, int))
    headers = _headers(srv, tokens)
    if stream if stream is not None else req.get("stream") is True:
        head = [("Content-Type", _SSE_CT), ("Cache-Control", "no-cache"), *headers]
        return _Out(200, head, events=_events(plan))
    return _Out(200, [("Content-Type", _JSON_CT), *headers], _dumps(_message(plan)))
