"""The translate-only contract of the ``openai`` and ``azure`` providers.

Most of these tests use no server at all: a request becomes an :class:`HttpCall`, an
:class:`HttpResult` a response or a typed error, and :class:`SSEEvent` objects fed to the
provider's stream decoder become chunks. The last section sends through the provider's own
default ``chat`` / ``stream`` / ``list_models`` (the core's requests transport, built from
the target) and checks that what reaches the stand-in server is exactly what the translate
methods described."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from chatcore import exceptions as exc
from chatcore.models import ChatRequest, Message
from chatcore.provider import (
    HttpCall,
    HttpResult,
    OpenAIStreamDecoder,
    Provider,
    SSEEvent,
    decode_events,
    resolve_config,
)
from chatcore.testing.server import Reply, StandInServer
from chatcore_openai import __version__
from chatcore_openai._azure import SPEC as AZURE_SPEC
from chatcore_openai._azure import AzureOpenAIProvider
from chatcore_openai._provider import SPEC as OPENAI_SPEC
from chatcore_openai._provider import OpenAIProvider

OPENAI_KEY = "sk-test-translateSECRET0123456789abcd"
AZURE_KEY = "azureTranslateSECRETkey0123456789ab"
AD_TOKEN = "eyTranslateADtokenSECRET0123456789"
BASE_URL = "https://api.example.invalid/v1"
ENDPOINT = "https://myres.openai.example.invalid"

HELLO = [{"role": "user", "content": "Hello"}]


def openai(**options: Any) -> OpenAIProvider:
    settings = {"api_key": OPENAI_KEY, "base_url": BASE_URL, **options}
    return OpenAIProvider(resolve_config(OPENAI_SPEC, settings, environ={}))


def azure(**options: Any) -> AzureOpenAIProvider:
    settings = {"api_key": AZURE_KEY, "endpoint": ENDPOINT, **options}
    return AzureOpenAIProvider(resolve_config(AZURE_SPEC, settings, environ={}))


def request(model: str = "gpt-4o-mini", **kw: Any) -> ChatRequest:
    kw.setdefault("messages", (Message("user", "Hello"),))
    return ChatRequest(provider="openai", model=model, **kw)


def result(
    data: Any = None,
    *,
    status: int = 200,
    headers: dict[str, str] | None = None,
    request_id: str | None = "req_1",
) -> HttpResult:
    if headers is None:
        headers = {"x-request-id": request_id} if request_id else {}
    return HttpResult(status, headers, data, 0.01, request_id)


def completion(text: str = "hi", **extra: Any) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-4o-mini",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
        ],
        **extra,
    }


def chunk(content: str | None = None, finish: str | None = None, **extra: Any) -> SSEEvent:
    delta = {} if content is None else {"content": content}
    payload = {
        "id": "chatcmpl-s",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "gpt-4o-mini",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        **extra,
    }
    return SSEEvent(json.dumps(payload))


DONE = SSEEvent("[DONE]")
USAGE = SSEEvent(
    json.dumps(
        {
            "id": "chatcmpl-s",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "gpt-4o-mini",
            "choices": [],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
        }
    )
)


@pytest.fixture(params=["openai", "azure"])
def provider(request: pytest.FixtureRequest) -> Iterator[Provider]:
    """Each provider, built with no server and closed at teardown."""
    made = openai() if request.param == "openai" else azure()
    yield made
    made.close()


# --------------------------------------------------------------------------------------
# The target: where requests go and what each carries; no transport is built


def test_openai_target() -> None:
    provider = openai(base_url=BASE_URL + "/", organization="org-1", project="proj_1")
    target = provider.target
    assert target is not None
    assert target.base_url == BASE_URL
    assert target.headers == {
        "Authorization": f"Bearer {OPENAI_KEY}",
        "OpenAI-Organization": "org-1",
        "OpenAI-Project": "proj_1",
    }
    assert target.params == {}
    assert provider.base_url == BASE_URL
    assert OPENAI_KEY not in repr(target)
    assert OPENAI_KEY not in repr(provider)


def test_openai_target_without_organization_or_project() -> None:
    target = openai().target
    assert target is not None
    assert target.headers == {"Authorization": f"Bearer {OPENAI_KEY}"}


def test_azure_dated_target() -> None:
    provider = azure(endpoint=ENDPOINT + "/openai/")
    target = provider.target
    assert target is not None
    assert target.base_url == f"{ENDPOINT}/openai"
    assert target.headers == {"api-key": AZURE_KEY}
    assert target.params == {"api-version": "2024-10-21"}
    # the cache-key base URL is the deployments path, not the target's
    assert provider.base_url == f"{ENDPOINT}/openai/deployments?api-version=2024-10-21"
    assert AZURE_KEY not in repr(target)


def test_azure_v1_target_has_no_api_version() -> None:
    provider = azure(endpoint=ENDPOINT + "/openai/v1", api_version="v1")
    target = provider.target
    assert target is not None
    assert target.base_url == f"{ENDPOINT}/openai/v1"
    assert target.params == {}
    assert provider.base_url == f"{ENDPOINT}/openai/v1"


def test_azure_ad_token_target() -> None:
    target = azure(api_key=None, ad_token=AD_TOKEN).target
    assert target is not None
    assert target.headers == {"Authorization": f"Bearer {AD_TOKEN}"}


def test_a_provider_only_translates(provider: Provider) -> None:
    assert provider.translates
    assert not hasattr(provider, "http")
    req = request()
    provider.prepare_chat(req)
    provider.prepare_stream(req)
    provider.prepare_models()
    provider.parse_chat(req, result(completion()))
    provider.parse_models(result({"data": []}))
    list(decode_events([chunk("a"), DONE], provider.stream_decoder(req, result())))
    assert provider.transport is None  # nothing above built a transport


# --------------------------------------------------------------------------------------
# prepare_chat


def test_openai_prepare_chat() -> None:
    call = openai().prepare_chat(request(temperature=0.5))
    assert call == HttpCall(
        "POST",
        "/chat/completions",
        json={"model": "gpt-4o-mini", "messages": HELLO, "temperature": 0.5},
    )
    assert (call.stream, call.params, call.headers, call.timeout) == (False, None, None, None)


def test_azure_dated_prepare_chat_posts_to_the_deployment_without_a_model() -> None:
    assert azure().prepare_chat(request("my-gpt4o")) == HttpCall(
        "POST", "/deployments/my-gpt4o/chat/completions", json={"messages": HELLO}
    )


def test_azure_deployment_names_are_quoted_into_the_path() -> None:
    call = azure().prepare_chat(request("a/b c?"))
    assert call.path == "/deployments/a%2Fb%20c%3F/chat/completions"


def test_azure_deployment_option_wins_over_the_model() -> None:
    call = azure(deployment="fixed-dep").prepare_chat(request("whatever"))
    assert call.path == "/deployments/fixed-dep/chat/completions"


def test_azure_v1_prepare_chat_sends_the_deployment_as_model() -> None:
    assert azure(api_version="v1").prepare_chat(request("my-gpt4o")) == HttpCall(
        "POST", "/chat/completions", json={"model": "my-gpt4o", "messages": HELLO}
    )
    call = azure(api_version="v1", deployment="fixed-dep").prepare_chat(request("whatever"))
    assert call.json["model"] == "fixed-dep"


def test_prepare_chat_never_sends_stream_fields() -> None:
    call = openai().prepare_chat(
        request(stream=True, extra={"stream_options": {"include_usage": True}})
    )
    assert not {"stream", "stream_options"} & set(call.json)


@pytest.mark.parametrize("prepare", ["prepare_chat", "prepare_stream"])
def test_what_the_api_would_refuse_is_a_validation_error(provider: Provider, prepare: str) -> None:
    with pytest.raises(exc.ValidationError) as info:
        getattr(provider, prepare)(request(extra={"model": "x", "max_new_tokens": 5}))
    assert info.value.problems == (
        ("extra.model", "'model' comes from the request; it cannot be set in extra"),
        (
            "extra.max_new_tokens",
            "'max_new_tokens' is a text-generation-inference parameter that OpenAI-compatible "
            "APIs reject; use max_completion_tokens (or max_tokens)",
        ),
    )


# --------------------------------------------------------------------------------------
# parse_chat


def test_parse_chat(provider: Provider) -> None:
    response = provider.parse_chat(request(), result(completion("hello"), request_id="req_42"))
    assert response.text == "hello"
    assert response.provider == provider.name
    assert response.request_id == "req_42"
    assert response.headers == {"x-request-id": "req_42"}


def test_azure_request_id_falls_back_to_apim() -> None:
    answer = result(completion(), headers={"apim-request-id": "apim-7"}, request_id=None)
    assert azure().parse_chat(request(), answer).request_id == "apim-7"
    assert openai().parse_chat(request(), answer).request_id is None  # Azure's header only
    both = result(completion(), headers={"apim-request-id": "apim-7"}, request_id="req_x")
    assert azure().parse_chat(request(), both).request_id == "req_x"


def test_a_200_error_body_is_a_decode_error_without_the_key() -> None:
    answer = result({"error": {"message": f"invalid key {OPENAI_KEY}"}}, request_id="req_9")
    with pytest.raises(exc.ResponseDecodeError) as info:
        openai().parse_chat(request(), answer)
    err = info.value
    assert err.message == "the server answered 200 with an error body: invalid key ***"
    assert err.body == {"error": {"message": "invalid key ***"}}
    assert (err.provider, err.model, err.status_code, err.request_id) == (
        "openai",
        "gpt-4o-mini",
        200,
        "req_9",
    )


def test_azure_masks_every_secret_option_in_decode_errors() -> None:
    provider = azure(ad_token=AD_TOKEN)  # both set: the key (an argument) is sent
    answer = result({"error": f"{AZURE_KEY} and {AD_TOKEN}"})
    with pytest.raises(exc.ResponseDecodeError) as info:
        provider.parse_chat(request("dep"), answer)
    assert info.value.body == {"error": "*** and ***"}
    assert (info.value.provider, info.value.model) == ("azure", "dep")


def test_parse_chat_refuses_what_is_not_a_completion(provider: Provider) -> None:
    with pytest.raises(exc.ResponseDecodeError, match="got a JSON array"):
        provider.parse_chat(request(), result([1]))


# --------------------------------------------------------------------------------------
# prepare_stream


def test_openai_prepare_stream_asks_for_usage() -> None:
    assert openai().prepare_stream(request(max_tokens=5)) == HttpCall(
        "POST",
        "/chat/completions",
        json={
            "model": "gpt-4o-mini",
            "messages": HELLO,
            "max_tokens": 5,
            "stream": True,
            "stream_options": {"include_usage": True},
        },
        stream=True,
    )


def test_prepare_stream_keeps_the_caller_s_stream_options() -> None:
    call = openai().prepare_stream(request(extra={"stream_options": {"include_usage": False}}))
    assert call.json["stream_options"] == {"include_usage": False}
    call = openai().prepare_stream(request(extra={"stream_options": {}}))
    assert call.json["stream_options"] == {}


def test_azure_prepare_stream() -> None:
    assert azure().prepare_stream(request("my-gpt4o")) == HttpCall(
        "POST",
        "/deployments/my-gpt4o/chat/completions",
        json={"messages": HELLO, "stream": True, "stream_options": {"include_usage": True}},
        stream=True,
    )
    call = azure(api_version="v1").prepare_stream(request("my-gpt4o"))
    assert (call.path, call.json["model"], call.stream) == ("/chat/completions", "my-gpt4o", True)


def test_each_prepared_call_has_its_own_body() -> None:
    provider = openai()
    first = provider.prepare_stream(request())
    first.json["stream_options"]["include_usage"] = False
    assert provider.prepare_stream(request()).json["stream_options"] == {"include_usage": True}


# --------------------------------------------------------------------------------------
# The stream decoder, fed events by hand


def test_stream_decoder_turns_events_into_chunks(provider: Provider) -> None:
    decoder = provider.stream_decoder(request("dep"), result())
    assert isinstance(decoder, OpenAIStreamDecoder)
    chunks = [
        c for event in (chunk("Hel"), chunk("lo"), chunk(None, "stop")) for c in decoder.feed(event)
    ]
    assert [c.text for c in chunks] == ["Hel", "lo", ""]
    assert chunks[-1].finish_reason == "stop"
    assert all(c.provider == provider.name for c in chunks)
    assert not decoder.done
    (usage,) = decoder.feed(USAGE)
    assert usage.choices == ()
    assert usage.usage is not None and usage.usage.total_tokens == 5
    assert tuple(decoder.feed(DONE)) == ()
    assert decoder.done


def test_a_chunk_without_a_model_takes_the_request_s() -> None:
    decoder = openai().stream_decoder(request("my-model"), result())
    (got,) = decoder.feed(SSEEvent(json.dumps({"choices": [{"index": 0, "delta": {}}]})))
    assert got.model == "my-model"


def test_azure_s_empty_first_chunk_is_no_error() -> None:
    first = SSEEvent(
        json.dumps({"id": "", "model": "", "choices": [], "prompt_filter_results": [{}]})
    )
    got = list(
        decode_events([first, chunk("x"), DONE], azure().stream_decoder(request("dep"), result()))
    )
    assert got[0].choices == () and got[0].id == "" and got[0].model == "dep"
    assert [c.text for c in got] == ["", "x"]


def test_each_stream_gets_a_fresh_decoder(provider: Provider) -> None:
    first = provider.stream_decoder(request(), result())
    second = provider.stream_decoder(request(), result())
    assert first is not second
    first.feed(DONE)
    assert first.done and not second.done


def test_a_stream_ending_without_done_is_a_stream_error(provider: Provider) -> None:
    decoder = provider.stream_decoder(request(), result())
    with pytest.raises(exc.StreamError) as info:
        list(decode_events([chunk("one "), chunk("two")], decoder))
    assert "without its [DONE] terminator" in info.value.message
    assert info.value.partial_text == "one two"
    assert (info.value.provider, info.value.model) == (provider.name, "gpt-4o-mini")


def test_an_in_band_error_is_a_stream_error_without_the_key() -> None:
    decoder = openai().stream_decoder(request(), result())
    echoed = SSEEvent(
        json.dumps({"error": {"message": f"bad key {OPENAI_KEY}", "type": "server_error"}})
    )
    with pytest.raises(exc.StreamError) as info:
        list(decode_events([chunk("Par"), echoed], decoder))
    err = info.value
    assert err.partial_text == "Par"
    assert err.should_retry
    assert "bad key ***" in str(err)
    assert err.body == {"error": {"message": "bad key ***", "type": "server_error"}}
    for text in (str(err), repr(err), json.dumps(err.body)):
        assert OPENAI_KEY not in text


def test_an_event_that_is_not_json_is_a_stream_error() -> None:
    decoder = azure().stream_decoder(request(), result())
    with pytest.raises(exc.StreamError, match="a stream event is not JSON"):
        decoder.feed(SSEEvent("{nope"))


# --------------------------------------------------------------------------------------
# prepare_models / parse_models


@pytest.mark.parametrize(
    "make", [openai, azure, lambda: azure(api_version="v1")], ids=["openai", "azure", "azure-v1"]
)
def test_prepare_models(make: Any) -> None:
    assert make().prepare_models() == HttpCall("GET", "/models")


def test_parse_models(provider: Provider) -> None:
    data = {"object": "list", "data": [{"id": "m1", "owned_by": "o", "created": 7}, {"x": 1}]}
    (model,) = provider.parse_models(result(data))
    assert (model.id, model.provider, model.owned_by, model.created) == (
        "m1",
        provider.name,
        "o",
        7,
    )


def test_a_model_list_that_is_not_one_is_a_decode_error_without_the_key() -> None:
    with pytest.raises(exc.ResponseDecodeError) as info:
        openai().parse_models(result({"error": f"nope {OPENAI_KEY}"}, status=203))
    assert (
        info.value.message == "expected a model list object with a 'data' array, got a JSON object"
    )
    assert info.value.body == {"error": "nope ***"}
    assert (info.value.provider, info.value.status_code) == ("openai", 203)


# --------------------------------------------------------------------------------------
# Over HTTP: the base class's chat / stream / list_models send what was translated


def test_the_sync_transport_is_built_from_the_target() -> None:
    provider = azure()
    try:
        transport = provider.sync_transport()
        assert provider.sync_transport() is transport
        assert provider.transport is transport
        assert transport.base_url == f"{ENDPOINT}/openai"
        assert transport.params == {"api-version": "2024-10-21"}
        assert transport.session.headers["api-key"] == AZURE_KEY
        assert f"chatcore-openai/{__version__}" in transport.user_agent
        assert AZURE_KEY in transport.secrets
    finally:
        provider.close()


def test_openai_chat_sends_what_prepare_chat_describes(
    server: StandInServer, openai_key: str
) -> None:
    provider = openai(api_key=openai_key, base_url=server.base_url)
    req = request(temperature=0.2)
    try:
        response = provider.chat(req)
    finally:
        provider.close()
    call = provider.prepare_chat(req)
    sent = server.last_request
    assert (sent.method, sent.path, sent.query) == ("POST", "/v1" + call.path, {})
    assert sent.json() == call.json
    assert sent.header("authorization") == f"Bearer {openai_key}"
    assert response.request_id is not None and response.request_id.startswith("req_")
    assert response.text.endswith("You said: Hello")


def test_azure_chat_stream_and_models_send_what_was_translated(
    azure_server: StandInServer, azure_key: str
) -> None:
    provider = azure(api_key=azure_key, endpoint=azure_server.url)
    req = request("my-gpt4o")
    try:
        provider.chat(req)
        sent = azure_server.last_request
        assert sent.path == "/openai" + provider.prepare_chat(req).path
        assert sent.query == {"api-version": ["2024-10-21"]}
        assert sent.json() == provider.prepare_chat(req).json

        stream = provider.stream(req)
        assert len(azure_server.requests) == 1  # lazy: nothing sent before next()
        chunks = list(stream)
        sent = azure_server.last_request
        assert sent.json() == provider.prepare_stream(req).json
        assert sent.header("accept") == "text/event-stream"
        assert chunks[0].request_id  # the answer's id, on the first chunk
        assert "".join(c.text for c in chunks).endswith("You said: Hello")

        azure_server.enqueue(Reply.json({"data": [{"id": "gpt-4o", "object": "model"}]}))
        assert [m.id for m in provider.list_models()] == ["gpt-4o"]
        sent = azure_server.last_request
        assert (sent.method, sent.path) == ("GET", "/openai/models")
        assert sent.query == {"api-version": ["2024-10-21"]}
    finally:
        provider.close()


def test_a_broken_answer_over_http_is_parse_chat_s_error(
    server: StandInServer, openai_key: str
) -> None:
    provider = openai(api_key=openai_key, base_url=server.base_url)
    server.enqueue(Reply.json({"error": f"echo {openai_key}"}))
    try:
        with pytest.raises(exc.ResponseDecodeError) as info:
            provider.chat(request())
    finally:
        provider.close()
    assert info.value.body == {"error": "echo ***"}
    assert (info.value.provider, info.value.model) == ("openai", "gpt-4o-mini")
