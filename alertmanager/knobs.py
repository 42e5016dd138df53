"""Per-engine knob catalogue: how an abstract taxonomy action becomes a real engine flag (docs/plan-actions.md).

``candidates(action, engine)`` lists the knobs an abstract action (``optiinfra.taxonomy.ActionId``) maps to on one
engine, most preferred first; an empty tuple means the engine has no such lever (the planner then tries the
bottleneck's next action). ``OPS_ACTIONS`` holds the engine-independent actions (scale, restart).

A knob's ``knob`` id is the engine's own snake_case config name (``gpu_memory_utilization``,
``mem_fraction_static``, ``cuda_memory_fraction``...): cooldowns and the no-retry list are kept per (target, knob).

The current value of a config key is looked up through ``CONFIG_KEYS``: the engine's own name first, then the
normalized ``llm_engine_info`` label (``optiinfra.metrics.ENGINE_INFO_LABELS``, vLLM spelling) that the exporter
fills with the same setting; a ``!`` prefix marks a label holding the negation (SGLang ``disable_radix_cache`` is
``not enable_prefix_caching``).

``bounds(knob, config)`` is a knob's (min, max) tightened by the known values it is constrained against (vLLM
``max_num_seqs <= max_num_batched_tokens``...): a relative change carries them for the orchestrator to clamp to.
``violations(engine, config)`` checks a complete-as-known config against the engines' own constraints (listed at the end
of docs/plan-actions.md); unknown values are not checked.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

from optiinfra.metrics import Engine
from optiinfra.taxonomy import ActionId

from .plan import ActionKind, Risk, Value

ValueType = Literal["float", "int", "bool", "str"]


@dataclass(frozen=True)
class Knob:
    """One engine flag an abstract action turns."""

    action: ActionId
    engine: Engine
    flag: str
    """The real launch flag (or environment variable for ``kind="engine_env"``)."""
    knob: str
    """The engine's config name; the id for cooldown and no-retry."""
    value_type: ValueType
    change: str
    """``+0.05`` / ``-0.05`` (add), ``x0.75`` / ``x2`` (multiply), or ``=fp8`` / ``=true`` (set)."""
    default: str
    """The documented default, for the rationale and docs (never used as the current value)."""
    effect: str
    """Documented effect and trade-off, quoted into the plan's rationale."""
    risk: Risk = "low"
    minimum: float | None = None
    maximum: float | None = None
    kind: ActionKind = "engine_arg"
    restart_required: bool = True
    needs_current: bool = False
    """Only proposed when the current value is known (e.g. enabling what is on by default)."""
    done_prefixes: tuple[str, ...] = ()
    """Current values (lower-case prefixes) that make a set action pointless (``fp8`` already)."""
    only_when_unset: bool = False
    """A set action that applies only while the current value is empty / none (weight quantization)."""

    @property
    def is_set(self) -> bool:
        return self.change.startswith("=")

    @property
    def set_value(self) -> Value:
        raw = self.change[1:]
        if self.value_type == "bool":
            return raw == "true"
        if self.value_type == "int":
            return int(raw)
        if self.value_type == "float":
            return float(raw)
        return raw


@dataclass(frozen=True)
class OpsAction:
    """An engine-independent action carried out by the orchestrator."""

    action: ActionId
    kind: ActionKind
    name: str
    knob: str
    to: str
    relative: bool
    risk: Risk
    restart_required: bool
    effect: str
    minimum: float | None = None


def _k(  # noqa: PLR0917 -- one row of the table below, read positionally
    action: ActionId, engine: Engine, flag: str, value_type: ValueType, change: str, default: str, effect: str, *,
    knob: str = "", risk: Risk = "low", minimum: float | None = None, maximum: float | None = None,
    kind: ActionKind = "engine_arg", needs_current: bool = False, done_prefixes: tuple[str, ...] = (),
    only_when_unset: bool = False,
) -> Knob:
    return Knob(action, engine, flag, knob or flag.lstrip("-").replace("-", "_").lower(), value_type, change,
                default, effect, risk=risk, minimum=minimum, maximum=maximum, kind=kind,
                needs_current=needs_current, done_prefixes=done_prefixes, only_when_unset=only_when_unset)


