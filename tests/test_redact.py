"""Redaction (chatcore._redact): known secrets masked everywhere in whole values, credential
patterns in text, credentials in URLs; and, over real sockets, that nothing a server echoes
back reaches the caller unmasked."""

from __future__ import annotations

import json
import pickle
import traceback
from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st
from requests.structures import CaseInsensitiveDict

import chatcore
from chatcore._redact import (
    MASK,
    KnownSecrets,
    is_credential_name,
    mask_secrets,
    redact,
    redact_url,
    redact_value,
    scrub_exception,
    url_credentials,
    usable_secrets,
)
from chatcore.exceptions import APIError, BadRequestError, ConfigurationError
from chatcore.models import ChatChunk, ChatResponse
from chatcore.testing.conformance import echo_headers, strings_in
from chatcore.testing.server import Reply, StandInServer

from .conftest import TEST_KEY

# short and with non-alphanumerics: nothing a secret scanner would take for a real key
SECRET = "k-Echo.0123"


def leaks(value: Any, secret: str) -> list[str]:
    return [s for s in strings_in(value) if secret in s]


# --------------------------------------------------------------------------------------
# Known secrets in whole values

_secrets = st.text(
    alphabet=st.characters(blacklist_characters="*", blacklist_categories=("Cs",)),
    min_size=4,
    max_size=24,
)


def _json_like(secret: str) -> st.SearchStrategy[Any]:
    text = st.text(max_size=8) | st.builds(
        lambda before, after: before + secret + after, st.text(max_size=4), st.text(max_size=4)
    )
    scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | text
    return st.recursive(
        scalars,
        lambda children: (
            st.lists(children, max_size=4)
            | st.dictionaries(text, children, max_size=4)
            | st.tuples(children, children)
        ),
        max_leaves=24,
    )


@given(st.data())
def test_no_known_secret_survives_anywhere_in_a_value(data: st.DataObject) -> None:
    secret = data.draw(_secrets, label="secret")
    other = data.draw(_secrets, label="other secret")
    value = data.draw(_json_like(secret), label="value")
    masked = mask_secrets(value, [other, secret])
    assert not leaks(masked, secret)
    redacted = redact_value(value, [secret, other])
    assert not leaks(redacted, secret)


@given(st.data())
def test_a_value_without_secrets_is_returned_as_is(data: st.DataObject) -> None:
    secret = data.draw(_secrets, label="secret")
    value = data.draw(_json_like("").filter(lambda v: not leaks(v, secret)), label="value")
    assert mask_secrets(value, [secret]) is value


def test_keys_and_values_are_masked_at_any_depth_and_types_are_kept() -> None:
    body = {SECRET: {"nested": [SECRET, {f"x-{SECRET}": (1, f"a{SECRET}b")}]}, "n": 3}
    masked = mask_secrets(body, [SECRET])
    assert masked == {MASK: {"nested": [MASK, {f"x-{MASK}": (1, f"a{MASK}b")}]}, "n": 3}
    headers = CaseInsensitiveDict({"X-Request-Id": SECRET, SECRET: "v", "Retry-After": "1"})
    out = mask_secrets(headers, [SECRET])
    assert isinstance(out, CaseInsensitiveDict)
    assert out["x-request-id"] == MASK and out[MASK] == "v" and out["retry-after"] == "1"
    assert SECRET not in repr(dict(out))


def test_responses_and_chunks_are_masked_field_by_field() -> None:
    response = ChatResponse.from_dict(
        {
            "id": SECRET,
            "model": f"m-{SECRET}",
            "system_fingerprint": SECRET,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": f"key {SECRET}"},
                    "finish_reason": "stop",
                    "logprobs": {SECRET: [SECRET]},
                }
            ],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        },
        provider="p",
        request_id=SECRET,
        headers={"x-echo": SECRET},
    )
    masked = mask_secrets(response, [SECRET])
    assert not leaks(masked, SECRET) and SECRET not in repr(masked)
    assert masked.text == f"key {MASK}" and masked.request_id == MASK
    assert masked.usage == response.usage
    chunk = ChatChunk(id=SECRET, model="m", choices=({"index": 0, "delta": {"content": SECRET}},))
    assert not leaks(mask_secrets(chunk, [SECRET]), SECRET)


def test_secrets_under_four_characters_are_not_masked() -> None:
    assert mask_secrets("abc-abcd", ["abc"]) == "abc-abcd"
    assert mask_secrets("abc-abcd", ["abcd"]) == f"abc-{MASK}"
    assert redact("xyz abcd", ["xyz"]) == "xyz abcd"
    assert redact("xyz abcd", ["abcd"]) == f"xyz {MASK}"
    assert usable_secrets(["abc", "", "abcd"]).values == ("abcd",)


