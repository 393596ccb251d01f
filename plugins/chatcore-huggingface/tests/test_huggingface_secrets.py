"""Secrets of the ``huggingface`` provider: a router echoing the token back gets none of it
shown (through the real ``chatcore`` command too), and a credential inside ``base_url`` is
refused at configuration time, from an argument, the environment or a file."""

from __future__ import annotations

import json
import traceback
from pathlib import Path
from typing import Any

import pytest

import chatcore
from chatcore.exceptions import ConfigurationError
from chatcore.testing.conformance import echo_headers, urls_with_credentials
from chatcore.testing.helpers import run_cli
from chatcore.testing.server import Reply, StandInServer

# hf_ and a short tail: nothing a secret scanner would take for a real token
ECHO_TOKEN = "hf_EchoTok3n0123"
URL_TOKEN = "hf_UrlTok3n0123"
MODEL = "huggingface:meta-llama/Llama-3.1-8B-Instruct"


def test_the_chat_command_never_prints_an_echoed_token(tmp_path: Path) -> None:
    key = ECHO_TOKEN
    echo = echo_headers(key)
    body = {"error": f"bad token {key}", "error_type": key, key: [{key: key}]}
    with StandInServer(flavor="openai", api_key=key) as router:
        environ = {"HF_TOKEN": key, "CHATCORE_HUGGINGFACE_BASE_URL": router.base_url}
        router.enqueue(
            Reply.chat(f"the token is {key}", model=key, headers=echo),
            Reply.chat_stream(f"the token is {key}", model=key, headers=echo),
            Reply.json(body, status=403, headers=echo),
        )
        base = ["--debug", "--log-level", "DEBUG", "chat", "-m", MODEL]
        outs = [
            run_cli([*base, "--no-stream", "hi"], environ, tmp_path),
            run_cli([*base, "hi"], environ, tmp_path),
            run_cli([*base, "--no-stream", "hi"], environ, tmp_path),
        ]
        sent = router.requests
    assert [o.returncode for o in outs] == [0, 0, 4], [o.stderr for o in outs]
    assert sent[0].header("authorization") == f"Bearer {key}"
    assert "the token is ***" in outs[0].stdout
    assert "PermissionDeniedError" in outs[2].stderr and "Traceback" in outs[2].stderr
    for out in outs:
        assert key not in out.stdout + out.stderr


def test_an_echoed_token_is_masked_in_a_tgi_generate_answer(tgi: StandInServer) -> None:
    key = ECHO_TOKEN
    tgi.enqueue(
        Reply.json({"generated_text": f"the token is {key}"}, headers=echo_headers(key)),
        path="/generate",
    )
    with chatcore.Client(
        providers={"huggingface": {"base_url": tgi.url, "api": "generate", "api_key": key}},
        environ={},
        max_retries=0,
    ) as client:
        response = client.chat("huggingface:tgi", "hi")
    assert key not in repr(response) and key not in repr(response.headers)
    assert key not in str(response.request_id) and key not in response.text


@pytest.mark.parametrize("how", ["argument", "env", "file"])
def test_a_credential_in_base_url_is_refused(
    how: str, router: StandInServer, token: str, tmp_path: Path
) -> None:
    for bad in urls_with_credentials(router.base_url, URL_TOKEN):
        kwargs: dict[str, Any]
        if how == "argument":
            kwargs = {"providers": {"huggingface": {"api_key": token, "base_url": bad}}}
        elif how == "env":
            kwargs = {"environ": {"HF_TOKEN": token, "CHATCORE_HUGGINGFACE_BASE_URL": bad}}
        else:
            path = tmp_path / "chatcore.toml"
            path.write_text(f"[providers.huggingface]\nbase_url = {json.dumps(bad)}\n")
            kwargs = {"environ": {"HF_TOKEN": token}, "config_path": path}
        kwargs.setdefault("environ", {})
        with chatcore.Client(**kwargs) as client, pytest.raises(ConfigurationError) as info:
            client.provider("huggingface")
        text = "".join(traceback.format_exception(info.value))
        assert URL_TOKEN not in text and URL_TOKEN not in repr(client.settings)
        assert "'api_key' option" in str(info.value) and "HF_TOKEN" in str(info.value)
    assert not router.requests
