"""In-process test doubles for chatcore and its plugins: a scripted provider, a metrics sink
that keeps every event, a sleep that never sleeps, log capture, and the plugin-host helpers
behind the pytest fixtures of :mod:`chatcore.testing.plugin`, and :func:`run_cli` to run
the ``chatcore`` command for real.

Nothing here imports pytest, so these work in any test runner.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import attrs

from chatcore.hookspecs import hookimpl
from chatcore.models import ChatChunk, ChatRequest, ChatResponse, Choice, Message, Usage
from chatcore.provider import (
    HttpCall,
    HttpResult,
    ModelInfo,
    Provider,
    ProviderConfig,
    ProviderSpec,
    model_infos,
    stream_chat_completions,
)

__all__ = [
    "ClientFactory",
    "LegacyWireProvider",
    "LogCapture",
    "MetricsRecorder",
    "OpenAIWireProvider",
    "RecordingSleep",
    "ScriptedCall",
    "ScriptedProvider",
    "capture_logs",
    "register_plugin",
    "run_cli",
    "unregister_plugin",
]

ScriptedReply = ChatResponse | Mapping[str, Any] | str | BaseException | type[BaseException]
"""What :meth:`ScriptedProvider.queue` takes: a response, a ``chat.completion`` dict, the
text of an answer, or an exception (instance or class) to raise."""

_WORDS = re.compile(r"\s*\S+|\s+$")


# ---------------------------------------------------------------------------------------------
# An OpenAI-wire provider for tests


class OpenAIWireProvider(Provider):
    """The smallest real provider: OpenAI Chat Completions (``api_key`` required,
    ``base_url``), with chat, stream (usage asked for) and model listing. It only
    translates, so it runs under :class:`~chatcore.Client` and
    :class:`~chatcore.AsyncClient` alike. Register it under any name in a test plugin to
    exercise the pipeline against :class:`~chatcore.testing.server.StandInServer` without
    installing a provider plugin."""

    def __init__(self, config: ProviderConfig) -> None:
        super().__init__(config)
        key = config.require("api_key")
        self.set_target(config["base_url"], headers={"Authorization": f"Bearer {key}"})

    def prepare_chat(self, request: ChatRequest) -> HttpCall:
        return HttpCall("POST", "/chat/completions", json=request.to_openai_dict())

    def parse_chat(self, request: ChatRequest, result: HttpResult) -> ChatResponse:
        return ChatResponse.from_dict(
            result.data, provider=self.name, request_id=result.request_id, headers=result.headers
        )

    def prepare_stream(self, request: ChatRequest) -> HttpCall:
        body = request.to_openai_dict()
        body.setdefault("stream_options", {"include_usage": True})
        return HttpCall("POST", "/chat/completions", json=body, stream=True)

    def prepare_models(self) -> HttpCall:
        return HttpCall("GET", "/models")

    def parse_models(self, result: HttpResult) -> list[ModelInfo]:
        return model_infos(self.name, result.data["data"])


class LegacyWireProvider(Provider):
    """:class:`OpenAIWireProvider` written as chatcore 0.1 providers were: it performs its
    own I/O (``chat`` / ``stream`` / ``list_models`` over :meth:`Provider.make_transport`).
    For testing the compatibility path: such a provider works under ``Client``, and under
    ``AsyncClient`` in worker threads."""

    def __init__(self, config: ProviderConfig) -> None:
        super().__init__(config)
        key = config.require("api_key")
        self.transport = self.make_transport(
            base_url=config["base_url"], headers={"Authorization": f"Bearer {key}"}
        )

    def chat(self, request: ChatRequest) -> ChatResponse:
        assert self.transport is not None
        result = self.transport.request(
            "POST", "/chat/completions", json_body=request.to_openai_dict(), model=request.model
        )
        return ChatResponse.from_dict(
            result.data, provider=self.name, request_id=result.request_id, headers=result.headers
        )

    def stream(self, request: ChatRequest) -> Iterator[ChatChunk]:
        assert self.transport is not None
        body = request.to_openai_dict()
        body.setdefault("stream_options", {"include_usage": True})
        yield from stream_chat_completions(
            self.transport, "/chat/completions", body, provider=self.name, model=request.model
        )

    def list_models(self) -> list[ModelInfo]:
        assert self.transport is not None
        return model_infos(self.name, self.transport.request("GET", "/models").data["data"])


# ---------------------------------------------------------------------------------------------
# Scripted provider


@attrs.frozen
class ScriptedCall:
    """One call the scripted provider received: ``"chat"`` or ``"stream"``, and the request."""

    method: str
    request: ChatRequest


class ScriptedProvider:
    """A provider whose answers are scripted, and a plugin offering it (register the object
    itself: it implements ``chatcore_providers``).

    Replies are consumed first-in first-out by ``chat`` and ``stream`` alike; when none is
    queued the answer is ``default_text`` (``"{prompt}"`` is replaced by the last user
    message). Streams yield a role chunk, one chunk per word, a finish chunk and a usage
    chunk; an exception reply is raised before the first chunk (so the core retries it as
    it would a failed HTTP request). :attr:`calls` records every request.
    """

    def __init__(
        self,
        name: str = "scripted",
        *,
        capabilities: Iterable[str] = ("chat", "stream"),
        models: Sequence[str] = ("scripted-model",),
        default_text: str = "scripted reply to: {prompt}",
    ) -> None:
        self.name = name
        self.capabilities = frozenset(capabilities)
        self.models = tuple(models)
        self.default_text = default_text
        self.calls: list[ScriptedCall] = []
        self._queue: list[ScriptedReply] = []
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<ScriptedProvider {self.name!r} queued={self.pending}>"

    # -- scripting --------------------------------------------------------------------------

    def queue(self, *replies: ScriptedReply) -> ScriptedProvider:
        """Queue replies (FIFO); returns ``self`` so calls can be chained."""
        with self._lock:
            self._queue.extend(replies)
        return self

    @property
    def pending(self) -> int:
        """How many queued replies are left."""
        with self._lock:
            return len(self._queue)

    @property
    def requests(self) -> list[ChatRequest]:
        """The requests received so far (chat and stream), oldest first."""
        with self._lock:
            return [c.request for c in self.calls]

    @property
    def last_request(self) -> ChatRequest:
        """The most recent request (``IndexError`` if none)."""
        with self._lock:
            return self.calls[-1].request

    def clear(self) -> None:
        """Forget queued replies and recorded calls."""
        with self._lock:
            self._queue.clear()
            self.calls.clear()

    # -- plugin -----------------------------------------------------------------------------

    def spec(self) -> ProviderSpec:
        """The :class:`ProviderSpec` of this provider (no options of its own)."""
        return ProviderSpec(
            name=self.name,
            factory=self._create,
            capabilities=self.capabilities,
            description="scripted replies (chatcore.testing)",
        )

    @hookimpl
    def chatcore_providers(self) -> list[ProviderSpec]:
        """Offer this provider."""
        return [self.spec()]

    def _create(self, config: ProviderConfig) -> Provider:
        return _ScriptedBackend(config, self)

    # -- answers ----------------------------------------------------------------------------

    def _next(self, method: str, request: ChatRequest) -> ChatResponse:
        with self._lock:
            self.calls.append(ScriptedCall(method, request))
            reply: ScriptedReply | None = self._queue.pop(0) if self._queue else None
        if reply is None:
            prompt = next((m.text for m in reversed(request.messages) if m.role == "user"), "")
            reply = self.default_text.replace("{prompt}", prompt)
        if isinstance(reply, BaseException) or (
            isinstance(reply, type) and issubclass(reply, BaseException)
        ):
            raise reply
        if isinstance(reply, ChatResponse):
            response = reply
        elif isinstance(reply, str):
            response = self._text_response(reply, request)
        else:
            response = ChatResponse.from_dict(reply, provider=self.name)
        return attrs.evolve(response, provider=self.name)

    def _text_response(self, text: str, request: ChatRequest) -> ChatResponse:
        prompt_chars = sum(len(m.text) for m in request.messages)
        usage = Usage(
            prompt_tokens=max(1, prompt_chars // 4),
            completion_tokens=max(1, len(text) // 4),
            total_tokens=max(1, prompt_chars // 4) + max(1, len(text) // 4),
        )
        with self._lock:
            number = len(self.calls)
        return ChatResponse(
            id=f"scripted-{number}",
            model=request.model,
            choices=(Choice(0, Message("assistant", text), "stop"),),
            usage=usage,
            provider=self.name,
            request_id=f"req_scripted_{number}",
        )

    def _chunks(self, response: ChatResponse) -> Iterator[ChatChunk]:
        def chunk(choices: Sequence[Mapping[str, Any]], usage: Usage | None = None) -> ChatChunk:
            return ChatChunk(
                id=response.id,
                model=response.model,
                created=response.created,
                choices=tuple(choices),
                usage=usage,
                provider=self.name,
            )

        first = True
        for choice in response.choices:
            msg = choice.message
            role = chunk([{"index": choice.index, "delta": {"role": msg.role, "content": ""}}])
            if first:
                role = attrs.evolve(role, request_id=response.request_id, headers=response.headers)
                first = False
            yield role
            for word in _WORDS.findall(msg.text):
                yield chunk([{"index": choice.index, "delta": {"content": word}}])
            for i, call in enumerate(msg.tool_calls or ()):
                fragment = {
                    "index": i,
                    "id": call.id,
                    "type": call.type,
                    "function": {"name": call.function.name, "arguments": call.function.arguments},
                }
                yield chunk([{"index": choice.index, "delta": {"tool_calls": [fragment]}}])
            yield chunk(
                [{"index": choice.index, "delta": {}, "finish_reason": choice.finish_reason}]
            )
        if response.usage is not None:
            yield chunk([], response.usage)


class _ScriptedBackend(Provider):
    """The provider instance a client creates; answers come from the :class:`ScriptedProvider`."""

    def __init__(self, config: ProviderConfig, script: ScriptedProvider) -> None:
        super().__init__(config)
        self.script = script

    def chat(self, request: ChatRequest) -> ChatResponse:
        return self.script._next("chat", request)

    def stream(self, request: ChatRequest) -> Iterator[ChatChunk]:
        response = self.script._next("stream", request)
        yield from self.script._chunks(response)

    def list_models(self) -> list[ModelInfo]:
        if "models" not in self.capabilities:
            return super().list_models()
        return [ModelInfo(id=m, provider=self.name) for m in self.script.models]


# ---------------------------------------------------------------------------------------------
# Metrics, sleeps, logs


class MetricsRecorder:
    """A metrics sink keeping every :class:`~chatcore.RequestEvent` (thread-safe)."""

    def __init__(self) -> None:
        self.events: list[Any] = []
        self._lock = threading.Lock()

    def record(self, event: Any) -> None:
        """Keep ``event``."""
        with self._lock:
            self.events.append(event)

    @property
    def requests(self) -> list[Any]:
        """The per-call events (``kind == "request"``)."""
        with self._lock:
            return [e for e in self.events if e.kind == "request"]

    @property
    def attempts(self) -> list[Any]:
        """The per-attempt events (``kind == "attempt"``)."""
        with self._lock:
            return [e for e in self.events if e.kind == "attempt"]

    def clear(self) -> None:
        """Forget every event."""
        with self._lock:
            self.events.clear()


class RecordingSleep:
    """A ``sleep`` that never sleeps: it records each delay (:attr:`delays`) and advances its
    own clock instead (:meth:`clock`, starting at ``start``). Give both to the retry policy
    and the rate limiter (:meth:`retry_policy`, :meth:`rate_limiter`) so their waits agree
    without any real waiting."""

    def __init__(self, start: float = 1000.0) -> None:
        self.delays: list[float] = []
        self.now = start
        self._lock = threading.Lock()

    def __call__(self, seconds: float) -> None:
        with self._lock:
            self.delays.append(seconds)
            self.now += max(0.0, seconds)

    def clock(self) -> float:
        """The virtual time: ``start`` plus every delay slept so far."""
        with self._lock:
            return self.now

    def retry_policy(self, **fields: Any) -> Any:
        """A :class:`~chatcore.RetryPolicy` (``fields`` as its own) on this sleep and clock."""
        from chatcore import RetryPolicy

        return RetryPolicy(sleep=self, clock=self.clock, **fields)

    def rate_limiter(self, limits: Mapping[str, Any] | None = None) -> Any:
        """An :class:`~chatcore.InMemoryRateLimiter` on this sleep and clock (the default
        limiter holds after a 429 and would otherwise wait for real)."""
        from chatcore import InMemoryRateLimiter

        return InMemoryRateLimiter(limits, clock=self.clock, sleep=self)


@attrs.define
class LogCapture:
    """chatcore's log output while :func:`capture_logs` is active: ``lines`` are the
    formatted records (after redaction), ``records`` loguru's record dicts."""

    lines: list[str] = attrs.field(factory=list)
    records: list[dict[str, Any]] = attrs.field(factory=list)

    @property
    def text(self) -> str:
        """Every line joined."""
        return "".join(self.lines)


