"""The orchestrator client: registration, heartbeats, and the HTTP side of outbox pushes.

The orchestrator is the user's deployment controller. This client only speaks HTTP; durability (retries,
backoff, bounded attempts) belongs to the outbox. Tokens are sent as ``Authorization: Bearer`` and never logged.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import aiohttp

log = logging.getLogger(__name__)


class OrchestratorError(Exception):
    """A request to the orchestrator did not get a 2xx answer (or no answer)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class AgentInfo:
    agent_id: str
    endpoint: str
    version: str
    capabilities: tuple[str, ...]

    def document(self) -> dict[str, Any]:
        return {
            "agent_id": self.agent_id, "agent_type": "performance", "capabilities": list(self.capabilities),
            "endpoint": self.endpoint, "health_endpoint": self.endpoint.rstrip("/") + "/health",
            "version": self.version,
        }


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

    async def register(self, agent: AgentInfo) -> int:
        return await self.post("/api/v1/agents/register", agent.document())

    async def heartbeat(self, agent: AgentInfo, status: dict[str, Any]) -> int:
        return await self.post("/api/v1/agents/heartbeat", {**agent.document(), "status": status})
