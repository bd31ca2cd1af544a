"""Small verbs for the timeline tests, over the stack's public RPCs."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

import grpc

from chirp.timeline.v1 import timeline_pb2
from chirp.tweets.v1 import tweets_pb2
from chirp.users.v1 import users_pb2
from tests.helpers.api import Api, as_user

# How long a test waits for a streamed tweet: many polls of the tests' 0.1 s interval.
STREAM_WAIT_SECONDS = 5.0


async def home_contents(api: Api, user_id: int, limit: int = 0) -> list[str]:
    return [t.content for t in (await home(api, user_id, limit=limit)).tweets]


async def new_users(api: Api, count: int) -> list[users_pb2.User]:
    return [await api.new_user() for _ in range(count)]


async def home(
    api: Api, user_id: int, limit: int = 0, cursor: str = ""
) -> timeline_pb2.GetHomeTimelineResponse:
    request = timeline_pb2.GetHomeTimelineRequest(user_id=user_id, limit=limit, cursor=cursor)
    return await api.timeline.GetHomeTimeline(request, metadata=as_user(user_id))


def ids(tweets: Iterable[tweets_pb2.Tweet]) -> list[int]:
    return [tweet.tweet_id for tweet in tweets]


async def next_tweet(call: Any) -> tweets_pb2.Tweet:
    """The next tweet of a StreamHomeTimeline call; fails rather than waiting forever."""
    message = await asyncio.wait_for(call.read(), STREAM_WAIT_SECONDS)
    assert message is not grpc.aio.EOF, "the stream ended"
    assert isinstance(message, timeline_pb2.StreamHomeTimelineResponse)
    return message.tweet
