"""Unit tests of the translate-only provider, with no server: what ``prepare_*`` asks to
send, what ``parse_*`` makes of given answers, which decoder ``stream_decoder`` picks, and
the ``/generate_stream`` decoder fed :class:`SSEEvent` objects (whole, split across reads,
cut short)."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from chatcore.exceptions import (
    ResponseDecodeError,
    ServiceUnavailableError,
    StreamError,
    UnprocessableEntityError,
    ValidationError,
)
from chatcore.models import ChatChunk, ChatRequest, FunctionDefinition, Message, Tool
from chatcore.provider import (
    HttpCall,
    HttpResult,
    OpenAIStreamDecoder,
    SSEEvent,
    decode_events,
    iter_sse,
    resolve_config,
)
from chatcore_huggingface._provider import HuggingFaceProvider
from chatcore_huggingface._spec import create_provider, provider_spec
from chatcore_huggingface._wire import GenerateStreamDecoder, chat_stream_body

TOKEN = "hf_TRANSLATEsecretTOKEN0123456"
#: A token of a dedicated endpoint, shaped like no known credential: only the provider's
#: secrets (``config.secrets``) can mask it.
PLAIN = "dedicatedEndpointPassphrase42"
ROUTER = "https://router.huggingface.co/v1"
TGI = "http://tgi.local:8080"


def make_provider(**options: Any) -> HuggingFaceProvider:
    settings: dict[str, Any] = {"api_key": TOKEN, **options}
    provider = create_provider(resolve_config(provider_spec(), settings, environ={}))
    assert isinstance(provider, HuggingFaceProvider)
    return provider


def request(model: str = "tgi", text: str = "Hi", **kwargs: Any) -> ChatRequest:
    return ChatRequest(
        provider="huggingface",
        model=model,
        messages=(Message(role="user", content=text),),
        **kwargs,
    )


def result(
    data: Any = None,
    headers: Mapping[str, str] | None = None,
    *,
    request_id: str | None = None,
    status: int = 200,
) -> HttpResult:
    return HttpResult(status, dict(headers or {}), data, 0.01, request_id)


def token_event(
    i: int, text: str, *, special: bool = False, final: Mapping[str, Any] | None = None
) -> SSEEvent:
    payload: dict[str, Any] = {
        "index": i,
        "token": {"id": 100 + i, "text": text, "logprob": -0.5, "special": special},
        "generated_text": None,
        "details": None,
    }
    payload.update(final or {})
    return SSEEvent(json.dumps(payload))


def final_event(
    i: int,
    text: str,
    *,
    special: bool = True,
    finish_reason: str | None = "eos_token",
    generated_tokens: Any = 3,
    input_length: Any = 7,
) -> SSEEvent:
    details: dict[str, Any] = {"seed": None}
    if finish_reason is not None:
        details["finish_reason"] = finish_reason
    if generated_tokens is not None:
        details["generated_tokens"] = generated_tokens
    if input_length is not None:
        details["input_length"] = input_length
    return token_event(
        i, text, special=special, final={"generated_text": "whole text", "details": details}
    )


def feed_all(decoder: GenerateStreamDecoder, events: list[SSEEvent]) -> list[ChatChunk]:
    chunks: list[ChatChunk] = []
    for event in events:
        chunks.extend(decoder.feed(event))
    return chunks


def text_of(chunks: list[ChatChunk]) -> str:
    return "".join(c.text for c in chunks)


# --------------------------------------------------------------------------------------
# The target: set in __init__, no transport, no I/O


def test_the_provider_translates_and_sets_a_target_without_a_transport() -> None:
    provider = make_provider(bill_to="my-org", wait_for_model=True)
    assert provider.translates is True
    assert provider.transport is None  # the core builds it from the target on first use
    target = provider.target
    assert target is not None
    assert target.base_url == ROUTER == provider.base_url
    assert dict(target.headers) == {
        "Authorization": f"Bearer {TOKEN}",
        "X-HF-Bill-To": "my-org",
        "x-wait-for-model": "true",
    }
    assert dict(target.params) == {}
    assert TOKEN not in repr(target)
    assert TOKEN not in repr(provider)


def test_a_tgi_server_without_a_token_sends_no_credentials() -> None:
    provider = create_provider(resolve_config(provider_spec(), {"base_url": TGI + "/"}, {}))
    assert provider.target is not None
    assert provider.target.base_url == TGI
    assert dict(provider.target.headers) == {}


def test_the_base_class_does_the_io() -> None:
    # chat / stream / list_models are the core's: the plugin only translates
    for name in ("chat", "stream", "list_models"):
        assert name not in vars(HuggingFaceProvider), name


# --------------------------------------------------------------------------------------
# prepare_chat / prepare_stream / prepare_models


def test_prepare_chat_on_the_router() -> None:
    call = make_provider().prepare_chat(
        request("openai/gpt-oss-120b:groq", stop="\n", top_p=1.0, max_tokens=5)
    )
    assert call == HttpCall(
        "POST",
        f"{ROUTER}/chat/completions",
        json={
            "model": "openai/gpt-oss-120b:groq",
            "messages": [{"role": "user", "content": "Hi"}],
            "max_tokens": 5,
            "stop": ["\n"],
        },
    )
    assert call.stream is False


def test_prepare_chat_on_a_tgi_root_url() -> None:
    call = make_provider(base_url=TGI).prepare_chat(request())
    assert (call.method, call.path) == ("POST", f"{TGI}/v1/chat/completions")


def test_prepare_chat_with_api_generate() -> None:
    call = make_provider(base_url=TGI + "/v1", api="generate").prepare_chat(
        request(temperature=0.0, max_tokens=9, stop="END")
    )
    assert call == HttpCall(
        "POST",
        f"{TGI}/generate",
        json={
            "inputs": "Hi",
            "parameters": {
                "max_new_tokens": 9,
                "do_sample": False,
                "stop": ["END"],
                "return_full_text": False,
                "details": True,
            },
        },
    )


def test_prepare_raises_validation_errors_unsent() -> None:
    tool = Tool(function=FunctionDefinition(name="f"))
    with pytest.raises(ValidationError, match="mutually exclusive"):
        make_provider().prepare_chat(
            request(tools=(tool,), response_format={"type": "json_object"})
        )
    generate = make_provider(base_url=TGI, api="generate")
    for prepare in (generate.prepare_chat, generate.prepare_stream):
        with pytest.raises(ValidationError, match="tools need api='chat'"):
            prepare(request(tools=(tool,)))
    with pytest.raises(ValidationError, match="top_p"):
        make_provider().prepare_stream(request(top_p=0.0))


def test_prepare_stream_on_the_chat_route_asks_for_usage() -> None:
    call = make_provider().prepare_stream(request(max_tokens=3))
    assert call == HttpCall(
        "POST",
        f"{ROUTER}/chat/completions",
        json={
            "model": "tgi",
            "messages": [{"role": "user", "content": "Hi"}],
            "max_tokens": 3,
            "stream": True,
            "stream_options": {"include_usage": True},
        },
        stream=True,
    )


def test_prepare_stream_keeps_stream_options_the_request_sets() -> None:
    options = {"include_usage": False}
    call = make_provider().prepare_stream(request(extra={"stream_options": options}))
    assert call.json["stream_options"] == options
    assert call.json["stream"] is True
    assert chat_stream_body(request())["stream_options"] == {"include_usage": True}


def test_prepare_stream_with_api_generate() -> None:
    call = make_provider(base_url=TGI, api="generate").prepare_stream(request(max_tokens=4))
    assert call.method == "POST"
    assert call.path == f"{TGI}/generate_stream"
    assert call.stream is True
    assert call.json == {
        "inputs": "Hi",
        "parameters": {"max_new_tokens": 4, "return_full_text": False, "details": True},
    }


@pytest.mark.parametrize(
    ("base", "models"), [(ROUTER, f"{ROUTER}/models"), (TGI, f"{TGI}/v1/models")]
)
def test_prepare_models(base: str, models: str) -> None:
    assert make_provider(base_url=base).prepare_models() == HttpCall("GET", models)


# --------------------------------------------------------------------------------------
# parse_chat / parse_models


COMPLETION = {
    "id": "",
    "object": "text_completion",
    "created": 1,
    "model": "",
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "Hello"}, "finish_reason": "stop"}
    ],
    "usage": {"prompt_tokens": 2, "completion_tokens": 1, "total_tokens": 3},
}


def test_parse_chat_on_the_chat_route() -> None:
    headers = {"x-request-id": "req-9", "x-ratelimit-remaining-requests": "5"}
    response = make_provider().parse_chat(
        request("m"), result(COMPLETION, headers, request_id="req-9")
    )
    assert response.text == "Hello"
    assert (response.id, response.request_id, response.model) == ("req-9", "req-9", "m")
    assert response.object == "chat.completion"
    assert response.provider == "huggingface"
    assert response.headers == headers
    assert response.usage is not None and response.usage.total_tokens == 3


def test_parse_chat_with_api_generate() -> None:
    data = {"generated_text": "ok", "details": {"finish_reason": "length", "generated_tokens": 2}}
    headers = {"x-prompt-tokens": "5", "x-request-id": "gen-req"}
    response = make_provider(base_url=TGI, api="generate").parse_chat(
        request(), result(data, headers, request_id="gen-req")
    )
    assert (response.text, response.finish_reason, response.id) == ("ok", "length", "gen-req")
    assert response.usage is not None
    assert (response.usage.prompt_tokens, response.usage.completion_tokens) == (5, 2)
    assert response.headers == headers


@pytest.mark.parametrize("api", ["chat", "generate"])
def test_parse_chat_rejects_other_bodies_without_the_token(api: str) -> None:
    echoed = {"unexpected": f"your key is {PLAIN}"}
    with pytest.raises(ResponseDecodeError) as info:
        make_provider(base_url=TGI, api=api, api_key=PLAIN).parse_chat(
            request(), result(echoed, request_id="r", status=201)
        )
    err = info.value
    assert err.status_code == 201
    assert err.request_id == "r"
    assert "your key is" in json.dumps(err.body)
    assert PLAIN not in str(err)
    assert PLAIN not in repr(err)
    assert PLAIN not in json.dumps(err.body)


def test_parse_models() -> None:
    provider = make_provider()
    listed = provider.parse_models(result({"object": "list", "data": [{"id": "a"}, {"id": "b"}]}))
    assert [(m.id, m.provider) for m in listed] == [("a", "huggingface"), ("b", "huggingface")]
    single = provider.parse_models(result({"id": "tgi-model", "object": "model"}))
    assert [m.id for m in single] == ["tgi-model"]
    with pytest.raises(ResponseDecodeError) as info:
        make_provider(api_key=PLAIN).parse_models(result(f"no models for {PLAIN}", status=203))
    assert info.value.status_code == 203
    assert "no models for" in str(info.value.body)
    assert PLAIN not in str(info.value.body)


# --------------------------------------------------------------------------------------
# Error answers: the core's mapping reads TGI's and HF's bodies (no map_error needed)


def test_tgi_and_hf_error_bodies_are_mapped_by_the_core() -> None:
    from chatcore._http import map_status

    provider = make_provider(base_url=TGI)
    assert provider.map_error(422, b"{}", {}) is None
    body = {"error": "Input validation error: `top_k` must be > 0", "error_type": "validation"}
    err = map_status(
        422,
        json.dumps(body).encode(),
        {},
        provider="huggingface",
        model="tgi",
        secrets=provider.config.secrets,
        mapper=provider.map_error,
    )
    assert isinstance(err, UnprocessableEntityError)
    assert err.error_type == "validation"
    loading = {"error": "Model x is currently loading", "estimated_time": 20.0}
    err = map_status(
        503,
        json.dumps(loading).encode(),
        {},
        provider="huggingface",
        model="x",
        secrets=(),
        mapper=provider.map_error,
    )
    assert isinstance(err, ServiceUnavailableError)
    assert err.retry_after == 20.0


# --------------------------------------------------------------------------------------
# stream_decoder


def test_stream_decoder_on_the_chat_route_is_the_openai_one() -> None:
    provider = make_provider()
    decoder = provider.stream_decoder(request("m"), result(request_id="r1"))
    assert isinstance(decoder, OpenAIStreamDecoder)
    assert decoder.require_done is True
    assert (decoder.provider, decoder.model) == ("huggingface", "m")
    assert decoder.secrets == (TOKEN,)


def test_stream_decoder_with_api_generate_carries_the_request_id() -> None:
    provider = make_provider(base_url=TGI, api="generate")
    decoder = provider.stream_decoder(request("m"), result(request_id="tgi-req-1"))
    assert isinstance(decoder, GenerateStreamDecoder)
    assert decoder.secrets == (TOKEN,)
    chunks = feed_all(decoder, [token_event(1, "Hi"), final_event(2, "</s>")])
    assert [(c.id, c.request_id, c.model) for c in chunks] == [("tgi-req-1", "tgi-req-1", "m")] * 2
    # a fresh decoder per stream
    assert provider.stream_decoder(request("m"), result()) is not decoder


# --------------------------------------------------------------------------------------
# GenerateStreamDecoder


def test_decoder_turns_tokens_into_chunks_and_finishes_on_the_final_event() -> None:
    decoder = GenerateStreamDecoder("m", request_id="rid", created=42)
    done = [decoder.done]
    first = decoder.feed(token_event(1, "Hi"))
    assert [c.choices[0]["delta"] for c in first] == [{"content": "Hi", "role": "assistant"}]
    second = decoder.feed(token_event(2, " there"))
    assert [c.choices[0] for c in second] == [
        {"index": 0, "delta": {"content": " there"}, "finish_reason": None}
    ]
    done.append(decoder.done)
    last = decoder.feed(final_event(3, "</s>"))
    done.append(decoder.done)
    assert done == [False, False, True]
    assert [c.choices[0] for c in last] == [{"index": 0, "delta": {}, "finish_reason": "stop"}]
    usage = last[0].usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (7, 3, 10)
    chunks = [*first, *second, *last]
    assert text_of(chunks) == "Hi there"
    assert all(
        (c.id, c.model, c.created, c.provider) == ("rid", "m", 42, "huggingface") for c in chunks
    )
    assert decoder.end() == ()
    assert decoder.feed(token_event(4, "late")) == ()  # nothing after the final event


def test_decoder_final_event_with_a_real_token_gives_two_chunks() -> None:
    decoder = GenerateStreamDecoder("m")
    feed_all(decoder, [token_event(1, " Hello")])
    last = decoder.feed(
        final_event(2, " from", special=False, finish_reason="length", generated_tokens=2)
    )
    assert [c.choices[0]["delta"] for c in last] == [{"content": " from"}, {}]
    assert [c.finish_reason for c in last] == [None, "length"]
    assert decoder.partial_text == " Hello from"
    assert decoder.done is True


def test_decoder_first_chunk_has_the_role_even_for_a_special_token() -> None:
    decoder = GenerateStreamDecoder("m")
    first = decoder.feed(token_event(1, "<s>", special=True))
    assert [c.choices[0]["delta"] for c in first] == [{"content": "", "role": "assistant"}]
    assert decoder.feed(token_event(2, "<pad>", special=True)) == ()
    assert decoder.feed(token_event(3, "")) == ()  # an empty token adds nothing either
    assert [c.text for c in decoder.feed(token_event(4, "x"))] == ["x"]


def test_decoder_without_a_request_id_shares_a_generated_id() -> None:
    decoder = GenerateStreamDecoder("m")
    chunks = feed_all(decoder, [token_event(1, "a"), token_event(2, "b"), final_event(3, "")])
    ids = {c.id for c in chunks}
    assert len(ids) == 1
    (only,) = ids
    assert only.startswith("gen-") and len(only) > len("gen-")
    assert all(c.request_id is None for c in chunks)
    assert GenerateStreamDecoder("m").feed(token_event(1, "a"))[0].id != only


@pytest.mark.parametrize(
    ("finish_reason", "expected"),
    [("eos_token", "stop"), ("stop_sequence", "stop"), ("length", "length"), ("other", "other")],
)
def test_decoder_finish_reasons(finish_reason: str, expected: str) -> None:
    decoder = GenerateStreamDecoder("m")
    decoder.feed(token_event(1, "a"))
    (chunk,) = decoder.feed(final_event(2, "</s>", finish_reason=finish_reason))
    assert chunk.finish_reason == expected


def test_decoder_final_event_without_details() -> None:
    decoder = GenerateStreamDecoder("m")
    decoder.feed(token_event(1, "a"))
    (chunk,) = decoder.feed(token_event(2, "", special=True, final={"generated_text": "a"}))
    assert chunk.finish_reason == "stop"
    assert chunk.usage is None
    assert decoder.done is True


@pytest.mark.parametrize(
    ("generated", "prompt", "expected"),
    [
        (3, None, (0, 3, 3)),
        (None, 7, (7, 0, 7)),
        (True, 7, (7, 0, 7)),  # a boolean is no token count
        ("3", None, None),
    ],
)
def test_decoder_usage_from_partial_details(
    generated: Any, prompt: Any, expected: tuple[int, int, int] | None
) -> None:
    decoder = GenerateStreamDecoder("m")
    decoder.feed(token_event(1, "a"))
    (chunk,) = decoder.feed(
        final_event(2, "", generated_tokens=generated, input_length=prompt, finish_reason=None)
    )
    usage = chunk.usage
    got = (
        None
        if usage is None
        else (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens)
    )
    assert got == expected


def test_decoder_ended_early_raises_with_the_partial_text() -> None:
    decoder = GenerateStreamDecoder("m", secrets=(PLAIN,))
    feed_all(decoder, [token_event(1, "Half"), token_event(2, " way")])
    with pytest.raises(StreamError) as info:
        decoder.end()
    err = info.value
    assert err.partial_text == "Half way"
    assert "ended before its final event" in err.message
    assert (err.provider, err.model) == ("huggingface", "m")
    assert decoder.done is False


def test_decoder_ended_before_any_event() -> None:
    with pytest.raises(StreamError, match="final event") as info:
        GenerateStreamDecoder("m").end()
    assert info.value.partial_text == ""


def test_decoder_in_band_error_event() -> None:
    decoder = GenerateStreamDecoder("m", secrets=(PLAIN,))
    feed_all(decoder, [token_event(1, "Par"), token_event(2, "tial")])
    error = {"error": f"CUDA OOM for {PLAIN}", "error_type": "generation"}
    with pytest.raises(StreamError) as info:
        decoder.feed(SSEEvent(json.dumps(error)))
    err = info.value
    assert "CUDA OOM for" in str(err)
    assert PLAIN not in str(err)
    assert PLAIN not in repr(err)
    assert err.error_type == "generation"
    assert err.partial_text == "Partial"
    assert err.should_retry is False


def test_decoder_overloaded_error_event_is_retryable() -> None:
    event = SSEEvent(json.dumps({"error": "Model is overloaded", "error_type": "overloaded"}))
    with pytest.raises(StreamError) as info:
        GenerateStreamDecoder("m").feed(event)
    assert info.value.should_retry is True
    assert info.value.partial_text == ""


def test_decoder_event_that_is_not_json() -> None:
    decoder = GenerateStreamDecoder("m", secrets=(PLAIN,))
    decoder.feed(token_event(1, "ok"))
    with pytest.raises(StreamError, match="/generate_stream event is not JSON") as info:
        decoder.feed(SSEEvent(f"garbage {PLAIN}"))
    assert info.value.partial_text == "ok"
    assert "garbage" in str(info.value)
    assert PLAIN not in str(info.value)
    assert PLAIN not in repr(info.value)


def test_decoder_skips_json_that_is_not_an_object() -> None:
    decoder = GenerateStreamDecoder("m")
    assert decoder.feed(SSEEvent("[1, 2]")) == ()
    assert decoder.feed(SSEEvent('"text"')) == ()
    # the first real event still opens the message
    (chunk,) = decoder.feed(token_event(1, "a"))
    assert chunk.choices[0]["delta"] == {"content": "a", "role": "assistant"}


def test_decoder_is_a_stream_decoder() -> None:
    from chatcore.provider import StreamDecoder

    decoder: StreamDecoder = GenerateStreamDecoder("m")
    assert decoder.done is False


# --------------------------------------------------------------------------------------
# Raw bytes split anywhere, through the core's SSE parser and decode loop


def tgi_stream_bytes(events: list[SSEEvent]) -> bytes:
    # TGI writes "data:" without a space, one event per blank-line-terminated block
    return b"".join(b"data:" + e.data.encode() + b"\n\n" for e in events)


def splits(raw: bytes, size: int) -> Iterator[bytes]:
    for i in range(0, len(raw), size):
        yield raw[i : i + size]


EVENTS = [
    token_event(1, "Hé"),
    token_event(2, "llo"),
    token_event(3, " wörld"),
    final_event(4, "</s>", generated_tokens=3, input_length=2),
]


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64, 100_000])
def test_split_stream_decodes_the_same(size: int) -> None:
    raw = tgi_stream_bytes(EVENTS)
    decoder = GenerateStreamDecoder("m", request_id="r")
    chunks = list(decode_events(iter_sse(splits(raw, size)), decoder))
    assert text_of(chunks) == "Héllo wörld"
    assert [c.finish_reason for c in chunks] == [None, None, None, "stop"]
    assert decoder.done is True


def test_split_stream_stops_reading_after_the_final_event() -> None:
    raw = tgi_stream_bytes([*EVENTS, token_event(5, "never")])
    read: list[bytes] = []

    def reads() -> Iterator[bytes]:
        for piece in splits(raw, 5):
            read.append(piece)
            yield piece

    chunks = list(decode_events(iter_sse(reads()), GenerateStreamDecoder("m")))
    assert text_of(chunks) == "Héllo wörld"
    assert len(b"".join(read)) < len(raw)


@pytest.mark.parametrize(
    ("cut", "why", "partial"),
    [
        (0, "ended before its final event", "Héllo wörld"),  # closed between events
        (1, "ended before its final event", "Héllo wörld"),  # without the blank line
        (40, "event is not JSON", "Héllo"),  # in the middle of the last event
    ],
)
def test_split_stream_ended_early_raises(cut: int, why: str, partial: str) -> None:
    raw = tgi_stream_bytes(EVENTS[:3])
    raw = raw[: len(raw) - cut]
    decoder = GenerateStreamDecoder("m")
    received: list[ChatChunk] = []
    with pytest.raises(StreamError, match=why) as info:
        received.extend(decode_events(iter_sse(splits(raw, 3)), decoder))
    assert text_of(received) == partial
    assert info.value.partial_text == partial
    assert decoder.done is False
