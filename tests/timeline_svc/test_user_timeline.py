"""GetUserTimeline: one author's tweets, readable by anyone."""

from __future__ import annotations

import grpc

from chirp.timeline.v1 import timeline_pb2
from tests.helpers.api import Api, error_reason, rpc_error
from tests.helpers.graph import follow
from tests.helpers.timeline import ids, new_users
from tests.helpers.tweets import post


async def test_user_timeline_pages_through_the_authors_own_tweets(api: Api) -> None:
    alice, bob = await new_users(api, 2)
    await follow(api, alice.user_id, bob.user_id)
    mine = [await post(api, alice.user_id, f"alice {i}") for i in range(3)]
    await post(api, bob.user_id, "not alice")

    first = await api.timeline.GetUserTimeline(
        timeline_pb2.GetUserTimelineRequest(user_id=alice.user_id, limit=2)
    )
    second = await api.timeline.GetUserTimeline(
        timeline_pb2.GetUserTimelineRequest(user_id=alice.user_id, limit=2, cursor=first.next_cursor)
    )

    assert ids(first.tweets) + ids(second.tweets) == ids(reversed(mine))
    assert first.next_cursor
    assert second.next_cursor == ""
    for tweet in [*first.tweets, *second.tweets]:
        assert tweet.author.user_id == alice.user_id
        assert tweet.author.handle == alice.handle


async def test_an_unknown_user_is_not_found(api: Api) -> None:
    error = await rpc_error(api.timeline.GetUserTimeline(timeline_pb2.GetUserTimelineRequest(user_id=2**40)))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert error_reason(error) == "USER_NOT_FOUND"


async def test_a_user_id_that_is_not_an_id_is_invalid(api: Api) -> None:
    error = await rpc_error(api.timeline.GetUserTimeline(timeline_pb2.GetUserTimelineRequest(user_id=0)))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (error.details() or "").startswith("user_id")
