"""Small typed builders for Grafana's classic dashboard JSON model (schemaVersion 39).

Plain frozen dataclasses rendered to dicts: no dependency, and every field we emit is visible here. A
``Layout`` places panels on the 24-column grid (left to right, wrapping, rows start a new line), so
``gridPos`` never overlaps and ids are assigned in reading order, the same every run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

SCHEMA_VERSION = 39
GRID_WIDTH = 24
#: Every panel and target reads the dashboard's datasource variable; never a literal uid.
DATASOURCE: dict[str, str] = {"type": "prometheus", "uid": "${datasource}"}

Need = Literal["gpu", "log signature", "receiver", "cgroup limit", "price"]
"""What a panel or target needs beyond simulator -> exporter -> Prometheus with the rules to show data."""
PanelType = Literal["timeseries", "stat", "table", "gauge"]


@dataclass(frozen=True)
class Threshold:
    """A line on a panel at ``value`` (from the taxonomy / config), coloured ``color`` above it."""

    value: float
    color: str = "red"


@dataclass(frozen=True)
class Target:
    expr: str
    legend: str = ""
    instant: bool = False
    needs: Need | None = None
    """Set when only this query (not its whole panel) needs an optional component."""

    def to_dict(self, ref_id: str, table: bool) -> dict[str, Any]:
        return {"datasource": dict(DATASOURCE), "editorMode": "code", "expr": self.expr,
                "legendFormat": self.legend or "__auto", "range": not self.instant, "instant": self.instant,
                "refId": ref_id, **({"format": "table"} if table else {})}


@dataclass(frozen=True)
class Link:
    title: str
    url: str


@dataclass(frozen=True)
class Panel:
    title: str
    description: str
    targets: tuple[Target, ...]
    unit: str
    type: PanelType = "timeseries"
    width: int = 12
    height: int = 8
    min: float | None = None
    max: float | None = None
    thresholds: tuple[Threshold, ...] = ()
    links: tuple[Link, ...] = ()
    needs: Need | None = None
    """Set when the panel shows data only with an optional component (a GPU, a log signature, the receiver)."""
    stack: bool = False
    base_color: str = "green"
    """Colour below the first threshold; "red" for signals that are bad when LOW (hit ratio, free memory)."""
    decimals: int | None = None
    data_links: tuple[Link, ...] = ()
    """Per-series links (drill-down): URLs may use ``${__field.labels.x}``, ``${var}`` and ``${__url_time_range}``."""
    columns: tuple[str, ...] = ()
    """Tables: one column per target, named so, merged on the labels and sorted by the first column."""
    sort_desc: bool = True

    def to_dict(self, panel_id: int, grid: dict[str, int]) -> dict[str, Any]:
        table = self.type == "table"
        steps: list[dict[str, Any]] = [{"color": self.base_color, "value": None}]
        steps += [{"color": t.color, "value": t.value} for t in self.thresholds]
        defaults: dict[str, Any] = {
            "unit": self.unit,
            "thresholds": {"mode": "absolute", "steps": steps},
            "color": {"mode": "thresholds" if self.type in ("stat", "gauge") else "palette-classic"},
        }
        defaults.update({key: value for key, value in (("min", self.min), ("max", self.max),
                                                       ("decimals", self.decimals)) if value is not None})
        if self.data_links:
            defaults["links"] = [{"title": link.title, "url": link.url} for link in self.data_links]
        if self.type == "timeseries":
            defaults["custom"] = {
                "drawStyle": "line", "fillOpacity": 10, "lineWidth": 1, "showPoints": "never", "spanNulls": False,
                "stacking": {"group": "A", "mode": "normal" if self.stack else "none"},
                "thresholdsStyle": {"mode": "dashed" if self.thresholds else "off"},
            }
        out: dict[str, Any] = {
            "id": panel_id, "type": self.type, "title": self.title, "description": self.description,
            "datasource": dict(DATASOURCE), "gridPos": grid, "fieldConfig": {"defaults": defaults, "overrides": []},
            "options": _options(self.type),
            "targets": [t.to_dict(chr(ord("A") + i), table) for i, t in enumerate(self.targets)],
        }
        if self.links:
            out["links"] = [{"title": link.title, "url": link.url, "targetBlank": True} for link in self.links]
        if table and self.columns:
            names = {f"Value #{chr(ord('A') + i)}": c for i, c in enumerate(self.columns)}
            out["transformations"] = [
                {"id": "merge", "options": {}},
                {"id": "organize", "options": {"excludeByName": {"Time": True}, "renameByName": names}},
                {"id": "sortBy", "options": {"sort": [{"field": self.columns[0], "desc": self.sort_desc}]}},
            ]
        elif table:
            out["transformations"] = [{"id": "organize", "options": {"excludeByName": {"Time": True, "Value": True}}}]
        return out


def _options(panel_type: PanelType) -> dict[str, Any]:
    if panel_type in ("stat", "gauge"):
        reduce = {"calcs": ["lastNotNull"], "fields": "", "values": False}
        if panel_type == "gauge":
            return {"reduceOptions": reduce, "showThresholdLabels": False, "showThresholdMarkers": True}
        return {"reduceOptions": reduce, "colorMode": "value", "graphMode": "area", "justifyMode": "auto",
                "orientation": "auto", "textMode": "auto"}
    if panel_type == "table":
        return {"showHeader": True, "cellHeight": "sm"}
    return {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True, "calcs": []},
            "tooltip": {"mode": "multi", "sort": "desc"}}


@dataclass(frozen=True)
class Row:
    """A full-width, expanded row header; the panels after it belong to it."""

    title: str


@dataclass(frozen=True)
class Variable:
    """A query variable ``label_values(<metric selector>, <label>)``; values go into ``=~"$name"`` matchers."""

    name: str
    label: str
    metric: str
    """The series selector the values are read from (scoped: never a bare ``label_values(label)``)."""
    source_label: str = ""
    multi: bool = True

    def to_dict(self) -> dict[str, Any]:
        query = f"label_values({self.metric}, {self.source_label or self.name})"
        return {
            "name": self.name, "label": self.label, "type": "query", "datasource": dict(DATASOURCE),
            "query": {"query": query, "refId": f"{self.name}-values", "qryType": 1}, "definition": query,
            "refresh": 2, "regex": "", "sort": 1, "multi": self.multi, "includeAll": self.multi,
            "allValue": ".*" if self.multi else None, "current": {}, "options": [], "hide": 0,
        }


def datasource_variable() -> dict[str, Any]:
    return {"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus", "regex": "",
            "current": {}, "options": [], "hide": 0, "refresh": 1}


@dataclass(frozen=True)
class Annotation:
    name: str
    expr: str
    title: str
    text: str
    color: str = "orange"
    needs: Need | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "datasource": dict(DATASOURCE), "enable": True, "hide": False,
                "iconColor": self.color, "expr": self.expr, "step": "30s", "titleFormat": self.title,
                "textFormat": self.text, "useValueForTime": False}


Item = Panel | Row


@dataclass(frozen=True)
class Dashboard:
    uid: str
    title: str
    description: str
    items: tuple[Item, ...]
    variables: tuple[Variable, ...] = ()
    annotations: tuple[Annotation, ...] = ()
    tags: tuple[str, ...] = ("optiinfra",)

    def panels(self) -> tuple[Panel, ...]:
        return tuple(item for item in self.items if isinstance(item, Panel))

    def to_dict(self) -> dict[str, Any]:
        return {
            "uid": self.uid, "title": self.title, "description": self.description, "tags": list(self.tags),
            "timezone": "browser", "editable": True, "graphTooltip": 1, "time": {"from": "now-3h", "to": "now"},
            "timepicker": {}, "refresh": "30s", "schemaVersion": SCHEMA_VERSION, "version": 1,
            "fiscalYearStartMonth": 0, "liveNow": False, "weekStart": "",
            "links": [{"title": "OptiInfra", "type": "dashboards", "tags": ["optiinfra"], "asDropdown": True,
                       "includeVars": True, "keepTime": True, "targetBlank": False, "icon": "external link",
                       "tooltip": "", "url": ""}],
            "annotations": {"list": [a.to_dict() for a in self.annotations]},
            "templating": {"list": [datasource_variable(), *(v.to_dict() for v in self.variables)]},
            "panels": layout(self.items),
        }


def layout(items: tuple[Item, ...]) -> list[dict[str, Any]]:
    """Place items on the grid in order: panels fill a line left to right and wrap; a row starts a new line.

    A line's height is its tallest panel, so no two panels overlap. Ids run 1, 2, 3 ... in reading order.
    """
    out: list[dict[str, Any]] = []
    x = y = line_h = 0
    for panel_id, item in enumerate(items, start=1):
        if isinstance(item, Row):
            y += line_h
            x, line_h = 0, 0
            out.append({"id": panel_id, "type": "row", "title": item.title, "collapsed": False, "panels": [],
                        "gridPos": {"x": 0, "y": y, "w": GRID_WIDTH, "h": 1}})
            y += 1
            continue
        width = min(item.width, GRID_WIDTH)
        if x + width > GRID_WIDTH:
            y += line_h
            x, line_h = 0, 0
        out.append(item.to_dict(panel_id, {"x": x, "y": y, "w": width, "h": item.height}))
        x += width
        line_h = max(line_h, item.height)
    return out
