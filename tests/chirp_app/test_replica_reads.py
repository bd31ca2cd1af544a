"""The services on a real streaming replica (tests/helpers/replica.py): follower and following
lists, replies and tweets fetched by ID are read from it, counted on the replica itself; a user
never misses their own write, even from a replica that has stopped replaying; a killed replica
changes nothing a client sees."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
import pytest_asyncio

from chirp.graph.v1 import graph_pb2
from chirp.timeline.v1 import timeline_pb2
from chirp.tweets.v1 import tweets_pb2
from chirp_app.stack import Stack, start_stack
from tests.conftest import settings_for_tests
from tests.helpers.api import Api, api_for, as_user
from tests.helpers.graph import follow
from tests.helpers.replica import ReplicaUnavailable, Standby

WAIT_SECONDS = 30.0


@pytest.fixture(scope="module")
def standby(postgres_server: str) -> Iterator[Standby]:
    replica = Standby(postgres_server)
    try:
        replica.start()
    except ReplicaUnavailable as exc:
        replica.stop()
        pytest.skip(f"no streaming replica of the test server can be made here: {exc}")
    try:
        yield replica
    finally:
        replica.stop()


@pytest.fixture(scope="module")
def database(database_url: str) -> str:
    return str(psycopg.conninfo.conninfo_to_dict(database_url)["dbname"])


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def replicated(
    standby: Standby, database_url: str, database: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[Stack, Api]]:
    """A stack whose graph and tweets services have the standby as their replica."""
    settings = settings_for_tests(
        database_url,
        Path(tmp_path_factory.mktemp("replicated")),
        database_replica_urls=standby.url(database),
        replica_check_seconds=0.05,
        replica_max_lag_seconds=30.0,
        # A bound for a loaded machine: on an idle one the replica replays within milliseconds.
        replica_catch_up_seconds=0.5,
    )
    stack = await start_stack(settings, with_edge=False)
    try:
        async with api_for(stack) as api:
            yield stack, api
    finally:
        await stack.stop()


def replica_scans(standby: Standby, database: str, schema: str, table: str) -> int:
    """How often the replica's own statistics say the table was read (index and sequential scans)."""
    with psycopg.connect(standby.url(database), autocommit=True, connect_timeout=5) as conn:
        row = conn.execute(
            "SELECT coalesce(idx_scan, 0) + coalesce(seq_scan, 0) FROM pg_stat_user_tables"
            " WHERE schemaname = %s AND relname = %s",
            (schema, table),
        ).fetchone()
    return int(row[0]) if row else 0


async def scans_reach(standby: Standby, database: str, schema: str, table: str, at_least: int) -> int:
    """The replica's scan count once it reaches `at_least` (statistics are flushed within ~1 s)."""
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        scans = replica_scans(standby, database, schema, table)
        if scans >= at_least or time.monotonic() > deadline:
            return scans
        await asyncio.sleep(0.1)


async def scans_settled(standby: Standby, database: str, schema: str, table: str) -> int:
    """The replica's scan count once its statistics stop moving (they are flushed within ~1 s)."""
    seen = replica_scans(standby, database, schema, table)
    while True:
        await asyncio.sleep(1.2)
        now = replica_scans(standby, database, schema, table)
        if now == seen:
            return now
        seen = now


@contextmanager
def replay_paused(standby: Standby, database: str) -> Iterator[None]:
    """The standby replays nothing inside the block: whatever the primary commits there, it lacks."""
    with psycopg.connect(standby.url(database), autocommit=True, connect_timeout=5) as conn:
        conn.execute("SELECT pg_wal_replay_pause()")
    try:
        yield
    finally:
        with psycopg.connect(standby.url(database), autocommit=True, connect_timeout=5) as conn:
            conn.execute("SELECT pg_wal_replay_resume()")


async def following_of(api: Api, reader: int, user_id: int) -> set[int]:
    page = await api.graph.ListFollowing(
        graph_pb2.ListFollowingRequest(user_id=user_id, limit=100), metadata=as_user(reader)
    )
    return {u.user_id for u in page.users}


async def followers_of(api: Api, reader: int, user_id: int) -> set[int]:
    page = await api.graph.ListFollowers(
        graph_pb2.ListFollowersRequest(user_id=user_id, limit=100), metadata=as_user(reader)
    )
    return {u.user_id for u in page.users}


async def test_lists_are_read_from_the_replica(
    replicated: tuple[Stack, Api], standby: Standby, database: str
) -> None:
    _, api = replicated
    alice, bob, carol = [await api.new_user() for _ in range(3)]
    await follow(api, alice.user_id, bob.user_id)
    standby.wait_replayed(database)
    before = replica_scans(standby, database, "graph", "follows")
    reads = 5
    for _ in range(reads):
        assert await followers_of(api, carol.user_id, bob.user_id) == {alice.user_id}
    after = await scans_reach(standby, database, "graph", "follows", before + reads)
    print(f"graph.follows scans on the replica: {before} -> {after} after {reads} list reads")
    assert after >= before + reads, "the lists were not read on the replica"


