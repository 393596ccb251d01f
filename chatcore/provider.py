"""What a provider plugin implements, and the pieces the core gives it.

A provider plugin returns :class:`ProviderSpec` records from its ``chatcore_providers``
hook. The core resolves the provider's configuration (explicit settings, then
``CHATCORE_<PROVIDER>_<OPTION>``, then the vendor's own variables, then defaults) into a
:class:`ProviderConfig` and calls the spec's factory with it, lazily, once per client.
The resulting :class:`Provider` only translates: a :class:`~chatcore.models.ChatRequest`
to an :class:`HttpCall`, and the answer back to a :class:`~chatcore.models.ChatResponse`
or chunks; the core's transports (requests, aiohttp) send. It never retries, sleeps or
logs secrets.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import attrs

from chatcore._http import (
    DEFAULT_MAX_EVENT_BYTES,
    DEFAULT_MAX_REDIRECTS,
    DEFAULT_MAX_RESPONSE_BYTES,
    HttpCall,
    HttpResult,
)
from chatcore._images import sniff_image_type
from chatcore._redact import redact_url, url_credentials
from chatcore._sse import (
    OpenAIStreamDecoder,
    SSEEvent,
    StreamDecoder,
    chunk_from_dict,
    decode_events,
    drain,
    iter_sse,
    openai_chunks,
    stream_chat_completions,
    stream_error_from_event,
)
from chatcore.exceptions import ConfigurationError
from chatcore.models import ChatChunk, ChatRequest, ChatResponse, to_tuple

if TYPE_CHECKING:
    from chatcore._transport import HttpTransport

__all__ = [
    "CAPABILITIES",
    "COMMON_OPTIONS",
    "HttpCall",
    "HttpResult",
    "HttpTarget",
    "HttpTransport",
    "ModelInfo",
    "OpenAIStreamDecoder",
    "Option",
    "Provider",
    "ProviderConfig",
    "ProviderSpec",
    "SSEEvent",
    "Secret",
    "StreamDecoder",
    "chunk_from_dict",
    "decode_events",
    "drain",
    "iter_sse",
    "model_infos",
    "openai_chunks",
    "resolve_config",
    "sniff_image_type",
    "stream_chat_completions",
    "stream_error_from_event",
]

#: Capability names a provider may declare.
CAPABILITIES = frozenset(
    {"chat", "stream", "tools", "json_object", "json_schema", "vision", "models", "text_generation"}
)


@attrs.frozen(repr=False)
class Secret:
    """A secret string whose repr and str are masked; ``.get()`` gives the value."""

    _value: str = attrs.field(alias="value")

    def get(self) -> str:
        """The secret itself; never log it."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__


_BOOL_TRUE = frozenset({"1", "true", "yes", "on"})
_BOOL_FALSE = frozenset({"0", "false", "no", "off", ""})


@attrs.frozen
class Option:
    """One configuration option of a provider.

    ``env`` lists the vendor's own environment variables (e.g. ``OPENAI_API_KEY``), tried
    after ``CHATCORE_<PROVIDER>_<OPTION>``. ``secret`` options are wrapped in
    :class:`Secret` and masked everywhere. ``required`` options missing from every source
    raise :class:`~chatcore.exceptions.ConfigurationError` naming the variables."""

    type: type[Any] = str
    default: Any = None
    env: tuple[str, ...] = attrs.field(default=(), converter=to_tuple)
    secret: bool = False
    required: bool = False
    help: str = ""
    choices: tuple[Any, ...] | None = None
    minimum: float | None = None


#: Options every provider has; a plugin may override their default, env and help.
COMMON_OPTIONS: Mapping[str, Option] = {
    "api_key": Option(secret=True, help="API key (sent only to this provider)"),
    "base_url": Option(help="API base URL"),
    "timeout": Option(
        type=float, default=600.0, minimum=0.001, help="read timeout in seconds per attempt"
    ),
    "connect_timeout": Option(
        type=float, default=5.0, minimum=0.001, help="connect timeout in seconds"
    ),
    "chunk_timeout": Option(
        type=float,
        default=60.0,
        minimum=0.001,
        help="streams: longest wait for the next chunk, in seconds",
    ),
    "pool_maxsize": Option(
        type=int, default=32, minimum=1, help="connections kept per host (size for your threads)"
    ),
    "max_redirects": Option(
        type=int,
        default=DEFAULT_MAX_REDIRECTS,
        minimum=0,
        help="same-origin redirects followed per attempt (cross-origin ones never are)",
    ),
    "max_response_bytes": Option(
        type=int,
        default=DEFAULT_MAX_RESPONSE_BYTES,
        minimum=1024,
        help="largest answer read, after decompression (a JSON answer, or a whole stream)",
    ),
    "max_event_bytes": Option(
        type=int,
        default=DEFAULT_MAX_EVENT_BYTES,
        minimum=1024,
        help="streams: largest single event, in bytes",
    ),
}


