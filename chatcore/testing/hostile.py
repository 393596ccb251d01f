"""A hostile HTTP server for tests: raw sockets, answers no well-behaved server gives.

:class:`HostileServer` binds a loopback address (``127.0.0.1`` by default; ``127.0.0.2``
serves as a second origin) and answers every request with the next scripted
:class:`Hostile` answer (or its ``default``): redirects, bodies dripped a byte at a time
(head included, if asked), gzip bombs, oversized bodies and events, event streams sent
without chunked framing in two stages, or any raw answer. It records every request it
reads (:attr:`HostileServer.requests`) and whether each answer was sent in full, so a test
can say what the client sent, to whom, and how much it read.

It has the attributes a conformance check needs from a server (``url``, ``base_url``,
``host``, ``port``), so ``provider_options(server)`` works with it as with
:class:`~chatcore.testing.server.StandInServer`. Only the standard library and ``attrs``.
"""

from __future__ import annotations

import collections
import contextlib
import json
import socket
import threading
import zlib
from collections.abc import Iterator, Mapping
from typing import BinaryIO, Literal

import attrs

__all__ = ["Hostile", "HostileServer", "SeenRequest", "loopback_available"]

Framing = Literal["length", "chunked", "close"]
_JSON = "application/json"
_SSE = "text/event-stream"


def _chat_body(text: str = "Hello from a hostile server") -> bytes:
    return json.dumps(
        {
            "id": "chatcmpl-hostile",
            "object": "chat.completion",
            "created": 1700000000,
            "model": "gpt-4o-mini",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }
    ).encode()


def _chunk_event(text: str) -> bytes:
    payload = {
        "id": "chatcmpl-hostile",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "gpt-4o-mini",
        "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}],
    }
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


@attrs.frozen
class SeenRequest:
    """A request the hostile server read: method, path (with query), headers (lowercased
    names), body."""

    method: str
    path: str
    headers: Mapping[str, str]
    body: bytes


@attrs.frozen
class Hostile:
    """One scripted hostile answer; build it with the classmethods."""

    kind: str
    status: int = 200
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    parts: tuple[bytes, ...] = ()
    size: int = 0
    interval: float = 0.0
    drip_head: bool = False
    framing: Framing = "length"
    content_type: str = _JSON
    stage_wait: float = 10.0

    @classmethod
    def answer(
        cls,
        body: bytes | str,
        *,
        status: int = 200,
        content_type: str = _JSON,
        headers: Mapping[str, str] | None = None,
        framing: Framing = "length",
    ) -> Hostile:
        """Exactly this answer, framed by Content-Length, chunked encoding or the close."""
        data = body.encode() if isinstance(body, str) else body
        return cls(
            "answer",
            status=status,
            body=data,
            content_type=content_type,
            headers=tuple((headers or {}).items()),
            framing=framing,
        )

    @classmethod
    def redirect(cls, location: str, status: int = 307) -> Hostile:
        """A redirect to ``location`` (absolute, or a path on this server)."""
        return cls("answer", status=status, headers=(("Location", location),), content_type="")

    @classmethod
    def chat(cls) -> Hostile:
        """A valid ``chat.completion`` answer (for redirect targets)."""
        return cls.answer(_chat_body())

    @classmethod
    def drip(cls, *, interval: float = 0.5, head: bool = False, stream: bool = False) -> Hostile:
        """A valid chat answer (``stream``: an event stream) sent one byte every
        ``interval`` seconds; with ``head``, the status line and headers too."""
        body = _chunk_event("drip") + b"data: [DONE]\n\n" if stream else _chat_body()
        return cls(
            "drip",
            body=body,
            interval=interval,
            drip_head=head,
            content_type=_SSE if stream else _JSON,
        )

    @classmethod
    def gzip_bomb(cls, inflated: int, *, stream: bool = False, level: int = 1) -> Hostile:
        """A gzip body that inflates to ``inflated`` bytes (zeros, or ``data: 000...`` with
        no newline as a stream), compressed at ``level`` as it is sent (level 1: about
        4.5 MB a GiB, more than socket buffers hold; level 9: about 1 MB a GiB)."""
        return cls("gzip", size=inflated, content_type=_SSE if stream else _JSON, interval=level)

    @classmethod
    def huge(cls, size: int, *, stream: bool = False, framing: Framing = "close") -> Hostile:
        """A plain body of ``size`` bytes (``stream``: one event line without a newline)."""
        return cls("huge", size=size, content_type=_SSE if stream else _JSON, framing=framing)

    @classmethod
    def staged_stream(cls, *, framing: Framing = "close", wait: float = 10.0) -> Hostile:
        """An OpenAI event stream without chunked encoding (``framing`` "close" or
        "length"): the first event, then nothing until :meth:`HostileServer.release` (or
        ``wait`` seconds), then the rest and ``[DONE]``."""
        first = _chunk_event("first")
        rest = _chunk_event(" second") + b"data: [DONE]\n\n"
        return cls(
            "staged",
            parts=(first, rest),
            framing=framing,
            content_type=_SSE,
            stage_wait=wait,
        )


