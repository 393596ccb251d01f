"""One Server-Sent Events parser for every provider, and the OpenAI chunk decoder.

The parser follows the SSE specification (WHATWG) as real servers bend it: ``data:`` with or
without a space (TGI writes none), multi-line ``data``, comment and keep-alive lines, CR, LF
or CRLF line ends, events split anywhere across network reads; it is pure (bytes in, events
out), linear in the bytes received, and caps each event (``max_event_bytes``), so a hostile
stream can neither stall nor exhaust it. :class:`SSEParser` is that parser fed one read at
a time (the async transport reads the bytes itself); :func:`iter_sse` runs it over an
iterable of reads. :func:`openai_chunks` turns the events of an OpenAI-style stream into
:class:`~chatcore.models.ChatChunk` objects: it stops at ``[DONE]``, tolerates
``choices: []`` chunks (the usage chunk, Azure's first chunk) and unknown keys, raises
:class:`~chatcore.exceptions.StreamError` on an in-band ``error`` event and on a stream that
ends without its terminator.
"""

from __future__ import annotations

import itertools
import json
import sys
from collections.abc import Generator, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Protocol

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
    "OpenAIStreamDecoder",
    "SSEEvent",
    "SSEParser",
    "StreamDecoder",
    "chunk_from_dict",
    "decode_events",
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


def _checked_cap(max_event_bytes: int | None) -> int:
    """The event cap as a whole number of bytes (``sys.maxsize`` for none), or
    :class:`~chatcore.exceptions.ConfigurationError`."""
    if max_event_bytes is None:
        return sys.maxsize
    if (
        isinstance(max_event_bytes, bool)
        or not isinstance(max_event_bytes, int)
        or max_event_bytes < 1
    ):
        raise ConfigurationError(
            f"max_event_bytes must be a whole number of bytes >= 1, or None for no cap;"
            f" got {max_event_bytes!r}"
        )
    return max_event_bytes


def iter_sse(chunks: Iterable[bytes], *, max_event_bytes: int | None = None) -> Iterator[SSEEvent]:
    """Parse raw bytes, split anywhere across reads, into events, in time linear in the
    bytes received. An unterminated final event is dispatched too (some servers close
    without the blank line).

    With ``max_event_bytes``, an event whose field lines add up to more than that many
    bytes (field names included, line ends and comments not), or a comment line longer
    than that, raises :class:`~chatcore.exceptions.ResponseTooLargeError` as soon as the
    cap is passed: nothing more than the cap and one read is ever held."""
    return _events(chunks, SSEParser(max_event_bytes=max_event_bytes))


def _events(chunks: Iterable[bytes], parser: SSEParser) -> Iterator[SSEEvent]:
    """:func:`iter_sse`'s generator: each read is fed to ``parser`` once it is asked for;
    a cap error is raised right after the events completed before it."""
    for chunk in chunks:
        yield from parser.feed(chunk)
        if parser.error is not None:
            raise parser.error
    yield from parser.close()


