"""The five OptiInfra dashboards, built from the metric catalogue, the taxonomy, the user config and the
rules' recording-rule table (pure functions: config in, ``Dashboard`` out).

Panels read a recording rule wherever one exists (``optiinfra.rules.recording.RECORDING_RULES`` and the SLO
rules), so a panel and the alert built on the same rule can never disagree. Raw series are read only for what
no rule records (per-request phase means, GPU temperatures, sidecar health ...). Every ``rate``/``increase``
uses ``$__rate_interval``. A panel or query that can only show data with an optional component says so in
``needs`` ("gpu", "log signature", "receiver", "cgroup limit").
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from optiinfra import signals as sg
from optiinfra import taxonomy as tx
from optiinfra.config import DASHBOARD_UIDS, FAST_TIERS, SLI_WINDOWS, SLOW_TIERS, Config, Slo
from optiinfra.grafana.model import Annotation, Dashboard, Item, Link, Panel, Row, Target, Threshold, Variable
from optiinfra.rules.efficiency import EFFICIENCY_RULES
from optiinfra.rules.promql import GPU_PREFIX
from optiinfra.rules.recording import RECORDING_RULES, quantile_name
from optiinfra.rules.slo import error_ratio_name, requests_name

RI = "$__rate_interval"
TOKENS_PER_S = "suffix: tok/s"

#: Receiver series the dashboards read (plan annotations); the receiver's /metrics must be scraped.
RECEIVER_PUSHES = "optiinfra_receiver_pushes_total"
RECEIVER_OUTCOMES = "optiinfra_receiver_plan_outcomes_total"
RECEIVER_SERIES: frozenset[str] = frozenset({RECEIVER_PUSHES, RECEIVER_OUTCOMES})

TTFT = "llm_time_to_first_token_seconds"
ITL = "llm_inter_token_latency_seconds"
E2E = "llm_request_duration_seconds"
QUEUE = "llm_request_queue_time_seconds"
TPOT = "llm_time_per_output_token_seconds"


def rule(name: str) -> str:
    """A recording rule's name, checked against the rules' table (a typo fails at generation time)."""
    if name not in RECORDING_RULES and name not in EFFICIENCY_RULES:
        raise KeyError(f"{name} is not a recording rule of optiinfra.rules.recording or .efficiency")
    return name


@dataclass(frozen=True)
class Scope:
    """Selectors filtered by the dashboard's variables (each variable ``x`` filters label ``x``; ``$cluster``
    filters the config's ``cluster_label`` on every selector)."""

    labels: tuple[str, ...]
    series: str = ""
    """The config's ``selectors.series`` matchers, spliced into raw selectors (rule outputs are already
    filtered by it)."""
    cluster: str = "cluster"
    gpu_labels: Mapping[str, str] = field(default_factory=dict)
    """With ``gpu_source: dcgm-exporter``: our label -> dcgm-exporter's pod-mapping label, for raw GPU series."""
    gpu_series: str = ""
    """dcgm-exporter's selector, used instead of ``series`` on raw GPU series."""

    def _matchers(self, extra: tuple[str, ...], only: tuple[str, ...] | None,
                  names: Mapping[str, str] | None = None) -> list[str]:
        labels = self.labels if only is None else tuple(lb for lb in self.labels if lb in only)
        names = names or {}
        return [*extra, f'{self.cluster}=~"$cluster"', *(f'{names.get(lb, lb)}=~"${lb}"' for lb in labels)]

    def raw(self, metric: str, *extra: str, only: tuple[str, ...] | None = None) -> str:
        if self.gpu_labels and metric.startswith(GPU_PREFIX):
            parts = [p for p in (*self._matchers(extra, only, self.gpu_labels), self.gpu_series) if p]
        else:
            parts = [p for p in (*self._matchers(extra, only), self.series) if p]
        return f"{metric}{{{', '.join(parts)}}}"

    def alerts(self, *extra: str, only: tuple[str, ...] | None = ()) -> str:
        """Firing ``ALERTS`` of the selected cluster (and, with ``only``, of the selected variables)."""
        matchers = self._matchers(('alertstate="firing"', *extra), only)
        return "ALERTS{" + ", ".join(matchers) + "}"

    def rec(self, name: str, *extra: str, only: tuple[str, ...] | None = None) -> str:
        parts = self._matchers(extra, only)
        return f"{rule(name)}{{{', '.join(parts)}}}" if parts else rule(name)


def scope(config: Config, *labels: str, series: bool = True) -> Scope:
    """The dashboard variables ``labels`` (plus ``$cluster``) as selectors under ``config``."""
    dcgm = config.gpu_source == "dcgm-exporter"
    return Scope(labels, config.selectors.series if series else "", config.cluster_label,
                 config.dcgm_exporter.mapping() if dcgm else {}, config.dcgm_exporter.selector)


def cluster_variable(config: Config, metric: str = "llm_requests_running") -> Variable:
    """``$cluster``: the values of the config's ``cluster_label`` (every dashboard's first variable)."""
    return Variable("cluster", "Cluster", metric, source_label=config.cluster_label)


