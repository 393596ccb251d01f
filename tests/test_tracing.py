"""Tracers (``chatcore_tracers`` hook, ``Client(tracers=...)``): what the pipeline tells them,
in which order, with their context current while the call runs, under both clients; a
failing tracer never fails a call, and a client without tracers makes no trace."""

from __future__ import annotations

import asyncio
import contextvars
from typing import Any

import pytest

import chatcore
from chatcore._plugins import PluginHost
from chatcore._tracing import TracedCall
from chatcore.provider import Option, ProviderSpec
from chatcore.testing.server import Reply, StandInServer

from .conftest import TEST_KEY, WirePlugin, WireProvider, no_sleep

#: What a recording tracer makes current while a call runs.
CURRENT: contextvars.ContextVar[str | None] = contextvars.ContextVar("current", default=None)


class StreamingWirePlugin:
    """The ``wire`` provider with the stream capability."""

    @chatcore.hookimpl
    def chatcore_providers(self) -> list[ProviderSpec]:
        return [
            ProviderSpec(
                name="swire",
                factory=WireProvider,
                options={"api_key": Option(secret=True), "base_url": Option()},
                capabilities={"chat", "stream"},
            )
        ]


class Scope:
    def __init__(self, handle: Handle) -> None:
        self.handle = handle
        self.token: Any = None

    def __enter__(self) -> Scope:
        self.handle.log.append("enter")
        self.token = CURRENT.set(self.handle.name)
        return self

    def __exit__(self, *exc: object) -> None:
        CURRENT.reset(self.token)
        self.handle.log.append("exit")


class Handle:
    def __init__(self, call: TracedCall, name: str) -> None:
        self.call = call
        self.name = name
        self.log: list[Any] = []
        self.response: chatcore.ChatResponse | None = None
        self.error: BaseException | None = None

    def activate(self) -> Scope:
        return Scope(self)

    def headers(self) -> dict[str, str]:
        return {"x-trace-id": self.name}

    def attempt_started(self, number: int) -> None:
        self.log.append(("attempt", number))

    def attempt_ended(self, number: int, error: BaseException | None) -> None:
        self.log.append(("attempt_end", number, type(error).__name__ if error else None))

    def first_chunk(self) -> None:
        self.log.append("first_chunk")

    def end(self, response: chatcore.ChatResponse | None, error: BaseException | None) -> None:
        self.log.append("end")
        self.response, self.error = response, error


class Recorder:
    """A tracer: one handle per call, named ``call-<n>``."""

    def __init__(self) -> None:
        self.handles: list[Handle] = []

    def start(self, call: TracedCall) -> Handle:
        handle = Handle(call, f"call-{len(self.handles) + 1}")
        self.handles.append(handle)
        return handle


class SeeingLimiter:
    """A rate limiter recording what is current when the pipeline asks it for a grant."""

    def __init__(self) -> None:
        self.seen: list[str | None] = []

    def acquire(self, provider: str, model: str, tokens: int, *, max_wait: Any = None) -> None:
        self.seen.append(CURRENT.get())

    def reconcile(self, ticket: Any, used: Any) -> None:
        pass

    def observe(self, provider: str, model: str, headers: Any, error: Any = None) -> None:
        pass


def make_host(*plugins: Any) -> PluginHost:
    return PluginHost(
        load_entry_points=False,
        plugins=[WirePlugin(), StreamingWirePlugin(), *plugins],
        environ={},
    )


def client(server: StandInServer, *plugins: Any, **kwargs: Any) -> chatcore.Client:
    kwargs.setdefault("retry", chatcore.RetryPolicy(sleep=no_sleep))
    options = {"api_key": TEST_KEY, "base_url": server.base_url}
    return chatcore.Client(
        plugin_host=make_host(*plugins),
        providers={"wire": options, "swire": options},
        environ={},
        **kwargs,
    )


