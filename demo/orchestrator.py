"""A local orchestrator sink for the demo and the tests: records everything the receiver sends.

It implements docs/orchestrator-api.md: ``POST /api/v1/agents/register``, ``POST /api/v1/agents/heartbeat``,
``POST /api/v1/plans`` and ``POST /api/v1/plans/{plan_id}/rollback``, each recorded with its ``Idempotency-Key``
and answered 2xx (a repeated key is answered 200 and counted as a duplicate, not accepted twice). Switches make
it answer 503 for a while (``POST /control/fail``), and with ``report_to`` it plays a deployment controller:
after accepting a plan it reports the canary steps and completion back to the receiver
(``POST {report_to}/api/v1/plans/{id}/status``).

Inspect: ``GET /api/v1/plans`` (accepted plans), ``GET /api/v1/rollbacks``, ``GET /api/v1/requests[?since=N]``
(every request), ``GET /api/v1/agents``.

Run: ``python -m optiinfra.demo.orchestrator --listen 127.0.0.1:9096 [--report-to http://127.0.0.1:9095]``.
"""

from __future__ import annotations

import argparse
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

from optiinfra.cliutil import UsageError, parse_listen

log = logging.getLogger(__name__)


@dataclass
class Recorded:
    at: float
    method: str
    path: str
    idempotency_key: str | None
    authorization: bool
    body: Any

    def document(self) -> dict[str, Any]:
        return {"at": self.at, "method": self.method, "path": self.path, "idempotency_key": self.idempotency_key,
                "authorization": self.authorization, "body": self.body}


@dataclass
class Sink:
    """What the sink has seen; tests read it directly, the demo through the GET endpoints."""

    token: str | None = None
    report_to: str | None = None
    report_token: str | None = None
    """Bearer token for the receiver's API when reporting progress."""
    step_seconds: float = 1.0
    steps: tuple[int, ...] = (10, 50, 100)
    requests: list[Recorded] = field(default_factory=list)
    plans: dict[str, Any] = field(default_factory=dict)
    """Accepted plans by idempotency key, in arrival order."""
    rollbacks: dict[str, Any] = field(default_factory=dict)
    duplicates: int = 0
    agents: dict[str, Any] = field(default_factory=dict)
    heartbeats: int = 0
    fail_until: float = 0.0
    fail_status: int = 503
    arrivals: dict[str, float] = field(default_factory=dict)
    """Monotonic arrival time of each accepted plan (benchmarks measure intake-to-orchestrator with it)."""
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def failing(self) -> bool:
        return time.monotonic() < self.fail_until

    def fail_for(self, seconds: float, status: int = 503) -> None:
        self.fail_until = time.monotonic() + seconds
        self.fail_status = status

    def recover(self) -> None:
        self.fail_until = 0.0

    async def wait_for(self, predicate: Any, timeout: float = 10.0) -> bool:
        """Wait until ``predicate(sink)`` is true (re-checked whenever a request is recorded)."""
        deadline = time.monotonic() + timeout
        while not predicate(self):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), min(remaining, 0.2))
        return True


SINK = web.AppKey("sink", Sink)
TASKS = web.AppKey[set[asyncio.Task[None]]]("tasks")
SESSION = web.AppKey("session", aiohttp.ClientSession)


async def _record(request: web.Request) -> tuple[Sink, Recorded, web.Response | None]:
    sink = request.app[SINK]
    raw = await request.read()
    try:
        body: Any = json.loads(raw) if raw else None
    except ValueError:
        body = raw.decode("utf-8", "replace")
    auth = request.headers.get("Authorization", "")
    rec = Recorded(time.time(), request.method, request.path, request.headers.get("Idempotency-Key"), bool(auth),
                   body)
    sink.requests.append(rec)
    sink.changed.set()
    if sink.token and auth != f"Bearer {sink.token}":
        return sink, rec, web.json_response({"error": "unauthorized"}, status=401)
    if sink.failing():
        return sink, rec, web.json_response({"error": "orchestrator unavailable (sink told to fail)"},
                                            status=sink.fail_status)
    return sink, rec, None


async def register(request: web.Request) -> web.Response:
    sink, rec, refused = await _record(request)
    if refused:
        return refused
    agent = rec.body if isinstance(rec.body, dict) else {}
    sink.agents[str(agent.get("agent_id", "?"))] = agent
    return web.json_response({"registered": True})


async def heartbeat(request: web.Request) -> web.Response:
    sink, _rec, refused = await _record(request)
    if refused:
        return refused
    sink.heartbeats += 1
    return web.json_response({"ok": True})


async def post_plan(request: web.Request) -> web.Response:
    sink, rec, refused = await _record(request)
    if refused:
        return refused
    if not isinstance(rec.body, dict) or "plan_id" not in rec.body:
        return web.json_response({"error": "body must be a plan document"}, status=400)
    key = rec.idempotency_key or str(rec.body.get("idempotency_key", ""))
    if key in sink.plans:
        sink.duplicates += 1
        return web.json_response({"accepted": False, "duplicate": True})
    sink.plans[key] = rec.body
    sink.arrivals[key] = time.monotonic()
    sink.changed.set()
    if sink.report_to:
        task = asyncio.create_task(_report_progress(request.app, str(rec.body["plan_id"])))
        request.app[TASKS].add(task)
        task.add_done_callback(request.app[TASKS].discard)
    return web.json_response({"accepted": True}, status=202)


