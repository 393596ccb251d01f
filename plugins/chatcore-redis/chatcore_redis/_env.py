"""The two switches, read without importing redis-py (the plugin host loads every installed
plugin; an unconfigured one must cost nothing)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from chatcore.exceptions import ConfigurationError

__all__ = ["SWITCHES", "enabled", "environ_of", "flag"]

SWITCHES = ("CHATCORE_REDIS_LIMITER", "CHATCORE_REDIS_CACHE", "CHATCORE_REDIS_BUDGETS")
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})


def environ_of(settings: Any) -> Mapping[str, str]:
    """The environment to read ``CHATCORE_REDIS_*`` from: ``settings.environ`` when the
    object the hook receives carries one (``LoadedSettings`` does), else ``os.environ``
    (``chatcore.Settings``, which the Client hands to the hooks, does not)."""
    environ = getattr(settings, "environ", None)
    if isinstance(environ, Mapping):
        return environ
    return os.environ


def flag(environ: Mapping[str, str], name: str) -> bool:
    """A switch: 1/true/yes/on or 0/false/no/off (or unset); anything else is an error."""
    raw = environ.get(name, "")
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigurationError(f"{name}={raw!r}: expected 1/true/yes/on or 0/false/no/off")


def enabled(environ: Mapping[str, str]) -> bool:
    """Whether either switch is on (both are checked, so a bad value is always reported)."""
    switches = {name: flag(environ, name) for name in SWITCHES}
    return any(switches.values())
