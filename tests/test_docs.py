"""Meta-tests of the documentation: it covers the hooks and the public API, and its Python
examples run.

- every hook in :mod:`chatcore.hookspecs` has a section in ``docs/hooks.md`` that shows its
  exact signature, and a test named for it exists in ``tests/`` or ``plugins/*/tests``;
- every name in ``chatcore.__all__`` appears in ``docs/api.md``;
- every page's ```` ```python ```` blocks run, in order, in one namespace per page, against
  local stand-in servers (``OPENAI_API_KEY`` / ``OPENAI_BASE_URL`` / ``HF_TOKEN`` point at
  them, and any other provider URL is redirected to them, from ``Client`` and
  ``AsyncClient`` alike: nothing leaves the machine). The HTML comment on the line before a
  block changes how it runs:

  - ``<!-- no-run -->``: skipped (a fragment, a sketch that needs a real service, or a
    block that only shows a file's contents);
  - ``<!-- raises: ConfigurationError -->``: the block must raise that exception (a class
    name anywhere in the raised exception's MRO);
  - ``<!-- requires: fastapi, httpx2|httpx, python>=3.11 -->``: the block runs only where
    each of these is installed (``a|b``: either one) and on that Python; where one is
    missing, the page's other blocks still run, and the page is reported as skipped,
    naming the blocks not run and what they need.

  A page that leaves an ``AsyncClient`` open fails (``aclose()`` it, or use ``async
  with``). Pages in :data:`KNOWN_FAILING` are strict xfails;
- every page is in the nav of ``mkdocs.yml``, and the plugin tutorial shows exactly the
  files ``chatcore new-plugin acme`` writes.
"""

from __future__ import annotations

import ast
import contextlib
import inspect
import os
import re
import signal
import socket
import sys
import threading
import types
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import pytest

import chatcore
from chatcore import hookspecs

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
NO_RUN = "<!-- no-run -->"
_RAISES = re.compile(r"^<!-- raises: (?P<name>\w+) -->$")
_REQUIRES = re.compile(r"^<!-- requires: (?P<what>[\w.,|>=\s]+?) -->$")
#: Seconds a page's blocks may take together.
PAGE_TIMEOUT = 30

HOOKS = sorted(
    name
    for name, value in vars(hookspecs).items()
    if name.startswith("chatcore_") and callable(value)
)


# -- hooks ------------------------------------------------------------------------------------


def _signature(name: str) -> tuple[str, str]:
    """The hook's call form (``chatcore_cache(settings)``) and its typed ``def`` line
    (``def chatcore_cache(settings: Any) -> Any``), from the spec itself."""
    func = getattr(hookspecs, name)
    sig = inspect.signature(func)
    call = f"{name}({', '.join(sig.parameters)})"
    params = ", ".join(
        f"{p.name}: {p.annotation}" if p.annotation is not inspect.Parameter.empty else p.name
        for p in sig.parameters.values()
    )
    ret = "" if sig.return_annotation is inspect.Signature.empty else f" -> {sig.return_annotation}"
    return call, f"def {name}({params}){ret}"


def _sections(text: str) -> dict[str, str]:
    """``## `name` `` sections of a page: heading name -> section text."""
    out: dict[str, str] = {}
    for match in re.finditer(r"^## `?([\w.]+)`?[^\n]*\n(.*?)(?=^## |\Z)", text, re.M | re.S):
        out[match.group(1)] = match.group(2)
    return out


def test_hooks_are_found():
    """The hooks checked here are the specs pluggy sees (and ``hookspecs.__all__`` names)."""
    import pluggy

    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    assert sorted(pm.hook.__dict__) == HOOKS
    assert set(HOOKS) == {n for n in hookspecs.__all__ if n.startswith("chatcore_")}


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_has_a_section_with_its_signature(hook):
    sections = _sections((DOCS / "hooks.md").read_text(encoding="utf-8"))
    assert hook in sections, f"docs/hooks.md has no '## `{hook}`' section"
    section = sections[hook]
    call, definition = _signature(hook)
    assert f"`{call}`" in section, f"the {hook} section does not show `{call}`"
    assert definition in section, f"the {hook} section does not show `{definition}`"
    firstresult = bool(getattr(hookspecs, hook).chatcore_spec.get("firstresult"))
    decorator = "@hookspec(firstresult=True)" if firstresult else "@hookspec\n"
    assert decorator in section, f"the {hook} section does not show {decorator.strip()}"


