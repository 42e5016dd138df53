"""The receiver's behaviour: intake (group commit), the planning worker, rollbacks, the API's plan actions, and
the background loops (planner, outbox, orchestrator registration and heartbeat).

The worker claims new episodes from the store (row locks, so replicas never plan one episode twice), asks the
planner for a plan or a diagnosis, and enqueues approved plans in the durable outbox (``outbox.py``) in the same
transaction. Every status change goes through ``states.transition``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from pydantic import BaseModel, ConfigDict, Field

from optiinfra import __version__, taxonomy
from optiinfra.buildinfo import register as register_build_info
from optiinfra.metrics import ENGINE_INFO_LABELS

from . import states
from . import store as st
from .intake import Notification
from .orchestrator import AgentInfo, OrchestratorClient, OrchestratorError
from .outbox import Outbox, enqueue_push, enqueue_rollback
from .plan import Diagnosis, Plan
from .planner import AlertEpisode, PlanningContext, plan_for, target_of

log = logging.getLogger(__name__)

#: Plans whose knobs count as changed for the cooldown.
CHANGED = ("approved", "pushed", "rolling_out", "completed", "rolled_back")


class ReceiverConfig(BaseModel):
    """Everything ``optiinfra receiver`` is configured with."""

    model_config = ConfigDict(extra="forbid")

    orchestrator_url: str
    db: str = "sqlite:///optiinfra-receiver.db"
    prometheus_url: str | None = None
    token: str | None = Field(default=None, repr=False)
    orchestrator_token: str | None = Field(default=None, repr=False)
    auto_approve_low_risk: bool = False
    cooldown_seconds: float = Field(default=1800.0, ge=0)
    bake_seconds: float | None = Field(default=None, ge=0, description="override the plans' own bake time")
    max_body_bytes: int = Field(default=1024 * 1024, gt=0)
    max_attempts: int = Field(default=8, ge=1)
    backoff_base_seconds: float = Field(default=0.5, gt=0)
    backoff_max_seconds: float = Field(default=60.0, gt=0)
    heartbeat_seconds: float = Field(default=30.0, gt=0)
    poll_seconds: float = Field(default=1.0, gt=0)
    claim_lease_seconds: float = Field(default=60.0, gt=0)
    push_timeout_seconds: float = Field(default=10.0, gt=0)
    agent_id: str = "optiinfra-receiver"
    advertise_url: str = "http://127.0.0.1:9095"
    run_worker: bool = True


class ReceiverMetrics:
    """The receiver's own metrics, in a registry per app."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        register_build_info(r)
        self.notifications = Counter("optiinfra_receiver_notifications", "Webhook notifications by result.",
                                     ["result"], registry=r)
        self.episodes = Counter("optiinfra_receiver_episodes", "Alerts received, by what they meant for episodes.",
                                ["kind"], registry=r)
        self.plans = Gauge("optiinfra_receiver_plans", "Plans in the store by status.", ["status"], registry=r)
        self.decisions = Counter("optiinfra_receiver_episode_decisions",
                                 "Processed episodes by outcome (planned, diagnosed, skipped, rolled_back, ...).",
                                 ["outcome"], registry=r)
        self.pushes = Counter("optiinfra_receiver_pushes", "Successful pushes to the orchestrator.", ["kind"],
                              registry=r)
        self.push_failures = Counter("optiinfra_receiver_push_failures", "Failed push attempts.", ["kind"],
                                     registry=r)
        self.outbox_depth = Gauge("optiinfra_receiver_outbox_depth", "Pushes waiting in the outbox.", registry=r)
        self.intake_latency = Histogram(
            "optiinfra_receiver_intake_duration_seconds", "Time to validate, persist and answer a notification.",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5), registry=r)


