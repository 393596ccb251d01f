"""The benchmark report: targets (the performance budget, in :func:`evaluate`), the Markdown
report (``docs/benchmarks.md``), its charts (SVG under ``docs/assets/benchmarks/``) and the
figures of the README, all drawn from one results file.

``python -m benchmarks.run`` measures, writes ``benchmarks/results/results.json`` and
publishes; ``python -m benchmarks.report`` publishes again from a results file without
measuring (``--check``: exit 1 when a published file differs from what the results give).
"""

# ruff: noqa: E501  (Markdown table templates read better on one line each)

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

from benchmarks import charts as svg
from benchmarks import payloads

ROOT = Path(__file__).resolve().parents[1]
#: The results the published figures come from (committed with them).
RESULTS = ROOT / "benchmarks" / "results" / "results.json"
DOC = Path("docs") / "benchmarks.md"
CHART_DIR = Path("docs") / "assets" / "benchmarks"
README = Path("README.md")
README_START = "<!-- benchmarks:start (written by python -m benchmarks.report; do not edit) -->"
README_END = "<!-- benchmarks:end -->"

REQ = "requests.Session (bare)"
CC = "chatcore Client.chat"
CACHED = "chatcore Client.chat (cache hit)"
AIO = "aiohttp (bare)"
ACC = "chatcore AsyncClient"
AOAI = "AsyncOpenAI (OpenAI SDK)"
FULL_MISS = "chatcore AsyncClient, cache + limiter + metrics (miss)"
FULL_HIT = "chatcore AsyncClient, cache + limiter + metrics (hit)"
MB = 1024.0  # KiB per MiB

MARK = {"pass": "✅ pass", "fail": "❌ FAIL", "na": "— not measured"}


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or not b:
        return None
    return a / b


