"""The receiver's moving parts wired together: intake (``recorder``), the planning worker (``worker``), the
outbox (``outbox``), registration and heartbeat (``agent``), the Prometheus reader (``promreader``), the analyses
(``analyzer``) and the metrics (``metrics``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp
from pydantic import BaseModel, ConfigDict, Field

from optiinfra import __version__, taxonomy
from optiinfra.config import Config, Slo

from . import store as st
from .agent import OrchestratorState, agent_loop
from .analysis import prometheus_reader
from .analyzer import BAKE, Analyzer, step_phase
from .metrics import ReceiverMetrics
from .orchestrator import Agent, OrchestratorClient
from .outbox import Outbox
from .promreader import Prometheus
from .recorder import Recorder
from .states import PlanStatus
from .worker import PlanningWorker

log = logging.getLogger(__name__)


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
    restart_grace_seconds: float = Field(default=300.0, ge=0, description="alerts on a target whose plan was "
                                         "rolled back this recently wait: its engine may still be restarting")
    push_timeout_seconds: float = Field(default=10.0, gt=0)
    shutdown_timeout_seconds: float = Field(default=3.0, ge=0, le=20,
                                            description="wait for in-flight requests on SIGTERM, then close")
    analysis_window_seconds: int = Field(default=300, gt=0, description="before/after windows of a plan's analysis")
    min_request_rate: float = Field(default=0.01, ge=0, description="requests/s below which an analysis is "
                                                                    "inconclusive")
    slos: list[Slo] = Field(default_factory=lambda: Config().slos,
                            description="SLOs (--slo-config): the SLI of each one covering a plan's target guards it")
    slo_scope: list[str] = Field(default_factory=lambda: Config().slo_scope, description="labels the SLIs are "
                                                                                         "recorded by")
    agent_id: str = "optiinfra-receiver"
    advertise_url: str = "http://127.0.0.1:9095"
    run_worker: bool = True


@dataclass
class Service:
    """The receiver's moving parts, owned by one aiohttp app."""

    config: ReceiverConfig
    store: st.Store
    metrics: ReceiverMetrics = field(default_factory=ReceiverMetrics)
    orchestrator: OrchestratorState = field(default_factory=OrchestratorState)
    clock: Callable[[], float] = time.time
    session: aiohttp.ClientSession | None = None
    wake_planner: asyncio.Event = field(default_factory=asyncio.Event)
    wake_outbox: asyncio.Event = field(default_factory=asyncio.Event)
    recorder: Recorder = field(init=False)
    worker: PlanningWorker = field(init=False)
    outbox: Outbox = field(init=False)
    analyzer: Analyzer | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        c = self.config
        self.recorder = Recorder(self.store, on_new_episodes=self.wake_planner.set, clock=self.clock)
        self.worker = PlanningWorker(self.store, c, decisions=self.metrics.decisions,
                                     wake_outbox=self.wake_outbox.set, clock=self.clock)
        self.outbox = Outbox(self.store, c, pushes=self.metrics.pushes, failures=self.metrics.push_failures,
                             on_answer=lambda error: self.orchestrator.answered(error, self.clock()),
                             clock=self.clock)

    # ------------------------------------------------------------------------------------------- lifecycle

    def agent(self) -> Agent:
        caps = ["plans", "rollbacks", *(f"bottleneck:{b.id}" for b in taxonomy.BOTTLENECKS if b.plannable)]
        url = self.config.advertise_url
        return Agent(agent_id=self.config.agent_id, agent_type="performance", capabilities=caps, endpoint=url,
                     health_endpoint=url.rstrip("/") + "/health", version=__version__)

    async def start(self) -> list[asyncio.Task[None]]:
        self.session = aiohttp.ClientSession()
        client = OrchestratorClient(self.session, self.config.orchestrator_url,
                                    token=self.config.orchestrator_token, timeout=self.config.push_timeout_seconds)
        self.outbox.client = client
        if self.config.prometheus_url:
            self.worker.prometheus = Prometheus(self.session, self.config.prometheus_url)
            self.analyzer = Analyzer(self.store, prometheus_reader(self.session, self.config.prometheus_url),
                                     clock=self.clock, wake_outbox=self.wake_outbox.set,
                                     wake_planner=self.wake_planner.set, lease_seconds=self.config.claim_lease_seconds)
        if not self.config.run_worker:
            return []
        agent = agent_loop(client, self.agent(), self.orchestrator, outbox_depth=self.outbox_depth,
                           period=self.config.heartbeat_seconds, clock=self.clock)
        loops = [("planner", self.wake_planner, self.worker.plan_pending),
                 ("outbox", self.wake_outbox, self.outbox.deliver_due)]
        if self.analyzer is not None:  # polled: analyses fall due with time, nothing wakes them
            loops.append(("analyzer", asyncio.Event(), self.analyzer.analyse_due))
        return [asyncio.create_task(agent), *(asyncio.create_task(self._loop(*loop)) for loop in loops)]

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

    async def outbox_depth(self) -> int:
        return await self.store.run(st.outbox_depth)


async def schedule_analyses(tx: st.Tx, plan: st.PlanRow, now: float, *, status: PlanStatus, step: int | None) -> None:
    """A rollout step is analysed one window after it is reported; completion once the bake time is over."""
    window = float(plan.document.get("expected_impact", {}).get("window_seconds", 0) or 0)
    if status == "rolling_out" and step is not None:
        await st.schedule_analysis(tx, plan.plan_id, step_phase(step), now + window, now)
    elif status == "completed":
        await st.schedule_analysis(tx, plan.plan_id, BAKE, now + max(plan.bake_seconds, window), now)
