"""Small pure helpers shared by the rule builders: exact numbers, profile-scaled durations, selectors."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal

from optiinfra.config import Config, format_duration_ms, parse_duration_ms

Profile = Literal["production", "demo"]
PROFILES: tuple[Profile, ...] = ("production", "demo")
#: ``--profile demo`` divides every ``for`` and every range window by this.
DEMO_DIVISOR = 60
#: ... but an alert's window over a jumpy gauge keeps at least this many of the demo's 1 s samples (production's
#: 2m holds 4-8 scrapes; divided by 60 it would hold 2, and one low pair would resolve the alert).
DEMO_MIN_WINDOW_MS = 5_000
#: Series of GPU exporters (the sidecar's NVML collector or dcgm-exporter), under dcgm-exporter's names.
GPU_PREFIX = "DCGM_"


def num(value: float | int | Decimal | str) -> str:
    """Exact decimal text of a configured number: 0.001 stays ``0.001``, 100.0 is ``100``, never 0.0009999."""
    dec = value if isinstance(value, Decimal) else Decimal(repr(value) if isinstance(value, float) else str(value))
    text = format(dec.normalize(), "f")
    return "0" if text in ("-0", "") else text


def dec(value: float | int | str) -> Decimal:
    """The Decimal a configured number was written as (``repr`` of a float, so 0.1 is exactly 0.1)."""
    return Decimal(repr(value)) if isinstance(value, float) else Decimal(str(value))


def le_matcher(bound: float) -> str:
    """``le`` matcher for a native boundary: exact text, and for whole numbers both ``1`` and ``1.0`` spellings."""
    text = repr(float(bound))
    if float(bound).is_integer():
        whole = text.removesuffix(".0")
        return f'le=~"{whole}|{whole}\\\\.0"'
    return f'le="{text}"'


@dataclass(frozen=True)
class Rule:
    expr: str
    record: str = ""
    alert: str = ""
    for_: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"record": self.record} if self.record else {"alert": self.alert}
        out["expr"] = self.expr
        if self.alert:
            out["for"] = self.for_ or "0s"
        if self.labels:
            out["labels"] = dict(sorted(self.labels.items()))
        if self.annotations:
            out["annotations"] = dict(sorted(self.annotations.items()))
        return out


@dataclass(frozen=True)
class Group:
    name: str
    rules: tuple[Rule, ...]
    interval: str = ""
    """The group's own evaluation interval; empty: the ruler's global one."""

    def to_dict(self) -> dict[str, object]:
        interval = {"interval": self.interval} if self.interval else {}
        return {"name": self.name, **interval, "rules": [r.to_dict() for r in self.rules]}


@dataclass(frozen=True)
class Ctx:
    """What every builder needs: the config and the profile."""

    config: Config
    profile: Profile = "production"

    def w(self, duration: str) -> str:
        """A range window or ``for`` duration, scaled by the profile."""
        ms = parse_duration_ms(duration)
        if self.profile == "demo":
            ms //= DEMO_DIVISOR
        return format_duration_ms(ms)

    def window(self, duration: str) -> str:
        """An alert expression's range window: scaled, and in the demo at least ``DEMO_MIN_WINDOW_MS``."""
        ms = parse_duration_ms(self.w(duration))
        return format_duration_ms(max(ms, DEMO_MIN_WINDOW_MS) if self.profile == "demo" else ms)

    @property
    def identity(self) -> tuple[str, ...]:
        return tuple(self.config.identity_labels)

    @property
    def by_pod(self) -> str:
        """Grouping labels of per-pod engine series: identity + engine + model."""
        return ", ".join((*self.identity, "engine", "model"))

    @property
    def on_pod(self) -> str:
        return ", ".join(self.identity)

    @property
    def dcgm(self) -> bool:
        """GPU series come from dcgm-exporter (``gpu_source``), not from the pod's sidecar."""
        return self.config.gpu_source == "dcgm-exporter"

    @property
    def gpu_on(self) -> str:
        """Labels joining a pod's GPU series to its engine series: the identity labels, without ``instance``
        when dcgm-exporter (whose ``instance`` is its own address) exports them."""
        return ", ".join(label for label in self.identity if not (self.dcgm and label == "instance"))

    def sel(self, metric: str, *matchers: str) -> str:
        if self.dcgm and metric.startswith(GPU_PREFIX):
            options = self.config.dcgm_exporter
            # Only GPUs allocated to a pod: dcgm-exporter leaves its pod-mapping labels empty otherwise.
            parts = [p for p in (*matchers, f'{options.pod_label}!=""', options.selector) if p]
        else:
            parts = [p for p in (*matchers, self.config.selectors.series) if p]
        return f"{metric}{{{', '.join(parts)}}}" if parts else metric

    def gpu(self, expr: str) -> str:
        """``expr`` (GPU series) with dcgm-exporter's pod-mapping labels copied onto namespace, pod and container,
        so GPU alerts carry the inference pod's identity (inhibition, routing, plans); as is for the sidecar."""
        if not self.dcgm:
            return expr
        for ours, theirs in self.config.dcgm_exporter.mapping().items():
            if ours != theirs:
                expr = f'label_replace({expr}, "{ours}", "$1", "{theirs}", "(.+)")'
        return expr

    def gpu_labels(self, labels: Mapping[str, str]) -> dict[str, str]:
        """What ``gpu`` does to one series' labels (the promtool fixtures' expected labels)."""
        out = dict(labels)
        if self.dcgm:
            for ours, theirs in self.config.dcgm_exporter.mapping().items():
                if labels.get(theirs):
                    out[ours] = labels[theirs]
        return out

    def sidecar_up(self) -> str:
        parts = [p for p in (self.config.selectors.sidecar_job, self.config.selectors.series) if p]
        return f"up{{{', '.join(parts)}}}" if parts else "up"


def split_groups(groups: tuple[Group, ...], limit: int) -> tuple[Group, ...]:
    """Groups of at most ``limit`` rules (Mimir's ruler refuses more than 20 by default): a larger group becomes
    ``<name>``, ``<name>.2``, ... in order, so a rule still comes after the rules it reads."""
    out: list[Group] = []
    for group in groups:
        for i in range(0, len(group.rules), limit):
            name = group.name if i == 0 else f"{group.name}.{i // limit + 1}"
            out.append(Group(name, group.rules[i:i + limit], group.interval))
    return tuple(out)
