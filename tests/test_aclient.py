"""``chatcore.AsyncClient`` over real sockets: the same pipeline as ``Client`` driven on
asyncio (chat, streams, retries with exact server-side counts, cache, limiter under many
tasks, metrics, tools, structured output, cancellation, event-loop binding, 0.1 providers
in worker threads, clean shutdown)."""

from __future__ import annotations

import asyncio
import gc
import threading
import time
import warnings
from typing import Any

import attrs
import pytest

import chatcore
from chatcore._plugins import PluginHost
from chatcore.exceptions import (
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    RateLimitExceeded,
    ServerError,
    StreamError,
    ValidationError,
)
from chatcore.provider import Option, ProviderSpec
from chatcore.testing.helpers import LegacyWireProvider, OpenAIWireProvider
from chatcore.testing.server import Reply, StandInServer

from .conftest import TEST_KEY

MODEL = "sse:gpt-4o-mini"


class AsyncPlugin:
    """``sse``: the translate-only OpenAI-wire provider; ``old``: the same written as a
    chatcore 0.1 provider doing its own I/O."""

    @chatcore.hookimpl
    def chatcore_providers(self) -> list[ProviderSpec]:
        options = {
            "api_key": Option(secret=True, required=False),
            "base_url": Option(default="http://127.0.0.1:9/v1"),
        }
        caps = {"chat", "stream", "models", "json_schema", "tools"}
        return [
            ProviderSpec(
                name="sse", factory=OpenAIWireProvider, options=options, capabilities=caps
            ),
            ProviderSpec(
                name="old", factory=LegacyWireProvider, options=options, capabilities=caps
            ),
        ]


