"""Test helpers for chatcore and its plugins.

- :mod:`chatcore.testing.server`: a local OpenAI/Azure/HF/TGI-compatible stand-in server with
  scripted replies and fault injection (``StandInServer``, ``Reply``, ``RecordedRequest``);
- :mod:`chatcore.testing.helpers`: a scripted provider, a metrics recorder, a sleep that
  never sleeps, log capture;
- :mod:`chatcore.testing.conformance`: ``ProviderConformance``, the test battery every
  provider plugin subclasses;
- :mod:`chatcore.testing.plugin`: the pytest fixtures (``chatcore_client_factory``,
  ``register_plugin``, ``scripted_provider``, ``standin_server``, ...);
- :mod:`chatcore.testing.strategies`: hypothesis strategies for OpenAI-shaped payloads.

Names are imported lazily: importing ``chatcore.testing`` imports neither pytest nor the
server.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ClientFactory": "helpers",
    "LogCapture": "helpers",
    "MetricsRecorder": "helpers",
    "OpenAIWireProvider": "helpers",
    "LegacyWireProvider": "helpers",
    "ProviderConformance": "conformance",
    "RecordedRequest": "server",
    "RecordingSleep": "helpers",
    "Reply": "server",
    "ScriptedProvider": "helpers",
    "StandInServer": "server",
    "capture_logs": "helpers",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'chatcore.testing' has no attribute {name!r}")
    return getattr(importlib.import_module(f"chatcore.testing.{module}"), name)


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
