"""Failure signatures in tailed logs as ``llm_log_events_total{source, signature[, xid]}``.

Each followed file (and /dev/kmsg with ``kmsg=True``) has its own daemon thread polling it every
``poll_interval`` s (``storm_interval`` s for ``storm_window`` s after a rotation or truncation), at most
``batch_bytes`` per round: a backlog never holds the event loop and no stream blocks another. A stream in
error (e.g. not a regular file) or stuck in a read for ``stall_timeout`` s costs
``optiinfra_collector_success{collector="logs"} 0``; ``close`` leaves a stuck thread behind after
``close_timeout`` s. Rotation storms lose only files created and rotated away between two polls (rename) or
lines written after the last poll before a truncation (copytruncate): bench/logs prints the shares.

Series for every signature of each source in use are exported from the start at 0 (for ``nvidia_xid``:
the Xids of NVIDIA's catalogue), so the first event is an increase Prometheus can see.

Start-up hang (``startup_hang``, engine source): the engine has one start-up timer, shared by all its engine
logs (the API server may log "ready" in another file than the engine core's start). It is armed by a
start-up line (vLLM ``Initializing a V1 LLM engine`` / ``Initializing an LLM engine``, TGI
``text_generation_launcher: Args {``, SGLang ``server_args=ServerArgs(``), by a start-up heartbeat
(vLLM's DEBUG ``Waiting for N local, M remote core engine proc(s)``, TGI ``Waiting for shard to be
ready``), and when the log file is empty when following begins or appears later. It is disarmed by a ready
line (uvicorn's ``Application startup complete`` for vLLM and SGLang, SGLang ``The server is fired up and ready
to roll``, TGI router ``Connected``) or by a start failure that has its own signature
(``engine_init_failed``, ``cuda_oom``, ...). After ``startup_timeout`` (default 600 s) armed, one
``startup_hang`` is counted. A sidecar that starts at the end of the log of a running engine arms nothing:
an engine that hangs while the sidecar starts with it is the metric rule's case (upstream never up 10m
after the sidecar started); both raise the same ``engine_startup_hang`` alert.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from optiinfra.metrics import LOG_METRICS

from ..exposition import Family, Part
from ..logsig import COUNTED, KNOWN_XIDS, SOURCES, Counts, Source, StartupTimer, StreamMatcher
from ..tailer import DEFAULT_MAX_LINE_BYTES, FileTailer, KmsgReader, LineReader
from .base import CollectorError

log = logging.getLogger(__name__)

(EVENTS,) = LOG_METRICS


@dataclass
class _Stream:
    name: str
    source: Source
    reader: LineReader
    matcher: StreamMatcher
    rounds: int = 0
    busy_since: float | None = None
    """``time.monotonic()`` when the poll in progress began."""
    failure: str = ""
    """The exception that stopped this stream's thread."""
    turnovers: int = 0
    storm_until: float = 0.0
    thread: threading.Thread | None = None


