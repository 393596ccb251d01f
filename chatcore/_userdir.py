"""The user's chatcore directory: stored API keys, the CLI's preferences (default model,
aliases, conversation logging), its conversation log and its line-editing history.

The directory is ``CHATCORE_USER_DIR`` when set, else ``%APPDATA%\\chatcore`` on Windows,
``~/Library/Application Support/chatcore`` on macOS and ``$XDG_CONFIG_HOME/chatcore``
(``~/.config/chatcore``) elsewhere. It is created owner-only (``0700``) and every file
written here is owner-only (``0600``), replaced atomically so a crash never leaves half a
file. :class:`~chatcore.Client` reads only ``keys.json`` (see :func:`stored_keys`), and
only when it resolves its settings from the real environment.
"""

from __future__ import annotations

import json
import os
import stat
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from chatcore.exceptions import ConfigurationError

__all__ = [
    "KEYS_FILE",
    "SETTINGS_FILE",
    "UserSettings",
    "delete_key",
    "keys_path",
    "read_json",
    "set_key",
    "stored_keys",
    "too_open",
    "user_dir",
    "write_json",
]

#: The variable naming the directory outright (tests, several profiles, containers).
USER_DIR_VARIABLE = "CHATCORE_USER_DIR"
KEYS_FILE = "keys.json"
SETTINGS_FILE = "cli.json"
_NOTE_KEY = "// note"
_NOTE = "API keys stored by `chatcore keys set`. Keep this file private; do not share it."


def user_dir(environ: Mapping[str, str] | None = None) -> Path:
    """The user's chatcore directory (not created here); see the module docstring."""
    env = os.environ if environ is None else environ
    named = env.get(USER_DIR_VARIABLE)
    if named:
        return Path(named).expanduser()
    home = Path(env["HOME"]) if env.get("HOME") else Path.home()
    if sys.platform == "win32":
        base = Path(env["APPDATA"]) if env.get("APPDATA") else home / "AppData" / "Roaming"
    elif sys.platform == "darwin":
        base = home / "Library" / "Application Support"
    else:
        xdg = env.get("XDG_CONFIG_HOME")
        base = Path(xdg) if xdg and os.path.isabs(xdg) else home / ".config"
    return base / "chatcore"


def ensure_dir(path: Path) -> Path:
    """Create ``path`` (and parents) if missing; a directory chatcore creates is ``0700``."""
    if not path.is_dir():
        try:
            path.mkdir(parents=True, mode=0o700, exist_ok=True)
        except OSError as exc:
            raise ConfigurationError(
                f"cannot create the chatcore user directory {str(path)!r}: {exc.strerror};"
                f" set {USER_DIR_VARIABLE} to a writable directory"
            ) from exc
    return path


def too_open(path: Path) -> bool:
    """Whether ``path`` exists and its group or others may read or write it (POSIX)."""
    if os.name != "posix":
        return False
    try:
        mode = path.stat().st_mode
    except OSError:
        return False
    return bool(mode & (stat.S_IRWXG | stat.S_IRWXO))


def read_json(path: Path) -> dict[str, Any]:
    """The JSON object in ``path`` (``{}`` when the file does not exist); a file that is
    not a JSON object raises :class:`ConfigurationError` naming it."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigurationError(f"cannot read {str(path)!r}: {exc.strerror}") from exc
    try:
        data = json.loads(text) if text.strip() else {}
    except ValueError as exc:
        raise ConfigurationError(
            f"{str(path)!r} is not valid JSON ({exc}); fix or delete it"
        ) from None
    if not isinstance(data, dict):
        raise ConfigurationError(f"{str(path)!r} must hold a JSON object; fix or delete it")
    return data


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    """Write ``data`` to ``path`` owner-only (``0600``), atomically (a temporary file in
    the same directory, then a rename)."""
    ensure_dir(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # mode 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2, sort_keys=True)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    if os.name == "posix":
        os.chmod(path, 0o600)


# --------------------------------------------------------------------------------------
# Keys


def keys_path(environ: Mapping[str, str] | None = None) -> Path:
    """Where ``chatcore keys set`` stores keys."""
    return user_dir(environ) / KEYS_FILE


def stored_keys(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Provider name -> stored API key (the note and empty values left out)."""
    data = read_json(keys_path(environ))
    return {
        name: value
        for name, value in data.items()
        if not name.startswith("//") and isinstance(value, str) and value
    }


def set_key(name: str, value: str, environ: Mapping[str, str] | None = None) -> Path:
    """Store ``value`` as provider ``name``'s key; returns the file written."""
    path = keys_path(environ)
    data = {k: v for k, v in read_json(path).items() if not k.startswith("//")}
    data[name] = value
    write_json(path, {_NOTE_KEY: _NOTE, **data})
    return path


def delete_key(name: str, environ: Mapping[str, str] | None = None) -> bool:
    """Remove provider ``name``'s stored key; whether there was one."""
    path = keys_path(environ)
    data = read_json(path)
    if name not in data or name.startswith("//"):
        return False
    del data[name]
    write_json(path, data)
    return True


# --------------------------------------------------------------------------------------
# The CLI's preferences


class UserSettings:
    """The CLI's preferences in ``cli.json``: the default model, model aliases, and
    whether conversations are logged. Read once; :meth:`save` writes them back."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self.path = user_dir(environ) / SETTINGS_FILE
        data = read_json(self.path)
        aliases = data.get("aliases", {})
        if not isinstance(aliases, dict) or not all(isinstance(v, str) for v in aliases.values()):
            raise ConfigurationError(
                f"{str(self.path)!r}: 'aliases' must map names to 'provider:model' strings"
            )
        default = data.get("default_model")
        if default is not None and not isinstance(default, str):
            raise ConfigurationError(f"{str(self.path)!r}: 'default_model' must be a string")
        log = data.get("log", True)
        if not isinstance(log, bool):
            raise ConfigurationError(f"{str(self.path)!r}: 'log' must be true or false")
        self.default_model: str | None = default
        self.aliases: dict[str, str] = dict(aliases)
        self.log: bool = log

    def save(self) -> None:
        data: dict[str, Any] = {"aliases": self.aliases, "log": self.log}
        if self.default_model is not None:
            data["default_model"] = self.default_model
        write_json(self.path, data)

    def resolve(self, model: str) -> str:
        """``model`` with an alias replaced by the model it names."""
        return self.aliases.get(model, model)
