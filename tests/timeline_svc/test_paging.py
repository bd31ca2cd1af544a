"""Home timeline paging: keyset cursors that neither repeat nor skip, and the AIP-158 limit rules."""

from __future__ import annotations

import asyncio

import grpc

from chirp.timeline.v1 import timeline_pb2
from chirp_core.paging import encode_cursor
from tests.helpers.api import Api, as_user, error_reason, eventually, rpc_error
from tests.helpers.graph import follow
from tests.helpers.timeline import home, home_contents, ids, new_users
from tests.helpers.tweets import post


async def test_pages_neither_repeat_nor_skip_while_new_tweets_arrive(api: Api) -> None:
    alice, bob = await new_users(api, 2)
    await follow(api, alice.user_id, bob.user_id)
    posted = [await post(api, (alice, bob)[i % 2].user_id, f"tweet {i}") for i in range(7)]

    first = await home(api, alice.user_id, limit=3)
    await post(api, bob.user_id, "newer 1")
    await post(api, alice.user_id, "newer 2")
    second = await home(api, alice.user_id, limit=3, cursor=first.next_cursor)
    await post(api, bob.user_id, "newer 3")
    third = await home(api, alice.user_id, limit=3, cursor=second.next_cursor)

    assert [len(first.tweets), len(second.tweets), len(third.tweets)] == [3, 3, 1]
    assert first.next_cursor and second.next_cursor
    assert third.next_cursor == ""
    seen = ids(first.tweets) + ids(second.tweets) + ids(third.tweets)
    assert seen == ids(reversed(posted))
    newest = ["newer 3", "newer 2", "newer 1"]
    await eventually(lambda: home_contents(api, alice.user_id, limit=3), lambda seen: seen == newest)


async def test_a_page_exactly_filling_the_timeline_is_the_last(api: Api) -> None:
    (alice,) = await new_users(api, 1)
    for i in range(2):
        await post(api, alice.user_id, f"tweet {i}")
    page = await home(api, alice.user_id, limit=2)
    assert len(page.tweets) == 2
    assert page.next_cursor == ""


async def test_limit_zero_means_20_and_above_100_means_100(api: Api) -> None:
    (alice,) = await new_users(api, 1)
    await asyncio.gather(*(post(api, alice.user_id, f"tweet {i}") for i in range(101)))

    default = await home(api, alice.user_id, limit=0)
    assert len(default.tweets) == 20
    assert default.next_cursor

    clamped = await home(api, alice.user_id, limit=5000)
    assert len(clamped.tweets) == 100
    assert clamped.next_cursor
    rest = await home(api, alice.user_id, limit=100, cursor=clamped.next_cursor)
    assert len(rest.tweets) == 1
    assert rest.next_cursor == ""


async def test_a_negative_limit_is_invalid(api: Api) -> None:
    (alice,) = await new_users(api, 1)
    request = timeline_pb2.GetHomeTimelineRequest(user_id=alice.user_id, limit=-1)
    error = await rpc_error(api.timeline.GetHomeTimeline(request, metadata=as_user(alice.user_id)))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_reason(error) == "INVALID_FIELD"
    assert (error.details() or "").startswith("limit")


async def test_a_cursor_this_list_did_not_issue_is_invalid(api: Api) -> None:
    (alice,) = await new_users(api, 1)
    for cursor in ("garbage!", encode_cursor("user", 123), encode_cursor("home", 0)):
        request = timeline_pb2.GetHomeTimelineRequest(user_id=alice.user_id, cursor=cursor)
        error = await rpc_error(api.timeline.GetHomeTimeline(request, metadata=as_user(alice.user_id)))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, cursor
        assert (error.details() or "").startswith("cursor"), cursor
