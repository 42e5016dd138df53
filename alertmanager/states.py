"""The plan state machine: every status change goes through :func:`transition`.

It refuses illegal moves and appends the audit record (who or what caused it, and why) in the caller's
transaction, so a status and its audit trail can never disagree.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from . import store as st

#: Legal plan status changes; ``None`` is creation.
TRANSITIONS: Mapping[str | None, frozenset[str]] = {
    None: frozenset({"pending_approval", "approved"}),
    "pending_approval": frozenset({"approved", "rejected", "superseded"}),
    "approved": frozenset({"pushed", "rejected", "failed"}),
    "pushed": frozenset({"rolling_out", "completed", "failed", "rolled_back"}),
    "rolling_out": frozenset({"rolling_out", "completed", "failed", "rolled_back"}),
    "completed": frozenset({"rolled_back"}),
}
#: Statuses the orchestrator may report on ``POST /api/v1/plans/{id}/status``.
ORCHESTRATOR_STATUSES = ("rolling_out", "completed", "failed")
#: Causes recorded in the audit log.
CAUSES = ("alert", "api", "orchestrator")


class PlanNotFound(LookupError):
    pass


class IllegalTransition(ValueError):
    pass


async def transition(tx: st.Tx, plan_id: str, to: str, *, cause: str, detail: dict[str, Any], now: float,
                     error: str | None = None) -> dict[str, Any]:
    """Move a plan to ``to`` if the state machine allows it; audit it in the same transaction.

    Returns the plan as it was before; raises :class:`PlanNotFound` or :class:`IllegalTransition`.
    """
    plan = await st.get_plan(tx, plan_id, for_update=True)
    if plan is None:
        raise PlanNotFound(f"no plan {plan_id}")
    current = plan["status"]
    if to not in TRANSITIONS.get(current, frozenset()):
        allowed = ", ".join(sorted(TRANSITIONS.get(current, frozenset()))) or "none (final)"
        raise IllegalTransition(f"plan {plan_id} is {current}; it cannot become {to} (allowed: {allowed})")
    await st.set_plan_status(tx, plan_id, to, now, error=error)
    await st.append_audit(tx, plan_id, from_status=current, to_status=to, cause=cause, detail=detail, now=now)
    return plan


async def created(tx: st.Tx, plan_id: str, status: str, *, cause: str, detail: dict[str, Any], now: float) -> None:
    """The first move of a plan just inserted with ``status`` (creation is a transition from nothing)."""
    if status not in TRANSITIONS[None]:
        raise IllegalTransition(f"plan {plan_id} cannot start as {status} (allowed: pending_approval, approved)")
    await st.append_audit(tx, plan_id, from_status=None, to_status=status, cause=cause, detail=detail, now=now)


async def note(tx: st.Tx, plan_id: str, *, cause: str, detail: dict[str, Any], now: float) -> None:
    """An audit record without a status change (e.g. a rollback reached the orchestrator)."""
    plan = await st.get_plan(tx, plan_id)
    if plan is None:
        raise PlanNotFound(f"no plan {plan_id}")
    await st.append_audit(tx, plan_id, from_status=plan["status"], to_status=plan["status"], cause=cause,
                          detail=detail, now=now)
