"""GPU metrics from NVML under dcgm-exporter's names, units and labels.

Device handles and the static labels (UUID, model name, PCI bus id, device node) are read once in
``start``; each scrape reads the dynamic fields of every GPU in a worker thread (NVML calls block).

- A field the GPU or driver does not support (``NVML_ERROR_NOT_SUPPORTED``, or a function the installed
  driver/binding lacks) is absent, never 0.
- Any other NVML error costs that field (a lost GPU: the rest of that GPU) for this scrape and makes the
  scrape partial: ``collect`` raises ``CollectorError`` whose ``partial`` holds the other GPUs' families,
  so the server exports them and reports ``optiinfra_collector_success{collector="gpu"} 0``.
- No NVML on the machine (pynvml missing, library not found, driver not loaded): the collector disables
  itself, logs that once, and ``collect`` returns no family. ``disabled`` and ``health()["disabled"]`` say so;
  the server reports it as ``optiinfra_collector_enabled 0`` and ``optiinfra_collector_success 0``.
- Which GPUs: only the engine's (per-pod attribution; the sidecar itself may see every GPU of the node).
  ``gpu_uuids`` (``--gpu-uuids``) names them explicitly; else, when the engine process is configured
  (``--engine-pid``/``--engine-process``), they are read from its ``/proc/<pid>/environ`` once per engine
  process: ``NVIDIA_VISIBLE_DEVICES`` (the NVIDIA container toolkit's device list, in the node's NVML view:
  ``all``; ``none``, ``void`` or empty: no GPU; a comma list of indices, ``GPU-<uuid>``, MIG devices
  ``MIG-<uuid>``, ``MIG-GPU-<uuid>/<gi>/<ci>`` or ``<gpu>:<mig>``; a path, as with the device plugin's
  volume-mounts strategy, cannot be read: pass ``--gpu-uuids``), then ``CUDA_VISIBLE_DEVICES`` on top of it
  (indices into that list in PCI bus order, UUIDs or UUID prefixes; empty: no GPU; CUDA's rule that an
  invalid entry hides itself and every later one). A MIG device counts as its whole parent GPU (the series
  are per GPU). Unset variables restrict nothing. Without either setting every GPU NVML lists is exported.
  Devices injected without the variable (CDI annotations leave a CUDA image's own ``all``) cannot be told
  apart this way: there, pass ``--gpu-uuids``.
  An engine process that is configured but not found, or whose environment cannot be read (another user's
  process), exports no GPU series and costs ``optiinfra_collector_success{collector="gpu"} 0``; a listed
  device NVML does not know makes the scrape partial.
- ``Hostname`` is the node name given (``--node-name``, in Kubernetes the downward API's ``spec.nodeName``),
  else this machine's host name.
- Xid errors come from an NVML event set (``nvmlEventTypeXidCriticalError``), drained without waiting on
  every scrape: ``DCGM_FI_DEV_XID_ERRORS`` is the last Xid of each GPU (0 until one happens) and
  ``DCGM_EXP_XID_ERRORS_COUNT{xid}`` counts them since the collector started.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import re
import socket
import threading
import types
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import psutil

from optiinfra.metrics import GPU_LABELS, GPU_METRICS

from ..exposition import Family, Part
from .base import CollectorError
from .process import EngineProcess

log = logging.getLogger(__name__)

_T = TypeVar("_T")

#: DCGM "blank" sentinels start here; such values mean "no data".
BLANK_THRESHOLD = 9.2e18
#: Upper bound on events drained per scrape, so a storm cannot hold the worker thread.
MAX_EVENTS_PER_SCRAPE = 10_000

_MIB = 1024 * 1024

#: ``nvmlFieldValue_t.valueType`` -> member of the value union.
_VALUE_MEMBERS = {0: "dVal", 1: "uiVal", 2: "ulVal", 3: "ullVal", 4: "sllVal", 5: "siVal", 6: "usVal"}


class _Unsupported(Exception):
    """The field does not exist on this GPU/driver/binding: leave it absent."""


class _GpuLost(Exception):
    """Stop reading this GPU for this scrape."""


class _NoAttribution(Exception):
    """Which GPUs are the engine's cannot be told: export none."""


@dataclass
class _Gpu:
    index: int
    handle: Any
    labels: dict[str, str]
    uuid: str
    xid_registered: bool = False
    last_xid: int = 0
    xid_counts: dict[int, int] = field(default_factory=dict)


