"""LogCollector: background tailing, exposition (promtool-clean), health, start-up hang, a 100 MB backlog."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import promtool_check_metrics
from logcorpus import rotation_storm

from optiinfra.exporter.collectors.base import CollectorError
from optiinfra.exporter.collectors.logs import LogCollector
from optiinfra.exporter.exposition import encode
from optiinfra.exporter.logsig import KNOWN_XIDS

OOM = ("(EngineCore_DP0 pid=7) ERROR 03-13 09:00:43 [core.py:330] torch.OutOfMemoryError: CUDA out of memory. "
       "Tried to allocate 1.16 GiB. GPU 0 has a total capacity of 79.19 GiB of which 1.17 GiB is free.\n")
WATCHDOG = ("[rank{r}]:[E321 02:07:08.408271257 ProcessGroupNCCL.cpp:607] [Rank {r}] Watchdog caught collective "
            "operation timeout: WorkNCCL(SeqNum={s}, OpType=ALLREDUCE, NumelIn=4, NumelOut=4, Timeout(ms)=600000) "
            "ran for 600060 milliseconds before timing out.\n")
IB = ("node-2:5776:5902 [0] transport/net_ib.cc:1296 NCCL WARN NET/IB : Got completion from peer 10.2.0.5<33092> "
      "with error 12, opcode 0, len 0, vendor err 129 (Recv)\n")
XID = "[{t}] NVRM: Xid (PCI:0000:41:00): {x}, pid='<unknown>', name=<unknown>, Graphics Exception\n"
NORMAL = ('(APIServer pid=1) INFO:     10.0.0.1:5000 - "POST /v1/chat/completions HTTP/1.1" 200 OK\n'
          "(APIServer pid=1) INFO 03-13 09:00:43 [loggers.py:123] Engine 000: Avg prompt throughput: 1.0 tokens/s, "
          "Running: 3 reqs, Waiting: 0 reqs, GPU KV cache usage: 12.0%, Prefix cache hit rate: 40.0%\n")


def _append(path: Path, text: str) -> None:
    with path.open("a", encoding="utf-8") as f:
        f.write(text)


async def _until(check: Callable[[], bool], what: str, timeout: float = 120.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def _sample(text: str, series: str) -> float:
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{series} not in output")


async def test_counts_appended_lines_and_renders_promtool_clean_output(tmp_path: Path) -> None:
    engine, kernel = tmp_path / "engine.log", tmp_path / "kern.log"
    engine.write_text(OOM)  # already there when the collector starts: not counted
    kernel.write_text("")
    c = LogCollector([(engine, "engine"), (kernel, "kernel")], poll_interval=0.02)
    await c.start()
    try:
        await _until(lambda: c.rounds >= 2, "the files opened")
        _append(engine, NORMAL + OOM + NORMAL * 3 + WATCHDOG.format(r=0, s=5) + WATCHDOG.format(r=1, s=5) + IB)
        _append(kernel, XID.format(t="100.000001", x=13) + XID.format(t="100.000002", x=13)
                + XID.format(t="200.0", x=79) + XID.format(t="300.0", x=201) + XID.format(t="400.0", x=1234))
        await _until(lambda: sum(c.counts().values()) == 7, "seven events")
        text = encode(await c.collect())
    finally:
        await c.close()
    assert c.counts() == {
        ("engine", "cuda_oom", ""): 1, ("engine", "nccl_watchdog_timeout", ""): 2, ("engine", "nccl_ib_error", ""): 1,
        ("kernel", "nvidia_xid", "13"): 1, ("kernel", "nvidia_xid", "79"): 1, ("kernel", "nvidia_xid", "201"): 1,
    }
    assert _sample(text, 'llm_log_events_total{source="engine",signature="cuda_oom"}') == 1
    assert _sample(text, 'llm_log_events_total{source="kernel",signature="nvidia_xid",xid="13"}') == 1
    assert _sample(text, 'llm_log_events_total{source="kernel",signature="nvidia_xid",xid="201"}') == 1  # unknown
    assert 'xid="1234"' not in text  # not an Xid line: Xid numbers have at most three digits
    # every signature is exported from the start (0), Xids of the catalogue too; no empty xid label
    assert _sample(text, 'llm_log_events_total{source="engine",signature="startup_hang"}') == 0
    assert _sample(text, 'llm_log_events_total{source="kernel",signature="oom_kill"}') == 0
    assert _sample(text, 'llm_log_events_total{source="kernel",signature="nvidia_xid",xid="48"}') == 0
    assert 'xid=""' not in text
    assert sum('signature="nvidia_xid"' in ln for ln in text.splitlines()) == len(KNOWN_XIDS) + 1
    assert all('xid="' in ln for ln in text.splitlines() if 'signature="nvidia_xid"' in ln)
    assert not any("xid=" in ln for ln in text.splitlines() if "nvidia_xid" not in ln)
    assert c.health()["parse_errors"] == 0
    returncode, findings = promtool_check_metrics(text)
    assert returncode == 0, findings


async def test_missing_file_shows_waiting_then_is_read_from_its_start(tmp_path: Path) -> None:
    log = tmp_path / "engine.log"
    c = LogCollector([(log, "engine")], poll_interval=0.02)
    await c.start()
    try:
        await _until(lambda: c.rounds >= 2, "two polling rounds")
        assert c.health()["streams"][0]["state"] == "waiting"  # type: ignore[index]
        assert c.health()["running"] is True
        log.write_text(OOM)
        await _until(lambda: c.counts() == {("engine", "cuda_oom", ""): 1}, "the OOM of the late file")
        assert c.health()["streams"][0]["state"] == "following"  # type: ignore[index]
    finally:
        await c.close()
    assert c.health()["running"] is False


def test_startup_hang_when_no_ready_line_in_time(tmp_path: Path) -> None:
    now = [1000.0]
    log = tmp_path / "engine.log"
    c = LogCollector([(log, "engine")], startup_timeout=600, clock=lambda: now[0])
    c.poll_once()  # missing: waiting
    log.write_text("(APIServer pid=1) DEBUG 08-09 20:55:10 [v1/engine/utils.py:1262] Waiting for 1 local, 0 remote "
                   "core engine proc(s) to start.\n")
    now[0] = 1010.0
    c.poll_once()  # appeared: the engine is starting
    assert c.health()["startup"] == "starting"  # type: ignore[index]
    now[0] = 1609.0
    c.poll_once()
    assert c.counts() == {}
    now[0] = 1610.0
    c.poll_once()
    now[0] = 9999.0
    c.poll_once()
    assert c.counts() == {("engine", "startup_hang", ""): 1}
    # the next start comes up in time
    _append(log, "(EngineCore_DP0 pid=2) INFO 10-25 13:08:43 [core.py:77] Initializing a V1 LLM engine (v0.11.0)\n")
    c.poll_once()
    now[0] = 10_100.0
    _append(log, "(APIServer pid=2) INFO:     Application startup complete.\n")
    c.poll_once()
    now[0] = 99_999.0
    c.poll_once()
    assert c.counts() == {("engine", "startup_hang", ""): 1}
    assert c.health()["startup"] == "ready"  # type: ignore[index]


def test_one_start_up_timer_for_all_logs_of_the_engine(tmp_path: Path) -> None:
    now = [0.0]
    core, api = tmp_path / "core.log", tmp_path / "api.log"
    core.write_text("")
    api.write_text("")
    c = LogCollector([(core, "engine"), (api, "engine")], startup_timeout=600, clock=lambda: now[0])
    c.poll_once()
    _append(core, "(EngineCore_DP0 pid=2) INFO 10-25 13:08:43 [core.py:77] Initializing a V1 LLM engine (v0.11)\n")
    c.poll_once()
    now[0] = 100.0
    _append(api, "(APIServer pid=1) INFO:     Application startup complete.\n")
    c.poll_once()
    now[0] = 10_000.0
    c.poll_once()
    assert c.counts() == {} and c.health()["startup"] == "ready"


def test_a_running_engine_log_arms_no_startup_timer(tmp_path: Path) -> None:
    now = [0.0]
    log = tmp_path / "engine.log"
    log.write_text(NORMAL)
    c = LogCollector([(log, "engine")], startup_timeout=600, clock=lambda: now[0])
    c.poll_once()
    _append(log, NORMAL * 10)
    now[0] = 10_000.0
    c.poll_once()
    assert c.counts() == {}


def test_over_long_lines_are_parse_errors(tmp_path: Path) -> None:
    log = tmp_path / "engine.log"
    log.write_text("")
    c = LogCollector([(log, "engine")], max_line_bytes=1000)
    c.poll_once()
    _append(log, "x" * 5000 + "\n" + OOM + "y" * 950 + IB + IB)
    c.poll_once()
    # the first IB line is beyond the cut of its over-long line
    assert c.counts() == {("engine", "cuda_oom", ""): 1, ("engine", "nccl_ib_error", ""): 1}
    assert c.health()["parse_errors"] == 2


def test_rotation_and_copytruncate_through_the_collector(tmp_path: Path) -> None:
    log = tmp_path / "engine.log"
    log.write_text("")
    c = LogCollector([(log, "engine")])
    c.poll_once()
    _append(log, IB + NORMAL + IB[:30])
    c.poll_once()
    _append(log, IB[30:] + NORMAL)
    log.rename(tmp_path / "engine.log.1")
    log.write_text(IB)
    c.poll_once()
    _append(log, NORMAL * 2 + IB)
    c.poll_once()
    with log.open("r+") as f:
        f.truncate(0)
    _append(log, IB)
    c.poll_once()
    c.poll_once()
    assert c.counts() == {("engine", "nccl_ib_error", ""): 5}
    health = c.health()["streams"][0]  # type: ignore[index]
    assert health["rotations"] == 1 and health["truncations"] == 1


async def test_hundred_megabyte_backlog_from_start(tmp_path: Path) -> None:
    """100 MB read with from_start in the background: exact counts, and the event loop keeps running."""
    block_lines = NORMAL * 3000 + OOM + NORMAL * 1000 + WATCHDOG.format(r=3, s=77) + NORMAL * 1000 + IB
    block = block_lines.encode()
    repeats = 100 * 1024 * 1024 // len(block) + 1
    log = tmp_path / "big.log"
    with log.open("wb") as f:
        for _ in range(repeats):
            f.write(block)
    total_lines = block_lines.count("\n") * repeats
    assert log.stat().st_size >= 100 * 1024 * 1024
    c = LogCollector([(log, "engine")], from_start=True, poll_interval=0.02)
    ticks = 0

    async def heartbeat() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    beat = asyncio.create_task(heartbeat())
    await c.start()
    try:
        await _until(lambda: c.health()["streams"][0]["lines"] == total_lines  # type: ignore[index]
                     and sum(c.counts().values()) == 3 * repeats, "the whole file")
        scraped = encode(await c.collect())
    finally:
        await c.close()
        beat.cancel()
    assert c.counts() == {
        ("engine", "cuda_oom", ""): repeats,
        ("engine", "nccl_watchdog_timeout", ""): repeats,
        ("engine", "nccl_ib_error", ""): repeats,
    }
    assert f'llm_log_events_total{{source="engine",signature="cuda_oom"}} {repeats}' in scraped
    assert ticks > 1  # the loop ran while the backlog was processed


def test_bad_source_and_duplicate_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="engine, kernel"):
        LogCollector([(tmp_path / "x.log", "syslog")])
    with pytest.raises(ValueError, match="twice"):
        LogCollector([(tmp_path / "x.log", "engine"), (tmp_path / "x.log", "kernel")])


async def test_a_crashed_reader_fails_the_collector_not_the_sidecar(tmp_path: Path) -> None:
    log = tmp_path / "engine.log"
    log.write_text("")
    c = LogCollector([(log, "engine")], poll_interval=0.02)

    def broken(max_bytes: int) -> tuple[list[str], bool]:
        raise RuntimeError("boom")

    c._streams[0].reader.poll = broken  # type: ignore[method-assign]
    await c.start()
    try:
        await _until(lambda: "error" in c.health(), "the failure")
        with pytest.raises(CollectorError, match="boom"):
            await c.collect()
    finally:
        await c.close()


def test_no_streams_collects_nothing() -> None:
    c = LogCollector([])
    assert encode(asyncio.run(c.collect())) == ""
    assert c.name == "logs"


async def test_in_the_sidecar(tmp_path: Path, aiohttp_client) -> None:  # type: ignore[no-untyped-def]
    """Through the sidecar app: /metrics carries the log events (with --label), promtool-clean; health details."""
    from optiinfra.exporter.server import ExporterConfig, create_app

    log = tmp_path / "kern.log"
    log.write_text("")
    collector = LogCollector([(log, "kernel")], poll_interval=0.02)
    config = ExporterConfig(gpu=False, host=False, labels={"cluster": "a"})
    client = await aiohttp_client(create_app(config, collectors=[collector]))
    await _until(lambda: collector.rounds >= 2, "the file opened")
    _append(log, "May 18 19:02:39 kernel: NVRM: Xid (PCI:0000:2b:00): 79, GPU has fallen off the bus.\n")
    await _until(lambda: collector.counts() == {("kernel", "nvidia_xid", "79"): 1}, "the Xid")
    text = await (await client.get("/metrics")).text()
    assert 'llm_log_events_total{cluster="a",source="kernel",signature="nvidia_xid",xid="79"} 1' in text
    assert 'optiinfra_collector_success{collector="logs"} 1' in text
    assert 'optiinfra_exporter_parse_errors_total{collector="logs"} 0' in text
    returncode, findings = promtool_check_metrics(text)
    assert returncode == 0, findings
    details = await (await client.get("/health/detailed")).json()
    assert details["collectors"]["logs"]["streams"][0]["state"] == "following"


# -- hostile paths, stuck reads, rotation storms (audit finding 4) ---------------------------------------------


async def test_a_fifo_among_the_logs_blinds_nothing_and_costs_success(tmp_path: Path) -> None:
    """A FIFO given as a log file is refused (it never blocks the other files), reported through
    optiinfra_collector_success 0 with the reason, and close() does not wait on it."""
    fifo, engine = tmp_path / "fifo.log", tmp_path / "engine.log"
    os.mkfifo(fifo)
    engine.write_text("")
    c = LogCollector([(fifo, "engine"), (engine, "kernel")], poll_interval=0.02)
    await c.start()
    try:
        await _until(lambda: c.rounds >= 2, "two rounds of every stream", timeout=20)
        _append(engine, XID.format(t="1.0", x=79))
        await _until(lambda: c.counts() == {("kernel", "nvidia_xid", "79"): 1}, "the Xid of the other file", 20)
        with pytest.raises(CollectorError, match="not a regular file") as info:
            await c.collect()
        assert 'signature="nvidia_xid",xid="79"} 1' in encode(info.value.partial)
    finally:
        await asyncio.wait_for(c.close(), 10)


async def test_a_stuck_read_stalls_only_its_own_stream(tmp_path: Path) -> None:
    """A read that never returns (a hung network file system) holds its own thread only: the other stream is
    read, the collector reports the stall, and close() leaves the stuck thread behind."""
    stuck_log, engine = tmp_path / "nfs.log", tmp_path / "engine.log"
    stuck_log.write_text("")
    engine.write_text("")
    c = LogCollector([(stuck_log, "engine"), (engine, "engine")], poll_interval=0.02, stall_timeout=0.3,
                     close_timeout=0.2)
    entered, release = threading.Event(), threading.Event()

    def hang(max_bytes: int) -> tuple[list[str], bool]:
        entered.set()
        release.wait(60)
        return [], False

    c._streams[0].reader.poll = hang  # type: ignore[method-assign]
    await c.start()
    try:
        assert await asyncio.to_thread(entered.wait, 20)
        _append(engine, OOM)
        await _until(lambda: c.counts() == {("engine", "cuda_oom", ""): 1}, "the OOM of the other file", 20)
        await asyncio.sleep(0.4)
        with pytest.raises(CollectorError, match="stuck"):
            await c.collect()
        await asyncio.wait_for(c.close(), 10)
    finally:
        release.set()


@pytest.mark.parametrize(("mode", "bound"), [("rename", 0.10), ("copytruncate", 0.30)])
async def test_rotation_storm_loses_a_bounded_share(tmp_path: Path, mode: str, bound: float) -> None:
    """60 rotations, one every 50 ms, 10 lines each, with the default poll intervals. A rename storm loses only
    files rotated away twice between polls; copytruncate loses the lines written after the last poll before a
    truncation. Bounds: 10 % and 30 % lost (main lost about 90 %); bench/logs prints the measured shares."""
    log = tmp_path / "engine.log"
    log.write_text("")
    c = LogCollector([(log, "engine")])
    await c.start()
    try:
        await _until(lambda: c.rounds >= 1, "the file opened", timeout=20)
        written = await asyncio.to_thread(rotation_storm, log, mode, 60, 10, 0.05)
        await asyncio.sleep(1.0)  # the last lines
        read = c.health()["streams"][0]["lines"]  # type: ignore[index]
    finally:
        await c.close()
    lost = (written - read) / written
    assert read <= written
    assert lost <= bound, f"{mode}: {written - read} of {written} lines lost"
