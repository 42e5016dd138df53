"""Runbooks (``docs/runbooks/<bottleneck>.md``), generated from the taxonomy plus the prose below so that
every ``runbook_url`` target exists, and the rules reference (``docs/rules.md``):
``optiinfra generate``. Tests keep both current.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from optiinfra import engines
from optiinfra import taxonomy as tx
from optiinfra.config import SLI_HISTOGRAMS, load_config
from optiinfra.metrics import NATIVE_BUCKETS
from optiinfra.rules.recording import RECORDING_RULES

FLEET = "OptiInfra / Fleet overview"
INSTANCE = "OptiInfra / Instance"
BOTTLENECKS = "OptiInfra / Bottlenecks"
SLOS = "OptiInfra / SLOs"
GPUS = "OptiInfra / GPUs"


@dataclass(frozen=True)
class Prose:
    meaning: str
    """What is going on when it fires, and why it matters."""
    confirm: str
    """How to confirm it on the dashboards (names the dashboards and the series behind the panels)."""


#: What each abstract plan action does; the runbook adds the flags it turns per engine (``optiinfra.engines``).
ACTION_TEXT: Mapping[str, str] = MappingProxyType({
    "kv_memory_up": "give the KV cache more GPU memory, within the GPU's free headroom",
    "kv_cache_dtype_fp8": "store the KV cache in fp8: about twice the tokens per GB",
    "enable_prefix_caching": "turn prefix caching on where it is off",
    "max_num_seqs_down": "admit fewer concurrent sequences",
    "max_num_seqs_up": "admit more concurrent sequences",
    "batched_tokens_down": "lower the per-step token budget",
    "batched_tokens_up": "raise the per-step token budget",
    "prefill_chunk_up": "larger prefill chunks",
    "prefill_chunk_down": "smaller prefill chunks, so long prompts interrupt decode less",
    "weight_quantization_fp8": "quantize the weights to fp8; high risk: quality must be re-validated",
    "tensor_parallel_up": "shard the model over more GPUs",
    "tensor_parallel_down": "shard the model over fewer GPUs",
    "speculative_decoding": "turn on speculative decoding",
    "cpu_kv_offload": "offload KV cache to CPU memory, so evicted prefixes can be reused",
    "lpm_schedule_policy": "schedule by longest prefix match",
    "kv_memory_down": "give the KV cache less GPU memory to leave room for activations",
    "max_model_len_down": "lower the maximum context length",
    "scale_out": "add replicas",
    "consolidate_replicas": "remove replicas and move their traffic to the others",
    "restart_pod": "restart the pod",
})


def action_text(action: tx.ActionId) -> str:
    """What ``action`` does and, from the engine vocabulary, the flags it turns per engine."""
    flags = ", ".join(f"{v.title} " + " then ".join(f"`{f}`" for f in dict.fromkeys(k.setting.flag for k in found))
                      for v in engines.VOCABULARY.values() if (found := v.candidates(action)))
    return ACTION_TEXT[action] + (f" ({flags})" if flags else "")


_Q = "`pod_model:{}:p95_rate5m`"

RUNBOOK_TEXT: Mapping[str, Prose] = MappingProxyType({
    "kv_cache_pressure": Prose(
        "The engine's KV cache is full and that hurts: requests wait for cache space or running requests are "
        "preempted and recomputed. A full cache alone is normal for vLLM (it pre-allocates); the alert needs "
        "waiting requests or preemptions too.",
        f"{INSTANCE}: KV-cache usage (`pod_model:llm_kv_cache_usage_ratio:max`, max over ranks) near 1, with "
        f"waiting requests (`pod_model:llm_requests_waiting:sum`) or preemptions "
        f"(`pod_model:llm_preemptions:rate5m`) above 0 at the same time. {BOTTLENECKS} shows it for the fleet."),
    "preemption_storm": Prose(
        "Requests are preempted (SGLang: retracted) many times a second: the engine admitted more than its KV "
        "cache holds and throws away work to recompute it later. Latency and throughput both suffer.",
        f"{INSTANCE}: preemptions per second (`pod_model:llm_preemptions:rate5m`) against finished requests "
        f"(`pod_model:llm_requests_finished:rate5m`); KV usage is usually pinned near 1."),
    "queue_buildup": Prose(
        "Requests queue for a long time although the KV cache has room: admission limits (max sequences, "
        "batched tokens) are lower than the hardware can take.",
        f"{INSTANCE}: queue-time p95 ({_Q.format('llm_request_queue_time_seconds')}) above 1s, waiting "
        "requests above 0 and KV usage below 0.8."),
    "prefill_bound": Prose(
        "Time to first token is high while requests do not wait in the queue: prefill (processing the prompt) "
        "is the slow part, typically long prompts in small chunks or no prefix reuse.",
        f"{INSTANCE}: TTFT p95 ({_Q.format('llm_time_to_first_token_seconds')}) above 2s while queue-time p95 "
        f"stays below 0.5s. {SLOS} shows whether a TTFT SLO burns."),
    "decode_bound": Prose(
        "The time between generated tokens is high: decode steps are slow, usually because the batch is too "
        "large, prefill chunks interrupt decode, or the model is too big for its GPUs.",
        f"{INSTANCE}: inter-token latency p95 ({_Q.format('llm_inter_token_latency_seconds')}) above 0.1s; "
        f"compare with generated tokens per second (`pod_model:llm_generation_tokens:rate5m`)."),
    "low_throughput": Prose(
        "Requests wait while the GPUs are mostly idle: the engine does not batch enough work (batch limits too "
        "low, CPU-bound scheduler, CUDA graphs off).",
        f"{INSTANCE} and {GPUS}: waiting requests above 0 while the pod's GPU utilization "
        "(`pod:DCGM_FI_DEV_GPU_UTIL:avg_ratio`) stays under 50%. Check host CPU on the instance dashboard."),
    "gpu_underutilized": Prose(
        "The replica's GPUs are mostly idle and nothing waits: the replica is larger than its traffic needs.",
        f"{FLEET}: request rate per model (`model:llm_requests_finished:rate5m`) against replicas; {GPUS}: "
        "`pod:DCGM_FI_DEV_GPU_UTIL:avg_ratio` below 30% for a long time."),
    "cache_inefficiency": Prose(
        "The prefix cache rarely hits although prompts keep coming: requests that share a prefix land on "
        "different replicas, or the cache evicts prefixes before they are reused.",
        f"{INSTANCE}: prefix-cache hit ratio "
        "(`pod_model:llm_prefix_cache_hit_tokens_per_queried_tokens:ratio_rate5m`) below 0.1 with prompt tokens "
        "(`pod_model:llm_prompt_tokens:rate5m`) above 10/s."),
    "request_errors": Prose(
        "A high share of finished requests end in an error. No configuration change is proposed: errors need a "
        "diagnosis first.",
        f"{INSTANCE}: error share (`pod_model:llm_requests_errored_per_finished:ratio_rate5m`) above 5%; "
        f"{SLOS}: the availability SLO's burn rate."),
    "engine_stalled": Prose(
        "The engine holds running requests but generates no tokens: it hangs (deadlock, stuck collective, "
        "dead worker).",
        f"{INSTANCE}: running requests (`pod_model:llm_requests_running:sum`) above 0 while generated tokens "
        "per second are 0."),
    "engine_down": Prose(
        "The sidecar runs but cannot scrape its engine: the engine process died, hangs, or its metrics "
        "endpoint moved.",
        f"{FLEET}: the instance shows upstream down (`llm_upstream_up` 0) while the sidecar target is up; "
        f"the sidecar's own log says why the scrape failed."),
    "engine_startup_hang": Prose(
        "The engine has not come up within 10 minutes of the sidecar starting (or logged a known start-up hang "
        "signature): model download or load stuck, shards waiting for each other, not enough GPU memory.",
        f"{FLEET}: `llm_upstream_up` has been 0 since the pod started; the engine log shows where start-up "
        "stopped."),
    "cuda_oom": Prose(
        "The engine logged CUDA out of memory: activations or the KV cache did not fit next to the weights.",
        f"{INSTANCE}: the log-events panel (`llm_log_events_total`) shows the signature; {GPUS}: framebuffer "
        "used ratio (`gpu:DCGM_FI_DEV_FB_USED:ratio`) near 1."),
    "nccl_error": Prose(
        "Collective communication between the GPUs of one replica failed (NCCL error or watchdog timeout): a "
        "tensor-parallel replica cannot work until it restarts.",
        f"{INSTANCE}: the log-events panel (`llm_log_events_total`) shows the NCCL signature; the engine usually "
        "stalls or goes down right after."),
    "gpu_memory_pressure": Prose(
        "A GPU has less than 1 GiB of framebuffer free: the next allocation (a larger batch, a CUDA graph) "
        "fails.",
        f"{GPUS}: framebuffer free (`DCGM_FI_DEV_FB_FREE`) and used ratio (`gpu:DCGM_FI_DEV_FB_USED:ratio`) "
        "per GPU; look for a second process on the GPU."),
    "gpu_throttling": Prose(
        "A GPU lowers its clocks for thermal or power reasons: everything on it runs slower.",
        f"{GPUS}: clock-event reasons (`DCGM_FI_DEV_CLOCKS_EVENT_REASONS`), SM clock, temperature and power "
        "per GPU."),
    "gpu_xid_error": Prose(
        "A GPU reported an Xid error. Fatal Xids (48, 63, 64, 74, 79, 92, 94, 95, 119, ...) mean the GPU needs "
        "a reset; application Xids (13, 31, 43) mean the engine made the GPU fault. Severity follows the Xid: "
        "critical for fatal ones, warning for application ones.",
        f"{GPUS}: Xid counts (`DCGM_EXP_XID_ERRORS_COUNT`, kernel-log `nvidia_xid` events) per GPU and Xid."),
    "gpu_ecc_error": Prose(
        "A GPU reported uncorrectable memory errors or remapped rows: its memory is failing.",
        f"{GPUS}: `DCGM_FI_DEV_ECC_DBE_VOL_TOTAL` and `DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS` per GPU."),
    "host_memory_pressure": Prose(
        "The host has less than 10% of its memory available, or the container uses more than 90% of its "
        "limit: the kernel will soon kill a process.",
        f"{INSTANCE}: host memory available vs total and container memory usage vs limit."),
    "host_oom_kill": Prose(
        "The kernel's OOM killer fired on the node.",
        f"{INSTANCE}: the log-events panel shows the `oom_kill` signature; memory was near its limit before."),
    "host_cpu_saturation": Prose(
        "The host CPU is above 90%: the engine's scheduler and tokenizer are CPU-bound and starve the GPUs.",
        f"{INSTANCE}: host CPU utilization (`llm_host_cpu_utilization_ratio`) and the engine process's CPU."),
    "host_soft_lockup": Prose(
        "The kernel reported a soft lockup or a hung task: the node is unhealthy.",
        f"{INSTANCE}: the log-events panel shows `soft_lockup` / `hung_task`."),
    "exporter_down": Prose(
        "Prometheus cannot scrape the OptiInfra sidecar (target down), or no sidecar target exists at all: "
        "every other alert of the pod is blind.",
        f"{FLEET}: the sidecar targets; Prometheus' targets page shows the scrape error."),
    tx.SLO_BURN: Prose(
        "An SLO's error budget burns faster than it can last: `LLMSLOBurnRateFast` (critical) when 2% of a "
        "30-day budget goes in an hour (14.4x over 1h and 5m, or 6x over 6h and 30m), `LLMSLOBurnRateSlow` "
        "(warning) when 10% goes in a day or more (3x over 1d and 2h, or 1x over 3d and 6h). The `slo` label "
        "names the SLO; `namespace`, `pod`, `engine` and `model` the scope. When it fires for the scope of a "
        "plan in flight, the receiver rolls that plan back.",
        f"{SLOS}: the SLO's error ratio over each window (`slo:sli_error:ratio_rate<window>{{slo=\"...\"}}`) "
        "against its budget (`slo:error_budget:ratio`)."),
})


def _thresholds(b: tx.Bottleneck) -> list[str]:
    config = load_config(None)
    return [f"- `{name}` = {config.threshold(b.id, name):g} {t.unit}: {t.description}"
            for name, t in b.thresholds.items()]


def render(b: tx.Bottleneck) -> str:
    prose = RUNBOOK_TEXT[b.id]
    lines = [
        f"# {b.alert} (`{b.id}`)",
        "",
        "<!-- generated from optiinfra/taxonomy.py and rules/runbooks.py by "
        "`optiinfra generate`; do not edit -->",
        "",
        f"**Severity** {b.severity} · **component** {b.component} · **signal** {b.signal} · "
        f"**for** {b.for_}",
        "",
        f"> {b.summary}",
        "",
        "## What it means",
        "",
        prose.meaning,
        "",
        f"Fires when: {b.fires_when}.",
    ]
    if b.thresholds:
        lines += ["", f"Thresholds (override them in the rules config under `bottlenecks.{b.id}`):", "",
                  *_thresholds(b)]
    if b.log_signatures:
        lines += ["", "Log signatures (`llm_log_events_total{signature}`): "
                  + ", ".join(f"`{s}`" for s in b.log_signatures) + "."]
    lines += ["", "## How to confirm it", "", prose.confirm, ""]
    lines += ["## What the plan will do", ""]
    if b.actions:
        lines += ["The receiver proposes the first of these that applies to the engine, in this order:", ""]
        lines += [f"{i}. `{a}`: {action_text(a)}." for i, a in enumerate(b.actions, 1)]
    else:
        lines += ["Nothing: this alert is a diagnosis record; no automatic plan is proposed."]
    if b.inhibits:
        lines += ["", "While it fires it silences on the same pod: " + ", ".join(f"`{i}`" for i in b.inhibits) + "."]
    lines += ["", "## What to do by hand", "",
              b.manual or "If the plan does not help, or you run without the receiver, apply the first action "
              "above by hand and watch the panels named above.", ""]
    return "\n".join(lines)


def render_slo_burn() -> str:
    prose = RUNBOOK_TEXT[tx.SLO_BURN]
    return "\n".join([
        f"# {' / '.join(tx.SLO_ALERTS)} (`{tx.SLO_BURN}`)",
        "",
        "<!-- generated from optiinfra/taxonomy.py and rules/runbooks.py by "
        "`optiinfra generate`; do not edit -->",
        "",
        "**Severity** critical (fast) / warning (slow) · **component** slo",
        "",
        "> An SLO's error budget is burning too fast.",
        "",
        "## What it means",
        "",
        prose.meaning,
        "",
        "## How to confirm it",
        "",
        prose.confirm,
        "",
        "## What the plan will do",
        "",
        "No new plan. A plan in flight for the same pod/model is rolled back.",
        "",
        "## What to do by hand",
        "",
        "Find what changed in the scope (deploys, traffic shape, a plan just applied); look at the bottleneck "
        "alerts firing for the same pod on the OptiInfra / Bottlenecks dashboard.",
        "",
    ])


def runbooks() -> dict[str, str]:
    out = {f"{b.id}.md": render(b) for b in tx.BOTTLENECKS}
    out[f"{tx.SLO_BURN}.md"] = render_slo_burn()
    return out


EXAMPLE_CONFIG = """\
# optiinfra rules generate --slo-config slo.yaml --out rules/
selectors:
  series: 'namespace=~"llm-.*"'      # spliced into every series selector (default: empty, all series)
  sidecar_job: 'job="optiinfra"'     # the sidecar's scrape job, for OptiInfraExporterDown
