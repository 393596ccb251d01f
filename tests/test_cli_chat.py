"""``chatcore chat`` and the user-directory commands (``keys``, ``aliases``,
``models default``, ``logs``, ``config``), run through the real ``chatcore`` entry point
as subprocesses against a stand-in server on 127.0.0.1; HOME and the user directory are
in ``tmp_path``. The interactive mode runs in a pseudo-terminal (pexpect)."""

from __future__ import annotations

import base64
import json
import os
import shutil
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from chatcore.testing.server import Reply, StandInServer

KEY = "sk-clichat-0123456789abcdef"
PLUGIN = """
import chatcore
from chatcore.provider import Option, ProviderSpec
from chatcore.testing.helpers import OpenAIWireProvider


@chatcore.hookimpl
def chatcore_providers():
    options = {
        "api_key": Option(secret=True, env=("WIRE_API_KEY",)),
        "base_url": Option(default="http://127.0.0.1:9/v1", env=("WIRE_BASE_URL",)),
    }
    caps = {"chat", "stream", "models", "json_schema", "vision"}
    return [ProviderSpec(name="wire", factory=OpenAIWireProvider, options=options,
                         capabilities=caps)]
"""
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


def _chatcore() -> str:
    found = shutil.which("chatcore", path=os.path.dirname(sys.executable))
    assert found, "the chatcore console script is installed next to the interpreter"
    return found


@pytest.fixture
def server():
    with StandInServer(api_key=KEY) as srv:
        yield srv


