"""Each engine's wire format: native bucket layouts, ``/metrics`` text, info endpoint, config-key names.

Latency boundaries come from ``optiinfra.metrics.NATIVE_BUCKETS``; the layouts that catalogue leaves out
(token counts, which depend on the engine's config, and SGLang's queue time) are defined here once.
vLLM and SGLang are rendered as prometheus_client renders them (``repr``-style floats, vLLM with
``_created`` companions, SGLang in multiprocess mode without them); labels are sorted as in the captured
payloads. TGI is rendered as metrics-exporter-prometheus does: bare counter names, Go-style numbers, a
summary for skipped tokens, ``tgi_batch_max_total_tokens`` without HELP.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import fields
from typing import Any, cast

from prometheus_client import utils as _pc_utils

from optiinfra import engines
from optiinfra.exporter.exposition import escape, escape_help, format_value
from optiinfra.metrics import NATIVE_BUCKETS, Engine

from .model import FINISH_REASONS, KV_DTYPES, EngineConfig, Histogram, LoadModel

floatToGoString = cast(Callable[[float], str], _pc_utils.floatToGoString)
"""prometheus_client's own float rendering (what vLLM and SGLang emit)."""


def _one_two_five(limit: int) -> tuple[float, ...]:
    """vLLM's request-token buckets: 1, 2, 5, 10, 20, 50, ... up to ``max_model_len``."""
    out: list[float] = []
    mantissa, exponent = (1, 2, 5), 0
    while True:
        for m in mantissa:
            value = m * 10**exponent
            if value > limit:
                return tuple(out)
            out.append(float(value))
        exponent += 1


def _linear(top: int) -> tuple[float, ...]:
    """TGI's token buckets: 100 linear steps up to ``top``."""
    step = top / 100
    return tuple(step * i for i in range(1, 101))


_SGLANG_QUEUE = (0.0, 0.001, 0.005, 0.01, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 10.0, 15.0, 20.0, 30.0,
                 40.0, 50.0, 60.0, 70.0, 80.0, 90.0, 100.0, 200.0, 300.0, 400.0, 500.0, 600.0, 700.0, 800.0, 900.0,
                 1000.0, 1200.0, 1400.0, 1600.0, 1800.0, 2000.0, 2500.0, 3000.0)
"""SGLang 0.5.23 queue-time layout; its middle, written '30, ..., 100, 200, ..., 1000' in SGLang, is filled
in with steps of 10 and 100."""
_SGLANG_TOKENS = (100.0, 300.0, 500.0, 700.0, 1000.0, 1500.0, 2000.0, 3000.0, 4000.0, 5000.0, 6000.0, 7000.0,
                  8000.0, 9000.0, 10000.0, 12000.0, 15000.0, 20000.0, 22000.0, 25000.0, 30000.0, 35000.0,
                  40000.0, 66000.0, 99000.0, 132000.0, 300000.0, 600000.0, 900000.0, 1000000.0, 1100000.0)
"""SGLang's default prompt/generation token layout (its ends as SGLang defines them: 100 ... 1000000, 1100000)."""
_VLLM_PREEMPTIONS = (1.0, 2.0, 3.0, 4.0, 5.0, 10.0, 20.0)
_VLLM_ITERATION = (1.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0, 8192.0, 16384.0)


def bucket_layouts(engine: Engine, config: EngineConfig) -> dict[str, tuple[float, ...]]:
    """Model concept -> native boundaries for ``engine`` (only the concepts the engine exports)."""
    native = NATIVE_BUCKETS[engine]
    if engine == "tgi":
        duration = native["llm_request_duration_seconds"]
        return {
            "e2e": duration, "queue": duration, "inference": duration, "validation": duration,
            "mean_time_per_token": duration, "forward_prefill": duration, "forward_decode": duration,
            "arrival_prompt_tokens": _linear(tgi_max_input_tokens(config)),
            "generation_tokens": _linear(config.max_model_len), "max_tokens": _linear(config.max_model_len),
        }
    latency = {concept: native[f"llm_{name}_seconds"] for concept, name in (
        ("ttft", "time_to_first_token"), ("itl", "inter_token_latency"), ("tpot", "time_per_output_token"),
        ("e2e", "request_duration"))}
    if engine == "sglang":
        return {**latency, "queue": _SGLANG_QUEUE, "prompt_tokens": _SGLANG_TOKENS, "generation_tokens": _SGLANG_TOKENS}
    tokens = _one_two_five(config.max_model_len)
    return {
        **latency, "queue": native["llm_request_queue_time_seconds"], "inference": latency["e2e"],
        "prefill": native["llm_request_prefill_time_seconds"], "decode": native["llm_request_decode_time_seconds"],
        "prompt_tokens": tokens, "generation_tokens": tokens, "max_tokens": tokens, "prefill_computed": tokens,
        "iteration_tokens": _VLLM_ITERATION, "request_preemptions": _VLLM_PREEMPTIONS,
    }


