"""Prometheus text format 0.0.4: value formatting, label escaping and a small family builder.

Used by the collectors that build few series (GPU, host, logs, the sidecar's own health); the engine
transform writes its hot-path output with the same ``format_value``/``escape`` functions.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


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


def render_labels(labels: Mapping[str, str]) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{escape(v)}"' for k, v in labels.items()) + "}"


class Family:
    """One metric family: HELP, TYPE and its samples, rendered in insertion order."""

    __slots__ = ("help", "name", "samples", "type")

    def __init__(self, name: str, type_: str, help_: str) -> None:
        self.name = name
        self.type = type_
        self.help = help_
        self.samples: list[tuple[str, Mapping[str, str], float]] = []

    def add(self, labels: Mapping[str, str], value: float, suffix: str = "") -> Family:
        self.samples.append((suffix, labels, value))
        return self

    def render(self) -> str:
        if not self.samples:
            return ""
        lines = [f"# HELP {self.name} {escape_help(self.help)}", f"# TYPE {self.name} {self.type}"]
        lines.extend(
            f"{self.name}{suffix}{render_labels(labels)} {format_value(value)}"
            for suffix, labels, value in self.samples
        )
        return "\n".join(lines) + "\n"


def render_all(families: Iterable[Family]) -> str:
    return "".join(f.render() for f in families)