class Sleeps:
    """A retry sleep that records and never sleeps."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


@pytest.fixture
def make_async(server: StandInServer) -> Any:
    def make(**kwargs: Any) -> chatcore.AsyncClient:
        host = PluginHost(load_entry_points=False, plugins=[AsyncPlugin()], environ={})
        options = {"api_key": TEST_KEY, "base_url": server.base_url}
        kwargs.setdefault("retry", chatcore.RetryPolicy(sleep=Sleeps()))
        return chatcore.AsyncClient(
            plugin_host=host,
            providers={"sse": dict(options), "old": dict(options)},
            environ={},
            **kwargs,
        )

    return make


def run(coro: Any) -> Any:
    return asyncio.run(coro)


# --------------------------------------------------------------------------------------
# chat


def test_chat_returns_the_answer_and_sends_what_the_provider_described(make_async, server):
    async def main() -> chatcore.ChatResponse:
        async with make_async() as client:
            return await client.chat(MODEL, "Hello", temperature=0.5)

    response = run(main())
    assert response.text
    assert response.provider == "sse"
    assert response.attempts == 1
    assert response.latency is not None and response.latency > 0
    seen = server.last_request
    assert seen.path.endswith("/chat/completions")
    assert seen.header("authorization") == f"Bearer {TEST_KEY}"
    assert seen.header("user-agent", "").startswith("chatcore/")
    assert seen.header("accept") == "application/json"
    assert seen.json()["temperature"] == 0.5
    assert seen.json()["messages"] == [{"role": "user", "content": "Hello"}]


@pytest.mark.parametrize(("status", "error"), [(400, BadRequestError), (401, AuthenticationError)])
def test_errors_are_typed_and_not_retried(make_async, server, status, error):
    server.enqueue(Reply.error(status, "nope"))

    async def main() -> None:
        async with make_async() as client:
            await client.chat(MODEL, "Hello")

    with pytest.raises(error) as info:
        run(main())
    assert info.value.attempts == 1
    assert len(server.requests) == 1
    assert TEST_KEY not in repr(info.value) and TEST_KEY not in str(info.value)


def test_retries_count_exactly_what_the_server_saw(make_async, server):
    server.enqueue(
        Reply.error(500, "down"), Reply.error(503, "down", headers={"retry-after-ms": "250"})
    )
    sleeps = Sleeps()

    async def main() -> chatcore.ChatResponse:
        async with make_async(retry=chatcore.RetryPolicy(sleep=sleeps)) as client:
            return await client.chat(MODEL, "Hello")

    response = run(main())
    assert response.attempts == 3
    assert len(server.requests) == 3
    assert len(sleeps.calls) == 2
    assert sleeps.calls[1] == 0.25  # the server's demand, as given


def test_retries_exhausted_raise_with_the_attempts(make_async, server):
    server.enqueue(*[Reply.error(500, "down")] * 3)

    async def main() -> None:
        async with make_async() as client:
            await client.chat(MODEL, "Hello")

    with pytest.raises(ServerError) as info:
        run(main())
    assert info.value.attempts == 3
    assert len(server.requests) == 3


def test_retry_waits_on_the_event_loop_without_blocking_it(make_async, server):
    """A real retry sleep is awaited: other tasks run meanwhile."""
    server.enqueue(Reply.error(500, "down", headers={"retry-after-ms": "300"}))
    ticks: list[float] = []

    async def ticker() -> None:
        for _ in range(5):
            ticks.append(time.monotonic())
            await asyncio.sleep(0.03)

    async def main() -> chatcore.ChatResponse:
        async with make_async(retry=chatcore.RetryPolicy()) as client:
            call = asyncio.ensure_future(client.chat(MODEL, "Hello"))
            await ticker()
            return await call

    started = time.monotonic()
    response = run(main())
    assert response.attempts == 2
    assert time.monotonic() - started >= 0.3
    assert len(ticks) == 5 and ticks[-1] - ticks[0] < 0.3  # the loop kept running


def test_validation_errors_send_nothing(make_async, server):
    async def main() -> None:
        async with make_async() as client:
            await client.chat(MODEL, [{"role": "user", "content": "x"}], temperature=9)

    with pytest.raises(ValidationError, match="temperature"):
        run(main())
    assert server.requests == []


def test_list_models_and_health(make_async, server):
    async def main() -> tuple[list[Any], Any]:
        async with make_async() as client:
            models = await client.list_models("sse")
            report = await client.health(["sse"])
            return models, report

    models, report = run(main())
    assert [m.id for m in models]
    assert all(m.provider == "sse" for m in models)
    assert report.ready and report.provider("sse").status == "ok"


# --------------------------------------------------------------------------------------
# streams


def test_stream_async_with_and_await(make_async, server):
    server.enqueue(Reply.chat_stream(text="one two three", include_usage=True))
    server.enqueue(Reply.chat_stream(text="four five"))

    async def main() -> tuple[list[str], chatcore.AsyncChatStream, chatcore.AsyncChatStream]:
        async with make_async() as client:
            texts = []
            async with client.stream(MODEL, "Hi") as first:
                async for chunk in first:
                    texts.append(chunk.text or "")
            second = await client.stream(MODEL, "Hi again")
            await second.read()
            await second.aclose()
            return texts, first, second

    texts, first, second = run(main())
    assert "".join(texts) == "one two three"
    assert first.response is not None and first.response.text == "one two three"
    assert first.response.usage is not None
    assert first.request_id and first.headers
    assert second.text == "four five"
    assert server.requests[0].header("accept") == "text/event-stream"
    assert server.requests[0].json()["stream"] is True


def test_stream_is_retried_until_its_first_chunk(make_async, server):
    server.enqueue(Reply.error(503, "busy"), Reply.chat_stream(text="after a retry"))

    async def main() -> chatcore.AsyncChatStream:
        async with make_async() as client:
            stream = await client.stream(MODEL, "Hi")
            await stream.read()
            return stream

    stream = run(main())
    assert stream.text == "after a retry"
    assert stream.attempts == 2
    assert len(server.requests) == 2


def test_stream_dying_mid_way_is_a_stream_error_with_the_partial_text(make_async, server):
    """The events sent before the cut reach the caller, then StreamError (never a retry),
    even when the cut comes in the same read as the events (aiohttp raises a broken
    body's error before handing out what it holds: the transport hands it out first)."""

    async def once() -> str:
        server.enqueue(Reply.chat_stream(text="alpha beta gamma delta", die_after=3))
        async with make_async(max_retries=0) as client:
            async with client.stream(MODEL, "Hi") as stream:
                async for _ in stream:
                    pass
            return stream.text

    for _ in range(10):
        with pytest.raises(StreamError) as info:
            run(once())
        assert info.value.partial_text == "alpha beta"
    assert len(server.requests) == 10  # never retried after the first chunk


def test_an_unawaited_stream_cannot_be_iterated(make_async):
    async def main() -> None:
        async with make_async() as client:
            async for _ in client.stream(MODEL, "Hi"):  # type: ignore[attr-defined]
                pass

    with pytest.raises(TypeError, match="async with"):
        run(main())


# --------------------------------------------------------------------------------------
# cache, limiter, metrics


def test_cache_serves_chats_and_replays_streams(make_async, server):
    server.enqueue(Reply.chat_stream(text="cached words"))

    async def main() -> tuple[Any, ...]:
        async with make_async(cache=True) as client:
            streamed = await client.stream(MODEL, "same")
            await streamed.read()
            replay = await client.stream(MODEL, "same")
            chunks = [c async for c in replay]
            chat = await client.chat(MODEL, "same")
            return streamed, replay, chunks, chat, client.cache.stats()

    _streamed, replay, chunks, chat, stats = run(main())
    assert replay.cached and replay.text == "cached words" and chunks
    assert chat.cached and chat.text == "cached words"
    assert len(server.requests) == 1
    assert stats.hits == 2


def test_the_limiter_holds_many_tasks_to_the_limit(make_async, server):
    rate = 40.0
    calls = 30

    async def main() -> list[float]:
        async with make_async(rate_limits={"sse": {"rps": rate, "burst": 1}}) as client:
            await asyncio.gather(*(client.chat(MODEL, f"q{i}") for i in range(calls)))
            return [r.time for r in server.requests]

    arrivals = sorted(run(main()))
    elapsed = arrivals[-1] - arrivals[0]
    # burst 1: the first goes at once, each next one 1/rate later (never above the rate)
    assert elapsed >= (calls - 1) / rate * 0.95
    assert (calls - 1) / elapsed <= rate * 1.05
    assert len(server.requests) == calls


def test_the_limiter_never_blocks_the_event_loop(make_async, server):
    async def main() -> tuple[int, int]:
        async with make_async(rate_limits={"sse": {"rps": 5, "burst": 1}}) as client:
            beats = 0

            async def heartbeat() -> None:
                nonlocal beats
                while True:
                    beats += 1
                    await asyncio.sleep(0.01)

            beat = asyncio.ensure_future(heartbeat())
            await asyncio.gather(*(client.chat(MODEL, f"q{i}") for i in range(3)))
            beat.cancel()
            return beats, client.rate_limiter.waits

    beats, waits = run(main())
    assert waits == 2
    assert beats >= 20  # ~0.4 s of waiting at 10 ms a beat


def test_the_limiter_refuses_past_max_wait_with_timeout_total(make_async, server):
    async def main() -> None:
        async with make_async(rate_limits={"sse": {"rpm": 1}}) as client:
            await client.chat(MODEL, "one")
            await client.chat(MODEL, "two", timeout_total=0.2)

    with pytest.raises(RateLimitExceeded):
        run(main())
    assert len(server.requests) == 1


def test_metrics_record_requests_and_attempts(make_async, server):
    server.enqueue(Reply.error(500, "down"))

    async def main() -> dict[str, Any]:
        async with make_async() as client:
            await client.chat(MODEL, "Hello")
            stream = await client.stream(MODEL, "Hi")
            await stream.read()
            return client.metrics.snapshot()

    snapshot = run(main())
    totals = snapshot["totals"]
    assert totals["requests"] == 2
    assert totals["errors"] == 0
    assert totals["retries"] == 1


# --------------------------------------------------------------------------------------
# cancellation and lifecycle


def test_a_cancelled_call_releases_its_grant_and_is_recorded(make_async, server):
    server.enqueue(Reply.default(delay=5.0))

    async def main() -> chatcore.AsyncClient:
        client = make_async(rate_limits={"sse": {"tpm": 100_000}})
        task = asyncio.ensure_future(client.chat(MODEL, "slow"))
        await asyncio.sleep(0.3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await client.aclose()
        return client

    started = time.monotonic()
    client = run(main())
    assert time.monotonic() - started < 3
    status = client.rate_limiter.status()
    assert status["sse"]["tokens_available"] == pytest.approx(100_000, abs=1)
    events = client.metrics.snapshot()
    assert events["totals"]["errors"] == 1


def test_asyncio_timeout_cancels_a_stream_and_releases_it(make_async, server):
    server.enqueue(Reply.chat_stream(text="a b c d e f g h", delay_between=0.5))

    async def main() -> tuple[str, int]:
        async with make_async() as client:
            stream = await client.stream(MODEL, "Hi")
            got: list[str] = []

            async def read() -> None:
                timeout = asyncio.timeout if hasattr(asyncio, "timeout") else _timeout
                async with timeout(0.8):
                    async for chunk in stream:
                        got.append(chunk.text or "")

            with pytest.raises((TimeoutError, asyncio.TimeoutError)):
                await read()
            return "".join(got), stream.chunk_count

    text, count = run(main())
    assert count >= 1
    assert text


class _timeout:  # asyncio.timeout for Python 3.10
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    async def __aenter__(self) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handle = asyncio.get_running_loop().call_later(self.seconds, task.cancel)

    async def __aexit__(self, kind: Any, exc: Any, tb: Any) -> None:
        self._handle.cancel()
        if kind is asyncio.CancelledError:
            raise TimeoutError from exc


def test_no_unclosed_session_warning_after_close_and_gc(make_async, server):
    async def main() -> None:
        client = make_async()
        await client.chat(MODEL, "one")
        server.enqueue(Reply.chat_stream(text="x y"))
        stream = await client.stream(MODEL, "two")
        async for _ in stream:
            break  # abandoned mid-way
        await stream.aclose()
        await client.aclose()

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run(main())
        gc.collect()
    unclosed = [w for w in caught if "nclosed" in str(w.message)]
    assert unclosed == []


def test_one_client_is_bound_to_one_running_loop(make_async, server):
    client = make_async()
    ready = threading.Event()
    stop = threading.Event()
    other = asyncio.new_event_loop()

    def serve_other() -> None:
        asyncio.set_event_loop(other)
        other.run_until_complete(client.chat(MODEL, "on loop A"))
        ready.set()
        other.run_until_complete(asyncio.to_thread(stop.wait, 10))

    thread = threading.Thread(target=serve_other)
    thread.start()
    try:
        assert ready.wait(10)
        with pytest.raises(ConfigurationError, match="event loop"):
            run(client.chat(MODEL, "on loop B"))
    finally:
        stop.set()
        thread.join(10)
        other.run_until_complete(client.aclose())
        other.close()


def test_a_closed_client_may_be_used_on_another_loop(make_async, server):
    client = make_async()

    async def use(text: str) -> str:
        async with client:
            return (await client.chat(MODEL, text)).text

    assert run(use("first run"))
    assert run(use("second run"))
    assert len(server.requests) == 2


def test_a_client_left_open_on_an_ended_loop_says_so(make_async, server):
    client = make_async()
    loop = asyncio.new_event_loop()
    try:
        assert loop.run_until_complete(client.chat(MODEL, "first")).text
        with pytest.raises(ConfigurationError, match="aclose"):
            run(client.chat(MODEL, "second"))
    finally:
        loop.run_until_complete(client.aclose())
        loop.close()


# --------------------------------------------------------------------------------------
# 0.1 providers, tools, structured output


def test_a_0_1_provider_runs_in_worker_threads(make_async, server):
    async def main() -> tuple[chatcore.ChatResponse, str, list[Any]]:
        async with make_async() as client:
            assert not client.provider("old").translates
            response = await client.chat("old:gpt-4o-mini", "Hello")
            server.enqueue(Reply.chat_stream(text="old style"))
            stream = await client.stream("old:gpt-4o-mini", "Hi")
            await stream.read()
            models = await client.list_models("old")
            return response, stream.text, models

    response, text, models = run(main())
    assert response.text and response.provider == "old"
    assert text == "old style"
    assert models


def test_run_tools_awaits_async_tools_and_threads_plain_ones(make_async, server):
    calls: list[str] = []

    async def weather(city: str) -> str:
        """The weather in a city."""
        await asyncio.sleep(0)
        calls.append(f"weather:{city}")
        return "sunny"

    def clock(zone: str) -> str:
        """The time in a zone."""
        calls.append(f"clock:{zone}:{threading.current_thread() is threading.main_thread()}")
        return "noon"

    server.enqueue(
        Reply.chat(
            tool_calls=[
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "weather", "arguments": '{"city": "Oslo"}'},
                },
                {
                    "id": "c2",
                    "type": "function",
                    "function": {"name": "clock", "arguments": '{"zone": "UTC"}'},
                },
            ]
        ),
        Reply.chat(text="It is sunny at noon."),
    )

    async def main() -> Any:
        async with make_async() as client:
            return await client.run_tools(MODEL, "Weather and time?", [weather, clock])

    result = run(main())
    assert result.completed
    assert result.response.text == "It is sunny at noon."
    assert calls == ["weather:Oslo", "clock:UTC:False"]
    sent = server.requests[1].json()["messages"]
    assert [m["role"] for m in sent][-2:] == ["tool", "tool"]


