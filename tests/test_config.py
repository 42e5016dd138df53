"""The user config: defaults without a file, clear refusals naming what to fix, the JSON Schema agrees."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from optiinfra import metrics as m
from optiinfra import taxonomy as tx
from optiinfra.config import SCHEMA_PATH, Config, ConfigError, load_config, parse_config, parse_yaml
from optiinfra.rules.promql import num


def _refused(data: object) -> str:
    with pytest.raises(ConfigError) as err:
        parse_config(data)
    return str(err.value)


def test_defaults_work_without_a_file_and_thresholds_are_boundaries() -> None:
    config = load_config(None)
    assert config.threshold("kv_cache_pressure", "kv_usage") == 0.9
    assert config.for_("kv_cache_pressure") == "5m"
    assert {s.name for s in config.slos} == {"ttft-vllm", "ttft-sglang", "inter-token", "availability"}
    for slo in config.slos:
        if slo.threshold is not None:
            for engine in slo.applies_to():
                from optiinfra.config import SLI_HISTOGRAMS

                assert slo.threshold in m.NATIVE_BUCKETS[engine][SLI_HISTOGRAMS[slo.sli]]


def test_slo_threshold_not_a_bucket_boundary_names_the_nearest_boundaries() -> None:
    msg = _refused({"slos": [{"name": "ttft", "sli": "ttft", "threshold": 2.0, "objective": 0.99,
                              "engines": ["vllm"]}]})
    assert "slos.0" in msg
    assert "threshold 2.0s is not a bucket boundary of vllm's llm_time_to_first_token_seconds" in msg
    assert "nearest boundaries: below 1.0, above 2.5" in msg


def test_slo_threshold_checked_against_every_engine_it_applies_to() -> None:
    # 2.5 is a vLLM boundary but not an SGLang one; without `engines` the SLO applies to both.
    msg = _refused({"slos": [{"name": "ttft", "sli": "ttft", "threshold": 2.5, "objective": 0.99}]})
    assert "sglang's llm_time_to_first_token_seconds" in msg
    assert "below 2.0, above 4.0" in msg


def test_objective_below_the_fast_tier_range_is_refused_with_the_reason() -> None:
    msg = _refused({"slos": [{"name": "avail", "sli": "availability", "objective": 0.9}]})
    assert "slos.0.objective" in msg
    assert "below 0.9306" in msg
    assert "14.4 x 0.1 > 1" in msg and "could never page" in msg
    assert parse_config({"slos": [{"name": "avail", "sli": "availability", "objective": 0.95}]})


@pytest.mark.parametrize(("data", "key", "where"), [
    ({"selectrs": {}}, "selectrs", "(top level)"),
    ({"slos": [{"name": "a", "sli": "availability", "objective": 0.99, "objectiv": 1}]}, "objectiv", "slos.0"),
    ({"bottlenecks": {"kv_cache_pressure": {"threshold": {}}}}, "threshold", "bottlenecks.kv_cache_pressure"),
])
def test_unknown_keys_are_refused_by_name(data: dict, key: str, where: str) -> None:
    msg = _refused(data)
    assert f"unknown key {key!r} at {where}" in msg
    assert "Traceback" not in msg and "pydantic" not in msg


def test_bottleneck_overrides_are_checked_against_the_taxonomy() -> None:
    assert "unknown bottleneck 'kv_pressure'" in _refused({"bottlenecks": {"kv_pressure": {"for": "1m"}}})
    msg = _refused({"bottlenecks": {"kv_cache_pressure": {"thresholds": {"usage": 0.8}}}})
    assert "has no threshold 'usage'; its thresholds: kv_usage, min_waiting" in msg
    assert "not a Prometheus duration" in _refused({"bottlenecks": {"kv_cache_pressure": {"for": "5 minutes"}}})
    config = parse_config({"bottlenecks": {"kv_cache_pressure": {"for": "10m", "thresholds": {"kv_usage": 0.95}}}})
    assert config.for_("kv_cache_pressure") == "10m"
    assert config.threshold("kv_cache_pressure", "kv_usage") == 0.95


def test_other_mistakes_get_one_clear_line(tmp_path: Path) -> None:
    assert "availability SLO takes no threshold" in _refused(
        {"slos": [{"name": "a", "sli": "availability", "objective": 0.99, "threshold": 1.0}]})
    assert "needs a threshold" in _refused({"slos": [{"name": "a", "sli": "ttft", "objective": 0.99}]})
    assert "tgi does not export llm_time_to_first_token_seconds" in _refused(
        {"slos": [{"name": "a", "sli": "ttft", "objective": 0.99, "threshold": 1.0, "engines": ["tgi"]}]})
    assert "repeated: a" in _refused({"slos": [{"name": "a", "sli": "availability", "objective": 0.99}] * 2})
    assert "top level must be a mapping" in _refused(["x"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("slos: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "missing.yaml")


def test_generate_cli_reports_config_errors_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from optiinfra.cli import main

    path = tmp_path / "slo.yaml"
    path.write_text(yaml.safe_dump({"slos": [{"name": "t", "sli": "ttft", "threshold": 3, "objective": 0.99,
                                              "engines": ["vllm"]}]}))
    assert main(["rules", "generate", "--slo-config", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert "nearest boundaries: below 2.5, above 5.0" in err


def test_json_schema_accepts_defaults_and_refuses_unknown_keys() -> None:
    import json

    schema = json.loads(SCHEMA_PATH.read_text())
    defaults = load_config(None).model_dump(mode="json", by_alias=True)
    jsonschema.validate(defaults, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"nope": 1}, schema)


def test_exact_number_formatting() -> None:
    from decimal import Decimal

    assert num(0.001) == "0.001"
    assert num(Decimal(1) - Decimal(repr(0.99))) == "0.01"
    assert num(Decimal("14.4") * (Decimal(1) - Decimal(repr(0.999)))) == "0.0144"
    assert num(100.0) == "100"
    assert num(1024) == "1024"
    from optiinfra.rules.generate import RULES_FILE
    rules = (Path(__file__).resolve().parent.parent / "rules" / "generated" / RULES_FILE).read_text()
    assert "0000000" not in rules and "9999999" not in rules
    assert "> 0.144" in rules and "> 0.06" in rules and "> 0.03" in rules and "> 0.01" in rules


def test_taxonomy_threshold_names_are_what_overrides_use() -> None:
    for b in tx.BOTTLENECKS:
        for name in b.thresholds:
            assert parse_config({"bottlenecks": {b.id: {"thresholds": {name: b.thresholds[name].value}}}})


def test_native_buckets_are_sorted_histograms_the_engine_exports() -> None:
    metrics = m.by_name()
    for engine, table in m.NATIVE_BUCKETS.items():
        for name, bounds in table.items():
            assert metrics[name].type == "histogram" and engine in metrics[name].sources
            assert list(bounds) == sorted(set(bounds)) and bounds[0] > 0
    assert m.NATIVE_BUCKETS["tgi"]["llm_request_duration_seconds"][-1] == pytest.approx(145.611, rel=1e-5)


def test_selectors_must_be_label_matchers() -> None:
    msg = _refused({"selectors": {"series": "namespace=llm"}})
    assert "selectors.series: 'namespace=llm' is not a list of PromQL label matchers" in msg
    assert "without braces" in _refused({"selectors": {"sidecar_job": '{job="x"}'}})


# ------------------------------------------------------------------ hostile configs (issue 12, finding 9)

def _refused_bytes(data: bytes) -> str:
    with pytest.raises(ConfigError) as err:
        parse_config(parse_yaml(data, "c.yaml"), "c.yaml")
    message = str(err.value)
    assert "\n" not in message and "Traceback" not in message
    return message


@pytest.mark.parametrize(("data", "expected"), [
    (b"slos: [\xff\xfe]\n", "not UTF-8 text (byte 0xff at offset 7)"),
    (b"a: " + b"[" * 100_000, "nested deeper than 32 levels"),
    (b"min_request_rate: " + b"9" * 5000, "an integer of 5000 characters"),
    (b"bottlenecks: {kv_cache_pressure: {for: 99999999999999999999h}}",
     "longer than any duration Prometheus can hold"),
    (b"bottlenecks: {kv_cache_pressure: {for: 61m}}", "longer than the 1h allowed here"),
    (b"slo_fast_for: 1000000h", "longer than the 1h allowed here"),
    (b"bottlenecks: {kv_cache_pressure: {thresholds: {kv_usage: .nan}}}", "finite number"),
    (b"bottlenecks: {kv_cache_pressure: {thresholds: {kv_usage: 1.5}}}", "must be between 0 and 1"),
    (b"bottlenecks: {queue_buildup: {thresholds: {queue_p95_seconds: -1}}}", "must be between 0 and 86400"),
    (b"bottlenecks: {gpu_memory_pressure: {thresholds: {fb_free_mib_below: -5}}}", "must be at least 0"),
    (b"min_request_rate: .inf", "min_request_rate: Input should be a finite number"),
    (b"slos: [{name: a, sli: availability, objective: .nan}]", "finite number"),
    (b"min_request_rate: 1\nmin_request_rate: 2\n", "line 2: the key 'min_request_rate' appears twice"),
    (b"bottlenecks:\n  kv_cache_pressure: {for: 1m}\n  kv_cache_pressure: {for: 2m}\n", "appears twice"),
    (b"a: 2024-13-45", "a value YAML cannot read: month must be in 1..12"),
    (b"a0: &a0 [x, x]\n" + b"".join(b"a%d: &a%d [*a%d, *a%d]\n" % (i, i, i - 1, i - 1) for i in range(1, 30)),
     "more than 100000 values once its aliases"),
    (b"x: " + b"y" * (1024 * 1024), "a config is at most 1048576 bytes"),
])
def test_hostile_configs_get_one_clear_line(data: bytes, expected: str) -> None:
    assert expected in _refused_bytes(data)


@pytest.mark.parametrize(("regex", "expected"), [
    ("(a)\\1", "not supported by Prometheus's RE2"),      # backreference
    ("(?P<x>a)(?P=x)", "not supported by Prometheus's RE2"),
    ("llama(?=-3)", "not supported by Prometheus's RE2"),  # lookahead
    ("(?<!x)llama", "not supported by Prometheus's RE2"),  # lookbehind
    ("(?>a)", "not supported by Prometheus's RE2"),       # atomic group
    ("a++", "not supported by Prometheus's RE2"),         # possessive
    ("llama\\Z", "not supported by Prometheus's RE2"),
    ("llama[", "is not a regex"),
])
def test_model_regex_must_be_one_prometheus_accepts(regex: str, expected: str) -> None:
    message = _refused({"slos": [{"name": "a", "sli": "availability", "objective": 0.99, "model": regex}]})
    assert "slos.0.model" in message and expected in message


def test_a_model_regex_with_backslashes_reaches_promtool_intact(tmp_path: Path) -> None:
    import subprocess

    from conftest import require_binary

    from optiinfra.rules.generate import RULES_FILE, generate, write
    from optiinfra.rules.testgen import TEST_FILES

    promtool = require_binary("promtool")
    regex = 'llama-3\\.1-.*|"quoted"'
    config = parse_config({"slos": [{"name": "a", "sli": "availability", "objective": 0.99, "model": regex}]})
    write(tmp_path, generate(config))
    rules = yaml.safe_load((tmp_path / RULES_FILE).read_text())
    exprs = [r["expr"] for g in rules["groups"] for r in g["rules"] if r.get("labels", {}).get("slo") == "a"]
    assert exprs and all('model=~"llama-3\\\\.1-.*|\\"quoted\\""' in e for e in exprs if "model=~" in e)
    tests = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.test.yml"))
    assert len(tests) == len(TEST_FILES)
    result = subprocess.run([promtool, "test", "rules", *tests], cwd=tmp_path, capture_output=True, text=True,
                            timeout=300, check=False)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]


def test_every_config_error_is_one_line_and_exit_2_from_every_command(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from optiinfra.cli import main

    cases = {"latin1.yaml": b"slos: [caf\xe9]\n", "deep.yaml": b"[" * 100_000,
             "digits.yaml": b"min_request_rate: " + b"9" * 5000, "dupe.yaml": b"a: 1\na: 2\n"}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        for command in (["rules", "generate", "--out", str(tmp_path / "o")],
                        ["dashboards", "generate", "--out", str(tmp_path / "o")],
                        ["alertmanager-config"], ["generate", "--check", "--root", str(tmp_path)]):
            assert main([*command, "--slo-config", str(tmp_path / name)]) == 2, (name, command)
            err = capsys.readouterr().err
            assert err.count("\n") == 1 and err.startswith(f"optiinfra {command[0]}: error: "), err[:300]
            assert name in err


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(
    st.binary(max_size=300),
    st.recursive(st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=20),
                 lambda kids: st.lists(kids, max_size=4) | st.dictionaries(
                     st.sampled_from(["slos", "bottlenecks", "min_request_rate", "selectors", "alertmanager",
                                      "for", "thresholds", "kv_cache_pressure", "kv_usage", "name", "sli",
                                      "objective", "model", "threshold", "matchers", "group_by", "series",
                                      "runbook_url_pattern", "identity_labels", "x"]), kids, max_size=4),
                 max_leaves=20).map(lambda d: yaml.safe_dump(d).encode()),
))
def test_any_bytes_give_a_config_or_one_config_error_line(data: bytes) -> None:
    try:
        config = parse_config(parse_yaml(data, "c.yaml"), "c.yaml")
    except ConfigError as exc:
        assert "\n" not in str(exc) and str(exc).startswith("c.yaml: ")
    else:
        assert isinstance(config, Config)