def drill(uid: str, title: str, **variables: str) -> tuple[Link, ...]:
    """A data link to dashboard ``uid`` keeping the cluster and time range, setting ``variables`` from the
    clicked series' labels (variable -> label)."""
    query = "&".join(["var-cluster=${cluster}", *(f"var-{v}=${{__field.labels.{lb}}}" for v, lb in variables.items()),
                      "${__url_time_range}"])
    return (Link(title, f"/d/{uid}?{query}"),)


def _vars(config: Config, *names: str, pod_multi: bool = True) -> tuple[Variable, ...]:
    """Chained query variables (namespace -> engine -> model -> pod), each read from a scoped metric.

    Engine and model come from ``llm_requests_running`` (every engine exports it); pods from
    ``llm_upstream_up``, so a pod whose engine is down can still be picked (it has no ``model`` label, so the
    pod list follows namespace and engine only).
    """
    chain: list[Variable] = [cluster_variable(config)]
    for i, name in enumerate(names):
        scope = [d for d in names[:i] if name != "pod" or d != "model"]
        matchers = ", ".join([f'{config.cluster_label}=~"$cluster"', *(f'{d}=~"${d}"' for d in scope)])
        metric = "llm_upstream_up" if name == "pod" else "llm_requests_running"
        chain.append(Variable(name, name.capitalize(), f"{metric}{{{matchers}}}", multi=pod_multi or name != "pod"))
    return tuple(chain)


def _q(q: float) -> str:
    return f"p{round(q * 100)}"


def recorded_quantiles(histogram: str, level: str = "pod_model") -> tuple[float, ...]:
    """The quantiles the rules record for a histogram at a level, ascending (the table decides, not us)."""
    found = sorted(r.quantile for r in RECORDING_RULES.values()
                   if r.quantile is not None and r.name == quantile_name(histogram, r.quantile, level))
    if not found:
        raise KeyError(f"the rules record no {level} quantile of {histogram}")
    return tuple(found)


def _quantile_targets(s: Scope, histogram: str) -> tuple[Target, ...]:
    return tuple(Target(s.rec(quantile_name(histogram, q)), f"{_q(q)} {{{{model}}}}")
                 for q in recorded_quantiles(histogram))


def _quantile_list(histogram: str) -> str:
    return " / ".join(_q(q) for q in recorded_quantiles(histogram))


# --- Fleet overview --------------------------------------------------------------------------------


