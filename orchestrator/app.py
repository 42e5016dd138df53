"""The orchestrator contract, carried out on one engine process.

Served: the orchestrator contract (``contract.py``), ``GET /health`` and ``GET /api/v1/engine`` (running argv,
pid, history of applied changes).

A plan's ``engine_arg`` actions change launch flags (relative targets resolve against the running value and the
action's bounds), ``engine_env`` actions environment variables, ``restart`` restarts as is. The engine is
restarted with the new flags and must answer ``/health`` within the start timeout; otherwise it is restarted with
the previous flags and the plan is reported ``failed``. Progress goes back to the receiver on
``POST {receiver}/api/v1/plans/{id}/status`` (``rolling_out``, then ``completed`` or ``failed``). A rollback
restarts the engine with the flags the plan replaced. Plans and rollbacks are carried out one at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from optiinfra.demo.controller import ApplyError, resolve

from .contract import ContractServer
from .engine import Engine, changed_flags, flag_value, with_flag

log = logging.getLogger(__name__)


def _number(text: str | None) -> int | float | str | None:
    if text is None:
        return None
    for convert in (int, float):
        with contextlib.suppress(ValueError):
            return convert(text)
    return text


def planned_argv(argv: list[str], env: dict[str, str], plan: dict[str, Any]) -> tuple[list[str], dict[str, str]]:
    """The argv and environment a plan asks for; ApplyError when an action cannot be carried out here."""
    new_argv, new_env = list(argv), dict(env)
    for action in plan.get("actions", []):
        kind, name = action.get("kind"), str(action.get("name", ""))
        if kind == "engine_arg":
            if not name.startswith("--"):
                raise ApplyError(f"engine_arg {name!r} is not a --flag")
            new_argv = with_flag(new_argv, name, resolve(action, _number(flag_value(new_argv, name))))
        elif kind == "engine_env":
            new_env[name] = str(resolve(action, _number(new_env.get(name))))
        elif kind != "restart":
            raise ApplyError(f"a single-node orchestrator cannot carry out {kind} ({name})")
    return new_argv, new_env


@dataclass
class Orchestrator(ContractServer):
    engine: Engine
    results: dict[str, str] = field(default_factory=dict)
    """plan_id -> completed / failed / rolled_back."""
    previous: dict[str, tuple[list[str], dict[str, str]]] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def accepted_plan(self, key: str, plan: dict[str, Any]) -> None:
        self.spawn(self.apply(plan))

    def accepted_rollback(self, plan_id: str) -> None:
        self.spawn(self.roll_back(plan_id))

    def _record(self, what: str, plan_id: str | None, before: list[str], after: list[str], **extra: Any) -> None:
        entry = {"at": time.time(), "what": what, "plan_id": plan_id, "argv": after,
                 "changes": {f: list(pair) for f, pair in changed_flags(before, after).items()}, **extra}
        self.history.append(entry)
        log.info("engine %s", what, extra={"plan_id": plan_id, "changes": entry["changes"]})

    async def apply(self, plan: dict[str, Any]) -> None:
        plan_id = str(plan["plan_id"])
        async with self._lock:
            before_argv, before_env = list(self.engine.argv), dict(self.engine.env)
            try:
                argv, env = planned_argv(before_argv, before_env, plan)
            except (ApplyError, ValueError) as exc:
                self.results[plan_id] = "failed"
                await self.report(plan_id, "failed", f"cannot apply: {exc}")
                return
            changes = changed_flags(before_argv, argv)
            # no step: one engine has no canary, and the receiver analyses each reported step one window later
            # (a "step 0" judged the restart's own downtime as the plan's harm and rolled it back)
            await self.report(plan_id, "rolling_out", f"restarting the engine with {changes or 'the same flags'}")
            self.engine.env = env
            if await self.engine.restart(argv):
                self.previous[plan_id] = (before_argv, before_env)
                self.results[plan_id] = "completed"
                self._record("applied", plan_id, before_argv, argv)
                await self.report(plan_id, "completed", f"engine healthy with {changes}", step=100)
                return
            self.engine.env = before_env
            reverted = await self.engine.restart(before_argv)
            self.results[plan_id] = "failed"
            self._record("reverted", plan_id, argv, before_argv, healthy=reverted)
            await self.report(plan_id, "failed", f"engine not healthy within {self.engine.start_timeout:.0f}s "
                                                 f"with {changes}; restarted with the previous flags "
                                                 f"({'healthy' if reverted else 'NOT healthy'})")

    async def roll_back(self, plan_id: str) -> None:
        async with self._lock:
            previous = self.previous.pop(plan_id, None)
            if previous is None:
                log.info("rollback of a plan this orchestrator did not apply", extra={"plan_id": plan_id})
                return
            before = list(self.engine.argv)
            self.engine.env = previous[1]
            healthy = await self.engine.restart(previous[0])
            self.results[plan_id] = "rolled_back"
            self._record("restored", plan_id, before, previous[0], healthy=healthy)


ORCH = web.AppKey("orchestrator", Orchestrator)


async def engine_state(request: web.Request) -> web.Response:
    orch = request.app[ORCH]
    return web.json_response({"argv": orch.engine.argv, "pid": orch.engine.pid, "starts": orch.engine.starts,
                              "results": orch.results, "history": orch.history, "duplicates": orch.duplicates,
                              "agents": orch.agents, "heartbeats": orch.heartbeats})


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok", "engine_pid": request.app[ORCH].engine.pid})


async def _engine(app: web.Application) -> AsyncIterator[None]:
    engine = app[ORCH].engine
    await engine.start()
    yield
    await engine.close()


def create_app(orch: Orchestrator) -> web.Application:
    app = web.Application()
    app[ORCH] = orch
    app.cleanup_ctx.append(_engine)
    orch.serve(app)
    app.router.add_get("/api/v1/engine", engine_state)
    app.router.add_get("/health", health)
    return app
