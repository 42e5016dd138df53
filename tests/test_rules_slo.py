"""SLOs per service, and SLO specs people already write (Sloth prometheus/v1, OpenSLO v1) as input to
``rules generate``: each generates burn alerts whose generated promtool cases (fire once per service, quiet,
idle, recorded-vs-raw equivalence) pass; what cannot be mapped is refused in one line."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import pytest
import yaml
from conftest import require_binary
from test_exporter_transform import normalize

from optiinfra.alertmanager.worker import scope_matches
from optiinfra.cli import main
from optiinfra.config import ConfigError, load_config, parse_config
from optiinfra.rules.generate import RULES_FILE
from optiinfra.rules.slo_import import SpecError, load_specs, with_specs
from optiinfra.rules.testgen import TEST_FILES

SLO_TESTS = next(f for f in TEST_FILES if f.endswith("-slo.test.yml"))

SLOTH = """\
version: "prometheus/v1"
service: "chat"
labels: {owner: ml-platform}
slos:
  - name: "ttft"
    objective: 99.5
    description: "TTFT within 2.5s on vLLM."
    sli:
      events:
        error_query: |
          sum(rate(llm_time_to_first_token_seconds_count{engine="vllm", model="llama-3-8b"}[{{.window}}]))
          -
          sum(rate(llm_time_to_first_token_seconds_bucket{engine="vllm", model="llama-3-8b", le="2.5"}[{{.window}}]))
        total_query: sum(rate(llm_time_to_first_token_seconds_count{engine="vllm", model="llama-3-8b"}[{{.window}}]))
    alerting:
      name: ChatTTFT
      page_alert: {labels: {severity: page}}
      ticket_alert: {labels: {severity: ticket}}
  - name: "availability"
    objective: 99.9
    sli:
      events:
        error_query: sum(rate(vllm:request_success_total{finished_reason="error"}[{{.window}}]))
        total_query: sum(rate(vllm:request_success_total[{{.window}}]))
"""

OPENSLO = """\
apiVersion: openslo/v1
kind: SLI
metadata: {name: itl-good}
spec:
  ratioMetric:
    counter: true
    good: {metricSource: {type: Prometheus, spec: {query: 'sglang:inter_token_latency_seconds_bucket{le="0.2"}'}}}
    total: {metricSource: {type: Prometheus, spec: {query: 'sglang:inter_token_latency_seconds_count'}}}
---
apiVersion: openslo/v1
kind: SLO
metadata: {name: chat-itl, displayName: Chat inter-token latency}
spec:
  service: chat
  indicatorRef: itl-good
  timeWindow: [{duration: 30d, isRolling: true}]
  budgetingMethod: Occurrences
  objectives: [{displayName: 200ms, target: 0.99}]
---
apiVersion: openslo/v1
kind: SLO
metadata: {name: chat-availability}
spec:
  service: chat
  indicator:
    metadata: {name: chat-errors}
    spec:
      ratioMetric:
        counter: true
        bad: {metricSource: {type: Prometheus, spec: {query: 'llm_requests_finished_total{outcome="error"}'}}}
        total: {metricSource: {type: Prometheus, spec: {query: 'llm_requests_finished_total'}}}
  timeWindow: [{duration: 30d, isRolling: true}]
  budgetingMethod: Occurrences
  objectives: [{targetPercent: 99.5}]
