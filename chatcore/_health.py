"""Health checks: liveness, readiness, and a small HTTP server for ``/livez`` ``/readyz``
``/metrics``.

* **Liveness** (:meth:`HealthChecker.liveness`) answers "is this process and its
  configuration sane?" without any network call: the plugin host is loaded, and every
  provider configured explicitly in the client's ``providers=`` settings is installed and
  its configuration resolves (its factory succeeds). Plugins that failed to load are
  reported in the details but do not make the process not-live.
* **Readiness** (:meth:`HealthChecker.readiness`) answers "can this process serve chats
  now?": each configured provider gets one cheap probe (``provider.list_models()``, a single
  attempt, no retries) cut to a short timeout through
  :data:`chatcore._transport.call_deadline`. Probes run in parallel threads, so a check takes
  about one timeout however many providers there are; results are cached ``ttl`` seconds
  per provider; concurrent callers share one in-flight probe per provider.

Readiness rule: ``ready`` is true when the process is live, at least one provider is
``ok`` or ``skipped``, and no provider is ``error``. ``unconfigured`` providers (installed
but not configured in ``providers=`` and whose factory raises
:class:`~chatcore.exceptions.ConfigurationError`, typically a missing API key) never count
either way. A provider configured explicitly whose configuration fails is ``error``.

:class:`HealthServer` serves the checks over HTTP (standard library ``http.server``) on a
background daemon thread, on a loopback address unless told otherwise.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import socketserver
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeoutError
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, Literal, cast
from urllib.parse import parse_qs, urlsplit

import attrs

from chatcore._deadline import call_deadline
from chatcore._redact import redact
from chatcore.exceptions import ConfigurationError, ProviderNotFoundError
from chatcore.provider import Option, Secret

if TYPE_CHECKING:
    from chatcore._base import BaseClient

__all__ = [
    "METRICS_CONTENT_TYPE",
    "HealthChecker",
    "HealthReport",
    "HealthServer",
    "ProviderHealth",
    "ProviderStatus",
    "ReportStatus",
    "client_metrics",
    "render_health",
]

ProviderStatus = Literal["ok", "error", "unconfigured", "skipped"]
"""The outcome of one provider's check."""

ReportStatus = Literal["ok", "degraded", "down"]
"""``ok``: ready; ``degraded``: not ready but some provider works; ``down``: nothing works."""

#: The Prometheus text exposition format's content type.
METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_JSON_CT = "application/json"
_MAX_ERROR = 300
_WAIT_GRACE = 1.0  # extra seconds a caller waits for a probe beyond the probe timeout


def _short_error(exc: BaseException, secrets: Iterable[str] = ()) -> str:
    """``"TypeName: message"`` on one line, redacted and truncated."""
    text = " ".join(str(exc).split())
    text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    text = redact(text, tuple(secrets))
    if len(text) > _MAX_ERROR:
        text = text[: _MAX_ERROR - 3] + "..."
    return text


@attrs.frozen
class ProviderHealth:
    """The result of checking one provider.

    ``latency`` is the probe's duration in seconds (``None`` when nothing was sent);
    ``error`` a short redacted ``"ErrorType: message"``; ``checked_at`` the wall-clock time
    of the check (``time.time()``); ``cached`` whether the result came from the cache.
    """

    name: str
    status: ProviderStatus
    latency: float | None = None
    error: str | None = None
    checked_at: float = attrs.field(factory=time.time)
    cached: bool = False

    @property
    def ok(self) -> bool:
        """True for ``ok`` and ``skipped`` (a provider with no cheap probe is not a failure)."""
        return self.status in ("ok", "skipped")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "name": self.name,
            "status": self.status,
            "latency": None if self.latency is None else round(self.latency, 6),
            "error": self.error,
            "checked_at": self.checked_at,
            "cached": self.cached,
        }


@attrs.frozen
class DeploymentHealth:
    """One deployment of a route: its key (``route:NAME/DEPLOYMENT``), ``provider:model``,
    the seconds of cooldown left (``None``: not cooling down) and the calls in flight (as
    the cooldown store counts them: only routes with the ``least_busy`` strategy count)."""

    key: str
    model: str
    cooling_for: float | None = None
    in_flight: int = 0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "key": self.key,
            "model": self.model,
            "cooling_for": None if self.cooling_for is None else round(self.cooling_for, 3),
            "in_flight": self.in_flight,
        }


