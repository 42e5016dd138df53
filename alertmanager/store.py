"""The receiver's durable state: one interface, two backends (SQLite for one replica, PostgreSQL for many).

A backend only runs transactions (:meth:`Store.run` with a :class:`Tx`: ``execute``/``fetch``/``fetchrow``);
every query lives here, written once in the SQL both databases share. ``?`` placeholders become ``$n`` for
PostgreSQL and ``{lock}`` becomes ``FOR UPDATE SKIP LOCKED`` there (SQLite serialises writers with ``BEGIN
IMMEDIATE`` instead), so two replicas never claim the same episode or outbox row. Uniqueness that must hold across
replicas is a database constraint: one episode per ``(fingerprint, starts_at)``, one outbox row per key, one plan
in flight per target (a partial unique index).
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Coroutine, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields
from typing import Any, Literal, TypeVar

from optiinfra.secrets import redact_url

from .intake import Notification, is_slo_burn
from .states import CHANGED, IN_FLIGHT, ROLLBACKABLE, PlanNotFound, PlanStatus, check, sql_list

T = TypeVar("T")
R = TypeVar("R")

#: Episode processing states.
EPISODE_STATES = ("new", "claimed", "deferred", "planned", "diagnosed", "skipped", "ignored", "rolled_back",
                  "no_rollback")


class StoreError(Exception):
    """The store could not be reached or could not persist."""


class Conflict(StoreError):
    """A uniqueness constraint refused the write (e.g. a second plan in flight for one target)."""


@contextmanager
def driver_errors(conflict: type[Exception], errors: tuple[type[Exception], ...]) -> Iterator[None]:
    """A backend driver's exceptions as the store's: ``conflict`` (a unique violation) as :class:`Conflict`,
    ``errors`` as :class:`StoreError`."""
    try:
        yield
    except conflict as exc:
        raise Conflict(str(exc)) from exc
    except errors as exc:
        raise StoreError(str(exc)) from exc


class Tx(ABC):
    """One open transaction."""

    for_update = ""
    """`` FOR UPDATE`` where a read can lock rows (PostgreSQL); SQLite's ``BEGIN IMMEDIATE`` already serialises
    writers."""

    @abstractmethod
    async def execute(self, sql: str, *args: Any) -> int:
        """Run a statement; return the number of rows it changed."""

    @abstractmethod
    async def fetch(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        ...

    async def fetchrow(self, sql: str, *args: Any) -> dict[str, Any] | None:
        rows = await self.fetch(sql, *args)
        return rows[0] if rows else None


class Store(ABC):
    dialect: str

    @abstractmethod
    async def run(self, body: Callable[[Tx], Coroutine[Any, Any, T]]) -> T:
        """Run ``body(tx)`` in one transaction and return its result (committed; rolled back if it raises).

        The body may await only the transaction's own methods: the SQLite backend runs it to completion on its
        database thread in one hop.
        """

    @abstractmethod
    async def open(self) -> None:
        """Connect and create the schema if needed."""

    @abstractmethod
    async def close(self) -> None:
        ...

    @abstractmethod
    def describe(self) -> str:
        """Where the data lives, without credentials."""


def open_store(url: str) -> Store:
    """``sqlite:///relative.db``, ``sqlite:////absolute/path.db`` (SQLAlchemy's spelling) or
    ``postgresql://user@host:port/db``."""
    if url.startswith("sqlite://"):
        from .store_sqlite import SqliteStore  # noqa: PLC0415

        return SqliteStore(url.removeprefix("sqlite://").removeprefix("/"))
    if url.startswith(("postgresql://", "postgres://")):
        from .store_postgres import PostgresStore  # noqa: PLC0415

        return PostgresStore(url)
    raise ValueError(f"unsupported --db {redact_url(url)!r}: use sqlite:///PATH or postgresql://USER@HOST:PORT/DB")


# ------------------------------------------------------------------------------------------------------ typed rows

