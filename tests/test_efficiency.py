"""Efficiency, cost and health: the recording rules' promtool cases under configs with and without prices, the
simulator's KV-connector counters, and plans that state what they save or cost (planner and receiver reading a
real Prometheus)."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest
import yaml
from conftest import free_port, require_binary
from receiver_kit import alert, eventually, notification, start_pair

from optiinfra.alertmanager.plan import Plan
from optiinfra.alertmanager.planner import AlertEpisode, PlanningContext, PodCost, plan_for
from optiinfra.config import Config, ConfigError, parse_config
from optiinfra.demo.simulator.engines import render
from optiinfra.demo.simulator.scenarios import SCENARIOS, Simulation
from optiinfra.demo.stack import Stack, prometheus_config, start_prometheus
from optiinfra.rules import efficiency as ef
from optiinfra.rules.generate import RULES_FILE, generate
from optiinfra.rules.promql import PROFILES
from optiinfra.rules.testgen import TEST_FILES

H100 = "NVIDIA H100 80GB HBM3"
CONFIGS = {
    "no price": {},
    "dcgm-exporter": {"gpu_source": "dcgm-exporter", "cost": {"default_gpu_hour_price": 1.5}},
    "per model": {"cost": {"gpu_hour_prices": {H100: 4.5}}},
    "default": {"cost": {"default_gpu_hour_price": 2.7, "currency": "EUR"}},
    "weights": {"health": {"critical": 70, "warning": 50}, "efficiency": {"kv_usage_target": 0.5},
                "cost": {"gpu_hour_prices": {H100: 3.0, "A100": 1.0}, "default_gpu_hour_price": 0.5}},
}


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_efficiency_promtool_cases_pass(tmp_path: Path, name: str, profile: str) -> None:
    promtool = require_binary("promtool")
    config = parse_config(CONFIGS[name])
    files = generate(config, profile)  # type: ignore[arg-type]
    for file, text in files.items():
        (tmp_path / file).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / file).write_text(text, encoding="utf-8")
    test_file = next(name for name in TEST_FILES if name.endswith("efficiency.test.yml"))
    tests = yaml.safe_load(files[test_file])["tests"]
    checked = {t["expr"] for case in tests for t in case["promql_expr_test"]}
    assert {f"round({rule}, {1 / 1024!r})" for rule in ef.EFFICIENCY_RULES} <= checked
    values = {t["expr"]: t["exp_samples"] for t in tests[0]["promql_expr_test"]}
    cost = values[f"round({ef.COST}, {1 / 1024!r})"]
    assert bool(cost) == config.cost.priced  # a value with a price, absent without
    health = values[f"round({ef.HEALTH}, {1 / 1024!r})"]
    assert sorted(s["value"] for s in health) == sorted([max(100 - config.health.warning - config.health.critical
                                                             - config.health.slo_burn, 0), 100])
    proc = subprocess.run([promtool, "test", "rules", test_file], cwd=tmp_path,
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_without_a_price_the_price_rule_records_nothing() -> None:
    rules = yaml.safe_load(generate(Config())[RULES_FILE])
    group = next(g for g in rules["groups"] if g["name"] == ef.GROUP)
    price = next(r for r in group["rules"] if r["record"] == ef.PRICE)
    assert price["expr"] == "vector(0) < 0" and price["labels"] == {"currency": "USD"}
    priced = parse_config(CONFIGS["weights"])
    expr = ef.price_terms(priced)
    assert expr == ['1 + 0 * gpu:DCGM_FI_DEV_GPU_UTIL:ratio{modelName="A100"}',
                    f'3 + 0 * gpu:DCGM_FI_DEV_GPU_UTIL:ratio{{modelName="{H100}"}}',
                    f'0.5 + 0 * gpu:DCGM_FI_DEV_GPU_UTIL:ratio{{modelName!~"A100|{H100}"}}']


@pytest.mark.parametrize("bad", [
    {"cost": {"default_gpu_hour_price": -1}},
    {"cost": {"gpu_hour_prices": {H100: float("inf")}}},
    {"cost": {"gpu_hour_prices": {H100: float("nan")}}},
    {"cost": {"gpu_hour_prices": {" ": 1}}},
    {"health": {"critical": 101}},
    {"efficiency": {"gpu_utilization_target": 0}},
])
def test_bad_prices_weights_and_targets_are_one_line_errors(bad: dict[str, object]) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(bad)
    assert "\n" not in str(err.value) and ("cost" in str(err.value) or "health" in str(err.value)
                                           or "efficiency" in str(err.value))


def test_simulator_exports_external_kv_counters_only_with_a_connector() -> None:
    def counters(connector: str) -> tuple[float, float]:
        sim = Simulation("vllm", SCENARIOS["healthy"], time_scale=10.0, seed=1, kv_connector=connector)
        sim.model.run_until(60.0)
        text = render("vllm", sim.model, "m", 0.0)
        value = {line.split("{")[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                 if line.startswith("vllm:external_prefix_cache_")}
        return value["vllm:external_prefix_cache_queries_total"], value["vllm:external_prefix_cache_hits_total"]

    assert counters("") == (0.0, 0.0)
    queried, hits = counters("LMCacheConnectorV1")
    assert queried > hits > 0


def _episode(bottleneck: str, alertname: str) -> AlertEpisode:
    return AlertEpisode("fp-1", "2026-11-22T03:00:00Z", {
        "alertname": alertname, "bottleneck": bottleneck, "severity": "info", "namespace": "ml", "pod": "vllm-0",
        "engine": "vllm", "model": "llama"})


def test_consolidation_states_its_saving_and_scale_out_its_cost() -> None:
    now = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)
    cost = PodCost(gpus=2, price_per_hour=9.0, currency="USD")
    plan = plan_for(_episode("gpu_underutilized", "LLMGPUUnderutilized"), PlanningContext(now=now, pod_cost=cost))
    assert isinstance(plan, Plan) and plan.actions[0].knob == "replicas" and plan.actions[0].to == "-1"
    assert plan.cost is not None
    assert (plan.cost.replicas, plan.cost.gpu_hours_per_day, plan.cost.cost_per_day, plan.cost.currency) == (
        -1, -48, -216, "USD")
    assert "It saves 48 GPU-hours (216 USD) a day (2 GPUs per replica)." in plan.rationale
    assert plan.document()["cost"]["cost_per_day"] == -216
    # scale-out: what it would cost (the queue's engine knobs are held, so scale_out is the action)
    held = frozenset({"max_num_seqs", "max_num_batched_tokens"})
    out = plan_for(_episode("queue_buildup", "LLMQueueBuildup"),
                   PlanningContext(now=now, pod_cost=cost, blocked_knobs=held))
    assert isinstance(out, Plan) and out.actions[0].to == "+1" and out.cost is not None
    assert (out.cost.gpu_hours_per_day, out.cost.cost_per_day) == (48, 216)
    assert "It costs 48 GPU-hours (216 USD) a day" in out.rationale
    # GPUs known, no price: GPU-hours only; GPUs unknown: no cost at all; an engine knob: no cost
    unpriced = plan_for(_episode("gpu_underutilized", "LLMGPUUnderutilized"),
                        PlanningContext(now=now, pod_cost=PodCost(gpus=4)))
    assert isinstance(unpriced, Plan) and unpriced.cost is not None
    assert (unpriced.cost.gpu_hours_per_day, unpriced.cost.cost_per_day) == (-96, None)
    bare = plan_for(_episode("gpu_underutilized", "LLMGPUUnderutilized"), PlanningContext(now=now))
    assert isinstance(bare, Plan) and bare.cost is None and "GPU-hours" not in bare.rationale
    knob = plan_for(_episode("queue_buildup", "LLMQueueBuildup"), PlanningContext(now=now, pod_cost=cost))
    assert isinstance(knob, Plan) and knob.actions[0].kind == "engine_arg" and knob.cost is None


async def test_receiver_reads_the_pods_gpus_and_price_from_prometheus(aiohttp_client, aiohttp_server,  # type: ignore[no-untyped-def]
                                                                       tmp_path):
    """The recorded series as Prometheus holds them (served here by a fake target): the plan states its saving."""
    require_binary("prometheus")
    from aiohttp import web

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(text=(
            f"# TYPE {ef.GPUS} gauge\n{ef.GPUS}{{namespace=\"ml\",pod=\"vllm-0\"}} 2\n"
            f"{ef.GPUS}{{namespace=\"ml\",pod=\"vllm-1\"}} 8\n"
            f"# TYPE {ef.PRICE} gauge\n{ef.PRICE}{{namespace=\"ml\",pod=\"vllm-0\",currency=\"EUR\"}} 7.5\n"))
    app = web.Application()
    app.router.add_get("/metrics", metrics)
    target = await aiohttp_server(app)
    stack = Stack(tmp_path)
    port = free_port()
    prom = f"http://127.0.0.1:{port}"
    try:
        await start_prometheus(stack, prometheus_config([(f"127.0.0.1:{target.port}", {})], [], None), port)
        async with aiohttp.ClientSession() as session:
            async def scraped() -> bool:
                async with session.get(f"{prom}/api/v1/query", params={"query": ef.PRICE}) as resp:
                    return bool((await resp.json())["data"]["result"])
            assert await eventually(scraped, timeout=30)
        pair = await start_pair(aiohttp_client, aiohttp_server, f"sqlite:///{tmp_path}/r.db", prometheus_url=prom)
        await pair.post(notification(alert("fp-idle", bottleneck="gpu_underutilized",
                                           alertname="LLMGPUUnderutilized")))

        async def planned() -> bool:
            _, body = await pair.api("GET", "/api/v1/plans")
            return bool(body["plans"])
        assert await eventually(planned, timeout=20)
        _, body = await pair.api("GET", "/api/v1/plans")
        plan = body["plans"][0]
        document = plan.get("document", plan)
        assert document["cost"] == {"replicas": -1, "gpus_per_replica": 2.0, "gpu_hours_per_day": -48.0,
                                    "cost_per_day": -180.0, "currency": "EUR"}
        assert "It saves 48 GPU-hours (180 EUR) a day" in document["rationale"]
    finally:
        await stack.close()
