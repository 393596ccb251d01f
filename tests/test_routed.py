"""Routes over real sockets: ``route:NAME`` calls spread over deployments (stand-in servers
on 127.0.0.1 that count what reaches each), with the one retry loop moving between them,
fallbacks by error class, cooldowns, per-deployment limits, streams that move only before
their first chunk, the cache keyed by route, metrics and logs that name the deployment,
both clients."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import chatcore
from chatcore._plugins import PluginHost
from chatcore._routes import Deployment, Route, pick
from chatcore.exceptions import (
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    NoDeploymentAvailableError,
    ServerError,
    StreamError,
    ValidationError,
)
from chatcore.provider import Option, ProviderSpec
from chatcore.testing.helpers import OpenAIWireProvider
from chatcore.testing.server import Reply, StandInServer

KEYS = {name: f"sk-route{name}SECRET0123456789abcdef" for name in ("a", "b", "c")}


class RoutePlugin:
    """``sse``: the translate-only OpenAI-wire test provider, streaming."""

    @chatcore.hookimpl
    def chatcore_providers(self) -> list[ProviderSpec]:
        return [
            ProviderSpec(
                name="sse",
                factory=OpenAIWireProvider,
                options={
                    "api_key": Option(secret=True, required=False),
                    "base_url": Option(default="http://127.0.0.1:9/v1"),
                },
                capabilities={"chat", "stream", "models"},
            )
        ]


class Sleeps:
    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


class Sink:
    """A metrics sink that keeps every event."""

    def __init__(self) -> None:
        self.events: list[Any] = []

    def record(self, event: Any) -> None:
        self.events.append(event)


@pytest.fixture
def servers() -> Iterator[dict[str, StandInServer]]:
    found = {name: StandInServer(api_key=key).start() for name, key in KEYS.items()}
    try:
        yield found
    finally:
        for srv in found.values():
            srv.stop()


def deployment(servers: dict[str, StandInServer], name: str, **extra: Any) -> dict[str, Any]:
    """A deployment of ``sse:gpt-4o-mini`` on server ``name``, with its own key."""
    options = {"base_url": servers[name].base_url, "api_key": KEYS[name]}
    return {"model": "sse:gpt-4o-mini", "name": name, "options": options, **extra}


def counts(servers: dict[str, StandInServer]) -> dict[str, int]:
    return {name: len(srv.requests) for name, srv in servers.items()}


@pytest.fixture
def make(servers: dict[str, StandInServer]) -> Iterator[Any]:
    made: list[chatcore.Client] = []

    def build(routes: dict[str, Any], *, cls: Any = chatcore.Client, **kwargs: Any) -> Any:
        host = PluginHost(load_entry_points=False, plugins=[RoutePlugin()], environ={})
        kwargs.setdefault("retry", chatcore.RetryPolicy(sleep=Sleeps()))
        kwargs.setdefault(
            "providers", {"sse": {"base_url": servers["c"].base_url, "api_key": KEYS["c"]}}
        )
        client = cls(plugin_host=host, environ={}, routes=routes, **kwargs)
        if cls is chatcore.Client:
            made.append(client)
        return client

    yield build
    for client in made:
        client.close()


# --------------------------------------------------------------------------------------
# Picking


def test_ordered_route_sends_to_the_first_deployment(make, servers):
    client = make(
        {
            "main": {
                "strategy": "ordered",
                "deployments": [deployment(servers, "a"), deployment(servers, "b")],
            }
        }
    )
    response = client.chat("route:main", "Hello")
    assert counts(servers) == {"a": 1, "b": 0, "c": 0}
    assert response.deployment == "route:main/a"
    assert response.deployments == ("route:main/a",)
    assert response.provider == "sse"
    assert response.attempts == 1
    # each deployment's own key went to its own server
    assert servers["a"].last_request.header("authorization") == f"Bearer {KEYS['a']}"


def test_weighted_route_spreads_calls_by_weight(make, servers):
    client = make(
        {
            "main": {
                "deployments": [
                    deployment(servers, "a", weight=3),
                    deployment(servers, "b", weight=1),
                ]
            }
        }
    )
    for _ in range(200):
        client.chat("route:main", "Hi")
    seen = counts(servers)
    assert seen["a"] + seen["b"] == 200 and seen["c"] == 0
    # binomial(200, 0.75): sd 6.1; 25 is more than 4 sd
    assert abs(seen["a"] - 150) <= 25, seen


@settings(max_examples=60, deadline=None)
@given(
    weights=st.lists(st.floats(0.1, 10.0), min_size=2, max_size=4),
    seed=st.integers(0, 2**32 - 1),
)
def test_weighted_pick_follows_the_weights(weights: list[float], seed: int) -> None:
    rng = random.Random(seed)
    route = Route(
        name="r",
        deployments=tuple(
            Deployment(route="r", name=str(i), provider="p", model="m", weight=w)
            for i, w in enumerate(weights)
        ),
    )
    draws = 3000
    seen = dict.fromkeys(range(len(weights)), 0)
    for _ in range(draws):
        seen[int(pick(route, route.deployments, rng=rng.random).name)] += 1
    total = sum(weights)
    for i, weight in enumerate(weights):
        # the share's sd is at most 0.0092 at 3000 draws: 0.05 is over 5 sd
        assert abs(seen[i] / draws - weight / total) < 0.05


def test_least_busy_route_balances_calls_in_flight(make, servers):
    servers["a"].enqueue(*[Reply.default(delay=0.2)] * 10)
    servers["b"].enqueue(*[Reply.default(delay=0.2)] * 10)
    client = make(
        {
            "main": {
                "strategy": "least_busy",
                "deployments": [deployment(servers, "a"), deployment(servers, "b")],
            }
        },
        cls=chatcore.AsyncClient,
    )

    async def main() -> list[Any]:
        async with client:
            return await asyncio.gather(*(client.chat("route:main", "Hi") for _ in range(10)))

    responses = asyncio.run(main())
    assert counts(servers) == {"a": 5, "b": 5, "c": 0}
    assert {r.deployment for r in responses} == {"route:main/a", "route:main/b"}
    # every call ended: nothing left in flight
    assert client.cooldowns.in_flight_counts(["route:main/a", "route:main/b"]) == {
        "route:main/a": 0,
        "route:main/b": 0,
    }


def test_lowest_latency_route_prefers_the_faster_deployment(make, servers):
    servers["a"].enqueue(Reply.default(delay=0.25))
    client = make(
        {
            "main": {
                "strategy": "lowest_latency",
                "deployments": [deployment(servers, "a"), deployment(servers, "b")],
            }
        }
    )
    for _ in range(6):
        client.chat("route:main", "Hi")
    # each is measured once, then the faster one takes every call
    assert counts(servers) == {"a": 1, "b": 5, "c": 0}


def test_a_deployment_whose_rate_limit_would_wait_is_skipped(make, servers):
    client = make(
        {
            "main": {
                "strategy": "ordered",
                "deployments": [
                    deployment(servers, "a", rate_limits={"rpm": 1}),
                    deployment(servers, "b"),
                ],
            }
        }
    )
    first = client.chat("route:main", "Hi")
    second = client.chat("route:main", "Hi")
    assert (first.deployment, second.deployment) == ("route:main/a", "route:main/b")
    assert counts(servers) == {"a": 1, "b": 0 + 1, "c": 0}


# --------------------------------------------------------------------------------------
# The one retry loop


def test_a_retryable_failure_moves_to_another_deployment_without_waiting(make, servers):
    servers["a"].enqueue(Reply.error(503, "busy"))
    sleeps = Sleeps()
    client = make(
        {
            "main": {
                "strategy": "ordered",
                "deployments": [deployment(servers, "a"), deployment(servers, "b")],
            }
        },
        retry=chatcore.RetryPolicy(sleep=sleeps),
    )
    response = client.chat("route:main", "Hi")
    assert response.deployments == ("route:main/a", "route:main/b")
    assert response.attempts == 2
    assert counts(servers) == {"a": 1, "b": 1, "c": 0}
    assert sleeps.calls == []
    assert client.retries == 1


def test_max_retries_counts_attempts_across_deployments(make, servers):
    for name in "abc":
        servers[name].enqueue(*[Reply.error(500, "down")] * 3)
    client = make(
        {
            "main": {
                "strategy": "ordered",
                "deployments": [deployment(servers, n) for n in "abc"],
            }
        },
        max_retries=1,
    )
    with pytest.raises(ServerError) as caught:
        client.chat("route:main", "Hi")
    assert caught.value.attempts == 2
    assert caught.value.deployments == ("route:main/a", "route:main/b")
    assert counts(servers) == {"a": 1, "b": 1, "c": 0}


def test_when_every_deployment_failed_the_policy_backs_off_and_starts_over(make, servers):
    servers["a"].enqueue(Reply.error(503, "busy"), Reply.error(503, "busy"))
    servers["b"].enqueue(Reply.error(503, "busy"))
    sleeps = Sleeps()
    client = make(
        {
            "main": {
                "strategy": "ordered",
                "allowed_failures": 5,
                "deployments": [deployment(servers, "a"), deployment(servers, "b")],
            }
        },
        retry=chatcore.RetryPolicy(sleep=sleeps, max_retries=4, jitter=0.0),
    )
    response = client.chat("route:main", "Hi")
    assert response.deployments == (
        "route:main/a",
        "route:main/b",
        "route:main/a",
        "route:main/b",
    )
    assert len(sleeps.calls) == 1  # one backoff, after both had failed once
    assert counts(servers) == {"a": 2, "b": 2, "c": 0}


def test_a_bad_request_is_not_sent_anywhere_else(make, servers):
    servers["a"].enqueue(Reply.error(400, "bad parameter", param="temperature"))
    client = make(
        {
            "main": {
                "strategy": "ordered",
                "deployments": [deployment(servers, "a"), deployment(servers, "b")],
            }
        }
    )
    with pytest.raises(BadRequestError) as caught:
        client.chat("route:main", "Hi")
    assert caught.value.attempts == 1
    assert counts(servers) == {"a": 1, "b": 0, "c": 0}


# --------------------------------------------------------------------------------------
# Fallbacks


def test_fallback_order_is_exact(make, servers):
    for name in "ab":
        servers[name].enqueue(Reply.error(503, "down"))
    client = make(
        {
            "main": {
                "deployments": [deployment(servers, "a")],
                "fallbacks": ["route:second", "sse:gpt-4o"],
            },
            "second": {"deployments": [deployment(servers, "b")]},
        }
    )
    response = client.chat("route:main", "Hi")
    assert response.deployments == (
        "route:main/a",
        "route:second/b",
        "route:main/fallback:sse:gpt-4o",
    )
    # the plain fallback went through the client's own sse provider (server c)
    assert servers["c"].last_request.json()["model"] == "gpt-4o"
    assert counts(servers) == {"a": 1, "b": 1, "c": 1}


def test_context_window_error_goes_straight_to_its_fallback(make, servers):
    servers["a"].enqueue(
        Reply.error(
            400,
            "This model's maximum context length is 8192 tokens",
            code="context_length_exceeded",
        )
    )
    client = make(
        {
            "main": {
                "strategy": "ordered",
                "deployments": [deployment(servers, "a"), deployment(servers, "b")],
                "fallbacks": ["sse:general"],
                "context_window_fallbacks": ["sse:gpt-4o-long"],
            }
        }
    )
    response = client.chat("route:main", "Hi")
    assert response.attempts == 2
    assert response.deployments == ("route:main/a", "route:main/fallback:sse:gpt-4o-long")
    assert counts(servers) == {"a": 1, "b": 0, "c": 1}
    assert servers["c"].last_request.json()["model"] == "gpt-4o-long"


def test_content_policy_error_goes_to_its_fallback(make, servers):
    servers["a"].enqueue(Reply.error(400, "flagged", code="content_filter"))
    client = make(
        {
            "main": {
                "deployments": [deployment(servers, "a")],
                "content_policy_fallbacks": ["sse:lenient"],
            }
        }
    )
    response = client.chat("route:main", "Hi")
    assert response.deployments == ("route:main/a", "route:main/fallback:sse:lenient")


# --------------------------------------------------------------------------------------
# Cooldowns


def test_an_unusable_deployment_cools_down_and_gets_no_request(make, servers):
    servers["a"].enqueue(Reply.error(401, "bad key"))
    client = make(
        {
            "main": {
                "strategy": "ordered",
                "cooldown_seconds": 60,
                "deployments": [deployment(servers, "a"), deployment(servers, "b")],
            }
        }
    )
    first = client.chat("route:main", "Hi")
    assert first.deployments == ("route:main/a", "route:main/b")
    for _ in range(5):
        assert client.chat("route:main", "Hi").deployment == "route:main/b"
    assert counts(servers) == {"a": 1, "b": 6, "c": 0}
    cooling = client.cooldowns.cooling(["route:main/a", "route:main/b"])
    assert set(cooling) == {"route:main/a"} and 55 < cooling["route:main/a"] <= 60


def test_retryable_failures_cool_a_deployment_after_allowed_failures(make, servers):
    servers["a"].enqueue(Reply.error(503, "busy"), Reply.error(503, "busy"))
    client = make(
        {
            "main": {
                "strategy": "ordered",
                "allowed_failures": 2,
                "deployments": [deployment(servers, "a"), deployment(servers, "b")],
            }
        }
    )
    client.chat("route:main", "Hi")  # a fails once, b answers
    assert client.cooldowns.cooling(["route:main/a"]) == {}
    client.chat("route:main", "Hi")  # a fails twice: cooling
    assert set(client.cooldowns.cooling(["route:main/a"])) == {"route:main/a"}
    client.chat("route:main", "Hi")
    assert counts(servers) == {"a": 2, "b": 3, "c": 0}


def test_retry_after_extends_a_cooldown_up_to_the_hold_cap(make, servers):
    servers["a"].enqueue(
        Reply.error(429, "quota", code="insufficient_quota", headers={"retry-after": "600"})
    )
    client = make(
        {
            "main": {
                "cooldown_seconds": 5,
                "deployments": [deployment(servers, "a"), deployment(servers, "b")],
                "strategy": "ordered",
            }
        },
        max_server_hold=90,
    )
    client.chat("route:main", "Hi")
    left = client.cooldowns.cooling(["route:main/a"])["route:main/a"]
    assert 85 < left <= 90


def test_every_deployment_cooling_is_a_typed_error_and_nothing_is_sent(make, servers):
    client = make({"main": {"deployments": [deployment(servers, "a"), deployment(servers, "b")]}})
    client.cooldowns.cool_down("route:main/a", 30)
    client.cooldowns.cool_down("route:main/b", 10)
    with pytest.raises(NoDeploymentAvailableError) as caught:
        client.chat("route:main", "Hi")
    error = caught.value
    assert error.attempts == 0
    assert 9 < error.retry_after <= 10
    assert "route:main/a" in str(error) and "route:main/b" in str(error)
    assert counts(servers) == {"a": 0, "b": 0, "c": 0}


def test_the_last_failure_is_the_cause_when_the_rest_are_cooling(make, servers):
    servers["a"].enqueue(Reply.error(401, "bad key"))
    client = make(
        {
            "main": {
                "strategy": "ordered",
                "deployments": [deployment(servers, "a"), deployment(servers, "b")],
            }
        }
    )
    client.cooldowns.cool_down("route:main/b", 30)
    with pytest.raises(NoDeploymentAvailableError) as caught:
        client.chat("route:main", "Hi")
    assert isinstance(caught.value.__cause__, AuthenticationError)
    assert caught.value.attempts == 1
    assert KEYS["a"] not in str(caught.value)


# --------------------------------------------------------------------------------------
# Streams


def test_a_stream_failing_before_its_first_chunk_is_served_by_the_next_deployment(make, servers):
    servers["a"].enqueue(Reply.error(503, "busy"))
    servers["b"].enqueue(Reply.chat_stream(text="from b", include_usage=True))
    sink = Sink()
    client = make(
        {
            "main": {
                "strategy": "ordered",
                "deployments": [deployment(servers, "a"), deployment(servers, "b")],
            }
        },
        metrics_sinks=[sink],
    )
    with client.stream("route:main", "Hi") as stream:
        text = "".join(chunk.text for chunk in stream)
    assert text == "from b"
    assert stream.deployment == "route:main/b"
    assert stream.response is not None
    assert stream.response.deployments == ("route:main/a", "route:main/b")
    events = [e for e in sink.events if e.kind == "request"]
    assert events[-1].deployment == "route:main/b" and events[-1].outcome == "ok"


def test_a_stream_that_breaks_after_its_first_chunk_does_not_fall_back(make, servers):
    servers["a"].enqueue(Reply.chat_stream(text="alpha beta gamma delta", die_after=2))
    client = make(
        {
            "main": {
                "strategy": "ordered",
                "deployments": [deployment(servers, "a"), deployment(servers, "b")],
            }
        }
    )
    stream = client.stream("route:main", "Hi")
    with pytest.raises(StreamError) as caught:
        for _ in stream:
            pass
    assert caught.value.partial_text
    assert counts(servers) == {"a": 1, "b": 0, "c": 0}


def test_async_client_routes_to_two_endpoints_of_one_provider(make, servers):
    servers["a"].enqueue(Reply.error(503, "busy"), Reply.error(503, "busy"))
    servers["b"].enqueue(Reply.default(), Reply.chat_stream(text="async b"))
    client = make(
        {
            "main": {
                "strategy": "ordered",
                "deployments": [deployment(servers, "a"), deployment(servers, "b")],
            }
        },
        cls=chatcore.AsyncClient,
    )

    async def main() -> tuple[Any, str]:
        async with client:
            response = await client.chat("route:main", "Hi")
            async with client.stream("route:main", "Hi") as stream:
                text = "".join([chunk.text async for chunk in stream])
            return response, text

    response, text = asyncio.run(main())
    assert response.deployments == ("route:main/a", "route:main/b")
    assert text == "async b"  # the stream too moved from a to b before its first chunk
    assert counts(servers) == {"a": 2, "b": 2, "c": 0}
    assert servers["b"].last_request.header("authorization") == f"Bearer {KEYS['b']}"


# --------------------------------------------------------------------------------------
# Cache, metrics, settings


def test_the_cache_is_keyed_by_route_and_request(make, servers):
    client = make(
        {"main": {"deployments": [deployment(servers, "a"), deployment(servers, "b")]}}, cache=True
    )
    first = client.chat("route:main", "Hi")
    second = client.chat("route:main", "Hi")
    assert not first.cached and second.cached
    assert second.deployment is None and second.text == first.text
    assert sum(counts(servers).values()) == 1
    client.chat("route:main", "Something else")
    assert sum(counts(servers).values()) == 2


def test_metrics_events_carry_the_route_and_deployment(make, servers):
    servers["a"].enqueue(Reply.error(503, "busy"))
    sink = Sink()
    client = make(
        {
            "main": {
                "strategy": "ordered",
                "deployments": [deployment(servers, "a"), deployment(servers, "b")],
            }
        },
        metrics_sinks=[sink],
    )
    client.chat("route:main", "Hi")
    seen = [(e.kind, e.outcome, e.route, e.deployment, e.provider) for e in sink.events]
    assert seen == [
        ("attempt", "error", "main", "route:main/a", "sse"),
        ("attempt", "ok", "main", "route:main/b", "sse"),
        ("request", "ok", "main", "route:main/b", "sse"),
    ]


def test_routes_from_chatcore_toml(tmp_path, servers):
    path = tmp_path / "chatcore.toml"
    path.write_text(
        f"""
