"""Client-side rate limiting: token buckets in two dimensions (requests and tokens), keyed
by provider and by (provider, model), adaptive to what the provider reports.

Each attempt acquires from every bucket that applies, atomically; tokens are reserved
from an estimate and reconciled with the reported ``usage`` afterwards. Provider headers
(``x-ratelimit-remaining-*`` / ``x-ratelimit-reset-*``) and 429 answers lower what is
granted until the reset, so every thread of the process backs off together. A hold learnt
from a server never lasts longer than ``max_server_hold`` seconds, and a number from a header
that is not finite and >= 0 is ignored. The clock and the sleep are injectable; nothing here
sleeps while holding the lock.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol

import attrs

from chatcore.exceptions import (
    ConfigurationError,
    QuotaExceededError,
    RateLimitError,
    RateLimitExceeded,
    finite_seconds,
)

__all__ = [
    "DEFAULT_MAX_SERVER_HOLD",
    "MAX_SERVER_HOLD_LIMIT",
    "InMemoryRateLimiter",
    "NullRateLimiter",
    "RateLimit",
    "RateLimiter",
    "Ticket",
    "parse_duration",
]

_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|h|m|s)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}

#: Longest hold a server's answer may install (seconds): the ``max_server_hold`` setting's
#: default, the same as ``max_retry_after``'s.
DEFAULT_MAX_SERVER_HOLD = 120.0
#: The largest ``max_server_hold`` accepted: a day (a sleep or a Redis expiry of any hold
#: up to it is valid on every platform).
MAX_SERVER_HOLD_LIMIT = 86400.0


def parse_duration(text: str) -> float | None:
    """Seconds in a Go-style duration (``6m0s``, ``12ms``, ``1h2m3.5s``) or a plain number of
    seconds; ``None`` when it is neither, or not a finite number >= 0 (``inf``, ``nan``,
    ``-1``, a duration beyond a float)."""
    text = text.strip()
    if not text:
        return None
    try:
        return finite_seconds(float(text))
    except ValueError:
        pass
    total = 0.0
    pos = 0
    for match in _DURATION_RE.finditer(text):
        if match.start() != pos:
            return None
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    return finite_seconds(total) if pos == len(text) else None


def check_max_server_hold(value: Any) -> float:
    """``value`` as the ``max_server_hold`` of a limiter: seconds, > 0 and at most
    :data:`MAX_SERVER_HOLD_LIMIT`; anything else is a :class:`ConfigurationError` saying so.
    Shared by every limiter implementation."""
    seconds = None if isinstance(value, str) else finite_seconds(value)
    if seconds is None or not 0 < seconds <= MAX_SERVER_HOLD_LIMIT:
        raise ConfigurationError(
            f"max_server_hold={value!r}: expected a number of seconds > 0 and at most"
            f" {MAX_SERVER_HOLD_LIMIT:g} (the longest hold a server's answer may install;"
            f" default {DEFAULT_MAX_SERVER_HOLD:g})"
        )
    return seconds


class RateLimiter(Protocol):
    """What the pipeline asks of a rate limiter (the ``chatcore_rate_limiter`` hook)."""

    def acquire(
        self, provider: str, model: str, tokens: int, *, max_wait: float | None = None
    ) -> Any:
        """Block until one attempt of ``tokens`` estimated tokens may go; return a ticket.
        Raise :class:`RateLimitExceeded` when that would take longer than ``max_wait``."""

    def reconcile(self, ticket: Any, used_tokens: int | None) -> None:
        """Settle a ticket with the tokens actually used (``None``: refund the estimate)."""

    def observe(
        self,
        provider: str,
        model: str,
        headers: Mapping[str, str] | None,
        error: BaseException | None = None,
    ) -> None:
        """Learn from an answer's rate-limit headers, or from a 429."""


def check_wait(
    key: str,
    wait: float,
    *,
    blocking: bool,
    remaining: float | None,
    max_wait: float | None,
    scope: str,
) -> None:
    """Raise :class:`RateLimitExceeded` when a limiter may not wait ``wait`` seconds for
    ``key``: in non-blocking mode, or when the wait would outlast ``max_wait``
    (``remaining`` is what is left of it). Shared by every limiter implementation."""
    if not blocking:
        raise RateLimitExceeded(
            f"{key}: rate limit reached; next grant in {wait:.3f}s", key=key, retry_after=wait
        )
    if remaining is not None and remaining < wait:
        raise RateLimitExceeded(
            f"{key}: the {scope} rate limit would need {wait:.3f}s, more than max_wait={max_wait}s",
            key=key,
            retry_after=wait,
        )


