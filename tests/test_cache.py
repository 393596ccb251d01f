"""The response cache: keys (hypothesis: equal after normalization iff equal key; golden
key), the in-memory LRU + TTL cache under a fake timer (evictions apart from expirations),
thread safety, and the exact frozen form for shared backends."""

from __future__ import annotations

import enum
import hashlib
import itertools
import json
import math
import re
import threading
import types
from collections.abc import Mapping
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chatcore._cache import (
    CACHE_FORMAT_VERSION,
    CacheStats,
    InMemoryCache,
    ResponseCache,
    _json_key,
    cache_key,
    canonical_request_json,
    freeze_for_cache,
    strip_call_metadata,
    thaw_from_cache,
)
from chatcore.exceptions import ConfigurationError, ResponseDecodeError
from chatcore.models import (
    ChatRequest,
    ChatResponse,
    FunctionDefinition,
    Message,
    TextPart,
    Tool,
)
from chatcore.provider import Option, Provider, ProviderSpec, resolve_config
from chatcore.testing.strategies import chat_completions

BASE_URL = "https://api.example.invalid/v1"
VERSION = "1.2.3"
SECRET = "sk-cacheTESTsecret0123456789abcdef"


def key(request: ChatRequest, base_url: str = BASE_URL, version: str = VERSION) -> str:
    return cache_key(request, base_url=base_url, plugin_version=version)


def request(**kw: Any) -> ChatRequest:
    kw.setdefault("provider", "openai")
    kw.setdefault("model", "gpt-4o-mini")
    kw.setdefault("messages", (Message("user", "Hello"),))
    return ChatRequest(**kw)


class FakeTimer:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def response(text: str = "Paris", **meta: Any) -> ChatResponse:
    body = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "gpt-4o-mini",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6},
    }
    meta.setdefault("provider", "openai")
    return ChatResponse.from_dict(body, **meta)


# --------------------------------------------------------------------------------------
# Keys: an independent oracle of "equal after normalization"


