"""Host and engine-process metrics (``llm_host_*``) from psutil and the cgroup memory files.

- Host: CPU utilization ratio (psutil's busy share since the previous scrape, primed in ``start``), memory
  total/available, swap used, load1, logical CPUs.
- Engine process: the shared ``EngineProcess`` (by ``--engine-pid`` or ``--engine-process``), summed over its
  process tree (vLLM's API server, engine core and workers are separate processes; resident memory is the sum
  of RSS, so pages shared between them count more than once), plus the engine's start time. Not found (or not
  readable): its series are absent and the collector reports failure (``optiinfra_collector_success 0``, the
  host series still exported), so a lost engine never looks like a healthy one.
- Container memory: the engine's container, or no series. The engine's cgroup is read from
  ``/proc/<pid>/cgroup``; its memory files are looked for (1) where that path lies under this container's
  ``/sys/fs/cgroup`` (bare metal, host cgroup namespace), else (2) at the root of the engine's own
  ``/sys/fs/cgroup`` through ``/proc/<pid>/root`` (Kubernetes with private cgroup namespaces, where the path
  shows as ``/../<container>``), accepted only when that cgroup's ``cgroup.procs`` lists the engine. Never this
  process's own cgroup (the sidecar's limit is not the engine's), never the cgroup root. The directory is
  found once per engine process. cgroup v2 ``memory.current``/``memory.max`` (``max``: limit absent), cgroup
  v1 ``memory/memory.usage_in_bytes``/``memory.limit_in_bytes`` (the "unlimited" page-rounded maximum:
  absent).
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import psutil

from optiinfra.metrics import HOST_METRICS

from ..exposition import Family, Part
from .base import CollectorError
from .process import EngineProcess

log = logging.getLogger(__name__)

#: cgroup v1 reports "no limit" as a huge page-rounded number (9223372036854771712 on x86-64); v2 says ``max``.
UNLIMITED_THRESHOLD = 1 << 62
#: (usage, limit) files of the memory controller, per cgroup version.
_MEMORY_FILES = {"v2": ("memory.current", "memory.max"), "v1": ("memory.usage_in_bytes", "memory.limit_in_bytes")}


def _read_int(path: Path) -> int | None:
    """An integer cgroup file, or None when it is missing, unreadable or not a number (v2 ``max``)."""
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
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


class HostCollector:
    """psutil host metrics, the engine process's CPU and memory, and its container's cgroup memory."""

    name = "host"
    disabled = False

    def __init__(self, engine: EngineProcess | None = None, *,
                 cgroup_root: Path = Path("/sys/fs/cgroup")) -> None:
        self.engine = engine if engine is not None else EngineProcess()
        self.cgroup_root = cgroup_root
        self._process_note = ""
        self._cgroup: tuple[int, str, Path] | None = None
        """(engine pid, cgroup version, directory) of the engine's container memory files."""
        self._cgroup_source = ""

    async def start(self) -> None:
        # The first cpu_percent(interval=None) only sets the reference point.
        await asyncio.to_thread(psutil.cpu_percent, None)

    async def collect(self) -> list[Part]:
        return await asyncio.to_thread(self._collect_sync)

    async def close(self) -> None:
        self._cgroup = None

    def health(self) -> dict[str, object]:
        return {
            "engine_pid": self.engine.pid,
            "engine_process": self._process_note or self.engine.note,
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
        process = self.engine.find()
        self._process_note = ""
        if process is not None:
            try:
                values.update(self._tree_usage(process))
            except psutil.NoSuchProcess:
                self.engine.forget("engine process exited")
                process = None
            except psutil.AccessDenied as exc:
                self._process_note = f"cannot read engine process {process.pid}: {exc}"
        usage, limit = self._cgroup_memory(process.pid if process is not None else None)
        if usage is not None:
            values["llm_host_cgroup_memory_usage_bytes"] = usage
        if limit is not None:
            values["llm_host_cgroup_memory_limit_bytes"] = limit
        parts: list[Part] = [Family.of(m).add({}, values[m.name]) for m in HOST_METRICS if m.name in values]
        if self.engine.configured and "llm_host_process_cpu_seconds_total" not in values:
            raise CollectorError(f"engine process: {self._process_note or self.engine.note}", partial=parts)
        return parts

    def _tree_usage(self, process: psutil.Process) -> dict[str, float]:
        """CPU seconds and resident memory summed over the engine's process tree, and the engine's start time
        (``NoSuchProcess`` when the engine itself is gone; a descendant that exits meanwhile is skipped)."""
        with process.oneshot():
            times = process.cpu_times()
            cpu, rss, started = times.user + times.system, process.memory_info().rss, process.create_time()
        for child in self.engine.tree(process)[1:]:
            try:
                with child.oneshot():
                    times = child.cpu_times()
                    cpu, rss = cpu + times.user + times.system, rss + child.memory_info().rss
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        return {"llm_host_process_cpu_seconds_total": cpu, "llm_host_process_resident_memory_bytes": rss,
                "llm_host_process_start_time_seconds": started}

    def _cgroup_memory(self, pid: int | None) -> tuple[int | None, int | None]:
        if pid is None:
            self._cgroup, self._cgroup_source = None, "no engine process: no container memory series"
            return None, None
        if self._cgroup is None or self._cgroup[0] != pid:
            found = self._find_cgroup(pid)
            if found is None:
                return None, None
            self._cgroup = (pid, *found)
        _, version, directory = self._cgroup
        usage, limit = (_read_int(directory / name) for name in _MEMORY_FILES[version])
        return usage, limit if limit is not None and limit < UNLIMITED_THRESHOLD else None

    def _find_cgroup(self, pid: int) -> tuple[str, Path] | None:
        """The engine's memory cgroup directory (see the module doc), or None with the reason noted."""
        proc = self.engine.proc_root / str(pid)
        v2, v1 = _cgroup_paths(proc / "cgroup")
        own = proc / "root" / "sys" / "fs" / "cgroup"
        candidates: list[tuple[str, Path, bool]] = []
        for version, path, here, there in (("v2", v2, self.cgroup_root, own),
                                           ("v1", v1, self.cgroup_root / "memory", own / "memory")):
            if path is None:
                continue
            # A cgroup outside this container's cgroup namespace shows as "/../x": not visible here.
            if ".." not in path.split("/"):
                candidates.append((version, here / path.lstrip("/"), False))
            candidates.append((version, there, True))
        for version, directory, verify in candidates:
            if _read_int(directory / _MEMORY_FILES[version][0]) is None:
                continue
            if verify and not _lists(directory / "cgroup.procs", pid):
                continue
            self._cgroup_source = f"{version} {directory}"
            log.info("engine container memory found", extra={"collector": self.name, "pid": pid,
                                                             "cgroup": str(directory)})
            return version, directory
        self._cgroup_source = (f"no memory cgroup files of engine pid {pid} visible (cgroup {v2 or v1}); "
                               "no container memory series")
        return None


def _lists(procs: Path, pid: int) -> bool:
    """True when a ``cgroup.procs`` file lists ``pid``."""
    try:
        return str(pid) in procs.read_text().split()
    except OSError:
        return False
