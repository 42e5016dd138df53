"""Alerting rules for every taxonomy entry: its 'fires when' (docs/taxonomy.md) in PromQL.

How each bottleneck's signal is written lives here (``SIGNALS``), its numbers come from the taxonomy
thresholds with the config's overrides. Log-signature alerts are generated from ``log_signatures``.
Identity labels are kept by aggregating ``by`` them (engine alerts add ``engine``, ``model``); GPU and log
alerts keep every label of the series they fired on.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from decimal import Decimal
from types import MappingProxyType

from optiinfra import metrics as m
from optiinfra import taxonomy as tx
from optiinfra.rules.promql import Ctx, Group, Rule, dec, num

LOG_WINDOW = "5m"
COUNTER_WINDOW = "5m"


def _t(ctx: Ctx, bid: str, name: str) -> str:
    return num(ctx.config.threshold(bid, name))


def _traffic(ctx: Ctx) -> str:
    """The minimum-traffic guard of per-pod engine alerts."""
    return f"pod_model:llm_requests_finished:rate5m >= {num(ctx.config.min_request_rate)}"


def _kv_cache_pressure(ctx: Ctx) -> list[str]:
    b = "kv_cache_pressure"
    return [f"pod_model:llm_kv_cache_usage_ratio:max >= {_t(ctx, b, 'kv_usage')}\n"
            f"and on ({ctx.by_pod}) (\n"
            f"  pod_model:llm_requests_waiting:sum > {_t(ctx, b, 'min_waiting')}\n"
            f"  or pod_model:llm_preemptions:rate5m > 0\n)"]


def _preemption_storm(ctx: Ctx) -> list[str]:
    return [f"pod_model:llm_preemptions:rate5m > {_t(ctx, 'preemption_storm', 'preemptions_per_second')}\n"
            f"and on ({ctx.by_pod}) {_traffic(ctx)}"]


def _queue_buildup(ctx: Ctx) -> list[str]:
    b = "queue_buildup"
    return [f"pod_model:llm_request_queue_time_seconds:p95_rate5m > {_t(ctx, b, 'queue_p95_seconds')}\n"
            f"and on ({ctx.by_pod}) pod_model:llm_requests_waiting:sum > 0\n"
            f"and on ({ctx.by_pod}) {_traffic(ctx)}\n"
            f"unless on ({ctx.by_pod}) pod_model:llm_kv_cache_usage_ratio:max >= {_t(ctx, b, 'kv_usage_below')}"]


def _prefill_bound(ctx: Ctx) -> list[str]:
    b = "prefill_bound"
    return [f"pod_model:llm_time_to_first_token_seconds:p95_rate5m > {_t(ctx, b, 'ttft_p95_seconds')}\n"
            f"and on ({ctx.by_pod}) {_traffic(ctx)}\n"
            f"unless on ({ctx.by_pod}) "
            f"pod_model:llm_request_queue_time_seconds:p95_rate5m >= {_t(ctx, b, 'queue_p95_below_seconds')}"]


def _decode_bound(ctx: Ctx) -> list[str]:
    return [f"pod_model:llm_inter_token_latency_seconds:p95_rate5m > {_t(ctx, 'decode_bound', 'itl_p95_seconds')}\n"
            f"and on ({ctx.by_pod}) {_traffic(ctx)}"]


def _low_throughput(ctx: Ctx) -> list[str]:
    # Value: the pod's GPU utilization; labels: the engine series' (group_left keeps engine and model).
    return [f"(pod_model:llm_requests_waiting:sum > 0) * 0\n"
            f"+ on ({ctx.on_pod}) group_left () pod:DCGM_FI_DEV_GPU_UTIL:avg_ratio\n"
            f"< {_t(ctx, 'low_throughput', 'gpu_util_below')}"]


def _gpu_underutilized(ctx: Ctx) -> list[str]:
    return [f"(pod_model:llm_requests_waiting:sum == 0 and on ({ctx.by_pod}) {_traffic(ctx)}) * 0\n"
            f"+ on ({ctx.on_pod}) group_left () pod:DCGM_FI_DEV_GPU_UTIL:avg_ratio\n"
            f"< {_t(ctx, 'gpu_underutilized', 'gpu_util_below')}"]


def _cache_inefficiency(ctx: Ctx) -> list[str]:
    b = "cache_inefficiency"
    return [f"pod_model:llm_prefix_cache_hit_tokens_per_queried_tokens:ratio_rate5m < {_t(ctx, b, 'hit_ratio_below')}\n"
            f"and on ({ctx.by_pod}) pod_model:llm_prompt_tokens:rate5m > {_t(ctx, b, 'min_prompt_tokens_per_second')}"]


def _request_errors(ctx: Ctx) -> list[str]:
    return [f"pod_model:llm_requests_errored_per_finished:ratio_rate5m > {_t(ctx, 'request_errors', 'error_share')}\n"
            f"and on ({ctx.by_pod}) {_traffic(ctx)}"]


def _engine_stalled(ctx: Ctx) -> list[str]:
    tokens = ctx.sel("llm_generation_tokens_total")
    return [f"pod_model:llm_requests_running:sum > 0\n"
            f"and on ({ctx.by_pod}) sum by ({ctx.by_pod}) (increase({tokens}[{ctx.w('2m')}])) == 0"]


def _engine_down(ctx: Ctx) -> list[str]:
    return [f"{ctx.sel('llm_upstream_up')} == 0\nand on ({ctx.on_pod}) {ctx.sel('up')} == 1"]


def _engine_startup_hang(ctx: Ctx) -> list[str]:
    window = ctx.w(f"{int(ctx.config.threshold('engine_startup_hang', 'startup_seconds'))}s")
    up = ctx.sel("up")
    return [f"max_over_time({ctx.sel('llm_upstream_up')}[{window}]) == 0\n"
            f"and on ({ctx.on_pod}) min_over_time({up}[{window}]) == 1\n"
            f"and on ({ctx.on_pod}) ({up} offset {window}) == 1"]


def _gpu_memory_pressure(ctx: Ctx) -> list[str]:
    return [f"{ctx.sel('DCGM_FI_DEV_FB_FREE')} < {_t(ctx, 'gpu_memory_pressure', 'fb_free_mib_below')}"]


def throttle_bits() -> tuple[int, ...]:
    return tuple(1 << i for i in range(32) if m.CLOCK_EVENT_THROTTLE_MASK & (1 << i))


def _gpu_throttling(ctx: Ctx) -> list[str]:
    reasons = ctx.sel("DCGM_FI_DEV_CLOCKS_EVENT_REASONS")
    bits = " + ".join(f"floor({reasons} / {bit}) % 2" for bit in throttle_bits())
    return [f"{reasons}\nand ({bits}) > 0"]


def _gpu_ecc_error(ctx: Ctx) -> list[str]:
    w = ctx.w(COUNTER_WINDOW)
    return [f"increase({ctx.sel('DCGM_FI_DEV_ECC_DBE_VOL_TOTAL')}[{w}]) > 0\n"
            f"or increase({ctx.sel('DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS')}[{w}]) > 0"]


def _host_memory_pressure(ctx: Ctx) -> list[str]:
    b = "host_memory_pressure"
    used_share = Decimal(1) - dec(ctx.config.threshold(b, "available_ratio_below"))
    avail, total = ctx.sel("llm_host_memory_available_bytes"), ctx.sel("llm_host_memory_total_bytes")
    usage, limit = ctx.sel("llm_host_cgroup_memory_usage_bytes"), ctx.sel("llm_host_cgroup_memory_limit_bytes")
    return [f"1 - {avail} / {total} > {num(used_share)}\n"
            f"or {usage} / {limit} > {_t(ctx, b, 'cgroup_usage_ratio_above')}"]


def _host_cpu_saturation(ctx: Ctx) -> list[str]:
    return [f"{ctx.sel('llm_host_cpu_utilization_ratio')} > {_t(ctx, 'host_cpu_saturation', 'cpu_ratio_above')}"]


def _exporter_down(ctx: Ctx) -> list[str]:
    up = ctx.sidecar_up()
    return [f"{up} == 0", f"absent({up})"]


#: The metric signal of every bottleneck whose signal is "metric" or "metric+log" (log-only ones: absent).
SIGNALS: Mapping[str, Callable[[Ctx], list[str]]] = MappingProxyType({
    "kv_cache_pressure": _kv_cache_pressure,
    "preemption_storm": _preemption_storm,
    "queue_buildup": _queue_buildup,
    "prefill_bound": _prefill_bound,
    "decode_bound": _decode_bound,
    "low_throughput": _low_throughput,
    "gpu_underutilized": _gpu_underutilized,
    "cache_inefficiency": _cache_inefficiency,
    "request_errors": _request_errors,
    "engine_stalled": _engine_stalled,
    "engine_down": _engine_down,
    "engine_startup_hang": _engine_startup_hang,
    "gpu_memory_pressure": _gpu_memory_pressure,
    "gpu_throttling": _gpu_throttling,
    "gpu_xid_error": lambda ctx: [],  # split by Xid class below
    "gpu_ecc_error": _gpu_ecc_error,
    "host_memory_pressure": _host_memory_pressure,
    "host_cpu_saturation": _host_cpu_saturation,
    "exporter_down": _exporter_down,
})


def _xid_regex() -> str:
    return "|".join(tx.APPLICATION_XIDS)


def _labels(b: tx.Bottleneck, severity: str | None = None) -> dict[str, str]:
    return {"bottleneck": b.id, "severity": severity or b.severity, "component": b.component}


def _annotations(ctx: Ctx, b: tx.Bottleneck) -> dict[str, str]:
    return {"summary": b.summary, "description": b.description, "runbook_url": ctx.config.runbook_url(b.id)}


def _log_expr(ctx: Ctx, signatures: tuple[str, ...], *matchers: str) -> str:
    signature = 'signature=~"' + "|".join(signatures) + '"'
    return f"increase({ctx.sel('llm_log_events_total', signature, *matchers)}[{ctx.w(LOG_WINDOW)}]) > 0"


def _increased(selector: str, window: str) -> str:
    """A counter that rose within ``window``, including a series born within it.

    Counters labelled by what happened (``DCGM_EXP_XID_ERRORS_COUNT{xid}``, an Xid code the log collector did
    not pre-create) appear with their first event already counted, and ``increase()`` cannot see a series'
    first sample; the ``unless ... offset`` half catches them. (A Prometheus with no history yet sees every
    series as new: old non-zero Xid counts then alert once, for one window.)
    """
    return f"increase({selector}[{window}]) > 0\nor\n({selector} unless {selector} offset {window}) > 0"


def _either(exprs: list[str]) -> str:
    """One expression from several signals (``or``): one rule per alert name and severity."""
    if len(exprs) == 1:
        return exprs[0]
    return "\nor\n".join(f"(\n{e}\n)" for e in exprs)


def alert_rules(ctx: Ctx, b: tx.Bottleneck) -> list[Rule]:
    """The rules of one bottleneck: one per severity (GPUXidError: critical and warning), metric and log
    signals joined by ``or``."""
    for_ = ctx.w(ctx.config.for_(b.id))
    if b.id == "gpu_xid_error":
        w = ctx.w(COUNTER_WINDOW)
        rules = []
        for severity, op in (("critical", "!~"), ("warning", "=~")):
            xid = f'xid{op}"{_xid_regex()}"'
            signature = 'signature=~"' + "|".join(b.log_signatures) + '"'
            exprs = [_increased(ctx.sel("DCGM_EXP_XID_ERRORS_COUNT", xid), w),
                     _increased(ctx.sel("llm_log_events_total", signature, xid), ctx.w(LOG_WINDOW))]
            rules.append(Rule(alert=b.alert, for_=for_, labels=_labels(b, severity), annotations=_annotations(ctx, b),
                              expr=_either(exprs)))
        return rules
    exprs = list(SIGNALS[b.id](ctx)) if b.signal in ("metric", "metric+log") else []
    if b.log_signatures:
        exprs.append(_log_expr(ctx, b.log_signatures))
    return [Rule(alert=b.alert, expr=_either(exprs), for_=for_, labels=_labels(b), annotations=_annotations(ctx, b))]


def alert_groups(ctx: Ctx) -> tuple[Group, ...]:
    by_component: dict[str, list[Rule]] = {}
    for b in tx.BOTTLENECKS:
        by_component.setdefault(b.component, []).extend(alert_rules(ctx, b))
    return tuple(Group(f"optiinfra.alerts.{component}", tuple(rules)) for component, rules in by_component.items())
