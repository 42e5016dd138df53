"""The engine process, found once and shared by the collectors that read it (host: CPU, memory, cgroup;
gpu: the GPUs the engine was given).

Found by ``engine_pid``, else by ``process_name`` (the process name, the basename of the interpreter or script
in its argv, or the ``-m`` module, e.g. ``vllm`` or ``sglang``); the oldest match wins, so an engine's worker
children do not replace it. The ``psutil.Process`` is cached and looked up again when it exits: by name, and
for an engine given by pid, by the name that process had (its ``-m`` module's top package or its script), so
a restarted engine is followed. ``tree()`` is the engine with its descendants (vLLM runs its engine core and
workers as child processes). In Kubernetes
the sidecar sees the engine through the pod's shared PID namespace (``shareProcessNamespace: true``).

Its ``/proc/<pid>/environ`` and ``/proc/<pid>/root`` are readable only by the same user (or with
``CAP_SYS_PTRACE``): run the engine as the sidecar's user. ``/proc/<pid>/cgroup`` is readable by anyone.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

import psutil

log = logging.getLogger(__name__)

#: Largest ``/proc/<pid>/environ`` read (Linux caps argv + environ at a quarter of the stack limit).
MAX_ENVIRON_BYTES = 4 * 1024 * 1024


def _module(cmdline: list[str]) -> str | None:
    """The ``-m`` module of a Python command line."""
    return next((cmdline[i + 1] for i, arg in enumerate(cmdline[:-1]) if arg == "-m"), None)


def _matches(name: str, cmdline: list[str], wanted: str) -> bool:
    if name == wanted or any(os.path.basename(arg) == wanted for arg in cmdline[:2]):
        return True
    module = _module(cmdline)
    return module is not None and (module == wanted or module.startswith(wanted + "."))


def _name_of(process: psutil.Process) -> str:
    """The name ``_matches`` finds ``process`` by again: its ``-m`` module's top package, else its script's or
    program's basename ('' when unreadable)."""
    try:
        cmdline = process.cmdline()
        name = process.name()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return ""
    module = _module(cmdline)
    if module is not None:
        return module.split(".")[0]
    if len(cmdline) > 1 and not cmdline[1].startswith("-") and os.path.basename(cmdline[0]).startswith("python"):
        return os.path.basename(cmdline[1])
    return name


class EngineProcess:
    """Where the engine process is, for every collector that needs it (thread-safe: collectors run in
    worker threads)."""

    def __init__(self, engine_pid: int | None = None, process_name: str | None = None,
                 *, proc_root: Path = Path("/proc")) -> None:
        self.engine_pid = engine_pid
        self.process_name = process_name
        self.proc_root = proc_root
        self.note = ""
        """How the process was found, or why it was not."""
        self._process: psutil.Process | None = None
        self._followed = ""
        """The name a pid-given engine had: a restarted engine is found again by it."""
        self._lock = threading.Lock()

    @property
    def configured(self) -> bool:
        """True when the sidecar was told which process the engine is (by pid or by name)."""
        return self.engine_pid is not None or bool(self.process_name)

    @property
    def pid(self) -> int | None:
        """The pid of the process last found (None: not found)."""
        process = self._process
        return process.pid if process is not None else None

    def find(self) -> psutil.Process | None:
        """The engine process, cached while it runs; None when it is not (or no longer) there."""
        with self._lock:
            cached = self._process
            if cached is not None and cached.is_running():
                return cached
            self._process = None
            if self.engine_pid is not None and not self._followed:
                try:
                    self._process = psutil.Process(self.engine_pid)
                    self.note = f"pid {self.engine_pid}"
                    self._followed = _name_of(self._process)
                except psutil.NoSuchProcess:
                    self.note = f"no process with pid {self.engine_pid}"
            name = self.process_name or self._followed
            if self._process is None and name:
                self._process = self._find_by_name(name)
            if cached is not None and self._process is None:
                log.warning("engine process %d is gone: %s", cached.pid, self.note)
            return self._process

    def tree(self, process: psutil.Process) -> list[psutil.Process]:
        """The engine process and its living descendants (children that exit meanwhile are left out)."""
        try:
            return [process, *process.children(recursive=True)]
        except psutil.NoSuchProcess:
            return [process]

    def forget(self, note: str) -> None:
        """The cached process turned out to be gone (a read raised ``NoSuchProcess``)."""
        with self._lock:
            self._process = None
            self.note = note

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
            self.note = f"no process named {wanted!r}"
        else:
            self.note = f"pid {best.pid} found by name {wanted!r}"
            log.info("engine process found", extra={"pid": best.pid, "process_name": wanted})
        return best

    def environ(self, pid: int) -> dict[str, str]:
        """The environment ``pid`` started with (``/proc/<pid>/environ``); ``OSError`` when unreadable
        (``PermissionError``: another user's process)."""
        with (self.proc_root / str(pid) / "environ").open("rb") as f:
            raw = f.read(MAX_ENVIRON_BYTES)
        out: dict[str, str] = {}
        for entry in raw.split(b"\0"):
            key, sep, value = entry.partition(b"=")
            if sep and key:
                out[key.decode(errors="replace")] = value.decode(errors="replace")
        return out
