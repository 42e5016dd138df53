"""The bottleneck taxonomy, defined once (reference: docs/taxonomy.md, generated from it).

This catalogue is the single source for the alerting rules and their promtool tests (``rules/``), the
runbooks, the dashboards' bottleneck panels (``grafana/``), the Alertmanager inhibition rules and the
receiver's planner (``alertmanager/``). It holds what a bottleneck *is*; how its signal is written in PromQL
belongs to the rules generator, and how an abstract action becomes an engine flag belongs to the planner.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

Severity = Literal["critical", "warning", "info"]
Component = Literal["engine", "gpu", "host", "slo"]
SignalKind = Literal["metric", "log", "metric+log"]

RUNBOOK_BASE_URL = "https://github.com/optiinfra/optiinfra/blob/main/docs/runbooks"

#: Abstract plan actions. The planner maps each to an engine's real flag (or to an ops action).
ActionId = Literal[
    "kv_memory_up",
    "kv_cache_dtype_fp8",
    "enable_prefix_caching",
    "max_num_seqs_down",
    "max_num_seqs_up",
    "batched_tokens_down",
    "batched_tokens_up",
    "prefill_chunk_up",
    "prefill_chunk_down",
    "weight_quantization_fp8",
    "tensor_parallel_up",
    "tensor_parallel_down",
    "speculative_decoding",
    "cpu_kv_offload",
    "lpm_schedule_policy",
    "kv_memory_down",
    "max_model_len_down",
    "scale_out",
    "consolidate_replicas",
    "restart_pod",
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
    actions: tuple[ActionId, ...] = ()
    """What the planner may propose, most preferred first. Empty: a diagnosis record, no plan."""
    inhibits: tuple[str, ...] = ()
    """Bottleneck ids this one inhibits (same pod; same model where both carry it)."""
    log_signatures: tuple[str, ...] = ()
    """Log-signature names (``llm_log_events_total{signature}``) that also raise this bottleneck."""
    manual: str = ""
    """What a human does when there is no safe automatic action."""
    identity: tuple[str, ...] = field(default=())
    """Identity labels the alert keeps (beyond Prometheus target labels namespace/pod/instance)."""

    @property
    def runbook_url(self) -> str:
        return f"{RUNBOOK_BASE_URL}/{self.id}.md"

    @property
    def plannable(self) -> bool:
        return bool(self.actions)


def _t(value: float, unit: str, description: str) -> Threshold:
    return Threshold(value, unit, description)


def _m(**kw: Threshold) -> Mapping[str, Threshold]:
    return MappingProxyType(kw)


PERFORMANCE_IDS: tuple[str, ...] = (
    "kv_cache_pressure",
    "preemption_storm",
    "queue_buildup",
    "prefill_bound",
    "decode_bound",
    "low_throughput",
    "gpu_underutilized",
    "cache_inefficiency",
)

_ENGINE_ID = ("engine", "model")
_GPU_ID = ("gpu", "UUID", "uuid", "Hostname", "hostname")

BOTTLENECKS: tuple[Bottleneck, ...] = (
    Bottleneck(
        "kv_cache_pressure", "LLMKVCachePressure", "warning", "engine", "metric",
        "max KV-cache usage >= 0.90 and (requests waiting > 0 or preemptions > 0)", "5m",
        _m(kv_usage=_t(0.9, "ratio", "KV-cache usage (max over ranks) at or above which the cache is full"),
           min_waiting=_t(0, "requests", "requests waiting above which the full cache is hurting")),
        "The KV cache is full and requests are queuing or being preempted.",
        "KV cache of {{ $labels.model }} on {{ $labels.pod }} is {{ $value | humanizePercentage }} full "
        "while requests wait or are preempted.",
        actions=("kv_memory_up", "kv_cache_dtype_fp8", "enable_prefix_caching", "max_num_seqs_down",
                 "weight_quantization_fp8", "scale_out"),
        inhibits=("queue_buildup",),
        identity=_ENGINE_ID,
    ),
    Bottleneck(
        "preemption_storm", "LLMPreemptionStorm", "warning", "engine", "metric",
        "preemptions (SGLang: retractions) > 0.1/s with traffic", "5m",
        _m(preemptions_per_second=_t(0.1, "1/s", "preemption rate above which requests are recomputed")),
        "Requests are being preempted and recomputed at a high rate.",
        "{{ $labels.model }} on {{ $labels.pod }} preempts {{ $value | humanize }} requests/s.",
        actions=("max_num_seqs_down", "batched_tokens_down", "kv_memory_up"),
        identity=_ENGINE_ID,
    ),
    Bottleneck(
        "queue_buildup", "LLMQueueBuildup", "warning", "engine", "metric",
        "requests waiting > 0 and queue-time p95 > 1s while KV usage < 0.8", "5m",
        _m(queue_p95_seconds=_t(1, "s", "p95 queue time above which admission is the bottleneck"),
           kv_usage_below=_t(0.8, "ratio", "KV usage below which the queue is admission-limited")),
        "Requests are queuing although the KV cache has room: admission limits are too low.",
        "{{ $labels.model }} on {{ $labels.pod }}: p95 queue time {{ $value | humanizeDuration }} "
        "with KV headroom.",
        actions=("max_num_seqs_up", "batched_tokens_up", "scale_out"),
        identity=_ENGINE_ID,
    ),
    Bottleneck(
        "prefill_bound", "LLMHighTimeToFirstToken", "warning", "engine", "metric",
        "TTFT p95 > 2s while queue-time p95 is low (< 0.5s)", "10m",
        _m(ttft_p95_seconds=_t(2, "s", "p95 time to first token above which prefill is slow"),
           queue_p95_below_seconds=_t(0.5, "s", "p95 queue time below which the queue is not the cause")),
        "Time to first token is high and the queue is not the cause: prefill is the bottleneck.",
        "{{ $labels.model }} on {{ $labels.pod }}: p95 TTFT {{ $value | humanizeDuration }}.",
        actions=("prefill_chunk_up", "enable_prefix_caching"),
        identity=_ENGINE_ID,
    ),
    Bottleneck(
        "decode_bound", "LLMHighInterTokenLatency", "warning", "engine", "metric",
        "inter-token latency p95 > 0.1s", "10m",
        _m(itl_p95_seconds=_t(0.1, "s", "p95 inter-token latency above which decode is slow")),
        "Inter-token latency is high: decode is the bottleneck.",
        "{{ $labels.model }} on {{ $labels.pod }}: p95 inter-token latency {{ $value | humanizeDuration }}.",
        actions=("prefill_chunk_down", "max_num_seqs_down", "weight_quantization_fp8",
                 "speculative_decoding", "tensor_parallel_up"),
        identity=_ENGINE_ID,
    ),
    Bottleneck(
        "low_throughput", "LLMLowThroughput", "warning", "engine", "metric",
        "requests waiting while GPU utilization < 50%", "15m",
        _m(gpu_util_below=_t(0.5, "ratio", "GPU utilization below which waiting requests mean waste")),
        "Requests wait while the GPUs are mostly idle.",
        "{{ $labels.pod }}: requests wait at {{ $value | humanizePercentage }} GPU utilization.",
        actions=("max_num_seqs_up", "batched_tokens_up"),
        identity=_ENGINE_ID,
    ),
    Bottleneck(
        "gpu_underutilized", "LLMGPUUnderutilized", "info", "engine", "metric",
        "GPU utilization < 30% and no queue", "30m",
        _m(gpu_util_below=_t(0.3, "ratio", "GPU utilization below which the replica is oversized")),
        "The GPUs of this replica are mostly idle and nothing is queued.",
        "{{ $labels.pod }}: GPU utilization {{ $value | humanizePercentage }} with an empty queue.",
        actions=("consolidate_replicas", "tensor_parallel_down"),
        identity=_ENGINE_ID,
    ),
    Bottleneck(
        "cache_inefficiency", "LLMPrefixCacheIneffective", "info", "engine", "metric",
        "prefix-cache hit ratio < 0.1 with steady prompt traffic", "30m",
        _m(hit_ratio_below=_t(0.1, "ratio", "prefix-cache hit ratio below which the cache is not helping"),
           min_prompt_tokens_per_second=_t(10, "1/s", "prompt traffic needed before judging the cache")),
        "The prefix cache rarely hits.",
        "{{ $labels.model }} on {{ $labels.pod }}: prefix-cache hit ratio {{ $value | humanizePercentage }}.",
        actions=("cpu_kv_offload", "lpm_schedule_policy"),
        identity=_ENGINE_ID,
    ),
    Bottleneck(
        "request_errors", "LLMHighErrorRate", "critical", "engine", "metric",
        "error share of finished requests > 5% with traffic", "5m",
        _m(error_share=_t(0.05, "ratio", "share of finished requests that errored")),
        "A high share of requests fail.",
        "{{ $labels.model }} on {{ $labels.pod }}: {{ $value | humanizePercentage }} of requests fail.",
        manual="Read the engine log around the first errors; check recent deploys and client payloads.",
        identity=_ENGINE_ID,
    ),
    Bottleneck(
        "engine_stalled", "LLMEngineStalled", "critical", "engine", "metric",
        "requests running > 0 and no generated tokens", "2m",
        _m(),
        "The engine holds running requests but generates no tokens.",
        "{{ $labels.model }} on {{ $labels.pod }} has {{ $value }} running requests and generates nothing.",
        actions=("restart_pod",),
        inhibits=PERFORMANCE_IDS,
        identity=_ENGINE_ID,
    ),
    Bottleneck(
        "engine_down", "LLMEngineDown", "critical", "engine", "metric",
        "sidecar up and llm_upstream_up == 0", "2m",
        _m(),
        "The sidecar cannot scrape its inference engine.",
        "The engine behind {{ $labels.pod }} does not answer its metrics endpoint.",
        actions=("restart_pod",),
        inhibits=PERFORMANCE_IDS,
        identity=("engine",),
    ),
    Bottleneck(
        "engine_startup_hang", "LLMEngineStartupHang", "critical", "engine", "metric+log",
        "upstream never up for 10m after the sidecar started, or the start-up hang log signature", "0s",
        # The 10m is the window of the signal (startup_seconds); a `for` on top would make it 20m.
        _m(startup_seconds=_t(600, "s", "time after sidecar start by which the engine must be up")),
        "The inference engine has not finished starting.",
        "The engine behind {{ $labels.pod }} has not come up.",
        actions=("restart_pod",),
        log_signatures=("startup_hang", "engine_init_failed", "tgi_shard_failed"),
        identity=("engine",),
    ),
    Bottleneck(
        "cuda_oom", "LLMCUDAOutOfMemory", "critical", "engine", "log",
        "CUDA out-of-memory log signature", "0s",
        _m(),
        "The engine ran out of GPU memory.",
        "{{ $labels.pod }} logged CUDA out of memory ({{ $value }} new events).",
        actions=("kv_memory_down", "batched_tokens_down", "max_model_len_down"),
        log_signatures=("cuda_oom", "kv_cache_insufficient", "no_cache_blocks"),
        identity=(),
    ),
    Bottleneck(
        "nccl_error", "LLMNCCLError", "critical", "engine", "log",
        "NCCL error or watchdog-timeout log signature", "0s",
        _m(),
        "Collective communication between GPUs failed.",
        "{{ $labels.pod }} logged NCCL errors ({{ $value }} new events).",
        actions=("restart_pod",),
        log_signatures=("nccl_socket_error", "nccl_ib_error", "nccl_remote_error", "nccl_watchdog_timeout",
                        "sglang_watchdog_timeout"),
        manual="Drain the node if the error repeats after a restart.",
        identity=(),
    ),
    Bottleneck(
        "gpu_memory_pressure", "GPUMemoryPressure", "warning", "gpu", "metric",
        "framebuffer free < 1 GiB", "10m",
        _m(fb_free_mib_below=_t(1024, "MiB", "free framebuffer below which allocations fail")),
        "A GPU is almost out of framebuffer memory.",
        "GPU {{ $labels.gpu }} on {{ $labels.Hostname }}{{ $labels.hostname }} has {{ $value }} MiB free.",
        manual="Lower the engine's memory fraction or find the co-tenant process using the GPU.",
        identity=_GPU_ID,
    ),
    Bottleneck(
        "gpu_throttling", "GPUThrottling", "warning", "gpu", "metric",
        "thermal or power clock-event reasons set", "10m",
        _m(),
        "A GPU is throttling its clocks for thermal or power reasons.",
        "GPU {{ $labels.gpu }} on {{ $labels.Hostname }}{{ $labels.hostname }} throttles "
        "(reasons bitmask {{ $value }}).",
        manual="Check cooling and the power cap of the node.",
        identity=_GPU_ID,
    ),
    Bottleneck(
        "gpu_xid_error", "GPUXidError", "critical", "gpu", "metric+log",
        "Xid count increased (NVML events or kernel log)", "0s",
        _m(),
        "A GPU reported an Xid error.",
        "GPU {{ $labels.gpu }} on {{ $labels.Hostname }}{{ $labels.hostname }} reported Xid {{ $labels.xid }}.",
        inhibits=PERFORMANCE_IDS,
        log_signatures=("nvidia_xid",),
        manual="Fatal Xids (48, 63, 64, 74, 79, 92, 94, 95, 119, ...): drain the node and reset the GPU. "
               "Application Xids (13, 31, 43): restart the engine.",
        identity=(*_GPU_ID, "xid"),
    ),
    Bottleneck(
        "gpu_ecc_error", "GPUECCUncorrectable", "critical", "gpu", "metric+log",
        "uncorrectable ECC or remapped-row count increased", "0s",
        _m(),
        "A GPU reported uncorrectable memory errors.",
        "GPU {{ $labels.gpu }} on {{ $labels.Hostname }}{{ $labels.hostname }}: {{ $value }} new "
        "uncorrectable ECC errors or remapped rows.",
        inhibits=PERFORMANCE_IDS,
        log_signatures=("ecc_uncorrectable",),
        manual="Drain the node and have the GPU checked.",
        identity=_GPU_ID,
    ),
    Bottleneck(
        "host_memory_pressure", "HostMemoryPressure", "warning", "host", "metric",
        "available < 10% of host memory, or container usage > 90% of its limit", "5m",
        _m(available_ratio_below=_t(0.1, "ratio", "host memory available below this share"),
           cgroup_usage_ratio_above=_t(0.9, "ratio", "container memory usage above this share of its limit")),
        "The host or the container is almost out of memory.",
        "{{ $labels.pod }}: memory pressure at {{ $value | humanizePercentage }}.",
        manual="Raise the container memory limit; lower CPU offload or swap space of the engine.",
        identity=(),
    ),
    Bottleneck(
        "host_oom_kill", "HostOOMKill", "critical", "host", "log",
        "kernel OOM-kill log signature", "0s",
        _m(),
        "The kernel killed a process for lack of memory.",
        "{{ $labels.pod }}: the kernel OOM killer fired ({{ $value }} new events).",
        log_signatures=("oom_kill",),
        manual="Raise the memory limit of the pod.",
        identity=(),
    ),
    Bottleneck(
        "host_cpu_saturation", "HostCPUSaturation", "warning", "host", "metric",
        "host CPU > 90%", "10m",
        _m(cpu_ratio_above=_t(0.9, "ratio", "host CPU utilization above which the scheduler is CPU-bound")),
        "The host CPU is saturated; the engine's scheduler is CPU-bound.",
        "{{ $labels.pod }}: host CPU at {{ $value | humanizePercentage }}.",
        manual="Raise the CPU request and limit of the inference pod.",
        identity=(),
    ),
    Bottleneck(
        "host_soft_lockup", "HostSoftLockup", "critical", "host", "log",
        "soft-lockup or hung-task log signature", "0s",
        _m(),
        "The kernel reported a soft lockup or a hung task.",
        "{{ $labels.pod }}: kernel soft lockup or hung task ({{ $value }} new events).",
        log_signatures=("soft_lockup", "hard_lockup", "hung_task"),
        manual="Drain the node.",
        identity=(),
    ),
    Bottleneck(
        "exporter_down", "OptiInfraExporterDown", "warning", "engine", "metric",
        "the sidecar target is down or absent", "5m",
        _m(),
        "The OptiInfra sidecar is not being scraped.",
        "The OptiInfra sidecar {{ $labels.instance }} is down.",
        manual="Check the sidecar container's logs and the PodMonitor.",
        identity=(),
    ),
)

#: Application Xids (the engine's fault; restarting the engine helps): GPUXidError at warning. Every other
#: Xid (fatal: 48, 63, 64, 74, 79, 92, 94, 95, 119, ...) is critical.
APPLICATION_XIDS: tuple[str, ...] = ("13", "31", "43")

SLO_BURN = "slo_burn"
SLO_ALERTS: tuple[str, str] = ("LLMSLOBurnRateFast", "LLMSLOBurnRateSlow")


def by_id() -> dict[str, Bottleneck]:
    return {b.id: b for b in BOTTLENECKS}


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
