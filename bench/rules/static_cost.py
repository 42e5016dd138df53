"""Static cost of the SLO rule groups: samples read per pod per minute, recorded windows vs the Sloth-style
raw-window baseline, both generated from the same default config.

For every range ``[W]`` a rule reads, the samples read per evaluation are W / the source's interval: the
scrape interval for raw series (read once per pod: one series set per pod), the interval of the group that
records it for a recorded series (read once per service, so shared by the service's pods). Evaluations per
minute come from the group's ``interval`` (else the global evaluation interval). Defaults: 15s scrapes and
30s global evaluation, as in kube-prometheus-stack. Instant reads (no range) are left out, as for both sides
they are a sample per series.

    python bench/rules/static_cost.py [--scrape 15s] [--eval 30s] [--pods-per-service 1 10]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import promql_parser

from optiinfra.config import load_config, parse_duration_ms
from optiinfra.rules.generate import all_groups
from optiinfra.rules.promql import Ctx, Group
from optiinfra.rules.slo import raw_window_groups


@dataclass(frozen=True)
class Read:
    group: str
    series: str
    window_s: float
    source_s: float
    per_service: bool
    evals_per_min: float


def _ranges(expr: str) -> list[tuple[str, float]]:
    found: list[tuple[str, float]] = []

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.MatrixSelector):
            vs = node.vector_selector
            found.append((vs.name or "", node.range.total_seconds()))

    promql_parser.walk(promql_parser.parse(expr), visit)
    return found


def reads(groups: Iterable[Group], scrape_s: float, eval_s: float) -> list[Read]:
    groups = list(groups)
    recorded = {r.record: (parse_duration_ms(g.interval) / 1000 if g.interval else eval_s)
                for g in groups for r in g.rules if r.record}
    out = []
    for g in groups:
        every = parse_duration_ms(g.interval) / 1000 if g.interval else eval_s
        for rule in g.rules:
            for series, window in _ranges(rule.expr):
                own = series in recorded
                out.append(Read(g.name, series, window, recorded[series] if own else scrape_s, own, 60 / every))
    return out


def per_pod_per_minute(rs: Iterable[Read], pods_per_service: int) -> float:
    return sum(r.evals_per_min * r.window_s / r.source_s / (pods_per_service if r.per_service else 1) for r in rs)


def slo_groups_of(ctx: Ctx) -> tuple[list[Group], list[Group]]:
    """(recorded-window SLO groups as generated, raw-window baseline groups) for the config."""
    recorded = [g for g in all_groups(ctx) if g.name.startswith("optiinfra.slo.")]
    return recorded, list(raw_window_groups(ctx))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scrape", default="15s", help="scrape interval of the raw series (default 15s)")
    parser.add_argument("--eval", default="30s", help="global evaluation interval (default 30s)")
    parser.add_argument("--pods-per-service", type=int, nargs="+", default=[1, 10])
    args = parser.parse_args()
    scrape_s, eval_s = parse_duration_ms(args.scrape) / 1000, parse_duration_ms(args.eval) / 1000
    config = load_config(None)
    recorded, raw = slo_groups_of(Ctx(config))
    new, base = reads(recorded, scrape_s, eval_s), reads(raw, scrape_s, eval_s)
    others = [g for g in all_groups(Ctx(config)) if not g.name.startswith("optiinfra.slo.")]
    other = per_pod_per_minute(reads(others, scrape_s, eval_s), 1)
    print(f"static cost of the SLO groups ({len(config.slos)} SLOs), samples read per pod per minute "
          f"(window / source interval for every range read; {args.scrape} scrapes, {args.eval} global evaluation, "
          f"SLO groups every {config.slo_interval} / {config.slo_long_interval}):")
    print(f"  all other groups: {other:,.0f}")
    worst = 0.0
    for pods in args.pods_per_service:
        b, n = per_pod_per_minute(base, pods), per_pod_per_minute(new, pods)
        worst = max(worst, n / b)
        print(f"  {pods:3d} pod(s) per service: raw-window baseline {b:12,.0f}   recorded windows {n:10,.0f}   "
              f"{b / n:6.1f}x less")
    print("  per read (recorded windows, 1 pod per service):")
    by_series: dict[tuple[str, bool], float] = {}
    for r in new:
        key = (r.series, r.per_service)
        by_series[key] = by_series.get(key, 0) + r.evals_per_min * r.window_s / r.source_s
    for (series, shared), cost in sorted(by_series.items(), key=lambda kv: -kv[1]):
        print(f"    {series:48s} {'service' if shared else 'pod':7s} {cost:10,.0f}")
    return 0 if 1 / worst >= 20 else 1


if __name__ == "__main__":
    sys.exit(main())
