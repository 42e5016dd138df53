"""The planner: a firing taxonomy alert episode -> a plan (docs/orchestrator-api.md) or a diagnosis; pure, no I/O.

Decisions:

- The bottleneck comes from the ``bottleneck`` label, never the alert name. Entries without actions
  (``request_errors``, GPU and host health), ``slo_burn`` alerts (the receiver's rollback path), unknown
  bottlenecks, resolved episodes and alerts without a workload label give a ``Diagnosis`` with the runbook link.
- The current config is read from ``ctx.engine_config`` (the target's ``llm_engine_info`` labels, queried at
  planning time with ``--prometheus-url``), then from the alert's own labels (only present when a user's rule
  joins ``llm_engine_info``): the query is the fresher of the two. ``engine_config`` may also carry ``engine``
  for alerts whose rules keep no engine label (log-signature alerts such as ``cuda_oom``); the model is never
  taken from it, so ``plan.target.key()`` always equals ``target_of(alert labels).key()``.
- The first action of the taxonomy entry's ``actions`` whose engine knob exists, is not blocked (rolled back on
  this target), not cooling (changed within the cooldown) and is valid wins. Blocked and cooling are checked
  against the action's ``knob`` id (see ``optiinfra.engines``); ``ctx`` holds them for this target only.
- One knob per plan: a single change is what a rollback, the no-retry list and the expected-impact check can
  attribute an effect to; bundling would also restart the engine for several risks at once.
- Known current value: ``from`` is it, ``to`` the new value, clamped to the knob's bounds. Unknown: ``from`` is
  null and ``to`` a relative change (``+0.05``, ``-0.05``, ``x0.75``, ``x2``) with ``relative: true`` and the
  bounds in ``min_value``/``max_value`` for the orchestrator to clamp against the running value. Knobs that are
  on by default (prefix caching) or whose default is the cap (TGI ``--cuda-memory-fraction`` 1.0) are proposed
  only when the current value is known.
- Validity: the new value must move in the knob's direction within its bounds, and the config after the change
  (every known value) must satisfy the engine's constraints; a knob newer than the running ``version`` is skipped.
- Sized from the evidence: a change to a known value takes the lever's step (``+0.05``, ``x0.75``) scaled by
  how far the bottleneck's signal (``ctx.signal_value``, read at planning time) is past its threshold, up to
  twice the step (``impact.step_scale``), then clamped to the knob's bounds as always.
- ``requires_approval = risk != "low" or not ctx.auto_approve_low_risk``; the initial status follows from it.
- ``idempotency_key`` is a hash of (fingerprint, startsAt, actions): a re-plan of the same episode yields the same
  key. ``plan_id`` is a fresh uuid4: unique even when a cleared knob is proposed again for the same episode.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, cast, get_args

from optiinfra import engines, taxonomy
from optiinfra.metrics import ENGINES
from optiinfra.taxonomy import ActionId, Bottleneck

from . import knobs
from .impact import SloGuards, expected_impact, step_scale
from .plan import (
    Action,
    CostImpact,
    Diagnosis,
    Evidence,
    EvidenceAlert,
    Plan,
    Risk,
    Rollback,
    Rollout,
    Severity,
    Target,
    Value,
)

_SEVERITIES: tuple[str, ...] = get_args(Severity)


@dataclass(frozen=True)
class AlertEpisode:
    """One alert's firing episode, ``(fingerprint, starts_at)``, as delivered by Alertmanager."""

    fingerprint: str
    starts_at: str
    """RFC3339, exactly as in the webhook payload (part of the idempotency key)."""
    labels: Mapping[str, str]
    annotations: Mapping[str, str] = field(default_factory=dict)
    status: Literal["firing", "resolved"] = "firing"
    alertname: str = ""
    """Defaults to the ``alertname`` label."""

    @property
    def name(self) -> str:
        return self.alertname or self.labels.get("alertname", "")


