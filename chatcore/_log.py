"""chatcore's logger: loguru, silent until the application opts in (library etiquette),
with every record passed through the redaction patcher.

``configure_logging(level=..., json=...)`` turns it on. Every record's message and string
extras are redacted: credential patterns (``sk-...``, ``hf_...``, ``Bearer ...``,
``api-key`` / ``Authorization`` values, ``key=`` query parameters) and every secret the
process registered (providers register their configured API keys when created).
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterable
from typing import Any, TextIO

from chatcore._redact import redact

__all__ = ["configure_logging", "log_failure_once", "logger", "register_secrets"]

_secrets: frozenset[str] = frozenset()
_secrets_lock = threading.Lock()


def register_secrets(values: Iterable[str]) -> None:
    """Add secrets that must be masked in every log record from now on."""
    global _secrets
    new = {v for v in values if v and len(v) >= 4}
    if not new - _secrets:
        return
    with _secrets_lock:
        _secrets = _secrets | new


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value, _secrets)
    if isinstance(value, dict):
        return {k: _redact_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_redact_value(v) for v in value)
    return value


def _patch(record: Any) -> None:
    record["message"] = redact(record["message"], _secrets)
    extra = record["extra"]
    for key, value in list(extra.items()):
        extra[key] = _redact_value(value)
    exc = record.get("exception")
    if exc is not None and exc.value is not None:
        # the traceback text is rendered from the exception: mask its message too
        args = getattr(exc.value, "args", ())
        if args and isinstance(args[0], str):
            exc.value.args = (redact(args[0], _secrets), *args[1:])


_state: dict[str, Any] = {}
_state_lock = threading.Lock()


def _loguru() -> Any:
    """loguru's root logger, imported and set up (chatcore disabled) on first use."""
    root = _state.get("root")
    if root is None:
        with _state_lock:
            root = _state.get("root")
            if root is None:
                from loguru import logger as loaded

                loaded.disable("chatcore")
                _state["patched"] = loaded.patch(_patch)
                _state["root"] = root = loaded
    return root


class _LazyLogger:
    """chatcore's patched loguru logger, imported on the first log call (loguru costs tens
    of milliseconds to import; ``import chatcore`` should not pay it)."""

    def __getattr__(self, name: str) -> Any:
        _loguru()
        return getattr(_state["patched"], name)


logger: Any = _LazyLogger()


def logging_on() -> bool:
    """Whether :func:`configure_logging` turned chatcore's logging on: the per-request
    records (one a call) are only built then, so silent logging costs nothing."""
    return bool(_state.get("on"))


def configure_logging(
    level: str | None = "INFO",
    *,
    json: bool = False,
    sink: TextIO | Any = None,
) -> int | None:
    """Turn chatcore's logging on (``level=None`` turns it off again).

    Records go to ``sink`` (default: stderr) as text, or as one JSON object per line with
    ``json=True`` (loguru ``serialize``). Returns the loguru handler id, so the
    application can ``loguru.logger.remove(handler_id)`` it later."""
    root = _loguru()
    if level is None:
        root.disable("chatcore")
        _state["on"] = False
        return None
    root.enable("chatcore")
    _state["on"] = True
    if sink is None and not _state.get("default_removed"):
        # loguru's own default stderr handler (id 0) would print every chatcore record a
        # second time; remove it if the application has not already replaced it
        try:
            root.remove(0)
        except ValueError:
            pass
        _state["default_removed"] = True
    handler: int = root.add(
        sys.stderr if sink is None else sink,
        level=level.upper(),
        serialize=json,
        filter=lambda record: record["name"].startswith("chatcore"),
        format=("{time:YYYY-MM-DD HH:mm:ss.SSS} | {level:<7} | {name} | {message} | {extra}"),
    )
    return handler


def log_failure_once(seen: set[int], component: Any, what: str, exc: BaseException) -> None:
    """Log at ``ERROR`` that ``component`` (a metrics sink, a tracer: ``what``) failed,
    once per object (``seen`` holds the ids already reported), then stay quiet."""
    key = id(component)
    if key in seen:
        return
    seen.add(key)
    logger.error(
        "{what} {name} failed and will not be reported again: {error}",
        what=what,
        name=type(component).__name__,
        error=f"{type(exc).__name__}: {exc}",
    )