def _get(d: dict[str, Any] | None, *keys: str) -> Any:
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def evaluate(r: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per target: name, measured, budget, status (pass / fail / na), note."""
    rows: list[dict[str, Any]] = []

    def add(
        name: str, value: float | None, fmt: str, budget: str, ok: bool | None, note: str = ""
    ) -> None:
        rows.append(
            {
                "name": name,
                "value": value,
                "measured": "n/a" if value is None else fmt.format(value),
                "budget": budget,
                "status": "na" if value is None or ok is None else ("pass" if ok else "fail"),
                "note": note,
            }
        )

    chat = _ratio(_get(r, "chat", CC, "median_us"), _get(r, "chat", REQ, "median_us"))
    note = ""
    if chat is not None:
        note = "stretch 0.70x met" if chat <= 0.7 else "stretch 0.70x not met"
    add(
        "Client.chat vs bare requests.Session.post (median per call)",
        chat,
        "{:.2f}x",
        "<= 1.00x (stretch 0.70x)",
        None if chat is None else chat <= 1.0,
        note,
    )
    guard = chat
    add(
        "Client.chat vs bare requests (issue guard for the async work: must stay <= 0.90x)",
        guard,
        "{:.2f}x",
        "<= 0.90x",
        None if guard is None else guard <= 0.9,
        _cpu_note(r, "chat", CC, REQ),
    )
    stream = _ratio(_get(r, "stream", CC, "median_us"), _get(r, "stream", REQ, "median_us"))
    add(
        "Client.stream vs bare requests iter_lines (per stream; whole body in one piece)",
        stream,
        "{:.2f}x",
        "<= 1.05x",
        None if stream is None else stream <= 1.05,
        _cpu_note(r, "stream", CC, REQ),
    )
    chunked = _ratio(
        _get(r, "stream_chunked", CC, "cpu_us"), _get(r, "stream_chunked", REQ, "cpu_us")
    )
    add(
        "Client.stream vs bare requests iter_lines, one HTTP chunk per event (CPU per stream)",
        chunked,
        "{:.2f}x",
        "<= 1.05x",
        None if chunked is None else chunked <= 1.05,
    )
    thr = _ratio(_get(r, "threads", CC, "calls_per_s"), _get(r, "threads", REQ, "calls_per_s"))
    add(
        "8-thread throughput vs bare requests (shared client)",
        thr,
        "{:.2f}x",
        ">= 0.95x",
        None if thr is None else thr >= 0.95,
    )
    _async_targets(r, add)
    imp = _ratio(
        _get(r, "imports", "import chatcore", "ms"), _get(r, "imports", "import requests", "ms")
    )
    add(
        "import chatcore vs import requests (fresh interpreter)",
        imp,
        "{:.2f}x",
        "<= 1.50x",
        None if imp is None else imp <= 1.5,
    )
    plug = _get(r, "imports", "import chatcore_openai (after chatcore)", "ms")
    add(
        "import chatcore_openai adds",
        plug,
        "{:.1f} ms",
        "<= 30 ms",
        None if plug is None else plug <= 30,
    )
    first = _get(r, "imports", "chatcore_openai provider modules (first use, after chatcore)", "ms")
    add(
        "chatcore_openai + its provider modules (loaded on first use; includes what the core "
        "defers to first use, e.g. requests)",
        first,
        "{:.1f} ms",
        "(no budget; reported)",
        None,
    )
    cold = _ratio(
        _get(r, "imports", "cold start: import chatcore + Client() + provider", "ms"),
        _get(r, "imports", "import requests", "ms"),
    )
    add(
        "cold start (import chatcore + Client() + provider) vs import requests",
        cold,
        "{:.2f}x",
        "(no budget; reported)",
        None,
    )
    hit = _get(r, "chat", CACHED, "median_us")
    add(
        "cache hit: Client.chat served from the cache",
        hit,
        "{:.1f} us",
        "<= 50 us",
        None if hit is None else hit <= 50,
    )
    raw = _get(r, "micro", "InMemoryCache.get (hit)")
    add(
        "cache hit: raw InMemoryCache.get",
        raw,
        "{:.2f} us",
        "<= 50 us",
        None if raw is None else raw <= 50,
    )
    lim = _get(r, "micro", "InMemoryRateLimiter.acquire (uncontended)")
    add(
        "uncontended InMemoryRateLimiter.acquire",
        lim,
        "{:.2f} us",
        "<= 10 us",
        None if lim is None else lim <= 10,
    )
    mem = _get(r, "memory", "rss_delta_kib")
    calls = _get(r, "memory", "calls")
    mem_note = ""
    if calls is not None and calls < 100_000:
        mem_note = f"over {calls:,} calls (--quick); run --full for 100,000"
    add(
        "memory: RSS growth over the run (after warm-up)",
        None if mem is None else mem / MB,
        "{:+.2f} MB",
        "within 5 MB over 100,000 calls",
        None if mem is None else abs(mem / MB) <= 5,
        mem_note,
    )
    retry = _get(r, "micro", "RetryPolicy.call overhead")
    add(
        "retry bookkeeping per call (RetryPolicy.call vs direct call)",
        retry,
        "{:.1f} us",
        "(no budget; reported)",
        None,
    )
    for row in rows:
        if row["budget"].startswith("(no budget") and row["value"] is not None:
            row["status"] = "info"
    return rows


def _cpu_note(r: dict[str, Any], section: str, a: str, b: str) -> str:
    cpu = _ratio(_get(r, section, a, "cpu_us"), _get(r, section, b, "cpu_us"))
    return "" if cpu is None else f"CPU {cpu:.2f}x"


def _async_targets(r: dict[str, Any], add: Any) -> None:
    """The async section's targets (issue: AsyncClient within 1.5x of bare aiohttp's CPU,
    >= 0.8x its throughput and >= 3x AsyncOpenAI's against a slow server)."""
    a = r.get("async")
    if not a:
        return
    st = _get(a, "stream", "chunked")
    if st:
        v = _ratio(_get(st, ACC, "cpu_us"), _get(st, AIO, "cpu_us"))
        add(
            "AsyncClient.stream vs bare aiohttp, one HTTP chunk per event (CPU per stream)",
            v,
            "{:.2f}x",
            "<= 1.50x",
            None if v is None else v <= 1.5,
        )
    st = _get(a, "stream", "whole")
    if st:
        v = _ratio(_get(st, ACC, "cpu_us"), _get(st, AIO, "cpu_us"))
        add(
            "AsyncClient.stream vs bare aiohttp, whole body in one piece (CPU per stream)",
            v,
            "{:.2f}x",
            "(no budget; reported)",
            None,
        )
    for level, res in (a.get("fast") or {}).items():
        v = _ratio(_get(res, ACC, "cpu_us"), _get(res, AIO, "cpu_us"))
        peer = _ratio(_get(res, AOAI, "cpu_us"), _get(res, AIO, "cpu_us"))
        add(
            f"AsyncClient.chat vs bare aiohttp, fast server, {level} in flight (CPU per call)",
            v,
            "{:.2f}x",
            "<= 1.50x",
            None if v is None else v <= 1.5,
            "" if peer is None else f"AsyncOpenAI {peer:.2f}x",
        )
    slow = a.get("slow") or {}
    for kind, unit in (("chat", "calls/s"), ("stream", "streams/s")):
        for level, res in (slow.get(kind) or {}).items():
            what = "chat (0.3 s)" if kind == "chat" else "streams (20 ms gaps)"
            mine = _get(res, ACC, "per_s")
            v = _ratio(mine, _get(res, AIO, "per_s"))
            note = "" if mine is None else f"{mine:,.0f} {unit}"
            add(
                f"AsyncClient throughput vs bare aiohttp, slow server, {what}, {level} in flight",
                v,
                "{:.2f}x",
                ">= 0.80x",
                None if v is None else v >= 0.8,
                note,
            )
            v = _ratio(mine, _get(res, AOAI, "per_s"))
            add(
                f"AsyncClient throughput vs AsyncOpenAI, slow server, {what}, {level} in flight",
                v,
                "{:.2f}x",
                ">= 3.00x",
                None if v is None else v >= 3.0,
            )
    for level, res in (a.get("memory") or {}).items():
        mine = _get(res, ACC, "kib_per_stream")
        others = ", ".join(
            f"{name} {row['kib_per_stream']:.1f} KiB"
            for name, row in res.items()
            if name != ACC and isinstance(row, dict)
        )
        add(
            f"memory per slow stream in flight ({level} in flight; RSS delta / in flight)",
            mine,
            "{:.1f} KiB",
            "(no budget; reported)",
            None,
            others,
        )
    pipe = _get(a, "pipeline", "1")
    if pipe:
        v = _ratio(_get(pipe, FULL_MISS, "cpu_us"), _get(pipe, ACC, "cpu_us"))
        add(
            "async pipeline with cache + limiter + metrics, cache miss, vs default AsyncClient "
            "(CPU per call, 1 in flight)",
            v,
            "{:.2f}x",
            "(no budget; reported)",
            None,
        )
        hit = _get(pipe, FULL_HIT, "cpu_us")
        add(
            "async pipeline cache hit: AsyncClient.chat served from the cache (CPU per call)",
            hit,
            "{:.1f} us",
            "(no budget; reported)",
            None,
        )


def _us(v: float | None, digits: int = 0) -> str:
    if v is None:
        return "n/a"
    return f"{v:,.{digits}f}"


def _x(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.2f}x"


def markdown(r: dict[str, Any]) -> str:
    m = r["machine"]
    cfg = r["config"]
    L: list[str] = []
    w = L.append
    w("# chatcore benchmarks")
    w("")
    w(
        f"Generated by `{r['command']}` on {r['date']} ({r['mode']} mode, {r.get('elapsed_s', 0):.0f} s). "
        "This file is written by the harness: re-run it rather than editing the numbers. "
        "How the harness works: `benchmarks/README.md`; the budget is the Budget column below "
        "(kept in `benchmarks/report.py`); the raw figures are in `benchmarks/results/results.json`, "
        "the charts are drawn from them."
    )
    w("")
    glance = charts(r)
    if glance:
        w("## At a glance")
        w("")
        w(
            "Drawn from the same results as the tables below (shorter bars are faster; "
            "higher lines serve more)."
        )
        w("")
        for name, (_, alt) in glance.items():
            w(f"![{alt}](assets/benchmarks/{name}){{ .bench-chart }}")
            w("")
    w("## Targets")
    w("")
    w("| Target | Measured | Budget | Result |")
    w("| --- | ---: | --- | --- |")
    for t in r["targets"]:
        status = MARK.get(t["status"], "info")
        note = f" ({t['note']})" if t["note"] else ""
        w(f"| {t['name']} | {t['measured']} | {t['budget']} | {status}{note} |")
    w("")
    w(
        "Ratios compare chatcore with bare `requests.Session` (sync) or bare aiohttp (async) measured in the same run "
        "against the same server; the async throughput rows also with AsyncOpenAI."
    )
    w("")

    w("## Machine and setup")
    w("")
    v = m["versions"]
    w(
        f"- CPU: {m['cpu']}; {m['cores']} cores ({m['usable_cores']} usable); memory {m.get('memory') or 'n/a'}; {m['os']}"
    )
    w(f"- Python: {m['python']}")
    vers = ", ".join(
        f"{k} {val}"
        for k, val in v.items()
        if val
        and k
        in (
            "chatcore",
            "chatcore-openai",
            "requests",
            "urllib3",
            "aiohttp",
            "openai",
            "httpx",
            "httpx2",
            "litellm",
            "pyinstrument",
        )
    )
    missing = ", ".join(k for k in ("openai", "litellm") if not v.get(k))
    w(f"- Versions: {vers}" + (f"; not installed: {missing}" if missing else ""))
    w(
        f"- Server: **{r['server']['kind']}**: {r['server']['description']}; bound to 127.0.0.1 on a free port; "
        f"`POST {payloads.CHAT_PATH}` answers a fixed {len(payloads.chat_body())}-byte `chat.completion`, "
        f"`POST {payloads.STREAM_PATH}` a fixed SSE body of {payloads.STREAM_EVENT_COUNT} events + `[DONE]` "
        f"({len(payloads.sse_body()):,} bytes, one piece, Content-Length); "
        f"`POST {payloads.CHUNKED_PREFIX}/chat/completions` the same events each as its own HTTP chunk "
        f"(chunked transfer encoding, flushed one event at a time); `POST {payloads.SLOW_PREFIX}/chat/completions` "
        f"the chat after {payloads.SLOW_CHAT_DELAY:g} s; `POST {payloads.SLOW_STREAM_PREFIX}/chat/completions` "
        f"the stream one chunk per event, the role chunk at once and the 20 content chunks "
        f"{payloads.SLOW_STREAM_GAP * 1000:g} ms apart (21 events 20 ms apart, then finish, usage and `[DONE]`; "
        f"{sum(payloads.slow_stream_gaps()):.1f} s a stream)"
    )
    if r.get("pinning"):
        w(f"- Pinning: {r['pinning']}")
    if r.get("note"):
        w(f"- Note: {r['note']}")
    if r.get("proxy_note"):
        w(f"- Note: {r['proxy_note']}")
    w(f"- Commit: {m.get('git') or 'n/a'}; date: {r['date']}")
    if m.get("load_start"):
        w(
            f"- Load average (1/5/15 min) at start: {m['load_start']}; at end: {m.get('load_end')} "
            f"(above ~{max(1, (m['usable_cores'] or 2) - 1)} other work was running: absolute figures are noisy, "
            "same-run ratios less so)"
        )
    w(
        f"- Reproduce: `{r['command']}` from the repository root (`--full` for the 100,000-call memory figure and 7 repeats; peers need `openai litellm pyinstrument` installed in the interpreter that runs the harness: a separate venv, see benchmarks/README.md)"
    )
    w("")

    if "chat" in r:
        w(
            f"## Sequential chat ({cfg['calls']:,} calls x {cfg['repeats']} repeats per client, interleaved)"
        )
        w("")
        w(
            "Each call builds the request, sends it, parses the JSON and checks the text. "
            "Median per call = median over repeats of the per-call median; wall = batch time / calls; "
            "CPU = process CPU time / calls (the server runs in another process)."
        )
        w("")
        w(
            "| Client | median per call (us) | mean wall per call (us) | CPU per call (us) | vs bare requests |"
        )
        w("| --- | ---: | ---: | ---: | ---: |")
        base = _get(r, "chat", REQ, "median_us")
        for name, res in r["chat"].items():
            w(
                f"| {name} | {_us(res['median_us'])} | {_us(res['wall_us'])} | {_us(res['cpu_us'])} | {_x(_ratio(res['median_us'], base))} |"
            )
        w("")
        w(
            "The *what-if* row is not a product: it shows what a "
            "requests-based transport costs when it prepares a request template once and calls "
            "`Session.send` with the environment settings resolved once."
        )
        w("")
    if "stream" in r:
        w(
            f"## Streaming ({payloads.STREAM_EVENT_COUNT} events per stream, {cfg['stream_repeats']} repeats)"
        )
        for key, title in (
            ("stream", "Whole body in one piece (Content-Length): the client's parsing cost"),
            (
                "stream_chunked",
                "One HTTP chunk per event (chunked transfer encoding, one flush per event), as real servers stream",
            ),
        ):
            if key not in r:
                continue
            w("")
            w(f"{title}:")
            w("")
            w(
                "| Client | per stream (us) | per event (us) | time to first chunk (us) | CPU per stream (us) | streams per repeat | vs bare requests (per stream) | CPU vs bare requests |"
            )
            w("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
            base = _get(r, key, REQ, "median_us")
            cbase = _get(r, key, REQ, "cpu_us")
            for name, res in r[key].items():
                name = name.replace("Client.chat", "Client.stream")
                w(
                    f"| {name} | {_us(res['median_us'])} | {_us(res['per_chunk_us'], 1)} | {_us(res['ttfc_us'])} | {_us(res['cpu_us'])} | {res['streams']} | {_x(_ratio(res['median_us'], base))} | {_x(_ratio(res['cpu_us'], cbase))} |"
                )
        conns = r.get("stream_connections") or {}
        if conns:
            w("")
            w(
                "TCP connections opened over the whole run (keep-alive check; chatcore uses one client for "
                "chat and one for streams): "
                + ", ".join(f"{k}: {v}" for k, v in conns.items() if v is not None)
                + "."
            )
        w("")
    if "threads" in r:
        t0 = next(iter(r["threads"].values()))
        w(
            f"## Throughput, {t0['threads']} threads x {t0['per_thread']} calls ({t0['repeats']} repeats, median)"
        )
        w("")
        w(
            "One shared client per library (requests: one `Session`, pooled; chatcore: one `Client`); "
            "http.client: one kept-alive connection per thread. The machine has "
            f"{m['usable_cores']} cores and the server takes one of them."
        )
        w("")
        w("| Client | calls/s | CPU per call (us) | vs bare requests |")
        w("| --- | ---: | ---: | ---: |")
        base = _get(r, "threads", REQ, "calls_per_s")
        for name, res in r["threads"].items():
            w(
                f"| {name} | {_us(res['calls_per_s'])} | {_us(res['cpu_us'])} | {_x(_ratio(res['calls_per_s'], base))} |"
            )
        w("")
    if r.get("async"):
        _async_markdown(r, w)
    if "imports" in r:
        w("## Import time and memory (fresh interpreter each run, median)")
        w("")
        w(
            "Time of the import statement alone (interpreter start-up excluded); peak RSS of the process after it."
        )
        w("")
        w("| Case | time (ms) | peak RSS (MB) | runs |")
        w("| --- | ---: | ---: | ---: |")
        for name, res in r["imports"].items():
            w(f"| {name} | {res['ms']:.1f} | {res['rss_mb']:.1f} | {res['runs']} |")
        w("")
        it = r.get("importtime")
        if it:
            w(
                f'`python -X importtime -c "import chatcore"` (self time summed by top-level package; total {it["total_self_us"] / 1000:.0f} ms; the run writes the full log beside its results):'
            )
            w("")
            w("| Package | self time (ms) |")
            w("| --- | ---: |")
            for pkg, us in it["by_package"][:12]:
                w(f"| {pkg} | {us / 1000:.1f} |")
            w("")
            w("Slowest single modules (self time):")
            w("")
            w("| Module | self (ms) | cumulative (ms) |")
            w("| --- | ---: | ---: |")
            for row in it["top_self"][:10]:
                w(
                    f"| {row['module']} | {row['self_us'] / 1000:.1f} | {row['cumulative_us'] / 1000:.1f} |"
                )
            w("")
    if "memory" in r:
        mem = r["memory"]
        w(f"## Memory over {mem['calls']:,} calls (fresh process, after a 2,000-call warm-up)")
        w("")
        cps = ", ".join(f"{n:,}: {k / MB:.1f}" for n, k in mem["checkpoints"])
        w(
            f"- RSS before {mem['rss_before_kib'] / MB:.1f} MB, after {mem['rss_after_kib'] / MB:.1f} MB "
            f"(delta {mem['rss_delta_kib'] / MB:+.2f} MB, max {mem['rss_max_kib'] / MB:.1f} MB); "
            f"{mem['calls'] / mem['seconds']:,.0f} calls/s"
        )
        w(f"- RSS at each tenth (calls: MB): {cps}")
        w(
            f"- gc-tracked objects: {mem['gc_objects_before']:,} before, {mem['gc_objects_after']:,} after"
        )
        if "tracemalloc_calls" in mem:
            w(
                f"- tracemalloc over {mem['tracemalloc_calls']:,} further calls: net {mem['tracemalloc_net_bytes']:+,} bytes; largest growth: "
                + "; ".join(
                    f"`{t['where']}` {t['size_diff']:+,} B" for t in mem["tracemalloc_top"][:3]
                )
            )
        w("")
    if "micro" in r:
        w("## Micro-benchmarks (timeit, median, no network)")
        w("")
        w("| Operation | us per call |")
        w("| --- | ---: |")
        for name, us in r["micro"].items():
            w(f"| {name} | {us:.2f} |")
        w("")
        w("What `Client.chat` spends in each of its parts (each measured alone; informational):")
        w("")
        w("| Stage | us | where |")
        w("| --- | ---: | --- |")
        for name, us, where in r.get("stages", []):
            w(f"| {name} | {us:.2f} | {where} |")
        w("")
        w(
            "What `requests.Session.request` spends per call before any I/O (paid by chatcore's transport and by bare requests alike):"
        )
        w("")
        w("| Stage | us | where |")
        w("| --- | ---: | --- |")
        for name, us, where in r.get("requests_stages", []):
            w(f"| {name} | {us:.2f} | {where} |")
        w("")
    if "profile" in r:
        p = r["profile"]
        w(f"## Profile of `client.chat` (cProfile, {p['chatcore']['calls']:,} calls)")
        w("")
        w(
            f"cProfile inflates everything (profiled: {p['chatcore']['us_per_call_profiled']:,.0f} us per chatcore call, "
            f"{p['requests']['us_per_call_profiled']:,.0f} us per bare requests call): read the shares, not the absolute numbers. "
            "The run writes the raw stats (`.pstats` and text) beside its results"
            + (" and a pyinstrument call tree." if p.get("pyinstrument") else ".")
        )
        w("")
        w("| Function (cumulative) | chatcore us/call | share | bare requests us/call |")
        w("| --- | ---: | ---: | ---: |")
        total = p["chatcore"]["us_per_call_profiled"]
        req = {h["label"]: h["us_per_call"] for h in p["requests"]["hotspots"]}
        for h in p["chatcore"]["hotspots"]:
            other = req.get(h["label"])
            w(
                f"| {h['label']} | {h['us_per_call']:,.1f} | {h['us_per_call'] / total:.0%} | {'' if other is None else f'{other:,.1f}'} |"
            )
        w("")
        st = p.get("chatcore_stream_chunked")
        if st:
            req = {
                h["label"]: h["us_per_call"]
                for h in p.get("requests_stream_chunked", {}).get("hotspots", [])
            }
            rq = p.get("requests_stream_chunked", {}).get("us_per_call_profiled")
            w(
                f"Streaming, one HTTP chunk per event ({st['calls']:,} streams; profiled {st['us_per_call_profiled']:,.0f} us per stream"
                + (f", bare requests {rq:,.0f} us" if rq else "")
                + "):"
            )
            w("")
            w("| Function (cumulative) | us/stream | share | bare requests us/stream |")
            w("| --- | ---: | ---: | ---: |")
            for h in st["hotspots"]:
                other = req.get(h["label"])
                w(
                    f"| {h['label']} | {h['us_per_call']:,.1f} | {h['us_per_call'] / st['us_per_call_profiled']:.0%} | {'' if other is None else f'{other:,.1f}'} |"
                )
            w("")
        st = p.get("chatcore_stream")
        if st:
            w(
                f"Streaming, whole body in one piece ({st['calls']:,} streams, {payloads.STREAM_EVENT_COUNT} events each; profiled {st['us_per_call_profiled']:,.0f} us per stream):"
            )
            w("")
            w("| Function (cumulative) | us/stream | share |")
            w("| --- | ---: | ---: |")
            for h in st["hotspots"]:
                w(
                    f"| {h['label']} | {h['us_per_call']:,.1f} | {h['us_per_call'] / st['us_per_call_profiled']:.0%} |"
                )
            w("")
        w("Top functions by self time (chatcore):")
        w("")
        w("| Function | self us/call | cumulative us/call | calls per chat |")
        w("| --- | ---: | ---: | ---: |")
        for t in p["chatcore"]["top_self"][:12]:
            w(
                f"| `{t['function']}` | {t['self_us_per_call']:.1f} | {t['cum_us_per_call']:.1f} | {t['ncalls_per_call']:.0f} |"
            )
        w("")
    if r.get("section_seconds"):
        w(
            "Harness time per section (s): "
            + ", ".join(f"{k} {v}" for k, v in r["section_seconds"].items())
            + "."
        )
        w("")
    if r.get("section_load"):
        w(
            "Load average (1/5/15 min) at the end of each section: "
            + "; ".join(f"{k} {v}" for k, v in r["section_load"].items())
            + "."
        )
        w("")
    if r.get("skipped"):
        w("## Skipped")
        w("")
        for name, why in r["skipped"].items():
            w(f"- {name}: {why}")
        w("")
    return tidy_paths("\n".join(L))


def _async_markdown(r: dict[str, Any], w: Any) -> None:
    a = r["async"]
    cfg = a.get("config", {})
    load = a.get("load") or {}
    w("## Async: chatcore.AsyncClient vs bare aiohttp and AsyncOpenAI")
    w("")
    pinned = a.get("affinity")
    w(
        "Run by `benchmarks/async_bench.py` in a fresh interpreter"
        + (f" pinned to core {pinned[0]}" if pinned and len(pinned) == 1 else "")
        + " (the server on the other), against the same server. Each call builds the request, sends it, parses the "
        "JSON (or every event) and checks the text. **Connection limit = calls in flight for every client**: "
        "chatcore's `AsyncClient` gets the provider option `pool_maxsize=N` (its aiohttp `TCPConnector(limit=...)`; "
        "the default, 32, would cap it below the others at 64 in flight and more), bare aiohttp `TCPConnector(limit=N)`, "
        "AsyncOpenAI an `http_client=DefaultAsyncHttpxClient(limits=Limits(max_connections=N, max_keepalive_connections=N))` "
        "(its default: 1,000, 100 kept alive). N tasks pull calls from one count; CPU = process CPU time / calls; "
        "each repeat runs one batch per client, the order rotating; medians over repeats. Versions: "
        + ", ".join(f"{k} {v}" for k, v in (a.get("versions") or {}).items())
        + "."
    )
    w("")
    fast = a.get("fast")
    if fast:
        w(
            f"### Chat, fast server ({cfg.get('fast_calls', 0):,} calls per batch, half at 1 in flight, a share of {cfg.get('peer_share', 1):g} for AsyncOpenAI; {cfg.get('fast_repeats')} repeats)"
        )
        w("")
        w("| Client | in flight | CPU per call (us) | calls/s | CPU vs bare aiohttp |")
        w("| --- | ---: | ---: | ---: | ---: |")
        for level, res in fast.items():
            base = _get(res, AIO, "cpu_us")
            for name, row in res.items():
                w(
                    f"| {name} | {level} | {_us(row['cpu_us'])} | {_us(row['per_s'])} | {_x(_ratio(row['cpu_us'], base))} |"
                )
        w("")
    st = a.get("stream")
    if st:
        w(
            f"### Streams one at a time, fast server ({cfg.get('streams', 0):,} streams per batch, a share of {cfg.get('peer_share', 1):g} for AsyncOpenAI; {cfg.get('stream_repeats')} repeats, {payloads.STREAM_EVENT_COUNT} events each)"
        )
        w("")
        w("| Client | served as | CPU per stream (us) | streams/s | CPU vs bare aiohttp |")
        w("| --- | --- | ---: | ---: | ---: |")
        for route, res in st.items():
            base = _get(res, AIO, "cpu_us")
            label = "one HTTP chunk per event" if route == "chunked" else "whole body, one piece"
            for name, row in res.items():
                w(
                    f"| {name} | {label} | {_us(row['cpu_us'])} | {_us(row['per_s'])} | {_x(_ratio(row['cpu_us'], base))} |"
                )
        w("")
    slow = a.get("slow")
    if slow:
        w(
            f"### Throughput against a slow server (chat answered after {payloads.SLOW_CHAT_DELAY:g} s; streams of 21 events "
            f"{payloads.SLOW_STREAM_GAP * 1000:g} ms apart)"
        )
        w("")
        w(
            f"Batches of {cfg.get('slow_rounds')} chats (or {cfg.get('slow_stream_rounds')} streams) per task in flight "
            f"({cfg.get('slow_peer_rounds')} for AsyncOpenAI, which is CPU-bound there), {cfg.get('slow_repeats')} repeats; "
            "the ceiling is in flight / latency (e.g. 1,024 / 0.3 s = 3,413 calls/s) unless the one client core runs out first."
        )
        w("")
        w(
            "| Client | what | in flight | per second | CPU per call or stream (us) | vs bare aiohttp | vs AsyncOpenAI |"
        )
        w("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
        for kind, label in (("chat", "chat calls"), ("stream", "streams")):
            for level, res in (slow.get(kind) or {}).items():
                base = _get(res, AIO, "per_s")
                peer = _get(res, AOAI, "per_s")
                for name, row in res.items():
                    w(
                        f"| {name} | {label} | {level} | {_us(row['per_s'])} | {_us(row['cpu_us'])} | {_x(_ratio(row['per_s'], base))} | {_x(_ratio(row['per_s'], peer))} |"
                    )
        w("")
    mem = a.get("memory")
    if mem:
        w("### Memory per stream in flight (slow streams; a fresh process per client)")
        w("")
        w(
            "After 20 streams one at a time (imports, first-use caches), RSS is read, then N slow streams are opened at "
            "once (N new connections) and RSS is sampled every 10 ms while they run: per stream = (peak - before) / N."
        )
        w("")
        w(
            "| Client | in flight | RSS before (MB) | peak (MB) | per stream in flight (KiB) | batch time (s) |"
        )
        w("| --- | ---: | ---: | ---: | ---: | ---: |")
        for level, res in mem.items():
            for name, row in res.items():
                w(
                    f"| {name} | {level} | {row['rss_before_kib'] / MB:.1f} | {row['rss_peak_kib'] / MB:.1f} | {row['kib_per_stream']:.1f} | {row['seconds']:.2f} |"
                )
        w("")
    pipe = a.get("pipeline")
    if pipe:
        w(
            f"### Async pipeline with the cache, the in-memory limiter and metrics ({cfg.get('pipeline_calls', 0):,} calls per batch, {cfg.get('pipeline_repeats')} repeats)"
        )
        w("")
        w(
            "`AsyncClient(cache=True, rate_limits={'openai': {'rps': 1e6, 'tpm': 1e12}})` (generous: never waits, but "
            "every acquire, reconcile and observe runs; metrics are always on). *miss*: a new prompt each call (cache "
            "key, lookup, HTTP, store); *hit*: one prompt repeated (served from the cache, no HTTP)."
        )
        w("")
        w(
            "| Client | in flight | CPU per call (us) | calls/s | CPU vs bare aiohttp | CPU vs default AsyncClient |"
        )
        w("| --- | ---: | ---: | ---: | ---: | ---: |")
        for level, res in pipe.items():
            base = _get(res, AIO, "cpu_us")
            default = _get(res, ACC, "cpu_us")
            for name, row in res.items():
                if name.startswith("_"):
                    continue
                w(
                    f"| {name} | {level} | {_us(row['cpu_us'])} | {_us(row['per_s'])} | {_x(_ratio(row['cpu_us'], base))} | {_x(_ratio(row['cpu_us'], default))} |"
                )
        w("")
    prof = a.get("profile")
    if prof:
        w("### Async profiles (cProfile, one call at a time)")
        w("")
        w(
            "cProfile inflates everything; shares are of the *busy* time (the profile's total less the event loop's "
            "wait in `epoll.poll`). The run writes the raw stats beside its results."
        )
        w("")
        for what, mine, bare in (
            ("chat", "async_chatcore_chat", "async_aiohttp_chat"),
            ("stream (one chunk per event)", "async_chatcore_stream", "async_aiohttp_stream"),
        ):
            p, b = prof.get(mine), prof.get(bare)
            if not p:
                continue
            busy = p.get("us_per_call_busy") or p["us_per_call_profiled"]
            bbusy = (b or {}).get("us_per_call_busy")
            w(
                f"AsyncClient {what}: {p['calls']:,} calls, busy {busy:,.0f} us per call under the profiler"
                + (f" (bare aiohttp: {bbusy:,.0f} us)" if bbusy else "")
                + ":"
            )
            w("")
            w("| Function (cumulative) | us/call | share of busy | calls per call |")
            w("| --- | ---: | ---: | ---: |")
            for h in p["hotspots"]:
                w(
                    f"| {h['label']} | {h['us_per_call']:,.1f} | {h['us_per_call'] / busy:.0%} | {h['calls_per_call']:.1f} |"
                )
            w("")
            w("Top functions by self time:")
            w("")
            w("| Function | self us/call | cumulative us/call | calls per call |")
            w("| --- | ---: | ---: | ---: |")
            for t in p["top_self"][:12]:
                w(
                    f"| `{t['function']}` | {t['self_us_per_call']:.1f} | {t['cum_us_per_call']:.1f} | {t['ncalls_per_call']:.1f} |"
                )
            w("")
    if load:
        w(
            "Load average (1/5/15 min) before / after each async part: "
            + "; ".join(f"{k} {' -> '.join(v)}" for k, v in load.items())
            + "."
        )
        w("")


def tidy_paths(text: str, root: Path = ROOT) -> str:
    """No machine's paths in what is published: ``/root/.pyenv/.../lib/python3.11/x.py``
    and ``.../site-packages/x.py`` become ``x.py``, and a path in the checkout
    (``<root>/chatcore/_http.py``) becomes relative (``chatcore/_http.py``)."""
    text = text.replace(str(root) + "/", "")
    return re.sub(r"/[^\s`|:]*?/lib/python3\.\d+/(?:site-packages/)?", "", text)


def _target(r: dict[str, Any], prefix: str) -> str | None:
    """The measured figure of the target whose name starts with ``prefix``, as the table
    prints it."""
    for row in r.get("targets", []):
        if row["name"].startswith(prefix) and row["status"] != "na":
            return str(row["measured"])
    return None


def _values(
    section: dict[str, Any] | None, key: str, skip: tuple[str, ...] = ()
) -> list[tuple[str, float]]:
    return [
        (name, float(res[key]))
        for name, res in (section or {}).items()
        if isinstance(res, dict) and res.get(key) is not None and not any(s in name for s in skip)
    ]


def _series(levels: dict[str, Any] | None, key: str) -> dict[str, list[tuple[float, float]]]:
    """``{level: {contender: {key: value}}}`` -> one series of (level, value) per contender."""
    out: dict[str, list[tuple[float, float]]] = {}
    for level, contenders in sorted((levels or {}).items(), key=lambda kv: int(kv[0])):
        for name, res in contenders.items():
            if isinstance(res, dict) and res.get(key) is not None:
                out.setdefault(name, []).append((float(level), float(res[key])))
    return out


def charts(r: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """The report's charts: file name -> (SVG, alternative text), for what was measured."""
    out: dict[str, tuple[str, str]] = {}
    rows = _values(r.get("chat"), "median_us", skip=("what-if",))
    if rows:
        title = "Sequential chat: median time per call, lower is better"
        out["sync-chat.svg"] = (
            svg.bar_chart(
                title, "us", rows, baseline=REQ, note="ratio to bare requests in brackets"
            ),
            title,
        )
    for key, name, what in (
        ("stream", "sync-stream.svg", "whole body in one piece"),
        ("stream_chunked", "sync-stream-chunked.svg", "one HTTP chunk per event"),
    ):
        rows = _values(r.get(key), "median_us")
        if rows:
            title = f"Streaming ({what}): time per stream of {payloads.STREAM_EVENT_COUNT} events"
            out[name] = (svg.bar_chart(title, "us", rows, baseline=REQ), title)
    a = r.get("async") or {}
    series = _series(a.get("fast"), "cpu_us")
    if series:
        title = "AsyncClient, fast server: CPU time per call, lower is better"
        out["async-cpu.svg"] = (
            svg.line_chart(title, "calls in flight", "CPU per call (us)", series),
            title,
        )
    for kind, name, unit in (
        ("chat", "async-throughput-chat.svg", "calls"),
        ("stream", "async-throughput-stream.svg", "streams"),
    ):
        series = _series(_get(a, "slow", kind), "per_s")
        if series:
            delay = (
                f"{payloads.SLOW_CHAT_DELAY:g} s a call"
                if kind == "chat"
                else f"{sum(payloads.slow_stream_gaps()):.1f} s a stream"
            )
            title = f"Slow server ({delay}): {unit} per second, higher is better"
            out[name] = (
                svg.line_chart(title, f"{unit} in flight", f"{unit} per second", series),
                title,
            )
    imports = r.get("imports") or {}
    rows = [
        (label, float(imports[key]["ms"]))
        for key, label in (
            ("import requests", "import requests"),
            ("import chatcore", "import chatcore"),
            (
                "cold start: import chatcore + Client() + provider",
                "chatcore cold start (+ Client + provider)",
            ),
            ("import openai", "import openai (OpenAI SDK)"),
            ("import litellm", "import litellm"),
        )
        if isinstance(imports.get(key), dict) and imports[key].get("ms") is not None
    ]
    if rows:
        title = "Import time in a fresh interpreter, lower is better"
        out["imports.svg"] = (svg.bar_chart(title, "ms", rows, baseline="import requests"), title)
    return out


def readme_section(r: dict[str, Any]) -> str:
    """The README's figures (between its markers): the same strings as the targets table."""
    chat = _target(r, "Client.chat vs bare requests.Session.post")
    imp = _target(r, "import chatcore vs import requests")
    slow = _target(
        r, "AsyncClient throughput vs AsyncOpenAI, slow server, chat (0.3 s), 256 in flight"
    )
    parts = []
    if chat:
        parts.append(f"`Client.chat` with the whole pipeline costs {chat} a bare `requests` post")
    if imp:
        parts.append(f"`import chatcore` {imp} `import requests`")
    if slow:
        parts.append(
            f"`AsyncClient` serves {slow} the calls per second of `AsyncOpenAI` at 256 slow calls in flight"
        )
    lines = [README_START]
    if parts:
        lines.append(
            f"- **Fast**: {'; '.join(parts)} ([benchmarks](docs/benchmarks.md), measured {r['date']})."
        )
        if "sync-chat.svg" in charts(r):
            lines += [
                "",
                f"  ![{charts(r)['sync-chat.svg'][1]}]({(CHART_DIR / 'sync-chat.svg').as_posix()})",
            ]
    lines.append(README_END)
    return "\n".join(lines)


#: A section of the report written by another benchmark script (cost, tracing, routes):
#: ``<!-- NAME:start ... -->`` to ``<!-- NAME:end -->``; the report keeps such sections.
_SECTION = re.compile(r"<!-- (\w+): ?start\b.*?-->.*?<!-- \1: ?end -->", re.S)


def kept_sections(old: str, new: str) -> str:
    """``new`` with the sections other scripts wrote in ``old`` appended (those ``new``
    does not hold already)."""
    for match in _SECTION.finditer(old):
        if f"<!-- {match.group(1)}:" not in new and f"<!-- {match.group(1)}: " not in new:
            new = new.rstrip("\n") + "\n\n" + match.group(0) + "\n"
    return new


def write_section(doc: Path, start: str, end: str, section: str) -> None:
    """Put ``section`` (from ``start`` to ``end``, markers included) in ``doc`` in place of
    its previous version, or at the end: for the scripts whose figures the report keeps."""
    text = doc.read_text(encoding="utf-8") if doc.exists() else ""
    if start in text and end in text:
        head, rest = text.split(start, 1)
        tail = rest.split(end, 1)[1].lstrip("\n")
        text = head + section.rstrip("\n") + "\n" + ("\n" + tail if tail else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section.rstrip("\n") + "\n"
    doc.write_text(text, encoding="utf-8")


def rendered(r: dict[str, Any], root: Path = ROOT) -> dict[Path, str]:
    """Every published file, as the results give it: relative path -> text (the sections
    other benchmark scripts wrote in the report are kept)."""
    doc = root / DOC
    old = doc.read_text(encoding="utf-8") if doc.is_file() else ""
    out: dict[Path, str] = {DOC: kept_sections(old, markdown(r))}
    for name, (chart, _) in charts(r).items():
        out[CHART_DIR / name] = chart
    readme = (root / README).read_text(encoding="utf-8")
    start, end = readme.find(README_START), readme.find(README_END)
    if start < 0 or end < start:
        raise SystemExit(f"{README} has no {README_START!r} ... {README_END!r} section")
    out[README] = readme[:start] + readme_section(r) + readme[end + len(README_END) :]
    return out


def publish(r: dict[str, Any], root: Path = ROOT, doc: Path | None = None) -> list[Path]:
    """Write the report, its charts and the README's figures; the paths written. ``doc``
    writes the report elsewhere (and leaves the README and charts alone)."""
    files = rendered(r, root)
    if doc is not None and Path(doc).resolve() != (root / DOC).resolve():
        Path(doc).parent.mkdir(parents=True, exist_ok=True)
        Path(doc).write_text(files[DOC], encoding="utf-8")
        return [Path(doc)]
    written = []
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def stale(r: dict[str, Any], root: Path = ROOT) -> list[Path]:
    """Published files that differ from what the results give."""
    return [
        rel
        for rel, text in rendered(r, root).items()
        if not (root / rel).is_file() or (root / rel).read_text(encoding="utf-8") != text
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.report",
        description="Publish docs/benchmarks.md, its charts and the README's figures from a results file.",
    )
    parser.add_argument(
        "--results", type=Path, default=RESULTS, help=f"default {RESULTS.relative_to(ROOT)}"
    )
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 when a published file is stale"
    )
    args = parser.parse_args(argv)
    r = json.loads(args.results.read_text(encoding="utf-8"))
    if args.check:
        old = stale(r)
        for rel in old:
            print(f"stale: {rel} (run python -m benchmarks.report)", file=sys.stderr)
        return 1 if old else 0
    for path in publish(r):
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


def console_summary(r: dict[str, Any]) -> str:
    lines = []
    if "chat" in r:
        base = _get(r, "chat", REQ, "median_us")
        lines.append(f"{'sequential chat':<46} {'median us':>10} {'cpu us':>8} {'vs requests':>12}")
        for name, res in r["chat"].items():
            lines.append(
                f"  {name:<44} {res['median_us']:>10,.0f} {res['cpu_us']:>8,.0f} {_x(_ratio(res['median_us'], base)):>12}"
            )
    if "stream" in r:
        base = _get(r, "stream", REQ, "median_us")
        lines.append(
            f"{'streaming (per stream)':<46} {'median us':>10} {'ttfc us':>8} {'vs requests':>12}"
        )
        for name, res in r["stream"].items():
            name = name.replace("Client.chat", "Client.stream")
            lines.append(
                f"  {name:<44} {res['median_us']:>10,.0f} {res['ttfc_us']:>8,.0f} {_x(_ratio(res['median_us'], base)):>12}"
            )
    if "stream_chunked" in r:
        base = _get(r, "stream_chunked", REQ, "cpu_us")
        lines.append(
            f"{'streaming, one chunk per event':<46} {'median us':>10} {'cpu us':>8} {'cpu vs req':>12}"
        )
        for name, res in r["stream_chunked"].items():
            name = name.replace("Client.chat", "Client.stream")
            lines.append(
                f"  {name:<44} {res['median_us']:>10,.0f} {res['cpu_us']:>8,.0f} {_x(_ratio(res['cpu_us'], base)):>12}"
            )
    a = r.get("async") or {}
    for title, key in (("async chat, fast server", "fast"), ("async pipeline", "pipeline")):
        for level, res in (a.get(key) or {}).items():
            base = _get(res, AIO, "cpu_us")
            lines.append(
                f"{title + ', ' + level + ' in flight':<46} {'per s':>10} {'cpu us':>8} {'cpu vs aio':>12}"
            )
            for name, row in res.items():
                if name.startswith("_"):
                    continue
                lines.append(
                    f"  {name[:44]:<44} {row['per_s']:>10,.0f} {row['cpu_us']:>8,.0f} {_x(_ratio(row['cpu_us'], base)):>12}"
                )
    for route, res in (a.get("stream") or {}).items():
        base = _get(res, AIO, "cpu_us")
        lines.append(
            f"{'async streams (' + route + ')':<46} {'per s':>10} {'cpu us':>8} {'cpu vs aio':>12}"
        )
        for name, row in res.items():
            lines.append(
                f"  {name[:44]:<44} {row['per_s']:>10,.0f} {row['cpu_us']:>8,.0f} {_x(_ratio(row['cpu_us'], base)):>12}"
            )
    for kind, res_by in (a.get("slow") or {}).items():
        for level, res in res_by.items():
            base = _get(res, AIO, "per_s")
            lines.append(
                f"{'slow ' + kind + ', ' + level + ' in flight':<46} {'per s':>10} {'cpu us':>8} {'vs aio':>12}"
            )
            for name, row in res.items():
                lines.append(
                    f"  {name[:44]:<44} {row['per_s']:>10,.0f} {row['cpu_us']:>8,.0f} {_x(_ratio(row['per_s'], base)):>12}"
                )
    if "threads" in r:
        base = _get(r, "threads", REQ, "calls_per_s")
        lines.append(f"{'8 threads':<46} {'calls/s':>10} {'':>8} {'vs requests':>12}")
        for name, res in r["threads"].items():
            lines.append(
                f"  {name:<44} {res['calls_per_s']:>10,.0f} {'':>8} {_x(_ratio(res['calls_per_s'], base)):>12}"
            )
    lines.append("targets:")
    for t in r["targets"]:
        status = {"pass": "PASS", "fail": "FAIL", "na": "n/a", "info": "info"}[t["status"]]
        lines.append(
            f"  [{status:>4}] {t['name']}: {t['measured']} (budget {t['budget']}){' - ' + t['note'] if t['note'] else ''}"
        )
    for name, why in r.get("skipped", {}).items():
        lines.append(f"  skipped {name}: {why}")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
