"""A minimal orchestrator written only from docs/orchestrator-api.md and alertmanager/orchestrator.openapi.json,
driven by a real receiver (``optiinfra receiver`` in its own process): registration, heartbeats, one plan from
the Alertmanager webhook to status ``completed``.

The orchestrator validates every request it gets against the OpenAPI document (body schema, Idempotency-Key,
bearer token), applies each Idempotency-Key once, and reports the rollout steps to the receiver's ``endpoint``
from the registration, validating the receiver's answers against the document's webhook.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import jsonschema
from aiohttp import web
from conftest import REPO, free_port

OPENAPI = json.loads((REPO / "alertmanager" / "orchestrator.openapi.json").read_text(encoding="utf-8"))
ORCHESTRATOR_TOKEN = "orchestrator-secret"
RECEIVER_TOKEN = "receiver-secret"


def _validator(schema: dict[str, Any]) -> jsonschema.Draft202012Validator:
    """A validator for one schema of the document, resolving its ``#/components/schemas/...`` references."""
    return jsonschema.Draft202012Validator({**schema, "components": OPENAPI["components"]})


def _body_validator(operation: dict[str, Any]) -> jsonschema.Draft202012Validator:
    return _validator(operation["requestBody"]["content"]["application/json"]["schema"])


class Orchestrator:
    """Serves the document's ``paths``; calls its ``webhooks`` back."""

    def __init__(self) -> None:
        self.violations: list[str] = []
        self.agents: dict[str, dict[str, Any]] = {}
        self.heartbeats = 0
        self.applied: dict[str, dict[str, Any]] = {}
        self.repeats = 0
        self.reports: list[tuple[dict[str, Any], int]] = []
        self.tasks: set[asyncio.Task[None]] = set()
        self.session: aiohttp.ClientSession | None = None
        webhook = OPENAPI["webhooks"]["planStatus"]["post"]
        self.status_url: str = webhook["x-url"]
        self.status_answer = _validator(webhook["responses"]["200"]["content"]["application/json"]["schema"])

    def route(self, path: str) -> Callable[[web.Request], Awaitable[web.Response]]:
        operation = OPENAPI["paths"][path]["post"]
        validator = _body_validator(operation)
        headers = [p["name"] for p in operation.get("parameters", []) if p["in"] == "header" and p["required"]]

        async def handle(request: web.Request) -> web.Response:
            if request.headers.get("Authorization") != f"Bearer {ORCHESTRATOR_TOKEN}":
                self.violations.append(f"{path}: no bearer token")
                return web.json_response({"error": "unauthorized"}, status=401)
            missing = [h for h in headers if not request.headers.get(h)]
            body = await request.json()
            errors = [e.message for e in validator.iter_errors(body)]
            if missing or errors:
                self.violations.append(f"{path}: missing headers {missing}, body errors {errors}")
                return web.json_response({"error": "invalid request"}, status=400)
            return await self.apply(path, request, body)

        return handle

    async def apply(self, path: str, request: web.Request, body: dict[str, Any]) -> web.Response:
        if path.endswith("/register"):
            self.agents[body["agent_id"]] = body
            return web.json_response({"registered": True})
        if path.endswith("/heartbeat"):
            self.heartbeats += 1
            return web.json_response({"ok": True})
        key = request.headers["Idempotency-Key"]
        if key in self.applied:
            self.repeats += 1
            return web.json_response({"duplicate": True}, status=409)
        self.applied[key] = body
        if path == "/api/v1/plans":
            task = asyncio.create_task(self.roll_out(body))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        return web.json_response({"accepted": True}, status=202)

    async def roll_out(self, plan: dict[str, Any]) -> None:
        """Report each rollout step, then completion, to the receiver that registered."""
        assert self.session is not None
        (agent,) = self.agents.values()
        url = self.status_url.replace("{endpoint}", agent["endpoint"]).replace("{plan_id}", plan["plan_id"])
        for step in plan["rollout"]["steps"]:
            report = ({"status": "completed", "step": 100, "message": "rolled out"} if step == 100 else
                      {"status": "rolling_out", "step": step, "message": f"canary at {step}%"})
            for _attempt in range(50):  # 409 before the receiver recorded the push: send it again a moment later
                async with self.session.post(url, json=report,
                                             headers={"Authorization": f"Bearer {RECEIVER_TOKEN}"}) as resp:
                    answer = await resp.json()
                if resp.status != 409:
                    break
                await asyncio.sleep(0.1)
            self.reports.append((report, resp.status))
            if resp.status == 200:
                self.violations += [f"status answer: {e.message}" for e in self.status_answer.iter_errors(answer)]

    def app(self) -> web.Application:
        app = web.Application()
        for path in OPENAPI["paths"]:
            app.router.add_post(path, self.route(path))
        return app


