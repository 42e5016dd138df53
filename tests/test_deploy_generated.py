"""deploy/kubernetes/monitoring: the committed generated manifests equal what `optiinfra generate` renders
now (optiinfra/kube.py), and they carry what kube-prometheus-stack needs to pick them up."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import REPO, require_binary

from optiinfra import kube, taxonomy
from optiinfra.config import load_config
from optiinfra.generate import render_all
from optiinfra.rules import amconfig

OUT = REPO / "deploy" / "kubernetes" / "monitoring"


def test_committed_manifests_are_current() -> None:
    files = {name.removeprefix(kube.OUT_DIR + "/"): text for name, text in render_all(load_config(None)).items()
             if name.startswith(kube.OUT_DIR + "/")}
    assert set(files) == {"prometheusrule.yaml", "dashboards.yaml", "alertmanagerconfig.yaml"}
    for name, text in files.items():
        committed = (OUT / name).read_text(encoding="utf-8")
        assert committed == text, f"deploy/kubernetes/monitoring/{name} is stale: run `make generate`"


def test_alertmanager_config_is_the_generated_alertmanager_yml_translated() -> None:
    spec = yaml.safe_load((OUT / "alertmanagerconfig.yaml").read_text(encoding="utf-8"))["spec"]
    plain = amconfig.build_config(amconfig.Options())
    route = plain["route"]["routes"][0]
    assert spec["route"]["groupBy"] == plain["route"]["group_by"]
    ids = spec["route"]["matchers"][0]["value"].split("|")
    assert set(ids) == {b.id for b in taxonomy.BOTTLENECKS} | {taxonomy.SLO_BURN}
    assert spec["route"]["receiver"] == route["receiver"]
    assert len(spec["inhibitRules"]) == len(plain["inhibit_rules"])
    for ours, theirs in zip(spec["inhibitRules"], plain["inhibit_rules"], strict=True):
        assert ours["equal"] == theirs["equal"]
        for key, plain_key in (("sourceMatch", "source_matchers"), ("targetMatch", "target_matchers")):
            rendered = [f'{m["name"]}{m["matchType"]}"{m["value"]}"' for m in ours[key]]
            assert rendered == theirs[plain_key]


@pytest.mark.parametrize("text", ['bottleneck="a"', 'bottleneck=~"a|b"', 'x!="y"', 'x!~"y.*"', 'a="say \\"hi\\""'])
def test_matcher_translation_round_trips(text: str) -> None:
    matcher = kube.parse_matcher(text)
    value = matcher["value"].replace("\\", "\\\\").replace('"', '\\"')
    assert f'{matcher["name"]}{matcher["matchType"]}"{value}"' == text


@pytest.mark.parametrize("text", ["bottleneck", 'bottleneck=="a"', "bottleneck=a", '="a"'])
def test_untranslatable_matchers_are_refused_by_name(text: str) -> None:
    with pytest.raises(kube.GenerateError, match="matcher"):
        kube.parse_matcher(text)


def test_rules_are_labelled_for_kube_prometheus_stack() -> None:
    rule = yaml.safe_load((OUT / "prometheusrule.yaml").read_text(encoding="utf-8"))
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    alerts = {r["alert"] for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r}
    assert {b.alert for b in taxonomy.BOTTLENECKS} <= alerts


def test_dashboard_configmaps_carry_every_generated_dashboard() -> None:
    files = {"dashboards/optiinfra-fleet.json": '{"uid": "optiinfra-fleet"}\n',
             "dashboards/optiinfra_gpus.json": '{"uid": "optiinfra_gpus"}\n',
             "provisioning/dashboards.yaml": "apiVersion: 1\n"}
    docs = list(yaml.safe_load_all(kube.dashboard_configmaps(files)))
    assert [d["metadata"]["name"] for d in docs] == ["optiinfra-dashboard-optiinfra-fleet",
                                                     "optiinfra-dashboard-optiinfra-gpus"]
    for doc in docs:
        assert doc["metadata"]["labels"]["grafana_dashboard"] == "1"
        ((key, text),) = doc["data"].items()
        assert text == files["dashboards/" + key]
    with pytest.raises(kube.GenerateError, match="no dashboards"):
        kube.dashboard_configmaps({"provisioning/dashboards.yaml": ""})

    # The committed ConfigMaps hold the committed dashboards byte for byte.
    committed = [d for d in yaml.safe_load_all((OUT / "dashboards.yaml").read_text(encoding="utf-8")) if d]
    on_disk = {p.name: p.read_text(encoding="utf-8") for p in (REPO / "grafana/generated/dashboards").glob("*.json")}
    assert {k: v for d in committed for k, v in d["data"].items()} == on_disk
    assert all(len(json.dumps(d)) < 256 * 1024 for d in committed), "kubectl apply's annotation limit"


def _as_alertmanager_yml(spec: dict[str, Any]) -> dict[str, Any]:
    """The routing the operator builds from the AlertmanagerConfig (matcher strategy None), as a plain
    Alertmanager config: its route under a null root, its receivers and inhibit rules."""
    def matchers(items: list[dict[str, str]]) -> list[str]:
        return [f'{m["name"]}{m["matchType"]}"{m["value"]}"' for m in items]

    route = spec["route"]
    webhook = spec["receivers"][0]["webhookConfigs"][0]
    return {
        "route": {"receiver": "null", "routes": [{
            "receiver": route["receiver"], "matchers": matchers(route["matchers"]), "group_by": route["groupBy"],
            "group_wait": route["groupWait"], "group_interval": route["groupInterval"],
            "repeat_interval": route["repeatInterval"], "continue": True,
        }]},
        "receivers": [{"name": "null"}, {"name": spec["receivers"][0]["name"], "webhook_configs": [{
            "url": webhook["url"], "send_resolved": webhook["sendResolved"], "max_alerts": webhook["maxAlerts"],
        }]}],
        "inhibit_rules": [{"source_matchers": matchers(r["sourceMatch"]), "target_matchers": matchers(r["targetMatch"]),
                           "equal": r["equal"]} for r in spec["inhibitRules"]],
    }


def test_amtool_routes_taxonomy_alerts_of_the_alertmanager_config_to_the_receiver(tmp_path: Path) -> None:
    amtool = require_binary("amtool")
    spec = yaml.safe_load((OUT / "alertmanagerconfig.yaml").read_text(encoding="utf-8"))["spec"]
    config = tmp_path / "alertmanager.yml"
    config.write_text(yaml.safe_dump(_as_alertmanager_yml(spec)), encoding="utf-8")
    check = subprocess.run([amtool, "check-config", str(config)], capture_output=True, text=True, check=False,
                           timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    receiver = spec["route"]["receiver"]
    for labels, expected in ((["bottleneck=kv_cache_pressure", "pod=p"], receiver),
                             (["bottleneck=slo_burn", "slo=ttft"], receiver),
                             (["bottleneck=unknown_thing"], "null"),
                             (["alertname=Watchdog"], "null")):
        out = subprocess.run([amtool, "config", "routes", "test", f"--config.file={config}", *labels],
                             capture_output=True, text=True, check=False, timeout=60)
        assert out.returncode == 0, out.stderr
        assert out.stdout.split() == [expected], (labels, out.stdout)
