"""The fixed answers the benchmark server returns, and what each client must get back.

Shaped like real OpenAI answers (usage details, ``system_fingerprint``, a role chunk, a
finish chunk and a usage chunk in the stream), so parsing costs are realistic. No ``$``
and no quote characters in the text: the same bytes are served by nginx from files.
"""

from __future__ import annotations

import json

MODEL = "gpt-4o-mini"
API_KEY = "sk-bench-0123456789abcdefghijklmnopqrstuvwxyz"
REQUEST_ID = "req_bench_0001"

#: Where the plain and the streamed answers are served (the path decides which: nginx
#: cannot branch on the request body).
CHAT_PREFIX = "/v1"
STREAM_PREFIX = "/stream/v1"
CHAT_PATH = CHAT_PREFIX + "/chat/completions"
STREAM_PATH = STREAM_PREFIX + "/chat/completions"
#: The same SSE events, each sent as its own HTTP chunk (Transfer-Encoding: chunked, one
#: flush per event), as a real server streams them.
CHUNKED_PREFIX = "/chunked/v1"
#: The slow server: a chat answered after SLOW_CHAT_DELAY seconds; a stream whose role
#: chunk comes at once and whose 20 content chunks follow SLOW_STREAM_GAP seconds apart
#: (21 events 20 ms apart, then the finish and usage chunks and ``[DONE]`` at once).
SLOW_PREFIX = "/slow/v1"
SLOW_STREAM_PREFIX = "/slowstream/v1"
SLOW_CHAT_DELAY = 0.3
SLOW_STREAM_GAP = 0.02

#: Stream routes: name -> (path prefix, what it serves).
STREAM_ROUTES = {
    "whole": STREAM_PREFIX,
    "chunked": CHUNKED_PREFIX,
    "slow": SLOW_STREAM_PREFIX,
}

EXPECTED_TEXT = "Hello! How can I help you today?"

CHAT_COMPLETION = {
    "id": "chatcmpl-bench0001",
    "object": "chat.completion",
    "created": 1700000000,
    "model": "gpt-4o-mini-2024-07-18",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": EXPECTED_TEXT,
                "refusal": None,
                "annotations": [],
            },
            "logprobs": None,
            "finish_reason": "stop",
        }
    ],
    "usage": {
        "prompt_tokens": 9,
        "completion_tokens": 9,
        "total_tokens": 18,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    },
    "service_tier": "default",
    "system_fingerprint": "fp_bench01",
}

#: 20 content pieces; joined they are EXPECTED_STREAM_TEXT.
STREAM_PIECES = [
    "Once",
    " upon",
    " a",
    " time",
    ",",
    " a",
    " small",
    " benchmark",
    " streamed",
    " twenty",
    " chunks",
    " to",
    " a",
    " patient",
    " client",
    ",",
    " one",
    " by",
    " one",
    ".",
]
EXPECTED_STREAM_TEXT = "".join(STREAM_PIECES)


def _chunk(delta: dict, finish: str | None = None, usage: dict | None = None) -> dict:
    base = {
        "id": "chatcmpl-bench0002",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "gpt-4o-mini-2024-07-18",
        "service_tier": "default",
        "system_fingerprint": "fp_bench01",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }
    if usage is not None:
        base["choices"] = []
        base["usage"] = usage
    return base


def stream_events() -> list[dict]:
    """The stream's JSON events: a role chunk, 20 content chunks, a finish chunk, a usage
    chunk (``choices: []``); ``[DONE]`` follows them on the wire."""
    events = [_chunk({"role": "assistant", "content": "", "refusal": None})]
    events += [_chunk({"content": piece}) for piece in STREAM_PIECES]
    events.append(_chunk({}, finish="stop"))
    events.append(
        _chunk({}, usage={"prompt_tokens": 9, "completion_tokens": 20, "total_tokens": 29})
    )
    return events


#: Events per stream, [DONE] not counted (per-chunk figures divide by this).
STREAM_EVENT_COUNT = len(stream_events())


def chat_body() -> bytes:
    return json.dumps(CHAT_COMPLETION, separators=(",", ":")).encode()


def sse_frames() -> list[bytes]:
    """Each SSE event of the stream on the wire (``data: ...\\n\\n``), ``[DONE]`` last."""
    out = [
        b"data: " + json.dumps(e, separators=(",", ":")).encode() + b"\n\n" for e in stream_events()
    ]
    out.append(b"data: [DONE]\n\n")
    return out


def sse_body() -> bytes:
    return b"".join(sse_frames())


def slow_stream_gaps() -> list[float]:
    """Seconds to wait before sending each frame of :func:`sse_frames` on the slow route:
    nothing before the role chunk, SLOW_STREAM_GAP before each content chunk, nothing
    before the finish chunk, the usage chunk and ``[DONE]``."""
    gaps = [0.0] + [SLOW_STREAM_GAP] * len(STREAM_PIECES)
    return gaps + [0.0] * (len(sse_frames()) - len(gaps))


def request_body(stream: bool = False) -> dict:
    """The request every bare client builds (what chatcore sends for ``"Hello"``)."""
    body: dict = {"model": MODEL, "messages": [{"role": "user", "content": "Hello"}]}
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body
