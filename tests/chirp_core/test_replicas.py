"""Reads that may be stale, on real streaming replicas of the test server (tests/helpers/replica.py):
where they go, read-your-writes, a replica that lags or dies, and the settings."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
import pytest
from psycopg import AsyncConnection

from chirp_core.db import Connections, Replicas, format_lsn, open_pool, open_replicas, parse_lsn
from chirp_core.metrics import Metrics
from chirp_core.settings import Settings
from tests.helpers.api import free_port
from tests.helpers.replica import ReplicaUnavailable, Standby

WAIT_SECONDS = 30.0


@pytest.fixture(scope="module", autouse=True)
def probe_table(database_url: str) -> None:
    """replica_probe: the row every read of these tests returns, and the writes change."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS replica_probe (id int PRIMARY KEY, value int NOT NULL)")
        conn.execute("INSERT INTO replica_probe VALUES (1, 0) ON CONFLICT (id) DO NOTHING")


@pytest.fixture(scope="module")
def standbys(postgres_server: str, database_url: str) -> Iterator[list[Standby]]:
    """Two hot standbys of the test server, streaming from it."""
    started: list[Standby] = []
    try:
        for _ in range(2):
            standby = Standby(postgres_server)
            started.append(standby)
            standby.start()
    except ReplicaUnavailable as exc:
        for standby in started:
            standby.stop()
        pytest.skip(f"no streaming replica of the test server can be made here: {exc}")
    try:
        yield started
    finally:
        for standby in started:
            standby.stop()


@pytest.fixture
def database(database_url: str) -> str:
    row = psycopg.conninfo.conninfo_to_dict(database_url)
    return str(row["dbname"])


Opened = tuple[Connections, Replicas, Metrics]


@asynccontextmanager
async def connections(database_url: str, replica_urls: list[str], **changes: Any) -> AsyncIterator[Opened]:
    """Connections of a service whose replicas are `replica_urls`, checked every 50 ms."""
    settings = Settings(
        database_url=database_url,
        database_replica_urls=",".join(replica_urls),
        replica_check_seconds=0.05,
        replica_max_lag_seconds=30.0,
    ).with_changes(**changes)
    settings.validate()
    metrics = Metrics()
    pool = await open_pool(settings, database_url, "replica-test")
    replicas = await open_replicas(settings, pool, "test", metrics)
    assert replicas is not None
    try:
        yield Connections(pool, "test", replicas), replicas, metrics
    finally:
        await replicas.close()
        await pool.close()


