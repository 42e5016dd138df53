"""``make demo-real`` as a test: the whole loop on a real vLLM (CPU build, tiny model) closes.

Real vLLM under load with a tiny KV cache -> sidecar -> Prometheus (generated rules, demo profile) ->
Alertmanager -> receiver -> process orchestrator, which restarts vLLM with the planned flags. The loop closes
when a KV-pressure plan that raises ``--kv-cache-memory-bytes`` was applied by a restart, its analysis verified
it, and ``LLMKVCachePressure`` stayed resolved; the printed timeline shows each of those steps.

Runs in the serial real-engine part of ``make pytest`` (it needs both cores). Needs the vLLM venv
(``make real-engine``), Prometheus and Alertmanager: under CI=true a missing piece fails, elsewhere it skips.
"""

from __future__ import annotations

import io

import pytest
from conftest import IN_CI, require_binary

from optiinfra.demo import vllm
from optiinfra.demo.runner import run_real_loop, summary

pytestmark = pytest.mark.slow


async def test_the_real_loop_closes_with_a_verified_kv_plan() -> None:
    try:
        vllm.vllm_python()
    except vllm.EngineUnavailable as exc:
        if IN_CI:
            pytest.fail(str(exc))
        pytest.skip(str(exc))
    require_binary("prometheus")
    require_binary("prometheus-alertmanager")
    out = io.StringIO()
    outcome = await run_real_loop(out=out, timeout=300.0)
    summary(outcome, out)
    text = out.getvalue()
    print(text)
    assert outcome.ok, text
    kv = [c["config"]["--kv-cache-memory-bytes"] for c in outcome.applied
          if c["what"] == "applied" and "--kv-cache-memory-bytes" in c["config"]]
    assert kv and int(kv[0][0]) == vllm.TINY_KV_BYTES and int(kv[0][1]) > vllm.TINY_KV_BYTES, outcome.applied
    for step in ("PLAN", "RESTART    vLLM applied", "-> verified", "RESOLVED   LLMKVCachePressure"):
        assert step in text, step