def _names(value: Iterable[str]) -> frozenset[str]:
    return frozenset(value)


@attrs.frozen
class ModelInfo:
    """One model a provider serves, as its model listing reports it."""

    id: str
    provider: str
    owned_by: str | None = None
    created: int | None = None
    raw: Mapping[str, Any] = attrs.field(factory=dict, repr=False, eq=False)


@attrs.frozen
class ProviderSpec:
    """A provider offered by a plugin: its name, a factory, its options and capabilities."""

    name: str
    factory: Callable[[ProviderConfig], Provider]
    options: Mapping[str, Option] = attrs.field(factory=dict)
    capabilities: frozenset[str] = attrs.field(default=frozenset({"chat"}), converter=_names)
    description: str = ""
    #: Filled in by the core: which plugin offered it, and that plugin's version.
    plugin: str = ""
    version: str = ""

    @property
    def translates(self) -> bool | None:
        """Whether the provider follows the translate-only contract (works natively under
        ``AsyncClient``); ``False`` for a 0.1 provider doing its own I/O; ``None`` when
        the factory is not a :class:`Provider` class and cannot tell without building one."""
        factory = self.factory
        if isinstance(factory, type) and issubclass(factory, Provider):
            return factory.prepare_chat is not Provider.prepare_chat
        return None

    @property
    def api_key_env(self) -> tuple[str, ...]:
        """The vendor environment variables holding this provider's API key."""
        return self.all_options()["api_key"].env

    def all_options(self) -> dict[str, Option]:
        """The common options merged with this provider's own."""
        merged = dict(COMMON_OPTIONS)
        merged.update(self.options)
        return merged

    def env_names(self, option: str) -> tuple[str, ...]:
        """Environment variables read for ``option``, in order of precedence."""
        own = f"CHATCORE_{self.name.upper().replace('-', '_')}_{option.upper()}"
        return (own, *self.all_options()[option].env)


@attrs.frozen(repr=False)
class ProviderConfig:
    """A provider's resolved configuration: values and where each one came from."""

    spec: ProviderSpec
    values: Mapping[str, Any]
    sources: Mapping[str, str]

    def __getitem__(self, name: str) -> Any:
        value = self.values[name]
        return value.get() if isinstance(value, Secret) else value

    def get(self, name: str, default: Any = None) -> Any:
        """The option's value (secrets unwrapped), or ``default`` when unset."""
        value = self.values.get(name)
        if value is None:
            return default
        return value.get() if isinstance(value, Secret) else value

    #: Every secret value, worked out once (read on every call, for redaction).
    _secrets: tuple[str, ...] | None = attrs.field(default=None, init=False, repr=False, eq=False)

    @property
    def secrets(self) -> tuple[str, ...]:
        """Every secret value, for redaction."""
        found = self._secrets
        if found is None:
            found = tuple(v.get() for v in self.values.values() if isinstance(v, Secret))
            object.__setattr__(self, "_secrets", found)
        return found

    def require(self, name: str, why: str = "") -> Any:
        """The option's value, or a :class:`ConfigurationError` that says how to set it."""
        value = self.get(name)
        if value is None or value == "":
            raise ConfigurationError(_missing_message(self.spec, name, why))
        return value

    def __repr__(self) -> str:
        shown = {k: _shown(v) for k, v in self.values.items()}
        return f"ProviderConfig({self.spec.name!r}, {shown!r})"


def _shown(value: Any) -> Any:
    """An option's value fit to show: secrets as ``***``, URLs without credentials."""
    if isinstance(value, Secret):
        return "***"
    if isinstance(value, str):
        return redact_url(value)
    return value


def _missing_message(spec: ProviderSpec, name: str, why: str = "") -> str:
    envs = spec.env_names(name)
    what = "an API key" if name == "api_key" else f"option {name!r}"
    env_text = " or ".join(envs)
    return (
        f"{spec.name}: {what} is required{(' ' + why) if why else ''}; "
        f"set {env_text}, or pass providers={{{spec.name!r}: {{{name!r}: ...}}}} to Client"
    )


