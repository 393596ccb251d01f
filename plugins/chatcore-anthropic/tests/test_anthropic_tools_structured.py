"""Tools, ``run_tools``, structured output, images and documents over real sockets, through
``Client`` and ``AsyncClient``; the stand-in checks every body the way the API does (tool
results paired with the tool uses just before them, thinking blocks sent back signed and
first, images whose bytes are their media type)."""

from __future__ import annotations

import base64
import json

import attrs
import pytest

import chatcore
from chatcore.exceptions import ValidationError
from chatcore.testing.server import STANDIN_NOTICE, Reply

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
GIF = b"GIF89a" + b"\x00" * 32
PDF = b"%PDF-1.4\n% a stand-in document\n"
THINKING = {"type": "enabled", "budget_tokens": 1024}


def get_weather(city: str) -> str:
    """The weather in a city.

    Args:
        city: The city's name.
    """
    return f"sunny in {city}"


def get_time(zone: str = "UTC") -> str:
    """The time in a zone."""
    return f"noon {zone}"


@attrs.frozen
class Forecast:
    city: str
    degrees: int
    sunny: bool


def test_run_tools_with_a_forced_first_call(either, server):
    run = either.run_tools("Weather in Paris?", [get_weather], tool_choice="required")
    assert run.completed and run.turns == 2
    assert run.response.text == f"{STANDIN_NOTICE} You said: Weather in Paris?"
    (record,) = run.calls
    assert record.name == "get_weather"
    first, second = (r.json() for r in server.requests)
    assert first["tool_choice"] == {"type": "any"}
    assert first["tools"][0]["input_schema"]["properties"]["city"]["type"] == "string"
    assert "tool_choice" not in second  # reset after the first turn
    assert [m["role"] for m in second["messages"]] == ["user", "assistant", "user"]
    (result,) = second["messages"][2]["content"]
    assert result["type"] == "tool_result"
    assert result["tool_use_id"] == second["messages"][1]["content"][0]["id"]


def test_parallel_calls_come_back_as_one_user_turn(either, server):
    server.enqueue(
        Reply.chat(
            "Checking both.",
            tool_calls=[
                {"name": "get_weather", "arguments": {"city": "Rome"}},
                {"name": "get_time", "arguments": {"zone": "CET"}},
            ],
        )
    )
    run = either.run_tools("Weather and time in Rome?", [get_weather, get_time])
    assert [c.name for c in run.calls] == ["get_weather", "get_time"]
    sent = server.last_request.json()["messages"]
    assert sent[1]["content"][0] == {"type": "text", "text": "Checking both."}
    results = sent[2]["content"]
    assert [b["content"] for b in results] == ["sunny in Rome", "noon CET"]
    assert [b["tool_use_id"] for b in results] == [b["id"] for b in sent[1]["content"][1:]]


def test_run_tools_with_thinking_sends_the_signed_thinking_back(either, server):
    server.enqueue(Reply.chat(tool_calls=[{"name": "get_weather", "arguments": {"city": "Oslo"}}]))
    run = either.run_tools(
        "Weather in Oslo?", [get_weather], max_tokens=3000, extra={"thinking": THINKING}
    )
    assert run.completed
    assistant = server.last_request.json()["messages"][1]
    assert [b["type"] for b in assistant["content"]] == ["thinking", "tool_use"]
    assert run.messages[1].reasoning_details[0] == assistant["content"][0]


def test_thinking_cannot_force_a_tool(either, server):
    with pytest.raises(ValidationError) as info:
        either.run_tools(
            "Weather?", [get_weather], tool_choice="required", extra={"thinking": THINKING}
        )
    assert "tool_choice" in dict(info.value.problems)
    assert server.requests == []


def test_structured_output_through_output_config(either, server):
    response = either.chat("Forecast for Nice", response_model=Forecast)
    assert response.parsed == Forecast(city="stand-in", degrees=0, sunny=False)
    sent = server.last_request.json()
    fmt = sent["output_config"]["format"]
    assert fmt["type"] == "json_schema"
    assert set(fmt["schema"]["required"]) == {"city", "degrees", "sunny"}
    assert "response_format" not in sent


def test_json_mode_without_a_schema_is_refused(make_client, server):
    with pytest.raises(ValidationError) as info:
        make_client().chat(
            "anthropic:claude-haiku-4-5", "JSON please", response_format={"type": "json_object"}
        )
    assert "json_schema" in dict(info.value.problems)["response_format"]
    assert server.requests == []


def test_images_and_documents(either, server):
    mislabeled = f"data:image/jpeg;base64,{base64.b64encode(GIF).decode()}"
    pdf = f"data:application/pdf;base64,{base64.b64encode(PDF).decode()}"
    message = chatcore.user_message_with_images(
        "Describe these", PNG, "https://example.com/cat.jpg"
    )
    content = [
        *message.to_dict()["content"],
        {"type": "image_url", "image_url": {"url": mislabeled}},
        {"type": "file", "file": {"file_data": pdf, "filename": "report.pdf"}},
    ]
    response = either.chat([{"role": "user", "content": content}])
    assert response.text.endswith("Describe these")
    blocks = server.last_request.json()["messages"][0]["content"]
    assert [b["type"] for b in blocks] == ["text", "image", "image", "image", "document"]
    assert blocks[1]["source"]["media_type"] == "image/png"
    assert blocks[2]["source"] == {"type": "url", "url": "https://example.com/cat.jpg"}
    assert blocks[3]["source"]["media_type"] == "image/gif"  # the bytes, not the label
    assert blocks[4]["title"] == "report.pdf"


def test_a_mid_conversation_system_message_is_accepted(either, server):
    response = either.chat(
        [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello."},
            {"role": "developer", "content": "Answer in French from now on."},
            {"role": "user", "content": "Again"},
        ]
    )
    assert response.text.endswith("Again")
    sent = server.last_request.json()
    assert sent["messages"][2]["role"] == "system"


def test_a_prefill_continues_the_answer(either, server):
    response = either.chat(
        [
            {"role": "user", "content": "Greek name for the Sun?"},
            {"role": "assistant", "content": "It is"},
        ]
    )
    assert response.text
    assert server.last_request.json()["messages"][-1] == {"role": "assistant", "content": "It is"}


def test_tool_arguments_are_objects_on_the_way_back(either, server):
    server.enqueue(Reply.chat(tool_calls=[{"name": "get_weather", "arguments": {"city": "Lima"}}]))
    response = either.chat("Weather in Lima?", tools=[chatcore.tool_from_function(get_weather)])
    (call,) = response.tool_calls
    assert json.loads(call.function.arguments) == {"city": "Lima"}
