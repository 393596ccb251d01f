"""``Client.stream`` over real sockets, with an in-test streaming provider (``sse``): assembly
of text and tool calls, retries only before the first chunk, ``StreamError.partial_text``,
the inter-chunk timeout, connection release, metrics, caching and rate limiting."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import chatcore
from chatcore._plugins import PluginHost
from chatcore._stream import ChatStream, StreamAssembler, chunks_from_response
from chatcore.exceptions import (
    AuthenticationError,
    RateLimitExceeded,
    ServiceUnavailableError,
    StreamError,
    ValidationError,
)
from chatcore.models import ChatChunk, ChatResponse
from chatcore.provider import Option, ProviderSpec
from chatcore.testing.server import Reply, StandInServer

from .conftest import TEST_KEY, WirePlugin, WireProvider

MODEL = "sse:gpt-4o-mini"


#: The conftest ``wire`` provider class (chatcore.testing's, which streams), offered under a
#: spec that declares "stream".
StreamingWireProvider = WireProvider


class StreamingPlugin:
    @chatcore.hookimpl
    def chatcore_providers(self) -> list[ProviderSpec]:
        return [
            ProviderSpec(
                name="sse",
                factory=StreamingWireProvider,
                options={
                    "api_key": Option(secret=True, required=False),
                    "base_url": Option(default="http://127.0.0.1:9/v1"),
                },
                capabilities={"chat", "stream", "models"},
            )
        ]


@pytest.fixture
def make_stream_client(server: StandInServer) -> Iterator[Any]:
    """``make(**client_kwargs, sse={...provider options})``: a client with the streaming
    ``sse`` provider and the non-streaming ``wire`` one, retries that never sleep."""
    clients: list[chatcore.Client] = []

    def make(*, sse: dict[str, Any] | None = None, **kwargs: Any) -> chatcore.Client:
        host = PluginHost(
            load_entry_points=False, plugins=[StreamingPlugin(), WirePlugin()], environ={}
        )
        options = {"api_key": TEST_KEY, "base_url": server.base_url, **(sse or {})}
        kwargs.setdefault("retry", chatcore.RetryPolicy(sleep=lambda _s: None))
        client = chatcore.Client(
            plugin_host=host,
            providers={"sse": options, "wire": {"api_key": TEST_KEY, "base_url": server.base_url}},
            environ={},
            **kwargs,
        )
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def client(make_stream_client: Any) -> chatcore.Client:
    return make_stream_client()


def chunk(
    *,
    text: str | None = None,
    index: int = 0,
    finish: str | None = None,
    role: str | None = None,
    calls: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    delta: dict[str, Any] = {}
    if role is not None:
        delta["role"] = role
    if text is not None:
        delta["content"] = text
    if calls is not None:
        delta["tool_calls"] = calls
    return {
        "id": "chatcmpl-hand",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "gpt-4o-mini",
        "choices": [{"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }


def usage_chunk(prompt: int = 4, completion: int = 6) -> dict[str, Any]:
    usage = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    return {**chunk(), "choices": [], "usage": usage}


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


# --------------------------------------------------------------------------------------
# Assembly


def test_text_is_assembled_and_response_is_set_after_exhaustion(client, server):
    stream = client.stream(MODEL, "stream me", max_tokens=50)
    assert isinstance(stream, ChatStream)
    assert stream.response is None
    pieces = []
    for piece in stream:
        assert isinstance(piece, ChatChunk)
        pieces.append(piece.text)
    text = "".join(pieces)
    assert text == "Hello from the chatcore stand-in server. You said: stream me"
    assert stream.text == text
    assert len(pieces) > 5  # word by word
    response = stream.response
    assert isinstance(response, ChatResponse)
    assert response.text == text
    assert response.choices[0].finish_reason == "stop"
    assert response.choices[0].message.role == "assistant"
    assert response.id.startswith("chatcmpl-")
    assert response.model == "gpt-4o-mini"
    assert response.provider == "sse"
    assert response.usage is not None and response.usage.completion_tokens > 0
    assert response.usage.total_tokens == (
        response.usage.prompt_tokens + response.usage.completion_tokens
    )
    assert response.request_id and response.request_id.startswith("req_")
    assert response.request_id == stream.request_id
    assert response.attempts == 1 and response.cached is False
    assert stream.time_to_first_token is not None and stream.time_to_first_token >= 0
    sent = server.last_request.json()
    assert sent["stream"] is True
    assert sent["max_tokens"] == 50


def test_first_chunk_carries_request_id_and_headers(client):
    stream = client.stream(MODEL, "hi")
    first = next(stream)
    assert first.request_id and first.request_id.startswith("req_")
    assert first.headers is not None and "text/event-stream" in first.headers["content-type"]
    assert stream.headers is first.headers
    stream.close()


def test_read_returns_the_response(client):
    response = client.stream(MODEL, "read it").read()
    assert response.text.endswith("You said: read it")


def test_context_manager_closes(client):
    with client.stream(MODEL, "ctx") as stream:
        first = next(stream)
        second = next(stream)
    assert first.text == "" and second.text == "Hello"
    assert stream.text == "Hello"
    assert list(stream) == []  # closed: nothing more
    with pytest.raises(StreamError) as info:
        stream.read()
    assert info.value.partial_text == "Hello"
    stream.close()  # idempotent


def test_context_manager_full_iteration(client):
    with client.stream(MODEL, "all") as stream:
        text = "".join(c.text for c in stream)
    assert text == stream.text == stream.response.text


def test_interleaved_tool_calls_and_choices(client, server):
    events = [
        chunk(role="assistant", index=0),
        chunk(role="assistant", index=1, text=""),
        chunk(
            index=0,
            calls=[{"index": 0, "id": "call_a", "type": "function", "function": {"name": "get_w"}}],
        ),
        chunk(index=1, text="Choice "),
        chunk(
            index=0,
            calls=[
                {
                    "index": 1,
                    "id": "call_b",
                    "type": "function",
                    "function": {"name": "get_t", "arguments": ""},
                }
            ],
        ),
        chunk(index=0, calls=[{"index": 0, "function": {"arguments": '{"city"'}}]),
        chunk(index=1, text="one"),
        chunk(index=0, calls=[{"index": 1, "function": {"arguments": '{"tz":'}}]),
        chunk(index=0, calls=[{"index": 0, "function": {"arguments": ': "Paris"}'}}]),
        chunk(index=0, calls=[{"index": 1, "function": {"arguments": ' "UTC"}'}}]),
        chunk(index=1, finish="stop"),
        chunk(index=0, finish="tool_calls"),
        usage_chunk(),
    ]
    server.enqueue(Reply.sse(events))
    stream = client.stream(MODEL, "tools please", n=2)
    deltas = [d for c in stream for d in c.tool_call_deltas]
    assert [d["index"] for d in deltas] == [0, 1, 0, 1, 0, 1]
    response = stream.response
    assert response is not None
    first, second = response.choices
    assert first.finish_reason == "tool_calls"
    assert first.message.content is None
    calls = first.message.tool_calls
    assert [(c.id, c.function.name, c.function.arguments) for c in calls] == [
        ("call_a", "get_w", '{"city": "Paris"}'),
        ("call_b", "get_t", '{"tz": "UTC"}'),
    ]
    assert json.loads(calls[0].function.arguments) == {"city": "Paris"}
    assert all(c.type == "function" for c in calls)
    assert second.index == 1
    assert second.finish_reason == "stop"
    assert second.message.content == "Choice one"
    assert second.message.tool_calls is None
    assert stream.text == ""  # .text is the first choice's
    assert response.usage is not None and response.usage.total_tokens == 10


def test_tool_calls_from_the_stand_in(client, server):
    server.enqueue(
        Reply.chat_stream(
            tool_calls=[
                {"name": "lookup", "arguments": {"query": "a fairly long argument string", "n": 3}},
                {"name": "other", "arguments": "{}"},
            ]
        )
    )
    response = client.stream(MODEL, "use tools").read()
    calls = response.choices[0].message.tool_calls
    assert [c.function.name for c in calls] == ["lookup", "other"]
    assert json.loads(calls[0].function.arguments) == {
        "query": "a fairly long argument string",
        "n": 3,
    }
    assert calls[1].function.arguments == "{}"
    assert all(c.id.startswith("call_") for c in calls)
    assert response.choices[0].finish_reason == "tool_calls"


def test_n_choices_from_the_stand_in(client):
    response = client.stream(MODEL, "twice", n=3).read()
    assert [c.index for c in response.choices] == [0, 1, 2]
    assert len({c.message.content for c in response.choices}) == 1
    assert response.choices[2].message.content.endswith("You said: twice")


def test_assembler_and_replay_round_trip():
    assembler = StreamAssembler()
    for raw in (
        chunk(role="assistant", text="a"),
        chunk(text="b", calls=[{"index": 0, "id": "c1", "function": {"name": "f"}}]),
        chunk(calls=[{"index": 0, "function": {"arguments": {"x": 1}}}]),  # object at once
        chunk(finish="tool_calls"),
    ):
        assembler.add(ChatChunk(id=raw["id"], model=raw["model"], choices=raw["choices"]))
    response = assembler.response(provider="p")
    assert response.text == "ab"
    assert response.choices[0].message.tool_calls[0].function.arguments == '{"x": 1}'
    assert assembler.finished
    again = StreamAssembler()
    for replayed in chunks_from_response(response):
        again.add(replayed)
    assert again.response(provider="p") == response


_args = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=20)


@st.composite
def _interleaved_calls(draw: st.DrawFn) -> tuple[list[tuple[str, str]], list[ChatChunk]]:
    """Tool calls whose argument strings are cut into pieces, the fragments of all calls
    interleaved in any order that keeps each call's own order."""
    calls = draw(
        st.lists(st.tuples(st.from_regex(r"[a-z_]{1,8}", fullmatch=True), _args), max_size=4)
    )
    queues: list[list[dict[str, Any]]] = []
    for k, (name, args) in enumerate(calls):
        cuts = sorted(draw(st.lists(st.integers(0, len(args)), max_size=4)))
        pieces = [args[a:b] for a, b in zip([0, *cuts], [*cuts, len(args)], strict=True)]
        opening = {"index": k, "id": f"call_{k}", "type": "function", "function": {"name": name}}
        queues.append([opening] + [{"index": k, "function": {"arguments": p}} for p in pieces])
    fragments = []
    while any(queues):
        k = draw(st.sampled_from([i for i, q in enumerate(queues) if q]))
        fragments.append(queues[k].pop(0))
    chunks = [
        ChatChunk(id="c", model="m", choices=[{"index": 0, "delta": {"tool_calls": [f]}}])
        for f in fragments
    ]
    return calls, chunks


