"""``optiinfra simulate``: an engine simulator serving a real engine's ``/metrics`` while a scenario unfolds."""

from __future__ import annotations

import argparse

from aiohttp import web

from optiinfra.cli import UsageError
from optiinfra.demo.simulator.scenarios import SCENARIOS
from optiinfra.demo.simulator.server import SimConfig, create_app
from optiinfra.metrics import ENGINES


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "simulate", help="serve a simulated vLLM/TGI/SGLang /metrics while a scenario unfolds",
        description="A load-model simulator: Poisson arrivals, queue, KV blocks, chunked prefill, decode, "
                    "preemption. Serves the engine's /metrics, its info endpoint, and /admin/config, "
                    "/admin/scenario.")
    parser.add_argument("--engine", choices=ENGINES, default="vllm", help="engine format (default: vllm)")
    parser.add_argument("--scenario", choices=sorted(SCENARIOS), default="healthy",
                        help="scenario (default: healthy)")
    parser.add_argument("--listen", default="127.0.0.1:8000", help="HOST:PORT (default: 127.0.0.1:8000)")
    parser.add_argument("--time-scale", type=float, default=10.0,
                        help="simulated seconds per real second (default: 10)")
    parser.add_argument("--model", default="meta-llama/Llama-3.1-8B-Instruct", help="served model name")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.set_defaults(func=run_simulate)

    demo = subparsers.add_parser(
        "demo", help="run the whole loop on this machine and print what happens",
        description="simulator -> exporter -> real Prometheus (generated rules, demo profile) -> real "
                    "Alertmanager (generated config) -> receiver -> a local orchestrator that applies plans to "
                    "the simulator. Ends with the plan and its rollback; exits 0 when the loop completed.")
    demo.add_argument("--time-scale", type=float, default=10.0,
                      help="simulated seconds per real second for the simulator (default: 10)")
    demo.add_argument("--keep", action="store_true", help="keep the working directory (logs, data) afterwards")
    demo.set_defaults(func=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    from optiinfra.demo.runner import run_demo as run  # noqa: PLC0415 (imports every component)

    if args.time_scale <= 0:
        raise UsageError("--time-scale must be > 0")
    return run(args.time_scale, args.keep)


def run_simulate(args: argparse.Namespace) -> int:
    host, sep, port = str(args.listen).rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise UsageError(f"--listen {args.listen!r}: use HOST:PORT, e.g. 127.0.0.1:8000")
    if args.time_scale <= 0:
        raise UsageError("--time-scale must be > 0")
    config = SimConfig(engine=args.engine, scenario=args.scenario, model=args.model,
                       time_scale=args.time_scale, seed=args.seed)
    web.run_app(create_app(config), host=host, port=int(port), print=None)
    return 0
