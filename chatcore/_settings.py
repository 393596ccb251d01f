"""Client-level settings: one frozen :class:`Settings` resolved from four layers.

Precedence, highest first: explicit arguments > environment (``CHATCORE_<KEY>``, with a
``.env`` file underneath the real environment) > the TOML file (``chatcore.toml``) >
the defaults of the selected profile (``dev``, ``staging``, ``prod``). Every unknown key,
wrong type and out-of-range value is collected and raised as one
:class:`~chatcore.exceptions.ConfigurationError`; secrets are masked in every output.
Provider options are not resolved here: the file's ``[providers.*]`` tables are handed
back as the lowest layer for :func:`chatcore.provider.resolve_config`, and under them the
API keys stored by ``chatcore keys set`` (:mod:`chatcore._userdir`), read only when the
settings come from the real environment.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import attrs

from chatcore._limits import DEFAULT_MAX_SERVER_HOLD, MAX_SERVER_HOLD_LIMIT, RateLimit
from chatcore._redact import MASK, redact
from chatcore._routes import Route, parse_routes
from chatcore.exceptions import ConfigurationError
from chatcore.provider import ProviderSpec, Secret

__all__ = [
    "ENVIRONMENTS",
    "KNOWN_VARIABLES",
    "LOG_LEVELS",
    "PROFILES",
    "LoadedSettings",
    "Settings",
    "describe",
    "is_secret_name",
    "layer_provider_options",
    "load_settings",
    "profile_defaults",
    "render_config",
]

#: The profiles, selected by ``env``.
ENVIRONMENTS = ("dev", "staging", "prod")
#: Accepted ``log_level`` values (loguru's levels); ``None`` keeps chatcore silent.
LOG_LEVELS = ("TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR", "CRITICAL")
#: ``CHATCORE_*`` variables that are read elsewhere, or select the file and profile.
KNOWN_VARIABLES = frozenset(
    {
        "CHATCORE_CONFIG",
        "CHATCORE_ENV",
        "CHATCORE_STRICT_PLUGINS",
        "CHATCORE_DISABLE_PLUGINS",
        "CHATCORE_USER_DIR",
    }
)
#: The file read from the working directory when no path is given.
DEFAULT_FILE = "chatcore.toml"
_PREFIX = "CHATCORE_"
_SECRET_WORDS = ("key", "token", "secret", "password", "credential")
_NONE_WORDS = frozenset({"none", "null", "off", "silent"})
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def is_secret_name(name: str) -> bool:
    """Whether an option called ``name`` holds a secret (``*key*``, ``*token*``,
    ``*secret*``, ``*password*``, ``*credential*``): its value is never shown."""
    lowered = name.lower()
    return any(word in lowered for word in _SECRET_WORDS)


# --------------------------------------------------------------------------------------
# What each key accepts.


@attrs.frozen
class _Key:
    """The type and range of one setting, and how to say so in an error."""

    kind: str  # int | float | bool | str | env | log_level | rate_limits | providers
    allowed: str
    minimum: float | None = None
    maximum: float | None = None
    exclusive: bool = False
    optional: bool = False


_KEYS: dict[str, _Key] = {
    "env": _Key("env", "one of 'dev', 'staging', 'prod'"),
    "max_retries": _Key("int", "an integer >= 0", minimum=0),
    "timeout_total": _Key(
        "float", "a number > 0, or 'none' for no deadline", 0, exclusive=True, optional=True
    ),
    "max_retry_after": _Key("float", "a number > 0", minimum=0, exclusive=True),
    "max_server_hold": _Key(
        "float",
        f"a number of seconds > 0 and at most {MAX_SERVER_HOLD_LIMIT:g}",
        minimum=0,
        maximum=MAX_SERVER_HOLD_LIMIT,
        exclusive=True,
    ),
    "cache": _Key("bool", "true or false"),
    "cache_ttl": _Key(
        "float", "a number > 0, or 'none' for no expiry", 0, exclusive=True, optional=True
    ),
    "cache_maxsize": _Key("int", "an integer >= 1", minimum=1),
    "rate_limits": _Key(
        "rate_limits",
        "a mapping of 'provider' or 'provider:model' to {rps, rpm, tpm, burst, token_burst}",
    ),
    "budgets": _Key(
        "budgets",
        "a mapping of 'client', 'provider', 'provider:model', 'route:NAME', 'key:ID' or "
        "'key:*' to {usd, period}",
    ),
    "prices": _Key(
        "prices",
        "a mapping of 'provider' or 'provider:model' to {input, output, cached_input, "
        "cache_write, reasoning} in USD per million tokens",
    ),
    "max_total_chars": _Key("int", "an integer >= 1", minimum=1),
    "max_request_bytes": _Key("int", "an integer >= 1", minimum=1),
    "max_messages": _Key("int", "an integer >= 1", minimum=1),
    "log_level": _Key("log_level", "one of " + ", ".join(LOG_LEVELS) + ", or 'none'"),
    "log_json": _Key("bool", "true or false"),
    "health_host": _Key("str", "a host name or IP address"),
    "health_port": _Key("int", "an integer from 0 to 65535", minimum=0, maximum=65535),
    "readiness_ttl": _Key("float", "a number >= 0 (0: never cache)", minimum=0),
    "providers": _Key("providers", "a mapping of provider name to a mapping of options"),
    "routes": _Key(
        "routes",
        "a mapping of route name to {deployments, strategy, fallbacks, ...} (see docs/routes.md)",
    ),
}


def _check(name: str, value: Any) -> str | None:
    """Why a typed ``value`` is not acceptable for ``name``, or ``None`` when it is."""
    key = _KEYS[name]
    if value is None:
        return None if key.optional or key.kind == "log_level" else f"expected {key.allowed}"
    kind = key.kind
    if kind == "bool":
        return None if isinstance(value, bool) else f"expected {key.allowed}"
    if kind in ("int", "float"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"expected {key.allowed}"
        if kind == "int" and not isinstance(value, int):
            return f"expected {key.allowed}"
        if not math.isfinite(value):
            return f"expected {key.allowed} (a finite number)"
        low, high = key.minimum, key.maximum
        if low is not None and (value <= low if key.exclusive else value < low):
            return f"expected {key.allowed}"
        if high is not None and value > high:
            return f"expected {key.allowed}"
        return None
    if kind == "str":
        return None if isinstance(value, str) and value.strip() else f"expected {key.allowed}"
    if kind == "env":
        return (
            None
            if value in ENVIRONMENTS
            else f"expected {key.allowed}{_suggest(value, ENVIRONMENTS)}"
        )
    if kind == "log_level":
        ok = value in LOG_LEVELS
        return None if ok else f"expected {key.allowed}{_suggest(value, LOG_LEVELS)}"
    if kind == "rate_limits":
        if not isinstance(value, Mapping) or not all(
            isinstance(v, RateLimit) for v in value.values()
        ):
            return f"expected {key.allowed}"
        return None
    if kind == "routes":
        if not isinstance(value, Mapping) or not all(isinstance(v, Route) for v in value.values()):
            return f"expected {key.allowed}"
        return None
    if not isinstance(value, Mapping) or not all(isinstance(v, Mapping) for v in value.values()):
        return f"expected {key.allowed}"
    return None


def _validator(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    problem = _check(attribute.name, value)
    if problem is not None:
        raise ValueError(f"{attribute.name}={_show(attribute.name, value)}: {problem}")


def _mask_providers(value: Mapping[str, Mapping[str, Any]]) -> str:
    return repr({p: {k: _masked(k, v) for k, v in o.items()} for p, o in value.items()})


def _as_dict(value: Mapping[str, Any] | None) -> dict[str, Any]:
    return dict(value or {})


# --------------------------------------------------------------------------------------
# The settings.


@attrs.frozen(kw_only=True)
class Settings:
    """Every client-level setting, validated. The class defaults are the ``dev`` profile;
    :data:`PROFILES` lists what ``staging`` and ``prod`` change. Build it with
    :func:`load_settings` to get the precedence explicit > env > file > profile."""

    #: Profile: ``dev``, ``staging`` or ``prod`` (selects the defaults below).
    env: str = attrs.field(default="dev", validator=_validator)
    #: Retries after the first attempt (so ``max_retries + 1`` attempts).
    max_retries: int = attrs.field(default=2, validator=_validator)
    #: Deadline in seconds for one call including every retry and wait; ``None``: none.
    timeout_total: float | None = attrs.field(default=None, validator=_validator)
    #: Longest server-demanded ``Retry-After`` honoured; a longer demand stops retrying.
    max_retry_after: float = attrs.field(default=120.0, validator=_validator)
    #: Longest hold the rate limiter installs on a server's word (a 429's ``Retry-After``,
    #: ``x-ratelimit-reset-*`` with nothing remaining), in memory and in Redis.
    max_server_hold: float = attrs.field(default=DEFAULT_MAX_SERVER_HOLD, validator=_validator)
    #: Whether the built-in response cache is enabled.
    cache: bool = attrs.field(default=False, validator=_validator)
    #: Seconds a cached response lives; ``None``: until evicted.
    cache_ttl: float | None = attrs.field(default=3600.0, validator=_validator)
    #: Responses the cache keeps (least recently used are evicted).
    cache_maxsize: int = attrs.field(default=1024, validator=_validator)
    #: Client-side limits per ``provider`` or ``provider:model``.
    rate_limits: Mapping[str, RateLimit] = attrs.field(
        factory=dict, converter=_as_dict, validator=_validator
    )
    #: Spending limits in USD per period, per scope (see docs/cost.md).
    budgets: Mapping[str, Any] = attrs.field(factory=dict, converter=_as_dict, validator=_validator)
    #: The user's own prices, USD per million tokens, per ``provider[:model]``.
    prices: Mapping[str, Any] = attrs.field(factory=dict, converter=_as_dict, validator=_validator)
    #: Longest total text of one request's messages, in characters.
    max_total_chars: int = attrs.field(default=100_000, validator=_validator)
    #: Largest serialized request body, in bytes.
    max_request_bytes: int = attrs.field(default=4 * 1024 * 1024, validator=_validator)
    #: Most messages in one request.
    max_messages: int = attrs.field(default=2048, validator=_validator)
    #: Level of chatcore's log sink when logging is enabled; ``None``: silent.
    log_level: str | None = attrs.field(default="DEBUG", validator=_validator)
    #: Log records as JSON lines (loguru ``serialize=True``) instead of text.
    log_json: bool = attrs.field(default=False, validator=_validator)
    #: Address the health server (``/livez``, ``/readyz``, ``/metrics``) binds.
    health_host: str = attrs.field(default="127.0.0.1", validator=_validator)
    #: Port of the health server (0: any free port).
    health_port: int = attrs.field(default=8686, validator=_validator)
    #: Seconds a readiness result is reused before providers are probed again.
    readiness_ttl: float = attrs.field(default=0.0, validator=_validator)
    #: Provider options given as arguments, passed untouched to provider resolution.
    providers: Mapping[str, Mapping[str, Any]] = attrs.field(
        factory=dict, converter=_as_dict, validator=_validator, repr=_mask_providers
    )
    #: Routes (``route:NAME``): validated, from arguments and ``[routes.NAME]`` tables.
    routes: Mapping[str, Route] = attrs.field(
        factory=dict, converter=_as_dict, validator=_validator
    )


#: What each profile changes from the :class:`Settings` defaults (which are ``dev``).
#: Profiles change operational behaviour only (deadlines, logging, probe caching), never
#: what ``chat()`` returns: caching stays off everywhere unless asked for.
PROFILES: Mapping[str, Mapping[str, Any]] = {
    "dev": {},
    "staging": {
        "timeout_total": 120.0,
        "log_level": "INFO",
        "log_json": True,
        "readiness_ttl": 10.0,
    },
    "prod": {
        "timeout_total": 120.0,
        "log_level": "WARNING",
        "log_json": True,
        "readiness_ttl": 10.0,
    },
}

_FIELDS = tuple(f.name for f in attrs.fields(Settings))
#: Settings with one value and one source each (providers and routes are tables).
_SETTING_NAMES = tuple(n for n in _FIELDS if n not in ("providers", "routes"))


def profile_defaults(env: str) -> dict[str, Any]:
    """Every setting's default under profile ``env`` (no providers)."""
    if env not in PROFILES:
        raise ConfigurationError(
            f"env={env!r}: expected one of {', '.join(ENVIRONMENTS)}{_suggest(env, ENVIRONMENTS)}"
        )
    defaults = {f.name: _default(f) for f in attrs.fields(Settings) if f.name in _SETTING_NAMES}
    defaults.update(PROFILES[env])
    defaults["env"] = env
    return defaults


