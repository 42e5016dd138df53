"""The orchestrator client: registration, heartbeats, and the HTTP side of outbox pushes; the paths and the
agent document of the orchestrator protocol (``contract.py`` publishes them, ``orchestrator/contract.py`` serves
them).

The orchestrator is the user's deployment controller. This client only speaks HTTP; durability (retries,
backoff, bounded attempts) belongs to the outbox. Tokens are sent as ``Authorization: Bearer`` and never logged.
"""

from __future__ import annotations

from typing import Any, Literal

import aiohttp
from pydantic import BaseModel, ConfigDict, Field

REGISTER_PATH = "/api/v1/agents/register"
HEARTBEAT_PATH = "/api/v1/agents/heartbeat"
PLANS_PATH = "/api/v1/plans"
ROLLBACK_PATH = PLANS_PATH + "/{plan_id}/rollback"
STATUS_PATH = PLANS_PATH + "/{plan_id}/status"
"""On the receiver (the agent's ``endpoint``), called by the orchestrator."""


class OrchestratorError(Exception):
    """A request to the orchestrator did not get a 2xx answer (or no answer)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class Agent(BaseModel):
    """The receiver, as it registers with the orchestrator."""

    model_config = ConfigDict(extra="forbid")
    agent_id: str = Field(description="Stable id of this receiver deployment (`--agent-id`).")
    agent_type: Literal["performance"] = Field(description="Always `performance`.")
    capabilities: list[str] = Field(description="`plans`, `rollbacks`, and `bottleneck:<id>` for every bottleneck "
                                                "it plans for (docs/taxonomy.md).")
    endpoint: str = Field(description="Base URL the orchestrator reaches the receiver at (`--advertise-url`); "
                                      "status reports go to `{endpoint}" + STATUS_PATH + "`.")
    health_endpoint: str = Field(description="`{endpoint}/health`.")
    version: str = Field(description="OptiInfra version.")


class AgentStatus(BaseModel):
    model_config = ConfigDict(extra="allow")
    outbox_depth: int = Field(ge=0, description="Pushes waiting in the receiver's outbox.")


class Heartbeat(Agent):
    """The agent document again, with the receiver's current status."""

    status: AgentStatus


class OrchestratorClient:
    def __init__(self, session: aiohttp.ClientSession, base_url: str, *, token: str | None = None,
                 timeout: float = 10.0) -> None:
        self._session = session
        self.base_url = base_url.rstrip("/")
        self._token = token
        self._timeout = aiohttp.ClientTimeout(total=timeout)

    def _headers(self, idempotency_key: str | None = None) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        return headers

    async def post(self, path: str, body: dict[str, Any], *, idempotency_key: str | None = None) -> int:
        """POST JSON; return the status of a 2xx (or 409: the orchestrator already has this key) answer."""
        url = self.base_url + path
        try:
            async with self._session.post(url, json=body, headers=self._headers(idempotency_key),
                                          timeout=self._timeout) as resp:
                if 200 <= resp.status < 300 or resp.status == 409:
                    await resp.read()
                    return resp.status
                text = (await resp.text(errors="replace"))[:300]
                raise OrchestratorError(f"POST {path}: HTTP {resp.status}: {text}", resp.status)
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise OrchestratorError(f"POST {path}: {type(exc).__name__}: {exc}") from exc

    async def register(self, agent: Agent) -> int:
        return await self.post(REGISTER_PATH, agent.model_dump())

    async def heartbeat(self, agent: Agent, status: dict[str, Any]) -> int:
        return await self.post(HEARTBEAT_PATH, {**agent.model_dump(), "status": status})
