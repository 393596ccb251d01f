"""Streaming: assembling deltas into a response, and the :class:`ChatStream` users iterate.

A stream is retried only until its first chunk reaches the caller; after that a failure
raises :class:`~chatcore.exceptions.StreamError` carrying what was received so far.
Breaking out early or closing the stream releases its connection.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from typing import Any

import attrs

from chatcore._redact import collect_strings, mask_secrets, scrub_exception, usable_secrets
from chatcore.exceptions import APIError, StreamError
from chatcore.models import (
    ChatChunk,
    ChatResponse,
    Choice,
    FunctionCall,
    Message,
    ToolCall,
    Usage,
)

__all__ = ["AsyncChatStream", "ChatStream", "StreamAssembler", "chunks_from_response"]


@attrs.define
class _ChoiceState:
    role: str = "assistant"
    content: list[str] = attrs.field(factory=list)
    refusal: list[str] = attrs.field(factory=list)
    saw_content: bool = False
    saw_refusal: bool = False
    finish_reason: str | None = None
    tool_calls: dict[int, dict[str, Any]] = attrs.field(factory=dict)
    logprobs: list[Any] = attrs.field(factory=list)


class StreamAssembler:
    """Accumulates :class:`ChatChunk` deltas into a complete :class:`ChatResponse`:
    content and refusal concatenated per choice, tool-call fragments joined by ``index``,
    reasoning kept on the message (``delta.reasoning_content`` pieces concatenated into
    ``reasoning_content``, ``delta.reasoning_details`` items appended in order)."""

    def __init__(self) -> None:
        self.id = ""
        self.model = ""
        self.created = 0
        self.usage: Usage | None = None
        self.system_fingerprint: str | None = None
        self._choices: dict[int, _ChoiceState] = {}
        self._text: list[str] = []
        # per choice index: reasoning text pieces, and reasoning blocks
        self._reasoning: dict[int, list[str]] = {}
        self._reasoning_details: dict[int, list[Mapping[str, Any]]] = {}

    @property
    def text(self) -> str:
        """The first choice's text received so far."""
        return "".join(self._text)

    def add(self, chunk: ChatChunk) -> None:
        """Fold one chunk in."""
        if chunk.id and not self.id:
            self.id = chunk.id
        if chunk.model and not self.model:
            self.model = chunk.model
        if chunk.created and not self.created:
            self.created = chunk.created
        if chunk.usage is not None:
            self.usage = chunk.usage
        for raw in chunk.choices:
            index = raw.get("index", 0)
            if type(index) is not int and not isinstance(index, int):
                continue
            state = self._choices.get(index)
            if state is None:
                state = self._choices[index] = _ChoiceState()
            delta = raw.get("delta")
            if type(delta) is dict or isinstance(delta, Mapping):
                role = delta.get("role")
                if isinstance(role, str) and role:
                    state.role = role
                content = delta.get("content")
                if type(content) is str or isinstance(content, str):
                    state.saw_content = True
                    state.content.append(content)
                    if index == 0:
                        self._text.append(content)
                refusal = delta.get("refusal")
                if refusal is not None and isinstance(refusal, str):
                    state.saw_refusal = True
                    state.refusal.append(refusal)
                calls = delta.get("tool_calls")
                if calls is not None and isinstance(calls, list):
                    for fragment in calls:
                        if isinstance(fragment, Mapping):
                            self._add_tool_fragment(state, fragment)
                reasoning = delta.get("reasoning_content")
                if reasoning is not None and isinstance(reasoning, str):
                    self._reasoning.setdefault(index, []).append(reasoning)
                details = delta.get("reasoning_details")
                if details is not None and isinstance(details, list):
                    kept = self._reasoning_details.setdefault(index, [])
                    kept.extend(dict(d) for d in details if isinstance(d, Mapping))
            reason = raw.get("finish_reason")
            if reason is not None and isinstance(reason, str):
                state.finish_reason = reason
            logprobs = raw.get("logprobs")
            if (
                logprobs is not None
                and isinstance(logprobs, Mapping)
                and isinstance(logprobs.get("content"), list)
            ):
                state.logprobs.extend(logprobs["content"])

    @staticmethod
    def _add_tool_fragment(state: _ChoiceState, fragment: Mapping[str, Any]) -> None:
        index = fragment.get("index", len(state.tool_calls))
        if not isinstance(index, int):
            return
        call = state.tool_calls.setdefault(
            index, {"id": "", "type": "function", "name": "", "arguments": []}
        )
        if isinstance(fragment.get("id"), str) and fragment["id"]:
            call["id"] = fragment["id"]
        if isinstance(fragment.get("type"), str):
            call["type"] = fragment["type"]
        function = fragment.get("function")
        if isinstance(function, Mapping):
            if isinstance(function.get("name"), str) and function["name"]:
                call["name"] = function["name"]
            arguments = function.get("arguments")
            if isinstance(arguments, str):
                call["arguments"].append(arguments)
            elif isinstance(arguments, Mapping):  # some servers send an object at once
                import json

                call["arguments"].append(json.dumps(arguments))

    @property
    def finished(self) -> bool:
        """Whether every choice seen so far has a finish reason."""
        return bool(self._choices) and all(
            s.finish_reason is not None for s in self._choices.values()
        )

    def response(self, *, provider: str, fallback_model: str = "", **meta: Any) -> ChatResponse:
        """The assembled response."""
        choices = []
        for index in sorted(self._choices):
            state = self._choices[index]
            calls = tuple(
                ToolCall(
                    id=c["id"],
                    type=c["type"],
                    function=FunctionCall(name=c["name"], arguments="".join(c["arguments"])),
                )
                for _i, c in sorted(state.tool_calls.items())
            )
            reasoning = self._reasoning.get(index)
            details = self._reasoning_details.get(index)
            message = Message(
                role=state.role,
                content="".join(state.content) if state.saw_content or not calls else None,
                tool_calls=calls or None,
                refusal="".join(state.refusal) if state.saw_refusal else None,
                reasoning_content="".join(reasoning) if reasoning is not None else None,
                reasoning_details=tuple(details) if details else None,
            )
            logprobs = {"content": state.logprobs} if state.logprobs else None
            choices.append(
                Choice(
                    index=index,
                    message=message,
                    finish_reason=state.finish_reason,
                    logprobs=logprobs,
                )
            )
        return ChatResponse(
            id=self.id,
            model=self.model or fallback_model,
            choices=tuple(choices),
            created=self.created,
            usage=self.usage,
            provider=provider,
            **meta,
        )