class SSEParser:
    """The incremental Server-Sent Events parser behind :func:`iter_sse`, for a caller
    that reads the bytes itself (an async transport): :meth:`feed` each read as it
    arrives, :meth:`close` at the end of the body. Pure (no I/O), linear in the bytes
    received, and what it holds is bounded by ``max_event_bytes`` plus one read.

    Each read is split once (``bytes.splitlines`` breaks at CR, LF and CRLF only); an
    unfinished line waits in one growing buffer; one leading BOM is ignored, whatever
    the read sizes.

    An event or comment line over ``max_event_bytes`` is a
    :class:`~chatcore.exceptions.ResponseTooLargeError`, raised by the :meth:`feed` whose
    read passes the cap; when that read completed events before the cap was passed,
    :meth:`feed` returns them first and the error is kept in :attr:`error`, raised by the
    next call (``feed(b"")`` raises it at once). A parser that raised stays failed."""

    __slots__ = (
        "_data",
        "_event",
        "_head",
        "_id",
        "_limit",
        "_partial",
        "_pending_cr",
        "_retry",
        "_size",
        "error",
    )

    def __init__(self, *, max_event_bytes: int | None = None) -> None:
        self._limit = _checked_cap(max_event_bytes)
        self._data: list[bytes] = []  # the current event's data values
        self._event = b""  # its event name
        self._id: str | None = None  # the last event id: it persists across events
        self._retry: int | None = None
        self._size = 0  # bytes of the current event's field lines so far
        # the start of a line whose end has not arrived (grows in place)
        self._partial = bytearray()
        # the last read ended in CR: an LF starting the next is its CRLF
        self._pending_cr = False
        # the first bytes, until there are enough to tell whether they start with a BOM
        self._head: bytes | None = b""
        #: The cap error of the last :meth:`feed`, when it returned events first.
        self.error: ResponseTooLargeError | None = None

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """The events ``chunk`` (the next read, any size, empty included) completes."""
        if self.error is not None:
            raise self.error
        head = self._head
        if head is not None:  # the SSE spec ignores one leading BOM, whatever the reads
            head += chunk
            if len(head) < len(_BOM):
                self._head = head
                return []
            self._head = None
            chunk = head[len(_BOM) :] if head.startswith(_BOM) else head
        out: list[SSEEvent] = []
        self._parse(chunk, out)
        return out

    def close(self) -> list[SSEEvent]:
        """The body ended: the events its end completes (an unterminated last line ends,
        an unterminated last event is dispatched). The parser is spent afterwards."""
        if self.error is not None:
            raise self.error
        out: list[SSEEvent] = []
        head, self._head = self._head, None
        if head:  # fewer bytes than a BOM in all: they cannot be one
            self._parse(head, out)
        # b"\n\n" at the end ends an unterminated last line and dispatches an unterminated
        # last event (an extra line end, or blank line, changes nothing)
        self._parse(b"\n\n", out)
        return out

    def _fail(self, out: list[SSEEvent], why: str) -> None:
        """Raise the cap error now, or keep it for the next call when ``out`` holds events
        completed before it (they are returned first)."""
        self.error = _too_large(self._limit, why)
        if not out:
            raise self.error

    def _parse(self, chunk: bytes, out: list[SSEEvent]) -> None:
        """Parse one read into ``out``; the state is kept in locals while it runs."""
        if not chunk:
            return
        if self._pending_cr:
            self._pending_cr = False
            if chunk[0] == _LF:
                chunk = chunk[1:]
                if not chunk:
                    return
        limit = self._limit
        data = self._data
        event = self._event
        event_id = self._id
        retry = self._retry
        size = self._size
        partial = self._partial
        dispatch = out.append
        lines = chunk.splitlines()
        last = chunk[-1]
        if last in (_LF, _CR):
            self._pending_cr = last == _CR
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
                    dispatch(
                        SSEEvent(
                            b"\n".join(data).decode(errors="replace"),
                            event.decode(errors="replace") if event else "message",
                            event_id,
                            retry,
                        )
                    )
                    data = []
                event, retry, size = b"", None, 0
                continue
            if line[0] == _COLON:  # a comment / keep-alive: not part of the event
                if len(line) > limit:
                    self._fail(out, "a comment line is longer than that")
                    return
                continue
            size += len(line)
            if size > limit:
                self._fail(out, "its lines add up to more than that")
                return
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
        self._data = data
        self._event = event
        self._id = event_id
        self._retry = retry
        self._size = size
        if tail:
            partial += tail
            if partial[0] == _COLON:
                if len(partial) > limit:
                    self._fail(out, "a comment line is longer than that")
            elif size + len(partial) > limit:
                self._fail(out, "a line has no end within it")


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


class StreamDecoder(Protocol):
    """Turns a provider's events into chunks, one event at a time, with no I/O: the core's
    transport reads the events (sync or async) and feeds them in.

    :meth:`feed` returns the chunks an event makes (often one, sometimes none) or raises a
    typed error (an in-band error event is a :class:`StreamError`); once :attr:`done` is
    true (the terminator was seen) the core stops feeding and releases the connection.
    :meth:`end` is called when the events run out before that: it returns any last chunks,
    or raises :class:`StreamError` for a stream cut short.

    The core masks the provider's secrets in a chunk when the event it came from could hold
    one. A decoder that carries text from one event into the chunks of a later one (a
    message id from a start event, accumulated reasoning) masks those chunks itself
    (:func:`chatcore._redact.mask_secrets` with the provider's secrets); the assembled
    answer is masked once more at the end in any case."""

    done: bool

    def feed(self, event: SSEEvent) -> Iterable[ChatChunk]:
        """The chunks ``event`` makes."""

    def end(self) -> Iterable[ChatChunk]:
        """The events ran out (EOF) before :attr:`done`."""


