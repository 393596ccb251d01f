"""chatcore._routes: route settings, the strategies that pick a deployment, cooldowns and
in-flight counts (pure bookkeeping; the pipeline wiring is tested over HTTP separately)."""

from __future__ import annotations

import collections
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chatcore._routes import (
    InMemoryCooldowns,
    Latencies,
    cooldown_for,
    is_content_policy,
    is_unusable,
    parse_routes,
    pick,
)
from chatcore.exceptions import (
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    ContextWindowExceededError,
    QuotaExceededError,
    RateLimitError,
    ServerError,
)

PROVIDERS = ("openai", "azure")


def route(**extra):
    spec = {
        "deployments": [
            {"model": "azure:gpt-4o", "name": "eastus", "weight": 3, "options": {"endpoint": "x"}},
            {"model": "openai:gpt-4o", "weight": 1},
        ],
        **extra,
    }
    return parse_routes({"main": spec}, PROVIDERS)["main"]


def test_a_route_is_parsed_with_its_defaults():
    r = route()
    assert r.strategy == "weighted"
    assert [d.name for d in r.deployments] == ["eastus", "openai:gpt-4o"]
    assert [d.key for d in r.deployments] == ["route:main/eastus", "route:main/openai:gpt-4o"]
    eastus, plain = r.deployments
    # a deployment with options of its own is limited and held on its own
    assert eastus.limiter_provider == "azure@main.eastus"
    assert plain.limiter_provider == "openai"
    assert (r.cooldown_seconds, r.allowed_failures, r.failure_window) == (30.0, 3, 60.0)


def test_a_deployment_may_be_a_bare_model_string():
    r = parse_routes({"r": {"deployments": ["openai:a", "openai:b"]}}, PROVIDERS)["r"]
    assert [(d.provider, d.model, d.weight) for d in r.deployments] == [
        ("openai", "a", 1.0),
        ("openai", "b", 1.0),
    ]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"deployments": []}, "expected a non-empty list"),
        ({"deployments": ["gpt-4o"]}, "expected 'provider:model'"),
        ({"deployments": ["nope:m"]}, "no provider 'nope' is installed"),
        ({"deployments": ["route:other"]}, "a deployment cannot be a route"),
        ({"deployments": [{"model": "openai:m", "weight": 0}]}, "expected a number > 0"),
        ({"deployments": [{"model": "openai:m", "colour": 1}]}, "unknown key 'colour'"),
        ({"deployments": ["openai:m"], "strategy": "fastest"}, "expected one of weighted"),
        ({"deployments": ["openai:m"], "allowed_failures": 0}, "expected an integer >= 1"),
        ({"deployments": ["openai:m"], "cooldown_seconds": -1}, "expected seconds > 0"),
        ({"deployments": ["openai:m"], "fallbacks": ["route:missing"]}, "no route named"),
        ({"deployments": ["openai:m"], "fallbacks": "gpt-4o"}, "expected a list of"),
        ({"deployments": [{"model": "openai:m", "rate_limits": {"rps": -1}}]}, "rate_limits"),
        (
            {
                "deployments": [
                    {"model": "openai:m", "name": "a"},
                    {"model": "openai:n", "name": "a"},
                ]
            },
            "is not a unique name",
        ),
    ],
)
def test_bad_route_settings_name_the_route_and_key(spec, message):
    with pytest.raises(ConfigurationError, match=message) as info:
        parse_routes({"main": spec}, PROVIDERS)
    assert "routes['main']" in str(info.value)


def test_every_problem_is_reported_at_once():
    with pytest.raises(ConfigurationError) as info:
        parse_routes(
            {"a": {"deployments": []}, "b": {"deployments": ["x:y"], "strategy": "?"}}, PROVIDERS
        )
    text = str(info.value)
    assert "routes['a']" in text and "routes['b']" in text and "strategy" in text


def test_route_names_are_words():
    with pytest.raises(ConfigurationError, match="non-empty word"):
        parse_routes({"a:b": {"deployments": ["openai:m"]}}, PROVIDERS)


