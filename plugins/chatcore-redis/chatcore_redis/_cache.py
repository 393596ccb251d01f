"""A response cache in Redis, shared by every worker: the keys of the in-memory cache
(:func:`chatcore.cache_key`) under a namespace prefix, values as JSON of
:func:`chatcore._cache.freeze_for_cache` (never pickle), expiry by Redis (``PX``).

Each operation is written once as a flow (:mod:`chatcore_redis._io`) and run over the
blocking client (``get``/``set``, the sync ``Client``) or ``redis.asyncio``
(``aget``/``aset``, the ``AsyncClient``): one set of entries for both."""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import attrs
import redis

from chatcore._cache import CacheStats, freeze_for_cache, thaw_from_cache
from chatcore.exceptions import ConfigurationError, ResponseDecodeError
from chatcore.models import ChatResponse
from chatcore_redis._config import (
    BACKEND_ERRORS,
    DEFAULT_LOG_INTERVAL,
    DEFAULT_MAX_VALUE_BYTES,
    DEFAULT_PREFIX,
    DEFAULT_RECONNECT_INTERVAL,
    DEFAULT_SOCKET_TIMEOUT,
    FailureGuard,
    FailurePolicy,
    RedisUnavailableError,
    check_policy,
    check_timeout,
    connect,
    url_password,
)
from chatcore_redis._io import Command, Driver, Flow, Step

__all__ = ["RedisCache", "RedisCacheStats"]

_GLOB_SPECIAL = str.maketrans({c: "\\" + c for c in "*?[]\\"})
_UNLINK_BATCH = 500


@attrs.frozen
class RedisCacheStats(CacheStats):
    """:class:`chatcore.CacheStats` plus what a shared backend adds.

    ``hits``/``misses``/``errors``/``oversize``/``stores`` count this process's calls;
    ``size`` is the number of entries under the prefix, shared by every worker (``-1``
    when Redis cannot be reached). ``evictions`` and ``expirations`` stay 0: Redis does
    not count them per key prefix; ``server_evicted_keys`` / ``server_expired_keys`` are
    the server-wide counters of ``INFO stats`` (every key of every database of that
    server, ``-1`` when unknown)."""

    errors: int = 0
    oversize: int = 0
    stores: int = 0
    server_evicted_keys: int = -1
    server_expired_keys: int = -1


def _check_ttl(ttl: Any, name: str) -> float:
    if ttl is None:
        return math.inf
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not ttl > 0:
        raise ConfigurationError(f"{name}={ttl!r}: expected a number of seconds > 0, or None")
    return float(ttl)


