"""The Server-Sent Events parser (``iter_sse``) and the OpenAI chunk decoder (``openai_chunks``),
as real servers bend the format: ``data:`` with or without a space, CR/LF/CRLF, comments,
events split anywhere across reads (hypothesis), ``[DONE]``, ``choices: []`` chunks and in-band
errors."""

from __future__ import annotations

import json
import re
import tracemalloc
from collections.abc import Iterable, Iterator
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from chatcore._sse import (
    SSEEvent,
    chunk_from_dict,
    drain,
    iter_sse,
    openai_chunks,
    stream_chat_completions,
    stream_error_from_event,
)
from chatcore._transport import HttpTransport
from chatcore.exceptions import (
    BadRequestError,
    ConfigurationError,
    ResponseDecodeError,
    ResponseTooLargeError,
    StreamError,
)
from chatcore.testing.server import Reply, StandInServer


def events(*reads: bytes | str) -> list[SSEEvent]:
    """Parse a stream delivered as these reads."""
    return list(iter_sse(r.encode("utf-8") if isinstance(r, str) else r for r in reads))


def datas(*reads: bytes | str) -> list[str]:
    return [e.data for e in events(*reads)]


def _reads(raw: bytes, size: int) -> Iterable[bytes]:
    """``raw`` as reads of ``size`` bytes."""
    return (raw[i : i + size] for i in range(0, len(raw), size))


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


# --- the WHATWG reference: any bytes, any reads -----------------------------------------

_LINE_END = re.compile(rb"\r\n|\r|\n")


def reference(raw: bytes, cap: int | None = None) -> tuple[list[SSEEvent], int | None]:
    """The events of ``raw`` per the WHATWG "event stream interpretation" (HTML Living
    Standard, server-sent events), written from the spec's text, plus chatcore's documented
    choices: an unterminated last event is dispatched too, ``retry`` is reported on the event
    it came with (and ignored from 10**18 ms up), and ``cap`` is ``max_event_bytes`` (an
    event's field lines, line ends and comments not counted; a comment line on its own).
    Returns the events dispatched and the cap if it stopped the stream, else ``None``."""
    if raw.startswith(b"\xef\xbb\xbf"):  # "One leading U+FEFF BYTE ORDER MARK ... ignored"
        raw = raw[3:]
    # "CRLF pair, a single LF not preceded by a CR, and a single CR not followed by an LF"
    lines = _LINE_END.split(raw)
    if lines[-1] == b"":  # what follows the last line end (or an empty stream)
        lines.pop()
    out: list[SSEEvent] = []
    data_buffer, event_type, last_event_id, retry, size = "", "", None, None, 0
    for raw_line in [*lines, b""]:  # b"": chatcore dispatches at the end of the stream
        line = raw_line.decode("utf-8", "replace")  # CR and LF are never part of a bad byte
        if line == "":  # "If the line is empty (a blank line): Dispatch the event"
            if data_buffer != "":
                if data_buffer.endswith("\n"):
                    data_buffer = data_buffer[:-1]
                out.append(SSEEvent(data_buffer, event_type or "message", last_event_id, retry))
            data_buffer, event_type, retry, size = "", "", None, 0
            continue
        if line.startswith(":"):  # "Ignore the line"
            if cap is not None and len(raw_line) > cap:
                return out, cap
            continue
        size += len(raw_line)
        if cap is not None and size > cap:
            return out, cap
        if ":" in line:
            field, _, value = line.partition(":")
            if value.startswith(" "):
                value = value[1:]
        else:
            field, value = line, ""
        if field == "event":
            event_type = value
        elif field == "data":
            data_buffer += value + "\n"
        elif field == "id":
            if "\x00" not in value:
                last_event_id = value
        elif (
            field == "retry"
            and value
            and all(c in "0123456789" for c in value)
            and len(value.lstrip("0")) <= 18  # below 10**18, whatever int()'s digit limit
        ):
            retry = int(value)
    return out, None


