"""GraphService: follow edges, their outbox events, the lists and the internal fan-out reads."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest

from chirp.graph.v1 import graph_pb2
from tests.helpers.api import Api, as_user, rpc_error
from tests.helpers.database import outbox, query
from tests.helpers.graph import assert_error, follow, unfollow

UNKNOWN_ID = 424242


async def relationship(api: Api, user_id: int, other_user_id: int) -> tuple[bool, bool]:
    request = graph_pb2.GetRelationshipRequest(user_id=user_id, other_user_id=other_user_id)
    reply = await api.graph.GetRelationship(request)
    return reply.following, reply.followed_by


# Follow and unfollow.


async def test_follow_adds_the_edge_once_with_one_event(api: Api, database_url: str) -> None:
    alice, bob = await api.new_user(), await api.new_user()

    await follow(api, alice.user_id, bob.user_id)
    await follow(api, alice.user_id, bob.user_id)

    assert await relationship(api, alice.user_id, bob.user_id) == (True, False)
    assert await relationship(api, bob.user_id, alice.user_id) == (False, True)
    edges = await query(database_url, "SELECT follower_id, followee_id FROM graph.follows")
    assert edges == [(alice.user_id, bob.user_id)]
    payload = {"follower_id": alice.user_id, "followee_id": bob.user_id, "followee_follower_count": 1}
    assert await outbox(database_url, "graph") == [("followed", alice.user_id, payload)]


async def test_unfollow_removes_the_edge_once_with_one_event(api: Api, database_url: str) -> None:
    alice, bob = await api.new_user(), await api.new_user()
    await follow(api, alice.user_id, bob.user_id)

    await unfollow(api, alice.user_id, bob.user_id)
    await unfollow(api, alice.user_id, bob.user_id)

    assert await relationship(api, alice.user_id, bob.user_id) == (False, False)
    assert await query(database_url, "SELECT 1 FROM graph.follows") == []
    payload = {"follower_id": alice.user_id, "followee_id": bob.user_id, "followee_follower_count": 0}
    assert [row[0] for row in await outbox(database_url, "graph")] == ["followed", "unfollowed"]
    assert (await outbox(database_url, "graph"))[1] == ("unfollowed", alice.user_id, payload)


async def test_unfollowing_someone_not_followed_is_success_without_an_event(
    api: Api, database_url: str
) -> None:
    alice, bob = await api.new_user(), await api.new_user()
    await unfollow(api, alice.user_id, bob.user_id)
    await unfollow(api, alice.user_id, UNKNOWN_ID)
    assert await outbox(database_url, "graph") == []


async def test_following_again_after_unfollowing_is_a_new_event(api: Api, database_url: str) -> None:
    alice, bob = await api.new_user(), await api.new_user()
    await follow(api, alice.user_id, bob.user_id)
    await unfollow(api, alice.user_id, bob.user_id)
    await follow(api, alice.user_id, bob.user_id)
    assert [row[0] for row in await outbox(database_url, "graph")] == ["followed", "unfollowed", "followed"]
    assert await relationship(api, alice.user_id, bob.user_id) == (True, False)


@pytest.mark.parametrize("rpc", ["Follow", "Unfollow"])
async def test_an_edge_change_needs_a_caller(api: Api, rpc: str, database_url: str) -> None:
    alice, bob = await api.new_user(), await api.new_user()
    request = _edge_request(rpc, alice.user_id, bob.user_id)
    error = await rpc_error(getattr(api.graph, rpc)(request))
    assert_error(error, grpc.StatusCode.UNAUTHENTICATED, "UNAUTHENTICATED")
    assert await outbox(database_url, "graph") == []


@pytest.mark.parametrize("rpc", ["Follow", "Unfollow"])
async def test_only_the_follower_may_change_their_edges(api: Api, rpc: str, database_url: str) -> None:
    alice, bob, mallory = await api.new_user(), await api.new_user(), await api.new_user()
    await follow(api, alice.user_id, bob.user_id)
    request = _edge_request(rpc, alice.user_id, bob.user_id)

    error = await rpc_error(getattr(api.graph, rpc)(request, metadata=as_user(mallory.user_id)))

    assert_error(error, grpc.StatusCode.PERMISSION_DENIED, "NOT_YOURSELF")
    assert "follower_id" in (error.details() or "")
    assert await relationship(api, alice.user_id, bob.user_id) == (True, False)
    assert len(await outbox(database_url, "graph")) == 1


@pytest.mark.parametrize("rpc", ["Follow", "Unfollow"])
@pytest.mark.parametrize(("follower", "followee", "field"), [(0, 5, "follower_id"), (5, -1, "followee_id")])
async def test_an_impossible_id_is_invalid(
    api: Api, rpc: str, follower: int, followee: int, field: str
) -> None:
    request = _edge_request(rpc, follower, followee)
    error = await rpc_error(getattr(api.graph, rpc)(request, metadata=as_user(follower)))
    assert_error(error, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_FIELD", field)


@pytest.mark.parametrize("rpc", ["Follow", "Unfollow"])
async def test_following_yourself_is_invalid(api: Api, rpc: str) -> None:
    alice = await api.new_user()
    request = _edge_request(rpc, alice.user_id, alice.user_id)
    error = await rpc_error(getattr(api.graph, rpc)(request, metadata=as_user(alice.user_id)))
    assert_error(error, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_FIELD", "followee_id")


async def test_following_an_unknown_user_is_not_found(api: Api, database_url: str) -> None:
    alice = await api.new_user()
    error = await rpc_error(follow(api, alice.user_id, UNKNOWN_ID))
    assert_error(error, grpc.StatusCode.NOT_FOUND, "USER_NOT_FOUND")
    assert str(UNKNOWN_ID) in (error.details() or "")
    assert await outbox(database_url, "graph") == []


async def test_an_unknown_follower_is_not_found(api: Api) -> None:
    bob = await api.new_user()
    error = await rpc_error(follow(api, UNKNOWN_ID, bob.user_id))
    assert_error(error, grpc.StatusCode.NOT_FOUND, "USER_NOT_FOUND")
    assert str(UNKNOWN_ID) in (error.details() or "")


def _edge_request(rpc: str, follower_id: int, followee_id: int) -> Any:
    message = graph_pb2.FollowRequest if rpc == "Follow" else graph_pb2.UnfollowRequest
    return message(follower_id=follower_id, followee_id=followee_id)


# GetRelationship.


async def test_relationship_tells_both_directions(api: Api) -> None:
    alice, bob, carol = await api.new_user(), await api.new_user(), await api.new_user()
    await follow(api, alice.user_id, bob.user_id)
    await follow(api, bob.user_id, alice.user_id)
    await follow(api, carol.user_id, alice.user_id)

    assert await relationship(api, alice.user_id, bob.user_id) == (True, True)
    assert await relationship(api, alice.user_id, carol.user_id) == (False, True)
    assert await relationship(api, carol.user_id, bob.user_id) == (False, False)


@pytest.mark.parametrize(("user_id", "other_user_id", "field"), [(0, 1, "user_id"), (1, -2, "other_user_id")])
async def test_relationship_with_an_impossible_id_is_invalid(
    api: Api, user_id: int, other_user_id: int, field: str
) -> None:
    error = await rpc_error(relationship(api, user_id, other_user_id))
    assert_error(error, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_FIELD", field)


async def test_relationship_with_an_unknown_user_is_not_found(api: Api) -> None:
    alice = await api.new_user()
    for pair in ((alice.user_id, UNKNOWN_ID), (UNKNOWN_ID, alice.user_id)):
        error = await rpc_error(relationship(api, *pair))
        assert_error(error, grpc.StatusCode.NOT_FOUND, "USER_NOT_FOUND")
        assert str(UNKNOWN_ID) in (error.details() or "")


# ListFolloweeIds and StreamFollowerIds (internal).


async def test_followee_ids_are_everyone_followed(api: Api) -> None:
    alice, *others = await asyncio.gather(*(api.new_user() for _ in range(4)))
    for other in others:
        await follow(api, alice.user_id, other.user_id)
    await follow(api, others[0].user_id, alice.user_id)

    reply = await api.graph.ListFolloweeIds(graph_pb2.ListFolloweeIdsRequest(user_id=alice.user_id))
    assert sorted(reply.user_ids) == sorted(u.user_id for u in others)

    lonely = await api.new_user()
    reply = await api.graph.ListFolloweeIds(graph_pb2.ListFolloweeIdsRequest(user_id=lonely.user_id))
    assert list(reply.user_ids) == []


async def test_followee_ids_check_the_user(api: Api) -> None:
    invalid = await rpc_error(api.graph.ListFolloweeIds(graph_pb2.ListFolloweeIdsRequest(user_id=0)))
    assert_error(invalid, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_FIELD", "user_id")
    unknown = await rpc_error(api.graph.ListFolloweeIds(graph_pb2.ListFolloweeIdsRequest(user_id=UNKNOWN_ID)))
    assert_error(unknown, grpc.StatusCode.NOT_FOUND, "USER_NOT_FOUND")


async def stream(api: Api, user_id: int, batch_size: int) -> list[list[int]]:
    call = api.graph.StreamFollowerIds(
        graph_pb2.StreamFollowerIdsRequest(user_id=user_id, batch_size=batch_size)
    )
    return [list(reply.follower_ids) async for reply in call]


async def test_follower_ids_stream_in_ascending_batches(api: Api) -> None:
    star, *fans = await asyncio.gather(*(api.new_user() for _ in range(8)))
    for fan in fans:
        await follow(api, fan.user_id, star.user_id)

    batches = await stream(api, star.user_id, 3)

    assert [len(batch) for batch in batches] == [3, 3, 1]
    assert all(batch == sorted(batch) for batch in batches)
    streamed = [user_id for batch in batches for user_id in batch]
    assert sorted(streamed) == sorted(fan.user_id for fan in fans)
    assert await stream(api, star.user_id, 0) == [sorted(fan.user_id for fan in fans)]


async def test_a_user_without_followers_streams_nothing(api: Api) -> None:
    loner = await api.new_user()
    assert await stream(api, loner.user_id, 0) == []


async def test_batches_above_50000_are_clamped(api: Api, database_url: str) -> None:
    star = await api.new_user()
    # Accounts straight through SQL: 50,001 sign-ups through argon2 would take many minutes.
    await query(
        database_url,
        "WITH fans AS ("
        " INSERT INTO graph.users (user_id, handle, display_name, password_hash)"
        " SELECT n, 'fan_' || n, 'Fan', 'no login' FROM generate_series(1, 50001) AS n RETURNING user_id)"
        " INSERT INTO graph.follows (follower_id, followee_id) SELECT user_id, %s FROM fans",
        star.user_id,
    )

    batches = await stream(api, star.user_id, 100_000)

    assert [len(batch) for batch in batches] == [50_000, 1]
    assert sorted(batches[0] + batches[1]) == list(range(1, 50_002))


async def test_stream_follower_ids_checks_its_arguments(api: Api) -> None:
    star = await api.new_user()
    negative = await rpc_error(stream(api, star.user_id, -1))
    assert_error(negative, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_FIELD", "batch_size")
    invalid = await rpc_error(stream(api, 0, 0))
    assert_error(invalid, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_FIELD", "user_id")
    unknown = await rpc_error(stream(api, UNKNOWN_ID, 0))
    assert_error(unknown, grpc.StatusCode.NOT_FOUND, "USER_NOT_FOUND")
