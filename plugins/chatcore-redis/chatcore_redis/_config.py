"""Configuration, connections and the failure guard shared by the limiter and the cache.

Everything that may show the Redis URL shows it through :func:`mask_url`: the password is
never logged, put in an exception message or a repr.
"""

from __future__ import annotations

import builtins
import math
import threading
import time
import types
import weakref
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal, cast
from urllib.parse import urlsplit

import attrs
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from chatcore._log import logger, register_secrets
from chatcore._redact import MASK, redact
from chatcore.exceptions import ChatcoreError, ConfigurationError
from chatcore_redis._env import environ_of, flag
from chatcore_redis._io import AsyncConnector

if TYPE_CHECKING:
    import redis.asyncio as aredis

__all__ = [
    "DEFAULT_MAX_VALUE_BYTES",
    "DEFAULT_PREFIX",
    "DEFAULT_SOCKET_TIMEOUT",
    "ENV_VARIABLES",
    "FailurePolicy",
    "RedisSettings",
    "RedisUnavailableError",
    "environ_of",
    "flag",
    "mask_url",
]

FailurePolicy = Literal["fail_open", "fail_closed"]
"""What happens while Redis cannot be reached."""

DEFAULT_PREFIX = "chatcore:"
DEFAULT_SOCKET_TIMEOUT = 0.25
DEFAULT_MAX_VALUE_BYTES = 1024 * 1024
DEFAULT_LOG_INTERVAL = 30.0
DEFAULT_RECONNECT_INTERVAL = 1.0
POLICIES: tuple[FailurePolicy, ...] = ("fail_open", "fail_closed")

#: Every variable the plugin reads, with what it accepts (for errors and the docs).
ENV_VARIABLES: dict[str, str] = {
    "CHATCORE_REDIS_URL": "redis://[[user]:password@]host[:port][/db], rediss://... or unix://",
    "CHATCORE_REDIS_PASSWORD": "the password, when the URL has none",
    "CHATCORE_REDIS_LIMITER": "1 to use the Redis rate limiter",
    "CHATCORE_REDIS_CACHE": "1 to use the Redis response cache (when caching is on)",
    "CHATCORE_REDIS_BUDGETS": "1 to share budgets through Redis (when budgets are set)",
    "CHATCORE_REDIS_FAILURE_POLICY": "fail_open (default) or fail_closed",
    "CHATCORE_REDIS_PREFIX": f"key prefix (default {DEFAULT_PREFIX!r})",
    "CHATCORE_REDIS_SOCKET_TIMEOUT": f"seconds > 0 (default {DEFAULT_SOCKET_TIMEOUT})",
    "CHATCORE_REDIS_CONNECT_TIMEOUT": "seconds > 0 (default: the socket timeout)",
    "CHATCORE_REDIS_CACHE_MAX_BYTES": f"integer >= 1 (default {DEFAULT_MAX_VALUE_BYTES})",
}

_SCHEMES = frozenset({"redis", "rediss", "unix"})

#: Redis failures that mean "the backend is not usable now" (never a bug of the caller).
BACKEND_ERRORS: tuple[type[BaseException], ...] = (redis.RedisError, OSError)


class RedisUnavailableError(ChatcoreError):
    """Redis could not be reached (or refused the command) and the failure policy is
    ``fail_closed``. ``url`` is the Redis URL with its password masked."""

    def __init__(self, message: str, *, url: str = "") -> None:
        super().__init__(message)
        self.url = url


