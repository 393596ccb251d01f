"""The hooks a chatcore plugin may implement.

Plugin authors write ``from chatcore import hookimpl`` and decorate functions named after
these specs in a module registered under the ``chatcore`` entry-point group::

    [project.entry-points.chatcore]
    myprovider = "chatcore_myprovider"

Every hook name starts with ``chatcore_``; a misspelled hook is reported as a plugin error.
The core registers its own defaults with ``trylast=True``, so any plugin overrides them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from chatcore.provider import ProviderSpec

PROJECT_NAME = "chatcore"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)

__all__ = [
    "PROJECT_NAME",
    "chatcore_budget_store",
    "chatcore_cache",
    "chatcore_metrics_sinks",
    "chatcore_pricing",
    "chatcore_providers",
    "chatcore_rate_limiter",
    "chatcore_retry_policy",
    "chatcore_tracers",
    "hookimpl",
    "hookspec",
]


@hookspec
def chatcore_providers() -> Iterable[ProviderSpec]:
    """Return the providers this plugin offers, as :class:`chatcore.provider.ProviderSpec`
    records (name, factory, options with their environment variables, capabilities).

    Results of all plugins are collected; two plugins offering the same provider name is a
    plugin error naming both (the first one loaded keeps the name).

    Example::

        @hookimpl
        def chatcore_providers():
            return [ProviderSpec(name="echo", factory=EchoProvider, options={...})]
    """
    raise NotImplementedError


@hookspec(firstresult=True)
def chatcore_retry_policy(settings: Any) -> Any:
    """Return the retry policy object for a client built with ``settings``.

    Stops at first non-None result. The core's default is registered ``trylast``.

    Example::

        @hookimpl
        def chatcore_retry_policy(settings):
            return RetryPolicy(max_retries=5)
    """
    raise NotImplementedError


@hookspec(firstresult=True)
def chatcore_rate_limiter(settings: Any) -> Any:
    """Return the rate limiter for a client built with ``settings``.

    Stops at first non-None result. The core's default is registered ``trylast``.

    A limiter learns holds from answers (429s, ``x-ratelimit-*``); it should cap them by
    ``settings.max_server_hold`` and never raise from ``observe`` for what an answer says
    (``chatcore._limits.rate_limit_signals`` and ``throttle_delay`` do both).

    Example::

        @hookimpl
        def chatcore_rate_limiter(settings):
            return MyRedisLimiter(settings)
    """
    raise NotImplementedError


@hookspec(firstresult=True)
def chatcore_cache(settings: Any) -> Any:
    """Return the response cache for a client built with ``settings``.

    Stops at first non-None result. The core's default is registered ``trylast``.

    Example::

        @hookimpl
        def chatcore_cache(settings):
            return MyRedisCache(settings)
    """
    raise NotImplementedError


@hookspec
def chatcore_metrics_sinks(settings: Any) -> Iterable[Any]:
    """Return metrics sinks (objects with ``record(event)``) for a client built with
    ``settings``. Results of all plugins are collected; each sink is called in its own
    guard, so a failing sink never fails a request.

    Example::

        @hookimpl
        def chatcore_metrics_sinks(settings):
            return [StatsdSink("127.0.0.1", 8125)]
    """
    raise NotImplementedError


@hookspec
def chatcore_tracers(settings: Any) -> Iterable[Any]:
    """Return tracers for a client built with ``settings``: objects whose
    ``start(call)`` is called when a ``chat()`` or ``stream()`` call begins (after
    validation, before the cache) with a :class:`chatcore.TracedCall`, and returns a
    per-call handle or ``None`` (not traced). Results of all plugins are collected.

    The handle's methods, each called in its own guard (a failing tracer never fails a
    request): ``activate()`` (a context manager entered around the call's cache lookup,
    rate limiting, attempts and waits, in the caller's thread or task: make the call's
    span current there), ``headers()`` (extra HTTP headers for the provider call, or
    ``None``), ``attempt_started(number)``, ``attempt_ended(number, error)``,
    ``first_chunk()`` (streams), and ``end(response, error)`` once at the end (both
    ``None``: a stream closed before its end).

    Example::

        @hookimpl
        def chatcore_tracers(settings):
            return [MyTracer()]
    """
    raise NotImplementedError


@hookspec(firstresult=True)
def chatcore_pricing(settings: Any) -> Any:
    """Return the price source for a client built with ``settings``: an object with
    ``price_of(provider, model)`` returning a price (``cost(usage)`` and
    ``worst_case(input_tokens, output_tokens)``, both ``Decimal`` USD) or ``None`` when
    the model's price is unknown (see :mod:`chatcore._cost`).

    Stops at first non-None result. The core's default is registered ``trylast`` and
    returns ``None`` (no prices beyond the user's own ``prices``); ``chatcore-cost``
    answers from the ``genai-prices`` database. The user's ``prices`` always win.

    Example::

        @hookimpl
        def chatcore_pricing(settings):
            return MyPriceTable()
    """
    raise NotImplementedError


@hookspec(firstresult=True)
def chatcore_budget_store(settings: Any) -> Any:
    """Return where budget reservations live for a client built with ``settings``: an
    object with ``reserve(charges, amount)``, ``settle(reservation, actual)`` and
    ``usage(charges)`` (and optionally their ``a``-prefixed coroutine twins), see
    :class:`chatcore._budget.BudgetStore`. Called only when budgets are configured.

    Stops at first non-None result. The core's default is registered ``trylast`` (one
    process's memory); ``chatcore-redis`` shares budgets through Redis.

    Example::

        @hookimpl
        def chatcore_budget_store(settings):
            return MySharedBudgets(settings)
    """
    raise NotImplementedError
