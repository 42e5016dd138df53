"""docs/configuration.md, docs/receiver-api.md and docs/orchestrator-api.md are generated (optiinfra generate):
they are current, they name every flag with its environment twin and default, and every endpoint of the OpenAPI
documents."""

from __future__ import annotations

import argparse
import json

import jsonschema
import pytest
from conftest import REPO

from optiinfra import docs
from optiinfra.alertmanager import contract
from optiinfra.cli import build_parser, env_name
from optiinfra.config import Config, load_config
from optiinfra.generate import render_all

CONFIGURATION = REPO / "docs" / "configuration.md"
RECEIVER_API = REPO / "docs" / "receiver-api.md"
OPENAPI = REPO / "alertmanager" / "openapi.json"
ORCHESTRATOR_API = REPO / "docs" / "orchestrator-api.md"
ORCHESTRATOR_OPENAPI = REPO / "alertmanager" / "orchestrator.openapi.json"
STALE = "is stale: run `make generate`"


def _commands(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """The parser and every (nested) sub-command parser."""
    found = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found += _commands(sub)
    return found


def _rows(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("| `--")]


def test_configuration_md_is_current() -> None:
    assert CONFIGURATION.read_text(encoding="utf-8") == docs.render_configuration_md(), f"{CONFIGURATION} {STALE}"


def test_receiver_api_md_is_current() -> None:
    openapi = json.loads(OPENAPI.read_text(encoding="utf-8"))
    assert RECEIVER_API.read_text(encoding="utf-8") == docs.render_receiver_api_md(openapi), f"{RECEIVER_API} {STALE}"


def test_every_command_and_flag_is_documented_with_its_twin_and_default() -> None:
    committed = CONFIGURATION.read_text(encoding="utf-8")
    parser = build_parser()
    commands = _commands(parser)
    assert len(commands) >= 5
    for command in commands:
        section = committed.split(f"## `{command.prog}`", 1)
        assert len(section) == 2, f"no section for {command.prog}"
        body = section[1].split("\n## ", 1)[0]
        rows = _rows(body)
        for action in command._actions:
            if not action.option_strings or action.dest in ("help", "version") or action.help == argparse.SUPPRESS:
                continue  # SUPPRESS: --log-format/--log-level after a sub-command, documented at the top
            (row,) = [r for r in rows if r.startswith(f"| `{action.option_strings[0]}`")]
            assert f"`{env_name(action.dest, next(iter(command.prog.split()[1:]), None))}`" in row
            if isinstance(action.default, str) and action.default and action.dest != "agent_id":
                assert f"`{action.default}`" in row, (command.prog, action.dest)


def test_every_config_key_is_documented() -> None:
    committed = CONFIGURATION.read_text(encoding="utf-8")
    for name, field in Config.model_fields.items():
        key = field.alias or name
        assert f"| `{key}" in committed, key
    assert "| `slos[].threshold` |" in committed
    assert "| `bottlenecks.<key>.thresholds` |" in committed


def test_documented_defaults_ignore_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPTIINFRA_LOG_FORMAT", "text")
    monkeypatch.setenv("OPTIINFRA_RECEIVER_LISTEN", "10.0.0.1:1")
    text = docs.render_configuration_md()
    assert text == CONFIGURATION.read_text(encoding="utf-8")
    assert "10.0.0.1:1" not in text
    assert build_parser().parse_args([]).log_format == "text", "the variables are back after rendering"


def test_receiver_api_names_every_operation_status_and_schema() -> None:
    openapi = json.loads(OPENAPI.read_text(encoding="utf-8"))
    text = docs.render_receiver_api_md(openapi)
    for path, operations in openapi["paths"].items():
        for method, op in operations.items():
            head = f"### `{method.upper()} {path}`"
            assert head in text
            section = text.split(head, 1)[1].split("\n### ", 1)[0]
            for status in op.get("responses", {}):
                assert f"| {status} |" in section
            for param in op.get("parameters", []):
                assert f"| `{param['name']}` |" in section
            auth = "bearer" if op.get("security") else "—"
            assert f"| {method.upper()} | `{path}` | {auth} |" in text
    for name in openapi["components"]["schemas"]:
        assert f"### `{name}`" in text


def test_orchestrator_openapi_json_is_current() -> None:
    assert ORCHESTRATOR_OPENAPI.read_text(encoding="utf-8") == contract.text(), f"{ORCHESTRATOR_OPENAPI} {STALE}"


def test_orchestrator_api_md_is_current() -> None:
    openapi = json.loads(ORCHESTRATOR_OPENAPI.read_text(encoding="utf-8"))
    rendered = docs.render_orchestrator_api_md(openapi, contract.example_exchange())
    assert ORCHESTRATOR_API.read_text(encoding="utf-8") == rendered, f"{ORCHESTRATOR_API} {STALE}"


def test_orchestrator_api_names_every_operation_schema_and_the_plan_schema() -> None:
    openapi = json.loads(ORCHESTRATOR_OPENAPI.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema({"$defs": openapi["components"]["schemas"]})
    text = ORCHESTRATOR_API.read_text(encoding="utf-8")
    operations = [(method, path) for path, ops in openapi["paths"].items() for method in ops]
    assert {path for _, path in operations} == {"/api/v1/agents/register", "/api/v1/agents/heartbeat",
                                                "/api/v1/plans", "/api/v1/plans/{plan_id}/rollback"}
    for method, path in operations:
        assert f"### `{method.upper()} {path}`" in text
    assert "### `POST {endpoint}/api/v1/plans/{plan_id}/status`" in text
    for name in openapi["components"]["schemas"]:
        assert f"### `{name}`" in text
    assert "(../alertmanager/plan.schema.json)" in text and (REPO / "alertmanager" / "plan.schema.json").is_file()


def test_worked_exchange_bodies_follow_the_openapi_document() -> None:
    """Every body of the documented exchange validates against the schema its endpoint names."""
    openapi = json.loads(ORCHESTRATOR_OPENAPI.read_text(encoding="utf-8"))
    schemas = openapi["components"]["schemas"]
    by_path = {"/api/v1/agents/register": "Agent", "/api/v1/agents/heartbeat": "Heartbeat", "/api/v1/plans": "Plan",
               "rollback": "RollbackRequest", "status": "StatusReport"}
    exchange = contract.example_exchange()
    assert [step["body"].get("status") for step in exchange if "/status" in step["path"]] == ["rolling_out",
                                                                                             "completed"]
    for step in exchange:
        name = by_path.get(step["path"]) or by_path[step["path"].rsplit("/", 1)[1]]
        schema = {"$ref": f"#/components/schemas/{name}", "components": {"schemas": schemas}}
        jsonschema.Draft202012Validator(schema).validate(step["body"])
        if name in ("Plan", "RollbackRequest"):
            assert step["headers"]["Idempotency-Key"] == step["body"]["idempotency_key"]


def test_the_pipeline_writes_every_reference_doc_rendered_here() -> None:
    openapi = json.loads(OPENAPI.read_text(encoding="utf-8"))
    rendered = docs.render_all(openapi)
    assert set(rendered) == {"metrics.md", "configuration.md", "taxonomy.md", "receiver-api.md", "orchestrator-api.md"}
    files = render_all(load_config(None))
    for name, text in rendered.items():
        assert files[f"docs/{name}"] == text
    assert files["alertmanager/orchestrator.openapi.json"] == ORCHESTRATOR_OPENAPI.read_text(encoding="utf-8")
    assert rendered["orchestrator-api.md"] == ORCHESTRATOR_API.read_text(encoding="utf-8")


def test_global_options_work_after_the_sub_command_too() -> None:
    parser = build_parser()
    args = parser.parse_args(["rules", "check", "--log-format", "text", "--log-level", "debug", "x"])
    assert (args.log_format, args.log_level) == ("text", "debug")
    args = parser.parse_args(["--log-format", "text", "demo"])
    assert args.log_format == "text", "a sub-command's copy never overrides the flag given before it"
    args = parser.parse_args(["--log-format", "text", "demo", "--log-format", "json"])
    assert args.log_format == "json"
    assert parser.parse_args(["demo"]).log_format == "json"