def throttle_delay(
    error: BaseException | None,
    default: float,
    *,
    max_hold: float = DEFAULT_MAX_SERVER_HOLD,
) -> float | None:
    """How long a throttling 429 asks every worker to hold off (its ``retry_after`` when
    that is a finite number > 0, else ``default``), at most ``max_hold`` seconds; ``None``
    for anything else, quota errors included (those are final)."""
    if not isinstance(error, RateLimitError) or isinstance(error, QuotaExceededError):
        return None
    delay = finite_seconds(error.retry_after)
    return min(delay if delay is not None and delay > 0 else default, max_hold)


def rate_limit_signals(
    headers: Mapping[str, str] | None,
    *,
    max_hold: float = DEFAULT_MAX_SERVER_HOLD,
) -> Iterator[tuple[str, float, float]]:
    """``(dimension, remaining, hold_seconds)`` for each usable ``x-ratelimit-remaining-*``
    / ``x-ratelimit-reset-*`` pair (``requests``, ``tokens``): the reset, at most
    ``max_hold``. Azure's ``-1`` / ``0`` placeholders, a reset of ``0``, and values that are
    unparsable or not finite and >= 0 are skipped."""
    if not headers:
        return
    for dim in ("requests", "tokens"):
        remaining = finite_seconds(headers.get(f"x-ratelimit-remaining-{dim}"))
        if remaining is None:
            continue
        reset_text = headers.get(f"x-ratelimit-reset-{dim}")
        reset = None if reset_text is None else parse_duration(reset_text)
        if reset is None or reset <= 0:
            continue
        yield dim, remaining, min(reset, max_hold)


class NullRateLimiter:
    """Grants everything at once and learns nothing (limits disabled)."""

    def acquire(
        self, provider: str, model: str, tokens: int, *, max_wait: float | None = None
    ) -> None:
        """Grant immediately."""
        return None

    async def aacquire(
        self, provider: str, model: str, tokens: int, *, max_wait: float | None = None
    ) -> None:
        """Grant immediately (the async client's path)."""
        return None

    def reconcile(self, ticket: Any, used_tokens: int | None) -> None:
        """Nothing to settle."""
        return None

    def observe(
        self,
        provider: str,
        model: str,
        headers: Mapping[str, str] | None,
        error: BaseException | None = None,
    ) -> None:
        """Nothing to learn."""
        return None


def _positive(_inst: Any, attribute: attrs.Attribute[Any], value: float | None) -> None:
    if value is not None and (
        isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0
    ):
        raise ValueError(f"{attribute.name}={value!r}: expected a number > 0")


@attrs.frozen
class RateLimit:
    """Limits for one key: requests per second or minute (with ``burst``), tokens per
    minute (with ``token_burst``, by default a full minute's worth)."""

    rps: float | None = attrs.field(default=None, validator=_positive)
    rpm: float | None = attrs.field(default=None, validator=_positive)
    tpm: float | None = attrs.field(default=None, validator=_positive)
    burst: float | None = attrs.field(default=None, validator=_positive)
    token_burst: float | None = attrs.field(default=None, validator=_positive)

    @property
    def request_rate(self) -> float | None:
        """Requests per second, or ``None`` when unlimited."""
        rates = [r for r in (self.rps, self.rpm / 60.0 if self.rpm else None) if r]
        return min(rates) if rates else None

    @classmethod
    def parse(cls, key: str, value: Any) -> RateLimit:
        """Build from a settings mapping; unknown keys and bad values name the key."""
        if isinstance(value, RateLimit):
            return value
        if not isinstance(value, Mapping):
            raise ConfigurationError(
                f"rate_limits[{key!r}]: expected a mapping like {{'rpm': 500, 'tpm': 200000}}"
            )
        allowed = {f.name for f in attrs.fields(cls)}
        unknown = sorted(set(value) - allowed)
        if unknown:
            raise ConfigurationError(
                f"rate_limits[{key!r}]: unknown key(s) {', '.join(unknown)}"
                f" (allowed: {', '.join(sorted(allowed))})"
            )
        try:
            return cls(**value)
        except (TypeError, ValueError) as exc:
            raise ConfigurationError(f"rate_limits[{key!r}]: {exc}") from exc