def aclient(server: StandInServer, **kwargs: Any) -> chatcore.AsyncClient:
    kwargs.setdefault("retry", chatcore.RetryPolicy(sleep=no_sleep))
    options = {"api_key": TEST_KEY, "base_url": server.base_url}
    return chatcore.AsyncClient(
        plugin_host=make_host(),
        providers={"wire": options, "swire": options},
        environ={},
        **kwargs,
    )


def test_chatcore_tracers_hook_tracers_follow_a_chat(server):
    recorder = Recorder()

    class Plugin:
        @chatcore.hookimpl
        def chatcore_tracers(self, settings):
            assert isinstance(settings, chatcore.Settings)
            return [recorder]

    limiter = SeeingLimiter()
    with client(server, Plugin(), rate_limiter=limiter) as c:
        assert c.tracers == (recorder,)
        response = c.chat("wire:m", "hi", temperature=0.5)
    (handle,) = recorder.handles
    assert handle.call.operation == "chat"
    assert handle.call.request.model == "m"
    assert handle.call.request.temperature == 0.5
    assert handle.call.base_url == server.base_url
    assert TEST_KEY in handle.call.secrets.values
    assert TEST_KEY not in repr(handle.call)
    assert handle.log == ["enter", ("attempt", 1), ("attempt_end", 1, None), "exit", "end"]
    assert handle.response is response
    assert handle.error is None
    assert limiter.seen == ["call-1"]  # the call's context is current where the work runs
    assert CURRENT.get() is None  # and nowhere after
    assert server.last_request.header("x-trace-id") == "call-1"


def test_tracers_argument_and_hook_tracers_are_both_used(server):
    given, hooked = Recorder(), Recorder()

    class Plugin:
        @chatcore.hookimpl
        def chatcore_tracers(self):
            return [hooked]

    with client(server, Plugin(), tracers=[given]) as c:
        assert c.tracers == (given, hooked)
        c.chat("wire:m", "hi")
    assert len(given.handles) == len(hooked.handles) == 1


def test_retries_are_attempts_and_the_final_error_ends_the_call(server):
    recorder = Recorder()
    server.enqueue(Reply.error(503, "busy"), Reply.error(503, "busy"), Reply.error(503, "busy"))
    with client(server, tracers=[recorder]) as c, pytest.raises(chatcore.ServiceUnavailableError):
        c.chat("wire:m", "hi")
    (handle,) = recorder.handles
    assert handle.log == [
        "enter",
        ("attempt", 1),
        ("attempt_end", 1, "ServiceUnavailableError"),
        ("attempt", 2),
        ("attempt_end", 2, "ServiceUnavailableError"),
        ("attempt", 3),
        ("attempt_end", 3, "ServiceUnavailableError"),
        "exit",
        "end",
    ]
    assert isinstance(handle.error, chatcore.ServiceUnavailableError)
    assert handle.error.attempts == 3
    assert TEST_KEY not in str(handle.error)


def test_a_cache_hit_ends_with_the_cached_answer_and_no_attempt(server):
    recorder = Recorder()
    with client(server, tracers=[recorder], cache=True) as c:
        c.chat("wire:m", "hi")
        c.chat("wire:m", "hi")
    first, second = recorder.handles
    assert second.log == ["enter", "exit", "end"]
    assert second.response is not None and second.response.cached
    assert first.response is not None and not first.response.cached


def test_a_stream_is_traced_until_its_end(server):
    recorder = Recorder()
    server.enqueue(Reply.chat_stream("one two three"))
    with client(server, tracers=[recorder]) as c:
        stream = c.stream("swire:m", "hi")
        (handle,) = recorder.handles
        assert handle.log[-1] == "exit"  # open, not ended, not current any more
        assert CURRENT.get() is None
        text = "".join(chunk.text or "" for chunk in stream)
    assert text == "one two three"
    assert handle.log == [
        "enter",
        ("attempt", 1),
        ("attempt_end", 1, None),
        "first_chunk",
        "exit",
        "end",
    ]
    assert handle.call.request.stream
    assert handle.response is not None and handle.response.text == "one two three"


