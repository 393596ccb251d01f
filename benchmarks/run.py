"""chatcore benchmark harness: ``python -m benchmarks.run [--quick | --full]`` (or
``python benchmarks/run.py``) from the repository root.

Starts a local server (nginx with its echo module when installed, else a standard-library
asyncio server), runs the same work through bare http.client, bare requests, chatcore
(default pipeline, and cache hits) and, when importable, the OpenAI SDK and LiteLLM, side
by side in one run; the async section compares ``chatcore.AsyncClient`` with bare aiohttp
and ``AsyncOpenAI`` (``async_bench.py``, in a fresh interpreter); measures imports,
memory, the pipeline's parts; profiles ``client.chat``; writes ``docs/benchmarks.md`` and
raw results under ``benchmarks/results/``. Targets are checked here (``--check`` exits 1
when one fails), never by unit tests.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python benchmarks/run.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import contenders as contenders_mod
from benchmarks import imports, measure, micro, payloads, profiling, report
from benchmarks.server import BenchServer

ROOT = Path(__file__).resolve().parent.parent
SECTIONS = ("chat", "stream", "threads", "async", "micro", "imports", "memory", "profile")
ASYNC_PARTS = ("fast", "stream", "pipeline", "slow", "memory", "profile")

MODES: dict[str, dict[str, Any]] = {
    "quick": {
        "calls": 1000,
        "repeats": 3,
        "streams": 300,
        "stream_repeats": 3,
        "threads": 8,
        "per_thread": 250,
        "thread_repeats": 3,
        "import_runs": 7,
        "peer_import_runs": 2,
        "memory_calls": 20_000,
        "trace_calls": 2_000,
        "profile_calls": 2_000,
        "micro_repeats": 5,
        "peer_threads": False,
        "peer_budget": 2.0,
    },
    "full": {
        "calls": 1000,
        "repeats": 7,
        "streams": 500,
        "stream_repeats": 5,
        "threads": 8,
        "per_thread": 250,
        "thread_repeats": 5,
        "import_runs": 15,
        "peer_import_runs": 5,
        "memory_calls": 100_000,
        "trace_calls": 10_000,
        "profile_calls": 2_000,
        "micro_repeats": 7,
        "peer_threads": True,
        "peer_budget": None,
    },
}


def log(msg: str) -> None:
    print(msg, flush=True)


def _version(dist: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def _loadavg() -> str | None:
    try:
        return " / ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return None


def machine_info() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 0
    mem = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                    break
    except OSError:
        pass
    git = None
    try:
        git = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        if dirty:
            git += " (with uncommitted changes)"
    except Exception:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "memory": mem,
        "os": f"{platform.system()} {platform.release()}",
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "executable": sys.executable,
        "git": git,
        "load_start": _loadavg(),
        "versions": {
            name: _version(name)
            for name in (
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
        },
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0]
    )
    mode = p.add_mutually_exclusive_group()
    mode.add_argument(
        "--quick",
        dest="mode",
        action="store_const",
        const="quick",
        help="the default: 3 repeats, memory over 20,000 calls (~2-3 min)",
    )
    mode.add_argument(
        "--full",
        dest="mode",
        action="store_const",
        const="full",
        help="7 repeats, memory over 100,000 calls (~6-8 min)",
    )
    p.set_defaults(mode="quick")
    p.add_argument(
        "--server",
        choices=("auto", "nginx", "stdlib"),
        default="auto",
        help="auto: nginx when installed, else the stdlib server",
    )
    p.add_argument(
        "--no-peers",
        action="store_true",
        help="skip the OpenAI SDK and LiteLLM even when installed",
    )
    p.add_argument(
        "--only",
        default=",".join(SECTIONS),
        help=f"comma-separated sections to run (default: all of {','.join(SECTIONS)})",
    )
    p.add_argument(
        "--doc",
        default=str(ROOT / "docs" / "benchmarks.md"),
        help="where to write the Markdown report (default docs/benchmarks.md)",
    )
    p.add_argument("--no-doc", action="store_true", help="do not write the Markdown report")
    p.add_argument(
        "--results",
        default=str(ROOT / "benchmarks" / "results"),
        help="raw JSON, profiles and logs (default benchmarks/results/)",
    )
    p.add_argument(
        "--async-parts",
        default=",".join(ASYNC_PARTS),
        help="parts of the async section (default: all of " + ",".join(ASYNC_PARTS) + ")",
    )
    p.add_argument(
        "--no-pin",
        dest="pin",
        action="store_false",
        help="do not pin the client to one core and the server to another",
    )
    p.add_argument("--calls", type=int, help="override calls per batch for the sequential test")
    p.add_argument("--repeats", type=int, help="override repeats for chat/stream/threads")
    p.add_argument("--check", action="store_true", help="exit 1 when a target fails")
    p.add_argument("--note", help="a free-form line added to the report's setup section")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cfg = dict(MODES[args.mode])
    if args.calls:
        cfg["calls"] = args.calls
    if args.repeats:
        cfg["repeats"] = cfg["stream_repeats"] = cfg["thread_repeats"] = args.repeats
    sections = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        raise SystemExit(f"unknown section(s): {', '.join(sorted(unknown))}")
    async_parts = [s.strip() for s in args.async_parts.split(",") if s.strip()]
    unknown = set(async_parts) - set(ASYNC_PARTS)
    if unknown:
        raise SystemExit(f"unknown async part(s): {', '.join(sorted(unknown))}")
    out_dir = Path(args.results)
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    command = "python -m benchmarks.run" + ("" if args.mode == "quick" else " --full")
    if args.server != "auto":
        command += f" --server {args.server}"
    if args.only != ",".join(SECTIONS):
        command += f" --only {args.only}"
    results: dict[str, Any] = {
        "mode": args.mode,
        "config": cfg,
        "command": command,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine_info(),
        "sections": sections,
        "skipped": {},
        "note": args.note,
    }
    timings: dict[str, float] = {}
    results["section_seconds"] = timings
    loads: dict[str, str | None] = {}
    results["section_load"] = loads
    last = [time.perf_counter()]

    def mark(section: str) -> None:
        now = time.perf_counter()
        timings[section] = round(now - last[0], 1)
        loads[section] = _loadavg()
        last[0] = now

    log(
        f"chatcore benchmarks ({args.mode}) on {results['machine']['cpu']}, "
        f"{results['machine']['python']}"
    )
    # never send loopback traffic through a proxy a developer has configured (only then is
    # the environment touched: requests' per-call proxy lookup depends on it)
    if any(k.lower() in ("http_proxy", "https_proxy", "all_proxy") for k in os.environ):
        no_proxy = os.environ.get("NO_PROXY") or os.environ.get("no_proxy")
        os.environ["NO_PROXY"] = os.environ["no_proxy"] = ",".join(
            filter(None, [no_proxy, "127.0.0.1", "localhost"])
        )
        results["proxy_note"] = "a proxy is configured: NO_PROXY extended with 127.0.0.1,localhost"

    with BenchServer(args.server) as server:
        results["server"] = {"kind": server.kind, "description": server.description}
        last[0] = time.perf_counter()
        log(f"server: {server.kind}: {server.description} at {server.base_url}")
        client_cpu = _pin(server, args.pin)
        results["pinning"] = (
            f"client (this harness and its child processes) pinned to core {client_cpu}, "
            f"the server to the other{'s' if (results['machine']['usable_cores'] or 0) > 2 else ''}"
            if client_cpu is not None
            else "not pinned" + (" (--no-pin)" if not args.pin else " (fewer than 2 usable cores)")
        )
        log(f"pinning: {results['pinning']}")
        cons, skipped = contenders_mod.build(server, skip_peers=args.no_peers)
        results["skipped"].update(skipped)
        for name, why in skipped.items():
            log(f"  skipped {name}: {why}")
        for c in cons:
            if getattr(c, "version", None):
                results["machine"]["versions"][c.name] = c.version
        by_name = {c.name: c for c in cons}
        try:
            if "chat" in sections:
                log(f"sequential chat: {cfg['calls']} calls x {cfg['repeats']} repeats per client")
                results["chat"] = measure.sequential(
                    cons, cfg["calls"], cfg["repeats"], peer_budget=cfg["peer_budget"], progress=log
                )
                mark("chat")
            if "stream" in sections:
                streamers = [c for c in cons if c.streams]
                log(
                    f"streaming: {cfg['streams']} streams x {cfg['stream_repeats']} repeats "
                    f"({payloads.STREAM_EVENT_COUNT} events each)"
                )
                results["stream"] = measure.streaming(
                    streamers,
                    cfg["streams"],
                    cfg["stream_repeats"],
                    payloads.STREAM_EVENT_COUNT,
                    peer_budget=cfg["peer_budget"] or 4.0,
                    progress=log,
                )
                log("streaming, one HTTP chunk per event")
                results["stream_chunked"] = measure.streaming(
                    streamers,
                    cfg["streams"],
                    cfg["stream_repeats"],
                    payloads.STREAM_EVENT_COUNT,
                    peer_budget=cfg["peer_budget"] or 4.0,
                    progress=log,
                    route="chunked",
                )
                results["stream_connections"] = {c.name: c.connections() for c in streamers}
                mark("stream")
            if "threads" in sections:
                threaders = [c for c in cons if c.threads and c.group != "whatif"]
                if not cfg["peer_threads"]:
                    for c in [c for c in threaders if c.group == "peer"]:
                        threaders.remove(c)
                        results["skipped"][f"{c.name} (threads)"] = (
                            "peers run the thread test with --full only (keeps --quick short)"
                        )
                log(
                    f"threads: {cfg['threads']} x {cfg['per_thread']} calls "
                    f"x {cfg['thread_repeats']} repeats"
                )
                results["threads"] = measure.threaded(
                    threaders,
                    cfg["threads"],
                    cfg["per_thread"],
                    cfg["thread_repeats"],
                    progress=log,
                )
                mark("threads")
            if "async" in sections:
                log(f"async (fresh interpreter): {', '.join(async_parts)}")
                results["async"] = _run_async(
                    server, args.mode, async_parts, args.no_peers, out_dir, client_cpu
                )
                results["skipped"].update(results["async"].pop("skipped", {}))
                mark("async")
            if "micro" in sections:
                log("micro-benchmarks (cache, limiter, retry, pipeline stages)")
                client = by_name["chatcore Client.chat"].client  # type: ignore[attr-defined]
                results["micro"] = micro.targets(client, cfg["micro_repeats"])
                results["stages"] = micro.stages(client, cfg["micro_repeats"])
                results["requests_stages"] = micro.requests_stages(
                    server.base_url + "/chat/completions", cfg["micro_repeats"]
                )
                mark("micro")
            if "profile" in sections:
                log(f"profiling client.chat and bare requests ({cfg['profile_calls']} calls each)")
                chat = by_name["chatcore Client.chat"]
                results["profile"] = {
                    "chatcore": profiling.cprofile(
                        chat.chat, cfg["profile_calls"], out_dir, "chatcore_chat"
                    ),
                    "requests": profiling.cprofile(
                        by_name["requests.Session (bare)"].chat,
                        cfg["profile_calls"],
                        out_dir,
                        "requests_post",
                    ),
                }
                results["profile"]["chatcore_stream"] = profiling.cprofile(
                    chat.stream, cfg["profile_calls"] // 4, out_dir, "chatcore_stream"
                )
                results["profile"]["chatcore_stream_chunked"] = profiling.cprofile(
                    lambda: chat.stream("chunked"),
                    cfg["profile_calls"] // 4,
                    out_dir,
                    "chatcore_stream_chunked",
                )
                results["profile"]["requests_stream_chunked"] = profiling.cprofile(
                    lambda: by_name["requests.Session (bare)"].stream("chunked"),
                    cfg["profile_calls"] // 4,
                    out_dir,
                    "requests_stream_chunked",
                )
                pyi = profiling.pyinstrument_profile(
                    chat.chat, cfg["profile_calls"], out_dir, "chatcore_chat"
                )
                results["profile"]["pyinstrument"] = pyi
                if pyi is None:
                    results["skipped"]["pyinstrument profile"] = (
                        "pyinstrument not importable here (cProfile used)"
                    )
                mark("profile")
            if "memory" in sections:
                log(f"memory: {cfg['memory_calls']:,} calls in a fresh process")
                proc = subprocess.run(
                    [
                        sys.executable,
                        "-m",
                        "benchmarks.memory",
                        server.base_url,
                        str(cfg["memory_calls"]),
                        str(cfg["trace_calls"]),
                    ],
                    capture_output=True,
                    text=True,
                    cwd=str(ROOT),
                )
                if proc.returncode != 0:
                    raise RuntimeError(f"memory run failed:\n{proc.stderr}")
                results["memory"] = json.loads(proc.stdout)
                mark("memory")
        finally:
            for c in cons:
                try:
                    c.close()
                except Exception:
                    pass

    if "imports" in sections:
        log(
            f"imports: fresh interpreters, {cfg['import_runs']} runs each "
            f"(peers {cfg['peer_import_runs']})"
        )
        results["imports"], skipped_imports = imports.measure(
            cfg["import_runs"], cfg["peer_import_runs"], progress=log
        )
        results["skipped"].update(skipped_imports)
        results["importtime"] = imports.importtime("chatcore")
        (out_dir / "importtime_chatcore.log").write_text(results["importtime"].pop("log"))
        mark("imports")

    results["elapsed_s"] = time.perf_counter() - started
    results["machine"]["load_end"] = _loadavg()
    results["targets"] = report.evaluate(results)
    # committed with the figures it gives: no machine's paths in it
    results["machine"]["executable"] = Path(results["machine"]["executable"]).name
    (out_dir / "results.json").write_text(
        report.tidy_paths(json.dumps(results, indent=2, default=str)) + "\n"
    )
    if not args.no_doc:
        # the report, its charts and the README's figures, all from these results
        for path in report.publish(results, ROOT, doc=Path(args.doc)):
            log(f"wrote {path}")
    log(f"wrote {out_dir}/results.json ({results['elapsed_s']:.0f} s in all)")
    log("")
    log(report.console_summary(results))
    failed = [t for t in results["targets"] if t["status"] == "fail"]
    return 1 if (args.check and failed) else 0


def _pin(server: BenchServer, wanted: bool) -> int | None:
    """Pin this process (the client; its children inherit it) to the last usable core and
    the server to the others; returns the client's core, or ``None`` when not pinned."""
    if not wanted or not hasattr(os, "sched_setaffinity"):
        return None
    usable = sorted(os.sched_getaffinity(0))
    if len(usable) < 2:
        return None
    client = usable[-1]
    if not server.pin(set(usable[:-1])):
        return None
    os.sched_setaffinity(0, {client})
    return client


def _run_async(
    server: BenchServer,
    mode: str,
    parts: list[str],
    no_peers: bool,
    out_dir: Path,
    cpu: int | None,
) -> dict[str, Any]:
    """The async section, in a fresh interpreter (``benchmarks.async_bench``): progress
    goes to the console, the figures come back as JSON."""
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.async_bench",
        str(server.port),
        "--mode",
        mode,
        "--parts",
        ",".join(parts),
        "--results",
        str(out_dir),
    ]
    if no_peers:
        cmd.append("--no-peers")
    if cpu is not None:
        cmd += ["--cpu", str(cpu)]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, cwd=str(ROOT))
    if proc.returncode != 0:
        raise RuntimeError(f"the async section failed (exit {proc.returncode})")
    found: dict[str, Any] = json.loads(proc.stdout)
    found["parts"] = parts
    found["aiohttp_version"] = found.get("versions", {}).get("aiohttp")
    return found


if __name__ == "__main__":
    sys.exit(main())
