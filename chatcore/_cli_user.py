"""The ``chatcore`` commands that manage the user directory: ``keys``, ``aliases``,
``models default`` and ``logs`` (see :mod:`chatcore._userdir` and :mod:`chatcore._convlog`).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, TextIO

from chatcore.exceptions import ConfigurationError, ValidationError

__all__ = [
    "add_user_parsers",
    "check_model",
    "cmd_aliases",
    "cmd_keys",
    "cmd_logs",
    "default_model",
]


def add_user_parsers(sub: Any) -> None:
    """The ``keys``, ``aliases`` and ``logs`` sub-commands."""
    p = sub.add_parser("keys", help="store API keys in the user directory (owner-only)")
    p.add_argument("action", nargs="?", default="list", choices=["list", "set", "remove", "path"])
    p.add_argument("name", nargs="?", help="provider name, e.g. openai")
    p.add_argument("--json", action="store_true", help="list: print JSON (names only)")

    p = sub.add_parser("aliases", help="short names for models, e.g. fast -> openai:gpt-4o-mini")
    p.add_argument("action", nargs="?", default="list", choices=["list", "set", "remove", "path"])
    p.add_argument("name", nargs="?", help="the alias")
    p.add_argument("model", nargs="?", help="set: the provider:model it stands for")
    p.add_argument("--json", action="store_true", help="list: print JSON")

    p = sub.add_parser("logs", help="list and search the conversation log")
    p.add_argument(
        "action",
        nargs="?",
        default="list",
        choices=["list", "path", "on", "off", "status"],
        help="list (default), path, on, off, status",
    )
    p.add_argument("-n", "--count", type=int, default=3, help="how many exchanges (0: all)")
    p.add_argument("-q", "--query", help="only exchanges whose prompt or answer contain this")
    p.add_argument("-m", "--model", help="only this model (an alias works)")
    p.add_argument("--cid", "--conversation", dest="cid", help="only this conversation")
    p.add_argument("-c", "--current", action="store_true", help="only the last conversation")
    p.add_argument("-r", "--response", action="store_true", help="print the last answer only")
    p.add_argument("--json", action="store_true", help="print JSON")


# --------------------------------------------------------------------------------------
# keys


def _key_provider(name: str | None) -> str:
    """``name`` checked to be an installed provider that takes an API key."""
    from chatcore._plugins import get_plugin_host
    from chatcore.exceptions import ProviderNotFoundError

    if not name:
        raise ValidationError([("name", "give the provider name, e.g. `chatcore keys set openai`")])
    specs = get_plugin_host().providers()
    spec = specs.get(name)
    if spec is None:
        raise ProviderNotFoundError(name, specs)
    if "api_key" not in spec.all_options():
        raise ValidationError([("name", f"provider {name!r} takes no api_key option")])
    return name


def _read_secret(name: str) -> str:
    """The key, typed without echo on a terminal, else the first line of stdin."""
    if sys.stdin.isatty():
        import getpass

        value = getpass.getpass(f"Enter the API key for {name} (not shown): ")
    else:
        value = sys.stdin.readline()
    value = value.strip()
    if not value:
        raise ValidationError([("key", "an empty key was given; nothing was stored")])
    if any(c.isspace() or ord(c) < 32 for c in value):
        raise ValidationError([("key", "the key contains white space or control characters")])
    return value


def cmd_keys(args: argparse.Namespace, out: TextIO) -> int:
    """``chatcore keys [list|set|remove|path]``: values are never printed."""
    from chatcore._userdir import delete_key, keys_path, set_key, stored_keys, too_open

    path = keys_path()
    if args.action == "path":
        out.write(f"{path}\n")
        return 0
    if args.action == "set":
        name = _key_provider(args.name)
        written = set_key(name, _read_secret(name))
        out.write(f"stored the key for {name} in {written}\n")
        return 0
    if args.action == "remove":
        if not args.name:
            raise ValidationError([("name", "give the provider name to remove")])
        if not delete_key(args.name):
            raise ConfigurationError(f"no key is stored for {args.name!r} (in {path})")
        out.write(f"removed the key for {args.name}\n")
        return 0
    names = sorted(stored_keys())
    if too_open(path):
        sys.stderr.write(
            f"chatcore: warning: {path} can be read by other users; run chmod 600 on it\n"
        )
    if args.json:
        json.dump(names, out)
        out.write("\n")
    elif names:
        out.write("".join(f"{n}\n" for n in names))
    else:
        out.write(f"no keys stored (in {path}); add one with `chatcore keys set PROVIDER`\n")
    return 0


# --------------------------------------------------------------------------------------
# aliases and the default model


def check_model(model: str, aliases: dict[str, str]) -> str:
    """``model`` (an alias resolved) checked to be ``provider:model`` of an installed
    provider; returns the resolved name."""
    from chatcore._plugins import get_plugin_host
    from chatcore._validate import split_model

    resolved = aliases.get(model, model)
    provider, _ = split_model(resolved)
    get_plugin_host().provider_spec(provider)
    return resolved


def cmd_aliases(args: argparse.Namespace, out: TextIO) -> int:
    """``chatcore aliases [list|set|remove|path]``."""
    from chatcore._userdir import UserSettings

    user = UserSettings()
    if args.action == "path":
        out.write(f"{user.path}\n")
        return 0
    if args.action == "set":
        if not args.name or not args.model:
            raise ValidationError([("aliases", "usage: chatcore aliases set NAME PROVIDER:MODEL")])
        if ":" in args.name or not args.name.strip() or args.name != args.name.strip():
            raise ValidationError(
                [("name", f"{args.name!r}: an alias has no colon and no surrounding spaces")]
            )
        check_model(args.model, {})
        user.aliases[args.name] = args.model
        user.save()
        out.write(f"{args.name} -> {args.model}\n")
        return 0
    if args.action == "remove":
        if args.name not in user.aliases:
            raise ConfigurationError(f"no alias named {args.name!r} (in {user.path})")
        del user.aliases[args.name]
        user.save()
        out.write(f"removed the alias {args.name}\n")
        return 0
    if args.json:
        json.dump(user.aliases, out, indent=2, sort_keys=True)
        out.write("\n")
    elif user.aliases:
        width = max(len(a) for a in user.aliases)
        for name in sorted(user.aliases):
            out.write(f"{name.ljust(width)}  {user.aliases[name]}\n")
    else:
        out.write("no aliases; add one with `chatcore aliases set NAME PROVIDER:MODEL`\n")
    return 0


def default_model(args: argparse.Namespace, out: TextIO) -> int:
    """``chatcore models default [MODEL] [--unset]``: show or set the default model."""
    from chatcore._userdir import UserSettings

    user = UserSettings()
    if args.unset:
        user.default_model = None
        user.save()
        out.write("no default model\n")
        return 0
    if args.value is None:
        out.write(f"{user.default_model or 'none'}\n")
        return 0
    check_model(args.value, user.aliases)
    user.default_model = args.value
    user.save()
    out.write(f"default model: {args.value}\n")
    return 0


# --------------------------------------------------------------------------------------
# logs


def cmd_logs(args: argparse.Namespace, out: TextIO) -> int:
    """``chatcore logs [list|path|on|off|status]``."""
    from chatcore._convlog import ConversationLog, logs_path
    from chatcore._userdir import UserSettings

    path = logs_path()
    if args.action == "path":
        out.write(f"{path}\n")
        return 0
    user = UserSettings()
    if args.action in ("on", "off"):
        user.log = args.action == "on"
        user.save()
        out.write(f"conversation logging is {args.action}\n")
        return 0
    log = ConversationLog(path)
    if args.action == "status":
        state = "on" if user.log else "off"
        out.write(f"conversation logging is {state}; {log.count()} exchange(s) in {path}\n")
        return 0
    cid = args.cid
    if args.current:
        cid = log.last_conversation_id()
        if cid is None:
            raise ConfigurationError(f"no conversation is logged yet (in {path})")
    model = user.resolve(args.model) if args.model else None
    if args.count < 0:
        raise ValidationError([("-n", "expected 0 (all) or more")])
    turns = log.search(args.query, conversation_id=cid, model=model, limit=(args.count or None))
    if args.response:
        if turns:
            out.write(turns[-1].response + "\n")
        return 0
    if args.json:
        json.dump([t.to_dict() for t in turns], out, indent=2)
        out.write("\n")
        return 0
    for turn in turns:
        out.write(
            f"# {turn.created}  conversation {turn.conversation_id}  id {turn.id}\n"
            f"model: {turn.model}"
        )
        if turn.input_tokens is not None or turn.output_tokens is not None:
            out.write(f"  tokens: {turn.input_tokens or 0} in, {turn.output_tokens or 0} out")
        out.write("\n\n")
        if turn.system:
            out.write(f"## System\n\n{turn.system}\n\n")
        out.write(f"## Prompt\n\n{turn.prompt}\n\n")
        if turn.attachments:
            out.write("## Attachments\n\n" + "".join(f"- {a}\n" for a in turn.attachments))
            out.write("\n")
        out.write(f"## Response\n\n{turn.response}\n\n")
    if not turns:
        empty = "no logged exchanges match" if log.count() else f"nothing logged yet ({path})"
        out.write(empty + "\n")
    return 0
