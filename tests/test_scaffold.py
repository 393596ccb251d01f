"""``chatcore new-plugin`` (``chatcore._scaffold``): the generated project builds, installs,
is discovered, and passes its own tests (the conformance suite included) as generated.

The issue asks to install the generated plugin "into a throwaway venv with the core". A
fresh venv, even with ``--system-site-packages``, does not see this project's venv (where
chatcore and pytest live), and creating one and installing the core into it is slow and
needs an index. So, like ``tests/test_plugins.py``, the project is built with hatchling and
installed with ``pip install --no-deps --no-build-isolation --no-index --target <tmp>/site``,
and its tests run in a subprocess with ``PYTHONPATH=<tmp>/site:<this interpreter's path>``:
offline, a few seconds, and the plugin is seen only through its installed distribution.
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from chatcore import __version__
from chatcore._scaffold import (
    _FILES,
    add_new_plugin_parser,
    cmd_new_plugin,
    core_requirement,
    new_plugin,
    validate_name,
)
from chatcore.exceptions import ConfigurationError
from chatcore.provider import Provider

ROOT = Path(__file__).resolve().parents[1]

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def _pip_install(project: Path, target: Path) -> None:
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--target",
            str(target),
            str(project),
        ],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stdout + run.stderr


def _env(site: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHATCORE_")}
    env["PYTHONPATH"] = os.pathsep.join([str(site), *sys.path])
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


# -- the generated project works --------------------------------------------------------------


@pytest.mark.slow
def test_generated_plugin_installs_is_discovered_and_passes_its_tests(tmp_path):
    project = new_plugin("acme", tmp_path)
    assert project == tmp_path / "chatcore-acme"
    site = tmp_path / "site"
    _pip_install(project, site)
    assert (site / "chatcore_acme" / "py.typed").is_file()
    env = _env(site)

    # cwd is tmp_path, not the project: the tests import the installed package, and the
    # conformance suite resolves the provider through the installed entry point
    tests = subprocess.run(
        [sys.executable, "-m", "pytest", str(project / "tests"), "-q", "-p", "no:cacheprovider"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert tests.returncode == 0, tests.stdout[-4000:] + tests.stderr[-2000:]
    assert " passed" in tests.stdout
    assert " failed" not in tests.stdout and " error" not in tests.stdout

    listed = subprocess.run(
        [sys.executable, "-m", "chatcore._cli", "plugins", "--json"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
    )
    assert listed.returncode == 0, listed.stderr
    records = {r["name"]: r for r in json.loads(listed.stdout)}
    assert records["acme"]["distribution"] == "chatcore-acme"
    assert records["acme"]["version"] == "0.1.0"
    assert records["acme"]["providers"] == ["acme"]
    assert not records["acme"]["error"]


def test_generated_files(tmp_path):
    project = new_plugin("acme-cloud", tmp_path, provider="acme")
    files = sorted(str(p.relative_to(project)) for p in project.rglob("*") if p.is_file())
    assert files == sorted(
        [
            ".gitignore",
            "LICENSE",
            "README.md",
            "chatcore_acme_cloud/__init__.py",
            "chatcore_acme_cloud/_provider.py",
            "chatcore_acme_cloud/py.typed",
            "pyproject.toml",
            "tests/test_conformance.py",
            "tests/test_provider.py",
        ]
    )
    meta = tomllib.loads((project / "pyproject.toml").read_text())
    assert meta["build-system"]["build-backend"] == "hatchling.build"
    assert meta["project"]["name"] == "chatcore-acme-cloud"
    assert meta["project"]["dynamic"] == ["version"]
    assert meta["project"]["dependencies"] == [core_requirement()]
    assert meta["project"]["entry-points"]["chatcore"] == {"acme-cloud": "chatcore_acme_cloud"}
    assert meta["tool"]["hatch"]["version"]["path"] == "chatcore_acme_cloud/__init__.py"
    assert meta["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"] == ["chatcore_acme_cloud"]
    init = (project / "chatcore_acme_cloud" / "__init__.py").read_text()
    assert '__version__ = "0.1.0"' in init
    assert '"ACME_API_KEY"' in init and '"ACME_BASE_URL"' in init
    assert 'name="acme"' in init
    provider_code = (project / "chatcore_acme_cloud" / "_provider.py").read_text()
    assert "class AcmeProvider(Provider)" in provider_code
    # translate-only: it describes calls and parses answers, and does no I/O of its own
    for method in ("prepare_chat", "parse_chat", "prepare_stream", "stream_decoder"):
        assert f"def {method}(self" in provider_code
    for method in ("chat", "stream", "list_models"):
        assert f"def {method}(self" not in provider_code
    assert "make_transport" not in provider_code and "self.set_target(" in provider_code
    tests_code = (project / "tests" / "test_provider.py").read_text()
    assert "chatcore.AsyncClient(" in tests_code
    conformance = (project / "tests" / "test_conformance.py").read_text()
    assert "class TestAcmeConformance(ProviderConformance)" in conformance
    assert 'server_flavor = "openai"' in conformance
    assert 'entry_point_name = "acme-cloud"' in conformance
    license_text = (project / "LICENSE").read_text()
    assert license_text.startswith("MIT License") and "TODO: your name" in license_text
    assert "$" not in "".join(p.read_text() for p in project.rglob("*") if p.is_file())


def test_generated_code_is_importable_in_process(tmp_path):
    """The generated package imports and its hook returns the spec (no install needed)."""
    project = new_plugin("zeta-9", tmp_path)
    spec = importlib.util.spec_from_file_location(
        "chatcore_zeta_9", project / "chatcore_zeta_9" / "__init__.py"
    )
    assert spec is not None and spec.loader is not None
    sys.path.insert(0, str(project))
    try:
        module = importlib.util.module_from_spec(spec)
        sys.modules["chatcore_zeta_9"] = module
        spec.loader.exec_module(module)
        (provider_spec,) = module.chatcore_providers()
    finally:
        sys.path.remove(str(project))
        sys.modules.pop("chatcore_zeta_9", None)
        sys.modules.pop("chatcore_zeta_9._provider", None)
    assert provider_spec.name == "zeta-9"
    assert provider_spec.api_key_env == ("ZETA_9_API_KEY",)
    assert provider_spec.env_names("base_url") == ("CHATCORE_ZETA_9_BASE_URL", "ZETA_9_BASE_URL")
    assert provider_spec.capabilities == frozenset({"chat", "stream", "models"})
    # the factory is a translate-only provider (AsyncClient sends it natively, no threads)
    factory = provider_spec.factory
    assert isinstance(factory, type) and issubclass(factory, Provider)
    assert factory.prepare_chat is not Provider.prepare_chat
    assert factory.chat is Provider.chat and factory.stream is Provider.stream


def test_generated_code_is_lint_and_format_clean(tmp_path):
    """With the longest allowed name, the generated code passes ruff (its own config)."""
    if importlib.util.find_spec("ruff") is None:
        pytest.skip("ruff is not installed")
    name = "a" + "-bcdefghij" * 2 + "-klmnopqr"
    assert len(name) == 30
    project = new_plugin(name, tmp_path)
    for args in (["check", "--no-cache", "."], ["format", "--no-cache", "--check", "."]):
        run = subprocess.run(
            [sys.executable, "-m", "ruff", *args],
            capture_output=True,
            text=True,
            cwd=project,
        )
        assert run.returncode == 0, run.stdout + run.stderr


@pytest.mark.slow
def test_templates_are_in_the_core_wheel(tmp_path):
    """hatchling packs chatcore/templates (inside the package) into the wheel."""
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--wheel-dir",
            str(tmp_path),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    (wheel,) = tmp_path.glob("chatcore-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "chatcore/_scaffold.py" in names
    missing = [src for src in _FILES if f"chatcore/templates/plugin/{src}" not in names]
    assert not missing


# -- names and versions -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["", "Acme", "1acme", "acme_x", "acme--x", "acme-", "-acme", "acme x", "acme:x", "a" * 31],
)
def test_bad_names_are_refused(tmp_path, name):
    with pytest.raises(ConfigurationError, match=r"invalid plugin name .*lowercase letters"):
        new_plugin(name, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_bad_provider_name_is_refused(tmp_path):
    with pytest.raises(ConfigurationError, match="invalid provider name 'Acme:x'"):
        new_plugin("acme", tmp_path, provider="Acme:x")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["a", "acme", "acme-cloud", "llm2", "a1-b2-c3"])
def test_good_names(name):
    assert validate_name(name) == name


def test_chatcore_prefix_is_dropped(tmp_path):
    assert new_plugin("chatcore-acme", tmp_path) == tmp_path / "chatcore-acme"
    assert (tmp_path / "chatcore-acme" / "chatcore_acme" / "__init__.py").is_file()


def test_core_requirement():
    assert core_requirement("0.1.0") == "chatcore>=0.1,<0.2"
    assert core_requirement("0.12.3rc1") == "chatcore>=0.12,<0.13"
    assert core_requirement("1.4.2") == "chatcore>=1.4,<2"
    major, minor = __version__.split(".")[:2]
    assert core_requirement().startswith(f"chatcore>={major}.{minor},<")


# -- existing directories ---------------------------------------------------------------------


def test_existing_directory_is_not_overwritten(tmp_path):
    project = tmp_path / "chatcore-acme"
    project.mkdir()
    (project / "README.md").write_text("mine")
    with pytest.raises(ConfigurationError, match=r"already exists.*force"):
        new_plugin("acme", tmp_path)
    assert [p.name for p in project.iterdir()] == ["README.md"]
    assert (project / "README.md").read_text() == "mine"


def test_force_rewrites_the_generated_files_and_keeps_others(tmp_path):
    project = new_plugin("acme", tmp_path)
    (project / "README.md").write_text("edited")
    (project / "NOTES.txt").write_text("keep me")
    assert new_plugin("acme", tmp_path, force=True) == project
    assert (project / "README.md").read_text().startswith("# chatcore-acme")
    assert (project / "NOTES.txt").read_text() == "keep me"


def test_a_file_in_the_way_is_refused_even_with_force(tmp_path):
    (tmp_path / "chatcore-acme").write_text("a file")
    with pytest.raises(ConfigurationError, match="not a directory"):
        new_plugin("acme", tmp_path, force=True)


# -- the command ------------------------------------------------------------------------------


def _parse(argv):
    parser = argparse.ArgumentParser(prog="chatcore")
    sub = parser.add_subparsers(dest="command")
    add_new_plugin_parser(sub)
    return parser.parse_args(argv)


def test_command_writes_the_project_and_prints_next_steps(tmp_path):
    args = _parse(["new-plugin", "acme", "--directory", str(tmp_path), "--provider", "acme-llm"])
    out = io.StringIO()
    assert cmd_new_plugin(args, out) == 0
    project = tmp_path / "chatcore-acme"
    assert (project / "pyproject.toml").is_file()
    text = out.getvalue()
    assert f"Created {project}" in text
    assert 'pip install -e ".[test]"' in text
    assert "'acme-llm'" in text
    assert 'name="acme-llm"' in (project / "chatcore_acme" / "__init__.py").read_text()


def test_command_reports_errors_with_usage_exit_code(tmp_path, capsys):
    out = io.StringIO()
    assert cmd_new_plugin(_parse(["new-plugin", "Bad_Name", "-d", str(tmp_path)]), out) == 2
    assert "invalid plugin name 'Bad_Name'" in capsys.readouterr().err
    assert cmd_new_plugin(_parse(["new-plugin", "acme", "-d", str(tmp_path)]), out) == 0
    assert cmd_new_plugin(_parse(["new-plugin", "acme", "-d", str(tmp_path)]), out) == 2
    assert "already exists" in capsys.readouterr().err
    assert cmd_new_plugin(_parse(["new-plugin", "acme", "-d", str(tmp_path), "--force"]), out) == 0
