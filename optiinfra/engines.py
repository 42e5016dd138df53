"""The engine vocabulary: every engine setting OptiInfra reads, plans or simulates, defined once.

One ``Setting`` row per engine config key: launch ``flag``, the ``llm_engine_info`` ``label`` it is read from
(``negated`` when the label holds its negation) and the ``source`` the exporter fills it from, ``type``, ``default``,
``bounds``, first version known to have it (``since``), the simulator field modelling it (``sim``) and its
``levers`` (what each taxonomy action does to it); per engine, info endpoints, ``relations`` and missing levers.
Exporter, planner, simulator, ``docs/plan-actions.md`` and runbooks read ``VOCABULARY`` at call time. Facts from
the engines' source: https://github.com/vllm-project/vllm (``vllm/config/cache.py``, ``scheduler.py``),
https://github.com/huggingface/text-generation-inference (``launcher/src/main.rs``) and
https://github.com/sgl-project/sglang (``python/sglang/srt/server_args.py``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from types import MappingProxyType
from typing import Literal, get_args

from optiinfra.metrics import ENGINE_INFO_LABELS, Engine
from optiinfra.taxonomy import ActionId

ValueType = Literal["float", "int", "bool", "str"]
Risk = Literal["low", "medium", "high"]
Value = bool | int | float | str

_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})
UNSET = frozenset({"", "none", "null"})
_ACTIONS = frozenset(get_args(ActionId))


class VocabularyError(ValueError):
    """A vocabulary row contradicts itself or the metrics catalogue; the message names the row."""


def flag_name(flag: str) -> str:
    """``--gpu-memory-utilization`` / ``gpu-memory-utilization`` / ``PREFIX_CACHING`` -> snake_case name."""
    return flag.lstrip("-").replace("-", "_").lower()


def parse(raw: str, kind: ValueType) -> Value | None:
    """A label value as a typed config value; ``None`` when absent, ``None``-valued or unparseable."""
    text = raw.strip()
    if kind == "str":
        return text
    if text.lower() in UNSET:
        return None
    if kind == "bool":
        return True if text.lower() in _TRUE else False if text.lower() in _FALSE else None
    try:
        number = float(text)
    except ValueError:
        return None
    if kind == "int":
        return int(number) if number.is_integer() else None
    return number


def _text(raw: object) -> str | None:
    return None if raw is None or isinstance(raw, dict | list) else str(raw)


def _number(value: Value | None) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


@dataclass(frozen=True)
class Lever:
    """What one abstract action does to a setting (the planner's choice)."""

    action: ActionId
    change: str  # +0.05 / -0.05 (add), x0.75 / x2 (multiply), =fp8 / =true (set)
    effect: str  # documented effect and trade-off, quoted into the plan's rationale
    risk: Risk = "low"
    minimum: float | None = None  # policy bounds of the change (a relative change carries them)
    maximum: float | None = None
    needs_current: bool = False  # only proposed when the current value is known (enabling a default-on cache)
    done_prefixes: tuple[str, ...] = ()  # current values (lower-case prefixes) that make a set pointless
    only_when_unset: bool = False  # a set that applies only while the current value is empty / none / off
    preference: int = 0  # an action's candidates are tried by preference, then in vocabulary order
    unless_set: str = ""  # skipped while this other setting has a value (it overrides this one in the engine)


@dataclass(frozen=True)
class Bounds:
    """A setting's valid range (the engine refuses values outside it); ``sentinel`` is allowed anyway."""

    minimum: float
    maximum: float | None = None
    exclusive_minimum: bool = False
    sentinel: float | None = None

    def problem(self, key: str, value: Value) -> str:
        number, low, high = _number(value), self.minimum, self.maximum
        if number is None or number == self.sentinel or (
                (number > low if self.exclusive_minimum else number >= low) and (high is None or number <= high)):
            return ""
        if high is not None:
            return f"{key}={number:g} is outside {'(' if self.exclusive_minimum else '['}{low:g}, {high:g}]"
        return f"{key}={number:g} must be {'>' if self.exclusive_minimum else '>='} {low:g}"


FRACTION = Bounds(0.0, 1.0, exclusive_minimum=True)
COUNT = Bounds(1.0)


@dataclass(frozen=True)
class Setting:
    """One engine config key; ``key`` (the engine's own name) is the knob id of cooldowns and the no-retry list."""

    key: str
    flag: str
    type: ValueType
    default: str  # the documented default, for rationales and docs (never taken as the current value)
    label: str | None = None
    negated: bool = False
    source: str = ""  # where the engine reports it under its key (an info endpoint or vllm:cache_config_info)
    aka: tuple[str, ...] = ()  # older upstream spellings of the key, read after it
    bounds: Bounds | None = None
    env: bool = False
    since: str | None = None
    excludes: str | None = None  # a setting that cannot be active (above 1, true, non-empty) together with this one
    sim: str | None = None
    levers: tuple[Lever, ...] = ()

    @property
    def info(self) -> tuple[str, ...]:
        """The upstream keys the exporter reads into the label."""
        return (self.key, *self.aka) if self.source else ()

    @property
    def name(self) -> str:
        """The flag's snake_case name: the key the simulator's admin API speaks."""
        return flag_name(self.flag)

    @property
    def lookups(self) -> tuple[str, ...]:
        """Labels tried for the current value: own key, flag name, then the info label (``!``: negated)."""
        label = () if self.label is None else (("!" if self.negated else "") + self.label,)
        return tuple(dict.fromkeys((self.key, self.name, *label)))

    def flip(self, value: object) -> object:
        """The setting's value <-> the label's (vLLM-spelled) value: negated settings flip a bool."""
        return (not value) if self.negated else value

    def label_value(self, raw: object) -> str | None:
        """An upstream value as this setting's ``llm_engine_info`` label text (negation applied)."""
        if self.negated and not isinstance(raw, bool):
            return None
        text = _text(self.flip(raw))
        # vLLM spells an unset number "None" (kv_cache_memory_bytes): no value, no label
        return None if text is not None and self.type in ("int", "float") and parse(text, self.type) is None \
            else text

    def read(self, raw: str, lookup: str) -> Value | None:
        """A label value read through one of ``lookups`` as this setting's value (negation undone)."""
        value = parse(raw, "bool" if lookup.startswith("!") else self.type)
        return (not value) if lookup.startswith("!") and value is not None else value

    def check(self, engine: str) -> None:
        where = f"{engine} setting {self.key!r}"
        if self.label is not None and self.label not in ENGINE_INFO_LABELS:
            raise VocabularyError(f"{where}: label {self.label!r} is not an llm_engine_info label "
                                  f"({', '.join(ENGINE_INFO_LABELS)})")
        if self.negated and (self.type != "bool" or self.label is None):
            raise VocabularyError(f"{where}: only a bool setting with a label can be negated")
        if (self.source or self.aka) and (self.label is None or not self.source):
            raise VocabularyError(f"{where}: a source needs a label (and older spellings a source)")
        for lever in self.levers:
            change = lever.change
            if lever.action not in _ACTIONS:
                raise VocabularyError(f"{where}: unknown action {lever.action!r}")
            if change.startswith("=") and parse(change[1:], self.type) is None:
                raise VocabularyError(f"{where}: {change!r} is not a valid {self.type}")
            if not change.startswith("=") and (self.type not in ("int", "float")
                                                or not re.fullmatch(r"[+\-x]\d+(\.\d+)?", change)):
                raise VocabularyError(f"{where}: change {change!r} must be +N, -N, xN or =value")
            if lever.minimum is not None and lever.maximum is not None and lever.minimum > lever.maximum:
                raise VocabularyError(f"{where}: lever {lever.action} has minimum > maximum")


@dataclass(frozen=True)
class Knob:
    """One lever of one setting on one engine: what the planner proposes."""

    engine: Engine
    setting: Setting
    lever: Lever

    @property
    def kind(self) -> Literal["engine_arg", "engine_env"]:
        return "engine_env" if self.setting.env else "engine_arg"


@dataclass(frozen=True)
class Relation:
    """``lower < upper`` (``strict``) or ``lower <= upper`` between two settings of one engine."""

    lower: str
    upper: str
    strict: bool = False


@dataclass(frozen=True)
class EngineVocabulary:
    """One engine: its info endpoints and identity keys, settings, constraints and the levers it lacks."""

    engine: Engine
    title: str  # how docs name it
    checked: str  # the version this vocabulary was checked against (and that the simulator reports)
    info_paths: tuple[tuple[str, ...], ...]  # every group is read; in a group the first path answering JSON wins
    identity: Mapping[str, str]  # upstream key -> version / model label
    settings: tuple[Setting, ...]
    relations: tuple[Relation, ...] = ()
    no_knob: Mapping[ActionId, str] = field(default_factory=dict)  # why there is no lever (for the Diagnosis)

    def __post_init__(self) -> None:
        object.__setattr__(self, "identity", MappingProxyType(dict(self.identity)))
        object.__setattr__(self, "no_knob", MappingProxyType(dict(self.no_knob)))
        keys = [s.key for s in self.settings]
        for what, names in (("key", keys), ("flag", [s.flag for s in self.settings]),
                            ("info key", [k for s in self.settings for k in s.info] + list(self.identity))):
            if duplicates := sorted({n for n in names if names.count(n) > 1}):
                raise VocabularyError(f"{self.engine}: duplicate setting {what} {', '.join(duplicates)}")
        sources = {p for group in self.info_paths for p in group} | {"vllm:cache_config_info"}
        for setting in self.settings:
            setting.check(self.engine)
            if setting.source and setting.source not in sources:
                raise VocabularyError(f"{self.engine} setting {setting.key!r}: unknown source {setting.source!r}")
        numeric = {s.key for s in self.settings if s.type in ("int", "float")}
        if any(not {r.lower, r.upper} <= numeric for r in self.relations) or \
                {s.excludes for s in self.settings} - {None, *keys}:
            raise VocabularyError(f"{self.engine}: a relation or exclusion names a missing or non-numeric setting")
        if unknown := sorted({lv.unless_set for s in self.settings for lv in s.levers} - {"", *keys}):
            raise VocabularyError(f"{self.engine}: unless_set names a missing setting: {', '.join(unknown)}")
        if clash := [a for a in self.no_knob if self.candidates(a)]:
            raise VocabularyError(f"{self.engine}: {', '.join(clash)} has levers and a no-knob reason")

    @cached_property
    def knobs(self) -> tuple[Knob, ...]:
        return tuple(Knob(self.engine, s, lever) for s in self.settings for lever in s.levers)

    def candidates(self, action: ActionId) -> tuple[Knob, ...]:
        """The knobs ``action`` turns on this engine, most preferred first (empty: no such lever)."""
        return tuple(sorted((k for k in self.knobs if k.lever.action == action), key=lambda k: k.lever.preference))

    @cached_property
    def _info(self) -> tuple[tuple[str, str, Setting | None], ...]:
        """(upstream key, label, its setting or None for identity keys) in reading order, for ``map_info``."""
        return (*((k, label, None) for k, label in self.identity.items()),
                *((k, str(s.label), s) for s in self.settings for k in s.info))

    def map_info(self, raw: Mapping[str, object]) -> dict[str, str]:
        """Engine-native info keys -> ``llm_engine_info`` labels (unknown keys and empty values dropped)."""
        out: dict[str, str] = {}
        for key, label, setting in self._info:
            if key in raw and label not in out:
                text = _text(raw[key]) if setting is None else setting.label_value(raw[key])
                if text is not None:
                    out[label] = text
        return out

    def from_argv(self, argv: Sequence[str]) -> dict[str, str]:
        """``llm_engine_info`` labels from the engine's command line: the settings with a label whose flag it
        was started with (``--flag value``, ``--flag=value``; a bool flag alone means true). Environment
        settings and flags without a label are not read."""
        wanted = {s.flag: s for s in self.settings if s.label is not None and not s.env}
        out: dict[str, str] = {}
        for i, arg in enumerate(argv):
            flag, eq, inline = arg.partition("=")
            setting = wanted.get(flag)
            if setting is None:
                continue
            if eq:
                raw: object = inline
            elif setting.type == "bool" and (i + 1 == len(argv) or argv[i + 1].startswith("--")):
                raw = True
            elif i + 1 < len(argv):
                raw = argv[i + 1]
            else:
                continue
            if setting.type == "bool" and isinstance(raw, str):
                raw = parse(raw, "bool")
            if (text := setting.label_value(raw)) is not None:
                out[str(setting.label)] = text
        return out

    def current_config(self, *sources: Mapping[str, str]) -> dict[str, Value]:
        """The known config (own key names) from label maps, earlier sources taking precedence."""
        config: dict[str, Value] = {}
        for setting in self.settings:
            for lookup in setting.lookups:
                raw = next((src[label] for src in sources if (label := lookup.lstrip("!")) in src), None)
                if raw is not None and (value := setting.read(raw, lookup)) is not None:
                    config[setting.key] = value
                    break
        return config

    def bounds(self, knob: Knob, config: Mapping[str, Value]) -> tuple[float | None, float | None]:
        """The lever's (min, max), tightened by the known values of the settings it is related to."""
        low, high = knob.lever.minimum, knob.lever.maximum
        for rel in self.relations:
            offset = 1 if rel.strict else 0
            if rel.upper == knob.setting.key and (value := _number(config.get(rel.lower))) is not None:
                low = value + offset if low is None else max(low, value + offset)
            if rel.lower == knob.setting.key and (value := _number(config.get(rel.upper))) is not None:
                high = value - offset if high is None else min(high, value - offset)
        return low, high

    def violations(self, config: Mapping[str, Value]) -> list[str]:
        """Constraints a config breaks; values absent are not checked."""
        problems = [p for s in self.settings
                    if s.bounds is not None and s.key in config and (p := s.bounds.problem(s.key, config[s.key]))]
        for rel in self.relations:
            low, high = _number(config.get(rel.lower)), _number(config.get(rel.upper))
            if low is not None and high is not None and (low >= high if rel.strict else low > high):
                problems.append(f"{rel.lower}={low:g} must be {'<' if rel.strict else '<='} {rel.upper}={high:g}")
        problems += [f"{s.key} does not run together with {s.excludes}" for s in self.settings
                     if s.excludes and _active(config.get(s.key)) and _active(config.get(s.excludes))]
        return problems

    def too_old(self, knob: Knob, running: str) -> str:
        """Why the running version (``version`` label) predates the setting ('' when not known to)."""
        since, version = knob.setting.since, [int(part) for part in re.findall(r"\d+", running)]
        if since is None or not version or version >= [int(part) for part in since.split(".")]:
            return ""
        return f"needs {self.engine} >= {since}, running {running}"


def _active(value: Value | None) -> bool:
    number = _number(value)
    return number > 1 if number is not None else bool(value)


def all_knobs() -> tuple[Knob, ...]:
    return tuple(k for vocab in VOCABULARY.values() for k in vocab.knobs)


_FP8 = ("fp8",)
_Q = "weights quantized to fp8 online: less weight memory, more KV; lower precision (output quality may change)"
_TP_UP = Lever("tensor_parallel_up", "x2", "shards weights over more GPUs: more KV per GPU; changes GPUs per replica "
               "(capacity check)", "high", minimum=1, maximum=8)
_TP_DOWN = Lever("tensor_parallel_down", "x0.5", "fewer GPUs per replica; less KV memory per GPU", "high", minimum=1,
                 needs_current=True)
_CCI, _SGL, _TGI = "vllm:cache_config_info", "/get_server_info", "/info"

VLLM = EngineVocabulary("vllm", "vLLM", "0.26.0", (("/version",), ("/v1/models",)), {"version": "version"}, (
    Setting("gpu_memory_utilization", "--gpu-memory-utilization", "float", "0.9 (0.92 newest)",
            "gpu_memory_utilization", source=_CCI, sim="gpu_memory_utilization", bounds=FRACTION, levers=(
                Lever("kv_memory_up", "+0.05", "more GPU memory for the executor, so more KV cache; risks OOM if other "
                      "processes need the headroom", minimum=0.5, maximum=0.95, unless_set="kv_cache_memory_bytes"),
                Lever("kv_memory_down", "-0.05", "leaves more headroom for activations and other processes; less KV "
                      "cache", minimum=0.5, maximum=0.95, unless_set="kv_cache_memory_bytes"))),
    # When set, vLLM sizes the KV cache from it and ignores --gpu-memory-utilization: the KV levers turn it.
    Setting("kv_cache_memory_bytes", "--kv-cache-memory-bytes", "int", "unset (sized by --gpu-memory-utilization)",
            "kv_cache_memory_bytes", source=_CCI, bounds=COUNT, levers=(
                Lever("kv_memory_up", "x2", "twice the KV cache bytes (vLLM ignores --gpu-memory-utilization while "
                      "this is set); risks OOM if the GPU has no room for it", needs_current=True, preference=-1),
                Lever("kv_memory_down", "x0.75", "a quarter less KV cache: more headroom for activations and other "
                      "processes", needs_current=True, preference=-1))),
    Setting("cache_dtype", "--kv-cache-dtype", "str", "auto", "cache_dtype", source=_CCI, sim="kv_cache_dtype",
            levers=(Lever("kv_cache_dtype_fp8", "=fp8", "halves KV bytes; may cost accuracy without a proper scaling "
                          "factor; recompiles graphs", "medium", done_prefixes=_FP8),)),
    Setting("enable_prefix_caching", "--enable-prefix-caching", "bool", "true (V1)", "enable_prefix_caching",
            source=_CCI, sim="enable_prefix_caching", levers=(
                Lever("enable_prefix_caching", "=true", "cached prefix blocks skip prefill", needs_current=True),)),
    Setting("max_num_seqs", "--max-num-seqs", "int", "256 (1024 on >=70 GiB GPUs)", "max_num_seqs", sim="max_num_seqs",
            bounds=COUNT, levers=(
                Lever("max_num_seqs_down", "x0.75", "fewer concurrent sequences need less KV cache; lowers throughput",
                      minimum=1),
                Lever("max_num_seqs_up", "x1.5", "more concurrent sequences; more KV use and higher inter-token "
                      "latency", minimum=1, maximum=4096))),
    Setting("max_num_batched_tokens", "--max-num-batched-tokens", "int", "2048 (8192 on >=70 GiB GPUs)",
            "max_num_batched_tokens", sim="max_num_batched_tokens", bounds=COUNT, levers=(
                Lever("batched_tokens_down", "x0.5", "smaller per-step token budget: less KV and activation memory; "
                      "hurts TTFT and throughput", minimum=256),
                Lever("batched_tokens_up", "x2", "larger per-step token budget for throughput; hurts inter-token "
                      "latency", minimum=256, maximum=65536),
                Lever("prefill_chunk_up", "x2", "more prefill tokens per step: better TTFT, worse inter-token latency",
                      minimum=256, maximum=65536),
                Lever("prefill_chunk_down", "x0.5", "fewer prefills slowing decodes: better inter-token latency, worse "
                      "TTFT", minimum=256))),
    Setting("quantization", "--quantization", "str", "none", "quantization", levers=(
        Lever("weight_quantization_fp8", "=fp8", _Q, "high", only_when_unset=True),)),
    Setting("tensor_parallel_size", "--tensor-parallel-size", "int", "1", "tensor_parallel_size", bounds=COUNT,
            levers=(_TP_UP, _TP_DOWN)),
    Setting("speculative_config", "--speculative-config", "str", "off", excludes="pipeline_parallel_size", levers=(
        Lever("speculative_decoding", '={"method": "ngram", "num_speculative_tokens": 4, "prompt_lookup_max": 4}',
              "n-gram speculative decoding improves inter-token latency in memory-bound decode; gains depend on the "
              "prompts; not with pipeline parallelism", "medium", only_when_unset=True),)),
    Setting("kv_offloading_size", "--kv-offloading-size", "float", "off", "kv_offloading_size", source=_CCI, levers=(
        Lever("cpu_kv_offload", "=8", "offloads KV cache to 8 GiB of CPU memory (native backend); newer vLLM versions "
              "only", "medium", only_when_unset=True),)),
    Setting("max_model_len", "--max-model-len", "int", "model config", "max_model_len", source="/v1/models",
            sim="max_model_len", bounds=COUNT, levers=(
                Lever("max_model_len_down", "x0.5", "halves the per-sequence maximum: less memory; longer prompts are "
                      "rejected", "medium", minimum=1024),)),
    Setting("block_size", "--block-size", "int", "16", "block_size", source=_CCI, sim="block_size", bounds=COUNT),
    Setting("pipeline_parallel_size", "--pipeline-parallel-size", "int", "1", bounds=COUNT),
), relations=(Relation("max_num_seqs", "max_num_batched_tokens"),),
    no_knob={"lpm_schedule_policy": "vLLM has no longest-prefix-match scheduling policy"})

SGLANG = EngineVocabulary("sglang", "SGLang", "0.5.16", ((_SGL, "/server_info"),), {"version": "version"}, (
    Setting("mem_fraction_static", "--mem-fraction-static", "float", "heuristic (~0.9)", "gpu_memory_utilization",
            source=_SGL, sim="gpu_memory_utilization", bounds=FRACTION, levers=(
                Lever("kv_memory_up", "+0.02", "bigger KV pool; keep enough memory for activations and CUDA graph "
                      "buffers", minimum=0.5, maximum=0.95),
                Lever("kv_memory_down", "-0.05", "prevents OOM in prefill and decode; limits concurrency and peak "
                      "throughput", minimum=0.5, maximum=0.95))),
    Setting("kv_cache_dtype", "--kv-cache-dtype", "str", "auto", "cache_dtype", source=_SGL, sim="kv_cache_dtype",
            levers=(Lever("kv_cache_dtype_fp8", "=fp8_e4m3", "FP8 KV cache; without --quantization-param-path scales "
                          "default to 1.0 (accuracy risk)", "medium", done_prefixes=_FP8),)),
    Setting("disable_radix_cache", "--disable-radix-cache", "bool", "false (radix cache on)", "enable_prefix_caching",
            negated=True, source=_SGL, sim="enable_prefix_caching", levers=(
                Lever("enable_prefix_caching", "=false", "RadixAttention prefix caching reuses shared prefixes",
                      needs_current=True),)),
    Setting("max_running_requests", "--max-running-requests", "int", "derived from the KV pool", "max_num_seqs",
            source=_SGL, sim="max_num_seqs", bounds=COUNT, levers=(
                Lever("max_num_seqs_down", "x0.75", "caps concurrency: fewer retractions, smaller decode batches",
                      minimum=1),
                Lever("max_num_seqs_up", "x1.5", "more concurrent requests", minimum=1, maximum=4096,
                      needs_current=True, preference=1))),
    Setting("schedule_conservativeness", "--schedule-conservativeness", "float", "1.0", "schedule_conservativeness",
            source=_SGL, bounds=Bounds(0.0, exclusive_minimum=True), levers=(
                Lever("max_num_seqs_down", "+0.3", "admits fewer requests when 'KV cache pool is full. Retract "
                      "requests.' is frequent", minimum=0.1, maximum=2.0, preference=1),
                Lever("max_num_seqs_up", "-0.3", "token usage < 0.9 with a queue means the server is too conservative "
                      "about taking in requests", minimum=0.1, maximum=2.0))),
    Setting("chunked_prefill_size", "--chunked-prefill-size", "int", "GPU-tiered 2048..16384", "max_num_batched_tokens",
            source=_SGL, sim="max_num_batched_tokens", bounds=Bounds(1.0, sentinel=-1), levers=(
                Lever("batched_tokens_down", "x0.5", "saves memory but slows the prefill of long prompts", minimum=512),
                Lever("prefill_chunk_up", "x2", "larger prefill chunks speed long prompts; costs activation memory",
                      minimum=512, maximum=32768),
                Lever("prefill_chunk_down", "x0.5", "smaller prefill chunks interrupt decodes less; slows long prompts",
                      minimum=512))),
    Setting("max_prefill_tokens", "--max-prefill-tokens", "int", "16384", bounds=COUNT, levers=(
        Lever("batched_tokens_up", "x2", "more tokens per prefill batch", minimum=512, maximum=65536),)),
    Setting("quantization", "--quantization", "str", "none", "quantization", source=_SGL, levers=(
        Lever("weight_quantization_fp8", "=fp8", _Q, "high", only_when_unset=True),)),
    Setting("tp_size", "--tp-size", "int", "1", "tensor_parallel_size", source=_SGL, bounds=COUNT,
            levers=(_TP_UP, _TP_DOWN)),
    Setting("speculative_algorithm", "--speculative-algorithm", "str", "none", "speculative_algorithm", source=_SGL,
            levers=(
        Lever("speculative_decoding", "=NGRAM", "n-gram speculative decoding; gains depend on the prompts", "medium",
              only_when_unset=True),)),
    Setting("enable_hierarchical_cache", "--enable-hierarchical-cache", "bool", "false", "enable_hierarchical_cache",
            source=_SGL, since="0.5.10", levers=(
        Lever("cpu_kv_offload", "=true", "host-memory KV tier (2x the device pool) keeps more prefixes", "medium"),)),
    Setting("schedule_policy", "--schedule-policy", "str", "fcfs", "schedule_policy", source=_SGL, levers=(
        Lever("lpm_schedule_policy", "=lpm", "longest-prefix-match ordering encourages cache hits; more scheduling "
              "overhead", "medium", done_prefixes=("lpm",)),)),
    Setting("context_length", "--context-length", "int", "model config", "max_model_len", source=_SGL,
            sim="max_model_len", bounds=COUNT, levers=(
                Lever("max_model_len_down", "x0.5", "halves the context length: less memory; longer prompts are "
                      "rejected", "medium", minimum=1024),)),
    Setting("page_size", "--page-size", "int", "1", "block_size", source=_SGL, sim="block_size", bounds=COUNT),
))

TGI = EngineVocabulary("tgi", "TGI", "3.3.7", ((_TGI,),), {"model_id": "model", "version": "version"}, (
    Setting("cuda_memory_fraction", "--cuda-memory-fraction", "float", "1.0", "gpu_memory_utilization",
            sim="gpu_memory_utilization", bounds=FRACTION, levers=(
                Lever("kv_memory_up", "+0.05", "more visible CUDA memory; only useful where it was lowered",
                      minimum=0.5, maximum=1.0, needs_current=True),
                Lever("kv_memory_down", "-0.05", "caps usable CUDA memory, leaving headroom", minimum=0.5,
                      maximum=1.0))),
    Setting("kv_cache_dtype", "--kv-cache-dtype", "str", "model dtype", "cache_dtype", sim="kv_cache_dtype", levers=(
        Lever("kv_cache_dtype_fp8", "=fp8_e4m3fn", "FP8 KV cache (CUDA only); accuracy may change", "medium",
              done_prefixes=_FP8),)),
    Setting("prefix_caching", "PREFIX_CACHING", "bool", "true", "enable_prefix_caching", env=True, levers=(
        Lever("enable_prefix_caching", "=true", "reuses cached prefixes", needs_current=True),)),
    Setting("max_concurrent_requests", "--max-concurrent-requests", "int", "128", "max_num_seqs", source=_TGI,
            sim="max_num_seqs", bounds=COUNT, levers=(
                Lever("max_num_seqs_up", "x1.5", "more requests in flight instead of refused or waiting", minimum=1,
                      maximum=4096),)),
    Setting("max_batch_prefill_tokens", "--max-batch-prefill-tokens", "int", "computed (4096 fallback)",
            "max_batch_prefill_tokens", source=_TGI, sim="max_num_batched_tokens", bounds=COUNT, levers=(
                Lever("batched_tokens_down", "x0.5", "prefill is the most memory-hungry step; smaller budget, slower "
                      "long prompts", minimum=512),
                Lever("prefill_chunk_up", "x2", "bigger prefill budget per step; more memory, longer decode stalls",
                      minimum=512, maximum=65536),
                Lever("prefill_chunk_down", "x0.5", "smaller prefill steps stall decodes less", minimum=512))),
    Setting("quantize", "--quantize", "str", "none (from the model config)", "quantization", levers=(
        Lever("weight_quantization_fp8", "=fp8", _Q, "high", only_when_unset=True),)),
    Setting("num_shard", "--num-shard", "int", "all visible GPUs", "tensor_parallel_size", bounds=COUNT, levers=(
        _TP_UP, Lever("tensor_parallel_down", "x0.5", "fewer GPUs per replica", "high", minimum=1,
                      needs_current=True))),
    Setting("speculate", "--speculate", "int", "none", levers=(
        Lever("speculative_decoding", "=2", "Medusa heads if present, else n-gram; speed-up depends on the task",
              "medium", only_when_unset=True),)),
    Setting("max_total_tokens", "--max-total-tokens", "int", "min(max allocatable, positions)", "max_model_len",
            source=_TGI, sim="max_model_len", bounds=COUNT, levers=(
                Lever("max_model_len_down", "x0.5", "smaller memory budget per request; longer requests are rejected",
                      "medium", minimum=1024),)),
    Setting("max_input_tokens", "--max-input-tokens", "int", "max_total_tokens - 1", "max_input_tokens",
            source=_TGI, aka=("max_input_length",), bounds=COUNT),
    Setting("max_batch_total_tokens", "--max-batch-total-tokens", "int", "inferred (largest that fits)",
            "max_batch_total_tokens", source=_TGI, sim="max_batch_total_tokens", bounds=COUNT),
), relations=(Relation("max_input_tokens", "max_total_tokens", strict=True),
              Relation("max_total_tokens", "max_batch_total_tokens"),
              Relation("max_batch_prefill_tokens", "max_batch_total_tokens")),
    no_knob={"max_num_seqs_down": "TGI admits by token budget; fewer concurrent requests would only refuse clients",
             "batched_tokens_up": "TGI infers --max-batch-total-tokens as the largest that fits; raise memory instead",
             "lpm_schedule_policy": "TGI has no scheduling-policy flag", "cpu_kv_offload": "TGI has no CPU KV offload"})

VOCABULARY: Mapping[Engine, EngineVocabulary] = MappingProxyType({v.engine: v for v in (VLLM, SGLANG, TGI)})
