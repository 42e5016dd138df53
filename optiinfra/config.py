"""The user's one YAML config for the rules (and dashboards): selectors, label names, per-bottleneck
threshold/``for`` overrides and SLOs, mixin-style. ``load_config(None)`` gives the defaults.

The published JSON Schema (``config.schema.json`` beside this file) is generated from this model
(``python -m optiinfra.config --schema``); a test keeps it current. Errors are turned into one message
that names the key and says what to fix, never a pydantic dump.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

import promql_parser
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from optiinfra import metrics as m
from optiinfra import taxonomy as tx

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

_DURATION_RE = re.compile(r"^(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?$")
_UNITS_MS = (("y", 365 * 86_400_000), ("w", 7 * 86_400_000), ("d", 86_400_000), ("h", 3_600_000),
             ("m", 60_000), ("s", 1000), ("ms", 1))
_NAME_RE = re.compile(r"^[a-z][a-z0-9_-]*$")
_LABEL_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


class ConfigError(ValueError):
    """The config file is unreadable or invalid; the message says what to fix."""


def parse_duration_ms(text: str) -> int:
    """A Prometheus duration (``5m``, ``1h30m``, ``0s``) in milliseconds; ValueError when malformed."""
    match = _DURATION_RE.match(text.strip()) if text else None
    if not match or not any(match.groups()):
        raise ValueError(f"{text!r} is not a Prometheus duration (e.g. 30s, 5m, 1h30m)")
    return sum(int(g) * unit for g, (_, unit) in zip(match.groups(), _UNITS_MS, strict=True) if g)


def format_duration_ms(ms: int) -> str:
    """Milliseconds as the shortest Prometheus duration text (``90000`` -> ``1m30s``; 0 -> ``0s``)."""
    if ms == 0:
        return "0s"
    parts = []
    for suffix, unit in _UNITS_MS[2:]:  # d h m s ms: years/weeks only when written that way
        if ms >= unit:
            parts.append(f"{ms // unit}{suffix}")
            ms %= unit
    return "".join(parts)


def _check_duration(value: str) -> str:
    parse_duration_ms(value)
    return value


Duration = Annotated[str, Field(description="Prometheus duration, e.g. 30s, 5m, 1h")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Selectors(_Strict):
    series: str = Field(
        default="", description="Label matchers spliced into every series selector of the rules, e.g. "
                        "'namespace=~\"llm-.*\"'. Empty: all series.")
    sidecar_job: str = Field(
        default='job="optiinfra"', description="Matchers that select the sidecar's scrape target(s) in `up`, "
                                       "for OptiInfraExporterDown.")

    @field_validator("series", "sidecar_job")
    @classmethod
    def _matchers(cls, value: str) -> str:
        if "{" in value or "}" in value:
            raise ValueError("write the matchers without braces, e.g. job=\"optiinfra\"")
        if value.strip():
            try:
                promql_parser.parse("up{" + value + "}")
            except ValueError as exc:
                raise ValueError(f"{value!r} is not a list of PromQL label matchers ({exc}); "
                                 "write e.g. namespace=~\"llm-.*\", job=\"optiinfra\"") from None
        return value.strip()


class BottleneckOverride(_Strict):
    for_: Duration | None = Field(default=None, alias="for", description="Override of the alert's `for` duration.")
    thresholds: dict[str, float] = Field(default_factory=dict,
                                         description="Threshold name -> value (names from the taxonomy).")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @field_validator("for_")
    @classmethod
    def _for(cls, value: str | None) -> str | None:
        return None if value is None else _check_duration(value)


class Slo(_Strict):
    name: str = Field(description="SLO name, the `slo` label of its rules and alerts.")
    sli: SliKind = Field(description="ttft, inter_token or request_duration (latency), or availability.")
    threshold: float | None = Field(
        default=None, description="Latency SLOs: seconds; must be a native bucket boundary of every engine the SLO "
                          "applies to.")
    objective: float = Field(description="Target share of good events, e.g. 0.99 (at least 0.931).")
    engines: list[m.Engine] | None = Field(
        default=None, description="Engines the SLO applies to; default: every engine that exports the SLI.")
    model: str | None = Field(default=None, description="Optional regex on the `model` label.")
    description: str = ""

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME_RE.match(value):
            raise ValueError(f"SLO name {value!r}: use lower-case letters, digits, '-' and '_'")
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
                below = [b for b in bounds if b < self.threshold]
                above = [b for b in bounds if b > self.threshold]
                near = ", ".join(
                    f"{word} {b!r}" for word, b in (("below", below[-1] if below else None),
                                                     ("above", above[0] if above else None)) if b is not None)
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
    slo_fast_for: Duration = Field(default="2m", description="`for` of LLMSLOBurnRateFast.")
    slo_slow_for: Duration = Field(default="15m", description="`for` of LLMSLOBurnRateSlow.")
    prometheus_rule: PrometheusRuleOptions = Field(default_factory=PrometheusRuleOptions)

    @field_validator("identity_labels")
    @classmethod
    def _labels(cls, value: list[str]) -> list[str]:
        for label in value:
            if not _LABEL_RE.match(label):
                raise ValueError(f"{label!r} is not a Prometheus label name")
        if "pod" not in value:
            raise ValueError("identity_labels must include 'pod' (alerts and plans are per pod)")
        return value

    @field_validator("slo_fast_for", "slo_slow_for")
    @classmethod
    def _slo_for(cls, value: str) -> str:
        return _check_duration(value)

    @field_validator("bottlenecks")
    @classmethod
    def _bottlenecks(cls, value: dict[str, BottleneckOverride]) -> dict[str, BottleneckOverride]:
        known = tx.by_id()
        for bid, override in value.items():
            if bid not in known:
                raise ValueError(f"unknown bottleneck {bid!r}; known: {', '.join(sorted(known))}")
            allowed = known[bid].thresholds
            for name in override.thresholds:
                if name not in allowed:
                    names = ", ".join(sorted(allowed)) or "none (this bottleneck has no thresholds)"
                    raise ValueError(f"bottleneck {bid!r} has no threshold {name!r}; its thresholds: {names}")
        return value

    @field_validator("slos")
    @classmethod
    def _unique(cls, value: list[Slo]) -> list[Slo]:
        names = [s.name for s in value]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"SLO names must be unique; repeated: {', '.join(dupes)}")
        return value

    def threshold(self, bottleneck: str | tx.Bottleneck, name: str) -> float:
        b = bottleneck if isinstance(bottleneck, tx.Bottleneck) else tx.get(bottleneck)
        override = self.bottlenecks.get(b.id)
        if override and name in override.thresholds:
            return override.thresholds[name]
        return b.thresholds[name].value

    def for_(self, bottleneck: str | tx.Bottleneck) -> str:
        b = bottleneck if isinstance(bottleneck, tx.Bottleneck) else tx.get(bottleneck)
        override = self.bottlenecks.get(b.id)
        if override and override.for_ is not None:
            return override.for_
        return b.for_


def _where(loc: Sequence[int | str]) -> str:
    return ".".join(str(p) for p in loc) or "(top level)"


def format_errors(exc: ValidationError) -> str:
    """One readable message: one line per problem, naming the key."""
    lines = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        if err["type"] == "extra_forbidden":
            lines.append(f"unknown key {loc[-1]!r} at {_where(loc[:-1])}: remove it or check its spelling")
        elif err["type"] == "missing":
            lines.append(f"{_where(loc)}: required key missing")
        else:
            msg = str(err["msg"]).removeprefix("Value error, ")
            lines.append(f"{_where(loc)}: {msg}")
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


def load_config(path: Path | str | None) -> Config:
    """The config from a YAML file, or the defaults when ``path`` is None. Raises ConfigError."""
    if path is None:
        return Config()
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror or exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    return parse_config(data, str(path))


def json_schema() -> dict[str, Any]:
    schema = Config.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "OptiInfra rules config"
    return schema


def render_schema() -> str:
    return json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    if sys.argv[1:] == ["--schema"]:
        SCHEMA_PATH.write_text(render_schema(), encoding="utf-8")
        print(SCHEMA_PATH)
    else:
        print("usage: python -m optiinfra.config --schema", file=sys.stderr)
        sys.exit(2)
