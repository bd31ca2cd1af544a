"""Shared helpers for the tweets service tests."""

from __future__ import annotations

from typing import Any

import grpc

from chirp.tweets.v1 import tweets_pb2 as pb
from tests.helpers.api import Api, as_user, error_reason, rpc_error

ALICE = 1001
BOB = 1002


async def post(api: Api, user_id: int, content: str = "hello", **fields: Any) -> pb.Tweet:
    return await api.tweets.CreateTweet(
        pb.CreateTweetRequest(user_id=user_id, content=content, **fields), metadata=as_user(user_id)
    )


async def expect_error(call: Any, code: grpc.StatusCode, reason: str) -> grpc.aio.AioRpcError:
    err = await rpc_error(call)
    assert err.code() == code, err.details()
    assert error_reason(err) == reason
    return err


async def expect_invalid(call: Any, field: str) -> None:
    """INVALID_ARGUMENT whose message starts with the field's name."""
    err = await expect_error(call, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_FIELD")
    assert (err.details() or "").startswith(f"{field}: "), err.details()


async def edit(api: Api, user_id: int, tweet_id: int, content: str) -> pb.Tweet:
    request = pb.EditTweetRequest(tweet_id=tweet_id, content=content)
    return await api.tweets.EditTweet(request, metadata=as_user(user_id))


async def delete(api: Api, user_id: int, tweet_id: int) -> None:
    await api.tweets.DeleteTweet(pb.DeleteTweetRequest(tweet_id=tweet_id), metadata=as_user(user_id))
