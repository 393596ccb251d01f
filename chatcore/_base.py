"""What ``Client`` and ``AsyncClient`` share: configuration, providers, the per-call
options, metrics and logging. The request pipeline itself is in :mod:`chatcore._pipeline`,
written once and driven by each client's driver.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, cast

import attrs

from chatcore._limits import InMemoryRateLimiter, NullRateLimiter
from chatcore._log import log_failure_once, logger, register_secrets
from chatcore._metrics import InMemoryMetrics, RequestEvent
from chatcore._plugins import PluginHost, get_plugin_host
from chatcore._redact import KnownSecrets, usable_secrets
from chatcore._retry import RetryPolicy
from chatcore._routes import (
    ROUTE,
    CooldownStore,
    Deployment,
    InMemoryCooldowns,
    Latencies,
    Route,
    is_cooldown_store,
)
from chatcore._settings import Settings, load_settings
from chatcore._stream import chunks_from_response
from chatcore._tracing import Tracing
from chatcore._validate import build_request, is_number, show, split_model
from chatcore.exceptions import ConfigurationError, ValidationError, provider_hint
from chatcore.models import ChatRequest, ChatResponse
from chatcore.provider import Provider, ProviderSpec, resolve_config

if TYPE_CHECKING:
    from chatcore._budget import BudgetState
    from chatcore._cache import ResponseCache
    from chatcore._health import HealthChecker, HealthServer
    from chatcore._pipeline import StreamContext

__all__ = ["BaseClient"]

_RESERVED = frozenset({"max_retries", "timeout_total"})


class BaseClient:
    """The configuration and bookkeeping both clients share (not used directly).

    ``providers`` maps a provider name to its options (``api_key``, ``base_url``,
    ``timeout``, ...); anything not given comes from ``CHATCORE_<PROVIDER>_<OPTION>``, then
    the vendor's variables (``OPENAI_API_KEY``, ``HF_TOKEN``), then defaults.
    """

    def __init__(
        self,
        *,
        providers: Mapping[str, Mapping[str, Any]] | None = None,
        env: str | None = None,
        retry: RetryPolicy | None = None,
        max_retries: int | None = None,
        timeout_total: float | None = None,
        max_retry_after: float | None = None,
        max_server_hold: float | None = None,
        rate_limits: Mapping[str, Any] | None = None,
        routes: Mapping[str, Any] | None = None,
        rate_limiter: Any = None,
        cache: Any = None,
        cache_ttl: float | None = None,
        cache_maxsize: int | None = None,
        metrics_sinks: Iterable[Any] = (),
        tracers: Iterable[Any] = (),
        budgets: Any = None,
        prices: Mapping[str, Any] | None = None,
        budget_store: Any = None,
        max_total_chars: int | None = None,
        max_request_bytes: int | None = None,
        max_messages: int | None = None,
        config_path: str | os.PathLike[str] | None = None,
        plugins: Iterable[Any] = (),
        plugin_host: PluginHost | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        plugins = tuple(plugins)
        if plugin_host is None:
            plugin_host = PluginHost(plugins=plugins) if plugins else get_plugin_host()
        self._host = plugin_host
        installed = plugin_host.providers()
        loaded = load_settings(
            {
                "env": env,
                "providers": providers,
                "max_retries": max_retries,
                "timeout_total": timeout_total,
                "max_retry_after": max_retry_after,
                "max_server_hold": max_server_hold,
                "rate_limits": rate_limits,
                "routes": routes,
                "cache": cache if isinstance(cache, bool) else None,
                "cache_ttl": cache_ttl,
                "cache_maxsize": cache_maxsize,
                "max_total_chars": max_total_chars,
                "max_request_bytes": max_request_bytes,
                "max_messages": max_messages,
                "budgets": budgets if isinstance(budgets, Mapping) else None,
                "prices": prices,
            },
            environ=environ,
            config_path=config_path,
            dotenv=environ is None,  # an explicit environ stays exact (hermetic tests)
            provider_names=installed,
        )
        #: The effective settings (explicit > environment > file > profile defaults).
        self.settings: Settings = loaded.settings
        self._loaded = loaded
        self._environ: Mapping[str, str] = loaded.environ
        s = self.settings
        self._provider_settings = {
            name: dict(options)
            for name, options in {**loaded.file_providers, **s.providers}.items()
        }
        _check_providers_installed(self._provider_settings, installed)

        # A policy from code or a plugin keeps its own values unless a setting was given
        # explicitly, in the environment or in the file (profile defaults do not override).
        knobs = ("max_retries", "timeout_total", "max_retry_after")
        base = retry if retry is not None else plugin_host.retry_policy(s)
        if base is None:
            base = RetryPolicy(**{k: getattr(s, k) for k in knobs})
        changed = {k: getattr(s, k) for k in knobs if not loaded.sources[k].startswith("profile")}
        policy = attrs.evolve(base, **changed) if changed else base
        self.retry_policy: RetryPolicy = policy
        self.retries = 0

        #: Routes by name (``route:NAME``), validated.
        self.routes: dict[str, Route] = dict(s.routes)
        self.rate_limits = dict(s.rate_limits)
        # a deployment with limits of its own is limited under its own key
        for route in self.routes.values():
            for deployment in route.deployments:
                if deployment.rate_limit is not None:
                    self.rate_limits[deployment.limiter_provider] = deployment.rate_limit
        limiter_settings = (
            attrs.evolve(s, rate_limits=self.rate_limits)
            if len(self.rate_limits) != len(s.rate_limits)
            else s
        )
        #: Components this client made (from hooks or defaults), which it closes.
        self._owned: list[Any] = []
        if rate_limiter is None:
            rate_limiter = plugin_host.rate_limiter(limiter_settings)
            if rate_limiter is not None:
                self._owned.append(rate_limiter)
        if rate_limiter is None:
            rate_limiter = (
                InMemoryRateLimiter(self.rate_limits, max_server_hold=s.max_server_hold)
                if self.rate_limits
                else NullRateLimiter()
            )
        self.rate_limiter = rate_limiter
        #: Where routes keep cooldowns, failures and in-flight counts: the rate limiter
        #: when it keeps them (chatcore-redis shares them between workers), else memory.
        self.cooldowns: CooldownStore = (
            rate_limiter if is_cooldown_store(rate_limiter) else InMemoryCooldowns()
        )
        self._latencies = Latencies()
        self._deployment_providers: dict[str, Provider] = {}
        self._route_secret_sets: dict[str, KnownSecrets] = {}

        self.cache_ttl = s.cache_ttl
        self.cache_maxsize = s.cache_maxsize
        self.cache: ResponseCache | None = None
        if cache is not None and not isinstance(cache, bool):
            if not all(callable(getattr(cache, m, None)) for m in ("get", "set", "stats")):
                raise ConfigurationError(
                    f"cache={cache!r}: expected True, False, or an object with get/set/stats"
                )
            self.cache = cache
        elif s.cache:
            self.cache = self._default_cache()

        #: The built-in aggregator (``client.metrics.snapshot()``), always the first sink.
        self.metrics = InMemoryMetrics()
        self.metrics_sinks: tuple[Any, ...] = (
            self.metrics,
            *metrics_sinks,
            *plugin_host.metrics_sinks(s),
        )
        #: Tracers told about each call as it starts, runs and ends (``tracers=``, then
        #: the ``chatcore_tracers`` hook's); none: the pipeline makes no trace at all.
        self.tracers: tuple[Any, ...] = (*tracers, *plugin_host.tracers(s))
        self._tracing = Tracing(self.tracers) if self.tracers else None
        self.max_total_chars = s.max_total_chars
        from chatcore._budget import cost_components

        #: Prices (``client.pricing.price_of(provider, model)``) and budgets (or ``None``).
        self.pricing, self.budgets = cost_components(
            plugin_host, s, budgets, budget_store, self._owned
        )
        self._providers: dict[str, Provider] = {}
        self._lock = threading.Lock()
        self._failed_sinks: set[int] = set()
        self._secret_sets: dict[int, tuple[Provider, KnownSecrets]] = {}
        self._health: HealthChecker | None = None

    def _default_cache(self) -> ResponseCache:
        """The hook's cache (a plugin's, else the in-memory LRU+TTL)."""
        from chatcore._cache import InMemoryCache

        found = self._host.cache(self.settings)
        if found is None:
            found = InMemoryCache(maxsize=self.cache_maxsize, ttl=self.cache_ttl)
        else:
            self._owned.append(found)
        return cast("ResponseCache", found)

    def _call_cache(self, choice: Any) -> ResponseCache | None:
        """The cache for one call: ``cache=False`` skips it, ``cache=True`` turns it on
        even when the client has none (a default one is created once)."""
        if choice is None:
            return self.cache
        if not isinstance(choice, bool):
            raise ValidationError([("cache", f"expected True or False, got {show(choice)}")])
        if not choice:
            return None
        if self.cache is None:
            with self._lock:
                if self.cache is None:
                    self.cache = self._default_cache()
        return self.cache

    # --- providers -------------------------------------------------------------------

    def available_providers(self) -> list[str]:
        """Names of the providers installed plugins offer."""
        return sorted(self._host.providers())

    def provider_spec(self, name: str) -> ProviderSpec:
        """The spec of provider ``name`` (raises :class:`ProviderNotFoundError`)."""
        return self._host.provider_spec(name)

    def provider(self, name: str) -> Provider:
        """The provider instance ``name``, created on first use (configuration errors such
        as a missing API key are raised here, before any network call)."""
        found = self._providers.get(name)
        if found is not None:
            return found
        spec = self._host.provider_spec(name)
        with self._lock:
            found = self._providers.get(name)
            if found is None:
                config = resolve_config(spec, self._loaded.provider_options(spec), self._environ)
                found = spec.factory(config)
                register_secrets(config.secrets)
                self._providers[name] = found
        return found

    def deployment_provider(self, deployment: Deployment) -> Provider:
        """The provider instance that serves ``deployment``: the client's own instance of
        its provider, or, for a deployment with options of its own (another
        ``base_url`` or key), an instance made with them, once."""
        if not deployment.options:
            return self.provider(deployment.provider)
        key = deployment.key
        found = self._deployment_providers.get(key)
        if found is not None:
            return found
        spec = self._host.provider_spec(deployment.provider)
        with self._lock:
            found = self._deployment_providers.get(key)
            if found is None:
                options = {**self._loaded.provider_options(spec), **deployment.options}
                config = resolve_config(spec, options, self._environ)
                found = spec.factory(config)
                register_secrets(config.secrets)
                self._deployment_providers[key] = found
        return found

    def route(self, name: str) -> Route:
        """The route called ``name`` (``route:NAME``), or a :class:`ValidationError`."""
        found = self.routes.get(name)
        if found is None:
            known = ", ".join(sorted(self.routes)) or "none configured"
            raise ValidationError(
                [
                    (
                        "model",
                        f"no route named {name!r} (routes: {known}); define it with "
                        "Client(routes={...}) or a [routes.NAME] table in chatcore.toml",
                    )
                ]
            )
        return found

    def _route_secrets(self, route: Route) -> KnownSecrets:
        """Every secret of ``route``'s deployments, ready to mask; worked out once."""
        found = self._route_secret_sets.get(route.name)
        if found is None:
            found = usable_secrets(
                value
                for deployment in route.deployments
                for value in self._secrets_of(self.deployment_provider(deployment)).values
            )
            self._route_secret_sets[route.name] = found
        return found

    def _providers_in_use(self) -> list[Provider]:
        return [*self._providers.values(), *self._deployment_providers.values()]

    def _secrets_of(self, provider: Provider) -> KnownSecrets:
        """The provider's secrets (every option declared ``secret=True``), ready to mask;
        worked out once per provider instance."""
        found = self._secret_sets.get(id(provider))
        if found is not None and found[0] is provider:
            return found[1]
        secrets = usable_secrets(provider.config.secrets)
        if len(self._secret_sets) < 64:  # a few providers per client; never unbounded
            self._secret_sets[id(provider)] = (provider, secrets)
        return secrets

    # --- spend -----------------------------------------------------------------------

    def spend(self, scope: str | None = None) -> list[BudgetState]:
        """Each budget's state in its current period: spent, reserved by calls in flight,
        remaining, when it resets (``scope``: only that scope's, e.g. ``"key:acme"``)."""
        if self.budgets is None:
            return []
        return self.budgets.state() if scope is None else self.budgets.state_of(scope)

    # --- health ----------------------------------------------------------------------

    def _health_checker(self) -> HealthChecker:
        from chatcore._health import HealthChecker

        with self._lock:
            if self._health is None:
                self._health = HealthChecker(self, ttl=self.settings.readiness_ttl)
            return self._health

    def serve_health(
        self,
        host: str | None = None,
        port: int | None = None,
        *,
        allow_non_loopback: bool = False,
    ) -> HealthServer:
        """Serve ``/livez``, ``/readyz`` and ``/metrics`` from a background thread (bound
        to 127.0.0.1 by default); returns the started server (``.url``, ``.stop()``)."""
        from chatcore._health import HealthServer, client_metrics

        server = HealthServer(
            self._health_checker(),
            self.settings.health_host if host is None else host,
            self.settings.health_port if port is None else port,
            metrics=client_metrics(self),
            allow_non_loopback=allow_non_loopback,
        )
        return server.start()

    def _transport_of(self, provider: Provider) -> Any:
        """The transport this client sends ``provider``'s calls through."""
        raise NotImplementedError

    # --- requests ----------------------------------------------------------------------

    def build_request(self, model: str, messages: Any, **params: Any) -> ChatRequest:
        """Validate and normalize a request without sending it (``route:NAME`` too: the
        request then names the route; each attempt sends it to a deployment)."""
        return self._build(model, messages, params, stream=False)[0]

    def _build(
        self, model: str, messages: Any, params: Mapping[str, Any], *, stream: bool
    ) -> tuple[ChatRequest, Route | None]:
        provider, model_id = split_model(model)
        route = None
        if provider == ROUTE:
            route = self.route(model_id)
        else:
            self._host.provider_spec(provider)
        request = build_request(
            provider,
            model_id,
            messages,
            params,
            stream=stream,
            max_total_chars=self.max_total_chars,
            max_messages=self.settings.max_messages,
            max_request_bytes=self.settings.max_request_bytes,
        )
        return request, route

    def _chat_request(
        self, model: str, messages: Any, params: dict[str, Any]
    ) -> tuple[ChatRequest, Provider | Route, RetryPolicy, ResponseCache | None, float | None]:
        """Validate a chat call: the request, its provider (or route) and the per-call
        options."""
        policy, cache, ttl = self._call_options(params)
        request, route = self._build(model, messages, params, stream=False)
        target = route if route is not None else self.provider(request.provider)
        return request, target, policy, cache, ttl

    def _stream_request(
        self, model: str, messages: Any, params: dict[str, Any]
    ) -> tuple[ChatRequest, Provider | Route, RetryPolicy, ResponseCache | None, float | None]:
        """Validate a stream call: the request, its provider (or route) and the per-call
        options."""
        policy, cache, ttl = self._call_options(params)
        request, route = self._build(model, messages, params, stream=True)
        if route is not None:
            for deployment in route.deployments:
                self._check_streams(self.deployment_provider(deployment))
            return request, route, policy, cache, ttl
        provider = self.provider(request.provider)
        self._check_streams(provider)
        return request, provider, policy, cache, ttl

    @staticmethod
    def _check_streams(provider: Provider) -> None:
        if "stream" not in provider.capabilities:
            raise ValidationError(
                [("stream", f"provider {provider.name!r} does not support streaming; use chat()")]
            )

    def _stream_source(self, context: StreamContext) -> tuple[Any, Any, dict[str, Any]]:
        """What a stream object is built from: its chunks, its first chunk, and its
        keyword arguments (a cache hit replays the cached answer as chunks)."""
        request = context.request
        kwargs: dict[str, Any] = {
            "provider": request.provider,
            "model": request.model,
            "started": context.started,
        }
        if context.replay is not None:
            kwargs.update(attempts=0, cached=True, request_id=context.replay.request_id)
            return chunks_from_response(context.replay), None, kwargs
        provider = context.provider
        assert provider is not None
        kwargs.update(
            deployments=context.deployments,
            attempts=context.attempts,
            secrets=self._secrets_of(provider),
            # the core's transports mask chunks per event; a 0.1 provider's are masked
            # by the stream
            premasked=provider.translates,
        )
        return context.chunks, context.first, kwargs

    def _call_options(
        self, params: dict[str, Any]
    ) -> tuple[RetryPolicy, ResponseCache | None, float | None]:
        """Take the per-call pipeline options out of ``params``."""
        overrides = {k: params.pop(k) for k in list(params) if k in _RESERVED}
        policy = self.retry_policy
        if overrides:
            _check_retry_overrides(
                overrides.get("max_retries"), overrides.get("timeout_total"), ValidationError
            )
            policy = policy.with_overrides(**overrides)
        cache = self._call_cache(params.pop("cache", None))
        ttl = params.pop("cache_ttl", None)
        if ttl is not None and (not is_number(ttl) or not ttl > 0):
            raise ValidationError([("cache_ttl", f"expected seconds > 0, got {show(ttl)}")])
        return policy, cache, ttl

    def _log_cache_error(self, what: str, exc: BaseException) -> None:
        logger.warning(
            "cache {what} failed: {error}", what=what, error=f"{type(exc).__name__}: {exc}"
        )

    def _on_retry(
        self,
        where: tuple[str, str],
        policy: RetryPolicy,
        attempt: int,
        error: BaseException,
        delay: float,
    ) -> None:
        """Count and log a retry, and tell the policy's own ``on_retry`` (a failing
        callback never breaks a request)."""
        self.retries += 1
        provider, model = where
        logger.warning(
            "retrying {provider}:{model} after attempt {attempt} failed with {error}"
            " ({detail}); next attempt in {delay:.3f}s",
            provider=provider,
            model=model,
            attempt=attempt,
            error=type(error).__name__,
            detail=str(error),
            delay=delay,
            request_id=getattr(error, "request_id", None),
            status=getattr(error, "status_code", None),
        )
        if policy.on_retry is not None:
            try:
                policy.on_retry(attempt, error, delay)
            except Exception:  # a callback must never break a request
                pass

    # --- metrics ---------------------------------------------------------------------

    def _record(
        self,
        request: ChatRequest,
        started: float,
        *,
        response: ChatResponse | None = None,
        error: BaseException | None = None,
        attempts: int = 1,
        time_to_first_token: float | None = None,
        deployment: Deployment | None = None,
    ) -> None:
        usage = response.usage if response is not None else None
        latency = time.perf_counter() - started
        tokens_per_second = None
        if usage is not None and time_to_first_token is not None:
            generating = latency - time_to_first_token
            if generating > 0 and usage.completion_tokens:
                tokens_per_second = usage.completion_tokens / generating
        self._emit(
            RequestEvent(
                provider=request.provider,
                model=request.model,
                outcome="ok" if error is None else "error",
                error_type=type(error).__name__ if error is not None else None,
                latency=latency,
                attempts=attempts,
                prompt_tokens=usage.prompt_tokens if usage else None,
                completion_tokens=usage.completion_tokens if usage else None,
                cost=response.cost if response is not None else None,
                saved_cost=response.saved_cost if response is not None else None,
                cached_tokens=usage.cached_tokens if usage else None,
                cache_creation_tokens=usage.cache_creation_tokens if usage else None,
                reasoning_tokens=usage.reasoning_tokens if usage else None,
                cached=bool(response.cached) if response is not None else False,
                status_code=getattr(error, "status_code", None),
                time_to_first_token=time_to_first_token,
                tokens_per_second=tokens_per_second,
                timestamp=time.time(),
                route=deployment.route if deployment is not None else None,
                deployment=deployment.key if deployment is not None else None,
            )
        )

    def _record_attempt(
        self,
        request: ChatRequest,
        number: int,
        started: float,
        error: BaseException | None,
        deployment: Deployment | None = None,
    ) -> None:
        self._emit(
            RequestEvent(
                provider=request.provider,
                model=request.model,
                outcome="ok" if error is None else "error",
                error_type=type(error).__name__ if error is not None else None,
                latency=time.perf_counter() - started,
                status_code=getattr(error, "status_code", None),
                kind="attempt",
                attempt=number,
                timestamp=time.time(),
                route=deployment.route if deployment is not None else None,
                deployment=deployment.key if deployment is not None else None,
            )
        )

    def _emit(self, event: RequestEvent) -> None:
        for sink in self.metrics_sinks:
            try:
                sink.record(event)
            except Exception as exc:  # a failing sink never fails a request
                self._sink_failed(sink, exc)

    def _sink_failed(self, sink: Any, exc: BaseException) -> None:
        """Log a failing sink once (per sink object), then stay quiet."""
        log_failure_once(self._failed_sinks, sink, "metrics sink", exc)


def _check_providers_installed(
    configured: Mapping[str, Any], installed: Mapping[str, ProviderSpec]
) -> None:
    unknown = sorted(set(configured) - set(installed))
    if not unknown:
        return
    problems = []
    for name in unknown:
        hint = provider_hint(name, installed)
        problems.append(f"providers[{name!r}]: no such provider is installed; {hint}")
    listed = ", ".join(sorted(installed)) or "none"
    raise ConfigurationError("; ".join(problems) + f" (installed providers: {listed})")


def _check_retry_overrides(
    max_retries: Any, timeout_total: Any, error: type[ConfigurationError] | type[ValidationError]
) -> None:
    problems = []
    if max_retries is not None and (
        not isinstance(max_retries, int) or isinstance(max_retries, bool) or max_retries < 0
    ):
        problems.append(("max_retries", f"expected an integer >= 0, got {show(max_retries)}"))
    if timeout_total is not None and (not is_number(timeout_total) or not timeout_total > 0):
        problems.append(("timeout_total", f"expected seconds > 0, got {show(timeout_total)}"))
    if problems:
        if error is ValidationError:
            raise ValidationError(problems)
        raise ConfigurationError("; ".join(f"{k}: {m}" for k, m in problems))
