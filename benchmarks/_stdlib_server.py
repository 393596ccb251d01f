"""The fallback benchmark server: a raw asyncio protocol that answers every request with
precomputed bytes, HTTP/1.1 keep-alive, bound to 127.0.0.1 on a free port.

Standalone (standard library only) and run in its own process, so the server never
shares the client's interpreter lock or CPU time accounting. Usage::

    python _stdlib_server.py CHAT_FILE SSE_FILE STREAM_PREFIX

prints ``PORT <n>`` on stdout once listening; stops on SIGTERM or when stdin closes.
"""

from __future__ import annotations

import asyncio
import signal
import sys


def _response(body: bytes, content_type: bytes) -> bytes:
    return (
        b"HTTP/1.1 200 OK\r\n"
        b"Content-Type: " + content_type + b"\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n"
        b"x-request-id: req_bench_0001\r\n"
        b"Connection: keep-alive\r\n\r\n" + body
    )


NOT_FOUND = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n"


def make_protocol(chat: bytes, stream: bytes, stream_prefix: bytes) -> type[asyncio.Protocol]:
    class BenchProtocol(asyncio.Protocol):
        __slots__ = ("buf", "transport")

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport  # type: ignore[assignment]
            self.buf = b""

        def data_received(self, data: bytes) -> None:
            buf = self.buf + data if self.buf else data
            while True:
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    break
                head = buf[:end]
                at = head.find(b"ontent-Length:")
                if at < 0:
                    at = head.find(b"ontent-length:")
                size = 0
                if at >= 0:
                    stop = head.find(b"\r\n", at)
                    size = int(head[at + 14 : stop if stop >= 0 else len(head)])
                total = end + 4 + size
                if len(buf) < total:
                    break
                first = head.find(b" ") + 1
                path = head[first : head.find(b" ", first)]
                if path.startswith(stream_prefix):
                    self.transport.write(stream)  # type: ignore[attr-defined]
                elif path.startswith(b"/v1/"):
                    self.transport.write(chat)  # type: ignore[attr-defined]
                else:
                    self.transport.write(NOT_FOUND)  # type: ignore[attr-defined]
                buf = buf[total:]
            self.buf = buf

    return BenchProtocol


async def main(chat_file: str, sse_file: str, stream_prefix: str) -> None:
    with open(chat_file, "rb") as f:
        chat = _response(f.read(), b"application/json")
    with open(sse_file, "rb") as f:
        stream = _response(f.read(), b"text/event-stream")
    loop = asyncio.get_running_loop()
    proto = make_protocol(chat, stream, stream_prefix.encode())
    server = await loop.create_server(proto, "127.0.0.1", 0, backlog=512, reuse_address=True)
    port = server.sockets[0].getsockname()[1]
    print(f"PORT {port}", flush=True)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    # the parent holds our stdin: when it dies, stdin reaches EOF and we stop too
    loop.add_reader(
        sys.stdin.fileno(), lambda: stop.set() if not sys.stdin.buffer.read1(1) else None
    )
    async with server:
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3]))
