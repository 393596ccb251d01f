"""The deadline of the current call, shared by the pipeline and the transport.

The pipeline sets it from ``timeout_total``; the transport cuts each attempt's timeouts to
what remains of it. A ContextVar, so concurrent calls in threads never see each other's.
"""

from __future__ import annotations

import contextvars

#: Monotonic deadline of the current call, or ``None`` for no deadline.
call_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "chatcore_call_deadline", default=None
)
