"""The ``optiinfra`` command line: one entry point, one sub-command per component.

Each component keeps its own flags in its ``cli`` module, which exposes ``register(subparsers)``; this
module only assembles them, gives every flag an environment-variable twin (``--upstream`` ->
``OPTIINFRA_UPSTREAM``) and turns user errors into one clear line and exit status 2, never a traceback.
The component modules are named here as strings and imported at start-up: the CLI is the one place that
sees every component, as the composition root.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Callable, Sequence

from optiinfra import __version__
from optiinfra import log as oilog
from optiinfra.cliutil import UsageError

#: Modules whose ``register(subparsers)`` adds sub-commands, in help order.
COMMAND_MODULES: tuple[str, ...] = (
    "optiinfra.exporter.cli",
    "optiinfra.exporter.logpipe",
    "optiinfra.rules.cli",
    "optiinfra.alertmanager.cli",
    "optiinfra.grafana.cli",
    "optiinfra.demo.cli",
    "optiinfra.generate",
    "optiinfra.orchestrator.cli",
    "optiinfra.report",
)

ENV_PREFIX = "OPTIINFRA_"
#: Values of a switch's environment twin that turn it on (anything else turns it off).
ENV_TRUE: tuple[str, ...] = ("1", "true", "yes", "on")


#: Flags that several commands have with different defaults or choices (``--max-body-bytes`` is 20 MiB for
#: the exporter, 1 MiB for the receiver): their twins name the command, ``OPTIINFRA_RECEIVER_MAX_BODY_BYTES``,
#: so one variable never sets two commands' flags. A test keeps this set equal to what the parser shows.
SCOPED_DESTS = frozenset({"engine", "listen", "max_body_bytes", "model"})


def env_name(dest: str, command: str | None = None) -> str:
    """The environment twin of a flag (``command``: the top-level command the flag belongs to)."""
    scope = f"{command.upper().replace('-', '_')}_" if command and dest in SCOPED_DESTS else ""
    return ENV_PREFIX + scope + dest.upper()


def _apply_env_defaults(parser: argparse.ArgumentParser, command: str | None = None) -> None:
    """Let ``OPTIINFRA_<FLAG>`` set any flag's default; the flag on the command line still wins."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                _apply_env_defaults(sub, command or name)
            continue
        if not action.option_strings or action.dest in ("help", "version"):
            continue
        twin = env_name(action.dest, command)
        raw = os.environ.get(twin)
        if raw is None:
            continue
        if isinstance(action, argparse._StoreTrueAction | argparse._StoreFalseAction):
            truthy = raw.strip().lower() in ENV_TRUE
            action.default = truthy if isinstance(action, argparse._StoreTrueAction) else not truthy
        elif isinstance(action, argparse._AppendAction):
            action.default = [_convert(parser, action, twin, part) for part in raw.split(",") if part.strip()]
        else:
            action.default = _convert(parser, action, twin, raw)


def _convert(parser: argparse.ArgumentParser, action: argparse.Action, twin: str, raw: str) -> object:
    convert: Callable[[str], object] = action.type if callable(action.type) else str
    try:
        value = convert(raw.strip())
    except (argparse.ArgumentTypeError, ValueError) as exc:
        parser.error(f"environment variable {twin}={raw!r}: {exc}")
    if action.choices is not None and value not in action.choices:
        choices = ", ".join(map(str, action.choices))
        parser.error(f"environment variable {twin}={raw!r}: choose from {choices}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="optiinfra",
        description="Prometheus-native performance layer for LLM inference fleets.",
    )
    parser.add_argument("--version", action="version", version=f"optiinfra {__version__}")
    parser.add_argument("--log-format", choices=("json", "text"), default="json",
                        help="log format on stderr (default: json)")
    parser.add_argument("--log-level", choices=("debug", "info", "warning", "error"), default="info",
                        help="log level (default: info)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    _apply_env_defaults(parser)
    _accept_global_options_after(parser)
    return parser


def _accept_global_options_after(parser: argparse.ArgumentParser) -> None:
    """Let ``--log-format``/``--log-level`` follow the sub-command too (``optiinfra demo --log-format text``).
    The sub-command's copies default to SUPPRESS, so they only override when given, and stay out of the
    docs (help SUPPRESS); they are added after the environment twins, which belong to the top-level flags."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                for dest in ("log_format", "log_level"):
                    top = next(a for a in parser._actions if a.dest == dest)
                    sub.add_argument(*top.option_strings, dest=dest, choices=top.choices,
                                     default=argparse.SUPPRESS, help=argparse.SUPPRESS)
                _accept_global_options_after(sub)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    oilog.configure(args.log_format, args.log_level)
    try:
        result: int = args.func(args)
    except UsageError as exc:  # ConfigError too: one line, exit 2
        print(f"optiinfra {args.command}: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        logging.getLogger("optiinfra").info("interrupted")
        return 130
    return result


if __name__ == "__main__":
    sys.exit(main())
