"""Several processes (``spawn`` start method) sharing one limit and one cache, end to end:
each builds a Client with the in-test provider pointed at the stand-in server started
here, and a RedisRateLimiter / RedisCache on the session's redis-server."""

from __future__ import annotations

import multiprocessing
import queue
from typing import Any

import pytest
from chatcore_redis_testing import cache_worker, rate_worker

PROCESSES = 4
THREADS = 4
RATE = 20.0
DURATION = 3.0


def _collect(results: Any, count: int, procs: list[Any]) -> list[Any]:
    out = []
    for _ in range(count):
        try:
            out.append(results.get(timeout=60))
        except queue.Empty:  # pragma: no cover - a worker died
            codes = [p.exitcode for p in procs]
            pytest.fail(f"a worker gave no result (exit codes {codes})")
    for proc in procs:
        proc.join(timeout=30)
        assert proc.exitcode == 0
    return out


@pytest.mark.slow
@pytest.mark.timing
def test_processes_share_one_rate_limit_end_to_end(
    redis_url: str, prefix: str, standin: Any
) -> None:
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(PROCESSES + 1)
    results = ctx.Queue()
    limits = {"wire": {"rps": RATE, "burst": 1}}
    procs = [
        ctx.Process(
            target=rate_worker,
            args=(
                redis_url,
                prefix,
                standin.base_url,
                limits,
                THREADS,
                DURATION,
                barrier,
                results,
            ),
        )
        for _ in range(PROCESSES)
    ]
    for proc in procs:
        proc.start()
    barrier.wait(timeout=60)  # every process built its client and warmed up
    outcomes = _collect(results, PROCESSES, procs)
    grants = sorted(t for times, _, _ in outcomes for t in times)
    answered = sum(n for _, n, _ in outcomes)
    errors = [e for _, _, errs in outcomes for e in errs]
    assert not errors
    assert all(times for times, _, _ in outcomes), "every process got grants"
    assert len(standin.requests) == answered + PROCESSES  # + one warm-up each: none lost
    span = grants[-1] - grants[0]
    rate = (len(grants) - 1) / span
    print(
        f"\n{PROCESSES} processes x {THREADS} threads, limit {RATE:g}/s: {len(grants)} grants"
        f" in {span:.2f}s = {rate:.2f}/s aggregate"
        f" (per process: {[len(t) for t, _, _ in outcomes]})"
    )
    assert rate == pytest.approx(RATE, rel=0.10)


@pytest.mark.slow
def test_an_entry_written_by_one_process_is_hit_by_another(
    redis_url: str, prefix: str, standin: Any
) -> None:
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    text = f"shared across processes {prefix}"
    first = ctx.Process(
        target=cache_worker, args=(redis_url, prefix, standin.base_url, text, results)
    )
    first.start()
    (cached_first, answer_first) = _collect(results, 1, [first])[0]
    second = ctx.Process(
        target=cache_worker, args=(redis_url, prefix, standin.base_url, text, results)
    )
    second.start()
    (cached_second, answer_second) = _collect(results, 1, [second])[0]
    assert (cached_first, cached_second) == (False, True)
    assert answer_first == answer_second
    assert len(standin.requests) == 1
