"""``chatcore.Client``: one request pipeline for every provider.

normalize -> validate -> cache -> rate limit -> retry(send) -> record metrics.
A client is configured once and safe to share across threads; providers are created
lazily, once per client, on first use.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import attrs

from chatcore._limits import InMemoryRateLimiter, NullRateLimiter
from chatcore._metrics import RequestEvent
from chatcore._plugins import PluginHost, get_plugin_host
from chatcore._retry import RetryPolicy
from chatcore._transport import call_deadline
from chatcore._validate import build_request, split_model
from chatcore.exceptions import APIError, ConfigurationError, RateLimitExceeded, ValidationError
from chatcore.models import ChatRequest, ChatResponse
from chatcore.provider import ModelInfo, Provider, ProviderSpec, resolve_config

__all__ = ["Client"]

_RESERVED = frozenset({"max_retries", "timeout_total"})


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
        self.cache = cache if cache is not None else plugin_host.cache(settings)
        self.metrics_sinks: tuple[Any, ...] = (
            *metrics_sinks,
            *plugin_host.metrics_sinks(settings),
        )
        self.max_total_chars = max_total_chars
        self._providers: dict[str, Provider] = {}
        self._lock = threading.Lock()
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
        overrides = {k: params.pop(k) for k in list(params) if k in _RESERVED}
        policy = self.retry_policy
        if overrides:
            _check_retry_overrides(
                overrides.get("max_retries"), overrides.get("timeout_total"), ValidationError
            )
            policy = policy.with_overrides(**overrides)
        request = self.build_request(model, messages, **params)
        provider = self.provider(request.provider)
        return self._execute(request, provider, policy)

    def _execute(
        self, request: ChatRequest, provider: Provider, policy: RetryPolicy
    ) -> ChatResponse:
        """rate limit -> retry(send) -> record, for one validated request."""
        started = time.perf_counter()
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
            try:
                response = provider.chat(request)
            except APIError as exc:
                limiter.reconcile(ticket, None)
                limiter.observe(name, model, exc.headers, exc)
                raise
            except BaseException:
                limiter.reconcile(ticket, None)
                raise
            usage = response.usage
            limiter.reconcile(ticket, usage.total_tokens if usage is not None else estimate)
            limiter.observe(name, model, response.headers)
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
    ) -> None:
        if not self.metrics_sinks:
            return
        usage = response.usage if response is not None else None
        event = RequestEvent(
            provider=request.provider,
            model=request.model,
            outcome="ok" if error is None else "error",
            error_type=type(error).__name__ if error is not None else None,
            latency=time.perf_counter() - started,
            attempts=attempts,
            prompt_tokens=usage.prompt_tokens if usage else None,
            completion_tokens=usage.completion_tokens if usage else None,
            cached=bool(response.cached) if response is not None else False,
            status_code=getattr(error, "status_code", None),
        )
        for sink in self.metrics_sinks:
            try:
                sink.record(event)
            except Exception:  # a failing sink never fails a request
                pass


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