@attrs.frozen
class RouteHealth:
    """A route's state: ``ok`` when none of its deployments is cooling down, ``degraded``
    when some are, ``down`` when all are (its fallbacks may still serve); ``error`` says
    why the cooldown store could not be read (the route's status is then ``unknown``)."""

    name: str
    status: str
    strategy: str
    deployments: tuple[DeploymentHealth, ...] = ()
    fallbacks: tuple[str, ...] = ()
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "name": self.name,
            "status": self.status,
            "strategy": self.strategy,
            "deployments": [d.to_dict() for d in self.deployments],
            "fallbacks": list(self.fallbacks),
            "error": self.error,
        }


def route_health(client: BaseClient) -> tuple[RouteHealth, ...]:
    """Every route of ``client`` with its deployments' cooldowns and in-flight counts, read
    from the client's cooldown store (no network call to the deployments)."""
    out: list[RouteHealth] = []
    store = client.cooldowns
    for name, route in sorted(client.routes.items()):
        keys = [d.key for d in route.deployments]
        try:
            cooling = store.cooling(keys)
            busy = store.in_flight_counts(keys)
        except Exception as exc:  # a broken store never breaks a health check
            out.append(
                RouteHealth(
                    name,
                    "unknown",
                    route.strategy,
                    fallbacks=route.fallbacks,
                    error=_short_error(exc),
                )
            )
            continue
        deployments = tuple(
            DeploymentHealth(
                d.key, f"{d.provider}:{d.model}", cooling.get(d.key), busy.get(d.key, 0)
            )
            for d in route.deployments
        )
        cold = sum(1 for d in deployments if d.cooling_for is not None)
        status = "ok" if cold == 0 else ("down" if cold == len(deployments) else "degraded")
        out.append(RouteHealth(name, status, route.strategy, deployments, route.fallbacks))
    return tuple(out)


@attrs.frozen
class HealthReport:
    """Liveness and readiness of a client, with one :class:`ProviderHealth` per provider.

    ``details`` holds the liveness details: ``providers_installed``,
    ``providers_configured`` (named in the client's ``providers=``), ``plugin_errors``
    (plugins that failed to load; informational) and ``config_problems`` (these make the
    process not live).
    """

    live: bool
    ready: bool
    status: ReportStatus
    providers: tuple[ProviderHealth, ...] = ()
    details: Mapping[str, Any] = attrs.field(factory=dict)
    checked_at: float = attrs.field(factory=time.time)
    #: The client's routes, with their deployments' cooldowns (a route that is ``down``
    #: makes the report ``degraded``: its calls can only go to its fallbacks).
    routes: tuple[RouteHealth, ...] = ()

    def provider(self, name: str) -> ProviderHealth | None:
        """The result for provider ``name``, or ``None`` when it was not checked."""
        for health in self.providers:
            if health.name == name:
                return health
        return None

    def to_dict(self, *, verbose: bool = True) -> dict[str, Any]:
        """A JSON-ready dict; ``verbose=False`` leaves out ``details`` and ``checked_at``."""
        out: dict[str, Any] = {
            "status": self.status,
            "live": self.live,
            "ready": self.ready,
            "providers": [p.to_dict() for p in self.providers],
        }
        if self.routes:
            out["routes"] = [r.to_dict() for r in self.routes]
        if verbose:
            out["details"] = json.loads(json.dumps(dict(self.details), default=str))
            out["checked_at"] = self.checked_at
        return out