class OpenAIStreamDecoder:
    """Decodes an OpenAI-style chat stream (``chat.completion.chunk`` events ending in
    ``[DONE]``): tolerates ``choices: []`` chunks (the usage chunk, Azure's first chunk)
    and unknown keys; raises :class:`StreamError` on an in-band ``error`` event, on an
    event that is not JSON, and (with ``require_done``) on EOF before ``[DONE]``."""

    def __init__(
        self,
        *,
        provider: str,
        model: str,
        require_done: bool = True,
        secrets: Iterable[str] = (),
    ) -> None:
        self.provider = provider
        self.model = model
        self.require_done = require_done
        self.secrets = tuple(secrets)
        self.done = False
        self._text: list[str] = []

    def _error(self, message: str) -> StreamError:
        return StreamError(
            message,
            provider=self.provider,
            model=self.model,
            partial_text="".join(self._text),
            secrets=self.secrets,
        )

    def feed(self, event: SSEEvent) -> tuple[ChatChunk, ...]:
        """One chunk per ``chat.completion.chunk`` event; none for ``[DONE]``."""
        data = event.data
        if data.strip() == "[DONE]":
            self.done = True
            return ()
        if event.event == "error" and not data.lstrip().startswith("{"):
            raise self._error(f"the provider sent an error event: {data[:300]}")
        try:
            payload = json.loads(data)
        except ValueError as exc:
            raise self._error(f"a stream event is not JSON: {data[:200]!r}") from exc
        if not isinstance(payload, Mapping):
            return ()
        if payload.get("error") is not None and not payload.get("choices"):
            raise stream_error_from_event(
                payload,
                provider=self.provider,
                model=self.model,
                partial_text="".join(self._text),
                secrets=self.secrets,
            )
        chunk = chunk_from_dict(payload, provider=self.provider, fallback_model=self.model)
        content = chunk.text
        if content:
            self._text.append(content)
        return (chunk,)

    def end(self) -> tuple[ChatChunk, ...]:
        """EOF: fine without ``require_done``, else a :class:`StreamError`."""
        if self.require_done:
            raise self._error(
                "the stream ended without its [DONE] terminator (connection cut or server error)"
            )
        self.done = True
        return ()


def decode_events(
    events: Iterable[SSEEvent], decoder: StreamDecoder
) -> Generator[ChatChunk, None, None]:
    """Feed ``events`` to ``decoder`` and yield its chunks until it is done or the events
    run out (then :meth:`StreamDecoder.end`)."""
    for event in events:
        yield from decoder.feed(event)
        if decoder.done:
            return
    yield from decoder.end()


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
    decoder = OpenAIStreamDecoder(
        provider=provider, model=model, require_done=require_done, secrets=secrets
    )
    return decode_events(events, decoder)


def chunk_from_dict(
    payload: Mapping[str, Any], *, provider: str, fallback_model: str = ""
) -> ChatChunk:
    """One ``chat.completion.chunk`` payload as a :class:`ChatChunk` (lenient)."""
    choices = payload.get("choices")
    usage_data = payload.get("usage")
    usage = None
    if usage_data is not None and isinstance(usage_data, Mapping):
        try:
            usage = _lenient().structure(usage_data, Usage)
        except Exception:  # a malformed usage block must not kill the stream
            usage = None
    created = payload.get("created")
    if type(choices) is list:
        # per event: exact dicts (what json.loads makes) skip the ABC check
        kept = tuple(c for c in choices if type(c) is dict or isinstance(c, Mapping))
    else:
        kept = ()
    chunk_id = payload.get("id")
    model = payload.get("model")
    return ChatChunk(
        id=chunk_id if type(chunk_id) is str else str(chunk_id or ""),
        model=model if type(model) is str and model else str(model or fallback_model),
        choices=kept,
        created=created if type(created) is int else 0,
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
