"""Requests in the Anthropic Messages API's wire format, with no I/O: a
:class:`~chatcore.models.ChatRequest` as the body ``POST /v1/messages`` accepts. What the API
would answer 400 for raises one :class:`~chatcore.exceptions.ValidationError` listing every
problem, before anything is sent."""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any, TypeGuard

from chatcore.exceptions import ValidationError
from chatcore.models import (
    ChatRequest,
    FilePart,
    ImagePart,
    Message,
    RefusalPart,
    TextPart,
)
from chatcore.provider import sniff_image_type

__all__ = [
    "DEFAULT_MAX_TOKENS",
    "EXTRA_PARAMS",
    "MIN_THINKING_BUDGET",
    "TRANSLATED_EXTRA",
    "UNSUPPORTED_PARAMS",
    "messages_body",
    "sniff_image_type",
    "wire_messages",
]

Problems = list[tuple[str, str]]

#: ``max_tokens`` sent when the request gives none (the API requires it).
DEFAULT_MAX_TOKENS = 4096
#: The smallest ``thinking.budget_tokens`` the API accepts.
MIN_THINKING_BUDGET = 1024

#: Common parameters the Messages API has no equivalent for.
UNSUPPORTED_PARAMS: Mapping[str, str] = {
    "seed": "the Messages API has no seed",
    "presence_penalty": "the Messages API has no presence penalty",
    "frequency_penalty": "the Messages API has no frequency penalty",
    "logit_bias": "the Messages API has no logit bias",
    "logprobs": "the Messages API returns no log probabilities",
    "top_logprobs": "the Messages API returns no log probabilities",
}

#: Messages API parameters ``extra`` may hold: checked, then sent as given.
EXTRA_PARAMS = frozenset(
    {
        "cache_control",
        "container",
        "inference_geo",
        "metadata",
        "output_config",
        "service_tier",
        "stop_sequences",
        "system",
        "thinking",
        "tools",
        "top_k",
    }
)
#: Keys of ``extra`` that are translated rather than sent: ``betas`` (the ``anthropic-beta``
#: header of this call), ``reasoning_effort`` (``output_config.effort``) and
#: ``stream_options`` (ignored: a stream always carries its usage).
TRANSLATED_EXTRA = frozenset({"betas", "reasoning_effort", "stream_options"})

_EFFORTS = ("low", "medium", "high", "xhigh", "max")
_DATA_URL = re.compile(r"^data:([^;,]*)((?:;[^;,]*)*),(.*)$", re.DOTALL)
_CACHE_TTLS = ("5m", "1h")


# --------------------------------------------------------------------------------------
# Requests


def messages_body(
    request: ChatRequest,
    *,
    default_max_tokens: int = DEFAULT_MAX_TOKENS,
    stream: bool = False,
    sampling_params: bool = False,
) -> tuple[dict[str, Any], dict[str, str]]:
    """The ``POST /v1/messages`` body for ``request`` and the headers this call adds (an
    ``anthropic-beta`` from ``extra["betas"]``).

    Leading ``system`` / ``developer`` messages become ``system``; later ones are
    ``system``-role turns with a ``mid_conv_system`` block. Tool results are ``user``-role
    ``tool_result`` blocks, first in their turn; consecutive turns of one role are merged.
    Every problem the API would answer 400 for is gathered into one
    :class:`~chatcore.exceptions.ValidationError`, raised before anything is sent."""
    problems: Problems = []
    extra = dict(request.extra)
    _check_extra_keys(extra, problems)
    system, messages = wire_messages(request.messages, problems)
    body: dict[str, Any] = {"model": request.model}
    if "system" in extra:
        if system is not None:
            problems.append(
                (
                    "extra.system",
                    "the system prompt is given twice: as system messages and in extra",
                )
            )
        system = _checked_system(extra["system"], problems)
    thinking = _checked_thinking(extra.get("thinking"), problems)
    max_tokens = _max_tokens(request, thinking, default_max_tokens, problems)
    body["max_tokens"] = max_tokens
    if system is not None:
        body["system"] = system
    body["messages"] = messages
    _sampling(request, extra, thinking, body, problems, allowed=sampling_params)
    _tools(request, extra, thinking, body, problems)
    _output_config(request, extra, body, problems)
    _metadata(request, extra, body, problems)
    for key in ("service_tier", "container", "inference_geo", "cache_control"):
        if key in extra:
            _check_plain(key, extra[key], problems)
            body[key] = extra[key]
    if thinking is not None:
        body["thinking"] = thinking
    headers: dict[str, str] = {}
    betas = extra.get("betas")
    if betas is not None:
        names = [betas] if isinstance(betas, str) else betas
        if not isinstance(names, list) or not all(isinstance(b, str) and b for b in names):
            problems.append(("extra.betas", "expected a beta name or a list of them"))
        else:
            headers["anthropic-beta"] = ",".join(names)
    if problems:
        raise ValidationError(problems)
    if stream:
        body["stream"] = True
    return body, headers


