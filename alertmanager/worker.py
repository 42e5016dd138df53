"""The planning worker: claims new episodes, plans them (or diagnoses, skips, rolls back) and queues pushes.

Episodes are claimed with row locks and a lease, so replicas never plan one episode twice and a crashed
replica's claims come back. Each decision, its plan or rollback, its audit record and its outbox row commit in
one transaction. A newer plan for a target whose plan still waits for approval, touching one of its knobs,
supersedes it (an audited transition); any other plan in flight makes the new episode a recorded skip.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from prometheus_client import Counter

from optiinfra import taxonomy

from . import store as st
from .impact import SloGuards, signal_query
from .intake import is_slo_burn
from .outbox import enqueue_push, enqueue_rollback
from .plan import Diagnosis, Plan
from .planner import AlertEpisode, PlanningContext, PodCost, plan_for, target_of
from .promreader import Prometheus
from .states import SUPERSEDABLE, IllegalTransition, PlanStatus

if TYPE_CHECKING:
    from .service import ReceiverConfig

log = logging.getLogger(__name__)

def planner_episode(episode: st.Episode) -> AlertEpisode:
    """The planner's view of a stored episode."""
    return AlertEpisode(alertname=episode.alertname, fingerprint=episode.fingerprint, starts_at=episode.starts_at,
                        labels=dict(episode.labels), annotations=dict(episode.annotations), status=episode.status)


