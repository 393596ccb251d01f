"""``ProviderConformance``: the standard test battery every chatcore provider plugin runs.

A plugin's test module subclasses it and says how to point its provider at a local
:class:`~chatcore.testing.server.StandInServer` speaking its wire format::

    from chatcore.testing.conformance import ProviderConformance

    class TestOpenAIConformance(ProviderConformance):
        provider_name = "openai"
        model = "gpt-4o-mini"
        server_flavor = "openai"

        def provider_options(self, server):
            return {"api_key": self.api_key, "base_url": server.base_url}

Every check that talks to a server runs twice, over real HTTP: once through a real
:class:`chatcore.Client` and once through a real :class:`chatcore.AsyncClient` (the test
ids end in ``[sync]`` and ``[async]``; no retries unless the check is about retries; retry
waits never sleep). A check is written once, as a *scenario*: a coroutine that awaits the
calls of a :class:`ConformanceClient`. :class:`ClientDriver` runs it with no event loop for
``Client`` (whose calls never suspend) and in :func:`asyncio.run` for ``AsyncClient``.
The checks cover the chat round trip, request ids and usage, streaming (streams read at
once included), the typed error of every status and fault, retries, redaction of the API
key, echoed secrets, hostile servers, the declared capabilities, that the ``chatcore``
entry point resolves, that a translate-only provider's ``prepare_*`` methods do no I/O and
its ``stream_decoder`` is fresh per stream, and that ``AsyncClient``'s event loop is never
blocked (a 0.1 provider's own I/O runs in worker threads). A subclass skips checks by name
with ``skip_checks`` (see :data:`CHECKS`) and adapts replies to its wire by overriding
:meth:`ProviderConformance.error_reply` and friends.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import inspect
import itertools
import json
import socket
import time
import traceback
from collections.abc import Callable, Collection, Coroutine, Iterator, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Literal, ParamSpec, TypeVar, cast

import attrs
import pytest
from hypothesis import HealthCheck, given, settings

from chatcore.exceptions import (
    APIConnectionError,
    APIError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
    QuotaExceededError,
    RateLimitError,
    RedirectError,
    RequestTooLargeError,
    ResponseDecodeError,
    ResponseTooLargeError,
    ServerError,
    StreamError,
    UnprocessableEntityError,
    ValidationError,
)
from chatcore.models import ChatChunk, ChatResponse
from chatcore.provider import CAPABILITIES, HttpCall, HttpResult, ModelInfo, ProviderSpec
from chatcore.testing import strategies
from chatcore.testing.helpers import LogCapture, MetricsRecorder, RecordingSleep, capture_logs
from chatcore.testing.hostile import Hostile, HostileServer, loopback_available
from chatcore.testing.server import STANDIN_NOTICE, Flavor, Reply, StandInServer

if TYPE_CHECKING:
    from chatcore import AsyncClient, Client
    from chatcore._plugins import PluginHost
    from chatcore._stream import AsyncChatStream, ChatStream
    from chatcore.provider import Provider

__all__ = [
    "CHECKS",
    "CLIENT_KINDS",
    "ERROR_STATUSES",
    "ClientDriver",
    "ClientKind",
    "ConformanceClient",
    "ConformanceStream",
    "ProviderConformance",
    "echo_headers",
    "find_entry_point",
    "network_refused",
    "run_blocking",
    "strings_in",
    "urls_with_credentials",
]


ENTRY_POINT_GROUP = "chatcore"

#: Every error status checked, and the class (or a subclass of it) it must raise.
ERROR_STATUSES: Mapping[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    413: RequestTooLargeError,
    422: UnprocessableEntityError,
    429: RateLimitError,
    500: ServerError,
    502: ServerError,
    503: ServerError,
    504: ServerError,
}

_RETRIED_STATUSES = (500, 502, 503, 504)
_RETRY_AFTER_HEADERS = {"retry-after-ms": ("1500", 1.5), "retry-after": ("7", 7.0)}

#: The names ``skip_checks`` accepts: one per check, plus ``error_status_<code>``,
#: ``server_error_retried_<code>`` and ``capability_<name>`` for single cases.
CHECKS: frozenset[str] = frozenset(
    {
        "entry_point",
        "spec",
        "chat_round_trip",
        "request_id",
        "usage",
        "stream",
        "stream_without_terminator",
        "stream_early_close",
        "stream_error_status",
        "error_status",
        *(f"error_status_{s}" for s in ERROR_STATUSES),
        "retry_after",
        "quota_not_retried",
        "server_error_retried",
        *(f"server_error_retried_{s}" for s in _RETRIED_STATUSES),
        "connection_refused",
        "read_timeout",
        "malformed_json",
        "unexpected_body",
        "redaction",
        "capabilities",
        *(f"capability_{c}" for c in CAPABILITIES),
        "generated_completions",
        "metrics",
        "echoed_secret_error",
        "echoed_secret_response",
        "echoed_secret_stream",
        "credentials_in_url",
        "hostile_cross_origin_redirect",
        "hostile_redirect_loop",
        "hostile_slow_drip",
        "hostile_oversized_answer",
        "hostile_stream_incremental",
        "hostile_non_sse_stream",
        "prepare_without_io",
        "stream_decoder_fresh",
        "stream_concurrent",
        "event_loop_free",
    }
)

_WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
_LONG_TEXT = " ".join(f"word{i}" for i in range(100))
_TGI_ERROR_TYPES = {
    401: "authentication",
    403: "authentication",
    404: "not_found",
    413: "validation",
    422: "validation",
    429: "overloaded",
    500: "generation",
    502: "overloaded",
    503: "overloaded",
    504: "overloaded",
}

#: ``make(server, *, max_retries=0, **options)``: the ``conformance_make_client`` fixture.
MakeClient = Callable[..., "ConformanceClient"]


def find_entry_point(
    provider: str, name: str | None = None
) -> tuple[importlib.metadata.EntryPoint, ProviderSpec]:
    """The entry point of group ``chatcore`` (named ``name``, if given) whose plugin offers
    ``provider``, and the spec it returns; ``LookupError`` when none or several do."""
    found: list[tuple[importlib.metadata.EntryPoint, ProviderSpec]] = []
    problems: list[str] = []
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if name is not None and ep.name != name:
            continue
        try:
            plugin = ep.load()
            specs = list(plugin.chatcore_providers() or ())
        except Exception as exc:  # another plugin may be broken; report it only if needed
            problems.append(f"{ep.name} ({ep.value}): {type(exc).__name__}: {exc}")
            continue
        found.extend((ep, s) for s in specs if isinstance(s, ProviderSpec) and s.name == provider)
    if len(found) == 1:
        return found[0]
    where = f"entry point {name!r}" if name else "entry point"
    if not found:
        detail = f" (failed to load: {'; '.join(problems)})" if problems else ""
        raise LookupError(
            f"no {where} of group {ENTRY_POINT_GROUP!r} offers provider {provider!r}; is the "
            f"plugin installed (pip install -e .)?{detail}"
        )
    owners = ", ".join(f"{ep.name} = {ep.value}" for ep, _ in found)
    raise LookupError(f"provider {provider!r} is offered by several entry points: {owners}")


def _secret_free(error: BaseException, secret: str) -> list[str]:
    """Where ``secret`` shows in ``error``: its str, repr, attributes (``vars``), body,
    headers (names and values), code fields, request id, traceback."""
    places = {
        "str": str(error),
        "repr": repr(error),
        "vars": repr(vars(error)),
        "traceback": "".join(traceback.format_exception(type(error), error, error.__traceback__)),
    }
    if isinstance(error, APIError):
        places["body"] = "\0".join(strings_in(error.body))
        places["headers"] = "\0".join(strings_in(error.headers))
        for attr in ("message", "code", "param", "error_type", "request_id"):
            places[attr] = str(getattr(error, attr))
    return [where for where, text in places.items() if secret in text]


def strings_in(value: Any) -> Iterator[str]:
    """Every string in ``value``: mapping keys and values, sequences, attrs fields."""
    import attrs

    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from strings_in(key)
            yield from strings_in(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from strings_in(item)
    elif attrs.has(type(value)):
        for field in attrs.fields(type(value)):
            yield from strings_in(getattr(value, field.name))


def echo_headers(secret: str) -> dict[str, str]:
    """Response headers a hostile or broken server echoes the credential back in: the
    request id, another header's value, and a header's name."""
    return {"x-request-id": secret, "x-echo": f"you sent {secret}", secret: "echoed name"}


def urls_with_credentials(url: str, token: str) -> list[str]:
    """``url`` with ``token`` put where a careless configuration puts a key: user-info
    (with and without a user name) and the usual query parameters."""
    scheme, rest = url.split("://", 1)
    return [
        f"{scheme}://user:{token}@{rest}",
        f"{scheme}://{token}@{rest}",
        *(f"{url}?{name}={token}" for name in ("key", "api_key", "token", "access_token")),
    ]


# ---------------------------------------------------------------------------------------------
# Running one scenario through Client or AsyncClient

T = TypeVar("T")
P = ParamSpec("P")

#: Which client a check runs through: ``"sync"`` (:class:`~chatcore.Client`) or
#: ``"async"`` (:class:`~chatcore.AsyncClient`).
ClientKind = Literal["sync", "async"]
#: Every client kind, in the order the checks run through them.
CLIENT_KINDS: tuple[ClientKind, ...] = ("sync", "async")


def run_blocking(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to its end without an event loop: a scenario over ``Client``, whose
    calls block and never suspend. A coroutine that does suspend (it awaited something
    only an event loop can carry out) is closed and a ``RuntimeError`` raised."""
    try:
        coro.send(None)
    except StopIteration as stop:
        return cast(T, stop.value)
    coro.close()
    raise RuntimeError(
        "a scenario run through Client awaited something that needs an event loop; await "
        "only ConformanceClient, ConformanceStream and ClientDriver calls in scenarios"
    )