_FP8_DONE = ("fp8",)
_Q = "weights quantized to fp8 online: less weight memory, more KV; lower precision (output quality may change)"
_TP = "shards weights over more GPUs: more KV per GPU; changes GPUs per replica (capacity check)"

_KNOBS: tuple[Knob, ...] = (
    # ---- vLLM
    _k("kv_memory_up", "vllm", "--gpu-memory-utilization", "float", "+0.05", "0.9 (0.92 newest)",
       "more GPU memory for the executor, so more KV cache; risks OOM if other processes need the headroom",
       minimum=0.5, maximum=0.95),
    _k("kv_memory_down", "vllm", "--gpu-memory-utilization", "float", "-0.05", "0.9 (0.92 newest)",
       "leaves more headroom for activations and other processes; less KV cache", minimum=0.5, maximum=0.95),
    _k("kv_cache_dtype_fp8", "vllm", "--kv-cache-dtype", "str", "=fp8", "auto", "halves KV bytes; may cost "
       "accuracy without a proper scaling factor; recompiles graphs", risk="medium", knob="cache_dtype",
       done_prefixes=_FP8_DONE),
    _k("enable_prefix_caching", "vllm", "--enable-prefix-caching", "bool", "=true", "true (V1)",
       "cached prefix blocks skip prefill", needs_current=True),
    _k("max_num_seqs_down", "vllm", "--max-num-seqs", "int", "x0.75", "256 (1024 on >=70 GiB GPUs)",
       "fewer concurrent sequences need less KV cache; lowers throughput", minimum=1),
    _k("max_num_seqs_up", "vllm", "--max-num-seqs", "int", "x1.5", "256 (1024 on >=70 GiB GPUs)",
       "more concurrent sequences; more KV use and higher inter-token latency", minimum=1, maximum=4096),
    _k("batched_tokens_down", "vllm", "--max-num-batched-tokens", "int", "x0.5", "2048 (8192 on >=70 GiB GPUs)",
       "smaller per-step token budget: less KV and activation memory; hurts TTFT and throughput",
       minimum=256),
    _k("batched_tokens_up", "vllm", "--max-num-batched-tokens", "int", "x2", "2048 (8192 on >=70 GiB GPUs)",
       "larger per-step token budget for throughput; hurts inter-token latency", minimum=256, maximum=65536),
    _k("prefill_chunk_up", "vllm", "--max-num-batched-tokens", "int", "x2", "2048 (8192 on >=70 GiB GPUs)",
       "more prefill tokens per step: better TTFT, worse inter-token latency", minimum=256, maximum=65536),
    _k("prefill_chunk_down", "vllm", "--max-num-batched-tokens", "int", "x0.5", "2048 (8192 on >=70 GiB GPUs)",
       "fewer prefills slowing decodes: better inter-token latency, worse TTFT", minimum=256),
    _k("weight_quantization_fp8", "vllm", "--quantization", "str", "=fp8", "none", _Q, risk="high",
       only_when_unset=True),
    _k("tensor_parallel_up", "vllm", "--tensor-parallel-size", "int", "x2", "1", _TP, risk="high",
       minimum=1, maximum=8),
    _k("tensor_parallel_down", "vllm", "--tensor-parallel-size", "int", "x0.5", "1",
       "fewer GPUs per replica; less KV memory per GPU", risk="high", minimum=1, needs_current=True),
    _k("speculative_decoding", "vllm", "--speculative-config", "str",
       '={"method": "ngram", "num_speculative_tokens": 4, "prompt_lookup_max": 4}', "off",
       "n-gram speculative decoding improves inter-token latency in memory-bound decode; gains depend on the "
       "prompts; not with pipeline parallelism", risk="medium", only_when_unset=True),
    _k("cpu_kv_offload", "vllm", "--kv-offloading-size", "float", "=8", "off",
       "offloads KV cache to 8 GiB of CPU memory (native backend); newer vLLM versions only", risk="medium",
       only_when_unset=True),
    _k("max_model_len_down", "vllm", "--max-model-len", "int", "x0.5", "model config",
       "halves the per-sequence maximum: less memory; longer prompts are rejected", risk="medium", minimum=1024),
    # ---- SGLang
    _k("kv_memory_up", "sglang", "--mem-fraction-static", "float", "+0.02", "heuristic (~0.9)",
       "bigger KV pool; keep enough memory for activations and CUDA graph buffers", minimum=0.5, maximum=0.95),
    _k("kv_memory_down", "sglang", "--mem-fraction-static", "float", "-0.05", "heuristic (~0.9)",
       "prevents OOM in prefill and decode; limits concurrency and peak throughput", minimum=0.5, maximum=0.95),
    _k("kv_cache_dtype_fp8", "sglang", "--kv-cache-dtype", "str", "=fp8_e4m3", "auto",
       "FP8 KV cache; without --quantization-param-path scales default to 1.0 (accuracy risk)", risk="medium",
       done_prefixes=_FP8_DONE),
    _k("enable_prefix_caching", "sglang", "--disable-radix-cache", "bool", "=false", "false (radix cache on)",
       "RadixAttention prefix caching reuses shared prefixes", needs_current=True),
    _k("max_num_seqs_down", "sglang", "--max-running-requests", "int", "x0.75", "derived from the KV pool",
       "caps concurrency: fewer retractions, smaller decode batches", minimum=1),
    _k("max_num_seqs_down", "sglang", "--schedule-conservativeness", "float", "+0.3", "1.0",
       "admits fewer requests when 'KV cache pool is full. Retract requests.' is frequent", minimum=0.1,
       maximum=2.0),
    _k("max_num_seqs_up", "sglang", "--schedule-conservativeness", "float", "-0.3", "1.0",
       "token usage < 0.9 with a queue means the server is too conservative about taking in requests",
       minimum=0.1, maximum=2.0),
    _k("max_num_seqs_up", "sglang", "--max-running-requests", "int", "x1.5", "derived from the KV pool",
       "more concurrent requests", minimum=1, maximum=4096, needs_current=True),
    _k("batched_tokens_down", "sglang", "--chunked-prefill-size", "int", "x0.5", "GPU-tiered 2048..16384",
       "saves memory but slows the prefill of long prompts", minimum=512),
    _k("batched_tokens_up", "sglang", "--max-prefill-tokens", "int", "x2", "16384",
       "more tokens per prefill batch", minimum=512, maximum=65536),
    _k("prefill_chunk_up", "sglang", "--chunked-prefill-size", "int", "x2", "GPU-tiered 2048..16384",
       "larger prefill chunks speed long prompts; costs activation memory", minimum=512, maximum=32768),
    _k("prefill_chunk_down", "sglang", "--chunked-prefill-size", "int", "x0.5", "GPU-tiered 2048..16384",
       "smaller prefill chunks interrupt decodes less; slows long prompts", minimum=512),
    _k("weight_quantization_fp8", "sglang", "--quantization", "str", "=fp8", "none", _Q, risk="high",
       only_when_unset=True),
    _k("tensor_parallel_up", "sglang", "--tp-size", "int", "x2", "1", _TP, risk="high", minimum=1, maximum=8),
    _k("tensor_parallel_down", "sglang", "--tp-size", "int", "x0.5", "1",
       "fewer GPUs per replica; less KV memory per GPU", risk="high", minimum=1, needs_current=True),
    _k("speculative_decoding", "sglang", "--speculative-algorithm", "str", "=NGRAM", "none",
       "n-gram speculative decoding; gains depend on the prompts", risk="medium", only_when_unset=True),
    _k("cpu_kv_offload", "sglang", "--enable-hierarchical-cache", "bool", "=true", "false",
       "host-memory KV tier (2x the device pool) keeps more prefixes", risk="medium"),
    _k("lpm_schedule_policy", "sglang", "--schedule-policy", "str", "=lpm", "fcfs",
       "longest-prefix-match ordering encourages cache hits; more scheduling overhead", risk="medium",
       done_prefixes=("lpm",)),
    _k("max_model_len_down", "sglang", "--context-length", "int", "x0.5", "model config",
       "halves the context length: less memory; longer prompts are rejected", risk="medium", minimum=1024),
    # ---- TGI (maintenance mode: the documented levers only)
    _k("kv_memory_up", "tgi", "--cuda-memory-fraction", "float", "+0.05", "1.0",
       "more visible CUDA memory; only useful where it was lowered", minimum=0.5, maximum=1.0,
       needs_current=True),
    _k("kv_memory_down", "tgi", "--cuda-memory-fraction", "float", "-0.05", "1.0",
       "caps usable CUDA memory, leaving headroom", minimum=0.5, maximum=1.0),
    _k("kv_cache_dtype_fp8", "tgi", "--kv-cache-dtype", "str", "=fp8_e4m3fn", "model dtype",
       "FP8 KV cache (CUDA only); accuracy may change", risk="medium", done_prefixes=_FP8_DONE),
    _k("enable_prefix_caching", "tgi", "PREFIX_CACHING", "bool", "=true", "true",
       "reuses cached prefixes", kind="engine_env", needs_current=True),
    _k("max_num_seqs_up", "tgi", "--max-concurrent-requests", "int", "x1.5", "128",
       "more requests in flight instead of refused or waiting", minimum=1, maximum=4096),
    _k("batched_tokens_down", "tgi", "--max-batch-prefill-tokens", "int", "x0.5", "computed (4096 fallback)",
       "prefill is the most memory-hungry step; smaller budget, slower long prompts", minimum=512),
    _k("prefill_chunk_up", "tgi", "--max-batch-prefill-tokens", "int", "x2", "computed (4096 fallback)",
       "bigger prefill budget per step; more memory, longer decode stalls", minimum=512, maximum=65536),
    _k("prefill_chunk_down", "tgi", "--max-batch-prefill-tokens", "int", "x0.5", "computed (4096 fallback)",
       "smaller prefill steps stall decodes less", minimum=512),
    _k("weight_quantization_fp8", "tgi", "--quantize", "str", "=fp8", "none (from the model config)", _Q,
       risk="high", only_when_unset=True),
    _k("tensor_parallel_up", "tgi", "--num-shard", "int", "x2", "all visible GPUs", _TP, risk="high",
       minimum=1, maximum=8),
    _k("tensor_parallel_down", "tgi", "--num-shard", "int", "x0.5", "all visible GPUs",
       "fewer GPUs per replica", risk="high", minimum=1, needs_current=True),
    _k("speculative_decoding", "tgi", "--speculate", "int", "=2", "none",
       "Medusa heads if present, else n-gram; speed-up depends on the task", risk="medium", only_when_unset=True),
    _k("max_model_len_down", "tgi", "--max-total-tokens", "int", "x0.5", "min(max allocatable, positions)",
       "smaller memory budget per request; longer requests are rejected", risk="medium", minimum=1024),
)

