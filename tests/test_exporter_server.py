"""The sidecar against real local upstreams (aiohttp test servers on 127.0.0.1): good engines, bad upstreams,
failing collectors, concurrent scrapes, health endpoints, and promtool on its own /metrics."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from conftest import DATA, free_port, parse_samples, promtool_check_metrics, require_binary
from test_exporter_transform import SGLANG_0523, TGI

from optiinfra.exporter.collectors.base import CollectorError
from optiinfra.exporter.collectors.engine import EngineCollector, map_info
from optiinfra.exporter.exposition import CONTENT_TYPE, Family, Part, Rendered, encode
from optiinfra.exporter.server import (
    MIN_SCRAPE_BUDGET,
    TIMEOUT_HEADER,
    ExporterConfig,
    build_collectors,
    create_app,
    scrape_budget,
)

VLLM_FLAG = DATA / "engines" / "vllm-0.26.0-llm-d-router-testdata-vllm-flag.prom"
SGLANG_04 = DATA / "engines" / "sglang-0.4.x-docs-production_metrics.prom"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
ServerFactory = Callable[..., Awaitable[TestServer]]
ClientFactory = Callable[..., Awaitable[TestClient[Any, Any]]]


parse = parse_samples


def get(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def upstream_app(routes: dict[str, Callable[[web.Request], Awaitable[web.StreamResponse]]]) -> web.Application:
    app = web.Application()
    for path, handler in routes.items():
        app.router.add_get(path, handler)
    return app


def text_handler(body: str | bytes, status: int = 200,
                 content_type: str = "text/plain") -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handler(request: web.Request) -> web.StreamResponse:
        data = body.encode() if isinstance(body, str) else body
        return web.Response(body=data, status=status, content_type=content_type)
    return handler


def json_handler(data: dict[str, object]) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.json_response(data)
    return handler


async def sidecar(aiohttp_client: ClientFactory, upstream: str | None, **kw: Any) -> TestClient[Any, Any]:
    config = ExporterConfig(upstream=upstream, gpu=False, host=False, **kw)
    return await aiohttp_client(create_app(config))


async def scrape(client: TestClient[Any, Any]) -> tuple[Samples, str]:
    resp = await client.get("/metrics")
    assert resp.status == 200
    assert resp.headers["Content-Type"] == CONTENT_TYPE
    text = await resp.text()
    return parse(text), text


# -- good upstreams ---------------------------------------------------------------------------------------


async def test_vllm_upstream(aiohttp_server: ServerFactory, aiohttp_client: ClientFactory) -> None:
    payload = VLLM_FLAG.read_text()
    server = await aiohttp_server(upstream_app({
        "/metrics": text_handler(payload), "/version": json_handler({"version": "0.26.0"}),
        "/v1/models": json_handler({"object": "list", "data": [{"id": "Qwen/Qwen3-0.6B", "max_model_len": 40960}]}),
    }))
    client = await sidecar(aiohttp_client, str(server.make_url("/metrics")), labels={"cluster": "eu-1"})
    samples, _ = await scrape(client)
    base = {"engine": "vllm", "model": "Qwen/Qwen3-0.6B", "dp_rank": "0", "cluster": "eu-1"}
    assert get(samples, "llm_kv_cache_capacity_tokens", **base) == (74272 - 1) * 16  # less the null block
    assert get(samples, "llm_upstream_up", engine="vllm", cluster="eu-1") == 1
    assert get(samples, "llm_upstream_scrape_bytes", engine="vllm", cluster="eu-1") == len(payload.encode())
    assert get(samples, "optiinfra_collector_success", collector="engine") == 1
    assert get(samples, "optiinfra_exporter_parse_errors_total", collector="engine") == 0
    info = [dict(lbl) for (name, lbl) in samples if name == "llm_engine_info"]
    assert info == [{
        "engine": "vllm", "model": "Qwen/Qwen3-0.6B", "version": "0.26.0", "gpu_memory_utilization": "0.92",
        "block_size": "16", "cache_dtype": "auto", "enable_prefix_caching": "True", "max_model_len": "40960",
        "kv_offloading_size": "4.0",  # vllm:cache_config_info carries it: the planner no longer proposes it blind
        "cluster": "eu-1",
    }]


async def test_tgi_upstream_info(aiohttp_server: ServerFactory, aiohttp_client: ClientFactory) -> None:
    info = {"model_id": "bigscience/bloom-560m", "version": "3.3.7", "max_concurrent_requests": 128,
            "max_input_tokens": 1024, "max_total_tokens": 2048, "max_best_of": 2, "router": "text-generation-router",
            "sha": None}
    server = await aiohttp_server(upstream_app({"/metrics": text_handler(TGI), "/info": json_handler(info)}))
    client = await sidecar(aiohttp_client, str(server.make_url("/")), engine="tgi",
                           engine_config={"quantization": "awq"})
    samples, _ = await scrape(client)
    m = {"engine": "tgi", "model": "bigscience/bloom-560m"}  # model from /info, fetched at start
    assert get(samples, "llm_requests_finished_total", **m, outcome="error") == 5
    assert get(samples, "llm_engine_info", **m, version="3.3.7", max_num_seqs="128", max_model_len="2048",
               max_input_tokens="1024", quantization="awq") == 1


async def test_tgi_auto_detected_takes_model_from_info_on_first_scrape(aiohttp_server: ServerFactory,
                                                                        aiohttp_client: ClientFactory) -> None:
    routes = {"/metrics": text_handler(TGI), "/info": json_handler({"model_id": "x/y"})}
    server = await aiohttp_server(upstream_app(routes))
    client = await sidecar(aiohttp_client, str(server.make_url("/metrics")))
    samples, _ = await scrape(client)
    assert get(samples, "llm_requests_waiting", engine="tgi", model="x/y") == 5


async def test_sglang_upstream_info(aiohttp_server: ServerFactory, aiohttp_client: ClientFactory) -> None:
    info = {"model_path": "Qwen/Qwen3-0.6B", "mem_fraction_static": 0.88, "max_running_requests": 256,
            "chunked_prefill_size": 8192, "page_size": 1, "tp_size": 2, "kv_cache_dtype": "auto",
            "quantization": None, "version": "0.5.23", "internal_states": [{"x": 1}], "disable_radix_cache": False}
    server = await aiohttp_server(upstream_app({
        "/metrics": text_handler(SGLANG_0523), "/get_server_info": json_handler(info),
    }))
    client = await sidecar(aiohttp_client, str(server.make_url("/metrics")), engine="sglang")
    samples, _ = await scrape(client)
    assert get(samples, "llm_engine_info", engine="sglang", model="m", version="0.5.23",
               gpu_memory_utilization="0.88", max_num_seqs="256", max_num_batched_tokens="8192", block_size="1",
               tensor_parallel_size="2", cache_dtype="auto", enable_prefix_caching="True") == 1
    assert get(samples, "llm_prompt_tokens_total", engine="sglang", model="m") == 1000


def test_map_info_keeps_only_schema_labels() -> None:
    assert map_info("sglang", {"tp_size": 4, "random_seed": 1, "quantization": None}) == {
        "tensor_parallel_size": "4"}
    assert map_info("tgi", {"model_id": "x", "max_input_length": 10}) == {"model": "x", "max_input_tokens": "10"}


async def test_info_endpoint_failure_never_fails_scrape(aiohttp_server: ServerFactory,
                                                        aiohttp_client: ClientFactory) -> None:
    server = await aiohttp_server(upstream_app({
        "/metrics": text_handler(TGI), "/info": text_handler("<html>nope</html>", status=500),
    }))
    client = await sidecar(aiohttp_client, str(server.make_url("/metrics")), engine="tgi")
    samples, _ = await scrape(client)
    assert get(samples, "llm_upstream_up", engine="tgi") == 1
    assert get(samples, "llm_engine_info", engine="tgi", model="unknown") == 1


async def test_passthrough(aiohttp_server: ServerFactory, aiohttp_client: ClientFactory) -> None:
    payload = VLLM_FLAG.read_text()
    server = await aiohttp_server(upstream_app({"/metrics": text_handler(payload)}))
    client = await sidecar(aiohttp_client, str(server.make_url("/metrics")), passthrough=True)
    samples, text = await scrape(client)
    original = parse(payload)
    assert original.items() <= samples.items()
    assert get(samples, "llm_kv_cache_usage_ratio", engine="vllm", model="Qwen/Qwen3-0.6B", dp_rank="0") == 0
    families = [line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")]
    assert len(families) == len(set(families))


# -- bad upstreams: llm_upstream_up 0, /metrics still 200 ---------------------------------------------------


async def _assert_down(client: TestClient[Any, Any], error_part: str) -> None:
    samples, _ = await scrape(client)
    engine = next(dict(lbl)["engine"] for (name, lbl) in samples if name == "llm_upstream_up")
    assert get(samples, "llm_upstream_up", engine=engine) == 0
    assert get(samples, "optiinfra_collector_success", collector="engine") == 0
    assert not any(name.startswith("llm_") and not name.startswith("llm_upstream") for name, _ in samples)
    detailed = await (await client.get("/health/detailed")).json()
    assert detailed["status"] == "degraded"
    engine_health = detailed["collectors"]["engine"]
    assert engine_health["status"] == "failing" and engine_health["upstream_up"] is False
    assert error_part in engine_health["last_error"], engine_health["last_error"]
    health = await client.get("/health")
    assert health.status == 200 and await health.json() == {"status": "ok"}


async def test_connection_refused(aiohttp_client: ClientFactory) -> None:
    client = await sidecar(aiohttp_client, f"http://127.0.0.1:{free_port()}/metrics")
    await _assert_down(client, "Connect")


async def test_timeout(aiohttp_server: ServerFactory, aiohttp_client: ClientFactory) -> None:
    async def slow(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(3)
        return web.Response(text="vllm:num_requests_running 1\n")
    server = await aiohttp_server(upstream_app({"/metrics": slow}))
    client = await sidecar(aiohttp_client, str(server.make_url("/metrics")), scrape_timeout=0.3)
    await _assert_down(client, "timed out")


async def test_http_500(aiohttp_server: ServerFactory, aiohttp_client: ClientFactory) -> None:
    server = await aiohttp_server(upstream_app({"/metrics": text_handler("boom", status=500)}))
    client = await sidecar(aiohttp_client, str(server.make_url("/metrics")))
    await _assert_down(client, "HTTP 500")


async def test_html_instead_of_metrics(aiohttp_server: ServerFactory, aiohttp_client: ClientFactory) -> None:
    html = "<!doctype html><html><body><h1>Welcome to nginx</h1></body></html>\n"
    server = await aiohttp_server(upstream_app({"/metrics": text_handler(html, content_type="text/html")}))
    for engine in ("auto", "vllm"):
        client = await sidecar(aiohttp_client, str(server.make_url("/metrics")), engine=engine)
        await _assert_down(client, "family")


async def test_truncated_body(aiohttp_client: ClientFactory) -> None:
    """A raw server that promises 100 000 bytes, sends part of a line, and hangs up."""
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 100000\r\n\r\n"
                     b'# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running{model_name="m"} 1\n'
                     b'vllm:num_requests_wai')
        await writer.drain()
        writer.close()
    raw = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = raw.sockets[0].getsockname()[1]
    try:
        client = await sidecar(aiohttp_client, f"http://127.0.0.1:{port}/metrics")
        await _assert_down(client, "truncated")
    finally:
        raw.close()
        await raw.wait_closed()


async def test_50mb_body(aiohttp_server: ServerFactory, aiohttp_client: ClientFactory) -> None:
    line = b'vllm:num_requests_running{engine="0",model_name="m"} 1\n' * 1000

    async def huge(request: web.Request) -> web.StreamResponse:  # chunked: no Content-Length to reject early
        resp = web.StreamResponse()
        resp.content_type = "text/plain"
        await resp.prepare(request)
        sent = 0
        try:
            while sent < 50 * 1024 * 1024:
                await resp.write(line)
                sent += len(line)
        except ConnectionError:
            pass
        return resp

    async def huge_declared(request: web.Request) -> web.StreamResponse:
        return web.Response(body=b"x" * (50 * 1024 * 1024), content_type="text/plain")

    server = await aiohttp_server(upstream_app({"/metrics": huge, "/declared": huge_declared}))
    client = await sidecar(aiohttp_client, str(server.make_url("/metrics")))
    await _assert_down(client, "limit")
    client = await sidecar(aiohttp_client, str(server.make_url("/declared")))
    await _assert_down(client, "limit")


async def test_invalid_utf8(aiohttp_server: ServerFactory, aiohttp_client: ClientFactory) -> None:
    body = b'vllm:num_requests_running{model_name="m\xff\xfe"} 1\n'
    server = await aiohttp_server(upstream_app({"/metrics": text_handler(body)}))
    client = await sidecar(aiohttp_client, str(server.make_url("/metrics")))
    await _assert_down(client, "UTF-8")


async def test_duplicate_series_collapsed(aiohttp_server: ServerFactory, aiohttp_client: ClientFactory) -> None:
    """Duplicates do not fail the scrape: the first series wins (documented choice), up stays 1."""
    body = ("# TYPE vllm:num_requests_running gauge\n"
            'vllm:num_requests_running{engine="0",model_name="m"} 1\n'
            'vllm:num_requests_running{model_name="m",engine="0"} 2\n')
    server = await aiohttp_server(upstream_app({"/metrics": text_handler(body)}))
    client = await sidecar(aiohttp_client, str(server.make_url("/metrics")))
    samples, _ = await scrape(client)
    assert get(samples, "llm_upstream_up", engine="vllm") == 1
    assert get(samples, "llm_requests_running", engine="vllm", model="m", dp_rank="0") == 1
    detailed = await (await client.get("/health/detailed")).json()
    assert detailed["collectors"]["engine"]["duplicate_series_last_scrape"] == 1


async def test_malformed_lines_counted(aiohttp_server: ServerFactory, aiohttp_client: ClientFactory) -> None:
    body = ("# TYPE vllm:num_requests_running gauge\n"
            'vllm:num_requests_running{engine="0",model_name="m"} 1\n'
            'vllm:num_requests_running{engine="1",model_name="m" 2\n')
    server = await aiohttp_server(upstream_app({"/metrics": text_handler(body)}))
    client = await sidecar(aiohttp_client, str(server.make_url("/metrics")))
    await scrape(client)
    samples, _ = await scrape(client)
    assert get(samples, "optiinfra_exporter_parse_errors_total", collector="engine") == 2  # a running count
    assert get(samples, "llm_upstream_up", engine="vllm") == 1


async def test_upstream_recovers(aiohttp_client: ClientFactory) -> None:
    port = free_port()
    client = await sidecar(aiohttp_client, f"http://127.0.0.1:{port}/metrics")
    samples, _ = await scrape(client)
    assert get(samples, "llm_upstream_up", engine="unknown") == 0
    runner = web.AppRunner(upstream_app({"/metrics": text_handler(SGLANG_0523)}))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        samples, _ = await scrape(client)
        assert get(samples, "llm_upstream_up", engine="sglang") == 1
    finally:
        await runner.cleanup()


# -- collector isolation and concurrency -------------------------------------------------------------------


class FakeCollector:
    disabled = False

    def __init__(self, name: str, behaviour: str) -> None:
        self.name = name
        self.behaviour = behaviour
        self.closed = False

    async def start(self) -> None:
        if self.behaviour == "start-fails":
            raise OSError("no device")

    async def collect(self) -> list[Part]:
        if self.behaviour == "raises":
            raise RuntimeError("bug")
        if self.behaviour == "hangs":
            await asyncio.sleep(30)
        if self.behaviour == "partial":
            raise CollectorError("gpu 1 lost", partial=[Family("fake_partial", "gauge", "x").add({}, 1)])
        return [Family(f"fake_{self.name}", "gauge", "A fake.").add({}, 1)]

    async def close(self) -> None:
        self.closed = True

    def health(self) -> dict[str, object]:
        if self.behaviour == "raises":
            raise RuntimeError("health bug")
        return {"parse_errors": 3}


async def test_failing_collectors_fail_alone(aiohttp_client: ClientFactory) -> None:
    fakes = [FakeCollector("ok", "ok"), FakeCollector("bad", "raises"), FakeCollector("slow", "hangs"),
             FakeCollector("part", "partial"), FakeCollector("nostart", "start-fails")]
    app = create_app(ExporterConfig(gpu=False, host=False, collector_timeout=0.3), fakes)
    client = await aiohttp_client(app)
    samples, _ = await scrape(client)
    success = {dict(lbl)["collector"]: v for (n, lbl), v in samples.items() if n == "optiinfra_collector_success"}
    assert success == {"ok": 1, "bad": 0, "slow": 0, "part": 0, "nostart": 1}
    assert get(samples, "fake_ok") == 1
    assert get(samples, "fake_partial") == 1
    assert get(samples, "optiinfra_exporter_parse_errors_total", collector="ok") == 3
    assert get(samples, "optiinfra_exporter_parse_errors_total", collector="bad") == 0
    durations = {dict(lbl)["collector"] for (n, lbl) in samples if n == "optiinfra_collector_duration_seconds"}
    assert durations == set(success)
    detailed = await (await client.get("/health/detailed")).json()
    assert detailed["collectors"]["slow"]["last_error"] == "timed out after 0.3s"
    assert detailed["collectors"]["nostart"]["started"] is False
    assert "health bug" in detailed["collectors"]["bad"]["health_error"]
    await client.close()
    assert all(f.closed for f in fakes)


async def test_collector_enabled_for_every_known_collector_and_build_info(aiohttp_client: ClientFactory) -> None:
    """enabled 1/0 for every collector of the registry; a collector that disabled itself (gpu without NVML)
    is enabled 0 and success 0, never success 1; the build is named."""
    from fake_nvml import FakeNvml, NVMLError_LibraryNotFound

    from optiinfra import __version__
    from optiinfra.exporter.collectors.gpu import GpuCollector

    no_nvml = GpuCollector(nvml=FakeNvml([], init_error=NVMLError_LibraryNotFound), hostname="n")
    app = create_app(ExporterConfig(host=False), [no_nvml, FakeCollector("host", "ok")])
    client = await aiohttp_client(app)
    samples, _ = await scrape(client)
    enabled = {dict(lbl)["collector"]: v for (n, lbl), v in samples.items() if n == "optiinfra_collector_enabled"}
    assert enabled == {"engine": 0, "gpu": 0, "host": 1, "logs": 0}
    success = {dict(lbl)["collector"]: v for (n, lbl), v in samples.items() if n == "optiinfra_collector_success"}
    assert success == {"gpu": 0, "host": 1}
    (build,) = [dict(lbl) for (n, lbl) in samples if n == "optiinfra_build_info"]
    assert build["version"] == __version__ and build["python"].count(".") == 2
    detailed = await (await client.get("/health/detailed")).json()
    assert detailed["collectors"]["gpu"]["status"] == "disabled"
    assert "no NVML" in detailed["collectors"]["gpu"]["reason"]


async def test_metrics_gzip_when_accepted(aiohttp_client: ClientFactory) -> None:
    import gzip

    client = await sidecar(aiohttp_client, None)
    plain = await client.get("/metrics", headers={"Accept-Encoding": "identity"}, auto_decompress=False)
    assert "Content-Encoding" not in plain.headers
    body = await plain.read()
    assert b"optiinfra_build_info" in body
    zipped = await client.get("/metrics", headers={"Accept-Encoding": "gzip"}, auto_decompress=False)
    assert zipped.headers["Content-Encoding"] == "gzip"
    assert zipped.headers["Content-Type"] == CONTENT_TYPE
    assert gzip.decompress(await zipped.read()).split(b"optiinfra_collector_duration_seconds")[0] == \
        body.split(b"optiinfra_collector_duration_seconds")[0]


def test_encoder_merges_families_and_labels_only_llm_series() -> None:
    """One encoder: typed families of one name merged (one HELP/TYPE), static labels first on llm_* families
    only (family labels win a clash), pre-rendered text appended unchanged, empty families left out."""
    first = Family("llm_x", "gauge", "X.").add({"model": "m"}, 1)
    again = Family("llm_x", "gauge", "X again.").add({"model": "n", "cluster": "own"}, 2.5)
    text = encode([first, Family("DCGM_FI_DEV_GPU_UTIL", "gauge", "U.").add({"gpu": "0"}, 7),
                   Rendered('llm_y{cluster="eu-1"} 3'), again, Family("llm_empty", "gauge", "E.")],
                  {"cluster": "eu-1", "team": 'a"b'})
    assert text == (
        "# HELP llm_x X.\n# TYPE llm_x gauge\n"
        'llm_x{cluster="eu-1",team="a\\"b",model="m"} 1\n'
        'llm_x{cluster="own",team="a\\"b",model="n"} 2.5\n'
        '# HELP DCGM_FI_DEV_GPU_UTIL U.\n# TYPE DCGM_FI_DEV_GPU_UTIL gauge\nDCGM_FI_DEV_GPU_UTIL{gpu="0"} 7\n'
        'llm_y{cluster="eu-1"} 3\n'
    )
    assert first.samples == [("", {"model": "m"}, 1)]  # the encoder does not change the collectors' families


async def test_concurrent_scrapes(aiohttp_server: ServerFactory, aiohttp_client: ClientFactory) -> None:
    payload = SGLANG_04.read_text()
    server = await aiohttp_server(upstream_app({"/metrics": text_handler(payload)}))
    client = await sidecar(aiohttp_client, str(server.make_url("/metrics")))
    results = await asyncio.gather(*(scrape(client) for _ in range(20)))
    first = {k: v for k, v in results[0][0].items() if "duration" not in k[0]}
    for samples, _ in results:
        assert {k: v for k, v in samples.items() if "duration" not in k[0]} == first
    assert get(first, "llm_requests_waiting", engine="sglang", model="meta-llama/Llama-3.1-8B-Instruct") == 2826


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def gated_upstream(payload: str) -> tuple[Handler, list[int], asyncio.Event]:
    """An upstream /metrics that counts its requests and answers none before the gate is set."""
    count = [0]
    gate = asyncio.Event()

    async def handler(request: web.Request) -> web.StreamResponse:
        count[0] += 1
        await gate.wait()
        return web.Response(text=payload)
    return handler, count, gate


async def until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(30):
        while not condition():
            await asyncio.sleep(0.01)


async def test_scrape_timeout_header_bounds_the_upstream_request(aiohttp_server: ServerFactory,
                                                                 aiohttp_client: ClientFactory) -> None:
    """Prometheus's time-out header (less a margin) ends the engine request when it is sooner than
    --scrape-timeout: an engine answering in 2 s reads up 0 for a 1 s scraper, 1 without the header."""
    async def slow(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(2)
        return web.Response(text=SGLANG_04.read_text())
    server = await aiohttp_server(upstream_app({"/metrics": slow}))
    client = await sidecar(aiohttp_client, str(server.make_url("/metrics")), engine="sglang", scrape_timeout=5.0)
    resp = await client.get("/metrics", headers={TIMEOUT_HEADER: "1"})
    assert resp.status == 200
    samples = parse(await resp.text())
    assert get(samples, "llm_upstream_up", engine="sglang") == 0
    assert get(samples, "optiinfra_collector_success", collector="engine") == 0
    engine = (await (await client.get("/health/detailed")).json())["collectors"]["engine"]
    assert TIMEOUT_HEADER in engine["last_error"]
    samples, _ = await scrape(client)
    assert get(samples, "llm_upstream_up", engine="sglang") == 1


def test_scrape_budget_keeps_a_margin() -> None:
    assert scrape_budget("1") == pytest.approx(0.9)  # 10% below 5 s
    assert scrape_budget("10") == pytest.approx(9.5)  # at most 0.5 s
    assert scrape_budget("0.05") == MIN_SCRAPE_BUDGET
    assert scrape_budget("nan") is None


@pytest.mark.parametrize("header", ["abc", "", "-1", "0", "nan", "inf", "1e9"])
async def test_malformed_scrape_timeout_header_is_ignored(aiohttp_server: ServerFactory,
                                                          aiohttp_client: ClientFactory,
                                                          caplog: pytest.LogCaptureFixture, header: str) -> None:
    server = await aiohttp_server(upstream_app({"/metrics": text_handler(SGLANG_04.read_text())}))
    client = await sidecar(aiohttp_client, str(server.make_url("/metrics")), engine="sglang")
    with caplog.at_level(logging.WARNING, logger="optiinfra.exporter.server"):
        for _ in range(2):
            resp = await client.get("/metrics", headers={TIMEOUT_HEADER: header})
            assert resp.status == 200
            assert get(parse(await resp.text()), "llm_upstream_up", engine="sglang") == 1
    warnings = [r.getMessage() for r in caplog.records
                if r.name == "optiinfra.exporter.server" and r.levelno >= logging.WARNING]
    assert warnings == [f"ignored {TIMEOUT_HEADER} {header!r}: not a number of seconds in (0, 86400]"]  # once
    assert all(r.exc_info is None for r in caplog.records)


async def test_concurrent_scrapes_share_one_upstream_request(aiohttp_server: ServerFactory,
                                                             aiohttp_client: ClientFactory) -> None:
    handler, requests, gate = gated_upstream(SGLANG_04.read_text())
    server = await aiohttp_server(upstream_app({"/metrics": handler}))
    client = await sidecar(aiohttp_client, str(server.make_url("/metrics")), engine="sglang")
    scrapes = [asyncio.create_task(scrape(client)) for _ in range(8)]
    await until(lambda: requests[0] > 0)
    await asyncio.sleep(0.3)  # the other scrapes reach the sidecar meanwhile (each would send its own request)
    gate.set()
    for samples, _ in await asyncio.gather(*scrapes):
        assert get(samples, "llm_upstream_up", engine="sglang") == 1
        assert get(samples, "llm_requests_waiting", engine="sglang", model="meta-llama/Llama-3.1-8B-Instruct") == 2826
    assert requests[0] == 1
    await scrape(client)  # one arriving after the request ended sends a new one: no cache
    assert requests[0] == 2


async def test_a_scrape_that_stops_waiting_leaves_the_shared_request_to_the_others(
        aiohttp_server: ServerFactory) -> None:
    """A scrape cancelled while it waits (its client gone, the server's time limit) never cancels the upstream
    request the other scrapes share."""
    handler, requests, gate = gated_upstream(SGLANG_04.read_text())
    server = await aiohttp_server(upstream_app({"/metrics": handler}))
    collector = EngineCollector(str(server.make_url("/metrics")), engine="sglang")
    await collector.start()
    try:
        first, *others = [asyncio.create_task(collector.collect()) for _ in range(3)]
        await until(lambda: requests[0] > 0)
        await asyncio.sleep(0.3)
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        gate.set()
        for parts in await asyncio.gather(*others):
            assert get(parse(encode(list(parts), {})), "llm_upstream_up", engine="sglang") == 1
        assert requests[0] == 1
    finally:
        await collector.close()


async def test_no_upstream_serves_other_collectors(aiohttp_client: ClientFactory) -> None:
    app = create_app(ExporterConfig(gpu=False, host=False), [FakeCollector("ok", "ok")])
    samples, _ = await scrape(await aiohttp_client(app))
    assert not any(name.startswith("llm_upstream") for name, _ in samples)
    assert get(samples, "fake_ok") == 1


def test_engine_collector_rejects_bad_upstream() -> None:
    with pytest.raises(ValueError, match="http"):
        EngineCollector("ftp://x/metrics")
    with pytest.raises(ValueError, match="engine"):
        EngineCollector("http://x/metrics", engine="llamacpp")
    assert str(EngineCollector("http://x:8000").url) == "http://x:8000/metrics"


# -- promtool on the sidecar's own /metrics ---------------------------------------------------------------

#: promtool 2.42 exits 1 on a parse error and 3 when it only has lint findings. The normalized output must be
#: lint-clean (exit 0). Under --passthrough the accepted findings are the engines' own colon names
#: (``vllm:*``, ``sglang:*``), TGI's bare counter names (``tgi_request_count``) and missing HELP, all
#: re-exported unchanged by design.
ACCEPTED_LINT = ("metric names should not contain ':'", 'counter metrics should have "_total" suffix',
                 "no help text", 'non-histogram and non-summary metrics should not have "_count" suffix')


@pytest.mark.parametrize("passthrough", [False, True])
async def test_promtool_check_metrics(aiohttp_server: ServerFactory, aiohttp_client: ClientFactory,
                                      tmp_path: Path, passthrough: bool) -> None:
    require_binary("promtool")
    payloads = {"vllm": VLLM_FLAG.read_text(), "sglang": SGLANG_0523, "tgi": TGI}
    for engine, payload in payloads.items():
        server = await aiohttp_server(upstream_app({"/metrics": text_handler(payload)}))
        client = await sidecar(aiohttp_client, str(server.make_url("/metrics")), passthrough=passthrough,
                               labels={"cluster": "eu-1"})
        _, text = await scrape(client)
        assert f'engine="{engine}"' in text
        path = tmp_path / f"{engine}.prom"
        path.write_text(text)
        returncode, findings = promtool_check_metrics(text)
        if not passthrough:
            assert returncode == 0 and findings == [], findings
        else:
            assert returncode == 3, findings  # lint findings only, no parse error
            assert findings and all(f.endswith(ACCEPTED_LINT) for f in findings), findings


async def test_static_labels_on_every_llm_series(aiohttp_client: ClientFactory) -> None:
    class Host(FakeCollector):
        async def collect(self) -> list[Part]:
            return [Family("llm_host_load1", "gauge", "L.").add({}, 1.5),
                    Family("llm_log_events_total", "counter", "E.").add(
                        {"source": "kernel", "signature": "nvidia_xid", "xid": "79"}, 2),
                    Family("llm_empty", "gauge", "E.").add({}, 3),
                    Family("other_metric", "gauge", "O.").add({}, 4)]
    app = create_app(ExporterConfig(gpu=False, host=False, labels={"cluster": "eu-1", "team": 'a"b'}),
                     [Host("host", "ok")])
    samples, _ = await scrape(await aiohttp_client(app))
    static = {"cluster": "eu-1", "team": 'a"b'}
    assert get(samples, "llm_host_load1", **static) == 1.5
    assert get(samples, "llm_log_events_total", source="kernel", signature="nvidia_xid", xid="79", **static) == 2
    assert get(samples, "llm_empty", **static) == 3
    assert get(samples, "other_metric") == 4
    assert get(samples, "optiinfra_collector_success", collector="host") == 1


async def test_logs_collector_wired_with_labels(aiohttp_client: ClientFactory, tmp_path: Path) -> None:
    """--log-file turns the logs collector on; its events carry --label like every llm_* series, and its own
    parse-error family merges with the server's."""
    log = tmp_path / "engine.log"
    log.write_bytes((DATA / "logs" / "vllm_cuda_oom__vllm-2140.log").read_bytes())
    config = ExporterConfig(gpu=False, host=False, log_files=((str(log), "engine"),), log_from_start=True,
                            labels={"cluster": "eu-1"})
    client = await aiohttp_client(create_app(config))
    for _ in range(100):
        samples, text = await scrape(client)
        events = {dict(lbl)["signature"]: v for (n, lbl), v in samples.items()
                  if n == "llm_log_events_total" and dict(lbl).get("cluster") == "eu-1"}
        if events.get("cuda_oom"):
            break
        await asyncio.sleep(0.1)
    assert events["cuda_oom"] >= 1, events
    assert get(samples, "optiinfra_collector_success", collector="logs") == 1
    assert get(samples, "optiinfra_exporter_parse_errors_total", collector="logs") == 0
    assert text.count("# TYPE optiinfra_exporter_parse_errors_total") == 1


# -- bounded work (audit finding 7) ------------------------------------------------------------------------


def _many_models(n: int) -> str:
    lines = ["# HELP vllm:num_requests_running Running.", "# TYPE vllm:num_requests_running gauge"]
    lines += [f'vllm:num_requests_running{{engine="0",model_name="m{i}"}} 1' for i in range(n)]
    return "\n".join(lines) + "\n"


async def test_series_limit_fails_the_engine_collector_alone(aiohttp_server: ServerFactory,
                                                             aiohttp_client: ClientFactory) -> None:
    """Above --max-series nothing of the payload is exported, the engine collector fails with an error that
    names the limit, llm_upstream_up stays (1: the engine answered) and the other collectors are untouched."""
    server = await aiohttp_server(upstream_app({"/metrics": text_handler(_many_models(3000))}))
    config = ExporterConfig(upstream=str(server.make_url("/metrics")), gpu=False, host=False, max_series=2000)
    client = await aiohttp_client(create_app(config, [*build_collectors(config), FakeCollector("ok", "ok")]))
    samples, _ = await scrape(client)
    assert get(samples, "llm_upstream_up", engine="vllm") == 1
    assert get(samples, "optiinfra_collector_success", collector="engine") == 0
    assert get(samples, "optiinfra_collector_success", collector="ok") == 1
    assert not any(name == "llm_requests_running" for name, _ in samples)
    detailed = await (await client.get("/health/detailed")).json()
    assert "more than 2000 series (--max-series 2000)" in detailed["collectors"]["engine"]["last_error"]
    within = ExporterConfig(upstream=str(server.make_url("/metrics")), gpu=False, host=False, max_series=3000)
    samples, _ = await scrape(await aiohttp_client(create_app(within)))
    assert get(samples, "optiinfra_collector_success", collector="engine") == 1
    assert sum(name == "llm_requests_running" for name, _ in samples) == 3000


async def test_health_answers_while_a_large_transform_runs(aiohttp_server: ServerFactory,
                                                           aiohttp_client: ClientFactory,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A large payload is normalized off the event loop: /health answers while the transform is running
    (the transform is held until /health has answered, so this is no timing threshold)."""
    from optiinfra.exporter.transform import EngineTransform

    payload = _many_models(20_000)  # about 1.3 MB
    running, release = threading.Event(), threading.Event()
    released_by_test: list[bool] = []
    real = EngineTransform.transform

    def held(self: EngineTransform, text: str) -> Any:
        running.set()
        released_by_test.append(release.wait(20))  # on the event loop, /health could not answer: False
        return real(self, text)

    monkeypatch.setattr(EngineTransform, "transform", held)
    server = await aiohttp_server(upstream_app({"/metrics": text_handler(payload)}))
    client = await sidecar(aiohttp_client, str(server.make_url("/metrics")), engine="vllm", collector_timeout=60)
    metrics = asyncio.ensure_future(client.get("/metrics"))
    try:
        assert await asyncio.to_thread(running.wait, 30), "the transform never started"
        health = await asyncio.wait_for(client.get("/health"), 10)
        assert health.status == 200 and not release.is_set()
    finally:
        release.set()
    resp = await metrics
    assert released_by_test == [True]
    samples = parse(await resp.text())
    assert get(samples, "llm_upstream_up", engine="vllm") == 1
    assert sum(name == "llm_requests_running" for name, _ in samples) == 20_000


# -- llm_upstream_up is always there (audit finding 8) -----------------------------------------------------


async def test_slow_body_reads_up_0_within_the_collector_budget(aiohttp_server: ServerFactory,
                                                                aiohttp_client: ClientFactory) -> None:
    """A body trickled a line at a time never trips a per-read time-out; the one total deadline, below the
    collector budget, still leaves llm_upstream_up 0 in every scrape (scrape timeout above the budget)."""
    async def trickle(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.content_type = "text/plain"
        await resp.prepare(request)
        try:
            for i in range(100):
                await resp.write(f'vllm:num_requests_running{{model_name="m{i}"}} 1\n'.encode())
                await asyncio.sleep(0.05)
        except ConnectionError:
            pass
        return resp

    server = await aiohttp_server(upstream_app({"/metrics": trickle}))
    client = await sidecar(aiohttp_client, str(server.make_url("/metrics")), engine="vllm",
                           scrape_timeout=5.0, collector_timeout=0.6)
    for _ in range(3):
        samples, _ = await scrape(client)
        assert get(samples, "llm_upstream_up", engine="vllm") == 0
        assert get(samples, "optiinfra_collector_success", collector="engine") == 0
    detailed = await (await client.get("/health/detailed")).json()
    assert "timed out" in detailed["collectors"]["engine"]["last_error"]


async def test_slow_info_endpoint_on_the_first_scrape_keeps_upstream_up(aiohttp_server: ServerFactory,
                                                                        aiohttp_client: ClientFactory) -> None:
    """Engine detection reads the info endpoint inside the first scrape: a hanging one is cut to the time left,
    so the scrape still ends inside the budget with its llm_upstream_up."""
    async def hang(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(30)
        return web.json_response({})

    server = await aiohttp_server(upstream_app({"/metrics": text_handler(TGI), "/info": hang}))
    client = await sidecar(aiohttp_client, str(server.make_url("/metrics")), scrape_timeout=5.0,
                           collector_timeout=1.5)
    samples, _ = await scrape(client)
    assert get(samples, "llm_upstream_up", engine="tgi") == 1
    assert get(samples, "optiinfra_collector_success", collector="engine") == 1


@pytest.mark.parametrize("engine", ["auto", "vllm"])
async def test_deeply_nested_info_json_is_refused_and_upstream_stays(aiohttp_server: ServerFactory,
                                                                     aiohttp_client: ClientFactory,
                                                                     engine: str) -> None:
    payload = VLLM_FLAG.read_text()
    server = await aiohttp_server(upstream_app({
        "/metrics": text_handler(payload), "/version": text_handler("[" * 100_000, content_type="application/json"),
        "/v1/models": text_handler("{" * 200_000, content_type="application/json"),
    }))
    client = await sidecar(aiohttp_client, str(server.make_url("/metrics")), engine=engine)
    for _ in range(2):
        samples, _ = await scrape(client)
        assert get(samples, "llm_upstream_up", engine="vllm") == 1
        assert get(samples, "optiinfra_collector_success", collector="engine") == 1


async def test_info_json_sent_in_pieces_is_read_whole(aiohttp_server: ServerFactory,
                                                      aiohttp_client: ClientFactory) -> None:
    async def slow_info(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.content_type = "application/json"
        await resp.prepare(request)
        for piece in ('{"model_id": "x/y", "pad": "', "p" * 100_000, '", "version": "3.3.7"}'):
            await resp.write(piece.encode())
            await asyncio.sleep(0.05)
        return resp

    server = await aiohttp_server(upstream_app({"/metrics": text_handler(TGI), "/info": slow_info}))
    client = await sidecar(aiohttp_client, str(server.make_url("/metrics")), engine="tgi")
    samples, _ = await scrape(client)
    assert get(samples, "llm_engine_info", engine="tgi", model="x/y", version="3.3.7") == 1
