"""The generated rules on the rulers people run besides Prometheus: vmalert accepts them (``-dryRun``
validates every expression and template), every group stays within Mimir's default 20 rules, and the
demo-profile rules evaluated by a real vmalert over a real VictoriaMetrics that scrapes the sidecar
(simulator -> exporter) raise ``LLMKVCachePressure``, record the SLO series through ``-remoteWrite.url``,
and never raise ``OptiInfraExporterDown`` while VictoriaMetrics (default 30s `-search.latencyOffset`) hides
freshly ingested data from the ruler.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from conftest import require_binary

from optiinfra.config import load_config
from optiinfra.demo.stack import Stack, free_port, optiinfra_command, prometheus_query
from optiinfra.rules import generate as rules
from optiinfra.rules.slo import REQUESTS

TIMEOUT = 90.0


def test_every_group_within_mimirs_default_limit_and_vmalert_accepts_the_rules(tmp_path: Path) -> None:
    vmalert = require_binary("vmalert")
    for profile in ("production", "demo"):
        out = tmp_path / profile
        rules.write(out, rules.generate(load_config(None), profile))
        doc = yaml.safe_load((out / rules.RULES_FILE).read_text(encoding="utf-8"))
        names = [g["name"] for g in doc["groups"]]
        assert len(names) == len(set(names))
        assert max(len(g["rules"]) for g in doc["groups"]) <= 20
        proc = subprocess.run([vmalert, "-dryRun", f"-rule={out / rules.RULES_FILE}"],
                              capture_output=True, text=True, check=False)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def test_vmalert_refuses_a_broken_rule_file(tmp_path: Path) -> None:
    """The dry run above is a real check: a rule that does not parse fails it."""
    vmalert = require_binary("vmalert")
    bad = tmp_path / "bad.yml"
    bad.write_text("groups:\n- name: g\n  rules:\n  - record: a:b:c\n    expr: sum(rate(x[5m]) by\n")
    proc = subprocess.run([vmalert, "-dryRun", f"-rule={bad}"], capture_output=True, text=True, check=False)
    assert proc.returncode != 0


class _Notifier(BaseHTTPRequestHandler):
    """A stand-in Alertmanager: keeps every alert vmalert posts."""

    received: list[dict[str, Any]] = []
    lock = threading.Lock()

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with self.lock:
            self.received.extend(json.loads(body or b"[]"))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


async def _vmalert_alerts(session: aiohttp.ClientSession, base: str) -> list[dict[str, Any]]:
    try:
        async with session.get(f"{base}/api/v1/alerts") as response:
            body = await response.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, ValueError):
        return []
    alerts: list[dict[str, Any]] = (body.get("data") or {}).get("alerts") or []
    return alerts


@pytest.mark.slow
async def test_demo_rules_in_vmalert_over_victoriametrics_fed_by_the_sidecar(tmp_path: Path) -> None:
    vm_bin, vmalert = require_binary("victoria-metrics"), require_binary("vmalert")
    notifier = ThreadingHTTPServer(("127.0.0.1", free_port()), _Notifier)
    threading.Thread(target=notifier.serve_forever, daemon=True).start()
    stack = Stack(tmp_path)
    try:
        sim_port, exp_port, vm_port, vmalert_port = free_port(), free_port(), free_port(), free_port()
        sim = await stack.spawn("sim", optiinfra_command(
            "simulate", "--engine", "vllm", "--scenario", "kv_cache_pressure", "--listen", f"127.0.0.1:{sim_port}",
            "--time-scale", "10"))
        exporter = await stack.spawn("exporter", optiinfra_command(
            "exporter", "--upstream", f"http://127.0.0.1:{sim_port}", "--listen", f"127.0.0.1:{exp_port}",
            "--no-gpu", "--no-host"))
        await stack.wait_ready(sim, f"http://127.0.0.1:{sim_port}/health")
        await stack.wait_ready(exporter, f"http://127.0.0.1:{exp_port}/health")

        scrape = tmp_path / "scrape.yml"
        scrape.write_text(yaml.safe_dump({
            "global": {"scrape_interval": "1s"},
            "scrape_configs": [{"job_name": "optiinfra", "static_configs": [
                {"targets": [f"127.0.0.1:{exp_port}"], "labels": {"namespace": "vm", "pod": "pod-0"}}]}],
        }))
        vm_url = f"http://127.0.0.1:{vm_port}"
        vm = await stack.spawn("victoria-metrics", [
            vm_bin, f"-storageDataPath={tmp_path / 'vm-data'}", f"-httpListenAddr=127.0.0.1:{vm_port}",
            f"-promscrape.config={scrape}", "-retentionPeriod=1d",
            "-loggerLevel=WARN"])
        await stack.wait_ready(vm, f"{vm_url}/health", timeout=60)

        # vmalert starts at once, before VictoriaMetrics has any sample: a cold, ingestion-delayed ruler.
        rules_dir = tmp_path / "rules"
        rules.write(rules_dir, rules.generate(load_config(None), "demo"))
        base = f"http://127.0.0.1:{vmalert_port}"
        ruler = await stack.spawn("vmalert", [
            vmalert, f"-rule={rules_dir / rules.RULES_FILE}", f"-datasource.url={vm_url}",
            f"-remoteWrite.url={vm_url}", f"-remoteRead.url={vm_url}",
            f"-notifier.url=http://127.0.0.1:{notifier.server_address[1]}", "-evaluationInterval=1s",
            f"-httpListenAddr=127.0.0.1:{vmalert_port}", "-loggerLevel=WARN"])
        await stack.wait_ready(ruler, f"{base}/health", timeout=60)

        seen: dict[str, dict[str, str]] = {}
        recorded: list[dict[str, Any]] = []
        start = time.monotonic()
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3)) as session:
            while time.monotonic() - start < TIMEOUT:
                stack.check_alive()
                for alert in await _vmalert_alerts(session, base):
                    seen.setdefault(f"{alert.get('name')}:{alert.get('state')}", alert.get("labels") or {})
                recorded = await prometheus_query(session, vm_url, f'{REQUESTS}{{slo="ttft-vllm"}}')
                if "LLMKVCachePressure:firing" in seen and recorded and time.monotonic() - start > 30:
                    break
                await asyncio.sleep(1.0)
    finally:
        await stack.close()
        notifier.shutdown()

    assert "LLMKVCachePressure:firing" in seen, sorted(seen)
    kv = seen["LLMKVCachePressure:firing"]
    assert (kv["bottleneck"], kv["namespace"], kv["pod"], kv["engine"]) == (
        "kv_cache_pressure", "vm", "pod-0", "vllm"), kv
    assert any(a.get("labels", {}).get("alertname") == "LLMKVCachePressure" for a in _Notifier.received)
    # the recording rules reached VictoriaMetrics through -remoteWrite.url, at the SLO's scope
    assert recorded and set(recorded[0]["metric"]) >= {"slo", "namespace", "model"}
    assert "pod" not in recorded[0]["metric"]
    down = [k for k in seen if k.startswith("OptiInfraExporterDown")]
    assert not down, f"false OptiInfraExporterDown on a cold, ingestion-delayed ruler: {down}"