@settings(max_examples=200, deadline=None)
@given(_interleaved_calls())
def test_tool_call_fragments_assemble_in_any_interleaving(case):
    calls, chunks = case
    assembler = StreamAssembler()
    for piece in chunks:
        assembler.add(piece)
    message = assembler.response(provider="p").choices[0].message if calls else None
    if not calls:
        assert assembler.response(provider="p").choices == ()
        return
    got = [(c.id, c.function.name, c.function.arguments) for c in message.tool_calls]
    assert got == [(f"call_{k}", name, args) for k, (name, args) in enumerate(calls)]


# --------------------------------------------------------------------------------------
# Retries and failures


def test_retried_before_the_first_chunk(client, server):
    server.enqueue(Reply.error(503, "overloaded, try again"), Reply.default())
    stream = client.stream(MODEL, "again")
    assert stream.attempts == 2
    assert stream.read().attempts == 2
    assert len(server.requests) == 2
    assert client.retries == 1


def test_stream_cut_before_the_first_chunk_is_retried(client, server):
    server.enqueue(Reply.sse([chunk(text="lost")], die_after=0), Reply.default())
    stream = client.stream(MODEL, "cut early")
    assert stream.attempts == 2
    assert stream.read().text.endswith("cut early")
    assert len(server.requests) == 2


