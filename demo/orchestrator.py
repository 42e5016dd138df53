"""A local orchestrator sink for the demo and the tests: records everything the receiver sends.

It serves the orchestrator contract (``optiinfra.orchestrator.contract``) and records every request with its
``Idempotency-Key``. Switches make it answer 503 for a while (``POST /control/fail``), and with ``receiver_url``
it plays a deployment controller: after accepting a plan it reports the canary steps and completion back.

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
from dataclasses import asdict, dataclass, field
from typing import Any

from aiohttp import web

from optiinfra.cliutil import UsageError, parse_listen
from optiinfra.orchestrator.contract import ContractServer


@dataclass
class Recorded:
    at: float
    method: str
    path: str
    idempotency_key: str | None
    authorization: bool
    body: Any


@dataclass
class Sink(ContractServer):
    """What the sink has seen; tests read it directly, the demo through the GET endpoints."""

    step_seconds: float = 1.0
    steps: tuple[int, ...] = (10, 50, 100)
    requests: list[Recorded] = field(default_factory=list)
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

    async def read(self, request: web.Request) -> tuple[Any, web.Response | None]:
        """Records every request, then refuses it without the token or while told to fail."""
        raw = await request.read()
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        auth = request.headers.get("Authorization", "")
        self.requests.append(Recorded(time.time(), request.method, request.path,
                                      request.headers.get("Idempotency-Key"), bool(auth), body))
        self.changed.set()
        if self.token and auth != f"Bearer {self.token}":
            return body, web.json_response({"error": "unauthorized"}, status=401)
        if self.failing():
            return body, web.json_response({"error": "orchestrator unavailable (sink told to fail)"},
                                           status=self.fail_status)
        return body, None

    def accepted_plan(self, key: str, plan: dict[str, Any]) -> None:
        self.arrivals[key] = time.monotonic()
        self.changed.set()
        if self.receiver_url:
            self.spawn(self._report_progress(plan["plan_id"]))

    def accepted_rollback(self, plan_id: str) -> None:
        self.changed.set()

    async def _report_progress(self, plan_id: str) -> None:
        for step in self.steps:
            await asyncio.sleep(self.step_seconds)
            done = step >= 100
            if not await self.report(plan_id, "completed" if done else "rolling_out",
                                     "rolled out" if done else f"canary at {step}%", step=100 if done else step):
                return


SINK = web.AppKey("sink", Sink)


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
    return web.json_response({"requests": [asdict(r) for r in requests[since:]], "next": len(requests)})


async def list_agents(request: web.Request) -> web.Response:
    sink = request.app[SINK]
    return web.json_response({"agents": sink.agents, "heartbeats": sink.heartbeats})


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def create_app(sink: Sink | None = None) -> web.Application:
    app = web.Application()
    app[SINK] = sink = sink or Sink()
    sink.serve(app)
    r = app.router
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
    sink = Sink(token=args.token, receiver_url=args.report_to, receiver_token=args.report_token,
                step_seconds=args.step_seconds)
    web.run_app(create_app(sink), host=host, port=port, print=None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
