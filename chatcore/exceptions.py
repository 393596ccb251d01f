"""Every error chatcore raises, in one hierarchy.

```
ChatcoreError
├── ConfigurationError (ValueError)      bad settings, missing API key (names the env var)
├── ValidationError (ValueError)         bad request input: lists every problem found
├── PluginError
│   ├── PluginLoadError
│   └── ProviderNotFoundError (LookupError)
├── RateLimitExceeded                    local limiter refused within its max wait
└── APIError                             .provider .model .status_code .request_id .body
    ├── APIConnectionError               DNS, refused, reset, TLS
    │   └── APITimeoutError
    ├── APIStatusError
    │   ├── BadRequestError 400
    │   │   └── ContextWindowExceededError
    │   ├── AuthenticationError 401
    │   ├── PermissionDeniedError 403
    │   ├── NotFoundError 404
    │   │   └── ModelNotFoundError
    │   ├── ConflictError 409
    │   ├── RequestTooLargeError 413
    │   ├── UnprocessableEntityError 422
    │   ├── RateLimitError 429 (.retry_after)
    │   │   └── QuotaExceededError       insufficient_quota: never retried
    │   ├── ServerError 5xx
    │   │   └── ServiceUnavailableError 503 (.retry_after; HF "model is loading")
    │   └── RedirectError 3xx            a redirect chatcore will not follow
    ├── ResponseDecodeError              a 2xx body that is not what the API promises
    │   └── ResponseTooLargeError        an answer or an event over its size cap
    └── StreamError                      an error event or a broken stream mid-way
```

Context travels as keyword-only attributes; ``__cause__`` is kept. Every attribute
that came from the wire (message, request id, body, code fields, headers; keys and values
at any depth) passes through chatcore's redaction (known secrets and credential patterns)
whenever it is set, so a secret never shows up in one, nor in ``str()`` or ``repr()``.
HTTP answers and ``requests`` exceptions are turned into these classes in one place,
:func:`error_from_response` and :func:`error_from_requests_exception`.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from chatcore._redact import KnownSecrets, mask_secrets, redact_value, usable_secrets

if TYPE_CHECKING:
    import requests

__all__ = [
    "APIConnectionError",
    "APIError",
    "APIStatusError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "BudgetExceededError",
    "ChatcoreError",
    "ConfigurationError",
    "ConflictError",
    "ContextWindowExceededError",
    "ModelNotFoundError",
    "NoDeploymentAvailableError",
    "NotFoundError",
    "PermissionDeniedError",
    "PluginError",
    "PluginLoadError",
    "ProviderNotFoundError",
    "QuotaExceededError",
    "RateLimitError",
    "RateLimitExceeded",
    "RedirectError",
    "RequestTooLargeError",
    "ResponseDecodeError",
    "ResponseTooLargeError",
    "ServerError",
    "ServiceUnavailableError",
    "StreamError",
    "UnprocessableEntityError",
    "ValidationError",
    "error_from_requests_exception",
    "error_from_response",
    "parse_error_body",
    "parse_retry_after",
    "provider_hint",
    "request_id_from",
]


class ChatcoreError(Exception):
    """Base class of every exception chatcore raises."""


class ConfigurationError(ChatcoreError, ValueError):
    """Settings are invalid or incomplete (a missing API key names its variable)."""


class ValidationError(ChatcoreError, ValueError):
    """Request input is invalid; ``.problems`` lists every ``(path, message)`` found."""

    def __init__(self, problems: Iterable[tuple[str, str]] | str) -> None:
        if isinstance(problems, str):
            problems = [("", problems)]
        self.problems: tuple[tuple[str, str], ...] = tuple(problems)
        lines = [f"{path}: {msg}" if path else msg for path, msg in self.problems]
        if len(lines) == 1:
            text = f"invalid request: {lines[0]}"
        else:
            text = f"invalid request ({len(lines)} problems):\n  " + "\n  ".join(lines)
        super().__init__(text)


class PluginError(ChatcoreError):
    """A plugin could not be loaded or used."""


class PluginLoadError(PluginError):
    """A plugin failed to import or register (raised under CHATCORE_STRICT_PLUGINS=1)."""


class ProviderNotFoundError(PluginError, LookupError):
    """No installed plugin provides the requested provider name."""

    def __init__(self, provider: str, available: Iterable[str]) -> None:
        self.provider = provider
        self.available = tuple(sorted(available))
        listed = ", ".join(self.available) if self.available else "none"
        super().__init__(
            f"no provider named {provider!r} is installed (installed providers: {listed}); "
            + provider_hint(provider, self.available)
        )


#: The providers of the plugin distributions chatcore knows: ``pip install`` is suggested
#: for these names only, never for a name made from what was typed (a typo must not lead
#: anyone to install a squatted package).
KNOWN_PROVIDER_DISTRIBUTIONS: Mapping[str, str] = {
    "openai": "chatcore-openai",
    "azure": "chatcore-openai",
    "huggingface": "chatcore-huggingface",
    "anthropic": "chatcore-anthropic",
}
#: Names people type for a known provider.
_PROVIDER_NICKNAMES = {
    "hf": "huggingface",
    "hugging-face": "huggingface",
    "hugging_face": "huggingface",
    "claude": "anthropic",
    "azure-openai": "azure",
    "azure_openai": "azure",
    "azureopenai": "azure",
    "gpt": "openai",
    "chatgpt": "openai",
}


def provider_hint(name: str, installed: Iterable[str]) -> str:
    """What to do about provider ``name`` that is not installed: the installed provider
    it most likely means (case-insensitively, nicknames such as ``hf`` included), else
    the plugin to install when ``name`` (or its near miss) is a provider of a known
    distribution, else where to look. Never a package name built from ``name``."""
    import difflib

    by_lower = {p.lower(): p for p in installed}
    lowered = name.lower()
    if lowered in by_lower:
        return f"did you mean {by_lower[lowered]!r}? (provider names are case-sensitive)"
    meant = _PROVIDER_NICKNAMES.get(lowered)
    if meant is None:
        close = difflib.get_close_matches(lowered, list(by_lower), n=1, cutoff=0.6)
        if close:
            return f"did you mean {by_lower[close[0]]!r}?"
        close = difflib.get_close_matches(lowered, list(KNOWN_PROVIDER_DISTRIBUTIONS), 1, 0.6)
        meant = close[0] if close else None
    if meant is not None and meant in by_lower:
        return f"did you mean {by_lower[meant]!r}?"
    if meant is not None or lowered in KNOWN_PROVIDER_DISTRIBUTIONS:
        target = meant or lowered
        distribution = KNOWN_PROVIDER_DISTRIBUTIONS[target]
        did_you_mean = f"did you mean {target!r}? " if target != name else ""
        return f"{did_you_mean}its plugin is not installed: `pip install {distribution}`"
    return (
        "check the spelling; a third-party provider needs its plugin installed"
        " (`chatcore plugins` lists what is installed)"
    )


class RateLimitExceeded(ChatcoreError):
    """The local rate limiter could not grant the request within its maximum wait."""

    def __init__(self, message: str, *, key: str = "", retry_after: float | None = None) -> None:
        super().__init__(message)
        self.key = key
        self.retry_after = retry_after


class BudgetExceededError(ChatcoreError):
    """A budget refused the call before anything was sent: reserving its worst-case cost
    would take ``scope``'s spend past its limit for the current ``period``.

    ``spent`` and ``reserved`` are the scope's reconciled spend and the reservations of
    calls still in flight, ``requested`` this call's worst case, ``limit`` the budget (all
    ``Decimal`` USD, ``None`` when the shared backend could not be asked); ``resets_at`` is
    the Unix time the period ends."""

    def __init__(
        self,
        message: str,
        *,
        scope: str = "",
        period: str = "",
        limit: Any = None,
        spent: Any = None,
        reserved: Any = None,
        requested: Any = None,
        resets_at: float | None = None,
    ) -> None:
        super().__init__(message)
        self.scope = scope
        self.period = period
        self.limit = limit
        self.spent = spent
        self.reserved = reserved
        self.requested = requested
        self.resets_at = resets_at


#: The attributes of an :class:`APIError` that hold what came from the wire; each is
#: redacted (known secrets and credential patterns, mapping keys included) whenever it is
#: set, at construction or later.
_WIRE_ATTRIBUTES = frozenset(
    {"message", "request_id", "body", "code", "error_type", "param", "headers", "location"}
)
#: Answer text carried by an error: only exact secrets are masked there, never patterns.
_ANSWER_ATTRIBUTES = frozenset({"partial_text"})


class APIError(ChatcoreError):
    """A provider call failed; carries provider, model, status, request id and body.

    Everything that came from the wire (``message``, ``request_id``, ``body``, ``code``,
    ``error_type``, ``param``, ``headers``, and a subclass's ``partial_text`` or
    ``location``) is redacted with ``secrets`` when set, keys and values, at any depth;
    :meth:`add_secrets` masks more secrets after the fact."""

    _secrets: KnownSecrets = KnownSecrets()
    #: Through a route: the deployment each attempt went to (``route:NAME/DEPLOYMENT``).
    deployments: tuple[str, ...] = ()

    def __init__(
        self,
        message: str,
        *,
        provider: str | None = None,
        model: str | None = None,
        status_code: int | None = None,
        request_id: str | None = None,
        body: Any = None,
        code: str | None = None,
        error_type: str | None = None,
        param: str | None = None,
        retry_after: float | None = None,
        should_retry: bool | None = None,
        attempts: int = 1,
        headers: Mapping[str, str] | None = None,
        secrets: Iterable[str] = (),
    ) -> None:
        self._secrets = usable_secrets(secrets)
        self.provider = provider
        self.model = model
        self.status_code = status_code
        self.request_id = request_id
        self.body = body
        self.code = code
        self.error_type = error_type
        self.param = param
        self.retry_after = retry_after
        self.should_retry = should_retry
        self.attempts = attempts
        self.headers = headers
        self.message = message
        super().__init__(self.message)

    if not TYPE_CHECKING:  # hidden from mypy, which would then allow any attribute name

        def __setattr__(self, name: str, value: Any) -> None:
            if value is not None:
                if name in _WIRE_ATTRIBUTES:
                    value = redact_value(value, self._secrets)
                elif name in _ANSWER_ATTRIBUTES:
                    value = mask_secrets(value, self._secrets)
            super().__setattr__(name, value)

    def add_secrets(self, secrets: Iterable[str]) -> None:
        """Mask ``secrets`` too, in every wire attribute already set and in ``args``."""
        combined = KnownSecrets((*self._secrets, *secrets))
        if combined == self._secrets:
            return
        self._secrets = combined
        for name in (*_WIRE_ATTRIBUTES, *_ANSWER_ATTRIBUTES):
            value = self.__dict__.get(name)
            if value is not None:
                setattr(self, name, value)
        self.args = redact_value(self.args, combined)

    def __str__(self) -> str:
        where = self.provider or "provider"
        if self.model:
            where = f"{where}:{self.model}"
        parts = [f"{where}: {self.message}"]
        extras = []
        if self.status_code is not None:
            extras.append(f"status {self.status_code}")
        if self.code:
            extras.append(f"code {self.code}")
        if self.request_id:
            extras.append(f"request id {self.request_id}")
        if self.attempts > 1:
            extras.append(f"after {self.attempts} attempts")
        if extras:
            parts.append(f"({', '.join(extras)})")
        return " ".join(parts)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.message!r}, provider={self.provider!r}, "
            f"model={self.model!r}, status_code={self.status_code!r}, "
            f"request_id={self.request_id!r})"
        )


class APIConnectionError(APIError):
    """The provider could not be reached (DNS, refused, reset, TLS, proxy)."""


class APITimeoutError(APIConnectionError):
    """Connecting to or reading from the provider took longer than the timeout."""


class APIStatusError(APIError):
    """The provider answered with an error status."""


class BadRequestError(APIStatusError):
    """400: the provider rejected the request."""


class ContextWindowExceededError(BadRequestError):
    """400: the prompt plus requested completion is longer than the model's context."""