def test_in_band_error_as_first_event_is_retried(client, server):
    error = {"error": {"message": "temporary", "type": "server_error", "code": None}}
    server.enqueue(Reply.sse([error], done=False), Reply.default())
    assert client.stream(MODEL, "x").read().attempts == 2
    assert len(server.requests) == 2


def test_retries_exhausted_before_the_first_chunk(make_stream_client, server):
    client = make_stream_client(max_retries=1)
    server.enqueue(Reply.error(503, "down"), Reply.error(503, "still down"))
    with pytest.raises(ServiceUnavailableError) as info:
        client.stream(MODEL, "x")
    assert info.value.attempts == 2
    assert len(server.requests) == 2


def test_authentication_error_is_raised_by_stream_with_no_key(make_stream_client, server):
    client = make_stream_client(sse={"api_key": "sk-wrongSECRETkey00000000000000"})
    with pytest.raises(AuthenticationError) as info:
        client.stream(MODEL, "x")
    assert "sk-wrongSECRETkey00000000000000" not in str(info.value)
    assert "sk-wrongSECRETkey00000000000000" not in repr(info.value)
    assert len(server.requests) == 1


@pytest.mark.parametrize("die_after", [1, 2, 3])
def test_stream_dying_mid_way_is_a_stream_error_not_retried(client, server, die_after):
    events = [chunk(role="assistant", text="One"), chunk(text=" two"), chunk(text=" three")]
    events += [chunk(finish="stop"), usage_chunk()]
    server.enqueue(Reply.sse(events, die_after=die_after))
    stream = client.stream(MODEL, "die")
    received: list[str] = []

    def consume() -> None:
        for piece in stream:
            received.append(piece.text)

    with pytest.raises(StreamError) as info:
        consume()
    assert len(received) == die_after
    assert info.value.partial_text == "".join(received) == stream.text
    assert info.value.provider == "sse"
    assert info.value.attempts == 1
    assert stream.response is None
    assert len(server.requests) == 1


