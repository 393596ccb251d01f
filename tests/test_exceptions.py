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


# The error mapping and the error classes at their boundaries


def answer(status, body, headers=None, **kw):
    raw = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return ex.error_from_response(status, raw, headers or {}, **kw)


@pytest.mark.parametrize("status", [400, 413, 422])
@pytest.mark.parametrize(
    "message",
    [
        "This model's maximum context length is 8192 tokens",
        "Input exceeds the CONTEXT LENGTH of the model",
        "prompt is longer than the context window",
        "Too many tokens in the request",
        "Input validation error: `inputs` tokens + `max_new_tokens` must be <= 4096",
    ],
)
def test_a_context_length_message_maps_to_context_window_exceeded(status, message):
    err = answer(status, {"error": {"message": message, "type": "x", "code": None}})
    assert type(err) is ex.ContextWindowExceededError
    assert err.status_code == status


@pytest.mark.parametrize(
    "code", ["context_length_exceeded", "string_above_max_length", "context_window_exceeded"]
)
@pytest.mark.parametrize("status", [400, 413, 422])
def test_a_context_code_maps_to_context_window_exceeded(status, code):
    err = answer(status, {"error": {"message": "no", "type": "x", "code": code}})
    assert type(err) is ex.ContextWindowExceededError


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (404, ex.NotFoundError),
        (429, ex.RateLimitError),
        (500, ex.ServerError),
        (401, ex.AuthenticationError),
    ],
)
def test_context_phrases_matter_only_on_400_413_and_422(status, cls):
    err = answer(
        status, {"error": {"message": "maximum context length", "code": "context_length_exceeded"}}
    )
    assert type(err) is cls


def test_413_without_a_context_hint_is_request_too_large():
    assert type(answer(413, {"error": {"message": "body too big"}})) is ex.RequestTooLargeError


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("code", "insufficient_quota"),
        ("code", "billing_hard_limit_reached"),
        ("type", "insufficient_quota"),
    ],
)
def test_quota_429s(field, value):
    err = answer(429, {"error": {"message": "pay", field: value}})
    assert type(err) is ex.QuotaExceededError
    assert type(answer(400, {"error": {"message": "pay", field: value}})) is ex.BadRequestError


@pytest.mark.parametrize(
    ("body", "cls"),
    [
        ({"error": {"message": "gone", "code": "model_not_found"}}, ex.ModelNotFoundError),
        ({"error": {"message": "gone", "code": "deployment_not_found"}}, ex.ModelNotFoundError),
        ({"error": {"message": "gone", "code": "DeploymentNotFound"}}, ex.ModelNotFoundError),
        ({"error": "Model foo/bar does not exist"}, ex.ModelNotFoundError),
        ({"error": "MODEL x is NOT there, it does not EXIST"}, ex.ModelNotFoundError),
        ({"error": "model does exist but is private"}, ex.NotFoundError),
        ({"error": "the model was not found"}, ex.NotFoundError),
        ({"error": "path does not exist"}, ex.NotFoundError),
    ],
)
def test_404_model_not_found(body, cls):
    assert type(answer(404, body)) is cls
    assert type(answer(400, body)) is ex.BadRequestError


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (300, ex.APIStatusError),
        (418, ex.APIStatusError),
        (499, ex.APIStatusError),
        (500, ex.ServerError),
        (501, ex.ServerError),
        (503, ex.ServiceUnavailableError),
        (599, ex.ServerError),
        (403, ex.PermissionDeniedError),
        (409, ex.ConflictError),
        (422, ex.UnprocessableEntityError),
    ],
)
def test_status_classes(status, cls):
    assert type(answer(status, "")) is cls


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "HTTP 502"),
        ("   \n ", "HTTP 502"),
        ("  <html>bad gateway</html>\n", "<html>bad gateway</html>"),
        ("x" * 600, "x" * 500),
        (b"\xff\xfe not utf-8", "\ufffd\ufffd not utf-8"),
        ("{}", "HTTP 502"),
        ("null", "HTTP 502"),
        ("[1, 2]", "HTTP 502"),
        ('{"message": "plain"}', "plain"),
    ],
)
def test_the_message_of_an_answer_without_an_error_object(body, message):
    err = ex.error_from_response(502, body, {})
    assert err.message == message


