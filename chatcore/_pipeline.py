"""The request pipeline, written once: cache -> rate limit -> retry(attempt) -> record.

The stages are ``async def`` coroutines that never do I/O themselves. Where they need the
outside world (send an HTTP call, open a stream, sleep, ask the rate limiter or the cache,
run a 0.1 provider's own I/O) they await an *effect*: a small object that says what to do.
A driver carries effects out: :func:`run_sync` with blocking calls (``Client``, over
requests), :func:`run_async` by awaiting them on the event loop (``AsyncClient``, over
aiohttp). Both drive the same coroutine, so retries, deadlines, limiter grants, cache,
metrics and logging behave alike; a cancelled task is thrown into the coroutine like any
error, so its limiter grant is settled and its outcome recorded.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Coroutine, Generator, Iterator
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

import attrs

from chatcore._deadline import call_deadline
from chatcore._estimate import estimate_prompt_tokens, heuristic_tokens, limits_tokens
from chatcore._log import logger, logging_on
from chatcore._redact import (
    KnownSecrets,
    mask_secrets,
    may_hold_secret,
    scrub_exception,
)
from chatcore._routes import Deployment, Route
from chatcore.exceptions import APIError
from chatcore.models import ChatChunk, ChatRequest, ChatResponse

if TYPE_CHECKING:
    from chatcore._base import BaseClient
    from chatcore._cache import ResponseCache
    from chatcore._retry import RetryPolicy
    from chatcore._routed import RoutePlan
    from chatcore._tracing import CallTrace
    from chatcore.provider import HttpCall, ModelInfo, Provider

__all__ = [
    "Effect",
    "StreamContext",
    "chat_pipeline",
    "models_pipeline",
    "run_async",
    "run_sync",
    "stream_pipeline",
]

T = TypeVar("T")
_END = object()
#: What an abandoned stream is settled with: unfinished, so charged its reservation.
_UNFINISHED = RuntimeError("the stream was closed before its end")


# --------------------------------------------------------------------------------------
# Effects: what the pipeline asks its driver to do


class Effect(Generic[T]):
    """Something the pipeline awaits and a driver carries out (:meth:`run_sync` for the
    sync driver, :meth:`run_async` for the async one)."""

    __slots__ = ()

    def __await__(self) -> Generator[Effect[Any], Any, T]:
        result = yield self
        return cast(T, result)

    def run_sync(self) -> T:
        """Carry the effect out with blocking calls."""
        raise NotImplementedError

    async def run_async(self) -> T:
        """Carry the effect out on the event loop, never blocking it."""
        raise NotImplementedError


def _with_deadline(deadline: float | None, func: Callable[[], T]) -> T:
    """``func()`` with the call's deadline visible to the transport."""
    token = call_deadline.set(deadline)
    try:
        return func()
    finally:
        call_deadline.reset(token)


@attrs.define(slots=True)
class Send(Effect["Any"]):
    """Send one HTTP call through the client's transport; the answer is an ``HttpResult``."""

    transport: Any
    call: HttpCall
    model: str | None
    deadline: float | None

    def run_sync(self) -> Any:
        return _with_deadline(
            self.deadline, lambda: self.transport.send(self.call, model=self.model)
        )

    async def run_async(self) -> Any:
        token = call_deadline.set(self.deadline)
        try:
            return await self.transport.send(self.call, model=self.model)
        finally:
            call_deadline.reset(token)


@attrs.define(slots=True)
class OpenStream(Effect["tuple[ChatChunk | None, Any]"]):
    """Open a stream and read it up to its first chunk: ``(first or None, the rest)``."""

    transport: Any
    call: HttpCall
    model: str | None
    decoder: Callable[[Any], Any]
    deadline: float | None

    def run_sync(self) -> tuple[ChatChunk | None, Any]:
        chunks = self.transport.stream_chunks(self.call, model=self.model, decoder=self.decoder)
        first = _with_deadline(self.deadline, lambda: next(chunks, None))
        return first, chunks

    async def run_async(self) -> tuple[ChatChunk | None, Any]:
        chunks = self.transport.stream_chunks(self.call, model=self.model, decoder=self.decoder)
        token = call_deadline.set(self.deadline)
        try:
            first = await anext(chunks, None)
        except BaseException:
            await chunks.aclose()
            raise
        finally:
            call_deadline.reset(token)
        return first, chunks


@attrs.define(slots=True)
class Legacy(Effect["Any"]):
    """Run a 0.1 provider's own blocking call (``chat`` / ``list_models``); in a worker
    thread under the async driver."""

    func: Callable[[], Any]
    deadline: float | None

    def run_sync(self) -> Any:
        return _with_deadline(self.deadline, self.func)

    async def run_async(self) -> Any:
        import asyncio

        token = call_deadline.set(self.deadline)  # to_thread copies the context
        try:
            return await asyncio.to_thread(self.func)
        finally:
            call_deadline.reset(token)