def _test_names() -> set[str]:
    names: set[str] = set()
    roots = [ROOT / "tests", *sorted((ROOT / "plugins").glob("*/tests"))]
    for root in roots:
        for path in root.rglob("test_*.py"):
            if path.resolve() == Path(__file__).resolve():
                continue
            tree = ast.parse(path.read_text(encoding="utf-8"))
            names.update(
                node.name
                for node in ast.walk(tree)
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
                and node.name.startswith("test_")
            )
    return names


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_has_a_test_named_for_it(hook):
    """A test whose name contains the hook's name (``test_*chatcore_cache*``) exists in the
    core's or a bundled plugin's suite (this file does not count)."""
    named = sorted(n for n in _test_names() if hook in n)
    assert named, f"no test named test_*{hook}* in tests/ or plugins/*/tests"


# -- the API reference ------------------------------------------------------------------------


REFERENCE_PAGES = [
    "api.md",
    *sorted(f"reference/{p.name}" for p in (DOCS / "reference").glob("*.md")),
]


def _directives() -> dict[str, str]:
    """``::: dotted.name`` directives of the API reference pages: target -> page."""
    found: dict[str, str] = {}
    for page in REFERENCE_PAGES:
        text = (DOCS / page).read_text(encoding="utf-8")
        for target in re.findall(r"^::: ([\w.]+)", text, re.M):
            found.setdefault(target, page)
    return found


def test_every_public_name_is_in_the_api_reference():
    text = (DOCS / "api.md").read_text(encoding="utf-8")
    missing = [
        name
        for name in chatcore.__all__
        if not re.search(rf"(::: chatcore\.{re.escape(name)}\b|`{re.escape(name)}`)", text)
    ]
    assert not missing, f"docs/api.md does not mention: {missing}"


def test_every_public_name_has_a_reference_entry():
    """Each name of ``chatcore.__all__`` is rendered on a reference page: its own
    ``::: chatcore.Name``, or a ``::: module`` directive whose ``__all__`` exports it."""
    import importlib

    directives = _directives()
    modules = []
    for target in directives:
        with contextlib.suppress(ImportError):
            modules.append(importlib.import_module(target))
    missing = []
    for name in chatcore.__all__:
        if name in ("__version__", "hookimpl") or f"chatcore.{name}" in directives:
            continue
        obj = getattr(chatcore, name)
        if not any(
            name in getattr(mod, "__all__", ()) and getattr(mod, name, None) is obj
            for mod in modules
            if mod is not chatcore
        ):
            missing.append(name)
    assert not missing, f"no reference page renders: {missing}"


def test_api_reference_directives_resolve():
    """Every ``::: dotted.name`` directive of the reference pages names something
    importable."""
    import importlib

    targets = list(_directives())
    assert len(targets) > 20
    broken = []
    for target in targets:
        parts = target.split(".")
        for cut in range(len(parts), 0, -1):
            try:
                obj: Any = importlib.import_module(".".join(parts[:cut]))
            except ImportError:
                continue
            try:
                for attr in parts[cut:]:
                    obj = getattr(obj, attr)
            except AttributeError:
                broken.append(target)
            break
        else:
            broken.append(target)
    assert not broken


