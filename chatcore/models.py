"""The value types of a chat: messages, tools, requests, responses and stream chunks.

All types are frozen attrs classes whose field names follow the OpenAI Chat Completions
wire shape, so OpenAI-shaped dicts go in (:func:`message_from_dict`,
:meth:`ChatResponse.from_dict`) and come out (``.to_dict()``) exactly. Two cattrs
converters serve the two boundaries: :data:`strict_converter` for user input (unknown
keys and wrong types are errors naming the field) and :data:`lenient_converter` for
provider payloads (APIs add fields; unknown keys are ignored).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal, TypeVar, Union, cast

import attrs

from chatcore.exceptions import ResponseDecodeError, ValidationError

if TYPE_CHECKING:
    import cattrs

    #: The strict converter for user input (built on first use; see ``__getattr__``).
    strict_converter: cattrs.Converter
    #: The lenient converter for provider payloads (built on first use).
    lenient_converter: cattrs.Converter

__all__ = [
    "AudioPart",
    "ChatChunk",
    "ChatRequest",
    "ChatResponse",
    "Choice",
    "ContentPart",
    "FilePart",
    "FunctionCall",
    "FunctionDefinition",
    "ImagePart",
    "ImageURL",
    "InputAudio",
    "InputFile",
    "Message",
    "RefusalPart",
    "TextPart",
    "Tool",
    "ToolCall",
    "Usage",
    "lenient_converter",
    "message_from_dict",
    "normalize_messages",
    "strict_converter",
]

ROLES = frozenset({"developer", "system", "user", "assistant", "tool", "function"})


# --------------------------------------------------------------------------------------
# Content parts


@attrs.frozen
class TextPart:
    """``{"type": "text", "text": ...}``."""

    text: str
    type: Literal["text"] = "text"


@attrs.frozen
class ImageURL:
    """An image by ``http(s)`` or ``data:`` URL; ``detail`` is ``auto``, ``low`` or ``high``."""

    url: str
    detail: str | None = None


@attrs.frozen
class ImagePart:
    """``{"type": "image_url", "image_url": {"url": ..., "detail": ...}}``."""

    image_url: ImageURL
    type: Literal["image_url"] = "image_url"

    @classmethod
    def from_url(cls, url: str, detail: str | None = None) -> ImagePart:
        """An image part for an ``http(s)`` or ``data:`` URL."""
        return cls(ImageURL(url, detail))


@attrs.frozen
class InputAudio:
    """Base64 audio data and its format (``wav`` or ``mp3``)."""

    data: str
    format: str


@attrs.frozen
class AudioPart:
    """``{"type": "input_audio", "input_audio": {"data": ..., "format": ...}}``."""

    input_audio: InputAudio
    type: Literal["input_audio"] = "input_audio"


@attrs.frozen
class InputFile:
    """A file by inline data, uploaded id, or name."""

    file_data: str | None = None
    file_id: str | None = None
    filename: str | None = None


@attrs.frozen
class FilePart:
    """``{"type": "file", "file": {...}}``."""

    file: InputFile
    type: Literal["file"] = "file"


@attrs.frozen
class RefusalPart:
    """``{"type": "refusal", "refusal": ...}`` (assistant messages only)."""

    refusal: str
    type: Literal["refusal"] = "refusal"


ContentPart = Union[TextPart, ImagePart, AudioPart, FilePart, RefusalPart]
_PART_TYPES: dict[str, type[Any]] = {
    "text": TextPart,
    "image_url": ImagePart,
    "input_audio": AudioPart,
    "file": FilePart,
    "refusal": RefusalPart,
}


# --------------------------------------------------------------------------------------
# Tools


@attrs.frozen
class FunctionCall:
    """A function the model asks to call; ``arguments`` is JSON text, as on the wire."""

    name: str
    arguments: str


@attrs.frozen
class ToolCall:
    """One tool call in an assistant message."""

    id: str
    function: FunctionCall
    type: str = "function"


@attrs.frozen
class FunctionDefinition:
    """A callable function: name, description and JSON-schema ``parameters``."""

    name: str
    description: str | None = None
    parameters: Mapping[str, Any] | None = None
    strict: bool | None = None


@attrs.frozen
class Tool:
    """``{"type": "function", "function": {...}}``."""

    function: FunctionDefinition
    type: str = "function"


# --------------------------------------------------------------------------------------
# Messages


def to_tuple(value: Iterable[Any]) -> tuple[Any, ...]:
    """attrs converter: any iterable to a tuple (typed, so mypy accepts lists and tuples)."""
    return tuple(value)


def _content_converter(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(value)
    return value


def _calls_converter(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(value)
    return value


@attrs.frozen
class Message:
    """One chat message. ``content`` is text, a tuple of parts, or ``None`` (an assistant
    message that only carries ``tool_calls``).

    An assistant answer of a reasoning model may carry its reasoning: ``reasoning_content``
    is its text (the name DeepSeek and vLLM use on the wire; Anthropic's thinking blocks
    joined), ``reasoning_details`` the provider's own reasoning blocks as they must be sent
    back with this message when the conversation goes on (Anthropic: ``thinking`` blocks
    with their ``signature``, ``redacted_thinking`` blocks). Both are opaque to chatcore;
    providers that take no reasoning back leave them out of what they send."""

    role: str
    content: str | tuple[ContentPart, ...] | None = attrs.field(
        default=None, converter=_content_converter
    )
    name: str | None = None
    tool_calls: tuple[ToolCall, ...] | None = attrs.field(default=None, converter=_calls_converter)
    tool_call_id: str | None = None
    refusal: str | None = None
    annotations: tuple[Any, ...] | None = attrs.field(default=None, converter=_calls_converter)
    audio: Mapping[str, Any] | None = None
    reasoning_content: str | None = None
    reasoning_details: tuple[Mapping[str, Any], ...] | None = attrs.field(
        default=None, converter=_calls_converter
    )

    @property
    def text(self) -> str:
        """The message's text: ``content`` if it is a string, else its text parts joined."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(p.text for p in self.content if isinstance(p, TextPart))

    def to_dict(self) -> dict[str, Any]:
        """The OpenAI wire shape of this message."""
        result: dict[str, Any] = _lenient().unstructure(self, Message)
        return result

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Message:
        """Build a message from an OpenAI-shaped dict, strictly (see :func:`message_from_dict`)."""
        return message_from_dict(data)


