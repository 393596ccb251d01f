"""``chatcore chat``: one prompt (with piped input, attachments, a schema) or an
interactive conversation, logged to the conversation log unless turned off.

The interactive loop edits lines with ``readline`` where it exists (history kept in the
user directory), takes several lines with ``!multi`` ... ``!end`` or a bracketed paste,
and survives errors: a failed or cancelled (Ctrl-C) reply is reported, the conversation
goes on.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from chatcore.exceptions import ChatcoreError, ValidationError

__all__ = ["add_chat_parser", "cmd_chat", "concise_schema", "parse_options"]

_SCHEMA_TYPES = {
    "str": "string",
    "string": "string",
    "int": "integer",
    "integer": "integer",
    "float": "number",
    "number": "number",
    "bool": "boolean",
    "boolean": "boolean",
}
_EXIT_WORDS = frozenset({"exit", "quit", "!exit", "!quit"})


def add_chat_parser(sub: Any) -> None:
    p = sub.add_parser("chat", help="send a prompt, or hold a conversation (-i)")
    p.add_argument("prompt", nargs="?", help="the prompt (piped stdin is put before it)")
    p.add_argument(
        "-m",
        "--model",
        help="provider:model or an alias (default: `chatcore models default`)",
    )
    p.add_argument("-s", "--system", help="a system message")
    p.add_argument(
        "-o",
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a request parameter (value parsed as JSON when possible), repeatable",
    )
    p.add_argument(
        "-a",
        "--attach",
        action="append",
        default=[],
        metavar="FILE_OR_URL",
        help="an image (a file, an http(s) URL, or - for stdin), repeatable",
    )
    p.add_argument(
        "--schema",
        metavar="SCHEMA",
        help="answer as JSON: a JSON schema (inline or a file) or 'name str, age int'",
    )
    p.add_argument("--json", action="store_true", help="print the whole response as JSON")
    p.add_argument("--no-stream", action="store_true", help="wait for the whole answer")
    p.add_argument("-i", "--interactive", action="store_true", help="a conversation")
    p.add_argument(
        "-c", "--continue", dest="continue_", action="store_true", help="continue the last one"
    )
    p.add_argument("--cid", "--conversation", dest="cid", help="continue this conversation")
    p.add_argument("-n", "--no-log", action="store_true", help="do not log this chat")
    p.add_argument("--log", action="store_true", help="log this chat even if logging is off")


# --------------------------------------------------------------------------------------
# Input


def parse_options(options: Sequence[str]) -> dict[str, Any]:
    """``-o KEY=VALUE`` items as chat parameters (values JSON first); a key a chat call
    does not take is refused with what to write instead, in ``-o`` syntax."""
    from chatcore._validate import is_parameter, not_a_parameter

    params: dict[str, Any] = {}
    problems: list[tuple[str, str]] = []
    for item in options:
        key, sep, value = item.partition("=")
        if not sep or not key:
            problems.append(("-o", f"{item!r} is not KEY=VALUE"))
            continue
        if not is_parameter(key):
            problems.append((f"-o {key}", not_a_parameter(key, cli=True)))
            continue
        try:
            params[key] = json.loads(value)
        except ValueError:
            params[key] = value
    if problems:
        raise ValidationError(problems)
    return params


def concise_schema(text: str) -> dict[str, Any]:
    """A JSON schema from the compact form ``name str, age int: in years, bio``: fields
    separated by commas or new lines, each ``name [type][: description]`` with types
    ``str`` (the default), ``int``, ``float`` and ``bool``; every field required."""
    import re

    properties: dict[str, Any] = {}
    problems: list[tuple[str, str]] = []
    parts = [p.strip() for p in re.split(r"[,\n]", text) if p.strip()]
    for part in parts:
        spec, _, description = part.partition(":")
        words = spec.split()
        if not words or len(words) > 2 or not re.fullmatch(r"[A-Za-z_][\w-]*", words[0]):
            problems.append(("--schema", f"{part!r} is not 'name [type][: description]'"))
            continue
        kind = _SCHEMA_TYPES.get(words[1].lower() if len(words) == 2 else "str")
        if kind is None:
            problems.append(
                ("--schema", f"{words[1]!r} in {part!r}: the types are str, int, float, bool")
            )
            continue
        field: dict[str, Any] = {"type": kind}
        if description.strip():
            field["description"] = description.strip()
        properties[words[0]] = field
    if not properties and not problems:
        problems.append(("--schema", "no fields given"))
    if problems:
        raise ValidationError(problems)
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


def load_schema(value: str) -> tuple[dict[str, Any], bool]:
    """The schema ``--schema`` names (inline JSON, a JSON file, or the compact form) and
    whether it is in OpenAI's strict form (the compact form always is)."""
    text = value
    if not value.lstrip().startswith("{") and Path(value).is_file():
        text = Path(value).read_text(encoding="utf-8")
    if text.lstrip().startswith("{"):
        try:
            schema = json.loads(text)
        except ValueError as exc:
            raise ValidationError([("--schema", f"not valid JSON: {exc}")]) from None
        if not isinstance(schema, dict) or schema.get("type", "object") != "object":
            raise ValidationError([("--schema", "the schema's root must be an object")])
        return schema, schema.get("additionalProperties") is False
    return concise_schema(text), True


