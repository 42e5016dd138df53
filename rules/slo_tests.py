"""promtool tests of the SLO rules (``optiinfra-rules-slo.test.yml``), built from the same config as the rules.

- per SLO and burn alert: ``fires`` (all-bad traffic: the alert fires once for the service, with the scope
  labels), ``quiet`` (all-good traffic) and ``idle`` (all bad, below the traffic guard);
- per SLO: the recorded 5m and 1h error ratios of half-bad traffic are 0.5;
- equivalence: on the same input, the burn conditions over the recorded long windows and over raw windows
  (the Sloth-style reference, :func:`optiinfra.rules.slo.raw_error_ratio`) give the same decision at every
  checkpoint where the raw decision did not change during the preceding short window (the documented lag of
  the recorded windows). Scenarios: onset, recovery, a counter reset (a restarted pod) and a 10-minute
  scrape gap, for the availability SLO and the first latency SLO of the config. The expected decisions come
  from the ideal counts of the synthesized traffic, so both rule sets are checked against the same truth.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from optiinfra import metrics as m
from optiinfra.config import (
    FAST_TIERS,
    SLI_HISTOGRAMS,
    SLOW_TIERS,
    Slo,
    format_duration_ms,
    parse_duration_ms,
    promql_string,
)
from optiinfra.rules.promql import Ctx, Group, Rule, num
from optiinfra.rules.slo import (
    GUARD_WINDOWS,
    RECORDED_WINDOW,
    SHORT_WINDOW,
    budget,
    burn_condition,
    error_ratio_name,
    raw_error_ratio,
    raw_requests,
)
from optiinfra.rules.testgen import STEP, Series, Synth, _case, _exp, _lbl, _sample, go_value, promtool_test, satisfying
from optiinfra.signals import Fixture

ALERTS: tuple[str, ...] = tuple(GUARD_WINDOWS)


def slo_model(slo: Slo) -> str | None:
    """A model name the SLO's ``model`` regex selects (None when the regex defeats the simple guesses)."""
    if not slo.model:
        return None
    try:
        return satisfying(f"model=~{promql_string(slo.model)}", {"model": "m"})["model"]
    except ValueError:
        return None


def _testable(slo: Slo) -> bool:
    return not slo.model or slo_model(slo) is not None


def slo_labels(ctx: Ctx, s: Synth, slo: Slo) -> tuple[dict[str, str], m.Engine]:
    """Labels of the SLO's input series: a pod's, plus any scope label the pod lacks."""
    engine = slo.applies_to()[0]
    labels = {**s.raw, "engine": engine, "model": slo_model(slo) or "m"}
    for label in ctx.config.slo_scope:
        labels.setdefault(label, "svc")
    return labels, engine


def scope_of(ctx: Ctx, labels: Mapping[str, str]) -> dict[str, str]:
    return {k: labels[k] for k in ctx.config.slo_scope}


def slo_series(ctx: Ctx, s: Synth, slo: Slo, bad: bool, traffic: float) -> Series:
    labels, engine = slo_labels(ctx, s, slo)
    if slo.sli == "availability":
        outcome = "error" if bad else "stop"
        return {f"llm_requests_finished_total{_lbl({**labels, 'outcome': outcome})}": s.counter(traffic)}
    assert slo.threshold is not None
    metric = SLI_HISTOGRAMS[slo.sli]
    bounds = m.NATIVE_BUCKETS[engine][metric]
    at = bounds.index(slo.threshold)
    return s.hist(metric, engine, at + 1 if bad else at, traffic, labels)