class AuthenticationError(APIStatusError):
    """401: the API key is missing, wrong or revoked."""


class PermissionDeniedError(APIStatusError):
    """403: the key may not use this model or region."""


class NotFoundError(APIStatusError):
    """404: the URL or resource does not exist."""


class ModelNotFoundError(NotFoundError):
    """404: the model does not exist or this key cannot see it."""


class ConflictError(APIStatusError):
    """409: a conflicting request is in progress."""


class RequestTooLargeError(APIStatusError):
    """413: the request body is too large."""


class UnprocessableEntityError(APIStatusError):
    """422: the request is well-formed JSON but its values are not accepted."""


class RateLimitError(APIStatusError):
    """429: throttled; retry after ``.retry_after`` seconds when given."""


class QuotaExceededError(RateLimitError):
    """429 insufficient_quota: billing or quota exhausted; retrying will not help."""


class ServerError(APIStatusError):
    """5xx: the provider failed."""


class ServiceUnavailableError(ServerError):
    """503: overloaded or (Hugging Face) the model is still loading."""


class RedirectError(APIStatusError):
    """3xx: a redirect chatcore will not follow (to another origin, one that would change
    the method of a POST, or one hop too many). ``.location`` is the target's origin
    (scheme, host, port) only; credentials are never sent there. Never retried."""

    def __init__(self, message: str, *, location: str | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("should_retry", False)
        super().__init__(message, **kwargs)
        self.location = location


class ResponseDecodeError(APIError):
    """A success answer whose body is not what the API promises."""


class ResponseTooLargeError(ResponseDecodeError):
    """An answer (after decompression) over ``max_response_bytes``, or one stream event
    over ``max_event_bytes``; reading stopped at the cap. ``.limit`` is the cap in bytes.
    Never retried."""

    def __init__(self, message: str, *, limit: int | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("should_retry", False)
        super().__init__(message, **kwargs)
        self.limit = limit


class StreamError(APIError):
    """A stream failed mid-way: an in-band error event or a broken connection."""

    def __init__(self, message: str, *, partial_text: str = "", **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.partial_text = partial_text


class NoDeploymentAvailableError(APIError):
    """Every deployment a route (and its fallbacks) could use is cooling down or already
    failed this call: nothing was sent to them. ``retry_after`` is when the first
    cooldown ends; ``__cause__`` is the last failure of this call, if any."""


# --------------------------------------------------------------------------------------
# The one mapping point from HTTP answers and requests exceptions to chatcore errors.

_STATUS_CLASSES: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    413: RequestTooLargeError,
    422: UnprocessableEntityError,
    429: RateLimitError,
    503: ServiceUnavailableError,
}

_CONTEXT_CODES = frozenset(
    {"context_length_exceeded", "string_above_max_length", "context_window_exceeded"}
)
_CONTEXT_PHRASES = (
    "maximum context length",
    "context length",
    "context window",
    "too many tokens",
    "input validation error: `inputs` tokens + `max_new_tokens` must be",
)
_QUOTA_CODES = frozenset({"insufficient_quota", "billing_hard_limit_reached"})
_MODEL_CODES = frozenset({"model_not_found", "deployment_not_found", "DeploymentNotFound"})


def request_id_from(headers: Mapping[str, str]) -> str | None:
    """The provider's request id: ``x-request-id`` (OpenAI, TGI), ``request-id``
    (Anthropic), ``apim-request-id`` (Azure), or ``x-amzn-trace-id`` (Hugging Face
    router)."""
    return (
        headers.get("x-request-id")
        or headers.get("request-id")
        or headers.get("apim-request-id")
        or headers.get("x-amzn-trace-id")
    )


def finite_seconds(value: Any) -> float | None:
    """``value`` as a number of seconds when it is a finite number >= 0 (a header's text
    is parsed); ``None`` otherwise. Every delay or duration a server sends passes here, so
    ``inf``, ``nan``, negative numbers and numbers beyond a float are ignored, never used."""
    if isinstance(value, bool):
        return None
    try:
        seconds = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return seconds + 0.0 if math.isfinite(seconds) and seconds >= 0 else None  # no -0.0


def parse_retry_after(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """Server-demanded delay in seconds: ``retry-after-ms``, then ``retry-after``
    (seconds, then HTTP-date; a date in the past is ``0.0``). ``None`` when absent or
    unusable: always a finite number >= 0 or ``None`` (``inf``, ``nan`` and negative
    values are ignored; an unusable ``retry-after-ms`` falls back to ``retry-after``)."""
    millis = finite_seconds(headers.get("retry-after-ms"))
    if millis is not None:
        return millis / 1000.0
    value = headers.get("retry-after")
    if not isinstance(value, str):
        return None
    try:
        seconds = float(value)
    except ValueError:
        seconds = None
    if seconds is not None:  # a number, but perhaps not a usable one
        return finite_seconds(seconds)
    import email.utils  # only for the rare HTTP-date form

    try:
        when = email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return finite_seconds(max(0.0, when - (time.time() if now is None else now)))


def parse_error_body(body: Any, headers: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Read the message, type, code, param and estimated_time out of any of the error
    body shapes providers use (OpenAI object, TGI/HF string, ``errors`` list, header)."""
    out: dict[str, Any] = {}
    if isinstance(body, Mapping):
        err = body.get("error")
        if isinstance(err, Mapping):
            out["message"] = err.get("message")
            out["type"] = err.get("type")
            out["code"] = err.get("code")
            out["param"] = err.get("param")
        elif isinstance(err, str):
            out["message"] = err
            out["type"] = body.get("error_type")
        elif isinstance(err, list) and err:
            out["message"] = "; ".join(str(e) for e in err)
        errors = body.get("errors")
        if out.get("message") is None and isinstance(errors, list) and errors:
            msgs = [e.get("message") if isinstance(e, Mapping) else e for e in errors]
            out["message"] = "; ".join(str(m) for m in msgs if m is not None)
        if out.get("message") is None and isinstance(body.get("message"), str):
            out["message"] = body["message"]
        if isinstance(body.get("error_description"), str):
            desc = body["error_description"]
            out["message"] = f"{out['message']}: {desc}" if out.get("message") else desc
        est = body.get("estimated_time")
        seconds = finite_seconds(est) if isinstance(est, (int, float)) else None
        if seconds is not None:
            out["estimated_time"] = seconds
    if not out.get("message") and headers is not None:
        header_msg = headers.get("x-error-message")
        if header_msg:
            out["message"] = header_msg
    for key in ("code", "type", "param"):
        if out.get(key) is not None and not isinstance(out[key], str):
            out[key] = str(out[key])
    return out


def error_from_response(
    status_code: int,
    body: bytes | str | Any,
    headers: Mapping[str, str],
    *,
    provider: str | None = None,
    model: str | None = None,
    secrets: Iterable[str] = (),
) -> APIStatusError:
    """Map an HTTP error answer to the most specific :class:`APIStatusError`."""
    parsed_body: Any = body
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    if isinstance(body, str):
        try:
            parsed_body = json.loads(body) if body else None
        except ValueError:
            parsed_body = body
    info = parse_error_body(parsed_body, headers)
    message = info.get("message") or (
        parsed_body.strip()[:500]
        if isinstance(parsed_body, str) and parsed_body.strip()
        else f"HTTP {status_code}"
    )
    code = info.get("code")
    error_type = info.get("type")
    retry_after = parse_retry_after(headers)
    if retry_after is None and "estimated_time" in info:
        retry_after = info["estimated_time"]
    should_retry_header = headers.get("x-should-retry")
    should_retry = None
    if should_retry_header is not None:
        should_retry = should_retry_header.strip().lower() == "true"

    cls: type[APIStatusError]
    lowered = str(message).lower()
    if status_code in _STATUS_CLASSES:
        cls = _STATUS_CLASSES[status_code]
    elif status_code >= 500:
        cls = ServerError
    else:
        cls = APIStatusError
    if status_code == 429 and (code in _QUOTA_CODES or error_type in _QUOTA_CODES):
        cls = QuotaExceededError
    elif status_code in (400, 413, 422) and (
        code in _CONTEXT_CODES or any(p in lowered for p in _CONTEXT_PHRASES)
    ):
        cls = ContextWindowExceededError
    elif status_code == 404 and (
        code in _MODEL_CODES or ("model" in lowered and "not" in lowered and "exist" in lowered)
    ):
        cls = ModelNotFoundError
    return cls(
        str(message),
        provider=provider,
        model=model,
        status_code=status_code,
        request_id=request_id_from(headers),
        body=parsed_body,
        code=code,
        error_type=error_type,
        param=info.get("param"),
        retry_after=retry_after,
        should_retry=should_retry,
        headers=headers,
        secrets=secrets,
    )


def error_from_requests_exception(
    exc: requests.RequestException,
    *,
    provider: str | None = None,
    model: str | None = None,
    secrets: Iterable[str] = (),
) -> APIError:
    """Map a ``requests`` exception to :class:`APIConnectionError`, :class:`APITimeoutError`
    or :class:`ResponseDecodeError`; the caller raises it ``from exc``."""
    import requests  # only a transport that already imported requests gets here

    kind = type(exc).__name__
    cls: type[APIError]
    if isinstance(exc, requests.Timeout):
        cls = APITimeoutError
        what = "timed out connecting" if isinstance(exc, requests.ConnectTimeout) else "timed out"
    elif isinstance(exc, (requests.ConnectionError, requests.exceptions.ChunkedEncodingError)):
        cls = APIConnectionError
        what = "connection failed"
    elif isinstance(exc, requests.exceptions.ContentDecodingError):
        cls = ResponseDecodeError
        what = "could not decode the response"
    elif isinstance(exc, requests.exceptions.InvalidJSONError):
        cls = ResponseDecodeError
        what = "invalid JSON"
    elif isinstance(
        exc,
        (
            requests.exceptions.InvalidURL,
            requests.exceptions.MissingSchema,
            requests.exceptions.InvalidSchema,
            requests.exceptions.InvalidHeader,
            requests.exceptions.URLRequired,
        ),
    ):
        return APIConnectionError(
            f"invalid request target ({kind}: {exc}); check the provider's base_url",
            provider=provider,
            model=model,
            should_retry=False,
            secrets=secrets,
        )
    else:
        cls = APIConnectionError
        what = "request failed"
    plain = describe_connection_failure(exc) if cls is APIConnectionError else None
    return cls(
        f"{what}: {plain}" if plain else f"{what} ({kind}): {exc}",
        provider=provider,
        model=model,
        secrets=secrets,
    )


def describe_connection_failure(exc: BaseException) -> str | None:
    """What went wrong with a connection, in chatcore's words (``could not connect to
    127.0.0.1:9 (connection refused)``), found by walking the causes a transport library
    wraps (urllib3's ``MaxRetryError`` says "Max retries exceeded" even though it made one
    attempt); ``None`` when the failure is not one of the kinds recognized."""
    import errno
    import http.client
    import socket
    import ssl

    host, port = None, None
    seen: set[int] = set()
    pending: list[Any] = [exc]
    why = None
    while pending and why is None:
        current = pending.pop(0)
        if not isinstance(current, BaseException) or id(current) in seen:
            continue
        seen.add(id(current))
        # urllib3 keeps the pool or connection in the instance (its `pool` property of a
        # connection error is deprecated); aiohttp's connector errors have host and port
        pool = vars(current).get("pool") or vars(current).get("conn")
        if host is None and isinstance(getattr(pool, "host", None), str):
            host, port = getattr(pool, "host", None), getattr(pool, "port", None)
        if host is None and isinstance(getattr(type(current), "host", None), property):
            host, port = getattr(current, "host", None), getattr(current, "port", None)
        code = getattr(current, "errno", None)
        if isinstance(current, ssl.SSLCertVerificationError):
            why = f"the TLS certificate could not be verified ({current.verify_message})"
        elif isinstance(current, ssl.SSLError):
            why = f"the TLS handshake failed ({current.reason or current})"
        elif isinstance(current, socket.gaierror) or type(current).__name__ in (
            "NameResolutionError",
            "ClientConnectorDNSError",
        ):
            why = "the host name could not be resolved (check base_url and DNS)"
        elif isinstance(current, ConnectionRefusedError) or code == errno.ECONNREFUSED:
            why = "connection refused (nothing is listening there)"
        elif isinstance(current, ConnectionResetError) or code == errno.ECONNRESET:
            why = "the connection was reset by the server"
        elif isinstance(current, http.client.RemoteDisconnected):
            why = "the server closed the connection without answering"
        elif isinstance(current, OSError) and current.errno is not None and current.strerror:
            why = current.strerror[:1].lower() + current.strerror[1:]
        pending.extend(a for a in getattr(current, "args", ()) if isinstance(a, BaseException))
        for name in ("reason", "os_error", "__cause__", "__context__"):
            pending.append(getattr(current, name, None))
    if why is None:
        return None
    where = f"{host}:{port}" if host and port else host
    return f"could not connect to {where}: {why}" if where else why
