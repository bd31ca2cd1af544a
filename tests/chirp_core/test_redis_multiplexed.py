"""The request path's multiplexed Redis connection against a real redis-server: concurrent calls
each get their own reply, error replies raise redis-py's exceptions and leave the connection in
use, and a dropped or stalled connection is replaced."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest
import redis
from redis.exceptions import NoScriptError

from chirp_app.embedded_redis import EmbeddedRedis
from chirp_core.redis_multiplexed import MultiplexedRedis

ECHO = "return {ARGV[1], false, tonumber(ARGV[2]), KEYS[1]}"


async def test_concurrent_calls_each_get_their_own_reply(redis_server: EmbeddedRedis) -> None:
    connection = MultiplexedRedis(redis_server.url)
    try:
        sha = (await connection.execute("SCRIPT", "LOAD", ECHO)).decode()
        replies = await asyncio.gather(
            *(connection.execute("EVALSHA", sha, 1, f"k{{{i}}}", f"v{i}".encode(), i) for i in range(200))
        )
        assert replies == [[f"v{i}".encode(), None, i, f"k{{{i}}}".encode()] for i in range(200)]
        clients = await connection.execute("CLIENT", "LIST")
        assert clients.count(b"cmd=client") == 1  # all of it on one connection
    finally:
        await connection.aclose()


async def test_error_replies_raise_and_the_connection_stays(redis_server: EmbeddedRedis) -> None:
    connection = MultiplexedRedis(redis_server.url)
    try:
        await connection.execute("SET", "text", "not a number")
        with pytest.raises(NoScriptError):
            await connection.execute("EVALSHA", "0" * 40, 0)
        with pytest.raises(redis.ResponseError, match="not an integer"):
            await connection.execute("INCR", "text")
        assert await connection.execute("GET", "text") == b"not a number"
    finally:
        await connection.aclose()


async def test_a_killed_connection_is_replaced(redis_server: EmbeddedRedis) -> None:
    connection = MultiplexedRedis(redis_server.url)
    try:
        own = await connection.execute("CLIENT", "ID")
        with redis.Redis.from_url(redis_server.url) as other:
            assert other.client_kill_filter(_id=own) == 1
        assert await connection.execute("PING") == b"PONG"
        assert await connection.execute("CLIENT", "ID") != own
    finally:
        await connection.aclose()


async def test_a_call_abandoned_on_a_silent_server_closes_the_connection(redis_server: EmbeddedRedis) -> None:
    """No reply will come, so the next call must not queue behind it: it gets a new connection."""
    connection = MultiplexedRedis(redis_server.url)
    try:
        own = await connection.execute("CLIENT", "ID")
        assert redis_server.pid is not None
        os.kill(redis_server.pid, signal.SIGSTOP)
        try:
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(connection.execute("PING"), 0.05)
        finally:
            os.kill(redis_server.pid, signal.SIGCONT)
        assert await connection.execute("CLIENT", "ID") != own
    finally:
        await connection.aclose()


async def test_a_call_abandoned_while_others_are_answered_keeps_the_connection(
    redis_server: EmbeddedRedis,
) -> None:
    """A reply late because its command blocks (or our loop was busy) says nothing about Redis:
    with a reply received since the call was sent, the connection stays, and the late reply does
    not land on a later call."""
    connection = MultiplexedRedis(redis_server.url)
    try:
        own = await connection.execute("CLIENT", "ID")
        first = asyncio.ensure_future(connection.execute("BLPOP", "nothing-here", 0.2))
        await asyncio.sleep(0.02)
        second = asyncio.ensure_future(connection.execute("BLPOP", "nothing-there", 0.3))
        assert await first is None  # answered after `second` was sent
        await asyncio.sleep(0.05)
        second.cancel()  # its reply (after 0.3 s more) is still due
        assert await connection.execute("ECHO", "after") == b"after"
        assert await connection.execute("CLIENT", "ID") == own
    finally:
        await connection.aclose()
