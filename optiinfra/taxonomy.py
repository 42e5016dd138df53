"""The bottleneck taxonomy, defined once (reference: docs/taxonomy.md, generated from it).

One row per bottleneck says what it *is* (alert name, severity, thresholds, ``for``, inhibitions, log
signatures); its ``spec`` (``optiinfra.signals``) says how its signal is evaluated, shown, tested, explained and
planned. The alerting rules and their promtool tests (``rules/``), the runbooks, the dashboards' bottleneck rows
(``grafana/``), the Alertmanager inhibition rules and the receiver's planner (``alertmanager/``) are all derived
from this catalogue; a row whose spec does not fit it fails when the row is built.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Literal

from optiinfra import signals as sg

if TYPE_CHECKING:
    from optiinfra.rules.testgen import Kit

Severity = Literal["critical", "warning", "info"]
Component = Literal["engine", "gpu", "host", "slo"]
SignalKind = Literal["metric", "log", "metric+log"]

RUNBOOK_BASE_URL = "https://github.com/optiinfra/optiinfra/blob/main/docs/runbooks"

#: Abstract plan actions. The planner maps each to an engine's real flag (or to an ops action).
ActionId = Literal[
    "kv_memory_up", "kv_cache_dtype_fp8", "enable_prefix_caching", "max_num_seqs_down", "max_num_seqs_up",
    "batched_tokens_down", "batched_tokens_up", "prefill_chunk_up", "prefill_chunk_down", "weight_quantization_fp8",
    "tensor_parallel_up", "tensor_parallel_down", "speculative_decoding", "cpu_kv_offload", "lpm_schedule_policy",
    "kv_memory_down", "max_model_len_down", "scale_out", "consolidate_replicas", "restart_pod",
]


@dataclass(frozen=True)
class Threshold:
    """One tunable number of a bottleneck's signal."""

    value: float
    unit: str
    description: str


@dataclass(frozen=True)
class Bottleneck:
    id: str
    alert: str
    severity: Severity
    component: Component
    signal: SignalKind
    fires_when: str
    """The condition in words (docs/taxonomy.md's 'fires when'), for runbooks and dashboards."""
    for_: str
    """Default ``for`` duration, a Prometheus duration string."""
    thresholds: Mapping[str, Threshold]
    summary: str
    """One constant sentence."""
    description: str
    """Per-instance detail; may use ``{{ $labels.x }}`` and ``{{ $value }}`` templates."""
    inhibits: tuple[str, ...] = ()
    """Bottleneck ids this one inhibits (same pod; same model where both carry it)."""
    log_signatures: tuple[str, ...] = ()
    """Log-signature names (``llm_log_events_total{signature}``) that also raise this bottleneck."""
    manual: str = ""
    """What a human does when there is no safe automatic action."""
    identity: tuple[str, ...] = field(default=())
    """Identity labels the alert keeps (beyond Prometheus target labels namespace/pod/instance)."""
    # The signal spec (``optiinfra.signals``): everything below is derived from these fields.
    runbook: sg.Runbook = field(kw_only=True)
    condition: sg.Condition | sg.Custom | None = field(default=None, kw_only=True)
    """None: a log-only bottleneck (its log signatures are the whole signal)."""
    panel: sg.Panel | None = field(default=None, kw_only=True)
    fixture: Callable[[Kit], sg.Cases] | None = field(default=None, kw_only=True)
    """Series that make the alert fire / stay quiet / stay idle (log-only bottlenecks: derived)."""
    plan: sg.Plan | None = field(default=None, kw_only=True)
    """None: a diagnosis record. A plan cannot be built without actions."""

    def __post_init__(self) -> None:
        """The spec fits the row, or the row cannot be built."""
        if ("log" in self.signal) != bool(self.log_signatures) or (self.signal == "log") != (self.condition is None):
            raise sg.SpecError(f"{self.id}: signal {self.signal!r} does not match its condition and log signatures")
        if self.condition is not None and (self.panel is None or self.fixture is None):
            raise sg.SpecError(f"{self.id}: a metric signal needs a panel and a fixture")
        if isinstance(self.condition, sg.Custom) and self.panel is not None and not self.panel.main:
            raise sg.SpecError(f"{self.id}: a custom signal's panel must name its series")
        if self.plan is not None and self.severity == "info":
            raise sg.SpecError(f"{self.id}: an actionable bottleneck (it has a plan) is never severity info: "
                               "kube-prometheus-stack's default InfoInhibitor would mute it")
        unknown = sg.threshold_names(self.condition, self.panel) - set(self.thresholds)
        if unknown:
            raise sg.SpecError(f"{self.id}: unknown threshold(s) {sorted(unknown)}; known: {sorted(self.thresholds)}")
        try:
            sg.runbook_text(self.runbook, dict.fromkeys(self.thresholds, 1.0))
        except (KeyError, ValueError, IndexError) as exc:
            raise sg.SpecError(f"{self.id}: runbook text names an unknown field: {exc}") from None

    @property
    def runbook_url(self) -> str:
        return f"{RUNBOOK_BASE_URL}/{self.id}.md"

    @property
    def actions(self) -> tuple[ActionId, ...]:
        """What the planner may propose, most preferred first. Empty: a diagnosis record, no plan."""
        return self.plan.actions if self.plan else ()

    @property
    def plannable(self) -> bool:
        return self.plan is not None


