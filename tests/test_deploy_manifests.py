"""deploy/kubernetes: every manifest passes its schema, kustomizations are complete, the pods are hardened,
and every flag or environment twin the manifests pass exists on the ``optiinfra`` command line."""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from conftest import REPO

from optiinfra.cli import ENV_PREFIX, build_parser, env_name

KUBE = REPO / "deploy" / "kubernetes"
SCHEMAS = REPO / "deploy" / "schemas"
KUBERNETES_VERSION = "1.30"
NOT_MANIFESTS = {"kustomization.yaml", "kube-prometheus-stack-values.yaml"}
CRD_SCHEMAS = {
    ("monitoring.coreos.com/v1", "PrometheusRule"): "prometheusrule.v1.json",
    ("monitoring.coreos.com/v1", "PodMonitor"): "podmonitor.v1.json",
    ("monitoring.coreos.com/v1alpha1", "AlertmanagerConfig"): "alertmanagerconfig.v1alpha1.json",
}


def _manifest_files() -> list[Path]:
    return sorted(p for p in KUBE.rglob("*.yaml") if p.name not in NOT_MANIFESTS)


class _Loader(yaml.SafeLoader):
    """YAML 1.1's ``=`` (the value tag) as a plain string, as Kubernetes reads it (kustomize writes it bare)."""


_Loader.add_constructor("tag:yaml.org,2002:value", lambda loader, node: loader.construct_scalar(node))


def _load_all(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.load_all(text, Loader=_Loader) if d is not None]


def _docs(path: Path) -> list[dict[str, Any]]:
    return _load_all(path.read_text(encoding="utf-8"))


def _all_docs() -> list[tuple[Path, dict[str, Any]]]:
    return [(path, doc) for path in _manifest_files() for doc in _docs(path)]


def _validate(doc: dict[str, Any]) -> None:
    """Kubernetes kinds: kubernetes-validate's bundled schemas (strict: unknown fields fail); the operator's
    kinds: the CRD schemas under deploy/schemas."""
    key = (doc.get("apiVersion"), doc.get("kind"))
    if key in CRD_SCHEMAS:
        schema = json.loads((SCHEMAS / CRD_SCHEMAS[key]).read_text(encoding="utf-8"))
        jsonschema.Draft202012Validator(schema).validate(doc)
    else:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def _find(kind: str, name: str) -> dict[str, Any]:
    for _, doc in _all_docs():
        if doc["kind"] == kind and doc["metadata"]["name"] == name:
            return doc
    raise AssertionError(f"no {kind}/{name} under deploy/kubernetes")


def _container(pod_spec: dict[str, Any], name: str) -> dict[str, Any]:
    (container,) = [c for c in pod_spec["containers"] if c["name"] == name]
    return container


def _flags_of(command: str) -> dict[str, str]:
    """Option string -> dest of one sub-command (env twin: env_name(dest))."""
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    return {opt: action.dest for action in sub.choices[command]._actions for opt in action.option_strings}


# ------------------------------------------------------------------------------------------- schemas

def test_every_manifest_passes_its_schema() -> None:
    docs = _all_docs()
    assert len(docs) >= 15
    kinds = {doc["kind"] for _, doc in docs}
    assert {"Deployment", "Service", "PodDisruptionBudget", "NetworkPolicy", "Secret", "ServiceAccount",
            "PodMonitor", "PrometheusRule", "AlertmanagerConfig"} <= kinds
    for path, doc in docs:
        try:
            _validate(doc)
        except (jsonschema.ValidationError, kubernetes_validate.ValidationError) as exc:
            pytest.fail(f"{path.relative_to(REPO)} {doc['kind']}/{doc['metadata']['name']}: {exc.message}")


@pytest.mark.parametrize("bad", [
    ("Deployment", "optiinfra-receiver", ("spec", "replicas"), "two"),
    ("Deployment", "optiinfra-receiver", ("spec", "template", "spec", "containerz"), []),
    ("PodMonitor", "optiinfra-sidecar", ("spec", "podMetricsEndpoints", 0, "interval"), "15 seconds"),
    ("PodMonitor", "optiinfra-sidecar", ("spec", "podMetricEndpoints"), []),
    ("AlertmanagerConfig", "optiinfra", ("spec", "route", "matchers", 0, "matchType"), "=="),
    ("AlertmanagerConfig", "optiinfra", ("spec", "receivers", 0, "webhookConfigs", 0, "maxAlerts"), -1),
    ("PrometheusRule", "optiinfra-rules", ("spec", "groups", 0, "rules", 0, "expr"), None),
])
def test_the_schemas_reject_broken_manifests(bad: tuple[str, str, tuple[Any, ...], Any]) -> None:
    kind, name, where, value = bad
    doc = json.loads(json.dumps(_find(kind, name)))
    node = doc
    for key in where[:-1]:
        node = node[key]
    if value is None:
        del node[where[-1]]
    else:
        node[where[-1]] = value
    with pytest.raises((jsonschema.ValidationError, kubernetes_validate.ValidationError)):
        _validate(doc)


