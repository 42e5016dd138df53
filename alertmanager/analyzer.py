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
from functools import partial
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
        rows = await self.store.run(partial(st.claim_analyses, now=self.clock(), lease=self.lease_seconds, limit=8))
        return sum([await self._analyse(row) for row in rows])

    async def _analyse(self, row: st.AnalysisRow) -> bool:
        plan = await self.store.run(partial(st.get_plan, plan_id=row.plan_id))
        if plan is None or plan.status not in ANALYSED:
            reason = f"the plan is {plan.status if plan else 'gone'}: nothing left to analyse"
            await self.store.run(partial(st.finish_analysis, analysis_id=row.id, verdict="skipped",
                                         detail={"reason": reason}, now=self.clock()))
            return False
        impact = impact_of(plan)
        now = self.clock()
        try:
            numbers = await measure(self.read, impact, Windows.around(changed_at(plan), now, impact.window_seconds))
        except PrometheusUnavailable as exc:
            log.warning("analysis postponed: Prometheus unavailable", extra={"plan": plan.plan_id, "error": str(exc)})
            return False  # the lease ends and the analysis is claimed again
        verdict, reason, effects = judge(impact, numbers)
        detail = {"phase": row.phase, "verdict": verdict, "reason": reason, "effects": effects, **numbers}
        acted = await self.store.run(partial(self._act, row=row, detail=detail, now=now))
        if acted in ("rolled_back", "no_effect"):  # woken here, on the event loop (never inside a transaction)
            self.wake_outbox()
            self.wake_planner()
        log.info("plan analysed", extra={"plan": plan.plan_id, "phase": row.phase, "verdict": verdict,
                                         "reason": reason, "action": acted})
        return True

    async def _act(self, tx: st.Tx, row: st.AnalysisRow, detail: dict[str, Any], now: float) -> str:
        """Record the verdict and act on it, in the caller's transaction (awaits only the store)."""
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
                return "rolled_back"
        elif row.phase == BAKE and verdict == "improved" and plan.status == "completed":
            await st.transition(tx, plan.plan_id, "verified", cause="analysis", detail=summary, now=now)
            return "verified"
        elif row.phase == BAKE and verdict == "no_effect" and plan.status == "completed" and await roll_back(
                tx, plan, cause="analysis", detail=summary, reason=reason, block=block, now=now, to="no_effect"):
            return "no_effect"  # rolled back, the knob learned, the next action planned
        await st.note(tx, plan.plan_id, cause="analysis", detail=summary, now=now)
        return "recorded"
