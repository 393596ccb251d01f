"""What every chatcore transport shares, as pure logic (no I/O, no HTTP library): where a
request carrying credentials may go (the origin and redirect policy), how much of an answer
is read (body caps), how long an attempt may wait (deadline arithmetic), and exception
causes that hold no request, response or credential.

The requests transport (:mod:`chatcore._transport`) applies these; an aiohttp transport
applies the same functions, so both refuse, cap and time out alike.
"""

from __future__ import annotations

import json
import platform
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any
from urllib.parse import urljoin, urlsplit

import attrs

from chatcore._redact import mask_secrets, may_hold_secret, redact, usable_secrets
from chatcore.exceptions import (
    APIStatusError,
    APITimeoutError,
    ConfigurationError,
    RedirectError,
    ResponseTooLargeError,
    ValidationError,
    error_from_response,
    request_id_from,
)
from chatcore.models import ChatChunk

__all__ = [
    "DEFAULT_MAX_EVENT_BYTES",
    "DEFAULT_MAX_REDIRECTS",
    "DEFAULT_MAX_RESPONSE_BYTES",
    "ERROR_BODY_LIMIT",
    "READ_CHUNK",
    "AttemptClock",
    "ChunkMasker",
    "ErrorMapper",
    "HttpCall",
    "HttpResult",
    "Origin",
    "RedirectPolicy",
    "TransportBase",
    "TransportCause",
    "cap_total",
    "declared_length",
    "detached_cause",
    "dumps_body",
    "head_of",
    "is_event_stream",
    "map_status",
    "read_capped",
    "read_truncated",
    "too_large",
]

#: Same-origin redirects followed per attempt before :class:`RedirectError`.
DEFAULT_MAX_REDIRECTS = 2
#: Largest decompressed answer read (a whole JSON answer, or all of a stream).
DEFAULT_MAX_RESPONSE_BYTES = 32 * 1024 * 1024
#: Largest single Server-Sent Event.
DEFAULT_MAX_EVENT_BYTES = 4 * 1024 * 1024
#: How much of an error (4xx/5xx) body is read; the rest is dropped, never an error.
ERROR_BODY_LIMIT = 64 * 1024
#: Bytes asked for per read of a body (decompressed).
READ_CHUNK = 64 * 1024

_DEFAULT_PORTS = {"http": 80, "https": 443}
#: Redirects that keep the method and body.
_KEEPS_METHOD = frozenset({307, 308})
#: Redirects that turn anything but GET/HEAD into a GET.
_CHANGES_METHOD = frozenset({301, 302, 303})


# --------------------------------------------------------------------------------------
# What a provider asks to send, and what comes back


@attrs.frozen
class HttpCall:
    """One HTTP request a provider wants sent, described, not sent: the core's transport
    (requests for :class:`~chatcore.Client`, aiohttp for :class:`~chatcore.AsyncClient`)
    sends it with the provider's base URL, credentials and default query parameters.

    ``path`` is relative to the base URL (or an absolute URL on its origin); ``json`` the
    body (``None``: no body); ``params`` and ``headers`` are added to the provider's own;
    ``timeout`` replaces the provider's per-attempt ``timeout`` for this call (health
    probes); ``stream`` asks for an event stream (``Accept: text/event-stream``)."""

    method: str
    path: str
    json: Any = None
    params: Mapping[str, str] | None = None
    headers: Mapping[str, str] | None = None
    timeout: float | None = None
    stream: bool = False


@attrs.frozen
class HttpResult:
    """A successful (2xx) answer: status, headers, decoded JSON, timing, request id.
    For a stream, ``data`` is ``None`` (the events follow)."""

    status_code: int
    headers: Mapping[str, str]
    data: Any
    elapsed: float
    request_id: str | None
    #: The body's bytes as received (decompressed), when the transport kept them: lets
    #: the pipeline skip the masking walk of an answer whose bytes hold no secret.
    raw: bytes | None = attrs.field(default=None, eq=False, repr=False)