#: Why an engine has no knob for an action (for the Diagnosis when no action remains).
NO_KNOB: Mapping[tuple[ActionId, Engine], str] = MappingProxyType({
    ("max_num_seqs_down", "tgi"): "TGI admits by token budget; fewer concurrent requests would only refuse clients",
    ("batched_tokens_up", "tgi"): "TGI infers --max-batch-total-tokens as the largest that fits; raise memory instead",
    ("lpm_schedule_policy", "vllm"): "vLLM has no longest-prefix-match scheduling policy",
    ("lpm_schedule_policy", "tgi"): "TGI has no scheduling-policy flag",
    ("cpu_kv_offload", "tgi"): "TGI has no CPU KV offload",
})

OPS_ACTIONS: Mapping[ActionId, OpsAction] = MappingProxyType({
    "scale_out": OpsAction("scale_out", "scale", "replicas", "replicas", "+1", True, "high", False,
                           "one more replica adds capacity (and GPUs)", minimum=1),
    "consolidate_replicas": OpsAction("consolidate_replicas", "scale", "replicas", "replicas", "-1", True, "high",
                                      False, "one replica fewer frees idle GPUs", minimum=1),
    "restart_pod": OpsAction("restart_pod", "restart", "pod", "restart", "restart", False, "low", True,
                             "a fresh process clears a hung or crashed engine"),
})

