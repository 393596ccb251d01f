"""Budgets shared through Redis (chatcore_redis.RedisBudgetStore): atomic reservations in
Lua across processes (two processes never spend past one budget together, and a refused
call sends nothing), the sync and async paths on the same keys, Redis killed mid-run under
both failure policies, and the hook switch."""

from __future__ import annotations

import asyncio
import multiprocessing
import queue
import uuid
from decimal import Decimal
from typing import Any

import pytest
from chatcore_redis_testing import budget_worker

import chatcore
from chatcore._budget import Budget, Budgets, from_nanos, to_nanos
from chatcore.exceptions import BudgetExceededError
from chatcore.testing.server import Reply
from chatcore_redis import RedisBudgetStore, chatcore_budget_store

PRICES = {"wire": {"input": 2, "output": 8}}


def test_two_processes_never_spend_past_one_budget(
    redis_url: str, prefix: str, standin: Any
) -> None:
    # each call's worst case is about $0.00035 and its real cost less; a limit of 30
    # worst cases cannot hold the 2 x 40 calls
    limit = "0.0105"
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(2)
    results = ctx.Queue()
    procs = [
        ctx.Process(
            target=budget_worker,
            args=(redis_url, prefix, standin.base_url, limit, 40, barrier, results),
        )
        for _ in range(2)
    ]
    for proc in procs:
        proc.start()
    outcomes = []
    for _ in procs:
        try:
            outcomes.append(results.get(timeout=120))
        except queue.Empty:  # pragma: no cover - a worker died
            pytest.fail(f"a worker gave no result (exit codes {[p.exitcode for p in procs]})")
    for proc in procs:
        proc.join(timeout=30)
        assert proc.exitcode == 0
    costs = [Decimal(c) for done, _, _ in outcomes for c in done]
    refused = sum(n for _, n, _ in outcomes)
    assert [e for _, _, errs in outcomes for e in errs] == []
    assert len(costs) + refused == 80
    assert refused > 0 and all(done for done, _, _ in outcomes)
    assert len(standin.requests) == len(costs)  # a refused call sent nothing
    budgets = Budgets(
        [Budget("client", Decimal(limit))], RedisBudgetStore(redis_url, prefix=prefix)
    )
    (state,) = budgets.state()
    assert state.reserved == 0
    assert state.spent == sum(costs) <= Decimal(limit)


def test_sync_and_async_reserve_the_same_keys(redis_url: str, prefix: str) -> None:
    store = RedisBudgetStore(redis_url, prefix=prefix)
    budgets = Budgets([Budget("p:m", Decimal("0.01"), "hour")], store)
    charges = budgets.charges("p", "m")
    held = store.reserve(charges, to_nanos(Decimal("0.006")))

    async def main() -> None:
        with pytest.raises(BudgetExceededError) as caught:
            await store.areserve(charges, to_nanos(Decimal("0.005")))
        assert caught.value.scope == "p:m"
        assert caught.value.reserved == Decimal("0.006")
        await store.asettle(held, to_nanos(Decimal("0.001")))
        await store.areserve(charges, to_nanos(Decimal("0.009")))
        usage = await store.ausage(charges)
        assert usage[charges[0].key] == (to_nanos(Decimal("0.001")), to_nanos(Decimal("0.009")))
        await store.aclose()

    asyncio.run(main())
    store.settle(held, 123)  # settled already: once only
    (state,) = budgets.state()
    assert (state.spent, state.reserved) == (Decimal("0.001"), Decimal("0.009"))
    store.close()


def _client(make_client: Any, store: RedisBudgetStore, limit: str = "1") -> chatcore.Client:
    return make_client(  # type: ignore[no-any-return]
        budgets={"client": {"usd": limit}}, prices=PRICES, budget_store=store, max_retries=0
    )