#: A provider's own mapping of an error answer (``Provider.map_error``).
ErrorMapper = Callable[[int, bytes, Mapping[str, str]], Any]


class ChunkMasker:
    """Masks a stream's chunks where they could carry a secret, per event: a chunk made of
    an event whose text holds no secret (and cannot hide one behind a JSON escape) is
    passed through untouched, so the usual chunk costs a substring search, not a walk.
    Both transports use it; streams they deliver need no masking after."""

    __slots__ = ("secrets",)

    def __init__(self, secrets: Iterable[str]) -> None:
        self.secrets = usable_secrets(secrets)

    def event(self, data: str | None, chunks: Iterable[ChatChunk]) -> Iterable[ChatChunk]:
        """``chunks`` made of an event whose data is ``data`` (``None``: unknown)."""
        if not self.secrets.values:
            return chunks
        if data is not None and not may_hold_secret(data, None, self.secrets):
            return chunks
        return [mask_secrets(chunk, self.secrets) for chunk in chunks]

    def first(self, chunk: ChatChunk, headers: Mapping[str, str]) -> ChatChunk:
        """The stream's first chunk, carrying the answer's request id and headers."""
        chunk = attrs.evolve(chunk, request_id=request_id_from(headers), headers=headers)
        if self.secrets.values and may_hold_secret("", headers, self.secrets):
            chunk = mask_secrets(chunk, self.secrets)
        return chunk


def head_of(response: Any) -> HttpResult:
    """The head of a streamed answer (status, headers, request id) as an
    :class:`HttpResult` with no data; ``response`` has ``status_code`` / ``status`` and
    ``headers``."""
    status = getattr(response, "status_code", None)
    if status is None:
        status = response.status
    headers = response.headers
    return HttpResult(int(status), headers, None, 0.0, request_id_from(headers))


def map_status(
    status_code: int,
    body: bytes,
    headers: Mapping[str, str],
    *,
    provider: str | None,
    model: str | None,
    secrets: Iterable[str],
    mapper: ErrorMapper | None = None,
) -> APIStatusError:
    """The typed error of a 4xx/5xx answer: the provider's own mapping when it has one
    for this body, else the core's (:func:`~chatcore.exceptions.error_from_response`).
    A mapper that fails is ignored (the core's mapping is used), never a crash."""
    if mapper is not None:
        try:
            mapped = mapper(status_code, body, headers)
        except Exception:  # a buggy mapper must not hide the answer
            mapped = None
        if isinstance(mapped, APIStatusError):
            if mapped.provider is None:
                mapped.provider = provider
            if mapped.model is None:
                mapped.model = model
            if mapped.request_id is None:
                mapped.request_id = request_id_from(headers)
            if not mapped.headers:
                mapped.headers = dict(headers)
            mapped.add_secrets(secrets)
            return mapped
    return error_from_response(
        status_code, body, headers, provider=provider, model=model, secrets=secrets
    )


# --------------------------------------------------------------------------------------
# What every transport is configured with