#: Where each engine config value is read: own name, then the llm_engine_info label ("!" = negated).
CONFIG_KEYS: Mapping[Engine, Mapping[str, tuple[str, ...]]] = MappingProxyType({
    "vllm": MappingProxyType({
        "gpu_memory_utilization": ("gpu_memory_utilization",),
        "cache_dtype": ("cache_dtype", "kv_cache_dtype"),
        "enable_prefix_caching": ("enable_prefix_caching",),
        "max_num_seqs": ("max_num_seqs",),
        "max_num_batched_tokens": ("max_num_batched_tokens",),
        "max_model_len": ("max_model_len",),
        "tensor_parallel_size": ("tensor_parallel_size",),
        "pipeline_parallel_size": ("pipeline_parallel_size",),
        "quantization": ("quantization",),
        "speculative_config": ("speculative_config",),
        "kv_offloading_size": ("kv_offloading_size",),
    }),
    "sglang": MappingProxyType({
        "mem_fraction_static": ("mem_fraction_static", "gpu_memory_utilization"),
        "kv_cache_dtype": ("kv_cache_dtype", "cache_dtype"),
        "disable_radix_cache": ("disable_radix_cache", "!enable_prefix_caching"),
        "max_running_requests": ("max_running_requests", "max_num_seqs"),
        "schedule_conservativeness": ("schedule_conservativeness",),
        "chunked_prefill_size": ("chunked_prefill_size", "max_num_batched_tokens"),
        "max_prefill_tokens": ("max_prefill_tokens",),
        "context_length": ("context_length", "max_model_len"),
        "tp_size": ("tp_size", "tensor_parallel_size"),
        "quantization": ("quantization",),
        "speculative_algorithm": ("speculative_algorithm",),
        "enable_hierarchical_cache": ("enable_hierarchical_cache",),
        "schedule_policy": ("schedule_policy",),
    }),
    "tgi": MappingProxyType({
        "cuda_memory_fraction": ("cuda_memory_fraction", "gpu_memory_utilization"),
        "kv_cache_dtype": ("kv_cache_dtype", "cache_dtype"),
        "prefix_caching": ("prefix_caching", "enable_prefix_caching"),
        "max_concurrent_requests": ("max_concurrent_requests", "max_num_seqs"),
        "max_batch_prefill_tokens": ("max_batch_prefill_tokens", "max_num_batched_tokens"),
        "max_batch_total_tokens": ("max_batch_total_tokens",),
        "max_total_tokens": ("max_total_tokens", "max_model_len"),
        "max_input_tokens": ("max_input_tokens",),
        "num_shard": ("num_shard", "tensor_parallel_size"),
        "quantize": ("quantize", "quantization"),
        "speculate": ("speculate",),
    }),
})