def mask_url(url: str, password: str | None = None) -> str:
    """``url`` with its password (and ``password``, wherever it occurs) replaced by ``***``.

    ``redis://user:pw@host:6379/0`` becomes ``redis://user:***@host:6379/0``; a URL that
    cannot be parsed is reduced to its scheme."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if parts.password is not None:
            userinfo, _, hostinfo = netloc.rpartition("@")
            user = userinfo.split(":", 1)[0]
            netloc = f"{user}:{MASK}@{hostinfo}"
        query = parts.query
        if "password=" in query:
            query = "&".join(
                f"password={MASK}" if q.startswith("password=") else q for q in query.split("&")
            )
        masked = f"{parts.scheme}://{netloc}{parts.path}"
        if query:
            masked += f"?{query}"
        if parts.fragment:
            masked += f"#{parts.fragment}"
    except ValueError:
        scheme = url.split(":", 1)[0] if ":" in url else "redis"
        masked = f"{scheme}://{MASK}"
    secrets = [s for s in (password, url_password(url)) if s]
    return redact(masked, secrets) if secrets else masked


def url_password(url: str | None) -> str | None:
    """The password in ``url``, if any."""
    if not url:
        return None
    try:
        return urlsplit(url).password
    except ValueError:
        return None


def _seconds(environ: Mapping[str, str], name: str, default: float | None) -> float | None:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not value > 0 or math.isinf(value):
        raise ConfigurationError(f"{name}={raw!r}: expected a number of seconds > 0")
    return value


def check_policy(value: str, name: str = "failure_policy") -> FailurePolicy:
    """``value`` as a :data:`FailurePolicy` (``fail-open`` is accepted too)."""
    normalized = value.strip().lower().replace("-", "_")
    if normalized == "fail_open":
        return "fail_open"
    if normalized == "fail_closed":
        return "fail_closed"
    raise ConfigurationError(f"{name}={value!r}: expected one of {', '.join(POLICIES)}")


def check_timeout(value: Any, name: str) -> float:
    """A timeout in seconds: a finite number > 0."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not value > 0
        or math.isinf(value)
    ):
        raise ConfigurationError(f"{name}={value!r}: expected a number of seconds > 0")
    return float(value)


def check_url(url: str, password: str | None = None) -> str:
    """``url`` when its scheme is ``redis``, ``rediss`` or ``unix``; the error shows the
    URL with its password masked."""
    if not isinstance(url, str) or not url.strip():
        raise ConfigurationError("the Redis URL is empty: set CHATCORE_REDIS_URL")
    url = url.strip()
    try:
        scheme = urlsplit(url).scheme.lower()
        urlsplit(url).port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as exc:
        raise ConfigurationError(
            f"Redis URL {mask_url(url, password)}: {redact(str(exc), _secrets(url, password))}"
        ) from None
    if scheme not in _SCHEMES:
        raise ConfigurationError(
            f"Redis URL {mask_url(url, password)}: expected a redis://, rediss:// or unix:// URL"
        )
    return url


def _secrets(url: str, password: str | None) -> list[str]:
    return [s for s in (password, url_password(url)) if s]


@attrs.frozen(kw_only=True)
class RedisSettings:
    """What ``CHATCORE_REDIS_*`` configure (see :data:`ENV_VARIABLES`)."""

    url: str | None = attrs.field(default=None, repr=lambda u: repr(mask_url(u) if u else u))
    password: str | None = attrs.field(default=None, repr=False)
    limiter: bool = False
    cache: bool = False
    budgets: bool = False
    failure_policy: FailurePolicy = "fail_open"
    prefix: str = DEFAULT_PREFIX
    socket_timeout: float = DEFAULT_SOCKET_TIMEOUT
    connect_timeout: float | None = None
    cache_max_bytes: int = DEFAULT_MAX_VALUE_BYTES

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> RedisSettings:
        """Read the variables; a bad value raises :class:`ConfigurationError` naming it.
        Nothing is checked beyond the two switches unless one of them is on."""
        limiter = flag(environ, "CHATCORE_REDIS_LIMITER")
        cache = flag(environ, "CHATCORE_REDIS_CACHE")
        budgets = flag(environ, "CHATCORE_REDIS_BUDGETS")
        url = environ.get("CHATCORE_REDIS_URL", "").strip() or None
        password = environ.get("CHATCORE_REDIS_PASSWORD") or None
        if not (limiter or cache or budgets):
            return cls(url=url, password=password)
        if url is None:
            switch = (
                "CHATCORE_REDIS_LIMITER"
                if limiter
                else "CHATCORE_REDIS_CACHE"
                if cache
                else "CHATCORE_REDIS_BUDGETS"
            )
            raise ConfigurationError(
                f"{switch}=1 needs CHATCORE_REDIS_URL (e.g. redis://127.0.0.1:6379/0)"
            )
        url = check_url(url, password)
        policy = check_policy(
            environ.get("CHATCORE_REDIS_FAILURE_POLICY", "") or "fail_open",
            "CHATCORE_REDIS_FAILURE_POLICY",
        )
        socket_timeout = _seconds(environ, "CHATCORE_REDIS_SOCKET_TIMEOUT", DEFAULT_SOCKET_TIMEOUT)
        connect_timeout = _seconds(environ, "CHATCORE_REDIS_CONNECT_TIMEOUT", None)
        raw_max = environ.get("CHATCORE_REDIS_CACHE_MAX_BYTES", "").strip()
        max_bytes = DEFAULT_MAX_VALUE_BYTES
        if raw_max:
            try:
                max_bytes = int(raw_max)
            except ValueError:
                max_bytes = 0
            if max_bytes < 1:
                raise ConfigurationError(
                    f"CHATCORE_REDIS_CACHE_MAX_BYTES={raw_max!r}: expected an integer >= 1"
                )
        return cls(
            url=url,
            password=password,
            limiter=limiter,
            cache=cache,
            budgets=budgets,
            failure_policy=policy,
            prefix=environ.get("CHATCORE_REDIS_PREFIX", DEFAULT_PREFIX),
            socket_timeout=socket_timeout or DEFAULT_SOCKET_TIMEOUT,
            connect_timeout=connect_timeout,
            cache_max_bytes=max_bytes,
        )

    @property
    def masked_url(self) -> str:
        """The URL with its password masked."""
        return mask_url(self.url or "", self.password)


