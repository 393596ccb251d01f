"""``chatcore.Client``: one request pipeline for every provider.

normalize -> validate -> cache -> rate limit -> retry(send) -> record metrics.
A client is configured once and safe to share across threads; providers are created
lazily, once per client, on first use.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, TypeVar, cast

import attrs

from chatcore._deadline import call_deadline
from chatcore._limits import InMemoryRateLimiter, NullRateLimiter
from chatcore._log import logger, logging_on, register_secrets
from chatcore._metrics import InMemoryMetrics, RequestEvent
from chatcore._plugins import PluginHost, get_plugin_host
from chatcore._redact import KnownSecrets, mask_secrets, scrub_exception, usable_secrets
from chatcore._retry import RetryPolicy
from chatcore._settings import Settings, load_settings
from chatcore._stream import ChatStream, chunks_from_response
from chatcore._validate import build_request, is_number, show, split_model
from chatcore.exceptions import APIError, ConfigurationError, ValidationError
from chatcore.models import ChatChunk, ChatRequest, ChatResponse
from chatcore.provider import ModelInfo, Provider, ProviderSpec, resolve_config

if TYPE_CHECKING:
    from chatcore._cache import ResponseCache
    from chatcore._health import HealthChecker, HealthReport, HealthServer
    from chatcore._tools import ToolRun

__all__ = ["Client"]

T = TypeVar("T")

_RESERVED = frozenset({"max_retries", "timeout_total"})
_CACHE_PARAMS = frozenset({"cache", "cache_ttl"})


class Client:
    """Calls chat models of any installed provider through one pipeline.

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
        rate_limiter: Any = None,
        cache: Any = None,
        cache_ttl: float | None = None,
        cache_maxsize: int | None = None,
        metrics_sinks: Iterable[Any] = (),
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
                "cache": cache if isinstance(cache, bool) else None,
                "cache_ttl": cache_ttl,
                "cache_maxsize": cache_maxsize,
                "max_total_chars": max_total_chars,
                "max_request_bytes": max_request_bytes,
                "max_messages": max_messages,
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

        self.rate_limits = dict(s.rate_limits)
        if rate_limiter is None:
            rate_limiter = plugin_host.rate_limiter(s)
        if rate_limiter is None:
            rate_limiter = (
                InMemoryRateLimiter(self.rate_limits, max_server_hold=s.max_server_hold)
                if self.rate_limits
                else NullRateLimiter()
            )
        self.rate_limiter = rate_limiter

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
        self.max_total_chars = s.max_total_chars
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

    def list_models(self, provider: str) -> list[ModelInfo]:
        """The models ``provider`` serves (one request through the retry policy)."""
        prov = self.provider(provider)
        policy = self.retry_policy
        deadline = None
        if policy.timeout_total is not None:
            deadline = time.monotonic() + policy.timeout_total
        token = call_deadline.set(deadline)
        secrets = self._secrets_of(prov)
        try:
            result, _ = policy.call(lambda _attempt: prov.list_models())
        except Exception as exc:
            scrub_exception(exc, secrets)
            raise
        finally:
            call_deadline.reset(token)
        masked: list[ModelInfo] = mask_secrets(result, secrets)
        return masked

    # --- chat ------------------------------------------------------------------------

    def build_request(self, model: str, messages: Any, **params: Any) -> ChatRequest:
        """Validate and normalize a request without sending it."""
        provider, model_id = split_model(model)
        self._host.provider_spec(provider)
        return build_request(
            provider,
            model_id,
            messages,
            params,
            max_total_chars=self.max_total_chars,
            max_messages=self.settings.max_messages,
            max_request_bytes=self.settings.max_request_bytes,
        )

    def chat(
        self, model: str, messages: Any, *, response_model: Any = None, **params: Any
    ) -> ChatResponse:
        """Send a chat and return the answer.

        ``model`` is ``"provider:model"``; ``messages`` a string, a message or dict, or a
        list of them; ``params`` the OpenAI-style parameters (``temperature``,
        ``max_tokens``, ``tools``, ...), ``extra={...}`` for provider-specific ones, and
        ``max_retries`` / ``timeout_total`` to override the retry policy for this call.
        With ``response_model=`` an attrs class, the model is asked for JSON of that
        schema and ``response.parsed`` is the structured instance (see
        :func:`chatcore.chat_structured`).
        """
        if response_model is not None:
            from chatcore._structured import chat_structured

            result = chat_structured(self, model, messages, response_model, **params)
            return attrs.evolve(result.response, parsed=result.parsed)
        policy, cache, ttl = self._call_options(params)
        request = self.build_request(model, messages, **params)
        provider = self.provider(request.provider)
        return self._execute(request, provider, policy, cache, ttl)

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

    def _cache_lookup(
        self, cache: ResponseCache | None, request: ChatRequest, provider: Provider
    ) -> tuple[str | None, ChatResponse | None]:
        if cache is None:
            return None, None
        from chatcore._cache import cache_key

        try:
            key = cache_key(
                request, base_url=provider.base_url, plugin_version=provider.config.spec.version
            )
        except TypeError:  # a parameter that is not JSON: not cacheable
            return None, None
        try:
            return key, cache.get(key)
        except Exception as exc:  # a broken backend is a miss, never a failed request
            self._log_cache_error("get", exc)
            return key, None

    def _cache_store(
        self,
        cache: ResponseCache | None,
        key: str | None,
        response: ChatResponse,
        ttl: float | None,
    ) -> None:
        if cache is None or key is None:
            return
        try:
            cache.set(key, response, ttl)
        except Exception as exc:
            self._log_cache_error("set", exc)

    def _log_cache_error(self, what: str, exc: BaseException) -> None:
        logger.warning(
            "cache {what} failed: {error}", what=what, error=f"{type(exc).__name__}: {exc}"
        )

    def run_tools(self, model: str, messages: Any, tools: Any, **kwargs: Any) -> ToolRun:
        """Run the tool loop: call the model with ``tools`` (Python callables), execute the
        calls it asks for, feed the results back, until it answers (see
        :func:`chatcore.run_tools`)."""
        from chatcore._tools import run_tools

        return run_tools(self, model, messages, tools, **kwargs)

    def stream(self, model: str, messages: Any, **params: Any) -> ChatStream:
        """Stream a chat: returns a :class:`~chatcore.ChatStream` of
        :class:`~chatcore.ChatChunk` (a context manager; ``.response`` and ``.text`` once
        exhausted). Retried like :meth:`chat` until the first chunk arrives; a failure
        after that raises :class:`~chatcore.StreamError` with the partial text."""
        policy, cache, ttl = self._call_options(params)
        provider_name, model_id = split_model(model)
        self._host.provider_spec(provider_name)
        request = build_request(
            provider_name,
            model_id,
            messages,
            params,
            stream=True,
            max_total_chars=self.max_total_chars,
            max_messages=self.settings.max_messages,
            max_request_bytes=self.settings.max_request_bytes,
        )
        provider = self.provider(request.provider)
        if "stream" not in provider.capabilities:
            raise ValidationError(
                [("stream", f"provider {provider.name!r} does not support streaming; use chat()")]
            )
        return self._open_stream(request, provider, policy, cache, ttl)

    def _open_stream(
        self,
        request: ChatRequest,
        provider: Provider,
        policy: RetryPolicy,
        cache: ResponseCache | None = None,
        ttl: float | None = None,
    ) -> ChatStream:
        started = time.perf_counter()
        key, hit = self._cache_lookup(cache, request, provider)
        if hit is not None:
            replay = attrs.evolve(hit, provider=request.provider, cached=True)
            self._record(request, started, response=replay, attempts=0)
            return ChatStream(
                chunks_from_response(replay),
                None,
                provider=request.provider,
                model=request.model,
                attempts=0,
                started=started,
                cached=True,
                request_id=hit.request_id,
            )
        deadline = None
        if policy.timeout_total is not None:
            deadline = time.monotonic() + policy.timeout_total
        limiter = self.rate_limiter
        estimate = _estimate(request)
        name, model = request.provider, request.model
        tickets: list[Any] = []

        def attempt(number: int) -> tuple[Iterator[ChatChunk], ChatChunk | None]:
            chunks = provider.stream(request)  # a generator: nothing is sent before next()

            def first_chunk() -> ChatChunk | None:
                token = call_deadline.set(deadline)
                try:
                    return next(chunks, None)
                finally:
                    call_deadline.reset(token)

            ticket, first, attempt_started = self._attempt(
                request, number, deadline, estimate, first_chunk
            )
            if first is not None:
                limiter.observe(name, model, first.headers)
            self._record_attempt(request, number, attempt_started, None)
            tickets.append(ticket)
            return chunks, first

        secrets = self._secrets_of(provider)
        try:
            (chunks, first), attempts = policy.call(attempt, on_retry=self._on_retry(request))
        except Exception as exc:
            scrub_exception(exc, secrets)
            self._record(request, started, error=exc, attempts=getattr(exc, "attempts", 1))
            raise

        def complete(stream: ChatStream) -> None:
            response = stream.response
            usage = response.usage if response is not None else None
            limiter.reconcile(tickets[-1], usage.total_tokens if usage is not None else estimate)
            if response is not None and response.choices:
                self._cache_store(cache, key, response, ttl)
            if logging_on():
                logger.info(
                    "stream {provider}:{model} ok in {latency_ms:.1f} ms ({chunks} chunks)",
                    provider=name,
                    model=model,
                    latency_ms=(time.perf_counter() - started) * 1000,
                    chunks=stream.chunk_count,
                    attempts=attempts,
                    request_id=stream.request_id,
                    time_to_first_token=stream.time_to_first_token,
                )
            self._record(
                request,
                started,
                response=response,
                attempts=attempts,
                time_to_first_token=stream.time_to_first_token,
            )

        def failed(stream: ChatStream, error: BaseException) -> None:
            limiter.reconcile(tickets[-1], estimate)
            self._record(request, started, error=error, attempts=attempts)
            logger.warning(
                "stream {provider}:{model} failed after {chunks} chunks: {error}",
                provider=name,
                model=model,
                chunks=stream.chunk_count,
                error=f"{type(error).__name__}: {error}",
                request_id=stream.request_id,
            )

        def abandoned(stream: ChatStream) -> None:
            # closed by the caller before the end: charge the estimate, record nothing
            limiter.reconcile(tickets[-1], estimate)

        stream = ChatStream(
            chunks,
            first,
            provider=name,
            model=model,
            attempts=attempts,
            started=started,
            on_complete=complete,
            on_error=failed,
            on_close=abandoned,
            secrets=secrets,
        )
        if first is None:  # an empty stream that ended cleanly
            next(stream, None)
        return stream

    def _execute(
        self,
        request: ChatRequest,
        provider: Provider,
        policy: RetryPolicy,
        cache: ResponseCache | None = None,
        ttl: float | None = None,
    ) -> ChatResponse:
        """cache -> rate limit -> retry(send) -> record, for one validated request."""
        started = time.perf_counter()
        key, hit = self._cache_lookup(cache, request, provider)
        if hit is not None:
            hit = attrs.evolve(
                hit,
                provider=request.provider,
                cached=True,
                attempts=0,
                latency=time.perf_counter() - started,
            )
            self._record(request, started, response=hit, attempts=0)
            return hit
        deadline = None
        if policy.timeout_total is not None:
            deadline = time.monotonic() + policy.timeout_total
        token = call_deadline.set(deadline)
        limiter = self.rate_limiter
        estimate = _estimate(request)
        name, model = request.provider, request.model

        def attempt(number: int) -> ChatResponse:
            ticket, response, attempt_started = self._attempt(
                request, number, deadline, estimate, lambda: provider.chat(request)
            )
            usage = response.usage
            limiter.reconcile(ticket, usage.total_tokens if usage is not None else estimate)
            limiter.observe(name, model, response.headers)
            self._record_attempt(request, number, attempt_started, None)
            return response

        if logging_on():
            logger.opt(lazy=True).debug(
                "chat {provider}:{model} request body: {body}",
                provider=lambda: name,
                model=lambda: model,
                body=lambda: request.to_openai_dict(),
            )
        secrets = self._secrets_of(provider)
        try:
            response, attempts = policy.call(attempt, on_retry=self._on_retry(request))
        except Exception as exc:
            scrub_exception(exc, secrets)
            self._record(request, started, error=exc, attempts=getattr(exc, "attempts", 1))
            logger.warning(
                "chat {provider}:{model} failed: {error}",
                provider=name,
                model=model,
                error=f"{type(exc).__name__}: {exc}",
                attempts=getattr(exc, "attempts", 1),
                request_id=getattr(exc, "request_id", None),
                status=getattr(exc, "status_code", None),
            )
            raise
        finally:
            call_deadline.reset(token)
        latency = time.perf_counter() - started
        # what came from the wire (headers, ids, text, raw fields) shows none of the secrets
        masked: ChatResponse = mask_secrets(response, secrets)
        response = attrs.evolve(masked, provider=name, latency=latency, attempts=attempts)
        if logging_on():
            logger.info(
                "chat {provider}:{model} ok in {latency_ms:.1f} ms",
                provider=name,
                model=model,
                latency_ms=latency * 1000,
                attempts=attempts,
                request_id=response.request_id,
                status=200,
            )
        self._cache_store(cache, key, response, ttl)
        self._record(request, started, response=response, attempts=attempts)
        return response

    def _attempt(
        self,
        request: ChatRequest,
        number: int,
        deadline: float | None,
        estimate: int,
        send: Callable[[], T],
    ) -> tuple[Any, T, float]:
        """One attempt's limiter grant and ``send()``; a failure settles the grant, teaches
        the limiter (429s, rate-limit headers) and records the attempt before it is raised.
        Returns ``(ticket, result, started)`` for the caller's success bookkeeping."""
        limiter = self.rate_limiter
        max_wait = None if deadline is None else max(0.0, deadline - time.monotonic())
        ticket = limiter.acquire(request.provider, request.model, estimate, max_wait=max_wait)
        started = time.perf_counter()
        try:
            return ticket, send(), started
        except APIError as exc:
            limiter.reconcile(ticket, None)
            limiter.observe(request.provider, request.model, exc.headers, exc)
            self._record_attempt(request, number, started, exc)
            raise
        except BaseException as exc:
            limiter.reconcile(ticket, None)
            self._record_attempt(request, number, started, exc)
            raise

    def _on_retry(self, request: ChatRequest) -> Callable[[int, BaseException, float], None]:
        def log_retry(attempt: int, error: BaseException, delay: float) -> None:
            self.retries += 1
            logger.warning(
                "retrying {provider}:{model} after attempt {attempt} failed with {error}"
                " ({detail}); next attempt in {delay:.3f}s",
                provider=request.provider,
                model=request.model,
                attempt=attempt,
                error=type(error).__name__,
                detail=str(error),
                delay=delay,
                request_id=getattr(error, "request_id", None),
                status=getattr(error, "status_code", None),
            )

        return log_retry

    # --- health ----------------------------------------------------------------------

    def _health_checker(self) -> HealthChecker:
        from chatcore._health import HealthChecker

        with self._lock:
            if self._health is None:
                self._health = HealthChecker(self, ttl=self.settings.readiness_ttl)
            return self._health

    def health(self, providers: Iterable[str] | None = None, refresh: bool = False) -> HealthReport:
        """Liveness and per-provider readiness (a cheap probe each, short timeout, cached
        ``readiness_ttl`` seconds); see :class:`~chatcore.HealthReport`."""
        return self._health_checker().readiness(providers, refresh=refresh)

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

    # --- lifecycle -------------------------------------------------------------------

    def close(self) -> None:
        """Close every provider's connection pool (and the health checker's threads)."""
        with self._lock:
            providers, self._providers = list(self._providers.values()), {}
            self._secret_sets = {}
            health, self._health = self._health, None
        for p in providers:
            p.close()
        if health is not None:
            health.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<chatcore.Client providers={self.available_providers()!r}>"

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
                cached=bool(response.cached) if response is not None else False,
                status_code=getattr(error, "status_code", None),
                time_to_first_token=time_to_first_token,
                tokens_per_second=tokens_per_second,
                timestamp=time.time(),
            )
        )

    def _record_attempt(
        self, request: ChatRequest, number: int, started: float, error: BaseException | None
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
        key = id(sink)
        if key in self._failed_sinks:
            return
        self._failed_sinks.add(key)
        logger.error(
            "metrics sink {sink} failed and will not be reported again: {error}",
            sink=type(sink).__name__,
            error=f"{type(exc).__name__}: {exc}",
        )


def _check_providers_installed(
    configured: Mapping[str, Any], installed: Mapping[str, ProviderSpec]
) -> None:
    unknown = sorted(set(configured) - set(installed))
    if not unknown:
        return
    import difflib

    problems = []
    for name in unknown:
        close = difflib.get_close_matches(name, list(installed), n=1)
        hint = (
            f"did you mean {close[0]!r}?"
            if close
            else f"install its plugin (`pip install chatcore-{name}`)"
        )
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


def _estimate(request: ChatRequest) -> int:
    """A cheap token estimate for rate limiting: ~4 characters a token plus the output cap."""
    chars = sum(len(m.text) for m in request.messages)
    out = request.max_completion_tokens or request.max_tokens or 0
    return chars // 4 + 1 + out
