"""SLOs people already write, converted to the config model: Sloth ``prometheus/v1`` specs (plain or as the
``sloth.slok.dev/v1`` ``PrometheusServiceLevel`` resource) and OpenSLO ``openslo/v1`` ``SLO`` documents (with
their ``SLI`` documents for ``indicatorRef``).

Their SLIs are PromQL queries; an SLI is mapped onto one of our kinds by what it reads:

- latency (``ttft``, ``inter_token``, ``request_duration``): the total reads ``<histogram>_count`` (or the
  ``+Inf`` bucket) and the good/bad side reads ``<histogram>_bucket{le="T"}``: the threshold is T;
- ``availability``: the queries read ``llm_requests_finished_total`` and the bad side selects
  ``outcome="error"`` (the good side ``outcome!="error"``).

``<histogram>`` is the normalized name (``llm_time_to_first_token_seconds``) or an engine's own
(``vllm:time_to_first_token_seconds``, which also narrows the SLO to that engine). An ``engine`` matcher
narrows the engines, a ``model`` / ``model_name`` matcher becomes the SLO's ``model`` regex. Other matchers
are dropped with a warning: the rules select series with the config's ``selectors``. Objectives convert
exactly (Sloth's 99.9 is 0.999). The burn-rate tiers assume a 30-day rolling budget, so an OpenSLO
``timeWindow`` other than a rolling 30d, or ``Timeslices`` budgeting, is refused. Alert names, labels and
annotations of the specs are not used: the burn alerts are OptiInfra's (the receiver keys on them).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import promql_parser
import yaml
from pydantic import ValidationError

from optiinfra import metrics as m
from optiinfra.cliutil import UsageError
from optiinfra.config import SLI_HISTOGRAMS, Config, Slo, format_errors, parse_config

log = logging.getLogger(__name__)

SLOTH_VERSION = "prometheus/v1"
SLOTH_KIND = ("sloth.slok.dev/v1", "PrometheusServiceLevel")
OPENSLO_VERSION = "openslo/v1"
_HISTOGRAM_KIND = {hist: kind for kind, hist in SLI_HISTOGRAMS.items()}
_FINISHED = "llm_requests_finished_total"


class SpecError(UsageError, ValueError):
    """A spec that cannot become an OptiInfra SLO; the message names the file, the SLO and what to change."""


def _wire_names() -> dict[str, tuple[str, m.Engine | None]]:
    """Every family name an SLI may read -> (normalized name, engine it implies)."""
    names = (*SLI_HISTOGRAMS.values(), _FINISHED)
    out: dict[str, tuple[str, m.Engine | None]] = {name: (name, None) for name in names}
    return out | {wire: (metric.name, engine) for metric in m.ENGINE_METRICS if metric.name in names
                  for engine, sources in metric.sources.items() for source in sources for wire in source.wire_names}


_WIRE = _wire_names()


def _selectors(query: str, where: str) -> list[tuple[str, str, dict[str, tuple[str, str]]]]:
    """(family, sample suffix, label -> (op, value)) of every vector selector of a query."""
    query = re.sub(r"\{\{\s*\.window\s*\}\}", "5m", query)  # Sloth's window placeholder
    try:
        tree = promql_parser.parse(query)
    except ValueError as exc:
        raise SpecError(f"{where}: the query does not parse as PromQL ({exc})") from None
    found: list[tuple[str, str, dict[str, tuple[str, str]]]] = []

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            matchers = {mt.name: (str(mt.op).rsplit(".", 1)[-1], mt.value) for mt in node.matchers.matchers}
            name = node.name or matchers.pop("__name__", ("", ""))[1]
            for suffix in ("_bucket", "_count", "_sum", ""):
                if name.endswith(suffix) and name[:len(name) - len(suffix)] in _WIRE:
                    found.append((name[:len(name) - len(suffix)], suffix, matchers))
                    return
            found.append((name, "", matchers))

    promql_parser.walk(tree, visit)
    return found


def _scope(selectors: Iterable[tuple[str, str, dict[str, tuple[str, str]]]], where: str) -> dict[str, Any]:
    """engines / model of the SLO from the selectors' families and matchers."""
    engines: set[str] = set()
    model: str | None = None
    ignored: set[str] = set()
    for family, _, matchers in selectors:
        implied = _WIRE.get(family, ("", None))[1]
        if implied:
            engines.add(implied)
        for label, (op, value) in matchers.items():
            if label == "engine" and op in ("Equal", "Re"):
                engines.update(e for e in m.ENGINES if re.fullmatch(value, e))
            elif label in ("model", "model_name") and op in ("Equal", "Re"):
                model = value
            elif label not in ("le", "outcome", "finished_reason"):
                ignored.add(f"{label}{'=' if op == 'Equal' else '~'}{value!r}")
    if ignored:
        log.warning("SLO matchers dropped (the rules select series with the config's selectors)",
                    extra={"where": where, "matchers": sorted(ignored)})
    out: dict[str, Any] = {}
    if engines:
        out["engines"] = sorted(engines, key=m.ENGINES.index)
    if model is not None:
        out["model"] = model
    return out