# --------------------------------------------------------------------------------------
# Requests


@attrs.frozen
class ChatRequest:
    """A normalized chat request, as the pipeline and provider plugins see it.

    ``model`` is the provider's model id (without the ``provider:`` prefix); ``extra``
    holds provider-specific parameters that are sent as given.
    """

    provider: str
    model: str
    messages: tuple[Message, ...]
    temperature: float | None = None
    top_p: float | None = None
    n: int | None = None
    stop: str | tuple[str, ...] | None = attrs.field(default=None, converter=_content_converter)
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logit_bias: Mapping[str, int] | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    user: str | None = None
    tools: tuple[Tool, ...] | None = attrs.field(default=None, converter=_calls_converter)
    tool_choice: str | Mapping[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    response_format: Mapping[str, Any] | None = None
    stream: bool = False
    extra: Mapping[str, Any] = attrs.field(factory=dict)

    def params(self) -> dict[str, Any]:
        """The common parameters that are set (not ``None``), in wire form, without
        ``model``, ``messages``, ``stream`` or ``extra``."""
        out: dict[str, Any] = {}
        for name in COMMON_PARAMS:
            value = getattr(self, name)
            if value is None:
                continue
            if name == "tools":
                value = [_lenient().unstructure(t, Tool) for t in value]
            elif isinstance(value, tuple):
                value = list(value)
            out[name] = value
        return out

    def to_openai_dict(self) -> dict[str, Any]:
        """The OpenAI Chat Completions body for this request: nothing unset is sent."""
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [m.to_dict() for m in self.messages],
        }
        body.update(self.params())
        if self.stream:
            body["stream"] = True
        body.update(self.extra)
        return body


