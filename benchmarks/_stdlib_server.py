"""The fallback benchmark server: a raw asyncio protocol that answers every request with
precomputed bytes, HTTP/1.1 keep-alive, bound to 127.0.0.1 on a free port.

Standalone (standard library only) and run in its own process, so the server never
shares the client's interpreter lock or CPU time accounting. Usage::

    python _stdlib_server.py ROUTES_JSON

``ROUTES_JSON`` is a list of routes, tried in order, each ``{"prefix", "type",
"chunked", "frames", "gaps"}``: a request whose path starts with ``prefix`` is answered
with the ``frames`` (each written on its own after waiting ``gaps[i]`` seconds; with
``chunked``, as one HTTP chunk each, else joined with a Content-Length). Prints
``PORT <n>`` on stdout once listening; stops on SIGTERM or when stdin closes.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from typing import Any

HEAD = (
    b"HTTP/1.1 200 OK\r\n"
    b"Content-Type: %s\r\n"
    b"%s"
    b"x-request-id: req_bench_0001\r\n"
    b"Connection: keep-alive\r\n\r\n"
)
NOT_FOUND = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n"


class Route:
    __slots__ = ("gaps", "immediate", "parts", "prefix")

    def __init__(self, spec: dict[str, Any]) -> None:
        self.prefix: bytes = spec["prefix"].encode()
        ctype = spec["type"].encode()
        frames = [f.encode() for f in spec["frames"]]
        gaps = [float(g) for g in spec["gaps"]]
        if spec["chunked"]:
            head = HEAD % (ctype, b"Transfer-Encoding: chunked\r\n")
            parts = [b"%x\r\n%s\r\n" % (len(f), f) for f in frames]
            parts[0] = head + parts[0]
            parts[-1] += b"0\r\n\r\n"
        else:
            body = b"".join(frames)
            head = HEAD % (ctype, b"Content-Length: %d\r\n" % len(body))
            parts = [head + body]
            gaps = [sum(gaps)]
        self.parts = parts
        self.gaps = gaps
        self.immediate = len(parts) == 1 and not gaps[0]


def make_protocol(routes: list[Route]) -> type[asyncio.Protocol]:
    class BenchProtocol(asyncio.Protocol):
        __slots__ = ("buf", "tail", "transport")

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport  # type: ignore[assignment]
            self.buf = b""
            self.tail: asyncio.Future[None] | None = None

        def connection_lost(self, exc: Exception | None) -> None:
            if self.tail is not None:
                self.tail.cancel()

        async def _respond(self, route: Route, before: asyncio.Future[None] | None) -> None:
            if before is not None:
                await before
            for part, gap in zip(route.parts, route.gaps):
                if gap:
                    await asyncio.sleep(gap)
                if self.transport.is_closing():  # type: ignore[attr-defined]
                    return
                self.transport.write(part)  # type: ignore[attr-defined]

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
                for route in routes:
                    if path.startswith(route.prefix):
                        break
                else:
                    route = None
                tail = self.tail
                if tail is not None and tail.done():
                    tail = self.tail = None
                if route is None and tail is None:
                    self.transport.write(NOT_FOUND)  # type: ignore[attr-defined]
                elif route is not None and route.immediate and tail is None:
                    self.transport.write(route.parts[0])  # type: ignore[attr-defined]
                elif route is not None:  # paced, or queued behind a paced answer
                    self.tail = asyncio.ensure_future(self._respond(route, tail))
                buf = buf[total:]
            self.buf = buf

    return BenchProtocol


async def main(routes_file: str) -> None:
    with open(routes_file) as f:
        routes = [Route(spec) for spec in json.load(f)]
    loop = asyncio.get_running_loop()
    proto = make_protocol(routes)
    server = await loop.create_server(proto, "127.0.0.1", 0, backlog=4096, reuse_address=True)
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
    try:
        import resource

        _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))
    except (ImportError, ValueError, OSError):
        pass
    asyncio.run(main(sys.argv[1]))