[routes.main]
strategy = "ordered"
fallbacks = ["sse:gpt-4o"]

[[routes.main.deployments]]
model = "sse:gpt-4o-mini"
name = "east"
options = {{ base_url = "{servers["a"].base_url}", api_key = "{KEYS["a"]}" }}
""",
        encoding="utf-8",
    )
    host = PluginHost(load_entry_points=False, plugins=[RoutePlugin()], environ={})
    with chatcore.Client(plugin_host=host, environ={}, config_path=path) as client:
        assert client.chat("route:main", "Hi").deployment == "route:main/east"
        assert KEYS["a"] not in repr(client.settings)
        assert "route:main" not in KEYS["a"]
    assert counts(servers)["a"] == 1


def test_route_settings_problems_are_reported_together(servers):
    host = PluginHost(load_entry_points=False, plugins=[RoutePlugin()], environ={})
    with pytest.raises(ConfigurationError) as caught:
        chatcore.Client(
            plugin_host=host,
            environ={},
            routes={
                "main": {
                    "strategy": "fastest",
                    "deployments": [
                        {"model": "nope:x", "options": {"api_key": KEYS["a"]}},
                        {"model": "sse:m", "weight": 0},
                    ],
                }
            },
        )
    text = str(caught.value)
    assert "(3 problems)" in text  # each on its own line, like every other setting's
    assert "strategy" in text and "nope" in text and "weight" in text
    assert KEYS["a"] not in text


def test_an_unknown_route_is_a_validation_error_naming_the_routes(make, servers):
    client = make({"main": {"deployments": [deployment(servers, "a")]}})
    with pytest.raises(ValidationError) as caught:
        client.chat("route:mian", "Hi")
    assert "'mian'" in str(caught.value) and "main" in str(caught.value)
    assert sum(counts(servers).values()) == 0


# --------------------------------------------------------------------------------------
# Health and the command line


def test_health_shows_each_routes_deployments_and_cooldowns(make, servers):
    servers["a"].enqueue(Reply.error(403, "no access"))
    client = make(
        {
            "main": {
                "strategy": "ordered",
                "deployments": [deployment(servers, "a"), deployment(servers, "b")],
                "fallbacks": ["sse:gpt-4o"],
            }
        }
    )
    assert client.health().routes[0].status == "ok"
    client.chat("route:main", "Hi")
    report = client.health(refresh=True)
    (route,) = report.routes
    assert route.status == "degraded"
    states = {d.key: d.cooling_for for d in route.deployments}
    assert states["route:main/b"] is None and 25 < states["route:main/a"] <= 30
    assert report.ready
    client.cooldowns.cool_down("route:main/b", 30)
    report = client.health(refresh=True)
    assert report.routes[0].status == "down" and not report.ready
    assert report.to_dict()["routes"][0]["deployments"][1]["cooling_for"] > 25
    assert KEYS["a"] not in repr(report.to_dict())


def test_chatcore_routes_lists_the_routes_of_chatcore_toml(tmp_path):
    import json
    import subprocess
    import sys

    (tmp_path / "chatcore.toml").write_text(
        """