def fleet(config: Config) -> Dashboard:
    s = scope(config, "namespace", "engine", "model")
    fleet_level = ("engine", "model")
    kv = config.threshold("kv_cache_pressure", "kv_usage")
    err = config.threshold("request_errors", "error_share")
    finished = s.rec("pod_model:llm_requests_finished:rate5m")
    any_bottleneck = s.alerts('bottleneck!=""')
    to_instance = drill(DASHBOARD_UIDS["instance"], "Instance: ${__field.labels.pod}", namespace="namespace", pod="pod")
    items: list[Item] = [
        Row("Now"),
        Panel("Requests/s", "Finished requests per second across the selected fleet (recording rule "
              "pod_model:llm_requests_finished:rate5m).", (Target(f"sum({finished})"),), "reqps",
              type="stat", width=4, height=4),
        Panel("Generated tokens/s", "Tokens generated per second across the selected fleet.",
              (Target(f"sum({s.rec('pod_model:llm_generation_tokens:rate5m')})"),), TOKENS_PER_S,
              type="stat", width=4, height=4),
        Panel("Engines up", "Sidecars whose last scrape of their engine succeeded (llm_upstream_up == 1).",
              (Target(f"count({s.raw('llm_upstream_up', only=('namespace', 'engine'))} == 1) or vector(0)"),),
              "short", type="stat", width=4, height=4),
        Panel("Requests waiting", "Requests queued in the engines right now, summed over the selected fleet.",
              (Target(f"sum({s.rec('pod_model:llm_requests_waiting:sum')})"),), "short",
              type="stat", width=4, height=4),
        Panel("Error share", "Share of finished requests that errored across the fleet, weighted by traffic. "
              f"The request_errors alert fires per pod above {err:g}.",
              (Target(f"sum({s.rec('pod_model:llm_requests_errored_per_finished:ratio_rate5m')} * {finished})"
                      f" / sum({finished})"),),
              "percentunit", type="stat", width=4, height=4, thresholds=(Threshold(err),), decimals=2),
        Panel("Bottlenecks firing", "Taxonomy alerts firing now (ALERTS with a bottleneck label), any pod.",
              (Target(f"count({any_bottleneck}) or vector(0)"),), "short",
              type="stat", width=4, height=4, thresholds=(Threshold(1, "orange"),)),
        Row("Traffic"),
        Panel("Request rate by model", "Finished requests per second per engine and model over every namespace "
              "(the model-level rule the fleet latency quantiles share).",
              (Target(s.rec("model:llm_requests_finished:rate5m", only=fleet_level), "{{engine}} {{model}}"),),
              "reqps", width=8),
        Panel("Token throughput by model", "Prompt tokens (prefill) and generated tokens (decode) per second.",
              (Target(f"sum by (engine, model) ({s.rec('pod_model:llm_prompt_tokens:rate5m')})",
                      "prompt {{engine}} {{model}}"),
               Target(f"sum by (engine, model) ({s.rec('pod_model:llm_generation_tokens:rate5m')})",
                      "generated {{engine}} {{model}}")), TOKENS_PER_S, width=8),
        Panel("Error share by model", "Share of finished requests that errored, per pod and model; 0 for "
              "engines without an error outcome.",
              (Target(s.rec("pod_model:llm_requests_errored_per_finished:ratio_rate5m"),
                      "{{pod}} {{model}}"),), "percentunit", width=8, min=0, thresholds=(Threshold(err),),
              data_links=to_instance),
        Row("Latency (fleet quantiles per model)"),
    ]
    for histogram, title in ((TTFT, "Time to first token"), (ITL, "Inter-token latency"),
                             (E2E, "End-to-end request latency")):
        quantiles = recorded_quantiles(histogram, "model")
        targets = tuple(Target(s.rec(quantile_name(histogram, q, "model"), only=fleet_level),
                               f"{_q(q)} {{{{engine}}}} {{{{model}}}}") for q in quantiles)
        names = " / ".join(_q(q) for q in quantiles)
        items.append(Panel(f"{title} {names}", f"{title} quantiles over all pods of a model, from the "
                           f"model-level recording rules on {histogram}.", targets, "s", width=8))
    items += [
        Row("Saturation"),
        Panel("KV-cache usage by pod", f"KV-cache usage, max over ranks, per pod and model. Near 1.0 is normal "
              f"for vLLM; with requests waiting or preemptions above {kv:g} it is the kv_cache_pressure "
              "bottleneck.",
              (Target(s.rec("pod_model:llm_kv_cache_usage_ratio:max"), "{{pod}} {{model}}"),),
              "percentunit", width=8, min=0, max=1, thresholds=(Threshold(kv),), data_links=to_instance),
        Panel("Queue by model", "Requests waiting and running, summed over the pods of a model.",
              (Target(f"sum by (engine, model) ({s.rec('pod_model:llm_requests_waiting:sum')})",
                      "waiting {{engine}} {{model}}"),
               Target(f"sum by (engine, model) ({s.rec('pod_model:llm_requests_running:sum')})",
                      "running {{engine}} {{model}}")), "short", width=8),
        Panel("Preemptions/s by model", "Requests preempted (SGLang: retracted) per second: the KV cache ran "
              "out and work is recomputed.",
              (Target(f"sum by (engine, model) ({s.rec('pod_model:llm_preemptions:rate5m')})",
                      "{{engine}} {{model}}"),), "ops", width=8),
        Panel("GPU utilization by pod", "Mean utilization of each pod's GPUs (sidecar NVML or dcgm-exporter).",
              (Target(s.rec("pod:DCGM_FI_DEV_GPU_UTIL:avg_ratio", only=("namespace",)), "{{pod}}"),),
              "percentunit", width=12, min=0, max=1, needs="gpu", data_links=to_instance),
        Panel("Firing bottlenecks by type", "Taxonomy alerts firing now, counted per bottleneck and severity "
              "(ALERTS{bottleneck!=\"\"}); the Bottlenecks dashboard shows each signal against its threshold.",
              (Target(f"count by (bottleneck, severity) ({any_bottleneck})",
                      "{{bottleneck}} ({{severity}})"),), "short", width=12, stack=True),
        Panel("Firing alerts", "Every firing taxonomy or SLO alert with the pod it fired on.",
              (Target(any_bottleneck, instant=True),), "short", type="table", width=24, height=8),
    ]
    return Dashboard(DASHBOARD_UIDS["fleet"], "OptiInfra / Fleet overview",
                     "Every engine and model: traffic, latency, saturation, errors, GPUs and firing bottlenecks.",
                     tuple(items), _vars(config, "namespace", "engine", "model"))


# --- Instance ----------------------------------------------------------------------------------------


def _phase_mean(s: Scope, histogram: str, legend: str) -> Target:
    sum_ = f"sum by (model) (rate({s.raw(histogram + '_sum')}[{RI}]))"
    count = f"sum by (model) (rate({s.raw(histogram + '_count')}[{RI}]))"
    return Target(f"{sum_}\n/\n{count}", f"{legend} {{{{model}}}}")


