from __future__ import annotations

import inspect
import json

import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st

from chatcore import exceptions as ex
from chatcore._redact import redact


@pytest.mark.parametrize(
    ("status", "body", "cls"),
    [
        (
            400,
            {
                "error": {
                    "message": "bad",
                    "type": "invalid_request_error",
                    "param": None,
                    "code": None,
                }
            },
            ex.BadRequestError,
        ),
        (
            400,
            {
                "error": {
                    "message": "too long",
                    "type": "invalid_request_error",
                    "param": "messages",
                    "code": "context_length_exceeded",
                }
            },
            ex.ContextWindowExceededError,
        ),
        (
            401,
            {
                "error": {
                    "message": "no key",
                    "type": "invalid_request_error",
                    "param": None,
                    "code": "invalid_api_key",
                }
            },
            ex.AuthenticationError,
        ),
        (
            403,
            {"error": {"message": "region", "type": "x", "param": None, "code": None}},
            ex.PermissionDeniedError,
        ),
        (
            404,
            {
                "error": {
                    "message": "The model `x` does not exist",
                    "type": "invalid_request_error",
                    "param": None,
                    "code": "model_not_found",
                }
            },
            ex.ModelNotFoundError,
        ),
        (
            404,
            {"error": {"message": "Unknown URL", "type": "x", "param": None, "code": None}},
            ex.NotFoundError,
        ),
        (
            409,
            {"error": {"message": "conflict", "type": "x", "param": None, "code": None}},
            ex.ConflictError,
        ),
        (413, "request entity too large", ex.RequestTooLargeError),
        (
            422,
            {"error": "`top_p` must be > 0.0 and < 1.0", "error_type": "validation"},
            ex.UnprocessableEntityError,
        ),
        (424, {"error": "CUDA OOM", "error_type": "generation"}, ex.APIStatusError),
        (
            429,
            {
                "error": {
                    "message": "slow down",
                    "type": "requests",
                    "param": None,
                    "code": "rate_limit_exceeded",
                }
            },
            ex.RateLimitError,
        ),
        (
            429,
            {
                "error": {
                    "message": "quota",
                    "type": "insufficient_quota",
                    "param": None,
                    "code": "insufficient_quota",
                }
            },
            ex.QuotaExceededError,
        ),
        (429, {"error": "Model is overloaded", "error_type": "overloaded"}, ex.RateLimitError),
        (500, {"error": "incomplete", "error_type": "incomplete_generation"}, ex.ServerError),
        (502, "<html>bad gateway</html>", ex.ServerError),
        (
            503,
            {"error": "Model m is currently loading", "estimated_time": 20.0},
            ex.ServiceUnavailableError,
        ),
        (504, "", ex.ServerError),
    ],
)
def test_status_mapping(status, body, cls):
    import json

    raw = body if isinstance(body, str) else json.dumps(body)
    err = ex.error_from_response(
        status, raw.encode(), {"x-request-id": "req_1"}, provider="p", model="m"
    )
    assert type(err) is cls
    assert err.status_code == status
    assert err.request_id == "req_1"
    assert err.provider == "p"
    assert err.model == "m"
    assert str(err).startswith("p:m: ")


def test_hf_loading_sets_retry_after():
    err = ex.error_from_response(
        503, b'{"error":"Model x is currently loading","estimated_time":12.5}', {}
    )
    assert isinstance(err, ex.ServiceUnavailableError)
    assert err.retry_after == 12.5


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after-ms": "1500"}, 1.5),
        ({"retry-after": "3"}, 3.0),
        ({"retry-after-ms": "250", "retry-after": "9"}, 0.25),
        ({"retry-after": "garbage"}, None),
        ({}, None),
    ],
)
def test_parse_retry_after(headers, expected):
    assert ex.parse_retry_after(headers) == expected


def test_parse_retry_after_http_date():
    import email.utils

    now = 1_700_000_000.0
    value = email.utils.formatdate(now + 30, usegmt=True)
    assert ex.parse_retry_after({"retry-after": value}, now=now) == pytest.approx(30, abs=1)


def test_x_should_retry_is_read():
    err = ex.error_from_response(400, b"{}", {"x-should-retry": "true"})
    assert err.should_retry is True
    err = ex.error_from_response(500, b"{}", {"x-should-retry": "false"})
    assert err.should_retry is False


def test_error_body_shapes():
    assert (
        ex.parse_error_body({"errors": [{"message": "a"}, {"message": "b"}]})["message"] == "a; b"
    )
    assert ex.parse_error_body({"error": "x", "error_description": "y"})["message"] == "x: y"
    assert ex.parse_error_body({}, {"x-error-message": "from header"})["message"] == "from header"
    assert ex.parse_error_body(["not", "a", "dict"]) == {}


def _leaf_request_exceptions():
    classes = set()
    for _name, obj in inspect.getmembers(requests.exceptions, inspect.isclass):
        if issubclass(obj, requests.RequestException) and obj.__module__.startswith("requests"):
            classes.add(obj)
    return sorted(classes, key=lambda c: c.__name__)


