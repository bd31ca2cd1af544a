"""Shared helpers for the tweets service tests."""

from __future__ import annotations

from typing import Any

import grpc
import psycopg

from chirp.tweets.v1 import tweets_pb2 as pb
from tests.support import Api, as_user, error_reason, rpc_error

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


async def query(database_url: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        cur = await conn.execute(sql.encode(), params)
        return await cur.fetchall()


async def outbox(database_url: str) -> list[tuple[str, int, dict[str, Any]]]:
    rows = await query(
        database_url, "SELECT event_type, aggregate_id, payload FROM tweets.outbox ORDER BY id"
    )
    return [(r[0], r[1], r[2]) for r in rows]
