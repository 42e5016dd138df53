"""Follow log files (and /dev/kmsg) line by line, the way mtail does. Blocking I/O: call from a thread.

``FileTailer`` follows one path:

- it opens only regular files, without ever blocking: ``O_NONBLOCK`` (a FIFO opens at once instead of waiting
  for a writer) and ``fstat`` (a FIFO, socket or device, e.g. a symlink to /dev/zero, is refused with
  ``state == "error: not a regular file"`` and retried later). Symlinks are followed (Kubernetes' own
  /var/log/containers entries are symlinks), to regular files only; the target is logged once;
- it starts at the end of a file that exists at the first poll (``from_start`` reads it whole); a file that
  is missing at the first poll is waited for (``state == "waiting"``) and read from its start once it
  appears;
- rotation by rename (the path names another inode): the old file is drained to its end, then the new
  file is read from offset 0; a path that vanished keeps the old file open until a new one appears;
- copytruncate (the file shrank below the read offset, or the last bytes read are no longer there: truncated
  and refilled beyond the old offset between two polls): reading restarts at offset 0;
- ``poll`` returns blocks of complete lines joined by ``\n`` (what the matcher's ``feed_text`` takes);
  only complete lines are returned: a partial last line is held until its newline arrives (or the file is
  rotated or truncated, which ends it);
- lines longer than ``max_line_bytes`` are cut to that length and returned once (the rest of the line is
  skipped without being buffered), counted in ``truncated_lines``; memory stays bounded by the read size
  plus ``max_line_bytes``.

``KmsgReader`` reads /dev/kmsg records (``prio,seq,usec,flags;message``) and returns each message as a
dmesg-style line ``[secs.usec] message``.
"""

from __future__ import annotations

import abc
import contextlib
import errno
import logging
import os
import stat
from pathlib import Path
from typing import BinaryIO

log = logging.getLogger(__name__)

DEFAULT_MAX_LINE_BYTES = 64 * 1024
DEFAULT_CHUNK_BYTES = 1 << 20
_TAIL_BYTES = 32


class LineReader(abc.ABC):
    """A followed stream of lines (a file, /dev/kmsg): its path, state, and an error logged once until it changes."""

    def __init__(self, path: Path, from_start: bool) -> None:
        self.path = path
        self.from_start = from_start
        self.state = "waiting"
        self.truncated_lines = 0
        self._fresh = False
        self._error_logged = ""

    @property
    def turnovers(self) -> int:
        """Rotations and truncations seen so far (a storm of them makes the collector poll faster)."""
        return 0

    @abc.abstractmethod
    def poll(self, max_bytes: int) -> tuple[list[str], bool]:
        """Complete lines read now (about ``max_bytes`` at most), as blocks of lines joined by newlines (no
        trailing newline), and whether more input is waiting."""

    @abc.abstractmethod
    def close(self) -> None: ...

    def take_fresh(self) -> bool:
        """True once after the reader opened a file that was missing or empty when following began."""
        fresh, self._fresh = self._fresh, False
        return fresh

    def _set_error(self, message: str, effect: str = "retrying") -> None:
        self.state = f"error: {message}"
        if self._error_logged != message:
            log.warning("%s: %s (%s)", self.path, message, effect)
            self._error_logged = message


