"""``optiinfra rules generate`` and ``optiinfra rules check``."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from optiinfra.cliutil import key_value
from optiinfra.rules.promql import PROFILES

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    rules = subparsers.add_parser("rules", help="generate and check the Prometheus rules")
    sub = rules.add_subparsers(dest="rules_command", metavar="SUBCOMMAND", required=True)

    gen = sub.add_parser("generate", help="write the rule file, the PrometheusRule and the promtool tests")
    gen.add_argument("--slo-config", type=Path, default=None,
                     help="YAML config (selectors, thresholds, SLOs); default: built-in defaults")
    gen.add_argument("--slo-spec", type=Path, action="append", default=None, metavar="FILE",
                     help="Sloth (prometheus/v1) or OpenSLO (openslo/v1) SLO file, repeatable; its SLOs replace "
                          "the default SLOs (or join those the config lists)")
    gen.add_argument("--profile", choices=PROFILES, default="production",
                     help="demo divides every `for` and range window by 60 (default: production)")
    gen.add_argument("--out", type=Path, required=True, help="output directory")
    gen.add_argument("--namespace", default=None, help="namespace of the PrometheusRule (default from config)")
    gen.add_argument("--rule-labels", type=key_value, nargs="*", default=None, metavar="K=V",
                     help="labels of the PrometheusRule (e.g. release=kube-prometheus-stack)")
    gen.set_defaults(func=run_generate)

    check = sub.add_parser("check", help="validate rule files: PromQL parses, names known, conventions, promtool")
    check.add_argument("dir", type=Path, help="directory (or file) of rule files")
    check.add_argument("--no-promtool", action="store_true", help="skip `promtool check rules`")
    check.set_defaults(func=run_check)


def run_generate(args: argparse.Namespace) -> int:
    from optiinfra.config import load_config  # noqa: PLC0415 (imported when the command runs)
    from optiinfra.files import write_files  # noqa: PLC0415
    from optiinfra.rules.generate import generate  # noqa: PLC0415
    from optiinfra.rules.slo_import import with_specs  # noqa: PLC0415

    config = with_specs(load_config(args.slo_config), args.slo_spec or [])  # errors: UsageError, one line
    raw = args.rule_labels
    if isinstance(raw, tuple):  # one pair from the OPTIINFRA_RULE_LABELS environment twin
        raw = [raw]
    labels = dict(raw) if raw else None
    shown = f" --profile {args.profile}" if args.profile != "production" else ""
    if args.slo_config is not None:
        shown = f" --slo-config {args.slo_config.name}" + shown
    shown = "".join(f" --slo-spec {p.name}" for p in args.slo_spec or []) + shown
    files = generate(config, args.profile, args.namespace, labels, args=shown)
    for path in write_files(args.out, files):
        print(path)
    if labels is None:
        log.info("PrometheusRule labels are %s: they must match your Prometheus CR's ruleSelector "
                 "(kube-prometheus-stack selects release=<release>); set them with --rule-labels",
                 dict(config.prometheus_rule.labels))
    return 0


def run_check(args: argparse.Namespace) -> int:
    from optiinfra.cliutil import UsageError, report  # noqa: PLC0415
    from optiinfra.rules.check import check_path  # noqa: PLC0415

    if not args.dir.exists():
        raise UsageError(f"{args.dir} does not exist")
    problems, checked = check_path(args.dir, promtool=not args.no_promtool)
    return report(problems, f"{len(problems)} problem(s) in {checked} rule(s)", f"ok: {checked} rule(s) checked")
