"""One Server-Sent Events parser for every provider, and the OpenAI chunk decoder.

The parser follows the SSE specification as real servers bend it: ``data:`` with or without
a space (TGI writes none), multi-line ``data``, comment and keep-alive lines, CR, LF or CRLF
line ends, events split anywhere across network reads. :func:`openai_chunks` turns the events
of an OpenAI-style stream into :class:`~chatcore.models.ChatChunk` objects: it stops at
``[DONE]``, tolerates ``choices: []`` chunks (the usage chunk, Azure's first chunk) and
unknown keys, raises :class:`~chatcore.exceptions.StreamError` on an in-band ``error`` event
and on a stream that ends without its terminator.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Generator, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import attrs

from chatcore.exceptions import (
    ResponseTooLargeError,
    StreamError,
    parse_error_body,
    request_id_from,
)
from chatcore.models import ChatChunk, Usage, _lenient

if TYPE_CHECKING:
    from chatcore._transport import HttpTransport

__all__ = [
    "SSEEvent",
    "chunk_from_dict",
    "drain",
    "iter_sse",
    "openai_chunks",
    "stream_chat_completions",
    "stream_error_from_event",
]


@attrs.frozen
class SSEEvent:
    """One dispatched event: its ``data`` (lines joined by ``\\n``), ``event`` name, ``id``."""

    data: str
    event: str = "message"
    id: str | None = None
    retry: int | None = None


def _lines(chunks: Iterable[bytes], limit: int | None = None) -> Iterator[str]:
    """Split a byte stream into lines at CR, LF or CRLF, whatever the read boundaries;
    a line still unterminated past ``limit`` bytes raises ResponseTooLargeError."""
    buffer = b""
    pending_cr = False
    for chunk in chunks:
        if not chunk:
            continue
        if pending_cr and chunk.startswith(b"\n"):
            chunk = chunk[1:]
        pending_cr = False
        buffer += chunk
        start = 0
        length = len(buffer)
        while True:
            cr = buffer.find(b"\r", start)
            lf = buffer.find(b"\n", start)
            if cr == -1 and lf == -1:
                break
            if cr == -1 or (lf != -1 and lf < cr):
                yield buffer[start:lf].decode("utf-8", "replace")
                start = lf + 1
                continue
            yield buffer[start:cr].decode("utf-8", "replace")
            if cr + 1 < length:
                start = cr + 2 if buffer[cr + 1 : cr + 2] == b"\n" else cr + 1
            else:
                start = cr + 1
                pending_cr = True
        buffer = buffer[start:]
        if limit is not None and len(buffer) > limit:
            raise _event_too_large(limit)
    if buffer:
        yield buffer.decode("utf-8", "replace")


def _event_too_large(limit: int) -> ResponseTooLargeError:
    return ResponseTooLargeError(
        f"a stream event is larger than max_event_bytes={limit} bytes; reading stopped at the cap",
        limit=limit,
    )


def iter_sse(chunks: Iterable[bytes], *, max_event_bytes: int | None = None) -> Iterator[SSEEvent]:
    """Parse raw bytes (any split) into events. An unterminated final event is dispatched
    too (some servers close without the blank line). An event over ``max_event_bytes``
    raises :class:`~chatcore.exceptions.ResponseTooLargeError` (without provider/model:
    the transport fills them in)."""
    data: list[str] = []
    size = 0
    event = ""
    event_id: str | None = None
    retry: int | None = None
    first = True
    for line in _lines(chunks, max_event_bytes):
        if first:
            first = False
            if line.startswith("\ufeff"):  # the SSE spec ignores one leading BOM
                line = line[1:]
        if not line:
            if data:
                yield SSEEvent("\n".join(data), event or "message", event_id, retry)
            data, event, retry, size = [], "", None, 0
            continue
        if line.startswith(":"):
            continue  # comment / keep-alive
        name, sep, value = line.partition(":")
        if not sep:
            name, value = line, ""
        elif value.startswith(" "):
            value = value[1:]
        if name == "data":
            data.append(value)
            if max_event_bytes is not None:
                size += len(value) + 1
                if size > max_event_bytes:
                    raise _event_too_large(max_event_bytes)
        elif name == "event":
            event = value
        elif name == "id":
            event_id = value
        elif name == "retry":
            try:
                retry = int(value)
            except ValueError:
                pass
    if data:
        yield SSEEvent("\n".join(data), event or "message", event_id, retry)


def stream_error_from_event(
    payload: Mapping[str, Any],
    *,
    provider: str | None,
    model: str | None,
    partial_text: str = "",
    secrets: Iterable[str] = (),
) -> StreamError:
    """The :class:`StreamError` for an in-band ``{"error": ...}`` event (any provider shape)."""
    info = parse_error_body(payload)
    retryable = info.get("type") in ("overloaded", "server_error") or info.get("code") in (
        "server_error",
        "rate_limit_exceeded",
    )
    return StreamError(
        f"the provider sent an error in the stream: {info.get('message') or payload}",
        provider=provider,
        model=model,
        body=dict(payload),
        code=info.get("code"),
        error_type=info.get("type"),
        should_retry=retryable,
        partial_text=partial_text,
        secrets=secrets,
    )


def openai_chunks(
    events: Iterable[SSEEvent],
    *,
    provider: str,
    model: str,
    require_done: bool = True,
    secrets: tuple[str, ...] = (),
) -> Generator[ChatChunk, None, None]:
    """Decode an OpenAI-style chat stream; ends at ``[DONE]`` (or EOF when
    ``require_done`` is false), raises :class:`StreamError` otherwise."""
    text: list[str] = []
    for event in events:
        data = event.data
        if data.strip() == "[DONE]":
            return
        if event.event == "error" and not data.lstrip().startswith("{"):
            raise StreamError(
                f"the provider sent an error event: {data[:300]}",
                provider=provider,
                model=model,
                partial_text="".join(text),
                secrets=secrets,
            )
        try:
            payload = json.loads(data)
        except ValueError as exc:
            raise StreamError(
                f"a stream event is not JSON: {data[:200]!r}",
                provider=provider,
                model=model,
                partial_text="".join(text),
                secrets=secrets,
            ) from exc
        if not isinstance(payload, Mapping):
            continue
        if payload.get("error") is not None and not payload.get("choices"):
            raise stream_error_from_event(
                payload,
                provider=provider,
                model=model,
                partial_text="".join(text),
                secrets=secrets,
            )
        chunk = chunk_from_dict(payload, provider=provider, fallback_model=model)
        content = chunk.text
        if content:
            text.append(content)
        yield chunk
    if require_done:
        raise StreamError(
            "the stream ended without its [DONE] terminator (connection cut or server error)",
            provider=provider,
            model=model,
            partial_text="".join(text),
            secrets=secrets,
        )


def chunk_from_dict(
    payload: Mapping[str, Any], *, provider: str, fallback_model: str = ""
) -> ChatChunk:
    """One ``chat.completion.chunk`` payload as a :class:`ChatChunk` (lenient)."""
    choices = payload.get("choices")
    usage_data = payload.get("usage")
    usage = None
    if isinstance(usage_data, Mapping):
        try:
            usage = _lenient().structure(usage_data, Usage)
        except Exception:  # a malformed usage block must not kill the stream
            usage = None
    created = payload.get("created")
    return ChatChunk(
        id=str(payload.get("id") or ""),
        model=str(payload.get("model") or fallback_model),
        choices=tuple(c for c in choices if isinstance(c, Mapping))
        if isinstance(choices, list)
        else (),
        created=created if isinstance(created, int) else 0,
        usage=usage,
        provider=provider,
    )


def stream_chat_completions(
    transport: HttpTransport,
    path: str,
    body: Mapping[str, Any],
    *,
    provider: str,
    model: str,
    params: Mapping[str, str] | None = None,
    require_done: bool = True,
) -> Iterator[ChatChunk]:
    """POST an OpenAI-style streaming chat request and yield its chunks; the first chunk
    carries the answer's request id and headers. Lazy: nothing is sent before ``next()``."""
    opened: dict[str, Mapping[str, str]] = {}

    def remember(response: Any) -> None:
        opened["headers"] = response.headers

    events = transport.stream_events(
        "POST", path, json_body=body, params=params, model=model, on_open=remember
    )
    chunks = openai_chunks(
        events,
        provider=provider,
        model=model,
        require_done=require_done,
        secrets=transport.secrets,
    )
    try:
        first = True
        for chunk in chunks:
            if first:
                headers = opened.get("headers") or {}
                chunk = attrs.evolve(chunk, request_id=request_id_from(headers), headers=headers)
                first = False
            yield chunk
        drain(events)
    finally:
        chunks.close()
        events.close()


def drain(events: Iterator[SSEEvent], limit: int = 8) -> None:
    """Read what follows the terminator (the chunked body's last, empty chunk), so the
    connection goes back to the pool instead of being closed."""
    for _ in itertools.islice(events, limit):
        pass
