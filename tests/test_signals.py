"""The bottleneck spec (optiinfra.signals): a new bottleneck is one taxonomy row carrying its spec, and everything
else (alert, promtool cases, dashboard row, runbook, planner actions) is derived from it."""

from __future__ import annotations

import subprocess
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType

import pytest
import yaml
from conftest import require_binary

from optiinfra import signals as sg
from optiinfra import taxonomy as tx
from optiinfra.alertmanager.plan import Diagnosis, Plan
from optiinfra.alertmanager.planner import AlertEpisode, PlanningContext, plan_for
from optiinfra.config import load_config
from optiinfra.grafana.dashboards import bottlenecks
from optiinfra.rules.generate import RULES_FILE, generate, write
from optiinfra.rules.runbooks import runbooks
from optiinfra.rules.testgen import TEST_FILES, Kit
from optiinfra.signals import Cases, Fixture

PROMPT_RATE = sg.rule("pod_model:llm_prompt_tokens:rate5m", "prompt tokens/s {{pod}} {{model}}")


def _prompt_flood_fixture(k: Kit) -> Cases:
    limit = k.thr("prompt_tokens_per_second")
    prompt = f"llm_prompt_tokens_total{k.lbl(k.eng)}"
    return Cases(fires=Fixture({prompt: k.counter(limit * 2), **k.traffic}, [(k.pod_model, limit * 2)]),
                 quiet=Fixture({prompt: k.counter(limit / 2), **k.traffic}),
                 idle=Fixture({prompt: k.counter(limit * 2), **k.no_traffic}))


#: A bottleneck that exists nowhere in the code base: one taxonomy row carrying its spec.
PROMPT_FLOOD = tx.Bottleneck(
    "prompt_flood", "LLMPromptFlood", "warning", "engine", "metric",
    "prompt tokens above 5000/s with traffic", "5m",
    MappingProxyType({"prompt_tokens_per_second": tx.Threshold(5000, "1/s", "prompt rate that floods prefill")}),
    "Prompts arrive faster than prefill can take them.",
    "{{ $labels.model }} on {{ $labels.pod }} reads {{ $value | humanize }} prompt tokens/s.",
    identity=("engine", "model"),
    condition=sg.Condition(sg.Term(PROMPT_RATE, ">", "prompt_tokens_per_second"), traffic=True),
    panel=sg.Panel("short", context=(sg.TRAFFIC,), context_title="Traffic (guard)", context_unit="reqps"),
    fixture=_prompt_flood_fixture,
    runbook=sg.Runbook("Prompt tokens arrive above {prompt_tokens_per_second:g}/s: prefill cannot keep up.",
                       "{instance}: `pod_model:llm_prompt_tokens:rate5m` against the threshold."),
    plan=sg.Plan(("max_num_seqs_down", "scale_out"), "llm_prompt_tokens_total", "down"),
)
CATALOGUE = (*tx.BOTTLENECKS, PROMPT_FLOOD)


def test_a_new_bottleneck_gets_an_alert_rule_from_its_spec() -> None:
    files = generate(load_config(None), catalogue=CATALOGUE)
    rules = [r for g in yaml.safe_load(files[RULES_FILE])["groups"] for r in g["rules"]
             if r.get("alert") == "LLMPromptFlood"]
    assert len(rules) == 1
    (rule,) = rules
    assert rule["expr"] == ("pod_model:llm_prompt_tokens:rate5m > 5000\n"
                            "and on (namespace, pod, instance, engine, model) "
                            "pod_model:llm_requests_finished:rate5m >= 0.01")
    assert rule["for"] == "5m" and rule["labels"]["bottleneck"] == "prompt_flood"
    assert rule["annotations"]["runbook_url"].endswith("/prompt_flood.md")
    # Adding it changes nothing else: without the new rule, the rule file is the catalogue's own.
    after = yaml.safe_load(files[RULES_FILE])["groups"]
    for group in after:
        group["rules"] = [r for r in group["rules"] if r.get("alert") != "LLMPromptFlood"]
    assert after == yaml.safe_load(generate(load_config(None))[RULES_FILE])["groups"]


def test_a_new_bottleneck_gets_promtool_cases_that_pass(tmp_path: Path) -> None:
    promtool = require_binary("promtool")
    files = generate(load_config(None), catalogue=(PROMPT_FLOOD,))
    health = yaml.safe_load(files[TEST_FILES[1]])
    cases = {t["name"]: t for t in health["tests"]}
    assert set(cases) == {f"LLMPromptFlood[warning] {what}" for what in ("fires", "quiet", "idle")}
    fired = cases["LLMPromptFlood[warning] fires"]["alert_rule_test"][0]["exp_alerts"]
    assert [a["exp_labels"]["bottleneck"] for a in fired] == ["prompt_flood"]
    assert fired[0]["exp_annotations"]["description"] == "m on pod-0 reads 10k prompt tokens/s."
    for quiet in ("quiet", "idle"):
        assert cases[f"LLMPromptFlood[warning] {quiet}"]["alert_rule_test"][0]["exp_alerts"] == []
    write(tmp_path, files)
    proc = subprocess.run([promtool, "test", "rules", TEST_FILES[1]], cwd=tmp_path, capture_output=True,
                          text=True, check=False)
    assert proc.returncode == 0 and "SUCCESS" in proc.stdout, proc.stdout + proc.stderr


