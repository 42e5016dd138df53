"""Registration with the orchestrator and the heartbeat loop, and what the receiver last heard from it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from . import store as st
from .orchestrator import Agent, OrchestratorClient, OrchestratorError

log = logging.getLogger(__name__)


@dataclass
class OrchestratorState:
    """Reachability as seen by the last registration, heartbeat or push (shown on ``/health/detailed``)."""

    reachable: bool | None = None
    last_error: str = ""
    last_ok: str | None = None
    registered: bool = False

    def answered(self, error: str | None, now: float) -> None:
        if error is None:
            self.reachable, self.last_error = True, ""
            self.last_ok = datetime.fromtimestamp(now, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        else:
            self.reachable, self.last_error = False, error


async def agent_loop(client: OrchestratorClient, agent: Agent, state: OrchestratorState, *,
                     outbox_depth: Callable[[], Awaitable[int]], period: float,
                     clock: Callable[[], float]) -> None:
    """Register until it succeeds, then heartbeat every ``period`` (retrying with backoff up to it)."""
    delay = 1.0
    while True:
        try:
            if not state.registered:
                await client.register(agent)
                state.registered = True
                log.info("registered with the orchestrator", extra={"agent_id": agent.agent_id})
            else:
                await client.heartbeat(agent, {"outbox_depth": await outbox_depth()})
            state.answered(None, clock())
            delay = 1.0
            await asyncio.sleep(period)
        except OrchestratorError as exc:
            state.answered(str(exc), clock())
            log.warning("orchestrator registration/heartbeat failed; retrying", extra={"error": str(exc)})
            await asyncio.sleep(min(delay, period))
            delay *= 2
        except st.StoreError as exc:
            log.warning("heartbeat: store error", extra={"error": str(exc)})
            await asyncio.sleep(period)