COMMON_PARAMS: tuple[str, ...] = (
    "temperature",
    "top_p",
    "n",
    "stop",
    "max_tokens",
    "max_completion_tokens",
    "seed",
    "presence_penalty",
    "frequency_penalty",
    "logit_bias",
    "logprobs",
    "top_logprobs",
    "user",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "response_format",
)

#: OpenAI Chat Completions parameters that chatcore passes through in ``extra`` untouched.
OPENAI_PASSTHROUGH_PARAMS: frozenset[str] = frozenset(
    {
        "audio",
        "functions",
        "function_call",
        "metadata",
        "modalities",
        "prediction",
        "prompt_cache_key",
        "prompt_cache_retention",
        "reasoning_effort",
        "safety_identifier",
        "service_tier",
        "store",
        "stream_options",
        "verbosity",
        "web_search_options",
    }
)


# --------------------------------------------------------------------------------------
# Responses


def _detail_count(details: Mapping[str, Any] | None, key: str) -> int | None:
    """``details[key]`` when it is an integer (not a bool), else ``None``."""
    if isinstance(details, Mapping):
        value = details.get(key)
        if type(value) is int:
            return value
    return None


def _cached_from_details(usage: Usage) -> int | None:
    return _detail_count(usage.prompt_tokens_details, "cached_tokens")


def _reasoning_from_details(usage: Usage) -> int | None:
    return _detail_count(usage.completion_tokens_details, "reasoning_tokens")


@attrs.frozen
class Usage:
    """Token counts, the same for every provider.

    ``prompt_tokens`` counts every input token, read from a cache or not, and
    ``completion_tokens`` every output token, reasoning included (as OpenAI reports them);
    ``total_tokens`` is their sum. The typed breakdown says what part of them was what;
    ``None`` means the provider did not report it:

    * ``cached_tokens``: input tokens read from the provider's prompt cache (part of
      ``prompt_tokens``): OpenAI's ``prompt_tokens_details.cached_tokens``, Anthropic's
      ``cache_read_input_tokens``;
    * ``cache_creation_tokens``: input tokens written to the prompt cache (part of
      ``prompt_tokens``; Anthropic's ``cache_creation_input_tokens``; OpenAI reports none);
    * ``reasoning_tokens``: output tokens spent reasoning (part of ``completion_tokens``):
      OpenAI's ``completion_tokens_details.reasoning_tokens``, Anthropic's
      ``output_tokens_details.thinking_tokens``.

    ``cached_tokens`` and ``reasoning_tokens`` default to what the ``*_details`` dicts say
    (which are passed through as the provider sent them), so an OpenAI-shaped ``usage``
    object fills them wherever it is decoded; ``to_dict()`` writes a typed field only when
    the details do not already say it.
    """

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    prompt_tokens_details: Mapping[str, Any] | None = None
    completion_tokens_details: Mapping[str, Any] | None = None
    cached_tokens: int | None = attrs.field(
        default=attrs.Factory(_cached_from_details, takes_self=True)
    )
    cache_creation_tokens: int | None = None
    reasoning_tokens: int | None = attrs.field(
        default=attrs.Factory(_reasoning_from_details, takes_self=True)
    )


@attrs.frozen
class Choice:
    """One alternative answer."""

    index: int
    message: Message
    finish_reason: str | None = None
    logprobs: Mapping[str, Any] | None = None


def _names(value: Iterable[str]) -> tuple[str, ...]:
    return value if type(value) is tuple else tuple(value)


