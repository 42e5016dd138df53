"""``logpipe``: the bytes an engine log keeps on disk stay bounded under a 1 GB burst, and the sidecar's log
collector follows the rotated files."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import REPO
from test_exporter_logs import NORMAL, OOM, _until

from optiinfra.cli import main
from optiinfra.exporter.collectors.logs import LogCollector
from optiinfra.exporter.logpipe import RotatingFile

SCRIPT = REPO / "exporter" / "logpipe.py"
LINE = 1024
BURST_BLOCKS = 1024  # blocks of 1 MiB: 1 GiB
#: Writes 1 GiB of 1 KiB lines to stdout, in 1 MiB blocks.
GENERATOR = (f"import sys\nblock = (b'x' * {LINE - 1} + b'\\n') * 1024\nw = sys.stdout.buffer\n"
             f"for _ in range({BURST_BLOCKS}):\n    w.write(block)\nw.flush()\n")


def on_disk(directory: Path) -> int:
    total = 0
    for entry in os.scandir(directory):
        try:
            total += entry.stat().st_size
        except FileNotFoundError:  # rotated away between listing and stat
            continue
    return total


def test_one_gigabyte_burst_stays_within_the_bound(tmp_path: Path) -> None:
    """1 GiB from a fast writer through the standalone script (as the engine container runs it): the files
    on disk never hold more than (keep + 1) * max-bytes, every byte was read, no line is cut."""
    max_bytes, keep = 8 * 1024 * 1024, 2
    bound = (keep + 1) * max_bytes
    log_dir = tmp_path / "log"
    log_dir.mkdir()
    generator = subprocess.Popen([sys.executable, "-c", GENERATOR], stdout=subprocess.PIPE)
    assert generator.stdout is not None
    pipe = subprocess.Popen([sys.executable, str(SCRIPT), "--max-bytes", str(max_bytes), "--keep", str(keep),
                             str(log_dir / "engine.log")],
                            stdin=generator.stdout, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    generator.stdout.close()
    peak, samples = 0, 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak, samples
        while not stop.is_set():
            peak = max(peak, on_disk(log_dir))
            samples += 1
            time.sleep(0.001)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        _, err = pipe.communicate(timeout=120)
        assert generator.wait(timeout=30) == 0
    finally:
        stop.set()
        sampler.join()
        generator.kill()
        pipe.kill()
    assert pipe.returncode == 0, err
    total = BURST_BLOCKS * 1024 * LINE
    assert f"input ended: {total} bytes read" in err and "0 bytes dropped" in err, err
    rotations = int(err.split(" bytes read, ")[1].split(" rotations")[0])
    assert rotations >= total // max_bytes - 1
    assert samples > 10, "the sampler must have watched the burst"
    assert 0 < peak <= bound
    files = sorted(p.name for p in log_dir.iterdir())
    assert files == ["engine.log", "engine.log.1", "engine.log.2"]
    for name in files:
        data = (log_dir / name).read_bytes()
        assert 0 < len(data) <= max_bytes
        assert len(data) % LINE == 0 and data.endswith(b"\n")  # cut after complete lines only
    assert on_disk(log_dir) <= bound


def test_rotation_cuts_after_lines_and_splits_only_overlong_ones(tmp_path: Path) -> None:
    path = tmp_path / "e.log"
    f = RotatingFile(path, max_bytes=10, keep=1)
    f.write(b"aaaa\nbbbb\ncc")  # 12 bytes: the first 10 fit exactly
    f.write(b"c\n")
    assert path.with_name("e.log.1").read_bytes() == b"aaaa\nbbbb\n"
    assert path.read_bytes() == b"ccc\n"
    f.write(b"0123456789ABCDEFGHIJ\n")  # longer than a file: rotate first, then split
    f.write(b"z\n")
    f.close()
    assert path.with_name("e.log.1").read_bytes() == b"ABCDEFGHIJ"  # 0123456789 went before it
    assert path.read_bytes() == b"\nz\n"
    assert not path.with_name("e.log.2").exists()  # keep=1: the oldest is deleted


def test_write_failure_drops_and_recovers(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    directory = tmp_path / "gone"
    directory.mkdir()
    f = RotatingFile(directory / "e.log", max_bytes=100, keep=1)
    f.write(b"one\n")
    f.close()
    (directory / "e.log").unlink()
    directory.rmdir()
    f.write(b"lost\n")  # the directory vanished: dropped, logged, no exception
    f.write(b"lost\n")
    assert f.dropped_bytes == 10
    assert len([r for r in caplog.records if "cannot write" in r.getMessage()]) == 1
    directory.mkdir()
    f.write(b"back\n")
    f.close()
    assert (directory / "e.log").read_bytes() == b"back\n"


def test_cli_usage_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["logpipe", str(tmp_path / "missing" / "e.log")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not exist" in err[0]
    assert main(["logpipe", "--keep", "-1", str(tmp_path / "e.log")]) == 2
    assert "--keep" in capsys.readouterr().err
    proc = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path)], capture_output=True, text=True,
                          timeout=30, check=False)
    assert proc.returncode == 2 and proc.stderr.strip().startswith("logpipe: error:") and "directory" in proc.stderr


def test_tee_copies_to_stdout(tmp_path: Path) -> None:
    optiinfra = Path(sys.executable).parent / "optiinfra"
    proc = subprocess.run([str(optiinfra), "logpipe", "--tee", "--max-bytes", "1Ki", str(tmp_path / "e.log")],
                          input=b"hello\n" * 300, capture_output=True, timeout=30, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == b"hello\n" * 300
    assert (tmp_path / "e.log.1").stat().st_size <= 1024


async def test_log_collector_follows_logpipe_rotation(tmp_path: Path) -> None:
    """The sidecar tails PATH while logpipe rotates it: every line is read across the rotations, and a
    failure line before, between and after them is counted once each (more than the signature's 200-line
    window of ordinary lines apart, so each is its own event)."""
    path = tmp_path / "engine.log"
    pipe = subprocess.Popen([sys.executable, str(SCRIPT), "--max-bytes", "8192", "--keep", "1", str(path)],
                            stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    assert pipe.stdin is not None
    collector = LogCollector([(path, "engine")], poll_interval=0.02)
    sent = 0

    def stream() -> dict[str, int]:
        (s,) = collector.health()["streams"]  # type: ignore[misc]
        return s  # type: ignore[no-any-return]

    async def send(text: str) -> None:
        """Write through logpipe and wait until the collector has read every line so far."""
        nonlocal sent
        assert pipe.stdin is not None
        pipe.stdin.write(text.encode())
        pipe.stdin.flush()
        sent += text.count("\n")
        await _until(lambda: stream()["lines"] == sent, f"{sent} lines read")

    def oom() -> int:
        return collector.counts().get(("engine", "cuda_oom", ""), 0)

    try:
        pipe.stdin.write(NORMAL.encode())
        pipe.stdin.flush()
        # wait for logpipe to have written those lines: the collector starts at the file's end, and lines
        # arriving after that would be read and counted as if sent later
        await _until(lambda: path.exists() and path.stat().st_size >= len(NORMAL.encode()), "the first lines")
        await collector.start()
        await _until(lambda: stream()["state"] == "following", "the file followed")  # from its end
        for expected in (1, 2, 3):
            await send(OOM)
            assert oom() == expected
            for _ in range(10):
                await send(NORMAL * 13)  # 26 lines, about 3.4 kB: 260 lines and 4 rotations per round
        assert stream()["rotations"] >= 12
        assert stream()["truncations"] == 0
    finally:
        await collector.close()
        pipe.stdin.close()
        pipe.wait(timeout=30)
    assert oom() == 3
    assert path.with_name("engine.log.1").exists()
