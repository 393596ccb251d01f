"""Secrets of the ``openai`` and ``azure`` providers: a server echoing the key back gets
none of it shown (through the real ``chatcore`` command too), and a credential inside a URL
option is refused at configuration time, from an argument, the environment or a file."""

from __future__ import annotations

import json
import traceback
from pathlib import Path
from typing import Any

import pytest

from chatcore.exceptions import ConfigurationError
from chatcore.testing.conformance import echo_headers, urls_with_credentials
from chatcore.testing.helpers import run_cli
from chatcore.testing.server import Reply, StandInServer

# short, or with non-alphanumerics: nothing a secret scanner would take for a real key
OPENAI_ECHO_KEY = "sk-echo-Key.0123"
AZURE_ECHO_KEY = "azureEchoKey.0123"
URL_TOKEN = "url-Token.0123"


def _echo_replies(key: str) -> list[Reply]:
    echo = echo_headers(key)
    body = {"error": {"message": f"bad {key}", "type": key, "code": key}, key: [{key: key}]}
    return [
        Reply.chat(f"the key is {key}", model=key, headers=echo),
        Reply.chat_stream(f"the key is {key}", model=key, headers=echo),
        Reply.json(body, status=401, headers=echo),
    ]


@pytest.mark.parametrize("provider", ["openai", "azure"])
def test_the_chat_command_never_prints_an_echoed_key(provider: str, tmp_path: Path) -> None:
    key = OPENAI_ECHO_KEY if provider == "openai" else AZURE_ECHO_KEY
    with StandInServer(flavor=provider, api_key=key) as server:  # type: ignore[arg-type]
        environ = (
            {"OPENAI_API_KEY": key, "OPENAI_BASE_URL": server.base_url}
            if provider == "openai"
            else {"AZURE_OPENAI_API_KEY": key, "AZURE_OPENAI_ENDPOINT": server.url}
        )
        server.enqueue(*_echo_replies(key))
        base = ["--debug", "--log-level", "DEBUG", "chat", "-m", f"{provider}:gpt-4o-mini"]
        outs = [
            run_cli([*base, "--no-stream", "hi"], environ, tmp_path),
            run_cli([*base, "hi"], environ, tmp_path),
            run_cli([*base, "--no-stream", "hi"], environ, tmp_path),
        ]
        sent = server.requests
    assert [o.returncode for o in outs] == [0, 0, 4], [o.stderr for o in outs]
    header = "authorization" if provider == "openai" else "api-key"
    assert key in str(sent[0].header(header)), "the key must still be sent to its server"
    assert "the key is ***" in outs[0].stdout and "the key is ***" in outs[1].stdout
    assert "AuthenticationError" in outs[2].stderr and "Traceback" in outs[2].stderr
    for out in outs:
        assert key not in out.stdout + out.stderr


def _refused(make_client: Any, provider: str, **client: Any) -> str:
    with pytest.raises(ConfigurationError) as info:
        make_client(**client).provider(provider)
    text = "".join(traceback.format_exception(info.value))
    assert URL_TOKEN not in text
    assert "'api_key' option" in str(info.value)
    return str(info.value)


#: provider -> (URL option, its vendor variable, the key's vendor variable)
_URL_OPTIONS = {
    "openai": ("base_url", "OPENAI_BASE_URL", "OPENAI_API_KEY"),
    "azure": ("endpoint", "AZURE_OPENAI_ENDPOINT", "AZURE_OPENAI_API_KEY"),
}


@pytest.mark.parametrize("how", ["argument", "env", "chatcore env", "file"])
@pytest.mark.parametrize("provider", ["openai", "azure"])
def test_a_credential_in_a_url_option_is_refused(
    provider: str, how: str, make_client: Any, server: StandInServer, tmp_path: Path
) -> None:
    option, url_env, key_env = _URL_OPTIONS[provider]
    key = "k-Test.0123"
    url = server.base_url if provider == "openai" else server.url
    for bad in urls_with_credentials(url, URL_TOKEN):
        client: dict[str, Any] = {"environ": {key_env: key}}
        if how == "argument":
            client["providers"] = {provider: {option: bad}}
        elif how == "env":
            client["environ"][url_env] = bad
        elif how == "chatcore env":
            client["environ"][f"CHATCORE_{provider.upper()}_{option.upper()}"] = bad
        else:
            path = tmp_path / "chatcore.toml"
            path.write_text(f"[providers.{provider}]\n{option} = {json.dumps(bad)}\n")
            client["config_path"] = path
        message = _refused(make_client, provider, **client)
        assert option in message and key_env in message
    assert not server.requests


def test_azure_api_version_in_the_query_still_works(
    make_client: Any, azure_server: StandInServer, azure_key: str
) -> None:
    client = make_client({"azure": {"api_key": azure_key, "endpoint": azure_server.url}})
    assert client.chat("azure:gpt-4o-mini", "hi").choices
    assert azure_server.last_request.query == {"api-version": ["2024-10-21"]}