@dataclass(frozen=True)
class PodCost:
    """The target pod's GPUs and what they cost per hour (None without a price), read from Prometheus."""

    gpus: float
    price_per_hour: float | None = None
    currency: str | None = None


#: The recorded series a pod's cost is read from (``optiinfra.rules.efficiency``).
GPUS_SERIES = "pod:DCGM_FI_DEV_GPU_UTIL:count"
PRICE_SERIES = "pod:llm_gpu_hour_price:sum"


def cost_query(matchers: str) -> str:
    """One instant query for a pod's GPU count and GPU price (``matchers``: its identity, ``pod="x",...``)."""
    return (f'label_replace({GPUS_SERIES}{{{matchers}}}, "series", "gpus", "", "") or '
            f'label_replace({PRICE_SERIES}{{{matchers}}}, "series", "price", "", "")')


def pod_cost(results: Sequence[Mapping[str, Any]]) -> PodCost | None:
    """``cost_query``'s result as a ``PodCost``; None when the pod's GPUs are unknown."""
    found = {r["metric"].get("series"): (float(r["value"][1]), r["metric"].get("currency")) for r in results}
    if "gpus" not in found:
        return None
    price, currency = found.get("price", (None, None))
    return PodCost(gpus=found["gpus"][0], price_per_hour=price, currency=currency)


def cost_impact(action: Action, cost: PodCost | None) -> CostImpact | None:
    """What a scale action adds (``+1``) or saves (``-1``) per day on a pod like the target."""
    if action.kind != "scale" or cost is None or not isinstance(action.to, str):
        return None
    replicas = int(float(action.to)) if action.relative else 0
    if replicas == 0:
        return None
    per_day = None if cost.price_per_hour is None else round(replicas * cost.price_per_hour * 24, 2)
    return CostImpact(replicas=replicas, gpus_per_replica=cost.gpus,
                      gpu_hours_per_day=round(replicas * cost.gpus * 24, 2), cost_per_day=per_day,
                      currency=cost.currency if per_day is not None else None)


def _cost_text(cost: CostImpact) -> str:
    verb = "saves" if cost.gpu_hours_per_day < 0 else "costs"
    money = ""
    if cost.cost_per_day is not None:
        money = f" ({abs(cost.cost_per_day):g}{' ' + cost.currency if cost.currency else ''})"
    return (f" It {verb} {abs(cost.gpu_hours_per_day):g} GPU-hours{money} a day "
            f"({cost.gpus_per_replica:g} GPUs per replica).")


@dataclass(frozen=True, kw_only=True)
class PlanningContext:
    """Everything the planner needs beyond the alert; the receiver builds it per target."""

    now: datetime
    blocked_knobs: frozenset[str] = frozenset()
    """Knobs rolled back on this target, until a human clears them."""
    cooling_knobs: frozenset[str] = frozenset()
    """Knobs changed on this target within the cooldown."""
    auto_approve_low_risk: bool = False
    engine_config: Mapping[str, str] = field(default_factory=dict)
    """The target's ``llm_engine_info`` labels (engine, model and config); precedes the alert's labels."""
    slos: tuple[str, ...] = ()
    """SLO names for the target's model; empty: every SLO (``on_slos: ["*"]``)."""
    burning_slos: tuple[str, ...] = ()
    """SLOs whose burn alerts already fire for the target (``rollback.except_slos``)."""
    rollout_steps: tuple[int, ...] = (10, 50, 100)
    bake_seconds: int = 600
    pod_cost: PodCost | None = None
    """The target pod's GPUs and GPU price (``cost_query``); scale plans state what they add or save from it."""
    analysis_window_seconds: int = 300
    """Length of the before and after windows a plan's analysis compares."""
    min_request_rate: float = 0.01
    """Requests/s below which an analysis is inconclusive (too little traffic)."""
    signal_value: float | None = None
    """The bottleneck signal's current value for the target (read at planning time): sizes the step."""
    slo_guards: SloGuards | None = None
    """The configured SLOs: the SLI of each one covering the target guards the plan."""

    def __post_init__(self) -> None:
        steps = self.rollout_steps
        if not steps or list(steps) != sorted(set(steps)) or steps[0] <= 0 or steps[-1] != 100:
            raise ValueError(f"rollout steps {list(steps)}: give increasing percentages ending at 100, e.g. 10,50,100")
        if self.bake_seconds < 0:
            raise ValueError(f"bake seconds {self.bake_seconds}: give 0 or more")


