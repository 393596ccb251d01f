"""The ``huggingface`` provider: it translates, the core sends. Each request becomes an
:class:`~chatcore.provider.HttpCall` for the HF router, a dedicated Inference Endpoint or a
TGI server, and each answer a response, chunks or a typed error; the core's transports
(requests for ``Client``, aiohttp for ``AsyncClient``) do the I/O and map every HTTP
failure, including TGI's ``{"error", "error_type"}`` bodies and HF's 503 "model is
loading" with ``estimated_time``, to a typed chatcore error."""

from __future__ import annotations

import attrs

from chatcore.models import ChatRequest, ChatResponse
from chatcore.provider import (
    HttpCall,
    HttpResult,
    ModelInfo,
    OpenAIStreamDecoder,
    Provider,
    ProviderConfig,
    StreamDecoder,
)
from chatcore_huggingface._spec import DEFAULT_BASE_URL
from chatcore_huggingface._wire import (
    Api,
    GenerateStreamDecoder,
    chat_body,
    chat_response,
    chat_stream_body,
    endpoints,
    generate_body,
    generate_response,
    models_from_payload,
)

__all__ = ["HuggingFaceProvider"]


class HuggingFaceProvider(Provider):
    """Chat through ``/v1/chat/completions`` (``api="chat"``) or TGI's native ``/generate``
    and ``/generate_stream`` (``api="generate"``); models through ``/v1/models``. Performs
    no I/O, never retries or sleeps: the base class's ``chat`` / ``stream`` /
    ``list_models`` send the calls made here through the core's transport."""

    def __init__(self, config: ProviderConfig) -> None:
        super().__init__(config)
        self.endpoints = endpoints(str(config.get("base_url") or DEFAULT_BASE_URL))
        api = config.get("api") or "chat"
        self.api: Api = "generate" if api == "generate" else "chat"
        headers: dict[str, str] = {}
        token = config.get("api_key")
        if token:
            headers["Authorization"] = f"Bearer {token}"
        bill_to = config.get("bill_to")
        if bill_to:
            headers["X-HF-Bill-To"] = str(bill_to)
        if config.get("wait_for_model"):
            headers["x-wait-for-model"] = "true"
        self.set_target(self.endpoints.base_url, headers=headers)

    # --- chat ---------------------------------------------------------------------------

    def prepare_chat(self, request: ChatRequest) -> HttpCall:
        """``POST /v1/chat/completions``, or ``POST /generate`` with ``api="generate"``;
        what the server would refuse raises ``ValidationError`` here, unsent."""
        if self.api == "generate":
            return HttpCall("POST", self.endpoints.generate, json=generate_body(request))
        return HttpCall("POST", self.endpoints.chat, json=chat_body(request))

    def parse_chat(self, request: ChatRequest, result: HttpResult) -> ChatResponse:
        """The response of a 2xx answer, with the answer's headers (the core's rate limiter
        reads ``x-ratelimit-*``); ``ResponseDecodeError`` for a body that is not one."""
        if self.api == "generate":
            response = generate_response(
                result.data,
                result.headers,
                request,
                request_id=result.request_id,
                status_code=result.status_code,
                secrets=self.config.secrets,
            )
        else:
            response = chat_response(
                result.data,
                request,
                request_id=result.request_id,
                status_code=result.status_code,
                secrets=self.config.secrets,
            )
        return attrs.evolve(response, headers=result.headers)

    # --- streams ------------------------------------------------------------------------

    def prepare_stream(self, request: ChatRequest) -> HttpCall:
        """The OpenAI-style stream of the chat route (usage asked for unless the request
        sets ``stream_options``), or TGI's ``POST /generate_stream`` with
        ``api="generate"``."""
        if self.api == "generate":
            return HttpCall(
                "POST", self.endpoints.generate_stream, json=generate_body(request), stream=True
            )
        return HttpCall("POST", self.endpoints.chat, json=chat_stream_body(request), stream=True)

    def stream_decoder(self, request: ChatRequest, result: HttpResult) -> StreamDecoder:
        """A :class:`GenerateStreamDecoder` for ``/generate_stream`` (its chunks carry the
        answer's request id), else the core's OpenAI decoder (``[DONE]`` required)."""
        if self.api == "generate":
            return GenerateStreamDecoder(
                request.model, request_id=result.request_id, secrets=self.config.secrets
            )
        return OpenAIStreamDecoder(
            provider=self.name, model=request.model, secrets=self.config.secrets
        )

    # --- models -------------------------------------------------------------------------

    def prepare_models(self) -> HttpCall:
        """``GET /v1/models`` (the router's list, or the one model a TGI server serves)."""
        return HttpCall("GET", self.endpoints.models)

    def parse_models(self, result: HttpResult) -> list[ModelInfo]:
        """The models a 2xx model-list answer names."""
        return models_from_payload(
            result.data, status_code=result.status_code, secrets=self.config.secrets
        )
