"""The ports of timeline_svc.ports over gRPC: the only module that talks to the other services.

Errors other than an unknown user pass through as grpc.aio.AioRpcError; the server
interceptor hands their code (UNAVAILABLE, DEADLINE_EXCEEDED, ...) on to our caller.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

import grpc

from chirp.graph.v1 import graph_pb2, graph_pb2_grpc
from chirp.tweets.v1 import tweets_pb2, tweets_pb2_grpc
from chirp.users.v1 import users_pb2, users_pb2_grpc
from timeline_svc.convert import tweet_from_proto, user_from_proto
from timeline_svc.models import Tweet, User


class GrpcUserDirectory:
    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._stub = users_pb2_grpc.UserServiceStub(channel)

    async def get_user(self, user_id: int) -> User | None:
        try:
            reply = await self._stub.GetUser(users_pb2.GetUserRequest(user_id=user_id))
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:
                return None
            raise
        return user_from_proto(reply.user)

    async def get_users(self, user_ids: Collection[int]) -> Mapping[int, User]:
        if not user_ids:
            return {}
        reply = await self._stub.BatchGetUsers(users_pb2.BatchGetUsersRequest(user_ids=sorted(user_ids)))
        return {user.user_id: user_from_proto(user) for user in reply.users}


class GrpcFollowGraph:
    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._stub = graph_pb2_grpc.GraphServiceStub(channel)

    async def followee_ids(self, user_id: int) -> Collection[int]:
        reply = await self._stub.ListFolloweeIds(graph_pb2.ListFolloweeIdsRequest(user_id=user_id))
        return list(reply.user_ids)


class GrpcTweetStore:
    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._stub = tweets_pb2_grpc.TweetServiceStub(channel)

    async def tweets_by_authors(
        self, author_ids: Collection[int], *, max_id: int, min_id: int, limit: int
    ) -> Sequence[Tweet]:
        request = tweets_pb2.ListTweetsByAuthorsRequest(
            author_ids=sorted(author_ids), max_id=max_id, min_id=min_id, limit=limit
        )
        reply = await self._stub.ListTweetsByAuthors(request)
        return [tweet_from_proto(tweet) for tweet in reply.tweets]