#: Config keys of each engine that hold integers / fractions (for constraint checks on any known value).
INT_KEYS: Mapping[Engine, frozenset[str]] = MappingProxyType({
    "vllm": frozenset({"max_num_seqs", "max_num_batched_tokens", "max_model_len", "tensor_parallel_size",
                       "pipeline_parallel_size"}),
    "sglang": frozenset({"max_running_requests", "chunked_prefill_size", "max_prefill_tokens", "context_length",
                         "tp_size"}),
    "tgi": frozenset({"max_concurrent_requests", "max_batch_prefill_tokens", "max_batch_total_tokens",
                      "max_total_tokens", "max_input_tokens", "num_shard"}),
})
FRACTION_KEYS: Mapping[Engine, str] = MappingProxyType({
    "vllm": "gpu_memory_utilization", "sglang": "mem_fraction_static", "tgi": "cuda_memory_fraction",
})
_KEY_TYPES: Mapping[str, ValueType] = MappingProxyType({
    "enable_prefix_caching": "bool", "disable_radix_cache": "bool", "prefix_caching": "bool",
    "enable_hierarchical_cache": "bool", "schedule_conservativeness": "float", "kv_offloading_size": "float",
})


#: Bounds a knob takes from other known config values (its constraints), so a relative change the orchestrator
#: clamps stays valid: (engine, knob) -> ((other key, "min" or "max", offset), ...).
RELATED_BOUNDS: Mapping[tuple[Engine, str], tuple[tuple[str, Literal["min", "max"], int], ...]] = MappingProxyType({
    ("vllm", "max_num_seqs"): (("max_num_batched_tokens", "max", 0),),
    ("vllm", "max_num_batched_tokens"): (("max_num_seqs", "min", 0),),
    ("tgi", "max_batch_prefill_tokens"): (("max_batch_total_tokens", "max", 0),),
    ("tgi", "max_total_tokens"): (("max_input_tokens", "min", 1), ("max_batch_total_tokens", "max", 0)),
})


