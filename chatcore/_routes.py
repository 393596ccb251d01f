"""Routes: one name (``route:NAME``) for several deployments, chosen per attempt.

A route lists deployments (``provider:model``, optional provider options such as another
``base_url`` or key, a weight, rate limits), a strategy that picks one for each attempt
(weighted random, ordered, least busy, lowest latency), fallbacks by error class, and a
cooldown rule. The retry policy stays the only loop: each attempt asks the route for a
deployment, skipping those cooling down. Cooldowns and in-flight counts live in the rate
limiter's backend when it keeps them (chatcore-redis shares them between workers), else in
this process.

This module is pure bookkeeping: no I/O. The pipeline (:mod:`chatcore._pipeline`) uses it.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import attrs

from chatcore._limits import RateLimit
from chatcore.exceptions import (
    APIError,
    APIStatusError,
    AuthenticationError,
    ConfigurationError,
    ContextWindowExceededError,
    ModelNotFoundError,
    NotFoundError,
    PermissionDeniedError,
    QuotaExceededError,
    finite_seconds,
)

__all__ = [
    "ROUTE",
    "STRATEGIES",
    "CooldownStore",
    "Deployment",
    "InMemoryCooldowns",
    "Route",
    "parse_routes",
]

#: The provider part of a routed model name: ``route:NAME``.
ROUTE = "route"

#: How a route picks a deployment for an attempt.
STRATEGIES = ("weighted", "ordered", "least_busy", "lowest_latency")

_ROUTE_KEYS = frozenset(
    {
        "deployments",
        "strategy",
        "fallbacks",
        "context_window_fallbacks",
        "content_policy_fallbacks",
        "cooldown_seconds",
        "allowed_failures",
        "failure_window",
    }
)
_DEPLOYMENT_KEYS = frozenset({"model", "name", "weight", "options", "rate_limits"})
#: Error codes that say a prompt was refused by a content filter.
_CONTENT_POLICY_CODES = frozenset({"content_filter", "content_policy_violation"})


@attrs.frozen
class Deployment:
    """One deployment of a route: ``provider:model`` with its own options, weight and
    limits. :attr:`key` names it in the limiter, cooldowns, metrics and logs."""

    route: str
    name: str
    provider: str
    model: str
    weight: float = 1.0
    options: Mapping[str, Any] = attrs.field(factory=dict, repr=False)
    rate_limit: RateLimit | None = None
    #: ``route:NAME/deployment``: unique across routes; names it in the cooldown store,
    #: responses, metrics and logs.
    key: str = attrs.field(init=False, repr=False, eq=False)
    #: The provider key the rate limiter uses: the provider itself when the deployment
    #: shares its endpoint, a key of its own when it has options or limits of its own
    #: (another endpoint has other limits, and a 429 there holds only it).
    limiter_provider: str = attrs.field(init=False, repr=False, eq=False)

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "key", f"route:{self.route}/{self.name}")
        own = bool(self.options) or self.rate_limit is not None
        limiter = f"{self.provider}@{self.route}.{self.name}" if own else self.provider
        object.__setattr__(self, "limiter_provider", limiter)


@attrs.frozen
class Route:
    """A named route: its deployments, strategy, fallbacks and cooldown rule."""

    name: str
    deployments: tuple[Deployment, ...]
    strategy: str = "weighted"
    fallbacks: tuple[str, ...] = ()
    context_window_fallbacks: tuple[str, ...] = ()
    content_policy_fallbacks: tuple[str, ...] = ()
    #: How long an unusable deployment is skipped, in seconds.
    cooldown_seconds: float = 30.0
    #: Retryable failures within :attr:`failure_window` that cool a deployment down.
    allowed_failures: int = 3
    failure_window: float = 60.0

    def fallback_for(self, error: BaseException) -> tuple[str, ...]:
        """The fallbacks that fit ``error``: a context window fallback for a prompt too
        long, a content policy one for a refused prompt, else the general ones."""
        if isinstance(error, ContextWindowExceededError) and self.context_window_fallbacks:
            return self.context_window_fallbacks
        if is_content_policy(error) and self.content_policy_fallbacks:
            return self.content_policy_fallbacks
        return self.fallbacks


def is_content_policy(error: BaseException) -> bool:
    """True for a prompt refused by the provider's content filter."""
    return isinstance(error, APIStatusError) and (
        error.code in _CONTENT_POLICY_CODES or error.error_type in _CONTENT_POLICY_CODES
    )


