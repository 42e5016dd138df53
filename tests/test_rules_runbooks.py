"""Runbooks: one per taxonomy entry (and slo_burn), current, and every runbook_url of the rules exists."""

from __future__ import annotations

import yaml
from conftest import REPO

from optiinfra import taxonomy as tx
from optiinfra.rules.generate import RULES_FILE
from optiinfra.rules.runbooks import ACTION_TEXT, runbooks

RUNBOOKS = REPO / "docs" / "runbooks"


def test_committed_runbooks_are_current() -> None:
    for name, text in runbooks().items():
        path = RUNBOOKS / name
        assert path.exists(), f"{path} missing: run `make generate`"
        assert path.read_text(encoding="utf-8") == text, f"{path} is stale: run `make generate`"


def test_every_runbook_url_of_the_rules_has_its_file() -> None:
    doc = yaml.safe_load((REPO / "rules" / "generated" / RULES_FILE).read_text())
    urls = {r["annotations"]["runbook_url"] for g in doc["groups"] for r in g["rules"] if "alert" in r}
    assert len(urls) == len(tx.BOTTLENECKS) + 1
    for url in urls:
        assert url.startswith(tx.RUNBOOK_BASE_URL + "/")
        assert (RUNBOOKS / url.rsplit("/", 1)[1]).exists(), url
    for b in tx.BOTTLENECKS:
        assert (RUNBOOKS / b.runbook_url.rsplit("/", 1)[1]).exists()


def test_runbooks_say_what_the_plan_does_and_name_the_dashboards() -> None:
    books = runbooks()
    dashboards = ("OptiInfra / Fleet overview", "OptiInfra / Instance", "OptiInfra / Bottlenecks",
                  "OptiInfra / SLOs", "OptiInfra / GPUs")
    for b in tx.BOTTLENECKS:
        text = books[f"{b.id}.md"]
        assert any(d in text for d in dashboards), b.id
        for action in b.actions:
            assert f"`{action}`: {ACTION_TEXT[action]}" in text
        if b.manual:
            assert b.manual in text


def test_rules_reference_is_current_and_its_example_config_is_valid() -> None:
    from optiinfra.config import parse_config
    from optiinfra.rules.recording import RECORDING_RULES
    from optiinfra.rules.runbooks import EXAMPLE_CONFIG, rules_reference

    text = rules_reference()
    assert (REPO / "docs" / "rules.md").read_text(encoding="utf-8") == text, "run `make generate`"
    for name in RECORDING_RULES:
        assert f"`{name}`" in text
    config = parse_config(yaml.safe_load(EXAMPLE_CONFIG))
    assert config.threshold("kv_cache_pressure", "kv_usage") == 0.95
    assert [s.name for s in config.slos] == ["ttft-chat", "availability"]
