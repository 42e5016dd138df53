"""End to end: simulator (kv_cache_pressure) -> exporter -> real Prometheus with the generated rules (demo
profile). Every query of the fleet, instance, bottlenecks and SLO dashboards must return data from Prometheus's
HTTP API, except panels and queries the generator marks as needing a container memory limit or the receiver.
Every label variable must list values. The exporter tails an engine log and a kernel log holding one line of each
failure signature the taxonomy's log-based bottlenecks read, so the log-signature panels are checked too.

This machine has no GPU: the exporter's GPU collector reads two GPUs from the fake NVML binding the exporter's
own tests use (``tests/fake_nvml.py``, put in place of ``pynvml`` for the exporter process only), so the
panels marked ``needs="gpu"`` and the whole GPU dashboard are checked too, through the real collector, the real
dcgm-exporter names and the rules' GPU recording rules.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import free_port, require_binary

from optiinfra.config import Config
from optiinfra.demo.stack import Stack, optiinfra_command, prometheus_config, start_prometheus
from optiinfra.grafana import dashboards as d
from optiinfra.grafana.efficiency import efficiency
from optiinfra.grafana.lint import substitute
from optiinfra.grafana.model import Dashboard, Variable
from optiinfra.rules.generate import RULES_FILE
from optiinfra.rules.generate import generate as generate_rules

DEADLINE_S = 75.0
#: Grafana sets $__rate_interval to at least 4 scrape intervals; the test scrapes every second.
RATE_INTERVAL = "10s"
#: What this setup provides (GPUs through the fake NVML, log signatures from the logs below, a GPU-hour price in
#: the config); not a cgroup memory limit, not the receiver.
CHECKED_NEEDS = (None, "gpu", "log signature", "price")
#: The config of the rules and dashboards: the defaults plus a price for the fake GPUs' model.
CONFIG = Config.model_validate({"cost": {"gpu_hour_prices": {"NVIDIA H100 80GB HBM3": 4.0}}})
NAMESPACE, POD = "demo", "vllm-0"
ENGINE_LOG = """\
INFO 11-22 03:00:00 [core.py:93] Initializing a V1 LLM engine (v0.11.0) with config: model='demo-model'
ERROR 11-22 03:00:05 [core.py:700] torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. \
GPU 0 has a total capacity of 79.19 GiB of which 1.06 GiB is free.
ERROR 11-22 03:00:06 [core.py:700] RuntimeError: Engine core initialization failed. See root cause above.
[rank0]:[E1122 03:01:00.000000 1 ProcessGroupNCCL.cpp:616] [Rank 0] Watchdog caught collective operation \
timeout: WorkNCCL(SeqNum=42, OpType=ALLREDUCE, NumelIn=1, NumelOut=1, Timeout(ms)=600000) ran for 600001 ms.
RuntimeError: CUDA error: uncorrectable ECC error encountered
"""
KERNEL_LOG = """\
[ 1234.567890] NVRM: Xid (PCI:0000:3b:00): 79, pid=1234, GPU has fallen off the bus.
[ 1300.000000] python3 invoked oom-killer: gfp_mask=0x100cca(GFP_HIGHUSER_MOVABLE), order=0, oom_score_adj=0
[ 1300.000100] oom-kill:constraint=CONSTRAINT_NONE,nodemask=(null),cpuset=/,mems_allowed=0,global_oom,task=python3,\
pid=999,uid=0
[ 1300.000200] Out of memory: Killed process 999 (python3) total-vm:123456kB, anon-rss:65432kB, file-rss:0kB
[ 1400.000000] watchdog: BUG: soft lockup - CPU#3 stuck for 22s! [python3:999]
"""
TESTS = Path(__file__).resolve().parent
#: ``import pynvml`` in the exporter process gets the fake binding with two GPUs and one pending Xid event.
FAKE_PYNVML = f"""
import sys
sys.path.insert(0, {str(TESTS)!r})
from fake_nvml import FakeGpu, fake