async def test_a_user_sees_their_own_follow_while_the_replica_lags(
    replicated: tuple[Stack, Api], standby: Standby, database: str
) -> None:
    _, api = replicated
    alice = await api.new_user()
    bob = await api.new_user()
    standby.wait_replayed(database)
    with replay_paused(standby, database):
        await follow(api, alice.user_id, bob.user_id)
        # The replica cannot have the edge: replay is paused. Alice's reads go past it.
        with psycopg.connect(standby.url(database), autocommit=True) as conn:
            on_replica = conn.execute(
                "SELECT count(*) FROM graph.follows WHERE follower_id = %s", (alice.user_id,)
            ).fetchone()
        assert on_replica is not None and on_replica[0] == 0
        assert await following_of(api, alice.user_id, alice.user_id) == {bob.user_id}
        assert await followers_of(api, alice.user_id, bob.user_id) == {alice.user_id}


async def test_a_tweet_younger_than_the_replica_is_still_found_by_id(
    replicated: tuple[Stack, Api], standby: Standby, database: str
) -> None:
    _, api = replicated
    alice = await api.new_user()
    carol = await api.new_user()
    standby.wait_replayed(database)
    before = replica_scans(standby, database, "tweets", "tweets")
    with replay_paused(standby, database):
        tweet = await api.tweets.CreateTweet(
            tweets_pb2.CreateTweetRequest(user_id=alice.user_id, content="fresh"),
            metadata=as_user(alice.user_id),
        )
        # Carol did not write it, so her read may use the replica, which lacks it: the IDs it
        # lacks are asked of the primary.
        got = await api.tweets.BatchGetTweets(
            tweets_pb2.BatchGetTweetsRequest(tweet_ids=[tweet.tweet_id]), metadata=as_user(carol.user_id)
        )
        assert [t.tweet_id for t in got.tweets] == [tweet.tweet_id]
        assert got.tweets[0].content == "fresh"
    assert await scans_reach(standby, database, "tweets", "tweets", before + 1) > before


async def test_a_killed_replica_changes_nothing_a_client_sees(
    replicated: tuple[Stack, Api], standby: Standby, database: str
) -> None:
    _, api = replicated
    alice = await api.new_user()
    bob = await api.new_user()
    await follow(api, alice.user_id, bob.user_id)
    standby.wait_replayed(database)
    standby.kill()
    try:
        for _ in range(5):
            assert await followers_of(api, bob.user_id, bob.user_id) == {alice.user_id}
            assert await following_of(api, bob.user_id, alice.user_id) == {bob.user_id}
    finally:
        standby.restart()


async def test_reads_a_timeline_keeps_use_the_replica_once_it_has_caught_up(
    replicated: tuple[Stack, Api], standby: Standby, database: str
) -> None:
    """A cold rebuild's and the fan-out's reads, made for no user: served by the replica when it
    has every commit the primary had when the read began."""
    _, api = replicated
    alice = await api.new_user()
    bob = await api.new_user()
    await follow(api, alice.user_id, bob.user_id)
    standby.wait_replayed(database)
    request = graph_pb2.ListFolloweeIdsRequest(user_id=alice.user_id)
    # The services take the replica back once their check finds it up again (an earlier test
    # restarts it): read until one read lands there, then count.
    first = replica_scans(standby, database, "graph", "follows")
    deadline = time.monotonic() + WAIT_SECONDS
    while replica_scans(standby, database, "graph", "follows") <= first and time.monotonic() < deadline:
        await api.graph.ListFolloweeIds(request)
        await asyncio.sleep(0.2)
    before = await scans_settled(standby, database, "graph", "follows")
    reads = 5
    for _ in range(reads):
        got = await api.graph.ListFolloweeIds(request)
        assert list(got.user_ids) == [bob.user_id]
    after = await scans_reach(standby, database, "graph", "follows", before + reads)
    print(f"graph.follows scans on the replica: {before} -> {after} after {reads} followee reads")
    assert after >= before + reads


async def test_a_cold_timeline_built_while_the_replica_lags_misses_no_tweet(
    replicated: tuple[Stack, Api], standby: Standby, database: str
) -> None:
    """Bob's tweet reaches no Redis timeline of Alice's (hers is cold), so her first read builds it
    from the database: from a replica only if that has the tweet, here the primary."""
    _, api = replicated
    alice = await api.new_user()
    bob = await api.new_user()
    await follow(api, alice.user_id, bob.user_id)
    standby.wait_replayed(database)
    with replay_paused(standby, database):
        tweet = await api.tweets.CreateTweet(
            tweets_pb2.CreateTweetRequest(user_id=bob.user_id, content="while it lags"),
            metadata=as_user(bob.user_id),
        )
        with psycopg.connect(standby.url(database), autocommit=True) as conn:
            row = conn.execute(
                "SELECT count(*) FROM tweets.tweets WHERE user_id = %s", (bob.user_id,)
            ).fetchone()
        assert row is not None and row[0] == 0, "the replica was meant to lack the tweet"
        page = await api.timeline.GetHomeTimeline(
            timeline_pb2.GetHomeTimelineRequest(user_id=alice.user_id, limit=10),
            metadata=as_user(alice.user_id),
        )
        assert [t.tweet_id for t in page.tweets] == [tweet.tweet_id]