def tgi_max_input_tokens(config: EngineConfig) -> int:
    return config.max_model_len - 1


# --- config keys ------------------------------------------------------------------------------------
# The simulator models the vocabulary's settings that have a ``sim`` field (an EngineConfig field, negated with
# the setting) and addresses them by flag name (``mem_fraction_static``, ``disable_radix_cache``).

if _unknown := [s.sim for v in engines.VOCABULARY.values() for s in v.settings
                if s.sim is not None and s.sim not in {f.name for f in fields(EngineConfig)}]:
    raise engines.VocabularyError(f"the simulator has no EngineConfig field {', '.join(_unknown)}")

_JSON: Mapping[str, tuple[tuple[type, ...], str]] = {"bool": ((bool,), "true or false"), "int": ((int,), "an integer"),
                                                     "float": ((int, float), "a number"), "str": ((str,), "a string")}


def simulated(engine: Engine) -> dict[str, engines.Setting]:
    """Flag name -> setting, for the settings the simulator models on ``engine``."""
    return {s.name: s for s in engines.VOCABULARY[engine].settings if s.sim is not None}


def parse_changes(engine: Engine, body: object) -> dict[str, object]:
    """Engine-native {key: value} -> EngineConfig field changes. Raises ValueError naming what to fix."""
    if not isinstance(body, dict) or not body:
        raise ValueError('send a non-empty JSON object of engine settings, e.g. {"gpu_memory_utilization": 0.95}')
    known = simulated(engine)
    changes: dict[str, object] = {}
    for raw_key, value in body.items():
        setting = known.get(engines.flag_name(str(raw_key)))
        if setting is None:
            raise ValueError(f"unknown {engine} setting {raw_key!r}; known: {', '.join(sorted(known))}")
        types, wanted = _JSON[setting.type]
        if not isinstance(value, types) or (setting.type != "bool" and isinstance(value, bool)):
            raise ValueError(f"{setting.name} must be {wanted}")
        if setting.sim == "kv_cache_dtype" and value not in KV_DTYPES:
            raise ValueError(f"{setting.name} must be one of {', '.join(KV_DTYPES)}")
        changes[str(setting.sim)] = float(cast(float, value)) if setting.type == "float" else setting.flip(value)
    return changes


def native_config(engine: Engine, config: EngineConfig) -> dict[str, object]:
    """The modelled settings by flag name, as the engine would report them."""
    return {key: s.flip(getattr(config, str(s.sim))) for key, s in simulated(engine).items()}


def reported(engine: Engine, source: str, config: EngineConfig) -> dict[str, object]:
    """The modelled settings an info source reports under their keys (unset values left out)."""
    return {s.key: s.flip(value) for s in engines.VOCABULARY[engine].settings
            if s.sim is not None and s.source == source and (value := getattr(config, s.sim)) is not None}


# --- rendering --------------------------------------------------------------------------------------

Labels = Mapping[str, str]


def _labels(labels: Labels, extra: tuple[tuple[str, str], ...] = (), sort: bool = True) -> str:
    """prometheus_client payloads as captured have sorted labels; metrics-exporter-prometheus puts ``le``
    (and ``quantile``) after the metric's own labels."""
    items = sorted([*labels.items(), *extra]) if sort else [*labels.items(), *extra]
    if not items:
        return ""
    return "{" + ",".join(f'{k}="{escape(v)}"' for k, v in items) + "}"