def is_unusable(error: BaseException) -> bool:
    """True for an answer saying the deployment cannot serve anything now (bad key, no
    permission, no such model, quota used up): cool it down and move on."""
    if isinstance(error, (AuthenticationError, PermissionDeniedError, QuotaExceededError)):
        return True
    return isinstance(error, (ModelNotFoundError, NotFoundError))


# --------------------------------------------------------------------------------------
# Configuration


def _problem(route: str, where: str, message: str) -> str:
    return f"routes[{route!r}]{where}: {message}"


def _number(value: Any, *, minimum: float, exclusive: bool = True) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if not math.isfinite(value) or (value <= minimum if exclusive else value < minimum):
        return None
    return float(value)


def _models(route: str, key: str, value: Any, problems: list[str]) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, Sequence) or not all(
        isinstance(v, str) and ":" in v.strip(":") for v in value
    ):
        problems.append(
            _problem(route, f".{key}", "expected a list of 'provider:model' or 'route:NAME'")
        )
        return ()
    return tuple(value)


def parse_routes(
    raw: Mapping[str, Any] | None, providers: Iterable[str] | None = None
) -> dict[str, Route]:
    """Validate route settings (from ``Client(routes=...)`` or ``[routes.NAME]``); every
    problem is reported in one :class:`ConfigurationError` naming the route and key."""
    if not raw:
        return {}
    if not isinstance(raw, Mapping):
        raise ConfigurationError("routes: expected a mapping of route name to its settings")
    known = set(providers) if providers is not None else None
    problems: list[str] = []
    routes: dict[str, Route] = {}
    for name, spec in raw.items():
        if isinstance(spec, Route):
            routes[name] = spec
            continue
        if not isinstance(name, str) or not name or ":" in name or "/" in name:
            problems.append(f"routes[{name!r}]: a route name is a non-empty word (no ':' or '/')")
            continue
        if not isinstance(spec, Mapping):
            problems.append(_problem(name, "", "expected a mapping with 'deployments'"))
            continue
        for key in sorted(set(spec) - _ROUTE_KEYS, key=str):
            problems.append(
                _problem(
                    name, "", f"unknown key {key!r} (allowed: {', '.join(sorted(_ROUTE_KEYS))})"
                )
            )
        strategy = spec.get("strategy", "weighted")
        if strategy not in STRATEGIES:
            problems.append(
                _problem(
                    name, ".strategy", f"expected one of {', '.join(STRATEGIES)}, got {strategy!r}"
                )
            )
        deployments = _deployments(name, spec.get("deployments"), known, problems)
        numbers: dict[str, float] = {}
        for key, default, minimum, exclusive in (
            ("cooldown_seconds", 30.0, 0.0, True),
            ("failure_window", 60.0, 0.0, True),
            ("allowed_failures", 3, 1, False),
        ):
            value = spec.get(key, default)
            number = _number(value, minimum=minimum, exclusive=exclusive)
            if number is None or (key == "allowed_failures" and not isinstance(value, int)):
                what = "an integer >= 1" if key == "allowed_failures" else "seconds > 0"
                problems.append(_problem(name, f".{key}", f"expected {what}, got {value!r}"))
                continue
            numbers[key] = number
        fallbacks = {
            key: _models(name, key, spec.get(key), problems)
            for key in ("fallbacks", "context_window_fallbacks", "content_policy_fallbacks")
        }
        if deployments:
            routes[name] = Route(
                name=name,
                deployments=deployments,
                strategy=strategy if strategy in STRATEGIES else "weighted",
                cooldown_seconds=numbers.get("cooldown_seconds", 30.0),
                allowed_failures=int(numbers.get("allowed_failures", 3)),
                failure_window=numbers.get("failure_window", 60.0),
                **fallbacks,
            )
    for route in routes.values():
        for key in ("fallbacks", "context_window_fallbacks", "content_policy_fallbacks"):
            for target in getattr(route, key):
                kind, _, rest = target.partition(":")
                if kind == "route" and rest not in routes and rest not in raw:
                    problems.append(_problem(route.name, f".{key}", f"no route named {rest!r}"))
                elif kind != "route" and known is not None and kind not in known:
                    problems.append(
                        _problem(route.name, f".{key}", f"no provider {kind!r} is installed")
                    )
    if problems:
        raise ConfigurationError(
            problems[0] if len(problems) == 1 else "invalid routes:\n  " + "\n  ".join(problems)
        )
    return routes


