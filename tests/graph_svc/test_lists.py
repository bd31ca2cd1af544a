"""ListFollowers and ListFollowing: newest edge first, keyset pages, full profiles."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest

from chirp.graph.v1 import graph_pb2
from chirp.users.v1 import users_pb2
from tests.helpers.api import Api, rpc_error
from tests.helpers.database import query
from tests.helpers.graph import assert_error, follow, unfollow

UNKNOWN_ID = 424242
LISTS = ["ListFollowers", "ListFollowing"]
MAX_PAGES = 20


def _request(rpc: str, user_id: int, limit: int = 0, cursor: str = "") -> Any:
    message = graph_pb2.ListFollowersRequest if rpc == "ListFollowers" else graph_pb2.ListFollowingRequest
    return message(user_id=user_id, limit=limit, cursor=cursor)


async def list_page(api: Api, rpc: str, user_id: int, limit: int = 0, cursor: str = "") -> Any:
    return await getattr(api.graph, rpc)(_request(rpc, user_id, limit, cursor))


async def list_all(api: Api, rpc: str, user_id: int, limit: int) -> tuple[list[users_pb2.User], list[int]]:
    """Every user of a list, walking its pages; also the size of each page."""
    users: list[users_pb2.User] = []
    sizes: list[int] = []
    cursor = ""
    for _ in range(MAX_PAGES):
        page = await list_page(api, rpc, user_id, limit, cursor)
        users.extend(page.users)
        sizes.append(len(page.users))
        if not page.next_cursor:
            return users, sizes
        cursor = page.next_cursor
    raise AssertionError(f"no last page after {MAX_PAGES} pages: {sizes}")


def with_counts(user: users_pb2.User, *, followers: int, following: int) -> users_pb2.User:
    counted = users_pb2.User()
    counted.CopyFrom(user)
    counted.follower_count, counted.following_count = followers, following
    return counted


async def star_and_fans(api: Api, count: int) -> tuple[users_pb2.User, list[users_pb2.User]]:
    """A star followed by `count` fans and following them back, edges made in the fans' order."""
    star, *fans = await asyncio.gather(*(api.new_user() for _ in range(count + 1)))
    for fan in fans:
        await follow(api, fan.user_id, star.user_id)
        await follow(api, star.user_id, fan.user_id)
    return star, fans


@pytest.mark.parametrize("rpc", LISTS)
async def test_pages_run_newest_edge_first_without_gaps_or_duplicates(api: Api, rpc: str) -> None:
    star, fans = await star_and_fans(api, count=9)

    users, sizes = await list_all(api, rpc, star.user_id, limit=4)

    assert sizes == [4, 4, 1]
    # Each fan follows the star and is followed back: one follower and one followee each.
    expected = [with_counts(fan, followers=1, following=1) for fan in reversed(fans)]
    assert users == expected
    default_page = await list_page(api, rpc, star.user_id, limit=0)
    assert (list(default_page.users), default_page.next_cursor) == (users, "")


async def test_edges_made_at_the_same_instant_page_by_user_id(api: Api, database_url: str) -> None:
    star, fans = await star_and_fans(api, count=7)
    await query(database_url, "UPDATE graph.follows SET created_at = '2025-01-01T00:00:00Z'")

    users, sizes = await list_all(api, "ListFollowers", star.user_id, limit=3)

    assert sizes == [3, 3, 1]
    assert [u.user_id for u in users] == sorted((fan.user_id for fan in fans), reverse=True)


async def test_changes_between_pages_neither_repeat_nor_skip_the_rest(api: Api) -> None:
    star, fans = await star_and_fans(api, count=6)
    first = await list_page(api, "ListFollowers", star.user_id, limit=3)
    late_fan = await api.new_user()
    await follow(api, late_fan.user_id, star.user_id)
    await unfollow(api, fans[0].user_id, star.user_id)

    rest = await list_page(api, "ListFollowers", star.user_id, limit=3, cursor=first.next_cursor)

    assert [u.user_id for u in first.users] == [f.user_id for f in reversed(fans[3:])]
    assert [u.user_id for u in rest.users] == [f.user_id for f in reversed(fans[1:3])]
    assert rest.next_cursor == ""


async def test_listed_profiles_are_full(api: Api) -> None:
    alice, bob = await api.new_user(), await api.new_user()
    await follow(api, bob.user_id, alice.user_id)

    followers = await list_page(api, "ListFollowers", alice.user_id)
    following = await list_page(api, "ListFollowing", bob.user_id)

    fetched_bob = await api.users.GetUser(users_pb2.GetUserRequest(user_id=bob.user_id))
    assert list(followers.users) == [fetched_bob]
    assert fetched_bob.following_count == 1
    assert list(following.users) == [with_counts(alice, followers=1, following=0)]
    assert followers.users[0].handle and followers.users[0].display_name
    assert followers.users[0].created_at.seconds > 0


@pytest.mark.parametrize("rpc", LISTS)
async def test_a_user_with_empty_lists_gets_an_empty_last_page(api: Api, rpc: str) -> None:
    loner = await api.new_user()
    page = await list_page(api, rpc, loner.user_id)
    assert (list(page.users), page.next_cursor) == ([], "")


@pytest.mark.parametrize("rpc", LISTS)
async def test_lists_check_their_arguments(api: Api, rpc: str) -> None:
    alice = await api.new_user()

    invalid_user = await rpc_error(list_page(api, rpc, 0))
    assert_error(invalid_user, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_FIELD", "user_id")
    unknown_user = await rpc_error(list_page(api, rpc, UNKNOWN_ID))
    assert_error(unknown_user, grpc.StatusCode.NOT_FOUND, "USER_NOT_FOUND")
    negative_limit = await rpc_error(list_page(api, rpc, alice.user_id, limit=-1))
    assert_error(negative_limit, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_FIELD", "limit")
    garbage = await rpc_error(list_page(api, rpc, alice.user_id, cursor="not a cursor!"))
    assert_error(garbage, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_FIELD", "cursor")


async def test_a_cursor_only_continues_the_list_it_came_from(api: Api) -> None:
    star, _ = await star_and_fans(api, count=3)
    other, _ = await star_and_fans(api, count=3)
    cursor = (await list_page(api, "ListFollowers", star.user_id, limit=1)).next_cursor
    assert cursor

    other_list = await rpc_error(list_page(api, "ListFollowing", star.user_id, cursor=cursor))
    assert_error(other_list, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_FIELD", "cursor")
    other_user = await rpc_error(list_page(api, "ListFollowers", other.user_id, cursor=cursor))
    assert_error(other_user, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_FIELD", "cursor")
