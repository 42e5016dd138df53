"""The supervised engine process and its flags.

``Engine`` runs one argv (no shell), restarts it when it dies on its own, and restarts it with new flags on
request, health-gated: ``restart`` returns whether ``/health`` answered 2xx within the start timeout.
``flag_value`` / ``with_flag`` read and change one launch flag of an argv (``--flag value``, ``--flag=value``,
or a bare boolean ``--flag``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import aiohttp

log = logging.getLogger(__name__)


def _find(argv: Sequence[str], flag: str) -> tuple[int, bool] | None:
    """(index, inline) of ``flag`` in argv: inline when written ``--flag=value``."""
    for i, arg in enumerate(argv):
        if arg == flag:
            return i, False
        if arg.startswith(flag + "="):
            return i, True
    return None


def _takes_value(argv: Sequence[str], index: int) -> bool:
    return index + 1 < len(argv) and not argv[index + 1].startswith("--")


def flag_value(argv: Sequence[str], flag: str) -> str | None:
    """The value of ``flag`` in argv; ``"true"`` for a bare boolean flag, None when absent."""
    found = _find(argv, flag)
    if found is None:
        return None
    index, inline = found
    if inline:
        return argv[index].split("=", 1)[1]
    return argv[index + 1] if _takes_value(argv, index) else "true"


def with_flag(argv: Sequence[str], flag: str, value: bool | int | float | str) -> list[str]:
    """A copy of argv with ``flag`` set to ``value`` (True: bare flag present, False: flag removed)."""
    out = list(argv)
    found = _find(out, flag)
    if found is not None:
        index, inline = found
        width = 1 if inline or not _takes_value(out, index) else 2
        del out[index:index + width]
    else:
        index = len(out)
    if value is False:
        return out
    out[index:index] = [flag] if value is True else [flag, str(value)]
    return out


def changed_flags(before: Sequence[str], after: Sequence[str]) -> dict[str, tuple[str | None, str | None]]:
    """``{flag: (old, new)}`` for every ``--flag`` whose value differs between two argvs."""
    flags = {a.split("=", 1)[0] for a in (*before, *after) if a.startswith("--")}
    diff = {f: (flag_value(before, f), flag_value(after, f)) for f in sorted(flags)}
    return {f: pair for f, pair in diff.items() if pair[0] != pair[1]}


def _lower_priority(pid: int, niceness: int) -> None:
    """Lower the CPU priority of the engine started as ``pid`` in a session of its own.

    On Linux with autogroup scheduling (the default of most distributions) each session is scheduled as one
    group, and a process's niceness only weighs against the processes of its own session: ``nice`` in the
    engine command then leaves a busy-looping engine as strong as the sidecar or Prometheus next to it. The
    session's autogroup niceness is what weighs against them, and it covers every process the engine forks,
    whenever it forks them. The leader's own niceness is set too, for kernels without autogroup (processes it
    forks from then on inherit it).
    """
    try:
        with open(f"/proc/{pid}/autogroup", "w", encoding="ascii") as group:
            group.write(str(niceness))
    except FileNotFoundError:
        pass  # a kernel without autogroup
    except OSError as exc:
        log.warning("could not lower the engine session's CPU priority", extra={"error": str(exc)})
    try:
        os.setpriority(os.PRIO_PROCESS, pid, niceness)
    except OSError as exc:
        log.warning("could not lower the engine's CPU priority", extra={"error": str(exc)})


@dataclass
class Engine:
    argv: list[str]
    health_url: str
    env: Mapping[str, str] = field(default_factory=dict)
    start_timeout: float = 300.0
    stop_timeout: float = 20.0
    crash_backoff: float = 2.0
    niceness: int = 0
    """CPU niceness of the engine's session (see ``_lower_priority``); 0 leaves it as the orchestrator's."""
    process: asyncio.subprocess.Process | None = None
    starts: int = 0
    _stopping: bool = False
    _watcher: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process and self.process.returncode is None else None

    async def start(self) -> None:
        self._stopping = False
        self.process = await asyncio.create_subprocess_exec(
            *self.argv, stdin=asyncio.subprocess.DEVNULL, env={**os.environ, **self.env}, start_new_session=True)
        self.starts += 1
        if self.niceness:
            _lower_priority(self.process.pid, self.niceness)
        log.info("engine started", extra={"pid": self.process.pid, "argv": " ".join(self.argv)})
        self._watcher = asyncio.create_task(self._watch(self.process))

    async def _watch(self, process: asyncio.subprocess.Process) -> None:
        """Restart the engine when it exits on its own (not when we stop it)."""
        code = await process.wait()
        if self._stopping or process is not self.process:
            return
        log.warning("engine exited on its own; restarting", extra={"status": code, "backoff": self.crash_backoff})
        await asyncio.sleep(self.crash_backoff)
        if not self._stopping and process is self.process:
            await self.start()

    async def stop(self) -> None:
        """SIGTERM the engine's process group, SIGKILL after the stop timeout."""
        self._stopping = True
        process = self.process
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), self.stop_timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
        # Workers in the group may outlive the leader for a moment; make sure none keeps the port.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        log.info("engine stopped", extra={"pid": process.pid, "status": process.returncode})

    async def wait_healthy(self) -> bool:
        """True once ``health_url`` answers 2xx; False when the process exits or the start timeout passes."""
        deadline = time.monotonic() + self.start_timeout
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
            while time.monotonic() < deadline:
                process = self.process
                if process is None or process.returncode is not None:
                    return False
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with session.get(self.health_url) as response:
                        if response.status < 300:
                            return True
                await asyncio.sleep(0.5)
        return False

    async def restart(self, argv: Sequence[str]) -> bool:
        """Stop, start with ``argv``, and report whether it came up healthy."""
        await self.stop()
        self.argv = list(argv)
        await self.start()
        return await self.wait_healthy()

    async def close(self) -> None:
        await self.stop()
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
