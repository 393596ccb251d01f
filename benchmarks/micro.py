"""Micro-benchmarks of the pipeline's parts (no network): the targets (cache hit, limiter
acquire, retry bookkeeping) and a per-stage breakdown of what ``Client.chat`` adds on top
of the HTTP round trip."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from benchmarks import payloads
from benchmarks.measure import micro


def targets(client: Any, repeats: int = 5) -> dict[str, float]:
    """``{name: median us}`` for the raw cache get, limiter acquire and retry overhead."""
    from chatcore import InMemoryCache, RetryPolicy
    from chatcore._limits import InMemoryRateLimiter
    from chatcore.models import ChatResponse

    out: dict[str, float] = {}
    cache = InMemoryCache()
    key = "0" * 64
    cache.set(key, ChatResponse.from_dict(payloads.CHAT_COMPLETION, provider="openai"))
    out["InMemoryCache.get (hit)"] = micro(lambda: cache.get(key), repeats)

    limiter = InMemoryRateLimiter({"p": {"rps": 1e9}})
    out["InMemoryRateLimiter.acquire (uncontended)"] = micro(
        lambda: limiter.acquire("p", "m", 1), repeats
    )
    policy = RetryPolicy()

    def ok(_n: int) -> int:
        return 1

    direct = micro(lambda: ok(1), repeats)
    wrapped = micro(lambda: policy.call(ok), repeats)
    out["RetryPolicy.call (success, total)"] = wrapped
    out["direct call"] = direct
    out["RetryPolicy.call overhead"] = wrapped - direct
    return out


def stages(client: Any, repeats: int = 5) -> list[tuple[str, float, str]]:
    """``(stage, median us, where)`` for each part of one ``Client.chat`` (informational)."""
    import attrs

    from chatcore import InMemoryMetrics, RequestEvent
    from chatcore._cache import cache_key
    from chatcore._http import dumps_body
    from chatcore._log import logger
    from chatcore.models import ChatResponse

    model = "openai:" + payloads.MODEL
    provider = client.provider("openai")
    request = client.build_request(model, "Hello")
    rows: list[tuple[str, float, str]] = []

    def add(name: str, fn: Callable[[], Any], where: str) -> None:
        rows.append((name, micro(fn, repeats), where))

    add(
        "Client.build_request (split, validate, normalize)",
        lambda: client.build_request(model, "Hello"),
        "chatcore/_client.py, _validate.py",
    )
    add("Client._call_options", lambda: client._call_options({}), "chatcore/_client.py")
    add(
        "cache_key (canonical JSON + SHA-256; only with a cache)",
        lambda: cache_key(request, base_url=provider.base_url, plugin_version="0.1.0"),
        "chatcore/_cache.py",
    )
    add("ChatRequest.to_openai_dict", request.to_openai_dict, "chatcore/models.py")
    try:
        from chatcore_openai._wire import chat_body

        body = chat_body(request, model=request.model)
        add(
            "chat_body (openai wire body)",
            lambda: chat_body(request, model=request.model),
            "chatcore_openai/_wire.py",
        )
    except ImportError:
        body = payloads.request_body()
    add(
        "dumps_body(body) (json.dumps, compact, strict)",
        lambda: dumps_body(body),
        "chatcore/_http.py",
    )
    add("json.dumps(body) (stdlib default, for comparison)", lambda: json.dumps(body).encode(), "-")
    raw = payloads.chat_body()
    add("json.loads(answer)", lambda: json.loads(raw), "chatcore/_transport.py")
    add(
        "ChatResponse.from_dict (cattrs, lenient)",
        lambda: ChatResponse.from_dict(
            payloads.CHAT_COMPLETION, provider="openai", request_id="r", headers={}
        ),
        "chatcore/models.py",
    )
    resp = ChatResponse.from_dict(payloads.CHAT_COMPLETION, provider="openai")
    add(
        "attrs.evolve(response, 3 fields)",
        lambda: attrs.evolve(resp, provider="openai", latency=0.1, attempts=1),
        "chatcore/_client.py",
    )
    metrics = InMemoryMetrics()

    def record() -> None:
        metrics.record(
            RequestEvent(
                provider="openai",
                model=payloads.MODEL,
                outcome="ok",
                error_type=None,
                latency=0.001,
                attempts=1,
                timestamp=1.0,
            )
        )

    add("RequestEvent + InMemoryMetrics.record (x2 per call)", record, "chatcore/_metrics.py")
    # loguru decides "disabled" from the calling module's __name__: call from "chatcore._client"
    scope: dict[str, Any] = {"__name__": "chatcore._client", "logger": logger}
    exec(
        "def log_info():\n"
        "    logger.info('chat {provider}:{model} ok in {latency_ms:.1f} ms', provider='openai',"
        " model='m', latency_ms=1.0, attempts=1, request_id='r', status=200)\n"
        "def log_lazy():\n"
        "    logger.opt(lazy=True).debug('chat {provider}:{model} request body: {body}',"
        " provider=lambda: 1, model=lambda: 2, body=lambda: 3)\n",
        scope,
    )
    add(
        "logger.info (chatcore logging disabled; x1 per call)",
        scope["log_info"],
        "chatcore/_client.py -> loguru",
    )
    add(
        "logger.opt(lazy=True).debug (disabled; x1 per call)",
        scope["log_lazy"],
        "chatcore/_client.py -> loguru",
    )
    limiter = client.rate_limiter
    add(
        f"{type(limiter).__name__}.acquire+reconcile+observe (default)",
        lambda: (
            limiter.reconcile(limiter.acquire("openai", "m", 5), 5),
            limiter.observe("openai", "m", {}),
        ),
        "chatcore/_limits.py",
    )
    return rows


def requests_stages(url: str, repeats: int = 5) -> list[tuple[str, float, str]]:
    """What ``requests.Session.request`` spends per call before any I/O (informational:
    the transport pays these on every call; a prepared request avoids most of them)."""
    import requests
    import requests.utils

    session = requests.Session()
    session.headers.update({"Authorization": "Bearer sk-x", "Content-Type": "application/json"})
    body = b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Hello"}]}'
    rows: list[tuple[str, float, str]] = []

    def add(name: str, fn: Callable[[], Any], where: str) -> None:
        rows.append((name, micro(fn, repeats), where))

    add(
        "Session.merge_environment_settings (proxies, CA bundle from env)",
        lambda: session.merge_environment_settings(url, {}, None, None, None),
        "requests/sessions.py",
    )
    add(
        "requests.utils.get_environ_proxies",
        lambda: requests.utils.get_environ_proxies(url, None),
        "requests/utils.py",
    )
    add(
        "requests.utils.get_netrc_auth (trust_env, per request)",
        lambda: requests.utils.get_netrc_auth(url),
        "requests/utils.py",
    )
    req = (
        requests.Request("POST", url, data=body, timeout=None)
        if False
        else requests.Request("POST", url, data=body)
    )
    add(
        "Session.prepare_request (merge headers/cookies/auth, netrc)",
        lambda: session.prepare_request(req),
        "requests/sessions.py",
    )
    prepared = session.prepare_request(req)
    add("PreparedRequest.copy (template reuse)", prepared.copy, "requests/models.py")
    try:
        from requests._types import SupportsItems

        value: dict[str, str] = {}
        add(
            "isinstance(dict, requests._types.SupportsItems) (Protocol check, ~8 per request)",
            lambda: isinstance(value, SupportsItems),
            "requests/utils.py to_key_val_list",
        )
    except ImportError:
        pass
    session.close()
    return rows
