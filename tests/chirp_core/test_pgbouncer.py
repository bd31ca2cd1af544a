"""The shared database code through a real pgbouncer in transaction mode (tests/helpers/pgbouncer.py).
The services' own suites run through one with CHIRP_TEST_PGBOUNCER=1."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import psycopg
import pytest

from chirp_core.db import Connections, migrate, open_pool
from chirp_core.settings import Settings
from tests.helpers.pgbouncer import PgBouncer, PgBouncerUnavailable


@pytest.fixture(scope="module")
def pgbouncer(postgres_server: str) -> Iterator[PgBouncer]:
    try:
        bouncer = PgBouncer(postgres_server)
    except PgBouncerUnavailable as exc:
        pytest.skip(str(exc))
    bouncer.start()
    try:
        yield bouncer
    finally:
        bouncer.stop()


@pytest.fixture
def fresh_database(postgres_server: str) -> Iterator[str]:
    name = f"chirp_bouncer_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield psycopg.conninfo.make_conninfo(postgres_server, dbname=name)
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def test_migrations_run_at_once_from_several_clients_through_pgbouncer(
    pgbouncer: PgBouncer, fresh_database: str
) -> None:
    url = pgbouncer.url(fresh_database)
    runs = [
        migrate(url, schema, f"{schema}_svc.migrations") for schema in ("graph", "tweets") for _ in range(3)
    ]
    applied = await asyncio.wait_for(asyncio.gather(*runs), timeout=120)
    with psycopg.connect(fresh_database, autocommit=True) as conn:
        for schema, results in (("graph", applied[:3]), ("tweets", applied[3:])):
            versions = [
                row[0] for row in conn.execute(f"SELECT version FROM {schema}.schema_migrations ORDER BY 1")
            ]
            assert versions and sorted(v for result in results for v in result) == versions
        # No advisory lock outlives its transaction on a server connection pgbouncer keeps.
        assert conn.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'").fetchone() == (0,)


async def test_concurrent_reads_and_writes_through_pgbouncer(
    pgbouncer: PgBouncer, fresh_database: str
) -> None:
    url = pgbouncer.url(fresh_database)
    settings = Settings(database_url=url, db_prepare_threshold=None)
    pool = await open_pool(settings, url, "bouncer-test")
    try:
        conns = Connections(pool, "test")
        async with conns.write() as conn:
            await conn.execute("CREATE TABLE counter (id int PRIMARY KEY, n int NOT NULL)")
            await conn.execute("INSERT INTO counter VALUES (1, 0)")

        async def bump() -> None:
            for _ in range(20):
                async with conns.write() as conn:
                    await conn.execute("UPDATE counter SET n = n + 1 WHERE id = 1")
                async with conns.read() as conn:
                    await conn.execute("SELECT n FROM counter WHERE id = 1")

        await asyncio.gather(*(bump() for _ in range(5)))
        async with conns.read() as conn:
            cur = await conn.execute("SELECT n FROM counter WHERE id = 1")
            assert await cur.fetchone() == (100,)
    finally:
        await pool.close()
