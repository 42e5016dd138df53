"""Scenarios: timelines that make one taxonomy bottleneck appear, and the scenario-driven simulation.

Timing contract (see the package docstring): phase starts and stall times are in *real* (wall-clock)
seconds since the simulator started; the load model runs ``time_scale`` simulated seconds per real second.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from optiinfra import taxonomy
from optiinfra.metrics import Engine
from optiinfra.signals import SpecError

from .engines import bucket_layouts
from .model import EngineConfig, Hardware, LoadModel, Workload

#: Real seconds between two model advances of :class:`Simulation` (phase changes land on this grid).
TICK_REAL_S = 0.1


@dataclass(frozen=True)
class Scenario:
    name: str
    bottleneck: str
    """The taxonomy bottleneck id it produces ("" for healthy, "slo_burn" for slo_regression)."""
    description: str
    config: EngineConfig = field(default_factory=EngineConfig)
    hardware: Hardware = field(default_factory=Hardware)
    phases: tuple[tuple[float, Workload], ...] = ((0.0, Workload()),)
    """(start in real seconds, workload); the last phase lasts forever."""
    cycle_real_s: float = 0.0
    """When > 0, the phases repeat with this period (real seconds)."""
    stall_after_real_s: float | None = None
    """The engine stops stepping (keeps its requests, generates nothing) from this real time on."""
    fix: str = ""
    """What makes the signal go away (for the report and the demo)."""

    def __post_init__(self) -> None:
        if self.bottleneck not in ("", taxonomy.SLO_BURN) and self.bottleneck not in taxonomy.by_id():
            raise SpecError(f"scenario {self.name}: {self.bottleneck!r} is not a taxonomy bottleneck")

    def workload_at(self, real_s: float) -> Workload:
        t = real_s % self.cycle_real_s if self.cycle_real_s > 0 else real_s
        current = self.phases[0][1]
        for start, workload in self.phases:
            if t >= start:
                current = workload
        return current


# Hardware profiles --------------------------------------------------------------------------------
_H100_8B = Hardware()
"""80 GiB GPU, 16 GiB of weights: ~440k KV tokens at 0.92; fast steps."""
_SMALL_KV = Hardware(gpu_memory_gib=24.0, weights_gib=17.5, activation_gib=2.0, step_base_s=0.02,
                     prefill_s_per_token=0.00001, decode_s_per_seq=0.0004, admission_watermark=0.02)
"""24 GiB GPU nearly filled by weights: ~17k KV tokens at 0.90, ~27k at 0.95, ~34k with fp8 KV."""

_HEALTHY = Workload(rate=4.0, max_inflight=64, prompt_min=200, prompt_max=1200, output_min=50, output_max=300)
_KV_LOAD = Workload(rate=150.0, max_inflight=66, prompt_min=400, prompt_max=500, output_min=2, output_max=8,
                    stop_share=0.3, prefix_share=0.3)

_KV_CONFIG = EngineConfig(gpu_memory_utilization=0.90, max_num_batched_tokens=2048)

SCENARIOS: dict[str, Scenario] = {s.name: s for s in (
    Scenario("healthy", "", "moderate load, no queue, KV below 10%, fast tokens, no errors", phases=((0.0, _HEALTHY),)),
    Scenario(
        "kv_cache_pressure", "kv_cache_pressure",
        "a small KV cache (24 GiB GPU, gpu_memory_utilization 0.90): usage >= 0.9 with requests waiting for "
        "blocks, (almost) no preemptions",
        config=_KV_CONFIG, hardware=_SMALL_KV, phases=((0.0, _KV_LOAD),),
        fix="gpu_memory_utilization >= 0.95 or kv_cache_dtype fp8: all in-flight requests fit, waiting 0, "
            "usage < 0.9",
    ),
    Scenario(
        "kv_saturated", "kv_cache_pressure",
        "kv_cache_pressure's small cache under more clients (90 in flight): usage >= 0.9 with a queue, and a "
        "bigger KV budget is filled at once by requests that were waiting, so usage stays where it was",
        config=_KV_CONFIG, hardware=_SMALL_KV, phases=((0.0, replace(_KV_LOAD, max_inflight=90)),),
        fix="none by KV memory (gpu_memory_utilization 0.95 leaves usage ~0.97: no effect); fewer clients",
    ),
    Scenario(
        "preemption_storm", "preemption_storm",
        "long generations (1000-2000 tokens) on a small KV cache: running requests outgrow it and the newest "
        "is preempted about once per simulated 10 s; a 20% admission watermark makes KV usage a sawtooth that "
        "dips below 0.9 after each preemption",
        config=EngineConfig(gpu_memory_utilization=0.90),
        hardware=replace(_SMALL_KV, admission_watermark=0.2),
        phases=((0.0, Workload(rate=10.0, max_inflight=18, prompt_min=200, prompt_max=400, output_min=1000,
                                output_max=2000, stop_share=0.0)),),
        fix="max_num_seqs down (e.g. 8) or more KV memory (gpu_memory_utilization 0.95, kv_cache_dtype fp8)",
    ),
    Scenario(
        "queue_buildup", "queue_buildup",
        "max_num_seqs 8 on a large KV cache: requests queue for a slot while KV usage stays low",
        config=EngineConfig(max_num_seqs=8, max_num_batched_tokens=8192),
        phases=((0.0, Workload(rate=20.0, max_inflight=24, prompt_min=200, prompt_max=800, output_min=100,
                                output_max=300)),),
        fix="max_num_seqs up (e.g. 64)",
    ),
    Scenario(
        "prefill_bound", "prefill_bound",
        "long prompts (16k-24k tokens) through a 256-token prefill chunk: TTFT p95 well over 2 s, no queue",
        config=EngineConfig(max_num_batched_tokens=256, max_num_seqs=256),
        phases=((0.0, Workload(rate=0.6, max_inflight=32, prompt_min=16000, prompt_max=24000, output_min=20,
                                output_max=60)),),
        fix="max_num_batched_tokens up (e.g. 4096)",
    ),
    Scenario(
        "decode_bound", "decode_bound",
        "large prefill chunks (16384) interleaved with many decodes: steps that carry a prefill stall every "
        "running sequence, inter-token latency p95 over 0.1 s",
        config=EngineConfig(max_num_batched_tokens=16384, max_num_seqs=256),
        phases=((0.0, Workload(rate=5.0, max_inflight=256, prompt_min=2000, prompt_max=6000, output_min=100,
                                output_max=300)),),
        fix="max_num_batched_tokens down (e.g. 1024)",
    ),
    Scenario(
        "request_errors", "request_errors",
        "healthy load, 12% of requests fail after their first token (vLLM finished_reason=error, TGI "
        "tgi_request_failure{err=generation}, SGLang HTTP 500)",
        phases=((0.0, replace(_HEALTHY, error_share=0.12)),),
        fix="none by config: the errors stop only with the scenario",
    ),
    Scenario(
        "engine_stalled", "engine_stalled",
        "healthy for 10 s, then the engine stops stepping: requests stay running, no tokens are generated",
        phases=((0.0, _HEALTHY),), stall_after_real_s=10.0,
        fix="restart (any POST /admin/config restarts the engine and clears the stall)",
    ),
    Scenario(
        "slo_regression", "slo_burn",
        "starts as prefill_bound on slow prefill (12k-16k-token prompts through a 1024-token chunk, "
        "0.12 ms per prefill token): TTFT p95 about 4 s, inter-token latency p95 about 0.14 s. The plan's bigger "
        "chunk (2048) is real harm in the load model: every step that carries a prefill doubles in length, so "
        "inter-token latency p95 rises above the 0.2 s SLO while TTFT improves a little",
        config=EngineConfig(max_num_batched_tokens=1024, max_num_seqs=256),
        hardware=replace(_H100_8B, prefill_s_per_token=0.00012),
        phases=((0.0, Workload(rate=0.3, max_inflight=32, prompt_min=12000, prompt_max=16000, output_min=40,
                                output_max=120)),),
        fix="roll the chunk back (the trade-off: TTFT against inter-token latency)",
    ),
)}


class Simulation:
    """A scenario driving one engine's load model; advanced by real seconds at ``time_scale``."""

    def __init__(self, engine: Engine, scenario: Scenario, time_scale: float = 10.0, seed: int = 0,
                 kv_connector: str = "") -> None:
        if time_scale <= 0:
            raise ValueError("time_scale must be > 0")
        self.engine = engine
        self.scenario = scenario
        self.time_scale = time_scale
        self.real_elapsed = 0.0
        self.restarted_at: float | None = None
        self.model = LoadModel(scenario.config, scenario.hardware, bucket_layouts(engine, scenario.config), seed)
        self.model.kv_connector = kv_connector
        self.config_changes = 0

    def phase(self) -> dict[str, object]:
        sc = self.scenario
        wl = sc.workload_at(self.real_elapsed)
        return {
            "scenario": sc.name, "bottleneck": sc.bottleneck, "description": sc.description,
            "real_seconds": round(self.real_elapsed, 3), "sim_seconds": round(self.model.clock, 3),
            "time_scale": self.time_scale, "stalled": self.stalled,
            "arrival_rate": wl.rate, "max_inflight": wl.max_inflight, "config_changes": self.config_changes,
            "fix": sc.fix,
        }

    @property
    def stalled(self) -> bool:
        after = self.scenario.stall_after_real_s
        return after is not None and self.restarted_at is None and self.real_elapsed >= after

    def advance(self, real_seconds: float) -> None:
        """Advance by ``real_seconds`` of wall-clock time (as fast as the CPU allows)."""
        end = self.real_elapsed + real_seconds
        while self.real_elapsed < end - 1e-12:
            self.real_elapsed = min(end, self.real_elapsed + TICK_REAL_S)
            self.model.set_workload(self.scenario.workload_at(self.real_elapsed))
            self.model.stalled = self.stalled
            self.model.run_until(self.real_elapsed * self.time_scale)

    def apply_config(self, changes: dict[str, object]) -> EngineConfig:
        """Apply engine-config field changes like a restart (see ``LoadModel.reconfigure``)."""
        new = self.model.with_changes(changes)
        self.model.reconfigure(new)
        self.config_changes += 1
        if self.scenario.stall_after_real_s is not None:
            self.restarted_at = self.real_elapsed
        return new