def test_stream_error_after_a_retry_counts_the_attempts(client, server):
    server.enqueue(Reply.error(503, "busy"), Reply.chat_stream("a b c d", die_after=2))
    stream = client.stream(MODEL, "x")
    assert stream.attempts == 2
    with pytest.raises(StreamError) as info:
        stream.read()
    assert info.value.attempts == 2
    assert info.value.partial_text == "a"
    assert len(server.requests) == 2


def test_stream_without_done_is_a_stream_error(client, server):
    server.enqueue(
        Reply.sse([chunk(text="Par"), chunk(text="tial"), chunk(finish="stop")], done=False)
    )
    stream = client.stream(MODEL, "no done")
    with pytest.raises(StreamError) as info:
        stream.read()
    assert info.value.partial_text == "Partial"
    assert "[DONE]" in info.value.message
    assert len(server.requests) == 1


def test_scripted_chat_stream_dying(client, server):
    server.enqueue(Reply.chat_stream("alpha beta gamma delta", die_after=3))
    stream = client.stream(MODEL, "x")
    with pytest.raises(StreamError) as info:
        stream.read()
    assert info.value.partial_text == "alpha beta"  # role chunk, "alpha", " beta"
    assert len(server.requests) == 1


def test_retryable_in_band_error_mid_stream_is_not_retried(client, server):
    error = {"error": {"message": "The server had an error", "type": "server_error"}}
    server.enqueue(Reply.sse([chunk(text="Half"), error]), Reply.default())
    stream = client.stream(MODEL, "x")
    with pytest.raises(StreamError) as info:
        stream.read()
    assert info.value.should_retry is True  # it says so, but the caller already has chunks
    assert info.value.partial_text == "Half"
    assert "The server had an error" in str(info.value)
    assert len(server.requests) == 1


