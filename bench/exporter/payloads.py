"""Synthetic vLLM payloads for the exporter bench, built from the real vLLM 0.26.0 capture.

The capture (llm-d-router testdata, a real but filtered scrape) supplies the exact wire style: label order,
``engine``/``model_name`` labels, ``_created`` gauge families, the 30-label ``vllm:cache_config_info`` and the
KV-offload connector families. The families the filter dropped (running/waiting gauges, token counters, the
latency and size histograms with vLLM's default buckets, HTTP metrics) are added in the same style.
"""

from __future__ import annotations

import random
from pathlib import Path

ENGINES = Path(__file__).resolve().parents[2] / "tests" / "data" / "engines"
CAPTURE = ENGINES / "vllm-0.26.0-llm-d-router-testdata-vllm-none.prom"

TTFT = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0,
        80.0, 160.0, 640.0, 2560.0)
ITL = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0)
LATENCY = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0,
           960.0, 1920.0, 7680.0)
TOKENS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000)
ITERATION = (1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384)

GAUGES = ("vllm:num_requests_running",)
COUNTERS = ("vllm:prompt_tokens", "vllm:generation_tokens", "vllm:num_preemptions", "vllm:prefix_cache_queries",
            "vllm:prefix_cache_hits")
HISTOGRAMS = (
    ("vllm:time_to_first_token_seconds", TTFT), ("vllm:inter_token_latency_seconds", ITL),
    ("vllm:e2e_request_latency_seconds", LATENCY), ("vllm:request_queue_time_seconds", LATENCY),
    ("vllm:request_prompt_tokens", TOKENS), ("vllm:iteration_tokens_total", ITERATION),
)
REASONS = ("stop", "length", "abort", "error", "repetition")


def _fmt_le(bound: float) -> str:
    return repr(float(bound))


def _created(name: str, models: list[str], rng: random.Random, extra: str = "") -> list[str]:
    lines = [f"# HELP {name}_created {name} created.", f"# TYPE {name}_created gauge"]
    lines += [f'{name}_created{{engine="0",{extra}model_name="{m}"}} {1.7859669e9 + rng.random():.10e}'
              for m in models]
    return lines


def vllm_payload(models: list[str], seed: int = 7) -> str:
    """A vLLM 0.26-style /metrics with every model of ``models`` in each family."""
    rng = random.Random(seed)
    capture = CAPTURE.read_text()
    out: list[str] = []
    # The capture's own families, each block once, with one series set per model (it holds one model).
    for block in capture.rstrip("\n").split("\n# HELP "):
        lines = block.split("\n")
        help_line = lines[0] if lines[0].startswith("# HELP ") else "# HELP " + lines[0]
        samples = [line for line in lines[1:] if line and not line.startswith("#")]
        out.append(help_line)
        out.extend(line for line in lines[1:] if line.startswith("#"))
        for i, model in enumerate(models):
            for line in samples:
                if i and line.startswith("vllm:cache_config_info{"):
                    continue  # no model label: one engine's config is enough
                out.append(line.replace("Qwen/Qwen3-0.6B", model))
    for name in GAUGES:
        out += [f"# HELP {name} Number of requests in model execution batches.", f"# TYPE {name} gauge"]
        out += [f'{name}{{engine="0",model_name="{m}"}} {float(rng.randint(0, 64))}' for m in models]
    for base in COUNTERS:
        out += [f"# HELP {base}_total Counter {base}.", f"# TYPE {base}_total counter"]
        out += [f'{base}_total{{engine="0",model_name="{m}"}} {float(rng.randint(0, 10**7))}' for m in models]
        out += _created(base, models, rng)
    out += ["# HELP vllm:request_success_total Count of successfully processed requests.",
            "# TYPE vllm:request_success_total counter"]
    out += [f'vllm:request_success_total{{engine="0",finished_reason="{r}",model_name="{m}"}} '
            f'{float(rng.randint(0, 10**5))}' for m in models for r in REASONS]
    out += ["# HELP vllm:request_success_created Count of successfully processed requests.",
            "# TYPE vllm:request_success_created gauge"]
    out += [f'vllm:request_success_created{{engine="0",finished_reason="{r}",model_name="{m}"}} '
            f'{1.7859669e9 + rng.random():.10e}' for m in models for r in REASONS]
    for name, bounds in HISTOGRAMS:
        out += [f"# HELP {name} Histogram of {name}.", f"# TYPE {name} histogram"]
        for m in models:
            count = 0
            for bound in bounds:
                count += rng.randint(0, 50)
                out.append(f'{name}_bucket{{engine="0",le="{_fmt_le(bound)}",model_name="{m}"}} {float(count)}')
            out.append(f'{name}_bucket{{engine="0",le="+Inf",model_name="{m}"}} {float(count)}')
            out.append(f'{name}_count{{engine="0",model_name="{m}"}} {float(count)}')
            out.append(f'{name}_sum{{engine="0",model_name="{m}"}} {rng.random() * count * 3}')
        out += _created(name, models, rng)
    out += ["# HELP http_requests_total Total number of requests by method, status and handler.",
            "# TYPE http_requests_total counter"]
    for handler in ("/v1/completions", "/v1/chat/completions", "/health", "/v1/models"):
        value = float(rng.randint(0, 10**5))
        out.append(f'http_requests_total{{handler="{handler}",method="POST",status="2xx"}} {value}')
    out += ["# HELP process_resident_memory_bytes Resident memory size in bytes.",
            "# TYPE process_resident_memory_bytes gauge", "process_resident_memory_bytes 2.1e+09"]
    return "\n".join(out) + "\n"


def model_names(n: int) -> list[str]:
    return ["Qwen/Qwen3-0.6B"] if n == 1 else [f"org-{i % 7}/model-{i:02d}-8B-Instruct" for i in range(n)]