def alert_tests(ctx: Ctx, groups: tuple[Group, ...]) -> list[dict[str, Any]]:
    tests = []
    step_ms = parse_duration_ms(ctx.w(STEP))
    rules = {(r.alert, r.labels.get("slo")): r for g in groups for r in g.rules if r.alert}
    for slo in ctx.config.slos:
        if not _testable(slo):
            continue  # no model name satisfies the SLO's model regex: nothing to synthesize
        for alert in ALERTS:
            rule = rules[(alert, slo.name)]
            # A fresh series' ratios over every window are the ratio of what exists, so all-bad traffic
            # trips both windows of a tier within minutes: the test need not hold a day of data.
            eval_ms = parse_duration_ms(rule.for_) + parse_duration_ms(ctx.w("6m"))
            s = Synth(ctx, eval_ms // step_ms + 5)
            labels, _ = slo_labels(ctx, s, slo)
            fired = [({**scope_of(ctx, labels), "slo": slo.name}, 1.0)]
            tag = f"{alert}[{slo.name}]"
            trickle = ctx.config.min_request_rate / 2  # all bad, but below the traffic guard
            busy = ctx.config.min_request_rate * 10_000
            # Two pods of the service: the alert still fires once, for the service.
            s2 = Synth(ctx, s.n)
            s2.raw = {**s.raw, "pod": s.raw.get("pod", "pod") + "-b", "instance": "10.0.0.2:9400"}
            fires = {**slo_series(ctx, s, slo, True, busy), **slo_series(ctx, s2, slo, True, busy)}
            runs = [("fires", Fixture(fires), _exp(ctx, rule, fired)),  # two pods of the service, one alert
                    ("quiet", Fixture(slo_series(ctx, s, slo, False, busy)), []),
                    ("idle", Fixture(slo_series(ctx, s, slo, True, trickle)), [])]
            tests += [_case(ctx, f"{tag} {what}", rule, fixture, eval_ms=eval_ms, exp=exp)
                      for what, fixture, exp in runs]
    return tests


def ratio_tests(ctx: Ctx) -> list[dict[str, Any]]:
    """Half the requests above the threshold bucket (or errored), half not: every recorded ratio is 0.5."""
    eval_ms = parse_duration_ms(ctx.w("70m"))
    s = Synth(ctx, eval_ms // parse_duration_ms(ctx.w(STEP)) + 5)
    tests = []
    for slo in ctx.config.slos:
        if not _testable(slo):
            continue
        good, bad = slo_series(ctx, s, slo, False, 1), slo_series(ctx, s, slo, True, 1)
        merged = {**good, **bad, **{k: _add(good[k], bad[k]) for k in good.keys() & bad.keys()}}
        labels, _ = slo_labels(ctx, s, slo)
        out = {**scope_of(ctx, labels), "slo": slo.name}
        exprs = [{"expr": f'{name}{{slo="{slo.name}"}}', "eval_time": format_duration_ms(eval_ms),
                  "exp_samples": [_sample(name, out, 0.5)]}
                 for name in (error_ratio_name(SHORT_WINDOW), error_ratio_name("1h"))]
        tests.append(promtool_test(ctx, f"SLO {slo.name}: recorded 5m and 1h error ratios of half-bad traffic",
                               dict(sorted(merged.items())), promql_expr_test=exprs))
    return tests


def _add(a: str, b: str) -> str:
    """Sum of two ``0+<inc>x<n>`` counters of the same length."""
    assert a.startswith("0+") and b.startswith("0+"), (a, b)
    (inc_a, n), (inc_b, n_b) = (text.removeprefix("0+").split("x") for text in (a, b))
    assert n == n_b, (a, b)
    return f"0+{go_value(float(inc_a) + float(inc_b))}x{n}"


# ---- equivalence: recorded long windows vs raw windows ---------------------------------------------------

#: Requests per evaluation step of the equivalence scenarios (10/s at the production step of 1m).
PER_STEP = 600


@dataclass(frozen=True)
class Scenario:
    name: str
    steps: int
    error_share: Callable[[int], float]
    """Share of the requests of step i (between samples i-1 and i) that are bad."""
    gap: tuple[int, int] | None = None
    """Samples [a, b) are missing (a scrape gap)."""
    reset_at: int | None = None
    """The counters restart from zero at this sample (a restarted pod)."""


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("onset", 480, lambda i: 0.2 if i > 120 else 0.0),
    Scenario("recovery", 480, lambda i: 0.2 if 60 < i <= 180 else 0.0),
    Scenario("counter reset", 360, lambda i: 0.2 if i > 60 else 0.0, reset_at=180),
    Scenario("10-minute scrape gap", 360, lambda i: 0.2 if i > 60 else 0.0, gap=(180, 190)),
)


def _present(sc: Scenario, i: int) -> bool:
    return sc.gap is None or not sc.gap[0] <= i < sc.gap[1]


def _counters(sc: Scenario) -> tuple[list[int], list[int], list[int], list[int]]:
    """Per-step increments (total, bad) and counter values (total, bad) at every sample."""
    inc_t = [0] + [PER_STEP] * sc.steps
    inc_e = [0] + [round(PER_STEP * sc.error_share(i)) for i in range(1, sc.steps + 1)]
    val_t, val_e, t, e = [], [], 0, 0
    for i in range(sc.steps + 1):
        if i == sc.reset_at:
            t, e = 0, 0
        t, e = t + inc_t[i], e + inc_e[i]
        val_t.append(t)
        val_e.append(e)
    return inc_t, inc_e, val_t, val_e


def notation(values: Sequence[int | None]) -> str:
    """promtool's expanding notation of a sample list (None: a missing sample)."""
    out: list[str] = []
    i = 0
    while i < len(values):
        if values[i] is None:
            j = i
            while j < len(values) and values[j] is None:
                j += 1
            out.append(f"_x{j - i}")
            i = j
            continue
        start = values[i]
        assert start is not None
        j = i + 1
        step = None
        while j < len(values) and values[j] is not None:
            diff = values[j] - values[j - 1]  # type: ignore[operator]
            if step is None:
                step = diff
            elif diff != step:
                break
            j += 1
        out.append(f"{start}+{step or 0}x{j - i - 1}")
        i = j
    return " ".join(out)


def _ideal_ratio(sc: Scenario, inc_t: list[int], inc_e: list[int], k: int, n: int) -> float | None:
    """Bad / all over the window of ``n`` steps ending at sample k, from the samples that exist in it."""
    samples = [i for i in range(max(0, k - n), k + 1) if _present(sc, i)]
    if len(samples) < 2:
        return None
    total = sum(inc_t[samples[0] + 1:samples[-1] + 1])
    return sum(inc_e[samples[0] + 1:samples[-1] + 1]) / total if total else None


def _decision(ctx: Ctx, sc: Scenario, slo: Slo, alert: str, *, k: int, margin: float) -> bool | None:
    """Does the raw-window burn condition hold at sample k? None when a ratio sits within ``margin`` of its limit."""
    step_ms = parse_duration_ms(ctx.w(STEP))
    inc_t, inc_e, _, _ = _counters(sc)
    fires = False
    for long, short, factor in FAST_TIERS if alert == "LLMSLOBurnRateFast" else SLOW_TIERS:
        limit = float(factor) * float(budget(slo))
        held = True
        for window in (long, short):
            ratio = _ideal_ratio(sc, inc_t, inc_e, k, parse_duration_ms(ctx.w(window)) // step_ms)
            if ratio is not None and abs(ratio - limit) <= margin * limit:
                return None
            held = held and ratio is not None and ratio > limit
        fires = fires or held
    return fires


def _scenario_series(ctx: Ctx, sc: Scenario, slo: Slo) -> Series:
    s = Synth(ctx, sc.steps)
    labels, _ = slo_labels(ctx, s, slo)
    _, _, val_t, val_e = _counters(sc)

    def values(vals: list[int]) -> str:
        return notation([v if _present(sc, i) else None for i, v in enumerate(vals)])

    if slo.sli == "availability":
        return {f"llm_requests_finished_total{_lbl({**labels, 'outcome': 'error'})}": values(val_e),
                f"llm_requests_finished_total{_lbl({**labels, 'outcome': 'stop'})}":
                    values([t - e for t, e in zip(val_t, val_e, strict=True)])}
    assert slo.threshold is not None
    metric = SLI_HISTOGRAMS[slo.sli]
    good = [t - e for t, e in zip(val_t, val_e, strict=True)]
    return {f"{metric}_bucket{_lbl({**labels, 'le': repr(float(slo.threshold))})}": values(good),
            f"{metric}_bucket{_lbl({**labels, 'le': '+Inf'})}": values(val_t),
            f"{metric}_count{_lbl({**labels})}": values(val_t)}


def _raw_condition(ctx: Ctx, slo: Slo, alert: str) -> str:
    windows = {w for tiers in (FAST_TIERS, SLOW_TIERS) for t in tiers for w in t[:2]}
    ratio = {w: f"(\n{raw_error_ratio(ctx, slo, w)}\n)" for w in windows}
    requests = {w: raw_requests(ctx, slo, w) for w in GUARD_WINDOWS.values()}
    return burn_condition(slo, alert, ratio, requests, num(ctx.config.min_request_rate))


def equivalence_tests(ctx: Ctx, groups: tuple[Group, ...]) -> list[dict[str, Any]]:
    rules: dict[tuple[str, str], Rule] = {(r.alert, r.labels.get("slo", "")): r
                                          for g in groups for r in g.rules if r.alert}
    latency = next((s for s in ctx.config.slos if s.sli != "availability" and _testable(s)), None)
    availability = next((s for s in ctx.config.slos if s.sli == "availability" and _testable(s)), None)
    step_ms = parse_duration_ms(ctx.w(STEP))
    lag_steps = parse_duration_ms(ctx.w(RECORDED_WINDOW)) // step_ms
    tests = []
    for slo in (s for s in (availability, latency) if s is not None):
        by = ", ".join(ctx.config.slo_scope)
        labels, _ = slo_labels(ctx, Synth(ctx, 1), slo)
        scope = _lbl(scope_of(ctx, labels))
        for sc in SCENARIOS:
            exprs = []
            for k in range(10, sc.steps + 1, 5):
                for alert in ALERTS:
                    # The recorded windows average the raw ones over the recorded window: compare where the
                    # raw decision held still over it (and a sample on either side), clear of every limit.
                    seen = {_decision(ctx, sc, slo, alert, k=j, margin=0.01)
                            for j in range(max(1, k - lag_steps - 1), min(sc.steps, k + 1) + 1)}
                    if len(seen) != 1 or None in seen:
                        continue
                    want = [{"labels": scope, "value": 1}] if seen.pop() else []
                    at = format_duration_ms(k * step_ms)
                    recorded = rules[(alert, slo.name)].expr
                    exprs += [{"expr": f"count by ({by}) (\n{recorded}\n)", "eval_time": at, "exp_samples": want},
                              {"expr": f"count by ({by}) (\n{_raw_condition(ctx, slo, alert)}\n)", "eval_time": at,
                               "exp_samples": want}]
            tests.append(promtool_test(ctx, f"SLO {slo.name}: recorded and raw windows decide alike ({sc.name})",
                                   dict(sorted(_scenario_series(ctx, sc, slo).items())), promql_expr_test=exprs))
    return tests


def slo_tests(ctx: Ctx, groups: tuple[Group, ...]) -> list[dict[str, Any]]:
    return [*ratio_tests(ctx), *alert_tests(ctx, groups), *equivalence_tests(ctx, groups)]
