"""The caller's deadline bounds the calls the timeline makes, and an outage reads as UNAVAILABLE.

A slow neighbour is made for real: a transaction holding a lock on the graph's follows table
makes the graph service's ListFolloweeIds wait inside PostgreSQL.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import grpc
import psycopg

from chirp.timeline.v1 import timeline_pb2, timeline_pb2_grpc
from chirp_app.stack import Stack
from chirp_core.settings import Settings
from tests.helpers.api import Api, as_user, rpc_error
from timeline_svc.server import start

GetHome = Callable[..., Awaitable[Any]]
WAITING_ON_FOLLOWS = (
    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query ILIKE '%%graph.follows%%'"
)


@contextmanager
def follows_locked(database_url: str) -> Iterator[psycopg.Connection[Any]]:
    """Hold an exclusive lock on graph.follows until the block ends."""
    with psycopg.connect(database_url) as conn:
        conn.execute("LOCK TABLE graph.follows IN ACCESS EXCLUSIVE MODE")
        yield conn
        conn.rollback()


def waiting_queries(database_url: str) -> int:
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute(WAITING_ON_FOLLOWS).fetchone()
        return int(row[0]) if row else 0


@asynccontextmanager
async def timeline_in_front_of(
    graph_addr: str, tweets_addr: str | None = None, **settings: Any
) -> AsyncIterator[GetHome]:
    running = await start(
        Settings(
            graph_addr=graph_addr,
            tweets_addr=tweets_addr or graph_addr,
            shutdown_grace_seconds=0.1,
            **settings,
        ),
        0,
    )
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{running.port}")
    try:
        yield timeline_pb2_grpc.TimelineServiceStub(channel).GetHomeTimeline
    finally:
        await channel.close()
        await running.stop(0.1)


def unused_address() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{probe.getsockname()[1]}"


async def test_a_slow_upstream_fails_at_the_callers_deadline_and_is_cancelled_too(
    api: Api, database_url: str
) -> None:
    user = await api.new_user()
    request = timeline_pb2.GetHomeTimelineRequest(user_id=user.user_id)
    with follows_locked(database_url):
        started = time.monotonic()
        error = await rpc_error(
            api.timeline.GetHomeTimeline(request, metadata=as_user(user.user_id), timeout=0.5)
        )
        elapsed = time.monotonic() - started
        # The graph service got the same deadline, so its waiting query is abandoned too,
        # while the lock is still held (the default upstream timeout would be 10 s).
        for _ in range(40):
            if waiting_queries(database_url) == 0:
                break
            await asyncio.sleep(0.05)
        still_waiting = waiting_queries(database_url)

    assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert elapsed < 2.0
    assert still_waiting == 0


async def test_without_a_caller_deadline_the_default_one_bounds_upstream_calls(
    api: Api, stack: Stack, database_url: str
) -> None:
    user = await api.new_user()
    request = timeline_pb2.GetHomeTimelineRequest(user_id=user.user_id)
    async with timeline_in_front_of(
        stack.address("graph"), stack.address("tweets"), default_rpc_timeout_seconds=0.3
    ) as get_home:
        with follows_locked(database_url):
            started = time.monotonic()
            error = await asyncio.wait_for(rpc_error(get_home(request, metadata=as_user(user.user_id))), 5)
            elapsed = time.monotonic() - started

    assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert elapsed < 2.0  # the 0.3 s default, not an unbounded wait on the lock


async def test_an_upstream_outage_is_unavailable() -> None:
    async with timeline_in_front_of(unused_address()) as get_home:
        error = await rpc_error(
            get_home(timeline_pb2.GetHomeTimelineRequest(user_id=7), metadata=as_user(7), timeout=5)
        )
    assert error.code() == grpc.StatusCode.UNAVAILABLE