def _row(cls: type[R], row: dict[str, Any], **decoded: Any) -> R:
    """A typed row from a database row (every column a field); ``decoded`` replaces JSON text columns."""
    return cls(**{f.name: decoded[f.name] if f.name in decoded else row[f.name]
                  for f in fields(cls)})  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class Episode:
    """One alert episode: ``(fingerprint, starts_at)``."""

    id: int
    fingerprint: str
    starts_at: str
    alertname: str
    bottleneck: str | None
    component: str | None
    labels: dict[str, str]
    annotations: dict[str, str]
    status: Literal["firing", "resolved"]
    ends_at: str | None
    first_seen: float
    resolved_at: float | None
    state: str
    state_reason: str
    plan_id: str | None
    claimed_until: float | None
    deliveries: int


@dataclass(frozen=True, slots=True)
class PlanRow:
    """A stored plan: its document plus what the receiver tracks about it."""

    plan_id: str
    idempotency_key: str
    target_key: str
    bottleneck: str
    risk: str
    status: PlanStatus
    document: dict[str, Any]
    knobs: list[str]
    scope: dict[str, str]
    episode_id: int | None
    bake_seconds: float
    created_at: float
    updated_at: float
    pushed_at: float | None
    completed_at: float | None
    last_error: str


@dataclass(frozen=True, slots=True)
class AuditEntry:
    at: float
    from_status: str | None
    to_status: str
    cause: str
    detail: dict[str, Any]


@dataclass(frozen=True, slots=True)
class DiagnosisRow:
    id: int
    episode_id: int
    target_key: str
    bottleneck: str
    document: dict[str, Any]
    created_at: float


@dataclass(frozen=True, slots=True)
class BlockedKnob:
    knob: str
    plan_id: str
    reason: str
    created_at: float


@dataclass(frozen=True, slots=True)
class AnalysisRow:
    """One analysis of a plan: a rollout step (``step-10``) or the end of the bake time (``bake``)."""

    id: int
    plan_id: str
    phase: str
    due_at: float
    state: str
    verdict: str | None
    detail: dict[str, Any]
    created_at: float
    claimed_until: float | None
    done_at: float | None


@dataclass(frozen=True, slots=True)
class Learned:
    """A knob that did not help a bottleneck on a target: not proposed again for it there until cleared."""

    bottleneck: str
    knob: str
    plan_id: str
    verdict: str
    reason: str
    created_at: float


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """One queued push; ``key`` is also its ``Idempotency-Key``."""

    id: int
    key: str
    kind: str
    plan_id: str
    path: str
    body: dict[str, Any]
    state: str
    attempts: int
    next_attempt_at: float
    last_error: str
    created_at: float
    done_at: float | None


# ---------------------------------------------------------------------------------------------------------- schema

