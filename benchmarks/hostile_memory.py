"""Peak memory of a client facing hostile answers (issue 11, item 9).

Each case runs a fresh client process against a :class:`~chatcore.testing.hostile.HostileServer`
in this process, and reports the child's peak resident set size (``VmHWM`` from
``/proc/self/status``, else ``ru_maxrss``) and what the call raised. The audit measured,
before the body caps: baseline 34 MB; a 1 MB gzip body inflating to 1 GiB 2.1 GB (chat) and
4.1 GB (stream); a 512 MiB plain body 1.1 GB; a 128 MiB SSE line without a newline 546 MB.

    python -m benchmarks.hostile_memory          # every case
    python -m benchmarks.hostile_memory --only gzip-chat,plain
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

from chatcore.testing.hostile import Hostile, HostileServer

MiB = 1 << 20
GiB = 1 << 30

CASES: dict[str, tuple[Hostile, bool]] = {
    "baseline": (Hostile.chat(), False),
    "gzip-chat": (Hostile.gzip_bomb(GiB, level=9), False),
    "gzip-stream": (Hostile.gzip_bomb(GiB, stream=True, level=9), True),
    "plain": (Hostile.huge(512 * MiB), False),
    "sse-line": (Hostile.huge(128 * MiB, stream=True), True),
}

_CHILD = r"""
import json, resource, sys
import chatcore

def peak_mb():
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

base_url, stream = sys.argv[1], sys.argv[2] == "1"
client = chatcore.Client(
    providers={"openai": {"api_key": "memory-test-key", "base_url": base_url}},
    environ={},
    max_retries=0,
)
outcome = "ok"
try:
    if stream:
        for _ in client.stream("openai:gpt-4o-mini", "hello"):
            pass
    else:
        client.chat("openai:gpt-4o-mini", "hello")
except Exception as exc:
    outcome = type(exc).__name__
print(json.dumps({"peak_mb": round(peak_mb(), 1), "outcome": outcome}))
"""


def measure(name: str) -> dict[str, object]:
    """Run case ``name`` in a fresh interpreter; its peak RSS and outcome."""
    answer, stream = CASES[name]
    with HostileServer(default=answer) as server:
        done = subprocess.run(
            [sys.executable, "-c", _CHILD, server.base_url, "1" if stream else "0"],
            capture_output=True,
            text=True,
            timeout=600,
            check=True,
        )
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    result["case"] = name
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", help="comma-separated cases: " + ", ".join(CASES))
    args = parser.parse_args(argv)
    names = args.only.split(",") if args.only else list(CASES)
    unknown = sorted(set(names) - set(CASES))
    if unknown:
        parser.error(f"unknown case(s) {', '.join(unknown)}; known: {', '.join(CASES)}")
    print(f"{'case':<12} {'peak RSS':>10}  outcome")
    for name in names:
        row = measure(name)
        print(f"{name:<12} {row['peak_mb']:>7} MB  {row['outcome']}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
