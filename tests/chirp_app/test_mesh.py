"""How the workers of `chirp up --processes N` call each other: a service's target names every
worker (CHIRP_GRAPH_ADDR="a:p1,a:p2"), and its channel (chirp_core.rpc.downstream_channel)
spreads the calls round robin over the servers whose grpc.health.v1 status is SERVING."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2

from chirp_core.grpc_server import RunningServer, start_server
from chirp_core.rpc import channel_target, downstream_channel

SERVICE = "chirp.test.v1.WhoService"
# A bound for a busy machine, not a timing: the health watch reports a change at once.
WITHIN_SECONDS = 30.0


async def who_server(name: str) -> RunningServer:
    """A gRPC server (our bootstrap: health, interceptor) whose one method answers its name."""

    async def who(request: bytes, context: Any) -> bytes:
        return name.encode()

    def register(server: grpc.aio.Server) -> list[str]:
        handler = grpc.method_handlers_generic_handler(
            SERVICE, {"Who": grpc.unary_unary_rpc_method_handler(who)}
        )
        server.add_generic_rpc_handlers((handler,))
        return [SERVICE]

    return await start_server(name, "127.0.0.1:0", register)


@pytest.fixture
async def servers() -> AsyncIterator[list[RunningServer]]:
    started = [await who_server("a"), await who_server("b")]
    yield started
    for server in started:
        await server.stop(0)


def test_a_list_of_addresses_is_one_target_for_grpc() -> None:
    assert channel_target("127.0.0.1:5001") == "127.0.0.1:5001"
    assert channel_target("graph:50051") == "graph:50051", "a DNS name: every record an address"
    assert channel_target("10.0.0.5:50051, 10.0.0.6:50051") == "ipv4:10.0.0.5:50051,10.0.0.6:50051"
    assert channel_target("[::1]:5001,[::1]:5002") == "ipv6:[::1]:5001,[::1]:5002"


async def test_calls_spread_over_every_serving_address(servers: list[RunningServer]) -> None:
    a, b = servers
    channel = downstream_channel(f"127.0.0.1:{a.port},127.0.0.1:{b.port}", 5.0)
    who = channel.unary_unary(f"/{SERVICE}/Who")

    async def answers(count: int) -> list[str]:
        return [(await who(b"")).decode() for _ in range(count)]

    async def until(condition: Any, what: str) -> None:
        deadline = time.monotonic() + WITHIN_SECONDS
        while not condition(await answers(10)):
            assert time.monotonic() < deadline, f"gave up waiting for {what}"
            await asyncio.sleep(0.1)

    try:
        await until(lambda seen: set(seen) == {"a", "b"}, "calls to reach both servers")
        seen = await answers(20)
        assert seen.count("a") == seen.count("b") == 10, "round robin: one call each in turn"

        # A server reporting NOT_SERVING (as ours do while they shut down) leaves the rotation.
        await a.health.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
        await until(lambda seen: set(seen) == {"b"}, "the server NOT_SERVING to leave the rotation")
        assert set(await answers(20)) == {"b"}
        await a.health.set("", health_pb2.HealthCheckResponse.SERVING)
        await until(lambda seen: "a" in seen, "the server to come back once SERVING")

        # A server that goes away: every call still succeeds, on the other one.
        await a.stop(0)
        await until(lambda seen: set(seen) == {"b"}, "calls to go on on the server left")
    finally:
        await channel.close()


async def test_a_quiet_health_watch_survives_the_channels_keepalive_pings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A balanced channel's health Watch carries no data for as long as nothing changes, while the
    channel pings the server every KEEPALIVE_TIME_MS; the server must not answer with GOAWAY
    (too_many_pings), which fails every call on the connection, live streams among them."""
    monkeypatch.setattr("chirp_core.rpc.KEEPALIVE_TIME_MS", 1_000)
    server = await who_server("a")
    channel = downstream_channel(f"127.0.0.1:{server.port}", 5.0)
    try:
        who = channel.unary_unary(f"/{SERVICE}/Who")
        assert await who(b"") == b"a"
        # Several pings' worth of quiet: a server refusing them sends GOAWAY after three.
        await asyncio.sleep(6)
        assert channel.get_state() == grpc.ChannelConnectivity.READY
        assert await who(b"") == b"a"
    finally:
        await channel.close()
        await server.stop(0)