class HealthChecker:
    """Runs liveness and readiness checks for one :class:`~chatcore.Client` or
    :class:`~chatcore.AsyncClient`; thread-safe.

    ``timeout`` bounds each provider probe (seconds); ``ttl`` is how long a probe result is
    reused (``0`` disables caching, concurrent callers still share in-flight probes);
    ``clock`` is the monotonic clock used for the cache (tests pass a fake one).
    """

    def __init__(
        self,
        client: BaseClient,
        *,
        timeout: float = 2.0,
        ttl: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        max_workers: int = 16,
    ) -> None:
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
            raise ConfigurationError(f"health timeout={timeout!r}: expected a number > 0")
        if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or ttl < 0:
            raise ConfigurationError(f"health ttl={ttl!r}: expected a number >= 0")
        if max_workers < 1:
            raise ConfigurationError(f"health max_workers={max_workers!r}: expected >= 1")
        self.client = client
        self.timeout = float(timeout)
        self.ttl = float(ttl)
        self._clock = clock
        self._max_workers = max_workers
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, ProviderHealth]] = {}
        self._inflight: dict[str, Future[ProviderHealth]] = {}
        self._pool: ThreadPoolExecutor | None = None

    # --- liveness --------------------------------------------------------------------

    def liveness(self) -> tuple[bool, dict[str, Any]]:
        """``(live, details)``: the plugin host answers and every provider named in the
        client's ``providers=`` settings is installed and its configuration resolves.
        No network call is made. Plugin load failures are listed, but do not make the
        process not live."""
        try:
            host = self.client._host
            installed = sorted(host.providers())
            records = host.records()
        except Exception as exc:  # a broken host is the one thing that is not live
            return False, {"config_problems": [f"plugin host unusable: {_short_error(exc)}"]}
        explicit = sorted(self._explicit())
        plugin_errors = [
            {
                "name": r.name,
                "distribution": r.distribution,
                "version": r.version,
                "error": redact(r.error),
            }
            for r in records
            if r.error
        ]
        problems: list[str] = []
        for name in explicit:
            if name not in installed:
                problems.append(
                    f"provider {name!r} is configured but no installed plugin offers it "
                    f"(installed: {', '.join(installed) or 'none'})"
                )
                continue
            try:
                self.client.provider(name)
            except Exception as exc:  # ConfigurationError, or a plugin factory's own bug
                problems.append(_short_error(exc, self._secrets(name)))
        details: dict[str, Any] = {
            "providers_installed": installed,
            "providers_configured": explicit,
            "plugin_errors": plugin_errors,
            "config_problems": problems,
        }
        return not problems, details

    # --- readiness -------------------------------------------------------------------

    def readiness(
        self, providers: Iterable[str] | None = None, *, refresh: bool = False
    ) -> HealthReport:
        """Probe ``providers`` (default: every installed provider plus every provider named
        in the client's settings) and return a :class:`HealthReport`.

        ``refresh=True`` ignores cached results (an in-flight probe is still shared).
        Providers that cannot be created without configuration are ``unconfigured``;
        names no plugin offers are ``error``.
        """
        live, details = self.liveness()
        installed = set(details.get("providers_installed", ()))
        explicit = self._explicit()
        if providers is None:
            names = sorted(installed | explicit)
        elif isinstance(providers, str):
            names = [providers]
        else:
            names = list(dict.fromkeys(providers))
        results: dict[str, ProviderHealth] = {}
        to_probe: list[str] = []
        for name in names:
            if name not in installed:
                exc = ProviderNotFoundError(name, installed)
                results[name] = ProviderHealth(name, "error", error=_short_error(exc))
                continue
            try:
                self.client.provider(name)
            except ConfigurationError as exc:
                kind: ProviderStatus = "error" if name in explicit else "unconfigured"
                results[name] = ProviderHealth(
                    name, kind, error=_short_error(exc, self._secrets(name))
                )
            except Exception as exc:  # a plugin factory's bug is an error, not "unconfigured"
                results[name] = ProviderHealth(
                    name, "error", error=_short_error(exc, self._secrets(name))
                )
            else:
                to_probe.append(name)
        results.update(self._probe_all(to_probe, refresh))
        checked = tuple(results[name] for name in names)
        any_ok = any(h.ok for h in checked)
        any_error = any(h.status == "error" for h in checked)
        routes = route_health(self.client) if getattr(self.client, "routes", None) else ()
        routes_down = any(r.status == "down" for r in routes)
        ready = live and any_ok and not any_error and not routes_down
        status: ReportStatus = "ok" if ready else ("degraded" if any_ok else "down")
        return HealthReport(
            live=live,
            ready=ready,
            status=status,
            providers=checked,
            details=details,
            routes=routes,
        )

    def invalidate(self, provider: str | None = None) -> None:
        """Forget cached results (of one provider, or all)."""
        with self._lock:
            if provider is None:
                self._cache.clear()
            else:
                self._cache.pop(provider, None)

    def close(self) -> None:
        """Release the probe threads (a probe still running finishes on its own)."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    # --- internals -------------------------------------------------------------------

    def _explicit(self) -> set[str]:
        return set(getattr(self.client, "_provider_settings", None) or ())

    def _secrets(self, name: str) -> tuple[str, ...]:
        """Secret values known for provider ``name``, for redaction."""
        found: list[str] = []
        existing = (getattr(self.client, "_providers", None) or {}).get(name)
        config = getattr(existing, "config", None)
        found.extend(getattr(config, "secrets", ()) or ())
        settings = (getattr(self.client, "_provider_settings", None) or {}).get(name) or {}
        options: dict[str, Option] = {}
        try:
            options = self.client._host.provider_spec(name).all_options()
        except Exception:
            pass
        for key, value in settings.items():
            option = options.get(key)
            if option is None or option.secret:
                raw = value.get() if isinstance(value, Secret) else value
                if isinstance(raw, str) and raw:
                    found.append(raw)
        return tuple(found)

    def _executor(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(
                max_workers=self._max_workers, thread_name_prefix="chatcore-health"
            )
        return self._pool

    def _probe_all(self, names: list[str], refresh: bool) -> dict[str, ProviderHealth]:
        out: dict[str, ProviderHealth] = {}
        waiting: dict[str, Future[ProviderHealth]] = {}
        with self._lock:
            now = self._clock()
            for name in names:
                entry = self._cache.get(name)
                if entry is not None and not refresh and now < entry[0]:
                    out[name] = attrs.evolve(entry[1], cached=True)
                    continue
                future = self._inflight.get(name)
                if future is None:
                    future = Future()
                    self._inflight[name] = future
                    self._executor().submit(self._run, name, future)
                waiting[name] = future
        deadline = time.monotonic() + self.timeout + _WAIT_GRACE
        for name, future in waiting.items():
            try:
                out[name] = future.result(timeout=max(0.0, deadline - time.monotonic()))
            except FutureTimeoutError:
                out[name] = ProviderHealth(
                    name,
                    "error",
                    latency=self.timeout,
                    error=f"APITimeoutError: the health probe did not finish within "
                    f"{self.timeout:g}s",
                )
            except Exception as exc:  # the probe thread failed in an unexpected way
                out[name] = ProviderHealth(
                    name, "error", error=_short_error(exc, self._secrets(name))
                )
        return out

    def _run(self, name: str, future: Future[ProviderHealth]) -> None:
        """Probe ``name`` in a pool thread, cache the result and resolve ``future``."""
        try:
            result = self._probe(name)
        except BaseException as exc:
            with self._lock:
                if self._inflight.get(name) is future:
                    del self._inflight[name]
            future.set_exception(exc)
            raise
        with self._lock:
            self._cache[name] = (self._clock() + self.ttl, result)
            if self._inflight.get(name) is future:
                del self._inflight[name]
        future.set_result(result)

    def _probe(self, name: str) -> ProviderHealth:
        token = call_deadline.set(time.monotonic() + self.timeout)
        started = time.perf_counter()
        try:
            provider = self.client.provider(name)
            provider.list_models()
        except NotImplementedError:
            return ProviderHealth(name, "skipped", error=None)
        except Exception as exc:
            return ProviderHealth(
                name,
                "error",
                latency=time.perf_counter() - started,
                error=_short_error(exc, self._secrets(name)),
            )
        finally:
            call_deadline.reset(token)
        return ProviderHealth(name, "ok", latency=time.perf_counter() - started)


# --- HTTP --------------------------------------------------------------------------------


def client_metrics(client: object) -> Callable[[], str]:
    """A ``/metrics`` source called at each scrape: a metrics sink of the client that renders
    Prometheus text itself (e.g. the chatcore-prometheus plugin's) wins; otherwise the
    built-in aggregator's ``prometheus_text()``. Only one is served: both use the same
    metric names, and Prometheus rejects a scrape with duplicate series.

    While the client has no metrics at all the call raises :class:`LookupError`, which
    :class:`HealthServer` answers with 503."""

    def scrape() -> str:
        builtin = getattr(client, "metrics", None)
        for sink in getattr(client, "metrics_sinks", ()) or ():
            if sink is not builtin:
                render = getattr(sink, "prometheus_text", None)
                if callable(render):
                    return str(render())
        render = getattr(builtin, "prometheus_text", None)
        if not callable(render):
            raise LookupError("this client has no metrics aggregator")
        return str(render())

    return scrape


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _flag(query: Mapping[str, list[str]], name: str) -> bool:
    values = query.get(name)
    if values is None:
        return False
    return values[-1].strip().lower() not in ("0", "false", "no", "off")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], owner: HealthServer) -> None:
        self.owner = owner
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        """Bind without the reverse DNS lookup ``HTTPServer`` does."""
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Stay quiet: a health endpoint must not spam stderr."""


class _Handler(BaseHTTPRequestHandler):
    server_version = "chatcore-health"
    sys_version = ""
    timeout = 30

    def log_message(self, format: str, *args: Any) -> None:
        """Silence per-request logging."""

    @property
    def _owner(self) -> HealthServer:
        return cast("_Server", self.server).owner

    def do_GET(self) -> None:
        self._handle(head=False)

    def do_HEAD(self) -> None:
        self._handle(head=True)

    def _not_allowed(self) -> None:
        self._send(405, {"status": "error", "error": "method not allowed"}, allow="GET, HEAD")

    do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _not_allowed

    def _handle(self, *, head: bool) -> None:
        url = urlsplit(self.path)
        path = url.path.rstrip("/") or "/"
        query = parse_qs(url.query, keep_blank_values=True)
        verbose = _flag(query, "verbose")
        owner = self._owner
        try:
            if path == "/livez":
                live, details = owner.checker.liveness()
                body: dict[str, Any] = {"status": "ok" if live else "down"}
                if not live:
                    body["problems"] = details.get("config_problems", [])
                if verbose:
                    body["details"] = details
                self._send(200 if live else 503, body, head=head)
            elif path == "/readyz":
                report = owner.checker.readiness()
                self._send(200 if report.ready else 503, report.to_dict(verbose=verbose), head=head)
            elif path == "/metrics":
                self._metrics(head=head)
            else:
                self._send(
                    404,
                    {"status": "error", "error": "not found; try /livez, /readyz or /metrics"},
                    head=head,
                )
        except Exception as exc:  # never let a check's bug kill the endpoint silently
            self._send(
                500,
                {"status": "error", "error": f"internal error: {type(exc).__name__}"},
                head=head,
            )

    def _metrics(self, *, head: bool) -> None:
        source = self._owner.metrics
        if source is None:
            self._send_text(503, "metrics are not available\n", head=head)
            return
        try:
            text = source()
        except Exception as exc:
            self._send_text(503, f"metrics are not available ({type(exc).__name__})\n", head=head)
            return
        self._send_text(200, text, head=head, content_type=METRICS_CONTENT_TYPE)

    def _send(
        self, status: int, body: Mapping[str, Any], *, head: bool = False, allow: str = ""
    ) -> None:
        data = json.dumps(body, separators=(",", ":"), default=str).encode("utf-8") + b"\n"
        self._write(status, data, _JSON_CT, head=head, allow=allow)

    def _send_text(
        self,
        status: int,
        text: str,
        *,
        head: bool,
        content_type: str = "text/plain; charset=utf-8",
    ) -> None:
        self._write(status, text.encode("utf-8"), content_type, head=head)

    def _write(
        self, status: int, data: bytes, content_type: str, *, head: bool, allow: str = ""
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        if allow:
            self.send_header("Allow", allow)
        self.end_headers()
        if not head:
            self.wfile.write(data)


class HealthServer:
    """Serves ``GET``/``HEAD`` ``/livez``, ``/readyz`` (``?verbose`` for details) and
    ``/metrics`` on a background daemon thread.

    ``metrics`` returns the Prometheus text for ``/metrics`` (503 when ``None`` or when it
    raises). Binding to an address that is not loopback raises
    :class:`~chatcore.exceptions.ConfigurationError` unless ``allow_non_loopback=True``.
    ``port=0`` picks a free port; :attr:`url` tells which after :meth:`start`.
    """

    def __init__(
        self,
        checker: HealthChecker,
        host: str = "127.0.0.1",
        port: int = 8686,
        *,
        metrics: Callable[[], str] | None = None,
        allow_non_loopback: bool = False,
    ) -> None:
        if not allow_non_loopback and not _is_loopback(host):
            raise ConfigurationError(
                f"refusing to serve health checks on non-loopback host {host!r}: the endpoints "
                "have no authentication; pass allow_non_loopback=True (CLI: "
                "--allow-non-loopback) if the network is trusted"
            )
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ConfigurationError(f"health port={port!r}: expected an integer 0-65535")
        self.checker = checker
        self.metrics = metrics
        self._host = host.strip("[]")
        self._port = port
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def host(self) -> str:
        """The host served on."""
        return self._host

    @property
    def port(self) -> int:
        """The bound port once started (the requested one before)."""
        httpd = self._httpd
        return int(httpd.server_address[1]) if httpd is not None else self._port

    @property
    def url(self) -> str:
        """``http://host:port`` (no trailing slash)."""
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self.port}"

    @property
    def running(self) -> bool:
        """True between :meth:`start` and :meth:`stop`."""
        return self._thread is not None

    def start(self) -> HealthServer:
        """Bind and serve on a daemon thread; returns ``self`` (idempotent)."""
        with self._lock:
            if self._thread is not None:
                return self
            try:
                httpd = _Server((self._host, self._port), self)
            except OSError as exc:
                raise ConfigurationError(
                    f"cannot serve health checks on {self._host}:{self._port}: "
                    f"{exc.strerror or exc}"
                ) from exc
            self._httpd = httpd
            self._thread = threading.Thread(
                target=httpd.serve_forever,
                kwargs={"poll_interval": 0.1},
                name=f"chatcore-health-{self.port}",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close the socket and join the thread (idempotent)."""
        with self._lock:
            httpd, thread = self._httpd, self._thread
            self._thread = None
            if httpd is None:
                return
            if thread is not None:
                httpd.shutdown()
            httpd.server_close()
            self._port = int(httpd.server_address[1])
            self._httpd = None
        if thread is not None:
            thread.join(timeout=5)

    def join(self, timeout: float | None = None) -> None:
        """Block until the server is stopped (for ``chatcore serve-health``)."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)

    def __enter__(self) -> HealthServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<HealthServer {self.url} {state}>"


# --- CLI rendering -----------------------------------------------------------------------


def render_health(report: HealthReport) -> str:
    """A small table for ``chatcore health``: provider, status, latency (ms), error; then a
    summary line and any liveness problems."""
    rows = [["PROVIDER", "STATUS", "LATENCY (ms)", "ERROR"]]
    for p in report.providers:
        latency = "-" if p.latency is None else f"{p.latency * 1000:.0f}"
        status = f"{p.status} (cached)" if p.cached else p.status
        rows.append([p.name, status, latency, p.error or "-"])
    lines: list[str] = []
    if len(rows) > 1:
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        for n, row in enumerate(rows):
            lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
            if n == 0:
                lines.append("  ".join("-" * w for w in widths))
    else:
        lines.append("no providers checked (none installed?)")
    if report.routes:
        lines.append("")
        lines.extend(render_routes(report.routes))
    yes = {True: "yes", False: "no"}
    lines.append(f"status: {report.status} (live: {yes[report.live]}, ready: {yes[report.ready]})")
    for problem in report.details.get("config_problems", ()) or ():
        lines.append(f"config problem: {problem}")
    for plugin in report.details.get("plugin_errors", ()) or ():
        if isinstance(plugin, Mapping):
            lines.append(f"plugin {plugin.get('name')!r} failed to load: {plugin.get('error')}")
    return "\n".join(lines) + "\n"


def render_routes(routes: Iterable[RouteHealth]) -> list[str]:
    """Table lines for routes: route, deployment, model, state, calls in flight."""
    rows = [["ROUTE", "DEPLOYMENT", "MODEL", "STATE", "IN FLIGHT"]]
    for route in routes:
        if route.error is not None:
            rows.append([route.name, "-", "-", f"unknown: {route.error}", "-"])
            continue
        for d in route.deployments:
            state = "ready" if d.cooling_for is None else f"cooling down {d.cooling_for:.1f}s"
            rows.append([route.name, d.key.partition("/")[2], d.model, state, str(d.in_flight)])
        for target in route.fallbacks:
            rows.append([route.name, "(fallback)", target, "-", "-"])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for n, row in enumerate(rows):
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return lines
