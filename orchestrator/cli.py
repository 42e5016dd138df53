"""``optiinfra orchestrator``: supervise one engine process and apply plans to it by restarting it."""

from __future__ import annotations

import argparse
import shlex

from aiohttp import web

from optiinfra.cliutil import UsageError, parse_listen, read_secret

from .app import Orchestrator, create_app
from .engine import Engine, flag_value


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "orchestrator", help="supervise an engine process and apply plans by restarting it with new flags",
        description="A single-node orchestrator: runs the engine command (no shell), restarts it if it dies, "
                    "applies pushed plans by restarting it with the new flags (health-gated, reverting to the "
                    "previous flags on a failed start), reports each plan's status to the receiver, and applies "
                    "rollbacks by restarting with the previous flags.")
    parser.add_argument("--engine-cmd", required=True,
                        help="the engine's command line, split like a shell would (no shell runs it)")
    parser.add_argument("--health-url", dest="engine_health_url", default=None,
                        help="the engine's health URL (default: http://127.0.0.1:<--port of the command>/health)")
    parser.add_argument("--receiver-url", default=None, help="the receiver's base URL, for status reports")
    parser.add_argument("--receiver-token-file", default=None, help="file holding the receiver's API bearer token")
    parser.add_argument("--token-file", default=None, help="file holding the bearer token the receiver must send")
    parser.add_argument("--listen", default="127.0.0.1:9096", help="HOST:PORT (default: 127.0.0.1:9096)")
    parser.add_argument("--start-timeout", type=float, default=300.0,
                        help="seconds a (re)started engine has to answer its health URL (default: 300)")
    parser.add_argument("--engine-niceness", type=int, default=0, metavar="0-19",
                        help="run the engine at this lower CPU priority, its whole session (Linux autogroup) "
                             "included, so the sidecar and Prometheus on the same host are not starved "
                             "(default: 0, unchanged)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        argv = shlex.split(args.engine_cmd)
    except ValueError as exc:
        raise UsageError(f"--engine-cmd: {exc}") from exc
    if not argv:
        raise UsageError("--engine-cmd is empty")
    host, port = parse_listen("--listen", str(args.listen))
    if args.start_timeout <= 0:
        raise UsageError("--start-timeout must be > 0")
    if not 0 <= args.engine_niceness <= 19:
        raise UsageError("--engine-niceness must be between 0 and 19")
    health_url = args.engine_health_url or f"http://127.0.0.1:{flag_value(argv, '--port') or 8000}/health"
    orch = Orchestrator(
        engine=Engine(argv, health_url, start_timeout=args.start_timeout, niceness=args.engine_niceness),
        receiver_url=args.receiver_url,
        receiver_token=read_secret("--receiver-token-file", args.receiver_token_file),
        token=read_secret("--token-file", args.token_file),
    )
    web.run_app(create_app(orch), host=host, port=port, print=None)
    return 0
