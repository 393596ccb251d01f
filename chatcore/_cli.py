"""The ``chatcore`` command line: ``chat``, ``logs``, ``models``, ``aliases``, ``keys``,
``plugins``, ``config``, ``health``, ``serve-health``, ``routes``, ``new-plugin`` and
``demo``. ``chat`` lives in :mod:`chatcore._cli_chat`; the commands that keep state in the
user directory (keys, aliases, the default model, the conversation log) in
:mod:`chatcore._cli_user`.

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
from typing import Any, TextIO, cast

from chatcore._spend import add_spend_parser, cmd_spend
from chatcore.exceptions import ConfigurationError, ValidationError

EXIT_USAGE = 2
EXIT_CONFIG = 3
EXIT_PROVIDER = 4
EXIT_NETWORK = 5
EXIT_PLUGIN = 6
EXIT_INTERNAL = 70


def _parser() -> argparse.ArgumentParser:
    from chatcore import __version__

    parser = argparse.ArgumentParser(
        prog="chatcore",
        description="Call chat LLM providers through installed chatcore plugins.",
        allow_abbrev=False,  # `chat --log` is not an abbreviation of --log-level
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

    p = sub.add_parser("models", help="list a provider's models, or set the default model")
    p.add_argument("provider", help="provider name, e.g. openai; or 'default'")
    p.add_argument("value", nargs="?", help="with 'default': the model to use when -m is not given")
    p.add_argument("--unset", action="store_true", help="with 'default': remove the default")
    p.add_argument("--json", action="store_true", help="print JSON")

    from chatcore._cli_chat import add_chat_parser
    from chatcore._cli_user import add_user_parsers

    add_chat_parser(sub)
    add_user_parsers(sub)

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

    p = sub.add_parser("routes", help="list routes, their deployments and cooldowns")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--config", metavar="PATH", help="settings file (default: ./chatcore.toml)")

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
    """Print the models of one provider (``models default``: the default model)."""
    from chatcore import Client

    if args.provider == "default":
        from chatcore._cli_user import default_model

        return default_model(args, out)
    if args.value is not None or args.unset:
        raise ValidationError([("models", "usage: chatcore models PROVIDER | models default")])

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


def cmd_config(args: argparse.Namespace, out: TextIO) -> int:
    """Print the effective settings with their sources, secrets masked; then fail with
    every invalid setting and provider option, checked as a ``Client`` checks them."""
    from chatcore._base import _check_providers_installed
    from chatcore._plugins import get_plugin_host
    from chatcore._settings import _provider_entries, load_settings, render_config
    from chatcore.provider import resolve_config

    specs = get_plugin_host().providers()
    problems: list[str] = []
    loaded = load_settings(
        {"env": args.env}, config_path=args.config, provider_names=specs, report=problems
    )
    configured = {**loaded.file_providers, **loaded.settings.providers}
    try:
        _check_providers_installed(configured, specs)
    except ConfigurationError as exc:
        problems.append(str(exc))
    for name in sorted({entry[0] for entry in _provider_entries(loaded, specs)}):
        if name in specs:
            try:
                resolve_config(specs[name], loaded.provider_options(specs[name]), loaded.environ)
            except ConfigurationError as exc:
                problems.append(str(exc))
    text = render_config(loaded, json=args.json, specs=specs)
    out.write(text if text.endswith("\n") else text + "\n")
    if problems:
        out.flush()
        count = f"{len(problems)} problems" if len(problems) > 1 else "1 problem"
        raise ConfigurationError(f"{count}:\n  " + "\n  ".join(problems))
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


def cmd_routes(args: argparse.Namespace, out: TextIO) -> int:
    """List the routes with their deployments' cooldowns (from the cooldown store: shared
    through chatcore-redis, else this process's own, which starts empty)."""
    from chatcore import Client
    from chatcore._health import render_routes, route_health

    with Client(config_path=args.config) as client:
        routes = route_health(client)
    if args.json:
        json.dump([r.to_dict() for r in routes], out, indent=2)
        out.write("\n")
    elif not routes:
        out.write("no routes configured (add [routes.NAME] tables to chatcore.toml)\n")
    else:
        out.write("\n".join(render_routes(routes)) + "\n")
    return 0


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