# -- the code blocks --------------------------------------------------------------------------

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>[^\n`]*)$")


class Block(NamedTuple):
    """A ```` ```python ```` block: 1-based line of its opening fence, its code, and the
    HTML comment on the line before it (``<!-- no-run -->``, ``<!-- raises: Name -->``)."""

    line: int
    code: str
    marker: str | None


def python_blocks(path: Path) -> list[Block]:
    """The ```` ```python ```` blocks of ``path``, in order (blocks indented in lists
    included, blocks nested in a longer fence of another language not)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        indent, fence, info = match["indent"], match["fence"], match["info"].strip()
        start = i
        body: list[str] = []
        closing = re.compile(rf"^[ \t]*{re.escape(fence[0])}{{{len(fence)},}}\s*$")
        i += 1
        while i < len(lines) and not closing.match(lines[i]):
            line = lines[i]
            body.append(line[len(indent) :] if line.startswith(indent) else line.lstrip())
            i += 1
        i += 1
        language = info.split()[0].lower() if info else ""
        if language in ("python", "py"):
            previous = next((ln.strip() for ln in reversed(lines[:start]) if ln.strip()), "")
            marker = previous if previous.startswith("<!--") else None
            blocks.append(Block(start + 1, "\n".join(body) + "\n", marker))
    return blocks


PAGES = sorted(str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md") if python_blocks(p))


def test_block_parser(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "# t\n\n```python\na = 1\n```\n\n<!-- no-run -->\n```python\nb = 2\n```\n\n"
        "- item\n\n  ```python\n  c = 3\n  ```\n\n````markdown\n```python\nd = 4\n```\n````\n"
        "<!-- raises: ValueError -->\n```py\nint('x')\n```\n",
        encoding="utf-8",
    )
    assert [(b.line, b.code, b.marker) for b in python_blocks(page)] == [
        (3, "a = 1\n", None),
        (8, "b = 2\n", NO_RUN),
        (14, "c = 3\n", None),
        (24, "int('x')\n", "<!-- raises: ValueError -->"),
    ]


def test_requires_marker():
    assert _missing_requirements(None) == []
    assert _missing_requirements("<!-- no-run -->") == []
    assert _missing_requirements("<!-- requires: json, os.path -->") == []
    assert _missing_requirements("<!-- requires: json, no_such_module_0 -->") == [
        "no_such_module_0 (not installed)"
    ]
    assert _missing_requirements("<!-- requires: no_such_module_0|json -->") == []
    assert _missing_requirements("<!-- requires: python>=3.10 -->") == []
    assert _missing_requirements("<!-- requires: python>=99.1, json -->") == ["python>=99.1"]


def test_an_async_client_left_open_is_reported_and_closed(docs_env):
    import asyncio

    loop = asyncio.new_event_loop()
    try:
        client = chatcore.AsyncClient()
        assert loop.run_until_complete(client.chat("openai:gpt-4o-mini", "Hello")).text
        namespace: dict[str, Any] = {"client": client, "other": 1}
        (problem,) = _left_open("page.md", namespace)
        assert "docs/page.md: the AsyncClient 'client' is left open" in problem
        assert _left_open("page.md", {"fresh": chatcore.AsyncClient()}) == []
        _cleanup(namespace)  # closed on its own loop: nothing left to warn
        assert _left_open("page.md", {"client": client}) == []
    finally:
        loop.close()


class _Timeout(Exception):
    pass


@contextlib.contextmanager
def _time_limit(seconds: int) -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGALRM"):
        yield
        return

    def fire(signum: int, frame: Any) -> None:
        raise _Timeout(f"the page's blocks took more than {seconds} s")

    old = signal.signal(signal.SIGALRM, fire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


def _listening(netloc: str) -> bool:
    """Whether something accepts connections at the loopback ``host:port``."""
    host, _, port = netloc.rpartition(":")
    if not port.isdigit():
        return False  # e.g. the placeholder "127.0.0.1:PORT"
    try:
        with socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), 0.5):
            return True
    except OSError:
        return False


@pytest.fixture
def isolated_logging() -> Iterator[None]:
    """Undo what a page does to the logging of the process: the standard ``logging``
    module's loggers (``basicConfig``, levels) and the loguru handlers it adds."""
    import logging

    from loguru import logger

    manager = logging.Logger.manager
    root = logging.getLogger()
    saved_root = (root.level, list(root.handlers), root.disabled)
    saved = {
        name: (lg.level, lg.propagate, list(lg.handlers), lg.disabled)
        for name, lg in manager.loggerDict.items()
        if isinstance(lg, logging.Logger)
    }
    loguru_before = set(getattr(getattr(logger, "_core", None), "handlers", {}))
    yield
    for handler_id in set(getattr(getattr(logger, "_core", None), "handlers", {})):
        if handler_id not in loguru_before:
            with contextlib.suppress(ValueError):
                logger.remove(handler_id)
    for handler in root.handlers:
        if handler not in saved_root[1]:
            handler.close()
    root.level, root.handlers, root.disabled = saved_root[0], saved_root[1], saved_root[2]
    for name, lg in manager.loggerDict.items():
        if not isinstance(lg, logging.Logger):
            continue
        level, propagate, handlers, disabled = saved.get(name, (logging.NOTSET, True, [], False))
        lg.setLevel(level)
        lg.propagate, lg.handlers, lg.disabled = propagate, handlers, disabled


@pytest.fixture
def docs_env(tmp_path, monkeypatch) -> Iterator[dict[str, Any]]:
    """Stand-in servers, the provider variables pointing at them, a scratch working
    directory, and every other provider URL redirected to a stand-in."""
    from chatcore import _plugins
    from chatcore.testing.server import StandInServer

    for key in list(os.environ):
        if key.startswith(("CHATCORE_", "OPENAI_", "AZURE_OPENAI_", "HF_")) or key in (
            "HUGGING_FACE_HUB_TOKEN",
        ):
            monkeypatch.delenv(key, raising=False)
    with (
        StandInServer(flavor="openai") as openai,
        StandInServer(flavor="azure") as azure,
        StandInServer(flavor="tgi") as tgi,
    ):
        monkeypatch.setenv("OPENAI_API_KEY", "sk-docs-test-0123456789abcdef")
        monkeypatch.setenv("OPENAI_BASE_URL", openai.base_url)
        monkeypatch.setenv("HF_TOKEN", "hf_docstest0123456789abcdefgh")
        monkeypatch.setenv("CHATCORE_HUGGINGFACE_BASE_URL", openai.base_url)
        monkeypatch.setenv("AZURE_OPENAI_API_KEY", "azure-docs-test-0123456789")
        monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", azure.url)
        monkeypatch.setenv("OPENAI_API_VERSION", "2024-10-21")
        monkeypatch.chdir(tmp_path)

        servers = {srv.url.rstrip("/") for srv in (openai, azure, tgi)}

        def redirect(url: str) -> str:
            parts = urlsplit(url)
            if f"{parts.scheme}://{parts.netloc}" in servers:
                return url
            host = (parts.hostname or "").lower()
            if host in _LOOPBACK and _listening(parts.netloc):
                return url  # a server the page started itself
            if host.endswith(".azure.com"):
                target = azure
            elif "endpoints.huggingface" in host or parts.netloc.endswith(":8080"):
                target = tgi  # dedicated endpoints and local TGI servers (port 8080)
            else:
                target = openai
            rest = url[len(f"{parts.scheme}://{parts.netloc}") :]
            return target.url.rstrip("/") + rest

        # every transport builds its URLs with .url(path): the requests one (Client) and
        # the aiohttp one (AsyncClient)
        for transport in _transports():
            original = transport.url

            def redirected(self: Any, path: str, _original: Any = original) -> str:
                return redirect(_original(self, path))

            monkeypatch.setattr(transport, "url", redirected)
        # a fresh plugin registry for the page (it reads the environment when loaded)
        monkeypatch.setattr(_plugins, "_host", None)
        yield {"openai": openai, "azure": azure, "tgi": tgi}


def _transports() -> list[Any]:
    """The core's transport classes (the aiohttp one where aiohttp imports)."""
    from chatcore import _transport

    found: list[Any] = [_transport.HttpTransport]
    try:
        from chatcore import _atransport
    except ImportError:  # pragma: no cover - aiohttp is a dependency of the core
        return found
    found.append(_atransport.AsyncHttpTransport)
    return found


#: Pages whose blocks are known to fail, with why: strict xfails, so fixing a page (or
#: marking its block ``<!-- no-run -->`` / ``<!-- raises: Name -->``) makes its entry fail
#: as XPASS until it is removed here.
KNOWN_FAILING: dict[str, str] = {}


def _page_param(page: str) -> Any:
    reason = KNOWN_FAILING.get(page)
    if reason is None:
        return page
    return pytest.param(page, marks=pytest.mark.xfail(reason=reason, strict=True))


@pytest.mark.parametrize("page", [_page_param(p) for p in PAGES])
def test_python_blocks_run(page, docs_env, isolated_logging):
    # the examples document the whole distribution: they run where its plugins are
    # installed (make test, the py3xx tox environments), not in the core-only environment
    for module_name in ("chatcore_openai", "chatcore_huggingface"):
        pytest.importorskip(module_name, reason="the docs examples use the bundled plugins")
    if page in ("redis.md", "cache.md"):
        pytest.importorskip("redis", reason="this page's examples use chatcore-redis")
    if page == "prometheus.md":
        pytest.importorskip("prometheus_client", reason="this page uses chatcore-prometheus")
    blocks = python_blocks(DOCS / page)
    # a real module, so that attrs / typing resolve the annotations of classes it defines
    module = types.ModuleType("docs_page_" + re.sub(r"\W", "_", page[:-3]))
    sys.modules[module.__name__] = module
    failures: list[str] = []
    not_run: list[str] = []
    try:
        with _time_limit(PAGE_TIMEOUT), warnings.catch_warnings():
            warnings.simplefilter("default")
            for block in blocks:
                if block.marker == NO_RUN:
                    continue
                missing = _missing_requirements(block.marker)
                if missing:
                    not_run.append(f"docs/{page}:{block.line} needs {', '.join(missing)}")
                    continue
                problem = _run_block(page, block, module)
                if problem:
                    failures.append(problem)
        failures.extend(_left_open(page, vars(module)))
    finally:
        sys.modules.pop(module.__name__, None)
        _cleanup(vars(module))
    if failures:
        # later blocks run on after a failure, so all of a page's problems show at once
        # (a NameError after a failing block may only be a consequence of it)
        pytest.fail("\n\n".join(failures), pytrace=False)
    if not_run:
        pytest.skip("the page's other blocks ran and passed; not run: " + "; ".join(not_run))


def _missing_requirements(marker: str | None) -> list[str]:
    """What a ``<!-- requires: a, b|c -->`` block needs and this environment lacks:
    modules that are not installed (of ``b|c``, neither), or a Python older than
    ``python>=X.Y``."""
    import importlib.util

    match = _REQUIRES.match(marker or "")
    if match is None:
        return []
    missing = []
    for item in (part.strip() for part in match["what"].split(",")):
        if item.startswith("python>="):
            wanted = tuple(int(n) for n in item[len("python>=") :].split("."))
            if sys.version_info[: len(wanted)] < wanted:
                missing.append(item)
        elif not any(importlib.util.find_spec(name.strip()) for name in item.split("|")):
            missing.append(f"{item} (not installed)")
    return missing


def _left_open(page: str, namespace: dict[str, Any]) -> list[str]:
    """A problem for each ``AsyncClient`` the page left with an open session (a client
    that is not ``aclose()``d leaks its connections, and cannot be closed for it here
    once its event loop has ended)."""
    problems = []
    for name, value in namespace.items():
        if isinstance(value, chatcore.AsyncClient):
            sessions = [t for _p, t in (value._transports or {}).values() if t._session is not None]
            if sessions:
                problems.append(
                    f"docs/{page}: the AsyncClient {name!r} is left open; "
                    "aclose() it, or use 'async with chatcore.AsyncClient() as client'"
                )
    return problems


def _run_block(page: str, block: Block, module: types.ModuleType) -> str | None:
    """Run one block in the page's module; the problem, or ``None`` when it behaves."""
    expected = _RAISES.match(block.marker or "")
    where = f"docs/{page}:{block.line}"
    try:
        exec(compile(block.code, where, "exec"), vars(module))
    except _Timeout:
        raise
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:
        names = {cls.__name__ for cls in type(exc).__mro__}
        if expected and expected["name"] in names:
            return None
        first = str(exc).splitlines()[0] if str(exc) else ""
        return f"{where}: the block fails: {type(exc).__name__}: {first}"
    if expected:
        return f"{where}: the block should raise {expected['name']} but does not"
    return None


def _cleanup(namespace: dict[str, Any]) -> None:
    """Close the clients and stop the servers a page left open; turn chatcore's logging
    off."""
    left_async = False
    for value in list(namespace.values()):
        if isinstance(value, chatcore.Client):
            with contextlib.suppress(Exception):
                value.close()
        elif isinstance(value, chatcore.AsyncClient):
            left_async = _close_async(value) or left_async
        elif "Server" in type(value).__name__ and callable(getattr(value, "stop", None)):
            with contextlib.suppress(Exception):
                value.stop()
    with contextlib.suppress(Exception):
        chatcore.configure_logging(None)
    if left_async:
        # sockets of a loop that has ended cannot be closed through it: drop them here,
        # so that their ResourceWarnings do not surface in a later test
        import gc

        namespace.clear()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            gc.collect()


def _close_async(client: Any) -> bool:
    """Close what a page left open of an ``AsyncClient``: its aiohttp sessions (on their
    own loop while it exists; once it has ended, as far as a new loop can: the pooled
    sockets may then still warn when collected) and its blocking pools. True when a
    session was left open."""
    import asyncio

    transports = [t for _p, t in (client._transports or {}).values()]
    client._transports, client._loop = {}, None
    left = False
    for transport in transports:
        session, loop = transport._session, transport._loop
        transport._session = transport._loop = None
        if session is None or session.closed:
            continue
        left = True
        with contextlib.suppress(Exception):
            if loop is not None and loop.is_running():  # a loop in another thread
                asyncio.run_coroutine_threadsafe(session.close(), loop).result(5)
            elif loop is not None and not loop.is_closed():
                loop.run_until_complete(session.close())
            else:  # its loop has ended: as far as a new loop can
                asyncio.run(session.close())
    with contextlib.suppress(Exception):
        asyncio.run(client.aclose())
    return left


# -- the site ---------------------------------------------------------------------------------


def _nav_pages() -> list[str]:
    text = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    nav = text[text.index("\nnav:") :]
    return re.findall(r":\s+(\S+\.md)\s*$", nav, re.M)


def test_every_page_is_in_the_nav_and_every_nav_entry_exists():
    pages = sorted(str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md"))
    nav = _nav_pages()
    assert sorted(set(pages) - set(nav)) == [], "pages missing from the nav of mkdocs.yml"
    assert sorted(set(nav) - set(pages)) == [], "nav entries of mkdocs.yml without a page"
    assert len(nav) == len(set(nav)), "a page is listed twice in the nav"


def test_tutorial_shows_the_generated_files(tmp_path):
    """The files the plugin tutorial shows are exactly what ``chatcore new-plugin acme``
    writes (blocks whose first line is ``# <path>``)."""
    from chatcore._scaffold import new_plugin

    project = new_plugin("acme", tmp_path)
    text = (DOCS / "plugin-tutorial.md").read_text(encoding="utf-8")
    shown = 0
    for match in re.finditer(r"^```\w+\n# ([\w./-]+)\n(.*?)^```$", text, re.M | re.S):
        path = project / match.group(1)
        if not path.is_file():
            continue
        assert match.group(2) == path.read_text(encoding="utf-8"), (
            f"docs/plugin-tutorial.md shows an outdated {match.group(1)}"
        )
        shown += 1
    assert shown >= 4


# -- the built site ---------------------------------------------------------------------------
#
# `mkdocs build --strict` fails on any warning: a page missing from the nav, a broken link or
# anchor, and a cross-reference in a docstring (a Sphinx role such as :class:`Client`, turned
# into one by tools/griffe_sphinx_roles.py) that no reference page renders. The look of the
# site (overflowing code, wrapped names) is checked in a browser by tools/docs_screenshots.py.

SPHINX_ROLE = re.compile(r":(?:py:)?(?:class|meth|func|attr|mod|exc|data|obj|const):`?")


def _mkdocs(site: Path, cwd: Path = ROOT, config: str = "mkdocs.yml") -> Any:
    import subprocess

    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", config, "-d", str(site)],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        timeout=300,
        check=False,
    )