def test_inter_chunk_timeout(make_stream_client, server):
    client = make_stream_client(sse={"chunk_timeout": 0.2})
    server.enqueue(
        Reply.sse(
            [chunk(text="quick"), chunk(text=" slow"), chunk(finish="stop")], delay_between=1.0
        )
    )
    started = time.monotonic()
    stream = client.stream(MODEL, "x")
    assert next(stream).text == "quick"
    with pytest.raises(StreamError) as info:
        next(stream)
    assert time.monotonic() - started < 0.9
    assert info.value.partial_text == "quick"
    assert "timed out" in str(info.value).lower()
    assert len(server.requests) == 1


def test_chunk_timeout_is_not_hit_by_a_steady_stream(make_stream_client, server):
    client = make_stream_client(sse={"chunk_timeout": 0.5})
    server.enqueue(
        Reply.sse([chunk(text="a"), chunk(text="b"), chunk(text="c")], delay_between=0.1)
    )
    assert client.stream(MODEL, "x").read().text == "abc"


def test_empty_stream_ends_cleanly(client, server):
    server.enqueue(Reply.sse([]))
    stream = client.stream(MODEL, "x")
    assert list(stream) == []
    assert stream.text == ""
    assert stream.response is not None and stream.response.choices == ()


# --------------------------------------------------------------------------------------
# Connection release


def test_abandoned_streams_release_their_connections(client, server):
    def abandon(i: int) -> None:
        mode = i % 3
        if mode == 0:
            for _piece in client.stream(MODEL, f"abandon {i}"):
                break  # dropped: released by the garbage collector
        elif mode == 1:
            stream = client.stream(MODEL, f"abandon {i}")
            next(stream)
            stream.close()
        else:
            with client.stream(MODEL, f"abandon {i}") as stream:
                next(stream)

    for i in range(20):  # warm up: pools, server threads
        abandon(i)
    baseline = open_fds()
    for i in range(1000):
        abandon(i)
    deadline = time.monotonic() + 1.0
    while open_fds() > baseline + 16 and time.monotonic() < deadline:
        time.sleep(0.05)  # the server side may still be closing its ends
    assert open_fds() <= baseline + 16, f"{open_fds()} fds open, {baseline} before"
    assert len(server.requests) == 1020
    assert client.stream(MODEL, "still works").read().text.endswith("still works")
    assert client.chat(MODEL, "chat too").text.endswith("chat too")


def _new_connection_logs(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "urllib3.connectionpool"
        and ("Starting new" in r.getMessage() or "Resetting dropped" in r.getMessage())
    ]


def test_chat_calls_reuse_their_connection(client, caplog):
    client.chat(MODEL, "warm up")
    with caplog.at_level(logging.DEBUG, logger="urllib3.connectionpool"):
        client.chat(MODEL, "again")
    assert _new_connection_logs(caplog) == []


def test_completed_stream_returns_its_connection_to_the_pool(client, caplog):
    client.chat(MODEL, "warm up")
    client.stream(MODEL, "complete me").read()
    with caplog.at_level(logging.DEBUG, logger="urllib3.connectionpool"):
        client.chat(MODEL, "after the stream")
    assert _new_connection_logs(caplog) == []


def test_close_before_reading_releases(client):
    before = open_fds()
    for _ in range(50):
        client.stream(MODEL, "x").close()
    assert open_fds() <= before + 8


# --------------------------------------------------------------------------------------
# Metrics