def scope_matches(scope: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """Does an SLO alert with ``labels`` speak for the plan's target ``scope``?"""
    namespace = labels.get("namespace")
    if namespace and scope.get("namespace") and namespace != scope["namespace"]:
        return False
    pod, deployment, model = labels.get("pod"), labels.get("deployment"), labels.get("model")
    if pod and scope.get("pod") == pod:
        return True
    if deployment and scope.get("deployment") == deployment:
        return True
    return bool(not pod and model and scope.get("model") == model)


def rollback_wanted(plan: st.PlanRow, labels: Mapping[str, str]) -> bool:
    rollback = plan.document.get("rollback") or {}
    slos, alerts = rollback.get("on_slos") or ["*"], rollback.get("on_alerts") or []
    if "*" not in slos and labels.get("slo", "") not in slos:
        return False
    if labels.get("slo", "") in (rollback.get("except_slos") or []):
        return False  # burning before the plan was made: the problem it is for, not harm it caused
    return not alerts or labels.get("alertname", "") in alerts


@dataclasses.dataclass
class PlanningWorker:
    store: st.Store
    config: ReceiverConfig
    decisions: Counter
    wake_outbox: Callable[[], None]
    clock: Callable[[], float]
    prometheus: Prometheus | None = None
    """Reads the target's current config, its pod's cost and the bottleneck signal's value; None without it."""
    slo_guards: SloGuards = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        self.slo_guards = SloGuards(tuple(self.config.slos), tuple(self.config.slo_scope))

    async def plan_pending(self) -> int:
        """Claim and process up to a batch of new episodes; return how many were processed."""
        now, lease = self.clock(), self.config.claim_lease_seconds
        episodes = await self.store.run(lambda tx: st.claim_episodes(tx, now, lease, 16))
        for episode in episodes:
            try:
                outcome = await self.process_episode(episode)
            except st.StoreError:
                raise
            except Exception as exc:  # a planner bug must not wedge the queue: record it on the episode
                log.exception("planning failed", extra={"episode": episode.id})
                outcome = await self._finish(episode, "skipped", f"planner error: {exc}")
            self.decisions.labels(outcome).inc()
        return len(episodes)

    async def process_episode(self, episode: st.Episode) -> str:
        if is_slo_burn(episode.labels):
            return await self._rollback_for(episode)
        if episode.status == "resolved":
            return await self._finish(episode, "skipped", "resolved before it was planned")
        target = target_of(episode.labels)
        if target is None:
            return await self._finish(episode, "skipped", "no target: the alert has no namespace/pod/deployment labels")
        key = target.key()
        engine_config = cost = signal = None
        if self.prometheus is not None:
            engine_config = await self.prometheus.config(episode.labels)
            cost = await self.prometheus.cost(episode.labels)
            entry = taxonomy.by_id().get(episode.bottleneck or "")
            query = signal_query(entry, target) if entry is not None and entry.plan is not None else None
            signal = await self.prometheus.value(query) if query else None
        now = self.clock()
        try:
            outcome = await self.store.run(lambda tx: self._plan_in_tx(tx, episode, key, engine_config, now,
                                                                       cost=cost, signal=signal))
        except st.Conflict:
            return await self._finish(episode, "skipped", f"in flight: another plan for {key}")
        if outcome == "planned":
            self.wake_outbox()
        return outcome

    async def _plan_in_tx(self, tx: st.Tx, episode: st.Episode, key: str, engine_config: dict[str, str] | None,
                          now: float, *, cost: PodCost | None = None, signal: float | None = None) -> str:
        in_flight = await st.in_flight_plan(tx, key)
        if in_flight is not None and in_flight.status not in SUPERSEDABLE:
            return await _skip(tx, episode, f"in flight: plan {in_flight.plan_id} ({in_flight.status}) for {key}",
                               in_flight.plan_id)
        grace = self.config.restart_grace_seconds
        if grace and (restoring := await st.rolled_back_since(tx, key, now - grace)) is not None:
            # The rollback restarts the engine: what fires meanwhile (LLMEngineDown first) is that restart,
            # or the state it undoes. Looked at again once the restart had its time.
            until = restoring.updated_at + grace
            await st.defer_episode(tx, episode.id, until, f"deferred: plan {restoring.plan_id} for {key} was rolled "
                                   f"back {now - restoring.updated_at:.0f}s ago; the engine may still be restarting "
                                   f"(looked at again after {grace:.0f}s)", restoring.plan_id)
            return "deferred"
        baking = await st.baking_plan(tx, key)
        if baking is not None:  # looked at again once the bake analysis is due: planned then if still firing
            plan_id, due = baking
            await st.defer_episode(tx, episode.id, max(due, now + 1.0), f"baking: plan {plan_id} for {key} is "
                                   "still being analysed (looked at again when its bake ends)", plan_id)
            return "deferred"
        cooldown = self.config.cooldown_seconds
        recent = await st.plans_since(tx, key, now - cooldown)
        for plan in recent:
            if plan.bottleneck == episode.bottleneck and plan.status not in ("no_effect", "failed"):  # try the next
                return await _skip(tx, episode, f"cooldown: plan {plan.plan_id} for {episode.bottleneck} on {key} "
                                   f"was created {now - plan.created_at:.0f}s ago (cooldown {cooldown:.0f}s)",
                                   plan.plan_id)
        blocked = frozenset(b.knob for b in await st.blocked_knobs(tx, key)) | frozenset(
            k.knob for k in await st.learned(tx, key, episode.bottleneck or ""))
        ctx = PlanningContext(blocked_knobs=blocked, cooling_knobs=st.changed_knobs(recent),
                              auto_approve_low_risk=self.config.auto_approve_low_risk,
                              engine_config=engine_config or {}, now=datetime.fromtimestamp(now, UTC),
                              pod_cost=cost,
                              analysis_window_seconds=self.config.analysis_window_seconds,
                              min_request_rate=self.config.min_request_rate, signal_value=signal,
                              burning_slos=await _burning_slos(tx, episode.labels), slo_guards=self.slo_guards)
        if self.config.bake_seconds is not None:
            ctx = dataclasses.replace(ctx, bake_seconds=int(self.config.bake_seconds))
        result = plan_for(planner_episode(episode), ctx)
        if in_flight is not None:
            knobs = set() if isinstance(result, Diagnosis) else {a.knob for a in result.actions}
            if not knobs & set(in_flight.knobs):
                return await _skip(tx, episode, f"in flight: plan {in_flight.plan_id} ({in_flight.status}) for "
                                   f"{key} changes other knobs", in_flight.plan_id)
            await st.transition(tx, in_flight.plan_id, "superseded", cause="alert", now=now, detail={
                "event": "superseded", "by": getattr(result, "plan_id", ""), "episode": episode.id,
                "knobs": sorted(knobs & set(in_flight.knobs))})
        if isinstance(result, Diagnosis):
            diagnosis_id = await st.insert_diagnosis(tx, episode.id, target_key=key, bottleneck=result.bottleneck,
                                                     document=result.document(), now=now)
            await st.finish_episode(tx, episode.id, "diagnosed", f"diagnosis {diagnosis_id}: {result.reason}")
            return "diagnosed"
        await self._insert_plan(tx, result, key, episode.id, now)
        await st.finish_episode(tx, episode.id, "planned", f"plan {result.plan_id} ({result.status})", result.plan_id)
        return "planned"

    async def _insert_plan(self, tx: st.Tx, plan: Plan, key: str, episode_id: int, now: float) -> None:
        document = plan.document()
        scope = plan.target.model_dump(exclude_none=True)
        bake = self.config.bake_seconds if self.config.bake_seconds is not None else plan.rollout.bake_seconds
        await st.insert_plan(tx, plan_id=plan.plan_id, idempotency_key=plan.idempotency_key, target_key=key,
                             bottleneck=plan.bottleneck, risk=plan.risk, status=plan.status, document=document,
                             knobs=sorted({a.knob for a in plan.actions}), scope=scope, episode_id=episode_id,
                             bake_seconds=float(bake), now=now)
        alerts = [a["fingerprint"] for a in document["evidence"]["alerts"]]
        await st.created(tx, plan.plan_id, plan.status, cause="alert", now=now,
                         detail={"event": "planned", "alerts": alerts, "episode": episode_id, "risk": plan.risk})
        if plan.status == "approved":
            await enqueue_push(tx, document, now)

    async def _finish(self, episode: st.Episode, state: str, reason: str) -> str:
        await self.store.run(lambda tx: st.finish_episode(tx, episode.id, state, reason))
        return state

    async def _rollback_for(self, episode: st.Episode) -> str:
        labels, now = episode.labels, self.clock()
        alert = {"alertname": episode.alertname, "fingerprint": episode.fingerprint, "startsAt": episode.starts_at,
                 "labels": labels, "annotations": episode.annotations}

        async def body(tx: st.Tx) -> list[str]:
            rolled: list[str] = []
            for plan in await st.rollback_candidates(tx, now):
                if not (scope_matches(plan.scope, labels) and rollback_wanted(plan, labels)):
                    continue
                if await roll_back(tx, plan, cause="alert", detail={"event": "slo_alert", "alert": alert},
                                   reason={"kind": "slo_alert", **alert},
                                   block=f"rolled back by {episode.alertname} ({labels.get('slo', '')})", now=now):
                    rolled.append(plan.plan_id)
            if not rolled:
                await st.finish_episode(tx, episode.id, "no_rollback",
                                        "no plan in flight (or within its bake time) for this SLO alert's scope")
            else:
                await st.finish_episode(tx, episode.id, "rolled_back", "rolled back " + ", ".join(rolled), rolled[0])
            return rolled

        rolled = await self.store.run(body)
        if not rolled:
            return "no_rollback"
        self.wake_outbox()
        log.info("rollback decided", extra={"plans": rolled, "alert": episode.alertname})
        return "rolled_back"


async def _burning_slos(tx: st.Tx, labels: Mapping[str, str]) -> tuple[str, ...]:
    """SLOs whose burn alerts fire for the alert's target right now (``scope_matches`` from the target's side)."""
    target = target_of(labels)
    if target is None:
        return ()
    scope = target.model_dump(exclude_none=True)
    return tuple(e.labels["slo"] for e in await st.firing_slo_episodes(tx)
                 if e.labels.get("slo") and scope_matches(scope, e.labels))


async def roll_back(tx: st.Tx, plan: st.PlanRow, *, cause: str, detail: dict[str, Any], reason: dict[str, Any],
                    block: str, now: float, to: PlanStatus = "rolled_back") -> bool:
    """The one rollback path (SLO alerts, analyses): move the plan to ``to`` (``rolled_back`` or ``no_effect``),
    queue its rollback push once and block its knobs on the target. False when the state machine refuses (the
    plan was already rolled back, by another replica or a repeated alert)."""
    try:
        await st.transition(tx, plan.plan_id, to, cause=cause, detail=detail, now=now)
    except IllegalTransition:
        return False
    await enqueue_rollback(tx, plan, reason, now)
    if to == "rolled_back":
        for knob in plan.knobs:
            await st.block_knob(tx, plan.target_key, knob=knob, plan_id=plan.plan_id, reason=block, now=now)
    else:
        await next_action(tx, plan, verdict=to, reason=block, now=now)
    return True


async def next_action(tx: st.Tx, plan: st.PlanRow, *, verdict: str, reason: str, now: float) -> None:
    """The plan did not help (``no_effect``) or the orchestrator could not carry it out (``failed``): its knobs
    are learned for the bottleneck on the target, and the alert's episode is planned again, so the bottleneck's
    next action is tried."""
    for knob in plan.knobs:
        await st.learn(tx, plan.target_key, bottleneck=plan.bottleneck, knob=knob, plan_id=plan.plan_id,
                       verdict=verdict, reason=reason, now=now)
    if plan.episode_id is not None:
        await st.replan_episode(tx, plan.episode_id, f"plan {plan.plan_id} {verdict}: next action")


async def _skip(tx: st.Tx, episode: st.Episode, reason: str, plan_id: str) -> str:
    await st.finish_episode(tx, episode.id, "skipped", reason, plan_id)
    return "skipped"
