"""The ``anthropic`` provider passes chatcore's provider conformance suite over real HTTP,
with ``Client`` and ``AsyncClient``, against the stand-in server's Messages API flavor,
resolved through the plugin's ``chatcore`` entry point. Replies are adapted to the Messages
wire (its error bodies, its ``request-id`` header, its tool definitions)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, ClassVar

from chatcore.testing.anthropic_server import anthropic_error
from chatcore.testing.conformance import ConformanceClient, ProviderConformance
from chatcore.testing.server import Reply, StandInServer

_WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


class TestAnthropicConformance(ProviderConformance):
    provider_name = "anthropic"
    model = "claude-haiku-4-5"
    server_flavor = "anthropic"
    api_key = "sk-ant-conformance-test-key-not-real"
    entry_point_name = "anthropic"
    request_id_header = "request-id"
    skip_checks: ClassVar[Mapping[str, str]] = {
        "generated_completions": "its bodies are OpenAI chat.completion objects; the Messages "
        "answers are generated in test_anthropic_translate.py instead",
        "hostile_stream_incremental": "the hostile server's staged stream holds OpenAI chunk "
        "events; event-by-event delivery of Messages events is checked in "
        "test_anthropic_stream.py",
    }

    def provider_options(self, server: StandInServer) -> dict[str, Any]:
        # the server's root: the Messages API's base URL has no /v1
        return {"api_key": self.api_key, "base_url": server.url}

    def error_reply(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Reply:
        """The Messages API's error body; the suite's quota code becomes Anthropic's
        spend-limit detail."""
        if code == "insufficient_quota":
            details = {"error_code": "enforced_spend_limit_reached"}
            return anthropic_error(status, message, details=details, headers=headers)
        return anthropic_error(status, message, headers=headers)

    async def exercise_tools(self, client: ConformanceClient, server: StandInServer) -> None:
        """``tools``: sent as Messages tools; the forced call comes back."""
        response = await client.chat(
            self.target,
            "What is the weather in Paris?",
            tools=[_WEATHER_TOOL],
            tool_choice="required",
        )
        (call,) = response.tool_calls
        assert call.function.name == "get_weather"
        assert json.loads(call.function.arguments) == {}
        sent = server.last_request.json()
        assert sent["tools"][0]["name"] == "get_weather"
        assert sent["tools"][0]["input_schema"] == _WEATHER_TOOL["function"]["parameters"]
        assert sent["tool_choice"] == {"type": "any"}
        assert response.finish_reason == "tool_calls"
