"""The ``chatcore`` command line: ``chat``, ``models``, ``plugins``, ``config``, ``health``,
``serve-health``, ``new-plugin`` and ``demo``.

Errors print one clear line and exit non-zero: 2 usage, 3 configuration, 4 provider
(API) errors and local rate-limit refusals, 5 network errors, 6 plugin errors, 70 an
unexpected internal error; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from collections.abc import Sequence
from typing import Any, TextIO

from chatcore._spend import add_spend_parser, cmd_spend

EXIT_USAGE = 2
EXIT_CONFIG = 3
EXIT_PROVIDER = 4
EXIT_NETWORK = 5
EXIT_PLUGIN = 6
EXIT_INTERNAL = 70


def _parser() -> argparse.ArgumentParser:
    from chatcore import __version__

    parser = argparse.ArgumentParser(
        prog="chatcore", description="Call chat LLM providers through installed chatcore plugins."
    )
    parser.add_argument("--version", action="version", version=f"chatcore {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    parser.add_argument(
        "--log-level",
        metavar="LEVEL",
        help="turn chatcore's logging on at LEVEL (DEBUG, INFO, WARNING...) on stderr",
    )
    parser.add_argument("--log-json", action="store_true", help="log JSON lines (with --log-level)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("plugins", help="list installed plugins and their providers")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")

    p = sub.add_parser("models", help="list the models a provider serves")
    p.add_argument("provider", help="provider name, e.g. openai")
    p.add_argument("--json", action="store_true", help="print JSON")

    p = sub.add_parser("chat", help="send one chat message")
    p.add_argument("prompt", nargs="?", help="the prompt (read from stdin when omitted)")
    p.add_argument("-m", "--model", required=True, help="provider:model, e.g. openai:gpt-4o-mini")
    p.add_argument("-s", "--system", help="a system message")
    p.add_argument(
        "-o",
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a request parameter (value parsed as JSON when possible), repeatable",
    )
    p.add_argument("--json", action="store_true", help="print the whole response as JSON")

    p.add_argument("--no-stream", action="store_true", help="wait for the whole answer")
    p.add_argument(
        "-i", "--interactive", action="store_true", help="a multi-turn session with history"
    )

    p = sub.add_parser("config", help="show the effective settings and where each comes from")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--config", metavar="PATH", help="settings file (default: ./chatcore.toml)")
    p.add_argument("--env", choices=["dev", "staging", "prod"], help="settings profile")

    p = sub.add_parser("health", help="check liveness and each provider's readiness")
    p.add_argument("--provider", action="append", metavar="NAME", help="check only these")
    p.add_argument("--timeout", type=float, default=2.0, help="probe timeout in seconds")
    p.add_argument("--json", action="store_true", help="print JSON")

    p = sub.add_parser("serve-health", help="serve /livez, /readyz and /metrics over HTTP")
    p.add_argument("--host", default=None, help="bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="port (default 8686)")
    p.add_argument(
        "--allow-non-loopback", action="store_true", help="allow binding beyond 127.0.0.1"
    )

    sub.add_parser(
        "demo", help="real chats through the bundled plugins (offline: a local stand-in)"
    )
    from chatcore._scaffold import add_new_plugin_parser

    add_new_plugin_parser(sub)
    add_spend_parser(sub)
    return parser


def _table(rows: list[list[str]], out: TextIO) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for n, row in enumerate(rows):
        out.write("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() + "\n")
        if n == 0:
            out.write("  ".join("-" * w for w in widths) + "\n")


def cmd_plugins(args: argparse.Namespace, out: TextIO) -> int:
    """Print every plugin: name, distribution, version, providers, status."""
    import warnings

    from chatcore._plugins import PluginWarning, list_plugins

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PluginWarning)  # shown in the table instead
        records = list_plugins()
    if args.json:
        json.dump([r.to_dict() for r in records], out, indent=2)
        out.write("\n")
        return 0
    rows = [["NAME", "DISTRIBUTION", "VERSION", "PROVIDERS", "STATUS"]]
    for r in records:
        status = "disabled" if r.disabled else ("ERROR: " + r.error if r.error else "ok")
        if r.sync_only and not r.error:
            status += f" (sync-only: {', '.join(r.sync_only)}; AsyncClient runs it in threads)"
        rows.append(
            [r.name, r.distribution or "-", r.version or "-", ", ".join(r.providers) or "-", status]
        )
    _table(rows, out)
    return 0


def cmd_models(args: argparse.Namespace, out: TextIO) -> int:
    """Print the models of one provider."""
    from chatcore import Client

    with Client() as client:
        models = client.list_models(args.provider)
    if args.json:
        json.dump(
            [{"id": m.id, "owned_by": m.owned_by, "created": m.created} for m in models],
            out,
            indent=2,
        )
        out.write("\n")
    else:
        for m in models:
            out.write(f"{args.provider}:{m.id}\n")
    return 0


def _parse_options(options: Sequence[str]) -> dict[str, Any]:
    from chatcore.exceptions import ValidationError

    params: dict[str, Any] = {}
    for item in options:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValidationError([("-o", f"{item!r} is not KEY=VALUE")])
        try:
            params[key] = json.loads(value)
        except ValueError:
            params[key] = value
    return params


def cmd_chat(args: argparse.Namespace, out: TextIO) -> int:
    """Send one chat and print the answer."""
    from chatcore import Client
    from chatcore.exceptions import ValidationError

    prompt = args.prompt
    if prompt is None and not args.interactive:
        if sys.stdin.isatty():
            raise ValidationError([("prompt", "give a prompt or pipe one on stdin")])
        prompt = sys.stdin.read()
    messages: list[dict[str, Any]] = []
    if args.system:
        messages.append({"role": "system", "content": args.system})
    messages.append({"role": "user", "content": prompt})
    params = _parse_options(args.option)
    with Client() as client:
        if args.interactive:
            return _interactive(client, args, messages[:-1], params, out)
        _answer(client, args, messages, params, out)
    return 0


def _answer(
    client: Any,
    args: argparse.Namespace,
    messages: list[dict[str, Any]],
    params: dict[str, Any],
    out: TextIO,
) -> str:
    """Send one turn; stream it to ``out`` unless --no-stream/--json; return the text."""
    from chatcore._validate import split_model

    provider = client.provider(split_model(args.model)[0])
    if args.json or args.no_stream or "stream" not in provider.capabilities:
        response = client.chat(args.model, messages, **params)
        if args.json:
            json.dump(response.to_dict(), out, indent=2)
            out.write("\n")
        else:
            out.write(response.text + "\n")
        return str(response.text)
    with client.stream(args.model, messages, **params) as stream:
        for chunk in stream:
            if chunk.text:
                out.write(chunk.text)
                out.flush()
        out.write("\n")
        return str(stream.text)


def _interactive(
    client: Any,
    args: argparse.Namespace,
    history: list[dict[str, Any]],
    params: dict[str, Any],
    out: TextIO,
) -> int:
    """A read-eval loop keeping the conversation; empty line, `exit` or EOF ends it."""
    first = args.prompt
    out.write(f"chatcore chat with {args.model}: an empty line, 'exit' or Ctrl-D ends it\n")
    while True:
        if first is not None:
            line, first = first, None
        else:
            out.write("> ")
            out.flush()
            line = sys.stdin.readline()
            if not line:
                break
            line = line.rstrip("\n")
        if not line.strip() or line.strip() in ("exit", "quit"):
            break
        history.append({"role": "user", "content": line})
        reply = _answer(client, args, history, params, out)
        history.append({"role": "assistant", "content": reply})
    return 0


def cmd_config(args: argparse.Namespace, out: TextIO) -> int:
    """Print the effective settings with their sources, secrets masked."""
    from chatcore._plugins import get_plugin_host
    from chatcore._settings import load_settings, render_config

    specs = get_plugin_host().providers()
    loaded = load_settings({"env": args.env}, config_path=args.config, provider_names=specs)
    text = render_config(loaded, json=args.json, specs=specs)
    out.write(text if text.endswith("\n") else text + "\n")
    return 0


def cmd_health(args: argparse.Namespace, out: TextIO) -> int:
    """Probe the providers; exit 0 when ready, 1 when not."""
    from chatcore import Client
    from chatcore._health import HealthChecker, render_health

    with Client() as client:
        checker = HealthChecker(client, timeout=args.timeout, ttl=0.0)
        try:
            report = checker.readiness(args.provider or None)
        finally:
            checker.close()
    if args.json:
        json.dump(report.to_dict(), out, indent=2)
        out.write("\n")
    else:
        out.write(render_health(report))
        out.write("\n")
    return 0 if report.ready else 1


def cmd_serve_health(args: argparse.Namespace, out: TextIO) -> int:
    """Serve the health endpoints until Ctrl-C or SIGTERM."""
    import signal

    from chatcore import Client

    with Client() as client:
        server = client.serve_health(
            args.host, args.port, allow_non_loopback=args.allow_non_loopback
        )

        def stop(_signum: int, _frame: Any) -> None:
            raise KeyboardInterrupt

        signal.signal(signal.SIGTERM, stop)
        out.write(f"chatcore health endpoints on {server.url} (/livez /readyz /metrics)\n")
        out.flush()
        try:
            server.join()
        except KeyboardInterrupt:
            pass
        finally:
            server.stop()
    return 0


def cmd_demo(args: argparse.Namespace, out: TextIO) -> int:
    """Run the demo (see :mod:`chatcore._demo`)."""
    from chatcore._demo import run_demo

    return run_demo(out)


def _cmd_new_plugin(args: argparse.Namespace, out: TextIO) -> int:
    """Write a ready plugin project (see :mod:`chatcore._scaffold`)."""
    from chatcore._scaffold import cmd_new_plugin

    return cmd_new_plugin(args, out)


_COMMANDS = {
    "plugins": cmd_plugins,
    "models": cmd_models,
    "chat": cmd_chat,
    "config": cmd_config,
    "health": cmd_health,
    "serve-health": cmd_serve_health,
    "demo": cmd_demo,
    "new-plugin": _cmd_new_plugin,
    "spend": cmd_spend,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``chatcore`` command."""
    parser = _parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return EXIT_USAGE
    from chatcore import exceptions as ex

    if args.log_level:
        from chatcore._log import configure_logging

        try:
            configure_logging(args.log_level, json=args.log_json)
        except ValueError as exc:
            sys.stderr.write(f"chatcore: error: --log-level {args.log_level!r}: {exc}\n")
            return EXIT_USAGE
    try:
        return _COMMANDS[args.command](args, sys.stdout)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # the reader went away (`chatcore plugins | head`): not an error of ours
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except ex.ChatcoreError as exc:
        if args.debug:
            _print_traceback(exc)
        code, hint = _classify(exc)
        _error_line(f"chatcore: error: {type(exc).__name__}: {exc}{hint}")
        return code
    except Exception as exc:  # a bug or a plugin's own failure: one line unless --debug
        if args.debug:
            _print_traceback(exc)
        _error_line(
            f"chatcore: internal error: {type(exc).__name__}: {exc} (run with --debug for"
            " the traceback)"
        )
        return EXIT_INTERNAL


def _shown(text: str) -> str:
    """``text`` with every secret a provider registered, and anything shaped like a
    credential, masked: the last net under what reaches the terminal."""
    from chatcore import _log
    from chatcore._redact import redact

    return redact(text, _log._secrets)


def _error_line(text: str) -> None:
    sys.stderr.write(_shown(text) + "\n")


def _print_traceback(exc: BaseException) -> None:
    sys.stderr.write(_shown("".join(traceback.format_exception(exc))))


def _classify(exc: BaseException) -> tuple[int, str]:
    from chatcore import exceptions as ex

    if isinstance(exc, ex.ValidationError):
        return EXIT_USAGE, ""
    if isinstance(exc, ex.ConfigurationError):
        return EXIT_CONFIG, ""
    if isinstance(exc, ex.PluginError):
        return EXIT_PLUGIN, ""
    if isinstance(exc, ex.APIConnectionError):
        return EXIT_NETWORK, " (check the network and the provider's base_url)"
    if isinstance(exc, ex.AuthenticationError):
        return EXIT_PROVIDER, " (check the provider's API key)"
    return EXIT_PROVIDER, ""


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
