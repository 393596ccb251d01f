"""Import cost in fresh interpreters: wall time of the import statement (interpreter
start-up excluded), peak RSS after it, and a ``-X importtime`` breakdown."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import defaultdict
from typing import Any

from benchmarks.measure import median

# Each script prints "<seconds> <peak RSS KiB>"; nothing is imported before the timer
# starts except the builtin ``time`` module.
_T0 = "import time\nt0 = time.perf_counter()\n"
_T1 = "t1 = time.perf_counter()\n"
_SCRIPTS: dict[str, str] = {
    "python, nothing imported (RSS baseline)": _T0 + _T1,
    "import requests": _T0 + "import requests\n" + _T1,
    "import chatcore": _T0 + "import chatcore\n" + _T1,
    "import chatcore_openai (after chatcore)": (
        "import time\nimport chatcore\nt0 = time.perf_counter()\nimport chatcore_openai\n"
        "t1 = time.perf_counter()\n"
    ),
    "chatcore_openai provider modules (first use, after chatcore)": (
        "import time\nimport chatcore\nt0 = time.perf_counter()\nimport chatcore_openai\n"
        "import chatcore_openai._provider, chatcore_openai._azure\nt1 = time.perf_counter()\n"
    ),
    "chatcore.Client() + provider (cold: entry points, plugin, session)": (
        "import time\nimport chatcore\nt0 = time.perf_counter()\n"
        "c = chatcore.Client(providers={'openai': {'api_key': 'sk-bench-x', "
        "'base_url': 'http://127.0.0.1:9/v1'}}, environ={})\nc.provider('openai')\n"
        "t1 = time.perf_counter()\n"
    ),
    "cold start: import chatcore + Client() + provider": (
        _T0 + "import chatcore\n"
        "c = chatcore.Client(providers={'openai': {'api_key': 'sk-bench-x', "
        "'base_url': 'http://127.0.0.1:9/v1'}}, environ={})\nc.provider('openai')\n" + _T1
    ),
    "import openai": _T0 + "import openai\n" + _T1,
    "import litellm": (
        "import os, time\nos.environ.setdefault('LITELLM_LOCAL_MODEL_COST_MAP', 'True')\n"
        "t0 = time.perf_counter()\nimport litellm\nt1 = time.perf_counter()\n"
    ),
}
# Peak RSS: VmHWM (this process image's high-water mark; ru_maxrss would report the
# parent's peak, which Linux carries over fork + exec).
_TAIL = (
    "hwm = 0\n"
    "try:\n"
    "    for line in open('/proc/self/status'):\n"
    "        if line.startswith('VmHWM:'):\n"
    "            hwm = int(line.split()[1])\n"
    "except OSError:\n"
    "    import resource\n"
    "    hwm = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
    "print(t1 - t0, hwm)\n"
)

PEERS = {"import openai": "openai", "import litellm": "litellm"}
NEEDS_PLUGIN = {
    "cold start: import chatcore + Client() + provider",
    "import chatcore_openai (after chatcore)",
    "chatcore_openai provider modules (first use, after chatcore)",
    "chatcore.Client() + provider (cold: entry points, plugin, session)",
}


def _available(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _env() -> dict[str, str]:
    """The parent's environment, with the checkout first on the path (so the child imports
    the same chatcore as the harness even when that is not the installed one)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [ROOT, env.get("PYTHONPATH")]))
    env.pop("PYTHONPROFILEIMPORTTIME", None)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def _run(script: str) -> tuple[float, int]:
    out = subprocess.run(
        [sys.executable, "-c", script + _TAIL],
        capture_output=True,
        text=True,
        check=True,
        env=_env(),
        cwd="/",
    )
    seconds, rss = out.stdout.split()
    return float(seconds), int(rss)


def measure(
    runs: int, peer_runs: int, progress: Any = print
) -> tuple[dict[str, Any], dict[str, str]]:
    """``{case: {"ms": median, "rss_mb": median peak RSS, "runs": n}}`` and skips."""
    results: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    for name, script in _SCRIPTS.items():
        if name in PEERS and not _available(PEERS[name]):
            skipped[name] = f"{PEERS[name]} not importable here"
            continue
        if name in NEEDS_PLUGIN and not _available("chatcore_openai"):
            skipped[name] = "chatcore-openai not installed"
            continue
        n = peer_runs if name in PEERS else runs
        _run(script)  # warm-up: writes .pyc files, fills the OS page cache
        times, rss = [], []
        for _ in range(n):
            t, r = _run(script)
            times.append(t * 1e3)
            rss.append(r / 1024)
        results[name] = {"ms": median(times), "rss_mb": median(rss), "runs": n, "all_ms": times}
        progress(f"  {name}: {results[name]['ms']:.1f} ms")
    return results, skipped


_LINE = re.compile(r"import time:\s+(\d+)\s+\|\s+(\d+)\s+\|(\s*)(\S+)")


def importtime(module: str = "chatcore", runs: int = 3) -> dict[str, Any]:
    """``python -X importtime -c "import <module>"``: the raw log (of the median run by
    total), the top modules by self time, and self time summed by top-level package."""
    logs = []
    for _ in range(runs + 1):
        out = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", f"import {module}"],
            capture_output=True,
            text=True,
            check=True,
            env=_env(),
            cwd="/",
        )
        logs.append(out.stderr)
    logs = logs[1:]  # the first run warms the caches

    def parse(log: str) -> list[tuple[int, int, int, str]]:
        rows = []
        for line in log.splitlines():
            m = _LINE.match(line)
            if m:
                rows.append((int(m.group(1)), int(m.group(2)), len(m.group(3)), m.group(4)))
        return rows

    parsed = [parse(log) for log in logs]
    totals = [sum(r[0] for r in rows) for rows in parsed]
    pick = sorted(range(len(logs)), key=lambda i: totals[i])[len(logs) // 2]
    rows = parsed[pick]
    by_package: dict[str, int] = defaultdict(int)
    for self_us, _cum, _depth, name in rows:
        by_package[name.split(".")[0]] += self_us
    top_self = sorted(rows, key=lambda r: -r[0])[:25]
    top_cum = sorted(
        (r for r in rows if r[3].startswith(module) or r[2] <= 3), key=lambda r: -r[1]
    )[:25]
    return {
        "module": module,
        "total_self_us": totals[pick],
        "log": logs[pick],
        "top_self": [{"module": r[3], "self_us": r[0], "cumulative_us": r[1]} for r in top_self],
        "top_cumulative": [
            {"module": r[3], "self_us": r[0], "cumulative_us": r[1]} for r in top_cum
        ],
        "by_package": sorted(by_package.items(), key=lambda kv: -kv[1])[:20],
    }
