"""The stand-in server's Messages API flavor (``chatcore.testing.anthropic_server``), spoken to
with plain ``requests``: it refuses what the real API refuses, in the API's error shape, and
answers (JSON and event streams) with the API's headers."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
import requests

from chatcore.testing.anthropic_server import (
    anthropic_error,
    anthropic_events,
    frame_event,
    overloaded,
    sign_thinking,
)
from chatcore.testing.server import STANDIN_NOTICE, Reply, StandInServer

KEY = "sk-ant-standin-test-0123456789"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 8
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 8
HEADERS = {"x-api-key": KEY, "anthropic-version": "2023-06-01"}


@pytest.fixture
def srv() -> Iterator[StandInServer]:
    with StandInServer(flavor="anthropic", api_key=KEY) as server:
        yield server


def post(srv: StandInServer, body: Any, headers: dict[str, str] | None = None) -> requests.Response:
    sent = {**HEADERS, **(headers or {})}
    sent = {k: v for k, v in sent.items() if v is not None}
    return requests.post(f"{srv.url}/v1/messages", json=body, headers=sent, timeout=5)


def ask(messages: Any, **fields: Any) -> dict[str, Any]:
    return {"model": "claude-haiku-4-5", "max_tokens": 100, "messages": messages, **fields}


def refused(srv: StandInServer, body: Any, **kw: Any) -> str:
    answer = post(srv, body, **kw)
    assert answer.status_code == 400, answer.text
    data = answer.json()
    assert data["type"] == "error" and data["error"]["type"] == "invalid_request_error"
    assert data["request_id"] == answer.headers["request-id"]
    return str(data["error"]["message"])


USE = {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}
RESULT = {"type": "tool_result", "tool_use_id": "toolu_1", "content": "ok"}


def test_a_message_and_its_headers(srv):
    answer = post(srv, ask([{"role": "user", "content": "Hello"}]))
    assert answer.status_code == 200
    data = answer.json()
    assert data["type"] == "message" and data["role"] == "assistant"
    assert data["content"] == [{"type": "text", "text": f"{STANDIN_NOTICE} You said: Hello"}]
    assert data["stop_reason"] == "end_turn" and data["stop_sequence"] is None
    assert set(data["usage"]) == {
        "input_tokens",
        "output_tokens",
        "cache_creation_input_tokens",
        "cache_read_input_tokens",
    }
    assert answer.headers["request-id"].startswith("req_")
    for family in ("requests", "tokens", "input-tokens", "output-tokens"):
        int(answer.headers[f"anthropic-ratelimit-{family}-remaining"])
        reset = answer.headers[f"anthropic-ratelimit-{family}-reset"]
        assert datetime.fromisoformat(reset.replace("Z", "+00:00")).tzinfo is not None


@pytest.mark.parametrize(
    ("headers", "status", "needle"),
    [
        ({"x-api-key": None}, 401, "x-api-key header is required"),
        ({"x-api-key": "sk-ant-wrong"}, 401, "invalid x-api-key"),
        ({"x-api-key": None, "authorization": f"Bearer {KEY}"}, 200, None),
        ({"anthropic-version": None}, 400, "anthropic-version: header is required"),
        ({"anthropic-version": "2099-01-01"}, 400, "not a valid version"),
    ],
)
def test_authentication_and_version(srv, headers, status, needle):
    answer = post(srv, ask([{"role": "user", "content": "Hi"}]), headers=headers)
    assert answer.status_code == status
    if needle:
        assert needle in answer.json()["error"]["message"]


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (
            {"model": "claude-haiku-4-5", "messages": [{"role": "user", "content": "x"}]},
            "max_tokens: Field required",
        ),
        (ask([{"role": "user", "content": "x"}], temperature_x=1), "temperature_x: Extra inputs"),
        (ask([{"role": "user", "content": "x"}], temperature=1.5), "temperature"),
        (ask([]), "at least one message"),
        (ask([{"role": "tool", "content": "x"}]), "role"),
        (ask([{"role": "user", "content": "x", "name": "bob"}]), "name: Extra inputs"),
        (ask([{"role": "user", "content": " "}]), "non-empty content"),
        (ask([{"role": "user", "content": [{"type": "text", "text": ""}]}]), "non-whitespace"),
        (
            ask([{"role": "user", "content": [{"type": "text", "text": "x", "x": 1}]}]),
            "x: Extra inputs",
        ),
        (ask([{"role": "user", "content": [{"type": "video"}]}]), "does not match"),
        (ask([{"role": "user", "content": [USE]}]), "not allowed"),
        (ask([{"role": "assistant", "content": [RESULT]}]), "not allowed"),
        (ask([{"role": "user", "content": [RESULT]}]), "corresponding `tool_use`"),
        (
            ask(
                [
                    {"role": "user", "content": "x"},
                    {"role": "assistant", "content": [USE]},
                    {"role": "user", "content": [{"type": "text", "text": "y"}, RESULT]},
                ]
            ),
            "must come first",
        ),
        (
            ask(
                [
                    {"role": "user", "content": "x"},
                    {"role": "assistant", "content": [USE]},
                    {"role": "user", "content": "y"},
                ]
            ),
            "without `tool_result`",
        ),
        (
            ask([{"role": "user", "content": "x"}, {"role": "assistant", "content": "y "}]),
            "trailing whitespace",
        ),
        (ask([{"role": "user", "content": "x"}], tool_choice={"type": "any"}), "no tools"),
        (
            ask(
                [{"role": "user", "content": "x"}],
                tools=[{"name": "f", "input_schema": {"type": "array"}}],
            ),
            "input_schema.type",
        ),
        (
            ask([{"role": "user", "content": "x"}], tools=[{"name": "f", "parameters": {}}]),
            "parameters: Extra inputs",
        ),
        (ask([{"role": "user", "content": "x"}], metadata={"session": "1"}), "session"),
        (ask([{"role": "user", "content": "x"}], stop_sequences="END"), "stop_sequences"),
    ],
)
def test_what_the_api_refuses(srv, body, needle):
    assert needle in refused(srv, body)


def test_images_must_be_what_their_media_type_says(srv):
    def image(mime: str, raw: bytes) -> dict[str, Any]:
        source = {"type": "base64", "media_type": mime, "data": base64.b64encode(raw).decode()}
        return {
            "role": "user",
            "content": [{"type": "image", "source": source}, {"type": "text", "text": "?"}],
        }

    assert post(srv, ask([image("image/png", PNG)])).status_code == 200
    assert "appears to be a image/jpeg" in refused(srv, ask([image("image/png", JPEG)]))
    assert "media_type" in refused(srv, ask([image("image/bmp", b"BM")]))
    bad = image("image/png", PNG)
    bad["content"][0]["source"]["data"] = "not*base64"
    assert "invalid base64" in refused(srv, ask([bad]))
    pdf = {
        "type": "base64",
        "media_type": "application/pdf",
        "data": base64.b64encode(PNG).decode(),
    }
    document = {"role": "user", "content": [{"type": "document", "source": pdf}]}
    assert "not valid" in refused(srv, ask([document]))


def test_the_rules_of_thinking(srv):
    thinking = {"type": "enabled", "budget_tokens": 1024}
    user = {"role": "user", "content": "x"}
    assert "greater than or equal to 1024" in refused(
        srv, ask([user], thinking={"type": "enabled", "budget_tokens": 10})
    )
    assert "must be greater than" in refused(srv, ask([user], max_tokens=1024, thinking=thinking))
    tools = [{"name": "f", "input_schema": {"type": "object"}}]
    for extra, needle in (
        ({"tools": tools, "tool_choice": {"type": "any"}}, "forces tool use"),
        ({"temperature": 0.5}, "temperature"),
        ({"top_k": 5}, "top_k"),
        ({"top_p": 0.5}, "top_p"),
    ):
        assert needle in refused(srv, ask([user], max_tokens=2048, thinking=thinking, **extra))
    answer = post(srv, ask([user], max_tokens=2048, thinking=thinking)).json()
    block = answer["content"][0]
    assert block["type"] == "thinking" and block["signature"] == sign_thinking(block["thinking"])
    assert answer["usage"]["output_tokens_details"]["thinking_tokens"] > 0
    # a tool loop's last assistant turn must start with its (signed) thinking
    loop = [user, {"role": "assistant", "content": [USE]}, {"role": "user", "content": [RESULT]}]
    assert "must start with a thinking block" in refused(
        srv, ask(loop, max_tokens=2048, thinking=thinking, tools=tools)
    )
    forged = {**block, "thinking": block["thinking"] + " (edited)"}
    loop[1] = {"role": "assistant", "content": [forged, USE]}
    assert "Invalid `signature`" in refused(
        srv, ask(loop, max_tokens=2048, thinking=thinking, tools=tools)
    )
    loop[1] = {"role": "assistant", "content": [block, USE]}
    assert post(srv, ask(loop, max_tokens=2048, thinking=thinking, tools=tools)).status_code == 200


def test_cache_breakpoints_and_the_simulated_cache(srv):
    marked = {"type": "ephemeral"}
    system = [{"type": "text", "text": "rules " * 100, "cache_control": marked}]
    user = [{"role": "user", "content": "x"}]
    first = post(srv, ask(user, system=system)).json()["usage"]
    second = post(srv, ask(user, system=system)).json()["usage"]
    assert first["cache_creation_input_tokens"] == second["cache_read_input_tokens"] > 0
    assert second["cache_creation_input_tokens"] == first["cache_read_input_tokens"] == 0
    many = [{"type": "text", "text": f"r{i}", "cache_control": marked} for i in range(5)]
    assert "A maximum of 4 blocks" in refused(srv, ask(user, system=many))
    assert "ttl" in refused(srv, ask(user, cache_control={"type": "ephemeral", "ttl": "1d"}))


def test_default_answers_follow_the_request(srv):
    user = [{"role": "user", "content": "Hello"}]
    cut = post(srv, ask(user, stop_sequences=["stand-in"])).json()
    assert (cut["stop_reason"], cut["stop_sequence"]) == ("stop_sequence", "stand-in")
    assert post(srv, ask(user, max_tokens=2)).json()["stop_reason"] == "max_tokens"
    tools = [{"name": "f", "input_schema": {"type": "object"}}]
    forced = post(srv, ask(user, tools=tools, tool_choice={"type": "tool", "name": "f"})).json()
    assert forced["stop_reason"] == "tool_use"
    assert forced["content"][0]["name"] == "f" and forced["content"][0]["input"] == {}
    schema = {
        "type": "object",
        "properties": {"n": {"type": "integer"}, "tags": {"type": "array"}, "k": {"enum": ["a"]}},
        "required": ["n", "tags", "k"],
    }
    fmt = {"format": {"type": "json_schema", "schema": schema}}
    structured = post(srv, ask(user, output_config=fmt)).json()
    assert json.loads(structured["content"][0]["text"]) == {"n": 0, "tags": [], "k": "a"}
    unknown = post(srv, {**ask(user), "model": "claude-nope"})
    assert unknown.status_code == 404
    assert unknown.json()["error"] == {"type": "not_found_error", "message": "model: claude-nope"}


def test_an_event_stream(srv):
    answer = post(srv, ask([{"role": "user", "content": "Hi"}], stream=True))
    assert answer.headers["content-type"].startswith("text/event-stream")
    frames = [f for f in answer.text.split("\n\n") if f]
    names = [f.split("\n")[0].removeprefix("event: ") for f in frames]
    assert names[:3] == ["message_start", "content_block_start", "ping"]
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    datas = [json.loads(f.split("\n")[1].removeprefix("data: ")) for f in frames]
    assert all(d["type"] == n for d, n in zip(datas, names))
    text = "".join(d["delta"]["text"] for d in datas if d["type"] == "content_block_delta")
    assert text == f"{STANDIN_NOTICE} You said: Hi"
    assert "[DONE]" not in answer.text


def test_models_are_paginated(srv):
    def page(**query: Any) -> dict[str, Any]:
        answer = requests.get(f"{srv.url}/v1/models", params=query, headers=HEADERS, timeout=5)
        assert answer.status_code == 200
        return dict(answer.json())

    ids = list(srv.model_list)
    first = page(limit=2)
    assert [m["id"] for m in first["data"]] == ids[:2]
    assert first["has_more"] is True and first["last_id"] == ids[1]
    rest = page(limit=2, after_id=first["last_id"])
    assert [m["id"] for m in rest["data"]] == ids[2:] and rest["has_more"] is False
    assert [m["id"] for m in page(limit=1, before_id=ids[2])["data"]] == [ids[1]]
    assert page()["data"][0]["type"] == "model"
    one = requests.get(f"{srv.url}/v1/models/{ids[0]}", headers=HEADERS, timeout=5).json()
    assert one["id"] == ids[0]
    missing = requests.get(f"{srv.url}/v1/models/claude-nope", headers=HEADERS, timeout=5)
    assert missing.status_code == 404
    bad = requests.get(f"{srv.url}/v1/models", params={"limit": 0}, headers=HEADERS, timeout=5)
    assert bad.status_code == 400


def test_scripted_replies_in_the_messages_shape(srv):
    srv.enqueue(
        Reply.chat(
            "Scripted.", usage={"prompt_tokens": 3, "completion_tokens": 2}, finish_reason="length"
        ),
        anthropic_error(
            429, "Slow down", details={"error_code": "x"}, headers={"retry-after": "4"}
        ),
        overloaded(),
        anthropic_events([{"type": "message_stop"}, ("custom", {"a": 1}), "raw"]),
    )
    user = ask([{"role": "user", "content": "Hi"}])
    data = post(srv, user).json()
    assert data["content"] == [{"type": "text", "text": "Scripted."}]
    assert data["stop_reason"] == "max_tokens"
    assert data["usage"]["input_tokens"] == 3 and data["usage"]["output_tokens"] == 2
    throttled = post(srv, user)
    assert (throttled.status_code, throttled.headers["retry-after"]) == (429, "4")
    assert throttled.json()["error"]["details"] == {"error_code": "x"}
    assert post(srv, user).status_code == 529
    raw = post(srv, user).text
    assert (
        raw == 'event: message_stop\ndata: {"type":"message_stop"}\n\n'
        'event: custom\ndata: {"a":1}\n\n'
        "data: raw\n\n"
    )
    # a scripted answer is checked like a real one first
    srv.enqueue(Reply.chat("never"))
    assert "max_tokens" in refused(
        srv, {"model": "m", "messages": [{"role": "user", "content": "x"}]}
    )
    assert frame_event({"type": "ping"}) == b'event: ping\ndata: {"type":"ping"}\n\n'


def test_the_flavor_is_offered_by_the_cli_and_the_constructor():
    from chatcore.testing import server

    with pytest.raises(ValueError, match="anthropic"):
        StandInServer(flavor="gemini")  # type: ignore[arg-type]
    assert "anthropic" in server.DEFAULT_MODELS
    with StandInServer(flavor="anthropic") as open_server:  # no api_key: no authentication
        answer = requests.post(
            f"{open_server.url}/v1/messages",
            json=ask([{"role": "user", "content": "x"}]),
            headers={"anthropic-version": "2023-06-01"},
            timeout=5,
        )
        assert answer.status_code == 200
