"""Simulator cost: CPU seconds per real second of each scenario at --time-scale 10 (and 50), in-process.

Baseline measured in the same run: the ``healthy`` scenario at time-scale 10. Also times one /metrics render
per engine. Prints figures only; nothing is asserted.
"""

from __future__ import annotations

import time

from optiinfra.demo.simulator.engines import render
from optiinfra.demo.simulator.scenarios import SCENARIOS, Simulation

REAL_SECONDS = 60.0


def cpu_per_real_second(name: str, scale: float) -> float:
    sim = Simulation("vllm", SCENARIOS[name], time_scale=scale, seed=1)
    start = time.process_time()
    sim.advance(REAL_SECONDS)
    return (time.process_time() - start) / REAL_SECONDS


def main() -> None:
    baseline = cpu_per_real_second("healthy", 10.0)
    print(f"baseline healthy x10: {baseline * 100:.2f}% of one core")
    for name in SCENARIOS:
        for scale in (10.0, 50.0):
            cost = cpu_per_real_second(name, scale)
            print(f"{name:18s} x{scale:<4g}: {cost * 100:6.2f}% of one core ({cost / baseline:5.2f}x baseline)")
    for engine in ("vllm", "sglang", "tgi"):
        sim = Simulation(engine, SCENARIOS["healthy"], time_scale=10.0, seed=1)  # type: ignore[arg-type]
        sim.advance(10.0)
        start = time.perf_counter()
        for _ in range(100):
            text = render(engine, sim.model, "m", 1.7e9)  # type: ignore[arg-type]
        elapsed = (time.perf_counter() - start) / 100
        print(f"render {engine:6s}: {elapsed * 1000:.2f} ms per scrape, {len(text)} bytes")


if __name__ == "__main__":
    main()
