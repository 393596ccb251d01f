"""Profiles of ``client.chat`` (cProfile always; pyinstrument when importable) and of
bare ``requests.Session.post`` for comparison; per-call cost of named hot spots."""

from __future__ import annotations

import cProfile
import io
import pstats
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: (label, filename fragment, function name): cumulative time per call is reported.
HOTSPOTS: list[tuple[str, str, str]] = [
    ("Client.chat (total)", "chatcore/_client.py", "chat"),
    ("Client.build_request", "chatcore/_client.py", "build_request"),
    ("Client._execute", "chatcore/_client.py", "_execute"),
    ("RetryPolicy.call (incl. the attempt)", "chatcore/_retry.py", "call"),
    ("tenacity Retrying.__call__", "tenacity/__init__.py", "__call__"),
    ("ChatCompletionsProvider.chat", "chatcore_openai/_wire.py", "chat"),
    ("chat_body", "chatcore_openai/_wire.py", "chat_body"),
    ("HttpTransport.request", "chatcore/_transport.py", "request"),
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
    ("decode_chat", "chatcore_openai/_wire.py", "decode_chat"),
    ("ChatResponse.from_dict", "chatcore/models.py", "from_dict"),
    ("attrs.evolve", "attr/_funcs.py", "evolve"),
    ("Client._record + _record_attempt (metrics)", "chatcore/_client.py", "_record*"),
    ("loguru Logger._log", "loguru/_logger.py", "_log"),
    ("InMemoryRateLimiter.acquire", "chatcore/_limits.py", "acquire"),
    ("json.dumps", "json/__init__.py", "dumps"),
    # streaming
    ("Client.stream (open, first chunk)", "chatcore/_client.py", "stream"),
    ("ChatStream.__next__", "chatcore/_stream.py", "__next__"),
    ("stream_chat_completions", "chatcore/_sse.py", "stream_chat_completions"),
    ("openai_chunks", "chatcore/_sse.py", "openai_chunks"),
    ("iter_sse (SSE parser: lines and events)", "chatcore/_sse.py", "_events"),
    ("chunk_from_dict", "chatcore/_sse.py", "chunk_from_dict"),
    ("requests iter_content", "requests/models.py", "generate"),
    ("requests iter_lines", "requests/models.py", "iter_lines"),
    ("json.loads", "json/__init__.py", "loads"),
]


def _match(key: tuple[str, int, str], frag: str, func: str) -> bool:
    filename, _line, name = key
    if frag not in filename.replace("\\", "/"):
        return False
    if func.endswith("*"):
        return name.startswith(func[:-1])
    return name == func


def cprofile(fn: Callable[[], Any], calls: int, out_dir: Path, tag: str) -> dict[str, Any]:
    for _ in range(50):
        fn()
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(calls):
        fn()
    prof.disable()
    prof.dump_stats(str(out_dir / f"profile_{tag}.pstats"))
    stats = pstats.Stats(prof)
    total = stats.total_tt  # type: ignore[attr-defined]
    text = io.StringIO()
    s = pstats.Stats(prof, stream=text)
    s.sort_stats("tottime").print_stats(30)
    s.sort_stats("cumulative").print_stats(45)
    (out_dir / f"profile_{tag}.txt").write_text(text.getvalue())
    raw = stats.stats  # type: ignore[attr-defined]
    top_self = sorted(raw.items(), key=lambda kv: -kv[1][2])[:15]
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
