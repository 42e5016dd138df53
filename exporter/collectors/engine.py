"""The engine collector: scrape the engine's ``/metrics`` on every sidecar scrape and normalize it.

One keep-alive ``aiohttp.ClientSession`` (opened in ``start``, closed in ``close``); a time limit and a body
size limit per scrape (the body is streamed and reading stops past the limit); strict UTF-8. Whatever goes
wrong upstream (refused, timeout, HTTP error, HTML, truncated or oversized body, invalid UTF-8) the
collector still says ``llm_upstream_up 0`` with the scrape's duration and size (as ``CollectorError.partial``),
and never raises anything else. Duplicate input series are collapsed (the first wins) and do not fail the
scrape.

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
import time
from collections.abc import Mapping
from typing import Final

import aiohttp
from yarl import URL

from optiinfra import engines
from optiinfra.exporter.collectors.base import CollectorError
from optiinfra.exporter.exposition import Family, render_all
from optiinfra.exporter.transform import EngineTransform, TransformResult, detect_engine
from optiinfra.metrics import ENGINE_INFO, ENGINE_INFO_LABELS, ENGINES, SIDECAR_METRICS, Engine

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT: Final = 5.0
DEFAULT_MAX_BYTES: Final = 20 * 1024 * 1024
DEFAULT_INFO_INTERVAL: Final = 60.0
_CHUNK = 64 * 1024

_HELP = {m.name: m.help for m in SIDECAR_METRICS}


def map_info(engine: Engine, raw: Mapping[str, object]) -> dict[str, str]:
    """Engine-native config keys -> ``llm_engine_info`` labels, as the engine vocabulary says."""
    data = raw.get("data")
    if isinstance(data, list) and data and isinstance(data[0], dict):  # vLLM /v1/models: the served model
        raw = {**raw, **data[0]}
    return engines.VOCABULARY[engine].map_info(raw)


class UpstreamError(Exception):
    """The engine's /metrics could not be read or understood this scrape."""


