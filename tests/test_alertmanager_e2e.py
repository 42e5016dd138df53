"""End to end: a real Alertmanager with the generated config delivers to the receiver, which pushes a valid plan
to the local orchestrator sink and rolls it back on an SLO alert; a receiver killed with SIGKILL before its push
pushes after a restart."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import jsonschema
import pytest
from conftest import free_port, require_binary
from receiver_kit import PLAN_SCHEMA, TOKEN, alert, eventually, notification, start_pair

from optiinfra.alertmanager import store as st
from optiinfra.demo.orchestrator import Sink
from optiinfra.demo.orchestrator import create_app as create_sink_app
from optiinfra.demo.stack import Stack, prometheus_config, start_alertmanager, start_prometheus
from optiinfra.rules import amconfig

pytestmark = pytest.mark.slow
pytest_plugins = ("pg",)


async def _wait_http(url: str, timeout: float = 60.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    async with aiohttp.ClientSession() as session:
        async def ready() -> bool:
            if proc is not None and proc.poll() is not None:
                raise AssertionError(f"process exited with {proc.returncode}")
            try:
                async with session.get(url) as resp:
                    return resp.status == 200
            except aiohttp.ClientError:
                return False
        assert await eventually(ready, timeout), f"{url} did not come up"


def _now(offset: float = 0.0) -> str:
    return (datetime.now(UTC) + timedelta(seconds=offset)).isoformat().replace("+00:00", "Z")


async def _start_alertmanager(stack: Stack, name: str, receiver_url: str, token_file: Path) -> str:
    """A real Alertmanager with the generated config (fast grouping) routing to ``receiver_url``; its URL."""
    require_binary("prometheus-alertmanager")
    config = amconfig.render(amconfig.Options(receiver_url=receiver_url, credentials_file=str(token_file),
                                              group_wait="1s", group_interval="1s", repeat_interval="1h"))
    port = free_port()
    await start_alertmanager(stack, config, port, name=name)
    return f"http://127.0.0.1:{port}"


async def test_two_alertmanagers_two_replicas_one_postgres_one_plan(aiohttp_client, aiohttp_server, tmp_path,
                                                                    postgres_server):
    """A partitioned HA pair: both Alertmanagers notify, each a different replica; one plan, one push."""
    dsn = postgres_server.new_database()
    sink = Sink()
    replicas = [await start_pair(aiohttp_client, aiohttp_server, dsn, sink=sink) for _ in range(2)]
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    stack = Stack(tmp_path)
    try:
        ams = [await _start_alertmanager(stack, f"am{i}", str(r.client.make_url("")).rstrip("/"), token_file)
               for i, r in enumerate(replicas)]
        labels = {"alertname": "LLMKVCachePressure", "bottleneck": "kv_cache_pressure", "severity": "warning",
                  "component": "engine", "namespace": "ml", "pod": "vllm-ha", "engine": "vllm", "model": "llama"}
        starts = _now()
        async with aiohttp.ClientSession() as session:
            for url in ams:  # Prometheus sends every alert to every Alertmanager
                async with session.post(f"{url}/api/v2/alerts", json=[{"labels": labels, "startsAt": starts}]) as r:
                    assert r.status == 200

        async def both_delivered() -> bool:
            episodes = await replicas[0].episodes()
            return len(episodes) == 1 and episodes[0]["deliveries"] >= 2
        assert await eventually(both_delivered, timeout=20)
        assert await sink.wait_for(lambda s: len(s.plans) == 1)
        for replica in replicas:
            await replica.idle()
        received = [r.service.metrics.registry.get_sample_value("optiinfra_receiver_notifications_total",
                                                                {"result": "accepted"}) for r in replicas]
        assert all(n and n >= 1 for n in received), received
        assert len(sink.plans) == 1 and sink.duplicates == 0
        assert len([r for r in sink.requests if r.path == "/api/v1/plans"]) == 1
        assert [p["status"] for p in await replicas[1].plans()] == ["pushed"]
    finally:
        await stack.close()


async def test_real_alertmanager_delivers_plan_and_rollback(aiohttp_client, aiohttp_server, tmp_path):
    pair = await start_pair(aiohttp_client, aiohttp_server, f"sqlite:///{tmp_path}/r.db")
    receiver_url = str(pair.client.make_url("")).rstrip("/")
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    stack = Stack(tmp_path)
    try:
        am = await _start_alertmanager(stack, "am", receiver_url, token_file)
        labels = {"alertname": "LLMKVCachePressure", "bottleneck": "kv_cache_pressure", "severity": "warning",
                  "component": "engine", "namespace": "ml", "pod": "vllm-0", "engine": "vllm", "model": "llama",
                  "gpu_memory_utilization": "0.9"}
        other = {**labels, "alertname": "Watchdog", "bottleneck": "", "pod": "x"}
        async with aiohttp.ClientSession() as session:
            async with session.post(f"{am}/api/v2/alerts", json=[
                    {"labels": labels, "annotations": {"summary": "KV full"}, "startsAt": _now(),
                     "generatorURL": "http://prometheus/graph"},
                    {"labels": {k: v for k, v in other.items() if v}, "startsAt": _now()}]) as resp:
                assert resp.status == 200, await resp.text()
            assert await pair.sink.wait_for(lambda s: len(s.plans) == 1, timeout=20)
            document = next(iter(pair.sink.plans.values()))
            jsonschema.validate(document, PLAN_SCHEMA)
            assert document["bottleneck"] == "kv_cache_pressure"
            assert document["evidence"]["alerts"][0]["labels"]["pod"] == "vllm-0"
            action = document["actions"][0]
            assert (action["name"], action["from"], action["to"]) == ("--gpu-memory-utilization", 0.9, 0.95)
            await pair.idle()
            slo = {"alertname": "LLMSLOBurnRateFast", "bottleneck": "slo_burn", "component": "slo",
                   "severity": "critical", "slo": "ttft", "namespace": "ml", "pod": "vllm-0", "model": "llama"}
            async with session.post(f"{am}/api/v2/alerts", json=[{"labels": slo, "startsAt": _now()}]) as resp:
                assert resp.status == 200
            assert await pair.sink.wait_for(lambda s: len(s.rollbacks) == 1, timeout=20)
            async with session.post(f"{am}/api/v2/alerts", json=[
                    {"labels": labels, "startsAt": _now(-60), "endsAt": _now(-1)}]) as resp:
                assert resp.status == 200

            async def resolved() -> bool:
                return any(e["status"] == "resolved" and e["alertname"] == "LLMKVCachePressure"
                           for e in await pair.episodes())
            assert await eventually(resolved, timeout=20)
        plans = await pair.plans()
        assert [p["status"] for p in plans] == ["rolled_back"]
        assert {e["alertname"] for e in await pair.episodes()} == {"LLMKVCachePressure", "LLMSLOBurnRateFast"}
        assert len(pair.sink.plans) == 1 and pair.sink.duplicates == 0
    finally:
        await stack.close()


def _start_receiver(port: int, sink_url: str, db: str, token_file: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "OPTIINFRA_TOKEN_FILE": str(token_file)}
    return subprocess.Popen(
        [sys.executable, "-m", "optiinfra.cli", "--log-level", "warning", "receiver", "--orchestrator-url",
         sink_url, "--listen", f"127.0.0.1:{port}", "--db", db, "--auto-approve-low-risk"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def _outbox_error(db: str) -> bool:
    store = st.open_store(db)
    await store.open()
    try:
        rows = await store.run(st.outbox_rows)
    finally:
        await store.close()
    return bool(rows) and bool(rows[0].last_error)


async def test_sigkill_between_persisting_and_pushing(aiohttp_server, tmp_path):
    sink = Sink()
    sink.fail_for(3600)
    sink_server = await aiohttp_server(create_sink_app(sink))
    sink_url = str(sink_server.make_url("")).rstrip("/")
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    db = f"sqlite:///{tmp_path}/receiver.db"
    port = free_port()
    receiver = f"http://127.0.0.1:{port}"
    proc = _start_receiver(port, sink_url, db, token_file)
    try:
        await _wait_http(f"{receiver}/health", proc=proc)
        async with aiohttp.ClientSession() as session, session.post(
                f"{receiver}/api/v1/alerts", json=notification(alert("fp-kill")),
                headers={"Authorization": f"Bearer {TOKEN}"}) as resp:
            assert resp.status == 200
        assert await eventually(lambda: any(r.path == "/api/v1/plans" for r in sink.requests), timeout=20)
        # kill once the failed attempt is recorded: the plan is persisted, its push pending in the outbox
        assert await eventually(lambda: _outbox_error(db), timeout=20)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        store = st.open_store(db)
        await store.open()
        try:
            rows = await store.run(st.outbox_rows)
            plans = await store.run(st.list_plans)
        finally:
            await store.close()
        assert [(r.kind, r.state) for r in rows] == [("plan", "pending")]
        assert [p.status for p in plans] == ["approved"]
        assert sink.plans == {}
        sink.recover()
        proc = _start_receiver(port, sink_url, db, token_file)
        await _wait_http(f"{receiver}/health", proc=proc)
        assert await sink.wait_for(lambda s: len(s.plans) == 1, timeout=60)
        assert next(iter(sink.plans)) == rows[0].key

        async def pushed() -> bool:
            async with aiohttp.ClientSession() as session, session.get(f"{receiver}/api/v1/plans") as resp:
                body = await resp.json()
            return [p["status"] for p in body["plans"]] == ["pushed"]
        assert await eventually(pushed, timeout=10)
        await asyncio.sleep(0.3)
        assert len(sink.plans) == 1 and sink.duplicates == 0
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=10)


async def test_current_config_comes_from_prometheus(aiohttp_client, aiohttp_server, tmp_path):
    require_binary("prometheus")
    from aiohttp import web

    async def metrics(request):
        return web.Response(text=(
            "# TYPE llm_engine_info gauge\n"
            'llm_engine_info{namespace="ml",pod="vllm-0",engine="vllm",model="llama",'
            'gpu_memory_utilization="0.85",max_num_seqs="256",max_num_batched_tokens="8192"} 1\n'))
    app = web.Application()
    app.router.add_get("/metrics", metrics)
    engine = await aiohttp_server(app)
    stack = Stack(tmp_path)
    port = free_port()
    prom = f"http://127.0.0.1:{port}"
    try:
        await start_prometheus(stack, prometheus_config([(f"127.0.0.1:{engine.port}", {})], [], None), port)
        async with aiohttp.ClientSession() as session:
            async def scraped() -> bool:
                async with session.get(f"{prom}/api/v1/query", params={"query": "llm_engine_info"}) as resp:
                    return bool((await resp.json())["data"]["result"])
            assert await eventually(scraped, timeout=20)
        pair = await start_pair(aiohttp_client, aiohttp_server, f"sqlite:///{tmp_path}/r.db", prometheus_url=prom)
        await pair.post(notification(alert("fp-prom")))
        assert await pair.sink.wait_for(lambda s: len(s.plans) == 1)
        action = next(iter(pair.sink.plans.values()))["actions"][0]
        assert (action["knob"], action["from"], action["to"], action["relative"]) == (
            "gpu_memory_utilization", 0.85, 0.9, False)
        # Prometheus unreachable: the plan is still made, with the current value unknown
        down = await start_pair(aiohttp_client, aiohttp_server, f"sqlite:///{tmp_path}/r2.db",
                                prometheus_url=f"http://127.0.0.1:{free_port()}")
        await down.post(notification(alert("fp-noprom")))
        assert await down.sink.wait_for(lambda s: len(s.plans) == 1)
        action = next(iter(down.sink.plans.values()))["actions"][0]
        assert (action["knob"], action["from"], action["relative"]) == ("gpu_memory_utilization", None, True)
    finally:
        await stack.close()
