"""The normalizing transform: an engine's ``/metrics`` text in, the normalized schema out (text 0.0.4).

The mapping is compiled once per engine from the catalogue (``optiinfra.metrics.ENGINE_METRICS``). The hot
path is written for speed in plain Python, and writes text 0.0.4 itself (static labels baked into the series
keys): bench/exporter measures it against building typed families for the encoder.

* The payload is cut into ``# TYPE`` blocks with one ``str.split``. A block of a family the catalogue does
  not map (most of a big payload: ``_created`` gauges, HTTP, process and connector families) is skipped
  whole after two ``str.count`` checks prove every line in it belongs to that family.
* Lines of mapped blocks are looked up by their ``name{labels}`` prefix in a bounded memo, so a label
  string is parsed only the first time it is seen; later scrapes cost a dict lookup and a ``float()``.
* Output series are accumulated in plain dicts keyed by their rendered ``name{labels}`` string.

Rules (the schema: docs/metrics.md): label sets are parsed, never positions; histograms keep their
native ``le`` buckets and carry ``_bucket/_sum/_count`` together; source labels that are not output labels
are aggregated away (``Metric.aggregate``); an alias is read only when the primary family has no samples in
the payload; catalogue sources of one metric that carry no distinguishing labels are alternatives (the first
with samples wins, so vLLM's ``external_prefix_cache_*`` and LMCache's counters of the same tokens are not
added up); a concept the payload lacks is absent, never 0; the first of duplicate input series wins; a
malformed line is skipped and counted. ``transform`` never raises on any text.

With ``max_series``, a payload with more sample lines in the blocks read (the mapped families; every family
under passthrough) gives an empty ``over_limit`` result, counted per block before the block is read.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from optiinfra.exporter.exposition import escape, escape_help, format_value
from optiinfra.metrics import (
    ENGINE_FINGERPRINTS,
    ENGINE_LABEL_RENAMES,
    ENGINE_METRICS,
    ENGINES,
    RANK_LABELS,
    Engine,
    Metric,
    Source,
)

#: Prefixes of families other engines' add-ons put on an engine's endpoint (LMCache inside vLLM).
ADDON_PREFIXES: Final = ("lmcache:", "lmcache_mp_")
#: Family-name prefixes the sidecar itself emits; passthrough never re-exports an engine family using them.
RESERVED_PREFIXES: Final = ("llm_", "optiinfra_", "DCGM_")
#: Family whose labels carry vLLM's cache config (capacity tokens and ``llm_engine_info`` labels).
VLLM_CACHE_CONFIG: Final = "vllm:cache_config_info"

_NAME_RE = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_RE = re.compile(r'[ \t]*([a-zA-Z_][a-zA-Z0-9_]*)[ \t]*=[ \t]*"((?:[^"\\\n]|\\.)*)"[ \t]*(?:,|$|(?=}))')
_ESCAPE_RE = re.compile(r"\\(.)")
#: One sample line: (``name{labels}`` up to the line's last ``}``, or a bare name) and the value text after it.
_SAMPLE_RE = re.compile(r"^([^#\s][^\n]*\}|[^#\s{}]+)[ \t]*([^\n]*)$", re.MULTILINE)
_UNESCAPE = {"n": "\n", "\\": "\\", '"': '"'}
_SUFFIXES: Final = ("_bucket", "_sum", "_count", "_total", "_created", "_info")
_TYPES: Final = frozenset({"counter", "gauge", "histogram", "summary", "untyped"})

# Memo entries: a tuple (canonical key, targets, sample name, labels) for a valid sample, or one of these.
_BAD: Final = 0  # malformed
_SKIP: Final = 1  # valid, not mapped, not needed (no passthrough)

_Target = tuple[int, str, float | None, bool]  # (slot, output key, constant value or None, aggregate is max)
#: (canonical key, slot of the one plain target or -1, its output key, all targets, sample name, info labels)
_Entry = tuple[str, int, str, tuple[_Target, ...], str, dict[str, str] | None]


def detect_engine(text: str) -> Engine | None:
    """The engine whose family prefix (``ENGINE_FINGERPRINTS``) appears in the payload, if any."""
    for engine in ENGINES:
        if _has_prefix(text, ENGINE_FINGERPRINTS[engine]):
            return engine
    return None


def _has_prefix(text: str, prefix: str) -> bool:
    return text.startswith(prefix) or ("\n" + prefix) in text or ("# TYPE " + prefix) in text


def _unescape(value: str) -> str:
    if "\\" not in value:
        return value
    return _ESCAPE_RE.sub(lambda m: _UNESCAPE.get(m.group(1), m.group(0)), value)


def parse_labels(text: str) -> dict[str, str] | None:
    """Label set of ``a="1",b="x\\"y"`` (the text between the braces); ``None`` if malformed."""
    labels: dict[str, str] = {}
    pos, end = 0, len(text)
    while pos < end:
        if text[pos:].strip() == "":
            break
        match = _LABEL_RE.match(text, pos)
        if match is None:
            return None
        name = match.group(1)
        if name in labels:
            return None
        labels[name] = _unescape(match.group(2))
        pos = match.end()
    return labels


