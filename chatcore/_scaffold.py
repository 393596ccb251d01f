"""``chatcore new-plugin``: write a ready-to-test provider plugin project.

:func:`new_plugin` renders the templates in ``chatcore/templates/plugin`` into
``<directory>/chatcore-<name>/``:

- ``pyproject.toml`` (hatchling, version read from the package, ``chatcore>=X.Y,<...``, the
  ``chatcore`` entry point), ``README.md``, ``LICENSE`` (MIT, author to fill in),
  ``.gitignore``;
- ``chatcore_<name>/__init__.py``: ``__version__`` and the ``chatcore_providers`` hook
  returning a :class:`~chatcore.provider.ProviderSpec` with the options ``api_key`` (secret,
  ``<NAME>_API_KEY``) and ``base_url`` (``<NAME>_BASE_URL``);
- ``chatcore_<name>/_provider.py``: a translate-only provider for an OpenAI-compatible
  Chat Completions server that works as generated: it sets its target (base URL and key)
  and turns requests into :class:`~chatcore.provider.HttpCall` descriptions and answers
  back (``prepare_chat`` / ``parse_chat``, ``prepare_stream`` / ``stream_decoder``,
  ``prepare_models`` / ``parse_models``), so the core sends it under
  :class:`~chatcore.Client` and :class:`~chatcore.AsyncClient` alike;
- ``chatcore_<name>/py.typed``;
- ``tests/test_conformance.py`` (chatcore's :class:`ProviderConformance` against the stand-in
  server) and ``tests/test_provider.py`` (configuration, a chat, and a chat and a stream
  through ``AsyncClient``).

The generated tests pass out of the box once the project is installed
(``pip install -e ".[test]" && pytest``).

The command line wires it with :func:`add_new_plugin_parser` and :func:`cmd_new_plugin`.
"""

from __future__ import annotations

import argparse
import datetime
import re
import string
import sys
from importlib import resources
from pathlib import Path
from typing import Any, TextIO

from chatcore.exceptions import ConfigurationError

__all__ = [
    "NAME_PATTERN",
    "add_new_plugin_parser",
    "cmd_new_plugin",
    "core_requirement",
    "new_plugin",
    "validate_name",
]

#: A plugin or provider name: lowercase letters and digits, single dashes between them,
#: starting with a letter (``acme``, ``acme-cloud``, ``llm2``).
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9]*(?:-[a-z0-9]+)*$")
_MAX_NAME = 30

#: Template file (relative to ``templates/plugin``) -> output path (``$package`` replaced).
_FILES: dict[str, str] = {
    "pyproject.toml.tmpl": "pyproject.toml",
    "README.md.tmpl": "README.md",
    "LICENSE.tmpl": "LICENSE",
    "gitignore.tmpl": ".gitignore",
    "package/__init__.py.tmpl": "$package/__init__.py",
    "package/_provider.py.tmpl": "$package/_provider.py",
    "package/py.typed": "$package/py.typed",
    "tests/test_conformance.py.tmpl": "tests/test_conformance.py",
    "tests/test_provider.py.tmpl": "tests/test_provider.py",
}

EXIT_USAGE = 2


def validate_name(name: str, what: str = "plugin name") -> str:
    """``name`` if it is a valid plugin or provider name, else a
    :class:`~chatcore.exceptions.ConfigurationError` saying what is allowed."""
    if not isinstance(name, str) or not NAME_PATTERN.match(name) or len(name) > _MAX_NAME:
        raise ConfigurationError(
            f"invalid {what} {name!r}: use lowercase letters, digits and single dashes, "
            f"starting with a letter and at most {_MAX_NAME} characters "
            "(e.g. 'acme' or 'acme-cloud')"
        )
    return name


def core_requirement(version: str | None = None) -> str:
    """The requirement on chatcore a new plugin declares: ``chatcore>=X.Y`` of the running
    chatcore, below the next version allowed to break plugins (the next minor before 1.0,
    the next major after)."""
    if version is None:
        from chatcore import __version__

        version = __version__
    match = re.match(r"^(\d+)\.(\d+)", version)
    if match is None:  # pragma: no cover - chatcore's own version always matches
        return "chatcore"
    major, minor = int(match.group(1)), int(match.group(2))
    upper = f"0.{minor + 1}" if major == 0 else f"{major + 1}"
    return f"chatcore>={major}.{minor},<{upper}"


