"""SLO rules: per-service SLIs whose long windows are built from recorded short-window counts, and the
multiwindow multi-burn-rate alerts of the Google SRE workbook.

Scope. An SLO is aggregated by ``slo_scope`` (default ``namespace, model``: the service), so a fleet-wide
regression pages once per service, not once per pod. The scope must hold ``model``: the receiver rolls back a
plan in flight when a burn alert without a ``pod`` label names the plan's model (and namespace, when present).

Per SLO, group ``optiinfra.slo.<name>`` (interval ``slo_interval``, default 1m) records at the scope:

- ``slo:sli_requests:rate2m`` and ``slo:sli_errors:rate2m``: all and bad events per second over 2m (latency:
  requests slower than the threshold bucket; availability: ``outcome="error"``);
- ``slo:sli_error:ratio_rate5m``, the fast tier's short window, from raw series over 5m (as the raw version);
- ``slo:sli_error:ratio_rate<W>`` for W in 30m, 1h, 2h, 6h: ``sum_over_time`` of the recorded bad counts over
  W / ``sum_over_time`` of the recorded counts over W;
- ``slo:sli_requests:rate1h`` (the fast alert's traffic guard), ``slo:objective:ratio``,
  ``slo:error_budget:ratio`` and ``LLMSLOBurnRateFast`` (critical: 14.4x budget over 1h and 5m, or 6x over 6h
  and 30m).

Group ``optiinfra.slo.<name>.long`` (interval ``slo_long_interval``, default 3m) records the 1d and 3d ratios
the same way, ``slo:sli_requests:rate1d`` and holds ``LLMSLOBurnRateSlow`` (warning: 3x over 1d and 2h, or 1x
over 3d and 6h). Both alerts need the guard's request rate >= ``min_request_rate``. Only the 2m and 5m rules
read raw series.

Exactness. With the counts recorded over r = 2m every I = ``slo_interval``, the sum of the n = W/I recorded
rates in a window W telescopes (sum of n differences of lag r/I equals the sum of r/I differences of lag n):
the recorded ratio over W at t is (sum_j errors_W(t - jI)) / (sum_j requests_W(t - jI)), j = 0 .. r/I - 1,
the raw-window ratio's counts averaged over the last r/I evaluation times. Hence: equal to the raw ratio at
steady rates; always between the smallest and largest raw ratio of those times; and a burn condition
``ratio > limit`` agrees with the raw one whenever the raw one held (or failed) at each of t, t - I, ...,
t - r + I, so a decision can lag the raw decision by at most r - I (1 minute by default). Restarts and
counter resets: ``rate()`` absorbs resets as the raw version does. A gap in the recorded series (ruler down,
or a scrape gap longer than 2m) drops the events of the gap from numerator and denominator alike: the ratio
stays the traffic-weighted ratio of what was recorded. See docs/rulers.md.
"""

from __future__ import annotations

from decimal import Decimal

from optiinfra import taxonomy as tx
from optiinfra.config import FAST_TIERS, SLI_HISTOGRAMS, SLI_WINDOWS, SLOW_TIERS, Slo, parse_duration_ms, promql_string
from optiinfra.rules.promql import Ctx, Group, Rule, dec, le_matcher, num

SHORT_WINDOW = "5m"
#: Window of the recorded counts the long windows are built from (the recorded ratios lag the raw ones by at
#: most this minus ``slo_interval``): short enough for a fast page, >= 2 samples at scrape intervals up to 1m.
RECORDED_WINDOW = "2m"
#: Windows recorded in the slower ``.long`` group (the slow alert's long windows).
LONG_WINDOWS: tuple[str, ...] = tuple(long for long, _, _ in SLOW_TIERS)
GUARD_WINDOWS = {"LLMSLOBurnRateFast": "1h", "LLMSLOBurnRateSlow": "1d"}
ERRORS = "slo:sli_errors:rate2m"
REQUESTS = "slo:sli_requests:rate2m"
#: The rulers' default query lookback: a series recorded less often than this goes stale between evaluations.
LOOKBACK_MS = 5 * 60_000


def error_ratio_name(window: str) -> str:
    return f"slo:sli_error:ratio_rate{window}"


def requests_name(window: str) -> str:
    return f"slo:sli_requests:rate{window}"


def check_scope(labels: list[str]) -> list[str]:
    """The config's ``slo_scope``: label names, ``model`` among them. Raises ValueError."""
    import re  # noqa: PLC0415

    for label in labels:
        if not re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", label):
            raise ValueError(f"{label!r} is not a Prometheus label name")
    if "model" not in labels:
        raise ValueError("slo_scope must include 'model': the receiver matches a service's burn alert to the plans "
                         "changing that model's replicas")
    if len(set(labels)) != len(labels):
        raise ValueError("slo_scope lists a label twice")
    return labels


