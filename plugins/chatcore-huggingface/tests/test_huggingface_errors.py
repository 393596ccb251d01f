"""Every error shape a Hugging Face server sends, over real HTTP, arrives as the right
chatcore error; transport failures are typed; the token never shows in any error."""

from __future__ import annotations

import socket
from typing import Any

import pytest

import chatcore
from chatcore.testing.server import Reply, StandInServer

MODEL = "huggingface:meta-llama/Llama-3.1-8B-Instruct"


@pytest.mark.parametrize(
    ("reply", "error_class", "status", "error_type"),
    [
        (
            Reply.tgi_error(
                422, "Input validation error: `top_k` must be strictly positive", "validation"
            ),
            chatcore.UnprocessableEntityError,
            422,
            "validation",
        ),
        (
            Reply.tgi_error(424, "Request failed during generation: CUDA OOM", "generation"),
            chatcore.APIStatusError,
            424,
            "generation",
        ),
        (
            Reply.tgi_error(429, "Model is overloaded", "overloaded"),
            chatcore.RateLimitError,
            429,
            "overloaded",
        ),
        (
            Reply.tgi_error(500, "Incomplete generation", "incomplete_generation"),
            chatcore.ServerError,
            500,
            "incomplete_generation",
        ),
    ],
    ids=["422-validation", "424-generation", "429-overloaded", "500-incomplete"],
)
@pytest.mark.parametrize("api", ["chat", "generate"])
def test_tgi_error_bodies(
    tgi: StandInServer,
    make_client: Any,
    reply: Reply,
    error_class: type[chatcore.APIStatusError],
    status: int,
    error_type: str,
    api: str,
) -> None:
    tgi.enqueue(reply)
    with pytest.raises(error_class) as info:
        make_client(tgi.url, token=None, api=api).chat(MODEL, "Hi")
    error = info.value
    assert error.status_code == status
    assert error.error_type == error_type
    assert error.provider == "huggingface"
    assert error.model == "meta-llama/Llama-3.1-8B-Instruct"
    assert error.message == reply_message(reply)
    assert len(tgi.requests) == 1


def reply_message(reply: Reply) -> str:
    import json

    return str(json.loads(reply.body)["error"])


def test_hf_model_loading_is_service_unavailable_with_retry_after(
    router: StandInServer, make_client: Any
) -> None:
    router.enqueue(Reply.hf_loading(17.5))
    with pytest.raises(chatcore.ServiceUnavailableError) as info:
        make_client(router.base_url).chat(MODEL, "Hi")
    assert info.value.retry_after == 17.5
    assert info.value.status_code == 503
    assert "currently loading" in str(info.value)


def test_hf_model_loading_is_retried_by_the_core_after_estimated_time(
    router: StandInServer, make_client: Any
) -> None:
    slept: list[float] = []
    policy = chatcore.RetryPolicy(sleep=slept.append)
    router.enqueue(Reply.hf_loading(3.5))
    resp = make_client(router.base_url, retry=policy).chat(MODEL, "Hi")
    assert resp.text
    assert resp.attempts == 2
    assert slept == [3.5]
    assert len(router.requests) == 2


def test_generate_mode_model_loading(tgi: StandInServer, make_client: Any) -> None:
    tgi.enqueue(Reply.hf_loading(8))
    with pytest.raises(chatcore.ServiceUnavailableError) as info:
        make_client(tgi.url, token=None, api="generate").chat(MODEL, "Hi")
    assert info.value.retry_after == 8.0


def test_router_openai_style_error_object(router: StandInServer, make_client: Any) -> None:
    router.enqueue(
        Reply.error(400, "Model not supported by provider groq", code="model_not_supported")
    )
    with pytest.raises(chatcore.BadRequestError) as info:
        make_client(router.base_url).chat("huggingface:org/model:groq", "Hi")
    assert info.value.code == "model_not_supported"
    assert info.value.error_type == "invalid_request_error"
    assert info.value.model == "org/model:groq"


def test_router_plain_string_error(router: StandInServer, make_client: Any) -> None:
    router.enqueue(Reply.json({"error": "Not allowed to bill org x"}, status=403))
    with pytest.raises(chatcore.PermissionDeniedError, match="Not allowed to bill"):
        make_client(router.base_url, bill_to="x").chat(MODEL, "Hi")


def test_router_model_not_found(router: StandInServer, make_client: Any) -> None:
    router.enqueue(Reply.error(404, "The model 'x/y' does not exist", code="model_not_found"))
    with pytest.raises(chatcore.ModelNotFoundError):
        make_client(router.base_url).chat("huggingface:x/y", "Hi")


def test_wrong_token_is_an_authentication_error(router: StandInServer, make_client: Any) -> None:
    with pytest.raises(chatcore.AuthenticationError) as info:
        make_client(router.base_url, token="hf_WRONGtoken00000000000").chat(MODEL, "Hi")
    assert info.value.status_code == 401
    assert "hf_WRONGtoken00000000000" not in str(info.value)


def test_tgi_401(make_client: Any) -> None:
    with (
        StandInServer(flavor="tgi", api_key="hf_other0000000000") as server,
        pytest.raises(chatcore.AuthenticationError),
    ):
        make_client(server.url).chat("huggingface:tgi", "Hi")


