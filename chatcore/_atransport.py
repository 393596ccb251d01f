"""The aiohttp transport of :class:`~chatcore.AsyncClient`: the twin of the requests
transport (:mod:`chatcore._transport`), one pooled ``aiohttp.ClientSession`` per provider
instance, and the one place where aiohttp failures become typed chatcore errors.

It applies the same rules, from the same functions of :mod:`chatcore._http`: credentials
only to the base URL's origin (aiohttp never follows a redirect itself; every hop is
counted), body caps applied after decompression, wall-clock deadlines for an attempt, a
call and each event of a stream, and exception causes without request objects. It never
retries and never sleeps.

Decompression: aiohttp (3.13.3 and later) inflates a compressed body at most one read
buffer at a time and stops reading the socket while the inflated bytes wait to be read,
so with every read bounded (``content.read(n)``, never ``read()``), a small compressed
body cannot inflate in memory past the caps; the tests measure it.

Importing this module imports aiohttp; ``import chatcore`` never imports it.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import json
import os
import platform
import re
import ssl
import sys
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator, Mapping
from typing import Any, NoReturn, TypeVar
from urllib.parse import urlsplit
from urllib.request import getproxies, proxy_bypass

import aiohttp
import attrs
from aiohttp.http_exceptions import ContentEncodingError
from multidict import CIMultiDict
from yarl import URL

from chatcore._deadline import call_deadline
from chatcore._http import (
    ERROR_BODY_LIMIT,
    READ_CHUNK,
    AttemptClock,
    ChunkMasker,
    HttpCall,
    HttpResult,
    TransportBase,
    cap_total,
    declared_length,
    detached_cause,
    dumps_body,
    head_of,
    is_event_stream,
    map_status,
    read_capped,
    read_truncated,
    too_large,
)
from chatcore._log import logger
from chatcore._redact import redact
from chatcore._sse import SSEEvent, SSEParser, StreamDecoder
from chatcore.exceptions import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    ConfigurationError,
    ResponseDecodeError,
    ResponseTooLargeError,
    StreamError,
    describe_connection_failure,
    request_id_from,
)
from chatcore.models import ChatChunk

__all__ = ["CA_BUNDLE_VARIABLES", "MIN_AIOHTTP", "AsyncHttpTransport", "ssl_context"]

_T = TypeVar("_T")
_PY = platform.python_version()

#: After a stream's terminator, what is read at most (events, seconds) so the connection
#: can go back to the pool; a stream that has not ended by then loses its connection.
_DRAIN_EVENTS = 8
_DRAIN_SECONDS = 1.0
#: Longest status or header line read: http.client's (requests'), not aiohttp's 8190.
_MAX_HEADER_LINE = 65536
#: The CA bundle variables honoured, first set wins: requests' own two, in its order,
#: then OpenSSL's.
CA_BUNDLE_VARIABLES = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE")
_PROXY_SCHEMES = frozenset({"http", "https"})
#: The oldest aiohttp that inflates a body a read at a time (CVE-2025-69223 fixed in it):
#: with an older one, a small gzip answer could take all the memory before any cap.
MIN_AIOHTTP = (3, 13, 3)


def _check_aiohttp(version: str) -> None:
    """Refuse an aiohttp older than :data:`MIN_AIOHTTP` (:class:`ConfigurationError`)."""
    found = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", version)
    numbers = tuple(int(n or 0) for n in found.groups()) if found else (0,)
    if numbers < MIN_AIOHTTP:
        raise ConfigurationError(
            f"the async transport needs aiohttp {'.'.join(map(str, MIN_AIOHTTP))} or later, "
            f"which bounds the decompression of answers; aiohttp {version} is installed "
            "(pip install -U aiohttp)"
        )


def ssl_context(environ: Mapping[str, str] | None = None) -> ssl.SSLContext:
    """The TLS context of every connection: certificates and host names verified against
    the CA bundle (a file or a directory) named by the first of
    :data:`CA_BUNDLE_VARIABLES` set in ``environ`` (default: ``os.environ``), else
    certifi's bundle, requests' default (the system's when certifi is missing). A bundle
    that cannot be loaded is a :class:`ConfigurationError` naming the variable."""
    env = os.environ if environ is None else environ
    for name in CA_BUNDLE_VARIABLES:
        path = env.get(name)
        if not path:
            continue
        try:
            if os.path.isdir(path):
                return ssl.create_default_context(capath=path)
            return ssl.create_default_context(cafile=path)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigurationError(
                f"{name}={path!r} does not name a readable CA bundle ({type(exc).__name__}: "
                f"{exc}); point it at a PEM file or directory, or unset it"
            ) from None
    try:
        import certifi
    except ImportError:  # requests depends on certifi; a stripped install may not have it
        return ssl.create_default_context()
    return ssl.create_default_context(cafile=certifi.where())


@attrs.frozen
class _Head:
    """The head of an answer as :func:`head_of` reads it (status and a copy of the
    headers: case-insensitive, picklable, unlike aiohttp's read-only view)."""

    status: int
    headers: CIMultiDict[str]


@attrs.define
class _Attempt:
    """One attempt in flight: its clock, the model it is for, and (once the answer's head
    arrived) how long the last HTTP request took to answer."""

    clock: AttemptClock
    model: str | None
    elapsed: float = 0.0


class _Pushed:
    """A sync chunk filter that yields one chunk per chunk it takes (:func:`cap_total`),
    run on chunks pushed one at a time: the shared logic, fed by async reads."""

    __slots__ = ("_box", "_out")

    def __init__(self, make: Callable[[Iterator[bytes]], Iterator[bytes]]) -> None:
        self._box: list[bytes] = []
        self._out = make(iter(self._box.pop, None))

    def push(self, chunk: bytes) -> bytes:
        """``chunk`` through the filter (which may raise instead)."""
        self._box.append(chunk)
        return next(self._out)


class _Events:
    """The Server-Sent Events of one streamed answer, read only as they are asked for."""

    __slots__ = ("_attempt", "_capped", "_content", "_ended", "_parser", "_pending", "_transport")

    def __init__(
        self,
        transport: AsyncHttpTransport,
        response: aiohttp.ClientResponse,
        attempt: _Attempt,
        over: Callable[[], ResponseTooLargeError],
    ) -> None:
        self._transport = transport
        self._content = response.content
        self._attempt = attempt
        limit = transport.max_response_bytes
        self._capped = _Pushed(lambda chunks: cap_total(chunks, limit, over))
        self._parser = SSEParser(max_event_bytes=transport.max_event_bytes)
        self._pending: collections.deque[SSEEvent] = collections.deque()
        self._ended = False

    async def next(self, deadline: float, *, gap: bool) -> SSEEvent | None:
        """The next event, or ``None`` at the end of the body; reads as little as that
        takes, whatever the framing, and all of it before ``deadline`` (monotonic; ``gap``:
        the deadline is the wait for a next event, not the first). Raises the typed error
        of a failed read, a passed deadline or a passed cap."""
        pending = self._pending
        parser = self._parser
        while not pending:
            if parser.error is not None:  # events that came before it were delivered
                raise parser.error
            if self._ended:
                return None
            chunk = await self._transport._read_some(
                self._content, self._attempt, READ_CHUNK, deadline, gap=gap
            )
            if chunk:
                pending.extend(parser.feed(self._capped.push(chunk)))
            else:
                self._ended = True
                pending.extend(parser.close())
        return pending.popleft()


class AsyncHttpTransport(TransportBase):
    """JSON over HTTP for one provider instance, with aiohttp: the async twin of
    :class:`~chatcore._transport.HttpTransport` (same headers, body encoding, redirect and
    credential policy, caps, deadlines and typed errors). Its session is created on
    first use and bound to that event loop; use it from one loop only."""

    def __init__(self, **options: Any) -> None:
        """``options``: those of :class:`~chatcore._http.TransportBase`."""
        super().__init__(**options)
        self._headers: CIMultiDict[str] = CIMultiDict(self.default_headers)
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._proxies: dict[tuple[str, str], tuple[URL | None, Mapping[str, str] | None]] = {}

    @property
    def user_agent(self) -> str:
        """The User-Agent header sent with every request."""
        return self._headers["User-Agent"]

    async def send(self, call: HttpCall, *, model: str | None = None) -> HttpResult:
        """Send ``call`` and return its decoded JSON answer, or raise a typed error. The
        whole attempt (redirects, head and body) is bounded by ``call.timeout`` (default:
        the transport's ``timeout``) and by what remains of the call's ``timeout_total``;
        the decompressed body by ``max_response_bytes``."""
        method, path = call.method, call.path
        response, attempt = await self._open(
            method, path, call.json, call.params, call.headers, model, call.timeout
        )
        head = _head(response)
        try:
            limit = self.max_response_bytes
            request_id = request_id_from(head.headers)
            size = declared_length(head.headers)
            if size is not None and size > limit:
                content = None
            else:
                content = read_capped(await self._read(response, attempt, limit + 1), limit)
            if content is None:
                raise too_large(
                    f"the answer to {method} {path}",
                    limit,
                    "max_response_bytes",
                    provider=self.provider,
                    model=model,
                    status_code=head.status,
                    request_id=request_id,
                )
        finally:
            response.release()  # back to the pool when read to its end, closed otherwise
        if not content:
            return HttpResult(head.status, head.headers, None, attempt.elapsed, request_id)
        try:
            data = json.loads(content)
        except ValueError as exc:
            error = ResponseDecodeError(
                f"expected JSON from {method} {path}, got "
                f"{head.headers.get('content-type', 'no content type')}: "
                f"{content[:200].decode('utf-8', 'replace')!r}",
                provider=self.provider,
                model=model,
                status_code=head.status,
                request_id=request_id,
                secrets=self.secrets,
            )
            cause = detached_cause(exc, self.secrets)
        else:
            return HttpResult(
                head.status, head.headers, data, attempt.elapsed, request_id, raw=content
            )
        raise error from cause

    async def stream_chunks(
        self,
        call: HttpCall,
        *,
        model: str | None,
        decoder: Callable[[HttpResult], StreamDecoder],
    ) -> AsyncGenerator[ChatChunk, None]:
        """Open the stream ``call`` describes (``Accept: text/event-stream``) and yield
        the chunks the provider's decoder makes of its events as their bytes arrive,
        whatever the framing (chunked, Content-Length or close-delimited); the first chunk
        carries the answer's request id and headers. Lazy: nothing is sent before the
        first ``__anext__``.

        An error status raises the typed error before any chunk; a 2xx answer that is not
        an event stream raises :class:`StreamError` naming what came back. The first event
        must arrive within ``timeout``, ``chunk_timeout`` and what remains of
        ``timeout_total``; each next one within ``chunk_timeout`` of being asked for (time
        the caller spends between chunks does not count). Closing the generator
        (``aclose()``, or cancelling the task reading it) releases the connection; after
        the decoder is done, what is left of the body is drained a little so the
        connection goes back to the pool."""
        wanted = {"Accept": "text/event-stream"}
        if call.headers:
            wanted.update(call.headers)
        method, path = call.method, call.path
        response, attempt = await self._open(
            method, path, call.json, call.params, wanted, model, self.chunk_timeout, stream=True
        )
        try:
            head = _head(response)
            content_type = head.headers.get("content-type")
            request_id = request_id_from(head.headers)
            if not is_event_stream(content_type):
                try:
                    excerpt = read_truncated(await self._read(response, attempt, 200), 200)
                except APIError:
                    excerpt = b""
                raise StreamError(
                    f"expected an event stream (text/event-stream) from {method} {path}, "
                    f"got {content_type or 'no content type'}: "
                    f"{excerpt.decode('utf-8', 'replace')!r}",
                    provider=self.provider,
                    model=model,
                    status_code=head.status,
                    request_id=request_id,
                    should_retry=False,
                    secrets=self.secrets,
                )

            def over() -> ResponseTooLargeError:
                return too_large(
                    f"the event stream from {method} {path}",
                    self.max_response_bytes,
                    "max_response_bytes",
                    provider=self.provider,
                    model=model,
                    status_code=head.status,
                    request_id=request_id,
                )

            events = _Events(self, response, attempt, over)
            deadline = attempt.clock.first_deadline
            gap = False
            first = True
            decode: StreamDecoder | None = None
            masker = ChunkMasker(self.secrets)
            while True:
                try:
                    event = await events.next(deadline, gap=gap)
                except ResponseTooLargeError as exc:
                    exc.provider = exc.provider or self.provider
                    exc.model = exc.model or model
                    raise
                if event is None:
                    break
                if decode is None:
                    decode = decoder(head_of(head))
                for chunk in masker.event(event.data, decode.feed(event)):
                    if first:
                        first = False
                        chunk = masker.first(chunk, head.headers)
                    yield chunk
                if decode.done:
                    await self._drain(events)
                    return
                # the caller's time between chunks is its own: the wait starts now
                deadline = time.monotonic() + self.chunk_timeout
                gap = True
            if decode is None:
                decode = decoder(head_of(head))
            for chunk in masker.event(None, decode.end()):
                if first:
                    first = False
                    chunk = masker.first(chunk, head.headers)
                yield chunk
        finally:
            response.release()  # back to the pool when read to its end, closed otherwise

    async def aclose(self) -> None:
        """Close the session and its pooled connections, from the loop the transport was
        used in (another loop: :class:`ConfigurationError`); harmless when there is
        nothing to close. The transport may be used again afterwards, from any loop: a
        new session is made on first use."""
        session = self._session
        if session is None:
            return
        self._check_loop(asyncio.get_running_loop())
        self._session = None
        self._loop = None
        await session.close()

    # ----------------------------------------------------------------------------------

    def _check_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """Refuse a loop other than the one the session was made in."""
        if self._loop is not None and self._loop is not loop:
            raise ConfigurationError(
                f"{self.provider}: an AsyncClient is bound to one event loop, the one it was "
                "first used in, and this call runs in another; create one AsyncClient per "
                "event loop (or aclose() it in its loop before using it in another)"
            )

    def _bound_session(self) -> aiohttp.ClientSession:
        """The session, made on first use in the running loop and bound to it."""
        loop = asyncio.get_running_loop()
        self._check_loop(loop)
        session = self._session
        if session is not None:
            return session
        _check_aiohttp(aiohttp.__version__)
        context = ssl_context()
        connect_timeout = self.timeout[0]
        connector = aiohttp.TCPConnector(limit=max(1, self.pool_maxsize), ssl=context)
        session = aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout),
            auto_decompress=True,  # bounded per read by aiohttp itself (module docstring)
            trust_env=False,  # proxies are resolved here, as requests does (no .netrc)
            raise_for_status=False,
            read_bufsize=READ_CHUNK,
            max_line_size=_MAX_HEADER_LINE,
            max_field_size=_MAX_HEADER_LINE,
        )
        self._session, self._loop = session, loop
        return session

    def _proxy(self, url: str) -> tuple[URL | None, Mapping[str, str] | None]:
        """The proxy for ``url`` from the environment (``HTTPS_PROXY``, ``HTTP_PROXY``,
        ``ALL_PROXY``, ``NO_PROXY``) as requests picks it, and the headers that carry the
        credentials in its URL (``Proxy-Authorization``); resolved once per scheme and
        host. Only http and https proxies are supported (anything else is a
        :class:`ConfigurationError`, never a direct connection)."""
        parts = urlsplit(url)
        key = (parts.scheme, parts.netloc)
        found = self._proxies.get(key)
        if found is not None:
            return found
        proxies = getproxies()
        chosen = proxies.get(parts.scheme) or proxies.get("all")
        proxy: URL | None = None
        proxy_headers: dict[str, str] | None = None
        if chosen and not proxy_bypass(parts.hostname or ""):
            if "://" not in chosen:
                chosen = f"http://{chosen}"
            proxy = URL(chosen)
            if proxy.scheme not in _PROXY_SCHEMES:
                raise ConfigurationError(
                    f"the {proxy.scheme} proxy set in the environment for {parts.scheme} "
                    "URLs is not supported by the async transport (http and https proxies "
                    "are)"
                )
            if proxy.user is not None:
                proxy_headers = {
                    "Proxy-Authorization": _basic_auth(proxy.user, proxy.password or "")
                }
                proxy = proxy.with_user(None)
        found = (proxy, proxy_headers)
        if len(self._proxies) < 64:
            self._proxies[key] = found
        return found

    async def _open(
        self,
        method: str,
        path: str,
        json_body: Any,
        params: Mapping[str, str] | None,
        headers: Mapping[str, str] | None,
        model: str | None,
        timeout: float | None,
        stream: bool = False,
    ) -> tuple[aiohttp.ClientResponse, _Attempt]:
        """Send the request, follow the redirects the policy allows, and return the 2xx
        answer with its head read and its body not yet (the caller releases it); raise the
        typed error of anything else."""
        query: Mapping[str, str] | None = self.params
        if params:
            query = {**self.params, **params}
        data = dumps_body(json_body) if json_body is not None else None
        connect_timeout, attempt_timeout = self.timeout
        now = time.monotonic()
        if stream:
            read_timeout = self.chunk_timeout if timeout is None else timeout
            connect_timeout = min(connect_timeout, read_timeout)
            clock = AttemptClock(now, attempt_timeout, call_deadline.get(), read_timeout)
        else:
            if timeout is not None:
                attempt_timeout = timeout
                connect_timeout = min(connect_timeout, timeout)
            clock = AttemptClock(now, attempt_timeout, call_deadline.get())
        if clock.remaining(now) <= 0:
            if clock.call_deadline is not None and clock.call_deadline <= now:
                raise APITimeoutError(
                    "the call's total deadline (timeout_total) passed before this attempt",
                    provider=self.provider,
                    model=model,
                )
            raise clock.expired(provider=self.provider, model=model)
        attempt = _Attempt(clock, model)
        url = self.url(path)
        session = self._bound_session()
        sent_headers = self._headers.copy()
        if headers:
            sent_headers.update(headers)
        started = time.perf_counter()
        hops = 0
        while True:
            proxy, proxy_headers = self._proxy(url)
            hop_headers = sent_headers
            if proxy_headers and not url.startswith("https:"):
                # a proxied http request carries them itself; https sends them in CONNECT
                hop_headers = sent_headers.copy()
                hop_headers.update(proxy_headers)
                proxy_headers = None
            sock_connect, _ = clock.socket_timeouts(connect_timeout, 0.0, time.monotonic())
            request = session.request(
                method,
                url,
                params=query or None,
                data=data,
                headers=hop_headers,
                allow_redirects=False,
                proxy=proxy,
                proxy_headers=proxy_headers,
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=sock_connect),
            )
            sent = time.perf_counter()
            error: APIError
            try:
                response = await _within(clock.first_deadline, request)
            except aiohttp.ClientError as exc:
                error = self._map(exc, attempt)
            except asyncio.TimeoutError as exc:
                error = clock.expired(provider=self.provider, model=model)
                error.__cause__ = detached_cause(exc, self.secrets)
            except ValueError as exc:  # a header or URL aiohttp refuses to send
                error = self._map(exc, attempt)
            else:
                attempt.elapsed = time.perf_counter() - sent
                status = response.status
                if status < 300:
                    return response, attempt
                if status >= 400:
                    await self._raise_status(response, attempt, started)
                location = response.headers.get("location")
                requested = str(response.url)
                response.release()
                method, url = self.redirects.follow(
                    method=method,
                    status=status,
                    location=location,
                    url=requested,
                    hops=hops,
                    provider=self.provider,
                    model=model,
                    secrets=self.secrets,
                )
                hops += 1
                logger.debug(
                    "{provider}: following same-origin redirect {status} "
                    "(HTTP request {number} of this attempt)",
                    provider=self.provider,
                    status=status,
                    number=hops + 1,
                )
                if method in ("GET", "HEAD"):
                    data = None
                query = None
                continue
            raise error  # outside the except clause: no aiohttp exception as its context

    async def _raise_status(
        self, response: aiohttp.ClientResponse, attempt: _Attempt, started: float
    ) -> NoReturn:
        """Raise the typed error of a 4xx/5xx answer, reading at most ERROR_BODY_LIMIT
        bytes of its body (truncated, never an error for its size)."""
        head = _head(response)
        try:
            body = read_truncated(
                await self._read(response, attempt, ERROR_BODY_LIMIT), ERROR_BODY_LIMIT
            )
        except APIError:
            body = b""  # the status says what failed; a broken body adds nothing
        finally:
            response.release()
        error = map_status(
            head.status,
            body,
            head.headers,
            provider=self.provider,
            model=attempt.model,
            secrets=self.secrets,
            mapper=self.error_mapper,
        )
        error.latency = time.perf_counter() - started  # type: ignore[attr-defined]
        raise error

    async def _read(
        self, response: aiohttp.ClientResponse, attempt: _Attempt, budget: int
    ) -> list[bytes]:
        """The decompressed body in pieces, up to its end or ``budget`` bytes (nothing is
        read past them), each read at most READ_CHUNK bytes and all of them within the
        attempt's deadline."""
        parts: list[bytes] = []
        total = 0
        content = response.content
        deadline = attempt.clock.first_deadline
        while total < budget:
            chunk = await self._read_some(
                content, attempt, min(READ_CHUNK, budget - total), deadline
            )
            if not chunk:
                break
            parts.append(chunk)
            total += len(chunk)
        return parts

    async def _read_some(
        self,
        content: aiohttp.StreamReader,
        attempt: _Attempt,
        size: int,
        deadline: float,
        *,
        gap: bool = False,
    ) -> bytes:
        """What has arrived of the decompressed body, 1 to ``size`` bytes (``b""`` at its
        end), waiting for it no later than ``deadline`` (``gap``: a stream's wait for its
        next event). Failures and a passed deadline are raised as typed errors."""
        error: APIError
        try:
            # what has already arrived is taken at once: no timer, no wait (most answers
            # arrive with their head, most events with their chunk)
            ready = content.read_nowait(size)
            if ready or content.at_eof():
                if time.monotonic() > deadline:
                    raise asyncio.TimeoutError
                return ready
            return await _within(deadline, content.read(size))
        except aiohttp.ClientError as exc:
            rest = _buffered(content, size)
            if rest:  # what came before the break first; the next read raises it
                return rest
            error = self._map_read(exc, attempt)
        except asyncio.TimeoutError as exc:
            error = attempt.clock.expired(
                deadline if gap else None,
                provider=self.provider,
                model=attempt.model,
                phase="reading the answer",
            )
            error.__cause__ = detached_cause(exc, self.secrets)
        raise error  # outside the except clause: no aiohttp exception as its context

    async def _drain(self, events: _Events) -> None:
        """Read what follows a stream's terminator (the chunked body's last, empty chunk),
        a few events and a second at most, so the connection goes back to the pool; a
        failure here only means the connection is closed instead (the answer is whole)."""
        deadline = time.monotonic() + min(self.chunk_timeout, _DRAIN_SECONDS)
        for _ in range(_DRAIN_EVENTS):
            try:
                event = await events.next(deadline, gap=True)
            except APIError:
                return
            if event is None:
                return

    def _map(self, exc: aiohttp.ClientError | ValueError, attempt: _Attempt) -> APIError:
        """The typed error of a failed request (before its head arrived), chained from a
        credential-free cause."""
        kind = type(exc).__name__
        error: APIError
        if isinstance(exc, aiohttp.ServerTimeoutError):
            if time.monotonic() >= attempt.clock.first_deadline:  # cut to the deadline
                error = attempt.clock.expired(provider=self.provider, model=attempt.model)
            else:
                what = (
                    "timed out connecting"
                    if isinstance(exc, aiohttp.ConnectionTimeoutError)
                    else "timed out"
                )
                error = APITimeoutError(
                    f"{what} ({kind}): {exc}",
                    provider=self.provider,
                    model=attempt.model,
                    secrets=self.secrets,
                )
        elif isinstance(exc, ValueError):  # aiohttp.InvalidURL is one too
            what = "request target" if isinstance(exc, aiohttp.InvalidURL) else "request"
            error = APIConnectionError(
                f"invalid {what} ({kind}: {exc}); check the provider's base_url and headers",
                provider=self.provider,
                model=attempt.model,
                should_retry=False,
                secrets=self.secrets,
            )
        elif _is_decoding_error(exc):
            error = ResponseDecodeError(
                f"could not decode the response ({kind}): {exc}",
                provider=self.provider,
                model=attempt.model,
                secrets=self.secrets,
            )
        else:
            plain = describe_connection_failure(exc)
            error = APIConnectionError(
                f"connection failed: {plain}" if plain else f"connection failed ({kind}): {exc}",
                provider=self.provider,
                model=attempt.model,
                secrets=self.secrets,
            )
        error.__cause__ = detached_cause(exc, self.secrets)
        return error

    def _map_read(self, exc: aiohttp.ClientError, attempt: _Attempt) -> APIError:
        """The typed error of a failed body read, chained from a credential-free cause."""
        kind = type(exc).__name__
        message = redact(f"{exc}", self.secrets)
        error: APIError
        if _is_decoding_error(exc):
            error = ResponseDecodeError(
                f"could not decode the response ({kind}): {message}",
                provider=self.provider,
                model=attempt.model,
            )
        elif isinstance(exc, aiohttp.ServerTimeoutError):
            error = APITimeoutError(
                f"timed out reading the answer ({kind}): {message}",
                provider=self.provider,
                model=attempt.model,
            )
        else:
            error = APIConnectionError(
                f"connection failed while reading the answer ({kind}): {message}",
                provider=self.provider,
                model=attempt.model,
            )
        error.__cause__ = detached_cause(exc, self.secrets)
        return error


