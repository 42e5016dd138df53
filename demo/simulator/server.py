"""The simulator's HTTP face: the engine's ``/metrics`` and info endpoints plus the admin API."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from aiohttp import web

from optiinfra.exporter.exposition import CONTENT_TYPE
from optiinfra.metrics import Engine

from .engines import info_payload, info_routes, native_config, parse_changes, render
from .model import ConfigError
from .scenarios import SCENARIOS, TICK_REAL_S, Simulation

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SimConfig:
    engine: Engine
    scenario: str
    model: str = "meta-llama/Llama-3.1-8B-Instruct"
    time_scale: float = 10.0
    seed: int = 0
    kv_connector: str = ""
    """vLLM only: a KV connector (LMCacheConnectorV1) whose external-cache counters the engine then exports."""


SIM_KEY = web.AppKey("simulation", Simulation)
CONFIG_KEY = web.AppKey("sim_config", SimConfig)
CREATED_KEY = web.AppKey("created", float)


def create_app(config: SimConfig) -> web.Application:
    if config.scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {config.scenario!r}; known: {', '.join(SCENARIOS)}")
    app = web.Application()
    app[CONFIG_KEY] = config
    app[SIM_KEY] = Simulation(config.engine, SCENARIOS[config.scenario], config.time_scale, config.seed,
                                config.kv_connector)
    app[CREATED_KEY] = time.time()
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/health", _health)
    for path in info_routes(config.engine):
        app.router.add_get(path, _info)
    app.router.add_get("/admin/config", _get_config)
    app.router.add_post("/admin/config", _post_config)
    app.router.add_get("/admin/scenario", _scenario)
    app.cleanup_ctx.append(_driver)
    return app


async def _driver(app: web.Application) -> AsyncIterator[None]:
    """Advance the model with the wall clock, in small steps."""
    sim = app[SIM_KEY]

    async def loop() -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(TICK_REAL_S)
            now = time.monotonic()
            sim.advance(now - last)
            last = now

    task = asyncio.create_task(loop())
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _metrics(request: web.Request) -> web.Response:
    app = request.app
    cfg = app[CONFIG_KEY]
    text = render(cfg.engine, app[SIM_KEY].model, cfg.model, app[CREATED_KEY])
    return web.Response(body=text.encode(), headers={"Content-Type": CONTENT_TYPE})


async def _health(request: web.Request) -> web.Response:
    return web.Response(text="")


async def _info(request: web.Request) -> web.Response:
    app = request.app
    cfg = app[CONFIG_KEY]
    return web.json_response(info_payload(cfg.engine, request.path, app[SIM_KEY].model, cfg.model, app[CREATED_KEY]))


async def _get_config(request: web.Request) -> web.Response:
    app = request.app
    return web.json_response(native_config(app[CONFIG_KEY].engine, app[SIM_KEY].model.config))


async def _post_config(request: web.Request) -> web.Response:
    app = request.app
    engine = app[CONFIG_KEY].engine
    sim = app[SIM_KEY]
    try:
        body = await request.json()
    except json.JSONDecodeError as exc:
        raise web.HTTPBadRequest(text=f"body is not JSON: {exc}") from None
    try:
        changes = parse_changes(engine, body)
        new = sim.apply_config(changes)
    except (ValueError, TypeError) as exc:  # ConfigError is a ValueError
        kind = "rejected" if isinstance(exc, ConfigError) else "bad request"
        raise web.HTTPBadRequest(text=f"{kind}: {exc}") from None
    log.info("config applied", extra={"changes": body})
    return web.json_response({"applied": body, "config": native_config(engine, new)})


async def _scenario(request: web.Request) -> web.Response:
    return web.json_response(request.app[SIM_KEY].phase())