def instance(config: Config) -> Dashboard:
    s = scope(config, "namespace", "model", "pod")
    host = scope(config, "namespace", "pod")
    receiver = scope(config, series=False)  # the receiver's own series: cluster only
    to_gpus = drill(DASHBOARD_UIDS["gpus"], "GPUs of ${__field.labels.hostname}", hostname="hostname")
    kv = config.threshold("kv_cache_pressure", "kv_usage")
    hit = config.threshold("cache_inefficiency", "hit_ratio_below")
    cpu = config.threshold("host_cpu_saturation", "cpu_ratio_above")
    items: list[Item] = [
        Row("Latency"),
        Panel("Latency breakdown (mean per request)", "Where a request's time goes: mean queue, prefill and "
              "decode time per finished request (sum/count rates; quantiles are not additive). Prefill and "
              "decode phases exist for vLLM only.",
              (_phase_mean(s, QUEUE, "queue"),
               _phase_mean(s, "llm_request_prefill_time_seconds", "prefill"),
               _phase_mean(s, "llm_request_decode_time_seconds", "decode")), "s", width=12, stack=True),
        Panel("End-to-end latency quantiles", f"Request duration {_quantile_list(E2E)} of this pod.",
              _quantile_targets(s, E2E), "s", width=12),
        Panel("Time to first token", f"TTFT {_quantile_list(TTFT)}; prefill_bound fires on p95 above "
              f"{config.threshold('prefill_bound', 'ttft_p95_seconds'):g}s with a short queue.",
              _quantile_targets(s, TTFT),
              "s", width=6, thresholds=(Threshold(config.threshold("prefill_bound", "ttft_p95_seconds")),)),
        Panel("Inter-token latency", f"ITL {_quantile_list(ITL)}; decode_bound fires on p95 above "
              f"{config.threshold('decode_bound', 'itl_p95_seconds'):g}s.",
              _quantile_targets(s, ITL),
              "s", width=6, thresholds=(Threshold(config.threshold("decode_bound", "itl_p95_seconds")),)),
        Panel("Time per output token (per request)", "Mean time per output token of each finished request, "
              f"{_quantile_list(TPOT)}: the per-token latency TGI reports (it has no TTFT or inter-token histogram; "
              "TGI's includes prefill).",
              _quantile_targets(s, TPOT), "s", width=6),
        Panel("Queue time", f"Time requests wait before they are scheduled, {_quantile_list(QUEUE)}.",
              _quantile_targets(s, QUEUE),
              "s", width=6, thresholds=(Threshold(config.threshold("queue_buildup", "queue_p95_seconds")),)),
        Row("Batch and KV cache"),
        Panel("Running and waiting requests", "The engine's batch (running) and its queue (waiting).",
              (Target(s.rec("pod_model:llm_requests_running:sum"), "running {{model}}"),
               Target(s.rec("pod_model:llm_requests_waiting:sum"), "waiting {{model}}")), "short", width=8),
        Panel("KV-cache usage", "KV-cache usage, max over ranks. The line is kv_cache_pressure's threshold.",
              (Target(s.rec("pod_model:llm_kv_cache_usage_ratio:max"), "{{model}}"),), "percentunit",
              width=8, min=0, max=1, thresholds=(Threshold(kv),)),
        Panel("Preemptions/s", "Requests preempted (SGLang: retracted) per second because the KV cache ran out.",
              (Target(s.rec("pod_model:llm_preemptions:rate5m"), "{{model}}"),), "ops", width=8,
              thresholds=(Threshold(config.threshold("preemption_storm", "preemptions_per_second")),)),
        Panel("Prefix-cache hit ratio", "Prompt tokens found in the prefix cache / prompt tokens looked up. "
              f"cache_inefficiency fires below {hit:g} with steady prompt traffic.",
              (Target(s.rec("pod_model:llm_prefix_cache_hit_tokens_per_queried_tokens:ratio_rate5m"),
                      "{{model}}"),), "percentunit", width=8, min=0, max=1,
              thresholds=(Threshold(hit, "green"),), base_color="red"),
        Panel("Token throughput", "Prompt and generated tokens per second.",
              (Target(s.rec("pod_model:llm_prompt_tokens:rate5m"), "prompt {{model}}"),
               Target(s.rec("pod_model:llm_generation_tokens:rate5m"), "generated {{model}}")), TOKENS_PER_S,
              width=8),
        Panel("Finished requests by outcome", "Finished requests per second by outcome (stop, length, abort, "
              "error, other).",
              (Target(f"sum by (outcome) (rate({s.raw('llm_requests_finished_total')}[{RI}]))", "{{outcome}}"),),
              "reqps", width=8, stack=True),
        Row("GPUs"),
        Panel("GPU utilization", "Utilization of each GPU of the pod (recording rule, either exporter).",
              (Target(host.rec("gpu:DCGM_FI_DEV_GPU_UTIL:ratio"), "GPU {{gpu}} {{uuid}}"),), "percentunit",
              width=8, min=0, max=1, needs="gpu", data_links=to_gpus),
        Panel("GPU memory used", "Framebuffer used / (used + free) per GPU.",
              (Target(host.rec("gpu:DCGM_FI_DEV_FB_USED:ratio"), "GPU {{gpu}}"),), "percentunit",
              width=8, min=0, max=1, needs="gpu", data_links=to_gpus),
        Panel("GPU power", "Power draw per GPU.",
              (Target(host.raw("DCGM_FI_DEV_POWER_USAGE"), "GPU {{gpu}}"),), "watt", width=8, needs="gpu"),
        Panel("GPU temperature", "GPU and memory temperature.",
              (Target(host.raw("DCGM_FI_DEV_GPU_TEMP"), "GPU {{gpu}}"),
               Target(host.raw("DCGM_FI_DEV_MEMORY_TEMP"), "memory {{gpu}}")), "celsius", width=8, needs="gpu"),
        Panel("GPU throttling", "Thermal or power clock-event reasons set per GPU (count of throttle bits of "
              "DCGM_FI_DEV_CLOCKS_EVENT_REASONS); above 0 the GPU is slowed down.",
              (Target(sg.throttle_count(host.raw("DCGM_FI_DEV_CLOCKS_EVENT_REASONS")), "GPU {{gpu}}"),), "short",
              width=8, thresholds=(Threshold(1),), needs="gpu"),
        Panel("Xid and ECC errors", "New Xid errors (by Xid) and uncorrectable ECC errors / remapped rows.",
              (Target(f"sum by (gpu, xid) (increase({host.raw('DCGM_EXP_XID_ERRORS_COUNT')}[{RI}]))",
                      "Xid {{xid}} GPU {{gpu}}"),
               Target(f"increase({host.raw('DCGM_FI_DEV_ECC_DBE_VOL_TOTAL')}[{RI}])", "ECC DBE GPU {{gpu}}"),
               Target(f"increase({host.raw('DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS')}[{RI}])",
                      "remapped rows GPU {{gpu}}")),
              "short", width=8, thresholds=(Threshold(1),), needs="gpu"),
        Row("Host"),
        Panel("Host CPU", f"Host CPU utilization; host_cpu_saturation fires above {cpu:g}.",
              (Target(host.raw("llm_host_cpu_utilization_ratio"), "host CPU"),
               Target(f"rate({host.raw('llm_host_process_cpu_seconds_total')}[{RI}])\n/ "
                      f"{host.raw('llm_host_cpus')}", "engine process")),
              "percentunit", width=8, min=0, max=1, thresholds=(Threshold(cpu),)),
        Panel("Host memory used", "Share of host memory in use (1 - available / total) and, where the "
              "container has a limit, cgroup usage / limit.",
              (Target(f"1 - {host.raw('llm_host_memory_available_bytes')}\n/ "
                      f"{host.raw('llm_host_memory_total_bytes')}", "host"),
               Target(f"{host.raw('llm_host_cgroup_memory_usage_bytes')}\n/ "
                      f"{host.raw('llm_host_cgroup_memory_limit_bytes')}", "container / limit",
                      needs="cgroup limit")),
              "percentunit", width=8, min=0, max=1,
              thresholds=(Threshold(config.threshold("host_memory_pressure", "cgroup_usage_ratio_above")),)),
        Panel("Engine process memory", "Resident memory of the engine process and the container's cgroup usage.",
              (Target(host.raw("llm_host_process_resident_memory_bytes"), "engine RSS"),
               Target(host.raw("llm_host_cgroup_memory_usage_bytes"), "container")), "bytes", width=8),
        Row("Sidecar health"),
        Panel("Engine scrape", "1 while the sidecar's last scrape of the engine succeeded (llm_upstream_up); "
              "engine_down fires when it stays 0.",
              (Target(host.raw("llm_upstream_up"), "{{engine}} up"),), "short", width=6, min=0, max=1,
              thresholds=(Threshold(1, "green"),), base_color="red"),
        Panel("Collector success", "Per collector (engine, gpu, host, logs): 1 if its last run succeeded.",
              (Target(host.raw("optiinfra_collector_success"), "{{collector}}"),), "short", width=6, min=0,
              max=1, thresholds=(Threshold(1, "green"),), base_color="red"),
        Panel("Collector duration", "Duration of each collector's last run and of the last engine scrape.",
              (Target(host.raw("optiinfra_collector_duration_seconds"), "{{collector}}"),
               Target(host.raw("llm_upstream_scrape_duration_seconds"), "engine scrape")), "s", width=6),
        Panel("Parse errors/s", "Malformed input lines the collectors skipped, per second.",
              (Target(f"sum by (collector) (rate({host.raw('optiinfra_exporter_parse_errors_total')}[{RI}]))",
                      "{{collector}}"),), "short", width=6, thresholds=(Threshold(0.01, "orange"),)),
    ]
    annotations = (
        Annotation("Bottlenecks", host.alerts('bottleneck!=""', only=("pod",)),
                   "{{alertname}}", "{{bottleneck}} ({{severity}}) on {{pod}}", "red"),
        Annotation("Plans pushed", f"sum by (kind) (increase({receiver.raw(RECEIVER_PUSHES)}[{RI}])) > 0",
                   "{{kind}} pushed", "The receiver pushed a {{kind}} to the orchestrator (fleet-wide; needs "
                   "the receiver's /metrics scraped).", "blue", needs="receiver"),
        Annotation("Plan outcomes",
                   f"sum by (verdict, bottleneck) (increase({receiver.raw(RECEIVER_OUTCOMES)}[{RI}])) > 0",
                   "plan {{verdict}}", "A plan for {{bottleneck}} was analysed against Prometheus: {{verdict}} "
                   "(fleet-wide; needs the receiver's /metrics scraped).", "purple", needs="receiver"),
    )
    return Dashboard(DASHBOARD_UIDS["instance"], "OptiInfra / Instance",
                     "One inference pod in depth: latency phases, batch and KV cache, GPUs, host, sidecar health, "
                     "with firing bottlenecks and pushed plans as annotations.",
                     tuple(items), _vars(config, "namespace", "pod", "model", pod_multi=False), annotations)


