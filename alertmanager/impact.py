"""A plan's expected impact as a measurable claim, derived from the bottleneck spec; pure, no I/O.

The claim names the bottleneck's own signal (the main term of its alert condition, a per-pod recording rule)
and which way it must move, the minimum effect, and the guard series that must not get worse: time to first
token and inter-token latency p95, the error ratio and the throughput of the target, and the SLI of every
configured SLO that covers the target (``SloGuards``). Every series is written as PromQL for the changed target
and, when the target names a pod and a model, for the model's other replicas (the unchanged baseline over the
same window).

An SLO covers a target when it applies to the target's engine (any, when the engine is unknown) and its
``model`` regex, if any, matches the target's model. Its guard is the SLI's bad-event ratio (latency: events
slower than the threshold; availability: errors) from the SLO's own recorded counts (``slo:sli_errors:rate2m``
over ``slo:sli_requests:rate2m``, ``rules/slo.py``), selected by the target's values of the SLO scope labels
(``slo_scope``); lower is better, and a move smaller than the SLO's error budget (1 - objective) is noise. With
the default scope (namespace, model) the SLI is the whole service's; with ``pod`` in the scope it is the changed
pod's, against the model's other pods.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from optiinfra import signals as sg
from optiinfra.config import Slo, promql_string
from optiinfra.rules.slo import ERRORS, REQUESTS
from optiinfra.taxonomy import Bottleneck

from .plan import ExpectedImpact, Signal, Target

#: Guards: (recording rule, which way is better, absolute change that is noise).
GUARDS: tuple[tuple[str, str, float], ...] = (
    (sg.TTFT_P95.metric, "down", 0.05),
    (sg.ITL_P95.metric, "down", 0.005),
    ("pod_model:llm_requests_errored_per_finished:ratio_rate5m", "down", 0.01),
    (sg.TRAFFIC.metric, "up", 0.05),
)
_BETTER = {">": "down", ">=": "down", "==": "down", "<": "up"}
#: The noise floor of a bottleneck signal by its unit-free size (ratios and seconds both stay small).
SIGNAL_FLOOR = 0.01


def _selector(matchers: Mapping[str, tuple[str, str]]) -> str:
    return "{" + ",".join(f"{k}{op}{promql_string(v)}" for k, (op, v) in matchers.items()) + "}"


def selectors(target: Target) -> tuple[str, str | None]:
    """The target's selector and, when it names a pod and a model, its unchanged replicas' selector."""
    own: dict[str, tuple[str, str]] = {}
    if target.namespace:
        own["namespace"] = ("=", target.namespace)
    if target.pod:
        own["pod"] = ("=", target.pod)
    elif target.instance and not target.deployment:
        own["instance"] = ("=", target.instance)
    if target.model:
        own["model"] = ("=", target.model)
    baseline = None
    if target.pod and target.model:
        baseline = _selector({**own, "pod": ("!=", target.pod)})
    return _selector(own), baseline


@dataclass(frozen=True)
class SloGuards:
    """The configured SLOs (``--slo-config``) and the labels their SLIs are recorded by (``slo_scope``)."""

    slos: tuple[Slo, ...] = ()
    scope: tuple[str, ...] = ("namespace", "model")

    def covering(self, target: Target) -> list[Slo]:
        """The SLOs that cover the target: its engine (any, when unknown) and its model."""
        return [slo for slo in self.slos
                if (target.engine is None or target.engine in slo.applies_to())
                and (slo.model is None or (target.model is not None and re.fullmatch(slo.model, target.model)))]

    def guards(self, target: Target) -> list[Signal]:
        """One guard per covering SLO: its SLI's bad-event ratio for the target (and the other pods)."""
        values = target.model_dump()
        own = {label: ("=", values[label]) for label in self.scope if values.get(label)}
        baseline = ({**own, "pod": ("!=", target.pod)} if "pod" in own and target.pod and target.model
                    else None)

        def ratio(slo: Slo, matchers: Mapping[str, tuple[str, str]]) -> str:
            sel = _selector({"slo": ("=", slo.name), **matchers})
            return f"sum({ERRORS}{sel}) / sum({REQUESTS}{sel})"

        return [Signal.model_validate({
            "name": f"slo:{slo.name}", "query": ratio(slo, own), "better": "down",
            "floor": round(1 - slo.objective, 9), "baseline_query": ratio(slo, baseline) if baseline else None})
            for slo in self.covering(target)]


def _signal(rule: str, better: str, floor: float, own: str, baseline: str | None) -> Signal:
    name = rule.split(":")[1] if rule.count(":") == 2 else rule
    return Signal.model_validate({
        "name": name, "query": f"max({rule}{own})", "better": better, "floor": floor,
        "baseline_query": f"avg({rule}{baseline})" if baseline else None})


#: How far past its threshold (relative) the signal must be for a plan's step to double (the most it grows).
DOUBLE_AT = 0.1


def signal_query(entry: Bottleneck, target: Target) -> str | None:
    """The PromQL of the bottleneck's own signal for the target (None for signals without a series)."""
    condition = entry.condition
    if not (isinstance(condition, sg.Condition) and condition.main.series.kind == "rule"):
        return None
    return f"max({condition.main.series.metric}{selectors(target)[0]})"


def step_scale(entry: Bottleneck, value: float | None, thresholds: Mapping[str, float] | None = None) -> float:
    """How much bigger than the lever's own step a change should be, from the signal's current value: 1 at the
    threshold, growing linearly with how far past it the value is, 2 at ``DOUBLE_AT`` (relative) and beyond.
    KV usage 0.99 against 0.9 doubles the step; 0.91 grows it by a tenth."""
    condition = entry.condition
    if value is None or not isinstance(condition, sg.Condition):
        return 1.0
    name = condition.main.threshold
    threshold = (thresholds or {}).get(name) if isinstance(name, str) else float(name)
    if threshold is None and isinstance(name, str) and name in entry.thresholds:
        threshold = entry.thresholds[name].value
    if not threshold:
        return 1.0
    past = (value - threshold) / abs(threshold) if _BETTER[condition.main.op] == "down" else \
        (threshold - value) / abs(threshold)
    return 1.0 + min(1.0, max(0.0, past / DOUBLE_AT))


def expected_impact(entry: Bottleneck, target: Target, *, min_traffic: float = 0.01, window_seconds: int = 300,
                    slos: SloGuards | None = None) -> ExpectedImpact:
    """The claim a plan for ``entry`` on ``target`` makes (``entry.plan`` must exist)."""
    assert entry.plan is not None
    own, baseline = selectors(target)
    signal = None
    condition = entry.condition
    if isinstance(condition, sg.Condition) and condition.main.series.kind == "rule":
        signal = _signal(condition.main.series.metric, _BETTER[condition.main.op], SIGNAL_FLOOR, own, baseline)
    guards = [_signal(rule, better, floor, own, baseline) for rule, better, floor in GUARDS
              if signal is None or f"({rule}{{" not in signal.query]
    guards += slos.guards(target) if slos is not None else []
    return ExpectedImpact.model_validate({
        "metric": entry.plan.metric, "direction": entry.plan.direction, "signal": signal, "guards": guards,
        "traffic_query": f"sum({sg.TRAFFIC.metric}{own})", "min_traffic": min_traffic,
        "window_seconds": window_seconds})
