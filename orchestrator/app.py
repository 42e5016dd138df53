"""The orchestrator contract, carried out on one engine process.

Served (what the receiver calls): ``POST /api/v1/agents/register``, ``POST /api/v1/agents/heartbeat``,
``POST /api/v1/plans`` and ``POST /api/v1/plans/{plan_id}/rollback``, idempotent on ``Idempotency-Key``
(a repeated key is answered 200 ``duplicate`` and never applied twice); ``GET /health``;
``GET /api/v1/engine`` (running argv, pid, history of applied changes).

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
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from optiinfra.demo.controller import ApplyError, resolve

from .engine import Engine, changed_flags, flag_value, with_flag

log = logging.getLogger(__name__)

#: How long a status report is retried while the receiver has not recorded the push yet (409).
REPORT_RETRY_SECONDS = 15.0


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
class Orchestrator:
    engine: Engine
    receiver_url: str | None = None
    receiver_token: str | None = None
    token: str | None = None
    """Bearer token the receiver must send (None: no authorization)."""
    plans: dict[str, dict[str, Any]] = field(default_factory=dict)
    rollbacks: dict[str, dict[str, Any]] = field(default_factory=dict)
    results: dict[str, str] = field(default_factory=dict)
    """plan_id -> completed / failed / rolled_back."""
    previous: dict[str, tuple[list[str], dict[str, str]]] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    agents: dict[str, Any] = field(default_factory=dict)
    heartbeats: int = 0
    duplicates: int = 0
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _session: aiohttp.ClientSession | None = None

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

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
            await self.report(plan_id, "rolling_out", f"restarting the engine with {changes or 'the same flags'}",
                              step=0)
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

    async def report(self, plan_id: str, status: str, message: str, step: int | None = None) -> None:
        """Tell the receiver; retried while it answers 409 (it has not recorded the push yet)."""
        if not self.receiver_url or self._session is None:
            return
        url = f"{self.receiver_url.rstrip('/')}/api/v1/plans/{plan_id}/status"
        body: dict[str, Any] = {"status": status, "message": message[:2000]}
        if step is not None:
            body["step"] = step
        headers = {"Authorization": f"Bearer {self.receiver_token}"} if self.receiver_token else {}
        deadline = time.monotonic() + REPORT_RETRY_SECONDS
        while True:
            try:
                async with self._session.post(url, json=body, headers=headers) as resp:
                    if resp.status < 300:
                        return
                    if resp.status != 409 or time.monotonic() > deadline:
                        log.warning("receiver refused a status report",
                                    extra={"status": resp.status, "plan_id": plan_id, "report": status})
                        return
            except (aiohttp.ClientError, TimeoutError) as exc:
                if time.monotonic() > deadline:
                    log.warning("cannot report status", extra={"plan_id": plan_id, "error": str(exc)})
                    return
            await asyncio.sleep(0.5)


ORCH = web.AppKey("orchestrator", Orchestrator)


async def _body(request: web.Request) -> tuple[Orchestrator, Any, web.Response | None]:
    orch = request.app[ORCH]
    if orch.token and request.headers.get("Authorization", "") != f"Bearer {orch.token}":
        return orch, None, web.json_response({"error": "unauthorized"}, status=401)
    raw = await request.read()
    try:
        return orch, (json.loads(raw) if raw else {}), None
    except ValueError:
        return orch, None, web.json_response({"error": "body must be JSON"}, status=400)


async def register(request: web.Request) -> web.Response:
    orch, body, refused = await _body(request)
    if refused:
        return refused
    if isinstance(body, dict):
        orch.agents[str(body.get("agent_id", "?"))] = body
    return web.json_response({"registered": True})


async def heartbeat(request: web.Request) -> web.Response:
    orch, _, refused = await _body(request)
    if refused:
        return refused
    orch.heartbeats += 1
    return web.json_response({"ok": True})


async def post_plan(request: web.Request) -> web.Response:
    orch, plan, refused = await _body(request)
    if refused:
        return refused
    if not isinstance(plan, dict) or not isinstance(plan.get("plan_id"), str) \
            or not isinstance(plan.get("actions"), list):
        return web.json_response({"error": "body must be a plan document (plan_id, actions)"}, status=400)
    key = request.headers.get("Idempotency-Key") or str(plan.get("idempotency_key") or plan["plan_id"])
    if key in orch.plans:
        orch.duplicates += 1
        return web.json_response({"accepted": False, "duplicate": True})
    orch.plans[key] = plan
    orch._spawn(orch.apply(plan))
    return web.json_response({"accepted": True}, status=202)


async def post_rollback(request: web.Request) -> web.Response:
    orch, body, refused = await _body(request)
    if refused:
        return refused
    plan_id = request.match_info["plan_id"]
    key = request.headers.get("Idempotency-Key") or f"rollback-{plan_id}"
    if key in orch.rollbacks:
        orch.duplicates += 1
        return web.json_response({"accepted": False, "duplicate": True})
    orch.rollbacks[key] = {"plan_id": plan_id, **(body if isinstance(body, dict) else {})}
    orch._spawn(orch.roll_back(plan_id))
    return web.json_response({"accepted": True}, status=202)


async def engine_state(request: web.Request) -> web.Response:
    orch = request.app[ORCH]
    return web.json_response({"argv": orch.engine.argv, "pid": orch.engine.pid, "starts": orch.engine.starts,
                              "results": orch.results, "history": orch.history, "duplicates": orch.duplicates,
                              "agents": orch.agents, "heartbeats": orch.heartbeats})


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok", "engine_pid": request.app[ORCH].engine.pid})


async def _lifecycle(app: web.Application) -> AsyncIterator[None]:
    orch = app[ORCH]
    orch._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
    await orch.engine.start()
    yield
    for task in list(orch._tasks):
        task.cancel()
    await asyncio.gather(*orch._tasks, return_exceptions=True)
    await orch.engine.close()
    await orch._session.close()


def create_app(orch: Orchestrator) -> web.Application:
    app = web.Application()
    app[ORCH] = orch
    app.cleanup_ctx.append(_lifecycle)
    r = app.router
    r.add_post("/api/v1/agents/register", register)
    r.add_post("/api/v1/agents/heartbeat", heartbeat)
    r.add_post("/api/v1/plans", post_plan)
    r.add_post("/api/v1/plans/{plan_id}/rollback", post_rollback)
    r.add_get("/api/v1/engine", engine_state)
    r.add_get("/health", health)
    return app
