"""The HTTP transport every provider talks through: one pooled ``requests.Session`` per
provider instance, and the one place where HTTP failures become typed chatcore errors.

What it enforces comes from :mod:`chatcore._http` (shared with any later transport):
credentials only to the base URL's origin (requests never follows a redirect itself),
body caps applied after decompression, wall-clock deadlines for an attempt and a call
(a watchdog thread shuts down the socket of an attempt past its deadline, so a server
dripping bytes cannot hold it), and exception causes without request objects.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import math
import os
import platform
import socket
import threading
import time
from collections.abc import Callable, Generator, Iterator, Mapping
from typing import Any
from urllib.parse import urlsplit

import attrs
import requests
import urllib3
from requests.adapters import HTTPAdapter
from requests.structures import CaseInsensitiveDict
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import DecodeError, ReadTimeoutError
from urllib3.exceptions import HTTPError as Urllib3Error

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
from chatcore._sse import SSEEvent, StreamDecoder, drain, iter_sse
from chatcore.exceptions import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    ResponseDecodeError,
    ResponseTooLargeError,
    StreamError,
    error_from_requests_exception,
    request_id_from,
)
from chatcore.models import ChatChunk

_PY = platform.python_version()


# --------------------------------------------------------------------------------------
# Wall-clock deadlines: a guard per attempt, one watchdog thread per process


class _Guard:
    """One attempt's deadline and, once the answer's head is awaited, its socket."""

    __slots__ = ("deadline", "fired", "sock")

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.sock: socket.socket | None = None
        self.fired = False

    def fire(self) -> None:
        """Shut the socket down: a read blocked on it returns at once."""
        self.fired = True
        self.deadline = math.inf
        sock = self.sock
        if sock is not None:
            with contextlib.suppress(OSError):  # already closed by its owner
                sock.shutdown(socket.SHUT_RDWR)


#: The guard of the attempt running in this context (read by the connection classes).
_current_guard: contextvars.ContextVar[_Guard | None] = contextvars.ContextVar(
    "chatcore_attempt_guard", default=None
)


class _Watchdog:
    """A daemon thread that fires every armed guard whose deadline has passed. It polls
    every :attr:`POLL` seconds while guards are armed and sleeps when none has been for
    :attr:`IDLE_AFTER` seconds; arming and disarming are a dict store and pop."""

    POLL = 0.05
    IDLE_AFTER = 5.0

    def __init__(self) -> None:
        self._guards: dict[int, _Guard] = {}
        self._lock = threading.Lock()
        self._reset()
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self._guards.clear()
        self._wake = threading.Event()
        self._sleeping = True
        self._thread: threading.Thread | None = None

    def arm(self, deadline: float) -> _Guard:
        guard = _Guard(deadline)
        self._guards[id(guard)] = guard
        if self._sleeping:
            self._wake_up()
        return guard

    def disarm(self, guard: _Guard) -> None:
        guard.sock = None
        self._guards.pop(id(guard), None)

    def _wake_up(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="chatcore-deadlines", daemon=True
                )
                self._sleeping = False
                self._thread.start()
            self._wake.set()

    def _run(self) -> None:
        idle = 0.0
        while True:
            guards = tuple(self._guards.values())
            if guards:
                idle = 0.0
                now = time.monotonic()
                for guard in guards:
                    if guard.deadline <= now:
                        guard.fire()
            else:
                idle += self.POLL
                if idle >= self.IDLE_AFTER:
                    self._sleeping = True
                    if not self._guards:  # checked after announcing the sleep
                        self._wake.wait()
                    self._wake.clear()
                    self._sleeping = False
                    idle = 0.0
                    continue
            time.sleep(self.POLL)


_WATCHDOG = _Watchdog()


class _GuardedConnection(HTTPConnection):
    """Hands its socket to the current attempt's guard before waiting for the answer."""

    def getresponse(self) -> Any:
        guard = _current_guard.get()
        if guard is not None:
            guard.sock = self.sock
        return super().getresponse()


