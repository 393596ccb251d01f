"""Every failure of the ``openai`` provider over real HTTP becomes the right typed chatcore
error, with its context, after exactly one attempt, and never shows the API key."""

from __future__ import annotations

from typing import Any

import pytest

import chatcore
from chatcore import exceptions as exc
from chatcore.testing.server import Reply, StandInServer

STATUSES = [
    (400, None, exc.BadRequestError),
    (400, "context_length_exceeded", exc.ContextWindowExceededError),
    (401, "invalid_api_key", exc.AuthenticationError),
    (403, "unsupported_country_region_territory", exc.PermissionDeniedError),
    (404, None, exc.NotFoundError),
    (404, "model_not_found", exc.ModelNotFoundError),
    (409, None, exc.ConflictError),
    (413, None, exc.RequestTooLargeError),
    (422, None, exc.UnprocessableEntityError),
    (429, "rate_limit_exceeded", exc.RateLimitError),
    (429, "insufficient_quota", exc.QuotaExceededError),
    (500, None, exc.ServerError),
    (502, None, exc.ServerError),
    (503, None, exc.ServiceUnavailableError),
    (504, None, exc.ServerError),
]


@pytest.mark.parametrize(
    ("status", "code", "cls"), STATUSES, ids=[f"{s}-{c or 'plain'}" for s, c, _ in STATUSES]
)
def test_error_status_maps_to_its_class(
    client: chatcore.Client,
    server: StandInServer,
    status: int,
    code: str | None,
    cls: type[exc.APIStatusError],
) -> None:
    server.enqueue(
        Reply.error(status, f"failure {status}", code=code, headers={"x-request-id": "req_err42"})
    )

    with pytest.raises(exc.APIStatusError) as info:
        client.chat("openai:gpt-4o-mini", "Hello")

    error = info.value
    assert type(error) is cls
    assert error.provider == "openai"
    assert error.model == "gpt-4o-mini"
    assert error.status_code == status
    assert error.request_id == "req_err42"
    assert error.code == code
    assert error.attempts == 1
    assert isinstance(error.body, dict)
    assert error.body["error"]["message"] == f"failure {status}"
    assert f"failure {status}" in str(error)
    assert len(server.requests) == 1


def test_rate_limit_carries_retry_after(client: chatcore.Client, server: StandInServer) -> None:
    server.enqueue(
        Reply.error(
            429, "Rate limit reached", code="rate_limit_exceeded", headers={"retry-after": "7"}
        )
    )
    with pytest.raises(exc.RateLimitError) as info:
        client.chat("openai:gpt-4o-mini", "Hello")
    assert info.value.retry_after == 7.0
    assert not isinstance(info.value, exc.QuotaExceededError)


def test_retries_belong_to_the_core(
    make_client: Any, server: StandInServer, openai_key: str
) -> None:
    retry = chatcore.RetryPolicy(max_retries=2, sleep=lambda _s: None)
    client = make_client(
        {"openai": {"api_key": openai_key, "base_url": server.base_url}},
        retry=retry,
        max_retries=None,
    )
    server.enqueue(Reply.error(500, "boom"), Reply.error(503, "busy"))
    response = client.chat("openai:gpt-4o-mini", "Hello")
    assert response.attempts == 3
    assert len(server.requests) == 3


@pytest.mark.parametrize(
    ("reply", "needle"),
    [
        (Reply.raw("{not json", headers={"x-request-id": "req_bad"}), "expected JSON"),
        (Reply.raw("<html>gateway</html>", content_type="text/html"), "expected JSON"),
        (Reply.json(["a", "list"], headers={"x-request-id": "req_bad"}), "JSON array"),
        (Reply.json({"object": "list", "data": []}), "'choices' list"),
        (Reply.raw("", content_type=None), "empty body"),
        (Reply.json({"error": {"message": "upstream failed"}}), "upstream failed"),
        (
            Reply.json(
                {"id": "x", "model": "m", "choices": [{"index": "first", "message": {}}]},
                headers={"x-request-id": "req_bad"},
            ),
            "does not fit",
        ),
    ],
    ids=["malformed", "html", "array", "no-choices", "empty", "error-body", "bad-choice"],
)
def test_a_2xx_that_is_not_a_chat_completion(
    client: chatcore.Client, server: StandInServer, reply: Reply, needle: str
) -> None:
    server.enqueue(reply)
    with pytest.raises(exc.ResponseDecodeError) as info:
        client.chat("openai:gpt-4o-mini", "Hello")
    error = info.value
    assert needle in str(error)
    assert error.provider == "openai"
    assert error.status_code == 200
    assert error.attempts == 1
    if reply.headers and dict(reply.headers).get("x-request-id"):
        assert error.request_id == "req_bad"


