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

Every check runs over real HTTP through a real :class:`chatcore.Client` (no retries unless
the check is about retries; retry waits never sleep): the chat round trip, request ids and
usage, streaming, the typed error of every status and fault, retries, redaction of the API
key, the declared capabilities, and that the ``chatcore`` entry point resolves. A subclass
skips checks by name with ``skip_checks`` (see :data:`CHECKS`) and adapts replies to its
wire by overriding :meth:`ProviderConformance.error_reply` and friends.
"""

from __future__ import annotations

import importlib.metadata
import json
import time
import traceback
from collections.abc import Callable, Collection, Iterator, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

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
from chatcore.models import ChatChunk
from chatcore.provider import CAPABILITIES, ModelInfo, ProviderSpec
from chatcore.testing import strategies
from chatcore.testing.helpers import LogCapture, MetricsRecorder, RecordingSleep, capture_logs
from chatcore.testing.hostile import Hostile, HostileServer, loopback_available
from chatcore.testing.server import STANDIN_NOTICE, Flavor, Reply, StandInServer

if TYPE_CHECKING:
    from chatcore import Client
    from chatcore._plugins import PluginHost

__all__ = [
    "CHECKS",
    "ERROR_STATUSES",
    "ProviderConformance",
    "echo_headers",
    "find_entry_point",
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

MakeClient = Callable[..., "Client"]


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


class ProviderConformance:
    """Base class of a provider plugin's conformance tests (subclass it as ``Test...``).

    Class attributes say which provider to test and how; :meth:`provider_options` says how
    to point it at the stand-in server. Set ``skip_checks`` (names from :data:`CHECKS`, or a
    mapping name -> reason) to skip checks that do not apply to the provider.
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

    @pytest.fixture
    def conformance_make_client(
        self,
        conformance_host: PluginHost,
        conformance_sleep: RecordingSleep,
        conformance_metrics: MetricsRecorder,
    ) -> Iterator[MakeClient]:
        """``make(server, *, max_retries=0, **options)``: a client whose provider points at
        ``server`` (``options`` override :meth:`provider_options`)."""
        from chatcore import Client

        clients: list[Client] = []

        def make(server: StandInServer, *, max_retries: int = 0, **options: Any) -> Client:
            client = Client(
                plugin_host=conformance_host,
                providers={self.provider_name: {**self.provider_options(server), **options}},
                environ={},
                retry=conformance_sleep.retry_policy(max_retries=max_retries),
                rate_limiter=conformance_sleep.rate_limiter(),
                metrics_sinks=[conformance_metrics],
            )
            clients.append(client)
            return client

        yield make
        for client in clients:
            client.close()

    @pytest.fixture
    def conformance_client(
        self, conformance_make_client: MakeClient, conformance_server: StandInServer
    ) -> Client:
        """A client for the provider at ``conformance_server``, without retries."""
        return conformance_make_client(conformance_server)

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

    def declared(self, client: Client) -> frozenset[str]:
        """The provider's declared capabilities."""
        return client.provider_spec(self.provider_name).capabilities

    def require_stream(self, client: Client) -> None:
        """Skip unless the provider declares ``stream``."""
        if "stream" not in self.declared(client):
            pytest.skip(f"{self.provider_name} does not declare the 'stream' capability")

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

    # -- checks: chat -----------------------------------------------------------------------

    def test_chat_round_trip(
        self, conformance_client: Client, conformance_server: StandInServer
    ) -> None:
        self.check("chat_round_trip")
        response = conformance_client.chat(self.target, self.prompt)
        assert response.text == self.expected_text(self.prompt)
        assert response.provider == self.provider_name
        assert response.attempts == 1
        assert response.latency > 0
        assert response.finish_reason == "stop"
        assert response.cached is False
        (sent,) = conformance_server.requests
        assert sent.method == "POST"
        if self.api_key:
            assert any(self.api_key in value for value in sent.headers.values()), (
                "the API key was not sent"
            )

    def test_request_id(
        self, conformance_client: Client, conformance_server: StandInServer
    ) -> None:
        self.check("request_id")
        conformance_server.enqueue(
            self.chat_reply(
                "With a request id.",
                model=self.model,
                headers={self.request_id_header: "req_conformance_0042"},
            )
        )
        response = conformance_client.chat(self.target, self.prompt)
        assert response.text == "With a request id."
        assert response.model == self.model
        assert response.request_id == "req_conformance_0042"

    def test_usage(self, conformance_client: Client, conformance_server: StandInServer) -> None:
        self.check("usage")
        usage = {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}
        conformance_server.enqueue(self.chat_reply("Counted.", usage=usage))
        response = conformance_client.chat(self.target, self.prompt)
        assert response.usage is not None
        assert response.usage.prompt_tokens == 11
        assert response.usage.completion_tokens == 7
        assert response.usage.total_tokens == 18
        default = conformance_client.chat(self.target, self.prompt).usage
        assert default is not None and default.prompt_tokens > 0
        assert default.total_tokens == default.prompt_tokens + default.completion_tokens

    # -- checks: streaming ------------------------------------------------------------------

    def test_stream(self, conformance_client: Client, conformance_server: StandInServer) -> None:
        self.check("stream")
        self.require_stream(conformance_client)
        stream = conformance_client.stream(self.target, self.prompt)
        chunks = list(stream)
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
        assert list(stream) == []  # exhausted: the terminator ended it

    def test_stream_without_terminator(
        self, conformance_client: Client, conformance_server: StandInServer
    ) -> None:
        self.check("stream_without_terminator")
        self.require_stream(conformance_client)
        conformance_server.enqueue(self.stream_reply("cut off in the middle", die_after=3))
        stream = conformance_client.stream(self.target, self.prompt)
        with pytest.raises(StreamError):
            list(stream)
        assert stream.response is None

    def test_stream_early_close(
        self, conformance_client: Client, conformance_server: StandInServer
    ) -> None:
        self.check("stream_early_close")
        self.require_stream(conformance_client)
        conformance_server.enqueue(self.stream_reply(_LONG_TEXT, delay_between=0.05))
        stream = conformance_client.stream(self.target, self.prompt)
        next(stream)
        started = time.monotonic()
        stream.close()
        # The full stream takes 5 s; a released connection ends the server's handler at
        # its next write.
        while _open_connections(conformance_server) and time.monotonic() - started < 2.5:
            time.sleep(0.02)
        assert _open_connections(conformance_server) == 0, "closing the stream kept its socket"
        assert list(stream) == []
        assert conformance_client.chat(self.target, self.prompt).text  # the client still works

    def test_stream_error_status(
        self, conformance_client: Client, conformance_server: StandInServer
    ) -> None:
        self.check("stream_error_status")
        self.require_stream(conformance_client)
        conformance_server.enqueue(self.error_reply(401, "conformance: bad key"))
        with pytest.raises(AuthenticationError) as info:
            conformance_client.stream(self.target, self.prompt)
        assert info.value.status_code == 401
        assert info.value.provider == self.provider_name

    # -- checks: errors ---------------------------------------------------------------------

    @pytest.mark.parametrize("status", sorted(ERROR_STATUSES))
    def test_error_status(
        self, conformance_client: Client, conformance_server: StandInServer, status: int
    ) -> None:
        self.check("error_status", f"error_status_{status}")
        expected = ERROR_STATUSES[status]
        message = f"conformance: simulated failure {status}"
        conformance_server.enqueue(self.error_reply(status, message))
        with pytest.raises(APIError) as info:
            conformance_client.chat(self.target, self.prompt)
        error = info.value
        assert isinstance(error, expected), f"{status} raised {type(error).__name__}"
        assert not isinstance(error, QuotaExceededError)
        assert error.status_code == status
        assert error.provider == self.provider_name
        assert error.model == self.model
        assert error.attempts == 1
        assert message in str(error)
        assert len(conformance_server.requests) == 1

    @pytest.mark.parametrize("header", sorted(_RETRY_AFTER_HEADERS))
    def test_retry_after(
        self,
        conformance_make_client: MakeClient,
        conformance_server: StandInServer,
        conformance_sleep: RecordingSleep,
        header: str,
    ) -> None:
        self.check("retry_after")
        value, seconds = _RETRY_AFTER_HEADERS[header]
        reply = self.error_reply(429, "conformance: slow down", headers={header: value})
        conformance_server.enqueue(reply)
        with pytest.raises(RateLimitError) as info:
            conformance_make_client(conformance_server).chat(self.target, self.prompt)
        assert info.value.retry_after == pytest.approx(seconds)
        assert not isinstance(info.value, QuotaExceededError)
        # retried after exactly the demanded delay
        conformance_server.enqueue(reply)
        retrying = conformance_make_client(conformance_server, max_retries=2)
        response = retrying.chat(self.target, self.prompt)
        assert response.attempts == 2
        assert conformance_sleep.delays == [pytest.approx(seconds)]

    def test_quota_not_retried(
        self, conformance_make_client: MakeClient, conformance_server: StandInServer
    ) -> None:
        self.check("quota_not_retried")
        conformance_server.enqueue(
            self.error_reply(
                429, "conformance: you exceeded your quota", code="insufficient_quota"
            ),
            self.chat_reply("should never be fetched"),
        )
        client = conformance_make_client(conformance_server, max_retries=2)
        with pytest.raises(QuotaExceededError) as info:
            client.chat(self.target, self.prompt)
        assert info.value.status_code == 429
        assert info.value.attempts == 1
        assert len(conformance_server.requests) == 1
        assert conformance_server.pending_replies == 1

    @pytest.mark.parametrize("status", _RETRIED_STATUSES)
    def test_server_error_retried(
        self,
        conformance_make_client: MakeClient,
        conformance_server: StandInServer,
        conformance_sleep: RecordingSleep,
        status: int,
    ) -> None:
        self.check("server_error_retried", f"server_error_retried_{status}")
        conformance_server.enqueue(self.error_reply(status, f"conformance: transient {status}"))
        client = conformance_make_client(conformance_server, max_retries=2)
        response = client.chat(self.target, self.prompt)
        assert response.text == self.expected_text(self.prompt)
        assert response.attempts == 2
        assert len(conformance_server.requests) == 2
        assert len(conformance_sleep.delays) == 1

    def test_connection_refused(self, conformance_make_client: MakeClient) -> None:
        self.check("connection_refused")
        server = StandInServer(flavor=self.server_flavor, api_key=self.api_key)
        server.stop()  # bound then closed: nothing listens on its port any more
        client = conformance_make_client(server)
        with pytest.raises(APIConnectionError) as info:
            client.chat(self.target, self.prompt)
        assert not isinstance(info.value, APITimeoutError)
        assert info.value.provider == self.provider_name
        assert info.value.attempts == 1

    def test_read_timeout(
        self, conformance_make_client: MakeClient, conformance_server: StandInServer
    ) -> None:
        self.check("read_timeout")
        conformance_server.enqueue(Reply.hang(30))
        client = conformance_make_client(conformance_server, timeout=self.read_timeout)
        started = time.monotonic()
        with pytest.raises(APITimeoutError) as info:
            client.chat(self.target, self.prompt)
        assert time.monotonic() - started < self.read_timeout + 5
        assert info.value.provider == self.provider_name

    def test_malformed_json(
        self, conformance_client: Client, conformance_server: StandInServer
    ) -> None:
        self.check("malformed_json")
        conformance_server.enqueue(Reply.raw('{"id": "chatcmpl-1", "choices": [', status=200))
        with pytest.raises(ResponseDecodeError) as info:
            conformance_client.chat(self.target, self.prompt)
        assert info.value.provider == self.provider_name

    @pytest.mark.parametrize(
        "body", [{"unexpected": True}, [], "text"], ids=["object", "array", "string"]
    )
    def test_unexpected_body(
        self, conformance_client: Client, conformance_server: StandInServer, body: Any
    ) -> None:
        self.check("unexpected_body")
        conformance_server.enqueue(Reply.json(body))
        with pytest.raises(ResponseDecodeError) as info:
            conformance_client.chat(self.target, self.prompt)
        assert info.value.provider == self.provider_name

    def test_redaction(
        self, conformance_make_client: MakeClient, conformance_server: StandInServer
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
        with capture_logs("DEBUG") as logs:
            client = conformance_make_client(conformance_server, max_retries=1)
            for _ in range(3):
                with pytest.raises(APIError) as info:
                    client.chat(self.target, f"{self.prompt} ({key})")
                errors.append(info.value)
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
        conformance_make_client: MakeClient,
        conformance_server: StandInServer,
        capability: str,
    ) -> None:
        self.check("capabilities", f"capability_{capability}")
        client = conformance_make_client(
            conformance_server, **self.capability_options.get(capability, {})
        )
        if capability not in self.declared(client):
            if capability == "stream":
                with pytest.raises(ValidationError):
                    client.stream(self.target, self.prompt)
                assert conformance_server.requests == []
                return
            pytest.skip(f"{capability!r} is not declared")
        exercise = getattr(self, f"exercise_{capability}")
        exercise(client, conformance_server)

    def exercise_chat(self, client: Client, server: StandInServer) -> None:
        """``chat``: a chat answers."""
        assert client.chat(self.target, self.prompt).text == self.expected_text(self.prompt)

    def exercise_stream(self, client: Client, server: StandInServer) -> None:
        """``stream``: a stream reads to the end."""
        assert client.stream(self.target, self.prompt).read().text == self.expected_text(
            self.prompt
        )

    def exercise_models(self, client: Client, server: StandInServer) -> None:
        """``models``: ``list_models`` returns the server's models."""
        models = client.list_models(self.provider_name)
        assert models, "list_models returned nothing"
        assert all(isinstance(m, ModelInfo) for m in models)
        assert all(m.provider == self.provider_name for m in models)
        assert {m.id for m in models} <= set(server.model_list)

    def exercise_tools(self, client: Client, server: StandInServer) -> None:
        """``tools``: tools are sent and the forced tool call comes back."""
        response = client.chat(
            self.target,
            "What is the weather in Paris?",
            tools=[_WEATHER_TOOL],
            tool_choice="required",
        )
        (call,) = response.tool_calls
        assert call.function.name == "get_weather"
        assert json.loads(call.function.arguments or "{}") == {}
        assert server.last_request.json()["tools"][0]["function"]["name"] == "get_weather"

    def exercise_json_object(self, client: Client, server: StandInServer) -> None:
        """``json_object``: a JSON-mode request is accepted."""
        response = client.chat(
            self.target, "Answer in JSON.", response_format={"type": "json_object"}
        )
        assert response.text

    def exercise_json_schema(self, client: Client, server: StandInServer) -> None:
        """``json_schema``: a structured-output request is accepted."""
        schema = {"name": "answer", "schema": {"type": "object"}, "strict": False}
        response = client.chat(
            self.target,
            "Answer in JSON.",
            response_format={"type": "json_schema", "json_schema": schema},
        )
        assert response.text

    def exercise_vision(self, client: Client, server: StandInServer) -> None:
        """``vision``: an image part is sent and accepted."""
        url = "https://example.invalid/cat.png"
        message = {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is in this picture?"},
                {"type": "image_url", "image_url": {"url": url}},
            ],
        }
        assert client.chat(self.target, [message]).text
        assert url in server.last_request.text

    def exercise_text_generation(self, client: Client, server: StandInServer) -> None:
        """``text_generation``: a plain completion answers (with
        ``capability_options["text_generation"]`` applied)."""
        response = client.chat(self.target, self.prompt)
        assert self.prompt in response.text

    # -- checks: robustness and metrics -----------------------------------------------------

    def test_generated_completions(
        self, conformance_client: Client, conformance_server: StandInServer
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
            response = conformance_client.chat(self.target, self.prompt)
            assert len(response.choices) == len(body["choices"])
            first = body["choices"][0]["message"]["content"] if body["choices"] else None
            assert response.text == (first or "")

        decodes()

    def test_metrics(
        self,
        conformance_client: Client,
        conformance_server: StandInServer,
        conformance_metrics: MetricsRecorder,
    ) -> None:
        self.check("metrics")
        conformance_client.chat(self.target, self.prompt)
        conformance_server.enqueue(self.error_reply(500, "conformance: metrics failure"))
        with pytest.raises(ServerError):
            conformance_client.chat(self.target, self.prompt)
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
        self, conformance_client: Client, conformance_server: StandInServer
    ) -> None:
        self.check("echoed_secret_error")
        key = self._echo_key()
        body = {
            "error": {"message": f"bad key {key}", "type": key, "code": key, "param": key},
            key: [{"deeper": {key: key}}, key],
        }
        conformance_server.enqueue(Reply.json(body, status=400, headers=echo_headers(key)))
        with pytest.raises(APIStatusError) as info:
            conformance_client.chat(self.target, self.prompt)
        leaks = _secret_free(info.value, key)
        assert not leaks, f"{type(info.value).__name__} shows the echoed key in: {leaks}"

    def test_echoed_secret_response(
        self, conformance_client: Client, conformance_server: StandInServer
    ) -> None:
        self.check("echoed_secret_response")
        key = self._echo_key()
        conformance_server.enqueue(
            self.chat_reply(f"your key is {key}", model=key, headers=echo_headers(key))
        )
        response = conformance_client.chat(self.target, self.prompt)
        shown = {
            "fields": "\0".join(strings_in(response)),
            "repr": repr(response),
            "to_dict": json.dumps(response.to_dict(), default=str),
        }
        leaks = [where for where, text in shown.items() if key in text]
        assert not leaks, f"the response shows the echoed key in: {leaks}"
        assert response.text.startswith("your key is "), "the answer itself must still arrive"

    def test_echoed_secret_stream(
        self, conformance_client: Client, conformance_server: StandInServer
    ) -> None:
        self.check("echoed_secret_stream")
        self.require_stream(conformance_client)
        key = self._echo_key()
        conformance_server.enqueue(
            self.stream_reply(f"your key is {key}", model=key, headers=echo_headers(key))
        )
        with conformance_client.stream(self.target, self.prompt) as stream:
            chunks = list(stream)
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
        self, conformance_make_client: MakeClient, conformance_server: StandInServer
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
                client = conformance_make_client(conformance_server, **{name: bad})
                with pytest.raises(ConfigurationError) as info:
                    client.provider(self.provider_name)
                text = "".join(traceback.format_exception(info.value))
                assert token not in text, f"{name}={bad!r}: the refusal shows the credential"
                assert "api_key" in str(info.value), f"{name}: the refusal must say to use api_key"
        assert not conformance_server.requests, "a request was sent with a refused URL"

    # -- checks: hostile servers ------------------------------------------------------------

    def test_hostile_cross_origin_redirect(self, conformance_make_client: MakeClient) -> None:
        """A redirect to another origin is refused: the other origin sees no request at
        all (so never the key), and the error names its origin only."""
        self.check("hostile_cross_origin_redirect")
        other_host = "127.0.0.2" if loopback_available("127.0.0.2") else "127.0.0.1"
        with HostileServer(other_host) as other, HostileServer() as server:
            server.default = Hostile.redirect(f"{other.url}/v1/steal?token=abc", 307)
            client = conformance_make_client(server, max_retries=2)
            with pytest.raises(RedirectError) as info:
                client.chat(self.target, self.prompt)
            assert other.requests == [], "the other origin was contacted"
            assert len(server.requests) == 1
            assert info.value.location == other.url  # the origin: no path, no query
            assert "steal" not in str(info.value) and "token" not in str(info.value)
            assert info.value.attempts == 1

    def test_hostile_redirect_loop(
        self, conformance_make_client: MakeClient, conformance_metrics: MetricsRecorder
    ) -> None:
        """A same-origin redirect loop stops at ``max_redirects``; the error, the attempt
        count and the attempt metrics agree with the requests the server saw."""
        self.check("hostile_redirect_loop")
        logs: LogCapture
        with HostileServer(default=Hostile.redirect("/v1/loop", 307)) as server:
            client = conformance_make_client(server, max_retries=2, max_redirects=2)
            with capture_logs("DEBUG") as logs, pytest.raises(RedirectError) as info:
                client.chat(self.target, self.prompt)
            seen = len(server.requests)
        assert seen == 3, f"the server saw {seen} requests for 1 + max_redirects=2"
        assert info.value.attempts == 1
        assert "3 HTTP requests" in str(info.value)
        assert len(conformance_metrics.attempts) == 1
        followed = [line for line in logs.lines if "following same-origin redirect" in line]
        assert len(followed) == seen - 1, logs.lines

    def test_hostile_slow_drip(self, conformance_make_client: MakeClient) -> None:
        """A valid answer dripped a byte every 0.5 s (head included) cannot outlast
        ``timeout_total``: the call fails with APITimeoutError within a few seconds."""
        self.check("hostile_slow_drip")
        for answer in (Hostile.drip(interval=0.5), Hostile.drip(interval=0.5, head=True)):
            with HostileServer(default=answer) as server:
                client = conformance_make_client(server, timeout=2, chunk_timeout=2)
                started = time.monotonic()
                with pytest.raises(APITimeoutError) as info:
                    client.chat(self.target, self.prompt, timeout_total=3)
                waited = time.monotonic() - started
            assert waited < 8, f"timeout_total=3 held the call for {waited:.1f} s"
            assert info.value.provider == self.provider_name

    def test_hostile_oversized_answer(self, conformance_make_client: MakeClient) -> None:
        """A gzip bomb and an oversized plain body stop at ``max_response_bytes``, after
        decompression, with ResponseTooLargeError; the server never sends it all."""
        self.check("hostile_oversized_answer")
        limit = 1 << 20
        for answer in (Hostile.gzip_bomb(4 << 30), Hostile.huge(64 << 20)):
            with HostileServer(default=answer) as server:
                client = conformance_make_client(server, max_response_bytes=limit)
                with pytest.raises(ResponseTooLargeError) as info:
                    client.chat(self.target, self.prompt)
                assert server.completed == 0, f"the client read all of {answer.kind}"
            assert info.value.limit == limit
            assert info.value.provider == self.provider_name
            assert info.value.model == self.model

    @pytest.mark.parametrize("framing", ["close", "length"])
    def test_hostile_stream_incremental(
        self, conformance_make_client: MakeClient, framing: str
    ) -> None:
        """An event stream without chunked encoding is delivered event by event: the
        first chunk arrives while the server still holds back the rest."""
        self.check("hostile_stream_incremental")
        answer = Hostile.staged_stream(framing=framing, wait=20)  # type: ignore[arg-type]
        with HostileServer(default=answer) as server:
            client = conformance_make_client(server, chunk_timeout=30)
            self.require_stream(client)
            stream = client.stream(self.target, self.prompt)
            texts: list[str] = []
            for chunk in stream:
                if not texts:
                    assert not server.stage_timed_out, "the first event came only at the end"
                    server.release()
                texts.append(chunk.text)
        assert "".join(texts) == "first second"

    def test_hostile_non_sse_stream(self, conformance_make_client: MakeClient) -> None:
        """A stream request asks for ``text/event-stream``; a 2xx answer of another type
        is a StreamError that says what came back."""
        self.check("hostile_non_sse_stream")
        with HostileServer(default=Hostile.chat()) as server:
            client = conformance_make_client(server)
            self.require_stream(client)
            with pytest.raises(StreamError) as info:
                list(client.stream(self.target, self.prompt))
            accept = server.requests[0].headers.get("accept")
        assert accept == "text/event-stream"
        assert "application/json" in str(info.value)
        assert "[DONE]" not in str(info.value)


def _open_connections(server: StandInServer) -> int:
    with server._lock:
        return len(server._conns)