@pytest.fixture(scope="module")
def built_site(tmp_path_factory) -> Path:
    """The site, built once for this module with ``mkdocs build --strict``."""
    pytest.importorskip("mkdocs", reason="the docs tools: pip install -e '.[docs]'")
    pytest.importorskip("mkdocstrings_handlers.python")
    site = tmp_path_factory.mktemp("site")
    proc = _mkdocs(site)
    warnings_ = [line for line in proc.stderr.splitlines() if "WARNING" in line]
    assert proc.returncode == 0, "mkdocs build --strict failed:\n" + "\n".join(
        warnings_ or proc.stderr.splitlines()[-20:]
    )
    return site


def _text_outside_code(page: Path) -> str:
    """A page's HTML without its code: a role quoted as code (``:class:``) is not raw, one
    shown as text is (``:class:<code>Client</code>``)."""
    text = re.sub(r"<pre\b.*?</pre>", "", page.read_text(encoding="utf-8"), flags=re.S)
    return re.sub(r"<code\b[^>]*>.*?</code>", "<code></code>", text, flags=re.S)


def test_site_builds_strictly_and_shows_no_raw_sphinx_role(built_site):
    pages = sorted(built_site.rglob("*.html"))
    assert len(pages) > 40
    raw = {
        str(page.relative_to(built_site)): sorted(set(SPHINX_ROLE.findall(text)))
        for page in pages
        if SPHINX_ROLE.search(text := _text_outside_code(page))
    }
    assert raw == {}, "Sphinx roles shown as text (not turned into links)"