@attrs.frozen
class ChatResponse:
    """A completed chat. Wire fields mirror ``chat.completion``; ``provider``,
    ``request_id``, ``latency`` (seconds), ``attempts``, ``cached``, ``deployment`` and
    ``deployments`` are chatcore's."""

    id: str
    model: str
    choices: tuple[Choice, ...] = attrs.field(converter=to_tuple)
    created: int = 0
    usage: Usage | None = None
    system_fingerprint: str | None = None
    service_tier: str | None = None
    object: str = "chat.completion"
    provider: str = attrs.field(default="", kw_only=True)
    request_id: str | None = attrs.field(default=None, kw_only=True)
    latency: float = attrs.field(default=0.0, kw_only=True)
    attempts: int = attrs.field(default=1, kw_only=True)
    cached: bool = attrs.field(default=False, kw_only=True)
    headers: Mapping[str, str] | None = attrs.field(
        default=None, kw_only=True, eq=False, repr=False
    )
    #: Through a route (``route:NAME``): the deployment that answered
    #: (``route:NAME/DEPLOYMENT``); ``None`` for a direct call or a cache hit.
    deployment: str | None = attrs.field(default=None, kw_only=True)
    #: Through a route: the deployment each attempt went to, in order (the last one
    #: answered); empty for a direct call or a cache hit.
    deployments: tuple[str, ...] = attrs.field(default=(), kw_only=True, converter=_names)
    #: With ``chat(..., response_model=X)``: the answer structured as an ``X``.
    parsed: Any = attrs.field(default=None, kw_only=True, eq=False, repr=False)
    #: What the call cost in USD (a ``Decimal``): its usage at the model's prices (see
    #: docs/cost.md); ``0`` for an answer from chatcore's cache; ``None`` when the
    #: model's price or the usage is unknown (never a guess).
    cost: Decimal | None = attrs.field(default=None, kw_only=True, eq=False)
    #: For an answer from chatcore's cache: what the call would have cost (USD).
    saved_cost: Decimal | None = attrs.field(default=None, kw_only=True, eq=False, repr=False)

    @property
    def text(self) -> str:
        """The first choice's text ("" when there is none)."""
        return self.choices[0].message.text if self.choices else ""

    @property
    def message(self) -> Message | None:
        """The first choice's message."""
        return self.choices[0].message if self.choices else None

    @property
    def finish_reason(self) -> str | None:
        """The first choice's finish reason."""
        return self.choices[0].finish_reason if self.choices else None

    @property
    def tool_calls(self) -> tuple[ToolCall, ...]:
        """The first choice's tool calls (empty when none)."""
        msg = self.message
        return msg.tool_calls or () if msg is not None else ()

    def to_dict(self) -> dict[str, Any]:
        """The OpenAI ``chat.completion`` shape (chatcore's own fields left out)."""
        result: dict[str, Any] = _lenient().unstructure(self, ChatResponse)
        return result

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, provider: str = "", **meta: Any) -> ChatResponse:
        """Build a response from a provider's ``chat.completion`` payload (lenient: unknown
        keys are ignored; a payload that does not fit raises :class:`ResponseDecodeError`)."""
        fast = _fast_response(data, provider, meta)
        if fast is not None:
            return fast
        try:
            resp = _lenient().structure(data, ChatResponse)
        except Exception as exc:  # cattrs raises several classes, all meaning "does not fit"
            raise ResponseDecodeError(
                "the provider's chat.completion payload does not fit: "
                + _diagnose(data, ChatResponse, exc),
                provider=provider or None,
                body=data if isinstance(data, Mapping) else repr(data)[:500],
            ) from exc
        if provider or meta:
            resp = attrs.evolve(resp, provider=provider, **meta)
        return resp


_FAST_MESSAGE_KEYS = frozenset({"role", "content", "refusal", "annotations", "reasoning_content"})
_FAST_USAGE_KEYS = frozenset(
    {
        "prompt_tokens",
        "completion_tokens",
        "total_tokens",
        "prompt_tokens_details",
        "completion_tokens_details",
    }
)


def _opt_str(value: Any) -> bool:
    return value is None or type(value) is str


def _int(value: Any) -> bool:
    return type(value) is int