# --- Bottlenecks -------------------------------------------------------------------------------------


def _log_events(s: Scope, b: tx.Bottleneck) -> Target:
    sig = 'signature=~"' + "|".join(b.log_signatures) + '"'
    events = s.raw("llm_log_events_total", sig, only=("namespace", "pod"))
    return Target(f"sum by (pod, signature) (increase({events}[{RI}]))", "{{signature}} {{pod}}", needs="log signature")


def _series(s: Scope, config: Config, series: sg.Series) -> Target:
    """A spec series as a panel target: the expression the alert evaluates, windows as ``$__rate_interval``."""
    pod = ("namespace", "pod")
    sidecar = "up{" + ", ".join(p for p in (config.selectors.sidecar_job, f'{s.cluster}=~"$cluster"',
                                            'namespace=~"$namespace"', 'pod=~"$pod"') if p) + "}"
    expr = sg.render(series, sel=lambda metric: s.raw(metric, only=pod), window=lambda _: RI, by_pod="",
                     rule=lambda name: s.rec(name, only=None if RECORDING_RULES[name].level == "pod_model" else pod),
                     sidecar=sidecar, sep="\n/ ")
    return Target(expr, series.legend, needs=series.needs)


def _signal_panel(b: tx.Bottleneck, s: Scope, config: Config, panel: sg.Panel, *, link: tuple[Link, ...],
                  about: str) -> tuple[Panel, tuple[Target, ...]]:
    """The row's main panel (the condition's main series against its threshold) and its context targets."""
    cond = b.condition
    main_term = cond.main if isinstance(cond, sg.Condition) and not panel.main else None
    main = tuple(_series(s, config, x) for x in (panel.main or ((main_term.series,) if main_term else ())))
    context = tuple(_series(s, config, x) for x in panel.context)
    if b.log_signatures:
        context = (*context, _log_events(s, b))
    unit = panel.unit or "short"
    if main_term is not None and isinstance(main_term.threshold, str):
        value = config.threshold(b, main_term.threshold)
        below = main_term.op == "<"
        thresholds = (Threshold(1 - value if main_term.series.complement else value, "green" if below else "red"),)
        base = "red" if below else "green"
    elif panel.up_is_healthy:
        thresholds, base = (Threshold(1, "green"),), "red"
    else:
        thresholds, base = (Threshold(1),), "green"
    return Panel(f"{b.id}: signal", about, main, unit, width=12 if context else 20, thresholds=thresholds,
                 base_color=base, links=link, needs=panel.needs, min=0 if unit == "percentunit" else None), context