def _coerce(name: str, option: Option, value: Any, source: str) -> tuple[Any, str | None]:
    """Return (value, problem)."""
    shown = "***" if option.secret else repr(_shown(value))
    if option.type is bool:
        if isinstance(value, bool):
            return value, None
        if isinstance(value, str) and value.strip().lower() in _BOOL_TRUE | _BOOL_FALSE:
            return value.strip().lower() in _BOOL_TRUE, None
        return None, f"{name}={shown} (from {source}): expected true or false"
    if option.type in (int, float):
        if isinstance(value, bool):
            return None, f"{name}={shown} (from {source}): expected a number"
        try:
            number = option.type(value)
        except (TypeError, ValueError):
            kind = "an integer" if option.type is int else "a number"
            return None, f"{name}={shown} (from {source}): expected {kind}"
        if option.type is int and isinstance(value, float) and number != value:
            return None, f"{name}={shown} (from {source}): expected an integer"
        if option.minimum is not None and number < option.minimum:
            return None, f"{name}={shown} (from {source}): must be >= {option.minimum}"
        value = number
    elif option.type is str:
        if not isinstance(value, str):
            return None, f"{name}={shown} (from {source}): expected a string"
    elif option.type is dict:
        if not isinstance(value, Mapping):
            return None, f"{name}={shown} (from {source}): expected a mapping"
        value = dict(value)
    if option.choices is not None and value not in option.choices:
        allowed = ", ".join(repr(c) for c in option.choices)
        return None, f"{name}={shown} (from {source}): must be one of {allowed}"
    if option.secret:
        value = Secret(value)
    return value, None