class TransportBase:
    """The configuration every transport shares, set up one way: the provider's base URL
    and the origin its credentials are bound to, timeouts, caps, secrets, error mapping,
    and the default headers (User-Agent, JSON content negotiation, the provider's own).
    :class:`~chatcore._transport.HttpTransport` (requests) and
    :class:`~chatcore._atransport.AsyncHttpTransport` (aiohttp) build on it."""

    def __init__(
        self,
        *,
        provider: str,
        base_url: str,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        secrets: Iterable[str] = (),
        timeout: float = 600.0,
        connect_timeout: float = 5.0,
        pool_maxsize: int = 32,
        user_agent_product: tuple[str, str] | None = None,
        chunk_timeout: float = 60.0,
        max_redirects: int = DEFAULT_MAX_REDIRECTS,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
        error_mapper: ErrorMapper | None = None,
    ) -> None:
        self.provider = provider
        self.error_mapper = error_mapper
        self.base_url = base_url.rstrip("/")
        self.secrets = tuple(s for s in secrets if s)
        self.timeout = (connect_timeout, timeout)
        self.chunk_timeout = chunk_timeout
        self.max_response_bytes = max_response_bytes
        self.max_event_bytes = max_event_bytes
        self.pool_maxsize = pool_maxsize
        self.params = dict(params or {})
        try:
            origin = Origin.of(self.base_url)
        except ValueError:
            origin = Origin("", "", 0)  # matches no URL: every redirect is refused
        self.redirects = RedirectPolicy(origin, max_redirects)
        ua = f"chatcore/{_version()}"
        if user_agent_product and user_agent_product[0]:
            ua += f" {user_agent_product[0]}/{user_agent_product[1] or 'unknown'}"
        ua += f" python/{platform.python_version()}"
        #: The headers of every request: chatcore's, then the provider's (credentials).
        self.default_headers: dict[str, str] = {
            "User-Agent": ua,
            "Accept": "application/json",
            "Content-Type": "application/json",
        }
        if headers:
            self.default_headers.update(headers)

    def url(self, path: str) -> str:
        """The absolute URL of ``path``. An absolute URL is kept only when it is on the
        base URL's origin (:class:`~chatcore.exceptions.ConfigurationError` otherwise):
        the credentials this transport sends never go anywhere else."""
        if path.startswith(("http://", "https://")):
            self.redirects.check_target(path)
            return path
        return f"{self.base_url}/{path.lstrip('/')}"


def _version() -> str:
    from chatcore import __version__

    return __version__


# --------------------------------------------------------------------------------------
# Origins and redirects


@attrs.frozen
class Origin:
    """The (scheme, host, port) of a URL, the unit credentials are bound to."""

    scheme: str
    host: str
    port: int

    @classmethod
    def of(cls, url: str) -> Origin:
        """The origin of an absolute ``http(s)`` URL; ``ValueError`` when it has none."""
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        host = (parts.hostname or "").lower()
        if scheme not in _DEFAULT_PORTS or not host:
            raise ValueError("not an absolute http(s) URL")
        port = parts.port  # ValueError on a port out of range or not a number
        return cls(scheme, host, port if port is not None else _DEFAULT_PORTS[scheme])

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


@attrs.frozen
class RedirectPolicy:
    """chatcore's redirect rule, the same for every provider and transport.

    Credentials (``Authorization``, ``api-key``, any option declared ``secret=True``) are
    only ever sent to :attr:`origin`, the configured base URL's. A redirect is followed
    only when it stays on that origin, keeps the method (307/308, or 301/302/303 of a GET
    or HEAD) and is within :attr:`max_redirects` hops; anything else is a
    :class:`RedirectError` naming the target origin (never its path or query), and the
    target is never contacted."""

    origin: Origin
    max_redirects: int = DEFAULT_MAX_REDIRECTS

    def check_target(self, url: str) -> None:
        """Refuse a request whose URL is not on :attr:`origin` (a provider building an
        absolute URL to another host would otherwise send it the key)."""
        try:
            target = Origin.of(url)
        except ValueError as exc:
            raise ConfigurationError(
                f"refusing to send a request to {redact(url)!r}: not an http(s) URL"
            ) from exc
        if target != self.origin:
            raise ConfigurationError(
                f"refusing to send credentials to {target}: requests go only to the "
                f"configured base_url's origin {self.origin}"
            )

    def follow(
        self,
        *,
        method: str,
        status: int,
        location: str | None,
        url: str,
        hops: int,
        provider: str | None = None,
        model: str | None = None,
        secrets: Iterable[str] = (),
    ) -> tuple[str, str]:
        """The ``(method, absolute URL)`` of the next hop after a 3xx answer to ``method
        url``, ``hops`` redirects into the attempt; or :class:`RedirectError`."""
        method = method.upper()
        sent = hops + 1

        def refuse(why: str, target: str | None) -> RedirectError:
            return RedirectError(
                f"HTTP {status} redirect not followed: {why} ({sent} HTTP request"
                f"{'s' if sent != 1 else ''} made in this attempt)",
                location=target,
                provider=provider,
                model=model,
                status_code=status,
                secrets=secrets,
            )

        if not location:
            raise refuse("the answer has no Location header", None)
        try:
            next_url = urljoin(url, location.strip())
            target = Origin.of(next_url)
        except ValueError:
            raise refuse("its Location is not an http(s) URL", None) from None
        if target != self.origin:
            raise refuse(
                f"it points to another origin, {target}; credentials are sent only to "
                f"{self.origin} (set base_url to the endpoint that answers)",
                str(target),
            )
        if status in _CHANGES_METHOD and method not in ("GET", "HEAD"):
            raise refuse(
                f"it would turn this {method} into a GET (only 307/308 keep the method)",
                str(target),
            )
        if status not in _KEEPS_METHOD and status not in _CHANGES_METHOD:
            raise refuse("chatcore follows only 301, 302, 303, 307 and 308", str(target))
        if hops >= self.max_redirects:
            raise refuse(f"more than max_redirects={self.max_redirects} redirects", str(target))
        return method, next_url


