"""``optiinfra exporter``: the sidecar.

Collectors are switched node_exporter style: ``engine`` is on with ``--upstream``, ``gpu`` and ``host`` are
on unless ``--no-gpu``/``--no-host``, ``logs`` is on with ``--log-file``/``--kmsg``. Every flag has an
``OPTIINFRA_*`` environment twin (repeatable flags take a comma-separated list there).
"""

from __future__ import annotations

import argparse
import logging
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING

from optiinfra.cliutil import UsageError, key_value, parse_listen
from optiinfra.metrics import BASE_LABELS, ENGINE_INFO_LABELS, ENGINES, GPU_LABELS, RANK_LABELS

if TYPE_CHECKING:
    from optiinfra.exporter.server import ExporterConfig

log = logging.getLogger(__name__)

_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
#: Label names the sidecar sets itself; ``--label`` may not override them.
RESERVED_LABELS = frozenset(
    {*BASE_LABELS, *RANK_LABELS, *ENGINE_INFO_LABELS, *GPU_LABELS, "le", "quantile", "outcome", "reason",
     "collector", "source", "signature", "xid"}
)


def _log_file(text: str) -> tuple[str, str]:
    from optiinfra.exporter.logsig import SOURCES  # noqa: PLC0415 (compiles the signatures: only when used)

    path, sep, source = text.rpartition(":")
    if not sep or not path or source not in SOURCES:
        raise argparse.ArgumentTypeError(f"{text!r}: write it as PATH:SOURCE with SOURCE one of {', '.join(SOURCES)}")
    return path, source


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "exporter", help="the sidecar: engine /metrics, GPUs, host and logs on one normalized /metrics",
        description="Scrape an inference engine, read the GPUs and the host, tail logs; serve one normalized "
                    "/metrics, /health and /health/detailed.",
    )
    p.add_argument("--upstream", default=None, metavar="URL",
                   help="the engine's metrics URL, e.g. http://127.0.0.1:8000/metrics (path defaults to "
                        "/metrics); without it the engine collector is off")
    p.add_argument("--engine", choices=("auto", *ENGINES), default="auto",
                   help="engine kind; auto detects it from the payload (default: auto)")
    p.add_argument("--listen", default="0.0.0.0:9400", metavar="HOST:PORT",
                   help="address to serve on (default: 0.0.0.0:9400)")
    p.add_argument("--no-gpu", action="store_true", help="disable the GPU (NVML) collector")
    p.add_argument("--no-host", action="store_true", help="disable the host (psutil) collector")
    p.add_argument("--log-file", action="append", type=_log_file, default=[], metavar="PATH:SOURCE",
                   help="tail this log for failure signatures; SOURCE is engine or kernel (repeatable)")
    p.add_argument("--log-from-start", action="store_true", help="read log files from the start, not the end")
    p.add_argument("--kmsg", action="store_true", help="read kernel messages from /dev/kmsg")
    p.add_argument("--passthrough", action="store_true",
                   help="also re-export the engine's own families unchanged")
    p.add_argument("--engine-config", action="append", type=key_value, default=[], metavar="K=V",
                   help="engine config for llm_engine_info, overriding what the engine reports; keys: "
                        "model, " + ", ".join(ENGINE_INFO_LABELS) + " (repeatable)")
    p.add_argument("--label", action="append", type=key_value, default=[], metavar="K=V",
                   help="static label added to every llm_* series, e.g. cluster=eu-1 (repeatable)")
    p.add_argument("--model", default=None,
                   help="model name for engines whose metrics carry none (TGI; default: from the engine)")
    p.add_argument("--engine-pid", type=int, default=None, metavar="PID",
                   help="the engine process: its CPU, memory and container memory (host collector), the "
                        "GPUs it was given (gpu collector) and the flags it was started with (llm_engine_info "
                        "labels no info endpoint reports, e.g. vLLM's --max-num-seqs)")
    p.add_argument("--engine-process", default=None, metavar="NAME",
                   help="find the engine process by name when no --engine-pid is given (process name, script "
                        "or -m module, e.g. vllm, sglang, text-generation-launcher); in Kubernetes the pod "
                        "needs shareProcessNamespace: true")
    p.add_argument("--gpu-uuids", default=None, metavar="LIST",
                   help="the engine's GPUs, overriding NVIDIA_VISIBLE_DEVICES/CUDA_VISIBLE_DEVICES read from "
                        "the engine process: comma-separated GPU-<uuid>, MIG-<uuid> or NVML indices, or all "
                        "(default: read from the engine process when one is configured, else every GPU)")
    p.add_argument("--node-name", default=None, metavar="NAME",
                   help="the Hostname label of GPU series; in Kubernetes the node name from the downward API "
                        "(spec.nodeName) (default: this machine's host name)")
    p.add_argument("--scrape-timeout", type=float, default=5.0, metavar="S",
                   help="time limit of one engine scrape in seconds (default: 5)")
    p.add_argument("--collector-timeout", type=float, default=None, metavar="S",
                   help="time limit of one collector run (default: scrape timeout + 1)")
    p.add_argument("--max-body-bytes", type=int, default=20 * 1024 * 1024, metavar="N",
                   help="largest engine payload read (default: 20 MiB)")
    p.add_argument("--max-series", type=int, default=100_000, metavar="N",
                   help="most engine series one scrape may normalize; a payload with more fails the engine "
                        "collector alone (llm_upstream_up stays, the error names the limit) (default: 100000)")
    p.set_defaults(func=run)


