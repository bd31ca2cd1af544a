"""Helpers for tests that talk to the stack over gRPC."""

from __future__ import annotations

import asyncio
import itertools
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc

from chirp.graph.v1 import graph_pb2_grpc
from chirp.timeline.v1 import timeline_pb2_grpc
from chirp.tweets.v1 import tweets_pb2_grpc
from chirp.users.v1 import users_pb2, users_pb2_grpc
from chirp_app.stack import Stack
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
        return await self.users.CreateUser(
            users_pb2.CreateUserRequest(handle=handle, display_name=handle.title(), password=password)
        )


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


T = TypeVar("T")
# The bound the tests accept for what happens "soon": fan-out lag, a relay's hand-over, a reconnect
# (milliseconds usually; this is for a loaded machine).
LAG_SECONDS = 10.0


async def eventually(
    probe: Callable[[], Awaitable[T]], done: Callable[[T], bool], *, within: float = LAG_SECONDS
) -> T:
    """Call `probe` until `done(result)`; fail with the last result after `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        result = await probe()
        if done(result):
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not done after {within}s; last result: {result!r}")
        await asyncio.sleep(0.02)


@asynccontextmanager
async def api_for(stack: Stack) -> AsyncIterator[Api]:
    """Stubs for every service of a running stack, over channels closed at the end."""
    channels = {name: grpc.aio.insecure_channel(stack.address(name)) for name in stack.servers}
    try:
        yield Api(
            users=users_pb2_grpc.UserServiceStub(channels["graph"]),
            graph=graph_pb2_grpc.GraphServiceStub(channels["graph"]),
            tweets=tweets_pb2_grpc.TweetServiceStub(channels["tweets"]),
            timeline=timeline_pb2_grpc.TimelineServiceStub(channels["timeline"]),
        )
    finally:
        for channel in channels.values():
            await channel.close()


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


def free_ports(count: int) -> list[int]:
    """`count` distinct ports nothing listens on right now (all bound at once, then released)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def free_port_run(length: int) -> int:
    """The first of `length` consecutive ports nothing listens on right now (for a setting that
    gives each worker process the next port: metrics_port + index)."""
    for _ in range(100):
        first = free_port()
        probes = [socket.socket() for _ in range(length)]
        try:
            for offset, probe in enumerate(probes):
                probe.bind(("127.0.0.1", first + offset))
        except OSError:
            continue
        finally:
            for probe in probes:
                probe.close()
        return first
    raise AssertionError(f"no {length} consecutive free ports")
