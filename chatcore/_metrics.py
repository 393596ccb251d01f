"""Metrics events the pipeline hands to every sink."""

from __future__ import annotations

import attrs


@attrs.frozen
class RequestEvent:
    """One finished request: who, how it ended, how long, how many tokens and attempts."""

    provider: str
    model: str
    outcome: str
    latency: float
    attempts: int = 1
    error_type: str | None = None
    status_code: int | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cached: bool = False