def test_a_secret_containing_another_is_masked_whole() -> None:
    # the shorter secret first would leave the longer one's tail ("ef") in clear
    assert mask_secrets("<abcdef>", ["abcd", "abcdef"]) == f"<{MASK}>"
    assert redact("<abcdef>", ["abcd", "abcdef"]) == f"<{MASK}>"


def test_the_secrets_holder_never_shows_them() -> None:
    held = usable_secrets([SECRET, "another-secret"])
    assert isinstance(held, KnownSecrets) and len(held) == 2 and SECRET in held.values
    for text in (repr(held), str(held), json.dumps({"s": held}, default=str)):
        assert SECRET not in text
    assert pickle.loads(pickle.dumps(held)).values == ()
    assert usable_secrets(held) is held


# --------------------------------------------------------------------------------------
# Patterns


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("https://TOKEN1234@host/v1", "https://***@host/v1"),
        ("https://user:TOKEN1234@host/v1", "https://user:***@host/v1"),
        ("redis://user:***@h:1/0", "redis://user:***@h:1/0"),
        (
            "https://h/v1?api-version=2024-10-21&key=abc",
            "https://h/v1?api-version=2024-10-21&key=***",
        ),
        ("https://h/v1?subscription-key=abc", "https://h/v1?subscription-key=***"),
        ("https://h/v1#access_token=abc", "https://h/v1#access_token=***"),
        ("https://h/v1?sig=abc&x=1", "https://h/v1?sig=***&x=1"),
    ],
)
def test_url_credentials_are_masked_in_text(text: str, shown: str) -> None:
    assert redact(text) == shown


@pytest.mark.parametrize(
    ("name", "credential"),
    [
        ("key", True),
        ("api_key", True),
        ("api-key", True),
        ("apiKey", True),
        ("token", True),
        ("access_token", True),
        ("subscription-key", True),
        ("sig", True),
        ("password", True),
        ("api-version", False),
        ("deployment", False),
        ("model", False),
    ],
)
def test_credential_query_names(name: str, credential: bool) -> None:
    assert is_credential_name(name) is credential


@pytest.mark.parametrize(
    ("url", "where"),
    [
        ("https://user:KEY9@host/v1", "user-info"),
        ("https://KEY9@host/v1", "user-info"),
        ("https://host/v1?key=KEY9", "query parameter 'key'"),
        ("https://host/v1?api_key=KEY9", "query parameter 'api_key'"),
        ("https://host/v1?token=KEY9", "query parameter 'token'"),
        ("https://host/v1?access_token=KEY9", "query parameter 'access_token'"),
        ("https://host/v1#key=KEY9", "fragment parameter 'key'"),
        ("https://host/sk-abcdefgh12345/v1", "shaped like a credential"),
    ],
)
def test_url_credentials_are_found_and_never_shown(url: str, where: str) -> None:
    found = url_credentials(url)
    assert len(found) == 1 and where in found[0]
    shown = redact_url(url)
    assert "KEY9" not in shown and "abcdefgh12345" not in shown and "host" in shown


def test_urls_without_credentials_pass() -> None:
    for url in (
        "https://api.openai.com/v1",
        "http://127.0.0.1:8080/v1",
        "https://res.openai.azure.com/openai?api-version=2024-10-21",
    ):
        assert url_credentials(url) == []
        assert redact_url(url) == url


# --------------------------------------------------------------------------------------
# Exceptions and their chains


def test_scrub_exception_masks_the_whole_chain() -> None:
    from cattrs.errors import ClassValidationError  # an exception group, as cattrs raises

    def raise_chain() -> None:
        try:
            try:
                raise ValueError(f"unknown content part type {SECRET!r}")
            except ValueError as inner:
                group = ClassValidationError("while structuring", [KeyError(SECRET), inner], dict)
                raise group from inner
        except ClassValidationError as group:
            error = APIError("the payload does not fit", provider="p")
            error.__notes__ = [f"body: {SECRET}"]
            raise error from group

    with pytest.raises(APIError) as info:
        raise_chain()
    assert SECRET in "".join(traceback.format_exception(info.value))
    scrub_exception(info.value, [SECRET])
    assert SECRET not in "".join(traceback.format_exception(info.value))