def test_a_stream_that_breaks_or_is_closed_early_ends_its_call(server):
    recorder = Recorder()
    server.enqueue(Reply.chat_stream("one two three four", die_after=2))
    server.enqueue(Reply.chat_stream("one two three four"))
    with client(server, tracers=[recorder]) as c:
        with pytest.raises(chatcore.StreamError):
            for _ in c.stream("swire:m", "hi"):
                pass
        with c.stream("swire:m", "hi") as stream:
            next(stream)
    broken, closed = recorder.handles
    assert broken.log[-1] == "end"
    assert isinstance(broken.error, chatcore.StreamError)
    assert closed.log[-1] == "end"
    assert (closed.response, closed.error) == (None, None)


class Broken:
    """Fails in the place it is told to."""

    def __init__(self, where: str) -> None:
        self.where = where

    def start(self, call: TracedCall) -> Any:
        if self.where == "start":
            raise RuntimeError("tracer down")
        if self.where == "start-returns-junk":
            return object()
        outer = self

        class BadHandle(Handle):
            def __getattribute__(self, name: str) -> Any:
                if name == outer.where:
                    raise RuntimeError(f"{name} down")
                return super().__getattribute__(name)

        return BadHandle(call, "bad")


@pytest.mark.parametrize(
    "where",
    [
        "start",
        "start-returns-junk",
        "activate",
        "headers",
        "attempt_started",
        "attempt_ended",
        "first_chunk",
        "end",
    ],
)
def test_a_failing_tracer_never_fails_a_call_nor_the_other_tracers(server, where):
    good = Recorder()
    server.enqueue(Reply.error(503, "busy"))
    with client(server, tracers=[Broken(where), good]) as c:
        assert c.chat("wire:m", "hi").attempts == 2
        assert "".join(ch.text or "" for ch in c.stream("swire:m", "hi"))
    chat, stream = good.handles
    assert chat.log[-1] == stream.log[-1] == "end"
    assert "first_chunk" in stream.log
    assert CURRENT.get() is None


def test_a_failing_tracer_is_logged_once(server):
    from chatcore._log import logger

    messages: list[str] = []
    logger.enable("chatcore")
    sink = logger.add(lambda m: messages.append(str(m)), level="ERROR")
    try:
        with client(server, tracers=[Broken("end")]) as c:
            c.chat("wire:m", "hi")
            c.chat("wire:m", "hi")
    finally:
        logger.remove(sink)
        logger.disable("chatcore")
    assert len(messages) == 1
    assert "tracer Broken failed" in messages[0]


def test_no_tracer_no_trace(server):
    class NoneTracer:
        def start(self, call):
            return None

    with client(server) as c:
        assert c.tracers == ()
        assert c._tracing is None
        c.chat("wire:m", "hi")
    with client(server, tracers=[NoneTracer()]) as c:
        c.chat("wire:m", "hi")  # a tracer may skip a call
    assert server.last_request.header("x-trace-id") is None


def test_async_calls_are_traced_with_their_context_in_their_task(server):
    recorder = Recorder()
    limiter = SeeingLimiter()
    for _ in range(4):
        server.enqueue(Reply.chat("answer", delay=0.05))
    server.enqueue(Reply.chat_stream("a b c"))

    async def main() -> list[str | None]:
        async with aclient(server, tracers=[recorder], rate_limiter=limiter) as c:

            async def one(i: int) -> str | None:
                await c.chat("wire:m", f"hi {i}")
                return CURRENT.get()

            after = await asyncio.gather(*(one(i) for i in range(4)))
            async with c.stream("swire:m", "hi") as stream:
                async for _ in stream:
                    pass
            return list(after)

    assert asyncio.run(main()) == [None] * 4
    assert len(recorder.handles) == 5
    # each concurrent task saw its own call's context while its call ran
    assert sorted(s for s in limiter.seen if s is not None) == [f"call-{i}" for i in range(1, 6)]
    for handle in recorder.handles[:4]:
        assert handle.log == ["enter", ("attempt", 1), ("attempt_end", 1, None), "exit", "end"]
    assert "first_chunk" in recorder.handles[4].log
    assert recorder.handles[4].response is not None
