"""The load model: Poisson arrivals, a FIFO queue, admission by concurrency and KV blocks, chunked
prefill, decode steps, recompute preemption, outcomes; real counters and histograms.

Plain data in the hot path: a request is one small slotted object, histograms are bucket-count lists,
all decodes of one step share a single inter-token observation (weighted by the batch size).
Time here is *simulated* seconds; :mod:`.scenarios` maps wall-clock seconds onto it.
"""

from __future__ import annotations

import math
import random
from bisect import bisect_left
from collections import deque
from dataclasses import dataclass, replace
from itertools import accumulate
from typing import Literal

FinishReason = Literal["stop", "length", "abort", "error", "repetition"]
FINISH_REASONS: tuple[FinishReason, ...] = ("stop", "length", "abort", "error", "repetition")
KV_DTYPES: tuple[str, ...] = ("auto", "fp8", "fp8_e4m3", "fp8_e5m2", "fp8_e4m3fn")
GIB = 1024**3

#: Requests per simulated second the load generator never exceeds (keeps the model cheap on CPU).
MAX_ARRIVAL_RATE = 200.0


@dataclass(frozen=True)
class EngineConfig:
    """The knobs a plan changes (vLLM spelling; :mod:`.engines` maps SGLang/TGI names onto them)."""

    gpu_memory_utilization: float = 0.92
    max_num_seqs: int = 256
    max_num_batched_tokens: int = 8192
    enable_prefix_caching: bool = True
    kv_cache_dtype: str = "auto"
    block_size: int = 16
    max_model_len: int = 32768
    max_batch_total_tokens: int | None = None
    """TGI only: a fixed KV token budget that overrides the memory-derived one."""


@dataclass(frozen=True)
class Hardware:
    """What sizes the KV cache and prices an engine step (not changeable through the admin API)."""

    gpu_memory_gib: float = 80.0
    weights_gib: float = 16.0
    activation_gib: float = 4.0
    kv_bytes_per_token: int = 131072
    """fp16 KV bytes per token (all layers); fp8 halves it."""
    step_base_s: float = 0.012
    prefill_s_per_token: float = 0.00004
    decode_s_per_seq: float = 0.0002
    attention_s_per_kv_token: float = 2e-8
    admission_watermark: float = 0.01
    """Share of KV blocks kept free when admitting (vLLM's watermark idea)."""


@dataclass(frozen=True)
class Workload:
    """The load generator of one scenario phase (simulated units)."""

    rate: float = 4.0
    """Poisson arrival rate, requests per simulated second (capped at ``MAX_ARRIVAL_RATE``)."""
    max_inflight: int = 64
    """Client-side concurrency cap: arrivals while this many are in flight are not sent."""
    prompt_min: int = 200
    prompt_max: int = 1200
    output_min: int = 50
    output_max: int = 300
    """max_tokens is drawn in [output_min, output_max]; a request stops early with ``stop_share``."""
    stop_share: float = 0.7
    prefix_share: float = 0.3
    """Share of each prompt that is a common prefix (a cache hit when prefix caching is on)."""
    error_share: float = 0.0
    """Share of requests that fail with finish reason ``error`` after their first token."""


class Histogram:
    """Bucket counts with fixed upper bounds (``le``), plus sum and count."""

    __slots__ = ("bounds", "count", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float, n: int = 1) -> None:
        self.counts[bisect_left(self.bounds, value)] += n
        self.sum += value * n
        self.count += n

    def cumulative(self) -> list[int]:
        return list(accumulate(self.counts))

    def quantile(self, q: float) -> float:
        """Prometheus ``histogram_quantile`` over the whole history (linear within a bucket)."""
        return quantile_from_buckets(q, self.bounds, self.cumulative())


def quantile_from_buckets(q: float, bounds: tuple[float, ...], cumulative: list[int]) -> float:
    total = cumulative[-1]
    if total == 0:
        return math.nan
    rank = q * total
    for i, c in enumerate(cumulative):
        if c >= rank:
            if i == len(bounds):
                return bounds[-1]
            lower = bounds[i - 1] if i > 0 else 0.0
            below = cumulative[i - 1] if i > 0 else 0
            inside = c - below
            return lower + (bounds[i] - lower) * ((rank - below) / inside if inside else 1.0)
    return bounds[-1]


HIST_CONCEPTS: tuple[str, ...] = (
    "ttft", "itl", "tpot", "e2e", "queue", "inference", "prefill", "decode", "prompt_tokens",
    "generation_tokens", "max_tokens", "prefill_computed", "iteration_tokens", "request_preemptions",
    "forward_prefill", "forward_decode", "arrival_prompt_tokens", "validation", "mean_time_per_token",
)


