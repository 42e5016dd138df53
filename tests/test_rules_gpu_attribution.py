"""Two inference pods on one 4-GPU node, through real promtool and the committed rules file.

Each pod's sidecar sees every GPU of the node (NVIDIA_VISIBLE_DEVICES=all) and its engine process holds two
of them. What each sidecar exports is produced here by the real GPU collector (fake NVML, a real engine
process per pod with the device plugin's NVIDIA_VISIBLE_DEVICES), labelled the way the PodMonitor labels a
target, and fed to a small hand-written ``promtool test rules`` case over the generated rules file: two GPUs
per pod, pod-b's utilization is its own GPUs' (0.05, not the node's 0.5), and ``LLMGPUUnderutilized`` fires
for pod-b only (it is queried through ``ALERTS``, so the alert's label set may change without breaking this).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml
from conftest import REPO, require_binary
from fake_nvml import FakeGpu, FakeNvml

from optiinfra.exporter.collectors.gpu import GpuCollector
from optiinfra.exporter.collectors.process import EngineProcess
from optiinfra.exporter.exposition import encode

UUIDS = [f"GPU-{i}{i}{i}{i}{i}{i}{i}{i}-aaaa-bbbb-cccc-00000000000{i}" for i in range(4)]
PODS = {"pod-a": ("10.0.0.1:9400", UUIDS[:2]), "pod-b": ("10.0.0.2:9400", UUIDS[2:])}
MINUTES = 60


def rules_file() -> Path:
    found = sorted(REPO.glob("rules/generated/**/optiinfra-rules.yml"))
    assert len(found) == 1, f"expected one generated optiinfra-rules.yml under rules/generated, found {found}"
    return found[0]


def series_line(name: str, labels: dict[str, str]) -> str:
    pairs = ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return f"{name}{{{pairs}}}"


async def sidecar_gpu_series(pod: str, engine_pid: int, nvml: FakeNvml) -> list[dict[str, str]]:
    """One scrape of this pod's sidecar GPU collector, as promtool input series with the target's labels."""
    collector = GpuCollector(nvml=nvml, hostname="gpu-node-7", engine=EngineProcess(engine_pid))
    await collector.start()
    text = encode(await collector.collect())
    await collector.close()
    instance, _ = PODS[pod]
    target = {"namespace": "llm", "pod": pod, "instance": instance, "job": "llm/vllm"}
    out = []
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        head, value = line.rsplit(" ", 1)
        name, _, raw = head.partition("{")
        labels = dict(pair.split("=", 1) for pair in raw.rstrip("}").split(","))
        labels = {k: v.strip('"') for k, v in labels.items()}
        out.append({"series": series_line(name, {**labels, **target}), "values": f"{value}x{MINUTES}"})
    return out


def engine_series(pod: str) -> list[dict[str, str]]:
    """A busy-enough replica with an empty queue (what LLMGPUUnderutilized needs besides the GPU)."""
    instance, _ = PODS[pod]
    labels = {"namespace": "llm", "pod": pod, "instance": instance, "job": "llm/vllm", "engine": "vllm",
              "model": "m"}
    return [
        {"series": series_line("llm_requests_waiting", labels), "values": f"0x{MINUTES}"},
        {"series": series_line("llm_requests_finished_total", {**labels, "outcome": "stop"}),
         "values": f"0+60x{MINUTES}"},
    ]


async def test_two_pods_on_one_node_promtool(tmp_path: Path) -> None:
    promtool = require_binary("promtool")
    nvml = FakeNvml([FakeGpu(uuid=u, minor=i, bus_id=f"00000000:{0x3B + i:02X}:00.0".encode(),
                             util_gpu=95 if i < 2 else 5) for i, u in enumerate(UUIDS)])
    engines = {pod: subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                                     env={"NVIDIA_VISIBLE_DEVICES": ",".join(uuids)})
               for pod, (_, uuids) in PODS.items()}
    try:
        inputs = []
        for pod, proc in engines.items():
            inputs += await sidecar_gpu_series(pod, proc.pid, nvml)
            inputs += engine_series(pod)
    finally:
        for proc in engines.values():
            proc.kill()
            proc.wait()

    case = {
        "rule_files": [str(rules_file())],
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": inputs,
            "promql_expr_test": [
                {"expr": "count by (namespace, pod) (gpu:DCGM_FI_DEV_GPU_UTIL:ratio)", "eval_time": "10m",
                 "exp_samples": [{"labels": '{namespace="llm", pod="pod-a"}', "value": 2},
                                 {"labels": '{namespace="llm", pod="pod-b"}', "value": 2}]},
                # the efficiency rules' GPU count (tokens per GPU, cost) is the pod's, not the node's
                {"expr": "pod:DCGM_FI_DEV_GPU_UTIL:count", "eval_time": "10m", "exp_samples": [
                    {"labels": f'pod:DCGM_FI_DEV_GPU_UTIL:count{{instance="{PODS[p][0]}", namespace="llm", '
                               f'pod="{p}"}}', "value": 2} for p in PODS]},
                {"expr": 'pod:DCGM_FI_DEV_GPU_UTIL:avg_ratio{pod="pod-b"}', "eval_time": "10m",
                 "exp_samples": [{"labels": 'pod:DCGM_FI_DEV_GPU_UTIL:avg_ratio{instance="10.0.0.2:9400", '
                                            'namespace="llm", pod="pod-b"}', "value": 0.05}]},
                {"expr": 'count by (pod) (ALERTS{alertname="LLMGPUUnderutilized", alertstate="firing"})',
                 "eval_time": "50m", "exp_samples": [{"labels": '{pod="pod-b"}', "value": 1}]},
            ],
        }],
    }
    test_file = tmp_path / "two-pods-one-node.test.yml"
    test_file.write_text(yaml.safe_dump(case, sort_keys=False))
    proc = subprocess.run([promtool, "test", "rules", str(test_file)], capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
