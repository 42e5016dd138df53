"""Alerting rules for every taxonomy entry, rendered from its signal spec (``optiinfra.signals``).

A ``Condition`` becomes ``main and on (...) also ... and on (...) traffic unless on (...) ... or either``; its
numbers come from the taxonomy thresholds with the config's overrides. A ``Custom`` spec gives its own
expressions (per severity). Log signatures add an ``increase(llm_log_events_total{signature=~...})`` branch.
Identity labels are kept by aggregating ``by`` them (engine alerts add ``engine``, ``model``); GPU and log
alerts keep every label of the series they fired on.
"""

from __future__ import annotations

from decimal import Decimal

from optiinfra import signals as sg
from optiinfra import taxonomy as tx
from optiinfra.rules.promql import Ctx, Group, Rule, dec, num


def series(ctx: Ctx, s: sg.Series) -> str:
    """A spec series in an alert expression."""
    return sg.render(s, sel=ctx.sel, rule=str, window=ctx.window, by_pod=ctx.by_pod, sidecar=ctx.sidecar_up())


def threshold(ctx: Ctx, b: tx.Bottleneck, term: sg.Term) -> str:
    if not isinstance(term.threshold, str):
        return num(term.threshold)
    value = ctx.config.threshold(b, term.threshold)
    return num(Decimal(1) - dec(value)) if term.series.complement else num(value)


def _term(ctx: Ctx, b: tx.Bottleneck, term: sg.Term) -> str:
    return f"{series(ctx, term.series)} {term.op} {threshold(ctx, b, term)}"


def _traffic(ctx: Ctx) -> str:
    """The minimum-traffic guard of per-pod engine alerts."""
    return f"{sg.TRAFFIC.metric} >= {num(ctx.config.min_request_rate)}"


def condition(ctx: Ctx, b: tx.Bottleneck, c: sg.Condition) -> str:
    on = ctx.by_pod if c.join == "pod_model" else ctx.on_pod
    if c.gate:
        # Value: the main (pod-level) series; labels: the engine series' (group_left keeps engine and model).
        gates = [_term(ctx, b, t) for t in c.gate] + ([_traffic(ctx)] if c.traffic else [])
        return (f"({f' and on ({ctx.by_pod}) '.join(gates)}) * 0\n"
                f"+ on ({ctx.gpu_on}) group_left () {series(ctx, c.main.series)}\n"
                f"{c.main.op} {threshold(ctx, b, c.main)}")
    text = _term(ctx, b, c.main)
    for also in c.also:
        if isinstance(also, tuple):
            anyof = "\n".join(f"  {'or ' if i else ''}{_term(ctx, b, t)}" for i, t in enumerate(also))
            text += f"\nand on ({on}) (\n{anyof}\n)"
        else:
            text += f"\nand on ({on}) {_term(ctx, b, also)}"
    if c.traffic:
        text += f"\nand on ({ctx.by_pod}) {_traffic(ctx)}"
    text += "".join(f"\nunless on ({on}) {_term(ctx, b, t)}" for t in c.unless)
    return text + "".join(f"\nor {_term(ctx, b, t)}" for t in c.either)


def _either(exprs: list[str]) -> str:
    """One expression from several signals (``or``): one rule per alert name and severity."""
    if len(exprs) == 1:
        return exprs[0]
    return "\nor\n".join(f"(\n{e}\n)" for e in exprs)


def alert_rules(ctx: Ctx, b: tx.Bottleneck) -> list[Rule]:
    """The rules of one bottleneck: one per severity (GPUXidError: critical and warning), metric and log
    signals joined by ``or``."""
    cond = b.condition
    if isinstance(cond, sg.Custom):
        by_severity = {severity: list(exprs) for severity, exprs in cond.exprs(ctx, b).items()}
    else:
        by_severity = {b.severity: [condition(ctx, b, cond)] if cond is not None else []}
    if b.component == "gpu":  # GPU series: the inference pod's identity whichever exporter reported them
        by_severity = {severity: [ctx.gpu(e) for e in exprs] for severity, exprs in by_severity.items()}
    if b.log_signatures and not (isinstance(cond, sg.Custom) and cond.own_logs):
        signature = 'signature=~"' + "|".join(b.log_signatures) + '"'
        for exprs in by_severity.values():
            exprs.append(f"increase({ctx.sel('llm_log_events_total', signature)}[{ctx.w(sg.LOG_WINDOW)}]) > 0")
    annotations = {"summary": b.summary, "description": b.description, "runbook_url": ctx.config.runbook_url(b.id),
                   "dashboard_url": ctx.config.dashboard_url(b.component)}
    return [Rule(alert=b.alert, expr=_either(exprs), for_=ctx.w(ctx.config.for_(b)), annotations=annotations,
                 labels={"bottleneck": b.id, "severity": severity, "component": b.component})
            for severity, exprs in by_severity.items()]


def alert_groups(ctx: Ctx, catalogue: tuple[tx.Bottleneck, ...] = tx.BOTTLENECKS) -> tuple[Group, ...]:
    by_component: dict[str, list[Rule]] = {}
    for b in catalogue:
        by_component.setdefault(b.component, []).extend(alert_rules(ctx, b))
    return tuple(Group(f"optiinfra.alerts.{component}", tuple(rules)) for component, rules in by_component.items())
