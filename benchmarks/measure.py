"""Timing loops: sequential calls, streams, threads and micro-benchmarks."""

from __future__ import annotations

import functools
import gc
import statistics
import threading
import time
import timeit
from collections.abc import Callable
from typing import Any

from benchmarks.contenders import Contender

_now = time.perf_counter_ns
_cpu = time.process_time_ns


def median(values: list[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def _batch(fn: Callable[[], Any], n: int) -> tuple[list[int], int, int]:
    """Run ``fn`` ``n`` times: per-call wall ns, total wall ns, total process CPU ns."""
    lat = [0] * n
    cpu0 = _cpu()
    w0 = _now()
    for i in range(n):
        t = _now()
        fn()
        lat[i] = _now() - t
    w1 = _now()
    cpu1 = _cpu()
    return lat, w1 - w0, cpu1 - cpu0


def _count_for(fn: Callable[[], Any], wanted: int, budget: float | None) -> int:
    """``wanted`` calls, or fewer (never under 100) when a batch would take longer than
    ``budget`` seconds (slow peers only)."""
    if budget is None:
        return wanted
    t = _now()
    for _ in range(5):
        fn()
    per = (_now() - t) / 5 / 1e9
    return max(100, min(wanted, int(budget / per))) if per > 0 else wanted


#: Calls per turn when contenders take turns within a repeat.
BLOCK = 50


def sequential(
    contenders: list[Contender],
    calls: int,
    repeats: int,
    warmup: int = 50,
    peer_budget: float | None = None,
    progress: Callable[[str], None] = print,
) -> dict[str, dict[str, Any]]:
    """``calls`` calls per contender and repeat. Within a repeat the contenders take
    turns in blocks of ``BLOCK`` calls, so a burst of other work on the machine hits all
    of them alike. Per contender: median over repeats of the median per-call latency, of
    the mean wall per call, and of the CPU per call. With ``peer_budget``, peers do fewer
    calls (never under 300) when a repeat would take longer."""
    out: dict[str, dict[str, Any]] = {}
    for c in contenders:
        for _ in range(warmup):
            c.chat()
        n = calls
        if peer_budget is not None and c.group == "peer":
            n = max(300, _count_for(c.chat, calls, peer_budget))
        out[c.name] = {"lat": [], "wall": [], "cpu": [], "calls": n}
    for r in range(repeats):
        gc.collect()
        lat: dict[str, list[int]] = {c.name: [] for c in contenders}
        wall = dict.fromkeys(lat, 0)
        cpu = dict.fromkeys(lat, 0)
        done = dict.fromkeys(lat, 0)
        while True:
            active = [c for c in contenders if done[c.name] < out[c.name]["calls"]]
            if not active:
                break
            for c in active:
                k = min(BLOCK, out[c.name]["calls"] - done[c.name])
                block, w, u = _batch(c.chat, k)
                lat[c.name] += block
                wall[c.name] += w
                cpu[c.name] += u
                done[c.name] += k
        for c in contenders:
            res, n = out[c.name], out[c.name]["calls"]
            res["lat"].append(median(lat[c.name]) / 1e3)
            res["wall"].append(wall[c.name] / n / 1e3)
            res["cpu"].append(cpu[c.name] / n / 1e3)
        progress(f"  chat repeat {r + 1}/{repeats} done")
    return {
        name: {
            "calls": res["calls"],
            "repeats": repeats,
            "median_us": median(res["lat"]),
            "wall_us": median(res["wall"]),
            "cpu_us": median(res["cpu"]),
            "per_repeat_median_us": res["lat"],
        }
        for name, res in out.items()
    }


def streaming(
    contenders: list[Contender],
    streams: int,
    repeats: int,
    events: int,
    peer_budget: float | None = 2.0,
    progress: Callable[[str], None] = print,
    route: str = "whole",
) -> dict[str, dict[str, Any]]:
    """Whole streams from ``route`` (``payloads.STREAM_ROUTES``): per-stream wall
    (median), CPU, time to first chunk (median)."""
    out: dict[str, dict[str, Any]] = {}
    counts: dict[str, int] = {}
    fns = {c.name: functools.partial(c.stream, route) for c in contenders}
    for c in contenders:
        for _ in range(10):
            fns[c.name]()
        budget = peer_budget if c.group == "peer" else None
        counts[c.name] = _count_for(fns[c.name], streams, budget)
        out[c.name] = {"lat": [], "cpu": [], "ttfc": [], "wall": []}
    for r in range(repeats):
        gc.collect()
        lat: dict[str, list[int]] = {c.name: [] for c in contenders}
        ttfcs: dict[str, list[int]] = {c.name: [] for c in contenders}
        wall = dict.fromkeys(lat, 0)
        cpu = dict.fromkeys(lat, 0)
        while True:  # turns of BLOCK // 2 streams, as in sequential()
            active = [c for c in contenders if len(lat[c.name]) < counts[c.name]]
            if not active:
                break
            for c in active:
                k = min(BLOCK // 2, counts[c.name] - len(lat[c.name]))
                cpu0 = _cpu()
                w0 = _now()
                fn = fns[c.name]
                for _ in range(k):
                    t = _now()
                    ttfcs[c.name].append(fn())
                    lat[c.name].append(_now() - t)
                wall[c.name] += _now() - w0
                cpu[c.name] += _cpu() - cpu0
        for c in contenders:
            res, n = out[c.name], counts[c.name]
            res["lat"].append(median(lat[c.name]) / 1e3)
            res["ttfc"].append(median(ttfcs[c.name]) / 1e3)
            res["cpu"].append(cpu[c.name] / n / 1e3)
            res["wall"].append(wall[c.name] / n / 1e3)
        progress(f"  stream ({route}) repeat {r + 1}/{repeats} done")
    result = {}
    for name, res in out.items():
        per_stream = median(res["lat"])
        result[name] = {
            "streams": counts[name],
            "repeats": repeats,
            "median_us": per_stream,
            "wall_us": median(res["wall"]),
            "cpu_us": median(res["cpu"]),
            "ttfc_us": median(res["ttfc"]),
            "per_chunk_us": per_stream / events,
        }
    return result


def threaded(
    contenders: list[Contender],
    threads: int,
    per_thread: int,
    repeats: int,
    progress: Callable[[str], None] = print,
) -> dict[str, dict[str, Any]]:
    """``threads`` threads x ``per_thread`` calls through one shared client (or one
    connection a thread where the library is not thread-safe); calls per second."""
    out: dict[str, list[float]] = {c.name: [] for c in contenders}
    cpu_out: dict[str, list[float]] = {c.name: [] for c in contenders}
    workers = {c.name: [c.worker() for _ in range(threads)] for c in contenders}
    for c in contenders:  # warm every worker (opens the pooled connections)
        for w in workers[c.name]:
            for _ in range(5):
                w()
    for r in range(repeats):
        for c in contenders:
            errors: list[BaseException] = []
            barrier = threading.Barrier(threads + 1)

            def run(
                fn: Callable[[], None], barrier: threading.Barrier, errors: list[BaseException]
            ) -> None:
                barrier.wait()
                try:
                    for _ in range(per_thread):
                        fn()
                except BaseException as exc:  # reported below
                    errors.append(exc)

            pool = [
                threading.Thread(target=run, args=(w, barrier, errors)) for w in workers[c.name]
            ]
            for t in pool:
                t.start()
            gc.collect()
            cpu0 = _cpu()
            barrier.wait()
            t0 = _now()
            for t in pool:
                t.join()
            wall = (_now() - t0) / 1e9
            cpu = (_cpu() - cpu0) / 1e3
            if errors:
                raise RuntimeError(f"{c.name}: a thread failed: {errors[0]!r}") from errors[0]
            out[c.name].append(threads * per_thread / wall)
            cpu_out[c.name].append(cpu / (threads * per_thread))
        progress(f"  threads repeat {r + 1}/{repeats} done")
    return {
        name: {
            "threads": threads,
            "per_thread": per_thread,
            "repeats": repeats,
            "calls_per_s": median(v),
            "cpu_us": median(cpu_out[name]),
            "per_repeat": v,
        }
        for name, v in out.items()
    }


def micro(stmt: Callable[[], Any], repeats: int = 5, target: float = 0.05) -> float:
    """Median microseconds per call of ``stmt`` over ``repeats`` timeit runs of about
    ``target`` seconds each."""
    timer = timeit.Timer(stmt)
    number = 1
    while True:
        took = timer.timeit(number)
        if took >= target / 10 or number >= 10_000_000:
            break
        number *= 10
    number = max(1, int(number * target / max(took, 1e-9)))
    return median([t / number * 1e6 for t in timer.repeat(repeats, number)])
