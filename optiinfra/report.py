"""``optiinfra report``: one page for a person, from a Prometheus URL (and the receiver's API when given).

What the fleet's tokens cost over a period, the five most and least efficient pods, the bottlenecks firing now
and the plans made over the period with their outcome, as text (stdout) and as a self-contained HTML page
(``--html FILE``: inline CSS and SVG charts, no external asset). Every number comes from the efficiency
recording rules (``optiinfra.rules.efficiency``) and ``ALERTS``; like ``optiinfra.generate`` this module is a
composition root and imports the rules when the command runs.
"""

from __future__ import annotations

import argparse
import html
import json
import logging
import math
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from optiinfra.cliutil import UsageError, format_duration_ms, parse_duration_ms
from optiinfra.config import Config, load_config

log = logging.getLogger(__name__)

TOP = 5
CHART_POINTS = 120
TIMEOUT_S = 10.0


class ReportError(UsageError):
    """Prometheus or the receiver could not be read; the message says which and why."""


# ---- reading ------------------------------------------------------------------------------------------------


def _get(url: str, what: str) -> Any:
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as resp:  # noqa: S310 (the user's http(s) URL)
            return json.loads(resp.read().decode("utf-8"))
    except (urllib.error.URLError, TimeoutError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ReportError(f"cannot read {what} at {url.split('?', maxsplit=1)[0]}: {reason}") from None


def _base(url: str, flag: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise UsageError(f"{flag} {url!r}: give an http(s) URL such as http://prometheus:9090")
    return url.rstrip("/")


@dataclass(frozen=True)
class Prometheus:
    url: str
    at: float

    def _call(self, path: str, params: Mapping[str, str]) -> list[dict[str, Any]]:
        body = _get(f"{self.url}{path}?{urllib.parse.urlencode(params)}", "Prometheus")
        if not isinstance(body, dict) or body.get("status") != "success":
            error = body.get("error", body) if isinstance(body, dict) else body
            raise ReportError(f"Prometheus refused {params.get('query', '')!r}: {error}")
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def instant(self, query: str) -> list[tuple[dict[str, str], float]]:
        return [(r["metric"], float(r["value"][1])) for r in self._call("/api/v1/query",
                                                                          {"query": query, "time": str(self.at)})
                if math.isfinite(float(r["value"][1]))]

    def scalar(self, query: str) -> float | None:
        found = self.instant(query)
        return found[0][1] if found else None

    def series(self, query: str, period_s: float) -> list[tuple[dict[str, str], list[tuple[float, float]]]]:
        step = max(period_s / CHART_POINTS, 1.0)
        params = {"query": query, "start": str(self.at - period_s), "end": str(self.at), "step": f"{step:g}"}
        return [(r["metric"], [(float(t), float(v)) for t, v in r["values"] if math.isfinite(float(v))])
                for r in self._call("/api/v1/query_range", params)]


# ---- the report's content ------------------------------------------------------------------------------------


@dataclass
class PodRow:
    namespace: str
    pod: str
    model: str
    efficiency: float
    cost: float | None = None
    tokens_per_joule: float | None = None
    health: float | None = None


@dataclass
class Report:
    period: str
    generated_at: datetime
    prometheus_url: str
    currency: str
    fleet_cost: float | None
    tokens: float
    gpu_hours: float
    spend: float | None
    pods: list[PodRow]
    firing: list[dict[str, str]]
    plans: list[dict[str, Any]] | None
    charts: dict[str, list[tuple[str, list[tuple[float, float]]]]] = field(default_factory=dict)

    @property
    def most_efficient(self) -> list[PodRow]:
        return sorted(self.pods, key=lambda p: (-p.efficiency, p.pod))[:TOP]

    @property
    def least_efficient(self) -> list[PodRow]:
        return sorted(self.pods, key=lambda p: (p.efficiency, p.pod))[:TOP]


def _key(labels: Mapping[str, str]) -> tuple[str, str]:
    return labels.get("namespace", ""), labels.get("pod", "")


def collect(prom: Prometheus, config: Config, period_ms: int, receiver: str | None) -> Report:
    from optiinfra.rules import efficiency as ef  # noqa: PLC0415 (composition root)
    from optiinfra.rules.promql import Ctx  # noqa: PLC0415

    ctx = Ctx(config)
    window = format_duration_ms(period_ms)
    hours = period_ms / 3_600_000
    currency = next((labels.get("currency", "") for labels, _ in prom.instant(f"max by (currency) ({ef.PRICE})")),
                    config.cost.currency)
    tokens = sum(v for _, v in prom.instant(
        " + ".join(f"sum(increase({ctx.sel(m)}[{window}]))"
                   for m in ("llm_prompt_tokens_total", "llm_generation_tokens_total"))))
    gpu_hours = (prom.scalar(f"sum(avg_over_time({ef.GPUS}[{window}]))") or 0.0) * hours
    price_per_hour = prom.scalar(f"sum(avg_over_time({ef.PRICE}[{window}]))")
    over = f"[{window}]"
    scores = prom.instant(f"avg_over_time({ef.EFFICIENCY}{over})")
    cost = {_key(k): v for k, v in prom.instant(f"avg_over_time({ef.COST}{over})")}
    joule = {_key(k): v for k, v in prom.instant(f"avg_over_time({ef.TOKENS_PER_JOULE}{over})")}
    health = {_key(k): v for k, v in prom.instant(ef.HEALTH)}
    pods = [PodRow(k.get("namespace", ""), k.get("pod", ""), k.get("model", ""), v, cost.get(_key(k)),
                   joule.get(_key(k)), health.get(_key(k))) for k, v in scores]
    firing = _firing(prom)
    period_s = period_ms / 1000
    charts = {
        "cost": _lines(prom.series(ef.MODEL_COST, period_s), "{model}"),
        "efficiency": _lines(prom.series(ef.EFFICIENCY, period_s), "{pod}"),
        "health": _lines(prom.series(ef.MODEL_HEALTH, period_s), "{model}"),
        "joule": _lines(prom.series(ef.TOKENS_PER_JOULE, period_s), "{pod}"),
    }
    return Report(
        period=window, generated_at=datetime.fromtimestamp(prom.at, UTC), prometheus_url=prom.url,
        currency=currency, fleet_cost=prom.scalar(ef.fleet_cost_per_million(ctx, window)), tokens=tokens,
        gpu_hours=gpu_hours, spend=None if price_per_hour is None else price_per_hour * hours, pods=pods,
        firing=firing, plans=None if receiver is None else _plans(receiver, prom.at - period_s), charts=charts)


def _firing(prom: Prometheus) -> list[dict[str, str]]:
    """Firing taxonomy and SLO alerts, one row per (severity, bottleneck, pod, alert) with how many fire (one
    per GPU, rank or SLO) and since when."""
    keys = ("severity", "bottleneck", "namespace", "pod", "alertname")
    rows: dict[tuple[str, ...], dict[str, str]] = {}
    query = 'ALERTS_FOR_STATE{bottleneck!=""} and ignoring (alertstate) ALERTS{alertstate="firing", bottleneck!=""}'
    for labels, started in prom.instant(query):
        key = tuple(labels.get(k, "") for k in keys)
        row = rows.setdefault(key, {**dict(zip(keys, key, strict=True)), "count": "0", "started": str(started)})
        row["count"] = str(int(row["count"]) + 1)
        row["started"] = str(min(float(row["started"]), started))
    for row in rows.values():
        row["since"] = datetime.fromtimestamp(float(row.pop("started")), UTC).strftime("%Y-%m-%d %H:%M UTC")
    order = {"critical": 0, "warning": 1}
    return sorted(rows.values(), key=lambda r: (order.get(r["severity"], 2), r["bottleneck"], r["pod"]))


def _lines(series: Sequence[tuple[dict[str, str], list[tuple[float, float]]]],
           legend: str) -> list[tuple[str, list[tuple[float, float]]]]:
    return sorted((legend.format_map(_Blank(labels)), points) for labels, points in series if points)


class _Blank(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return ""


def _plans(receiver: str, since: float) -> list[dict[str, Any]]:
    body = _get(f"{receiver}/api/v1/plans?limit=1000", "the receiver")
    plans = body.get("plans") if isinstance(body, dict) else None
    if not isinstance(plans, list):
        raise ReportError(f"the receiver at {receiver} answered without a plans list")
    out = []
    for plan in plans:
        doc = plan.get("document") or {}
        try:
            created = datetime.fromisoformat(str(doc.get("created_at", "")).replace("Z", "+00:00")).timestamp()
        except ValueError:
            continue
        if created >= since:
            action = (doc.get("actions") or [{}])[0]
            out.append({"created": datetime.fromtimestamp(created, UTC).strftime("%Y-%m-%d %H:%M"),
                        "target": plan.get("target_key", ""), "bottleneck": plan.get("bottleneck", ""),
                        "action": f"{action.get('name', '')} {action.get('to', '')}".strip(),
                        "status": plan.get("status", ""), "cost": doc.get("cost")})
    return sorted(out, key=lambda p: p["created"], reverse=True)


# ---- text ----------------------------------------------------------------------------------------------------


def _num(value: float | None, digits: int = 3) -> str:
    """Readable: thousands separated, otherwise ``digits`` significant digits (0.100 stays 0.100)."""
    if value is None:
        return "-"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if value == 0:
        return "0"
    return f"{value:#.{digits}g}".rstrip(".")


def _plan_cost(cost: Mapping[str, Any] | None, currency: str) -> str:
    if not cost:
        return ""
    hours = float(cost["gpu_hours_per_day"])
    verb = "saves" if hours < 0 else "costs"
    money = cost.get("cost_per_day")
    extra = f", {abs(float(money)):g} {cost.get('currency') or currency}" if money is not None else ""
    return f"{verb} {abs(hours):g} GPU-h{extra}/day"


def render_text(r: Report) -> str:
    lines = [f"OptiInfra report: the last {r.period} (until {r.generated_at:%Y-%m-%d %H:%M} UTC)",
             f"Prometheus: {r.prometheus_url}", ""]
    cost = "no price configured" if r.fleet_cost is None else f"{_num(r.fleet_cost)} {r.currency}"
    lines += [f"Fleet cost per million tokens: {cost}",
              f"Tokens: {_num(r.tokens)}   GPU-hours: {_num(r.gpu_hours)}   "
              f"GPU spend: {'-' if r.spend is None else _num(r.spend) + ' ' + r.currency}", ""]
    for title, rows in (("Most efficient pods", r.most_efficient), ("Least efficient pods", r.least_efficient)):
        lines.append(f"{title} (efficiency 0-100, cost per 1M tokens, tokens/J, health):")
        lines += [f"  {p.namespace}/{p.pod} {p.model}: {p.efficiency:.0f}, {_num(p.cost)} {r.currency}, "
                  f"{_num(p.tokens_per_joule)} tok/J, health {_num(p.health)}" for p in rows] or ["  (no data)"]
        lines.append("")
    lines.append(f"Bottlenecks firing now: {len(r.firing)}")
    lines += [f"  [{a['severity']}] {a['bottleneck']} on {a['namespace']}/{a['pod']} ({a['alertname']}"
              f"{' x' + a['count'] if a['count'] != '1' else ''}, since {a['since']})" for a in r.firing]
    lines.append("")
    if r.plans is None:
        lines.append("Plans: not read (give --receiver-url)")
    else:
        lines.append(f"Plans over the period: {len(r.plans)}")
        lines += [f"  {p['created']} {p['bottleneck']} on {p['target']}: {p['action']} -> {p['status']}"
                  + (f" ({_plan_cost(p['cost'], r.currency)})" if p["cost"] else "") for p in r.plans]
    return "\n".join(lines) + "\n"


# ---- HTML ----------------------------------------------------------------------------------------------------

PALETTE = ("#2563eb", "#16a34a", "#dc2626", "#9333ea", "#ea580c", "#0891b2", "#ca8a04", "#db2777")
STYLE = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:0;background:#f5f6f8;color:#1f2937}
main{max-width:1120px;margin:0 auto;padding:24px 28px 40px}
h1{font-size:24px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 10px}
.sub{color:#6b7280;font-size:13px;margin-bottom:18px}
.cards{display:grid;grid-template-columns:repeat(4,1fr);gap:12px}
.card{background:#fff;border-radius:10px;padding:14px 16px;box-shadow:0 1px 2px rgba(0,0,0,.08)}
.card .v{font-size:26px;font-weight:650;margin-top:4px}.card .l{font-size:12px;color:#6b7280;text-transform:uppercase;
letter-spacing:.04em}
.grid2{display:grid;grid-template-columns:1fr 1fr;gap:14px}
.panel{background:#fff;border-radius:10px;padding:12px 16px;box-shadow:0 1px 2px rgba(0,0,0,.08)}
.panel h3{font-size:14px;margin:0 0 8px}
table{width:100%;border-collapse:collapse;font-size:13px}th{text-align:left;color:#6b7280;font-weight:600;
border-bottom:1px solid #e5e7eb;padding:5px 6px;white-space:nowrap}td{padding:4px 6px;border-bottom:1px solid #f0f1f3}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.model{font-size:11px}
.bar{display:inline-block;height:8px;border-radius:4px;background:#2563eb;vertical-align:middle;margin-right:6px}
.sev{display:inline-block;border-radius:4px;padding:1px 6px;font-size:11px;font-weight:600;color:#fff}
.critical{background:#dc2626}.warning{background:#ea580c}.info{background:#2563eb}
.muted{color:#9ca3af}.legend{font-size:11px;color:#4b5563}.legend span{margin-right:10px;white-space:nowrap}
.legend i{display:inline-block;width:10px;height:3px;margin-right:4px;vertical-align:middle}
"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _nice(value: float) -> float:
    """The smallest 1, 2, 2.5 or 5 x 10^k at or above ``value`` (a readable axis top); 1 for nothing."""
    if value <= 0:
        return 1.0
    power = 10.0 ** math.floor(math.log10(value))
    return float(next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= value))


def svg_chart(lines: Sequence[tuple[str, Sequence[tuple[float, float]]]], *, width: int = 520, height: int = 160,
              y_max: float | None = None, unit: str = "") -> str:
    """An inline SVG line chart with axes, gridlines and a legend; a note when there is nothing to draw."""
    points = [p for _, pts in lines for p in pts]
    if not points:
        return '<p class="muted">No data over the period.</p>'
    left, right, top, bottom = 48, 10, 8, 22
    t0, t1 = min(t for t, _ in points), max(t for t, _ in points)
    top_value = y_max if y_max is not None else _nice(max(v for _, v in points))
    span_t = (t1 - t0) or 1.0
    clock = "%H:%M:%S" if span_t < 600 else "%H:%M" if span_t < 2 * 86_400 else "%m-%d %H:%M"
    plot_w, plot_h = width - left - right, height - top - bottom

    def x(t: float) -> float:
        return left + (t - t0) / span_t * plot_w

    def y(v: float) -> float:
        return top + plot_h - min(max(v, 0.0), top_value) / top_value * plot_h

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="100%" role="img">']
    for i in range(5):
        value = top_value * i / 4
        out.append(f'<line x1="{left}" x2="{width - right}" y1="{y(value):.1f}" y2="{y(value):.1f}" '
                   f'stroke="#e5e7eb"/><text x="{left - 6}" y="{y(value) + 4:.1f}" font-size="10" '
                   f'text-anchor="end" fill="#6b7280">{value:,.4g}{_e(unit)}</text>')
    for frac in (0.0, 0.5, 1.0):
        t = t0 + span_t * frac
        anchor = "start" if frac == 0 else "end" if frac == 1 else "middle"
        out.append(f'<text x="{x(t):.1f}" y="{height - 6}" font-size="10" text-anchor="{anchor}" fill="#6b7280">'
                   f'{datetime.fromtimestamp(t, UTC).strftime(clock)}</text>')
    for i, (_, pts) in enumerate(lines):
        path = " ".join(f"{'M' if j == 0 else 'L'}{x(t):.1f},{y(v):.1f}" for j, (t, v) in enumerate(pts))
        out.append(f'<path d="{path}" fill="none" stroke="{PALETTE[i % len(PALETTE)]}" stroke-width="1.8"/>')
    out.append("</svg>")
    legend = "".join(f'<span><i style="background:{PALETTE[i % len(PALETTE)]}"></i>{_e(name or "(all)")}</span>'
                     for i, (name, _) in enumerate(lines[:8]))
    return "".join(out) + f'<div class="legend">{legend}</div>'


def _pod_table(rows: Sequence[PodRow], currency: str) -> str:
    if not rows:
        return '<p class="muted">No pod has an efficiency score (no GPU series).</p>'
    body = "".join(
        f'<tr><td>{_e(p.namespace)}/{_e(p.pod)}<br><span class="muted model">{_e(p.model)}</span></td>'
        f'<td class="n"><span class="bar" style="width:{max(p.efficiency, 0) * 0.5:.0f}px"></span>'
        f"{p.efficiency:.0f}</td><td class=\"n\">{_e(_num(p.cost))}</td>"
        f'<td class="n">{_e(_num(p.tokens_per_joule))}</td><td class="n">{_e(_num(p.health))}</td></tr>'
        for p in rows)
    return (f'<table><tr><th>pod</th><th class="n">efficiency</th><th class="n">{_e(currency)}/1M tok</th>'
            f'<th class="n">tok/J</th><th class="n">health</th></tr>{body}</table>')


def render_html(r: Report) -> str:
    cost = "—" if r.fleet_cost is None else f"{_num(r.fleet_cost)} {r.currency}"
    spend = "—" if r.spend is None else f"{_num(r.spend)} {r.currency}"
    cards = "".join(f'<div class="card"><div class="l">{_e(label)}</div><div class="v">{_e(value)}</div></div>'
                    for label, value in (("cost per 1M tokens", cost), ("tokens", _num(r.tokens)),
                                         ("GPU-hours", _num(r.gpu_hours)), ("GPU spend", spend)))
    firing = "".join(
        f'<tr><td><span class="sev {_e(a["severity"])}">{_e(a["severity"])}</span></td>'
        f'<td>{_e(a["bottleneck"])}</td><td>{_e(a["namespace"])}/{_e(a["pod"])}</td>'
        f'<td>{_e(a["alertname"])}</td><td class="n">{_e(a["count"])}</td><td>{_e(a["since"])}</td></tr>'
        for a in r.firing)
    head = ('<tr><th>severity</th><th>bottleneck</th><th>pod</th><th>alert</th><th class="n">alerts</th>'
            "<th>since</th></tr>")
    firing_html = f"<table>{head}{firing}</table>" if r.firing else '<p class="muted">Nothing firing.</p>'
    if r.plans is None:
        plans_html = '<p class="muted">Not read: give --receiver-url.</p>'
    elif not r.plans:
        plans_html = '<p class="muted">No plan over the period.</p>'
    else:
        plans_html = ("<table><tr><th>created</th><th>bottleneck</th><th>target</th><th>action</th><th>outcome</th>"
                      "<th>cost</th></tr>" + "".join(
                          f"<tr><td>{_e(p['created'])}</td><td>{_e(p['bottleneck'])}</td><td>{_e(p['target'])}</td>"
                          f"<td>{_e(p['action'])}</td><td>{_e(p['status'])}</td>"
                          f"<td>{_e(_plan_cost(p['cost'], r.currency))}</td></tr>" for p in r.plans) + "</table>")
    charts = "".join(
        f'<div class="panel"><h3>{_e(title)}</h3>{svg_chart(r.charts.get(key, []), y_max=y_max)}</div>'
        for key, title, y_max in (("cost", f"Cost per million tokens by model ({r.currency})", None),
                                  ("efficiency", "Efficiency score by pod", 100.0),
                                  ("health", "Health score by model (lowest pod)", 100.0),
                                  ("joule", "Tokens per joule of GPU energy by pod", None)))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>OptiInfra report: last {_e(r.period)}</title>
<style>{STYLE}</style></head><body><main>
<h1>OptiInfra efficiency &amp; cost report</h1>
<div class="sub">The last {_e(r.period)}, until {r.generated_at:%Y-%m-%d %H:%M} UTC · {_e(r.prometheus_url)}</div>
<div class="cards">{cards}</div>
<h2>Over the period</h2><div class="grid2">{charts}</div>
<h2>Pods</h2><div class="grid2">
<div class="panel"><h3>Most efficient</h3>{_pod_table(r.most_efficient, r.currency)}</div>
<div class="panel"><h3>Least efficient</h3>{_pod_table(r.least_efficient, r.currency)}</div></div>
<h2>Plans and outcomes</h2><div class="panel">{plans_html}</div>
<h2>Bottlenecks firing now ({len(r.firing)})</h2><div class="panel">{firing_html}</div>
</main></body></html>
"""


# ---- command line --------------------------------------------------------------------------------------------


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "report", help="a one-page efficiency and cost summary from Prometheus (text, and HTML with --html)",
        description="Fleet cost per million tokens, the five most and least efficient pods, the bottlenecks "
                    "firing now and the plans over the period (with --receiver-url), from the efficiency "
                    "recording rules.")
    parser.add_argument("--prometheus-url", required=True, help="Prometheus (or a compatible query API) base URL")
    parser.add_argument("--period", default="24h", help="how far back to look, a Prometheus duration (default 24h)")
    parser.add_argument("--html", type=Path, default=None, metavar="FILE",
                        help="also write a self-contained HTML page with charts to FILE")
    parser.add_argument("--receiver-url", default=None, help="the receiver's base URL: list its plans too")
    parser.add_argument("--slo-config", type=Path, default=None,
                        help="YAML config the rules were generated from (selectors); default: built-in defaults")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        period_ms = parse_duration_ms(str(args.period))
    except ValueError as exc:
        raise UsageError(f"--period {args.period!r}: {exc}") from None
    if period_ms < 60_000:
        raise UsageError(f"--period {args.period!r}: give at least 1m")
    prom = Prometheus(_base(str(args.prometheus_url), "--prometheus-url"), time.time())
    receiver = _base(str(args.receiver_url), "--receiver-url") if args.receiver_url else None
    report = collect(prom, load_config(args.slo_config), period_ms, receiver)
    print(render_text(report), end="")
    if args.html is not None:
        try:
            args.html.write_text(render_html(report), encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"--html {args.html}: cannot write ({exc.strerror or exc})") from None
        log.info("wrote the HTML report", extra={"path": str(args.html)})
    return 0
