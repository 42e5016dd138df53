"""The engine vocabulary: validated at import, and one row reaches the collector, planner, simulator and docs."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

import pytest

from optiinfra import engines
from optiinfra.alertmanager import knobs
from optiinfra.alertmanager.plan import Diagnosis, Plan
from optiinfra.alertmanager.planner import AlertEpisode, PlanningContext, plan_for
from optiinfra.demo.simulator.engines import native_config, reported
from optiinfra.demo.simulator.model import EngineConfig
from optiinfra.demo.simulator.server import SIM_KEY, SimConfig, create_app
from optiinfra.engines import COUNT, VOCABULARY, Lever, Setting, VocabularyError
from optiinfra.exporter.collectors.engine import EngineCollector, map_info
from optiinfra.exporter.collectors.process import EngineProcess
from optiinfra.exporter.exposition import encode
from optiinfra.metrics import ENGINES
from optiinfra.rules.runbooks import runbooks

NOW = datetime(2026, 11, 29, 8, 0, tzinfo=UTC)

#: The throwaway row: SGLang's KV pool size in tokens, read into TGI's ``max_batch_total_tokens`` label and
#: modelled by the simulator's fixed KV token budget; a second way to give the KV cache less memory.
THROWAWAY = Setting(
    "max_total_tokens", "--max-total-tokens", "int", "derived from mem_fraction_static", "max_batch_total_tokens",
    source="/get_server_info", sim="max_batch_total_tokens", bounds=COUNT,
    levers=(Lever("kv_memory_down", "x0.75", "a smaller KV pool leaves memory headroom", minimum=1024),))


def with_row(setting: Setting) -> Mapping[str, engines.EngineVocabulary]:
    sglang = dataclasses.replace(VOCABULARY["sglang"], settings=(*VOCABULARY["sglang"].settings, setting))
    return MappingProxyType({**VOCABULARY, "sglang": sglang})


def cuda_oom(config: dict[str, str], blocked: frozenset[str] = frozenset()) -> Plan | Diagnosis:
    labels = {"alertname": "LLMCudaOOM", "bottleneck": "cuda_oom", "namespace": "llm", "pod": "sglang-0",
              "engine": "sglang", "model": "m"}
    episode = AlertEpisode(fingerprint="f", starts_at="2026-11-29T07:55:00Z", labels=labels)
    return plan_for(episode, PlanningContext(now=NOW, engine_config=config, blocked_knobs=blocked))


async def engine_info(aiohttp_client: Any, change: dict[str, object]) -> tuple[int, dict[str, Any], str]:
    """POST ``change`` to a simulated SGLang, then scrape it with the collector: (status, config, exposition)."""
    app = create_app(SimConfig(engine="sglang", scenario="healthy", seed=1))
    client = await aiohttp_client(app)
    app[SIM_KEY].advance(5.0)
    status = (await client.post("/admin/config", json=change)).status
    config = await (await client.get("/admin/config")).json()
    collector = EngineCollector(str(client.make_url("/metrics")), engine="sglang")
    await collector.start()
    try:
        text = encode(await collector.collect())
    finally:
        await collector.close()
    info = next(line for line in text.splitlines() if line.startswith("llm_engine_info{"))
    return status, config, info


async def test_one_row_reaches_collector_planner_simulator_and_docs(
        aiohttp_client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # Before: the simulator refuses the key, the collector has no label for it, the planner and docs never name it.
    status, config, info = await engine_info(aiohttp_client, {"max_total_tokens": 60000})
    assert status == 400 and "max_total_tokens" not in config and "max_batch_total_tokens" not in info
    assert "| sglang | `--max-total-tokens`" not in knobs.markdown()

    monkeypatch.setattr(engines, "VOCABULARY", with_row(THROWAWAY))

    # Simulator: accepted under its flag name, modelled by the KV token budget, reported on /get_server_info.
    status, config, info = await engine_info(aiohttp_client, {"--max-total-tokens": 60000})
    assert status == 200 and config["max_total_tokens"] == 60000
    # Collector: the info endpoint's key lands in its llm_engine_info label.
    assert 'max_batch_total_tokens="60000"' in info
    assert map_info("sglang", {"max_total_tokens": 512}) == {"max_batch_total_tokens": "512"}
    # Planner: with the first kv_memory_down knob blocked, the new one is chosen, from the label's value.
    labels = dict(re.findall(r'(\w+)="([^"]*)"', info))
    plan = cuda_oom(labels, blocked=frozenset({"mem_fraction_static"}))
    assert isinstance(plan, Plan), plan
    (action,) = plan.actions
    assert (action.name, action.knob, action.from_, action.to) == ("--max-total-tokens", "max_total_tokens",
                                                                   60000, 45000)
    assert "a smaller KV pool leaves memory headroom" in plan.rationale
    # Docs: the plan-actions table and the runbook's knob list.
    doc = knobs.markdown()
    assert "`--mem-fraction-static` -0.05 (min 0.5, max 0.95) (low); then `--max-total-tokens` x0.75 (min 1024)" in doc
    assert ("| sglang | `--max-total-tokens` | `max_total_tokens` | `max_total_tokens`, `max_batch_total_tokens` "
            "| derived from mem_fraction_static | `--max-total-tokens` x0.75 (min 1024) | low |") in doc
    assert "SGLang `--mem-fraction-static` then `--max-total-tokens`" in runbooks()["cuda_oom.md"]


def test_negation_is_defined_once_and_round_trips() -> None:
    sglang = VOCABULARY["sglang"]
    labels = sglang.map_info({"disable_radix_cache": True})
    assert labels == {"enable_prefix_caching": "False"}
    assert sglang.current_config(labels) == {"disable_radix_cache": True}
    assert sglang.current_config({"disable_radix_cache": "false"}) == {"disable_radix_cache": False}
    assert native_config("sglang", EngineConfig(enable_prefix_caching=False))["disable_radix_cache"] is True


@pytest.mark.parametrize("engine", ENGINES)
def test_simulator_info_reads_back_as_its_own_config(engine: str) -> None:
    """What the simulator reports, mapped by the collector and read by the planner, is the simulator's config."""
    vocab = VOCABULARY[engine]  # type: ignore[index]
    cfg = EngineConfig(gpu_memory_utilization=0.85, max_num_seqs=48, max_num_batched_tokens=4096,
                       enable_prefix_caching=False, kv_cache_dtype="fp8", block_size=32, max_model_len=8192,
                       max_batch_total_tokens=100000)
    sources = {s.source for s in vocab.settings if s.source}
    labels: dict[str, str] = {}
    for source in sorted(sources):
        labels.update(vocab.map_info(reported(engine, source, cfg)))  # type: ignore[arg-type]
    read = vocab.current_config(labels)
    native = native_config(engine, cfg)  # type: ignore[arg-type]
    checked = [s for s in vocab.settings if s.sim is not None and s.source]
    assert checked
    for setting in checked:
        assert read[setting.key] == native[setting.name], setting.key


