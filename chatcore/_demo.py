"""``chatcore demo`` / ``make demo``: real chats through the bundled plugins over HTTP.

With ``OPENAI_API_KEY``, ``HF_TOKEN`` or ``ANTHROPIC_API_KEY`` set, those providers call the
real services. Without them, local stand-in servers from :mod:`chatcore.testing.server`
(OpenAI-compatible, TGI-flavoured, and speaking Anthropic's Messages API) answer on
127.0.0.1, and the demo says so plainly.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any, Literal, TextIO

STAND_IN_KEY = "sk-chatcore-demo-stand-in-key"
STAND_IN_TOKEN = "hf_chatcoreDemoStandInToken"
STAND_IN_ANTHROPIC_KEY = "sk-ant-chatcore-demo-stand-in-key"
ANTHROPIC_MODEL = "anthropic:claude-haiku-4-5"

Flavor = Literal["openai", "azure", "tgi", "anthropic"]


@contextlib.contextmanager
def _stand_in(flavor: Flavor, api_key: str | None) -> Iterator[Any]:
    from chatcore.testing.server import StandInServer

    server = StandInServer(flavor=flavor, api_key=api_key)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _show(out: TextIO, label: str, response: Any) -> None:
    usage = response.usage
    tokens = f"{usage.prompt_tokens}+{usage.completion_tokens} tokens" if usage else "no usage"
    if usage is not None:
        parts = [
            f"{name} {value}"
            for name, value in (
                ("cached", usage.cached_tokens),
                ("cache writes", usage.cache_creation_tokens),
                ("reasoning", usage.reasoning_tokens),
            )
            if value
        ]
        if parts:
            tokens += f" ({', '.join(parts)})"
    out.write(
        f"  {label}\n"
        f"    reply:      {response.text.strip()}\n"
        f"    model:      {response.provider}:{response.model}\n"
        f"    latency:    {response.latency * 1000:.1f} ms, "
        f"{response.attempts} attempt(s), {tokens}\n"
        f"    request id: {response.request_id or '-'}\n"
    )


def run_demo(out: TextIO) -> int:
    """Run the demo and return an exit status."""
    import chatcore
    from chatcore import Client
    from chatcore.exceptions import ChatcoreError

    out.write(f"chatcore {chatcore.__version__} demo\n\nInstalled plugins:\n")
    for record in chatcore.list_plugins():
        if record.builtin:
            continue
        status = record.error or "ok"
        out.write(
            f"  {record.name:<12} {record.distribution or '-'} {record.version or '-'}"
            f"  providers: {', '.join(record.providers) or '-'}  [{status}]\n"
        )
    out.write("\n")
    failures = 0
    with contextlib.ExitStack() as stack:
        providers: dict[str, dict[str, Any]] = {}
        jobs: list[tuple[str, str, dict[str, Any]]] = []
        if os.environ.get("OPENAI_API_KEY"):
            out.write("OpenAI: OPENAI_API_KEY is set, calling the real OpenAI API.\n")
            jobs.append(("openai:gpt-4o-mini", "Say hello to chatcore in five words.", {}))
        else:
            server = stack.enter_context(_stand_in("openai", STAND_IN_KEY))
            providers["openai"] = {"api_key": STAND_IN_KEY, "base_url": server.base_url}
            out.write(
                "OpenAI: OPENAI_API_KEY is not set, so this uses the bundled LOCAL STAND-IN\n"
                f"  server at {server.base_url} (not OpenAI; its replies are canned).\n"
            )
            jobs.append(("openai:gpt-4o-mini", "Say hello to chatcore in five words.", {}))
        if os.environ.get("HF_TOKEN"):
            out.write(
                "Hugging Face: HF_TOKEN is set, calling the real Inference Providers router.\n"
            )
            jobs.append(
                ("huggingface:meta-llama/Llama-3.1-8B-Instruct", "Say hello in five words.", {})
            )
        else:
            router = stack.enter_context(_stand_in("openai", STAND_IN_TOKEN))
            tgi = stack.enter_context(_stand_in("tgi", None))
            providers["huggingface"] = {"api_key": STAND_IN_TOKEN, "base_url": router.base_url}
            providers["tgi-demo"] = {"base_url": tgi.url}
            out.write(
                "Hugging Face: HF_TOKEN is not set, so this uses bundled LOCAL STAND-IN servers\n"
                f"  for the router ({router.base_url}) and a TGI server ({tgi.url}).\n"
            )
            jobs.append(
                (
                    "huggingface:meta-llama/Llama-3.1-8B-Instruct:fastest",
                    "Say hello in five words.",
                    {},
                )
            )
            jobs.append(("tgi-demo:tgi", "Say hello in five words.", {"stop": "\n"}))
        anthropic = _anthropic_setup(out, stack, providers)
        if anthropic:
            jobs.append((ANTHROPIC_MODEL, "Say hello to chatcore in five words.", {}))
        out.write("\n")
        tgi_settings = providers.pop("tgi-demo", None)
        client = stack.enter_context(Client(providers=providers, max_retries=1))
        tgi_client = None
        if tgi_settings is not None:
            tgi_client = stack.enter_context(
                Client(providers={"huggingface": {**tgi_settings, "api_key": None}}, max_retries=1)
            )
        for model, prompt, params in jobs:
            use = client
            label = model
            if model.startswith("tgi-demo:"):
                if tgi_client is None:
                    continue
                use, model = tgi_client, "huggingface:" + model.split(":", 1)[1]
                label = f"{model} (a TGI server, stop given as a string)"
            try:
                _show(out, label, use.chat(model, prompt, max_tokens=32, **params))
            except ChatcoreError as exc:
                failures += 1
                out.write(f"  {label}\n    FAILED: {type(exc).__name__}: {exc}\n")
        if anthropic:
            failures += _anthropic_stream(out, client)
        failures += _extras(out, client, jobs[0][0])
    out.write("\nDone.\n" if not failures else f"\n{failures} step(s) failed.\n")
    return 1 if failures else 0


def _anthropic_setup(
    out: TextIO, stack: contextlib.ExitStack[Any], providers: dict[str, dict[str, Any]]
) -> bool:
    """Configure the ``anthropic`` provider (the real API with ``ANTHROPIC_API_KEY``, else
    the Messages API stand-in); False when its plugin is not installed."""
    import importlib.util

    if importlib.util.find_spec("chatcore_anthropic") is None:
        out.write("Anthropic: chatcore-anthropic is not installed; skipped.\n")
        return False
    if os.environ.get("ANTHROPIC_API_KEY"):
        out.write("Anthropic: ANTHROPIC_API_KEY is set, calling the real Messages API.\n")
        return True
    server = stack.enter_context(_stand_in("anthropic", STAND_IN_ANTHROPIC_KEY))
    providers["anthropic"] = {"api_key": STAND_IN_ANTHROPIC_KEY, "base_url": server.base_url}
    out.write(
        "Anthropic: ANTHROPIC_API_KEY is not set, so this uses the bundled LOCAL STAND-IN\n"
        f"  of the Messages API at {server.base_url} (not Anthropic; its replies are canned).\n"
    )
    return True


def _anthropic_stream(out: TextIO, client: Any) -> int:
    """One Anthropic stream: text as it arrives, then its finish reason and usage."""
    from chatcore.exceptions import ChatcoreError

    out.write(f"\nStreaming from {ANTHROPIC_MODEL}:\n  ")
    try:
        with client.stream(ANTHROPIC_MODEL, "Stream a short greeting.", max_tokens=64) as stream:
            for chunk in stream:
                out.write(chunk.text)
                out.flush()
        response = stream.response
        usage = response.usage if response is not None else None
        tokens = f"{usage.prompt_tokens}+{usage.completion_tokens} tokens" if usage else "-"
        reason = response.finish_reason if response is not None else "-"
        out.write(f"\n    finish reason {reason}, {tokens}, request id {stream.request_id}\n")
    except ChatcoreError as exc:
        out.write(f"FAILED: {type(exc).__name__}: {exc}\n")
        return 1
    return 0


def _extras(out: TextIO, client: Any, model: str) -> int:
    """Streaming, a cache hit, the metrics summary and a health check on ``client``."""
    from chatcore.exceptions import ChatcoreError

    failures = 0
    out.write("\nStreaming (chunks as they arrive):\n  ")
    try:
        with client.stream(model, "Stream a short greeting.", max_tokens=32) as stream:
            for chunk in stream:
                out.write(chunk.text)
                out.flush()
        ttft = stream.time_to_first_token or 0.0
        out.write(f"\n    first chunk after {ttft * 1000:.1f} ms, {stream.chunk_count} chunks\n")
    except ChatcoreError as exc:
        failures += 1
        out.write(f"FAILED: {type(exc).__name__}: {exc}\n")

    out.write("\nResponse cache (the same request twice, cache=True):\n")
    try:
        for n in (1, 2):
            r = client.chat(model, "What is a cache?", max_tokens=16, cache=True)
            where = "cache HIT" if r.cached else "from the provider"
            out.write(f"    call {n}: {where}, {r.latency * 1000:.2f} ms\n")
        stats = client.cache.stats()
        out.write(
            f"    cache stats: {stats.hits} hit(s), {stats.misses} miss(es), "
            f"hit ratio {stats.hit_ratio:.0%}, {stats.size} entr(ies)\n"
        )
    except ChatcoreError as exc:
        failures += 1
        out.write(f"    FAILED: {type(exc).__name__}: {exc}\n")

    out.write("\nMetrics (client.metrics.snapshot()):\n")
    snapshot = client.metrics.snapshot()
    for provider, data in sorted(snapshot.get("providers", {}).items()):
        latency = data.get("latency_seconds", {})
        p50 = (latency.get("p50") or 0.0) * 1000
        p95 = (latency.get("p95") or 0.0) * 1000
        out.write(
            f"    {provider:<12} requests {data.get('requests', 0)}, errors "
            f"{data.get('errors', 0)}, cache hits {data.get('cache', {}).get('hits', 0)}, "
            f"latency p50 {p50:.1f} ms, p95 {p95:.1f} ms\n"
        )

    out.write("\nHealth (client.health()):\n")
    report = client.health()
    for ph in report.providers:
        ms = f"{ph.latency * 1000:.1f} ms" if ph.latency is not None else "-"
        note = "  (not configured here)" if ph.status == "unconfigured" else ""
        if ph.error and ph.status == "error":
            note = "  " + ph.error
        out.write(f"    {ph.name:<12} {ph.status:<12} {ms}{note}\n")
    out.write(f"    live={report.live} ready={report.ready} status={report.status}\n")
    if not report.ready:
        failures += 1
    return failures