def bottlenecks(config: Config, catalogue: tuple[tx.Bottleneck, ...] = tx.BOTTLENECKS) -> Dashboard:
    s = scope(config, "namespace", "engine", "model", "pod")
    pod_only = ("namespace", "pod")
    items: list[Item] = []
    for b in catalogue:
        link = (Link(f"Runbook: {b.id}", config.runbook_url(b.id)),)
        firing_id = f'bottleneck="{b.id}"'
        about = (f"{b.summary} Fires ({b.alert}, {b.severity}) when {b.fires_when}"
                 f"{'' if b.for_ == '0s' else f' for {config.for_(b)}'}. Runbook: {config.runbook_url(b.id)}")
        panel = b.panel
        if panel is None:  # log-only: the log signatures are the signal
            main: Item = Panel(f"{b.id}: signal", about, (_log_events(s, b),), "short", width=20,
                               thresholds=(Threshold(1),), base_color="green", links=link, needs="log signature")
            context: tuple[Target, ...] = ()
        else:
            main, context = _signal_panel(b, s, config, panel, link=link, about=about)
        items += [Row(f"{b.id} — {b.alert} ({b.severity})"), main]
        if context and panel is not None:
            ctx_thr = (Threshold(config.threshold(b, panel.context_threshold), "orange"),) \
                if panel.context_threshold else ()
            title = panel.context_title or "Log signatures"
            items.append(Panel(f"{b.id}: {title.lower()}", f"The other half of the {b.alert} condition: "
                               f"{b.fires_when}.", context, panel.context_unit, width=8, thresholds=ctx_thr,
                               links=link, needs=context[0].needs if all(t.needs for t in context) else None))
        items.append(Panel(f"{b.id}: firing", f"{b.alert} alerts firing now for the selected pods.",
                           (Target(f"sum({s.alerts(firing_id, only=pod_only)}) or vector(0)"),),
                           "short", type="stat", width=4, thresholds=(Threshold(1),), links=link))
    return Dashboard(DASHBOARD_UIDS["bottlenecks"], "OptiInfra / Bottlenecks",
                     "One row per taxonomy bottleneck: its signal against its threshold (from the taxonomy and "
                     "your config), the co-condition, whether the alert fires, and the runbook.",
                     tuple(items), _vars(config, "namespace", "engine", "model", "pod"))


# --- SLOs --------------------------------------------------------------------------------------------