# -------------------------------------------------------------------------------------- kustomizations

def _kustomizations() -> list[Path]:
    return sorted(KUBE.rglob("kustomization.yaml"))


def test_every_manifest_belongs_to_a_kustomization_and_every_resource_exists() -> None:
    listed: set[Path] = set()
    for kustomization in _kustomizations():
        for resource in yaml.safe_load(kustomization.read_text(encoding="utf-8")).get("resources", []):
            target = (kustomization.parent / resource).resolve()
            assert target.exists(), f"{kustomization.relative_to(REPO)} lists missing {resource}"
            if target.is_file():
                listed.add(target)
    assert {p.resolve() for p in _manifest_files()} == listed


@pytest.mark.parametrize("directory", ["", "monitoring", "receiver", "secrets", "inference-example"])
def test_kustomize_builds_valid_manifests(directory: str) -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl not installed: the kustomizations are checked file by file above")
    out = subprocess.run([kubectl, "kustomize", str(KUBE / directory)], capture_output=True, text=True,
                         check=False, timeout=60)
    assert out.returncode == 0, out.stderr
    docs = _load_all(out.stdout)
    assert docs
    for doc in docs:
        _validate(doc)
        assert doc["metadata"].get("namespace") or doc["kind"] == "Namespace", doc["metadata"]["name"]


# ------------------------------------------------------------------------------------------- sidecar

def _hardened(container: dict[str, Any]) -> None:
    sc = container["securityContext"]
    assert sc["runAsNonRoot"] is True
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    resources = container["resources"]
    for key in ("cpu", "memory"):
        assert key in resources["requests"] and key in resources["limits"], key
    assert not any(k.startswith("nvidia.com/") for part in resources.values() for k in part)


def test_sidecar_is_hardened_sized_probed_and_sees_the_engine() -> None:
    deployment = _find("Deployment", "vllm")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["shareProcessNamespace"] is True
    sidecar = _container(pod, "optiinfra")
    _hardened(sidecar)
    assert sidecar["securityContext"]["runAsUser"] != 0
    ports = {p["name"]: p["containerPort"] for p in sidecar["ports"]}
    assert ports == {"metrics": 9400}
    for probe in ("livenessProbe", "readinessProbe"):
        assert sidecar[probe]["httpGet"] == {"path": "/health", "port": "metrics"}
    env = {e["name"]: e.get("value", e.get("valueFrom")) for e in sidecar["env"]}
    assert env["NVIDIA_VISIBLE_DEVICES"] == "all"

    # Its arguments parse on the real command line, and the log it tails is on a volume the engine writes.
    args = build_parser().parse_args(sidecar["args"])
    assert args.command == "exporter" and args.engine == "vllm"
    assert args.upstream.startswith("http://127.0.0.1:8000")
    (log_path, source), = args.log_file
    assert source == "engine"
    engine = _container(pod, "vllm")
    engine_mounts = {m["name"]: m["mountPath"] for m in engine["volumeMounts"]}
    sidecar_mounts = {m["name"]: m["mountPath"] for m in sidecar["volumeMounts"]}
    shared = [name for name, path in sidecar_mounts.items() if log_path.startswith(path + "/")]
    assert shared and engine_mounts[shared[0]] == sidecar_mounts[shared[0]]
    assert log_path in " ".join(engine["args"])
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[shared[0]]


def test_sidecar_attributes_gpus_to_its_engine_on_its_node() -> None:
    """The sidecar finds the engine process, runs as the engine's user (so it may read the engine's environ
    and cgroup), and names GPUs by the node (downward API) through a real env twin."""
    pod = _find("Deployment", "vllm")["spec"]["template"]["spec"]
    sidecar, engine = _container(pod, "optiinfra"), _container(pod, "vllm")
    args = build_parser().parse_args(sidecar["args"])
    assert args.engine_process == "vllm" and "vllm serve" in " ".join(engine["args"])
    env = {e["name"]: e for e in sidecar["env"]}
    assert env[env_name("node_name")]["valueFrom"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}
    for key in ("runAsUser", "runAsGroup"):
        assert engine["securityContext"][key] == sidecar["securityContext"][key]


def test_engine_log_is_bounded_by_logpipe_within_the_volume_limit() -> None:
    """The engine's output goes through logpipe (installed by the init container onto a volume the engine
    mounts) with a bound that, plus the one rotated file the tailer may hold, fits the emptyDir sizeLimit."""
    import shlex

    from optiinfra.exporter.logpipe import add_arguments, parse_size

    pod = _find("Deployment", "vllm")["spec"]["template"]["spec"]
    engine, sidecar = _container(pod, "vllm"), _container(pod, "optiinfra")
    command = " ".join(engine["args"])
    assert "tee" not in shlex.split(command)
    words = shlex.split(command.split(">(", 1)[1].split(")", 1)[0])
    assert words[:2] == ["exec", "python3"]
    script = words[2]
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    options = parser.parse_args(words[3:])
    (log_path, _), = build_parser().parse_args(sidecar["args"]).log_file
    assert str(options.path) == log_path and options.tee
    volumes = {v["name"]: v for v in pod["volumes"]}
    log_volume = next(m["name"] for m in engine["volumeMounts"] if log_path.startswith(m["mountPath"] + "/"))
    limit = parse_size(volumes[log_volume]["emptyDir"]["sizeLimit"])
    assert (options.keep_files + 2) * options.max_bytes <= limit
    (init,) = pod["initContainers"]
    assert init["image"] == sidecar["image"]
    assert "optiinfra.exporter.logpipe" in init["args"][0] and script in init["args"][0]
    tools = {m["name"]: m["mountPath"] for m in init["volumeMounts"]}
    engine_mounts = {m["name"]: m["mountPath"] for m in engine["volumeMounts"]}
    assert any(script.startswith(path + "/") and engine_mounts.get(name) == path for name, path in tools.items())


