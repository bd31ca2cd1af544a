"""The gateway stays up while a service is down: 503 for what needs it, the rest still works.

A timeline server and a gateway of their own are started here, so the shared stack keeps running."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest_asyncio

from chirp_core.grpc_server import RunningServer
from chirp_core.stack import Stack
from edge_proxy.gateway import RunningGateway
from edge_proxy.gateway import start as start_gateway
from tests.edge.conftest import Edge
from tests.edge.helpers import call, sign_up
from timeline_svc.server import start as start_timeline


@dataclass
class Outage:
    timeline: RunningServer
    gateway: RunningGateway
    http: aiohttp.ClientSession


@pytest_asyncio.fixture(loop_scope="session")
async def outage(edge: Edge, stack: Stack) -> AsyncIterator[Outage]:
    timeline = await start_timeline(edge.settings, 0)
    settings = edge.settings.with_changes(timeline_addr=f"{edge.settings.host}:{timeline.port}")
    gateway = await start_gateway(settings, edge.guard)
    try:
        async with aiohttp.ClientSession(base_url=gateway.url) as http:
            yield Outage(timeline, gateway, http)
    finally:
        await gateway.stop()
        await timeline.stop(0)


async def test_a_stopped_service_is_503_and_the_rest_keeps_working(outage: Outage) -> None:
    http = outage.http
    alice = await sign_up(http)
    params = {"user_id": str(alice.id)}
    (await call(http, "GET", "/timeline", user=alice, params=params)).expect(200)
    (await call(http, "GET", "/healthz")).expect(200)

    await outage.timeline.stop(0)

    down = (await call(http, "GET", "/timeline", user=alice, params=params)).expect(503)
    assert down.json["code"] == 14  # UNAVAILABLE
    assert down.headers["Content-Type"] == "application/json"
    (await call(http, "GET", f"/users/{alice.id}/tweets", user=alice)).expect(503)
    (await call(http, "GET", "/timeline/stream", user=alice, params=params)).expect(503)
    health = (await call(http, "GET", "/healthz")).expect(503).json
    assert health["status"] == "NOT_SERVING"
    assert health["not_serving"] == ["timeline"]
    assert health["upstreams"]["graph"] == "SERVING"
    # The gateway is still up: the other services answer through it.
    (await call(http, "GET", f"/users/{alice.id}", user=alice)).expect(200)
    posted = await call(
        http, "POST", "/tweets", user=alice, json={"user_id": str(alice.id), "content": "still here"}
    )
    posted.expect(200)


async def test_stop_lets_an_in_flight_request_finish(edge: Edge) -> None:
    gateway = await start_gateway(edge.settings, edge.guard)
    async with aiohttp.ClientSession(base_url=gateway.url) as http:
        alice = await sign_up(http)
        async with http.get(
            "/timeline/stream", params={"user_id": str(alice.id)}, headers=alice.headers
        ) as live:
            assert live.status == 200
            await gateway.stop()
            # The open event stream is ended cleanly, not left hanging.
            assert await live.content.read() == b""
        try:
            async with http.get("/healthz") as after:
                raise AssertionError(f"a stopped gateway answered {after.status}")
        except aiohttp.ClientConnectionError:
            pass


async def test_an_upstream_error_mid_stream_ends_the_event_stream(outage: Outage) -> None:
    http = outage.http
    alice = await sign_up(http)
    params = {"user_id": str(alice.id)}
    async with http.get("/timeline/stream", params=params, headers=alice.headers) as live:
        assert live.status == 200
        await outage.timeline.stop(0)
        assert await asyncio.wait_for(live.content.read(), 10) == b""
    assert not outage.gateway.gateway.live_streams


async def test_a_slow_upstream_is_504(edge: Edge) -> None:
    # Logging in runs a deliberately slow password hash: far more than 1 ms.
    settings = edge.settings.with_changes(upstream_timeout_seconds=0.001)
    gateway = await start_gateway(settings, edge.guard)
    try:
        async with aiohttp.ClientSession(base_url=gateway.url) as http:
            body = {"handle": "nobody_at_all", "password": "correct horse battery"}
            reply = (await call(http, "POST", "/sessions", json=body)).expect(504)
            assert reply.json["code"] == 4  # DEADLINE_EXCEEDED
    finally:
        await gateway.stop()
