"""Every plan proves its effect: the expected-impact claim, analyses at each step and after the bake time, and
what the receiver does with each verdict (verified, no_effect and the next action, rollback on a guard,
inconclusive without traffic), exactly once, on SQLite and PostgreSQL.

Prometheus is a small HTTP server speaking its ``/api/v1/query_range`` answer format, whose series take one value
before the plan was pushed and another after it; the receiver reads it through its real HTTP reader.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp import web
from receiver_kit import alert, eventually, notification, slo_alert, start_pair

from optiinfra.alertmanager.analysis import Windows, judge, measure
from optiinfra.alertmanager.cli import _config
from optiinfra.alertmanager.contract import RollbackRequest
from optiinfra.alertmanager.impact import SloGuards
from optiinfra.alertmanager.plan import ExpectedImpact
from optiinfra.alertmanager.planner import AlertEpisode, PlanningContext, plan_for
from optiinfra.alertmanager.service import ReceiverConfig
from optiinfra.alertmanager.show import fetch, render
from optiinfra.cli import build_parser, main
from optiinfra.cliutil import UsageError
from optiinfra.config import load_config
from optiinfra.taxonomy import by_id

pytest_plugins = ("pg",)

KV, TTFT, TRAFFIC = "llm_kv_cache_usage_ratio", "llm_time_to_first_token_seconds", "llm_requests_finished"


class FakePrometheus:
    """Series by a name fragment of the query: (value before the change, value after), per target or baseline."""

    def __init__(self, series: dict[str, tuple[float, float]], baseline: dict[str, tuple[float, float]] | None = None):
        self.series, self.baseline = series, baseline or {}
        self.changed_at = float("inf")
        self.queries: list[str] = []

    async def no_config(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "success", "data": {"resultType": "vector", "result": []}})

    async def query_range(self, request: web.Request) -> web.Response:
        q = request.query
        query, start, end, step = q["query"], float(q["start"]), float(q["end"]), float(q["step"])
        self.queries.append(query)
        table = self.baseline if "pod!=" in query else self.series
        pair = next((v for k, v in table.items() if k in query), None)
        values = []
        t = start
        while pair is not None and t <= end:
            values.append([t, str(pair[0] if t <= self.changed_at + 0.001 else pair[1])])
            t += step
        result = [{"metric": {}, "values": values}] if values else []
        return web.json_response({"status": "success", "data": {"resultType": "matrix", "result": result}})


async def _prometheus(aiohttp_server: Any, fake: FakePrometheus) -> str:
    app = web.Application()
    app.router.add_get("/api/v1/query_range", fake.query_range)
    app.router.add_get("/api/v1/query", fake.no_config)
    server = await aiohttp_server(app)
    return str(server.make_url("")).rstrip("/")


HELPS = {KV: (0.97, 0.6), TTFT: (0.8, 0.7), TRAFFIC: (5.0, 5.0)}
NOTHING = {KV: (0.97, 0.96), TTFT: (0.8, 0.8), TRAFFIC: (5.0, 5.0)}
HURTS = {KV: (0.97, 0.6), TTFT: (0.8, 3.5), TRAFFIC: (5.0, 5.0)}
IDLE = {KV: (0.97, 0.6), TTFT: (0.8, 0.7), TRAFFIC: (0.001, 0.001)}


async def _pair(aiohttp_client: Any, aiohttp_server: Any, db: str, fake: FakePrometheus) -> Any:
    url = await _prometheus(aiohttp_server, fake)
    return await start_pair(aiohttp_client, aiohttp_server, db, prometheus_url=url, analysis_window_seconds=2,
                            bake_seconds=0, cooldown_seconds=0)


async def _pushed(pair: Any, fake: FakePrometheus, n: int = 1) -> dict[str, Any]:
    assert await pair.sink.wait_for(lambda s: len(s.plans) == n)
    await pair.idle()
    plan = (await pair.plans())[0]
    row = await pair.service.store.run(lambda tx: tx.fetchrow("SELECT pushed_at FROM plans WHERE plan_id = ?",
                                                              plan["plan_id"]))
    fake.changed_at = float(row["pushed_at"])
    return dict(plan)


async def _roll_out(pair: Any, plan_id: str, steps: tuple[int, ...] = (10, 50)) -> None:
    for report in [*({"status": "rolling_out", "step": s} for s in steps), {"status": "completed", "step": 100}]:
        status, _ = await pair.api("POST", f"/api/v1/plans/{plan_id}/status", report)
        assert status == 200
        await pair.api("POST", f"/api/v1/plans/{plan_id}/status", report)  # repeated reports change nothing


async def _status(pair: Any, plan_id: str, want: str, timeout: float = 20.0) -> dict[str, Any]:
    async def reached() -> bool:
        return bool((await pair.api("GET", f"/api/v1/plans/{plan_id}"))[1]["status"] == want)
    assert await eventually(reached, timeout), (await pair.api("GET", f"/api/v1/plans/{plan_id}"))[1]
    return dict((await pair.api("GET", f"/api/v1/plans/{plan_id}"))[1])


def test_the_claim_comes_from_the_bottleneck_spec() -> None:
    ep = AlertEpisode("f", "2026-11-22T03:00:00Z", {"bottleneck": "queue_buildup", "namespace": "ml", "pod": "p-0",
                                                    "model": "m", "engine": "vllm"})
    plan = plan_for(ep, PlanningContext(now=datetime.now(UTC), analysis_window_seconds=120))
    impact = plan.expected_impact  # type: ignore[union-attr]
    condition = by_id()["queue_buildup"].condition
    assert impact.signal is not None and condition is not None
    assert impact.signal.query == f'max({condition.main.series.metric}{{namespace="ml",pod="p-0",model="m"}})'
    assert impact.signal.baseline_query == (
        f'avg({condition.main.series.metric}{{namespace="ml",pod!="p-0",model="m"}})')
    assert impact.signal.better == "down" and impact.window_seconds == 120
    names = [g.name for g in impact.guards]
    assert names == [TTFT, "llm_inter_token_latency_seconds", "llm_requests_errored_per_finished", TRAFFIC]
    assert {g.better for g in impact.guards if g.name == TRAFFIC} == {"up"}


def test_a_scale_action_gets_no_canary() -> None:
    ep = AlertEpisode("f", "2026-11-22T03:00:00Z", {"bottleneck": "queue_buildup", "namespace": "ml",
                                                    "deployment": "d", "model": "m", "engine": "vllm"})
    ctx = PlanningContext(now=datetime.now(UTC), blocked_knobs=frozenset({"max_num_seqs", "max_num_batched_tokens"}))
    plan = plan_for(ep, ctx)
    assert plan.actions[0].kind == "scale"  # type: ignore[union-attr]
    assert plan.rollout.steps == [100] and plan.rollout.strategy == "recreate"  # type: ignore[union-attr]


@pytest.mark.parametrize(("series", "baseline", "verdict"), [
    (HELPS, {}, "improved"), (NOTHING, {}, "no_effect"), (HURTS, {}, "worse"), (IDLE, {}, "inconclusive"),
    # the unchanged replicas improved as much: the load fell, the change did nothing (canary vs baseline)
    (HELPS, {KV: (0.97, 0.6)}, "no_effect"),
    # the unchanged replicas got much worse while the canary held: the change helped
    (NOTHING, {KV: (0.6, 0.97)}, "improved"),
])
async def test_judge_from_real_http_answers(aiohttp_server: Any, series: Any, baseline: Any, verdict: str) -> None:
    import aiohttp

    from optiinfra.alertmanager.analysis import prometheus_reader
    fake = FakePrometheus(series, baseline)
    fake.changed_at = 1000.0
    ep = AlertEpisode("f", "2026-11-22T03:00:00Z", {"bottleneck": "kv_cache_pressure", "namespace": "ml",
                                                    "pod": "p-0", "model": "m", "engine": "vllm"})
    impact: ExpectedImpact = plan_for(ep, PlanningContext(now=datetime.now(UTC))).expected_impact  # type: ignore
    url = await _prometheus(aiohttp_server, fake)
    async with aiohttp.ClientSession() as session:
        numbers = await measure(prometheus_reader(session, url), impact, Windows.around(1000.0, 1400.0, 300))
    got, reason, effects = judge(impact, numbers)
    assert got == verdict, reason
    assert numbers["signal"]["target"]["query"] == impact.signal.query  # type: ignore[union-attr]
    assert numbers["windows"] == {"before": [700.0, 1000.0], "after": [1100.0, 1400.0]}
    if verdict != "inconclusive":
        assert effects[KV]["relative"] == pytest.approx((series[KV][0] - series[KV][1]) / series[KV][0], abs=1e-3)


async def test_helpful_plan_is_verified_with_its_numbers(aiohttp_client, aiohttp_server, db_url):
    fake = FakePrometheus(HELPS)
    pair = await _pair(aiohttp_client, aiohttp_server, db_url, fake)
    for _ in range(3):  # Alertmanager duplicates
        await pair.post(notification(alert("fp-help")))
    plan = await _pushed(pair, fake)
    await _roll_out(pair, plan["plan_id"])
    detail = await _status(pair, plan["plan_id"], "verified")
    await asyncio.sleep(0.3)
    phases = {a["phase"]: a for a in detail["analyses"]}
    assert set(phases) >= {"step-10", "step-50", "bake"}
    bake = phases["bake"]
    assert bake["verdict"] == "improved"
    assert bake["detail"]["signal"]["target"]["before"] == pytest.approx(0.97)
    assert bake["detail"]["signal"]["target"]["after"] == pytest.approx(0.6)
    assert "pod_model:llm_kv_cache_usage_ratio:max" in bake["detail"]["signal"]["target"]["query"]
    verified = [a for a in detail["audit"] if a["to_status"] == "verified"]
    assert len(verified) == 1 and verified[0]["cause"] == "analysis"
    assert pair.sink.rollbacks == {}
    assert len(pair.sink.plans) == 1
    text = await (await pair.client.get("/metrics")).text()
    assert 'optiinfra_receiver_plan_outcomes_total{bottleneck="kv_cache_pressure",verdict="improved"}' in text
    # optiinfra plans show, through the real API
    url = str(pair.client.make_url("")).rstrip("/")
    shown = render(await asyncio.to_thread(fetch, url, plan["plan_id"]))
    assert f"plan {plan['plan_id']}  kv_cache_pressure on ml/vllm-0/llama: verified" in shown
    assert "--gpu-memory-utilization" in shown
    bake_row = next(line for line in shown.splitlines() if line.startswith("bake "))
    assert "improved" in bake_row and "0.97" in bake_row and "0.6" in bake_row and "+38%" in bake_row
    spark = next(line for line in shown.splitlines() if line.strip().startswith(KV))
    assert "│" in spark and spark.split("│")[0].strip().endswith("█") and "0.97 -> 0.6" in spark


async def test_no_effect_rolls_back_and_tries_the_next_action(aiohttp_client, aiohttp_server, db_url):
    fake = FakePrometheus(NOTHING)
    pair = await _pair(aiohttp_client, aiohttp_server, db_url, fake)
    await pair.post(notification(alert("fp-none")))
    plan = await _pushed(pair, fake)
    assert plan["knobs"] == ["gpu_memory_utilization"]
    await _roll_out(pair, plan["plan_id"], steps=())
    detail = await _status(pair, plan["plan_id"], "no_effect")
    assert [a["verdict"] for a in detail["analyses"] if a["phase"] == "bake"] == ["no_effect"]
    assert await pair.sink.wait_for(lambda s: len(s.rollbacks) == 1)

    async def replanned() -> bool:
        return len(await pair.plans()) == 2
    assert await eventually(replanned)
    await pair.post(notification(alert("fp-none")))  # a duplicate after the fact changes nothing
    await pair.idle()
    assert len(pair.sink.rollbacks) == 1 and len(await pair.plans()) == 2
    nxt = next(p for p in await pair.plans() if p["plan_id"] != plan["plan_id"])
    # the next action of kv_cache_pressure (an fp8 KV cache: medium risk, so it waits for approval)
    assert nxt["knobs"] == ["cache_dtype"] and nxt["bottleneck"] == "kv_cache_pressure"
    assert nxt["status"] == "pending_approval"
    _, learned = await pair.api("GET", f"/api/v1/targets/learned?target={plan['target_key']}")
    assert [(k["knob"], k["verdict"]) for k in learned["learned"]] == [("gpu_memory_utilization", "no_effect")]
    # the harmful list is untouched: the knob is only learned as not helping this bottleneck
    _, blocked = await pair.api("GET", f"/api/v1/targets/blocked?target={plan['target_key']}")
    assert blocked["blocked"] == []


async def test_harmful_plan_is_rolled_back_on_its_guard_at_the_first_step(aiohttp_client, aiohttp_server, db_url):
    fake = FakePrometheus(HURTS)
    pair = await _pair(aiohttp_client, aiohttp_server, db_url, fake)
    await pair.post(notification(alert("fp-hurt")))
    plan = await _pushed(pair, fake)
    status, _ = await pair.api("POST", f"/api/v1/plans/{plan['plan_id']}/status", {"status": "rolling_out",
                                                                                   "step": 10})
    detail = await _status(pair, plan["plan_id"], "rolled_back")
    assert await pair.sink.wait_for(lambda s: len(s.rollbacks) == 1)
    step = next(a for a in detail["analyses"] if a["phase"] == "step-10")
    assert step["verdict"] == "worse" and TTFT in step["detail"]["reason"]
    rollback = next(iter(pair.sink.rollbacks.values()))
    assert rollback["reason"]["kind"] == "analysis" and rollback["reason"]["verdict"] == "worse"
    RollbackRequest.model_validate(rollback)  # the published orchestrator contract
    # the orchestrator's later reports are refused; the rollback stays the only one
    status, _ = await pair.api("POST", f"/api/v1/plans/{plan['plan_id']}/status", {"status": "completed"})
    assert status == 409
    await pair.idle()
    assert len([r for r in pair.sink.requests if r.path.endswith("/rollback")]) == 1
    status, blocked = await pair.api("GET", f"/api/v1/targets/blocked?target={plan['target_key']}")
    assert [b["knob"] for b in blocked["blocked"]] == ["gpu_memory_utilization"]


async def test_low_traffic_is_inconclusive_and_changes_nothing(aiohttp_client, aiohttp_server, tmp_path):
    fake = FakePrometheus(IDLE)
    pair = await _pair(aiohttp_client, aiohttp_server, f"sqlite:///{tmp_path}/r.db", fake)
    await pair.post(notification(alert("fp-idle")))
    plan = await _pushed(pair, fake)
    await _roll_out(pair, plan["plan_id"], steps=())

    async def analysed() -> bool:
        detail = (await pair.api("GET", f"/api/v1/plans/{plan['plan_id']}"))[1]
        return any(a["verdict"] for a in detail["analyses"])
    assert await eventually(analysed, 20)
    detail = (await pair.api("GET", f"/api/v1/plans/{plan['plan_id']}"))[1]
    assert detail["status"] == "completed"
    bake = next(a for a in detail["analyses"] if a["phase"] == "bake")
    assert bake["verdict"] == "inconclusive" and "too little traffic" in bake["detail"]["reason"]
    assert pair.sink.rollbacks == {} and len(pair.sink.plans) == 1


async def test_slo_burn_without_component_rolls_back(aiohttp_client, aiohttp_server, tmp_path):
    pair = await start_pair(aiohttp_client, aiohttp_server, f"sqlite:///{tmp_path}/r.db")
    await pair.post(notification(alert("fp-kv-slo")))
    assert await pair.sink.wait_for(lambda s: len(s.plans) == 1)
    await pair.idle()
    burn = alert("fp-burn", "2026-11-22T03:30:00.000Z", bottleneck="slo_burn", alertname="LLMSLOBurnRateFast",
                 slo="ttft")
    burn["labels"]["component"] = "engine"  # only the contract label says it is an SLO burn
    await pair.post(notification(burn))
    assert await pair.sink.wait_for(lambda s: len(s.rollbacks) == 1)
    assert (await pair.plans())[0]["status"] == "rolled_back"



async def test_an_analysis_survives_a_receiver_restart_and_acts_once(aiohttp_client, aiohttp_server, db_url):
    fake = FakePrometheus(HELPS)
    url = await _prometheus(aiohttp_server, fake)
    first = await start_pair(aiohttp_client, aiohttp_server, db_url, prometheus_url=url, analysis_window_seconds=2,
                             bake_seconds=3, cooldown_seconds=0)
    await first.post(notification(alert("fp-restart")))
    plan = await _pushed(first, fake)
    await _roll_out(first, plan["plan_id"], steps=())
    await first.client.close()  # the receiver stops before the bake time is over
    second = await start_pair(aiohttp_client, aiohttp_server, db_url, prometheus_url=url, analysis_window_seconds=2,
                              bake_seconds=3, cooldown_seconds=0)
    await second.post(notification(alert("fp-restart")))  # Alertmanager re-sends after the restart
    detail = await _status(second, plan["plan_id"], "verified")
    await asyncio.sleep(0.5)
    assert [a["phase"] for a in detail["analyses"]] == ["bake"]
    assert [a["to_status"] for a in detail["audit"]].count("verified") == 1
    assert len(await second.plans()) == 1 and second.sink.plans == {} and second.sink.rollbacks == {}


@pytest.mark.parametrize(("kv", "expected"), [(None, 0.9), (0.91, 0.9056), (0.99, 0.95)])
def test_the_step_follows_the_evidence_within_the_bounds(kv: float | None, expected: float) -> None:
    ep = AlertEpisode("f", "2026-11-22T03:00:00Z", {"bottleneck": "kv_cache_pressure", "namespace": "ml",
                                                    "pod": "p-0", "model": "m", "engine": "vllm"})
    # gpu_memory_utilization 0.85 (lever +0.05, cap 0.95; alert at KV 0.9): 0.91 grows the step by a ninth, 0.99
    # doubles it
    ctx = PlanningContext(now=datetime.now(UTC), engine_config={"gpu_memory_utilization": "0.85"}, signal_value=kv)
    plan = plan_for(ep, ctx)
    assert plan.actions[0].to == pytest.approx(expected)  # type: ignore[union-attr]
    # and within the bounds: from 0.9 the doubled step still stops at the cap
    ctx = PlanningContext(now=datetime.now(UTC), engine_config={"gpu_memory_utilization": "0.9"}, signal_value=kv)
    assert plan_for(ep, ctx).actions[0].to == pytest.approx(0.95)  # type: ignore[union-attr]


def test_a_bigger_queue_takes_a_bigger_step() -> None:
    ep = AlertEpisode("f", "2026-11-22T03:00:00Z", {"bottleneck": "queue_buildup", "namespace": "ml",
                                                    "pod": "p-0", "model": "m", "engine": "vllm"})
    steps = [plan_for(ep, PlanningContext(now=datetime.now(UTC), engine_config={"max_num_seqs": "64"},
                                          signal_value=v)).actions[0].to for v in (1.05, 3.0)]  # type: ignore
    # lever x1.5 against a 1 s queue p95: 1.05 s (5% past) makes it x1.75, 3 s (far past) x2
    assert steps == [112, 128]


async def test_no_other_change_lands_while_a_plan_is_being_analysed(aiohttp_client, aiohttp_server, tmp_path):
    fake = FakePrometheus(HELPS)
    url = await _prometheus(aiohttp_server, fake)
    pair = await start_pair(aiohttp_client, aiohttp_server, f"sqlite:///{tmp_path}/r.db", prometheus_url=url,
                            analysis_window_seconds=2, bake_seconds=4, cooldown_seconds=0)
    await pair.post(notification(alert("fp-first")))
    plan = await _pushed(pair, fake)
    await _roll_out(pair, plan["plan_id"], steps=())
    # another bottleneck on the same pod while the first change bakes: deferred, not planned (nor dropped)
    await pair.post(notification(alert("fp-other", bottleneck="decode_bound", alertname="LLMHighInterTokenLatency")))
    await pair.idle()
    other = next(e for e in await pair.episodes() if e["fingerprint"] == "fp-other")
    assert other["state"] == "deferred" and other["state_reason"].startswith(f"baking: plan {plan['plan_id']}")
    assert len(await pair.plans()) == 1
    await _status(pair, plan["plan_id"], "verified")
    # the bake is over and the alert still fires: now it is planned
    assert await eventually(lambda: len(pair.sink.plans) == 2, timeout=15)
    await pair.idle()
    other = next(e for e in await pair.episodes() if e["fingerprint"] == "fp-other")
    assert other["state"] == "planned"


async def test_an_slo_already_burning_before_the_plan_does_not_roll_it_back(aiohttp_client, aiohttp_server, tmp_path):
    pair = await start_pair(aiohttp_client, aiohttp_server, f"sqlite:///{tmp_path}/r.db")
    await pair.post(notification(slo_alert("fp-ttft-fast")))  # the TTFT SLO burns: the problem itself
    await pair.idle()
    await pair.post(notification(alert("fp-kv-burning")))
    assert await pair.sink.wait_for(lambda s: len(s.plans) == 1)
    await pair.idle()
    plan = (await pair.plans())[0]
    assert plan["document"]["rollback"]["except_slos"] == ["ttft"]
    await pair.post(notification(slo_alert("fp-ttft-slow", alertname="LLMSLOBurnRateSlow")))  # same SLO, later
    await pair.idle()
    assert pair.sink.rollbacks == {} and (await pair.plans())[0]["status"] == "pushed"
    other = slo_alert("fp-itl-fast", starts_at="2026-11-22T03:40:00.000Z")
    other["labels"]["slo"] = "inter-token"  # an SLO that was fine before the change
    await pair.post(notification(other))
    assert await pair.sink.wait_for(lambda s: len(s.rollbacks) == 1)
    assert (await pair.plans())[0]["status"] == "rolled_back"


_TTFT_CONFIG = """
slos:
  - name: chat-ttft
    sli: ttft
    threshold: 2.5
    objective: 0.99
    engines: [vllm]
    model: "llama|llama-.*"