async def until(condition: Callable[[], Awaitable[bool] | bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        result = condition()
        if result if isinstance(result, bool) else await result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {WAIT_SECONDS:.0f} s: {what}")
        await asyncio.sleep(0.02)


async def where(conn: AsyncConnection[Any]) -> tuple[bool, int, int]:
    """(in recovery, i.e. a replica answered; its port; the probe's value) as the server sees them."""
    cur = await conn.execute(
        "SELECT pg_is_in_recovery(), inet_server_port(), (SELECT value FROM replica_probe WHERE id = 1)"
    )
    row = await cur.fetchone()
    assert row is not None
    return bool(row[0]), int(row[1]), int(row[2])


async def stale(connections: Connections, after_lsn: int | None = None) -> tuple[bool, int, int]:
    async with connections.read_stale(after_lsn=after_lsn) as conn:
        return await where(conn)


async def write(connections: Connections, value: int) -> int:
    async with connections.write() as conn:
        await conn.execute("UPDATE replica_probe SET value = %s WHERE id = 1", (value,))
    return await connections.commit_lsn()


def on_replica(standby: Standby, database: str, sql: str) -> None:
    with psycopg.connect(standby.url(database), autocommit=True, connect_timeout=5) as conn:
        conn.execute(sql)


def served(metrics: Metrics, server: str) -> float:
    return metrics.value("chirp_db_stale_reads_total", {"database": "test", "server": server})


def fallbacks(metrics: Metrics, reason: str) -> float:
    return metrics.value("chirp_db_replica_fallbacks_total", {"database": "test", "reason": reason})


async def test_stale_reads_go_to_the_replicas_in_turn(
    standbys: list[Standby], database_url: str, database: str
) -> None:
    async with connections(database_url, [s.url(database) for s in standbys]) as (conns, replicas, metrics):
        await until(lambda: len(replicas.usable()) == 2, "both replicas usable")
        answers = [await stale(conns) for _ in range(20)]
        direct = [await conns.run_stale(where) for _ in range(4)]
    assert all(in_recovery for in_recovery, _, _ in answers + direct)
    ports = [port for _, port, _ in answers]
    assert set(ports) == {s.port for s in standbys}
    assert ports.count(standbys[0].port) == ports.count(standbys[1].port) == 10
    labels = [r.label for r in replicas.replicas]
    assert sum(served(metrics, label) for label in labels) == 24
    assert served(metrics, "primary") == 0


async def test_without_replicas_stale_reads_go_to_the_primary(database_url: str) -> None:
    settings = Settings(database_url=database_url)
    pool = await open_pool(settings, database_url, "no-replicas")
    try:
        assert await open_replicas(settings, pool, "test") is None
        conns = Connections(pool, "test")
        in_recovery, _, _ = await stale(conns)
        assert not in_recovery
        assert not (await conns.run_stale(where))[0]
    finally:
        await pool.close()


async def test_a_caller_never_misses_its_own_write(
    standbys: list[Standby], database_url: str, database: str
) -> None:
    async with connections(database_url, [s.url(database) for s in standbys]) as (conns, replicas, metrics):
        await until(lambda: len(replicas.usable()) == 2, "both replicas usable")
        for value in range(1, 201):
            lsn = await write(conns, value)
            if value % 10 == 0:
                # Now and then once a replica has replayed the write: the read goes there.
                await until(lambda lsn=lsn: bool(replicas.usable(after_lsn=lsn)), "a replica past the write")
            if value % 2:
                _, _, seen = await stale(conns, after_lsn=lsn)
            else:
                _, _, seen = await conns.run_stale(where, after_lsn=lsn)
            assert seen == value, f"read {seen} right after writing {value}"
        assert sum(served(metrics, r.label) for r in replicas.replicas) >= 20
        assert served(metrics, "primary") == fallbacks(metrics, "behind_write")


async def test_without_the_writes_position_a_paused_replica_can_miss_it(
    standbys: list[Standby], database_url: str, database: str
) -> None:
    """The control for the test above: a stale read may miss a write, and after_lsn is what stops it."""
    standby = standbys[0]
    async with connections(database_url, [standby.url(database)]) as (conns, replicas, metrics):
        before = await write(conns, 5)
        await until(lambda: bool(replicas.usable(after_lsn=before)), "the replica past the first write")
        on_replica(standby, database, "SELECT pg_wal_replay_pause()")
        try:
            lsn = await write(conns, 6)
            assert await stale(conns) == (True, standby.port, 5)
            assert (await stale(conns, after_lsn=lsn))[::2] == (False, 6)
            assert fallbacks(metrics, "behind_write") == 1
        finally:
            on_replica(standby, database, "SELECT pg_wal_replay_resume()")
        await until(lambda: bool(replicas.usable(after_lsn=lsn)), "the replica past the write once resumed")
        assert (await stale(conns, after_lsn=lsn))[::2] == (True, 6)


async def test_a_lagging_replica_is_skipped_until_it_catches_up(
    standbys: list[Standby], database_url: str, database: str
) -> None:
    standby = standbys[0]
    async with connections(database_url, [standby.url(database)], replica_max_lag_seconds=0.5) as opened:
        conns, replicas, metrics = opened
        await until(lambda: bool(replicas.usable()), "the replica usable")
        on_replica(standby, database, "SELECT pg_wal_replay_pause()")
        writing = True

        async def writer() -> None:
            value = 100
            while writing:
                value += 1
                await write(conns, value)
                await asyncio.sleep(0.02)

        task = asyncio.create_task(writer())
        try:
            await until(lambda: not replicas.usable(), "the paused replica skipped")
            assert replicas.replicas[0].up  # it answers its checks: lagging, not down
            assert not (await stale(conns))[0]
            assert fallbacks(metrics, "lagging") >= 1
        finally:
            on_replica(standby, database, "SELECT pg_wal_replay_resume()")
        try:
            await until(lambda: bool(replicas.usable()), "the replica back once caught up")
            assert (await stale(conns))[0]
        finally:
            writing = False
            await task


async def test_an_idle_primary_leaves_a_caught_up_replica_fresh(
    standbys: list[Standby], database_url: str, database: str
) -> None:
    standby = standbys[1]
    async with connections(database_url, [standby.url(database)], replica_max_lag_seconds=0.3) as opened:
        conns, replicas, metrics = opened
        await until(lambda: bool(replicas.usable()), "the replica usable")
        # Nothing is written for several times the bound: the replica still has everything.
        await asyncio.sleep(1.5)
        assert (await stale(conns))[0]
        assert (
            metrics.value(
                "chirp_db_replica_lag_seconds", {"database": "test", "replica": replicas.replicas[0].label}
            )
            < 0.3
        )


async def test_a_killed_replica_changes_nothing_the_caller_sees(
    standbys: list[Standby], database_url: str, database: str
) -> None:
    standby = standbys[1]
    async with connections(database_url, [standby.url(database)]) as (conns, replicas, metrics):
        await until(lambda: bool(replicas.usable()), "the replica usable")
        answers: list[bool] = []
        stop = asyncio.Event()

        async def reader() -> None:
            # A read in flight when the replica dies runs again on the primary.
            while not stop.is_set():
                answers.append((await conns.run_stale(where))[0])
                await asyncio.sleep(0)

        readers = [asyncio.create_task(reader()) for _ in range(4)]
        await until(lambda: len(answers) >= 40 and any(answers), "reads on the replica before the kill")
        standby.kill()
        after_kill = len(answers)
        await until(lambda: len(answers) >= after_kill + 200, "reads after the kill")
        stop.set()
        await asyncio.gather(*readers)
        assert not any(answers[-100:])
        for _ in range(50):
            assert not (await stale(conns))[0]
        assert (
            fallbacks(metrics, "down") + fallbacks(metrics, "unreachable") + fallbacks(metrics, "failed")
            >= 150
        )

        standby.restart()
        await until(lambda: bool(replicas.usable()), "the restarted replica usable again")
        await until(lambda: _on_replica(conns), "a stale read answered by the restarted replica")


async def _on_replica(conns: Connections) -> bool:
    return (await stale(conns))[0]


async def test_a_read_cancelled_by_the_replicas_recovery_runs_again_on_the_primary(
    standbys: list[Standby], database_url: str, database: str
) -> None:
    standby = standbys[0]
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS conflict_probe (id int)")
    standby.wait_replayed(database)
    # The standby cancels a query in the way of replay at once instead of after 30 s.
    on_replica(standby, database, "ALTER SYSTEM SET max_standby_streaming_delay = 0")
    on_replica(standby, database, "SELECT pg_reload_conf()")
    try:
        async with connections(database_url, [standby.url(database)]) as (conns, replicas, metrics):
            await until(lambda: bool(replicas.usable()), "the replica usable")

            async def slow(conn: AsyncConnection[Any]) -> bool:
                cur = await conn.execute(
                    "SELECT pg_is_in_recovery() FROM (SELECT count(*) FROM conflict_probe) c, pg_sleep(1)"
                )
                row = await cur.fetchone()
                assert row is not None
                return bool(row[0])

            reading = asyncio.create_task(conns.run_stale(slow))
            await until(
                lambda: _running_on(standby, database, "conflict_probe"), "the read running on the replica"
            )
            with psycopg.connect(database_url, autocommit=True) as conn:
                conn.execute("TRUNCATE conflict_probe")  # its lock, replayed, conflicts with the read
            assert await reading is False
            assert fallbacks(metrics, "failed") == 1
            assert replicas.replicas[0].up  # a conflict is not an outage
    finally:
        on_replica(standby, database, "ALTER SYSTEM RESET max_standby_streaming_delay")
        on_replica(standby, database, "SELECT pg_reload_conf()")


def _running_on(standby: Standby, database: str, text: str) -> bool:
    with psycopg.connect(standby.url(database), autocommit=True, connect_timeout=5) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND pid <> pg_backend_pid()"
            " AND query LIKE %s",
            (f"%{text}%",),
        ).fetchone()
    return bool(row and row[0])


async def test_a_replica_that_never_answers_costs_no_error(database_url: str) -> None:
    nobody = f"postgresql://postgres@127.0.0.1:{free_port()}/postgres"
    async with connections(database_url, [nobody]) as (conns, replicas, metrics):
        await until(lambda: replicas.replicas[0].state == "down", "the first check")
        assert not (await stale(conns))[0]
        assert not (await conns.run_stale(where))[0]
        assert fallbacks(metrics, "down") == 2
        assert (
            metrics.value("chirp_db_replica_up", {"database": "test", "replica": replicas.replicas[0].label})
            == 0
        )


def test_replica_settings_are_read_and_checked() -> None:
    settings = Settings.from_env(
        {
            "CHIRP_DATABASE_REPLICA_URLS": " postgresql://r1:5432/chirp , postgres://u:p@r2/chirp",
            "CHIRP_REPLICA_MAX_LAG_SECONDS": "5",
        }
    )
    assert settings.replica_urls == ("postgresql://r1:5432/chirp", "postgres://u:p@r2/chirp")
    assert settings.replica_max_lag_seconds == 5.0
    assert Settings().replica_urls == ()
    bad = {
        "postgresql://r1/chirp,,postgresql://r2/chirp": "entry 2 is empty",
        "postgresql://r1/chirp,": "entry 2 is empty",
        "r1:5432/chirp": "entry 1 is not a postgresql:// URL",
        "postgresql://u:secret@r1:5432,r2:5432/chirp": "entry 2 is not a postgresql:// URL",
        "postgresql://u:secret@r1:port/chirp": "entry 1 has a malformed host or port",
        "postgresql:///chirp": "entry 1 names no host",
    }
    for urls, problem in bad.items():
        with pytest.raises(ValueError, match=f"CHIRP_DATABASE_REPLICA_URLS: {problem}") as raised:
            Settings.from_env({"CHIRP_DATABASE_REPLICA_URLS": urls})
        assert "secret" not in str(raised.value)
    with pytest.raises(ValueError, match="CHIRP_REPLICA_MAX_LAG_SECONDS must be > 0"):
        Settings.from_env({"CHIRP_REPLICA_MAX_LAG_SECONDS": "-1"})
    with pytest.raises(ValueError, match="CHIRP_REPLICA_MAX_LAG_SECONDS"):
        Settings.from_env({"CHIRP_REPLICA_MAX_LAG_SECONDS": "two"})
    with pytest.raises(
        ValueError, match="CHIRP_REPLICA_MAX_LAG_SECONDS must exceed CHIRP_REPLICA_CHECK_SECONDS"
    ):
        Settings.from_env({"CHIRP_REPLICA_MAX_LAG_SECONDS": "0.1"})
    with pytest.raises(ValueError, match="CHIRP_REPLICA_TIMEOUT_SECONDS"):
        Settings.from_env({"CHIRP_REPLICA_TIMEOUT_SECONDS": "0"})
    with pytest.raises(ValueError, match="CHIRP_REPLICA_CATCH_UP_SECONDS must be >= 0"):
        Settings.from_env({"CHIRP_REPLICA_CATCH_UP_SECONDS": "-0.1"})
    assert Settings.from_env({"CHIRP_REPLICA_CATCH_UP_SECONDS": "0"}).replica_catch_up_seconds == 0


def test_wal_positions_read_and_write_as_postgresql_does() -> None:
    assert parse_lsn("16/B374D848") == 0x16_B374D848
    assert format_lsn(parse_lsn("16/B374D848")) == "16/B374D848"
    assert parse_lsn("0/0") < parse_lsn("0/1") < parse_lsn("1/0")
    with pytest.raises(ValueError, match="not a WAL position"):
        parse_lsn("16-B374D848")