def _is_error_matcher(matchers: Mapping[str, tuple[str, str]], want_error: bool) -> bool:
    for label in ("outcome", "finished_reason"):
        if label in matchers:
            op, value = matchers[label]
            selects_error = (op in ("Equal", "Re") and re.fullmatch(value, "error") is not None
                             and re.fullmatch(value, "stop") is None)
            excludes_error = op in ("NotEqual", "NotRe") and re.fullmatch(value, "error") is not None
            return selects_error if want_error else excludes_error
    return False


def sli_from_queries(total: str, *, bad: str | None = None, good: str | None = None, where: str) -> dict[str, Any]:
    """Our SLI fields (``sli``, ``threshold``, ``engines``, ``model``) from a ratio SLI's PromQL queries."""
    total_sel = _selectors(total, f"{where}: total query")
    side_sel = _selectors(bad if bad is not None else good or "", f"{where}: {'bad' if bad else 'good'} query")
    normalized = {_WIRE[f][0] for f, _, _ in (*total_sel, *side_sel) if f in _WIRE}
    hint = (f"{where}: cannot map this SLI onto an OptiInfra SLI kind; supported: a latency SLI over "
            f"<histogram>_count and <histogram>_bucket{{le=\"T\"}} of {', '.join(sorted(_HISTOGRAM_KIND))} "
            f"(or an engine's own name for them), or availability over {_FINISHED} with outcome=\"error\"")
    if len(normalized) != 1:
        raise SpecError(hint + f" (the queries read {sorted({f for f, _, _ in (*total_sel, *side_sel)}) or 'nothing'})")
    metric = normalized.pop()
    fields = _scope([*total_sel, *side_sel], where)
    if metric == _FINISHED:
        if not any(_is_error_matcher(mt, bad is not None) for f, _, mt in side_sel if f in _WIRE):
            raise SpecError(hint + " (an availability SLI must select outcome=\"error\" on the bad side or "
                                   "outcome!=\"error\" on the good side)")
        return {"sli": "availability", **fields}
    les = {mt["le"][1] for f, suffix, mt in side_sel if suffix == "_bucket" and "le" in mt and mt["le"][0] == "Equal"}
    les.discard("+Inf")
    if len(les) != 1:
        raise SpecError(hint + f" (expected one bucket matcher le=\"T\" on the {'bad' if bad else 'good'} side, "
                               f"found {sorted(les) or 'none'})")
    try:
        threshold = float(les.pop())
    except ValueError:
        raise SpecError(f"{where}: the le matcher is not a number") from None
    return {"sli": _HISTOGRAM_KIND[metric], "threshold": threshold, **fields}


def _slug(text: str) -> str:
    slug = re.sub(r"[^a-z0-9_-]+", "-", text.lower()).strip("-_")
    return slug if slug and slug[0].isalpha() else f"slo-{slug}"