def test_the_body_is_kept_parsed_and_a_non_json_body_as_text():
    raw = b'{"error": {"message": "m", "param": "p", "type": "t", "code": "c"}}'
    err = ex.error_from_response(400, raw, {})
    assert err.body == {"error": {"message": "m", "param": "p", "type": "t", "code": "c"}}
    assert (err.param, err.error_type, err.code) == ("p", "t", "c")
    err = ex.error_from_response(502, "<html>", {})
    assert err.body == "<html>"
    assert ex.error_from_response(502, b"", {}).body is None
    err = ex.error_from_response(400, {"error": {"message": "already parsed"}}, {})
    assert err.message == "already parsed"


def test_retry_after_comes_from_the_headers_before_estimated_time():
    body = {"error": "loading", "estimated_time": 20.0}
    assert answer(503, body).retry_after == 20.0
    assert answer(503, body, {"retry-after": "3"}).retry_after == 3.0
    assert answer(503, {"error": "x"}).retry_after is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("true", True),
        (" TRUE ", True),
        ("True", True),
        ("false", False),
        ("yes", False),
        ("", False),
    ],
)
def test_x_should_retry_values(value, expected):
    assert answer(500, "", {"x-should-retry": value}).should_retry is expected
    assert answer(500, "").should_retry is None


def test_an_answer_without_a_message_takes_the_x_error_message_header():
    err = ex.error_from_response(500, b"", {"x-error-message": "from header"})
    assert err.message == "from header"
    err = ex.error_from_response(500, b'{"error": "from body"}', {"x-error-message": "header"})
    assert err.message == "from body"


def test_the_answer_headers_and_request_id_are_kept():
    headers = {"apim-request-id": "apim-1", "x-other": "1"}
    err = answer(500, "", headers)
    assert err.headers == headers
    assert err.request_id == "apim-1"


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"x-request-id": "a", "apim-request-id": "b", "x-amzn-trace-id": "c"}, "a"),
        ({"x-request-id": "a", "request-id": "anthropic"}, "a"),
        ({"request-id": "anthropic", "apim-request-id": "b"}, "anthropic"),
        ({"x-request-id": "", "apim-request-id": "b", "x-amzn-trace-id": "c"}, "b"),
        ({"apim-request-id": "b", "x-amzn-trace-id": "c"}, "b"),
        ({"x-amzn-trace-id": "c"}, "c"),
        ({}, None),
    ],
)
def test_request_id_precedence(headers, expected):
    assert ex.request_id_from(headers) == expected


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after-ms": "1"}, 0.001),
        ({"retry-after-ms": "soon", "retry-after": "4"}, 4.0),
        ({"retry-after-ms": "soon"}, None),
        ({"retry-after": "2.5"}, 2.5),
        ({"retry-after": "someday, maybe"}, None),
        ({"retry-after": ""}, None),
    ],
)
def test_parse_retry_after_edges(headers, expected):
    assert ex.parse_retry_after(headers, now=0.0) == expected


def test_parse_retry_after_http_date_uses_now_or_the_clock():
    import email.utils
    import time

    value = email.utils.formatdate(1_700_000_030, usegmt=True)
    assert ex.parse_retry_after({"retry-after": value}, now=1_700_000_000.0) == 30.0
    future = email.utils.formatdate(time.time() + 600, usegmt=True)
    assert 590 < ex.parse_retry_after({"retry-after": future}) <= 600


@pytest.mark.parametrize(
    ("body", "headers", "expected"),
    [
        (
            {"error": {"message": "m", "type": "t", "code": "c", "param": "p"}},
            None,
            {"message": "m", "type": "t", "code": "c", "param": "p"},
        ),
        (
            {"error": {"message": "m", "code": 42, "param": ["a"]}},
            None,
            {"message": "m", "type": None, "code": "42", "param": "['a']"},
        ),
        (
            {"error": {"message": "m", "type": 5}},
            None,
            {"message": "m", "type": "5", "code": None, "param": None},
        ),
        ({"error": "e", "error_type": "validation"}, None, {"message": "e", "type": "validation"}),
        ({"error": ["a", 2]}, None, {"message": "a; 2"}),
        ({"error": []}, None, {}),
        ({"errors": ["x", {"message": "y"}, {"other": 1}]}, None, {"message": "x; y"}),
        ({"errors": []}, None, {}),
        ({"error": "first", "errors": ["second"]}, None, {"message": "first", "type": None}),
        ({"message": "top"}, None, {"message": "top"}),
        (
            {"error": {"message": "inner"}, "message": "outer"},
            None,
            {"message": "inner", "type": None, "code": None, "param": None},
        ),
        ({"message": 3}, None, {}),
        ({"error_description": "desc"}, None, {"message": "desc"}),
        ({"error_description": 5}, None, {}),
        ({"estimated_time": 7}, None, {"estimated_time": 7.0}),
        ({"estimated_time": True}, None, {}),
        ({"estimated_time": "7"}, None, {}),
        ({}, {"x-error-message": ""}, {}),
        ({"error": "body"}, {"x-error-message": "header"}, {"message": "body", "type": None}),
        ("text", {"x-error-message": "header"}, {"message": "header"}),
        (None, None, {}),
    ],
)
def test_parse_error_body_shapes(body, headers, expected):
    parsed = ex.parse_error_body(body, headers)
    assert parsed == expected
    if "estimated_time" in expected:
        assert type(parsed["estimated_time"]) is float


