"""Assertions and verbs shared by the graph service tests."""

from __future__ import annotations

import grpc

from chirp.graph.v1 import graph_pb2
from tests.helpers.api import Api, as_user, error_reason


def assert_error(
    error: grpc.aio.AioRpcError, code: grpc.StatusCode, reason: str, field: str | None = None
) -> None:
    assert error.code() == code, error.details()
    assert error_reason(error) == reason
    if field is not None:
        assert (error.details() or "").startswith(f"{field}:"), error.details()


async def follow(api: Api, follower_id: int, followee_id: int) -> None:
    request = graph_pb2.FollowRequest(follower_id=follower_id, followee_id=followee_id)
    await api.graph.Follow(request, metadata=as_user(follower_id))


async def unfollow(api: Api, follower_id: int, followee_id: int) -> None:
    request = graph_pb2.UnfollowRequest(follower_id=follower_id, followee_id=followee_id)
    await api.graph.Unfollow(request, metadata=as_user(follower_id))