@attrs.define(slots=True)
class LegacyStream(Effect["tuple[ChatChunk | None, Any]"]):
    """Open a 0.1 provider's own ``stream()`` and read its first chunk; under the async
    driver each chunk is read in a worker thread."""

    provider: Provider
    request: ChatRequest
    deadline: float | None

    def run_sync(self) -> tuple[ChatChunk | None, Any]:
        chunks = self.provider.stream(self.request)
        first = _with_deadline(self.deadline, lambda: next(chunks, None))
        return first, chunks

    async def run_async(self) -> tuple[ChatChunk | None, Any]:
        import asyncio

        chunks = self.provider.stream(self.request)
        token = call_deadline.set(self.deadline)
        try:
            first = await asyncio.to_thread(next, chunks, None)
        finally:
            call_deadline.reset(token)
        return first, _in_threads(chunks)


async def _in_threads(chunks: Iterator[ChatChunk]) -> AsyncIterator[ChatChunk]:
    """A blocking chunk iterator read one chunk per worker-thread hop."""
    import asyncio

    try:
        while True:
            chunk = await asyncio.to_thread(next, chunks, _END)
            if chunk is _END:
                return
            yield cast(ChatChunk, chunk)
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            await asyncio.to_thread(close)


@attrs.define(slots=True)
class Sleep(Effect[None]):
    """Wait ``seconds`` (the retry policy's ``sleep``; the event loop's under async unless
    a test injected a fake)."""

    seconds: float
    sleep: Callable[[float], None]

    def run_sync(self) -> None:
        self.sleep(self.seconds)

    async def run_async(self) -> None:
        import asyncio

        if self.sleep is time.sleep:
            await asyncio.sleep(self.seconds)
        else:  # an injected clock: its sleep returns at once
            self.sleep(self.seconds)
            await asyncio.sleep(0)


#: Per (component class, method): the name of its coroutine twin, or ``None``.
_ASYNC_NAMES: dict[tuple[type[Any], str], Any] = {}
_UNKNOWN = object()


@attrs.define(slots=True)
class Component(Effect["Any"]):
    """Call ``method`` of a pluggable component (rate limiter, cache). Under the async
    driver its ``a<method>`` coroutine is awaited when it has one; a blocking ``acquire``
    without one runs in a worker thread; other methods are called directly (they must
    not block for long)."""

    component: Any
    method: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any] = attrs.field(factory=dict)

    def run_sync(self) -> Any:
        return getattr(self.component, self.method)(*self.args, **self.kwargs)

    async def run_async(self) -> Any:
        kind = type(self.component)
        name = _ASYNC_NAMES.get((kind, self.method), _UNKNOWN)
        if name is _UNKNOWN:
            name = "a" + self.method
            if not callable(getattr(self.component, name, None)):
                name = None
            if len(_ASYNC_NAMES) < 256:
                _ASYNC_NAMES[(kind, self.method)] = name
        if name is not None:
            return await getattr(self.component, name)(*self.args, **self.kwargs)
        func = getattr(self.component, self.method)
        if self.method == "acquire":
            import asyncio

            return await asyncio.to_thread(func, *self.args, **self.kwargs)
        return func(*self.args, **self.kwargs)


# --------------------------------------------------------------------------------------
# Drivers


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a pipeline coroutine to its end, carrying out each effect with blocking calls."""
    value: Any = None
    error: BaseException | None = None
    while True:
        try:
            effect = coro.throw(error) if error is not None else coro.send(value)
        except StopIteration as stop:
            return cast(T, stop.value)
        try:
            value, error = effect.run_sync(), None
        except BaseException as exc:  # thrown into the pipeline, which decides
            value, error = None, exc
        finally:
            del effect


async def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run a pipeline coroutine to its end, awaiting each effect on the event loop."""
    value: Any = None
    error: BaseException | None = None
    while True:
        try:
            effect = coro.throw(error) if error is not None else coro.send(value)
        except StopIteration as stop:
            return cast(T, stop.value)
        try:
            value, error = await effect.run_async(), None
        except BaseException as exc:  # cancellation too: the pipeline settles and records
            value, error = None, exc
        finally:
            del effect


# --------------------------------------------------------------------------------------
# The stages


def estimate_tokens(request: ChatRequest, limiter: Any = None) -> int:
    """A token estimate for rate limiting: the prompt plus the output cap. The prompt is
    counted (tiktoken for OpenAI-family models when installed, see chatcore._estimate)
    only for a limiter with token limits; others get the cheap ~4 characters a token."""
    out = request.max_completion_tokens or request.max_tokens or 0
    if limiter is not None and not limits_tokens(limiter):
        return sum(heuristic_tokens(m.text) for m in request.messages) + 1 + out
    return estimate_prompt_tokens(request) + out


