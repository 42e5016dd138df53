"""The whole loop for real: simulator -> exporter -> Prometheus -> Alertmanager -> receiver -> orchestrator.

Real binaries (Debian prometheus, prometheus-alertmanager), our real commands as child processes, the
generated rules (demo profile) and the generated Alertmanager config; nothing is mocked.
"""

from __future__ import annotations

import io

import jsonschema
import pytest
from conftest import REPO, require_binary

from optiinfra.demo.runner import Expectation, run_loop

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


async def test_kv_cache_pressure_plan_reaches_the_orchestrator() -> None:
    out = io.StringIO()
    outcome = await run_loop("kv_cache_pressure", Expectation("kv_cache_pressure", rollback=False, timeout=90),
                             out=out, host=False)
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


async def test_healthy_yields_no_alert_and_no_plan() -> None:
    out = io.StringIO()
    outcome = await run_loop("healthy", Expectation(None, rollback=False, min_seconds=40, timeout=60),
                             out=out, host=False)
    assert outcome.ok, f"{outcome.reason}\n{out.getvalue()}"
    assert outcome.plans == [] and outcome.receiver_plans == []
    assert [a for a in outcome.alerts if a["labels"].get("bottleneck")] == []


async def test_slo_regression_rolls_back_the_plan_in_flight_exactly_once() -> None:
    out = io.StringIO()
    outcome = await run_loop("slo_regression", Expectation("kv_cache_pressure", rollback=True, settle_seconds=8,
                                                           timeout=120), out=out, host=False)
    assert outcome.ok, f"{outcome.reason}\n{out.getvalue()}"
    assert len(outcome.plans) == 1 and len(outcome.rollbacks) == 1
    plan_id = outcome.plans[0]["plan_id"]
    assert outcome.rollbacks[0]["plan_id"] == plan_id
    slo_alerts = [a for a in outcome.alerts if a["labels"].get("component") == "slo"]
    assert slo_alerts and slo_alerts[0]["labels"]["bottleneck"] == "slo_burn"
    assert [c["what"] for c in outcome.applied] == ["applied", "restored"]
    assert outcome.applied[1]["config"] == {"gpu_memory_utilization": pytest.approx(0.9)}
    statuses = {p["plan_id"]: p["status"] for p in outcome.receiver_plans}
    assert statuses[plan_id] == "rolled_back"
