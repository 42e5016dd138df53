"""GPU collector against a fake NVML binding (and, marked ``gpu``, against the real one)."""

from __future__ import annotations

import logging
import re
import sys
import warnings

import pytest
from conftest import promtool_check_metrics
from fake_nvml import (
    FakeGpu,
    FakeNvml,
    NVMLError_DriverNotLoaded,
    NVMLError_GpuIsLost,
    NVMLError_LibraryNotFound,
    NVMLError_NoPermission,
    NVMLError_Unknown,
)

from optiinfra.exporter.collectors.base import CollectorError
from optiinfra.exporter.collectors.gpu import GpuCollector
from optiinfra.exporter.exposition import encode
from optiinfra.metrics import GPU_LABELS, GPU_METRICS

SAMPLE = re.compile(r'^(?P<name>[A-Za-z_:][\w:]*)\{(?P<labels>[^}]*)\} (?P<value>\S+)$')
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')

UUID0 = "GPU-604ac76c-d9cf-fef3-62e9-d92044ab6e52"
UUID1 = "GPU-11111111-2222-3333-4444-555555555555"
UUID2 = "GPU-99999999-8888-7777-6666-555555555555"


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """{(name, sorted labels): value} of every sample line."""
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for line in text.splitlines():
        if line.startswith("#") or not line:
            continue
        m = SAMPLE.match(line)
        assert m, line
        labels = tuple(sorted(LABEL.findall(m["labels"])))
        out[(m["name"], labels)] = float(m["value"])
    return out


def value(text: str, name: str, gpu: str, **extra: str) -> float | None:
    for (n, labels), v in samples(text).items():
        d = dict(labels)
        if n == name and d["gpu"] == gpu and all(d.get(k) == val for k, val in extra.items()):
            return v
    return None


def promtool_check(text: str) -> None:
    """Real promtool: the text must parse; the only lints allowed are dcgm-exporter's own naming (counters
    without ``_total``, ``..._REPLAY_COUNTER``, the camelCase labels ``UUID``/``modelName``/``Hostname``), which
    compatibility needs."""
    returncode, findings = promtool_check_metrics(text)
    assert returncode in (0, 3), findings
    dcgm_lint = re.compile(r'DCGM_\w+ (counter metrics should have "_total" suffix'
                           r"|label names should be written in 'snake_case' not 'camelCase'"
                           r"|metric name should not include type 'counter')")
    for line in findings:
        assert dcgm_lint.fullmatch(line), line


def three_gpus() -> list[FakeGpu]:
    return [
        FakeGpu(uuid=UUID0, minor=0),
        FakeGpu(uuid=UUID1, minor=1, bus_id=b"00000000:5E:00.0", util_gpu=12, temp=40, power_mw=70_500,
                clock_reasons=0x1),
        FakeGpu(uuid=UUID2, minor=2, bus_id=b"00000000:86:00.0", name="NVIDIA A10G"),
    ]


async def started(nvml: FakeNvml) -> GpuCollector:
    collector = GpuCollector(nvml=nvml, hostname="node-a")
    await collector.start()
    return collector


