"""The normalizing transform on every captured engine payload in tests/data/engines, a TGI payload written
from TGI's metric definitions, and hostile text (hypothesis)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from conftest import DATA, parse_samples
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from optiinfra.exporter.transform import EngineTransform, TransformResult, detect_engine, parse_labels
from optiinfra.metrics import ALL_METRICS, VLLM_DROPPED, by_name


def normalize(text: str, engine: str = "auto", *, model: str | None = None,
              passthrough: bool = False) -> TransformResult:
    """One-off normalization (the sidecar keeps one ``EngineTransform`` per upstream)."""
    kind = detect_engine(text) if engine == "auto" else engine
    if kind is None:
        return TransformResult("")
    return EngineTransform(kind, model=model, passthrough=passthrough).transform(text)  # type: ignore[arg-type]

ENGINES = DATA / "engines"
QWEN = "Qwen/Qwen3-0.6B"
LLAMA = "meta-llama/Llama-3.1-8B-Instruct"


def payload(name: str) -> str:
    return (ENGINES / name).read_text()


samples = parse_samples


def value(text: str, name: str, **labels: str) -> float:
    return samples(text)[(name, frozenset(labels.items()))]


def names(text: str) -> set[str]:
    return {name for name, _ in samples(text)}


def types(text: str) -> dict[str, str]:
    return {f.name: f.type for f in text_string_to_metric_families(text)}


# -- vLLM 0.26.0 (real scrapes) --------------------------------------------------------------------------


@pytest.mark.parametrize("name", [
    "vllm-0.26.0-llm-d-router-testdata-vllm-none.prom",
    "vllm-0.26.0-llm-d-router-testdata-vllm-flag.prom",
    "vllm-0.26.0-llm-d-router-testdata-vllm-conn.prom",
])
def test_vllm_026(name: str) -> None:
    result = normalize(payload(name))
    assert result.recognized and result.parse_errors == 0 and result.duplicates == 0
    out = result.text
    base = {"engine": "vllm", "model": QWEN, "dp_rank": "0"}  # vLLM's engine="0" is its DP rank
    assert value(out, "llm_kv_cache_usage_ratio", **base) == 0.0
    assert value(out, "llm_requests_waiting", **base) == 0.0
    # capacity from cache_config_info: num_gpu_blocks 74272 x block_size 16, less the null block the usage
    # ratio does not count
    assert value(out, "llm_kv_cache_capacity_tokens", **base) == (74272 - 1) * 16
    assert value(out, "llm_external_kv_queried_tokens_total", **base) == 0.0
    assert value(out, "llm_external_kv_hit_tokens_total", **base) == 0.0
    # the engine's config reaches llm_engine_info through engine_config
    assert result.engine_config["block_size"] == "16"
    assert result.engine_config["gpu_memory_utilization"] == "0.92"
    # concepts absent from this (filtered) scrape are absent, never 0; _created and offload families dropped
    assert names(out) == {
        "llm_kv_cache_usage_ratio", "llm_requests_waiting", "llm_kv_cache_capacity_tokens",
        "llm_external_kv_queried_tokens_total", "llm_external_kv_hit_tokens_total", "llm_requests_waiting_by_reason",
    }
    assert types(out)["llm_kv_cache_capacity_tokens"] == "gauge"


def test_vllm_capacity_from_size_tokens_when_no_block_count() -> None:
    text = payload("vllm-0.26.0-llm-d-router-testdata-vllm-none.prom").replace('num_gpu_blocks="74272",', "")
    out = normalize(text).text
    assert value(out, "llm_kv_cache_capacity_tokens", engine="vllm", model=QWEN, dp_rank="0") == (74272 - 1) * 16


# -- vLLM 0.32 (our own scrape of a real vLLM under load, see PROVENANCE.md) ---------------------------------

VLLM_032 = "vllm-0.32.0-cpu-tiny-llama-under-load.prom"
TINY = {"engine": "vllm", "model": "tiny-llama", "dp_rank": "0"}


def _sample(text: str, family: str, **labels: str) -> float:
    """A value of the raw payload (the engine's own family, labels as vLLM spells them)."""
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == family and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    raise AssertionError(f"{family}{labels} not in the payload")


def test_vllm_032_capacity_is_what_the_usage_ratio_divides_by() -> None:
    text = payload(VLLM_032)
    out = normalize(text).text
    cache = next(s.labels for f in text_string_to_metric_families(text) if f.name == "vllm:cache_config_info"
                 for s in f.samples)
    # 17 blocks of 32 tokens; usage 0.625 = 10 of the 16 blocks vLLM counts (the 17th is its null block)
    assert (cache["num_gpu_blocks"], cache["block_size"], cache["kv_cache_size_tokens"]) == ("17", "32", "544")
    capacity = value(out, "llm_kv_cache_capacity_tokens", **TINY)
    assert capacity == 16 * 32
    used = value(out, "llm_kv_cache_usage_ratio", **TINY) * capacity
    assert used == 10 * 32


def test_vllm_032_http_refusals_are_rejections_per_rank() -> None:
    text = payload(VLLM_032)
    out = normalize(text).text
    refused = _sample(text, "http_requests_total", handler="/v1/completions", status="4xx")
    assert refused == 3  # the three prompts longer than --max-model-len
    assert value(out, "llm_requests_rejected_total", **TINY, reason="http_4xx") == refused
    assert value(out, "llm_requests_rejected_total", **TINY, reason="max_num_queued_reqs") == 0
    # successes (2xx) are not refusals
    rejected = [line for line in out.splitlines() if line.startswith("llm_requests_rejected_total{")]
    assert len(rejected) == 3 and all('dp_rank="0"' in line for line in rejected)


def test_vllm_032_waiting_by_reason_tells_capacity_from_other() -> None:
    text = payload(VLLM_032)
    out = normalize(text).text
    assert value(out, "llm_requests_waiting", **TINY) == 7
    assert value(out, "llm_requests_waiting_by_reason", **TINY, reason="capacity") == _sample(
        text, "vllm:num_requests_waiting_by_reason", reason="capacity") == 7
    assert value(out, "llm_requests_waiting_by_reason", **TINY, reason="other") == 0  # vLLM's "deferred"


def test_vllm_032_dropped_families_are_real_and_unmapped() -> None:
    families = {f.name for f in text_string_to_metric_families(payload(VLLM_032))}
    mapped = {src.family for metric in ALL_METRICS for src in metric.sources.get("vllm", ())}
    for family in VLLM_DROPPED:
        base = family.removesuffix("_total")
        assert base in families or family in families, family
        assert family not in mapped, family


def test_vllm_lmcache_external_tokens() -> None:
    result = normalize(payload("vllm-0.11.0-lmcache-example-grep-excerpt.prom"))
    out = result.text
    # lmcache:num_hit_tokens_total{model_name="Qwen/Qwen3-8B",worker_id="0"} 1529.0; worker_id aggregated away
    assert value(out, "llm_external_kv_hit_tokens_total", engine="vllm", model="Qwen/Qwen3-8B") == 1529
    # TTFT lines without a TYPE line (grep excerpt) still map: _sum and _count
    ttft = {"engine": "vllm", "model": "Qwen/Qwen3-8B", "dp_rank": "0"}
    assert value(out, "llm_time_to_first_token_seconds_sum", **ttft) == pytest.approx(2.971604108810425)
    assert value(out, "llm_time_to_first_token_seconds_count", **ttft) == 45
    # LMCache's own prompt-token counter is not a vLLM prompt-token source
    assert "llm_prompt_tokens_total" not in names(out)


def test_vllm_08_excerpt_outcomes_and_histogram() -> None:
    out = normalize(payload("vllm-0.8.x-v1-docs-design-metrics-excerpt.prom")).text
    base = {"engine": "vllm", "model": LLAMA}  # no engine label before ~0.9: no dp_rank
    assert value(out, "llm_requests_running", **base) == 8
    assert value(out, "llm_generation_tokens_total", **base) == 27453
    assert value(out, "llm_requests_finished_total", **base, outcome="stop") == 1
    assert value(out, "llm_requests_finished_total", **base, outcome="length") == 131
    assert value(out, "llm_requests_finished_total", **base, outcome="abort") == 0
    buckets = {dict(lbl)["le"]: v for (n, lbl), v in samples(out).items() if n.endswith("_bucket")}
    assert buckets == {"0.001": 0, "0.005": 0, "0.01": 0, "0.02": 13, "0.04": 97, "0.06": 123, "0.08": 138,
                       "0.1": 140}
    assert value(out, "llm_time_to_first_token_seconds_count", **base) == 140


def test_vllm_08_usage_and_http_excerpts() -> None:
    # only vllm:iteration_tokens_total (not in the schema): recognized, nothing mapped
    result = normalize(payload("vllm-0.8.x-v1-docs-usage-metrics-excerpt.prom"))
    assert result.recognized and result.text == "" and result.parse_errors == 0
    # HTTP metrics only: no engine family at all
    http = payload("vllm-0.8.x-v1-docs-design-metrics-http-excerpt.prom")
    assert detect_engine(http) is None
    forced = normalize(http, "vllm")
    assert not forced.recognized and forced.text == ""


def test_vllm_finish_reasons_map_to_outcomes() -> None:
    text = "\n".join([
        "# TYPE vllm:request_success_total counter",
        *(f'vllm:request_success_total{{engine="0",finished_reason="{r}",model_name="m"}} {i + 1}.0'
          for i, r in enumerate(("stop", "length", "abort", "error", "repetition"))),
    ]) + "\n"
    out = normalize(text).text
    got = {dict(lbl)["outcome"]: v for (_, lbl), v in samples(out).items()}
    assert got == {"stop": 1, "length": 2, "abort": 3, "error": 4, "other": 5}


def test_vllm_dp_ranks_kept_and_old_alias() -> None:
    # Old names (vLLM <= 0.11) map through the catalogue's aliases.
    old = "\n".join([
        "# TYPE vllm:gpu_cache_usage_perc gauge",
        'vllm:gpu_cache_usage_perc{engine="0",model_name="m"} 0.25',
        'vllm:gpu_cache_usage_perc{engine="1",model_name="m"} 0.75',
        "# TYPE vllm:gpu_prefix_cache_queries_total counter",
        'vllm:gpu_prefix_cache_queries_total{engine="0",model_name="m"} 100.0',
        "# TYPE vllm:time_per_output_token_seconds histogram",
        'vllm:time_per_output_token_seconds_bucket{engine="0",le="0.01",model_name="m"} 3.0',
        'vllm:time_per_output_token_seconds_bucket{engine="0",le="+Inf",model_name="m"} 4.0',
        'vllm:time_per_output_token_seconds_count{engine="0",model_name="m"} 4.0',
        'vllm:time_per_output_token_seconds_sum{engine="0",model_name="m"} 0.5',
    ]) + "\n"
    out = normalize(old).text
    assert value(out, "llm_kv_cache_usage_ratio", engine="vllm", model="m", dp_rank="0") == 0.25
    assert value(out, "llm_kv_cache_usage_ratio", engine="vllm", model="m", dp_rank="1") == 0.75
    assert value(out, "llm_prefix_cache_queried_tokens_total", engine="vllm", model="m", dp_rank="0") == 100
    assert value(out, "llm_inter_token_latency_seconds_bucket", engine="vllm", model="m", dp_rank="0",
                 le="0.01") == 3
    assert value(out, "llm_inter_token_latency_seconds_sum", engine="vllm", model="m", dp_rank="0") == 0.5


def test_new_name_wins_over_alias_without_duplicates() -> None:
    # --show-hidden-metrics-for-version: both old and new present; the new one wins, in either order
    new = 'vllm:kv_cache_usage_perc{engine="0",model_name="m"} 0.5'
    old = 'vllm:gpu_cache_usage_perc{engine="0",model_name="m"} 0.9'
    for lines in ((old, new), (new, old)):
        text = "\n".join([
            "# TYPE vllm:gpu_cache_usage_perc gauge" if "gpu" in lines[0] else "# TYPE vllm:kv_cache_usage_perc gauge",
            lines[0],
            "# TYPE vllm:kv_cache_usage_perc gauge" if "gpu" in lines[0] else "# TYPE vllm:gpu_cache_usage_perc gauge",
            lines[1],
        ]) + "\n"
        out = normalize(text).text
        assert samples(out) == {
            ("llm_kv_cache_usage_ratio", frozenset({("engine", "vllm"), ("model", "m"), ("dp_rank", "0")})): 0.5
        }


# -- SGLang (real scrapes and the 0.4.x docs block) ------------------------------------------------------


@pytest.mark.parametrize("name", [
    "sglang-0.5.16-llm-d-router-testdata-sglang-new.prom",
    "sglang-0.5.9-llm-d-router-testdata-sglang-old.prom",
])
def test_sglang_05(name: str) -> None:
    result = normalize(payload(name))
    assert result.recognized and result.parse_errors == 0
    out = result.text
    # tp_rank and pp_rank are kept; engine_type and moe_ep_rank are aggregated away
    base = {"engine": "sglang", "model": QWEN, "tp_rank": "0", "pp_rank": "0"}
    assert value(out, "llm_kv_cache_capacity_tokens", **base) == 200000
    assert value(out, "llm_kv_cache_usage_ratio", **base) == 0.0
    assert value(out, "llm_requests_waiting", **base) == 0.0
    assert names(out) == {"llm_kv_cache_capacity_tokens", "llm_kv_cache_usage_ratio", "llm_requests_waiting"}


def test_sglang_04_docs_block() -> None:
    out = normalize(payload("sglang-0.4.x-docs-production_metrics.prom")).text
    base = {"engine": "sglang", "model": LLAMA}
    assert value(out, "llm_requests_running", **base) == 162
    assert value(out, "llm_requests_waiting", **base) == 2826
    assert value(out, "llm_kv_cache_usage_ratio", **base) == 0.28
    assert value(out, "llm_prompt_tokens_total", **base) == 8128902
    assert value(out, "llm_generation_tokens_total", **base) == 7557572
    # histograms keep native buckets; le first in the source does not matter
    assert value(out, "llm_time_to_first_token_seconds_bucket", **base, le="0.04") == 1
    assert value(out, "llm_time_to_first_token_seconds_bucket", **base, le="30.0") == 2513
    assert value(out, "llm_time_to_first_token_seconds_bucket", **base, le="+Inf") == 11008
    assert value(out, "llm_time_to_first_token_seconds_count", **base) == 11008
    assert value(out, "llm_time_to_first_token_seconds_sum", **base) == pytest.approx(2.3518979474117756e06)
    assert value(out, "llm_request_duration_seconds_bucket", **base, le="60.0") == 1513
    # the old ITL name is an alias
    assert value(out, "llm_inter_token_latency_seconds_bucket", **base, le="0.1") == 4950195
    assert value(out, "llm_inter_token_latency_seconds_count", **base) == 7400757
    # unmapped: func_latency, cache_hit_rate, gen_throughput, num_used_tokens; no TTFT for a missing concept
    assert not {n for n in names(out) if "func" in n or "throughput" in n}
    assert "llm_preemptions_total" not in names(out)
    assert types(out)["llm_time_to_first_token_seconds"] == "histogram"


SGLANG_0523 = """\
# HELP sglang:prompt_tokens_total Number of prefill tokens processed.
# TYPE sglang:prompt_tokens_total counter
sglang:prompt_tokens_total{engine_type="unified",is_streaming="True",model_name="m"} 700.0
sglang:prompt_tokens_total{engine_type="unified",is_streaming="False",model_name="m"} 300.0
# HELP sglang:cached_tokens_total Number of cached prompt tokens.
# TYPE sglang:cached_tokens_total counter
sglang:cached_tokens_total{cache_source="device",engine_type="unified",model_name="m"} 400.0
sglang:cached_tokens_total{cache_source="host",engine_type="unified",model_name="m"} 50.0
sglang:cached_tokens_total{cache_source="storage",engine_type="unified",model_name="m"} 25.0
# HELP sglang:num_requests_total Number of requests processed.
# TYPE sglang:num_requests_total counter
sglang:num_requests_total{engine_type="unified",is_streaming="True",model_name="m"} 9.0
sglang:num_requests_total{engine_type="unified",is_streaming="False",model_name="m"} 1.0
# HELP sglang:num_aborted_requests_total Number of requests aborted.
# TYPE sglang:num_aborted_requests_total counter
sglang:num_aborted_requests_total{engine_type="unified",model_name="m"} 2.0
# HELP sglang:num_retracted_requests_total Retracted requests.
# TYPE sglang:num_retracted_requests_total counter
sglang:num_retracted_requests_total{engine_type="unified",model_name="m",moe_ep_rank="0",pp_rank="0",tp_rank="0"} 3.0
sglang:num_retracted_requests_total{engine_type="unified",model_name="m",moe_ep_rank="0",pp_rank="0",tp_rank="1"} 4.0
# HELP sglang:time_to_first_token_seconds Histogram of time to first token in seconds.
# TYPE sglang:time_to_first_token_seconds histogram
sglang:time_to_first_token_seconds_bucket{engine_type="unified",is_streaming="True",le="0.1",model_name="m"} 1.0
sglang:time_to_first_token_seconds_bucket{engine_type="unified",is_streaming="True",le="+Inf",model_name="m"} 5.0
sglang:time_to_first_token_seconds_count{engine_type="unified",is_streaming="True",model_name="m"} 5.0
sglang:time_to_first_token_seconds_sum{engine_type="unified",is_streaming="True",model_name="m"} 2.5
sglang:time_to_first_token_seconds_bucket{le="0.1",engine_type="unified",is_streaming="False",model_name="m"} 2.0
sglang:time_to_first_token_seconds_bucket{model_name="m",is_streaming="False",le="+Inf",engine_type="unified"} 3.0
sglang:time_to_first_token_seconds_count{engine_type="unified",is_streaming="False",model_name="m"} 3.0
sglang:time_to_first_token_seconds_sum{engine_type="unified",is_streaming="False",model_name="m"} 0.5
"""


def test_sglang_0523_streaming_summed_and_cache_sources() -> None:
    """A 0.5.23-style payload written from SGLang 0.5.23's metric definitions (labels as the wheel defines them)."""
    out = normalize(SGLANG_0523).text
    m = {"engine": "sglang", "model": "m"}
    assert value(out, "llm_prompt_tokens_total", **m) == 1000  # summed over is_streaming
    assert value(out, "llm_prefix_cache_queried_tokens_total", **m) == 1000
    assert value(out, "llm_prefix_cache_hit_tokens_total", **m) == 475  # summed over cache_source
    assert value(out, "llm_external_kv_hit_tokens_total", **m) == 75  # host + storage only
    assert value(out, "llm_requests_finished_total", **m, outcome="other") == 10
    assert value(out, "llm_requests_finished_total", **m, outcome="abort") == 2
    # rank labels are kept, never summed away
    assert value(out, "llm_preemptions_total", **m, tp_rank="0", pp_rank="0") == 3
    assert value(out, "llm_preemptions_total", **m, tp_rank="1", pp_rank="0") == 4
    # histogram summed per le across is_streaming, whatever the label order
    assert value(out, "llm_time_to_first_token_seconds_bucket", **m, le="0.1") == 3
    assert value(out, "llm_time_to_first_token_seconds_bucket", **m, le="+Inf") == 8
    assert value(out, "llm_time_to_first_token_seconds_count", **m) == 8
    assert value(out, "llm_time_to_first_token_seconds_sum", **m) == 3.0


# -- TGI (no public capture exists: written from TGI's metric definitions) ---------------------------------------

TGI = """\
# TYPE tgi_request_count counter
tgi_request_count 120
# TYPE tgi_request_success counter
tgi_request_success 100
# TYPE tgi_request_failure counter
tgi_request_failure{err="overloaded"} 7
tgi_request_failure{err="validation"} 3
tgi_request_failure{err="generation"} 4
tgi_request_failure{err="dropped"} 1
# TYPE tgi_queue_size gauge
tgi_queue_size 5
# TYPE tgi_batch_current_size gauge
tgi_batch_current_size 12
# TYPE tgi_batch_max_total_tokens gauge
tgi_batch_max_total_tokens 16000
# TYPE tgi_request_input_length histogram
tgi_request_input_length_bucket{le="20.48"} 10
tgi_request_input_length_bucket{le="40.96"} 60
tgi_request_input_length_bucket{le="+Inf"} 120
tgi_request_input_length_sum 4321
tgi_request_input_length_count 120
# TYPE tgi_request_generated_tokens histogram
tgi_request_generated_tokens_bucket{le="40.96"} 50
tgi_request_generated_tokens_bucket{le="+Inf"} 100
tgi_request_generated_tokens_sum 8765
tgi_request_generated_tokens_count 100
# TYPE tgi_request_duration histogram
tgi_request_duration_bucket{le="0.00015"} 0
tgi_request_duration_bucket{le="1.1222741699218752"} 40
tgi_request_duration_bucket{le="+Inf"} 100
tgi_request_duration_sum 150.25
tgi_request_duration_count 100
# TYPE tgi_request_skipped_tokens summary
tgi_request_skipped_tokens{quantile="0.5"} 0
tgi_request_skipped_tokens{quantile="0.99"} 2
tgi_request_skipped_tokens_sum 17
tgi_request_skipped_tokens_count 100
# TYPE tgi_batch_inference_duration histogram
tgi_batch_inference_duration_bucket{method="prefill",le="+Inf"} 9
tgi_batch_inference_duration_sum{method="prefill"} 1.5
tgi_batch_inference_duration_count{method="prefill"} 9
"""


def test_tgi() -> None:
    assert detect_engine(TGI) == "tgi"
    result = normalize(TGI, model="bigscience/bloom-560m")
    assert result.recognized and result.parse_errors == 0
    out = result.text
    m = {"engine": "tgi", "model": "bigscience/bloom-560m"}
    assert value(out, "llm_requests_running", **m) == 12
    assert value(out, "llm_requests_waiting", **m) == 5
    assert value(out, "llm_kv_cache_capacity_tokens", **m) == 16000
    # bare counters (no _total) accepted; failure split into error outcome vs rejections
    assert value(out, "llm_requests_finished_total", **m, outcome="other") == 100
    assert value(out, "llm_requests_finished_total", **m, outcome="error") == 5  # generation + dropped
    assert value(out, "llm_requests_rejected_total", **m, reason="overloaded") == 7
    assert value(out, "llm_requests_rejected_total", **m, reason="validation") == 3
    # histogram _sum as token counters
    assert value(out, "llm_prompt_tokens_total", **m) == 4321
    assert value(out, "llm_generation_tokens_total", **m) == 8765
    assert types(out)["llm_prompt_tokens"] == "counter"
    assert value(out, "llm_request_duration_seconds_bucket", **m, le="1.1222741699218752") == 40
    assert value(out, "llm_request_prompt_tokens_count", **m) == 120
    # the summary is not mapped; TGI lacks TTFT, KV usage, prefix cache: absent, not 0
    assert not {n for n in names(out) if "skipped" in n or "spec" in n}
    for absent in ("llm_time_to_first_token_seconds_count", "llm_kv_cache_usage_ratio",
                   "llm_prefix_cache_hit_tokens_total", "llm_preemptions_total"):
        assert absent not in names(out)


def test_tgi_without_model_is_unknown_and_model_can_arrive_later() -> None:
    transform = EngineTransform("tgi")
    assert value(transform.transform(TGI).text, "llm_requests_waiting", engine="tgi", model="unknown") == 5
    transform.set_default_model("m2")  # e.g. after GET /info
    assert value(transform.transform(TGI).text, "llm_requests_waiting", engine="tgi", model="m2") == 5


# -- robustness ------------------------------------------------------------------------------------------


def test_escaped_label_values_duplicates_nan_inf_and_bad_lines() -> None:
    text = "\n".join([
        "# TYPE vllm:num_requests_running gauge",
        'vllm:num_requests_running{model_name="a \\"quoted\\" \\\\ back\\nslash",engine="0"} 3',
        'vllm:num_requests_running{engine="0",model_name="a \\"quoted\\" \\\\ back\\nslash"} 4',  # duplicate
        'vllm:num_requests_running{engine="1",model_name="m"} NaN',
        'vllm:num_requests_running{engine="2",model_name="m"} +Inf 1700000000000',
        'vllm:num_requests_running{engine="3",model_name="m"} not-a-number',
        'vllm:num_requests_running{engine="4",model_name="m" 1',
        'vllm:num_requests_running{engine="5",,model_name="m"} 1',
        "vllm:num_requests_running{engine=\"6\",model_name=\"m\"}",
        "# TYPE vllm:num_requests_waiting gauge",
        "vllm:num_requests_waiting 2",
        "garbage line without value",
        "\x00\x01 binary",
    ]) + "\n"
    result = normalize(text, "vllm")
    out = result.text
    assert result.duplicates == 1
    # 5 malformed lines of the mapped family plus the binary one; "garbage line without value" has a valid
    # name the schema does not map, so it is skipped unread like every other unmapped family
    assert result.parse_errors == 5
    got = samples(out)
    tricky = 'a "quoted" \\ back\nslash'
    assert got[("llm_requests_running", frozenset({("engine", "vllm"), ("model", tricky), ("dp_rank", "0")}))] == 3
    assert math.isnan(got[("llm_requests_running", frozenset({("engine", "vllm"), ("model", "m"), ("dp_rank", "1")}))])
    assert got[("llm_requests_running", frozenset({("engine", "vllm"), ("model", "m"), ("dp_rank", "2")}))] == math.inf
    # a sample without model_name takes the model learned from the payload
    assert got[("llm_requests_waiting", frozenset({("engine", "vllm"), ("model", tricky)}))] == 2


def test_static_labels_and_passthrough() -> None:
    text = payload("vllm-0.26.0-llm-d-router-testdata-vllm-none.prom")
    result = EngineTransform("vllm", labels={"cluster": "eu-1"}, passthrough=True).transform(text)
    assert value(result.text, "llm_kv_cache_usage_ratio", engine="vllm", model=QWEN, dp_rank="0",
                 cluster="eu-1") == 0.0
    # the engine's own families come back unchanged, _created included, and never collide with ours
    original = samples(text)
    assert samples(result.passthrough) == original
    assert not names(result.passthrough) & names(result.text)


def test_passthrough_skips_reserved_names_and_bad_lines() -> None:
    text = ("# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running{model_name=\"m\"} 1\n"
            "# TYPE llm_requests_running gauge\nllm_requests_running 5\nvllm:oops{ 1\n")
    result = normalize(text, passthrough=True)
    assert names(result.passthrough) == {"vllm:num_requests_running"}
    assert result.parse_errors == 1


def test_parse_labels() -> None:
    assert parse_labels('a="1",b="x\\"y"') == {"a": "1", "b": 'x"y'}
    assert parse_labels('a="1",') == {"a": "1"}
    assert parse_labels(" a = \"1\" , b=\"2\" ") == {"a": "1", "b": "2"}
    assert parse_labels('a="1",a="2"') is None
    assert parse_labels('a="1" b="2"') is None
    assert parse_labels('1a="x"') is None
    assert parse_labels("") == {}


def test_catalogue_help_and_types_used() -> None:
    out = normalize(payload("sglang-0.4.x-docs-production_metrics.prom")).text
    catalogue = by_name()
    for family in text_string_to_metric_families(out):
        metric = catalogue.get(family.name) or catalogue[family.name + "_total"]  # the parser drops _total
        assert family.documentation == metric.help
        assert family.type == metric.type


def test_memo_is_bounded_and_results_stable() -> None:
    text = payload("sglang-0.4.x-docs-production_metrics.prom")
    transform = EngineTransform("sglang", memo_size=10)
    first = transform.transform(text).text
    assert len(transform._memo) == 0  # cleared once it outgrew its bound
    assert transform.transform(text).text == first


EXPOSITION_LIKE = st.lists(
    st.one_of(
        st.sampled_from([
            "# TYPE vllm:num_requests_running gauge", "# TYPE tgi_request_failure counter", "# HELP x y",
            "# TYPE vllm:time_to_first_token_seconds histogram", "# TYPE", "#", "", "{", "}", "\\",
        ]),
        st.builds(
            lambda name, labels, val: f"{name}{{{labels}}} {val}",
            st.sampled_from(["vllm:num_requests_running", "vllm:time_to_first_token_seconds_bucket",
                             "vllm:cache_config_info", "tgi_request_failure", "sglang:token_usage", "x"]),
            st.text(alphabet='abelm_=",\\{} \n0+Inf', max_size=30),
            st.sampled_from(["1", "NaN", "+Inf", "-Inf", "1e400", "x", "", "1 2", "1 2 3"]),
        ),
        st.text(max_size=40),
    ),
    max_size=30,
).map("\n".join)


def _same(a: object, b: object) -> None:
    """Two results agree on everything but the passthrough text."""
    for field in ("text", "mapped", "parse_errors", "duplicates", "recognized", "engine_config"):
        assert getattr(a, field) == getattr(b, field), field


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.text(), EXPOSITION_LIKE), st.sampled_from(["vllm", "sglang", "tgi"]))
def test_transform_never_raises(text: str, engine: str) -> None:
    fast = EngineTransform(engine)  # type: ignore[arg-type]
    careful = EngineTransform(engine, passthrough=True)  # type: ignore[arg-type]  (line by line, every line)
    for _ in range(2):  # the second run goes through the memo
        result = fast.transform(text)
        assert isinstance(result.text, str)
        samples(result.text)  # always valid exposition, never a duplicate series
        other = careful.transform(text)
        text_string_to_metric_families(other.passthrough)
        # the skip-whole-blocks and regex fast paths never change the normalized result, except that they
        # do not read (so do not count) malformed lines of unmapped families
        assert other.text == result.text
        assert other.parse_errors >= result.parse_errors


