"""Tool calling and structured output through the openai provider, over HTTP to the strict
OpenAI stand-in (which rejects any request the real API would reject)."""

from __future__ import annotations

import attrs

import chatcore
from chatcore.testing.server import Reply, StandInServer


def test_tool_loop_through_the_openai_plugin(
    client: chatcore.Client, server: StandInServer
) -> None:
    def get_weather(city: str) -> dict[str, object]:
        """The weather in a city."""
        return {"city": city, "temperature": 21}

    server.enqueue(
        Reply.chat(
            tool_calls=[
                {
                    "id": "call_w",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ]
        ),
        Reply.chat("It is 21 degrees in Paris."),
    )
    run = client.run_tools("openai:gpt-4o-mini", "Weather in Paris?", [get_weather])
    assert run.text == "It is 21 degrees in Paris."
    assert run.calls[0].arguments == {"city": "Paris"}
    first, second = (r.json() for r in server.requests)
    assert first["tools"][0]["function"]["name"] == "get_weather"
    roles = [m["role"] for m in second["messages"]]
    assert roles == ["user", "assistant", "tool"]
    assert second["messages"][2]["tool_call_id"] == "call_w"


def test_tool_call_stream_through_the_openai_plugin(
    client: chatcore.Client, server: StandInServer
) -> None:
    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
    with client.stream("openai:gpt-4o-mini", "call f", tools=[tool], tool_choice="required") as s:
        response = s.read()
    assert response.tool_calls
    assert response.tool_calls[0].function.name == "f"
    assert response.finish_reason == "tool_calls"


@attrs.frozen
class Verdict:
    label: str
    score: float


def test_structured_output_through_the_openai_plugin(
    client: chatcore.Client, server: StandInServer
) -> None:
    server.enqueue(Reply.chat('{"label": "positive", "score": 0.9}'))
    response = client.chat("openai:gpt-4o-mini", "Classify: great!", response_model=Verdict)
    assert response.parsed == Verdict("positive", 0.9)
    rf = server.requests[-1].json()["response_format"]
    assert rf["type"] == "json_schema"
    assert rf["json_schema"]["strict"] is True
