"""Budgets (chatcore._budget) over real sockets: a refused call sends nothing (counted at
the stand-in server), reservations are reconciled with the real cost, every scope
(client, provider, provider:model, route, key) and period, the settlement rules for
failures and streams, and, with hypothesis, that the reconciled spend never passes a
budget under 32 threads and under concurrent asyncio tasks."""

from __future__ import annotations

import asyncio
import calendar
import threading
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import chatcore
from chatcore._budget import (
    ASSUMED_OUTPUT_TOKENS,
    Budget,
    Budgets,
    InMemoryBudgetStore,
    from_nanos,
    parse_budgets,
    to_nanos,
    window_of,
)
from chatcore._estimate import estimate_prompt_tokens
from chatcore._pipeline import chat_pipeline, run_sync
from chatcore._plugins import PluginHost
from chatcore.exceptions import BudgetExceededError, ConfigurationError, ValidationError
from chatcore.testing.server import Reply, StandInServer

from .conftest import TEST_KEY, WirePlugin
from .test_aclient import AsyncPlugin

PRICES = {"wire:m": {"input": 2, "output": 8}, "sse:m": {"input": 2, "output": 8}}


def usage(prompt: int, completion: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def cost_of(prompt: int, completion: int) -> Decimal:
    return (prompt * Decimal(2) + completion * Decimal(8)) / Decimal(1_000_000)


def worst(text: str, cap: int) -> Decimal:
    request = chatcore.ChatRequest(
        provider="wire", model="m", messages=(chatcore.Message("user", text),)
    )
    return (estimate_prompt_tokens(request) * Decimal(2) + cap * Decimal(8)) / Decimal(10**6)


@pytest.fixture
def make_async(server: StandInServer) -> Any:
    def make(**kwargs: Any) -> chatcore.AsyncClient:
        host = PluginHost(load_entry_points=False, plugins=[AsyncPlugin()], environ={})
        options = {"api_key": TEST_KEY, "base_url": server.base_url}
        return chatcore.AsyncClient(
            plugin_host=host, providers={"sse": options}, environ={}, **kwargs
        )

    return make


@pytest.fixture
def budget_client(make_client: Any) -> Any:
    def make(budgets: Any, **kwargs: Any) -> chatcore.Client:
        kwargs.setdefault("prices", PRICES)
        return make_client(budgets=budgets, **kwargs)  # type: ignore[no-any-return]

    return make


# -- refusal sends nothing ------------------------------------------------------------------


def test_refused_call_sends_nothing_and_says_scope_spend_and_limit(budget_client, server):
    client = budget_client({"client": {"usd": "0.001", "period": "day"}})
    with pytest.raises(BudgetExceededError) as caught:
        client.chat("wire:m", "hello", max_tokens=1000)  # worst case > $0.008
    assert server.requests == []
    err = caught.value
    assert err.scope == "client" and err.period == "day"
    assert err.limit == Decimal("0.001") and err.spent == 0 and err.reserved == 0
    assert err.requested == worst("hello", 1000)
    assert "budget 'client' ($0.001 per day) would be exceeded" in str(err)
    assert "nothing was sent" in str(err)
    assert err.resets_at is not None and err.resets_at % 86400 == 0


def test_reservation_is_reconciled_with_the_real_cost(budget_client, server):
    client = budget_client({"client": {"usd": 1, "period": "day"}})
    server.enqueue(Reply.chat("hi", usage=usage(120, 30)))
    response = client.chat("wire:m", "hello", max_tokens=500)
    assert response.cost == cost_of(120, 30)
    (state,) = client.spend()
    assert state.spent == cost_of(120, 30)
    assert state.reserved == 0
    assert state.remaining == Decimal(1) - cost_of(120, 30)
    assert state.to_dict()["spent_usd"] == str(cost_of(120, 30))


def test_spend_accumulates_until_the_next_call_does_not_fit(budget_client, server):
    cap = 100
    limit = worst("hi", cap) * 3  # three calls at worst case; real ones are cheaper
    client = budget_client({"wire:m": {"usd": str(limit), "period": "hour"}})
    sent = 0
    for _ in range(20):
        server.enqueue(Reply.chat("ok", usage=usage(5, cap)))
        try:
            client.chat("wire:m", "hi", max_tokens=cap)
        except BudgetExceededError:
            break
        sent += 1
    assert sent >= 3
    assert len(server.requests) == sent
    (state,) = client.spend()
    assert state.spent == sent * cost_of(5, cap) <= limit


def test_unknown_price_under_a_budget_is_a_configuration_error(budget_client, server):
    client = budget_client({"client": {"usd": 5}}, prices={})
    with pytest.raises(ConfigurationError, match=r"wire:m but its price is unknown"):
        client.chat("wire:m", "hello")
    assert server.requests == []


def test_no_cap_reserves_the_documented_assumption(budget_client, server):
    limit = worst("hi", ASSUMED_OUTPUT_TOKENS)
    client = budget_client({"client": {"usd": str(limit - Decimal("0.000001"))}})
    with pytest.raises(BudgetExceededError) as caught:
        client.chat("wire:m", "hi")
    assert caught.value.requested == limit
    server.enqueue(Reply.chat("ok", usage=usage(3, 3)))
    client.chat("wire:m", "hi", max_completion_tokens=10)  # a cap lowers the reservation
    assert len(server.requests) == 1


# -- scopes ----------------------------------------------------------------------------------


def test_provider_and_model_scopes_apply_only_to_their_calls(budget_client, server):
    client = budget_client(
        {"wire:other": {"usd": "0.000001"}, "elsewhere": {"usd": "0.000001"}},
        prices={"wire": {"input": 2, "output": 8}},
    )
    server.enqueue(Reply.chat("ok", usage=usage(3, 3)))
    client.chat("wire:m", "hi", max_tokens=10)  # neither budget applies
    with pytest.raises(BudgetExceededError) as caught:
        client.chat("wire:other", "hi", max_tokens=10)
    assert caught.value.scope == "wire:other"
    assert len(server.requests) == 1


def test_key_scopes_are_per_key_and_validated(budget_client, server):
    limit = worst("hi", 100) * Decimal("1.5")
    client = budget_client({"key:*": {"usd": str(limit)}, "key:vip": {"usd": 100}})
    for key in ("acme", "globex"):
        server.enqueue(Reply.chat("ok", usage=usage(5, 100)))
        client.chat("wire:m", "hi", max_tokens=100, budget_key=key)
        with pytest.raises(BudgetExceededError) as caught:
            client.chat("wire:m", "hi", max_tokens=100, budget_key=key)
        assert caught.value.scope == f"key:{key}"
    server.enqueue(Reply.chat("ok", usage=usage(5, 100)))
    client.chat("wire:m", "hi", max_tokens=100)  # no key: no key budget applies
    assert len(server.requests) == 3
    states = {s.scope: s for s in client.spend("key:acme")}
    assert states["key:acme"].spent == cost_of(5, 100)
    with pytest.raises(ValidationError, match="budget_key"):
        client.chat("wire:m", "hi", budget_key="")
    with pytest.raises(ValidationError, match="budget_key"):
        client.chat("wire:m", "hi", budget_key=42)
    assert len(server.requests) == 3


def test_route_scope_from_the_route_the_pipeline_carries(budget_client, server):
    client = budget_client({"route:cheap": {"usd": "0.000001"}, "route:*": {"usd": 1}})

    def call(route: str | None) -> Any:
        parts = client._chat_request("wire:m", "hi", {"max_tokens": 10})
        return run_sync(chat_pipeline(client, *parts, route=route))

    with pytest.raises(BudgetExceededError) as caught:
        call("cheap")
    assert caught.value.scope == "route:cheap"
    assert server.requests == []
    server.enqueue(Reply.chat("ok", usage=usage(3, 3)))
    call("fast")  # only route:* applies, as route:fast
    assert [s.scope for s in client.spend("route:fast")] == ["route:fast"]
    assert client.spend("route:fast")[0].spent == cost_of(3, 3)


# -- settlement ------------------------------------------------------------------------------


def test_status_errors_charge_nothing_and_broken_calls_charge_the_reservation(
    budget_client, server
):
    client = budget_client({"client": {"usd": 1}}, max_retries=0)
    server.enqueue(Reply.error(400, "bad"))
    with pytest.raises(chatcore.exceptions.BadRequestError):
        client.chat("wire:m", "hi", max_tokens=10)
    assert client.spend()[0].spent == 0
    server.enqueue(Reply.reset())
    with pytest.raises(chatcore.exceptions.APIConnectionError):
        client.chat("wire:m", "hi", max_tokens=10)
    (state,) = client.spend()
    assert state.spent == from_nanos(to_nanos(worst("hi", 10)))
    assert state.reserved == 0


def test_a_cache_hit_costs_nothing_and_reports_what_it_saved(budget_client, server):
    client = budget_client({"client": {"usd": 1}}, cache=True)
    server.enqueue(Reply.chat("ok", usage=usage(40, 10)))
    first = client.chat("wire:m", "hi", max_tokens=10)
    hit = client.chat("wire:m", "hi", max_tokens=10)
    assert hit.cached and hit.cost == 0 and hit.saved_cost == first.cost == cost_of(40, 10)
    assert client.spend()[0].spent == cost_of(40, 10)
    assert len(server.requests) == 1


def test_streams_settle_with_their_cost_or_their_reservation(make_async, server):
    async def main() -> None:
        async with make_async(budgets={"client": {"usd": 1}}, prices=PRICES) as client:
            server.enqueue(Reply.chat_stream("one two three", usage=usage(7, 3)))
            async with client.stream("sse:m", "hi", max_tokens=20) as stream:
                async for _ in stream:
                    pass
            assert stream.response is not None
            assert stream.response.cost == cost_of(7, 3)
            assert client.spend()[0].spent == cost_of(7, 3)
            server.enqueue(Reply.chat_stream("one two three four five", usage=usage(7, 5)))
            stream = await client.stream("sse:m", "hi", max_tokens=20)
            await stream.aclose()  # abandoned: the provider may have billed it all
            (state,) = client.spend()
            assert state.reserved == 0
            assert state.spent == cost_of(7, 3) + from_nanos(to_nanos(worst("hi", 20)))

    asyncio.run(main())


# -- periods and the store -------------------------------------------------------------------


def test_windows_are_utc_calendar_periods():
    t = calendar.timegm((2026, 12, 31, 23, 59, 30))
    assert window_of("minute", t) == (t - 30, t + 30)
    assert window_of("hour", t) == (t - 59 * 60 - 30, t + 30)
    assert window_of("day", t) == (t - 86400 + 30, t + 30)
    start, end = window_of("month", t)
    assert start == calendar.timegm((2026, 12, 1, 0, 0, 0))
    assert end == calendar.timegm((2027, 1, 1, 0, 0, 0))
    assert window_of("month", calendar.timegm((2028, 2, 29, 12, 0, 0)))[1] == calendar.timegm(
        (2028, 3, 1, 0, 0, 0)
    )


def test_a_new_period_starts_from_zero_and_late_settles_stay_in_theirs():
    now = [calendar.timegm((2026, 5, 1, 10, 59, 0))]
    budgets = Budgets([Budget("client", Decimal("0.01"), "hour")], clock=lambda: now[0])
    store = budgets.store
    charges = budgets.charges("p", "m")
    held = store.reserve(charges, to_nanos(Decimal("0.006")))
    with pytest.raises(BudgetExceededError):
        store.reserve(budgets.charges("p", "m"), to_nanos(Decimal("0.005")))
    now[0] += 120  # the next hour
    fresh = store.reserve(budgets.charges("p", "m"), to_nanos(Decimal("0.009")))
    store.settle(held, to_nanos(Decimal("0.006")))  # belongs to the hour that ended
    (state,) = budgets.state()
    assert state.reserved == Decimal("0.009") and state.spent == 0
    store.settle(fresh, to_nanos(Decimal("0.002")))
    store.settle(fresh, to_nanos(Decimal("0.002")))  # twice: once only
    assert budgets.state()[0].spent == Decimal("0.002")


def test_all_or_none_across_scopes():
    budgets = Budgets(
        [Budget("client", Decimal(1)), Budget("p:m", Decimal("0.001"))], InMemoryBudgetStore()
    )
    with pytest.raises(BudgetExceededError):
        budgets.store.reserve(budgets.charges("p", "m"), to_nanos(Decimal("0.002")))
    assert all(s.reserved == 0 for s in budgets.state())


def test_budget_configuration_errors_name_the_entry():
    for raw, match in [
        ({"client": {"usd": 0}}, r"budgets\['client'\].usd=0"),
        ({"client": {"usd": "ten"}}, "expected USD > 0"),
        ({"client": {"usd": 1, "period": "week"}}, "period='week': expected one of minute"),
        ({"client": {"usd": 1, "perod": "day"}}, "unknown key"),
        ({"client": 5}, "expected a table"),
        ({"": {"usd": 1}}, "budgets key"),
    ]:
        with pytest.raises(ConfigurationError, match=match):
            parse_budgets(raw)


def test_budgets_and_prices_from_chatcore_toml(tmp_path: Path, server: StandInServer):
    path = tmp_path / "chatcore.toml"
    path.write_text(
        '[budgets.client]\nusd = 0.5\nperiod = "month"\n\n'
        '[prices."wire:m"]\ninput = 2\noutput = 8\n',
        encoding="utf-8",
    )
    host = PluginHost(load_entry_points=False, plugins=[WirePlugin()], environ={})
    with chatcore.Client(
        plugin_host=host,
        providers={"wire": {"api_key": TEST_KEY, "base_url": server.base_url}},
        environ={},
        config_path=path,
    ) as client:
        server.enqueue(Reply.chat("ok", usage=usage(10, 10)))
        assert client.chat("wire:m", "hi", max_tokens=10).cost == cost_of(10, 10)
        (state,) = client.spend()
        assert (state.scope, state.period, state.limit) == ("client", "month", Decimal("0.5"))
    path.write_text("[budgets.client]\nusd = -1\n", encoding="utf-8")
    with pytest.raises(ConfigurationError, match=r"budgets\['client'\].usd=-1"):
        chatcore.Client(plugin_host=host, environ={}, config_path=path)


def test_chatcore_budget_store_hook_supplies_the_store(server):
    made: list[InMemoryBudgetStore] = []

    class Recording(InMemoryBudgetStore):
        def __init__(self) -> None:
            super().__init__()
            self.reserved: list[int] = []

        def reserve(self, charges: Any, amount: int) -> Any:
            self.reserved.append(amount)
            return super().reserve(charges, amount)

    class StorePlugin:
        @chatcore.hookimpl
        def chatcore_budget_store(self, settings: Any) -> Any:
            made.append(Recording())
            return made[-1]

    host = PluginHost(load_entry_points=False, plugins=[WirePlugin(), StorePlugin()], environ={})
    options = {"wire": {"api_key": TEST_KEY, "base_url": server.base_url}}
    with chatcore.Client(plugin_host=host, providers=options, environ={}, prices=PRICES) as c:
        assert made == []  # no budgets: the hook is not asked
    with chatcore.Client(
        plugin_host=host,
        providers=options,
        environ={},
        prices=PRICES,
        budgets={"client": {"usd": 1}},
    ) as client:
        server.enqueue(Reply.chat("ok", usage=usage(1, 1)))
        client.chat("wire:m", "hi", max_tokens=10)
        assert client.budgets is not None and client.budgets.store is made[0]
        assert made[0].reserved == [to_nanos(worst("hi", 10))]
    del c


# -- concurrency: the sum of reconciled costs never exceeds a budget -------------------------

CAP = 50


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    fits=st.integers(min_value=0, max_value=40),
    completions=st.lists(st.integers(min_value=0, max_value=CAP), min_size=32, max_size=32),
)
def test_32_threads_never_spend_past_the_budget(budget_client, server, fits, completions):
    server.clear()
    # a limit between `fits` and `fits + 1` worst cases: how many go through depends on
    # the real costs reconciled while the others are in flight
    limit = worst("hi", CAP) * fits + worst("hi", CAP) / 2
    client = budget_client({"client": {"usd": str(limit)}})
    server.enqueue(*(Reply.chat("ok", usage=usage(4, c), delay=0.002) for c in completions))
    results: list[Any] = [None] * 32
    barrier = threading.Barrier(32)

    def call(i: int) -> None:
        barrier.wait()
        try:
            results[i] = client.chat("wire:m", "hi", max_tokens=CAP)
        except BudgetExceededError as exc:
            results[i] = exc

    threads = [threading.Thread(target=call, args=(i,)) for i in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    answered = [r for r in results if isinstance(r, chatcore.ChatResponse)]
    refused = [r for r in results if isinstance(r, BudgetExceededError)]
    assert len(answered) + len(refused) == 32
    assert len(server.requests) == len(answered)  # a refused call sent nothing
    assert len(answered) >= min(32, fits)  # at least the worst cases that always fit
    (state,) = client.spend()
    assert state.reserved == 0
    assert state.spent == sum(r.cost for r in answered) <= limit


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    fits=st.integers(min_value=0, max_value=40),
    completions=st.lists(st.integers(min_value=0, max_value=CAP), min_size=48, max_size=48),
)
def test_async_tasks_never_spend_past_the_budget(make_async, server, fits, completions):
    server.clear()
    limit = worst("hi", CAP) * fits + worst("hi", CAP) / 2

    async def main() -> tuple[list[Any], Any]:
        async with make_async(budgets={"client": {"usd": str(limit)}}, prices=PRICES) as client:
            server.enqueue(*(Reply.chat("ok", usage=usage(4, c), delay=0.002) for c in completions))
            results = await asyncio.gather(
                *(client.chat("sse:m", "hi", max_tokens=CAP) for _ in completions),
                return_exceptions=True,
            )
            return list(results), client.spend()[0]

    results, state = asyncio.run(main())
    answered = [r for r in results if isinstance(r, chatcore.ChatResponse)]
    refused = [r for r in results if isinstance(r, BudgetExceededError)]
    assert len(answered) + len(refused) == len(completions)
    assert len(server.requests) == len(answered)
    assert state.reserved == 0
    assert state.spent == sum(r.cost for r in answered) <= limit
