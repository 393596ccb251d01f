"""The huggingface provider against a stand-in HF router, over real HTTP: chat round trips,
headers, model listing, configuration, environment precedence and plugin discovery."""

from __future__ import annotations

from typing import Any

import pytest

import chatcore
from chatcore.testing.server import Reply, StandInServer
from chatcore_huggingface import __version__

MODELS = [
    "meta-llama/Llama-3.1-8B-Instruct",
    "openai/gpt-oss-120b:groq",
    "deepseek-ai/DeepSeek-R1:fastest",
]


@pytest.mark.parametrize("model", MODELS)
def test_router_chat_round_trip_sends_model_ids_as_is(
    router: StandInServer, make_client: Any, token: str, model: str
) -> None:
    client = make_client(router.base_url)
    resp = client.chat(f"huggingface:{model}", "Hello there", max_tokens=50)
    assert resp.provider == "huggingface"
    assert resp.text.startswith("Hello from the chatcore stand-in server.")
    assert resp.model == model
    assert resp.request_id is not None
    assert resp.request_id.startswith("req_")
    assert resp.usage is not None
    assert resp.usage.total_tokens > 0
    (rec,) = router.requests
    assert (rec.method, rec.path) == ("POST", "/v1/chat/completions")
    assert rec.json()["model"] == model
    assert rec.json()["messages"] == [{"role": "user", "content": "Hello there"}]
    assert rec.header("authorization") == f"Bearer {token}"
    assert f"chatcore-huggingface/{__version__}" in (rec.header("user-agent") or "")


def test_router_headers_bill_to_and_wait_for_model(router: StandInServer, make_client: Any) -> None:
    client = make_client(router.base_url, bill_to="my-org", wait_for_model=True)
    client.chat("huggingface:meta-llama/Llama-3.1-8B-Instruct", "Hi")
    rec = router.last_request
    assert rec.header("x-hf-bill-to") == "my-org"
    assert rec.header("x-wait-for-model") == "true"


def test_optional_headers_are_not_sent_by_default(router: StandInServer, make_client: Any) -> None:
    make_client(router.base_url).chat("huggingface:m", "Hi")
    rec = router.last_request
    assert rec.header("x-hf-bill-to") is None
    assert rec.header("x-wait-for-model") is None


def test_router_body_follows_tgi_rules_and_the_openai_spec(
    router: StandInServer, make_client: Any
) -> None:
    client = make_client(router.base_url)
    client.chat("huggingface:m", "Hi", stop="\n", top_p=1.0, temperature=0.7, seed=1)
    body = router.last_request.json()
    assert body["stop"] == ["\n"]
    assert "top_p" not in body
    assert None not in body.values()
    assert (body["temperature"], body["seed"]) == (0.7, 1)


def test_router_tool_call_round_trip(router: StandInServer, make_client: Any) -> None:
    router.enqueue(Reply.chat(tool_calls=[{"name": "get_weather", "arguments": {"city": "Paris"}}]))
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    ]
    resp = make_client(router.base_url).chat("huggingface:m", "Weather?", tools=tools)
    assert resp.finish_reason == "tool_calls"
    assert resp.tool_calls[0].function.name == "get_weather"
    assert resp.tool_calls[0].function.arguments == '{"city":"Paris"}'
    assert router.last_request.json()["tools"][0]["function"]["name"] == "get_weather"


def test_list_models_from_the_router(router: StandInServer, make_client: Any) -> None:
    models = make_client(router.base_url).list_models("huggingface")
    assert "meta-llama/Llama-3.1-8B-Instruct" in [m.id for m in models]
    assert {m.provider for m in models} == {"huggingface"}
    assert (router.last_request.method, router.last_request.path) == ("GET", "/v1/models")


# --- configuration -------------------------------------------------------------------


def test_missing_token_for_the_default_router_names_hf_token() -> None:
    client = chatcore.Client(environ={}, max_retries=0)
    with pytest.raises(chatcore.ConfigurationError) as info:
        client.provider("huggingface")  # the factory runs here; no request is made
    message = str(info.value)
    assert "HF_TOKEN" in message
    assert "HUGGING_FACE_HUB_TOKEN" in message
    assert "CHATCORE_HUGGINGFACE_API_KEY" in message
    with pytest.raises(chatcore.ConfigurationError, match="HF_TOKEN"):
        client.chat("huggingface:meta-llama/Llama-3.1-8B-Instruct", "Hi")