def _text(value: object) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


class GpuCollector:
    """dcgm-exporter compatible GPU metrics read through NVML (``pynvml``, or an injected module)."""

    name = "gpu"

    def __init__(self, nvml: types.ModuleType | None = None, hostname: str | None = None, *,
                 engine: EngineProcess | None = None, gpu_uuids: str | None = None) -> None:
        self._nvml = nvml
        self._hostname = hostname if hostname else socket.gethostname()
        self._engine = engine if engine is not None else EngineProcess()
        self._override = None if gpu_uuids is None else parse_device_list(gpu_uuids)
        self._override_text = gpu_uuids
        self._selection: tuple[tuple[int, float], list[_Gpu], list[str], str] | None = None
        """(engine pid and start time, its GPUs, devices NVML does not list, where the list came from)."""
        self._selected_note = ""
        self._mig_parents: dict[str, str] = {}
        self._gpus: list[_Gpu] = []
        self._event_set: Any = None
        self._initialized = False
        self._lock = asyncio.Lock()
        # A scrape cancelled by the server's time limit leaves its worker thread running: NVML work and
        # the Xid state it updates are serialized here too, not only by the asyncio lock.
        self._thread_lock = threading.Lock()
        self.disabled = False
        self.disabled_reason = ""
        self._init_error = ""
        self._open_errors: dict[str, str] = {}
        """Devices NVML could not open at start: they keep every scrape partial."""
        self._errors: dict[str, str] = {}
        """Problems of the last scrape (and of start), keyed by ``gpu<N>``, ``nvml`` or ``xid_events``."""

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        async with self._lock:
            await asyncio.to_thread(self._locked, self._start_sync)

    async def collect(self) -> list[Part]:
        async with self._lock:
            if not self._initialized and not self.disabled:
                await asyncio.to_thread(self._locked, self._start_sync)
            if self.disabled:
                return []
            if not self._initialized:
                raise CollectorError(f"NVML initialization failed: {self._init_error}")
            families, errors = await asyncio.to_thread(self._locked, self._collect_sync)
        self._errors = errors = {**self._open_errors, **errors}
        if errors:
            summary = "; ".join(f"{key}: {msg}" for key, msg in sorted(errors.items()))
            raise CollectorError(f"NVML errors: {summary}", partial=families)
        return families

    async def close(self) -> None:
        async with self._lock:
            if self._initialized:
                await asyncio.to_thread(self._locked, self._close_sync)

    def health(self) -> dict[str, object]:
        return {
            "disabled": self.disabled,
            "reason": self.disabled_reason or self._init_error,
            "gpus": [
                {"gpu": g.index, "UUID": g.uuid, "modelName": g.labels["modelName"],
                 "xid_events": g.xid_registered}
                for g in self._gpus
            ],
            "exported": self._selected_note,
            "errors": dict(self._errors),
        }

    # -- start / close (worker thread) ------------------------------------------------------------

    def _locked(self, fn: Callable[[], _T]) -> _T:
        with self._thread_lock:
            return fn()

    def _disable(self, reason: str) -> None:
        self.disabled = True
        self.disabled_reason = reason
        log.warning("GPU collector disabled: %s", reason, extra={"collector": self.name})

    def _start_sync(self) -> None:
        if self._initialized or self.disabled:
            return
        if self._nvml is None:
            try:
                with warnings.catch_warnings():
                    # The "pynvml" distribution warns that it is a shim for nvidia-ml-py; the module is the same.
                    warnings.simplefilter("ignore", FutureWarning)
                    self._nvml = importlib.import_module("pynvml")
            except ImportError as exc:
                self._disable(f"pynvml is not installed ({exc}); pip install nvidia-ml-py")
                return
        nvml = self._nvml
        try:
            nvml.nvmlInit()
        except nvml.NVMLError as exc:
            code = getattr(exc, "value", None)
            if code in (nvml.NVML_ERROR_LIBRARY_NOT_FOUND, nvml.NVML_ERROR_DRIVER_NOT_LOADED):
                self._disable(f"no NVML on this machine ({exc}); use --no-gpu to silence this")
                return
            if self._init_error != str(exc):
                log.warning("NVML initialization failed, will retry: %s", exc, extra={"collector": self.name})
            self._init_error = str(exc)
            return
        self._initialized = True
        self._init_error = ""
        self._open_errors = {}
        try:
            count = int(nvml.nvmlDeviceGetCount())
        except nvml.NVMLError as exc:
            self._open_errors["nvml"] = f"nvmlDeviceGetCount: {exc}"
            count = 0
        self._gpus = []
        for index in range(count):
            try:
                self._gpus.append(self._open_gpu(index))
            except nvml.NVMLError as exc:
                self._open_errors[f"gpu{index}"] = f"cannot open device: {exc}"
                log.warning("cannot open GPU %d: %s", index, exc, extra={"collector": self.name})
        self._register_xid_events()
        self._errors = dict(self._open_errors)
        log.info("GPU collector found %d GPU(s)", len(self._gpus), extra={"collector": self.name})

    def _open_gpu(self, index: int) -> _Gpu:
        nvml = self._nvml
        assert nvml is not None
        handle = nvml.nvmlDeviceGetHandleByIndex(index)
        uuid = _text(nvml.nvmlDeviceGetUUID(handle))
        model = _text(nvml.nvmlDeviceGetName(handle))
        pci_bus_id = _text(nvml.nvmlDeviceGetPciInfo(handle).busId)
        try:
            minor = int(nvml.nvmlDeviceGetMinorNumber(handle))
        except nvml.NVMLError:
            minor = index
        labels = {
            "gpu": str(index),
            "UUID": uuid,
            "device": f"nvidia{minor}",
            "modelName": model,
            "Hostname": self._hostname,
            "pci_bus_id": pci_bus_id,
        }
        assert tuple(labels) == GPU_LABELS
        return _Gpu(index=index, handle=handle, labels=labels, uuid=uuid)

    def _register_xid_events(self) -> None:
        nvml = self._nvml
        assert nvml is not None
        if not self._gpus:
            return
        try:
            self._event_set = nvml.nvmlEventSetCreate()
        except (nvml.NVMLError, AttributeError) as exc:
            log.info("NVML event sets unavailable, no Xid metrics: %s", exc, extra={"collector": self.name})
            return
        for gpu in self._gpus:
            try:
                nvml.nvmlDeviceRegisterEvents(gpu.handle, nvml.nvmlEventTypeXidCriticalError, self._event_set)
                gpu.xid_registered = True
            except nvml.NVMLError as exc:
                log.info("GPU %d: no Xid events: %s", gpu.index, exc, extra={"collector": self.name})
        if not any(g.xid_registered for g in self._gpus):
            self._free_event_set()

    def _free_event_set(self) -> None:
        nvml = self._nvml
        if self._event_set is None or nvml is None:
            return
        try:
            nvml.nvmlEventSetFree(self._event_set)
        except nvml.NVMLError as exc:
            log.debug("nvmlEventSetFree: %s", exc)
        self._event_set = None

    def _close_sync(self) -> None:
        nvml = self._nvml
        assert nvml is not None
        self._free_event_set()
        try:
            nvml.nvmlShutdown()
        except nvml.NVMLError as exc:
            log.debug("nvmlShutdown: %s", exc)
        self._initialized = False
        self._gpus = []
        self._selection = None
        self._mig_parents = {}

    # -- scrape (worker thread) -------------------------------------------------------------------

    def _collect_sync(self) -> tuple[list[Part], dict[str, str]]:
        errors: dict[str, str] = {}
        families = {m.name: Family.of(m) for m in GPU_METRICS}
        self._drain_xid_events(errors)
        try:
            selected = self._select(errors)
        except _NoAttribution as exc:
            errors["attribution"] = str(exc)
            self._selected_note = f"none: {exc}"
            selected = []
        for gpu in selected:
            self._read_gpu(gpu, families, errors)
        for gpu in selected:
            if gpu.xid_registered:
                families["DCGM_FI_DEV_XID_ERRORS"].add(gpu.labels, gpu.last_xid)
            for xid in sorted(gpu.xid_counts):
                families["DCGM_EXP_XID_ERRORS_COUNT"].add({**gpu.labels, "xid": str(xid)}, gpu.xid_counts[xid])
        return [families[m.name] for m in GPU_METRICS], errors

    def _select(self, errors: dict[str, str]) -> list[_Gpu]:
        """The engine's GPUs (see the module doc); raises ``_NoAttribution`` when they cannot be told."""
        if self._override_text is not None:
            self._selected_note = f"--gpu-uuids {self._override_text}"
            if self._override is None:
                return self._gpus
            chosen, unknown = self._resolve(self._override, self._gpus, relative=False)
            self._note_unknown(errors, "--gpu-uuids", unknown)
            return chosen
        if not self._engine.configured:
            self._selected_note = "every GPU NVML lists (no engine process configured)"
            return self._gpus
        process = self._engine.find()
        if process is None:
            raise _NoAttribution(f"engine process not found ({self._engine.note}); its GPUs are unknown")
        try:
            key = (process.pid, float(process.create_time()))
        except psutil.Error as exc:
            raise _NoAttribution(f"engine process {process.pid}: {exc}") from exc
        if self._selection is None or self._selection[0] != key:
            self._selection = (key, *self._from_environ(process.pid))
        _, chosen, unknown, source = self._selection
        self._note_unknown(errors, source, unknown)
        self._selected_note = source
        return chosen

    def _from_environ(self, pid: int) -> tuple[list[_Gpu], list[str], str]:
        try:
            env = self._engine.environ(pid)
        except OSError as exc:
            raise _NoAttribution(
                f"cannot read the environment of engine pid {pid} ({exc}); run the sidecar as the engine's "
                "user or pass --gpu-uuids") from exc
        chosen, source = self._gpus, f"engine pid {pid}"
        unknown: list[str] = []
        nvidia = env.get("NVIDIA_VISIBLE_DEVICES")
        if nvidia is not None:
            if nvidia.strip().startswith("/"):
                raise _NoAttribution(
                    f"engine pid {pid} has NVIDIA_VISIBLE_DEVICES={nvidia} (a device list in files); pass --gpu-uuids")
            tokens = parse_device_list(nvidia)
            if tokens is not None:
                chosen, unknown = self._resolve(tokens, chosen, relative=False)
            source += f" NVIDIA_VISIBLE_DEVICES={nvidia}"
        cuda = env.get("CUDA_VISIBLE_DEVICES")
        if cuda is not None:
            tokens = [t.strip() for t in cuda.split(",")] if cuda.strip() else []
            chosen, _ = self._resolve(tokens, chosen, relative=True)
            source += f" CUDA_VISIBLE_DEVICES={cuda}"
        if nvidia is None and cuda is None:
            source += ": no visible-devices variable, every GPU"
        log.info("GPUs of the engine", extra={"collector": self.name, "source": source,
                                              "gpus": [g.uuid for g in chosen]})
        return chosen, unknown, source

    @staticmethod
    def _note_unknown(errors: dict[str, str], source: str, unknown: list[str]) -> None:
        if unknown:
            errors["attribution"] = f"{source}: NVML lists no device {', '.join(unknown)}"

    def _resolve(self, tokens: list[str], among: list[_Gpu], *, relative: bool) -> tuple[list[_Gpu], list[str]]:
        """The GPUs of ``among`` that ``tokens`` name, and the tokens that name none. ``relative``: CUDA's
        reading (indices into ``among``, UUID prefixes, and an invalid entry ends the list)."""
        chosen: list[_Gpu] = []
        unknown: list[str] = []
        for token in tokens:
            gpu = self._match(token, among, relative)
            if gpu is None:
                if relative:
                    break
                unknown.append(token)
            elif gpu not in chosen:
                chosen.append(gpu)
        chosen.sort(key=lambda g: g.index)
        return chosen, unknown

    def _match(self, token: str, among: list[_Gpu], relative: bool) -> _Gpu | None:
        index_match = _INDEX.fullmatch(token)
        if index_match is not None:
            index = int(index_match[1])
            if relative:
                return among[index] if index < len(among) else None
            return next((g for g in among if g.index == index), None)
        uuid = token.lower()
        if uuid.startswith("mig-gpu-"):
            uuid = uuid[len("mig-"):].split("/", 1)[0]
        elif uuid.startswith("mig-"):
            parent = self._mig_parent(token)
            if parent is None:
                return None
            uuid = parent.lower()
        if not uuid.startswith("gpu-"):
            return None
        found = [g for g in among if g.uuid.lower() == uuid or (relative and g.uuid.lower().startswith(uuid))]
        return found[0] if len(found) == 1 else None

    def _mig_parent(self, mig_uuid: str) -> str | None:
        """The UUID of the GPU a ``MIG-<uuid>`` device lives on (asked of NVML once)."""
        if mig_uuid not in self._mig_parents:
            nvml = self._nvml
            assert nvml is not None
            try:
                mig = nvml.nvmlDeviceGetHandleByUUID(mig_uuid)
                parent = nvml.nvmlDeviceGetDeviceHandleFromMigDeviceHandle(mig)
                self._mig_parents[mig_uuid] = _text(nvml.nvmlDeviceGetUUID(parent))
            except (nvml.NVMLError, AttributeError) as exc:
                log.warning("MIG device %s: no parent GPU: %s", mig_uuid, exc, extra={"collector": self.name})
                return None
        return self._mig_parents[mig_uuid]

    def _read_gpu(self, gpu: _Gpu, families: dict[str, Family], errors: dict[str, str]) -> None:
        nvml = self._nvml
        assert nvml is not None
        problems: list[str] = []
        for reader in _READERS:
            try:
                values = reader(nvml, gpu.handle)
            except _Unsupported:
                continue
            except _GpuLost as exc:
                problems.append(f"{reader.__name__.lstrip('_')}: {exc}")
                break
            except nvml.NVMLError as exc:
                problems.append(f"{reader.__name__.lstrip('_')}: {exc}")
                continue
            for name, value in values.items():
                if value is not None:
                    families[name].add(gpu.labels, value)
        if problems:
            errors[f"gpu{gpu.index}"] = "; ".join(problems)

    def _drain_xid_events(self, errors: dict[str, str]) -> None:
        nvml = self._nvml
        assert nvml is not None
        if self._event_set is None:
            return
        by_uuid = {g.uuid: g for g in self._gpus}
        for _ in range(MAX_EVENTS_PER_SCRAPE):
            try:
                event = nvml.nvmlEventSetWait(self._event_set, 0)
            except nvml.NVMLError as exc:
                if getattr(exc, "value", None) != nvml.NVML_ERROR_TIMEOUT:
                    errors["xid_events"] = f"nvmlEventSetWait: {exc}"
                return
            if not int(event.eventType) & nvml.nvmlEventTypeXidCriticalError:
                continue
            xid = int(event.eventData)
            try:
                gpu = by_uuid.get(_text(nvml.nvmlDeviceGetUUID(event.device)))
            except nvml.NVMLError as exc:
                errors["xid_events"] = f"Xid {xid} on an unidentifiable device: {exc}"
                continue
            if gpu is None:
                continue
            gpu.last_xid = xid
            gpu.xid_counts[xid] = gpu.xid_counts.get(xid, 0) + 1
            log.warning("GPU %d reported Xid %d", gpu.index, xid,
                        extra={"collector": self.name, "gpu": gpu.index, "xid": xid})