def test_validation_error_lists_every_problem():
    one = ex.ValidationError([("messages[0].role", "unknown role")])
    assert str(one) == "invalid request: messages[0].role: unknown role"
    assert one.problems == (("messages[0].role", "unknown role"),)
    bare = ex.ValidationError("no messages")
    assert str(bare) == "invalid request: no messages"
    assert bare.problems == (("", "no messages"),)
    two = ex.ValidationError([("a", "x"), ("", "y")])
    assert str(two) == "invalid request (2 problems):\n  a: x\n  y"


def test_provider_not_found_lists_what_is_installed():
    err = ex.ProviderNotFoundError("acme", ["zeta", "alpha"])
    assert err.available == ("alpha", "zeta")
    assert err.provider == "acme"
    assert str(err) == (
        "no provider named 'acme' is installed (installed providers: alpha, zeta); "
        "check the spelling; a third-party provider needs its plugin installed"
        " (`chatcore plugins` lists what is installed)"
    )
    assert "(installed providers: none)" in str(ex.ProviderNotFoundError("x", []))


@pytest.mark.parametrize(
    ("typed", "installed", "hint"),
    [
        ("opnai", ["openai", "azure"], "did you mean 'openai'?"),
        ("OpenAI", ["openai"], "did you mean 'openai'? (provider names are case-sensitive)"),
        ("hf", ["openai", "huggingface"], "did you mean 'huggingface'?"),
        (
            "hf",
            [],
            "did you mean 'huggingface'? its plugin is not installed:"
            " `pip install chatcore-huggingface`",
        ),
        (
            "opnai",
            [],
            "did you mean 'openai'? its plugin is not installed: `pip install chatcore-openai`",
        ),
        ("anthropic", ["openai"], "its plugin is not installed: `pip install chatcore-anthropic`"),
        ("azure", [], "its plugin is not installed: `pip install chatcore-openai`"),
    ],
)
def test_provider_hints_never_invent_a_package(typed, installed, hint):
    assert ex.provider_hint(typed, installed) == hint
    assert str(ex.ProviderNotFoundError(typed, installed)).endswith(hint)


@given(st.text(min_size=1, max_size=20))
def test_pip_install_is_only_suggested_for_known_distributions(name):
    hint = ex.provider_hint(name, ["openai"])
    if "pip install" in hint:
        assert hint.split("`pip install ")[1].rstrip("`") in set(
            ex.KNOWN_PROVIDER_DISTRIBUTIONS.values()
        )


def test_connection_failures_are_described_in_plain_words():
    refused = requests.ConnectionError(ConnectionRefusedError(111, "Connection refused"))
    mapped = ex.error_from_requests_exception(refused, provider="p", model="m")
    assert mapped.message == "connection failed: connection refused (nothing is listening there)"
    assert ex.describe_connection_failure(ValueError("no")) is None


def test_rate_limit_exceeded_carries_its_context():
    err = ex.RateLimitExceeded("busy", key="openai:m", retry_after=2.5)
    assert (str(err), err.key, err.retry_after) == ("busy", "openai:m", 2.5)
    bare = ex.RateLimitExceeded("busy")
    assert (bare.key, bare.retry_after) == ("", None)


def test_api_error_text_and_repr():
    err = ex.APIStatusError(
        "no", provider="p", model="m", status_code=400, request_id="r1", code="c"
    )
    assert str(err) == "p:m: no (status 400, code c, request id r1)"
    assert repr(err) == (
        "APIStatusError('no', provider='p', model='m', status_code=400, request_id='r1')"
    )
    assert str(ex.APIError("bare")) == "provider: bare"
    assert str(ex.APIError("x", model="m")) == "provider:m: x"
    assert str(ex.APIError("x", provider="p", attempts=1)) == "p: x"
    assert str(ex.APIError("x", provider="p", attempts=2)) == "p: x (after 2 attempts)"
    assert err.args == ("no",)