def chunks_from_response(response: ChatResponse) -> Iterator[ChatChunk]:
    """Replay a complete response as a stream (used for cache hits): one delta per choice,
    a finish chunk per choice, then the usage chunk."""
    for choice in response.choices:
        msg = choice.message
        delta: dict[str, Any] = {"role": msg.role}
        if msg.content is not None:
            delta["content"] = msg.text
        if msg.refusal is not None:
            delta["refusal"] = msg.refusal
        if msg.reasoning_content is not None:
            delta["reasoning_content"] = msg.reasoning_content
        if msg.reasoning_details:
            delta["reasoning_details"] = [dict(d) for d in msg.reasoning_details]
        if msg.tool_calls:
            delta["tool_calls"] = [
                {
                    "index": i,
                    "id": call.id,
                    "type": call.type,
                    "function": {"name": call.function.name, "arguments": call.function.arguments},
                }
                for i, call in enumerate(msg.tool_calls)
            ]
        yield ChatChunk(
            id=response.id,
            model=response.model,
            created=response.created,
            choices=({"index": choice.index, "delta": delta, "finish_reason": None},),
            provider=response.provider,
        )
        yield ChatChunk(
            id=response.id,
            model=response.model,
            created=response.created,
            choices=({"index": choice.index, "delta": {}, "finish_reason": choice.finish_reason},),
            provider=response.provider,
        )
    if response.usage is not None:
        yield ChatChunk(
            id=response.id,
            model=response.model,
            created=response.created,
            choices=(),
            usage=response.usage,
            provider=response.provider,
        )