def outcome(reads: Iterable[bytes], cap: int | None = None) -> tuple[list[SSEEvent], int | None]:
    """What ``iter_sse`` delivers: its events, and the cap if it raised ResponseTooLargeError."""
    got: list[SSEEvent] = []
    parsed = iter_sse(reads) if cap is None else iter_sse(reads, max_event_bytes=cap)
    try:
        for event in parsed:
            got.append(event)
    except ResponseTooLargeError as exc:
        return got, exc.limit
    return got, None


_value = st.one_of(
    st.text(alphabet="ab: \x00é☃\ufeff0123456789-+_\x0b\x0c\x1c\x85\u2028", max_size=10).map(
        str.encode
    ),
    st.binary(max_size=6),  # bad UTF-8, stray CR and LF
    st.sampled_from([b"1" * 18, b"1" * 19, b"0" * 30 + b"5", b"9" * 5000, b"\xef\xbb\xbf"]),
)
_line = st.one_of(
    st.builds(
        lambda name, sep, value: name + sep + value,
        st.sampled_from([b"data", b"event", b"id", b"retry", b"dat", b"data ", b"Data", b"x"]),
        st.sampled_from([b"", b":", b": ", b":  "]),
        _value,
    ),
    _value.map(lambda value: b":" + value),  # a comment
    st.just(b""),  # a blank line
)


@st.composite
def _raw_stream(draw: st.DrawFn) -> tuple[bytes, list[bytes]]:
    lines = draw(st.lists(_line, max_size=14))
    ends = [draw(st.sampled_from([b"\n", b"\r\n", b"\r"])) for _ in lines]
    if lines and draw(st.booleans()):
        ends[-1] = b""  # the server closed in the middle of a line
    raw = draw(st.sampled_from([b"", b"\xef\xbb\xbf", b"\xef\xbb\xbf\xef\xbb\xbf"]))
    raw += b"".join(line + end for line, end in zip(lines, ends, strict=True))
    cuts = sorted(draw(st.lists(st.integers(0, len(raw)), max_size=20)))
    reads = [raw[a:b] for a, b in zip([0, *cuts], [*cuts, len(raw)], strict=True)]
    return raw, reads


_SPEC_CORNERS = b"id: a\x00b\ndata: x\n\nretry: -5\ndata: y\r\rretry:\xd9\xa1\ndata: z"


@settings(max_examples=500, deadline=None)
@given(_raw_stream())
@example((_SPEC_CORNERS, [_SPEC_CORNERS[:9], _SPEC_CORNERS[9:]]))
def test_any_reads_of_any_bytes_give_the_events_of_the_whatwg_reference(case):
    raw, reads = case
    expected = reference(raw)
    assert outcome([raw]) == expected
    assert outcome(reads) == expected
    assert outcome(raw[i : i + 1] for i in range(len(raw))) == expected


@settings(max_examples=500, deadline=None)
@given(_raw_stream(), st.integers(1, 40))
def test_the_event_cap_stops_at_the_same_point_whatever_the_reads(case, cap):
    raw, reads = case
    expected = reference(raw, cap)
    assert outcome([raw], cap) == expected
    assert outcome(reads, cap) == expected
    assert outcome((raw[i : i + 1] for i in range(len(raw))), cap) == expected


def test_retry_is_honoured_only_as_ascii_digits():
    stream = (
        "retry: 3000\ndata: a\n\n"
        "retry: 0012\ndata: b\n\n"
        "retry: 0\ndata: b0\n\n"
        "retry: 000\ndata: b000\n\n"
        "retry: -5\ndata: c\n\n"
        "retry:  7\ndata: d\n\n"  # the value is " 7"
        "retry: 7s\ndata: e\n\n"
        "retry: \u0661\u0662\ndata: f\n\n"  # Arabic-Indic digits: int() takes them, SSE not
        "retry:\ndata: g\n\n"
        f"retry: {'9' * 18}\ndata: h\n\n"
        f"retry: {'9' * 19}\ndata: i\n\n"
        f"retry: {'0' * 5000}42\ndata: j\n\n"
    )
    assert [(e.data, e.retry) for e in events(stream)] == [
        ("a", 3000),
        ("b", 12),
        ("b0", 0),
        ("b000", 0),
        ("c", None),
        ("d", None),
        ("e", None),
        ("f", None),
        ("g", None),
        ("h", 10**18 - 1),
        ("i", None),
        ("j", 42),
    ]