def test_connection_refused(make_client: Any, closed_port: int, openai_key: str) -> None:
    client = make_client(
        {"openai": {"api_key": openai_key, "base_url": f"http://127.0.0.1:{closed_port}/v1"}}
    )
    with pytest.raises(exc.APIConnectionError) as info:
        client.chat("openai:gpt-4o-mini", "Hello")
    assert not isinstance(info.value, exc.APITimeoutError)
    assert info.value.provider == "openai"
    assert info.value.model == "gpt-4o-mini"
    assert info.value.status_code is None
    assert isinstance(info.value.__cause__, Exception)


def test_read_timeout(make_client: Any, server: StandInServer, openai_key: str) -> None:
    client = make_client(
        {"openai": {"api_key": openai_key, "base_url": server.base_url, "timeout": 0.2}}
    )
    server.enqueue(Reply.hang(5))
    with pytest.raises(exc.APITimeoutError) as info:
        client.chat("openai:gpt-4o-mini", "Hello")
    assert info.value.provider == "openai"
    assert "timed out" in str(info.value)


@pytest.mark.parametrize(
    "reply",
    [Reply.reset(), Reply.truncated('{"id": "chatcmpl-1", "choi', 500)],
    ids=["reset", "truncated"],
)
def test_broken_connection(client: chatcore.Client, server: StandInServer, reply: Reply) -> None:
    server.enqueue(reply)
    with pytest.raises(exc.APIConnectionError):
        client.chat("openai:gpt-4o-mini", "Hello")


# --- the key never shows ---------------------------------------------------------------

# one key the credential patterns would catch anyway, one only the configured secret catches
KEYS = ["sk-proj-leakyKEY0123456789abcdefghij", "plainLeakyToken0123456789"]


def _assert_hidden(error: BaseException, key: str) -> None:
    assert key not in str(error)
    assert key not in repr(error)
    assert key not in repr(getattr(error, "body", None))
    assert key not in getattr(error, "message", "")
    assert key not in repr(error.args)


@pytest.mark.parametrize("key", KEYS)
@pytest.mark.parametrize(
    "make_reply",
    [
        lambda key: Reply.error(401, f"Incorrect API key provided: {key}.", code="invalid_api_key"),
        lambda key: Reply.error(400, "bad", param=key, code=key),
        lambda key: Reply.json({"detail": f"Bearer {key} rejected", "key": key}, 403),
        lambda key: Reply.raw(f"key={key} is not welcome", 500, content_type="text/plain"),
        lambda key: Reply.raw(f"not json {key}", 200),
        lambda key: Reply.json({"echo": key, "choices": "nope"}),
    ],
    ids=["401-message", "400-param", "403-json", "500-text", "200-malformed", "200-bad-shape"],
)
def test_the_key_never_appears_in_errors(make_client: Any, key: str, make_reply: Any) -> None:
    with StandInServer(flavor="openai") as srv:
        client = make_client({"openai": {"api_key": key, "base_url": srv.base_url}})
        srv.enqueue(make_reply(key))
        with pytest.raises(exc.APIError) as info:
            client.chat("openai:gpt-4o-mini", "Hello")
        assert srv.last_request.header("authorization") == f"Bearer {key}"
    _assert_hidden(info.value, key)


def test_the_key_never_appears_in_provider_or_config_reprs(
    client: chatcore.Client, openai_key: str
) -> None:
    provider = client.provider("openai")
    assert openai_key not in repr(provider)
    assert openai_key not in repr(provider.config)
    assert openai_key not in provider.base_url


# --- configuration errors, before any network call ----------------------------------------


def test_missing_key_names_the_variable(make_client: Any, server: StandInServer) -> None:
    client = make_client({"openai": {"base_url": server.base_url}})
    with pytest.raises(chatcore.ConfigurationError) as info:
        client.chat("openai:gpt-4o-mini", "Hello")
    assert "OPENAI_API_KEY" in str(info.value)
    assert "CHATCORE_OPENAI_API_KEY" in str(info.value)
    assert server.requests == []


def test_missing_key_fails_list_models_too(make_client: Any, server: StandInServer) -> None:
    client = make_client({"openai": {"base_url": server.base_url}})
    with pytest.raises(chatcore.ConfigurationError, match="OPENAI_API_KEY"):
        client.list_models("openai")
    assert server.requests == []


@pytest.mark.parametrize("bad", ["sk-abc\n", " sk-abc", "sk-a\r\nX-Evil: 1"])
def test_a_key_with_whitespace_is_a_configuration_error(
    make_client: Any, server: StandInServer, bad: str
) -> None:
    client = make_client({"openai": {"api_key": bad, "base_url": server.base_url}})
    with pytest.raises(chatcore.ConfigurationError, match="api_key") as info:
        client.chat("openai:gpt-4o-mini", "Hello")
    assert bad.strip() not in str(info.value)
    assert server.requests == []


@pytest.mark.parametrize("url", ["api.openai.com/v1", "ftp://example.com", "localhost:8000"])
def test_base_url_must_be_http(make_client: Any, openai_key: str, url: str) -> None:
    client = make_client({"openai": {"api_key": openai_key, "base_url": url}})
    with pytest.raises(chatcore.ConfigurationError, match="base_url"):
        client.chat("openai:gpt-4o-mini", "Hello")