def _piped_stdin() -> str | None:
    if sys.stdin is None or sys.stdin.isatty():
        return None
    text = sys.stdin.read()
    return text if text.strip() else None


def assemble_prompt(prompt: str | None, piped: str | None) -> str:
    """The prompt sent: piped input, a blank line, then the argument (either alone)."""
    if piped is not None and prompt is not None:
        return piped.rstrip("\n") + "\n\n" + prompt
    if piped is not None:
        return piped
    if prompt is None:
        raise ValidationError([("prompt", "give a prompt, pipe one on stdin, or use -i")])
    return prompt


# --------------------------------------------------------------------------------------
# One exchange


class Session:
    """What every turn of one ``chatcore chat`` shares: the client, the model, the
    conversation so far and where it is logged."""

    def __init__(self, client: Any, args: argparse.Namespace, out: TextIO) -> None:
        self.client = client
        self.args = args
        self.out = out
        self.model: str = ""
        self.system: str | None = args.system
        self.params = parse_options(args.option)
        self.schema: dict[str, Any] | None = None
        self.strict = False
        if args.schema:
            self.schema, self.strict = load_schema(args.schema)
        self.history: list[dict[str, Any]] = []
        self.conversation_id: str | None = None
        self.log: Any = None

    def messages(self, user: Any) -> list[Any]:
        head = [{"role": "system", "content": self.system}] if self.system else []
        return [*head, *self.history, user]

    def turn(self, prompt: str, attachments: Sequence[str] = ()) -> str:
        """Send one prompt with the conversation so far; print the answer (streamed
        when it can be); log the exchange; return the answer's text."""
        user: Any = {"role": "user", "content": prompt}
        if attachments:
            from chatcore._images import user_message_with_images

            images = [sys.stdin.buffer.read() if a == "-" else a for a in attachments]
            user = user_message_with_images(prompt or None, *images)
        started = time.perf_counter()
        response, text = self._send(self.messages(user))
        elapsed = int((time.perf_counter() - started) * 1000)
        self.history += [
            {"role": "user", "content": prompt},
            {"role": "assistant", "content": text},
        ]
        if self.log is not None:
            from chatcore._cli import shown

            usage = getattr(response, "usage", None)
            logged = self.log.log(
                conversation_id=self.conversation_id,
                model=self.model,
                prompt=shown(prompt),
                response=text,
                system=self.system,
                attachments=["(stdin)" if a == "-" else a for a in attachments],
                options=self.params,
                schema=json.dumps(self.schema) if self.schema else None,
                input_tokens=getattr(usage, "prompt_tokens", None),
                output_tokens=getattr(usage, "completion_tokens", None),
                duration_ms=elapsed,
                request_id=getattr(response, "request_id", None),
            )
            self.conversation_id = logged.conversation_id
        return text

    def _send(self, messages: list[Any]) -> tuple[Any, str]:
        from chatcore._validate import split_model

        args, out, client = self.args, self.out, self.client
        if self.schema is not None:
            return self._structured(messages)
        provider = client.provider(split_model(self.model)[0])
        if args.json or args.no_stream or "stream" not in provider.capabilities:
            response = client.chat(self.model, messages, **self.params)
            if args.json:
                json.dump(response.to_dict(), out, indent=2)
                out.write("\n")
            else:
                out.write(response.text + "\n")
            return response, str(response.text)
        with client.stream(self.model, messages, **self.params) as stream:
            for chunk in stream:
                if chunk.text:
                    out.write(chunk.text)
                    out.flush()
            out.write("\n")
            return stream.response, str(stream.text)

    def _structured(self, messages: list[Any]) -> tuple[Any, str]:
        """Ask for JSON fitting the schema (json_schema where the provider declares it,
        else json_object with the schema in a system message), check it, print it."""
        from chatcore._structured import (
            StructuredOutputError,
            _decode,
            _with_system,
            validate_json,
        )
        from chatcore._validate import split_model
        from chatcore.models import normalize_messages

        assert self.schema is not None
        name = split_model(self.model)[0]
        caps = self.client.provider(name).capabilities
        params = dict(self.params)
        msgs: Any = messages
        if "json_schema" in caps:
            params["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "response", "schema": self.schema, "strict": self.strict},
            }
        elif "json_object" in caps:
            params["response_format"] = {"type": "json_object"}
            instruction = (
                "Respond with a single JSON object (no prose, no code fence) that matches"
                f" this JSON schema:\n{json.dumps(self.schema, separators=(',', ':'))}"
            )
            msgs = _with_system(normalize_messages(messages), instruction)
        else:
            raise ValidationError(
                [("--schema", f"provider {name!r} cannot be asked for structured output")]
            )
        response = self.client.chat(self.model, msgs, **params)
        value, error = _decode(response.text)
        problems = [("$", error)] if error else validate_json(value, self.schema)
        if problems:
            raise StructuredOutputError(
                "the answer does not fit the schema",
                raw_text=response.text,
                problems=problems,
                response=response,
            )
        text = json.dumps(value, indent=2, ensure_ascii=False)
        if self.args.json:
            json.dump(response.to_dict(), self.out, indent=2)
            self.out.write("\n")
        else:
            self.out.write(text + "\n")
        return response, text