class Writer:
    """Accumulates families in one engine's text style."""

    def __init__(self, style: str, created: float | None) -> None:
        self.style = style  # "python" (prometheus_client) or "rust" (metrics-exporter-prometheus)
        self.created = created
        self.lines: list[str] = []
        self.fmt: Callable[[float], str] = floatToGoString if style == "python" else format_value

    def _head(self, name: str, type_: str, help_: str | None) -> None:
        if help_ is not None:
            self.lines.append(f"# HELP {name} {escape_help(help_)}")
        self.lines.append(f"# TYPE {name} {type_}")

    def _created(self, name: str, help_: str, label_sets: Sequence[Labels]) -> None:
        if self.created is None:
            return
        self._head(f"{name}_created", "gauge", help_)
        self.lines.extend(f"{name}_created{_labels(ls)} {self.fmt(self.created)}" for ls in label_sets)

    def _end(self) -> None:
        if self.style == "rust":
            self.lines.append("")

    def gauge(self, name: str, help_: str | None, samples: Sequence[tuple[Labels, float]],
              type_: str = "gauge") -> None:
        self._head(name, type_, help_)
        self.lines.extend(f"{name}{_labels(ls)} {self.fmt(v)}" for ls, v in samples)
        self._end()

    def counter(self, name: str, help_: str, samples: Sequence[tuple[Labels, float]]) -> None:
        """``name`` as on the wire; with ``_created`` the base is ``name`` minus ``_total``."""
        self.gauge(name, help_, samples, "counter")
        if name.endswith("_total"):
            self._created(name[: -len("_total")], help_, [ls for ls, _ in samples])

    def histogram(self, name: str, help_: str, samples: Sequence[tuple[Labels, Histogram]]) -> None:
        self._head(name, "histogram", help_)
        for ls, hist in samples:
            for bound, cum in zip((*hist.bounds, float("inf")), hist.cumulative(), strict=True):
                bucket_labels = _labels(ls, (("le", self.fmt(bound)),), sort=self.style == "python")
                self.lines.append(f"{name}_bucket{bucket_labels} {self.fmt(cum)}")
            totals = [("_count", hist.count), ("_sum", hist.sum)]
            for suffix, value in totals if self.style == "python" else totals[::-1]:
                self.lines.append(f"{name}{suffix}{_labels(ls)} {self.fmt(value)}")
        self._end()
        self._created(name, help_, [ls for ls, _ in samples])

    def summary(self, name: str, help_: str, quantiles: list[tuple[float, float]], total: float, count: int) -> None:
        self._head(name, "summary", help_)
        for q, v in quantiles:
            self.lines.append(f'{name}{{quantile="{format_value(q)}"}} {self.fmt(v)}')
        self.lines.append(f"{name}_sum {self.fmt(total)}")
        self.lines.append(f"{name}_count {self.fmt(count)}")
        self._end()

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def render_vllm(model: LoadModel, model_name: str, created: float) -> str:
    s = model.stats
    base = {"engine": "0", "model_name": model_name}
    w = Writer("python", created)
    w.gauge("vllm:num_requests_running", "Number of requests in model execution batches.",
            [(base, float(len(model.running)))])
    w.gauge("vllm:num_requests_waiting", "Number of requests waiting to be processed.",
            [(base, float(len(model.waiting)))])
    w.gauge("vllm:num_requests_waiting_by_reason",
            "Number of waiting requests by reason. Reason labels: 'capacity' = waiting for scheduling capacity; "
            "'deferred' = deferred by transient constraints (LoRA budget, KV transfer, blocked status). "
            "Sum of all reasons equals vllm:num_requests_waiting.",
            [({**base, "reason": "capacity"}, float(len(model.waiting))), ({**base, "reason": "deferred"}, 0.0)])
    w.gauge("vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.", [(base, model.kv_usage())])
    w.counter("vllm:prefix_cache_queries_total", "Prefix cache queries, in terms of number of queried tokens.",
              [(base, float(s.prefix_queries))])
    w.counter("vllm:prefix_cache_hits_total", "Prefix cache hits, in terms of number of cached tokens.",
              [(base, float(s.prefix_hits))])
    w.counter("vllm:external_prefix_cache_queries_total",
              "External prefix cache queries from KV connector cross-instance cache sharing, in terms of number "
              "of queried tokens.", [(base, float(s.external_queries))])
    w.counter("vllm:external_prefix_cache_hits_total",
              "External prefix cache hits from KV connector cross-instance cache sharing, in terms of number of "
              "cached tokens.", [(base, float(s.external_hits))])
    w.counter("vllm:num_preemptions_total", "Cumulative number of preemption from the engine.",
              [(base, float(s.preemptions))])
    w.counter("vllm:prompt_tokens_total", "Number of prefill tokens processed.", [(base, float(s.prompt_tokens))])
    w.counter("vllm:prompt_tokens_by_source_total",
              "Number of prompt tokens by source: local_compute, local_cache_hit, external_kv_transfer.",
              [({**base, "source": "local_compute"}, float(s.prompt_tokens - s.prefix_hits)),
               ({**base, "source": "local_cache_hit"}, float(s.prefix_hits)),
               ({**base, "source": "external_kv_transfer"}, float(s.external_hits))])
    w.counter("vllm:prompt_tokens_cached_total", "Number of cached prompt tokens (local + external).",
              [(base, float(s.prefix_hits))])
    w.counter("vllm:generation_tokens_total", "Number of generation tokens processed.",
              [(base, float(s.generation_tokens))])
    w.counter("vllm:request_success_total", "Count of successfully processed requests.",
              [({**base, "finished_reason": r}, float(s.finished[r])) for r in FINISH_REASONS])
    h = s.hist
    for name, key, help_ in (
        ("vllm:request_prompt_tokens", "prompt_tokens", "Number of prefill tokens processed."),
        ("vllm:request_generation_tokens", "generation_tokens", "Number of generation tokens processed."),
        ("vllm:iteration_tokens_total", "iteration_tokens", "Histogram of number of tokens per engine_step."),
        ("vllm:request_max_num_generation_tokens", "max_tokens",
         "Histogram of maximum number of requested generation tokens."),
        ("vllm:request_params_max_tokens", "max_tokens", "Histogram of the max_tokens request parameter."),
        ("vllm:request_prefill_kv_computed_tokens", "prefill_computed",
         "Histogram of new KV tokens computed during prefill (excluding cached tokens)."),
        ("vllm:request_num_preemptions", "request_preemptions", "Number of preemptions per finished request."),
        ("vllm:time_to_first_token_seconds", "ttft", "Histogram of time to first token in seconds."),
        ("vllm:inter_token_latency_seconds", "itl", "Histogram of inter-token latency in seconds."),
        ("vllm:request_time_per_output_token_seconds", "tpot",
         "Histogram of time_per_output_token_seconds per request."),
        ("vllm:e2e_request_latency_seconds", "e2e", "Histogram of e2e request latency in seconds."),
        ("vllm:request_queue_time_seconds", "queue", "Histogram of time spent in WAITING phase for request."),
        ("vllm:request_inference_time_seconds", "inference",
         "Histogram of time spent in RUNNING phase for request."),
        ("vllm:request_prefill_time_seconds", "prefill", "Histogram of time spent in PREFILL phase for request."),
        ("vllm:request_decode_time_seconds", "decode", "Histogram of time spent in DECODE phase for request."),
    ):
        w.histogram(name, help_, [(base, h[key])])
    n_param = Histogram((1.0, 2.0, 5.0, 10.0, 20.0))  # every request asks for n=1
    n_param.observe(1.0, sum(s.finished.values()))
    w.histogram("vllm:request_params_n", "Histogram of the n request parameter.", [(base, n_param)])
    w.gauge("vllm:cache_config_info", "Information of the LLMEngine CacheConfig",
            [(cache_config_labels(model), 1.0)])
    return w.text()


