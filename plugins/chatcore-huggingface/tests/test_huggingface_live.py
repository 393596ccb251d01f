"""One tiny real chat through the Hugging Face router; skipped unless ``HF_TOKEN`` is set.

Run with ``pytest -m live plugins/chatcore-huggingface/tests``. The model can be changed
with ``CHATCORE_HF_LIVE_MODEL`` (default: a small instruct model, provider chosen by the
router)."""

from __future__ import annotations

import os

import pytest

import chatcore

pytestmark = [
    pytest.mark.live,
    pytest.mark.skipif(not os.environ.get("HF_TOKEN"), reason="HF_TOKEN is not set"),
]


def test_live_router_chat() -> None:
    model = os.environ.get("CHATCORE_HF_LIVE_MODEL", "meta-llama/Llama-3.1-8B-Instruct")
    with chatcore.Client() as client:
        resp = client.chat(
            f"huggingface:{model}",
            "Reply with the single word: pong",
            max_tokens=8,
            temperature=0,
        )
    assert resp.provider == "huggingface"
    assert resp.text.strip()
    assert resp.choices[0].finish_reason in {"stop", "length"}
