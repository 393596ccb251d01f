"""Removal of secrets from anything chatcore may show: messages, reprs, logs, bodies,
headers, answers, URLs.

Known secrets (every configured option declared ``secret=True``) are replaced wherever they
occur; on top of that, in error and log text, patterns that look like credentials
(``sk-...``, ``hf_...``, ``Bearer ...``, ``api-key`` and ``Authorization`` header values,
``key=`` query parameters, URL user-info) are masked. :func:`mask_secrets` and
:func:`redact_value` walk whole values (mappings' keys and values, lists, tuples, attrs
instances) and build new objects only where something was masked.
"""

from __future__ import annotations

import itertools
import operator
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, cast
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import attrs

MASK = "***"

#: Secrets shorter than this are not masked: replacing every "abc" would garble text
#: while hiding nothing worth hiding.
MIN_SECRET_LENGTH = 4

_PATTERNS = re.compile(
    r"""
    (?P<bearer>\b[Bb]earer\s+)[^\s'",;]+
    | (?P<hdr>\b(?:authorization|api-key|x-api-key|openai-api-key)["']?\s*[:=]\s*["']?
        (?:(?:bearer|basic|token)\s+)?)
      (?!\*\*\*)[^\s'",;]+
    | (?P<query>[?&#](?:api[_-]?key|key|token|access[_-]?token|auth[_-]?token|
        subscription[_-]?key|sig|signature|password|secret)=)(?!\*\*\*)[^&\s'"#]+
    | (?P<json>["'](?:api[_-]?key|access[_-]?token|token|secret|password|authorization)["']
        \s*:\s*["'])(?!\*\*\*)[^"']+
    | (?P<userinfo>(?<![a-z0-9+.\-])[a-z][a-z0-9+.\-]{0,31}://[^/\s:@]*:)(?!\*\*\*@)[^@/\s]+(?=@)
    | (?P<user>(?<![a-z0-9+.\-])[a-z][a-z0-9+.\-]{0,31}://)(?!\*\*\*@)[^/\s:@?#'"]+(?=@)
    | (?P<sk>\bsk-)[A-Za-z0-9_\-]{8,}
    | (?P<hf>\bhf_)[A-Za-z0-9]{8,}
    """,
    re.IGNORECASE | re.VERBOSE,
)
_GROUPS = ("bearer", "hdr", "query", "json", "userinfo", "user", "sk", "hf")


def _mask(match: re.Match[str]) -> str:
    for group in _GROUPS:
        prefix = match.group(group)
        if prefix is not None:
            return prefix + MASK
    return MASK  # pragma: no cover - every alternative has a named prefix


class KnownSecrets:
    """Secrets ready to mask: strings of at least :data:`MIN_SECRET_LENGTH` characters,
    without duplicates, longest first (so a secret that contains another is masked whole).

    An object that holds them may itself be shown or serialized (an error tracker
    walks an exception's attributes), so this holder never shows them: its ``repr`` and
    ``str`` say how many there are, it is no sequence ``json`` would write out, and it
    pickles empty."""

    __slots__ = ("values",)

    def __init__(self, values: Iterable[str] = ()) -> None:
        found = {s for s in values if isinstance(s, str) and len(s) >= MIN_SECRET_LENGTH}
        self.values: tuple[str, ...] = tuple(sorted(found, key=lambda s: (-len(s), s)))

    def __iter__(self) -> Iterator[str]:
        return iter(self.values)

    def __len__(self) -> int:
        return len(self.values)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, KnownSecrets) and other.values == self.values

    def __hash__(self) -> int:
        return hash(self.values)

    def __repr__(self) -> str:
        return f"KnownSecrets(<{len(self.values)} masked>)"

    __str__ = __repr__

    def __reduce__(self) -> tuple[type[KnownSecrets], tuple[()]]:
        return (KnownSecrets, ())


_NO_SECRETS = KnownSecrets()


