"""The sidecar's HTTP server: ``/metrics`` from every enabled collector, ``/health``, ``/health/detailed``.

Collectors are switched node_exporter style (``build_collectors``). On each scrape every enabled collector runs
concurrently under its own time limit; one that raises or times out costs its own
``optiinfra_collector_success{collector} 0`` (its ``CollectorError.partial`` output is still exported), never the
scrape. Collectors yield typed families and one encoder (``exposition.encode``) writes them, the static
``--label`` pairs included; the server never edits exposition text. Collectors report malformed input lines
through ``health()["parse_errors"]`` (a running count), which the server exports as
``optiinfra_exporter_parse_errors_total{collector}``.

``optiinfra_collector_enabled{collector}`` has one series per collector (``COLLECTORS``): 0 for one switched
off and for one that disabled itself (``collector.disabled``, e.g. gpu without NVML: its success is 0 too, the
reason in ``/health/detailed``). ``optiinfra_build_info`` says which build serves. ``/metrics`` is gzip- or
deflate-compressed when the scraper accepts it (Prometheus sends ``Accept-Encoding: gzip``).

Prometheus says when it gives up on a scrape (``X-Prometheus-Scrape-Timeout-Seconds``): that less a margin
(``scrape_budget``) becomes the scrape's ``SCRAPE_DEADLINE``, which the engine collector keeps when it is
sooner than its own time limits, so no upstream request outlives the scrape that wanted it. A header that is
not a number of seconds in (0, ``MAX_HEADER_SECONDS``] is ignored (one warning per distinct value).

Shutdown is bounded well below Kubernetes' 30 s grace period: aiohttp gives in-flight requests (and clients
stalled mid-request) ``SHUTDOWN_TIMEOUT`` seconds to finish and as long again once cancelled, then each
collector's ``close`` gets at most ``CLOSE_TIMEOUT`` (all closed concurrently): SIGTERM to exit in about 3 s
at worst.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from optiinfra import buildinfo
from optiinfra.exporter.collectors.base import SCRAPE_DEADLINE, Collector, CollectorError
from optiinfra.exporter.collectors.process import EngineProcess
from optiinfra.exporter.exposition import CONTENT_TYPE, Family, Part, encode
from optiinfra.metrics import SIDECAR_METRICS

log = logging.getLogger(__name__)

_SIDECAR = {m.name: m for m in SIDECAR_METRICS}
#: Seconds in-flight requests get on SIGTERM before they are cancelled (aiohttp's default is 60 s).
SHUTDOWN_TIMEOUT = 1.0
#: Seconds each collector's ``close`` gets on shutdown.
CLOSE_TIMEOUT = 1.0
DEFAULT_MAX_SERIES = 100_000
_BUILD_INFO = Family.of(buildinfo.BUILD_INFO).add(buildinfo.labels(), 1.0)
TIMEOUT_HEADER = "X-Prometheus-Scrape-Timeout-Seconds"
#: Header values above this (a day) are not a scrape time-out: ignored.
MAX_HEADER_SECONDS = 86_400.0
#: Least seconds a scrape gets, whatever the header says.
MIN_SCRAPE_BUDGET = 0.1
#: Most seconds kept back from the scraper's time-out (10% of it below 5 s) to answer in.
SCRAPE_MARGIN = 0.5


class ExporterConfig(BaseModel):
    """Everything ``optiinfra exporter`` is told (validated by the CLI before it gets here)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    upstream: str | None = None
    engine: Literal["auto", "vllm", "tgi", "sglang"] = "auto"
    listen_host: str = "0.0.0.0"
    listen_port: int = Field(9400, ge=0, le=65535)
    gpu: bool = True
    host: bool = True
    log_files: tuple[tuple[str, str], ...] = ()
    log_from_start: bool = False
    kmsg: bool = False
    passthrough: bool = False
    engine_config: dict[str, str] = Field(default_factory=dict)
    labels: dict[str, str] = Field(default_factory=dict)
    model: str | None = None
    engine_pid: int | None = None
    engine_process: str | None = None
    """Name of the engine process (``vllm``, ``sglang``, ...), found when no ``engine_pid`` is given."""
    gpu_uuids: str | None = None
    """The engine's GPUs, overriding what its environment says (``all``, or indices / GPU / MIG UUIDs)."""
    node_name: str | None = None
    """The ``Hostname`` label of GPU series (default: this machine's host name)."""
    scrape_timeout: float = Field(5.0, gt=0)
    """Time limit of one upstream (engine) scrape."""
    collector_timeout: float = Field(6.0, gt=0)
    """Time limit of one collector run inside a sidecar scrape."""
    max_body_bytes: int = Field(20 * 1024 * 1024, gt=0)
    max_series: int = Field(DEFAULT_MAX_SERIES, gt=0)
    """Most engine series one scrape may normalize; above it the engine collector fails alone."""