class EngineCollector:
    """Scrape one engine endpoint and export it in the normalized schema."""

    name = "engine"
    #: ``--label`` pairs are baked into the transform's output keys; the server need not add them.
    applies_static_labels = True

    def __init__(
        self,
        upstream: str,
        *,
        engine: Engine | str = "auto",
        timeout: float = DEFAULT_TIMEOUT,
        max_bytes: int = DEFAULT_MAX_BYTES,
        passthrough: bool = False,
        engine_config: Mapping[str, str] | None = None,
        labels: Mapping[str, str] | None = None,
        model: str | None = None,
        info_interval: float = DEFAULT_INFO_INTERVAL,
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
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.passthrough = passthrough
        self.overrides = dict(engine_config or {})
        self.labels = dict(labels or {})
        self.model = model or self.overrides.get("model")
        self.info_interval = info_interval
        self._session: aiohttp.ClientSession | None = None
        self._transform: EngineTransform | None = None
        self._info: dict[str, str] = {}
        self._info_at = float("-inf")
        self._info_task: asyncio.Task[None] | None = None
        # health and last-scrape state
        self.parse_errors = 0
        self.up = False
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
        return EngineTransform(engine, model=self.model, labels=self.labels, passthrough=self.passthrough)

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.timeout),
            connector=aiohttp.TCPConnector(limit=8, keepalive_timeout=30),
            headers={"Accept": "text/plain;version=0.0.4;q=1,*/*;q=0.1", "User-Agent": "optiinfra-exporter"},
        )
        if self._transform is not None:
            await self._refresh_info()

    async def close(self) -> None:
        if self._info_task is not None and not self._info_task.done():
            self._info_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._info_task
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

    async def collect(self) -> str:
        started = time.monotonic()
        result: TransformResult | None = None
        error = ""
        size = 0
        try:
            body = await self._fetch()
            size = len(body)
            result = await self._normalize(body)
        except UpstreamError as exc:
            error = str(exc)
        self.last_duration = time.monotonic() - started
        self.last_bytes = size
        self.up = result is not None
        if result is not None:
            self.last_success = time.time()
            self.last_error = ""
            self._maybe_refresh_info()
        else:
            if error != self.last_error:
                log.warning("engine scrape failed", extra={"upstream": str(self.url), "error": error})
            self.last_error = error
        text = self._render(result)
        if result is None:
            raise CollectorError(f"upstream {self.url}: {error}", partial=text)
        return text

    async def _fetch(self) -> bytes:
        if self._session is None:
            raise UpstreamError("collector not started")
        try:
            async with self._session.get(self.url, allow_redirects=False) as resp:
                if resp.status != 200:
                    raise UpstreamError(f"HTTP {resp.status}")
                if resp.content_length is not None and resp.content_length > self.max_bytes:
                    raise UpstreamError(f"body of {resp.content_length} bytes exceeds the {self.max_bytes} byte limit")
                chunks: list[bytes] = []
                total = 0
                async for chunk in resp.content.iter_chunked(_CHUNK):
                    total += len(chunk)
                    if total > self.max_bytes:
                        raise UpstreamError(f"body exceeds the {self.max_bytes} byte limit")
                    chunks.append(chunk)
                return b"".join(chunks)
        except TimeoutError as exc:
            raise UpstreamError(f"timed out after {self.timeout:g}s") from exc
        except aiohttp.ClientPayloadError as exc:
            raise UpstreamError(f"truncated body: {exc}") from exc
        except aiohttp.ClientError as exc:
            raise UpstreamError(f"{type(exc).__name__}: {exc}") from exc

    async def _normalize(self, body: bytes) -> TransformResult:
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise UpstreamError(f"payload is not valid UTF-8 (byte {exc.start})") from exc
        if self._transform is None:
            detected = detect_engine(text)
            if detected is None:
                raise UpstreamError("no vLLM, SGLang or TGI family in the payload (not an engine /metrics?)")
            log.info("engine detected", extra={"engine": detected, "upstream": str(self.url)})
            self._transform = self._new_transform(detected)
            # read the info endpoint before the first transform: TGI's model label comes from it, and a
            # label that changed on the second scrape would start every series anew
            await self._refresh_info()
        result = self._transform.transform(text)
        self.parse_errors += result.parse_errors
        self.duplicates = result.duplicates
        if not result.recognized:
            raise UpstreamError(f"no {self._transform.engine} family in the payload (not an engine /metrics?)")
        if result.engine_config:
            self._info.update(map_info(self._transform.engine, result.engine_config))
        return result

    def _render(self, result: TransformResult | None) -> str:
        base = {"engine": self.engine or "unknown", **self.labels}
        families = [
            Family("llm_upstream_up", "gauge", _HELP["llm_upstream_up"]).add(base, 1.0 if result else 0.0),
            Family("llm_upstream_scrape_duration_seconds", "gauge",
                   _HELP["llm_upstream_scrape_duration_seconds"]).add(base, self.last_duration),
            Family("llm_upstream_scrape_bytes", "gauge", _HELP["llm_upstream_scrape_bytes"]).add(
                base, float(self.last_bytes)),
        ]
        if result is None or self._transform is None:
            return render_all(families)
        info = self._engine_info_labels()
        families.append(Family(ENGINE_INFO.name, ENGINE_INFO.type, ENGINE_INFO.help).add(info, 1.0))
        return result.text + render_all(families) + result.passthrough

    def _engine_info_labels(self) -> dict[str, str]:
        assert self._transform is not None
        merged = {**self._info, **{k: v for k, v in self.overrides.items() if k in ENGINE_INFO_LABELS}}
        labels = {"engine": self._transform.engine, "model": self._transform.default_model}
        labels.update((k, merged[k]) for k in ENGINE_INFO_LABELS if merged.get(k))
        labels.update(self.labels)
        return labels

    # -- info endpoints ---------------------------------------------------------------------------

    def _maybe_refresh_info(self) -> None:
        if time.monotonic() - self._info_at < self.info_interval:
            return
        if self._info_task is not None and not self._info_task.done():
            return
        self._info_at = time.monotonic()
        self._info_task = asyncio.get_running_loop().create_task(self._refresh_info())

    async def _refresh_info(self) -> None:
        """Fetch the engine's info endpoint; failures are logged and never fail a scrape."""
        self._info_at = time.monotonic()
        engine = self.engine
        if engine is None or self._session is None:
            return
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

    async def _get_json(self, path: str) -> dict[str, object] | None:
        assert self._session is not None
        url = self._base.with_path(path)
        try:
            async with self._session.get(url, timeout=aiohttp.ClientTimeout(total=min(self.timeout, 2.0))) as resp:
                if resp.status != 200:
                    return None
                body = await resp.content.read(1024 * 1024)
            data = json.loads(body)
        except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
            log.debug("engine info endpoint unavailable", extra={"url": str(url), "error": str(exc)})
            return None
        return data if isinstance(data, dict) else None