# --------------------------------------------------------------------------------------
# Connections


def _client_options(
    url: str,
    *,
    password: str | None,
    socket_timeout: float,
    connect_timeout: float | None,
    retry: Any,
) -> dict[str, Any]:
    """The options of every client made for ``url``, blocking or asyncio alike."""
    options: dict[str, Any] = {
        "socket_timeout": socket_timeout,
        "socket_connect_timeout": connect_timeout if connect_timeout else socket_timeout,
        "retry": retry,
        "health_check_interval": 0,
    }
    if password and not url_password(url):
        options["password"] = password
    return options


def make_client(
    url: str,
    *,
    password: str | None = None,
    socket_timeout: float = DEFAULT_SOCKET_TIMEOUT,
    connect_timeout: float | None = None,
) -> redis.Redis:
    """A redis-py client that never hangs: short socket and connect timeouts, no retries
    inside redis-py (the caller's failure policy decides), a connection pool that
    reconnects on the next command after a failure. Passwords are registered with
    chatcore's log redaction."""
    register_secrets(_secrets(url, password))
    options = _client_options(
        url,
        password=password,
        socket_timeout=socket_timeout,
        connect_timeout=connect_timeout,
        retry=Retry(NoBackoff(), 0),
    )
    try:
        return redis.Redis.from_url(url, **options)
    except (ValueError, redis.RedisError) as exc:
        raise ConfigurationError(
            f"Redis URL {mask_url(url, password)}: "
            f"{redact(str(exc), _secrets(url, password)) or type(exc).__name__}"
        ) from None


def async_factory(
    url: str,
    *,
    password: str | None = None,
    socket_timeout: float = DEFAULT_SOCKET_TIMEOUT,
    connect_timeout: float | None = None,
) -> Callable[[], aredis.Redis]:
    """Makes ``redis.asyncio`` clients with the options of :func:`make_client` (the same
    URL, password, timeouts, and no retries inside redis-py)."""

    def make() -> aredis.Redis:
        import redis.asyncio
        from redis.asyncio.retry import Retry as AsyncRetry

        options = _client_options(
            url,
            password=password,
            socket_timeout=socket_timeout,
            connect_timeout=connect_timeout,
            retry=AsyncRetry(NoBackoff(), 0),
        )
        return redis.asyncio.Redis.from_url(url, **options)

    return make


#: What an asyncio client copies from a blocking client built elsewhere: its address,
#: credentials, timeouts and encoding (plus its ``ssl_*`` options); never redis-py's
#: internal state, nor its retries (the failure policy decides).
_COPIED_OPTIONS = frozenset(
    {
        "host",
        "port",
        "path",
        "db",
        "username",
        "password",
        "credential_provider",
        "socket_timeout",
        "socket_connect_timeout",
        "socket_keepalive",
        "socket_keepalive_options",
        "client_name",
        "encoding",
        "encoding_errors",
        "decode_responses",
        "protocol",
    }
)


