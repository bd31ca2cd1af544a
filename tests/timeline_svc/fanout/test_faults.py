"""Availability over consistency: Redis stopped or flushed, the workers stopped or killed mid-batch."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import psycopg
import pytest

from chirp_app.embedded_redis import EmbeddedRedis
from chirp_app.stack import Stack
from chirp_core.metrics import Metrics
from chirp_core.rpc import downstream_channel
from tests.helpers.api import Api, eventually
from tests.helpers.fanout import cache_storage_of, open_redis_of, start_timeline
from tests.helpers.graph import follow
from tests.helpers.tweets import post
from tests.timeline_svc.fanout.conftest import StartTimeline
from timeline_svc.cache import TweetCache
from timeline_svc.events import FanoutWorkers
from timeline_svc.fanout import FanoutApplier
from timeline_svc.home import Builder
from timeline_svc.upstreams import GrpcFollowGraph, GrpcTweetStore, GrpcUserDirectory


async def unpublished(database_url: str) -> int:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        cur = await conn.execute(
            "SELECT (SELECT count(*) FROM graph.outbox WHERE published_at IS NULL)"
            " + (SELECT count(*) FROM tweets.outbox WHERE published_at IS NULL)"
        )
        row = await cur.fetchone()
    assert row is not None
    return int(row[0])


@pytest.mark.parametrize("mode", ["push", "hybrid"])
async def test_with_redis_stopped_reads_come_from_postgresql_and_the_workers_catch_up_after(
    own_stack: Stack, own_redis: EmbeddedRedis, mode: str
) -> None:
    own_api = _api(own_stack)
    timeline = await start_timeline(own_stack.settings, mode)
    try:
        alice, bob = await own_api.new_user(), await own_api.new_user()
        await follow(own_api, alice.user_id, bob.user_id)
        before = await post(own_api, bob.user_id, "before the outage")
        await eventually(lambda: timeline.home_ids(alice.user_id), lambda seen: seen == [before.tweet_id])

        await asyncio.to_thread(own_redis.stop)
        during = await post(own_api, bob.user_id, "while Redis is down")  # writes never need Redis
        own = await post(own_api, alice.user_id, "mine, while Redis is down")
        page = await timeline.home_ids(alice.user_id)

        assert page == [own.tweet_id, during.tweet_id, before.tweet_id]
        assert timeline.metrics.value("chirp_timeline_read_seconds_count", {"path": "fallback"}) >= 1
        assert timeline.metrics.value("chirp_timeline_redis_failures_total", {"operation": "read"}) >= 1
        assert await unpublished(own_stack.database_url) >= 2  # the outbox holds the events

        await asyncio.to_thread(own_redis.start)  # same data (append-only file): alice is still warm
        await eventually(lambda: unpublished(own_stack.database_url), lambda left: left == 0)
        expected = [own.tweet_id, during.tweet_id, before.tweet_id]
        await eventually(lambda: timeline.pushed(alice.user_id), lambda pushed: pushed == expected)
        # Reads skip Redis for this long after its last failure (the circuit breaker), then use it.
        await asyncio.sleep(own_stack.settings.redis_breaker_open_seconds)
        warm_before = timeline.metrics.value("chirp_timeline_read_seconds_count", {"path": "warm"})
        assert await timeline.home_ids(alice.user_id) == expected
        assert (
            timeline.metrics.value("chirp_timeline_read_seconds_count", {"path": "warm"}) == warm_before + 1
        )
    finally:
        await timeline.stop()
        await own_api.close()


async def test_with_the_workers_stopped_reads_still_work(
    api: Api, timelines: StartTimeline, mode: str
) -> None:
    idle = await timelines(mode, fanout_workers=0)
    alice, bob = await api.new_user(), await api.new_user()
    await follow(api, alice.user_id, bob.user_id)
    first = await post(api, bob.user_id, "first")
    assert await idle.home_ids(alice.user_id) == [first.tweet_id]  # cold: rebuilt from PostgreSQL

    later = await post(api, bob.user_id, "nobody pushes this")
    mine = await post(api, alice.user_id, "mine")

    page = await idle.home_ids(alice.user_id)
    assert page[0] == mine.tweet_id  # read-your-writes needs no worker
    if mode == "pull":
        assert page == [mine.tweet_id, later.tweet_id, first.tweet_id]
    else:
        assert page == [mine.tweet_id, first.tweet_id]  # stale, not an error


async def test_a_flushed_redis_is_rebuilt_lazily(api: Api, timelines: StartTimeline, mode: str) -> None:
    timeline = await timelines(mode)
    alice, bob = await api.new_user(), await api.new_user()
    await follow(api, alice.user_id, bob.user_id)
    before = await post(api, bob.user_id, "before the flush")
    await eventually(lambda: timeline.home_ids(alice.user_id), lambda seen: seen == [before.tweet_id])
    cold_reads = timeline.metrics.value("chirp_timeline_read_seconds_count", {"path": "cold"})

    await timeline.redis.flushall()

    assert await timeline.home_ids(alice.user_id) == [before.tweet_id]
    after = await post(api, bob.user_id, "after the flush")
    expected = [after.tweet_id, before.tweet_id]
    await eventually(lambda: timeline.home_ids(alice.user_id), lambda seen: seen == expected)
    if mode != "pull":
        assert timeline.metrics.value("chirp_timeline_read_seconds_count", {"path": "cold"}) == cold_reads + 1
        await eventually(lambda: timeline.pushed(alice.user_id), lambda pushed: pushed == expected)


class StallingGraph:
    """The real graph client, except that a fan-out's follower stream stalls after its first batch:
    a worker caught in the middle of a fan-out, to be cancelled there."""

    def __init__(self, graph: GrpcFollowGraph) -> None:
        self._graph = graph
        self.stalled = asyncio.Event()

    async def follower_batches(self, user_id: int, batch_size: int) -> AsyncIterator[list[int]]:
        async for batch in self._graph.follower_batches(user_id, batch_size):
            yield batch
            self.stalled.set()
            await asyncio.Event().wait()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._graph, name)


async def test_a_worker_killed_mid_batch_is_taken_over_without_duplicates(
    api: Api, stack: Stack, timelines: StartTimeline
) -> None:
    reader = await timelines("push", fanout_workers=0)
    namespace = reader.settings.timeline_namespace
    star = await api.new_user()
    fans = [await api.new_user() for _ in range(6)]
    for fan in fans:
        await follow(api, fan.user_id, star.user_id)
        await reader.home_ids(fan.user_id)

    # A consumer of the group applies the follows, then reads the tweet's event, pushes the tweet
    # into the timelines of the first batch of two followers and dies there: no XACK.
    settings = reader.settings
    client = open_redis_of(settings, read_timeout=5)
    graph_channel = downstream_channel(stack.address("graph"), 10)
    tweets_channel = downstream_channel(stack.address("tweets"), 10)
    try:
        graph = GrpcFollowGraph(graph_channel)
        tweets = GrpcTweetStore(tweets_channel)
        stalling = StallingGraph(graph)
        store = reader.store
        builder = Builder(store, graph, tweets)
        cache = TweetCache(
            cache_storage_of(client),
            tweets,
            GrpcUserDirectory(graph_channel),
            metrics=Metrics(),
        )
        applier = FanoutApplier(
            store, builder, cache, stalling, threshold=None, batch_size=2, metrics=Metrics()
        )
        doomed = FanoutWorkers(
            client,
            applier,
            stream=settings.events_stream,
            group=namespace,
            consumers=0,
            block_seconds=0.1,
            claim_idle_seconds=60,
        )
        await doomed.ensure_group()

        async def follows_applied() -> bool:
            # The follow events themselves, not the follow sets: a read already rebuilt those from
            # PostgreSQL, and a follow event applied after the tweet would copy it in as well.
            await doomed.read_and_apply("doomed", block_ms=50)
            star_id = str(star.user_id)
            return all([await client.hexists(store.versions_key(fan.user_id), star_id) for fan in fans])

        await eventually(follows_applied, bool)
        tweet = await post(api, star.user_id, "to be fanned out twice")
        dying = asyncio.create_task(_read_until_the_tweet(doomed))
        await asyncio.wait_for(stalling.stalled.wait(), 10)
        dying.cancel()
        await asyncio.gather(dying, return_exceptions=True)
        reached = [fan.user_id for fan in fans if tweet.tweet_id in await reader.pushed(fan.user_id)]
        assert len(reached) == 2
        assert (await client.xpending(settings.events_stream, namespace))["pending"] >= 1

        # Live workers of the same group take the event over once it has been idle long enough.
        await timelines(
            "push", timeline_namespace=namespace, fanout_batch_size=2, fanout_claim_idle_seconds=0.3
        )
        for fan in fans:
            await eventually(lambda fan=fan: reader.pushed(fan.user_id), lambda ids: ids == [tweet.tweet_id])
            assert await reader.home_ids(fan.user_id) == [tweet.tweet_id]
        await eventually(
            lambda: client.xpending(settings.events_stream, namespace), lambda info: info["pending"] == 0
        )
    finally:
        await client.aclose()
        await graph_channel.close()
        await tweets_channel.close()


async def _read_until_the_tweet(workers: FanoutWorkers) -> None:
    while True:
        await workers.read_and_apply("doomed", block_ms=100)


def _api(stack: Stack) -> Any:
    """Stubs for a stack of the test's own, closed with close()."""
    from chirp.graph.v1 import graph_pb2_grpc
    from chirp.timeline.v1 import timeline_pb2_grpc
    from chirp.tweets.v1 import tweets_pb2_grpc
    from chirp.users.v1 import users_pb2_grpc

    channels = [grpc.aio.insecure_channel(stack.address(name)) for name in ("graph", "tweets", "timeline")]

    class OwnApi(Api):
        async def close(self) -> None:
            for channel in channels:
                await channel.close()

    return OwnApi(
        users=users_pb2_grpc.UserServiceStub(channels[0]),
        graph=graph_pb2_grpc.GraphServiceStub(channels[0]),
        tweets=tweets_pb2_grpc.TweetServiceStub(channels[1]),
        timeline=timeline_pb2_grpc.TimelineServiceStub(channels[2]),
    )
