"""The user's one YAML config for every generated artifact: selectors, label names, per-bottleneck
threshold/``for`` overrides and SLOs (rules, dashboards), the runbook URL pattern, and the Alertmanager
routing and grouping, mixin-style. ``load_config(None)`` gives the defaults.

The published JSON Schema (``config.schema.json`` beside this file) is generated from this model
(``optiinfra generate``); a test keeps it current. The loader takes any bytes: it refuses what is not UTF-8,
larger than ``MAX_CONFIG_BYTES``, nested deeper than ``MAX_DEPTH``, or has a key twice; values are checked
for range and finiteness, durations are bounded and regexes compiled. Every error is one ``ConfigError``
line that names the key and says what to fix, never a pydantic dump or a traceback.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import urlsplit

import promql_parser
import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import ErrorDetails

from optiinfra import metrics as m
from optiinfra import taxonomy as tx
from optiinfra.cliutil import ConfigError, format_duration_ms, parse_duration_ms

__all__ = ["Config", "ConfigError", "format_duration_ms", "load_config", "parse_config", "parse_duration_ms"]

SCHEMA_PATH = Path(__file__).with_name("config.schema.json")

SliKind = Literal["ttft", "inter_token", "request_duration", "availability"]

#: Latency SLI -> the normalized histogram it reads.
SLI_HISTOGRAMS: Mapping[str, str] = {
    "ttft": "llm_time_to_first_token_seconds",
    "inter_token": "llm_inter_token_latency_seconds",
    "request_duration": "llm_request_duration_seconds",
}

#: Burn-rate tiers (long window, short window, factor, severity) of the multiwindow multi-burn-rate alerts.
FAST_TIERS: tuple[tuple[str, str, str], ...] = (("1h", "5m", "14.4"), ("6h", "30m", "6"))
SLOW_TIERS: tuple[tuple[str, str, str], ...] = (("1d", "2h", "3"), ("3d", "6h", "1"))
SLI_WINDOWS: tuple[str, ...] = ("5m", "30m", "1h", "2h", "6h", "1d", "3d")
#: Lowest objective the fast tier can fire for: 14.4 x (1 - objective) must stay below 1.
MIN_OBJECTIVE = Decimal(1) - Decimal(1) / Decimal("14.4")

_NAME_RE = re.compile(r"^[a-z][a-z0-9_-]*$")
_LABEL_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
#: An Alertmanager matcher as the route and the operator's AlertmanagerConfig both understand it.
MATCHER_RE = re.compile(r'^\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*$')

MAX_CONFIG_BYTES = 1024 * 1024
MAX_DEPTH = 32
MAX_NODES = 100_000
#: Longest ``for`` (the longest the kubernetes and node mixins use): a longer one hides a problem for longer
#: than acting on it takes, and the promtool fixtures replay the whole ``for`` sample by sample (a ``for`` of
#: one day makes the generated tests run for minutes).
MAX_FOR_MS = 3_600_000
#: Threshold bounds by unit: shares are 0..1, seconds at most a day, anything else finite and >= 0.
_UNIT_MAX = {"ratio": 1.0, "s": 86_400.0}
#: Regex constructs Go's RE2 (Prometheus) lacks; Python's ``re`` would accept them.
_NOT_RE2 = re.compile(r"\\[1-9]|\(\?P=|\(\?<?[=!]|\(\?>|\(\?\(|\\[ZAG]|[*+?}][+]")


def _check_duration(value: str, *, positive: bool = False, max_ms: int | None = None) -> str:
    ms = parse_duration_ms(value)
    if positive and ms == 0:
        raise ValueError(f"{value!r}: give a positive duration such as 30s, 5m or 4h")
    if max_ms is not None and ms > max_ms:
        raise ValueError(f"{value!r} is longer than the {format_duration_ms(max_ms)} allowed here")
    return value


def promql_string(value: str) -> str:
    """``value`` as a double-quoted PromQL string literal (regexes keep their backslashes)."""
    return json.dumps(value, ensure_ascii=False)


def check_regex(value: str) -> str:
    """A label-value regex Prometheus (Go RE2) accepts: it compiles, uses no construct RE2 lacks, and parses
    as a PromQL matcher. ValueError says what is wrong."""
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"{value!r} is not a regex ({exc})") from None
    found = _NOT_RE2.search(value)
    if found:
        raise ValueError(f"{value!r}: {found.group(0)!r} (backreference, lookaround, atomic group, possessive "
                         "quantifier or \\Z-style anchor) is not supported by Prometheus's RE2 regexes")
    try:
        promql_parser.parse(f"up{{model=~{promql_string(value)}}}")
    except ValueError as exc:
        raise ValueError(f"{value!r} is not a regex Prometheus accepts ({exc})") from None
    return value


def _label_name(value: str) -> str:
    if not _LABEL_RE.match(value):
        raise ValueError(f"{value!r} is not a Prometheus label name")
    return value


def _url_pattern(value: str, placeholder: str, sample: str, example: str) -> str:
    """An http(s) URL pattern whose one placeholder is ``{<placeholder>}``; ValueError says what to fix."""
    try:
        url = value.format(**{placeholder: sample})
    except (KeyError, IndexError, ValueError):
        raise ValueError(f"{value!r}: the only placeholder is {{{placeholder}}}; write a literal brace as "
                         "{{ or }}") from None
    parts = urlsplit(url)
    if f"{{{placeholder}}}" not in value or parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"{value!r}: give an http(s) URL with {{{placeholder}}} where the "
                         f"{'id' if placeholder == 'bottleneck' else 'dashboard uid'} goes, e.g. {example}")
    return value


def check_matchers(value: str) -> str:
    """PromQL label matchers written without braces (``job="x", namespace=~"llm-.*"``); ValueError otherwise."""
    if "{" in value or "}" in value:
        raise ValueError("write the matchers without braces, e.g. job=\"optiinfra\"")
    if value.strip():
        try:
            promql_parser.parse("up{" + value + "}")
        except ValueError as exc:
            raise ValueError(f"{value!r} is not a list of PromQL label matchers ({exc}); "
                             "write e.g. namespace=~\"llm-.*\", job=\"optiinfra\"") from None
    return value.strip()


Duration = Annotated[str, Field(description="Prometheus duration, e.g. 30s, 5m, 1h")]
#: A ``for`` or an evaluation interval: at most ``MAX_FOR_MS``.
ForDuration = Annotated[Duration, AfterValidator(lambda value: _check_duration(value, max_ms=MAX_FOR_MS))]
PositiveDuration = Annotated[Duration, AfterValidator(lambda value: _check_duration(value, positive=True))]
LabelName = Annotated[str, AfterValidator(_label_name)]
Matchers = Annotated[str, AfterValidator(check_matchers)]
Regex = Annotated[str, AfterValidator(check_regex)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Selectors(_Strict):
    series: Matchers = Field(
        default="", description="Label matchers spliced into every series selector of the rules, e.g. "
                        "'namespace=~\"llm-.*\"'. Empty: all series.")
    sidecar_job: Matchers = Field(
        default='job="optiinfra"', description="Matchers that select the sidecar's scrape target(s) in `up`, "
                                       "for OptiInfraExporterDown.")


class BottleneckOverride(_Strict):
    for_: ForDuration | None = Field(default=None, alias="for", description="Override of the alert's `for` duration.")
    thresholds: dict[str, float] = Field(default_factory=dict,
                                         description="Threshold name -> value (names from the taxonomy).")

    model_config = _Strict.model_config | ConfigDict(populate_by_name=True)


class Slo(_Strict):
    name: str = Field(description="SLO name, the `slo` label of its rules and alerts.")
    sli: SliKind = Field(description="ttft, inter_token or request_duration (latency), or availability.")
    threshold: float | None = Field(
        default=None, description="Latency SLOs: seconds; must be a native bucket boundary of every engine the SLO "
                          "applies to.")
    objective: float = Field(description="Target share of good events, e.g. 0.99 (at least 0.931).")
    engines: list[m.Engine] | None = Field(
        default=None, description="Engines the SLO applies to; default: every engine that exports the SLI.")
    model: Regex | None = Field(default=None, description="Optional regex on the `model` label.")
    description: str = ""

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME_RE.match(value) or len(value) > 63:
            raise ValueError(f"SLO name {value!r}: use up to 63 lower-case letters, digits, '-' and '_'")
        return value

    @field_validator("objective")
    @classmethod
    def _objective(cls, value: float) -> float:
        if not 0 < value < 1:
            raise ValueError(f"objective {value} must be a share between 0 and 1, e.g. 0.99")
        if Decimal(repr(value)) < MIN_OBJECTIVE:
            raise ValueError(
                f"objective {value} is below {float(MIN_OBJECTIVE):.4f}: the fast burn-rate tier alerts at "
                f"14.4 x the error budget, and 14.4 x {Decimal(1) - Decimal(repr(value))} > 1 is an error ratio "
                "that can never happen, so the SLO could never page; raise the objective (e.g. 0.95, 0.99)")
        return value

    @model_validator(mode="after")
    def _threshold(self) -> Slo:
        if self.sli == "availability":
            if self.threshold is not None:
                raise ValueError(f"SLO {self.name!r}: an availability SLO takes no threshold")
            return self
        if self.threshold is None:
            raise ValueError(f"SLO {self.name!r}: a {self.sli} SLO needs a threshold in seconds")
        metric = SLI_HISTOGRAMS[self.sli]
        supported = [e for e in m.ENGINES if metric in m.NATIVE_BUCKETS[e]]
        for engine in self.engines or []:
            if engine not in supported:
                raise ValueError(f"SLO {self.name!r}: {engine} does not export {metric} "
                                 f"(engines with it: {', '.join(supported)})")
        for engine in self.applies_to():
            bounds = m.NATIVE_BUCKETS[engine][metric]
            if self.threshold not in bounds:
                near = ", ".join([f"below {b!r}" for b in bounds if b < self.threshold][-1:]
                                 + [f"above {b!r}" for b in bounds if b > self.threshold][:1])
                raise ValueError(
                    f"SLO {self.name!r}: threshold {self.threshold!r}s is not a bucket boundary of {engine}'s "
                    f"{metric} (nearest boundaries: {near}); a latency SLI counts the bucket at the threshold, "
                    "so pick a boundary or narrow `engines`")
        return self

    def applies_to(self) -> tuple[m.Engine, ...]:
        """Engines this SLO's rules select."""
        if self.engines:
            return tuple(e for e in m.ENGINES if e in self.engines)
        if self.sli == "availability":
            return m.ENGINES
        metric = SLI_HISTOGRAMS[self.sli]
        return tuple(e for e in m.ENGINES if metric in m.NATIVE_BUCKETS[e])


