"""Host collector: real psutil values, fake cgroup trees (v1, v2, unlimited), the engine process by pid/name."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from conftest import promtool_check_metrics

from optiinfra.exporter.collectors.host import HostCollector
from optiinfra.exporter.exposition import encode
from optiinfra.metrics import HOST_METRICS

SAMPLE = re.compile(r"^(?P<name>[a-z_:][\w:]*) (?P<value>\S+)$")


def parse(text: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        assert m, line
        out[m["name"]] = float(m["value"])
    return out


def promtool_check(text: str) -> None:
    returncode, findings = promtool_check_metrics(text)
    assert returncode == 0, findings
    assert findings == []


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.fixture
def empty_proc(tmp_path: Path) -> Path:
    """A /proc stand-in without cgroup files: the collector falls back to the cgroup root."""
    root = tmp_path / "proc"
    root.mkdir()
    return root


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A stand-in engine process whose argv[1] is a script named like an engine entry point."""
    script = tmp_path / "oi-test-engine"
    script.write_text("import sys, time\nprint('ready', flush=True)\ntime.sleep(30)\n")
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    proc.stdout.readline()  # started: its memory no longer grows while the test measures it
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


async def collect(collector: HostCollector) -> tuple[dict[str, float], str]:
    await collector.start()
    text = encode(await collector.collect())
    return parse(text), text


async def test_real_host_values_are_sane(tmp_path: Path, empty_proc: Path) -> None:
    collector = HostCollector(cgroup_root=tmp_path / "no-cgroup", proc_root=empty_proc)
    values, text = await collect(collector)
    assert 0 <= values["llm_host_cpu_utilization_ratio"] <= 1
    assert values["llm_host_memory_total_bytes"] == psutil.virtual_memory().total
    assert 0 < values["llm_host_memory_available_bytes"] <= values["llm_host_memory_total_bytes"]
    assert values["llm_host_swap_used_bytes"] >= 0
    assert values["llm_host_load1"] >= 0
    assert values["llm_host_cpus"] == psutil.cpu_count()
    # No engine to look for, no cgroup files: those series are absent, not 0.
    for name in ("llm_host_process_cpu_seconds_total", "llm_host_process_resident_memory_bytes",
                 "llm_host_cgroup_memory_usage_bytes", "llm_host_cgroup_memory_limit_bytes"):
        assert name not in values
    types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))
    assert types == {m.name: m.type for m in HOST_METRICS if m.name in values}
    promtool_check(text)


async def test_cgroup_v2_usage_and_limit(tmp_path: Path, empty_proc: Path) -> None:
    root = tmp_path / "cgroup"
    write(root / "cgroup.controllers", "cpu memory pids\n")
    write(root / "memory.current", "734003200\n")
    write(root / "memory.max", "2147483648\n")
    values, _ = await collect(HostCollector(cgroup_root=root, proc_root=empty_proc))
    assert values["llm_host_cgroup_memory_usage_bytes"] == 734003200
    assert values["llm_host_cgroup_memory_limit_bytes"] == 2147483648


async def test_cgroup_v2_unlimited_has_no_limit(tmp_path: Path, empty_proc: Path) -> None:
    root = tmp_path / "cgroup"
    write(root / "memory.current", "1048576\n")
    write(root / "memory.max", "max\n")
    values, text = await collect(HostCollector(cgroup_root=root, proc_root=empty_proc))
    assert values["llm_host_cgroup_memory_usage_bytes"] == 1048576
    assert "llm_host_cgroup_memory_limit_bytes" not in text


async def test_cgroup_v1_usage_limit_and_unlimited(tmp_path: Path, empty_proc: Path) -> None:
    root = tmp_path / "cgroup"
    write(root / "memory" / "memory.usage_in_bytes", "219979776\n")
    write(root / "memory" / "memory.limit_in_bytes", "4294967296\n")
    values, _ = await collect(HostCollector(cgroup_root=root, proc_root=empty_proc))
    assert values["llm_host_cgroup_memory_usage_bytes"] == 219979776
    assert values["llm_host_cgroup_memory_limit_bytes"] == 4294967296

    write(root / "memory" / "memory.limit_in_bytes", "9223372036854771712\n")  # v1 "no limit"
    values, _ = await collect(HostCollector(cgroup_root=root, proc_root=empty_proc))
    assert values["llm_host_cgroup_memory_usage_bytes"] == 219979776
    assert "llm_host_cgroup_memory_limit_bytes" not in values


