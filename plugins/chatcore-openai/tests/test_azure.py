"""The ``azure`` provider over real HTTP against the Azure OpenAI stand-in: dated API
versions with deployments, the GA v1 API, both kinds of credentials, configuration."""

from __future__ import annotations

from typing import Any

import pytest

import chatcore
from chatcore import exceptions as exc
from chatcore.testing.server import Reply, StandInServer


@pytest.fixture
def azure(make_client: Any, azure_server: StandInServer, azure_key: str) -> Any:
    """``azure(**options)``: a client whose ``azure`` provider points at the stand-in."""

    def make(**options: Any) -> chatcore.Client:
        settings = {"api_key": azure_key, "endpoint": azure_server.url, **options}
        return make_client({"azure": {k: v for k, v in settings.items() if v is not None}})

    return make


def test_dated_version_round_trip(azure: Any, azure_server: StandInServer, azure_key: str) -> None:
    client = azure()
    response = client.chat("azure:my-gpt4o", "Hello", temperature=0.3)

    sent = azure_server.last_request
    assert sent.method == "POST"
    assert sent.path == "/openai/deployments/my-gpt4o/chat/completions"
    assert sent.query == {"api-version": ["2024-10-21"]}
    assert sent.header("api-key") == azure_key
    assert "authorization" not in sent.headers
    assert sent.json() == {"messages": [{"role": "user", "content": "Hello"}], "temperature": 0.3}
    assert "chatcore-openai/0.1.0" in (sent.header("user-agent") or "")

    assert response.provider == "azure"
    assert response.model == "my-gpt4o"
    assert response.text
    assert response.request_id
    assert response.attempts == 1


def test_content_filter_annotations_parse(azure: Any, azure_server: StandInServer) -> None:
    filters = {
        "hate": {"filtered": False, "severity": "safe"},
        "self_harm": {"filtered": False, "severity": "safe"},
        "sexual": {"filtered": False, "severity": "safe"},
        "violence": {"filtered": True, "severity": "medium"},
    }
    azure_server.enqueue(
        Reply.json(
            {
                "id": "chatcmpl-az",
                "object": "chat.completion",
                "created": 1730000000,
                "model": "gpt-4o-2024-08-06",
                "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": filters}],
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": "content_filter",
                        "logprobs": None,
                        "message": {"role": "assistant", "content": None, "refusal": None},
                        "content_filter_results": filters,
                    }
                ],
                "usage": {"prompt_tokens": 5, "completion_tokens": 0, "total_tokens": 5},
                "system_fingerprint": "fp_az",
            },
            headers={"apim-request-id": "apim-1234"},
        )
    )
    response = azure().chat("azure:my-gpt4o", "Hello")
    assert response.finish_reason == "content_filter"
    assert response.text == ""
    assert response.request_id == "apim-1234"  # no x-request-id: Azure's own id


def test_the_default_azure_answer_parses(azure: Any) -> None:
    # the stand-in's default answers carry Azure's filter annotations
    response = azure().chat("azure:dep", "Hello")
    assert response.choices[0].finish_reason == "stop"


def test_deployment_option_wins_over_model_name(azure: Any, azure_server: StandInServer) -> None:
    azure(deployment="fixed-dep").chat("azure:whatever", "Hello")
    assert azure_server.last_request.path == "/openai/deployments/fixed-dep/chat/completions"


def test_other_dated_version(azure: Any, azure_server: StandInServer) -> None:
    azure(api_version="2025-04-01-preview").chat("azure:dep", "Hello")
    assert azure_server.last_request.query == {"api-version": ["2025-04-01-preview"]}


def test_ad_token_is_a_bearer(
    make_client: Any, azure_server: StandInServer, azure_key: str
) -> None:
    client = make_client({"azure": {"ad_token": azure_key, "endpoint": azure_server.url}})
    client.chat("azure:dep", "Hello")
    sent = azure_server.last_request
    assert sent.header("authorization") == f"Bearer {azure_key}"
    assert "api-key" not in sent.headers


def test_explicit_key_wins_over_a_token_from_the_environment(
    make_client: Any, azure_server: StandInServer, azure_key: str
) -> None:
    client = make_client(
        {"azure": {"api_key": azure_key, "endpoint": azure_server.url}},
        environ={"AZURE_OPENAI_AD_TOKEN": "stale-token-from-env"},
    )
    client.chat("azure:dep", "Hello")
    assert azure_server.last_request.header("api-key") == azure_key
    assert "authorization" not in azure_server.last_request.headers


def test_v1_api(azure: Any, azure_server: StandInServer, azure_key: str) -> None:
    client = azure(api_version="v1")
    response = client.chat("azure:my-gpt4o", "Hello")
    sent = azure_server.last_request
    assert sent.path == "/openai/v1/chat/completions"
    assert sent.query == {}
    assert sent.header("api-key") == azure_key
    assert sent.json()["model"] == "my-gpt4o"
    assert response.text
    assert client.provider("azure").base_url == f"{azure_server.url}/openai/v1"


def test_v1_api_with_a_deployment_option(azure: Any, azure_server: StandInServer) -> None:
    azure(api_version="v1", deployment="fixed-dep").chat("azure:whatever", "Hello")
    assert azure_server.last_request.json()["model"] == "fixed-dep"


def test_list_models_v1(azure: Any, azure_server: StandInServer) -> None:
    models = azure(api_version="v1").list_models("azure")
    assert [m.id for m in models] == ["gpt-4o-mini", "gpt-4o"]
    assert all(m.provider == "azure" for m in models)
    assert azure_server.last_request.path == "/openai/v1/models"