def _default_slos() -> list[Slo]:
    return [
        Slo(name="ttft-vllm", sli="ttft", threshold=2.5, objective=0.99, engines=["vllm"],
            description="99% of vLLM requests get their first token within 2.5s."),
        Slo(name="ttft-sglang", sli="ttft", threshold=2.0, objective=0.99, engines=["sglang"],
            description="99% of SGLang requests get their first token within 2s."),
        Slo(name="inter-token", sli="inter_token", threshold=0.2, objective=0.99,
            description="99% of decode steps take at most 200ms (vLLM, SGLang)."),
        Slo(name="availability", sli="availability", objective=0.99,
            description="99% of finished requests do not end in an error."),
    ]


class PrometheusRuleOptions(_Strict):
    namespace: str = Field(default="monitoring", description="Namespace of the PrometheusRule manifest.")
    labels: dict[str, str] = Field(
        default_factory=lambda: {"app.kubernetes.io/name": "optiinfra"},
        description="Labels of the PrometheusRule; they must match your Prometheus CR's ruleSelector "
                    "(kube-prometheus-stack: release=<helm release>).")


DEFAULT_RECEIVER_URL = "http://optiinfra-receiver:9095"


class AlertmanagerOptions(_Strict):
    """The Alertmanager config's route to the receiver (``optiinfra alertmanager-config`` flags override it)."""

    receiver_url: str = Field(default=DEFAULT_RECEIVER_URL,
                              description="Base URL of the receiver; /api/v1/alerts is appended.")
    credentials_file: str = Field(
        default="/etc/alertmanager/secrets/optiinfra-token",
        description="Bearer token file as Alertmanager sees it; empty for no authorization header.")
    matchers: list[str] = Field(
        default_factory=list, description="Extra Alertmanager matchers the route also requires, e.g. "
                                          "'cluster=\"eu-1\"' (the bottleneck matcher is always there).")
    group_by: list[str] = Field(
        default_factory=lambda: ["namespace", "pod", "instance", "model", "bottleneck"],
        description="Labels one notification groups by: the receiver reads every alert of a notification, so "
                    "this only batches one target's bottleneck into one request.")
    inhibit_equal: list[str] = Field(
        default_factory=lambda: ["namespace", "pod"],
        description="Labels an inhibiting alert must share with the alerts it silences (performance sources "
                    "also need the same `model`).")
    group_wait: PositiveDuration = Field(default="10s", description="Wait before the first notification of a group.")
    group_interval: PositiveDuration = Field(default="1m", description="Wait before notifying a group's changes.")
    repeat_interval: PositiveDuration = Field(default="4h", description="Re-send a still-firing group after this.")
    resolve_timeout: PositiveDuration = Field(default="5m", description="The global resolve_timeout.")

    @field_validator("receiver_url")
    @classmethod
    def _receiver_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"{value!r}: give an http(s) URL such as {DEFAULT_RECEIVER_URL}")
        if parts.query or parts.fragment:
            raise ValueError(f"{value!r}: drop the query string or fragment")
        return value

    @field_validator("group_by", "inhibit_equal")
    @classmethod
    def _label_names(cls, value: list[str]) -> list[str]:
        for label in value:
            _label_name(label)
        if len(set(value)) != len(value):
            raise ValueError(f"{value}: a label is listed twice")
        return value

    @field_validator("matchers")
    @classmethod
    def _matchers(cls, value: list[str]) -> list[str]:
        for text in value:
            found = MATCHER_RE.match(text)
            if not found:
                raise ValueError(f"{text!r} is not an Alertmanager matcher; write e.g. cluster=\"eu-1\"")
            if found.group(2) in ("=~", "!~"):
                check_regex(found.group(3))
        return value


