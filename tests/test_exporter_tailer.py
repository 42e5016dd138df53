"""File tailing: start position, partial lines, rotation by rename, copytruncate, late files, long lines, kmsg."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from optiinfra.exporter.logsig import StreamMatcher
from optiinfra.exporter.tailer import FileTailer, KmsgReader, parse_kmsg_record


def _lines(tailer: FileTailer, max_bytes: int = 1 << 30) -> list[str]:
    blocks, _ = tailer.poll(max_bytes)
    return [line for block in blocks for line in block.split("\n")]


def _append(path: Path, text: str) -> None:
    with path.open("a", encoding="utf-8") as f:
        f.write(text)


def test_starts_at_the_end_and_follows(tmp_path: Path) -> None:
    log = tmp_path / "engine.log"
    log.write_text("old 1\nold 2\n")
    t = FileTailer(log)
    assert _lines(t) == [] and t.state == "following"
    _append(log, "new 1\nnew 2\n")
    assert _lines(t) == ["new 1", "new 2"]
    assert _lines(t) == []
    assert not t.take_fresh()


def test_from_start_reads_the_whole_file(tmp_path: Path) -> None:
    log = tmp_path / "engine.log"
    log.write_text("a\r\nb\nc\n")
    assert _lines(FileTailer(log, from_start=True)) == ["a", "b", "c"]


def test_the_line_being_written_at_start_is_skipped(tmp_path: Path) -> None:
    log = tmp_path / "engine.log"
    log.write_text("old\nhalf a li")
    t = FileTailer(log)
    assert _lines(t) == []
    _append(log, "ne\nnext\n")
    assert _lines(t) == ["next"]


def test_partial_line_is_held_until_complete(tmp_path: Path) -> None:
    log = tmp_path / "engine.log"
    log.write_text("")
    t = FileTailer(log)
    assert _lines(t) == []
    _append(log, "first\nsec")
    assert _lines(t) == ["first"]
    _append(log, "ond ha")
    assert _lines(t) == []
    _append(log, "lf\n")
    assert _lines(t) == ["second half"]


def test_rotation_by_rename_drains_the_old_file_then_reads_the_new(tmp_path: Path) -> None:
    log = tmp_path / "engine.log"
    log.write_text("")
    t = FileTailer(log)
    _lines(t)
    _append(log, "1\n2\n")
    assert _lines(t) == ["1", "2"]
    _append(log, "3\n4 unterminated")  # written before the rename, never read yet
    log.rename(tmp_path / "engine.log.1")
    assert _lines(t) == ["3"]  # renamed away, no new file yet: keep reading the old one (partial held)
    _append(tmp_path / "engine.log.1", " end\n5\n")  # the writer still has the old file open
    log.write_text("6\n7\n")
    assert _lines(t) == ["4 unterminated end", "5", "6", "7"]
    assert t.rotations == 1
    _append(log, "8\n")
    assert _lines(t) == ["8"]


def test_rename_rotation_flushes_an_unterminated_last_line(tmp_path: Path) -> None:
    log = tmp_path / "engine.log"
    log.write_text("")
    t = FileTailer(log)
    _lines(t)
    _append(log, "a\nlast without newline")
    log.rename(tmp_path / "engine.log.1")
    log.write_text("b\n")
    assert _lines(t) == ["a", "last without newline", "b"]


def test_copytruncate_restarts_at_zero(tmp_path: Path) -> None:
    log = tmp_path / "engine.log"
    log.write_text("")
    t = FileTailer(log)
    _lines(t)
    _append(log, "line one is long enough\nline two is long enough\n")
    assert _lines(t) == ["line one is long enough", "line two is long enough"]
    shutil.copyfile(log, tmp_path / "engine.log.1")
    with log.open("r+") as f:
        f.truncate(0)
    _append(log, "x\ny\n")
    assert _lines(t) == ["x", "y"]
    assert t.truncations == 1 and t.rotations == 0


def test_missing_file_is_waited_for_and_read_from_its_start(tmp_path: Path) -> None:
    log = tmp_path / "later.log"
    t = FileTailer(log)
    assert _lines(t) == [] and t.state == "waiting"
    assert _lines(t) == [] and t.state == "waiting"
    log.write_text("a\nb\n")
    assert _lines(t) == ["a", "b"] and t.state == "following"
    assert t.take_fresh() and not t.take_fresh()


def test_empty_file_at_start_is_a_fresh_log(tmp_path: Path) -> None:
    log = tmp_path / "engine.log"
    log.write_text("")
    t = FileTailer(log)
    _lines(t)
    assert t.take_fresh()


def test_a_rotated_in_file_is_not_a_fresh_log(tmp_path: Path) -> None:
    log = tmp_path / "engine.log"
    log.write_text("a\n")
    t = FileTailer(log)
    _lines(t)
    log.rename(tmp_path / "engine.log.1")
    log.write_text("b\n")
    assert _lines(t) == ["b"]
    assert not t.take_fresh()


def test_long_lines_are_cut_once_and_memory_stays_bounded(tmp_path: Path) -> None:
    log = tmp_path / "engine.log"
    log.write_text("")
    t = FileTailer(log, max_line_bytes=100)
    _lines(t)
    _append(log, "short\n" + "x" * 1000 + "\nafter\n")
    assert _lines(t) == ["short", "x" * 100, "after"]
    _append(log, "y" * 300)  # an over-long line still being written
    assert _lines(t) == ["y" * 100]
    assert len(t._partial) == 0
    _append(log, "y" * 300)
    assert _lines(t) == []
    _append(log, "yyy\nnext\n")
    assert _lines(t) == ["next"]
    assert t.truncated_lines == 2


def test_read_budget_leaves_the_rest_for_the_next_poll(tmp_path: Path) -> None:
    log = tmp_path / "engine.log"
    log.write_text("".join(f"line {i}\n" for i in range(1000)))
    t = FileTailer(log, from_start=True, chunk_bytes=64)
    got: list[str] = []
    more = True
    while more:
        blocks, more = t.poll(500)
        got += [ln for b in blocks for ln in b.split("\n")]
    assert got == [f"line {i}" for i in range(1000)]


def test_unreadable_path_is_reported_not_raised(tmp_path: Path) -> None:
    t = FileTailer(tmp_path)  # a directory
    assert _lines(t) == []
    assert t.state.startswith("error:")


def test_rotation_and_truncation_count_every_event_exactly_once(tmp_path: Path) -> None:
    lockup = "[{n}.000000] watchdog: BUG: soft lockup - CPU#{n} stuck for 22s! [python3:{n}]\n"
    log = tmp_path / "kern.log"
    log.write_text(lockup.format(n=0))  # before the tailer started: not counted
    t = FileTailer(log)
    m = StreamMatcher("kernel")
    counts: dict[tuple[str, str], int] = {}

    def poll() -> None:
        for block in t.poll(1 << 30)[0]:
            m.feed_text(block, 0.0, counts)

    poll()
    _append(log, lockup.format(n=1) + lockup.format(n=2)[:20])
    poll()
    _append(log, lockup.format(n=2)[20:])
    log.rename(tmp_path / "kern.log.1")
    log.write_text(lockup.format(n=3))
    poll()
    _append(log, lockup.format(n=4))
    poll()
    with log.open("r+") as f:
        f.truncate(0)
    _append(log, lockup.format(n=5))
    poll()
    poll()
    assert counts == {("soft_lockup", ""): 5}


def test_kmsg_records() -> None:
    rec = b"4,1234,5140900,-;NVRM: Xid (PCI:0000:01:00): 79, pid=1, GPU has fallen off the bus.\n SUBSYSTEM=pci\n"
    line = parse_kmsg_record(rec)
    assert line == "[    5.140900] NVRM: Xid (PCI:0000:01:00): 79, pid=1, GPU has fallen off the bus."
    assert parse_kmsg_record(b"no header") is None
    assert parse_kmsg_record(b"6,1,notanumber,-;x") is None
    m = StreamMatcher("kernel")
    counts: dict[tuple[str, str], int] = {}
    m.feed([line], 0.0, counts)
    assert counts == {("nvidia_xid", "79"): 1}


def test_kmsg_reader_without_access_reports_instead_of_raising(tmp_path: Path) -> None:
    reader = KmsgReader(tmp_path / "no-kmsg")
    assert reader.poll(1 << 20) == ([], False)
    assert reader.state.startswith("error:")


def test_kmsg_reader_reads_real_kmsg_when_readable() -> None:
    path = Path("/dev/kmsg")
    reader = KmsgReader(path, from_start=True)
    blocks, _ = reader.poll(1 << 16)
    if not os.access(path, os.R_OK) or reader.state.startswith("error"):
        assert blocks == [] and reader.state.startswith("error:")
        return
    reader.close()
    for line in (ln for b in blocks for ln in b.split("\n")):
        assert line.startswith("[")


_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("write"), st.text(alphabet="ab \n", min_size=1, max_size=40)),
        st.tuples(st.just("poll"), st.integers(min_value=1, max_value=64)),
        st.just(("rename", 0)),
        st.just(("truncate", 0)),
    ),
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(_OPS)
def test_every_written_line_is_read_once_in_order(ops: list[tuple[str, object]]) -> None:
    """Random writes (lines split anywhere), polls with small budgets, rename rotations and copytruncates:
    the lines read are exactly the lines written. An unterminated line ends at a rotation or truncation."""
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "engine.log"
        log.write_text("")
        t = FileTailer(log, chunk_bytes=16)
        got = _lines(t)
        written: list[str] = []
        partial = ""
        generation = 0

        def drain() -> None:
            more = True
            while more:
                blocks, more = t.poll(64)
                got.extend(ln for b in blocks for ln in b.split("\n"))

        for op, arg in ops:
            if op == "write":
                assert isinstance(arg, str)
                _append(log, arg)
                *done, partial = (partial + arg).split("\n")
                written.extend(done)
            elif op == "poll":
                assert isinstance(arg, int)
                blocks, _ = t.poll(arg)
                got.extend(ln for b in blocks for ln in b.split("\n"))
            elif op == "rename":
                generation += 1
                log.rename(Path(tmp) / f"engine.log.{generation}")
                log.write_text("")
                if partial:
                    written.append(partial)
                partial = ""
                drain()
            else:  # copytruncate: noticed by the next poll, before anything new is written
                drain()
                with log.open("r+") as f:
                    f.truncate(0)
                if partial:
                    written.append(partial)
                partial = ""
                drain()
        drain()
        assert got == written


# -- hostile paths (audit finding 4) -------------------------------------------------------------------------


def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    """open() of a FIFO without a writer blocks forever; the tailer opens non-blocking and refuses it."""
    fifo = tmp_path / "engine.log"
    os.mkfifo(fifo)
    t = FileTailer(fifo)
    assert t.poll(1 << 20) == ([], False)
    assert t.state == "error: not a regular file (a FIFO, socket or device is never read)"
    t.close()


def test_a_symlink_to_a_device_is_refused_and_one_to_a_file_is_followed(tmp_path: Path) -> None:
    zero = tmp_path / "zero.log"
    zero.symlink_to("/dev/zero")
    t = FileTailer(zero, from_start=True)
    assert t.poll(1 << 20) == ([], False)
    assert t.state.startswith("error: not a regular file") and t.bytes_read == 0
    real = tmp_path / "pods" / "0.log"
    real.parent.mkdir()
    real.write_text("a\nb\n")
    link = tmp_path / "container.log"
    link.symlink_to(real)
    follower = FileTailer(link, from_start=True)
    assert _lines(follower) == ["a", "b"] and follower.target == str(real)
