"""The engine simulator behind ``optiinfra simulate``: a load model that serves vLLM's, SGLang's or TGI's
real ``/metrics`` format while a scenario makes one taxonomy bottleneck appear.

Modules: ``model`` (the load model: Poisson arrivals, FIFO queue, admission by ``max_num_seqs`` and KV
blocks, chunked prefill, decode steps, recompute preemption of the newest request, outcomes, counters and
native-bucket histograms), ``engines`` (wire formats, info endpoints, engine-native config keys),
``scenarios`` (the scenario catalogue and the scenario-driven :class:`Simulation`), ``server`` (aiohttp).

Timing contract
---------------
* Scenario timelines (phase starts, the stall of ``engine_stalled``) are in **real seconds** since start.
* The load model runs ``time_scale`` simulated seconds per real second (default 10). Latencies in the
  histograms are simulated seconds, so every latency signal (TTFT/ITL/queue/e2e p95), gauge (KV usage,
  running, waiting) and ratio (error share) is independent of the time scale; counter rates per real
  second are ``time_scale`` x the simulated rate (a scenario that must keep a rate *under* a threshold
  keeps it at zero).
* Every scenario reaches its steady signal within 10 real seconds at ``--time-scale 10`` and holds it
  for as long as it runs (windows of 5-10 real seconds, Prometheus scraping every second, see the
  rules' demo profile). ``--time-scale 10`` is the recommended value for the demo and e2e tests; the
  model costs about 1-2% of one core at that scale.
* ``POST /admin/config`` applies engine-native keys like a restart that keeps its clients: running
  requests go back to the front of the queue (KV freed, recomputed), the KV cache is resized; counters
  continue (no reset). ``engine_stalled`` recovers on any config change; ``slo_regression`` degrades
  while the config differs from its initial one and recovers when it is changed back (the rollback).

Deterministic for a given ``--seed`` and sequence of advances.
"""

from .scenarios import SCENARIOS, Scenario, Simulation
from .server import SimConfig, create_app

__all__ = ["SCENARIOS", "Scenario", "SimConfig", "Simulation", "create_app"]