def test_metrics_record_time_to_first_token(client):
    client.stream(MODEL, "measure me").read()
    stats = client.metrics.snapshot()["providers"]["sse"]["models"]["gpt-4o-mini"]
    assert stats["requests"] == 1 and stats["ok"] == 1
    ttft = stats["time_to_first_token_seconds"]
    assert ttft["count"] == 1
    assert 0 <= ttft["max"] < 5
    assert stats["tokens"]["completion"] > 0
    assert stats["tokens_per_second"]["count"] in (0, 1)  # 1 unless generation took 0 s
    assert stats["attempts"]["count"] == 1


def test_metrics_record_a_failed_stream(client, server):
    server.enqueue(Reply.sse([chunk(text="a"), chunk(text="b")], die_after=1))
    with pytest.raises(StreamError):
        client.stream(MODEL, "x").read()
    stats = client.metrics.snapshot()["providers"]["sse"]
    assert stats["errors"] == 1
    assert stats["errors_by_type"] == {"StreamError": 1}


def test_metrics_count_retried_attempts(client, server):
    server.enqueue(Reply.error(503, "busy"))
    client.stream(MODEL, "x").read()
    stats = client.metrics.snapshot()["providers"]["sse"]
    assert stats["requests"] == 1
    assert stats["attempts"]["count"] == 2
    assert stats["attempts"]["errors_by_type"] == {"ServiceUnavailableError": 1}


# --------------------------------------------------------------------------------------
# Cache


def test_completed_stream_is_cached_and_replayed_as_a_stream(client, server):
    first = client.stream(MODEL, "cache me", cache=True)
    assert first.cached is False
    text = "".join(c.text for c in first)
    second = client.stream(MODEL, "cache me", cache=True)
    assert second.cached is True
    assert second.attempts == 0
    replayed = list(second)
    assert replayed and all(isinstance(c, ChatChunk) for c in replayed)
    assert "".join(c.text for c in replayed) == text == second.text
    assert second.response is not None and second.response.cached is True
    assert second.response.usage == first.response.usage
    assert second.response.choices[0].finish_reason == "stop"
    assert second.request_id == first.request_id
    assert len(server.requests) == 1
    snapshot = client.metrics.snapshot()["totals"]
    assert snapshot["cache"]["hits"] == 1


def test_cached_tool_call_stream_is_replayed(client, server):
    server.enqueue(Reply.chat_stream(tool_calls=[{"name": "f", "arguments": {"a": 1}}]))
    first = client.stream(MODEL, "tools", cache=True).read()
    second = client.stream(MODEL, "tools", cache=True).read()
    assert second.cached is True
    assert second.choices[0].message.tool_calls == first.choices[0].message.tool_calls
    assert len(server.requests) == 1


def test_completed_stream_serves_a_later_chat(client, server):
    streamed = client.stream(MODEL, "shared key", cache=True).read()
    answer = client.chat(MODEL, "shared key", cache=True)
    assert answer.cached is True
    assert answer.text == streamed.text
    assert len(server.requests) == 1


def test_cached_chat_answer_is_replayed_to_a_stream(client, server):
    answer = client.chat(MODEL, "chat first", cache=True)
    stream = client.stream(MODEL, "chat first", cache=True)
    assert stream.cached is True
    assert "".join(c.text for c in stream) == answer.text
    assert len(server.requests) == 1


def test_stream_closed_early_is_not_cached(client, server):
    stream = client.stream(MODEL, "close early", cache=True)
    next(stream)
    next(stream)
    stream.close()
    again = client.stream(MODEL, "close early", cache=True)
    assert again.cached is False
    assert again.read().text.endswith("close early")
    assert len(server.requests) == 2


def test_failed_stream_is_not_cached(client, server):
    server.enqueue(Reply.chat_stream("will fail", die_after=2))
    with pytest.raises(StreamError):
        client.stream(MODEL, "fails", cache=True).read()
    again = client.stream(MODEL, "fails", cache=True)
    assert again.cached is False
    again.read()
    assert len(server.requests) == 2