"""


def _generate(tmp_path: Path, name: str, text: str) -> Path:
    spec = tmp_path / name
    spec.write_text(text, encoding="utf-8")
    out = tmp_path / "out"
    assert main(["rules", "generate", "--slo-spec", str(spec), "--out", str(out)]) == 0
    return out


def _promtool_slo_tests(out: Path) -> str:
    promtool = require_binary("promtool")
    proc = subprocess.run([promtool, "test", "rules", SLO_TESTS], cwd=out,
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]
    return proc.stdout


def _burn_alerts(out: Path) -> dict[tuple[str, str], dict]:
    doc = yaml.safe_load((out / RULES_FILE).read_text(encoding="utf-8"))
    return {(r["alert"], r["labels"]["slo"]): r for g in doc["groups"] for r in g["rules"]
            if r.get("labels", {}).get("bottleneck") == "slo_burn"}


def test_sloth_spec_maps_onto_our_sli_kinds() -> None:
    slos = {s.name: s for s in _specs(SLOTH)}
    assert set(slos) == {"chat-ttft", "chat-availability"}
    ttft, avail = slos["chat-ttft"], slos["chat-availability"]
    assert (ttft.sli, ttft.threshold, ttft.objective, ttft.engines, ttft.model) == (
        "ttft", 2.5, 0.995, ["vllm"], "llama-3-8b")
    assert (avail.sli, avail.objective, avail.engines) == ("availability", 0.999, ["vllm"])


def test_openslo_documents_map_onto_our_sli_kinds() -> None:
    slos = {s.name: s for s in _specs(OPENSLO)}
    assert set(slos) == {"chat-itl", "chat-availability"}
    assert (slos["chat-itl"].sli, slos["chat-itl"].threshold, slos["chat-itl"].engines) == (
        "inter_token", 0.2, ["sglang"])
    assert (slos["chat-availability"].sli, slos["chat-availability"].objective) == ("availability", 0.995)


@pytest.mark.slow
def test_a_sloth_spec_generates_working_burn_alerts(tmp_path: Path) -> None:
    out = _generate(tmp_path, "sloth.yaml", SLOTH)
    alerts = _burn_alerts(out)
    assert set(alerts) == {(a, s) for a in ("LLMSLOBurnRateFast", "LLMSLOBurnRateSlow")
                           for s in ("chat-ttft", "chat-availability")}
    assert "> 0.072" in alerts[("LLMSLOBurnRateFast", "chat-ttft")]["expr"]  # 14.4 x (1 - 0.995)
    tests = yaml.safe_load((out / SLO_TESTS).read_text(encoding="utf-8"))["tests"]
    names = [t["name"] for t in tests]
    assert "LLMSLOBurnRateFast[chat-ttft] fires" in names
    assert any("chat-availability: recorded and raw windows decide alike" in n for n in names)
    _promtool_slo_tests(out)


@pytest.mark.slow
def test_an_openslo_document_generates_working_burn_alerts(tmp_path: Path) -> None:
    out = _generate(tmp_path, "openslo.yaml", OPENSLO)
    assert set(_burn_alerts(out)) == {(a, s) for a in ("LLMSLOBurnRateFast", "LLMSLOBurnRateSlow")
                                      for s in ("chat-itl", "chat-availability")}
    _promtool_slo_tests(out)


def _specs(text: str) -> list:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "spec.yaml"
        path.write_text(text, encoding="utf-8")
        return load_specs([path])


@pytest.mark.parametrize(("text", "needle"), [
    (SLOTH.replace("events:", "plugin:"), "only `sli.events`"),
    ("version: prometheus/v1\nservice: s\nslos:\n  - name: x\n    objective: 99\n    sli:\n      events:\n"
     "        error_query: sum(rate(http_requests_total{code=~'5..'}[5m]))\n"
     "        total_query: sum(rate(http_requests_total[5m]))\n", "cannot map this SLI"),
    (OPENSLO.replace("duration: 30d", "duration: 28d"), "rolling 30d"),
    (OPENSLO.replace("budgetingMethod: Occurrences", "budgetingMethod: Timeslices"), "only Occurrences"),
    (OPENSLO.replace('le="0.2"', 'le="0.3"'), "not a bucket boundary"),
    ("kind: Something\n", "neither a Sloth spec"),
])
def test_unmappable_specs_are_refused_in_one_line(text: str, needle: str) -> None:
    with pytest.raises(SpecError) as info:
        _specs(text)
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_cli_refuses_a_bad_spec_with_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text(OPENSLO.replace("duration: 30d", "duration: 7d"), encoding="utf-8")
    assert main(["rules", "generate", "--slo-spec", str(spec), "--out", str(tmp_path / "out")]) == 2
    assert "rolling 30d" in capsys.readouterr().err


def test_spec_slos_join_the_slos_a_config_lists(tmp_path: Path) -> None:
    spec = tmp_path / "openslo.yaml"
    spec.write_text(OPENSLO, encoding="utf-8")
    default = with_specs(load_config(None), [spec])
    assert {s.name for s in default.slos} == {"chat-itl", "chat-availability"}  # defaults replaced
    listed = with_specs(parse_config({"slos": [{"name": "mine", "sli": "availability", "objective": 0.99}]}), [spec])
    assert {s.name for s in listed.slos} == {"mine", "chat-itl", "chat-availability"}


def test_slo_scope_must_name_the_model_and_intervals_must_fit() -> None:
    with pytest.raises(ConfigError, match="slo_scope must include 'model'"):
        parse_config({"slo_scope": ["namespace", "service"]})
    with pytest.raises(ConfigError, match="below 5m"):
        parse_config({"slo_long_interval": "5m"})
    with pytest.raises(ConfigError, match="divide"):
        parse_config({"slo_interval": "45s"})
    assert parse_config({"slo_scope": ["namespace", "service", "model"]}).slo_scope == ["namespace", "service", "model"]


def test_sglang_server_errors_become_the_error_outcome() -> None:
    """SGLang has no error outcome; its 5xx responses on the inference endpoints are one (availability SLO)."""
    payload = (
        "# TYPE sglang:num_requests_total counter\n"
        'sglang:num_requests_total{engine_type="unified",model_name="m"} 10.0\n'
        "# TYPE sglang:http_responses_total counter\n"
        'sglang:http_responses_total{endpoint="/v1/chat/completions",method="POST",status_code="200"} 9.0\n'
        'sglang:http_responses_total{endpoint="/v1/chat/completions",method="POST",status_code="500"} 2.0\n'
        'sglang:http_responses_total{endpoint="/generate",method="POST",status_code="503"} 1.0\n'
        'sglang:http_responses_total{endpoint="/v1/chat/completions",method="POST",status_code="400"} 4.0\n'
        'sglang:http_responses_total{endpoint="/metrics",method="GET",status_code="500"} 7.0\n')
    lines = normalize(payload).text.splitlines()
    assert 'llm_requests_finished_total{engine="sglang",model="m",outcome="error"} 3' in lines
    assert 'llm_requests_finished_total{engine="sglang",model="m",outcome="other"} 10' in lines


def test_a_service_burn_rolls_back_a_plan_changing_one_of_its_replicas() -> None:
    """The receiver's matching (unchanged): a burn alert without `pod` speaks for every replica of its model."""
    plan = {"namespace": "ml", "pod": "vllm-3", "model": "llama", "engine": "vllm"}
    doc = yaml.safe_load((Path(__file__).parents[1] / "rules" / "generated" / RULES_FILE).read_text())
    burn = next(r for g in doc["groups"] for r in g["rules"] if r.get("alert") == "LLMSLOBurnRateFast")
    service = {**burn["labels"], "namespace": "ml", "model": "llama"}  # what the alert carries: the scope labels
    assert scope_matches(plan, service)
    assert not scope_matches(plan, {**service, "model": "mistral"})
    assert not scope_matches(plan, {**service, "namespace": "other"})
    assert scope_matches(plan, {k: v for k, v in service.items() if k != "namespace"})  # slo_scope: [model]
