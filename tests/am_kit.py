"""A real Alertmanager plus a webhook that records what reaches it (tests of routing and inhibition)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from conftest import free_port, require_binary

from optiinfra.demo.stack import Stack, start_alertmanager


@dataclass
class Webhook:
    """Every notification body posted to ``url`` (any path), in arrival order."""

    port: int
    bodies: list[dict[str, Any]] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def delivered(self) -> set[tuple[str, str, str]]:
        """(receiver, alertname, pod) of every alert delivered so far."""
        return {(b["receiver"], a["labels"]["alertname"], a["labels"].get("pod", ""))
                for b in self.bodies for a in b["alerts"]}

    async def wait_for(self, expected: set[tuple[str, str, str]], timeout: float = 60) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not expected <= self.delivered():
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(f"never delivered: {sorted(expected - self.delivered())}")
            self.arrived.clear()
            try:
                await asyncio.wait_for(self.arrived.wait(), timeout=remaining)
            except TimeoutError:
                continue


@asynccontextmanager
async def webhook() -> AsyncIterator[Webhook]:
    hook = Webhook(free_port())

    async def handle(request: web.Request) -> web.Response:
        hook.bodies.append(await request.json())
        hook.arrived.set()
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", hook.port).start()
    try:
        yield hook
    finally:
        await runner.cleanup()


@asynccontextmanager
async def alertmanager(workdir: Path, config_text: str) -> AsyncIterator[str]:
    """A real Alertmanager on ``config_text``; yields its base URL."""
    require_binary("prometheus-alertmanager")
    workdir.mkdir(parents=True, exist_ok=True)
    stack = Stack(workdir)
    port = free_port()
    try:
        await start_alertmanager(stack, config_text, port)
        yield f"http://127.0.0.1:{port}"
    finally:
        await stack.close()


async def post_alerts(base: str, alerts: list[dict[str, Any]]) -> None:
    async with aiohttp.ClientSession() as session, session.post(f"{base}/api/v2/alerts", json=alerts) as resp:
        assert resp.status == 200, await resp.text()


async def alert_states(base: str) -> dict[tuple[str, str], dict[str, Any]]:
    """(alertname, pod) -> Alertmanager's status of that alert (state, inhibitedBy, silencedBy)."""
    async with aiohttp.ClientSession() as session, session.get(f"{base}/api/v2/alerts") as resp:
        return {(a["labels"]["alertname"], a["labels"].get("pod", "")): a["status"] for a in await resp.json()}
