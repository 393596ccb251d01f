"""Helpers of the chatcore-redis tests, importable by name (the conftest puts this folder
on ``sys.path``) so that processes started with the ``spawn`` method can run the workers:

* :class:`RedisServer`: a real ``redis-server`` on 127.0.0.1, no persistence, that can be
  stopped and started again on the same port;
* the in-test ``wire`` provider (the OpenAI wire format, for chatcore's stand-in server);
* :func:`rate_worker` and :func:`cache_worker`, run in child processes.
"""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import chatcore
from chatcore._plugins import PluginHost
from chatcore.models import ChatResponse
from chatcore.provider import Option, ProviderSpec
from chatcore.testing.helpers import OpenAIWireProvider

TEST_KEY = "sk-testSECRETkey0123456789abcdef"
MODEL = "wire:gpt-4o-mini"


def response(text: str = "hi", **meta: Any) -> ChatResponse:
    """A completed answer, as a provider would return it."""
    body = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-4o-mini",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
    }
    return ChatResponse.from_dict(body, provider="wire", request_id="req-1", **meta)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """A ``redis-server`` process bound to 127.0.0.1 on a free port (kept on restart)."""

    def __init__(
        self,
        binary: str,
        *,
        workdir: Path,
        port: int | None = None,
        password: str | None = None,
    ) -> None:
        self.binary = binary
        self.workdir = workdir
        self.port = port or free_port()
        self.password = password
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        args = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.workdir),
            "--loglevel",
            "warning",
        ]
        if self.password:
            args += ["--requirepass", self.password]
        self.proc = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL
        )
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited at once (code {self.proc.returncode})")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
                    sock.sendall(b"PING\r\n")
                    answer = sock.recv(64)
                if answer.startswith((b"+PONG", b"-NOAUTH")):
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server did not answer on port {self.port}")
            time.sleep(0.02)

    def stop(self) -> None:
        """Terminate the server (SIGTERM; SIGKILL if it lingers)."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)

    def restart(self) -> None:
        self.stop()
        self.start()


# ------------------------------------------------------------------------------------------
# The in-test provider


WireProvider = OpenAIWireProvider  # chatcore.testing's OpenAI-wire test provider


class WirePlugin:
    """Registered in code: offers the ``wire`` provider."""

    @chatcore.hookimpl
    def chatcore_providers(self) -> list[ProviderSpec]:
        return [
            ProviderSpec(
                name="wire",
                factory=WireProvider,
                options={
                    "api_key": Option(secret=True, env=("WIRE_API_KEY",), required=False),
                    "base_url": Option(default="http://127.0.0.1:9/v1", env=("WIRE_BASE_URL",)),
                },
                capabilities={"chat"},
            )
        ]


def wire_client(base_url: str, **kwargs: Any) -> chatcore.Client:
    host = PluginHost(load_entry_points=False, plugins=[WirePlugin()], environ={})
    return chatcore.Client(
        plugin_host=host,
        providers={"wire": {"api_key": TEST_KEY, "base_url": base_url}},
        environ={},
        max_retries=0,
        **kwargs,
    )


# ------------------------------------------------------------------------------------------
# Workers (run in spawned processes)


def rate_worker(
    redis_url: str,
    prefix: str,
    base_url: str,
    limits: dict[str, Any],
    threads: int,
    duration: float,
    barrier: Any,
    results: Any,
) -> None:
    """Build a Client with a RedisRateLimiter, wait for every process, then run
    ``threads`` threads calling the stand-in server for ``duration`` seconds. Puts
    ``(grant_times, answered, errors)`` on ``results`` (wall-clock grant times)."""
    from chatcore_redis import RedisRateLimiter, RedisTicket

    grants: list[float] = []
    lock = threading.Lock()

    class Recording(RedisRateLimiter):
        def acquire(self, *args: Any, **kwargs: Any) -> RedisTicket:
            ticket = super().acquire(*args, **kwargs)
            with lock:
                grants.append(time.time())
            return ticket

    limiter = Recording(redis_url, limits=limits, prefix=prefix)
    client = wire_client(base_url, rate_limiter=limiter)
    answered = 0
    errors: list[str] = []
    try:
        client.chat(MODEL, "warm up", cache=False)  # connections, imports: not measured
        with lock:
            grants.clear()
        barrier.wait(timeout=60)
        stop = time.time() + duration

        def run() -> None:
            nonlocal answered
            while time.time() < stop:
                try:
                    client.chat(MODEL, "hello", cache=False)
                except Exception as exc:
                    with lock:
                        errors.append(f"{type(exc).__name__}: {exc}")
                    return
                with lock:
                    answered += 1

        pool = [threading.Thread(target=run) for _ in range(threads)]
        for thread in pool:
            thread.start()
        for thread in pool:
            thread.join()
    finally:
        client.close()
        limiter.close()
    results.put((grants, answered, errors))


def cache_worker(redis_url: str, prefix: str, base_url: str, text: str, results: Any) -> None:
    """Answer ``text`` once through a Client with a RedisCache; put whether it was cached."""
    from chatcore_redis import RedisCache

    cache = RedisCache(redis_url, prefix=prefix, ttl=60)
    client = wire_client(base_url, cache=cache)
    try:
        response = client.chat(MODEL, text)
        results.put((response.cached, response.text))
    finally:
        client.close()
        cache.close()


def route_worker(
    redis_url: str, prefix: str, routes: dict[str, Any], calls: int, results: Any
) -> None:
    """Build a Client whose routes keep cooldowns in Redis (a RedisRateLimiter), make
    ``calls`` calls to ``route:main`` and put the deployment of each (or the error) on
    ``results``."""
    from chatcore_redis import RedisRateLimiter

    limiter = RedisRateLimiter(redis_url, prefix=prefix)
    host = PluginHost(load_entry_points=False, plugins=[WirePlugin()], environ={})
    served: list[str] = []
    try:
        with chatcore.Client(
            plugin_host=host, environ={}, routes=routes, rate_limiter=limiter
        ) as client:
            for _ in range(calls):
                served.append(str(client.chat("route:main", "hello").deployment))
        results.put(served)
    except Exception as exc:  # reported to the test, which fails with it
        results.put([f"error: {type(exc).__name__}: {exc}"])
    finally:
        limiter.close()


def budget_worker(
    redis_url: str,
    prefix: str,
    base_url: str,
    limit: str,
    calls: int,
    barrier: Any,
    results: Any,
) -> None:
    """Make ``calls`` chats (4 threads) under a shared ``client`` budget of ``limit`` USD;
    report ``(costs of the answered calls as strings, refused count, other errors)``."""
    import threading

    from chatcore.exceptions import BudgetExceededError
    from chatcore_redis import RedisBudgetStore

    store = RedisBudgetStore(redis_url, prefix=prefix)
    client = wire_client(
        base_url,
        budgets={"client": {"usd": limit, "period": "day"}},
        prices={"wire": {"input": 2, "output": 8}},
        budget_store=store,
    )
    costs: list[str] = []
    refused = [0]
    errors: list[str] = []
    lock = threading.Lock()
    barrier.wait(timeout=60)

    def run(n: int) -> None:
        for _ in range(n):
            try:
                answer = client.chat("wire:m", "hello there", max_tokens=40)
            except BudgetExceededError:
                with lock:
                    refused[0] += 1
            except Exception as exc:  # reported, so the test fails with the reason
                with lock:
                    errors.append(f"{type(exc).__name__}: {exc}")
            else:
                with lock:
                    costs.append(str(answer.cost))

    threads = [threading.Thread(target=run, args=(calls // 4,)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    client.close()
    store.close()
    results.put((costs, refused[0], errors))