def test_an_id_with_a_nul_is_ignored():
    got = events("id: 1\ndata: a\n\nid: 2\x003\ndata: b\n\nid\ndata: c\n\n")
    assert [(e.data, e.id) for e in got] == [("a", "1"), ("b", "1"), ("c", "")]


def test_an_empty_read_between_cr_and_lf_is_still_one_line_end():
    assert datas("data: a\r", "", "\n", "", "data: b\r", "", "", "\n\r", "", "\n") == ["a\nb"]


def test_a_bom_split_across_reads_is_ignored_and_only_one_bom():
    assert datas(b"\xef", b"\xbb", b"\xbfdata: x\n\n") == ["x"]
    assert datas(b"\xef\xbb", b"\xbf", b"data: x\n\n") == ["x"]
    # a second BOM belongs to the first line: its field is "\ufeffdata", unknown
    assert datas(b"\xef\xbb\xbf\xef\xbb\xbfdata: x\n\ndata: y\n\n") == ["y"]
    # a BOM that is not at the start of the stream is data
    assert datas(b"data: \xef\xbb\xbfx\n\n") == ["\ufeffx"]
    # a stream shorter than a BOM
    assert datas(b"\xef\xbb") == []


def test_only_cr_and_lf_end_lines():
    # str.splitlines would also break at these; the SSE spec does not
    value = "a\x0bb\x0cc\x1cd\x1de\x1ef\x85g\u2028h\u2029i"
    assert datas(f"data: {value}\n\n") == [value]


def test_nothing_is_read_before_the_first_event_is_asked_for():
    taken: list[int] = []

    def reads() -> Iterator[bytes]:
        for i, read in enumerate([b"data: a\n\n", b"data: b\n\n"]):
            taken.append(i)
            yield read

    parsed = iter_sse(reads())
    assert taken == []
    assert next(parsed).data == "a"
    assert taken == [0]


def test_one_large_read_gives_every_event():
    body = b"".join(b"data: %d\r\n\r\n" % i for i in range(100_000))
    got = list(iter_sse([body]))
    assert len(got) == 100_000
    assert got[0].data == "0" and got[-1].data == "99999"


# --- max_event_bytes ---------------------------------------------------------------------


def _event_of(size: int) -> bytes:
    """One event whose field lines add up to exactly ``size`` bytes (size >= 20): an event
    name, several data lines, comments and CRLF line ends around them (not counted)."""
    head = b"event: delta"  # 12 bytes
    lines = [head]
    left = size - len(head)
    while left > 0:
        take = min(left, 10)
        if take < 6:  # a data line is at least b"data: " ... fold the rest into the last one
            lines[-1] += b"x" * take
        else:
            lines.append(b"data: " + b"x" * (take - 6))
        left -= take
    body = b": comment before\r\n" + b"\r\n: comment inside\r\n".join(lines) + b"\r\n\r\n"
    assert sum(len(line) for line in lines) == size
    return body


@pytest.mark.parametrize("size", [1, 3, 7, 10_000])
@pytest.mark.parametrize("cap", [20, 21, 64, 1000])
def test_an_event_of_exactly_the_cap_passes_and_one_byte_more_raises(cap, size):
    ok = _event_of(cap)
    assert outcome(_reads(ok, size), cap) == (list(iter_sse([ok])), None)
    assert len(outcome(_reads(ok, size), cap)[0]) == 1
    over = _event_of(cap + 1)
    assert outcome(_reads(ok + over + ok, size), cap) == (list(iter_sse([ok])), cap)


