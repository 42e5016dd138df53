"""Dashboards: a $cluster variable (label name from the config) filtering every query, drill-down data links
fleet -> instance -> GPU; alerts: a dashboard_url annotation that opens the dashboard explaining them."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from optiinfra.config import DASHBOARD_UIDS, Config, parse_config
from optiinfra.grafana.dashboards import all_dashboards
from optiinfra.grafana.lint import panels, queries, substitute
from optiinfra.rules import generate as rules
from optiinfra.rules.check import selectors

CONFIGS = [Config(), parse_config({"cluster_label": "k8s_cluster", "gpu_source": "dcgm-exporter"})]


@pytest.mark.parametrize("config", CONFIGS, ids=["default", "k8s_cluster+dcgm"])
def test_every_dashboard_filters_every_selector_by_cluster(config: Config) -> None:
    for dashboard in all_dashboards(config):
        doc = dashboard.to_dict()
        variables = doc["templating"]["list"]
        assert variables[1]["name"] == "cluster", doc["uid"]
        assert variables[1]["definition"].endswith(f", {config.cluster_label})"), doc["uid"]
        for variable in variables[2:]:
            assert "$cluster" in variable["definition"], (doc["uid"], variable["name"])
        checked = 0
        for where, expr in queries(doc):
            for name, matchers in selectors(substitute(expr, {"cluster": "CLUSTER"})):
                assert matchers.get(config.cluster_label) == "CLUSTER", f"{doc['uid']} {where}: {name}"
                checked += 1
        assert checked > 3, doc["uid"]


def _data_links(doc: dict[str, Any]) -> list[str]:
    return [link["url"] for p in panels(doc) for link in p.get("fieldConfig", {}).get("defaults", {}).get("links", [])]


def test_drill_down_fleet_to_instance_to_gpu() -> None:
    docs = {d.uid: d.to_dict() for d in all_dashboards(Config())}
    fleet = _data_links(docs[DASHBOARD_UIDS["fleet"]])
    assert any(u.startswith(f"/d/{DASHBOARD_UIDS['instance']}?") and "var-pod=${__field.labels.pod}" in u
               and "var-namespace=${__field.labels.namespace}" in u and "var-cluster=${cluster}" in u
               for u in fleet), fleet
    instance = _data_links(docs[DASHBOARD_UIDS["instance"]])
    assert any(u.startswith(f"/d/{DASHBOARD_UIDS['gpus']}?") and "var-hostname=${__field.labels.hostname}" in u
               for u in instance), instance
    # The variables a link sets exist on the target dashboard.
    for doc in docs.values():
        for url in _data_links(doc):
            uid, _, query = url.removeprefix("/d/").partition("?")
            names = {v["name"] for v in docs[uid]["templating"]["list"]}
            for part in query.split("&"):
                if part.startswith("var-"):
                    assert part.removeprefix("var-").split("=")[0] in names, (doc["uid"], url)


def test_every_alert_has_a_dashboard_url_to_an_existing_dashboard() -> None:
    config = parse_config({"dashboard_url_pattern": "https://grafana.example/d/{uid}", "cluster_label": "k8s"})
    doc = yaml.safe_load(rules.generate(config)[rules.RULES_FILE])
    alerts = [r for g in doc["groups"] for r in g["rules"] if "alert" in r]
    uids = {d.uid: d.to_dict() for d in all_dashboards(config)}
    assert {r["labels"]["component"] for r in alerts} == {"engine", "gpu", "host", "slo"}
    for rule in alerts:
        url = rule["annotations"]["dashboard_url"]
        assert url.startswith("https://grafana.example/d/"), rule["alert"]
        uid, _, query = url.removeprefix("https://grafana.example/d/").partition("?")
        assert "var-cluster={{ $labels.k8s }}" in query
        names = {v["name"] for v in uids[uid]["templating"]["list"]}
        for part in query.split("&"):
            assert part.removeprefix("var-").split("=")[0] in names, (rule["alert"], part)
    engine = next(r for r in alerts if r["alert"] == "LLMKVCachePressure")
    assert "var-pod={{ $labels.pod }}" in engine["annotations"]["dashboard_url"]


def test_bad_dashboard_url_pattern_is_one_line() -> None:
    from optiinfra.config import ConfigError
    with pytest.raises(ConfigError, match=r"dashboard_url_pattern.*uid"):
        parse_config({"dashboard_url_pattern": "https://grafana.example/d/fixed"})
