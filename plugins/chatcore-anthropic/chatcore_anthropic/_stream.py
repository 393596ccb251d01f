"""The decoder of a Messages API event stream: Anthropic's events in, chatcore's
``chat.completion.chunk``-shaped :class:`~chatcore.models.ChatChunk` deltas out, one event at
a time and with no I/O (a :class:`~chatcore.provider.StreamDecoder`)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from chatcore._redact import mask_secrets, usable_secrets
from chatcore.exceptions import StreamError
from chatcore.models import ChatChunk
from chatcore.provider import SSEEvent
from chatcore_anthropic._answer import finish_reason, usage_from

__all__ = ["MessagesStreamDecoder"]

#: In-band error types worth another attempt (as their HTTP forms, 529 and 500, are).
_RETRYABLE = frozenset({"overloaded_error", "api_error"})


class MessagesStreamDecoder:
    """Decodes ``message_start`` ... ``message_stop`` into chunks of one choice (index 0).

    * ``text_delta`` -> ``delta.content``;
    * a ``tool_use`` block -> ``delta.tool_calls``: its start gives ``id`` and ``name``, each
      ``input_json_delta.partial_json`` a piece of ``arguments`` (``"{}"`` for a call whose
      input streamed nothing), keyed by the call's ``index`` among the tool calls;
    * ``thinking_delta`` -> ``delta.reasoning_content``; when a ``thinking`` block ends
      (its signature arrived in a ``signature_delta``) or a ``redacted_thinking`` block
      does, ``delta.reasoning_details`` carries the whole block, as it must be sent back;
    * ``message_delta`` -> the chunk with ``finish_reason`` (mapped as a non-streamed answer
      is) and the usage: ``message_start``'s, updated by the cumulative counts;
    * ``message_stop`` ends the stream (:attr:`done`); ``ping`` and event types this
      decoder does not know are skipped.

    The first chunk says ``role: assistant``; it comes with the first content block's start
    (``message_start`` makes none, so an in-band ``error`` right after it is still retried
    by the core). An ``error`` event
    raises :class:`StreamError` (``should_retry`` for ``overloaded_error`` and
    ``api_error``), as does an event that is not JSON, and the end of the events before
    ``message_stop`` (:meth:`end`). Every error carries the text received so far.

    What a chunk carries from an earlier event (the message's id and model, a finished
    thinking block's text and signature) is masked here, with ``secrets``: the core masks
    each event's chunks when that event's own text holds a secret."""

    def __init__(
        self,
        *,
        provider: str,
        model: str,
        created: int,
        secrets: Iterable[str] = (),
    ) -> None:
        self.provider = provider
        self.model = model
        self.created = created
        self.secrets = tuple(secrets)
        self._known = usable_secrets(self.secrets)
        self.done = False
        self._id = ""
        self._usage: dict[str, Any] = {}
        self._started = False
        self._text: list[str] = []
        # content block index -> what is known of the block
        self._blocks: dict[int, dict[str, Any]] = {}
        self._tool_calls = 0

    def _mask(self, value: Any) -> Any:
        """``value`` with the secrets masked (for what is carried across events)."""
        return mask_secrets(value, self._known) if self._known.values else value

    @property
    def partial_text(self) -> str:
        """The text decoded so far."""
        return "".join(self._text)

    def _error(self, message: str, **fields: Any) -> StreamError:
        return StreamError(
            message,
            provider=self.provider,
            model=self.model,
            partial_text=self.partial_text,
            secrets=self.secrets,
            **fields,
        )

    def _chunk(
        self, delta: dict[str, Any], finish: str | None = None, usage: Any = None
    ) -> ChatChunk:
        if not self._started:
            delta = {"role": "assistant", **delta}
            self._started = True
        return ChatChunk(
            id=self._id,
            model=self.model,
            created=self.created,
            choices=({"index": 0, "delta": delta, "finish_reason": finish},),
            usage=usage,
            provider=self.provider,
        )

    def feed(self, event: SSEEvent) -> tuple[ChatChunk, ...]:
        """The chunks one event makes (none or one)."""
        if self.done:
            return ()
        try:
            payload = json.loads(event.data)
        except ValueError as exc:
            raise self._error(f"a stream event is not JSON: {event.data[:200]!r}") from exc
        if not isinstance(payload, Mapping):
            return ()
        kind = payload.get("type") if isinstance(payload.get("type"), str) else event.event
        if kind == "error":
            raise self._in_band_error(payload)
        if kind == "message_start":
            message = payload.get("message")
            if isinstance(message, Mapping):
                if isinstance(message.get("id"), str):
                    self._id = self._mask(message["id"])
                if isinstance(message.get("model"), str) and message["model"]:
                    self.model = self._mask(message["model"])
                if isinstance(message.get("usage"), Mapping):
                    self._usage.update(message["usage"])
            return ()
        if kind == "content_block_start":
            return self._block_start(payload)
        if kind == "content_block_delta":
            return self._block_delta(payload)
        if kind == "content_block_stop":
            return self._block_stop(payload)
        if kind == "message_delta":
            delta = payload.get("delta")
            usage = payload.get("usage")
            if isinstance(usage, Mapping):
                self._usage.update({k: v for k, v in usage.items() if v is not None})
            reason = delta.get("stop_reason") if isinstance(delta, Mapping) else None
            return (self._chunk({}, finish_reason(reason), usage_from(self._usage)),)
        if kind == "message_stop":
            self.done = True
        return ()  # ping, and events added after this decoder was written

    def _in_band_error(self, payload: Mapping[str, Any]) -> StreamError:
        error = payload.get("error")
        info = error if isinstance(error, Mapping) else {}
        kind = info.get("type") if isinstance(info.get("type"), str) else None
        message = info.get("message") or error or payload
        return self._error(
            f"the provider sent an error in the stream: {message}",
            body=dict(payload),
            error_type=kind,
            should_retry=kind in _RETRYABLE,
        )

    def _block_start(self, payload: Mapping[str, Any]) -> tuple[ChatChunk, ...]:
        index, block = payload.get("index"), payload.get("content_block")
        if not isinstance(index, int) or not isinstance(block, Mapping):
            return ()
        kind = block.get("type")
        state: dict[str, Any] = {"type": kind}
        self._blocks[index] = state
        if kind == "text":  # the model started answering: a chunk, even an empty one
            text = block.get("text")
            text = text if isinstance(text, str) else ""
            self._text.append(text)
            return (self._chunk({"content": text}),)
        elif kind == "tool_use":
            state["call"] = self._tool_calls
            self._tool_calls += 1
            given = block.get("input")
            arguments = json.dumps(given, ensure_ascii=False) if given else ""
            state["has_input"] = bool(arguments)
            call = {
                "index": state["call"],
                "id": block.get("id") if isinstance(block.get("id"), str) else "",
                "type": "function",
                "function": {"name": block.get("name") or "", "arguments": arguments},
            }
            return (self._chunk({"tool_calls": [call]}),)
        elif kind == "thinking":
            state["thinking"] = []
            state["signature"] = block.get("signature") or ""
            thinking = block.get("thinking")
            thinking = thinking if isinstance(thinking, str) else ""
            state["thinking"].append(thinking)
            return (self._chunk({"reasoning_content": thinking}),)
        elif kind == "redacted_thinking":
            state["data"] = block.get("data")
        return ()

    def _block_delta(self, payload: Mapping[str, Any]) -> tuple[ChatChunk, ...]:
        index, delta = payload.get("index"), payload.get("delta")
        if not isinstance(delta, Mapping):
            return ()
        state = self._blocks.get(index) if isinstance(index, int) else None
        kind = delta.get("type")
        if kind == "text_delta" and isinstance(delta.get("text"), str):
            self._text.append(delta["text"])
            return (self._chunk({"content": delta["text"]}),)
        if kind == "input_json_delta" and state is not None and "call" in state:
            piece = delta.get("partial_json")
            if not isinstance(piece, str) or not piece:
                return ()
            state["has_input"] = True
            call = {"index": state["call"], "function": {"arguments": piece}}
            return (self._chunk({"tool_calls": [call]}),)
        if kind == "thinking_delta" and isinstance(delta.get("thinking"), str):
            if state is not None and "thinking" in state:
                state["thinking"].append(delta["thinking"])
            return (self._chunk({"reasoning_content": delta["thinking"]}),)
        if kind == "signature_delta" and state is not None and "signature" in state:
            state["signature"] += str(delta.get("signature") or "")
        return ()

    def _block_stop(self, payload: Mapping[str, Any]) -> tuple[ChatChunk, ...]:
        index = payload.get("index")
        state = self._blocks.get(index) if isinstance(index, int) else None
        if state is None:
            return ()
        kind = state["type"]
        if kind == "tool_use" and not state["has_input"]:
            call = {"index": state["call"], "function": {"arguments": "{}"}}
            return (self._chunk({"tool_calls": [call]}),)
        if kind == "thinking":
            block = {
                "type": "thinking",
                "thinking": "".join(state["thinking"]),
                "signature": state["signature"],
            }
            return (self._chunk({"reasoning_details": [self._mask(block)]}),)
        if kind == "redacted_thinking" and isinstance(state.get("data"), str):
            block = {"type": "redacted_thinking", "data": state["data"]}
            return (self._chunk({"reasoning_details": [self._mask(block)]}),)
        return ()

    def end(self) -> tuple[ChatChunk, ...]:
        """The events ran out: fine after ``message_stop``, else a :class:`StreamError`."""
        if self.done:
            return ()
        raise self._error(
            "the stream ended before its message_stop event (connection cut or server error)"
        )
