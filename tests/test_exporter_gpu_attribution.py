"""Per-pod GPU attribution: the sidecar sees every GPU of the node (fake NVML) and exports only the GPUs its
engine process was given, read from that process's real /proc/<pid>/environ, or named by --gpu-uuids."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fake_nvml import FakeGpu, FakeNvml
from test_exporter_gpu import samples

from optiinfra.exporter.collectors.base import CollectorError
from optiinfra.exporter.collectors.gpu import GpuCollector
from optiinfra.exporter.collectors.process import EngineProcess
from optiinfra.exporter.exposition import encode

UUIDS = [f"GPU-{i}{i}{i}{i}{i}{i}{i}{i}-aaaa-bbbb-cccc-00000000000{i}" for i in range(4)]

Spawn = Callable[..., subprocess.Popen[bytes]]


def node() -> FakeNvml:
    """One node with 4 GPUs; GPUs 0-1 busy (pod-a), 2-3 nearly idle (pod-b)."""
    return FakeNvml([FakeGpu(uuid=u, minor=i, bus_id=f"00000000:{0x3B + i:02X}:00.0".encode(),
                             util_gpu=95 if i < 2 else 5) for i, u in enumerate(UUIDS)],
                    migs={"MIG-5e5e5e5e-0000-1111-2222-333333333333": 2})


@pytest.fixture
def spawn() -> Iterator[Spawn]:
    """Start a stand-in engine process with the given environment variables (a real /proc/<pid>/environ)."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(**env: str) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], env={"PATH": "/usr/bin", **env})
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        proc.kill()
        proc.wait()


async def exported(nvml: FakeNvml, engine: EngineProcess | None = None, gpu_uuids: str | None = None,
                   hostname: str = "node-1") -> tuple[dict[str, float], GpuCollector]:
    """{UUID: DCGM_FI_DEV_GPU_UTIL} of one scrape (a CollectorError's partial output included)."""
    collector = GpuCollector(nvml=nvml, hostname=hostname, engine=engine, gpu_uuids=gpu_uuids)
    await collector.start()
    try:
        text = encode(await collector.collect())
    except CollectorError as exc:
        text = encode(exc.partial)
    return util_by_uuid(text), collector


def util_by_uuid(text: str) -> dict[str, float]:
    return {dict(labels)["UUID"]: v for (name, labels), v in samples(text).items() if name == "DCGM_FI_DEV_GPU_UTIL"}


async def test_two_pods_on_one_node_each_export_only_their_gpus(spawn: Spawn) -> None:
    nvml = node()
    pod_a = spawn(NVIDIA_VISIBLE_DEVICES=f"{UUIDS[0]},{UUIDS[1]}")
    pod_b = spawn(NVIDIA_VISIBLE_DEVICES=f"{UUIDS[2]},{UUIDS[3]}")
    a, _ = await exported(nvml, EngineProcess(pod_a.pid), hostname="gpu-node-7")
    b, collector_b = await exported(nvml, EngineProcess(pod_b.pid), hostname="gpu-node-7")
    assert a == {UUIDS[0]: 95, UUIDS[1]: 95}
    assert b == {UUIDS[2]: 5, UUIDS[3]: 5}
    text = encode(await collector_b.collect())
    hostnames = {dict(labels)["Hostname"] for (_, labels) in samples(text)}
    assert hostnames == {"gpu-node-7"}  # the node, not the pod
    assert f"NVIDIA_VISIBLE_DEVICES={UUIDS[2]},{UUIDS[3]}" in str(collector_b.health()["exported"])


@pytest.mark.parametrize(("nvidia", "cuda", "expected"), [
    ("all", None, [0, 1, 2, 3]),
    (None, None, [0, 1, 2, 3]),  # bare metal: nothing restricts the engine
    ("none", None, []),
    ("void", None, []),
    ("", None, []),
    ("2,0", None, [0, 2]),  # node NVML indices
    (f"{UUIDS[3]}, {UUIDS[1]}", None, [1, 3]),
    ("1,2,3", "2,0", [1, 3]),  # CUDA indices count within the container's GPUs
    ("1,2,3", "1,7,0", [2]),  # CUDA: an invalid index hides itself and every later entry
    ("1,2,3", "", []),
    (None, "GPU-3333", [3]),  # CUDA takes a UUID prefix
    (None, "3", [3]),
    (f"MIG-GPU-{UUIDS[1][4:]}/1/0", None, [1]),  # MIG, old UUID form: its parent GPU
    ("MIG-5e5e5e5e-0000-1111-2222-333333333333", None, [2]),  # MIG, new form: the parent asked of NVML
    ("3:0", None, [3]),  # MIG by index
])
async def test_visible_devices_forms(spawn: Spawn, nvidia: str | None, cuda: str | None,
                                     expected: list[int]) -> None:
    env = {k: v for k, v in (("NVIDIA_VISIBLE_DEVICES", nvidia), ("CUDA_VISIBLE_DEVICES", cuda)) if v is not None}
    engine = spawn(**env)
    got, collector = await exported(node(), EngineProcess(engine.pid))
    assert sorted(got) == [UUIDS[i] for i in expected]
    assert collector.health()["errors"] == {}


