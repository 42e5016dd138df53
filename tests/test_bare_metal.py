"""docs/deployment.md's bare-metal guide, followed step by step on this machine: its shell block runs as written
(paths under a temporary root, the real optiinfra, promtool and amtool; `systemctl` lines left out), then a real
Prometheus loads our rules through the guide's `rule_files` glob, a real Alertmanager runs the merged config of
a user who already had routes (they still route, ours reach the receiver), and the dashboards are where the
installed provisioning file says."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from am_kit import alert_states, alertmanager, post_alerts, webhook
from conftest import REPO, free_port, require_binary

from optiinfra.config import DASHBOARD_UIDS, Config
from optiinfra.demo.stack import Stack, find_binary
from optiinfra.rules.generate import all_groups
from optiinfra.rules.promql import Ctx

GUIDE = (REPO / "docs" / "deployment.md").read_text(encoding="utf-8")


def _steps() -> str:
    block = GUIDE.split("<!-- bare-metal steps -->", 1)[1].split("<!-- end of bare-metal steps -->", 1)[0]
    return block.split("```sh\n", 1)[1].rsplit("```", 1)[0]


def _existing_alertmanager(hook: str) -> dict[str, Any]:
    """A user's config before OptiInfra: its own root receiver, routes and inhibition."""
    return {
        "route": {"receiver": "default", "group_by": ["alertname"], "group_wait": "1s", "group_interval": "1s",
                  "routes": [{"receiver": "pager", "matchers": ['severity="critical"']},
                             {"receiver": "db-team", "matchers": ['team="db"']}]},
        "receivers": [{"name": "default", "webhook_configs": [{"url": f"{hook}/default"}]},
                      {"name": "pager", "webhook_configs": [{"url": f"{hook}/pager"}]},
                      {"name": "db-team", "webhook_configs": [{"url": f"{hook}/db"}]}],
        "inhibit_rules": [{"source_matchers": ['alertname="DBDown"'], "target_matchers": ['team="db"'],
                           "equal": ["instance"]}],
    }


