"""The whole loop for real: simulator -> exporter -> Prometheus -> Alertmanager -> receiver -> orchestrator.

Real binaries (Debian prometheus, prometheus-alertmanager), our real commands as child processes, the
generated rules (demo profile) and the generated Alertmanager config; nothing is mocked.
"""

from __future__ import annotations

import io

import jsonschema
import pytest
from conftest import REPO, require_binary

from optiinfra.demo.runner import DEMO_ANALYSIS, Expectation, run_loop

pytestmark = pytest.mark.slow

PLAN_SCHEMA = REPO / "alertmanager" / "plan.schema.json"


@pytest.fixture(autouse=True)
def _binaries() -> None:
    require_binary("prometheus")
    require_binary("prometheus-alertmanager")


def _schema() -> dict[str, object]:
    import json

    schema: dict[str, object] = json.loads(PLAN_SCHEMA.read_text(encoding="utf-8"))
    return schema


async def test_helpful_plan_is_verified_with_its_numbers() -> None:
    out = io.StringIO()
    outcome = await run_loop("kv_cache_pressure", Expectation("kv_cache_pressure", rollback=False, status="verified",
                                                              settle_seconds=4, timeout=120), out=out, host=False)
    assert outcome.ok, f"{outcome.reason}\n{out.getvalue()}"
    assert len(outcome.plans) == 1
    plan = outcome.plans[0]
    jsonschema.validate(plan, _schema())
    assert plan["bottleneck"] == "kv_cache_pressure"
    assert plan["target"]["engine"] == "vllm"
    assert plan["target"]["pod"] == "vllm-demo-0"
    action = plan["actions"][0]
    assert action["name"] == "--gpu-memory-utilization"
    assert action["from"] == pytest.approx(0.9)  # the current value, read from llm_engine_info
    assert action["to"] > action["from"]
    assert outcome.applied and outcome.applied[0]["config"] == {"gpu_memory_utilization": action["to"]}
    assert outcome.rollbacks == []
    record = outcome.records[plan["plan_id"]]
    bake = next(a for a in record["analyses"] if a["phase"] == "bake")
    assert bake["verdict"] == "improved"
    signal = bake["detail"]["signal"]["target"]
    assert "pod_model:llm_kv_cache_usage_ratio:max" in signal["query"]
    assert signal["before"] >= 0.9 > signal["after"]  # KV usage fell below the alert's threshold
    assert [a["to_status"] for a in record["audit"]].count("verified") == 1


async def test_no_effect_plan_is_rolled_back_and_the_next_action_is_tried() -> None:
    out = io.StringIO()
    outcome = await run_loop("kv_saturated", Expectation("kv_cache_pressure", rollback=True, status="no_effect",
                                                         settle_seconds=6, timeout=120), out=out, host=False)
    assert outcome.ok, f"{outcome.reason}\n{out.getvalue()}"
    assert len(outcome.plans) == 1 and len(outcome.rollbacks) == 1
    plan = outcome.plans[0]
    assert outcome.rollbacks[0]["reason"]["verdict"] == "no_effect"
    assert [c["what"] for c in outcome.applied] == ["applied", "restored"]
    assert outcome.applied[1]["config"] == {"gpu_memory_utilization": pytest.approx(0.9)}
    bake = next(a for a in outcome.records[plan["plan_id"]]["analyses"] if a["phase"] == "bake")
    assert bake["verdict"] == "no_effect"
    signal = bake["detail"]["signal"]["target"]
    assert signal["before"] >= 0.9 and signal["after"] >= 0.9
    # the next action of kv_cache_pressure was planned (an fp8 KV cache: medium risk, it waits for approval)
    others = [p for p in outcome.receiver_plans if p["plan_id"] != plan["plan_id"]]
    assert [(p["knobs"], p["status"]) for p in others] == [(["cache_dtype"], "pending_approval")]