GpuSource = Literal["sidecar", "dcgm-exporter"]

#: Grafana uids of the generated dashboards (grafana/dashboards.py builds them under these; alerts link to them).
DASHBOARD_UIDS: Mapping[str, str] = {
    "fleet": "optiinfra-fleet", "instance": "optiinfra-instance", "bottlenecks": "optiinfra-bottlenecks",
    "slos": "optiinfra-slos", "gpus": "optiinfra-gpus", "efficiency": "optiinfra-efficiency",
}
#: The dashboard that explains an alert, by the alert's ``component`` label, and the dashboard variables its
#: link fills from the alert's labels (variable -> alert label template).
ALERT_DASHBOARDS: Mapping[str, tuple[str, tuple[tuple[str, str], ...]]] = {
    "engine": ("instance", (("namespace", "{{ $labels.namespace }}"), ("pod", "{{ $labels.pod }}"))),
    "host": ("instance", (("namespace", "{{ $labels.namespace }}"), ("pod", "{{ $labels.pod }}"))),
    "gpu": ("gpus", (("hostname", "{{ $labels.Hostname }}{{ $labels.hostname }}"),)),
    "slo": ("slos", (("namespace", "{{ $labels.namespace }}"), ("model", "{{ $labels.model }}"))),
}


class DcgmExporterOptions(_Strict):
    """How the rules and dashboards read NVIDIA dcgm-exporter's series (``gpu_source: dcgm-exporter``)."""

    selector: Matchers = Field(
        default="", description="Label matchers (without braces) that select dcgm-exporter's series, e.g. "
                                "'job=\"nvidia-dcgm-exporter\", exported_namespace=~\"llm-.*\"'; used instead of "
                                "selectors.series for GPU series (restrict the namespaces here, by the mapping "
                                "label). Empty: every DCGM_* series of a GPU allocated to a pod.")
    namespace_label: LabelName = Field(
        default="exported_namespace",
        description="Label holding the namespace of the pod a GPU is allocated to: exported_namespace when the "
                    "ServiceMonitor scrapes with honorLabels false (the dcgm-exporter chart's default), namespace "
                    "with honorLabels true.")
    pod_label: LabelName = Field(default="exported_pod",
                           description="Label holding the GPU's pod: exported_pod (honorLabels false) or pod.")
    container_label: LabelName = Field(
        default="exported_container",
        description="Label holding the GPU's container: exported_container (honorLabels false) or container.")

    def mapping(self) -> dict[str, str]:
        """Our label name -> dcgm-exporter's pod-mapping label name."""
        return {"namespace": self.namespace_label, "pod": self.pod_label, "container": self.container_label}


