"""The ``chatcore_metrics_sinks`` hook: enabled by ``CHATCORE_PROMETHEUS`` or a
``prometheus`` setting, never merely by being installed; the plugin's entry point."""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable
from typing import Any

import attrs
import pytest
from prometheus_client import REGISTRY

import chatcore
import chatcore_prometheus
from chatcore import InMemoryMetrics
from chatcore_prometheus import ENV_VAR, PrometheusSink, chatcore_metrics_sinks, enabled


@attrs.frozen
class WithSetting:
    prometheus: Any


@pytest.mark.parametrize(
    ("settings", "environ", "expected"),
    [
        (None, {}, False),
        (None, {ENV_VAR: "1"}, True),
        (None, {ENV_VAR: "true"}, True),
        (None, {ENV_VAR: " ON "}, True),
        (None, {ENV_VAR: "0"}, False),
        (None, {ENV_VAR: "no"}, False),
        (None, {ENV_VAR: "maybe"}, False),
        (None, {"CHATCORE_PROMETHEUS_X": "1"}, False),
        (chatcore.Settings(), {}, False),
        (chatcore.Settings(), {ENV_VAR: "1"}, True),
        (WithSetting(True), {}, True),
        (WithSetting(False), {ENV_VAR: "1"}, False),  # a setting, when present, decides
        (WithSetting(None), {ENV_VAR: "1"}, True),
        (WithSetting("yes"), {}, True),
        ({"prometheus": 1}, {}, True),
        ({"prometheus": "off"}, {ENV_VAR: "1"}, False),
        ({}, {ENV_VAR: "yes"}, True),
    ],
)
def test_enabled(settings: Any, environ: dict[str, str], expected: bool) -> None:
    assert enabled(settings, environ) is expected


def test_entry_point() -> None:
    eps = [
        ep for ep in importlib.metadata.entry_points(group="chatcore") if ep.name == "prometheus"
    ]
    assert len(eps) == 1
    assert eps[0].value == "chatcore_prometheus"
    assert eps[0].load() is chatcore_prometheus


def test_installed_but_not_enabled(
    monkeypatch: pytest.MonkeyPatch, make_client: Callable[..., chatcore.Client]
) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert chatcore_metrics_sinks(settings=chatcore.Settings()) == []
    client = make_client()
    assert len(client.metrics_sinks) == 1
    assert isinstance(client.metrics_sinks[0], InMemoryMetrics)


def test_enabled_by_environment(
    monkeypatch: pytest.MonkeyPatch, make_client: Callable[..., chatcore.Client]
) -> None:
    monkeypatch.setenv(ENV_VAR, "1")
    sinks = chatcore_metrics_sinks(settings=chatcore.Settings())
    assert len(sinks) == 1 and isinstance(sinks[0], PrometheusSink)
    assert sinks[0].registry is REGISTRY
    first, second = make_client(), make_client()
    # one process-wide sink on the default registry, shared by every client
    assert first.metrics_sinks[1:] == second.metrics_sinks[1:] == (sinks[0],)

    labels = {"provider": "openai", "model": "gpt-4o-mini", "outcome": "ok"}
    before = REGISTRY.get_sample_value("chatcore_requests_total", labels) or 0.0
    first.chat("openai:gpt-4o-mini", "counted by the default sink")
    assert REGISTRY.get_sample_value("chatcore_requests_total", labels) == before + 1
    assert "chatcore_requests_total" in sinks[0].prometheus_text()


def test_enabled_by_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    sinks = chatcore_metrics_sinks(settings=WithSetting(True))
    assert sinks == [chatcore_prometheus.default_sink()]
