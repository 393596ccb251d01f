"""Multiprocess mode: two processes record into one ``PROMETHEUS_MULTIPROC_DIR``; the
collector sums their counters and histograms."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from chatcore_prometheus import metrics_text, multiprocess_dir, scrape_registry, serve_metrics

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]

WORKER = """
import sys
from chatcore import RequestEvent
from chatcore_prometheus import PrometheusSink

n = int(sys.argv[1])
sink = PrometheusSink()
for i in range(n):
    sink.record(RequestEvent(provider="openai", model="gpt-4o-mini", outcome="ok",
                             latency=0.2, attempts=2, prompt_tokens=3, completion_tokens=5))
sink.record(RequestEvent(provider="openai", model="gpt-4o-mini", outcome="error",
                         latency=0.1, error_type="ServerError"))
assert sink.dropped_events == 0
print("done")
"""


def test_two_processes_are_summed(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    parse_text: Callable[[str], Samples],
    scrape: Callable[[str], tuple[str, str, Samples]],
) -> None:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    env.pop("CHATCORE_PROMETHEUS", None)
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(n)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in (3, 4)
    ]
    for worker in workers:
        out, err = worker.communicate(timeout=60)
        assert worker.returncode == 0, err
        assert out.strip() == "done"
    assert list(tmp_path.glob("*.db"))

    assert multiprocess_dir() is None or multiprocess_dir() != str(tmp_path)
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    assert multiprocess_dir() == str(tmp_path)
    assert isinstance(scrape_registry(), CollectorRegistry)
    samples = parse_text(metrics_text())

    def value(name: str, **labels: str) -> float | None:
        labels = {"provider": "openai", "model": "gpt-4o-mini", **labels}
        return samples.get((name, frozenset(labels.items())))

    assert value("chatcore_requests_total", outcome="ok") == 7
    assert value("chatcore_requests_total", outcome="error") == 2
    assert value("chatcore_errors_total", error_type="ServerError") == 2
    assert value("chatcore_retries_total") == 7
    assert value("chatcore_tokens_total", kind="prompt") == 21
    assert value("chatcore_tokens_total", kind="completion") == 35
    assert value("chatcore_request_latency_seconds_count") == 9
    assert value("chatcore_request_latency_seconds_bucket", le="0.25") == 9
    assert value("chatcore_request_latency_seconds_bucket", le="0.1") == 2

    # serve_metrics without a registry collects from the directory too
    with serve_metrics(0) as server:
        _, _, served = scrape(server.url)
    key = (
        "chatcore_requests_total",
        frozenset({"provider": "openai", "model": "gpt-4o-mini", "outcome": "ok"}.items()),
    )
    assert served[key] == 7