def copy_fields(obj: T, **changes: Any) -> T:
    """``obj`` (an attrs instance) with plain fields changed: what ``attrs.evolve`` gives,
    without re-running every field's converter and validator. Only for values that are
    already in their final form (names, numbers, the call's own fields)."""
    kind = type(obj)
    how = _COPIERS.get(kind)
    if how is None:
        how = _COPIERS[kind] = _copier(kind)
    read, setters, index = how
    values = list(read(obj))
    for name, value in changes.items():
        values[index[name]] = value
    new: T = object.__new__(kind)
    for store, value in zip(setters, values):
        store(new, value)
    return new


def _copier(
    kind: type[Any],
) -> tuple[Callable[[Any], Any], tuple[Callable[[Any, Any], None], ...], dict[str, int]]:
    """How :func:`copy_fields` copies a ``kind``: one C-level read of every field, and
    each field's slot setter (``object.__setattr__`` where the class has no slots)."""
    import operator

    names = tuple(f.name for f in attrs.fields(cast(Any, kind)))
    read: Callable[[Any], Any] = operator.attrgetter(*names)
    if len(names) == 1:  # attrgetter of one name returns the value itself
        single = read
        read = lambda obj: (single(obj),)  # noqa: E731

    def setter(name: str) -> Callable[[Any, Any], None]:
        slot = getattr(kind, "__dict__", {}).get(name)
        if (
            slot is not None
            and hasattr(slot, "__set__")
            and type(slot).__name__ == ("member_descriptor")
        ):
            return cast(Callable[[Any, Any], None], slot.__set__)
        return lambda obj, value: object.__setattr__(obj, name, value)

    return read, tuple(setter(n) for n in names), {n: i for i, n in enumerate(names)}


_COPIERS: dict[
    type[Any],
    tuple[Callable[[Any], Any], tuple[Callable[[Any, Any], None], ...], dict[str, int]],
] = {}


def _updated(response: ChatResponse, **changes: Any) -> ChatResponse:
    """``response`` with chatcore's own call fields changed (provider, latency, attempts,
    cached, deployment): :func:`copy_fields` for an exact :class:`ChatResponse` (a third
    of a cache hit's cost), ``attrs.evolve`` for a subclass, which may validate more."""
    if type(response) is not ChatResponse:
        return attrs.evolve(response, **changes)
    return copy_fields(response, **changes)


def _deadline(policy: RetryPolicy) -> float | None:
    if policy.timeout_total is None:
        return None
    return time.monotonic() + policy.timeout_total


@attrs.define(slots=True)
class Target:
    """Where an attempt goes: the request as its provider gets it, the provider, the
    client's transport for it and the prepared call (``None``: a 0.1 provider doing its
    own I/O), its secrets, the rate limiter's key for it, and the route's deployment."""

    request: ChatRequest
    provider: Provider
    transport: Any
    call: HttpCall | None
    secrets: KnownSecrets
    limiter_key: str
    deployment: Deployment | None = None


def make_target(
    core: BaseClient,
    request: ChatRequest,
    provider: Provider,
    stream: bool,
    deployment: Deployment | None = None,
) -> Target:
    """The :class:`Target` of ``request`` on ``provider`` (its call prepared once)."""
    transport = core._transport_of(provider) if provider.translates else None
    call = None
    if transport is not None:
        call = provider.prepare_stream(request) if stream else provider.prepare_chat(request)
    return Target(
        request,
        provider,
        transport,
        call,
        core._secrets_of(provider),
        deployment.limiter_provider if deployment is not None else request.provider,
        deployment,
    )


async def _cache_lookup(
    core: BaseClient,
    cache: ResponseCache | None,
    request: ChatRequest,
    provider: Provider | None,
) -> tuple[str | None, ChatResponse | None]:
    """The cache key and the cached answer, if any. A routed request (``provider`` is
    ``None``) is keyed by its route and request, whichever deployment answered."""
    if cache is None:
        return None, None
    from chatcore._cache import cache_key

    try:
        if provider is None:
            key = cache_key(request, base_url=f"route:{request.model}", plugin_version="")
        else:
            key = cache_key(
                request, base_url=provider.base_url, plugin_version=provider.config.spec.version
            )
    except TypeError:  # a parameter that is not JSON: not cacheable
        return None, None
    try:
        return key, await Component(cache, "get", (key,))
    except Exception as exc:  # a broken backend is a miss, never a failed request
        core._log_cache_error("get", exc)
        return key, None


async def _cache_store(
    core: BaseClient,
    cache: ResponseCache | None,
    key: str | None,
    response: ChatResponse,
    ttl: float | None,
) -> None:
    if cache is None or key is None:
        return
    try:
        await Component(cache, "set", (key, response, ttl))
    except Exception as exc:
        core._log_cache_error("set", exc)


