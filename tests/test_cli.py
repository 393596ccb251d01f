"""The ``chatcore`` command, run as a real subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from chatcore.testing.server import Reply, StandInServer

WIRE_PLUGIN = """
import chatcore
from chatcore.models import ChatResponse
from chatcore.provider import (
    Option, Provider, ProviderSpec, model_infos, stream_chat_completions,
)


class Wire(Provider):
    def __init__(self, config):
        super().__init__(config)
        key = config.require("api_key")
        self.transport = self.make_transport(
            base_url=config["base_url"], headers={"Authorization": "Bearer " + key}
        )

    def chat(self, request):
        r = self.transport.request("POST", "/chat/completions", json_body=request.to_openai_dict(),
                                   model=request.model)
        return ChatResponse.from_dict(r.data, request_id=r.request_id)

    def list_models(self):
        return model_infos(self.name, self.transport.request("GET", "/models").data["data"])

    def stream(self, request):
        body = dict(request.to_openai_dict(), stream=True)
        yield from stream_chat_completions(
            self.transport, "/chat/completions", body, provider=self.name, model=request.model
        )


@chatcore.hookimpl
def chatcore_providers():
    return [ProviderSpec(name="clitest", factory=Wire, capabilities={"chat", "stream", "models"},
                         options={"api_key": Option(secret=True, env=("CLITEST_KEY",))})]
