"""The normalized metric catalogue, defined once (reference: docs/metrics.md, generated from it).

Everything that speaks the schema reads it from here: the exporter compiles its mapping from
``ENGINE_METRICS``; ``docs/metrics.md`` is generated from it; the rules and dashboards check every series
they use against ``known_series()``.

A ``Source`` says where one engine keeps a concept: the wire family (and older aliases), which sample of
it to read (a histogram's ``_sum`` can stand in for a counter TGI lacks), which samples to keep, and how
labels are renamed or given fixed values. Any source label that is not an output label of the metric is
aggregated away (``Metric.aggregate``), so e.g. SGLang's ``is_streaming`` split is summed.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping
from dataclasses import dataclass, field
from itertools import accumulate, repeat
from types import MappingProxyType
from typing import Literal

MetricType = Literal["gauge", "counter", "histogram"]
Engine = Literal["vllm", "sglang", "tgi"]
ENGINES: tuple[Engine, ...] = ("vllm", "sglang", "tgi")

#: Labels every ``llm_*`` engine series carries.
BASE_LABELS: tuple[str, ...] = ("engine", "model")
#: Rank labels kept when an engine splits series by rank (never summed away in the exporter).
RANK_LABELS: tuple[str, ...] = ("dp_rank", "tp_rank", "pp_rank")

#: Per-engine label renames applied to every source of that engine.
ENGINE_LABEL_RENAMES: Mapping[Engine, Mapping[str, str]] = MappingProxyType({
    "vllm": MappingProxyType({"model_name": "model", "engine": "dp_rank"}),
    "sglang": MappingProxyType({"model_name": "model"}),
    "tgi": MappingProxyType({}),
})

#: Wire-family prefixes that identify an engine in a payload (``--engine auto``).
ENGINE_FINGERPRINTS: Mapping[Engine, str] = MappingProxyType({"vllm": "vllm:", "sglang": "sglang:", "tgi": "tgi_"})

_EMPTY: Mapping[str, str] = MappingProxyType({})


def _ro(d: Mapping[str, str] | None = None) -> Mapping[str, str]:
    return MappingProxyType(dict(d)) if d else _EMPTY


@dataclass(frozen=True)
class Source:
    """Where one engine keeps one normalized concept."""

    family: str
    """Wire family name (counters with their ``_total``; TGI's bare names as they are)."""
    aliases: tuple[str, ...] = ()
    """Older wire names, read only when ``family`` is absent from the payload."""
    sample: str = ""
    """Read this sample suffix of the family (``_sum``/``_count`` of a histogram) instead of its value."""
    keep: Mapping[str, frozenset[str]] = field(default_factory=dict)
    """Keep only samples whose label has one of these values."""
    set_labels: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    """Fixed output labels added to every sample."""
    value_labels: Mapping[str, tuple[str, Mapping[str, str]]] = field(default_factory=dict)
    """Output label -> (source label, value map); unmapped values become ``"other"``."""
    note: str = ""

    @property
    def wire_names(self) -> tuple[str, ...]:
        return (self.family, *self.aliases)


@dataclass(frozen=True)
class Metric:
    name: str
    type: MetricType
    unit: str
    help: str
    labels: tuple[str, ...] = ()
    """Labels of this metric beyond ``engine``, ``model`` and the rank labels."""
    sources: Mapping[Engine, tuple[Source, ...]] = field(default_factory=dict)
    aggregate: Literal["sum", "max"] = "sum"
    """How samples that differ only in dropped source labels are combined."""

    @property
    def series_names(self) -> tuple[str, ...]:
        if self.type == "histogram":
            return (f"{self.name}_bucket", f"{self.name}_sum", f"{self.name}_count")
        return (self.name,)


def _src(family: str, *aliases: str, **kw: object) -> Source:
    return Source(family, tuple(aliases), **kw)  # type: ignore[arg-type]


_Sources = str | Source | tuple[Source, ...] | None


def _engines(vllm: _Sources = None, sglang: _Sources = None, tgi: _Sources = None) -> dict[Engine, tuple[Source, ...]]:
    """Per engine: a bare wire family, one ``Source`` or several; an engine without one lacks the concept."""
    given: dict[Engine, _Sources] = {"vllm": vllm, "sglang": sglang, "tgi": tgi}
    return {engine: (Source(s),) if isinstance(s, str) else (s,) if isinstance(s, Source) else s
            for engine, s in given.items() if s is not None}


_VLLM_OUTCOMES = MappingProxyType({"stop": "stop", "length": "length", "abort": "abort", "error": "error"})
_SGLANG_EXTERNAL = frozenset({"host", "storage"})
#: SGLang counts HTTP responses by endpoint and status (``sglang:http_responses_total``); a server error on an
#: inference endpoint is the request-error outcome SGLang has no counter for. (A stream that fails after its
#: 200 header is not seen.)
_HTTP_5XX = frozenset({"500", "502", "503", "504"})
_SGLANG_INFERENCE_ENDPOINTS = frozenset({"/generate", "/v1/completions", "/v1/chat/completions"})
#: vLLM's OpenAI endpoints that take inference requests (their HTTP 4xx answers are refusals).
VLLM_INFERENCE_HANDLERS = frozenset({"/v1/completions", "/v1/chat/completions", "/v1/embeddings",
                                     "/v1/responses", "/v1/messages", "/pooling", "/classify", "/score"})

ENGINE_METRICS: tuple[Metric, ...] = (
    Metric("llm_requests_running", "gauge", "requests", "Requests currently in the engine's running batch.",
           sources=_engines("vllm:num_requests_running", "sglang:num_running_reqs", "tgi_batch_current_size")),
    Metric("llm_requests_waiting", "gauge", "requests", "Requests waiting in the engine's queue.",
           sources=_engines("vllm:num_requests_waiting", "sglang:num_queue_reqs", "tgi_queue_size")),
    Metric(
        "llm_requests_waiting_by_reason", "gauge", "requests",
        "Requests waiting by reason: capacity (no room in the running batch or the KV cache: KV-bound "
        "queueing) or other (deferred by LoRA budget, KV transfer, a blocked status). Sums to llm_requests_waiting.",
        labels=("reason",),
        sources=_engines(_src("vllm:num_requests_waiting_by_reason", note="newer vLLM (0.26 has it)",
                              value_labels={"reason": ("reason", MappingProxyType({"capacity": "capacity"}))})),
    ),
    Metric("llm_kv_cache_usage_ratio", "gauge", "ratio", "Share of the GPU KV cache in use, 0 to 1 (1 means full).",
           aggregate="max",
           sources=_engines(_src("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"), "sglang:token_usage")),
    Metric(
        "llm_kv_cache_capacity_tokens", "gauge", "tokens", "Capacity of the GPU KV cache in tokens.", aggregate="max",
        sources=_engines(_src("vllm:cache_config_info", note="(num_gpu_blocks - 1) x block_size labels: the blocks "
                              "vllm:kv_cache_usage_perc divides by (vLLM keeps one null block back)"),
                         "sglang:max_total_num_tokens", "tgi_batch_max_total_tokens"),
    ),
    Metric("llm_prefix_cache_queried_tokens_total", "counter", "tokens",
           "Prompt tokens looked up in the local prefix cache.",
           sources=_engines(_src("vllm:prefix_cache_queries_total", "vllm:gpu_prefix_cache_queries_total",
                                 note="before vLLM 0.9 the alias counted blocks, not tokens"),
                            "sglang:prompt_tokens_total")),
    Metric("llm_prefix_cache_hit_tokens_total", "counter", "tokens", "Prompt tokens found in the local prefix cache.",
           sources=_engines(_src("vllm:prefix_cache_hits_total", "vllm:gpu_prefix_cache_hits_total"),
                            "sglang:cached_tokens_total")),
    Metric("llm_external_kv_queried_tokens_total", "counter", "tokens",
           "Prompt tokens looked up in an external KV cache (KV connector, LMCache).",
           sources=_engines((_src("vllm:external_prefix_cache_queries_total"),
                             _src("lmcache:num_requested_tokens_total", note="LMCache on a vLLM endpoint")),
                            _src("sglang:prompt_tokens_total", note="paired with host/storage hits"))),
    Metric("llm_external_kv_hit_tokens_total", "counter", "tokens",
           "Prompt tokens found in an external KV cache (KV connector, LMCache).",
           sources=_engines((_src("vllm:external_prefix_cache_hits_total"),
                             _src("lmcache:num_hit_tokens_total", note="LMCache on a vLLM endpoint")),
                            _src("sglang:cached_tokens_total", keep={"cache_source": _SGLANG_EXTERNAL}))),
    Metric("llm_prompt_tokens_total", "counter", "tokens", "Prompt tokens processed.",
           sources=_engines("vllm:prompt_tokens_total", "sglang:prompt_tokens_total",
                            _src("tgi_request_input_length", sample="_sum",
                                 note="histogram sum, counted at validation"))),
    Metric("llm_generation_tokens_total", "counter", "tokens", "Tokens generated.",
           sources=_engines("vllm:generation_tokens_total", "sglang:generation_tokens_total",
                            _src("tgi_request_generated_tokens", sample="_sum",
                                 note="histogram sum, successful requests only"))),
    Metric(
        "llm_requests_finished_total", "counter", "requests",
        "Finished requests by outcome (stop, length, abort, error, other).",
        labels=("outcome",),
        sources=_engines(
            _src("vllm:request_success_total", value_labels={"outcome": ("finished_reason", _VLLM_OUTCOMES)}),
            (
                _src("sglang:num_requests_total", set_labels=_ro({"outcome": "other"})),
                _src("sglang:num_aborted_requests_total", set_labels=_ro({"outcome": "abort"})),
                _src("sglang:http_responses_total", set_labels=_ro({"outcome": "error"}),
                     keep={"status_code": _HTTP_5XX, "endpoint": _SGLANG_INFERENCE_ENDPOINTS},
                     note="5xx responses of the inference endpoints (no model label: the pod's model)"),
            ),
            (
                _src("tgi_request_success", set_labels=_ro({"outcome": "other"})),
                _src("tgi_request_failure", set_labels=_ro({"outcome": "error"}),
                     keep={"err": frozenset({"template", "incomplete", "dropped", "generation"})}),
            ),
        ),
    ),
    Metric(
        "llm_requests_rejected_total", "counter", "requests",
        "Requests refused before they started, by reason.",
        labels=("reason",),
        sources=_engines(
            vllm=(
                _src("vllm:admission_rejections_total", set_labels=_ro({"dp_rank": "0"}),
                     value_labels={"reason": ("reason", MappingProxyType({
                         "max_num_queued_reqs": "max_num_queued_reqs",
                         "max_num_queued_tokens": "max_num_queued_tokens"}))}),
                _src("http_requests_total", set_labels=_ro({"dp_rank": "0", "reason": "http_4xx"}),
                     keep={"status": frozenset({"4xx"}), "handler": VLLM_INFERENCE_HANDLERS},
                     note="the API server's HTTP 4xx answers on the inference endpoints (prompt too long, bad "
                          "parameters): the only count of what vLLM refuses before the engine sees it"),
            ),
            tgi=_src("tgi_request_failure", keep={"err": frozenset({"overloaded", "validation"})},
                     value_labels={"reason": ("err", MappingProxyType({
                         "overloaded": "overloaded", "validation": "validation"}))}),
        ),
    ),
    Metric("llm_preemptions_total", "counter", "preemptions",
           "Requests preempted (SGLang: retracted) because the KV cache ran out.",
           sources=_engines("vllm:num_preemptions_total", "sglang:num_retracted_requests_total")),
    Metric("llm_time_to_first_token_seconds", "histogram", "seconds",
           "Time from request arrival to the first generated token.",
           sources=_engines("vllm:time_to_first_token_seconds", "sglang:time_to_first_token_seconds")),
    Metric("llm_inter_token_latency_seconds", "histogram", "seconds",
           "Time between two generated tokens of a request, one observation per decode step.",
           sources=_engines(_src("vllm:inter_token_latency_seconds", "vllm:time_per_output_token_seconds"),
                            _src("sglang:inter_token_latency_seconds", "sglang:time_per_output_token_seconds"))),
    Metric("llm_time_per_output_token_seconds", "histogram", "seconds",
           "Mean time per output token of each finished request (TGI: includes prefill).",
           sources=_engines("vllm:request_time_per_output_token_seconds",
                            "sglang:request_time_per_output_token_seconds",
                            "tgi_request_mean_time_per_token_duration")),
    Metric("llm_request_duration_seconds", "histogram", "seconds", "End-to-end request latency, arrival to last token.",
           sources=_engines("vllm:e2e_request_latency_seconds", "sglang:e2e_request_latency_seconds",
                            "tgi_request_duration")),
    Metric("llm_request_queue_time_seconds", "histogram", "seconds",
           "Time a request waited in the queue before it was scheduled.",
           sources=_engines("vllm:request_queue_time_seconds", "sglang:queue_time_seconds",
                            "tgi_request_queue_duration")),
    Metric("llm_request_prefill_time_seconds", "histogram", "seconds", "Time a request spent in prefill.",
           sources=_engines("vllm:request_prefill_time_seconds")),
    Metric("llm_request_decode_time_seconds", "histogram", "seconds", "Time a request spent in decode.",
           sources=_engines("vllm:request_decode_time_seconds")),
    Metric("llm_request_prompt_tokens", "histogram", "tokens", "Prompt length of each request.",
           sources=_engines("vllm:request_prompt_tokens", "sglang:prompt_tokens_histogram",
                            "tgi_request_input_length")),
    Metric("llm_request_generation_tokens", "histogram", "tokens", "Generated length of each request.",
           sources=_engines("vllm:request_generation_tokens", "sglang:generation_tokens_histogram",
                            "tgi_request_generated_tokens")),
    Metric("llm_spec_draft_tokens_total", "counter", "tokens", "Draft tokens proposed by speculative decoding.",
           sources=_engines("vllm:spec_decode_num_draft_tokens_total")),
    Metric("llm_spec_accepted_tokens_total", "counter", "tokens", "Draft tokens accepted by speculative decoding.",
           sources=_engines("vllm:spec_decode_num_accepted_tokens_total")),
)

#: Labels of ``llm_engine_info`` beyond engine and model: the current config that plans need.
ENGINE_INFO_LABELS: tuple[str, ...] = (
    "version", "gpu_memory_utilization", "block_size", "cache_dtype", "enable_prefix_caching", "max_num_seqs",
    "max_num_batched_tokens", "max_model_len", "kv_cache_memory_bytes", "tensor_parallel_size", "quantization",
    # TGI's own token budgets (no vLLM equivalent): per-request input limit, batch KV and prefill budgets.
    "max_input_tokens", "max_batch_total_tokens", "max_batch_prefill_tokens",
    # settings the planner proposes "only when unset" or changes relative to the running value: read, never guessed
    "kv_offloading_size", "enable_hierarchical_cache", "schedule_policy", "schedule_conservativeness",
    "speculative_algorithm",
)

#: vLLM families we read the payload for but deliberately do not map (each with why), checked against a real
#: vLLM 0.32 scrape by the tests so the list stays true.
VLLM_DROPPED: Mapping[str, str] = MappingProxyType({
    "vllm:engine_sleep_state": "sleep mode (awake / weights offloaded / discard all) is an operator action, "
                               "not a bottleneck; a sleeping engine shows as no traffic",
    "vllm:request_num_preemptions": "per-request preemption counts (histogram): llm_preemptions_total already "
                                    "gives the rate the preemption-storm and KV-pressure alerts read",
    "vllm:request_inference_time_seconds": "time in the RUNNING phase: prefill + decode time, which "
                                           "llm_request_prefill_time_seconds and _decode_time_seconds give apart",
    "vllm:prompt_tokens_by_source_total": "prompt tokens split local compute / local cache hit / external KV: "
                                          "the prefix-cache and external-KV hit counters carry the same split",
    "vllm:prompt_tokens_cached_total": "equals the prefix-cache hits (llm_prefix_cache_hit_tokens_total) plus "
                                       "external hits",
    "vllm:prompt_tokens_cached_by_source_total": "cached prompt tokens by tier (device, host, disk, p2p): no "
                                                 "bottleneck reads the tier",
})

ENGINE_INFO = Metric(
    "llm_engine_info", "gauge", "info",
    "Engine kind, model, version and the current config plans need; value is always 1.",
    labels=ENGINE_INFO_LABELS,
)

#: The sidecar's own health series.
SIDECAR_METRICS: tuple[Metric, ...] = (
    Metric("llm_upstream_up", "gauge", "bool",
           "1 if the last scrape of the engine succeeded and parsed, else 0."),
    Metric("llm_upstream_ever_up", "gauge", "bool",
           "1 once a scrape of the engine succeeded since the sidecar started, else 0 (an engine that never came "
           "up is 0; one stopped or restarted after it was up stays 1)."),
    Metric("llm_upstream_scrape_duration_seconds", "gauge", "seconds",
           "Duration of the last scrape of the engine."),
    Metric("llm_upstream_scrape_bytes", "gauge", "bytes", "Size of the last engine payload."),
    Metric("optiinfra_collector_enabled", "gauge", "bool",
           "1 if the collector is on, 0 if it is switched off or disabled itself (e.g. gpu without NVML; "
           "/health/detailed says why); one series per known collector.", labels=("collector",)),
    Metric("optiinfra_collector_success", "gauge", "bool",
           "1 if the collector's last run succeeded, else 0 (also 0 for a collector that disabled itself).",
           labels=("collector",)),
    Metric("optiinfra_collector_duration_seconds", "gauge", "seconds",
           "Duration of the collector's last run.", labels=("collector",)),
    Metric("optiinfra_exporter_parse_errors_total", "counter", "lines",
           "Malformed input lines skipped.", labels=("collector",)),
    Metric("optiinfra_build_info", "gauge", "info",
           "The OptiInfra build serving this /metrics (exporter, receiver); value is always 1.",
           labels=("version", "python")),
)

GPU_LABELS: tuple[str, ...] = ("gpu", "UUID", "device", "modelName", "Hostname", "pci_bus_id")

#: dcgm-exporter compatible names, units and labels.
GPU_METRICS: tuple[Metric, ...] = (
    Metric("DCGM_FI_DEV_GPU_UTIL", "gauge", "percent", "GPU utilization (in %).", GPU_LABELS),
    Metric("DCGM_FI_DEV_MEM_COPY_UTIL", "gauge", "percent", "Memory utilization (in %).", GPU_LABELS),
    Metric("DCGM_FI_DEV_FB_USED", "gauge", "MiB", "Framebuffer memory used (in MiB).", GPU_LABELS),
    Metric("DCGM_FI_DEV_FB_FREE", "gauge", "MiB", "Framebuffer memory free (in MiB).", GPU_LABELS),
    Metric("DCGM_FI_DEV_GPU_TEMP", "gauge", "celsius", "GPU temperature (in C).", GPU_LABELS),
    Metric("DCGM_FI_DEV_MEMORY_TEMP", "gauge", "celsius", "Memory temperature (in C).", GPU_LABELS),
    Metric("DCGM_FI_DEV_POWER_USAGE", "gauge", "watts", "Power draw (in W).", GPU_LABELS),
    Metric("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "counter", "millijoules",
           "Total energy consumption since boot (in mJ).", GPU_LABELS),
    Metric("DCGM_FI_DEV_SM_CLOCK", "gauge", "MHz", "SM clock frequency (in MHz).", GPU_LABELS),
    Metric("DCGM_FI_DEV_MEM_CLOCK", "gauge", "MHz", "Memory clock frequency (in MHz).", GPU_LABELS),
    Metric("DCGM_FI_DEV_CLOCKS_EVENT_REASONS", "gauge", "bitmask",
           "Current clock event (throttle) reasons as an NVML bitmask.", GPU_LABELS),
    Metric("DCGM_FI_DEV_XID_ERRORS", "gauge", "xid", "Value of the last XID error encountered.", GPU_LABELS),
    Metric("DCGM_EXP_XID_ERRORS_COUNT", "counter", "errors", "Count of XID errors by XID code.",
           (*GPU_LABELS, "xid")),
    Metric("DCGM_FI_DEV_ECC_SBE_VOL_TOTAL", "counter", "errors",
           "Total number of single-bit volatile ECC errors.", GPU_LABELS),
    Metric("DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", "counter", "errors",
           "Total number of double-bit volatile ECC errors.", GPU_LABELS),
    Metric("DCGM_FI_DEV_PCIE_REPLAY_COUNTER", "counter", "retries", "Total number of PCIe retries.",
           GPU_LABELS),
    Metric("DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS", "counter", "rows",
           "Number of remapped rows for uncorrectable errors.", GPU_LABELS),
)

#: NVML clock-event reason bits that mean the GPU is throttling (thermal or power).
CLOCK_EVENT_THROTTLE_MASK = 0x4 | 0x8 | 0x20 | 0x40 | 0x80
"""SW power cap (0x4), HW slowdown (0x8), SW thermal (0x20), HW thermal (0x40), HW power brake (0x80)."""

HOST_METRICS: tuple[Metric, ...] = (
    Metric("llm_host_cpu_utilization_ratio", "gauge", "ratio", "Host CPU utilization, 0 to 1."),
    Metric("llm_host_memory_total_bytes", "gauge", "bytes", "Host memory in total."),
    Metric("llm_host_memory_available_bytes", "gauge", "bytes", "Host memory available."),
    Metric("llm_host_swap_used_bytes", "gauge", "bytes", "Swap in use."),
    Metric("llm_host_load1", "gauge", "load", "Host load average over 1 minute."),
    Metric("llm_host_cpus", "gauge", "cpus", "Logical CPUs on the host."),
    Metric("llm_host_process_cpu_seconds_total", "counter", "seconds",
           "CPU time used by the engine's process tree (the engine and its living descendants; user + system). "
           "Drops when a child exits, which rate() reads as a counter reset."),
    Metric("llm_host_process_resident_memory_bytes", "gauge", "bytes",
           "Resident memory of the engine's process tree (sum of RSS: shared pages count once per process)."),
    Metric("llm_host_process_start_time_seconds", "gauge", "seconds",
           "Start time of the engine process since the Unix epoch (a restart shows as a new value)."),
    Metric("llm_host_cgroup_memory_usage_bytes", "gauge", "bytes",
           "Memory in use by the engine's container (cgroup); absent when the engine's cgroup cannot be read."),
    Metric("llm_host_cgroup_memory_limit_bytes", "gauge", "bytes",
           "Memory limit of the engine's container (cgroup); absent when unlimited or unreadable."),
)

LOG_METRICS: tuple[Metric, ...] = (
    Metric("llm_log_events_total", "counter", "events",
           "Known failure signatures found in tailed logs.", labels=("source", "signature", "xid")),
)

ALL_METRICS: tuple[Metric, ...] = (
    *ENGINE_METRICS, ENGINE_INFO, *SIDECAR_METRICS, *GPU_METRICS, *HOST_METRICS, *LOG_METRICS,
)

def by_name() -> dict[str, Metric]:
    return {m.name: m for m in ALL_METRICS}


def known_series() -> frozenset[str]:
    """Every series name the exporter can produce (histogram components included)."""
    return frozenset(s for m in ALL_METRICS for s in m.series_names)


_VLLM_TTFT = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
              40.0, 80.0, 160.0, 640.0, 2560.0)