def test_api_error_defaults():
    err = ex.APIError("m")
    assert (err.provider, err.model, err.status_code, err.request_id) == (None, None, None, None)
    assert (err.body, err.code, err.error_type, err.param) == (None, None, None, None)
    assert (err.retry_after, err.should_retry, err.attempts, err.headers) == (None, None, 1, None)


def test_api_error_redacts_every_text_field():
    secret = "s3cretVALUE"
    err = ex.APIError(
        f"bad {secret}",
        code=f"c-{secret}",
        error_type=f"t-{secret}",
        param=f"p-{secret}",
        body={"k": [f"v {secret}", 1, None], "n": 2},
        secrets=["", secret],
    )
    assert err.message == "bad ***"
    assert (err.code, err.error_type, err.param) == ("c-***", "t-***", "p-***")
    assert err.body == {"k": ["v ***", 1, None], "n": 2}
    assert ex.APIError("x", body=f"plain {secret}", secrets=[secret]).body == "plain ***"
    assert ex.APIError("x", body=7).body == 7


def test_redirect_and_too_large_are_never_retried_unless_told():
    err = ex.RedirectError("moved", location="https://other.example:8443", status_code=302)
    assert (err.location, err.should_retry, err.status_code) == (
        "https://other.example:8443",
        False,
        302,
    )
    assert (err.message, str(err)) == ("moved", "provider: moved (status 302)")
    assert ex.RedirectError("moved", should_retry=True).should_retry is True
    assert ex.RedirectError("moved").location is None
    big = ex.ResponseTooLargeError("big", limit=1024)
    assert (big.limit, big.should_retry, big.message) == (1024, False, "big")
    assert ex.ResponseTooLargeError("big").limit is None
    assert ex.ResponseTooLargeError("big", should_retry=True).should_retry is True


def test_stream_error_keeps_the_partial_text():
    err = ex.StreamError("cut", partial_text="Hel", provider="p")
    assert (err.partial_text, err.provider, err.message) == ("Hel", "p", "cut")
    assert ex.StreamError("cut").partial_text == ""


@pytest.mark.parametrize(
    ("exc", "cls", "text"),
    [
        (requests.ConnectTimeout("t"), ex.APITimeoutError, "timed out connecting (ConnectTimeout)"),
        (requests.ReadTimeout("t"), ex.APITimeoutError, "timed out (ReadTimeout)"),
        (
            requests.ConnectionError("c"),
            ex.APIConnectionError,
            "connection failed (ConnectionError)",
        ),
        (
            requests.exceptions.ChunkedEncodingError("c"),
            ex.APIConnectionError,
            "connection failed (ChunkedEncodingError)",
        ),
        (
            requests.exceptions.ContentDecodingError("d"),
            ex.ResponseDecodeError,
            "could not decode the response (ContentDecodingError)",
        ),
        (requests.exceptions.InvalidJSONError("j"), ex.ResponseDecodeError, "invalid JSON"),
        (requests.exceptions.TooManyRedirects("r"), ex.APIConnectionError, "request failed"),
    ],
)
def test_requests_exception_messages(exc, cls, text):
    mapped = ex.error_from_requests_exception(exc, provider="p", model="m")
    assert type(mapped) is cls
    assert mapped.message.startswith(text)
    assert (mapped.provider, mapped.model, mapped.should_retry) == ("p", "m", None)


@pytest.mark.parametrize(
    "cls",
    [
        requests.exceptions.InvalidURL,
        requests.exceptions.MissingSchema,
        requests.exceptions.InvalidSchema,
        requests.exceptions.InvalidHeader,
        requests.exceptions.URLRequired,
    ],
)
def test_a_bad_target_is_a_final_connection_error(cls):
    mapped = ex.error_from_requests_exception(
        cls("bad sk-abcdefghijklmnop"), provider="p", model="m"
    )
    assert type(mapped) is ex.APIConnectionError
    assert mapped.should_retry is False
    assert (mapped.provider, mapped.model) == ("p", "m")
    assert mapped.message.startswith(f"invalid request target ({cls.__name__}: ")
    assert mapped.message.endswith("; check the provider's base_url")
    assert "abcdefghijklmnop" not in mapped.message
    known = ex.error_from_requests_exception(cls("to KNOWNsecret7"), secrets=["KNOWNsecret7"])
    assert "KNOWNsecret7" not in known.message


