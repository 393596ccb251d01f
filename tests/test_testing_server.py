"""Tests for the stand-in server, over real sockets with ``http.client`` only."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chatcore.testing import server as server_module
from chatcore.testing.server import RecordedRequest, Reply, StandInServer

CHAT = "/v1/chat/completions"
USER_MSG = [{"role": "user", "content": "hi there"}]


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------


class Resp:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body)


def call(
    srv: StandInServer,
    method: str,
    path: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
    timeout: float = 5.0,
) -> Resp:
    conn = http.client.HTTPConnection(srv.host, srv.port, timeout=timeout)
    try:
        data = body if body is None or isinstance(body, bytes) else json.dumps(body).encode()
        hdrs = {"Content-Type": "application/json", **(headers or {})}
        conn.request(method, path, body=data, headers=hdrs)
        resp = conn.getresponse()
        raw = resp.read()
        return Resp(resp.status, {k.lower(): v for k, v in resp.getheaders()}, raw)
    finally:
        conn.close()


def post(srv: StandInServer, path: str, body: Any, **kw: Any) -> Resp:
    return call(srv, "POST", path, body, **kw)


def sse_data(raw: bytes, *, space: bool = True) -> list[str]:
    """Split an SSE body into data payloads, checking the ``data:`` prefix style."""
    assert raw.endswith(b"\n\n")
    out = []
    for block in raw.decode().split("\n\n")[:-1]:
        assert block.startswith("data: " if space else "data:")
        if not space:
            assert not block.startswith("data: ")
        out.append(block.split(":", 1)[1].removeprefix(" ") if space else block[5:])
    return out


@pytest.fixture
def srv() -> Iterator[StandInServer]:
    with StandInServer() as s:
        yield s


@pytest.fixture
def azure() -> Iterator[StandInServer]:
    with StandInServer(flavor="azure") as s:
        yield s


@pytest.fixture
def tgi() -> Iterator[StandInServer]:
    with StandInServer(flavor="tgi") as s:
        yield s


# ---------------------------------------------------------------------------------------------
# basics
# ---------------------------------------------------------------------------------------------


def test_urls_and_lifecycle() -> None:
    s = StandInServer()
    assert s.url == f"http://127.0.0.1:{s.port}"
    assert s.base_url == s.url + "/v1"
    assert s.port > 0
    s.start()
    try:
        assert call(s, "GET", "/v1/models").status == 200
    finally:
        s.stop()
    s.stop()  # idempotent
    with pytest.raises(ConnectionError):
        call(s, "GET", "/v1/models", timeout=1)


def test_default_chat_completion(srv: StandInServer) -> None:
    r = post(srv, CHAT, {"model": "gpt-4o-mini", "messages": USER_MSG})
    assert r.status == 200
    assert r.headers["content-type"] == "application/json"
    assert r.headers["x-request-id"].startswith("req_")
    assert r.headers["openai-version"] == "2020-10-01"
    assert int(r.headers["openai-processing-ms"]) >= 0
    for kind in ("requests", "tokens"):
        assert int(r.headers[f"x-ratelimit-limit-{kind}"]) > 0
        assert int(r.headers[f"x-ratelimit-remaining-{kind}"]) > 0
        assert r.headers[f"x-ratelimit-reset-{kind}"][-1] == "s"
    body = r.json()
    assert body["id"].startswith("chatcmpl-")
    assert body["object"] == "chat.completion"
    assert isinstance(body["created"], int)
    assert body["model"] == "gpt-4o-mini"
    assert body["system_fingerprint"]
    (choice,) = body["choices"]
    assert choice["index"] == 0
    assert choice["finish_reason"] == "stop"
    assert choice["logprobs"] is None
    assert choice["message"]["role"] == "assistant"
    assert choice["message"]["refusal"] is None
    text = choice["message"]["content"]
    assert text == "Hello from the chatcore stand-in server. You said: hi there"
    usage = body["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert usage["completion_tokens"] == -(-len(text) // 4)
    # deterministic apart from id/created
    again = post(srv, CHAT, {"model": "gpt-4o-mini", "messages": USER_MSG}).json()
    assert again["choices"] == body["choices"]
    assert again["usage"] == usage
    assert again["id"] != body["id"]


def test_default_chat_options(srv: StandInServer) -> None:
    r = post(
        srv,
        CHAT,
        {
            "model": "m",
            "messages": USER_MSG,
            "n": 2,
            "max_completion_tokens": 3,
            "logprobs": True,
            "top_logprobs": 2,
        },
    )
    assert r.status == 200, r.body
    choices = r.json()["choices"]
    assert len(choices) == 2
    assert all(c["finish_reason"] == "length" for c in choices)
    assert len(choices[0]["message"]["content"]) <= 12
    assert len(choices[0]["logprobs"]["content"][0]["top_logprobs"]) == 2


def test_default_tool_call_when_required(srv: StandInServer) -> None:
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]
    r = post(
        srv, CHAT, {"model": "m", "messages": USER_MSG, "tools": tools, "tool_choice": "required"}
    )
    assert r.status == 200, r.body
    (choice,) = r.json()["choices"]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    (tc,) = choice["message"]["tool_calls"]
    assert tc["type"] == "function"
    assert tc["function"] == {"name": "get_weather", "arguments": "{}"}


# ---------------------------------------------------------------------------------------------
# strict validation (openai flavor)
# ---------------------------------------------------------------------------------------------


def test_unknown_field_is_rejected(srv: StandInServer) -> None:
    r = post(srv, CHAT, {"model": "m", "messages": USER_MSG, "max_new_tokens": 5})
    assert r.status == 400
    assert r.json() == {
        "error": {
            "message": "Unrecognized request argument supplied: max_new_tokens",
            "type": "invalid_request_error",
            "param": None,
            "code": None,
        }
    }


TOOL = {"type": "function", "function": {"name": "f"}}
CALL = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"model": None}, "model"),
        ({"model": 3}, "model"),
        ({"messages": []}, "messages"),
        ({"messages": "hi"}, "messages"),
        ({"temperature": 2.5}, "temperature"),
        ({"temperature": "hot"}, "temperature"),
        ({"top_p": 1.01}, "top_p"),
        ({"n": 0}, "n"),
        ({"n": 129}, "n"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"stop": []}, "stop"),
        ({"stop": 3}, "stop"),
        ({"top_logprobs": 21, "logprobs": True}, "top_logprobs"),
        ({"top_logprobs": 2}, "logprobs"),
        ({"stream_options": {"include_usage": True}}, "stream_options"),
        ({"stream_options": {"include_usage": True}, "stream": False}, "stream_options"),
        ({"stream": True, "stream_options": {"bogus": True}}, "stream_options"),
        ({"tool_choice": "auto"}, "tool_choice"),
        ({"parallel_tool_calls": False}, "parallel_tool_calls"),
        ({"tools": []}, "tools"),
        ({"tools": [{"type": "function", "function": {"name": "bad name"}}]}, "tools[0]"),
        ({"tools": [TOOL], "tool_choice": "sometimes"}, "tool_choice"),
        ({"response_format": {"type": "yaml"}}, "response_format.type"),
        ({"frequency_penalty": -3}, "frequency_penalty"),
        ({"reasoning_effort": "extreme"}, "reasoning_effort"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "messages[0].role"),
        ({"messages": [{"content": "x"}]}, "messages[0].role"),
        ({"messages": [{"role": "user"}]}, "messages[0].content"),
        ({"messages": [{"role": "user", "content": "x", "foo": 1}]}, "messages[0]"),
        ({"messages": [{"role": "user", "content": []}]}, "messages[0].content"),
        (
            {
                "messages": [
                    {
                        "role": "system",
                        "content": [{"type": "image_url", "image_url": {"url": "https://x/y"}}],
                    }
                ]
            },
            "messages[0].content[0].type",
        ),
        ({"messages": [{"role": "assistant", "content": None}]}, "messages[0].content"),
        (
            {
                "messages": [
                    {"role": "assistant", "content": None, "tool_calls": [CALL]},
                    {"role": "tool", "content": "sunny"},
                ]
            },
            "messages[1].tool_call_id",
        ),
        (
            {"messages": [*USER_MSG, {"role": "tool", "content": "x", "tool_call_id": "call_1"}]},
            "messages.[1].role",
        ),
        (
            {"messages": [*USER_MSG, {"role": "assistant", "content": None, "tool_calls": [CALL]}]},
            "messages.[1].role",
        ),
        (
            {
                "messages": [
                    {
                        "role": "assistant",
                        "tool_calls": [{**CALL, "function": {"name": "f", "arguments": {}}}],
                    }
                ]
            },
            "messages[0].tool_calls[0].function.arguments",
        ),
    ],
)
def test_invalid_requests_name_the_param(
    srv: StandInServer, extra: dict[str, Any], param: str
) -> None:
    body = {"model": "gpt-4o-mini", "messages": USER_MSG, **extra}
    r = post(srv, CHAT, body)
    assert r.status == 400, r.body
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert err["type"] == "invalid_request_error"
    assert err["param"] == param or (err["param"] or "").startswith(param), err


def test_missing_model_and_messages(srv: StandInServer) -> None:
    r = post(srv, CHAT, {"messages": USER_MSG})
    assert r.status == 400
    assert r.json()["error"]["param"] == "model"
    r = post(srv, CHAT, {"model": "m"})
    assert r.json()["error"]["code"] == "missing_required_parameter"
    assert r.json()["error"]["param"] == "messages"


def test_invalid_json_body(srv: StandInServer) -> None:
    r = post(srv, CHAT, b"{not json")
    assert r.status == 400
    assert "could not parse the JSON body" in r.json()["error"]["message"]
    r = post(srv, CHAT, [1, 2])
    assert r.status == 400


def test_valid_request_with_nulls_and_full_conversation(srv: StandInServer) -> None:
    body = {
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "developer", "content": [{"type": "text", "text": "be brief"}]},
            {"role": "system", "content": "sys"},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "look"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}},
                ],
                "name": "bob",
            },
            {"role": "assistant", "content": None, "tool_calls": [CALL]},
            {"role": "tool", "content": "sunny", "tool_call_id": "call_1"},
            {"role": "assistant", "content": [{"type": "text", "text": "It is sunny."}]},
            {"role": "user", "content": "thanks"},
        ],
        "temperature": None,
        "top_p": None,
        "n": None,
        "stop": None,
        "max_tokens": None,
        "max_completion_tokens": None,
        "seed": None,
        "stream": None,
        "stream_options": None,
        "logprobs": None,
        "top_logprobs": None,
        "presence_penalty": None,
        "frequency_penalty": None,
        "logit_bias": None,
        "user": "u1",
        "metadata": {"k": "v"},
        "store": False,
        "tools": [TOOL],
        "tool_choice": {"type": "function", "function": {"name": "f"}},
        "parallel_tool_calls": True,
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "answer", "schema": {"type": "object"}, "strict": True},
        },
        "reasoning_effort": "low",
        "service_tier": "auto",
    }
    r = post(srv, CHAT, body)
    assert r.status == 200, r.body
    # A forced named function is reported with finish_reason "stop", as the real API does.
    (choice,) = r.json()["choices"]
    assert choice["finish_reason"] == "stop"
    assert choice["message"]["tool_calls"][0]["function"]["name"] == "f"
    # stop as a plain string is fine too
    assert post(srv, CHAT, {"model": "m", "messages": USER_MSG, "stop": "\n"}).status == 200


# ---------------------------------------------------------------------------------------------
# streaming
# ---------------------------------------------------------------------------------------------


def test_openai_stream_framing(srv: StandInServer) -> None:
    r = post(srv, CHAT, {"model": "gpt-4o-mini", "messages": USER_MSG, "stream": True})
    assert r.status == 200
    assert r.headers["content-type"] == "text/event-stream"
    assert r.headers["transfer-encoding"] == "chunked"
    data = sse_data(r.body, space=True)
    assert data[-1] == "[DONE]"
    chunks = [json.loads(d) for d in data[:-1]]
    assert len({c["id"] for c in chunks}) == 1
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert all("usage" not in c for c in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": "", "refusal": None}
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert text == "Hello from the chatcore stand-in server. You said: hi there"
    assert len(chunks) > 4
    assert [c["choices"][0]["finish_reason"] for c in chunks[:-1]] == [None] * (len(chunks) - 1)
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"][0]["delta"] == {}


def test_openai_stream_include_usage(srv: StandInServer) -> None:
    body = {
        "model": "m",
        "messages": USER_MSG,
        "stream": True,
        "stream_options": {"include_usage": True, "include_obfuscation": False},
    }
    data = sse_data(post(srv, CHAT, body).body)
    assert data[-1] == "[DONE]"
    chunks = [json.loads(d) for d in data[:-1]]
    *content, last = chunks
    assert all(c["usage"] is None for c in content)
    assert all("obfuscation" not in c for c in chunks)
    assert last["choices"] == []
    assert last["usage"]["total_tokens"] > 0
    assert content[-1]["choices"][0]["finish_reason"] == "stop"


# ---------------------------------------------------------------------------------------------
# models and routing
# ---------------------------------------------------------------------------------------------


def test_models(srv: StandInServer) -> None:
    r = call(srv, "GET", "/v1/models")
    body = r.json()
    assert body["object"] == "list"
    ids = [m["id"] for m in body["data"]]
    assert "gpt-4o-mini" in ids
    assert set(body["data"][0]) == {"id", "object", "created", "owned_by"}
    one = call(srv, "GET", "/v1/models/meta-llama/Llama-3.1-8B-Instruct")
    assert one.status == 200
    assert one.json()["id"] == "meta-llama/Llama-3.1-8B-Instruct"
    missing = call(srv, "GET", "/v1/models/nope")
    assert missing.status == 404
    assert missing.json()["error"]["code"] == "model_not_found"


def test_custom_model_list() -> None:
    with StandInServer(model_list=["a", "b"]) as s:
        assert [m["id"] for m in call(s, "GET", "/v1/models").json()["data"]] == ["a", "b"]


def test_unknown_path_is_openai_404(srv: StandInServer) -> None:
    r = post(srv, "/chat/completions", {"model": "m", "messages": USER_MSG})
    assert r.status == 404
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert "/chat/completions" in err["message"]


# ---------------------------------------------------------------------------------------------
# auth
# ---------------------------------------------------------------------------------------------


def test_openai_auth() -> None:
    with StandInServer(api_key="sk-test") as s:
        s.enqueue(Reply.json({"ok": True}))
        r = call(s, "GET", "/v1/models")
        assert r.status == 401
        assert set(r.json()["error"]) == {"message", "type", "param", "code"}
        r = call(s, "GET", "/v1/models", headers={"Authorization": "Bearer sk-wrong-key-123"})
        assert r.status == 401
        assert r.json()["error"]["code"] == "invalid_api_key"
        assert "sk-wrong-key-123" not in r.json()["error"]["message"]
        assert s.pending_replies == 1  # 401s do not consume scripted replies
        r = call(s, "GET", "/v1/models", headers={"Authorization": "Bearer sk-test"})
        assert r.status == 200
        assert r.json() == {"ok": True}
        assert len(s.requests) == 3


def test_azure_auth_accepts_api_key_or_bearer() -> None:
    with StandInServer(flavor="azure", api_key="az") as s:
        path = "/openai/deployments/dep/chat/completions?api-version=2024-10-21"
        body = {"messages": USER_MSG}
        r = post(s, path, body)
        assert r.status == 401
        assert r.json()["error"]["code"] == "401"
        assert post(s, path, body, headers={"api-key": "az"}).status == 200
        assert post(s, path, body, headers={"Authorization": "Bearer az"}).status == 200
        assert post(s, path, body, headers={"Authorization": "Bearer nope"}).status == 401


def test_tgi_auth() -> None:
    with StandInServer(flavor="tgi", api_key="hf_x") as s:
        r = call(s, "GET", "/info")
        assert r.status == 401
        assert set(r.json()) == {"error", "error_type"}
        assert call(s, "GET", "/info", headers={"Authorization": "Bearer hf_x"}).status == 200


# ---------------------------------------------------------------------------------------------
# azure flavor
# ---------------------------------------------------------------------------------------------


def test_azure_requires_api_version(azure: StandInServer) -> None:
    r = post(azure, "/openai/deployments/dep/chat/completions", {"messages": USER_MSG})
    assert r.status == 404
    assert r.json() == {"error": {"code": "404", "message": "Resource not found"}}


def test_azure_chat(azure: StandInServer) -> None:
    path = "/openai/deployments/my-dep/chat/completions?api-version=2024-10-21"
    r = post(azure, path, {"messages": USER_MSG})
    assert r.status == 200, r.body
    body = r.json()
    assert body["model"] == "my-dep"
    assert body["prompt_filter_results"][0]["prompt_index"] == 0
    assert "content_filter_results" in body["choices"][0]
    rec = azure.last_request
    assert rec.path == "/openai/deployments/my-dep/chat/completions"
    assert rec.query == {"api-version": ["2024-10-21"]}
    # strict validation applies on Azure too
    bad = post(azure, path, {"messages": USER_MSG, "bogus": 1})
    assert bad.status == 400
    assert "bogus" in bad.json()["error"]["message"]


def test_azure_stream_starts_with_filter_chunk(azure: StandInServer) -> None:
    path = "/openai/deployments/dep/chat/completions?api-version=2024-10-21"
    data = sse_data(post(azure, path, {"messages": USER_MSG, "stream": True}).body)
    assert data[-1] == "[DONE]"
    first = json.loads(data[0])
    assert first["choices"] == []
    assert first["id"] == ""
    assert first["object"] == ""
    assert first["created"] == 0
    assert first["model"] == ""
    assert first["prompt_filter_results"]
    second = json.loads(data[1])
    assert second["model"] == "dep"
    assert second["choices"][0]["delta"]["role"] == "assistant"


def test_azure_v1_route(azure: StandInServer) -> None:
    r = post(azure, "/openai/v1/chat/completions", {"model": "dep", "messages": USER_MSG})
    assert r.status == 200
    assert r.json()["model"] == "dep"
    assert post(azure, "/openai/v1/chat/completions", {"messages": USER_MSG}).status == 400
    assert call(azure, "GET", "/openai/v1/models").status == 200
    assert call(azure, "GET", "/v1/models").status == 404


# ---------------------------------------------------------------------------------------------
# tgi flavor
# ---------------------------------------------------------------------------------------------


def test_tgi_chat(tgi: StandInServer) -> None:
    r = post(tgi, CHAT, {"model": "tgi", "messages": USER_MSG, "top_p": 0.9, "stop": ["\n"]})
    assert r.status == 200, r.body
    body = r.json()
    assert body["system_fingerprint"] == "3.3.6-native"
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"]["content"].startswith("Hello from the chatcore")


@pytest.mark.parametrize(
    ("extra", "needle", "error_type"),
    [
        ({"top_p": 1.0}, "`top_p` must be > 0.0 and < 1.0", "validation"),
        ({"top_p": 0}, "`top_p` must be > 0.0 and < 1.0", "validation"),
        ({"stop": "\n"}, "stop", "validation"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "up to 4 stop sequences", "validation"),
        (
            {"response_format": {"type": "json", "value": {}}, "tools": [TOOL]},
            "mutually exclusive",
            "tool_error",
        ),
    ],
)
def test_tgi_chat_validation(
    tgi: StandInServer, extra: dict[str, Any], needle: str, error_type: str
) -> None:
    r = post(tgi, CHAT, {"model": "tgi", "messages": USER_MSG, **extra})
    assert r.status == 422
    body = r.json()
    assert set(body) == {"error", "error_type"}
    assert needle in body["error"]
    assert body["error_type"] == error_type


def test_tgi_top_p_exact_message(tgi: StandInServer) -> None:
    r = post(tgi, CHAT, {"model": "tgi", "messages": USER_MSG, "top_p": 1.0})
    assert r.json() == {"error": "`top_p` must be > 0.0 and < 1.0", "error_type": "validation"}


def test_tgi_chat_stream(tgi: StandInServer) -> None:
    body = {
        "model": "tgi",
        "messages": USER_MSG,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    r = post(tgi, CHAT, body)
    assert r.body.endswith(b"data:[DONE]\n\n")
    data = sse_data(r.body, space=False)
    assert data[-1] == "[DONE]"
    chunks = [json.loads(d) for d in data[:-1]]
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["total_tokens"] > 0
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks[:-1])
    assert text.startswith("Hello from the chatcore stand-in server.")


def test_tgi_generate(tgi: StandInServer) -> None:
    r = post(tgi, "/generate", {"inputs": "Once upon a time", "parameters": {"details": True}})
    assert r.status == 200, r.body
    for h in ("x-compute-time", "x-generated-tokens", "x-prompt-tokens"):
        assert h in r.headers
    body = r.json()
    assert "Hello from the chatcore stand-in server." in body["generated_text"]
    details = body["details"]
    assert details["finish_reason"] == "eos_token"
    assert (
        details["generated_tokens"]
        == len(details["tokens"])
        == int(r.headers["x-generated-tokens"])
    )
    assert details["prefill"] == []
    assert "seed" in details
    assert set(details["tokens"][0]) == {"id", "text", "logprob", "special"}
    assert "".join(t["text"] for t in details["tokens"]) == body["generated_text"]
    plain = post(tgi, "/generate", {"inputs": "x"}).json()
    assert set(plain) == {"generated_text"}


def test_tgi_generate_finish_reasons(tgi: StandInServer) -> None:
    params: dict[str, Any] = {"details": True, "max_new_tokens": 2}
    body = post(tgi, "/generate", {"inputs": "x", "parameters": params}).json()
    assert body["details"]["finish_reason"] == "length"
    assert body["details"]["generated_tokens"] == 2
    params = {"details": True, "stop": ["stand-in"]}
    body = post(tgi, "/generate", {"inputs": "x", "parameters": params}).json()
    assert body["details"]["finish_reason"] == "stop_sequence"
    assert body["generated_text"].endswith("stand-in")
    params = {"return_full_text": True}
    body = post(tgi, "/generate", {"inputs": "PROMPT", "parameters": params}).json()
    assert body["generated_text"].startswith("PROMPT ")


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        ({"temperature": 0}, "`temperature` must be strictly positive"),
        ({"top_p": 1.0}, "`top_p` must be > 0.0 and < 1.0"),
        ({"top_k": 0}, "`top_k` must be strictly positive"),
        ({"max_new_tokens": 0}, "`max_new_tokens` must be strictly positive"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "`stop` supports up to 4 stop sequences"),
        ({"stop_sequences": ["a"]}, "unknown field `stop_sequences`"),
        ({"temperature": "hot"}, "invalid type"),
        ({"best_of": 2}, "you must use sampling when `best_of` is > 1"),
    ],
)
def test_tgi_generate_validation(tgi: StandInServer, params: dict[str, Any], needle: str) -> None:
    r = post(tgi, "/generate", {"inputs": "hi", "parameters": params})
    assert r.status == 422
    body = r.json()
    assert set(body) == {"error", "error_type"}
    assert body["error_type"] == "validation"
    assert needle in body["error"]


def test_tgi_generate_requires_inputs(tgi: StandInServer) -> None:
    r = post(tgi, "/generate", {"parameters": {}})
    assert r.status == 422
    assert "inputs" in r.json()["error"]


def test_tgi_generate_stream(tgi: StandInServer) -> None:
    r = post(tgi, "/generate_stream", {"inputs": "hi", "parameters": {"details": True}})
    assert r.status == 200
    assert r.headers["content-type"] == "text/event-stream"
    assert b"[DONE]" not in r.body
    events = [json.loads(d) for d in sse_data(r.body, space=False)]
    *tokens, last = events
    assert [e["index"] for e in events] == list(range(1, len(events) + 1))
    for e in tokens:
        assert e["generated_text"] is None
        assert e["details"] is None
        assert set(e["token"]) == {"id", "text", "logprob", "special"}
    assert last["generated_text"] == "".join(e["token"]["text"] for e in events)
    assert last["details"]["finish_reason"] == "eos_token"
    assert last["details"]["generated_tokens"] == len(events)
    assert "input_length" in last["details"]


def test_tgi_stream_validation_error_is_an_event(tgi: StandInServer) -> None:
    r = post(tgi, "/generate_stream", {"inputs": "hi", "parameters": {"top_p": 1.0}})
    (event,) = [json.loads(d) for d in sse_data(r.body, space=False)]
    assert event == {"error": "`top_p` must be > 0.0 and < 1.0", "error_type": "validation"}


def test_tgi_compat_route(tgi: StandInServer) -> None:
    r = post(tgi, "/", {"inputs": "hi", "parameters": {"max_new_tokens": 3}})
    assert r.status == 200
    body = r.json()
    assert isinstance(body, list)
    assert set(body[0]) == {"generated_text"}
    r = post(tgi, "/", {"inputs": "hi", "stream": True})
    assert r.headers["content-type"] == "text/event-stream"
    events = [json.loads(d) for d in sse_data(r.body, space=False)]
    assert events[-1]["generated_text"]


def test_tgi_info_and_health(tgi: StandInServer) -> None:
    info = call(tgi, "GET", "/info").json()
    for key in ("model_id", "max_stop_sequences", "max_total_tokens", "router", "version"):
        assert key in info
    assert info["max_stop_sequences"] == 4
    health = call(tgi, "GET", "/health")
    assert health.status == 200
    assert health.body == b""
    assert health.headers["content-length"] == "0"
    missing = call(tgi, "GET", "/nope")
    assert missing.status == 404
    assert set(missing.json()) == {"error", "error_type"}


# ---------------------------------------------------------------------------------------------
# scripted replies
# ---------------------------------------------------------------------------------------------


def test_reply_json_with_headers(srv: StandInServer) -> None:
    srv.enqueue(Reply.json({"a": 1}, status=201, headers={"x-request-id": "req_1", "x-n": 5}))
    r = call(srv, "GET", "/anything")
    assert r.status == 201
    assert r.json() == {"a": 1}
    assert r.headers["x-request-id"] == "req_1"
    assert r.headers["x-n"] == "5"


def test_reply_error(srv: StandInServer) -> None:
    srv.enqueue(
        Reply.error(
            429,
            "Rate limit reached",
            code="rate_limit_exceeded",
            headers={"retry-after": "1", "retry-after-ms": "250", "x-should-retry": "true"},
        ),
        Reply.error(400, "bad", param="messages"),
    )
    r = post(srv, CHAT, {})
    assert r.status == 429
    assert r.json() == {
        "error": {
            "message": "Rate limit reached",
            "type": "requests",
            "param": None,
            "code": "rate_limit_exceeded",
        }
    }
    assert r.headers["retry-after"] == "1"
    assert r.headers["retry-after-ms"] == "250"
    assert r.headers["x-should-retry"] == "true"
    err = post(srv, CHAT, {}).json()["error"]
    assert err == {
        "message": "bad",
        "type": "invalid_request_error",
        "param": "messages",
        "code": None,
    }


def test_reply_tgi_error_and_hf_loading(srv: StandInServer) -> None:
    srv.enqueue(
        Reply.tgi_error(424, "Request failed during generation", "generation"),
        Reply.hf_loading(12.5, model="org/model"),
    )
    r = post(srv, "/generate", {})
    assert r.status == 424
    assert r.json() == {"error": "Request failed during generation", "error_type": "generation"}
    r = post(srv, "/models/org/model", {})
    assert r.status == 503
    assert r.json() == {"error": "Model org/model is currently loading", "estimated_time": 12.5}


def test_reply_chat(srv: StandInServer) -> None:
    srv.enqueue(
        Reply.chat("Hi!", usage={"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}),
        Reply.chat(tool_calls=[{"name": "lookup", "arguments": {"q": "x"}}], model="other"),
    )
    r = post(srv, CHAT, {"model": "gpt-4o", "messages": USER_MSG})
    assert r.headers["x-request-id"].startswith("req_")
    body = r.json()
    assert body["model"] == "gpt-4o"
    assert body["choices"][0]["message"]["content"] == "Hi!"
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["usage"] == {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}
    body = post(srv, CHAT, {"model": "gpt-4o", "messages": USER_MSG}).json()
    assert body["model"] == "other"
    choice = body["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    (tc,) = choice["message"]["tool_calls"]
    assert tc["id"].startswith("call_")
    assert tc["type"] == "function"
    assert tc["function"] == {"name": "lookup", "arguments": '{"q":"x"}'}


def test_reply_chat_stream_with_tool_calls(srv: StandInServer) -> None:
    args = '{"city":"Paris","unit":"c"}'
    srv.enqueue(
        Reply.chat_stream(
            tool_calls=[{"id": "call_a", "function": {"name": "weather", "arguments": args}}],
            include_usage=True,
        )
    )
    data = sse_data(post(srv, CHAT, {"model": "m", "messages": USER_MSG, "stream": True}).body)
    assert data[-1] == "[DONE]"
    chunks = [json.loads(d) for d in data[:-1]]
    deltas = [
        tc for c in chunks if c["choices"] for tc in c["choices"][0]["delta"].get("tool_calls", [])
    ]
    assert deltas[0]["id"] == "call_a"
    assert deltas[0]["function"]["name"] == "weather"
    assert all(d["index"] == 0 for d in deltas)
    assert "".join(d["function"].get("arguments", "") for d in deltas) == args
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["total_tokens"] > 0


def test_reply_sse_variants(srv: StandInServer) -> None:
    srv.enqueue(
        Reply.sse([{"a": 1}, "plain", ": keep-alive", "two\nlines"]),
        Reply.sse([{"a": 1}], space=False, done=False),
    )
    r = post(srv, CHAT, {})
    assert r.headers["content-type"] == "text/event-stream"
    assert r.body == (
        b'data: {"a":1}\n\n'
        b"data: plain\n\n"
        b": keep-alive\n\n"
        b"data: two\ndata: lines\n\n"
        b"data: [DONE]\n\n"
    )
    assert post(srv, CHAT, {}).body == b'data:{"a":1}\n\n'


def test_reply_sse_delay_between_is_incremental(srv: StandInServer) -> None:
    srv.enqueue(Reply.sse([{"n": 1}, {"n": 2}, {"n": 3}], delay_between=0.1))
    conn = http.client.HTTPConnection(srv.host, srv.port, timeout=5)
    try:
        start = time.monotonic()
        conn.request("POST", CHAT, body=b"{}")
        resp = conn.getresponse()
        first = resp.readline()
        first_at = time.monotonic() - start
        rest = resp.read()
        total = time.monotonic() - start
    finally:
        conn.close()
    assert first == b'data: {"n":1}\n'
    assert rest.endswith(b"data: [DONE]\n\n")
    assert first_at < total
    assert total >= 0.25


def test_reply_raw(srv: StandInServer) -> None:
    srv.enqueue(
        Reply.raw(b"{not json", headers={"x-a": "b"}),
        Reply.raw("<html>bad gateway</html>", status=502, content_type="text/html"),
    )
    r = post(srv, CHAT, {})
    assert (r.status, r.body, r.headers["content-type"]) == (200, b"{not json", "application/json")
    assert r.headers["x-a"] == "b"
    r = post(srv, CHAT, {})
    assert r.status == 502
    assert r.headers["content-type"] == "text/html"


def test_reply_delay_and_default(srv: StandInServer) -> None:
    srv.enqueue(Reply.json({"x": 1}, delay=0.2), Reply.default(headers={"x-extra": "1"}))
    start = time.monotonic()
    assert call(srv, "GET", "/v1/models").json() == {"x": 1}
    assert time.monotonic() - start >= 0.18
    r = call(srv, "GET", "/v1/models")
    assert r.json()["object"] == "list"
    assert r.headers["x-extra"] == "1"


def test_reply_headers_override_defaults(srv: StandInServer) -> None:
    srv.enqueue(Reply.chat(headers={"x-request-id": "req_custom", "retry-after": 3}))
    r = post(srv, CHAT, {"model": "m", "messages": USER_MSG})
    assert r.headers["x-request-id"] == "req_custom"
    assert r.headers["retry-after"] == "3"


def test_fifo_and_path_binding(srv: StandInServer) -> None:
    srv.enqueue(Reply.json({"n": 1}), Reply.json({"n": 2}))
    srv.enqueue(Reply.json({"bound": True}), path="/v1/models")
    srv.enqueue(Reply.json({"n": 3}))
    assert post(srv, CHAT, {}).json() == {"n": 1}
    assert call(srv, "GET", "/v1/models").json() == {"n": 2}  # unbound replies are FIFO for all
    assert post(srv, CHAT, {}).json() == {"n": 3}  # skips the reply bound to /v1/models
    assert srv.pending_replies == 1
    r = post(srv, CHAT, {"model": "m", "messages": USER_MSG})
    assert r.json()["object"] == "chat.completion"  # queue empty for this path -> default
    assert call(srv, "GET", "/v1/models").json() == {"bound": True}
    assert srv.pending_replies == 0


# ---------------------------------------------------------------------------------------------
# faults
# ---------------------------------------------------------------------------------------------


def test_reset(srv: StandInServer) -> None:
    srv.enqueue(Reply.reset())
    with pytest.raises(ConnectionError):
        post(srv, CHAT, {"model": "m", "messages": USER_MSG})
    assert len(srv.requests) == 1
    # the server is fine afterwards
    assert post(srv, CHAT, {"model": "m", "messages": USER_MSG}).status == 200


def test_hang_causes_client_timeout(srv: StandInServer) -> None:
    srv.enqueue(Reply.hang(10))
    start = time.monotonic()
    with pytest.raises(TimeoutError):
        call(srv, "GET", "/v1/models", timeout=0.3)
    assert time.monotonic() - start < 5


def test_hang_then_reply(srv: StandInServer) -> None:
    srv.enqueue(Reply.hang(0.2, then=Reply.json({"late": True})), Reply.hang(0.1))
    assert call(srv, "GET", "/v1/models").json() == {"late": True}
    assert call(srv, "GET", "/v1/models").json()["object"] == "list"


def test_truncated(srv: StandInServer) -> None:
    srv.enqueue(Reply.truncated(b'{"id": "chat', 100))
    conn = http.client.HTTPConnection(srv.host, srv.port, timeout=5)
    try:
        conn.request("GET", "/v1/models")
        resp = conn.getresponse()
        assert resp.getheader("content-length") == "100"
        with pytest.raises(http.client.IncompleteRead) as info:
            resp.read()
        assert info.value.partial == b'{"id": "chat'
    finally:
        conn.close()
    with pytest.raises(ValueError, match="claimed_length"):
        Reply.truncated(b"abc", 3)


@pytest.mark.parametrize("delay_between", [0.0, 0.02])
def test_sse_die_after(srv: StandInServer, delay_between: float) -> None:
    srv.enqueue(Reply.sse([{"n": 1}, {"n": 2}, {"n": 3}], die_after=2, delay_between=delay_between))
    conn = http.client.HTTPConnection(srv.host, srv.port, timeout=5)
    try:
        conn.request("POST", CHAT, body=b"{}")
        resp = conn.getresponse()
        assert resp.status == 200
        with pytest.raises(http.client.IncompleteRead) as info:
            resp.read()
        assert info.value.partial == b'data: {"n":1}\n\ndata: {"n":2}\n\n'
    finally:
        conn.close()


def test_chat_stream_die_after(srv: StandInServer) -> None:
    srv.enqueue(Reply.chat_stream("one two three four", die_after=3))
    conn = http.client.HTTPConnection(srv.host, srv.port, timeout=5)
    try:
        conn.request("POST", CHAT, body=json.dumps({"model": "m", "messages": USER_MSG}))
        resp = conn.getresponse()
        with pytest.raises(http.client.IncompleteRead) as info:
            resp.read()
        assert info.value.partial.count(b"data: ") == 3
        assert b"[DONE]" not in info.value.partial
    finally:
        conn.close()


def test_stop_interrupts_hang() -> None:
    s = StandInServer().start()
    s.enqueue(Reply.hang(30))
    errors: list[BaseException] = []

    def client() -> None:
        try:
            call(s, "GET", "/v1/models", timeout=10)
        except BaseException as exc:  # recorded for the assertion below
            errors.append(exc)

    thread = threading.Thread(target=client)
    thread.start()
    s.wait_for_requests(1, timeout=5)
    start = time.monotonic()
    s.stop()
    assert time.monotonic() - start < 1.5
    thread.join(5)
    assert not thread.is_alive()
    assert len(errors) == 1
    assert isinstance(errors[0], ConnectionError | http.client.HTTPException)


def test_stop_closes_idle_keepalive_connections() -> None:
    s = StandInServer().start()
    conn = http.client.HTTPConnection(s.host, s.port, timeout=5)
    try:
        conn.request("GET", "/v1/models")
        conn.getresponse().read()
        start = time.monotonic()
        s.stop()
        assert time.monotonic() - start < 1.5
    finally:
        conn.close()


# ---------------------------------------------------------------------------------------------
# HTTP mechanics and records
# ---------------------------------------------------------------------------------------------


def test_keep_alive_connection_reuse(srv: StandInServer) -> None:
    conn = http.client.HTTPConnection(srv.host, srv.port, timeout=5)
    try:
        conn.request("POST", CHAT, body=json.dumps({"model": "m", "messages": USER_MSG}))
        resp = conn.getresponse()
        resp.read()
        assert not resp.will_close
        sock = conn.sock
        body = {"model": "m", "messages": USER_MSG, "stream": True}
        conn.request("POST", CHAT, body=json.dumps(body))
        resp = conn.getresponse()
        assert resp.read().endswith(b"data: [DONE]\n\n")
        assert not resp.will_close
        conn.request("GET", "/v1/models")
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 200
        assert conn.sock is sock
    finally:
        conn.close()


def test_connection_close_is_honoured(srv: StandInServer) -> None:
    r = call(srv, "GET", "/v1/models", headers={"Connection": "close"})
    assert r.headers["connection"] == "close"


def test_chunked_request_body(srv: StandInServer) -> None:
    payload = json.dumps({"model": "m", "messages": USER_MSG}).encode()
    conn = http.client.HTTPConnection(srv.host, srv.port, timeout=5)
    try:
        conn.request("POST", CHAT, body=iter([payload[:10], payload[10:]]), encode_chunked=True)
        resp = conn.getresponse()
        assert resp.status == 200
        resp.read()
    finally:
        conn.close()
    assert srv.last_request.body == payload


def test_recorded_requests(srv: StandInServer) -> None:
    before = time.monotonic()
    post(
        srv,
        "/v1/chat/completions?a=1&a=2&b=",
        {"model": "m", "messages": USER_MSG},
        headers={"Authorization": "Bearer k", "X-Custom": "v"},
    )
    call(srv, "GET", "/v1/models")
    reqs = srv.wait_for_requests(2, timeout=1)
    first = reqs[0]
    assert isinstance(first, RecordedRequest)
    assert first.method == "POST"
    assert first.path == CHAT
    assert first.target == "/v1/chat/completions?a=1&a=2&b="
    assert first.query == {"a": ["1", "2"], "b": [""]}
    assert first.headers["authorization"] == "Bearer k"
    assert first.header("X-CUSTOM") == "v"
    assert first.header("missing") is None
    assert first.json() == {"model": "m", "messages": USER_MSG}
    assert first.text.startswith("{")
    assert before <= first.time <= reqs[1].time
    assert reqs[1].body == b""
    assert srv.requests == reqs
    srv.enqueue(Reply.json({}))
    srv.clear()
    assert srv.requests == []
    assert srv.pending_replies == 0
    with pytest.raises(TimeoutError):
        srv.wait_for_requests(1, timeout=0.05)


def test_concurrent_requests(srv: StandInServer) -> None:
    results: list[int] = []
    lock = threading.Lock()

    def worker() -> None:
        status = post(srv, CHAT, {"model": "m", "messages": USER_MSG}).status
        with lock:
            results.append(status)

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert results == [200] * 16
    assert len(srv.requests) == 16
    ids = {json.loads(r.body)["model"] for r in srv.requests}
    assert ids == {"m"}


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------


def test_cli_refuses_non_loopback(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        server_module.main(["--host", "0.0.0.0"])
    assert info.value.code == 2
    assert "non-loopback" in capsys.readouterr().err


def _cli_env() -> dict[str, str]:
    package_root = Path(server_module.__file__).resolve().parents[2]
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(package_root), *sys.path])}


def test_cli_serves() -> None:
    env = _cli_env()
    proc = subprocess.Popen(
        [sys.executable, "-m", "chatcore.testing.server", "--flavor", "tgi", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        prefix = "chatcore stand-in server (tgi) listening on http://127.0.0.1:"
        assert line.startswith(prefix), line
        port = int(line.removeprefix(prefix))
        # the URL a client is configured with, ready to paste (with /v1 where the API has it)
        assert proc.stdout.readline().strip() == f"base_url: http://127.0.0.1:{port}/v1"
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            conn.request("GET", "/health")
            resp = conn.getresponse()
            resp.read()
            assert resp.status == 200
        finally:
            conn.close()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        assert proc.stdout is not None
        assert proc.stderr is not None
        proc.stdout.close()
        err = proc.stderr.read()
        proc.stderr.close()
    assert proc.returncode == 0, err


# test_cli_serves was flaky: main() raised KeyboardInterrupt from its SIGTERM handler, and a
# SIGTERM that arrived while the "listening on" line was being printed (a loaded machine: the
# test reads the line, asks /health and terminates before the main thread runs again)
# escaped main(): exit status -2, a traceback, the server not stopped (2 of 25 runs under CPU
# load). This delivers the signal at exactly that point, every time.
_SIGTERM_ON_ANNOUNCE = """
import os, signal, sys
import chatcore.testing.server as server

def announce(*args, **kwargs):
    print(*args, **kwargs)
    os.kill(os.getpid(), signal.SIGTERM)  # a supervisor stopping it as soon as it is up

server.print = announce
sys.exit(server.main(["--flavor", "tgi", "--port", "0"]))
"""


def test_cli_stops_cleanly_on_a_sigterm_right_after_announcing() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", _SIGTERM_ON_ANNOUNCE],
        capture_output=True,
        text=True,
        env=_cli_env(),
        timeout=120,
        check=False,
    )
    assert proc.stdout.startswith("chatcore stand-in server (tgi) listening on http://127.0.0.1:")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