def _default(field: attrs.Attribute[Any]) -> Any:
    default: Any = field.default
    return default.factory() if isinstance(default, attrs.Factory) else default  # type: ignore[arg-type]


@attrs.frozen(kw_only=True)
class LoadedSettings:
    """The resolved settings and everything needed to pass them on.

    ``sources`` says where each setting came from (``argument``, ``env CHATCORE_X``,
    ``file <path>``, ``file <path> [profiles.prod]``, ``profile prod``).
    ``file_providers`` holds the file's provider options (secret-looking values wrapped
    in :class:`~chatcore.provider.Secret`): the lowest layer of provider resolution.
    ``environ`` is the environment to resolve providers from: the real environment over
    the ``.env`` file's values."""

    settings: Settings
    sources: Mapping[str, str]
    file_providers: Mapping[str, Mapping[str, Any]] = attrs.field(
        factory=dict, repr=_mask_providers
    )
    path: str | None = None
    environ: Mapping[str, str] = attrs.field(factory=dict, repr=False, eq=False)
    #: API keys stored by ``chatcore keys set`` (provider name -> key), the layer under
    #: the file, and the file they came from.
    stored_keys: Mapping[str, Secret] = attrs.field(factory=dict, repr=False)
    keys_path: str | None = None

    @property
    def env(self) -> str:
        """The selected profile."""
        return self.settings.env

    def provider_options(self, spec: ProviderSpec) -> dict[str, Any]:
        """The ``explicit`` mapping to give :func:`~chatcore.provider.resolve_config` for
        ``spec``: the argument's options, plus the file's where neither an argument nor
        one of the option's environment variables gives a value, plus the stored key
        (``chatcore keys set``) where none of those gives an ``api_key``."""
        merged = layer_provider_options(
            spec,
            self.settings.providers.get(spec.name),
            self.file_providers.get(spec.name),
            self.environ,
        )
        stored = self.stored_keys.get(spec.name)
        if stored is not None and merged.get("api_key") is None:
            merged = layer_provider_options(spec, merged, {"api_key": stored}, self.environ)
        return merged


