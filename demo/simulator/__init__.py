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
  model costs 0.1-3% of one core at that scale (``bench/simulator/run.py``). At ``--time-scale 1``
  preemption_storm's rate only equals its 0.1/s threshold.
* ``POST /admin/config`` applies engine-native keys like a restart that keeps its clients: running
  requests go back to the front of the queue (KV freed, recomputed), the KV cache is resized; counters
  continue (no reset). ``engine_stalled`` recovers on any config change. No scenario reacts to "a
  config differs": help and harm come from the load model (a larger KV budget means fewer preemptions and
  lower KV usage; a too-small ``max_num_seqs`` builds a queue and raises TTFT; a bigger prefill chunk lowers
  TTFT and raises inter-token latency).

Deterministic for a given ``--seed`` and sequence of advances.

What each scenario fires (real Prometheus, the generated rules with ``--profile demo``, the sidecar in
between, vLLM format, time-scale 10): healthy - nothing; kv_cache_pressure and kv_saturated - LLMKVCachePressure
(~11 s; in kv_saturated more KV memory has no effect on usage);
preemption_storm - LLMPreemptionStorm and LLMKVCachePressure (KV usage is a sawtooth that dips below 0.9
between preemptions but reaches it within every window the KV rule takes its maximum over; in Alertmanager the
KV alert inhibits the storm's); queue_buildup - LLMQueueBuildup; prefill_bound -
LLMHighTimeToFirstToken; decode_bound - LLMHighInterTokenLatency; request_errors - LLMHighErrorRate;
engine_stalled - LLMEngineStalled; slo_regression - LLMHighTimeToFirstToken, then after the planned bigger
prefill chunk inter-token latency above its SLO (the receiver's analysis rolls it back on that guard first).
SLO burn alerts also fire wherever latency is far out (queue_buildup, prefill_bound, preemption_storm,
request_errors' availability SLO). Every scenario keeps the prefix-cache hit ratio near 0.3, so
cache_inefficiency never fires. SGLang has no error outcome on the wire (request_errors shows only as
``sglang:http_responses_total{status_code="500"}``); TGI lacks KV, TTFT, ITL and preemption metrics, so
only queue_buildup, request_errors and engine_stalled are observable through it.
"""

from .scenarios import SCENARIOS, Scenario, Simulation
from .server import SimConfig, create_app

__all__ = ["SCENARIOS", "Scenario", "SimConfig", "Simulation", "create_app"]