def test_podmonitor_scrapes_the_sidecar_port_as_job_optiinfra() -> None:
    monitor = _find("PodMonitor", "optiinfra-sidecar")
    pod = _find("Deployment", "vllm")["spec"]["template"]
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= pod["metadata"]["labels"].items()
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["port"] == "metrics" and endpoint["path"] == "/metrics"
    assert {"action": "replace", "targetLabel": "job", "replacement": "optiinfra"} in endpoint["relabelings"]
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"


# ------------------------------------------------------------------------------------------- receiver

def test_receiver_deployment_uses_real_env_twins_and_its_secrets() -> None:
    deployment = _find("Deployment", "optiinfra-receiver")
    assert deployment["spec"]["replicas"] == 2
    pod = deployment["spec"]["template"]["spec"]
    receiver = _container(pod, "receiver")
    _hardened(receiver)
    assert receiver["args"] == ["receiver"]
    twins = {env_name(dest, "receiver") for dest in _flags_of("receiver").values()}
    env = {e["name"]: e for e in receiver["env"]}
    for name in env:
        assert name.startswith(ENV_PREFIX) and name in twins, f"{name} is no flag's environment twin"
    assert env["OPTIINFRA_DB"]["valueFrom"]["secretKeyRef"] == {"name": "optiinfra-receiver-db", "key": "url"}
    assert "OPTIINFRA_ORCHESTRATOR_URL" in env

    token_file = env["OPTIINFRA_TOKEN_FILE"]["value"]
    mounts = {m["mountPath"]: m["name"] for m in receiver["volumeMounts"]}
    mount_dir, _, key = token_file.rpartition("/")
    volume = next(v for v in pod["volumes"] if v["name"] == mounts[mount_dir])
    secret = _find("Secret", volume["secret"]["secretName"])
    assert key in secret["stringData"]
    db_secret = _find("Secret", "optiinfra-receiver-db")
    assert db_secret["metadata"]["namespace"] == deployment["metadata"]["namespace"]
    assert db_secret["stringData"]["url"].startswith("postgresql://")
    for probe in ("livenessProbe", "readinessProbe"):
        assert receiver[probe]["httpGet"]["path"] == "/health"


def test_receiver_service_pdb_and_network_policy_select_the_receiver_pods() -> None:
    labels = _find("Deployment", "optiinfra-receiver")["spec"]["template"]["metadata"]["labels"]
    service = _find("Service", "optiinfra-receiver")
    assert service["spec"]["selector"].items() <= labels.items()
    assert service["spec"]["ports"][0]["port"] == 9095
    pdb = _find("PodDisruptionBudget", "optiinfra-receiver")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert pdb["spec"]["minAvailable"] == 1
    policy = _find("NetworkPolicy", "optiinfra-receiver")
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= labels.items()
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    (rule,) = policy["spec"]["ingress"]
    peers = [p["podSelector"]["matchLabels"] for p in rule["from"]]
    assert {"app.kubernetes.io/name": "alertmanager"} in peers
    assert {"optiinfra.io/role": "orchestrator"} in peers
    assert all("podSelector" in p for p in rule["from"]), "every peer is a selected pod, never a whole namespace"


def test_alertmanager_config_sends_the_token_secret_to_the_receiver_service() -> None:
    config = _find("AlertmanagerConfig", "optiinfra")
    (receiver,) = config["spec"]["receivers"]
    (webhook,) = receiver["webhookConfigs"]
    service = _find("Service", "optiinfra-receiver")
    host = f"{service['metadata']['name']}.{service['metadata']['namespace']}.svc:{service['spec']['ports'][0]['port']}"
    assert webhook["url"] == f"http://{host}/api/v1/alerts"
    credentials = webhook["httpConfig"]["authorization"]["credentials"]
    tokens = [doc for _, doc in _all_docs()
              if doc["kind"] == "Secret" and doc["metadata"]["name"] == credentials["name"]]
    namespaces = {doc["metadata"]["namespace"] for doc in tokens}
    assert config["metadata"]["namespace"] in namespaces, "the Secret must sit beside the AlertmanagerConfig"
    assert len({doc["stringData"][credentials["key"]] for doc in tokens}) == 1
