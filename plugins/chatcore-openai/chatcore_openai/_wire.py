"""The OpenAI Chat Completions wire format, shared by the ``openai`` and ``azure`` providers:
the request body the official API accepts, the checks on what comes back, and the provider
base class that translates (a request into an :class:`~chatcore.provider.HttpCall`, an answer
into a response, chunks or a typed error) and leaves every byte of I/O to the core."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import attrs

from chatcore.exceptions import ConfigurationError, ResponseDecodeError, ValidationError
from chatcore.models import ChatRequest, ChatResponse
from chatcore.provider import (
    HttpCall,
    HttpResult,
    ModelInfo,
    OpenAIStreamDecoder,
    Option,
    Provider,
    ProviderConfig,
    ProviderSpec,
)
from chatcore.provider import model_infos as _model_infos

#: The distribution name, used in the User-Agent when the core could not tell it.
DISTRIBUTION = "chatcore-openai"

#: The keys each request message role accepts (``ChatCompletionRequest*Message`` in the
#: spec); the real API rejects any other key with 400.
MESSAGE_KEYS: Mapping[str, frozenset[str]] = {
    "developer": frozenset({"role", "content", "name"}),
    "system": frozenset({"role", "content", "name"}),
    "user": frozenset({"role", "content", "name"}),
    "assistant": frozenset(
        {"role", "content", "refusal", "name", "audio", "tool_calls", "function_call"}
    ),
    "tool": frozenset({"role", "content", "tool_call_id"}),
    "function": frozenset({"role", "content", "name"}),
}

#: Parameters of text-generation-inference's native API that no OpenAI-style chat endpoint
#: accepts (OpenAI answers 400 "Unrecognized request argument"), with what to use instead.
TGI_ONLY_PARAMS: Mapping[str, str] = {
    "max_new_tokens": "use max_completion_tokens (or max_tokens)",
    "stop_sequences": "use stop",
    "details": "usage is always returned; use logprobs for token details",
    "decoder_input_details": "not available in Chat Completions",
    "return_full_text": "Chat Completions never echoes the prompt",
    "watermark": "not available in Chat Completions",
    "do_sample": "use temperature (0 for greedy decoding)",
    "top_n_tokens": "use logprobs=True with top_logprobs",
    "adapter_id": "select the model with the model name",
    "inputs": "use messages",
    "parameters": "pass the parameters directly",
}

#: Keys that ``extra`` may not override: they come from the request itself.
_RESERVED_EXTRA = ("model", "messages")
#: Sent only together with ``tools`` (the API rejects them otherwise).
_TOOL_ONLY = ("tool_choice", "parallel_tool_calls")

_UNSAFE_HEADER_CHARS = re.compile(r"[\x00-\x1f\x7f]")


# --------------------------------------------------------------------------------------
# Requests


def chat_body(request: ChatRequest, *, model: str | None, stream: bool = False) -> dict[str, Any]:
    """The Chat Completions body for ``request``, as the official API accepts it.

    Nothing unset is sent and no ``null`` appears; ``stream_options`` goes only with
    ``stream``, ``tool_choice`` / ``parallel_tool_calls`` only with ``tools``; message keys a
    role does not accept are left out. ``model=None`` omits the model (Azure deployments).
    Keys in ``extra`` that override the request or belong to TGI's native API raise
    :class:`~chatcore.exceptions.ValidationError` before anything is sent."""
    problems: list[tuple[str, str]] = []
    for key in request.extra:
        if key in _RESERVED_EXTRA:
            problems.append(
                (f"extra.{key}", f"{key!r} comes from the request; it cannot be set in extra")
            )
        elif key in TGI_ONLY_PARAMS:
            problems.append(
                (
                    f"extra.{key}",
                    f"{key!r} is a text-generation-inference parameter that OpenAI-compatible "
                    f"APIs reject; {TGI_ONLY_PARAMS[key]}",
                )
            )
    if problems:
        raise ValidationError(problems)

    body = request.to_openai_dict()
    body.pop("stream", None)
    if stream:
        body["stream"] = True
    else:
        body.pop("stream_options", None)
    if not body.get("tools"):
        body.pop("tools", None)
        for key in _TOOL_ONLY:
            body.pop(key, None)
    body["messages"] = [wire_message(m) for m in body["messages"]]
    if model is None:
        body.pop("model", None)
    else:
        body["model"] = model
    return {k: v for k, v in body.items() if v is not None}


def wire_message(message: Mapping[str, Any]) -> dict[str, Any]:
    """One message in the shape its role accepts: no ``null`` values (a deprecated
    ``function`` message keeps its required ``content``), no keys the role rejects, and an
    assistant ``audio`` reduced to the ``{"id"}`` the API takes back."""
    role = message.get("role")
    allowed = MESSAGE_KEYS.get(role) if isinstance(role, str) else None
    out: dict[str, Any] = {}
    for key, value in message.items():
        if allowed is not None and key not in allowed:
            continue
        if value is None:
            if role == "function" and key == "content":
                out[key] = None
            continue
        if key == "audio" and isinstance(value, Mapping):
            if value.get("id") is None:
                continue
            value = {"id": value["id"]}
        out[key] = _drop_nones(value)
    return out


def _drop_nones(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _drop_nones(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_nones(v) for v in value]
    return value


# --------------------------------------------------------------------------------------
# Responses


def _kind(value: Any) -> str:
    if value is None:
        return "an empty body"
    if isinstance(value, list):
        return "a JSON array"
    if isinstance(value, Mapping):
        return "a JSON object"
    return f"a JSON {type(value).__name__}"


def decode_chat(
    result: HttpResult, *, provider: str, model: str, secrets: tuple[str, ...]
) -> ChatResponse:
    """Turn a 2xx answer into a :class:`ChatResponse`, or raise
    :class:`~chatcore.exceptions.ResponseDecodeError` when it is not a chat.completion."""
    data = result.data

    def fail(message: str) -> ResponseDecodeError:
        return ResponseDecodeError(
            message,
            provider=provider,
            model=model,
            status_code=result.status_code,
            request_id=result.request_id,
            body=data if isinstance(data, (Mapping, list, str)) else None,
            secrets=secrets,
        )

    if not isinstance(data, Mapping):
        raise fail(f"expected a chat.completion object, got {_kind(data)}")
    if "choices" not in data and data.get("error") is not None:
        err = data["error"]
        detail = err.get("message") if isinstance(err, Mapping) else err
        raise fail(f"the server answered {result.status_code} with an error body: {detail}")
    if not isinstance(data.get("choices"), list):
        keys = ", ".join(sorted(str(k) for k in data)[:10]) or "none"
        raise fail(f"expected a chat.completion object with a 'choices' list (keys: {keys})")
    try:
        return ChatResponse.from_dict(
            data, provider=provider, request_id=result.request_id, headers=result.headers
        )
    except ResponseDecodeError as exc:
        raise fail(exc.message) from (exc.__cause__ or exc)


def decode_models(
    result: HttpResult, *, provider: str, secrets: tuple[str, ...]
) -> list[ModelInfo]:
    """Turn a ``/models`` list answer into :class:`ModelInfo` records."""
    data = result.data
    items = data.get("data") if isinstance(data, Mapping) else None
    if not isinstance(items, list):
        raise ResponseDecodeError(
            f"expected a model list object with a 'data' array, got {_kind(data)}",
            provider=provider,
            status_code=result.status_code,
            request_id=result.request_id,
            body=data if isinstance(data, (Mapping, list, str)) else None,
            secrets=secrets,
        )
    return _model_infos(provider, items)


# --------------------------------------------------------------------------------------
# Configuration helpers


def option(**fields: Any) -> Option:
    """An :class:`Option`. (Built through ``**fields`` because the core's ``converter=tuple``
    on ``Option.env`` gives mypy an unsolvable ``Iterable[_T_co]`` parameter type.)"""
    return Option(**fields)


def provider_spec(**fields: Any) -> ProviderSpec:
    """A :class:`ProviderSpec` (``**fields`` for the same reason as :func:`option`)."""
    return ProviderSpec(**fields)


def with_plugin_version(config: ProviderConfig) -> ProviderConfig:
    """``config`` with the spec's plugin name and version filled in when the core could not
    tell them (a plugin registered in code rather than through its distribution), so the
    User-Agent always names ``chatcore-openai/<version>``."""
    spec = config.spec
    if spec.version:
        return config
    from chatcore_openai import __version__

    return attrs.evolve(config, spec=attrs.evolve(spec, plugin=DISTRIBUTION, version=__version__))


def header_value(config: ProviderConfig, name: str) -> str | None:
    """Option ``name`` as an HTTP header value, or ``None`` when unset; a value with a line
    break or other control character (often a trailing newline from a file) is a
    :class:`ConfigurationError` that never shows the value."""
    value = config.get(name)
    if value is None or value == "":
        return None
    text = str(value)
    if _UNSAFE_HEADER_CHARS.search(text) or text != text.strip():
        source = config.sources.get(name, "default")
        raise ConfigurationError(
            f"{config.spec.name}: option {name!r} (from {source}) has leading or trailing "
            "whitespace or a control character (a trailing newline?); remove it"
        )
    return text


def http_url(config: ProviderConfig, name: str, value: str) -> str:
    """``value`` without trailing slashes, or a :class:`ConfigurationError` when it is not an
    ``http(s)://`` URL."""
    if not value.startswith(("http://", "https://")) or len(value) <= len("https://"):
        source = config.sources.get(name, "default")
        raise ConfigurationError(
            f"{config.spec.name}: option {name!r} (from {source}) must be an http:// or "
            f"https:// URL, got {value!r}"
        )
    return value.rstrip("/")