def test_version_floor_skips_a_knob_the_running_engine_lacks() -> None:
    labels = {"alertname": "LLMCacheInefficiency", "bottleneck": "cache_inefficiency", "namespace": "llm",
              "pod": "sglang-0", "engine": "sglang", "model": "m"}
    episode = AlertEpisode(fingerprint="f", starts_at="2026-11-29T07:55:00Z", labels=labels)
    old = plan_for(episode, PlanningContext(now=NOW, engine_config={"version": "0.5.9"}))
    assert isinstance(old, Plan) and old.actions[0].name == "--schedule-policy"
    assert "needs sglang >= 0.5.10, running 0.5.9" in old.rationale
    new = plan_for(episode, PlanningContext(now=NOW, engine_config={"version": "0.5.16"}))
    assert isinstance(new, Plan) and new.actions[0].name == "--enable-hierarchical-cache"


@pytest.mark.parametrize(("row", "message"), [
    (dataclasses.replace(THROWAWAY, label="max_total_tokenz"), "not an llm_engine_info label"),
    (dataclasses.replace(THROWAWAY, negated=True), "only a bool setting"),
    (dataclasses.replace(THROWAWAY, flag="--mem-fraction-static"), "duplicate setting flag"),
    (dataclasses.replace(THROWAWAY, aka=("mem_fraction_static",)), "duplicate setting info key"),
    (dataclasses.replace(THROWAWAY, source="", aka=("total_tokens",)), "a source needs a label"),
    (dataclasses.replace(THROWAWAY, label=None), "a source needs a label"),
    (dataclasses.replace(THROWAWAY, source="/nowhere"), "unknown source"),
    (dataclasses.replace(THROWAWAY, levers=(Lever("kv_memory_down", "x-2", "e"),)), "must be +N, -N, xN"),
    (dataclasses.replace(THROWAWAY, levers=(Lever("kv_memory_down", "=many", "e"),)), "is not a valid int"),
    (dataclasses.replace(THROWAWAY, levers=(Lever("kv_memory_down", "x2", "e", minimum=9, maximum=1),)),
     "minimum > maximum"),
])
def test_a_bad_row_is_refused_at_construction(row: Setting, message: str) -> None:
    with pytest.raises(VocabularyError, match=re.escape(message)):
        with_row(row)