SCHEMA = """
CREATE TABLE IF NOT EXISTS notifications (
    id {autoid}, received_at {real} NOT NULL, status TEXT NOT NULL, receiver TEXT NOT NULL,
    group_key TEXT NOT NULL, reason TEXT NOT NULL, alert_count {int} NOT NULL, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS episodes (
    id {autoid}, fingerprint TEXT NOT NULL, starts_at TEXT NOT NULL, alertname TEXT NOT NULL,
    bottleneck TEXT, component TEXT, labels TEXT NOT NULL, annotations TEXT NOT NULL,
    status TEXT NOT NULL, ends_at TEXT, first_seen {real} NOT NULL, resolved_at {real},
    state TEXT NOT NULL, state_reason TEXT NOT NULL DEFAULT '', plan_id TEXT, claimed_until {real},
    deliveries {int} NOT NULL DEFAULT 1,
    UNIQUE (fingerprint, starts_at));
CREATE INDEX IF NOT EXISTS episodes_state ON episodes (state, id);
CREATE TABLE IF NOT EXISTS plans (
    plan_id TEXT PRIMARY KEY, idempotency_key TEXT NOT NULL UNIQUE, target_key TEXT NOT NULL,
    bottleneck TEXT NOT NULL, risk TEXT NOT NULL, status TEXT NOT NULL, document TEXT NOT NULL,
    knobs TEXT NOT NULL, scope TEXT NOT NULL, episode_id {int}, bake_seconds {real} NOT NULL,
    created_at {real} NOT NULL, updated_at {real} NOT NULL, pushed_at {real}, completed_at {real},
    last_error TEXT NOT NULL DEFAULT '');
CREATE UNIQUE INDEX IF NOT EXISTS plans_one_in_flight ON plans (target_key)
    WHERE status IN {in_flight};
CREATE INDEX IF NOT EXISTS plans_target ON plans (target_key, created_at);
CREATE TABLE IF NOT EXISTS audit (
    id {autoid}, plan_id TEXT NOT NULL, at {real} NOT NULL, from_status TEXT, to_status TEXT NOT NULL,
    cause TEXT NOT NULL, detail TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS audit_plan ON audit (plan_id, id);
CREATE TABLE IF NOT EXISTS diagnoses (
    id {autoid}, episode_id {int} NOT NULL, target_key TEXT NOT NULL, bottleneck TEXT NOT NULL,
    document TEXT NOT NULL, created_at {real} NOT NULL);
CREATE TABLE IF NOT EXISTS outbox (
    id {autoid}, key TEXT NOT NULL UNIQUE, kind TEXT NOT NULL, plan_id TEXT NOT NULL, path TEXT NOT NULL,
    body TEXT NOT NULL, state TEXT NOT NULL, attempts {int} NOT NULL DEFAULT 0, next_attempt_at {real} NOT NULL,
    last_error TEXT NOT NULL DEFAULT '', created_at {real} NOT NULL, done_at {real});
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (state, next_attempt_at);
CREATE TABLE IF NOT EXISTS blocked_knobs (
    id {autoid}, target_key TEXT NOT NULL, knob TEXT NOT NULL, plan_id TEXT NOT NULL, reason TEXT NOT NULL,
    created_at {real} NOT NULL, cleared_at {real}, cleared_by TEXT);
CREATE INDEX IF NOT EXISTS blocked_target ON blocked_knobs (target_key, cleared_at);
CREATE TABLE IF NOT EXISTS analyses (
    id {autoid}, plan_id TEXT NOT NULL, phase TEXT NOT NULL, due_at {real} NOT NULL, state TEXT NOT NULL,
    verdict TEXT, detail TEXT NOT NULL DEFAULT '{}', created_at {real} NOT NULL, claimed_until {real},
    done_at {real}, UNIQUE (plan_id, phase));
CREATE INDEX IF NOT EXISTS analyses_due ON analyses (state, due_at);
CREATE TABLE IF NOT EXISTS learned (
    id {autoid}, target_key TEXT NOT NULL, bottleneck TEXT NOT NULL, knob TEXT NOT NULL, plan_id TEXT NOT NULL,
    verdict TEXT NOT NULL, reason TEXT NOT NULL, created_at {real} NOT NULL, cleared_at {real}, cleared_by TEXT);
CREATE INDEX IF NOT EXISTS learned_target ON learned (target_key, bottleneck, cleared_at);
"""


def schema_statements(autoid: str, real: str, integer: str) -> list[str]:
    text = SCHEMA.replace("{autoid}", autoid).replace("{real}", real).replace("{int}", integer)
    text = text.replace("{in_flight}", sql_list(IN_FLIGHT))
    return [s.strip() for s in text.split(";") if s.strip()]


