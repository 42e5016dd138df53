"""The planner turns taxonomy alerts into engine-specific plans (docs/orchestrator-api.md) or diagnoses."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import jsonschema
import pytest
from conftest import REPO
from hypothesis import given, settings
from hypothesis import strategies as st

from optiinfra import metrics, taxonomy
from optiinfra.alertmanager import knobs
from optiinfra.alertmanager.plan import SCHEMA_PATH, Diagnosis, Plan, Target, schema_text
from optiinfra.alertmanager.planner import AlertEpisode, PlanningContext, plan_for, target_of
from optiinfra.engines import VOCABULARY, all_knobs
from optiinfra.metrics import ENGINES

NOW = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)
SCHEMA = json.loads(SCHEMA_PATH.read_text())
jsonschema.Draft202012Validator.check_schema(SCHEMA)
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA, format_checker=jsonschema.FormatChecker())
#: Every real flag the planner may emit, per engine (the engines' own launch flags; docs/plan-actions.md).
REAL_FLAGS = {
    "vllm": {"--gpu-memory-utilization", "--kv-cache-dtype", "--enable-prefix-caching", "--max-num-seqs",
             "--max-num-batched-tokens", "--quantization", "--tensor-parallel-size", "--speculative-config",
             "--kv-offloading-size", "--max-model-len", "--kv-cache-memory-bytes"},
    "sglang": {"--mem-fraction-static", "--kv-cache-dtype", "--disable-radix-cache", "--max-running-requests",
               "--schedule-conservativeness", "--chunked-prefill-size", "--max-prefill-tokens", "--quantization",
               "--tp-size", "--speculative-algorithm", "--enable-hierarchical-cache", "--schedule-policy",
               "--context-length"},
    "tgi": {"--cuda-memory-fraction", "--kv-cache-dtype", "PREFIX_CACHING", "--max-concurrent-requests",
            "--max-batch-prefill-tokens", "--quantize", "--num-shard", "--speculate", "--max-total-tokens"},
}
#: (bottleneck, engine) pairs where the engine has no knob for any of the entry's actions.
NO_PLAN = {("cache_inefficiency", "tgi")}


def episode(bottleneck: str, engine: str | None = "vllm", status: str = "firing", **extra: str) -> AlertEpisode:
    labels = {"alertname": taxonomy.get(bottleneck).alert if bottleneck in taxonomy.by_id() else "X",
              "bottleneck": bottleneck, "namespace": "llm", "pod": "vllm-0", "model": "llama", **extra}
    if engine:
        labels["engine"] = engine
    return AlertEpisode(fingerprint="f00d", starts_at="2026-11-22T02:55:00Z", labels=labels,
                        annotations={"summary": "s"}, status=status)  # type: ignore[arg-type]


def ctx(**kw: Any) -> PlanningContext:
    return PlanningContext(now=NOW, **kw)


def check_schema(plan: Plan) -> dict[str, Any]:
    document = plan.document()
    VALIDATOR.validate(document)
    assert Plan.model_validate(document) == plan
    return document


def test_schema_file_and_actions_doc_are_current() -> None:
    assert SCHEMA_PATH.read_text() == schema_text(), "run: make generate"
    assert (REPO / "docs" / "plan-actions.md").read_text() == knobs.markdown(), "run: make generate"


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("bottleneck", [b.id for b in taxonomy.BOTTLENECKS if b.plannable])
def test_every_plannable_bottleneck_and_engine(bottleneck: str, engine: str) -> None:
    result = plan_for(episode(bottleneck, engine), ctx())
    if (bottleneck, engine) in NO_PLAN:
        assert isinstance(result, Diagnosis)
        assert "has no" in result.reason and result.runbook_url.endswith(f"/{bottleneck}.md")
        return
    assert isinstance(result, Plan), getattr(result, "reason", "")
    check_schema(result)
    (action,) = result.actions
    if action.kind in ("engine_arg", "engine_env"):
        assert action.name in REAL_FLAGS[engine]
    assert result.target.engine == engine and result.bottleneck == bottleneck
    assert result.rollback.on_alerts == []  # every slo_burn alert of the contract, whatever its name
    assert result.runbook_url == taxonomy.get(bottleneck).runbook_url


def test_known_config_gives_current_to_new() -> None:
    plan = plan_for(episode("kv_cache_pressure"), ctx(engine_config={"gpu_memory_utilization": "0.9"}))
    assert isinstance(plan, Plan)
    document = check_schema(plan)
    assert document["actions"] == [{
        "kind": "engine_arg", "name": "--gpu-memory-utilization", "knob": "gpu_memory_utilization",
        "from": 0.9, "to": 0.95, "relative": False, "min_value": None, "max_value": None,
        "restart_required": True}]
    assert document["evidence"]["values"] == {"gpu_memory_utilization": 0.9}
    assert document["evidence"]["alerts"][0]["startsAt"] == "2026-11-22T02:55:00Z"
    impact = document["expected_impact"]
    assert (impact["metric"], impact["direction"]) == ("llm_preemptions_total", "down")
    assert impact["signal"]["query"] == (
        'max(pod_model:llm_kv_cache_usage_ratio:max{namespace="llm",pod="vllm-0",model="llama"})')
    assert impact["signal"]["better"] == "down"
    assert document["created_at"] == "2026-11-22T03:00:00Z"


def test_kv_memory_up_raises_kv_cache_memory_bytes_when_that_flag_is_in_effect() -> None:
    # vLLM ignores --gpu-memory-utilization while --kv-cache-memory-bytes is set (llm_engine_info labels as the
    # sidecar exports them from a real vLLM 0.32: both present).
    config = {"gpu_memory_utilization": "0.92", "kv_cache_memory_bytes": "2228224"}
    plan = plan_for(episode("kv_cache_pressure"), ctx(engine_config=config))
    assert isinstance(plan, Plan)
    action = plan.actions[0]
    assert (action.name, action.knob, action.from_, action.to) == (
        "--kv-cache-memory-bytes", "kv_cache_memory_bytes", 2228224, 4456448)
    # vLLM reports the unset flag as "None": then --gpu-memory-utilization is the one in effect
    plan = plan_for(episode("kv_cache_pressure"), ctx(engine_config={**config, "kv_cache_memory_bytes": "None"}))
    assert isinstance(plan, Plan) and plan.actions[0].name == "--gpu-memory-utilization"
    # a cooling kv_cache_memory_bytes does not fall back to the flag vLLM ignores
    plan = plan_for(episode("kv_cache_pressure"), ctx(engine_config=config,
                                                       cooling_knobs=frozenset({"kv_cache_memory_bytes"})))
    assert isinstance(plan, Plan) and plan.actions[0].name == "--kv-cache-dtype"


def test_step_is_clamped_to_the_cap_and_at_the_cap_the_next_action_wins() -> None:
    plan = plan_for(episode("kv_cache_pressure"), ctx(engine_config={"gpu_memory_utilization": "0.92"}))
    assert isinstance(plan, Plan) and plan.actions[0].to == 0.95
    plan = plan_for(episode("kv_cache_pressure"), ctx(engine_config={"gpu_memory_utilization": "0.95"}))
    assert isinstance(plan, Plan)
    assert plan.actions[0].name == "--kv-cache-dtype" and plan.actions[0].to == "fp8"
    assert plan.risk == "medium" and plan.requires_approval
    assert "cap" in plan.rationale


def test_unknown_config_gives_a_relative_change_with_bounds() -> None:
    plan = plan_for(episode("kv_cache_pressure", "sglang"), ctx())
    assert isinstance(plan, Plan)
    action = check_schema(plan)["actions"][0]
    assert action["name"] == "--mem-fraction-static" and action["from"] is None
    assert action["to"] == "+0.02" and action["relative"] is True and action["max_value"] == 0.95
    plan = plan_for(episode("preemption_storm", "vllm"), ctx())
    assert isinstance(plan, Plan) and plan.actions[0].to == "x0.75" and plan.actions[0].relative


def test_normalized_engine_info_labels_feed_other_engines() -> None:
    # SGLang's max_running_requests is exported as llm_engine_info{max_num_seqs}.
    plan = plan_for(episode("preemption_storm", "sglang"), ctx(engine_config={"max_num_seqs": "100"}))
    assert isinstance(plan, Plan)
    assert (plan.actions[0].name, plan.actions[0].from_, plan.actions[0].to) == ("--max-running-requests", 100, 75)
    # SGLang's radix cache switch is the negation of enable_prefix_caching.
    plan = plan_for(episode("prefill_bound", "sglang"),
                    ctx(engine_config={"enable_prefix_caching": "false"},
                        cooling_knobs=frozenset({"chunked_prefill_size"})))
    assert isinstance(plan, Plan)
    assert (plan.actions[0].name, plan.actions[0].from_, plan.actions[0].to) == ("--disable-radix-cache", True, False)


def test_engine_config_precedes_alert_labels() -> None:
    ep = episode("kv_cache_pressure", gpu_memory_utilization="0.8")
    plan = plan_for(ep, ctx(engine_config={"gpu_memory_utilization": "0.9"}))
    assert isinstance(plan, Plan) and plan.actions[0].from_ == 0.9
    plan = plan_for(ep, ctx())
    assert isinstance(plan, Plan) and (plan.actions[0].from_, plan.actions[0].to) == (0.8, 0.85)


def test_vllm_constraint_violation_moves_to_the_next_action() -> None:
    # Raising max_num_seqs to 384 would break max_num_batched_tokens (256) >= max_num_seqs.
    config = {"max_num_seqs": "256", "max_num_batched_tokens": "256"}
    plan = plan_for(episode("queue_buildup"), ctx(engine_config=config))
    assert isinstance(plan, Plan)
    assert (plan.actions[0].name, plan.actions[0].from_, plan.actions[0].to) == ("--max-num-batched-tokens", 256, 512)
    assert "max_num_seqs=384 must be <= max_num_batched_tokens=256" in plan.rationale


def test_tgi_constraint_violation_and_no_action_left_gives_a_diagnosis() -> None:
    config = {"max_input_tokens": "4095", "max_total_tokens": "4096", "max_batch_total_tokens": "8192",
              "max_batch_prefill_tokens": "8192"}
    # prefill_bound on TGI: --max-batch-prefill-tokens x2 = 16384 > max_batch_total_tokens; prefix caching is
    # on by default and not known here -> nothing valid remains.
    result = plan_for(episode("prefill_bound", "tgi"), ctx(engine_config=config))
    assert isinstance(result, Diagnosis)
    assert "max_batch_prefill_tokens=16384 must be <= max_batch_total_tokens=8192" in result.reason
    assert "prefix_caching unknown" in result.reason
    # cuda_oom: halving max_total_tokens to 2048 would break max_input_tokens < max_total_tokens.
    blocked = frozenset({"cuda_memory_fraction", "max_batch_prefill_tokens"})
    result = plan_for(episode("cuda_oom", "tgi"), ctx(engine_config=config, blocked_knobs=blocked))
    assert isinstance(result, Diagnosis)
    assert "max_input_tokens=4095 must be < max_total_tokens=2048" in result.reason


def test_violations_cover_fractions_and_integers() -> None:
    assert VOCABULARY["vllm"].violations({"gpu_memory_utilization": 1.2})
    assert VOCABULARY["vllm"].violations({"gpu_memory_utilization": 0.0})
    assert not VOCABULARY["tgi"].violations({"cuda_memory_fraction": 1.0})
    assert VOCABULARY["sglang"].violations({"max_running_requests": 0})
    assert not VOCABULARY["sglang"].violations({"chunked_prefill_size": -1})
    assert not VOCABULARY["vllm"].violations({"max_num_seqs": 256, "max_num_batched_tokens": 8192})


def test_blocked_and_cooling_knobs_are_skipped() -> None:
    plan = plan_for(episode("kv_cache_pressure"), ctx(blocked_knobs=frozenset({"gpu_memory_utilization"})))
    assert isinstance(plan, Plan) and plan.actions[0].knob == "cache_dtype"
    assert "rolled back" in plan.rationale
    plan = plan_for(episode("kv_cache_pressure"), ctx(cooling_knobs=frozenset({"gpu_memory_utilization"})))
    assert isinstance(plan, Plan) and plan.actions[0].knob == "cache_dtype"
    assert "cooldown" in plan.rationale
    result = plan_for(episode("engine_down"), ctx(cooling_knobs=frozenset({"restart"})))
    assert isinstance(result, Diagnosis) and "cooldown" in result.reason


def test_already_applied_set_actions_are_skipped() -> None:
    config = {"gpu_memory_utilization": "0.95", "cache_dtype": "fp8_e4m3", "enable_prefix_caching": "true",
              "max_num_seqs": "1"}
    plan = plan_for(episode("kv_cache_pressure"), ctx(engine_config=config))
    assert isinstance(plan, Plan)
    assert (plan.actions[0].name, plan.actions[0].to) == ("--quantization", "fp8")
    assert plan.risk == "high" and plan.status == "pending_approval"
    config["quantization"] = "awq"
    plan = plan_for(episode("kv_cache_pressure"), ctx(engine_config=config, auto_approve_low_risk=True))
    assert isinstance(plan, Plan) and plan.actions[0].kind == "scale" and plan.actions[0].to == "+1"
    assert plan.risk == "high" and plan.requires_approval


@pytest.mark.parametrize("bottleneck", ["request_errors", "gpu_xid_error", "gpu_ecc_error", "host_oom_kill",
                                        "host_cpu_saturation", "gpu_memory_pressure", "exporter_down"])
def test_entries_without_actions_are_diagnoses_with_runbook(bottleneck: str) -> None:
    result = plan_for(episode(bottleneck), ctx())
    assert isinstance(result, Diagnosis)
    entry = taxonomy.get(bottleneck)
    assert result.runbook_url == entry.runbook_url and result.manual == entry.manual and result.manual
    assert result.severity == entry.severity and result.summary == entry.summary
    json.dumps(result.document())


def test_slo_unknown_resolved_and_unlocatable_alerts_are_diagnoses() -> None:
    assert "SLO" in plan_for(episode("slo_burn"), ctx()).reason  # type: ignore[union-attr]
    assert "not in the taxonomy" in plan_for(episode("nope"), ctx()).reason  # type: ignore[union-attr]
    resolved = plan_for(episode("kv_cache_pressure", status="resolved"), ctx())
    assert isinstance(resolved, Diagnosis) and "resolved" in resolved.reason
    nowhere = AlertEpisode(fingerprint="f", starts_at="t", labels={"bottleneck": "engine_down"})
    assert isinstance(plan_for(nowhere, ctx()), Diagnosis)


def test_engine_from_engine_info_when_the_alert_has_no_engine_label() -> None:
    result = plan_for(episode("cuda_oom", engine=None), ctx())
    assert isinstance(result, Diagnosis) and "engine is unknown" in result.reason
    plan = plan_for(episode("cuda_oom", engine=None),
                    ctx(engine_config={"engine": "vllm", "model": "llama", "gpu_memory_utilization": "0.9"}))
    assert isinstance(plan, Plan) and plan.target.engine == "vllm"
    assert plan.target.key() == target_of(episode("cuda_oom", engine=None).labels).key()  # type: ignore[union-attr]
    assert (plan.actions[0].from_, plan.actions[0].to) == (0.9, 0.85)


def test_risk_decides_approval() -> None:
    low = plan_for(episode("kv_cache_pressure"), ctx(auto_approve_low_risk=True))
    assert isinstance(low, Plan) and low.risk == "low"
    assert not low.requires_approval and low.status == "approved"
    manual = plan_for(episode("kv_cache_pressure"), ctx())
    assert isinstance(manual, Plan) and manual.requires_approval and manual.status == "pending_approval"
    lpm = plan_for(episode("cache_inefficiency", "sglang"),
                   ctx(auto_approve_low_risk=True, blocked_knobs=frozenset({"enable_hierarchical_cache"})))
    assert isinstance(lpm, Plan) and lpm.actions[0].name == "--schedule-policy" and lpm.actions[0].to == "lpm"
    assert lpm.risk == "medium" and lpm.requires_approval


def test_idempotency_key_is_stable_per_episode_and_action() -> None:
    first = plan_for(episode("kv_cache_pressure"), ctx())
    again = plan_for(episode("kv_cache_pressure"), ctx())
    other = plan_for(episode("kv_cache_pressure"), ctx(blocked_knobs=frozenset({"gpu_memory_utilization"})))
    assert isinstance(first, Plan) and isinstance(again, Plan) and isinstance(other, Plan)
    assert first.idempotency_key == again.idempotency_key != other.idempotency_key
    assert first.plan_id != again.plan_id
    labels = episode("kv_cache_pressure").labels
    later = AlertEpisode(fingerprint="f00d", starts_at="2026-11-22T04:00:00Z", labels=labels)
    moved = plan_for(later, ctx())
    assert isinstance(moved, Plan) and moved.idempotency_key != first.idempotency_key


def test_rollout_and_rollback_come_from_the_context() -> None:
    plan = plan_for(episode("queue_buildup"), ctx(slos=("ttft",), rollout_steps=(25, 100), bake_seconds=5))
    assert isinstance(plan, Plan)
    assert plan.rollout.model_dump() == {"strategy": "canary", "steps": [25, 100], "bake_seconds": 5}
    assert plan.rollback.on_slos == ["ttft"]
    default = plan_for(episode("queue_buildup"), ctx())
    assert isinstance(default, Plan) and default.rollback.on_slos == ["*"]
    assert default.rollout.steps == [10, 50, 100] and default.rollout.bake_seconds == 600
    restart = plan_for(episode("engine_stalled"), ctx())
    assert isinstance(restart, Plan) and restart.rollout.strategy == "recreate" and restart.rollout.steps == [100]
    check_schema(restart)


def test_target_key_and_labels() -> None:
    target = target_of({"namespace": "llm", "pod": "vllm-0", "engine": "vllm", "model": "m"})
    assert target == Target(namespace="llm", pod="vllm-0", engine="vllm", model="m")
    assert target.key() == "llm/vllm-0/m"
    assert Target(namespace="llm", pod="p", deployment="d").key() == "llm/d/-"
    bare = target_of({"instance": "127.0.0.1:9400", "engine": "lmcache"})
    assert bare is not None and bare.engine is None and bare.key() == "-/127.0.0.1:9400/-"
    assert target_of({"job": "x"}) is None


def test_schema_rejects_malformed_plans() -> None:
    plan = plan_for(episode("kv_cache_pressure"), ctx())
    assert isinstance(plan, Plan)
    document = plan.document()
    for broken in ({**document, "status": "done"}, {**document, "actions": []},
                   {**document, "risk": "extreme"}, {k: v for k, v in document.items() if k != "rollback"}):
        with pytest.raises(jsonschema.ValidationError):
            VALIDATOR.validate(broken)


def test_relative_change_carries_bounds_from_related_known_values() -> None:
    # max_num_seqs unknown, max_num_batched_tokens known: the orchestrator may raise seqs up to 2048 only.
    plan = plan_for(episode("queue_buildup"), ctx(engine_config={"max_num_batched_tokens": "2048"}))
    assert isinstance(plan, Plan)
    action = check_schema(plan)["actions"][0]
    assert (action["name"], action["to"], action["min_value"], action["max_value"]) == (
        "--max-num-seqs", "x1.5", 1, 2048)
    # TGI max_total_tokens unknown: halving it must keep it above max_input_tokens.
    plan = plan_for(episode("cuda_oom", "tgi"),
                    ctx(engine_config={"max_input_tokens": "4095"},
                        blocked_knobs=frozenset({"cuda_memory_fraction", "max_batch_prefill_tokens"})))
    assert isinstance(plan, Plan)
    assert (plan.actions[0].name, plan.actions[0].min_value) == ("--max-total-tokens", 4096)


def test_schema_rejects_a_relative_action_with_an_absolute_value() -> None:
    plan = plan_for(episode("preemption_storm"), ctx())
    assert isinstance(plan, Plan)
    document = plan.document()
    document["actions"][0]["to"] = 0.5
    with pytest.raises(jsonschema.ValidationError):
        VALIDATOR.validate(document)


@pytest.mark.parametrize("steps", [(), (50, 10, 100), (10, 50), (0, 100)])
def test_context_rejects_bad_rollout_steps(steps: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="rollout steps"):
        ctx(rollout_steps=steps)


def test_knob_catalogue_covers_every_taxonomy_action_per_engine() -> None:
    used = {a for b in taxonomy.BOTTLENECKS for a in b.actions}
    for action in used:
        for engine in ENGINES:
            covered = (VOCABULARY[engine].candidates(action) or action in knobs.OPS_ACTIONS
                       or action in VOCABULARY[engine].no_knob)
            assert covered, (action, engine)
    for knob in all_knobs():
        assert knob.setting.flag in REAL_FLAGS[knob.engine], knob
        assert knob.lever.risk in ("low", "medium", "high")
        if knob.lever.action in ("weight_quantization_fp8", "tensor_parallel_up", "tensor_parallel_down"):
            assert knob.lever.risk == "high", knob
    lookups = {lk.lstrip("!") for vocab in VOCABULARY.values() for s in vocab.settings for lk in s.lookups}
    # Every llm_engine_info config label the planner can use is read for some engine.
    assert {"gpu_memory_utilization", "cache_dtype", "enable_prefix_caching", "max_num_seqs",
            "max_num_batched_tokens", "max_model_len", "tensor_parallel_size", "quantization"} <= lookups


def test_expected_impact_names_catalogue_metrics() -> None:
    names = {m.name for m in metrics.ALL_METRICS}
    for bottleneck in taxonomy.BOTTLENECKS:
        if bottleneck.plannable:
            assert bottleneck.plan is not None
            assert bottleneck.plan.metric in names and bottleneck.plan.direction in ("up", "down")
            result = plan_for(episode(bottleneck.id, "vllm"), ctx())
            if isinstance(result, Plan):
                assert result.expected_impact.metric == bottleneck.plan.metric


def _config_values(engine: str) -> st.SearchStrategy[dict[str, str]]:
    values: dict[str, st.SearchStrategy[str]] = {}
    for setting in VOCABULARY[engine].settings:  # type: ignore[index]
        key, kind = setting.key, setting.type
        if kind == "float":
            values[key] = st.floats(0.05, 1.2).map(lambda v: f"{v:.3f}")
        elif kind == "int":
            values[key] = st.integers(-1, 70000).map(str)
        elif kind == "bool":
            values[key] = st.sampled_from(["true", "false", "True", "None"])
        else:
            values[key] = st.sampled_from(["auto", "fp8", "fp8_e5m2", "None", "awq", "lpm", "fcfs", ""])
    return st.fixed_dictionaries({}, optional=values)


@st.composite
def planning_inputs(draw: st.DrawFn) -> tuple[AlertEpisode, PlanningContext]:
    engine = draw(st.sampled_from(ENGINES))
    bottleneck = draw(st.sampled_from([b.id for b in taxonomy.BOTTLENECKS]))
    config = draw(_config_values(engine))
    all_knob_ids = sorted({k.setting.key for k in all_knobs()} | {"replicas", "restart"})
    blocked = draw(st.frozensets(st.sampled_from(all_knob_ids), max_size=4))
    cooling = draw(st.frozensets(st.sampled_from(all_knob_ids), max_size=4))
    return episode(bottleneck, engine), ctx(engine_config=config, blocked_knobs=blocked, cooling_knobs=cooling,
                                            auto_approve_low_risk=draw(st.booleans()))


@settings(max_examples=300, deadline=None)
@given(planning_inputs())
def test_every_plan_is_valid_for_any_known_config(inputs: tuple[AlertEpisode, PlanningContext]) -> None:
    ep, context = inputs
    result = plan_for(ep, context)
    if isinstance(result, Diagnosis):
        assert result.reason
        return
    check_schema(result)
    (action,) = result.actions
    assert action.knob not in context.blocked_knobs | context.cooling_knobs
    engine = result.target.engine
    assert engine is not None
    if action.relative:
        assert action.from_ is None
        if action.min_value is not None and action.max_value is not None:
            assert action.min_value <= action.max_value
    elif action.kind in ("engine_arg", "engine_env"):
        known = VOCABULARY[engine].current_config(context.engine_config)
        assert VOCABULARY[engine].violations({**known, action.knob: action.to}) == []
        assert action.to != action.from_
    assert result.requires_approval == (result.risk != "low" or not context.auto_approve_low_risk)


def test_only_when_unset_knobs_are_read_not_proposed_blind() -> None:
    """kv_offloading_size (vllm:cache_config_info) and SGLang's schedule settings (/get_server_info) reach
    llm_engine_info, so a knob already set is not proposed again."""
    from optiinfra.alertmanager.planner import AlertEpisode, PlanningContext, plan_for

    def run(engine: str, config: dict[str, str]) -> Plan | Diagnosis:
        ep = AlertEpisode("f", "2026-11-22T03:00:00Z", {"bottleneck": "cache_inefficiency", "namespace": "ml",
                                                        "pod": "p-0", "model": "m", "engine": engine})
        return plan_for(ep, PlanningContext(now=datetime.now(UTC), engine_config=config))

    fresh = run("vllm", {"kv_offloading_size": "None"})
    assert isinstance(fresh, Plan) and fresh.actions[0].name == "--kv-offloading-size"
    offloading = run("vllm", {"kv_offloading_size": "4.0"})
    assert isinstance(offloading, Diagnosis) and "already set to 4.0" in offloading.reason
    from optiinfra.exporter.collectors.engine import map_info

    labels = map_info("sglang", {"enable_hierarchical_cache": True, "schedule_policy": "lpm", "version": "0.5.16"})
    assert labels == {"enable_hierarchical_cache": "True", "schedule_policy": "lpm", "version": "0.5.16"}
    sglang = run("sglang", labels)
    assert isinstance(sglang, Diagnosis)
    assert "already True" in sglang.reason and "already lpm" in sglang.reason