def _check_extra_keys(extra: Mapping[str, Any], problems: Problems) -> None:
    allowed = ", ".join(sorted(EXTRA_PARAMS | TRANSLATED_EXTRA))
    for key in extra:
        if key not in EXTRA_PARAMS and key not in TRANSLATED_EXTRA:
            problems.append(
                (
                    f"extra.{key}",
                    f"not a Messages API parameter (the API refuses unknown keys); "
                    f"extra may hold: {allowed}",
                )
            )


def _check_plain(key: str, value: Any, problems: Problems) -> None:
    if key == "service_tier" and value not in ("auto", "standard_only"):
        problems.append(("extra.service_tier", "expected 'auto' or 'standard_only'"))
    elif key in ("container", "inference_geo") and not isinstance(value, str):
        problems.append((f"extra.{key}", "expected a string"))
    elif key == "cache_control":
        _check_cache_control(value, "extra.cache_control", problems)


def _check_cache_control(value: Any, path: str, problems: Problems) -> None:
    if (
        not isinstance(value, Mapping)
        or value.get("type") != "ephemeral"
        or not set(value) <= {"type", "ttl"}
        or value.get("ttl", "5m") not in _CACHE_TTLS
    ):
        problems.append((path, "expected {'type': 'ephemeral'} with an optional ttl '5m' or '1h'"))


def _checked_system(value: Any, problems: Problems) -> Any:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value:
        for i, block in enumerate(value):
            if not isinstance(block, Mapping) or block.get("type") != "text":
                problems.append((f"extra.system[{i}]", "expected a text block"))
            elif not isinstance(block.get("text"), str) or not block["text"].strip():
                problems.append((f"extra.system[{i}].text", "expected non-empty text"))
            elif "cache_control" in block:
                _check_cache_control(
                    block["cache_control"], f"extra.system[{i}].cache_control", problems
                )
        return [dict(b) for b in value if isinstance(b, Mapping)]
    problems.append(("extra.system", "expected a string or a non-empty list of text blocks"))
    return None


def _checked_thinking(value: Any, problems: Problems) -> dict[str, Any] | None:
    if value is None:
        return None
    kind = value.get("type") if isinstance(value, Mapping) else None
    if not isinstance(value, Mapping) or kind not in ("enabled", "adaptive", "disabled"):
        problems.append(
            (
                "extra.thinking",
                "expected {'type': 'enabled', 'budget_tokens': N}, {'type': 'adaptive'} or "
                "{'type': 'disabled'}",
            )
        )
        return None
    allowed = {"type", "budget_tokens", "display"} if kind == "enabled" else {"type", "display"}
    if kind == "disabled":
        allowed = {"type"}
    for key in value:
        if key not in allowed:
            problems.append((f"extra.thinking.{key}", f"not accepted with type {kind!r}"))
    if value.get("display") not in (None, "summarized", "omitted"):
        problems.append(("extra.thinking.display", "expected 'summarized' or 'omitted'"))
    if kind == "enabled":
        budget = value.get("budget_tokens")
        if not _is_int(budget) or budget < MIN_THINKING_BUDGET:
            problems.append(
                (
                    "extra.thinking.budget_tokens",
                    f"expected an integer >= {MIN_THINKING_BUDGET}, got {budget!r}",
                )
            )
    return dict(value)


def _thinking_on(thinking: Mapping[str, Any] | None) -> bool:
    return thinking is not None and thinking.get("type") in ("enabled", "adaptive")