def _j(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


async def _select(tx: Tx, table: str, order: str, limit: int | None = None, *, where: str = "",
                  **equal: str | None) -> list[dict[str, Any]]:
    """Rows of ``table`` (a constant, like ``where`` and ``order``) whose columns equal the given values; a
    None or empty value is no filter."""
    args: list[Any] = [value for value in equal.values() if value]
    conditions = [where] if where else []
    conditions += [f"{column} = ?" for column, value in equal.items() if value]
    sql = f"SELECT * FROM {table}" + (" WHERE " + " AND ".join(conditions) if conditions else "")  # noqa: S608
    if limit is not None:
        return await tx.fetch(f"{sql} ORDER BY {order} LIMIT ?", *args, limit)
    return await tx.fetch(f"{sql} ORDER BY {order}", *args)


# --------------------------------------------------------------------------------------------------------- intake

@dataclass
class IntakeResult:
    notification_id: int
    new_episodes: int = 0
    duplicates: int = 0
    resolved: int = 0
    ignored: int = 0


async def record_notification(tx: Tx, note: Notification, body: str, now: float) -> IntakeResult:
    """Store one delivery and upsert its episodes; re-deliveries change nothing but a counter."""
    rows = await tx.fetch(
        "INSERT INTO notifications (received_at, status, receiver, group_key, reason, alert_count, body) "
        "VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
        now, note.status, note.receiver, note.group_key, note.reason, len(note.alerts), body)
    result = IntakeResult(notification_id=int(rows[0]["id"]))
    for alert in note.alerts:
        if alert.status == "resolved":
            changed = await tx.execute(
                "UPDATE episodes SET status = 'resolved', resolved_at = ?, ends_at = ?, deliveries = deliveries + 1 "
                "WHERE fingerprint = ? AND starts_at = ? AND status = 'firing'",
                now, alert.ends_at, alert.fingerprint, alert.starts_at)
            if changed:
                result.resolved += 1
                continue
            state, reason = "ignored", "first seen resolved"
        elif alert.bottleneck is None and not is_slo_burn(alert.labels):
            state, reason = "ignored", "no bottleneck label"
        else:
            state, reason = "new", ""
        # one statement either way: a new episode starts at deliveries = 1, a repeat only counts the delivery
        row = await tx.fetchrow(
            "INSERT INTO episodes (fingerprint, starts_at, alertname, bottleneck, component, labels, annotations, "
            "status, ends_at, first_seen, resolved_at, state, state_reason) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (fingerprint, starts_at) "
            "DO UPDATE SET deliveries = episodes.deliveries + 1 RETURNING deliveries",
            alert.fingerprint, alert.starts_at, alert.alertname, alert.bottleneck, alert.component,
            _j(alert.labels), _j(alert.annotations), alert.status, alert.ends_at, now,
            now if alert.status == "resolved" else None, state, reason)
        if row is None or int(row["deliveries"]) > 1:
            result.duplicates += 1
        elif state == "ignored":
            result.ignored += 1
        else:
            result.new_episodes += 1
    return result


async def record_notifications(tx: Tx, items: Sequence[tuple[Notification, str]], now: float) -> list[IntakeResult]:
    """Several deliveries in one transaction (the receiver's group commit)."""
    return [await record_notification(tx, note, body, now) for note, body in items]


# ------------------------------------------------------------------------------------------------------- episodes

def _episode(row: dict[str, Any]) -> Episode:
    return _row(Episode, row, labels=json.loads(row["labels"]), annotations=json.loads(row["annotations"]))


async def claim_episodes(tx: Tx, now: float, lease: float, limit: int) -> list[Episode]:
    """New episodes, deferred ones whose time came and ones whose claim lease expired after a crash, locked for
    this replica."""
    rows = await tx.fetch(
        "SELECT * FROM episodes WHERE state = 'new' OR (state IN ('claimed', 'deferred') AND claimed_until < ?) "
        "ORDER BY id LIMIT ? {lock}", now, limit)
    for row in rows:
        await tx.execute("UPDATE episodes SET state = 'claimed', claimed_until = ? WHERE id = ?",
                         now + lease, row["id"])
    return [_episode(r) for r in rows]


async def defer_episode(tx: Tx, episode_id: int, until: float, reason: str, plan_id: str) -> None:
    """Hold an episode until ``until``: it is then claimed and planned afresh (or skipped if it resolved)."""
    await tx.execute("UPDATE episodes SET state = 'deferred', state_reason = ?, plan_id = ?, claimed_until = ? "
                     "WHERE id = ?", reason, plan_id, until, episode_id)


async def finish_episode(tx: Tx, episode_id: int, state: str, reason: str, plan_id: str | None = None) -> None:
    await tx.execute("UPDATE episodes SET state = ?, state_reason = ?, plan_id = ?, claimed_until = NULL WHERE id = ?",
                     state, reason, plan_id, episode_id)


async def firing_slo_episodes(tx: Tx) -> list[Episode]:
    """SLO burn episodes still firing (their labels say which SLO and scope)."""
    rows = await tx.fetch("SELECT * FROM episodes WHERE status = 'firing' AND (bottleneck = 'slo_burn' OR "
                          "component = 'slo') ORDER BY id")
    return [_episode(r) for r in rows]


async def replan_episode(tx: Tx, episode_id: int, reason: str) -> None:
    """Queue an episode for planning again (its plan had no effect or failed: the next action is tried)."""
    await tx.execute("UPDATE episodes SET state = 'new', state_reason = ?, claimed_until = NULL WHERE id = ?",
                     reason, episode_id)


async def list_episodes(tx: Tx, state: str | None = None, limit: int = 200) -> list[Episode]:
    return [_episode(r) for r in await _select(tx, "episodes", "id DESC", limit, state=state)]


# ---------------------------------------------------------------------------------------------------------- plans

def _plan(row: dict[str, Any]) -> PlanRow:
    document = json.loads(row["document"])
    document["status"] = row["status"]
    return _row(PlanRow, row, document=document, knobs=json.loads(row["knobs"]), scope=json.loads(row["scope"]))


async def insert_plan(tx: Tx, *, plan_id: str, idempotency_key: str, target_key: str, bottleneck: str, risk: str,
                      status: str, document: dict[str, Any], knobs: Sequence[str], scope: dict[str, str],
                      episode_id: int | None, bake_seconds: float, now: float) -> None:
    await tx.execute(
        "INSERT INTO plans (plan_id, idempotency_key, target_key, bottleneck, risk, status, document, knobs, scope, "
        "episode_id, bake_seconds, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        plan_id, idempotency_key, target_key, bottleneck, risk, status, _j(document), _j(list(knobs)), _j(scope),
        episode_id, bake_seconds, now, now)


async def get_plan(tx: Tx, plan_id: str, *, for_update: bool = False) -> PlanRow | None:
    lock = tx.for_update if for_update else ""
    row = await tx.fetchrow("SELECT * FROM plans WHERE plan_id = ?" + lock, plan_id)  # noqa: S608
    return _plan(row) if row else None


async def existing_plan(tx: Tx, plan_id: str, *, for_update: bool = False) -> PlanRow:
    """:func:`get_plan`, raising :class:`PlanNotFound` for a plan that does not exist."""
    plan = await get_plan(tx, plan_id, for_update=for_update)
    if plan is None:
        raise PlanNotFound(f"no plan {plan_id}")
    return plan


async def list_plans(tx: Tx, *, status: str | None = None, target: str | None = None,
                     bottleneck: str | None = None, limit: int = 200) -> list[PlanRow]:
    rows = await _select(tx, "plans", "created_at DESC", limit, status=status, target_key=target,
                         bottleneck=bottleneck)
    return [_plan(r) for r in rows]


async def in_flight_plan(tx: Tx, target_key: str) -> PlanRow | None:
    """The plan in flight for ``target_key`` (``namespace/workload/model``). A key without a model (``-``: an
    alert about the pod or its engine process, e.g. LLMEngineDown during a restart a plan is doing) meets
    every plan of the workload, and a plan without a model blocks every model of it."""
    return await _workload_plan(tx, target_key, f"status IN {sql_list(IN_FLIGHT)}")


async def rolled_back_since(tx: Tx, target_key: str, since: float) -> PlanRow | None:
    """A plan of ``target_key``'s workload (matched as by :func:`in_flight_plan`) rolled back at ``since`` or
    later: the orchestrator may still be restarting the engine with the flags it replaced."""
    return await _workload_plan(tx, target_key, "status = 'rolled_back' AND updated_at >= ?", since)


async def _workload_plan(tx: Tx, target_key: str, where: str, *args: Any) -> PlanRow | None:
    workload = target_key.rsplit("/", 1)[0] + "/"
    sql = (f"SELECT * FROM plans WHERE substr(target_key, 1, ?) = ? AND {where} "  # noqa: S608 (constants only)
           f"ORDER BY created_at{tx.for_update}")
    for row in await tx.fetch(sql, len(workload), workload, *args):
        key = row["target_key"]
        if key == target_key or key.endswith("/-") or target_key.endswith("/-"):
            return _plan(row)
    return None


async def plans_since(tx: Tx, target_key: str, since: float) -> list[PlanRow]:
    rows = await tx.fetch("SELECT * FROM plans WHERE target_key = ? AND created_at >= ? ORDER BY created_at",
                          target_key, since)
    return [_plan(r) for r in rows]


async def rollback_candidates(tx: Tx, now: float) -> list[PlanRow]:
    """Plans that may still be rolled back: pushed, rolling out, or completed within their bake time."""
    rows = await tx.fetch(
        f"SELECT * FROM plans WHERE status IN {sql_list(ROLLBACKABLE)} "  # noqa: S608 - constants only
        "OR (status = 'completed' AND completed_at + bake_seconds >= ?) ORDER BY created_at" + tx.for_update, now)
    return [_plan(r) for r in rows]


async def _append_audit(tx: Tx, plan_id: str, *, from_status: str | None, to_status: str, cause: str,
                        detail: dict[str, Any], now: float) -> None:
    await tx.execute("INSERT INTO audit (plan_id, at, from_status, to_status, cause, detail) VALUES (?, ?, ?, ?, ?, ?)",
                     plan_id, now, from_status, to_status, cause, _j(detail))


async def transition(tx: Tx, plan_id: str, to: PlanStatus, *, cause: str, detail: dict[str, Any], now: float,
                     error: str | None = None) -> PlanRow:
    """Move a plan to ``to`` if the state machine allows it; audit it in the same transaction.

    Returns the plan as it was before; raises :class:`PlanNotFound` or :class:`IllegalTransition`.
    """
    plan = await existing_plan(tx, plan_id, for_update=True)
    check(plan_id, plan.status, to)
    await tx.execute("UPDATE plans SET status = ?, updated_at = ?, last_error = COALESCE(?, last_error), "
                     "pushed_at = CASE ? WHEN 'pushed' THEN ? ELSE pushed_at END, "
                     "completed_at = CASE ? WHEN 'completed' THEN ? ELSE completed_at END WHERE plan_id = ?",
                     to, now, error, to, now, to, now, plan_id)
    await _append_audit(tx, plan_id, from_status=plan.status, to_status=to, cause=cause, detail=detail, now=now)
    return plan


async def created(tx: Tx, plan_id: str, status: PlanStatus, *, cause: str, detail: dict[str, Any],
                  now: float) -> None:
    """The first move of a plan just inserted with ``status`` (creation is a transition from nothing)."""
    check(plan_id, None, status)
    await _append_audit(tx, plan_id, from_status=None, to_status=status, cause=cause, detail=detail, now=now)


async def note(tx: Tx, plan_id: str, *, cause: str, detail: dict[str, Any], now: float) -> None:
    """An audit record without a status change (e.g. a rollback reached the orchestrator)."""
    plan = await existing_plan(tx, plan_id)
    await _append_audit(tx, plan_id, from_status=plan.status, to_status=plan.status, cause=cause, detail=detail,
                        now=now)


async def audit_log(tx: Tx, plan_id: str) -> list[AuditEntry]:
    rows = await _select(tx, "audit", "id", plan_id=plan_id)
    return [_row(AuditEntry, r, detail=json.loads(r["detail"])) for r in rows]


def changed_knobs(plans: Sequence[PlanRow]) -> frozenset[str]:
    """Knobs the given plans changed (or are changing): what the cooldown covers."""
    return frozenset(k for p in plans if p.status in CHANGED for k in p.knobs)


async def plan_counts(tx: Tx) -> dict[str, int]:
    rows = await tx.fetch("SELECT status, COUNT(*) AS n FROM plans GROUP BY status")
    return {r["status"]: int(r["n"]) for r in rows}


# --------------------------------------------------------------------------------------------------------- knobs

async def blocked_knobs(tx: Tx, target_key: str) -> list[BlockedKnob]:
    rows = await _select(tx, "blocked_knobs", "id", where="cleared_at IS NULL", target_key=target_key)
    return [_row(BlockedKnob, r) for r in rows]


async def block_knob(tx: Tx, target_key: str, *, knob: str, plan_id: str, reason: str, now: float) -> None:
    await tx.execute("INSERT INTO blocked_knobs (target_key, knob, plan_id, reason, created_at) VALUES (?, ?, ?, ?, ?)",
                     target_key, knob, plan_id, reason, now)


async def clear_knobs(tx: Tx, target_key: str, knob: str | None, who: str, now: float) -> int:
    """Clear blocked and learned knobs of a target (one knob, or all); returns how many rows were cleared."""
    cleared = 0
    for table in ("blocked_knobs", "learned"):
        sql = f"UPDATE {table} SET cleared_at = ?, cleared_by = ? WHERE target_key = ? AND cleared_at IS NULL"  # noqa: S608
        cleared += (await tx.execute(sql + " AND knob = ?", now, who, target_key, knob) if knob
                    else await tx.execute(sql, now, who, target_key))
    return cleared


async def learn(tx: Tx, target_key: str, *, bottleneck: str, knob: str, plan_id: str, verdict: str, reason: str,
                now: float) -> None:
    await tx.execute("INSERT INTO learned (target_key, bottleneck, knob, plan_id, verdict, reason, created_at) "
                     "VALUES (?, ?, ?, ?, ?, ?, ?)", target_key, bottleneck, knob, plan_id, verdict, reason, now)


async def learned(tx: Tx, target_key: str, bottleneck: str | None = None) -> list[Learned]:
    """What was learned on a target (for one bottleneck, or all), not yet cleared."""
    rows = await _select(tx, "learned", "id", where="cleared_at IS NULL", target_key=target_key, bottleneck=bottleneck)
    return [_row(Learned, r) for r in rows]


# ------------------------------------------------------------------------------------------------------ analyses

def _analysis(row: dict[str, Any]) -> AnalysisRow:
    return _row(AnalysisRow, row, detail=json.loads(row["detail"]))


async def schedule_analysis(tx: Tx, plan_id: str, phase: str, due_at: float, now: float) -> bool:
    """Queue one analysis of a plan; a phase already queued (a repeated status report) is not queued twice."""
    rows = await tx.fetch("INSERT INTO analyses (plan_id, phase, due_at, state, created_at) "
                          "VALUES (?, ?, ?, 'pending', ?) ON CONFLICT (plan_id, phase) DO NOTHING RETURNING id",
                          plan_id, phase, due_at, now)
    return bool(rows)


async def claim_analyses(tx: Tx, now: float, lease: float, limit: int) -> list[AnalysisRow]:
    """Due analyses (or ones whose claim lease expired after a crash), leased to this replica."""
    rows = await tx.fetch("SELECT * FROM analyses WHERE (state = 'pending' AND due_at <= ?) "
                          "OR (state = 'claimed' AND claimed_until < ?) ORDER BY due_at, id LIMIT ? {lock}",
                          now, now, limit)
    for row in rows:
        await tx.execute("UPDATE analyses SET state = 'claimed', claimed_until = ? WHERE id = ?", now + lease,
                         row["id"])
    return [_analysis(r) for r in rows]


async def finish_analysis(tx: Tx, analysis_id: int, verdict: str, detail: dict[str, Any], now: float) -> bool:
    """Record an analysis' verdict once: False when it was already recorded (another replica, a retry)."""
    return bool(await tx.execute(
        "UPDATE analyses SET state = 'done', verdict = ?, detail = ?, done_at = ?, claimed_until = NULL "
        "WHERE id = ? AND state <> 'done'", verdict, _j(detail), now, analysis_id))


async def plan_analyses(tx: Tx, plan_id: str) -> list[AnalysisRow]:
    return [_analysis(r) for r in await _select(tx, "analyses", "due_at, id", plan_id=plan_id)]


async def baking_plan(tx: Tx, target_key: str) -> tuple[str, float] | None:
    """A completed plan for the target whose bake-time analysis has not finished, and when that analysis is due:
    its effect is still being measured, so no other change may land on the target (it could not be told
    apart)."""
    row = await tx.fetchrow("SELECT p.plan_id AS plan_id, a.due_at AS due_at FROM plans p JOIN analyses a "
                            "ON a.plan_id = p.plan_id WHERE p.target_key = ? AND p.status = 'completed' "
                            "AND a.phase = 'bake' AND a.state <> 'done'", target_key)
    return (str(row["plan_id"]), float(row["due_at"])) if row else None


async def verdict_counts(tx: Tx) -> dict[tuple[str, str], int]:
    """Finished analyses by (verdict, bottleneck)."""
    rows = await tx.fetch("SELECT a.verdict AS verdict, p.bottleneck AS bottleneck, COUNT(*) AS n FROM analyses a "
                          "JOIN plans p ON p.plan_id = a.plan_id WHERE a.state = 'done' AND a.verdict <> 'skipped' "
                          "GROUP BY a.verdict, p.bottleneck")
    return {(r["verdict"], r["bottleneck"]): int(r["n"]) for r in rows}


# ------------------------------------------------------------------------------------------------------ diagnoses

async def insert_diagnosis(tx: Tx, episode_id: int, *, target_key: str, bottleneck: str, document: dict[str, Any],
                           now: float) -> int:
    rows = await tx.fetch("INSERT INTO diagnoses (episode_id, target_key, bottleneck, document, created_at) "
                          "VALUES (?, ?, ?, ?, ?) RETURNING id", episode_id, target_key, bottleneck, _j(document), now)
    return int(rows[0]["id"])


async def list_diagnoses(tx: Tx, *, target: str | None = None, limit: int = 200) -> list[DiagnosisRow]:
    rows = await _select(tx, "diagnoses", "id DESC", limit, target_key=target)
    return [_row(DiagnosisRow, r, document=json.loads(r["document"])) for r in rows]


# --------------------------------------------------------------------------------------------------------- outbox

async def enqueue(tx: Tx, key: str, *, kind: str, plan_id: str, path: str, body: dict[str, Any], now: float) -> bool:
    """Queue one push; a key already queued (or sent) is not queued twice. True when queued now."""
    rows = await tx.fetch(
        "INSERT INTO outbox (key, kind, plan_id, path, body, state, next_attempt_at, created_at) "
        "VALUES (?, ?, ?, ?, ?, 'pending', ?, ?) ON CONFLICT (key) DO NOTHING RETURNING id",
        key, kind, plan_id, path, _j(body), now, now)
    return bool(rows)


def _outbox(row: dict[str, Any], **changed: Any) -> OutboxRow:
    return _row(OutboxRow, row, body=json.loads(row["body"]), **changed)


async def claim_outbox(tx: Tx, now: float, lease: float, limit: int) -> list[OutboxRow]:
    """Due rows, leased to this replica until ``now + lease`` (a crash makes them due again after it)."""
    rows = await tx.fetch("SELECT * FROM outbox WHERE state = 'pending' AND next_attempt_at <= ? "
                          "ORDER BY next_attempt_at, id LIMIT ? {lock}", now, limit)
    for row in rows:
        await tx.execute("UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ? WHERE id = ?",
                         now + lease, row["id"])
    return [_outbox(row, attempts=int(row["attempts"]) + 1, next_attempt_at=now + lease) for row in rows]


async def outbox_done(tx: Tx, row_id: int, now: float) -> None:
    await tx.execute("UPDATE outbox SET state = 'done', done_at = ?, last_error = '' WHERE id = ?", now, row_id)


async def outbox_retry(tx: Tx, row_id: int, next_at: float, error: str) -> None:
    await tx.execute("UPDATE outbox SET next_attempt_at = ?, last_error = ? WHERE id = ?", next_at, error, row_id)


async def outbox_fail(tx: Tx, row_id: int, error: str, now: float) -> None:
    await tx.execute("UPDATE outbox SET state = 'failed', last_error = ?, done_at = ? WHERE id = ?", error, now, row_id)


async def outbox_cancel(tx: Tx, plan_id: str, kind: str, now: float) -> int:
    return await tx.execute("UPDATE outbox SET state = 'cancelled', done_at = ? "
                            "WHERE plan_id = ? AND kind = ? AND state = 'pending'", now, plan_id, kind)


async def outbox_depth(tx: Tx) -> int:
    row = await tx.fetchrow("SELECT COUNT(*) AS n FROM outbox WHERE state = 'pending'")
    return int(row["n"]) if row else 0


async def outbox_rows(tx: Tx, plan_id: str | None = None) -> list[OutboxRow]:
    return [_outbox(r) for r in await _select(tx, "outbox", "id", plan_id=plan_id)]