class LogCollector:
    """Counts failure signatures in engine and kernel logs."""

    name = "logs"
    disabled = False

    def __init__(
        self,
        files: list[tuple[Path, str]],
        from_start: bool = False,
        kmsg: bool = False,
        *,
        poll_interval: float = 0.1,
        storm_interval: float = 0.01,
        storm_window: float = 10.0,
        stall_timeout: float = 30.0,
        close_timeout: float = 1.0,
        startup_timeout: float = 600.0,
        xid_window: float = 1.0,
        batch_bytes: int = 4 << 20,
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.poll_interval = poll_interval
        self.storm_interval = storm_interval
        self.storm_window = storm_window
        self.stall_timeout = stall_timeout
        self.close_timeout = close_timeout
        self.batch_bytes = batch_bytes
        self._clock = clock
        self._streams: list[_Stream] = []
        self.startup = StartupTimer(startup_timeout)
        """One start-up timer for the engine, whichever of its logs says it is starting or ready."""
        seen: set[Path] = set()
        for path, source in files:
            if source not in SOURCES:
                raise ValueError(f"log file {path}: source must be one of {', '.join(SOURCES)}, not {source!r}")
            if Path(path) in seen:
                raise ValueError(f"log file {path} is given twice: its events would be counted twice")
            seen.add(Path(path))
            src: Source = "engine" if source == "engine" else "kernel"
            self._streams.append(_Stream(
                str(path), src,
                FileTailer(Path(path), from_start=from_start, max_line_bytes=max_line_bytes),
                StreamMatcher(src, startup=self.startup, xid_window=xid_window),
            ))
        if kmsg:
            reader = KmsgReader(from_start=from_start)
            self._streams.append(_Stream(
                str(reader.path), "kernel", reader,
                StreamMatcher("kernel", xid_window=xid_window),
            ))
        self._lock = threading.Lock()
        """Guards the counts and the matchers (the engine's start-up timer is shared by its streams)."""
        self._counts: dict[tuple[Source, str, str], int] = {}
        self._stop = threading.Event()

    @property
    def rounds(self) -> int:
        """Polling rounds every stream has completed."""
        return min((s.rounds for s in self._streams), default=0)

    # -- life cycle -------------------------------------------------------------------------------------
    async def start(self) -> None:
        self._stop.clear()
        for stream in self._streams:
            if stream.thread is None:
                stream.thread = threading.Thread(target=self._follow, args=(stream,), name=f"log {stream.name}",
                                                 daemon=True)
                stream.thread.start()

    async def close(self) -> None:
        self._stop.set()
        deadline = time.monotonic() + self.close_timeout
        for stream in self._streams:
            if stream.thread is not None:
                await asyncio.to_thread(stream.thread.join, max(0.0, deadline - time.monotonic()))
                if stream.thread.is_alive():
                    log.warning("log stream %s is stuck in a read; left behind", stream.name)
                    continue
                stream.thread = None
            stream.reader.close()

    def _follow(self, stream: _Stream) -> None:
        """The thread of one stream: poll, then wait (briefly after a rotation or with input pending)."""
        try:
            while not self._stop.is_set():
                more = self._poll(stream)
                now = time.monotonic()
                if stream.reader.turnovers != stream.turnovers:
                    stream.turnovers = stream.reader.turnovers
                    stream.storm_until = now + self.storm_window
                delay = 0.0 if more else self.storm_interval if now < stream.storm_until else self.poll_interval
                self._stop.wait(delay)
        except Exception as exc:  # a bug must cost this collector, not the sidecar
            stream.failure = f"{type(exc).__name__}: {exc}"
            log.exception("log stream stopped", extra={"path": stream.name})

    def poll_once(self) -> bool:
        """Read and match one round of every stream; True when some stream has more input waiting."""
        more = False
        for stream in self._streams:
            more = self._poll(stream) or more
        return more

    def _poll(self, stream: _Stream) -> bool:
        stream.busy_since = time.monotonic()
        blocks, pending = stream.reader.poll(self.batch_bytes)
        fresh = stream.reader.take_fresh()
        with self._lock:
            now = self._clock()
            counts: Counts = {}
            if fresh:
                stream.matcher.arm_startup(now)
            for block in blocks:
                stream.matcher.feed_text(block, now, counts)
            stream.matcher.tick(now, counts)
            for (signature, xid), n in counts.items():
                key = (stream.source, signature, xid)
                self._counts[key] = self._counts.get(key, 0) + n
        stream.busy_since = None
        stream.rounds += 1
        return pending

    # -- output -----------------------------------------------------------------------------------------
    def counts(self) -> dict[tuple[Source, str, str], int]:
        """(source, signature, xid) -> events so far (only what was counted; no zero series)."""
        with self._lock:
            return dict(self._counts)

    def problems(self) -> list[str]:
        """Why the collector is failing now: a stopped, stuck or erroring stream."""
        now = time.monotonic()
        out: list[str] = []
        for s in self._streams:
            busy = s.busy_since
            if s.failure:
                out.append(f"{s.name}: log tailing stopped: {s.failure}")
            elif busy is not None and now - busy > self.stall_timeout:
                out.append(f"{s.name}: a read has been stuck for {now - busy:.0f}s")
            elif s.reader.state.startswith("error"):
                out.append(f"{s.name}: {s.reader.state}")
        return out

    async def collect(self) -> list[Part]:
        values = {(source, signature, xid): 0 for source in {s.source for s in self._streams}
                  for signature in COUNTED[source]
                  for xid in (map(str, KNOWN_XIDS) if signature == "nvidia_xid" else ("",))}
        values.update(self.counts())
        events = Family.of(EVENTS)
        for (src, sig, xid), n in sorted(values.items(), key=_sort_key):
            labels = {"source": src, "signature": sig}
            if xid:
                labels["xid"] = xid
            events.add(labels, n)
        problems = self.problems()
        if problems:
            raise CollectorError("; ".join(problems), partial=[events])
        return [events]

    def health(self) -> dict[str, object]:
        streams: list[dict[str, object]] = []
        for s in self._streams:
            entry: dict[str, object] = {
                "path": s.name, "source": s.source, "state": s.reader.state, "lines": s.matcher.lines,
                "truncated_lines": s.reader.truncated_lines, "rounds": s.rounds,
            }
            if isinstance(s.reader, FileTailer):
                entry["rotations"] = s.reader.rotations
                entry["truncations"] = s.reader.truncations
                if s.reader.target:
                    entry["symlink_target"] = s.reader.target
            if isinstance(s.reader, KmsgReader):
                entry["lost"] = s.reader.lost
            streams.append(entry)
        problems = self.problems()
        health: dict[str, object] = {
            "streams": streams, "running": any(s.thread is not None and s.thread.is_alive() for s in self._streams),
            "rounds": self.rounds,
            "startup": self.startup.state,
            # over-long lines cut to max_line_bytes and malformed kmsg records; the server exports it as
            # optiinfra_exporter_parse_errors_total{collector="logs"}
            "parse_errors": sum(s.reader.truncated_lines + getattr(s.reader, "malformed", 0) for s in self._streams),
        }
        if problems:
            health["error"] = "; ".join(problems)
        return health


def _sort_key(item: tuple[tuple[str, str, str], int]) -> tuple[str, str, int, str]:
    (source, signature, xid), _ = item
    return (source, signature, int(xid) if xid.isdigit() else -1, xid)
