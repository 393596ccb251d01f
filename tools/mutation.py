"""Mutation testing of chatcore with mutmut, one module at a time (``make mutation``).

For each module this lays out a staging directory under ``build/mutation/`` that holds a
copy of the module's package, the tests that exercise it and a ``pyproject.toml`` made of
the project's pytest settings and its ``[tool.mutmut]`` table; then it runs ``mutmut run``
there and prints the module's score. The staging directory is what makes plugins work:
mutmut names a mutant after its path relative to where it runs, and puts its ``mutants/``
copy first on ``sys.path``, so ``chatcore_openai/_wire.py`` must sit at the top of a
directory for its mutants to be the ``chatcore_openai._wire`` the tests import (through
the plugin's entry point) and for mutmut to match what the tests call to its mutants.

Usage: ``python tools/mutation.py [--jobs N] [MODULE ...]`` (default: every module of
issue 11). A module's score is ``killed / (killed + survived + no tests + suspicious)``;
timeouts count as killed.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import attrs

# tomllib from Python 3.11; the project depends on tomli before that
tomllib = importlib.import_module("tomllib" if sys.version_info >= (3, 11) else "tomli")

ROOT = Path(__file__).resolve().parents[1]
STAGING = ROOT / "build" / "mutation"

#: The modules of issue 11, in the order they are run.
DEFAULT_MODULES = (
    "chatcore/_retry.py",
    "chatcore/_limits.py",
    "chatcore/_cache.py",
    "chatcore/_redact.py",
    "chatcore/_sse.py",
    "chatcore/exceptions.py",
    "chatcore/_validate.py",
    "plugins/chatcore-openai/chatcore_openai/_wire.py",
)

#: Tests run against a module's mutants on top of its mirror (``tests/test_<name>.py``, or
#: the whole test directory of a plugin): the suites that check its rules over HTTP.
EXTRA_TESTS: dict[str, tuple[str, ...]] = {
    "chatcore/_redact.py": ("tests/test_exceptions.py", "tests/test_metrics.py"),
    "chatcore/_sse.py": ("tests/test_stream.py",),
    "chatcore/exceptions.py": ("plugins/chatcore-openai/tests/test_openai_errors.py",),
    "chatcore/_validate.py": (
        "tests/test_pipeline.py",
        "tests/test_images.py",
        "tests/test_settings.py",
    ),
}

#: mutmut's exit codes as it reports them (``mutmut.stats.status_by_exit_code``).
KILLED = {1: "killed", 3: "killed", 36: "timeout", -24: "timeout", 24: "timeout", 152: "timeout"}
NOT_KILLED = {0: "survived", 5: "no tests", 33: "no tests"}


@attrs.frozen
class Target:
    """One module to mutate: ``package_root`` is the directory that holds its top-level
    package (the repository, or a plugin's distribution directory)."""

    module: str
    package_root: Path
    package: str
    tests: tuple[str, ...]

    @property
    def slug(self) -> str:
        return self.module.removesuffix(".py").replace("/", "-")

    @property
    def inner_path(self) -> str:
        """The module's path relative to its package root (how mutmut names it)."""
        return str((ROOT / self.module).relative_to(self.package_root))


def target_for(module: str) -> Target:
    """The :class:`Target` of ``module`` (a path from the repository root)."""
    path = (ROOT / module).resolve()
    if path.suffix != ".py" or not path.is_file():
        raise SystemExit(f"mutation: {module!r} is not a Python file of this repository")
    relative = path.relative_to(ROOT)
    parts = relative.parts
    if parts[0] == "plugins":
        package_root = ROOT / parts[0] / parts[1]
        tests: list[str] = [f"{parts[0]}/{parts[1]}/tests"]
    else:
        package_root = ROOT
        mirror = f"tests/test_{path.stem.lstrip('_')}.py"
        tests = [mirror] if (ROOT / mirror).is_file() else []
    package = path.relative_to(package_root).parts[0]
    for extra in EXTRA_TESTS.get(str(relative), ()):
        if extra not in tests and (ROOT / extra).exists():
            tests.append(extra)
    if not tests:
        raise SystemExit(f"mutation: no tests are configured for {module!r} (see EXTRA_TESTS)")
    return Target(str(relative), package_root, package, tuple(tests))


def _toml_value(value: object) -> str:
    # JSON strings, numbers, booleans and arrays of them are valid TOML values.
    return json.dumps(value)


def staging_pyproject(target: Target, project: dict[str, object]) -> str:
    """The ``pyproject.toml`` of ``target``'s staging directory."""
    tool = project.get("tool", {})
    assert isinstance(tool, dict)
    pytest_options = dict(tool.get("pytest", {}).get("ini_options", {}))
    pytest_options.pop("testpaths", None)
    mutmut_options = dict(tool.get("mutmut", {}))
    staged_tests = [staged_test_path(target, t) for t in target.tests]
    mutmut_options.update(
        source_paths=[target.package],
        only_mutate=[target.inner_path],
        also_copy=sorted({t.split("/")[0] for t in staged_tests}),
        pytest_add_cli_args_test_selection=staged_tests,
    )
    lines = ["[tool.pytest.ini_options]"]
    lines += [f"{k} = {_toml_value(v)}" for k, v in pytest_options.items()]
    lines += ["", "[tool.mutmut]"]
    lines += [f"{k} = {_toml_value(v)}" for k, v in mutmut_options.items()]
    return "\n".join(lines) + "\n"


def staged_test_path(target: Target, test: str) -> str:
    """Where ``test`` (a path from the repository root) sits in the staging directory:
    a plugin's own tests at ``tests/``, anything else under its repository path."""
    plugin_tests = (target.package_root / "tests").relative_to(ROOT)
    if target.package_root != ROOT and (
        test == str(plugin_tests) or test.startswith(f"{plugin_tests}/")
    ):
        return "tests" + test[len(str(plugin_tests)) :]
    return test


def stage(target: Target, project: dict[str, object]) -> Path:
    """Lay out a fresh staging directory for ``target`` and return it."""
    where = STAGING / target.slug
    if where.exists():
        shutil.rmtree(where)
    where.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".hypothesis")
    shutil.copytree(target.package_root / target.package, where / target.package, ignore=ignore)
    for test in target.tests:
        source = ROOT / test
        dest = where / staged_test_path(target, test)
        if source.is_dir():
            shutil.copytree(source, dest, ignore=ignore, dirs_exist_ok=True)
        else:
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest)
            conftest = source.parent / "conftest.py"
            if conftest.is_file() and not (dest.parent / "conftest.py").exists():
                shutil.copy2(conftest, dest.parent / "conftest.py")
    (where / "pyproject.toml").write_text(staging_pyproject(target, project))
    return where