# --------------------------------------------------------------------------------------
# The command


def cmd_chat(args: argparse.Namespace, out: TextIO) -> int:
    """Send a prompt (or hold a conversation) and print the answers."""
    from chatcore import Client
    from chatcore._convlog import ConversationLog, logs_path
    from chatcore._userdir import UserSettings

    user = UserSettings()
    if args.interactive and (args.schema or args.json):
        raise ValidationError([("-i", "--schema and --json answer one prompt; drop -i")])
    if args.no_log and args.log:
        raise ValidationError([("--log", "--log and --no-log contradict each other")])
    earlier: list[Any] = []
    cid = args.cid
    if args.continue_ or cid:
        reader = ConversationLog(logs_path())
        if cid is None:
            cid = reader.last_conversation_id()
            if cid is None:
                raise ValidationError([("-c", "no conversation is logged yet to continue")])
        earlier = reader.conversation(cid)
        if not earlier:
            raise ValidationError([("--cid", f"no logged conversation has the id {cid!r}")])
    name = args.model or (earlier[-1].model if earlier else None) or user.default_model
    if not name:
        raise ValidationError(
            [
                (
                    "-m",
                    "no model given and no default set: pass -m PROVIDER:MODEL, or set one"
                    " with `chatcore models default PROVIDER:MODEL`",
                )
            ]
        )
    piped = None
    if not args.interactive and "-" not in args.attach:
        piped = _piped_stdin()
    with Client() as client:
        session = Session(client, args, out)
        session.model = user.resolve(name)
        if session.system is None and earlier:
            session.system = earlier[-1].system
        for turn in earlier:
            session.history += [
                {"role": "user", "content": turn.prompt},
                {"role": "assistant", "content": turn.response},
            ]
        session.conversation_id = cid
        if args.log or (user.log and not args.no_log):
            session.log = ConversationLog(logs_path())
        if args.interactive:
            return _interactive(session, args.prompt)
        prompt = assemble_prompt(args.prompt, piped)
        session.turn(prompt, args.attach)
    return 0


# --------------------------------------------------------------------------------------
# Interactive


def _setup_readline() -> Any:
    """``readline`` set up for the session (history from the user directory, bracketed
    paste on), or ``None`` when stdin is not a terminal or there is no readline."""
    if not sys.stdin.isatty():
        return None
    try:
        import readline
    except ImportError:  # Windows without pyreadline3: plain input() still works
        return None
    from chatcore._userdir import ensure_dir, user_dir

    try:
        readline.parse_and_bind("set enable-bracketed-paste on")
        history = ensure_dir(user_dir()) / "history"
        readline.set_history_length(1000)
        if history.exists():
            readline.read_history_file(history)
    except (OSError, ChatcoreError):
        return readline
    import atexit

    def save() -> None:
        try:
            if not history.exists():
                os.close(os.open(history, os.O_WRONLY | os.O_CREAT, 0o600))
            readline.write_history_file(history)
        except OSError:
            pass

    atexit.register(save)
    return readline


def _read_block(marker: str) -> str | None:
    """Lines up to ``marker`` (``!multi`` mode), or ``None`` when cancelled by Ctrl-C."""
    lines: list[str] = []
    while True:
        try:
            line = input("... ")
        except EOFError:
            break
        except KeyboardInterrupt:
            return None
        if line.strip() == marker:
            break
        lines.append(line)
    return "\n".join(lines)


def _interactive(session: Session, first: str | None) -> int:
    """The read-eval loop; see the module docstring."""
    from chatcore._cli import report_error

    out = session.out
    readline = _setup_readline()
    where = f"conversation {session.conversation_id}" if session.conversation_id else "a new chat"
    out.write(
        f"chatcore chat with {session.model} ({where}): !multi starts several lines and !end"
        " sends them; exit, quit or Ctrl-D ends it; Ctrl-C cancels a reply\n"
    )
    if readline is None and sys.stdin.isatty():
        out.write("(line editing is not available: Python has no readline module here)\n")
    while True:
        if first is not None:
            text, first = first, None
        else:
            try:
                text = input("> ")
            except EOFError:
                out.write("\n")
                break
            except KeyboardInterrupt:
                out.write("\n")  # Ctrl-C at the prompt drops the line, as in a shell
                continue
        command = text.strip()
        if not command:
            continue
        if command in _EXIT_WORDS:
            break
        if command.split()[0] == "!multi":
            words = command.split()
            block = _read_block(words[1] if len(words) > 1 else "!end")
            if block is None:
                out.write("\n(entry cancelled)\n")
                continue
            text = block
            if not text.strip():
                continue
        try:
            session.turn(text)
        except KeyboardInterrupt:
            out.write("\n")
            out.flush()
            sys.stderr.write("(reply cancelled)\n")
        except Exception as exc:  # reported; the conversation goes on
            out.flush()
            report_error(exc, session.args.debug)
    return 0