@pytest.mark.parametrize("cls", _leaf_request_exceptions(), ids=lambda c: c.__name__)
def test_every_requests_exception_is_mapped(cls):
    exc = cls("boom", "doc", 0) if cls.__name__ == "JSONDecodeError" else cls("boom")
    mapped = ex.error_from_requests_exception(exc, provider="p", model="m")
    assert isinstance(mapped, ex.APIError)
    expected = {
        "ConnectTimeout": ex.APITimeoutError,
        "ReadTimeout": ex.APITimeoutError,
        "Timeout": ex.APITimeoutError,
        "ContentDecodingError": ex.ResponseDecodeError,
        "InvalidJSONError": ex.ResponseDecodeError,
        "JSONDecodeError": ex.ResponseDecodeError,
    }.get(cls.__name__, ex.APIConnectionError)
    assert isinstance(mapped, expected), (cls, type(mapped))
    assert cls.__name__ in str(mapped)


secrets = st.text(
    alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=8, max_size=40
)


@given(secrets, st.text(max_size=30), st.text(max_size=30))
def test_secret_never_in_error_text_repr_or_body(secret, before, after):
    message = f"{before}{secret}{after}"
    err = ex.error_from_response(
        401,
        json.dumps(
            {"error": {"message": message, "type": "x", "param": None, "code": None}}
        ).encode(),
        {},
        provider="p",
        secrets=[secret],
    )
    assert secret not in str(err)
    assert secret not in repr(err)
    assert secret not in repr(err.body)


@given(secrets)
def test_redaction_is_total_for_known_secrets(secret):
    for text in (secret, f"key={secret}", f"Authorization: Bearer {secret}", f"x{secret}y{secret}"):
        assert secret not in redact(text, [secret])


@pytest.mark.parametrize(
    "text",
    [
        "Authorization: Bearer abcdef123456",
        "api-key: abcdef123456",
        "https://x.invalid/v1?key=abcdef123456&x=1",
        "sk-proj-abcdef1234567890",
        "hf_abcdefghijklmnop",
        '{"api_key": "abcdef123456"}',
        "{'password': 'abcdef123456'}",
        "redis://default:abcdef123456@127.0.0.1:6379/0",
    ],
)
def test_credential_patterns_are_masked(text):
    assert "abcdef" not in redact(text)


def test_hierarchy_matches_design():
    assert issubclass(ex.ConfigurationError, ValueError)
    assert issubclass(ex.ValidationError, ValueError)
    assert issubclass(ex.ProviderNotFoundError, LookupError)
    assert issubclass(ex.APITimeoutError, ex.APIConnectionError)
    assert issubclass(ex.QuotaExceededError, ex.RateLimitError)
    assert issubclass(ex.ServiceUnavailableError, ex.ServerError)
    assert issubclass(ex.ContextWindowExceededError, ex.BadRequestError)
    assert issubclass(ex.ModelNotFoundError, ex.NotFoundError)
    for name in ex.__all__:
        obj = getattr(ex, name)
        if inspect.isclass(obj):
            assert issubclass(obj, ex.ChatcoreError)


# --------------------------------------------------------------------------------------
# Echoed secrets: every wire attribute masked, keys and values, at any depth

ECHOED = "sk-echo-Key.0123"


def _every_text(error: ex.APIError) -> str:
    import traceback

    return "\0".join(
        [
            str(error),
            repr(error),
            repr(vars(error)),
            repr(error.args),
            "".join(traceback.format_exception(error)),
            json.dumps(error.body, default=str),
            repr(dict(error.headers or {})),
            str(error.request_id),
            str(error.message),
            str(error.code),
            str(error.error_type),
            str(error.param),
        ]
    )


@pytest.mark.parametrize(
    "request_id_header", ["x-request-id", "apim-request-id", "x-amzn-trace-id"]
)
def test_error_from_response_masks_an_echoed_key_everywhere(request_id_header):
    body = json.dumps(
        {
            "error": {"message": f"bad {ECHOED}", "type": ECHOED, "code": ECHOED, "param": ECHOED},
            ECHOED: [{"deeper": {ECHOED: [ECHOED]}}, (ECHOED,)],
        }
    ).encode()
    headers = requests.structures.CaseInsensitiveDict(
        {request_id_header: ECHOED, "x-echo": f"key={ECHOED}", ECHOED: "name"}
    )
    error = ex.error_from_response(429, body, headers, provider="p", model="m", secrets=[ECHOED])
    assert ECHOED not in _every_text(error)
    assert error.request_id == "***"
    assert isinstance(error.headers, requests.structures.CaseInsensitiveDict)
    assert error.headers["X-Echo"] == "key=***"
    assert "***" in error.body and error.body["***"][0] == {"deeper": {"***": ["***"]}}


@given(
    st.recursive(
        st.none() | st.integers() | st.text(max_size=6) | st.just(ECHOED) | st.just(f"a{ECHOED}b"),
        lambda children: (
            st.lists(children, max_size=3)
            | st.dictionaries(st.text(max_size=6) | st.just(ECHOED), children, max_size=3)
        ),
        max_leaves=12,
    )
)
def test_no_secret_survives_in_an_error_body(body):
    error = ex.error_from_response(
        400, json.dumps({"error": "x", "extra": body}), {"x-request-id": "r"}, secrets=[ECHOED]
    )
    assert ECHOED not in _every_text(error)


def test_a_stream_error_masks_only_exact_secrets_in_its_partial_text():
    error = ex.StreamError("broke", partial_text=f"use Bearer abc and {ECHOED}", secrets=[ECHOED])
    assert error.partial_text == "use Bearer abc and ***"  # the answer is not pattern-masked