def _fast_response(data: Any, provider: str, meta: Mapping[str, Any]) -> ChatResponse | None:
    """The common ``chat.completion`` shape (text answers, plain usage) decoded by hand,
    exactly as the lenient converter would; ``None`` for anything else (tool calls, audio,
    unusual types), which then goes through cattrs. Tested equal to cattrs by hypothesis."""
    if type(data) is not dict:
        return None
    rid, model = data.get("id"), data.get("model")
    created = data.get("created", 0)
    choices = data.get("choices")
    if type(rid) is not str or type(model) is not str or not _int(created):
        return None
    if type(choices) is not list:
        return None
    obj = data.get("object", "chat.completion")
    fingerprint, tier = data.get("system_fingerprint"), data.get("service_tier")
    if type(obj) is not str or not _opt_str(fingerprint) or not _opt_str(tier):
        return None
    built = []
    for choice in choices:
        if type(choice) is not dict:
            return None
        message = choice.get("message")
        index = choice.get("index")
        reason = choice.get("finish_reason")
        logprobs = choice.get("logprobs")
        if type(message) is not dict or not _int(index) or not _opt_str(reason):
            return None
        if logprobs is not None and type(logprobs) is not dict:
            return None
        if not _FAST_MESSAGE_KEYS.issuperset(message):
            return None
        role, content, refusal = message.get("role"), message.get("content"), message.get("refusal")
        annotations, reasoning = message.get("annotations"), message.get("reasoning_content")
        if type(role) is not str or not _opt_str(content) or not _opt_str(refusal):
            return None
        if not _opt_str(reasoning):
            return None
        if annotations is not None and type(annotations) is not list:
            return None
        built.append(
            Choice(
                index=cast(int, index),
                message=Message(
                    role=role,
                    content=content,
                    refusal=refusal,
                    annotations=tuple(annotations) if annotations is not None else None,
                    reasoning_content=reasoning,
                ),
                finish_reason=reason,
                logprobs=logprobs,
            )
        )
    usage = None
    raw_usage = data.get("usage")
    if raw_usage is not None:
        if type(raw_usage) is not dict or not _FAST_USAGE_KEYS.issuperset(raw_usage):
            return None
        prompt = raw_usage.get("prompt_tokens", 0)
        completion = raw_usage.get("completion_tokens", 0)
        total = raw_usage.get("total_tokens", 0)
        pdet = raw_usage.get("prompt_tokens_details")
        cdet = raw_usage.get("completion_tokens_details")
        if not (_int(prompt) and _int(completion) and _int(total)):
            return None
        if (pdet is not None and type(pdet) is not dict) or (
            cdet is not None and type(cdet) is not dict
        ):
            return None
        usage = Usage(prompt, completion, total, pdet, cdet)
    return ChatResponse(
        id=rid,
        model=model,
        choices=tuple(built),
        created=created,
        usage=usage,
        system_fingerprint=fingerprint,
        service_tier=tier,
        object=obj,
        provider=provider,
        **meta,
    )


@attrs.frozen
class ChatChunk:
    """One streamed delta (``chat.completion.chunk``), kept close to the wire."""

    id: str
    model: str
    choices: tuple[Mapping[str, Any], ...] = attrs.field(converter=to_tuple, factory=tuple)
    created: int = 0
    usage: Usage | None = None
    provider: str = attrs.field(default="", kw_only=True)
    #: Set on the first chunk of a stream: the answer's request id and headers.
    request_id: str | None = attrs.field(default=None, kw_only=True, eq=False)
    headers: Mapping[str, str] | None = attrs.field(
        default=None, kw_only=True, eq=False, repr=False
    )

    def _first(self) -> Mapping[str, Any] | None:
        for choice in self.choices:
            if choice.get("index", 0) == 0:
                return choice
        return None

    @property
    def text(self) -> str:
        """The first choice's content delta ("" when there is none)."""
        choice = self._first()
        if choice is None:
            return ""
        delta = choice.get("delta")
        if type(delta) is not dict and not isinstance(delta, Mapping):
            return ""
        content = delta.get("content")
        return content if type(content) is str or isinstance(content, str) else ""

    @property
    def finish_reason(self) -> str | None:
        """The first choice's finish reason, on the chunk that ends it."""
        choice = self._first()
        reason = choice.get("finish_reason") if choice is not None else None
        return reason if isinstance(reason, str) else None

    @property
    def tool_call_deltas(self) -> tuple[Mapping[str, Any], ...]:
        """The first choice's ``delta.tool_calls`` fragments (keyed by ``index``)."""
        choice = self._first()
        delta = choice.get("delta") if choice is not None else None
        calls = delta.get("tool_calls") if isinstance(delta, Mapping) else None
        return tuple(c for c in calls if isinstance(c, Mapping)) if isinstance(calls, list) else ()

    def to_dict(self) -> dict[str, Any]:
        """The ``chat.completion.chunk`` wire shape."""
        out: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [dict(c) for c in self.choices],
        }
        if self.usage is not None:
            out["usage"] = _lenient().unstructure(self.usage, Usage)
        return out


