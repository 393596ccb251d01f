"""The one retry policy of every chatcore request (tenacity underneath).

Defaults follow the OpenAI SDK, which users already trust: 2 retries (3 attempts) on 408,
409, 429 (never a quota 429), 5xx, connection errors and timeouts; ``x-should-retry``
overrides; backoff ``min(0.5 * 2**n, 8) * (1 - 0.25 * random())``; a server-demanded
delay (``retry-after-ms``, ``retry-after``, HF ``estimated_time``) is used as given when
``0 < delay <= max_retry_after``, and a longer one ends retrying (a demand that is not a
finite number > 0 is ignored). On top: a total deadline across attempts, and ``attempts``
reported on the response and on the raised error.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any, TypeVar

import attrs

from chatcore.exceptions import (
    APIConnectionError,
    APIError,
    APIStatusError,
    ContextWindowExceededError,
    QuotaExceededError,
    finite_seconds,
)

__all__ = ["RetryPolicy"]

T = TypeVar("T")

#: 408, 409, 429 and every 5xx (as the OpenAI SDK); a quota 429 is never retried.
RETRY_STATUSES = frozenset({408, 409, 429, *range(500, 600)})


def _non_negative(_inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        from chatcore.exceptions import ConfigurationError

        raise ConfigurationError(f"{attribute.name}={value!r}: expected an integer >= 0")


def _positive_or_none(_inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and (
        not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0
    ):
        from chatcore.exceptions import ConfigurationError

        raise ConfigurationError(f"{attribute.name}={value!r}: expected seconds > 0")


@attrs.frozen
class RetryPolicy:
    """When and how long to wait before trying a failed request again.

    ``sleep``, ``clock`` and ``random`` are injectable so tests never sleep for real.
    """

    max_retries: int = attrs.field(default=2, validator=_non_negative)
    initial_delay: float = attrs.field(default=0.5, validator=_positive_or_none)
    max_delay: float = attrs.field(default=8.0, validator=_positive_or_none)
    jitter: float = 0.25
    max_retry_after: float = attrs.field(default=120.0, validator=_positive_or_none)
    timeout_total: float | None = attrs.field(default=None, validator=_positive_or_none)
    retry_statuses: frozenset[int] = RETRY_STATUSES
    sleep: Callable[[float], None] = attrs.field(default=time.sleep, eq=False, repr=False)
    clock: Callable[[], float] = attrs.field(default=time.monotonic, eq=False, repr=False)
    random: Callable[[], float] = attrs.field(default=random.random, eq=False, repr=False)
    on_retry: Callable[[int, BaseException, float], None] | None = attrs.field(
        default=None, eq=False, repr=False
    )

    def should_retry(self, error: BaseException) -> bool:
        """Whether ``error`` is worth another attempt (ignoring counts and deadlines)."""
        if not isinstance(error, APIError):
            return False
        if isinstance(error, (QuotaExceededError, ContextWindowExceededError)):
            return False
        if error.should_retry is not None:
            return error.should_retry
        if isinstance(error, APIStatusError):
            return error.status_code in self.retry_statuses
        return isinstance(error, APIConnectionError)

    def backoff(self, retry_number: int) -> float:
        """The computed delay before retry ``retry_number`` (0 for the first retry)."""
        base = min(self.initial_delay * 2**retry_number, self.max_delay)
        return float(base * (1 - self.jitter * self.random()))

    def next_delay(self, retry_number: int, error: BaseException) -> float | None:
        """Seconds to wait before the next attempt, or ``None`` when the server demands a
        longer wait than ``max_retry_after`` (so retrying should stop). A demand that is not
        a finite number > 0 is ignored (the computed backoff is used)."""
        demanded = finite_seconds(getattr(error, "retry_after", None))
        if demanded is not None and demanded > 0:
            if demanded <= self.max_retry_after:
                return float(demanded)
            return None
        return self.backoff(retry_number)

    def retry_delay(self, attempts: int, error: BaseException, started: float) -> float | None:
        """Seconds to wait before another attempt after ``error`` ended attempt number
        ``attempts`` of a call that began at ``started`` (on :attr:`clock`), or ``None``
        when retrying must stop: retries used up, an error not worth retrying, a server
        demand over ``max_retry_after``, or a wait that would reach ``timeout_total``."""
        if attempts > self.max_retries or not self.should_retry(error):
            return None
        delay = self.next_delay(attempts - 1, error)
        if delay is None:
            return None
        if self.timeout_total is not None and self.clock() + delay - started >= self.timeout_total:
            return None
        return delay

    def with_overrides(self, **changes: Any) -> RetryPolicy:
        """A copy with some fields changed (``None`` values are ignored)."""
        changes = {k: v for k, v in changes.items() if v is not None}
        return attrs.evolve(self, **changes) if changes else self

    def call(
        self,
        attempt: Callable[[int], T],
        *,
        on_retry: Callable[[int, BaseException, float], None] | None = None,
    ) -> tuple[T, int]:
        """Run ``attempt(attempt_number)`` until it succeeds or retrying must stop.

        ``on_retry(attempt_number, error, delay)`` is called before each wait (as is the
        policy's own ``on_retry``). Returns ``(result, attempts)``; a final failure is
        raised with ``.attempts`` set."""
        started = self.clock()
        # Fast path: most calls succeed at once; tenacity is set up only after a failure
        # that may be retried (the first attempt's error is replayed into its loop).
        try:
            return attempt(1), 1
        except APIError as exc:
            exc.attempts = 1
            if self.max_retries == 0 or not self.should_retry(exc):
                raise
            first_error: BaseException | None = exc

        import tenacity  # imported on the first retry, not at ``import chatcore``

        policy = self
        callbacks = [cb for cb in (self.on_retry, on_retry) if cb is not None]

        def retry_condition(state: Any) -> bool:
            outcome = state.outcome
            if outcome is None or not outcome.failed:
                return False
            error = outcome.exception()
            assert error is not None
            return policy.retry_delay(state.attempt_number, error, started) is not None

        def wait(state: Any) -> float:
            error = state.outcome.exception() if state.outcome else None
            delay = policy.next_delay(state.attempt_number - 1, error) if error else 0.0
            delay = delay or 0.0
            for callback in callbacks:
                try:
                    assert error is not None
                    callback(state.attempt_number, error, delay)
                except Exception:  # a callback must never break a request
                    pass
            return delay

        retrying = tenacity.Retrying(
            retry=retry_condition,
            wait=wait,
            stop=tenacity.stop_never,
            sleep=self.sleep,
            reraise=True,
        )
        attempts = 0

        def counted() -> T:
            nonlocal attempts, first_error
            attempts += 1
            if first_error is not None:  # attempt 1 already ran above
                error, first_error = first_error, None
                raise error
            try:
                return attempt(attempts)
            except APIError as exc:
                exc.attempts = attempts
                raise

        result = retrying(counted)
        return result, attempts


def with_retry(
    policy: RetryPolicy | None = None, **settings: Any
) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """Decorate a function so chatcore errors it raises are retried by ``policy`` (or a
    ``RetryPolicy(**settings)``), exactly as the client retries requests::

        @with_retry(max_retries=4)
        def summarize(text: str) -> str:
            return client.chat("openai:gpt-4o-mini", text, max_retries=0).text
    """
    chosen = policy if policy is not None else RetryPolicy(**settings)
    if policy is not None and settings:
        chosen = policy.with_overrides(**settings)

    def decorate(func: Callable[..., T]) -> Callable[..., T]:
        import functools

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> T:
            result, _attempts = chosen.call(lambda _n: func(*args, **kwargs))
            return result

        return wrapper

    return decorate
