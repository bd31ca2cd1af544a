"""A warm hybrid read is one Redis round trip: the reader's timeline, the recent tweets of the
celebrities they follow and the cached tweets come back from one script call. Counted on the wire,
by a TCP proxy between the timeline server and Redis. (On a Redis Cluster the merge takes a round
trip per node instead: tests/timeline_svc/test_redis_cluster.py.)"""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import pytest
import pytest_asyncio

from chirp_app.stack import Stack
from tests.helpers.api import Api, eventually
from tests.helpers.fanout import CELEBRITY_THRESHOLD
from tests.helpers.graph import follow
from tests.helpers.tcp_proxy import CountingProxy
from tests.helpers.tweets import post
from tests.timeline_svc.fanout.conftest import StartTimeline


@pytest_asyncio.fixture(loop_scope="session")
async def counter(stack: Stack) -> AsyncIterator[CountingProxy]:
    target = urlsplit(stack.redis_url)
    proxy = CountingProxy(target.hostname or "127.0.0.1", target.port or 6379)
    await proxy.start()
    yield proxy
    await proxy.close()


async def test_a_warm_read_with_celebrities_is_one_redis_round_trip(
    api: Api, stack: Stack, timelines: StartTimeline, counter: CountingProxy
) -> None:
    if stack.settings.redis_cluster:
        pytest.skip("one Redis: a cluster's nodes announce their own addresses, past any proxy")
    workers = await timelines("hybrid")
    target = urlsplit(stack.redis_url)
    proxied = target._replace(netloc=f"127.0.0.1:{counter.port}").geturl()
    reader = await timelines(
        "hybrid", timeline_namespace=workers.settings.timeline_namespace, redis_url=proxied, fanout_workers=0
    )
    alice, bob = await api.new_user(), await api.new_user()
    stars = [await api.new_user() for _ in range(2)]
    for star in stars:
        for _ in range(CELEBRITY_THRESHOLD):
            await follow(api, (await api.new_user()).user_id, star.user_id)
        await follow(api, alice.user_id, star.user_id)
    await follow(api, alice.user_id, bob.user_id)
    key = workers.store.celebrities_key
    for star in stars:
        await eventually(lambda star=star: workers.redis.sismember(key, str(star.user_id)), bool)
    posted = [await post(api, author.user_id, "hello") for author in (bob, *stars, bob)]
    expected = [t.tweet_id for t in reversed(posted)]
    # The first read rebuilds the timeline, loads the stars' recent sets and fills the tweet cache.
    await eventually(lambda: reader.home_ids(alice.user_id), lambda ids: ids == expected)
    hits = reader.metrics.value("chirp_tweet_cache_lookups_total", {"result": "hit"})
    misses = reader.metrics.value("chirp_tweet_cache_lookups_total", {"result": "miss"})

    before = counter.round_trips
    assert before > 2  # the rebuild took several: the relay does count them
    assert await reader.home_ids(alice.user_id) == expected
    assert counter.round_trips - before == 1
    assert reader.metrics.value("chirp_tweet_cache_lookups_total", {"result": "hit"}) == hits + len(expected)
    assert reader.metrics.value("chirp_tweet_cache_lookups_total", {"result": "miss"}) == misses