def test_every_reference_page_is_built(built_site):
    for page in REFERENCE_PAGES:
        html_page = built_site / page.removesuffix(".md") / "index.html"
        assert html_page.is_file(), page
    # one page per module or concept, none of them the old single page of everything
    sizes = {
        p: (built_site / p.removesuffix(".md") / "index.html").stat().st_size
        for p in REFERENCE_PAGES
    }
    assert max(sizes.values()) < 600_000, sizes


def test_reference_cross_references_are_links(built_site):
    page = (built_site / "reference" / "client" / "index.html").read_text(encoding="utf-8")
    # ChatStream's docstring says :class:`ChatChunk`; Client.chat's says :func:`chat_structured`
    assert re.search(
        r'<a class="autorefs autorefs-internal"[^>]*href="[^"]*#chatcore\.models\.ChatChunk"', page
    )
    assert re.search(r'href="[^"]*#chatcore\.chat_structured"', page)


def _objects(page: str, kind: str) -> list[str]:
    """The HTML of each ``doc-<kind>`` object of a rendered reference page (up to the next
    object)."""
    starts = [m.start() for m in re.finditer(r'<div class="doc doc-object doc-', page)]
    out = []
    for i, start in enumerate(starts):
        if page.startswith(f'<div class="doc doc-object doc-{kind}"', start):
            out.append(page[start : starts[i + 1] if i + 1 < len(starts) else len(page)])
    return out


