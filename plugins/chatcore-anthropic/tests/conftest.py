"""Fixtures of the chatcore-anthropic tests: Messages API stand-in servers over real HTTP,
and clients (``Client`` and ``AsyncClient``) that find the plugin through its ``chatcore``
entry point, in an empty environment, with no retries unless asked (and retry waits that
never sleep)."""

from __future__ import annotations

import asyncio
import importlib.metadata
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

import attrs
import pytest

import chatcore
from chatcore._plugins import PluginHost
from chatcore.models import ChatChunk, ChatResponse
from chatcore.testing.helpers import RecordingSleep
from chatcore.testing.server import StandInServer

ANTHROPIC_KEY = "sk-ant-test-anthropicSECRET0123456789"
MODEL = "anthropic:claude-haiku-4-5"

T = TypeVar("T")
MakeClient = Callable[..., chatcore.Client]
MakeAsyncClient = Callable[..., chatcore.AsyncClient]


def plugin_host() -> PluginHost:
    """A host loading only this plugin, through its real entry point."""
    eps = [ep for ep in importlib.metadata.entry_points(group="chatcore") if ep.name == "anthropic"]
    assert eps, "chatcore-anthropic is not installed (pip install -e plugins/chatcore-anthropic)"
    return PluginHost(entry_points=eps, environ={})


@pytest.fixture(scope="session")
def anthropic_key() -> str:
    """The key the stand-in accepts (constants travel as fixtures under importlib mode)."""
    return ANTHROPIC_KEY


@pytest.fixture(scope="session")
def model() -> str:
    """The model every test calls, as ``provider:model``."""
    return MODEL


@pytest.fixture(scope="session")
def host() -> PluginHost:
    return plugin_host()


@pytest.fixture
def server() -> Iterator[StandInServer]:
    with StandInServer(flavor="anthropic", api_key=ANTHROPIC_KEY) as srv:
        yield srv


@pytest.fixture
def sleeps() -> RecordingSleep:
    """The retry policy's sleep: records the delays, never sleeps."""
    return RecordingSleep()


def _options(server: StandInServer, options: dict[str, Any] | None) -> dict[str, Any]:
    return {"api_key": ANTHROPIC_KEY, "base_url": server.base_url, **(options or {})}


@pytest.fixture
def make_client(
    host: PluginHost, server: StandInServer, sleeps: RecordingSleep
) -> Iterator[MakeClient]:
    """``make_client(max_retries=0, client_kwargs=None, **options)``: a ``Client`` whose
    ``anthropic`` provider points at ``server``; closed at teardown."""
    clients: list[chatcore.Client] = []

    def make(
        max_retries: int = 0, client_kwargs: dict[str, Any] | None = None, **options: Any
    ) -> chatcore.Client:
        client = chatcore.Client(
            providers={"anthropic": _options(server, options)},
            environ={},
            plugin_host=host,
            retry=sleeps.retry_policy(max_retries=max_retries),
            **(client_kwargs or {}),
        )
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def make_async_client(
    host: PluginHost, server: StandInServer, sleeps: RecordingSleep
) -> MakeAsyncClient:
    """``make_async_client(max_retries=0, client_kwargs=None, **options)``: an
    ``AsyncClient`` for ``server`` (open it inside the coroutine, with ``async with``)."""

    def make(
        max_retries: int = 0, client_kwargs: dict[str, Any] | None = None, **options: Any
    ) -> chatcore.AsyncClient:
        return chatcore.AsyncClient(
            providers={"anthropic": _options(server, options)},
            environ={},
            plugin_host=host,
            retry=sleeps.retry_policy(max_retries=max_retries),
            **(client_kwargs or {}),
        )

    return make


@pytest.fixture
def client(make_client: MakeClient) -> chatcore.Client:
    """A ``Client`` for the stand-in, without retries."""
    return make_client()


@attrs.frozen
class Streamed:
    """What a stream gave: its chunks, the assembled answer, its request id and headers."""

    chunks: list[ChatChunk]
    response: ChatResponse | None
    request_id: str | None
    text: str


class Either:
    """One test body for both clients: each call goes through ``Client`` (``kind ==
    "sync"``) or a fresh ``AsyncClient`` run by ``asyncio.run`` (``"async"``), pointed at the
    stand-in. ``retries`` allows retries (their waits never sleep); ``options`` are provider
    options; ``client_kwargs`` go to the client (rate limiter, metrics sinks)."""

    def __init__(self, kind: str, make: MakeClient, make_async: MakeAsyncClient) -> None:
        self.kind = kind
        self._make = make
        self._make_async = make_async

    def _call(
        self,
        method: Callable[[Any], Any],
        amethod: Callable[[Any], Coroutine[Any, Any, T]],
        retries: int,
        options: dict[str, Any] | None,
        client_kwargs: dict[str, Any] | None,
    ) -> T:
        if self.kind == "sync":
            result: T = method(self._make(retries, client_kwargs, **(options or {})))
            return result

        async def main() -> T:
            async with self._make_async(retries, client_kwargs, **(options or {})) as client:
                return await amethod(client)

        return asyncio.run(main())

    def chat(
        self,
        messages: Any,
        *,
        model: str = MODEL,
        retries: int = 0,
        options: dict[str, Any] | None = None,
        client_kwargs: dict[str, Any] | None = None,
        **params: Any,
    ) -> ChatResponse:
        """``chat(model, messages, **params)`` through the test's client kind."""

        async def achat(c: chatcore.AsyncClient) -> ChatResponse:
            return await c.chat(model, messages, **params)

        return self._call(
            lambda c: c.chat(model, messages, **params), achat, retries, options, client_kwargs
        )

    def stream(
        self,
        messages: Any,
        *,
        model: str = MODEL,
        retries: int = 0,
        options: dict[str, Any] | None = None,
        client_kwargs: dict[str, Any] | None = None,
        **params: Any,
    ) -> Streamed:
        """Open a stream and read it to its end (an error mid-stream is raised)."""

        def read(c: chatcore.Client) -> Streamed:
            with c.stream(model, messages, **params) as s:
                chunks = list(s)
            return Streamed(chunks, s.response, s.request_id, s.text)

        async def aread(c: chatcore.AsyncClient) -> Streamed:
            async with c.stream(model, messages, **params) as s:
                chunks = [chunk async for chunk in s]
            return Streamed(chunks, s.response, s.request_id, s.text)

        return self._call(read, aread, retries, options, client_kwargs)

    def list_models(self, *, options: dict[str, Any] | None = None) -> list[Any]:
        async def alist(c: chatcore.AsyncClient) -> list[Any]:
            return await c.list_models("anthropic")

        return self._call(lambda c: c.list_models("anthropic"), alist, 0, options, None)

    def run_tools(self, messages: Any, tools: Any, *, model: str = MODEL, **kwargs: Any) -> Any:
        async def arun(c: chatcore.AsyncClient) -> Any:
            return await c.run_tools(model, messages, tools, **kwargs)

        return self._call(
            lambda c: c.run_tools(model, messages, tools, **kwargs), arun, 0, None, None
        )


@pytest.fixture(params=["sync", "async"])
def either(
    request: pytest.FixtureRequest, make_client: MakeClient, make_async_client: MakeAsyncClient
) -> Either:
    """An :class:`Either` of ``Client`` (``[sync]``) and ``AsyncClient`` (``[async]``)."""
    return Either(request.param, make_client, make_async_client)