def _max_tokens(
    request: ChatRequest,
    thinking: Mapping[str, Any] | None,
    default: int,
    problems: Problems,
) -> int:
    given = [v for v in (request.max_completion_tokens, request.max_tokens) if v is not None]
    if len(given) == 2 and given[0] != given[1]:
        problems.append(
            ("max_tokens", "max_tokens and max_completion_tokens differ; give only one")
        )
    budget = thinking.get("budget_tokens") if thinking and thinking["type"] == "enabled" else None
    if given:
        max_tokens = given[0]
        if _is_int(budget) and budget >= max_tokens:
            problems.append(
                (
                    "extra.thinking.budget_tokens",
                    f"must be less than max_tokens ({max_tokens}), got {budget}",
                )
            )
        return max_tokens
    return default + budget if _is_int(budget) else default


def _sampling(
    request: ChatRequest,
    extra: Mapping[str, Any],
    thinking: Mapping[str, Any] | None,
    body: dict[str, Any],
    problems: Problems,
    *,
    allowed: bool = False,
) -> None:
    if not allowed:
        # the current Messages API (and its SDK since 1.0) has no sampling parameters:
        # refused here rather than sent for a 400
        for name, value in (
            ("temperature", request.temperature),
            ("top_p", request.top_p),
            ("extra.top_k", extra.get("top_k")),
        ):
            if value is not None:
                problems.append(
                    (
                        name,
                        "the current Anthropic Messages API no longer accepts sampling "
                        "parameters (temperature, top_p, top_k); remove it, or set the "
                        "provider option sampling_params=true for an API version or "
                        "compatible server that still takes them",
                    )
                )
    for name, why in UNSUPPORTED_PARAMS.items():
        if getattr(request, name) is not None:
            problems.append((name, f"not accepted by Anthropic: {why}"))
    if request.n is not None and request.n != 1:
        problems.append(("n", "the Messages API returns one answer per request; n must be 1"))
    thinks = _thinking_on(thinking)
    if request.temperature is not None:
        if request.temperature > 1:
            problems.append(("temperature", "must be between 0 and 1 on Anthropic"))
        elif thinks and request.temperature != 1:
            problems.append(("temperature", "may only be 1 (or unset) when thinking is enabled"))
        body["temperature"] = request.temperature
    if request.top_p is not None:
        if thinks and request.top_p < 0.95:
            problems.append(("top_p", "must be at least 0.95 when thinking is enabled"))
        body["top_p"] = request.top_p
    top_k = extra.get("top_k")
    if top_k is not None:
        if not _is_int(top_k) or top_k < 0:
            problems.append(("extra.top_k", "expected an integer >= 0"))
        elif thinks:
            problems.append(("extra.top_k", "not accepted when thinking is enabled"))
        body["top_k"] = top_k
    stop = request.stop
    sequences = extra.get("stop_sequences")
    if sequences is not None:
        if stop is not None:
            problems.append(("extra.stop_sequences", "give stop or stop_sequences, not both"))
        if not isinstance(sequences, list) or not all(isinstance(s, str) for s in sequences):
            problems.append(("extra.stop_sequences", "expected a list of strings"))
        body["stop_sequences"] = sequences
    elif stop is not None:
        body["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)


def _tools(
    request: ChatRequest,
    extra: Mapping[str, Any],
    thinking: Mapping[str, Any] | None,
    body: dict[str, Any],
    problems: Problems,
) -> None:
    tools: list[dict[str, Any]] = []
    if request.tools:
        if "tools" in extra:
            problems.append(("extra.tools", "tools are given twice: as tools= and in extra"))
        for i, tool in enumerate(request.tools):
            if tool.type != "function":
                problems.append((f"tools[{i}].type", "only function tools can be translated"))
                continue
            fn = tool.function
            schema = dict(fn.parameters) if fn.parameters else {"type": "object", "properties": {}}
            if schema.setdefault("type", "object") != "object":
                problems.append(
                    (f"tools[{i}].function.parameters", "the input schema must be an object")
                )
            wire: dict[str, Any] = {"name": fn.name}
            if fn.description is not None:
                wire["description"] = fn.description
            wire["input_schema"] = schema
            if fn.strict is not None:
                wire["strict"] = fn.strict
            tools.append(wire)
    elif "tools" in extra:
        native = extra["tools"]
        if not isinstance(native, list) or not native:
            problems.append(("extra.tools", "expected a non-empty list of tool definitions"))
        else:
            for i, tool in enumerate(native):
                if not isinstance(tool, Mapping) or not isinstance(tool.get("name"), str):
                    problems.append((f"extra.tools[{i}]", "expected a tool with a name"))
                else:
                    tools.append(dict(tool))
    if tools:
        body["tools"] = tools
    choice = _tool_choice(request, tools, problems)
    if choice is not None:
        if _thinking_on(thinking) and choice["type"] in ("any", "tool"):
            problems.append(
                ("tool_choice", "thinking cannot be enabled when tool_choice forces tool use")
            )
        body["tool_choice"] = choice


def _tool_choice(
    request: ChatRequest, tools: list[dict[str, Any]], problems: Problems
) -> dict[str, Any] | None:
    given = request.tool_choice
    choice: dict[str, Any] | None
    if given is None:
        choice = None
    elif isinstance(given, str):
        choice = {"type": {"auto": "auto", "none": "none", "required": "any"}.get(given, given)}
    elif given.get("type") == "function" and isinstance(given.get("function"), Mapping):
        choice = {"type": "tool", "name": given["function"].get("name")}
    else:  # Anthropic's own form
        choice = dict(given)
    if choice is not None:
        kind = choice.get("type")
        allowed = {"type", "disable_parallel_tool_use"}
        if kind == "tool":
            allowed.add("name")
            names = {t.get("name") for t in tools}
            if choice.get("name") not in names:
                problems.append(("tool_choice", f"names no tool given: {choice.get('name')!r}"))
        elif kind == "none":
            allowed = {"type"}
        elif kind not in ("auto", "any"):
            problems.append(("tool_choice", f"unknown tool choice {kind!r}"))
        for key in choice:
            if key not in allowed:
                problems.append((f"tool_choice.{key}", "not accepted here"))
        if not tools:
            problems.append(("tool_choice", "needs tools"))
    if request.parallel_tool_calls is False and tools:
        if choice is None:
            choice = {"type": "auto"}
        if choice.get("type") != "none":
            choice["disable_parallel_tool_use"] = True
    return choice


def _output_config(
    request: ChatRequest, extra: Mapping[str, Any], body: dict[str, Any], problems: Problems
) -> None:
    config: dict[str, Any] = {}
    given = extra.get("output_config")
    if given is not None:
        if not isinstance(given, Mapping) or not set(given) <= {"effort", "format"}:
            problems.append(("extra.output_config", "expected an object with effort and format"))
        else:
            config.update(given)
    effort = extra.get("reasoning_effort")
    if effort is not None:
        if effort not in _EFFORTS:
            problems.append(
                (
                    "reasoning_effort",
                    f"Anthropic's effort levels are {', '.join(_EFFORTS)}; got {effort!r}",
                )
            )
        elif "effort" in config:
            problems.append(("reasoning_effort", "the effort is also set in output_config"))
        config["effort"] = effort
    fmt = request.response_format
    kind = fmt.get("type") if fmt is not None else None
    if kind == "json_object":
        problems.append(
            (
                "response_format",
                "Anthropic has no JSON mode without a schema: use response_format "
                "{'type': 'json_schema', ...} (or response_model=)",
            )
        )
    elif kind == "json_schema" and fmt is not None:
        spec = fmt.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, Mapping) else None
        if not isinstance(schema, Mapping):
            problems.append(("response_format.json_schema.schema", "expected a JSON schema"))
        elif "format" in config:
            problems.append(("response_format", "the format is also set in output_config"))
        else:
            config["format"] = {"type": "json_schema", "schema": dict(schema)}
    if config.get("effort") is not None and config["effort"] not in _EFFORTS:
        problems.append(("extra.output_config.effort", f"expected one of {', '.join(_EFFORTS)}"))
    if config:
        body["output_config"] = config


