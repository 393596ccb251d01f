"""Memory over many calls, in a fresh process: ``python -m benchmarks.memory BASE_URL
CALLS [TRACE_CALLS]`` prints one JSON object.

RSS (``VmRSS`` from /proc/self/status) after a warm-up of 2,000 calls, at every tenth
of the run and at the end (after ``gc.collect()``); then, optionally, ``TRACE_CALLS`` more
calls under ``tracemalloc`` to name where any growth comes from.
"""

from __future__ import annotations

import gc
import json
import sys
import time


def rss_kib() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)  # peak, not current


def main(base_url: str, calls: int, trace_calls: int) -> dict:
    sys.path.insert(0, ".")
    import chatcore
    from benchmarks import payloads

    client = chatcore.Client(
        providers={"openai": {"api_key": payloads.API_KEY, "base_url": base_url}}, environ={}
    )
    model = "openai:" + payloads.MODEL
    expected = payloads.EXPECTED_TEXT

    def call() -> None:
        if client.chat(model, "Hello").text != expected:
            raise AssertionError("wrong answer")

    for _ in range(2000):
        call()
    gc.collect()
    before = rss_kib()
    objects_before = len(gc.get_objects())
    checkpoints = []
    step = max(1, calls // 10)
    started = time.perf_counter()
    for i in range(1, calls + 1):
        call()
        if i % step == 0:
            checkpoints.append((i, rss_kib()))
    elapsed = time.perf_counter() - started
    gc.collect()
    after = rss_kib()
    objects_after = len(gc.get_objects())
    out: dict = {
        "calls": calls,
        "seconds": elapsed,
        "rss_before_kib": before,
        "rss_after_kib": after,
        "rss_delta_kib": after - before,
        "rss_max_kib": max([before, after] + [c[1] for c in checkpoints]),
        "checkpoints": checkpoints,
        "gc_objects_before": objects_before,
        "gc_objects_after": objects_after,
    }
    if trace_calls:
        import tracemalloc

        tracemalloc.start(1)
        for _ in range(200):
            call()
        gc.collect()
        snap1 = tracemalloc.take_snapshot()
        for _ in range(trace_calls):
            call()
        gc.collect()
        snap2 = tracemalloc.take_snapshot()
        tracemalloc.stop()
        stats = snap2.compare_to(snap1, "lineno")
        out["tracemalloc_calls"] = trace_calls
        out["tracemalloc_net_bytes"] = sum(s.size_diff for s in stats)
        out["tracemalloc_top"] = [
            {"where": str(s.traceback[0]), "size_diff": s.size_diff, "count_diff": s.count_diff}
            for s in stats[:8]
        ]
    client.close()
    return out


if __name__ == "__main__":
    trace = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    print(json.dumps(main(sys.argv[1], int(sys.argv[2]), trace)))
