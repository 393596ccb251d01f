"""The asyncio benchmarks, run by ``benchmarks.run`` in a fresh interpreter pinned to one
core (the server on another): ``python -m benchmarks.async_bench PORT --parts ...``
prints one JSON object.

Contenders (each does the whole request, as in ``contenders.py``: build, send, parse the
JSON, check the text):

* bare aiohttp: one ``aiohttp.ClientSession`` (``TCPConnector(limit=N)``),
  ``session.post(url, json=...)`` and ``await r.json()``; streams read line by line
  (``async for line in r.content``) with ``json.loads`` per event;
* ``chatcore.AsyncClient`` in its default configuration, with the provider option
  ``pool_maxsize=N`` (its aiohttp connector limit; the default is 32);
* ``chatcore.AsyncClient`` with the cache, the in-memory limiter (generous limits) and the
  metrics (always on): the ``pipeline`` part;
* when importable: ``openai.AsyncOpenAI`` (httpx), with an ``http_client`` whose
  ``limits`` allow N connections (its default allows 1,000, 100 kept alive).

N, the connection limit, is the number of calls in flight (at least 1) for every
contender alike.

Parts: ``fast`` (CPU per call at 1 / 64 / 256 in flight), ``stream`` (CPU per stream,
one at a time, on the whole-body and the one-chunk-per-event routes), ``slow`` (throughput
against the slow routes at 256 and 1,024 in flight, and memory per stream in flight, each
contender in a fresh process: ``python -m benchmarks.async_bench PORT --memory NAME N``),
``pipeline``, ``profile`` (cProfile of ``AsyncClient.chat`` and ``.stream`` and of bare
aiohttp, written under ``--results``).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import payloads

_now = time.perf_counter_ns
_cpu = time.process_time_ns
ROUTE = "/chat/completions"
EXPECTED = payloads.EXPECTED_TEXT
EXPECTED_STREAM = payloads.EXPECTED_STREAM_TEXT
#: Generous limits for the pipeline part: never wait, but every bucket is exercised.
GENEROUS_LIMITS = {"openai": {"rps": 1e6, "tpm": 1e12}}

MODES: dict[str, dict[str, Any]] = {
    "quick": {
        "fast_levels": [1, 64, 256],
        "fast_calls": 1000,
        "fast_repeats": 5,
        "streams": 400,
        "stream_repeats": 5,
        "peer_share": 0.25,  # peers (4-12x slower) do a quarter of the calls per batch
        "slow_levels": [256, 1024],
        "slow_rounds": 3,  # calls per worker and batch (chat)
        "slow_stream_rounds": 2,
        "slow_peer_rounds": 1,  # the OpenAI SDK is CPU-bound there: a batch of N keeps it short
        "slow_repeats": 3,
        "pipeline_calls": 1000,
        "pipeline_levels": [1, 64],
        "pipeline_repeats": 3,
        "profile_calls": 2000,
        "memory_inflight": [1024],
    },
    "full": {
        "fast_levels": [1, 64, 256],
        "fast_calls": 2000,
        "fast_repeats": 7,
        "streams": 600,
        "stream_repeats": 7,
        "peer_share": 0.5,
        "slow_levels": [256, 1024],
        "slow_rounds": 4,
        "slow_stream_rounds": 3,
        "slow_peer_rounds": 2,
        "slow_repeats": 5,
        "pipeline_calls": 2000,
        "pipeline_levels": [1, 64, 256],
        "pipeline_repeats": 5,
        "profile_calls": 4000,
        "memory_inflight": [256, 1024],
    },
}


class Mismatch(AssertionError):
    pass


def _check(text: Any, expected: str = EXPECTED) -> None:
    if text != expected:
        raise Mismatch(f"expected {expected!r}, got {text!r}")


def median(values: list[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


# --------------------------------------------------------------------------------------
# Contenders: made inside the running loop, for one connection limit


class AsyncContender:
    name = ""
    group = "baseline"  # "baseline", "chatcore" or "peer"

    async def chat(self, base: str) -> None:
        raise NotImplementedError

    async def stream(self, base: str) -> int:
        raise NotImplementedError

    async def aclose(self) -> None:
        pass


class BareAiohttp(AsyncContender):
    """``aiohttp.ClientSession.post(url, json=...)`` and ``await r.json()``; SSE read
    line by line from ``r.content`` with ``json.loads`` per event."""

    name = "aiohttp (bare)"

    def __init__(self, limit: int) -> None:
        import aiohttp

        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=limit),
            headers={"Authorization": f"Bearer {payloads.API_KEY}"},
        )
        self.body = payloads.request_body()
        self.stream_body = payloads.request_body(True)

    async def chat(self, base: str) -> None:
        async with self.session.post(base + ROUTE, json=self.body) as r:
            if r.status != 200:
                raise Mismatch(f"status {r.status}")
            data = await r.json()
        _check(data["choices"][0]["message"]["content"])

    async def stream(self, base: str) -> int:
        started = _now()
        first = 0
        parts: list[str] = []
        loads = json.loads
        async with self.session.post(base + ROUTE, json=self.stream_body) as r:
            if r.status != 200:
                raise Mismatch(f"status {r.status}")
            async for line in r.content:
                if not line.startswith(b"data: "):
                    continue
                data = line[6:].rstrip(b"\r\n")
                if data == b"[DONE]":
                    continue  # read to the end so the connection goes back to the pool
                event = loads(data)
                if not first:
                    first = _now()
                for choice in event["choices"]:
                    content = choice["delta"].get("content")
                    if content:
                        parts.append(content)
        _check("".join(parts), EXPECTED_STREAM)
        return first - started

    async def aclose(self) -> None:
        await self.session.close()


class ChatcoreAsync(AsyncContender):
    """``chatcore.AsyncClient``, default configuration, ``pool_maxsize=limit``: one
    client per base URL (the route is in the provider's ``base_url``)."""

    name = "chatcore AsyncClient"
    group = "chatcore"

    def __init__(self, limit: int, **client_kwargs: Any) -> None:
        self.limit = limit
        self.kwargs = client_kwargs
        self.clients: dict[str, Any] = {}
        self.model = "openai:" + payloads.MODEL

    def client(self, base: str) -> Any:
        found = self.clients.get(base)
        if found is None:
            import chatcore

            found = self.clients[base] = chatcore.AsyncClient(
                providers={
                    "openai": {
                        "api_key": payloads.API_KEY,
                        "base_url": base,
                        "pool_maxsize": self.limit,
                    }
                },
                environ={},
                **self.kwargs,
            )
        return found

    async def chat(self, base: str) -> None:
        _check((await self.client(base).chat(self.model, "Hello")).text)

    async def stream(self, base: str) -> int:
        started = _now()
        first = 0
        parts: list[str] = []
        async with self.client(base).stream(self.model, "Hello") as s:
            async for chunk in s:
                if not first:
                    first = _now()
                text = chunk.text
                if text:
                    parts.append(text)
        _check("".join(parts), EXPECTED_STREAM)
        return first - started

    async def aclose(self) -> None:
        for client in self.clients.values():
            await client.aclose()


class ChatcoreFull(ChatcoreAsync):
    """``AsyncClient(cache=True, rate_limits=GENEROUS_LIMITS)`` (metrics are always on).
    ``chat`` sends a new prompt each call (a cache miss: lookup, HTTP, store; the limiter
    acquires, reconciles and observes); ``hit`` repeats one prompt (served from the
    cache)."""

    name = "chatcore AsyncClient, cache + limiter + metrics (miss)"

    def __init__(self, limit: int) -> None:
        super().__init__(limit, cache=True, rate_limits=GENEROUS_LIMITS)
        self.n = 0

    async def chat(self, base: str) -> None:
        self.n += 1
        r = await self.client(base).chat(self.model, f"Hello {self.n}")
        if r.cached:
            raise Mismatch("expected a cache miss")
        _check(r.text)


class ChatcoreHit(ChatcoreAsync):
    name = "chatcore AsyncClient, cache + limiter + metrics (hit)"

    def __init__(self, limit: int) -> None:
        super().__init__(limit, cache=True, rate_limits=GENEROUS_LIMITS)

    async def chat(self, base: str) -> None:
        r = await self.client(base).chat(self.model, "Hello")
        _check(r.text)


class AsyncOpenAISDK(AsyncContender):
    """``openai.AsyncOpenAI(base_url=..., http_client=DefaultAsyncHttpxClient(limits=N))``."""

    name = "AsyncOpenAI (OpenAI SDK)"
    group = "peer"

    def __init__(self, limit: int) -> None:
        import openai

        try:
            import httpx2 as httpx  # the SDK's own httpx fork, in recent releases
        except ImportError:
            import httpx  # type: ignore[no-redef]

        self.openai = openai
        self.httpx = httpx
        self.limit = limit
        self.clients: dict[str, Any] = {}

    def client(self, base: str) -> Any:
        found = self.clients.get(base)
        if found is None:
            limits = self.httpx.Limits(
                max_connections=self.limit, max_keepalive_connections=self.limit
            )
            found = self.clients[base] = self.openai.AsyncOpenAI(
                api_key=payloads.API_KEY,
                base_url=base,
                http_client=self.openai.DefaultAsyncHttpxClient(limits=limits),
            )
        return found

    async def chat(self, base: str) -> None:
        r = await self.client(base).chat.completions.create(
            model=payloads.MODEL, messages=[{"role": "user", "content": "Hello"}]
        )
        _check(r.choices[0].message.content)

    async def stream(self, base: str) -> int:
        started = _now()
        first = 0
        parts: list[str] = []
        s = await self.client(base).chat.completions.create(
            model=payloads.MODEL,
            messages=[{"role": "user", "content": "Hello"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        async with s:
            async for chunk in s:
                if not first:
                    first = _now()
                for choice in chunk.choices:
                    if choice.delta.content:
                        parts.append(choice.delta.content)
        _check("".join(parts), EXPECTED_STREAM)
        return first - started

    async def aclose(self) -> None:
        for client in self.clients.values():
            await client.close()


def peer_available() -> str | None:
    """``None`` when the OpenAI SDK imports, else why not."""
    try:
        import openai  # noqa: F401
    except ImportError as exc:
        return f"not importable here ({exc.name or exc}); `pip install openai`"
    return None


def make(kinds: list[type[AsyncContender]], limit: int) -> list[AsyncContender]:
    return [k(limit) for k in kinds]  # type: ignore[call-arg]


# --------------------------------------------------------------------------------------
# Batches


async def batch(fn: Callable[[], Awaitable[Any]], inflight: int, total: int) -> tuple[int, int]:
    """``total`` calls of ``fn``, ``inflight`` at a time (workers pull from one count);
    returns (wall ns, process CPU ns)."""
    left = total

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await fn()

    gc.collect()
    cpu0 = _cpu()
    t0 = _now()
    await asyncio.gather(*(worker() for _ in range(min(inflight, total))))
    return _now() - t0, _cpu() - cpu0


async def interleaved(
    contenders: list[AsyncContender],
    call: Callable[[AsyncContender], Callable[[], Awaitable[Any]]],
    inflight: int,
    total: int,
    repeats: int,
    warmup: int,
    peer_total: int | None = None,
) -> dict[str, dict[str, Any]]:
    """Each repeat runs one batch of ``total`` calls per contender (``peer_total`` for
    peers, when given), ``inflight`` at a time; the order rotates between repeats. Per
    contender: median over repeats of CPU per call (us) and of calls per second."""
    fns = {c.name: call(c) for c in contenders}
    totals = {
        c.name: (peer_total if peer_total and c.group == "peer" else total) for c in contenders
    }
    for c in contenders:  # warm: opens the pooled connections, fills caches
        await batch(fns[c.name], inflight, max(warmup, inflight))
    cpu: dict[str, list[float]] = {c.name: [] for c in contenders}
    rate: dict[str, list[float]] = {c.name: [] for c in contenders}
    for r in range(repeats):
        order = contenders[r % len(contenders) :] + contenders[: r % len(contenders)]
        for c in order:
            n = totals[c.name]
            wall, used = await batch(fns[c.name], inflight, n)
            cpu[c.name].append(used / n / 1e3)
            rate[c.name].append(n / (wall / 1e9))
    return {
        c.name: {
            "group": c.group,
            "inflight": inflight,
            "calls": totals[c.name],
            "repeats": repeats,
            "cpu_us": median(cpu[c.name]),
            "per_s": median(rate[c.name]),
            "cpu_per_repeat": cpu[c.name],
            "per_s_per_repeat": rate[c.name],
        }
        for c in contenders
    }


# --------------------------------------------------------------------------------------
# Parts


async def part_fast(port: int, kinds: list[type[AsyncContender]], cfg: dict, log: Any) -> dict:
    base = f"http://127.0.0.1:{port}{payloads.CHAT_PREFIX}"
    out = {}
    for level in cfg["fast_levels"]:
        contenders = make(kinds, level)
        try:
            total = cfg["fast_calls"] if level > 1 else cfg["fast_calls"] // 2
            out[str(level)] = await interleaved(
                contenders,
                lambda c: functools.partial(c.chat, base),
                level,
                total,
                cfg["fast_repeats"],
                warmup=50,
                peer_total=max(level, int(total * cfg["peer_share"])),
            )
        finally:
            for c in contenders:
                await c.aclose()
        log(f"  async chat, fast server, {level} in flight: done")
    return out


async def part_stream(port: int, kinds: list[type[AsyncContender]], cfg: dict, log: Any) -> dict:
    out = {}
    for route in ("whole", "chunked"):
        base = f"http://127.0.0.1:{port}{payloads.STREAM_ROUTES[route]}"
        contenders = make(kinds, 1)
        try:
            out[route] = await interleaved(
                contenders,
                lambda c, base=base: functools.partial(c.stream, base),  # type: ignore[misc]
                1,
                cfg["streams"],
                cfg["stream_repeats"],
                warmup=20,
                peer_total=int(cfg["streams"] * cfg["peer_share"]),
            )
        finally:
            for c in contenders:
                await c.aclose()
        log(f"  async streams ({route}), one at a time: done")
    return out


async def part_slow(port: int, kinds: list[type[AsyncContender]], cfg: dict, log: Any) -> dict:
    chat_base = f"http://127.0.0.1:{port}{payloads.SLOW_PREFIX}"
    stream_base = f"http://127.0.0.1:{port}{payloads.SLOW_STREAM_PREFIX}"
    out: dict[str, Any] = {"chat": {}, "stream": {}}
    for level in cfg["slow_levels"]:
        contenders = make(kinds, level)
        try:
            out["chat"][str(level)] = await interleaved(
                contenders,
                lambda c: functools.partial(c.chat, chat_base),
                level,
                level * cfg["slow_rounds"],
                cfg["slow_repeats"],
                warmup=level,
                peer_total=level * cfg["slow_peer_rounds"],
            )
            log(f"  async chat, slow server (0.3 s), {level} in flight: done")
            out["stream"][str(level)] = await interleaved(
                contenders,
                lambda c: functools.partial(c.stream, stream_base),
                level,
                level * cfg["slow_stream_rounds"],
                cfg["slow_repeats"],
                warmup=level,
                peer_total=level * cfg["slow_peer_rounds"],
            )
            log(f"  async streams, slow server (20 ms gaps), {level} in flight: done")
        finally:
            for c in contenders:
                await c.aclose()
    return out


async def part_pipeline(port: int, peers: bool, cfg: dict, log: Any) -> dict:
    base = f"http://127.0.0.1:{port}{payloads.CHAT_PREFIX}"
    kinds: list[type[AsyncContender]] = [BareAiohttp, ChatcoreAsync, ChatcoreFull, ChatcoreHit]
    out = {}
    for level in cfg["pipeline_levels"]:
        contenders = make(kinds, level)
        try:
            out[str(level)] = await interleaved(
                contenders,
                lambda c: functools.partial(c.chat, base),
                level,
                cfg["pipeline_calls"],
                cfg["pipeline_repeats"],
                warmup=50,
            )
            full = next(c for c in contenders if isinstance(c, ChatcoreFull))
            client = full.clients[base]
            out[str(level)]["_metrics"] = _metrics_summary(client)
        finally:
            for c in contenders:
                await c.aclose()
        log(f"  async pipeline (cache, limiter, metrics), {level} in flight: done")
    return out


def _metrics_summary(client: Any) -> dict[str, Any]:
    """What the full pipeline's client recorded: evidence that every stage ran."""
    out: dict[str, Any] = {}
    try:
        snap = client.metrics.snapshot()
        out["metrics"] = (
            {k: v for k, v in snap.items() if not isinstance(v, dict)}
            if isinstance(snap, dict)
            else str(snap)[:300]
        )
    except Exception as exc:  # informational only
        out["metrics"] = f"{type(exc).__name__}: {exc}"
    try:
        stats = client.cache.stats()
        out["cache"] = stats if isinstance(stats, dict) else str(stats)
    except Exception as exc:
        out["cache"] = f"{type(exc).__name__}: {exc}"
    return out


async def part_profile(port: int, cfg: dict, out_dir: Path, log: Any) -> dict:
    from benchmarks import profiling

    chat_base = f"http://127.0.0.1:{port}{payloads.CHAT_PREFIX}"
    stream_base = f"http://127.0.0.1:{port}{payloads.CHUNKED_PREFIX}"
    n = cfg["profile_calls"]
    out = {}
    for tag, kind, what, calls in (
        ("async_chatcore_chat", ChatcoreAsync, "chat", n),
        ("async_aiohttp_chat", BareAiohttp, "chat", n),
        ("async_chatcore_stream", ChatcoreAsync, "stream", n // 4),
        ("async_aiohttp_stream", BareAiohttp, "stream", n // 4),
    ):
        c = kind(1)
        base = chat_base if what == "chat" else stream_base
        fn = getattr(c, what)
        try:
            for _ in range(50):
                await fn(base)
            out[tag] = await profiling.cprofile_async(
                functools.partial(fn, base), calls, out_dir, tag
            )
        finally:
            await c.aclose()
    log("  async profiles: done")
    return out


# --------------------------------------------------------------------------------------
# Memory per stream in flight (a fresh process per contender)


async def memory_run(port: int, name: str, inflight: int) -> dict[str, Any]:
    kinds = {k.name: k for k in (BareAiohttp, ChatcoreAsync, AsyncOpenAISDK)}
    c = kinds[name](inflight)  # type: ignore[call-arg]
    base = f"http://127.0.0.1:{port}{payloads.SLOW_STREAM_PREFIX}"
    fast = f"http://127.0.0.1:{port}{payloads.CHUNKED_PREFIX}"
    try:
        for _ in range(20):  # imports, first-use caches; one connection
            await c.stream(fast)
        gc.collect()
        await asyncio.sleep(0.05)
        before = rss_kib()
        peak = before
        running = True

        async def sample() -> None:
            nonlocal peak
            while running:
                peak = max(peak, rss_kib())
                await asyncio.sleep(0.01)

        sampler = asyncio.ensure_future(sample())
        t0 = time.perf_counter()
        await asyncio.gather(*(c.stream(base) for _ in range(inflight)))
        seconds = time.perf_counter() - t0
        running = False
        await sampler
        gc.collect()
        after = rss_kib()
    finally:
        await c.aclose()
    return {
        "name": name,
        "inflight": inflight,
        "rss_before_kib": before,
        "rss_peak_kib": peak,
        "rss_after_kib": after,
        "kib_per_stream": (peak - before) / inflight,
        "seconds": seconds,
    }


def memory(port: int, names: list[str], levels: list[int], log: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for level in levels:
        for name in names:
            proc = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "benchmarks.async_bench",
                    str(port),
                    "--memory",
                    name,
                    str(level),
                ],
                capture_output=True,
                text=True,
                cwd=str(Path(__file__).resolve().parent.parent),
            )
            if proc.returncode != 0:
                raise RuntimeError(f"memory run of {name} failed:\n{proc.stderr}")
            out.setdefault(str(level), {})[name] = json.loads(proc.stdout)
        log(f"  memory per stream in flight ({level} slow streams, fresh processes): done")
    return out


# --------------------------------------------------------------------------------------


def _raise_nofile() -> None:
    try:
        import resource

        _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))
    except (ImportError, ValueError, OSError):
        pass


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    cfg = dict(MODES[args.mode])
    parts = [p for p in args.parts.split(",") if p]
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    skipped: dict[str, str] = {}
    kinds: list[type[AsyncContender]] = [BareAiohttp, ChatcoreAsync]
    why = "skipped (--no-peers)" if args.no_peers else peer_available()
    if why is None:
        kinds.append(AsyncOpenAISDK)
    else:
        skipped[AsyncOpenAISDK.name] = why
    import aiohttp

    import chatcore

    out: dict[str, Any] = {
        "config": cfg,
        "skipped": skipped,
        "affinity": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "versions": {"aiohttp": aiohttp.__version__, "chatcore": chatcore.__version__},
        "load": {},
    }
    if why is None:
        import openai

        out["versions"]["openai"] = openai.__version__
    out_dir = Path(args.results)
    out_dir.mkdir(parents=True, exist_ok=True)
    for part in parts:
        out["load"][part] = [" / ".join(f"{x:.2f}" for x in os.getloadavg())]
        if part == "fast":
            out["fast"] = await part_fast(args.port, kinds, cfg, log)
        elif part == "stream":
            out["stream"] = await part_stream(args.port, kinds, cfg, log)
        elif part == "slow":
            out["slow"] = await part_slow(args.port, kinds, cfg, log)
        elif part == "memory":
            out["memory"] = memory(args.port, [k.name for k in kinds], cfg["memory_inflight"], log)
        elif part == "pipeline":
            out["pipeline"] = await part_pipeline(args.port, why is None, cfg, log)
        elif part == "profile":
            out["profile"] = await part_profile(args.port, cfg, out_dir, log)
        else:
            raise SystemExit(f"unknown part {part!r}")
        out["load"][part].append(" / ".join(f"{x:.2f}" for x in os.getloadavg()))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.async_bench")
    p.add_argument("port", type=int)
    p.add_argument("--mode", choices=tuple(MODES), default="quick")
    p.add_argument("--parts", default="fast,stream,pipeline,slow,memory,profile")
    p.add_argument("--no-peers", action="store_true")
    p.add_argument("--results", default=str(Path(__file__).resolve().parent / "results"))
    p.add_argument("--memory", nargs=2, metavar=("NAME", "INFLIGHT"))
    p.add_argument("--cpu", type=int, help="pin this process (and its children) to one core")
    args = p.parse_args(argv)
    if args.cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.cpu})
    _raise_nofile()
    if args.memory:
        result = asyncio.run(memory_run(args.port, args.memory[0], int(args.memory[1])))
    else:
        result = asyncio.run(main_async(args))
    print(json.dumps(result, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