async def _attempt(
    core: BaseClient,
    target: Target,
    number: int,
    deadline: float | None,
    estimate: int,
    send: Effect[Any],
    parse: Callable[[Any], T] | None = None,
    ticket: Any = None,
) -> tuple[Any, T, float]:
    """One attempt's limiter grant (unless a route took ``ticket`` already), ``send`` and
    ``parse`` of what came back; a failure (a bad answer or a cancellation too) settles
    the grant, teaches the limiter (429s, rate-limit headers) and records the attempt
    before it is raised. Returns ``(ticket, result, started)``."""
    limiter = core.rate_limiter
    request = target.request
    if ticket is None:
        max_wait = None if deadline is None else max(0.0, deadline - time.monotonic())
        ticket = await Component(
            limiter,
            "acquire",
            (target.limiter_key, request.model, estimate),
            {"max_wait": max_wait},
        )
    started = time.perf_counter()
    try:
        answer = await send
        return ticket, (parse(answer) if parse is not None else answer), started
    except APIError as exc:
        await Component(limiter, "reconcile", (ticket, None))
        headers = target.provider.rate_limit_headers(exc.headers) if exc.headers else exc.headers
        await Component(limiter, "observe", (target.limiter_key, request.model, headers, exc))
        core._record_attempt(request, number, started, exc, target.deployment)
        raise
    except BaseException as exc:
        await Component(limiter, "reconcile", (ticket, None))
        core._record_attempt(request, number, started, exc, target.deployment)
        raise


async def _retrying(
    core: BaseClient,
    where: tuple[str, str],
    policy: RetryPolicy,
    attempt: Callable[[int], Coroutine[Any, Any, T]],
    plan: RoutePlan | None = None,
) -> tuple[T, int]:
    """Run ``attempt(number)`` until it succeeds or the policy (and, through a route,
    the route's plan) says stop; a final failure is raised with ``.attempts`` set. The
    only retry loop there is: a route moves to another deployment inside it."""
    started = policy.clock()
    number = 0
    while True:
        number += 1
        try:
            return await attempt(number), number
        except APIError as exc:
            exc.attempts = number
            if plan is None:
                delay = policy.retry_delay(number, exc, started)
            else:
                delay = await plan.after_failure(exc, number, started)
            if delay is None:
                raise
            core._on_retry(where, policy, number, exc, delay)
        if delay > 0:
            await Sleep(delay, policy.sleep)


async def _next_target(fixed: Target | None, plan: RoutePlan | None) -> tuple[Target, Any]:
    """Where the next attempt goes, and its limiter ticket when a route took one."""
    if plan is not None:
        return await plan.choose()
    assert fixed is not None
    return fixed, None


def _fixed_or_plan(
    core: BaseClient,
    request: ChatRequest,
    provider: Provider | Route,
    policy: RetryPolicy,
    estimate: int,
    stream: bool,
) -> tuple[Target | None, RoutePlan | None]:
    if isinstance(provider, Route):
        plan = _ROUTE_PLAN or _route_plan_class()
        return None, plan(core, provider, request, policy, estimate, stream=stream)
    return make_target(core, request, provider, stream), None


_ROUTE_PLAN: Any = None


def _route_plan_class() -> Any:
    """:class:`chatcore._routed.RoutePlan`, imported on the first routed call (it imports
    this module)."""
    global _ROUTE_PLAN
    from chatcore._routed import RoutePlan

    _ROUTE_PLAN = RoutePlan
    return RoutePlan


def _start_trace(
    core: BaseClient, request: ChatRequest, provider: Provider | Route
) -> CallTrace | None:
    """The call's trace when the client has tracers and one of them follows the call (a
    routed call's: no base URL yet, every deployment's secrets)."""
    tracing = core._tracing
    if tracing is None:
        return None
    if isinstance(provider, Route):
        return tracing.start(request, "", core._route_secrets(provider))
    return tracing.start(request, provider.base_url, core._secrets_of(provider))


async def chat_pipeline(
    core: BaseClient,
    request: ChatRequest,
    provider: Provider | Route,
    policy: RetryPolicy,
    cache: ResponseCache | None = None,
    ttl: float | None = None,
    *,
    route: str | None = None,
    budget_key: str | None = None,
) -> ChatResponse:
    """budget -> cache -> rate limit -> retry(send) -> record, for one validated request:
    the call's worst case is reserved in every budget that applies (refused with
    ``BudgetExceededError`` before anything is sent), and reconciled with its cost. To
    ``provider``, or through a route: each attempt to the deployment it picks."""
    if core.budgets is None and core._tracing is None:  # the usual call: straight in
        return await _chat(core, request, provider, policy, cache, ttl, None)
    booking = await _reserve_budget(core, request, provider, route, budget_key)
    if booking is None:
        return await _chat_pipeline(core, request, provider, policy, cache, ttl)
    try:
        response = await _chat_pipeline(core, request, provider, policy, cache, ttl)
    except BaseException as exc:
        await _settle_budget(core, booking, exc, None)
        raise
    await _settle_budget(core, booking, None, response.cost)
    return response