def _metadata(
    request: ChatRequest, extra: Mapping[str, Any], body: dict[str, Any], problems: Problems
) -> None:
    metadata: dict[str, Any] = {}
    given = extra.get("metadata")
    if given is not None:
        if not isinstance(given, Mapping) or not set(given) <= {"user_id"}:
            problems.append(("extra.metadata", "Anthropic's metadata holds only user_id"))
        else:
            metadata.update(given)
    if request.user is not None:
        if metadata.get("user_id") not in (None, request.user):
            problems.append(("user", "differs from metadata.user_id"))
        metadata["user_id"] = request.user
    if metadata:
        body["metadata"] = metadata


# --- messages --------------------------------------------------------------------------


def wire_messages(
    messages: Iterable[Message], problems: Problems
) -> tuple[str | list[dict[str, Any]] | None, list[dict[str, Any]]]:
    """``(system, messages)`` of the Messages API for chatcore's messages (see
    :func:`messages_body`); problems are appended to ``problems``."""
    system: list[dict[str, Any]] = []
    turns: list[tuple[str, list[dict[str, Any]]]] = []
    leading = True
    for i, message in enumerate(messages):
        path = f"messages[{i}]"
        role = message.role
        if role in ("system", "developer"):
            blocks = _text_blocks(message, path, problems)
            if leading:
                system.extend(blocks)
                continue
            role = "system"
            blocks = [{"type": "mid_conv_system", "content": blocks}] if blocks else []
        else:
            leading = False
            if role == "user":
                blocks = _user_blocks(message, path, problems)
            elif role == "assistant":
                blocks = _assistant_blocks(message, path, problems)
            elif role == "tool":
                role = "user"
                blocks = [_tool_result(message, path, problems)]
            else:
                problems.append((f"{path}.role", f"the Messages API has no {role!r} messages"))
                continue
        if not blocks:
            if role != "assistant" and role != "system":
                problems.append((f"{path}.content", "the Messages API refuses empty messages"))
            continue  # an empty assistant (or system) turn is left out
        if turns and turns[-1][0] == role:
            turns[-1][1].extend(blocks)
        else:
            turns.append((role, blocks))
    out: list[dict[str, Any]] = []
    for role, blocks in turns:
        if role == "user":  # tool results come first in their turn
            blocks = [b for b in blocks if b["type"] == "tool_result"] + [
                b for b in blocks if b["type"] != "tool_result"
            ]
        content: Any = blocks
        if len(blocks) == 1 and blocks[0].keys() == {"type", "text"}:
            content = blocks[0]["text"]
        out.append({"role": role, "content": content})
    if not out:
        problems.append(("messages", "at least one user or assistant message is required"))
    elif out[-1]["role"] == "assistant":
        last = out[-1]["content"]
        text = last if isinstance(last, str) else last[-1].get("text")
        if isinstance(text, str) and text != text.rstrip():
            problems.append(
                (
                    "messages",
                    "a final assistant message (a prefill) may not end with whitespace",
                )
            )
    if not system:
        return None, out
    if len(system) == 1:
        return system[0]["text"], out
    return system, out