def target_of(labels: Mapping[str, str]) -> Target | None:
    """The workload an alert is about; ``None`` when it names no pod, deployment or instance."""
    pod, deployment, instance = (labels.get(k) or None for k in ("pod", "deployment", "instance"))
    if not (pod or deployment or instance):
        return None
    engine = labels.get("engine", "")
    return Target(namespace=labels.get("namespace") or None, pod=pod, deployment=deployment, instance=instance,
                  engine=engine if engine in ENGINES else None, model=labels.get("model") or None)


def idempotency_key(fingerprint: str, starts_at: str, actions: Sequence[Action]) -> str:
    parts = [fingerprint, starts_at]
    parts += [f"{a.kind}:{a.name}:{a.to!r}:{a.relative}" for a in actions]
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]


def plan_for(episode: AlertEpisode, ctx: PlanningContext,
             catalogue: tuple[Bottleneck, ...] = taxonomy.BOTTLENECKS) -> Plan | Diagnosis:
    """A plan for a firing episode of a plannable bottleneck, else a diagnosis saying why not."""
    labels = episode.labels
    evidence = Evidence(alerts=[EvidenceAlert.model_validate({
        "alertname": episode.name, "fingerprint": episode.fingerprint, "startsAt": episode.starts_at,
        "status": episode.status, "labels": dict(labels), "annotations": dict(episode.annotations)})])
    bottleneck_id = labels.get("bottleneck", "")
    entry = taxonomy.by_id(catalogue).get(bottleneck_id)
    target = _target(labels, ctx.engine_config)
    if entry is None:
        reason = ("an SLO burn-rate alert: it rolls back plans in flight, it is not planned"
                  if bottleneck_id == taxonomy.SLO_BURN
                  else f"bottleneck label {bottleneck_id!r} is not in the taxonomy" if bottleneck_id
                  else "the alert has no bottleneck label")
        return Diagnosis(bottleneck=bottleneck_id or "unknown", target=target, severity=_severity(labels, None),
                         runbook_url=episode.annotations.get("runbook_url", ""),
                         summary=episode.annotations.get("summary", ""), evidence=evidence, reason=reason)

    def diagnosis(reason: str) -> Diagnosis:
        assert entry is not None
        return Diagnosis(bottleneck=entry.id, target=target, severity=_severity(labels, entry),
                         runbook_url=episode.annotations.get("runbook_url") or entry.runbook_url,
                         summary=entry.summary, evidence=evidence, reason=reason, manual=entry.manual)

    if episode.status != "firing":
        return diagnosis("the episode is resolved: nothing to plan")
    plan = entry.plan
    if plan is None:
        return diagnosis(f"no automatic action for {entry.id}; a human decides (see the runbook)")
    if target is None:
        return diagnosis("the alert names no pod, deployment or instance to act on")

    vocab = engines.VOCABULARY[target.engine] if target.engine else None
    config = vocab.current_config(ctx.engine_config, labels) if vocab else {}
    evidence.values.update(config)
    version = ctx.engine_config.get("version") or labels.get("version", "")
    skipped: list[str] = []
    scale = step_scale(entry, ctx.signal_value)
    if ctx.signal_value is not None:
        evidence.values["signal"] = round(ctx.signal_value, 6)
    for action_id in plan.actions:
        found = _first_action(action_id, vocab, config, ctx, skipped, version=version, scale=scale)
        if found is None:
            continue
        action, risk, effect = found
        return _plan(episode, ctx, entry=entry, target=target, evidence=evidence, action=action, risk=risk,
                     effect=effect, skipped=skipped)
    return diagnosis("no action is available: " + "; ".join(skipped))