class ConformanceStream:
    """A stream opened by :meth:`ConformanceClient.stream`: a :class:`~chatcore.ChatStream`
    or an :class:`~chatcore.AsyncChatStream`, read with awaits either way. ``async with``
    closes it."""

    def __init__(self, stream: ChatStream | AsyncChatStream) -> None:
        #: The client's own stream object.
        self.stream = stream

    @property
    def text(self) -> str:
        """The text so far."""
        return self.stream.text

    @property
    def response(self) -> ChatResponse | None:
        """The assembled answer once the stream completed (else ``None``)."""
        return self.stream.response

    @property
    def headers(self) -> Any:
        """The answer's headers (from the first chunk)."""
        return self.stream.headers

    @property
    def request_id(self) -> str | None:
        """The answer's request id."""
        return self.stream.request_id

    async def next(self) -> ChatChunk | None:
        """The next chunk, or ``None`` at the end."""
        raise NotImplementedError

    async def chunks(self) -> list[ChatChunk]:
        """The rest of the chunks, to the end."""
        raise NotImplementedError

    async def read(self) -> ChatResponse:
        """Read to the end; the assembled answer."""
        raise NotImplementedError

    async def close(self) -> None:
        """Stop reading and release the connection."""
        raise NotImplementedError

    async def __aenter__(self) -> ConformanceStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class _SyncStream(ConformanceStream):
    stream: ChatStream

    async def next(self) -> ChatChunk | None:
        return next(self.stream, None)

    async def chunks(self) -> list[ChatChunk]:
        return list(self.stream)

    async def read(self) -> ChatResponse:
        return self.stream.read()

    async def close(self) -> None:
        self.stream.close()


class _AsyncStream(ConformanceStream):
    stream: AsyncChatStream

    async def next(self) -> ChatChunk | None:
        return await anext(self.stream, None)

    async def chunks(self) -> list[ChatChunk]:
        return [chunk async for chunk in self.stream]

    async def read(self) -> ChatResponse:
        return await self.stream.read()

    async def close(self) -> None:
        await self.stream.aclose()