def bounds(knob: Knob, config: Mapping[str, Value]) -> tuple[float | None, float | None]:
    """The knob's (min, max), tightened by the known values of the settings it is constrained against."""
    low, high = knob.minimum, knob.maximum
    for key, side, offset in RELATED_BOUNDS.get((knob.engine, knob.knob), ()):
        value = config.get(key)
        if not isinstance(value, int | float) or isinstance(value, bool):
            continue
        if side == "min":
            low = value + offset if low is None else max(low, value + offset)
        else:
            high = value - offset if high is None else min(high, value - offset)
    return low, high


def candidates(action: ActionId, engine: Engine) -> tuple[Knob, ...]:
    return tuple(k for k in _KNOBS if k.action == action and k.engine == engine)


def all_knobs() -> tuple[Knob, ...]:
    return _KNOBS


def value_type(engine: Engine, key: str) -> ValueType:
    if key in INT_KEYS[engine]:
        return "int"
    if key == FRACTION_KEYS[engine]:
        return "float"
    for knob in _KNOBS:
        if knob.engine == engine and knob.knob == key:
            return knob.value_type
    return _KEY_TYPES.get(key, "str")


_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})
_UNSET = frozenset({"", "none", "null"})


def parse(raw: str, kind: ValueType) -> Value | None:
    """A label value as a typed config value; ``None`` when absent, ``None``-valued or unparseable."""
    text = raw.strip()
    if kind == "str":
        return text
    if text.lower() in _UNSET:
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


def current_config(engine: Engine, *sources: Mapping[str, str]) -> dict[str, Value]:
    """The engine's known config (own key names) from label maps, earlier sources taking precedence."""
    config: dict[str, Value] = {}
    for key, lookups in CONFIG_KEYS[engine].items():
        kind = value_type(engine, key)
        for lookup in lookups:
            negated = lookup.startswith("!")
            label = lookup.lstrip("!")
            raw = next((src[label] for src in sources if label in src), None)
            if raw is None:
                continue
            value = parse(raw, "bool" if negated else kind)
            if value is None:
                continue
            config[key] = (not value) if negated else value
            break
    return config


def violations(engine: Engine, config: Mapping[str, Value]) -> list[str]:
    """Engine constraints a config breaks (listed in docs/plan-actions.md); values absent are not checked."""

    def num(key: str) -> float | None:
        value = config.get(key)
        return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None

    problems: list[str] = []
    fraction = num(FRACTION_KEYS[engine])
    if fraction is not None and not 0 < fraction <= 1:
        problems.append(f"{FRACTION_KEYS[engine]}={fraction:g} is outside (0, 1]")
    for key in sorted(INT_KEYS[engine]):
        value = num(key)
        if value is not None and value < 1 and not (engine == "sglang" and key == "chunked_prefill_size"
                                                     and value == -1):
            problems.append(f"{key}={value:g} must be >= 1")
    if engine == "vllm":
        seqs, batched = num("max_num_seqs"), num("max_num_batched_tokens")
        if seqs is not None and batched is not None and batched < seqs:
            problems.append(f"max_num_batched_tokens={batched:g} < max_num_seqs={seqs:g} "
                            "(vLLM requires max_num_batched_tokens >= max_num_seqs)")
        pp = num("pipeline_parallel_size")
        if pp is not None and pp > 1 and config.get("speculative_config"):
            problems.append("speculative decoding does not run with pipeline parallelism")
    if engine == "tgi":
        inp, total, batch = num("max_input_tokens"), num("max_total_tokens"), num("max_batch_total_tokens")
        prefill = num("max_batch_prefill_tokens")
        if inp is not None and total is not None and not inp < total:
            problems.append(f"max_input_tokens={inp:g} must be < max_total_tokens={total:g}")
        if total is not None and batch is not None and not total <= batch:
            problems.append(f"max_total_tokens={total:g} must be <= max_batch_total_tokens={batch:g}")
        if prefill is not None and batch is not None and prefill > batch:
            problems.append(f"max_batch_prefill_tokens={prefill:g} must be <= max_batch_total_tokens={batch:g}")
    if engine == "sglang":
        conservativeness = num("schedule_conservativeness")
        if conservativeness is not None and conservativeness <= 0:
            problems.append(f"schedule_conservativeness={conservativeness:g} must be > 0")
    return problems


