"""The generated dashboards: structure, PromQL, known series, conventions, determinism, staleness, CLI."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import REPO

from optiinfra import taxonomy as tx
from optiinfra.cli import main
from optiinfra.config import Config, parse_config
from optiinfra.grafana import dashboards as d
from optiinfra.grafana import lint
from optiinfra.grafana.generate import DashboardError, generate, known_series, render_docs
from optiinfra.grafana.model import DATASOURCE, SCHEMA_VERSION, Panel, Row, Target, layout

GENERATED = REPO / "grafana" / "generated"
UIDS = ("optiinfra-fleet", "optiinfra-instance", "optiinfra-bottlenecks", "optiinfra-slos", "optiinfra-gpus",
        "optiinfra-efficiency")


@pytest.fixture(scope="module")
def boards() -> dict[str, dict[str, Any]]:
    return {b.uid: b.to_dict() for b in d.all_dashboards(Config())}


def test_every_dashboard_has_its_stable_uid(boards: dict[str, dict[str, Any]]) -> None:
    assert tuple(boards) == UIDS
    for uid, board in boards.items():
        assert board["uid"] == uid and board["title"].startswith("OptiInfra / ")
        assert board["schemaVersion"] == SCHEMA_VERSION >= 39


def test_every_dashboard_passes_the_checks(boards: dict[str, dict[str, Any]]) -> None:
    known = known_series(Config())
    for board in boards.values():
        assert lint.problems(board, known) == []


def test_every_query_parses_and_reads_known_series(boards: dict[str, dict[str, Any]]) -> None:
    """Independent of lint: parse each query with promql-parser and check each name against the sources."""
    import promql_parser

    from optiinfra import metrics as m
    from optiinfra.rules.generate import all_groups
    from optiinfra.rules.promql import Ctx

    recorded = {r.record for g in all_groups(Ctx(Config())) for r in g.rules if r.record}
    allowed = m.known_series() | recorded | {"ALERTS", "up"} | d.RECEIVER_SERIES
    count = 0
    for board in boards.values():
        for _, expr in lint.queries(board):
            count += 1
            names: list[str] = []
            promql_parser.walk(
                promql_parser.parse(lint.substitute(expr)),
                lambda node, names=names: names.append(node.name)
                if isinstance(node, promql_parser.VectorSelector) else None)
            assert names, expr
            assert set(names) <= allowed, (expr, set(names) - allowed)
    assert count > 150


def test_receiver_series_exist_in_the_receiver() -> None:
    from optiinfra.alertmanager.metrics import ReceiverMetrics

    # prometheus_client exposes a labelled counter's samples only once a label set exists: compare families.
    families = {metric.name + ("_total" if metric.type == "counter" else "")
                for metric in ReceiverMetrics().registry.collect()}
    assert families >= d.RECEIVER_SERIES


def test_panels_read_recording_rules_where_one_exists(boards: dict[str, dict[str, Any]]) -> None:
    """No panel recomputes what a rule records: no histogram_quantile over a histogram the rules cover, no
    rate of a counter a pod_model rate rule covers, and the KV ratio is never summed."""
    covered = ("llm_prompt_tokens_total", "llm_generation_tokens_total", "llm_preemptions_total",
               "llm_time_to_first_token_seconds_bucket", "llm_inter_token_latency_seconds_bucket",
               "llm_request_duration_seconds_bucket", "llm_request_queue_time_seconds_bucket")
    for board in boards.values():
        for where, expr in lint.queries(board):
            assert "histogram_quantile" not in expr, where
            assert not any(name in lint.series_used(expr) for name in covered), (where, expr)
            assert "sum(llm_kv_cache_usage_ratio" not in expr and "sum by (engine, model) (pod_model:llm_kv" \
                not in expr, where


def test_every_recording_rule_is_shown(boards: dict[str, dict[str, Any]]) -> None:
    """A rule the rules add must be a decision for the dashboards too: every non-quantile rule is read by a
    panel, every recorded histogram by at least one of its quantiles, every SLO window by a burn-rate query."""
    from optiinfra.rules.recording import RECORDING_RULES, quantile_name

    used = {name for board in boards.values() for _, expr in lint.queries(board) for name in lint.series_used(expr)}
    for name, spec in RECORDING_RULES.items():
        if spec.quantile is None:
            assert name in used, name
    for histogram in ("llm_time_to_first_token_seconds", "llm_inter_token_latency_seconds",
                      "llm_time_per_output_token_seconds", "llm_request_duration_seconds",
                      "llm_request_queue_time_seconds"):
        recorded = [n for n, spec in RECORDING_RULES.items()
                    if spec.quantile is not None and n == quantile_name(histogram, spec.quantile, spec.level)]
        assert recorded, histogram
        assert set(recorded) <= used, (histogram, set(recorded) - used)
    for window in ("5m", "30m", "1h", "2h", "6h", "1d", "3d"):
        assert f"slo:sli_error:ratio_rate{window}" in used
    assert {"slo:objective:ratio", "slo:error_budget:ratio", "slo:sli_requests:rate1d"} <= used


def test_rate_interval_and_units_everywhere(boards: dict[str, dict[str, Any]]) -> None:
    for board in boards.values():
        for panel in lint.panels(board):
            if panel["type"] == "row":
                continue
            assert panel["fieldConfig"]["defaults"]["unit"], panel["title"]
            for target in panel["targets"]:
                expr = target["expr"]
                if "rate(" in expr or "increase(" in expr:
                    assert "$__rate_interval" in expr, (panel["title"], expr)
                assert "[5m]" not in expr, (panel["title"], expr)


def test_no_hard_coded_datasource_anywhere() -> None:
    for path in sorted((GENERATED / "dashboards").glob("*.json")):
        text = path.read_text()
        uids = {line.strip() for line in text.splitlines() if '"uid":' in line}
        board = json.loads(text)
        assert uids <= {'"uid": "${datasource}"', '"uid": "${datasource}",', f'"uid": "{board["uid"]}",'}, path
        assert '"uid": "${datasource}"' in text


def test_bottlenecks_dashboard_has_a_row_per_taxonomy_entry_with_threshold_and_runbook(
        boards: dict[str, dict[str, Any]]) -> None:
    config = Config()
    board = boards["optiinfra-bottlenecks"]
    rows = [p["title"] for p in board["panels"] if p["type"] == "row"]
    assert [r.split(" — ")[0] for r in rows] == [b.id for b in tx.BOTTLENECKS]
    by_title = {p["title"]: p for p in board["panels"]}
    for b in tx.BOTTLENECKS:
        signal = by_title[f"{b.id}: signal"]
        assert signal["links"][0]["url"] == b.runbook_url
        assert b.runbook_url in signal["description"]
        firing = by_title[f"{b.id}: firing"]
        assert f'bottleneck="{b.id}"' in firing["targets"][0]["expr"]
    steps = by_title["kv_cache_pressure: signal"]["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert steps[1]["value"] == config.threshold("kv_cache_pressure", "kv_usage") == 0.9
    steps = by_title["host_memory_pressure: signal"]["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert steps[1]["value"] == pytest.approx(0.9)  # used share = 1 - available_ratio_below


def test_thresholds_follow_the_config() -> None:
    config = parse_config({"bottlenecks": {"kv_cache_pressure": {"thresholds": {"kv_usage": 0.97}},
                                           "request_errors": {"thresholds": {"error_share": 0.02}}}})
    board = d.bottlenecks(config).to_dict()
    signal = next(p for p in board["panels"] if p["title"] == "kv_cache_pressure: signal")
    assert signal["fieldConfig"]["defaults"]["thresholds"]["steps"][1]["value"] == 0.97
    fleet = d.fleet(config).to_dict()
    share = next(p for p in fleet["panels"] if p["title"] == "Error share")
    assert share["fieldConfig"]["defaults"]["thresholds"]["steps"][1]["value"] == 0.02


def test_slo_dashboard_follows_the_configured_slos() -> None:
    config = parse_config({"slos": [{"name": "fast-first-token", "sli": "ttft", "threshold": 2.5,
                                     "objective": 0.995, "engines": ["vllm"]}]})
    board = d.slos(config).to_dict()
    rows = [p["title"] for p in board["panels"] if p["type"] == "row"]
    assert rows == ["SLO fast-first-token: 0.995 of ttft at most 2.5s"]
    exprs = [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
    assert all('slo="fast-first-token"' in e for e in exprs)
    burn = [p for p in board["panels"] if p["title"].startswith("Burn rate")]
    assert [s["value"] for s in burn[0]["fieldConfig"]["defaults"]["thresholds"]["steps"][1:]] == [6, 14.4]
    assert [s["value"] for s in burn[1]["fieldConfig"]["defaults"]["thresholds"]["steps"][1:]] == [1, 3]
    for window in ("5m", "30m", "1h", "2h", "6h", "1d", "3d"):
        assert any(f"slo:sli_error:ratio_rate{window}{{" in e for e in exprs), window
    assert lint.problems(board, known_series(config)) == []


def test_gpu_queries_accept_both_label_spellings(boards: dict[str, dict[str, Any]]) -> None:
    for _, expr in lint.queries(boards["optiinfra-gpus"]):
        raw = [n for n in lint.series_used(expr) if n.startswith("DCGM_")]
        if raw:
            assert 'Hostname=~"$hostname"' in expr and 'hostname=~"$hostname"' in expr, expr
        else:
            assert "gpu:DCGM_" in expr, expr


def test_needs_are_declared_where_optional_components_are_read() -> None:
    for board in d.all_dashboards(Config()):
        for panel in board.panels():
            for target in panel.targets:
                names = lint.series_used(target.expr)
                need = target.needs or panel.needs
                if any(n.startswith(("DCGM_", "gpu:", "pod:DCGM")) for n in names):
                    assert need == "gpu", (board.uid, panel.title)
                if "llm_log_events_total" in names:
                    assert need == "log signature", (board.uid, panel.title)
                if "llm_host_cgroup_memory_limit_bytes" in names:
                    assert need == "cgroup limit", (board.uid, panel.title)
        for annotation in board.annotations:
            if d.RECEIVER_PUSHES in annotation.expr:
                assert annotation.needs == "receiver"


# --- the checks catch what they claim to -------------------------------------------------------------


def _broken(boards: dict[str, dict[str, Any]], change: Any) -> list[str]:
    board = copy.deepcopy(boards["optiinfra-fleet"])
    change(board)
    return lint.problems(board, known_series(Config()))


def _first_target(board: dict[str, Any]) -> dict[str, Any]:
    return next(p for p in board["panels"] if p["type"] != "row")["targets"][0]  # type: ignore[no-any-return]


@pytest.mark.parametrize(("change", "expected"), [
    (lambda b: _first_target(b).update(expr="sum(vllm:num_requests_running)"),
     "vllm:num_requests_running is produced by neither"),
    (lambda b: _first_target(b).update(expr="sum(rate(llm_prompt_tokens_total[5m]))"),
     "rate() without [$__rate_interval]"),
    (lambda b: _first_target(b).update(expr="sum(llm_requests_running{pod=~\"$nope\"})"),
     "$nope is not a variable"),
    (lambda b: _first_target(b).update(expr="sum(rate(x[$__rate_interval])"), "does not parse"),
    (lambda b: _first_target(b).update(datasource={"type": "prometheus", "uid": "edx8memhpd9tsa"}),
     "does not read ${datasource}"),
    (lambda b: b["panels"][1]["fieldConfig"]["defaults"].pop("unit"), "no unit"),
    (lambda b: b["panels"][1].update(description=""), "no description"),
    (lambda b: b["panels"][2].update(id=b["panels"][1]["id"]), "also used by"),
    (lambda b: b["panels"][2].update(gridPos=dict(b["panels"][1]["gridPos"])), "overlaps"),
    (lambda b: b["templating"]["list"][1]["query"].update(query="label_values(model)"), "metric-scoped"),
    (lambda b: b["templating"]["list"].pop(0), "no datasource variable"),
])
def test_lint_catches(boards: dict[str, dict[str, Any]], change: Any, expected: str) -> None:
    problems = _broken(boards, change)
    assert any(expected in p for p in problems), problems


def test_layout_never_overlaps_and_wraps() -> None:
    p = Panel("p", "d", (Target("up"),), "short", width=10, height=3)
    tall = Panel("t", "d", (Target("up"),), "short", width=10, height=9)
    placed = layout((Row("r"), p, tall, p, Row("s"), p))
    grids = [x["gridPos"] for x in placed]
    assert grids == [{"x": 0, "y": 0, "w": 24, "h": 1}, {"x": 0, "y": 1, "w": 10, "h": 3},
                     {"x": 10, "y": 1, "w": 10, "h": 9}, {"x": 0, "y": 10, "w": 10, "h": 3},
                     {"x": 0, "y": 13, "w": 24, "h": 1}, {"x": 0, "y": 14, "w": 10, "h": 3}]
    assert [x["id"] for x in placed] == [1, 2, 3, 4, 5, 6]
    assert placed[1]["datasource"] == DATASOURCE


def test_a_recording_rule_typo_fails_generation() -> None:
    with pytest.raises(KeyError, match="not a recording rule"):
        d.rule("pod_model:llm_kv_cache_usage:max")


def test_generation_refuses_a_broken_dashboard(monkeypatch: pytest.MonkeyPatch) -> None:
    bad = d.Dashboard("optiinfra-bad", "OptiInfra / bad", "x",
                      (Panel("p", "d", (Target("sum(vllm:num_requests_running)"),), "short"),))
    monkeypatch.setattr("optiinfra.grafana.generate.all_dashboards", lambda config: (bad,))
    with pytest.raises(DashboardError, match="vllm:num_requests_running"):
        generate(Config())


# --- generated files -----------------------------------------------------------------------------------


def test_generation_is_deterministic() -> None:
    assert generate(Config()) == generate(Config())


def test_committed_files_are_current(tmp_path: Path) -> None:
    out = tmp_path / "generated"
    docs = tmp_path / "dashboards.md"
    assert main(["dashboards", "generate", "--out", str(out), "--docs", str(docs),
                 "--dashboards-path", "/var/lib/grafana/dashboards/optiinfra"]) == 0
    fresh = sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
    committed = sorted(p.relative_to(GENERATED) for p in GENERATED.rglob("*") if p.is_file())
    assert fresh == committed
    for rel in fresh:
        assert (out / rel).read_text() == (GENERATED / rel).read_text(), f"{rel} is stale: run make generate"
    assert docs.read_text() == (REPO / "docs" / "dashboards.md").read_text(), "docs/dashboards.md is stale"


def test_provisioning_points_at_a_folder() -> None:
    provider = yaml.safe_load((GENERATED / "provisioning" / "dashboards.yaml").read_text())["providers"][0]
    assert provider["type"] == "file" and provider["folder"] == "OptiInfra"
    assert provider["options"]["path"]
    ds = yaml.safe_load((GENERATED / "provisioning" / "datasources.yaml").read_text())["datasources"][0]
    assert ds["type"] == "prometheus"


def test_docs_list_every_panel() -> None:
    text = render_docs(Config())
    for board in d.all_dashboards(Config()):
        assert f"`{board.uid}`" in text
        for item in board.items:
            if isinstance(item, Panel):
                assert f"| {item.title} |" in text


def test_cli_refuses_a_bad_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("slos: [{name: x, sli: ttft, threshold: 2, objective: 0.99, engines: [vllm]}]\n")
    assert main(["dashboards", "generate", "--out", str(tmp_path / "o"), "--slo-config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "not a bucket boundary" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()