def test_api_error_attributes_set_later_are_masked_too() -> None:
    error = APIError("boom", secrets=[SECRET])
    error.headers = {SECRET: SECRET}
    error.body = [{"k": SECRET}]
    assert not leaks([error.headers, error.body], SECRET)
    late = APIError(f"boom {SECRET}", request_id=SECRET, body={SECRET: 1})
    late.add_secrets([SECRET])
    assert SECRET not in f"{late} {late!r} {late.args} {late.request_id} {late.body}"


# --------------------------------------------------------------------------------------
# Over real sockets: a server that echoes the key back


def test_an_echoed_key_is_masked_in_a_response(make_client: Any, server: StandInServer) -> None:
    server.enqueue(
        Reply.chat(f"your key is {TEST_KEY}", model=TEST_KEY, headers=echo_headers(TEST_KEY))
    )
    response = make_client().chat("wire:m", "hi")
    assert not leaks(response, TEST_KEY)
    for text in (repr(response), json.dumps(response.to_dict()), str(response.headers)):
        assert TEST_KEY not in text
    assert response.request_id == MASK and response.model == MASK
    assert response.text == f"your key is {MASK}"
    assert response.headers is not None and response.headers["x-echo"] == f"you sent {MASK}"


def test_an_echoed_key_is_masked_in_an_error(make_client: Any, server: StandInServer) -> None:
    body = {
        "error": {"message": "bad", "type": TEST_KEY, "code": TEST_KEY, "param": TEST_KEY},
        TEST_KEY: [{"deeper": {TEST_KEY: TEST_KEY}}],
    }
    server.enqueue(Reply.json(body, status=400, headers=echo_headers(TEST_KEY)))
    with pytest.raises(BadRequestError) as info:
        make_client().chat("wire:m", "hi", max_retries=0)
    error = info.value
    shown = [
        str(error),
        repr(error),
        repr(vars(error)),
        "".join(traceback.format_exception(error)),
        json.dumps(error.body),
        repr(error.headers),
    ]
    assert not [text for text in shown if TEST_KEY in text]
    assert error.request_id == MASK
    assert not leaks(
        [error.body, error.headers, error.code, error.param, error.error_type], TEST_KEY
    )


def test_a_key_of_another_secret_option_is_masked(server: StandInServer) -> None:
    """Every option declared ``secret=True`` is masked, not only ``api_key``."""
    from chatcore._plugins import PluginHost
    from chatcore.provider import Option, ProviderSpec
    from chatcore.testing.helpers import OpenAIWireProvider

    class Plugin:
        @chatcore.hookimpl
        def chatcore_providers(self) -> list[ProviderSpec]:
            return [
                ProviderSpec(
                    name="wire2",
                    factory=OpenAIWireProvider,
                    options={
                        "api_key": Option(secret=True),
                        "proxy_token": Option(secret=True),
                    },
                )
            ]

    token = "proxy-Token.42"
    server.enqueue(Reply.chat(f"token {token}", headers={"x-request-id": token}))
    host = PluginHost(load_entry_points=False, plugins=[Plugin()], environ={})
    with chatcore.Client(
        plugin_host=host,
        providers={
            "wire2": {"api_key": TEST_KEY, "base_url": server.base_url, "proxy_token": token}
        },
        environ={},
    ) as client:
        response = client.chat("wire2:m", "hi")
    assert not leaks(response, token)


# --------------------------------------------------------------------------------------
# Credentials in URL options


@pytest.mark.parametrize(
    "url",
    [
        f"https://user:{SECRET}@api.example.com/v1",
        f"https://{SECRET}@api.example.com/v1",
        f"https://api.example.com/v1?key={SECRET}",
        f"https://api.example.com/v1?api_key={SECRET}",
        f"https://api.example.com/v1?token={SECRET}",
        f"https://api.example.com/v1?access_token={SECRET}",
    ],
)
def test_a_credential_in_base_url_is_refused(make_client: Any, url: str) -> None:
    client = make_client(providers={"wire": {"api_key": TEST_KEY, "base_url": url}})
    with pytest.raises(ConfigurationError) as info:
        client.provider("wire")
    message = str(info.value)
    assert SECRET not in message and SECRET not in repr(info.value)
    assert "'api_key' option" in message and "base_url" in message
    assert SECRET not in "".join(traceback.format_exception(info.value))


def test_a_legitimate_query_is_kept(make_client: Any, server: StandInServer) -> None:
    url = f"{server.base_url}?api-version=2024-10-21"
    provider = make_client(providers={"wire": {"api_key": TEST_KEY, "base_url": url}}).provider(
        "wire"
    )
    assert provider.base_url == url


