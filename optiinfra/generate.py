"""``optiinfra generate``: every committed artifact from one config, in one pipeline.

Stages are pure (config -> relative path -> text); ``optiinfra.files.write_files`` is the only writer. The
outputs, relative to the repository root:

| stage | files |
|---|---|
| rules | ``rules/generated/``: the rule file, the PrometheusRule, the promtool tests |
| dashboards | ``grafana/generated/``: dashboard JSON and provisioning; ``docs/dashboards.md`` |
| alertmanager | ``alertmanager/generated/alertmanager.yml`` |
| docs | ``docs/``: ``metrics.md``, ``configuration.md``, ``taxonomy.md``, ``receiver-api.md``, |
| | ``orchestrator-api.md``, ``log-signatures.md``, |
| | ``rules.md``, ``plan-actions.md``, ``runbooks/`` |
| schemas | ``optiinfra/config.schema.json``, ``alertmanager/plan.schema.json``, ``orchestrator.openapi.json`` |
| deploy | ``deploy/kubernetes/monitoring/``: PrometheusRule, dashboard ConfigMaps, AlertmanagerConfig |

Like ``optiinfra.cli`` this module is a composition root: it sees every component, imported when a stage
runs, so nothing below it imports upward. ``--check`` writes nothing and lists what is stale (and files left
in a generated-only folder that no stage produces any more); ``make generate`` runs the command without it,
which also removes those leftovers.
"""

from __future__ import annotations

import argparse
import json
from importlib import resources
from pathlib import Path

from optiinfra.cliutil import report
from optiinfra.config import Config, load_config
from optiinfra.files import orphans, stale_files, write_files

RULES_DIR = "rules/generated"
GRAFANA_DIR = "grafana/generated"
ALERTMANAGER_FILE = "alertmanager/generated/alertmanager.yml"
RUNBOOKS_DIR = "docs/runbooks"
#: Folders that hold nothing but this pipeline's outputs.
OWNED_DIRS: tuple[str, ...] = (RULES_DIR, GRAFANA_DIR, "alertmanager/generated", RUNBOOKS_DIR)


def _under(folder: str, files: dict[str, str]) -> dict[str, str]:
    return {f"{folder}/{name}": text for name, text in files.items()}


def render_all(config: Config, args: str = "") -> dict[str, str]:
    """Every committed artifact's path (relative to the repository root) and text; deterministic.

    ``args`` is what the generated headers show of the command line (``--slo-config FILE``)."""
    from optiinfra import docs, kube  # noqa: PLC0415 (composition root: components load when a stage runs)
    from optiinfra.alertmanager import contract, knobs, plan  # noqa: PLC0415
    from optiinfra.config import render_schema  # noqa: PLC0415
    from optiinfra.exporter import logsig  # noqa: PLC0415
    from optiinfra.grafana import generate as dashboards  # noqa: PLC0415
    from optiinfra.rules import amconfig, runbooks  # noqa: PLC0415
    from optiinfra.rules import generate as rules  # noqa: PLC0415

    rule_files = rules.generate(config, "production", args=args)
    dashboard_files = dashboards.generate(config, args=args)
    openapi = json.loads(resources.files("optiinfra.alertmanager").joinpath("openapi.json").read_text("utf-8"))
    in_cluster = config.alertmanager.model_copy(update={"receiver_url": kube.RECEIVER_URL, "credentials_file": ""})
    operator_file = rules.generate(config, "production", kube.MONITORING_NAMESPACE, dict(kube.RELEASE_LABELS),
                                   args=kube.RULE_ARGS + args)[rules.OPERATOR_FILE]
    return {
        **_under(RULES_DIR, rule_files),
        **_under(GRAFANA_DIR, dashboard_files),
        "docs/dashboards.md": dashboards.render_docs(config),
        ALERTMANAGER_FILE: amconfig.render(config.alertmanager),
        **_under("docs", docs.render_all(openapi)),
        "docs/log-signatures.md": logsig.render_markdown(),
        **_under(RUNBOOKS_DIR, runbooks.runbooks()),
        "docs/rules.md": runbooks.rules_reference(),
        "docs/plan-actions.md": knobs.markdown(),
        "optiinfra/config.schema.json": render_schema(),
        "alertmanager/plan.schema.json": plan.schema_text(),
        "alertmanager/orchestrator.openapi.json": contract.text(),
        **_under(kube.OUT_DIR, kube.manifests(operator_file, dashboard_files,
                                              amconfig.build_config(in_cluster))),
    }


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "generate", help="write every generated artifact (rules, dashboards, Alertmanager config, docs, manifests)",
        description="Write every committed generated file of the repository from one config: rules and their "
                    "promtool tests, PrometheusRule, dashboards and provisioning, the Alertmanager config, "
                    "runbooks, reference docs, JSON schemas and the Kubernetes manifests carrying them.")
    parser.add_argument("--slo-config", type=Path, default=None,
                        help="YAML config (selectors, thresholds, SLOs, runbook URLs, Alertmanager routing); "
                             "default: built-in defaults")
    parser.add_argument("--root", type=Path, default=Path("."),
                        help="repository root the paths are relative to (default: .)")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; list stale or leftover files and exit 1 if there are any")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = load_config(args.slo_config)
    shown = f" --slo-config {args.slo_config.name}" if args.slo_config is not None else ""
    files = render_all(config, shown)
    if args.check:
        stale = stale_files(args.root, files, OWNED_DIRS)
        return report(stale, f"{len(stale)} generated file(s) are stale: run `make generate`",
                      f"ok: {len(files)} generated file(s) are current")
    for name in orphans(args.root, files, OWNED_DIRS):
        (args.root / name).unlink()
        print(f"removed {name}")
    write_files(args.root, files)
    print(f"wrote {len(files)} file(s) under {args.root}")
    return 0
