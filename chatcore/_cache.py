"""The response cache: request keys, the cache interface, and the in-memory LRU + TTL default.

A key is the SHA-256 of the canonical JSON of everything that decides an answer (the request
as sent, the provider, its base URL and the plugin's version), never a secret. Completed
answers only are stored, without per-call metadata; :func:`freeze_for_cache` and
:func:`thaw_from_cache` give shared backends (Redis) an exact, JSON-safe form of an answer.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol, runtime_checkable

import attrs
from cachetools import TLRUCache

from chatcore.exceptions import ConfigurationError, ResponseDecodeError
from chatcore.models import ChatRequest, ChatResponse

__all__ = [
    "CACHE_FORMAT_VERSION",
    "CacheStats",
    "InMemoryCache",
    "ResponseCache",
    "cache_key",
    "canonical_request_json",
    "freeze_for_cache",
    "strip_call_metadata",
    "thaw_from_cache",
]

#: Version of the key recipe and of the frozen form; bump it when either changes, so old
#: entries of a shared backend are never looked up again.
CACHE_FORMAT_VERSION = 1

#: Keys of the request body that do not change the answer's content.
_NOT_KEYED = frozenset({"stream"})


# --------------------------------------------------------------------------------------
# Keys


def _json_key(key: Any) -> str:
    """A mapping key as :func:`json.dumps` writes it."""
    if isinstance(key, str):
        return str(key)
    if key is True:
        return "true"
    if key is False:
        return "false"
    if key is None:
        return "null"
    if isinstance(key, int):
        return int.__repr__(key)
    if isinstance(key, float):
        return float.__repr__(key)
    raise TypeError(f"cannot build a cache key: a {type(key).__name__} mapping key is not JSON")


def _canonical(value: Any) -> Any:
    """``value`` as plain JSON types, numbers normalized: an integral float becomes an int
    (``1.0`` and ``1`` share a key, as they are equal JSON numbers); booleans stay booleans."""
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:
        return value
    if kind is float:
        return int(value) if value.is_integer() else value
    if kind is dict or isinstance(value, Mapping):
        return {_json_key(k): _canonical(v) for k, v in value.items()}
    if kind is list or kind is tuple or isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if isinstance(value, bool):  # pragma: no cover - bool cannot be subclassed
        return bool(value)
    if isinstance(value, int):  # IntEnum and friends: json writes the number
        return int(value)
    if isinstance(value, float):
        return _canonical(float(value))
    if isinstance(value, str):
        return str(value)
    raise TypeError(f"cannot build a cache key: a {type(value).__name__} value is not JSON")


def canonical_request_json(request: ChatRequest, *, base_url: str, plugin_version: str) -> str:
    """The canonical JSON text that :func:`cache_key` hashes (for debugging and tests).

    It holds the request body as :meth:`ChatRequest.to_openai_dict` builds it (model,
    messages, every set parameter, tools, response format, ``extra``) without ``stream``,
    plus the provider, the base URL (trailing ``/`` removed), the plugin version and
    :data:`CACHE_FORMAT_VERSION`. ``base_url`` must not carry a credential."""
    body = request.to_openai_dict()
    for name in _NOT_KEYED:
        body.pop(name, None)
    envelope = {
        "v": CACHE_FORMAT_VERSION,
        "provider": request.provider,
        "base_url": base_url.rstrip("/"),
        "plugin_version": plugin_version,
        "request": _canonical(body),
    }
    return json.dumps(envelope, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def cache_key(request: ChatRequest, *, base_url: str, plugin_version: str) -> str:
    """The cache key of ``request`` sent to ``base_url`` by a plugin at ``plugin_version``:
    a SHA-256 hex digest, stable across processes and Python versions.

    Requests that are equal once normalized share a key: mapping key order, lists versus
    tuples and ``1`` versus ``1.0`` do not matter, ``True`` versus ``1`` does. ``stream``
    is left out, so a completed stream and a plain call share a key. Raises
    :class:`TypeError` when a parameter (usually in ``extra``) is not JSON."""
    text = canonical_request_json(request, base_url=base_url, plugin_version=plugin_version)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# --------------------------------------------------------------------------------------
# Stored form


def strip_call_metadata(response: ChatResponse) -> ChatResponse:
    """``response`` without what belongs to one call (``latency``, ``attempts``,
    ``headers``, ``cached``); ``provider`` and ``request_id`` are kept."""
    if (
        response.latency == 0.0
        and response.attempts == 1
        and response.headers is None
        and not response.cached
    ):
        return response
    return attrs.evolve(response, latency=0.0, attempts=1, headers=None, cached=False)


def _plain(value: Any) -> Any:
    """Mappings as dicts and sequences as lists, so the frozen form equals its JSON round
    trip; scalars are left exactly as they are."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def freeze_for_cache(response: ChatResponse) -> dict[str, Any]:
    """A JSON-safe dict holding ``response`` (its ``chat.completion`` body, ``provider`` and
    ``request_id``; per-call metadata is left out). :func:`thaw_from_cache` restores it
    exactly; ``json.loads(json.dumps(frozen)) == frozen``."""
    return {
        "v": CACHE_FORMAT_VERSION,
        "provider": response.provider,
        "request_id": response.request_id,
        "response": _plain(response.to_dict()),
    }