async def _reserve_budget(
    core: BaseClient,
    request: ChatRequest,
    provider: Provider | Route,
    route: str | None,
    budget_key: str | None,
) -> Any:
    """Reserve the call's worst case in its budgets (``None``: no budget applies). A
    routed call counts against its route's budgets and reserves the worst case of the
    dearest model it may reach (its deployments and fallbacks)."""
    budgets = core.budgets
    if budgets is None:
        return None
    routed = provider if isinstance(provider, Route) else None
    if routed is not None:
        route = routed.name
    charges = budgets.charges_of(request, route, budget_key)
    if not charges:
        return None
    prompt = estimate_prompt_tokens(request)
    cap = budgets.output_cap(request)
    if routed is None:
        worst = core.pricing.worst_case_nanos(request, prompt, cap)
    else:
        worst = max(
            core.pricing.worst_case_nanos(copy_fields(request, provider=p, model=m), prompt, cap)
            for p, m in _reachable(core, routed)
        )
    if budgets.in_process:  # never blocks: no effect needed under either driver
        return budgets.store.reserve(charges, worst)
    return await Component(budgets.store, "reserve", (charges, worst))


async def _settle_budget(
    core: BaseClient, booking: Any, error: BaseException | None, cost: Any
) -> None:
    """Replace a reservation by what the call is charged (a store failure is logged)."""
    assert core.budgets is not None
    try:
        budgets = core.budgets
        actual = budgets.settle_amount(error, booking.amount, cost)
        if budgets.in_process:
            budgets.store.settle(booking, actual)
        else:
            await Component(budgets.store, "settle", (booking, actual))
    except Exception as exc:  # bookkeeping never fails a call that already happened
        logger.warning("budget settle failed: {error}", error=f"{type(exc).__name__}: {exc}")


def _reachable(core: BaseClient, route: Route) -> set[tuple[str, str]]:
    """Every ``(provider, model)`` a call through ``route`` may be sent to."""
    found = {(d.provider, d.model) for d in route.deployments}
    for target in (
        *route.fallbacks,
        *route.context_window_fallbacks,
        *route.content_policy_fallbacks,
    ):
        kind, _, rest = target.partition(":")
        other = core.routes.get(rest) if kind == "route" else None
        if other is not None:
            found.update((d.provider, d.model) for d in other.deployments)
        elif kind != "route":
            found.add((kind, rest))
    return found


def _cost_of(core: BaseClient, request: ChatRequest, response: ChatResponse) -> Any:
    """What ``response`` cost (``None`` when unknown)."""
    try:
        return core.pricing.cost(request, response)
    except Exception:  # odd usage numbers: unknown, never a failed call
        return None


def _priced(core: BaseClient, request: ChatRequest, response: ChatResponse) -> ChatResponse:
    """``response`` with its ``cost`` (``None`` when unknown)."""
    cost = _cost_of(core, request, response)
    return _updated(response, cost=cost) if cost is not None else response


def _cached_cost(core: BaseClient, request: ChatRequest, hit: ChatResponse) -> dict[str, Any]:
    """The cost fields of an answer from chatcore's cache: nothing spent, and what the
    call would have cost (priced now, else what the stored answer cost)."""
    from chatcore._cost import ZERO

    saved = _cost_of(core, request, hit)
    return {"cost": ZERO, "saved_cost": hit.cost if saved is None else saved}


async def _chat_pipeline(
    core: BaseClient,
    request: ChatRequest,
    provider: Provider | Route,
    policy: RetryPolicy,
    cache: ResponseCache | None = None,
    ttl: float | None = None,
) -> ChatResponse:
    """cache -> rate limit -> retry(send) -> record, for one validated request (to
    ``provider``, or through a route: each attempt to the deployment it picks; traced when
    the client has tracers)."""
    trace = _start_trace(core, request, provider)
    if trace is None:
        return await _chat(core, request, provider, policy, cache, ttl, None)
    return await trace.around(_chat(core, request, provider, policy, cache, ttl, trace))


