"""``optiinfra report`` against a real Prometheus fed by simulator (LMCache connector) -> exporter (fake NVML
GPUs) with the priced demo-profile rules, and a real receiver holding a plan made from those series."""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from conftest import require_binary
from receiver_kit import TOKEN, alert, eventually, fast_config, notification
from test_grafana_e2e import CONFIG, NAMESPACE, POD, _start

from optiinfra.alertmanager.app import create_app
from optiinfra.demo.orchestrator import Sink
from optiinfra.demo.orchestrator import create_app as create_sink_app
from optiinfra.demo.stack import Stack
from optiinfra.report import svg_chart

DEADLINE_S = 120.0


def _query(base: str, expr: str) -> list[dict[str, Any]]:
    url = f"{base}/api/v1/query?{urllib.parse.urlencode({'query': expr})}"
    with urllib.request.urlopen(url, timeout=5) as resp:
        result: list[dict[str, Any]] = json.loads(resp.read())["data"]["result"]
        return result


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    require_binary("prometheus")
    tmp = tmp_path_factory.mktemp("report")
    stack = Stack(tmp)
    loop = asyncio.new_event_loop()
    try:
        base = loop.run_until_complete(_start(stack, tmp))
        deadline = time.monotonic() + DEADLINE_S
        wanted = ("pod_model:llm_efficiency_score", "pod_model:llm_cost_per_million_tokens:rate1h",
                  'ALERTS{alertstate="firing", bottleneck="kv_cache_pressure"}')
        while time.monotonic() < deadline and not all(_query(base, q) for q in wanted):
            time.sleep(1)
        assert all(_query(base, q) for q in wanted), "the efficiency series or the scenario's alert never appeared"
        yield base
    finally:
        loop.run_until_complete(stack.close())
        loop.close()


async def _report(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "optiinfra.cli", "--log-format", "text", "report", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    return proc.returncode or 0, out.decode(), err.decode()


@pytest.mark.slow
async def test_report_text_and_html_from_a_real_prometheus(prometheus: str, aiohttp_server: Any,
                                                           tmp_path: Path) -> None:
    # A real receiver reading the same Prometheus: a gpu_underutilized plan states its saving.
    sink_server = await aiohttp_server(create_sink_app(Sink()))
    receiver = await aiohttp_server(create_app(fast_config(
        str(sink_server.make_url("")).rstrip("/"), f"sqlite:///{tmp_path}/r.db", token=TOKEN,
        prometheus_url=prometheus)))
    async with aiohttp.ClientSession() as session:
        body = notification(alert("fp-report", bottleneck="gpu_underutilized", alertname="LLMGPUUnderutilized",
                                  namespace=NAMESPACE, pod=POD, model="demo-model"))
        async with session.post(receiver.make_url("/api/v1/alerts"), json=body,
                                headers={"Authorization": f"Bearer {TOKEN}"}) as resp:
            assert resp.status == 200

        async def planned() -> bool:
            async with session.get(receiver.make_url("/api/v1/plans")) as resp:
                return bool((await resp.json())["plans"])
        assert await eventually(planned, timeout=20)

    html_file = tmp_path / "report.html"
    code, out, err = await _report("--prometheus-url", prometheus, "--period", "5m", "--html", str(html_file),
                                   "--receiver-url", str(receiver.make_url("")).rstrip("/"))
    assert code == 0, err
    price = CONFIG.cost.price_of("NVIDIA H100 80GB HBM3")
    assert price is not None
    cost = re.search(r"Fleet cost per million tokens: ([0-9.,]+) USD", out)
    assert cost and float(cost.group(1).replace(",", "")) > 0, out
    assert f"{NAMESPACE}/{POD}" in out.split("Most efficient pods")[1].split("Least efficient pods")[0]
    assert re.search(r"Bottlenecks firing now: [1-9]", out) and "kv_cache_pressure on demo/vllm-0" in out
    gpus = 2  # the fake NVML's two GPUs, attributed to the pod
    saving = f"saves {24 * gpus:g} GPU-h, {24 * gpus * price:g} USD/day"
    assert re.search(rf"gpu_underutilized on {NAMESPACE}/{POD}/\S+: replicas -1 -> \w+ \({re.escape(saving)}\)",
                     out), out

    page = html_file.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and page.count("<svg") == 4 and "No data" not in page
    for external in ("<script", "src=", "href=", "@import", "url("):
        assert external not in page, f"the page is not self-contained: {external}"
    assert "kv_cache_pressure" in page and saving in page and f"{NAMESPACE}/{POD}" in page

    # Without the receiver: said so; a bad URL or period: one line, exit 2.
    code, out, _ = await _report("--prometheus-url", prometheus, "--period", "5m")
    assert code == 0 and "Plans: not read (give --receiver-url)" in out
    for args, message in ((("--prometheus-url", "ftp://x"), "--prometheus-url 'ftp://x': give an http(s) URL"),
                          (("--prometheus-url", prometheus, "--period", "soon"), "--period 'soon':"),
                          (("--prometheus-url", "http://127.0.0.1:9"), "cannot read Prometheus at")):
        code, out, err = await _report(*args)
        assert code == 2 and message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_chart_without_data_says_so_and_scales_to_its_maximum() -> None:
    assert "No data" in svg_chart([])
    chart = svg_chart([("a", [(0.0, 0.0), (60.0, 50.0)])], y_max=100.0)
    assert chart.count("<path") == 1 and ">100<" in chart and ">50<" in chart
