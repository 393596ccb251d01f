"""Each source distribution holds exactly its own distribution: the core's sdist the core
(``chatcore/``, ``tests/``, its README, LICENSE and CHANGELOG), each plugin's sdist that
plugin (its package, its ``tests/``, its README and LICENSE), nothing of the others, of
``docs/`` or of ``benchmarks/``; and a wheel built from the unpacked sdist has the package.

The sdists are built in-process with hatchling (the build backend every ``pyproject.toml``
names), as ``python -m build --sdist`` would, into ``tmp_path``. The expected file lists come
from git (tracked files plus untracked ones not ignored, as hatchling sees the tree).
"""

from __future__ import annotations

import shutil
import subprocess
import tarfile
import zipfile
from pathlib import Path

import pytest

pytest.importorskip("hatchling")
from hatchling.builders.sdist import SdistBuilder
from hatchling.builders.wheel import WheelBuilder

ROOT = Path(__file__).resolve().parents[1]
PLUGINS = sorted(p.name for p in (ROOT / "plugins").iterdir() if (p / "pyproject.toml").is_file())
#: Files every sdist has besides its own: hatchling's metadata and the project's own files.
ALWAYS = {"PKG-INFO", "pyproject.toml", ".gitignore", "README.md", "LICENSE"}


def _git_files(root: Path, *dirs: str) -> set[str]:
    """Files under ``root/dirs`` as git sees the working tree (tracked, plus untracked not
    ignored), relative to ``root``."""
    git = shutil.which("git")
    if git is None or not (ROOT / ".git").exists():
        pytest.skip("needs git and a git checkout to list the expected files")
    out = subprocess.run(
        [git, "ls-files", "--cached", "--others", "--exclude-standard", "--", *dirs],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    # a file deleted in the working tree but still in the index is not in the sdist
    return {name for name in out.splitlines() if (root / name).is_file()}


def _build_sdist(root: Path, out: Path) -> tuple[str, set[str]]:
    """Build ``root``'s sdist into ``out``: (the archive's path, its members relative to the
    archive's top directory)."""
    archive = next(SdistBuilder(str(root)).build(directory=str(out)))
    with tarfile.open(archive) as tar:
        names = [m.name for m in tar.getmembers() if m.isfile()]
    tops = {name.split("/", 1)[0] for name in names}
    assert len(tops) == 1, f"an sdist has one top directory, not {sorted(tops)}"
    return archive, {name.split("/", 1)[1] for name in names}


def _wheel_from_sdist(archive: str, tmp_path: Path) -> set[str]:
    """Unpack the sdist and build a wheel from it alone: the wheel's members."""
    unpacked = tmp_path / "unpacked"
    with tarfile.open(archive) as tar:
        if hasattr(tarfile, "data_filter"):  # Python 3.10.12+ / 3.11.4+
            tar.extractall(unpacked, filter="data")
        else:  # pragma: no cover - an archive hatchling just wrote
            tar.extractall(unpacked)
    (source,) = unpacked.iterdir()
    wheel = next(WheelBuilder(str(source)).build(directory=str(tmp_path / "wheel")))
    with zipfile.ZipFile(wheel) as zf:
        return set(zf.namelist())


def test_core_sdist_holds_the_core_alone(tmp_path):
    archive, members = _build_sdist(ROOT, tmp_path / "dist")
    expected = ALWAYS | {"CHANGELOG.md"} | _git_files(ROOT, "chatcore", "tests")
    assert sorted(members - expected) == [], "files in the core's sdist that are not the core's"
    assert sorted(expected - members) == [], "files of the core missing from its sdist"
    assert not any(m.startswith(("plugins/", "docs/", "benchmarks/")) for m in members)
    wheel = _wheel_from_sdist(archive, tmp_path)
    assert {"chatcore/__init__.py", "chatcore/_pipeline.py", "chatcore/py.typed"} <= wheel


@pytest.mark.parametrize("plugin", PLUGINS)
def test_plugin_sdist_holds_that_plugin_alone(plugin, tmp_path):
    root = ROOT / "plugins" / plugin
    package = plugin.replace("-", "_")
    archive, members = _build_sdist(root, tmp_path / "dist")
    expected = ALWAYS | _git_files(root, package, "tests")
    assert sorted(members - expected) == [], f"files in {plugin}'s sdist that are not its own"
    assert sorted(expected - members) == [], f"files of {plugin} missing from its sdist"
    assert any(m.startswith(f"{package}/") and m.endswith(".py") for m in members)
    assert any(m.startswith("tests/test_") for m in members)
    # the plugin's own README and ignore file, not the repository's
    assert (root / ".gitignore").is_file()
    wheel = _wheel_from_sdist(archive, tmp_path)
    assert f"{package}/__init__.py" in wheel
    assert not any(name.startswith("chatcore/") for name in wheel)


def test_the_check_sees_a_stray_file(tmp_path):
    """An unanchored include picks up files of other distributions; the anchored ones do not
    (the failure this file guards against, shown on a small copy of the layout)."""
    project = tmp_path / "proj"
    for rel in ("pkg/__init__.py", "tests/test_a.py", "sub/other/tests/test_b.py", "README.md"):
        (project / rel).parent.mkdir(parents=True, exist_ok=True)
        (project / rel).write_text("\n", encoding="utf-8")
    (project / "sub/other/README.md").write_text("\n", encoding="utf-8")
    header = '[project]\nname = "proj"\nversion = "1"\n[tool.hatch.build.targets.sdist]\n'
    (project / "pyproject.toml").write_text(
        header + 'include = ["pkg", "tests", "README.md"]\n', encoding="utf-8"
    )
    _, loose = _build_sdist(project, tmp_path / "loose")
    assert {"sub/other/tests/test_b.py", "sub/other/README.md"} <= loose
    (project / "pyproject.toml").write_text(
        header + 'include = ["/pkg", "/tests", "/README.md"]\n', encoding="utf-8"
    )
    _, anchored = _build_sdist(project, tmp_path / "anchored")
    assert anchored == {
        "PKG-INFO",
        "pyproject.toml",
        "pkg/__init__.py",
        "tests/test_a.py",
        "README.md",
    }