def _change_text(knob: Knob) -> str:
    if knob.is_set:
        return f"`{knob.flag} {knob.change[1:]}`" if knob.kind == "engine_arg" else f"`{knob.flag}={knob.change[1:]}`"
    bounds_text = ", ".join(part for part in (
        f"min {knob.minimum:g}" if knob.minimum is not None else "",
        f"max {knob.maximum:g}" if knob.maximum is not None else "") if part)
    return f"`{knob.flag}` {knob.change}" + (f" ({bounds_text})" if bounds_text else "")


def markdown() -> str:
    """``docs/plan-actions.md``: what each taxonomy action becomes on each engine."""
    from optiinfra import taxonomy  # noqa: PLC0415 -- only the doc needs the entries

    engines: tuple[Engine, ...] = ("vllm", "sglang", "tgi")
    lines = [
        "# Plan actions per engine",
        "",
        "Generated from `alertmanager/knobs.py` (`make generate`); do not edit. The planner walks a bottleneck's",
        "actions in order and proposes the first one whose knob exists on the engine, is not blocked (rolled back)",
        "or cooling, and is valid. A change is `current -> new` when `llm_engine_info` reports the current value,",
        "else relative (`+0.05`, `x0.75`) with the bounds given here. Every engine flag needs a restart.",
        "",
        "| bottleneck | action | vLLM | SGLang | TGI |",
        "|---|---|---|---|---|",
    ]
    for entry in taxonomy.BOTTLENECKS:
        for action in entry.actions:
            ops = OPS_ACTIONS.get(action)
            if ops is not None:
                cell = f"{ops.kind} `{ops.name}` {ops.to} ({ops.risk})"
                cells = [cell] * len(engines)
            else:
                cells = []
                for engine in engines:
                    found = candidates(action, engine)
                    cells.append("; then ".join(f"{_change_text(k)} ({k.risk})" for k in found)
                                 or "— " + NO_KNOB.get((action, engine), "no such flag"))
            lines.append(f"| `{entry.id}` | `{action}` | " + " | ".join(cells) + " |")
    lines += [
        "",
        "## Knobs",
        "",
        "| engine | flag | knob (cooldown id) | read from | default | change | risk | condition | effect |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for knob in _KNOBS:
        lookups = ", ".join(f"`{k}`" for k in CONFIG_KEYS[knob.engine][knob.knob])
        condition = ("current value known" if knob.needs_current
                     else "not yet set" if knob.only_when_unset else "")
        lines.append(f"| {knob.engine} | `{knob.flag}` | `{knob.knob}` | {lookups} | {knob.default} | "
                     f"{_change_text(knob)} | {knob.risk} | {condition} | {knob.effect} |")
    lines += ["", "Engine constraints checked before a plan leaves: vLLM `max_num_batched_tokens >= max_num_seqs`;",
              "TGI `max_input_tokens < max_total_tokens <= max_batch_total_tokens`, "
              "`max_batch_prefill_tokens <= max_batch_total_tokens`;",
              "memory fractions within (0, 1]; integer limits >= 1. `!` marks a label holding the negation.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Write docs/plan-actions.md from the knob catalogue.")
    parser.add_argument("--out", required=True, help="output file")
    with open(parser.parse_args().out, "w", encoding="utf-8") as out:
        out.write(markdown())
