"""``optiinfra`` sub-commands of the Alertmanager component.

- ``alertmanager-config``: print the Alertmanager configuration that routes taxonomy alerts to the receiver.
- ``receiver``: run the webhook receiver service (its flags and ``run`` live in ``app.py``).

Each command is a ``_register_<name>(subparsers)`` adding its flags and a ``_run_<name>(args) -> int``.
"""

from __future__ import annotations

import argparse
import sys

from optiinfra.cli import UsageError

from . import amconfig
from .app import add_receiver_parser


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    _register_alertmanager_config(subparsers)
    add_receiver_parser(subparsers)


# ------------------------------------------------------------------------------------------ alertmanager-config

def _register_alertmanager_config(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "alertmanager-config",
        help="print the Alertmanager config routing taxonomy alerts to the receiver",
        description="Print (stdout) an Alertmanager configuration: taxonomy alerts go to the OptiInfra receiver's "
                    "webhook with bearer credentials from a file, everything else to a null receiver, and the "
                    "taxonomy's inhibition rules.",
    )
    defaults = amconfig.Options()
    parser.add_argument("--receiver-url", default=defaults.receiver_url,
                        help=f"base URL of the receiver; /api/v1/alerts is appended (default: {defaults.receiver_url})")
    parser.add_argument("--credentials-file", default=defaults.credentials_file,
                        help="bearer token file as Alertmanager sees it; empty for no authorization "
                             f"(default: {defaults.credentials_file})")
    parser.add_argument("--group-wait", default=defaults.group_wait,
                        help=f"wait before the first notification of a group (default: {defaults.group_wait})")
    parser.add_argument("--group-interval", default=defaults.group_interval,
                        help=f"wait before notifying a group's changes (default: {defaults.group_interval})")
    parser.add_argument("--repeat-interval", default=defaults.repeat_interval,
                        help=f"re-send a still-firing group after (default: {defaults.repeat_interval})")
    parser.add_argument("--resolve-timeout", default=defaults.resolve_timeout,
                        help=f"global resolve_timeout (default: {defaults.resolve_timeout})")
    parser.set_defaults(func=_run_alertmanager_config)


def _run_alertmanager_config(args: argparse.Namespace) -> int:
    options = amconfig.Options(
        receiver_url=args.receiver_url, credentials_file=args.credentials_file, group_wait=args.group_wait,
        group_interval=args.group_interval, repeat_interval=args.repeat_interval,
        resolve_timeout=args.resolve_timeout,
    )
    try:
        text = amconfig.render(options)
    except amconfig.ConfigError as exc:
        raise UsageError(str(exc)) from None
    sys.stdout.write(text)
    return 0
