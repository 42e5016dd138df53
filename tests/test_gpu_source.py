"""``gpu_source``: the GPU rules read the sidecar's series or dcgm-exporter's (its pod-mapping labels, with or
without ``honorLabels``), and the GPU/engine joins match either way: promtool cases with two inference pods on
one 4-GPU node (plus a GPU allocated to no pod), and the generated promtool suites under each source."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import require_binary
from test_rules_generate import run_promtool_tests

from optiinfra.config import Config, parse_config
from optiinfra.rules import generate as rules
from optiinfra.rules.testgen import render

SOURCES: dict[str, dict[str, Any]] = {
    "sidecar": {},
    "dcgm-exporter": {"gpu_source": "dcgm-exporter"},
    "dcgm-exporter honorLabels": {"gpu_source": "dcgm-exporter", "dcgm_exporter": {
        "namespace_label": "namespace", "pod_label": "pod", "container_label": "container",
        "selector": 'job="nvidia-dcgm-exporter"'}},
}
PODS = {"pod-a": ("10.0.0.1:9400", (0, 1), 50), "pod-b": ("10.0.0.2:9400", (2, 3), 5)}
MINUTES = 40


def _lbl(labels: dict[str, str]) -> str:
    return "{" + ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"


def _gpu(source: str, pod: str | None, index: int) -> dict[str, str]:
    """GPU ``index`` of node-1 as its exporter labels it; ``pod`` None: allocated to no pod."""
    gpu = {"gpu": str(index), "UUID": f"GPU-{index}", "Hostname": "node-1", "modelName": "NVIDIA H100 80GB HBM3"}
    if source == "sidecar":  # each pod's sidecar exports only its engine's GPUs, on the pod's own target
        assert pod is not None
        return {**gpu, "namespace": "llm", "pod": pod, "instance": PODS[pod][0], "job": "optiinfra"}
    exporter = {"instance": "10.0.9.1:9400", "job": "nvidia-dcgm-exporter"}
    if source == "dcgm-exporter":  # honorLabels false: the target's own pod/namespace, the GPU's in exported_*
        mapped = {"exported_namespace": "llm", "exported_pod": pod, "exported_container": "engine"} if pod else {}
        return {**gpu, **exporter, "namespace": "gpu-operator", "pod": "nvidia-dcgm-exporter-x1", **mapped}
    mapped = {"namespace": "llm", "pod": pod, "container": "engine"} if pod else {}
    return {**gpu, **exporter, **mapped}


def _case(config: Config, source: str) -> dict[str, Any]:
    series = {}
    for pod, (instance, gpus, util) in PODS.items():
        eng = {"namespace": "llm", "pod": pod, "instance": instance, "job": "optiinfra", "engine": "vllm",
               "model": "m"}
        series[f"llm_requests_waiting{_lbl(eng)}"] = f"0+0x{MINUTES}"
        series[f"llm_requests_finished_total{_lbl({**eng, 'outcome': 'stop'})}"] = f"0+60x{MINUTES}"
        for index in gpus:
            series[f"DCGM_FI_DEV_GPU_UTIL{_lbl(_gpu(source, pod, index))}"] = f"{util}+0x{MINUTES}"
    if source != "sidecar":  # an idle GPU of the node that no pod was given: never counted for a pod
        series[f"DCGM_FI_DEV_GPU_UTIL{_lbl(_gpu(source, None, 4))}"] = f"0+0x{MINUTES}"
    doc = yaml.safe_load(rules.generate(config)[rules.RULES_FILE])
    (rule,) = [r for g in doc["groups"] for r in g["rules"] if r.get("alert") == "LLMGPUUnderutilized"]
    labels = {"namespace": "llm", "pod": "pod-b", "instance": "10.0.0.2:9400", "engine": "vllm", "model": "m",
              **rule["labels"]}
    join = ["namespace", "pod"] if source != "sidecar" else ["namespace", "pod", "instance"]

    def pod_labels(pod: str) -> str:
        return _lbl({k: v for k, v in {"namespace": "llm", "pod": pod, "instance": PODS[pod][0]}.items()
                     if k in join})
    return {
        "name": f"two pods on one node ({source})",
        "interval": "1m",
        "input_series": [{"series": k, "values": v} for k, v in series.items()],
        "promql_expr_test": [
            {"expr": "count by (namespace, pod) (gpu:DCGM_FI_DEV_GPU_UTIL:ratio)", "eval_time": "35m",
             "exp_samples": [{"labels": '{namespace="llm", pod="pod-a"}', "value": 2},
                             {"labels": '{namespace="llm", pod="pod-b"}', "value": 2}]},
            {"expr": "pod:DCGM_FI_DEV_GPU_UTIL:avg_ratio", "eval_time": "35m",
             "exp_samples": [{"labels": "pod:DCGM_FI_DEV_GPU_UTIL:avg_ratio" + pod_labels("pod-a"), "value": 0.5},
                             {"labels": "pod:DCGM_FI_DEV_GPU_UTIL:avg_ratio" + pod_labels("pod-b"), "value": 0.05}]},
        ],
        "alert_rule_test": [{"eval_time": "35m", "alertname": "LLMGPUUnderutilized", "exp_alerts": [{
            "exp_labels": labels,
            "exp_annotations": {k: render(v, labels, 0.05) for k, v in rule["annotations"].items()}}]}],
    }


@pytest.mark.parametrize("source", list(SOURCES))
def test_two_pods_on_one_node(source: str, tmp_path: Path) -> None:
    promtool = require_binary("promtool")
    config = parse_config(SOURCES[source])
    rules.write(tmp_path, {rules.RULES_FILE: rules.generate(config)[rules.RULES_FILE]})
    (tmp_path / "case.test.yml").write_text(yaml.safe_dump(
        {"rule_files": [rules.RULES_FILE], "evaluation_interval": "1m", "tests": [_case(config, source)]}))
    proc = subprocess.run([promtool, "test", "rules", "case.test.yml"], cwd=tmp_path, capture_output=True,
                          text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("source", ["dcgm-exporter", "dcgm-exporter honorLabels"])
def test_generated_promtool_suites_pass_for_dcgm_exporter(source: str, tmp_path: Path) -> None:
    """Every generated alert and recording case (GPU fixtures shaped as dcgm-exporter's series) passes."""
    files = rules.generate(parse_config({**SOURCES[source], "identity_labels": ["cluster", "namespace", "pod",
                                                                                 "instance"]}))
    rules.write(tmp_path, files)
    run_promtool_tests(tmp_path)


def test_dcgm_exporter_gpu_alerts_carry_the_inference_pod() -> None:
    doc = yaml.safe_load(rules.generate(parse_config(SOURCES["dcgm-exporter"]))[rules.RULES_FILE])
    gpu_alerts = [r for g in doc["groups"] for r in g["rules"] if r.get("labels", {}).get("component") == "gpu"]
    assert gpu_alerts
    for rule in gpu_alerts:
        assert '"pod", "$1", "exported_pod", "(.+)"' in rule["expr"], rule["alert"]
        assert 'exported_pod!=""' in rule["expr"], rule["alert"]


@pytest.mark.parametrize(("source", "pod_label", "selector"), [
    ("sidecar", "pod", None), ("dcgm-exporter", "exported_pod", None),
    ("dcgm-exporter honorLabels", "pod", "nvidia-dcgm-exporter")])
def test_instance_dashboard_reads_raw_gpu_series_by_the_sources_pod_label(
        source: str, pod_label: str, selector: str | None) -> None:
    from optiinfra.grafana.dashboards import instance
    from optiinfra.grafana.lint import queries, substitute
    from optiinfra.rules.check import selectors

    doc = instance(parse_config(SOURCES[source])).to_dict()
    raw = [(name, m) for _, expr in queries(doc) for name, m in selectors(substitute(expr, {"pod": "POD"}))
           if name.startswith("DCGM_")]
    assert raw
    for name, matchers in raw:
        assert matchers.get(pod_label) == "POD", (name, matchers)
        assert matchers.get("job") == selector, (name, matchers)
