"""The outbox relay: moves a service's outbox rows to the Redis stream the timeline workers read.

Each service relays its own table from its own process. A round claims the oldest unpublished
rows (FOR UPDATE SKIP LOCKED, so several processes may relay the same table), XADDs them to the
stream in one pipeline and marks them published in the same transaction, only after Redis took
them. If Redis or PostgreSQL fails the transaction rolls back and the rows wait for the next
round, after a backoff: nothing is lost, and a crash between XADD and COMMIT sends a row twice,
which the workers' idempotent apply steps absorb (at-least-once delivery).

Order: rows go out in ID order within a round, but two relays, or a transaction that commits
after a younger one, can swap events. The consumers do not rely on order (see timeline_svc.fanout).

Latency: a statement trigger NOTIFYs the table's channel when its transaction commits (see the
services' migrations); the relay LISTENs on a connection of its own and polls every
`poll_seconds` as a fallback (a lost notification, or pgbouncer in transaction mode, which
cannot LISTEN).

Redis's own durability: the embedded Redis writes its append-only file once a second, so a
Redis that is killed can come back without its last second, events included. Each relay keeps
the server's run ID in Redis (`<stream>:relay:<schema>`, with when it last looked); when it finds a
new run ID beside an older one, the server restarted, and the rows published since shortly
before that last look are published again (the workers' apply steps are idempotent).

A stream entry has the fields: type (the event type), source (the table), seq (the row ID,
increasing per table), payload (the row's JSON).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import psycopg
import redis.asyncio
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from chirp_core.metrics import Metrics
from chirp_core.redis_client import RedisClient, open_redis
from chirp_core.settings import Settings
from chirp_core.tasks import stop_tasks

log = logging.getLogger("chirp.outbox")

BATCH_SIZE = 500
MAX_BACKOFF_SECONDS = 5.0
# Published rows are purged at most this often.
PURGE_INTERVAL_SECONDS = 60.0
# How often a relay looks for a restarted Redis, and how far before its last look it republishes.
RESTART_CHECK_SECONDS = 1.0
REPUBLISH_MARGIN_SECONDS = 10.0
_REDIS_ERRORS = (redis.RedisError, OSError, asyncio.TimeoutError)


def notify_channel(schema: str) -> str:
    """The NOTIFY channel of a schema's outbox (the migrations' trigger uses the same name)."""
    return f"{schema}_outbox"


class OutboxRelay:
    """Relays `schema`.outbox to `stream`. start() runs it as a background task; stop() ends it."""

    def __init__(
        self,
        pool: AsyncConnectionPool,
        dsn: str,
        schema: str,
        client: RedisClient,
        *,
        stream: str,
        maxlen: int,
        poll_seconds: float,
        retention: timedelta,
        metrics: Metrics,
    ) -> None:
        self._pool = pool
        self._dsn = dsn
        self._schema = schema
        self._table = sql.Identifier(schema, "outbox")
        self._redis = client
        self._stream = stream
        self._maxlen = maxlen
        self._poll = poll_seconds
        self._retention = retention
        self._label = f"{schema}.outbox"
        self._backlog = metrics.relay_backlog.labels(self._label)
        self._relayed = metrics.relayed.labels(self._label)
        self._failures = metrics.relay_failures.labels(self._label)
        self._wake = asyncio.Event()
        self._stopping = False
        self._tasks: list[asyncio.Task[None]] = []
        self._next_purge = 0.0
        self._next_restart_check = 0.0
        # Beside the stream, on the same Redis Cluster node: the restart it detects is that node's.
        self._restart_key = f"{stream}:relay:{schema}"

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._listen(), name=f"{self._label} listener"),
            asyncio.create_task(self._run(), name=f"{self._label} relay"),
        ]

    async def stop(self) -> None:
        self._stopping = True
        await stop_tasks(self._tasks, "outbox relay")
        self._tasks = []

    async def relay_once(self) -> int:
        """One round: the rows relayed (0 when none were waiting). Raises on a Redis or database error."""
        async with self._pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                sql.SQL(
                    "SELECT id, event_type, payload FROM {} WHERE published_at IS NULL"
                    " ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED"
                ).format(self._table),
                (BATCH_SIZE,),
            )
            rows = await cur.fetchall()
            if not rows:
                return 0
            pipe = self._redis.pipeline(transaction=False)
            for row_id, event_type, payload in rows:
                fields: dict[Any, Any] = {
                    "type": event_type,
                    "source": self._label,
                    "seq": str(row_id),
                    "payload": json.dumps(payload, separators=(",", ":")),
                }
                pipe.xadd(self._stream, fields, maxlen=self._maxlen, approximate=True)
            await pipe.execute()
            await conn.execute(
                sql.SQL("UPDATE {} SET published_at = now() WHERE id = ANY(%s)").format(self._table),
                ([row[0] for row in rows],),
            )
        self._relayed.inc(len(rows))
        return len(rows)

    async def republish_after_redis_restart(self) -> int:
        """At most every RESTART_CHECK_SECONDS: the rows marked unpublished again because Redis
        restarted since the last look (0 when it did not)."""
        now = time.time()
        if now < self._next_restart_check:
            return 0
        self._next_restart_check = now + RESTART_CHECK_SECONDS
        if isinstance(self._redis, redis.asyncio.RedisCluster):
            seen: Any = await self._redis.hgetall(self._restart_key)  # (the client learns the nodes)
            node = self._redis.get_node_from_key(self._stream)
            info = await self._redis.info("server", target_nodes=node)
        else:
            pipe = self._redis.pipeline(transaction=False)
            pipe.info("server")
            pipe.hgetall(self._restart_key)
            info, seen = await pipe.execute()
        run_id = str(info["run_id"])
        republished = 0
        if seen and seen.get(b"run_id", b"").decode() != run_id:
            since = float(seen.get(b"at", b"0")) - REPUBLISH_MARGIN_SECONDS
            async with self._pool.connection() as conn:
                cur = await conn.execute(
                    sql.SQL(
                        "UPDATE {} SET published_at = NULL WHERE published_at >= to_timestamp(%s)"
                    ).format(self._table),
                    (since,),
                )
                republished = cur.rowcount
            log.warning(
                "%s: Redis restarted (run %s); publishing again the %d rows published since %.0f",
                self._label,
                run_id,
                republished,
                since,
            )
        await self._redis.hset(self._restart_key, mapping={"run_id": run_id, "at": repr(now)})
        return republished

    async def backlog(self) -> int:
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                sql.SQL("SELECT count(*) FROM {} WHERE published_at IS NULL").format(self._table)
            )
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def _run(self) -> None:
        backoff = 0.05
        while not self._stopping:
            try:
                await self.republish_after_redis_restart()
                while await self.relay_once() == BATCH_SIZE:
                    pass
                backoff = 0.05
                await self.purge()
            except (*_REDIS_ERRORS, psycopg.Error) as exc:
                self._failures.inc()
                log.warning("%s: relay round rolled back (%s); retrying in %.2fs", self._label, exc, backoff)
                with contextlib.suppress(psycopg.Error, OSError):
                    self._backlog.set(await self.backlog())
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
                continue
            except Exception:
                log.exception("%s: relay round failed", self._label)
                await asyncio.sleep(MAX_BACKOFF_SECONDS)
                continue
            self._backlog.set(0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._poll)
            self._wake.clear()

    async def _listen(self) -> None:
        """Set the wake event on each NOTIFY; reconnect with a backoff when the connection drops."""
        backoff = 0.1
        while not self._stopping:
            try:
                async with await psycopg.AsyncConnection.connect(self._dsn, autocommit=True) as conn:
                    await conn.execute(
                        sql.SQL("LISTEN {}").format(sql.Identifier(notify_channel(self._schema)))
                    )
                    backoff = 0.1
                    self._wake.set()  # rows may have come while not listening
                    async for _ in conn.notifies():
                        self._wake.set()
            except psycopg.Error as exc:
                log.info("%s: LISTEN connection lost (%s); polling meanwhile", self._label, exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)

    async def purge(self) -> None:
        """Delete rows published longer ago than the retention, a bounded chunk at a time."""
        now = time.monotonic()
        if now < self._next_purge:
            return
        self._next_purge = now + PURGE_INTERVAL_SECONDS
        async with self._pool.connection() as conn:
            await conn.execute(
                sql.SQL(
                    "DELETE FROM {0} WHERE id IN (SELECT id FROM {0} WHERE published_at < now() - %s"
                    " ORDER BY published_at LIMIT 10000)"
                ).format(self._table),
                (self._retention,),
            )


async def start_relay(
    settings: Settings, pool: AsyncConnectionPool, dsn: str, schema: str, metrics: Metrics
) -> Callable[[], Awaitable[None]]:
    """Relay `schema`.outbox in the background when settings.redis_url is set; returns the stop."""
    if not settings.redis_url:

        async def nothing() -> None:
            return None

        log.info("%s.outbox: no CHIRP_REDIS_URL, events stay in the outbox", schema)
        return nothing
    client = open_redis(settings.redis_url, cluster=settings.redis_cluster)
    relay = OutboxRelay(
        pool,
        dsn,
        schema,
        client,
        stream=settings.events_stream,
        maxlen=settings.events_stream_maxlen,
        poll_seconds=settings.relay_poll_seconds,
        retention=timedelta(hours=settings.outbox_retention_hours),
        metrics=metrics,
    )
    relay.start()

    async def stop() -> None:
        await relay.stop()
        await client.aclose()

    return stop