def test_reference_lists_documented_attributes_only(built_site):
    """No ``provider = provider`` entries: every attribute shown has a description."""
    shown = 0
    for path in (built_site / "reference").rglob("index.html"):
        for obj in _objects(path.read_text(encoding="utf-8"), "attribute"):
            name = re.search(r'id="([\w.]+)"', obj)
            contents = re.split(r'<div class="doc doc-contents[^"]*">', obj, maxsplit=1)[-1]
            text = re.sub(r"<[^>]+>", "", contents).strip()
            assert text, f"{path.parent.name}: attribute {name and name.group(1)} has no docstring"
            shown += 1
    assert shown > 10


def test_reference_signatures_are_wrapped(built_site):
    import html as html_module

    longest = 0
    for path in (built_site / "reference").rglob("index.html"):
        page = path.read_text(encoding="utf-8")
        for signature in re.findall(r'<div class="doc-signature[^"]*">(.*?)</div>', page, re.S):
            text = html_module.unescape(re.sub(r"<[^>]+>", "", signature))
            longest = max(longest, *(len(line) for line in text.splitlines()))
    assert 0 < longest <= 88, f"a signature line of {longest} columns"


def test_home_page_has_an_install_line_and_code():
    text = (DOCS / "index.md").read_text(encoding="utf-8")
    assert re.search(r"```bash\npip install \"?chatcore", text)
    assert any("client.chat(" in block.code for block in python_blocks(DOCS / "index.md"))
    diagram = text.split("## How a call flows", 1)[1].split("```", 2)[1]
    assert max(len(line) for line in diagram.splitlines()) <= 72, "the diagram is cut off"