async def _chat(
    core: BaseClient,
    request: ChatRequest,
    provider: Provider | Route,
    policy: RetryPolicy,
    cache: ResponseCache | None,
    ttl: float | None,
    trace: CallTrace | None,
) -> ChatResponse:
    started = time.perf_counter()
    direct = None if isinstance(provider, Route) else provider
    key, hit = await _cache_lookup(core, cache, request, direct)
    if hit is not None:
        hit = _updated(
            hit,
            provider=request.provider,
            cached=True,
            attempts=0,
            latency=time.perf_counter() - started,
            deployment=None,
            deployments=(),
            **_cached_cost(core, request, hit),
        )
        core._record(request, started, response=hit, attempts=0)
        return hit
    deadline = _deadline(policy)
    limiter = core.rate_limiter
    estimate = estimate_tokens(request, limiter)
    fixed, plan = _fixed_or_plan(core, request, provider, policy, estimate, False)
    clean: list[bool] = []

    async def attempt(number: int) -> tuple[ChatResponse, Target]:
        target, ticket = await _next_target(fixed, plan)
        call = target.call
        if trace is not None and call is not None:
            call = trace.outgoing(call)
        send: Effect[Any]
        if call is not None:
            send = Send(target.transport, call, target.request.model, deadline)
        else:
            send = Legacy(lambda: target.provider.chat(target.request), deadline)

        def parse(answer: Any) -> ChatResponse:
            if call is None:  # a 0.1 provider parsed its own answer
                return cast(ChatResponse, answer)
            clean.clear()
            raw = answer.raw
            if raw is not None and not may_hold_secret(raw, answer.headers, target.secrets):
                clean.append(True)  # nothing in its bytes to mask: skip the walk
            return target.provider.parse_chat(target.request, answer)

        try:
            ticket, response, attempt_started = await _attempt(
                core, target, number, deadline, estimate, send, parse, ticket
            )
        finally:
            if plan is not None and (freed := plan.release(target)) is not None:
                await freed
        usage = response.usage
        await Component(
            limiter, "reconcile", (ticket, usage.total_tokens if usage is not None else estimate)
        )
        headers = response.headers
        if headers:
            headers = target.provider.rate_limit_headers(headers)
        await Component(limiter, "observe", (target.limiter_key, target.request.model, headers))
        core._record_attempt(target.request, number, attempt_started, None, target.deployment)
        if plan is not None:
            plan.succeeded(target, time.perf_counter() - attempt_started)
        return response, target

    name, model = request.provider, request.model
    if logging_on():
        logger.opt(lazy=True).debug(
            "chat {provider}:{model} request body: {body}",
            provider=lambda: name,
            model=lambda: model,
            body=lambda: request.to_openai_dict(),
        )
    run = attempt if trace is None else trace.attempts(attempt)
    try:
        (response, target), attempts = await _retrying(core, (name, model), policy, run, plan)
    except BaseException as exc:
        _failed(core, request, started, exc, fixed, plan)
        raise
    latency = time.perf_counter() - started
    # what came from the wire (headers, ids, text, raw fields) shows none of the secrets
    if not clean:
        response = mask_secrets(response, target.secrets)
    sent = target.request
    if plan is None:
        response = _updated(response, provider=name, latency=latency, attempts=attempts)
    else:
        response = _updated(
            response,
            provider=sent.provider,
            latency=latency,
            attempts=attempts,
            deployment=plan.tried[-1],
            deployments=tuple(plan.tried),
        )
    response = _priced(core, sent, response)
    if logging_on():
        logger.info(
            "chat {provider}:{model} ok in {latency_ms:.1f} ms",
            provider=sent.provider,
            model=sent.model,
            latency_ms=latency * 1000,
            attempts=attempts,
            request_id=response.request_id,
            status=200,
            deployment=response.deployment,
            cost=response.cost,
        )
    await _cache_store(core, cache, key, response, ttl)
    core._record(sent, started, response=response, attempts=attempts, deployment=target.deployment)
    return response


def _failed(
    core: BaseClient,
    request: ChatRequest,
    started: float,
    exc: BaseException,
    fixed: Target | None,
    plan: RoutePlan | None,
    what: str = "chat",
) -> None:
    """A call failed for good: mask every secret it could hold, record and log it."""
    deployment = None
    if plan is not None:
        plan.scrub(exc)
        deployment = plan.served
        if deployment is not None:
            request = plan.targets[deployment.key].request
        if isinstance(exc, APIError) and plan.tried:
            exc.deployments = tuple(plan.tried)
    elif fixed is not None:
        scrub_exception(exc, fixed.secrets)
    attempts = getattr(exc, "attempts", 1)
    core._record(request, started, error=exc, attempts=attempts, deployment=deployment)
    logger.warning(
        what + " {provider}:{model} failed: {error}",
        provider=request.provider,
        model=request.model,
        error=f"{type(exc).__name__}: {exc}",
        attempts=attempts,
        request_id=getattr(exc, "request_id", None),
        status=getattr(exc, "status_code", None),
        deployment=deployment.key if deployment is not None else None,
    )