def _slo_rows(s: Scope, slo: Slo) -> list[Item]:
    sel = f'slo="{slo.name}"'
    budget = s.raw("slo:error_budget:ratio", sel, only=())

    def ratio(window: str) -> str:
        return s.raw(error_ratio_name(window), sel)

    def reqs(window: str) -> str:
        return s.raw(requests_name(window), sel)

    fleet_err = f"sum by (slo) ({ratio('1d')} * {reqs('1d')})\n/ sum by (slo) ({reqs('1d')})"
    what = "requests finished without error" if slo.sli == "availability" else (
        f"{slo.sli} at most {slo.threshold:g}s")
    burn = f"/ on (slo) group_left () {budget}"
    items: list[Item] = [
        Row(f"SLO {slo.name}: {slo.objective:g} of {what}"),
        Panel("SLI (1d, fleet)", f"{slo.description or slo.name} Share of good events over the last day across "
              f"the selected pods, weighted by traffic; objective {slo.objective:g}.",
              (Target(f"1 - (\n{fleet_err}\n)"),), "percentunit", type="stat", width=6, height=5,
              thresholds=(Threshold(slo.objective, "green"),), base_color="red", decimals=3),
        Panel("Error budget left (1d, fleet)", "1 - (error ratio over the last day / error budget); "
              "below 0 the day used more than its share.",
              (Target(f"1 - (\n{fleet_err}\n)\n{burn}"),), "percentunit", type="stat", width=6, height=5,
              thresholds=(Threshold(0, "orange"), Threshold(0.5, "green")), base_color="red", decimals=1),
        Panel("Error budget left, worst pod (3d)", "The pod that has burnt most: 1 - error ratio over 3d "
              "(the longest SLI window) / error budget.",
              (Target(f"min(1 - {ratio('3d')} {burn})"),), "percentunit", type="stat", width=6, height=5,
              thresholds=(Threshold(0, "orange"), Threshold(0.5, "green")), base_color="red", decimals=1),
        Panel("Burn-rate alerts firing", "LLMSLOBurnRateFast / LLMSLOBurnRateSlow alerts firing for this SLO.",
              (Target(f"sum({s.alerts(sel)}) or vector(0)"),), "short", type="stat",
              width=6, height=5, thresholds=(Threshold(1),)),
        Panel("SLI by pod (1h)", "Share of good events per pod and model over the last hour.",
              (Target(f"1 - {ratio('1h')}", "{{pod}} {{model}}"),
               Target(s.raw("slo:objective:ratio", sel, only=()), "objective")), "percentunit", width=8,
              thresholds=(Threshold(slo.objective, "green"),), base_color="red"),
    ]
    for title, tiers in (("fast", FAST_TIERS), ("slow", SLOW_TIERS)):
        windows = sorted({w for long, short, _ in tiers for w in (long, short)}, key=SLI_WINDOWS.index)
        factors = sorted({float(f) for _, _, f in tiers})
        items.append(Panel(
            f"Burn rate, {title} windows", f"Error ratio / error budget per window ({', '.join(windows)}); "
            f"the {title} alert fires when a long and its short window both exceed "
            f"{' or '.join(f'{f:g}x' for f in factors)} with traffic.",
            tuple(Target(f"{ratio(w)}\n{burn}", f"{w} {{{{pod}}}}") for w in windows), "short", width=8,
            thresholds=tuple(Threshold(f, "orange" if i == 0 and len(factors) > 1 else "red")
                             for i, f in enumerate(factors))))
    return items


def slos(config: Config) -> Dashboard:
    s = scope(config, "namespace", "model", series=False)
    return Dashboard(DASHBOARD_UIDS["slos"], "OptiInfra / SLOs",
                     "Per SLO from your config: the SLI, the error budget left and the burn rate of every window "
                     "the multiwindow multi-burn-rate alerts use (from the SLO recording rules).",
                     tuple(item for slo in config.slos for item in _slo_rows(s, slo)),
                     _vars(config, "namespace", "model"))


# --- GPUs --------------------------------------------------------------------------------------------


