"""deploy/compose: the compose file passes the Compose Specification schema, its mounts exist, every
``optiinfra`` command in it parses on the real command line, and its Prometheus, Alertmanager and Grafana
configs agree with the generated rules, Alertmanager config and dashboards (promtool checks Prometheus's)."""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml
from conftest import REPO, require_binary

from optiinfra.cli import ENV_PREFIX, build_parser, env_name
from optiinfra.config import load_config
from optiinfra.rules.generate import RULES_FILE, generate

COMPOSE_DIR = REPO / "deploy" / "compose"
COMPOSE = COMPOSE_DIR / "docker-compose.yml"
SCHEMA = REPO / "deploy" / "schemas" / "compose-spec.json"
AM_CONFIG = REPO / "alertmanager" / "generated" / "alertmanager.yml"


def _compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    return data


def _services() -> dict[str, Any]:
    services: dict[str, Any] = _compose()["services"]
    return services


def _bind_mounts(service: dict[str, Any]) -> list[tuple[Path, str]]:
    mounts = []
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith("."):
            mounts.append(((COMPOSE_DIR / source).resolve(), target))
    return mounts


def test_compose_file_passes_the_compose_specification() -> None:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    validator = jsonschema.Draft7Validator(schema)
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(_compose())]
    assert not errors
    assert {"simulator", "exporter", "prometheus", "alertmanager", "grafana", "optiinfra-receiver",
            "postgres"} <= set(_services())


def test_the_schema_rejects_a_broken_compose_file() -> None:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    broken = _compose()
    broken["services"]["exporter"]["depends_on"] = {"simulator": {"condition": "when_ready"}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft7Validator(schema).validate(broken)
    broken = _compose()
    broken["services"]["exporter"]["portz"] = ["9400:9400"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft7Validator(schema).validate(broken)


def test_bind_mounts_and_secrets_exist_in_the_repository() -> None:
    for name, service in _services().items():
        for source, _ in _bind_mounts(service):
            assert source.exists(), f"{name} mounts missing {source.relative_to(REPO)}"
    for secret in _compose()["secrets"].values():
        assert (COMPOSE_DIR / secret["file"]).is_file()
    build = _compose()["x-optiinfra"]["build"]
    assert (COMPOSE_DIR / build["context"]).resolve() == REPO


def test_every_optiinfra_command_parses_on_the_real_command_line() -> None:
    parsed = {}
    for name, service in _services().items():
        command = service.get("command", [])
        if command[:1] == ["optiinfra"]:
            parsed[name] = build_parser().parse_args(command[1:])
        elif command[:2] == ["python", "-m"]:
            assert importlib.util.find_spec(command[2]) is not None, command[2]
    assert {"simulator", "exporter", "optiinfra-receiver"} <= set(parsed)
    exporter = parsed["exporter"]
    simulator = parsed["simulator"]
    assert urlsplit(exporter.upstream).port == int(simulator.listen.rpartition(":")[2])
    assert urlsplit(exporter.upstream).hostname == "simulator"
    assert exporter.engine == simulator.engine


def test_prometheus_scrapes_the_sidecar_as_the_rules_expect_and_passes_promtool(tmp_path: Path) -> None:
    promtool = require_binary("promtool")
    config = yaml.safe_load((COMPOSE_DIR / "prometheus" / "prometheus.yml").read_text(encoding="utf-8"))
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert load_config(None).selectors.sidecar_job == 'job="optiinfra"'
    exporter_port = _services()["exporter"]["command"][-1].rpartition(":")[2]
    assert jobs["optiinfra"]["static_configs"][0]["targets"] == [f"exporter:{exporter_port}"]
    (rule_file,) = config["rule_files"]
    # A glob over the folder that holds the rule file alone (the promtool tests live in another folder).
    assert Path(rule_file).name == "*.yml"
    mounts = dict((t, s) for s, t in _bind_mounts(_services()["prometheus"]))
    assert mounts[str(Path(rule_file).parent)] == (REPO / "rules" / "generated" / RULES_FILE).parent
    assert sorted(p.name for p in mounts[str(Path(rule_file).parent)].iterdir()) == [Path(RULES_FILE).name]

    # promtool checks the config with the rule file the generator writes for the defaults.
    rules = tmp_path / RULES_FILE
    rules.parent.mkdir(parents=True)
    rules.write_text(generate(load_config(None))[RULES_FILE], encoding="utf-8")
    config["rule_files"] = [str(rules.parent / "*.yml")]
    checked = tmp_path / "prometheus.yml"
    checked.write_text(yaml.safe_dump(config), encoding="utf-8")
    out = subprocess.run([promtool, "check", "config", str(checked)], capture_output=True, text=True,
                         check=False, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr


def test_alertmanager_mounts_the_generated_config_and_the_token_it_names() -> None:
    am = yaml.safe_load(AM_CONFIG.read_text(encoding="utf-8"))
    (webhook,) = next(r for r in am["receivers"] if r.get("webhook_configs"))["webhook_configs"]
    url = urlsplit(webhook["url"])
    assert url.hostname in _services(), "the webhook host must be the receiver's compose service name"
    receiver_cmd = build_parser().parse_args(_services()[url.hostname]["command"][1:])
    assert receiver_cmd.command == "receiver"
    assert int(receiver_cmd.listen.rpartition(":")[2]) == url.port
    mounts = dict((t, s) for s, t in _bind_mounts(_services()["alertmanager"]))
    assert mounts["/etc/alertmanager/alertmanager.yml"] == AM_CONFIG
    token_on_am = mounts[webhook["http_config"]["authorization"]["credentials_file"]]
    secret_file = (COMPOSE_DIR / _compose()["secrets"]["optiinfra-token"]["file"]).resolve()
    assert token_on_am == secret_file
    assert receiver_cmd.token_file == "/run/secrets/optiinfra-token"


def test_grafana_uses_the_generated_provisioning_and_dashboards() -> None:
    mounts = dict((t, s) for s, t in _bind_mounts(_services()["grafana"]))
    generated = REPO / "grafana" / "generated"
    provider_file = mounts["/etc/grafana/provisioning/dashboards/optiinfra.yaml"]
    datasource_file = mounts["/etc/grafana/provisioning/datasources/optiinfra.yaml"]
    assert provider_file.parent == datasource_file.parent == generated / "provisioning"
    (provider,) = yaml.safe_load(provider_file.read_text(encoding="utf-8"))["providers"]
    assert mounts[provider["options"]["path"]] == generated / "dashboards"
    (datasource,) = yaml.safe_load(datasource_file.read_text(encoding="utf-8"))["datasources"]
    url = urlsplit(datasource["url"])
    assert url.hostname == "prometheus" and url.port == 9090
    assert "9090:9090" in _services()["prometheus"]["ports"]


def test_environment_variables_are_real_flag_twins() -> None:
    """OPTIINFRA_* variables set in the compose file name a flag of the service's command (the image's own
    OPTIINFRA_HEALTH_URL, read by its HEALTHCHECK, aside)."""
    parser = build_parser()
    top = {env_name(a.dest) for a in parser._actions if a.option_strings}
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, service in _services().items():
        command = service.get("command", [])
        env = {k for k in service.get("environment", {}) if k.startswith(ENV_PREFIX)} - {"OPTIINFRA_HEALTH_URL"}
        if not env:
            continue
        assert command[:1] == ["optiinfra"], f"{name}: OPTIINFRA_* variables only work for optiinfra commands"
        twins = top | {env_name(a.dest, command[1]) for a in sub.choices[command[1]]._actions if a.option_strings}
        assert env <= twins, f"{name}: {sorted(env - twins)} are no flag's environment twin"