def check_intervals(short: str, long: str) -> None:
    """``slo_interval`` divides the recorded window; ``slo_long_interval`` stays below the 5m lookback."""
    short_ms, long_ms = parse_duration_ms(short), parse_duration_ms(long)
    if short_ms <= 0 or parse_duration_ms(RECORDED_WINDOW) % short_ms:
        raise ValueError(f"slo_interval {short} must divide the {RECORDED_WINDOW} window of the recorded counts "
                         "(e.g. 30s, 1m, 2m): the long windows sum its recorded samples")
    if not 0 < long_ms < LOOKBACK_MS:
        raise ValueError(f"slo_long_interval {long} must be below 5m, the rulers' query lookback, or the 1d/3d "
                         "series go stale between evaluations")


def _by(ctx: Ctx) -> str:
    return ", ".join(ctx.config.slo_scope)


def _matchers(slo: Slo) -> list[str]:
    matchers = [f'engine=~"{"|".join(slo.applies_to())}"']
    if slo.model:
        matchers.append(f"model=~{promql_string(slo.model)}")
    return matchers


def _raw_rate(ctx: Ctx, slo: Slo, metric: str, window: str, *extra: str) -> str:
    return f"sum by ({_by(ctx)}) (rate({ctx.sel(metric, *extra, *_matchers(slo))}[{ctx.w(window)}]))"


def raw_requests(ctx: Ctx, slo: Slo, window: str) -> str:
    """All events per second over ``window``, from raw series, at the SLO's scope."""
    metric = "llm_requests_finished_total" if slo.sli == "availability" else SLI_HISTOGRAMS[slo.sli] + "_count"
    return _raw_rate(ctx, slo, metric, window)


def raw_errors(ctx: Ctx, slo: Slo, window: str) -> str:
    """Bad events per second over ``window``, from raw series, at the SLO's scope."""
    if slo.sli == "availability":
        return _raw_rate(ctx, slo, "llm_requests_finished_total", window, 'outcome="error"')
    assert slo.threshold is not None  # validated by the config model
    good = _raw_rate(ctx, slo, SLI_HISTOGRAMS[slo.sli] + "_bucket", window, le_matcher(slo.threshold))
    return f"{raw_requests(ctx, slo, window)}\n- {good}"


def raw_error_ratio(ctx: Ctx, slo: Slo, window: str) -> str:
    """The raw-window (Sloth-style) error ratio: the reference the recorded windows are measured against."""
    errors = raw_errors(ctx, slo, window)
    if slo.sli == "availability":  # engines without an error outcome give 0, not an empty result
        errors = f"({errors}\nor on ({_by(ctx)}) 0 * {raw_requests(ctx, slo, window)})"
    else:
        errors = f"({errors})"
    return f"{errors}\n/\n({raw_requests(ctx, slo, window)} > 0)"


def _sel(name: str, slo: Slo) -> str:
    return f'{name}{{slo="{slo.name}"}}'


def recorded_error_ratio(ctx: Ctx, slo: Slo, window: str) -> str:
    if window == SHORT_WINDOW:  # the fast tier's short window: straight from raw series, as in the raw version
        return raw_error_ratio(ctx, slo, window)
    w = ctx.w(window)
    return (f"sum_over_time({_sel(ERRORS, slo)}[{w}])\n/\n"
            f"(sum_over_time({_sel(REQUESTS, slo)}[{w}]) > 0)")


def budget(slo: Slo) -> Decimal:
    return Decimal(1) - dec(slo.objective)


def burn_condition(slo: Slo, alert: str, ratio: dict[str, str], requests: dict[str, str], min_rate: str) -> str:
    """The burn alert's expression over the given per-window ratio and request-rate expressions."""
    tiers = FAST_TIERS if alert == "LLMSLOBurnRateFast" else SLOW_TIERS
    parts = []
    for long, short, factor in tiers:
        limit = num(Decimal(factor) * budget(slo))
        parts.append(f"(\n  {ratio[long]} > {limit}\n  and {ratio[short]} > {limit}\n)")
    guard = f"{requests[GUARD_WINDOWS[alert]]} >= {min_rate}"
    return "(\n" + "\nor\n".join(parts) + f"\n)\nand {guard}"


