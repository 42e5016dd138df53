"""The simulator's /metrics is each engine's exact wire format: promtool-clean, consistent, native buckets."""

from __future__ import annotations

import re
from collections import defaultdict

import pytest
from conftest import promtool_check_metrics

from optiinfra.demo.simulator.engines import render
from optiinfra.demo.simulator.scenarios import SCENARIOS, Simulation
from optiinfra.metrics import NATIVE_BUCKETS

SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
MODEL = "Qwen/Qwen3-0.6B"


def parse(text: str) -> tuple[dict[str, str], list[tuple[str, dict[str, str], float]]]:
    types: dict[str, str] = {}
    samples = []
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            types[name] = kind
        elif line and not line.startswith("#"):
            m = SAMPLE.match(line)
            assert m, f"unparsable line {line!r}"
            samples.append((m.group(1), dict(LABEL.findall(m.group(2) or "")), float(m.group(3))))
    return types, samples


def scrape(sim: Simulation) -> str:
    return render(sim.engine, sim.model, MODEL, 1.7e9)


def busy(engine: str, scenario: str = "healthy", seconds: float = 15.0) -> Simulation:
    sim = Simulation(engine, SCENARIOS[scenario], time_scale=10.0, seed=3)
    sim.advance(seconds)
    return sim


# Lint findings that ARE the engines' real format (promtool's style rules, not parse errors).
ALLOWED_LINT = (
    re.compile(r"^(vllm|sglang):\S+ metric names should not contain ':'$"),
    re.compile(r'^tgi_\S+ counter metrics should have "_total" suffix$'),
    re.compile(r'^tgi_\S+_count non-histogram and non-summary metrics should not have "_count" suffix$'),
    re.compile(r'^vllm:iteration_tokens_total non-counter metrics should not have "_total" suffix$'),
    re.compile(r"^sglang:\S+_histogram metric name should not include type 'histogram'$"),
    re.compile(r"^tgi_batch_max_total_tokens no help text$"),
)


@pytest.mark.parametrize("engine", ["vllm", "sglang", "tgi"])
def test_promtool_accepts_the_payload(engine: str) -> None:
    text = scrape(busy(engine, "request_errors"))
    returncode, findings = promtool_check_metrics(text)
    unexpected = [f for f in findings if not any(p.match(f) for p in ALLOWED_LINT)]
    assert unexpected == []
    # exit 0 is impossible for the real formats (colons, TGI's bare counters); 3 means "lint findings only",
    # a parse error would exit 1
    assert returncode in (0, 3)
    assert findings or returncode == 0


def histograms(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], list[tuple[str, float]]]:
    types, samples = parse(text)
    out: dict[tuple[str, tuple[tuple[str, str], ...]], list[tuple[str, float]]] = defaultdict(list)
    counts: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for name, labels, value in samples:
        for fam, kind in types.items():
            if kind != "histogram":
                continue
            key_labels = tuple(sorted((k, v) for k, v in labels.items() if k != "le"))
            if name == f"{fam}_bucket":
                out[(fam, key_labels)].append((labels["le"], value))
            elif name == f"{fam}_count":
                counts[(fam, key_labels)] = value
    for key, buckets in out.items():
        values = [v for _, v in buckets]
        assert values == sorted(values), f"{key}: buckets decrease"
        assert buckets[-1][0] == "+Inf", f"{key}: last bucket is not +Inf"
        assert buckets[-1][1] == counts[key], f"{key}: +Inf bucket != _count"
    return out


@pytest.mark.parametrize("engine", ["vllm", "sglang", "tgi"])
def test_histograms_are_cumulative_and_counters_monotonic(engine: str) -> None:
    sim = busy(engine, "preemption_storm")
    first = scrape(sim)
    hists = histograms(first)
    assert sum(b[-1][1] for b in hists.values()) > 0, "no observations at all"
    sim.advance(5.0)
    second = scrape(sim)
    histograms(second)
    types, s1 = parse(first)
    _, s2 = parse(second)
    later = {(n, tuple(sorted(ls.items()))): v for n, ls, v in s2}
    counter_like = [n for n, k in types.items() if k in ("counter", "histogram", "summary")]
    checked = 0
    for name, labels, value in s1:
        if "quantile" in labels or name.endswith("_created"):
            continue
        if any(name == c or name.startswith(c + "_") for c in counter_like):
            assert later[(name, tuple(sorted(labels.items())))] >= value, name
            checked += 1
    assert checked > 20