async def test_every_field_under_dcgm_names_units_and_labels() -> None:
    nvml = FakeNvml(three_gpus())
    collector = await started(nvml)
    text = encode(await collector.collect())

    labels0 = {"gpu": "0", "UUID": UUID0, "device": "nvidia0", "modelName": "NVIDIA H100 80GB HBM3",
               "Hostname": "node-a", "pci_bus_id": "00000000:3B:00.0"}
    s = samples(text)
    assert s[("DCGM_FI_DEV_GPU_UTIL", tuple(sorted(labels0.items())))] == 87
    # Label order on the wire follows the catalogue (dcgm-exporter's set).
    line = next(x for x in text.splitlines() if x.startswith("DCGM_FI_DEV_GPU_UTIL{"))
    assert [k for k, _ in LABEL.findall(line)] == list(GPU_LABELS)

    assert value(text, "DCGM_FI_DEV_GPU_UTIL", "1") == 12
    assert value(text, "DCGM_FI_DEV_MEM_COPY_UTIL", "0") == 41
    assert value(text, "DCGM_FI_DEV_FB_USED", "0") == 70_000  # MiB
    assert value(text, "DCGM_FI_DEV_FB_FREE", "0") == 11_079  # MiB, partial MiB dropped like DCGM
    assert value(text, "DCGM_FI_DEV_GPU_TEMP", "1") == 40
    assert value(text, "DCGM_FI_DEV_MEMORY_TEMP", "0") == 71
    assert value(text, "DCGM_FI_DEV_POWER_USAGE", "0") == pytest.approx(412.345)  # mW -> W
    assert value(text, "DCGM_FI_DEV_POWER_USAGE", "1") == pytest.approx(70.5)
    assert value(text, "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "0") == 123_456_789  # mJ
    assert value(text, "DCGM_FI_DEV_SM_CLOCK", "0") == 1980
    assert value(text, "DCGM_FI_DEV_MEM_CLOCK", "0") == 2619
    assert value(text, "DCGM_FI_DEV_CLOCKS_EVENT_REASONS", "0") == 0x4
    assert value(text, "DCGM_FI_DEV_CLOCKS_EVENT_REASONS", "1") == 0x1
    assert value(text, "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL", "0") == 2
    assert value(text, "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", "0") == 0
    assert value(text, "DCGM_FI_DEV_PCIE_REPLAY_COUNTER", "0") == 5
    assert value(text, "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS", "0") == 3
    assert value(text, "DCGM_FI_DEV_XID_ERRORS", "0") == 0  # registered, no Xid yet
    assert not any(n == "DCGM_EXP_XID_ERRORS_COUNT" for n, _ in s)
    assert value(text, "DCGM_FI_DEV_GPU_UTIL", "2", modelName="NVIDIA A10G", device="nvidia2",
                 pci_bus_id="00000000:86:00.0") == 87

    # One HELP/TYPE per family, types from the catalogue; three GPUs per per-GPU family.
    types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))
    expected = {m.name: m.type for m in GPU_METRICS if m.name != "DCGM_EXP_XID_ERRORS_COUNT"}
    assert types == expected
    assert len(s) == 3 * len(expected)
    promtool_check(text)
    assert collector.health()["errors"] == {}
    await collector.close()
    assert nvml.shutdown_called and nvml.event_set_freed


async def test_static_labels_read_once_at_start() -> None:
    nvml = FakeNvml(three_gpus())
    collector = await started(nvml)
    await collector.collect()
    await collector.collect()
    assert nvml.calls.count("nvmlDeviceGetName") == 3
    assert nvml.calls.count("nvmlDeviceGetPciInfo") == 3
    assert nvml.calls.count("nvmlDeviceGetUtilizationRates") == 6


async def test_unsupported_fields_are_absent_not_zero() -> None:
    gpus = three_gpus()
    gpus[1].unsupported = {"nvmlDeviceGetTotalEccErrors", "nvmlDeviceGetRemappedRows",
                           "nvmlDeviceGetTotalEnergyConsumption", "nvmlDeviceGetPcieReplayCounter"}
    gpus[1].memory_temp = None  # field value NOT_SUPPORTED
    gpus[2].xid_events_supported = False
    gpus[2].power_mw = 9223372036854775794  # a blank sentinel
    collector = await started(FakeNvml(gpus))
    text = encode(await collector.collect())  # no CollectorError: unsupported is not a failure

    for name in ("DCGM_FI_DEV_ECC_SBE_VOL_TOTAL", "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL",
                 "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS", "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION",
                 "DCGM_FI_DEV_PCIE_REPLAY_COUNTER", "DCGM_FI_DEV_MEMORY_TEMP"):
        assert value(text, name, "1") is None, name
        assert value(text, name, "0") is not None, name
    assert value(text, "DCGM_FI_DEV_XID_ERRORS", "2") is None
    assert value(text, "DCGM_FI_DEV_XID_ERRORS", "1") == 0
    assert value(text, "DCGM_FI_DEV_POWER_USAGE", "2") is None
    assert value(text, "DCGM_FI_DEV_GPU_UTIL", "1") == 12
    assert collector.health()["errors"] == {}
    gpus_health = collector.health()["gpus"]
    assert isinstance(gpus_health, list)
    assert [g["xid_events"] for g in gpus_health] == [True, True, False]
    promtool_check(text)