@attrs.frozen
class City:
    name: str
    population: int


def test_response_model_parses_the_answer(make_async, server):
    server.enqueue(Reply.chat(text='{"name": "Oslo", "population": 700000}'))

    async def main() -> chatcore.ChatResponse:
        async with make_async() as client:
            return await client.chat(MODEL, "Describe Oslo", response_model=City)

    response = run(main())
    assert response.parsed == City("Oslo", 700000)
    assert server.last_request.json()["response_format"]["type"] == "json_schema"


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_bad_answer_settles_the_grant_and_is_recorded_as_an_attempt(make_async, server, kind):
    """parse_chat failing on a 2xx body is part of the attempt: the limiter gets its
    tokens back and the attempt is counted (it once leaked the grant)."""
    server.enqueue(Reply.raw(b'{"not": "a chat"}', content_type="application/json"))
    limits = {"sse": {"tpm": 10_000}}

    async def go(client: Any) -> None:
        async with client:
            await client.chat(MODEL, "Hello")

    if kind == "async":
        client = make_async(rate_limits=limits)
        with pytest.raises(chatcore.ResponseDecodeError):
            run(go(client))
    else:
        host = PluginHost(load_entry_points=False, plugins=[AsyncPlugin()], environ={})
        client = chatcore.Client(
            plugin_host=host,
            providers={"sse": {"api_key": TEST_KEY, "base_url": server.base_url}},
            environ={},
            rate_limits=limits,
        )
        with pytest.raises(chatcore.ResponseDecodeError):
            client.chat(MODEL, "Hello")
        client.close()
    assert client.rate_limiter.status()["sse"]["tokens_available"] == pytest.approx(10_000, abs=1)
    stats = client.metrics.snapshot()["providers"]["sse"]
    assert stats["attempts"]["errors"] == 1


