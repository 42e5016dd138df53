"""The receiver's store: the same suite over SQLite and a real PostgreSQL server; two replicas sharing one store."""

from __future__ import annotations

import asyncio
import time
from functools import partial

import pytest
from receiver_kit import alert, counts, notification, start_pair

from optiinfra.alertmanager import intake
from optiinfra.alertmanager import store as st
from optiinfra.demo.orchestrator import Sink

pytest_plugins = ("pg",)


async def _open(url: str) -> st.Store:
    store = st.open_store(url)
    await store.open()
    return store


def _note(*alerts):
    import json

    body = json.dumps(notification(*alerts)).encode()
    return intake.parse(body), body.decode()


async def test_episodes_are_idempotent_and_resolved(db_url):
    store = await _open(db_url)
    try:
        note, body = _note(alert("fp1"), alert("fp2", bottleneck=None))
        first = await store.run(partial(st.record_notification, note=note, body=body, now=time.time()))
        assert (first.new_episodes, first.ignored, first.duplicates) == (1, 1, 0)
        again = await store.run(partial(st.record_notification, note=note, body=body, now=time.time()))
        assert (again.new_episodes, again.duplicates) == (0, 2)
        resolved, rbody = _note(alert("fp1", status="resolved"))
        r, r2 = await store.run(partial(st.record_notifications, items=[(resolved, rbody)] * 2, now=time.time()))
        assert (r.resolved, r2.resolved, r2.duplicates) == (1, 0, 1)
        episodes = {e.fingerprint: e for e in await store.run(st.list_episodes)}
        totals = await store.run(counts)
        assert episodes["fp1"].status == "resolved" and episodes["fp1"].deliveries == 4
        assert episodes["fp2"].state == "ignored"
        assert totals["notifications"] == 4 and totals["episodes"] == 2
    finally:
        await store.close()


async def test_a_failed_transaction_leaves_nothing(db_url):
    store = await _open(db_url)
    try:
        note, body = _note(alert("fp-rollback"))
        with pytest.raises(RuntimeError):
            async def fails(tx: st.Tx) -> None:
                await st.record_notification(tx, note, body, time.time())
                raise RuntimeError("boom")
            await store.run(fails)
        assert (await store.run(counts))["episodes"] == 0
    finally:
        await store.close()


async def test_two_stores_never_claim_the_same_episode(db_url):
    a, b = await _open(db_url), await _open(db_url)
    try:
        note, body = _note(*[alert(f"fp-{i}", pod=f"p{i}") for i in range(40)])
        await a.run(partial(st.record_notification, note=note, body=body, now=time.time()))

        async def drain(store: st.Store) -> list[int]:
            got: list[int] = []
            while True:
                rows = await store.run(partial(st.claim_episodes, now=time.time(), lease=60, limit=3))
                if not rows:
                    return got
                got += [r.id for r in rows]
                await asyncio.sleep(0)

        ids_a, ids_b = await asyncio.gather(drain(a), drain(b))
        assert not set(ids_a) & set(ids_b)
        assert len(ids_a) + len(ids_b) == 40
        # an expired lease makes an episode claimable again (a replica died mid-planning)
        assert await a.run(partial(st.claim_episodes, now=time.time() + 120, lease=60, limit=100)) != []
    finally:
        await a.close()
        await b.close()


async def test_one_plan_in_flight_per_target_and_unique_outbox_keys(db_url):
    store = await _open(db_url)
    try:
        plan = dict(target_key="ml/p/m", bottleneck="kv_cache_pressure", risk="low", document={"plan_id": "x"},
                    knobs=["gpu_memory_utilization"], scope={"pod": "p"}, episode_id=None, bake_seconds=600.0)
        async def first(tx: st.Tx) -> None:
            await st.insert_plan(tx, plan_id="p1", idempotency_key="k1", status="approved", now=1.0, **plan)
            assert await st.enqueue(tx, "k1", kind="plan", plan_id="p1", path="/api/v1/plans", body={}, now=1.0)
            assert not await st.enqueue(tx, "k1", kind="plan", plan_id="p1", path="/api/v1/plans", body={}, now=1.0)
        await store.run(first)
        with pytest.raises(st.Conflict):
            await store.run(partial(st.insert_plan, plan_id="p2", idempotency_key="k2", status="pending_approval",
                                    now=2.0, **plan))

        async def later(tx: st.Tx) -> None:
            for status in ("pushed", "completed"):
                await st.transition(tx, "p1", status, cause="orchestrator", detail={}, now=3.0)
            await st.insert_plan(tx, plan_id="p3", idempotency_key="k3", status="pending_approval", now=4.0, **plan)
            assert [p.plan_id for p in await st.list_plans(tx, target="ml/p/m")] == ["p3", "p1"]
            in_flight = await st.in_flight_plan(tx, "ml/p/m")
            assert in_flight is not None and in_flight.plan_id == "p3"
            assert await st.outbox_depth(tx) == 1
        await store.run(later)
    finally:
        await store.close()


