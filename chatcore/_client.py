"""``chatcore.Client``: the sync driver of the one request pipeline, over requests.

normalize -> validate -> cache -> rate limit -> retry(send) -> record; the stages are in
:mod:`chatcore._pipeline`, carried out here with blocking calls. A client is configured
once and safe to share across threads; providers are created lazily, once per client, on
first use.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import attrs

from chatcore._base import BaseClient
from chatcore._pipeline import (
    chat_pipeline,
    models_pipeline,
    run_sync,
    stream_abandoned,
    stream_completed,
    stream_failed,
    stream_pipeline,
)
from chatcore._stream import ChatStream
from chatcore.models import ChatResponse
from chatcore.provider import ModelInfo, Provider

if TYPE_CHECKING:
    from chatcore._health import HealthReport
    from chatcore._tools import ToolRun
    from chatcore._transport import HttpTransport

__all__ = ["Client"]


class Client(BaseClient):
    """Calls chat models of any installed provider through one pipeline (blocking).

    ``providers`` maps a provider name to its options (``api_key``, ``base_url``,
    ``timeout``, ...); anything not given comes from ``CHATCORE_<PROVIDER>_<OPTION>``, then
    the vendor's variables (``OPENAI_API_KEY``, ``HF_TOKEN``), then defaults.
    """

    def _transport_of(self, provider: Provider) -> HttpTransport:
        return provider.sync_transport()

    def list_models(self, provider: str) -> list[ModelInfo]:
        """The models ``provider`` serves (one request through the retry policy)."""
        return run_sync(models_pipeline(self, self.provider(provider), self.retry_policy))

    # --- chat ------------------------------------------------------------------------

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
        key = params.pop("budget_key", None)
        return run_sync(
            chat_pipeline(self, *self._chat_request(model, messages, params), budget_key=key)
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
        key = params.pop("budget_key", None)
        context = run_sync(
            stream_pipeline(self, *self._stream_request(model, messages, params), budget_key=key)
        )
        chunks, first, kwargs = self._stream_source(context)
        if context.replay is not None:
            return ChatStream(chunks, first, **kwargs)
        stream = ChatStream(
            chunks,
            first,
            on_complete=lambda s: run_sync(stream_completed(self, context, s)),
            on_error=lambda s, e: run_sync(stream_failed(self, context, s, e)),
            on_close=lambda s: run_sync(stream_abandoned(self, context)),
            **kwargs,
        )
        if context.first is None:  # an empty stream that ended cleanly
            next(stream, None)
        return stream

    # --- health ----------------------------------------------------------------------

    def health(self, providers: Iterable[str] | None = None, refresh: bool = False) -> HealthReport:
        """Liveness and per-provider readiness (a cheap probe each, short timeout, cached
        ``readiness_ttl`` seconds); see :class:`~chatcore.HealthReport`."""
        return self._health_checker().readiness(providers, refresh=refresh)

    # --- lifecycle -------------------------------------------------------------------

    def close(self) -> None:
        """Close every provider's connection pool (and the health checker's threads)."""
        with self._lock:
            providers = self._providers_in_use()
            self._providers, self._deployment_providers = {}, {}
            self._secret_sets, self._route_secret_sets = {}, {}
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