class _Bucket:
    """A token bucket: ``rate`` per second up to ``capacity``; may go into debt."""

    __slots__ = ("capacity", "level", "rate", "stamp")

    def __init__(self, rate: float, capacity: float, now: float) -> None:
        self.rate = rate
        self.capacity = capacity
        self.level = capacity
        self.stamp = now

    def refill(self, now: float) -> None:
        if now > self.stamp:
            self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
            self.stamp = now

    def wait_for(self, amount: float) -> float:
        """Seconds until ``amount`` is available (after :meth:`refill`)."""
        missing = amount - self.level
        return 0.0 if missing <= 1e-9 else missing / self.rate


@attrs.define
class _Hold:
    """An adaptive block: nothing of this dimension is granted before ``until``."""

    requests_until: float = 0.0
    tokens_until: float = 0.0


@attrs.define(eq=False)
class Ticket:
    """A grant: which buckets gave how many tokens (for reconciliation)."""

    keys: tuple[str, ...]
    tokens: int
    settled: bool = False


class InMemoryRateLimiter:
    """Thread-safe token buckets per provider and per ``provider:model``, plus adaptive holds
    learned from provider headers and 429 answers (enabled even with no limits set)."""

    def __init__(
        self,
        limits: Mapping[str, Any] | None = None,
        *,
        adaptive: bool = True,
        default_retry_after: float = 1.0,
        max_server_hold: float = DEFAULT_MAX_SERVER_HOLD,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.limits: dict[str, RateLimit] = {
            key: RateLimit.parse(key, value) for key, value in (limits or {}).items()
        }
        for key in self.limits:
            if not key or key.startswith(":") or key.endswith(":"):
                raise ConfigurationError(
                    f"rate_limits key {key!r}: expected 'provider' or 'provider:model'"
                )
        self.adaptive = adaptive
        self.default_retry_after = default_retry_after
        #: The longest hold an answer may install, in seconds.
        self.max_server_hold = check_max_server_hold(max_server_hold)
        self.clock = clock
        self.sleep = sleep
        self._lock = threading.Lock()
        self._requests: dict[str, _Bucket] = {}
        self._tokens: dict[str, _Bucket] = {}
        self._holds: dict[str, _Hold] = {}
        now = clock()
        for key, limit in self.limits.items():
            rate = limit.request_rate
            if rate is not None:
                capacity = limit.burst if limit.burst is not None else max(1.0, rate)
                self._requests[key] = _Bucket(rate, capacity, now)
            if limit.tpm is not None:
                capacity = limit.token_burst if limit.token_burst is not None else limit.tpm
                self._tokens[key] = _Bucket(limit.tpm / 60.0, capacity, now)
        self.waits = 0
        self.wait_seconds = 0.0

    def _keys(self, provider: str, model: str) -> tuple[str, ...]:
        return (provider, f"{provider}:{model}")

    def acquire(
        self,
        provider: str,
        model: str,
        tokens: int,
        *,
        max_wait: float | None = None,
        blocking: bool = True,
    ) -> Ticket:
        """Wait until every applicable bucket and hold allows one attempt of ``tokens``."""
        keys = self._keys(provider, model)
        deadline = None if max_wait is None else self.clock() + max_wait
        waited = False
        started = self.clock()
        while True:
            with self._lock:
                now = self.clock()
                wait = 0.0
                for key in keys:
                    hold = self._holds.get(key)
                    if hold is not None:
                        wait = max(wait, hold.requests_until - now, hold.tokens_until - now)
                    bucket = self._requests.get(key)
                    if bucket is not None:
                        bucket.refill(now)
                        wait = max(wait, bucket.wait_for(1.0))
                    tbucket = self._tokens.get(key)
                    if tbucket is not None:
                        if tokens > tbucket.capacity:
                            raise RateLimitExceeded(
                                f"{key}: the request needs about {tokens} tokens, more than the"
                                f" {tbucket.capacity:g} the token limit ever grants at once;"
                                " shorten the request or raise tpm/token_burst",
                                key=key,
                            )
                        tbucket.refill(now)
                        wait = max(wait, tbucket.wait_for(float(tokens)))
                if wait <= 0.0:
                    for key in keys:
                        bucket = self._requests.get(key)
                        if bucket is not None:
                            bucket.level -= 1.0
                        tbucket = self._tokens.get(key)
                        if tbucket is not None:
                            tbucket.level -= tokens
                    if waited:
                        self.waits += 1
                        self.wait_seconds += now - started
                    return Ticket(keys=keys, tokens=tokens)
            check_wait(
                f"{provider}:{model}",
                wait,
                blocking=blocking,
                remaining=None if deadline is None else deadline - self.clock(),
                max_wait=max_wait,
                scope="local",
            )
            waited = True
            self.sleep(wait)

    async def aacquire(
        self, provider: str, model: str, tokens: int, *, max_wait: float | None = None
    ) -> Ticket:
        """:meth:`acquire` for the async client: waits with the event loop's sleep (or the
        injected ``sleep`` when it is not :func:`time.sleep`), never blocking the loop."""
        import asyncio

        started = self.clock()
        deadline = None if max_wait is None else started + max_wait
        waited = False
        while True:
            remaining = None if deadline is None else max(0.0, deadline - self.clock())
            try:
                ticket = self.acquire(provider, model, tokens, blocking=False)
            except RateLimitExceeded as exc:
                wait = exc.retry_after
                if wait is None:  # refused outright (a request larger than any grant)
                    raise
                check_wait(
                    f"{provider}:{model}",
                    wait,
                    blocking=True,
                    remaining=remaining,
                    max_wait=max_wait,
                    scope="local",
                )
            else:
                if waited:
                    self.waits += 1
                    self.wait_seconds += self.clock() - started
                return ticket
            waited = True
            if self.sleep is time.sleep:
                await asyncio.sleep(wait)
            else:  # an injected clock
                self.sleep(wait)
                await asyncio.sleep(0)

    def reconcile(self, ticket: Any, used_tokens: int | None) -> None:
        """Return unused reserved tokens, or charge the excess (the bucket may go into debt)."""
        if not isinstance(ticket, Ticket) or ticket.settled:
            return
        ticket.settled = True
        delta = ticket.tokens - (used_tokens if used_tokens is not None else 0)
        if delta == 0:
            return
        with self._lock:
            for key in ticket.keys:
                bucket = self._tokens.get(key)
                if bucket is not None:
                    bucket.level = min(bucket.capacity, bucket.level + delta)

    def observe(
        self,
        provider: str,
        model: str,
        headers: Mapping[str, str] | None,
        error: BaseException | None = None,
    ) -> None:
        """Adapt to ``x-ratelimit-*`` headers and 429s (not quota errors: those are final);
        a hold lasts at most ``max_server_hold`` seconds. Never raises for what the answer
        says: unusable numbers are ignored."""
        if not self.adaptive:
            return
        now = self.clock()
        cap = self.max_server_hold
        delay = throttle_delay(error, self.default_retry_after, max_hold=cap)
        if delay is not None:
            with self._lock:
                hold = self._holds.setdefault(provider, _Hold())
                hold.requests_until = max(hold.requests_until, now + delay)
            return
        for dim, remaining, reset in rate_limit_signals(headers, max_hold=cap):
            with self._lock:
                bucket = (self._requests if dim == "requests" else self._tokens).get(provider)
                if bucket is not None:
                    bucket.refill(now)
                    bucket.level = min(bucket.level, remaining)
                if remaining < 1:
                    hold = self._holds.setdefault(provider, _Hold())
                    if dim == "requests":
                        hold.requests_until = max(hold.requests_until, now + reset)
                    else:
                        hold.tokens_until = max(hold.tokens_until, now + reset)

    def status(self) -> dict[str, dict[str, float]]:
        """A snapshot of every bucket and hold, for diagnostics."""
        now = self.clock()
        out: dict[str, dict[str, float]] = {}
        with self._lock:
            for name, table in (("requests", self._requests), ("tokens", self._tokens)):
                for key, bucket in table.items():
                    bucket.refill(now)
                    out.setdefault(key, {})[f"{name}_available"] = bucket.level
            for key, hold in self._holds.items():
                out.setdefault(key, {})["held_for"] = max(
                    0.0, hold.requests_until - now, hold.tokens_until - now
                )
        return out
