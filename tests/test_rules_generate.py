"""The committed rules: current, valid for promtool, and unit-tested by the generated promtool tests."""

from __future__ import annotations

import re
import subprocess
from collections import Counter
from pathlib import Path

import pytest
import yaml
from conftest import REPO, require_binary

from optiinfra import taxonomy as tx
from optiinfra.config import SCHEMA_PATH, load_config, render_schema
from optiinfra.rules.check import check_path
from optiinfra.rules.generate import OPERATOR_FILE, RULES_FILE, generate, write
from optiinfra.rules.testgen import TEST_FILES

GENERATED = REPO / "rules" / "generated"


def _load(name: str) -> dict:
    return yaml.safe_load((GENERATED / name).read_text(encoding="utf-8"))


def test_committed_rules_are_current() -> None:
    for name, text in generate(load_config(None)).items():
        path = GENERATED / name
        assert path.exists(), f"{path} missing: run `make generate`"
        assert path.read_text(encoding="utf-8") == text, f"{path} is stale: run `make generate`"


def test_published_schema_is_current() -> None:
    assert SCHEMA_PATH.read_text(encoding="utf-8") == render_schema(), "run `make generate`"


def test_promtool_check_rules_passes_on_generated() -> None:
    promtool = require_binary("promtool")
    proc = subprocess.run([promtool, "check", "rules", str(GENERATED / RULES_FILE)],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def run_promtool_tests(directory: Path) -> None:
    """``promtool test rules`` on every generated test file, in parallel; fails with promtool's output."""
    promtool = require_binary("promtool")
    procs = [subprocess.Popen([promtool, "test", "rules", name], cwd=directory, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for name in TEST_FILES]
    for name, proc in zip(TEST_FILES, procs, strict=True):
        out, _ = proc.communicate()
        assert proc.returncode == 0, f"{name}:\n{out[-6000:]}"
        assert "SUCCESS" in out


def test_promtool_unit_tests_pass_on_generated() -> None:
    run_promtool_tests(GENERATED)


def test_every_alert_rule_has_fires_quiet_and_idle_cases() -> None:
    rules = [r for g in _load(RULES_FILE)["groups"] for r in g["rules"] if "alert" in r]
    tests = [t for name in TEST_FILES for t in _load(name)["tests"]]
    kinds: dict[str, Counter[str]] = {}
    for test in tests:
        match = re.match(r"^(\w+\[[\w-]+\]) (.+)$", test["name"])
        if match:
            kinds.setdefault(match.group(1), Counter())[match.group(2)] += 1
    for rule in rules:
        tag = rule["alert"] + "[" + rule["labels"].get("slo", rule["labels"]["severity"]) + "]"
        assert {"fires", "quiet", "idle"} <= set(kinds.get(tag, {})), f"{tag}: missing cases in {kinds.get(tag)}"
    fires = [t for t in tests if t["name"].endswith(" fires")]
    assert all(t["alert_rule_test"][0]["exp_alerts"] for t in fires), "a 'fires' case expects no alert"
    quiet = [t for t in tests if t["name"].endswith((" quiet", " idle"))]
    assert all(not t["alert_rule_test"][0]["exp_alerts"] for t in quiet)


def test_every_bottleneck_has_an_alert_with_the_contract_annotations() -> None:
    rules = [r for g in _load(RULES_FILE)["groups"] for r in g["rules"] if "alert" in r]
    by_bottleneck = {r["labels"]["bottleneck"] for r in rules}
    assert {b.id for b in tx.BOTTLENECKS} | {tx.SLO_BURN} == by_bottleneck
    for rule in rules:
        for key in ("summary", "description", "runbook_url"):
            assert rule["annotations"][key]
        url = rule["annotations"]["runbook_url"]
        assert url.startswith(tx.RUNBOOK_BASE_URL + "/")


def test_operator_manifest_wraps_the_same_groups() -> None:
    manifest = _load(OPERATOR_FILE)
    assert manifest["apiVersion"] == "monitoring.coreos.com/v1"
    assert manifest["kind"] == "PrometheusRule"
    assert manifest["spec"] == _load(RULES_FILE)


def test_generate_cli_writes_and_check_cli_accepts(tmp_path: Path) -> None:
    from optiinfra.cli import main

    assert main(["rules", "generate", "--out", str(tmp_path), "--namespace", "obs",
                 "--rule-labels", "release=kps", "team=llm"]) == 0
    manifest = yaml.safe_load((tmp_path / OPERATOR_FILE).read_text())
    assert manifest["metadata"]["namespace"] == "obs"
    assert manifest["metadata"]["labels"]["release"] == "kps"
    assert main(["rules", "check", str(tmp_path), "--no-promtool"]) == 0


def test_check_reports_unknown_series_and_bad_names(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = {"groups": [{"name": "g", "rules": [
        {"record": "badname", "expr": "rate(llm_preemptions[5m])"},
        {"alert": "not_camel", "expr": "sum(", "labels": {}, "annotations": {}},
        {"record": "pod:x:rate5m", "expr": "rate(vllm:num_preemptions_total[5m])"},
        {"record": "pod:y:rate5m", "expr": 'rate(llm_time_to_first_token_seconds_bucket{le="120"}[5m])'},
    ]}]}
    path = tmp_path / "bad.yml"
    path.write_text(yaml.safe_dump(bad))
    problems, count = check_path(tmp_path, promtool=False)
    assert count == 4
    text = "\n".join(problems)
    assert "badname: recording rule name is not level:metric:operations" in text
    assert "unknown series 'llm_preemptions' (counters end in _total)" in text
    assert "not_camel: alert name is not CamelCase" in text
    assert "PromQL does not parse" in text
    assert "unknown series 'vllm:num_preemptions_total'" in text
    assert "le '120' of llm_time_to_first_token_seconds_bucket is no native bucket boundary" in text
    from optiinfra.cli import main

    assert main(["rules", "check", str(tmp_path), "--no-promtool"]) == 1
    assert "problem(s)" in capsys.readouterr().err


def test_write_is_deterministic(tmp_path: Path) -> None:
    first = generate(load_config(None))
    write(tmp_path, first)
    assert generate(load_config(None)) == first


def test_startup_hang_of_a_restarted_engine_needs_its_process_starting_for_the_whole_window(
        tmp_path: Path) -> None:
    """An engine that was up (llm_upstream_ever_up 1) and restarted: a start-up hang only once its new process
    has run the whole window (10m) without answering; a process 2 minutes old is a restart still under way."""
    promtool = require_binary("promtool")
    pod = 'namespace="llm", pod="p", instance="10.0.0.1:9400", job="optiinfra"'
    labels = {"alertname": "LLMEngineStartupHang", "bottleneck": "engine_startup_hang", "severity": "critical",
              "component": "engine", "namespace": "llm", "pod": "p", "instance": "10.0.0.1:9400",
              "job": "optiinfra", "engine": "vllm"}

    rule = next(r for g in _load(RULES_FILE)["groups"] for r in g["rules"] if r.get("alert") == labels["alertname"])
    annotations = {k: re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels.get(m.group(1), ""), v)
                   for k, v in rule["annotations"].items()}

    def case(started: str, fires: bool) -> dict[str, object]:
        return {"interval": "1m", "input_series": [
            {"series": f'llm_upstream_up{{{pod}, engine="vllm"}}', "values": "0+0x20"},
            {"series": f'llm_upstream_ever_up{{{pod}, engine="vllm"}}', "values": "1+0x20"},
            {"series": f"up{{{pod}}}", "values": "1+0x20"},
            {"series": f"llm_host_process_start_time_seconds{{{pod}}}", "values": started}],
            "alert_rule_test": [{"eval_time": "15m", "alertname": "LLMEngineStartupHang",
                                 "exp_alerts": [{"exp_labels": labels, "exp_annotations": annotations}]
                                 if fires else []}]}

    test = {"rule_files": [str(GENERATED / RULES_FILE)], "evaluation_interval": "1m",
            "tests": [case("60+0x20", True), case("60+0x12 780+0x8", False)]}
    path = tmp_path / "startup.test.yml"
    path.write_text(yaml.safe_dump(test), encoding="utf-8")
    proc = subprocess.run([promtool, "test", "rules", str(path)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
