"""The ``huggingface`` provider: one attempt per call to the HF router, a dedicated
Inference Endpoint or a TGI server, through the core's transport (which maps every HTTP
failure, including HF's 503 "model is loading", to a typed chatcore error)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import attrs

from chatcore.exceptions import request_id_from
from chatcore.models import ChatChunk, ChatRequest, ChatResponse
from chatcore.provider import (
    HttpResult,
    ModelInfo,
    Provider,
    ProviderConfig,
    drain,
    stream_chat_completions,
)
from chatcore_huggingface._spec import DEFAULT_BASE_URL
from chatcore_huggingface._wire import (
    Api,
    chat_body,
    chat_response,
    endpoints,
    generate_body,
    generate_response,
    generate_stream_chunks,
    models_from_payload,
)

__all__ = ["HuggingFaceProvider"]


def _request_id(result: HttpResult) -> str | None:
    return result.request_id


def _with_headers(response: ChatResponse, result: HttpResult) -> ChatResponse:
    """Attach the answer's headers (the core's rate limiter reads ``x-ratelimit-*``)."""
    return attrs.evolve(response, headers=result.headers)


class HuggingFaceProvider(Provider):
    """Chat through ``/v1/chat/completions`` (``api="chat"``) or TGI's native ``/generate``
    (``api="generate"``); models through ``/v1/models``. Never retries or sleeps."""

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
        self.transport = self.make_transport(base_url=self.endpoints.base_url, headers=headers)

    @property
    def base_url(self) -> str:
        """The resolved base URL (never contains the token)."""
        return self.endpoints.base_url

    def chat(self, request: ChatRequest) -> ChatResponse:
        """One chat attempt; invalid combinations raise ``ValidationError`` unsent."""
        transport = self.transport
        assert transport is not None
        if self.api == "generate":
            body = generate_body(request)
            result = transport.request(
                "POST", self.endpoints.generate, json_body=body, model=request.model
            )
            response = generate_response(
                result.data,
                result.headers,
                request,
                request_id=_request_id(result),
                status_code=result.status_code,
                secrets=transport.secrets,
            )
            return _with_headers(response, result)
        body = chat_body(request)
        result = transport.request("POST", self.endpoints.chat, json_body=body, model=request.model)
        response = chat_response(
            result.data,
            request,
            request_id=_request_id(result),
            status_code=result.status_code,
            secrets=transport.secrets,
        )
        return _with_headers(response, result)

    def stream(self, request: ChatRequest) -> Iterator[ChatChunk]:
        """One streaming attempt: OpenAI-style SSE from the chat route (usage asked for), or
        TGI's ``/generate_stream`` token events with ``api="generate"``."""
        transport = self.transport
        assert transport is not None
        if self.api == "generate":
            body = generate_body(request)
            opened: dict[str, Any] = {}

            def remember(response: Any) -> None:
                opened["headers"] = response.headers

            events = transport.stream_events(
                "POST",
                self.endpoints.generate_stream,
                json_body=body,
                model=request.model,
                on_open=remember,
            )
            try:
                first = True
                for chunk in generate_stream_chunks(
                    events,
                    request,
                    request_id=lambda: request_id_from(opened.get("headers") or {}),
                    secrets=transport.secrets,
                ):
                    if first:
                        chunk = attrs.evolve(chunk, headers=opened.get("headers"))
                        first = False
                    yield chunk
                drain(events)
            finally:
                events.close()
            return
        body = chat_body(request)
        body["stream"] = True
        body.setdefault("stream_options", {"include_usage": True})
        yield from stream_chat_completions(
            transport, self.endpoints.chat, body, provider=self.name, model=request.model
        )

    def list_models(self) -> list[ModelInfo]:
        """The models the router lists, or the model a TGI server serves."""
        transport = self.transport
        assert transport is not None
        result = transport.request("GET", self.endpoints.models)
        return models_from_payload(
            result.data, status_code=result.status_code, secrets=transport.secrets
        )
