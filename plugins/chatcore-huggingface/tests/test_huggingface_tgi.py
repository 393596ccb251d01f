"""The huggingface provider against a stand-in TGI server, over real HTTP: the chat route
under TGI's parameter rules, and the native /generate mode."""

from __future__ import annotations

import json
from typing import Any

import pytest

import chatcore
from chatcore.testing.server import Reply, StandInServer

TOOLS = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]


# --- chat ----------------------------------------------------------------------------


def test_tgi_chat_converts_stop_and_omits_top_p_one(tgi: StandInServer, make_client: Any) -> None:
    client = make_client(tgi.url, token=None)
    resp = client.chat("huggingface:tgi", "Hi", stop="server", top_p=1.0, temperature=0)
    # The stand-in TGI 422s a string stop or top_p == 1.0, so success proves the rules.
    assert resp.text.startswith("Hello from the chatcore stand-in")
    (rec,) = tgi.requests
    assert rec.path == "/v1/chat/completions"
    body = rec.json()
    assert body["stop"] == ["server"]
    assert "top_p" not in body
    assert body["model"] == "tgi"
    assert resp.id  # TGI sends an empty id; the provider fills one in
    assert resp.system_fingerprint == "3.3.6-native"


def test_tgi_server_really_rejects_what_the_provider_fixes(tgi: StandInServer) -> None:
    # Guard: the stand-in enforces TGI's rules, so the test above is meaningful.
    import requests

    for bad in ({"stop": "x"}, {"top_p": 1.0}):
        body = {"model": "tgi", "messages": [{"role": "user", "content": "Hi"}], **bad}
        answer = requests.post(tgi.url + "/v1/chat/completions", json=body, timeout=5)
        assert answer.status_code == 422


def test_tgi_chat_with_base_url_ending_in_v1(tgi: StandInServer, make_client: Any) -> None:
    make_client(tgi.base_url, token=None).chat("huggingface:tgi", "Hi")
    assert tgi.last_request.path == "/v1/chat/completions"


def test_top_p_zero_raises_before_anything_is_sent(tgi: StandInServer, make_client: Any) -> None:
    client = make_client(tgi.url, token=None)
    with pytest.raises(chatcore.ValidationError, match="top_p"):
        client.chat("huggingface:tgi", "Hi", top_p=0)
    assert tgi.requests == []


def test_response_format_with_tools_raises_before_anything_is_sent(
    tgi: StandInServer, make_client: Any
) -> None:
    client = make_client(tgi.url, token=None)
    with pytest.raises(chatcore.ValidationError, match="response_format"):
        client.chat("huggingface:tgi", "Hi", tools=TOOLS, response_format={"type": "json_object"})
    assert tgi.requests == []


def test_tgi_chat_accepts_the_older_text_completion_object(
    tgi: StandInServer, make_client: Any
) -> None:
    tgi.enqueue(
        Reply.json(
            {
                "id": "",
                "object": "text_completion",
                "created": 1700000000,
                "model": "meta-llama/Llama-3.1-8B-Instruct",
                "system_fingerprint": "2.0.4-native",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "Old TGI"},
                        "logprobs": None,
                        "finish_reason": "eos_token",
                    }
                ],
                "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
            },
            headers={"x-request-id": "tgi-req-1"},
        )
    )
    resp = make_client(tgi.url, token=None).chat("huggingface:tgi", "Hi")
    assert resp.text == "Old TGI"
    assert resp.object == "chat.completion"
    assert resp.id == "tgi-req-1"
    assert resp.request_id == "tgi-req-1"
    assert resp.usage is not None
    assert resp.usage.total_tokens == 5


def test_tgi_chat_tools(tgi: StandInServer, make_client: Any) -> None:
    client = make_client(tgi.url, token=None)
    resp = client.chat("huggingface:tgi", "Look it up", tools=TOOLS, tool_choice="required")
    assert resp.tool_calls[0].function.name == "lookup"
    assert json.loads(resp.tool_calls[0].function.arguments) == {}


def test_list_models_from_tgi(tgi: StandInServer, make_client: Any) -> None:
    models = make_client(tgi.url, token=None).list_models("huggingface")
    assert [m.id for m in models] == ["meta-llama/Llama-3.1-8B-Instruct"]
    assert tgi.last_request.path == "/v1/models"


def test_list_models_from_tgi_single_object_reply(tgi: StandInServer, make_client: Any) -> None:
    tgi.enqueue(
        Reply.json({"id": "my/model", "object": "model", "created": 1, "owned_by": "my/model"})
    )
    models = make_client(tgi.base_url, token=None).list_models("huggingface")
    assert [m.id for m in models] == ["my/model"]


# --- generate ------------------------------------------------------------------------


