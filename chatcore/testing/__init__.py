"""Test helpers for chatcore and its plugins: a local OpenAI/HF/TGI-compatible stand-in
server with scripted replies and fault injection (:mod:`chatcore.testing.server`)."""

from __future__ import annotations

from typing import Any

__all__ = ["RecordedRequest", "Reply", "StandInServer"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from chatcore.testing import server

        return getattr(server, name)
    raise AttributeError(name)