@pytest.fixture
def cli(tmp_path, server):
    """Run ``chatcore ARGS`` with the test plugin, the server, and a private HOME."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "wire_plugin.py").write_text(textwrap.dedent(PLUGIN))
    info = site / "wire_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: wire-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[chatcore]\nwire_plugin = wire_plugin\n")
    home = tmp_path / "home"
    home.mkdir()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("CHATCORE_", "WIRE_", "XDG_", "OPENAI_", "HF_", "ANTHROPIC_"))
    }
    env.update(
        PYTHONPATH=os.pathsep.join([str(site), *sys.path]),
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / ".config"),
        WIRE_API_KEY=KEY,
        WIRE_BASE_URL=server.base_url,
    )

    class Cli:
        def __init__(self) -> None:
            self.env = env
            self.home = home
            self.user_dir = home / ".config" / "chatcore"
            self.cwd = tmp_path

        def __call__(self, *args: str, input: str | bytes | None = "", **extra_env: str):
            return subprocess.run(
                [_chatcore(), *args],
                capture_output=True,
                text=not isinstance(input, bytes),
                input=input,
                env={**self.env, **extra_env},
                cwd=self.cwd,
                timeout=60,
            )

        def ok(self, *args: str, **kwargs):
            out = self(*args, **kwargs)
            assert out.returncode == 0, out.stderr
            return out

    return Cli()


def _messages(server, index=-1):
    return server.requests[index].json()["messages"]


# --- prompts, piped input, options -----------------------------------------------------


def test_piped_input_and_prompt_are_combined(cli, server):
    out = cli.ok("chat", "-m", "wire:m", "--no-stream", "Review this", input="- a\n+ b\n")
    assert _messages(server) == [{"role": "user", "content": "- a\n+ b\n\nReview this"}]
    assert "Review this" in out.stdout
    cli.ok("chat", "-m", "wire:m", "--no-stream", input="only piped\n")
    assert _messages(server)[-1]["content"] == "only piped\n"
    none = cli("chat", "-m", "wire:m")
    assert none.returncode == 2
    assert "give a prompt, pipe one on stdin, or use -i" in none.stderr


@pytest.mark.parametrize(
    ("option", "said"),
    [
        ("temprature=1", "did you mean 'temperature'?"),
        ("top_k=5", "provider-specific parameters go in -o extra='{\"name\": value}'"),
        ("api_key=sk-x", "store it with `chatcore keys set <provider>`"),
        ("timeout=5", "use -o timeout_total=SECONDS"),
        ("stream=true", "--no-stream waits for the whole answer"),
    ],
)
def test_option_hints_use_the_command_line_syntax(cli, server, option, said):
    out = cli("chat", "-m", "wire:m", "-o", option, "hi")
    assert out.returncode == 2
    assert said in out.stderr
    assert "extra={...}" not in out.stderr
    assert server.requests == []


def test_options_reach_the_request(cli, server):
    cli.ok(
        "chat", "-m", "wire:m", "--no-stream", "-o", "temperature=0.5", "-o",
        'extra={"service_tier": "flex"}', "-o", "timeout_total=30", "hi",
    )  # fmt: skip
    body = server.requests[-1].json()
    assert (body["temperature"], body["service_tier"]) == (0.5, "flex")
    assert "timeout_total" not in body


# --- default model and aliases ---------------------------------------------------------


def test_default_model_and_aliases(cli, server):
    missing = cli("chat", "hi")
    assert missing.returncode == 2
    assert "chatcore models default PROVIDER:MODEL" in missing.stderr
    assert cli.ok("models", "default").stdout == "none\n"
    cli.ok("models", "default", "wire:default-one")
    assert cli.ok("models", "default").stdout == "wire:default-one\n"
    cli.ok("chat", "--no-stream", "hi")
    assert server.requests[-1].json()["model"] == "default-one"

    cli.ok("aliases", "set", "fast", "wire:fast-one")
    assert cli.ok("aliases").stdout.split() == ["fast", "wire:fast-one"]
    assert json.loads(cli.ok("aliases", "--json").stdout) == {"fast": "wire:fast-one"}
    cli.ok("chat", "-m", "fast", "--no-stream", "hi")
    assert server.requests[-1].json()["model"] == "fast-one"
    cli.ok("models", "default", "fast")  # an alias as the default
    cli.ok("chat", "--no-stream", "hi")
    assert server.requests[-1].json()["model"] == "fast-one"

    typo = cli("aliases", "set", "slow", "wyre:m")
    assert typo.returncode == 6
    assert "did you mean 'wire'?" in typo.stderr
    assert cli("aliases", "set", "a:b", "wire:m").returncode == 2
    assert cli("models", "default", "nocolon").returncode == 2
    cli.ok("aliases", "remove", "fast")
    assert cli("aliases", "remove", "fast").returncode == 3
    cli.ok("models", "default", "--unset")
    assert cli.ok("models", "default").stdout == "none\n"
    settings = cli.user_dir / "cli.json"
    assert stat.S_IMODE(settings.stat().st_mode) == 0o600
    assert stat.S_IMODE(cli.user_dir.stat().st_mode) == 0o700


# --- the conversation log --------------------------------------------------------------


def test_conversations_are_logged_listed_searched_and_continued(cli, server):
    cli.ok("chat", "-m", "wire:m", "-s", "Be brief.", "first question")
    cli.ok("chat", "-c", "second question")  # the model and system prompt carry over
    assert _messages(server) == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "first question"},
        {"role": "assistant", "content": _messages(server)[2]["content"]},
        {"role": "user", "content": "second question"},
    ]
    assert "first question" in _messages(server)[2]["content"]
    logged = json.loads(cli.ok("logs", "--json", "-n", "0").stdout)
    assert [t["prompt"] for t in logged] == ["first question", "second question"]
    assert logged[0]["conversation_id"] == logged[1]["conversation_id"]
    assert logged[1]["model"] == "wire:m"
    assert logged[0]["input_tokens"] is not None
    cid = logged[0]["conversation_id"]

    cli.ok("chat", "-m", "wire:m", "--no-log", "not logged")
    cli.ok("chat", "-m", "wire:m", "another conversation")
    found = json.loads(cli.ok("logs", "--json", "-q", "SECOND").stdout)
    assert [t["prompt"] for t in found] == ["second question"]
    current = json.loads(cli.ok("logs", "--json", "-c").stdout)
    assert [t["prompt"] for t in current] == ["another conversation"]
    assert "not logged" not in cli.ok("logs", "-n", "0").stdout
    text = cli.ok("logs", "--cid", cid).stdout
    assert "## Prompt\n\nfirst question" in text and "## System\n\nBe brief." in text

    server.clear()
    cli.ok("chat", "--cid", cid, "-m", "wire:other", "third")  # -m wins over the log's model
    assert server.requests[-1].json()["model"] == "other"
    assert len(_messages(server)) == 6
    assert cli("chat", "--cid", "nosuchid", "x").returncode == 2

    cli.ok("logs", "off")
    cli.ok("chat", "-m", "wire:m", "while off")
    assert "logging is off" in cli.ok("logs", "status").stdout
    cli.ok("chat", "-m", "wire:m", "--log", "forced")
    prompts = [t["prompt"] for t in json.loads(cli.ok("logs", "--json", "-n", "0").stdout)]
    assert "while off" not in prompts and "forced" in prompts
    db = Path(cli.ok("logs", "path").stdout.strip())
    assert db == cli.user_dir / "logs.db"
    assert stat.S_IMODE(db.stat().st_mode) == 0o600


def test_continue_with_nothing_logged_is_a_usage_error(cli):
    out = cli("chat", "-c", "hi")
    assert out.returncode == 2
    assert "no conversation is logged yet" in out.stderr
    assert "nothing logged yet" in cli.ok("logs").stdout


def test_the_log_holds_no_secret(cli, server):
    cli.ok("chat", "-m", "wire:m", "--no-stream", f"my key is {KEY}")
    db = (cli.user_dir / "logs.db").read_bytes()
    assert KEY.encode() not in db
    assert KEY not in cli.ok("logs").stdout


# --- attachments and structured output -------------------------------------------------


def test_image_attachments_from_files_urls_and_stdin(cli, server, tmp_path):
    image = tmp_path / "dot.png"
    image.write_bytes(PNG)
    cli.ok(
        "chat", "-m", "wire:m", "--no-stream", "-a", str(image), "-a",
        "https://example.com/cat.jpg", "What is this?",
    )  # fmt: skip
    content = _messages(server)[-1]["content"]
    assert content[0] == {"type": "text", "text": "What is this?"}
    assert content[1]["image_url"]["url"].startswith("data:image/png;base64,")
    assert content[2]["image_url"]["url"] == "https://example.com/cat.jpg"
    cli.ok("chat", "-m", "wire:m", "--no-stream", "-a", "-", "Describe", input=PNG)
    assert _messages(server)[-1]["content"][1]["image_url"]["url"].startswith("data:image/png")
    bad = cli("chat", "-m", "wire:m", "-a", str(tmp_path / "missing.png"), "x")
    assert bad.returncode == 2
    assert "missing.png" in bad.stderr
    logged = json.loads(cli.ok("logs", "--json", "-n", "2").stdout)
    assert logged[0]["attachments"] == [str(image), "https://example.com/cat.jpg"]
    assert logged[1]["attachments"] == ["(stdin)"]


def test_schema_in_the_compact_form_prints_checked_json(cli, server):
    server.enqueue(Reply.chat('{"name": "Ada", "age": 36}'))
    out = cli.ok("chat", "-m", "wire:m", "--schema", "name str, age int: in years", "Who?")
    assert json.loads(out.stdout) == {"name": "Ada", "age": 36}
    fmt = server.requests[-1].json()["response_format"]
    assert fmt["type"] == "json_schema"
    assert fmt["json_schema"]["strict"] is True
    assert fmt["json_schema"]["schema"] == {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "age": {"type": "integer", "description": "in years"},
        },
        "required": ["name", "age"],
        "additionalProperties": False,
    }
    server.enqueue(Reply.chat('{"name": "Ada", "age": "old"}'))
    wrong = cli("chat", "-m", "wire:m", "--schema", "name str, age int", "Who?")
    assert wrong.returncode == 4
    assert "$.age: expected integer, got a string" in wrong.stderr
    bad = cli("chat", "-m", "wire:m", "--schema", "name text", "Who?")
    assert bad.returncode == 2
    assert "the types are str, int, float, bool" in bad.stderr


def test_schema_from_a_json_file_and_json_output(cli, server, tmp_path):
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}
    path = tmp_path / "schema.json"
    path.write_text(json.dumps(schema))
    server.enqueue(Reply.chat('{"ok": true}'))
    out = cli.ok("chat", "-m", "wire:m", "--schema", str(path), "Fine?")
    assert json.loads(out.stdout) == {"ok": True}
    sent = server.requests[-1].json()["response_format"]["json_schema"]
    assert (sent["schema"], sent["strict"]) == (schema, False)
    whole = cli.ok("chat", "-m", "wire:m", "--json", "hi")
    assert json.loads(whole.stdout)["object"] == "chat.completion"


# --- keys --------------------------------------------------------------------------------


def test_keys_are_stored_owner_only_and_read_after_the_environment(cli, server, tmp_path):
    without = {**cli.env}
    del without["WIRE_API_KEY"]
    cli.env = without
    assert cli("chat", "-m", "wire:m", "hi").returncode == 3  # no key anywhere
    out = cli.ok("keys", "set", "wire", input=KEY + "\n")
    assert KEY not in out.stdout + out.stderr
    keys = cli.user_dir / "keys.json"
    assert stat.S_IMODE(keys.stat().st_mode) == 0o600
    assert cli.ok("keys", "list").stdout == "wire\n"
    assert json.loads(cli.ok("keys", "list", "--json").stdout) == ["wire"]
    cli.ok("chat", "-m", "wire:m", "--no-stream", "hi")  # the stored key is used
    assert server.requests[-1].header("Authorization") == f"Bearer {KEY}"

    shown = cli.ok("config").stdout
    row = next(line for line in shown.splitlines() if "providers.wire.api_key" in line)
    assert row.split()[1:] == ["***", "keys", str(keys)]
    assert KEY not in shown + cli.ok("config", "--json").stdout

    # the environment wins over the stored key
    wrong = cli("chat", "-m", "wire:m", "--no-stream", "hi", WIRE_API_KEY="sk-envwins-000000000")
    assert wrong.returncode == 4
    assert server.requests[-1].header("Authorization") == "Bearer sk-envwins-000000000"
    env_row = cli.ok("config", WIRE_API_KEY="sk-envwins-000000000").stdout
    assert "env WIRE_API_KEY" in env_row

    assert cli("keys", "set", "wyre", input="x\n").returncode == 6
    assert cli("keys", "set", "wire", input="\n").returncode == 2
    cli.ok("keys", "remove", "wire")
    assert "no keys stored" in cli.ok("keys").stdout
    assert cli("keys", "remove", "wire").returncode == 3


def test_a_client_in_python_reads_the_stored_key(cli, server):
    cli.ok("keys", "set", "wire", input=KEY + "\n")
    code = (
        "import chatcore, sys\n"
        "c = chatcore.Client()\n"
        "print(c.chat('wire:m', 'hi').text)\n"
        "hermetic = chatcore.Client(environ={'WIRE_BASE_URL': sys.argv[1]})\n"
        "try:\n"
        "    hermetic.chat('wire:m', 'hi')\n"
        "except chatcore.ConfigurationError:\n"
        "    print('explicit environ: no stored keys')\n"
    )
    env = {k: v for k, v in cli.env.items() if k != "WIRE_API_KEY"}
    out = subprocess.run(
        [sys.executable, "-c", code, server.base_url],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert "You said: hi" in out.stdout
    assert "explicit environ: no stored keys" in out.stdout


# --- config ------------------------------------------------------------------------------


def test_config_reports_every_invalid_setting(cli):
    (cli.cwd / "chatcore.toml").write_text(
        "max_retrys = 3\ncache_ttl = -1\n"
        "[providers.wire]\nbase_ur = 'http://127.0.0.1:1/v1'\n"
        "[providers.wyre]\ntimeout = 3\n"
    )
    out = cli("config")
    assert out.returncode == 3
    assert "4 problems" in out.stderr
    assert "max_retrys" in out.stderr and "did you mean 'max_retries'" in out.stderr
    assert "cache_ttl=-1" in out.stderr
    assert "unknown option 'base_ur' for provider 'wire'" in out.stderr
    assert "providers['wyre']" in out.stderr and "did you mean 'wire'?" in out.stderr
    assert "max_retries" in out.stdout  # the table is still shown
    chat = cli("chat", "-m", "wire:m", "hi")  # chat refuses the same file
    assert chat.returncode == 3
    (cli.cwd / "chatcore.toml").write_text("[providers.wire]\ntimeout = 3\n")
    cli.ok("config")


# --- interactive, in a pseudo-terminal ---------------------------------------------------

pexpect = pytest.importorskip("pexpect") if os.name == "posix" else None


def _spawn(cli, *args: str, **extra_env: str):
    child = pexpect.spawn(
        _chatcore(),
        list(args),
        env={**cli.env, "TERM": "xterm", **extra_env},
        cwd=str(cli.cwd),
        encoding="utf-8",
        timeout=30,
        dimensions=(40, 200),
    )
    return child


def _prompt(child) -> None:
    child.expect_exact("> ")


def test_interactive_session_edits_pastes_cancels_and_survives_errors(cli, server):
    child = _spawn(cli, "chat", "-m", "wire:m", "-s", "Be brief.", "-i")
    child.expect_exact("Ctrl-C cancels a reply")
    _prompt(child)
    assert "\x1b[?2004h" in child.before  # the terminal is asked to bracket pastes

    # a bracketed paste of several lines is one turn, sent when Enter is pressed
    child.send("\x1b[200~line one\nline two\x1b[201~")
    child.send("\r")
    child.expect_exact("You said: line one")
    _prompt(child)
    assert _messages(server)[-1] == {"role": "user", "content": "line one\nline two"}
    assert len(server.requests) == 1

    # a blank line does not end the session; the up arrow recalls the last entry
    child.send("\r")
    _prompt(child)
    child.send("\x1b[A\r")
    child.expect_exact("You said: line one")
    _prompt(child)
    assert _messages(server)[-1] == {"role": "user", "content": "line one\nline two"}
    assert len(_messages(server)) == 4  # system, user, assistant, user

    # !multi ... !end
    child.send("!multi\r")
    child.expect_exact("... ")
    child.send("first\r")
    child.send("second\r")
    child.send("!end\r")
    child.expect_exact("You said: first")
    _prompt(child)
    assert _messages(server)[-1]["content"] == "first\nsecond"

    # Ctrl-C during a streamed reply cancels that reply only
    words = " ".join(f"word{i}" for i in range(200))
    server.enqueue(Reply.chat_stream(words, delay_between=0.05))
    child.send("slow\r")
    child.expect_exact("word3")
    child.sendintr()
    child.expect_exact("(reply cancelled)")
    _prompt(child)

    # an error is reported and the session goes on
    server.enqueue(Reply.error(400, "that was refused"))
    child.send("refused\r")
    child.expect_exact("chatcore: error: BadRequestError")
    _prompt(child)

    child.send("still here\r")
    child.expect_exact("You said: still here")
    _prompt(child)
    sent = [m["content"] for m in _messages(server)]
    assert "slow" not in sent and "refused" not in sent  # neither is in the history
    assert sent[0] == "Be brief."
    assert sent[-1] == "still here"
    assert len(sent) == 1 + 2 * 3 + 1

    child.sendeof()
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    history = cli.user_dir / "history"
    assert "still here" in history.read_text()
    assert stat.S_IMODE(history.stat().st_mode) == 0o600

    # the conversation was logged and continues, interactively too
    child = _spawn(cli, "chat", "-c", "-i")
    child.expect_exact("(conversation ")
    _prompt(child)
    child.send("one more\r")
    child.expect_exact("You said: one more")
    _prompt(child)
    child.send("exit\r")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    assert [m["content"] for m in _messages(server)][:2] == ["Be brief.", "line one\nline two"]
    assert len(_messages(server)) == 1 + 2 * 4 + 1


def test_ctrl_c_at_the_prompt_keeps_the_session(cli, server):
    child = _spawn(cli, "chat", "-m", "wire:m", "-i", "--no-log")
    _prompt(child)
    child.send("half typed")
    child.expect_exact("half typed")
    # CPython's readline notices a SIGINT only while it waits for a key: one landing in
    # the microseconds it spends drawing the echo waits for the next key. A person is
    # never that fast; the test waits until readline is back to waiting.
    time.sleep(0.2)
    child.sendintr()
    _prompt(child)
    child.send("whole\r")
    child.expect_exact("You said: whole")
    _prompt(child)
    child.sendeof()
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    assert [m["content"] for m in _messages(server)] == ["whole"]


def test_a_log_record_never_lands_on_the_line_of_a_streamed_answer(cli, server):
    child = _spawn(cli, "--log-level", "INFO", "chat", "-m", "wire:m", "Stream me")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    lines = child.before.replace("\r\n", "\n").split("\n")
    answer = next(i for i, line in enumerate(lines) if "You said: Stream me" in line)
    assert lines[answer].endswith("You said: Stream me"), lines
    assert any("| INFO" in line and line[:4].isdigit() for line in lines[answer + 1 :]), lines