[routes.default]
strategy = "least_busy"
fallbacks = ["openai:gpt-4o"]

[[routes.default.deployments]]
model = "openai:gpt-4o-mini"
name = "east"
options = { base_url = "http://127.0.0.1:9/v1", api_key = "sk-eastSECRET0123456789" }

[[routes.default.deployments]]
model = "openai:gpt-4o-mini"
name = "west"
""",
        encoding="utf-8",
    )
    env = {"PATH": "/usr/bin:/bin", "CHATCORE_OPENAI_API_KEY": "sk-envSECRET0123456789"}
    run = subprocess.run(
        [sys.executable, "-m", "chatcore._cli", "routes", "--json"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    (route,) = json.loads(run.stdout)
    assert route["name"] == "default" and route["strategy"] == "least_busy"
    assert [d["key"] for d in route["deployments"]] == [
        "route:default/east",
        "route:default/west",
    ]
    assert route["fallbacks"] == ["openai:gpt-4o"]
    table = subprocess.run(
        [sys.executable, "-m", "chatcore._cli", "routes"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "east" in table.stdout and "ready" in table.stdout
    assert "SECRET" not in table.stdout + run.stdout + table.stderr + run.stderr


# --------------------------------------------------------------------------------------
# Tracing


def test_a_tracer_sees_each_attempt_of_a_routed_call_and_its_headers_reach_every_deployment(
    make, servers
):
    from chatcore._tracing import TracedCall

    class Handle:
        def __init__(self) -> None:
            self.log: list[Any] = []
            self.response: Any = None

        def activate(self) -> Any:
            import contextlib

            return contextlib.nullcontext()

        def headers(self) -> dict[str, str]:
            return {"x-trace-id": "t-1"}

        def attempt_started(self, number: int) -> None:
            self.log.append(("start", number))

        def attempt_ended(self, number: int, error: BaseException | None) -> None:
            self.log.append(("end", number, type(error).__name__ if error else None))

        def first_chunk(self) -> None:
            self.log.append("first_chunk")

        def end(self, response: Any, error: BaseException | None) -> None:
            self.response = response

    handles: list[Handle] = []

    class Tracer:
        def start(self, call: TracedCall) -> Handle:
            assert KEYS["a"] not in repr(call)
            handles.append(Handle())
            return handles[-1]

    servers["a"].enqueue(Reply.error(503, "busy"))
    client = make(
        {
            "main": {
                "strategy": "ordered",
                "deployments": [deployment(servers, "a"), deployment(servers, "b")],
            }
        },
        tracers=[Tracer()],
    )
    client.chat("route:main", "Hi")
    (handle,) = handles
    assert handle.log == [
        ("start", 1),
        ("end", 1, "ServiceUnavailableError"),
        ("start", 2),
        ("end", 2, None),
    ]
    assert handle.response.deployment == "route:main/b"
    assert servers["a"].last_request.header("x-trace-id") == "t-1"
    assert servers["b"].last_request.header("x-trace-id") == "t-1"


# --------------------------------------------------------------------------------------
# Cost and budgets


def test_a_routed_answer_is_priced_at_the_deployment_that_served_it(make, servers):
    servers["a"].enqueue(Reply.error(503, "busy"))
    client = make(
        {
            "main": {
                "strategy": "ordered",
                "deployments": [
                    deployment(servers, "a"),
                    {**deployment(servers, "b"), "model": "sse:gpt-4o"},
                ],
            }
        },
        prices={
            "sse:gpt-4o-mini": {"input": 1, "output": 2},
            "sse:gpt-4o": {"input": 10, "output": 40},
        },
    )
    response = client.chat("route:main", "Hi")
    usage = response.usage
    assert response.deployment == "route:main/b" and usage is not None
    expected = (Decimal(usage.prompt_tokens) * 10 + Decimal(usage.completion_tokens) * 40) / 10**6
    assert response.cost == expected


def test_a_route_budget_reserves_the_dearest_model_the_call_may_reach(make, servers):
    from chatcore.exceptions import BudgetExceededError

    prices = {
        "sse:gpt-4o-mini": {"input": 1, "output": 2},
        "sse:gpt-4o": {"input": 1000, "output": 4000},
    }
    cheap = make(
        {"main": {"deployments": [deployment(servers, "a")]}},
        prices=prices,
        budgets={"route:main": {"usd": "0.001", "period": "day"}},
    )
    assert cheap.chat("route:main", "Hi", max_tokens=20).cost is not None
    dear = make(
        {"main": {"deployments": [deployment(servers, "a")], "fallbacks": ["sse:gpt-4o"]}},
        prices=prices,
        budgets={"route:main": {"usd": "0.001", "period": "day"}},
    )
    with pytest.raises(BudgetExceededError):
        # a fallback to gpt-4o could cost 20 x 4000 / 10**6 = 0.08 USD: refused, unsent
        dear.chat("route:main", "Hi", max_tokens=20)
    assert counts(servers) == {"a": 1, "b": 0, "c": 0}


# --------------------------------------------------------------------------------------
# Logs


def test_logs_say_why_a_deployment_was_skipped_and_name_it_never_its_key(make, servers):
    import io
    import json

    from loguru import logger

    records = io.StringIO()
    handler = chatcore.configure_logging("DEBUG", json=True, sink=records)
    try:
        servers["a"].enqueue(Reply.error(401, f"bad key {KEYS['a']}"))
        client = make(
            {
                "main": {
                    "strategy": "ordered",
                    "deployments": [
                        deployment(servers, "a"),
                        deployment(servers, "b", rate_limits={"rpm": 1}),
                        deployment(servers, "c"),
                    ],
                }
            }
        )
        client.chat("route:main", "Hi")  # a refuses the key and cools down; b answers
        client.chat("route:main", "Hi")  # a cooling, b's limit would wait: c answers
        with client.stream("route:main", "Hi") as stream:
            for _ in stream:
                pass
    finally:
        logger.remove(handler)
        chatcore.configure_logging(None)
    text = records.getvalue()
    messages = [json.loads(line)["record"]["message"] for line in text.splitlines()]
    assert any("route:main/a cools down" in m and "AuthenticationError" in m for m in messages)
    assert any("skipping route:main/a: cooling down" in m for m in messages)
    assert any("skipping route:main/b: its rate limit would wait" in m for m in messages)
    oks = [json.loads(line)["record"]["extra"] for line in text.splitlines() if " ok in " in line]
    assert [extra.get("deployment") for extra in oks] == [
        "route:main/b",
        "route:main/c",
        "route:main/c",
    ]
    for key in KEYS.values():
        assert key not in text