def layer_provider_options(
    spec: ProviderSpec,
    explicit: Mapping[str, Any] | None,
    file_options: Mapping[str, Any] | None,
    environ: Mapping[str, str],
) -> dict[str, Any]:
    """Merge a provider's file options under its explicit ones, so that passing the
    result to :func:`~chatcore.provider.resolve_config` keeps explicit > environment
    (``CHATCORE_<P>_<OPT>`` and vendor variables) > file > default. Options the spec does
    not know are kept, so ``resolve_config`` reports them."""
    merged = dict(explicit or {})
    options = spec.all_options()
    for name, value in (file_options or {}).items():
        if merged.get(name) is not None:
            continue
        if name in options and any(environ.get(var) for var in spec.env_names(name)):
            continue
        merged[name] = value
    return merged


# --------------------------------------------------------------------------------------
# Loading.


@attrs.define
class _Problems:
    """Problems found so far, and every secret value that must not appear in them."""

    lines: list[str] = attrs.Factory(list)
    secrets: set[str] = attrs.Factory(set)

    def add(self, key: str, value: Any, source: str, why: str) -> None:
        self.lines.append(f"{key}={_show(key, value)} (from {source}): {why}")

    def note(self, text: str) -> None:
        self.lines.append(text)

    def shown(self) -> list[str]:
        """The problems, every secret masked."""
        return [redact(line, sorted(self.secrets, key=len, reverse=True)) for line in self.lines]

    def raise_if_any(self) -> None:
        if not self.lines:
            return
        lines = self.shown()
        if len(lines) == 1:
            text = f"invalid chatcore settings: {lines[0]}"
        else:
            text = f"invalid chatcore settings ({len(lines)} problems):\n  " + "\n  ".join(lines)
        raise ConfigurationError(text)