def test_fail_open_kill_mid_run_then_recover(own_redis: Any, make_client: Any, standin: Any):
    server = own_redis()
    now = [0.0]
    store = RedisBudgetStore(server.url, prefix=f"t-{uuid.uuid4().hex[:8]}:", clock=lambda: now[0])
    client = _client(make_client, store)
    client.chat("wire:m", "hi", max_tokens=10)
    assert store.available and store.fallback_reservations == 0
    server.stop()  # killed mid-run
    for _ in range(3):
        client.chat("wire:m", "hi", max_tokens=10)  # served by this process's budget
    assert store.fallback_reservations == 3 and not store.available
    assert len(standin.requests) == 4
    server.start()  # back on the same port (empty: no persistence)
    now[0] += 2  # past reconnect_interval
    client.chat("wire:m", "hi", max_tokens=10)
    assert store.available and store.fallback_reservations == 3
    (state,) = client.spend()
    assert state.reserved == 0 and state.spent > 0
    store.close()


def test_fail_closed_kill_mid_run_refuses_and_sends_nothing(
    own_redis: Any, make_client: Any, standin: Any
):
    server = own_redis(password="s3cret-Passw0rd-xyz")
    now = [0.0]
    store = RedisBudgetStore(
        server.url,
        prefix=f"t-{uuid.uuid4().hex[:8]}:",
        failure_policy="fail_closed",
        clock=lambda: now[0],
    )
    client = _client(make_client, store)
    client.chat("wire:m", "hi", max_tokens=10)
    server.stop()
    with pytest.raises(BudgetExceededError) as caught:
        client.chat("wire:m", "hi", max_tokens=10)
    text = str(caught.value)
    assert "fail_closed" in text and "nothing was sent" in text
    assert "s3cret" not in text and "***" in text
    assert caught.value.scope == "client"
    assert len(standin.requests) == 1
    server.start()
    now[0] += 2
    client.chat("wire:m", "hi", max_tokens=10)
    assert len(standin.requests) == 2
    store.close()


def test_chatcore_budget_store_hook_switch(monkeypatch: Any, redis_url: str) -> None:
    settings = chatcore.Settings()
    monkeypatch.delenv("CHATCORE_REDIS_BUDGETS", raising=False)
    assert chatcore_budget_store(settings) is None
    monkeypatch.setenv("CHATCORE_REDIS_BUDGETS", "1")
    monkeypatch.setenv("CHATCORE_REDIS_URL", redis_url)
    store = chatcore_budget_store(settings)
    assert isinstance(store, RedisBudgetStore)
    assert from_nanos(0) == 0


def test_async_client_reserves_through_redis(redis_url: str, prefix: str, standin: Any) -> None:
    from chatcore_redis_testing import TEST_KEY, WirePlugin

    from chatcore._plugins import PluginHost

    limit = Decimal("0.001")

    class Counting(RedisBudgetStore):
        calls = 0

        async def areserve(self, charges: Any, amount: int) -> Any:
            Counting.calls += 1
            return await super().areserve(charges, amount)

    async def main() -> list[Any]:
        store = Counting(redis_url, prefix=prefix)
        host = PluginHost(load_entry_points=False, plugins=[WirePlugin()], environ={})
        async with chatcore.AsyncClient(
            plugin_host=host,
            providers={"wire": {"api_key": TEST_KEY, "base_url": standin.base_url}},
            environ={},
            budgets={"client": {"usd": str(limit)}},
            prices=PRICES,
            budget_store=store,
        ) as client:
            standin.enqueue(
                *(
                    Reply.chat(
                        "ok", usage={"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10}
                    )
                    for _ in range(40)
                )
            )
            results = await asyncio.gather(
                *(client.chat("wire:m", "hi", max_tokens=20) for _ in range(40)),
                return_exceptions=True,
            )
            states = client.spend()
        await store.aclose()
        return [results, states]

    results, (state,) = asyncio.run(main())
    answered = [r for r in results if isinstance(r, chatcore.ChatResponse)]
    assert all(isinstance(r, (chatcore.ChatResponse, BudgetExceededError)) for r in results)
    assert 0 < len(answered) < 40 and Counting.calls == 40
    assert len(standin.requests) == len(answered)
    assert state.reserved == 0 and state.spent == sum(r.cost for r in answered) <= limit