class ConformanceClient:
    """A :class:`~chatcore.Client` or an :class:`~chatcore.AsyncClient` as a scenario uses
    it: the calls are awaited either way (over ``Client`` they block and return at once).
    :attr:`client` is the client itself."""

    kind: ClassVar[ClientKind]

    def __init__(self, client: Client | AsyncClient, opened: list[ConformanceStream]) -> None:
        #: The real client.
        self.client = client
        self._opened = opened

    def provider(self, name: str) -> Provider:
        """The client's provider ``name`` (created on first use)."""
        return self.client.provider(name)

    def provider_spec(self, name: str) -> ProviderSpec:
        """The spec of provider ``name``."""
        return self.client.provider_spec(name)

    async def chat(self, model: str, messages: Any, **params: Any) -> ChatResponse:
        """``client.chat(...)``."""
        raise NotImplementedError

    async def stream(self, model: str, messages: Any, **params: Any) -> ConformanceStream:
        """``client.stream(...)``, open (read up to its first chunk)."""
        raise NotImplementedError

    async def list_models(self, provider: str) -> list[ModelInfo]:
        """``client.list_models(provider)``."""
        raise NotImplementedError

    async def close(self) -> None:
        """Close the client (an ``AsyncClient`` may be used again afterwards)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<ConformanceClient {self.kind} {self.client!r}>"


class _SyncClient(ConformanceClient):
    kind = "sync"
    client: Client

    async def chat(self, model: str, messages: Any, **params: Any) -> ChatResponse:
        return self.client.chat(model, messages, **params)

    async def stream(self, model: str, messages: Any, **params: Any) -> ConformanceStream:
        stream = _SyncStream(self.client.stream(model, messages, **params))
        self._opened.append(stream)
        return stream

    async def list_models(self, provider: str) -> list[ModelInfo]:
        return self.client.list_models(provider)

    async def close(self) -> None:
        self.client.close()


class _AsyncClient(ConformanceClient):
    kind = "async"
    client: AsyncClient

    async def chat(self, model: str, messages: Any, **params: Any) -> ChatResponse:
        return await self.client.chat(model, messages, **params)

    async def stream(self, model: str, messages: Any, **params: Any) -> ConformanceStream:
        stream = _AsyncStream(await self.client.stream(model, messages, **params))
        self._opened.append(stream)
        return stream

    async def list_models(self, provider: str) -> list[ModelInfo]:
        return await self.client.list_models(provider)

    async def close(self) -> None:
        await self.client.aclose()


#: ``build(server, max_retries, options)``: the real client of one kind for ``server``.
BuildClient = Callable[[Any, int, Mapping[str, Any]], "Client | AsyncClient"]


class ClientDriver:
    """Makes the clients of one kind and runs scenarios through them.

    ``run(scenario, *args)`` runs a scenario (an ``async def``, called with ``args``) and
    returns its result: directly for ``"sync"`` (:func:`run_blocking`), in
    :func:`asyncio.run` for ``"async"``. At the end of each async run every stream still
    open is closed and every ``AsyncClient`` made so far is closed (so it may be used
    again in the next run, on the next loop). In a scenario, :meth:`gather` runs several
    coroutines at once (in turn over ``Client``) and :meth:`pause` waits (without blocking
    the event loop)."""

    def __init__(self, kind: ClientKind, build: BuildClient) -> None:
        if kind not in CLIENT_KINDS:
            raise ValueError(f"client kind must be one of {CLIENT_KINDS}, not {kind!r}")
        self.kind: ClientKind = kind
        self._build = build
        self.clients: list[ConformanceClient] = []
        self._opened: list[ConformanceStream] = []

    def make(self, server: Any, *, max_retries: int = 0, **options: Any) -> ConformanceClient:
        """A client whose provider points at ``server`` (a stand-in or hostile server);
        ``options`` override the provider options."""
        client = self._build(server, max_retries, options)
        wrapper_type = _SyncClient if self.kind == "sync" else _AsyncClient
        made = wrapper_type(client, self._opened)
        self.clients.append(made)
        return made

    def run(
        self,
        scenario: Callable[P, Coroutine[Any, Any, T]],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """Run ``scenario(*args, **kwargs)`` through this driver's kind of client and
        return its result."""
        if self.kind == "sync":
            return run_blocking(scenario(*args, **kwargs))

        async def main() -> T:
            try:
                return await scenario(*args, **kwargs)
            finally:
                await self._settle()

        return asyncio.run(main())

    async def gather(self, *coros: Coroutine[Any, Any, T]) -> list[T]:
        """Await ``coros`` at once (``asyncio.gather``), or one after the other over
        ``Client``; their results in order."""
        if self.kind == "async":
            return list(await asyncio.gather(*coros))
        return [await coro for coro in coros]

    async def pause(self, seconds: float) -> None:
        """Wait ``seconds`` (``asyncio.sleep`` over ``AsyncClient``, letting it work)."""
        if self.kind == "async":
            await asyncio.sleep(seconds)
        else:
            time.sleep(seconds)

    async def _settle(self) -> None:
        opened, self._opened[:] = list(self._opened), []
        for stream in opened:
            with contextlib.suppress(Exception):
                await stream.close()
        for client in self.clients:
            await client.close()

    def close(self) -> None:
        """Close every client made (at the fixture's teardown)."""
        if self.kind == "async":
            if self.clients:
                asyncio.run(self._settle())
        else:
            for stream in self._opened:
                with contextlib.suppress(Exception):
                    run_blocking(stream.close())
            for client in self.clients:
                run_blocking(client.close())
        self._opened.clear()
        self.clients.clear()


_NETWORK_CALLS: tuple[tuple[Any, str], ...] = (
    (socket.socket, "connect"),
    (socket.socket, "connect_ex"),
    (socket, "create_connection"),
    (socket, "getaddrinfo"),
)


@contextlib.contextmanager
def network_refused() -> Iterator[list[str]]:
    """While active, every attempt to resolve a name or open a connection (any thread)
    raises ``OSError`` and is recorded in the yielded list (so an attempt a caller
    swallowed still shows)."""
    attempts: list[str] = []

    def refusing(name: str) -> Callable[..., Any]:
        def refuse(*args: Any, **kwargs: Any) -> Any:
            shown = args[1:] if name.startswith("socket.socket.") else args
            attempts.append(f"{name}{shown!r}")
            raise OSError(f"conformance: no network here ({name})")

        return refuse

    with pytest.MonkeyPatch.context() as patch:
        for owner, attr in _NETWORK_CALLS:
            qualified = f"socket.{attr}" if owner is socket else f"socket.socket.{attr}"
            patch.setattr(owner, attr, refusing(qualified))
        yield attempts


class ProviderConformance:
    """Base class of a provider plugin's conformance tests (subclass it as ``Test...``).

    Class attributes say which provider to test and how; :meth:`provider_options` says how
    to point it at the stand-in server. Set ``skip_checks`` (names from :data:`CHECKS`, or a
    mapping name -> reason) to skip checks that do not apply to the provider. Every check
    that talks to a server runs once per client kind (the ``client_kind`` fixture:
    ``"sync"`` for ``Client``, ``"async"`` for ``AsyncClient``).
    """

    #: The provider name, as in ``"<provider>:<model>"``.
    provider_name: ClassVar[str] = ""
    #: The model (or Azure deployment) to call.
    model: ClassVar[str] = ""
    #: The stand-in server's wire flavor: ``"openai"``, ``"azure"`` or ``"tgi"``.
    server_flavor: ClassVar[Flavor] = "openai"
    #: The API key configured on the provider and required by the server (``None``: none).
    api_key: ClassVar[str | None] = "sk-test-conformance-0123456789"
    #: Resolve the provider through its installed ``chatcore`` entry point (else
    #: :meth:`plugin` is registered in code and the entry-point check is skipped).
    uses_entry_point: ClassVar[bool] = True
    #: The entry point's name, when several plugins are installed (default: searched).
    entry_point_name: ClassVar[str | None] = None
    #: Checks to skip: names from :data:`CHECKS`, or a mapping of name -> reason.
    skip_checks: ClassVar[Collection[str]] = frozenset()
    #: The response header the provider reads its request id from.
    request_id_header: ClassVar[str] = "x-request-id"
    #: The read timeout (seconds) used by the read-timeout check.
    read_timeout: ClassVar[float] = 0.5
    #: Extra provider options used when exercising one capability, e.g.
    #: ``{"text_generation": {"api": "generate"}}``.
    capability_options: ClassVar[Mapping[str, Mapping[str, Any]]] = {}
    #: The user message of the round-trip checks.
    prompt: ClassVar[str] = "Hello, conformance suite"

    # -- what a subclass overrides ----------------------------------------------------------

    def provider_options(self, server: StandInServer) -> dict[str, Any]:
        """The provider's options pointing it at ``server`` (``providers={name: ...}``)."""
        return {"api_key": self.api_key, "base_url": server.base_url}

    def plugin(self) -> object:
        """The plugin to register in code when ``uses_entry_point`` is false."""
        raise NotImplementedError(
            f"{type(self).__name__}: set uses_entry_point = True, or override plugin()"
        )

    def error_reply(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Reply:
        """An error answer in the server's wire format (TGI: ``{"error", "error_type"}``;
        ``code`` becomes the ``error_type`` there)."""
        if self.server_flavor == "tgi":
            error_type = code or _TGI_ERROR_TYPES.get(status, "validation")
            return Reply.tgi_error(status, message, error_type, headers=headers)
        return Reply.error(status, message, code=code, headers=headers)

    def chat_reply(self, text: str | None = None, **fields: Any) -> Reply:
        """A successful chat answer (``Reply.chat``) in the server's wire format."""
        return Reply.chat(text, **fields)

    def stream_reply(self, text: str | None = None, **fields: Any) -> Reply:
        """A successful streamed answer (``Reply.chat_stream``) in the server's wire format."""
        return Reply.chat_stream(text, **fields)

    def expected_text(self, prompt: str) -> str:
        """The text of the server's default answer to ``prompt``."""
        return f"{STANDIN_NOTICE} You said: {prompt}"

    # -- fixtures ---------------------------------------------------------------------------

    @pytest.fixture
    def conformance_host(self) -> PluginHost:
        """A plugin host holding only the provider's plugin (through its entry point)."""
        from chatcore._plugins import PluginHost

        if not self.provider_name or not self.model:
            pytest.fail(f"{type(self).__name__}: set provider_name and model")
        if self.uses_entry_point:
            try:
                ep, _spec = find_entry_point(self.provider_name, self.entry_point_name)
            except LookupError as exc:
                pytest.fail(str(exc))
            return PluginHost(entry_points=[ep], environ={})
        return PluginHost(load_entry_points=False, plugins=[self.plugin()], environ={})

    @pytest.fixture
    def conformance_server(self) -> Iterator[StandInServer]:
        """A started stand-in server of ``server_flavor`` that requires ``api_key``."""
        with StandInServer(flavor=self.server_flavor, api_key=self.api_key) as server:
            yield server

    @pytest.fixture
    def conformance_sleep(self) -> RecordingSleep:
        """The retry policy's and rate limiter's sleep: never sleeps, records the delays."""
        return RecordingSleep()

    @pytest.fixture
    def conformance_metrics(self) -> MetricsRecorder:
        """A metrics sink attached to every client of the suite."""
        return MetricsRecorder()

    @pytest.fixture(params=CLIENT_KINDS)
    def client_kind(self, request: pytest.FixtureRequest) -> ClientKind:
        """The client a check runs through: ``"sync"`` (``Client``) or ``"async"``
        (``AsyncClient``). Every check using a client runs once with each."""
        return cast(ClientKind, request.param)

    @pytest.fixture
    def conformance_driver(
        self,
        client_kind: ClientKind,
        conformance_host: PluginHost,
        conformance_sleep: RecordingSleep,
        conformance_metrics: MetricsRecorder,
    ) -> Iterator[ClientDriver]:
        """The :class:`ClientDriver` of ``client_kind``: ``make(server, *, max_retries=0,
        **options)`` makes clients, ``run(scenario)`` runs a check's scenario."""
        from chatcore import AsyncClient, Client

        client_type = Client if client_kind == "sync" else AsyncClient

        def build(
            server: Any, max_retries: int, options: Mapping[str, Any]
        ) -> Client | AsyncClient:
            # a HostileServer has the attributes provider_options reads (url, base_url, ...)
            pointed = self.provider_options(cast(StandInServer, server))
            return client_type(
                plugin_host=conformance_host,
                providers={self.provider_name: {**pointed, **options}},
                environ={},
                retry=conformance_sleep.retry_policy(max_retries=max_retries),
                rate_limiter=conformance_sleep.rate_limiter(),
                metrics_sinks=[conformance_metrics],
            )

        driver = ClientDriver(client_kind, build)
        yield driver
        driver.close()

    @pytest.fixture
    def conformance_make_client(self, conformance_driver: ClientDriver) -> MakeClient:
        """``make(server, *, max_retries=0, **options)``: a :class:`ConformanceClient`
        whose provider points at ``server`` (``options`` override
        :meth:`provider_options`)."""
        return conformance_driver.make

    @pytest.fixture
    def conformance_client(
        self, conformance_driver: ClientDriver, conformance_server: StandInServer
    ) -> ConformanceClient:
        """A client for the provider at ``conformance_server``, without retries."""
        return conformance_driver.make(conformance_server)

    # -- helpers ----------------------------------------------------------------------------

    @property
    def target(self) -> str:
        """``"<provider>:<model>"``."""
        return f"{self.provider_name}:{self.model}"

    def check(self, *names: str) -> None:
        """Skip the running test when any of ``names`` is in ``skip_checks``."""
        for name in names:
            if name in self.skip_checks:
                reason = (
                    self.skip_checks[name]
                    if isinstance(self.skip_checks, Mapping)
                    else "listed in skip_checks"
                )
                pytest.skip(f"{name}: {reason}")

    def declared(self, client: ConformanceClient | Client | AsyncClient) -> frozenset[str]:
        """The provider's declared capabilities."""
        return client.provider_spec(self.provider_name).capabilities

    def require_stream(self, client: ConformanceClient | Client | AsyncClient) -> None:
        """Skip unless the provider declares ``stream``."""
        if "stream" not in self.declared(client):
            pytest.skip(f"{self.provider_name} does not declare the 'stream' capability")

    @contextlib.contextmanager
    def offline_client(self, host: PluginHost, **options: Any) -> Iterator[Client]:
        """A ``Client`` whose provider points at a server that is not running (bound, then
        closed): for checks that must send nothing. ``options`` override
        :meth:`provider_options`."""
        from chatcore import Client

        server = StandInServer(flavor=self.server_flavor, api_key=self.api_key)
        server.stop()
        client = Client(
            plugin_host=host,
            providers={self.provider_name: {**self.provider_options(server), **options}},
            environ={},
        )
        try:
            yield client
        finally:
            client.close()

    def translating(self, client: Client) -> Provider:
        """The client's provider; skip when it is a 0.1 provider (not translate-only)."""
        provider = client.provider(self.provider_name)
        if not provider.translates:
            pytest.skip(
                f"{self.provider_name} is a chatcore 0.1 provider (it does its own I/O, in "
                "worker threads under AsyncClient): it has no prepare_*/stream_decoder to check"
            )
        return provider

    # -- checks: plugin ---------------------------------------------------------------------

    def test_skip_checks_are_known(self) -> None:
        unknown = sorted(set(self.skip_checks) - CHECKS)
        assert not unknown, f"unknown names in skip_checks: {unknown} (known: {sorted(CHECKS)})"

    def test_entry_point_resolves(self) -> None:
        self.check("entry_point")
        if not self.uses_entry_point:
            pytest.skip("uses_entry_point is False: the plugin is registered in code")
        ep, spec = find_entry_point(self.provider_name, self.entry_point_name)
        assert ep.group == ENTRY_POINT_GROUP
        assert spec.name == self.provider_name
        assert callable(spec.factory)
        from chatcore._plugins import PluginHost

        host = PluginHost(entry_points=[ep], environ={})
        (record,) = [r for r in host.records() if r.name == ep.name]
        assert record.ok, record.error
        assert self.provider_name in record.providers
        assert host.provider_spec(self.provider_name).factory is spec.factory

    def test_spec_is_well_formed(self, conformance_host: PluginHost) -> None:
        self.check("spec")
        spec = conformance_host.provider_spec(self.provider_name)
        assert spec.name == self.provider_name
        unknown = sorted(spec.capabilities - CAPABILITIES)
        assert not unknown, f"undefined capabilities declared: {unknown}"
        assert "chat" in spec.capabilities, "every provider must declare 'chat'"
        options = spec.all_options()
        assert options["api_key"].secret, "the api_key option must be secret=True"
        for name, option in options.items():
            for var in option.env:
                assert var and var == var.strip(), f"option {name!r}: bad env name {var!r}"

    # -- checks: the translate-only contract -------------------------------------------------
    # A provider that translates is shared by Client and AsyncClient: building a call must
    # not touch the network (it would block the event loop), and each stream needs its own
    # decoder (streams run at once under AsyncClient). A 0.1 provider skips these.

    def test_prepare_without_io(self, conformance_host: PluginHost) -> None:
        """``prepare_chat`` / ``prepare_stream`` / ``prepare_models`` (those declared) return
        an :class:`HttpCall` with no server running and no attempt to connect or resolve."""
        self.check("prepare_without_io")
        methods = (
            ("prepare_chat", "chat"),
            ("prepare_stream", "stream"),
            ("prepare_models", "models"),
        )
        with self.offline_client(conformance_host) as client:
            declared = self.declared(client)
            self.translating(client)
            request = client.build_request(self.target, self.prompt)
        for method, capability in methods:
            if capability not in declared:
                continue
            options = self.capability_options.get(capability, {})
            with self.offline_client(conformance_host, **options) as client:
                prepare = getattr(self.translating(client), method)
                args = () if capability == "models" else (request,)
                if capability == "stream":
                    args = (attrs.evolve(request, stream=True),)
                with network_refused() as attempts:
                    try:
                        call = prepare(*args)
                    except Exception as exc:
                        if attempts:
                            pytest.fail(f"{method} tried the network ({attempts}): {exc!r}")
                        raise
            assert not attempts, f"{method} tried the network: {attempts}"
            assert isinstance(call, HttpCall), (
                f"{method} returned {type(call).__name__}, not an HttpCall"
            )
            assert call.stream is (capability == "stream"), (
                f"{method} returned an HttpCall with stream={call.stream}"
            )

    def test_stream_decoder_fresh(self, conformance_host: PluginHost) -> None:
        """Each ``stream_decoder`` call returns a new, not-done decoder, and ending one does
        not end another (two streams never share a decoder's state)."""
        self.check("stream_decoder_fresh")
        options = self.capability_options.get("stream", {})
        with self.offline_client(conformance_host, **options) as client:
            self.require_stream(client)
            provider = self.translating(client)
            request = attrs.evolve(client.build_request(self.target, self.prompt), stream=True)
            head = HttpResult(200, {"content-type": "text/event-stream"}, None, 0.0, None)
            with network_refused() as attempts:
                first = provider.stream_decoder(request, head)
                second = provider.stream_decoder(request, head)
        assert not attempts, f"stream_decoder tried the network: {attempts}"
        assert first is not second, (
            "stream_decoder returned the same decoder for two streams: each stream needs "
            "its own (streams are read at once under AsyncClient)"
        )
        for decoder in (first, second):
            assert callable(getattr(decoder, "feed", None)), "a decoder has feed(event)"
            assert callable(getattr(decoder, "end", None)), "a decoder has end()"
            assert decoder.done is False, "a fresh decoder must not be done"
        with contextlib.suppress(StreamError):  # ending before the terminator may raise
            list(second.end())
        assert first.done is False, "ending one stream's decoder ended another's"

    # -- checks: chat -----------------------------------------------------------------------

    def test_chat_round_trip(
        self,
        conformance_driver: ClientDriver,
        conformance_client: ConformanceClient,
        conformance_server: StandInServer,
    ) -> None:
        self.check("chat_round_trip")

        async def scenario() -> None:
            response = await conformance_client.chat(self.target, self.prompt)
            assert response.text == self.expected_text(self.prompt)
            assert response.provider == self.provider_name
            assert response.attempts == 1
            assert response.latency > 0
            assert response.finish_reason == "stop"
            assert response.cached is False

        conformance_driver.run(scenario)
        (sent,) = conformance_server.requests
        assert sent.method == "POST"
        if self.api_key:
            assert any(self.api_key in value for value in sent.headers.values()), (
                "the API key was not sent"
            )

    def test_request_id(
        self,
        conformance_driver: ClientDriver,
        conformance_client: ConformanceClient,
        conformance_server: StandInServer,
    ) -> None:
        self.check("request_id")
        conformance_server.enqueue(
            self.chat_reply(
                "With a request id.",
                model=self.model,
                headers={self.request_id_header: "req_conformance_0042"},
            )
        )

        async def scenario() -> None:
            response = await conformance_client.chat(self.target, self.prompt)
            assert response.text == "With a request id."
            assert response.model == self.model
            assert response.request_id == "req_conformance_0042"

        conformance_driver.run(scenario)

    def test_usage(
        self,
        conformance_driver: ClientDriver,
        conformance_client: ConformanceClient,
        conformance_server: StandInServer,
    ) -> None:
        self.check("usage")
        usage = {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}
        conformance_server.enqueue(self.chat_reply("Counted.", usage=usage))

        async def scenario() -> None:
            response = await conformance_client.chat(self.target, self.prompt)
            assert response.usage is not None
            assert response.usage.prompt_tokens == 11
            assert response.usage.completion_tokens == 7
            assert response.usage.total_tokens == 18
            default = (await conformance_client.chat(self.target, self.prompt)).usage
            assert default is not None and default.prompt_tokens > 0
            assert default.total_tokens == default.prompt_tokens + default.completion_tokens

        conformance_driver.run(scenario)

    # -- checks: streaming ------------------------------------------------------------------

    def test_stream(
        self,
        conformance_driver: ClientDriver,
        conformance_client: ConformanceClient,
        conformance_server: StandInServer,
    ) -> None:
        self.check("stream")
        self.require_stream(conformance_client)

        async def scenario() -> None:
            stream = await conformance_client.stream(self.target, self.prompt)
            chunks = await stream.chunks()
            assert len(chunks) > 1
            assert all(isinstance(c, ChatChunk) for c in chunks)
            assert all(c.provider == self.provider_name for c in chunks)
            text = "".join(c.text for c in chunks)
            assert text == self.expected_text(self.prompt)
            assert stream.text == text
            assert [c.finish_reason for c in chunks if c.finish_reason] == ["stop"]
            response = stream.response
            assert response is not None, "the stream did not complete"
            assert response.text == text
            assert response.finish_reason == "stop"
            assert response.provider == self.provider_name
            assert response.attempts == 1
            assert len(conformance_server.requests) == 1
            assert await stream.chunks() == []  # exhausted: the terminator ended it

        conformance_driver.run(scenario)

    def test_stream_without_terminator(
        self,
        conformance_driver: ClientDriver,
        conformance_client: ConformanceClient,
        conformance_server: StandInServer,
    ) -> None:
        self.check("stream_without_terminator")
        self.require_stream(conformance_client)
        conformance_server.enqueue(self.stream_reply("cut off in the middle", die_after=3))

        async def scenario() -> None:
            stream = await conformance_client.stream(self.target, self.prompt)
            with pytest.raises(StreamError):
                await stream.chunks()
            assert stream.response is None

        conformance_driver.run(scenario)

    def test_stream_early_close(
        self,
        conformance_driver: ClientDriver,
        conformance_client: ConformanceClient,
        conformance_server: StandInServer,
    ) -> None:
        self.check("stream_early_close")
        self.require_stream(conformance_client)
        conformance_server.enqueue(self.stream_reply(_LONG_TEXT, delay_between=0.05))

        async def scenario() -> None:
            stream = await conformance_client.stream(self.target, self.prompt)
            assert await stream.next() is not None
            started = time.monotonic()
            await stream.close()
            # The full stream takes 5 s; a released connection ends the server's handler
            # at its next write.
            while _open_connections(conformance_server) and time.monotonic() - started < 2.5:
                await conformance_driver.pause(0.02)
            assert _open_connections(conformance_server) == 0, "closing the stream kept its socket"
            assert await stream.chunks() == []
            # the client still works
            assert (await conformance_client.chat(self.target, self.prompt)).text

        conformance_driver.run(scenario)

    def test_stream_error_status(
        self,
        conformance_driver: ClientDriver,
        conformance_client: ConformanceClient,
        conformance_server: StandInServer,
    ) -> None:
        self.check("stream_error_status")
        self.require_stream(conformance_client)
        conformance_server.enqueue(self.error_reply(401, "conformance: bad key"))

        async def scenario() -> None:
            with pytest.raises(AuthenticationError) as info:
                await conformance_client.stream(self.target, self.prompt)
            assert info.value.status_code == 401
            assert info.value.provider == self.provider_name

        conformance_driver.run(scenario)

    def test_stream_concurrent(
        self,
        conformance_driver: ClientDriver,
        conformance_client: ConformanceClient,
        conformance_server: StandInServer,
    ) -> None:
        """Two streams of one client, a short and a long one, each decode their own answer
        to its end (its text and its one ``finish_reason``): read as concurrent tasks under
        ``AsyncClient`` (which must interleave them), one after the other under ``Client``."""
        self.check("stream_concurrent")
        self.require_stream(conformance_client)
        texts = ["alpha beta", " ".join(f"long{i}" for i in range(12))]
        conformance_server.enqueue(*(self.stream_reply(text, delay_between=0.03) for text in texts))
        order: list[int] = []

        async def read(number: int) -> tuple[str, list[str | None]]:
            finishes: list[str | None] = []
            async with await conformance_client.stream(self.target, self.prompt) as stream:
                while (chunk := await stream.next()) is not None:
                    order.append(number)
                    if chunk.finish_reason:
                        finishes.append(chunk.finish_reason)
                assert stream.response is not None, f"stream {number} did not complete"
                assert stream.response.text == stream.text
                return stream.text, finishes

        async def scenario() -> list[tuple[str, list[str | None]]]:
            return await conformance_driver.gather(read(1), read(2))

        results = conformance_driver.run(scenario)
        how = "at once" if conformance_driver.kind == "async" else "in turn"
        decoded = [text for text, _ in results]
        assert sorted(decoded) == sorted(texts), (
            f"two streams read {how} decoded {decoded!r}, not their own answers {texts!r}"
        )
        finishes = [finish for _, finish in results]
        assert finishes == [["stop"], ["stop"]], (
            f"two streams read {how} ended with finish reasons {finishes!r}, not one 'stop' each"
        )
        assert len(conformance_server.requests) == 2
        if conformance_driver.kind == "async":
            switches = sum(a != b for a, b in itertools.pairwise(order))
            assert switches >= 2, f"AsyncClient read the streams one after the other: {order}"

    # -- checks: errors ---------------------------------------------------------------------

    @pytest.mark.parametrize("status", sorted(ERROR_STATUSES))
    def test_error_status(
        self,
        conformance_driver: ClientDriver,
        conformance_client: ConformanceClient,
        conformance_server: StandInServer,
        status: int,
    ) -> None:
        self.check("error_status", f"error_status_{status}")
        expected = ERROR_STATUSES[status]
        message = f"conformance: simulated failure {status}"
        conformance_server.enqueue(self.error_reply(status, message))

        async def scenario() -> None:
            with pytest.raises(APIError) as info:
                await conformance_client.chat(self.target, self.prompt)
            error = info.value
            assert isinstance(error, expected), f"{status} raised {type(error).__name__}"
            assert not isinstance(error, QuotaExceededError)
            assert error.status_code == status
            assert error.provider == self.provider_name
            assert error.model == self.model
            assert error.attempts == 1
            assert message in str(error)

        conformance_driver.run(scenario)
        assert len(conformance_server.requests) == 1

    @pytest.mark.parametrize("header", sorted(_RETRY_AFTER_HEADERS))
    def test_retry_after(
        self,
        conformance_driver: ClientDriver,
        conformance_server: StandInServer,
        conformance_sleep: RecordingSleep,
        header: str,
    ) -> None:
        self.check("retry_after")
        value, seconds = _RETRY_AFTER_HEADERS[header]
        reply = self.error_reply(429, "conformance: slow down", headers={header: value})

        async def scenario() -> None:
            conformance_server.enqueue(reply)
            with pytest.raises(RateLimitError) as info:
                await conformance_driver.make(conformance_server).chat(self.target, self.prompt)
            assert info.value.retry_after == pytest.approx(seconds)
            assert not isinstance(info.value, QuotaExceededError)
            # retried after exactly the demanded delay
            conformance_server.enqueue(reply)
            retrying = conformance_driver.make(conformance_server, max_retries=2)
            response = await retrying.chat(self.target, self.prompt)
            assert response.attempts == 2

        conformance_driver.run(scenario)
        assert conformance_sleep.delays == [pytest.approx(seconds)]

    def test_quota_not_retried(
        self, conformance_driver: ClientDriver, conformance_server: StandInServer
    ) -> None:
        self.check("quota_not_retried")
        conformance_server.enqueue(
            self.error_reply(
                429, "conformance: you exceeded your quota", code="insufficient_quota"
            ),
            self.chat_reply("should never be fetched"),
        )
        client = conformance_driver.make(conformance_server, max_retries=2)

        async def scenario() -> None:
            with pytest.raises(QuotaExceededError) as info:
                await client.chat(self.target, self.prompt)
            assert info.value.status_code == 429
            assert info.value.attempts == 1

        conformance_driver.run(scenario)
        assert len(conformance_server.requests) == 1
        assert conformance_server.pending_replies == 1

    @pytest.mark.parametrize("status", _RETRIED_STATUSES)
    def test_server_error_retried(
        self,
        conformance_driver: ClientDriver,
        conformance_server: StandInServer,
        conformance_sleep: RecordingSleep,
        status: int,
    ) -> None:
        self.check("server_error_retried", f"server_error_retried_{status}")
        conformance_server.enqueue(self.error_reply(status, f"conformance: transient {status}"))
        client = conformance_driver.make(conformance_server, max_retries=2)

        async def scenario() -> None:
            response = await client.chat(self.target, self.prompt)
            assert response.text == self.expected_text(self.prompt)
            assert response.attempts == 2

        conformance_driver.run(scenario)
        assert len(conformance_server.requests) == 2
        assert len(conformance_sleep.delays) == 1

    def test_connection_refused(self, conformance_driver: ClientDriver) -> None:
        self.check("connection_refused")
        server = StandInServer(flavor=self.server_flavor, api_key=self.api_key)
        server.stop()  # bound then closed: nothing listens on its port any more
        client = conformance_driver.make(server)

        async def scenario() -> None:
            with pytest.raises(APIConnectionError) as info:
                await client.chat(self.target, self.prompt)
            assert not isinstance(info.value, APITimeoutError)
            assert info.value.provider == self.provider_name
            assert info.value.attempts == 1

        conformance_driver.run(scenario)

    def test_read_timeout(
        self, conformance_driver: ClientDriver, conformance_server: StandInServer
    ) -> None:
        self.check("read_timeout")
        conformance_server.enqueue(Reply.hang(30))
        client = conformance_driver.make(conformance_server, timeout=self.read_timeout)

        async def scenario() -> None:
            started = time.monotonic()
            with pytest.raises(APITimeoutError) as info:
                await client.chat(self.target, self.prompt)
            assert time.monotonic() - started < self.read_timeout + 5
            assert info.value.provider == self.provider_name

        conformance_driver.run(scenario)

    def test_malformed_json(
        self,
        conformance_driver: ClientDriver,
        conformance_client: ConformanceClient,
        conformance_server: StandInServer,
    ) -> None:
        self.check("malformed_json")
        conformance_server.enqueue(Reply.raw('{"id": "chatcmpl-1", "choices": [', status=200))

        async def scenario() -> None:
            with pytest.raises(ResponseDecodeError) as info:
                await conformance_client.chat(self.target, self.prompt)
            assert info.value.provider == self.provider_name

        conformance_driver.run(scenario)

    @pytest.mark.parametrize(
        "body", [{"unexpected": True}, [], "text"], ids=["object", "array", "string"]
    )
    def test_unexpected_body(
        self,
        conformance_driver: ClientDriver,
        conformance_client: ConformanceClient,
        conformance_server: StandInServer,
        body: Any,
    ) -> None:
        self.check("unexpected_body")
        conformance_server.enqueue(Reply.json(body))

        async def scenario() -> None:
            with pytest.raises(ResponseDecodeError) as info:
                await conformance_client.chat(self.target, self.prompt)
            assert info.value.provider == self.provider_name

        conformance_driver.run(scenario)

    def test_redaction(
        self, conformance_driver: ClientDriver, conformance_server: StandInServer
    ) -> None:
        self.check("redaction")
        key = self.api_key
        if not key:
            pytest.skip("api_key is None: nothing to redact")
        conformance_server.enqueue(
            self.error_reply(401, f"Incorrect API key provided: {key}", code=key),
            self.error_reply(500, f"upstream failed for {key}"),
            self.error_reply(500, f"upstream failed again for {key}"),
            Reply.raw(f"<html>proxy error for {key}</html>", status=200, content_type="text/html"),
        )
        errors: list[BaseException] = []
        logs: LogCapture

        async def scenario() -> None:
            client = conformance_driver.make(conformance_server, max_retries=1)
            for _ in range(3):
                with pytest.raises(APIError) as info:
                    await client.chat(self.target, f"{self.prompt} ({key})")
                errors.append(info.value)

        with capture_logs("DEBUG") as logs:
            conformance_driver.run(scenario)
        assert isinstance(errors[0], AuthenticationError)
        assert isinstance(errors[1], ServerError) and errors[1].attempts == 2
        assert isinstance(errors[2], ResponseDecodeError)
        for error in errors:
            leaks = _secret_free(error, key)
            assert not leaks, f"{type(error).__name__} shows the API key in: {leaks}"
        assert logs.lines, "nothing was logged with logging enabled"
        assert key not in logs.text, "the API key appears in chatcore's log output"

    # -- checks: capabilities ---------------------------------------------------------------

    @pytest.mark.parametrize("capability", sorted(CAPABILITIES))
    def test_capability(
        self,
        conformance_driver: ClientDriver,
        conformance_server: StandInServer,
        capability: str,
    ) -> None:
        self.check("capabilities", f"capability_{capability}")
        client = conformance_driver.make(
            conformance_server, **self.capability_options.get(capability, {})
        )
        if capability not in self.declared(client):
            if capability == "stream":

                async def refused() -> None:
                    with pytest.raises(ValidationError):
                        await client.stream(self.target, self.prompt)

                conformance_driver.run(refused)
                assert conformance_server.requests == []
                return
            pytest.skip(f"{capability!r} is not declared")
        exercise = getattr(self, f"exercise_{capability}")
        if not inspect.iscoroutinefunction(exercise):
            pytest.fail(
                f"{type(self).__name__}.exercise_{capability} must be 'async def' and await "
                "the ConformanceClient's calls: it runs through Client and AsyncClient"
            )
        conformance_driver.run(exercise, client, conformance_server)

    async def exercise_chat(self, client: ConformanceClient, server: StandInServer) -> None:
        """``chat``: a chat answers."""
        response = await client.chat(self.target, self.prompt)
        assert response.text == self.expected_text(self.prompt)

    async def exercise_stream(self, client: ConformanceClient, server: StandInServer) -> None:
        """``stream``: a stream reads to the end."""
        stream = await client.stream(self.target, self.prompt)
        assert (await stream.read()).text == self.expected_text(self.prompt)

    async def exercise_models(self, client: ConformanceClient, server: StandInServer) -> None:
        """``models``: ``list_models`` returns the server's models."""
        models = await client.list_models(self.provider_name)
        assert models, "list_models returned nothing"
        assert all(isinstance(m, ModelInfo) for m in models)
        assert all(m.provider == self.provider_name for m in models)
        assert {m.id for m in models} <= set(server.model_list)

    async def exercise_tools(self, client: ConformanceClient, server: StandInServer) -> None:
        """``tools``: tools are sent and the forced tool call comes back."""
        response = await client.chat(
            self.target,
            "What is the weather in Paris?",
            tools=[_WEATHER_TOOL],
            tool_choice="required",
        )
        (call,) = response.tool_calls
        assert call.function.name == "get_weather"
        assert json.loads(call.function.arguments or "{}") == {}
        assert server.last_request.json()["tools"][0]["function"]["name"] == "get_weather"

    async def exercise_json_object(self, client: ConformanceClient, server: StandInServer) -> None:
        """``json_object``: a JSON-mode request is accepted."""
        response = await client.chat(
            self.target, "Answer in JSON.", response_format={"type": "json_object"}
        )
        assert response.text

    async def exercise_json_schema(self, client: ConformanceClient, server: StandInServer) -> None:
        """``json_schema``: a structured-output request is accepted."""
        schema = {"name": "answer", "schema": {"type": "object"}, "strict": False}
        response = await client.chat(
            self.target,
            "Answer in JSON.",
            response_format={"type": "json_schema", "json_schema": schema},
        )
        assert response.text

    async def exercise_vision(self, client: ConformanceClient, server: StandInServer) -> None:
        """``vision``: an image part is sent and accepted."""
        url = "https://example.invalid/cat.png"
        message = {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is in this picture?"},
                {"type": "image_url", "image_url": {"url": url}},
            ],
        }
        assert (await client.chat(self.target, [message])).text
        assert url in server.last_request.text

    async def exercise_text_generation(
        self, client: ConformanceClient, server: StandInServer
    ) -> None:
        """``text_generation``: a plain completion answers (with
        ``capability_options["text_generation"]`` applied)."""
        response = await client.chat(self.target, self.prompt)
        assert self.prompt in response.text

    # -- checks: robustness and metrics -----------------------------------------------------

    def test_generated_completions(
        self,
        conformance_driver: ClientDriver,
        conformance_client: ConformanceClient,
        conformance_server: StandInServer,
    ) -> None:
        self.check("generated_completions")

        @settings(
            max_examples=25,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        )
        @given(strategies.chat_completions())
        def decodes(body: dict[str, Any]) -> None:
            conformance_server.enqueue(Reply.json(body))

            async def scenario() -> ChatResponse:
                return await conformance_client.chat(self.target, self.prompt)

            response = conformance_driver.run(scenario)
            assert len(response.choices) == len(body["choices"])
            first = body["choices"][0]["message"]["content"] if body["choices"] else None
            assert response.text == (first or "")

        decodes()

    def test_metrics(
        self,
        conformance_driver: ClientDriver,
        conformance_client: ConformanceClient,
        conformance_server: StandInServer,
        conformance_metrics: MetricsRecorder,
    ) -> None:
        self.check("metrics")

        async def scenario() -> None:
            await conformance_client.chat(self.target, self.prompt)
            conformance_server.enqueue(self.error_reply(500, "conformance: metrics failure"))
            with pytest.raises(ServerError):
                await conformance_client.chat(self.target, self.prompt)

        conformance_driver.run(scenario)
        ok, failed = conformance_metrics.requests
        assert (ok.provider, ok.model, ok.outcome) == (self.provider_name, self.model, "ok")
        assert ok.prompt_tokens and ok.completion_tokens
        assert (failed.outcome, failed.status_code) == ("error", 500)
        assert failed.error_type is not None and failed.error_type.endswith("Error")

    # -- checks: echoed secrets and credentials in URLs ------------------------------------
    # A server that echoes the credential back (in the request id, in any header's name or
    # value, anywhere in a JSON body, keys included) must not get it shown by the client;
    # and a URL option carrying a credential is refused before anything is sent.

    def _echo_key(self) -> str:
        if not self.api_key:
            pytest.skip("api_key is None: nothing to echo")
        return self.api_key

    def test_echoed_secret_error(
        self,
        conformance_driver: ClientDriver,
        conformance_client: ConformanceClient,
        conformance_server: StandInServer,
    ) -> None:
        self.check("echoed_secret_error")
        key = self._echo_key()
        body = {
            "error": {"message": f"bad key {key}", "type": key, "code": key, "param": key},
            key: [{"deeper": {key: key}}, key],
        }
        conformance_server.enqueue(Reply.json(body, status=400, headers=echo_headers(key)))

        async def scenario() -> APIStatusError:
            with pytest.raises(APIStatusError) as info:
                await conformance_client.chat(self.target, self.prompt)
            return info.value

        error = conformance_driver.run(scenario)
        leaks = _secret_free(error, key)
        assert not leaks, f"{type(error).__name__} shows the echoed key in: {leaks}"

    def test_echoed_secret_response(
        self,
        conformance_driver: ClientDriver,
        conformance_client: ConformanceClient,
        conformance_server: StandInServer,
    ) -> None:
        self.check("echoed_secret_response")
        key = self._echo_key()
        conformance_server.enqueue(
            self.chat_reply(f"your key is {key}", model=key, headers=echo_headers(key))
        )

        async def scenario() -> ChatResponse:
            return await conformance_client.chat(self.target, self.prompt)

        response = conformance_driver.run(scenario)
        shown = {
            "fields": "\0".join(strings_in(response)),
            "repr": repr(response),
            "to_dict": json.dumps(response.to_dict(), default=str),
        }
        leaks = [where for where, text in shown.items() if key in text]
        assert not leaks, f"the response shows the echoed key in: {leaks}"
        assert response.text.startswith("your key is "), "the answer itself must still arrive"

    def test_echoed_secret_stream(
        self,
        conformance_driver: ClientDriver,
        conformance_client: ConformanceClient,
        conformance_server: StandInServer,
    ) -> None:
        self.check("echoed_secret_stream")
        self.require_stream(conformance_client)
        key = self._echo_key()
        conformance_server.enqueue(
            self.stream_reply(f"your key is {key}", model=key, headers=echo_headers(key))
        )

        async def scenario() -> tuple[list[ChatChunk], ConformanceStream]:
            async with await conformance_client.stream(self.target, self.prompt) as stream:
                return await stream.chunks(), stream

        chunks, stream = conformance_driver.run(scenario)
        assert chunks, "the stream delivered no chunk"
        shown = {
            "chunks": "\0".join(s for c in chunks for s in strings_in(c)),
            "chunk reprs": "\0".join(repr(c) for c in chunks),
            "stream.headers": "\0".join(strings_in(stream.headers)),
            "stream.request_id": str(stream.request_id),
            "stream.text": stream.text,
            "stream.response": "\0".join(strings_in(stream.response)),
        }
        leaks = [where for where, text in shown.items() if key in text]
        assert not leaks, f"the stream shows the echoed key in: {leaks}"

    def test_credentials_in_url(
        self, conformance_driver: ClientDriver, conformance_server: StandInServer
    ) -> None:
        self.check("credentials_in_url")
        token = "url-Token.0123"
        urls = {
            name: value
            for name, value in self.provider_options(conformance_server).items()
            if isinstance(value, str) and value.startswith(("http://", "https://"))
        }
        if not urls:
            pytest.skip("the provider takes no URL option")
        for name, url in urls.items():
            for bad in urls_with_credentials(url, token):
                options: dict[str, Any] = {name: bad}
                client = conformance_driver.make(conformance_server, **options)
                with pytest.raises(ConfigurationError) as info:
                    client.provider(self.provider_name)
                text = "".join(traceback.format_exception(info.value))
                assert token not in text, f"{name}={bad!r}: the refusal shows the credential"
                assert "api_key" in str(info.value), f"{name}: the refusal must say to use api_key"
        assert not conformance_server.requests, "a request was sent with a refused URL"

    # -- checks: hostile servers ------------------------------------------------------------

    def test_hostile_cross_origin_redirect(self, conformance_driver: ClientDriver) -> None:
        """A redirect to another origin is refused: the other origin sees no request at
        all (so never the key), and the error names its origin only."""
        self.check("hostile_cross_origin_redirect")
        other_host = "127.0.0.2" if loopback_available("127.0.0.2") else "127.0.0.1"
        with HostileServer(other_host) as other, HostileServer() as server:
            server.default = Hostile.redirect(f"{other.url}/v1/steal?token=abc", 307)
            client = conformance_driver.make(server, max_retries=2)

            async def scenario() -> RedirectError:
                with pytest.raises(RedirectError) as info:
                    await client.chat(self.target, self.prompt)
                return info.value

            error = conformance_driver.run(scenario)
            assert other.requests == [], "the other origin was contacted"
            assert len(server.requests) == 1
            assert error.location == other.url  # the origin: no path, no query
            assert "steal" not in str(error) and "token" not in str(error)
            assert error.attempts == 1

    def test_hostile_redirect_loop(
        self, conformance_driver: ClientDriver, conformance_metrics: MetricsRecorder
    ) -> None:
        """A same-origin redirect loop stops at ``max_redirects``; the error, the attempt
        count and the attempt metrics agree with the requests the server saw."""
        self.check("hostile_redirect_loop")
        logs: LogCapture
        with HostileServer(default=Hostile.redirect("/v1/loop", 307)) as server:
            client = conformance_driver.make(server, max_retries=2, max_redirects=2)

            async def scenario() -> RedirectError:
                with pytest.raises(RedirectError) as info:
                    await client.chat(self.target, self.prompt)
                return info.value

            with capture_logs("DEBUG") as logs:
                error = conformance_driver.run(scenario)
            seen = len(server.requests)
        assert seen == 3, f"the server saw {seen} requests for 1 + max_redirects=2"
        assert error.attempts == 1
        assert "3 HTTP requests" in str(error)
        assert len(conformance_metrics.attempts) == 1
        followed = [line for line in logs.lines if "following same-origin redirect" in line]
        assert len(followed) == seen - 1, logs.lines

    def test_hostile_slow_drip(self, conformance_driver: ClientDriver) -> None:
        """A valid answer dripped a byte every 0.1 s (head included), each byte well within
        the read timeout (0.5 s), cannot outlast ``timeout_total`` (0.8 s): the call fails
        with APITimeoutError within a few seconds."""
        self.check("hostile_slow_drip")

        async def scenario(client: ConformanceClient) -> APITimeoutError:
            with pytest.raises(APITimeoutError) as info:
                await client.chat(self.target, self.prompt, timeout_total=0.8)
            return info.value

        for answer in (Hostile.drip(interval=0.1), Hostile.drip(interval=0.1, head=True)):
            with HostileServer(default=answer) as server:
                client = conformance_driver.make(server, timeout=0.5, chunk_timeout=0.5)
                started = time.monotonic()
                error = conformance_driver.run(scenario, client)
                waited = time.monotonic() - started
            assert waited < 4, f"timeout_total=0.8 held the call for {waited:.1f} s"
            assert error.provider == self.provider_name

    def test_hostile_oversized_answer(self, conformance_driver: ClientDriver) -> None:
        """A gzip bomb and an oversized plain body stop at ``max_response_bytes``, after
        decompression, with ResponseTooLargeError; the server never sends it all."""
        self.check("hostile_oversized_answer")
        limit = 1 << 20

        async def scenario(client: ConformanceClient) -> ResponseTooLargeError:
            with pytest.raises(ResponseTooLargeError) as info:
                await client.chat(self.target, self.prompt)
            return info.value

        for answer in (Hostile.gzip_bomb(4 << 30), Hostile.huge(64 << 20)):
            with HostileServer(default=answer) as server:
                client = conformance_driver.make(server, max_response_bytes=limit)
                error = conformance_driver.run(scenario, client)
                assert server.completed == 0, f"the client read all of {answer.kind}"
            assert error.limit == limit
            assert error.provider == self.provider_name
            assert error.model == self.model

    @pytest.mark.parametrize("framing", ["close", "length"])
    def test_hostile_stream_incremental(
        self, conformance_driver: ClientDriver, framing: str
    ) -> None:
        """An event stream without chunked encoding is delivered event by event: the
        first chunk arrives while the server still holds back the rest."""
        self.check("hostile_stream_incremental")
        answer = Hostile.staged_stream(framing=framing, wait=5)  # type: ignore[arg-type]
        with HostileServer(default=answer) as server:
            client = conformance_driver.make(server, chunk_timeout=30)
            self.require_stream(client)

            async def scenario() -> list[str]:
                stream = await client.stream(self.target, self.prompt)
                texts: list[str] = []
                while (chunk := await stream.next()) is not None:
                    if not texts:
                        assert not server.stage_timed_out, "the first event came only at the end"
                        server.release()
                    texts.append(chunk.text)
                return texts

            texts = conformance_driver.run(scenario)
        assert "".join(texts) == "first second"

    def test_hostile_non_sse_stream(self, conformance_driver: ClientDriver) -> None:
        """A stream request asks for ``text/event-stream``; a 2xx answer of another type
        is a StreamError that says what came back."""
        self.check("hostile_non_sse_stream")
        with HostileServer(default=Hostile.chat()) as server:
            client = conformance_driver.make(server)
            self.require_stream(client)

            async def scenario() -> StreamError:
                with pytest.raises(StreamError) as info:
                    await (await client.stream(self.target, self.prompt)).chunks()
                return info.value

            error = conformance_driver.run(scenario)
            accept = server.requests[0].headers.get("accept")
        assert accept == "text/event-stream"
        assert "application/json" in str(error)
        assert "[DONE]" not in str(error)

    # -- checks: AsyncClient's event loop ---------------------------------------------------

    @pytest.mark.parametrize("client_kind", ["async"])
    def test_event_loop_free(
        self, conformance_driver: ClientDriver, conformance_server: StandInServer
    ) -> None:
        """While a chat, a stream and a model listing (those declared; each with its
        ``capability_options``) wait 1 s for the server, ``AsyncClient``'s event loop keeps
        running: nothing the provider does blocks it (a 0.1 provider's own I/O runs in
        worker threads)."""
        self.check("event_loop_free")
        hold, most = 1.0, 0.4

        def client_for(capability: str) -> ConformanceClient:
            options = self.capability_options.get(capability, {})
            return conformance_driver.make(conformance_server, **options)

        async def chat() -> None:
            assert (await client_for("chat").chat(self.target, self.prompt)).text

        async def stream() -> None:
            await (await client_for("stream").stream(self.target, self.prompt)).read()

        async def models() -> None:
            assert await client_for("models").list_models(self.provider_name)

        calls = {"chat": chat, "stream": stream, "models": models}
        declared = self.declared(client_for("chat"))

        async def longest_pauses() -> dict[str, float]:
            worst: dict[str, float] = {}
            for what, call in calls.items():
                if what in declared:
                    conformance_server.enqueue(Reply.hang(hold))
                    worst[what] = await _longest_pause(call())
            return worst

        worst = conformance_driver.run(longest_pauses)
        blocked = {what: round(gap, 2) for what, gap in worst.items() if gap > most}
        assert not blocked, (
            f"AsyncClient's event loop stood still (seconds) during {blocked}: the provider "
            "blocks it (I/O or waiting in prepare_*/parse_*/stream_decoder)"
        )


async def _longest_pause(call: Coroutine[Any, Any, None], tick: float = 0.01) -> float:
    """Await ``call`` while a task wakes every ``tick`` seconds; the longest the event loop
    kept it waiting (seconds)."""
    loop = asyncio.get_running_loop()
    gaps: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:
        last = loop.time()
        while not done.is_set():
            await asyncio.sleep(tick)
            now = loop.time()
            gaps.append(now - last)
            last = now

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)  # the ticker starts before the call does
    try:
        await call
    finally:
        done.set()
        await task
    return max(gaps, default=0.0)


def _open_connections(server: StandInServer) -> int:
    with server._lock:
        return len(server._conns)
