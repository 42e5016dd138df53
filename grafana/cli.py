"""``optiinfra dashboards generate``."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    dashboards = subparsers.add_parser("dashboards", help="generate the Grafana dashboards")
    sub = dashboards.add_subparsers(dest="dashboards_command", metavar="SUBCOMMAND", required=True)
    gen = sub.add_parser("generate", help="write the dashboard JSON and the Grafana provisioning files")
    gen.add_argument("--out", type=Path, required=True, help="output directory")
    gen.add_argument("--slo-config", type=Path, default=None,
                     help="YAML config (selectors, thresholds, SLOs) the rules were generated from; "
                          "default: built-in defaults")
    gen.add_argument("--dashboards-path", default=None, metavar="DIR",
                     help="where Grafana reads the dashboard JSON (the provisioning file's options.path); "
                          "default: OUT/dashboards made absolute, so the provisioning file points at what this "
                          "command writes")
    gen.add_argument("--docs", type=Path, default=None, metavar="FILE",
                     help="also write the dashboards reference (markdown) to FILE")
    gen.set_defaults(func=run_generate)


def run_generate(args: argparse.Namespace) -> int:
    from optiinfra.config import load_config  # noqa: PLC0415 (imported when the command runs)
    from optiinfra.files import write_files  # noqa: PLC0415
    from optiinfra.grafana.generate import DASHBOARDS_DIR, generate, render_docs  # noqa: PLC0415

    config = load_config(args.slo_config)
    shown = f" --slo-config {args.slo_config.name}" if args.slo_config is not None else ""
    path_ = args.dashboards_path or str((args.out / DASHBOARDS_DIR).absolute())
    for path in write_files(args.out, generate(config, args=shown, dashboards_path=path_)):
        print(path)
    if args.docs is not None:
        write_files(args.docs.parent, {args.docs.name: render_docs(config)})
        print(args.docs)
    return 0