@attrs.frozen
class Score:
    module: str
    counts: Counter[str]
    survivors: tuple[str, ...]

    @property
    def killed(self) -> int:
        return self.counts["killed"] + self.counts["timeout"]

    @property
    def judged(self) -> int:
        return sum(self.counts.values()) - self.counts["not checked"] - self.counts["skipped"]

    @property
    def percent(self) -> float:
        return 100.0 * self.killed / self.judged if self.judged else 0.0

    def line(self) -> str:
        detail = ", ".join(f"{n} {status}" for status, n in sorted(self.counts.items()))
        return f"{self.module}: {self.percent:.1f} % ({self.killed}/{self.judged}; {detail})"


def read_score(target: Target, where: Path) -> Score:
    """The score of ``target`` from the ``.meta`` file mutmut wrote in ``where``."""
    meta_path = where / "mutants" / f"{target.inner_path}.meta"
    meta = json.loads(meta_path.read_text())
    counts: Counter[str] = Counter()
    survivors = []
    for name, code in sorted(meta["exit_code_by_key"].items()):
        if code in KILLED:
            counts[KILLED[code]] += 1
        elif code in NOT_KILLED:
            counts[NOT_KILLED[code]] += 1
            survivors.append(name)
        elif code is None:
            counts["not checked"] += 1
        elif code == 34:
            counts["skipped"] += 1
        else:
            counts["suspicious"] += 1
            survivors.append(name)
    return Score(target.module, counts, tuple(survivors))


def run(target: Target, project: dict[str, object], jobs: int) -> Score:
    where = stage(target, project)
    mutmut = Path(sys.executable).with_name("mutmut")
    print(f"== {target.module}: tests {' '.join(target.tests)}", flush=True)
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    completed = subprocess.run(
        [str(mutmut), "run", "--max-children", str(jobs)], cwd=where, env=env, check=False
    )
    if completed.returncode != 0:
        raise SystemExit(
            f"mutation: mutmut failed on {target.module} (exit {completed.returncode})"
        )
    score = read_score(target, where)
    (where / "survivors.txt").write_text("".join(f"{s}\n" for s in score.survivors))
    print(score.line(), flush=True)
    return score


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tools/mutation.py", description=__doc__.split("\n")[0])
    parser.add_argument("modules", nargs="*", help="paths from the repository root")
    parser.add_argument("--jobs", type=int, default=1, help="mutants tested at once (default 1)")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error("--jobs must be >= 1")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    targets = [target_for(m) for m in (args.modules or DEFAULT_MODULES)]
    scores = [run(t, project, args.jobs) for t in targets]
    report = "\n".join(score.line() for score in scores)
    STAGING.mkdir(parents=True, exist_ok=True)
    (STAGING / "scores.txt").write_text(report + "\n")
    print("\nmutation scores (survivors: build/mutation/<module>/survivors.txt)")
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