async def test_old_binding_without_clocks_event_reasons_uses_throttle_reasons() -> None:
    nvml = FakeNvml(three_gpus())
    # pynvml before 12.535 only has the ...ThrottleReasons name.
    object.__setattr__(nvml, "nvmlDeviceGetCurrentClocksEventReasons", None)
    collector = await started(nvml)
    text = encode(await collector.collect())
    assert value(text, "DCGM_FI_DEV_CLOCKS_EVENT_REASONS", "0") == 0x4
    assert "nvmlDeviceGetCurrentClocksThrottleReasons" in nvml.calls


@pytest.mark.parametrize("error", [NVMLError_Unknown, NVMLError_GpuIsLost])
async def test_one_failing_gpu_costs_success_but_keeps_the_others(error: type[Exception]) -> None:
    gpus = three_gpus()
    nvml = FakeNvml(gpus)
    collector = await started(nvml)
    gpus[1].fail = error
    with pytest.raises(CollectorError) as info:
        await collector.collect()
    partial = encode(info.value.partial)
    assert "gpu1" in str(info.value)
    assert value(partial, "DCGM_FI_DEV_GPU_UTIL", "0") == 87
    assert value(partial, "DCGM_FI_DEV_GPU_UTIL", "2") == 87
    assert value(partial, "DCGM_FI_DEV_GPU_UTIL", "1") is None
    assert value(partial, "DCGM_FI_DEV_SM_CLOCK", "1") is None
    promtool_check(partial)
    errors = collector.health()["errors"]
    assert isinstance(errors, dict) and set(errors) == {"gpu1"}
    if error is NVMLError_GpuIsLost:
        # A lost GPU is not asked again for its other fields in the same scrape.
        assert sum(1 for c in nvml.calls[-30:] if c == "nvmlDeviceGetMemoryInfo") == 2

    gpus[1].fail = None  # recovers: the next scrape is complete again
    text = encode(await collector.collect())
    assert value(text, "DCGM_FI_DEV_GPU_UTIL", "1") == 12
    assert collector.health()["errors"] == {}


async def test_permission_error_on_one_field_is_reported_and_the_rest_exported() -> None:
    gpus = three_gpus()
    nvml = FakeNvml(gpus)
    collector = await started(nvml)

    def denied(handle: object) -> int:
        raise NVMLError_NoPermission()

    object.__setattr__(nvml, "nvmlDeviceGetPcieReplayCounter", denied)
    with pytest.raises(CollectorError) as info:
        await collector.collect()
    partial = encode(info.value.partial)
    assert value(partial, "DCGM_FI_DEV_PCIE_REPLAY_COUNTER", "0") is None
    assert value(partial, "DCGM_FI_DEV_SM_CLOCK", "0") == 1980
    assert "pcie_replay" in str(info.value)


async def test_gpu_that_cannot_be_opened_keeps_scrapes_partial() -> None:
    gpus = three_gpus()
    gpus[2].fail = NVMLError_Unknown
    collector = await started(FakeNvml(gpus))
    with pytest.raises(CollectorError) as info:
        await collector.collect()
    assert value(encode(info.value.partial), "DCGM_FI_DEV_GPU_UTIL", "0") == 87
    assert value(encode(info.value.partial), "DCGM_FI_DEV_GPU_UTIL", "2") is None
    assert "cannot open device" in str(info.value)