class _StreamState:
    """What a stream keeps whichever way it is read: the chunks so far, the assembled
    answer, timings, masking of secrets, and the turning of a failure into a
    :class:`StreamError` with the partial text."""

    def __init__(
        self,
        first: ChatChunk | None,
        *,
        provider: str,
        model: str,
        attempts: int = 1,
        started: float | None = None,
        cached: bool = False,
        request_id: str | None = None,
        secrets: Iterable[str] = (),
        premasked: bool = False,
        deployments: tuple[str, ...] = (),
    ) -> None:
        self._secrets = usable_secrets(secrets)
        #: Through a route: the deployment of each attempt; the last one serves.
        self.deployments = deployments
        #: Through a route: the deployment that serves this stream.
        self.deployment = deployments[-1] if deployments else None
        #: The chunk source masks its chunks itself (the core's transports do, per event).
        self._premasked = premasked
        first = mask_secrets(first, self._secrets)
        self._first = first
        if request_id is None and first is not None:
            request_id = first.request_id
        request_id = mask_secrets(request_id, self._secrets)
        self.headers = first.headers if first is not None else None
        self.provider = provider
        self.model = model
        self.attempts = attempts
        self.cached = cached
        self.request_id = request_id
        self.started = time.perf_counter() if started is None else started
        self.first_chunk_at: float | None = time.perf_counter() if first is not None else None
        self.finished_at: float | None = None
        self._assembler = StreamAssembler()
        self._done = False
        self._closed = False
        self.response: ChatResponse | None = None
        self.chunk_count = 0

    @property
    def text(self) -> str:
        """The first choice's text received so far (all of it once exhausted); a secret
        that arrived split across chunks is masked here too."""
        text = self._assembler.text
        known = self._secrets.values
        if known and any(secret in text for secret in known):
            text = mask_secrets(text, self._secrets)
        return text

    @property
    def time_to_first_token(self) -> float | None:
        """Seconds from the call to the first chunk."""
        if self.first_chunk_at is None:
            return None
        return self.first_chunk_at - self.started

    def _accept(self, chunk: ChatChunk) -> ChatChunk:
        self.chunk_count += 1
        self._assembler.add(chunk)
        return chunk

    def _masked(self, chunk: ChatChunk) -> ChatChunk:
        """``chunk`` with the secrets masked. Runs per chunk, so the usual chunk (an exact
        :class:`ChatChunk` with only id, model and choices from the wire) is scanned
        directly; anything else goes through :func:`mask_secrets`."""
        known = self._secrets.values
        if not known or self._premasked:
            return chunk
        if (
            type(chunk) is ChatChunk
            and chunk.usage is None
            and chunk.request_id is None
            and chunk.headers is None
        ):
            # the other fields: created (an int) and provider (chatcore's own name)
            strings = [chunk.id, chunk.model, chunk.provider]
            collect_strings(chunk.choices, strings)
            text = "\0".join(strings)
            if not any(secret in text for secret in known):
                return chunk
        masked: ChatChunk = mask_secrets(chunk, self._secrets)
        return masked

    def _stream_error(self, exc: BaseException) -> StreamError:
        """The :class:`StreamError` a failure mid-stream is raised as (secrets masked,
        the partial text and attempts filled in)."""
        if isinstance(exc, StreamError):
            scrub_exception(exc, self._secrets)
            if not exc.partial_text:
                exc.partial_text = self.text
            exc.attempts = self.attempts
            return exc
        assert isinstance(exc, APIError)
        scrub_exception(exc, self._secrets)
        error = StreamError(
            f"the stream broke after {self.chunk_count} chunk(s): {exc.message}",
            provider=exc.provider or self.provider,
            model=exc.model or self.model,
            status_code=exc.status_code,
            request_id=exc.request_id or self.request_id,
            partial_text=self.text,
            attempts=self.attempts,
            secrets=self._secrets,
        )
        error.__cause__ = exc
        return error

    def _finish_state(self) -> None:
        self._done = True
        self.finished_at = time.perf_counter()
        response = self._assembler.response(
            provider=self.provider,
            fallback_model=self.model,
            request_id=self.request_id,
            latency=self.finished_at - self.started,
            attempts=self.attempts,
            cached=self.cached,
        )
        if self.deployments:
            response = attrs.evolve(
                response, deployment=self.deployment, deployments=self.deployments
            )
        # chunks are masked one by one; a secret split across two of them is whole only
        # in the assembled answer: one walk per stream masks it there
        self.response = mask_secrets(response, self._secrets)

    def _closed_early(self) -> StreamError:
        return StreamError(
            "the stream was closed before it completed",
            provider=self.provider,
            model=self.model,
            partial_text=self.text,
            secrets=self._secrets,
        )


