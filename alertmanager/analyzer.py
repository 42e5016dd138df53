"""The analysis worker: checks each plan's expected impact at every rollout step and after its bake time, and
acts on the verdict through the state machine.

Analyses are queued (``store.schedule_analysis``, one per plan and phase) when the orchestrator reports a step
(``step-<percent>``, due one analysis window later) or completion (``bake``, due when the bake time ends). They are
claimed with a lease like episodes, measured against Prometheus outside any transaction, and then recorded and
acted on in one transaction, at most once (a verdict already recorded by another replica is dropped):

- ``worse`` at any phase: the plan is rolled back at once (the same exactly-once path as SLO alerts) and its
  knob blocked on the target;
- after the bake time, ``improved``: ``verified``; ``no_effect``: the change is rolled back, the knob is learned
  as not helping this bottleneck on this target, and the alert episode is planned again (its next action);
  ``inconclusive``: recorded, nothing changes;
- at a rollout step, anything but ``worse`` is recorded only.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import Any

from . import store as st
from .analysis import PrometheusUnavailable, RangeReader, Windows, judge, measure
from .plan import ExpectedImpact
from .states import ANALYSED
from .worker import roll_back

log = logging.getLogger(__name__)

BAKE = "bake"


def step_phase(step: int) -> str:
    return f"step-{step}"


def changed_at(plan: st.PlanRow) -> float:
    """When the change started: the push (the plan's creation when it was never pushed)."""
    return plan.pushed_at if plan.pushed_at is not None else plan.created_at


def impact_of(plan: st.PlanRow) -> ExpectedImpact:
    return ExpectedImpact.model_validate(plan.document["expected_impact"])


@dataclasses.dataclass
class Analyzer:
    store: st.Store
    read: RangeReader
    clock: Callable[[], float]
    wake_outbox: Callable[[], None]
    wake_planner: Callable[[], None]
    lease_seconds: float = 60.0

    async def analyse_due(self) -> int:
        """Claim, measure, judge and act on the due analyses; return how many were finished."""
        rows = await self.store.run(lambda tx: st.claim_analyses(tx, self.clock(), self.lease_seconds, 8))
        done = 0
        for row in rows:
            plan = await self.store.run(lambda tx, pid=row.plan_id: st.get_plan(tx, pid))
            if plan is None or plan.status not in ANALYSED:
                status = plan.status if plan else "gone"
                await self.store.run(lambda tx, r=row, s=status: self._record(tx, r, "skipped", {
                    "reason": f"the plan is {s}: nothing left to analyse"}))
                continue
            impact = impact_of(plan)
            now = self.clock()
            windows = Windows.around(changed_at(plan), now, impact.window_seconds)
            try:
                numbers = await measure(self.read, impact, windows)
            except PrometheusUnavailable as exc:
                log.warning("analysis postponed: Prometheus unavailable", extra={"plan": plan.plan_id,
                                                                                 "error": str(exc)})
                continue  # the lease ends and the analysis is claimed again
            verdict, reason, effects = judge(impact, numbers)
            detail = {"phase": row.phase, "verdict": verdict, "reason": reason, "effects": effects, **numbers}
            acted = await self.store.run(lambda tx, r=row, d=detail: self._act(tx, r, d, now))
            done += 1
            log.info("plan analysed", extra={"plan": plan.plan_id, "phase": row.phase, "verdict": verdict,
                                             "reason": reason, "action": acted})
        return done

    async def _record(self, tx: st.Tx, row: st.AnalysisRow, verdict: str, detail: dict[str, Any]) -> bool:
        return await st.finish_analysis(tx, row.id, verdict, detail, self.clock())

    async def _act(self, tx: st.Tx, row: st.AnalysisRow, detail: dict[str, Any], now: float) -> str:
        verdict: str = detail["verdict"]
        if not await st.finish_analysis(tx, row.id, verdict, detail, now):
            return "already recorded"
        plan = await st.get_plan(tx, row.plan_id, for_update=True)
        if plan is None:
            return "none"
        summary = {"event": "analysis", "phase": row.phase, "verdict": verdict, "reason": detail["reason"]}
        block = f"{verdict} at {row.phase}: {detail['reason']}"
        reason = {"kind": "analysis", "phase": row.phase, "verdict": verdict, "reason": detail["reason"]}
        if verdict == "worse":
            if await roll_back(tx, plan, cause="analysis", detail=summary, reason=reason, block=block, now=now):
                self.wake_outbox()
                return "rolled_back"
        elif row.phase == BAKE and verdict == "improved" and plan.status == "completed":
            await st.transition(tx, plan.plan_id, "verified", cause="analysis", detail=summary, now=now)
            return "verified"
        elif row.phase == BAKE and verdict == "no_effect" and plan.status == "completed":
            if await roll_back(tx, plan, cause="analysis", detail=summary, reason=reason, block=block, now=now,
                               to="no_effect"):
                if plan.episode_id is not None:
                    await st.replan_episode(tx, plan.episode_id, f"plan {plan.plan_id} had no effect: next action")
                    self.wake_planner()
                self.wake_outbox()
                return "no_effect"
        await st.note(tx, plan.plan_id, cause="analysis", detail=summary, now=now)
        return "recorded"
