"""``optiinfra generate``: one pipeline writes every committed artifact; --check finds stale and leftover files;
the config's runbook URL pattern reaches the alerts and dashboards; unwritable outputs are one clear line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from conftest import REPO

from optiinfra.cli import main
from optiinfra.config import load_config
from optiinfra.generate import render_all


def test_the_committed_tree_is_what_the_pipeline_renders(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["generate", "--check", "--root", str(REPO)]) == 0, capsys.readouterr().err
    files = render_all(load_config(None))
    for folder in ("rules/generated/", "grafana/generated/", "docs/runbooks/", "deploy/kubernetes/monitoring/"):
        assert any(name.startswith(folder) for name in files), folder
    assert {"alertmanager/generated/alertmanager.yml", "optiinfra/config.schema.json", "docs/metrics.md",
            "docs/configuration.md", "docs/plan-actions.md", "alertmanager/plan.schema.json"} <= set(files)


def test_check_lists_stale_missing_and_leftover_files_and_generate_fixes_them(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["generate", "--root", str(tmp_path)]) == 0
    capsys.readouterr()
    assert main(["generate", "--check", "--root", str(tmp_path)]) == 0
    (tmp_path / "docs/metrics.md").write_text("edited by hand\n")
    (tmp_path / "rules/generated/rules/optiinfra-rules.yml").unlink()
    leftover = "docs/runbooks/" + "retired_bottleneck" + ".md"  # a runbook the taxonomy no longer has
    (tmp_path / leftover).write_text("# gone from the taxonomy\n")
    capsys.readouterr()
    assert main(["generate", "--check", "--root", str(tmp_path)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[:3] == ["docs/metrics.md", leftover, "rules/generated/rules/optiinfra-rules.yml"]
    assert err[3] == "3 generated file(s) are stale: run `make generate`"
    assert main(["generate", "--root", str(tmp_path)]) == 0
    assert f"removed {leftover}" in capsys.readouterr().out
    assert main(["generate", "--check", "--root", str(tmp_path)]) == 0


def test_runbook_url_pattern_reaches_alerts_slo_alerts_and_dashboards(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"runbook_url_pattern": "https://wiki.example/llm/{bottleneck}"}))
    files = render_all(load_config(config))
    rules = yaml.safe_load(files["rules/generated/rules/optiinfra-rules.yml"])
    urls = {r["alert"]: r["annotations"]["runbook_url"] for g in rules["groups"] for r in g["rules"] if "alert" in r}
    assert urls["LLMKVCachePressure"] == "https://wiki.example/llm/kv_cache_pressure"
    assert urls["LLMSLOBurnRateFast"] == "https://wiki.example/llm/slo_burn"
    assert all(u.startswith("https://wiki.example/llm/") for u in urls.values())
    board = json.loads(files["grafana/generated/dashboards/optiinfra-bottlenecks.json"])
    links = {link["url"] for p in board["panels"] for link in p.get("links", [])}
    assert "https://wiki.example/llm/kv_cache_pressure" in links
    assert not any("github.com/optiinfra" in u for u in links)


@pytest.mark.parametrize("command", [["rules", "generate"], ["dashboards", "generate"]])
def test_unwritable_out_is_one_clear_line(tmp_path: Path, command: list[str],
                                              capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory\n")
    assert main([*command, "--out", str(blocker / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"cannot write {blocker}/out/" in err and "Traceback" not in err
