"""A fake NVML binding for the GPU collector's tests: the pynvml functions, constants and error classes the
collector uses, over a list of ``FakeGpu`` the test controls. Constants carry pynvml's real values."""

from __future__ import annotations

import time
import types
from collections import deque
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

NVML_SUCCESS = 0
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NO_PERMISSION = 4
NVML_ERROR_DRIVER_NOT_LOADED = 9
NVML_ERROR_TIMEOUT = 10
NVML_ERROR_LIBRARY_NOT_FOUND = 12
NVML_ERROR_FUNCTION_NOT_FOUND = 13
NVML_ERROR_GPU_IS_LOST = 15
NVML_ERROR_UNKNOWN = 999


class NVMLError(Exception):
    def __init__(self, value: int) -> None:
        super().__init__(f"NVML error {value}")
        self.value = value


def _error_class(name: str, code: int) -> type[NVMLError]:
    def init(self: NVMLError) -> None:
        NVMLError.__init__(self, code)

    return type(name, (NVMLError,), {"__init__": init})


NVMLError_NotSupported = _error_class("NVMLError_NotSupported", NVML_ERROR_NOT_SUPPORTED)
NVMLError_NoPermission = _error_class("NVMLError_NoPermission", NVML_ERROR_NO_PERMISSION)
NVMLError_DriverNotLoaded = _error_class("NVMLError_DriverNotLoaded", NVML_ERROR_DRIVER_NOT_LOADED)
NVMLError_Timeout = _error_class("NVMLError_Timeout", NVML_ERROR_TIMEOUT)
NVMLError_LibraryNotFound = _error_class("NVMLError_LibraryNotFound", NVML_ERROR_LIBRARY_NOT_FOUND)
NVMLError_FunctionNotFound = _error_class("NVMLError_FunctionNotFound", NVML_ERROR_FUNCTION_NOT_FOUND)
NVMLError_GpuIsLost = _error_class("NVMLError_GpuIsLost", NVML_ERROR_GPU_IS_LOST)
NVMLError_Unknown = _error_class("NVMLError_Unknown", NVML_ERROR_UNKNOWN)

MIB = 1024 * 1024


@dataclass
class FakeGpu:
    uuid: str
    name: str = "NVIDIA H100 80GB HBM3"
    bus_id: bytes = b"00000000:3B:00.0"
    minor: int = 0
    util_gpu: int = 87
    util_mem: int = 41
    used_bytes: int = 70_000 * MIB
    free_bytes: int = 11_079 * MIB + 123
    temp: int = 64
    memory_temp: int | None = 71
    power_mw: int = 412_345
    energy_mj: int = 123_456_789
    integrate_power: bool = False
    """The energy counter grows at ``power_mw`` from the first read on (mW x s = mJ), as a real GPU's does."""
    sm_clock: int = 1980
    mem_clock: int = 2619
    clock_reasons: int = 0x4
    ecc_sbe: int = 2
    ecc_dbe: int = 0
    pcie_replay: int = 5
    remapped_rows: tuple[int, int, int, int] = (1, 3, 0, 0)
    unsupported: set[str] = field(default_factory=set)
    """NVML function names that raise NOT_SUPPORTED on this GPU (``nvmlDeviceGetFieldValues`` included)."""
    fail: type[NVMLError] | None = None
    """Every call on this GPU raises this error once set."""
    xid_events_supported: bool = True


@dataclass(frozen=True)
class FakeHandle:
    index: int


