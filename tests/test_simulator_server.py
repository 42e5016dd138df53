"""The simulator's HTTP API: /metrics, info endpoints, /admin/config (applied and visible, or 400)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from optiinfra.cli import main
from optiinfra.demo.simulator.server import SIM_KEY, SimConfig, create_app


async def client_for(aiohttp_client: Any, engine: str, scenario: str = "kv_cache_pressure") -> Any:
    app = create_app(SimConfig(engine=engine, scenario=scenario, model="Qwen/Qwen3-0.6B", seed=1))  # type: ignore[arg-type]
    client = await aiohttp_client(app)
    app[SIM_KEY].advance(15.0)  # jump ahead instead of waiting for the wall clock
    return client


def gauge(text: str, name: str) -> float:
    m = re.search(rf"^{re.escape(name)}(?:{{[^}}]*}})? (\S+)$", text, re.M)
    assert m, name
    return float(m.group(1))


async def test_vllm_config_change_is_visible_in_metrics_and_info(aiohttp_client: Any) -> None:
    client = await client_for(aiohttp_client, "vllm")
    before = await (await client.get("/metrics")).text()
    assert 'gpu_memory_utilization="0.9"' in before
    blocks_before = int(re.search(r'num_gpu_blocks="(\d+)"', before).group(1))  # type: ignore[union-attr]
    resp = await client.post("/admin/config", json={"--gpu-memory-utilization": 0.95, "kv_cache_dtype": "fp8"})
    assert resp.status == 200
    body = await resp.json()
    assert body["config"]["gpu_memory_utilization"] == 0.95 and body["config"]["kv_cache_dtype"] == "fp8"
    assert (await (await client.get("/admin/config")).json())["kv_cache_dtype"] == "fp8"
    client.app[SIM_KEY].advance(15.0)
    after = await (await client.get("/metrics")).text()
    assert 'gpu_memory_utilization="0.95"' in after and 'cache_dtype="fp8"' in after
    assert int(re.search(r'num_gpu_blocks="(\d+)"', after).group(1)) > 2 * blocks_before  # type: ignore[union-attr]
    assert gauge(before, "vllm:kv_cache_usage_perc") >= 0.9
    assert gauge(after, "vllm:kv_cache_usage_perc") < 0.9
    assert gauge(after, "vllm:num_requests_waiting") == 0
    assert (await (await client.get("/version")).json())["version"].startswith("0.")
    models = await (await client.get("/v1/models")).json()
    assert models["data"][0]["id"] == "Qwen/Qwen3-0.6B"
    scenario = await (await client.get("/admin/scenario")).json()
    assert scenario["scenario"] == "kv_cache_pressure" and scenario["config_changes"] == 1
    assert scenario["sim_seconds"] >= 300


@pytest.mark.parametrize(("body", "message"), [
    ({"gpu_memory_utilisation": 0.95}, "unknown vllm setting"),
    ({"max_num_seqs": "many"}, "must be an integer"),
    ({"max_num_seqs": True}, "must be an integer"),
    ({"enable_prefix_caching": 1}, "true or false"),
    ({"kv_cache_dtype": "int3"}, "must be one of"),
    ({"gpu_memory_utilization": 1.5}, "(0, 1]"),
    ({"gpu_memory_utilization": 0.5}, "no GPU memory left"),
    ({"max_num_seqs": 4096}, "max_num_batched_tokens"),
    ({}, "non-empty JSON object"),
    ([1, 2], "non-empty JSON object"),
])
async def test_bad_config_is_rejected_with_400(aiohttp_client: Any, body: object, message: str) -> None:
    client = await client_for(aiohttp_client, "vllm")
    before = await (await client.get("/admin/config")).json()
    resp = await client.post("/admin/config", json=body)
    assert resp.status == 400
    assert message in await resp.text()
    assert await (await client.get("/admin/config")).json() == before


async def test_non_json_body_is_400(aiohttp_client: Any) -> None:
    client = await client_for(aiohttp_client, "vllm")
    resp = await client.post("/admin/config", data=b"{nope")
    assert resp.status == 400 and "not JSON" in await resp.text()


async def test_sglang_and_tgi_native_keys_and_info(aiohttp_client: Any) -> None:
    sglang = await client_for(aiohttp_client, "sglang")
    info = await (await sglang.get("/get_server_info")).json()
    assert info["mem_fraction_static"] == 0.9 and info["page_size"] == 16 and info["tp_size"] == 1
    resp = await sglang.post("/admin/config", json={"mem_fraction_static": 0.95, "disable_radix_cache": True})
    assert resp.status == 200
    info = await (await sglang.get("/get_server_info")).json()
    assert info["mem_fraction_static"] == 0.95 and info["disable_radix_cache"] is True
    text = await (await sglang.get("/metrics")).text()
    assert gauge(text, "sglang:max_total_num_tokens") == info["max_total_num_tokens"]
    assert (await sglang.post("/admin/config", json={"gpu_memory_utilization": 0.95})).status == 400

    tgi = await client_for(aiohttp_client, "tgi", "queue_buildup")
    info = await (await tgi.get("/info")).json()
    assert info["max_concurrent_requests"] == 8 and info["version"].startswith("3.")
    assert (await tgi.post("/admin/config", json={"max_concurrent_requests": 64})).status == 200
    assert (await (await tgi.get("/info")).json())["max_concurrent_requests"] == 64
    text = await (await tgi.get("/metrics")).text()
    assert gauge(text, "tgi_batch_max_total_tokens") == info["max_batch_total_tokens"]
    assert (await tgi.get("/health")).status == 200


async def test_wall_clock_driver_advances_the_model(aiohttp_client: Any) -> None:
    app = create_app(SimConfig(engine="vllm", scenario="healthy", time_scale=100.0))
    client = await aiohttp_client(app)
    import asyncio

    for _ in range(50):
        await asyncio.sleep(0.05)
        if app[SIM_KEY].model.stats.received > 0:
            break
    assert app[SIM_KEY].model.clock > 0 and app[SIM_KEY].model.stats.received > 0
    assert (await client.get("/metrics")).status == 200


def test_cli_rejects_bad_listen(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", "--listen", "nowhere"]) == 2
    assert "HOST:PORT" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["simulate", "--scenario", "no_such_scenario"])