# -- the cross-reference extension ------------------------------------------------------------


@pytest.fixture(scope="module")
def roles() -> Any:
    griffe = pytest.importorskip("griffe")
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import griffe_sphinx_roles
    finally:
        sys.path.remove(str(ROOT / "tools"))
    pkg = griffe.load("chatcore", search_paths=[str(ROOT)])
    return griffe_sphinx_roles, pkg, griffe_sphinx_roles.public_names(pkg)


@pytest.mark.parametrize(
    ("scope", "role", "markdown"),
    [
        ("chatcore.models", ":class:`~chatcore.Client`", "[<code>Client</code>][chatcore.Client]"),
        # resolved where Python would: Client's chat, shown under its public path
        ("chatcore._client.Client", ":meth:`chat`", "[<code>chat()</code>][chatcore.Client.chat]"),
        (
            "chatcore._retry",
            ":class:`RetryPolicy`",
            "[<code>RetryPolicy</code>][chatcore.retry.RetryPolicy]",
        ),
        (
            "chatcore.models",
            ":class:`text <ChatResponse>`",
            "[<code>text</code>][chatcore.models.ChatResponse]",
        ),
        ("chatcore.models", ":class:`!ChatResponse`", "<code>ChatResponse</code>"),
        # elsewhere: a link only where some page renders it
        (
            "chatcore.models",
            ":func:`asyncio.run`",
            '<autoref identifier="asyncio.run" optional><code>asyncio.run()</code></autoref>',
        ),
        # a public name that does not exist stays required: the strict build fails on it
        (
            "chatcore.models",
            ":class:`chatcore.NoSuchThing`",
            "[<code>chatcore.NoSuchThing</code>][chatcore.NoSuchThing]",
        ),
    ],
)
def test_sphinx_roles_become_cross_references(roles, scope, role, markdown):
    module, pkg, names = roles
    obj = pkg[scope.removeprefix("chatcore.")] if scope != "chatcore" else pkg
    assert module.convert(f"See {role}.", obj, pkg, names) == f"See {markdown}."


def test_a_broken_reference_fails_the_strict_build(tmp_path):
    """A docstring naming something no page renders fails ``mkdocs build --strict`` (a tiny
    project with this repository's extension and options)."""
    pytest.importorskip("mkdocs", reason="the docs tools: pip install -e '.[docs]'")
    pytest.importorskip("mkdocstrings_handlers.python")
    (tmp_path / "chatcore_probe").mkdir()
    (tmp_path / "chatcore_probe" / "__init__.py").write_text(
        '"""Probe."""\n\n\nclass Shown:\n    """See :class:`Hidden`."""\n\n\n'
        'class Hidden:\n    """Not on any page."""\n',
        encoding="utf-8",
    )
    (tmp_path / "docs").mkdir()
    extension = (ROOT / "tools" / "griffe_sphinx_roles.py").as_posix()
    config = (
        "site_name: probe\nstrict: true\nnav:\n  - index.md\nplugins:\n  - autorefs\n"
        "  - mkdocstrings:\n      handlers:\n        python:\n          paths: ['.']\n"
        f"          options:\n            extensions: ['{extension}:SphinxRoles']\n"
        "            docstring_style: sphinx\n"
    )
    (tmp_path / "mkdocs.yml").write_text(config, encoding="utf-8")
    (tmp_path / "docs" / "index.md").write_text(
        "# Probe\n\n::: chatcore_probe.Shown\n", encoding="utf-8"
    )
    proc = _mkdocs(tmp_path / "site", cwd=tmp_path)
    assert proc.returncode != 0
    assert "chatcore_probe.Hidden" in proc.stderr
    # rendered, the same reference resolves and the build passes
    (tmp_path / "docs" / "index.md").write_text(
        "# Probe\n\n::: chatcore_probe.Shown\n\n::: chatcore_probe.Hidden\n", encoding="utf-8"
    )
    proc = _mkdocs(tmp_path / "site", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]


# -- the plugin tutorial, run as written ------------------------------------------------------