# --------------------------------------------------------------------------------------
# Converters

T = TypeVar("T")


def _strict_scalar(expected: type[Any] | tuple[type[Any], ...], name: str) -> Callable[..., Any]:
    def hook(value: Any, _type: Any) -> Any:
        if isinstance(value, bool) and bool not in (
            expected if isinstance(expected, tuple) else (expected,)
        ):
            raise TypeError(f"expected {name}, got a boolean")
        if not isinstance(value, expected):
            raise TypeError(f"expected {name}, got {type(value).__name__}")
        return value

    return hook


def _structure_content(conv: cattrs.Converter, lenient: bool) -> Callable[[Any, Any], Any]:
    def hook(value: Any, _type: Any) -> Any:
        if value is None or isinstance(value, str):
            return value
        if isinstance(value, (list, tuple)):
            parts: list[Any] = []
            for i, part in enumerate(value):
                if isinstance(part, tuple(_PART_TYPES.values())):
                    parts.append(part)
                    continue
                if isinstance(part, str) and lenient:
                    parts.append(TextPart(part))
                    continue
                if not isinstance(part, Mapping):
                    raise TypeError(f"[{i}]: a content part must be an object with a 'type'")
                cls = _PART_TYPES.get(part.get("type"))  # type: ignore[arg-type]
                if cls is None:
                    allowed = ", ".join(sorted(_PART_TYPES))
                    raise ValueError(
                        f"[{i}].type: unknown content part type {part.get('type')!r}"
                        f" (allowed: {allowed})"
                    )
                try:
                    parts.append(conv.structure(part, cls))
                except Exception as exc:
                    where, msg = _problems(exc, "")[0]
                    raise ValueError(f"[{i}]{where and '.' + where.lstrip('.')}: {msg}") from exc
            return tuple(parts)
        raise TypeError(f"expected a string or a list of content parts, got {type(value).__name__}")

    return hook


def _structure_str_or_mapping(value: Any, _type: Any) -> Any:
    if isinstance(value, (str, Mapping)):
        return value
    raise TypeError(f"expected a string or an object, got {type(value).__name__}")


def _structure_stop(value: Any, _type: Any) -> Any:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)) and all(isinstance(s, str) for s in value):
        return tuple(value)
    raise TypeError("expected a string or a list of strings")


def _structure_any(value: Any, _type: Any) -> Any:
    return value


def _structure_mapping(value: Any, _type: Any) -> Any:
    if value is None or isinstance(value, Mapping):
        return value
    raise TypeError(f"expected an object, got {type(value).__name__}")


_ALWAYS_EMIT: dict[type[Any], tuple[str, ...]] = {
    TextPart: ("type",),
    ImagePart: ("type",),
    AudioPart: ("type",),
    FilePart: ("type",),
    RefusalPart: ("type",),
    ToolCall: ("type",),
    Tool: ("type",),
    Message: ("content",),
    Choice: ("finish_reason", "logprobs"),
    ChatResponse: ("object", "created"),
    Usage: ("prompt_tokens", "completion_tokens", "total_tokens"),
}
_NEVER_EMIT: dict[type[Any], tuple[str, ...]] = {
    ChatResponse: (
        "provider",
        "request_id",
        "latency",
        "attempts",
        "cached",
        "headers",
        "parsed",
        "deployment",
        "deployments",
        "cost",
        "saved_cost",
    ),
    ChatChunk: ("provider", "request_id", "headers"),
}


def _with_refusal(hook: Callable[[Any], dict[str, Any]]) -> Callable[[Any], dict[str, Any]]:
    """A response message always has ``refusal`` (the spec requires the key)."""

    def unstructure_choice(choice: Any) -> dict[str, Any]:
        out = hook(choice)
        out["message"].setdefault("refusal", None)
        return out

    return unstructure_choice