def test_no_cache_by_default(client, server):
    client.stream(MODEL, "no cache").read()
    assert client.stream(MODEL, "no cache").cached is False
    assert len(server.requests) == 2


# --------------------------------------------------------------------------------------
# Validation and rate limits


def test_provider_without_stream_capability(client, server):
    with pytest.raises(ValidationError) as info:
        client.stream("wire:gpt-4o-mini", "x")
    assert info.value.problems[0][0] == "stream"
    assert "does not support streaming" in str(info.value)
    assert server.requests == []


def test_stream_validates_the_request_before_sending(client, server):
    with pytest.raises(ValidationError):
        client.stream(MODEL, "x", temperature=7)
    assert server.requests == []


def test_stream_parameter_is_rejected(client, server):
    with pytest.raises(ValidationError):
        client.stream(MODEL, "x", stream=False)
    assert server.requests == []


def test_stream_is_subject_to_the_rate_limiter(make_stream_client, server):
    client = make_stream_client(rate_limits={"sse": {"rps": 10, "burst": 1}})
    client.stream(MODEL, "one").read()
    started = time.monotonic()
    client.stream(MODEL, "two").read()
    assert time.monotonic() - started >= 0.05
    assert client.rate_limiter.waits == 1
    assert len(server.requests) == 2


def test_rate_limiter_refuses_a_stream_past_its_deadline(make_stream_client, server):
    client = make_stream_client(rate_limits={"sse": {"rpm": 1}})
    client.stream(MODEL, "one").read()
    with pytest.raises(RateLimitExceeded):
        client.stream(MODEL, "two", timeout_total=0.2)
    assert len(server.requests) == 1


def test_assembler_keeps_reasoning_on_the_message():
    """``delta.reasoning_content`` pieces are joined and ``delta.reasoning_details`` items
    kept in order, per choice; a stream without them leaves both ``None``."""
    block = {"type": "thinking", "thinking": "Think. Then answer.", "signature": "sig"}

    def chunk(delta: dict[str, Any], index: int = 0, finish: str | None = None) -> ChatChunk:
        choice = {"index": index, "delta": delta, "finish_reason": finish}
        return ChatChunk(id="c", model="m", choices=(choice,))

    assembler = StreamAssembler()
    for delta in (
        {"role": "assistant", "reasoning_content": "Think. "},
        {"reasoning_content": "Then answer."},
        {"reasoning_details": [block, "not a block"]},
        {"content": "Answer."},
        {"reasoning_details": [{"type": "redacted_thinking", "data": "xyz"}]},
    ):
        assembler.add(chunk(delta))
    assembler.add(chunk({"content": "other"}, index=1, finish="stop"))
    assembler.add(chunk({}, finish="stop"))
    first, second = assembler.response(provider="p").choices
    assert first.message.content == "Answer."
    assert first.message.reasoning_content == "Think. Then answer."
    assert first.message.reasoning_details == (
        block,
        {"type": "redacted_thinking", "data": "xyz"},
    )
    assert (second.message.reasoning_content, second.message.reasoning_details) == (None, None)


def test_a_replayed_stream_keeps_its_reasoning():
    """A cached stream replays the reasoning the answer carried (text and signed blocks)."""
    assembler = StreamAssembler()
    for delta in (
        {"role": "assistant", "reasoning_content": "let me "},
        {"reasoning_content": "think"},
        {"reasoning_details": [{"type": "thinking", "thinking": "let me think", "signature": "s"}]},
        {"content": "42"},
    ):
        assembler.add(ChatChunk(id="c", model="m", choices=({"index": 0, "delta": delta},)))
    response = assembler.response(provider="p")
    assert response.choices[0].message.reasoning_content == "let me think"
    again = StreamAssembler()
    for replayed in chunks_from_response(response):
        again.add(replayed)
    assert again.response(provider="p") == response