@pytest.mark.parametrize("path", sorted(ENGINES.glob("*.prom")), ids=lambda p: p.name)
def test_fast_paths_agree_with_line_by_line(path: Path) -> None:
    text = path.read_text()
    engine = detect_engine(text) or "vllm"
    _same(EngineTransform(engine).transform(text), EngineTransform(engine, passthrough=True).transform(text))
    # CRLF line ends and a missing final newline too
    crlf = text.replace("\n", "\r\n").rstrip("\r\n")
    _same(EngineTransform(engine).transform(crlf), EngineTransform(engine).transform(text))


def test_captured_payloads_all_parse_without_errors() -> None:
    checked = 0
    for path in sorted(ENGINES.glob("*.prom")):
        if path.name.startswith("dcgm"):
            continue
        checked += 1
        result = normalize(Path(path).read_text())
        assert result.parse_errors == 0, path.name
        samples(result.text)
    assert checked == 11, "tests/data/engines holds eleven engine payloads (and one dcgm-exporter excerpt)"


@pytest.mark.parametrize("passthrough", [False, True])
def test_series_limit_stops_the_transform(passthrough: bool) -> None:
    """Exactly max_series distinct samples pass; one more and nothing is exported (fast and careful paths)."""
    lines = ["# TYPE vllm:num_requests_running gauge"]
    lines += [f'vllm:num_requests_running{{engine="0",model_name="m{i}"}} {i}' for i in range(5000)]
    text = "\n".join(lines) + "\n"
    within = EngineTransform("vllm", max_series=5000, passthrough=passthrough).transform(text)
    assert not within.over_limit and within.text.count("llm_requests_running{") == 5000
    over = EngineTransform("vllm", max_series=4999, passthrough=passthrough).transform(text)
    assert over.over_limit and over.recognized and over.text == "" and over.passthrough == ""