def cmd_chat(args: argparse.Namespace, out: TextIO) -> int:
    """Send a prompt or hold a conversation (see :mod:`chatcore._cli_chat`)."""
    from chatcore._cli_chat import cmd_chat as run

    return run(args, out)


def _cmd_user(args: argparse.Namespace, out: TextIO) -> int:
    """``keys``, ``aliases`` and ``logs`` (see :mod:`chatcore._cli_user`)."""
    from chatcore import _cli_user

    command: Any = getattr(_cli_user, "cmd_" + args.command)
    return int(command(args, out))


_COMMANDS = {
    "plugins": cmd_plugins,
    "models": cmd_models,
    "chat": cmd_chat,
    "keys": _cmd_user,
    "aliases": _cmd_user,
    "logs": _cmd_user,
    "config": cmd_config,
    "health": cmd_health,
    "serve-health": cmd_serve_health,
    "routes": cmd_routes,
    "demo": cmd_demo,
    "new-plugin": _cmd_new_plugin,
    "spend": cmd_spend,
}


class _Output:
    """stdout, remembering whether the last line written is unfinished (a streamed answer
    in progress), so a log record or an error starts on a line of its own."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.mid_line = False

    def write(self, text: str) -> int:
        if text:
            self.mid_line = not text.endswith("\n")
        return self.stream.write(text)

    def flush(self) -> None:
        self.stream.flush()

    def fileno(self) -> int:
        return self.stream.fileno()

    def isatty(self) -> bool:
        return self.stream.isatty()

    def end_line(self) -> None:
        """Finish an unfinished line on the terminal (stdout itself is left as written
        when it is not the terminal stderr goes to)."""
        if self.mid_line:
            self.flush()
            if _same_terminal(self.stream, sys.stderr):
                self.stream.write("\n")
                self.flush()
                self.mid_line = False


def _same_terminal(a: Any, b: Any) -> bool:
    try:
        return bool(a.isatty() and b.isatty() and os.ttyname(a.fileno()) == os.ttyname(b.fileno()))
    except (OSError, ValueError, AttributeError):
        return False


_output = _Output(sys.stdout)


class _LogSink:
    """stderr for chatcore's log records, each on a line of its own."""

    def write(self, message: str) -> None:
        _output.end_line()
        sys.stderr.write(message)
        sys.stderr.flush()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``chatcore`` command."""
    parser = _parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return EXIT_USAGE
    if args.log_level:
        from chatcore._log import configure_logging

        try:
            from loguru import logger as root

            root.remove()  # loguru's default handler would print each record twice
            configure_logging(args.log_level, json=args.log_json, sink=_LogSink())
        except ValueError as exc:
            sys.stderr.write(f"chatcore: error: --log-level {args.log_level!r}: {exc}\n")
            return EXIT_USAGE
    _output.stream = sys.stdout
    try:
        return _COMMANDS[args.command](args, cast(TextIO, _output))
    except KeyboardInterrupt:
        _output.end_line()
        return 130
    except BrokenPipeError:
        # the reader went away (`chatcore plugins | head`): not an error of ours
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except Exception as exc:
        return report_error(exc, args.debug)


def report_error(exc: BaseException, debug: bool) -> int:
    """Print one line about ``exc`` on stderr (the traceback too with ``--debug``) and
    return the exit code it means."""
    from chatcore import exceptions as ex

    _output.end_line()
    if debug:
        _print_traceback(exc)
    if isinstance(exc, ex.ChatcoreError):
        code, hint = _classify(exc)
        _error_line(f"chatcore: error: {type(exc).__name__}: {exc}{hint}")
        return code
    # a bug or a plugin's own failure: one line unless --debug
    _error_line(
        f"chatcore: internal error: {type(exc).__name__}: {exc} (run with --debug for"
        " the traceback)"
    )
    return EXIT_INTERNAL


def shown(text: str) -> str:
    """``text`` with every secret a provider registered, and anything shaped like a
    credential, masked: the last net under what reaches the terminal."""
    from chatcore import _log
    from chatcore._redact import redact

    return redact(text, _log._secrets)


def _error_line(text: str) -> None:
    sys.stderr.write(shown(text) + "\n")
    sys.stderr.flush()


def _print_traceback(exc: BaseException) -> None:
    sys.stderr.write(shown("".join(traceback.format_exception(exc))))


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
