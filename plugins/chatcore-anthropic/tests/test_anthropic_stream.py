"""Streams over real sockets, through ``Client`` and ``AsyncClient``: text, tool-use input
assembled from its JSON deltas, thinking deltas (on the chunks and on the assembled
message, sent back as they came), the usage of ``message_delta``, in-band errors before and
after the first chunk, skipped events, and event-by-event delivery."""

from __future__ import annotations

import json
import time

import pytest

from chatcore.exceptions import AuthenticationError, StreamError
from chatcore.testing.anthropic_server import anthropic_error, anthropic_events, overloaded
from chatcore.testing.server import STANDIN_NOTICE, Reply

THINKING = {"type": "enabled", "budget_tokens": 1024}


def test_a_text_stream(either, server):
    streamed = either.stream("Hello stream", max_tokens=100)
    expected = f"{STANDIN_NOTICE} You said: Hello stream"
    assert streamed.text == expected == "".join(c.text for c in streamed.chunks)
    assert len(streamed.chunks) > 5
    first, last = streamed.chunks[0], streamed.chunks[-1]
    assert first.choices[0]["delta"]["role"] == "assistant"
    assert all(c.provider == "anthropic" and c.id.startswith("msg_") for c in streamed.chunks)
    assert [c.finish_reason for c in streamed.chunks if c.finish_reason] == ["stop"]
    assert last.usage is not None and last.usage.completion_tokens > 0
    response = streamed.response
    assert response is not None and response.text == expected
    assert response.usage == last.usage
    assert streamed.request_id is not None and streamed.request_id.startswith("req_")
    sent = server.last_request
    assert sent.json()["stream"] is True
    assert sent.headers["accept"] == "text/event-stream"


def test_a_stream_cut_by_max_tokens_and_stop_sequences(either):
    assert either.stream("Hello", max_tokens=3).response.finish_reason == "length"
    cut = either.stream("Hello", stop=["stand-in"])
    assert cut.response.finish_reason == "stop"
    assert cut.text == "Hello from the chatcore "


def test_tool_use_input_is_assembled_from_json_deltas(either, server):
    server.enqueue(
        Reply.chat_stream(
            tool_calls=[
                {"name": "get_weather", "arguments": {"city": "Paris", "days": [1, 2]}},
                {"name": "get_time", "arguments": {}},
            ]
        )
    )
    streamed = either.stream("Weather and time?")
    deltas = [d for c in streamed.chunks for d in c.tool_call_deltas]
    pieces = [d["function"]["arguments"] for d in deltas if d.get("index") == 0]
    assert len([p for p in pieces if p]) >= 2  # the input came in pieces
    response = streamed.response
    assert response is not None and response.finish_reason == "tool_calls"
    weather, now = response.tool_calls
    assert weather.function.name == "get_weather"
    assert json.loads(weather.function.arguments) == {"city": "Paris", "days": [1, 2]}
    assert (now.function.name, now.function.arguments) == ("get_time", "{}")
    assert weather.id.startswith("toolu_") and weather.id != now.id


def test_thinking_deltas_reach_the_chunks_and_the_message(either, server):
    streamed = either.stream("Think first", max_tokens=3000, extra={"thinking": THINKING})
    thought = "".join(c.choices[0]["delta"].get("reasoning_content", "") for c in streamed.chunks)
    assert thought.startswith("The stand-in considers")
    message = streamed.response.message
    assert message.reasoning_content == thought
    (block,) = message.reasoning_details
    assert block["type"] == "thinking" and block["thinking"] == thought
    assert block["signature"]  # from its signature_delta
    assert streamed.response.usage.reasoning_tokens > 0
    # sent back as it came, the stand-in accepts its signature
    conversation = [
        {"role": "user", "content": "Think first"},
        message.to_dict(),
        {"role": "user", "content": "And now?"},
    ]
    follow_up = either.chat(conversation, max_tokens=3000, extra={"thinking": THINKING})
    assert follow_up.text.endswith("And now?")
    assert server.last_request.json()["messages"][1]["content"][0] == block


def test_skipped_events_and_usage_across_the_stream(either, server):
    server.enqueue(
        anthropic_events(
            [
                {
                    "type": "message_start",
                    "message": {
                        "id": "msg_x",
                        "type": "message",
                        "role": "assistant",
                        "model": "claude-haiku-4-5",
                        "content": [],
                        "stop_reason": None,
                        "usage": {
                            "input_tokens": 10,
                            "output_tokens": 1,
                            "cache_read_input_tokens": 90,
                        },
                    },
                },
                {"type": "ping"},
                {
                    "type": "content_block_start",
                    "index": 0,
                    "content_block": {"type": "text", "text": ""},
                },
                {"type": "a_new_event", "whatever": True},
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": "Hi"},
                },
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "citations_delta", "citation": {}},
                },
                {"type": "content_block_stop", "index": 0},
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "pause_turn", "stop_sequence": None},
                    "usage": {"output_tokens": 4},
                },
                {"type": "message_stop"},
            ]
        )
    )
    streamed = either.stream("Hi")
    assert streamed.text == "Hi"
    response = streamed.response
    assert response.finish_reason == "pause_turn"
    assert (response.usage.prompt_tokens, response.usage.completion_tokens) == (100, 4)
    assert response.usage.cached_tokens == 90


def _overloaded_in_band(text: str | None) -> Reply:
    start = {
        "type": "message_start",
        "message": {
            "id": "msg_o",
            "type": "message",
            "role": "assistant",
            "model": "claude-haiku-4-5",
            "content": [],
            "stop_reason": None,
            "usage": {"input_tokens": 1, "output_tokens": 1},
        },
    }
    events: list = [start]
    if text is not None:
        events.append(
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            }
        )
        events.append(
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": text},
            }
        )
    events.append({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
    return anthropic_events(events)


def test_an_in_band_error_before_the_first_chunk_is_retried(either, server, sleeps):
    server.enqueue(_overloaded_in_band(None))
    streamed = either.stream("Retry me", retries=1)
    assert streamed.text.endswith("Retry me")
    assert len(server.requests) == 2
    assert len(sleeps.delays) == 1


def test_an_in_band_error_after_the_first_chunk_keeps_the_partial_text(either, server):
    server.enqueue(_overloaded_in_band("Partial answer"))
    with pytest.raises(StreamError) as info:
        either.stream("Fail me", retries=2)
    assert info.value.partial_text == "Partial answer"
    assert info.value.error_type == "overloaded_error"
    assert len(server.requests) == 1  # after the first chunk: never retried


def test_error_statuses_of_a_stream(either, server, sleeps):
    server.enqueue(anthropic_error(401, "invalid x-api-key"))
    with pytest.raises(AuthenticationError):
        either.stream("Hi")
    server.enqueue(overloaded())
    assert either.stream("Hi", retries=1).text.endswith("Hi")
    assert len(sleeps.delays) == 1


def test_events_are_delivered_as_they_arrive(make_client, server):
    server.enqueue(Reply.chat_stream("one two three four five six", delay_between=0.25))
    client = make_client()
    started = time.monotonic()
    with client.stream("anthropic:claude-haiku-4-5", "Slowly") as stream:
        first = next(iter(stream))
        first_at = time.monotonic() - started
        rest = list(stream)
    total = time.monotonic() - started
    assert first.text == ""  # the text block's start
    assert first_at < 1.0 < total, (first_at, total)
    assert "".join(c.text for c in rest) == "one two three four five six"