class Stats:
    """Cumulative counters and histograms; never reset (a config change is not a process restart)."""

    def __init__(self, bounds: dict[str, tuple[float, ...]]) -> None:
        self.hist = {name: Histogram(bounds[name]) for name in HIST_CONCEPTS if name in bounds}
        self.finished: dict[str, int] = dict.fromkeys(FINISH_REASONS, 0)
        self.received = 0
        self.prompt_tokens = 0
        self.generation_tokens = 0
        self.preemptions = 0
        self.retracted_input_tokens = 0
        self.retracted_output_tokens = 0
        self.prefix_queries = 0
        self.prefix_hits = 0
        self.external_queries = 0
        """Prompt tokens looked up in the external KV cache (only with a KV connector, e.g. LMCache)."""
        self.external_hits = 0
        self.prefill_steps = 0
        self.decode_steps = 0

    def observe(self, name: str, value: float, n: int = 1) -> None:
        hist = self.hist.get(name)
        if hist is not None:
            hist.observe(value, n)


@dataclass(slots=True, eq=False)  # identity: running.remove(req) removes this request
class Request:
    arrival: float
    prompt: int
    max_tokens: int
    target: int
    cached: int
    error: bool
    pending: int = 0  # tokens of the current (re)prefill still to compute; 0 = decoding
    ready: float = 0.0  # simulated time from which its prefill may be scheduled
    generated: int = 0
    tokens: int = 0  # tokens held in this request's own KV blocks
    blocks: int = 0
    first_scheduled: float = -1.0
    first_token: float = -1.0
    preemptions: int = 0

    @property
    def prefill_len(self) -> int:
        """Tokens to compute before the next token: the prompt (minus cached prefix) plus, after a
        preemption, everything generated so far (recompute)."""
        return self.prompt - self.cached + self.generated


