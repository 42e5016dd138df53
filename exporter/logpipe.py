"""``optiinfra logpipe``: copy stdin into size-rotated log files, so the bytes a log keeps on disk are bounded.

An engine's output piped through it (``engine 2>&1 | logpipe --max-bytes N --keep K PATH``) is written to
``PATH``; before ``PATH`` would grow past ``N`` bytes it is renamed to ``PATH.1`` (``PATH.1`` to ``PATH.2``
..., the oldest beyond ``PATH.K`` deleted) and a new ``PATH`` is started: at most ``(K + 1) * N`` bytes are
ever on disk, whatever the engine writes. Files are cut after the last complete line that fits (a line longer
than ``N`` is split). Rotation is by rename, which the sidecar's log tailer follows (it drains the old file,
then reads the new one from its start; while it drains, the one file it holds open may outlive its deletion:
budget ``(K + 2) * N`` against an ``emptyDir`` ``sizeLimit``).

It never stops reading before end of input, so the engine never blocks or breaks on its output: a write that
fails (disk full, file removed) drops that data, is logged once, and is retried with the next input. With
``--tee`` every byte is also copied to stdout (so ``kubectl logs`` still shows the engine).

Standard library only: the same file runs as ``python3 logpipe.py ...`` inside an engine image that has
Python but not OptiInfra (the Kubernetes example copies it there with an init container).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import fcntl
import logging
import os
import re
import sys
from pathlib import Path

log = logging.getLogger("optiinfra.exporter.logpipe")

READ_BYTES = 1 << 20
#: Pipe buffer asked for on stdin (Linux ``F_SETPIPE_SZ``; unprivileged processes get up to 1 MiB).
_F_SETPIPE_SZ = 1031
_SIZE = re.compile(r"(\d+)\s*([KMG]i?)?B?", re.IGNORECASE)
_UNITS = {"": 1, "k": 1000, "m": 1000**2, "g": 1000**3, "ki": 1024, "mi": 1024**2, "gi": 1024**3}


class SetupError(Exception):
    """Bad arguments or an unusable path: one line saying what to fix."""


def parse_size(text: str) -> int:
    """``134217728``, ``128Mi``, ``100M``, ``1Gi`` -> bytes."""
    match = _SIZE.fullmatch(text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"{text!r}: give bytes, e.g. 134217728 or 128Mi")
    return int(match[1]) * _UNITS[(match[2] or "").lower()]


class RotatingFile:
    """``PATH`` plus ``PATH.1`` ... ``PATH.<keep>``, each at most ``max_bytes``."""

    def __init__(self, path: Path, max_bytes: int, keep: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.keep = keep
        self.rotations = 0
        self.dropped_bytes = 0
        self._fd: int | None = None
        self._size = 0
        self._last_error = ""

    def _open(self) -> int:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
            self._size = os.fstat(self._fd).st_size
            if self._size > self.max_bytes:  # left bigger by an earlier run with another limit
                self._rotate()
        assert self._fd is not None
        return self._fd

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _rotate(self) -> None:
        self.close()
        name = str(self.path)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"{name}.{self.keep}" if self.keep else name)
        for i in range(self.keep - 1, 0, -1):
            with contextlib.suppress(FileNotFoundError):
                os.rename(f"{name}.{i}", f"{name}.{i + 1}")
        if self.keep:
            with contextlib.suppress(FileNotFoundError):
                os.rename(name, f"{name}.1")
        self.rotations += 1
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        self._size = 0

    def write(self, data: bytes) -> None:
        """Append ``data``, rotating before any file would pass ``max_bytes``; a failing write drops its data."""
        pos, end = 0, len(data)
        try:
            fd = self._open()
            while pos < end:
                room = self.max_bytes - self._size
                if end - pos <= room:
                    self._write_all(fd, data, pos, end)
                    pos = end
                    break
                cut = data.rfind(b"\n", pos, pos + room) + 1  # after the last line that fits; 0: none does
                if cut == 0 and self._size == 0:
                    cut = pos + room  # a line longer than a whole file: split it
                if cut > pos:
                    self._write_all(fd, data, pos, cut)
                    pos = cut
                self._rotate()
                fd = self._open()
        except OSError as exc:
            self.dropped_bytes += end - pos
            message = f"{exc.strerror or exc} ({errno.errorcode.get(exc.errno or 0, '?')})"
            if message != self._last_error:
                log.warning("cannot write %s: %s; dropping output until it works again", self.path, message)
                self._last_error = message
            with contextlib.suppress(OSError):
                self.close()
        else:
            self._last_error = ""

    def _write_all(self, fd: int, data: bytes, start: int, stop: int) -> None:
        _write_fd(fd, memoryview(data)[start:stop])
        self._size += stop - start


def pipe(source: int, target: RotatingFile, tee: int | None = None) -> int:
    """Copy ``source`` into ``target`` (and ``tee``) until end of input; the bytes read."""
    with contextlib.suppress(OSError):
        fcntl.fcntl(source, _F_SETPIPE_SZ, READ_BYTES)
    total = 0
    while True:
        try:
            chunk = os.read(source, READ_BYTES)
        except InterruptedError:
            continue
        if not chunk:
            return total
        total += len(chunk)
        target.write(chunk)
        if tee is not None:
            try:
                _write_fd(tee, chunk)
            except OSError as exc:
                log.warning("stdout closed (%s); no longer copying to it", exc)
                tee = None


def _write_fd(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--max-bytes", type=parse_size, default=parse_size("128Mi"), metavar="N",
                        help="largest size of each file, e.g. 134217728 or 128Mi (default: 128Mi)")
    parser.add_argument("--keep", dest="keep_files", type=int, default=2, metavar="K",
                        help="rotated files kept beside PATH (PATH.1 ... PATH.K); at most (K + 1) * N bytes on "
                             "disk (default: 2)")
    parser.add_argument("--tee", action="store_true", help="also copy the input to stdout")
    parser.add_argument("path", type=Path, metavar="PATH", help="the log file to write")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "logpipe", help="copy stdin into size-rotated log files (a bounded engine log for the sidecar to tail)",
        description="Read stdin to its end and write it to PATH, rotating PATH -> PATH.1 ... PATH.K before PATH "
                    "would pass --max-bytes: at most (K + 1) * N bytes on disk. Never blocks the writer.")
    add_arguments(p)
    p.set_defaults(func=run)


def _check(args: argparse.Namespace) -> RotatingFile:
    if args.max_bytes < 1:
        raise SetupError(f"--max-bytes {args.max_bytes}: must be at least 1 byte")
    if not 0 <= args.keep_files <= 1000:
        raise SetupError(f"--keep {args.keep_files}: give 0 to 1000 rotated files")
    path: Path = args.path
    if path.is_dir():
        raise SetupError(f"{path}: is a directory; give a file path, e.g. {path / 'engine.log'}")
    if not path.parent.is_dir():
        raise SetupError(f"{path}: its directory {path.parent} does not exist")
    if not os.access(path.parent, os.W_OK):
        raise SetupError(f"{path}: cannot write to {path.parent}")
    return RotatingFile(path, args.max_bytes, args.keep_files)


def _pipe(args: argparse.Namespace) -> int:
    target = _check(args)
    log.info("writing %s: at most %d bytes per file, %d rotated files kept", target.path, target.max_bytes,
             target.keep)
    try:
        total = pipe(sys.stdin.fileno(), target, sys.stdout.fileno() if args.tee else None)
    finally:
        target.close()
    log.info("input ended: %d bytes read, %d rotations, %d bytes dropped", total, target.rotations,
             target.dropped_bytes)
    return 0


def run(args: argparse.Namespace) -> int:
    """``optiinfra logpipe``."""
    try:
        return _pipe(args)
    except SetupError as exc:
        from optiinfra.cliutil import UsageError  # noqa: PLC0415 (absent where this file runs alone)

        raise UsageError(str(exc)) from exc


def main(argv: list[str] | None = None) -> int:
    """``python3 logpipe.py``: the same without OptiInfra installed."""
    parser = argparse.ArgumentParser(prog="logpipe", description=__doc__.split("\n\n")[0] if __doc__ else None)
    add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="logpipe: %(levelname)s %(message)s")
    try:
        return _pipe(args)
    except SetupError as exc:
        sys.stderr.write(f"logpipe: error: {exc}\n")
        return 2


if __name__ == "__main__":
    sys.exit(main())
