"""Configuration of the ``openai`` provider: explicit arguments > ``CHATCORE_OPENAI_*`` >
the vendor's ``OPENAI_*`` variables > defaults; the spec the plugin offers."""

from __future__ import annotations

from typing import Any

import chatcore
from chatcore.testing.server import Reply, StandInServer


def test_config_from_the_environment(
    make_client: Any, server: StandInServer, openai_key: str
) -> None:
    client = make_client(
        environ={
            "OPENAI_API_KEY": openai_key,
            "OPENAI_BASE_URL": server.base_url,
            "OPENAI_ORG_ID": "org-env",
            "OPENAI_PROJECT_ID": "proj_env",
        }
    )
    assert client.chat("openai:gpt-4o-mini", "Hello").choices
    sent = server.last_request
    assert sent.header("authorization") == f"Bearer {openai_key}"
    assert sent.header("openai-organization") == "org-env"
    assert sent.header("openai-project") == "proj_env"
    sources = client.provider("openai").config.sources
    assert sources["api_key"] == "env OPENAI_API_KEY"
    assert sources["base_url"] == "env OPENAI_BASE_URL"


def test_chatcore_variables_win_over_vendor_ones(
    make_client: Any, server: StandInServer, openai_key: str, closed_port: int
) -> None:
    client = make_client(
        environ={
            "OPENAI_API_KEY": "sk-wrong-key-0000000000000000",
            "CHATCORE_OPENAI_API_KEY": openai_key,
            "OPENAI_BASE_URL": f"http://127.0.0.1:{closed_port}/v1",
            "CHATCORE_OPENAI_BASE_URL": server.base_url,
        }
    )
    assert client.chat("openai:gpt-4o-mini", "Hello").choices
    assert client.provider("openai").base_url == server.base_url
    assert len(server.requests) == 1


def test_explicit_arguments_win_over_the_environment(
    make_client: Any, server: StandInServer, openai_key: str, closed_port: int
) -> None:
    client = make_client(
        {"openai": {"api_key": openai_key, "base_url": server.base_url, "project": "proj_arg"}},
        environ={
            "OPENAI_API_KEY": "sk-wrong-key-0000000000000000",
            "CHATCORE_OPENAI_BASE_URL": f"http://127.0.0.1:{closed_port}/v1",
            "OPENAI_PROJECT_ID": "proj_env",
        },
    )
    assert client.chat("openai:gpt-4o-mini", "Hello").choices
    assert server.last_request.header("openai-project") == "proj_arg"


def test_defaults(make_client: Any, openai_key: str) -> None:
    provider = make_client({"openai": {"api_key": openai_key}}).provider("openai")
    assert provider.base_url == "https://api.openai.com/v1"
    assert provider.config["timeout"] == 600.0
    assert provider.config["connect_timeout"] == 5.0
    assert provider.config.get("organization") is None
    assert provider.capabilities == {
        "chat",
        "models",
        "tools",
        "json_object",
        "json_schema",
        "vision",
        "stream",
    }


def test_trailing_slash_of_base_url(
    make_client: Any, server: StandInServer, openai_key: str
) -> None:
    client = make_client({"openai": {"api_key": openai_key, "base_url": server.base_url + "/"}})
    client.chat("openai:gpt-4o-mini", "Hello")
    assert server.last_request.path == "/v1/chat/completions"
    assert client.provider("openai").base_url == server.base_url


def test_a_compatible_server_under_another_prefix(make_client: Any) -> None:
    # e.g. OpenRouter's https://openrouter.ai/api/v1: the base URL is used as given
    with StandInServer(flavor="openai") as srv:
        client = make_client({"openai": {"api_key": "unused", "base_url": srv.url + "/api/v1"}})
        srv.enqueue(Reply.chat("ok"))
        assert client.chat("openai:meta-llama/llama-3.1-8b-instruct", "Hi").text == "ok"
        sent = srv.last_request
    assert sent.path == "/api/v1/chat/completions"
    assert sent.json()["model"] == "meta-llama/llama-3.1-8b-instruct"


def test_the_spec(host: Any) -> None:
    spec = host.provider_spec("openai")
    assert spec.plugin == "chatcore-openai"
    assert spec.version == "0.1.0"
    assert spec.api_key_env == ("OPENAI_API_KEY",)
    assert spec.env_names("api_key") == ("CHATCORE_OPENAI_API_KEY", "OPENAI_API_KEY")
    assert spec.env_names("base_url") == ("CHATCORE_OPENAI_BASE_URL", "OPENAI_BASE_URL")
    assert spec.env_names("organization") == ("CHATCORE_OPENAI_ORGANIZATION", "OPENAI_ORG_ID")
    assert spec.env_names("project") == ("CHATCORE_OPENAI_PROJECT", "OPENAI_PROJECT_ID")
    options = spec.all_options()
    assert options["api_key"].secret
    assert options["api_key"].required
    assert options["base_url"].default == "https://api.openai.com/v1"
    assert "stream" in spec.capabilities


def test_user_agent_without_a_distribution(server: StandInServer, openai_key: str) -> None:
    # registered in code (no entry point), the core cannot tell the plugin's version
    import chatcore_openai
    from chatcore._plugins import PluginHost

    host = PluginHost(load_entry_points=False, plugins=[chatcore_openai], environ={})
    with chatcore.Client(
        plugin_host=host,
        providers={"openai": {"api_key": openai_key, "base_url": server.base_url}},
        environ={},
        max_retries=0,
    ) as client:
        client.chat("openai:gpt-4o-mini", "Hello")
    assert "chatcore-openai/0.1.0" in (server.last_request.header("user-agent") or "")
