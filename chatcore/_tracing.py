"""Tracing: what the pipeline tells tracers (``chatcore_tracers`` hook, ``Client(tracers=)``)
before, around and after a call.

Metrics sinks hear about a call once it has ended; a tracer is told when it starts, so that
it can open a span and make it current while the call runs (cache lookup, rate limiting,
attempts, retry waits and the HTTP sends), in the caller's thread or asyncio task. The
pipeline only ever talks to a :class:`CallTrace`, which forwards each event to every
tracer's handle in its own guard: a failing tracer is logged once and never fails a
request. A client without tracers makes no :class:`CallTrace` at all.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterable, Mapping
from typing import Any, Protocol, TypeVar

import attrs

from chatcore._http import HttpCall
from chatcore._log import log_failure_once
from chatcore._redact import KnownSecrets
from chatcore.models import ChatRequest, ChatResponse

__all__ = ["CallHandle", "CallTrace", "TracedCall", "Tracer", "Tracing"]

T = TypeVar("T")


@attrs.frozen(slots=True)
class TracedCall:
    """What a tracer's ``start(call)`` is told about a ``chat()`` or ``stream()`` call.

    ``operation`` is ``"chat"``; ``request`` the validated :class:`~chatcore.ChatRequest`
    (``request.stream`` says whether it streams); ``base_url`` the provider's base URL
    (it may hold credentials in a query parameter or user info: read only its host and
    port, or pass it through :func:`chatcore._redact.redact_url`); ``secrets`` the
    provider's secret option values (a :class:`~chatcore._redact.KnownSecrets`, whose
    repr shows none of them), for masking anything recorded from the request
    (``chatcore._redact.redact(text, call.secrets)``).
    """

    operation: str
    request: ChatRequest
    base_url: str
    secrets: KnownSecrets = attrs.field(factory=KnownSecrets, repr=False)


class CallHandle(Protocol):
    """What a tracer's ``start()`` returns for one call (see ``docs/hooks.md``)."""

    def activate(self) -> Any:
        """A context manager; the pipeline enters it around the call's work."""

    def headers(self) -> Mapping[str, str] | None:
        """Extra HTTP headers to send to the provider (e.g. ``traceparent``), or ``None``."""

    def attempt_started(self, number: int) -> None:
        """Attempt ``number`` (from 1) begins."""

    def attempt_ended(self, number: int, error: BaseException | None) -> None:
        """Attempt ``number`` ended: ``error`` is ``None`` when it succeeded."""

    def first_chunk(self) -> None:
        """A stream's first chunk arrived."""

    def end(self, response: ChatResponse | None, error: BaseException | None) -> None:
        """The call ended (once): with ``response``, with ``error``, or (both ``None``)
        a stream closed before its end."""


class Tracer(Protocol):
    """A tracer: ``start(call)`` returns a :class:`CallHandle`, or ``None`` to skip the
    call."""

    def start(self, call: TracedCall) -> CallHandle | None: ...


class Tracing:
    """A client's tracers, and the record of those that failed (logged once each)."""

    __slots__ = ("_failed", "tracers")

    def __init__(self, tracers: Iterable[Any]) -> None:
        self.tracers = tuple(tracers)
        self._failed: set[int] = set()

    def start(self, request: ChatRequest, base_url: str, secrets: KnownSecrets) -> CallTrace | None:
        """Tell every tracer a call starts; ``None`` when none of them follows it."""
        call = TracedCall("chat", request, base_url, secrets)
        handles: list[tuple[Any, Any]] = []
        for tracer in self.tracers:
            try:
                handle = tracer.start(call)
            except Exception as exc:
                self.failed(tracer, exc)
                continue
            if handle is not None:
                handles.append((tracer, handle))
        return CallTrace(self, handles) if handles else None

    def failed(self, tracer: Any, exc: BaseException) -> None:
        """Log a failing tracer (its own or its handles' failure) once, then stay quiet."""
        log_failure_once(self._failed, tracer, "tracer", exc)


class CallTrace:
    """One call as the pipeline sees it: each event goes to every tracer's handle, each
    in its own guard."""

    __slots__ = ("_handles", "_scopes", "_tracing")

    def __init__(self, tracing: Tracing, handles: list[tuple[Any, Any]]) -> None:
        self._tracing = tracing
        self._handles = handles
        self._scopes: list[Any] = []

    def _each(self, method: str, *args: Any) -> None:
        for tracer, handle in self._handles:
            try:
                getattr(handle, method)(*args)
            except Exception as exc:  # a tracer never fails a request
                self._tracing.failed(tracer, exc)

    def end(self, response: ChatResponse | None = None, error: BaseException | None = None) -> None:
        """The call ended (see :meth:`CallHandle.end`)."""
        self._each("end", response, error)

    def outgoing(self, call: HttpCall) -> HttpCall:
        """``call`` with the headers the tracers ask for (``traceparent``) added."""
        extra: dict[str, str] = {}
        for tracer, handle in self._handles:
            try:
                found = handle.headers()
                if found:
                    extra.update({str(k): str(v) for k, v in found.items()})
            except Exception as exc:
                self._tracing.failed(tracer, exc)
        if not extra:
            return call
        return attrs.evolve(call, headers={**(call.headers or {}), **extra})

    def _enter(self) -> None:
        for tracer, handle in self._handles:
            try:
                scope = handle.activate()
                scope.__enter__()
            except Exception as exc:
                self._tracing.failed(tracer, exc)
                continue
            self._scopes.append((tracer, scope))

    def _exit(self) -> None:
        scopes, self._scopes = self._scopes, []
        for tracer, scope in reversed(scopes):
            try:
                scope.__exit__(None, None, None)
            except Exception as exc:
                self._tracing.failed(tracer, exc)

    async def around(self, work: Coroutine[Any, Any, T], *, end: bool = True) -> T:
        """Await ``work`` (a pipeline stage) with the call's spans current; end the call
        with its error, or (``end=True``) with its result."""
        self._enter()
        try:
            result = await work
        except BaseException as exc:
            self._exit()
            self.end(None, exc)
            raise
        self._exit()
        if end:
            self.end(result if isinstance(result, ChatResponse) else None, None)
        return result

    def attempts(
        self, attempt: Callable[[int], Coroutine[Any, Any, T]], *, stream: bool = False
    ) -> Callable[[int], Coroutine[Any, Any, T]]:
        """``attempt`` with each run told to the tracers (and, for a stream, its first
        chunk: ``attempt`` returns ``(first chunk or None, the rest)``)."""

        async def traced(number: int) -> T:
            self._each("attempt_started", number)
            try:
                result = await attempt(number)
            except BaseException as exc:
                self._each("attempt_ended", number, exc)
                raise
            self._each("attempt_ended", number, None)
            if stream and result[0] is not None:  # type: ignore[index]
                self._each("first_chunk")
            return result

        return traced
