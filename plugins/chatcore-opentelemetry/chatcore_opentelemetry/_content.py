"""Prompts and completions in the conventions' message schemas (opt-in only), every
string passed through chatcore's redaction first."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from chatcore._redact import redact, redact_url
from chatcore.models import ChatResponse, Message

__all__ = ["input_messages", "output_messages"]


def _parts(message: Message, secrets: Iterable[str]) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    content = message.content
    if isinstance(content, str):
        if content:
            parts.append({"type": "text", "content": redact(content, secrets)})
    elif content:
        for part in content:
            parts.append(_part(part, secrets))
    if message.reasoning_content:
        parts.append({"type": "reasoning", "content": redact(message.reasoning_content, secrets)})
    if message.refusal:
        parts.append({"type": "refusal", "content": redact(message.refusal, secrets)})
    for call in message.tool_calls or ():
        parts.append(
            {
                "type": "tool_call",
                "id": redact(call.id, secrets),
                "name": redact(call.function.name, secrets),
                "arguments": redact(call.function.arguments, secrets),
            }
        )
    if message.role == "tool":
        # a tool's answer: the conventions' tool_call_response part
        text = "".join(p["content"] for p in parts if p.get("type") == "text")
        response: dict[str, Any] = {"type": "tool_call_response", "response": text}
        if message.tool_call_id:
            response["id"] = redact(message.tool_call_id, secrets)
        parts = [response]
    return parts


def _part(part: Any, secrets: Iterable[str]) -> dict[str, Any]:
    kind = getattr(part, "type", None)
    if kind == "text":
        return {"type": "text", "content": redact(part.text, secrets)}
    if kind == "refusal":
        return {"type": "refusal", "content": redact(part.refusal, secrets)}
    if kind == "image_url":
        url = part.image_url.url
        if url.startswith("data:"):  # inline bytes: a generic part naming their type
            out: dict[str, Any] = {"type": "image_data"}
            mime = url[5:].split(";", 1)[0].split(",", 1)[0]
            if mime:
                out["mime_type"] = redact(mime, secrets)
            return out
        return {"type": "uri", "modality": "image", "uri": redact_url(url, secrets)}
    if kind == "file" and getattr(part.file, "file_id", None):
        return {"type": "file", "modality": "document", "file_id": redact(part.file.file_id)}
    return {"type": str(kind or "unknown")}


def input_messages(messages: Iterable[Message], secrets: Iterable[str]) -> str:
    """``gen_ai.input.messages``: the chat history sent, as a JSON string."""
    out = []
    for message in messages:
        entry: dict[str, Any] = {"role": message.role, "parts": _parts(message, secrets)}
        if message.name:
            entry["name"] = redact(message.name, secrets)
        out.append(entry)
    return json.dumps(out, ensure_ascii=False)


def output_messages(response: ChatResponse, secrets: Iterable[str]) -> str:
    """``gen_ai.output.messages``: one message per choice, as a JSON string."""
    out = []
    for choice in response.choices:
        out.append(
            {
                "role": choice.message.role,
                "parts": _parts(choice.message, secrets),
                "finish_reason": choice.finish_reason or "",
            }
        )
    return json.dumps(out, ensure_ascii=False)
