"""Small real calls to Anthropic's API; skipped unless ANTHROPIC_API_KEY is set.

Run with ``ANTHROPIC_API_KEY=... pytest -m live plugins/chatcore-anthropic/tests``; the model
is ``ANTHROPIC_LIVE_MODEL`` (default ``claude-haiku-4-5``). ``ANTHROPIC_BASE_URL`` is honoured.
Each test spends a few hundred tokens at most."""

from __future__ import annotations

import asyncio
import json
import os

import attrs
import pytest

import chatcore

pytestmark = [
    pytest.mark.live,
    pytest.mark.skipif(
        not os.environ.get("ANTHROPIC_API_KEY"), reason="ANTHROPIC_API_KEY is not set"
    ),
]

MODEL = "anthropic:" + os.environ.get("ANTHROPIC_LIVE_MODEL", "claude-haiku-4-5")


def test_tiny_real_chat() -> None:
    with chatcore.Client(max_retries=1) as client:
        response = client.chat(MODEL, "Reply with the single word: pong", max_tokens=16)
    assert response.provider == "anthropic"
    assert response.text.strip()
    assert response.finish_reason in ("stop", "length")
    assert response.usage is not None and response.usage.total_tokens > 0
    assert response.request_id


def test_tiny_real_stream_with_the_async_client() -> None:
    async def main() -> chatcore.ChatResponse:
        async with chatcore.AsyncClient(max_retries=1) as client:
            stream = await client.stream(MODEL, "Count from 1 to 5.", max_tokens=32)
            return await stream.read()

    response = asyncio.run(main())
    assert "3" in response.text
    assert response.usage is not None and response.usage.completion_tokens > 0


def test_real_tool_call_and_structured_output() -> None:
    def get_weather(city: str) -> str:
        """The current weather in a city."""
        return f"18 degrees and sunny in {city}"

    @attrs.frozen
    class City:
        name: str
        country: str

    with chatcore.Client(max_retries=1) as client:
        run = client.run_tools(
            MODEL, "What is the weather in Paris? Use the tool.", [get_weather], max_tokens=200
        )
        assert [c.name for c in run.calls][:1] == ["get_weather"]
        assert run.completed and run.response.text
        answer = client.chat(MODEL, "Which city is the capital of France?", response_model=City)
    assert answer.parsed.name == "Paris"
    assert json.loads(answer.text)["country"]


def test_real_model_listing() -> None:
    with chatcore.Client(max_retries=1) as client:
        models = client.list_models("anthropic")
    assert any(m.id.startswith("claude") for m in models)
