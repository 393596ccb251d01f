"""``chatcore demo`` offline: every bundled provider against its stand-in, Anthropic's
Messages API included, and nothing leaves the machine."""

from __future__ import annotations

import io
import os

import pytest


def test_the_demo_runs_offline_against_the_stand_ins(monkeypatch):
    for module in ("chatcore_openai", "chatcore_huggingface", "chatcore_anthropic"):
        pytest.importorskip(module, reason="the demo shows the bundled plugins")
    for key in list(os.environ):
        if key.startswith(("CHATCORE_", "OPENAI_", "HF_", "ANTHROPIC_", "AZURE_OPENAI_")):
            monkeypatch.delenv(key, raising=False)
    from chatcore import _plugins
    from chatcore._demo import run_demo

    monkeypatch.setattr(_plugins, "_host", None)  # a registry read from this environment
    out = io.StringIO()
    status = run_demo(out)
    text = out.getvalue()
    assert status == 0, text
    assert "LOCAL STAND-IN\n  of the Messages API" in text
    assert "anthropic:claude-haiku-4-5\n    reply:      Hello from the chatcore stand-in" in text
    assert "Streaming from anthropic:claude-haiku-4-5:" in text
    assert "finish reason stop" in text
    assert [
        line.split()[:2] for line in text.splitlines() if line.startswith("    anthropic ")
    ] == [
        ["anthropic", "requests"],
        ["anthropic", "ok"],
    ]
