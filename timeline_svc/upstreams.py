"""The ports of timeline_svc.ports over gRPC: the only module that talks to the other services.

An unknown user is None, or UnknownUser for a follower stream; other errors pass through as
grpc.aio.AioRpcError, and the server interceptor hands their code (UNAVAILABLE, DEADLINE_EXCEEDED,
...) on to our caller.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection, Mapping, Sequence

import grpc

from chirp.graph.v1 import graph_pb2, graph_pb2_grpc
from chirp.tweets.v1 import tweets_pb2, tweets_pb2_grpc
from chirp.users.v1 import users_pb2, users_pb2_grpc
from timeline_svc.convert import tweet_from_proto, user_from_proto
from timeline_svc.models import Tweet, User
from timeline_svc.ports import UnknownUser


class GrpcUserDirectory:
    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._stub = users_pb2_grpc.UserServiceStub(channel)

    async def get_user(self, user_id: int) -> User | None:
        try:
            user = await self._stub.GetUser(users_pb2.GetUserRequest(user_id=user_id))
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:
                return None
            raise
        return user_from_proto(user)

    async def get_users(self, user_ids: Collection[int]) -> Mapping[int, User]:
        if not user_ids:
            return {}
        reply = await self._stub.BatchGetUsers(users_pb2.BatchGetUsersRequest(user_ids=sorted(user_ids)))
        return {user.user_id: user_from_proto(user) for user in reply.users}


class GrpcFollowGraph:
    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._stub = graph_pb2_grpc.GraphServiceStub(channel)
        self._users = users_pb2_grpc.UserServiceStub(channel)

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
            raise

    async def followers_among(self, user_id: int, candidate_ids: Collection[int]) -> set[int]:
        request = graph_pb2.FilterFollowersRequest(user_id=user_id, candidate_ids=sorted(candidate_ids))
        reply = await self._stub.FilterFollowers(request)
        return set(reply.follower_ids)

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

    async def tweets_by_ids(self, tweet_ids: Collection[int]) -> Sequence[Tweet]:
        if not tweet_ids:
            return []
        reply = await self._stub.BatchGetTweets(tweets_pb2.BatchGetTweetsRequest(tweet_ids=sorted(tweet_ids)))
        return [tweet_from_proto(tweet) for tweet in reply.tweets]