async def test_gpu_uuids_override_the_engine_environment(spawn: Spawn) -> None:
    engine = spawn(NVIDIA_VISIBLE_DEVICES=f"{UUIDS[0]},{UUIDS[1]}")
    got, _ = await exported(node(), EngineProcess(engine.pid), gpu_uuids=UUIDS[3])
    assert sorted(got) == [UUIDS[3]]
    got, _ = await exported(node(), EngineProcess(engine.pid), gpu_uuids="all")
    assert sorted(got) == UUIDS
    got, _ = await exported(node(), None, gpu_uuids=f"1,{UUIDS[2]}")  # no engine process needed
    assert sorted(got) == [UUIDS[1], UUIDS[2]]


async def test_without_engine_process_configured_every_gpu() -> None:
    got, collector = await exported(node())
    assert sorted(got) == UUIDS
    assert "no engine process configured" in str(collector.health()["exported"])


async def test_engine_not_found_exports_no_gpu_and_fails() -> None:
    collector = GpuCollector(nvml=node(), hostname="n", engine=EngineProcess(process_name="no-such-engine-oi"))
    await collector.start()
    with pytest.raises(CollectorError, match="engine process not found") as info:
        await collector.collect()
    assert util_by_uuid(encode(info.value.partial)) == {}


async def test_unreadable_environment_exports_no_gpu_and_says_what_to_do(spawn: Spawn, tmp_path: Path) -> None:
    engine = spawn(NVIDIA_VISIBLE_DEVICES=UUIDS[0])
    (tmp_path / str(engine.pid)).mkdir()  # a /proc without the environ file (as for another user's process)
    collector = GpuCollector(nvml=node(), hostname="n", engine=EngineProcess(engine.pid, proc_root=tmp_path))
    await collector.start()
    with pytest.raises(CollectorError, match="--gpu-uuids") as info:
        await collector.collect()
    assert util_by_uuid(encode(info.value.partial)) == {}


async def test_device_list_in_files_is_refused(spawn: Spawn) -> None:
    engine = spawn(NVIDIA_VISIBLE_DEVICES="/var/run/nvidia-container-devices")
    got, collector = await exported(node(), EngineProcess(engine.pid))
    assert got == {}
    assert "--gpu-uuids" in str(collector.health()["errors"])


async def test_unknown_device_keeps_the_known_ones_and_fails(spawn: Spawn) -> None:
    engine = spawn(NVIDIA_VISIBLE_DEVICES=f"{UUIDS[1]},GPU-deadbeef-0000-0000-0000-000000000000")
    collector = GpuCollector(nvml=node(), hostname="n", engine=EngineProcess(engine.pid))
    await collector.start()
    with pytest.raises(CollectorError, match="GPU-deadbeef") as info:
        await collector.collect()
    assert util_by_uuid(encode(info.value.partial)) == {UUIDS[1]: 95}


async def test_restarted_engine_with_other_gpus_is_read_again(spawn: Spawn, tmp_path: Path) -> None:
    script = tmp_path / "oi-attr-engine"
    script.write_text("import time\ntime.sleep(60)\n")
    first = subprocess.Popen([sys.executable, str(script)], env={"NVIDIA_VISIBLE_DEVICES": UUIDS[0]})
    try:
        collector = GpuCollector(nvml=node(), hostname="n", engine=EngineProcess(process_name="oi-attr-engine"))
        await collector.start()
        assert list(util_by_uuid(encode(await collector.collect()))) == [UUIDS[0]]
    finally:
        first.kill()
        first.wait()
    second = subprocess.Popen([sys.executable, str(script)], env={"NVIDIA_VISIBLE_DEVICES": UUIDS[3]})
    try:
        assert list(util_by_uuid(encode(await collector.collect()))) == [UUIDS[3]]
    finally:
        second.kill()
        second.wait()