def thaw_from_cache(data: Mapping[str, Any], provider: str) -> ChatResponse:
    """The response :func:`freeze_for_cache` froze. ``provider`` is the provider the entry
    was looked up for: used when the entry names none, and in errors. An entry of another
    format or shape raises :class:`ResponseDecodeError`; a backend should treat it as a
    miss."""
    if not isinstance(data, Mapping) or data.get("v") != CACHE_FORMAT_VERSION:
        version = data.get("v") if isinstance(data, Mapping) else None
        raise ResponseDecodeError(
            f"cached entry has format {version!r}, expected {CACHE_FORMAT_VERSION}",
            provider=provider or None,
        )
    request_id = data.get("request_id")
    stored_provider = data.get("provider")
    body = data.get("response")
    if (
        not isinstance(body, Mapping)
        or not (request_id is None or isinstance(request_id, str))
        or not (stored_provider is None or isinstance(stored_provider, str))
    ):
        raise ResponseDecodeError("cached entry is malformed", provider=provider or None)
    response = ChatResponse.from_dict(body, provider=stored_provider or provider)
    if request_id is not None:
        response = attrs.evolve(response, request_id=request_id)
    return response


# --------------------------------------------------------------------------------------
# The interface and its in-memory implementation


@attrs.frozen
class CacheStats:
    """Counters of a cache since it was created. ``evictions`` counts entries dropped to
    make room (capacity), ``expirations`` entries dropped because their TTL ran out."""

    hits: int = 0
    misses: int = 0
    evictions: int = 0
    expirations: int = 0
    size: int = 0
    maxsize: int | None = None

    @property
    def lookups(self) -> int:
        """``hits + misses``."""
        return self.hits + self.misses

    @property
    def hit_ratio(self) -> float:
        """``hits / lookups``; 0.0 before the first lookup."""
        lookups = self.hits + self.misses
        return self.hits / lookups if lookups else 0.0

    def to_dict(self) -> dict[str, Any]:
        """Every counter plus ``lookups`` and ``hit_ratio`` (for logs and metrics)."""
        out = attrs.asdict(self)
        out["lookups"] = self.lookups
        out["hit_ratio"] = self.hit_ratio
        return out


@runtime_checkable
class ResponseCache(Protocol):
    """What the pipeline asks of a response cache (the ``chatcore_cache`` hook returns
    one). Implementations are thread-safe; keys come from :func:`cache_key`."""

    def get(self, key: str) -> ChatResponse | None:
        """The live response stored under ``key``, or ``None`` (counted as a miss)."""

    def set(self, key: str, response: ChatResponse, ttl: float | None = None) -> None:
        """Store ``response`` under ``key`` for ``ttl`` seconds (``None``: the cache's
        default)."""

    def stats(self) -> CacheStats:
        """A snapshot of the counters."""

    def clear(self) -> None:
        """Drop every entry (the counters keep counting)."""