def kv_capacity_tokens(config: EngineConfig, hw: Hardware) -> int:
    """KV tokens the config buys: (GPU memory x utilization - weights - activations) / bytes per token."""
    if config.max_batch_total_tokens is not None:
        return config.max_batch_total_tokens
    free = hw.gpu_memory_gib * config.gpu_memory_utilization - hw.weights_gib - hw.activation_gib
    per_token = hw.kv_bytes_per_token // (2 if config.kv_cache_dtype.startswith("fp8") else 1)
    return max(0, int(free * GIB) // per_token)


class ConfigError(ValueError):
    """A config the engine would refuse to start with; the message says what to change."""


def check_config(config: EngineConfig, hw: Hardware) -> None:
    if not 0 < config.gpu_memory_utilization <= 1:
        raise ConfigError("gpu_memory_utilization must be in (0, 1]")
    if config.kv_cache_dtype not in KV_DTYPES:
        raise ConfigError(f"kv_cache_dtype must be one of {', '.join(KV_DTYPES)}")
    if config.block_size not in (1, 8, 16, 32, 64, 128):
        raise ConfigError("block_size must be one of 1, 8, 16, 32, 64, 128")
    for name in ("max_num_seqs", "max_num_batched_tokens", "max_model_len"):
        if getattr(config, name) < 1:
            raise ConfigError(f"{name} must be >= 1")
    if config.max_num_batched_tokens < config.max_num_seqs:
        raise ConfigError(f"max_num_batched_tokens ({config.max_num_batched_tokens}) must be >= "
                          f"max_num_seqs ({config.max_num_seqs})")
    blocks = kv_capacity_tokens(config, hw) // config.block_size
    if blocks < 1:
        raise ConfigError("no GPU memory left for the KV cache with this gpu_memory_utilization; raise it")


class LoadModel:
    """One engine instance. Drive it with :meth:`run_until` (simulated seconds)."""

    def __init__(self, config: EngineConfig, hw: Hardware, bounds: dict[str, tuple[float, ...]], seed: int = 0) -> None:
        check_config(config, hw)
        self.hw = hw
        self.rng = random.Random(seed)
        self.stats = Stats(bounds)
        self.clock = 0.0
        self.workload = Workload()
        self.stalled = False
        self.waiting: deque[Request] = deque()
        self.running: list[Request] = []
        self.next_arrival = 0.0
        self.config = config
        self.kv_connector = ""
        """A KV connector (``LMCacheConnectorV1``): prompt tokens the local cache misses are looked up in a shared
        external cache, which holds the workload's shared-prefix share of them (prefixes other replicas saw)."""
        self.total_blocks = 0
        self.free_blocks = 0
        self.prefix_blocks = 0
        self._configure(config)
        self.next_arrival = self._draw_gap()

    # --- configuration -------------------------------------------------------------------------
    def _configure(self, config: EngineConfig) -> None:
        self.config = config
        self.total_blocks = kv_capacity_tokens(config, self.hw) // config.block_size
        self.free_blocks = self.total_blocks
        self.prefix_blocks = 0

    @property
    def capacity_tokens(self) -> int:
        return self.total_blocks * self.config.block_size

    def reconfigure(self, config: EngineConfig) -> None:
        """Apply a config like an engine restart that keeps its clients: every running request goes back
        to the front of the queue (its KV freed, to be recomputed), the cache is resized; counters and
        histograms continue (no counter reset)."""
        check_config(config, self.hw)
        for req in reversed(self.running):
            self._release(req)
            self.waiting.appendleft(req)
        self.running = []
        self._configure(config)

    # --- arrivals -------------------------------------------------------------------------------
    def _draw_gap(self, after: float | None = None) -> float:
        rate = min(self.workload.rate, MAX_ARRIVAL_RATE)
        if rate <= 0:
            return math.inf
        return (self.clock if after is None else after) + self.rng.expovariate(rate)

    def set_workload(self, workload: Workload) -> None:
        if workload != self.workload:
            self.workload = workload
            self.next_arrival = self._draw_gap()

    def _arrive(self, now: float) -> None:
        wl = self.workload
        if len(self.waiting) + len(self.running) >= wl.max_inflight:
            return
        rng = self.rng
        prompt = min(rng.randint(wl.prompt_min, wl.prompt_max), self.config.max_model_len - 1)
        max_tokens = min(rng.randint(wl.output_min, wl.output_max), self.config.max_model_len - prompt)
        target = max_tokens if rng.random() >= wl.stop_share else max(1, int(max_tokens * rng.uniform(0.3, 1)))
        cached = 0
        if self.config.enable_prefix_caching and wl.prefix_share > 0:
            bs = self.config.block_size
            cached = int(prompt * wl.prefix_share) // bs * bs
            cached = min(cached, prompt - 1)
        error = wl.error_share > 0 and rng.random() < wl.error_share
        self.waiting.append(Request(now, prompt, max_tokens, target, cached, error=error))
        self.stats.received += 1
        self.stats.observe("arrival_prompt_tokens", prompt)
        self.stats.observe("validation", 0.0002 + prompt * 1e-7)

    # --- KV blocks ------------------------------------------------------------------------------
    def _blocks_for(self, tokens: int) -> int:
        return -(-tokens // self.config.block_size)

    def _release(self, req: Request) -> None:
        self.free_blocks += req.blocks
        req.blocks = 0
        req.tokens = 0

    def kv_usage(self) -> float:
        if self.total_blocks == 0:
            return 0.0
        return (self.total_blocks - self.free_blocks) / self.total_blocks

    def _shared_prefix_blocks(self) -> int:
        wl = self.workload
        if not self.config.enable_prefix_caching or wl.prefix_share <= 0:
            return 0
        return self._blocks_for(int(wl.prompt_max * wl.prefix_share))

    # --- the engine step ------------------------------------------------------------------------
    def run_until(self, until: float) -> None:
        """Advance the engine (steps and arrivals) to simulated time ``until``."""
        while self.clock < until:
            self._arrive_until(self.clock)
            if self.stalled:
                self.clock = until
                self._arrive_until(until)
            elif self.running or self.waiting:
                self._step()
            else:
                self.clock = min(until, self.next_arrival)

    def _arrive_until(self, now: float) -> None:
        while self.next_arrival <= now:
            self._arrive(self.next_arrival)
            self.next_arrival = self._draw_gap(self.next_arrival)

    def _admit(self) -> None:
        cfg = self.config
        want_prefix = self._shared_prefix_blocks()
        if want_prefix != self.prefix_blocks and not self.running:
            self.free_blocks += self.prefix_blocks - want_prefix
            self.prefix_blocks = want_prefix
        watermark = int(self.total_blocks * self.hw.admission_watermark)
        while self.waiting and len(self.running) < cfg.max_num_seqs:
            req = self.waiting[0]
            need = self._blocks_for(req.prompt - req.cached + req.generated)
            if need > self.total_blocks - self.prefix_blocks - watermark:
                # can never fit: the engine refuses it (vLLM raises for prompts beyond the cache)
                self.waiting.popleft()
                self._finish(req, "abort")
                continue
            if self.free_blocks - need < watermark:
                break
            self.waiting.popleft()
            self.free_blocks -= need
            req.blocks = need
            req.tokens = req.prompt - req.cached + req.generated
            req.pending = req.prefill_len
            req.ready = self.clock
            if req.first_scheduled < 0:
                req.first_scheduled = self.clock
                self.stats.observe("queue", self.clock - req.arrival)
            self.running.append(req)

    def _step(self) -> None:
        self._admit()
        stats, hw = self.stats, self.hw
        budget = self.config.max_num_batched_tokens
        decoding = [r for r in self.running if r.pending == 0]
        budget -= len(decoding)
        # KV growth of the decodes: one token each; preempt the newest running request when out of blocks
        bs = self.config.block_size
        for req in decoding:
            if req.blocks == 0:
                continue  # preempted below in this loop
            if req.tokens + 1 > req.blocks * bs:
                while self.free_blocks < 1:
                    victim = self.running[-1]
                    self._preempt(victim)
                    if victim is req:
                        break
                if req.blocks == 0:
                    continue
                self.free_blocks -= 1
                req.blocks += 1
            req.tokens += 1
        decoding = [r for r in decoding if r.blocks > 0]
        prefill_tokens = 0
        completing: list[Request] = []
        for req in self.running:
            if budget <= 0:
                break
            if req.pending <= 0 or req.blocks == 0 or req.ready > self.clock:
                continue
            chunk = min(req.pending, budget)
            req.pending -= chunk
            budget -= chunk
            prefill_tokens += chunk
            if req.pending == 0:
                completing.append(req)
        kv_tokens = sum(r.tokens for r in self.running)
        n_decode = len(decoding)
        duration = (hw.step_base_s + hw.prefill_s_per_token * prefill_tokens + hw.decode_s_per_seq * n_decode
                    + hw.attention_s_per_kv_token * kv_tokens)
        self.clock += duration
        now = self.clock
        stats.observe("iteration_tokens", prefill_tokens + n_decode)
        if prefill_tokens:
            stats.prefill_steps += 1
            stats.observe("forward_prefill", duration * prefill_tokens / (prefill_tokens + n_decode))
        if n_decode:
            stats.decode_steps += 1
            stats.observe("itl", duration, n_decode)
            stats.observe("forward_decode", duration * n_decode / (prefill_tokens + n_decode))
            stats.generation_tokens += n_decode
        done: list[Request] = []
        for req in decoding:
            req.generated += 1
            if req.generated >= req.target:
                done.append(req)
        for req in completing:
            if req.first_token < 0:
                req.first_token = now
                stats.observe("ttft", now - req.arrival)
                stats.prompt_tokens += req.prompt
                if self.config.enable_prefix_caching:
                    stats.prefix_queries += req.prompt
                    stats.prefix_hits += req.cached
                if self.kv_connector:
                    missed = req.prompt - req.cached
                    stats.external_queries += missed
                    stats.external_hits += int(missed * self.workload.prefix_share)
                stats.observe("prefill", now - req.first_scheduled)
                stats.observe("prefill_computed", req.prompt - req.cached)
                if req.error:
                    done.append(req)
                    continue
            req.generated += 1
            stats.generation_tokens += 1
            if req.generated >= req.target:
                done.append(req)
        for req in done:
            self.running.remove(req)
            self._release(req)
            if req.error:
                reason: FinishReason = "error"
            else:
                reason = "length" if req.generated >= req.max_tokens else "stop"
            self._finish(req, reason)
        self._arrive_until(now)
        self._admit()  # the scheduler's view between steps: freed blocks are taken at once

    def _preempt(self, req: Request) -> None:
        self.running.remove(req)
        self._release(req)
        req.preemptions += 1
        self.stats.preemptions += 1
        self.stats.retracted_input_tokens += req.prompt
        self.stats.retracted_output_tokens += req.generated
        self.waiting.appendleft(req)

    def _finish(self, req: Request, reason: FinishReason) -> None:
        stats, now = self.stats, self.clock
        stats.finished[reason] += 1
        stats.observe("e2e", now - req.arrival)
        stats.observe("prompt_tokens", req.prompt)
        if reason != "error":
            stats.observe("generation_tokens", req.generated)
        stats.observe("max_tokens", req.max_tokens)
        stats.observe("request_preemptions", req.preemptions)
        if req.first_scheduled >= 0:
            stats.observe("inference", now - req.first_scheduled)
            if req.generated and reason != "error":
                stats.observe("mean_time_per_token", (now - req.first_scheduled) / req.generated)
        if req.first_token >= 0:
            stats.observe("decode", now - req.first_token)
            if req.generated > 1:
                stats.observe("tpot", (now - req.first_token) / (req.generated - 1))

    def with_changes(self, changes: dict[str, object]) -> EngineConfig:
        return replace(self.config, **changes)  # type: ignore[arg-type]
