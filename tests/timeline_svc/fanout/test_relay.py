"""The outbox relay: every event reaches the Redis stream, woken by NOTIFY, and is marked published."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import timedelta

import psycopg
import pytest

from chirp_app.stack import Stack
from chirp_core.db import open_pool
from chirp_core.metrics import Metrics
from chirp_core.outbox import OutboxRelay
from tests.helpers.api import Api, eventually
from tests.helpers.fanout import open_redis_of
from tests.helpers.graph import follow
from tests.helpers.tweets import post


async def published_at_of_last(database_url: str, table: str) -> object:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        cur = await conn.execute(f"SELECT published_at FROM {table} ORDER BY id DESC LIMIT 1")
        row = await cur.fetchone()
    return row[0] if row else None


async def test_each_event_reaches_the_stream_with_its_sequence_and_payload(
    api: Api, stack: Stack, database_url: str
) -> None:
    alice, bob = await api.new_user(), await api.new_user()
    client = open_redis_of(stack.settings)
    try:
        await follow(api, alice.user_id, bob.user_id)
        tweet = await post(api, bob.user_id, "relayed")
        await eventually(
            lambda: published_at_of_last(database_url, "tweets.outbox"), lambda at: at is not None
        )
        await eventually(
            lambda: published_at_of_last(database_url, "graph.outbox"), lambda at: at is not None
        )

        entries = await client.xrange(stack.settings.events_stream)
        events = [{k.decode(): v.decode() for k, v in fields.items()} for _, fields in entries]
        by_type = {event["type"]: event for event in events}
        followed = json.loads(by_type["followed"]["payload"])
        assert followed == {
            "follower_id": alice.user_id,
            "followee_id": bob.user_id,
            "followee_follower_count": 1,
        }
        assert by_type["followed"]["source"] == "graph.outbox"
        assert json.loads(by_type["tweet_created"]["payload"])["tweet_id"] == tweet.tweet_id
        assert int(by_type["tweet_created"]["seq"]) >= 1
    finally:
        await client.aclose()


async def test_notify_wakes_the_relay_well_before_its_poll(api: Api, database_url: str) -> None:
    # The relays poll every second; woken by NOTIFY each event goes out in a few milliseconds.
    author = await api.new_user()
    latencies = []
    for i in range(5):
        started = time.monotonic()
        await post(api, author.user_id, f"tweet {i}")
        await eventually(
            lambda: published_at_of_last(database_url, "tweets.outbox"), lambda at: at is not None
        )
        latencies.append(time.monotonic() - started)
    assert max(latencies) < 0.5, latencies


async def test_published_rows_are_purged_after_the_retention(
    api: Api, stack: Stack, database_url: str
) -> None:
    author = await api.new_user()
    await post(api, author.user_id, "soon purged")
    await eventually(lambda: published_at_of_last(database_url, "tweets.outbox"), lambda at: at is not None)
    pool = await open_pool(stack.settings, database_url, "purge-test")
    client = open_redis_of(stack.settings)
    relay = OutboxRelay(
        pool,
        database_url,
        "tweets",
        client,
        stream=stack.settings.events_stream,
        maxlen=1000,
        poll_seconds=1.0,
        retention=timedelta(0),
        metrics=Metrics(),
    )
    try:
        await relay.purge()
        assert await published_at_of_last(database_url, "tweets.outbox") is None
    finally:
        await pool.close()
        await client.aclose()


async def test_a_relay_that_dies_before_marking_its_rows_hands_them_over_again(
    stack: Stack, database_url: str
) -> None:
    """Rows handed to Redis but not yet marked published (the relay's connection dies in between)
    stay in the outbox and go out again: at-least-once, each copy with the same sequence number,
    which the workers use to apply it once. The relay here works an outbox table of its own."""
    schema = f"relay_{uuid.uuid4().hex[:8]}"
    stream = f"{schema}:events"
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as admin:
        await admin.execute(f"CREATE SCHEMA {schema}")
        await admin.execute(f"CREATE TABLE {schema}.outbox (LIKE tweets.outbox INCLUDING ALL)")
        for n in range(3):
            await admin.execute(
                f"INSERT INTO {schema}.outbox (event_type, aggregate_id, payload)"
                " VALUES ('tweet_created', %s, %s)",
                (n, json.dumps({"tweet_id": n})),
            )
    pool = await open_pool(stack.settings, database_url, "relay-death-test")
    client = open_redis_of(stack.settings)
    relay = OutboxRelay(
        pool,
        database_url,
        schema,
        client,
        stream=stream,
        maxlen=1000,
        poll_seconds=1.0,
        retention=timedelta(hours=1),
        metrics=Metrics(),
    )
    locker = await psycopg.AsyncConnection.connect(database_url)
    try:
        # SHARE lets the relay select its rows FOR UPDATE but holds off its UPDATE ... published_at.
        await locker.execute(f"LOCK TABLE {schema}.outbox IN SHARE MODE")
        round_ = asyncio.create_task(relay.relay_once())
        await eventually(lambda: client.xlen(stream), lambda length: length == 3)
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as admin:
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE wait_event_type = 'Lock' AND query LIKE %s",
                (f'UPDATE "{schema}"."outbox"%',),
            )
        with pytest.raises(psycopg.OperationalError):
            await round_
        await locker.rollback()

        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as admin:
            cur = await admin.execute(f"SELECT count(*) FROM {schema}.outbox WHERE published_at IS NULL")
            assert await cur.fetchone() == (3,)

        assert await relay.relay_once() == 3
        assert await relay.relay_once() == 0
        entries = await client.xrange(stream)
        seqs = [int(fields[b"seq"]) for _, fields in entries]
        assert len(seqs) == 6 and sorted(set(seqs)) == sorted(seqs[:3]) == sorted(seqs[3:])
    finally:
        await locker.close()
        await pool.close()
        await client.delete(stream)
        await client.aclose()
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as admin:
            await admin.execute(f"DROP SCHEMA {schema} CASCADE")