def _notification(fingerprint: str) -> dict[str, Any]:
    """An Alertmanager webhook (version 4) with one firing KV-cache-pressure alert on a vLLM pod."""
    labels = {"alertname": "LLMKVCachePressure", "bottleneck": "kv_cache_pressure", "severity": "warning",
              "component": "engine", "namespace": "ml", "pod": "vllm-0", "engine": "vllm", "model": "llama",
              "gpu_memory_utilization": "0.9"}
    alert = {"status": "firing", "labels": labels, "annotations": {"summary": "KV cache full"},
             "startsAt": "2026-11-22T03:00:00.000Z", "endsAt": "0001-01-01T00:00:00Z",
             "generatorURL": "http://prometheus/graph", "fingerprint": fingerprint}
    return {"version": "4", "groupKey": "{}:{alertname=\"LLMKVCachePressure\"}", "truncatedAlerts": 0,
            "status": "firing", "receiver": "optiinfra", "groupLabels": {}, "commonLabels": labels,
            "commonAnnotations": {}, "externalURL": "http://alertmanager:9093", "alerts": [alert]}


async def _until(check: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


async def test_minimal_orchestrator_drives_a_plan_to_completed(aiohttp_server: Any, tmp_path: Path) -> None:
    orchestrator = Orchestrator()
    server = await aiohttp_server(orchestrator.app())
    port = free_port()
    receiver = f"http://127.0.0.1:{port}"
    (tmp_path / "token").write_text(RECEIVER_TOKEN + "\n")
    (tmp_path / "orchestrator-token").write_text(ORCHESTRATOR_TOKEN + "\n")
    log = (tmp_path / "receiver.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "optiinfra.cli", "--log-level", "warning", "receiver",
         "--orchestrator-url", str(server.make_url("")).rstrip("/"), "--listen", f"127.0.0.1:{port}",
         "--advertise-url", receiver, "--db", f"sqlite:///{tmp_path}/receiver.db", "--auto-approve-low-risk",
         "--heartbeat-seconds", "0.5", "--token-file", str(tmp_path / "token"),
         "--orchestrator-token-file", str(tmp_path / "orchestrator-token")],
        env=dict(os.environ), stdout=subprocess.DEVNULL, stderr=log)
    auth = {"Authorization": f"Bearer {RECEIVER_TOKEN}"}
    try:
        async with aiohttp.ClientSession() as session:
            orchestrator.session = session

            async def up() -> bool:
                assert proc.poll() is None, (tmp_path / "receiver.log").read_text(errors="replace")
                try:
                    async with session.get(f"{receiver}/health") as resp:
                        return resp.status == 200
                except aiohttp.ClientError:
                    return False

            await _until(up, 60, "the receiver to serve")
            async with session.post(f"{receiver}/api/v1/alerts", json=_notification("3be1f0a27c1d"),
                                    headers=auth) as resp:
                assert resp.status == 200, await resp.text()

            async def heard() -> bool:
                return bool(orchestrator.agents) and orchestrator.heartbeats >= 1 and bool(orchestrator.applied)

            await _until(heard, 60, "registration, a heartbeat and the plan")
            (plan,) = orchestrator.applied.values()

            async def completed() -> bool:
                async with session.get(f"{receiver}/api/v1/plans/{plan['plan_id']}") as resp:
                    return resp.status == 200 and (await resp.json())["status"] == "completed"

            await _until(completed, 60, "the plan to be completed")
            for task in list(orchestrator.tasks):
                await task
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
    assert orchestrator.violations == []
    (agent,) = orchestrator.agents.values()
    assert agent["endpoint"] == receiver and "plans" in agent["capabilities"]
    assert plan["bottleneck"] == "kv_cache_pressure" and plan["status"] == "approved"
    action = plan["actions"][0]
    assert (action["name"], action["from"], action["to"]) == ("--gpu-memory-utilization", 0.9, 0.95)
    assert [(r["status"], r["step"], code) for r, code in orchestrator.reports] == [
        ("rolling_out", 10, 200), ("rolling_out", 50, 200), ("completed", 100, 200)]