"""


def _receiver_config(tmp_path: Any, *extra: str) -> Any:
    """The receiver's config as ``optiinfra receiver --slo-config FILE`` builds it."""
    path = tmp_path / "optiinfra.yaml"
    path.write_text(_TTFT_CONFIG, encoding="utf-8")
    args = build_parser().parse_args(["receiver", "--orchestrator-url", "http://orch", "--slo-config", str(path),
                                      *extra])
    return _config(args)[0]


def test_the_sli_of_every_slo_covering_the_target_guards_the_plan(tmp_path) -> None:
    config = _receiver_config(tmp_path)
    assert [s.name for s in config.slos] == ["chat-ttft"]
    guards = SloGuards(tuple(config.slos), tuple(config.slo_scope))

    def guard_names(labels: dict[str, str]) -> list[str]:
        ep = AlertEpisode("f", "2026-11-22T03:00:00Z", {"bottleneck": "kv_cache_pressure", "namespace": "ml",
                                                        "pod": "p-0", **labels})
        plan = plan_for(ep, PlanningContext(now=datetime.now(UTC), slo_guards=guards))
        return [g.name for g in plan.expected_impact.guards]  # type: ignore[union-attr]

    covered = guard_names({"model": "llama", "engine": "vllm"})
    assert covered == [TTFT, "llm_inter_token_latency_seconds", "llm_requests_errored_per_finished", TRAFFIC,
                       "slo:chat-ttft"]
    assert guard_names({"model": "llama-70b", "engine": "vllm"})[-1] == "slo:chat-ttft"
    assert guard_names({"model": "llama"})[-1] == "slo:chat-ttft"  # engine unknown: the SLO may apply
    assert "slo:chat-ttft" not in guard_names({"model": "mistral", "engine": "vllm"})  # another model's SLO
    assert "slo:chat-ttft" not in guard_names({"model": "llama", "engine": "tgi"})  # an engine it does not apply to

    ep = AlertEpisode("f", "2026-11-22T03:00:00Z", {"bottleneck": "kv_cache_pressure", "namespace": "ml",
                                                    "pod": "p-0", "model": "llama", "engine": "vllm"})
    plan = plan_for(ep, PlanningContext(now=datetime.now(UTC), slo_guards=guards))
    sli = plan.expected_impact.guards[-1]  # type: ignore[union-attr]
    # the SLO's own recorded counts at its scope (namespace, model): lower is better, the budget is noise
    assert sli.query == ('sum(slo:sli_errors:rate2m{slo="chat-ttft",namespace="ml",model="llama"}) / '
                         'sum(slo:sli_requests:rate2m{slo="chat-ttft",namespace="ml",model="llama"})')
    assert sli.better == "down" and sli.floor == pytest.approx(0.01) and sli.baseline_query is None
    # with pod in the scope, the changed pod's SLI against the model's other pods
    per_pod = SloGuards(tuple(config.slos), ("namespace", "pod", "model")).guards(plan.target)  # type: ignore[union-attr]
    assert per_pod[0].baseline_query == (
        'sum(slo:sli_errors:rate2m{slo="chat-ttft",namespace="ml",pod!="p-0",model="llama"}) / '
        'sum(slo:sli_requests:rate2m{slo="chat-ttft",namespace="ml",pod!="p-0",model="llama"})')


