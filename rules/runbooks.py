"""Runbooks (``docs/runbooks/<bottleneck>.md``), generated from the taxonomy plus the prose below so that
every ``runbook_url`` target exists, and the rules reference (``docs/rules.md``):
``optiinfra generate``. Tests keep both current.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from optiinfra import engines
from optiinfra import signals as sg
from optiinfra import taxonomy as tx
from optiinfra.config import SLI_HISTOGRAMS, load_config
from optiinfra.metrics import NATIVE_BUCKETS
from optiinfra.rules.efficiency import efficiency_reference
from optiinfra.rules.recording import RECORDING_RULES, reference_table

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


#: Prose of the SLO burn-rate alerts (the bottlenecks' prose is in their specs, ``optiinfra.signals``).
SLO_BURN_TEXT = sg.Runbook(
        "An SLO's error budget burns faster than it can last: `LLMSLOBurnRateFast` (critical) when 2% of a "
        "30-day budget goes in an hour (14.4x over 1h and 5m, or 6x over 6h and 30m), `LLMSLOBurnRateSlow` "
        "(warning) when 10% goes in a day or more (3x over 1d and 2h, or 1x over 3d and 6h). The `slo` label "
        "names the SLO; the `slo_scope` labels (default `namespace`, `model`) the service: it fires once per "
        "service. When it fires for the model of a plan in flight, the receiver rolls that plan back.",
        "{slos}: the SLO's error ratio over each window (`slo:sli_error:ratio_rate<window>{{slo=\"...\"}}`) "
        "against its budget (`slo:error_budget:ratio`).")


def prose(b: tx.Bottleneck) -> tuple[str, str]:
    """The bottleneck's meaning and how to confirm it, with the default config's thresholds filled in."""
    config = load_config(None)
    return sg.runbook_text(b.runbook, {name: config.threshold(b, name) for name in b.thresholds})


def _page(title: str, *, facts: str, summary: str, meaning: list[str], confirm: str, plan: list[str],
          manual: str) -> str:
    """One runbook: every page has the same sections in the same order."""
    return "\n".join([
        f"# {title}", "",
        "<!-- generated from optiinfra/taxonomy.py and rules/runbooks.py by `optiinfra generate`; do not edit -->", "",
        facts, "",
        f"> {summary}", "",
        "## What it means", "", *meaning, "",
        "## How to confirm it", "", confirm, "",
        "## What the plan will do", "", *plan, "",
        "## What to do by hand", "", manual, "",
    ])


def render(b: tx.Bottleneck) -> str:
    config = load_config(None)
    meaning, confirm = prose(b)
    about = [meaning, "", f"Fires when: {b.fires_when}."]
    if b.thresholds:
        about += ["", f"Thresholds (override them in the rules config under `bottlenecks.{b.id}`):", "",
                  *(f"- `{name}` = {config.threshold(b, name):g} {t.unit}: {t.description}"
                    for name, t in b.thresholds.items())]
    if b.log_signatures:
        about += ["", "Log signatures (`llm_log_events_total{signature}`): "
                  + ", ".join(f"`{s}`" for s in b.log_signatures) + "."]
    if b.actions:
        plan = ["The receiver proposes the first of these that applies to the engine, in this order:", "",
                *(f"{i}. `{a}`: {action_text(a)}." for i, a in enumerate(b.actions, 1))]
    else:
        plan = ["Nothing: this alert is a diagnosis record; no automatic plan is proposed."]
    if b.inhibits:
        plan += ["", "While it fires it silences on the same pod: " + ", ".join(f"`{i}`" for i in b.inhibits) + "."]
    return _page(f"{b.alert} (`{b.id}`)",
                 facts=f"**Severity** {b.severity} · **component** {b.component} · **signal** {b.signal} · "
                       f"**for** {b.for_}",
                 summary=b.summary, meaning=about, confirm=confirm, plan=plan,
                 manual=b.manual or "If the plan does not help, or you run without the receiver, apply the first "
                 "action above by hand and watch the panels named above.")


def render_slo_burn() -> str:
    meaning, confirm = sg.runbook_text(SLO_BURN_TEXT, {})
    return _page(f"{' / '.join(tx.SLO_ALERTS)} (`{tx.SLO_BURN}`)",
                 facts="**Severity** critical (fast) / warning (slow) · **component** slo",
                 summary="An SLO's error budget is burning too fast.", meaning=[meaning], confirm=confirm,
                 plan=["No new plan. A plan in flight for the same pod/model is rolled back."],
                 manual="Find what changed in the scope (deploys, traffic shape, a plan just applied); look at the "
                 "bottleneck alerts firing for the same pod on the OptiInfra / Bottlenecks dashboard.")


def runbooks(catalogue: tuple[tx.Bottleneck, ...] = tx.BOTTLENECKS) -> dict[str, str]:
    out = {f"{b.id}.md": render(b) for b in catalogue}
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
        "# Prometheus rules", "", "<!-- generated from rules/ by `optiinfra generate`; do not edit -->", "",
        "`optiinfra rules generate [--slo-config FILE] [--profile production|demo] --out DIR [--namespace NS] "
        "[--rule-labels k=v ...]` writes, each in its own folder, `rules/optiinfra-rules.yml` (recording, alerting "
        "and SLO groups; the only file a `rules/*.yml` glob in Prometheus' `rule_files` loads), "
        "`operator/optiinfra-prometheusrule.yaml` (the same groups as a prometheus-operator `PrometheusRule`; its "
        "labels must match your Prometheus CR's `ruleSelector`) and three promtool test files "
        "(`promtool test rules tests/*.test.yml` in the output directory). `optiinfra rules check DIR` parses every "
        "expression, checks every series against the metric catalogue, every `le` against the engines' native "
        "buckets, the naming conventions, and runs `promtool check rules`. `rules/generated/` holds the output "
        "for the default config. `--profile demo` divides every `for` and range window by 60 (for Prometheus "
        "with `evaluation_interval: 1s`), except that an alert's window over a jumpy gauge keeps at least 5s (five "
        "samples, where 2m / 60 would hold two); nothing else changes, recording-rule names included.",
        "", "## The config", "",
        "One YAML file, validated (unknown keys are refused by name); JSON Schema: "
        "`optiinfra/config.schema.json`. Without a file the defaults below apply. Example:",
        "", "```yaml", EXAMPLE_CONFIG.rstrip(), "```", "",
        "A latency SLO counts the requests in the histogram bucket at its threshold, so the threshold must be a "
        "bucket boundary of every engine the SLO applies to (the generator names the nearest boundaries "
        "otherwise); the `le` matcher accepts both `1` and `1.0` spellings of whole numbers. Objectives below "
        "0.9306 are refused: the fast tier alerts at 14.4x the error budget, an error ratio above 1. The "
        "boundaries are each engine's current defaults; an engine run with other buckets (`vLLM "
        "custom_histogram_buckets`, SGLang `--bucket-*`, or SGLang 0.4.x, whose TTFT buckets were 0.001 to 30) "
        "exports no bucket at the threshold and its SLI stays empty, so pick a threshold it has.",
        "", "Default SLOs:", "", "| name | SLI | threshold | objective | engines |", "|---|---|---|---|---|",
        *(f"| `{s.name}` | {s.sli} | {'' if s.threshold is None else f'{s.threshold:g}s'} | {s.objective:g} | "
          f"{', '.join(s.applies_to())} |" for s in config.slos),
        "",
        "Native bucket boundaries (`optiinfra.metrics.NATIVE_BUCKETS`) of the SLI histograms:",
        "",
        *(f"- {engine} `{name}`: " + ", ".join(repr(b) for b in bounds)
          for engine, table in NATIVE_BUCKETS.items() for name, bounds in table.items()
          if name in SLI_HISTOGRAMS.values()),
        "", "## Recording rules", "",
        "Dashboards and alerts read the same series (`optiinfra.rules.recording.RECORDING_RULES`). Windows are 5m "
        "(5s in the demo profile; the names keep `rate5m`).",
        "",
        *reference_table(RECORDING_RULES.values(), level_labels),
        "",
        "Per SLO (label `slo`, plus the `slo_scope` labels, default namespace, model): `slo:sli_requests:rate2m` and "
        "`slo:sli_errors:rate2m` (recorded counts), `slo:sli_error:ratio_rate<w>` for w in 5m, "
        "30m, 1h, 2h, 6h, 1d, 3d (bad / all events; 5m from raw series, the longer windows `sum_over_time` of the "
        "recorded 2m counts, see [rulers.md](rulers.md)), `slo:sli_requests:rate1h` and `rate1d` (the burn "
        "alerts' traffic guards), and `slo:objective:ratio`, `slo:error_budget:ratio` (label `slo` only).",
        "",
        *efficiency_reference(config, level_labels),
        "## Alert contract", "",
        "Every alert carries `bottleneck` (taxonomy id, or `slo_burn`), `severity` (critical, warning, info), "
        "`component` (engine, gpu, host, slo) and the identity labels of the series it fired on; annotations "
        "`summary`, `description`, `runbook_url` (`docs/runbooks/<bottleneck>.md`).",
        "",
        "- engine alerts read from recording rules: " + level_labels["pod_model"] + ";",
        "- `LLMEngineDown`, `LLMEngineStartupHang`: the sidecar target's labels (+ `job`) and `engine`;",
        "- GPU alerts: every GPU label as exported (`gpu`, `UUID` or `uuid`, `Hostname` or `hostname`, `device`, "
        "`modelName`, `pci_bus_id`) + target labels; `GPUXidError` also `xid` (critical for every Xid but the "
        "application ones " + ", ".join(sg.APPLICATION_XIDS) + ", which are warning);",
        "- log-signature alerts: the target labels + `source`, `signature` (and `xid`);",
        "- `LLMSLOBurnRateFast` (critical) / `LLMSLOBurnRateSlow` (warning): `slo`, `component=\"slo\"`, "
        "`bottleneck=\"slo_burn\"`, `severity` and the `slo_scope` labels (default namespace, model; no pod).",
        "",
        "Rate-based alerts need `pod_model:llm_requests_finished:rate5m >= min_request_rate`; SLO burn alerts need "
        "`slo:sli_requests:rate1h` (fast) or `rate1d` (slow) `>= min_request_rate`. An absent instance never "
        "fires, except `OptiInfraExporterDown`, whose `absent(up{sidecar_job})` branch fires when no sidecar "
        "target exists while other targets' `up` does (a ruler seeing no data at all is cold or delayed, "
        "[rulers.md](rulers.md)). `LLMEngineStartupHang` fires when `llm_upstream_up` was never 1 over the last "
        "`startup_seconds` while the sidecar target has been up over that window and was up `startup_seconds` ago "
        "(the sidecar exports no start time). GPU/engine joins (`LLMLowThroughput`, `LLMGPUUnderutilized`) match "
        "on the identity labels, so GPU series must come from the sidecar (or a dcgm-exporter whose pod labels "
        "are honoured).",
        "",
    ]
    return "\n".join(out)
