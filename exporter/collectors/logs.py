"""Failure signatures in tailed logs as ``llm_log_events_total{source, signature[, xid]}``.

A background task polls every followed file (and /dev/kmsg with ``kmsg=True``) every ``poll_interval``
seconds. Reading and matching run in a worker thread, at most ``batch_bytes`` per file per round, with an
``await`` between rounds, so a 100 MB backlog (``from_start``) never holds the event loop. ``collect``
only renders the counters.

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
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..exposition import Family, render_all
from ..logsig import COUNTED, KNOWN_XIDS, SOURCES, Counts, Source, StartupTimer, StreamMatcher
from ..tailer import DEFAULT_MAX_LINE_BYTES, FileTailer, KmsgReader, LineReader
from .base import CollectorError

log = logging.getLogger(__name__)

EVENTS_METRIC = "llm_log_events_total"
EVENTS_HELP = "Known failure signatures found in tailed logs."


@dataclass
class _Stream:
    name: str
    source: Source
    reader: LineReader
    matcher: StreamMatcher


class LogCollector:
    """Counts failure signatures in engine and kernel logs."""

    name = "logs"

    def __init__(
        self,
        files: list[tuple[Path, str]],
        from_start: bool = False,
        kmsg: bool = False,
        *,
        poll_interval: float = 0.5,
        startup_timeout: float = 600.0,
        xid_window: float = 1.0,
        batch_bytes: int = 4 << 20,
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
        kmsg_path: Path = Path("/dev/kmsg"),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.poll_interval = poll_interval
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
            self._streams.append(_Stream(
                str(kmsg_path), "kernel", KmsgReader(kmsg_path, from_start=from_start),
                StreamMatcher("kernel", xid_window=xid_window),
            ))
        self._lock = threading.Lock()
        self._counts: dict[tuple[Source, str, str], int] = {}
        self._task: asyncio.Task[None] | None = None
        self._inflight: asyncio.Future[bool] | None = None
        """The worker-thread round in progress: ``close`` lets it finish before closing the files."""
        self._failure = ""
        self.rounds = 0
        """Polling rounds begun (each reads every stream once)."""

    # -- life cycle -------------------------------------------------------------------------------------
    async def start(self) -> None:
        if self._task is None and self._streams:
            self._task = asyncio.create_task(self._run(), name="log-collector")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._inflight is not None:
            await asyncio.wait([self._inflight])
            if not self._inflight.cancelled():
                self._inflight.exception()  # already reported by _run; retrieved so asyncio does not warn
            self._inflight = None
        for stream in self._streams:
            stream.reader.close()

    async def _run(self) -> None:
        try:
            while True:
                self._inflight = asyncio.ensure_future(asyncio.to_thread(self.poll_once))
                more = await asyncio.shield(self._inflight)
                await asyncio.sleep(0 if more else self.poll_interval)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug must cost this collector, not the sidecar
            self._failure = f"{type(exc).__name__}: {exc}"
            log.exception("log collector stopped")

    def poll_once(self) -> bool:
        """Read and match one round of every stream; True when some stream has more input waiting."""
        more = False
        self.rounds += 1
        for stream in self._streams:
            blocks, pending = stream.reader.poll(self.batch_bytes)
            more = more or pending
            now = self._clock()
            counts: Counts = {}
            if stream.reader.take_fresh():
                stream.matcher.arm_startup(now)
            for block in blocks:
                stream.matcher.feed_text(block, now, counts)
            stream.matcher.tick(now, counts)
            if counts:
                with self._lock:
                    for (signature, xid), n in counts.items():
                        key = (stream.source, signature, xid)
                        self._counts[key] = self._counts.get(key, 0) + n
        return more

    # -- output -----------------------------------------------------------------------------------------
    def counts(self) -> dict[tuple[Source, str, str], int]:
        """(source, signature, xid) -> events so far (only what was counted; no zero series)."""
        with self._lock:
            return dict(self._counts)

    async def collect(self) -> str:
        if self._failure:
            raise CollectorError(f"log tailing stopped: {self._failure}")
        counted = self.counts()
        values: dict[tuple[str, str, str], int] = {}
        for source in sorted({s.source for s in self._streams}):
            for signature in COUNTED[source]:
                if signature == "nvidia_xid":
                    for number in KNOWN_XIDS:
                        values[(source, signature, str(number))] = 0
                else:
                    values[(source, signature, "")] = 0
        for key, count in counted.items():
            values[key] = count
        events = Family(EVENTS_METRIC, "counter", EVENTS_HELP)
        for (src, sig, xid), n in sorted(values.items(), key=_sort_key):
            labels = {"source": src, "signature": sig}
            if xid:
                labels["xid"] = xid
            events.add(labels, n)
        return render_all((events,))

    def health(self) -> dict[str, object]:
        streams: list[dict[str, object]] = []
        for s in self._streams:
            entry: dict[str, object] = {
                "path": s.name, "source": s.source, "state": s.reader.state, "lines": s.matcher.lines,
                "truncated_lines": s.reader.truncated_lines,
            }
            if isinstance(s.reader, FileTailer):
                entry["rotations"] = s.reader.rotations
                entry["truncations"] = s.reader.truncations
            if isinstance(s.reader, KmsgReader):
                entry["lost"] = s.reader.lost
            streams.append(entry)
        health: dict[str, object] = {
            "streams": streams, "running": self._task is not None and not self._failure, "rounds": self.rounds,
            "startup": self.startup.state,
            # over-long lines cut to max_line_bytes and malformed kmsg records; the server exports it as
            # optiinfra_exporter_parse_errors_total{collector="logs"}
            "parse_errors": sum(s.reader.truncated_lines + getattr(s.reader, "malformed", 0) for s in self._streams),
        }
        if self._failure:
            health["error"] = self._failure
        return health


def _sort_key(item: tuple[tuple[str, str, str], int]) -> tuple[str, str, int, str]:
    (source, signature, xid), _ = item
    return (source, signature, int(xid) if xid.isdigit() else -1, xid)
