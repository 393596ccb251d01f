"""Removal of secrets from any text chatcore may show: messages, reprs, logs, bodies.

Known secrets (configured API keys) are replaced wherever they occur; on top of that,
patterns that look like credentials (``sk-...``, ``hf_...``, ``Bearer ...``, ``api-key``
and ``Authorization`` header values, ``key=`` query parameters) are masked.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

MASK = "***"

_PATTERNS = re.compile(
    r"""
    (?P<bearer>\b[Bb]earer\s+)[^\s'",;]+
    | (?P<hdr>\b(?:authorization|api-key|x-api-key|openai-api-key)["']?\s*[:=]\s*["']?
        (?:(?:bearer|basic|token)\s+)?)
      (?!\*\*\*)[^\s'",;]+
    | (?P<query>[?&](?:api[_-]?key|key|token|access_token)=)[^&\s'"#]+
    | (?P<json>["'](?:api[_-]?key|access[_-]?token|token|secret|password|authorization)["']
        \s*:\s*["'])(?!\*\*\*)[^"']+
    | (?P<userinfo>[a-z][a-z0-9+.\-]*://[^/\s:@]*:)[^@/\s]+(?=@)
    | (?P<sk>\bsk-)[A-Za-z0-9_\-]{8,}
    | (?P<hf>\bhf_)[A-Za-z0-9]{8,}
    """,
    re.IGNORECASE | re.VERBOSE,
)


def _mask(match: re.Match[str]) -> str:
    for group in ("bearer", "hdr", "query", "json", "userinfo", "sk", "hf"):
        prefix = match.group(group)
        if prefix is not None:
            return prefix + MASK
    return MASK  # pragma: no cover - every alternative has a named prefix


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """Return ``text`` with every known secret and every credential-looking token masked."""
    for secret in secrets:
        if secret and len(secret) >= 4 and secret in text:
            text = text.replace(secret, MASK)
    if not text:
        return text
    return _PATTERNS.sub(_mask, text)