def resolve_config(
    spec: ProviderSpec,
    explicit: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> ProviderConfig:
    """Resolve ``spec``'s options: explicit > ``CHATCORE_<P>_<OPT>`` > vendor variables >
    default. Unknown keys, bad values and missing required options are reported together
    in one :class:`ConfigurationError`."""
    env = os.environ if environ is None else environ
    explicit = dict(explicit or {})
    options = spec.all_options()
    problems: list[str] = []
    unknown = sorted(set(explicit) - set(options))
    for key in unknown:
        problems.append(
            f"unknown option {key!r} for provider {spec.name!r} "
            f"(allowed: {', '.join(sorted(options))})"
        )
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for name, option in options.items():
        raw: Any = None
        source = "default"
        if explicit.get(name) is not None:
            raw, source = explicit[name], "argument"
        else:
            for var in spec.env_names(name):
                if env.get(var):
                    raw, source = env[var], f"env {var}"
                    break
        if raw is None:
            if option.required:
                problems.append(_missing_message(spec, name))
            values[name] = option.default
            sources[name] = "default"
            continue
        if isinstance(raw, Secret):
            raw = raw.get()
        value, problem = _coerce(name, option, raw, source)
        if problem:
            problems.append(problem)
            continue
        if not option.secret and isinstance(value, str):
            problem = _url_problem(spec, name, value, source)
            if problem:
                problems.append(problem)
                continue
        values[name] = value
        sources[name] = source
    if problems:
        head = f"invalid configuration for provider {spec.name!r}"
        raise ConfigurationError(
            f"{head}: {problems[0]}"
            if len(problems) == 1
            else head + ":\n  " + "\n  ".join(problems)
        )
    return ProviderConfig(spec=spec, values=values, sources=sources)


def _url_problem(spec: ProviderSpec, name: str, value: str, source: str) -> str | None:
    """Why a URL option may not hold ``value`` (a credential in it), or ``None``. A URL
    shows up in reprs, logs, cache keys and error messages, where a key in it would be in
    clear: keys go in the provider's secret options, which are masked everywhere."""
    if "://" not in value:
        return None
    where = url_credentials(value)
    if not where:
        return None
    envs = " or ".join(spec.env_names("api_key"))
    return (
        f"{name}={redact_url(value)!r} (from {source}) carries a credential "
        f"({'; '.join(where)}); remove it from the URL and give it as the 'api_key' "
        f"option ({envs}) instead, "
        "which is sent only in a header and masked everywhere"
    )


@attrs.frozen(repr=False)
class HttpTarget:
    """Where a provider's requests go and what every one of them carries: the base URL,
    the headers (credentials included) and default query parameters. The core builds its
    transports (requests, aiohttp) from it; credentials go only to the base URL's origin."""

    base_url: str
    headers: Mapping[str, str] = attrs.field(factory=dict)
    params: Mapping[str, str] = attrs.field(factory=dict)

    def __repr__(self) -> str:
        return f"HttpTarget({redact_url(self.base_url)!r}, headers=[{len(self.headers)} set])"


class Provider:
    """Base class of a provider. A provider **translates**; the core sends.

    In ``__init__`` it calls :meth:`set_target` (base URL, credential headers, default
    query). It then turns a :class:`~chatcore.models.ChatRequest` into an
    :class:`HttpCall` (:meth:`prepare_chat`, :meth:`prepare_stream`,
    :meth:`prepare_models`) and the answer back (:meth:`parse_chat`, a
    :class:`StreamDecoder` from :meth:`stream_decoder` fed one event at a time,
    :meth:`parse_models`), optionally mapping its own error bodies (:meth:`map_error`) and
    rate-limit headers (:meth:`rate_limit_headers`). It never performs I/O, sleeps or
    retries, so the same provider serves :class:`~chatcore.Client` (requests) and
    :class:`~chatcore.AsyncClient` (aiohttp).

    A provider written against chatcore 0.1 (overriding :meth:`chat` / :meth:`stream` /
    :meth:`list_models` and sending through :meth:`make_transport`) keeps working: under
    ``Client`` as before, under ``AsyncClient`` in a worker thread (``chatcore plugins``
    flags it as sync-only).

    The provider fills ``request_id`` and ``headers`` of the response; the core sets
    ``provider``, ``latency``, ``attempts`` and ``cached``.
    """

    #: The requests transport (built from :attr:`target` on first sync use; a 0.1
    #: provider sets it itself through :meth:`make_transport`).
    transport: HttpTransport | None = None
    #: Where requests go (set by :meth:`set_target`).
    target: HttpTarget | None = None

    def __init__(self, config: ProviderConfig) -> None:
        self.config = config
        self.name = config.spec.name

    @property
    def capabilities(self) -> frozenset[str]:
        """What this provider can do (see :data:`CAPABILITIES`)."""
        return self.config.spec.capabilities

    @property
    def base_url(self) -> str:
        """The resolved base URL (part of cache keys; never contains the key)."""
        if self.target is not None:
            return self.target.base_url
        return str(self.config.get("base_url") or "")

    @property
    def translates(self) -> bool:
        """True when the provider follows the translate-only contract (it implements
        :meth:`prepare_chat`); False for a 0.1 provider that does its own I/O."""
        return type(self).prepare_chat is not Provider.prepare_chat

    # --- the translate-only contract ----------------------------------------------------

    def set_target(
        self,
        base_url: str,
        *,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
    ) -> HttpTarget:
        """Say where requests go and what each carries (call it in ``__init__``)."""
        self.target = HttpTarget(base_url.rstrip("/"), dict(headers or {}), dict(params or {}))
        return self.target

    def prepare_chat(self, request: ChatRequest) -> HttpCall:
        """The HTTP call for one chat attempt (raise
        :class:`~chatcore.exceptions.ValidationError` for what the API would refuse)."""
        raise NotImplementedError(f"provider {self.name!r} does not implement prepare_chat")

    def parse_chat(self, request: ChatRequest, result: HttpResult) -> ChatResponse:
        """The :class:`~chatcore.models.ChatResponse` of a 2xx answer, or a typed error
        (:class:`~chatcore.exceptions.ResponseDecodeError` for a body that is not one)."""
        raise NotImplementedError(f"provider {self.name!r} does not implement parse_chat")

    def prepare_stream(self, request: ChatRequest) -> HttpCall:
        """The HTTP call that opens a stream (``stream=True``)."""
        raise NotImplementedError(f"provider {self.name!r} does not implement streaming")

    def stream_decoder(self, request: ChatRequest, result: HttpResult) -> StreamDecoder:
        """A fresh decoder for the events of one stream; ``result`` is the answer's head
        (status, headers, request id; no data)."""
        return OpenAIStreamDecoder(
            provider=self.name, model=request.model, secrets=self.config.secrets
        )

    def prepare_models(self) -> HttpCall:
        """The HTTP call that lists the models."""
        raise NotImplementedError(f"provider {self.name!r} cannot list models")

    def parse_models(self, result: HttpResult) -> list[ModelInfo]:
        """The models a 2xx model-list answer names."""
        raise NotImplementedError(f"provider {self.name!r} cannot list models")

    def map_error(self, status_code: int, body: bytes, headers: Mapping[str, str]) -> Any:
        """A provider-specific :class:`~chatcore.exceptions.APIStatusError` for an error
        answer whose body is not OpenAI-shaped, or ``None`` for the core's own mapping
        (which already reads OpenAI, TGI and Hugging Face error bodies)."""
        return None

    def rate_limit_headers(self, headers: Mapping[str, str]) -> Mapping[str, str]:
        """The answer's rate-limit headers in the ``x-ratelimit-*`` family the limiter
        reads (``x-ratelimit-remaining-requests``, ``x-ratelimit-reset-requests`` as a
        duration, and the same for ``tokens``). Override to translate another family."""
        return headers

    # --- sync use (Client) and 0.1 compatibility ---------------------------------------

    def sync_transport(self) -> HttpTransport:
        """The requests transport for :attr:`target`, created on first use."""
        if self.transport is None:
            if self.target is None:
                raise NotImplementedError(
                    f"provider {self.name!r} set no target (call set_target in __init__)"
                )
            self.transport = self.make_transport(
                base_url=self.target.base_url,
                headers=self.target.headers,
                params=self.target.params,
            )
        return self.transport

    def chat(self, request: ChatRequest) -> ChatResponse:
        """Send one chat request and return the provider's answer (one attempt)."""
        result = self.sync_transport().send(self.prepare_chat(request), model=request.model)
        return self.parse_chat(request, result)

    def stream(self, request: ChatRequest) -> Iterator[ChatChunk]:
        """Stream one chat (one attempt): a generator that sends nothing until the first
        ``next()``, raises typed errors before the first chunk, and yields chunks."""
        call = self.prepare_stream(request)
        return self.sync_transport().stream_chunks(
            call, model=request.model, decoder=lambda head: self.stream_decoder(request, head)
        )

    def list_models(self) -> list[ModelInfo]:
        """The models this provider serves."""
        return self.parse_models(self.sync_transport().send(self.prepare_models()))

    def close(self) -> None:
        """Release the connection pool."""
        if self.transport is not None:
            self.transport.close()

    def transport_options(self) -> dict[str, Any]:
        """The transport settings from the common options (timeouts, pool size, redirect
        limit, size caps, secrets, error mapping): the same for every transport."""
        return {
            "provider": self.name,
            "secrets": self.config.secrets,
            "timeout": float(self.config.get("timeout")),
            "connect_timeout": float(self.config.get("connect_timeout")),
            "pool_maxsize": int(self.config.get("pool_maxsize")),
            "chunk_timeout": float(self.config.get("chunk_timeout")),
            "max_redirects": int(self.config.get("max_redirects", DEFAULT_MAX_REDIRECTS)),
            "max_response_bytes": int(
                self.config.get("max_response_bytes", DEFAULT_MAX_RESPONSE_BYTES)
            ),
            "max_event_bytes": int(self.config.get("max_event_bytes", DEFAULT_MAX_EVENT_BYTES)),
            "user_agent_product": (self.config.spec.plugin, self.config.spec.version),
            "error_mapper": self.map_error,
        }

    def make_transport(
        self,
        *,
        base_url: str,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
    ) -> HttpTransport:
        """A requests transport configured from the common options (timeouts, pool size,
        redirect limit, size caps, secrets)."""
        from chatcore._transport import HttpTransport

        return HttpTransport(
            base_url=base_url, headers=headers, params=params, **self.transport_options()
        )

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} base_url={redact_url(self.base_url)!r}>"


def model_infos(provider: str, data: Iterable[Mapping[str, Any]]) -> list[ModelInfo]:
    """Turn an OpenAI-style ``/models`` list into :class:`ModelInfo` records."""
    out = []
    for item in data:
        if isinstance(item, Mapping) and isinstance(item.get("id"), str):
            created = item.get("created")
            out.append(
                ModelInfo(
                    id=item["id"],
                    provider=provider,
                    owned_by=item.get("owned_by")
                    if isinstance(item.get("owned_by"), str)
                    else None,
                    created=created if isinstance(created, int) else None,
                    raw=dict(item),
                )
            )
    return out


def __getattr__(name: str) -> Any:
    # the transport (and so requests) is imported on first use, not at ``import chatcore``
    if name == "HttpTransport":
        from chatcore import _transport

        return getattr(_transport, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
