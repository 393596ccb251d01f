"""What a call costs (chatcore._cost): typed usage priced part by part (cached input,
cache writes, reasoning at their own rates, nothing counted twice), the user's prices over
the ``chatcore_pricing`` hook's, ``response.cost`` on chats, streams and cache hits over
real sockets, ``None`` when the price is unknown, and spend in the metrics."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import chatcore
from chatcore._cost import Pricing, Rates, parse_prices
from chatcore._plugins import PluginHost
from chatcore.exceptions import ConfigurationError
from chatcore.models import ChatRequest, ChatResponse, Message, Usage
from chatcore.testing.server import Reply

from .conftest import TEST_KEY, WirePlugin

M = Decimal(1_000_000)


def test_rates_price_each_part_of_the_usage_once():
    rates = Rates(
        input=Decimal("3"),
        output=Decimal("15"),
        cached_input=Decimal("0.30"),
        cache_write=Decimal("3.75"),
        reasoning=Decimal("20"),
    )
    usage = Usage(
        prompt_tokens=1000,
        completion_tokens=500,
        cached_tokens=600,
        cache_creation_tokens=300,
        reasoning_tokens=200,
    )
    # 100 plain input, 600 read, 300 written; 300 plain output, 200 reasoning
    expected = (100 * 3 + 600 * Decimal("0.30") + 300 * Decimal("3.75") + 300 * 15 + 200 * 20) / M
    assert rates.cost(usage) == expected == Decimal("0.010105")


def test_unpriced_parts_cost_what_their_whole_costs():
    rates = Rates(input=Decimal("2.5"), output=Decimal("10"))
    usage = Usage(prompt_tokens=100, completion_tokens=40, cached_tokens=60, reasoning_tokens=30)
    assert rates.cost(usage) == (100 * Decimal("2.5") + 40 * 10) / M


def test_worst_case_takes_the_dearest_input_and_output_rate():
    rates = Rates(
        input=Decimal(3), output=Decimal(15), cache_write=Decimal("3.75"), reasoning=Decimal(2)
    )
    assert rates.worst_case(1000, 100) == (1000 * Decimal("3.75") + 100 * 15) / M


@given(
    prompt=st.integers(0, 10**7),
    completion=st.integers(0, 10**6),
    cached=st.integers(0, 10**7),
    written=st.integers(0, 10**7),
    reasoning=st.integers(0, 10**6),
)
def test_cost_is_never_more_than_the_worst_case(prompt, completion, cached, written, reasoning):
    cached = min(cached, prompt)
    written = min(written, prompt - cached)
    reasoning = min(reasoning, completion)
    rates = Rates(
        input=Decimal("1.1"),
        output=Decimal("4.4"),
        cached_input=Decimal("0.275"),
        cache_write=Decimal("1.375"),
        reasoning=Decimal("5"),
    )
    usage = Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        cached_tokens=cached,
        cache_creation_tokens=written,
        reasoning_tokens=reasoning,
    )
    assert Decimal(0) <= rates.cost(usage) <= rates.worst_case(prompt, completion)


def test_price_configuration_errors_name_the_entry():
    for raw, match in [
        ({"p:m": {"input": 1}}, r"prices\['p:m'\]: output must be given"),
        ({"p:m": {"input": -1, "output": 1}}, r"prices\['p:m'\].input=-1"),
        ({"p:m": {"input": "x", "output": 1}}, "expected a finite number"),
        ({"p:m": {"input": 1, "output": 1, "cache_read": 1}}, "unknown key.*'cache_read'"),
        ({"p:m": 3}, "expected a table"),
        ({":m": {"input": 1, "output": 1}}, "prices key"),
    ]:
        with pytest.raises(ConfigurationError, match=match):
            parse_prices(raw)
    assert parse_prices({"p": {"input": 0.1, "output": "0.4"}})["p"] == Rates(
        input=Decimal("0.1"), output=Decimal("0.4")
    )


class Source:
    def __init__(self) -> None:
        self.asked: list[tuple[str, str]] = []

    def price_of(self, provider: str, model: str) -> Rates | None:
        self.asked.append((provider, model))
        if model.startswith("gpt-4o"):
            return Rates(input=Decimal("2.5"), output=Decimal("10"))
        if model == "boom":
            raise RuntimeError("broken source")
        return None


def request(model: str, provider: str = "openai") -> ChatRequest:
    return ChatRequest(provider=provider, model=model, messages=(Message("user", "hi"),))


def answer(model: str, prompt: int = 1000, completion: int = 100) -> ChatResponse:
    return ChatResponse(
        id="x",
        model=model,
        choices=(),
        usage=Usage(prompt_tokens=prompt, completion_tokens=completion),
    )


def test_user_prices_win_over_the_source_and_unknown_is_none():
    source = Source()
    pricing = Pricing(
        {"openai:my-deploy": Rates(Decimal(1), Decimal(2)), "vllm": Rates(Decimal(0), Decimal(0))},
        source,
    )
    # a deployment name the user priced wins over the model the provider reports
    assert (
        pricing.cost(request("my-deploy"), answer("gpt-4o-2024-08-06")) == (1000 * 1 + 100 * 2) / M
    )
    # otherwise the model that answered, from the source
    assert pricing.cost(request("gpt-4o"), answer("gpt-4o-2024-08-06")) == Decimal("0.0035")
    # a provider-wide price: every model of a self-hosted server at an internal rate
    assert pricing.cost(request("llama", "vllm"), answer("llama")) == 0
    assert pricing.cost(request("unknown-model"), answer("unknown-model")) is None
    assert pricing.cost(request("boom"), answer("boom")) is None  # a broken source: unknown
    assert pricing.cost(request("gpt-4o"), attrs_evolve_usage(answer("gpt-4o"))) is None
    asked = len(source.asked)
    pricing.cost(request("gpt-4o"), answer("gpt-4o-2024-08-06"))
    assert len(source.asked) == asked  # remembered


def attrs_evolve_usage(response: ChatResponse) -> ChatResponse:
    import attrs

    return attrs.evolve(response, usage=None)


def test_remembered_prices_expire():
    now = [0.0]
    source = Source()
    pricing = Pricing({}, source, ttl=10, clock=lambda: now[0])
    pricing.price_of("openai", "gpt-4o")
    pricing.price_of("openai", "gpt-4o")
    now[0] = 11
    pricing.price_of("openai", "gpt-4o")
    assert source.asked == [("openai", "gpt-4o")] * 2


# -- over real sockets --------------------------------------------------------------------------


def usage_body(prompt: int, completion: int, cached: int = 0, reasoning: int = 0) -> Any:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached},
        "completion_tokens_details": {"reasoning_tokens": reasoning},
    }


def test_chat_cost_cached_answers_and_metrics(make_client, server):
    client = make_client(
        prices={"wire:m": {"input": 2.5, "output": 10, "cached_input": 1.25}}, cache=True
    )
    server.enqueue(Reply.chat("ok", usage=usage_body(1000, 200, cached=400, reasoning=50)))
    response = client.chat("wire:m", "hello")
    assert response.cost == (600 * Decimal("2.5") + 400 * Decimal("1.25") + 200 * 10) / M
    hit = client.chat("wire:m", "hello")
    assert hit.cached and hit.cost == 0 and hit.saved_cost == response.cost
    assert "cost" not in response.to_dict()
    totals = client.metrics.snapshot()["totals"]["cost_usd"]
    assert totals == {
        "total": float(response.cost),
        "priced_requests": 1,
        "unpriced_requests": 0,
        "saved_by_cache": float(response.cost),
    }
    text = client.metrics.prometheus_text()
    assert f'chatcore_cost_usd_total{{provider="wire",model="m"}} {float(response.cost)!r}' in text


def test_unknown_price_gives_none_never_a_guess(make_client, server):
    client = make_client()
    server.enqueue(Reply.chat("ok", usage=usage_body(10, 10)))
    assert client.chat("wire:m", "hello").cost is None
    assert client.metrics.snapshot()["totals"]["cost_usd"]["unpriced_requests"] == 1


def test_a_completed_stream_has_its_cost(server):
    from .test_aclient import AsyncPlugin

    host = PluginHost(load_entry_points=False, plugins=[AsyncPlugin()], environ={})
    with chatcore.Client(
        plugin_host=host,
        providers={"sse": {"api_key": TEST_KEY, "base_url": server.base_url}},
        environ={},
        prices={"sse": {"input": 1, "output": 3}},
    ) as client:
        server.enqueue(Reply.chat_stream("a b c", usage=usage_body(30, 3)))
        stream = client.stream("sse:m", "hi")
        assert "".join(chunk.text for chunk in stream)
        assert stream.response is not None
        assert stream.response.cost == (30 * 1 + 3 * 3) / M
        assert client.metrics.snapshot()["totals"]["cost_usd"]["total"] == float(
            stream.response.cost
        )


def test_chatcore_pricing_hook_supplies_prices_and_user_prices_win(server):
    class PricePlugin:
        @chatcore.hookimpl
        def chatcore_pricing(self, settings: Any) -> Any:
            return Source()

    host = PluginHost(load_entry_points=False, plugins=[WirePlugin(), PricePlugin()], environ={})
    options = {"wire": {"api_key": TEST_KEY, "base_url": server.base_url}}
    with chatcore.Client(plugin_host=host, providers=options, environ={}) as client:
        server.enqueue(Reply.chat("ok", usage=usage_body(1000, 100)))
        assert client.chat("wire:gpt-4o", "hi").cost == Decimal("0.0035")
    with chatcore.Client(
        plugin_host=host,
        providers=options,
        environ={},
        prices={"wire:gpt-4o": {"input": 0, "output": 0}},
    ) as client:
        server.enqueue(Reply.chat("ok", usage=usage_body(1000, 100)))
        assert client.chat("wire:gpt-4o", "hi").cost == 0


def test_the_request_log_record_carries_the_cost(make_client, server):
    import io
    import json

    from loguru import logger as loguru_logger

    sink = io.StringIO()
    handler = chatcore.configure_logging("INFO", json=True, sink=sink)
    try:
        client = make_client(prices={"wire": {"input": 1, "output": 1}})
        server.enqueue(Reply.chat("ok", usage=usage_body(600, 400)))
        client.chat("wire:m", "hello")
    finally:
        chatcore.configure_logging(None)
        assert handler is not None
        loguru_logger.remove(handler)
    records = [json.loads(line)["record"] for line in sink.getvalue().splitlines()]
    (done,) = [r for r in records if r["message"].startswith("chat wire:m ok")]
    assert done["extra"]["cost"] == "0.001"
