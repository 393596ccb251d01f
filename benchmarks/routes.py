"""What a route costs per call, next to a direct ``provider:model`` call (issue 14: under
5 %).

The benchmark server (nginx when installed, else the stdlib one) answers every chat with
the same canned completion. Side by side in one run, taking turns in blocks of calls so a
burst of other work on the machine hits all of them alike:

- ``direct``: ``client.chat("openai:gpt-4o-mini", ...)``;
- ``route, 1 deployment``: ``route:one``, whose only deployment is that model;
- ``route, 2 weighted``: ``route:two``, two deployments (one with options of its own, so a
  provider instance and a limiter key of its own) picked at random by weight;
- ``route, least_busy``: ``route:busy``, the same two counted in flight (two store calls
  more per call);

each through ``Client`` and ``AsyncClient`` (one call in flight). Reported: the median
over repeats of wall and CPU microseconds per call, and each route's ratio to ``direct``.

    python -m benchmarks.routes                 # tables, results/routes.json, docs/benchmarks.md
    python -m benchmarks.routes --calls 2000 --repeats 7
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks import payloads
from benchmarks.measure import median
from benchmarks.report import write_section
from benchmarks.server import BenchServer

BLOCK = 100


def routes(base_url: str) -> dict[str, Any]:
    own = {
        "model": f"openai:{payloads.MODEL}",
        "name": "own",
        "options": {"base_url": base_url, "api_key": payloads.API_KEY},
    }
    shared = {"model": f"openai:{payloads.MODEL}", "name": "shared"}
    return {
        "one": {"deployments": [f"openai:{payloads.MODEL}"]},
        "two": {"deployments": [{**own, "weight": 2}, shared]},
        "busy": {"strategy": "least_busy", "deployments": [own, shared]},
    }


CASES = {
    "direct": f"openai:{payloads.MODEL}",
    "route, 1 deployment": "route:one",
    "route, 2 weighted": "route:two",
    "route, least_busy": "route:busy",
}


def _sync(client: Any, calls: int, repeats: int) -> dict[str, dict[str, float]]:
    def block(model: str) -> None:
        for _ in range(BLOCK):
            client.chat(model, "Hello")

    for model in CASES.values():
        block(model)  # warm-up
    runs = [[_timed(lambda m=m: block(m)) for m in CASES.values()] for _ in _rounds(calls, repeats)]
    return _summary(runs, calls, repeats)


async def _async(client: Any, calls: int, repeats: int) -> dict[str, dict[str, float]]:
    async def block(model: str) -> tuple[float, float]:
        t0, p0 = time.perf_counter(), time.process_time()
        for _ in range(BLOCK):
            await client.chat(model, "Hello")
        return time.perf_counter() - t0, time.process_time() - p0

    for model in CASES.values():
        await block(model)  # warm-up
    runs = [[await block(m) for m in CASES.values()] for _ in _rounds(calls, repeats)]
    return _summary(runs, calls, repeats)


def _rounds(calls: int, repeats: int) -> range:
    """One round is a block of calls of each case in turn; ``calls // BLOCK`` rounds make
    a repeat."""
    return range(repeats * (calls // BLOCK))


def _timed(fn: Callable[[], Any]) -> tuple[float, float]:
    t0, p0 = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - t0, time.process_time() - p0


def _summary(
    runs: list[list[tuple[float, float]]], calls: int, repeats: int
) -> dict[str, dict[str, float]]:
    """Median over repeats of wall and CPU microseconds per call, per case."""
    per_repeat = len(runs) // repeats
    out: dict[str, dict[str, float]] = {}
    for i, name in enumerate(CASES):
        walls, cpus = [], []
        for r in range(repeats):
            chunk = runs[r * per_repeat : (r + 1) * per_repeat]
            walls.append(sum(run[i][0] for run in chunk) / calls * 1e6)
            cpus.append(sum(run[i][1] for run in chunk) / calls * 1e6)
        out[name] = {"wall_us": median(walls), "cpu_us": median(cpus)}
    return out


def _table(title: str, rows: dict[str, dict[str, float]]) -> list[str]:
    base = rows["direct"]
    lines = [
        f"### {title}",
        "",
        "| call | wall us/call | CPU us/call | wall vs direct | CPU vs direct |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, row in rows.items():
        lines.append(
            f"| {name} | {row['wall_us']:.1f} | {row['cpu_us']:.1f}"
            f" | {row['wall_us'] / base['wall_us']:.3f}x | {row['cpu_us'] / base['cpu_us']:.3f}x |"
        )
    return lines


START = "<!-- routes_overhead:start -->"
END = "<!-- routes_overhead:end -->"
DOC = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"


def _section(results: dict[str, Any], args: argparse.Namespace, tables: list[str]) -> str:
    """The report's section for this benchmark (kept by ``benchmarks.report``)."""
    worst: dict[str, float] = {}
    for client in ("Client", "AsyncClient"):
        base = results[client]["direct"]
        for name, row in results[client].items():
            if name != "direct":
                ratio = max(row[k] / base[k] for k in ("wall_us", "cpu_us"))
                worst[name] = max(worst.get(name, 0.0), ratio)
    import platform

    load = results.get("load", float("nan"))
    met = [name for name, ratio in worst.items() if ratio < 1.05]
    missed = [f"{name} ({ratio:.3f}x)" for name, ratio in worst.items() if ratio >= 1.05]
    verdict = (
        f"**met** by every case (worst {max(worst.values()):.3f}x)"
        if not missed
        else f"met by {', '.join(met) or 'none'}; **missed** by {', '.join(missed)}"
    )
    head = [
        START,
        "## Routes: a route's cost per call (`benchmarks/routes.py`)",
        "",
        f"`python -m benchmarks.routes --calls {args.calls} --repeats {args.repeats}`; "
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs, load average "
        f"{load:.2f}; server: {results['server']}. Every case takes turns in blocks of "
        f"{BLOCK} calls; the figures are medians over the repeats. Target: a route costs "
        f"under 5 % more than a direct call, wall and CPU, under both clients: {verdict}.",
        "",
    ]
    return "\n".join([*head, *tables, END]) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=1000, help="calls per case and repeat")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--server", choices=["auto", "nginx", "stdlib"], default="auto")
    parser.add_argument("--no-doc", action="store_true", help="do not write docs/benchmarks.md")
    args = parser.parse_args(argv)

    import chatcore

    results: dict[str, Any] = {}
    with BenchServer(args.server) as server:
        providers = {"openai": {"base_url": server.base_url, "api_key": payloads.API_KEY}}
        table = routes(server.base_url)
        print(f"server: {server.description}")
        with chatcore.Client(providers=providers, routes=table, environ={}) as client:
            results["Client"] = _sync(client, args.calls, args.repeats)

        async def run_async() -> dict[str, dict[str, float]]:
            async with chatcore.AsyncClient(
                providers=providers, routes=table, environ={}
            ) as aclient:
                return await _async(aclient, args.calls, args.repeats)

        results["AsyncClient"] = asyncio.run(run_async())
        results["server"] = server.description
        results["load"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    lines = []
    for name in ("Client", "AsyncClient"):
        lines += [*_table(f"{name}.chat, one call in flight", results[name]), ""]
    print("\n".join(lines))
    if not args.no_doc:
        write_section(DOC, START, END, _section(results, args, lines))
        print(f"wrote {DOC}")
    out = Path(__file__).parent / "results" / "routes.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