def test_missing_token_for_an_explicit_router_url_is_caught_too() -> None:
    client = chatcore.Client(
        providers={"huggingface": {"base_url": "https://router.huggingface.co/v1/"}},
        environ={},
        max_retries=0,
    )
    with pytest.raises(chatcore.ConfigurationError, match="HF_TOKEN"):
        client.provider("huggingface")


def test_no_token_needed_with_a_custom_base_url(tgi: StandInServer, make_client: Any) -> None:
    resp = make_client(tgi.url, token=None).chat("huggingface:tgi", "Hi")
    assert resp.text
    assert tgi.last_request.header("authorization") is None


@pytest.mark.parametrize(
    ("environ", "explicit", "expected"),
    [
        ({"HF_TOKEN": "hf_fromHFTOKEN000"}, None, "hf_fromHFTOKEN000"),
        ({"HUGGING_FACE_HUB_TOKEN": "hf_fromHUB0000000"}, None, "hf_fromHUB0000000"),
        (
            {"HF_TOKEN": "hf_fromHFTOKEN000", "HUGGING_FACE_HUB_TOKEN": "hf_fromHUB0000000"},
            None,
            "hf_fromHFTOKEN000",
        ),
        (
            {"HF_TOKEN": "hf_fromHFTOKEN000", "CHATCORE_HUGGINGFACE_API_KEY": "hf_fromCHATCORE0"},
            None,
            "hf_fromCHATCORE0",
        ),
        (
            {"HF_TOKEN": "hf_fromHFTOKEN000", "CHATCORE_HUGGINGFACE_API_KEY": "hf_fromCHATCORE0"},
            "hf_explicit000000",
            "hf_explicit000000",
        ),
    ],
)
def test_token_precedence(
    router: StandInServer,
    make_client: Any,
    environ: dict[str, str],
    explicit: str | None,
    expected: str,
) -> None:
    router.api_key = expected
    client = make_client(router.base_url, environ=environ, token=explicit)
    client.chat("huggingface:m", "Hi")
    assert router.last_request.header("authorization") == f"Bearer {expected}"


def test_options_from_the_environment(router: StandInServer, make_client: Any) -> None:
    environ = {
        "HF_TOKEN": router.api_key or "",
        "CHATCORE_HUGGINGFACE_BASE_URL": router.base_url,
        "CHATCORE_HUGGINGFACE_BILL_TO": "env-org",
    }
    client = chatcore.Client(environ=environ, max_retries=0)
    try:
        client.chat("huggingface:m", "Hi")
    finally:
        client.close()
    assert router.last_request.header("x-hf-bill-to") == "env-org"


def test_bad_api_option_is_a_configuration_error() -> None:
    client = chatcore.Client(
        providers={"huggingface": {"base_url": "http://127.0.0.1:9", "api": "completions"}},
        environ={},
    )
    with pytest.raises(chatcore.ConfigurationError, match="api"):
        client.provider("huggingface")


def test_provider_repr_and_config_never_show_the_token(
    router: StandInServer, make_client: Any, token: str
) -> None:
    provider = make_client(router.base_url).provider("huggingface")
    assert token not in repr(provider)
    assert token not in repr(provider.config)
    assert provider.base_url == router.base_url
    assert provider.capabilities == frozenset(
        {"chat", "stream", "models", "text_generation", "tools", "json_object"}
    )


# --- plugin discovery ----------------------------------------------------------------


def test_entry_point_resolves() -> None:
    records = {r.name: r for r in chatcore.list_plugins()}
    record = records["huggingface"]
    assert record.ok
    assert record.providers == ("huggingface",)
    assert record.distribution == "chatcore-huggingface"
    assert record.version == __version__
    assert "huggingface" in chatcore.Client(environ={}).available_providers()


def test_spec_declares_options_and_token_variables() -> None:
    spec = chatcore.Client(environ={}).provider_spec("huggingface")
    assert spec.api_key_env == ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")
    options = spec.all_options()
    assert options["base_url"].default == "https://router.huggingface.co/v1"
    assert options["api"].choices == ("chat", "generate")
    assert options["api_key"].secret
    assert {"bill_to", "wait_for_model", "timeout", "connect_timeout", "pool_maxsize"} <= set(
        options
    )
    assert "stream" in spec.capabilities


def test_response_carries_the_answer_headers_when_the_core_has_them(
    router: StandInServer, make_client: Any
) -> None:
    import attrs

    resp = make_client(router.base_url).chat("huggingface:m", "Hi")
    if "headers" not in attrs.fields_dict(type(resp)):
        pytest.skip("this core's ChatResponse has no headers field")
    assert resp.headers is not None
    assert resp.headers["x-request-id"] == resp.request_id