def cache_config_labels(model: LoadModel) -> dict[str, str]:
    cfg = model.config
    return {
        **{key: str(value) for key, value in reported("vllm", "vllm:cache_config_info", cfg).items()},
        "_block_size_resolved": "True", "calculate_kv_scales": "False", "engine": "0", "is_attention_free": "False",
        "kv_cache_dtype_skip_layers": "[]",
        "kv_cache_max_concurrency": str(round(model.capacity_tokens / cfg.max_model_len, 4)),
        "kv_cache_memory_bytes": "None", "kv_cache_size_tokens": str(model.capacity_tokens),
        "kv_offloading_backend": "native", "kv_offloading_size": "None", "kv_sharing_fast_prefill": "False",
        "mamba_block_size": "None", "mamba_cache_dtype": "auto", "mamba_cache_mode": "none",
        "mamba_page_size_padded": "None", "mamba_ssm_cache_dtype": "auto", "num_cpu_blocks": "None",
        "num_gpu_blocks": str(model.total_blocks), "num_gpu_blocks_override": "None",
        "prefix_caching_hash_algo": "sha256", "prefix_match_unit": "None", "skip_page_size_padded": "None",
        "sliding_window": "None", "user_specified_block_size": "False", "user_specified_mamba_block_size": "False",
    }