class Cost(_Strict):
    """What a GPU-hour costs: the cost recording rules, the Efficiency & cost dashboard, plan savings, the report."""

    currency: str = Field(default="USD", min_length=1, max_length=16,
                          description="Currency the prices are in (shown next to every cost).")
    default_gpu_hour_price: float | None = Field(
        default=None, ge=0, description="Price of one GPU-hour for a GPU model not listed in gpu_hour_prices; "
                                        "unset: such GPUs have no price (their pods have no cost series).")
    gpu_hour_prices: dict[str, float] = Field(
        default_factory=dict, description="GPU model name (the `modelName` label, e.g. 'NVIDIA H100 80GB HBM3') "
                                          "-> price of one GPU-hour.")

    @field_validator("gpu_hour_prices")
    @classmethod
    def _prices(cls, value: dict[str, float]) -> dict[str, float]:
        for name, price in value.items():
            if not name.strip():
                raise ValueError("a GPU model name is empty; use the modelName label's value")
            if not 0 <= price < math.inf:
                raise ValueError(f"price {price!r} of {name!r} must be a finite number at least 0")
        return value

    @property
    def priced(self) -> bool:
        """Whether any GPU has a price (the cost rules exist only then)."""
        return self.default_gpu_hour_price is not None or bool(self.gpu_hour_prices)

    def price_of(self, gpu_model: str) -> float | None:
        """The price of one GPU-hour of ``gpu_model``; None when it has none."""
        return self.gpu_hour_prices.get(gpu_model, self.default_gpu_hour_price)