def usable_secrets(secrets: Iterable[str]) -> KnownSecrets:
    """``secrets`` as :class:`KnownSecrets` (given one, returns it as is)."""
    if isinstance(secrets, KnownSecrets):
        return secrets
    found = KnownSecrets(secrets)
    return found if found.values else _NO_SECRETS


#: Characters JSON may escape inside a string other than by ``\\uXXXX`` (``\\"``,
#: ``\\\\``, ``\\/``): a secret holding one could hide from a byte search.
_JSON_ESCAPABLE = ('"', "\\", "/")


def may_hold_secret(
    raw: bytes | str, headers: Mapping[str, str] | None, secrets: KnownSecrets
) -> bool:
    """Whether an answer whose body bytes are ``raw`` (JSON or SSE text) and whose headers
    are ``headers`` might carry one of ``secrets`` once decoded. ``False`` is a promise:
    no secret occurs in the bytes, none can hide behind a JSON escape (the body has no
    ``\\u`` and no secret holds a character JSON escapes otherwise), and none is in a
    header; then the decoded answer needs no masking walk."""
    known = secrets.values
    if not known:
        return False
    if isinstance(raw, str):
        if "\\u" in raw:
            return True
        for secret in known:
            if secret in raw or any(c in secret for c in _JSON_ESCAPABLE):
                return True
    else:
        if b"\\u" in raw:
            return True
        for secret in known:
            if secret.encode("utf-8") in raw or any(c in secret for c in _JSON_ESCAPABLE):
                return True
    if headers:
        for value in headers.values():
            for secret in known:
                if secret in value:
                    return True
    return False


def _replace_known(text: str, secrets: tuple[str, ...]) -> str:
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """Return ``text`` with every known secret and every credential-looking token masked."""
    text = _replace_known(text, usable_secrets(secrets).values)
    if not text:
        return text
    return _PATTERNS.sub(_mask, text)


# --------------------------------------------------------------------------------------
# Whole values


def _walk(value: Any, on_str: Callable[[str], str]) -> Any:
    """``value`` with ``on_str`` applied to every string in it (mapping keys included);
    the very same object when nothing changed."""
    if isinstance(value, str):
        return on_str(value)
    if value is None or isinstance(value, (int, float, bytes)):
        return value
    if isinstance(value, Mapping):
        changed = False
        items = []
        for key, item in value.items():
            new_key, new_item = _walk(key, on_str), _walk(item, on_str)
            changed = changed or new_key is not key or new_item is not item
            items.append((new_key, new_item))
        return _rebuild_mapping(value, items) if changed else value
    if isinstance(value, (list, tuple)):
        new = [_walk(item, on_str) for item in value]
        if all(a is b for a, b in zip(new, value)):
            return value
        return new if isinstance(value, list) else _rebuild_sequence(value, new)
    if attrs.has(type(value)):
        changes = {}
        for field in attrs.fields(type(value)):
            if not field.init:
                continue
            item = getattr(value, field.name)
            new_item = _walk(item, on_str)
            if new_item is not item:
                changes[field.alias or field.name] = new_item
        return attrs.evolve(value, **changes) if changes else value
    return value


def _rebuild_mapping(original: Mapping[Any, Any], items: list[tuple[Any, Any]]) -> Any:
    """A mapping of ``original``'s type (a case-insensitive header mapping stays one)."""
    if type(original) is dict:
        return dict(items)
    try:
        return cast(Any, type(original))(items)
    except TypeError:  # a mapping type that cannot be built from pairs
        return dict(items)


def _rebuild_sequence(original: tuple[Any, ...], items: list[Any]) -> tuple[Any, ...]:
    if type(original) is tuple:
        return tuple(items)
    try:
        return type(original)(items)
    except TypeError:  # a named tuple: built from its fields
        return type(original)(*items)