class FileTailer(LineReader):
    def __init__(
        self,
        path: Path,
        *,
        from_start: bool = False,
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    ) -> None:
        super().__init__(path, from_start)
        self.max_line_bytes = max_line_bytes
        self.chunk_bytes = chunk_bytes
        self.rotations = 0
        self.truncations = 0
        self.bytes_read = 0
        self._f: BinaryIO | None = None
        self._partial = b""
        self._tail = b""
        """The last bytes read (to notice a file truncated and refilled past the read offset)."""
        self._discarding = False
        """Skipping the rest of an over-long line (or of the line that was current when we started)."""
        self.target = ""
        """Where the path's symlink points ("" when it is none)."""
        self._first_poll = True
        self._ever_opened = False

    @property
    def turnovers(self) -> int:
        return self.rotations + self.truncations

    # -- opening ------------------------------------------------------------------------------------------
    def _open(self) -> bool:
        first = self._first_poll
        self._first_poll = False
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError:
            self.state = "waiting"
            return False
        except OSError as exc:
            self._set_error(f"cannot open: {exc.strerror or exc}")
            return False
        try:
            st = os.fstat(fd)
            regular = stat.S_ISREG(st.st_mode)
            if regular and first and not self.from_start and st.st_size > 0:  # start at the end
                os.lseek(fd, st.st_size - 1, os.SEEK_SET)
                self._discarding = os.read(fd, 1) != b"\n"
        except OSError as exc:
            os.close(fd)
            self._set_error(f"cannot read: {exc.strerror or exc}")
            return False
        if not regular:
            os.close(fd)
            self._set_error("not a regular file (a FIFO, socket or device is never read)")
            return False
        target = os.path.realpath(self.path) if self.path.is_symlink() else ""
        if target and target != self.target:
            log.info("log file %s is a symlink to %s", self.path, target)
        self.target = target
        # A log that is empty when following begins, or appears later, is a new log (an engine starting).
        self._fresh = (first and st.st_size == 0) or (not first and not self._ever_opened)
        self._f = os.fdopen(fd, "rb")
        self._ever_opened = True
        self.state = "following"
        self._error_logged = ""
        return True

    # -- reading ------------------------------------------------------------------------------------------
    def poll(self, max_bytes: int) -> tuple[list[str], bool]:
        blocks: list[str] = []
        if self._f is None and not self._open():
            return blocks, False
        budget = max_bytes
        try:
            if self._rewritten():
                self._restart(blocks)
            while True:
                assert self._f is not None
                data = self._f.read(min(self.chunk_bytes, budget))
                if data:
                    self.bytes_read += len(data)
                    self._tail = (self._tail + data)[-_TAIL_BYTES:] if len(data) < _TAIL_BYTES else data[-_TAIL_BYTES:]
                    self._consume(data, blocks)
                    budget -= len(data)
                    if budget <= 0:
                        return blocks, True
                    continue
                if not self._follow_rotation(blocks):
                    return blocks, False
        except OSError as exc:
            self._set_error(f"read failed: {exc.strerror or exc}")
            self._close_file()
            return blocks, False

    def _follow_rotation(self, blocks: list[str]) -> bool:
        """At EOF: True when reading should go on (rotated or truncated file), else False."""
        assert self._f is not None
        try:
            st = os.stat(self.path)
        except OSError:  # renamed away and no new file yet (keep the old one open), or unreadable
            return False
        fst = os.fstat(self._f.fileno())
        if (st.st_ino, st.st_dev) != (fst.st_ino, fst.st_dev):
            while data := self._f.read(self.chunk_bytes):  # written to the old file just before the rename
                self.bytes_read += len(data)
                self._consume(data, blocks)
            self._end_partial(blocks)
            self._close_file()
            self.rotations += 1
            return self._open()
        if st.st_size < self._f.tell():
            self._restart(blocks)
            return True
        return False

    def _rewritten(self) -> bool:
        """True when the bytes just before the read offset are no longer those read there: the file was
        truncated and written past the old offset again between two polls (a copytruncate storm)."""
        tail = self._tail
        if not tail or self._f is None:
            return False
        end = self._f.tell()
        return os.pread(self._f.fileno(), len(tail), end - len(tail)) != tail

    def _restart(self, blocks: list[str]) -> None:
        """Read the (truncated) file again from its start."""
        assert self._f is not None
        self._end_partial(blocks)
        self._f.seek(0)
        self._tail = b""
        self.truncations += 1

    def _consume(self, data: bytes, blocks: list[str]) -> None:
        buf = self._partial + data if self._partial else data
        nl = buf.rfind(b"\n")
        if nl < 0:
            self._hold(buf, blocks)
            return
        complete, rest = buf[:nl], buf[nl + 1:]
        if self._discarding:
            first_nl = complete.find(b"\n")
            self._discarding = False
            if first_nl < 0:
                self._partial = b""
                self._hold(rest, blocks)
                return
            complete = complete[first_nl + 1:]
        text = complete.decode("utf-8", "replace")
        if "\r" in text:
            text = text.replace("\r\n", "\n").removesuffix("\r")
        cap = self.max_line_bytes
        if len(complete) > cap:
            parts = text.split("\n")
            long_lines = sum(len(line) > cap for line in parts)
            if long_lines:
                self.truncated_lines += long_lines
                text = "\n".join(line[:cap] for line in parts)
        blocks.append(text)
        self._partial = b""
        self._hold(rest, blocks)

    def _hold(self, buf: bytes, blocks: list[str]) -> None:
        """Keep an incomplete line, unless it is already too long: then return its head once and skip it."""
        if self._discarding:
            self._partial = b""
            return
        if len(buf) > self.max_line_bytes:
            self.truncated_lines += 1
            blocks.append(buf[: self.max_line_bytes].decode("utf-8", "replace"))
            self._partial = b""
            self._discarding = True
        else:
            self._partial = buf

    def _end_partial(self, blocks: list[str]) -> None:
        if self._partial and not self._discarding:
            blocks.append(self._partial.decode("utf-8", "replace").rstrip("\r"))
        self._partial = b""
        self._discarding = False

    def _close_file(self) -> None:
        self._tail = b""
        if self._f is not None:
            self._f.close()
            self._f = None

    def close(self) -> None:
        self._close_file()
        self.state = "closed"


