"""The receiver service in-process (aiohttp app + local orchestrator sink), over SQLite and a real PostgreSQL."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import jsonschema
import pytest
from receiver_kit import (
    PLAN_SCHEMA,
    TOKEN,
    alert,
    eventually,
    notification,
    slo_alert,
    start_pair,
)

from optiinfra.demo.orchestrator import Sink

pytest_plugins = ("pg",)


async def test_five_deliveries_one_plan_one_push(aiohttp_client, aiohttp_server, db_url):
    pair = await start_pair(aiohttp_client, aiohttp_server, db_url)
    body = notification(alert("fp-kv-1"))
    for _ in range(5):
        resp = await pair.post(body)
        assert resp.status == 200
    assert await pair.sink.wait_for(lambda s: len(s.plans) == 1)
    await pair.idle()
    assert len(pair.sink.plans) == 1
    pushes = [r for r in pair.sink.requests if r.path == "/api/v1/plans"]
    assert len(pushes) == 1
    (key, document), = pair.sink.plans.items()
    assert pushes[0].idempotency_key == key == document["idempotency_key"]
    jsonschema.validate(document, PLAN_SCHEMA)
    assert document["target"]["pod"] == "vllm-0"
    assert document["actions"][0]["knob"] == "gpu_memory_utilization"
    plans = await pair.plans()
    assert [p["status"] for p in plans] == ["pushed"]
    status, detail = await pair.api("GET", f"/api/v1/plans/{plans[0]['plan_id']}")
    assert status == 200
    assert [(a["from_status"], a["to_status"], a["cause"]) for a in detail["audit"]] == [
        (None, "approved", "alert"), ("approved", "pushed", "orchestrator")]
    episodes = await pair.episodes()
    assert len(episodes) == 1 and episodes[0]["deliveries"] == 5 and episodes[0]["state"] == "planned"


async def test_registers_and_heartbeats(aiohttp_client, aiohttp_server, tmp_path):
    pair = await start_pair(aiohttp_client, aiohttp_server, f"sqlite:///{tmp_path}/r.db")
    assert await pair.sink.wait_for(lambda s: s.agents and s.heartbeats >= 1, timeout=5)
    agent = next(iter(pair.sink.agents.values()))
    assert agent["agent_type"] == "performance"
    assert agent["health_endpoint"].endswith("/health")
    assert "bottleneck:kv_cache_pressure" in agent["capabilities"]


async def test_orchestrator_outage_loses_nothing(aiohttp_client, aiohttp_server, db_url):
    sink = Sink()
    sink.fail_for(3600)
    pair = await start_pair(aiohttp_client, aiohttp_server, db_url, sink=sink, max_attempts=50)
    for i in range(3):
        assert (await pair.post(notification(alert(f"fp-out-{i}", pod=f"vllm-{i}")))).status == 200
    assert await eventually(lambda: len([r for r in sink.requests if r.path == "/api/v1/plans"]) >= 6)
    assert sink.plans == {}
    sink.recover()
    assert await sink.wait_for(lambda s: len(s.plans) == 3)
    await pair.idle()
    assert sink.duplicates == 0
    assert len(sink.plans) == 3
    assert {p["status"] for p in await pair.plans()} == {"pushed"}
    status, health = await pair.api("GET", "/health/detailed")
    assert status == 200 and health["outbox_depth"] == 0


async def test_push_gives_up_after_bounded_attempts(aiohttp_client, aiohttp_server, tmp_path):
    sink = Sink()
    sink.fail_for(3600)
    pair = await start_pair(aiohttp_client, aiohttp_server, f"sqlite:///{tmp_path}/r.db", sink=sink, max_attempts=3)
    await pair.post(notification(alert("fp-giveup")))
    assert await eventually(lambda: _statuses(pair, "failed"))
    plan = (await pair.plans())[0]
    assert "HTTP 503" in plan["last_error"]
    assert len([r for r in sink.requests if r.path == "/api/v1/plans"]) == 3


async def _statuses(pair, wanted):
    plans = await pair.plans()
    return bool(plans) and all(p["status"] == wanted for p in plans)


async def test_bad_input_is_refused_and_changes_nothing(aiohttp_client, aiohttp_server, db_url):
    pair = await start_pair(aiohttp_client, aiohttp_server, db_url, max_body_bytes=1024 * 1024)
    before = await pair.counts()
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    resp = await pair.client.post("/api/v1/alerts", data=b'{"version": "4", "alerts": [', headers=headers)
    assert resp.status == 400 and "not valid JSON" in (await resp.json())["error"]
    wrong = notification(alert("fp-bad"))
    wrong["alerts"][0]["labels"]["pod"] = 7
    resp = await pair.post(wrong)
    assert resp.status == 400 and "alerts[0].labels.pod" in (await resp.json())["error"]
    missing = notification(alert("fp-bad"))
    del missing["alerts"][0]["startsAt"]
    resp = await pair.post(missing)
    assert resp.status == 400 and "startsAt" in (await resp.json())["error"]
    big = notification(alert("fp-big", **{"blob": "x" * (5 * 1024 * 1024)}))
    resp = await pair.client.post("/api/v1/alerts", data=json.dumps(big).encode(), headers=headers)
    assert resp.status == 413

    async def chunks():
        for _ in range(6):
            yield b"x" * (1024 * 1024)
    resp = await pair.client.post("/api/v1/alerts", data=chunks(), headers=headers)
    assert resp.status == 413
    resp = await pair.post(notification(alert("fp-tok")), token=None)
    assert resp.status == 401
    resp = await pair.post(notification(alert("fp-tok")), token="wrong")
    assert resp.status == 401
    await asyncio.sleep(0.2)
    assert await pair.counts() == before
    assert pair.sink.plans == {}


async def test_slo_alert_rolls_back_the_plan_in_flight_once(aiohttp_client, aiohttp_server, db_url):
    pair = await start_pair(aiohttp_client, aiohttp_server, db_url)
    await pair.post(notification(alert("fp-kv-r")))
    assert await pair.sink.wait_for(lambda s: len(s.plans) == 1)
    await pair.idle()
    plan_id = (await pair.plans())[0]["plan_id"]
    status, _ = await pair.api("POST", f"/api/v1/plans/{plan_id}/status", {"status": "rolling_out", "step": 10})
    assert status == 200
    # fast and slow burn for the same pod, each delivered twice: one rollback
    for _ in range(2):
        await pair.post(notification(slo_alert("fp-slo-fast"),
                                     slo_alert("fp-slo-slow", alertname="LLMSLOBurnRateSlow")))
    assert await pair.sink.wait_for(lambda s: len(s.rollbacks) == 1)
    await pair.idle()
    assert len([r for r in pair.sink.requests if r.path.endswith("/rollback")]) == 1
    rollback = next(iter(pair.sink.rollbacks.values()))
    assert rollback["plan_id"] == plan_id
    assert rollback["reason"]["alertname"] in ("LLMSLOBurnRateFast", "LLMSLOBurnRateSlow")
    status, detail = await pair.api("GET", f"/api/v1/plans/{plan_id}")
    assert detail["status"] == "rolled_back"
    cause = [a for a in detail["audit"] if a["to_status"] == "rolled_back" and a["from_status"] != "rolled_back"]
    assert len(cause) == 1 and cause[0]["cause"] == "alert"
    assert cause[0]["detail"]["alert"]["labels"]["component"] == "slo"
    target = detail["target_key"]
    status, blocked = await pair.api("GET", f"/api/v1/targets/blocked?target={target}")
    assert [b["knob"] for b in blocked["blocked"]] == ["gpu_memory_utilization"]
    states = sorted(e["state"] for e in await pair.episodes() if e["component"] == "slo")
    assert states == ["no_rollback", "rolled_back"]
    # the orchestrator reporting completion of a rolled-back plan is refused
    status, body = await pair.api("POST", f"/api/v1/plans/{plan_id}/status", {"status": "completed"})
    assert status == 409 and "rolled_back" in body["error"]
    # clearing the no-retry list
    status, cleared = await pair.api("POST", "/api/v1/targets/clear", {"target": target})
    assert status == 200 and cleared["cleared"] == 1
    status, blocked = await pair.api("GET", f"/api/v1/targets/blocked?target={target}")
    assert blocked["blocked"] == []


async def test_slo_alert_without_a_plan_in_flight_does_nothing(aiohttp_client, aiohttp_server, db_url):
    pair = await start_pair(aiohttp_client, aiohttp_server, db_url)
    await pair.post(notification(alert("fp-kv-a", pod="vllm-a")))
    assert await pair.sink.wait_for(lambda s: len(s.plans) == 1)
    await pair.post(notification(slo_alert("fp-slo-b", pod="vllm-b")))
    await pair.post(notification(slo_alert("fp-slo-m", pod=None, model="other-model")))
    await pair.idle()
    assert pair.sink.rollbacks == {}
    slo = [e for e in await pair.episodes() if e["component"] == "slo"]
    assert {e["state"] for e in slo} == {"no_rollback"}
    assert all("no plan in flight" in e["state_reason"] for e in slo)
    assert [p["status"] for p in await pair.plans()] == ["pushed"]


async def test_slo_alert_per_model_rolls_back_a_completed_plan_within_bake(aiohttp_client, aiohttp_server, tmp_path):
    pair = await start_pair(aiohttp_client, aiohttp_server, f"sqlite:///{tmp_path}/r.db", bake_seconds=3600)
    await pair.post(notification(alert("fp-kv-c")))
    assert await pair.sink.wait_for(lambda s: len(s.plans) == 1)
    await pair.idle()
    plan_id = (await pair.plans())[0]["plan_id"]
    for report in ({"status": "rolling_out", "step": 10}, {"status": "rolling_out", "step": 50},
                   {"status": "completed", "step": 100}):
        status, _ = await pair.api("POST", f"/api/v1/plans/{plan_id}/status", report)
        assert status == 200
    await pair.post(notification(slo_alert("fp-slo-model", pod=None)))
    assert await pair.sink.wait_for(lambda s: len(s.rollbacks) == 1)
    assert (await pair.plans())[0]["status"] == "rolled_back"


async def test_flapping_alert_yields_one_plan(aiohttp_client, aiohttp_server, db_url):
    pair = await start_pair(aiohttp_client, aiohttp_server, db_url)
    starts = ["2026-11-22T03:00:00.000Z", "2026-11-22T03:02:00.000Z", "2026-11-22T03:04:00.000Z"]
    await pair.post(notification(alert("fp-flap", starts[0])))
    assert await pair.sink.wait_for(lambda s: len(s.plans) == 1)
    await pair.idle()
    await pair.post(notification(alert("fp-flap", starts[0], status="resolved")))
    await pair.post(notification(alert("fp-flap", starts[1])))  # plan still in flight
    await pair.idle()
    plan_id = (await pair.plans())[0]["plan_id"]
    status, _ = await pair.api("POST", f"/api/v1/plans/{plan_id}/status", {"status": "completed"})
    assert status == 200
    await pair.post(notification(alert("fp-flap", starts[1], status="resolved")))
    await pair.post(notification(alert("fp-flap", starts[2])))  # completed, but within the cooldown
    await pair.idle()
    assert len(await pair.plans()) == 1
    assert len(pair.sink.plans) == 1
    reasons = sorted(e["state_reason"].split(":")[0] for e in await pair.episodes() if e["state"] == "skipped")
    assert reasons == ["cooldown", "in flight"]


async def test_manual_approval_and_state_machine(aiohttp_client, aiohttp_server, tmp_path):
    pair = await start_pair(aiohttp_client, aiohttp_server, f"sqlite:///{tmp_path}/r.db", auto_approve_low_risk=False)
    await pair.post(notification(alert("fp-a", pod="p-a"), alert("fp-b", pod="p-b")))
    await pair.idle()
    plans = {p["target_key"]: p for p in await pair.plans()}
    assert {p["status"] for p in plans.values()} == {"pending_approval"}
    assert pair.sink.plans == {}
    a, b = plans["ml/p-a/llama"]["plan_id"], plans["ml/p-b/llama"]["plan_id"]
    status, _ = await pair.api("POST", f"/api/v1/plans/{a}/approve", token=None)
    assert status == 401
    status, body = await pair.api("POST", f"/api/v1/plans/{a}/approve", {"by": "alice"})
    assert status == 200 and body["status"] == "approved"
    assert await pair.sink.wait_for(lambda s: len(s.plans) == 1)
    status, body = await pair.api("POST", f"/api/v1/plans/{b}/reject", {"by": "bob", "reason": "not now"})
    assert status == 200 and body["status"] == "rejected"
    status, body = await pair.api("POST", f"/api/v1/plans/{b}/approve")
    assert status == 409
    status, body = await pair.api("POST", f"/api/v1/plans/{a}/status", {"status": "pending_approval"})
    assert status == 400 and "status" in body["error"]
    status, body = await pair.api("POST", "/api/v1/plans/bad id!/approve")
    assert status == 400
    status, body = await pair.api("POST", "/api/v1/plans/nope/approve")
    assert status == 404
    status, body = await pair.api("GET", "/api/v1/plans?status=bogus")
    assert status == 400
    await pair.idle()
    status, detail = await pair.api("GET", f"/api/v1/plans/{a}")
    assert [(x["to_status"], x["cause"]) for x in detail["audit"]] == [
        ("pending_approval", "alert"), ("approved", "api"), ("pushed", "orchestrator")]
    assert detail["audit"][1]["detail"]["by"] == "alice"
    assert [p["plan_id"] for p in await pair.plans(status="rejected")] == [b]


async def test_unplannable_alerts_are_recorded(aiohttp_client, aiohttp_server, tmp_path):
    pair = await start_pair(aiohttp_client, aiohttp_server, f"sqlite:///{tmp_path}/r.db")
    resp = await pair.post(notification(
        alert("fp-nob", bottleneck=None, alertname="Watchdog"),
        alert("fp-err", bottleneck="request_errors", alertname="LLMHighErrorRate"),
        alert("fp-nopod", pod=None, namespace="")))
    assert (await resp.json())["ignored"] == 1
    await pair.idle()
    states = {e["fingerprint"]: e["state"] for e in await pair.episodes()}
    assert states == {"fp-nob": "ignored", "fp-err": "diagnosed", "fp-nopod": "skipped"}
    status, body = await pair.api("GET", "/api/v1/diagnoses")
    assert status == 200 and [d["bottleneck"] for d in body["diagnoses"]] == ["request_errors"]
    assert "runbook" in body["diagnoses"][0]["document"]["reason"]
    assert pair.sink.plans == {}


async def test_metrics_health_and_openapi(aiohttp_client, aiohttp_server, tmp_path):
    pair = await start_pair(aiohttp_client, aiohttp_server, f"sqlite:///{tmp_path}/r.db")
    await pair.post(notification(alert("fp-m")))
    await pair.post(notification(alert("fp-m")))
    assert await pair.sink.wait_for(lambda s: len(s.plans) == 1)
    await pair.idle()
    text = await (await pair.client.get("/metrics")).text()
    assert 'optiinfra_receiver_notifications_total{result="accepted"} 2.0' in text
    assert 'optiinfra_receiver_episodes_total{kind="duplicate"} 1.0' in text
    assert 'optiinfra_receiver_plans{status="pushed"} 1.0' in text
    assert 'optiinfra_receiver_pushes_total{kind="plan"} 1.0' in text
    assert "optiinfra_receiver_outbox_depth 0.0" in text
    assert "optiinfra_receiver_intake_duration_seconds_count 2.0" in text
    status, health = await pair.api("GET", "/health")
    assert status == 200 and health == {"status": "ok"}
    status, detail = await pair.api("GET", "/health/detailed")
    assert detail["store"]["ok"] and detail["orchestrator"]["reachable"] is True
    status, spec = await pair.api("GET", "/openapi.json")
    documented = {(path, method.upper()) for path, ops in spec["paths"].items() for method in ops}
    routes = {(r.resource.canonical, r.method) for r in pair.client.server.app.router.routes()
              if r.method != "HEAD"}
    assert routes == documented
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            assert ("security" in op) == (method == "post"), (path, method)


async def test_orchestrator_bearer_token(aiohttp_client, aiohttp_server, tmp_path):
    sink = Sink(token="orch-token")
    good = await start_pair(aiohttp_client, aiohttp_server, f"sqlite:///{tmp_path}/a.db", sink=sink,
                            orchestrator_token="orch-token")
    await good.post(notification(alert("fp-t1")))
    assert await sink.wait_for(lambda s: len(s.plans) == 1 and s.agents)
    assert all(r.authorization for r in sink.requests)
    refused = Sink(token="orch-token")
    bad = await start_pair(aiohttp_client, aiohttp_server, f"sqlite:///{tmp_path}/b.db", sink=refused,
                           orchestrator_token="wrong", max_attempts=50)
    await bad.post(notification(alert("fp-t2")))
    assert await refused.wait_for(lambda s: len([r for r in s.requests if r.path == "/api/v1/plans"]) >= 2)
    assert refused.plans == {}
    _, health = await bad.api("GET", "/health/detailed")
    assert health["orchestrator"]["reachable"] is False and "HTTP 401" in health["orchestrator"]["last_error"]
    assert "wrong" not in json.dumps(health)
    assert [p["status"] for p in await bad.plans()] == ["approved"]


async def test_store_down_answers_503_so_alertmanager_retries(aiohttp_client, aiohttp_server, tmp_path):
    pair = await start_pair(aiohttp_client, aiohttp_server, f"sqlite:///{tmp_path}/r.db")
    await pair.service.store.close()
    resp = await pair.post(notification(alert("fp-down")))
    assert resp.status == 503 and "retry" in (await resp.json())["error"]
    status, health = await pair.api("GET", "/health/detailed")
    assert status == 503 and health["store"]["ok"] is False
    status, _ = await pair.api("GET", "/api/v1/plans")
    assert status == 503


async def test_completed_plan_past_its_bake_time_is_not_rolled_back(aiohttp_client, aiohttp_server, tmp_path):
    pair = await start_pair(aiohttp_client, aiohttp_server, f"sqlite:///{tmp_path}/r.db", bake_seconds=0)
    await pair.post(notification(alert("fp-baked")))
    assert await pair.sink.wait_for(lambda s: len(s.plans) == 1)
    await pair.idle()
    plan_id = (await pair.plans())[0]["plan_id"]
    status, _ = await pair.api("POST", f"/api/v1/plans/{plan_id}/status", {"status": "completed"})
    assert status == 200
    await asyncio.sleep(0.05)
    await pair.post(notification(slo_alert("fp-slo-late")))
    await pair.idle()
    assert pair.sink.rollbacks == {}
    assert (await pair.plans())[0]["status"] == "completed"
    assert [e["state"] for e in await pair.episodes() if e["component"] == "slo"] == ["no_rollback"]


@pytest.mark.parametrize(("argv", "message"), [
    ([], "--orchestrator-url is required"),
    (["--orchestrator-url", "http://o", "--listen", "nowhere"], "--listen 'nowhere'"),
    (["--orchestrator-url", "http://o", "--db", "mysql://x"], "--db 'mysql://x'"),
    (["--orchestrator-url", "http://o", "--token-file", "/nonexistent/token"], "--token-file /nonexistent/token"),
    (["--orchestrator-url", "http://o", "--max-attempts", "0"], "--max-attempts"),
])
def test_receiver_command_line_mistakes(argv, message, capsys):
    from optiinfra.cli import main

    assert main(["receiver", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and "Traceback" not in err[0]


def test_receiver_durations():
    from optiinfra.cliutil import parse_seconds as parse_duration

    assert [parse_duration(x) for x in ("90", "90s", "30m", "1h30m", "500ms")] == [90, 90, 1800, 5400, 0.5]
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration("soon")


async def test_a_newer_plan_for_the_same_knob_supersedes_a_pending_one(aiohttp_client, aiohttp_server, db_url):
    pair = await start_pair(aiohttp_client, aiohttp_server, db_url, auto_approve_low_risk=False)
    await pair.post(notification(alert("fp-pre", bottleneck="preemption_storm", alertname="LLMPreemptionStorm")))
    await pair.idle()
    [first] = await pair.plans()
    assert first["status"] == "pending_approval"
    await pair.post(notification(alert("fp-q", bottleneck="queue_buildup", alertname="LLMQueueBuildup")))
    await pair.idle()
    plans = {p["plan_id"]: p for p in await pair.plans()}
    assert len(plans) == 2, [(e["bottleneck"], e["state"], e["state_reason"]) for e in await pair.episodes()]
    shared = set(first["knobs"]) & set(next(p for p in plans.values() if p["plan_id"] != first["plan_id"])["knobs"])
    assert shared, "the two bottlenecks' first actions must share a knob for this test"
    assert plans[first["plan_id"]]["status"] == "superseded"
    assert [p["status"] for p in plans.values() if p["plan_id"] != first["plan_id"]] == ["pending_approval"]
    _, detail = await pair.api("GET", f"/api/v1/plans/{first['plan_id']}")
    assert [(a["from_status"], a["to_status"], a["cause"]) for a in detail["audit"]][-1] == (
        "pending_approval", "superseded", "alert")
    assert pair.sink.plans == {}


async def test_an_alert_during_a_rollback_restart_waits_instead_of_planning_a_restart(aiohttp_client, aiohttp_server,
                                                                                     db_url):
    """A rollback restarts the engine with the flags the plan replaced. LLMEngineDown firing meanwhile (about the
    pod: no model) is that restart: the episode is deferred, not planned as a second restart on top of it. Once
    the grace has passed it is looked at afresh: planned if it still fires, skipped if it resolved."""
    pair = await start_pair(aiohttp_client, aiohttp_server, db_url, restart_grace_seconds=1.5)
    await pair.post(notification(alert("fp-kv-r")))
    assert await pair.sink.wait_for(lambda s: len(s.plans) == 1)
    await pair.idle()
    plan_id = (await pair.plans())[0]["plan_id"]
    status, _ = await pair.api("POST", f"/api/v1/plans/{plan_id}/status", {"status": "rolling_out"})
    assert status == 200
    await pair.post(notification(slo_alert("fp-slo-r")))
    assert await pair.sink.wait_for(lambda s: len(s.rollbacks) == 1)

    def down(fingerprint: str, status: str = "firing") -> dict[str, Any]:
        return alert(fingerprint, "2026-11-22T03:30:00.000Z", status=status, bottleneck="engine_down",
                     alertname="LLMEngineDown", model="")

    await pair.post(notification(down("fp-down-1"), down("fp-down-2")))
    await pair.idle()
    deferred = [e for e in await pair.episodes() if e["alertname"] == "LLMEngineDown"]
    assert {e["state"] for e in deferred} == {"deferred"}
    assert all(f"plan {plan_id}" in e["state_reason"] for e in deferred)
    assert len(pair.sink.plans) == 1
    await pair.post(notification(down("fp-down-2", "resolved")))  # the restart finished for one of them
    assert await eventually(lambda: len(pair.sink.plans) == 2, timeout=10)
    await pair.idle()
    states = {e["fingerprint"]: e["state"] for e in await pair.episodes() if e["alertname"] == "LLMEngineDown"}
    assert states == {"fp-down-1": "planned", "fp-down-2": "skipped"}
    assert [p["bottleneck"] for p in await pair.plans()].count("engine_down") == 1


async def test_a_plan_the_orchestrator_failed_is_learned_and_the_next_action_planned(aiohttp_client, aiohttp_server,
                                                                                    db_url):
    """The process orchestrator refuses a relative change of a flag the engine command does not set, and reverts
    a start that failed: nothing stayed changed, so, as after no effect, the knob is learned as failed for the
    bottleneck on the target and the alert's next action is planned (not held back by the cooldown)."""
    pair = await start_pair(aiohttp_client, aiohttp_server, db_url)
    await pair.post(notification(alert("fp-pre-f", bottleneck="preemption_storm", alertname="LLMPreemptionStorm")))
    assert await pair.sink.wait_for(lambda s: len(s.plans) == 1)
    await pair.idle()
    [first] = await pair.plans()
    message = "cannot apply: relative change 'x0.75' for max_num_seqs but the current value is unknown"
    status, _ = await pair.api("POST", f"/api/v1/plans/{first['plan_id']}/status",
                               {"status": "failed", "message": message})
    assert status == 200
    assert await pair.sink.wait_for(lambda s: len(s.plans) == 2)
    await pair.idle()
    plans = {p["plan_id"]: p for p in await pair.plans()}
    [second] = [p for pid, p in plans.items() if pid != first["plan_id"]]
    assert plans[first["plan_id"]]["status"] == "failed"
    assert not set(first["knobs"]) & set(second["knobs"])
    _, learned = await pair.api("GET", f"/api/v1/targets/learned?target={first['target_key']}")
    assert [(k["knob"], k["verdict"]) for k in learned["learned"]] == [(knob, "failed") for knob in first["knobs"]]
    assert message in learned["learned"][0]["reason"]
    [episode] = [e for e in await pair.episodes() if e["fingerprint"] == "fp-pre-f"]
    assert (episode["state"], episode["plan_id"]) == ("planned", second["plan_id"])
