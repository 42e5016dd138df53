"""``--profile demo`` scales every ``for`` and range window by 1/60 and changes nothing else; its promtool
tests pass; the rules read only series the exporter produces."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from test_rules_generate import run_promtool_tests

from optiinfra import metrics as m
from optiinfra.config import load_config, parse_config, parse_duration_ms
from optiinfra.rules.check import selectors
from optiinfra.rules.generate import OPERATOR_FILE, RULES_FILE, generate, write
from optiinfra.rules.promql import DEMO_MIN_WINDOW_MS

_WINDOW = re.compile(r"\[(\w+)\]|offset (\w+)")


def _rules(files: dict[str, str], name: str = RULES_FILE) -> dict:
    return yaml.safe_load(files[name])


def test_demo_profile_divides_every_duration_by_60_and_changes_nothing_else() -> None:
    config = load_config(None)
    prod, demo = _rules(generate(config)), _rules(generate(config, "demo"))
    windows = 0
    assert len(prod["groups"]) == len(demo["groups"])
    for pg, dg in zip(prod["groups"], demo["groups"], strict=True):
        assert pg["name"] == dg["name"]
        assert ("interval" in pg) == ("interval" in dg)
        if "interval" in pg:
            assert parse_duration_ms(dg["interval"]) * 60 == parse_duration_ms(pg["interval"]), pg["name"]
        assert len(pg["rules"]) == len(dg["rules"])
        for pr, dr in zip(pg["rules"], dg["rules"], strict=True):
            pairs = list(zip(_WINDOW.findall(pr["expr"]), _WINDOW.findall(dr["expr"]), strict=True))
            windows += len(pairs)
            for (p_range, p_offset), (d_range, d_offset) in pairs:
                # an alert's range window keeps at least DEMO_MIN_WINDOW_MS (jumpy gauges need samples)
                floor = DEMO_MIN_WINDOW_MS if "alert" in dr and d_range else 0
                assert parse_duration_ms(d_range or d_offset) == max(
                    parse_duration_ms(p_range or p_offset) // 60, floor), (dr.get("alert"), p_range, d_range)
            scaled = {**dr, "expr": _WINDOW.sub("[]", dr["expr"])}
            if "for" in pr:
                assert parse_duration_ms(dr["for"]) * 60 == parse_duration_ms(pr["for"]), pr.get("alert")
                scaled["for"] = pr["for"]
            assert scaled == {**pr, "expr": _WINDOW.sub("[]", pr["expr"])}
    assert windows > 100
    # the examples of the spec
    text = generate(config, "demo")[RULES_FILE]
    assert "[5s]" in text and "[24m]" in text and "[1h12m]" in text and "[5m]" not in text.replace("rate5m", "")
    prod_op, demo_op = _rules(generate(config), OPERATOR_FILE), _rules(generate(config, "demo"), OPERATOR_FILE)
    assert prod_op["metadata"] == demo_op["metadata"]


def test_demo_profile_promtool_tests_pass(tmp_path: Path) -> None:
    write(tmp_path, generate(load_config(None), "demo"))
    run_promtool_tests(tmp_path)


def test_overrides_reach_the_rules_and_their_tests(tmp_path: Path) -> None:
    config = parse_config({
        "bottlenecks": {"kv_cache_pressure": {"for": "7m", "thresholds": {"kv_usage": 0.95}},
                        "decode_bound": {"thresholds": {"itl_p95_seconds": 0.2}}},
        "slos": [{"name": "ttft-fast", "sli": "ttft", "threshold": 1.0, "objective": 0.999, "model": "llama"}],
    })
    files = generate(config)
    rules = {r.get("alert") or r.get("record"): r for g in _rules(files)["groups"] for r in g["rules"]}
    assert rules["LLMKVCachePressure"]["for"] == "7m"
    assert "max_over_time(pod_model:llm_kv_cache_usage_ratio:max[2m]) >= 0.95" in rules["LLMKVCachePressure"]["expr"]
    assert "p95_rate5m > 0.2" in rules["LLMHighInterTokenLatency"]["expr"]
    fast = rules["LLMSLOBurnRateFast"]["expr"]
    assert "> 0.0144" in fast and "> 0.006" in fast
    assert 'model=~"llama"' in files[RULES_FILE] and 'le=~"1|1\\\\.0"' in files[RULES_FILE]


def test_rules_read_only_series_the_exporter_produces_and_counters_end_in_total() -> None:
    doc = _rules(generate(load_config(None)))
    recorded = {r["record"] for g in doc["groups"] for r in g["rules"] if "record" in r}
    counters = {s for metric in m.ALL_METRICS if metric.type == "counter" for s in metric.series_names}
    used: set[str] = set()
    for group in doc["groups"]:
        for rule in group["rules"]:
            for name, _ in selectors(rule["expr"]):
                used.add(name)
    raw = used - recorded - {"up", "ALERTS"}  # ALERTS: the health score reads the firing alerts
    assert raw <= m.known_series(), raw - m.known_series()
    rate_args = re.findall(r"(?:rate|increase)\((\w+)", "\n".join(
        r["expr"] for g in doc["groups"] for r in g["rules"]))
    for name in rate_args:
        assert name in counters or name.endswith(("_bucket", "_count")), f"rate() over non-counter {name}"
        assert name.endswith(("_total", "_bucket", "_count")) or name in {"DCGM_EXP_XID_ERRORS_COUNT"} or \
            name.startswith("DCGM_FI_DEV_"), name


def test_generated_tests_pass_for_a_custom_config(tmp_path: Path) -> None:
    """The documented example config: regex selectors, overrides, a model-scoped SLO."""
    from optiinfra.rules.runbooks import EXAMPLE_CONFIG

    config = parse_config(yaml.safe_load(EXAMPLE_CONFIG))
    files = generate(config)
    assert 'namespace=~"llm-.*"' in files[RULES_FILE]
    write(tmp_path, files)
    run_promtool_tests(tmp_path)
