"""chatcore's logger: loguru, silent until the application opts in (library etiquette),
with every record passed through the redaction patcher."""

from __future__ import annotations

from typing import Any

from loguru import logger as _root

from chatcore._redact import redact

_root.disable("chatcore")


def _patch(record: Any) -> None:
    record["message"] = redact(record["message"])
    extra = record["extra"]
    for key, value in list(extra.items()):
        if isinstance(value, str):
            extra[key] = redact(value)


logger = _root.patch(_patch)
