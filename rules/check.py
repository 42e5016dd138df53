"""``optiinfra rules check``: every expression parses (promql-parser), reads only series the exporter can
produce (or that the rules define), counters end in ``_total``, names follow the conventions; then
``promtool check rules`` when promtool is installed. Problems come back as one line each.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import promql_parser
import yaml

from optiinfra import metrics as m

RECORD_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*:[a-zA-Z_][a-zA-Z0-9_]*(:[a-zA-Z0-9_]+)?$")  # level:metric[:operations]
ALERT_RE = re.compile(r"^[A-Z][a-zA-Z0-9]*$")
#: Series Prometheus itself provides.
BUILTIN_SERIES = frozenset({"up", "ALERTS", "ALERTS_FOR_STATE"})
_COUNTERS = frozenset(s for metric in m.ALL_METRICS if metric.type == "counter" for s in metric.series_names)


def _groups(doc: Any) -> list[dict[str, Any]] | None:
    """The rule groups of a rule file or of a PrometheusRule manifest; None when the file is neither."""
    if not isinstance(doc, dict):
        return None
    if doc.get("kind") == "PrometheusRule":
        doc = doc.get("spec") or {}
    groups = doc.get("groups")
    return groups if isinstance(groups, list) else None


def selectors(expr: str) -> list[tuple[str, dict[str, str]]]:
    """(metric name, equality matchers) of every vector selector in an expression. Raises ValueError."""
    found: list[tuple[str, dict[str, str]]] = []

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            matchers = {mt.name: mt.value for mt in node.matchers.matchers}
            found.append((node.name or matchers.get("__name__", ""), matchers))

    promql_parser.walk(promql_parser.parse(expr), visit)
    return found


def _le_problem(series: str, le: str | None) -> str:
    """A bucket matcher whose boundary no engine exports matches nothing (``le="120"`` vs ``120.0``)."""
    if le is None or not series.endswith("_bucket"):
        return ""
    histogram = series.removesuffix("_bucket")
    bounds = {b for per_engine in m.NATIVE_BUCKETS.values() for b in per_engine.get(histogram, ())}
    if not bounds:
        return ""
    for text in le.replace("\\", "").split("|"):
        try:
            if float(text) in bounds or float(text) == float("inf"):
                return ""
        except ValueError:
            continue
    return f"le {le!r} of {series} is no native bucket boundary of any engine"


def check_rules(groups: list[dict[str, Any]], where: str) -> tuple[list[str], int]:
    """Problems in these groups (the names they record count as known)."""
    problems: list[str] = []
    defined = {r.get("record") for g in groups for r in g.get("rules") or [] if r.get("record")}
    known = m.known_series() | BUILTIN_SERIES | defined
    count = 0
    for group in groups:
        gname = group.get("name", "?")
        for rule in group.get("rules") or []:
            count += 1
            name = rule.get("record") or rule.get("alert") or "?"
            at = f"{where}: group {gname}: {name}"
            if rule.get("record") and not RECORD_RE.match(rule["record"]):
                problems.append(f"{at}: recording rule name is not level:metric:operations")
            if rule.get("alert"):
                if not ALERT_RE.match(rule["alert"]):
                    problems.append(f"{at}: alert name is not CamelCase")
                for key in ("summary", "description", "runbook_url"):
                    if not (rule.get("annotations") or {}).get(key):
                        problems.append(f"{at}: annotation {key} missing")
                for key in ("bottleneck", "severity", "component"):
                    if not (rule.get("labels") or {}).get(key):
                        problems.append(f"{at}: label {key} missing")
            try:
                used = selectors(str(rule.get("expr", "")))
            except ValueError as exc:
                problems.append(f"{at}: PromQL does not parse: {exc}")
                continue
            for series, matchers in used:
                bad_le = _le_problem(series, matchers.get("le"))
                if bad_le:
                    problems.append(f"{at}: {bad_le}")
                if not series:
                    problems.append(f"{at}: selector without a metric name")
                elif series not in known:
                    hint = " (counters end in _total)" if series + "_total" in _COUNTERS else ""
                    problems.append(f"{at}: unknown series {series!r}{hint}: not in the metric catalogue and "
                                    "not recorded by these rules")
    return problems, count


def check_path(path: Path, promtool: bool = True) -> tuple[list[str], int]:
    problems: list[str] = []
    total = 0
    plain_files: list[Path] = []
    # the generator's layout has subfolders (rules/, operator/, tests/)
    files = [path] if path.is_file() else [f for pattern in ("*.yml", "*.yaml") for f in sorted(path.rglob(pattern))]
    for file in files:
        try:
            doc = yaml.safe_load(file.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            problems.append(f"{file}: cannot read as YAML: {exc}")
            continue
        groups = _groups(doc)
        if groups is None:
            continue  # promtool test files and other YAML
        found, count = check_rules(groups, str(file))
        problems += found
        total += count
        if isinstance(doc, dict) and doc.get("kind") != "PrometheusRule":
            plain_files.append(file)
    if total == 0 and not problems:
        problems.append(f"{path}: no rule files found")
    binary = shutil.which("promtool") if promtool else None
    if binary and plain_files:
        proc = subprocess.run([binary, "check", "rules", *map(str, plain_files)],
                              capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            problems.append("promtool check rules failed:\n" + (proc.stdout + proc.stderr).strip())
    return problems, total
