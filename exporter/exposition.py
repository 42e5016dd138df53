"""Prometheus text format 0.0.4: typed metric families and the one encoder that writes them.

Collectors hand the server typed ``Family`` objects (name, type, help, samples with labels); ``encode`` writes
the exposition and applies the static ``--label`` pairs to every ``llm_*`` family. The engine transform's
fast path hands over ``Rendered`` text for its own families instead (measured faster: bench/exporter), with
the static labels already in its series keys; the encoder appends it unchanged and never edits text.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from optiinfra.metrics import Metric

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: Families the static ``--label`` pairs apply to.
STATIC_LABEL_PREFIX = "llm_"


def format_value(value: float) -> str:
    """Exact, Go-compatible rendering: integers without a fraction, repr() otherwise."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


@dataclass(slots=True, eq=False)
class Family:
    """One typed metric family: name, type, HELP and its samples ``(suffix, labels, value)`` in order."""

    name: str
    type: str
    help: str
    samples: list[tuple[str, Mapping[str, str], float]] = field(default_factory=list)

    @classmethod
    def of(cls, metric: Metric) -> Family:
        """An empty family of a catalogue metric."""
        return cls(metric.name, metric.type, metric.help)

    def add(self, labels: Mapping[str, str], value: float, suffix: str = "") -> Family:
        self.samples.append((suffix, labels, value))
        return self


@dataclass(frozen=True, slots=True)
class Rendered:
    """Complete families already written in text format 0.0.4 (the engine transform's fast path)."""

    text: str


Part = Family | Rendered


def encode(parts: Iterable[Part], static: Mapping[str, str] | None = None) -> str:
    """The exposition of ``parts``: typed families of one name merged (first type and HELP win), rendered with
    the ``static`` labels first on every ``llm_*`` family; ``Rendered`` text appended as it is. A family
    without samples is left out."""
    merged: dict[str, Family] = {}
    order: list[Family | str] = []
    for part in parts:
        if isinstance(part, Rendered):
            if part.text:
                order.append(part.text if part.text.endswith("\n") else part.text + "\n")
        elif (first := merged.get(part.name)) is not None:
            first.samples.extend(part.samples)
        else:
            merged[part.name] = copy = Family(part.name, part.type, part.help, list(part.samples))
            order.append(copy)
    out: list[str] = []
    for item in order:
        if isinstance(item, str):
            out.append(item)
        elif item.samples:
            out.append(_render(item, static if static and item.name.startswith(STATIC_LABEL_PREFIX) else None))
    return "".join(out)


def _render(family: Family, static: Mapping[str, str] | None) -> str:
    name = family.name
    lines = [f"# HELP {name} {escape_help(family.help)}", f"# TYPE {name} {family.type}"]
    for suffix, labels, value in family.samples:
        pairs = ",".join(f'{k}="{escape(v)}"' for k, v in ({**static, **labels} if static else labels).items())
        lines.append(f"{name}{suffix}{{{pairs}}} {format_value(value)}" if pairs else
                     f"{name}{suffix} {format_value(value)}")
    return "\n".join(lines) + "\n"
