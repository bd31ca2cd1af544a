"""Follower and following counts kept with each edge change, and FilterFollowers (reply fan-out)."""

from __future__ import annotations

import asyncio

import grpc

from chirp.graph.v1 import graph_pb2
from chirp.users.v1 import users_pb2
from tests.helpers.api import Api, rpc_error
from tests.helpers.graph import assert_error, follow, unfollow


async def counts(api: Api, user_id: int) -> tuple[int, int]:
    user = await api.users.GetUser(users_pb2.GetUserRequest(user_id=user_id))
    return user.follower_count, user.following_count


async def test_counts_follow_every_edge_change_and_ignore_repeats(api: Api) -> None:
    star, alice, bob = await api.new_user(), await api.new_user(), await api.new_user()
    await follow(api, alice.user_id, star.user_id)
    await follow(api, bob.user_id, star.user_id)
    await follow(api, bob.user_id, star.user_id)  # no new edge, no new count
    await follow(api, star.user_id, alice.user_id)
    assert await counts(api, star.user_id) == (2, 1)
    assert await counts(api, bob.user_id) == (0, 1)

    await unfollow(api, bob.user_id, star.user_id)
    await unfollow(api, bob.user_id, star.user_id)

    assert await counts(api, star.user_id) == (1, 1)
    assert await counts(api, bob.user_id) == (0, 0)
    assert await counts(api, alice.user_id) == (1, 1)


async def test_mutual_follows_at_once_neither_deadlock_nor_miscount(api: Api) -> None:
    users = [await api.new_user() for _ in range(6)]
    pairs = [(a.user_id, b.user_id) for a in users for b in users if a.user_id != b.user_id]

    await asyncio.wait_for(asyncio.gather(*(follow(api, a, b) for a, b in pairs)), 30)

    for user in users:
        assert await counts(api, user.user_id) == (5, 5)


async def test_filter_followers_keeps_the_candidates_following_the_user(api: Api) -> None:
    star, fan, other, stranger = [await api.new_user() for _ in range(4)]
    await follow(api, fan.user_id, star.user_id)
    await follow(api, other.user_id, star.user_id)
    request = graph_pb2.FilterFollowersRequest(
        user_id=star.user_id, candidate_ids=[stranger.user_id, other.user_id, fan.user_id, fan.user_id]
    )

    reply = await api.graph.FilterFollowers(request)

    assert list(reply.follower_ids) == sorted([fan.user_id, other.user_id])


async def test_filter_followers_checks_its_arguments(api: Api) -> None:
    error = await rpc_error(api.graph.FilterFollowers(graph_pb2.FilterFollowersRequest(user_id=0)))
    assert_error(error, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_FIELD", "user_id")
    too_many = graph_pb2.FilterFollowersRequest(user_id=1, candidate_ids=range(1, 50_002))
    error = await rpc_error(api.graph.FilterFollowers(too_many))
    assert_error(error, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_FIELD", "candidate_ids")