def async_factory_like(client: redis.Redis) -> Callable[[], aredis.Redis]:
    """Makes ``redis.asyncio`` clients connecting where ``client`` connects, with its
    credentials and timeouts, and no retries inside redis-py."""
    pool = client.connection_pool
    kind = pool.connection_class.__name__
    options = {
        name: value
        for name, value in pool.connection_kwargs.items()
        if name in _COPIED_OPTIONS or (kind == "SSLConnection" and name.startswith("ssl_"))
    }

    def make() -> aredis.Redis:
        import redis.asyncio
        from redis.asyncio import connection
        from redis.asyncio.retry import Retry as AsyncRetry

        classes: dict[str, type[connection.AbstractConnection]] = {
            "UnixDomainSocketConnection": connection.UnixDomainSocketConnection,
            "SSLConnection": connection.SSLConnection,
        }
        apool = connection.ConnectionPool(
            connection_class=classes.get(kind, connection.Connection),
            retry=AsyncRetry(NoBackoff(), 0),
            health_check_interval=0,
            **options,
        )
        return redis.asyncio.Redis.from_pool(apool)  # closes the pool with the client

    return make


_connectors: weakref.WeakKeyDictionary[redis.Redis, AsyncConnector] = weakref.WeakKeyDictionary()
_connectors_lock = threading.Lock()


def connector_for(
    client: redis.Redis, factory: Callable[[], aredis.Redis] | None = None
) -> AsyncConnector:
    """The asyncio side of ``client``: one :class:`AsyncConnector` per blocking client, so
    every limiter and cache sharing a blocking pool share one asyncio pool per event loop.
    ``factory`` makes its clients (default: :func:`async_factory_like`)."""
    with _connectors_lock:
        found = _connectors.get(client)
        if found is None:
            found = AsyncConnector(factory or async_factory_like(client))
            _connectors[client] = found
        return found


def _client_url(client: redis.Redis) -> str:
    """A redis:// URL describing a client built elsewhere (no password in it)."""
    kwargs = client.connection_pool.connection_kwargs
    if kwargs.get("path"):
        return f"unix://{kwargs['path']}"
    ssl = client.connection_pool.connection_class.__name__.startswith("SSL")
    host, port, db = kwargs.get("host", "localhost"), kwargs.get("port", 6379), kwargs.get("db", 0)
    return f"{'rediss' if ssl else 'redis'}://{host}:{port}/{db}"


@attrs.frozen
class Backend:
    """What :func:`connect` gives a limiter or a cache."""

    #: The blocking client (the sync path).
    client: redis.Redis
    #: The asyncio clients, one per event loop (the async path).
    connector: AsyncConnector
    #: The URL to show, password masked.
    url: str
    #: Whether the blocking client was made here (and must be closed by its user).
    owned: bool


def connect(
    url: str | None,
    client: redis.Redis | None,
    *,
    password: str | None,
    socket_timeout: float,
    connect_timeout: float | None,
) -> Backend:
    """The clients to use (``client`` as given, else one made for ``url``; the asyncio
    side made like it), the URL to show (password masked) and whether the caller owns
    the blocking client (and must close it)."""
    if client is not None:
        shown = mask_url(url if url is not None else _client_url(client), password)
        return Backend(client, connector_for(client), shown, owned=False)
    if url is None:
        raise ConfigurationError("a Redis URL or a redis client is required")
    url = check_url(url, password)
    options: dict[str, Any] = {
        "password": password,
        "socket_timeout": socket_timeout,
        "connect_timeout": connect_timeout,
    }
    made = make_client(url, **options)
    connector = connector_for(made, async_factory(url, **options))
    return Backend(made, connector, mask_url(url, password), owned=True)


_shared: dict[tuple[str, str | None, float, float | None], redis.Redis] = {}
_shared_lock = threading.Lock()


def shared_client(settings: RedisSettings) -> redis.Redis:
    """One client (one connection pool) per URL and timeouts for every object the hooks
    build, so that many ``Client`` objects do not open many pools (and one asyncio pool
    per event loop, see :func:`connector_for`)."""
    assert settings.url is not None
    key = (settings.url, settings.password, settings.socket_timeout, settings.connect_timeout)
    with _shared_lock:
        client = _shared.get(key)
        if client is None:
            options: dict[str, Any] = {
                "password": settings.password,
                "socket_timeout": settings.socket_timeout,
                "connect_timeout": settings.connect_timeout,
            }
            client = make_client(settings.url, **options)
            connector_for(client, async_factory(settings.url, **options))
            _shared[key] = client
        return client