def test_promtool_catches_a_fixture_that_does_not_match_the_condition(tmp_path: Path) -> None:
    promtool = require_binary("promtool")

    def fires_below_threshold(k: Kit) -> Cases:
        cases = _prompt_flood_fixture(k)
        return replace(cases, fires=Fixture(cases.quiet.series, cases.fires.alerts))

    broken = replace(PROMPT_FLOOD, fixture=fires_below_threshold)
    write(tmp_path, generate(load_config(None), catalogue=(broken,)))
    proc = subprocess.run([promtool, "test", "rules", TEST_FILES[1]], cwd=tmp_path, capture_output=True,
                          text=True, check=False)
    assert proc.returncode != 0 and "LLMPromptFlood[warning] fires" in proc.stdout + proc.stderr


def test_a_new_bottleneck_gets_a_dashboard_row_showing_what_the_alert_evaluates() -> None:
    board = bottlenecks(load_config(None), CATALOGUE).to_dict()
    rows = [p["title"] for p in board["panels"] if p["type"] == "row"]
    assert rows[-1] == "prompt_flood — LLMPromptFlood (warning)"
    by_title = {p["title"]: p for p in board["panels"]}
    signal = by_title["prompt_flood: signal"]
    assert signal["targets"][0]["expr"].startswith("pod_model:llm_prompt_tokens:rate5m{")
    assert signal["fieldConfig"]["defaults"]["thresholds"]["steps"][1]["value"] == 5000
    assert signal["links"][0]["url"] == PROMPT_FLOOD.runbook_url
    guard = by_title["prompt_flood: traffic (guard)"]
    assert guard["targets"][0]["expr"].startswith("pod_model:llm_requests_finished:rate5m{")
    assert 'bottleneck="prompt_flood"' in by_title["prompt_flood: firing"]["targets"][0]["expr"]


def test_a_new_bottleneck_gets_a_runbook_stating_its_threshold() -> None:
    text = runbooks((PROMPT_FLOOD,))[f"{PROMPT_FLOOD.id}.md"]
    assert text.startswith("# LLMPromptFlood (`prompt_flood`)")
    assert "Prompt tokens arrive above 5000/s: prefill cannot keep up." in text
    assert "- `prompt_tokens_per_second` = 5000 1/s: prompt rate that floods prefill" in text
    assert "OptiInfra / Instance: `pod_model:llm_prompt_tokens:rate5m`" in text
    assert "1. `max_num_seqs_down`" in text and "2. `scale_out`" in text


def test_a_new_plannable_bottleneck_gets_planner_actions() -> None:
    labels = {"alertname": "LLMPromptFlood", "bottleneck": "prompt_flood", "namespace": "llm", "pod": "vllm-0",
              "engine": "vllm", "model": "llama"}
    episode = AlertEpisode(fingerprint="f", starts_at="2026-11-22T02:55:00Z", labels=labels)
    context = PlanningContext(now=datetime(2026, 11, 22, 3, 0, tzinfo=UTC), engine_config={"max_num_seqs": "256"})
    plan = plan_for(episode, context, CATALOGUE)
    assert isinstance(plan, Plan), getattr(plan, "reason", "")
    assert (plan.actions[0].name, plan.actions[0].from_) == ("--max-num-seqs", 256)
    assert plan.expected_impact.metric == "llm_prompt_tokens_total" and plan.expected_impact.direction == "down"
    # the knob is held: the next action of the spec's order is proposed
    plan = plan_for(episode, replace(context, blocked_knobs=frozenset({"max_num_seqs"})), CATALOGUE)
    assert isinstance(plan, Plan) and plan.actions[0].kind == "scale"
    # without the catalogue entry it is unknown: a diagnosis, not a KeyError
    assert isinstance(plan_for(episode, context), Diagnosis)


def test_a_plan_without_actions_cannot_be_defined() -> None:
    with pytest.raises(sg.SpecError, match="at least one action"):
        sg.Plan((), "llm_preemptions_total", "down")
    with pytest.raises(sg.SpecError, match=r"not in optiinfra\.metrics"):
        sg.Plan(("restart_pod",), "llm_no_such_metric", "up")


def test_a_spec_that_does_not_fit_its_row_fails_when_the_row_is_built() -> None:
    with pytest.raises(sg.SpecError, match="unknown threshold"):
        replace(PROMPT_FLOOD, thresholds=MappingProxyType({}))
    with pytest.raises(sg.SpecError, match="does not match"):
        replace(PROMPT_FLOOD, signal="metric+log")
    with pytest.raises(sg.SpecError, match="runbook text names an unknown field"):
        replace(PROMPT_FLOOD, runbook=sg.Runbook("{no_such_threshold:g}", ""))
    with pytest.raises(sg.SpecError, match="panel and a fixture"):
        replace(PROMPT_FLOOD, fixture=None)
    custom = sg.Custom(lambda ctx, b: {b.severity: ["vector(1)"]})
    with pytest.raises(sg.SpecError, match="must name its series"):
        replace(PROMPT_FLOOD, condition=custom)


def test_every_panel_threshold_is_its_alerts_threshold() -> None:
    """By construction: a row's threshold line is the main term's threshold of the alert condition."""
    config = load_config(None)
    by_title = {p["title"]: p for p in bottlenecks(config).to_dict()["panels"]}
    checked = 0
    for b in tx.BOTTLENECKS:
        cond = b.condition
        if not isinstance(cond, sg.Condition) or not isinstance(cond.main.threshold, str):
            continue
        steps = by_title[f"{b.id}: signal"]["fieldConfig"]["defaults"]["thresholds"]["steps"]
        value = config.threshold(b, cond.main.threshold)
        assert steps[1]["value"] == pytest.approx(1 - value if cond.main.series.complement else value), b.id
        checked += 1
    assert checked >= 10
