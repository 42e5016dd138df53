"""``optiinfra simulate``: an engine simulator serving a real engine's ``/metrics`` while a scenario unfolds."""

from __future__ import annotations

import argparse
import logging
import math

from aiohttp import web

from optiinfra.cliutil import UsageError, parse_listen
from optiinfra.demo.simulator.scenarios import SCENARIOS
from optiinfra.demo.simulator.server import SimConfig, create_app
from optiinfra.metrics import ENGINES

log = logging.getLogger(__name__)


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
    parser.add_argument("--kv-connector", default="", metavar="NAME",
                        help="vLLM: simulate a KV connector such as LMCacheConnectorV1 (external KV-cache counters); "
                             "default: none")
    parser.set_defaults(func=run_simulate)

    demo = subparsers.add_parser(
        "demo", help="run the whole loop on this machine and print what happens",
        description="simulator -> exporter -> real Prometheus (generated rules, demo profile) -> real "
                    "Alertmanager (generated config) -> receiver -> a local orchestrator that applies plans to "
                    "the simulator. Ends with the plan and its rollback; exits 0 when the loop completed.")
    demo.add_argument("--time-scale", type=float, default=10.0,
                      help="simulated seconds per real second for the simulator (default: 10)")
    demo.add_argument("--keep", action="store_true", help="keep the working directory (logs, data) afterwards")
    demo.add_argument("--engine", dest="demo_engine", choices=("simulator", "vllm"), default="simulator",
                      help="simulator (default, fast) or vllm: a real vLLM on the CPU with a tiny model, restarted "
                           "by the process orchestrator (needs `make real-engine`)")
    demo.set_defaults(func=run_demo)


def _check_time_scale(value: float) -> None:
    if not 0 < value < math.inf:
        raise UsageError(f"--time-scale {value}: give a finite number of simulated seconds per second, > 0")


def run_demo(args: argparse.Namespace) -> int:
    from optiinfra.demo.runner import run_demo as run  # noqa: PLC0415 (imports every component)

    _check_time_scale(args.time_scale)
    return run(args.time_scale, args.keep, args.demo_engine)


def run_simulate(args: argparse.Namespace) -> int:
    host, port = parse_listen("--listen", str(args.listen))
    _check_time_scale(args.time_scale)
    config = SimConfig(engine=args.engine, scenario=args.scenario, model=args.model,
                       time_scale=args.time_scale, seed=args.seed, kv_connector=args.kv_connector)
    log.info("simulator listening on http://%s:%s", host, port, extra={
        "listen": f"{host}:{port}", "engine": args.engine, "scenario": args.scenario})
    web.run_app(create_app(config), host=host, port=port, print=None)
    return 0
