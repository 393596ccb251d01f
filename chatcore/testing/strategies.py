"""Hypothesis strategies for chat messages, requests and responses in OpenAI wire shape.

Public for plugin authors: ``from chatcore.testing.strategies import chat_completions``.
Generated dicts are canonical (``None``-valued optional keys are absent; the keys the
spec requires, such as ``message.refusal`` or ``choice.logprobs``, are present), so
``ChatResponse.from_dict(d).to_dict() == d`` holds exactly.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from chatcore.models import COMMON_PARAMS

__all__ = [
    "PARAM_NAMES",
    "chat_completions",
    "content_parts",
    "estimated_times",
    "garbage",
    "garbage_messages",
    "garbage_params",
    "messages",
    "rate_limit_headers",
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


#: Numbers a broken or hostile server sends where a delay or a count belongs.
HOSTILE_NUMBERS = (
    "inf",
    "-inf",
    "Infinity",
    "nan",
    "-nan",
    "-0",
    "0",
    "0.0",
    "-5",
    "1e308",
    "1e309",
    "-1e308",
    "1e-320",
    "9" * 400,
    "99999",
    "1_000",
    " 7 ",
    "",
)
#: HTTP-dates from the distant past to the last one a datetime holds, and broken ones.
HOSTILE_DATES = (
    "Mon, 01 Jan 0001 00:00:00 GMT",
    "Thu, 01 Jan 1970 00:00:00 GMT",
    "Sun, 06 Nov 1994 08:49:37 GMT",
    "Fri, 31 Dec 9999 23:59:59 GMT",
    "Fri, 31 Dec 9999 23:59:59 -2359",
    "Sat, 01 Jan 10000 00:00:00 GMT",
    "Sun, 06 Nov 1994 08:49:37 +9999",
    "Sun, 32 Nov 1994 08:49:37 GMT",
)
_GO_UNITS = ("ns", "us", "µs", "ms", "s", "m", "h")
_numbers = (
    st.sampled_from(HOSTILE_NUMBERS)
    | st.floats().map(repr)
    | st.integers(-(10**30), 10**30).map(str)
    | st.text(max_size=12)
)
_go_durations = st.lists(
    st.tuples(
        st.sampled_from(["0", "1", "1.5", "59", "99999", "9" * 400])
        | st.integers(0, 10**9).map(str),
        st.sampled_from(_GO_UNITS),
    ),
    min_size=1,
    max_size=3,
).map(lambda parts: "".join(n + u for n, u in parts))


@st.composite
def rate_limit_headers(draw: st.DrawFn) -> dict[str, str]:
    """Response headers a limiter and a retry policy read (``retry-after``,
    ``retry-after-ms``, ``x-ratelimit-remaining-*``, ``x-ratelimit-reset-*``), each present
    or not, with any value: plausible ones, and the infinities, NaNs, negative, huge and
    malformed numbers, Go durations and HTTP-dates of a hostile server."""
    candidates: dict[str, st.SearchStrategy[str]] = {
        "retry-after": _numbers | st.sampled_from(HOSTILE_DATES),
        "retry-after-ms": _numbers,
        "x-ratelimit-remaining-requests": _numbers,
        "x-ratelimit-remaining-tokens": _numbers,
        "x-ratelimit-reset-requests": _numbers | _go_durations,
        "x-ratelimit-reset-tokens": _numbers | _go_durations,
    }
    return {name: draw(values) for name, values in candidates.items() if draw(st.booleans())}


def estimated_times() -> st.SearchStrategy[Any]:
    """Hugging Face ``estimated_time`` values: any float (infinities and NaN too), integers
    beyond a float, and values of the wrong type."""
    return (
        st.floats()
        | st.integers(-(10**400), 10**400)
        | st.sampled_from([None, True, "20", [1.0], {"s": 1}])
    )


# --------------------------------------------------------------------------------------
# Garbage: what a careless caller may pass where chatcore expects a request


class _Opaque:
    """An object no serializer knows."""

    def __repr__(self) -> str:
        return "<opaque>"


_any_char = st.characters(codec=None, exclude_categories=())  # lone surrogates included
_garbage_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([63, 5000]).map(lambda e: 10**e) | st.just(-(2**63) - 1),
    st.floats(),  # NaN and infinities included
    st.sampled_from([float("nan"), float("inf"), float("-inf"), 1e308]),
    st.text(_any_char, max_size=12),
    st.sampled_from(["\ud800", "a\udfffb", "Hello", "", "user", "auto", "text"]),
    st.binary(max_size=8),
    st.builds(_Opaque),
)


_hashable = st.none() | st.booleans() | st.integers() | st.text(_any_char, max_size=6)


@st.composite
def _garbage(draw: st.DrawFn, depth: int) -> Any:
    if depth <= 0 or draw(st.integers(0, 2)) == 0:
        return draw(_garbage_scalar)
    inner = _garbage(depth - 1)
    kind = draw(st.integers(0, 5))
    if kind == 0:
        return draw(st.lists(inner, max_size=3))
    if kind == 1:
        return tuple(draw(st.lists(inner, max_size=3)))
    if kind == 2:
        return draw(st.frozensets(_hashable, max_size=3))
    if kind == 3:
        return draw(st.sets(_hashable, max_size=3))
    if kind == 4:
        return draw(st.dictionaries(st.text(_any_char, max_size=8), inner, max_size=3))
    return draw(st.dictionaries(_hashable, inner, max_size=3))


def garbage(depth: int = 3) -> st.SearchStrategy[Any]:
    """Arbitrary nested Python values: JSON-like ones, and sets, bytes, tuples, odd dict
    keys, opaque objects, NaN and infinities, lone surrogates and huge integers."""
    return _garbage(depth)


_MESSAGE_KEYS = ("role", "content", "name", "tool_calls", "tool_call_id", "refusal", "audio")


@st.composite
def _spoilt_message(draw: st.DrawFn) -> Any:
    """A valid message with one field (or one key) replaced by garbage."""
    msg = dict(draw(messages()))
    key = draw(st.sampled_from(_MESSAGE_KEYS) | st.text(_any_char, max_size=4))
    msg[key] = draw(garbage())
    return msg


def garbage_messages() -> st.SearchStrategy[Any]:
    """What may be passed as ``messages``: garbage, valid messages with garbage in one
    place, and lists mixing both."""
    item = messages() | _spoilt_message() | garbage()
    return garbage() | item | st.lists(item, min_size=1, max_size=3)


#: Every parameter name ``Client.chat`` and ``Client.stream`` take besides model and
#: messages (the common ones, some passed through, the per-call pipeline options), plus
#: a few that are not parameters at all.
PARAM_NAMES: tuple[str, ...] = (
    *COMMON_PARAMS,
    "metadata",
    "stream_options",
    "audio",
    "extra",
    "max_retries",
    "timeout_total",
    "cache",
    "cache_ttl",
    "model",
    "stream",
    "bogus",
)

_plausible: dict[str, st.SearchStrategy[Any]] = {
    "tools": st.lists(
        st.fixed_dictionaries(
            {
                "type": st.just("function"),
                "function": st.fixed_dictionaries(
                    {"name": _ident}, optional={"parameters": garbage(), "description": garbage()}
                ),
            }
        ),
        min_size=1,
        max_size=2,
    ),
    "tool_choice": st.sampled_from(["auto", "none", "required"])
    | st.dictionaries(_ident, garbage(), max_size=2),
    "response_format": st.fixed_dictionaries(
        {"type": st.sampled_from(["text", "json_object", "json_schema"])},
        optional={"json_schema": garbage()},
    ),
    "logit_bias": st.dictionaries(st.text(_any_char, max_size=4), garbage(), max_size=3),
    "extra": st.dictionaries(st.text(_any_char, max_size=6), garbage(), max_size=3),
    "metadata": st.dictionaries(st.text(_any_char, max_size=6), garbage(), max_size=3),
}


@st.composite
def garbage_params(draw: st.DrawFn, names: tuple[str, ...] = PARAM_NAMES) -> dict[str, Any]:
    """Keyword arguments for ``Client.chat`` / ``build_request``: each drawn parameter
    gets garbage, or a plausible shape with garbage inside."""
    params: dict[str, Any] = {}
    for name in draw(st.lists(st.sampled_from(names), max_size=4, unique=True)):
        shaped = _plausible.get(name)
        params[name] = draw(garbage() | shaped if shaped is not None else garbage())
    return params