def test_generate_maps_parameters(tgi: StandInServer, make_client: Any) -> None:
    client = make_client(tgi.url, token=None, api="generate")
    resp = client.chat(
        "huggingface:bigcode/starcoder2-3b",
        "def hello():",
        max_tokens=50,
        temperature=0.5,
        top_p=0.9,
        stop="server",
        seed=7,
        extra={"top_k": 10, "repetition_penalty": 1.1},
    )
    (rec,) = tgi.requests
    assert (rec.method, rec.path) == ("POST", "/generate")
    assert rec.json() == {
        "inputs": "def hello():",
        "parameters": {
            "max_new_tokens": 50,
            "temperature": 0.5,
            "do_sample": True,
            "top_p": 0.9,
            "stop": ["server"],
            "seed": 7,
            "return_full_text": False,
            "details": True,
            "top_k": 10,
            "repetition_penalty": 1.1,
        },
    }
    assert resp.text == " Hello from the chatcore stand-in server"  # cut after the stop
    assert resp.finish_reason == "stop"  # stop_sequence
    assert resp.model == "bigcode/starcoder2-3b"
    assert resp.provider == "huggingface"
    assert resp.usage is not None
    assert resp.usage.prompt_tokens == 3  # x-prompt-tokens: ceil(len("def hello():") / 4)
    assert resp.usage.completion_tokens > 0
    assert resp.usage.total_tokens == resp.usage.prompt_tokens + resp.usage.completion_tokens
    assert resp.id.startswith("gen-")


def test_generate_greedy_length_and_usage(tgi: StandInServer, make_client: Any) -> None:
    client = make_client(tgi.base_url, token=None, api="generate")
    resp = client.chat(
        "huggingface:gpt2", "Once upon a time", temperature=0, top_p=1.0, max_tokens=3
    )
    params = tgi.last_request.json()["parameters"]
    assert tgi.last_request.path == "/generate"  # a trailing /v1 is stripped
    assert params == {
        "max_new_tokens": 3,
        "do_sample": False,
        "return_full_text": False,
        "details": True,
    }
    assert resp.finish_reason == "length"
    assert resp.usage is not None
    assert resp.usage.completion_tokens == 3
    assert resp.usage.prompt_tokens == 4  # the x-prompt-tokens header


def test_generate_eos_token_is_stop(tgi: StandInServer, make_client: Any) -> None:
    resp = make_client(tgi.url, token=None, api="generate").chat("huggingface:gpt2", "Hi")
    assert resp.finish_reason == "stop"
    assert resp.text.endswith("You said: Hi")


def test_generate_transcript_prompt(tgi: StandInServer, make_client: Any) -> None:
    client = make_client(tgi.url, token=None, api="generate")
    client.chat(
        "huggingface:gpt2",
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
    )
    assert tgi.last_request.json()["inputs"] == "System: Be brief.\n\nUser: Hi\n\nAssistant:"


def test_generate_legacy_list_reply(tgi: StandInServer, make_client: Any) -> None:
    tgi.enqueue(Reply.json([{"generated_text": "legacy answer"}], headers={"x-request-id": "r-9"}))
    resp = make_client(tgi.url, token=None, api="generate").chat("huggingface:gpt2", "Hi")
    assert resp.text == "legacy answer"
    assert resp.id == "r-9"
    assert resp.request_id == "r-9"
    assert resp.finish_reason is None
    assert resp.usage is None


def test_generate_rejects_tools_before_sending(tgi: StandInServer, make_client: Any) -> None:
    client = make_client(tgi.url, token=None, api="generate")
    with pytest.raises(chatcore.ValidationError, match="api='chat'"):
        client.chat("huggingface:gpt2", "Hi", tools=TOOLS)
    assert tgi.requests == []


def test_generate_server_validation_error_is_typed(tgi: StandInServer, make_client: Any) -> None:
    client = make_client(tgi.url, token=None, api="generate")
    with pytest.raises(chatcore.UnprocessableEntityError) as info:
        client.chat("huggingface:gpt2", "Hi", extra={"top_k": 0})
    assert info.value.error_type == "validation"
    assert "top_k" in str(info.value)


def test_generate_non_generation_reply_is_a_decode_error(
    tgi: StandInServer, make_client: Any
) -> None:
    tgi.enqueue(Reply.json({"unexpected": True}))
    with pytest.raises(chatcore.ResponseDecodeError, match="generated_text"):
        make_client(tgi.url, token=None, api="generate").chat("huggingface:gpt2", "Hi")


def test_generate_mode_and_wait_for_model_from_the_environment(tgi: StandInServer) -> None:
    environ = {
        "CHATCORE_HUGGINGFACE_BASE_URL": tgi.url,
        "CHATCORE_HUGGINGFACE_API": "generate",
        "CHATCORE_HUGGINGFACE_WAIT_FOR_MODEL": "1",
    }
    with chatcore.Client(environ=environ, max_retries=0) as client:
        resp = client.chat("huggingface:gpt2", "Hi")
    assert resp.text
    assert tgi.last_request.path == "/generate"
    assert tgi.last_request.header("x-wait-for-model") == "true"
