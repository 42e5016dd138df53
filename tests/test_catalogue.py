"""The catalogues are consistent, and the docs generated from them are current."""

from __future__ import annotations

import re

from conftest import REPO

from optiinfra import docs, metrics, taxonomy

PROM_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


def test_metric_names_are_valid_and_unique() -> None:
    names = [m.name for m in metrics.ALL_METRICS]
    assert len(names) == len(set(names))
    for name in names:
        assert PROM_NAME.match(name), name


def test_counters_end_in_total_except_dcgm_names() -> None:
    for metric in metrics.ALL_METRICS:
        if metric.type == "counter" and not metric.name.startswith("DCGM_"):
            assert metric.name.endswith("_total"), metric.name


def test_every_engine_metric_has_a_source_and_vllm_has_them_all() -> None:
    for metric in metrics.ENGINE_METRICS:
        assert metric.sources, metric.name
        assert "vllm" in metric.sources, metric.name
        for engine in metric.sources:
            assert engine in metrics.ENGINES


def test_sources_only_produce_declared_labels() -> None:
    for metric in metrics.ENGINE_METRICS:
        for sources in metric.sources.values():
            for src in sources:
                declared = {*metric.labels, *metrics.RANK_LABELS}
                assert set(src.set_labels) | set(src.value_labels) <= declared, metric.name


def test_taxonomy_ids_alerts_unique_and_inhibitions_resolve() -> None:
    ids = [b.id for b in taxonomy.BOTTLENECKS]
    alerts = [b.alert for b in taxonomy.BOTTLENECKS]
    assert len(ids) == len(set(ids)) and len(alerts) == len(set(alerts))
    pairs = taxonomy.inhibition_pairs()
    assert ("kv_cache_pressure", "queue_buildup") in {(s.id, t.id) for s, t in pairs}
    for bid in taxonomy.PERFORMANCE_IDS:
        assert bid in ids


def test_docs_taxonomy_md_is_current_and_lists_every_bottleneck() -> None:
    committed = (REPO / "docs" / "taxonomy.md").read_text(encoding="utf-8")
    assert committed == docs.render_taxonomy_md(), "docs/taxonomy.md is stale: run `make generate`"
    rows = re.findall(r"^\| \[`([a-z_]+)`\]\(#[a-z_]+\) \| `([A-Za-z]+)` \| (\w+) \|", committed, re.M)
    assert [(b.id, b.alert, b.severity) for b in taxonomy.BOTTLENECKS] == rows
    for b in taxonomy.BOTTLENECKS:
        section = committed.split(f"\n## `{b.id}`\n", 1)[1].split("\n## ", 1)[0]
        assert b.fires_when in section and "```promql\n" in section, b.id
        assert ("What the planner does: records a diagnosis" in section) != b.plannable, b.id
        for action in b.actions:
            assert f"`{action}`" in section, (b.id, action)
        assert f"(runbooks/{b.id}.md)" in section and (REPO / "docs" / "runbooks" / f"{b.id}.md").is_file()


def test_docs_metrics_md_is_current() -> None:
    committed = (REPO / "docs" / "metrics.md").read_text(encoding="utf-8")
    assert committed == docs.render_metrics_md(), "docs/metrics.md is stale: run `make generate`"