def _target(labels: Mapping[str, str], engine_config: Mapping[str, str]) -> Target | None:
    target = target_of(labels)
    if target is None:
        return None
    engine = engine_config.get("engine")
    if target.engine is None and engine in ENGINES:
        # Only the engine: the model is part of Target.key(), which must match target_of(labels).key().
        return target.model_copy(update={"engine": engine})
    return target


def _severity(labels: Mapping[str, str], entry: Bottleneck | None) -> Severity:
    value = labels.get("severity", "")
    return cast(Severity, value) if value in _SEVERITIES else entry.severity if entry else "info"


def _first_action(action_id: ActionId, vocab: engines.EngineVocabulary | None, config: Mapping[str, Value],
                  ctx: PlanningContext, skipped: list[str], *, version: str,
                  scale: float = 1.0) -> tuple[Action, Risk, str] | None:
    ops = knobs.OPS_ACTIONS.get(action_id)
    if ops is not None:
        if reason := _held(ops.knob, ctx):
            skipped.append(f"{action_id}: {reason}")
            return None
        action = Action(kind=ops.kind, name=ops.name, knob=ops.knob, to=ops.to, relative=ops.relative,
                        min_value=ops.minimum, restart_required=ops.restart_required)
        return action, ops.risk, ops.effect
    if vocab is None:
        skipped.append(f"{action_id}: the engine is unknown (no engine label, no llm_engine_info)")
        return None
    candidates = vocab.candidates(action_id)
    if not candidates:
        skipped.append(f"{action_id}: " + vocab.no_knob.get(action_id, f"{vocab.engine} has no flag for it"))
        return None
    for knob in candidates:
        if (over := knob.lever.unless_set) and config.get(over) is not None:
            skipped.append(f"{action_id} ({knob.setting.flag}): {over} = {config[over]} is set and overrides it")
            continue
        if reason := _held(knob.setting.key, ctx) or vocab.too_old(knob, version):
            skipped.append(f"{action_id} ({knob.setting.flag}): {reason}")
            continue
        proposed = _propose(knob, config.get(knob.setting.key), vocab.bounds(knob, config), scale)
        if isinstance(proposed, str):
            skipped.append(f"{action_id} ({knob.setting.flag}): {proposed}")
            continue
        if not proposed.relative:
            problems = vocab.violations({**config, knob.setting.key: proposed.to})
            if problems:
                skipped.append(f"{action_id} ({knob.setting.flag} -> {proposed.to}): violates " + "; ".join(problems))
                continue
        return proposed, knob.lever.risk, knob.lever.effect
    return None


def _held(knob: str, ctx: PlanningContext) -> str:
    if knob in ctx.blocked_knobs:
        return f"{knob} was rolled back on this target and is blocked until cleared"
    if knob in ctx.cooling_knobs:
        return f"{knob} changed within the cooldown"
    return ""