@attrs.define
class StreamContext:
    """What a stream's end needs to settle its call: the last attempt's grant, where to
    cache the complete answer, and what to record."""

    request: ChatRequest
    started: float
    estimate: int = 0
    attempts: int = 0
    ticket: Any = None
    cache: ResponseCache | None = None
    key: str | None = None
    ttl: float | None = None
    #: The first chunk (``None``: the stream ended before any) and the rest of the chunks
    #: (a sync or an async iterator, as the driver opened it).
    first: ChatChunk | None = None
    chunks: Any = None
    #: A cache hit replayed as a stream.
    replay: ChatResponse | None = None
    #: Where the stream was opened (for a route: the deployment it picked).
    target: Target | None = None
    plan: RoutePlan | None = None
    #: The call's trace, ended when the stream ends (``None``: not traced).
    trace: CallTrace | None = None

    @property
    def provider(self) -> Provider | None:
        """The provider that serves the stream."""
        return self.target.provider if self.target is not None else None

    @property
    def deployments(self) -> tuple[str, ...]:
        """Through a route: the deployment of each attempt (the last one serves)."""
        return tuple(self.plan.tried) if self.plan is not None else ()

    #: The call's budget reservation (settled when the stream ends).
    booking: Any = None


async def stream_pipeline(
    core: BaseClient,
    request: ChatRequest,
    provider: Provider | Route,
    policy: RetryPolicy,
    cache: ResponseCache | None = None,
    ttl: float | None = None,
    *,
    route: str | None = None,
    budget_key: str | None = None,
) -> StreamContext:
    """budget -> cache -> rate limit -> retry(open until the first chunk): the stream's
    context, from which the client builds its (sync or async) stream object. Through a
    route, a stream moves to another deployment only before its first chunk. The budget
    reservation is settled when the stream ends (with its cost when it completes)."""
    if core.budgets is None and core._tracing is None:  # the usual call: straight in
        return await _open_stream(core, request, provider, policy, cache, ttl, None)
    booking = await _reserve_budget(core, request, provider, route, budget_key)
    if booking is None:
        return await _traced_stream(core, request, provider, policy, cache, ttl)
    try:
        context = await _traced_stream(core, request, provider, policy, cache, ttl)
    except BaseException as exc:
        await _settle_budget(core, booking, exc, None)
        raise
    if context.replay is not None:
        await _settle_budget(core, booking, None, context.replay.cost)
    else:
        context.booking = booking
    return context


async def _traced_stream(
    core: BaseClient,
    request: ChatRequest,
    provider: Provider | Route,
    policy: RetryPolicy,
    cache: ResponseCache | None = None,
    ttl: float | None = None,
) -> StreamContext:
    """The stream opened with the call's trace current (when the client has tracers); a
    traced stream's trace ends with the stream (``stream_completed``/``_failed``/
    ``_abandoned``)."""
    trace = _start_trace(core, request, provider)
    if trace is None:
        return await _open_stream(core, request, provider, policy, cache, ttl, None)
    work = _open_stream(core, request, provider, policy, cache, ttl, trace)
    context = await trace.around(work, end=False)
    if context.replay is not None:
        trace.end(context.replay, None)
    else:
        context.trace = trace
    return context


async def _open_stream(
    core: BaseClient,
    request: ChatRequest,
    provider: Provider | Route,
    policy: RetryPolicy,
    cache: ResponseCache | None,
    ttl: float | None,
    trace: CallTrace | None,
) -> StreamContext:
    """cache -> rate limit -> retry(open until the first chunk)."""
    started = time.perf_counter()
    direct = None if isinstance(provider, Route) else provider
    key, hit = await _cache_lookup(core, cache, request, direct)
    if hit is not None:
        replay = attrs.evolve(
            hit,
            provider=request.provider,
            cached=True,
            deployment=None,
            deployments=(),
            **_cached_cost(core, request, hit),
        )
        core._record(request, started, response=replay, attempts=0)
        return StreamContext(request, started, replay=replay)
    deadline = _deadline(policy)
    limiter = core.rate_limiter
    estimate = estimate_tokens(request, limiter)
    context = StreamContext(request, started, estimate, cache=cache, key=key, ttl=ttl)
    fixed, plan = _fixed_or_plan(core, request, provider, policy, estimate, True)
    context.plan = plan

    async def attempt(number: int) -> tuple[ChatChunk | None, Any]:
        target, ticket = await _next_target(fixed, plan)
        opened: Effect[tuple[ChatChunk | None, Any]]
        sent = target.request
        call = target.call
        if trace is not None and call is not None:
            call = trace.outgoing(call)
        if call is not None:
            opened = OpenStream(
                target.transport,
                call,
                sent.model,
                lambda head: target.provider.stream_decoder(sent, head),
                deadline,
            )
        else:
            opened = LegacyStream(target.provider, sent, deadline)
        try:
            done: tuple[Any, tuple[ChatChunk | None, Any], float] = await _attempt(
                core, target, number, deadline, estimate, opened, None, ticket
            )
        except BaseException:
            if plan is not None and (freed := plan.release(target)) is not None:
                await freed
            raise
        ticket, (first, chunks), attempt_started = done
        if first is not None and first.headers:
            headers = target.provider.rate_limit_headers(first.headers)
            await Component(limiter, "observe", (target.limiter_key, sent.model, headers))
        core._record_attempt(sent, number, attempt_started, None, target.deployment)
        if plan is not None:
            plan.succeeded(target, time.perf_counter() - attempt_started)
        context.ticket = ticket
        context.target = target
        context.request = sent
        return first, chunks

    run = attempt if trace is None else trace.attempts(attempt, stream=True)
    try:
        (context.first, context.chunks), context.attempts = await _retrying(
            core, (request.provider, request.model), policy, run, plan
        )
    except BaseException as exc:
        _failed(core, request, started, exc, fixed, plan, "stream")
        raise
    return context


