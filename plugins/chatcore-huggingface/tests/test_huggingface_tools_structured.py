"""Tool calling and structured output through the huggingface provider: the router (an
OpenAI-compatible stand-in) runs the tool loop and JSON mode; TGI refuses tools together
with response_format before sending."""

from __future__ import annotations

from typing import Any

import attrs
import pytest

import chatcore
from chatcore.testing.server import Reply, StandInServer


def test_tool_loop_through_the_router(make_client: Any, router: StandInServer) -> None:
    def add(a: int, b: int) -> int:
        """Add two numbers."""
        return a + b

    client = make_client(router.base_url)
    router.enqueue(
        Reply.chat(
            tool_calls=[
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "add", "arguments": '{"a": 2, "b": 40}'},
                }
            ]
        ),
        Reply.chat("42"),
    )
    run = client.run_tools("huggingface:openai/gpt-oss-120b:groq", "2+40?", [add])
    assert run.text == "42"
    assert run.calls[0].result == 42
    assert router.requests[0].json()["model"] == "openai/gpt-oss-120b:groq"


@attrs.frozen
class City:
    name: str


def test_structured_output_falls_back_to_json_object(
    make_client: Any, router: StandInServer
) -> None:
    # the provider declares json_object but not json_schema: the schema goes in a message
    client = make_client(router.base_url)
    router.enqueue(Reply.chat('{"name": "Lyon"}'))
    response = client.chat(
        "huggingface:meta-llama/Llama-3.1-8B-Instruct", "A city", response_model=City
    )
    assert response.parsed == City("Lyon")
    body = router.requests[-1].json()
    assert body["response_format"] == {"type": "json_object"}
    assert any("schema" in str(m["content"]).lower() for m in body["messages"])


def test_tgi_refuses_tools_with_response_format(make_client: Any, tgi: StandInServer) -> None:
    client = make_client(tgi.url, token=None)
    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
    with pytest.raises(chatcore.ValidationError, match="response_format"):
        client.chat("huggingface:tgi", "hi", tools=[tool], response_format={"type": "json_object"})
    assert tgi.requests == []
