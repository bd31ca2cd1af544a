"""The live home timeline through the real gateway's server-sent events."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from chirp_client import AsyncClient, ReconnectPolicy, Tweet, Unauthenticated

from tests.clients.conftest import Account, NewUser
from tests.helpers.api import eventually
from tests.helpers.tcp_proxy import CountingProxy


async def collect(stream: AsyncIterator[Tweet], into: asyncio.Queue[Tweet]) -> None:
    async for tweet in stream:
        await into.put(tweet)


async def in_home(reader: Account, tweet: Tweet) -> None:
    """Wait until fan-out has put `tweet` in the reader's home timeline."""

    async def ids() -> set[int]:
        return {t.tweet_id for t in (await reader.home_timeline_page(limit=100)).items}

    await eventually(ids, lambda found: tweet.tweet_id in found)


async def test_a_followees_new_tweet_arrives_on_the_stream(new_user: NewUser) -> None:
    ada, bob = await new_user(), await new_user()
    await ada.follow(bob.id)
    arrived: asyncio.Queue[Tweet] = asyncio.Queue()
    reader = asyncio.create_task(collect(ada.stream_home_timeline(), arrived))
    posted: dict[int, Tweet] = {}
    try:
        # Without since_id the stream carries only tweets posted after it opened, and nothing
        # says when it has opened: bob posts (within his 5 a minute) until one comes through.
        for attempt in range(5):
            tweet = await bob.post_tweet(f"live {attempt}")
            posted[tweet.tweet_id] = tweet
            with contextlib.suppress(TimeoutError):
                first = await asyncio.wait_for(arrived.get(), 2.0)
                break
        else:
            raise AssertionError("no tweet came through the stream")
    finally:
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)

    assert first.tweet_id in posted
    assert first.content == posted[first.tweet_id].content
    assert first.user_id == bob.id
    assert first.author is not None and first.author.handle == bob.user.handle


async def test_since_id_replays_what_came_after_it_oldest_first(new_user: NewUser) -> None:
    ada, bob = await new_user(), await new_user()
    await ada.follow(bob.id)
    seen = await bob.post_tweet("seen")
    missed = [await bob.post_tweet("missed 1"), await bob.post_tweet("missed 2")]
    await in_home(ada, missed[-1])

    stream = ada.stream_home_timeline(since_id=seen.tweet_id)
    got: list[Tweet] = []
    async with asyncio.timeout(10):
        async for tweet in stream:
            got.append(tweet)
            if len(got) == 2:
                break

    assert [t.tweet_id for t in got] == [t.tweet_id for t in missed]


async def test_the_stream_reconnects_after_a_drop_and_misses_nothing(
    new_user: NewUser, base_url: str
) -> None:
    ada, bob = await new_user(), await new_user()
    await ada.follow(bob.id)
    start = await bob.post_tweet("before the stream")
    await in_home(ada, start)
    proxy = CountingProxy.to(base_url)
    client = AsyncClient(await proxy.start(), ada.token, user_id=ada.id)
    policy = ReconnectPolicy(initial_delay=0.05, max_delay=0.2, max_failures=200)
    arrived: asyncio.Queue[Tweet] = asyncio.Queue()
    reader = asyncio.create_task(
        collect(client.stream_home_timeline(start.tweet_id, reconnect=policy), arrived)
    )
    try:
        before = await bob.post_tweet("before the drop")
        async with asyncio.timeout(10):
            assert (await arrived.get()).tweet_id == before.tweet_id

        proxy.accepting = False
        proxy.drop()
        during = await bob.post_tweet("while the follower is offline")
        await in_home(ada, during)
        await asyncio.wait_for(proxy.refused.wait(), 10)  # the client tried to come back
        refused = proxy.connections
        proxy.accepting = True

        async with asyncio.timeout(10):
            assert (await arrived.get()).tweet_id == during.tweet_id
        after = await bob.post_tweet("after the reconnect")
        async with asyncio.timeout(10):
            assert (await arrived.get()).tweet_id == after.tweet_id  # "before the drop" not repeated
    finally:
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
        await client.close()
        await proxy.close()

    assert proxy.connections > refused  # the client came back once it could


async def test_the_stream_without_a_token_is_unauthenticated(new_user: NewUser, base_url: str) -> None:
    ada = await new_user()

    async with AsyncClient(base_url, user_id=ada.id) as anonymous:
        with pytest.raises(Unauthenticated):
            async with asyncio.timeout(10):
                async for _ in anonymous.stream_home_timeline():
                    pass
