"""Profiles of ``client.chat`` (cProfile always; pyinstrument when importable) and of
bare ``requests.Session.post`` for comparison, and (``cprofile_async``) of
``AsyncClient.chat`` / ``.stream`` and bare aiohttp; per-call cost of named hot spots."""

from __future__ import annotations

import cProfile
import io
import pstats
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

#: (label, filename fragment, function name): cumulative time per call is reported (a
#: name ending in ``*`` matches every function it starts). The pipeline is written once
#: in chatcore/_pipeline.py (``chat_pipeline``, ``stream_pipeline``) and driven by
#: ``run_sync`` (Client) or ``run_async`` (AsyncClient).
HOTSPOTS: list[tuple[str, str, str]] = [
    ("Client.chat (total)", "chatcore/_client.py", "chat"),
    ("AsyncClient.chat (total)", "chatcore/_aclient.py", "chat"),
    ("BaseClient._chat_request (normalize + validate)", "chatcore/_base.py", "_chat_request"),
    ("build_request (validation)", "chatcore/_validate.py", "build_request"),
    ("chat_pipeline (cache, limiter, retry, record)", "chatcore/_pipeline.py", "chat_pipeline"),
    ("run_sync (sync driver)", "chatcore/_pipeline.py", "=run_sync"),
    ("Send.run_async (await the transport)", "chatcore/_pipeline.py", "Send.run_async"),
    ("run_async (async driver)", "chatcore/_pipeline.py", "=run_async"),
    ("_retrying (the retry loop)", "chatcore/_pipeline.py", "_retrying"),
    ("_attempt (limiter grant + send)", "chatcore/_pipeline.py", "_attempt"),
    ("Component.run_async (limiter, cache calls)", "chatcore/_pipeline.py", "Component.run_async"),
    ("_cache_lookup + _cache_store", "chatcore/_pipeline.py", "_cache_*"),
    ("cache_key", "chatcore/_cache.py", "cache_key"),
    ("ChatCompletionsProvider.prepare_chat", "chatcore_openai/_wire.py", "prepare_chat"),
    ("chat_body", "chatcore_openai/_wire.py", "chat_body"),
    ("ChatCompletionsProvider.parse_chat", "chatcore_openai/_wire.py", "parse_chat"),
    ("decode_chat", "chatcore_openai/_wire.py", "decode_chat"),
    ("HttpTransport.send", "chatcore/_transport.py", "HttpTransport.send"),
    ("HttpTransport._send", "chatcore/_transport.py", "_send"),
    ("AsyncHttpTransport.send", "chatcore/_atransport.py", "AsyncHttpTransport.send"),
    ("AsyncHttpTransport._open (request + head)", "chatcore/_atransport.py", "_open"),
    ("AsyncHttpTransport._read (body)", "chatcore/_atransport.py", "_read"),
    ("chatcore _within (asyncio.wait_for per read)", "chatcore/_atransport.py", "_within"),
    ("asyncio.wait_for", "asyncio/tasks.py", "wait_for"),
    ("_head (headers copied to a CIMultiDict)", "chatcore/_atransport.py", "_head"),
    ("dumps_body", "chatcore/_http.py", "dumps_body"),
    ("aiohttp ClientSession._request", "aiohttp/client.py", "_request"),
    ("aiohttp ClientResponse.read / .json", "aiohttp/client_reqrep.py", "read"),
    ("requests Session.request", "requests/sessions.py", "request"),
    ("requests Session.prepare_request", "requests/sessions.py", "prepare_request"),
    (
        "requests Session.merge_environment_settings",
        "requests/sessions.py",
        "merge_environment_settings",
    ),
    ("requests get_environ_proxies", "requests/utils.py", "get_environ_proxies"),
    ("requests Session.send", "requests/sessions.py", "send"),
    ("requests HTTPAdapter.send", "requests/adapters.py", "send"),
    ("urllib3 urlopen", "urllib3/connectionpool.py", "urlopen"),
    ("requests Response.content", "requests/models.py", "content"),
    ("ChatResponse.from_dict", "chatcore/models.py", "from_dict"),
    ("attrs.evolve", "attr/_funcs.py", "evolve"),
    ("mask_secrets", "chatcore/_redact.py", "mask_secrets"),
    ("BaseClient._record + _record_attempt (metrics)", "chatcore/_base.py", "_record*"),
    ("loguru Logger._log", "loguru/_logger.py", "_log"),
    ("InMemoryRateLimiter.acquire", "chatcore/_limits.py", "acquire"),
    ("InMemoryRateLimiter.aacquire", "chatcore/_limits.py", "aacquire"),
    ("json.dumps", "json/__init__.py", "dumps"),
    # streaming
    ("Client.stream (open, first chunk)", "chatcore/_client.py", "stream"),
    ("AsyncClient._open_stream (open, first chunk)", "chatcore/_aclient.py", "_open_stream"),
    ("stream_pipeline", "chatcore/_pipeline.py", "stream_pipeline"),
    ("stream_completed (settle, record)", "chatcore/_pipeline.py", "stream_completed"),
    ("ChatStream.__next__", "chatcore/_stream.py", "ChatStream.__next__"),
    ("AsyncChatStream.__anext__", "chatcore/_stream.py", "__anext__"),
    ("_StreamState._accept", "chatcore/_stream.py", "_accept"),
    ("_StreamState._masked", "chatcore/_stream.py", "_masked"),
    ("HttpTransport.stream_chunks", "chatcore/_transport.py", "stream_chunks"),
    ("AsyncHttpTransport.stream_chunks", "chatcore/_atransport.py", "stream_chunks"),
    ("_Events.next (async SSE reads)", "chatcore/_atransport.py", "_Events.next"),
    ("AsyncHttpTransport._read_some", "chatcore/_atransport.py", "_read_some"),
    ("AsyncHttpTransport._drain", "chatcore/_atransport.py", "_drain"),
    ("_Pushed.push (body cap)", "chatcore/_atransport.py", "push"),
    ("SSEParser.feed (SSE parser)", "chatcore/_sse.py", "SSEParser.feed"),
    ("OpenAIStreamDecoder.feed", "chatcore/_sse.py", "OpenAIStreamDecoder.feed"),
    ("chunk_from_dict", "chatcore/_sse.py", "chunk_from_dict"),
    ("StreamAssembler.add", "chatcore/_stream.py", "add"),
    ("requests iter_content", "requests/models.py", "generate"),
    ("requests iter_lines", "requests/models.py", "iter_lines"),
    ("aiohttp StreamReader.read", "aiohttp/streams.py", "read"),
    ("aiohttp StreamReader.readline", "aiohttp/streams.py", "readline"),
    ("json.loads", "json/__init__.py", "loads"),
]