_nvml = fake([FakeGpu("GPU-e2e-0", integrate_power=True),
              FakeGpu("GPU-e2e-1", minor=1, bus_id=b"00000000:3C:00.0", util_gpu=12, integrate_power=True)])
_nvml.raise_xid(1, 79)
sys.modules[__name__] = _nvml
"""


def _get(url: str, timeout: float = 5.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return json.loads(resp.read().decode())


async def _start(stack: Stack, tmp: Path) -> str:
    """simulator -> exporter (fake NVML, tailed logs) -> Prometheus with the demo-profile rules; its URL."""
    sim_port, exp_port, prom_port = free_port(), free_port(), free_port()
    sim = await stack.spawn("simulator", optiinfra_command(
        "simulate", "--engine", "vllm", "--scenario", "kv_cache_pressure", "--listen", f"127.0.0.1:{sim_port}",
        "--time-scale", "10", "--kv-connector", "LMCacheConnectorV1"))
    shim = tmp / "fake-pynvml"
    shim.mkdir()
    (shim / "pynvml.py").write_text(FAKE_PYNVML, encoding="utf-8")
    pythonpath = os.pathsep.join(filter(None, (str(shim), os.environ.get("PYTHONPATH"))))
    (tmp / "engine.log").write_text(ENGINE_LOG, encoding="utf-8")
    (tmp / "kern.log").write_text(KERNEL_LOG, encoding="utf-8")
    exporter = await stack.spawn("exporter", optiinfra_command(
        "exporter", "--upstream", f"http://127.0.0.1:{sim_port}/metrics", "--listen", f"127.0.0.1:{exp_port}",
        "--engine-pid", str(sim.process.pid), "--log-file", f"{tmp / 'engine.log'}:engine",
        "--log-file", f"{tmp / 'kern.log'}:kernel", "--log-from-start"), env={"PYTHONPATH": pythonpath})
    await stack.wait_ready(sim, f"http://127.0.0.1:{sim_port}/metrics")
    await stack.wait_ready(exporter, f"http://127.0.0.1:{exp_port}/metrics")
    rules = generate_rules(CONFIG, "demo")
    (tmp / RULES_FILE).parent.mkdir(parents=True, exist_ok=True)
    (tmp / RULES_FILE).write_text(rules[RULES_FILE], encoding="utf-8")
    config = prometheus_config([(f"127.0.0.1:{exp_port}", {"namespace": NAMESPACE, "pod": POD})],
                               [tmp / RULES_FILE], None)
    await start_prometheus(stack, config, prom_port)
    return f"http://127.0.0.1:{prom_port}"


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    require_binary("prometheus")
    tmp = tmp_path_factory.mktemp("grafana-e2e")
    stack = Stack(tmp)
    loop = asyncio.new_event_loop()  # the module-scoped stack lives on its own loop, closed after the module
    try:
        yield loop.run_until_complete(_start(stack, tmp))
    finally:
        loop.run_until_complete(stack.close())
        loop.close()


def _expected(dashboard: Dashboard) -> list[tuple[str, str]]:
    """(where, PromQL with variables substituted) of every query that must return data."""
    out = []
    for panel in dashboard.panels():
        if panel.needs not in CHECKED_NEEDS:
            continue
        for i, target in enumerate(panel.targets):
            if target.needs not in CHECKED_NEEDS:
                continue
            expr = substitute(target.expr.replace("$__rate_interval", RATE_INTERVAL))
            out.append((f"{dashboard.uid}: {panel.title!r} query {chr(ord('A') + i)}", expr))
    for annotation in dashboard.annotations:
        if annotation.needs in CHECKED_NEEDS:
            out.append((f"{dashboard.uid}: annotation {annotation.name!r}",
                        substitute(annotation.expr.replace("$__rate_interval", RATE_INTERVAL))))
    return out


def _has_data(base: str, expr: str) -> bool:
    body = _get(f"{base}/api/v1/query?{urllib.parse.urlencode({'query': expr})}")
    assert body["status"] == "success", f"{expr}: {body}"
    return bool(body["data"]["result"])


def _variable_values(base: str, variable: Variable) -> list[str]:
    selector = substitute(variable.metric)
    query = urllib.parse.urlencode({"match[]": selector})
    label = variable.source_label or variable.name
    values: list[str] = _get(f"{base}/api/v1/label/{label}/values?{query}")["data"]
    return values


@pytest.mark.slow
def test_every_panel_query_returns_data(prometheus: str) -> None:
    config = CONFIG
    # The SLO dashboard too, for the SLOs that apply to the simulated engine (the others have no traffic).
    vllm_slos = config.model_copy(update={"slos": [s for s in config.slos if "vllm" in s.applies_to()]})
    boards = (d.fleet(config), d.instance(config), d.bottlenecks(config), d.slos(vllm_slos), d.gpus(config),
              efficiency(config))
    pending = [q for board in boards for q in _expected(board)]
    assert len(pending) > 60
    deadline = time.monotonic() + DEADLINE_S
    while pending and time.monotonic() < deadline:
        pending = [(where, expr) for where, expr in pending if not _has_data(prometheus, expr)]
        if pending:
            time.sleep(1)
    assert not pending, "queries without data:\n" + "\n".join(f"{w}: {e}" for w, e in pending)
    # The label variables list the demo pod's values. The demo has one Prometheus and no cluster label:
    # $cluster lists nothing and stays at All (".*", which the queries above were run with).
    for board in boards:
        for variable in board.variables:
            values = _variable_values(prometheus, variable)
            if variable.name == "cluster":
                assert values == [], values
                continue
            assert values, f"{board.uid}: variable ${variable.name} lists nothing"
            if variable.name in ("namespace", "pod"):
                assert values == [NAMESPACE if variable.name == "namespace" else POD]


def test_kv_pressure_shows_on_the_bottleneck_row(prometheus: str) -> None:
    """The scenario's bottleneck is visible where the dashboards say: its alert fires and its signal is above
    the threshold line the dashboard draws (the same number the alert uses)."""
    config = Config()
    board = d.bottlenecks(config).to_dict()
    firing = next(p for p in board["panels"] if p["title"] == "kv_cache_pressure: firing")
    signal = next(p for p in board["panels"] if p["title"] == "kv_cache_pressure: signal")
    line = signal["fieldConfig"]["defaults"]["thresholds"]["steps"][1]["value"]
    assert line == config.threshold("kv_cache_pressure", "kv_usage")
    deadline = time.monotonic() + DEADLINE_S
    count = 0.0
    while time.monotonic() < deadline:
        body = _get(f"{prometheus}/api/v1/query?"
                    + urllib.parse.urlencode({"query": substitute(firing["targets"][0]["expr"])}))
        count = float(body["data"]["result"][0]["value"][1]) if body["data"]["result"] else 0.0
        if count >= 1:
            break
        time.sleep(1)
    assert count >= 1, "LLMKVCachePressure never fired on the bottlenecks dashboard"
    peak = f"max_over_time(({substitute(signal['targets'][0]['expr'])})[30s:1s])"
    body = _get(f"{prometheus}/api/v1/query?" + urllib.parse.urlencode({"query": peak}))
    assert max(float(r["value"][1]) for r in body["data"]["result"]) >= line


def test_log_signatures_reach_their_bottleneck_rows(prometheus: str) -> None:
    """The log panels have data because the signatures were counted, not only because the counter exists."""
    from optiinfra import taxonomy as tx

    counted = {b.id: b for b in tx.BOTTLENECKS if b.log_signatures}
    missing: list[str] = []
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        missing = []
        for bid, b in counted.items():
            expr = f'sum(llm_log_events_total{{signature=~"{"|".join(b.log_signatures)}"}})'
            result = _get(f"{prometheus}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))["data"]["result"]
            if not result or float(result[0]["value"][1]) < 1:
                missing.append(bid)
        if not missing:
            break
        time.sleep(1)
    assert not missing, f"no log events counted for {missing}"