async def test_xid_events_counted_per_gpu_and_xid() -> None:
    nvml = FakeNvml(three_gpus())
    collector = await started(nvml)
    nvml.raise_xid(0, 79)
    nvml.raise_xid(0, 13)
    nvml.raise_xid(0, 13)
    nvml.raise_xid(2, 48)
    nvml.raise_event(1, nvml.nvmlEventTypeClock, 1)  # not an Xid: ignored
    text = encode(await collector.collect())
    assert not nvml.pending_events  # drained without waiting
    assert value(text, "DCGM_EXP_XID_ERRORS_COUNT", "0", xid="13") == 2
    assert value(text, "DCGM_EXP_XID_ERRORS_COUNT", "0", xid="79") == 1
    assert value(text, "DCGM_EXP_XID_ERRORS_COUNT", "2", xid="48") == 1
    assert value(text, "DCGM_EXP_XID_ERRORS_COUNT", "1", xid="13") is None
    assert value(text, "DCGM_FI_DEV_XID_ERRORS", "0") == 13  # the last one
    assert value(text, "DCGM_FI_DEV_XID_ERRORS", "1") == 0
    assert value(text, "DCGM_FI_DEV_XID_ERRORS", "2") == 48
    promtool_check(text)

    text = encode(await collector.collect())  # nothing new: counters unchanged
    assert value(text, "DCGM_EXP_XID_ERRORS_COUNT", "0", xid="13") == 2

    nvml.raise_xid(0, 79)
    nvml.raise_xid(1, 94)
    text = encode(await collector.collect())  # only the new events are added
    assert value(text, "DCGM_EXP_XID_ERRORS_COUNT", "0", xid="13") == 2
    assert value(text, "DCGM_EXP_XID_ERRORS_COUNT", "0", xid="79") == 2
    assert value(text, "DCGM_EXP_XID_ERRORS_COUNT", "1", xid="94") == 1
    assert value(text, "DCGM_FI_DEV_XID_ERRORS", "0") == 79
    assert value(text, "DCGM_FI_DEV_XID_ERRORS", "1") == 94


@pytest.mark.parametrize("error", [NVMLError_LibraryNotFound, NVMLError_DriverNotLoaded])
async def test_no_nvml_disables_with_one_log_record(error: type[Exception], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="optiinfra.exporter.collectors.gpu")
    collector = GpuCollector(nvml=FakeNvml([], init_error=error), hostname="node-a")
    await collector.start()
    assert await collector.collect() == []
    assert await collector.collect() == []
    await collector.close()
    assert collector.disabled
    health = collector.health()
    assert health["disabled"] is True and "no NVML" in str(health["reason"])
    records = [r for r in caplog.records if r.name == "optiinfra.exporter.collectors.gpu"]
    assert len(records) == 1 and "disabled" in records[0].getMessage()


async def test_pynvml_not_installed_disables(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="optiinfra.exporter.collectors.gpu")
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml -> ImportError
    collector = GpuCollector()
    await collector.start()
    assert await collector.collect() == []
    assert collector.disabled and "pynvml is not installed" in collector.disabled_reason
    assert len([r for r in caplog.records if r.name == "optiinfra.exporter.collectors.gpu"]) == 1


async def test_other_init_failure_retries_and_costs_success(caplog: pytest.LogCaptureFixture) -> None:
    nvml = FakeNvml(three_gpus(), init_error=NVMLError_Unknown)
    collector = await started(nvml)
    assert not collector.disabled
    with pytest.raises(CollectorError):
        await collector.collect()
    nvml.init_error = None  # e.g. the driver finished loading
    text = encode(await collector.collect())
    assert value(text, "DCGM_FI_DEV_GPU_UTIL", "0") == 87


async def test_real_pynvml_without_gpu_disables_itself() -> None:
    """This machine has pynvml but no NVIDIA driver: the real binding must disable the collector."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            import pynvml

        pynvml.nvmlInit()
    except ImportError:
        pytest.skip("pynvml not installed")
    except pynvml.NVMLError:
        collector = GpuCollector()
        await collector.start()
        assert collector.disabled
        assert await collector.collect() == []
        return
    pynvml.nvmlShutdown()
    pytest.skip("an NVIDIA GPU is present; see test_real_gpu")


@pytest.mark.gpu
async def test_real_gpu() -> None:
    """Needs an NVIDIA GPU: skipped (also in CI) when NVML cannot initialize."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        import pynvml
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        pytest.skip(f"no usable NVIDIA GPU/driver: {exc}")
    pynvml.nvmlShutdown()
    collector = GpuCollector()
    await collector.start()
    try:
        text = encode(await collector.collect())
    except CollectorError as exc:
        text = encode(exc.partial)
    finally:
        await collector.close()
    assert value(text, "DCGM_FI_DEV_FB_USED", "0") is not None
    util = value(text, "DCGM_FI_DEV_GPU_UTIL", "0")
    assert util is not None and 0 <= util <= 100
    promtool_check(text)