@contextlib.contextmanager
def capture_logs(level: str = "DEBUG") -> Iterator[LogCapture]:
    """Turn chatcore's logging on (``chatcore.configure_logging``) into a :class:`LogCapture`;
    logging is turned off again on exit (the library default)."""
    from loguru import logger

    from chatcore import configure_logging

    capture = LogCapture()

    def sink(message: Any) -> None:
        capture.lines.append(str(message))
        capture.records.append(dict(message.record))

    handler = configure_logging(level, sink=sink)
    try:
        yield capture
    finally:
        if handler is not None:
            logger.remove(handler)
        configure_logging(None)


# ---------------------------------------------------------------------------------------------
# Clients


class ClientFactory:
    """Builds hermetic :class:`~chatcore.Client` objects: on ``host``, with ``environ={}``,
    a retry policy and a rate limiter that never sleep (:attr:`sleep` records the delays
    and keeps their virtual clock), and ``sinks`` as extra metrics sinks. :meth:`close`
    closes every client it built."""

    def __init__(
        self,
        host: Any,
        *,
        sleep: RecordingSleep | None = None,
        sinks: Iterable[Any] = (),
    ) -> None:
        self.host = host
        self.sleep = sleep if sleep is not None else RecordingSleep()
        self.sinks = tuple(sinks)
        self.clients: list[Any] = []

    def __call__(
        self, providers: Mapping[str, Mapping[str, Any]] | None = None, **kwargs: Any
    ) -> Any:
        """A client; ``kwargs`` go to :class:`~chatcore.Client` (``max_retries=0``,
        ``cache=True``, ``rate_limits={...}``, ``metrics_sinks=[...]``, ``environ={...}``)."""
        from chatcore import Client

        kwargs.setdefault("retry", self.sleep.retry_policy())
        if "rate_limiter" not in kwargs:
            kwargs["rate_limiter"] = self.sleep.rate_limiter(kwargs.get("rate_limits"))
        kwargs.setdefault("environ", {})
        kwargs["metrics_sinks"] = (*self.sinks, *kwargs.get("metrics_sinks", ()))
        client = Client(plugin_host=self.host, providers=providers, **kwargs)
        self.clients.append(client)
        return client

    def close(self) -> None:
        """Close every client built so far."""
        clients, self.clients = self.clients, []
        for client in clients:
            client.close()


