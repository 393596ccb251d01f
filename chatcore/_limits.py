"""Rate limiter interface and the no-op default."""

from __future__ import annotations

from typing import Any, Protocol


class RateLimiter(Protocol):
    """What the pipeline asks of a rate limiter."""

    def acquire(self, provider: str, model: str, tokens: int) -> Any:
        """Block until a request of ``tokens`` estimated tokens may go; return a ticket."""

    def reconcile(self, ticket: Any, used_tokens: int | None, headers: Any) -> None:
        """Correct the reservation with what the answer reports."""


class NullRateLimiter:
    """Grants everything at once (the default when no limits are configured)."""

    def acquire(self, provider: str, model: str, tokens: int) -> None:
        """Grant immediately."""
        return None

    def reconcile(self, ticket: Any, used_tokens: int | None, headers: Any) -> None:
        """Nothing to reconcile."""
        return None