def _deployments(
    route: str, raw: Any, known: set[str] | None, problems: list[str]
) -> tuple[Deployment, ...]:
    if not isinstance(raw, Sequence) or isinstance(raw, str) or not raw:
        problems.append(_problem(route, ".deployments", "expected a non-empty list"))
        return ()
    out: list[Deployment] = []
    names: set[str] = set()
    for i, item in enumerate(raw):
        where = f".deployments[{i}]"
        if isinstance(item, str):
            item = {"model": item}
        if not isinstance(item, Mapping):
            problems.append(_problem(route, where, "expected 'provider:model' or a mapping"))
            continue
        for key in sorted(set(item) - _DEPLOYMENT_KEYS, key=str):
            problems.append(
                _problem(
                    route,
                    where,
                    f"unknown key {key!r} (allowed: {', '.join(sorted(_DEPLOYMENT_KEYS))})",
                )
            )
        model = item.get("model")
        if not isinstance(model, str) or ":" not in model.strip(":"):
            problems.append(_problem(route, f"{where}.model", "expected 'provider:model'"))
            continue
        provider, _, model_id = model.partition(":")
        if provider == "route":
            problems.append(_problem(route, f"{where}.model", "a deployment cannot be a route"))
            continue
        if known is not None and provider not in known:
            problems.append(
                _problem(route, f"{where}.model", f"no provider {provider!r} is installed")
            )
            continue
        weight = _number(item.get("weight", 1.0), minimum=0.0)
        if weight is None:
            problems.append(_problem(route, f"{where}.weight", "expected a number > 0"))
            continue
        options = item.get("options") or {}
        if not isinstance(options, Mapping):
            problems.append(_problem(route, f"{where}.options", "expected a mapping of options"))
            continue
        limit = None
        if item.get("rate_limits") is not None:
            try:
                limit = RateLimit.parse(f"{route}/{i}", item["rate_limits"])
            except (ConfigurationError, ValueError, TypeError) as exc:
                problems.append(_problem(route, f"{where}.rate_limits", str(exc)))
                continue
        name = item.get("name") or (model if model not in names else f"{model}#{i}")
        if not isinstance(name, str) or "/" in name or name in names:
            problems.append(_problem(route, f"{where}.name", f"{name!r} is not a unique name"))
            continue
        names.add(name)
        out.append(
            Deployment(
                route=route,
                name=name,
                provider=provider,
                model=model_id,
                weight=weight,
                options=dict(options),
                rate_limit=limit,
            )
        )
    return tuple(out)


# --------------------------------------------------------------------------------------
# Cooldowns and in-flight counts


class CooldownStore:
    """Where cooldowns, failure counts and in-flight counts live. The in-memory store
    serves one process; a rate limiter that offers the same methods (chatcore-redis)
    shares them between workers."""

    def cooling(self, keys: Sequence[str]) -> dict[str, float]:
        """Seconds of cooldown left for each key that is cooling down."""
        raise NotImplementedError

    def cool_down(self, key: str, seconds: float) -> None:
        """Skip ``key`` for ``seconds`` (an existing longer cooldown stays)."""
        raise NotImplementedError

    def failed(self, key: str, window: float) -> int:
        """Count one failure of ``key``; the failures within the last ``window``."""
        raise NotImplementedError

    def in_flight(self, key: str, delta: int) -> int:
        """Add ``delta`` to the calls in flight on ``key``; the new count."""
        raise NotImplementedError

    def in_flight_counts(self, keys: Sequence[str]) -> dict[str, int]:
        """Calls in flight on each key."""
        raise NotImplementedError


