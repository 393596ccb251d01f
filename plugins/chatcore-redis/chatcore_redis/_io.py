"""How the limiter and the cache talk to Redis, said once for both clients.

Each operation (acquire, reconcile, observe, get, set, ...) is written once as a *flow*: a
generator that never does I/O itself but yields *steps* -- a Redis command, a pause, a
call of the local fallback limiter -- and receives their results (or has their exceptions
thrown in). Key building, the Lua scripts, the interpretation of their answers and the
failure policy all live in the flows. A :class:`Driver` carries the steps out: with the
blocking redis-py client (:meth:`Driver.run`, the sync ``Client``) or with a
``redis.asyncio`` client awaited on the event loop (:meth:`Driver.arun`, the
``AsyncClient``). The two paths therefore share keys, scripts, limits, holds, cache
entries and failure semantics, and differ only in how a command reaches Redis.

``redis.asyncio`` connections belong to the event loop that opened them, so
:class:`AsyncConnector` keeps one asyncio client (one pool) per loop, made on first use
and closed by :meth:`AsyncConnector.aclose` or, at the latest, when the loop shuts its
asynchronous generators down (``asyncio.run`` does, before closing the loop).
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar, Union, cast

import attrs
import redis

if TYPE_CHECKING:
    import redis.asyncio as aredis

__all__ = [
    "AsyncConnector",
    "Command",
    "Driver",
    "Flow",
    "Local",
    "LuaScript",
    "Pause",
    "Step",
]

T = TypeVar("T")


# --------------------------------------------------------------------------------------
# Steps


@attrs.frozen
class Command:
    """One Redis command: ``client.<method>(*args, **kwargs)`` (the same name and
    arguments in redis-py's blocking and asyncio clients)."""

    method: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = attrs.field(factory=dict)


@attrs.frozen
class Pause:
    """Wait ``seconds`` before asking again: ``sleep`` itself under the sync driver; the
    event loop's sleep under the async one (or ``sleep`` then a yield to the loop when a
    test injected a fake one instead of :func:`time.sleep`)."""

    seconds: float
    sleep: Callable[[float], None] = time.sleep


@attrs.frozen
class Local:
    """Work done without Redis that may wait: ``sync()`` under the sync driver, ``aio()``
    awaited under the async one (the local fallback limiter's ``acquire``/``aacquire``)."""

    sync: Callable[[], Any]
    aio: Callable[[], Awaitable[Any]]


Step = Union[Command, Pause, Local]
"""What a flow yields."""

#: An operation written once: yields steps, receives their results, returns a ``T``.
Flow = Generator[Step, Any, T]


class LuaScript:
    """A Lua script run with ``EVALSHA``, loaded again (``SCRIPT LOAD``) when the server
    does not know it (a restarted or flushed server)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.sha = hashlib.sha1(text.encode("utf-8")).hexdigest()

    def run(self, keys: Sequence[str], args: Sequence[Any]) -> Flow[Any]:
        """The flow of one execution; its result is the script's answer."""
        call = Command("evalsha", (self.sha, len(keys), *keys, *args))
        try:
            return (yield call)
        except redis.exceptions.NoScriptError:
            pass
        yield Command("script_load", (self.text,))
        return (yield call)

    def __repr__(self) -> str:
        return f"<LuaScript sha={self.sha[:12]}>"


# --------------------------------------------------------------------------------------
# The asyncio clients, one per event loop


@attrs.define(eq=False)
class _PerLoop:
    client: aredis.Redis
    watcher: AsyncGenerator[None, None] | None = None


class AsyncConnector:
    """One ``redis.asyncio`` client (one connection pool) per event loop, made by
    ``factory`` on the first async command on that loop.

    A loop's client is closed by :meth:`aclose` (called on that loop) or, at the latest,
    when the loop shuts down its asynchronous generators (``asyncio.run`` and
    ``asyncio.Runner`` do, before closing the loop): the client is watched by an async
    generator the loop knows about. A client left behind by a loop closed without that
    shutdown is dropped on the next use from another loop."""

    def __init__(self, factory: Callable[[], aredis.Redis]) -> None:
        self._factory = factory
        self._lock = threading.Lock()
        self._loops: dict[asyncio.AbstractEventLoop, _PerLoop] = {}

    async def client(self) -> aredis.Redis:
        """The running loop's client (made on first use)."""
        loop = asyncio.get_running_loop()
        with self._lock:
            found = self._loops.get(loop)
            if found is not None:
                return found.client
            for stale in [other for other in self._loops if other.is_closed()]:
                del self._loops[stale]
            state = _PerLoop(self._factory())
            self._loops[loop] = state
        # Started here, to its first yield, without suspending this task: no other task
        # of the loop can see the state before it is watched.
        state.watcher = self._watch(loop, state)
        await state.watcher.asend(None)
        return state.client

    async def _watch(
        self, loop: asyncio.AbstractEventLoop, state: _PerLoop
    ) -> AsyncGenerator[None, None]:
        """Suspended for the life of the loop's client; closing it (:meth:`aclose`, the
        loop's ``shutdown_asyncgens``) closes the client."""
        try:
            yield
        finally:
            with self._lock:
                if self._loops.get(loop) is state:
                    del self._loops[loop]
            try:
                await state.client.aclose()
            except (redis.RedisError, OSError):  # closing a broken connection: nothing to do
                pass

    @property
    def loops(self) -> int:
        """How many event loops have an open client."""
        with self._lock:
            return len(self._loops)

    async def aclose(self) -> None:
        """Close the running loop's client (a later command opens a new one)."""
        loop = asyncio.get_running_loop()
        with self._lock:
            state = self._loops.pop(loop, None)
        if state is None:
            return
        if state.watcher is not None:
            await state.watcher.aclose()
        else:  # pragma: no cover - the watcher is started before anyone sees the state
            await state.client.aclose()


# --------------------------------------------------------------------------------------
# Drivers


class Driver:
    """Carries flows out: :meth:`run` with the blocking ``client``, :meth:`arun` with the
    running loop's client from ``connector``. A step's exception is thrown into the flow,
    which applies the failure policy."""

    def __init__(self, client: redis.Redis, connector: AsyncConnector) -> None:
        self.client = client
        self.connector = connector

    def run(self, flow: Flow[T]) -> T:
        """Run ``flow`` to its end with blocking calls."""
        value: Any = None
        error: BaseException | None = None
        try:
            while True:
                try:
                    step = flow.throw(error) if error is not None else flow.send(value)
                except StopIteration as stop:
                    return cast(T, stop.value)
                try:
                    value, error = self._step(step), None
                except BaseException as exc:  # thrown into the flow, which decides
                    value, error = None, exc
        finally:
            flow.close()

    def _step(self, step: Step) -> Any:
        if isinstance(step, Command):
            return getattr(self.client, step.method)(*step.args, **step.kwargs)
        if isinstance(step, Pause):
            step.sleep(step.seconds)
            return None
        return step.sync()

    async def arun(self, flow: Flow[T]) -> T:
        """Run ``flow`` to its end on the event loop, never blocking it."""
        value: Any = None
        error: BaseException | None = None
        client: aredis.Redis | None = None
        try:
            while True:
                try:
                    step = flow.throw(error) if error is not None else flow.send(value)
                except StopIteration as stop:
                    return cast(T, stop.value)
                try:
                    if isinstance(step, Command):
                        if client is None:
                            client = await self.connector.client()
                        method = getattr(client, step.method)
                        value = await method(*step.args, **step.kwargs)
                    elif isinstance(step, Pause):
                        if step.sleep is time.sleep:
                            await asyncio.sleep(step.seconds)
                        else:  # an injected sleep (a test's clock): then let the loop run
                            step.sleep(step.seconds)
                            await asyncio.sleep(0)
                        value = None
                    else:
                        value = await step.aio()
                    error = None
                except BaseException as exc:  # cancellation too: the flow sees it
                    value, error = None, exc
        finally:
            flow.close()