def render_sglang(model: LoadModel, model_name: str) -> str:
    s, cfg = model.stats, model.config
    sched = {"engine_type": "unified", "model_name": model_name, "moe_ep_rank": "0", "pp_rank": "0", "tp_rank": "0"}
    tok = {"engine_type": "unified", "model_name": model_name}
    stream = {**tok, "is_streaming": "true"}
    w = Writer("python", None)
    used = (model.total_blocks - model.free_blocks) * cfg.block_size
    w.gauge("sglang:num_running_reqs", "The number of running requests.", [(sched, float(len(model.running)))])
    w.gauge("sglang:num_used_tokens", "The number of used tokens.", [(sched, float(used))])
    w.gauge("sglang:token_usage", "The token usage.", [(sched, round(model.kv_usage(), 2))])
    w.gauge("sglang:full_token_usage", "The token usage for full attention layers.",
            [(sched, round(model.kv_usage(), 2))])
    w.gauge("sglang:max_total_num_tokens", "Maximum total number of tokens in the KV cache pool.",
            [(sched, float(model.capacity_tokens))])
    w.gauge("sglang:page_size", "KV cache page size in tokens.", [(sched, float(cfg.block_size))])
    w.gauge("sglang:num_pages", "Number of KV cache pages.", [(sched, float(model.total_blocks))])
    w.gauge("sglang:num_queue_reqs", "The number of requests in the waiting queue.",
            [(sched, float(len(model.waiting)))])
    w.counter("sglang:num_retracted_requests_total", "Total number of retracted requests.",
              [(sched, float(s.preemptions))])
    w.counter("sglang:num_retracted_input_tokens_total", "Total number of retracted input tokens.",
              [(sched, float(s.retracted_input_tokens))])
    w.counter("sglang:num_retracted_output_tokens_total", "Total number of retracted output tokens.",
              [(sched, float(s.retracted_output_tokens))])
    w.histogram("sglang:queue_time_seconds", "Histogram of queueing time in seconds.", [(sched, s.hist["queue"])])
    w.counter("sglang:prompt_tokens_total", "Number of prefill tokens processed.", [(stream, float(s.prompt_tokens))])
    w.counter("sglang:generation_tokens_total", "Number of generation tokens processed.",
              [(stream, float(s.generation_tokens))])
    w.counter("sglang:cached_tokens_total", "Number of cached prompt tokens by source (device/host/storage).",
              [({**tok, "cache_source": "device"}, float(s.prefix_hits)),
               ({**tok, "cache_source": "host"}, 0.0), ({**tok, "cache_source": "storage"}, 0.0)])
    finished = sum(s.finished.values())
    w.counter("sglang:num_requests_total", "Number of requests processed.", [(stream, float(finished))])
    w.counter("sglang:num_aborted_requests_total", "Number of requests aborted.",
              [(tok, float(s.finished["abort"]))])
    h = s.hist
    w.histogram("sglang:time_to_first_token_seconds", "Histogram of time to first token in seconds.",
                [(stream, h["ttft"])])
    w.histogram("sglang:inter_token_latency_seconds", "Histogram of inter-token latency in seconds.",
                [(tok, h["itl"])])
    w.histogram("sglang:request_time_per_output_token_seconds",
                "Per-request TPOT in seconds: (finished_time - first_token_time) / (completion_tokens - 1).",
                [(stream, h["tpot"])])
    w.histogram("sglang:e2e_request_latency_seconds", "Histogram of End-to-end request latency in seconds",
                [(stream, h["e2e"])])
    w.histogram("sglang:prompt_tokens_histogram", "Histogram of prompt token length.", [(tok, h["prompt_tokens"])])
    w.histogram("sglang:generation_tokens_histogram", "Histogram of generation token length.",
                [(tok, h["generation_tokens"])])
    ok = finished - s.finished["error"]
    w.counter("sglang:http_requests_total", "Total number of HTTP requests by endpoint and method",
              [({"endpoint": "/generate", "method": "POST"}, float(s.received))])
    w.counter("sglang:http_responses_total", "Total number of HTTP responses by endpoint and status code",
              [({"endpoint": "/generate", "method": "POST", "status_code": "200"}, float(ok)),
               ({"endpoint": "/generate", "method": "POST", "status_code": "500"}, float(s.finished["error"]))])
    return w.text()


_TGI_FAILURES = ("overloaded", "validation", "template", "incomplete", "dropped", "generation")


