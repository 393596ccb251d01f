"""Typed usage from Hugging Face answers, over real sockets with ``Client`` and
``AsyncClient``: the router's OpenAI-shaped details fill ``cached_tokens`` and
``reasoning_tokens``; TGI's native ``/generate`` reports neither (``None``, not ``0``)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import chatcore
from chatcore.testing.server import Reply, StandInServer

USAGE = {
    "prompt_tokens": 900,
    "completion_tokens": 120,
    "total_tokens": 1020,
    "prompt_tokens_details": {"cached_tokens": 512},
    "completion_tokens_details": {"reasoning_tokens": 64},
}
MODEL = "huggingface:meta-llama/Llama-3.1-8B-Instruct"


def _usage(kind: str, settings: dict[str, Any], stream: bool) -> Any:
    providers = {"huggingface": settings}
    if kind == "sync":
        with chatcore.Client(providers=providers, environ={}, max_retries=0) as client:
            if stream:
                with client.stream(MODEL, "Hi") as s:
                    return s.read().usage
            return client.chat(MODEL, "Hi").usage

    async def main() -> Any:
        async with chatcore.AsyncClient(providers=providers, environ={}, max_retries=0) as client:
            if stream:
                return (await (await client.stream(MODEL, "Hi")).read()).usage
            return (await client.chat(MODEL, "Hi")).usage

    return asyncio.run(main())


@pytest.mark.parametrize("stream", [False, True], ids=["chat", "stream"])
@pytest.mark.parametrize("kind", ["sync", "async"])
def test_router_details_fill_the_typed_usage(
    router: StandInServer, kind: str, stream: bool
) -> None:
    reply = (
        Reply.chat_stream("Counted.", usage=USAGE)
        if stream
        else Reply.chat("Counted.", usage=USAGE)
    )
    router.enqueue(reply)
    usage = _usage(kind, {"api_key": router.api_key, "base_url": router.base_url}, stream)
    assert (usage.prompt_tokens, usage.completion_tokens) == (900, 120)
    assert (usage.cached_tokens, usage.cache_creation_tokens, usage.reasoning_tokens) == (
        512,
        None,
        64,
    )


@pytest.mark.parametrize("stream", [False, True], ids=["chat", "stream"])
@pytest.mark.parametrize("kind", ["sync", "async"])
def test_tgi_generate_reports_no_typed_parts(tgi: StandInServer, kind: str, stream: bool) -> None:
    usage = _usage(kind, {"base_url": tgi.url, "api": "generate"}, stream)
    assert usage.prompt_tokens > 0 and usage.completion_tokens > 0
    assert (usage.cached_tokens, usage.cache_creation_tokens, usage.reasoning_tokens) == (
        None,
        None,
        None,
    )