async def test_an_alert_without_a_model_meets_the_plan_in_flight_on_its_workload(db_url):
    """LLMEngineDown (identity: engine, no model) while a KV plan restarts that pod's engine: the same workload,
    so the plan in flight is found and no second (restart) plan is made; another pod's plan is not."""
    store = await _open(db_url)
    try:
        plan = dict(bottleneck="kv_cache_pressure", risk="low", document={"plan_id": "x"},
                    knobs=["kv_cache_memory_bytes"], scope={"pod": "vllm-0"}, episode_id=None, bake_seconds=600.0)

        async def in_flight(tx: st.Tx, key: str) -> str | None:
            row = await st.in_flight_plan(tx, key)
            return row.plan_id if row is not None else None

        async def rolling(tx: st.Tx) -> None:
            for plan_id, key in (("kv", "real/vllm-0/tiny-llama"), ("other", "real/vllm-1/tiny-llama")):
                await st.insert_plan(tx, plan_id=plan_id, idempotency_key=plan_id, status="approved", now=1.0,
                                     target_key=key, **plan)
            assert await in_flight(tx, "real/vllm-0/-") == "kv"
            assert await in_flight(tx, "real/vllm-0/tiny-llama") == "kv"
            assert await in_flight(tx, "real/vllm-0/other-model") is None
            assert await in_flight(tx, "real/vllm-00/-") is None
            assert await in_flight(tx, "real/vllm-2/-") is None
            for status in ("pushed", "completed"):
                await st.transition(tx, "kv", status, cause="orchestrator", detail={}, now=2.0)
            assert await in_flight(tx, "real/vllm-0/-") is None
            await st.insert_plan(tx, plan_id="down", idempotency_key="down", status="approved", now=3.0,
                                 target_key="real/vllm-0/-", **plan)
            assert await in_flight(tx, "real/vllm-0/tiny-llama") == "down"
        await store.run(rolling)
    finally:
        await store.close()


async def test_two_replicas_share_postgres(aiohttp_client, aiohttp_server, postgres_server):
    """Both replicas get every delivery (an HA Alertmanager pair, each sending to a different replica)."""
    dsn = postgres_server.new_database()
    sink = Sink()
    one = await start_pair(aiohttp_client, aiohttp_server, dsn, sink=sink)
    two = await start_pair(aiohttp_client, aiohttp_server, dsn, sink=sink)
    assert one.service is not two.service
    same = notification(alert("fp-ha"))
    others = [notification(alert(f"fp-ha-{i}", pod=f"pod-{i}")) for i in range(10)]
    posts = [pair.post(body) for body in [same] * 5 + others for pair in (one, two)]
    statuses = [r.status for r in await asyncio.gather(*posts)]
    assert statuses == [200] * len(posts)
    assert await sink.wait_for(lambda s: len(s.plans) == 11)
    await one.idle()
    await two.idle()
    assert len(sink.plans) == 11 and sink.duplicates == 0
    assert len([r for r in sink.requests if r.path == "/api/v1/plans"]) == 11
    plans = await one.plans()
    assert len(plans) == 11 and {p["status"] for p in plans} == {"pushed"}
    assert len({p["target_key"] for p in plans}) == 11


async def test_transitions_refuse_illegal_moves_and_audit_legal_ones(db_url):
    from optiinfra.alertmanager import states
    from optiinfra.alertmanager.states import PLAN_STATUSES

    store = await _open(db_url)
    try:
        base = dict(bottleneck="b", risk="low", document={}, knobs=[], scope={}, episode_id=None, bake_seconds=1.0,
                    now=0.0)
        for i, src in enumerate(PLAN_STATUSES):
            for j, dst in enumerate(PLAN_STATUSES):
                plan_id = f"p-{i}-{j}"
                await store.run(partial(st.insert_plan, plan_id=plan_id, idempotency_key=plan_id, target_key=plan_id,
                                        status=src, **base))
                legal = dst in states.TRANSITIONS.get(src, frozenset())
                try:
                    await store.run(partial(st.transition, plan_id=plan_id, to=dst, cause="api",
                                            detail={"why": "test"}, now=1.0))
                except states.IllegalTransition:
                    assert not legal, (src, dst)
                else:
                    assert legal, (src, dst)
                plan = await store.run(partial(st.get_plan, plan_id=plan_id))
                audit = await store.run(partial(st.audit_log, plan_id=plan_id))
                assert plan is not None and plan.status == (dst if legal else src)
                assert [(a.from_status, a.to_status) for a in audit] == ([(src, dst)] if legal else [])
        with pytest.raises(states.PlanNotFound):
            await store.run(partial(st.transition, plan_id="missing", to="approved", cause="api", detail={}, now=1.0))
    finally:
        await store.close()


async def test_a_notification_no_store_can_hold_fails_alone_in_its_batch(db_url):
    """Group commit isolates a failing notification (here one that skipped intake's checks): its batch-mates are
    stored and answered, and it gets its own error instead of hanging the batch."""
    import dataclasses

    from optiinfra.alertmanager.recorder import Recorder

    store = await _open(db_url)
    try:
        recorder = Recorder(store, on_new_episodes=lambda: None, clock=time.time)
        good = [_note(alert(f"fp-{i}", pod=f"p{i}")) for i in range(10)]
        note, body = _note(alert("fp-bad"))
        bad = dataclasses.replace(note.alerts[0], labels={**note.alerts[0].labels, "alertname": "X\ud800"})
        items = [*good[:5], (dataclasses.replace(note, alerts=(bad,)), body), *good[5:]]
        results = await asyncio.wait_for(
            asyncio.gather(*(recorder.record(n, b) for n, b in items), return_exceptions=True), timeout=30)
        assert isinstance(results[5], st.StoreError), results[5]
        assert [r.new_episodes for i, r in enumerate(results) if i != 5] == [1] * 10
        assert (await store.run(counts))["episodes"] == 10
    finally:
        await store.close()