def _class_stem(provider: str) -> str:
    return "".join(part.capitalize() for part in provider.split("-"))


def _variables(name: str, provider: str) -> dict[str, str]:
    stem = _class_stem(provider)
    return {
        "name": name,
        "dist": f"chatcore-{name}",
        "package": "chatcore_" + name.replace("-", "_"),
        "entry_point": name,
        "provider": provider,
        "env_prefix": provider.upper().replace("-", "_"),
        "class_stem": stem,
        "class_name": f"{stem}Provider",
        "core_requirement": core_requirement(),
        "year": str(datetime.date.today().year),
    }


def _template(relative: str) -> str:
    node = resources.files("chatcore") / "templates" / "plugin"
    for part in relative.split("/"):
        node = node / part
    return node.read_text(encoding="utf-8")


def new_plugin(
    name: str, directory: Path, *, provider: str | None = None, force: bool = False
) -> Path:
    """Write the plugin project ``chatcore-<name>`` into ``directory`` and return its path.

    ``name`` is the plugin's name (``acme`` gives the distribution ``chatcore-acme``, the
    package ``chatcore_acme`` and the entry point ``acme``; a leading ``chatcore-`` is
    dropped); ``provider`` is the provider's name, as in ``"<provider>:<model>"`` (default:
    ``name``). A bad name, or an existing project directory without ``force``, raises
    :class:`~chatcore.exceptions.ConfigurationError` before anything is written. With
    ``force`` the generated files are overwritten; other files are left alone.
    """
    if isinstance(name, str) and name.startswith("chatcore-"):
        name = name[len("chatcore-") :]
    validate_name(name)
    provider = validate_name(provider if provider is not None else name, "provider name")
    values = _variables(name, provider)
    project = Path(directory) / values["dist"]
    if project.exists() and not force:
        raise ConfigurationError(
            f"{project} already exists; choose another name or directory, or use force "
            "(--force) to overwrite the generated files"
        )
    if project.exists() and not project.is_dir():
        raise ConfigurationError(f"{project} exists and is not a directory")
    rendered = {
        string.Template(out).substitute(values): string.Template(_template(src)).substitute(values)
        for src, out in _FILES.items()
    }
    for relative, text in rendered.items():
        path = project / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return project


# ------------------------------------------------------------------------------------------
# Command line


def add_new_plugin_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``new-plugin`` command to ``subparsers`` (from ``add_subparsers``)."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "new-plugin",
        help="write a new provider plugin project (chatcore-NAME) with its tests",
        description="Write chatcore-NAME/: a provider plugin for an OpenAI-compatible API, "
        "with the chatcore entry point, a README, an MIT LICENSE and conformance tests.",
    )
    p.add_argument("name", metavar="NAME", help="the plugin name, e.g. acme (gives chatcore-acme)")
    p.add_argument(
        "--provider", help="the provider name, as in PROVIDER:MODEL (default: the plugin name)"
    )
    p.add_argument(
        "-d",
        "--directory",
        default=".",
        help="where to create chatcore-NAME/ (default: the current directory)",
    )
    p.add_argument(
        "--force", action="store_true", help="overwrite the generated files if the project exists"
    )
    return p


def cmd_new_plugin(args: argparse.Namespace, out: TextIO) -> int:
    """Run ``chatcore new-plugin``: write the project and print the next steps."""
    try:
        project = new_plugin(
            args.name, Path(args.directory), provider=args.provider, force=args.force
        )
    except ConfigurationError as exc:
        sys.stderr.write(f"chatcore: error: {exc}\n")
        return EXIT_USAGE
    provider = args.provider or project.name[len("chatcore-") :]
    out.write(
        f"Created {project}\n\n"
        "Next steps:\n"
        f"  cd {project}\n"
        '  python -m pip install -e ".[test]"\n'
        "  python -m pytest\n"
        f"  chatcore plugins          # lists the provider {provider!r}\n\n"
        "Then fill in the author in pyproject.toml and LICENSE, and adapt\n"
        f"{project.name.replace('-', '_')}/_provider.py to your service.\n"
    )
    return 0
