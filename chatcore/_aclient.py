"""``chatcore.AsyncClient``: the asyncio driver of the one request pipeline, over aiohttp.

The same stages as :class:`~chatcore.Client` (:mod:`chatcore._pipeline`), carried out by
awaiting: sleeps and limiter waits never block the event loop, each provider gets one
pooled aiohttp session, and a cancelled task releases its connection, settles its limiter
grant and is recorded. A client belongs to the event loop it is first used on.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Generator, Iterable
from typing import TYPE_CHECKING, Any

import attrs

from chatcore._base import BaseClient
from chatcore._pipeline import (
    chat_pipeline,
    models_pipeline,
    run_async,
    stream_abandoned,
    stream_completed,
    stream_failed,
    stream_pipeline,
)
from chatcore._stream import AsyncChatStream
from chatcore.exceptions import ConfigurationError
from chatcore.models import ChatResponse
from chatcore.provider import ModelInfo, Provider

if TYPE_CHECKING:
    from chatcore._atransport import AsyncHttpTransport
    from chatcore._health import HealthReport
    from chatcore._tools import ToolRun

__all__ = ["AsyncClient", "StreamOpener"]


class StreamOpener:
    """What :meth:`AsyncClient.stream` returns: ``await`` it for an open
    :class:`~chatcore.AsyncChatStream`, or use it in ``async with`` (which closes the
    stream on the way out)."""

    def __init__(self, client: AsyncClient, model: str, messages: Any, params: dict[str, Any]):
        self._client = client
        self._args = (model, messages, params)
        self._stream: AsyncChatStream | None = None

    def __await__(self) -> Generator[Any, None, AsyncChatStream]:
        return self._client._open_stream(*self._args).__await__()

    async def __aenter__(self) -> AsyncChatStream:
        self._stream = await self._client._open_stream(*self._args)
        return self._stream

    async def __aexit__(self, *exc: object) -> None:
        if self._stream is not None:
            await self._stream.aclose()

    def __aiter__(self) -> AsyncIterator[Any]:
        raise TypeError(
            "AsyncClient.stream() must be awaited or used with 'async with' before "
            "iterating: 'async with client.stream(...) as stream: async for chunk in stream'"
        )


class AsyncClient(BaseClient):
    """Calls chat models of any installed provider through one pipeline, on asyncio.

    The same constructor and the same behaviour as :class:`~chatcore.Client`::

        async with chatcore.AsyncClient() as client:
            response = await client.chat("openai:gpt-4o-mini", "Hello")
            async with client.stream("openai:gpt-4o-mini", "Hi") as stream:
                async for chunk in stream:
                    print(chunk.text, end="")

    Safe to share between the tasks of one event loop; using it from another loop raises
    :class:`~chatcore.exceptions.ConfigurationError` (create one client per loop).
    Providers written against chatcore 0.1 (doing their own blocking I/O) run in worker
    threads.
    """

    #: One aiohttp transport per provider instance (a route's deployment with options of
    #: its own has an instance of its own), made on first use on this client's loop.
    _transports: dict[int, tuple[Provider, AsyncHttpTransport]] | None = None
    _loop: asyncio.AbstractEventLoop | None = None

    def _check_loop(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
        elif self._loop is not loop:
            raise ConfigurationError(
                "this AsyncClient is bound to another event loop (the one it was first "
                "used on); create one AsyncClient per event loop, or aclose() it on its "
                "loop before using it on another"
            )

    def _transport_of(self, provider: Provider) -> AsyncHttpTransport:
        if self._transports is None:
            self._transports = {}
        known = self._transports.get(id(provider))
        if known is not None and known[0] is provider:
            return known[1]
        if provider.target is None:
            raise NotImplementedError(
                f"provider {provider.name!r} set no target (call set_target in __init__)"
            )
        from chatcore._atransport import AsyncHttpTransport

        target = provider.target
        found = AsyncHttpTransport(
            base_url=target.base_url,
            headers=target.headers,
            params=target.params,
            **provider.transport_options(),
        )
        self._transports[id(provider)] = (provider, found)
        return found

    # --- calls -----------------------------------------------------------------------

    async def chat(
        self, model: str, messages: Any, *, response_model: Any = None, **params: Any
    ) -> ChatResponse:
        """Send a chat and return the answer: :meth:`chatcore.Client.chat`, awaited."""
        self._check_loop()
        if response_model is not None:
            from chatcore._structured import achat_structured

            result = await achat_structured(self, model, messages, response_model, **params)
            return attrs.evolve(result.response, parsed=result.parsed)
        key = params.pop("budget_key", None)
        return await run_async(
            chat_pipeline(self, *self._chat_request(model, messages, params), budget_key=key)
        )

    def stream(self, model: str, messages: Any, **params: Any) -> StreamOpener:
        """Stream a chat: ``async with client.stream(...) as stream`` (or
        ``stream = await client.stream(...)``), then ``async for chunk in stream``.
        Retried like :meth:`chat` until the first chunk arrives; a failure after that
        raises :class:`~chatcore.StreamError` with the partial text."""
        return StreamOpener(self, model, messages, params)

    async def _open_stream(
        self, model: str, messages: Any, params: dict[str, Any]
    ) -> AsyncChatStream:
        self._check_loop()
        params = dict(params)
        key = params.pop("budget_key", None)
        context = await run_async(
            stream_pipeline(self, *self._stream_request(model, messages, params), budget_key=key)
        )
        chunks, first, kwargs = self._stream_source(context)
        if context.replay is not None:
            return AsyncChatStream(chunks, first, **kwargs)

        async def complete(s: AsyncChatStream) -> None:
            await run_async(stream_completed(self, context, s))

        async def failed(s: AsyncChatStream, e: BaseException) -> None:
            await run_async(stream_failed(self, context, s, e))

        async def abandoned(s: AsyncChatStream) -> None:
            await run_async(stream_abandoned(self, context))

        stream = AsyncChatStream(
            chunks,
            first,
            on_complete=complete,
            on_error=failed,
            on_close=abandoned,
            **kwargs,
        )
        if context.first is None:  # an empty stream that ended cleanly
            async for _ in stream:
                pass
        return stream

    async def run_tools(self, model: str, messages: Any, tools: Any, **kwargs: Any) -> ToolRun:
        """The tool loop of :meth:`chatcore.Client.run_tools`, awaited: async tool
        functions are awaited, plain ones run in a worker thread."""
        from chatcore._tools import arun_tools

        return await arun_tools(self, model, messages, tools, **kwargs)

    async def list_models(self, provider: str) -> list[ModelInfo]:
        """The models ``provider`` serves (one request through the retry policy)."""
        self._check_loop()
        return await run_async(models_pipeline(self, self.provider(provider), self.retry_policy))

    # --- health ----------------------------------------------------------------------

    async def health(
        self, providers: Iterable[str] | None = None, refresh: bool = False
    ) -> HealthReport:
        """Liveness and per-provider readiness, as :meth:`chatcore.Client.health` (the
        probes run in worker threads, so the event loop is never blocked)."""
        checker = self._health_checker()
        return await asyncio.to_thread(lambda: checker.readiness(providers, refresh=refresh))

    # --- lifecycle -------------------------------------------------------------------

    async def aclose(self) -> None:
        """Close every provider's aiohttp session (and any blocking pools 0.1 providers
        or health probes opened)."""
        with self._lock:
            transports = [t for _p, t in (self._transports or {}).values()]
            self._transports = {}
            self._loop = None  # closed: the next use may be on another loop
            providers = self._providers_in_use()
            self._providers, self._deployment_providers = {}, {}
            self._secret_sets, self._route_secret_sets = {}, {}
            health, self._health = self._health, None
        for transport in transports:
            await transport.aclose()
        for component in {id(c): c for c in self._owned}.values():
            # an async-capable component from a hook (e.g. chatcore-redis) holds a pool
            # bound to this loop; one the caller passed in is the caller's to close
            close = getattr(component, "aclose", None)
            if close is not None:
                await close()
        for p in providers:
            p.close()
        if health is not None:
            health.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"<chatcore.AsyncClient providers={self.available_providers()!r}>"