def test_a_sync_client_runs_an_async_tool_from_inside_a_running_loop(make_client, server):
    async def double(x: int) -> int:
        """Twice x."""
        await asyncio.sleep(0)
        return 2 * x

    server.enqueue(
        Reply.chat(tool_calls=[{"name": "double", "arguments": {"x": 4}}]),
        Reply.chat(text="8"),
    )
    client = make_client()

    async def inside_a_loop() -> Any:
        return client.run_tools("wire:m", "double 4", [double])  # sync code called from async

    result = run(inside_a_loop())
    assert result.calls[0].error is None
    assert result.calls[0].result == 8


@pytest.mark.timing
def test_token_limits_hold_under_many_concurrent_tasks(make_async, server):
    """tpm under 24 tasks: the tokens the server reports as used, over the run, never pass
    what the bucket can grant (its rate over the time plus one burst), within 5 %."""
    tpm, burst = 30_000.0, 600.0  # 500 tokens/s
    calls = 24

    async def main() -> list[chatcore.ChatResponse]:
        limits = {"sse": {"tpm": tpm, "token_burst": burst}}
        async with make_async(rate_limits=limits) as client:
            return list(
                await asyncio.gather(
                    *(client.chat(MODEL, "x" * 200, max_tokens=50) for _ in range(calls))
                )
            )

    responses = run(main())
    arrivals = sorted(r.time for r in server.requests)
    elapsed = arrivals[-1] - arrivals[0]
    used = sum(r.usage.total_tokens for r in responses if r.usage is not None)
    assert used > burst * 2  # the limit was what paced the run
    assert used - burst <= tpm / 60.0 * elapsed * 1.05
    assert len(server.requests) == calls


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_key_split_across_stream_chunks_is_masked_in_the_assembled_answer(
    make_async, server, kind
):
    half = len(TEST_KEY) // 2
    events = [
        {"choices": [{"index": 0, "delta": {"role": "assistant", "content": "key: "}}]},
        {"choices": [{"index": 0, "delta": {"content": TEST_KEY[:half]}}]},
        {"choices": [{"index": 0, "delta": {"content": TEST_KEY[half:]}, "finish_reason": "stop"}]},
    ]
    server.enqueue(Reply.sse(events))

    async def go() -> tuple[str, str]:
        async with make_async() as client:
            stream = await client.stream(MODEL, "Hi")
            response = await stream.read()
            return stream.text, response.text

    if kind == "async":
        text, answer = run(go())
    else:
        host = PluginHost(load_entry_points=False, plugins=[AsyncPlugin()], environ={})
        with chatcore.Client(
            plugin_host=host,
            providers={"sse": {"api_key": TEST_KEY, "base_url": server.base_url}},
            environ={},
        ) as client:
            stream = client.stream(MODEL, "Hi")
            answer = stream.read().text
            text = stream.text
    assert TEST_KEY not in text and TEST_KEY not in answer
    assert text.startswith("key: ")