# --------------------------------------------------------------------------------------
# Body caps


def too_large(
    what: str,
    limit: int,
    setting: str,
    *,
    provider: str | None = None,
    model: str | None = None,
    status_code: int | None = None,
    request_id: str | None = None,
) -> ResponseTooLargeError:
    """The error for an answer over a cap: what, the cap, and the setting that raises it."""
    return ResponseTooLargeError(
        f"{what} is larger than {setting}={limit} bytes; reading stopped at the cap "
        f"(raise {setting} in the provider's options if such answers are expected)",
        limit=limit,
        provider=provider,
        model=model,
        status_code=status_code,
        request_id=request_id,
    )


def declared_length(headers: Mapping[str, str]) -> int | None:
    """The body size an answer declares (``Content-Length`` without ``Content-Encoding``),
    or ``None``: over a cap, it is refused before anything is read."""
    declared = headers.get("content-length")
    if declared is None or headers.get("content-encoding", "identity") != "identity":
        return None
    try:
        size = int(declared)
    except ValueError:
        return None
    return size if size >= 0 else None


def read_capped(chunks: Iterable[bytes], limit: int) -> bytes | None:
    """All of ``chunks`` joined, or ``None`` as soon as they pass ``limit`` bytes (the
    caller raises and closes; nothing more is read)."""
    parts: list[bytes] = []
    total = 0
    for chunk in chunks:
        total += len(chunk)
        if total > limit:
            return None
        parts.append(chunk)
    return parts[0] if len(parts) == 1 else b"".join(parts)


def read_truncated(chunks: Iterable[bytes], limit: int = ERROR_BODY_LIMIT) -> bytes:
    """The first ``limit`` bytes of ``chunks``; the rest is never read."""
    parts: list[bytes] = []
    total = 0
    for chunk in chunks:
        parts.append(chunk[: limit - total])
        total += len(parts[-1])
        if total >= limit:
            break
    return b"".join(parts)


def cap_total(
    chunks: Iterable[bytes], limit: int, over: Callable[[], ResponseTooLargeError]
) -> Iterator[bytes]:
    """``chunks`` passed through, raising ``over()`` once their total passes ``limit``."""
    total = 0
    for chunk in chunks:
        total += len(chunk)
        if total > limit:
            raise over()
        yield chunk


def is_event_stream(content_type: str | None) -> bool:
    """True for ``text/event-stream`` (any parameters, any case)."""
    if not content_type:
        return False
    return content_type.split(";", 1)[0].strip().lower() == "text/event-stream"


