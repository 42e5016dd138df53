"""Checking a plan's expected impact against Prometheus: the numbers of one analysis and its verdict.

``measure`` reads every series of the claim (``plan.ExpectedImpact``) over two windows of the same length: before
the change (ending when the plan was pushed) and now. ``judge`` turns the numbers into a verdict, pure:

- ``inconclusive``: the target served less than ``min_traffic`` requests/s in the after window, or the signal has
  no samples in either window. Nothing is guessed.
- ``worse``: a guard moved the wrong way by more than ``guard_tolerance`` (relative) and its absolute floor, or
  the signal itself moved the wrong way by at least ``min_effect``.
- ``improved``: the signal moved the right way by at least ``min_effect``, net of the unchanged replicas' own
  change over the same windows (canary vs baseline) when the model has other replicas.
- ``no_effect``: anything else.

Every number used and the query it came from are kept in the result, and a few points of each series around
the change (for ``optiinfra plans show``'s sparklines).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import aiohttp

from optiinfra.secrets import redact_url

from .plan import ExpectedImpact, Signal

log = logging.getLogger(__name__)

Verdict = Literal["improved", "no_effect", "worse", "inconclusive"]
VERDICTS: tuple[Verdict, ...] = ("improved", "no_effect", "worse", "inconclusive")
#: Samples per window (the range-query step is the window divided by it).
POINTS = 12

#: ``(query, start, end, step) -> [(t, value), ...]`` (empty when Prometheus has no samples).
RangeReader = Callable[[str, float, float, float], Awaitable[list[tuple[float, float]]]]


class PrometheusUnavailable(RuntimeError):
    """Prometheus could not answer a query (the analysis is retried later)."""


def prometheus_reader(session: aiohttp.ClientSession, prometheus_url: str) -> RangeReader:
    url = prometheus_url.rstrip("/") + "/api/v1/query_range"

    async def read(query: str, start: float, end: float, step: float) -> list[tuple[float, float]]:
        params = {"query": query, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:.3f}"}
        try:
            async with session.get(url, params=params, timeout=aiohttp.ClientTimeout(total=10)) as resp:
                payload = await resp.json(content_type=None)
            if payload.get("status") != "success":
                raise PrometheusUnavailable(f"{payload.get('errorType', '')}: {payload.get('error', '')}")
            result = payload["data"]["result"]
        except (aiohttp.ClientError, TimeoutError, ValueError, KeyError, TypeError) as exc:
            raise PrometheusUnavailable(f"{redact_url(prometheus_url)}: {exc}") from exc
        points = [(float(t), float(v)) for series in result[:1] for t, v in series["values"]]
        return [(t, v) for t, v in points if math.isfinite(v)]

    return read


@dataclass(frozen=True)
class Windows:
    before: tuple[float, float]
    after: tuple[float, float]

    @classmethod
    def around(cls, changed_at: float, now: float, seconds: float) -> Windows:
        """``seconds`` before the change, and the last ``seconds`` (never reaching back before the change)."""
        return cls((changed_at - seconds, changed_at), (max(changed_at, now - seconds), now))


def _mean(points: list[tuple[float, float]]) -> float | None:
    return sum(v for _, v in points) / len(points) if points else None


async def _series(read: RangeReader, query: str, w: Windows) -> dict[str, Any]:
    step = max(1.0, (w.before[1] - w.before[0]) / POINTS)
    before = await read(query, w.before[0], w.before[1], step)
    after = await read(query, w.after[0], w.after[1], step)
    return {"query": query, "before": _mean(before), "after": _mean(after),
            "points": [[round(t, 3), round(v, 6)] for t, v in before + after]}


async def measure(read: RangeReader, impact: ExpectedImpact, windows: Windows) -> dict[str, Any]:
    """Every number the verdict needs, with the query each came from; raises :class:`PrometheusUnavailable`."""

    async def signal(s: Signal) -> dict[str, Any]:
        out = {"name": s.name, "better": s.better, "floor": s.floor, "target": await _series(read, s.query, windows)}
        if s.baseline_query:
            out["baseline"] = await _series(read, s.baseline_query, windows)
        return out

    numbers: dict[str, Any] = {"windows": {"before": list(windows.before), "after": list(windows.after)},
                               "guards": [await signal(g) for g in impact.guards]}
    if impact.signal is not None:
        numbers["signal"] = await signal(impact.signal)
    if impact.traffic_query:
        numbers["traffic"] = await _series(read, impact.traffic_query, windows)
    return numbers


def _change(series: Mapping[str, Any]) -> tuple[float, float] | None:
    """(absolute, relative) change after - before, or None without samples in both windows."""
    before, after = series.get("before"), series.get("after")
    if before is None or after is None:
        return None
    return after - before, (after - before) / max(abs(before), 1e-9)


def _effect(entry: Mapping[str, Any]) -> dict[str, Any] | None:
    """How much better (positive) or worse (negative) a series got, relative, net of the baseline."""
    own = _change(entry["target"])
    if own is None:
        return None
    sign = -1.0 if entry["better"] == "down" else 1.0
    absolute, relative = own[0] * sign, own[1] * sign
    baseline = _change(entry["baseline"]) if entry.get("baseline") else None
    net = relative - baseline[1] * sign if baseline is not None else relative
    net_absolute = absolute - baseline[0] * sign if baseline is not None else absolute
    return {"absolute": round(absolute, 6), "relative": round(relative, 4),
            "baseline_relative": round(baseline[1] * sign, 4) if baseline is not None else None,
            "net": round(net, 4), "noise": abs(net_absolute) < entry["floor"]}


def judge(impact: ExpectedImpact, numbers: Mapping[str, Any]) -> tuple[Verdict, str, dict[str, Any]]:
    """The verdict, a one-line reason and the effects (per series) it was computed from."""
    guards = numbers.get("guards", [])
    signal = numbers.get("signal")
    effects: dict[str, Any] = {g["name"]: _effect(g) for g in guards}
    if signal is not None:
        effects[signal["name"]] = _effect(signal)
    traffic = numbers.get("traffic", {}).get("after")
    if impact.traffic_query and (traffic is None or traffic < impact.min_traffic):
        shown = "no samples" if traffic is None else f"{traffic:.3g} req/s"
        return "inconclusive", f"too little traffic to judge ({shown} < {impact.min_traffic:g} req/s)", effects
    for guard in guards:
        effect = effects[guard["name"]]
        if effect is not None and not effect["noise"] and effect["net"] <= -impact.guard_tolerance:
            return ("worse", f"guard {guard['name']} got worse by {-effect['net']:.0%} "
                    f"({guard['target']['before']:.4g} -> {guard['target']['after']:.4g})", effects)
    if signal is None:
        return "inconclusive", "the bottleneck has no signal series to check; no guard got worse", effects
    effect = effects[signal["name"]]
    if effect is None:
        return "inconclusive", f"no samples of {signal['name']} in both windows", effects
    moved = f"{signal['name']} {signal['target']['before']:.4g} -> {signal['target']['after']:.4g}"
    if effect["net"] >= impact.min_effect and not effect["noise"]:
        return "improved", f"{moved}: {effect['net']:.0%} better (at least {impact.min_effect:.0%} expected)", effects
    if effect["net"] <= -impact.min_effect and not effect["noise"]:
        return "worse", f"{moved}: {-effect['net']:.0%} worse", effects
    return "no_effect", f"{moved}: {effect['net']:+.0%} (at least {impact.min_effect:.0%} expected)", effects
