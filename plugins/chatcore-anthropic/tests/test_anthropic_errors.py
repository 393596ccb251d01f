"""Error answers over real sockets, through ``Client`` and ``AsyncClient``: each Anthropic
error type as its typed chatcore error, what is retried (529, 5xx, throttling 429s after
their ``retry-after``) and what never is (quota and billing, too-long prompts, bad
requests), request ids, and secrets masked in whatever comes back."""

from __future__ import annotations

import pytest

from chatcore.exceptions import (
    BadRequestError,
    ContextWindowExceededError,
    ModelNotFoundError,
    PermissionDeniedError,
    QuotaExceededError,
    RateLimitError,
    ServerError,
    ServiceUnavailableError,
)
from chatcore.testing.anthropic_server import anthropic_error, overloaded

SPEND = {"error_code": "enforced_spend_limit_reached"}


def test_overloaded_529_is_retried_after_the_demanded_delay(either, server, sleeps):
    server.enqueue(overloaded(headers={"retry-after": "3"}))
    response = either.chat("Hi", retries=2)
    assert response.attempts == 2
    assert sleeps.delays == [3.0]
    server.enqueue(overloaded(), overloaded())
    with pytest.raises(ServiceUnavailableError) as info:
        either.chat("Hi", retries=1)
    assert (info.value.status_code, info.value.error_type, info.value.attempts) == (
        529,
        "overloaded_error",
        2,
    )


@pytest.mark.parametrize(
    ("reply", "cls"),
    [
        (anthropic_error(402, "Your account needs a payment method."), QuotaExceededError),
        (
            anthropic_error(400, "Your credit balance is too low to access the Anthropic API."),
            QuotaExceededError,
        ),
        (anthropic_error(429, "Spend limit reached.", details=SPEND), QuotaExceededError),
        (
            anthropic_error(400, "prompt is too long: 210000 tokens > 200000 maximum"),
            ContextWindowExceededError,
        ),
        (anthropic_error(400, "messages: text content blocks must be non-empty"), BadRequestError),
        (anthropic_error(403, "Your key may not use this model."), PermissionDeniedError),
    ],
)
def test_errors_that_are_never_retried(either, server, sleeps, reply, cls):
    server.enqueue(reply)
    with pytest.raises(cls) as info:
        either.chat("Hi", retries=2)
    error = info.value
    assert type(error) is cls
    assert (error.provider, error.model, error.attempts) == ("anthropic", "claude-haiku-4-5", 1)
    assert error.request_id == "req_standin_error"
    assert len(server.requests) == 1 and sleeps.delays == []


def test_a_throttling_429_is_retried_after_its_retry_after(either, server, sleeps):
    server.enqueue(anthropic_error(429, "Rate limited.", headers={"retry-after": "2"}))
    assert either.chat("Hi", retries=1).attempts == 2
    assert sleeps.delays == [2.0]
    server.enqueue(anthropic_error(429, "Rate limited.", headers={"retry-after": "2"}))
    with pytest.raises(RateLimitError) as info:
        either.chat("Hi")
    assert type(info.value) is RateLimitError and info.value.retry_after == 2.0


@pytest.mark.parametrize("status", [500, 504])
def test_server_errors_are_retried(either, server, sleeps, status):
    server.enqueue(anthropic_error(status, "Internal server error"))
    assert either.chat("Hi", retries=1).attempts == 2
    server.enqueue(anthropic_error(status, "Internal server error"))
    with pytest.raises(ServerError) as info:
        either.chat("Hi")
    assert info.value.status_code == status


def test_an_unknown_model(either, server):
    with pytest.raises(ModelNotFoundError) as info:
        either.chat("Hi", model="anthropic:claude-nope")
    assert info.value.status_code == 404
    assert "claude-nope" in str(info.value)
    assert len(server.requests) == 1


def test_what_the_stand_in_refuses_comes_back_as_bad_request(either, server):
    """The plugin leaves block-level breakpoints to the API: five are one too many, and the
    stand-in answers 400 as the API does."""
    marked = {"type": "ephemeral"}
    system = [{"type": "text", "text": f"rule {i}", "cache_control": marked} for i in range(5)]
    with pytest.raises(BadRequestError) as info:
        either.chat("Hi", extra={"system": system})
    assert "A maximum of 4 blocks with cache_control" in str(info.value)
    assert info.value.request_id is not None and info.value.request_id.startswith("req_")


def test_an_echoed_key_is_masked_in_the_error(either, server, anthropic_key):
    server.enqueue(
        anthropic_error(
            401,
            f"invalid x-api-key {anthropic_key}",
            headers={"x-echo": anthropic_key},
            request_id=anthropic_key,
        )
    )
    with pytest.raises(Exception) as info:
        either.chat("Hi")
    error = info.value
    shown = [str(error), repr(error), str(error.body), str(error.headers), str(error.request_id)]
    assert not [text for text in shown if anthropic_key in text]
