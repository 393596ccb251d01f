"""The clients compared side by side. Each does the whole request: build the body, send
it, parse the JSON answer and check the text (a wrong answer raises, so a fast client
that does less work cannot win by accident).

``chat()`` is one call; ``stream(route)`` consumes one whole stream from a route of
``payloads.STREAM_ROUTES`` (``"whole"``: one body with Content-Length; ``"chunked"``: one
HTTP chunk per event) and returns the nanoseconds from its start to the first parsed
chunk; ``worker()`` returns a callable for
one thread of the 8-thread test (a shared pooled client where the library is thread-safe).
Peers (OpenAI SDK, LiteLLM) are skipped with a reason when not importable.
"""

from __future__ import annotations

import http.client
import json
import os
import time
from collections.abc import Callable
from typing import Any

from benchmarks import payloads
from benchmarks.server import BenchServer

EXPECTED = payloads.EXPECTED_TEXT
EXPECTED_STREAM = payloads.EXPECTED_STREAM_TEXT
_now = time.perf_counter_ns


class Mismatch(AssertionError):
    pass


def _check(text: Any, expected: str = EXPECTED) -> None:
    if text != expected:
        raise Mismatch(f"expected {expected!r}, got {text!r}")


class Contender:
    name = ""
    #: "baseline", "whatif", "chatcore" or "peer"
    group = "baseline"
    streams = False
    threads = True

    def chat(self) -> None:
        raise NotImplementedError

    def stream(self, route: str = "whole") -> int:
        raise NotImplementedError

    def worker(self) -> Callable[[], None]:
        return self.chat

    def connections(self) -> int | None:
        """New TCP connections opened so far (where the library lets us count them)."""
        return None

    def close(self) -> None:
        pass


# --------------------------------------------------------------------------------------
# Bare baselines


class HttpClientBare(Contender):
    """``http.client.HTTPConnection`` kept alive; json.dumps / json.loads by hand."""

    name = "http.client (bare)"

    def __init__(self, server: BenchServer) -> None:
        self.host, self.port = server.host, server.port
        self.conn = http.client.HTTPConnection(self.host, self.port)
        self.headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            "Authorization": f"Bearer {payloads.API_KEY}",
        }

    def chat(self) -> None:
        body = json.dumps(payloads.request_body()).encode()
        self.conn.request("POST", payloads.CHAT_PATH, body, self.headers)
        resp = self.conn.getresponse()
        data = json.loads(resp.read())
        if resp.status != 200:
            raise Mismatch(f"status {resp.status}")
        _check(data["choices"][0]["message"]["content"])

    def worker(self) -> Callable[[], None]:
        # http.client connections are not thread-safe: one kept-alive connection a thread
        return HttpClientBare.__new__(HttpClientBare)._init_from(self).chat

    def _init_from(self, other: HttpClientBare) -> HttpClientBare:
        self.host, self.port, self.headers = other.host, other.port, other.headers
        self.conn = http.client.HTTPConnection(self.host, self.port)
        return self

    def close(self) -> None:
        self.conn.close()


def _pool_connections(session: Any) -> int | None:
    """TCP connections the session's pools have opened (urllib3 counts them)."""
    try:
        total = 0
        seen = set()
        for adapter in session.adapters.values():
            if id(adapter) in seen:
                continue
            seen.add(id(adapter))
            pools = adapter.poolmanager.pools
            for key in list(pools.keys()):
                pool = pools.get(key)
                if pool is not None:
                    total += int(pool.num_connections)
        return total
    except Exception:
        return None


class RequestsBare(Contender):
    """``requests.Session().post(url, json=...)``; ``r.json()``; SSE via ``iter_lines``."""

    name = "requests.Session (bare)"
    streams = True

    def __init__(self, server: BenchServer) -> None:
        import requests

        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {payloads.API_KEY}"
        self.url = server.base_url + "/chat/completions"
        self.stream_urls = {
            route: server.stream_url(route) + "/chat/completions"
            for route in payloads.STREAM_ROUTES
        }

    def chat(self) -> None:
        r = self.session.post(self.url, json=payloads.request_body())
        if r.status_code != 200:
            raise Mismatch(f"status {r.status_code}")
        _check(r.json()["choices"][0]["message"]["content"])

    def stream(self, route: str = "whole") -> int:
        started = _now()
        first = 0
        parts: list[str] = []
        url = self.stream_urls[route]
        with self.session.post(url, json=payloads.request_body(True), stream=True) as r:
            if r.status_code != 200:
                raise Mismatch(f"status {r.status_code}")
            for line in r.iter_lines():
                if not line.startswith(b"data: "):
                    continue
                data = line[6:]
                if data == b"[DONE]":
                    continue  # read to the end so the connection goes back to the pool
                event = json.loads(data)
                if not first:
                    first = _now()
                for choice in event["choices"]:
                    content = choice["delta"].get("content")
                    if content:
                        parts.append(content)
        _check("".join(parts), EXPECTED_STREAM)
        return first - started

    def connections(self) -> int | None:
        return _pool_connections(self.session)

    def close(self) -> None:
        self.session.close()


