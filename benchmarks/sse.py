"""Micro-benchmark of the SSE parser (``chatcore._sse.iter_sse``, no network): the cost per
event of the stream a provider really sends (the harness's 23-event body, one read per
event, in one read, in 7-byte reads), and large inputs that show whether splitting is linear
(8 MiB of events in one read, in 64-byte reads, 1 MiB in 1-byte reads, one 1 MiB line in
1 KiB reads).

``python -m benchmarks.sse`` prints the table; ``--parser FILE`` measures the ``iter_sse``
of another copy of ``_sse.py`` instead, and ``--baseline FILE`` measures one alongside
(taking turns) and prints the ratio, for a before/after::

    git show f450e10:chatcore/_sse.py > /tmp/old_sse.py
    python -m benchmarks.sse --baseline /tmp/old_sse.py
"""

from __future__ import annotations

import argparse
import importlib.util
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from benchmarks import payloads
from benchmarks.measure import median

Parser = Callable[[Iterable[bytes]], Iterator[Any]]

MIB = 1024 * 1024


def load_parser(path: str | None) -> Parser:
    """``iter_sse`` from chatcore, or from the ``_sse.py`` file at ``path``."""
    if path is None:
        from chatcore._sse import iter_sse

        return iter_sse
    spec = importlib.util.spec_from_file_location("_sse_under_test", Path(path))
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load a module from {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    parser: Parser = module.iter_sse
    return parser


def cut(raw: bytes, size: int) -> list[bytes]:
    """``raw`` as reads of ``size`` bytes."""
    return [raw[i : i + size] for i in range(0, len(raw), size)]


def _consume(parser: Parser, reads: list[bytes]) -> int:
    count = 0
    for _ in parser(reads):
        count += 1
    return count


def _timed(parser: Parser, reads: list[bytes], number: int) -> float:
    """Mean wall seconds of parsing ``reads`` to the end, over ``number`` runs."""
    start = time.perf_counter()
    for _ in range(number):
        _consume(parser, reads)
    return (time.perf_counter() - start) / number


def cases() -> list[tuple[str, list[bytes], int, int]]:
    """``(name, reads, events in it, per)``: ``per`` divides the time (events for the
    typical stream, so the figure is per event; 1 for the large inputs)."""
    body = payloads.sse_body()
    per_event = [b"data: " + line for line in body.split(b"data: ") if line]
    events = len(per_event)
    copies = 8 * MIB // len(body) + 1
    big = body * copies
    few = MIB // len(body) + 1
    line = b"data: " + b"x" * MIB + b"\n\n"
    return [
        (f"typical stream ({events} events), one read per event", per_event, events, events),
        (f"typical stream ({events} events), one read", [body], events, events),
        (f"typical stream ({events} events), 7-byte reads", cut(body, 7), events, events),
        (f"8 MiB of events ({events * copies}), one read", [big], events * copies, 1),
        (f"8 MiB of events ({events * copies}), 64-byte reads", cut(big, 64), events * copies, 1),
        (f"1 MiB of events ({events * few}), 1-byte reads", cut(body * few, 1), events * few, 1),
        ("one 1 MiB line, 1 KiB reads", cut(line, 1024), 1, 1),
    ]


def rows(parsers: dict[str, Parser], repeats: int = 5) -> list[tuple[str, dict[str, float], str]]:
    """``(case, {parser: value}, unit)``: microseconds per event for the typical stream,
    seconds for the large inputs. The parsers take turns within each repeat, so a burst of
    other work on the machine hits them alike; each value is the median over repeats."""
    out: list[tuple[str, dict[str, float], str]] = []
    for name, reads, expected, per in cases():
        for parser in parsers.values():
            assert _consume(parser, reads) == expected
        small = per > 1
        number = 1
        if small:  # about 50 ms per timing
            first = next(iter(parsers.values()))
            number = max(1, int(0.05 / max(_timed(first, reads, 1), 1e-9)))
        took: dict[str, list[float]] = {label: [] for label in parsers}
        for _ in range(repeats):
            for label, parser in parsers.items():
                took[label].append(_timed(parser, reads, number) / per)
        scale = 1e6 if small else 1.0
        values = {label: median(t) * scale for label, t in took.items()}
        out.append((name, values, "us/event" if small else "s"))
    return out


def main(argv: list[str] | None = None) -> None:
    args = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    args.add_argument("--parser", help="a _sse.py file whose iter_sse to measure")
    args.add_argument("--baseline", help="a _sse.py file to measure alongside, for a ratio")
    args.add_argument("--repeats", type=int, default=5)
    options = args.parse_args(argv)
    parsers = {options.parser or "chatcore._sse": load_parser(options.parser)}
    if options.baseline:
        parsers[options.baseline] = load_parser(options.baseline)
    labels = list(parsers)
    head = " | ".join(labels)
    ratio = len(labels) == 2
    print(f"| case | {head} | unit |" + (" ratio |" if ratio else ""))
    print("| --- |" + " ---: |" * len(labels) + " --- |" + (" ---: |" if ratio else ""))
    for name, values, unit in rows(parsers, options.repeats):
        cells = " | ".join(f"{values[label]:.3f}" for label in labels)
        extra = f" {values[labels[0]] / values[labels[1]]:.2f}x |" if ratio else ""
        print(f"| {name} | {cells} | {unit} |{extra}")


if __name__ == "__main__":
    main()