@pytest.mark.parametrize(
    ("stream", "reason"),
    [
        (b"data: " + b"x" * 100 + b"\n\n", "its lines add up to more than that"),
        (b"data: " + b"x" * 100, "a line has no end within it"),
        (b":" + b"x" * 100 + b"\n", "a comment line is longer than that"),
        (b":" + b"x" * 100, "a comment line is longer than that"),
    ],
)
def test_the_error_names_the_cap_its_value_and_the_option(stream, reason):
    with pytest.raises(ResponseTooLargeError) as info:
        list(iter_sse(_reads(stream, 50), max_event_bytes=100))
    err = info.value
    assert isinstance(err, ResponseDecodeError)
    assert err.limit == 100
    assert err.should_retry is False
    assert err.message == (
        f"a stream event is over the max_event_bytes cap of 100 bytes ({reason}); reading"
        " stopped there. If the provider really sends events this large, raise the provider"
        " option max_event_bytes."
    )


def _endless(read: bytes, taken: list[int], most: int = 20_000) -> Iterator[bytes]:
    """``read`` again and again (``most`` times: a broken cap fails the test instead of
    filling the machine's memory), counting the reads taken."""
    for _ in range(most):
        taken.append(1)
        yield read


def test_a_line_without_end_raises_as_soon_as_it_passes_the_cap():
    taken: list[int] = []
    with pytest.raises(ResponseTooLargeError) as info:
        list(iter_sse(_endless(b"x" * 1024, taken), max_event_bytes=64 * 1024))
    assert "no end" in str(info.value)
    assert len(taken) == 65  # 64 reads are exactly the cap; the 65th passes it


def test_a_long_data_line_split_across_many_reads_raises():
    taken: list[int] = []

    def reads() -> Iterator[bytes]:
        taken.append(1)
        yield b"data: "
        yield from _endless(b"y", taken)

    with pytest.raises(ResponseTooLargeError):
        list(iter_sse(reads(), max_event_bytes=5000))
    assert len(taken) == 5000 - 6 + 2  # "data: " then 4994 bytes to the cap, then one more


def test_an_event_of_many_data_lines_is_counted_as_a_whole():
    taken: list[int] = []
    with pytest.raises(ResponseTooLargeError) as info:
        list(iter_sse(_endless(b"data: x\n", taken), max_event_bytes=700))
    assert "add up" in str(info.value)
    assert len(taken) == 101  # 100 lines of 7 bytes are the cap; the 101st passes it


def test_the_count_starts_again_at_each_event():
    stream = b"data: x\n\n" * 10_000
    assert len(outcome([stream], 7)[0]) == 10_000
    assert outcome([stream], 6) == ([], 6)


def test_comment_lines_are_capped_alone_and_do_not_count_toward_the_event():
    comment = b":" + b"c" * 19  # 20 bytes
    event = b"data: " + b"x" * 14  # 20 bytes
    stream = (comment + b"\n") * 50 + event + b"\n\n"
    for size in (1, 7, len(stream)):
        assert outcome(_reads(stream, size), 20) == ([SSEEvent("x" * 14)], None)
        assert outcome(_reads(b":" + comment + b"\n" + stream, size), 20) == ([], 20)
        assert outcome(_reads(b":" + comment, size), 20) == ([], 20)  # no line end


def test_the_bom_does_not_count():
    stream = b"\xef\xbb\xbf" + b"data: " + b"x" * 14 + b"\n\n"
    assert outcome(_reads(stream, 1), 20) == ([SSEEvent("x" * 14)], None)


def _peak_until_capped(reads: Iterator[bytes], cap: int) -> int:
    """The peak of memory allocated (tracemalloc) while parsing ``reads`` until the cap
    stops them."""
    tracemalloc.start()
    try:
        with pytest.raises(ResponseTooLargeError):
            list(iter_sse(reads, max_event_bytes=cap))
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_stays_about_the_cap_against_a_128_mib_line():
    read = b"z" * (64 * 1024)  # one object sent 2048 times: the source holds nothing
    taken: list[int] = []

    def reads() -> Iterator[bytes]:
        for _ in range(2048):
            taken.append(1)
            yield read

    peak = _peak_until_capped(reads(), 1024 * 1024)
    assert len(taken) == 17
    assert peak < 3 * 1024 * 1024  # the cap held as pieces, plus bookkeeping


