"""StreamHomeTimeline: live tweets, and a reconnect with since_id that misses nothing."""

from __future__ import annotations

from typing import Any

import grpc

from chirp.timeline.v1 import timeline_pb2
from tests.helpers.api import Api, as_user, rpc_error
from tests.helpers.graph import follow
from tests.helpers.timeline import new_users, next_tweet
from tests.helpers.tweets import post


async def open_stream(api: Api, user_id: int, since_id: int = 0) -> Any:
    """A stream call that is live: once its headers are in, nothing posted afterwards is missed."""
    request = timeline_pb2.StreamHomeTimelineRequest(user_id=user_id, since_id=since_id)
    call = api.timeline.StreamHomeTimeline(request, metadata=as_user(user_id))
    await call.initial_metadata()
    return call


async def test_the_stream_yields_tweets_posted_after_it_opened(api: Api) -> None:
    alice, bob = await new_users(api, 2)
    await follow(api, alice.user_id, bob.user_id)
    await post(api, bob.user_id, "before the stream")
    call = await open_stream(api, alice.user_id)
    try:
        after = await post(api, bob.user_id, "after")
        mine = await post(api, alice.user_id, "mine")

        # Two workers may announce the two tweets in either order.
        arrived = {t.tweet_id: t for t in [await next_tweet(call), await next_tweet(call)]}

        assert sorted(arrived) == [after.tweet_id, mine.tweet_id]
        assert arrived[after.tweet_id].author.handle == bob.handle
        assert arrived[mine.tweet_id].author.handle == alice.handle
    finally:
        call.cancel()
    assert call.cancelled()


async def test_reconnecting_with_since_id_yields_the_missed_tweets_then_new_ones(api: Api) -> None:
    alice, bob = await new_users(api, 2)
    await follow(api, alice.user_id, bob.user_id)
    call = await open_stream(api, alice.user_id)
    try:
        seen = await post(api, bob.user_id, "seen live")
        assert (await next_tweet(call)).tweet_id == seen.tweet_id
    finally:
        call.cancel()

    missed = [await post(api, bob.user_id, "missed 1"), await post(api, alice.user_id, "missed 2")]
    call = await open_stream(api, alice.user_id, since_id=seen.tweet_id)
    try:
        replayed = [await next_tweet(call), await next_tweet(call)]
        assert [t.tweet_id for t in replayed] == [t.tweet_id for t in missed]
        assert all(t.author.user_id == t.user_id for t in replayed)

        live = await post(api, bob.user_id, "live again")
        assert (await next_tweet(call)).tweet_id == live.tweet_id
    finally:
        call.cancel()


async def test_someone_followed_during_the_stream_shows_up(api: Api) -> None:
    alice, carol = await new_users(api, 2)
    call = await open_stream(api, alice.user_id)
    try:
        await follow(api, alice.user_id, carol.user_id)
        tweet = await post(api, carol.user_id, "hello new follower")
        assert (await next_tweet(call)).tweet_id == tweet.tweet_id
    finally:
        call.cancel()


async def test_the_stream_checks_the_caller_and_since_id(api: Api) -> None:
    alice, bob = await new_users(api, 2)
    cases = [
        (timeline_pb2.StreamHomeTimelineRequest(user_id=alice.user_id), as_user(bob.user_id)),
        (timeline_pb2.StreamHomeTimelineRequest(user_id=alice.user_id), ()),
        (timeline_pb2.StreamHomeTimelineRequest(user_id=alice.user_id, since_id=-5), as_user(alice.user_id)),
    ]
    codes = []
    for request, metadata in cases:
        call = api.timeline.StreamHomeTimeline(request, metadata=metadata)
        codes.append((await rpc_error(call.read())).code())
    assert codes == [
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.INVALID_ARGUMENT,
    ]
