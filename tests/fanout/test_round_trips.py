"""A warm hybrid read is one Redis round trip: the reader's timeline, the recent tweets of the
celebrities they follow and the cached tweets come back from one script call. Counted on the wire,
by a TCP relay between the timeline server and Redis."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import pytest_asyncio

from chirp_core.stack import Stack
from tests.fanout.conftest import StartTimeline
from tests.fanout.support import CELEBRITY_THRESHOLD, eventually, follow, post
from tests.support import Api


class RoundTripCounter:
    """Relays TCP to Redis and counts round trips: each request that follows a reply (or opens a
    connection) starts one; a pipeline or a script call written in several chunks stays one."""

    def __init__(self, host: str, port: int) -> None:
        self._target = (host, port)
        self.round_trips = 0
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _relay(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        server_reader, server_writer = await asyncio.open_connection(*self._target)
        replied = [True]

        async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, requests: bool) -> None:
            try:
                while data := await reader.read(65536):
                    if requests and replied[0]:
                        self.round_trips += 1
                    replied[0] = not requests
                    writer.write(data)
                    await writer.drain()
            finally:
                writer.close()

        tasks = {
            asyncio.create_task(pump(client_reader, server_writer, True)),
            asyncio.create_task(pump(server_reader, client_writer, False)),
        }
        self._tasks |= tasks
        with contextlib.suppress(Exception):
            await asyncio.gather(*tasks)


@pytest_asyncio.fixture(loop_scope="session")
async def counter(stack: Stack) -> AsyncIterator[RoundTripCounter]:
    target = urlsplit(stack.redis_url)
    relay = RoundTripCounter(target.hostname or "127.0.0.1", target.port or 6379)
    await relay.start()
    yield relay
    await relay.stop()


async def test_a_warm_read_with_celebrities_is_one_redis_round_trip(
    api: Api, stack: Stack, timelines: StartTimeline, counter: RoundTripCounter
) -> None:
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