def test_malformed_json_on_200_is_a_decode_error(router: StandInServer, make_client: Any) -> None:
    router.enqueue(Reply.raw('{"id": "chatcmpl-1", "choices": [', status=200))
    with pytest.raises(chatcore.ResponseDecodeError):
        make_client(router.base_url).chat(MODEL, "Hi")


@pytest.mark.parametrize(
    "body",
    [
        {"object": "list", "data": []},
        {"generated_text": "a text-generation reply on the chat route"},
        [1, 2, 3],
    ],
)
def test_non_chat_json_on_200_is_a_decode_error(
    router: StandInServer, make_client: Any, body: Any
) -> None:
    router.enqueue(Reply.json(body))
    with pytest.raises(chatcore.ResponseDecodeError) as info:
        make_client(router.base_url).chat(MODEL, "Hi")
    assert info.value.provider == "huggingface"


def test_empty_200_is_a_decode_error(router: StandInServer, make_client: Any) -> None:
    router.enqueue(Reply.raw(b"", status=200))
    with pytest.raises(chatcore.ResponseDecodeError, match="empty body"):
        make_client(router.base_url).chat(MODEL, "Hi")


def test_truncated_body_is_a_connection_error(router: StandInServer, make_client: Any) -> None:
    router.enqueue(Reply.truncated('{"id": "x", "choi', 500))
    with pytest.raises(chatcore.APIConnectionError):
        make_client(router.base_url).chat(MODEL, "Hi")


def test_connection_refused(make_client: Any) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(chatcore.APIConnectionError) as info:
        make_client(f"http://127.0.0.1:{port}").chat(MODEL, "Hi")
    assert not isinstance(info.value, chatcore.APITimeoutError)
    assert info.value.provider == "huggingface"


def test_read_timeout(router: StandInServer, make_client: Any) -> None:
    router.enqueue(Reply.hang(5))
    with pytest.raises(chatcore.APITimeoutError):
        make_client(router.base_url, timeout=0.2).chat(MODEL, "Hi")


# --- the token never leaks -----------------------------------------------------------


def _assert_no_token(error: chatcore.APIError, token: str) -> None:
    assert token not in str(error)
    assert token not in repr(error)
    assert token not in repr(error.body)
    assert token not in error.message
    assert token not in str(error.args)


@pytest.mark.parametrize(
    "make_reply",
    [
        lambda t: Reply.error(401, f"Invalid token {t}", code="invalid_api_key"),
        lambda t: Reply.error(400, f"bad request from Bearer {t}"),
        lambda t: Reply.tgi_error(422, f"token {t} rejected", "validation"),
        lambda t: Reply.json({"error": f"Authorization: Bearer {t}"}, status=403),
        lambda t: Reply.json(
            {"error": f"Model {t} is currently loading", "estimated_time": 1.0}, status=503
        ),
        lambda t: Reply.raw(f"<html>echo {t}</html>", status=502, content_type="text/html"),
        lambda t: Reply.raw(f"not json {t}", status=200),
        lambda t: Reply.json({"echo": t}),
        lambda t: Reply.json({"choices": [{"index": "bad", "message": t}]}),
    ],
    ids=[
        "401",
        "400",
        "422",
        "403",
        "503",
        "502-html",
        "200-not-json",
        "200-not-chat",
        "200-bad-choice",
    ],
)
def test_token_never_appears_in_errors_even_when_echoed(
    router: StandInServer, make_client: Any, token: str, make_reply: Any
) -> None:
    router.enqueue(make_reply(token))
    with pytest.raises(chatcore.APIError) as info:
        make_client(router.base_url).chat(MODEL, "Hi")
    _assert_no_token(info.value, token)
    cause = info.value.__cause__
    while cause is not None:
        if isinstance(cause, chatcore.APIError):
            _assert_no_token(cause, token)
        cause = cause.__cause__


def test_token_never_appears_in_connection_errors(make_client: Any, token: str) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(chatcore.APIConnectionError) as info:
        make_client(f"http://127.0.0.1:{port}").chat(MODEL, "Hi")
    _assert_no_token(info.value, token)


def test_token_never_appears_in_generate_decode_errors(
    tgi: StandInServer, make_client: Any, token: str
) -> None:
    tgi.enqueue(Reply.json({"echo": token}))
    with pytest.raises(chatcore.ResponseDecodeError) as info:
        make_client(tgi.url, api="generate").chat(MODEL, "Hi")
    _assert_no_token(info.value, token)


@pytest.mark.parametrize(
    "make_reply",
    [
        lambda t: Reply.tgi_error(422, f"token {t} rejected", "validation"),
        lambda t: Reply.json({"choices": [{"index": t, "message": {"content": t}}]}),
        lambda t: Reply.raw(f"not json {t}", status=200),
    ],
    ids=["422", "200-bad-choice", "200-not-json"],
)
def test_a_token_without_the_hf_prefix_is_redacted_too(
    router: StandInServer, make_client: Any, make_reply: Any
) -> None:
    odd = "custom-endpoint-secret-4242"
    router.api_key = odd
    router.enqueue(make_reply(odd))
    with pytest.raises(chatcore.APIError) as info:
        make_client(router.base_url, token=odd).chat(MODEL, "Hi")
    _assert_no_token(info.value, odd)
    assert info.value.__cause__ is None or odd not in repr(info.value.__cause__)