def test_memory_stays_about_the_cap_against_a_line_in_small_reads():
    taken: list[int] = []

    def reads() -> Iterator[bytes]:
        for _ in range(200_000):
            taken.append(1)
            yield bytes(bytearray(b"z" * 16))  # a new object each read, as from a socket

    peak = _peak_until_capped(reads(), 1024 * 1024)
    assert len(taken) == 1024 * 1024 // 16 + 1
    assert peak < 2 * 1024 * 1024  # one buffer, not 65,536 pieces of 16 bytes


def test_no_cap_by_default():
    big = b"data: " + b"x" * (4 * 1024 * 1024) + b"\n\n"
    assert [len(e.data) for e in iter_sse(_reads(big, 65536))] == [4 * 1024 * 1024]


@pytest.mark.parametrize("bad", [0, -1, True, 1.5, "1000"])
def test_a_bad_cap_is_a_configuration_error(bad):
    with pytest.raises(ConfigurationError) as info:
        iter_sse([b"data: x\n\n"], max_event_bytes=bad)
    assert "max_event_bytes" in str(info.value)
    assert repr(bad) in str(info.value)


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


# --- the decoder at its boundaries -------------------------------------------------------


def test_require_done_is_the_default():
    with pytest.raises(StreamError) as info:
        list(openai_chunks(sse_events(chunk("a")), provider="p", model="m"))
    assert info.value.message == (
        "the stream ended without its [DONE] terminator (connection cut or server error)"
    )


@pytest.mark.parametrize(
    ("payload", "retry"),
    [
        ({"error": "x", "error_type": "overloaded"}, True),
        ({"error": {"message": "x", "type": "server_error"}}, True),
        ({"error": {"message": "x", "type": "other", "code": "server_error"}}, True),
        ({"error": {"message": "x", "type": "other", "code": "rate_limit_exceeded"}}, True),
        ({"error": {"message": "x", "type": "invalid_request_error", "code": "bad"}}, False),
        ({"error": {"message": "x"}}, False),
    ],
)
def test_which_in_band_errors_are_retryable(payload, retry):
    err = stream_error_from_event(payload, provider="p", model="m")
    assert err.should_retry is retry
    assert (err.provider, err.model, err.partial_text) == ("p", "m", "")


def test_an_in_band_error_without_a_message_shows_the_payload():
    err = stream_error_from_event({"error": {"code": "c9"}}, provider="p", model="m")
    assert err.message == "the provider sent an error in the stream: {'error': {'code': 'c9'}}"
    err = stream_error_from_event(
        {"error": {"message": "m1", "code": "c9"}}, provider="p", model="m"
    )
    assert err.message == "the provider sent an error in the stream: m1"


def _failure(*events: SSEEvent, secrets: tuple[str, ...] = ()) -> StreamError:
    with pytest.raises(StreamError) as info:
        list(openai_chunks(events, provider="p", model="m", secrets=secrets))
    assert (info.value.provider, info.value.model) == ("p", "m")
    return info.value


_TWO = (SSEEvent(json.dumps(chunk("one "))), SSEEvent(json.dumps(chunk("two"))))


def test_a_text_error_event_is_cut_at_300_characters_and_redacted():
    secret = "tok-test-0123456789abcdef"
    err = _failure(*_TWO, SSEEvent(secret + "a" * 300 + "b" * 50, "error"), secrets=(secret,))
    assert err.message == "the provider sent an error event: " + "***" + "a" * 275
    assert err.partial_text == "one two"


def test_an_error_event_with_json_data_is_decoded_as_json():
    err = _failure(SSEEvent('  {"error": {"message": "bad", "code": "c1"}}', "error"))
    assert err.code == "c1"
    assert err.message == "the provider sent an error in the stream: bad"


def test_a_non_json_event_is_cut_at_200_characters_and_redacted():
    secret = "tok-test-0123456789abcdef"
    err = _failure(*_TWO, SSEEvent(secret + "x" * 200 + "y" * 50), secrets=(secret,))
    assert err.message == "a stream event is not JSON: " + repr(secret + "x" * 175).replace(
        secret, "***"
    )
    assert err.partial_text == "one two"