def _burn_alert(ctx: Ctx, slo: Slo, alert: str, *, severity: str, for_: str) -> Rule:
    ratio = {w: _sel(error_ratio_name(w), slo) for w in SLI_WINDOWS}
    requests = {w: _sel(requests_name(w), slo) for w in GUARD_WINDOWS.values()}
    expr = burn_condition(slo, alert, ratio, requests, num(ctx.config.min_request_rate))
    fast = alert == "LLMSLOBurnRateFast"
    what = "fast: 2% of the 30-day budget in 1h" if fast else "slow: 10% of the 30-day budget in a day or more"
    scope = " ".join(f"{label}={{{{ $labels.{label} }}}}" for label in ctx.config.slo_scope)
    return Rule(
        alert=alert, expr=expr, for_=ctx.w(for_),
        labels={"slo": slo.name, "component": "slo", "bottleneck": tx.SLO_BURN, "severity": severity},
        annotations={
            "summary": "An SLO's error budget is burning too fast.",
            "description": (f"SLO {slo.name} ({num(slo.objective)} objective) of {scope} burns its error budget "
                            f"too fast ({what}); error ratio {{{{ $value | humanizePercentage }}}}."),
            "runbook_url": ctx.config.runbook_url(tx.SLO_BURN),
        },
    )


def slo_groups(ctx: Ctx) -> tuple[Group, ...]:
    groups = []
    for slo in ctx.config.slos:
        labels = {"slo": slo.name}
        errors = raw_errors(ctx, slo, RECORDED_WINDOW)
        if slo.sli == "availability":  # engines without an error outcome record 0, not nothing
            errors = f"{errors}\nor on ({_by(ctx)}) 0 * {_sel(REQUESTS, slo)}"
        short = [
            Rule(record=REQUESTS, expr=raw_requests(ctx, slo, RECORDED_WINDOW), labels=labels),
            Rule(record=ERRORS, expr=errors, labels=labels),
        ]
        short += [Rule(record=error_ratio_name(w), expr=recorded_error_ratio(ctx, slo, w), labels=labels)
                  for w in SLI_WINDOWS if w not in LONG_WINDOWS]
        short += [
            Rule(record=requests_name("1h"), expr=f"avg_over_time({_sel(REQUESTS, slo)}[{ctx.w('1h')}])",
                 labels=labels),
            Rule(record="slo:objective:ratio", expr=f"vector({num(slo.objective)})", labels=labels),
            Rule(record="slo:error_budget:ratio", expr=f"vector({num(budget(slo))})", labels=labels),
            _burn_alert(ctx, slo, "LLMSLOBurnRateFast", severity="critical", for_=ctx.config.slo_fast_for),
        ]
        long = [Rule(record=error_ratio_name(w), expr=recorded_error_ratio(ctx, slo, w), labels=labels)
                for w in LONG_WINDOWS]
        long += [
            Rule(record=requests_name("1d"), expr=f"avg_over_time({_sel(REQUESTS, slo)}[{ctx.w('1d')}])",
                 labels=labels),
            _burn_alert(ctx, slo, "LLMSLOBurnRateSlow", severity="warning", for_=ctx.config.slo_slow_for),
        ]
        groups += [Group(f"optiinfra.slo.{slo.name}", tuple(short), ctx.w(ctx.config.slo_interval)),
                   Group(f"optiinfra.slo.{slo.name}.long", tuple(long), ctx.w(ctx.config.slo_long_interval))]
    return tuple(groups)


def raw_window_groups(ctx: Ctx) -> tuple[Group, ...]:
    """The Sloth-style reference: every window read from raw series at the same scope, same alert logic.

    Not part of the generated rules: the bench's baseline and the equivalence tests' yardstick. Record names
    start with ``slo_raw:`` and the alerts end in ``Raw`` so both sets can be loaded side by side.
    """
    groups = []
    for slo in ctx.config.slos:
        labels = {"slo": slo.name}
        rules = [Rule(record=error_ratio_name(w).replace("slo:", "slo_raw:", 1), expr=raw_error_ratio(ctx, slo, w),
                      labels=labels) for w in SLI_WINDOWS]
        rules += [Rule(record=requests_name(w).replace("slo:", "slo_raw:", 1), expr=raw_requests(ctx, slo, w),
                       labels=labels) for w in sorted(set(GUARD_WINDOWS.values()))]
        for alert in GUARD_WINDOWS:
            ratio = {w: _sel(error_ratio_name(w).replace("slo:", "slo_raw:", 1), slo) for w in SLI_WINDOWS}
            requests = {w: _sel(requests_name(w).replace("slo:", "slo_raw:", 1), slo)
                        for w in GUARD_WINDOWS.values()}
            rules.append(Rule(alert=alert + "Raw", expr=burn_condition(
                slo, alert, ratio, requests, num(ctx.config.min_request_rate)), labels=labels))
        groups.append(Group(f"optiinfra.slo-raw.{slo.name}", tuple(rules)))
    return tuple(groups)