def _propose(knob: engines.Knob, current: Value | None, limits: tuple[float | None, float | None],
             scale: float = 1.0) -> Action | str:
    """The action for one knob given its current value, or why it does not apply.

    A relative change carries ``limits`` (the knob's bounds tightened by related known values) for the
    orchestrator's clamp; a known value is clamped to the knob's own bounds only and then checked against the
    engine's constraints by the caller, so a change that breaks one is reported, not silently shrunk.
    """
    lever, change = knob.lever, knob.lever.change
    base = {"kind": knob.kind, "name": knob.setting.flag, "knob": knob.setting.key, "restart_required": True}
    if lever.needs_current and current is None:
        return f"current {knob.setting.key} unknown; proposed only when known (default {knob.setting.default})"
    wanted = engines.parse(change[1:], knob.setting.type) if change.startswith("=") else None
    if wanted is not None:
        if current is not None:
            text = str(current).lower()
            if current == wanted or any(text.startswith(p) for p in lever.done_prefixes):
                return f"already {current}"
            if lever.only_when_unset and text not in ("", "none", "null", "false", "0"):
                return f"already set to {current}"
        return Action.model_validate({**base, "from": current, "to": wanted})
    if current is None or isinstance(current, bool | str):
        low, high = limits
        if low is not None and high is not None and low > high:
            return f"no valid value: its constraints need {low:g} <= {knob.setting.key} <= {high:g}"
        return Action.model_validate({**base, "from": None, "to": change, "relative": True,
                                      "min_value": low, "max_value": high})
    step = float(change[1:])
    upward = change.startswith("+") or (change.startswith("x") and step > 1)
    # sized from the evidence: a signal far past its threshold takes a bigger step (up to twice the lever's)
    step = 1 + (step - 1) * scale if change.startswith("x") else step * scale
    raw = current * step if change.startswith("x") else current + (step if upward else -step)
    if lever.minimum is not None:
        raw = max(raw, lever.minimum)
    if lever.maximum is not None:
        raw = min(raw, lever.maximum)
    new: int | float
    if knob.setting.type == "int":
        new = round(raw)
        if change.startswith("x") and new == current:
            new = current + (1 if upward else -1)
            low, high = lever.minimum, lever.maximum
            if (high is not None and new > high) or (low is not None and new < low):
                new = current
    else:
        new = round(raw, 4)
    if (upward and new <= current) or (not upward and new >= current):
        bound = lever.maximum if upward else lever.minimum
        return f"{current} is already at or beyond its {'cap' if upward else 'floor'} {bound}"
    return Action.model_validate({**base, "from": current, "to": new})


def _plan(episode: AlertEpisode, ctx: PlanningContext, *, entry: Bottleneck, target: Target, evidence: Evidence,
          action: Action, risk: Risk, effect: str, skipped: Sequence[str]) -> Plan:
    change = (f"{action.name} {action.to} relative to the running value" if action.relative
              else f"{action.name} {action.from_ if action.from_ is not None else '(unknown)'} -> {action.to}")
    if action.kind == "restart":
        change = "restart the pod"
    rationale = f"{entry.summary} Proposed: {change}" + (f" on {target.engine}" if target.engine else "")
    rationale += f": {effect}."
    cost = cost_impact(action, ctx.pod_cost)
    if cost is not None:
        rationale += _cost_text(cost)
    if skipped:
        rationale += " Not proposed: " + "; ".join(skipped) + "."
    requires_approval = risk != "low" or not ctx.auto_approve_low_risk
    restart = action.kind in ("restart", "scale")  # a whole-pod or replica-count change has no traffic split
    now = ctx.now if ctx.now.tzinfo is not None else ctx.now.replace(tzinfo=UTC)
    return Plan(
        plan_id=str(uuid.uuid4()),
        idempotency_key=idempotency_key(episode.fingerprint, episode.starts_at, [action]),
        created_at=now,
        target=target,
        bottleneck=entry.id,
        severity=_severity(episode.labels, entry),
        runbook_url=episode.annotations.get("runbook_url") or entry.runbook_url,
        evidence=evidence,
        actions=[action],
        rationale=rationale,
        expected_impact=expected_impact(entry, target, min_traffic=ctx.min_request_rate,
                                        window_seconds=ctx.analysis_window_seconds, slos=ctx.slo_guards),
        risk=risk,
        requires_approval=requires_approval,
        rollout=Rollout(strategy="recreate" if restart else "canary",
                        steps=[100] if restart else list(ctx.rollout_steps), bake_seconds=ctx.bake_seconds),
        rollback=Rollback(on_slos=list(ctx.slos) or ["*"], on_alerts=[],
                          except_slos=sorted(set(ctx.burning_slos))),
        status="pending_approval" if requires_approval else "approved",
        cost=cost,
    )
