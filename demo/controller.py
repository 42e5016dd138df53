"""The demo's deployment controller: carries out what the orchestrator sink accepted on the simulator.

A plan's ``engine_arg`` actions become ``POST /admin/config`` on the simulator (engine-native keys, e.g.
``gpu_memory_utilization``); relative targets (``+0.05``, ``x0.75``) resolve against the running value and
the action's bounds. A rollback restores the values the plan replaced. Each plan and rollback is carried
out once, whatever the sink saw twice.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from optiinfra.demo.orchestrator import Sink

log = logging.getLogger(__name__)


class ApplyError(Exception):
    """The simulator refused or could not take a change."""


def resolve(action: dict[str, Any], current: Any) -> Any:
    """The absolute value an action sets, given the running value."""
    target = action.get("to")
    if not action.get("relative"):
        return target
    if current is None:
        raise ApplyError(f"relative change {target!r} for {action.get('knob')} but the current value is unknown")
    text = str(target)
    value = float(current) * float(text[1:]) if text.startswith("x") else float(current) + float(text)
    if action.get("min_value") is not None:
        value = max(value, float(action["min_value"]))
    if action.get("max_value") is not None:
        value = min(value, float(action["max_value"]))
    return round(value) if isinstance(current, int) and not isinstance(current, bool) else round(value, 4)


@dataclass
class EngineController:
    simulator: str
    applied: list[dict[str, Any]] = field(default_factory=list)
    """One entry per change carried out: what (applied/restored), plan id, config sent."""
    _applied_plans: set[str] = field(default_factory=set)
    _rolled_back: set[str] = field(default_factory=set)
    _previous: dict[str, dict[str, Any]] = field(default_factory=dict)

    async def sync(self, session: aiohttp.ClientSession, sink: Sink) -> None:
        """Carry out every plan and rollback the sink accepted that is not carried out yet."""
        for key, plan in list(sink.plans.items()):
            if key not in self._applied_plans:
                self._applied_plans.add(key)
                await self._apply(session, plan)
        for key, rollback in list(sink.rollbacks.items()):
            if key not in self._rolled_back:
                self._rolled_back.add(key)
                await self._restore(session, str(rollback.get("plan_id")))

    async def _config(self, session: aiohttp.ClientSession) -> dict[str, Any]:
        async with session.get(f"{self.simulator}/admin/config") as response:
            body: dict[str, Any] = await response.json()
            return body

    async def _post(self, session: aiohttp.ClientSession, change: dict[str, Any]) -> None:
        async with session.post(f"{self.simulator}/admin/config", json=change) as response:
            if response.status >= 300:
                raise ApplyError(f"simulator refused {change}: {response.status} {await response.text()}")

    async def _apply(self, session: aiohttp.ClientSession, plan: dict[str, Any]) -> None:
        plan_id = str(plan.get("plan_id"))
        try:
            current = await self._config(session)
            change = {a["knob"]: resolve(a, current.get(a["knob"]))
                      for a in plan.get("actions", []) if a.get("kind") == "engine_arg" and a["knob"] in current}
            if not change:
                log.info("plan has no engine change the simulator knows", extra={"plan_id": plan_id})
                return
            self._previous[plan_id] = {k: current[k] for k in change}
            await self._post(session, change)
        except (aiohttp.ClientError, TimeoutError, ApplyError, KeyError, ValueError) as exc:
            log.warning("could not apply plan", extra={"plan_id": plan_id, "error": str(exc)})
            return
        self.applied.append({"what": "applied", "plan_id": plan_id, "config": change})

    async def _restore(self, session: aiohttp.ClientSession, plan_id: str) -> None:
        previous = self._previous.get(plan_id)
        if not previous:
            log.info("rollback for a plan this controller did not apply", extra={"plan_id": plan_id})
            return
        try:
            await self._post(session, previous)
        except (aiohttp.ClientError, TimeoutError, ApplyError) as exc:
            log.warning("could not roll back", extra={"plan_id": plan_id, "error": str(exc)})
            return
        self.applied.append({"what": "restored", "plan_id": plan_id, "config": previous})