def _make_converter(strict: bool, detailed: bool | None = None) -> cattrs.Converter:
    import cattrs  # imported with the first converter, not at ``import chatcore``

    conv = cattrs.Converter(
        omit_if_default=True,
        forbid_extra_keys=strict,
        detailed_validation=strict if detailed is None else detailed,
    )
    if strict:
        conv.register_structure_hook(str, _strict_scalar(str, "a string"))
        conv.register_structure_hook(int, _strict_scalar(int, "an integer"))
        conv.register_structure_hook(float, _strict_scalar((int, float), "a number"))
        conv.register_structure_hook(bool, _strict_scalar(bool, "a boolean"))
    exact: dict[Any, Callable[[Any, Any], Any]] = {
        Any: _structure_any,
        Mapping[str, Any]: _structure_mapping,
        Mapping[str, int]: _structure_mapping,
        Union[str, Mapping[str, Any], None]: _structure_str_or_mapping,
        Union[str, tuple[str, ...], None]: _structure_stop,
    }
    for typ, fn in exact.items():
        conv.register_structure_hook_func(_is_type(typ), fn)
    return conv


def _is_type(expected: Any) -> Callable[[Any], bool]:
    def predicate(candidate: Any) -> bool:
        return bool(candidate == expected)

    return predicate


_MODEL_CLASSES: tuple[type[Any], ...] = (
    TextPart,
    ImageURL,
    ImagePart,
    InputAudio,
    AudioPart,
    InputFile,
    FilePart,
    RefusalPart,
    FunctionCall,
    ToolCall,
    FunctionDefinition,
    Tool,
    Message,
    Usage,
    Choice,
    ChatResponse,
    ChatChunk,
)


def _register_models(conv: cattrs.Converter) -> None:
    from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

    conv.register_structure_hook_func(
        _is_type(Union[str, tuple[ContentPart, ...], None]),
        _structure_content(conv, lenient=not conv.forbid_extra_keys),
    )
    for cls in _MODEL_CLASSES:
        overrides: dict[str, Any] = {
            f: override(omit_if_default=False) for f in _ALWAYS_EMIT.get(cls, ())
        }
        overrides.update({f: override(omit=True) for f in _NEVER_EMIT.get(cls, ())})
        hook = make_dict_unstructure_fn(cls, conv, _cattrs_omit_if_default=True, **overrides)
        if cls is Choice:
            hook = _with_refusal(hook)
        conv.register_unstructure_hook(cls, hook)
        skip: dict[str, Any] = {f: override(omit=True) for f in _NEVER_EMIT.get(cls, ())}
        conv.register_structure_hook(cls, make_dict_structure_fn(cls, conv, **skip))


_converters: dict[str, cattrs.Converter] = {}
_converters_lock = threading.Lock()


def _converter(kind: str) -> cattrs.Converter:
    """The converter ``kind`` ("strict", "lenient" or "diagnostic"), generated on first use
    (building them costs tens of milliseconds: not at ``import chatcore``)."""
    found = _converters.get(kind)
    if found is not None:
        return found
    with _converters_lock:
        found = _converters.get(kind)
        if found is None:
            found = _make_converter(
                strict=kind == "strict", detailed=True if kind == "diagnostic" else None
            )
            _register_models(found)
            _converters[kind] = found
    return found


def _strict() -> cattrs.Converter:
    return _converters.get("strict") or _converter("strict")


def _lenient() -> cattrs.Converter:
    return _converters.get("lenient") or _converter("lenient")


def __getattr__(name: str) -> Any:
    if name == "strict_converter":
        return _strict()
    if name == "lenient_converter":
        return _lenient()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _diagnose(data: Any, cls: type[Any], exc: BaseException) -> str:
    """Explain a lenient structuring failure with paths (re-run with detailed validation;
    only on the error path, so the fast path stays fast)."""
    try:
        _converter("diagnostic").structure(data, cls)
    except Exception as detailed:
        return _describe(detailed)
    return _describe(exc)  # pragma: no cover - the two converters agree


def _describe(exc: BaseException) -> str:
    try:
        import cattrs

        msgs = cattrs.transform_error(exc)
    except Exception:  # pragma: no cover - transform_error accepts any exception
        msgs = [str(exc)]
    return "; ".join(msgs) or str(exc)


