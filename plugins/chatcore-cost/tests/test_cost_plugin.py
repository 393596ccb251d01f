"""chatcore-cost over real sockets: the price of one model of each bundled provider,
checked by hand against genai-prices' published rates for that model (OpenAI and Azure
with cached and reasoning tokens in OpenAI's usage shape, Anthropic's cache reads and
writes in its own shape, a Hugging Face model through an inference provider); the fast
path equals ``genai_prices.calc_price`` for any usage; tiered prices; the opt-in refresh
from a local mirror; nothing imported before the first price is asked.

The hand-checked rates are genai-prices 0.2.x's (the dependency is pinned below 0.3); if
a release changes a model's price, these numbers must follow the database."""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import chatcore
from chatcore._plugins import PluginHost
from chatcore.models import Usage
from chatcore.testing.server import Reply, StandInServer
from chatcore_cost import chatcore_pricing
from chatcore_cost._prices import GenaiPrice, GenaiPrices, genai_provider

KEY = "sk-test-costSECRET0123456789abcdef"
M = Decimal(1_000_000)
WANTED = {"openai", "anthropic", "huggingface", "cost"}


def host() -> PluginHost:
    """The bundled providers and this plugin, found through their entry points."""
    eps = [ep for ep in importlib.metadata.entry_points(group="chatcore") if ep.name in WANTED]
    assert {ep.name for ep in eps} == WANTED
    plugins = [ep.load() for ep in eps]
    return PluginHost(load_entry_points=False, plugins=plugins, environ={})


@pytest.fixture
def serve() -> Iterator[Any]:
    servers: list[StandInServer] = []

    def start(flavor: str) -> StandInServer:
        server = StandInServer(flavor=flavor, api_key=KEY).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def client_for(provider: str, server: StandInServer) -> chatcore.Client:
    options: dict[str, Any] = {"api_key": KEY, "base_url": server.base_url}
    if provider == "azure":
        options = {"api_key": KEY, "endpoint": server.url}
    return chatcore.Client(
        plugin_host=host(), providers={provider: options}, environ={}, max_retries=0
    )


def openai_usage(prompt: int, completion: int, cached: int, reasoning: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached},
        "completion_tokens_details": {"reasoning_tokens": reasoning},
    }


def test_openai_gpt_4o_mini_by_hand(serve):
    # $0.15 input, $0.075 cached input, $0.60 output (reasoning is output) per MTok
    server = serve("openai")
    server.enqueue(Reply.chat("ok", usage=openai_usage(1000, 200, cached=400, reasoning=50)))
    with client_for("openai", server) as client:
        response = client.chat("openai:gpt-4o-mini", "hi")
    assert (
        response.cost == (600 * Decimal("0.15") + 400 * Decimal("0.075") + 200 * Decimal("0.6")) / M
    )
    assert response.cost == Decimal("0.00024")


def test_openai_dated_snapshot_reported_by_the_answer_is_priced(serve):
    server = serve("openai")
    server.enqueue(
        Reply.chat("ok", model="gpt-4o-mini-2024-07-18", usage=openai_usage(1000, 0, 0, 0))
    )
    with client_for("openai", server) as client:
        assert client.chat("openai:gpt-4o-mini", "hi").cost == Decimal("0.00015")


def test_azure_gpt_4o_by_hand(serve):
    # $2.50 input, $1.25 cached input, $10 output per MTok
    server = serve("azure")
    server.enqueue(Reply.chat("ok", model="gpt-4o", usage=openai_usage(2000, 100, 1000, 0)))
    with client_for("azure", server) as client:
        response = client.chat("azure:gpt-4o", "hi")
    assert response.cost == (1000 * Decimal("2.5") + 1000 * Decimal("1.25") + 100 * 10) / M


def test_anthropic_claude_sonnet_4_cache_reads_and_writes_by_hand(serve):
    # $3 input, $0.30 cache read, $3.75 cache write, $15 output per MTok
    server = serve("anthropic")
    usage = {
        "input_tokens": 100,
        "cache_read_input_tokens": 1000,
        "cache_creation_input_tokens": 200,
        "output_tokens": 300,
    }
    server.enqueue(Reply.chat("ok", usage=usage))
    with client_for("anthropic", server) as client:
        response = client.chat("anthropic:claude-sonnet-4-20250514", "hi", max_tokens=500)
    assert response.usage is not None and response.usage.prompt_tokens == 1300
    expected = (100 * 3 + 1000 * Decimal("0.3") + 200 * Decimal("3.75") + 300 * 15) / M
    assert response.cost == expected == Decimal("0.00585")


def test_huggingface_through_an_inference_provider_by_hand(serve):
    # novita's Llama-3.1-8B-Instruct: $0.02 input, $0.05 output per MTok
    server = serve("openai")
    server.enqueue(Reply.chat("ok", usage=openai_usage(1000, 1000, 0, 0)))
    server.enqueue(Reply.chat("ok", usage=openai_usage(1000, 1000, 0, 0)))
    with client_for("huggingface", server) as client:
        routed = client.chat("huggingface:meta-llama/Llama-3.1-8B-Instruct:novita", "hi")
        auto = client.chat("huggingface:meta-llama/Llama-3.1-8B-Instruct", "hi")
    assert routed.cost == (1000 * Decimal("0.02") + 1000 * Decimal("0.05")) / M
    assert auto.cost is None  # the router picks the provider: unknown, never a guess


def test_streams_are_priced_when_they_complete(serve):
    server = serve("openai")
    server.enqueue(Reply.chat_stream("a b c", usage=openai_usage(1000, 200, 400, 50)))
    with client_for("openai", server) as client:
        stream = client.stream("openai:gpt-4o-mini", "hi")
        assert "".join(chunk.text for chunk in stream)
    assert stream.response is not None and stream.response.cost == Decimal("0.00024")