class Health(_Strict):
    """Weights of ``pod:llm_health_score``: 100 minus these, floored at 0."""

    critical: float = Field(default=40, ge=0, le=100, description="Points per firing critical bottleneck.")
    warning: float = Field(default=15, ge=0, le=100, description="Points per firing warning bottleneck.")
    info: float = Field(default=5, ge=0, le=100, description="Points per firing info bottleneck.")
    slo_burn: float = Field(default=25, ge=0, le=100,
                            description="Points per SLO whose burn-rate alert (fast or slow) fires on the pod.")


class Efficiency(_Strict):
    """Targets of ``pod_model:llm_efficiency_score``: each half scores 50 at or above its target."""

    gpu_utilization_target: float = Field(default=0.8, gt=0, le=1,
                                          description="Mean GPU utilization (0-1) that scores full marks.")
    kv_usage_target: float = Field(default=0.8, gt=0, le=1,
                                   description="KV-cache usage (0-1) that scores full marks.")


class Config(_Strict):
    selectors: Selectors = Field(default_factory=Selectors)
    identity_labels: list[str] = Field(
        default_factory=lambda: ["namespace", "pod", "instance"],
        description="Target labels that identify one inference pod; kept by every aggregation and alert.")
    min_request_rate: float = Field(
        default=0.01, gt=0, description="Requests/s below which an instance counts as idle: rate-based alerts and SLO "
                                "burn alerts never fire below it.")
    bottlenecks: dict[str, BottleneckOverride] = Field(
        default_factory=dict, description="Per-bottleneck overrides, keyed by taxonomy id.")
    slos: list[Slo] = Field(default_factory=_default_slos)
    slo_fast_for: ForDuration = Field(default="2m", description="`for` of LLMSLOBurnRateFast.")
    slo_slow_for: ForDuration = Field(default="15m", description="`for` of LLMSLOBurnRateSlow.")
    slo_scope: list[str] = Field(
        default_factory=lambda: ["namespace", "model"],
        description="Labels an SLO is aggregated by (its service): burn alerts page once per value set. Must "
                    "include `model` (the receiver matches a burn to the plans changing that model's replicas).")
    slo_interval: ForDuration = Field(
        default="1m", description="Evaluation interval of the SLO groups that record the short-window counts and "
                          "the windows up to 6h (and hold LLMSLOBurnRateFast).")
    slo_long_interval: ForDuration = Field(
        default="3m", description="Evaluation interval of the 1d/3d SLO groups (and LLMSLOBurnRateSlow); below "
                          "the rulers' 5m query lookback so their series never go stale between evaluations.")
    max_rules_per_group: int = Field(
        default=20, ge=2, description="Groups with more rules are split (Mimir's ruler refuses more than 20 "
                              "rules per group by default).")
    prometheus_rule: PrometheusRuleOptions = Field(default_factory=PrometheusRuleOptions)
    runbook_url_pattern: str = Field(
        default=f"{tx.RUNBOOK_BASE_URL}/{{bottleneck}}.md",
        description="Where the alerts' runbook_url and the dashboards' runbook links point; {bottleneck} is "
                    "replaced by the bottleneck id (slo_burn for the SLO alerts).")
    alertmanager: AlertmanagerOptions = Field(default_factory=AlertmanagerOptions)
    cluster_label: LabelName = Field(
        default="cluster", description="Label naming the cluster: every dashboard has a $cluster variable over "
                                       "it and filters every query by it; series without it match the variable's "
                                       "All value. Usually an external label (Thanos, Mimir); a target label must "
                                       "also be in identity_labels, or the recording rules drop it.")
    dashboard_url_pattern: str = Field(
        default="http://localhost:3000/d/{uid}",
        description="Your Grafana's dashboard URL; {uid} is replaced by the dashboard uid. Every alert's "
                    "dashboard_url annotation is this URL with the dashboard variables (cluster, namespace, pod, "
                    "host) filled from the alert's labels.")
    gpu_source: GpuSource = Field(
        default="sidecar",
        description="Who exports the DCGM_* GPU series: the sidecar (NVML, the engine's own GPUs, on the pod's "
                    "target) or NVIDIA dcgm-exporter (the GPU Operator's DaemonSet; run the sidecar with --no-gpu "
                    "then). With dcgm-exporter the rules map its pod-mapping labels (dcgm_exporter) onto "
                    "namespace/pod and join GPU and engine series on the identity labels without `instance`.")
    dcgm_exporter: DcgmExporterOptions = Field(default_factory=DcgmExporterOptions)
    cost: Cost = Field(default_factory=Cost, description="GPU-hour prices (optional): cost per token and plan savings.")
    health: Health = Field(default_factory=Health)
    efficiency: Efficiency = Field(default_factory=Efficiency)

    @field_validator("identity_labels")
    @classmethod
    def _labels(cls, value: list[str]) -> list[str]:
        for label in value:
            _label_name(label)
        if "pod" not in value:
            raise ValueError("identity_labels must include 'pod' (alerts and plans are per pod)")
        return value

    @field_validator("runbook_url_pattern")
    @classmethod
    def _runbook_url(cls, value: str) -> str:
        return _url_pattern(value, "bottleneck", "kv_cache_pressure", "https://example.com/runbooks/{bottleneck}.md")

    @field_validator("dashboard_url_pattern")
    @classmethod
    def _dashboard_url(cls, value: str) -> str:
        if urlsplit(value).fragment:
            raise ValueError(f"{value!r}: drop the fragment")
        return _url_pattern(value, "uid", "optiinfra-fleet", "https://grafana.example.com/d/{uid}")

    @field_validator("slo_scope")
    @classmethod
    def _slo_scope(cls, value: list[str]) -> list[str]:
        from optiinfra.rules.slo import check_scope  # noqa: PLC0415 (the rule module owns the SLO semantics)

        return check_scope(value)

    @model_validator(mode="after")
    def _slo_intervals(self) -> Config:
        from optiinfra.rules.slo import check_intervals  # noqa: PLC0415

        check_intervals(self.slo_interval, self.slo_long_interval)
        return self

    @field_validator("bottlenecks")
    @classmethod
    def _bottlenecks(cls, value: dict[str, BottleneckOverride]) -> dict[str, BottleneckOverride]:
        known = tx.by_id()
        for bid, override in value.items():
            if bid not in known:
                raise ValueError(f"unknown bottleneck {bid!r}; known: {', '.join(sorted(known))}")
            allowed = known[bid].thresholds
            for name, number in override.thresholds.items():
                if name not in allowed:
                    names = ", ".join(sorted(allowed)) or "none (this bottleneck has no thresholds)"
                    raise ValueError(f"bottleneck {bid!r} has no threshold {name!r}; its thresholds: {names}")
                unit = allowed[name].unit
                top = _UNIT_MAX.get(unit, math.inf)
                if not 0 <= number <= top:
                    bound = f"between 0 and {top:g}" if top < math.inf else "at least 0"
                    raise ValueError(f"bottleneck {bid!r} threshold {name!r} is {number!r}; a value in {unit} "
                                     f"must be {bound}")
        return value

    @field_validator("slos")
    @classmethod
    def _unique(cls, value: list[Slo]) -> list[Slo]:
        names = [s.name for s in value]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"SLO names must be unique; repeated: {', '.join(dupes)}")
        return value

    def _override(self, bottleneck: str | tx.Bottleneck) -> tuple[tx.Bottleneck, BottleneckOverride]:
        b = bottleneck if isinstance(bottleneck, tx.Bottleneck) else tx.get(bottleneck)
        return b, self.bottlenecks.get(b.id) or BottleneckOverride()

    def threshold(self, bottleneck: str | tx.Bottleneck, name: str) -> float:
        b, override = self._override(bottleneck)
        return override.thresholds.get(name, b.thresholds[name].value)

    def runbook_url(self, bottleneck_id: str) -> str:
        """The runbook link of a bottleneck (or ``slo_burn``) in the alerts and dashboards."""
        return self.runbook_url_pattern.format(bottleneck=bottleneck_id)

    def dashboard_url(self, component: str) -> str:
        """The ``dashboard_url`` annotation of an alert of ``component``: its dashboard, scoped by the alert's
        cluster and identity labels (Go templates Prometheus fills in)."""
        dashboard, variables = ALERT_DASHBOARDS[component]
        base = self.dashboard_url_pattern.format(uid=DASHBOARD_UIDS[dashboard])
        query = "&".join(f"var-{name}={value}" for name, value in
                         (("cluster", f"{{{{ $labels.{self.cluster_label} }}}}"), *variables))
        return f"{base}{'&' if '?' in base else '?'}{query}"

    def for_(self, bottleneck: str | tx.Bottleneck) -> str:
        b, override = self._override(bottleneck)
        return override.for_ or b.for_