# ---------------------------------------------------------------------------------------------
# Plugin host registration


def register_plugin(host: Any, plugin: object, name: str | None = None) -> str:
    """Register ``plugin`` (a module or an object with ``@hookimpl`` methods) into a
    :class:`~chatcore._plugins.PluginHost`; returns the name it was registered under.

    A plugin the host rejects (unknown hook, duplicate provider name, failing
    ``chatcore_providers``) raises ``ValueError`` with the host's reason."""
    name = name or getattr(plugin, "__name__", None) or f"{type(plugin).__name__}-{id(plugin):x}"
    # PluginHost has no public registration method yet; _register is its one entry point
    # for plugins passed in code (PluginHost(plugins=[...])).
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        host._register(plugin, name=name, distribution=None, version=None)
    record = host._records.get(name)
    if record is None or record.error is not None or not host.pm.is_registered(plugin):
        reason = record.error if record is not None else "not registered"
        if host.pm.is_registered(plugin):
            unregister_plugin(host, plugin, name)
        raise ValueError(f"plugin {name!r} could not be registered: {reason}")
    return name


def unregister_plugin(host: Any, plugin: object, name: str) -> None:
    """Undo :func:`register_plugin`: the plugin's hooks, providers and record are removed."""
    if host.pm.is_registered(plugin):
        host.pm.unregister(plugin)
    for provider, owner in list(host._provider_owner.items()):
        if owner == name:
            del host._provider_owner[provider]
            host._providers.pop(provider, None)
    host._records.pop(name, None)


# ---------------------------------------------------------------------------------------------
# The ``chatcore`` command, run for real

#: Environment variables a CLI run under test does not inherit: chatcore's own and the
#: bundled providers' (a developer's real keys must not leak into, or change, a test).
CLI_CLEARED_PREFIXES = ("CHATCORE_", "OPENAI_", "AZURE_OPENAI_", "HF_", "HUGGING_FACE_")


def run_cli(
    args: Sequence[str], environ: Mapping[str, str], cwd: str | os.PathLike[str]
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m chatcore._cli *args`` in ``cwd`` (pick an empty directory: no
    ``chatcore.toml`` or ``.env`` is read from it), with the current environment minus
    :data:`CLI_CLEARED_PREFIXES` plus ``environ``; output captured as text."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(CLI_CLEARED_PREFIXES)}
    return subprocess.run(
        [sys.executable, "-m", "chatcore._cli", *args],
        capture_output=True,
        text=True,
        env={**env, **environ},
        cwd=cwd,
        timeout=60,
        check=False,
    )