def test_user_prices_win_over_the_database(serve):
    server = serve("openai")
    server.enqueue(Reply.chat("ok", usage=openai_usage(1000, 0, 0, 0)))
    with chatcore.Client(
        plugin_host=host(),
        providers={"openai": {"api_key": KEY, "base_url": server.base_url}},
        environ={},
        prices={"openai:gpt-4o-mini": {"input": "0.10", "output": "0.40"}},
    ) as client:
        assert client.chat("openai:gpt-4o-mini", "hi").cost == Decimal("0.0001")


# -- the fast path is genai-prices' arithmetic -----------------------------------------------

MODELS = [
    ("openai", "gpt-4o-mini"),
    ("openai", "o3-mini"),
    ("azure", "gpt-4o"),
    ("anthropic", "claude-sonnet-4-20250514"),
    ("anthropic", "claude-3-5-haiku-latest"),
    ("huggingface", "meta-llama/Llama-3.1-8B-Instruct:novita"),
]


@settings(max_examples=200, deadline=None)
@given(
    which=st.sampled_from(MODELS),
    prompt=st.integers(0, 2_000_000),
    completion=st.integers(0, 200_000),
    cached=st.integers(0, 2_000_000),
    written=st.integers(0, 2_000_000),
    reasoning=st.integers(0, 200_000),
)
def test_the_fast_path_equals_calc_price(which, prompt, completion, cached, written, reasoning):
    from genai_prices import calc_price

    cached = min(cached, prompt)
    written = min(written, prompt - cached)
    reasoning = min(reasoning, completion)
    usage = Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        cached_tokens=cached,
        cache_creation_tokens=written,
        reasoning_tokens=reasoning,
    )
    price = GenaiPrices().price_of(*which)
    assert price is not None and not isinstance(price, GenaiPrice)  # flat token prices
    from chatcore_cost._prices import _genai_usage

    provider_id, ref = genai_provider(*which)  # type: ignore[misc]
    expected = calc_price(_genai_usage(usage), ref, provider_id=provider_id).total_price
    assert price.cost(usage) == expected
    assert price.cost(usage) <= price.worst_case(prompt, completion)


def test_tiered_prices_are_computed_by_genai_prices():
    from genai_prices import calc_price

    price = GenaiPrices().price_of("google", "gemini-1.5-pro")
    assert isinstance(price, GenaiPrice)
    for prompt in (1000, 300_000):  # below and above the 128k tier
        usage = Usage(prompt_tokens=prompt, completion_tokens=1000)
        expected = calc_price(
            _usage(prompt, 1000), "gemini-1.5-pro", provider_id="google"
        ).total_price
        assert price.cost(usage) == expected
        assert price.cost(usage) <= price.worst_case(prompt, 1000)
    assert GenaiPrices().price_of("openai", "no-such-model") is None
    assert GenaiPrices().price_of("no-such-provider", "gpt-4o") is None


def _usage(prompt: int, completion: int) -> Any:
    from genai_prices import Usage as GUsage

    return GUsage(input_tokens=prompt, output_tokens=completion)


def test_huggingface_models_map_to_their_inference_provider():
    assert genai_provider("huggingface", "org/m:novita") == ("huggingface_novita", "org/m")
    assert genai_provider("huggingface", "org/m") is None
    assert genai_provider("huggingface", "org/m:fastest") is None
    assert genai_provider("openai", "gpt-4o") == ("openai", "gpt-4o")


# -- the plugin --------------------------------------------------------------------------------


def test_chatcore_pricing_hook_is_found_through_the_entry_point_and_imports_lazily():
    code = (
        "import sys, chatcore\n"
        "from chatcore._plugins import get_plugin_host\n"
        "host = get_plugin_host()\n"
        "source = host.pricing(None)\n"
        "assert type(source).__name__ == 'GenaiPrices', source\n"
        "assert 'genai_prices' not in sys.modules and 'pydantic' not in sys.modules\n"
        "assert source.price_of('openai', 'gpt-4o-mini') is not None\n"
        "assert 'genai_prices' in sys.modules\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert type(chatcore_pricing(None)).__name__ == "GenaiPrices"


class _Mirror(BaseHTTPRequestHandler):
    payload = b""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(self.payload)))
        self.end_headers()
        self.wfile.write(self.payload)

    def log_message(self, *args: Any) -> None:
        pass


def test_refresh_prices_is_opt_in_and_reads_a_mirror():
    import chatcore_cost

    before = GenaiPrices().price_of("openai", "gpt-4o-mini")
    _Mirror.payload = json.dumps(
        [
            {
                "id": "openai",
                "name": "OpenAI",
                "api_pattern": "https://api\\.openai\\.com",
                "models": [
                    {
                        "id": "gpt-4o-mini",
                        "match": {"equals": "gpt-4o-mini"},
                        "prices": {"input_mtok": 1, "output_mtok": 2},
                    }
                ],
            }
        ]
    ).encode()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Mirror)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/data.json"
        assert chatcore_cost.refresh_prices(url=url, timeout=5) is True
        after = GenaiPrices().price_of("openai", "gpt-4o-mini")
        assert after is not None
        assert after.cost(Usage(prompt_tokens=10**6, completion_tokens=10**6)) == 3
    finally:
        chatcore_cost.use_bundled_prices()
        httpd.shutdown()
        httpd.server_close()
    assert GenaiPrices().price_of("openai", "gpt-4o-mini") == before