identity_labels: [namespace, pod, instance]
min_request_rate: 0.05               # req/s below which a pod is idle: rate alerts and burn alerts stay quiet
bottlenecks:
  kv_cache_pressure:
    for: 10m
    thresholds: {kv_usage: 0.95}
  decode_bound:
    thresholds: {itl_p95_seconds: 0.2}
slos:
  - name: ttft-chat
    sli: ttft                        # ttft | inter_token | request_duration | availability
    threshold: 2.5                   # seconds; must be a native bucket boundary of every engine it applies to
    objective: 0.99                  # at least 0.9306
    engines: [vllm]
    model: "llama-.*"
  - name: availability
    sli: availability
    objective: 0.995
slo_fast_for: 2m
slo_slow_for: 15m
prometheus_rule:
  namespace: monitoring
  labels: {release: kube-prometheus-stack}
"""


def rules_reference() -> str:
    config = load_config(None)
    level_labels = {
        "pod_model": ", ".join((*config.identity_labels, "engine", "model")),
        "pod": ", ".join(config.identity_labels),
        "model": "engine, model",
        "gpu": "every GPU label, `hostname` and `uuid` lower-case (both spellings folded), identity labels",
    }
    out = [
        "# Prometheus rules",
        "",
        "<!-- generated from rules/ by `optiinfra generate`; do not edit -->",
        "",
        "`optiinfra rules generate [--slo-config FILE] [--profile production|demo] --out DIR [--namespace NS] "
        "[--rule-labels k=v ...]` writes `optiinfra-rules.yml` (recording, alerting and SLO groups), "
        "`optiinfra-prometheusrule.yaml` (the same groups as a prometheus-operator `PrometheusRule`; its labels "
        "must match your Prometheus CR's `ruleSelector`) and three promtool test files "
        "(`promtool test rules *.test.yml` in the output directory). `optiinfra rules check DIR` parses every "
        "expression, checks every series against the metric catalogue, every `le` against the engines' native "
        "buckets, the naming conventions, and runs `promtool check rules`. `rules/generated/` holds the output "
        "for the default config. `--profile demo` divides every `for` and range window by 60 (for Prometheus "
        "with `evaluation_interval: 1s`); nothing else changes, recording-rule names included.",
        "",
        "## The config",
        "",
        "One YAML file, validated (unknown keys are refused by name); JSON Schema: "
        "`optiinfra/config.schema.json`. Without a file the defaults below apply. Example:",
        "",
        "```yaml",
        EXAMPLE_CONFIG.rstrip(),
        "```",
        "",
        "A latency SLO counts the requests in the histogram bucket at its threshold, so the threshold must be a "
        "bucket boundary of every engine the SLO applies to (the generator names the nearest boundaries "
        "otherwise); the `le` matcher accepts both `1` and `1.0` spellings of whole numbers. Objectives below "
        "0.9306 are refused: the fast tier alerts at 14.4x the error budget, an error ratio above 1. The "
        "boundaries are each engine's current defaults; an engine run with other buckets (`vLLM "
        "custom_histogram_buckets`, SGLang `--bucket-*`, or SGLang 0.4.x, whose TTFT buckets were 0.001 to 30) "
        "exports no bucket at the threshold and its SLI stays empty, so pick a threshold it has.",
        "",
        "Default SLOs:",
        "",
        "| name | SLI | threshold | objective | engines |",
        "|---|---|---|---|---|",
        *(f"| `{s.name}` | {s.sli} | {'' if s.threshold is None else f'{s.threshold:g}s'} | {s.objective:g} | "
          f"{', '.join(s.applies_to())} |" for s in config.slos),
        "",
        "Native bucket boundaries (`optiinfra.metrics.NATIVE_BUCKETS`) of the SLI histograms:",
        "",
        *(f"- {engine} `{name}`: " + ", ".join(repr(b) for b in bounds)
          for engine, table in NATIVE_BUCKETS.items() for name, bounds in table.items()
          if name in SLI_HISTOGRAMS.values()),
        "",
        "## Recording rules",
        "",
        "Dashboards and alerts read the same series (`optiinfra.rules.recording.RECORDING_RULES`). Windows are 5m "
        "(5s in the demo profile; the names keep `rate5m`).",
        "",
        "| name | labels | unit | meaning |",
        "|---|---|---|---|",
        *(f"| `{r.name}` | {level_labels[r.level]} | {r.unit} | {r.help} |" for r in RECORDING_RULES.values()),
        "",
        "Per SLO (label `slo`, plus the `pod_model` labels): `slo:sli_error:ratio_rate<w>` for w in 5m, 30m, 1h, 2h, "
        "6h, 1d, 3d (bad events / all events), `slo:sli_requests:rate1h` and `rate1d` (the burn alerts' traffic "
        "guards), and `slo:objective:ratio`, `slo:error_budget:ratio` (label `slo` only).",
        "",
        "## Alert contract",
        "",
        "Every alert carries `bottleneck` (taxonomy id, or `slo_burn`), `severity` (critical, warning, info), "
        "`component` (engine, gpu, host, slo) and the identity labels of the series it fired on; annotations "
        "`summary`, `description`, `runbook_url` (`docs/runbooks/<bottleneck>.md`).",
        "",
        "- engine alerts read from recording rules: " + level_labels["pod_model"] + ";",
        "- `LLMEngineDown`, `LLMEngineStartupHang`: the sidecar target's labels (+ `job`) and `engine`;",
        "- GPU alerts: every GPU label as exported (`gpu`, `UUID` or `uuid`, `Hostname` or `hostname`, `device`, "
        "`modelName`, `pci_bus_id`) + target labels; `GPUXidError` also `xid` (critical for every Xid but the "
        "application ones " + ", ".join(tx.APPLICATION_XIDS) + ", which are warning);",
        "- log-signature alerts: the target labels + `source`, `signature` (and `xid`);",
        "- `LLMSLOBurnRateFast` (critical) / `LLMSLOBurnRateSlow` (warning): `slo`, `component=\"slo\"`, "
        "`bottleneck=\"slo_burn\"`, `severity` and " + level_labels["pod_model"] + ".",
        "",
        "Rate-based alerts need `pod_model:llm_requests_finished:rate5m >= min_request_rate`; SLO burn alerts need "
        "`slo:sli_requests:rate1h` (fast) or `rate1d` (slow) `>= min_request_rate`. An absent instance never "
        "fires, except `OptiInfraExporterDown`, whose `absent(up{sidecar_job})` branch fires when no sidecar "
        "target exists at all. `LLMEngineStartupHang` fires when `llm_upstream_up` was never 1 over the last "
        "`startup_seconds` while the sidecar target has been up over that window and was up `startup_seconds` ago "
        "(the sidecar exports no start time). GPU/engine joins (`LLMLowThroughput`, `LLMGPUUnderutilized`) match "
        "on the identity labels, so GPU series must come from the sidecar (or a dcgm-exporter whose pod labels "
        "are honoured).",
        "",
    ]
    return "\n".join(out)