async def _stream_ended(core: BaseClient, context: StreamContext, used: int | None) -> None:
    """Settle the grant and free the deployment of a stream that ended."""
    await Component(core.rate_limiter, "reconcile", (context.ticket, used))
    if context.plan is not None and context.target is not None:
        freed = context.plan.release(context.target)
        if freed is not None:
            await freed


async def stream_completed(core: BaseClient, context: StreamContext, stream: Any) -> None:
    """A stream ran to its end: settle the grant with its usage, cache it, record it."""
    response = stream.response
    if response is not None:
        response = stream.response = _priced(core, context.request, response)
    if context.booking is not None:
        await _settle_budget(core, context.booking, None, getattr(response, "cost", None))
    usage = response.usage if response is not None else None
    await _stream_ended(
        core, context, usage.total_tokens if usage is not None else context.estimate
    )
    if response is not None and response.choices:
        await _cache_store(core, context.cache, context.key, response, context.ttl)
    request = context.request
    if logging_on():
        logger.info(
            "stream {provider}:{model} ok in {latency_ms:.1f} ms ({chunks} chunks)",
            provider=request.provider,
            model=request.model,
            latency_ms=(time.perf_counter() - context.started) * 1000,
            chunks=stream.chunk_count,
            attempts=context.attempts,
            request_id=stream.request_id,
            time_to_first_token=stream.time_to_first_token,
            cost=getattr(response, "cost", None),
            deployment=stream.deployment,
        )
    core._record(
        request,
        context.started,
        response=response,
        attempts=context.attempts,
        time_to_first_token=stream.time_to_first_token,
        deployment=context.target.deployment if context.target is not None else None,
    )
    if context.trace is not None:
        context.trace.end(response, None)


async def stream_failed(
    core: BaseClient, context: StreamContext, stream: Any, error: BaseException
) -> None:
    """A stream broke after its first chunk: charge the estimate, record the failure."""
    await _stream_ended(core, context, context.estimate)
    if context.booking is not None:
        await _settle_budget(core, context.booking, error, None)
    request = context.request
    deployment = context.target.deployment if context.target is not None else None
    if isinstance(error, APIError) and context.plan is not None:
        error.deployments = context.deployments
    core._record(
        request, context.started, error=error, attempts=context.attempts, deployment=deployment
    )
    logger.warning(
        "stream {provider}:{model} failed after {chunks} chunks: {error}",
        provider=request.provider,
        model=request.model,
        chunks=stream.chunk_count,
        error=f"{type(error).__name__}: {error}",
        request_id=stream.request_id,
    )
    if context.trace is not None:
        context.trace.end(None, error)


async def stream_abandoned(core: BaseClient, context: StreamContext) -> None:
    """Closed by the caller before the end: charge the estimate, record nothing."""
    await _stream_ended(core, context, context.estimate)
    if context.booking is not None:  # the provider may have billed what it generated
        await _settle_budget(core, context.booking, _UNFINISHED, None)
    if context.trace is not None:
        context.trace.end(None, None)


async def models_pipeline(
    core: BaseClient, provider: Provider, policy: RetryPolicy
) -> list[ModelInfo]:
    """List a provider's models: one request through the retry policy, secrets masked."""
    deadline = _deadline(policy)
    transport = core._transport_of(provider) if provider.translates else None
    secrets = core._secrets_of(provider)

    async def attempt(_number: int) -> list[ModelInfo]:
        if transport is None:
            found: list[ModelInfo] = await Legacy(provider.list_models, deadline)
            return found
        result = await Send(transport, provider.prepare_models(), None, deadline)
        return provider.parse_models(result)

    try:
        result, _ = await _retrying(core, (provider.name, ""), policy, attempt)
    except Exception as exc:
        scrub_exception(exc, secrets)
        raise
    masked: list[ModelInfo] = mask_secrets(result, secrets)
    return masked