def _text(text: str) -> list[dict[str, Any]]:
    # the API refuses text blocks that are empty or only whitespace
    return [{"type": "text", "text": text}] if text.strip() else []


def _text_blocks(message: Message, path: str, problems: Problems) -> list[dict[str, Any]]:
    content = message.content
    if content is None:
        return []
    if isinstance(content, str):
        return _text(content)
    blocks: list[dict[str, Any]] = []
    for j, part in enumerate(content):
        if isinstance(part, TextPart):
            blocks.extend(_text(part.text))
        else:
            problems.append((f"{path}.content[{j}]", "system messages take text only"))
    return blocks


def _user_blocks(message: Message, path: str, problems: Problems) -> list[dict[str, Any]]:
    content = message.content
    if content is None or isinstance(content, str):
        return _text(content or "")
    blocks: list[dict[str, Any]] = []
    for j, part in enumerate(content):
        where = f"{path}.content[{j}]"
        if isinstance(part, TextPart):
            blocks.extend(_text(part.text))
        elif isinstance(part, ImagePart):
            image = _image_block(part, where, problems)
            if image is not None:
                blocks.append(image)
        elif isinstance(part, FilePart):
            document = _document_block(part, where, problems)
            if document is not None:
                blocks.append(document)
        else:
            problems.append((where, f"Anthropic takes no {part.type!r} parts"))
    return blocks