def test_the_receiver_reads_the_slos_from_its_config_file(tmp_path, capsys) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("slos:\n  - name: x\n    sli: ttft\n    objective: 0.99\n", encoding="utf-8")
    assert main(["receiver", "--orchestrator-url", "http://orch", "--slo-config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "needs a threshold" in err and len(err.strip().splitlines()) == 1  # one line, no traceback
    with pytest.raises(UsageError):
        _config(build_parser().parse_args(["receiver", "--orchestrator-url", "http://o", "--slo-config",
                                           str(tmp_path / "missing.yaml")]))
    # without a config file, the built-in SLOs (as the rules generator uses them)
    assert [s.name for s in ReceiverConfig(orchestrator_url="http://o").slos] == [
        s.name for s in load_config(None).slos]


async def test_a_plan_that_burns_the_covering_slo_is_rolled_back_on_its_sli(aiohttp_client, aiohttp_server,
                                                                             tmp_path):
    # the bottleneck's signal improves and every generic guard holds: only the SLO's SLI gets worse
    pair, fake = await _chat_pair(aiohttp_client, aiohttp_server, tmp_path, (0.002, 0.3))
    await pair.post(notification(alert("fp-sli")))
    plan = await _pushed(pair, fake)
    assert plan["document"]["expected_impact"]["guards"][-1]["name"] == "slo:chat-ttft"
    sli = await _rolled_back_on_the_sli_at_step_10(pair, plan)
    assert sli["target"]["before"] == pytest.approx(0.002) and sli["target"]["after"] == pytest.approx(0.3)
    assert any('slo="chat-ttft"' in q for q in fake.queries)


async def _chat_pair(aiohttp_client: Any, aiohttp_server: Any, tmp_path: Any,
                     sli: tuple[float, float]) -> tuple[Any, FakePrometheus]:
    """A receiver with the chat-ttft SLO whose change helps the signal; the SLO's bad ratio goes ``sli``."""
    fake = FakePrometheus({**HELPS, 'slo="chat-ttft"': sli})
    url = await _prometheus(aiohttp_server, fake)
    config = _receiver_config(tmp_path)
    pair = await start_pair(aiohttp_client, aiohttp_server, f"sqlite:///{tmp_path}/r.db", prometheus_url=url,
                            analysis_window_seconds=2, bake_seconds=0, cooldown_seconds=0, slos=config.slos,
                            slo_scope=config.slo_scope)
    return pair, fake


async def _rolled_back_on_the_sli_at_step_10(pair: Any, plan: dict[str, Any]) -> dict[str, Any]:
    """Report the first canary step; the analysis rolls the plan back on the chat-ttft guard. Its numbers."""
    status, _ = await pair.api("POST", f"/api/v1/plans/{plan['plan_id']}/status", {"status": "rolling_out",
                                                                                   "step": 10})
    assert status == 200
    detail = await _status(pair, plan["plan_id"], "rolled_back")
    step = next(a for a in detail["analyses"] if a["phase"] == "step-10")
    assert step["verdict"] == "worse" and "guard slo:chat-ttft" in step["detail"]["reason"]
    assert await pair.sink.wait_for(lambda s: len(s.rollbacks) == 1)
    assert next(iter(pair.sink.rollbacks.values()))["reason"]["kind"] == "analysis"
    return dict(next(g for g in step["detail"]["guards"] if g["name"] == "slo:chat-ttft"))


async def test_an_excepted_slo_still_guards_the_plan(aiohttp_client, aiohttp_server, tmp_path):
    # the chat-ttft SLO burns before the plan (5% of requests too slow) and the change makes it worse (30%)
    pair, fake = await _chat_pair(aiohttp_client, aiohttp_server, tmp_path, (0.05, 0.3))

    def burn(fingerprint: str, alertname: str, starts_at: str) -> dict[str, Any]:
        a = slo_alert(fingerprint, pod=None, alertname=alertname, starts_at=starts_at)
        a["labels"]["slo"] = "chat-ttft"
        return a

    await pair.post(notification(burn("fp-chat-fast", "LLMSLOBurnRateFast", "2026-11-22T02:50:00.000Z")))
    await pair.idle()
    await pair.post(notification(alert("fp-kv-chat")))
    plan = await _pushed(pair, fake)
    assert plan["document"]["rollback"]["except_slos"] == ["chat-ttft"]
    # one side: the burn it was made for does not roll it back, whichever of its alerts fires
    await pair.post(notification(burn("fp-chat-slow", "LLMSLOBurnRateSlow", "2026-11-22T03:05:00.000Z")))
    await pair.idle()
    assert pair.sink.rollbacks == {} and (await pair.plans())[0]["status"] == "pushed"
    slow = next(e for e in await pair.episodes() if e["fingerprint"] == "fp-chat-slow")
    assert slow["state"] == "no_rollback"
    # the other side: the change makes that SLO's SLI worse, and its guard rolls the plan back
    await _rolled_back_on_the_sli_at_step_10(pair, plan)


async def test_any_slo_burn_alert_of_the_contract_rolls_back_whatever_its_name(aiohttp_client, aiohttp_server,
                                                                              tmp_path):
    pair = await start_pair(aiohttp_client, aiohttp_server, f"sqlite:///{tmp_path}/r.db")
    await pair.post(notification(alert("fp-kv-own")))
    assert await pair.sink.wait_for(lambda s: len(s.plans) == 1)
    await pair.idle()
    # a team's own burn-rate rule, named its way: the contract label is what makes it an SLO burn
    await pair.post(notification(slo_alert("fp-own-burn", pod=None, alertname="ChatLatencyBudgetBurn")))
    assert await pair.sink.wait_for(lambda s: len(s.rollbacks) == 1)
    assert (await pair.plans())[0]["status"] == "rolled_back"