class _GuardedTLSConnection(_GuardedConnection, HTTPSConnection):
    """The TLS twin of :class:`_GuardedConnection` (its ``getresponse`` comes first)."""


class _Pool(HTTPConnectionPool):
    ConnectionCls = _GuardedConnection


class _TLSPool(HTTPSConnectionPool):
    ConnectionCls = _GuardedTLSConnection


_POOL_CLASSES: dict[str, type[HTTPConnectionPool]] = {"http": _Pool, "https": _TLSPool}


class _Adapter(HTTPAdapter):
    """An adapter whose connections (direct or through an HTTP proxy) report their socket
    to the attempt's guard. SOCKS proxies keep their own classes (per-read timeouts and
    the between-chunk deadline check still apply)."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _POOL_CLASSES

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if isinstance(manager, urllib3.ProxyManager):
            manager.pool_classes_by_scheme = _POOL_CLASSES
        return manager


# --------------------------------------------------------------------------------------


@attrs.define
class _Attempt:
    """One attempt in flight: its clock, its guard, the model it is for."""

    clock: AttemptClock
    guard: _Guard
    model: str | None


class HttpTransport(TransportBase):
    """JSON over HTTP for one provider instance; thread-safe (``requests.Session`` with a
    pooled ``HTTPAdapter``). Errors are raised as :mod:`chatcore.exceptions` classes."""

    def __init__(self, **options: Any) -> None:
        """``options``: those of :class:`~chatcore._http.TransportBase`."""
        super().__init__(**options)
        session = requests.Session()
        adapter = _Adapter(pool_connections=4, pool_maxsize=self.pool_maxsize, max_retries=0)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        session.headers.update(self.default_headers)
        self.session = session
        self._templates: dict[tuple[Any, ...], requests.PreparedRequest] = {}
        self._env_settings: dict[tuple[str, str], dict[str, Any]] = {}

    @property
    def user_agent(self) -> str:
        """The User-Agent header sent with every request."""
        return str(self.session.headers["User-Agent"])

    def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        model: str | None = None,
        timeout: float | None = None,
    ) -> HttpResult:
        """Send one request and return the decoded JSON answer, or raise a typed error.
        The whole attempt (redirects, head and body) is bounded by ``timeout`` (default:
        the transport's) and by the call's ``timeout_total``; the decompressed body by
        ``max_response_bytes``."""
        response, attempt = self._send(method, path, json_body, params, headers, model, timeout)
        try:
            limit = self.max_response_bytes
            request_id = request_id_from(response.headers)
            size = declared_length(response.headers)
            if size is not None and size > limit:
                content = None
            else:
                content = read_capped(self._body_chunks(response, attempt, size=size), limit)
            if content is None:
                raise too_large(
                    f"the answer to {method} {path}",
                    limit,
                    "max_response_bytes",
                    provider=self.provider,
                    model=model,
                    status_code=response.status_code,
                    request_id=request_id,
                )
        finally:
            _WATCHDOG.disarm(attempt.guard)
            response.close()
        elapsed = response.elapsed.total_seconds()
        if not content:
            return HttpResult(response.status_code, response.headers, None, elapsed, request_id)
        try:
            data = json.loads(content)
        except ValueError as exc:
            error = ResponseDecodeError(
                f"expected JSON from {method} {path}, got "
                f"{response.headers.get('content-type', 'no content type')}: "
                f"{content[:200].decode('utf-8', 'replace')!r}",
                provider=self.provider,
                model=model,
                status_code=response.status_code,
                request_id=request_id,
                secrets=self.secrets,
            )
            cause = detached_cause(exc, self.secrets)
        else:
            return HttpResult(
                response.status_code, response.headers, data, elapsed, request_id, raw=content
            )
        raise error from cause

    def send(self, call: HttpCall, *, model: str | None = None) -> HttpResult:
        """Send a provider's :class:`~chatcore.provider.HttpCall` (see :meth:`request`)."""
        return self.request(
            call.method,
            call.path,
            json_body=call.json,
            params=call.params,
            headers=call.headers,
            model=model,
            timeout=call.timeout,
        )

    def stream_chunks(
        self,
        call: HttpCall,
        *,
        model: str | None,
        decoder: Callable[[HttpResult], StreamDecoder],
    ) -> Generator[ChatChunk, None, None]:
        """Open the stream ``call`` describes and yield the chunks the provider's decoder
        makes of its events; the first chunk carries the answer's request id and headers.
        Lazy: nothing is sent before the first ``next()``. Closing it releases the
        connection; after the terminator, what is left of the body is drained so the
        connection goes back to the pool."""
        opened: list[requests.Response] = []
        events = self.stream_events(
            call.method,
            call.path,
            json_body=call.json,
            params=call.params,
            headers=call.headers,
            model=model,
            on_open=opened.append,
        )
        masker = ChunkMasker(self.secrets)
        try:
            first = True
            decode: StreamDecoder | None = None
            for event in events:
                if decode is None:
                    decode = decoder(head_of(opened[0]))
                for chunk in masker.event(event.data, decode.feed(event)):
                    if first:
                        first = False
                        chunk = masker.first(chunk, opened[0].headers)
                    yield chunk
                if decode.done:
                    drain(events)
                    return
            if decode is None:
                decode = decoder(head_of(opened[0]))
            for chunk in masker.event(None, decode.end()):
                if first:
                    first = False
                    chunk = masker.first(chunk, opened[0].headers)
                yield chunk
        finally:
            events.close()

    def stream_events(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        model: str | None = None,
        on_open: Callable[[requests.Response], None] | None = None,
    ) -> Generator[SSEEvent, None, None]:
        """Open a streaming request (``Accept: text/event-stream``) and yield its
        Server-Sent Events as their bytes arrive, whatever the framing (chunked,
        Content-Length or close-delimited). Lazy: nothing is sent until the first
        ``next()``. An error status raises the typed error before any event; a 2xx answer
        that is not an event stream raises :class:`StreamError` saying what came back.
        The first event must arrive within ``timeout``, ``chunk_timeout`` and what
        remains of ``timeout_total``; each next one within ``chunk_timeout`` of being
        asked for (time the caller spends between events does not count). Closing the
        generator releases the connection."""
        wanted = {"Accept": "text/event-stream"}
        if headers:
            wanted.update(headers)
        response, attempt = self._send(
            method, path, json_body, params, wanted, model, self.chunk_timeout, stream=True
        )
        guard = attempt.guard
        try:
            if on_open is not None:
                on_open(response)
            content_type = response.headers.get("content-type")
            if not is_event_stream(content_type):
                try:
                    excerpt = read_truncated(self._body_chunks(response, attempt), 200)
                except APIError:
                    excerpt = b""
                raise StreamError(
                    f"expected an event stream (text/event-stream) from {method} {path}, "
                    f"got {content_type or 'no content type'}: "
                    f"{excerpt.decode('utf-8', 'replace')!r}",
                    provider=self.provider,
                    model=model,
                    status_code=response.status_code,
                    request_id=request_id_from(response.headers),
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
                    status_code=response.status_code,
                    request_id=request_id_from(response.headers),
                )

            chunks = cap_total(
                self._body_chunks(response, attempt, incremental=True),
                self.max_response_bytes,
                over,
            )
            events = iter_sse(chunks, max_event_bytes=self.max_event_bytes)
            gap = self.chunk_timeout
            first = True
            while True:
                try:
                    event = next(events)
                except StopIteration:
                    break
                except ResponseTooLargeError as exc:
                    exc.provider = exc.provider or self.provider
                    exc.model = exc.model or model
                    raise
                guard.deadline = math.inf  # the caller's time between events is its own
                if first:
                    first = False
                    sock = guard.sock
                    if sock is not None:  # timeout_total no longer cuts the reads
                        with contextlib.suppress(OSError):
                            sock.settimeout(gap)
                yield event
                guard.deadline = time.monotonic() + gap
        finally:
            _WATCHDOG.disarm(guard)
            response.close()

    def close(self) -> None:
        """Close the pooled connections."""
        self.session.close()

    # ----------------------------------------------------------------------------------

    def _send(
        self,
        method: str,
        path: str,
        json_body: Any,
        params: Mapping[str, str] | None,
        headers: Mapping[str, str] | None,
        model: str | None,
        timeout: float | None,
        stream: bool = False,
    ) -> tuple[requests.Response, _Attempt]:
        """Send the request, follow the redirects the policy allows, and return the 2xx
        answer with its head read and its body not yet; raise the typed error of anything
        else. The returned attempt's guard is armed: the caller disarms it."""
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
            read_timeout = attempt_timeout
            clock = AttemptClock(now, attempt_timeout, call_deadline.get())
        if clock.remaining(now) <= 0:
            if clock.call_deadline is not None and clock.call_deadline <= now:
                raise APITimeoutError(
                    "the call's total deadline (timeout_total) passed before this attempt",
                    provider=self.provider,
                    model=model,
                )
            raise clock.expired(provider=self.provider, model=model)
        attempt = _Attempt(clock, _WATCHDOG.arm(clock.first_deadline), model)
        token = _current_guard.set(attempt.guard)
        url = self.url(path)
        started = time.perf_counter()
        hops = 0
        try:
            while True:
                prepared = self._prepare(method, url, query, data, headers)
                error: APIError | None = None
                try:
                    response = self.session.send(
                        prepared,
                        timeout=clock.socket_timeouts(
                            connect_timeout, read_timeout, time.monotonic()
                        ),
                        allow_redirects=False,
                        **self._environment(prepared.url or ""),
                        stream=True,
                    )
                except requests.RequestException as exc:
                    error = self._map(exc, attempt)
                if error is not None:
                    raise error
                status = response.status_code
                if 300 <= status < 400:
                    location = response.headers.get("location")
                    response.close()
                    method, url = self.redirects.follow(
                        method=method,
                        status=status,
                        location=location,
                        url=prepared.url or url,
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
                if status >= 400:
                    self._raise_status(response, attempt, started)
                return response, attempt
        except BaseException:
            _WATCHDOG.disarm(attempt.guard)
            raise
        finally:
            _current_guard.reset(token)

    def _raise_status(self, response: requests.Response, attempt: _Attempt, started: float) -> None:
        """Raise the typed error of a 4xx/5xx answer, reading at most ERROR_BODY_LIMIT
        bytes of its body (truncated, never an error for its size)."""
        try:
            body = read_truncated(self._body_chunks(response, attempt), ERROR_BODY_LIMIT)
        except APIError:
            body = b""  # the status says what failed; a broken body adds nothing
        finally:
            response.close()
        error = map_status(
            response.status_code,
            body,
            CaseInsensitiveDict(response.headers),
            provider=self.provider,
            model=attempt.model,
            secrets=self.secrets,
            mapper=self.error_mapper,
        )
        error.latency = time.perf_counter() - started  # type: ignore[attr-defined]
        raise error

    def _body_chunks(
        self,
        response: requests.Response,
        attempt: _Attempt,
        *,
        incremental: bool = False,
        size: int | None = None,
    ) -> Iterator[bytes]:
        """The decompressed body, at most READ_CHUNK bytes at a time (decompression is
        bounded per read, so a small compressed body cannot inflate in memory). With
        ``incremental``, each read returns what has arrived instead of waiting for a full
        chunk (streams, whatever their framing); with ``size`` (a declared length), no read
        is made past it. Read failures and passed deadlines are
        raised as typed errors."""
        raw = response.raw
        read = raw.read1 if incremental else raw.read
        if (
            incremental
            and raw.chunked
            and raw.supports_chunked_reads()
            and response.headers.get("content-encoding", "identity") == "identity"
        ):
            # a stream sent one HTTP chunk per event (as providers send them): read chunk
            # by chunk, as requests' iter_content does, at most READ_CHUNK bytes a piece
            # (nothing to inflate, so nothing unbounded); about half the per-event cost of
            # read1's buffering
            pieces = raw.read_chunked(READ_CHUNK, decode_content=False)
            read = lambda _amount, decode_content: next(pieces, b"")  # noqa: E731
        guard = attempt.guard
        left = math.inf if size is None else size
        while left > 0:
            error: APIError | None = None
            try:
                chunk = read(READ_CHUNK, decode_content=True)
            except (Urllib3Error, OSError) as exc:
                error = self._map_read(exc, attempt)
            if error is not None:
                raise error
            if guard.fired or time.monotonic() > guard.deadline:
                raise attempt.clock.expired(
                    provider=self.provider, model=attempt.model, phase="reading the answer"
                )
            if not chunk:
                return
            left -= len(chunk)
            yield chunk

    def _prepare(
        self,
        method: str,
        url: str,
        query: Mapping[str, str] | None,
        data: bytes | None,
        headers: Mapping[str, str] | None,
    ) -> requests.PreparedRequest:
        """A prepared request from a per-(method, URL, query) template: what
        ``Session.prepare_request`` does on every call (merging the session's headers,
        parsing and encoding the URL) is done once. The template holds the session headers
        as they were when it was built; cookies the server set are added per request."""
        key = (method, url, tuple(sorted(query.items())) if query else ())
        template = self._templates.get(key)
        if template is None:
            template = requests.PreparedRequest()
            template.prepare(
                method=method,
                url=url,
                headers=dict(self.session.headers),
                params=dict(query) if query else None,
                hooks=self.session.hooks,
            )
            if len(self._templates) < 64:  # a few routes per provider; never unbounded
                self._templates[key] = template
        prepared = template.copy()
        if data is not None:
            prepared.body = data
            prepared.headers["Content-Length"] = str(len(data))
        if headers:
            prepared.headers.update(headers)
        if self.session.cookies:
            prepared.prepare_cookies(self.session.cookies)
        return prepared

    def _environment(self, url: str) -> dict[str, Any]:
        """Proxies, ``verify`` and ``cert`` from the session and the environment
        (``HTTPS_PROXY``, ``NO_PROXY``, ``REQUESTS_CA_BUNDLE``...), resolved once per host
        instead of on every request as ``Session.request`` does."""
        parts = urlsplit(url)
        host = (parts.scheme, parts.netloc)
        cached = self._env_settings.get(host)
        if cached is not None:
            return cached
        found: dict[str, Any] = dict(
            self.session.merge_environment_settings(url, {}, None, None, None)
        )
        found.pop("stream", None)
        if len(self._env_settings) < 64:
            self._env_settings[host] = found
        return found

    def _deadline_error(self, attempt: _Attempt, phase: str) -> APITimeoutError | None:
        """The timeout error when the attempt's wall-clock deadline is why it failed."""
        if attempt.guard.fired or time.monotonic() >= attempt.clock.first_deadline:
            return attempt.clock.expired(provider=self.provider, model=attempt.model, phase=phase)
        return None

    def _map(self, exc: requests.RequestException, attempt: _Attempt) -> APIError:
        """The typed error of a failed send, chained from a credential-free cause."""
        error: APIError | None = None
        if isinstance(exc, (requests.Timeout, requests.ConnectionError)):
            error = self._deadline_error(attempt, "waiting for the answer")
        if error is None:
            error = error_from_requests_exception(
                exc, provider=self.provider, model=attempt.model, secrets=self.secrets
            )
        error.__cause__ = detached_cause(exc, self.secrets)
        return error

    def _map_read(self, exc: BaseException, attempt: _Attempt) -> APIError:
        """The typed error of a failed body read (urllib3 raises its own exceptions)."""
        error: APIError | None = self._deadline_error(attempt, "reading the answer")
        if error is None:
            kind = type(exc).__name__
            message = redact(f"{exc}", self.secrets)
            if isinstance(exc, ReadTimeoutError):
                error = APITimeoutError(
                    f"timed out reading the answer ({kind}): {message}",
                    provider=self.provider,
                    model=attempt.model,
                )
            elif isinstance(exc, DecodeError):
                error = ResponseDecodeError(
                    f"could not decode the response ({kind}): {message}",
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
