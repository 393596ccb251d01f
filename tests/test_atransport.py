"""The aiohttp transport (``AsyncHttpTransport``) against stand-in and hostile servers on
loopback, over real sockets: the same rules as the requests transport (tests/test_transport.py)
- credentials stay on their origin, every HTTP request is counted, causes carry no
credentials, deadlines hold against dripping servers, answers are capped after
decompression - and what is its own: streams delivered as their bytes arrive, connections
reused after a stream and released when one is closed early, one event loop per session,
no warnings after ``aclose()``. Coroutines run with ``asyncio.run`` (no pytest-asyncio)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import random
import socket
import socketserver
import ssl
import subprocess
import sys
import threading
import time
import tracemalloc
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import certifi
import pytest

from chatcore._atransport import AsyncHttpTransport, _check_aiohttp, ssl_context
from chatcore._deadline import call_deadline
from chatcore._http import HttpCall, HttpResult, dumps_body
from chatcore._sse import OpenAIStreamDecoder, SSEEvent, SSEParser, StreamDecoder, iter_sse
from chatcore._transport import HttpTransport
from chatcore.exceptions import (
    APIConnectionError,
    APIError,
    APIStatusError,
    APITimeoutError,
    BadRequestError,
    ConfigurationError,
    PermissionDeniedError,
    RateLimitError,
    RedirectError,
    ResponseDecodeError,
    ResponseTooLargeError,
    StreamError,
    ValidationError,
)
from chatcore.models import ChatChunk
from chatcore.testing.helpers import capture_logs
from chatcore.testing.hostile import Hostile, HostileServer, loopback_available
from chatcore.testing.server import Reply, StandInServer

OPENAI_KEY = "sk-atransport-test-0123456789"
AZURE_KEY = "azureATransportKEY0123456789abcdef"
KEYS = {"openai": OPENAI_KEY, "azure": AZURE_KEY}
MODEL = "gpt-4o-mini"
MiB = 1 << 20
BODY = {"model": MODEL, "messages": [{"role": "user", "content": "hello"}]}
CHAT = HttpCall("POST", "/chat/completions", json=BODY)
STREAM = HttpCall("POST", "/chat/completions", json={**BODY, "stream": True}, stream=True)
PROVIDERS = pytest.mark.parametrize("provider", ["openai", "azure"])

_T = TypeVar("_T")


@pytest.fixture(autouse=True)
def _no_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loopback servers are reached directly, whatever the machine's proxy settings."""
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


def run(coro: Awaitable[_T]) -> _T:
    """Run ``coro`` in a new event loop."""

    async def main() -> _T:
        return await coro

    return asyncio.run(main())


def make(server: Any, provider: str = "openai", **options: Any) -> AsyncHttpTransport:
    """A transport to ``server`` with one credential style: OpenAI's bearer key or
    Azure's ``api-key`` header (and its api-version query parameter)."""
    if provider == "openai":
        headers, params = {"Authorization": f"Bearer {OPENAI_KEY}"}, {}
    else:
        headers, params = {"api-key": AZURE_KEY}, {"api-version": "2024-10-21"}
    return AsyncHttpTransport(
        provider=provider,
        base_url=server.base_url,
        headers=headers,
        params=params,
        secrets=[KEYS[provider]],
        **options,
    )


@contextlib.asynccontextmanager
async def opened(
    server: Any, provider: str = "openai", **options: Any
) -> AsyncIterator[AsyncHttpTransport]:
    """A transport that is closed on the way out."""
    transport = make(server, provider, **options)
    try:
        yield transport
    finally:
        await transport.aclose()


def decoder(_head: HttpResult) -> StreamDecoder:
    return OpenAIStreamDecoder(provider="openai", model=MODEL)


async def collect(transport: AsyncHttpTransport, call: HttpCall = STREAM) -> list[ChatChunk]:
    """A stream read to its end."""
    return [c async for c in transport.stream_chunks(call, model=MODEL, decoder=decoder)]


async def once(transport: AsyncHttpTransport, *, stream: bool) -> Any:
    """One chat, or one stream read to its end."""
    if stream:
        return await collect(transport)
    return await transport.send(CHAT, model=MODEL)


def key_sent(seen: Any) -> str:
    headers = seen.headers
    return str(headers.get("authorization", "")) + str(headers.get("api-key", ""))


