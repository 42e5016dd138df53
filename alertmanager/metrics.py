"""The receiver's own metrics (``GET /metrics``), in a registry per app."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from optiinfra.buildinfo import register as register_build_info

from . import store as st
from .states import PLAN_STATUSES


class _Outcomes(Collector):
    """``optiinfra_receiver_plan_outcomes_total{verdict,bottleneck}``: finished plan analyses, counted in the
    store (so every replica reports the same totals, and a restart loses none)."""

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str], int] = {}

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily("optiinfra_receiver_plan_outcomes", "Plan analyses by verdict and bottleneck.",
                                     labels=["verdict", "bottleneck"])
        for (verdict, bottleneck), n in sorted(self.counts.items()):
            family.add_metric([verdict, bottleneck], n)
        yield family


class ReceiverMetrics:
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
        self.outcomes = _Outcomes()
        r.register(self.outcomes)
        self.intake_latency = Histogram(
            "optiinfra_receiver_intake_duration_seconds", "Time to validate, persist and answer a notification.",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5), registry=r)

    def recorded(self, result: st.IntakeResult, seconds: float) -> None:
        """Count one accepted notification and what its alerts meant."""
        self.notifications.labels("accepted").inc()
        for kind, n in (("new", result.new_episodes), ("duplicate", result.duplicates),
                        ("resolved", result.resolved), ("ignored", result.ignored)):
            if n:
                self.episodes.labels(kind).inc(n)
        self.intake_latency.observe(seconds)

    async def refresh(self, store: st.Store) -> None:
        """Read the gauges that live in the store (plans by status, outbox depth); raises StoreError."""
        async def read(tx: st.Tx) -> tuple[dict[str, int], int, dict[tuple[str, str], int]]:
            return await st.plan_counts(tx), await st.outbox_depth(tx), await st.verdict_counts(tx)

        counts, depth, self.outcomes.counts = await store.run(read)
        for status in PLAN_STATUSES:
            self.plans.labels(status).set(counts.get(status, 0))
        self.outbox_depth.set(depth)