_STORE_METHODS = ("cooling", "cool_down", "failed", "in_flight", "in_flight_counts")


def is_cooldown_store(component: Any) -> bool:
    """Whether ``component`` (a rate limiter, say) keeps cooldowns itself."""
    return all(callable(getattr(component, name, None)) for name in _STORE_METHODS)


class InMemoryCooldowns(CooldownStore):
    """Cooldowns, failures and in-flight counts of this process; thread-safe, with an
    injectable clock."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._until: dict[str, float] = {}
        self._failures: dict[str, list[float]] = {}
        self._busy: dict[str, int] = {}

    def cooling(self, keys: Sequence[str]) -> dict[str, float]:
        if not self._until:  # nothing has ever cooled down: no clock, no lock
            return {}
        now = self.clock()
        with self._lock:
            return {k: self._until[k] - now for k in keys if self._until.get(k, 0.0) > now}

    def cool_down(self, key: str, seconds: float) -> None:
        until = self.clock() + seconds
        with self._lock:
            if until > self._until.get(key, 0.0):
                self._until[key] = until

    def failed(self, key: str, window: float) -> int:
        now = self.clock()
        with self._lock:
            recent = [t for t in self._failures.get(key, ()) if t > now - window]
            recent.append(now)
            self._failures[key] = recent[-64:]
            return len(recent)

    def in_flight(self, key: str, delta: int) -> int:
        with self._lock:
            count = max(0, self._busy.get(key, 0) + delta)
            self._busy[key] = count
            return count

    def in_flight_counts(self, keys: Sequence[str]) -> dict[str, int]:
        with self._lock:
            return {k: self._busy.get(k, 0) for k in keys}


# --------------------------------------------------------------------------------------
# Picking


class Latencies:
    """A recent moving average of each deployment's latency (this process)."""

    def __init__(self, alpha: float = 0.3) -> None:
        self.alpha = alpha
        self._lock = threading.Lock()
        self._mean: dict[str, float] = {}

    def add(self, key: str, seconds: float) -> None:
        with self._lock:
            old = self._mean.get(key)
            self._mean[key] = seconds if old is None else old + self.alpha * (seconds - old)

    def get(self, key: str) -> float | None:
        return self._mean.get(key)


def pick(
    route: Route,
    candidates: Sequence[Deployment],
    *,
    busy: Mapping[str, int] | None = None,
    latencies: Latencies | None = None,
    rng: Callable[[], float] = random.random,
) -> Deployment:
    """The deployment ``route``'s strategy picks among ``candidates`` (non-empty)."""
    strategy = route.strategy
    if strategy == "ordered" or len(candidates) == 1:
        return candidates[0]
    if strategy == "least_busy":
        counts = busy or {}
        return min(candidates, key=lambda d: counts.get(d.key, 0))
    if strategy == "lowest_latency" and latencies is not None:
        known = [(latencies.get(d.key), i, d) for i, d in enumerate(candidates)]
        untried = [d for mean, _i, d in known if mean is None]
        if untried:  # measure each before preferring one
            return untried[0]
        return min(known, key=lambda t: (t[0], t[1]))[2]
    total = sum(d.weight for d in candidates)
    point = rng() * total
    for deployment in candidates:
        point -= deployment.weight
        if point < 0:
            return deployment
    return candidates[-1]


def cooldown_for(
    route: Route, error: BaseException, failures: int, *, max_hold: float = math.inf
) -> float | None:
    """How long a deployment that failed with ``error`` (its ``failures``-th failure in
    the window) cools down, or ``None``: an unusable deployment at once, a retryable one
    after :attr:`Route.allowed_failures`; a server's ``retry-after`` extends it, up to
    ``max_hold`` (the client's ``max_server_hold``)."""
    if not isinstance(error, APIError):
        return None
    if not is_unusable(error) and failures < route.allowed_failures:
        return None
    seconds = route.cooldown_seconds
    demanded = finite_seconds(getattr(error, "retry_after", None))
    if demanded is not None and demanded > seconds:
        seconds = min(demanded, max(max_hold, route.cooldown_seconds))
    return seconds
