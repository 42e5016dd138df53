"""``optiinfra plans show ID --receiver-url URL``: one plan's record for a person.

A header (target, change, status), the claim (signal, direction, minimum effect, guards), one table row per
analysis (phase, verdict, the signal's before and after means, its net effect, the reason) and, from the latest
analysis with numbers, a unicode sparkline of every checked series around the change (``│`` marks the change).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from typing import Any

from optiinfra.cliutil import UsageError
from optiinfra.secrets import redact_url

BARS = "▁▂▃▄▅▆▇█"


def sparkline(points: Sequence[Sequence[float]], split_at: float) -> str:
    """Bars scaled to the series' own range, ``│`` between the last point at or before ``split_at`` and the next."""
    values = [p[1] for p in points]
    if not values:
        return "(no samples)"
    low, high = min(values), max(values)
    span = high - low or 1.0
    out, marked = [], False
    for t, v in points:
        if not marked and t > split_at:
            out.append("│")
            marked = True
        out.append(BARS[min(len(BARS) - 1, int((v - low) / span * (len(BARS) - 1) + 0.5))] if high > low else BARS[3])
    return "".join(out)


def _num(value: Any) -> str:
    return "-" if value is None else f"{value:.4g}"


def _series_rows(detail: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    rows = [detail["signal"]] if detail.get("signal") else []
    return rows + list(detail.get("guards", []))


def render(view: Mapping[str, Any]) -> str:
    doc = view["document"]
    action = doc["actions"][0]
    change = (f"{action['name']} {action['to']} (relative)" if action.get("relative")
              else f"{action['name']} {action.get('from')} -> {action['to']}")
    impact = doc["expected_impact"]
    lines = [f"plan {view['plan_id']}  {view['bottleneck']} on {view['target_key']}: {view['status']}",
             f"change    {change}"]
    signal = impact.get("signal")
    if signal:
        lines.append(f"expected  {signal['name']} {signal['better']} by at least {impact['min_effect']:.0%}; "
                     f"guards (no worse than {impact['guard_tolerance']:.0%}): "
                     + ", ".join(g["name"] for g in impact.get("guards", [])))
    analyses = [a for a in view.get("analyses", []) if a.get("verdict")]
    if not analyses:
        lines.append("no analysis recorded yet" + ("" if view.get("analyses") else " (none scheduled)"))
        return "\n".join(lines) + "\n"
    header = ("phase", "verdict", "signal before", "after", "net", "reason")
    table = [header]
    for a in analyses:
        d = a["detail"]
        sig = d.get("signal") or {}
        effect = (d.get("effects") or {}).get(sig.get("name", ""), None) or {}
        net = f"{effect['net']:+.0%}" if effect.get("net") is not None else "-"
        table.append((a["phase"], a["verdict"], _num(sig.get("target", {}).get("before")),
                      _num(sig.get("target", {}).get("after")), net, d.get("reason", "")))
    widths = [max(len(str(r[i])) for r in table) for i in range(len(header) - 1)]
    lines.append("")
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(r[:-1], widths, strict=True)) + "  " + r[-1]
              for r in table]
    latest = next((a["detail"] for a in reversed(analyses) if a["detail"].get("windows")), None)
    if latest:
        split = latest["windows"]["before"][1]
        series = _series_rows(latest)
        name_width = max(len(s["name"]) for s in series)
        lines += ["", f"around the change ({latest['phase']}; │ = change, before | after):"]
        for s in series:
            t = s["target"]
            lines.append(f"  {s['name'].ljust(name_width)}  {sparkline(t.get('points', []), split)}  "
                         f"{_num(t.get('before'))} -> {_num(t.get('after'))}  ({s['better']} is better)")
        lines.append(f"  query  {series[0]['target']['query']}")
    return "\n".join(lines) + "\n"


def fetch(receiver_url: str, plan_id: str, token: str | None = None, timeout: float = 10.0) -> dict[str, Any]:
    if not receiver_url.startswith(("http://", "https://")):
        raise UsageError(f"--receiver-url {redact_url(receiver_url)!r}: give an http:// or https:// URL")
    url = f"{receiver_url.rstrip('/')}/api/v1/plans/{urllib.parse.quote(plan_id, safe='')}"
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:  # noqa: S310 - the user's receiver URL
            body: dict[str, Any] = json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        try:
            message = json.loads(exc.read()).get("error", exc.reason)
        except ValueError:
            message = exc.reason
        raise UsageError(f"{redact_url(receiver_url)}: {exc.code} {message}") from None
    except (urllib.error.URLError, TimeoutError, ValueError, OSError) as exc:
        raise UsageError(f"cannot read plan {plan_id} from {redact_url(receiver_url)}: {exc}") from None
    return body