#: Every collector the sidecar has, on or off: ``engine`` with an upstream, ``gpu`` and ``host`` unless switched
#: off, ``logs`` with log files or kmsg.
COLLECTORS = ("engine", "gpu", "host", "logs")


def build_collectors(config: ExporterConfig) -> list[Collector]:
    """The enabled collectors; one ``EngineProcess`` is shared by every collector that reads the engine process."""
    process = EngineProcess(config.engine_pid, config.engine_process)
    collectors: list[Collector] = []
    if config.upstream is not None:
        from optiinfra.exporter.collectors.engine import EngineCollector  # noqa: PLC0415

        collectors.append(EngineCollector(
            config.upstream, engine=config.engine, timeout=config.scrape_timeout, budget=config.collector_timeout,
            max_bytes=config.max_body_bytes, max_series=config.max_series, passthrough=config.passthrough,
            engine_config=config.engine_config, labels=config.labels, model=config.model, process=process,
        ))
    if config.gpu:
        from optiinfra.exporter.collectors.gpu import GpuCollector  # noqa: PLC0415

        collectors.append(GpuCollector(hostname=config.node_name, engine=process, gpu_uuids=config.gpu_uuids))
    if config.host:
        from optiinfra.exporter.collectors.host import HostCollector  # noqa: PLC0415

        collectors.append(HostCollector(process))
    if config.log_files or config.kmsg:
        from optiinfra.exporter.collectors.logs import LogCollector  # noqa: PLC0415

        files = [(Path(path), source) for path, source in config.log_files]
        collectors.append(LogCollector(files, from_start=config.log_from_start, kmsg=config.kmsg))
    return collectors


@dataclass
class CollectorState:
    success: bool | None = None
    last_success: float | None = None
    last_error: str = ""
    duration: float = 0.0
    started: bool = False


@dataclass
class Sidecar:
    """What the app holds: its config, collectors and their last-run state."""

    config: ExporterConfig
    collectors: list[Collector]
    states: dict[str, CollectorState]
    ignored_header: str | None = None
    """The last ``TIMEOUT_HEADER`` value ignored (warned about once)."""


SIDECAR = web.AppKey("sidecar", Sidecar)


def create_app(config: ExporterConfig, collectors: Sequence[Collector] | None = None) -> web.Application:
    """The sidecar app. ``collectors`` replaces those the config enables (tests); they are started and closed here."""
    chosen = list(collectors) if collectors is not None else build_collectors(config)
    app = web.Application()
    app[SIDECAR] = Sidecar(config, chosen, {c.name: CollectorState() for c in chosen})
    app.cleanup_ctx.append(_collectors_ctx)
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/health", _health)
    app.router.add_get("/health/detailed", _health_detailed)
    return app


async def _collectors_ctx(app: web.Application) -> AsyncIterator[None]:
    sidecar = app[SIDECAR]
    for collector in sidecar.collectors:
        state = sidecar.states[collector.name]
        try:
            await collector.start()
            state.started = True
        except Exception as exc:  # a collector that cannot start fails alone, like one that cannot collect
            state.last_error = f"start failed: {exc}"
            log.exception("collector failed to start", extra={"collector": collector.name})
    log.info("collectors started", extra={"collectors": [c.name for c in sidecar.collectors]})
    yield
    await asyncio.gather(*(_close(collector) for collector in sidecar.collectors))


async def _close(collector: Collector) -> None:
    try:
        await asyncio.wait_for(collector.close(), CLOSE_TIMEOUT)
    except TimeoutError:
        log.warning("collector did not close in %gs; left behind", CLOSE_TIMEOUT, extra={"collector": collector.name})
    except Exception:
        log.exception("collector failed to close", extra={"collector": collector.name})


