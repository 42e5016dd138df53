"""kube-prometheus-stack's defaults do not mute our actionable bottlenecks: the chart's default inhibit rules
(and its always-on `InfoInhibitor` alert) loaded into a real Alertmanager together with our config."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from am_kit import alert_states, alertmanager, post_alerts, webhook
from conftest import DATA

from optiinfra import signals as sg
from optiinfra import taxonomy
from optiinfra.config import Config
from optiinfra.rules import amconfig
from optiinfra.rules import generate as rules

CHART = yaml.safe_load((DATA / "kube-prometheus-stack" / "info-inhibitor.yaml").read_text())


def _alert_rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(rules.generate(Config())[rules.RULES_FILE])
    return [r for g in doc["groups"] for r in g["rules"] if "alert" in r]


def test_no_actionable_bottleneck_is_info() -> None:
    by_alert = {b.alert: b for b in taxonomy.BOTTLENECKS}
    actionable = [r for r in _alert_rules() if r["alert"] in by_alert and by_alert[r["alert"]].plannable]
    assert {r["alert"] for r in actionable} >= {"LLMGPUUnderutilized", "LLMPrefixCacheIneffective"}
    assert [r["alert"] for r in actionable if r["labels"]["severity"] == "info"] == []


def test_an_actionable_info_row_cannot_be_built() -> None:
    row = taxonomy.by_id()["cache_inefficiency"]
    with pytest.raises(sg.SpecError, match="InfoInhibitor"):
        taxonomy.Bottleneck(**{**{f: getattr(row, f) for f in row.__dataclass_fields__}, "severity": "info"})


@pytest.mark.slow
async def test_chart_default_inhibitions_let_every_actionable_alert_through(tmp_path: Path) -> None:
    plannable = {b.alert for b in taxonomy.BOTTLENECKS if b.plannable}
    # One pod per alert (our own inhibitions act within a pod), one namespace for all: the chart's rules
    # inhibit by namespace. Every severity an alert has is posted (GPUXidError: critical and warning).
    alerts = []
    for i, rule in enumerate(r for r in _alert_rules() if r["alert"] in plannable):
        labels = {**rule["labels"], "alertname": rule["alert"], "namespace": "llm", "pod": f"pod-{i}",
                  "instance": f"10.0.0.{i}:9400", "model": "m"}
        alerts.append({"labels": labels, "annotations": rule["annotations"]})
    # The chart's InfoInhibitor fires in every namespace with an info alert (a kube-state-metrics info alert
    # such as KubeQuotaAlmostFull is enough): post it as firing, the worst case.
    inhibitor = {"labels": {"alertname": CHART["info_inhibitor_rule"]["alert"], "namespace": "llm",
                            **CHART["info_inhibitor_rule"]["labels"]}}
    async with webhook() as hook:
        config = amconfig.build_config(amconfig.Options(receiver_url=hook.url, credentials_file="",
                                                        group_wait="1s", group_interval="1s"))
        config["inhibit_rules"] += CHART["inhibit_rules"]
        async with alertmanager(tmp_path, yaml.safe_dump(config)) as base:
            await post_alerts(base, [inhibitor, *alerts])
            expected = {("optiinfra", a["labels"]["alertname"], a["labels"]["pod"]) for a in alerts}
            await hook.wait_for(expected)
            states = await alert_states(base)
    assert {a["labels"]["alertname"] for a in alerts} >= {"LLMGPUUnderutilized", "LLMPrefixCacheIneffective"}
    for a in alerts:
        status = states[(a["labels"]["alertname"], a["labels"]["pod"])]
        assert status["state"] == "active", (a["labels"]["alertname"], status)
