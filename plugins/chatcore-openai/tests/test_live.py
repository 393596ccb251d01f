"""One tiny real chat with OpenAI; skipped unless OPENAI_API_KEY is set.

Run with ``OPENAI_API_KEY=... pytest -m live plugins/chatcore-openai/tests``; the model is
``OPENAI_LIVE_MODEL`` (default ``gpt-4o-mini``)."""

from __future__ import annotations

import os

import pytest

import chatcore

pytestmark = [
    pytest.mark.live,
    pytest.mark.skipif(not os.environ.get("OPENAI_API_KEY"), reason="OPENAI_API_KEY is not set"),
]


def test_tiny_real_chat() -> None:
    model = os.environ.get("OPENAI_LIVE_MODEL", "gpt-4o-mini")
    with chatcore.Client(max_retries=1) as client:
        response = client.chat(
            f"openai:{model}", "Reply with the single word: pong", max_completion_tokens=16
        )
    assert response.provider == "openai"
    assert response.text.strip()
    assert response.usage is not None
    assert response.usage.total_tokens > 0
    assert response.request_id