def dumps_body(body: Any) -> bytes:
    """A request body as compact UTF-8 JSON; NaN and infinities (not JSON) are a
    :class:`ValidationError`, the last line of defence behind request validation."""
    try:
        return json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode(
            "utf-8"
        )
    except ValueError as exc:
        raise ValidationError(
            [("body", f"cannot be sent as JSON: {exc} (NaN and infinities are not JSON)")]
        ) from None
    except UnicodeEncodeError:
        raise ValidationError(
            [("body", "contains a lone surrogate, which UTF-8 cannot encode")]
        ) from None


# --------------------------------------------------------------------------------------
# Deadlines


@attrs.define
class AttemptClock:
    """The deadlines of one attempt, from the moment it starts (monotonic seconds).

    * ``timeout``: the attempt's wall time until its answer is read (a stream: until its
      first event), not only each socket read;
    * ``call_deadline``: the call's ``timeout_total`` (across attempts, and for a stream up
      to its first chunk), when set;
    * ``chunk_timeout`` (streams): the longest wait for the first and for each next event.
    """

    started: float
    timeout: float
    call_deadline: float | None = None
    chunk_timeout: float | None = None

    @property
    def first_deadline(self) -> float:
        """When the answer (a stream: its first event) must have arrived."""
        deadline = self.started + self.timeout
        if self.chunk_timeout is not None:
            deadline = min(deadline, self.started + self.chunk_timeout)
        if self.call_deadline is not None:
            deadline = min(deadline, self.call_deadline)
        return deadline

    def remaining(self, now: float) -> float:
        """Seconds left before :attr:`first_deadline` (<= 0 once passed)."""
        return self.first_deadline - now

    def socket_timeouts(self, connect: float, read: float, now: float) -> tuple[float, float]:
        """The (connect, read) socket timeouts of the next operation: the configured ones,
        cut to what remains (never below a millisecond, so a passed deadline fails fast)."""
        left = max(self.remaining(now), 0.001)
        return min(connect, left), min(read, left)

    def which(self, deadline: float | None = None) -> str:
        """Which setting a passed ``deadline`` (default: the first) stands for."""
        if deadline is None:
            deadline = self.first_deadline
        if self.call_deadline is not None and deadline == self.call_deadline:
            return "the call's timeout_total"
        if deadline == self.started + self.timeout:
            return f"timeout={self.timeout:g}s (the attempt's wall time)"
        return f"chunk_timeout={self.chunk_timeout:g}s (the wait for the next event)"

    def expired(
        self,
        deadline: float | None = None,
        *,
        provider: str | None = None,
        model: str | None = None,
        phase: str = "waiting for the answer",
    ) -> APITimeoutError:
        """The :class:`APITimeoutError` of a passed deadline, naming the setting."""
        return APITimeoutError(
            f"timed out {phase}: {self.which(deadline)} passed",
            provider=provider,
            model=model,
        )


# --------------------------------------------------------------------------------------
# Credential-free causes


class TransportCause(Exception):
    """Stands in for a lower-layer exception that cannot be rebuilt from its message."""


def detached_cause(exc: BaseException, secrets: Iterable[str] = ()) -> BaseException:
    """A stand-in for ``exc`` to chain a chatcore error from: the same class (or its
    nearest builtin base, or :class:`TransportCause`) built from the redacted message
    alone, so it holds no request, response, connection pool or header, and has no
    ``__cause__``, ``__context__`` or traceback of its own."""
    message = redact(f"{exc}", tuple(secrets))
    for cls in type(exc).__mro__:
        if not issubclass(cls, Exception):
            break
        try:
            clean: BaseException = cls(message)
        except Exception:  # this class needs more than a message: try its base
            continue
        if all(_plain(v) for v in vars(clean).values()):
            return clean
    return TransportCause(f"{type(exc).__name__}: {message}")


def _plain(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool, tuple))