def _share(value: Any, percent: bool, where: str) -> float:
    try:
        share = Decimal(str(value)) / (100 if percent else 1)
    except (InvalidOperation, TypeError):
        raise SpecError(f"{where}: objective {value!r} is not a number") from None
    return float(share)


def _slo(fields: dict[str, Any], where: str) -> Slo:
    try:
        return Slo.model_validate(fields)
    except ValidationError as exc:
        raise SpecError(f"{where}: {format_errors(exc)}") from None


def from_sloth(doc: Mapping[str, Any], source: str) -> list[Slo]:
    service = str(doc.get("service") or "")
    if not service:
        raise SpecError(f"{source}: a Sloth spec needs `service`")
    slos = doc.get("slos")
    if not isinstance(slos, list) or not slos:
        raise SpecError(f"{source}: a Sloth spec needs a non-empty `slos` list")
    out = []
    for i, spec in enumerate(slos):
        if not isinstance(spec, dict):
            raise SpecError(f"{source}: slos.{i} must be a mapping")
        where = f"{source}: slos.{i} ({spec.get('name', '?')})"
        sli = spec.get("sli") or {}
        events = sli.get("events") if isinstance(sli, dict) else None
        if not isinstance(events, dict) or not events.get("error_query") or not events.get("total_query"):
            kind = next(iter(sli), "none") if isinstance(sli, dict) else "none"
            raise SpecError(f"{where}: only `sli.events` (error_query and total_query) can be mapped; "
                            f"`sli.{kind}` cannot (a raw ratio or a plugin hides which series it reads)")
        fields = sli_from_queries(str(events["total_query"]), bad=str(events["error_query"]), where=where)
        out.append(_slo({"name": _slug(f"{service}-{spec.get('name', i)}"),
                         "objective": _share(spec.get("objective"), True, where),
                         "description": str(spec.get("description") or ""), **fields}, where))
    return out


def _query(node: Any, where: str) -> str:
    """The PromQL of an OpenSLO metric (``metricSource.spec.query`` or ``.promql``)."""
    source = (node or {}).get("metricSource") if isinstance(node, dict) else None
    spec = (source or {}).get("spec") or {}
    kind = str((source or {}).get("type") or "Prometheus")
    if kind.lower() != "prometheus":
        raise SpecError(f"{where}: metricSource type {kind!r}: only Prometheus queries can be mapped")
    query = spec.get("query") or spec.get("promql")
    if not query:
        raise SpecError(f"{where}: metricSource.spec.query missing")
    return str(query)


def from_openslo(doc: Mapping[str, Any], slis: Mapping[str, Mapping[str, Any]], source: str) -> list[Slo]:
    meta, spec = doc.get("metadata") or {}, doc.get("spec") or {}
    name = str(meta.get("name") or "")
    where = f"{source}: SLO {name or '?'}"
    if not name:
        raise SpecError(f"{where}: metadata.name missing")
    for window in spec.get("timeWindow") or [{"duration": "30d", "isRolling": True}]:
        if str(window.get("duration")) != "30d" or not window.get("isRolling", False):
            raise SpecError(f"{where}: timeWindow {window.get('duration')!r} (rolling: {window.get('isRolling')}); "
                            "the burn-rate tiers assume a rolling 30d budget: use duration 30d, isRolling true")
    method = str(spec.get("budgetingMethod") or "Occurrences")
    if method != "Occurrences":
        raise SpecError(f"{where}: budgetingMethod {method}: only Occurrences (a ratio of events) can be mapped")
    indicator = spec.get("indicator")
    if indicator is None and spec.get("indicatorRef"):
        indicator = slis.get(str(spec["indicatorRef"]))
        if indicator is None:
            raise SpecError(f"{where}: indicatorRef {spec['indicatorRef']!r} names no SLI document of the input")
    ratio = ((indicator or {}).get("spec") or {}).get("ratioMetric")
    if not isinstance(ratio, dict):
        raise SpecError(f"{where}: only a ratioMetric indicator can be mapped (thresholdMetric SLIs compare a "
                        "quantile, which hides the per-request events a burn rate counts)")
    total = _query(ratio.get("total"), f"{where}: total")
    if ratio.get("bad"):
        fields = sli_from_queries(total, bad=_query(ratio["bad"], f"{where}: bad"), where=where)
    elif ratio.get("good"):
        fields = sli_from_queries(total, good=_query(ratio["good"], f"{where}: good"), where=where)
    else:
        raise SpecError(f"{where}: ratioMetric needs `good` or `bad` beside `total`")
    objectives = spec.get("objectives") or []
    if not objectives:
        raise SpecError(f"{where}: objectives missing")
    out = []
    for i, objective in enumerate(objectives):
        if "target" in objective:
            share = _share(objective["target"], False, where)
        elif "targetPercent" in objective:
            share = _share(objective["targetPercent"], True, where)
        else:
            raise SpecError(f"{where}: objectives.{i} needs target or targetPercent")
        suffix = "" if len(objectives) == 1 else "-" + _slug(str(objective.get("displayName") or i))
        out.append(_slo({"name": _slug(name) + suffix, "objective": share,
                         "description": str(spec.get("description") or meta.get("displayName") or ""), **fields},
                        where))
    return out