def _assistant_blocks(message: Message, path: str, problems: Problems) -> list[dict[str, Any]]:
    blocks = _reasoning_blocks(message.reasoning_details, f"{path}.reasoning_details", problems)
    content = message.content
    if isinstance(content, str):
        blocks.extend(_text(content))
    elif content is not None:
        for j, part in enumerate(content):
            if isinstance(part, TextPart):
                blocks.extend(_text(part.text))
            elif isinstance(part, RefusalPart):
                blocks.extend(_text(part.refusal))
            else:
                problems.append((f"{path}.content[{j}]", "assistant messages take text only"))
    if content is None and message.refusal:
        blocks.extend(_text(message.refusal))
    for k, call in enumerate(message.tool_calls or ()):
        arguments = call.function.arguments.strip() or "{}"
        try:
            value = json.loads(arguments)
        except ValueError:
            value = None
        if not isinstance(value, dict):
            problems.append(
                (
                    f"{path}.tool_calls[{k}].function.arguments",
                    "Anthropic takes tool input as a JSON object",
                )
            )
            continue
        blocks.append(
            {"type": "tool_use", "id": call.id, "name": call.function.name, "input": value}
        )
    return blocks


def _reasoning_blocks(details: Any, path: str, problems: Problems) -> list[dict[str, Any]]:
    """The assistant's own thinking blocks, sent back first and unchanged (the API checks
    their signatures). Reasoning blocks of other providers are left out."""
    blocks: list[dict[str, Any]] = []
    for k, block in enumerate(details or ()):
        kind = block.get("type")
        if kind == "thinking":
            if not isinstance(block.get("thinking"), str) or not isinstance(
                block.get("signature"), str
            ):
                problems.append((f"{path}[{k}]", "a thinking block needs thinking and signature"))
                continue
        elif kind == "redacted_thinking":
            if not isinstance(block.get("data"), str):
                problems.append((f"{path}[{k}]", "a redacted_thinking block needs data"))
                continue
        else:
            continue
        blocks.append(dict(block))
    return blocks


def _tool_result(message: Message, path: str, problems: Problems) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": message.tool_call_id}
    content = message.content
    if isinstance(content, str):
        if content:
            block["content"] = content
    elif content is not None:
        parts = _text_blocks(message, path, problems)
        if parts:
            block["content"] = parts
    return block


def _image_block(part: ImagePart, path: str, problems: Problems) -> dict[str, Any] | None:
    url = part.image_url.url
    if url.startswith(("https://", "http://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    data = _base64_data(url, path, problems)
    if data is None:
        return None
    media_type = sniff_image_type(data[1])
    if media_type is None:
        problems.append(
            (path, "Anthropic takes JPEG, PNG, GIF or WebP images; these bytes are none of them")
        )
        return None
    # the bytes say what the image is: a data URL declaring another type is answered 400
    source = {"type": "base64", "media_type": media_type, "data": data[0]}
    return {"type": "image", "source": source}


def _document_block(part: FilePart, path: str, problems: Problems) -> dict[str, Any] | None:
    file = part.file
    if file.file_data is None:
        problems.append(
            (
                f"{path}.file",
                "Anthropic takes documents inline (file_data as a data: URL); file ids need "
                "its Files API",
            )
        )
        return None
    data = _base64_data(file.file_data, f"{path}.file.file_data", problems)
    if data is None:
        return None
    media_type = data[2]
    source: dict[str, Any]
    if media_type == "application/pdf" and data[1].startswith(b"%PDF-"):
        source = {"type": "base64", "media_type": "application/pdf", "data": data[0]}
    elif media_type == "text/plain":
        try:
            text = data[1].decode("utf-8")
        except UnicodeDecodeError:
            problems.append((f"{path}.file.file_data", "a text/plain document must be UTF-8"))
            return None
        source = {"type": "text", "media_type": "text/plain", "data": text}
    else:
        problems.append(
            (f"{path}.file.file_data", "Anthropic takes PDF (application/pdf) or text/plain files")
        )
        return None
    block: dict[str, Any] = {"type": "document", "source": source}
    if file.filename:
        block["title"] = file.filename
    return block


def _base64_data(url: str, path: str, problems: Problems) -> tuple[str, bytes, str] | None:
    """``(base64 text, bytes, media type)`` of a base64 ``data:`` URL."""
    match = _DATA_URL.match(url)
    if match is None or ";base64" not in match.group(2).lower():
        problems.append((path, "expected an http(s) URL or a base64 data: URL"))
        return None
    text = match.group(3)
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        problems.append((path, "the data: URL is not valid base64"))
        return None
    return text, raw, match.group(1).strip().lower()


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)