async def _run(collector: Collector, state: CollectorState, limit: float) -> Sequence[Part]:
    started = time.monotonic()
    parts: Sequence[Part] = ()
    error = ""
    try:
        parts = await asyncio.wait_for(collector.collect(), limit)
    except CollectorError as exc:
        parts, error = exc.partial, str(exc) or type(exc).__name__
    except TimeoutError:
        error = f"timed out after {limit:g}s"
    except Exception as exc:  # isolation boundary: a buggy collector costs its own success, never the scrape
        error = f"{type(exc).__name__}: {exc}"
        log.exception("collector raised", extra={"collector": collector.name})
    state.duration = time.monotonic() - started
    state.success = not error
    if error:
        state.last_error = error
    else:
        state.last_success = time.time()
    return parts


def _parse_errors(collector: Collector) -> float:
    try:
        value = collector.health().get("parse_errors", 0)
    except Exception:  # health() must not break /metrics either
        log.exception("collector health failed", extra={"collector": collector.name})
        return 0.0
    return float(value) if isinstance(value, int | float) else 0.0


async def render_metrics(sidecar: Sidecar) -> str:
    """One scrape: every collector concurrently, then the sidecar's own families, through the one encoder."""
    limit = sidecar.config.collector_timeout
    outputs = await asyncio.gather(*(_run(c, sidecar.states[c.name], limit) for c in sidecar.collectors))
    enabled, success, duration, errors = (Family.of(_SIDECAR[name]) for name in (
        "optiinfra_collector_enabled", "optiinfra_collector_success", "optiinfra_collector_duration_seconds",
        "optiinfra_exporter_parse_errors_total"))
    parts: list[Part] = []
    running = {c.name: c for c in sidecar.collectors}
    for name in sorted(set(COLLECTORS) - set(running)):
        enabled.add({"collector": name}, 0.0)
    for collector, output in zip(sidecar.collectors, outputs, strict=True):
        parts.extend(output)
        state = sidecar.states[collector.name]
        labels = {"collector": collector.name}
        enabled.add(labels, 0.0 if collector.disabled else 1.0)
        success.add(labels, 1.0 if state.success and not collector.disabled else 0.0)
        duration.add(labels, state.duration)
        errors.add(labels, _parse_errors(collector))
    return encode([*parts, enabled, success, duration, errors, _BUILD_INFO], sidecar.config.labels)


def scrape_budget(header: str) -> float | None:
    """Seconds a scrape may take given the scraper's ``TIMEOUT_HEADER``: it less 10% (at most
    ``SCRAPE_MARGIN``), at least ``MIN_SCRAPE_BUDGET``; None when it is not a number of seconds in
    (0, ``MAX_HEADER_SECONDS``]."""
    try:
        seconds = float(header)
    except ValueError:
        return None
    if not 0 < seconds <= MAX_HEADER_SECONDS:  # also NaN
        return None
    return max(MIN_SCRAPE_BUDGET, seconds - min(seconds / 10, SCRAPE_MARGIN))


async def _metrics(request: web.Request) -> web.Response:
    sidecar = request.app[SIDECAR]
    header = request.headers.get(TIMEOUT_HEADER)
    budget = None if header is None else scrape_budget(header)
    if budget is None and header is not None and header != sidecar.ignored_header:
        sidecar.ignored_header = header
        log.warning("ignored %s %r: not a number of seconds in (0, %g]", TIMEOUT_HEADER, header[:64],
                    MAX_HEADER_SECONDS)
    token = SCRAPE_DEADLINE.set(None if budget is None else asyncio.get_running_loop().time() + budget)
    try:
        body = await render_metrics(sidecar)
    finally:
        SCRAPE_DEADLINE.reset(token)
    response = web.Response(body=body.encode("utf-8"), headers={"Content-Type": CONTENT_TYPE})
    response.enable_compression()  # only when the request's Accept-Encoding allows it
    return response


async def _health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def _health_detailed(request: web.Request) -> web.Response:
    sidecar = request.app[SIDECAR]
    collectors: dict[str, object] = {}
    degraded = False
    for collector in sidecar.collectors:
        state = sidecar.states[collector.name]
        try:
            details = collector.health()
        except Exception as exc:
            details = {"health_error": f"{type(exc).__name__}: {exc}"}
        degraded = degraded or state.success is False
        status: Literal["ok", "failing", "not scraped yet", "disabled"] = (
            "disabled" if collector.disabled else
            "not scraped yet" if state.success is None else "ok" if state.success else "failing"
        )
        collectors[collector.name] = {
            "status": status,
            "started": state.started,
            "last_success": state.last_success,
            "last_error": state.last_error,
            "last_duration_seconds": round(state.duration, 6),
            **details,
        }
    return web.json_response({"status": "degraded" if degraded else "ok", "collectors": collectors})