class RequestsPrepared(Contender):
    """What-if for the transport: requests with the environment (proxies, CA bundle,
    netrc) resolved once per session and a request template prepared once; each call
    copies the template, sets the body and calls ``Session.send`` directly (skipping
    ``Session.request``'s per-call ``prepare_request`` and ``merge_environment_settings``).
    Proxy variables are still honoured: they are read when the contender is created."""

    name = "requests, prepared + Session.send (what-if)"
    group = "whatif"

    def __init__(self, server: BenchServer) -> None:
        import requests

        self.session = requests.Session()
        self.url = server.base_url + "/chat/completions"
        self.template = self.session.prepare_request(
            requests.Request(
                "POST",
                self.url,
                headers={
                    "Authorization": f"Bearer {payloads.API_KEY}",
                    "Content-Type": "application/json",
                },
                data=b"{}",
            )
        )
        self.settings = self.session.merge_environment_settings(self.url, {}, None, None, None)
        self.settings["timeout"] = (5.0, 600.0)

    def _send(self, body: bytes) -> Any:
        prep = self.template.copy()
        prep.body = body
        prep.headers["Content-Length"] = str(len(body))
        return self.session.send(prep, **self.settings)

    def chat(self) -> None:
        body = json.dumps(payloads.request_body(), separators=(",", ":")).encode()
        r = self._send(body)
        if r.status_code != 200:
            raise Mismatch(f"status {r.status_code}")
        _check(json.loads(r.content)["choices"][0]["message"]["content"])

    def close(self) -> None:
        self.session.close()


# --------------------------------------------------------------------------------------
# chatcore


def _chatcore_client(base_url: str, **kwargs: Any) -> Any:
    import chatcore

    return chatcore.Client(
        providers={"openai": {"api_key": payloads.API_KEY, "base_url": base_url}},
        environ={},
        **kwargs,
    )


class Chatcore(Contender):
    """``chatcore.Client`` in its default configuration: validation, limiter, retry
    bookkeeping, metrics, logging calls (silent), through the openai plugin."""

    name = "chatcore Client.chat"
    group = "chatcore"
    streams = True

    def __init__(self, server: BenchServer) -> None:
        self.server = server
        self.client = _chatcore_client(server.base_url)
        #: one client per stream route (the route is in the provider's base_url)
        self.stream_clients: dict[str, Any] = {}
        self.model = "openai:" + payloads.MODEL

    def chat(self) -> None:
        _check(self.client.chat(self.model, "Hello").text)

    def stream_client(self, route: str) -> Any:
        found = self.stream_clients.get(route)
        if found is None:
            found = self.stream_clients[route] = _chatcore_client(self.server.stream_url(route))
        return found

    def stream(self, route: str = "whole") -> int:
        started = _now()
        first = 0
        parts: list[str] = []
        with self.stream_client(route).stream(self.model, "Hello") as s:
            for chunk in s:
                if not first:
                    first = _now()
                text = chunk.text
                if text:
                    parts.append(text)
        _check("".join(parts), EXPECTED_STREAM)
        return first - started

    def connections(self) -> int | None:
        total = 0
        for client in (self.client, *self.stream_clients.values()):
            provider = client._providers.get("openai")
            if provider is not None:
                total += _pool_connections(provider.sync_transport().session) or 0
        return total

    def close(self) -> None:
        self.client.close()
        for client in self.stream_clients.values():
            client.close()


class ChatcoreCached(Contender):
    """``chatcore.Client(cache=True)``: the same request repeated, served from the cache
    (validation, key hashing, lookup, metrics; no HTTP)."""

    name = "chatcore Client.chat (cache hit)"
    group = "chatcore"
    threads = False

    def __init__(self, server: BenchServer) -> None:
        self.client = _chatcore_client(server.base_url, cache=True)
        self.model = "openai:" + payloads.MODEL
        first = self.client.chat(self.model, "Hello")
        _check(first.text)

    def chat(self) -> None:
        r = self.client.chat(self.model, "Hello")
        if not r.cached:
            raise Mismatch("expected a cache hit")
        _check(r.text)

    def close(self) -> None:
        self.client.close()