def capacity_from_cache_config(labels: Mapping[str, str]) -> float | None:
    """vLLM KV capacity in tokens as its usage ratio counts it: ``(num_gpu_blocks - 1) x block_size``.

    vLLM (V1) keeps one block back (the null block) and ``vllm:kv_cache_usage_perc`` divides by the others, so
    ratio x capacity is the tokens in use. ``kv_cache_size_tokens`` counts every block (it stands in for
    ``num_gpu_blocks`` when that label is missing).
    """
    try:
        block = int(labels["block_size"])
        blocks = int(labels["num_gpu_blocks"]) if labels.get("num_gpu_blocks", "None") != "None" \
            else int(labels["kv_cache_size_tokens"]) // block
    except (KeyError, ValueError, ZeroDivisionError):
        return None
    return float((blocks - 1) * block) if blocks > 1 else None


@dataclass(slots=True)
class TransformResult:
    text: str
    """Normalized families, text 0.0.4."""
    passthrough: str = ""
    """The engine's own valid families (only with ``passthrough=True``)."""
    mapped: int = 0
    """Input samples that fed at least one normalized series."""
    parse_errors: int = 0
    duplicates: int = 0
    recognized: bool = False
    """The payload carries at least one family of the engine (by its fingerprint prefix)."""
    engine_config: dict[str, str] = field(default_factory=dict)
    """Labels of the engine's cache-config info family (``vllm:cache_config_info``), if present."""
    over_limit: bool = False
    """The payload has more series than ``max_series``: it was not read to its end and ``text`` is empty."""


class _OverLimit(Exception):
    pass


@dataclass(slots=True)
class _Scan:
    """State of one ``transform`` call."""

    result: TransformResult
    slots: list[dict[str, float]]
    families: dict[str, list[str]] | None
    limit: int
    samples: int = 0
    """Sample lines read so far (checked against ``limit`` before each batch is read)."""
    seen: set[str] = field(default_factory=set)
    helps: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Spec:
    """One way a wire sample feeds one normalized series."""

    slot: int
    metric: Metric
    source: Source
    out_name: str
    bucket: bool
    label_value: bool  # the value comes from labels (vLLM cache_config_info), not the sample