# --------------------------------------------------------------------------------------
# Failure handling


_logger = logger


def _emit(level: str, message: str, **kwargs: Any) -> None:
    _logger.log(level, message, **kwargs)


#: Logs as ``chatcore.redis``: loguru names a record after the module whose code logs it
#: (its globals' ``__name__``), and chatcore's logging (silent until ``configure_logging``)
#: governs the ``chatcore`` names, so the plugin's records are emitted under that name.
emit_log = cast(
    "Callable[..., None]",
    types.FunctionType(
        _emit.__code__,
        {"__name__": "chatcore.redis", "_logger": logger, "__builtins__": builtins},
    ),
)


def describe_error(exc: BaseException, secrets: list[str]) -> str:
    """``Type: message`` of ``exc`` with every secret masked."""
    text = str(exc).strip()
    described = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return redact(described, secrets)


class FailureGuard:
    """Tracks whether Redis is usable: after a failure it is not tried again for
    ``reconnect_interval`` seconds (so an unreachable server costs one timeout per
    interval, not one per request); a warning is logged at most once per
    ``log_interval`` seconds (with the number of failures it stands for), and the
    recovery once."""

    def __init__(
        self,
        *,
        component: str,
        url: str,
        secrets: list[str],
        policy: FailurePolicy,
        log_interval: float = DEFAULT_LOG_INTERVAL,
        reconnect_interval: float = DEFAULT_RECONNECT_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.component = component
        self.url = url
        self.secrets = secrets
        self.policy: FailurePolicy = policy
        self.log_interval = log_interval
        self.reconnect_interval = reconnect_interval
        self.clock = clock
        self._lock = threading.Lock()
        self._down_until = -math.inf
        self._down_since: float | None = None
        self._last_log = -math.inf
        self._unlogged = 0
        #: Failures since creation (every command that failed or was skipped as down).
        self.failures = 0
        #: The last failure, described (password masked).
        self.last_error: str | None = None

    @property
    def down(self) -> bool:
        """Whether the last command failed (and none succeeded since)."""
        return self._down_since is not None

    def should_try(self) -> bool:
        """False while a recent failure says Redis is down (for ``reconnect_interval``)."""
        return self.clock() >= self._down_until

    def failed(self, exc: BaseException | None, action: str) -> str:
        """Record a failure (``None``: skipped while down); log at most once per interval.
        Returns the failure described, password masked."""
        now = self.clock()
        with self._lock:
            self.failures += 1
            if exc is not None:
                self.last_error = describe_error(exc, self.secrets)
                self._down_until = now + self.reconnect_interval
            if self._down_since is None:
                self._down_since = now
            error = self.last_error or "unavailable"
            if now - self._last_log < self.log_interval:
                self._unlogged += 1
                return error
            unlogged, self._unlogged, self._last_log = self._unlogged, 0, now
        emit_log(
            "WARNING",
            "redis {component} at {url} is unavailable ({error}); {action}"
            " ({unlogged} more failures since the last warning)",
            component=self.component,
            url=self.url,
            error=error,
            action=action,
            unlogged=unlogged,
        )
        return error

    def succeeded(self) -> None:
        """Record a successful command: logs the recovery after an outage."""
        if self._down_since is None:
            return
        with self._lock:
            since, self._down_since = self._down_since, None
            self._down_until = -math.inf
            self._last_log = -math.inf
            self._unlogged = 0
        if since is not None:
            emit_log(
                "INFO",
                "redis {component} at {url} is reachable again after {seconds:.1f}s",
                component=self.component,
                url=self.url,
                seconds=max(0.0, self.clock() - since),
            )

    def unavailable_message(self, error: str) -> str:
        """The text of the fail-closed error."""
        return (
            f"redis {self.component} at {self.url} is unavailable ({error});"
            " CHATCORE_REDIS_FAILURE_POLICY=fail_closed refuses to go on without it"
        )
