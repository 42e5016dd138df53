"""PostgreSQL backend (asyncpg): several receiver replicas share one database.

Claims use ``SELECT ... FOR UPDATE SKIP LOCKED`` so two replicas never take the same episode or outbox row;
uniqueness (episodes, outbox keys, one plan in flight per target) is enforced by constraints.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Coroutine
from functools import lru_cache, partial
from typing import Any, TypeVar

import asyncpg

from optiinfra.secrets import redact_url

from .store import Store, StoreError, Tx, driver_errors, schema_statements

T = TypeVar("T")
_PLACEHOLDER = re.compile(r"\?")
_SCHEMA_LOCK = 0x0971_1F0A  # advisory lock id: replicas starting together create the schema one at a time


@lru_cache(maxsize=256)
def _translate(sql: str) -> str:
    counter = iter(range(1, 1000))
    return _PLACEHOLDER.sub(lambda _m: f"${next(counter)}", sql.replace("{lock}", "FOR UPDATE SKIP LOCKED"))


_errors = partial(driver_errors, asyncpg.UniqueViolationError, (asyncpg.PostgresError, OSError))


class _PgTx(Tx):
    for_update = " FOR UPDATE"

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    async def execute(self, sql: str, *args: Any) -> int:
        with _errors():
            status: str = await self._conn.execute(_translate(sql), *args)
        tail = status.rsplit(" ", 1)[-1]  # "UPDATE 3", "INSERT 0 1"
        return int(tail) if tail.isdigit() else 0

    async def fetch(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        with _errors():
            return [dict(row) for row in await self._conn.fetch(_translate(sql), *args)]


class PostgresStore(Store):
    dialect = "postgresql"

    def __init__(self, dsn: str, *, min_size: int = 1, max_size: int = 10) -> None:
        self.dsn = dsn
        self._min = min_size
        self._max = max_size
        self._pool: Any = None

    def describe(self) -> str:
        return redact_url(self.dsn)

    async def open(self) -> None:
        try:
            self._pool = await asyncpg.create_pool(self.dsn, min_size=self._min, max_size=self._max)
            async with self._pool.acquire() as conn, conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock($1)", _SCHEMA_LOCK)
                for statement in schema_statements("BIGSERIAL PRIMARY KEY", "DOUBLE PRECISION", "BIGINT"):
                    await conn.execute(statement)
        except (asyncpg.PostgresError, OSError) as exc:
            raise StoreError(f"cannot open PostgreSQL database {self.describe()}: {exc}") from exc

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def run(self, body: Callable[[Tx], Coroutine[Any, Any, T]]) -> T:
        if self._pool is None:
            raise StoreError("the PostgreSQL store is not open")
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                return await body(_PgTx(conn))
        except (asyncpg.PostgresError, OSError) as exc:
            raise StoreError(str(exc)) from exc