async def test_low_traffic_is_inconclusive_and_nothing_is_done() -> None:
    out = io.StringIO()
    # the receiver is told 10^6 requests/s is the least it judges: this scenario's ~1500/s is "too little"
    outcome = await run_loop("kv_cache_pressure", Expectation("kv_cache_pressure", rollback=False,
                                                              status="completed", verdict="inconclusive",
                                                              settle_seconds=4, timeout=120),
                             out=out, host=False, receiver_args=(*DEMO_ANALYSIS, "--min-request-rate", "1000000"))
    assert outcome.ok, f"{outcome.reason}\n{out.getvalue()}"
    record = outcome.records[outcome.plans[0]["plan_id"]]
    assert record["status"] == "completed" and outcome.rollbacks == []
    assert all(a["verdict"] == "inconclusive" for a in record["analyses"] if a["verdict"])
    assert "too little traffic" in record["analyses"][-1]["detail"]["reason"]


async def test_healthy_yields_no_alert_and_no_plan() -> None:
    out = io.StringIO()
    outcome = await run_loop("healthy", Expectation(None, rollback=False, min_seconds=40, timeout=60),
                             out=out, host=False)
    assert outcome.ok, f"{outcome.reason}\n{out.getvalue()}"
    assert outcome.plans == [] and outcome.receiver_plans == []
    assert [a for a in outcome.alerts if a["labels"].get("bottleneck")] == []


async def test_harmful_plan_is_rolled_back_on_its_guard_before_any_slo_alert() -> None:
    out = io.StringIO()
    outcome = await run_loop("slo_regression", Expectation("prefill_bound", rollback=True, status="rolled_back",
                                                           settle_seconds=6, timeout=150), out=out, host=False)
    assert outcome.ok, f"{outcome.reason}\n{out.getvalue()}"
    assert len(outcome.plans) == 1 and len(outcome.rollbacks) == 1
    plan = outcome.plans[0]
    assert plan["actions"][0]["name"] == "--max-num-batched-tokens"
    assert outcome.rollbacks[0]["plan_id"] == plan["plan_id"]
    assert outcome.rollbacks[0]["reason"]["kind"] == "analysis", f"{outcome.rollbacks[0]}\n{out.getvalue()}"
    assert outcome.rollbacks[0]["reason"]["verdict"] == "worse"
    # the inter-token latency guard, or the inter-token SLO's SLI guard (its bad-event ratio) when that one is
    # past its tolerance first: either is the harm to inter-token latency
    reason = outcome.rollbacks[0]["reason"]["reason"]
    assert "llm_inter_token_latency_seconds" in reason or "slo:inter-token" in reason, reason
    # rolled back on its guard, before the inter-token SLO it harms burned (the TTFT SLO may burn from the start:
    # that is the prefill_bound problem the plan was for)
    assert outcome.alerts_before_rollback is not None
    assert [a for a in outcome.alerts_before_rollback if a.get("slo") == "inter-token"] == []
    assert [c["what"] for c in outcome.applied] == ["applied", "restored"]
    assert outcome.applied[1]["config"] == {"max_num_batched_tokens": 1024}
    record = outcome.records[plan["plan_id"]]
    worse = [a for a in record["analyses"] if a["verdict"] == "worse"]
    assert len(worse) == 1  # at a rollout step or after the bake time, whichever saw it first
    guards = {g["name"]: g["target"] for g in worse[0]["detail"]["guards"]}
    tripped = next(name for name in guards if f"guard {name} " in reason)
    assert guards[tripped]["after"] > guards[tripped]["before"]
    if tripped == "llm_inter_token_latency_seconds":
        assert guards[tripped]["after"] > 1.2 * guards[tripped]["before"]  # past the 20% guard tolerance
    else:  # the SLO's bad-event ratio moved first; inter-token latency itself rose too
        assert guards["llm_inter_token_latency_seconds"]["after"] > guards["llm_inter_token_latency_seconds"]["before"]
