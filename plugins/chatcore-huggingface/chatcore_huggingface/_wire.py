"""Translation between chatcore's types and the Hugging Face wire formats, with no I/O:
endpoint URLs, the chat body under TGI's parameter rules, TGI's native ``/generate`` body
and reply, the decoder of ``/generate_stream`` events, and the checks that reject what a
Hugging Face server would refuse, before anything is sent."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterable, Mapping
from typing import Any, Literal

import attrs

from chatcore.exceptions import ResponseDecodeError, StreamError, ValidationError
from chatcore.models import (
    ChatChunk,
    ChatRequest,
    ChatResponse,
    Choice,
    Message,
    TextPart,
    Usage,
)
from chatcore.provider import ModelInfo, SSEEvent, model_infos, stream_error_from_event

__all__ = [
    "Api",
    "Endpoints",
    "GenerateStreamDecoder",
    "build_prompt",
    "chat_body",
    "chat_response",
    "chat_stream_body",
    "endpoints",
    "generate_body",
    "generate_response",
    "models_from_payload",
    "unsupported_combinations",
]

Api = Literal["chat", "generate"]

PROVIDER = "huggingface"

#: TGI ``details.finish_reason`` -> OpenAI ``finish_reason``.
FINISH_REASONS: Mapping[str, str] = {
    "eos_token": "stop",
    "stop_sequence": "stop",
    "length": "length",
}

#: Chat completion ``object`` values accepted (older TGI says ``text_completion``).
_CHAT_OBJECTS = frozenset({"chat.completion", "text_completion"})

#: Request fields ``/generate`` has no equivalent for, with what to do instead.
_GENERATE_UNSUPPORTED: Mapping[str, str] = {
    "tools": "tools need api='chat'",
    "tool_choice": "tools need api='chat'",
    "parallel_tool_calls": "tools need api='chat'",
    "response_format": "use api='chat', or pass TGI's grammar as extra={'grammar': {...}}",
    "logprobs": "pass extra={'top_n_tokens': k} (token details are in the raw reply)",
    "top_logprobs": "pass extra={'top_n_tokens': k}",
    "logit_bias": "not supported by TGI",
    "presence_penalty": "use frequency_penalty, or extra={'repetition_penalty': ...}",
    "user": "not supported by TGI's /generate",
}


# --------------------------------------------------------------------------------------
# URLs


@attrs.frozen
class Endpoints:
    """The absolute URLs this provider calls, derived from ``base_url`` as
    ``huggingface_hub`` does: chat at ``{base}/chat/completions`` when the base ends in
    ``/v1`` (the router does), else at ``{base}/v1/chat/completions``; ``/generate`` at the
    server root (the base without a trailing ``/v1``)."""

    base_url: str
    chat: str
    models: str
    generate: str
    generate_stream: str


def endpoints(base_url: str) -> Endpoints:
    """The endpoints of ``base_url`` (see :class:`Endpoints`)."""
    base = base_url.rstrip("/")
    if base.endswith("/v1"):
        openai_base, root = base, base[: -len("/v1")]
    else:
        openai_base, root = base + "/v1", base
    return Endpoints(
        base_url=base,
        chat=f"{openai_base}/chat/completions",
        models=f"{openai_base}/models",
        generate=f"{root}/generate",
        generate_stream=f"{root}/generate_stream",
    )


# --------------------------------------------------------------------------------------
# Checks


def _top_p_problem(top_p: Any) -> tuple[str, str] | None:
    if isinstance(top_p, (int, float)) and not isinstance(top_p, bool) and top_p <= 0:
        return (
            "top_p",
            f"must be > 0 and < 1 on Hugging Face / TGI, got {top_p!r} "
            "(omit top_p, or use 1.0, for no nucleus filtering)",
        )
    return None


def unsupported_combinations(request: ChatRequest, api: Api = "chat") -> list[tuple[str, str]]:
    """Every ``(parameter, reason)`` a Hugging Face server would reject for ``request`` in
    ``api`` mode; empty when the request can be sent. The provider raises these as one
    :class:`~chatcore.exceptions.ValidationError` before anything is sent.

    Both modes: ``top_p <= 0`` (TGI requires ``0 < top_p < 1``; ``1.0`` is sent as "no
    nucleus filtering", i.e. omitted). Chat: ``response_format`` together with ``tools``
    (TGI: "Grammar and tools are mutually exclusive"). Generate: tools, ``response_format``,
    logprobs, ``logit_bias``, ``presence_penalty``, ``user``, ``n > 1``, non-text content
    and assistant tool calls have no ``/generate`` equivalent.
    """
    problems: list[tuple[str, str]] = []
    params = {**request.params(), **{k: v for k, v in request.extra.items() if v is not None}}
    top_p = _top_p_problem(params.get("top_p"))
    if top_p is not None:
        problems.append(top_p)
    if api == "chat":
        if params.get("response_format") is not None and params.get("tools"):
            problems.append(
                (
                    "response_format",
                    "cannot be combined with tools on Hugging Face / TGI "
                    "('Grammar and tools are mutually exclusive'); send one or the other",
                )
            )
        return problems
    for name, hint in _GENERATE_UNSUPPORTED.items():
        if getattr(request, name) is not None:
            problems.append((name, f"not available with api='generate': {hint}"))
    if request.n is not None and request.n > 1:
        problems.append(("n", "api='generate' returns one completion; n must be 1"))
    for i, message in enumerate(request.messages):
        if isinstance(message.content, tuple) and any(
            not isinstance(part, TextPart) for part in message.content
        ):
            problems.append(
                (
                    f"messages[{i}].content",
                    "api='generate' takes text only (no images, audio, files)",
                )
            )
        if message.tool_calls:
            problems.append((f"messages[{i}].tool_calls", "tool calls need api='chat'"))
    return problems


def _raise_if(problems: list[tuple[str, str]]) -> None:
    if problems:
        raise ValidationError(problems)


# --------------------------------------------------------------------------------------
# Chat


def _without_none(mapping: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in mapping.items() if v is not None}


def _tgi_sampling_rules(params: dict[str, Any]) -> None:
    """Apply TGI's rules in place: ``stop`` is always a list; ``top_p == 1`` (no nucleus
    filtering, which TGI rejects) is omitted."""
    stop = params.get("stop")
    if isinstance(stop, str):
        params["stop"] = [stop]
    elif isinstance(stop, tuple):
        params["stop"] = list(stop)
    top_p = params.get("top_p")
    if isinstance(top_p, (int, float)) and not isinstance(top_p, bool) and top_p >= 1:
        del params["top_p"]


def chat_body(request: ChatRequest) -> dict[str, Any]:
    """The ``POST /v1/chat/completions`` body: the OpenAI body, with TGI's rules applied
    and no ``null`` values; the model id (with any ``:provider`` / ``:fastest`` suffix) is
    sent as given. Raises :class:`ValidationError` for what TGI would reject."""
    _raise_if(unsupported_combinations(request, "chat"))
    body = _without_none(request.to_openai_dict())
    body["messages"] = [_without_none(m) for m in body["messages"]]
    _tgi_sampling_rules(body)
    return body


def chat_response(
    data: Any,
    request: ChatRequest,
    *,
    request_id: str | None,
    status_code: int | None = None,
    secrets: Iterable[str] = (),
) -> ChatResponse:
    """A :class:`ChatResponse` from a chat completion payload (``object`` may be
    ``chat.completion`` or, from older TGI, ``text_completion``). A missing or empty ``id``
    is filled from the request id, a missing ``model`` with the requested one; tool-call
    ``arguments`` sent as JSON objects (older TGI) become JSON text. Anything else raises
    :class:`ResponseDecodeError`."""
    secrets = tuple(secrets)

    def fail(why: str) -> ResponseDecodeError:
        return ResponseDecodeError(
            f"expected a chat completion, got {why}",
            provider=PROVIDER,
            model=request.model,
            status_code=status_code,
            request_id=request_id,
            body=data if isinstance(data, (Mapping, list, str)) else repr(data)[:500],
            secrets=secrets,
        )

    if not isinstance(data, Mapping):
        raise fail("an empty body" if data is None else f"a JSON {type(data).__name__}")
    if not isinstance(data.get("choices"), list):
        if "error" in data:
            raise fail(f"an error object: {str(data.get('error'))[:200]}")
        raise fail(f"an object without 'choices' (keys: {', '.join(sorted(map(str, data)))})")
    kind = data.get("object")
    if kind is not None and kind not in _CHAT_OBJECTS:
        raise fail(f"object {kind!r}")
    payload = dict(data)
    payload["object"] = "chat.completion"
    if not payload.get("id"):
        payload["id"] = request_id or _new_id("chatcmpl")
    if not payload.get("model"):
        payload["model"] = request.model
    payload["choices"] = [_fix_choice(c) for c in data["choices"]]
    try:
        return ChatResponse.from_dict(payload, provider=PROVIDER, request_id=request_id)
    except ResponseDecodeError as exc:
        # Re-raised without the cause: the core's error and the cattrs errors under it hold
        # the payload unredacted, and a server may echo the token back.
        raise fail(f"a payload that does not fit: {exc.message}") from None


def _fix_choice(choice: Any) -> Any:
    if not isinstance(choice, Mapping):
        return choice
    message = choice.get("message")
    if not isinstance(message, Mapping) or not isinstance(message.get("tool_calls"), list):
        return choice
    calls = []
    for call in message["tool_calls"]:
        if isinstance(call, Mapping) and isinstance(call.get("function"), Mapping):
            function = dict(call["function"])
            if not isinstance(function.get("arguments"), str):
                function["arguments"] = json.dumps(function.get("arguments") or {})
            call = {**call, "function": function}
        calls.append(call)
    return {**choice, "message": {**message, "tool_calls": calls}}


# --------------------------------------------------------------------------------------
# Generate


def build_prompt(messages: Iterable[Message]) -> str:
    """The ``/generate`` prompt: a lone user message is sent as its text; anything else
    becomes a plain transcript, one paragraph per message (``System: ...``,
    ``User: ...``, ``Assistant: ...``), ending with ``Assistant:`` for the model to
    continue (a final assistant message is continued as is). No chat template is applied:
    for instruction-tuned models use ``api="chat"``, or send one user message holding a
    prompt you formatted yourself."""
    msgs = list(messages)
    if len(msgs) == 1 and msgs[0].role == "user":
        return msgs[0].text
    lines = [f"{m.role.capitalize()}: {m.text}".rstrip() for m in msgs]
    if not msgs or msgs[-1].role != "assistant":
        lines.append("Assistant:")
    return "\n\n".join(lines)


def generate_body(request: ChatRequest) -> dict[str, Any]:
    """The ``POST /generate`` body ``{"inputs", "parameters"}``. Mapping:
    ``max_completion_tokens`` (or ``max_tokens``) -> ``max_new_tokens``; ``temperature``
    0 -> greedy (``do_sample: false``, no temperature), > 0 -> ``temperature`` and
    ``do_sample: true``; ``top_p`` under TGI's rules; ``stop`` as a list; ``seed``;
    ``frequency_penalty``; ``return_full_text: false`` and ``details: true``; ``extra``
    goes into ``parameters`` last (so it can override any of these)."""
    _raise_if(unsupported_combinations(request, "generate"))
    params: dict[str, Any] = {}
    max_new = (
        request.max_completion_tokens
        if request.max_completion_tokens is not None
        else request.max_tokens
    )
    if max_new is not None:
        params["max_new_tokens"] = max_new
    if request.temperature is not None:
        if request.temperature <= 0:
            params["do_sample"] = False
        else:
            params["temperature"] = request.temperature
            params["do_sample"] = True
    if request.top_p is not None:
        params["top_p"] = request.top_p
    if request.stop is not None:
        params["stop"] = request.stop
    if request.seed is not None:
        params["seed"] = request.seed
    if request.frequency_penalty is not None:
        params["frequency_penalty"] = request.frequency_penalty
    params["return_full_text"] = False
    params["details"] = True
    params.update(_without_none(request.extra))
    _tgi_sampling_rules(params)
    return {"inputs": build_prompt(request.messages), "parameters": params}


def _int_header(headers: Mapping[str, str], name: str) -> int | None:
    value = headers.get(name)
    if value is None:
        return None
    try:
        return int(value.strip())
    except ValueError:
        return None


def generate_response(
    data: Any,
    headers: Mapping[str, str],
    request: ChatRequest,
    *,
    request_id: str | None,
    status_code: int | None = None,
    secrets: Iterable[str] = (),
) -> ChatResponse:
    """A :class:`ChatResponse` with one assistant choice from a ``/generate`` reply
    (``{"generated_text", "details"}`` or the legacy ``[{"generated_text"}]``).
    ``finish_reason``: ``eos_token``/``stop_sequence`` -> ``stop``, ``length`` -> ``length``
    (``None`` without details). Usage: ``details.generated_tokens`` (or the
    ``x-generated-tokens`` header) and the ``x-prompt-tokens`` header."""
    item = data[0] if isinstance(data, list) and data else data
    if not isinstance(item, Mapping) or not isinstance(item.get("generated_text"), str):
        what = "an empty body" if data is None else f"{json.dumps(data)[:200]}"
        raise ResponseDecodeError(
            f"expected a text-generation reply with 'generated_text', got {what}",
            provider=PROVIDER,
            model=request.model,
            status_code=status_code,
            request_id=request_id,
            body=data if isinstance(data, (Mapping, list, str)) else repr(data)[:500],
            secrets=secrets,
        )
    details = item.get("details")
    details = details if isinstance(details, Mapping) else {}
    raw_reason = details.get("finish_reason")
    finish_reason = FINISH_REASONS.get(raw_reason) if isinstance(raw_reason, str) else None
    if finish_reason is None and isinstance(raw_reason, str):
        finish_reason = raw_reason
    generated = details.get("generated_tokens")
    completion = (
        generated
        if isinstance(generated, int) and not isinstance(generated, bool)
        else _int_header(headers, "x-generated-tokens")
    )
    prompt = _int_header(headers, "x-prompt-tokens")
    usage = None
    if completion is not None or prompt is not None:
        usage = Usage(
            prompt_tokens=prompt or 0,
            completion_tokens=completion or 0,
            total_tokens=(prompt or 0) + (completion or 0),
        )
    choice = Choice(
        index=0,
        message=Message(role="assistant", content=item["generated_text"]),
        finish_reason=finish_reason,
    )
    return ChatResponse(
        id=request_id or _new_id("gen"),
        model=request.model,
        choices=(choice,),
        created=int(time.time()),
        usage=usage,
        provider=PROVIDER,
        request_id=request_id,
    )


# --------------------------------------------------------------------------------------
# Models


def models_from_payload(
    data: Any, *, status_code: int | None = None, secrets: Iterable[str] = ()
) -> list[ModelInfo]:
    """Model records from ``GET /v1/models``: the router's OpenAI list
    ``{"object": "list", "data": [...]}``, or TGI's single model object."""
    if isinstance(data, Mapping) and isinstance(data.get("data"), list):
        items: list[Any] = data["data"]
    elif isinstance(data, Mapping) and isinstance(data.get("id"), str):
        items = [data]
    elif isinstance(data, list):
        items = data
    else:
        raise ResponseDecodeError(
            "expected a model list from GET /models",
            provider=PROVIDER,
            status_code=status_code,
            body=data if isinstance(data, (Mapping, list, str)) else repr(data)[:500],
            secrets=secrets,
        )
    return model_infos(PROVIDER, items)