def _where(loc: Sequence[int | str]) -> str:
    return ".".join(str(p) for p in loc) or "(top level)"


def _message(err: ErrorDetails) -> str:
    return " ".join(str(err["msg"]).removeprefix("Value error, ").split())


def format_errors(exc: ValidationError) -> str:
    """One readable message: one line per problem, naming the key."""
    lines = []
    for err in exc.errors():
        loc = tuple(str(p)[:80] for p in err["loc"])
        if err["type"] == "extra_forbidden":
            lines.append(f"unknown key {loc[-1]!r} at {_where(loc[:-1])}: remove it or check its spelling")
        elif err["type"] == "missing":
            lines.append(f"{_where(loc)}: required key missing")
        else:
            lines.append(f"{_where(loc)}: {_message(err)}")
    return "; ".join(lines)


def parse_config(data: Any, source: str = "config") -> Config:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of keys, got {type(data).__name__}")
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {format_errors(exc)}") from None


_M = TypeVar("_M", bound=BaseModel)


def with_overrides(section: _M, flags: Mapping[str, object]) -> _M:
    """``section`` with the command-line flags that were given (not None) in place of its keys, validated;
    a bad flag is a ConfigError naming the flag (``group_wait`` -> ``--group-wait``)."""
    given = {key: value for key, value in flags.items() if value is not None}
    try:
        return type(section).model_validate({**section.model_dump(by_alias=True), **given})
    except ValidationError as exc:
        err = exc.errors()[0]
        raise ConfigError(f"--{str(err['loc'][0]).replace('_', '-')}: {_message(err)}") from None


