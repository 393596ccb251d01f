"""Retry policy: the one used by every client request, also usable on your own functions.

``RetryPolicy`` holds the rules (OpenAI-SDK-like defaults); ``with_retry`` applies them to
any function that raises chatcore errors.
"""

from __future__ import annotations

from chatcore._retry import RETRY_STATUSES, RetryPolicy, with_retry

__all__ = ["RETRY_STATUSES", "RetryPolicy", "with_retry"]
