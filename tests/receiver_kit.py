"""Helpers for the receiver tests: webhook payloads, a running pair (receiver app + local orchestrator sink) and
waiting on conditions. The fixtures (``postgres_server``, ``db_url``) are in ``pg.py``."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

from conftest import REPO

from optiinfra.alertmanager import store as st
from optiinfra.alertmanager.app import SERVICE, create_app
from optiinfra.alertmanager.service import ReceiverConfig, Service
from optiinfra.demo.orchestrator import Sink
from optiinfra.demo.orchestrator import create_app as create_sink_app

PLAN_SCHEMA = json.loads((REPO / "alertmanager" / "plan.schema.json").read_text())
TOKEN = "s3cret-token"


def alert(fingerprint: str, starts_at: str = "2026-11-22T03:00:00.000Z", *, status: str = "firing",
          bottleneck: str | None = "kv_cache_pressure", alertname: str = "LLMKVCachePressure",
          pod: str | None = "vllm-0", namespace: str = "ml", model: str = "llama", **labels: str) -> dict[str, Any]:
    lab = {"alertname": alertname, "severity": "warning", "component": "engine", "namespace": namespace,
           "engine": "vllm", "model": model, **labels}
    if pod:
        lab["pod"] = pod
    if bottleneck:
        lab["bottleneck"] = bottleneck
    return {"status": status, "labels": lab, "annotations": {"summary": "s", "runbook_url": "http://x"},
            "startsAt": starts_at, "endsAt": "0001-01-01T00:00:00Z" if status == "firing" else
            "2026-11-22T03:10:00.000Z", "generatorURL": "http://prom/graph", "fingerprint": fingerprint}


def slo_alert(fingerprint: str, *, pod: str | None = "vllm-0", starts_at: str = "2026-11-22T03:20:00.000Z",
              alertname: str = "LLMSLOBurnRateFast", namespace: str = "ml", model: str = "llama") -> dict[str, Any]:
    a = alert(fingerprint, starts_at, bottleneck="slo_burn", alertname=alertname, pod=pod, namespace=namespace,
              model=model, slo="ttft")
    a["labels"]["component"] = "slo"
    a["labels"]["severity"] = "critical"
    return a


def notification(*alerts: dict[str, Any], status: str | None = None) -> dict[str, Any]:
    return {
        "version": "4", "groupKey": '{}/{bottleneck=~".+"}:{alertname="X"}', "truncatedAlerts": 0,
        "status": status or ("firing" if any(a["status"] == "firing" for a in alerts) else "resolved"),
        "receiver": "optiinfra", "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {},
        "externalURL": "http://am:9093", "alerts": list(alerts),
    }


def fast_config(orchestrator_url: str, db: str, **overrides: Any) -> ReceiverConfig:
    base: dict[str, Any] = dict(orchestrator_url=orchestrator_url, db=db, poll_seconds=0.05,
                                backoff_base_seconds=0.05, backoff_max_seconds=0.2, heartbeat_seconds=0.5,
                                auto_approve_low_risk=True)
    base.update(overrides)
    return ReceiverConfig(**base)


async def counts(tx: st.Tx) -> dict[str, int]:
    """Row counts of every table (tests proving that rejected input changed nothing)."""
    out: dict[str, int] = {}
    for table in ("notifications", "episodes", "plans", "audit", "diagnoses", "outbox", "blocked_knobs"):
        row = await tx.fetchrow(f"SELECT COUNT(*) AS n FROM {table}")
        out[table] = int(row["n"]) if row else 0
    return out


class Pair:
    """A running receiver (aiohttp test client) and the orchestrator sink it pushes to."""

    def __init__(self, client: Any, sink: Sink, sink_url: str) -> None:
        self.client = client
        self.sink = sink
        self.sink_url = sink_url

    @property
    def service(self) -> Service:
        return self.client.server.app[SERVICE]

    async def post(self, body: Any, token: str | None = TOKEN) -> Any:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return await self.client.post("/api/v1/alerts", json=body, headers=headers)

    async def api(self, method: str, path: str, body: Any = None, token: str | None = TOKEN) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        resp = await self.client.request(method, path, json=body, headers=headers)
        return resp.status, await resp.json()

    async def plans(self, **query: str) -> list[dict[str, Any]]:
        status, body = await self.api("GET", "/api/v1/plans?" + "&".join(f"{k}={v}" for k, v in query.items()))
        assert status == 200
        return list(body["plans"])

    async def counts(self) -> dict[str, int]:
        return await self.service.store.run(counts)

    async def episodes(self) -> list[dict[str, Any]]:
        status, body = await self.api("GET", "/api/v1/episodes")
        assert status == 200
        return list(body["episodes"])

    async def idle(self) -> None:
        """Wait until no episode is waiting to be planned and the outbox is empty."""
        async def idle_in(tx: st.Tx) -> bool:
            pending = await tx.fetch("SELECT COUNT(*) AS n FROM episodes WHERE state IN ('new', 'claimed')")
            return int(pending[0]["n"]) == 0 and await st.outbox_depth(tx) == 0

        async def settled() -> bool:
            return await self.service.store.run(idle_in)
        assert await eventually(settled), "the receiver did not settle"


async def eventually(check: Callable[[], Any], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return True
        await asyncio.sleep(0.02)
    return False


async def start_pair(aiohttp_client: Any, aiohttp_server: Any, db: str, *, sink: Sink | None = None,
                     token: str | None = TOKEN, **overrides: Any) -> Pair:
    sink = sink or Sink()
    sink_server = await aiohttp_server(create_sink_app(sink))
    url = str(sink_server.make_url("")).rstrip("/")
    client = await aiohttp_client(create_app(fast_config(url, db, token=token, **overrides)))
    return Pair(client, sink, url)