async def post_rollback(request: web.Request) -> web.Response:
    sink, rec, refused = await _record(request)
    if refused:
        return refused
    key = rec.idempotency_key or request.match_info["plan_id"]
    if key in sink.rollbacks:
        sink.duplicates += 1
        return web.json_response({"accepted": False, "duplicate": True})
    sink.rollbacks[key] = {"plan_id": request.match_info["plan_id"], **(rec.body or {})}
    sink.changed.set()
    return web.json_response({"accepted": True}, status=202)


async def _report_progress(app: web.Application, plan_id: str) -> None:
    sink = app[SINK]
    url = f"{sink.report_to}/api/v1/plans/{plan_id}/status"
    headers = {"Authorization": f"Bearer {sink.report_token}"} if sink.report_token else {}
    for step in sink.steps:
        await asyncio.sleep(sink.step_seconds)
        body: dict[str, Any] = ({"status": "rolling_out", "step": step, "message": f"canary at {step}%"}
                                if step < 100 else {"status": "completed", "step": 100, "message": "rolled out"})
        try:
            async with app[SESSION].post(url, json=body, headers=headers) as resp:
                if resp.status >= 300:
                    log.info("receiver refused a progress report", extra={"status": resp.status, "plan_id": plan_id})
                    return
        except aiohttp.ClientError as exc:
            log.warning("cannot report progress", extra={"error": str(exc)})
            return


async def control_fail(request: web.Request) -> web.Response:
    body = await request.json() if request.can_read_body else {}
    request.app[SINK].fail_for(float(body.get("seconds", 3600)), int(body.get("status", 503)))
    return web.json_response({"failing": True})


async def control_recover(request: web.Request) -> web.Response:
    request.app[SINK].recover()
    return web.json_response({"failing": False})


async def list_plans(request: web.Request) -> web.Response:
    return web.json_response({"plans": list(request.app[SINK].plans.values()),
                              "duplicates": request.app[SINK].duplicates})


async def list_rollbacks(request: web.Request) -> web.Response:
    return web.json_response({"rollbacks": list(request.app[SINK].rollbacks.values())})


async def list_requests(request: web.Request) -> web.Response:
    """Every recorded request; ``?since=N`` returns only those after the first N (``next`` is the new N)."""
    requests = request.app[SINK].requests
    try:
        since = max(0, int(request.query.get("since", "0")))
    except ValueError:
        return web.json_response({"error": "since must be an integer"}, status=400)
    return web.json_response({"requests": [r.document() for r in requests[since:]], "next": len(requests)})


async def list_agents(request: web.Request) -> web.Response:
    sink = request.app[SINK]
    return web.json_response({"agents": sink.agents, "heartbeats": sink.heartbeats})


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def _lifecycle(app: web.Application) -> AsyncIterator[None]:
    app[SESSION] = aiohttp.ClientSession()
    tasks: set[asyncio.Task[None]] = set()
    app[TASKS] = tasks
    yield
    for task in list(tasks):
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await app[SESSION].close()


def create_app(sink: Sink | None = None) -> web.Application:
    app = web.Application()
    app[SINK] = sink or Sink()
    app.cleanup_ctx.append(_lifecycle)
    r = app.router
    r.add_post("/api/v1/agents/register", register)
    r.add_post("/api/v1/agents/heartbeat", heartbeat)
    r.add_post("/api/v1/plans", post_plan)
    r.add_post("/api/v1/plans/{plan_id}/rollback", post_rollback)
    r.add_get("/api/v1/plans", list_plans)
    r.add_get("/api/v1/rollbacks", list_rollbacks)
    r.add_get("/api/v1/requests", list_requests)
    r.add_get("/api/v1/agents", list_agents)
    r.add_post("/control/fail", control_fail)
    r.add_post("/control/recover", control_recover)
    r.add_get("/health", health)
    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="A local orchestrator sink that records what the receiver sends.")
    parser.add_argument("--listen", default="127.0.0.1:9096", help="host:port (default 127.0.0.1:9096)")
    parser.add_argument("--report-to", default=None, help="receiver URL to report canary progress to")
    parser.add_argument("--step-seconds", type=float, default=1.0, help="seconds between progress reports")
    parser.add_argument("--token", default=None, help="bearer token the receiver must send")
    parser.add_argument("--report-token", default=None, help="bearer token of the receiver's API")
    args = parser.parse_args(argv)
    try:
        host, port = parse_listen("--listen", args.listen, default_host="127.0.0.1")
    except UsageError as exc:
        parser.error(str(exc))
    logging.basicConfig(level=logging.INFO)
    sink = Sink(token=args.token, report_to=args.report_to, report_token=args.report_token,
                step_seconds=args.step_seconds)
    web.run_app(create_app(sink), host=host, port=port, print=None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