def _check_ttl(ttl: Any, name: str) -> float:
    """``ttl`` in seconds, ``math.inf`` for ``None``; a :class:`ConfigurationError` names a
    bad value."""
    if ttl is None:
        return math.inf
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not ttl > 0:
        raise ConfigurationError(f"{name}={ttl!r}: expected a number of seconds > 0, or None")
    return float(ttl)


_Entry = tuple[ChatResponse, float]


def _time_to_use(_key: str, entry: _Entry, now: float) -> float:
    return now + entry[1]


class _Store(TLRUCache[str, _Entry, float]):
    """A ``TLRUCache`` that counts what it drops: TTL expirations (in :meth:`expire`, which
    every write and every :class:`InMemoryCache` read runs first) apart from capacity
    evictions (in :meth:`popitem`, which drops the least recently used live entry)."""

    def __init__(self, maxsize: int, timer: Callable[[], float]) -> None:
        super().__init__(maxsize, _time_to_use, timer)
        self.evictions = 0
        self.expirations = 0

    def expire(self, time: float | None = None) -> list[tuple[str, _Entry]]:
        expired = super().expire(time)
        self.expirations += len(expired)
        return expired

    def popitem(self) -> tuple[str, _Entry]:
        item = super().popitem()
        self.evictions += 1
        return item


class InMemoryCache:
    """A thread-safe LRU + TTL cache of responses in this process (the default).

    At most ``maxsize`` entries; when full, the least recently used one is evicted. Each
    entry lives ``ttl`` seconds (``None``: until evicted), or what :meth:`set` gives it.
    ``timer`` is injectable for tests. Responses are stored without per-call metadata
    and shared as is (they are frozen)."""

    def __init__(
        self,
        maxsize: int = 1024,
        ttl: float | None = 3600.0,
        *,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        if isinstance(maxsize, bool) or not isinstance(maxsize, int) or maxsize < 1:
            raise ConfigurationError(f"cache_maxsize={maxsize!r}: expected an integer >= 1")
        self._default_ttl = _check_ttl(ttl, "cache_ttl")
        self.maxsize = maxsize
        self.ttl = ttl
        self._lock = threading.Lock()
        self._store = _Store(maxsize, timer)
        self._hits = 0
        self._misses = 0

    def get(self, key: str) -> ChatResponse | None:
        """The live response under ``key`` (now the most recently used), or ``None``."""
        store = self._store
        with self._lock, store.timer as now:
            store.expire(now)
            if key in store:
                self._hits += 1
                return store[key][0]
            self._misses += 1
            return None

    def set(self, key: str, response: ChatResponse, ttl: float | None = None) -> None:
        """Store ``response`` (without per-call metadata) under ``key`` for ``ttl`` seconds;
        ``None`` means the cache's default, ``math.inf`` no expiry for this entry."""
        seconds = self._default_ttl if ttl is None else _check_ttl(ttl, "ttl")
        entry = (strip_call_metadata(response), seconds)
        with self._lock:
            self._store[key] = entry

    def stats(self) -> CacheStats:
        """A snapshot of the counters and the number of live entries."""
        store = self._store
        with self._lock, store.timer as now:
            store.expire(now)
            return CacheStats(
                hits=self._hits,
                misses=self._misses,
                evictions=store.evictions,
                expirations=store.expirations,
                size=len(store),
                maxsize=self.maxsize,
            )

    def clear(self) -> None:
        """Drop every entry; not counted as evictions or expirations."""
        with self._lock:
            self._store.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._store)

    def __repr__(self) -> str:
        ttl = "None" if self.ttl is None else f"{self.ttl:g}"
        return f"<InMemoryCache maxsize={self.maxsize} ttl={ttl}>"