_INDEX = re.compile(r"(\d+)(?::\d+)?")
"""A device index, or ``<gpu>:<mig>`` (a MIG device by index: its parent GPU)."""


def parse_device_list(text: str) -> list[str] | None:
    """An ``NVIDIA_VISIBLE_DEVICES``-style list: None for ``all``; [] for ``none``, ``void`` or empty; else
    its entries (indices, GPU or MIG UUIDs)."""
    value = text.strip()
    if value.lower() == "all":
        return None
    if value.lower() in ("", "none", "void"):
        return []
    return [t.strip() for t in value.split(",") if t.strip()]


def check_device_list(text: str) -> str | None:
    """Why ``text`` is not a device list ``--gpu-uuids`` takes, or None when it is."""
    for token in parse_device_list(text) or []:
        lowered = token.lower()
        if _INDEX.fullmatch(token) is None and not lowered.startswith(("gpu-", "mig-")):
            return f"{token!r} is neither a GPU index, a GPU-<uuid> nor a MIG-<uuid>"
    return None


# -- field readers: (nvml, handle) -> {metric name: value or None} --------------------------------

_Reader = Callable[[Any, Any], dict[str, float | None]]


def _call(nvml: Any, names: tuple[str, ...], *args: Any) -> Any:
    """Call the first NVML function of ``names`` the binding has; map "not supported" to ``_Unsupported``."""
    for fn_name in names:
        fn: Callable[..., Any] | None = getattr(nvml, fn_name, None)
        if fn is None:
            continue
        try:
            return fn(*args)
        except nvml.NVMLError as exc:
            code = getattr(exc, "value", None)
            if code in (nvml.NVML_ERROR_NOT_SUPPORTED, nvml.NVML_ERROR_FUNCTION_NOT_FOUND):
                raise _Unsupported(str(exc)) from exc
            if code == nvml.NVML_ERROR_GPU_IS_LOST:
                raise _GpuLost(str(exc)) from exc
            raise
    raise _Unsupported(f"the NVML binding has none of {names}")