class ChatStream(_StreamState):
    """An iterator of :class:`ChatChunk` that is also a context manager.

    After the stream is exhausted, :attr:`response` is the assembled
    :class:`ChatResponse` and :attr:`text` the full text. ``close()`` (or leaving the
    ``with`` block, or breaking out and dropping the stream) releases the connection.
    ``secrets`` are masked in every chunk, in :attr:`headers` and :attr:`request_id`, and
    in every error the stream raises.
    """

    def __init__(
        self,
        chunks: Iterator[ChatChunk],
        first: ChatChunk | None,
        *,
        provider: str,
        model: str,
        attempts: int = 1,
        started: float | None = None,
        cached: bool = False,
        request_id: str | None = None,
        on_complete: Callable[[ChatStream], None] | None = None,
        on_error: Callable[[ChatStream, BaseException], None] | None = None,
        on_close: Callable[[ChatStream], None] | None = None,
        secrets: Iterable[str] = (),
        premasked: bool = False,
        deployments: tuple[str, ...] = (),
    ) -> None:
        super().__init__(
            first,
            provider=provider,
            model=model,
            attempts=attempts,
            started=started,
            cached=cached,
            request_id=request_id,
            secrets=secrets,
            premasked=premasked,
            deployments=deployments,
        )
        self._chunks = chunks
        self._on_complete = on_complete
        self._on_error = on_error
        self._on_close = on_close

    def __iter__(self) -> ChatStream:
        return self

    def __next__(self) -> ChatChunk:
        if self._done or self._closed:
            raise StopIteration
        if self._first is not None:
            chunk, self._first = self._first, None
            return self._accept(chunk)
        try:
            chunk = next(self._chunks)
        except StopIteration:
            self._finish()
            raise
        except APIError as exc:
            error = self._stream_error(exc)
            self._fail(error)
            if error is exc:
                raise
            raise error from exc
        return self._accept(self._masked(chunk))

    def _finish(self) -> None:
        self._finish_state()
        if self._on_complete is not None:
            self._on_complete(self)

    def _fail(self, error: BaseException) -> None:
        self._done = True
        self.finished_at = time.perf_counter()
        self._close_source()
        if self._on_error is not None:
            self._on_error(self, error)

    def _close_source(self) -> None:
        close = getattr(self._chunks, "close", None)
        if close is not None:
            close()

    def read(self) -> ChatResponse:
        """Consume the rest of the stream and return the assembled response."""
        for _chunk in self:
            pass
        if self.response is None:  # closed early
            raise self._closed_early()
        return self.response

    def close(self) -> None:
        """Stop reading and release the connection (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._close_source()
        if not self._done and self._on_close is not None:
            self._on_close(self)

    def __enter__(self) -> ChatStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # pragma: no cover - interpreter shutdown
            pass


class AsyncChatStream(_StreamState):
    """An async iterator of :class:`ChatChunk` that is also an async context manager: the
    :class:`ChatStream` of :class:`~chatcore.AsyncClient`.

    ``async for chunk in stream``; after the end, :attr:`response` and :attr:`text`.
    ``await stream.aclose()`` (or leaving the ``async with`` block) releases the
    connection; a cancelled task reading it does too, and its call is settled."""

    def __init__(
        self,
        chunks: Any,
        first: ChatChunk | None,
        *,
        provider: str,
        model: str,
        attempts: int = 1,
        started: float | None = None,
        cached: bool = False,
        request_id: str | None = None,
        on_complete: Callable[[AsyncChatStream], Awaitable[None]] | None = None,
        on_error: Callable[[AsyncChatStream, BaseException], Awaitable[None]] | None = None,
        on_close: Callable[[AsyncChatStream], Awaitable[None]] | None = None,
        secrets: Iterable[str] = (),
        premasked: bool = False,
        deployments: tuple[str, ...] = (),
    ) -> None:
        super().__init__(
            first,
            provider=provider,
            model=model,
            attempts=attempts,
            started=started,
            cached=cached,
            request_id=request_id,
            secrets=secrets,
            premasked=premasked,
            deployments=deployments,
        )
        # a sync iterator (a cache replay) is read as it is
        self._sync = None if hasattr(chunks, "__anext__") else iter(chunks)
        self._chunks = chunks
        self._on_complete = on_complete
        self._on_error = on_error
        self._on_close = on_close

    def __aiter__(self) -> AsyncChatStream:
        return self

    async def __anext__(self) -> ChatChunk:
        if self._done or self._closed:
            raise StopAsyncIteration
        if self._first is not None:
            chunk, self._first = self._first, None
            return self._accept(chunk)
        try:
            if self._sync is not None:
                chunk = next(self._sync)
            else:
                chunk = await self._chunks.__anext__()
        except (StopIteration, StopAsyncIteration):
            self._finish_state()
            if self._on_complete is not None:
                await self._on_complete(self)
            raise StopAsyncIteration from None
        except APIError as exc:
            error = self._stream_error(exc)
            await self._fail(error)
            if error is exc:
                raise
            raise error from exc
        except BaseException as exc:
            if not isinstance(exc, Exception):  # a cancelled task: release the connection
                await self.aclose()
            raise
        return self._accept(self._masked(chunk))

    async def _fail(self, error: BaseException) -> None:
        self._done = True
        self.finished_at = time.perf_counter()
        await self._close_source()
        if self._on_error is not None:
            await self._on_error(self, error)

    async def _close_source(self) -> None:
        if self._sync is not None:
            close = getattr(self._sync, "close", None)
            if close is not None:
                close()
            return
        aclose = getattr(self._chunks, "aclose", None)
        if aclose is not None:
            await aclose()

    async def read(self) -> ChatResponse:
        """Consume the rest of the stream and return the assembled response."""
        async for _chunk in self:
            pass
        if self.response is None:  # closed early
            raise self._closed_early()
        return self.response

    async def aclose(self) -> None:
        """Stop reading and release the connection (idempotent)."""
        if self._closed:
            return
        self._closed = True
        try:
            await self._close_source()
        finally:
            if not self._done and self._on_close is not None:
                await self._on_close(self)

    async def __aenter__(self) -> AsyncChatStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