class RedisCache:
    """A :class:`chatcore.ResponseCache` in Redis.

    Entries live under ``<prefix>cache:<key>`` for ``ttl`` seconds (``None``: until Redis
    evicts them under its ``maxmemory-policy``), or what :meth:`set` gives. A value
    larger than ``max_value_bytes`` once serialized is not stored (counted in
    ``oversize``). An entry that cannot be read back (another format) is a miss.

    ``failure_policy``: ``fail_open`` makes an unreachable Redis a miss and a skipped
    store (logged once per ``log_interval``); ``fail_closed`` raises
    :class:`RedisUnavailableError` naming the URL (password masked) -- the Client still
    treats a cache error as a miss, so a request never fails for its cache.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        ttl: float | None = 3600.0,
        client: redis.Redis | None = None,
        password: str | None = None,
        prefix: str = DEFAULT_PREFIX,
        max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES,
        failure_policy: FailurePolicy | str = "fail_open",
        socket_timeout: float = DEFAULT_SOCKET_TIMEOUT,
        connect_timeout: float | None = None,
        log_interval: float = DEFAULT_LOG_INTERVAL,
        reconnect_interval: float = DEFAULT_RECONNECT_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if client is None and url is None:
            raise ConfigurationError("RedisCache needs a Redis URL or a redis client")
        self._default_ttl = _check_ttl(ttl, "cache_ttl")
        if (
            isinstance(max_value_bytes, bool)
            or not isinstance(max_value_bytes, int)
            or max_value_bytes < 1
        ):
            raise ConfigurationError(
                f"max_value_bytes={max_value_bytes!r}: expected an integer >= 1"
            )
        policy = check_policy(str(failure_policy))
        socket_timeout = check_timeout(socket_timeout, "socket_timeout")
        if connect_timeout is not None:
            connect_timeout = check_timeout(connect_timeout, "connect_timeout")
        backend = connect(
            url,
            client,
            password=password,
            socket_timeout=socket_timeout,
            connect_timeout=connect_timeout,
        )
        self.redis, self.url, self._owns_client = backend.client, backend.url, backend.owned
        self._io = Driver(backend.client, backend.connector)
        self.ttl = ttl
        self.prefix = prefix
        self.namespace = f"{prefix}cache:"
        self.max_value_bytes = max_value_bytes
        self.failure_policy: FailurePolicy = policy
        self._guard = FailureGuard(
            component="cache",
            url=self.url,
            secrets=[s for s in (password, url_password(url)) if s],
            policy=policy,
            log_interval=log_interval,
            reconnect_interval=reconnect_interval,
            clock=clock,
        )
        self._lock = threading.Lock()
        self._hits = 0
        self._misses = 0
        self._errors = 0
        self._oversize = 0
        self._stores = 0

    def _count(self, name: str) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + 1)

    def _failed(self, exc: BaseException | None, action: str) -> None:
        """Apply the policy to a Redis failure (``None``: known to be down)."""
        self._count("_errors")
        error = self._guard.failed(exc, action)
        if self.failure_policy == "fail_closed":
            raise RedisUnavailableError(self._guard.unavailable_message(error), url=self.url)

    # --- the interface: the blocking client (Client) and the asyncio one (AsyncClient) --

    def get(self, key: str) -> ChatResponse | None:
        """The live response under ``key``, or ``None`` (a miss; also when Redis is
        unreachable under ``fail_open``)."""
        return self._io.run(self._get_flow(key))

    async def aget(self, key: str) -> ChatResponse | None:
        """:meth:`get` over ``redis.asyncio`` (the async client's path)."""
        return await self._io.arun(self._get_flow(key))

    def set(self, key: str, response: ChatResponse, ttl: float | None = None) -> None:
        """Store ``response`` (without per-call metadata) under ``key`` for ``ttl``
        seconds (``None``: the cache's default; ``math.inf``: no expiry). A value larger
        than ``max_value_bytes`` is skipped and counted."""
        self._io.run(self._set_flow(key, response, ttl))

    async def aset(self, key: str, response: ChatResponse, ttl: float | None = None) -> None:
        """:meth:`set` over ``redis.asyncio`` (the async client's path)."""
        await self._io.arun(self._set_flow(key, response, ttl))

    def stats(self) -> RedisCacheStats:
        """A snapshot of the counters; ``size`` counts the prefix's entries with SCAN."""
        return self._io.run(self._stats_flow())

    async def astats(self) -> RedisCacheStats:
        """:meth:`stats` over ``redis.asyncio``."""
        return await self._io.arun(self._stats_flow())

    def clear(self) -> None:
        """Delete every entry under the prefix (SCAN + UNLINK; never FLUSHDB): the
        entries of every worker sharing the prefix, nothing else. The counters keep
        counting."""
        self._io.run(self._clear_flow())

    async def aclear(self) -> None:
        """:meth:`clear` over ``redis.asyncio``."""
        await self._io.arun(self._clear_flow())

    # --- the flows (see chatcore_redis._io): the logic, written once -----------------

    def _get_flow(self, key: str) -> Flow[ChatResponse | None]:
        if not self._guard.should_try():
            self._count("_misses")
            self._failed(None, "treating lookups as misses (fail_open)")
            return None
        try:
            raw = yield Command("get", (self.namespace + key,))
        except BACKEND_ERRORS as exc:
            self._count("_misses")
            self._failed(exc, "treating lookups as misses (fail_open)")
            return None
        self._guard.succeeded()
        if raw is None:
            self._count("_misses")
            return None
        try:
            response = thaw_from_cache(json.loads(raw), "")
        except (ValueError, ResponseDecodeError, TypeError, KeyError):
            # another format (an older chatcore) or a damaged value: a miss
            with self._lock:
                self._misses += 1
                self._errors += 1
            return None
        self._count("_hits")
        return response

    def _set_flow(self, key: str, response: ChatResponse, ttl: float | None) -> Flow[None]:
        seconds = self._default_ttl if ttl is None else _check_ttl(ttl, "ttl")
        data = json.dumps(
            freeze_for_cache(response), ensure_ascii=False, separators=(",", ":")
        ).encode("utf-8")
        if len(data) > self.max_value_bytes:
            self._count("_oversize")
            return
        px = None if math.isinf(seconds) else max(1, math.ceil(seconds * 1000))
        if not self._guard.should_try():
            self._failed(None, "not storing (fail_open)")
            return
        try:
            yield Command("set", (self.namespace + key, data), {"px": px})
        except BACKEND_ERRORS as exc:
            self._failed(exc, "not storing (fail_open)")
            return
        self._guard.succeeded()
        self._count("_stores")

    def _scan_flow(self, visit: Callable[[list[Any]], Iterable[Step]]) -> Flow[None]:
        """SCAN the prefix's entries; each page of names is given to ``visit``, whose
        steps are carried out."""
        pattern = self.namespace.translate(_GLOB_SPECIAL) + "*"
        cursor: Any = 0
        while True:
            cursor, names = yield Command("scan", (cursor,), {"match": pattern, "count": 1000})
            if names:
                yield from visit(list(names))
            if int(cursor) == 0:
                return

    def _size_flow(self) -> Flow[int]:
        size = 0

        def count(names: list[Any]) -> Iterable[Step]:
            nonlocal size
            size += len(names)
            return ()

        yield from self._scan_flow(count)
        return size

    def _stats_flow(self) -> Flow[RedisCacheStats]:
        size = evicted = expired = -1
        if self._guard.should_try():
            try:
                size = yield from self._size_flow()
                info = yield Command("info", ("stats",))
                evicted = int(info.get("evicted_keys", -1))
                expired = int(info.get("expired_keys", -1))
            except BACKEND_ERRORS as exc:
                self._failed(exc, "stats without the shared size (fail_open)")
            else:
                self._guard.succeeded()
        with self._lock:
            return RedisCacheStats(
                hits=self._hits,
                misses=self._misses,
                size=max(size, -1),
                maxsize=None,
                errors=self._errors,
                oversize=self._oversize,
                stores=self._stores,
                server_evicted_keys=evicted,
                server_expired_keys=expired,
            )

    def _clear_flow(self) -> Flow[None]:
        def unlink(names: list[Any]) -> Flow[None]:
            for start in range(0, len(names), _UNLINK_BATCH):
                yield Command("unlink", tuple(names[start : start + _UNLINK_BATCH]))

        try:
            yield from self._scan_flow(unlink)
        except BACKEND_ERRORS as exc:
            self._failed(exc, "entries not cleared (fail_open)")
            return
        self._guard.succeeded()

    # --- diagnostics -----------------------------------------------------------------

    @property
    def available(self) -> bool:
        """Whether the last Redis command succeeded."""
        return not self._guard.down

    def close(self) -> None:
        """Close the blocking connection pool, when this cache created it. (The asyncio
        pools are closed by :meth:`aclose`, or when their event loop shuts down.)"""
        if self._owns_client:
            self.redis.close()

    async def aclose(self) -> None:
        """Close the running event loop's asyncio connection pool (shared with the objects
        built on the same blocking client; the next async call opens a new one), then
        :meth:`close`."""
        await self._io.connector.aclose()
        self.close()

    def __enter__(self) -> RedisCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> RedisCache:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __len__(self) -> int:
        return self._io.run(self._size_flow())

    def __repr__(self) -> str:
        ttl = "None" if self.ttl is None else f"{self.ttl:g}"
        return f"<RedisCache url={self.url} prefix={self.prefix!r} ttl={ttl}>"