def mask_secrets(value: Any, secrets: Iterable[str]) -> Any:
    """``value`` with every occurrence of a known secret masked in every string in it,
    recursively (mapping keys and values, lists, tuples, attrs instances such as
    :class:`~chatcore.models.ChatResponse`). Only exact secrets are masked, never
    patterns: an answer's text stays what the server sent, minus your keys. When no
    secret occurs, ``value`` itself is returned: the check is one ``in`` per string.
    Pass :class:`KnownSecrets` where it is called often (per chunk)."""
    known = usable_secrets(secrets).values
    if not known:
        return value
    strings: list[str] = []
    collect_strings(value, strings)
    text = "\0".join(strings)
    for secret in known:
        if secret in text:
            break
    else:
        return value

    def on_str(text: str) -> str:
        for secret in known:
            if secret in text:
                return _replace_known(text, known)
        return text

    return _walk(value, on_str)


_ATOMS = frozenset({int, float, bool, type(None), bytes})
#: Per attrs class, a getter of its init fields' values as one tuple (C-level, one call).
_ATTRS_GETTERS: dict[type[Any], Callable[[Any], tuple[Any, ...]]] = {}
#: Types seen that are not attrs classes (so ``attrs.has`` is asked once per type).
_OTHER_KINDS: set[type[Any]] = set()


def collect_strings(value: Any, out: list[str]) -> None:
    """Append every string in ``value`` (as :func:`mask_secrets` visits them) to
    ``out``: the cheap first pass of :func:`mask_secrets`. Exact type checks first, and strings and
    atoms are handled in the loops rather than by a call each (this runs per chunk)."""
    kind = type(value)
    if kind is str:
        out.append(value)
        return
    if kind in _ATOMS:
        return
    if kind is dict:
        for key, item in value.items():
            if type(key) is str:
                out.append(key)
            else:
                collect_strings(key, out)
            item_kind = type(item)
            if item_kind is str:
                out.append(item)
            elif item_kind not in _ATOMS:
                collect_strings(item, out)
        return
    if kind is list or kind is tuple:
        for item in value:
            item_kind = type(item)
            if item_kind is str:
                out.append(item)
            elif item_kind not in _ATOMS:
                collect_strings(item, out)
        return
    getter = _ATTRS_GETTERS.get(kind)
    if getter is None:
        if kind in _OTHER_KINDS or not attrs.has(kind):
            if len(_OTHER_KINDS) < 256:
                _OTHER_KINDS.add(kind)
            _collect_other(value, out)
            return
        names = [f.name for f in attrs.fields(kind) if f.init]
        single = operator.attrgetter(*names) if names else (lambda _obj: ())
        getter = single if len(names) != 1 else (lambda obj: (single(obj),))
        _ATTRS_GETTERS[kind] = getter
    for item in getter(value):
        item_kind = type(item)
        if item_kind is str:
            out.append(item)
        elif item_kind not in _ATOMS:
            collect_strings(item, out)


def _collect_other(value: Any, out: list[str]) -> None:
    if isinstance(value, str):
        out.append(value)
        return
    store = getattr(value, "_store", None)
    if type(value).__module__ == "requests.structures" and isinstance(store, dict):
        # requests' case-insensitive headers: its own store of (name, value) pairs, read
        # in C, is an order of magnitude quicker than the mapping protocol
        pairs = list(itertools.chain.from_iterable(store.values()))
        if set(map(type, pairs)) <= {str}:
            out.extend(pairs)
            return
        for item in pairs:
            collect_strings(item, out)
    elif isinstance(value, Mapping):
        for key, item in value.items():
            collect_strings(key, out)
            collect_strings(item, out)
    elif isinstance(value, (list, tuple)):
        for item in value:
            collect_strings(item, out)


def redact_value(value: Any, secrets: Iterable[str] = ()) -> Any:
    """``value`` with :func:`redact` (known secrets and credential patterns) applied to
    every string in it, recursively, keys and values; for what errors carry."""
    known = usable_secrets(secrets)

    def on_str(text: str) -> str:
        new = redact(text, known)
        return text if new == text else new

    return _walk(value, on_str)


