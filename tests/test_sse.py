"""The Server-Sent Events parser (``iter_sse``) and the OpenAI chunk decoder (``openai_chunks``),
as real servers bend the format: ``data:`` with or without a space, CR/LF/CRLF, comments,
events split anywhere across reads (hypothesis), ``[DONE]``, ``choices: []`` chunks and in-band
errors."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chatcore._sse import SSEEvent, iter_sse, openai_chunks, stream_error_from_event
from chatcore.exceptions import StreamError


def events(*reads: bytes | str) -> list[SSEEvent]:
    """Parse a stream delivered as these reads."""
    return list(iter_sse(r.encode("utf-8") if isinstance(r, str) else r for r in reads))


def datas(*reads: bytes | str) -> list[str]:
    return [e.data for e in events(*reads)]


def chunk(text: str | None = None, *, index: int = 0, finish: str | None = None, **extra: Any):
    delta: dict[str, Any] = {}
    if text is not None:
        delta["content"] = text
    body: dict[str, Any] = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "gpt-4o-mini",
        "choices": [{"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }
    body.update(extra)
    return body


def sse_events(*payloads: Any) -> Iterator[SSEEvent]:
    for payload in payloads:
        yield SSEEvent(payload if isinstance(payload, str) else json.dumps(payload))


def decode(*payloads: Any, require_done: bool = True, secrets: tuple[str, ...] = ()) -> list:
    return list(
        openai_chunks(
            sse_events(*payloads),
            provider="p",
            model="m",
            require_done=require_done,
            secrets=secrets,
        )
    )


# --------------------------------------------------------------------------------------
# iter_sse


def test_data_with_and_without_space():
    assert datas('data: {"a":1}\n\n', 'data:{"b":2}\n\n') == ['{"a":1}', '{"b":2}']


def test_only_one_leading_space_is_removed():
    assert datas("data:  two spaces\n\n") == [" two spaces"]


def test_multi_line_data_is_joined_with_newlines():
    assert datas("data: first\ndata: second\ndata:third\n\n") == ["first\nsecond\nthird"]


def test_comments_and_keep_alives_are_ignored():
    stream = (
        ": keep-alive\n\n:\n\ndata: x\n: ping in the middle\ndata: y\n\n: OPENROUTER PROCESSING\n\n"
    )
    assert datas(stream) == ["x\ny"]


@pytest.mark.parametrize("eol", ["\n", "\r\n", "\r"])
def test_line_endings(eol):
    stream = f"event: delta{eol}data: a{eol}data: b{eol}{eol}data: c{eol}{eol}"
    got = events(stream)
    assert [(e.event, e.data) for e in got] == [("delta", "a\nb"), ("message", "c")]


def test_mixed_line_endings():
    assert datas("data: a\r\n\r\ndata: b\n\ndata: c\r\rdata: d\r\n\n") == ["a", "b", "c", "d"]


def test_crlf_split_between_cr_and_lf():
    # The CR ends one read and the LF starts the next: one line end, not two.
    assert datas("data: a\r", "\ndata: b\r", "\n\r", "\n") == ["a\nb"]


def test_event_id_and_retry_fields():
    stream = "event: update\nid: 42\nretry: 3000\ndata: x\n\nretry: soon\ndata: y\n\n"
    first, second = events(stream)
    assert first == SSEEvent("x", "update", "42", 3000)
    # the event name is per event; the last event id persists (SSE spec); a bad retry is ignored
    assert second.event == "message"
    assert second.id == "42"
    assert second.retry is None
    assert second.data == "y"


def test_event_with_no_data_is_not_dispatched():
    assert events("event: ping\n\nid: 7\n\n") == []


def test_field_without_colon_and_unknown_fields():
    # "data" alone is a data field with an empty value; unknown fields are ignored
    assert datas("data\ndata: x\nfoo: bar\n\n") == ["\nx"]


def test_unterminated_last_event_is_dispatched():
    assert datas("data: one\n\ndata: two") == ["one", "two"]
    assert datas("data: one\n\ndata: two\n") == ["one", "two"]


def test_empty_reads_are_harmless():
    assert datas("", "data: a", "", "\n", "", "\n", "") == ["a"]


def test_utf8_split_inside_a_character():
    raw = "data: héllo → ☃\n\n".encode()
    reads = [raw[i : i + 1] for i in range(len(raw))]
    assert datas(*reads) == ["héllo → ☃"]


def test_leading_bom_is_ignored():
    assert datas(b"\xef\xbb\xbfdata: first\n\ndata: second\n\n") == ["first", "second"]


# --- hypothesis: any split, any line endings -------------------------------------------

_text = st.text(
    alphabet=st.characters(
        blacklist_categories=("Cs",), blacklist_characters="\r\n\x00\x85\u2028\u2029"
    ),
    max_size=12,
)
_event = st.fixed_dictionaries(
    {
        "data": st.lists(_text, min_size=1, max_size=3),
        "event": st.one_of(st.none(), st.text(alphabet="abcdefgh-_.", min_size=1, max_size=8)),
        "id": st.one_of(st.none(), st.text(alphabet="0123456789abc", min_size=1, max_size=6)),
        "comment": st.one_of(st.none(), _text),
        "space": st.booleans(),
    }
)


def _lines_of(spec: dict[str, Any]) -> list[str]:
    lines = []
    if spec["comment"] is not None:
        lines.append(":" + spec["comment"])
    if spec["event"] is not None:
        lines.append("event: " + spec["event"])
    if spec["id"] is not None:
        lines.append("id:" + spec["id"])
    prefix = "data: " if spec["space"] else "data:"
    lines.extend(prefix + d for d in spec["data"])
    lines.append("")  # the blank line that dispatches the event
    return lines


def _expected(specs: list[dict[str, Any]]) -> list[SSEEvent]:
    out = []
    last_id = None
    for spec in specs:
        if spec["id"] is not None:
            last_id = spec["id"]
        values = [d[1:] if not spec["space"] and d.startswith(" ") else d for d in spec["data"]]
        out.append(SSEEvent("\n".join(values), spec["event"] or "message", last_id))
    return out


@st.composite
def _stream(draw: st.DrawFn) -> tuple[list[SSEEvent], bytes, list[bytes]]:
    specs = draw(st.lists(_event, min_size=0, max_size=6))
    lines = [line for spec in specs for line in _lines_of(spec)]
    parts = []
    previous = ""
    for line in lines:
        choices = ["\n", "\r\n", "\r"]
        if previous == "\r" and line == "":
            # "x\r" + "\n" would read as one CRLF: the blank line needs its own line end
            choices = ["\r\n", "\r"]
        eol = draw(st.sampled_from(choices))
        parts.append(line + eol)
        previous = eol
    raw = "".join(parts).encode("utf-8")
    cuts = sorted(draw(st.lists(st.integers(0, len(raw)), max_size=12)))
    reads = [raw[a:b] for a, b in zip([0, *cuts], [*cuts, len(raw)], strict=True)]
    return _expected(specs), raw, reads


@settings(max_examples=400, deadline=None)
@given(_stream())
def test_any_split_and_line_endings_give_the_same_events(case):
    expected, raw, reads = case
    assert list(iter_sse([raw])) == expected
    assert list(iter_sse(reads)) == expected
    assert list(iter_sse(raw[i : i + 1] for i in range(len(raw)))) == expected


# --------------------------------------------------------------------------------------
# openai_chunks


def test_done_stops_the_stream():
    got = decode(chunk("Hel"), chunk("lo"), chunk(finish="stop"), "[DONE]", chunk("never"))
    assert [c.text for c in got] == ["Hel", "lo", ""]
    assert got[-1].finish_reason == "stop"
    assert all(c.provider == "p" for c in got)


def test_done_with_surrounding_whitespace():
    assert [c.text for c in decode(chunk("a"), " [DONE] ")] == ["a"]


def test_missing_done_is_a_stream_error_with_the_partial_text():
    with pytest.raises(StreamError) as info:
        decode(chunk("Hello"), chunk(" wor"))
    err = info.value
    assert err.partial_text == "Hello wor"
    assert "[DONE]" in err.message
    assert err.provider == "p" and err.model == "m"


def test_missing_done_is_fine_when_not_required():
    assert [c.text for c in decode(chunk("a"), chunk("b"), require_done=False)] == ["a", "b"]


def test_usage_chunk_with_empty_choices():
    usage = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
    got = decode(chunk("hi", usage=None), {**chunk(usage=usage), "choices": []}, "[DONE]")
    assert got[0].usage is None
    assert got[1].choices == ()
    assert got[1].text == "" and got[1].finish_reason is None and got[1].tool_call_deltas == ()
    assert got[1].usage is not None and got[1].usage.total_tokens == 5


def test_azure_first_chunk_with_empty_choices():
    azure_first = {
        "id": "",
        "object": "",
        "created": 0,
        "model": "",
        "choices": [],
        "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": {}}],
    }
    got = decode(azure_first, chunk("ok"), "[DONE]")
    assert got[0].choices == () and got[0].id == "" and got[0].model == "m"
    assert got[1].text == "ok"


def test_unknown_keys_are_ignored():
    got = decode(chunk("a", obfuscation="xQ3", service_tier="default"), "[DONE]")
    assert got[0].text == "a"
    assert "obfuscation" not in got[0].to_dict()


def test_malformed_usage_does_not_kill_the_stream():
    got = decode(chunk("a", usage={"prompt_tokens": "lots"}), "[DONE]")
    assert got[0].text == "a"


def test_non_object_json_events_are_skipped():
    assert [c.text for c in decode("[1, 2]", "42", chunk("a"), "[DONE]")] == ["a"]


def test_openai_in_band_error():
    error = {"error": {"message": "The server had an error", "type": "server_error", "code": "x1"}}
    with pytest.raises(StreamError) as info:
        decode(chunk("Hi"), error, "[DONE]")
    err = info.value
    assert "The server had an error" in err.message
    assert err.code == "x1"
    assert err.error_type == "server_error"
    assert err.should_retry is True
    assert err.partial_text == "Hi"
    assert err.body == error


def test_tgi_in_band_error():
    with pytest.raises(StreamError) as info:
        decode({"error": "Model is overloaded", "error_type": "overloaded"})
    err = info.value
    assert "Model is overloaded" in err.message
    assert err.error_type == "overloaded"
    assert err.should_retry is True
    assert err.partial_text == ""


def test_non_retryable_in_band_error():
    err = stream_error_from_event(
        {"error": "Input validation error", "error_type": "validation"}, provider="p", model="m"
    )
    assert isinstance(err, StreamError)
    assert err.should_retry is False
    assert "Input validation error" in str(err)


def test_error_event_name_with_text_data():
    with pytest.raises(StreamError) as info:
        list(
            openai_chunks(
                [
                    SSEEvent('{"choices":[{"index":0,"delta":{"content":"x"}}]}'),
                    SSEEvent("boom", "error"),
                ],
                provider="p",
                model="m",
            )
        )
    assert "boom" in info.value.message
    assert info.value.partial_text == "x"


def test_non_json_event_is_a_stream_error():
    with pytest.raises(StreamError) as info:
        decode(chunk("par"), "<html>502 Bad Gateway</html>", "[DONE]")
    assert "not JSON" in info.value.message
    assert info.value.partial_text == "par"
    assert isinstance(info.value.__cause__, ValueError)


def test_partial_text_only_counts_the_first_choice():
    with pytest.raises(StreamError) as info:
        decode(chunk("a", index=0), chunk("X", index=1), chunk("b", index=0))
    assert info.value.partial_text == "ab"


def test_chunk_fields_and_to_dict():
    calls = [{"index": 0, "id": "call_1", "type": "function", "function": {"name": "f"}}]
    raw = chunk(None)
    raw["choices"][0]["delta"] = {"role": "assistant", "tool_calls": calls}
    (got,) = decode(raw, "[DONE]")
    assert got.id == "chatcmpl-1" and got.created == 1700000000 and got.model == "gpt-4o-mini"
    assert got.text == ""
    assert got.tool_call_deltas == tuple(calls)
    wire = got.to_dict()
    assert wire["object"] == "chat.completion.chunk"
    assert wire["choices"][0]["delta"]["tool_calls"] == calls
    assert "usage" not in wire


def test_text_and_finish_reason_come_from_choice_zero():
    raw = {
        "id": "c",
        "model": "m",
        "choices": [
            {"index": 1, "delta": {"content": "one"}, "finish_reason": "length"},
            {"index": 0, "delta": {"content": "zero"}, "finish_reason": "stop"},
        ],
    }
    (got,) = decode(raw, "[DONE]")
    assert got.text == "zero"
    assert got.finish_reason == "stop"


def test_in_band_error_redacts_known_secrets():
    secret = "azureKEY0123456789abcdefSECRET"
    with pytest.raises(StreamError) as info:
        decode(
            {"error": {"message": f"key {secret} is not valid", "code": None}}, secrets=(secret,)
        )
    assert secret not in str(info.value)
    assert secret not in json.dumps(info.value.body)


def _reads(raw: bytes, size: int) -> Iterable[bytes]:
    return (raw[i : i + size] for i in range(0, len(raw), size))


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64, 10_000])
def test_full_openai_stream_through_the_parser(size):
    lines = [
        'data: {"id":"c1","choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}',
        ": keep-alive",
        'data:{"id":"c1","choices":[{"index":0,"delta":{"content":"Hé"}}]}',
        'data: {"id":"c1","choices":[{"index":0,"delta":{"content":"llo"},'
        '"finish_reason":"stop"}]}',
        'data: {"id":"c1","choices":[],'
        '"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}',
        "data: [DONE]",
    ]
    body = "".join(line + "\r\n\r\n" for line in lines).encode()
    got = list(openai_chunks(iter_sse(_reads(body, size)), provider="p", model="m"))
    assert "".join(c.text for c in got) == "Héllo"
    assert got[-1].usage is not None and got[-1].usage.total_tokens == 3