def slos_from_documents(docs: list[Any], source: str) -> list[Slo]:
    """The SLOs of every Sloth/OpenSLO document of one file (other OpenSLO kinds are skipped)."""
    slis = {str((d.get("metadata") or {}).get("name")): d for d in docs
            if isinstance(d, dict) and d.get("apiVersion") == OPENSLO_VERSION and d.get("kind") == "SLI"}
    out: list[Slo] = []
    for i, doc in enumerate(docs):
        where = f"{source} (document {i + 1})" if len(docs) > 1 else source
        if not isinstance(doc, dict):
            raise SpecError(f"{where}: not a mapping")
        if doc.get("version") == SLOTH_VERSION:
            out += from_sloth(doc, where)
        elif (doc.get("apiVersion"), doc.get("kind")) == SLOTH_KIND:
            out += from_sloth(doc.get("spec") or {}, where)
        elif doc.get("apiVersion") == OPENSLO_VERSION:
            if doc.get("kind") == "SLO":
                out += from_openslo(doc, slis, where)
            elif doc.get("kind") != "SLI":
                log.info("OpenSLO document skipped", extra={"where": where, "kind": doc.get("kind")})
        else:
            raise SpecError(f"{where}: neither a Sloth spec (version: {SLOTH_VERSION}) nor an OpenSLO document "
                            f"(apiVersion: {OPENSLO_VERSION})")
    if not out:
        raise SpecError(f"{source}: no SLO found")
    return out


def load_specs(paths: Iterable[Path]) -> list[Slo]:
    """The SLOs of Sloth/OpenSLO files. Raises SpecError with a one-line message."""
    out: list[Slo] = []
    for path in paths:
        try:
            docs = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]
        except OSError as exc:
            raise SpecError(f"cannot read {path}: {exc.strerror or exc}") from None
        except yaml.YAMLError as exc:
            raise SpecError(f"{path}: not valid YAML: {exc}") from None
        out += slos_from_documents(docs, str(path))
    return out


def with_specs(config: Config, paths: Iterable[Path]) -> Config:
    """``config`` with the SLOs of Sloth/OpenSLO files: they replace the default SLOs, or join the SLOs the
    config file lists. Raises SpecError / ConfigError."""
    paths = list(paths)
    if not paths:
        return config
    imported = load_specs(paths)
    kept = list(config.slos) if "slos" in config.model_fields_set else []
    data = config.model_dump(by_alias=True, exclude_unset=True)
    data["slos"] = [s.model_dump(exclude_defaults=True) for s in (*kept, *imported)]
    return parse_config(data, "config with " + ", ".join(p.name for p in paths))
