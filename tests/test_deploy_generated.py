"""deploy/kubernetes/monitoring: the committed generated manifests equal what deploy/generate.py renders
now, and they carry what kube-prometheus-stack needs to pick them up."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from conftest import REPO, require_binary

from optiinfra import taxonomy
from optiinfra.alertmanager import amconfig

OUT = REPO / "deploy" / "kubernetes" / "monitoring"


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("deploy_generate", REPO / "deploy" / "generate.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("deploy_generate", module)
    spec.loader.exec_module(module)
    return module


def test_committed_manifests_are_current() -> None:
    for name, text in _generator().render().items():
        committed = (OUT / name).read_text(encoding="utf-8")
        assert committed == text, f"deploy/kubernetes/monitoring/{name} is stale: run `make generate`"


def test_generator_writes_what_it_renders(tmp_path: Path) -> None:
    gen = _generator()
    assert gen.main(["--out", str(tmp_path)]) == 0
    for name, text in gen.render().items():
        assert (tmp_path / name).read_text(encoding="utf-8") == text


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
    matcher = _generator().parse_matcher(text)
    value = matcher["value"].replace("\\", "\\\\").replace('"', '\\"')
    assert f'{matcher["name"]}{matcher["matchType"]}"{value}"' == text


@pytest.mark.parametrize("text", ["bottleneck", 'bottleneck=="a"', "bottleneck=a", '="a"'])
def test_untranslatable_matchers_are_refused_by_name(text: str) -> None:
    gen = _generator()
    with pytest.raises(gen.GenerateError, match="matcher"):
        gen.parse_matcher(text)


def test_rules_are_labelled_for_kube_prometheus_stack() -> None:
    rule = yaml.safe_load((OUT / "prometheusrule.yaml").read_text(encoding="utf-8"))
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    alerts = {r["alert"] for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r}
    assert {b.alert for b in taxonomy.BOTTLENECKS} <= alerts


def test_dashboard_configmaps_carry_every_generated_dashboard() -> None:
    gen = _generator()
    files = {"dashboards/optiinfra-fleet.json": '{"uid": "optiinfra-fleet"}\n',
             "dashboards/optiinfra_gpus.json": '{"uid": "optiinfra_gpus"}\n',
             "provisioning/dashboards.yaml": "apiVersion: 1\n"}
    docs = list(yaml.safe_load_all(gen.dashboard_configmaps(files)))
    assert [d["metadata"]["name"] for d in docs] == ["optiinfra-dashboard-optiinfra-fleet",
                                                     "optiinfra-dashboard-optiinfra-gpus"]
    for doc in docs:
        assert doc["metadata"]["labels"]["grafana_dashboard"] == "1"
        ((key, text),) = doc["data"].items()
        assert text == files["dashboards/" + key]
    with pytest.raises(gen.GenerateError, match="no dashboards"):
        gen.dashboard_configmaps({"provisioning/dashboards.yaml": ""})

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