def _problems(exc: BaseException, path: str) -> list[tuple[str, str]]:
    """Turn a cattrs structuring failure into ``(path, message)`` pairs."""
    out: list[tuple[str, str]] = []
    import cattrs

    for line in cattrs.transform_error(exc, path=path, format_exception=_format_exception):
        msg, _, where = line.rpartition(" @ ")
        if not msg:
            msg, where = line, path
        if msg.startswith("[") and "]" in msg:
            # a hook reported a position inside the value: "[2].type: ..."
            inner, _, rest = msg.partition(": ")
            where, msg = where + inner, rest
        if "extra fields found" in msg:
            msg = msg.replace("extra fields found", "unknown key(s)")
        out.append((where, msg))
    return out


def _format_exception(exc: BaseException, type_: Any) -> str:
    if isinstance(exc, (TypeError, ValueError)) and exc.args and isinstance(exc.args[0], str):
        text = exc.args[0]
        if text.startswith(("expected", "[", "unknown")):
            return text
    if isinstance(exc, KeyError):
        return "required key missing"
    import cattrs.v

    return cattrs.v.format_exception(exc, type_)


def message_from_dict(data: Mapping[str, Any], *, path: str = "message") -> Message:
    """Strictly build a :class:`Message` from an OpenAI-shaped dict; every problem is
    reported in one :class:`ValidationError` with its path."""
    if not isinstance(data, Mapping):
        raise ValidationError([(path, f"expected an object, got {type(data).__name__}")])
    try:
        return _strict().structure(data, Message)
    except Exception as exc:
        from chatcore._validate import json_problems

        # What is not JSON at all (sets, bytes, non-string keys) is reported as such;
        # cattrs cannot describe it (its messages assume string keys).
        problems: list[tuple[str, str]] = []
        json_problems(data, path, problems)
        if not problems:
            problems = _problems(exc, path)
        raise ValidationError(problems) from exc


def _checked_message(message: Message, path: str) -> None:
    """Check a :class:`Message` built in code as strictly as a dict (its fields are not
    type-checked by attrs); raise :class:`ValidationError` naming the field."""
    if (
        type(message.role) is str
        and type(message.content) is str
        and message.name is None
        and message.tool_calls is None
        and message.tool_call_id is None
        and message.refusal is None
        and message.annotations is None
        and message.audio is None
        and message.reasoning_content is None
        and message.reasoning_details is None
    ):
        return  # the common shape, already right
    try:
        data = _lenient().unstructure(message, Message)
    except Exception as exc:  # any field attrs let through that cattrs cannot unstructure
        raise ValidationError(
            [(path, f"not a valid Message ({type(exc).__name__}); build it from a dict")]
        ) from exc
    message_from_dict(data, path=path)


def normalize_messages(
    messages: str | Message | Mapping[str, Any] | Iterable[Any],
) -> tuple[Message, ...]:
    """Turn ``"Hello"``, a message, a dict, or a list of messages/dicts into messages.

    Raises :class:`ValidationError` listing every bad item with its index."""
    if isinstance(messages, str):
        return (Message(role="user", content=messages),)
    if isinstance(messages, (Message, Mapping)):
        messages = [messages]
    if not isinstance(messages, (list, tuple, Sequence)) or isinstance(
        messages, (bytes, bytearray)
    ):
        raise ValidationError(
            [
                (
                    "messages",
                    "expected a string, a message, or a list of messages, "
                    f"got {type(messages).__name__}",
                )
            ]
        )
    out: list[Message] = []
    problems: list[tuple[str, str]] = []
    for i, item in enumerate(messages):
        if isinstance(item, Message):
            try:
                _checked_message(item, f"messages[{i}]")
            except ValidationError as exc:
                problems.extend(exc.problems)
            out.append(item)
            continue
        try:
            out.append(message_from_dict(item, path=f"messages[{i}]"))
        except ValidationError as exc:
            problems.extend(exc.problems)
    if problems:
        raise ValidationError(problems)
    return tuple(out)