# --------------------------------------------------------------------------------------
# Peers


class OpenAISDK(Contender):
    """The official OpenAI SDK (httpx), default settings, ``base_url`` at the server."""

    name = "OpenAI SDK"
    group = "peer"
    streams = True

    def __init__(self, server: BenchServer) -> None:
        import openai

        self.version = openai.__version__
        self.openai = openai
        self.server = server
        self.client = openai.OpenAI(api_key=payloads.API_KEY, base_url=server.base_url)
        self.stream_clients: dict[str, Any] = {}

    def chat(self) -> None:
        r = self.client.chat.completions.create(
            model=payloads.MODEL, messages=[{"role": "user", "content": "Hello"}]
        )
        _check(r.choices[0].message.content)

    def stream_client(self, route: str) -> Any:
        found = self.stream_clients.get(route)
        if found is None:
            found = self.stream_clients[route] = self.openai.OpenAI(
                api_key=payloads.API_KEY, base_url=self.server.stream_url(route)
            )
        return found

    def stream(self, route: str = "whole") -> int:
        started = _now()
        first = 0
        parts: list[str] = []
        with self.stream_client(route).chat.completions.create(
            model=payloads.MODEL,
            messages=[{"role": "user", "content": "Hello"}],
            stream=True,
            stream_options={"include_usage": True},
        ) as s:
            for chunk in s:
                if not first:
                    first = _now()
                for choice in chunk.choices:
                    if choice.delta.content:
                        parts.append(choice.delta.content)
        _check("".join(parts), EXPECTED_STREAM)
        return first - started

    def close(self) -> None:
        self.client.close()
        for client in self.stream_clients.values():
            client.close()


def _quiet_litellm_env() -> None:
    # never fetch the model price map (or anything else) from the internet
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    os.environ.setdefault("LITELLM_TELEMETRY", "False")
    os.environ.setdefault("LITELLM_LOG", "ERROR")


class LiteLLM(Contender):
    """``litellm.completion(model="openai/...", api_base=...)``, default settings."""

    name = "LiteLLM"
    group = "peer"
    streams = True

    def __init__(self, server: BenchServer) -> None:
        _quiet_litellm_env()
        import litellm

        litellm.telemetry = False
        litellm.suppress_debug_info = True
        self.litellm = litellm
        try:
            from importlib.metadata import version

            self.version = version("litellm")
        except Exception:
            self.version = "?"
        self.base_url = server.base_url
        self.server = server

    def chat(self) -> None:
        r = self.litellm.completion(
            model="openai/" + payloads.MODEL,
            messages=[{"role": "user", "content": "Hello"}],
            api_base=self.base_url,
            api_key=payloads.API_KEY,
        )
        _check(r.choices[0].message.content)

    def stream(self, route: str = "whole") -> int:
        started = _now()
        first = 0
        parts: list[str] = []
        s = self.litellm.completion(
            model="openai/" + payloads.MODEL,
            messages=[{"role": "user", "content": "Hello"}],
            api_base=self.server.stream_url(route),
            api_key=payloads.API_KEY,
            stream=True,
        )
        for chunk in s:
            if not first:
                first = _now()
            for choice in chunk.choices:
                if choice.delta.content:
                    parts.append(choice.delta.content)
        _check("".join(parts), EXPECTED_STREAM)
        return first - started


#: (class, pip name when it is a peer)
ALL: list[tuple[type[Contender], str | None]] = [
    (HttpClientBare, None),
    (RequestsBare, None),
    (RequestsPrepared, None),
    (Chatcore, None),
    (ChatcoreCached, None),
    (OpenAISDK, "openai"),
    (LiteLLM, "litellm"),
]


def build(server: BenchServer, skip_peers: bool = False) -> tuple[list[Contender], dict[str, str]]:
    """Instantiate every contender that can run; returns them and ``{name: skip reason}``."""
    made: list[Contender] = []
    skipped: dict[str, str] = {}
    for cls, pip_name in ALL:
        if pip_name is not None and skip_peers:
            skipped[cls.name] = "skipped (--no-peers)"
            continue
        try:
            made.append(cls(server))
        except ImportError as exc:
            if pip_name is None:
                raise
            skipped[cls.name] = f"not importable here ({exc.name or exc}); `pip install {pip_name}`"
        except Exception as exc:
            if pip_name is None:
                raise
            skipped[cls.name] = f"failed to set up: {type(exc).__name__}: {exc}"
    return made, skipped