def test_reprs_mask_a_url_credential_set_by_hand() -> None:
    from chatcore.provider import Provider, ProviderConfig, ProviderSpec

    spec = ProviderSpec(name="hand", factory=Provider)
    config = ProviderConfig(
        spec=spec, values={"base_url": f"https://{SECRET}@h/v1?key={SECRET}"}, sources={}
    )
    assert SECRET not in repr(config)
    assert SECRET not in repr(Provider(config))


def test_a_stream_masks_every_chunk_whatever_its_shape() -> None:
    from chatcore._stream import ChatStream
    from chatcore.models import Usage

    chunks = [
        ChatChunk(id=SECRET, model="m", choices=({"index": 0, "delta": {"content": "a"}},)),
        ChatChunk(id="c", model=SECRET, choices=()),
        ChatChunk(id="c", model="m", choices=({"index": 0, "delta": {SECRET: "x"}},)),
        ChatChunk(id="c", model="m", choices=({"index": 0, "logprobs": {"k": [SECRET]}},)),
        ChatChunk(id="c", model="m", usage=Usage(1, 1, 2, {SECRET: 1})),
        ChatChunk(id="c", model="m", request_id=SECRET),
        ChatChunk(id="c", model="m", headers={"x": SECRET}),
    ]
    first = ChatChunk(id="c", model="m", headers={SECRET: "v"}, request_id=SECRET)
    stream = ChatStream(iter(chunks), first, provider="p", model="m", secrets=[SECRET])
    seen = list(stream)
    assert len(seen) == len(chunks) + 1
    assert not leaks(seen, SECRET)
    assert not leaks([stream.headers, stream.request_id, stream.response], SECRET)


def test_the_fast_chunk_scan_knows_every_chunk_field() -> None:
    """ChatStream._masked scans a plain chunk's id, model, provider and choices itself
    (and hands any usage, request id or headers to mask_secrets): a new ChatChunk field
    must be added there."""
    assert set(attrs.fields_dict(ChatChunk)) == {
        "id",
        "model",
        "choices",
        "created",
        "usage",
        "provider",
        "request_id",
        "headers",
    }


@pytest.mark.parametrize("unit", ["a", "a:", "a://b:c", "ab+.-", "hf_", '"token":"'])
def test_redaction_is_linear_on_hostile_text(unit: str) -> None:
    """An error body of 1 MiB of one repeated unit is redacted in one pass. The URL
    patterns were once retried from every letter of a run (quadratic: 64 KiB of letters
    took about a minute); the subprocess bound is hundreds of times the linear cost, so
    it fails only on a quadratic pattern, never on a slow machine."""
    import subprocess
    import sys

    code = (
        "from chatcore._redact import redact\n"
        f"text = {unit!r} * ({1 << 20} // {len(unit)})\n"
        "assert redact(text, ('a-known-secret',)).startswith(text[:8])\n"
    )
    done = subprocess.run([sys.executable, "-c", code], timeout=60, capture_output=True)
    assert done.returncode == 0, done.stderr.decode()


# --- the raw-bytes pre-check that lets the pipeline skip the masking walk ---------------


def test_may_hold_secret_is_false_only_when_no_secret_can_be_in_the_answer():
    from chatcore._redact import KnownSecrets, may_hold_secret

    key = KnownSecrets(["sk-live-0123456789"])
    assert may_hold_secret(b'{"text":"hello"}', {"x-request-id": "req_1"}, key) is False
    assert may_hold_secret(b'{"text":"sk-live-0123456789"}', {}, key) is True
    # a JSON escape can spell the key without its bytes
    assert may_hold_secret(b'{"text":"\\u0073k-live-0123456789"}', {}, key) is True
    assert may_hold_secret(b'{"text":"plain"}', {"x-echo": "sk-live-0123456789"}, key) is True
    assert may_hold_secret(b'{"text":"plain"}', {}, KnownSecrets()) is False
    # a key with a character JSON may escape as \/ could hide behind that escape
    slashed = KnownSecrets(["abc/defghijkl"])
    assert may_hold_secret(b'{"text":"plain"}', {}, slashed) is True


def test_a_key_echoed_through_a_json_escape_is_masked_in_the_response(make_client, server):
    from chatcore.testing.server import Reply

    escaped = "".join(f"\\u{ord(c):04x}" for c in TEST_KEY)
    body = (
        '{"id":"c1","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,'
        '"message":{"role":"assistant","content":"echo ' + escaped + '"},"finish_reason":"stop"}]}'
    )
    server.enqueue(Reply.raw(body.encode(), content_type="application/json"))
    response = make_client().chat("wire:m", "hi")
    assert TEST_KEY not in response.text
    assert "echo" in response.text