def gpus(config: Config) -> Dashboard:
    g = scope(config, "hostname")
    util = g.rec("gpu:DCGM_FI_DEV_GPU_UTIL:ratio")
    mem = g.rec("gpu:DCGM_FI_DEV_FB_USED:ratio")
    cluster = f'{config.cluster_label}=~"$cluster"'

    def _g(metric: str, wrap: Callable[[str], str] = str) -> str:
        """Both label spellings (this sidecar: ``Hostname``; dcgm-exporter main: ``hostname``)."""
        return " or ".join(wrap(f'{metric}{{{cluster}, {label}=~"$hostname"}}') for label in ("Hostname", "hostname"))

    legend = "{{Hostname}}{{hostname}} GPU {{gpu}}"
    free = config.threshold("gpu_memory_pressure", "fb_free_mib_below")
    rate = f"rate({{}}[{RI}])".format
    increase = f"increase({{}}[{RI}])".format
    items: list[Item] = [
        Row("Utilization and memory"),
        Panel("GPUs", "GPUs reporting, per host.", (Target(f"count by (hostname) ({util})", "{{hostname}}"),),
              "short", type="stat", width=6, height=6, needs="gpu"),
        Panel("Mean GPU utilization", "Mean utilization over the selected GPUs.",
              (Target(f"avg({util})"),), "percentunit", type="gauge", width=6, height=6, min=0, max=1,
              needs="gpu", thresholds=(Threshold(0.3, "green"),), base_color="blue"),
        Panel("Hottest GPU", "Highest GPU temperature among the selected GPUs.",
              (Target(f"max({_g('DCGM_FI_DEV_GPU_TEMP')})"),), "celsius", type="stat", width=6, height=6,
              needs="gpu", thresholds=(Threshold(80, "orange"), Threshold(90))),
        Panel("Total power", "Power draw of the selected GPUs together.",
              (Target(f"sum({_g('DCGM_FI_DEV_POWER_USAGE')})"),), "watt", type="stat", width=6, height=6, needs="gpu"),
        Panel("GPU utilization", "Utilization per GPU (recording rule gpu:DCGM_FI_DEV_GPU_UTIL:ratio, one series "
              "per GPU whichever exporter produced it).", (Target(util, "{{hostname}} GPU {{gpu}}"),),
              "percentunit", width=12, min=0, max=1, needs="gpu"),
        Panel("Framebuffer used", "Used / (used + free) per GPU (recording rule gpu:DCGM_FI_DEV_FB_USED:ratio).",
              (Target(mem, "{{hostname}} GPU {{gpu}}"),), "percentunit", width=12, min=0, max=1, needs="gpu"),
        Panel("Framebuffer free", f"Free framebuffer per GPU; gpu_memory_pressure fires below {free:g} MiB.",
              (Target(_g("DCGM_FI_DEV_FB_FREE"), legend),), "mbytes", width=12, needs="gpu",
              thresholds=(Threshold(free, "green"),), base_color="red"),
        Panel("Memory copy utilization", "Share of time the GPU memory was being read or written.",
              (Target(f"({_g('DCGM_FI_DEV_MEM_COPY_UTIL')}) / 100", legend),), "percentunit", width=12, min=0,
              max=1, needs="gpu"),
        Row("Power, temperature and clocks"),
        Panel("Power draw", "Power per GPU, and the energy counter's rate (should agree).",
              (Target(_g("DCGM_FI_DEV_POWER_USAGE"), legend),
               Target(f"({_g('DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION', rate)}) / 1000", "energy rate " + legend)),
              "watt", width=12, needs="gpu"),
        Panel("Temperature", "GPU and memory temperature per GPU.",
              (Target(_g("DCGM_FI_DEV_GPU_TEMP"), legend),
               Target(_g("DCGM_FI_DEV_MEMORY_TEMP"), "memory " + legend)), "celsius", width=12, needs="gpu",
              thresholds=(Threshold(80, "orange"), Threshold(90))),
        Panel("Clocks", "SM and memory clock per GPU; a dropping SM clock under load is throttling.",
              (Target(f"({_g('DCGM_FI_DEV_SM_CLOCK')}) * 1000000", "SM " + legend),
               Target(f"({_g('DCGM_FI_DEV_MEM_CLOCK')}) * 1000000", "memory " + legend)), "hertz", width=12,
              needs="gpu"),
        Panel("Throttling", "Thermal and power clock-event reasons set per GPU (count of throttle bits); the "
              "gpu_throttling bottleneck.",
              (Target(_g(sg.CLOCK_REASONS, sg.throttle_count), legend),),
              "short", width=12, needs="gpu", thresholds=(Threshold(1),)),
        Row("Health"),
        Panel("Xid errors", "New Xid errors per GPU and Xid (fatal ones need a GPU reset: see the "
              "gpu_xid_error runbook).",
              (Target(_g("DCGM_EXP_XID_ERRORS_COUNT", increase), "Xid {{xid}} " + legend),), "short", width=8,
              needs="gpu", thresholds=(Threshold(1),)),
        Panel("ECC errors and remapped rows", "New double-bit (uncorrectable) and single-bit ECC errors, and "
              "rows remapped for uncorrectable errors.",
              (Target(_g("DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", increase), "DBE " + legend),
               Target(_g("DCGM_FI_DEV_ECC_SBE_VOL_TOTAL", increase), "SBE " + legend),
               Target(_g("DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS", increase), "remapped " + legend)),
              "short", width=8, needs="gpu", thresholds=(Threshold(1),)),
        Panel("PCIe replays", "PCIe retries per second per GPU; a steady rate points at a bad link or riser.",
              (Target(_g("DCGM_FI_DEV_PCIE_REPLAY_COUNTER", rate), legend),), "short", width=8, needs="gpu"),
    ]
    variables = (cluster_variable(config, "gpu:DCGM_FI_DEV_GPU_UTIL:ratio"),
                 Variable("hostname", "Host", f"gpu:DCGM_FI_DEV_GPU_UTIL:ratio{{{cluster}}}"))
    return Dashboard(DASHBOARD_UIDS["gpus"], "OptiInfra / GPUs",
                     "Every GPU across nodes, from this sidecar (NVML) or dcgm-exporter: utilization, memory, power, "
                     "temperature, clocks, throttling, Xid and ECC errors.", tuple(items), variables)


def all_dashboards(config: Config) -> tuple[Dashboard, ...]:
    from optiinfra.grafana.efficiency import efficiency  # noqa: PLC0415 (it builds on this module)

    return (fleet(config), instance(config), bottlenecks(config), slos(config), gpus(config), efficiency(config))