def test_an_in_band_error_keeps_the_text_so_far():
    err = _failure(*_TWO, SSEEvent(json.dumps({"error": {"message": "late"}})))
    assert err.partial_text == "one two"


def test_an_error_key_next_to_choices_is_a_chunk():
    got = decode({**chunk("ok"), "error": {"message": "ignored"}}, "[DONE]")
    assert [c.text for c in got] == ["ok"]


def test_chunk_from_dict_defaults():
    got = chunk_from_dict({"created": "soon"}, provider="p")
    assert (got.id, got.model, got.choices, got.created, got.usage) == ("", "", (), 0, None)
    assert chunk_from_dict({"usage": {"prompt_tokens": "x"}}, provider="p").usage is None
    assert chunk_from_dict({"created": 5, "model": "x"}, provider="p").created == 5


def test_bad_utf8_is_replaced_in_data_event_names_and_ids():
    (got,) = events(b"event: e\xff\nid: i\xfe\ndata: a\xc3\ndata: \xe2\x82\n\n")
    assert got == SSEEvent("a\ufffd\n\ufffd", "e\ufffd", "i\ufffd")


# --- stream_chat_completions over a real socket, and drain -------------------------------


@pytest.fixture
def served() -> Iterator[tuple[StandInServer, HttpTransport]]:
    with StandInServer() as server:
        transport = HttpTransport(
            provider="p", base_url=server.base_url, secrets=("tok-test-0123456789abcdef",)
        )
        try:
            yield server, transport
        finally:
            transport.close()


def test_stream_chat_completions_is_lazy_and_the_first_chunk_has_the_answer_headers(served):
    server, transport = served
    server.enqueue(Reply.sse([chunk("Hel"), chunk("lo")], headers={"x-request-id": "req-7"}))
    stream = stream_chat_completions(
        transport,
        "/chat/completions",
        {"model": "m", "stream": True},
        provider="p",
        model="m",
        params={"api-version": "v9"},
    )
    assert server.requests == []  # nothing is sent before next()
    got = list(stream)
    (request,) = server.requests
    assert request.query == {"api-version": ["v9"]}
    assert request.json() == {"model": "m", "stream": True}
    assert [c.text for c in got] == ["Hel", "lo"]
    assert [c.provider for c in got] == ["p", "p"]
    assert got[0].request_id == "req-7"
    assert got[0].headers is not None and got[0].headers["x-request-id"] == "req-7"
    assert (got[1].request_id, got[1].headers) == (None, None)


def test_stream_chat_completions_require_done(served):
    server, transport = served
    server.enqueue(Reply.sse([chunk("a")], done=False), Reply.sse([chunk("b")], done=False))
    with pytest.raises(StreamError) as info:
        list(stream_chat_completions(transport, "/chat/completions", {}, provider="p", model="m"))
    assert info.value.partial_text == "a"
    assert (info.value.provider, info.value.model) == ("p", "m")
    got = stream_chat_completions(
        transport, "/chat/completions", {}, provider="p", model="m", require_done=False
    )
    assert [c.text for c in got] == ["b"]


def test_stream_chat_completions_redacts_the_transport_secrets(served):
    server, transport = served
    leak = {"error": {"message": "key tok-test-0123456789abcdef is wrong", "code": "bad"}}
    server.enqueue(Reply.sse([leak]))
    with pytest.raises(StreamError) as info:
        list(stream_chat_completions(transport, "/chat/completions", {}, provider="p", model="m"))
    assert "tok-test-0123456789abcdef" not in info.value.message
    assert info.value.code == "bad"


def test_drain_reads_at_most_its_limit():
    source = iter([SSEEvent(str(i)) for i in range(20)])
    drain(source)
    assert next(source).data == "8"
    drain(source, limit=3)
    assert next(source).data == "12"


def test_stream_chat_completions_errors_before_the_stream_name_the_model(served):
    server, transport = served
    server.enqueue(Reply.error(400, "bad request"))
    with pytest.raises(BadRequestError) as info:
        list(stream_chat_completions(transport, "/chat/completions", {}, provider="p", model="m"))
    assert (info.value.provider, info.value.model, info.value.status_code) == ("p", "m", 400)
