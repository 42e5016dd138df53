"""The engine collector: scrape the engine's ``/metrics`` on every sidecar scrape and normalize it.

One keep-alive ``aiohttp.ClientSession``; a body size limit (the body is streamed); strict UTF-8. The whole
scrape (request, info endpoints, transform) ends a margin before the server's budget (``--collector-timeout``),
and the request has one total deadline below it, so whatever goes wrong upstream (refused, slow, HTTP error,
HTML, truncated or oversized body, bad UTF-8, a hostile info endpoint) ``llm_upstream_up 0`` is exported with
the scrape's duration and size (as ``CollectorError.partial``). Duplicate input series: the first wins.
When the scraper says when it gives up (``SCRAPE_DEADLINE``, from Prometheus's
``X-Prometheus-Scrape-Timeout-Seconds``), the request and the scrape end by then if that is sooner.
Single flight: concurrent scrapes share the one upstream request (and its transform) in flight; a scrape that
stops waiting (its own deadline, a cancelled request) leaves it running for the others, and a scrape that
arrives after it ended starts a new one.
Above ``--max-series`` series this collector fails alone (``llm_upstream_up`` stays 1: the engine answered;
the error names the limit). Large payloads are decoded and normalized in a worker thread (``/health`` stays
fast).

``llm_engine_info`` is built from ``vllm:cache_config_info`` labels in the payload, the engine's info
endpoints (vLLM ``/version`` and ``/v1/models``, TGI ``/info``, SGLang ``/get_server_info``; fetched at start
and at most every ``info_interval`` seconds in the background; their failure never fails a scrape) and
``--engine-config`` overrides. Only ``ENGINE_INFO_LABELS`` (plus engine and model) are emitted; the engine
vocabulary (``optiinfra.engines``) names the info endpoints and maps each engine's own key names onto them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, TypeVar

import aiohttp
import psutil
from yarl import URL

from optiinfra import engines
from optiinfra.exporter.collectors.base import SCRAPE_DEADLINE, CollectorError
from optiinfra.exporter.collectors.process import EngineProcess
from optiinfra.exporter.exposition import Family, Part, Rendered
from optiinfra.exporter.transform import EngineTransform, TransformResult, detect_engine
from optiinfra.metrics import ENGINE_INFO, ENGINE_INFO_LABELS, ENGINES, SIDECAR_METRICS, Engine

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT: Final = 5.0
DEFAULT_MAX_BYTES: Final = 20 * 1024 * 1024
DEFAULT_INFO_INTERVAL: Final = 60.0
#: Seconds the info endpoints get in all, per refresh.
INFO_TIMEOUT: Final = 2.0
MAX_INFO_BYTES: Final = 256 * 1024
#: Payloads from this size on are decoded and normalized in a worker thread.
OFF_LOOP_BYTES: Final = 256 * 1024
#: Most seconds of the collector budget kept back for rendering after a time-out (a fifth of short budgets).
RENDER_MARGIN: Final = 0.5
_CHUNK = 64 * 1024
_T = TypeVar("_T")

_SIDECAR = {m.name: m for m in SIDECAR_METRICS}
_BY_SCRAPER = "the scraper's X-Prometheus-Scrape-Timeout-Seconds less a margin"


def map_info(engine: Engine, raw: Mapping[str, object]) -> dict[str, str]:
    """Engine-native config keys -> ``llm_engine_info`` labels, as the engine vocabulary says."""
    data = raw.get("data")
    if isinstance(data, list) and data and isinstance(data[0], dict):  # vLLM /v1/models: the served model
        raw = {**raw, **data[0]}
    return engines.VOCABULARY[engine].map_info(raw)


class UpstreamError(Exception):
    """The engine's /metrics could not be read or understood this scrape."""


@dataclass(frozen=True, slots=True)
class _Fetched:
    """One upstream request and its transform, shared by the scrapes that waited for it."""

    result: TransformResult | None
    size: int
    error: str