class EngineTransform:
    """The compiled mapping of one engine; call ``transform(text)`` once per scrape.

    Holds a bounded memo of parsed ``name{labels}`` prefixes; one instance per upstream. Not thread-safe
    (the engine collector runs one transform at a time, in a worker thread for large payloads).
    """

    def __init__(
        self,
        engine: Engine,
        *,
        model: str | None = None,
        labels: Mapping[str, str] | None = None,
        passthrough: bool = False,
        memo_size: int = 50_000,
        max_series: int | None = None,
    ) -> None:
        if engine not in ENGINES:
            raise ValueError(f"unknown engine {engine!r}: choose from {', '.join(ENGINES)}")
        self.engine: Engine = engine
        self.passthrough = passthrough
        self._static = tuple((k, escape(v)) for k, v in (labels or {}).items())
        self._renames = ENGINE_LABEL_RENAMES[engine]
        self._fingerprints = (ENGINE_FINGERPRINTS[engine], *(ADDON_PREFIXES if engine == "vllm" else ()))
        self._memo_size = memo_size
        self.max_series = max_series
        self._memo: dict[str, _Entry | int] = {}
        self._formatted: dict[float, str] = {}
        self._prefix_safe: dict[str, str] = {}
        #: source label that becomes ``model`` (vLLM/SGLang ``model_name``); TGI has none
        self._model_source = next((k for k, v in self._renames.items() if v == "model"), None)
        self.default_model = "unknown"
        """Model label for series that carry none (change it with ``set_default_model``: the memo holds it)."""
        self._learn_model = False
        self.set_default_model(model)
        self._compile()

    # -- compile ----------------------------------------------------------------------------------

    def _compile(self) -> None:
        specs: dict[str, list[_Spec]] = {}
        families: set[str] = set()  # the TYPE names of mapped families (a counter's without ``_total``)
        self._metrics: list[Metric] = []
        self._headers: list[str] = []
        #: per metric: groups of slots; the first slot with samples in each group is used
        self._groups: list[list[list[int]]] = []
        slot = 0
        for metric in ENGINE_METRICS:
            sources = metric.sources.get(self.engine, ())
            if not sources:
                continue
            self._metrics.append(metric)
            self._headers.append(
                f"# HELP {metric.name} {escape_help(metric.help)}\n# TYPE {metric.name} {metric.type}\n"
            )
            groups: list[list[int]] = []
            plain: list[int] = []
            for source in sources:
                slots: list[int] = []
                for wire in source.wire_names:
                    families.update((wire, wire.removesuffix("_total")))
                    self._add_specs(specs, _Spec(slot, metric, source, "", False, False), wire)
                    slots.append(slot)
                    slot += 1
                if source.set_labels or source.value_labels or source.keep:
                    groups.append(slots)
                else:
                    plain.extend(slots)
            if plain:
                groups.insert(0, plain)
            self._groups.append(groups)
        self._nslots = slot
        self._specs: dict[str, tuple[_Spec, ...]] = {k: tuple(v) for k, v in specs.items()}
        self._mapped_families = frozenset(families)

    @staticmethod
    def _add_specs(specs: dict[str, list[_Spec]], base: _Spec, wire: str) -> None:
        metric, source = base.metric, base.source

        def add(sample: str, out_name: str, bucket: bool = False, label_value: bool = False) -> None:
            specs.setdefault(sample, []).append(_Spec(base.slot, metric, source, out_name, bucket, label_value))

        if wire == VLLM_CACHE_CONFIG:
            add(wire, metric.name, label_value=True)
        elif metric.type == "histogram":
            add(wire + "_bucket", metric.name + "_bucket", bucket=True)
            add(wire + "_sum", metric.name + "_sum")
            add(wire + "_count", metric.name + "_count")
        elif source.sample:
            add(wire + source.sample, metric.name)
        else:
            add(wire, metric.name)
            if metric.type == "counter" and not wire.endswith("_total"):
                add(wire + "_total", metric.name)  # a bare counter (TGI) that gains its suffix

    def set_default_model(self, model: str | None) -> None:
        """Model label for series that carry none (TGI; vLLM's cache_config_info); forgets the memo on change.

        ``None`` goes back to learning it from the payload: the first model label found (an engine process
        serves one model).
        """
        self._learn_model = model is None and self._model_source is not None
        model = model or "unknown"
        if model != self.default_model:
            self.default_model = model
            self._memo.clear()

    def _learn_model_from(self, text: str) -> None:
        pos = text.find(f'{self._model_source}="')
        if pos < 0:
            return
        match = _LABEL_RE.match(text, pos)
        if match and match.group(2):
            self.set_default_model(_unescape(match.group(2)))

    # -- per scrape -------------------------------------------------------------------------------

    def transform(self, text: str) -> TransformResult:
        """Normalize one payload. Never raises on any ``str``."""
        result = TransformResult("")
        result.recognized = any(_has_prefix(text, p) for p in self._fingerprints)
        if self._learn_model:
            self._learn_model_from(text)
        limit = self.max_series if self.max_series is not None else len(text)
        scan = _Scan(result, [{} for _ in range(self._nslots)], {} if self.passthrough else None, limit)
        try:
            self._scan(text, scan)
        except _OverLimit:
            return TransformResult("", recognized=result.recognized, over_limit=True,
                                   parse_errors=result.parse_errors, duplicates=result.duplicates)
        finally:
            if len(self._memo) > self._memo_size:
                self._memo.clear()
        result.text = self._render(scan.slots)
        if scan.families:
            helps = scan.helps
            result.passthrough = "".join(
                (f"# HELP {name} {helps[name]}\n" if name in helps else "") + "".join(body)
                for name, body in scan.families.items()
            )
        return result

    def _scan(self, text: str, scan: _Scan) -> None:
        """Feed every block of ``text`` to the hot loops, checking the series limit once per batch."""
        pass_families = scan.families
        mapped_families = self._mapped_families
        chunks = text.split("\n# TYPE ")
        first = chunks[0]
        if first.startswith("# TYPE "):
            chunks[0] = first[len("# TYPE "):]
            start = 0
        else:
            start = 1
            if first:
                self._count(scan, _sample_lines(first))
                self._lines(first.split("\n"), scan, "", "")
        skippable = self._skippable
        pending: list[tuple[str, str]] = []  # fast-path pairs, fed to _pairs in one call (order kept)
        for chunk in chunks[start:]:
            nl = chunk.find("\n")
            if nl < 0:
                continue  # a TYPE line and nothing after it
            sp = chunk.find(" ", 0, nl)
            fname = chunk[:sp] if sp >= 0 else chunk[:nl]
            body = chunk[nl + 1:]
            if pass_families is None and fname not in mapped_families:
                if skippable(chunk, fname):
                    continue
                self._count(scan, _sample_lines(body))
            else:
                lines = _sample_lines(body)
                self._count(scan, lines)  # before the block is read: a hostile block costs no parsing
                if pass_families is None:
                    pairs = _SAMPLE_RE.findall(body)
                    if len(pairs) == lines:  # every sample line split cleanly: the fast loop
                        pending += pairs
                        continue
            if pending:
                self._pairs(pending, scan)
                pending = []
            ftype = chunk[sp + 1:nl].strip() if sp >= 0 else ""
            self._lines(body.split("\n"), scan, fname, ftype)
        if pending:
            self._pairs(pending, scan)

    @staticmethod
    def _count(scan: _Scan, samples: int) -> None:
        """Count ``samples`` about to be read; ``_OverLimit`` (before any is read) past the series limit."""
        scan.samples += samples
        if scan.samples > scan.limit:
            raise _OverLimit

    def _skippable(self, chunk: str, fname: str) -> bool:
        """True when every line of this unmapped block is a comment, blank, or starts with its name."""
        needle = self._prefix_safe.get(fname)
        if needle is None:
            # "" when a mapped sample name starts with this family's name: its lines must be read
            needle = "" if not fname or any(sample.startswith(fname) for sample in self._specs) else "\n" + fname
            if len(self._prefix_safe) < 10_000:
                self._prefix_safe[fname] = needle
        if not needle:
            return False
        count = chunk.count
        return count(needle) + count("\n#") + count("\n\n") + chunk.endswith("\n") == count("\n")

    def _lines(self, lines: list[str], scan: _Scan, fname: str, ftype: str) -> None:
        """Cut sample lines into (``name{labels}``, value text) for ``_pairs``; keeps HELP texts for passthrough."""
        pass_families = scan.families
        pairs: list[tuple[str, str]] = []
        kept: list[str] = []
        for line in lines:
            if not line or line[0] == "#":
                if pass_families is not None and line.startswith("# HELP "):
                    name, _, help_text = line[7:].partition(" ")
                    scan.helps[name] = help_text.rstrip("\r")
                continue
            end = line.rfind("}")
            if end >= 0:
                pairs.append((line[: end + 1], line[end + 1:]))
            else:
                parts = line.split(None, 1)
                if not parts:
                    continue
                pairs.append((parts[0], parts[1] if len(parts) > 1 else ""))
            kept.append(line)
        self._pairs(pairs, scan, kept if pass_families is not None else None, fname, ftype)

    def _pairs(self, pairs: list[tuple[str, str]], scan: _Scan, lines: list[str] | None = None, fname: str = "",
               ftype: str = "") -> None:
        """The hot loop: one memo lookup and one ``float()`` per sample of a mapped family. With ``lines`` (the
        pairs' lines, under passthrough) each valid sample's line is kept for its family."""
        memo = self._memo
        memo_get = memo.get
        slots, seen, families = scan.slots, scan.seen, scan.families
        seen_add = seen.add
        mapped = errors = duplicates = 0
        for i, (key, rest) in enumerate(pairs):
            entry = memo_get(key)
            if entry is None:
                entry = self._resolve(key)
                memo[key] = entry
            if isinstance(entry, int):
                if entry == _BAD:
                    errors += 1
                continue
            try:
                value = float(rest)
            except ValueError:
                value_or_none = _value_with_timestamp(rest)
                if value_or_none is None:
                    errors += 1
                    continue
                value = value_or_none
            canon = entry[0]
            if canon in seen:
                duplicates += 1
                continue
            seen_add(canon)
            slot = entry[1]
            if slot >= 0:  # the common case: one plain target, summed
                acc = slots[slot]
                out_key = entry[2]
                old = acc.get(out_key)
                acc[out_key] = value if old is None else old + value
                mapped += 1
            elif entry[3]:
                mapped += 1
                for target_slot, target_key, const, is_max in entry[3]:
                    _merge(slots[target_slot], target_key, value if const is None else const, is_max)
            if entry[5] is not None and not scan.result.engine_config:
                scan.result.engine_config = dict(entry[5])
            if lines is not None and families is not None:
                self._keep(families, lines[i].rstrip("\r"), entry[4], fname, ftype)
        result = scan.result
        result.mapped += mapped
        result.parse_errors += errors
        result.duplicates += duplicates

    def _keep(self, families: dict[str, list[str]], line: str, sample: str, fname: str, ftype: str) -> None:
        own = sample == fname or (sample.startswith(fname) and sample[len(fname):] in _SUFFIXES)
        if fname and ftype in _TYPES and own:
            family, type_ = fname, ftype
        else:
            family, type_ = sample, "untyped"
        if family.startswith(RESERVED_PREFIXES):
            return
        body = families.get(family)
        if body is None:
            body = families[family] = [f"# TYPE {family} {type_}\n"]
        body.append(line + "\n")

    def _resolve(self, key: str) -> _Entry | int:
        """Parse ``name{labels}`` once; the memo keeps what it maps to."""
        brace = key.find("{")
        if brace < 0:
            name, labels = key, {}
        else:
            name = key[:brace]
            if not key.endswith("}"):
                return _BAD
            parsed = parse_labels(key[brace + 1: -1])
            if parsed is None:
                return _BAD
            labels = parsed
        if _NAME_RE.fullmatch(name) is None:
            return _BAD
        specs = self._specs.get(name)
        if specs is None and not self.passthrough:
            return _SKIP
        canon = name + "\x00" + "\x00".join(f"{k}\x01{v}" for k, v in sorted(labels.items()))
        targets: list[_Target] = []
        for spec in specs or ():
            target = self._target(spec, labels)
            if target is not None:
                targets.append(target)
        info = labels if name == VLLM_CACHE_CONFIG else None
        if len(targets) == 1 and targets[0][2] is None and not targets[0][3]:
            return (canon, targets[0][0], targets[0][1], tuple(targets), name, info)
        return (canon, -1, "", tuple(targets), name, info)

    def _target(self, spec: _Spec, labels: dict[str, str]) -> _Target | None:
        source, metric = spec.source, spec.metric
        for label, allowed in source.keep.items():
            if labels.get(label) not in allowed:
                return None
        const: float | None = None
        if spec.label_value:
            const = capacity_from_cache_config(labels)
            if const is None:
                return None
        renamed = {self._renames.get(k, k): v for k, v in labels.items()}
        out: list[tuple[str, str]] = [("engine", self.engine), ("model", renamed.get("model") or self.default_model)]
        # A source whose family has no rank label (vLLM's API-server counters) may name the rank it stands for.
        out.extend((rank, value) for rank in RANK_LABELS
                   if (value := renamed.get(rank) or source.set_labels.get(rank)))
        for label in metric.labels:
            if label in source.set_labels:
                value = source.set_labels[label]
            elif label in source.value_labels:
                source_label, value_map = source.value_labels[label]
                value = value_map.get(labels.get(source_label, ""), "other")
            else:
                value = renamed.get(label) or "other"
            out.append((label, value))
        rendered = [f'{k}="{escape(v)}"' for k, v in out]
        rendered.extend(f'{k}="{v}"' for k, v in self._static)
        if spec.bucket:
            le = labels.get("le")
            if le is None:
                return None
            rendered.append(f'le="{escape(le)}"')
        out_key = spec.out_name + "{" + ",".join(rendered) + "}"
        return (spec.slot, out_key, const, metric.aggregate == "max")

    def _render(self, slots: list[dict[str, float]]) -> str:
        parts: list[str] = []
        for mi, groups in enumerate(self._groups):
            merged: dict[str, float] | None = None
            is_max = self._metrics[mi].aggregate == "max"
            for group in groups:
                chosen = None
                for slot in group:
                    if slots[slot]:
                        chosen = slots[slot]
                        break
                if chosen is None:
                    continue
                if merged is None:
                    merged = chosen  # the per-scrape dicts are ours to extend
                    continue
                for key, value in chosen.items():
                    _merge(merged, key, value, is_max)
            if not merged:
                continue
            parts.append(self._headers[mi])
            cache = self._formatted
            cache_get = cache.get
            for key, value in merged.items():
                text = cache_get(value)
                if text is None:
                    text = format_value(value)
                    if len(cache) < 4096:
                        cache[value] = text
                parts.append(f"{key} {text}\n")
        return "".join(parts)


def _merge(acc: dict[str, float], key: str, value: float, is_max: bool) -> None:
    """Add ``value`` to the series ``key`` of ``acc`` by the metric's aggregation (sum, or max)."""
    old = acc.get(key)
    acc[key] = value if old is None else max(old, value) if is_max else old + value


def _sample_lines(body: str) -> int:
    """Lines of ``body`` that are neither blank nor comments (blank runs may be undercounted: then the
    caller's count check fails and it takes the careful path)."""
    count = body.count
    return count("\n") + 1 - count("\n#") - count("\n\n") - (body[:1] in "#\n") - body.endswith("\n")


def _value_with_timestamp(rest: str) -> float | None:
    parts = rest.split()
    if len(parts) != 2:
        return None
    try:
        int(parts[1])
        return float(parts[0])
    except ValueError:
        return None

