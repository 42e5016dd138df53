"""promtool cases of the efficiency, cost and health rules (``optiinfra-rules-efficiency.test.yml``).

Known inputs, values computed here in the order PromQL computes them: a pod with two GPUs (both spellings of
the GPU labels) at 50% and 250 W each, 750 prompt and 250 generated tokens/s, KV usage 0.4 and an external KV
cache hitting 100 of 400 tokens/s; a second pod of the same model with no GPU and no traffic. The first pod has
a warning bottleneck firing twice (two alerts, counted once), a critical one and one SLO burning on both
tiers; the second has none. A second case has no connector (flat external counters) and GPUs without a price:
the KV-connector and cost rules are absent.
"""

from __future__ import annotations

import math
from typing import Any

from optiinfra import taxonomy as tx
from optiinfra.config import format_duration_ms, parse_duration_ms
from optiinfra.rules import efficiency as ef
from optiinfra.rules.promql import Ctx
from optiinfra.rules.testgen import STEP, Series, Synth, _lbl, _sample, promtool_test

GPU_MODEL = "NVIDIA H100 80GB HBM3"
UNPRICED_GPU = "Unpriced GPU"
PROMPT, GENERATED, WATTS, KV, UTIL = 750, 250, 250, 0.4, 0.5
QUERIED, HIT = 400, 100
HOUR_S = 3600.0
ROUND = 1 / 1024


def _round(value: float) -> float:
    """PromQL's ``round(v, 1/1024)``."""
    return math.floor(value * 1024 + 0.5) / 1024


def _inputs(s: Synth, *, gpu_model: str, connector: bool) -> Series:
    series: Series = {}
    for i in (0, 1):
        gpu = {**s.gpu_labels(i, i == 1), "modelName": gpu_model}
        series[f"DCGM_FI_DEV_GPU_UTIL{_lbl(gpu)}"] = s.gauge(UTIL * 100)
        series[f"DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{_lbl(gpu)}"] = s.counter(WATTS * 1000)
    series[f"llm_prompt_tokens_total{_lbl(s.eng)}"] = s.counter(PROMPT)
    series[f"llm_generation_tokens_total{_lbl(s.eng)}"] = s.counter(GENERATED)
    series[f"llm_kv_cache_usage_ratio{_lbl(s.eng)}"] = s.gauge(KV)
    series[f"llm_external_kv_queried_tokens_total{_lbl(s.eng)}"] = s.counter(QUERIED if connector else 0)
    series[f"llm_external_kv_hit_tokens_total{_lbl(s.eng)}"] = s.counter(HIT if connector else 0)
    return series


def _other_pod(s: Synth) -> dict[str, str]:
    return {**s.raw, "pod": "pod-1", **({"instance": "10.0.0.2:9400"} if "instance" in s.raw else {})}


def _fleet(s: Synth) -> Series:
    """Both pods' sidecars up and running one request each; the first pod's firing alerts."""
    series: Series = {}
    other = _other_pod(s)
    for raw in (s.raw, other):
        series[f"up{_lbl(raw)}"] = s.gauge(1)
        series[f"llm_requests_running{_lbl({**raw, 'engine': 'vllm', 'model': 'm'})}"] = s.gauge(1)
    alert = {**s.pod_model, "alertstate": "firing"}
    fired = [
        ("LLMKVCachePressure", "kv_cache_pressure", "warning", {"dp_rank": "0"}),
        ("LLMKVCachePressure", "kv_cache_pressure", "warning", {"dp_rank": "1"}),
        ("LLMHighErrorRate", "request_errors", "critical", {}),
        ("LLMSLOBurnRateFast", tx.SLO_BURN, "critical", {"slo": "availability"}),
        ("LLMSLOBurnRateSlow", tx.SLO_BURN, "warning", {"slo": "availability"}),
    ]
    for name, bottleneck, severity, extra in fired:
        labels = {**alert, "alertname": name, "bottleneck": bottleneck, "severity": severity, **extra}
        series[f"ALERTS{_lbl(labels)}"] = s.gauge(1)
    return series