def _num(raw: Any) -> float | None:
    """A raw NVML number, or None when it is a blank sentinel (checked before any unit conversion)."""
    value = float(raw)
    return None if abs(value) >= BLANK_THRESHOLD else value


def _scalar(metric: str, names: tuple[str, ...], *constants: str, divisor: int = 1) -> _Reader:
    """The reader of one NVML number: the first of ``names`` the binding has, called with the handle and the
    NVML ``constants``; divided by ``divisor`` (the unit conversion)."""

    def read(nvml: Any, handle: Any) -> dict[str, float | None]:
        value = _num(_call(nvml, names, handle, *(getattr(nvml, c) for c in constants)))
        return {metric: None if value is None else value / divisor}

    read.__name__ = metric.removeprefix("DCGM_FI_DEV_").lower()  # in error messages: "pcie_replay_counter: ..."
    return read


def _utilization(nvml: Any, handle: Any) -> dict[str, float | None]:
    util = _call(nvml, ("nvmlDeviceGetUtilizationRates",), handle)
    return {"DCGM_FI_DEV_GPU_UTIL": _num(util.gpu), "DCGM_FI_DEV_MEM_COPY_UTIL": _num(util.memory)}


def _memory(nvml: Any, handle: Any) -> dict[str, float | None]:
    mem = _call(nvml, ("nvmlDeviceGetMemoryInfo",), handle)
    used, free = _num(mem.used), _num(mem.free)
    return {"DCGM_FI_DEV_FB_USED": None if used is None else int(mem.used) // _MIB,
            "DCGM_FI_DEV_FB_FREE": None if free is None else int(mem.free) // _MIB}


def _memory_temp(nvml: Any, handle: Any) -> dict[str, float | None]:
    (value,) = _call(nvml, ("nvmlDeviceGetFieldValues",), handle, [nvml.NVML_FI_DEV_MEMORY_TEMP])
    code = int(value.nvmlReturn)
    if code in (nvml.NVML_ERROR_NOT_SUPPORTED, nvml.NVML_ERROR_FUNCTION_NOT_FOUND):
        raise _Unsupported("memory temperature")
    if code != nvml.NVML_SUCCESS:
        raise nvml.NVMLError(code)
    member = _VALUE_MEMBERS.get(int(value.valueType))
    if member is None:
        raise _Unsupported(f"unknown NVML value type {value.valueType}")
    return {"DCGM_FI_DEV_MEMORY_TEMP": _num(getattr(value.value, member))}


def _remapped_rows(nvml: Any, handle: Any) -> dict[str, float | None]:
    _corrected, uncorrected, *_rest = _call(nvml, ("nvmlDeviceGetRemappedRows",), handle)
    return {"DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS": _num(uncorrected)}


_READERS: tuple[_Reader, ...] = (
    _utilization,
    _memory,
    _scalar("DCGM_FI_DEV_GPU_TEMP", ("nvmlDeviceGetTemperature",), "NVML_TEMPERATURE_GPU"),
    _memory_temp,
    _scalar("DCGM_FI_DEV_POWER_USAGE", ("nvmlDeviceGetPowerUsage",), divisor=1000),  # milliwatts
    _scalar("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", ("nvmlDeviceGetTotalEnergyConsumption",)),
    _scalar("DCGM_FI_DEV_SM_CLOCK", ("nvmlDeviceGetClockInfo",), "NVML_CLOCK_SM"),
    _scalar("DCGM_FI_DEV_MEM_CLOCK", ("nvmlDeviceGetClockInfo",), "NVML_CLOCK_MEM"),
    _scalar("DCGM_FI_DEV_CLOCKS_EVENT_REASONS",
            ("nvmlDeviceGetCurrentClocksEventReasons", "nvmlDeviceGetCurrentClocksThrottleReasons")),
    _scalar("DCGM_FI_DEV_ECC_SBE_VOL_TOTAL", ("nvmlDeviceGetTotalEccErrors",),
            "NVML_MEMORY_ERROR_TYPE_CORRECTED", "NVML_VOLATILE_ECC"),
    _scalar("DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", ("nvmlDeviceGetTotalEccErrors",),
            "NVML_MEMORY_ERROR_TYPE_UNCORRECTED", "NVML_VOLATILE_ECC"),
    _scalar("DCGM_FI_DEV_PCIE_REPLAY_COUNTER", ("nvmlDeviceGetPcieReplayCounter",)),
    _remapped_rows,
)
