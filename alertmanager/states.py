"""The plan state machine, defined once: every status, which moves are legal, and which statuses mean what.

The store applies it (``store.transition``): a status change that :func:`check` refuses never happens, and a
legal one is audited in the same transaction, so a status and its audit trail can never disagree.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal, get_args

PlanStatus = Literal[
    "pending_approval", "approved", "pushed", "rolling_out", "completed", "rolled_back", "rejected",
    "superseded", "failed", "verified", "no_effect",
]
PLAN_STATUSES: tuple[PlanStatus, ...] = get_args(PlanStatus)

#: Legal plan status changes; ``None`` is creation. ``superseded``: a newer plan for the same target and knob
#: replaced this one before it was approved (so before anything was pushed).
TRANSITIONS: Mapping[PlanStatus | None, frozenset[PlanStatus]] = {
    None: frozenset({"pending_approval", "approved"}),
    "pending_approval": frozenset({"approved", "rejected", "superseded"}),
    "approved": frozenset({"pushed", "rejected", "failed"}),
    "pushed": frozenset({"rolling_out", "completed", "failed", "rolled_back"}),
    "rolling_out": frozenset({"rolling_out", "completed", "failed", "rolled_back"}),
    "completed": frozenset({"rolled_back", "verified", "no_effect"}),
}
#: ``verified``: the analysis after the bake time found the expected effect and no guard worse (final).
#: ``no_effect``: it found no effect; the change is rolled back and the bottleneck's next action is tried (final).
#: Statuses the orchestrator may report on ``POST /api/v1/plans/{id}/status``.
OrchestratorStatus = Literal["rolling_out", "completed", "failed"]
ORCHESTRATOR_STATUSES: tuple[OrchestratorStatus, ...] = get_args(OrchestratorStatus)
#: The target is busy: at most one plan per target in these (a partial unique index in the store).
IN_FLIGHT: tuple[PlanStatus, ...] = ("pending_approval", "approved", "pushed", "rolling_out")
#: The plan's knobs were (or are being) changed: they count for the cooldown.
CHANGED: tuple[PlanStatus, ...] = ("approved", "pushed", "rolling_out", "completed", "rolled_back", "verified",
                                   "no_effect")
#: Analysed (at each rollout step and after the bake time): the orchestrator holds or has finished the change.
ANALYSED: tuple[PlanStatus, ...] = ("pushed", "rolling_out", "completed")
#: The orchestrator holds the plan: an SLO alert may roll it back (``completed`` only within its bake time).
ROLLBACKABLE: tuple[PlanStatus, ...] = ("pushed", "rolling_out")
#: Replaceable by a newer plan for the same target and knob: nothing was pushed yet.
SUPERSEDABLE: tuple[PlanStatus, ...] = ("pending_approval",)


class PlanNotFound(LookupError):
    pass


class IllegalTransition(ValueError):
    pass


def check(plan_id: str, current: PlanStatus | None, to: PlanStatus) -> None:
    """Raise :class:`IllegalTransition` unless the state machine allows ``current`` -> ``to``."""
    allowed = TRANSITIONS.get(current, frozenset())
    if to not in allowed:
        names = ", ".join(sorted(allowed)) or "none (final)"
        raise IllegalTransition(f"plan {plan_id} is {current or 'new'}; it cannot become {to} (allowed: {names})")


def sql_list(statuses: tuple[PlanStatus, ...]) -> str:
    """``('a', 'b')`` for an SQL ``IN`` (constants of this module only, never input)."""
    return "(" + ", ".join(f"'{s}'" for s in statuses) + ")"
