"""SQLite backend (the embedded default): WAL mode, one dedicated thread, one writer at a time.

Every transaction runs whole on a single worker thread that owns the connection (one hop per transaction);
transactions are serialised by an ``asyncio.Lock`` and opened with ``BEGIN IMMEDIATE`` so a second process on
the same file waits for the write lock instead of failing mid-transaction.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from optiinfra.secrets import redact_url

from .store import Store, StoreError, Tx, driver_errors, schema_statements

T = TypeVar("T")
log = logging.getLogger(__name__)


_errors = partial(driver_errors, sqlite3.IntegrityError, (sqlite3.Error,))


class _DirectTx(Tx):
    """Runs statements directly: :meth:`SqliteStore.run` drives the whole transaction on the database thread."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    async def execute(self, sql: str, *args: Any) -> int:
        with _errors():
            return self._conn.execute(sql.replace("{lock}", ""), args).rowcount

    async def fetch(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        with _errors():
            return [dict(row) for row in self._conn.execute(sql.replace("{lock}", ""), args).fetchall()]


class SqliteStore(Store):
    dialect = "sqlite"

    def __init__(self, path: str) -> None:
        self.path = path
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None
        self._lock = asyncio.Lock()
        self._checkpointer: asyncio.Task[None] | None = None
        self._checkpoint_conn: sqlite3.Connection | None = None

    def describe(self) -> str:
        return redact_url(f"sqlite:///{self.path}")

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        if self._executor is None:
            raise StoreError("the SQLite store is closed")
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError("the SQLite store is not open")
        return self._conn

    def _open_sync(self) -> None:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA busy_timeout=30000")
        # checkpoints (which fsync) run on their own connection and thread, off the write path
        conn.execute("PRAGMA wal_autocheckpoint=0")
        conn.execute("BEGIN IMMEDIATE")
        for statement in schema_statements("INTEGER PRIMARY KEY AUTOINCREMENT", "REAL", "INTEGER"):
            conn.execute(statement)
        conn.execute("COMMIT")
        self._conn = conn

    async def open(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-store")
        try:
            await self.call(self._open_sync)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open SQLite database {self.path}: {exc}") from exc
        if self.path != ":memory:":
            self._checkpointer = asyncio.create_task(self._checkpoint_loop())

    def _checkpoint_sync(self) -> None:
        if self._checkpoint_conn is None:
            self._checkpoint_conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                                                    timeout=30)
        self._checkpoint_conn.execute("PRAGMA wal_checkpoint(PASSIVE)")

    async def _checkpoint_loop(self) -> None:
        """Copy the WAL back into the database every second without blocking writers (PASSIVE)."""
        loop = asyncio.get_running_loop()
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-checkpoint") as executor:
            try:
                while True:
                    await asyncio.sleep(1.0)
                    try:
                        await loop.run_in_executor(executor, self._checkpoint_sync)
                    except sqlite3.Error as exc:
                        log.warning("SQLite checkpoint failed", extra={"error": str(exc)})
            finally:
                if self._checkpoint_conn is not None:
                    await loop.run_in_executor(executor, self._checkpoint_conn.close)
                    self._checkpoint_conn = None

    async def close(self) -> None:
        if self._executor is None:
            return
        if self._checkpointer is not None:
            self._checkpointer.cancel()
            await asyncio.gather(self._checkpointer, return_exceptions=True)
            self._checkpointer = None
        if self._conn is not None:
            await self.call(self._conn.execute, "PRAGMA wal_checkpoint(PASSIVE)")
            await self.call(self._conn.close)
            self._conn = None
        self._executor.shutdown(wait=True)
        self._executor = None

    def _rollback_sync(self) -> None:
        conn = self._connection()
        if conn.in_transaction:
            conn.execute("ROLLBACK")

    async def run(self, body: Callable[[Tx], Coroutine[Any, Any, T]]) -> T:
        async with self._lock:
            return await self.call(self._run_sync, body)

    def _run_sync(self, body: Callable[[Tx], Coroutine[Any, Any, T]]) -> T:
        conn = self._connection()
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot begin a transaction: {exc}") from exc
        coro = body(_DirectTx(conn))
        try:
            try:
                coro.send(None)
            except StopIteration as stop:
                result: T = stop.value
            else:
                coro.close()
                raise RuntimeError("a transaction body awaited something other than the store")
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            self._rollback_sync()
            raise StoreError(f"commit failed: {exc}") from exc
        except BaseException:
            self._rollback_sync()
            raise
        return result
