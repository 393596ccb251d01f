"""One Server-Sent Events parser for every provider, and the OpenAI chunk decoder.

The parser follows the SSE specification (WHATWG) as real servers bend it: ``data:`` with or
without a space (TGI writes none), multi-line ``data``, comment and keep-alive lines, CR, LF
or CRLF line ends, events split anywhere across network reads; it is pure (bytes in, events
out), linear in the bytes received, and caps each event (``max_event_bytes``), so a hostile
stream can neither stall nor exhaust it. :func:`openai_chunks` turns the events
of an OpenAI-style stream into :class:`~chatcore.models.ChatChunk` objects: it stops at
``[DONE]``, tolerates ``choices: []`` chunks (the usage chunk, Azure's first chunk) and
unknown keys, raises :class:`~chatcore.exceptions.StreamError` on an in-band ``error`` event
and on a stream that ends without its terminator.
"""

from __future__ import annotations

import itertools
import json
import sys
from collections.abc import Generator, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import attrs

from chatcore.exceptions import (
    ConfigurationError,
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


_BOM = b"\xef\xbb\xbf"
_CR, _LF, _COLON = 13, 10, 58
#: Retry values of 10**18 ms or more are nonsense (and ``int()`` refuses 4,300+ digits).
_RETRY_DIGITS = 18


def _too_large(limit: int, what: str) -> ResponseTooLargeError:
    return ResponseTooLargeError(
        f"a stream event is over the max_event_bytes cap of {limit} bytes ({what}); reading"
        " stopped there. If the provider really sends events this large, raise the provider"
        " option max_event_bytes.",
        limit=limit,
    )


def iter_sse(chunks: Iterable[bytes], *, max_event_bytes: int | None = None) -> Iterator[SSEEvent]:
    """Parse raw bytes, split anywhere across reads, into events, in time linear in the
    bytes received. An unterminated final event is dispatched too (some servers close
    without the blank line).

    With ``max_event_bytes``, an event whose field lines add up to more than that many
    bytes (field names included, line ends and comments not), or a comment line longer
    than that, raises :class:`~chatcore.exceptions.ResponseTooLargeError` as soon as the
    cap is passed: nothing more than the cap and one read is ever held."""
    if max_event_bytes is not None and (
        isinstance(max_event_bytes, bool)
        or not isinstance(max_event_bytes, int)
        or max_event_bytes < 1
    ):
        raise ConfigurationError(
            f"max_event_bytes must be a whole number of bytes >= 1, or None for no cap;"
            f" got {max_event_bytes!r}"
        )
    return _events(chunks, sys.maxsize if max_event_bytes is None else max_event_bytes)


def _events(chunks: Iterable[bytes], limit: int) -> Iterator[SSEEvent]:
    """The parser behind :func:`iter_sse`: each read is split once (``bytes.splitlines``
    breaks at CR, LF and CRLF only); an unfinished line waits in one growing buffer."""
    data: list[bytes] = []  # the current event's data values
    event = b""  # its event name
    event_id: str | None = None  # the last event id: it persists across events
    retry: int | None = None
    size = 0  # bytes of the current event's field lines so far
    partial = bytearray()  # the start of a line whose end has not arrived (grows in place)
    pending_cr = False  # the last read ended in CR: an LF starting the next is its CRLF
    reads = iter(chunks)
    head = b""
    for piece in reads:  # the SSE spec ignores one leading BOM, whatever the read sizes
        head += piece
        if len(head) >= len(_BOM):
            break
    if head.startswith(_BOM):
        head = head[len(_BOM) :]
    # b"\n\n" at the end ends an unterminated last line and dispatches an unterminated
    # last event (an extra line end, or blank line, changes nothing)
    for chunk in itertools.chain((head,), reads, (b"\n\n",)):
        if not chunk:
            continue
        if pending_cr:
            pending_cr = False
            if chunk[0] == _LF:
                chunk = chunk[1:]
                if not chunk:
                    continue
        lines = chunk.splitlines()
        last = chunk[-1]
        if last in (_LF, _CR):
            pending_cr = last == _CR
            tail = b""
        else:
            tail = lines.pop()
        if partial and lines:
            partial += lines[0]
            lines[0] = bytes(partial)
            partial.clear()
        for line in lines:
            if not line:  # a blank line dispatches the event
                if data:
                    yield SSEEvent(
                        b"\n".join(data).decode(errors="replace"),
                        event.decode(errors="replace") if event else "message",
                        event_id,
                        retry,
                    )
                    data = []
                event, retry, size = b"", None, 0
                continue
            if line[0] == _COLON:  # a comment / keep-alive: not part of the event
                if len(line) > limit:
                    raise _too_large(limit, "a comment line is longer than that")
                continue
            size += len(line)
            if size > limit:
                raise _too_large(limit, "its lines add up to more than that")
            if line.startswith(b"data:"):
                data.append(line[6:] if line[5:6] == b" " else line[5:])
                continue
            name, _, value = line.partition(b":")
            if value[:1] == b" ":
                value = value[1:]
            if name == b"data":
                data.append(value)
            elif name == b"event":
                event = value
            elif name == b"id":
                if b"\x00" not in value:  # the SSE spec ignores an id with a NUL in it
                    event_id = value.decode(errors="replace")
            elif name == b"retry" and value.isdigit():  # ASCII digits only (SSE spec)
                digits = value.lstrip(b"0") or b"0"
                if len(digits) <= _RETRY_DIGITS:
                    retry = int(digits)
        if tail:
            partial += tail
            if partial[0] == _COLON:
                if len(partial) > limit:
                    raise _too_large(limit, "a comment line is longer than that")
            elif size + len(partial) > limit:
                raise _too_large(limit, "a line has no end within it")


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
