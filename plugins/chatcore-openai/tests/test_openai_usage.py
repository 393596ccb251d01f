"""Typed usage from OpenAI answers, over real sockets with ``Client`` and ``AsyncClient``:
``prompt_tokens_details.cached_tokens`` and ``completion_tokens_details.reasoning_tokens``
fill :class:`~chatcore.models.Usage`'s ``cached_tokens`` and ``reasoning_tokens`` (OpenAI
reports no cache writes: ``cache_creation_tokens`` stays ``None``), in chats and in
streams, and reach the metrics."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import chatcore
from chatcore.testing.helpers import MetricsRecorder
from chatcore.testing.server import Reply, StandInServer

USAGE = {
    "prompt_tokens": 2000,
    "completion_tokens": 300,
    "total_tokens": 2300,
    "prompt_tokens_details": {"cached_tokens": 1536, "audio_tokens": 0},
    "completion_tokens_details": {"reasoning_tokens": 256, "audio_tokens": 0},
}


def _usage_of(kind: str, server: StandInServer, key: str, stream: bool) -> Any:
    options = {"openai": {"api_key": key, "base_url": server.base_url}}
    recorder = MetricsRecorder()
    if kind == "sync":
        with chatcore.Client(
            providers=options, environ={}, max_retries=0, metrics_sinks=[recorder]
        ) as client:
            if stream:
                with client.stream("openai:gpt-4o-mini", "Hi") as s:
                    usage = s.read().usage
            else:
                usage = client.chat("openai:gpt-4o-mini", "Hi").usage
        return usage, recorder.requests[-1]

    async def main() -> Any:
        async with chatcore.AsyncClient(
            providers=options, environ={}, max_retries=0, metrics_sinks=[recorder]
        ) as client:
            if stream:
                return (await (await client.stream("openai:gpt-4o-mini", "Hi")).read()).usage
            return (await client.chat("openai:gpt-4o-mini", "Hi")).usage

    return asyncio.run(main()), recorder.requests[-1]


@pytest.mark.parametrize("stream", [False, True], ids=["chat", "stream"])
@pytest.mark.parametrize("kind", ["sync", "async"])
def test_the_details_fill_the_typed_usage(server, openai_key, kind, stream):
    reply = Reply.chat_stream if stream else Reply.chat
    server.enqueue(reply("Counted.", usage=USAGE, **({"include_usage": True} if stream else {})))
    usage, event = _usage_of(kind, server, openai_key, stream)
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (2000, 300, 2300)
    assert (usage.cached_tokens, usage.cache_creation_tokens, usage.reasoning_tokens) == (
        1536,
        None,
        256,
    )
    assert (event.cached_tokens, event.cache_creation_tokens, event.reasoning_tokens) == (
        1536,
        None,
        256,
    )


def test_the_stand_ins_default_usage_reports_zeros(client, server):
    usage = client.chat("openai:gpt-4o-mini", "Hi").usage
    assert usage is not None
    assert (usage.cached_tokens, usage.reasoning_tokens) == (0, 0)