def test_vllm_names_labels_and_buckets() -> None:
    text = scrape(busy("vllm"))
    types, samples = parse(text)
    assert types["vllm:num_preemptions_total"] == "counter"
    assert types["vllm:num_preemptions_created"] == "gauge"
    assert types["vllm:iteration_tokens_total"] == "histogram"
    assert types["vllm:kv_cache_usage_perc"] == "gauge"
    reasons = {ls["finished_reason"] for n, ls, _ in samples if n == "vllm:request_success_total"}
    assert reasons == {"stop", "length", "abort", "error", "repetition"}
    for name, labels, _ in samples:
        if name.startswith("vllm:") and name != "vllm:cache_config_info":
            assert labels["model_name"] == MODEL and labels["engine"] == "0", name
    ttft = [ls["le"] for n, ls, _ in samples if n == "vllm:time_to_first_token_seconds_bucket"]
    assert ttft[:3] == ["0.001", "0.005", "0.01"] and ttft[-3:] == ["640.0", "2560.0", "+Inf"]
    assert len(ttft) == len(NATIVE_BUCKETS["vllm"]["llm_time_to_first_token_seconds"]) + 1
    e2e = [ls["le"] for n, ls, _ in samples if n == "vllm:e2e_request_latency_seconds_bucket"]
    assert e2e[0] == "0.3" and e2e[-2] == "7680.0"
    tokens = [ls["le"] for n, ls, _ in samples if n == "vllm:request_prompt_tokens_bucket"]
    assert tokens[:4] == ["1.0", "2.0", "5.0", "10.0"] and tokens[-1] == "+Inf" and tokens[-2] == "20000.0"
    info = next(ls for n, ls, _ in samples if n == "vllm:cache_config_info")
    assert info["block_size"] == "16" and info["enable_prefix_caching"] == "True"
    assert info["gpu_memory_utilization"] == "0.92" and info["cache_dtype"] == "auto"
    assert int(info["num_gpu_blocks"]) * 16 == int(info["kv_cache_size_tokens"])
    assert "model_name" not in info
    assert "engine=\"0\",le=\"0.001\",model_name=" in text  # labels sorted as in the 0.26.0 capture


def test_sglang_names_labels_and_buckets() -> None:
    _, samples = parse(scrape(busy("sglang")))
    by_name = {n: ls for n, ls, _ in samples}
    sched = {"engine_type": "unified", "model_name": MODEL, "moe_ep_rank": "0", "pp_rank": "0", "tp_rank": "0"}
    for name in ("sglang:num_running_reqs", "sglang:num_queue_reqs", "sglang:token_usage",
                 "sglang:max_total_num_tokens", "sglang:num_retracted_requests_total"):
        assert by_name[name] == sched, name
    assert by_name["sglang:prompt_tokens_total"] == {"engine_type": "unified", "model_name": MODEL,
                                                     "is_streaming": "true"}
    assert by_name["sglang:inter_token_latency_seconds_count"] == {"engine_type": "unified", "model_name": MODEL}
    sources = {ls["cache_source"] for n, ls, _ in samples if n == "sglang:cached_tokens_total"}
    assert sources == {"device", "host", "storage"}
    assert not any(n.endswith("_created") for n, _, _ in samples)
    ttft = [float(ls["le"]) for n, ls, _ in samples if n == "sglang:time_to_first_token_seconds_bucket"]
    assert tuple(ttft[:-1]) == NATIVE_BUCKETS["sglang"]["llm_time_to_first_token_seconds"]
    usage = next(v for n, _, v in samples if n == "sglang:token_usage")
    assert usage == round(usage, 2)


def test_tgi_names_labels_and_buckets() -> None:
    text = scrape(busy("tgi", "request_errors"))
    types, samples = parse(text)
    assert types["tgi_request_count"] == "counter" and types["tgi_request_success"] == "counter"
    assert types["tgi_request_skipped_tokens"] == "summary"
    assert not any(n.endswith("_total") and types.get(n) == "counter" for n in types)
    assert "# HELP tgi_batch_max_total_tokens" not in text
    durations = [ls["le"] for n, ls, _ in samples if n == "tgi_request_duration_bucket"]
    assert len(durations) == 36 and durations[0] == "0.00015000000000000001" and durations[-1] == "+Inf"
    for name, labels, _ in samples:
        assert set(labels) <= {"le", "quantile", "err", "method"}, name
    failures = {ls["err"]: v for n, ls, v in samples if n == "tgi_request_failure"}
    assert failures["generation"] > 0
    inputs = [float(ls["le"]) for n, ls, _ in samples if n == "tgi_request_input_length_bucket" and ls["le"] != "+Inf"]
    assert len(inputs) == 100 and inputs[-1] == pytest.approx(32767)
    assert re.search(r"^tgi_request_count \d+$", text, re.M)  # integers, Go style