"""


def _dist(root: Path, name: str, module: str, source: str) -> None:
    (root / f"{module}.py").write_text(textwrap.dedent(source))
    info = root / f"{name}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[chatcore]\n{module} = {module}\n")


@pytest.fixture
def env(tmp_path):
    _dist(tmp_path, "clitest-plugin", "clitest_plugin", WIRE_PLUGIN)
    _dist(tmp_path, "broken-plugin", "broken_plugin", "import does_not_exist_anywhere\n")
    base = {k: v for k, v in os.environ.items() if not k.startswith(("CHATCORE_", "CLITEST"))}
    base["PYTHONPATH"] = os.pathsep.join([str(tmp_path), *sys.path])
    return base


def run(args, env, input=""):
    # stdin is always given: a prompt is combined with piped stdin, which must not be the
    # test runner's own
    return subprocess.run(
        [sys.executable, "-m", "chatcore._cli", *args],
        capture_output=True,
        text=True,
        env=env,
        input=input,
        timeout=60,
    )


def test_plugins_table_shows_broken_plugin_without_traceback(env):
    out = run(["plugins"], env)
    assert out.returncode == 0, out.stderr
    assert "clitest-plugin" in out.stdout
    assert "clitest" in out.stdout
    lines = [line for line in out.stdout.splitlines() if line.startswith("broken_plugin")]
    assert lines
    assert "ERROR" in lines[0]
    assert "ModuleNotFoundError" in lines[0]
    assert "Traceback" not in out.stdout + out.stderr


def test_plugins_json(env):
    out = run(["plugins", "--json"], env)
    records = {r["name"]: r for r in json.loads(out.stdout)}
    assert records["clitest_plugin"]["providers"] == ["clitest"]
    assert records["broken_plugin"]["error"].startswith("failed to import")
    assert set(records["clitest_plugin"]) == {
        "name",
        "distribution",
        "version",
        "hooks",
        "providers",
        "error",
        "disabled",
        "builtin",
        "sync_only",
    }
    # a 0.1 provider (its own I/O) is flagged; the bundled translate-only ones are not
    assert records["clitest_plugin"]["sync_only"] == ["clitest"]
    assert records["openai"]["sync_only"] == []


def test_plugins_table_flags_sync_only_providers(env):
    out = run(["plugins"], env)
    rows = {line.split()[0]: line for line in out.stdout.splitlines() if line.strip()}
    assert "sync-only: clitest" in rows["clitest_plugin"]
    assert "sync-only" not in rows["openai"]


def test_chat_and_models_over_http(env):
    with StandInServer(api_key="sk-cli-test-key-0123456789") as server:
        env = {
            **env,
            "CLITEST_KEY": "sk-cli-test-key-0123456789",
            "CHATCORE_CLITEST_BASE_URL": server.base_url,
        }
        out = run(["chat", "-m", "clitest:gpt-4o-mini", "-o", "temperature=0.5", "Hi CLI"], env)
        assert out.returncode == 0, out.stderr
        assert "Hi CLI" in out.stdout
        assert server.requests[-1].json()["temperature"] == 0.5
        piped = run(["chat", "-m", "clitest:gpt-4o-mini", "--json"], env, input="from stdin")
        assert json.loads(piped.stdout)["object"] == "chat.completion"
        models = run(["models", "clitest"], env)
        assert "clitest:gpt-4o-mini" in models.stdout.splitlines()
        server.enqueue(*[Reply.error(401, "bad key")])
        failed = run(["chat", "-m", "clitest:x", "hello"], env)
        assert failed.returncode == 4
        assert "AuthenticationError" in failed.stderr
        assert "Traceback" not in failed.stderr


def test_errors_have_distinct_exit_codes(env):
    missing_key = run(["chat", "-m", "clitest:x", "hi"], env)
    assert missing_key.returncode == 3
    assert "CLITEST_KEY" in missing_key.stderr
    unknown = run(["chat", "-m", "nosuch:x", "hi"], env)
    assert unknown.returncode == 6
    assert "pip install" not in unknown.stderr  # never a package named after a typo
    typo = run(["chat", "-m", "opnai:gpt-4o-mini", "hi"], env)
    assert typo.returncode == 6
    assert "did you mean 'openai'?" in typo.stderr
    assert "chatcore-opnai" not in typo.stderr
    slash = run(["chat", "-m", "openai/gpt-4o-mini", "hi"], env)
    assert slash.returncode == 2
    assert "did you mean 'openai:gpt-4o-mini'?" in slash.stderr
    bad = run(["chat", "-m", "no-colon", "hi"], env)
    assert bad.returncode == 2
    refused = run(
        ["chat", "-m", "clitest:x", "hi"],
        {**env, "CLITEST_KEY": "k" * 12, "CHATCORE_CLITEST_BASE_URL": "http://127.0.0.1:9/v1"},
    )
    assert refused.returncode == 5
    debug = run(["--debug", "chat", "-m", "no-colon", "hi"], env)
    assert "Traceback" in debug.stderr
    usage = run([], env)
    assert usage.returncode == 2


def test_broken_pipe_is_quiet(monkeypatch, capsys):
    from chatcore._cli import main

    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone: every write raises BrokenPipeError
    broken = os.fdopen(write_end, "w")
    monkeypatch.setattr(sys, "stdout", broken)
    try:
        assert main(["plugins", "--json"]) == 0
    finally:
        monkeypatch.undo()
        try:
            broken.close()
        except BrokenPipeError:
            pass
    assert "Traceback" not in capsys.readouterr().err


def test_chat_streams_by_default_and_interactive_keeps_history(env):
    key = "sk-cli-test-key-0123456789"
    with StandInServer(api_key=key) as server:
        env = {**env, "CLITEST_KEY": key, "CHATCORE_CLITEST_BASE_URL": server.base_url}
        out = run(["chat", "-m", "clitest:gpt-4o-mini", "-s", "be brief", "Stream me"], env)
        assert out.returncode == 0, out.stderr
        assert "Stream me" in out.stdout
        body = server.requests[-1].json()
        assert body["stream"] is True
        assert body["messages"][0] == {"role": "system", "content": "be brief"}
        server.clear()
        session = run(
            ["chat", "-m", "clitest:gpt-4o-mini", "-i", "--no-stream"],
            env,
            input="first question\nsecond question\n\n",
        )
        assert session.returncode == 0, session.stderr
        assert len(server.requests) == 2
        second = server.requests[1].json()["messages"]
        assert [m["role"] for m in second] == ["user", "assistant", "user"]
        assert second[0]["content"] == "first question"
        assert "first question" in second[1]["content"]


def test_config_command_masks_secrets(env, tmp_path):
    secret = "sk-config-secret-0123456789abcdef"
    (tmp_path / "chatcore.toml").write_text(
        f'max_retries = 4\n[providers.clitest]\napi_key = "{secret}"\n'
    )
    out = subprocess.run(
        [sys.executable, "-m", "chatcore._cli", "config"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert "max_retries" in out.stdout
    assert "4" in out.stdout
    assert secret not in out.stdout
    as_json = subprocess.run(
        [sys.executable, "-m", "chatcore._cli", "config", "--json"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
    )
    assert secret not in as_json.stdout
    json.loads(as_json.stdout)
    bad = run(["config", "--config", str(tmp_path / "missing.toml")], env)
    assert bad.returncode == 3


def test_health_command_exit_codes(env):
    key = "sk-cli-test-key-0123456789"
    with StandInServer(api_key=key) as server:
        good = {**env, "CLITEST_KEY": key, "CHATCORE_CLITEST_BASE_URL": server.base_url}
        out = run(["health", "--json"], good)
        assert out.returncode == 0, out.stdout + out.stderr
        report = json.loads(out.stdout)
        assert report["ready"] is True
        bad = {
            **env,
            "CLITEST_KEY": "sk-wrong-key-0123456789",
            "CHATCORE_CLITEST_BASE_URL": server.base_url,
        }
        out = run(["health", "--provider", "clitest"], bad)
        assert out.returncode == 1
        assert "AuthenticationError" in out.stdout
        assert "sk-wrong-key-0123456789" not in out.stdout


def test_serve_health_serves_until_terminated(env):
    import signal
    import socket
    import time
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "chatcore._cli", "serve-health", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/livez", timeout=2) as r:
                    assert r.status == 200
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert f"127.0.0.1:{port}" in out


def test_log_level_flag_logs_redacted_records_to_stderr(env):
    key = "sk-cli-log-key-0123456789abcdef"
    with StandInServer(api_key=key) as server:
        env = {**env, "CLITEST_KEY": key, "CHATCORE_CLITEST_BASE_URL": server.base_url}
        out = run(["--log-level", "DEBUG", "chat", "-m", "clitest:m", "--no-stream", "hi"], env)
        assert out.returncode == 0, out.stderr
        assert "chat clitest:m ok in" in out.stderr
        assert "request body" in out.stderr
        assert key not in out.stderr
        assert out.stderr.count("chat clitest:m ok in") == 1  # no duplicate default handler
        bad = run(["--log-level", "LOUD", "plugins"], env)
        assert bad.returncode == 2


def test_chat_never_prints_an_echoed_key(env):
    """A server echoing the key back (text, model, request id, header names and values,
    error body keys) gets none of it printed, on stdout or stderr, with --debug and DEBUG
    logs on; the test plugin passes no secrets anywhere, so the core must mask them."""
    key = "cliEchoKey.0123"  # shaped like no known credential: only masking can hide it
    echo = {"x-request-id": key, "x-echo": f"you sent {key}", key: "as a name"}
    body = {"error": {"message": f"bad {key}", "type": key, "code": key}, key: [{key: key}]}
    with StandInServer(api_key=key) as server:
        env = {**env, "CLITEST_KEY": key, "CHATCORE_CLITEST_BASE_URL": server.base_url}
        server.enqueue(
            Reply.chat(f"the key is {key}", model=key, headers=echo),
            Reply.chat(f"the key is {key}", model=key, headers=echo),
            Reply.chat_stream(f"the key is {key}", model=key, headers=echo),
            Reply.json(body, status=400, headers=echo),
            Reply.json([key, {key: key}], headers=echo),
        )
        base = ["--debug", "--log-level", "DEBUG", "chat", "-m", "clitest:m"]
        outs = [
            run([*base, "--no-stream", "hi"], env),
            run([*base, "--json", "hi"], env),
            run([*base, "hi"], env),
            run([*base, "--no-stream", "hi"], env),
            run([*base, "--no-stream", "hi"], env),
        ]
    assert [o.returncode for o in outs] == [0, 0, 0, 4, 4], [o.stderr for o in outs]
    assert "the key is ***" in outs[0].stdout
    assert json.loads(outs[1].stdout)["model"] == "***"
    assert "Traceback" in outs[3].stderr and "BadRequestError" in outs[3].stderr
    assert "ResponseDecodeError" in outs[4].stderr
    for out in outs:
        assert key not in out.stdout + out.stderr
