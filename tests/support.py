"""Helpers for tests that talk to the stack over gRPC."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import grpc

from chirp.graph.v1 import graph_pb2_grpc
from chirp.timeline.v1 import timeline_pb2_grpc
from chirp.tweets.v1 import tweets_pb2_grpc
from chirp.users.v1 import users_pb2, users_pb2_grpc
from chirp_core.rpc import USER_ID_HEADER

_handles = itertools.count()


def as_user(user_id: int) -> tuple[tuple[str, str], ...]:
    """Call metadata naming the caller, as the gateway sets it after checking the token."""
    return ((USER_ID_HEADER, str(user_id)),)


@dataclass
class Api:
    users: users_pb2_grpc.UserServiceStub
    graph: graph_pb2_grpc.GraphServiceStub
    tweets: tweets_pb2_grpc.TweetServiceStub
    timeline: timeline_pb2_grpc.TimelineServiceStub

    async def new_user(self, handle: str | None = None, password: str = "correct horse") -> users_pb2.User:
        handle = handle or f"user{next(_handles)}"
        response = await self.users.CreateUser(
            users_pb2.CreateUserRequest(handle=handle, display_name=handle.title(), password=password)
        )
        return response.user


async def rpc_error(call: Any) -> grpc.aio.AioRpcError:
    """Await a call that must fail and return its error."""
    try:
        await call
    except grpc.aio.AioRpcError as error:
        return error
    raise AssertionError("the call succeeded but should have failed")


def error_reason(error: grpc.aio.AioRpcError) -> str:
    """The ErrorInfo reason in a failed call's rich status."""
    from google.rpc import error_details_pb2
    from grpc_status import rpc_status

    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None, "no google.rpc.Status in the trailers"
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return info.reason
    raise AssertionError("no ErrorInfo in the status")
