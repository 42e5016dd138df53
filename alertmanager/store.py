"""The receiver's durable state: one interface, two backends (SQLite for one replica, PostgreSQL for many).

A backend only opens transactions (:class:`Tx`: ``execute``/``fetch``/``fetchrow``); every query lives here,
written once in the SQL both databases share. ``?`` placeholders become ``$n`` for PostgreSQL and ``{lock}``
becomes ``FOR UPDATE SKIP LOCKED`` there (SQLite serialises writers with ``BEGIN IMMEDIATE`` instead), so two
replicas never claim the same episode or outbox row. Uniqueness that must hold across replicas is a database
constraint: one episode per ``(fingerprint, starts_at)``, one outbox row per key, one plan in flight per target
(a partial unique index).
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Coroutine, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, TypeVar

from .intake import AlertRecord, Notification

T = TypeVar("T")

#: Plan statuses during which the target is busy: at most one such plan per target.
IN_FLIGHT = ("pending_approval", "approved", "pushed", "rolling_out")
#: Episode processing states.
EPISODE_STATES = ("new", "claimed", "planned", "diagnosed", "skipped", "ignored", "rolled_back", "no_rollback")


class StoreError(Exception):
    """The store could not be reached or could not persist."""


class Conflict(StoreError):
    """A uniqueness constraint refused the write (e.g. a second plan in flight for one target)."""


class Tx(ABC):
    """One open transaction."""

    dialect: str

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
    def transaction(self) -> AbstractAsyncContextManager[Tx]:
        """A write transaction: committed when the block ends, rolled back when it raises."""

    async def run(self, body: Callable[[Tx], Coroutine[Any, Any, T]]) -> T:
        """Run ``body(tx)`` in one transaction and return its result (committed; rolled back if it raises).

        The body may await only the transaction's own methods: the SQLite backend runs it to completion on its
        database thread in one hop, which is what keeps intake fast.
        """
        async with self.transaction() as tx:
            return await body(tx)

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

        return SqliteStore(url.removeprefix("sqlite://").removeprefix("/") if url.startswith("sqlite:///")
                           else url.removeprefix("sqlite://"))
    if url.startswith(("postgresql://", "postgres://")):
        from .store_postgres import PostgresStore  # noqa: PLC0415

        return PostgresStore(url)
    raise ValueError(f"unsupported --db {redact(url)!r}: use sqlite:///PATH or postgresql://USER@HOST:PORT/DB")


def redact(url: str) -> str:
    """A database URL without its password."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    creds, _, host = rest.rpartition("@")
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in creds else url


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
    WHERE status IN ('pending_approval', 'approved', 'pushed', 'rolling_out');
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
"""


def schema_statements(autoid: str, real: str, integer: str) -> list[str]:
    text = SCHEMA.replace("{autoid}", autoid).replace("{real}", real).replace("{int}", integer)
    return [s.strip() for s in text.split(";") if s.strip()]


def _j(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


# --------------------------------------------------------------------------------------------------------- intake

@dataclass
class IntakeResult:
    notification_id: int
    new_episodes: int = 0
    duplicates: int = 0
    resolved: int = 0
    ignored: int = 0


def _initial_state(alert: AlertRecord) -> tuple[str, str]:
    if alert.is_slo:
        return "new", ""
    if alert.bottleneck is None:
        return "ignored", "no bottleneck label"
    return "new", ""


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
        else:
            state, reason = _initial_state(alert)
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

def _episode(row: dict[str, Any]) -> dict[str, Any]:
    row = dict(row)
    row["labels"] = json.loads(row["labels"])
    row["annotations"] = json.loads(row["annotations"])
    return row


async def claim_episodes(tx: Tx, now: float, lease: float, limit: int) -> list[dict[str, Any]]:
    """New episodes (or ones whose claim lease expired after a crash), locked for this replica."""
    rows = await tx.fetch(
        "SELECT * FROM episodes WHERE state = 'new' OR (state = 'claimed' AND claimed_until < ?) "
        "ORDER BY id LIMIT ? {lock}", now, limit)
    for row in rows:
        await tx.execute("UPDATE episodes SET state = 'claimed', claimed_until = ? WHERE id = ?",
                         now + lease, row["id"])
    return [_episode(r) for r in rows]


async def get_episode(tx: Tx, episode_id: int) -> dict[str, Any] | None:
    row = await tx.fetchrow("SELECT * FROM episodes WHERE id = ?", episode_id)
    return _episode(row) if row else None


async def finish_episode(tx: Tx, episode_id: int, state: str, reason: str, plan_id: str | None = None) -> None:
    await tx.execute("UPDATE episodes SET state = ?, state_reason = ?, plan_id = ?, claimed_until = NULL WHERE id = ?",
                     state, reason, plan_id, episode_id)


async def list_episodes(tx: Tx, state: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
    if state:
        rows = await tx.fetch("SELECT * FROM episodes WHERE state = ? ORDER BY id DESC LIMIT ?", state, limit)
    else:
        rows = await tx.fetch("SELECT * FROM episodes ORDER BY id DESC LIMIT ?", limit)
    return [_episode(r) for r in rows]


# ---------------------------------------------------------------------------------------------------------- plans

def _plan(row: dict[str, Any]) -> dict[str, Any]:
    row = dict(row)
    for key in ("document", "knobs", "scope"):
        row[key] = json.loads(row[key])
    row["document"]["status"] = row["status"]
    return row


async def insert_plan(tx: Tx, *, plan_id: str, idempotency_key: str, target_key: str, bottleneck: str, risk: str,
                      status: str, document: dict[str, Any], knobs: Sequence[str], scope: dict[str, str],
                      episode_id: int | None, bake_seconds: float, now: float) -> None:
    await tx.execute(
        "INSERT INTO plans (plan_id, idempotency_key, target_key, bottleneck, risk, status, document, knobs, scope, "
        "episode_id, bake_seconds, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        plan_id, idempotency_key, target_key, bottleneck, risk, status, _j(document), _j(list(knobs)), _j(scope),
        episode_id, bake_seconds, now, now)


async def get_plan(tx: Tx, plan_id: str, *, for_update: bool = False) -> dict[str, Any] | None:
    lock = " FOR UPDATE" if for_update and tx.dialect == "postgresql" else ""
    row = await tx.fetchrow("SELECT * FROM plans WHERE plan_id = ?" + lock, plan_id)  # noqa: S608
    return _plan(row) if row else None


async def list_plans(tx: Tx, *, status: str | None = None, target: str | None = None,
                     bottleneck: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
    where, args = [], []
    for column, value in (("status", status), ("target_key", target), ("bottleneck", bottleneck)):
        if value:
            where.append(f"{column} = ?")
            args.append(value)
    sql = "SELECT * FROM plans" + (" WHERE " + " AND ".join(where) if where else "")  # noqa: S608 - fixed columns
    rows = await tx.fetch(sql + " ORDER BY created_at DESC LIMIT ?", *args, limit)
    return [_plan(r) for r in rows]


async def in_flight_plan(tx: Tx, target_key: str) -> dict[str, Any] | None:
    row = await tx.fetchrow(
        "SELECT * FROM plans WHERE target_key = ? AND status IN ('pending_approval', 'approved', 'pushed', "
        "'rolling_out')", target_key)
    return _plan(row) if row else None


async def plans_since(tx: Tx, target_key: str, since: float) -> list[dict[str, Any]]:
    rows = await tx.fetch("SELECT * FROM plans WHERE target_key = ? AND created_at >= ? ORDER BY created_at",
                          target_key, since)
    return [_plan(r) for r in rows]


async def rollback_candidates(tx: Tx, now: float) -> list[dict[str, Any]]:
    """Plans that may still be rolled back: pushed, rolling out, or completed within their bake time."""
    lock = " FOR UPDATE" if tx.dialect == "postgresql" else ""
    rows = await tx.fetch(
        "SELECT * FROM plans WHERE status IN ('pushed', 'rolling_out') "  # noqa: S608 - constant lock clause
        "OR (status = 'completed' AND completed_at + bake_seconds >= ?) ORDER BY created_at" + lock, now)
    return [_plan(r) for r in rows]


async def set_plan_status(tx: Tx, plan_id: str, status: str, now: float, *, error: str | None = None) -> None:
    extra = ""
    if status == "pushed":
        extra = ", pushed_at = ?"
    elif status == "completed":
        extra = ", completed_at = ?"
    args: list[Any] = [status, now]
    if extra:
        args.append(now)
    if error is not None:
        extra += ", last_error = ?"
        args.append(error)
    await tx.execute(f"UPDATE plans SET status = ?, updated_at = ?{extra} WHERE plan_id = ?",  # noqa: S608
                     *args, plan_id)


async def append_audit(tx: Tx, plan_id: str, *, from_status: str | None, to_status: str, cause: str,
                       detail: dict[str, Any], now: float) -> None:
    await tx.execute("INSERT INTO audit (plan_id, at, from_status, to_status, cause, detail) VALUES (?, ?, ?, ?, ?, ?)",
                     plan_id, now, from_status, to_status, cause, _j(detail))


async def audit_log(tx: Tx, plan_id: str) -> list[dict[str, Any]]:
    rows = await tx.fetch("SELECT at, from_status, to_status, cause, detail FROM audit WHERE plan_id = ? ORDER BY id",
                          plan_id)
    return [{**r, "detail": json.loads(r["detail"])} for r in rows]


async def plan_counts(tx: Tx) -> dict[str, int]:
    rows = await tx.fetch("SELECT status, COUNT(*) AS n FROM plans GROUP BY status")
    return {r["status"]: int(r["n"]) for r in rows}


# --------------------------------------------------------------------------------------------------------- knobs

async def blocked_knobs(tx: Tx, target_key: str) -> list[dict[str, Any]]:
    return await tx.fetch("SELECT knob, plan_id, reason, created_at FROM blocked_knobs "
                          "WHERE target_key = ? AND cleared_at IS NULL ORDER BY id", target_key)


async def block_knob(tx: Tx, target_key: str, *, knob: str, plan_id: str, reason: str, now: float) -> None:
    await tx.execute("INSERT INTO blocked_knobs (target_key, knob, plan_id, reason, created_at) VALUES (?, ?, ?, ?, ?)",
                     target_key, knob, plan_id, reason, now)


async def clear_knobs(tx: Tx, target_key: str, knob: str | None, who: str, now: float) -> int:
    if knob:
        return await tx.execute("UPDATE blocked_knobs SET cleared_at = ?, cleared_by = ? "
                                "WHERE target_key = ? AND knob = ? AND cleared_at IS NULL", now, who, target_key, knob)
    return await tx.execute("UPDATE blocked_knobs SET cleared_at = ?, cleared_by = ? "
                            "WHERE target_key = ? AND cleared_at IS NULL", now, who, target_key)


# ------------------------------------------------------------------------------------------------------ diagnoses

async def insert_diagnosis(tx: Tx, episode_id: int, *, target_key: str, bottleneck: str, document: dict[str, Any],
                           now: float) -> int:
    rows = await tx.fetch("INSERT INTO diagnoses (episode_id, target_key, bottleneck, document, created_at) "
                          "VALUES (?, ?, ?, ?, ?) RETURNING id", episode_id, target_key, bottleneck, _j(document), now)
    return int(rows[0]["id"])


async def list_diagnoses(tx: Tx, *, target: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
    if target:
        rows = await tx.fetch("SELECT * FROM diagnoses WHERE target_key = ? ORDER BY id DESC LIMIT ?", target, limit)
    else:
        rows = await tx.fetch("SELECT * FROM diagnoses ORDER BY id DESC LIMIT ?", limit)
    return [{**r, "document": json.loads(r["document"])} for r in rows]


# --------------------------------------------------------------------------------------------------------- outbox

async def enqueue(tx: Tx, key: str, *, kind: str, plan_id: str, path: str, body: dict[str, Any], now: float) -> bool:
    """Queue one push; a key already queued (or sent) is not queued twice. True when queued now."""
    rows = await tx.fetch(
        "INSERT INTO outbox (key, kind, plan_id, path, body, state, next_attempt_at, created_at) "
        "VALUES (?, ?, ?, ?, ?, 'pending', ?, ?) ON CONFLICT (key) DO NOTHING RETURNING id",
        key, kind, plan_id, path, _j(body), now, now)
    return bool(rows)


async def claim_outbox(tx: Tx, now: float, lease: float, limit: int) -> list[dict[str, Any]]:
    """Due rows, leased to this replica until ``now + lease`` (a crash makes them due again after it)."""
    rows = await tx.fetch("SELECT * FROM outbox WHERE state = 'pending' AND next_attempt_at <= ? "
                          "ORDER BY next_attempt_at, id LIMIT ? {lock}", now, limit)
    for row in rows:
        await tx.execute("UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ? WHERE id = ?",
                         now + lease, row["id"])
        row["attempts"] = int(row["attempts"]) + 1
        row["body"] = json.loads(row["body"])
    return rows


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


async def outbox_rows(tx: Tx, plan_id: str | None = None) -> list[dict[str, Any]]:
    if plan_id:
        rows = await tx.fetch("SELECT * FROM outbox WHERE plan_id = ? ORDER BY id", plan_id)
    else:
        rows = await tx.fetch("SELECT * FROM outbox ORDER BY id")
    return [{**r, "body": json.loads(r["body"])} for r in rows]


async def counts(tx: Tx) -> dict[str, int]:
    """Row counts of every table (for tests proving that rejected input changed nothing)."""
    out: dict[str, int] = {}
    for table in ("notifications", "episodes", "plans", "audit", "diagnoses", "outbox", "blocked_knobs"):
        row = await tx.fetchrow(f"SELECT COUNT(*) AS n FROM {table}")  # noqa: S608 - fixed table names
        out[table] = int(row["n"]) if row else 0
    return out

