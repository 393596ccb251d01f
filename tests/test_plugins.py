"""Plugin discovery: fake distributions (dist-info on sys.path) for the failure modes, and a
real plugin project built and pip-installed into a target directory for the success path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import chatcore
from chatcore._plugins import PluginHost, PluginWarning
from chatcore.exceptions import PluginLoadError, ProviderNotFoundError

GOOD = """
import chatcore
from chatcore.provider import ProviderSpec, Provider

@chatcore.hookimpl
def chatcore_providers():
    return [ProviderSpec(name="{provider}", factory=Provider)]
"""


def make_dist(
    root: Path, dist: str, version: str, module: str, source: str, ep_name: str | None = None
) -> None:
    """Write a distribution's dist-info and module into ``root`` (a sys.path entry)."""
    (root / f"{module}.py").write_text(textwrap.dedent(source))
    info = root / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[chatcore]\n{ep_name or module} = {module}\n")


@pytest.fixture
def site(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in [m for m in sys.modules if m.startswith("fakeplug_")]:
        del sys.modules[name]


def host(**env):
    return PluginHost(environ=env)


def record(h, name):
    return next(r for r in h.records() if r.name == name)


def test_good_plugin_is_discovered(site):
    make_dist(site, "fakeplug-good", "1.2.3", "fakeplug_good", GOOD.format(provider="goodprov"))
    h = host()
    r = record(h, "fakeplug_good")
    assert r.ok
    assert (r.distribution, r.version, r.providers) == ("fakeplug-good", "1.2.3", ("goodprov",))
    assert "chatcore_providers" in r.hooks
    spec = h.provider_spec("goodprov")
    assert (spec.plugin, spec.version) == ("fakeplug-good", "1.2.3")


def test_plugin_that_fails_to_import_is_reported_and_others_work(site):
    make_dist(site, "fakeplug-broken", "0.1", "fakeplug_broken", "raise RuntimeError('kaboom')\n")
    make_dist(site, "fakeplug-good", "1.0", "fakeplug_good", GOOD.format(provider="goodprov"))
    with pytest.warns(PluginWarning, match=r"fakeplug-broken 0\.1.*kaboom"):
        h = host()
    broken = record(h, "fakeplug_broken")
    assert broken.error is not None
    assert "RuntimeError: kaboom" in broken.error
    assert h.provider_spec("goodprov")


def test_misspelled_hook_is_reported(site):
    make_dist(
        site,
        "fakeplug-typo",
        "0.2",
        "fakeplug_typo",
        "import chatcore\n\n@chatcore.hookimpl\ndef chatcore_provider():\n    return []\n",
    )
    with pytest.warns(PluginWarning, match="chatcore_provider"):
        h = host()
    r = record(h, "fakeplug_typo")
    assert "unknown hook" in r.error
    assert "chatcore_providers" in r.error  # the known hooks are listed


def test_duplicate_provider_name_names_both_plugins(site):
    make_dist(site, "fakeplug-a", "1.0", "fakeplug_a", GOOD.format(provider="same"))
    make_dist(site, "fakeplug-b", "2.0", "fakeplug_b", GOOD.format(provider="same"))
    with pytest.warns(PluginWarning, match="already provided"):
        h = host()
    assert h.provider_spec("same").plugin == "fakeplug-a"
    err = record(h, "fakeplug_b").error
    assert "fakeplug_a" in err
    assert "fakeplug-b" not in h.provider_spec("same").plugin


def test_strict_mode_raises(site):
    make_dist(site, "fakeplug-broken", "0.1", "fakeplug_broken", "raise ImportError('nope')\n")
    with pytest.raises(PluginLoadError, match="fakeplug-broken"):
        host(CHATCORE_STRICT_PLUGINS="1")


def test_disabled_plugins_are_not_imported(site):
    make_dist(site, "fakeplug-broken", "0.1", "fakeplug_broken", "raise ImportError('nope')\n")
    h = host(CHATCORE_DISABLE_PLUGINS="fakeplug_broken, other")
    r = record(h, "fakeplug_broken")
    assert r.disabled
    assert r.error is None
    assert "fakeplug_broken" not in sys.modules


def test_bad_hook_signature_is_reported(site):
    make_dist(
        site,
        "fakeplug-sig",
        "0.3",
        "fakeplug_sig",
        "import chatcore\n\n@chatcore.hookimpl\n"
        "def chatcore_cache(settings, extra):\n    return None\n",
    )
    with pytest.warns(PluginWarning, match="failed to register"):
        h = host()
    assert record(h, "fakeplug_sig").error


def test_unknown_provider_lists_installed_and_hints_install(site):
    make_dist(site, "fakeplug-good", "1.0", "fakeplug_good", GOOD.format(provider="goodprov"))
    h = host()
    with pytest.raises(ProviderNotFoundError) as info:
        chatcore.Client(plugin_host=h, environ={}).chat("mystery:model-1", "hi")
    assert "goodprov" in str(info.value)
    assert "pip install" not in str(info.value)  # never a package named after a guess


def test_import_chatcore_imports_no_plugin():
    code = (
        "import sys, chatcore\nprint(sorted(m for m in sys.modules if m.startswith('chatcore_')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.slow
def test_real_distribution_is_built_installed_and_discovered(tmp_path):
    """Build a tiny plugin project with hatchling, pip-install it into a target directory,
    and see its provider in `chatcore plugins --json` and answer a chat over HTTP."""
    project = tmp_path / "chatcore-tiny"
    pkg = project / "chatcore_tiny"
    pkg.mkdir(parents=True)
    (project / "pyproject.toml").write_text(
        textwrap.dedent(
            """
            [build-system]
            requires = ["hatchling"]
            build-backend = "hatchling.build"

            [project]
            name = "chatcore-tiny"
            version = "0.0.7"
            dependencies = []

            [project.entry-points.chatcore]
            tiny = "chatcore_tiny"
            """
        )
    )
    (pkg / "__init__.py").write_text(
        textwrap.dedent(
            """
            import chatcore
            from chatcore.models import ChatResponse
            from chatcore.provider import Option, Provider, ProviderSpec


            class Tiny(Provider):
                def __init__(self, config):
                    super().__init__(config)
                    self.transport = self.make_transport(base_url=config["base_url"])

                def chat(self, request):
                    result = self.transport.request(
                        "POST", "/chat/completions", json_body=request.to_openai_dict()
                    )
                    return ChatResponse.from_dict(result.data, request_id=result.request_id)


            @chatcore.hookimpl
            def chatcore_providers():
                return [ProviderSpec(name="tiny", factory=Tiny,
                                     options={"base_url": Option(required=True)})]
            """
        )
    )
    target = tmp_path / "site"
    subprocess.run(
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
        check=True,
        capture_output=True,
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(target), *sys.path])}
    out = subprocess.run(
        [sys.executable, "-m", "chatcore._cli", "plugins", "--json"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    records = {r["name"]: r for r in json.loads(out.stdout)}
    assert records["tiny"]["distribution"] == "chatcore-tiny"
    assert records["tiny"]["version"] == "0.0.7"
    assert records["tiny"]["providers"] == ["tiny"]

    from chatcore.testing.server import StandInServer

    with StandInServer() as server:
        code = (
            "import chatcore\n"
            f"c = chatcore.Client(providers={{'tiny': {{'base_url': {server.base_url!r}}}}})\n"
            "r = c.chat('tiny:gpt-4o-mini', 'ping')\n"
            "print(r.provider, r.text)\n"
        )
        run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
        assert run.returncode == 0, run.stderr
        assert run.stdout.startswith("tiny ")
        assert "ping" in run.stdout
        ua = server.requests[-1].header("user-agent")
        assert "chatcore-tiny/0.0.7" in ua