def render_tgi(model: LoadModel) -> str:
    s = model.stats
    w = Writer("rust", None)
    none: Labels = {}
    w.counter("tgi_request_count", "Total number of requests", [(none, float(s.received))])
    w.counter("tgi_request_success", "Number of successful requests",
              [(none, float(s.finished["stop"] + s.finished["length"]))])
    failures = {"generation": s.finished["error"], "incomplete": s.finished["abort"]}
    w.counter("tgi_request_failure", "Number of failed requests",
              [({"err": e}, float(failures[e])) for e in _TGI_FAILURES if e in failures])
    h = s.hist
    for name, key, help_ in (
        ("tgi_request_duration", "e2e", "Request duration"),
        ("tgi_request_validation_duration", "validation", "Request validation duration"),
        ("tgi_request_queue_duration", "queue", "Request queue duration"),
        ("tgi_request_inference_duration", "inference", "Request inference duration"),
        ("tgi_request_mean_time_per_token_duration", "mean_time_per_token", "Mean time per token per request"),
        ("tgi_request_input_length", "arrival_prompt_tokens", "Input token length per request"),
        ("tgi_request_generated_tokens", "generation_tokens", "Generated tokens per request"),
        ("tgi_request_max_new_tokens", "max_tokens", "Maximum new tokens per request"),
    ):
        w.histogram(name, help_, [(none, h[key])])
    ok = s.finished["stop"] + s.finished["length"]
    w.summary("tgi_request_skipped_tokens", "Speculated tokens per request",
              [(q, 0.0) for q in (0.0, 0.5, 0.9, 0.95, 0.99, 0.999, 1.0)], 0.0, ok)
    w.gauge("tgi_queue_size", "Current queue size", [(none, float(len(model.waiting)))])
    w.gauge("tgi_batch_current_size", "Current batch size", [(none, float(len(model.running)))])
    w.gauge("tgi_batch_current_max_tokens", "Maximum tokens for the current batch",
            [(none, float(sum(r.prompt + r.max_tokens for r in model.running)))])
    w.gauge("tgi_batch_max_total_tokens", None, [(none, float(model.capacity_tokens))])
    w.counter("tgi_batch_inference_count", "Inference calls per method (prefill or decode)",
              [({"method": "decode"}, float(s.decode_steps)), ({"method": "prefill"}, float(s.prefill_steps))])
    w.counter("tgi_batch_inference_success", "Number of successful inference calls per method",
              [({"method": "decode"}, float(s.decode_steps)), ({"method": "prefill"}, float(s.prefill_steps))])
    w.histogram("tgi_batch_forward_duration", "Batch forward duration per method (prefill or decode)",
                [({"method": "decode"}, h["forward_decode"]), ({"method": "prefill"}, h["forward_prefill"])])
    return w.text()


def render(engine: Engine, model: LoadModel, model_name: str, created: float) -> str:
    if engine == "vllm":
        return render_vllm(model, model_name, created)
    if engine == "sglang":
        return render_sglang(model, model_name)
    return render_tgi(model)


# --- info endpoints ---------------------------------------------------------------------------------

def info_routes(engine: Engine) -> tuple[str, ...]:
    return {"vllm": ("/version", "/v1/models"), "sglang": ("/get_server_info", "/get_model_info"),
            "tgi": ("/info",)}[engine]


def info_payload(engine: Engine, path: str, model: LoadModel, model_name: str, created: float) -> dict[str, Any]:
    cfg, version = model.config, engines.VOCABULARY[engine].checked
    if path == "/version":
        return {"version": version}
    if path == "/v1/models":
        return {"object": "list", "data": [{
            "id": model_name, "object": "model", "created": int(created), "owned_by": "vllm", "root": model_name,
            "parent": None, **reported("vllm", path, cfg)}]}
    if path == "/get_model_info":
        return {"model_path": model_name, "tokenizer_path": model_name, "is_generation": True}
    if path == "/get_server_info":
        return {
            "model_path": model_name, "served_model_name": model_name, "version": version,
            "tp_size": 1, "dp_size": 1, "pp_size": 1, "schedule_policy": "fcfs",
            "max_total_num_tokens": model.capacity_tokens, **reported("sglang", path, cfg),
        }
    return {
        "model_id": model_name, "model_sha": None, "model_pipeline_tag": "text-generation",
        "max_best_of": 2, "max_stop_sequences": 4, "max_input_tokens": tgi_max_input_tokens(cfg),
        "max_batch_total_tokens": model.capacity_tokens, "max_waiting_tokens": 20, "waiting_served_ratio": 0.3,
        "validation_workers": 2, "max_client_batch_size": 4, "router": "text-generation-router", "version": version,
        "sha": None, "docker_label": None, "cuda_memory_fraction": cfg.gpu_memory_utilization,
        "kv_cache_dtype": cfg.kv_cache_dtype, **reported("tgi", path, cfg),
    }