def json_equal(a: Any, b: Any) -> bool:
    """Equal as JSON values: key order and list/tuple do not matter, 1 == 1.0, True != 1."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is bool and type(b) is bool and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return set(a) == set(b) and all(json_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def normalized(req: ChatRequest) -> dict[str, Any]:
    body = req.to_openai_dict()
    body.pop("stream", None)
    return {"provider": req.provider, "body": body}


TOOL_F = Tool(FunctionDefinition("f"))
TOOL_P1 = Tool(FunctionDefinition("f", parameters={"type": "object", "properties": {}}))
TOOL_P2 = Tool(FunctionDefinition("f", parameters={"properties": {}, "type": "object"}))

#: Small domains so that equal, equivalent and different values all come up often.
DOMAINS: dict[str, list[Any]] = {
    "provider": ["openai", "hf"],
    "model": ["m1", "m2"],
    "messages": [
        (Message("user", "hi"),),
        (Message("user", "hi"), Message("assistant", "yo")),
        (Message("user", (TextPart("hi"),)),),
        (Message("user", "hi", name="a"),),
    ],
    "temperature": [None, 0, 0.0, 1, 1.0, 0.5],
    "stop": [None, "x", ["x"], ("x",), ["x", "y"], ("y", "x")],
    "seed": [None, 1, 1.0, 2],
    "max_tokens": [None, 10],
    "logit_bias": [None, {"1": 1, "2": -1}, {"2": -1, "1": 1}, {"1": 1.0, "2": -1}, {"1": True}],
    "logprobs": [None, True, False],
    "tools": [None, (TOOL_F,), [TOOL_F], (TOOL_P1,), (TOOL_P2,), (TOOL_F, TOOL_P1)],
    "response_format": [
        None,
        {"type": "json_object"},
        {"type": "json_schema", "json_schema": {"name": "a", "strict": True}},
        {"json_schema": {"strict": True, "name": "a"}, "type": "json_schema"},
        {"type": "json_schema", "json_schema": {"name": "a", "strict": 1}},
    ],
    "stream": [False, True],
    "extra": [
        {},
        {"a": 1},
        {"a": 1.0},
        {"a": True},
        {"a": None},
        {"a": [1, 2]},
        {"a": (1, 2)},
        {"a": 1, "b": 2},
        {"b": 2, "a": 1},
        {"seed": 1},
        {"temperature": 0.5},
    ],
}
FIELDS = sorted(DOMAINS)


def field_values() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({name: st.sampled_from(DOMAINS[name]) for name in FIELDS})


@st.composite
def request_pairs(draw: st.DrawFn) -> tuple[ChatRequest, ChatRequest]:
    """Two requests that differ in at most a few fields (so equal keys come up often)."""
    first = draw(field_values())
    second = dict(first)
    for name in draw(st.lists(st.sampled_from(FIELDS), max_size=3, unique=True)):
        second[name] = draw(st.sampled_from(DOMAINS[name]))
    return ChatRequest(**first), ChatRequest(**second)


@settings(max_examples=400, deadline=None)
@given(request_pairs())
def test_two_requests_share_a_key_iff_equal_after_normalization(
    pair: tuple[ChatRequest, ChatRequest],
) -> None:
    a, b = pair
    assert (key(a) == key(b)) == json_equal(normalized(a), normalized(b))


@pytest.mark.parametrize(
    ("a", "b"),
    [
        pytest.param(request(temperature=1), request(temperature=1.0), id="1-vs-1.0"),
        pytest.param(request(temperature=0), request(temperature=-0.0), id="0-vs-minus-0.0"),
        pytest.param(request(stop=["a", "b"]), request(stop=("a", "b")), id="list-vs-tuple"),
        pytest.param(request(extra={"a": 1, "b": 2}), request(extra={"b": 2, "a": 1}), id="order"),
        pytest.param(
            request(response_format={"type": "json_object", "x": {"p": 1, "q": 2}}),
            request(response_format={"x": {"q": 2, "p": 1}, "type": "json_object"}),
            id="nested-order",
        ),
        pytest.param(request(seed=7), request(extra={"seed": 7}), id="same-body"),
        pytest.param(request(stream=False), request(stream=True), id="stream-ignored"),
        pytest.param(request(), request(), id="equal"),
    ],
)
def test_equivalent_requests_share_a_key(a: ChatRequest, b: ChatRequest) -> None:
    assert key(a) == key(b)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        pytest.param(request(extra={"a": True}), request(extra={"a": 1}), id="True-vs-1"),
        pytest.param(request(extra={"a": False}), request(extra={"a": 0}), id="False-vs-0"),
        pytest.param(request(extra={"a": None}), request(extra={}), id="null-vs-absent"),
        pytest.param(request(extra={"a": "1"}), request(extra={"a": 1}), id="str-vs-int"),
        pytest.param(request(stop="x"), request(stop=["x"]), id="str-vs-list"),
        pytest.param(request(stop=["x", "y"]), request(stop=["y", "x"]), id="list-order"),
        pytest.param(request(temperature=0.1), request(temperature=0.10000000000000002), id="ulp"),
    ],
)
def test_different_requests_never_share_a_key(a: ChatRequest, b: ChatRequest) -> None:
    assert key(a) != key(b)


@given(st.integers(-(2**64), 2**64))
def test_an_int_and_an_equal_float_share_a_key(number: int) -> None:
    same = float(number) == number
    assert (key(request(extra={"a": number})) == key(request(extra={"a": float(number)}))) is same


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_an_integral_float_shares_the_key_of_its_int(number: float) -> None:
    if number.is_integer():
        assert key(request(temperature=number)) == key(request(temperature=int(number)))
    else:
        assert key(request(temperature=number)) != key(request(temperature=math.floor(number)))


GOLDEN_REQUEST = ChatRequest(
    provider="openai",
    model="gpt-4o-mini",
    messages=(
        Message("system", "You are terse."),
        Message("user", "Capital of France? Réponds en français."),
        Message("assistant", "Paris."),
    ),
    temperature=0.2,
    max_tokens=64,
    stop=("\n\n",),
    tools=(Tool(FunctionDefinition("lookup", parameters={"type": "object"})),),
    response_format={"type": "json_object"},
    extra={"reasoning_effort": "low"},
)
GOLDEN_JSON = (
    '{"base_url":"https://api.openai.com/v1","plugin_version":"0.1.0","provider":"openai",'
    '"request":{"max_tokens":64,"messages":[{"content":"You are terse.","role":"system"},'
    '{"content":"Capital of France? Réponds en français.","role":"user"},'
    '{"content":"Paris.","role":"assistant"}],"model":"gpt-4o-mini",'
    '"reasoning_effort":"low","response_format":{"type":"json_object"},"stop":["\\n\\n"],'
    '"temperature":0.2,"tools":[{"function":{"name":"lookup","parameters":{"type":"object"}},'
    '"type":"function"}]},"v":1}'
)
GOLDEN_KEY = "1ab3c7673ba293cc09bb49fd6a37646dce691c0e644caaa6be9f77ce6cf7de72"


def test_key_is_stable_across_calls_and_processes() -> None:
    """A hard-coded golden key: a change here invalidates every shared cache, so it must
    come with a bump of CACHE_FORMAT_VERSION."""
    args = {"base_url": "https://api.openai.com/v1", "plugin_version": "0.1.0"}
    assert CACHE_FORMAT_VERSION == 1
    assert canonical_request_json(GOLDEN_REQUEST, **args) == GOLDEN_JSON
    assert cache_key(GOLDEN_REQUEST, **args) == GOLDEN_KEY
    assert cache_key(GOLDEN_REQUEST, **args) == GOLDEN_KEY
    assert cache_key(attrs.evolve(GOLDEN_REQUEST), **args) == GOLDEN_KEY


CHANGES: dict[str, Any] = {
    "provider": "azure",
    "model": "gpt-4o",
    "messages": (Message("user", "Hello!"),),
    "temperature": 0.3,
    "top_p": 0.9,
    "n": 2,
    "stop": "END",
    "max_tokens": 10,
    "max_completion_tokens": 10,
    "seed": 1,
    "presence_penalty": 0.5,
    "frequency_penalty": 0.5,
    "logit_bias": {"50256": -100},
    "logprobs": True,
    "top_logprobs": 2,
    "user": "u-1",
    "tools": (TOOL_F,),
    "tool_choice": "auto",
    "parallel_tool_calls": False,
    "response_format": {"type": "json_object"},
    "extra": {"reasoning_effort": "low"},
}


def test_every_request_field_but_stream_is_covered() -> None:
    assert set(CHANGES) | {"stream"} == {f.name for f in attrs.fields(ChatRequest)}


def test_key_changes_with_any_single_input() -> None:
    base = request()
    keys = {"base": key(base)}
    for name, value in CHANGES.items():
        keys[name] = key(attrs.evolve(base, **{name: value}))
    keys["base_url"] = key(base, base_url="https://other.example.invalid/v1")
    keys["plugin_version"] = key(base, version="1.2.4")
    assert len(set(keys.values())) == len(keys), keys


def test_trailing_slash_of_base_url_does_not_matter() -> None:
    assert key(request(), base_url=BASE_URL + "/") == key(request(), base_url=BASE_URL)


def test_key_is_the_sha256_hex_digest_of_the_canonical_json() -> None:
    k = key(request())
    assert re.fullmatch(r"[0-9a-f]{64}", k), k
    text = canonical_request_json(request(), base_url=BASE_URL, plugin_version=VERSION)
    assert k == hashlib.sha256(text.encode("utf-8")).hexdigest()
    other = canonical_request_json(request(), base_url=BASE_URL, plugin_version="9.9.9")
    assert k != hashlib.sha256(other.encode("utf-8")).hexdigest()


def test_key_never_holds_the_secret() -> None:
    class Bare(Provider):
        pass

    spec = ProviderSpec(
        name="openai",
        factory=Bare,
        options={"base_url": Option(default=BASE_URL)},
        version=VERSION,
    )
    provider = Bare(resolve_config(spec, {"api_key": SECRET}, environ={}))
    text = canonical_request_json(request(), base_url=provider.base_url, plugin_version=VERSION)
    assert SECRET not in text
    assert SECRET not in cache_key(request(), base_url=provider.base_url, plugin_version=VERSION)


def test_a_value_that_is_not_json_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="set value is not JSON"):
        key(request(extra={"a": {1, 2}}))


# --------------------------------------------------------------------------------------
# InMemoryCache


def make_cache(maxsize: int = 3, ttl: float | None = 10.0) -> tuple[InMemoryCache, FakeTimer]:
    timer = FakeTimer()
    return InMemoryCache(maxsize, ttl, timer=timer), timer


def test_in_memory_cache_is_a_response_cache() -> None:
    assert isinstance(InMemoryCache(), ResponseCache)


def test_least_recently_used_is_evicted_and_counted_as_eviction() -> None:
    cache, _ = make_cache(maxsize=2)
    a, b, c = response("a"), response("b"), response("c")
    cache.set("a", a)
    cache.set("b", b)
    assert cache.get("a") == a  # a is now the most recently used
    cache.set("c", c)
    assert cache.get("b") is None
    assert cache.get("a") == a
    assert cache.get("c") == c
    stats = cache.stats()
    assert (stats.evictions, stats.expirations, stats.size) == (1, 0, 2)


def test_overwriting_a_key_is_not_an_eviction() -> None:
    cache, _ = make_cache(maxsize=2)
    cache.set("a", response("a"))
    cache.set("a", response("b"))
    assert cache.get("a") == response("b")
    assert cache.stats() == CacheStats(hits=1, misses=0, size=1, maxsize=2)


def test_expiry_is_counted_as_expiration_not_eviction() -> None:
    cache, timer = make_cache(maxsize=2, ttl=5.0)
    cache.set("a", response())
    timer.now += 4.999
    assert cache.get("a") is not None
    timer.now += 0.001  # exactly ttl seconds after set: gone
    assert cache.get("a") is None
    stats = cache.stats()
    assert (stats.hits, stats.misses, stats.evictions, stats.expirations, stats.size) == (
        1,
        1,
        0,
        1,
        0,
    )


def test_a_full_cache_drops_expired_entries_before_evicting_live_ones() -> None:
    cache, timer = make_cache(maxsize=2)
    cache.set("short", response("s"), ttl=1.0)
    cache.set("long", response("l"), ttl=100.0)
    timer.now += 2.0
    cache.set("new", response("n"))
    assert cache.get("long") is not None
    assert cache.get("new") is not None
    stats = cache.stats()
    assert (stats.evictions, stats.expirations, stats.size) == (0, 1, 2)


def test_evictions_and_expirations_add_up() -> None:
    cache, timer = make_cache(maxsize=3, ttl=10.0)
    for i in range(5):  # 2 evictions
        cache.set(f"k{i}", response())
    timer.now += 10.0  # the 3 left expire
    cache.set("fresh", response())
    stats = cache.stats()
    assert (stats.evictions, stats.expirations, stats.size) == (2, 3, 1)


def test_per_entry_ttl_overrides_the_default() -> None:
    cache, timer = make_cache(maxsize=4, ttl=10.0)
    cache.set("short", response(), ttl=1.0)
    cache.set("long", response(), ttl=60.0)
    cache.set("default", response())
    cache.set("forever", response(), ttl=math.inf)
    timer.now += 1.0
    assert cache.get("short") is None
    assert cache.get("default") is not None
    timer.now += 9.0
    assert cache.get("default") is None
    assert cache.get("long") is not None
    timer.now += 1e9
    assert cache.get("long") is None
    assert cache.get("forever") is not None
    stats = cache.stats()
    assert (stats.expirations, stats.evictions) == (3, 0)


def test_ttl_none_never_expires() -> None:
    cache, timer = make_cache(ttl=None)
    cache.set("a", response())
    timer.now += 1e12
    assert cache.get("a") is not None
    assert cache.stats().expirations == 0


def test_stats_and_hit_ratio() -> None:
    cache, _ = make_cache()
    assert cache.stats() == CacheStats(maxsize=3)
    assert cache.stats().hit_ratio == 0.0
    cache.set("a", response())
    for _ in range(3):
        cache.get("a")
    cache.get("missing")
    stats = cache.stats()
    assert (stats.hits, stats.misses, stats.lookups, stats.hit_ratio) == (3, 1, 4, 0.75)
    assert stats.to_dict() == {
        "hits": 3,
        "misses": 1,
        "evictions": 0,
        "expirations": 0,
        "size": 1,
        "maxsize": 3,
        "lookups": 4,
        "hit_ratio": 0.75,
    }
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        stats.hits = 0  # type: ignore[misc]


def test_clear_drops_entries_and_keeps_counters() -> None:
    cache, _ = make_cache()
    cache.set("a", response())
    cache.set("b", response())
    cache.get("a")
    cache.clear()
    assert len(cache) == 0
    assert cache.get("a") is None
    assert cache.stats() == CacheStats(hits=1, misses=1, size=0, maxsize=3)


def test_a_hit_returns_clean_data_without_per_call_metadata() -> None:
    cache, _ = make_cache()
    original = response(
        request_id="req-1", latency=1.25, attempts=3, cached=True, headers={"x-request-id": "r"}
    )
    cache.set("a", original)
    hit = cache.get("a")
    assert hit is not None
    assert (hit.latency, hit.attempts, hit.cached, hit.headers) == (0.0, 1, False, None)
    assert (hit.provider, hit.request_id) == ("openai", "req-1")
    assert hit.to_dict() == original.to_dict()
    assert cache.get("a") is hit  # shared as is: frozen


def test_strip_call_metadata_returns_a_clean_response_itself() -> None:
    clean = response()
    assert strip_call_metadata(clean) is clean


@pytest.mark.parametrize(
    "meta",
    [
        {"latency": 0.25},
        {"attempts": 3},
        {"headers": {"x-request-id": "req_1"}},
        {"cached": True},
    ],
)
def test_any_one_piece_of_call_metadata_is_stripped(meta: dict[str, Any]) -> None:
    stripped = strip_call_metadata(attrs.evolve(response(), **meta))
    assert (stripped.latency, stripped.attempts, stripped.headers, stripped.cached) == (
        0.0,
        1,
        None,
        False,
    )
    assert stripped == response()


def test_cache_defaults_and_the_smallest_size() -> None:
    cache = InMemoryCache()
    assert (cache.maxsize, cache.ttl) == (1024, 3600.0)
    assert cache.stats().maxsize == 1024
    one = InMemoryCache(maxsize=1)
    one.set("a", response("A"))
    one.set("b", response("B"))
    assert len(one) == 1
    assert one.get("b") is not None


@pytest.mark.parametrize(
    ("ttl", "shown"),
    [(None, "None"), (3600.0, "3600"), (90.5, "90.5"), (1e-3, "0.001")],
)
def test_cache_repr(ttl: float | None, shown: str) -> None:
    assert repr(InMemoryCache(maxsize=5, ttl=ttl)) == f"<InMemoryCache maxsize=5 ttl={shown}>"


@pytest.mark.parametrize("maxsize", [0, -1, 1.5, True, "10", None])
def test_invalid_maxsize_is_a_configuration_error(maxsize: Any) -> None:
    with pytest.raises(ConfigurationError, match=f"cache_maxsize={maxsize!r}"):
        InMemoryCache(maxsize)


@pytest.mark.parametrize("ttl", [0, -1.0, math.nan, True, "60"])
def test_invalid_ttl_is_a_configuration_error(ttl: Any) -> None:
    with pytest.raises(ConfigurationError, match=f"cache_ttl={ttl!r}"):
        InMemoryCache(ttl=ttl)
    with pytest.raises(ConfigurationError, match=f"ttl={ttl!r}"):
        InMemoryCache().set("a", response(), ttl=ttl)


def test_thread_safety_under_eight_threads() -> None:
    ticks = itertools.count()
    cache = InMemoryCache(maxsize=16, ttl=None, timer=lambda: next(ticks) * 0.001)
    answers = [response(str(i)) for i in range(40)]
    errors: list[BaseException] = []
    lookups = [0] * 8
    start = threading.Barrier(8)

    def hammer(worker: int) -> None:
        try:
            start.wait()
            for i in range(3000):
                n = (i * 7 + worker * 13) % 40
                if i % 3 == 0:
                    # odd keys live 10 ticks (expirations), even ones until evicted
                    cache.set(f"k{n}", answers[n], ttl=0.01 if n % 2 else None)
                else:
                    got = cache.get(f"k{n}")
                    lookups[worker] += 1
                    assert got is None or got == answers[n]
                if i % 500 == 0:
                    cache.stats()
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=hammer, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    stats = cache.stats()
    assert stats.hits + stats.misses == sum(lookups)
    assert stats.hits > 0
    assert stats.misses > 0
    assert stats.evictions > 0
    assert stats.expirations > 0
    assert 0 <= stats.size <= 16


# --------------------------------------------------------------------------------------
# Frozen form for shared backends


@settings(max_examples=200, deadline=None)
@given(
    chat_completions(),
    st.sampled_from(["", "openai", "hf"]),
    st.none() | st.text(max_size=20),
)
def test_freeze_thaw_round_trip_is_exact(
    body: dict[str, Any], provider: str, request_id: str | None
) -> None:
    original = ChatResponse.from_dict(body, provider=provider, request_id=request_id)
    frozen = freeze_for_cache(original)
    through_json = json.loads(json.dumps(frozen))
    assert through_json == frozen
    thawed = thaw_from_cache(through_json, provider)
    assert thawed == original
    assert thawed.to_dict() == body
    assert (thawed.provider, thawed.request_id) == (provider, request_id)


def test_freeze_leaves_per_call_metadata_out() -> None:
    original = response(request_id="r1", latency=2.0, attempts=2, headers={"a": "b"})
    frozen = freeze_for_cache(original)
    assert set(frozen) == {"v", "provider", "request_id", "response"}
    assert thaw_from_cache(frozen, "openai") == strip_call_metadata(original)


def test_thaw_uses_the_looked_up_provider_when_the_entry_names_none() -> None:
    frozen = freeze_for_cache(response(provider=""))
    assert thaw_from_cache(frozen, "hf").provider == "hf"


@pytest.mark.parametrize(
    "data",
    [
        {"v": CACHE_FORMAT_VERSION + 1, "response": {}},
        {"response": {}},
        {"v": CACHE_FORMAT_VERSION, "response": "nope"},
        {"v": CACHE_FORMAT_VERSION, "provider": 3, "response": {}},
        {"v": CACHE_FORMAT_VERSION, "response": {"id": "x"}},
        "not a mapping",
    ],
)
def test_thaw_rejects_other_formats_and_broken_entries(data: Any) -> None:
    with pytest.raises(ResponseDecodeError):
        thaw_from_cache(data, "openai")


@given(
    st.one_of(
        st.text(),
        st.integers(),
        st.floats(allow_nan=False, allow_infinity=False),
        st.booleans(),
        st.none(),
    )
)
def test_a_mapping_key_is_written_as_json_dumps_writes_it(k: Any) -> None:
    assert _json_key(k) == next(iter(json.loads(json.dumps({k: 0}))))


@pytest.mark.parametrize(("k", "text"), [(True, "true"), (False, "false"), (None, "null")])
def test_the_json_constants_as_mapping_keys(k: Any, text: str) -> None:
    assert _json_key(k) == text
    a = key(request(extra={"m": {k: 1}}))
    assert a == key(request(extra={"m": {text: 1}}))
    assert a != key(request(extra={"m": {str(k): 1}}))


def test_a_mapping_key_that_is_not_json_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="a tuple mapping key is not JSON"):
        key(request(extra={"m": {(1, 2): 1}}))


def test_the_ttl_given_is_kept() -> None:
    assert InMemoryCache(ttl=None).ttl is None
    assert InMemoryCache(ttl=5).ttl == 5


class _Number(enum.IntEnum):
    TWO = 2


class _Float(float):
    pass


class _Text(str):
    pass


class _List(list[Any]):
    pass


@pytest.mark.parametrize(
    ("odd", "plain"),
    [
        (types.MappingProxyType({"a": 1}), {"a": 1}),
        (_List([1, "x"]), [1, "x"]),
        (_Number.TWO, 2),
        (_Float(2.0), 2),
        (_Float(2.5), 2.5),
        (_Text("hi"), "hi"),
    ],
)
def test_subclasses_of_json_types_share_the_key_of_the_plain_value(odd: Any, plain: Any) -> None:
    assert key(request(extra={"m": odd})) == key(request(extra={"m": plain}))


def test_only_trailing_slashes_of_the_base_url_are_dropped() -> None:
    assert key(request(), base_url="https://h.invalid/vX") != key(
        request(), base_url="https://h.invalid/v"
    )
    text = canonical_request_json(request(), base_url="https://h.invalid/v1//", plugin_version="1")
    assert '"base_url":"https://h.invalid/v1"' in text


@pytest.mark.parametrize(
    ("data", "shown"),
    [({"v": 2, "response": {}}, "2"), ({"response": {}}, "None"), (["v", 1], "None")],
)
def test_an_entry_of_another_format_names_its_format(data: Any, shown: str) -> None:
    with pytest.raises(ResponseDecodeError) as info:
        thaw_from_cache(data, "openai")
    assert info.value.message == f"cached entry has format {shown}, expected {CACHE_FORMAT_VERSION}"
    assert info.value.provider == "openai"
    with pytest.raises(ResponseDecodeError) as info:
        thaw_from_cache(data, "")
    assert info.value.provider is None


def test_a_malformed_entry_names_the_provider() -> None:
    with pytest.raises(ResponseDecodeError) as info:
        thaw_from_cache({"v": CACHE_FORMAT_VERSION, "response": []}, "openai")
    assert (info.value.message, info.value.provider) == ("cached entry is malformed", "openai")
    with pytest.raises(ResponseDecodeError) as info:
        thaw_from_cache({"v": CACHE_FORMAT_VERSION, "response": []}, "")
    assert info.value.provider is None


def test_thaw_keeps_the_provider_and_request_id_the_entry_names() -> None:
    frozen = freeze_for_cache(attrs.evolve(response(provider="azure"), request_id="req_5"))
    thawed = thaw_from_cache(frozen, "openai")
    assert (thawed.provider, thawed.request_id) == ("azure", "req_5")
    bare = {k: v for k, v in frozen.items() if k not in ("provider", "request_id")}
    thawed = thaw_from_cache(bare, "openai")
    assert thawed.provider == "openai"


@pytest.mark.parametrize(
    "extra",
    [{"request_id": 5}, {"provider": 3}, {"request_id": 5, "provider": 3}],
)
def test_an_entry_with_a_wrong_request_id_or_provider_is_malformed(extra: dict[str, Any]) -> None:
    frozen = {**freeze_for_cache(response()), **extra}
    with pytest.raises(ResponseDecodeError, match="cached entry is malformed"):
        thaw_from_cache(frozen, "openai")
