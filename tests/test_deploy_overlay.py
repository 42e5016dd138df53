"""An overlay with another kube-prometheus-stack release and other namespaces: `kubectl kustomize` builds it,
every object validates (kubernetes-validate, the CRD schemas) and the Prometheus and Alertmanager selectors of
that release select our objects; the matcher strategy is the narrowest that lets our AlertmanagerConfig see
alerts from the inference namespaces."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import REPO, require_binary
from test_deploy_manifests import KUBE, _load_all, _validate

from optiinfra import kube

PARAMS = yaml.safe_load((KUBE / "params.yaml").read_text(encoding="utf-8"))["data"]
VALUES = yaml.safe_load((KUBE / "kube-prometheus-stack-values.yaml").read_text(encoding="utf-8"))


def _build(directory: Path) -> list[dict[str, Any]]:
    kubectl = require_binary("kubectl")
    out = subprocess.run([kubectl, "kustomize", str(directory)], capture_output=True, text=True, check=False,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    return _load_all(out.stdout)


def _overlay(tmp_path: Path, params: dict[str, str]) -> Path:
    """An overlay as docs/deployment.md writes it: the base folders, its own params.yaml, the component."""
    base = os.path.relpath(KUBE, tmp_path)
    doc = yaml.safe_load((KUBE / "params.yaml").read_text(encoding="utf-8"))
    doc["data"] = {**doc["data"], **params}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(doc))
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "resources": ["params.yaml", f"{base}/monitoring", f"{base}/receiver"],
        "components": [f"{base}/params"]}))
    return tmp_path


def _selected(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def _chart_selectors(release: str) -> dict[str, dict[str, Any]]:
    """The selectors kube-prometheus-stack's Prometheus and Alertmanager get from our values for ``release``:
    rules and pod monitors by the chart's release label (``*SelectorNilUsesHelmValues: true``),
    AlertmanagerConfigs by the values' selector with the release name replaced, every namespace."""
    prom, am = VALUES["prometheus"]["prometheusSpec"], VALUES["alertmanager"]["alertmanagerSpec"]
    assert prom["ruleSelectorNilUsesHelmValues"] and prom["podMonitorSelectorNilUsesHelmValues"]
    assert prom["ruleNamespaceSelector"] == prom["podMonitorNamespaceSelector"] == {}
    assert am["alertmanagerConfigNamespaceSelector"] == {}
    am_selector = {"matchLabels": {k: release if v == "kube-prometheus-stack" else v
                                   for k, v in am["alertmanagerConfigSelector"]["matchLabels"].items()}}
    return {"PrometheusRule": {"matchLabels": {"release": release}},
            "PodMonitor": {"matchLabels": {"release": release}}, "AlertmanagerConfig": am_selector}


def _check(docs: list[dict[str, Any]], params: dict[str, str]) -> None:
    assert not [d for d in docs if d["metadata"]["name"] == "optiinfra-params"], "local-config is not applied"
    for doc in docs:
        _validate(doc)
    selectors = _chart_selectors(params["release"])
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for doc in docs:
        by_kind.setdefault(doc["kind"], []).append(doc)
    for kind, selector in selectors.items():
        assert by_kind[kind]
        for doc in by_kind[kind]:
            assert _selected(selector, doc["metadata"]["labels"]), (kind, doc["metadata"])
    monitoring = {"PrometheusRule", "AlertmanagerConfig", "ConfigMap"}
    for doc in docs:
        expected = params["monitoringNamespace"] if doc["kind"] in monitoring else params["receiverNamespace"]
        if doc["kind"] == "Namespace":
            assert doc["metadata"]["name"] == params["receiverNamespace"]
        else:
            assert doc["metadata"]["namespace"] == expected, (doc["kind"], doc["metadata"]["name"])
    # Alertmanager (in the monitoring namespace) reaches the receiver's Service in the receiver namespace.
    (amc,) = by_kind["AlertmanagerConfig"]
    service = next(d for d in by_kind["Service"] if d["metadata"]["name"] == "optiinfra-receiver")
    url = amc["spec"]["receivers"][0]["webhookConfigs"][0]["url"]
    assert url.startswith(f"http://{service['metadata']['name']}.{service['metadata']['namespace']}.svc:")
    policy = by_kind["NetworkPolicy"][0]
    allowed = {p["namespaceSelector"].get("matchLabels", {}).get("kubernetes.io/metadata.name")
               for rule in policy["spec"]["ingress"] for p in rule["from"]}
    assert params["monitoringNamespace"] in allowed
    env = {e["name"]: e.get("value") for d in by_kind["Deployment"] for c in d["spec"]["template"]["spec"]
           ["containers"] for e in c.get("env", [])}
    assert env["OPTIINFRA_PROMETHEUS_URL"] == params["prometheusUrl"]
    assert f".{params['receiverNamespace']}.svc" in env["OPTIINFRA_ADVERTISE_URL"]
    # The matcher strategy lifts namespace confinement only for AlertmanagerConfigs in the Alertmanager's own
    # namespace (the chart's): ours must live there.
    strategy = VALUES["alertmanager"]["alertmanagerSpec"]["alertmanagerConfigMatcherStrategy"]["type"]
    assert strategy == "OnNamespaceExceptForAlertmanagerNamespace"
    assert amc["metadata"]["namespace"] == params["monitoringNamespace"]


def test_the_default_build_uses_the_default_params() -> None:
    _check(_build(KUBE), PARAMS)


@pytest.mark.parametrize("params", [
    {"release": "prom-x", "monitoringNamespace": "observability", "receiverNamespace": "llm-ops",
     "prometheusUrl": "http://prom-x-prometheus.observability.svc:9090"},
])
def test_an_overlay_with_another_release_and_namespaces_validates_and_selects(
        params: dict[str, str], tmp_path: Path) -> None:
    docs = _build(_overlay(tmp_path, params))
    text = yaml.safe_dump_all(docs)
    for default in ("kube-prometheus-stack", "optiinfra.svc", "monitoring.svc"):
        assert default not in text, f"{default} left in the overlay's output"
    _check(docs, params)


def test_params_defaults_are_the_generators_defaults() -> None:
    """The generated monitoring manifests carry the same defaults the params file declares."""
    assert PARAMS["release"] == kube.RELEASE_LABELS["release"]
    assert PARAMS["monitoringNamespace"] == kube.MONITORING_NAMESPACE
    assert PARAMS["receiverNamespace"] == kube.RECEIVER_NAMESPACE
    assert (REPO / "deploy" / "kubernetes" / "params" / "kustomization.yaml").exists()