_LINES: dict[tuple[str, str], int | None] = {}


def _first_line(frag: str, qualname: str) -> int | None:
    """The first line of ``qualname`` (``Class.method``, or a module-level function) in
    the module at path ``frag``, as cProfile keys it (``co_firstlineno``)."""
    found = _LINES.get((frag, qualname), -1)
    if found != -1:
        return found
    line = None
    try:
        import importlib

        obj: Any = importlib.import_module(frag.removesuffix(".py").replace("/", "."))
        for part in qualname.split("."):
            obj = getattr(obj, part)
        line = obj.__code__.co_firstlineno
    except Exception:  # moved or renamed: the hot spot is simply not reported
        line = None
    _LINES[(frag, qualname)] = line
    return line


def _match(key: tuple[str, int, str], frag: str, func: str) -> bool:
    """``func``: a name (every function of that name in the file), ``name*`` (every name
    it starts), ``Class.method`` or ``=function`` (that one definition alone)."""
    filename, line, name = key
    if frag not in filename.replace("\\", "/"):
        return False
    if func.endswith("*"):
        return name.startswith(func[:-1])
    if "." in func or func.startswith("="):
        qualname = func.lstrip("=")
        return name == qualname.rsplit(".", 1)[-1] and line == _first_line(frag, qualname)
    return name == func


def cprofile(fn: Callable[[], Any], calls: int, out_dir: Path, tag: str) -> dict[str, Any]:
    for _ in range(50):
        fn()
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(calls):
        fn()
    prof.disable()
    return summarize(prof, calls, out_dir, tag)


async def cprofile_async(
    fn: Callable[[], Awaitable[Any]], calls: int, out_dir: Path, tag: str
) -> dict[str, Any]:
    """``calls`` awaits of ``fn()`` one after the other under cProfile (the event loop's
    own work between them included); warm it up first."""
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(calls):
        await fn()
    prof.disable()
    return summarize(prof, calls, out_dir, tag)


def summarize(prof: cProfile.Profile, calls: int, out_dir: Path, tag: str) -> dict[str, Any]:
    """Save the profile under ``out_dir`` and return per-call figures: the total, the
    named hot spots (cumulative) and the top functions by self time."""
    prof.dump_stats(str(out_dir / f"profile_{tag}.pstats"))
    stats = pstats.Stats(prof)
    total = stats.total_tt  # type: ignore[attr-defined]
    text = io.StringIO()
    s = pstats.Stats(prof, stream=text)
    s.sort_stats("tottime").print_stats(30)
    s.sort_stats("cumulative").print_stats(45)
    (out_dir / f"profile_{tag}.txt").write_text(text.getvalue())
    raw = stats.stats  # type: ignore[attr-defined]
    # time the event loop spent waiting in epoll/select is idle, not CPU: "busy" leaves it out
    idle = sum(v[2] for k, v in raw.items() if k[0] == "~" and "of 'select." in k[2])
    top_self = sorted(
        ((k, v) for k, v in raw.items() if not (k[0] == "~" and "of 'select." in k[2])),
        key=lambda kv: -kv[1][2],
    )[:15]
    hot = []
    for label, frag, func in HOTSPOTS:
        cum = 0.0
        ncalls = 0
        for key, (_cc, nc, _tt, ct, _callers) in raw.items():
            if _match(key, frag, func):
                cum += ct
                ncalls += nc
        if ncalls:
            hot.append(
                {"label": label, "us_per_call": cum / calls * 1e6, "calls_per_call": ncalls / calls}
            )
    return {
        "calls": calls,
        "total_s": total,
        "us_per_call_profiled": total / calls * 1e6,
        "us_per_call_busy": (total - idle) / calls * 1e6,
        "hotspots": hot,
        "top_self": [
            {
                "function": f"{Path(k[0]).parent.name}/{Path(k[0]).name}:{k[1]}({k[2]})",
                "self_us_per_call": v[2] / calls * 1e6,
                "cum_us_per_call": v[3] / calls * 1e6,
                "ncalls_per_call": v[1] / calls,
            }
            for k, v in top_self
        ],
    }


def pyinstrument_profile(fn: Callable[[], Any], calls: int, out_dir: Path, tag: str) -> str | None:
    try:
        from pyinstrument import Profiler
    except ImportError:
        return None
    for _ in range(50):
        fn()
    profiler = Profiler(interval=0.001)
    profiler.start()
    for _ in range(calls):
        fn()
    profiler.stop()
    text = profiler.output_text(unicode=False, color=False, show_all=False)
    path = out_dir / f"profile_{tag}_pyinstrument.txt"
    path.write_text(text)
    return str(path)