def test_a_lever_for_an_action_the_engine_says_it_lacks_is_refused() -> None:
    tgi = VOCABULARY["tgi"]
    row = Setting("throwaway", "--throwaway", "int", "1", levers=(Lever("lpm_schedule_policy", "x2", "e"),))
    with pytest.raises(VocabularyError, match="has levers and a no-knob reason"):
        dataclasses.replace(tgi, settings=(*tgi.settings, row))


def test_flags_from_the_engine_command_line_become_info_labels() -> None:
    argv = ["/venv/bin/python", "-m", "vllm.entrypoints.openai.api_server", "--model", "/m", "--max-num-seqs", "16",
            "--kv-cache-memory-bytes=2228224", "--enable-prefix-caching", "--block-size", "32", "--port", "8000"]
    assert VOCABULARY["vllm"].from_argv(argv) == {
        "max_num_seqs": "16", "kv_cache_memory_bytes": "2228224", "enable_prefix_caching": "True", "block_size": "32"}
    # a negated bool flag alone (SGLang's radix cache) gives the label's opposite
    assert VOCABULARY["sglang"].from_argv(["--disable-radix-cache", "--max-running-requests", "8"]) == {
        "enable_prefix_caching": "False", "max_num_seqs": "8"}
    # a number flag with no number is no label
    assert VOCABULARY["vllm"].from_argv(["--max-num-seqs", "many"]) == {}


async def test_engine_info_carries_the_flags_the_engine_process_was_started_with(aiohttp_client: Any) -> None:
    """vLLM reports --max-num-seqs nowhere: the sidecar reads it from the engine's command line (the process
    it was told about), so the planner knows the current value; the engine's own reports take precedence."""
    app = create_app(SimConfig(engine="vllm", scenario="healthy", seed=1))
    client = await aiohttp_client(app)
    app[SIM_KEY].advance(5.0)
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", "--max-num-seqs", "24",
                             "--block-size", "999"])
    try:
        collector = EngineCollector(str(client.make_url("/metrics")), engine="vllm",
                                    process=EngineProcess(proc.pid))
        await collector.start()
        try:
            text = encode(await collector.collect())
        finally:
            await collector.close()
    finally:
        proc.kill()
        proc.wait()
    info = next(line for line in text.splitlines() if line.startswith("llm_engine_info{"))
    assert 'max_num_seqs="24"' in info
    assert 'block_size="16"' in info  # the engine's vllm:cache_config_info wins over the command line
