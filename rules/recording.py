"""The recording rules dashboards and alerts share, in ONE table: ``RECORDING_RULES`` (name -> spec).

Names follow ``level:metric:operations``. ``pod_model`` rules keep the identity labels (config
``identity_labels``, default namespace, pod, instance) plus ``engine`` and ``model``; ``pod`` rules keep the
identity labels; ``model`` rules keep ``engine`` and ``model`` (fleet level); ``gpu`` rules keep every GPU
label with the two spellings of host and GPU id folded into lower-case ``hostname`` and ``uuid``, so a
dashboard reads one series whichever exporter produced it. With ``gpu_source: dcgm-exporter`` the GPU rules read
only GPUs allocated to a pod and copy dcgm-exporter's pod-mapping labels onto ``namespace``/``pod``/``container``
(``Ctx.gpu``); the ``pod`` GPU rule then keeps the identity labels without ``instance`` (``Ctx.gpu_on``).
Names never change with the profile or config. Every rate uses a 5m window (5s under ``--profile demo``); the
names say ``rate5m`` either way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from optiinfra.rules.promql import Ctx, Group, Rule

WINDOW = "5m"


@dataclass(frozen=True)
class RecordingRule:
    name: str
    help: str
    unit: str
    """Grafana-style unit hint: s, percentunit, reqps, short, tokens/s ..."""
    level: str
    """pod_model, pod, model or gpu: which labels the series keeps (see module doc)."""
    expr: Callable[[Ctx], str]
    quantile: float | None = None


#: histogram short name -> normalized histogram
HISTOGRAMS: Mapping[str, str] = MappingProxyType({
    "ttft": "llm_time_to_first_token_seconds",
    "itl": "llm_inter_token_latency_seconds",
    "tpot": "llm_time_per_output_token_seconds",
    "request_duration": "llm_request_duration_seconds",
    "queue_time": "llm_request_queue_time_seconds",
})
QUANTILES: tuple[float, ...] = (0.5, 0.9, 0.95, 0.99)
#: p95 is recorded only where an alert reads it (each quantile rule is one pass over the bucket rates).
P95_HISTOGRAMS: frozenset[str] = frozenset({
    "llm_time_to_first_token_seconds", "llm_inter_token_latency_seconds", "llm_request_queue_time_seconds"})
FLEET_QUANTILES: tuple[float, ...] = (0.5, 0.99)
_FLEET_HISTOGRAMS = ("llm_time_to_first_token_seconds", "llm_inter_token_latency_seconds",
                     "llm_request_duration_seconds")


def quantile_name(histogram: str, q: float, level: str = "pod_model") -> str:
    """``pod_model:llm_time_to_first_token_seconds:p99_rate5m`` (p50, p90, p95, p99)."""
    return f"{level}:{histogram}:p{round(q * 100)}_rate5m"


def _quantile(histogram: str, q: float, level: str) -> Callable[[Ctx], str]:
    def build(ctx: Ctx) -> str:
        by = "le, " + (ctx.by_pod if level == "pod_model" else "engine, model")
        return (f"histogram_quantile({q}, sum by ({by}) "
                f"(rate({ctx.sel(histogram + '_bucket')}[{ctx.w(WINDOW)}])))")
    return build


def pod_rate(ctx: Ctx, metric: str, *matchers: str, window: str = WINDOW) -> str:
    """Per second over ``window`` (scaled by the profile), summed per pod and model."""
    return f"sum by ({ctx.by_pod}) (rate({ctx.sel(metric, *matchers)}[{ctx.w(window)}]))"


def _sum_rate(metric: str, *matchers: str) -> Callable[[Ctx], str]:
    return lambda ctx: pod_rate(ctx, metric, *matchers)


def _agg(op: str, metric: str, *matchers: str) -> Callable[[Ctx], str]:
    return lambda ctx: f"{op} by ({ctx.by_pod}) ({ctx.sel(metric, *matchers)})"


def _ratio(num_metric: str, den_metric: str) -> Callable[[Ctx], str]:
    return lambda ctx: f"{pod_rate(ctx, num_metric)}\n/\n({pod_rate(ctx, den_metric)} > 0)"


def _error_share(ctx: Ctx) -> str:
    total = pod_rate(ctx, "llm_requests_finished_total")
    errors = pod_rate(ctx, "llm_requests_finished_total", 'outcome="error"')
    # Engines without an error outcome (SGLang) give 0, not an empty result.
    return f"({errors} or 0 * {total})\n/\n({total} > 0)"


def gpu_fold(ctx: Ctx, expr: str) -> str:
    """Fold ``Hostname``/``hostname`` and ``UUID``/``uuid`` into lower-case labels (one series per GPU)."""
    inner = f'label_replace(label_replace({expr}, "hostname", "$1", "Hostname", "(.+)"), "uuid", "$1", "UUID", "(.+)")'
    return f"max without (Hostname, UUID) ({ctx.gpu(inner)})"


def _gpu_mem(ctx: Ctx) -> str:
    used, free = ctx.sel("DCGM_FI_DEV_FB_USED"), ctx.sel("DCGM_FI_DEV_FB_FREE")
    return gpu_fold(ctx, f"{used} / ({used} + {free})")


def _build_table() -> dict[str, RecordingRule]:
    pod_quantiles = [(h, q) for h in HISTOGRAMS.values() for q in QUANTILES if q != 0.95 or h in P95_HISTOGRAMS]
    fleet_quantiles = [(h, q) for h in _FLEET_HISTOGRAMS for q in FLEET_QUANTILES]
    rules = [RecordingRule(quantile_name(h, q, level), f"p{round(q * 100)} of {h} {where} over 5m.", "s", level,
                           _quantile(h, q, level), q)
             for level, where, quantiles in (("pod_model", "per pod and model", pod_quantiles),
                                             ("model", "per model (fleet)", fleet_quantiles))
             for h, q in quantiles]
    rules += [
        RecordingRule("pod_model:llm_prompt_tokens:rate5m", "Prompt tokens per second.", "tokens/s", "pod_model",
                      _sum_rate("llm_prompt_tokens_total")),
        RecordingRule("pod_model:llm_generation_tokens:rate5m", "Generated tokens per second.", "tokens/s",
                      "pod_model", _sum_rate("llm_generation_tokens_total")),
        RecordingRule("pod_model:llm_requests_finished:rate5m", "Finished requests per second (all outcomes).",
                      "reqps", "pod_model", _sum_rate("llm_requests_finished_total")),
        RecordingRule("pod_model:llm_preemptions:rate5m", "Preemptions (SGLang: retractions) per second.",
                      "ops", "pod_model", _sum_rate("llm_preemptions_total")),
        RecordingRule("pod_model:llm_requests_errored_per_finished:ratio_rate5m",
                      "Share of finished requests that errored (0 where the engine has no error outcome).",
                      "percentunit", "pod_model", _error_share),
        RecordingRule("pod_model:llm_prefix_cache_hit_tokens_per_queried_tokens:ratio_rate5m",
                      "Prefix-cache hit ratio from token counters; absent while nothing is queried.",
                      "percentunit", "pod_model",
                      _ratio("llm_prefix_cache_hit_tokens_total", "llm_prefix_cache_queried_tokens_total")),
        RecordingRule("pod_model:llm_kv_cache_usage_ratio:max", "KV-cache usage, max over ranks (never summed).",
                      "percentunit", "pod_model", _agg("max", "llm_kv_cache_usage_ratio")),
        RecordingRule("pod_model:llm_requests_waiting:sum", "Requests waiting, summed over ranks.", "short",
                      "pod_model", _agg("sum", "llm_requests_waiting")),
        RecordingRule("pod_model:llm_requests_waiting_for_capacity:sum",
                      "Requests waiting for scheduling capacity (KV blocks or batch slots), summed over ranks; only "
                      "engines that tell the reason (vLLM).", "short", "pod_model",
                      _agg("sum", "llm_requests_waiting_by_reason", 'reason="capacity"')),
        RecordingRule("pod_model:llm_requests_running:sum", "Requests running, summed over ranks.", "short",
                      "pod_model", _agg("sum", "llm_requests_running")),
        RecordingRule("model:llm_requests_finished:rate5m", "Finished requests per second per model (fleet).",
                      "reqps", "model", lambda _: "sum by (engine, model) (pod_model:llm_requests_finished:rate5m)"),
        RecordingRule("gpu:DCGM_FI_DEV_GPU_UTIL:ratio", "GPU utilization, 0 to 1, per GPU.", "percentunit", "gpu",
                      lambda ctx: gpu_fold(ctx, f"{ctx.sel('DCGM_FI_DEV_GPU_UTIL')} / 100")),
        RecordingRule("gpu:DCGM_FI_DEV_FB_USED:ratio", "Framebuffer used / (used + free), per GPU.", "percentunit",
                      "gpu", _gpu_mem),
        RecordingRule("pod:DCGM_FI_DEV_GPU_UTIL:avg_ratio", "Mean GPU utilization of a pod's GPUs, 0 to 1.",
                      "percentunit", "pod", lambda ctx: f"avg by ({ctx.gpu_on}) (gpu:DCGM_FI_DEV_GPU_UTIL:ratio)"),
    ]
    return {r.name: r for r in rules}


#: Every recording rule, by name, in evaluation order (rules that read other rules come after them).
RECORDING_RULES: Mapping[str, RecordingRule] = MappingProxyType(_build_table())


def reference_table(rules: Iterable[RecordingRule], level_labels: Mapping[str, str]) -> list[str]:
    """The docs/rules.md table of recording rules (``level_labels``: what each level keeps, in words)."""
    return ["| name | labels | unit | meaning |", "|---|---|---|---|",
            *(f"| `{r.name}` | {level_labels[r.level]} | {r.unit} | {r.help} |" for r in rules)]


def recording_groups(ctx: Ctx) -> tuple[Group, ...]:
    engine = tuple(Rule(record=r.name, expr=r.expr(ctx))
                   for r in RECORDING_RULES.values() if r.level in ("pod_model", "model"))
    gpu = tuple(Rule(record=r.name, expr=r.expr(ctx)) for r in RECORDING_RULES.values() if r.level in ("gpu", "pod"))
    return (Group("optiinfra.recording.engine", engine), Group("optiinfra.recording.gpu", gpu))