class FakeNvml(types.ModuleType):
    """``nvml=`` for ``GpuCollector``: behaves like pynvml over ``gpus``."""

    NVMLError = NVMLError
    NVMLError_NotSupported = NVMLError_NotSupported
    NVMLError_Timeout = NVMLError_Timeout
    NVMLError_GpuIsLost = NVMLError_GpuIsLost
    NVMLError_Unknown = NVMLError_Unknown
    NVMLError_LibraryNotFound = NVMLError_LibraryNotFound
    NVMLError_DriverNotLoaded = NVMLError_DriverNotLoaded

    NVML_SUCCESS = NVML_SUCCESS
    NVML_ERROR_NOT_SUPPORTED = NVML_ERROR_NOT_SUPPORTED
    NVML_ERROR_DRIVER_NOT_LOADED = NVML_ERROR_DRIVER_NOT_LOADED
    NVML_ERROR_TIMEOUT = NVML_ERROR_TIMEOUT
    NVML_ERROR_LIBRARY_NOT_FOUND = NVML_ERROR_LIBRARY_NOT_FOUND
    NVML_ERROR_FUNCTION_NOT_FOUND = NVML_ERROR_FUNCTION_NOT_FOUND
    NVML_ERROR_GPU_IS_LOST = NVML_ERROR_GPU_IS_LOST
    NVML_ERROR_UNKNOWN = NVML_ERROR_UNKNOWN

    NVML_TEMPERATURE_GPU = 0
    NVML_CLOCK_SM = 1
    NVML_CLOCK_MEM = 2
    NVML_MEMORY_ERROR_TYPE_CORRECTED = 0
    NVML_MEMORY_ERROR_TYPE_UNCORRECTED = 1
    NVML_VOLATILE_ECC = 0
    NVML_FI_DEV_MEMORY_TEMP = 82
    NVML_VALUE_TYPE_UNSIGNED_INT = 1
    nvmlEventTypeXidCriticalError = 0x8
    nvmlEventTypeClock = 0x10

    def __init__(self, gpus: list[FakeGpu], init_error: type[NVMLError] | None = None,
                 migs: dict[str, int] | None = None) -> None:
        super().__init__("fake_nvml")
        self.gpus = gpus
        self.migs = migs or {}
        """MIG device UUID -> index of its parent GPU."""
        self.init_error = init_error
        self.initialized = False
        self.shutdown_called = False
        self.calls: list[str] = []
        self._energy_started: dict[int, float] = {}
        self.pending_events: deque[tuple[int, int, int]] = deque()
        """(gpu index, event type, data) delivered by nvmlEventSetWait to registered GPUs."""
        self.registered: set[int] = set()
        self.event_set_freed = False

    # -- test controls ---------------------------------------------------------------------------
    def raise_xid(self, index: int, xid: int) -> None:
        self.pending_events.append((index, self.nvmlEventTypeXidCriticalError, xid))

    def raise_event(self, index: int, event_type: int, data: int) -> None:
        self.pending_events.append((index, event_type, data))

    # -- helpers ---------------------------------------------------------------------------------
    def _gpu(self, fn: str, handle: FakeHandle) -> FakeGpu:
        self.calls.append(fn)
        if not self.initialized:
            raise NVMLError(1)  # NVML_ERROR_UNINITIALIZED
        gpu = self.gpus[handle.index]
        if gpu.fail is not None:
            raise gpu.fail()
        if fn in gpu.unsupported:
            raise NVMLError_NotSupported()
        return gpu

    # -- the pynvml API --------------------------------------------------------------------------
    def nvmlInit(self) -> None:
        if self.init_error is not None:
            raise self.init_error()
        self.initialized = True

    def nvmlShutdown(self) -> None:
        self.shutdown_called = True
        self.initialized = False

    def nvmlDeviceGetCount(self) -> int:
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> FakeHandle:
        if not 0 <= index < len(self.gpus):
            raise NVMLError(2)
        return FakeHandle(index)

    def nvmlDeviceGetHandleByUUID(self, uuid: str) -> FakeHandle:
        self.calls.append("nvmlDeviceGetHandleByUUID")
        if uuid in self.migs:
            return FakeHandle(1000 + self.migs[uuid])  # a MIG device handle
        for index, gpu in enumerate(self.gpus):
            if gpu.uuid == uuid:
                return FakeHandle(index)
        raise NVMLError(6)  # NVML_ERROR_NOT_FOUND

    def nvmlDeviceGetDeviceHandleFromMigDeviceHandle(self, handle: FakeHandle) -> FakeHandle:
        if handle.index < 1000:
            raise NVMLError(2)  # NVML_ERROR_INVALID_ARGUMENT: not a MIG device
        return FakeHandle(handle.index - 1000)

    def nvmlDeviceGetUUID(self, handle: FakeHandle) -> str:
        return self._gpu("nvmlDeviceGetUUID", handle).uuid

    def nvmlDeviceGetName(self, handle: FakeHandle) -> str:
        return self._gpu("nvmlDeviceGetName", handle).name

    def nvmlDeviceGetPciInfo(self, handle: FakeHandle) -> SimpleNamespace:
        return SimpleNamespace(busId=self._gpu("nvmlDeviceGetPciInfo", handle).bus_id)

    def nvmlDeviceGetMinorNumber(self, handle: FakeHandle) -> int:
        return self._gpu("nvmlDeviceGetMinorNumber", handle).minor

    def nvmlDeviceGetUtilizationRates(self, handle: FakeHandle) -> SimpleNamespace:
        gpu = self._gpu("nvmlDeviceGetUtilizationRates", handle)
        return SimpleNamespace(gpu=gpu.util_gpu, memory=gpu.util_mem)

    def nvmlDeviceGetMemoryInfo(self, handle: FakeHandle) -> SimpleNamespace:
        gpu = self._gpu("nvmlDeviceGetMemoryInfo", handle)
        return SimpleNamespace(total=gpu.used_bytes + gpu.free_bytes, used=gpu.used_bytes, free=gpu.free_bytes)

    def nvmlDeviceGetTemperature(self, handle: FakeHandle, sensor: int) -> int:
        assert sensor == self.NVML_TEMPERATURE_GPU
        return self._gpu("nvmlDeviceGetTemperature", handle).temp

    def nvmlDeviceGetFieldValues(self, handle: FakeHandle, field_ids: list[int]) -> list[SimpleNamespace]:
        gpu = self._gpu("nvmlDeviceGetFieldValues", handle)
        assert field_ids == [self.NVML_FI_DEV_MEMORY_TEMP]
        if gpu.memory_temp is None:
            return [SimpleNamespace(fieldId=field_ids[0], nvmlReturn=NVML_ERROR_NOT_SUPPORTED, valueType=0,
                                    value=SimpleNamespace(dVal=0.0))]
        return [SimpleNamespace(fieldId=field_ids[0], nvmlReturn=NVML_SUCCESS,
                                valueType=self.NVML_VALUE_TYPE_UNSIGNED_INT,
                                value=SimpleNamespace(uiVal=gpu.memory_temp))]

    def nvmlDeviceGetPowerUsage(self, handle: FakeHandle) -> int:
        return self._gpu("nvmlDeviceGetPowerUsage", handle).power_mw

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: FakeHandle) -> int:
        gpu = self._gpu("nvmlDeviceGetTotalEnergyConsumption", handle)
        if not gpu.integrate_power:
            return gpu.energy_mj
        started = self._energy_started.setdefault(handle.index, time.monotonic())
        return gpu.energy_mj + int(gpu.power_mw * (time.monotonic() - started))

    def nvmlDeviceGetClockInfo(self, handle: FakeHandle, clock: int) -> int:
        gpu = self._gpu("nvmlDeviceGetClockInfo", handle)
        return {self.NVML_CLOCK_SM: gpu.sm_clock, self.NVML_CLOCK_MEM: gpu.mem_clock}[clock]

    def nvmlDeviceGetCurrentClocksEventReasons(self, handle: FakeHandle) -> int:
        return self._gpu("nvmlDeviceGetCurrentClocksEventReasons", handle).clock_reasons

    def nvmlDeviceGetCurrentClocksThrottleReasons(self, handle: FakeHandle) -> int:
        return self._gpu("nvmlDeviceGetCurrentClocksThrottleReasons", handle).clock_reasons

    def nvmlDeviceGetTotalEccErrors(self, handle: FakeHandle, error_type: int, counter_type: int) -> int:
        gpu = self._gpu("nvmlDeviceGetTotalEccErrors", handle)
        assert counter_type == self.NVML_VOLATILE_ECC
        return gpu.ecc_sbe if error_type == self.NVML_MEMORY_ERROR_TYPE_CORRECTED else gpu.ecc_dbe

    def nvmlDeviceGetPcieReplayCounter(self, handle: FakeHandle) -> int:
        return self._gpu("nvmlDeviceGetPcieReplayCounter", handle).pcie_replay

    def nvmlDeviceGetRemappedRows(self, handle: FakeHandle) -> tuple[int, int, int, int]:
        return self._gpu("nvmlDeviceGetRemappedRows", handle).remapped_rows

    def nvmlEventSetCreate(self) -> object:
        return object()

    def nvmlDeviceRegisterEvents(self, handle: FakeHandle, event_types: int, event_set: object) -> None:
        gpu = self._gpu("nvmlDeviceRegisterEvents", handle)
        if not gpu.xid_events_supported:
            raise NVMLError_NotSupported()
        assert event_types == self.nvmlEventTypeXidCriticalError
        self.registered.add(handle.index)

    def nvmlEventSetWait(self, event_set: object, timeout_ms: int) -> SimpleNamespace:
        assert timeout_ms == 0, "the collector must never block on the event set"
        while self.pending_events:
            index, event_type, data = self.pending_events.popleft()
            if index in self.registered:
                return SimpleNamespace(device=FakeHandle(index), eventType=event_type, eventData=data,
                                       gpuInstanceId=0xFFFFFFFF, computeInstanceId=0xFFFFFFFF)
        raise NVMLError_Timeout()

    def nvmlEventSetFree(self, event_set: object) -> None:
        self.event_set_freed = True


def fake(gpus: list[FakeGpu], **kw: Any) -> FakeNvml:
    return FakeNvml(gpus, **kw)