def test_list_models_dated(azure: Any, azure_server: StandInServer) -> None:
    azure_server.enqueue(
        Reply.json({"data": [{"id": "gpt-4o", "object": "model", "created_at": 1}]})
    )
    models = azure().list_models("azure")
    assert [m.id for m in models] == ["gpt-4o"]
    sent = azure_server.last_request
    assert (sent.method, sent.path) == ("GET", "/openai/models")
    assert sent.query == {"api-version": ["2024-10-21"]}


def test_config_from_the_environment(
    make_client: Any, azure_server: StandInServer, azure_key: str
) -> None:
    client = make_client(
        environ={
            "AZURE_OPENAI_API_KEY": azure_key,
            "AZURE_OPENAI_ENDPOINT": azure_server.url + "/",
            "OPENAI_API_VERSION": "2024-06-01",
        }
    )
    client.chat("azure:dep", "Hello")
    sent = azure_server.last_request
    assert sent.path == "/openai/deployments/dep/chat/completions"
    assert sent.query == {"api-version": ["2024-06-01"]}


def test_endpoint_with_openai_suffix(azure: Any, azure_server: StandInServer) -> None:
    azure(endpoint=azure_server.url + "/openai/").chat("azure:dep", "Hello")
    assert azure_server.last_request.path == "/openai/deployments/dep/chat/completions"


def test_base_url_is_meaningful_and_secret_free(
    azure: Any, azure_server: StandInServer, azure_key: str
) -> None:
    assert azure().provider("azure").base_url == (
        f"{azure_server.url}/openai/deployments?api-version=2024-10-21"
    )
    provider = azure(deployment="dep").provider("azure")
    assert provider.base_url == f"{azure_server.url}/openai/deployments/dep?api-version=2024-10-21"
    assert azure_key not in provider.base_url
    assert azure_key not in repr(provider)
    assert azure_key not in repr(provider.config)


# --- errors -------------------------------------------------------------------------------


def test_unknown_deployment(azure: Any, azure_server: StandInServer) -> None:
    azure_server.enqueue(
        Reply.json(
            {
                "error": {
                    "code": "DeploymentNotFound",
                    "message": "The API deployment for this resource does not exist.",
                }
            },
            404,
        )
    )
    with pytest.raises(exc.ModelNotFoundError) as info:
        azure().chat("azure:nope", "Hello")
    assert info.value.provider == "azure"
    assert info.value.model == "nope"
    assert info.value.status_code == 404


def test_wrong_key_never_shows(make_client: Any, azure_server: StandInServer) -> None:
    wrong = "wrongAzureKey0123456789"
    client = make_client({"azure": {"api_key": wrong, "endpoint": azure_server.url}})
    with pytest.raises(exc.AuthenticationError) as info:
        client.chat("azure:dep", "Hello")
    assert wrong not in str(info.value)
    assert wrong not in repr(info.value)
    assert wrong not in repr(info.value.body)


def test_rate_limit(azure: Any, azure_server: StandInServer) -> None:
    azure_server.enqueue(
        Reply.json(
            {"error": {"code": "429", "message": "Requests have exceeded the limit."}},
            429,
            headers={"retry-after-ms": "1500", "retry-after": "2"},
        )
    )
    with pytest.raises(exc.RateLimitError) as info:
        azure().chat("azure:dep", "Hello")
    assert info.value.retry_after == 1.5


# --- configuration errors, before any network call ---------------------------------------


def test_missing_credentials_names_both_variables(
    make_client: Any, azure_server: StandInServer
) -> None:
    client = make_client({"azure": {"endpoint": azure_server.url}})
    with pytest.raises(chatcore.ConfigurationError) as info:
        client.chat("azure:dep", "Hello")
    assert "AZURE_OPENAI_API_KEY" in str(info.value)
    assert "AZURE_OPENAI_AD_TOKEN" in str(info.value)
    assert azure_server.requests == []


def test_missing_endpoint(make_client: Any, azure_key: str) -> None:
    client = make_client({"azure": {"api_key": azure_key}})
    with pytest.raises(chatcore.ConfigurationError, match="AZURE_OPENAI_ENDPOINT"):
        client.chat("azure:dep", "Hello")


@pytest.mark.parametrize("version", ["2024-10", "latest", "V1", "2024-10-21-beta"])
def test_bad_api_version(azure: Any, azure_server: StandInServer, version: str) -> None:
    with pytest.raises(chatcore.ConfigurationError, match="api_version"):
        azure(api_version=version).chat("azure:dep", "Hello")
    assert azure_server.requests == []


def test_base_url_is_not_an_azure_option(azure: Any, azure_server: StandInServer) -> None:
    with pytest.raises(chatcore.ConfigurationError, match="endpoint"):
        azure(base_url=azure_server.url).chat("azure:dep", "Hello")


def test_the_spec(host: Any) -> None:
    spec = host.provider_spec("azure")
    assert spec.plugin == "chatcore-openai"
    assert spec.version == "0.1.0"
    assert spec.env_names("api_key") == ("CHATCORE_AZURE_API_KEY", "AZURE_OPENAI_API_KEY")
    assert spec.env_names("ad_token") == ("CHATCORE_AZURE_AD_TOKEN", "AZURE_OPENAI_AD_TOKEN")
    assert spec.env_names("endpoint") == ("CHATCORE_AZURE_ENDPOINT", "AZURE_OPENAI_ENDPOINT")
    assert spec.env_names("api_version") == ("CHATCORE_AZURE_API_VERSION", "OPENAI_API_VERSION")
    options = spec.all_options()
    assert options["api_key"].secret
    assert options["ad_token"].secret
    assert options["api_version"].default == "2024-10-21"
