"""Checks a generated dashboard the way grafana/dashboard-linter and a reviewer would: every query parses as
PromQL (after substituting Grafana's variables) and reads only series the exporter, the rules, Prometheus or
the receiver produce; required fields are there; panel ids are unique; every ``$variable`` exists; every
panel and target reads the datasource variable; no two panels overlap; every panel has a unit and a
description; every ``rate``/``increase`` uses ``$__rate_interval``. Problems come back as one line each.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any

from optiinfra.rules.check import selectors

#: Grafana's built-in variables and what to put in their place before parsing.
BUILTINS: dict[str, str] = {"__rate_interval": "5m", "__interval": "1m", "__range": "1h"}
_VAR_RE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)")
_RANGE_RE = re.compile(r"\b(rate|increase|irate|delta|idelta)\s*\(")
_TOP_LEVEL = ("uid", "title", "description", "tags", "panels", "templating", "annotations", "schemaVersion",
              "time", "refresh")
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


def substitute(expr: str, values: dict[str, str] | None = None) -> str:
    """Replace ``$__rate_interval`` and friends with durations and every other ``$var`` with ``values[var]``
    (default ``.*``: all values), so the expression can be parsed or sent to Prometheus."""
    values = values or {}

    def repl(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        return BUILTINS.get(name) or values.get(name, ".*")

    return _VAR_RE.sub(repl, expr)


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, rows' nested panels included (rows themselves too)."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def queries(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(where, PromQL) of every panel target and annotation."""
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            yield f"panel {panel.get('id')} {panel.get('title')!r} target {target.get('refId')}", target["expr"]
    for annotation in dashboard.get("annotations", {}).get("list", []):
        if annotation.get("expr"):
            yield f"annotation {annotation.get('name')!r}", annotation["expr"]


_LABEL_VALUES_RE = re.compile(r"^label_values\((.+),\s*(\w+)\)$")


def series_used(expr: str) -> list[str]:
    """Metric names of every selector in a query (variables substituted). Raises ValueError."""
    return [name for name, _ in selectors(substitute(expr))]


def _overlap(a: dict[str, int], b: dict[str, int]) -> bool:
    return (a["x"] < b["x"] + b["w"] and b["x"] < a["x"] + a["w"]
            and a["y"] < b["y"] + b["h"] and b["y"] < a["y"] + a["h"])


def _check_query(where: str, expr: str, known: frozenset[str], defined: set[str]) -> Iterable[str]:
    for var in sorted({a or b for a, b in _VAR_RE.findall(expr)} - defined - set(BUILTINS)):
        yield f"{where}: ${var} is not a variable of the dashboard"
    for match in _RANGE_RE.finditer(expr):
        close = expr.find("]", match.end())
        if close == -1 or "$__rate_interval" not in expr[match.end():close + 1]:
            yield f"{where}: {match.group(1)}() without [$__rate_interval]"
    try:
        names = series_used(expr)
    except ValueError as exc:
        yield f"{where}: PromQL does not parse: {exc}"
        return
    for name in names:
        if not name:
            yield f"{where}: a selector without a metric name"
        elif name not in known:
            yield f"{where}: {name} is produced by neither the exporter, the rules nor Prometheus"


def problems(dashboard: dict[str, Any], known: frozenset[str]) -> list[str]:
    """Everything wrong with one dashboard (empty: fine)."""
    uid = dashboard.get("uid", "?")
    out = [f"{uid}: missing top-level {key}" for key in _TOP_LEVEL if key not in dashboard]
    variables = dashboard.get("templating", {}).get("list", [])
    defined = {v.get("name", "") for v in variables}
    if not any(v.get("type") == "datasource" and v.get("name") == "datasource" for v in variables):
        out.append(f"{uid}: no datasource variable named 'datasource'")
    readers: list[tuple[str, dict[str, Any]]] = []
    """(where, item) of everything that must read the datasource variable."""
    for variable in variables:
        if variable.get("type") != "query":
            continue
        at = f"{uid}: variable {variable.get('name')}:"
        readers.append((at, variable))
        query = variable.get("query")
        match = _LABEL_VALUES_RE.match(str(query.get("query", "") if isinstance(query, dict) else query or ""))
        if not match:
            out.append(f"{at} not a metric-scoped label_values(<metric>, <label>) query")
            continue
        out += _check_query(at[:-1], match.group(1), known, defined)
    seen: dict[int, str] = {}
    placed: list[tuple[str, dict[str, int]]] = []
    for panel in panels(dashboard):
        title, pid = panel.get("title", ""), panel.get("id")
        at = f"{uid}: panel {pid} {title!r}"
        if not isinstance(pid, int):
            out.append(f"{at}: id missing")
        elif pid in seen:
            out.append(f"{at}: id {pid} also used by {seen[pid]!r}")
        else:
            seen[pid] = title
        grid = panel.get("gridPos") or {}
        if not all(isinstance(grid.get(k), int) for k in ("x", "y", "w", "h")):
            out.append(f"{at}: gridPos incomplete")
        else:
            if grid["x"] + grid["w"] > 24:
                out.append(f"{at}: wider than the 24-column grid")
            out += [f"{at}: overlaps {other!r}" for other, g in placed if _overlap(grid, g)]
            placed.append((title, grid))
        if not title:
            out.append(f"{at}: no title")
        if panel.get("type") == "row":
            continue
        if not panel.get("description"):
            out.append(f"{at}: no description")
        if not (panel.get("fieldConfig") or {}).get("defaults", {}).get("unit"):
            out.append(f"{at}: no unit (fieldConfig.defaults.unit)")
        targets = panel.get("targets") or []
        if not targets:
            out.append(f"{at}: no queries")
        readers += [(f"{at}:", panel), *((f"{at} target {t.get('refId')}:", t) for t in targets)]
    for where, expr in queries(dashboard):
        out += [f"{uid}: {p}" for p in _check_query(where, expr, known, defined)]
    readers += [(f"{uid}: annotation {a.get('name')!r}", a) for a in dashboard.get("annotations", {}).get("list", [])]
    return out + [f"{at} does not read ${{datasource}}" for at, item in readers if item.get("datasource") != DATASOURCE]