def scrub_exception(error: BaseException, secrets: Iterable[str]) -> None:
    """Mask ``secrets`` in the text of ``error`` and of every exception chained to it
    (``__cause__``, ``__context__``, exception groups), so that a formatted traceback
    shows none: chatcore errors re-mask their wire attributes, other exceptions get their
    string arguments and notes masked. Changes the exceptions in place."""
    known = usable_secrets(secrets)
    if not known:
        return
    seen: set[int] = set()
    pending: list[BaseException] = [error]
    while pending:
        exc = pending.pop()
        if id(exc) in seen:
            continue
        seen.add(id(exc))
        add = getattr(exc, "add_secrets", None)
        if callable(add):
            add(known)
        else:
            args = mask_secrets(exc.args, known)
            if args is not exc.args:
                exc.args = args
        notes = getattr(exc, "__notes__", None)
        if isinstance(notes, list):
            notes[:] = mask_secrets(notes, known)
        pending.extend(e for e in (exc.__cause__, exc.__context__) if e is not None)
        group = getattr(exc, "exceptions", None)
        if isinstance(group, tuple):
            pending.extend(e for e in group if isinstance(e, BaseException))


# --------------------------------------------------------------------------------------
# URLs

#: Query parameters that carry a credential: a word of the name (split at ``_ - .``)
#: that ends with one of the first group, or is one of the second.
_CREDENTIAL_SUFFIXES = ("key", "token", "secret", "password", "passwd")
_CREDENTIAL_WORDS = frozenset(
    {"pwd", "sig", "signature", "auth", "authorization", "credential", "credentials", "jwt"}
)


def is_credential_name(name: str) -> bool:
    """Whether a query parameter called ``name`` carries a credential (``key``,
    ``api_key``, ``api-key``, ``apiKey``, ``token``, ``access_token``, ``sig``,
    ``password``...; not ``api-version``)."""
    for word in re.split(r"[_\-.\s]+", name.lower()):
        if word.endswith(_CREDENTIAL_SUFFIXES) or word in _CREDENTIAL_WORDS:
            return True
    return False


def url_credentials(url: str) -> list[str]:
    """Where ``url`` carries a credential, as short phrases that never show it (empty
    when it carries none): user-info (``https://user:KEY@host``), credential-named query
    or fragment parameters (``?key=``, ``?api_key=``, ``?token=``...), or a string shaped
    like a credential anywhere (``sk-...``)."""
    found: list[str] = []
    parts = urlsplit(url)
    if "@" in parts.netloc:
        found.append("user-info before '@' in the host part")
    for where, text in (("query", parts.query), ("fragment", parts.fragment)):
        for name, _value in parse_qsl(text, keep_blank_values=True):
            if is_credential_name(name):
                found.append(f"{where} parameter {name!r}")
    if not found and redact(url) != url:
        found.append("a string shaped like a credential")
    return found


def redact_url(url: str, secrets: Iterable[str] = ()) -> str:
    """``url`` with its user-info and the values of credential-named query and fragment
    parameters replaced by ``***``, then :func:`redact` applied; fit to show anywhere."""
    try:
        parts = urlsplit(url)
    except ValueError:  # not a URL at all: the patterns still apply
        return redact(url, secrets)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = MASK + "@" + netloc.rpartition("@")[2]
    query = _mask_params(parts.query)
    fragment = _mask_params(parts.fragment)
    if (netloc, query, fragment) != (parts.netloc, parts.query, parts.fragment):
        url = urlunsplit((parts.scheme, netloc, parts.path, query, fragment))
    return redact(url, secrets)


def _mask_params(text: str) -> str:
    if "=" not in text:
        return text
    out = []
    for piece in text.split("&"):
        name, sep, value = piece.partition("=")
        out.append(f"{name}{sep}{MASK}" if sep and value and is_credential_name(name) else piece)
    return "&".join(out)