# --------------------------------------------------------------------------------------
# The provider base


class ChatCompletionsProvider(Provider):
    """A provider speaking Chat Completions. It only translates: a request becomes an
    :class:`HttpCall`, an answer a :class:`ChatResponse`, a stream's events chunks (through
    an :class:`OpenAIStreamDecoder`). The core sends each call (one attempt, no retries, no
    sleeps) with the target that subclasses set in ``__init__`` (:meth:`set_target`), so
    the same provider serves the sync and the async client. Subclasses say where each
    request goes (:meth:`chat_route`, :meth:`models_path`) and which header names an
    answer (:meth:`request_id`)."""

    def __init__(self, config: ProviderConfig) -> None:
        super().__init__(with_plugin_version(config))

    # --- what subclasses adapt -----------------------------------------------------------

    def chat_route(self, request: ChatRequest) -> tuple[str, str | None]:
        """The path to POST ``request`` to, and the ``model`` to put in the body (``None``
        leaves it out)."""
        return "/chat/completions", request.model

    def models_path(self) -> str:
        """The path of the model listing."""
        return "/models"

    def request_id(self, result: HttpResult) -> str | None:
        """The id the provider gave this answer (``x-request-id``)."""
        return result.request_id

    # --- the translate-only contract ----------------------------------------------------

    def prepare_chat(self, request: ChatRequest) -> HttpCall:
        """``POST`` of the Chat Completions body to :meth:`chat_route`; what the API would
        refuse raises :class:`~chatcore.exceptions.ValidationError` (see :func:`chat_body`)."""
        path, body_model = self.chat_route(request)
        return HttpCall("POST", path, json=chat_body(request, model=body_model))

    def parse_chat(self, request: ChatRequest, result: HttpResult) -> ChatResponse:
        """The :class:`ChatResponse` of a 2xx answer, its ``request_id`` from
        :meth:`request_id`; :class:`~chatcore.exceptions.ResponseDecodeError` when the
        answer is not a ``chat.completion``."""
        request_id = self.request_id(result)
        if request_id != result.request_id:
            result = attrs.evolve(result, request_id=request_id)
        return decode_chat(
            result, provider=self.name, model=request.model, secrets=self.config.secrets
        )

    def prepare_stream(self, request: ChatRequest) -> HttpCall:
        """The streaming ``POST``: the chat body plus ``"stream": true``. Usage is asked
        for (``stream_options.include_usage``) unless the caller set ``stream_options``."""
        path, body_model = self.chat_route(request)
        body = chat_body(request, model=body_model, stream=True)
        body.setdefault("stream_options", {"include_usage": True})
        return HttpCall("POST", path, json=body, stream=True)

    def stream_decoder(self, request: ChatRequest, result: HttpResult) -> OpenAIStreamDecoder:
        """A fresh decoder of one ``chat.completion.chunk`` stream: it ends at ``[DONE]``,
        and raises :class:`~chatcore.exceptions.StreamError` (secrets masked) on an in-band
        error, an event that is not JSON, or an end without ``[DONE]``."""
        return OpenAIStreamDecoder(
            provider=self.name, model=request.model, secrets=self.config.secrets
        )

    def prepare_models(self) -> HttpCall:
        """``GET`` of :meth:`models_path`."""
        return HttpCall("GET", self.models_path())

    def parse_models(self, result: HttpResult) -> list[ModelInfo]:
        """The models a 2xx ``/models`` answer lists (see :func:`decode_models`)."""
        return decode_models(result, provider=self.name, secrets=self.config.secrets)