_VLLM_ITL = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0)
_VLLM_REQUEST = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0,
                 480.0, 960.0, 1920.0, 7680.0)
_SGLANG_TTFT = (0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 2.0, 4.0, 6.0, 8.0, 10.0, 20.0, 40.0, 60.0, 80.0, 100.0, 200.0, 400.0)
_SGLANG_ITL = (0.002, 0.004, 0.006, 0.008, 0.01, 0.015, 0.02, 0.025, 0.03, 0.035, 0.04, 0.06, 0.08, 0.1, 0.2, 0.4,
               0.6, 0.8, 1.0, 2.0, 4.0, 6.0, 8.0)
_SGLANG_E2E = (0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 2.0, 4.0, 6.0, 8.0, 10.0, 20.0, 40.0, 60.0, 80.0, 100.0, 200.0, 400.0,
               600.0, 1200.0, 1800.0, 2400.0)
#: TGI's ``*duration`` buckets: 35 steps of ``value *= 1.5`` from 0.0001, computed as the router does (f64).
_TGI_DURATION = tuple(accumulate(repeat(1.5, 35), operator.mul, initial=0.0001))[1:]

#: Default native histogram bucket boundaries (``le``, without +Inf) per engine, keyed by normalized histogram
#: name (the engines' own defaults: vLLM 0.33 ``buckets.py``, SGLang 0.5.23 metrics collector, TGI 3.3.7).
#: Histograms whose buckets depend on the engine's config (token-count histograms) or that are not pinned
#: down (SGLang queue time) are left out. Engines let users override buckets; these are the defaults.
#: On the wire prometheus_client (vLLM, SGLang) renders a boundary as ``repr(float)`` ("1.0"), TGI as the
#: shortest f64 round-trip text, which is also ``repr`` for these values.
NATIVE_BUCKETS: Mapping[Engine, Mapping[str, tuple[float, ...]]] = MappingProxyType({
    "vllm": MappingProxyType({
        "llm_time_to_first_token_seconds": _VLLM_TTFT,
        "llm_inter_token_latency_seconds": _VLLM_ITL,
        "llm_time_per_output_token_seconds": _VLLM_ITL,
        "llm_request_duration_seconds": _VLLM_REQUEST,
        "llm_request_queue_time_seconds": _VLLM_REQUEST,
        "llm_request_prefill_time_seconds": _VLLM_REQUEST,
        "llm_request_decode_time_seconds": _VLLM_REQUEST,
    }),
    "sglang": MappingProxyType({
        "llm_time_to_first_token_seconds": _SGLANG_TTFT,
        "llm_inter_token_latency_seconds": _SGLANG_ITL,
        "llm_time_per_output_token_seconds": _SGLANG_ITL,
        "llm_request_duration_seconds": _SGLANG_E2E,
    }),
    "tgi": MappingProxyType({
        "llm_time_per_output_token_seconds": _TGI_DURATION,
        "llm_request_duration_seconds": _TGI_DURATION,
        "llm_request_queue_time_seconds": _TGI_DURATION,
    }),
})
