"""Host collector: real psutil values, fake cgroup trees (v1, v2, unlimited), the engine process by pid/name;
container memory is the engine's container or absent (never the sidecar's own cgroup)."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from conftest import promtool_check_metrics

from optiinfra.exporter.collectors.base import CollectorError
from optiinfra.exporter.collectors.host import HostCollector
from optiinfra.exporter.collectors.process import EngineProcess
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


def host(pid: int | None = None, name: str | None = None, *, cgroup_root: Path, proc_root: Path) -> HostCollector:
    return HostCollector(EngineProcess(pid, name, proc_root=proc_root), cgroup_root=cgroup_root)


def engine_in_cgroup(tmp_path: Path, pid: int, line: str = "0::/engine\n") -> Path:
    """A /proc stand-in where ``pid`` lives in cgroup ``line`` (the sidecar itself elsewhere)."""
    proc_root = tmp_path / "proc"
    write(proc_root / str(pid) / "cgroup", line)
    write(proc_root / "self" / "cgroup", "0::/sidecar\n")
    return proc_root


@pytest.fixture
def empty_proc(tmp_path: Path) -> Path:
    """A /proc stand-in without cgroup files."""
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


async def collect(collector: HostCollector, *, engine_lost: bool = False) -> tuple[dict[str, float], str]:
    """One collection; ``engine_lost``: the engine it was told about is not there, which fails the collector
    (optiinfra_collector_success 0) while the host series still come (the error's partial)."""
    await collector.start()
    try:
        parts = await collector.collect()
    except CollectorError as exc:
        assert engine_lost, exc
        assert "engine process" in str(exc)
        parts = list(exc.partial)
    else:
        assert not engine_lost, "the engine is gone but the host collector reports success"
    text = encode(parts)
    return parse(text), text


async def test_real_host_values_are_sane(tmp_path: Path, empty_proc: Path) -> None:
    collector = host(cgroup_root=tmp_path / "no-cgroup", proc_root=empty_proc)
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


async def test_cgroup_v2_usage_and_limit(tmp_path: Path, engine: subprocess.Popen[bytes]) -> None:
    root = tmp_path / "cgroup"
    write(root / "engine" / "memory.current", "734003200\n")
    write(root / "engine" / "memory.max", "2147483648\n")
    proc_root = engine_in_cgroup(tmp_path, engine.pid)
    values, _ = await collect(host(engine.pid, cgroup_root=root, proc_root=proc_root))
    assert values["llm_host_cgroup_memory_usage_bytes"] == 734003200
    assert values["llm_host_cgroup_memory_limit_bytes"] == 2147483648


async def test_cgroup_v2_unlimited_has_no_limit(tmp_path: Path, engine: subprocess.Popen[bytes]) -> None:
    root = tmp_path / "cgroup"
    write(root / "engine" / "memory.current", "1048576\n")
    write(root / "engine" / "memory.max", "max\n")
    proc_root = engine_in_cgroup(tmp_path, engine.pid)
    values, text = await collect(host(engine.pid, cgroup_root=root, proc_root=proc_root))
    assert values["llm_host_cgroup_memory_usage_bytes"] == 1048576
    assert "llm_host_cgroup_memory_limit_bytes" not in text


async def test_cgroup_v1_usage_limit_and_unlimited(tmp_path: Path, engine: subprocess.Popen[bytes]) -> None:
    root = tmp_path / "cgroup"
    write(root / "memory" / "engine" / "memory.usage_in_bytes", "219979776\n")
    write(root / "memory" / "engine" / "memory.limit_in_bytes", "4294967296\n")
    proc_root = engine_in_cgroup(tmp_path, engine.pid, "4:memory:/engine\n3:cpu,cpuacct:/engine\n")
    values, _ = await collect(host(engine.pid, cgroup_root=root, proc_root=proc_root))
    assert values["llm_host_cgroup_memory_usage_bytes"] == 219979776
    assert values["llm_host_cgroup_memory_limit_bytes"] == 4294967296

    write(root / "memory" / "engine" / "memory.limit_in_bytes", "9223372036854771712\n")  # v1 "no limit"
    values, _ = await collect(host(engine.pid, cgroup_root=root, proc_root=proc_root))
    assert values["llm_host_cgroup_memory_usage_bytes"] == 219979776
    assert "llm_host_cgroup_memory_limit_bytes" not in values


async def test_no_engine_process_no_container_memory(tmp_path: Path) -> None:
    """Without the engine process the container memory is unknown: no series, not the sidecar's cgroup or the
    cgroup root (which in a private cgroup namespace is the sidecar's own cgroup)."""
    proc_root = tmp_path / "proc"
    write(proc_root / "self" / "cgroup", "0::/\n")
    root = tmp_path / "cgroup"
    write(root / "memory.current", "7\n")
    write(root / "memory.max", "201326592\n")  # the sidecar's 192 Mi limit
    values, _ = await collect(host(cgroup_root=root, proc_root=proc_root))
    assert "llm_host_cgroup_memory_usage_bytes" not in values
    assert "llm_host_cgroup_memory_limit_bytes" not in values
    values, _ = await collect(host(name="no-such-engine-oi", cgroup_root=root, proc_root=proc_root),
                              engine_lost=True)
    assert "llm_host_cgroup_memory_usage_bytes" not in values


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
    collector = host(engine.pid, cgroup_root=root, proc_root=proc_root)
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
    values, _ = await collect(collector, engine_lost=True)  # the engine died: its series disappear, failure
    assert "llm_host_process_resident_memory_bytes" not in values
    assert "llm_host_cgroup_memory_usage_bytes" not in values  # never the sidecar's cgroup (7)
    assert collector.health()["engine_pid"] is None


async def test_engine_found_by_name(empty_proc: Path, tmp_path: Path, engine: subprocess.Popen[bytes]) -> None:
    collector = host(name="oi-test-engine", cgroup_root=tmp_path, proc_root=empty_proc)
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


@pytest.fixture
def engine_tree(tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A stand-in vLLM: ``python -m oitestvllm.serve`` (the API server) with two busy child processes (engine
    core and worker), each burning CPU and holding memory of its own."""
    pkg = tmp_path / "oitestvllm"
    write(pkg / "__init__.py", "")
    write(pkg / "serve.py", (
        "import subprocess, sys, time\n"
        "busy = 'import time\\nb = bytearray(40 << 20)\\n"
        "while time.process_time() < 0.5: pass\\nprint(1, flush=True)\\ntime.sleep(60)\\n'\n"
        "kids = [subprocess.Popen([sys.executable, '-c', busy], stdout=subprocess.PIPE) for _ in range(2)]\n"
        "for k in kids: k.stdout.readline()\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"))
    proc = subprocess.Popen([sys.executable, "-m", "oitestvllm.serve"], cwd=tmp_path, stdout=subprocess.PIPE)
    assert proc.stdout is not None
    proc.stdout.readline()
    try:
        yield proc
    finally:
        for child in psutil.Process(proc.pid).children(recursive=True):
            child.kill()
        proc.kill()
        proc.wait()


async def test_engine_metrics_cover_the_whole_process_tree(
        tmp_path: Path, empty_proc: Path, engine_tree: subprocess.Popen[bytes]) -> None:
    """vLLM's API server, engine core and worker are separate processes: CPU and memory are the tree's."""
    collector = host(name="oitestvllm", cgroup_root=tmp_path, proc_root=empty_proc)
    values, _ = await collect(collector)
    assert collector.health()["engine_pid"] == engine_tree.pid
    top = psutil.Process(engine_tree.pid)
    kids = top.children(recursive=True)
    assert len(kids) == 2
    own = top.cpu_times()
    # the children burnt 0.5 s of CPU each; the API server itself almost nothing
    assert values["llm_host_process_cpu_seconds_total"] >= own.user + own.system + 0.9
    assert values["llm_host_process_resident_memory_bytes"] >= top.memory_info().rss + 2 * (40 << 20)
    assert values["llm_host_process_start_time_seconds"] == pytest.approx(top.create_time())


async def test_engine_given_by_pid_is_followed_after_a_restart(tmp_path: Path, empty_proc: Path) -> None:
    """--engine-pid names the first engine; after a restart (new pid) the engine is found again by the name the
    first one had (its -m module), not lost while the collector says success."""
    pkg = tmp_path / "oitestengine2"
    write(pkg / "__init__.py", "")
    write(pkg / "serve.py", "import time\nprint('ready', flush=True)\ntime.sleep(30)\n")

    def start() -> subprocess.Popen[bytes]:
        proc = subprocess.Popen([sys.executable, "-m", "oitestengine2.serve", "--port", "1"], cwd=tmp_path,
                                stdout=subprocess.PIPE)
        assert proc.stdout is not None
        proc.stdout.readline()
        return proc

    first = start()
    collector = host(first.pid, cgroup_root=tmp_path, proc_root=empty_proc)
    values, _ = await collect(collector)
    assert collector.health()["engine_pid"] == first.pid
    first.kill()
    first.wait()
    values, _ = await collect(collector, engine_lost=True)
    assert "llm_host_process_cpu_seconds_total" not in values
    second = start()
    try:
        values, _ = await collect(collector)
        assert collector.health()["engine_pid"] == second.pid
        assert values["llm_host_process_start_time_seconds"] == pytest.approx(psutil.Process(second.pid).create_time())
    finally:
        second.kill()
        second.wait()


async def test_engine_by_module_name(tmp_path: Path, empty_proc: Path) -> None:
    pkg = tmp_path / "oitestengine"
    write(pkg / "__init__.py", "")
    write(pkg / "serve.py", "import time\ntime.sleep(30)\n")
    proc = subprocess.Popen([sys.executable, "-m", "oitestengine.serve"], cwd=tmp_path)
    try:
        collector = host(name="oitestengine", cgroup_root=tmp_path, proc_root=empty_proc)
        await collect(collector)
        assert collector.health()["engine_pid"] == proc.pid
    finally:
        proc.kill()
        proc.wait()


async def test_engine_not_found_is_absent(tmp_path: Path, empty_proc: Path) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    for collector in (
        host(gone.pid, cgroup_root=tmp_path, proc_root=empty_proc),
        host(name="no-such-engine-oi", cgroup_root=tmp_path, proc_root=empty_proc),
    ):
        values, _ = await collect(collector, engine_lost=True)
        assert "llm_host_process_cpu_seconds_total" not in values
        assert "llm_host_process_resident_memory_bytes" not in values
        assert values["llm_host_memory_total_bytes"] > 0
        assert "no process" in str(collector.health()["engine_process"])


async def test_sidecar_whose_argv_mentions_the_engine_is_not_the_engine(tmp_path: Path, empty_proc: Path) -> None:
    # e.g. `optiinfra exporter --engine oi-test-engine`: the name appears, but not as the program.
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", "--engine", "oi-test-engine"])
    try:
        collector = host(name="oi-test-engine", cgroup_root=tmp_path, proc_root=empty_proc)
        values, _ = await collect(collector, engine_lost=True)
        assert "llm_host_process_resident_memory_bytes" not in values
    finally:
        proc.kill()
        proc.wait()


async def test_real_cgroup_of_a_real_process_on_this_machine(engine: subprocess.Popen[bytes]) -> None:
    """The real /proc and /sys/fs/cgroup: a process of this machine gets its own cgroup's memory (v1 or v2,
    whichever this machine has), found at the path its /proc/<pid>/cgroup names."""
    collector = host(engine.pid, cgroup_root=Path("/sys/fs/cgroup"), proc_root=Path("/proc"))
    values, text = await collect(collector)
    lines = (Path("/proc") / str(engine.pid) / "cgroup").read_text().splitlines()
    paths = {line.split(":", 2)[2] for line in lines
             if line.startswith("0::") or "memory" in line.split(":", 2)[1].split(",")}
    if not any((Path("/sys/fs/cgroup") / sub / p.lstrip("/") / f).exists() for p in paths
               for sub, f in (("", "memory.current"), ("memory", "memory.usage_in_bytes"))):
        pytest.skip("no cgroup memory accounting visible on this machine")
    assert values["llm_host_cgroup_memory_usage_bytes"] > 0
    assert any(p.lstrip("/") in str(collector.health()["cgroup"]) for p in paths)
    promtool_check(text)


async def test_engine_cgroup_outside_our_namespace_read_through_its_root(
    tmp_path: Path, engine: subprocess.Popen[bytes]
) -> None:
    """Kubernetes with private cgroup namespaces: the engine's cgroup shows as /../x from the sidecar; its
    memory files are the root of the engine's own /sys/fs/cgroup (/proc/<pid>/root), accepted only when that
    cgroup lists the engine; the sidecar's own cgroup (42) is never read."""
    proc_root = engine_in_cgroup(tmp_path, engine.pid, "0::/../engine-container\n")
    root = tmp_path / "sys" / "cgroup"
    write(root / "memory.current", "42\n")
    write(root / "memory.max", "100\n")
    write(tmp_path / "sys" / "engine-container" / "memory.current", "999\n")  # must not be read
    theirs = proc_root / str(engine.pid) / "root" / "sys" / "fs" / "cgroup"
    write(theirs / "memory.current", "5000\n")
    write(theirs / "memory.max", "34359738368\n")
    write(theirs / "cgroup.procs", "1\n")  # not the engine's cgroup (e.g. the host's root): refused
    values, _ = await collect(host(engine.pid, cgroup_root=root, proc_root=proc_root))
    assert "llm_host_cgroup_memory_usage_bytes" not in values

    write(theirs / "cgroup.procs", f"1\n{engine.pid}\n")
    values, _ = await collect(host(engine.pid, cgroup_root=root, proc_root=proc_root))
    assert values["llm_host_cgroup_memory_usage_bytes"] == 5000
    assert values["llm_host_cgroup_memory_limit_bytes"] == 34359738368
