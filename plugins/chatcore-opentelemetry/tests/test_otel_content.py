"""Prompts and completions are recorded only when the user opts in (the standard
``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT``), in the conventions' message
schemas, through chatcore's redaction; no secret ever appears in any span."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import chatcore
from chatcore._redact import KnownSecrets, redact
from chatcore.models import FunctionCall, ImagePart, ImageURL, ToolCall
from chatcore_opentelemetry import conventions as sc
from chatcore_opentelemetry._content import input_messages, output_messages
from chatcore_opentelemetry._tracer import env_flag

from .conftest import SECRETS, all_strings

LEAKY = "my key is {key}, and Bearer sk-live-abcdefghijklmnopqrstuvwxyz0123 too"


def leaky_conversation(key: str) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": LEAKY.format(key=key)},
    ]


@pytest.mark.parametrize(
    ("value", "on"),
    [
        ("true", True),
        ("True", True),
        (" TRUE ", True),
        ("1", True),
        ("span_only", True),
        ("SPAN_AND_EVENT", True),
        ("false", False),
        ("", False),
        ("event_only", False),
        ("no", False),
    ],
)
def test_capture_follows_the_standard_variable(telemetry, value, on):
    tracer = telemetry.tracer(environ={sc.ENV_CAPTURE_CONTENT: value})
    assert tracer.capture_content is on


def test_no_content_and_no_secret_by_default(telemetry, make_client, target):
    client = make_client(target, telemetry.tracer())
    key = target.options["api_key"]
    response = client.chat(target.model, leaky_conversation(key), **target.params)
    assert response.text
    target.server.enqueue(target.error(400, f"bad key {key}"))
    with pytest.raises(chatcore.BadRequestError):
        client.chat(target.model, leaky_conversation(key), **target.params)
    for span in telemetry.chat_spans():
        assert sc.GEN_AI_INPUT_MESSAGES not in span.attributes
        assert sc.GEN_AI_OUTPUT_MESSAGES not in span.attributes
        text = "\n".join(all_strings(span))
        assert "Be brief" not in text
        assert response.text not in text
        for secret in (*SECRETS, "sk-live-abcdefghijklmnopqrstuvwxyz0123"):
            assert secret not in text


def test_opted_in_content_is_recorded_redacted(telemetry, make_client, target):
    tracer = telemetry.tracer(environ={sc.ENV_CAPTURE_CONTENT: "true"})
    client = make_client(target, tracer)
    key = target.options["api_key"]
    response = client.chat(target.model, leaky_conversation(key), **target.params)
    span = telemetry.span()
    sent = json.loads(span.attributes[sc.GEN_AI_INPUT_MESSAGES])
    assert sent == [
        {"role": "system", "parts": [{"type": "text", "content": "Be brief."}]},
        {
            "role": "user",
            "parts": [{"type": "text", "content": "my key is ***, and Bearer *** too"}],
        },
    ]
    answered = json.loads(span.attributes[sc.GEN_AI_OUTPUT_MESSAGES])
    assert answered == [
        {
            "role": "assistant",
            "parts": [{"type": "text", "content": redact(response.text)}],
            "finish_reason": response.choices[0].finish_reason,
        }
    ]
    text = "\n".join(all_strings(span))
    for secret in (*SECRETS, "sk-live-abcdefghijklmnopqrstuvwxyz0123"):
        assert secret not in text


def test_opted_in_stream_content(telemetry, make_client, openai_target):
    tracer = telemetry.tracer(capture_content=True)
    client = make_client(openai_target, tracer)
    with client.stream(openai_target.model, "Hello") as stream:
        response = stream.read()
    answered = json.loads(telemetry.span().attributes[sc.GEN_AI_OUTPUT_MESSAGES])
    assert answered[0]["parts"] == [{"type": "text", "content": response.text}]


def test_tool_calls_and_results_in_the_conventions_parts():
    messages = (
        chatcore.Message("user", "Weather in Paris?"),
        chatcore.Message(
            "assistant",
            None,
            tool_calls=(ToolCall("call_1", FunctionCall("weather", '{"city": "Paris"}')),),
        ),
        chatcore.Message("tool", "rainy, 57F", tool_call_id="call_1"),
        chatcore.Message(
            "user",
            (
                chatcore.TextPart("and this?"),
                ImagePart(ImageURL("https://u:pw@example.com/a.png?key=abc")),
                ImagePart(ImageURL("data:image/png;base64,iVBORw0KGgo=")),
            ),
        ),
    )
    assert json.loads(input_messages(messages, KnownSecrets())) == [
        {"role": "user", "parts": [{"type": "text", "content": "Weather in Paris?"}]},
        {
            "role": "assistant",
            "parts": [
                {
                    "type": "tool_call",
                    "id": "call_1",
                    "name": "weather",
                    "arguments": '{"city": "Paris"}',
                }
            ],
        },
        {
            "role": "tool",
            "parts": [{"type": "tool_call_response", "response": "rainy, 57F", "id": "call_1"}],
        },
        {
            "role": "user",
            "parts": [
                {"type": "text", "content": "and this?"},
                {
                    "type": "uri",
                    "modality": "image",
                    "uri": "https://***@example.com/a.png?key=***",
                },
                {"type": "image_data", "mime_type": "image/png"},
            ],
        },
    ]


SECRET = "sk-test-hypoSECRET0123456789abcdef"


@settings(max_examples=200, deadline=None)
@given(
    before=st.text(max_size=40),
    after=st.text(max_size=40),
    role=st.sampled_from(["user", "system", "assistant"]),
)
def test_a_known_secret_never_survives_into_recorded_content(before, after, role):
    secrets = KnownSecrets([SECRET])
    message = chatcore.Message(role, before + SECRET + after)
    recorded = input_messages((message,), secrets)
    assert SECRET not in recorded
    assert SECRET not in json.loads(recorded)[0]["parts"][0]["content"]
    response = chatcore.ChatResponse(
        id="x", model="m", choices=[chatcore.Choice(0, message, "stop")]
    )
    assert SECRET not in output_messages(response, secrets)


def test_env_flag_reads_the_given_environment_only():
    assert env_flag("X", {"X": "yes"})
    assert not env_flag("X", {})
