"""PostgreSQL access shared by the services: connection pools and versioned schema migrations."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any

import psycopg
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from chirp_core.errors import Unavailable
from chirp_core.settings import Settings

log = logging.getLogger("chirp.db")
DATABASE_UNAVAILABLE_MESSAGE = "the database is unavailable; try again"
_MIGRATION_NAME = re.compile(r"^(\d{3,})_[a-z0-9_]+\.sql$")


async def open_pool(settings: Settings, dsn: str, name: str) -> AsyncConnectionPool:
    """An open async pool. Statement preparation follows settings (off for pgbouncer).

    A request waits at most settings.db_connect_timeout_seconds for a connection (psycopg_pool
    waits 30 s by default), and each connection is checked as it is handed out, so that after a
    server restart the first requests do not get the connections it closed."""
    pool = AsyncConnectionPool(
        dsn,
        min_size=settings.db_pool_min,
        max_size=settings.db_pool_max,
        kwargs={"prepare_threshold": settings.db_prepare_threshold, "autocommit": True},
        name=name,
        open=False,
        timeout=settings.db_connect_timeout_seconds,
        check=AsyncConnectionPool.check_connection,
    )
    await pool.open(wait=True, timeout=30)
    return pool


class Connections:
    """A service's pool, handing out connections for reading or for one transaction. A pool
    timeout, a lost connection or a server shutting down become Unavailable (worth a retry)."""

    def __init__(self, pool: AsyncConnectionPool, database: str) -> None:
        self._pool = pool
        self._database = database

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection[Any]]:
        """A connection in autocommit: each statement is its own transaction."""
        try:
            async with self._pool.connection() as conn:
                yield conn
        except psycopg.OperationalError as exc:
            raise self._unavailable(exc) from exc

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection[Any]]:
        """A connection inside a transaction, committed when the block ends without an error."""
        try:
            async with self._pool.connection() as conn, conn.transaction():
                yield conn
        except psycopg.OperationalError as exc:
            raise self._unavailable(exc) from exc

    def _unavailable(self, exc: psycopg.OperationalError) -> Unavailable:
        log.warning("the %s database is unavailable: %s: %s", self._database, type(exc).__name__, exc)
        return Unavailable(
            DATABASE_UNAVAILABLE_MESSAGE, reason="DATABASE_UNAVAILABLE", metadata={"database": self._database}
        )


async def migrate(dsn: str, schema: str, package: str) -> list[int]:
    """Apply the numbered `NNN_name.sql` files of `package` not yet applied to `schema`.

    Idempotent and safe to run from several processes at once: an advisory lock per schema
    serialises them and each file is applied in its own transaction. Returns the versions applied.
    """
    files = sorted(
        (int(m.group(1)), entry.name, entry.read_text())
        for entry in resources.files(package).iterdir()
        if (m := _MIGRATION_NAME.match(entry.name))
    )
    applied: list[int] = []
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await conn.execute("SELECT pg_advisory_lock(hashtext(%s))", (f"chirp-migrate:{schema}",))
        try:
            await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
            await conn.execute(
                f'CREATE TABLE IF NOT EXISTS "{schema}".schema_migrations ('
                " version integer PRIMARY KEY, name text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            cur = await conn.execute(f'SELECT version FROM "{schema}".schema_migrations')
            done = {row[0] for row in await cur.fetchall()}
            for version, name, sql in files:
                if version in done:
                    continue
                async with conn.transaction():
                    await conn.execute(sql.encode())
                    await conn.execute(
                        f'INSERT INTO "{schema}".schema_migrations (version, name) VALUES (%s, %s)',
                        (version, name),
                    )
                applied.append(version)
                log.info("migrated %s to %s", schema, name)
        finally:
            await conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", (f"chirp-migrate:{schema}",))
    return applied