async def test_engine_found_by_pid_with_its_own_cgroup(
    tmp_path: Path, engine: subprocess.Popen[bytes]
) -> None:
    proc_root = tmp_path / "proc"
    write(proc_root / str(engine.pid) / "cgroup", "0::/kubepods/pod-a/engine\n")
    write(proc_root / "self" / "cgroup", "0::/kubepods/pod-a/sidecar\n")
    root = tmp_path / "cgroup"
    write(root / "kubepods/pod-a/engine/memory.current", "5000\n")
    write(root / "kubepods/pod-a/engine/memory.max", "8000\n")
    write(root / "kubepods/pod-a/sidecar/memory.current", "7\n")
    collector = HostCollector(engine_pid=engine.pid, cgroup_root=root, proc_root=proc_root)
    values, text = await collect(collector)
    expected = psutil.Process(engine.pid).memory_info().rss
    assert values["llm_host_process_resident_memory_bytes"] == pytest.approx(expected, rel=0.1)
    assert values["llm_host_process_cpu_seconds_total"] >= 0
    # The engine's container, not the sidecar's.
    assert values["llm_host_cgroup_memory_usage_bytes"] == 5000
    assert values["llm_host_cgroup_memory_limit_bytes"] == 8000
    assert collector.health()["engine_pid"] == engine.pid
    promtool_check(text)

    engine.kill()
    engine.wait()
    values, _ = await collect(collector)  # the engine died: its series disappear, no error
    assert "llm_host_process_resident_memory_bytes" not in values
    assert values["llm_host_cgroup_memory_usage_bytes"] == 7  # now this process's cgroup
    assert collector.health()["engine_pid"] is None


async def test_engine_found_by_name(empty_proc: Path, tmp_path: Path, engine: subprocess.Popen[bytes]) -> None:
    collector = HostCollector(process_name="oi-test-engine", cgroup_root=tmp_path, proc_root=empty_proc)
    values, _ = await collect(collector)
    assert collector.health()["engine_pid"] == engine.pid
    assert values["llm_host_process_resident_memory_bytes"] > 0

    # Cached: a second scrape does not search again, and finds the same process.
    values, _ = await collect(collector)
    assert collector.health()["engine_pid"] == engine.pid

    # Restarted engine: the dead one is dropped and the new one found by name.
    engine.kill()
    engine.wait()
    script = tmp_path / "oi-test-engine"
    replacement = subprocess.Popen([sys.executable, str(script)])
    try:
        values, _ = await collect(collector)
        assert collector.health()["engine_pid"] == replacement.pid
        assert values["llm_host_process_resident_memory_bytes"] > 0
    finally:
        replacement.kill()
        replacement.wait()


async def test_engine_by_module_name(tmp_path: Path, empty_proc: Path) -> None:
    pkg = tmp_path / "oitestengine"
    write(pkg / "__init__.py", "")
    write(pkg / "serve.py", "import time\ntime.sleep(30)\n")
    proc = subprocess.Popen([sys.executable, "-m", "oitestengine.serve"], cwd=tmp_path)
    try:
        collector = HostCollector(process_name="oitestengine", cgroup_root=tmp_path, proc_root=empty_proc)
        await collect(collector)
        assert collector.health()["engine_pid"] == proc.pid
    finally:
        proc.kill()
        proc.wait()


async def test_engine_not_found_is_absent(tmp_path: Path, empty_proc: Path) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    for collector in (
        HostCollector(engine_pid=gone.pid, cgroup_root=tmp_path, proc_root=empty_proc),
        HostCollector(process_name="no-such-engine-oi", cgroup_root=tmp_path, proc_root=empty_proc),
    ):
        values, _ = await collect(collector)
        assert "llm_host_process_cpu_seconds_total" not in values
        assert "llm_host_process_resident_memory_bytes" not in values
        assert values["llm_host_memory_total_bytes"] > 0
        assert "no process" in str(collector.health()["engine_process"])


async def test_sidecar_whose_argv_mentions_the_engine_is_not_the_engine(tmp_path: Path, empty_proc: Path) -> None:
    # e.g. `optiinfra exporter --engine oi-test-engine`: the name appears, but not as the program.
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", "--engine", "oi-test-engine"])
    try:
        collector = HostCollector(process_name="oi-test-engine", cgroup_root=tmp_path, proc_root=empty_proc)
        values, _ = await collect(collector)
        assert "llm_host_process_resident_memory_bytes" not in values
    finally:
        proc.kill()
        proc.wait()


async def test_real_cgroup_of_this_machine_when_present() -> None:
    """On this machine's real /sys/fs/cgroup: usage is positive whenever cgroup memory accounting exists."""
    values, text = await collect(HostCollector())
    cgroup = Path("/sys/fs/cgroup")
    if (cgroup / "memory.current").exists() or (cgroup / "memory" / "memory.usage_in_bytes").exists():
        assert values["llm_host_cgroup_memory_usage_bytes"] > 0
    else:
        assert "llm_host_cgroup_memory_usage_bytes" not in values
    promtool_check(text)


async def test_engine_cgroup_outside_our_namespace_falls_back(
    tmp_path: Path, engine: subprocess.Popen[bytes]
) -> None:
    proc_root = tmp_path / "proc"
    write(proc_root / str(engine.pid) / "cgroup", "0::/../engine-container\n")
    write(proc_root / "self" / "cgroup", "0::/\n")
    root = tmp_path / "sys" / "cgroup"
    write(root / "memory.current", "42\n")
    write(root / "memory.max", "100\n")
    write(tmp_path / "sys" / "engine-container" / "memory.current", "999\n")  # must not be read
    values, _ = await collect(HostCollector(engine_pid=engine.pid, cgroup_root=root, proc_root=proc_root))
    assert values["llm_host_cgroup_memory_usage_bytes"] == 42
    assert values["llm_host_cgroup_memory_limit_bytes"] == 100