class _Loader(yaml.SafeLoader):
    """Safe YAML that refuses a key written twice in one mapping (PyYAML keeps the last silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
            except TypeError:
                continue  # an unhashable key: construct_mapping reports it
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    None, None, f"the key {key!r} appears twice in one mapping; keep one", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        if len(node.value) > 40:
            raise yaml.constructor.ConstructorError(
                None, None, f"an integer of {len(node.value)} characters; no setting needs more than 40",
                node.start_mark)
        value: int = super().construct_yaml_int(node)
        return value


_Loader.add_constructor("tag:yaml.org,2002:int", _Loader.construct_yaml_int)


def _check_depth(text: str, source: str) -> None:
    """Refuse nesting deeper than MAX_DEPTH before anything recursive (the composer) sees the document."""
    depth = 0
    for event in yaml.parse(text, Loader=_Loader):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                line = event.start_mark.line + 1 if event.start_mark else "?"
                raise ConfigError(f"{source}: line {line}: nested deeper than {MAX_DEPTH} levels; "
                                  "the config is a few levels deep")
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def _expanded_size(value: Any, memo: dict[int, int]) -> int:
    """Nodes of ``value`` with every alias expanded (validation walks them all), memoized per object."""
    if not isinstance(value, dict | list):
        return 1
    if id(value) not in memo:
        children = value.items() if isinstance(value, dict) else ((None, v) for v in value)
        memo[id(value)] = 1 + sum(_expanded_size(k, memo) + _expanded_size(v, memo) for k, v in children)
    return memo[id(value)]


def parse_yaml(data: bytes, source: str = "config") -> Any:
    """The YAML document in ``data`` as plain data; ConfigError (one line) for anything else."""
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{source}: {len(data)} bytes; a config is at most {MAX_CONFIG_BYTES} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{source}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
                          "save the file as UTF-8") from None
    try:
        _check_depth(text, source)
        document = yaml.load(text, Loader=_Loader)  # noqa: S506 (_Loader is a SafeLoader)
    except yaml.MarkedYAMLError as exc:
        where = f"line {exc.problem_mark.line + 1}: " if exc.problem_mark else ""
        what = " ".join(str(exc.problem or exc.context or "invalid").split())
        raise ConfigError(f"{source}: not valid YAML: {where}{what}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {' '.join(str(exc).split())}") from None
    except ConfigError:
        raise
    except ValueError as exc:  # date() of a scalar such as 2024-13-45: a 5,000-digit integer, 2024-13-45
        raise ConfigError(f"{source}: a value YAML cannot read: {' '.join(str(exc).split())[:200]}") from None
    if _expanded_size(document, {}) > MAX_NODES:
        raise ConfigError(f"{source}: more than {MAX_NODES} values once its aliases (*name) are expanded")
    return document


def read_yaml(path: Path, cannot_read: str = "cannot read config") -> Any:
    """The YAML document of the file at ``path`` as ``parse_yaml`` reads it; ConfigError ``<cannot_read> <path>:
    why`` when the file cannot be read."""
    try:
        with path.open("rb") as file:
            data = file.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{cannot_read} {path}: {exc.strerror or exc}") from None
    return parse_yaml(data, str(path))


def load_config(path: Path | str | None) -> Config:
    """The config from a YAML file, or the defaults when ``path`` is None. Raises ConfigError."""
    if path is None:
        return Config()
    path = Path(path)
    return parse_config(read_yaml(path), str(path))


def json_schema() -> dict[str, Any]:
    schema = Config.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "OptiInfra config"
    return schema


def render_schema() -> str:
    return json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"