def parse_kmsg_record(record: bytes) -> str | None:
    """``prio,seq,usec,flags;message`` (plus `` KEY=value`` lines) -> ``[secs.usec] message``; None if malformed."""
    head, sep, body = record.partition(b";")
    if not sep:
        return None
    fields = head.split(b",")
    if len(fields) < 4 or not fields[2].isdigit():
        return None
    usec = int(fields[2])
    message = body.split(b"\n", 1)[0].decode("utf-8", "replace")
    return f"[{usec // 1_000_000:5d}.{usec % 1_000_000:06d}] {message}"


class KmsgReader(LineReader):
    """Records of the kernel ring buffer (/dev/kmsg); starts after the newest record unless ``from_start``."""

    def __init__(self, path: Path = Path("/dev/kmsg"), *, from_start: bool = False) -> None:
        super().__init__(path, from_start)
        self.malformed = 0
        self.lost = 0
        """Times the kernel overwrote records before we read them (EPIPE)."""
        self._fd: int | None = None

    def _open(self) -> bool:
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
        except OSError as exc:
            self._set_error(f"cannot open: {exc.strerror or exc}", "kernel signatures from it are off; retrying")
            return False
        if not self.from_start:
            with contextlib.suppress(OSError):
                os.lseek(fd, 0, os.SEEK_END)
        self._fd = fd
        self.state = "following"
        return True

    def poll(self, max_bytes: int) -> tuple[list[str], bool]:
        lines: list[str] = []
        if self._fd is None and not self._open():
            return [], False
        assert self._fd is not None
        budget = max_bytes
        while budget > 0:
            try:
                record = os.read(self._fd, 16384)
            except BlockingIOError:
                break
            except BrokenPipeError:
                self.lost += 1
                continue
            except OSError as exc:
                if exc.errno == errno.EINTR:
                    continue
                self.state = f"error: read failed: {exc.strerror or exc}"
                self.close()
                break
            if not record:
                break
            budget -= len(record)
            line = parse_kmsg_record(record)
            if line is None:
                self.malformed += 1
            else:
                lines.append(line)
        return (["\n".join(lines)] if lines else []), budget <= 0

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
