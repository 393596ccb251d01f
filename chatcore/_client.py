"""``chatcore.Client``: one request pipeline for every provider.

normalize -> validate -> cache -> rate limit -> retry(send) -> record metrics.
A client is configured once and safe to share across threads; providers are created
lazily, once per client, on first use.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, cast

import attrs

from chatcore._cache import InMemoryCache, ResponseCache, cache_key
from chatcore._limits import InMemoryRateLimiter, NullRateLimiter
from chatcore._metrics import InMemoryMetrics, RequestEvent
from chatcore._plugins import PluginHost, get_plugin_host
from chatcore._retry import RetryPolicy
from chatcore._stream import ChatStream, chunks_from_response
from chatcore._transport import call_deadline
from chatcore._validate import build_request, split_model
from chatcore.exceptions import APIError, ConfigurationError, ValidationError
from chatcore.models import ChatChunk, ChatRequest, ChatResponse
from chatcore.provider import ModelInfo, Provider, ProviderSpec, resolve_config

__all__ = ["Client"]

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
        retry: RetryPolicy | None = None,
        max_retries: int | None = None,
        timeout_total: float | None = None,
        rate_limits: Mapping[str, Any] | None = None,
        rate_limiter: Any = None,
        cache: Any = None,
        cache_ttl: float | None = 600.0,
        cache_maxsize: int = 1024,
        metrics_sinks: Iterable[Any] = (),
        plugins: Iterable[Any] = (),
        plugin_host: PluginHost | None = None,
        environ: Mapping[str, str] | None = None,
        max_total_chars: int = 100_000,
    ) -> None:
        plugins = tuple(plugins)
        if plugin_host is None:
            plugin_host = PluginHost(plugins=plugins) if plugins else get_plugin_host()
        self._host = plugin_host
        self._environ = environ
        self.rate_limits = dict(rate_limits or {})
        self.retries = 0
        self._provider_settings = {k: dict(v) for k, v in (providers or {}).items()}
        settings = self  # hooks receive the client; later issues give them a settings object
        policy = retry or plugin_host.retry_policy(settings) or RetryPolicy()
        if max_retries is not None or timeout_total is not None:
            _check_retry_overrides(max_retries, timeout_total, ConfigurationError)
            policy = policy.with_overrides(max_retries=max_retries, timeout_total=timeout_total)
        self.retry_policy: RetryPolicy = policy
        if rate_limiter is None:
            rate_limiter = plugin_host.rate_limiter(settings)
        if rate_limiter is None:
            rate_limiter = (
                InMemoryRateLimiter(self.rate_limits) if self.rate_limits else NullRateLimiter()
            )
        self.rate_limiter = rate_limiter
        self.cache_ttl = cache_ttl
        self.cache_maxsize = cache_maxsize
        self.cache: ResponseCache | None = None
        if cache is True:
            self.cache = self._default_cache()
        elif cache is not None and cache is not False:
            if not all(callable(getattr(cache, m, None)) for m in ("get", "set", "stats")):
                raise ConfigurationError(
                    f"cache={cache!r}: expected True, False, or an object with get/set/stats"
                )
            self.cache = cache
        #: The built-in aggregator (``client.metrics.snapshot()``), always the first sink.
        self.metrics = InMemoryMetrics()
        self.metrics_sinks: tuple[Any, ...] = (
            self.metrics,
            *metrics_sinks,
            *plugin_host.metrics_sinks(settings),
        )
        self.max_total_chars = max_total_chars
        self._providers: dict[str, Provider] = {}
        self._lock = threading.Lock()
        self._failed_sinks: set[int] = set()
        installed = plugin_host.providers()
        unknown = sorted(set(self._provider_settings) - set(installed))
        if unknown:
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

    def _default_cache(self) -> ResponseCache:
        """The hook's cache (a plugin's, else the in-memory LRU+TTL)."""
        found = self._host.cache(self)
        if found is None:
            found = InMemoryCache(maxsize=self.cache_maxsize, ttl=self.cache_ttl)
        return cast(ResponseCache, found)

    def _call_cache(self, choice: Any) -> ResponseCache | None:
        """The cache for one call: ``cache=False`` skips it, ``cache=True`` turns it on
        even when the client has none (a default one is created once)."""
        if choice is None:
            return self.cache
        if not isinstance(choice, bool):
            raise ValidationError([("cache", f"expected True or False, got {choice!r}")])
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
                config = resolve_config(spec, self._provider_settings.get(name), self._environ)
                found = spec.factory(config)
                self._providers[name] = found
        return found

    def list_models(self, provider: str) -> list[ModelInfo]:
        """The models ``provider`` serves (one request through the retry policy)."""
        prov = self.provider(provider)
        policy = self.retry_policy
        deadline = None
        if policy.timeout_total is not None:
            deadline = time.monotonic() + policy.timeout_total
        token = call_deadline.set(deadline)
        try:
            result, _ = policy.call(lambda _attempt: prov.list_models())
        finally:
            call_deadline.reset(token)
        return result

    # --- chat ------------------------------------------------------------------------

    def build_request(self, model: str, messages: Any, **params: Any) -> ChatRequest:
        """Validate and normalize a request without sending it."""
        provider, model_id = split_model(model)
        self._host.provider_spec(provider)
        return build_request(
            provider, model_id, messages, params, max_total_chars=self.max_total_chars
        )

    def chat(self, model: str, messages: Any, **params: Any) -> ChatResponse:
        """Send a chat and return the answer.

        ``model`` is ``"provider:model"``; ``messages`` a string, a message or dict, or a
        list of them; ``params`` the OpenAI-style parameters (``temperature``,
        ``max_tokens``, ``tools``, ...), ``extra={...}`` for provider-specific ones, and
        ``max_retries`` / ``timeout_total`` to override the retry policy for this call.
        """
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
        if ttl is not None and (
            isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not ttl > 0
        ):
            raise ValidationError([("cache_ttl", f"expected seconds > 0, got {ttl!r}")])
        return policy, cache, ttl

    def _cache_lookup(
        self, cache: ResponseCache | None, request: ChatRequest, provider: Provider
    ) -> tuple[str | None, ChatResponse | None]:
        if cache is None:
            return None, None
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
        from chatcore._log import logger

        logger.warning(
            "cache {what} failed: {error}", what=what, error=f"{type(exc).__name__}: {exc}"
        )

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
            max_wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            ticket = limiter.acquire(name, model, estimate, max_wait=max_wait)
            attempt_started = time.perf_counter()
            chunks = provider.stream(request)
            token = call_deadline.set(deadline)
            try:
                first = next(chunks, None)
            except APIError as exc:
                limiter.reconcile(ticket, None)
                limiter.observe(name, model, exc.headers, exc)
                self._record_attempt(request, number, attempt_started, exc)
                raise
            except BaseException as exc:
                limiter.reconcile(ticket, None)
                self._record_attempt(request, number, attempt_started, exc)
                raise
            finally:
                call_deadline.reset(token)
            if first is not None:
                limiter.observe(name, model, first.headers)
            self._record_attempt(request, number, attempt_started, None)
            tickets.append(ticket)
            return chunks, first

        try:
            (chunks, first), attempts = policy.call(attempt, on_retry=self._on_retry(request))
        except Exception as exc:
            self._record(request, started, error=exc, attempts=getattr(exc, "attempts", 1))
            raise

        def complete(stream: ChatStream) -> None:
            response = stream.response
            usage = response.usage if response is not None else None
            limiter.reconcile(tickets[-1], usage.total_tokens if usage is not None else estimate)
            if response is not None:
                self._cache_store(cache, key, response, ttl)
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

        stream = ChatStream(
            chunks,
            first,
            provider=name,
            model=model,
            attempts=attempts,
            started=started,
            on_complete=complete,
            on_error=failed,
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
            max_wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            ticket = limiter.acquire(name, model, estimate, max_wait=max_wait)
            attempt_started = time.perf_counter()
            try:
                response = provider.chat(request)
            except APIError as exc:
                limiter.reconcile(ticket, None)
                limiter.observe(name, model, exc.headers, exc)
                self._record_attempt(request, number, attempt_started, exc)
                raise
            except BaseException as exc:
                limiter.reconcile(ticket, None)
                self._record_attempt(request, number, attempt_started, exc)
                raise
            usage = response.usage
            limiter.reconcile(ticket, usage.total_tokens if usage is not None else estimate)
            limiter.observe(name, model, response.headers)
            self._record_attempt(request, number, attempt_started, None)
            return response

        try:
            response, attempts = policy.call(attempt, on_retry=self._on_retry(request))
        except Exception as exc:
            self._record(request, started, error=exc, attempts=getattr(exc, "attempts", 1))
            raise
        finally:
            call_deadline.reset(token)
        latency = time.perf_counter() - started
        response = attrs.evolve(response, provider=name, latency=latency, attempts=attempts)
        self._cache_store(cache, key, response, ttl)
        self._record(request, started, response=response, attempts=attempts)
        return response

    def _on_retry(self, request: ChatRequest) -> Callable[[int, BaseException, float], None]:
        def log_retry(attempt: int, error: BaseException, delay: float) -> None:
            self.retries += 1
            from chatcore._log import logger

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

    # --- lifecycle -------------------------------------------------------------------

    def close(self) -> None:
        """Close every provider's connection pool."""
        with self._lock:
            providers, self._providers = list(self._providers.values()), {}
        for p in providers:
            p.close()

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
        from chatcore._log import logger

        logger.error(
            "metrics sink {sink} failed and will not be reported again: {error}",
            sink=type(sink).__name__,
            error=f"{type(exc).__name__}: {exc}",
        )


def _check_retry_overrides(
    max_retries: Any, timeout_total: Any, error: type[ConfigurationError] | type[ValidationError]
) -> None:
    problems = []
    if max_retries is not None and (
        not isinstance(max_retries, int) or isinstance(max_retries, bool) or max_retries < 0
    ):
        problems.append(("max_retries", f"expected an integer >= 0, got {max_retries!r}"))
    if timeout_total is not None and (
        not isinstance(timeout_total, (int, float))
        or isinstance(timeout_total, bool)
        or not timeout_total > 0
    ):
        problems.append(("timeout_total", f"expected seconds > 0, got {timeout_total!r}"))
    if problems:
        if error is ValidationError:
            raise ValidationError(problems)
        raise ConfigurationError("; ".join(f"{k}: {m}" for k, m in problems))


def _estimate(request: ChatRequest) -> int:
    """A cheap token estimate for rate limiting: ~4 characters a token plus the output cap."""
    chars = sum(len(m.text) for m in request.messages)
    out = request.max_completion_tokens or request.max_tokens or 0
    return chars // 4 + 1 + out