def load_settings(
    explicit: Mapping[str, Any] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    config_path: str | os.PathLike[str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    dotenv: bool = True,
    provider_names: Iterable[str] = (),
    user_keys: bool | None = None,
    report: list[str] | None = None,
) -> LoadedSettings:
    """Resolve every setting: explicit > environment > file > profile defaults.

    ``explicit`` maps setting names to values (``None`` means "not given"). ``environ``
    defaults to ``os.environ``; with ``dotenv`` a ``.env`` file in ``cwd`` is read
    underneath it (never overriding a variable that is set) when python-dotenv is
    installed. The file is ``config_path``, else ``CHATCORE_CONFIG``, else
    ``chatcore.toml`` in ``cwd`` (only a file named explicitly must exist).
    ``provider_names`` are providers whose ``CHATCORE_<PROVIDER>_*`` variables are never
    taken for misspelled settings. ``user_keys`` (default: when ``environ`` is ``None``)
    reads the keys stored by ``chatcore keys set`` as the lowest layer of ``api_key``.
    Raises one :class:`ConfigurationError` listing every problem; with ``report`` (a
    list) the problems are appended to it instead, and each invalid value is replaced by
    the layer under it (``chatcore config`` shows what is left and every problem)."""
    base = Path(os.getcwd() if cwd is None else cwd)
    real: Mapping[str, str] = os.environ if environ is None else environ
    env_view = _with_dotenv(real, base) if dotenv else real
    problems = _Problems()
    for var, value in env_view.items():
        if is_secret_name(var) and len(value) >= 8:
            problems.secrets.add(value)  # OPENAI_API_KEY, HF_TOKEN, ...: masked in errors

    given = {k: v for k, v in (explicit or {}).items() if v is not None}
    for key in sorted(set(given) - set(_FIELDS)):
        problems.add(key, given.pop(key), "argument", _unknown(key, _FIELDS))
    explicit_providers: dict[str, dict[str, Any]] = {}
    if "providers" in given:
        explicit_providers = _explicit_providers(given.pop("providers"), problems)
    explicit_routes = given.pop("routes", None)

    path, document = _read_file(config_path, env_view, base, problems)
    file_label = f"file {path}"
    top, profiles, file_provider_layers = _split_file(document, file_label, problems)

    # The profile first: every other default depends on it.
    env_layers = [
        ("argument", given.get("env")),
        (f"env {_PREFIX}ENV", env_view.get(f"{_PREFIX}ENV") or None),
        (file_label, top.get("env")),
    ]
    profile, env_source = "dev", "default"
    chosen = False
    for source, raw in env_layers:
        if raw is None:
            continue
        value, why = _convert("env", raw, from_env=source.startswith("env "))
        if why is not None:
            problems.add("env", raw, source, why)
        elif not chosen:
            profile, env_source, chosen = value, source, True
    profile_table = profiles.get(profile, {})
    profile_label = f"{file_label} [profiles.{profile}]"

    values: dict[str, Any] = {"env": profile}
    sources: dict[str, str] = {"env": env_source}
    defaults = profile_defaults(profile)
    for name in _SETTING_NAMES:
        if name == "env":
            continue
        var = _PREFIX + name.upper()
        layers = [
            ("argument", given.get(name), False),
            (f"env {var}", env_view.get(var) or None, True),
            (profile_label, profile_table.get(name), False),
            (file_label, top.get(name), False),
        ]
        found = False
        for source, raw, from_env in layers:
            if raw is None:
                continue
            value, why = _convert(name, raw, from_env=from_env)
            if why is not None:
                problems.add(name, raw, source, why)
            elif not found:
                values[name], sources[name], found = value, source, True
        if not found:
            values[name], sources[name] = defaults[name], f"profile {profile}"
    values["providers"] = explicit_providers
    sources["providers"] = "argument" if explicit_providers else "default"

    file_providers: dict[str, dict[str, Any]] = {}
    for layer in (file_provider_layers.get("", {}), file_provider_layers.get(profile, {})):
        for provider, options in layer.items():
            file_providers.setdefault(provider, {}).update(options)
    for options in (*file_providers.values(), *explicit_providers.values()):
        for option, value in options.items():
            if is_secret_name(option):
                secret = value.get() if isinstance(value, Secret) else value
                if isinstance(secret, str) and secret:
                    problems.secrets.add(secret)

    stored: dict[str, Secret] = {}
    keys_file: str | None = None
    if environ is None if user_keys is None else user_keys:
        from chatcore._userdir import keys_path, stored_keys

        try:
            stored = {p: Secret(k) for p, k in stored_keys(env_view).items()}
        except ConfigurationError as exc:
            problems.note(str(exc))
        keys_file = str(keys_path(env_view)) if stored else None
        problems.secrets.update(s.get() for s in stored.values())

    known_providers = {*provider_names, *file_providers, *explicit_providers}
    routes, sources["routes"] = _load_routes(
        explicit_routes,
        top.get("routes"),
        profile_table.get("routes"),
        (file_label, profile_label),
        set(provider_names) or None,
        problems,
    )
    values["routes"] = routes
    _check_variables(env_view, known_providers, problems)
    if report is not None:
        report.extend(problems.shown())
    else:
        problems.raise_if_any()
    return LoadedSettings(
        settings=Settings(**values),
        sources=sources,
        file_providers={
            p: {k: _wrap_secret(k, v) for k, v in o.items()} for p, o in file_providers.items()
        },
        path=path,
        environ=env_view,
        stored_keys=stored,
        keys_path=keys_file,
    )


def _import_first(*names: str) -> Any:
    """The first of the optional modules ``names`` that imports, else ``None``."""
    import importlib

    for name in names:
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    return None


def _with_dotenv(real: Mapping[str, str], base: Path) -> Mapping[str, str]:
    """``real`` over the values of ``base/.env`` (when python-dotenv is installed)."""
    dotenv_file = base / ".env"
    if not dotenv_file.is_file():
        return real
    dotenv = _import_first("dotenv")
    if dotenv is None:
        return real
    loaded = {k: v for k, v in dotenv.dotenv_values(dotenv_file).items() if v is not None}
    return _Overlay(real, loaded) if loaded else real


class _Overlay(Mapping[str, str]):
    """A live view of ``top`` over ``bottom``: a variable set in ``top`` always wins."""

    def __init__(self, top: Mapping[str, str], bottom: Mapping[str, str]) -> None:
        self.top = top
        self.bottom = bottom

    def __getitem__(self, key: str) -> str:
        try:
            return self.top[key]
        except KeyError:
            return self.bottom[key]

    def __iter__(self) -> Iterator[str]:
        yield from self.top
        yield from (k for k in self.bottom if k not in self.top)

    def __len__(self) -> int:
        return len(set(self.top) | set(self.bottom))

    def __repr__(self) -> str:
        return f"<environment: {len(self)} variables>"


def _read_file(
    config_path: str | os.PathLike[str] | None,
    environ: Mapping[str, str],
    base: Path,
    problems: _Problems,
) -> tuple[str | None, dict[str, Any]]:
    """The chosen file's path and parsed document (empty when there is none)."""
    if config_path is not None:
        path, named_by = Path(config_path), "config_path argument"
    elif environ.get(f"{_PREFIX}CONFIG"):
        path, named_by = Path(environ[f"{_PREFIX}CONFIG"]), f"env {_PREFIX}CONFIG"
    else:
        path, named_by = Path(DEFAULT_FILE), ""
    if not path.is_absolute():
        path = base / path
    if not path.is_file():
        if named_by:
            problems.note(f"config file {str(path)!r} (from {named_by}) does not exist")
        return None, {}
    tomllib = _import_first("tomllib", "tomli")  # tomli: Python 3.10
    if tomllib is None:
        problems.note(
            f"config file {str(path)!r} needs a TOML parser on Python < 3.11: pip install tomli"
        )
        return str(path), {}
    try:
        with path.open("rb") as fh:
            return str(path), tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        problems.note(f"config file {str(path)!r} could not be read: {exc}")
        return str(path), {}


def _split_file(
    document: Mapping[str, Any], label: str, problems: _Problems
) -> tuple[dict[str, Any], dict[str, dict[str, Any]], dict[str, dict[str, dict[str, Any]]]]:
    """(top-level settings, settings per ``[profiles.<env>]``, provider options per
    profile where ``""`` is the top level), reporting unknown keys."""
    allowed = (*_FIELDS, "profiles")
    top: dict[str, Any] = {}
    profiles: dict[str, dict[str, Any]] = {}
    providers: dict[str, dict[str, dict[str, Any]]] = {}
    for key, value in document.items():
        if key == "profiles":
            if not isinstance(value, Mapping):
                problems.add(key, value, label, "expected tables like [profiles.prod]")
                continue
            for env, table in value.items():
                where = f"profiles.{env}"
                if env not in ENVIRONMENTS:
                    why = f"unknown profile (allowed: {', '.join(ENVIRONMENTS)})"
                    problems.note(f"[{where}] (from {label}): {why}{_suggest(env, ENVIRONMENTS)}")
                    continue
                if not isinstance(table, Mapping):
                    problems.add(where, table, label, "expected a table of settings")
                    continue
                profiles[env] = {}
                for name, item in table.items():
                    if name == "providers":
                        providers[env] = _file_providers(item, f"{label} [{where}]", problems)
                    elif (name in _SETTING_NAMES and name != "env") or name == "routes":
                        profiles[env][name] = item
                    else:
                        names = [n for n in _FIELDS if n != "env"]
                        why = "not allowed in a profile" if name == "env" else _unknown(name, names)
                        problems.add(f"{where}.{name}", item, label, why)
        elif key == "providers":
            providers[""] = _file_providers(value, label, problems)
        elif key in allowed:
            top[key] = value
        else:
            problems.add(key, value, label, _unknown(key, allowed))
    return top, profiles, providers


def _load_routes(
    explicit: Any,
    file: Any,
    profile: Any,
    labels: tuple[str, str],
    providers: set[str] | None,
    problems: _Problems,
) -> tuple[dict[str, Route], str]:
    """The routes, validated: a route given as an argument replaces the file's route of the
    same name, and ``[profiles.<env>.routes.NAME]`` the top-level one. Every problem is
    added to ``problems``; secret-looking deployment options are masked in them."""
    merged: dict[str, Any] = {}
    source = "default"
    for raw, label in ((file, labels[0]), (profile, labels[1]), (explicit, "argument")):
        if raw is None:
            continue
        if not isinstance(raw, Mapping):
            problems.add("routes", raw, label, f"expected {_KEYS['routes'].allowed}")
            continue
        merged.update(raw)
        source = label
    for spec in merged.values():
        deployments = spec.get("deployments") if isinstance(spec, Mapping) else None
        for item in deployments if isinstance(deployments, (list, tuple)) else ():
            options = item.get("options") if isinstance(item, Mapping) else None
            for option, value in (options or {}).items() if isinstance(options, Mapping) else ():
                if is_secret_name(str(option)) and isinstance(value, str) and value:
                    problems.secrets.add(value)
    try:
        return parse_routes(merged, providers), source
    except ConfigurationError as exc:
        text = str(exc)
        found = text.split("\n  ")[1:] if text.startswith("invalid routes:") else [text]
        for problem in found:  # each problem on its own line, like every other setting's
            problems.note(f"{problem} (from {source})")
        return {}, source


def _file_providers(value: Any, source: str, problems: _Problems) -> dict[str, dict[str, Any]]:
    if not isinstance(value, Mapping):
        problems.add("providers", value, source, "expected tables like [providers.openai]")
        return {}
    out: dict[str, dict[str, Any]] = {}
    for provider, options in value.items():
        if not isinstance(options, Mapping):
            problems.add(
                f"providers.{provider}",
                options,
                source,
                f"expected a table of options like [providers.{provider}]",
            )
            continue
        out[provider] = dict(options)
    return out


def _explicit_providers(value: Any, problems: _Problems) -> dict[str, dict[str, Any]]:
    if not isinstance(value, Mapping):
        problems.add("providers", value, "argument", f"expected {_KEYS['providers'].allowed}")
        return {}
    out: dict[str, dict[str, Any]] = {}
    for provider, options in value.items():
        if not isinstance(options, Mapping):
            problems.add(f"providers.{provider}", options, "argument", "expected a mapping")
            continue
        out[provider] = dict(options)
    return out


def _convert(name: str, raw: Any, *, from_env: bool) -> tuple[Any, str | None]:
    """(value, None) or (None, why): ``raw`` turned into the setting's type. Environment
    values are text; argument and file values must already have the right type (except
    the word ``none`` for settings that may be unset, as TOML has no null)."""
    key = _KEYS[name]
    kind = key.kind
    value: Any = raw
    optional = key.optional or kind == "log_level"
    if optional and isinstance(raw, str) and raw.strip().lower() in _NONE_WORDS:
        return None, None
    if kind == "rate_limits":
        return _convert_rate_limits(raw, from_env=from_env)
    if kind in ("budgets", "prices"):
        return _convert_table(kind, raw, from_env=from_env)
    if isinstance(raw, str):
        text = raw.strip()
        if kind == "env":
            value = text.lower() if from_env else raw
        elif kind == "log_level":
            value = text.upper()
        elif from_env and kind == "bool":
            lowered = text.lower()
            if lowered not in _TRUE | _FALSE:
                return None, f"expected {key.allowed} (1/true/yes/on or 0/false/no/off)"
            value = lowered in _TRUE
        elif from_env and kind in ("int", "float"):
            try:
                value = int(text) if kind == "int" else float(text)
            except ValueError:
                return None, f"expected {key.allowed}"
    elif kind == "float" and isinstance(raw, int) and not isinstance(raw, bool):
        value = float(raw)
    why = _check(name, value)
    return (None, why) if why is not None else (value, None)


def _table(name: str, raw: Any, *, from_env: bool) -> tuple[Any, str | None]:
    """``(mapping, None)`` or ``(None, why)``: a table setting (JSON in the environment)."""
    allowed = _KEYS[name].allowed
    if from_env and isinstance(raw, str):
        import json

        try:
            raw = json.loads(raw)
        except ValueError as exc:
            return None, f"expected a JSON object: {allowed} ({exc})"
    if not isinstance(raw, Mapping):
        return None, f"expected {allowed}"
    return raw, None


def _convert_rate_limits(raw: Any, *, from_env: bool) -> tuple[Any, str | None]:
    raw, problem = _table("rate_limits", raw, from_env=from_env)
    if problem is not None:
        return None, problem
    limits: dict[str, RateLimit] = {}
    why: list[str] = []
    for key, value in raw.items():
        if not isinstance(key, str) or not key or key.startswith(":") or key.endswith(":"):
            why.append(f"key {key!r}: expected 'provider' or 'provider:model'")
            continue
        try:
            limits[key] = RateLimit.parse(key, value)
        except ConfigurationError as exc:
            why.append(str(exc))
    return (None, "; ".join(why)) if why else (limits, None)


def _convert_table(kind: str, raw: Any, *, from_env: bool) -> tuple[Any, str | None]:
    """``budgets`` / ``prices``: a mapping (JSON in the environment), each entry checked
    by its module; the value kept is the mapping itself."""
    raw, problem = _table(kind, raw, from_env=from_env)
    if problem is not None:
        return None, problem
    if kind == "budgets":
        from chatcore._budget import parse_budgets as parse
    else:
        from chatcore._cost import parse_prices as parse  # type: ignore[assignment]
    try:
        parse(raw)
    except ConfigurationError as exc:
        return None, str(exc)
    return {k: dict(v) if isinstance(v, Mapping) else v for k, v in raw.items()}, None


def _check_variables(
    environ: Mapping[str, str], providers: Iterable[str], problems: _Problems
) -> None:
    """Report ``CHATCORE_*`` variables that look like misspelled settings; provider
    options (``CHATCORE_<PROVIDER>_<OPTION>``) and unrelated variables are left alone."""
    settings = {_PREFIX + n.upper() for n in _SETTING_NAMES}
    others = sorted(
        v for v in environ if v.startswith(_PREFIX) and v not in settings | KNOWN_VARIABLES
    )
    if not others:
        return
    import difflib

    prefixes = tuple(p.upper().replace("-", "_") + "_" for p in providers)
    candidates = sorted(settings | KNOWN_VARIABLES)
    for var in others:
        rest = var[len(_PREFIX) :]
        if var == f"{_PREFIX}PROVIDERS":
            problems.add(
                var,
                environ[var],
                f"env {var}",
                f"set provider options one by one, e.g. {_PREFIX}OPENAI_TIMEOUT=30",
            )
            continue
        if rest.startswith(prefixes):
            continue
        close = difflib.get_close_matches(var, candidates, n=1, cutoff=0.85)
        if close:
            problems.add(
                var, environ[var], "environment", f"unknown variable; did you mean {close[0]}?"
            )


# --------------------------------------------------------------------------------------
# Showing.


def _masked(name: str, value: Any) -> Any:
    """``value`` with secrets replaced by ``***`` (for display only)."""
    if isinstance(value, Secret) or (is_secret_name(name) and value is not None):
        return MASK
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {k: _masked(str(k), v) for k, v in value.items()}
    return value


def _wrap_secret(name: str, value: Any) -> Any:
    if is_secret_name(name) and isinstance(value, str):
        return Secret(value)
    return value


def _show(name: str, value: Any, limit: int = 80) -> str:
    leaf = name.rsplit(".", 1)[-1]
    if is_secret_name(leaf) and value is not None:
        return MASK
    text = redact(repr(_masked(leaf, value)))
    return text if len(text) <= limit else text[: limit - 3] + "..."


_ALIASES = {"production": "prod", "development": "dev", "develop": "dev", "stage": "staging"}


def _suggest(value: Any, choices: Iterable[str], cutoff: float = 0.6) -> str:
    """`` (did you mean 'x'?)`` for a near miss, else ``""``."""
    if not isinstance(value, str):
        return ""
    import difflib

    choices = list(choices)
    alias = _ALIASES.get(value.strip().lower())
    if alias in choices:
        return f" (did you mean {alias!r}?)"
    close = difflib.get_close_matches(value, choices, n=1, cutoff=cutoff)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _unknown(key: str, choices: Iterable[str]) -> str:
    """Why an unknown key is refused: the nearest known key, or every allowed one."""
    choices = sorted(choices)
    return "unknown setting" + (_suggest(key, choices) or f" (allowed: {', '.join(choices)})")


def _display(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, RateLimit):
        return ", ".join(f"{k}={v:g}" for k, v in _limit_dict(value).items())
    return redact(str(value))


def _limit_dict(limit: RateLimit) -> dict[str, float]:
    return {k: v for k, v in attrs.asdict(limit).items() if v is not None}


def _provider_entries(
    loaded: LoadedSettings, specs: Mapping[str, ProviderSpec] | None
) -> list[tuple[str, str, Any, str]]:
    """(provider, option, masked value, source) for every provider option set anywhere
    (with ``specs``, vendor variables such as ``OPENAI_API_KEY`` count too)."""
    explicit = loaded.settings.providers
    file = loaded.file_providers
    names = sorted({*explicit, *file, *(specs or {}), *loaded.stored_keys})
    out: list[tuple[str, str, Any, str]] = []
    for provider in names:
        spec = (specs or {}).get(provider)
        options = set(explicit.get(provider, {})) | set(file.get(provider, {}))
        if provider in loaded.stored_keys:
            options.add("api_key")
        if spec is not None:
            options |= set(spec.all_options())
        for option in sorted(options):
            if spec is not None and option in spec.all_options():
                variables: tuple[str, ...] = spec.env_names(option)
            else:
                variables = (f"{_PREFIX}{provider.upper().replace('-', '_')}_{option.upper()}",)
            value: Any = explicit.get(provider, {}).get(option)
            source = "argument"
            if value is None:
                var = next((v for v in variables if loaded.environ.get(v)), None)
                if var is not None:
                    value, source = loaded.environ[var], f"env {var}"
                elif option in file.get(provider, {}):
                    value, source = file[provider][option], f"file {loaded.path}"
                elif option == "api_key" and provider in loaded.stored_keys:
                    value, source = loaded.stored_keys[provider], f"keys {loaded.keys_path}"
                else:
                    continue
            out.append((provider, option, _masked(option, value), source))
    return out


def describe(
    loaded: LoadedSettings, *, specs: Mapping[str, ProviderSpec] | None = None
) -> list[tuple[str, str, str]]:
    """Rows ``(key, shown value, source)`` of every setting and every provider option
    that is set, secrets masked. ``specs`` (provider name to spec) lets the rows show
    options that come from vendor variables too."""
    rows: list[tuple[str, str, str]] = [("config_file", loaded.path or "none", "")]
    settings = loaded.settings
    for name in _SETTING_NAMES:
        source = loaded.sources.get(name, "")
        if name == "rate_limits":
            if not settings.rate_limits:
                rows.append((name, "none", source))
            for key, limit in sorted(settings.rate_limits.items()):
                rows.append((f"rate_limits.{key}", _display(limit), source))
            continue
        rows.append((name, _display(getattr(settings, name)), source))
    for provider, option, value, source in _provider_entries(loaded, specs):
        rows.append((f"providers.{provider}.{option}", _display(value), source))
    for name, route in sorted(settings.routes.items()):
        rows.append((f"routes.{name}", describe_route(route), loaded.sources.get("routes", "")))
    return rows


def describe_route(route: Route) -> str:
    """One line saying what a route does (no option values: they may hold keys)."""
    parts = [f"strategy={route.strategy}"]
    deployments = []
    for d in route.deployments:
        extra = [f"weight={d.weight:g}"] if d.weight != 1.0 else []
        if d.options:
            extra.append("options=" + ",".join(sorted(d.options)))
        if d.rate_limit is not None:
            extra.append("rate_limits")
        model = f"{d.provider}:{d.model}"
        shown = d.name if d.name == model else f"{d.name}={model}"
        deployments.append(shown + (f" ({' '.join(extra)})" if extra else ""))
    parts.append("deployments=[" + ", ".join(deployments) + "]")
    for key in ("fallbacks", "context_window_fallbacks", "content_policy_fallbacks"):
        targets = getattr(route, key)
        if targets:
            parts.append(f"{key}=[{', '.join(targets)}]")
    return " ".join(parts)


def render_config(
    loaded: LoadedSettings,
    *,
    json: bool = False,
    specs: Mapping[str, ProviderSpec] | None = None,
) -> str:
    """``chatcore config`` output: an aligned table of :func:`describe`'s rows, or JSON
    (``{"config_file", "settings": {key: {value, source}}, "providers": ...}``)."""
    if json:
        import json as json_module

        data: dict[str, Any] = {"config_file": loaded.path, "settings": {}, "providers": {}}
        for name in _SETTING_NAMES:
            value: Any = getattr(loaded.settings, name)
            if name == "rate_limits":
                value = {k: _limit_dict(v) for k, v in value.items()}
            data["settings"][name] = {"value": value, "source": loaded.sources.get(name, "")}
        for provider, option, shown, source in _provider_entries(loaded, specs):
            entry = {"value": shown, "source": source}
            data["providers"].setdefault(provider, {})[option] = entry
        data["routes"] = {
            name: {"value": describe_route(route), "source": loaded.sources.get("routes", "")}
            for name, route in sorted(loaded.settings.routes.items())
        }
        text = json_module.dumps(data, indent=2, sort_keys=False, default=str)
        return redact(text)
    rows = [("KEY", "VALUE", "SOURCE"), *describe(loaded, specs=specs)]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = []
    for n, row in enumerate(rows):
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines) + "\n"