def _new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


# --------------------------------------------------------------------------------------
# Streams


def chat_stream_body(request: ChatRequest) -> dict[str, Any]:
    """The streaming ``POST /v1/chat/completions`` body: :func:`chat_body` with
    ``"stream": true`` and, unless the request sets its own ``stream_options``,
    ``{"include_usage": true}`` so that the last chunk carries the usage."""
    body = chat_body(request)
    body["stream"] = True
    body.setdefault("stream_options", {"include_usage": True})
    return body


class GenerateStreamDecoder:
    """Decodes TGI's ``/generate_stream`` token events into chat chunks, one event at a
    time, with no I/O (a :class:`~chatcore.provider.StreamDecoder`).

    Each event with a non-special token gives one content delta (the first chunk also says
    ``role: assistant``, even when its token is special); the final event, the one with
    ``generated_text`` set, gives one more chunk with the finish reason (``eos_token`` and
    ``stop_sequence`` -> ``stop``, ``length`` stays) and the usage (``details.input_length``
    and ``details.generated_tokens``), and sets :attr:`done`. TGI sends no ``[DONE]``:
    :meth:`end` (EOF before the final event) raises :class:`StreamError`, as does an event
    that is not JSON; an in-band ``{"error", "error_type"}`` event raises the
    :class:`StreamError` :func:`~chatcore.provider.stream_error_from_event` makes of it.
    Every error carries the text received so far as ``partial_text``.

    ``request_id`` (the answer's, from its head) is each chunk's ``request_id`` and their
    ``id``; without one, the chunks share a generated ``gen-...`` id."""

    def __init__(
        self,
        model: str,
        *,
        request_id: str | None = None,
        secrets: Iterable[str] = (),
        created: int | None = None,
    ) -> None:
        self.model = model
        self.request_id = request_id
        self.secrets = tuple(secrets)
        self.created = int(time.time()) if created is None else created
        self.done = False
        self._id = ""
        self._text: list[str] = []
        self._started = False

    @property
    def partial_text(self) -> str:
        """The text decoded so far."""
        return "".join(self._text)

    def _error(self, message: str) -> StreamError:
        return StreamError(
            message,
            provider=PROVIDER,
            model=self.model,
            partial_text=self.partial_text,
            secrets=self.secrets,
        )

    def _chunk(self, delta: Mapping[str, Any], finish_reason: str | None) -> ChatChunk:
        return ChatChunk(
            id=self._id,
            model=self.model,
            created=self.created,
            choices=({"index": 0, "delta": dict(delta), "finish_reason": finish_reason},),
            provider=PROVIDER,
            request_id=self.request_id,
        )

    def feed(self, event: SSEEvent) -> tuple[ChatChunk, ...]:
        """The chunks one ``/generate_stream`` event makes: none, one (a token), or two (the
        last token and the finish)."""
        if self.done:
            return ()
        try:
            payload = json.loads(event.data)
        except ValueError as exc:
            raise self._error(
                f"a /generate_stream event is not JSON: {event.data[:200]!r}"
            ) from exc
        if not isinstance(payload, Mapping):
            return ()
        if payload.get("error") is not None:
            raise stream_error_from_event(
                payload,
                provider=PROVIDER,
                model=self.model,
                partial_text=self.partial_text,
                secrets=self.secrets,
            )
        if not self._id:
            self._id = self.request_id or _new_id("gen")
        chunks: list[ChatChunk] = []
        token = payload.get("token")
        piece = ""
        if isinstance(token, Mapping) and not token.get("special"):
            value = token.get("text")
            piece = value if isinstance(value, str) else ""
        if piece or not self._started:
            delta: dict[str, Any] = {"content": piece}
            if not self._started:
                delta["role"] = "assistant"
                self._started = True
            self._text.append(piece)
            chunks.append(self._chunk(delta, None))
        if payload.get("generated_text") is not None:
            chunks.append(self._finish(payload.get("details")))
            self.done = True
        return tuple(chunks)

    def _finish(self, details: Any) -> ChatChunk:
        details = details if isinstance(details, Mapping) else {}
        raw = details.get("finish_reason")
        reason = FINISH_REASONS.get(raw, raw) if isinstance(raw, str) else "stop"
        generated = _count(details.get("generated_tokens"))
        prompt = _count(details.get("input_length"))
        usage = None
        if generated is not None or prompt is not None:
            g, p = generated or 0, prompt or 0
            usage = Usage(prompt_tokens=p, completion_tokens=g, total_tokens=p + g)
        return attrs.evolve(self._chunk({}, reason), usage=usage)

    def end(self) -> tuple[ChatChunk, ...]:
        """EOF: after the final event, nothing; before it, a :class:`StreamError`."""
        if self.done:
            return ()
        raise self._error(
            "the /generate_stream stream ended before its final event (connection cut?)"
        )


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
