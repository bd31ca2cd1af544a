"""The ports of timeline_svc.ports over gRPC: the only module that talks to the other services.

Every gRPC error becomes one of the ports' errors here: an unknown user is None, or UnknownUser for
a follower stream; any other error an UpstreamError (an UpstreamUnavailable when the call got no
answer) with the same code, message and ErrorInfo, which the server interceptor hands on to our
caller as it came.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable, Collection, Coroutine, Mapping, Sequence
from typing import Any, ParamSpec, TypeVar

import grpc
from google.rpc import error_details_pb2, status_pb2

from chirp.graph.v1 import graph_pb2, graph_pb2_grpc
from chirp.tweets.v1 import tweets_pb2, tweets_pb2_grpc
from chirp.users.v1 import users_pb2, users_pb2_grpc
from timeline_svc.convert import tweet_from_proto, user_from_proto
from timeline_svc.models import Tweet, User
from timeline_svc.ports import UnknownUser, UpstreamError, upstream_error

_STATUS_DETAILS_KEY = "grpc-status-details-bin"
P = ParamSpec("P")
R = TypeVar("R")


def translated(error: grpc.aio.AioRpcError) -> UpstreamError:
    """The port's error for a failed call, with the ErrorInfo the other service sent, if any."""
    reason, metadata = "", {}
    trailing: Any = error.trailing_metadata() or ()
    for key, value in trailing:
        if key == _STATUS_DETAILS_KEY and isinstance(value, bytes):
            for detail in status_pb2.Status.FromString(value).details:
                info = error_details_pb2.ErrorInfo()
                if detail.Unpack(info):
                    reason, metadata = info.reason, dict(info.metadata)
                    break
    return upstream_error(error.code().name, error.details() or "", reason=reason, metadata=metadata)


def _translating(call: Callable[P, Coroutine[Any, Any, R]]) -> Callable[P, Coroutine[Any, Any, R]]:
    @functools.wraps(call)
    async def translating(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await call(*args, **kwargs)
        except grpc.aio.AioRpcError as error:
            raise translated(error) from error

    return translating


class GrpcUserDirectory:
    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._stub = users_pb2_grpc.UserServiceStub(channel)

    @_translating
    async def get_user(self, user_id: int) -> User | None:
        try:
            user = await self._stub.GetUser(users_pb2.GetUserRequest(user_id=user_id))
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:
                return None
            raise
        return user_from_proto(user)

    @_translating
    async def get_users(self, user_ids: Collection[int]) -> Mapping[int, User]:
        if not user_ids:
            return {}
        reply = await self._stub.BatchGetUsers(users_pb2.BatchGetUsersRequest(user_ids=sorted(user_ids)))
        return {user.user_id: user_from_proto(user) for user in reply.users}


class GrpcFollowGraph:
    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._stub = graph_pb2_grpc.GraphServiceStub(channel)
        self._users = users_pb2_grpc.UserServiceStub(channel)

    @_translating
    async def followee_ids(self, user_id: int) -> Collection[int]:
        reply = await self._stub.ListFolloweeIds(graph_pb2.ListFolloweeIdsRequest(user_id=user_id))
        return list(reply.user_ids)

    async def follower_batches(self, user_id: int, batch_size: int) -> AsyncIterator[list[int]]:
        request = graph_pb2.StreamFollowerIdsRequest(user_id=user_id, batch_size=batch_size)
        try:
            async for reply in self._stub.StreamFollowerIds(request):
                yield list(reply.follower_ids)
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:
                raise UnknownUser(user_id) from error
            raise translated(error) from error

    @_translating
    async def followers_among(self, user_id: int, candidate_ids: Collection[int]) -> set[int]:
        request = graph_pb2.FilterFollowersRequest(user_id=user_id, candidate_ids=sorted(candidate_ids))
        reply = await self._stub.FilterFollowers(request)
        return set(reply.follower_ids)

    @_translating
    async def follower_count(self, user_id: int) -> int | None:
        try:
            user = await self._users.GetUser(users_pb2.GetUserRequest(user_id=user_id))
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:
                return None
            raise
        return user.follower_count


class GrpcTweetStore:
    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._stub = tweets_pb2_grpc.TweetServiceStub(channel)

    @_translating
    async def tweets_by_authors(
        self, author_ids: Collection[int], *, max_id: int, min_id: int, limit: int, home_user_id: int = 0
    ) -> Sequence[Tweet]:
        request = tweets_pb2.ListTweetsByAuthorsRequest(
            author_ids=sorted(author_ids),
            max_id=max_id,
            min_id=min_id,
            limit=limit,
            home_user_id=home_user_id,
        )
        reply = await self._stub.ListTweetsByAuthors(request)
        return [tweet_from_proto(tweet) for tweet in reply.tweets]

    @_translating
    async def tweets_by_ids(self, tweet_ids: Collection[int]) -> Sequence[Tweet]:
        if not tweet_ids:
            return []
        reply = await self._stub.BatchGetTweets(tweets_pb2.BatchGetTweetsRequest(tweet_ids=sorted(tweet_ids)))
        return [tweet_from_proto(tweet) for tweet in reply.tweets]
