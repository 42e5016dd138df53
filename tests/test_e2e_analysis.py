"""Exactly once, for real: simulator -> exporter -> Prometheus (generated rules, demo profile) -> Alertmanager
(generated config, re-notifying every 2 s) -> receiver (a child process, killed and restarted) -> orchestrator.

- A helpful plan is analysed at each rollout step and after its bake time and ends ``verified``, exactly once,
  although Alertmanager re-sends its alert every 2 s, the webhook posts are replayed, and the receiver is killed
  (SIGKILL) and restarted twice: during the rollout and during the bake time.
- A harmful plan whose analysis is not due yet (long windows) is rolled back exactly once by the SLO burn alert
  it causes (``bottleneck="slo_burn"``), which fires in Prometheus and reaches the receiver through Alertmanager
  (re-sent, and replayed) after the receiver was killed and restarted during the bake time.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import signal
import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web
from conftest import require_binary
from receiver_kit import eventually

from optiinfra.demo import orchestrator
from optiinfra.demo.controller import EngineController
from optiinfra.demo.runner import (
    DEMO_ANALYSIS,
    SCENARIO_CONFIG,
    Timeline,
    _ports_and_token,
    _start_monitoring,
    _start_receiver,
)
from optiinfra.demo.stack import Child, Stack, optiinfra_command

pytestmark = pytest.mark.slow

REPEAT_INTERVAL = "2s"
TIMEOUT = 120.0


@pytest.fixture(autouse=True)
def _binaries() -> None:
    require_binary("prometheus")
    require_binary("prometheus-alertmanager")


@dataclass
class Loop:
    """One running stack; the receiver is a child process the test kills and restarts."""

    stack: Stack
    base: dict[str, str]
    ports: dict[str, int]
    token: str
    token_file: Path
    receiver_args: tuple[str, ...]
    sink: orchestrator.Sink
    receiver: Child
    say: Timeline
    out: io.StringIO
    session: aiohttp.ClientSession
    restarts: int = 0
    replays: dict[str, int] = field(default_factory=dict)

    @property
    def db(self) -> Path:
        return self.stack.workdir / "receiver.db"

    def log(self) -> str:
        tails = "\n".join(f"--- {c.name}\n{c.tail(30)}" for c in self.stack.children if c.name.startswith("rec"))
        return f"{self.out.getvalue()}\n{tails}"

    async def get(self, path: str) -> Any:
        with suppress(aiohttp.ClientError, TimeoutError, ValueError):
            async with self.session.get(self.base["receiver"] + path) as resp:
                if resp.status == 200:
                    return await (resp.json() if path != "/metrics" else resp.text())
        return None

    async def until(self, what: str, check: Callable[[], Any], timeout: float = TIMEOUT) -> Any:
        """Poll ``check`` (sync or async) until it returns something truthy; fail with the logs after ``timeout``."""
        found: Any = None

        async def probe() -> bool:
            nonlocal found
            self.stack.check_alive()
            found = check()
            if asyncio.iscoroutine(found):
                found = await found
            if not found:
                await asyncio.sleep(0.25)
            return bool(found)

        if not await eventually(probe, timeout):
            raise AssertionError(f"timed out waiting for {what}\n{self.log()}")
        return found

    async def status(self, plan_id: str) -> str | None:
        record = await self.get(f"/api/v1/plans/{plan_id}")
        return record["status"] if record else None

    async def restart_receiver(self) -> None:
        """Kill the receiver (SIGKILL: no clean shutdown) and start it again on the same store."""
        self.say("KILL", f"receiver (pid {self.receiver.process.pid})")
        os.killpg(self.receiver.process.pid, signal.SIGKILL)
        await self.receiver.process.wait()
        self.stack.children.remove(self.receiver)
        self.restarts += 1
        self.receiver = await _start_receiver(self.stack, self.ports, self.base, self.token_file, say=self.say,
                                              extra=self.receiver_args, name=f"receiver-{self.restarts}")

    def notifications(self, alertname: str) -> list[str]:
        """Webhook bodies Alertmanager posted that carry ``alertname``, as the receiver stored them."""
        with sqlite3.connect(f"file:{self.db}?mode=ro", uri=True) as db:
            bodies = [row[0] for row in db.execute("SELECT body FROM notifications ORDER BY id")]
        return [b for b in bodies if any(a["labels"].get("alertname") == alertname for a in json.loads(b)["alerts"])]

    async def replay(self, alertname: str, times: int = 2) -> None:
        """Post Alertmanager's own first notification of ``alertname`` again, verbatim."""
        body = self.notifications(alertname)[0]
        headers = {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"}
        for _ in range(times):
            async with self.session.post(self.base["receiver"] + "/api/v1/alerts", data=body,
                                         headers=headers) as resp:
                assert resp.status == 200, await resp.text()
        self.replays[alertname] = self.replays.get(alertname, 0) + times
        self.say("REPLAY", f"{alertname} x{times}")

    def deliveries(self, alertname: str) -> int:
        """How many deliveries of ``alertname``'s first episode the receiver counted (Alertmanager's and ours)."""
        with sqlite3.connect(f"file:{self.db}?mode=ro", uri=True) as db:
            row = db.execute("SELECT deliveries FROM episodes WHERE alertname = ? ORDER BY id LIMIT 1",
                             (alertname,)).fetchone()
        return int(row[0]) if row else 0


@asynccontextmanager
async def running(workdir: Path, scenario: str, receiver_args: tuple[str, ...]) -> AsyncIterator[Loop]:
    out = io.StringIO()
    say = Timeline(out)
    stack = Stack(workdir)
    ports, base, token, token_file = _ports_and_token(workdir, "sim")
    sink = orchestrator.Sink(receiver_url=base["receiver"], receiver_token=token, step_seconds=1.0)
    sink_runner = web.AppRunner(orchestrator.create_app(sink))
    controller = EngineController(base["sim"])
    applier: asyncio.Task[None] | None = None
    try:
        sim = await stack.spawn("simulator", optiinfra_command(
            "simulate", "--engine", "vllm", "--scenario", scenario, "--listen", f"127.0.0.1:{ports['sim']}",
            "--time-scale", "10", "--model", "meta-llama/Llama-3.1-8B-Instruct"))
        await stack.wait_ready(sim, f"{base['sim']}/health")
        await _start_monitoring(stack, ports, base, token_file, upstream=base["sim"], host=False, say=say,
                                config=SCENARIO_CONFIG.get(scenario), repeat_interval=REPEAT_INTERVAL)
        await sink_runner.setup()
        await web.TCPSite(sink_runner, "127.0.0.1", ports["orch"]).start()
        receiver = await _start_receiver(stack, ports, base, token_file, say=say, extra=receiver_args)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:

            async def apply() -> None:  # the deployment controller: carries out plans and rollbacks
                while True:
                    with suppress(aiohttp.ClientError, TimeoutError):
                        await controller.sync(session, sink)
                    await asyncio.sleep(0.3)

            applier = asyncio.create_task(apply())
            yield Loop(stack, base, ports, token, token_file, receiver_args, sink, receiver, say, out, session)
    finally:
        if applier is not None:
            applier.cancel()
            with suppress(asyncio.CancelledError):
                await applier
        await sink_runner.cleanup()
        await stack.close()


def _moves(record: dict[str, Any], status: str) -> int:
    """How often the plan moved into ``status`` (audit notes keep the status and are not moves)."""
    return sum(1 for a in record["audit"] if a["to_status"] == status and a["from_status"] != status)


def _outcomes(metrics: str, bottleneck: str) -> dict[str, float]:
    """``optiinfra_receiver_plan_outcomes_total`` by verdict for one bottleneck."""
    pattern = re.compile(r'^optiinfra_receiver_plan_outcomes_total\{bottleneck="' + bottleneck +
                         r'",verdict="(\w+)"\} (\S+)$', re.M)
    return {verdict: float(n) for verdict, n in pattern.findall(metrics)}


async def test_one_plan_one_analysis_per_step_one_verification_under_duplicates_and_restarts(tmp_path: Path) -> None:
    async with running(tmp_path, "kv_cache_pressure", DEMO_ANALYSIS) as loop:
        plan = await loop.until("the plan at the orchestrator", lambda: next(iter(loop.sink.plans.values()), None))
        plan_id = plan["plan_id"]
        await loop.replay("LLMKVCachePressure")
        await loop.restart_receiver()  # during the rollout: the orchestrator's step reports wait for it
        await loop.replay("LLMKVCachePressure")

        async def completed() -> bool:
            return await loop.status(plan_id) == "completed"
        await loop.until("the plan completed", completed)
        await loop.restart_receiver()  # during the bake time, its analyses pending
        await loop.replay("LLMKVCachePressure")

        async def verified() -> bool:
            return await loop.status(plan_id) == "verified"
        await loop.until("the plan verified", verified)
        await asyncio.sleep(5)  # Alertmanager keeps re-sending; one more replay after the fact
        await loop.replay("LLMKVCachePressure", times=1)
        await asyncio.sleep(1)
        record = await loop.get(f"/api/v1/plans/{plan_id}")
        plans = (await loop.get("/api/v1/plans"))["plans"]
        metrics = await loop.get("/metrics")
        deliveries = loop.deliveries("LLMKVCachePressure")
        log = loop.log()

    assert [p["plan_id"] for p in plans] == [plan_id], log
    assert [p["plan_id"] for p in loop.sink.plans.values()] == [plan_id] and loop.sink.rollbacks == {}, log
    assert record["status"] == "verified", log
    # Alertmanager re-sent the alert (repeat interval 2 s) beyond the 7 posts replayed here, and every delivery
    # landed on the one episode
    assert deliveries > 1 + loop.replays["LLMKVCachePressure"], log
    # one analysis per rollout step and one after the bake time, each recorded and acted on once
    phases = [a["phase"] for a in record["analyses"]]
    assert sorted(phases) == ["bake", "step-10", "step-50"], log
    assert all(a["verdict"] not in (None, "skipped") for a in record["analyses"]), record["analyses"]
    assert next(a for a in record["analyses"] if a["phase"] == "bake")["verdict"] == "improved", log
    noted = [a["detail"].get("phase") for a in record["audit"] if a["detail"].get("event") == "analysis"]
    assert sorted(noted) == ["bake", "step-10", "step-50"], record["audit"]
    assert _moves(record, "verified") == 1, record["audit"]
    # the outcome metric counts each analysis once, across the restarts (it is read from the store)
    verdicts = [a["verdict"] for a in record["analyses"]]
    assert _outcomes(metrics, "kv_cache_pressure") == {v: verdicts.count(v) for v in verdicts}, metrics


def _slo_config_file(workdir: Path, scenario: str) -> Path:
    """The scenario's config (the one its rules are generated from) as a file for ``--slo-config``."""
    path = workdir / "optiinfra.yaml"
    slos = [s.model_dump(mode="json", exclude_none=True) for s in SCENARIO_CONFIG[scenario].slos]
    path.write_text(yaml.safe_dump({"slos": slos}), encoding="utf-8")
    return path


async def test_an_slo_burn_through_prometheus_and_alertmanager_rolls_the_plan_back_once(tmp_path: Path) -> None:
    # windows long enough that no analysis is due before the burn: the SLO alert is what rolls the plan back
    args = ("--analysis-window", "600", "--bake-seconds", "600",
            "--slo-config", str(_slo_config_file(tmp_path, "slo_regression")))
    async with running(tmp_path, "slo_regression", args) as loop:
        plan = await loop.until("the plan at the orchestrator", lambda: next(iter(loop.sink.plans.values()), None))
        plan_id = plan["plan_id"]

        async def completed() -> bool:  # (or rolled back already, on a slow machine)
            return await loop.status(plan_id) in ("completed", "rolled_back")
        await loop.until("the plan completed", completed)
        await loop.restart_receiver()  # baking: the burn it causes arrives at a restarted receiver
        rollback = await loop.until("the rollback at the orchestrator", lambda: next(
            (r for r in loop.sink.rollbacks.values() if r["plan_id"] == plan_id), None))
        burn = rollback["reason"]["alertname"]
        await loop.replay(burn, times=3)
        await asyncio.sleep(5)  # Alertmanager keeps re-sending the burn alert
        record = await loop.get(f"/api/v1/plans/{plan_id}")
        episodes = (await loop.get("/api/v1/episodes"))["episodes"]
        deliveries = loop.deliveries(burn)
        log = loop.log()

    assert plan["bottleneck"] == "prefill_bound" and plan["rollback"]["except_slos"] == [], log
    reason = rollback["reason"]
    assert reason["kind"] == "slo_alert" and reason["labels"]["bottleneck"] == "slo_burn", rollback
    assert reason["labels"]["model"] == plan["target"]["model"], rollback
    assert record["status"] == "rolled_back", log
    assert _moves(record, "rolled_back") == 1, record["audit"]
    assert record["analyses"] == [] or all(a["verdict"] is None for a in record["analyses"]), record["analyses"]
    requests = [r for r in loop.sink.requests if r.path == f"/api/v1/plans/{plan_id}/rollback"]
    assert len(requests) == 1, log
    assert deliveries > 1 + loop.replays[burn], log  # Alertmanager re-sent the burn too
    rolled = [e for e in episodes if e["state"] == "rolled_back"]
    assert [e["plan_id"] for e in rolled] == [plan_id], episodes