#: What the tutorial's commands reach that a test must not: the in-house service's address
#: becomes a local stand-in server's, the key placeholder a test key.
TUTORIAL_REWRITES = {
    "https://llm.internal.example/v1": "{base_url}",
    "ACME_API_KEY=...": "ACME_API_KEY=sk-test-acme-0123456789",
}


def console_blocks(path: Path) -> list[list[tuple[str, list[str]]]]:
    """The ```` ```console ```` blocks of ``path``: for each, its ``$ command`` lines with
    the output lines shown after each."""
    blocks = []
    for body in re.findall(
        r"^```console\n(.*?)^```$", path.read_text(encoding="utf-8"), re.M | re.S
    ):
        steps: list[tuple[str, list[str]]] = []
        for line in body.splitlines():
            if line.startswith("$ "):
                steps.append((line[2:], []))
            elif steps:
                steps[-1][1].append(line)
        blocks.append(steps)
    return blocks


def _normal(line: str) -> str:
    """A line compared loosely: spacing, table rules and durations may differ."""
    line = re.sub(r"-{3,}", "---", line)
    line = re.sub(r"\bin \d+(\.\d+)?s\b", "in Ns", line)
    line = line.strip().strip("=")  # pytest's ===== summary =====
    return " ".join(line.split())


def _shows(expected: list[str], actual: str) -> list[str]:
    """The expected output lines (``...`` skips any) not found, in order, in ``actual``."""
    lines = [_normal(line) for line in actual.splitlines()]
    missing, at = [], 0
    for want in (_normal(line) for line in expected if line.strip() != "..."):
        try:
            at = lines.index(want, at) + 1
        except ValueError:
            missing.append(want)
    return missing


def test_console_block_parser(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("```console\n$ a\nout\n...\n$ b\n```\n\n```bash\n$ c\n```\n", encoding="utf-8")
    assert console_blocks(page) == [[("a", ["out", "..."]), ("b", [])]]
    assert _shows(["x", "...", "5 passed in 1.0s"], "x\ny\n5  passed in 2.34s\n") == []
    assert _shows(["y", "x"], "x\ny\n") == ["x"]
    assert _shows(["5 passed in 1s"], "==== 5 passed in 0.5s ====\n") == []
    assert _shows(["5 passed in 1s"], "==== 6 passed in 0.5s ====\n") == ["5 passed in Ns"]


@pytest.mark.slow
def test_plugin_tutorial_runs_as_written(tmp_path):
    """Every command of docs/plugin-tutorial.md, in order, in a fresh virtual environment
    that sees this one's packages (chatcore among them, as the tutorial asks), with no
    package index: scaffold, install, the plugin's own test suite, ``chatcore plugins`` and
    a chat through the new provider against a local stand-in server."""
    import subprocess
    import sysconfig

    from chatcore.testing.server import StandInServer

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    # "the environment chatcore is installed in": this one's packages, seen from the new one
    (Path(purelib) / "_parent_env.pth").write_text(
        f"import site; site.addsitedir({sysconfig.get_path('purelib')!r})\n", encoding="utf-8"
    )
    launcher = venv / "bin" / "chatcore"  # the script pip writes when it installs chatcore
    launcher.write_text(
        f"#!{python}\nimport sys\nfrom chatcore._cli import main\nsys.exit(main())\n",
        encoding="utf-8",
    )
    launcher.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env.update(
        PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}",
        VIRTUAL_ENV=str(venv),
        HOME=str(tmp_path / "home"),
        XDG_CONFIG_HOME=str(tmp_path / "config"),
        PIP_NO_INDEX="1",  # nothing from an index: what is needed is already installed
        PIP_NO_BUILD_ISOLATION="0",  # pip's inverted spelling: build with hatchling from here
        PIP_DISABLE_PIP_VERSION_CHECK="1",
    )
    cwd = tmp_path / "work"
    cwd.mkdir()
    blocks = console_blocks(DOCS / "plugin-tutorial.md")
    assert sum(len(steps) for steps in blocks) >= 6
    with StandInServer(flavor="openai") as server:
        for steps in blocks:
            for command, expected in steps:
                for old, new in TUTORIAL_REWRITES.items():
                    command = command.replace(old, new.format(base_url=server.base_url))
                if command.startswith("cd "):
                    cwd = cwd / command[3:].strip()
                    continue
                if command.startswith("export "):
                    for assignment in command[7:].split():
                        key, _, value = assignment.partition("=")
                        env[key] = value
                    continue
                proc = subprocess.run(
                    ["bash", "-c", command],
                    cwd=cwd,
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=300,
                    check=False,
                )
                output = proc.stdout + proc.stderr
                assert proc.returncode == 0, f"$ {command}\n{output[-3000:]}"
                missing = _shows(expected, proc.stdout)
                assert not missing, f"$ {command} did not show {missing}:\n{proc.stdout[-3000:]}"