def _routes(amtool: str, config: Path, *labels: str) -> str:
    out = subprocess.run([amtool, "config", "routes", "test", f"--config.file={config}", *labels],
                         capture_output=True, text=True, check=False, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout.strip()


def _run_guide(root: Path, hook: str) -> None:
    optiinfra = str(Path(sys.executable).with_name("optiinfra"))
    script = _steps()
    lines = [line for line in script.splitlines() if not line.startswith("systemctl ")]
    script = "\n".join(lines).replace("/opt/optiinfra/bin/optiinfra", optiinfra)
    script = script.replace("http://receiver-host:9095", hook)
    script = re.sub(r"(?<![\w.])/(etc|var)/", lambda m: f"{root}/{m.group(1)}/", script)
    tools = {"promtool": require_binary("promtool"), "amtool": require_binary("amtool")}
    for name, path in tools.items():
        script = re.sub(rf"^{name} ", f"{path} ", script, flags=re.M)
    out = subprocess.run(["bash", "-euo", "pipefail", "-c", script], capture_output=True, text=True,
                         check=False, timeout=300)
    assert out.returncode == 0, f"the guide's step failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"


@pytest.mark.slow
async def test_the_bare_metal_guide_keeps_old_routes_and_loads_rules_and_dashboards(tmp_path: Path) -> None:
    require_binary("prometheus-alertmanager")
    amtool = require_binary("amtool")
    root = tmp_path / "root"
    etc = root / "etc" / "prometheus"
    etc.mkdir(parents=True)
    (root / "etc" / "grafana" / "provisioning" / "dashboards").mkdir(parents=True)
    (etc / "optiinfra-token").write_text("s3cret\n")
    # The guide's rule_files line, as the user writes it into their prometheus.yml.
    (glob,) = re.findall(r'rule_files: \["([^"]+)"\]', _steps())
    prom_port = free_port()
    (etc / "prometheus.yml").write_text(yaml.safe_dump({
        "global": {"scrape_interval": "15s", "evaluation_interval": "1s"},
        "rule_files": [re.sub(r"^/etc/", f"{root}/etc/", glob)],
        "scrape_configs": [{"job_name": "optiinfra", "static_configs": [{"targets": ["127.0.0.1:1"]}]}]}))

    async with webhook() as hook:
        (etc / "alertmanager.yml").write_text(yaml.safe_dump(_existing_alertmanager(hook.url)))
        _run_guide(root, hook.url)

        # Rules: loaded by the glob, every group, nothing else (a test file in the folder would break it).
        stack = Stack(tmp_path)
        try:
            child = await stack.spawn("prometheus", [
                find_binary("prometheus"), f"--config.file={etc / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp_path / 'prom-data'}", f"--web.listen-address=127.0.0.1:{prom_port}"])
            base = f"http://127.0.0.1:{prom_port}"
            await stack.wait_ready(child, f"{base}/-/ready", timeout=60)
            async with aiohttp.ClientSession() as session, session.get(f"{base}/api/v1/rules") as resp:
                loaded = {g["name"] for g in (await resp.json())["data"]["groups"]}
        finally:
            await stack.close()
        assert loaded == {g.name for g in all_groups(Ctx(Config()))}
        assert sorted(p.name for p in (etc / "optiinfra" / "rules").iterdir()) == ["optiinfra-rules.yml"]

        # Alertmanager: the old routes still route, ours reaches the receiver (and critical ones the pager too).
        merged = etc / "alertmanager.yml"
        assert _routes(amtool, merged, "severity=critical") == "pager"
        assert _routes(amtool, merged, "team=db") == "db-team"
        assert _routes(amtool, merged, "alertname=Other") == "default"
        assert _routes(amtool, merged, "bottleneck=kv_cache_pressure", "severity=warning") == "optiinfra"
        assert _routes(amtool, merged, "bottleneck=engine_down", "severity=critical") == "optiinfra,pager"
        doc = yaml.safe_load(merged.read_text())
        assert doc["inhibit_rules"][0]["source_matchers"] == ['alertname="DBDown"']
        async with alertmanager(tmp_path / "am", merged.read_text()) as base:
            alerts = [
                {"labels": {"alertname": "LLMKVCachePressure", "bottleneck": "kv_cache_pressure",
                            "severity": "warning", "namespace": "llm", "pod": "pod-a", "model": "m"}},
                {"labels": {"alertname": "LLMEngineDown", "bottleneck": "engine_down", "severity": "critical",
                            "namespace": "llm", "pod": "pod-b"}},
                {"labels": {"alertname": "NodeDown", "severity": "critical", "pod": "node"}},
                {"labels": {"alertname": "DBSlow", "team": "db", "pod": "db-0"}},
                {"labels": {"alertname": "Other", "pod": "x"}},
            ]
            await post_alerts(base, alerts)
            await hook.wait_for({("optiinfra", "LLMKVCachePressure", "pod-a"), ("optiinfra", "LLMEngineDown", "pod-b"),
                                 ("pager", "LLMEngineDown", "pod-b"), ("pager", "NodeDown", "node"),
                                 ("db-team", "DBSlow", "db-0"), ("default", "Other", "x")})
            states = await alert_states(base)
        assert all(s["state"] == "active" for s in states.values()), states
        delivered = hook.delivered()
        assert not [d for d in delivered if d[0] == "optiinfra" and d[1] in ("NodeDown", "DBSlow", "Other")]
        assert {b.get("receiver") for b in hook.bodies} == {"optiinfra", "pager", "db-team", "default"}

    # Dashboards: the installed provisioning file points at the folder holding every dashboard's JSON.
    installed = root / "etc" / "grafana" / "provisioning" / "dashboards" / "optiinfra.yaml"
    provider = yaml.safe_load(installed.read_text())["providers"][0]
    folder = Path(provider["options"]["path"])
    assert folder.is_dir() and folder.is_relative_to(root / "var" / "lib" / "grafana")
    uids = {json.loads(p.read_text())["uid"] for p in folder.glob("*.json")}
    assert uids == set(DASHBOARD_UIDS.values())


def test_the_guide_no_longer_overwrites_an_existing_alertmanager_config() -> None:
    steps = _steps()
    assert "--merge-into /etc/prometheus/alertmanager.yml" in steps
    assert "> /etc/prometheus/alertmanager.yml\n" not in steps