def _check_upstream(url: str) -> str:
    from yarl import URL  # noqa: PLC0415

    try:
        parsed = URL(url)
    except ValueError as exc:
        raise UsageError(f"--upstream {url!r}: {exc}") from exc
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise UsageError(f"--upstream {url!r}: give an http:// or https:// URL, e.g. http://127.0.0.1:8000/metrics")
    return url


def _check_pairs(flag: str, pairs: Iterable[tuple[str, str]], allowed: frozenset[str] | None,
                 forbidden: frozenset[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in pairs:
        if _LABEL_NAME.fullmatch(key) is None:
            raise UsageError(f"{flag} {key}={value}: {key!r} is not a valid label name ([a-zA-Z_][a-zA-Z0-9_]*)")
        if allowed is not None and key not in allowed:
            raise UsageError(f"{flag} {key}={value}: unknown key; use one of {', '.join(sorted(allowed))}")
        if key in forbidden:
            raise UsageError(f"{flag} {key}={value}: {key!r} is set by the exporter itself; pick another name")
        out[key] = value
    return out


def build_config(args: argparse.Namespace) -> ExporterConfig:
    """The validated ``ExporterConfig`` for these arguments (raises ``UsageError`` with what to fix)."""
    from pydantic import ValidationError  # noqa: PLC0415

    from optiinfra.exporter.server import ExporterConfig  # noqa: PLC0415

    host, port = parse_listen("--listen", args.listen)
    upstream = _check_upstream(args.upstream) if args.upstream else None
    engine_config = _check_pairs("--engine-config", args.engine_config,
                                 frozenset({"model", *ENGINE_INFO_LABELS}), frozenset())
    labels = _check_pairs("--label", args.label, None, RESERVED_LABELS)
    collector_timeout = args.collector_timeout if args.collector_timeout is not None else args.scrape_timeout + 1
    for flag, number in (("--scrape-timeout", args.scrape_timeout), ("--collector-timeout", collector_timeout),
                         ("--max-body-bytes", args.max_body_bytes), ("--max-series", args.max_series)):
        if number <= 0:
            raise UsageError(f"{flag} {number}: must be > 0")
    if args.engine_pid is not None and args.engine_pid <= 0:
        raise UsageError(f"--engine-pid {args.engine_pid}: give the engine's process id")
    gpu_uuids = (args.gpu_uuids or "").strip() or None
    if gpu_uuids is not None:
        from optiinfra.exporter.collectors.gpu import check_device_list  # noqa: PLC0415

        problem = check_device_list(gpu_uuids)
        if problem is not None:
            raise UsageError(f"--gpu-uuids {args.gpu_uuids}: {problem}; e.g. GPU-6fa3...,GPU-1b2c... or 0,1")
    try:
        return ExporterConfig(
            upstream=upstream, engine=args.engine, listen_host=host, listen_port=port, gpu=not args.no_gpu,
            host=not args.no_host, log_files=tuple(args.log_file), log_from_start=args.log_from_start,
            kmsg=args.kmsg, passthrough=args.passthrough, engine_config=engine_config, labels=labels,
            model=args.model or engine_config.get("model"), engine_pid=args.engine_pid,
            engine_process=args.engine_process or None, gpu_uuids=gpu_uuids, node_name=args.node_name or None,
            scrape_timeout=args.scrape_timeout, collector_timeout=collector_timeout,
            max_body_bytes=args.max_body_bytes, max_series=args.max_series,
        )
    except ValidationError as exc:
        raise UsageError(f"invalid exporter settings: {exc.errors()[0]['loc']}: {exc.errors()[0]['msg']}") from exc


def run(args: argparse.Namespace) -> int:
    from aiohttp import web  # noqa: PLC0415

    from optiinfra.exporter.server import SHUTDOWN_TIMEOUT, build_collectors, create_app  # noqa: PLC0415

    config = build_config(args)
    try:
        collectors = build_collectors(config)
    except (ValueError, OSError) as exc:
        raise UsageError(str(exc)) from exc
    app = create_app(config, collectors)
    log.info("exporter listening", extra={
        "listen": f"{config.listen_host}:{config.listen_port}", "upstream": config.upstream,
        "collectors": [c.name for c in collectors],
    })
    try:
        web.run_app(app, host=config.listen_host, port=config.listen_port, print=None, access_log=None,
                    shutdown_timeout=SHUTDOWN_TIMEOUT)
    except OSError as exc:
        raise UsageError(f"cannot listen on {config.listen_host}:{config.listen_port}: {exc}") from exc
    return 0
