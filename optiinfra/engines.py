"""The engine vocabulary: every engine setting OptiInfra reads, plans or simulates, defined once.

One ``Setting`` row per engine config key says everything the components need about it:

- ``flag``: the real launch flag (or environment variable when ``env``), what a plan names;
- ``label``: the ``llm_engine_info`` label it is read from (vLLM spelling, ``optiinfra.metrics``), with
  ``negated`` when the label holds its negation (SGLang ``disable_radix_cache`` = not ``enable_prefix_caching``);
- ``info`` / ``source``: the raw upstream keys the exporter fills that label from and where the engine reports them
  (an info endpoint path or ``vllm:cache_config_info``);
- ``type``, ``default``, ``minimum`` / ``maximum`` (validity bounds) and the engine's ``relations`` between settings
  (``lower <= upper``), which give both the related bounds of a relative change and the constraint check;
- ``since``: the first engine version known to have it (None: not pinned);
- ``sim``: the simulator's ``EngineConfig`` field that models it (None: not simulated);
- ``levers``: what each abstract taxonomy action (``optiinfra.taxonomy.ActionId``) does to it, for the planner.

The exporter's info-label mapping, the planner's knob choices and constraint checks, the simulator's admin API and
info payloads, ``docs/plan-actions.md`` and the runbooks' knob lists are all derived from ``VOCABULARY``; consumers
look it up at call time, so a test may substitute a vocabulary with one more row. Facts (flags, defaults,
constraints) come from the engines' own docs and source: vLLM ``docs/configuration/optimization.md``,
``vllm/config/cache.py`` and ``scheduler.py``; TGI ``docs/source/reference/launcher.md`` and
``launcher/src/main.rs``; SGLang ``docs/advanced_features/server_arguments.md`` and ``hyperparameter_tuning.md``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from types import MappingProxyType
from typing import Literal, get_args

from optiinfra.metrics import ENGINE_INFO_LABELS, ENGINES, Engine
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
        low = text.lower()
        return True if low in _TRUE else False if low in _FALSE else None
    try:
        number = float(text)
    except ValueError:
        return None
    if kind == "int":
        return int(number) if number.is_integer() else None
    return number


def version_tuple(version: str) -> tuple[int, ...]:
    """``0.5.10`` -> (0, 5, 10); ``v3.3.7+1`` -> (3, 3, 7, 1)."""
    return tuple(int(part) for part in re.findall(r"\d+", version))


def _text(raw: object) -> str | None:
    return None if raw is None or isinstance(raw, dict | list) else str(raw)


def _number(value: Value | None) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


@dataclass(frozen=True)
class Lever:
    """What one abstract action does to a setting (the planner's choice)."""

    action: ActionId
    change: str
    """``+0.05`` / ``-0.05`` (add), ``x0.75`` / ``x2`` (multiply), or ``=fp8`` / ``=true`` (set)."""
    effect: str
    """Documented effect and trade-off, quoted into the plan's rationale."""
    risk: Risk = "low"
    minimum: float | None = None
    maximum: float | None = None
    """Policy bounds of this change (a relative change carries them for the orchestrator to clamp to)."""
    needs_current: bool = False
    """Only proposed when the current value is known (e.g. enabling what is on by default)."""
    done_prefixes: tuple[str, ...] = ()
    """Current values (lower-case prefixes) that make a set action pointless (``fp8`` already)."""
    only_when_unset: bool = False
    """A set action that applies only while the current value is empty / none (weight quantization)."""
    preference: int = 0
    """Candidates for one action are tried by preference, then in vocabulary order."""


@dataclass(frozen=True)
class Bounds:
    """A setting's valid range (the engine refuses values outside it)."""

    minimum: float
    maximum: float | None = None
    exclusive_minimum: bool = False
    sentinel: float | None = None
    """A value allowed outside the range (SGLang ``chunked_prefill_size -1`` disables chunking)."""

    def problem(self, key: str, value: Value) -> str:
        """Why ``value`` is out of range ('' when it is not)."""
        number = _number(value)
        if number is None or number == self.sentinel:
            return ""
        low, high = self.minimum, self.maximum
        if not (number <= low if self.exclusive_minimum else number < low) and (high is None or number <= high):
            return ""
        if high is not None:
            return f"{key}={number:g} is outside {'(' if self.exclusive_minimum else '['}{low:g}, {high:g}]"
        return f"{key}={number:g} must be {'>' if self.exclusive_minimum else '>='} {low:g}"


FRACTION = Bounds(0.0, 1.0, exclusive_minimum=True)
COUNT = Bounds(1.0)


@dataclass(frozen=True)
class Setting:
    """One engine config key: flag, info label, type, default, bounds, versions, simulation and levers."""

    key: str
    """The engine's own config name: the knob id for cooldowns and the no-retry list."""
    flag: str
    type: ValueType
    default: str
    """The documented default, for rationales and docs (never used as the current value)."""
    label: str | None = None
    negated: bool = False
    info: tuple[str, ...] = ()
    source: str = ""
    bounds: Bounds | None = None
    env: bool = False
    since: str | None = None
    sim: str | None = None
    levers: tuple[Lever, ...] = ()

    @property
    def name(self) -> str:
        """The flag's snake_case name: the key the simulator's admin API speaks."""
        return flag_name(self.flag)

    @property
    def lookups(self) -> tuple[str, ...]:
        """Label names tried for the current value: own key, flag name, then the info label (``!`` = negated)."""
        names = [self.key, self.name]
        if self.label is not None:
            names.append(("!" if self.negated else "") + self.label)
        return tuple(dict.fromkeys(names))

    def label_value(self, raw: object) -> str | None:
        """An upstream value as this setting's ``llm_engine_info`` label text (negation applied)."""
        if self.negated:
            return str(not raw) if isinstance(raw, bool) else None
        return _text(raw)

    def read(self, raw: str, lookup: str) -> Value | None:
        """A label value read through ``lookup`` (one of ``lookups``) as this setting's value."""
        if lookup.startswith("!"):
            value = parse(raw, "bool")
            return None if value is None else not value
        return parse(raw, self.type)

    def check(self, engine: str) -> None:
        where = f"{engine} setting {self.key!r}"
        if self.label is not None and self.label not in ENGINE_INFO_LABELS:
            raise VocabularyError(f"{where}: label {self.label!r} is not an llm_engine_info label "
                                  f"({', '.join(ENGINE_INFO_LABELS)})")
        if self.negated and (self.type != "bool" or self.label is None):
            raise VocabularyError(f"{where}: only a bool setting with a label can be negated")
        if bool(self.info) != bool(self.source) or (self.info and self.label is None):
            raise VocabularyError(f"{where}: info keys need a source and a label")
        for lever in self.levers:
            if lever.action not in _ACTIONS:
                raise VocabularyError(f"{where}: unknown action {lever.action!r}")
            change = lever.change
            if change.startswith("="):
                if parse(change[1:], self.type) is None:
                    raise VocabularyError(f"{where}: {change!r} is not a valid {self.type}")
            elif self.type not in ("int", "float") or not re.fullmatch(r"[+\-x]\d+(\.\d+)?", change):
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
    def flag(self) -> str:
        return self.setting.flag

    @property
    def key(self) -> str:
        return self.setting.key

    @property
    def kind(self) -> Literal["engine_arg", "engine_env"]:
        return "engine_env" if self.setting.env else "engine_arg"

    @property
    def set_value(self) -> Value | None:
        """The value a ``=value`` change sets; None for relative changes."""
        change = self.lever.change
        return parse(change[1:], self.setting.type) if change.startswith("=") else None


@dataclass(frozen=True)
class Relation:
    """``lower < upper`` (``strict``) or ``lower <= upper`` between two settings of one engine."""

    lower: str
    upper: str
    strict: bool = False


@dataclass(frozen=True)
class Exclusive:
    """Two settings that cannot both be active (a number above 1, a true or non-empty value)."""

    first: str
    second: str
    reason: str


@dataclass(frozen=True)
class EngineVocabulary:
    """One engine: where its info comes from, its settings, their constraints and the levers it lacks."""

    engine: Engine
    title: str
    """How docs name the engine (``vLLM``)."""
    checked: str
    """The engine version this vocabulary was checked against (and that the simulator reports)."""
    info_paths: tuple[tuple[str, ...], ...]
    """Info endpoints: every group is read; within a group the first path that answers JSON wins."""
    identity: Mapping[str, str]
    """Upstream key -> ``version`` / ``model`` label (not settings)."""
    settings: tuple[Setting, ...]
    relations: tuple[Relation, ...] = ()
    exclusive: tuple[Exclusive, ...] = ()
    no_knob: Mapping[ActionId, str] = field(default_factory=dict)
    """Why the engine has no lever for an action (for the Diagnosis when no action remains)."""

    def __post_init__(self) -> None:
        keys = [s.key for s in self.settings]
        for what, names in (("key", keys), ("flag", [s.flag for s in self.settings]),
                            ("info key", [k for s in self.settings for k in s.info] + list(self.identity))):
            duplicates = sorted({n for n in names if names.count(n) > 1})
            if duplicates:
                raise VocabularyError(f"{self.engine}: duplicate setting {what} {', '.join(duplicates)}")
        sources = {p for group in self.info_paths for p in group} | {"vllm:cache_config_info"}
        for setting in self.settings:
            setting.check(self.engine)
            if setting.source and setting.source not in sources:
                raise VocabularyError(f"{self.engine} setting {setting.key!r}: unknown source {setting.source!r}")
        numeric = {s.key for s in self.settings if s.type in ("int", "float")}
        for rel in self.relations:
            if not {rel.lower, rel.upper} <= numeric:
                raise VocabularyError(f"{self.engine}: relation {rel} names a missing or non-numeric setting")
        for ex in self.exclusive:
            if not {ex.first, ex.second} <= set(keys):
                raise VocabularyError(f"{self.engine}: exclusive pair {ex} names a missing setting")
        for action in self.no_knob:
            if self.candidates(action):
                raise VocabularyError(f"{self.engine}: {action} has levers and a no-knob reason")

    @cached_property
    def by_key(self) -> Mapping[str, Setting]:
        return MappingProxyType({s.key: s for s in self.settings})

    @cached_property
    def by_name(self) -> Mapping[str, Setting]:
        """Settings by flag name (the simulator's admin keys)."""
        return MappingProxyType({s.name: s for s in self.settings})

    @cached_property
    def info_labels(self) -> Mapping[str, tuple[str, Setting | None]]:
        """Upstream key -> (``llm_engine_info`` label, the setting it belongs to or None for identity keys)."""
        out: dict[str, tuple[str, Setting | None]] = {k: (v, None) for k, v in self.identity.items()}
        for setting in self.settings:
            for key in setting.info:
                assert setting.label is not None  # checked in Setting.check
                out[key] = (setting.label, setting)
        return MappingProxyType(out)

    @cached_property
    def knobs(self) -> tuple[Knob, ...]:
        return tuple(Knob(self.engine, s, lever) for s in self.settings for lever in s.levers)

    def candidates(self, action: ActionId) -> tuple[Knob, ...]:
        """The knobs ``action`` turns on this engine, most preferred first (empty: no such lever)."""
        found = [k for k in self.knobs if k.lever.action == action]
        return tuple(sorted(found, key=lambda k: k.lever.preference))

    def map_info(self, raw: Mapping[str, object]) -> dict[str, str]:
        """Engine-native info keys -> ``llm_engine_info`` labels (unknown keys and empty values dropped)."""
        out: dict[str, str] = {}
        for key, (label, setting) in self.info_labels.items():
            if label in out or key not in raw:
                continue
            text = setting.label_value(raw[key]) if setting is not None else _text(raw[key])
            if text is not None:
                out[label] = text
        return out

    def current_config(self, *sources: Mapping[str, str]) -> dict[str, Value]:
        """The known config (own key names) from label maps, earlier sources taking precedence."""
        config: dict[str, Value] = {}
        for setting in self.settings:
            for lookup in setting.lookups:
                label = lookup.lstrip("!")
                raw = next((src[label] for src in sources if label in src), None)
                value = None if raw is None else setting.read(raw, lookup)
                if value is not None:
                    config[setting.key] = value
                    break
        return config

    def bounds(self, knob: Knob, config: Mapping[str, Value]) -> tuple[float | None, float | None]:
        """The lever's (min, max), tightened by the known values of the settings it is related to."""
        low, high = knob.lever.minimum, knob.lever.maximum
        for rel in self.relations:
            offset = 1 if rel.strict else 0
            if rel.upper == knob.key and (value := _number(config.get(rel.lower))) is not None:
                low = value + offset if low is None else max(low, value + offset)
            if rel.lower == knob.key and (value := _number(config.get(rel.upper))) is not None:
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
        for ex in self.exclusive:
            if _active(config.get(ex.first)) and _active(config.get(ex.second)):
                problems.append(ex.reason)
        return problems

    def too_old(self, knob: Knob, running: str) -> str:
        """Why the running engine version (``version`` label) predates the setting ('' when not known to)."""
        since = knob.setting.since
        if since is None or not version_tuple(running) or version_tuple(running) >= version_tuple(since):
            return ""
        return f"needs {self.engine} >= {since}, running {running}"


def _active(value: Value | None) -> bool:
    number = _number(value)
    return number > 1 if number is not None else bool(value)


@dataclass(frozen=True)
class Vocabulary:
    engines: Mapping[Engine, EngineVocabulary]

    def __post_init__(self) -> None:
        if tuple(self.engines) != ENGINES or any(e != v.engine for e, v in self.engines.items()):
            raise VocabularyError(f"the vocabulary must cover {', '.join(ENGINES)} in that order")

    def __getitem__(self, engine: Engine) -> EngineVocabulary:
        return self.engines[engine]

    def __iter__(self) -> Iterator[EngineVocabulary]:
        return iter(self.engines.values())

    def knobs(self) -> tuple[Knob, ...]:
        return tuple(k for v in self for k in v.knobs)

    def flags_text(self, action: ActionId) -> str:
        """``vLLM `--a`, SGLang `--b` then `--c` ...``: the flags ``action`` turns per engine ('' when none)."""
        return ", ".join(f"{v.title} " + " then ".join(f"`{f}`" for f in dict.fromkeys(k.flag for k in found))
                         for v in self if (found := v.candidates(action)))


_FP8_DONE = ("fp8",)
_Q = "weights quantized to fp8 online: less weight memory, more KV; lower precision (output quality may change)"
_TP = "shards weights over more GPUs: more KV per GPU; changes GPUs per replica (capacity check)"
_TP_DOWN = Lever("tensor_parallel_down", "x0.5", "fewer GPUs per replica; less KV memory per GPU", "high",
                 minimum=1, needs_current=True)
_VLLM_SEQS = "256 (1024 on >=70 GiB GPUs)"
_VLLM_BATCH = "2048 (8192 on >=70 GiB GPUs)"
_CCI = "vllm:cache_config_info"

VLLM = EngineVocabulary(
    "vllm", "vLLM", "0.26.0", (("/version",), ("/v1/models",)), MappingProxyType({"version": "version"}),
    settings=(
        Setting("gpu_memory_utilization", "--gpu-memory-utilization", "float", "0.9 (0.92 newest)",
                "gpu_memory_utilization", info=("gpu_memory_utilization",), source=_CCI,
                sim="gpu_memory_utilization", bounds=FRACTION, levers=(
                    Lever("kv_memory_up", "+0.05", "more GPU memory for the executor, so more KV cache; risks OOM "
                          "if other processes need the headroom", minimum=0.5, maximum=0.95),
                    Lever("kv_memory_down", "-0.05", "leaves more headroom for activations and other processes; "
                          "less KV cache", minimum=0.5, maximum=0.95))),
        Setting("cache_dtype", "--kv-cache-dtype", "str", "auto", "cache_dtype", info=("cache_dtype",),
                source=_CCI, sim="kv_cache_dtype", levers=(
                    Lever("kv_cache_dtype_fp8", "=fp8", "halves KV bytes; may cost accuracy without a proper "
                          "scaling factor; recompiles graphs", "medium", done_prefixes=_FP8_DONE),)),
        Setting("enable_prefix_caching", "--enable-prefix-caching", "bool", "true (V1)", "enable_prefix_caching",
                info=("enable_prefix_caching",), source=_CCI, sim="enable_prefix_caching", levers=(
                    Lever("enable_prefix_caching", "=true", "cached prefix blocks skip prefill",
                          needs_current=True),)),
        Setting("max_num_seqs", "--max-num-seqs", "int", _VLLM_SEQS, "max_num_seqs", sim="max_num_seqs",
                bounds=COUNT, levers=(
                    Lever("max_num_seqs_down", "x0.75", "fewer concurrent sequences need less KV cache; lowers "
                          "throughput", minimum=1),
                    Lever("max_num_seqs_up", "x1.5", "more concurrent sequences; more KV use and higher "
                          "inter-token latency", minimum=1, maximum=4096))),
        Setting("max_num_batched_tokens", "--max-num-batched-tokens", "int", _VLLM_BATCH, "max_num_batched_tokens",
                sim="max_num_batched_tokens", bounds=COUNT, levers=(
                    Lever("batched_tokens_down", "x0.5", "smaller per-step token budget: less KV and activation "
                          "memory; hurts TTFT and throughput", minimum=256),
                    Lever("batched_tokens_up", "x2", "larger per-step token budget for throughput; hurts "
                          "inter-token latency", minimum=256, maximum=65536),
                    Lever("prefill_chunk_up", "x2", "more prefill tokens per step: better TTFT, worse inter-token "
                          "latency", minimum=256, maximum=65536),
                    Lever("prefill_chunk_down", "x0.5", "fewer prefills slowing decodes: better inter-token "
                          "latency, worse TTFT", minimum=256))),
        Setting("quantization", "--quantization", "str", "none", "quantization", levers=(
            Lever("weight_quantization_fp8", "=fp8", _Q, "high", only_when_unset=True),)),
        Setting("tensor_parallel_size", "--tensor-parallel-size", "int", "1", "tensor_parallel_size", bounds=COUNT,
                levers=(Lever("tensor_parallel_up", "x2", _TP, "high", minimum=1, maximum=8),
                        _TP_DOWN)),
        Setting("speculative_config", "--speculative-config", "str", "off", levers=(
            Lever("speculative_decoding", '={"method": "ngram", "num_speculative_tokens": 4, "prompt_lookup_max": 4}',
                  "n-gram speculative decoding improves inter-token latency in memory-bound decode; gains depend "
                  "on the prompts; not with pipeline parallelism", "medium", only_when_unset=True),)),
        Setting("kv_offloading_size", "--kv-offloading-size", "float", "off", levers=(
            Lever("cpu_kv_offload", "=8", "offloads KV cache to 8 GiB of CPU memory (native backend); newer vLLM "
                  "versions only", "medium", only_when_unset=True),)),
        Setting("max_model_len", "--max-model-len", "int", "model config", "max_model_len", info=("max_model_len",),
                source="/v1/models", sim="max_model_len", bounds=COUNT, levers=(
                    Lever("max_model_len_down", "x0.5", "halves the per-sequence maximum: less memory; longer "
                          "prompts are rejected", "medium", minimum=1024),)),
        Setting("block_size", "--block-size", "int", "16", "block_size", info=("block_size",), source=_CCI,
                sim="block_size", bounds=COUNT),
        Setting("pipeline_parallel_size", "--pipeline-parallel-size", "int", "1", bounds=COUNT),
    ),
    relations=(Relation("max_num_seqs", "max_num_batched_tokens"),),
    exclusive=(Exclusive("pipeline_parallel_size", "speculative_config",
                         "speculative decoding does not run with pipeline parallelism"),),
    no_knob=MappingProxyType({"lpm_schedule_policy": "vLLM has no longest-prefix-match scheduling policy"}),
)

_SGL_TIERED = "GPU-tiered 2048..16384"
_SGL_POOL = "derived from the KV pool"
_SGL_INFO = "/get_server_info"

SGLANG = EngineVocabulary(
    "sglang", "SGLang", "0.5.16", ((_SGL_INFO, "/server_info"),), MappingProxyType({"version": "version"}),
    settings=(
        Setting("mem_fraction_static", "--mem-fraction-static", "float", "heuristic (~0.9)", "gpu_memory_utilization",
                info=("mem_fraction_static",), source=_SGL_INFO, sim="gpu_memory_utilization",
                bounds=FRACTION, levers=(
                    Lever("kv_memory_up", "+0.02", "bigger KV pool; keep enough memory for activations and CUDA "
                          "graph buffers", minimum=0.5, maximum=0.95),
                    Lever("kv_memory_down", "-0.05", "prevents OOM in prefill and decode; limits concurrency and "
                          "peak throughput", minimum=0.5, maximum=0.95))),
        Setting("kv_cache_dtype", "--kv-cache-dtype", "str", "auto", "cache_dtype", info=("kv_cache_dtype",),
                source=_SGL_INFO, sim="kv_cache_dtype", levers=(
                    Lever("kv_cache_dtype_fp8", "=fp8_e4m3", "FP8 KV cache; without --quantization-param-path "
                          "scales default to 1.0 (accuracy risk)", "medium", done_prefixes=_FP8_DONE),)),
        Setting("disable_radix_cache", "--disable-radix-cache", "bool", "false (radix cache on)",
                "enable_prefix_caching", negated=True, info=("disable_radix_cache",), source=_SGL_INFO,
                sim="enable_prefix_caching", levers=(
                    Lever("enable_prefix_caching", "=false", "RadixAttention prefix caching reuses shared prefixes",
                          needs_current=True),)),
        Setting("max_running_requests", "--max-running-requests", "int", _SGL_POOL, "max_num_seqs",
                info=("max_running_requests",), source=_SGL_INFO, sim="max_num_seqs",
                bounds=COUNT, levers=(
                    Lever("max_num_seqs_down", "x0.75", "caps concurrency: fewer retractions, smaller decode "
                          "batches", minimum=1),
                    Lever("max_num_seqs_up", "x1.5", "more concurrent requests", minimum=1, maximum=4096,
                          needs_current=True, preference=1))),
        Setting("schedule_conservativeness", "--schedule-conservativeness", "float", "1.0",
                bounds=Bounds(0.0, exclusive_minimum=True), levers=(
                    Lever("max_num_seqs_down", "+0.3", "admits fewer requests when 'KV cache pool is full. Retract "
                          "requests.' is frequent", minimum=0.1, maximum=2.0, preference=1),
                    Lever("max_num_seqs_up", "-0.3", "token usage < 0.9 with a queue means the server is too "
                          "conservative about taking in requests", minimum=0.1, maximum=2.0))),
        Setting("chunked_prefill_size", "--chunked-prefill-size", "int", _SGL_TIERED, "max_num_batched_tokens",
                info=("chunked_prefill_size",), source=_SGL_INFO, sim="max_num_batched_tokens",
                bounds=Bounds(1.0, sentinel=-1), levers=(
                    Lever("batched_tokens_down", "x0.5", "saves memory but slows the prefill of long prompts",
                          minimum=512),
                    Lever("prefill_chunk_up", "x2", "larger prefill chunks speed long prompts; costs activation "
                          "memory", minimum=512, maximum=32768),
                    Lever("prefill_chunk_down", "x0.5", "smaller prefill chunks interrupt decodes less; slows long "
                          "prompts", minimum=512))),
        Setting("max_prefill_tokens", "--max-prefill-tokens", "int", "16384", bounds=COUNT, levers=(
            Lever("batched_tokens_up", "x2", "more tokens per prefill batch", minimum=512, maximum=65536),)),
        Setting("quantization", "--quantization", "str", "none", "quantization", info=("quantization",),
                source=_SGL_INFO, levers=(Lever("weight_quantization_fp8", "=fp8", _Q, "high", only_when_unset=True),)),
        Setting("tp_size", "--tp-size", "int", "1", "tensor_parallel_size", info=("tp_size",), source=_SGL_INFO,
                bounds=COUNT, levers=(
                    Lever("tensor_parallel_up", "x2", _TP, "high", minimum=1, maximum=8), _TP_DOWN)),
        Setting("speculative_algorithm", "--speculative-algorithm", "str", "none", levers=(
            Lever("speculative_decoding", "=NGRAM", "n-gram speculative decoding; gains depend on the prompts",
                  "medium", only_when_unset=True),)),
        Setting("enable_hierarchical_cache", "--enable-hierarchical-cache", "bool", "false", since="0.5.10", levers=(
            Lever("cpu_kv_offload", "=true", "host-memory KV tier (2x the device pool) keeps more prefixes",
                  "medium"),)),
        Setting("schedule_policy", "--schedule-policy", "str", "fcfs", levers=(
            Lever("lpm_schedule_policy", "=lpm", "longest-prefix-match ordering encourages cache hits; more "
                  "scheduling overhead", "medium", done_prefixes=("lpm",)),)),
        Setting("context_length", "--context-length", "int", "model config", "max_model_len",
                info=("context_length",), source=_SGL_INFO, sim="max_model_len", bounds=COUNT,
                levers=(Lever("max_model_len_down", "x0.5", "halves the context length: less memory; longer "
                              "prompts are rejected", "medium", minimum=1024),)),
        Setting("page_size", "--page-size", "int", "1", "block_size", info=("page_size",), source=_SGL_INFO,
                sim="block_size", bounds=COUNT),
    ),
)

_TGI_PREFILL = "computed (4096 fallback)"
_TGI_INFO = "/info"

TGI = EngineVocabulary(
    "tgi", "TGI", "3.3.7", ((_TGI_INFO,),), MappingProxyType({"model_id": "model", "version": "version"}),
    settings=(
        Setting("cuda_memory_fraction", "--cuda-memory-fraction", "float", "1.0", "gpu_memory_utilization",
                sim="gpu_memory_utilization", bounds=FRACTION, levers=(
                    Lever("kv_memory_up", "+0.05", "more visible CUDA memory; only useful where it was lowered",
                          minimum=0.5, maximum=1.0, needs_current=True),
                    Lever("kv_memory_down", "-0.05", "caps usable CUDA memory, leaving headroom", minimum=0.5,
                          maximum=1.0))),
        Setting("kv_cache_dtype", "--kv-cache-dtype", "str", "model dtype", "cache_dtype", sim="kv_cache_dtype",
                levers=(Lever("kv_cache_dtype_fp8", "=fp8_e4m3fn", "FP8 KV cache (CUDA only); accuracy may change",
                              "medium", done_prefixes=_FP8_DONE),)),
        Setting("prefix_caching", "PREFIX_CACHING", "bool", "true", "enable_prefix_caching", env=True, levers=(
            Lever("enable_prefix_caching", "=true", "reuses cached prefixes", needs_current=True),)),
        Setting("max_concurrent_requests", "--max-concurrent-requests", "int", "128", "max_num_seqs",
                info=("max_concurrent_requests",), source=_TGI_INFO, sim="max_num_seqs",
                bounds=COUNT, levers=(
                    Lever("max_num_seqs_up", "x1.5", "more requests in flight instead of refused or waiting",
                          minimum=1, maximum=4096),)),
        Setting("max_batch_prefill_tokens", "--max-batch-prefill-tokens", "int", _TGI_PREFILL,
                "max_batch_prefill_tokens", info=("max_batch_prefill_tokens",), source=_TGI_INFO,
                sim="max_num_batched_tokens", bounds=COUNT, levers=(
                    Lever("batched_tokens_down", "x0.5", "prefill is the most memory-hungry step; smaller budget, "
                          "slower long prompts", minimum=512),
                    Lever("prefill_chunk_up", "x2", "bigger prefill budget per step; more memory, longer decode "
                          "stalls", minimum=512, maximum=65536),
                    Lever("prefill_chunk_down", "x0.5", "smaller prefill steps stall decodes less", minimum=512))),
        Setting("quantize", "--quantize", "str", "none (from the model config)", "quantization", levers=(
            Lever("weight_quantization_fp8", "=fp8", _Q, "high", only_when_unset=True),)),
        Setting("num_shard", "--num-shard", "int", "all visible GPUs", "tensor_parallel_size",
                bounds=COUNT, levers=(
                    Lever("tensor_parallel_up", "x2", _TP, "high", minimum=1, maximum=8),
                    Lever("tensor_parallel_down", "x0.5", "fewer GPUs per replica", "high", minimum=1,
                          needs_current=True))),
        Setting("speculate", "--speculate", "int", "none", levers=(
            Lever("speculative_decoding", "=2", "Medusa heads if present, else n-gram; speed-up depends on the task",
                  "medium", only_when_unset=True),)),
        Setting("max_total_tokens", "--max-total-tokens", "int", "min(max allocatable, positions)", "max_model_len",
                info=("max_total_tokens",), source=_TGI_INFO, sim="max_model_len",
                bounds=COUNT, levers=(
                    Lever("max_model_len_down", "x0.5", "smaller memory budget per request; longer requests are "
                          "rejected", "medium", minimum=1024),)),
        Setting("max_input_tokens", "--max-input-tokens", "int", "max_total_tokens - 1", "max_input_tokens",
                info=("max_input_tokens", "max_input_length"), source=_TGI_INFO, bounds=COUNT),
        Setting("max_batch_total_tokens", "--max-batch-total-tokens", "int", "inferred (largest that fits)",
                "max_batch_total_tokens", info=("max_batch_total_tokens",), source=_TGI_INFO,
                sim="max_batch_total_tokens", bounds=COUNT),
    ),
    relations=(Relation("max_input_tokens", "max_total_tokens", strict=True),
               Relation("max_total_tokens", "max_batch_total_tokens"),
               Relation("max_batch_prefill_tokens", "max_batch_total_tokens")),
    no_knob=MappingProxyType({
        "max_num_seqs_down": "TGI admits by token budget; fewer concurrent requests would only refuse clients",
        "batched_tokens_up": "TGI infers --max-batch-total-tokens as the largest that fits; raise memory instead",
        "lpm_schedule_policy": "TGI has no scheduling-policy flag",
        "cpu_kv_offload": "TGI has no CPU KV offload",
    }),
)

VOCABULARY = Vocabulary(MappingProxyType({"vllm": VLLM, "sglang": SGLANG, "tgi": TGI}))
