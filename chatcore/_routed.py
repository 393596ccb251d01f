"""One routed call: which deployment each attempt goes to, and what a failure means.

A :class:`RoutePlan` lives for one ``route:NAME`` call. The retry loop of
:mod:`chatcore._pipeline` stays the only loop: before each attempt it asks the plan for a
deployment (:meth:`RoutePlan.choose`), and after a failed attempt it asks the plan how
long to wait before the next one (:meth:`RoutePlan.after_failure`): no wait when another
deployment can take the call, the retry policy's backoff when every candidate already
failed, ``None`` to stop. Cooldowns, failure counts and in-flight counts go through the
client's cooldown store as effects, so the same plan serves both drivers and a
chatcore-redis limiter shares them between workers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from chatcore._log import logger
from chatcore._pipeline import Component, Target, copy_fields, make_target
from chatcore._routes import (
    ROUTE,
    Deployment,
    InMemoryCooldowns,
    Route,
    cooldown_for,
    is_content_policy,
    is_unusable,
    pick,
)
from chatcore.exceptions import (
    APIError,
    ContextWindowExceededError,
    NoDeploymentAvailableError,
    RateLimitExceeded,
)

if TYPE_CHECKING:
    from chatcore._base import BaseClient
    from chatcore._retry import RetryPolicy
    from chatcore.models import ChatRequest

__all__ = ["RoutePlan"]

#: A group of candidates: the route whose strategy and cooldown rule apply, and its
#: deployments (the route's own, one fallback model, or a fallback route's).
_Group = tuple[Route, tuple[Deployment, ...]]


class RoutePlan:
    """The choices of one routed call (not shared between calls or threads)."""

    __slots__ = (
        "_busy",
        "_local",
        "_route_of",
        "_timed",
        "cooling",
        "core",
        "current",
        "estimate",
        "failed",
        "groups",
        "index",
        "jumped",
        "last_error",
        "policy",
        "request",
        "route",
        "stream",
        "targets",
        "tried",
    )

    def __init__(
        self,
        core: BaseClient,
        route: Route,
        request: ChatRequest,
        policy: RetryPolicy,
        estimate: int,
        *,
        stream: bool,
    ) -> None:
        self.core = core
        self.route = route
        self.request = request
        self.policy = policy
        self.estimate = estimate
        self.stream = stream
        self.groups: list[_Group] = [(route, route.deployments)]
        if route.fallbacks:
            self.groups.extend(self._groups(route.fallbacks))
        #: The route (own or fallback) each chosen deployment was picked from.
        self._route_of: dict[str, Route] = {}
        #: Deployments counted in flight by this call (``least_busy``), to release.
        self._busy: set[str] = set()
        #: Whether attempt latencies feed a ``lowest_latency`` pick.
        self._timed = route.strategy == "lowest_latency" or (
            len(self.groups) > 1 and self._any_timed()
        )
        self.index = 0
        self.jumped = False
        #: Deployments that failed during this call (skipped until a backoff).
        self.failed: set[str] = set()
        #: The deployment key of each attempt, in order.
        self.tried: list[str] = []
        self.targets: dict[str, Target] = {}
        self.current: Target | None = None
        self.cooling: dict[str, float] = {}
        self.last_error: BaseException | None = None
        store = core.cooldowns
        #: The in-process store is asked directly (it never blocks); any other store (a
        #: Redis limiter's) through effects, so the async driver awaits its coroutines.
        self._local = store if type(store) is InMemoryCooldowns else None

    async def _store(self, method: str, *args: Any) -> Any:
        if self._local is not None:
            return getattr(self._local, method)(*args)
        return await Component(self.core.cooldowns, method, args)

    def _ask(self, method: str, *args: Any) -> Component | None:
        """Do ``method`` at once on the in-process store (``None``), or the effect that
        does it on another store (the caller awaits it)."""
        if self._local is not None:
            getattr(self._local, method)(*args)
            return None
        return Component(self.core.cooldowns, method, args)

    # --- the candidates --------------------------------------------------------------

    def _groups(self, targets: Sequence[str]) -> list[_Group]:
        groups: list[_Group] = []
        for target in targets:
            kind, _, rest = target.partition(":")
            if kind == ROUTE:
                other = self.core.routes.get(rest)
                if other is not None and other is not self.route:
                    groups.append((other, other.deployments))
                continue
            fallback = Deployment(
                route=self.route.name, name=f"fallback:{target}", provider=kind, model=rest
            )
            groups.append((self.route, (fallback,)))
        return groups

    def _any_timed(self) -> bool:
        return any(route.strategy == "lowest_latency" for route, _group in self.groups)

    def _target(self, deployment: Deployment) -> Target:
        found = self.targets.get(deployment.key)
        if found is None:
            request = copy_fields(
                self.request, provider=deployment.provider, model=deployment.model
            )
            provider = self.core.deployment_provider(deployment)
            found = make_target(self.core, request, provider, self.stream, deployment)
            self.targets[deployment.key] = found
        return found

    def _untried(self) -> bool:
        return any(
            d.key not in self.failed for _route, group in self.groups[self.index :] for d in group
        )

    # --- before an attempt -----------------------------------------------------------

    async def choose(self) -> tuple[Target, Any]:
        """The target of the next attempt, and its limiter ticket when one was taken
        here (``None``: the attempt acquires one, waiting as usual)."""
        self.current = None
        live: Sequence[Deployment] = ()
        route = self.route
        while self.index < len(self.groups):
            route, deployments = self.groups[self.index]
            failed = self.failed
            pool = [d for d in deployments if d.key not in failed] if failed else deployments
            if pool:
                keys = [d.key for d in pool]
                local = self._local
                cooling: dict[str, float] = (
                    local.cooling(keys)
                    if local is not None
                    else await Component(self.core.cooldowns, "cooling", (keys,))
                )
                live = [d for d in pool if d.key not in cooling] if cooling else pool
                if live:
                    if cooling:
                        logger.debug(
                            "route {route}: skipping {skipped}: cooling down",
                            route=self.route.name,
                            skipped=", ".join(sorted(cooling)),
                        )
                    break
                self.cooling.update(cooling)
                logger.info(
                    "route {route}: skipping {skipped}: cooling down (every deployment"
                    " of this group)",
                    route=self.route.name,
                    skipped=", ".join(sorted(cooling)),
                )
            self.index += 1
        if not live:
            raise self._none_available()
        busy = None
        if route.strategy == "least_busy" and len(live) > 1:
            keys = [d.key for d in live]
            local = self._local
            busy = (
                local.in_flight_counts(keys)
                if local is not None
                else await Component(self.core.cooldowns, "in_flight_counts", (keys,))
            )
        first = (
            live[0]
            if len(live) == 1
            else pick(route, live, busy=busy, latencies=self.core._latencies)
        )
        ticket = None
        if len(live) > 1:
            # a deployment whose own rate limiter would make the call wait is skipped for
            # one that can go now; when none can, the first one waits as usual
            rest = [d for d in live if d is not first]
            for deployment in (first, *rest):
                target = self._target(deployment)
                try:
                    ticket = await Component(
                        self.core.rate_limiter,
                        "acquire",
                        (target.limiter_key, deployment.model, self.estimate),
                        {"max_wait": 0.0},
                    )
                except RateLimitExceeded as exc:
                    if exc.retry_after is None:
                        raise
                    logger.debug(
                        "route {route}: skipping {deployment}: its rate limit would wait"
                        " {wait:.3f}s",
                        route=self.route.name,
                        deployment=deployment.key,
                        wait=exc.retry_after,
                    )
                    continue
                first = deployment
                break
        target = self._target(first)
        self._route_of[first.key] = route
        if route.strategy == "least_busy":
            effect = self._ask("in_flight", first.key, 1)
            if effect is not None:
                await effect
            self._busy.add(first.key)
        self.current = target
        self.tried.append(first.key)
        return target, ticket

    def _none_available(self) -> NoDeploymentAvailableError:
        cooling = ", ".join(f"{k} ({s:.1f}s)" for k, s in sorted(self.cooling.items()))
        parts = [f"route {self.route.name!r}: no deployment can take the call"]
        if cooling:
            parts.append(f"cooling down: {cooling}")
        failed = sorted(self.failed - set(self.cooling))
        if failed:
            parts.append(f"failed during this call: {', '.join(failed)}")
        last = self.last_error
        if last is not None:
            parts.append(f"last failure: {type(last).__name__}: {last}")
        error = NoDeploymentAvailableError(
            "; ".join(parts),
            provider=ROUTE,
            model=self.route.name,
            retry_after=min(self.cooling.values()) if self.cooling else None,
            should_retry=False,
        )
        error.__cause__ = last
        return error

    # --- after an attempt ------------------------------------------------------------

    def release(self, target: Target) -> Component | None:
        """An attempt (or a stream) on ``target`` ended: it is no longer in flight. Done at
        once, or the effect the caller awaits (a store other than the in-process one)."""
        deployment = target.deployment
        if deployment is None or deployment.key not in self._busy:
            return None
        self._busy.discard(deployment.key)
        return self._ask("in_flight", deployment.key, -1)

    def succeeded(self, target: Target, seconds: float) -> None:
        """``target`` answered in ``seconds`` (for the lowest-latency strategy)."""
        if self._timed and target.deployment is not None:
            self.core._latencies.add(target.deployment.key, seconds)

    async def after_failure(self, error: APIError, number: int, started: float) -> float | None:
        """Seconds to wait before attempt ``number + 1`` after ``error`` (0: another
        deployment takes it at once), or ``None`` to stop and raise ``error``."""
        target = self.current
        self.current = None
        if target is None or target.deployment is None:  # nothing was sent
            error.attempts = number - 1
            return None
        error.deployments = tuple(self.tried)
        self.last_error = error
        deployment = target.deployment
        self.failed.add(deployment.key)
        policy = self.policy
        retryable = policy.should_retry(error)
        unusable = is_unusable(error)
        if retryable or unusable:
            route = self._route_of.get(deployment.key, self.route)
            failures = await self._store("failed", deployment.key, route.failure_window)
            seconds = cooldown_for(
                route, error, failures, max_hold=self.core.settings.max_server_hold
            )
            if seconds is not None:
                await self._store("cool_down", deployment.key, seconds)
                logger.warning(
                    "route {route}: {deployment} cools down for {seconds:.1f}s after"
                    " {error} ({failures} failure(s) in {window:g}s)",
                    route=self.route.name,
                    deployment=deployment.key,
                    seconds=seconds,
                    error=type(error).__name__,
                    failures=failures,
                    window=route.failure_window,
                )
        if number > policy.max_retries:
            return None
        if policy.timeout_total is not None and policy.clock() - started >= policy.timeout_total:
            return None
        if isinstance(error, ContextWindowExceededError) or is_content_policy(error):
            specific = (
                self.route.context_window_fallbacks
                if isinstance(error, ContextWindowExceededError)
                else self.route.content_policy_fallbacks
            )
            if specific and not self.jumped:
                # straight to a model that can take it: the route's other deployments
                # serve the same model and would refuse it alike
                self.jumped = True
                self.groups = [*self.groups[: self.index + 1], *self._groups(specific)]
                self._timed = self._any_timed()
            self.index += 1
            return 0.0 if self._untried() else None
        if not (retryable or unusable):
            return None  # the request itself is wrong: another deployment would refuse it too
        if self._untried():
            return 0.0
        if not retryable:
            return None
        delay = policy.retry_delay(number, error, started)
        if delay is not None:  # every candidate failed: start over after the backoff
            self.failed.clear()
            self.index = 0
        return delay

    def scrub(self, error: BaseException) -> None:
        """Mask the secrets of every deployment this call used in ``error``."""
        from chatcore._redact import scrub_exception

        for target in self.targets.values():
            scrub_exception(error, target.secrets)

    @property
    def served(self) -> Deployment | None:
        """The deployment of the last attempt."""
        if not self.tried:
            return None
        key = self.tried[-1]
        found = self.targets.get(key)
        return found.deployment if found is not None else None