def test_requests_exception_text_is_redacted():
    mapped = ex.error_from_requests_exception(
        requests.ConnectionError("to host with TOPsecret99"), secrets=["TOPsecret99"]
    )
    assert "TOPsecret99" not in mapped.message
    assert mapped.message == "connection failed (ConnectionError): to host with ***"


# --------------------------------------------------------------------------------------
# Redaction (chatcore._redact) at its boundaries: exact outputs


@pytest.mark.parametrize(
    ("secret", "masked"),
    [("abc", False), ("abcd", True), ("abcde", True), ("", False)],
)
def test_known_secrets_of_four_characters_or_more_are_masked(secret, masked):
    text = "value=abcde;"
    expected = text.replace(secret, "***") if masked else text
    assert redact(text, [secret]) == expected


def test_every_occurrence_of_every_known_secret_is_masked():
    assert redact("one TWO2 one TWO2", ["one1", "TWO2", "one "]) == "****** ******"
    assert redact("", ["abcd"]) == ""
    assert redact("nothing to hide", ["abcd"]) == "nothing to hide"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Authorization: Bearer abc.def-123", "Authorization: Bearer ***"),
        ("bearer tok123 and more", "bearer *** and more"),
        ("BEARER\ttok123", "BEARER\t***"),
        ("Authorization: Basic dXNlcjpwYXNz", "Authorization: Basic ***"),
        ("authorization=token t0k3n", "authorization=token ***"),
        ("api-key: k3y-value", "api-key: ***"),
        ("X-Api-Key=k3y", "X-Api-Key=***"),
        ("openai-api-key: k3y", "openai-api-key: ***"),
        ('{"api-key": "k3y"}', '{"api-key": "***"}'),
        ("'authorization': 'raw'", "'authorization': '***'"),
        ("api-key: ***", "api-key: ***"),
        ("https://h.invalid/v1?api_key=k3y&x=1", "https://h.invalid/v1?api_key=***&x=1"),
        ("https://h.invalid/v1?x=1&api-key=k3y#frag", "https://h.invalid/v1?x=1&api-key=***#frag"),
        ("?apikey=k3y", "?apikey=***"),
        ("?key=k3y other", "?key=*** other"),
        ("&token=t0k", "&token=***"),
        ("?access_token=t0k'", "?access_token=***'"),
        ("?monkey=banana", "?monkey=banana"),
        ('{"api_key": "k3y"}', '{"api_key": "***"}'),
        ('{"apikey":"k3y"}', '{"apikey":"***"}'),
        ("{'access-token': 'k3y'}", "{'access-token': '***'}"),
        ('{"access_token" : "k3y"}', '{"access_token" : "***"}'),
        ('{"token": "k3y"}', '{"token": "***"}'),
        ('{"secret": "k3y"}', '{"secret": "***"}'),
        ('{"PASSWORD": "k3y"}', '{"PASSWORD": "***"}'),
        ('{"authorization": "k3y"}', '{"authorization": "***"}'),
        ('{"password": "***"}', '{"password": "***"}'),
        ('{"tokens": "12"}', '{"tokens": "12"}'),
        ("redis://user:pa55@127.0.0.1:6379", "redis://user:***@127.0.0.1:6379"),
        ("https://:pa55@h.invalid", "https://:***@h.invalid"),
        ("https://h.invalid:8443/v1", "https://h.invalid:8443/v1"),
        ("sk-12345678", "sk-***"),
        ("sk-1234567", "sk-1234567"),
        ("key sk-proj_AB-cd12345 end", "key sk-*** end"),
        ("ask-12345678", "ask-12345678"),
        ("SK-12345678", "SK-***"),
        ("hf_abcd1234", "hf_***"),
        ("hf_abcd123", "hf_abcd123"),
        ("hf_abcd1234-rest", "hf_***-rest"),
        ("xhf_abcd1234", "xhf_abcd1234"),
    ],
)
def test_credential_patterns_exact(text, expected):
    assert redact(text) == expected


def test_redaction_is_idempotent_and_masks_known_secrets_first():
    once = redact("Bearer sk-abcdefgh12 and MYSECRETVALUE", ["MYSECRETVALUE"])
    assert once == "Bearer *** and ***"
    assert redact(once, ["MYSECRETVALUE"]) == once
