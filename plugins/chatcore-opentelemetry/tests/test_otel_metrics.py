"""The ``gen_ai.client.*`` histograms: names, units, the conventions' bucket advice and
attributes, for chat, stream, error and cached calls, read by the SDK's in-memory reader."""

from __future__ import annotations

import pytest

import chatcore
from chatcore_opentelemetry import conventions as sc

DURATION_BOUNDS = (
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
)  # fmt: skip
TOKEN_BOUNDS = (
    1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864,
)  # fmt: skip


def base(target):
    return {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": target.semconv_name,
        "gen_ai.request.model": target.model_id,
        "server.address": "127.0.0.1",
        "server.port": target.server.port,
    }


def test_a_chat_records_duration_and_tokens(telemetry, make_client, target):
    client = make_client(target, telemetry.tracer())
    response = client.chat(target.model, "Hello", **target.params)
    found = telemetry.histograms()
    assert set(found) == {sc.METRIC_OPERATION_DURATION, sc.METRIC_TOKEN_USAGE}
    labels = {**base(target), "gen_ai.response.model": response.model}
    (duration,) = found[sc.METRIC_OPERATION_DURATION]
    assert duration.unit == "s"
    assert dict(duration.attributes) == labels
    assert duration.count == 1
    assert tuple(duration.explicit_bounds) == DURATION_BOUNDS
    assert 0 < duration.sum < 60
    tokens = {p.attributes["gen_ai.token.type"]: p for p in found[sc.METRIC_TOKEN_USAGE]}
    assert set(tokens) == {"input", "output"}
    assert response.usage is not None
    for kind, count in (
        ("input", response.usage.prompt_tokens),
        ("output", response.usage.completion_tokens),
    ):
        point = tokens[kind]
        assert point.unit == "{token}"
        assert dict(point.attributes) == {**labels, "gen_ai.token.type": kind}
        assert (point.count, point.sum) == (1, count)
        assert tuple(point.explicit_bounds) == TOKEN_BOUNDS


def test_a_stream_records_its_time_to_first_chunk(telemetry, make_client, openai_target):
    client = make_client(openai_target, telemetry.tracer())
    with client.stream(openai_target.model, "Hello") as stream:
        for _ in stream:
            pass
    found = telemetry.histograms()
    (ttfc,) = found[sc.METRIC_TIME_TO_FIRST_CHUNK]
    (duration,) = found[sc.METRIC_OPERATION_DURATION]
    assert ttfc.unit == "s"
    assert tuple(ttfc.explicit_bounds) == DURATION_BOUNDS
    assert dict(ttfc.attributes) == dict(duration.attributes)
    assert ttfc.count == 1
    assert 0 < ttfc.sum <= duration.sum
    span = telemetry.span()
    assert span.attributes[sc.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK] == pytest.approx(ttfc.sum)


def test_a_chat_records_no_time_to_first_chunk(telemetry, make_client, openai_target):
    make_client(openai_target, telemetry.tracer()).chat(openai_target.model, "Hello")
    assert sc.METRIC_TIME_TO_FIRST_CHUNK not in telemetry.histograms()


def test_an_error_records_its_type_and_no_tokens(telemetry, make_client, target):
    client = make_client(target, telemetry.tracer())
    target.server.enqueue(*[target.error(503, "busy")] * 3)
    with pytest.raises(chatcore.ServiceUnavailableError):
        client.chat(target.model, "Hello", **target.params)
    found = telemetry.histograms()
    assert set(found) == {sc.METRIC_OPERATION_DURATION}
    (duration,) = found[sc.METRIC_OPERATION_DURATION]
    assert dict(duration.attributes) == {**base(target), "error.type": "ServiceUnavailableError"}


def test_a_cache_hit_is_a_duration_marked_cached_and_no_tokens(
    telemetry, make_client, openai_target
):
    client = make_client(openai_target, telemetry.tracer(), cache=True)
    first = client.chat(openai_target.model, "Hello")
    client.chat(openai_target.model, "Hello")
    found = telemetry.histograms()
    durations = {
        p.attributes.get("chatcore.cached", False): p for p in found[sc.METRIC_OPERATION_DURATION]
    }
    assert set(durations) == {False, True}
    assert durations[True].count == durations[False].count == 1
    assert dict(durations[True].attributes) == {
        **base(openai_target),
        "gen_ai.response.model": first.model,
        "chatcore.cached": True,
    }
    assert sum(p.count for p in found[sc.METRIC_TOKEN_USAGE]) == 2  # the first call's only


def test_a_stream_closed_early_records_nothing(telemetry, make_client, openai_target):
    client = make_client(openai_target, telemetry.tracer())
    with client.stream(openai_target.model, "Hello there") as stream:
        next(stream)
    assert telemetry.histograms() == {}
    assert telemetry.span().attributes[sc.CHATCORE_STREAM_CLOSED_EARLY] is True
