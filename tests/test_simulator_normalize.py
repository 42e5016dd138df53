"""The simulator's payloads go through the exporter's transform with no catalogue concept dropped."""

from __future__ import annotations

import re

import pytest
from test_exporter_transform import normalize

from optiinfra.demo.simulator.engines import render
from optiinfra.demo.simulator.scenarios import SCENARIOS, Simulation
from optiinfra.metrics import ENGINE_METRICS

#: Concepts the simulated engine does not produce, as the real engine would not in the same situation.
NOT_PRODUCED = {
    "vllm": {
        "llm_spec_draft_tokens_total": "no speculative decoding configured",
        "llm_spec_accepted_tokens_total": "no speculative decoding configured",
        "llm_requests_rejected_total": "vllm:admission_rejections_total needs max_num_queued_* limits",
    },
    "sglang": {},
    "tgi": {"llm_requests_rejected_total": "tgi_request_failure{err=overloaded|validation} never incremented"},
}


@pytest.mark.parametrize("engine", ["vllm", "sglang", "tgi"])
def test_every_mapped_concept_survives_normalization(engine: str) -> None:
    sim = Simulation(engine, SCENARIOS["request_errors"], time_scale=10.0, seed=2)  # type: ignore[arg-type]
    sim.advance(10.0)
    result = normalize(render(engine, sim.model, "m", 1.7e9), engine, model="m")  # type: ignore[arg-type]
    assert result.parse_errors == 0 and result.duplicates == 0
    produced = set(re.findall(r"^# TYPE (\S+)", result.text, re.M))
    mapped = {m.name for m in ENGINE_METRICS if engine in m.sources}
    assert mapped - produced == set(NOT_PRODUCED[engine])
    capacity = re.search(r"^llm_kv_cache_capacity_tokens\{[^}]*\} (\S+)$", result.text, re.M)
    # vLLM's capacity is what its usage ratio divides by: every block but the null block
    expected = (sim.model.total_blocks - 1) * sim.model.config.block_size if engine == "vllm" \
        else sim.model.capacity_tokens
    assert capacity and float(capacity.group(1)) == expected
    if engine != "sglang":  # SGLang has no error outcome on the wire (only HTTP status codes)
        errors = re.search(r'^llm_requests_finished_total\{[^}]*outcome="error"[^}]*\} (\S+)$', result.text, re.M)
        assert errors and float(errors.group(1)) == sim.model.stats.finished["error"] > 0
