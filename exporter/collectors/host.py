"""Host and engine-process metrics (``llm_host_*``) from psutil and the cgroup memory files.

- Host: CPU utilization ratio (psutil's busy share since the previous scrape, primed in ``start``), memory
  total/available, swap used, load1, logical CPUs.
- Engine process: found by ``engine_pid``, else by ``process_name`` (the process name, the basename of the
  interpreter or script in its argv, or the ``-m`` module, e.g. ``vllm`` or ``sglang``); the oldest match
  wins, so an engine's worker children do not replace it. The ``psutil.Process`` is cached and looked up
  again when it exits. Not found (or not readable): its series are absent.
- Container memory: the cgroup of the engine process when it is visible, else this process's cgroup, else
  the cgroup root. cgroup v2 ``memory.current``/``memory.max`` (``max``: limit absent), cgroup v1
  ``memory/memory.usage_in_bytes``/``memory.limit_in_bytes`` (the "unlimited" page-rounded maximum: absent).
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

import psutil

from optiinfra.metrics import HOST_METRICS

from ..exposition import Family, Part

log = logging.getLogger(__name__)

#: cgroup v1 reports "no limit" as a huge page-rounded number (9223372036854771712 on x86-64).
UNLIMITED_THRESHOLD = 1 << 62


def _read_int(path: Path) -> int | None:
    """An integer cgroup file, or None when it is missing, unreadable or not a number (v2 ``max``)."""
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    try:
        return int(text)
    except ValueError:
        return None


def _cgroup_paths(proc_cgroup: Path) -> tuple[str | None, str | None]:
    """(v2 path, v1 memory path) of a process from its ``/proc/<pid>/cgroup``."""
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return None, None
    v2: str | None = None
    v1: str | None = None
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        hierarchy, controllers, path = parts
        if hierarchy == "0" and controllers == "":
            v2 = path
        elif "memory" in controllers.split(","):
            v1 = path
    return v2, v1


def _matches(name: str, cmdline: list[str], wanted: str) -> bool:
    if name == wanted:
        return True
    if any(os.path.basename(arg) == wanted for arg in cmdline[:2]):
        return True
    for i, arg in enumerate(cmdline[:-1]):
        if arg == "-m":
            module = cmdline[i + 1]
            return module == wanted or module.startswith(wanted + ".")
    return False


class HostCollector:
    """psutil host metrics, the engine process's CPU and memory, and its container's cgroup memory."""

    name = "host"

    def __init__(
        self,
        engine_pid: int | None = None,
        process_name: str | None = None,
        *,
        cgroup_root: Path = Path("/sys/fs/cgroup"),
        proc_root: Path = Path("/proc"),
    ) -> None:
        self.engine_pid = engine_pid
        self.process_name = process_name
        self.cgroup_root = cgroup_root
        self.proc_root = proc_root
        self._process: psutil.Process | None = None
        self._process_note = ""
        self._cgroup_source = ""

    async def start(self) -> None:
        # The first cpu_percent(interval=None) only sets the reference point.
        await asyncio.to_thread(psutil.cpu_percent, None)

    async def collect(self) -> list[Part]:
        return await asyncio.to_thread(self._collect_sync)

    async def close(self) -> None:
        self._process = None

    def health(self) -> dict[str, object]:
        return {
            "engine_pid": self._process.pid if self._process is not None else None,
            "engine_process": self._process_note,
            "cgroup": self._cgroup_source,
        }

    # -- worker thread ---------------------------------------------------------------------------

    def _collect_sync(self) -> list[Part]:
        values: dict[str, float] = {}
        values["llm_host_cpu_utilization_ratio"] = psutil.cpu_percent(None) / 100
        memory = psutil.virtual_memory()
        values["llm_host_memory_total_bytes"] = memory.total
        values["llm_host_memory_available_bytes"] = memory.available
        values["llm_host_swap_used_bytes"] = psutil.swap_memory().used
        values["llm_host_load1"] = psutil.getloadavg()[0]
        cpus = psutil.cpu_count(logical=True)
        if cpus:
            values["llm_host_cpus"] = cpus
        process = self._engine_process()
        if process is not None:
            try:
                with process.oneshot():
                    times = process.cpu_times()
                    rss = process.memory_info().rss
            except psutil.NoSuchProcess:
                self._process = None
                self._process_note = "engine process exited"
            except psutil.AccessDenied as exc:
                self._process_note = f"cannot read engine process {process.pid}: {exc}"
            else:
                values["llm_host_process_cpu_seconds_total"] = times.user + times.system
                values["llm_host_process_resident_memory_bytes"] = rss
        usage, limit = self._cgroup_memory(process.pid if process is not None else None)
        if usage is not None:
            values["llm_host_cgroup_memory_usage_bytes"] = usage
        if limit is not None:
            values["llm_host_cgroup_memory_limit_bytes"] = limit
        return [Family.of(m).add({}, values[m.name]) for m in HOST_METRICS if m.name in values]

    def _engine_process(self) -> psutil.Process | None:
        cached = self._process
        if cached is not None and cached.is_running():
            return cached
        self._process = None
        if self.engine_pid is not None:
            try:
                self._process = psutil.Process(self.engine_pid)
                self._process_note = f"pid {self.engine_pid}"
            except psutil.NoSuchProcess:
                self._process_note = f"no process with pid {self.engine_pid}"
        if self._process is None and self.process_name:
            self._process = self._find_by_name(self.process_name)
        if cached is not None and self._process is None:
            log.warning("engine process %d is gone: %s", cached.pid, self._process_note)
        return self._process

    def _find_by_name(self, wanted: str) -> psutil.Process | None:
        own = os.getpid()
        best: psutil.Process | None = None
        best_created = float("inf")
        for proc in psutil.process_iter(["name", "cmdline", "create_time"]):
            if proc.pid == own:
                continue
            info = proc.info
            if not _matches(info.get("name") or "", info.get("cmdline") or [], wanted):
                continue
            created = info.get("create_time") or 0.0
            if created < best_created:
                best, best_created = proc, created
        if best is None:
            self._process_note = f"no process named {wanted!r}"
        else:
            self._process_note = f"pid {best.pid} found by name {wanted!r}"
            log.info("engine process found", extra={"collector": self.name, "pid": best.pid, "process_name": wanted})
        return best

    def _cgroup_memory(self, engine_pid: int | None) -> tuple[int | None, int | None]:
        owners = ([str(engine_pid)] if engine_pid is not None else []) + ["self"]
        candidates_v2: list[Path] = []
        candidates_v1: list[Path] = []
        for owner in owners:
            v2, v1 = _cgroup_paths(self.proc_root / owner / "cgroup")
            # A cgroup outside this container's cgroup namespace shows as "/../x": not visible here.
            if v2 is not None and ".." not in v2.split("/"):
                candidates_v2.append(self.cgroup_root / v2.lstrip("/"))
            if v1 is not None and ".." not in v1.split("/"):
                candidates_v1.append(self.cgroup_root / "memory" / v1.lstrip("/"))
        candidates_v2.append(self.cgroup_root)
        candidates_v1.append(self.cgroup_root / "memory")
        for directory in candidates_v2:
            usage = _read_int(directory / "memory.current")
            if usage is not None:
                self._cgroup_source = f"v2 {directory}"
                return usage, _read_int(directory / "memory.max")
        for directory in candidates_v1:
            usage = _read_int(directory / "memory.usage_in_bytes")
            if usage is not None:
                limit = _read_int(directory / "memory.limit_in_bytes")
                self._cgroup_source = f"v1 {directory}"
                return usage, limit if limit is not None and limit < UNLIMITED_THRESHOLD else None
        self._cgroup_source = "no cgroup memory files"
        return None, None
