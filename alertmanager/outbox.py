"""The durable outbox: pushes to the orchestrator, at least once, in order of due time.

A push is queued in the same transaction as the decision that needs it (a plan approved, a rollback decided),
under a unique key that is also sent as the ``Idempotency-Key`` header. Delivery claims due rows with a lease
(a crashed replica's rows become due again when the lease ends), retries with exponential backoff and jitter,
and gives up after a bounded number of attempts: the plan then becomes ``failed`` with the last error.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from prometheus_client import Counter

from . import store as st
from .orchestrator import PLANS_PATH, ROLLBACK_PATH, OrchestratorClient, OrchestratorError
from .states import IllegalTransition, PlanStatus

if TYPE_CHECKING:
    from .service import ReceiverConfig

log = logging.getLogger(__name__)


def push_key(document: Mapping[str, Any]) -> str:
    """The outbox key (and ``Idempotency-Key``) of a plan's push: the plan's own idempotency key."""
    return str(document["idempotency_key"])


def rollback_key(document: Mapping[str, Any]) -> str:
    return f"{document['idempotency_key']}:rollback"


async def enqueue_push(tx: st.Tx, document: dict[str, Any], now: float) -> bool:
    """Queue the push of an approved plan."""
    body = {**document, "status": "approved"}
    return await st.enqueue(tx, push_key(document), kind="plan", plan_id=document["plan_id"],
                            path=PLANS_PATH, body=body, now=now)


async def enqueue_rollback(tx: st.Tx, plan: st.PlanRow, reason: dict[str, Any], now: float) -> bool:
    key = rollback_key(plan.document)
    body = {"plan_id": plan.plan_id, "idempotency_key": key, "reason": reason}
    return await st.enqueue(tx, key, kind="rollback", plan_id=plan.plan_id,
                            path=ROLLBACK_PATH.format(plan_id=plan.plan_id), body=body, now=now)


@dataclass
class Outbox:
    store: st.Store
    config: ReceiverConfig
    pushes: Counter
    failures: Counter
    on_answer: Callable[[str | None], None]
    """Called with None after a 2xx answer, with the error after a failed attempt."""
    clock: Callable[[], float] = time.time
    client: OrchestratorClient | None = None

    @property
    def lease(self) -> float:
        """A crash mid-push makes the row due again after this."""
        return self.config.push_timeout_seconds + 5.0

    def backoff(self, attempt: int) -> float:
        """Exponential backoff with jitter: base * 2^(attempt-1), capped, times a random factor in [0.5, 1]."""
        ceiling = min(self.config.backoff_max_seconds, self.config.backoff_base_seconds * 2.0 ** (attempt - 1))
        return float(ceiling * random.uniform(0.5, 1.0))

    async def deliver_due(self) -> int:
        """Claim due rows and push them concurrently; return how many were attempted."""
        now, lease = self.clock(), self.lease
        rows = await self.store.run(lambda tx: st.claim_outbox(tx, now, lease, 32))
        if rows:
            await asyncio.gather(*(self._deliver(row) for row in rows))
        return len(rows)

    async def _deliver(self, row: st.OutboxRow) -> None:
        """Push one row; a failure is retried after a backoff until ``max_attempts``, then the plan fails."""
        if self.client is None:
            raise RuntimeError("the outbox has no orchestrator client")
        kind, attempts = row.kind, row.attempts
        where = {"kind": kind, "plan_id": row.plan_id, "attempt": attempts}
        error: str | None = None
        try:
            status = await self.client.post(row.path, row.body, idempotency_key=row.key)
        except OrchestratorError as exc:
            error = str(exc)
            self.failures.labels(kind).inc()
        self.on_answer(error)
        if error is not None and attempts < self.config.max_attempts:
            await self.store.run(partial(st.outbox_retry, row_id=row.id, next_at=self.clock() + self.backoff(attempts),
                                         error=error))
            log.warning("push failed; will retry", extra={**where, "error": error})
            return
        now = self.clock()
        if error is None:
            self.pushes.labels(kind).inc()
            outcome: PlanStatus = "pushed"
            detail = {"event": f"{kind}_pushed", "http_status": status, "attempt": attempts}
        else:
            outcome, detail = "failed", {"event": f"{kind}_push_failed", "attempts": attempts, "error": error}

        async def settle(tx: st.Tx) -> str:
            if error is None:
                await st.outbox_done(tx, row.id, now)
            else:
                await st.outbox_fail(tx, row.id, error, now)
            return await _settle(tx, row, outcome, detail, now=now, error=error)

        moved_on = await self.store.run(settle)
        if moved_on:
            log.warning("push settled but the plan's status moved on", extra={**where, "error": moved_on})
        if error is None:
            log.info("pushed to the orchestrator", extra=where)
        else:
            log.error("push gave up after bounded attempts", extra={**where, "error": error})


async def _settle(tx: st.Tx, row: st.OutboxRow, status: PlanStatus, detail: dict[str, Any], *, now: float,
                  error: str | None = None) -> str:
    """A push's outcome in the audit: a note for a rollback, the plan's move to ``status`` for a plan. Returns
    why that move was illegal (the plan moved on meanwhile), or ""."""
    if row.kind != "plan":
        await st.note(tx, row.plan_id, cause="orchestrator", detail=detail, now=now)
        return ""
    try:
        await st.transition(tx, row.plan_id, status, cause="orchestrator", detail=detail, now=now, error=error)
    except IllegalTransition as exc:
        return str(exc)
    return ""
