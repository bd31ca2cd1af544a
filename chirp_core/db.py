"""PostgreSQL access shared by the services: connection pools, read replicas and versioned schema
migrations.

Reads and writes. `Connections.read()` and `.write()` use the primary (settings.database_url).
`Connections.read_stale()` is for a read that may be a little stale: it goes to a streaming
replica (settings.database_replica_urls) whose data is at most settings.replica_max_lag_seconds
old, in turn over those that qualify, and to the primary, with no error to the caller, when none
does: every replica down, unreachable within settings.replica_timeout_seconds, lagging past the
bound, or behind the caller's own write. `run_stale()` does the same for a function of the
connection and, should the replica fail while the function runs, runs it again on the primary.

How old a replica's data is. A background task (`Replicas`) reads the primary's WAL insert
position and then each replica's replay position (pg_last_wal_replay_lsn()) every
settings.replica_check_seconds, each with a deadline of settings.replica_timeout_seconds, and
keeps the primary's positions of the last replica_max_lag_seconds with the time each was read.
A replica that has replayed past the position read at time t has every transaction committed
before t: its data is at most now - t old. This is measured in WAL, not with
pg_last_xact_replay_timestamp(), so an idle primary (no WAL, no new commit timestamps) leaves a
replica that has replayed everything fresh for good, while a replica whose replay stops ages as
soon as the primary writes again. The age is taken at each read, so a replica whose checks stop
answering ages out by itself. A replica out of recovery (promoted) is not used: the primary no
longer feeds it.

Read your writes, as the services do it: a stale read made while serving a user (the RPC's caller,
or the user a calling service named: chirp_core.rpc.on_behalf_of_var) takes that user's last
write position from chirp_core.write_marks, which write() and wrote() record. The mechanism:
after a write its author must see on their next read, take `commit_lsn()`: the
primary's WAL insert position read after the commit, so at or past the commit record (read inside
the transaction it would come before that record: a replica past it may lack the commit). Pass it to
that author's stale reads as `after_lsn`: they then go only to a replica whose replay position,
as last checked, has reached it, else to the primary. A caller keeps the position per user (a
Redis key, the session) for replica_max_lag_seconds only: a write older than the bound is on
every replica a read may use, since each has all that was committed before now minus the bound.
A stale read without after_lsn may miss writes younger than the bound, its caller's included.

pgbouncer in transaction mode: nothing here keeps session state across transactions (migrate()
takes its advisory lock per transaction) provided statement preparation is off
(settings.db_prepare_threshold None).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources
from typing import Any, TypeVar

import psycopg
from psycopg import AsyncConnection
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from chirp_core.errors import Unavailable
from chirp_core.metrics import Metrics
from chirp_core.rpc import on_behalf_of_var
from chirp_core.settings import Settings
from chirp_core.write_marks import MarksUnavailable, WriteMarks

log = logging.getLogger("chirp.db")
DATABASE_UNAVAILABLE_MESSAGE = "the database is unavailable; try again"
_MIGRATION_NAME = re.compile(r"^(\d{3,})_[a-z0-9_]+\.sql$")
_LSN = re.compile(r"^([0-9A-Fa-f]{1,8})/([0-9A-Fa-f]{1,8})$")
T = TypeVar("T")
# How often a read waiting for a replica to catch up asks it for its replay position.
CATCH_UP_POLL_SECONDS = 0.002


def parse_lsn(text: str) -> int:
    """A WAL position as PostgreSQL writes a pg_lsn ('16/B374D848') as one integer, for comparing."""
    match = _LSN.match(text.strip())
    if not match:
        raise ValueError(f"not a WAL position: {text!r}")
    return int(match.group(1), 16) << 32 | int(match.group(2), 16)


def format_lsn(lsn: int) -> str:
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


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
    """A service's pool, handing out connections for reading or for one transaction, and, with
    `replicas`, connections for reads that may be a little stale (see the module's docstring). A
    pool timeout, a lost connection or a server shutting down become Unavailable (worth a retry)."""

    def __init__(
        self,
        pool: AsyncConnectionPool,
        database: str,
        replicas: Replicas | None = None,
        marks: WriteMarks | None = None,
    ) -> None:
        self._pool = pool
        self._database = database
        self._replicas = replicas
        self._marks = marks

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
        await self.wrote()

    async def wrote(self) -> None:
        """Mark the write just committed as the current user's (on_behalf_of_var), so that their
        stale reads see it (chirp_core.write_marks). write() calls it; a write made with read()
        (one statement in autocommit) calls it itself. Nothing to do without replicas."""
        user = on_behalf_of_var.get()
        if self._replicas is None or self._marks is None or user is None:
            return
        try:
            lsn = await self.commit_lsn()
        except Unavailable:
            return  # committed; the user's reads find the primary's state or a replica's soon
        await self._marks.mark(user, lsn)

    async def commit_lsn(self) -> int:
        """The primary's WAL position now: called after a write's block has ended, at or past that
        write's commit. A later read_stale(after_lsn=it) sees the write."""
        async with self.read() as conn:
            cur = await conn.execute("SELECT pg_current_wal_insert_lsn()::text")
            row = await cur.fetchone()
        assert row is not None
        return parse_lsn(row[0])

    @asynccontextmanager
    async def read_stale(self, *, after_lsn: int | None = None) -> AsyncIterator[AsyncConnection[Any]]:
        """A connection in autocommit to a replica at most the lag bound behind (and, with
        after_lsn, past that position), else to the primary. A replica that fails once its
        connection is handed out is an Unavailable, as in read(); run_stale() retries instead."""
        picked = await self._replica_connection(after_lsn)
        if picked is None:
            async with self.read() as conn:
                yield conn
            return
        replica, conn = picked
        try:
            yield conn
        except psycopg.OperationalError as exc:
            if conn.broken:
                replica.failed(exc)
            raise self._unavailable(exc) from exc
        finally:
            await replica.pool.putconn(conn)

    async def run_stale(
        self,
        query: Callable[[AsyncConnection[Any]], Awaitable[T]],
        *,
        after_lsn: int | None = None,
        catch_up: bool = False,
    ) -> T:
        """`query(connection)` on a replica as read_stale() picks it, run again on the primary if
        the replica fails meanwhile: its connection lost, or the statement cancelled by a conflict
        with the replica's recovery. Other errors are the caller's, as in read()."""
        picked = await self._replica_connection(after_lsn, catch_up)
        if picked is not None:
            replica, conn = picked
            try:
                return await query(conn)
            except psycopg.errors.SerializationFailure:
                pass  # the recovery conflict's code (an OperationalError too, hence first)
            except psycopg.OperationalError as exc:
                if not conn.broken:
                    raise self._unavailable(exc) from exc
                replica.failed(exc)
            finally:
                await replica.pool.putconn(conn)
            assert self._replicas is not None
            self._replicas.fell_back("failed")
        async with self.read() as conn:
            return await query(conn)

    async def run_fresh(self, query: Callable[[AsyncConnection[Any]], Awaitable[T]]) -> T:
        """`query(connection)` on a replica that has replayed everything the primary had committed
        when this call began, else on the primary: as exact as the primary, for reads whose result
        is kept (a timeline built from it). Costs the primary one WAL-position query; a replica
        not yet there as last checked is asked again, for up to replica_catch_up_seconds."""
        position = await self.commit_lsn() if self._replicas is not None else None
        return await self.run_stale(query, after_lsn=position, catch_up=True)

    def is_replica(self, conn: AsyncConnection[Any]) -> bool:
        """Whether a connection run_stale() handed out may be a replica's: there are replicas, and
        its server is in recovery or does not say (pgbouncer passes few parameters on)."""
        return self._replicas is not None and conn.info.parameter_status("in_hot_standby") != "off"

    async def _replica_connection(
        self, after_lsn: int | None, catch_up: bool = False
    ) -> tuple[Replica, AsyncConnection[Any]] | None:
        if self._replicas is None:
            return None
        user = on_behalf_of_var.get()
        if after_lsn is None and user is not None:
            # A read on a user's behalf sees that user's writes (chirp_core.write_marks).
            if self._marks is None:
                self._replicas.fell_back("no_write_marks")
                return None
            try:
                after_lsn = await self._marks.position(user)
            except MarksUnavailable:
                self._replicas.fell_back("write_marks_unavailable")
                return None
        return await self._replicas.connection(after_lsn, catch_up=catch_up)

    def _unavailable(self, exc: psycopg.OperationalError) -> Unavailable:
        log.warning("the %s database is unavailable: %s: %s", self._database, type(exc).__name__, exc)
        return Unavailable(
            DATABASE_UNAVAILABLE_MESSAGE, reason="DATABASE_UNAVAILABLE", metadata={"database": self._database}
        )


@dataclass
class ReadRouting:
    """Where a service's stale reads may go: its replicas (None: the primary only) and the users'
    write marks that keep their own writes in view. close() releases both."""

    replicas: Replicas | None = None
    marks: WriteMarks | None = None

    async def close(self) -> None:
        if self.replicas is not None:
            await self.replicas.close()
        if self.marks is not None:
            await self.marks.close()


async def open_read_routing(
    settings: Settings, primary: AsyncConnectionPool, database: str, metrics: Metrics | None = None
) -> ReadRouting:
    """The replicas of settings, checked, and the write marks on settings.redis_url. With no
    Redis, reads made on a user's behalf stay on the primary (Connections._replica_connection)."""
    replicas = await open_replicas(settings, primary, database, metrics)
    if replicas is None or not settings.redis_url:
        return ReadRouting(replicas)
    from chirp_core.redis_client import open_request_redis

    client = open_request_redis(settings.redis_url, settings)
    return ReadRouting(replicas, WriteMarks(client, settings.replica_max_lag_seconds))


async def open_replicas(
    settings: Settings, primary: AsyncConnectionPool, database: str, metrics: Metrics | None = None
) -> Replicas | None:
    """The replicas of settings.replica_urls, checked once and then in the background (close()
    stops that), or None when there are none. A replica that is down holds this up for at most
    its check's deadline; it is used once it answers."""
    if not settings.replica_urls:
        return None
    replicas = Replicas(settings, primary, database, metrics or Metrics())
    await replicas.open()
    return replicas


class Replica:
    """One replica: its pool and what its last check found."""

    def __init__(self, url: str, pool: AsyncConnectionPool, label: str) -> None:
        self.url = url
        self.pool = pool
        self.label = label
        self.up = False
        # What the last check found (up, down, not a standby), to log each change once.
        self.state = "unchecked"
        self.replay_lsn = 0
        # Every transaction committed before this time (time.monotonic()) is on the replica.
        self.fresh_as_of: float | None = None
        self.check_conn: AsyncConnection[Any] | None = None

    def age(self, now: float) -> float:
        return math.inf if self.fresh_as_of is None else now - self.fresh_as_of

    def failed(self, exc: BaseException) -> None:
        """A read found it down: no read uses it until its next check answers."""
        self.found("down", f"{type(exc).__name__}: {exc}")

    def found(self, state: str, detail: str = "") -> None:
        self.up = state == "up"
        if state != self.state:
            level = logging.INFO if self.up else logging.WARNING
            log.log(level, "replica %s is %s%s", self.label, state, f" ({detail})" if detail else "")
        self.state = state


class Replicas:
    """The replicas of one service's database and the task that checks them (module docstring)."""

    def __init__(
        self, settings: Settings, primary: AsyncConnectionPool, database: str, metrics: Metrics
    ) -> None:
        self._primary = primary
        self._database = database
        self._max_lag = settings.replica_max_lag_seconds
        self._interval = settings.replica_check_seconds
        self._timeout = settings.replica_timeout_seconds
        self._catch_up = settings.replica_catch_up_seconds
        self._metrics = metrics
        self.replicas = [
            Replica(url, _replica_pool(settings, url, f"{database}-replica-{number}"), _label(url))
            for number, url in enumerate(settings.replica_urls, 1)
        ]
        # The primary's WAL insert positions of the last max_lag seconds, with when each was read.
        self._positions: deque[tuple[float, int]] = deque()
        self._next = 0
        self._task: asyncio.Task[None] | None = None
        self._abandoned: set[asyncio.Task[Any]] = set()

    async def open(self) -> None:
        """Open the pools without waiting for them, check every replica once (at most twice the
        deadline), then go on checking in the background."""
        for replica in self.replicas:
            await replica.pool.open(wait=False)
            self._metrics.db_replica_up.labels(self._database, replica.label).set(0)
        await self.check()
        self._task = asyncio.create_task(self._watch(), name=f"{self._database} replica checks")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for task in list(self._abandoned):
            task.cancel()
        for replica in self.replicas:
            if replica.check_conn is not None:
                await replica.check_conn.close()
            await replica.pool.close()

    def usable(self, after_lsn: int | None = None) -> list[Replica]:
        """The replicas a read may use now, in turn: each call starts one further along."""
        now = time.monotonic()
        usable = [
            r
            for r in self.replicas
            if r.up and r.age(now) <= self._max_lag and (after_lsn is None or r.replay_lsn >= after_lsn)
        ]
        if usable:
            self._next += 1
            start = self._next % len(usable)
            usable = usable[start:] + usable[:start]
        return usable

    async def connection(
        self, after_lsn: int | None, *, catch_up: bool = False
    ) -> tuple[Replica, AsyncConnection[Any]] | None:
        """A connection of a usable replica, or None (counted) when the primary must answer. With
        catch_up, a replica that was behind after_lsn as last checked is asked again until it is
        past it, for up to replica_catch_up_seconds."""
        usable = self.usable(after_lsn)
        if not usable and catch_up and after_lsn is not None:
            return await self._caught_up(after_lsn)
        if not usable:
            self.fell_back(self._why_none(after_lsn))
            return None
        for replica in usable:
            conn = await self._acquire(replica)
            if conn is not None:
                self._metrics.db_stale_reads.labels(self._database, replica.label).inc()
                return replica, conn
        self.fell_back("unreachable")
        return None

    async def _acquire(self, replica: Replica) -> AsyncConnection[Any] | None:
        """A checked connection of the replica, or None (the replica marked down when it is)."""
        try:
            conn = await replica.pool.getconn(timeout=self._timeout)
        except PoolTimeout as exc:
            # A pool short of connections could not make one: down. A full one is only busy.
            if replica.pool.get_stats().get("pool_size", 0) < replica.pool.max_size:
                replica.failed(exc)
            return None
        except psycopg.OperationalError as exc:
            replica.failed(exc)
            return None
        try:
            # Checked here rather than by the pool, which would wait out the deadline for a
            # new connection to a replica that has just died.
            await AsyncConnectionPool.check_connection(conn)
        except psycopg.Error as exc:
            await replica.pool.putconn(conn)
            replica.failed(exc)
            return None
        return conn

    async def _caught_up(self, after_lsn: int) -> tuple[Replica, AsyncConnection[Any]] | None:
        deadline = time.monotonic() + self._catch_up
        for replica in self.usable():
            conn = await self._acquire(replica)
            if conn is None:
                continue
            try:
                while True:
                    cur = await conn.execute("SELECT pg_last_wal_replay_lsn()::text")
                    row = await cur.fetchone()
                    replay = parse_lsn(row[0]) if row and row[0] else None
                    if replay is None:
                        break  # promoted: not a standby any more
                    replica.replay_lsn = max(replica.replay_lsn, replay)
                    if replay >= after_lsn:
                        self._metrics.db_stale_reads.labels(self._database, replica.label).inc()
                        return replica, conn
                    if time.monotonic() >= deadline:
                        break
                    await asyncio.sleep(CATCH_UP_POLL_SECONDS)
            except psycopg.Error as exc:
                if conn.broken:
                    replica.failed(exc)
            await replica.pool.putconn(conn)
        self.fell_back("behind_read")
        return None

    def fell_back(self, reason: str) -> None:
        self._metrics.db_stale_reads.labels(self._database, "primary").inc()
        self._metrics.db_replica_fallbacks.labels(self._database, reason).inc()

    def _why_none(self, after_lsn: int | None) -> str:
        now = time.monotonic()
        up = [r for r in self.replicas if r.up]
        if not up:
            return "down"
        if after_lsn is not None and any(r.age(now) <= self._max_lag for r in up):
            return "behind_write"
        return "lagging"

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.check()
            except Exception:
                log.exception("%s: replica check round failed", self._database)

    async def check(self) -> None:
        """One round: the primary's position, then every replica's, each within the deadline."""
        try:
            read_at, position = await self._within(self._primary_position())
        except (psycopg.Error, PoolTimeout, TimeoutError) as exc:
            log.info(
                "%s: the primary's WAL position is unknown (%s); replicas age meanwhile", self._database, exc
            )
        else:
            self._positions.append((read_at, position))
            while len(self._positions) > 1 and self._positions[0][0] < read_at - self._max_lag:
                self._positions.popleft()
        await asyncio.gather(*(self._check(replica) for replica in self.replicas))

    async def _primary_position(self) -> tuple[float, int]:
        async with self._primary.connection(timeout=self._timeout) as conn:
            # Read before asking: every commit finished by then is at or before the position. (The
            # insert position is just past a page header when the last record ended on a page's
            # end; a replica then looks behind until the next record: a read on the primary, never
            # a stale one.)
            read_at = time.monotonic()
            cur = await conn.execute("SELECT pg_current_wal_insert_lsn()::text")
            row = await cur.fetchone()
        assert row is not None
        return read_at, parse_lsn(row[0])

    async def _check(self, replica: Replica) -> None:
        labels = (self._database, replica.label)
        try:
            in_recovery, replay = await self._within(self._replay_position(replica))
        except (psycopg.Error, OSError, TimeoutError) as exc:
            replica.check_conn = None
            replica.found("down", f"{type(exc).__name__}: {exc}")
        else:
            if replay is None or not in_recovery:
                replica.found("not a standby", "promoted? not reading from it")
            else:
                replica.replay_lsn = parse_lsn(replay)
                replica.fresh_as_of = self._fresh_as_of(replica.replay_lsn)
                replica.found("up")
        self._metrics.db_replica_up.labels(*labels).set(1 if replica.up else 0)
        if replica.up:
            self._metrics.db_replica_lag.labels(*labels).set(replica.age(time.monotonic()))

    def _fresh_as_of(self, replay_lsn: int) -> float | None:
        """When the newest primary position the replica has replayed was read, if any."""
        for read_at, position in reversed(self._positions):
            if position <= replay_lsn:
                return read_at
        return None

    async def _replay_position(self, replica: Replica) -> tuple[bool, str | None]:
        conn = replica.check_conn
        if conn is None or conn.closed:
            conn = await psycopg.AsyncConnection.connect(
                replica.url,
                autocommit=True,
                prepare_threshold=None,
                connect_timeout=_connect_timeout(self._timeout),
            )
            replica.check_conn = conn
        try:
            cur = await conn.execute("SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn()::text")
            row = await cur.fetchone()
        except BaseException:
            if replica.check_conn is conn:
                replica.check_conn = None
            await conn.close()
            raise
        assert row is not None
        return bool(row[0]), row[1]

    async def _within(self, work: Coroutine[Any, Any, T]) -> T:
        """`work`'s result, or TimeoutError after the deadline. Work past its deadline is
        cancelled but not waited for: cancelling a statement on a server that does not answer
        can take seconds, and the check must not."""
        task = asyncio.ensure_future(work)
        done, _ = await asyncio.wait({task}, timeout=self._timeout)
        if task in done:
            return task.result()
        task.cancel()
        self._abandoned.add(task)
        task.add_done_callback(_forget(self._abandoned))
        raise TimeoutError(f"no answer within {self._timeout:g} s")


def _forget(tasks: set[asyncio.Task[Any]]) -> Callable[[asyncio.Task[Any]], None]:
    def done(task: asyncio.Task[Any]) -> None:
        tasks.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: a late failure of abandoned work is no news

    return done


def _replica_pool(settings: Settings, url: str, name: str) -> AsyncConnectionPool:
    return AsyncConnectionPool(
        url,
        min_size=settings.db_pool_min,
        max_size=settings.db_pool_max,
        kwargs={
            "prepare_threshold": settings.db_prepare_threshold,
            "autocommit": True,
            "connect_timeout": _connect_timeout(settings.replica_timeout_seconds),
        },
        name=name,
        open=False,
        timeout=settings.replica_timeout_seconds,
    )


def _connect_timeout(seconds: float) -> int:
    # libpq's connect_timeout is whole seconds, at least 2; the callers' own deadline is shorter.
    return max(2, math.ceil(seconds))


def _label(url: str) -> str:
    """host:port/database of a URL, without the user or password."""
    params = conninfo_to_dict(url)
    return f"{params.get('host', '')}:{params.get('port', 5432)}/{params.get('dbname', '')}"


async def migrate(dsn: str, schema: str, package: str) -> list[int]:
    """Apply the numbered `NNN_name.sql` files of `package` not yet applied to `schema`.

    Idempotent and safe to run from several processes at once: each file is applied in a
    transaction of its own that first takes the schema's advisory lock and checks the version is
    still missing. The lock and everything else live inside transactions, and no statement is
    prepared, so this also runs through pgbouncer in transaction mode. Returns the versions applied.
    """
    files = sorted(
        (int(m.group(1)), entry.name, entry.read_text())
        for entry in resources.files(package).iterdir()
        if (m := _MIGRATION_NAME.match(entry.name))
    )
    lock = "SELECT pg_advisory_xact_lock(hashtext(%s))"
    key = (f"chirp-migrate:{schema}",)
    table = f'"{schema}".schema_migrations'
    applied: list[int] = []
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True, prepare_threshold=None) as conn:
        async with conn.transaction():
            await conn.execute(lock, key)
            await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
            await conn.execute(
                f"CREATE TABLE IF NOT EXISTS {table} ("
                " version integer PRIMARY KEY, name text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            cur = await conn.execute(f"SELECT version FROM {table}")
            done = {row[0] for row in await cur.fetchall()}
        for version, name, sql in files:
            if version in done:
                continue
            async with conn.transaction():
                await conn.execute(lock, key)
                cur = await conn.execute(f"SELECT 1 FROM {table} WHERE version = %s", (version,))
                if await cur.fetchone():
                    continue  # another process applied it meanwhile
                await conn.execute(sql.encode())
                await conn.execute(f"INSERT INTO {table} (version, name) VALUES (%s, %s)", (version, name))
            applied.append(version)
            log.info("migrated %s to %s", schema, name)
    return applied