def _m(**kw: Threshold) -> Mapping[str, Threshold]:
    return MappingProxyType(kw)


PERFORMANCE_IDS: tuple[str, ...] = ("kv_cache_pressure", "preemption_storm", "queue_buildup", "prefill_bound",
                                    "decode_bound", "low_throughput", "gpu_underutilized", "cache_inefficiency")

_ENGINE_ID = ("engine", "model")
_GPU_ID = ("gpu", "UUID", "uuid", "Hostname", "hostname")

BOTTLENECKS: tuple[Bottleneck, ...] = (
    Bottleneck(
        "kv_cache_pressure", "LLMKVCachePressure", "warning", "engine", "metric",
        "KV-cache usage (max over ranks and 2m) >= 0.90 and (requests waiting > 0 within 2m or preemptions > 0)",
        "5m",
        _m(kv_usage=Threshold(0.9, "ratio", "KV-cache usage (max over ranks) at or above which the cache is full"),
           min_waiting=Threshold(0, "requests", "requests waiting above which the full cache is hurting")),
        "The KV cache is full and requests are queuing or being preempted.",
        "KV cache of {{ $labels.model }} on {{ $labels.pod }} is {{ $value | humanizePercentage }} full "
        "while requests wait or are preempted.",
        inhibits=("queue_buildup", "preemption_storm"),
        identity=_ENGINE_ID,
        condition=sg.Condition(sg.Term(sg.KV_MAX, ">=", "kv_usage"),
                               also=((sg.Term(sg.WAITING_MAX, ">", "min_waiting"), sg.Term(sg.PREEMPTIONS, ">", 0)),)),
        panel=sg.Panel("percentunit", context=(sg.WAITING, sg.WAITING_FOR_CAPACITY, sg.PREEMPTIONS),
                       context_title="Waiting requests (all, for capacity) and preemptions/s",
                       context_threshold="min_waiting"),
        fixture=sg.kv_fixture,
        runbook=sg.Runbook(
            "The engine's KV cache is full and that hurts: requests wait for cache space or running requests are "
            "preempted and recomputed. A full cache alone is normal for vLLM (it pre-allocates); the alert needs "
            "waiting requests or preemptions too. Real usage jumps between scrapes while the engine preempts and "
            "readmits, so the alert reads the maximum over 2 minutes, not one sample. Where the engine tells why "
            "requests wait (vLLM: `capacity`), the panel shows the requests waiting for capacity next to all.",
            "{instance}: KV-cache usage (`pod_model:llm_kv_cache_usage_ratio:max`, max over ranks) reaching 1 "
            "within the last 2 minutes, with waiting requests (`pod_model:llm_requests_waiting:sum`) or preemptions "
            "(`pod_model:llm_preemptions:rate5m`) above 0 in the same minutes. {bottlenecks} shows it for the fleet."),
        plan=sg.Plan(("kv_memory_up", "kv_cache_dtype_fp8", "enable_prefix_caching", "max_num_seqs_down",
                      "weight_quantization_fp8", "scale_out"), "llm_preemptions_total", "down"),
    ),
    Bottleneck(
        "preemption_storm", "LLMPreemptionStorm", "warning", "engine", "metric",
        "preemptions (SGLang: retractions) > 0.1/s with traffic", "5m",
        _m(preemptions_per_second=Threshold(0.1, "1/s", "preemption rate above which requests are recomputed")),
        "Requests are being preempted and recomputed at a high rate.",
        "{{ $labels.model }} on {{ $labels.pod }} preempts {{ $value | humanize }} requests/s.",
        identity=_ENGINE_ID,
        condition=sg.Condition(sg.Term(sg.rule(sg.PREEMPTIONS.metric, "{{pod}} {{model}}"), ">",
                                       "preemptions_per_second"), traffic=True),
        panel=sg.guarded("ops"),
        fixture=sg.preemption_fixture,
        runbook=sg.Runbook(
            "Requests are preempted (SGLang: retracted) many times a second: the engine admitted more than its KV "
            "cache holds and throws away work to recompute it later. Latency and throughput both suffer.",
            "{instance}: preemptions per second (`pod_model:llm_preemptions:rate5m`) against finished requests "
            "(`pod_model:llm_requests_finished:rate5m`); KV usage is usually pinned near 1."),
        plan=sg.Plan(("max_num_seqs_down", "batched_tokens_down", "kv_memory_up"), "llm_preemptions_total", "down"),
    ),
    Bottleneck(
        "queue_buildup", "LLMQueueBuildup", "warning", "engine", "metric",
        "requests waiting (max over 2m) > 0 and queue-time p95 > 1s while KV usage (max over 2m) < 0.8", "5m",
        _m(queue_p95_seconds=Threshold(1, "s", "p95 queue time above which admission is the bottleneck"),
           kv_usage_below=Threshold(0.8, "ratio", "KV usage below which the queue is admission-limited")),
        "Requests are queuing although the KV cache has room: admission limits are too low.",
        "{{ $labels.model }} on {{ $labels.pod }}: p95 queue time {{ $value | humanizeDuration }} "
        "with KV headroom.",
        identity=_ENGINE_ID,
        condition=sg.Condition(sg.Term(sg.QUEUE_P95, ">", "queue_p95_seconds"),
                               also=(sg.Term(sg.WAITING_MAX, ">", 0),),
                               traffic=True, unless=(sg.Term(sg.KV_MAX, ">=", "kv_usage_below"),)),
        panel=sg.Panel("s", context=(sg.KV,), context_title="KV-cache usage (must stay below)",
                       context_unit="percentunit", context_threshold="kv_usage_below"),
        fixture=sg.queue_fixture,
        runbook=sg.Runbook(
            "Requests queue for a long time although the KV cache has room: admission limits (max sequences, "
            "batched tokens) are lower than the hardware can take.",
            "{instance}: queue-time p95 (`pod_model:llm_request_queue_time_seconds:p95_rate5m`) above "
            "{queue_p95_seconds:g}s with requests waiting (`pod_model:llm_requests_waiting:sum`) at some point of the "
            "last 2 minutes and KV usage below {kv_usage_below:g} throughout them. The waiting count jumps to 0 "
            "between scrapes as the engine admits a batch, so it is read as its maximum over the window."),
        plan=sg.Plan(("max_num_seqs_up", "batched_tokens_up", "scale_out"), "llm_request_queue_time_seconds",
                     "down"),
    ),
    Bottleneck(
        "prefill_bound", "LLMHighTimeToFirstToken", "warning", "engine", "metric",
        "TTFT p95 > 2s while queue-time p95 is low (< 0.5s)", "10m",
        _m(ttft_p95_seconds=Threshold(2, "s", "p95 time to first token above which prefill is slow"),
           queue_p95_below_seconds=Threshold(0.5, "s", "p95 queue time below which the queue is not the cause")),
        "Time to first token is high and the queue is not the cause: prefill is the bottleneck.",
        "{{ $labels.model }} on {{ $labels.pod }}: p95 TTFT {{ $value | humanizeDuration }}.",
        identity=_ENGINE_ID,
        condition=sg.Condition(sg.Term(sg.TTFT_P95, ">", "ttft_p95_seconds"), traffic=True,
                               unless=(sg.Term(sg.QUEUE_P95, ">=", "queue_p95_below_seconds"),)),
        panel=sg.Panel("s", context=(sg.QUEUE_P95,), context_title="Queue time p95 (must stay below)",
                       context_unit="s", context_threshold="queue_p95_below_seconds"),
        fixture=sg.prefill_fixture,
        runbook=sg.Runbook(
            "Time to first token is high while requests do not wait in the queue: prefill (processing the prompt) "
            "is the slow part, typically long prompts in small chunks or no prefix reuse.",
            "{instance}: TTFT p95 (`pod_model:llm_time_to_first_token_seconds:p95_rate5m`) above "
            "{ttft_p95_seconds:g}s while queue-time p95 stays below {queue_p95_below_seconds:g}s. {slos} shows "
            "whether a TTFT SLO burns."),
        plan=sg.Plan(("prefill_chunk_up", "enable_prefix_caching"), "llm_time_to_first_token_seconds", "down"),
    ),
    Bottleneck(
        "decode_bound", "LLMHighInterTokenLatency", "warning", "engine", "metric",
        "inter-token latency p95 > 0.1s", "10m",
        _m(itl_p95_seconds=Threshold(0.1, "s", "p95 inter-token latency above which decode is slow")),
        "Inter-token latency is high: decode is the bottleneck.",
        "{{ $labels.model }} on {{ $labels.pod }}: p95 inter-token latency {{ $value | humanizeDuration }}.",
        identity=_ENGINE_ID,
        condition=sg.Condition(sg.Term(sg.ITL_P95, ">", "itl_p95_seconds"), traffic=True),
        panel=sg.guarded("s"),
        fixture=sg.decode_fixture,
        runbook=sg.Runbook(
            "The time between generated tokens is high: decode steps are slow, usually because the batch is too "
            "large, prefill chunks interrupt decode, or the model is too big for its GPUs.",
            "{instance}: inter-token latency p95 (`pod_model:llm_inter_token_latency_seconds:p95_rate5m`) above "
            "{itl_p95_seconds:g}s; compare with generated tokens per second "
            "(`pod_model:llm_generation_tokens:rate5m`)."),
        plan=sg.Plan(("prefill_chunk_down", "max_num_seqs_down", "weight_quantization_fp8", "speculative_decoding",
                      "tensor_parallel_up"), "llm_inter_token_latency_seconds", "down"),
    ),
    Bottleneck(
        "low_throughput", "LLMLowThroughput", "warning", "engine", "metric",
        "requests waiting while GPU utilization < 50%", "15m",
        _m(gpu_util_below=Threshold(0.5, "ratio", "GPU utilization below which waiting requests mean waste")),
        "Requests wait while the GPUs are mostly idle.",
        "{{ $labels.pod }}: requests wait at {{ $value | humanizePercentage }} GPU utilization.",
        identity=_ENGINE_ID,
        condition=sg.Condition(sg.Term(sg.POD_GPU, "<", "gpu_util_below"), gate=(sg.Term(sg.WAITING, ">", 0),)),
        panel=sg.Panel("percentunit", context=(sg.WAITING,), context_title="Waiting requests", needs="gpu"),
        fixture=sg.gpu_util_fixture(3, "low"),
        runbook=sg.Runbook(
            "Requests wait while the GPUs are mostly idle: the engine does not batch enough work (batch limits too "
            "low, CPU-bound scheduler, CUDA graphs off).",
            "{instance} and {gpus}: waiting requests above 0 while the pod's GPU utilization "
            "(`pod:DCGM_FI_DEV_GPU_UTIL:avg_ratio`) stays under {gpu_util_below:.0%}. Check host CPU on the "
            "instance dashboard."),
        plan=sg.Plan(("max_num_seqs_up", "batched_tokens_up"), "llm_generation_tokens_total", "up"),
    ),
    Bottleneck(
        "gpu_underutilized", "LLMGPUUnderutilized", "warning", "engine", "metric",
        "GPU utilization < 30% and no queue", "30m",
        _m(gpu_util_below=Threshold(0.3, "ratio", "GPU utilization below which the replica is oversized")),
        "The GPUs of this replica are mostly idle and nothing is queued.",
        "{{ $labels.pod }}: GPU utilization {{ $value | humanizePercentage }} with an empty queue.",
        identity=_ENGINE_ID,
        condition=sg.Condition(sg.Term(sg.POD_GPU, "<", "gpu_util_below"), gate=(sg.Term(sg.WAITING, "==", 0),),
                               traffic=True),
        panel=sg.Panel("percentunit", context=(sg.WAITING,), context_title="Waiting requests (must be 0)",
                       needs="gpu"),
        fixture=sg.gpu_util_fixture(0, "zero"),
        runbook=sg.Runbook(
            "The replica's GPUs are mostly idle and nothing waits: the replica is larger than its traffic needs.",
            "{fleet}: request rate per model (`model:llm_requests_finished:rate5m`) against replicas; {gpus}: "
            "`pod:DCGM_FI_DEV_GPU_UTIL:avg_ratio` below {gpu_util_below:.0%} for a long time."),
        plan=sg.Plan(("consolidate_replicas", "tensor_parallel_down"), "DCGM_FI_DEV_GPU_UTIL", "up"),
    ),
    Bottleneck(
        "cache_inefficiency", "LLMPrefixCacheIneffective", "warning", "engine", "metric",
        "prefix-cache hit ratio < 0.1 with steady prompt traffic", "30m",
        _m(hit_ratio_below=Threshold(0.1, "ratio", "prefix-cache hit ratio below which the cache is not helping"),
           min_prompt_tokens_per_second=Threshold(10, "1/s", "prompt traffic needed before judging the cache")),
        "The prefix cache rarely hits.",
        "{{ $labels.model }} on {{ $labels.pod }}: prefix-cache hit ratio {{ $value | humanizePercentage }}.",
        identity=_ENGINE_ID,
        condition=sg.Condition(sg.Term(sg.rule("pod_model:llm_prefix_cache_hit_tokens_per_queried_tokens:ratio_rate5m",
                                      "hit ratio {{pod}} {{model}}"), "<", "hit_ratio_below"),
                               also=(sg.Term(sg.PROMPT_TOKENS, ">", "min_prompt_tokens_per_second"),)),
        panel=sg.Panel("percentunit", context=(sg.PROMPT_TOKENS,), context_title="Prompt traffic (guard)",
                       context_unit="suffix: tok/s", context_threshold="min_prompt_tokens_per_second"),
        fixture=sg.cache_fixture,
        runbook=sg.Runbook(
            "The prefix cache rarely hits although prompts keep coming: requests that share a prefix land on "
            "different replicas, or the cache evicts prefixes before they are reused.",
            "{instance}: prefix-cache hit ratio "
            "(`pod_model:llm_prefix_cache_hit_tokens_per_queried_tokens:ratio_rate5m`) below {hit_ratio_below:g} "
            "with prompt tokens (`pod_model:llm_prompt_tokens:rate5m`) above {min_prompt_tokens_per_second:g}/s."),
        plan=sg.Plan(("cpu_kv_offload", "lpm_schedule_policy"), "llm_prefix_cache_hit_tokens_total", "up"),
    ),
    Bottleneck(
        "request_errors", "LLMHighErrorRate", "critical", "engine", "metric",
        "error share of finished requests > 5% with traffic", "5m",
        _m(error_share=Threshold(0.05, "ratio", "share of finished requests that errored")),
        "A high share of requests fail.",
        "{{ $labels.model }} on {{ $labels.pod }}: {{ $value | humanizePercentage }} of requests fail.",
        manual="Read the engine log around the first errors; check recent deploys and client payloads.",
        identity=_ENGINE_ID,
        condition=sg.Condition(sg.Term(sg.rule("pod_model:llm_requests_errored_per_finished:ratio_rate5m",
                                      "{{pod}} {{model}}"), ">", "error_share"), traffic=True),
        panel=sg.guarded("percentunit"),
        fixture=sg.errors_fixture,
        runbook=sg.Runbook(
            "A high share of finished requests end in an error. No configuration change is proposed: errors need a "
            "diagnosis first.",
            "{instance}: error share (`pod_model:llm_requests_errored_per_finished:ratio_rate5m`) above "
            "{error_share:.0%}; {slos}: the availability SLO's burn rate."),
    ),
    Bottleneck(
        "engine_stalled", "LLMEngineStalled", "critical", "engine", "metric",
        "requests running > 0 and no generated tokens", "2m", _m(),
        "The engine holds running requests but generates no tokens.",
        "{{ $labels.model }} on {{ $labels.pod }} has {{ $value }} running requests and generates nothing.",
        inhibits=PERFORMANCE_IDS,
        identity=_ENGINE_ID,
        condition=sg.Condition(sg.Term(sg.rule(sg.RUNNING.metric), ">", 0),
                               also=(sg.Term(sg.Series("increase", "llm_generation_tokens_total", window="2m",
                                                    sum_by="pod_model"), "==", 0),)),
        panel=sg.Panel("suffix: tok/s", main=(sg.rule("pod_model:llm_generation_tokens:rate5m",
                                                      "generated tokens/s {{pod}} {{model}}"),),
                       context=(sg.RUNNING,), context_title="Running requests", up_is_healthy=True),
        fixture=sg.stalled_fixture,
        runbook=sg.Runbook(
            "The engine holds running requests but generates no tokens: it hangs (deadlock, stuck collective, "
            "dead worker).",
            "{instance}: running requests (`pod_model:llm_requests_running:sum`) above 0 while generated tokens "
            "per second are 0."),
        plan=sg.Plan(("restart_pod",), "llm_generation_tokens_total", "up"),
    ),
    Bottleneck(
        "engine_down", "LLMEngineDown", "critical", "engine", "metric",
        "sidecar up and llm_upstream_up == 0", "2m", _m(),
        "The sidecar cannot scrape its inference engine.",
        "The engine behind {{ $labels.pod }} does not answer its metrics endpoint.",
        inhibits=PERFORMANCE_IDS,
        identity=("engine",),
        condition=sg.Condition(sg.Term(sg.UPSTREAM, "==", 0), also=(sg.Term(sg.raw("up"), "==", 1),), join="pod"),
        panel=sg.Panel("short", context=(sg.Series("sidecar_up", "up", "sidecar up {{pod}}"),),
                       context_title="Sidecar target up", up_is_healthy=True),
        fixture=sg.upstream_fixture,
        runbook=sg.Runbook(
            "The sidecar runs but cannot scrape its engine: the engine process died, hangs, or its metrics "
            "endpoint moved.",
            "{fleet}: the instance shows upstream down (`llm_upstream_up` 0) while the sidecar target is up; "
            "the sidecar's own log says why the scrape failed."),
        plan=sg.Plan(("restart_pod",), "llm_upstream_up", "up"),
    ),
    Bottleneck(
        "engine_startup_hang", "LLMEngineStartupHang", "critical", "engine", "metric+log",
        "upstream never up for 10m while starting (never up since the sidecar started, or the engine process is "
        "10m old), or the start-up hang log signature", "0s",
        # The 10m is the window of the signal (startup_seconds); a `for` on top would make it 20m.
        _m(startup_seconds=Threshold(600, "s", "time after sidecar start by which the engine must be up")),
        "The inference engine has not finished starting.",
        "The engine behind {{ $labels.pod }} has not come up.",
        log_signatures=("startup_hang", "engine_init_failed", "tgi_shard_failed"),
        identity=("engine",),
        condition=sg.Custom(sg.startup_hang_exprs),
        panel=sg.Panel("short", main=(sg.UPSTREAM,), context_title="Start-up hang log signatures",
                       up_is_healthy=True),
        fixture=sg.startup_fixture,
        runbook=sg.Runbook(
            "The engine has not come up within 10 minutes of starting (or logged a known start-up hang "
            "signature): model download or load stuck, shards waiting for each other, not enough GPU memory. "
            "Starting means: it never answered since the sidecar started (`llm_upstream_ever_up` 0), or its process "
            "(host collector, `llm_host_process_start_time_seconds`) has run 10 minutes without answering. An "
            "engine stopped or restarted after it was up is not hanging at start-up: LLMEngineDown covers it.",
            "{fleet}: `llm_upstream_up` has been 0 since the pod started; the engine log shows where start-up "
            "stopped."),
        plan=sg.Plan(("restart_pod",), "llm_upstream_up", "up"),
    ),
    Bottleneck(
        "cuda_oom", "LLMCUDAOutOfMemory", "critical", "engine", "log",
        "CUDA out-of-memory log signature", "0s", _m(),
        "The engine ran out of GPU memory.",
        "{{ $labels.pod }} logged CUDA out of memory ({{ $value }} new events).",
        log_signatures=("cuda_oom", "kv_cache_insufficient", "no_cache_blocks"),
        runbook=sg.Runbook(
            "The engine logged CUDA out of memory: activations or the KV cache did not fit next to the weights.",
            "{instance}: the log-events panel (`llm_log_events_total`) shows the signature; {gpus}: framebuffer "
            "used ratio (`gpu:DCGM_FI_DEV_FB_USED:ratio`) near 1."),
        plan=sg.Plan(("kv_memory_down", "batched_tokens_down", "max_model_len_down"), "llm_log_events_total",
                     "down"),
    ),
    Bottleneck(
        "nccl_error", "LLMNCCLError", "critical", "engine", "log",
        "NCCL error or watchdog-timeout log signature", "0s", _m(),
        "Collective communication between GPUs failed.",
        "{{ $labels.pod }} logged NCCL errors ({{ $value }} new events).",
        log_signatures=("nccl_socket_error", "nccl_ib_error", "nccl_remote_error", "nccl_watchdog_timeout",
                        "sglang_watchdog_timeout"),
        manual="Drain the node if the error repeats after a restart.",
        runbook=sg.Runbook(
            "Collective communication between the GPUs of one replica failed (NCCL error or watchdog timeout): a "
            "tensor-parallel replica cannot work until it restarts.",
            "{instance}: the log-events panel (`llm_log_events_total`) shows the NCCL signature; the engine "
            "usually stalls or goes down right after."),
        plan=sg.Plan(("restart_pod",), "llm_log_events_total", "down"),
    ),
    Bottleneck(
        "gpu_memory_pressure", "GPUMemoryPressure", "warning", "gpu", "metric",
        "framebuffer free < 1 GiB", "10m",
        _m(fb_free_mib_below=Threshold(1024, "MiB", "free framebuffer below which allocations fail")),
        "A GPU is almost out of framebuffer memory.",
        "GPU {{ $labels.gpu }} on {{ $labels.Hostname }}{{ $labels.hostname }} has {{ $value }} MiB free.",
        manual="Lower the engine's memory fraction or find the co-tenant process using the GPU.",
        identity=_GPU_ID,
        condition=sg.Condition(sg.Term(sg.raw("DCGM_FI_DEV_FB_FREE", "GPU {{gpu}} {{pod}}"), "<",
                                       "fb_free_mib_below")),
        panel=sg.Panel("mbytes", needs="gpu"),
        fixture=sg.fb_free_fixture,
        runbook=sg.Runbook(
            "A GPU has less than 1 GiB of framebuffer free: the next allocation (a larger batch, a CUDA graph) "
            "fails.",
            "{gpus}: framebuffer free (`DCGM_FI_DEV_FB_FREE`) and used ratio (`gpu:DCGM_FI_DEV_FB_USED:ratio`) "
            "per GPU; look for a second process on the GPU."),
    ),
    Bottleneck(
        "gpu_throttling", "GPUThrottling", "warning", "gpu", "metric",
        "thermal or power clock-event reasons set", "10m", _m(),
        "A GPU is throttling its clocks for thermal or power reasons.",
        "GPU {{ $labels.gpu }} on {{ $labels.Hostname }}{{ $labels.hostname }} throttles "
        "(reasons bitmask {{ $value }}).",
        manual="Check cooling and the power cap of the node.",
        identity=_GPU_ID,
        condition=sg.Custom(sg.throttle_exprs),
        panel=sg.Panel("short", main=(sg.Series("throttle", sg.CLOCK_REASONS, "GPU {{gpu}} {{pod}}"),),
                       needs="gpu"),
        fixture=sg.throttle_fixture,
        runbook=sg.Runbook(
            "A GPU lowers its clocks for thermal or power reasons: everything on it runs slower.",
            "{gpus}: clock-event reasons (`DCGM_FI_DEV_CLOCKS_EVENT_REASONS`), SM clock, temperature and power "
            "per GPU."),
    ),
    Bottleneck(
        "gpu_xid_error", "GPUXidError", "critical", "gpu", "metric+log",
        "Xid count increased (NVML events or kernel log)", "0s", _m(),
        "A GPU reported an Xid error.",
        "GPU {{ $labels.gpu }} on {{ $labels.Hostname }}{{ $labels.hostname }} reported Xid {{ $labels.xid }}.",
        inhibits=PERFORMANCE_IDS,
        log_signatures=("nvidia_xid",),
        manual="Fatal Xids (48, 63, 64, 74, 79, 92, 94, 95, 119, ...): drain the node and reset the GPU. "
               "Application Xids (13, 31, 43): restart the engine.",
        identity=(*_GPU_ID, "xid"),
        condition=sg.Custom(sg.xid_exprs, own_logs=True),
        panel=sg.Panel("short", main=(sg.XID,), needs="gpu"),
        fixture=sg.xid_fixture,
        runbook=sg.Runbook(
            "A GPU reported an Xid error. Fatal Xids (48, 63, 64, 74, 79, 92, 94, 95, 119, ...) mean the GPU needs "
            "a reset; application Xids (13, 31, 43) mean the engine made the GPU fault. Severity follows the Xid: "
            "critical for fatal ones, warning for application ones.",
            "{gpus}: Xid counts (`DCGM_EXP_XID_ERRORS_COUNT`, kernel-log `nvidia_xid` events) per GPU and Xid."),
    ),
    Bottleneck(
        "gpu_ecc_error", "GPUECCUncorrectable", "critical", "gpu", "metric+log",
        "uncorrectable ECC or remapped-row count increased", "0s", _m(),
        "A GPU reported uncorrectable memory errors.",
        "GPU {{ $labels.gpu }} on {{ $labels.Hostname }}{{ $labels.hostname }}: {{ $value }} new "
        "uncorrectable ECC errors or remapped rows.",
        inhibits=PERFORMANCE_IDS,
        log_signatures=("ecc_uncorrectable",),
        manual="Drain the node and have the GPU checked.",
        identity=_GPU_ID,
        condition=sg.Condition(sg.Term(sg.ECC_DBE, ">", 0), either=(sg.Term(sg.REMAPPED, ">", 0),)),
        panel=sg.Panel("short", main=(sg.ECC_DBE, sg.REMAPPED), needs="gpu"),
        fixture=sg.ecc_fixture,
        runbook=sg.Runbook(
            "A GPU reported uncorrectable memory errors or remapped rows: its memory is failing.",
            "{gpus}: `DCGM_FI_DEV_ECC_DBE_VOL_TOTAL` and `DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS` per GPU."),
    ),
    Bottleneck(
        "host_memory_pressure", "HostMemoryPressure", "warning", "host", "metric",
        "available < 10% of host memory, or container usage > 90% of its limit", "5m",
        _m(available_ratio_below=Threshold(0.1, "ratio", "host memory available below this share"),
           cgroup_usage_ratio_above=Threshold(0.9, "ratio", "container memory usage above this share of its limit")),
        "The host or the container is almost out of memory.",
        "{{ $labels.pod }}: memory pressure at {{ $value | humanizePercentage }}.",
        manual="Raise the container memory limit; lower CPU offload or swap space of the engine.",
        condition=sg.Condition(sg.Term(sg.HOST_MEM, ">", "available_ratio_below"),
                               either=(sg.Term(sg.CGROUP_MEM, ">", "cgroup_usage_ratio_above"),)),
        panel=sg.Panel("percentunit", context=(sg.CGROUP_MEM,), context_title="Container memory / limit",
                       context_unit="percentunit", context_threshold="cgroup_usage_ratio_above"),
        fixture=sg.host_memory_fixture,
        runbook=sg.Runbook(
            "The host has less than {available_ratio_below:.0%} of its memory available, or the container uses "
            "more than {cgroup_usage_ratio_above:.0%} of its limit: the kernel will soon kill a process.",
            "{instance}: host memory available vs total and container memory usage vs limit."),
    ),
    Bottleneck(
        "host_oom_kill", "HostOOMKill", "critical", "host", "log",
        "kernel OOM-kill log signature", "0s", _m(),
        "The kernel killed a process for lack of memory.",
        "{{ $labels.pod }}: the kernel OOM killer fired ({{ $value }} new events).",
        log_signatures=("oom_kill",),
        manual="Raise the memory limit of the pod.",
        runbook=sg.Runbook(
            "The kernel's OOM killer fired on the node.",
            "{instance}: the log-events panel shows the `oom_kill` signature; memory was near its limit before."),
    ),
    Bottleneck(
        "host_cpu_saturation", "HostCPUSaturation", "warning", "host", "metric",
        "host CPU > 90%", "10m",
        _m(cpu_ratio_above=Threshold(0.9, "ratio", "host CPU utilization above which the scheduler is CPU-bound")),
        "The host CPU is saturated; the engine's scheduler is CPU-bound.",
        "{{ $labels.pod }}: host CPU at {{ $value | humanizePercentage }}.",
        manual="Raise the CPU request and limit of the inference pod.",
        condition=sg.Condition(sg.Term(sg.raw("llm_host_cpu_utilization_ratio", "host CPU {{pod}}"), ">",
                                       "cpu_ratio_above")),
        panel=sg.Panel("percentunit"),
        fixture=sg.host_cpu_fixture,
        runbook=sg.Runbook(
            "The host CPU is above {cpu_ratio_above:.0%}: the engine's scheduler and tokenizer are CPU-bound and "
            "starve the GPUs.",
            "{instance}: host CPU utilization (`llm_host_cpu_utilization_ratio`) and the engine process's CPU."),
    ),
    Bottleneck(
        "host_soft_lockup", "HostSoftLockup", "critical", "host", "log",
        "soft-lockup or hung-task log signature", "0s", _m(),
        "The kernel reported a soft lockup or a hung task.",
        "{{ $labels.pod }}: kernel soft lockup or hung task ({{ $value }} new events).",
        log_signatures=("soft_lockup", "hard_lockup", "hung_task"),
        manual="Drain the node.",
        runbook=sg.Runbook(
            "The kernel reported a soft lockup or a hung task: the node is unhealthy.",
            "{instance}: the log-events panel shows `soft_lockup` / `hung_task`."),
    ),
    Bottleneck(
        "exporter_down", "OptiInfraExporterDown", "warning", "engine", "metric",
        "the sidecar target is down or absent", "5m", _m(),
        "The OptiInfra sidecar is not being scraped.",
        "The OptiInfra sidecar {{ $labels.instance }} is down.",
        manual="Check the sidecar container's logs and the PodMonitor.",
        condition=sg.Custom(sg.exporter_down_exprs),
        panel=sg.Panel("short", main=(sg.Series("sidecar_up", "up", "{{instance}}"),), up_is_healthy=True),
        fixture=sg.exporter_down_fixture,
        runbook=sg.Runbook(
            "Prometheus cannot scrape the OptiInfra sidecar (target down), or no sidecar target exists at all: "
            "every other alert of the pod is blind.",
            "{fleet}: the sidecar targets; Prometheus' targets page shows the scrape error."),
    ),
)

SLO_BURN = "slo_burn"
SLO_ALERTS: tuple[str, str] = ("LLMSLOBurnRateFast", "LLMSLOBurnRateSlow")


def by_id(catalogue: tuple[Bottleneck, ...] = BOTTLENECKS) -> dict[str, Bottleneck]:
    return {b.id: b for b in catalogue}


def get(bottleneck_id: str) -> Bottleneck:
    try:
        return by_id()[bottleneck_id]
    except KeyError:
        known = ", ".join(sorted(by_id()))
        raise KeyError(f"unknown bottleneck {bottleneck_id!r}; known: {known}") from None


def inhibition_pairs() -> list[tuple[Bottleneck, Bottleneck]]:
    """(source, target) pairs: source firing silences target on the same pod."""
    table = by_id()
    return [(b, table[t]) for b in BOTTLENECKS for t in b.inhibits]