class CountingServer(StandInServer):
    """A stand-in server that counts the connections it accepted."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.accepted = 0

    def get_request(self) -> tuple[socket.socket, Any]:
        conn = super().get_request()
        self.accepted += 1
        return conn

    def __enter__(self) -> CountingServer:
        self.start()
        return self


@pytest.fixture(params=["127.0.0.1", "127.0.0.2"], ids=["other-port", "other-host"])
def other_host(request: pytest.FixtureRequest) -> str:
    if not loopback_available(request.param):
        pytest.skip(f"{request.param} cannot be bound on this machine")
    return str(request.param)


# -- credentials never leave their origin --------------------------------------------------


@PROVIDERS
@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_cross_origin_redirect_contacts_nothing_there(
    provider: str, status: int, other_host: str
) -> None:
    key = KEYS[provider]
    with HostileServer(other_host) as other, HostileServer() as server:
        server.default = Hostile.redirect(f"{other.url}/v1/chat/completions?key={key}", status)

        async def scenario() -> None:
            async with opened(server, provider) as transport:
                await transport.send(CHAT, model=MODEL)

        with pytest.raises(RedirectError) as info:
            run(scenario())
        assert other.requests == [], "the second origin was contacted"
        assert len(server.requests) == 1, "a refused redirect was retried"
        assert key in key_sent(server.requests[0])
    error = info.value
    assert error.location == other.url
    assert error.status_code == status
    assert "(1 HTTP request made in this attempt)" in str(error)
    for text in (str(error), repr(error), str(error.location)):
        assert key not in text and "/v1/chat/completions" not in text


@PROVIDERS
def test_a_cross_origin_redirect_of_a_stream_is_refused_too(provider: str) -> None:
    with HostileServer() as other, HostileServer() as server:
        server.default = Hostile.redirect(f"{other.url}/v1/chat/completions", 307)

        async def scenario() -> None:
            async with opened(server, provider) as transport:
                await collect(transport)

        with pytest.raises(RedirectError):
            run(scenario())
        assert other.requests == []
        assert len(server.requests) == 1


@PROVIDERS
def test_same_origin_307_is_followed_with_method_body_and_key(provider: str) -> None:
    with HostileServer() as server:
        server.enqueue(Hostile.redirect("/moved/chat/completions", 307))

        async def scenario() -> HttpResult:
            async with opened(server, provider) as transport:
                return await transport.send(CHAT, model=MODEL)

        with capture_logs("DEBUG") as logs:
            result = run(scenario())
        first, second = server.requests
    assert len([line for line in logs.lines if "following same-origin redirect" in line]) == 1
    assert result.data["choices"][0]["message"]["content"] == "Hello from a hostile server"
    assert second.path == "/moved/chat/completions"
    assert (second.method, second.body) == (first.method, first.body) == ("POST", dumps_body(BODY))
    assert KEYS[provider] in key_sent(second)


@PROVIDERS
@pytest.mark.parametrize("status", [301, 302, 303])
def test_method_changing_redirect_of_a_post_is_refused(provider: str, status: int) -> None:
    with HostileServer() as server:
        server.enqueue(Hostile.redirect("/v1/chat/completions", status))

        async def scenario() -> None:
            async with opened(server, provider) as transport:
                await transport.send(CHAT, model=MODEL)

        with pytest.raises(RedirectError, match="into a GET"):
            run(scenario())
        assert len(server.requests) == 1


def test_a_303_of_a_get_is_followed_as_a_get_without_the_first_query() -> None:
    with HostileServer() as server:
        server.enqueue(Hostile.redirect("/v1/elsewhere?page=2", 303))

        async def scenario() -> HttpResult:
            async with opened(server, "azure") as transport:
                return await transport.send(HttpCall("GET", "/models", params={"q": "x"}))

        assert run(scenario()).status_code == 200
        first, second = server.requests
    assert first.path == "/v1/models?api-version=2024-10-21&q=x"
    assert (second.method, second.path) == ("GET", "/v1/elsewhere?page=2")
    assert second.headers["api-key"] == AZURE_KEY


def test_absolute_url_to_another_origin_is_refused_before_sending() -> None:
    with HostileServer() as server, HostileServer() as other:

        async def scenario() -> int:
            async with opened(server, "azure") as transport:
                with pytest.raises(ConfigurationError, match="refusing to send credentials"):
                    await transport.send(HttpCall("GET", f"{other.url}/v1/models"))
                result = await transport.send(HttpCall("GET", f"{server.url}/v1/models"))
                return result.status_code

        assert run(scenario()) == 200
        assert other.requests == []
        assert len(server.requests) == 1


# -- every HTTP request counts -------------------------------------------------------------


@PROVIDERS
@pytest.mark.parametrize("max_redirects", [0, 1, 3])
@pytest.mark.parametrize("stream", [False, True], ids=["chat", "stream"])
def test_redirect_loop_stops_at_the_limit_and_counts_every_request(
    provider: str, max_redirects: int, stream: bool
) -> None:
    with HostileServer(default=Hostile.redirect("/loop", 308)) as server:

        async def scenario() -> None:
            async with opened(server, provider, max_redirects=max_redirects) as transport:
                await once(transport, stream=stream)

        with pytest.raises(RedirectError) as info:
            run(scenario())
        seen = len(server.requests)
    assert seen == max_redirects + 1
    assert f"({seen} HTTP request" in str(info.value)


# -- the exception chain carries no credentials --------------------------------------------


def _reachable(error: BaseException) -> Iterator[Any]:
    """Everything an error tracker could serialize: the chain and every attribute."""
    todo: list[tuple[Any, int]] = [(error, 0)]
    seen: set[int] = set()
    while todo:
        obj, depth = todo.pop()
        if id(obj) in seen or depth > 8:
            continue
        seen.add(id(obj))
        yield obj
        if isinstance(obj, BaseException):
            todo += [(obj.__cause__, depth + 1), (obj.__context__, depth + 1)]
            todo += [(a, depth + 1) for a in obj.args]
        if isinstance(obj, dict):
            todo += [(v, depth + 1) for v in obj.values()]
            todo += [(k, depth + 1) for k in obj]
        elif isinstance(obj, (list, tuple, set)):
            todo += [(v, depth + 1) for v in obj]
        elif hasattr(obj, "__dict__") and not isinstance(obj, type):
            todo += [(v, depth + 1) for v in vars(obj).values()]


_LOWER_LAYER = (
    aiohttp.ClientResponse,
    aiohttp.ClientRequest,
    aiohttp.RequestInfo,
    aiohttp.ClientSession,
    aiohttp.BaseConnector,
    asyncio.BaseTransport,
)


def _faulty_server(fault: str) -> StandInServer:
    server = StandInServer(flavor="openai")
    if fault == "refused":
        server.stop()  # bound, then closed: nothing listens on its port
        return server
    reply = {
        "reset": Reply.reset(),
        "timeout": Reply.hang(30),
        "mid-body": Reply.truncated('{"id": "chatcmpl-1", "choices": [', 4096),
    }[fault]
    server.start()
    server.enqueue(reply)
    return server


@PROVIDERS
@pytest.mark.parametrize("fault", ["refused", "reset", "timeout", "mid-body"])
def test_the_cause_chain_carries_no_credentials(provider: str, fault: str) -> None:
    server = _faulty_server(fault)
    try:

        async def scenario() -> None:
            async with opened(server, provider, timeout=0.5) as transport:
                await transport.send(CHAT, model=MODEL)

        with pytest.raises(APIConnectionError) as info:
            run(scenario())
    finally:
        server.stop()
    error = info.value
    assert (error.provider, error.model) == (provider, MODEL)
    assert error.__cause__ is not None, "the cause was dropped instead of cleaned"
    # detached: the cause has no chain of its own (where aiohttp keeps its objects)
    assert error.__cause__.__cause__ is None and error.__cause__.__context__ is None
    assert error.__context__ is None or error.__context__ is error.__cause__
    key = KEYS[provider]
    for obj in _reachable(error):
        assert not isinstance(obj, _LOWER_LAYER), obj
        if isinstance(obj, (str, bytes)):
            assert key not in str(obj)
    assert isinstance(error, APITimeoutError) == (fault == "timeout")
    assert type(error.__cause__).__name__ != "TransportCause"  # same class, rebuilt


def test_a_stream_cut_mid_way_is_a_connection_error_after_the_events_read() -> None:
    events = [{"choices": [{"index": 0, "delta": {"content": w}}]} for w in ("a", "b")]
    with StandInServer() as server:
        server.enqueue(Reply.sse(events, die_after=2, delay_between=0.5))
        got: list[str] = []

        async def scenario() -> None:
            async with opened(server) as transport:
                async for chunk in transport.stream_chunks(STREAM, model=MODEL, decoder=decoder):
                    got.append(chunk.text or "")

        with pytest.raises(APIConnectionError, match="reading the answer") as info:
            run(scenario())
    # aiohttp drops what it holds unread once the connection fails: "b", sent just before
    # the cut, may be lost; "a" was read half a second before
    assert got in (["a"], ["a", "b"])
    assert not isinstance(info.value, APITimeoutError)


# -- deadlines hold against slow answers ---------------------------------------------------


@pytest.mark.parametrize("head", [False, True], ids=["body", "head"])
@pytest.mark.parametrize("stream", [False, True], ids=["chat", "stream"])
@pytest.mark.parametrize(
    ("timeout", "chunk_timeout", "total", "named"),
    [
        (2, 2, 3, "timeout="),
        (10, 10, 3, "timeout_total"),
        (2, 10, None, "timeout=2s"),
        (10, 2, None, "chunk_timeout=2s"),
    ],
    ids=["issue", "timeout_total", "timeout", "chunk_timeout"],
)
def test_a_dripping_server_cannot_outlast_the_deadlines(
    head: bool,
    stream: bool,
    timeout: float,
    chunk_timeout: float,
    total: float | None,
    named: str,
) -> None:
    if named == "chunk_timeout=2s" and not stream:
        pytest.skip("chunk_timeout bounds streams only")
    expected = min(timeout, chunk_timeout if stream else timeout, total or timeout)
    answer = Hostile.drip(interval=0.5, head=head, stream=stream)
    with HostileServer(default=answer) as server:

        async def scenario() -> None:
            async with opened(server, timeout=timeout, chunk_timeout=chunk_timeout) as transport:
                if total is not None:
                    call_deadline.set(time.monotonic() + total)
                await once(transport, stream=stream)

        started = time.monotonic()
        with pytest.raises(APITimeoutError) as info:
            run(scenario())
        waited = time.monotonic() - started
    # the drip would take 20 s and more; every deadline here is 2 or 3 s
    assert expected - 0.05 <= waited < expected + 2, f"{waited:.2f} s for a {expected} s deadline"
    assert named in str(info.value)


def test_chunk_timeout_bounds_the_gap_between_events_not_the_callers_time() -> None:
    with HostileServer(default=Hostile.staged_stream(framing="close", wait=30)) as server:
        waited: list[float] = []

        async def scenario() -> None:
            async with opened(server, chunk_timeout=1.5) as transport:
                chunks = transport.stream_chunks(STREAM, model=MODEL, decoder=decoder)
                try:
                    assert (await chunks.__anext__()).text == "first"
                    await asyncio.sleep(2)  # longer than chunk_timeout: the caller's own time
                    started = time.monotonic()
                    try:
                        await chunks.__anext__()
                    finally:
                        waited.append(time.monotonic() - started)
                finally:
                    await chunks.aclose()

        with pytest.raises(APITimeoutError, match=r"chunk_timeout=1.5s \(the wait for the next"):
            run(scenario())
    assert 1.45 <= waited[0] < 3, f"chunk_timeout=1.5 waited {waited[0]:.1f} s for the next event"


def test_the_calls_timeout_bounds_one_attempt() -> None:
    with StandInServer() as server:
        server.enqueue(Reply.hang(30))

        async def scenario() -> None:
            async with opened(server) as transport:
                await transport.send(HttpCall("GET", "/models", timeout=0.5))

        started = time.monotonic()
        with pytest.raises(APITimeoutError, match=r"timeout=0.5s"):
            run(scenario())
        assert time.monotonic() - started < 2


def test_a_passed_timeout_total_sends_nothing() -> None:
    with StandInServer() as server:

        async def scenario() -> None:
            async with opened(server) as transport:
                call_deadline.set(time.monotonic() - 1)
                await transport.send(CHAT)

        with pytest.raises(APITimeoutError, match="passed before this attempt"):
            run(scenario())
        assert server.requests == []


# -- memory is bounded ---------------------------------------------------------------------


@PROVIDERS
@pytest.mark.parametrize(
    ("answer", "stream", "limit"),
    [
        (Hostile.gzip_bomb(4 << 30), False, "response"),
        (Hostile.gzip_bomb(4 << 30, stream=True), True, "event"),
        (Hostile.huge(512 * MiB), False, "response"),
        (Hostile.huge(512 * MiB, framing="length"), False, "response"),
        (Hostile.huge(128 * MiB, stream=True), True, "event"),
    ],
    ids=["gzip-chat", "gzip-stream", "plain", "declared-length", "sse-line"],
)
def test_answers_are_capped_after_decompression(
    provider: str, answer: Hostile, stream: bool, limit: str
) -> None:
    with HostileServer(default=answer) as server:

        async def scenario() -> None:
            async with opened(server, provider) as transport:
                await once(transport, stream=stream)

        with pytest.raises(ResponseTooLargeError) as info:
            run(scenario())
        assert server.completed == 0, "the client read the whole answer"
        assert len(server.requests) == 1
    error = info.value
    assert error.limit == (32 * MiB if limit == "response" else 4 * MiB)
    assert (error.provider, error.model) == (provider, MODEL)
    assert f"max_{limit}_bytes" in str(error)


@pytest.mark.parametrize("stream", [False, True], ids=["chat", "stream"])
def test_a_gzip_bomb_never_inflates_in_memory(stream: bool) -> None:
    # level 9: one 64 KiB read of it inflates to about 64 MiB when nothing bounds it
    answer = Hostile.gzip_bomb(1 << 30, stream=stream, level=9)
    with HostileServer(default=answer) as server:

        async def scenario() -> None:
            async with opened(server, max_response_bytes=MiB, max_event_bytes=MiB) as transport:
                await once(transport, stream=stream)

        tracemalloc.start()
        try:
            with pytest.raises(ResponseTooLargeError):
                run(scenario())
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert peak < 8 * MiB, f"{peak / MiB:.1f} MiB held for a 1 MiB cap"


def test_the_stream_total_is_capped_too() -> None:
    with HostileServer(default=Hostile.huge(64 * MiB, stream=True)) as server:

        async def scenario() -> None:
            async with opened(server, max_response_bytes=MiB, max_event_bytes=8 * MiB) as t:
                await collect(t)

        with pytest.raises(ResponseTooLargeError) as info:
            run(scenario())
    assert info.value.limit == MiB
    assert "max_response_bytes" in str(info.value)
    assert info.value.status_code == 200


def test_events_before_an_oversized_one_are_delivered_first() -> None:
    event = b'data: {"choices": [{"index": 0, "delta": {"content": "ok"}}]}\n\n'
    body = event + b"data: " + b"x" * 4096 + b"\n\n" + b"data: [DONE]\n\n"
    answer = Hostile.answer(body, content_type="text/event-stream")
    with HostileServer(default=answer) as server:
        got: list[str] = []

        async def scenario() -> None:
            async with opened(server, max_event_bytes=1024) as transport:
                async for chunk in transport.stream_chunks(STREAM, model=MODEL, decoder=decoder):
                    got.append(chunk.text or "")

        with pytest.raises(
            ResponseTooLargeError, match="max_event_bytes cap of 1024 bytes"
        ) as info:
            run(scenario())
    assert got == ["ok"]
    assert (info.value.provider, info.value.model) == ("openai", MODEL)


@pytest.mark.parametrize("framing", ["length", "chunked"])
def test_error_bodies_are_read_only_up_to_a_small_cap(framing: Any) -> None:
    body = b'{"error": {"message": "' + b" " * (64 * MiB) + b'"}}'
    answer = Hostile.answer(body, status=400, framing=framing)
    with HostileServer(default=answer) as server:

        async def scenario() -> None:
            async with opened(server) as transport:
                await transport.send(CHAT, model=MODEL)

        with pytest.raises(BadRequestError) as info:
            run(scenario())
        assert server.completed == 0, "the whole error body was read"
    # the body was cut at 64 KiB: no longer JSON, so kept as (truncated) text
    assert isinstance(info.value.body, str) and len(info.value.body) <= 64 * 1024


# -- streams arrive as they are sent -------------------------------------------------------


@pytest.mark.parametrize("framing", ["close", "length"])
def test_events_arrive_before_the_body_ends_without_chunked_framing(framing: Any) -> None:
    with HostileServer(default=Hostile.staged_stream(framing=framing, wait=10)) as server:

        async def scenario() -> list[str]:
            async with opened(server) as transport:
                texts = []
                async for chunk in transport.stream_chunks(STREAM, model=MODEL, decoder=decoder):
                    texts.append(chunk.text)
                    server.release()  # the rest is sent only once the first event was read
                return texts

        started = time.monotonic()
        assert run(scenario()) == ["first", " second"]
        assert time.monotonic() - started < 5
        assert not server.stage_timed_out, "the first event waited for the end of the body"


def test_events_arrive_before_the_body_ends_with_chunked_framing() -> None:
    events = [{"choices": [{"index": 0, "delta": {"content": w}}]} for w in ("one", "two")]
    with StandInServer() as server:
        server.enqueue(Reply.sse(events, delay_between=30))

        async def scenario() -> str | None:
            async with opened(server) as transport:
                chunks = transport.stream_chunks(STREAM, model=MODEL, decoder=decoder)
                try:
                    return (await asyncio.wait_for(chunks.__anext__(), 5)).text
                finally:
                    await chunks.aclose()

        assert run(scenario()) == "one"


def test_the_first_chunk_carries_the_request_id_and_headers_and_requests_are_as_sync() -> None:
    with StandInServer(api_key=OPENAI_KEY) as server:

        async def scenario() -> list[ChatChunk]:
            async with opened(server) as transport:
                return await collect(transport)

        chunks = run(scenario())
        (seen,) = server.requests
    assert chunks[0].request_id == "req_" + "0" * 31 + "1"
    assert chunks[0].headers is not None
    assert chunks[0].headers["X-Request-Id"] == chunks[0].request_id
    assert all(c.request_id is None for c in chunks[1:])
    assert "".join(c.text or "" for c in chunks).startswith("Hello from the chatcore stand-in")
    assert seen.headers["accept"] == "text/event-stream"
    assert seen.headers["content-type"] == "application/json"
    assert seen.headers["authorization"] == f"Bearer {OPENAI_KEY}"
    assert seen.body == dumps_body({**BODY, "stream": True})


def test_a_stream_that_ends_without_its_terminator_is_a_stream_error() -> None:
    events = [{"choices": [{"index": 0, "delta": {"content": "partial"}}]}]
    with StandInServer() as server:
        server.enqueue(Reply.sse(events, done=False))

        async def scenario() -> None:
            async with opened(server) as transport:
                await collect(transport)

        with pytest.raises(StreamError, match=r"without its \[DONE\]") as info:
            run(scenario())
    assert info.value.partial_text == "partial"


@pytest.mark.parametrize("content_type", ["application/json", ""])
def test_a_non_event_stream_answer_to_a_stream_is_a_stream_error(content_type: str) -> None:
    answer = Hostile.answer(b'{"id": "not a stream"}', content_type=content_type)
    with HostileServer(default=answer) as server:

        async def scenario() -> None:
            async with opened(server) as transport:
                await collect(transport)

        with pytest.raises(StreamError) as info:
            run(scenario())
    error = info.value
    assert f"got {content_type or 'no content type'}: " in str(error)
    assert "not a stream" in str(error)
    assert (error.status_code, error.should_retry) == (200, False)


# -- errors are the sync transport's -------------------------------------------------------


_ERRORS = [
    Reply.error(400, "bad request"),
    Reply.error(401, "bad key", code="invalid_api_key"),
    Reply.error(404, "The model `x` does not exist", code="model_not_found"),
    Reply.error(429, "slow down", headers={"retry-after": "7"}),
    Reply.error(500, "server error"),
    Reply.error(503, "overloaded", headers={"retry-after": "2"}),
    Reply.raw("not json", status=502, content_type="text/plain"),
]


def _sync_once(server: StandInServer, *, stream: bool) -> None:
    """One chat or stream through the requests transport."""
    sync = HttpTransport(provider="openai", base_url=server.base_url, secrets=[OPENAI_KEY])
    try:
        if stream:
            list(sync.stream_chunks(STREAM, model=MODEL, decoder=decoder))
        else:
            sync.send(CHAT, model=MODEL)
    finally:
        sync.close()


@pytest.mark.parametrize("reply", _ERRORS, ids=lambda r: str(r.status))
@pytest.mark.parametrize("stream", [False, True], ids=["chat", "stream"])
def test_error_answers_map_to_the_classes_the_sync_transport_gives(
    reply: Reply, stream: bool
) -> None:
    with StandInServer() as server:
        server.enqueue(reply, reply)
        with pytest.raises(APIStatusError) as expected:
            _sync_once(server, stream=stream)

        async def scenario() -> None:
            async with opened(server) as transport:
                await once(transport, stream=stream)

        with pytest.raises(APIStatusError) as got:
            run(scenario())
    want, error = expected.value, got.value
    assert type(error) is type(want)
    assert (error.status_code, error.retry_after, error.code, error.message) == (
        want.status_code,
        want.retry_after,
        want.code,
        want.message,
    )
    assert (error.provider, error.model) == ("openai", MODEL)
    assert error.latency >= 0  # type: ignore[attr-defined]
    if reply.status == 429:
        assert isinstance(error, RateLimitError) and error.retry_after == 7


def test_the_providers_error_mapper_is_used_when_it_returns_an_error() -> None:
    calls: list[tuple[int, bytes]] = []

    def mapper(status: int, body: bytes, headers: Any) -> Any:
        calls.append((status, body))
        if b"special" in body:
            return PermissionDeniedError("the provider's own mapping", status_code=status)
        if b"broken" in body:
            raise RuntimeError("a buggy mapper")
        return None

    with StandInServer() as server:
        server.enqueue(
            Reply.error(400, "special case"), Reply.error(400, "plain"), Reply.error(400, "broken")
        )

        async def scenario() -> list[APIError]:
            errors: list[APIError] = []
            async with opened(server, error_mapper=mapper) as transport:
                for _ in range(3):
                    try:
                        await transport.send(CHAT, model=MODEL)
                    except APIError as exc:
                        errors.append(exc)
            return errors

        special, plain, broken = run(scenario())
    assert len(calls) == 3
    assert type(special) is PermissionDeniedError
    assert special.message == "the provider's own mapping"
    assert (special.provider, special.model, special.status_code) == ("openai", MODEL, 400)
    assert special.headers and "content-type" in {name.lower() for name in special.headers}
    assert type(plain) is BadRequestError and type(broken) is BadRequestError


def test_a_2xx_answer_that_is_not_json_is_a_decode_error_and_an_empty_one_is_none() -> None:
    with StandInServer() as server:
        server.enqueue(Reply.raw("<html>oops</html>", content_type="text/html"), Reply.raw(""))

        async def scenario() -> HttpResult:
            async with opened(server) as transport:
                with pytest.raises(ResponseDecodeError, match=r"expected JSON .* got text/html"):
                    await transport.send(CHAT, model=MODEL)
                return await transport.send(CHAT, model=MODEL)

        empty = run(scenario())
    assert (empty.status_code, empty.data) == (200, None)


def test_a_broken_gzip_body_is_a_decode_error() -> None:
    body = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03" + b"not deflate data at all" * 10
    answer = Hostile.answer(body, headers={"Content-Encoding": "gzip"})
    with HostileServer(default=answer) as server:

        async def scenario() -> None:
            async with opened(server) as transport:
                await transport.send(CHAT, model=MODEL)

        with pytest.raises(ResponseDecodeError, match="could not decode") as info:
            run(scenario())
    assert not isinstance(info.value, ResponseTooLargeError)
    assert info.value.__cause__ is not None


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_nan_and_infinities_are_refused_before_sending(value: float) -> None:
    with HostileServer() as server:

        async def scenario() -> None:
            async with opened(server) as transport:
                await transport.send(HttpCall("POST", "/chat/completions", json={"x": [value]}))

        with pytest.raises(ValidationError, match="not JSON"):
            run(scenario())
        assert server.requests == []


def test_a_header_aiohttp_refuses_is_a_connection_error_sending_nothing() -> None:
    key = OPENAI_KEY + "\n"  # read from a file with its line end
    with HostileServer() as server:

        async def scenario() -> None:
            transport = AsyncHttpTransport(
                provider="openai",
                base_url=server.base_url,
                headers={"Authorization": f"Bearer {key}"},
                secrets=[key],
            )
            try:
                await transport.send(CHAT)
            finally:
                await transport.aclose()

        with pytest.raises(APIConnectionError, match="invalid request") as info:
            run(scenario())
        assert server.requests == []
    assert info.value.should_retry is False
    for obj in _reachable(info.value):
        if isinstance(obj, str):
            assert OPENAI_KEY not in obj


# -- headers, connections, the session -----------------------------------------------------


def test_the_user_agent_is_the_sync_transports_and_is_sent() -> None:
    with StandInServer() as server:
        product = ("chatcore-openai", "1.2.3")
        transport = make(server, user_agent_product=product)
        sync = HttpTransport(
            provider="openai", base_url=server.base_url, user_agent_product=product
        )
        sync.close()
        assert transport.user_agent == sync.user_agent
        assert transport.user_agent.startswith("chatcore/")
        assert " chatcore-openai/1.2.3 python/" in transport.user_agent

        async def scenario() -> None:
            try:
                await transport.send(CHAT)
            finally:
                await transport.aclose()

        run(scenario())
        (seen,) = server.requests
    assert seen.headers["user-agent"] == transport.user_agent
    assert seen.headers["accept"] == "application/json"
    assert seen.headers["content-type"] == "application/json"


def test_connections_are_reused_after_complete_answers_and_streams() -> None:
    with CountingServer() as server:

        async def scenario() -> None:
            async with opened(server) as transport:
                for _ in range(2):
                    assert len(await collect(transport)) > 1
                await transport.send(CHAT)
                assert len(await collect(transport)) > 1

        run(scenario())
        assert len(server.requests) == 4
        assert server.accepted == 1


class _LateEnd(socketserver.StreamRequestHandler):
    """Answers every request on its connection with an event stream whose last, empty
    chunk comes ``server.late`` seconds after ``[DONE]``."""

    server: LateEndServer

    def handle(self) -> None:
        self.server.accepted += 1
        event = b'data: {"choices": [{"index": 0, "delta": {"content": "x"}}]}\n\n'
        event += b"data: [DONE]\n\n"
        head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
        head += b"Transfer-Encoding: chunked\r\n\r\n"
        try:
            while self.rfile.readline():
                length = 0
                while (line := self.rfile.readline()) not in (b"\r\n", b""):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                self.rfile.read(length)
                self.wfile.write(head + b"%x\r\n%s\r\n" % (len(event), event))
                time.sleep(self.server.late)
                self.wfile.write(b"0\r\n\r\n")
        except OSError:
            return  # the client closed the connection: what it read is what counts


class LateEndServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, late: float) -> None:
        super().__init__(("127.0.0.1", 0), _LateEnd)
        self.late = late
        self.accepted = 0
        self.base_url = f"http://127.0.0.1:{self.server_address[1]}/v1"
        threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


@pytest.mark.parametrize(("late", "connections"), [(0.3, 1), (3.0, 2)])
def test_after_the_terminator_the_body_is_drained_a_little(late: float, connections: int) -> None:
    server = LateEndServer(late)
    try:

        async def scenario() -> list[float]:
            took = []
            async with opened(server) as transport:
                for _ in range(2):
                    started = time.monotonic()
                    assert [c.text for c in await collect(transport)] == ["x"]
                    took.append(time.monotonic() - started)
            return took

        took = run(scenario())
    finally:
        server.stop()
    # drained: the connection is reused; not by then (a second at most): closed, no error
    assert server.accepted == connections
    assert max(took) < min(late, 1.0) + 1.0


async def _then_a_chat(transport: AsyncHttpTransport) -> None:
    """A chat through a pool of one connection: it waits for ever if the connection of an
    abandoned stream was never released."""
    result = await asyncio.wait_for(transport.send(CHAT), 5)
    assert result.status_code == 200


def _slow_stream() -> Reply:
    events = [{"choices": [{"index": 0, "delta": {"content": w}}]} for w in ("one", "two")]
    return Reply.sse(events, delay_between=30)


def test_closing_a_stream_early_releases_its_connection() -> None:
    with CountingServer() as server:
        server.enqueue(_slow_stream())

        async def scenario() -> None:
            async with opened(server, pool_maxsize=1) as transport:
                chunks = transport.stream_chunks(STREAM, model=MODEL, decoder=decoder)
                assert (await chunks.__anext__()).text == "one"
                await chunks.aclose()
                await _then_a_chat(transport)

        started = time.monotonic()
        run(scenario())
        assert time.monotonic() - started < 5
        assert server.accepted == 2  # the half-read stream's connection was closed, not reused


def test_cancelling_the_task_reading_a_stream_releases_its_connection() -> None:
    with CountingServer() as server:
        server.enqueue(_slow_stream())

        async def scenario() -> None:
            async with opened(server, pool_maxsize=1) as transport:
                first = asyncio.Event()

                async def read() -> None:
                    async for _chunk in transport.stream_chunks(
                        STREAM, model=MODEL, decoder=decoder
                    ):
                        first.set()

                task = asyncio.create_task(read())
                await asyncio.wait_for(first.wait(), 5)
                await asyncio.sleep(0.05)  # the task waits for the second event now
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
                await _then_a_chat(transport)

        run(scenario())
        assert server.accepted == 2


def _recorded(scenario: Callable[[], Coroutine[Any, Any, None]]) -> list[str]:
    """The warnings raised while ``scenario`` runs in its own loop and after it, until
    the garbage is all collected (a recorded warning keeps its source alive: each round
    lets the objects it held go)."""
    found: list[str] = []
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        asyncio.run(scenario())
        for _ in range(5):
            gc.collect()
            if not seen:
                break
            found += [f"{w.category.__name__}: {w.message}" for w in seen]
            seen.clear()
    return found


def test_aclose_leaves_no_warnings_and_forgetting_it_is_seen() -> None:
    with StandInServer() as server:

        async def closed() -> None:
            transport = make(server)
            await transport.send(CHAT)
            await collect(transport)
            await transport.aclose()
            await transport.aclose()  # twice is harmless

        async def forgotten() -> None:
            transport = make(server)
            await transport.send(CHAT)

        assert _recorded(closed) == []
        # the check can fail: a transport never closed leaves its session behind
        assert any("Unclosed client session" in w for w in _recorded(forgotten))


def test_a_transport_is_bound_to_the_loop_it_was_first_used_in() -> None:
    with StandInServer() as server:
        transport = make(server)

        def from_another_loop() -> None:
            asyncio.run(transport.send(CHAT))

        async def scenario() -> None:
            await transport.send(CHAT)
            with pytest.raises(ConfigurationError, match="bound to one event loop"):
                await asyncio.to_thread(from_another_loop)
            await transport.aclose()

        asyncio.run(scenario())
        assert len(server.requests) == 1  # the other loop sent nothing

        async def again() -> None:  # closed, it may be used in another loop
            try:
                await transport.send(CHAT)
            finally:
                await transport.aclose()

        asyncio.run(again())
        assert len(server.requests) == 2


@pytest.mark.parametrize("version", ["3.13.2", "3.9.5", "nonsense"])
def test_an_aiohttp_that_cannot_bound_decompression_is_refused(
    monkeypatch: pytest.MonkeyPatch, version: str
) -> None:
    monkeypatch.setattr(aiohttp, "__version__", version)
    with HostileServer() as server:

        async def scenario() -> None:
            async with opened(server) as transport:
                await transport.send(CHAT)

        with pytest.raises(ConfigurationError, match=f"aiohttp 3.13.3 or later.*{version}"):
            run(scenario())
        assert server.requests == []
    for fine in ("3.13.3", "3.14.0a1", "4.0"):
        _check_aiohttp(fine)  # no error


def test_import_chatcore_does_not_import_aiohttp() -> None:
    code = (
        "import sys, chatcore, chatcore.provider\n"
        "print(sorted(m for m in sys.modules if m == 'aiohttp' or m.endswith('_atransport')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"


# -- proxies and TLS from the environment --------------------------------------------------


def test_proxies_come_from_the_environment_and_no_proxy_is_honoured(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with StandInServer() as target, HostileServer() as proxy:
        monkeypatch.setenv("HTTP_PROXY", f"http://user:pass@{proxy.host}:{proxy.port}")

        async def scenario() -> None:
            async with opened(target) as transport:
                await transport.send(CHAT)

        run(scenario())
        (through,) = proxy.requests
        assert through.path == f"{target.base_url}/chat/completions"  # absolute form
        assert through.headers["proxy-authorization"] == "Basic dXNlcjpwYXNz"
        assert target.requests == []

        monkeypatch.setenv("NO_PROXY", target.host)
        run(scenario())
        assert len(proxy.requests) == 1
        assert len(target.requests) == 1


def test_a_socks_proxy_is_refused_rather_than_bypassed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALL_PROXY", "socks5://127.0.0.1:9")
    with HostileServer() as server:

        async def scenario() -> None:
            async with opened(server) as transport:
                await transport.send(CHAT)

        with pytest.raises(ConfigurationError, match="socks5 proxy"):
            run(scenario())
        assert server.requests == []


def test_the_ca_bundle_variables_are_honoured_in_requests_order(tmp_path: Path) -> None:
    missing = str(tmp_path / "missing.pem")
    bundle = certifi.where()
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE"):
        with pytest.raises(ConfigurationError, match=name):
            ssl_context({name: missing})
        assert ssl_context({name: bundle}).cert_store_stats()["x509_ca"] > 0
    # the first set wins: a broken later one is not even read
    assert ssl_context({"REQUESTS_CA_BUNDLE": bundle, "CURL_CA_BUNDLE": missing})
    with pytest.raises(ConfigurationError, match="REQUESTS_CA_BUNDLE"):
        ssl_context({"REQUESTS_CA_BUNDLE": missing, "CURL_CA_BUNDLE": bundle})
    context = ssl_context({})
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key (openssl's command line)."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    try:
        subprocess.run(
            [
                "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
                "-addext", "subjectAltName=IP:127.0.0.1",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError) as exc:
        pytest.skip(f"cannot make a test certificate with openssl: {exc}")
    return cert, key


def test_tls_is_verified_against_the_bundle_the_environment_names(
    monkeypatch: pytest.MonkeyPatch, tls_files: tuple[Path, Path]
) -> None:
    cert, key = tls_files
    server = StandInServer()
    served = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    served.load_cert_chain(cert, key)
    server.socket = served.wrap_socket(server.socket, server_side=True)
    base_url = f"https://127.0.0.1:{server.port}/v1"
    with server:

        async def scenario() -> HttpResult:
            transport = AsyncHttpTransport(provider="openai", base_url=base_url)
            try:
                return await transport.send(CHAT)
            finally:
                await transport.aclose()

        for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("SSL_CERT_FILE", certifi.where())
        with pytest.raises(APIConnectionError, match=r"(?i)certificate"):
            run(scenario())
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))
        assert run(scenario()).status_code == 200


# -- the incremental parser the transport reads events with --------------------------------


_SAMPLES = [
    b"\xef\xbb\xbfdata: a\r\n\r\n: keep-alive\rdata:b\r\ndata:  c\n\nid: 7\nevent: e\ndata\n\n",
    b"retry: 12\ndata: x\n\ndata: unterminated",
    b"\xef\xbb",
    b"data: " + b"y" * 50 + b"\n\ndata: z\n\n",
]


def _fed(reads: list[bytes], cap: int | None) -> tuple[list[SSEEvent], int | None]:
    parser = SSEParser(max_event_bytes=cap)
    got: list[SSEEvent] = []
    try:
        for read in reads:
            got += parser.feed(read)
            if parser.error is not None:
                parser.feed(b"")
        got += parser.close()
    except ResponseTooLargeError as exc:
        return got, exc.limit
    return got, None


def _iterated(reads: list[bytes], cap: int | None) -> tuple[list[SSEEvent], int | None]:
    got: list[SSEEvent] = []
    try:
        for event in iter_sse(reads, max_event_bytes=cap):
            got.append(event)
    except ResponseTooLargeError as exc:
        return got, exc.limit
    return got, None


@pytest.mark.parametrize("raw", _SAMPLES)
@pytest.mark.parametrize("cap", [None, 20])
def test_the_parser_fed_read_by_read_gives_what_iter_sse_gives(raw: bytes, cap: int | None) -> None:
    rng = random.Random(raw)
    splits = [[raw], [raw[i : i + 1] for i in range(len(raw))]]
    for _ in range(50):
        cuts = sorted(rng.sample(range(len(raw) + 1), min(3, len(raw) + 1)))
        splits.append([raw[a:b] for a, b in zip([0, *cuts], [*cuts, len(raw)])])
    whole = _iterated([raw], cap)
    for reads in splits:
        assert _fed(reads, cap) == _iterated(reads, cap) == whole, reads


def test_the_parser_returns_the_events_before_the_cap_and_raises_next() -> None:
    parser = SSEParser(max_event_bytes=10)
    assert parser.feed(b"data: ok\n\ndata: far too long\n") == [SSEEvent("ok")]
    assert isinstance(parser.error, ResponseTooLargeError)
    with pytest.raises(ResponseTooLargeError):
        parser.feed(b"")
    with pytest.raises(ResponseTooLargeError):
        parser.close()
    fresh = SSEParser(max_event_bytes=10)
    with pytest.raises(ResponseTooLargeError):  # nothing came before it: raised at once
        fresh.feed(b"data: far too long\n")
    with pytest.raises(ConfigurationError, match="max_event_bytes"):
        SSEParser(max_event_bytes=0)


# -- keep the helpers honest ---------------------------------------------------------------


def test_the_counting_server_counts_new_connections() -> None:
    with CountingServer() as server:
        for _ in range(2):
            with socket.create_connection((server.host, server.port)) as conn:
                conn.sendall(b"GET /v1/models HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                assert conn.recv(12).startswith(b"HTTP/1.1 200")
        assert server.accepted == 2  # counted when accepted, before the answer


def test_bytes_received_before_a_break_are_handed_out_before_its_error():
    """aiohttp raises a broken body's error before handing out the bytes it holds; the
    transport reads them first (so events sent just before a cut reach the caller) and the
    error comes with the next read."""
    from chatcore._atransport import _buffered

    async def scenario() -> tuple[bytes, bytes, type[BaseException]]:
        from aiohttp.base_protocol import BaseProtocol

        protocol = BaseProtocol(asyncio.get_running_loop())
        content = aiohttp.StreamReader(protocol, 2**16, loop=asyncio.get_running_loop())
        content.feed_data(b"data: one\n\n")
        content.set_exception(aiohttp.ClientPayloadError("cut"))
        first = _buffered(content, 1024)
        second = _buffered(content, 1024)
        try:
            await content.read(10)
        except aiohttp.ClientPayloadError as exc:
            return first, second, type(exc)
        raise AssertionError("the error was lost")

    first, second, error = asyncio.run(scenario())
    assert first == b"data: one\n\n"
    assert second == b""
    assert error is aiohttp.ClientPayloadError
