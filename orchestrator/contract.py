"""The orchestrator's side of docs/orchestrator-api.md, shared by the single-node orchestrator and the demo's
recording sink: bearer authorization, registration, heartbeats, plan and rollback intake idempotent on
``Idempotency-Key`` (a repeated key is answered 200 ``duplicate`` and never handed on twice), and status reports
back to the receiver.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import aiohttp
from aiohttp import web

from optiinfra.alertmanager.orchestrator import HEARTBEAT_PATH, PLANS_PATH, REGISTER_PATH, ROLLBACK_PATH, STATUS_PATH

log = logging.getLogger(__name__)

#: How long a status report is retried while the receiver has not recorded the push yet (409).
REPORT_RETRY_SECONDS = 15.0


@dataclass(kw_only=True)
class ContractServer:
    token: str | None = None
    """Bearer token the receiver must send (None: no authorization)."""
    receiver_url: str | None = None
    """The receiver's base URL, for status reports (None: none are sent)."""
    receiver_token: str | None = None
    plans: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Accepted plans by idempotency key, in arrival order."""
    rollbacks: dict[str, dict[str, Any]] = field(default_factory=dict)
    agents: dict[str, Any] = field(default_factory=dict)
    heartbeats: int = 0
    duplicates: int = 0
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _session: aiohttp.ClientSession | None = None

    def serve(self, app: web.Application) -> None:
        """Add the contract's endpoints to ``app``; its cleanup cancels what accepted requests started."""
        app.cleanup_ctx.append(self._lifecycle)
        for path, handle in ((REGISTER_PATH, self.register), (HEARTBEAT_PATH, self.heartbeat),
                             (PLANS_PATH, self.post_plan), (ROLLBACK_PATH, self.post_rollback)):
            app.router.add_post(path, partial(self._guarded, handle))

    async def read(self, request: web.Request) -> tuple[Any, web.Response | None]:
        """The JSON body, or the answer refusing the request (401 without the token, 400 for non-JSON)."""
        if self.token and request.headers.get("Authorization", "") != f"Bearer {self.token}":
            return None, web.json_response({"error": "unauthorized"}, status=401)
        raw = await request.read()
        try:
            return (json.loads(raw) if raw else {}), None
        except ValueError:
            return None, web.json_response({"error": "body must be JSON"}, status=400)

    async def _guarded(self, handle: Callable[[web.Request, Any], web.Response], request: web.Request) -> web.Response:
        body, refused = await self.read(request)
        return refused or handle(request, body)

    def accepted_plan(self, key: str, plan: dict[str, Any]) -> None:
        """Called once per idempotency key, after the plan is recorded."""

    def accepted_rollback(self, plan_id: str) -> None:
        """Called once per idempotency key, after the rollback is recorded."""

    def register(self, request: web.Request, body: Any) -> web.Response:
        if isinstance(body, dict):
            self.agents[str(body.get("agent_id", "?"))] = body
        return web.json_response({"registered": True})

    def heartbeat(self, request: web.Request, body: Any) -> web.Response:
        self.heartbeats += 1
        return web.json_response({"ok": True})

    def post_plan(self, request: web.Request, plan: Any) -> web.Response:
        if not isinstance(plan, dict) or not isinstance(plan.get("plan_id"), str) \
                or not isinstance(plan.get("actions"), list):
            return web.json_response({"error": "body must be a plan document (plan_id, actions)"}, status=400)
        key = request.headers.get("Idempotency-Key") or str(plan.get("idempotency_key") or plan["plan_id"])
        return self._once(self.plans, key, plan, lambda: self.accepted_plan(key, plan))

    def post_rollback(self, request: web.Request, body: Any) -> web.Response:
        plan_id = request.match_info["plan_id"]
        key = request.headers.get("Idempotency-Key") or f"rollback-{plan_id}"
        rollback = {"plan_id": plan_id, **(body if isinstance(body, dict) else {})}
        return self._once(self.rollbacks, key, rollback, lambda: self.accepted_rollback(plan_id))

    def _once(self, seen: dict[str, dict[str, Any]], key: str, record: dict[str, Any],
              accepted: Callable[[], None]) -> web.Response:
        """Record a push and hand it on, once per idempotency key: a repeat is answered 200 ``duplicate``."""
        if key in seen:
            self.duplicates += 1
            return web.json_response({"accepted": False, "duplicate": True})
        seen[key] = record
        accepted()
        return web.json_response({"accepted": True}, status=202)

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def report(self, plan_id: str, status: str, message: str, step: int | None = None) -> bool:
        """Tell the receiver a plan's status; retried while it answers 409 (it has not recorded the push yet)."""
        if not self.receiver_url or self._session is None:
            return False
        url = self.receiver_url.rstrip("/") + STATUS_PATH.format(plan_id=plan_id)
        body: dict[str, Any] = {"status": status, "message": message[:2000]}
        if step is not None:
            body["step"] = step
        headers = {"Authorization": f"Bearer {self.receiver_token}"} if self.receiver_token else {}
        deadline = time.monotonic() + REPORT_RETRY_SECONDS
        while True:
            try:
                async with self._session.post(url, json=body, headers=headers) as resp:
                    if resp.status < 300:
                        return True
                    if resp.status != 409 or time.monotonic() > deadline:
                        log.warning("receiver refused a status report",
                                    extra={"status": resp.status, "plan_id": plan_id, "report": status})
                        return False
            except (aiohttp.ClientError, TimeoutError) as exc:
                if time.monotonic() > deadline:
                    log.warning("cannot report status", extra={"plan_id": plan_id, "error": str(exc)})
                    return False
            await asyncio.sleep(0.5)

    async def _lifecycle(self, app: web.Application) -> AsyncIterator[None]:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        yield
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._session.close()
