"""Installing the plugin is all it takes: in a fresh interpreter, its entry point gives every
client a tracer on the global providers (even ones the application sets after making the
client), configured from the environment; ``CHATCORE_DISABLE_PLUGINS`` turns it off."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

import chatcore_opentelemetry
from chatcore_opentelemetry import OpenTelemetryTracer

from .conftest import OPENAI_KEY

SCRIPT = textwrap.dedent(
    """
    import json, sys

    import chatcore
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    url, key = sys.argv[1], sys.argv[2]
    client = chatcore.Client(providers={"openai": {"api_key": key, "base_url": url}})
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)  # after the client: the API's proxy follows
    with trace.get_tracer("app").start_as_current_span("app"):
        client.chat("openai:gpt-4o-mini", "Hello")
    print(json.dumps({
        "tracers": [type(t).__name__ for t in client.tracers],
        "spans": [
            {
                "name": s.name,
                "parent": s.parent.span_id if s.parent else None,
                "id": s.context.span_id,
                "attributes": dict(s.attributes),
            }
            for s in exporter.get_finished_spans()
        ],
    }))
    """
)


def run(server_url: str, **env: str) -> dict:
    environ = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("CHATCORE_", "OTEL_", "OPENAI_", "HF_", "ANTHROPIC_"))
    }
    environ.update(env)
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, server_url, OPENAI_KEY],
        capture_output=True,
        text=True,
        env=environ,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_chatcore_tracers_entry_point_traces_every_client(openai_target):
    found = run(
        openai_target.server.base_url, OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT="true"
    )
    assert found["tracers"] == ["OpenTelemetryTracer"]
    app, chat = sorted(found["spans"], key=lambda s: s["name"])
    assert (app["name"], chat["name"]) == ("app", "chat gpt-4o-mini")
    assert chat["parent"] == app["id"]
    assert chat["attributes"]["gen_ai.provider.name"] == "openai"
    assert "Hello" in chat["attributes"]["gen_ai.input.messages"]
    assert OPENAI_KEY not in json.dumps(found)


def test_the_plugin_can_be_disabled(openai_target):
    found = run(openai_target.server.base_url, CHATCORE_DISABLE_PLUGINS="opentelemetry")
    assert found["tracers"] == []
    assert [s["name"] for s in found["spans"]] == ["app"]


def test_the_hook_returns_one_tracer_per_client(monkeypatch):
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "false")
    monkeypatch.setenv("CHATCORE_OTEL_PROPAGATE_CONTEXT", "true")
    first = chatcore_opentelemetry.chatcore_tracers(settings=None)
    second = chatcore_opentelemetry.chatcore_tracers(settings=None)
    assert len(first) == len(second) == 1
    assert isinstance(first[0], OpenTelemetryTracer)
    assert first[0] is not second[0]
    assert (first[0].capture_content, first[0].propagate_context) == (False, True)


@pytest.mark.parametrize("name", ["openai", "azure", "anthropic", "huggingface", "acme"])
def test_provider_names(name):
    from chatcore_opentelemetry.conventions import provider_name

    expected = {"azure": "azure.ai.openai"}.get(name, name)
    assert provider_name(name) == expected


BEFORE_AND_AFTER = textwrap.dedent(
    """
    import json, sys

    import chatcore
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    url, key = sys.argv[1], sys.argv[2]
    client = chatcore.Client(providers={"openai": {"api_key": key, "base_url": url}})
    (tracer,) = client.tracers
    call = chatcore.TracedCall("chat", client.build_request("openai:m", "Hi"), url)
    before = tracer.start(call)
    client.chat("openai:gpt-4o-mini", "before the SDK")
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    client.chat("openai:gpt-4o-mini", "after the SDK")
    print(json.dumps({
        "handle_before": before is not None,
        "spans": [s.name for s in exporter.get_finished_spans()],
    }))
    """
)


def test_no_sdk_means_no_tracing_work_until_one_is_set(openai_target):
    """With only the API (no SDK configured) a call is not traced at all, and no
    traceparent is sent; once the application sets a provider, calls are traced."""
    environ = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("CHATCORE_", "OTEL_", "OPENAI_", "HF_", "ANTHROPIC_"))
    }
    environ["CHATCORE_OTEL_PROPAGATE_CONTEXT"] = "true"
    done = subprocess.run(
        [sys.executable, "-c", BEFORE_AND_AFTER, openai_target.server.base_url, OPENAI_KEY],
        capture_output=True,
        text=True,
        env=environ,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found == {"handle_before": False, "spans": ["chat gpt-4o-mini"]}
    before, after = openai_target.server.requests
    assert before.header("traceparent") is None
    assert after.header("traceparent") is not None
