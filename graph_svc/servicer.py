"""UserService and GraphService over gRPC: proto in, one call to the domain, proto out."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from chirp.graph.v1 import graph_pb2, graph_pb2_grpc
from chirp.users.v1 import users_pb2, users_pb2_grpc
from chirp_core.rpc import caller_id, caller_session_id
from graph_svc.models import IssuedSession, User
from graph_svc.service import AccountService, GraphService, UserPage

Context = grpc.aio.ServicerContext[Any, Any]


class UserServicer(users_pb2_grpc.UserServiceServicer):
    def __init__(self, accounts: AccountService) -> None:
        self._accounts = accounts

    async def CreateUser(self, request: users_pb2.CreateUserRequest, context: Context) -> users_pb2.User:
        user = await self._accounts.create_user(request.handle, request.display_name, request.password)
        return user_proto(user)

    async def GetUser(self, request: users_pb2.GetUserRequest, context: Context) -> users_pb2.User:
        return user_proto(await self._accounts.get_user(request.user_id))

    async def CreateSession(
        self, request: users_pb2.CreateSessionRequest, context: Context
    ) -> users_pb2.CreateSessionResponse:
        session = await self._accounts.create_session(request.handle, request.password)
        return users_pb2.CreateSessionResponse(**_session_fields(session))

    async def RefreshSession(
        self, request: users_pb2.RefreshSessionRequest, context: Context
    ) -> users_pb2.RefreshSessionResponse:
        session = await self._accounts.refresh_session(request.refresh_token)
        return users_pb2.RefreshSessionResponse(**_session_fields(session))

    async def DeleteSession(
        self, request: users_pb2.DeleteSessionRequest, context: Context
    ) -> users_pb2.DeleteSessionResponse:
        await self._accounts.delete_session(caller_id(context), caller_session_id(context))
        return users_pb2.DeleteSessionResponse()

    async def BatchGetUsers(
        self, request: users_pb2.BatchGetUsersRequest, context: Context
    ) -> users_pb2.BatchGetUsersResponse:
        users = await self._accounts.batch_get_users(list(request.user_ids))
        return users_pb2.BatchGetUsersResponse(users=[user_proto(u) for u in users])


class GraphServicer(graph_pb2_grpc.GraphServiceServicer):
    def __init__(self, graph: GraphService) -> None:
        self._graph = graph

    async def Follow(self, request: graph_pb2.FollowRequest, context: Context) -> graph_pb2.FollowResponse:
        await self._graph.follow(caller_id(context), request.follower_id, request.followee_id)
        return graph_pb2.FollowResponse()

    async def Unfollow(
        self, request: graph_pb2.UnfollowRequest, context: Context
    ) -> graph_pb2.UnfollowResponse:
        await self._graph.unfollow(caller_id(context), request.follower_id, request.followee_id)
        return graph_pb2.UnfollowResponse()

    async def ListFollowers(
        self, request: graph_pb2.ListFollowersRequest, context: Context
    ) -> graph_pb2.ListFollowersResponse:
        page = await self._graph.list_followers(request.user_id, request.limit, request.cursor)
        return graph_pb2.ListFollowersResponse(users=_users(page), next_cursor=page.next_cursor)

    async def ListFollowing(
        self, request: graph_pb2.ListFollowingRequest, context: Context
    ) -> graph_pb2.ListFollowingResponse:
        page = await self._graph.list_following(request.user_id, request.limit, request.cursor)
        return graph_pb2.ListFollowingResponse(users=_users(page), next_cursor=page.next_cursor)

    async def GetRelationship(
        self, request: graph_pb2.GetRelationshipRequest, context: Context
    ) -> graph_pb2.GetRelationshipResponse:
        relationship = await self._graph.relationship(request.user_id, request.other_user_id)
        return graph_pb2.GetRelationshipResponse(
            following=relationship.following, followed_by=relationship.followed_by
        )

    async def ListFolloweeIds(
        self, request: graph_pb2.ListFolloweeIdsRequest, context: Context
    ) -> graph_pb2.ListFolloweeIdsResponse:
        return graph_pb2.ListFolloweeIdsResponse(user_ids=await self._graph.followee_ids(request.user_id))

    async def StreamFollowerIds(
        self, request: graph_pb2.StreamFollowerIdsRequest, context: Context
    ) -> AsyncIterator[graph_pb2.StreamFollowerIdsResponse]:
        async for batch in self._graph.follower_id_batches(request.user_id, request.batch_size):
            yield graph_pb2.StreamFollowerIdsResponse(follower_ids=batch)

    async def FilterFollowers(
        self, request: graph_pb2.FilterFollowersRequest, context: Context
    ) -> graph_pb2.FilterFollowersResponse:
        followers = await self._graph.filter_followers(request.user_id, list(request.candidate_ids))
        return graph_pb2.FilterFollowersResponse(follower_ids=followers)


def user_proto(user: User) -> users_pb2.User:
    return users_pb2.User(
        user_id=user.user_id,
        handle=user.handle,
        display_name=user.display_name,
        created_at=_timestamp(user.created_at),
        follower_count=user.follower_count,
        following_count=user.following_count,
    )


def _session_fields(session: IssuedSession) -> dict[str, Any]:
    return {
        "token": session.access_token,
        "user_id": session.user_id,
        "expires_at": _timestamp(session.access_expires_at),
        "refresh_token": session.refresh_token,
        "refresh_token_expires_at": _timestamp(session.refresh_expires_at),
    }


def _users(page: UserPage) -> list[users_pb2.User]:
    return [user_proto(user) for user in page.users]


def _timestamp(moment: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp
