"""The demo-profile rules in a real Prometheus (1s scrapes and evaluations) against a live sidecar-shaped
target: a multi-signal bottleneck alert and an SLO burn alert fire with the contract labels."""

from __future__ import annotations

import asyncio
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import aiohttp
import pytest
from conftest import free_port, require_binary

from optiinfra import metrics as m
from optiinfra.config import load_config
from optiinfra.demo.stack import Stack, firing_alerts, prometheus_config, start_prometheus
from optiinfra.rules.generate import RULES_FILE, generate, write

START = time.monotonic()


def exposition() -> str:
    """A vLLM pod behind the sidecar: KV cache full with requests waiting, every TTFT above 2.5s."""
    t = time.monotonic() - START
    base = 'engine="vllm",model="m"'
    lines = [
        "llm_upstream_up{engine=\"vllm\"} 1",
        f"llm_kv_cache_usage_ratio{{{base},dp_rank=\"0\"}} 0.95",
        f"llm_requests_waiting{{{base}}} 3",
        f"llm_requests_running{{{base}}} 8",
        f'llm_requests_finished_total{{{base},outcome="stop"}} {10 * t:.3f}',
        f"llm_generation_tokens_total{{{base}}} {500 * t:.3f}",
    ]
    for le in m.NATIVE_BUCKETS["vllm"]["llm_time_to_first_token_seconds"]:
        lines.append(f'llm_time_to_first_token_seconds_bucket{{{base},le="{le!r}"}} {10 * t if le >= 5 else 0:.3f}')
    lines += [f'llm_time_to_first_token_seconds_bucket{{{base},le="+Inf"}} {10 * t:.3f}',
              f"llm_time_to_first_token_seconds_count{{{base}}} {10 * t:.3f}",
              f"llm_time_to_first_token_seconds_sum{{{base}}} {50 * t:.3f}"]
    return "\n".join(lines) + "\n"


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = exposition().encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.slow
async def test_demo_rules_fire_in_real_prometheus(tmp_path: Path) -> None:
    require_binary("prometheus")
    target = ThreadingHTTPServer(("127.0.0.1", free_port()), _Handler)
    threading.Thread(target=target.serve_forever, daemon=True).start()
    write(tmp_path / "rules", generate(load_config(None), "demo"))
    port = free_port()
    stack = Stack(tmp_path)
    try:
        config = prometheus_config([(f"127.0.0.1:{target.server_address[1]}", {"namespace": "llm", "pod": "pod-0"})],
                                   [tmp_path / "rules" / RULES_FILE], None)
        await start_prometheus(stack, config, port)
        firing: dict[str, dict[str, str]] = {}
        deadline = time.monotonic() + 60
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
            while time.monotonic() < deadline and not {"LLMKVCachePressure", "LLMSLOBurnRateFast"} <= set(firing):
                await asyncio.sleep(1)
                alerts = await firing_alerts(session, f"http://127.0.0.1:{port}")
                firing = {a["labels"]["alertname"]: a["labels"] for a in alerts}
        assert "LLMKVCachePressure" in firing, firing
        kv = firing["LLMKVCachePressure"]
        assert {k: kv[k] for k in ("bottleneck", "severity", "component", "namespace", "pod", "engine", "model")} == {
            "bottleneck": "kv_cache_pressure", "severity": "warning", "component": "engine", "namespace": "llm",
            "pod": "pod-0", "engine": "vllm", "model": "m"}
        assert "LLMSLOBurnRateFast" in firing, firing
        burn = firing["LLMSLOBurnRateFast"]
        assert burn["slo"] == "ttft-vllm" and burn["bottleneck"] == "slo_burn" and burn["component"] == "slo"
        # per service (namespace, model), not per pod
        assert (burn["severity"], burn["namespace"], burn["model"]) == ("critical", "llm", "m") and "pod" not in burn
        assert "OptiInfraExporterDown" not in firing and "LLMEngineDown" not in firing
    finally:
        await stack.close()
        target.shutdown()