def efficiency_tests(ctx: Ctx) -> list[dict[str, Any]]:
    config = ctx.config
    step_ms = parse_duration_ms(ctx.w(STEP))
    eval_ms = parse_duration_ms(ctx.w("70m"))  # a full cost window (1h) of samples before the evaluation
    s = Synth(ctx, eval_ms // step_ms + 5)
    at = format_duration_ms(eval_ms)
    pm, pod, model = s.pod_model, s.pod, {"engine": "vllm", "model": "m"}
    gpu_pod = {k: v for k, v in pod.items() if k in ctx.gpu_on.split(", ")}  # GPU-derived pod series
    other_pod = {k: v for k, v in _other_pod(s).items() if k in ctx.identity}

    gpus, tokens_per_s = 2, PROMPT + GENERATED
    price = config.cost.price_of(GPU_MODEL)
    weights, targets = config.health, config.efficiency
    firing = weights.warning + weights.critical + weights.slo_burn
    health = max(100 - firing, 0.0)
    efficiency = 100 * (0.5 * min(KV / targets.kv_usage_target, 1)
                        + 0.5 * min(UTIL / targets.gpu_utilization_target, 1))
    tokens_hour = tokens_per_s * HOUR_S
    cost = [] if price is None else [1e6 * (price + price) / tokens_hour]

    def exp(name: str, labels: dict[str, str], values: list[float]) -> dict[str, Any]:
        return exps(name, [(labels, v) for v in values])

    def exps(name: str, samples: list[tuple[dict[str, str], float]]) -> dict[str, Any]:
        """The rule's value to the nearest 1/1024 (exact in binary: rate() extrapolation leaves a last-bit error)."""
        return {"expr": f"round({name}, {ROUND!r})", "eval_time": at,
                "exp_samples": [_sample("", labels, _round(v)) for labels, v in samples]}

    main = [
        exp(ef.GPUS, gpu_pod, [gpus]),
        exp(ef.GEN_PER_GPU, pm, [GENERATED / gpus]),
        exp(ef.MODEL_GEN_PER_GPU, model, [GENERATED / gpus]),
        exp(ef.TOKENS_PER_JOULE, gpu_pod, [tokens_per_s / (gpus * WATTS)]),
        exp(ef.PRICE, {**gpu_pod, "currency": config.cost.currency}, [] if price is None else [price + price]),
        exp(ef.COST, pm, cost),
        exp(ef.MODEL_COST, model, cost),
        exp(ef.EXTERNAL_HIT_RATIO, pm, [HIT / QUERIED]),
        exp(ef.PREFILL_SAVED, pm, [HIT]),
        exps(ef.HEALTH, [(pod, health), (other_pod, 100)]),
        exp(ef.MODEL_HEALTH, model, [health]),
        exp(ef.EFFICIENCY, pm, [efficiency]),
    ]
    priced = "priced GPUs" if price is not None else "GPUs without a price"
    tests = [promtool_test(ctx, f"efficiency: tokens per GPU and per joule, cost ({priced}), external KV, health, "
                            "efficiency", {**_inputs(s, gpu_model=GPU_MODEL, connector=True), **_fleet(s)},
                       promql_expr_test=main)]
    absent = [exp(ef.EXTERNAL_HIT_RATIO, pm, []), exp(ef.PREFILL_SAVED, pm, []),
              exp(ef.GEN_PER_GPU, pm, [GENERATED / gpus])]
    if config.cost.price_of(UNPRICED_GPU) is None:
        absent += [exp(ef.PRICE, gpu_pod, []), exp(ef.COST, pm, []), exp(ef.MODEL_COST, model, [])]
    tests.append(promtool_test(ctx, "efficiency: no KV connector and GPUs without a price: connector and cost rules "
                                "absent", _inputs(s, gpu_model=UNPRICED_GPU, connector=False),
                           promql_expr_test=absent))
    return tests
