"""Reading from Prometheus what planning needs: a target's current engine config (its ``llm_engine_info``
labels) and its pod's GPUs and GPU price (the efficiency rules' ``pod:`` series)."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from optiinfra.config import promql_string
from optiinfra.metrics import ENGINE_INFO_LABELS
from optiinfra.secrets import redact_url

from .planner import PodCost, cost_query, pod_cost

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Prometheus:
    """Instant queries planning makes; each answer is None (logged) when Prometheus cannot say."""

    session: aiohttp.ClientSession
    url: str

    async def _query(self, query: str, unavailable: str) -> list[dict[str, Any]] | None:
        """An instant query's result, or None (logged with ``unavailable``) when Prometheus cannot answer."""
        try:
            async with self.session.get(self.url.rstrip("/") + "/api/v1/query", params={"query": query},
                                        timeout=aiohttp.ClientTimeout(total=5)) as resp:
                payload = await resp.json(content_type=None)
            results: list[dict[str, Any]] = payload["data"]["result"] if payload.get("status") == "success" else []
        except (aiohttp.ClientError, TimeoutError, ValueError, KeyError, TypeError) as exc:
            log.warning(unavailable, extra={"error": str(exc), "prometheus": redact_url(self.url), "query": query})
            return None
        return results

    async def config(self, labels: Mapping[str, str]) -> dict[str, str] | None:
        """The target's ``llm_engine_info`` labels."""
        matchers = [f"{k}={promql_string(labels[k])}" for k in ("namespace", "pod", "model") if labels.get(k)]
        query = "llm_engine_info{" + ",".join(matchers) + "}"
        results = await self._query(query, "cannot read the current config from Prometheus; planning with it unknown")
        if results is None:
            return None
        if not results:
            log.info("no llm_engine_info series for the target; planning with the config unknown",
                     extra={"query": query})
            return None
        metric: dict[str, str] = results[0]["metric"]
        wanted = {"engine", "model", *ENGINE_INFO_LABELS}
        return {k: v for k, v in metric.items() if k in wanted}

    async def cost(self, labels: Mapping[str, str]) -> PodCost | None:
        """The target pod's GPUs and GPU price per hour."""
        query = cost_query(",".join(f"{k}={promql_string(labels[k])}" for k in ("namespace", "pod") if labels.get(k)))
        results = await self._query(query, "cannot read the pod's GPUs and price from Prometheus; planning without "
                                           "a cost")
        return None if results is None else pod_cost(results)

    async def value(self, query: str) -> float | None:
        """The query's first sample value (the bottleneck signal's current value)."""
        results = await self._query(query, "cannot read the signal's current value from Prometheus; planning with "
                                           "the lever's step")
        try:
            value = float(results[0]["value"][1]) if results else None
        except (KeyError, IndexError, TypeError, ValueError):
            return None
        return value if value is not None and math.isfinite(value) else None