def loopback_available(host: str) -> bool:
    """True when ``host`` (e.g. ``127.0.0.2``) can be bound on this machine."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind((host, 0))
    except OSError:
        return False
    return True


class HostileServer:
    """A raw-socket server on a loopback address answering with :class:`Hostile` answers.

    ``with HostileServer(default=Hostile.redirect("/v1/chat/completions")) as srv: ...``
    """

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, *, default: Hostile | None = None
    ) -> None:
        self.default = default if default is not None else Hostile.chat()
        self._queue: collections.deque[Hostile] = collections.deque()
        self._lock = threading.Lock()
        self._requests: list[SeenRequest] = []
        self._completed = 0
        #: True once a staged stream sent its rest because nobody released it in time.
        self.stage_timed_out = False
        self._stopping = threading.Event()
        self._released = threading.Event()
        self._conns: set[socket.socket] = set()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, port))
        self._sock.listen(64)
        self.host, self.port = self._sock.getsockname()[:2]
        self._thread = threading.Thread(target=self._accept, name="hostile-server", daemon=True)

    # -- lifecycle and script -----------------------------------------------------------

    @property
    def url(self) -> str:
        """``http://host:port``."""
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """``http://host:port/v1`` (an OpenAI-style base URL)."""
        return f"{self.url}/v1"

    def start(self) -> HostileServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._released.set()
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept() on Linux
        with contextlib.suppress(OSError):
            self._sock.close()
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        self._thread.join(5)

    def __enter__(self) -> HostileServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def enqueue(self, *answers: Hostile) -> None:
        """Answer the next requests with these, in order (then :attr:`default`)."""
        with self._lock:
            self._queue.extend(answers)

    def release(self) -> None:
        """Let a staged stream send the rest of its events."""
        self._released.set()

    @property
    def requests(self) -> list[SeenRequest]:
        """Every request read so far."""
        with self._lock:
            return list(self._requests)

    @property
    def completed(self) -> int:
        """How many answers were sent in full (a client that stopped reading one early
        leaves it incomplete)."""
        with self._lock:
            return self._completed

    # -- serving --------------------------------------------------------------------------

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            with self._lock:
                self._conns.add(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        reader = conn.makefile("rb")
        try:
            while not self._stopping.is_set():
                seen = self._read_request(reader)
                if seen is None:
                    return
                with self._lock:
                    self._requests.append(seen)
                    answer = self._queue.popleft() if self._queue else self.default
                if not self._play(conn, answer):
                    return
                with self._lock:
                    self._completed += 1
                if answer.framing == "close" or answer.kind != "answer":
                    return
        except OSError:
            return  # the client went away: what it read is what the test checks
        finally:
            with self._lock:
                self._conns.discard(conn)
            with contextlib.suppress(OSError):
                reader.close()
                conn.close()

    @staticmethod
    def _read_request(reader: BinaryIO) -> SeenRequest | None:
        readline = reader.readline
        line = readline(65537)
        if not line:
            return None
        method, _, rest = line.decode("latin-1").partition(" ")
        path = rest.rsplit(" ", 1)[0]
        headers: dict[str, str] = {}
        while True:
            header = readline(65537)
            if header in (b"\r\n", b"\n", b""):
                break
            name, _, value = header.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0") or 0)
        body = reader.read(length) if length else b""
        return SeenRequest(method, path, headers, body)

    def _head(self, answer: Hostile, extra: list[tuple[str, str]]) -> bytes:
        lines = [f"HTTP/1.1 {answer.status} Hostile\r\n"]
        headers = list(answer.headers)
        if answer.content_type:
            headers.append(("Content-Type", answer.content_type))
        headers.extend(extra)
        if answer.framing == "close" and answer.kind != "answer":
            headers.append(("Connection", "close"))
        lines.extend(f"{k}: {v}\r\n" for k, v in headers)
        lines.append("\r\n")
        return "".join(lines).encode("latin-1")

    def _play(self, conn: socket.socket, answer: Hostile) -> bool:
        """Send ``answer``; False when the connection must close afterwards."""
        kind = answer.kind
        if kind == "answer":
            return self._play_answer(conn, answer)
        if kind == "drip":
            head = self._head(answer, [("Content-Length", str(len(answer.body)))])
            data = head + answer.body if answer.drip_head else answer.body
            if not answer.drip_head:
                conn.sendall(head)
            for i in range(len(data)):
                if self._stopping.wait(answer.interval):
                    return False
                conn.sendall(data[i : i + 1])
            return True
        if kind == "gzip":
            conn.sendall(self._head(answer, [("Content-Encoding", "gzip")]))
            stream = answer.content_type == _SSE
            for piece in _gzip_pieces(answer.size, stream=stream, level=int(answer.interval)):
                conn.sendall(piece)
            return True
        if kind == "huge":
            conn.sendall(self._head(answer, self._length(answer, answer.size)))
            block = b"0" * (1 << 20)
            left = answer.size
            if answer.content_type == _SSE:
                conn.sendall(b"data: ")
                left -= 6
            while left > 0:
                conn.sendall(block[:left])
                left -= len(block)
            return True
        if kind == "staged":
            first, rest = answer.parts
            total = len(first) + len(rest)
            conn.sendall(self._head(answer, self._length(answer, total)) + first)
            if not self._released.wait(answer.stage_wait):
                self.stage_timed_out = True
            conn.sendall(rest)
            if answer.framing == "close":
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_WR)
            return True
        raise ValueError(f"unknown hostile answer kind {kind!r}")

    @staticmethod
    def _length(answer: Hostile, size: int) -> list[tuple[str, str]]:
        return [("Content-Length", str(size))] if answer.framing == "length" else []

    def _play_answer(self, conn: socket.socket, answer: Hostile) -> bool:
        body = answer.body
        if answer.framing == "chunked":
            framed = (b"%x\r\n%s\r\n" % (len(body), body) if body else b"") + b"0\r\n\r\n"
            conn.sendall(self._head(answer, [("Transfer-Encoding", "chunked")]) + framed)
            return True
        extra = [("Content-Length", str(len(body)))] if answer.framing == "length" else []
        if answer.framing == "close":
            extra.append(("Connection", "close"))
        conn.sendall(self._head(answer, extra) + body)
        return answer.framing != "close"


def _gzip_pieces(inflated: int, *, stream: bool, level: int) -> Iterator[bytes]:
    """A gzip stream of ``inflated`` bytes, compressed a MiB at a time as it is sent."""
    packer = zlib.compressobj(level, zlib.DEFLATED, 31)
    block = b"0" * (1 << 20) if stream else b"\0" * (1 << 20)
    left = inflated
    if stream:
        yield packer.compress(b"data: ")
        left -= 6
    while left > 0:
        piece = packer.compress(block[:left])
        left -= len(block)
        if piece:
            yield piece
    yield packer.flush()