class EngineCollector:
    """Scrape one engine endpoint and export it in the normalized schema."""

    name = "engine"
    disabled = False

    def __init__(
        self,
        upstream: str,
        *,
        engine: Engine | str = "auto",
        timeout: float = DEFAULT_TIMEOUT,
        budget: float | None = None,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_series: int | None = None,
        passthrough: bool = False,
        engine_config: Mapping[str, str] | None = None,
        labels: Mapping[str, str] | None = None,
        model: str | None = None,
        info_interval: float = DEFAULT_INFO_INTERVAL,
        process: EngineProcess | None = None,
    ) -> None:
        if engine != "auto" and engine not in ENGINES:
            raise ValueError(f"unknown engine {engine!r}: choose from auto, {', '.join(ENGINES)}")
        url = URL(upstream)
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError(f"upstream {upstream!r} must be an http(s) URL")
        if url.path in ("", "/"):
            url = url.with_path("/metrics")
        self.url = url
        self._base = url.with_path("/").with_query(None)
        self._forced: Engine | None = engine if engine in ENGINES else None
        self.budget = budget if budget is not None else timeout + 1
        """The server's time limit for one ``collect``; ``deadline`` ends it earlier, leaving time to render."""
        self.deadline = self.budget - min(RENDER_MARGIN, self.budget / 5)
        self.timeout = min(timeout, self.deadline)
        """Total time limit of one upstream request (connect, headers and body)."""
        self.max_bytes = max_bytes
        self.max_series = max_series
        self.passthrough = passthrough
        self.overrides = dict(engine_config or {})
        self.process = process
        """The engine process (``--engine-pid``/``--engine-process``): its command line fills the
        ``llm_engine_info`` labels no info endpoint reports (vLLM's --max-num-seqs)."""
        self._argv: tuple[int, dict[str, str]] | None = None
        self.labels = dict(labels or {})
        self.model = model or self.overrides.get("model")
        self.info_interval = info_interval
        self._session: aiohttp.ClientSession | None = None
        self._transform: EngineTransform | None = None
        self._transform_lock = threading.Lock()
        self._info: dict[str, str] = {}
        self._info_at = float("-inf")
        self._info_task: asyncio.Task[None] | None = None
        self._in_flight: asyncio.Task[_Fetched] | None = None
        # health and last-scrape state
        self.parse_errors = 0
        self.up = False
        self.ever_up = False
        """The engine answered at least once since the sidecar started (llm_upstream_ever_up)."""
        self.last_error = ""
        self.last_success: float | None = None
        self.last_duration = 0.0
        self.last_bytes = 0
        self.duplicates = 0
        if self._forced is not None:
            self._transform = self._new_transform(self._forced)

    @property
    def engine(self) -> Engine | None:
        return self._transform.engine if self._transform else None

    def _new_transform(self, engine: Engine) -> EngineTransform:
        return EngineTransform(engine, model=self.model, labels=self.labels, passthrough=self.passthrough,
                               max_series=self.max_series)

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=8, keepalive_timeout=30),
            headers={"Accept": "text/plain;version=0.0.4;q=1,*/*;q=0.1", "User-Agent": "optiinfra-exporter"},
        )
        if self._transform is not None:
            await self._refresh_info(INFO_TIMEOUT)

    async def close(self) -> None:
        for task in (self._info_task, self._in_flight):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._session is not None:
            await self._session.close()
            self._session = None

    def health(self) -> dict[str, object]:
        return {
            "upstream": str(self.url),
            "engine": self.engine or "unknown",
            "upstream_up": self.up,
            "last_success": self.last_success,
            "last_error": self.last_error,
            "last_scrape_bytes": self.last_bytes,
            "last_scrape_duration_seconds": round(self.last_duration, 6),
            "parse_errors": self.parse_errors,
            "duplicate_series_last_scrape": self.duplicates,
            "info": dict(self._info),
        }

    # -- scrape -----------------------------------------------------------------------------------

    async def collect(self) -> Sequence[Part]:
        """Always ``llm_upstream_up`` (0 on any failure, within ``deadline`` or the scraper's deadline if
        sooner), and the normalized families; joins the upstream request in flight if there is one."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline, by_scraper = started + self.deadline, False
        scraper = SCRAPE_DEADLINE.get()
        if scraper is not None and scraper < deadline:
            deadline, by_scraper = scraper, True
        result: TransformResult | None = None
        self.last_bytes = 0
        task = self._in_flight
        if task is None or task.done():
            task = self._in_flight = loop.create_task(self._fetch_once(started, deadline, by_scraper))
            task.add_done_callback(self._fetch_done)
        try:
            async with asyncio.timeout_at(deadline):
                fetched = await asyncio.shield(task)  # a waiter that stops never cancels the shared request
            result, self.last_bytes, error = fetched.result, fetched.size, fetched.error
        except TimeoutError:
            error = self._late(deadline - started, by_scraper)
        self.last_duration = loop.time() - started
        over = result is not None and result.over_limit
        self.up = result is not None
        self.ever_up = self.ever_up or self.up
        if result is not None and not over:
            self.last_success = time.time()
            self.last_error = ""
            self._maybe_refresh_info()
        else:
            if over:
                error = (f"the payload has more than {self.max_series} series (--max-series {self.max_series}); "
                         "nothing of it is exported")
            if error != self.last_error:
                log.warning("engine scrape failed", extra={"upstream": str(self.url), "error": error})
            self.last_error = error
        parts = self._families(None if over else result)
        if error:
            raise CollectorError(f"upstream {self.url}: {error}", partial=parts)
        return parts

    def _late(self, seconds: float, by_scraper: bool) -> str:
        why = _BY_SCRAPER if by_scraper else f"--collector-timeout {self.budget:g}s less a margin"
        return f"timed out: no result within {seconds:.3g}s ({why})"

    def _fetch_done(self, task: asyncio.Task[_Fetched]) -> None:
        if self._in_flight is task:
            self._in_flight = None
        if not task.cancelled() and task.exception() is not None:  # retrieved here: no waiter may be left
            log.debug("engine scrape raised", extra={"upstream": str(self.url), "error": repr(task.exception())})

    async def _fetch_once(self, started: float, deadline: float, by_scraper: bool) -> _Fetched:
        """The upstream request and its transform, ending by ``deadline``; every failure is a ``_Fetched``."""
        size = 0
        try:
            async with asyncio.timeout_at(deadline):
                body = await self._fetch(min(self.timeout, deadline - started), by_scraper)
                size = len(body)
                return _Fetched(await self._normalize(body, deadline), size, "")
        except TimeoutError:
            return _Fetched(None, size, self._late(deadline - started, by_scraper))
        except UpstreamError as exc:
            return _Fetched(None, size, str(exc))

    async def _fetch(self, limit: float, by_scraper: bool) -> bytes:
        if self._session is None:
            raise UpstreamError("collector not started")
        try:
            async with asyncio.timeout(limit), self._session.get(self.url, allow_redirects=False) as resp:
                if resp.status != 200:
                    raise UpstreamError(f"HTTP {resp.status}")
                if resp.content_length is not None and resp.content_length > self.max_bytes:
                    raise UpstreamError(f"body of {resp.content_length} bytes exceeds the {self.max_bytes} byte limit")
                return await _read_body(resp, self.max_bytes)
        except TimeoutError as exc:
            raise UpstreamError(f"timed out after {limit:.3g}s" + (f" ({_BY_SCRAPER})" if by_scraper else "")) from exc
        except aiohttp.ClientPayloadError as exc:
            raise UpstreamError(f"truncated body: {exc}") from exc
        except aiohttp.ClientError as exc:
            raise UpstreamError(f"{type(exc).__name__}: {exc}") from exc

    async def _normalize(self, body: bytes, deadline: float) -> TransformResult:
        if self._transform is None:
            detected = detect_engine(await self._off_loop(_decode, body))
            if detected is None:
                raise UpstreamError("no vLLM, SGLang or TGI family in the payload (not an engine /metrics?)")
            log.info("engine detected", extra={"engine": detected, "upstream": str(self.url)})
            self._transform = self._new_transform(detected)
            # read the info endpoint before the first transform: TGI's model label comes from it, and a
            # label that changed on the second scrape would start every series anew (bounded: half the time left)
            left = deadline - asyncio.get_running_loop().time()
            await self._refresh_info(min(INFO_TIMEOUT, left / 2))
        transform = self._transform
        result = await self._off_loop(lambda data: transform.transform(_decode(data)), body)
        self.parse_errors += result.parse_errors
        self.duplicates = result.duplicates
        if not result.recognized:
            raise UpstreamError(f"no {transform.engine} family in the payload (not an engine /metrics?)")
        if result.engine_config:
            self._info.update(map_info(transform.engine, result.engine_config))
        return result

    async def _off_loop(self, fn: Callable[[bytes], _T], body: bytes) -> _T:
        """``fn(body)`` on the loop if small, else in a worker thread; one at a time (not thread-safe)."""
        if len(body) < OFF_LOOP_BYTES and self._transform_lock.acquire(blocking=False):
            try:
                return fn(body)
            finally:
                self._transform_lock.release()

        def locked() -> _T:
            with self._transform_lock:
                return fn(body)

        return await asyncio.to_thread(locked)

    def _families(self, result: TransformResult | None) -> list[Part]:
        base = {"engine": self.engine or "unknown"}
        parts: list[Part] = [
            Family.of(_SIDECAR["llm_upstream_up"]).add(base, 1.0 if self.up else 0.0),
            Family.of(_SIDECAR["llm_upstream_ever_up"]).add(base, 1.0 if self.ever_up else 0.0),
            Family.of(_SIDECAR["llm_upstream_scrape_duration_seconds"]).add(base, self.last_duration),
            Family.of(_SIDECAR["llm_upstream_scrape_bytes"]).add(base, float(self.last_bytes)),
        ]
        if result is None or self._transform is None:
            return parts
        info = Family.of(ENGINE_INFO).add(self._engine_info_labels(), 1.0)
        return [Rendered(result.text), *parts, info, Rendered(result.passthrough)]

    def _argv_labels(self, engine: Engine) -> dict[str, str]:
        """Labels from the engine's command line, read once per engine process (a restart re-reads)."""
        process = self.process.find() if self.process is not None and self.process.configured else None
        if process is None:
            return {}
        if self._argv is None or self._argv[0] != process.pid:
            try:
                labels = engines.VOCABULARY[engine].from_argv(process.cmdline())
            except (psutil.NoSuchProcess, psutil.AccessDenied) as exc:
                log.info("engine command line unreadable", extra={"pid": process.pid, "error": str(exc)})
                return {}
            self._argv = (process.pid, labels)
        return self._argv[1]

    def _engine_info_labels(self) -> dict[str, str]:
        assert self._transform is not None
        merged = {**self._argv_labels(self._transform.engine), **self._info,
                  **{k: v for k, v in self.overrides.items() if k in ENGINE_INFO_LABELS}}
        labels = {"engine": self._transform.engine, "model": self._transform.default_model}
        labels.update((k, merged[k]) for k in ENGINE_INFO_LABELS if merged.get(k))
        return labels

    # -- info endpoints ---------------------------------------------------------------------------

    def _maybe_refresh_info(self) -> None:
        if time.monotonic() - self._info_at < self.info_interval:
            return
        if self._info_task is not None and not self._info_task.done():
            return
        self._info_at = time.monotonic()
        self._info_task = asyncio.get_running_loop().create_task(self._refresh_info(INFO_TIMEOUT))

    async def _refresh_info(self, limit: float) -> None:
        """Fetch the engine's info endpoints within ``limit`` seconds in all; failures are logged and never
        fail a scrape."""
        self._info_at = time.monotonic()
        engine = self.engine
        if engine is None or self._session is None or limit <= 0:
            return
        try:
            async with asyncio.timeout(limit):
                for group in engines.VOCABULARY[engine].info_paths:
                    for path in group:
                        raw = await self._get_json(path)
                        if raw is None:
                            continue
                        mapped = map_info(engine, raw)
                        model = mapped.pop("model", None)
                        if model and not self.model and engine == "tgi":
                            assert self._transform is not None
                            self._transform.set_default_model(model)
                        self._info.update(mapped)
                        break
        except TimeoutError:
            log.debug("engine info endpoints did not answer in %gs", limit, extra={"upstream": str(self.url)})

    async def _get_json(self, path: str) -> dict[str, object] | None:
        """A JSON object from an info endpoint; None when it is missing, too large, too deep or not JSON."""
        assert self._session is not None
        url = self._base.with_path(path)
        try:
            async with self._session.get(url, allow_redirects=False) as resp:
                if resp.status != 200:
                    return None
                body = await _read_body(resp, MAX_INFO_BYTES)
            data = await asyncio.to_thread(json.loads, body)
        except (aiohttp.ClientError, UpstreamError, ValueError, RecursionError) as exc:  # Recursion: nested too deep
            log.debug("engine info endpoint unavailable", extra={"url": str(url), "error": str(exc)[:200]})
            return None
        return data if isinstance(data, dict) else None


async def _read_body(resp: aiohttp.ClientResponse, limit: int) -> bytes:
    """The whole body (streamed: ``read()`` may return only the first chunk); ``UpstreamError`` past ``limit``."""
    chunks: list[bytes] = []
    total = 0
    async for chunk in resp.content.iter_chunked(_CHUNK):
        total += len(chunk)
        if total > limit:
            raise UpstreamError(f"body exceeds the {limit} byte limit")
        chunks.append(chunk)
    return b"".join(chunks)


def _decode(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UpstreamError(f"payload is not valid UTF-8 (byte {exc.start})") from exc
