"""The signal spec of every bottleneck: what its alert reads and how it is shown, tested, explained and planned.

A taxonomy row (``optiinfra.taxonomy.Bottleneck``) says what a bottleneck *is* and carries its signal spec, built
from the types of this module; everything else is derived from that one row:

- ``condition`` (a :class:`Condition`: series, comparison, threshold name, co-conditions, traffic guard, join)
  -> the alerting rule (``optiinfra.rules.alerts`` renders it; ``Custom`` is the escape hatch for the few
  irregular signals: Xid classes, start-up hang, throttle bits, an absent sidecar);
- ``panel`` -> the Bottlenecks dashboard row (the main signal is the condition's own series against the same
  threshold, unless the panel names others);
- ``fixture`` -> the promtool cases ``fires`` / ``quiet`` / ``idle`` (``optiinfra.rules.testgen`` runs it);
- ``runbook`` -> the runbook prose, whose ``{threshold}`` fields are filled from the config;
- ``plan`` -> the planner's actions, most preferred first, and the metric a plan is expected to move. A spec
  without a plan is a diagnosis record; a plan without actions cannot be built.

Validation runs when a row is built (import time for the catalogue): threshold names, series kinds and plans
are checked here, so a broken spec fails at import, never inside a running receiver.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from optiinfra import metrics as m

if TYPE_CHECKING:
    from optiinfra.grafana.model import Need
    from optiinfra.rules.promql import Ctx
    from optiinfra.rules.testgen import Kit
    from optiinfra.taxonomy import ActionId, Bottleneck

Op = Literal[">", ">=", "<", "=="]
SeriesKind = Literal["rule", "raw", "increase", "ratio", "throttle", "sidecar_up"]
Series_ = dict[str, str]


class SpecError(ValueError):
    """A bottleneck spec that cannot be derived from (raised when the row is built)."""


@dataclass(frozen=True)
class Series:
    """One series (or small expression) a signal reads; alerts and panels render it the same way.

    ``rule``: a recording rule (already filtered by the config's selectors); ``raw``: a raw series, selectors
    spliced in; ``increase``: ``increase(raw[window])`` (panels: ``$__rate_interval``), summed ``by`` the
    labels in ``sum_by`` (``pod_model``: the per-pod identity of engine series); ``ratio``: ``raw / other``,
    ``1 - ...`` when ``complement``; ``throttle``: the count of throttle bits set in a clock-event bitmask;
    ``sidecar_up``: the sidecar target's ``up`` (panels). With ``over`` (``max``, ``avg``, ...) a ``rule`` or
    ``raw`` series is read as ``<over>_over_time(series[window])``: a window aggregate for gauges that jump
    between samples (real KV usage), so one sample neither makes nor breaks a condition.
    """

    kind: SeriesKind
    metric: str
    legend: str = ""
    """The panel legend."""
    window: str = ""
    other: str = ""
    complement: bool = False
    sum_by: str = ""
    needs: Need | None = None
    over: str = ""

    def __post_init__(self) -> None:
        if self.over and (self.kind not in ("rule", "raw") or not self.window):
            raise SpecError(f"{self.metric}: an over-time aggregate reads a rule or raw series over a window")
        if self.kind == "increase" and not self.window and not self.sum_by:
            raise SpecError(f"{self.metric}: an increase needs a window")
        if (self.kind == "ratio") != bool(self.other):
            raise SpecError(f"{self.metric}: a ratio (and only a ratio) has a denominator")


def rule(name: str, legend: str = "") -> Series:
    return Series("rule", name, legend)


def raw(metric: str, legend: str = "") -> Series:
    return Series("raw", metric, legend)


@dataclass(frozen=True)
class Term:
    """``series op threshold``: ``threshold`` names one of the bottleneck's thresholds, or is a literal."""

    series: Series
    op: Op
    threshold: str | int = 0


@dataclass(frozen=True)
class Condition:
    """A regular signal: ``main`` and every ``also`` (a tuple inside it: any of them) joined ``on`` the pod,
    then the traffic guard, minus every ``unless``, or any ``either``. With ``gate`` the alert's value is the
    main series (a pod-level series joined ``group_left`` onto the engine series) and the gates only select."""

    main: Term
    also: tuple[Term | tuple[Term, ...], ...] = ()
    traffic: bool = False
    """The per-pod minimum-traffic guard (``pod_model:llm_requests_finished:rate5m >= min_request_rate``)."""
    unless: tuple[Term, ...] = ()
    either: tuple[Term, ...] = ()
    gate: tuple[Term, ...] = ()
    join: Literal["pod_model", "pod"] = "pod_model"

    def terms(self) -> tuple[Term, ...]:
        nested = (t for a in self.also for t in (a if isinstance(a, tuple) else (a,)))
        return (self.main, *nested, *self.unless, *self.either, *self.gate)


@dataclass(frozen=True)
class Custom:
    """Escape hatch for an irregular signal: ``exprs(ctx, bottleneck)`` gives the expressions per severity.
    With ``own_logs`` the function also covers the log signatures (else they are added as usual)."""

    exprs: Callable[[Ctx, Bottleneck], Mapping[str, list[str]]]
    own_logs: bool = False


@dataclass(frozen=True)
class Panel:
    """The Bottlenecks dashboard row: by default the condition's main series against its threshold."""

    unit: str
    context: tuple[Series, ...] = ()
    context_title: str = ""
    context_unit: str = "short"
    context_threshold: str = ""
    main: tuple[Series, ...] = ()
    """Series to plot instead of the condition's main series (events, irregular signals)."""
    up_is_healthy: bool = False
    """A 0/1 (or rate) signal where 1 and above is healthy: green from 1, red below."""
    needs: Need | None = None


@dataclass(frozen=True)
class Runbook:
    """Runbook facts. ``{name:fmt}`` fields are the bottleneck's thresholds (config values); ``{fleet}``,
    ``{instance}``, ``{bottlenecks}``, ``{slos}``, ``{gpus}`` the dashboards' titles."""

    meaning: str
    """What is going on when it fires, and why it matters."""
    confirm: str
    """How to confirm it on the dashboards (names the dashboards and the series behind the panels)."""


@dataclass(frozen=True)
class Plan:
    """What the planner may propose, most preferred first, and what a plan is expected to move."""

    actions: tuple[ActionId, ...]
    metric: str
    """A metric of ``optiinfra.metrics`` the plan is expected to move."""
    direction: Literal["up", "down"]

    def __post_init__(self) -> None:
        if not self.actions:
            raise SpecError("a plan needs at least one action (a bottleneck without actions has no plan)")
        if self.metric not in m.by_name():
            raise SpecError(f"expected-impact metric {self.metric!r} is not in optiinfra.metrics")


@dataclass(frozen=True)
class Fixture:
    """Input series (selector text -> expanding notation) and, when the alert fires, its labels and value."""

    series: Series_ = field(default_factory=dict)
    alerts: list[tuple[dict[str, str], float]] = field(default_factory=list)


@dataclass
class Cases:
    """The promtool cases of one alert rule: it fires, stays quiet one signal short, and idle without traffic."""

    fires: Fixture
    quiet: Fixture
    idle: Fixture
    fires_log: Fixture | None = None
    absent_alerts: list[tuple[dict[str, str], float]] = field(default_factory=list)
    hold: str = "6m"
    """How long the condition is held before eval (on top of the rule's ``for``)."""


def threshold_names(condition: Condition | Custom | None, panel: Panel | None) -> set[str]:
    """The threshold names a spec refers to (each must be one of its row's thresholds)."""
    terms = condition.terms() if isinstance(condition, Condition) else ()
    names = {t.threshold for t in terms if isinstance(t.threshold, str)}
    return names | ({panel.context_threshold} if panel is not None and panel.context_threshold else set())


def runbook_text(runbook: Runbook, thresholds: Mapping[str, float]) -> tuple[str, str]:
    """Meaning and confirmation with the dashboards' titles and the threshold values filled in."""
    return (runbook.meaning.format(**DASHBOARD_TITLES, **thresholds),
            runbook.confirm.format(**DASHBOARD_TITLES, **thresholds))


DASHBOARD_TITLES: Mapping[str, str] = {
    "fleet": "OptiInfra / Fleet overview", "instance": "OptiInfra / Instance",
    "bottlenecks": "OptiInfra / Bottlenecks", "slos": "OptiInfra / SLOs", "gpus": "OptiInfra / GPUs",
}


def render(s: Series, *, sel: Callable[[str], str], rule: Callable[[str], str], window: Callable[[str], str],
           by_pod: str, sidecar: str, sep: str = " / ") -> str:
    """A series as PromQL; alerts and panels pass their own selectors and windows."""
    if s.over:
        inner = rule(s.metric) if s.kind == "rule" else sel(s.metric)
        return f"{s.over}_over_time({inner}[{window(s.window)}])"
    if s.kind == "rule":
        return rule(s.metric)
    if s.kind == "ratio":
        return f"{'1 - ' if s.complement else ''}{sel(s.metric)}{sep}{sel(s.other)}"
    if s.kind == "increase":
        inner = f"increase({sel(s.metric)}[{window(s.window)}])"
        by = by_pod if s.sum_by == "pod_model" else s.sum_by
        return f"sum by ({by}) ({inner})" if by else inner
    if s.kind == "throttle":
        return throttle_count(sel(s.metric))
    return sidecar if s.kind == "sidecar_up" else sel(s.metric)


def throttle_bits() -> tuple[int, ...]:
    """The thermal and power bits of the clock-event reasons bitmask."""
    return tuple(1 << i for i in range(32) if m.CLOCK_EVENT_THROTTLE_MASK & (1 << i))


# ---- the series the specs share (the alert and the panel read the same object) ----------------------------

KV = rule("pod_model:llm_kv_cache_usage_ratio:max", "KV usage {{pod}} {{model}}")
WAITING = rule("pod_model:llm_requests_waiting:sum", "waiting {{pod}} {{model}}")
#: Real KV usage and queue length jump from one scrape to the next under pressure (vLLM 0.32: 0.6..1.0 between
#: 1 s scrapes while preempting): the conditions read their maximum over this window, not one sample.
JUMPY_WINDOW = "2m"
#: Requests waiting for scheduling capacity (vLLM's own reason; engines without it have no such series).
WAITING_FOR_CAPACITY = rule("pod_model:llm_requests_waiting_for_capacity:sum", "waiting for capacity {{pod}} {{model}}")
KV_MAX = Series("rule", KV.metric, "KV usage (max over 2m) {{pod}} {{model}}", window=JUMPY_WINDOW, over="max")
WAITING_MAX = Series("rule", WAITING.metric, "waiting (max over 2m) {{pod}} {{model}}", window=JUMPY_WINDOW,
                     over="max")
RUNNING = rule("pod_model:llm_requests_running:sum", "running {{pod}} {{model}}")
PREEMPTIONS = rule("pod_model:llm_preemptions:rate5m", "preemptions/s {{pod}}")
TRAFFIC = rule("pod_model:llm_requests_finished:rate5m", "requests/s {{pod}} {{model}}")
QUEUE_P95 = rule("pod_model:llm_request_queue_time_seconds:p95_rate5m", "queue p95 {{pod}} {{model}}")
TTFT_P95 = rule("pod_model:llm_time_to_first_token_seconds:p95_rate5m", "TTFT p95 {{pod}} {{model}}")
ITL_P95 = rule("pod_model:llm_inter_token_latency_seconds:p95_rate5m", "ITL p95 {{pod}} {{model}}")
POD_GPU = rule("pod:DCGM_FI_DEV_GPU_UTIL:avg_ratio", "GPU util {{pod}}")
UPSTREAM = raw("llm_upstream_up", "engine up {{pod}}")
HOST_MEM = Series("ratio", "llm_host_memory_available_bytes", "host memory used {{pod}}",
                  other="llm_host_memory_total_bytes", complement=True)
CGROUP_MEM = Series("ratio", "llm_host_cgroup_memory_usage_bytes", "container / limit {{pod}}",
                    other="llm_host_cgroup_memory_limit_bytes", needs="cgroup limit")
ECC_DBE = Series("increase", "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", "ECC DBE GPU {{gpu}} {{pod}}", window="5m")
REMAPPED = Series("increase", "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS", "remapped rows GPU {{gpu}} {{pod}}",
                  window="5m")
XID = Series("increase", "DCGM_EXP_XID_ERRORS_COUNT", "Xid {{xid}} GPU {{gpu}} {{pod}}", sum_by="pod, gpu, xid")
PROMPT_TOKENS = rule("pod_model:llm_prompt_tokens:rate5m", "prompt tokens/s {{pod}} {{model}}")
CLOCK_REASONS = "DCGM_FI_DEV_CLOCKS_EVENT_REASONS"

#: The window of counter alerts (ECC, Xid) and of log-signature alerts.
COUNTER_WINDOW = "5m"
LOG_WINDOW = "5m"


def guarded(unit: str) -> Panel:
    """The panel of a rate signal whose co-condition is the traffic guard."""
    return Panel(unit, context=(TRAFFIC,), context_title="Traffic (guard)", context_unit="reqps")


# ---- fixtures (the series that make each alert fire, stay quiet one signal short, and idle) ---------------

def kv_fixture(k: Kit) -> Cases:
    # Rank 0 as observed on a real vLLM 0.32 under pressure: usage jumps between full and ~0.63 and the queue
    # between 7 and 0 from one sample to the next (the condition must hold through the jumps).
    full, low = (k.thr("kv_usage") + 1) / 2, round(k.thr("kv_usage") * 0.7, 3)
    kv = {f"llm_kv_cache_usage_ratio{k.lbl(k.rank('0'))}": k.alternating(full, low),
          f"llm_kv_cache_usage_ratio{k.lbl(k.rank('1'))}": k.gauge(0.25)}
    waiting = f"llm_requests_waiting{k.lbl(k.rank('0'))}"
    return Cases(
        fires=Fixture({**kv, waiting: k.alternating(k.thr("min_waiting") + 7, 0), **k.traffic},
                      [(k.pod_model, full)]),
        quiet=Fixture({**kv, waiting: k.gauge(0), f"llm_preemptions_total{k.lbl(k.eng)}": k.counter(0),
                       **k.traffic}),
        idle=Fixture({f"llm_kv_cache_usage_ratio{k.lbl(k.rank('0'))}": k.gauge(0), waiting: k.gauge(0),
                      **k.no_traffic}))


def preemption_fixture(k: Kit) -> Cases:
    rate = k.thr("preemptions_per_second") * 2
    series = f"llm_preemptions_total{k.lbl(k.eng)}"
    return Cases(fires=Fixture({series: k.counter(rate), **k.traffic}, [(k.pod_model, rate)]),
                 quiet=Fixture({series: k.counter(rate / 4), **k.traffic}),
                 idle=Fixture({series: k.counter(0), **k.no_traffic}))


def queue_fixture(k: Kit) -> Cases:
    queue = "llm_request_queue_time_seconds"
    bounds = m.NATIVE_BUCKETS["vllm"][queue]
    slow = k.slow_bucket(bounds, k.thr("queue_p95_seconds"))
    kv = f"llm_kv_cache_usage_ratio{k.lbl(k.eng)}"
    # The waiting count as a real vLLM shows it under an admission limit: 0 every other scrape as a batch is admitted.
    waiting = f"llm_requests_waiting{k.lbl(k.eng)}"
    base = {**k.hist(queue, "vllm", slow, 1), waiting: k.alternating(4, 0), **k.traffic}
    return Cases(
        fires=Fixture({**base, kv: k.gauge(k.thr("kv_usage_below") / 2)}, [(k.pod_model, k.p_of(bounds, slow, 0.95))]),
        # Quiet: KV usage reaches the guard only every other sample (a KV-bound queue, sampled as it jumps).
        quiet=Fixture({**base, kv: k.alternating((k.thr("kv_usage_below") + 1) / 2, k.thr("kv_usage_below") / 2)}),
        idle=Fixture({**k.hist(queue, "vllm", slow, 0), waiting: k.gauge(0), **k.no_traffic}))


def prefill_fixture(k: Kit) -> Cases:
    ttft, queue = "llm_time_to_first_token_seconds", "llm_request_queue_time_seconds"
    tb, qb = m.NATIVE_BUCKETS["vllm"][ttft], m.NATIVE_BUCKETS["vllm"][queue]
    slow = k.slow_bucket(tb, k.thr("ttft_p95_seconds"))
    q_ok = k.fast_bucket(qb, k.thr("queue_p95_below_seconds"))
    q_slow = k.slow_bucket(qb, k.thr("queue_p95_below_seconds"))
    return Cases(
        fires=Fixture({**k.hist(ttft, "vllm", slow, 1), **k.hist(queue, "vllm", q_ok, 1), **k.traffic},
                      [(k.pod_model, k.p_of(tb, slow, 0.95))]),
        quiet=Fixture({**k.hist(ttft, "vllm", slow, 1), **k.hist(queue, "vllm", q_slow, 1), **k.traffic}),
        idle=Fixture({**k.hist(ttft, "vllm", slow, 0), **k.hist(queue, "vllm", q_ok, 0), **k.no_traffic}))


def decode_fixture(k: Kit) -> Cases:
    itl = "llm_inter_token_latency_seconds"
    bounds = m.NATIVE_BUCKETS["vllm"][itl]
    thr = k.thr("itl_p95_seconds")
    slow, fast = k.slow_bucket(bounds, thr), k.fast_bucket(bounds, thr / 2)
    return Cases(fires=Fixture({**k.hist(itl, "vllm", slow, 1), **k.traffic},
                               [(k.pod_model, k.p_of(bounds, slow, 0.95))]),
                 quiet=Fixture({**k.hist(itl, "vllm", fast, 1), **k.traffic}),
                 idle=Fixture({**k.hist(itl, "vllm", slow, 0), **k.no_traffic}))


def gpu_util_fixture(waiting: int, idle_util: Literal["low", "zero"]) -> Callable[[Kit], Cases]:
    def fixture(k: Kit) -> Cases:
        thr = k.thr("gpu_util_below")
        low, high = round(thr * 100 / 2), min(100, round(thr * 100 * 1.5) + 1)
        series = f"llm_requests_waiting{k.lbl(k.eng)}"
        base = {series: k.gauge(waiting), **k.traffic}
        return Cases(fires=Fixture({**base, **k.gpus(low)}, [(k.pod_model, low / 100)]),
                     quiet=Fixture({**base, **k.gpus(high)}),
                     idle=Fixture({series: k.gauge(0), **k.no_traffic, **k.gpus(0 if idle_util == "zero" else low)}))
    return fixture


def cache_fixture(k: Kit) -> Cases:
    thr, prompt = k.thr("hit_ratio_below"), k.thr("min_prompt_tokens_per_second") * 4
    q, h, p = (f"{name}{k.lbl(k.eng)}" for name in ("llm_prefix_cache_queried_tokens_total",
                                                    "llm_prefix_cache_hit_tokens_total", "llm_prompt_tokens_total"))
    base = {q: k.counter(prompt), p: k.counter(prompt)}
    return Cases(fires=Fixture({**base, h: k.counter(prompt * thr / 2)}, [(k.pod_model, thr / 2)]),
                 quiet=Fixture({**base, h: k.counter(prompt * min(1.0, thr * 2))}),
                 idle=Fixture({q: k.counter(0), h: k.counter(0), p: k.counter(0)}))


def errors_fixture(k: Kit) -> Cases:
    share = min(1.0, k.thr("error_share") * 2)

    def finished(err: float) -> Series_:
        return {f"llm_requests_finished_total{k.lbl({**k.eng, 'outcome': 'stop'})}": k.counter(1 - err),
                f"llm_requests_finished_total{k.lbl({**k.eng, 'outcome': 'error'})}": k.counter(err)}
    return Cases(fires=Fixture(finished(share), [(k.pod_model, share)]), quiet=Fixture(finished(share / 4)),
                 idle=Fixture({s: k.counter(0) for s in finished(0)}))


def stalled_fixture(k: Kit) -> Cases:
    running, tokens = f"llm_requests_running{k.lbl(k.eng)}", f"llm_generation_tokens_total{k.lbl(k.eng)}"
    return Cases(fires=Fixture({running: k.gauge(3), tokens: k.counter(0)}, [(k.pod_model, 3)]),
                 quiet=Fixture({running: k.gauge(3), tokens: k.counter(50)}),
                 idle=Fixture({running: k.gauge(0), tokens: k.counter(0)}))


def upstream_fixture(k: Kit) -> Cases:
    labels = {**k.raw, "engine": "vllm"}
    upstream, up = f"llm_upstream_up{k.lbl(labels)}", f"up{k.lbl(k.raw)}"
    return Cases(fires=Fixture({upstream: k.gauge(0), up: k.gauge(1)}, [(labels, 0)]),
                 quiet=Fixture({upstream: f"0+0x3 1+0x{k.n - 4}", up: k.gauge(1)}),
                 idle=Fixture({upstream: k.gauge(1), up: k.gauge(1), **k.no_traffic}))


def startup_fixture(k: Kit) -> Cases:
    """Fires: the engine never answered since the sidecar started. Quiet: an engine that was up and is stopped
    (a deliberate restart taking longer than the window): down the whole window, but it answered before."""
    labels = {**k.raw, "engine": "vllm"}
    upstream, up = f"llm_upstream_up{k.lbl(labels)}", f"up{k.lbl(k.raw)}"
    ever = f"llm_upstream_ever_up{k.lbl(labels)}"
    return Cases(fires=Fixture({upstream: k.gauge(0), up: k.gauge(1), ever: k.gauge(0)}, [(labels, 0)]),
                 quiet=Fixture({upstream: k.gauge(0), up: k.gauge(1), ever: k.gauge(1)}),
                 idle=Fixture({upstream: k.gauge(1), up: k.gauge(1), ever: k.gauge(1), **k.no_traffic}), hold="12m")


def fb_free_fixture(k: Kit) -> Cases:
    thr, gpu = k.thr("fb_free_mib_below"), k.gpu_labels(0, False)
    series = f"DCGM_FI_DEV_FB_FREE{k.lbl(gpu)}"
    return Cases(fires=Fixture({series: k.gauge(thr // 2)}, [(gpu, thr // 2)]),
                 quiet=Fixture({series: k.gauge(thr * 4)}), idle=Fixture({series: k.gauge(80000)}))


def throttle_fixture(k: Kit) -> Cases:
    gpu = k.gpu_labels(0, False)
    series, bit = f"{CLOCK_REASONS}{k.lbl(gpu)}", throttle_bits()[-1]
    return Cases(fires=Fixture({series: k.gauge(bit | 1)}, [(gpu, bit | 1)]),
                 quiet=Fixture({series: k.gauge(1)}), idle=Fixture({series: k.gauge(0)}))


def xid_fixture(k: Kit) -> Cases:
    xid = "79" if k.severity == "critical" else APPLICATION_XIDS[0]
    labels = {**k.gpu_labels(0, False), "xid": xid}
    log = {**k.raw, "source": "kernel", "signature": k.b.log_signatures[0], "xid": xid}
    series = f"DCGM_EXP_XID_ERRORS_COUNT{k.lbl(labels)}"
    return Cases(
        # The series is born with its first event (NVML counts it), as DCGM_EXP_XID_ERRORS_COUNT{xid} is.
        fires=Fixture({series: k.born_counter(1)}, [(labels, 1)]),
        quiet=Fixture({series: k.gauge(2)}),  # old errors only
        idle=Fixture({series: k.gauge(0)}),
        fires_log=Fixture({f"llm_log_events_total{k.lbl(log)}": k.step_counter(1)}, [(log, 1)]))


def ecc_fixture(k: Kit) -> Cases:
    gpu = k.gpu_labels(0, False)
    dbe = f"{ECC_DBE.metric}{k.lbl(gpu)}"
    return Cases(fires=Fixture({dbe: k.step_counter(3)}, [(gpu, 3)]),
                 quiet=Fixture({dbe: k.gauge(7), f"{REMAPPED.metric}{k.lbl(gpu)}": k.gauge(2)}),
                 idle=Fixture({dbe: k.gauge(0)}))


def host_memory_fixture(k: Kit) -> Cases:
    total = 100 * 2**30
    a, t = f"llm_host_memory_available_bytes{k.lbl(k.raw)}", f"llm_host_memory_total_bytes{k.lbl(k.raw)}"
    low = int(total * k.thr("available_ratio_below") / 2)
    return Cases(fires=Fixture({a: k.gauge(low), t: k.gauge(total)}, [(k.raw, 1 - low / total)]),
                 quiet=Fixture({a: k.gauge(total // 2), t: k.gauge(total)}),
                 idle=Fixture({a: k.gauge(total - 2**30), t: k.gauge(total)}))


def host_cpu_fixture(k: Kit) -> Cases:
    thr, series = k.thr("cpu_ratio_above"), f"llm_host_cpu_utilization_ratio{k.lbl(k.raw)}"
    return Cases(fires=Fixture({series: k.gauge((thr + 1) / 2)}, [(k.raw, (thr + 1) / 2)]),
                 quiet=Fixture({series: k.gauge(thr / 2)}), idle=Fixture({series: k.gauge(0)}))


def exporter_down_fixture(k: Kit) -> Cases:
    up = f"up{k.lbl(k.raw)}"
    return Cases(fires=Fixture({up: k.gauge(0)}, [(k.raw, 0)]), quiet=Fixture({up: k.gauge(1)}),
                 idle=Fixture({up: k.gauge(1)}), absent_alerts=[(k.sidecar_job_labels(), 1)])


# ---- irregular signals (escape hatch) --------------------------------------------------------------------

#: Application Xids (the engine's fault; restarting the engine helps): GPUXidError at warning. Every other
#: Xid (fatal: 48, 63, 64, 74, 79, 92, 94, 95, 119, ...) is critical.
APPLICATION_XIDS: tuple[str, ...] = ("13", "31", "43")


def increased(selector: str, window: str) -> str:
    """A counter that rose within ``window``, including a series born within it.

    Counters labelled by what happened (``DCGM_EXP_XID_ERRORS_COUNT{xid}``, an Xid code the log collector did
    not pre-create) appear with their first event already counted, and ``increase()`` cannot see a series'
    first sample; the ``unless ... offset`` half catches them. (A Prometheus with no history yet sees every
    series as new: old non-zero Xid counts then alert once, for one window.)
    """
    return f"increase({selector}[{window}]) > 0\nor\n({selector} unless {selector} offset {window}) > 0"


def xid_exprs(ctx: Ctx, b: Bottleneck) -> dict[str, list[str]]:
    """Critical for fatal Xids, warning for application ones; NVML counter or kernel-log signature."""
    out = {}
    signature = 'signature=~"' + "|".join(b.log_signatures) + '"'
    for severity, op in (("critical", "!~"), ("warning", "=~")):
        xid = f'xid{op}"{"|".join(APPLICATION_XIDS)}"'
        out[severity] = [increased(ctx.sel(XID.metric, xid), ctx.w(COUNTER_WINDOW)),
                         increased(ctx.sel("llm_log_events_total", signature, xid), ctx.w(LOG_WINDOW))]
    return out


def startup_hang_exprs(ctx: Ctx, b: Bottleneck) -> dict[str, list[str]]:
    """``llm_upstream_up`` never 1 over ``startup_seconds`` while the sidecar was up all along (and before), and
    the engine is *starting*, not stopped: it never answered since the sidecar started
    (``llm_upstream_ever_up`` 0), or its process (host collector) is the one that was there ``startup_seconds``
    ago (same start time). A deliberate stop or restart of an engine that was up is neither (its process is
    gone or new): LLMEngineDown covers an engine that stays down."""
    window = ctx.w(f"{int(ctx.config.threshold(b, 'startup_seconds'))}s")
    up, started = ctx.sel("up"), ctx.sel("llm_host_process_start_time_seconds")
    return {b.severity: [f"max_over_time({ctx.sel(UPSTREAM.metric)}[{window}]) == 0\n"
                         f"and on ({ctx.on_pod}) min_over_time({up}[{window}]) == 1\n"
                         f"and on ({ctx.on_pod}) ({up} offset {window}) == 1\n"
                         f"and on ({ctx.on_pod}) (\n"
                         f"  {ctx.sel('llm_upstream_ever_up')} == 0\n"
                         f"  or on ({ctx.on_pod}) {started} == ({started} offset {window})\n)"]}


def throttle_count(reasons: str) -> str:
    return " + ".join(f"floor({reasons} / {bit}) % 2" for bit in throttle_bits())


def throttle_exprs(ctx: Ctx, b: Bottleneck) -> dict[str, list[str]]:
    reasons = ctx.sel(CLOCK_REASONS)
    return {b.severity: [f"{reasons}\nand ({throttle_count(reasons)}) > 0"]}


def exporter_down_exprs(ctx: Ctx, b: Bottleneck) -> dict[str, list[str]]:
    up = ctx.sidecar_up()
    # No `up` at all is a ruler that sees no scraped data yet (a cold start, a remote-write/ingestion delay as
    # with vmalert over VictoriaMetrics), not a missing sidecar: the absent branch needs other targets' `up`.
    return {b.severity: [f"{up} == 0", f"absent({up})\nunless on () absent({ctx.sel('up')})"]}
