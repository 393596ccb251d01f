"""Hypothesis strategies for chat messages, requests and responses in OpenAI wire shape.

Public for plugin authors: ``from chatcore.testing.strategies import chat_completions``.
Generated dicts are canonical (``None``-valued optional keys are absent; the keys the
spec requires, such as ``message.refusal`` or ``choice.logprobs``, are present), so
``ChatResponse.from_dict(d).to_dict() == d`` holds exactly.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

__all__ = [
    "chat_completions",
    "content_parts",
    "messages",
    "tool_calls",
    "usages",
]

_text = st.text(max_size=40)
_ident = st.from_regex(r"[A-Za-z0-9_\-]{1,20}", fullmatch=True)
_json_scalar = st.none() | st.booleans() | st.integers(-(2**31), 2**31) | _text
_json = st.recursive(
    _json_scalar,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_ident, inner, max_size=3),
    max_leaves=6,
)


def _optional(d: dict[str, Any], key: str, strategy: st.SearchStrategy[Any]) -> Any:
    return st.one_of(st.just(d), strategy.map(lambda v: {**d, key: v}))


@st.composite
def tool_calls(draw: st.DrawFn) -> dict[str, Any]:
    """One ``tool_calls[]`` item."""
    return {
        "id": "call_" + draw(_ident),
        "type": "function",
        "function": {"name": draw(_ident), "arguments": draw(_text)},
    }


def content_parts() -> st.SearchStrategy[dict[str, Any]]:
    """Text and image content parts."""
    text = st.builds(lambda t: {"type": "text", "text": t}, _text)
    image = st.builds(
        lambda u, d: {"type": "image_url", "image_url": {"url": u, **({"detail": d} if d else {})}},
        st.sampled_from(["https://example.invalid/a.png", "data:image/png;base64,AAAA"]),
        st.sampled_from([None, "auto", "low", "high"]),
    )
    return text | image


@st.composite
def messages(draw: st.DrawFn) -> dict[str, Any]:
    """A request message of any role (valid shape; conversation order not enforced)."""
    role = draw(st.sampled_from(["system", "developer", "user", "assistant", "tool"]))
    msg: dict[str, Any] = {"role": role}
    if role == "user":
        msg["content"] = draw(_text | st.lists(content_parts(), min_size=1, max_size=3))
    elif role == "assistant":
        calls = draw(st.lists(tool_calls(), max_size=2))
        msg["content"] = draw(st.none() | _text) if calls else draw(_text)
        if calls:
            msg["tool_calls"] = calls
    else:
        msg["content"] = draw(_text)
    if role == "tool":
        msg["tool_call_id"] = "call_" + draw(_ident)
    elif draw(st.booleans()):
        msg["name"] = draw(_ident)
    return msg


def usages() -> st.SearchStrategy[dict[str, Any]]:
    """``usage`` objects, sometimes with details."""
    base = st.builds(
        lambda p, c: {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c},
        st.integers(0, 10**6),
        st.integers(0, 10**6),
    )
    return base.flatmap(
        lambda u: _optional(
            u, "prompt_tokens_details", st.fixed_dictionaries({"cached_tokens": st.integers(0, 99)})
        )
    )


@st.composite
def chat_completions(draw: st.DrawFn) -> dict[str, Any]:
    """A ``chat.completion`` response body."""
    choices = []
    for i in range(draw(st.integers(0, 3))):
        calls = draw(st.lists(tool_calls(), max_size=2))
        message: dict[str, Any] = {
            "role": "assistant",
            "content": draw(st.none() | _text),
            "refusal": draw(st.none() | _text),
        }
        if calls:
            message["tool_calls"] = calls
        if draw(st.booleans()):
            message["annotations"] = draw(
                st.lists(st.dictionaries(_ident, _json, max_size=2), max_size=2)
            )
        choices.append(
            {
                "index": i,
                "message": message,
                "logprobs": draw(st.none() | st.fixed_dictionaries({"content": st.just(None)})),
                "finish_reason": draw(
                    st.sampled_from(["stop", "length", "tool_calls", "content_filter", None])
                ),
            }
        )
    body: dict[str, Any] = {
        "id": "chatcmpl-" + draw(_ident),
        "object": "chat.completion",
        "created": draw(st.integers(0, 2**31)),
        "model": draw(_ident),
        "choices": choices,
    }
    if draw(st.booleans()):
        body["usage"] = draw(usages())
    if draw(st.booleans()):
        body["system_fingerprint"] = "fp_" + draw(_ident)
    if draw(st.booleans()):
        body["service_tier"] = draw(st.sampled_from(["default", "flex", "priority"]))
    return body