def _head(response: aiohttp.ClientResponse) -> _Head:
    """The status and a copy of the headers of ``response``."""
    return _Head(response.status, CIMultiDict(response.headers))


def _basic_auth(user: str, password: str) -> str:
    """A ``Basic`` credential, encoded as requests encodes it (latin-1, else UTF-8)."""
    pair = f"{user}:{password}"
    try:
        raw = pair.encode("latin-1")
    except UnicodeEncodeError:
        raw = pair.encode("utf-8")
    return "Basic " + base64.b64encode(raw).decode("ascii")


def _buffered(content: aiohttp.StreamReader, size: int) -> bytes:
    """Up to ``size`` bytes that arrived before the connection broke. aiohttp raises a
    broken body's error before handing out what it already holds, so events sent just
    before a cut would be lost (and a stream cut after its first events would look like
    one that failed to open); the sync transport delivers them. Reads the reader's buffer
    past its stored error, which stays set, so the next read raises it."""
    if not getattr(content, "_buffer", None):
        return b""
    error = content.exception()
    try:
        content._exception = None
        return content.read_nowait(size)
    except (RuntimeError, aiohttp.ClientError):
        return b""
    finally:
        content._exception = error


def _is_decoding_error(exc: BaseException) -> bool:
    """True when aiohttp failed to decompress the body (its Content-Encoding is broken)."""
    return isinstance(exc, aiohttp.ClientPayloadError) and isinstance(
        exc.__cause__, ContentEncodingError
    )


if sys.version_info >= (3, 11):
    _timeout_at = asyncio.timeout_at
else:  # aiohttp depends on async-timeout before 3.11
    from async_timeout import timeout_at as _timeout_at  # type: ignore[import-not-found,no-redef,unused-ignore]


async def _within(deadline: float, awaitable: Awaitable[_T]) -> _T:
    """``await awaitable``, cancelled with :class:`asyncio.TimeoutError` at ``deadline``
    (monotonic seconds; a deadline already passed fails at once). A timer on the current
    task, not a task of its own as ``asyncio.wait_for`` makes on 3.11."""
    loop = asyncio.get_running_loop()
    async with _timeout_at(loop.time() + (deadline - time.monotonic())):
        return await awaitable