def utc(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _scope_matches(scope: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """Does an SLO alert with ``labels`` speak for the plan's target ``scope``?"""
    namespace = labels.get("namespace")
    if namespace and scope.get("namespace") and namespace != scope["namespace"]:
        return False
    pod, deployment, model = labels.get("pod"), labels.get("deployment"), labels.get("model")
    if pod and scope.get("pod") == pod:
        return True
    if deployment and scope.get("deployment") == deployment:
        return True
    return bool(not pod and model and scope.get("model") == model)


def _rollback_wanted(plan: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    rollback = plan["document"].get("rollback") or {}
    slos, alerts = rollback.get("on_slos") or ["*"], rollback.get("on_alerts") or []
    slo = labels.get("slo", "")
    if "*" not in slos and slo not in slos:
        return False
    return not alerts or labels.get("alertname", "") in alerts


@dataclass
class Service:
    """The receiver's moving parts, owned by one aiohttp app."""

    config: ReceiverConfig
    store: st.Store
    metrics: ReceiverMetrics = field(default_factory=ReceiverMetrics)
    session: aiohttp.ClientSession | None = None
    client: OrchestratorClient | None = None
    wake_planner: asyncio.Event = field(default_factory=asyncio.Event)
    wake_outbox: asyncio.Event = field(default_factory=asyncio.Event)
    orchestrator_state: dict[str, Any] = field(default_factory=lambda: {"reachable": None, "last_error": "",
                                                                          "last_ok": None, "registered": False})
    clock: Callable[[], float] = time.time
    outbox: Outbox = field(init=False)
    _intake_queue: list[tuple[Notification, str, asyncio.Future[st.IntakeResult]]] = field(default_factory=list)
    _intake_flusher: asyncio.Task[None] | None = None

    def __post_init__(self) -> None:
        c = self.config
        self.outbox = Outbox(self.store, max_attempts=c.max_attempts, backoff_base=c.backoff_base_seconds,
                             backoff_max=c.backoff_max_seconds, timeout=c.push_timeout_seconds,
                             pushes=self.metrics.pushes, failures=self.metrics.push_failures,
                             on_answer=self._orchestrator_answer, clock=self.clock)

    # ------------------------------------------------------------------------------------------- lifecycle

    def agent(self) -> AgentInfo:
        caps = tuple(f"bottleneck:{b.id}" for b in taxonomy.BOTTLENECKS if b.plannable)
        return AgentInfo(self.config.agent_id, self.config.advertise_url, __version__,
                         ("plans", "rollbacks", *caps))

    async def start(self) -> list[asyncio.Task[None]]:
        self.session = aiohttp.ClientSession()
        self.client = OrchestratorClient(self.session, self.config.orchestrator_url,
                                         token=self.config.orchestrator_token,
                                         timeout=self.config.push_timeout_seconds)
        self.outbox.client = self.client
        if not self.config.run_worker:
            return []
        return [asyncio.create_task(self._loop("planner", self.wake_planner, self.plan_pending)),
                asyncio.create_task(self._loop("outbox", self.wake_outbox, self.outbox.deliver_due)),
                asyncio.create_task(self._agent_loop())]

    async def stop(self, tasks: list[asyncio.Task[None]]) -> None:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self.session is not None:
            await self.session.close()

    async def _loop(self, name: str, wake: asyncio.Event, step: Callable[[], Awaitable[int]]) -> None:
        while True:
            wake.clear()  # before the step: a wake-up during it is kept, not lost
            try:
                done = await step()
            except st.StoreError as exc:
                log.warning("%s loop: store error, retrying", name, extra={"error": str(exc)})
                done = 0
            except Exception:
                log.exception("%s loop: unexpected error", name)
                done = 0
            if done:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), self.config.poll_seconds)

    async def _agent_loop(self) -> None:
        if self.client is None:
            raise RuntimeError("start() creates the orchestrator client before the agent loop")
        agent, delay = self.agent(), 1.0
        while True:
            try:
                if not self.orchestrator_state["registered"]:
                    await self.client.register(agent)
                    self.orchestrator_state["registered"] = True
                    log.info("registered with the orchestrator", extra={"agent_id": agent.agent_id})
                else:
                    await self.client.heartbeat(agent, {"outbox_depth": await self.outbox_depth()})
                self._orchestrator_answer(None)
                delay = 1.0
                await asyncio.sleep(self.config.heartbeat_seconds)
            except OrchestratorError as exc:
                self._orchestrator_answer(str(exc))
                log.warning("orchestrator registration/heartbeat failed; retrying", extra={"error": str(exc)})
                await asyncio.sleep(min(delay, self.config.heartbeat_seconds))
                delay *= 2
            except st.StoreError as exc:
                log.warning("heartbeat: store error", extra={"error": str(exc)})
                await asyncio.sleep(self.config.heartbeat_seconds)

    def _orchestrator_answer(self, error: str | None) -> None:
        if error is None:
            self.orchestrator_state.update(reachable=True, last_ok=utc(self.clock()), last_error="")
        else:
            self.orchestrator_state.update(reachable=False, last_error=error)

    async def outbox_depth(self) -> int:
        return await self.store.run(st.outbox_depth)

    # ---------------------------------------------------------------------------------------------- intake

    async def record(self, note: Notification, text: str) -> st.IntakeResult:
        """Persist one notification; concurrent calls share one transaction (group commit).

        Returns once the transaction holding this notification has committed; raises StoreError otherwise.
        """
        future: asyncio.Future[st.IntakeResult] = asyncio.get_running_loop().create_future()
        self._intake_queue.append((note, text, future))
        if self._intake_flusher is None or self._intake_flusher.done():
            self._intake_flusher = asyncio.create_task(self._flush_intake())
        return await future

    async def _flush_intake(self) -> None:
        while self._intake_queue:
            batch, self._intake_queue = self._intake_queue[:256], self._intake_queue[256:]
            try:
                results = await self.store.run(functools.partial(
                    st.record_notifications, items=[(note, text) for note, text, _ in batch], now=self.clock()))
            except st.StoreError as exc:
                for _, _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, _, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)
            if any(r.new_episodes for r in results):
                self.wake_planner.set()

    # -------------------------------------------------------------------------------------------- planning

    async def plan_pending(self) -> int:
        """Claim and process up to a batch of new episodes; return how many were processed."""
        now, lease = self.clock(), self.config.claim_lease_seconds
        episodes = await self.store.run(lambda tx: st.claim_episodes(tx, now, lease, 16))
        for episode in episodes:
            try:
                outcome = await self.process_episode(episode)
            except st.StoreError:
                raise
            except Exception as exc:  # a planner bug must not wedge the queue: record it on the episode
                log.exception("planning failed", extra={"episode": episode["id"]})
                outcome = "skipped"
                async with self.store.transaction() as tx:
                    await st.finish_episode(tx, episode["id"], "skipped", f"planner error: {exc}")
            self.metrics.decisions.labels(outcome).inc()
        return len(episodes)

    async def process_episode(self, episode: dict[str, Any]) -> str:
        if episode["component"] == "slo":
            return await self._rollback_for(episode)
        labels: dict[str, str] = episode["labels"]
        if episode["status"] == "resolved":
            return await self._finish(episode, "skipped", "resolved before it was planned")
        target = target_of(labels)
        if target is None:
            return await self._finish(episode, "skipped", "no target: the alert has no namespace/pod/deployment labels")
        key = target.key()
        engine_config = await self.current_config(labels) if self.config.prometheus_url else None
        now = self.clock()
        try:
            outcome = await self.store.run(lambda tx: self._plan_in_tx(tx, episode, key, engine_config, now))
        except st.Conflict:
            return await self._finish(episode, "skipped", f"superseded/skipped: another plan for {key} is in flight")
        if outcome == "planned":
            self.wake_outbox.set()
        return outcome

    async def _plan_in_tx(self, tx: st.Tx, episode: dict[str, Any], key: str,
                          engine_config: dict[str, str] | None, now: float) -> str:
        episode_id = episode["id"]
        in_flight = await st.in_flight_plan(tx, key)
        if in_flight is not None:
            reason = f"superseded/skipped: plan {in_flight['plan_id']} in flight ({in_flight['status']}) for {key}"
            await st.finish_episode(tx, episode_id, "skipped", reason, in_flight["plan_id"])
            return "skipped"
        recent = await st.plans_since(tx, key, now - self.config.cooldown_seconds)
        for plan in recent:
            if plan["bottleneck"] == episode["bottleneck"]:
                reason = (f"cooldown: plan {plan['plan_id']} for {episode['bottleneck']} on {key} was created "
                          f"{now - plan['created_at']:.0f}s ago (cooldown {self.config.cooldown_seconds:.0f}s)")
                await st.finish_episode(tx, episode_id, "skipped", reason, plan["plan_id"])
                return "skipped"
        cooling = frozenset(k for p in recent if p["status"] in CHANGED for k in p["knobs"])
        blocked = frozenset(row["knob"] for row in await st.blocked_knobs(tx, key))
        ctx = PlanningContext(blocked_knobs=blocked, cooling_knobs=cooling,
                              auto_approve_low_risk=self.config.auto_approve_low_risk,
                              engine_config=engine_config or {}, now=datetime.fromtimestamp(now, UTC))
        if self.config.bake_seconds is not None:
            ctx = dataclasses.replace(ctx, bake_seconds=int(self.config.bake_seconds))
        result = plan_for(planner_episode(episode), ctx)
        if isinstance(result, Diagnosis):
            diagnosis_id = await st.insert_diagnosis(tx, episode_id, target_key=key, bottleneck=result.bottleneck,
                                                     document=result.document(), now=now)
            await st.finish_episode(tx, episode_id, "diagnosed", f"diagnosis {diagnosis_id}: {result.reason}")
            return "diagnosed"
        await self._insert_plan(tx, result, key, episode_id, now)
        await st.finish_episode(tx, episode_id, "planned", f"plan {result.plan_id} ({result.status})", result.plan_id)
        return "planned"

    async def _insert_plan(self, tx: st.Tx, plan: Plan, key: str, episode_id: int | None, now: float) -> None:
        document = plan.document()
        scope = {k: v for k, v in plan.target.model_dump().items() if v is not None}
        bake = self.config.bake_seconds if self.config.bake_seconds is not None else plan.rollout.bake_seconds
        await st.insert_plan(tx, plan_id=plan.plan_id, idempotency_key=plan.idempotency_key, target_key=key,
                             bottleneck=plan.bottleneck, risk=plan.risk, status=plan.status, document=document,
                             knobs=sorted({a.knob for a in plan.actions}), scope=scope, episode_id=episode_id,
                             bake_seconds=float(bake), now=now)
        alerts = [a["fingerprint"] for a in document["evidence"]["alerts"]]
        await states.created(tx, plan.plan_id, plan.status, cause="alert",
                             detail={"event": "planned", "alerts": alerts, "episode": episode_id, "risk": plan.risk},
                             now=now)
        if plan.status == "approved":
            await enqueue_push(tx, document, now)

    async def _finish(self, episode: dict[str, Any], state: str, reason: str) -> str:
        await self.store.run(lambda tx: st.finish_episode(tx, episode["id"], state, reason))
        return state

    async def current_config(self, labels: Mapping[str, str]) -> dict[str, str] | None:
        """The target's ``llm_engine_info`` labels from Prometheus, or None (logged) when unavailable."""
        if self.session is None or not self.config.prometheus_url:
            return None
        matchers = [f'{k}="{_escape(labels[k])}"' for k in ("namespace", "pod", "model") if labels.get(k)]
        query = "llm_engine_info{" + ",".join(matchers) + "}"
        url = self.config.prometheus_url.rstrip("/") + "/api/v1/query"
        try:
            async with self.session.get(url, params={"query": query},
                                        timeout=aiohttp.ClientTimeout(total=5)) as resp:
                payload = await resp.json(content_type=None)
            results = payload["data"]["result"] if payload.get("status") == "success" else []
        except (aiohttp.ClientError, TimeoutError, ValueError, KeyError, TypeError) as exc:
            log.warning("cannot read the current config from Prometheus; planning with it unknown",
                        extra={"error": str(exc), "query": query})
            return None
        if not results:
            log.info("no llm_engine_info series for the target; planning with the config unknown",
                     extra={"query": query})
            return None
        metric: dict[str, str] = results[0]["metric"]
        wanted = {"engine", "model", *ENGINE_INFO_LABELS}
        return {k: v for k, v in metric.items() if k in wanted}

    # -------------------------------------------------------------------------------------------- rollback

    async def _rollback_for(self, episode: dict[str, Any]) -> str:
        labels: dict[str, str] = episode["labels"]
        now = self.clock()
        alert = {"alertname": episode["alertname"], "fingerprint": episode["fingerprint"],
                 "startsAt": episode["starts_at"], "labels": labels, "annotations": episode["annotations"]}
        async with self.store.transaction() as tx:
            rolled: list[str] = []
            for plan in await st.rollback_candidates(tx, now):
                if not (_scope_matches(plan["scope"], labels) and _rollback_wanted(plan, labels)):
                    continue
                try:
                    await states.transition(tx, plan["plan_id"], "rolled_back", cause="alert",
                                            detail={"event": "slo_alert", "alert": alert}, now=now)
                except states.IllegalTransition:
                    continue
                await enqueue_rollback(tx, plan, {"kind": "slo_alert", **alert}, now)
                for knob in plan["knobs"]:
                    await st.block_knob(tx, plan["target_key"], knob=knob, plan_id=plan["plan_id"],
                                        reason=f"rolled back by {episode['alertname']} ({labels.get('slo', '')})",
                                        now=now)
                rolled.append(plan["plan_id"])
            if not rolled:
                await st.finish_episode(tx, episode["id"], "no_rollback",
                                        "no plan in flight (or within its bake time) for this SLO alert's scope")
                return "no_rollback"
            await st.finish_episode(tx, episode["id"], "rolled_back", "rolled back " + ", ".join(rolled), rolled[0])
        self.wake_outbox.set()
        log.info("rollback decided", extra={"plans": rolled, "alert": episode["alertname"]})
        return "rolled_back"

    # ------------------------------------------------------------------------------------------- API actions

    async def approve(self, plan_id: str, who: str) -> dict[str, Any]:
        now = self.clock()
        async with self.store.transaction() as tx:
            await states.transition(tx, plan_id, "approved", cause="api", detail={"event": "approve", "by": who},
                                    now=now)
            plan = await _plan(tx, plan_id)
            await enqueue_push(tx, plan["document"], now)
        self.wake_outbox.set()
        return plan

    async def reject(self, plan_id: str, who: str, reason: str) -> dict[str, Any]:
        now = self.clock()
        async with self.store.transaction() as tx:
            await states.transition(tx, plan_id, "rejected", cause="api",
                                    detail={"event": "reject", "by": who, "reason": reason}, now=now)
            await st.outbox_cancel(tx, plan_id, "plan", now)
            plan = await _plan(tx, plan_id)
        return plan

    async def report_status(self, plan_id: str, status: str, detail: dict[str, Any]) -> dict[str, Any]:
        now = self.clock()
        async with self.store.transaction() as tx:
            await states.transition(tx, plan_id, status, cause="orchestrator", detail={"event": "status", **detail},
                                    now=now, error=detail.get("message") if status == "failed" else None)
            plan = await _plan(tx, plan_id)
        return plan

    async def clear_target(self, target_key: str, knob: str | None, who: str) -> int:
        async with self.store.transaction() as tx:
            return await st.clear_knobs(tx, target_key, knob, who, self.clock())

async def _plan(tx: st.Tx, plan_id: str) -> dict[str, Any]:
    plan = await st.get_plan(tx, plan_id)
    if plan is None:
        raise states.PlanNotFound(f"no plan {plan_id}")
    return plan


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def planner_episode(episode: Mapping[str, Any]) -> AlertEpisode:
    """The planner's view of a stored episode."""
    return AlertEpisode(
        alertname=episode["alertname"], fingerprint=episode["fingerprint"], starts_at=episode["starts_at"],
        labels=dict(episode["labels"]), annotations=dict(episode["annotations"]), status=episode["status"],
    )
