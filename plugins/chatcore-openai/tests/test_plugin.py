"""The plugin is found through its ``chatcore`` entry point and offers both providers."""

from __future__ import annotations

import importlib.metadata
import warnings

import chatcore
import chatcore_openai
from chatcore._plugins import PluginWarning


def test_entry_point() -> None:
    eps = {ep.name: ep for ep in importlib.metadata.entry_points(group="chatcore")}
    assert eps["openai"].value == "chatcore_openai"
    assert eps["openai"].load() is chatcore_openai
    dist = eps["openai"].dist
    assert dist is not None
    assert dist.metadata["Name"] == "chatcore-openai"
    assert dist.version == chatcore_openai.__version__ == "0.1.0"


def test_list_plugins_shows_both_providers() -> None:
    with warnings.catch_warnings():
        # another plugin of the checkout failing to load is not this plugin's concern
        warnings.simplefilter("ignore", PluginWarning)
        records = {r.name: r for r in chatcore.list_plugins()}
    record = records["openai"]
    assert record.ok
    assert record.distribution == "chatcore-openai"
    assert record.version == "0.1.0"
    assert set(record.providers) == {"openai", "azure"}
    assert record.hooks == ("chatcore_providers",)


def test_hook_returns_specs() -> None:
    specs = chatcore_openai.chatcore_providers()
    assert [s.name for s in specs] == ["openai", "azure"]
    assert all(s.capabilities <= chatcore.provider.CAPABILITIES for s in specs)


def test_import_is_light() -> None:
    import subprocess
    import sys

    code = (
        "import sys, chatcore_openai; "
        "print(sorted(m for m in sys.modules if m.startswith('chatcore_openai')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "['chatcore_openai']"
