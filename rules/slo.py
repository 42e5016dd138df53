"""SLO rules: SLI error ratios over 5m..3d and multiwindow multi-burn-rate alerts (Google SRE workbook).

Per SLO and pod (identity labels + engine + model):
``slo:sli_error:ratio_rate<w>{slo}`` = bad events / all events over window w (latency: requests slower than
the threshold bucket; availability: ``outcome="error"``), ``slo:sli_requests:rate1h`` / ``rate1d`` (the
traffic guards), and per SLO ``slo:objective:ratio`` / ``slo:error_budget:ratio``.
``LLMSLOBurnRateFast`` (critical): 14.4x budget over 1h and 5m, or 6x over 6h and 30m.
``LLMSLOBurnRateSlow`` (warning): 3x over 1d and 2h, or 1x over 3d and 6h. Both need the guard's request
rate >= ``min_request_rate``, so an idle pod never pages on one slow request.
"""

from __future__ import annotations

from decimal import Decimal

from optiinfra import taxonomy as tx
from optiinfra.config import FAST_TIERS, SLI_HISTOGRAMS, SLI_WINDOWS, SLOW_TIERS, Slo, promql_string
from optiinfra.rules.promql import Ctx, Group, Rule, dec, le_matcher, num

GUARD_WINDOWS = {"LLMSLOBurnRateFast": "1h", "LLMSLOBurnRateSlow": "1d"}


def error_ratio_name(window: str) -> str:
    return f"slo:sli_error:ratio_rate{window}"


def requests_name(window: str) -> str:
    return f"slo:sli_requests:rate{window}"


def _scope(ctx: Ctx, slo: Slo) -> list[str]:
    engines = slo.applies_to()
    matchers = [f'engine=~"{"|".join(engines)}"']
    if slo.model:
        matchers.append(f"model=~{promql_string(slo.model)}")
    return matchers


def _total(ctx: Ctx, slo: Slo, window: str) -> str:
    scope = _scope(ctx, slo)
    metric = "llm_requests_finished_total" if slo.sli == "availability" else SLI_HISTOGRAMS[slo.sli] + "_count"
    return f"sum by ({ctx.by_pod}) (rate({ctx.sel(metric, *scope)}[{ctx.w(window)}]))"


def error_ratio_expr(ctx: Ctx, slo: Slo, window: str) -> str:
    scope = _scope(ctx, slo)
    w = ctx.w(window)
    total = _total(ctx, slo, window)
    if slo.sli == "availability":
        errors = ctx.sel("llm_requests_finished_total", 'outcome="error"', *scope)
        return f"(sum by ({ctx.by_pod}) (rate({errors}[{w}])) or 0 * {total})\n/\n({total} > 0)"
    assert slo.threshold is not None  # validated by the config model
    good = ctx.sel(SLI_HISTOGRAMS[slo.sli] + "_bucket", le_matcher(slo.threshold), *scope)
    return f"({total} - sum by ({ctx.by_pod}) (rate({good}[{w}])))\n/\n({total} > 0)"


def budget(slo: Slo) -> Decimal:
    return Decimal(1) - dec(slo.objective)


def _burn_alert(ctx: Ctx, slo: Slo, alert: str, tiers: tuple[tuple[str, str, str], ...], *,
                severity: str, for_: str) -> Rule:
    sel = f'{{slo="{slo.name}"}}'
    parts = []
    for long, short, factor in tiers:
        limit = num(Decimal(factor) * budget(slo))
        parts.append(f"(\n  {error_ratio_name(long)}{sel} > {limit}\n"
                     f"  and {error_ratio_name(short)}{sel} > {limit}\n)")
    guard = f"{requests_name(GUARD_WINDOWS[alert])}{sel} >= {num(ctx.config.min_request_rate)}"
    expr = "(\n" + "\nor\n".join(parts) + f"\n)\nand {guard}"
    fast = alert == "LLMSLOBurnRateFast"
    what = "fast: 2% of the 30-day budget in 1h" if fast else "slow: 10% of the 30-day budget in a day or more"
    return Rule(
        alert=alert, expr=expr, for_=ctx.w(for_),
        labels={"slo": slo.name, "component": "slo", "bottleneck": tx.SLO_BURN, "severity": severity},
        annotations={
            "summary": "An SLO's error budget is burning too fast.",
            "description": (f"SLO {slo.name} ({num(slo.objective)} objective) on {{{{ $labels.model }}}} "
                            f"at {{{{ $labels.pod }}}} burns its error budget too fast ({what}); "
                            "error ratio {{ $value | humanizePercentage }}."),
            "runbook_url": ctx.config.runbook_url(tx.SLO_BURN),
        },
    )


def slo_groups(ctx: Ctx) -> tuple[Group, ...]:
    groups = []
    for slo in ctx.config.slos:
        labels = {"slo": slo.name}
        rules = [Rule(record=error_ratio_name(w), expr=error_ratio_expr(ctx, slo, w), labels=labels)
                 for w in SLI_WINDOWS]
        rules += [Rule(record=requests_name(w), expr=_total(ctx, slo, w), labels=labels)
                  for w in sorted(set(GUARD_WINDOWS.values()))]
        rules += [
            Rule(record="slo:objective:ratio", expr=f"vector({num(slo.objective)})", labels=labels),
            Rule(record="slo:error_budget:ratio", expr=f"vector({num(budget(slo))})", labels=labels),
            _burn_alert(ctx, slo, "LLMSLOBurnRateFast", FAST_TIERS, severity="critical",
                        for_=ctx.config.slo_fast_for),
            _burn_alert(ctx, slo, "LLMSLOBurnRateSlow", SLOW_TIERS, severity="warning",
                        for_=ctx.config.slo_slow_for),
        ]
        groups.append(Group(f"optiinfra.slo.{slo.name}", tuple(rules)))
    return tuple(groups)