# --- picking -------------------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=9), min_size=2, max_size=4), st.integers(0, 99))
def test_weighted_picks_follow_the_weights(weights, seed):
    r = parse_routes(
        {
            "r": {
                "deployments": [
                    {"model": f"openai:m{i}", "weight": w} for i, w in enumerate(weights)
                ]
            }
        },
        PROVIDERS,
    )["r"]
    rng = random.Random(seed)
    n = 6000
    counts = collections.Counter(pick(r, r.deployments, rng=rng.random).name for _ in range(n))
    total = sum(weights)
    for d, w in zip(r.deployments, weights):
        expected = n * w / total
        assert abs(counts[d.name] - expected) <= 5 * (expected**0.5) + 1


def test_ordered_takes_the_first_candidate():
    r = route(strategy="ordered")
    assert pick(r, r.deployments).name == "eastus"
    assert pick(r, r.deployments[1:]).name == "openai:gpt-4o"


def test_least_busy_takes_the_fewest_in_flight():
    r = route(strategy="least_busy")
    busy = {"route:main/eastus": 3, "route:main/openai:gpt-4o": 1}
    assert pick(r, r.deployments, busy=busy).name == "openai:gpt-4o"


def test_lowest_latency_measures_each_then_prefers_the_fastest():
    r = route(strategy="lowest_latency")
    latencies = Latencies()
    assert pick(r, r.deployments, latencies=latencies).name == "eastus"  # unmeasured first
    latencies.add("route:main/eastus", 0.5)
    assert pick(r, r.deployments, latencies=latencies).name == "openai:gpt-4o"
    latencies.add("route:main/openai:gpt-4o", 0.9)
    assert pick(r, r.deployments, latencies=latencies).name == "eastus"


# --- cooldowns -----------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_cooldowns_expire_and_a_longer_one_wins():
    clock = Clock()
    store = InMemoryCooldowns(clock)
    store.cool_down("a", 10)
    store.cool_down("a", 5)  # shorter: the 10 s stays
    assert store.cooling(["a", "b"]) == {"a": 10.0}
    clock.now += 9.999
    assert "a" in store.cooling(["a"])
    clock.now += 0.001
    assert store.cooling(["a"]) == {}


def test_failures_are_counted_within_their_window():
    clock = Clock()
    store = InMemoryCooldowns(clock)
    assert store.failed("a", 60) == 1
    clock.now += 30
    assert store.failed("a", 60) == 2
    clock.now += 31  # the first is now out of the window
    assert store.failed("a", 60) == 2


def test_in_flight_counts_never_go_negative():
    store = InMemoryCooldowns()
    assert store.in_flight("a", 1) == 1
    assert store.in_flight("a", -1) == 0
    assert store.in_flight("a", -1) == 0
    assert store.in_flight_counts(["a", "b"]) == {"a": 0, "b": 0}


def test_which_errors_cool_a_deployment_down():
    r = route(allowed_failures=2, cooldown_seconds=30)
    assert cooldown_for(r, AuthenticationError("bad key", status_code=401), 1) == 30
    assert cooldown_for(r, QuotaExceededError("no credit", status_code=429), 1) == 30
    assert cooldown_for(r, ServerError("down", status_code=500), 1) is None
    assert cooldown_for(r, ServerError("down", status_code=500), 2) == 30
    held = RateLimitError("slow down", status_code=429, retry_after=90)
    assert cooldown_for(r, held, 2) == 90  # the server's word extends it
    assert cooldown_for(r, held, 2, max_hold=60) == 60  # within the hold cap
    assert cooldown_for(r, ValueError("not an API error"), 5) is None


def test_error_classes_for_fallbacks():
    assert is_unusable(AuthenticationError("x", status_code=401))
    assert not is_unusable(ServerError("x", status_code=500))
    refused = BadRequestError("x", status_code=400, code="content_filter")
    assert is_content_policy(refused)
    r = route(
        fallbacks=["openai:gpt-4o-mini"],
        context_window_fallbacks=["openai:gpt-4.1"],
        content_policy_fallbacks=["azure:gpt-4o"],
    )
    assert r.fallback_for(ContextWindowExceededError("long", status_code=400)) == (
        "openai:gpt-4.1",
    )
    assert r.fallback_for(refused) == ("azure:gpt-4o",)
    assert r.fallback_for(ServerError("x", status_code=500)) == ("openai:gpt-4o-mini",)
