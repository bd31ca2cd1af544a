"""Rate limits through a real Envoy: reads are limited by Envoy alone (a token bucket per user) and
never call the rate-limit service; writes still do."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import aiohttp
import grpc
import pytest

from chirp.users.v1 import users_pb2, users_pb2_grpc
from tests.e2e.conftest import Edge, another_envoy
from tests.helpers.rest import Reply, User, call, follow, sign_up, tweet

GRPC_WEB = {"content-type": "application/grpc-web+proto", "x-grpc-web": "1"}
READS_PER_MINUTE = 5
LOW_READ_LIMIT = f"""\
domain: chirp
descriptors:
  - key: generic_key
    value: reads
    descriptors:
      - key: user_id
        rate_limit: {{name: reads per user, unit: minute, requests_per_unit: {READS_PER_MINUTE}}}
"""


async def grpc_web_get_user(http: aiohttp.ClientSession, caller: User, user_id: int) -> Reply:
    """GetUser called as gRPC-Web: the same read RPC as GET /users/{user_id}."""
    message = users_pb2.GetUserRequest(user_id=user_id).SerializeToString()
    frame = b"\x00" + len(message).to_bytes(4, "big") + message
    return await call(
        http, "POST", "/chirp.users.v1.UserService/GetUser", user=caller, data=frame, headers=GRPC_WEB
    )


def grpc_status(reply: Reply) -> str | None:
    """A gRPC-Web answer's status: a header when trailers-only, else in the trailer frame."""
    if "grpc-status" in reply.headers:
        return reply.headers["grpc-status"]
    found = re.search(rb"grpc-status:(\d+)", reply.raw)
    return found.group(1).decode() if found else None


def rate_limit_service_calls(edge: Edge) -> dict[str, int]:
    """Envoy's counters of the ratelimit filter's calls (cluster.<upstream>.ratelimit.*: ok,
    over_limit, error, failure_mode_allowed), and of its gRPC client's calls to the service."""
    assert edge.envoy is not None
    return {
        name: value
        for name, value in edge.envoy.stats("cluster.").items()
        if ".ratelimit." in name or "RateLimitService" in name
    }


async def test_reads_never_call_the_rate_limit_service(http: aiohttp.ClientSession, edge: Edge) -> None:
    alice, bob = await sign_up(http), await sign_up(http)
    await follow(http, alice, bob)
    await tweet(http, bob, "something to read")
    before = await asyncio.to_thread(rate_limit_service_calls, edge)

    reads = [
        f"/users/{bob.id}",
        f"/users/{alice.id}/following",
        f"/users/{bob.id}/followers",
        f"/users/{bob.id}/tweets",
        f"/timeline?user_id={alice.id}",
    ]
    for _ in range(4):
        for path in reads:
            (await call(http, "GET", path, user=alice)).expect(200)
        grpc_web = await grpc_web_get_user(http, alice, bob.id)
        assert (grpc_web.status, grpc_status(grpc_web)) == (200, "0"), grpc_web
    async with http.get(f"/timeline/stream?user_id={alice.id}", headers=alice.headers) as stream:
        assert stream.status == 200
    after_reads = await asyncio.to_thread(rate_limit_service_calls, edge)

    await tweet(http, alice, "a write is counted by the service")
    after_write = await asyncio.to_thread(rate_limit_service_calls, edge)

    assert after_reads == before, "a read reached the rate-limit service"
    assert sum(after_write.values()) > sum(after_reads.values()), after_write


async def test_past_the_read_limit_a_user_gets_429_and_another_user_does_not(
    http: aiohttp.ClientSession, edge: Edge, tmp_path: Path
) -> None:
    alice, bob = await sign_up(http), await sign_up(http)
    limits = tmp_path / "limits.yaml"
    limits.write_text(LOW_READ_LIMIT)
    async with (
        another_envoy(edge, tmp_path, rate_limits=str(limits)) as envoy,
        aiohttp.ClientSession(base_url=envoy.url) as low,
    ):
        allowed = [await call(low, "GET", f"/users/{bob.id}", user=alice) for _ in range(READS_PER_MINUTE)]
        for reply in allowed:
            reply.expect(200)
            assert reply.headers["x-ratelimit-limit"] == str(READS_PER_MINUTE)
        assert allowed[0].headers["x-ratelimit-remaining"] == str(READS_PER_MINUTE - 1)

        # One budget for every read of the user: another read RPC, its gRPC-Web form, the stream.
        refused = await call(low, "GET", f"/timeline?user_id={alice.id}", user=alice)
        refused.expect(429, "RATE_LIMITED")
        assert refused.json["code"] == 8  # RESOURCE_EXHAUSTED
        assert "reads per user" in refused.json["message"]
        assert refused.headers["Content-Type"] == "application/json"
        # A token is back after 60 s / 5: the bucket refills continuously.
        assert refused.headers["Retry-After"] == str(60 // READS_PER_MINUTE)
        assert refused.headers["x-ratelimit-remaining"] == "0"
        assert not [name for name in refused.headers if name.lower().startswith("x-envoy-")]
        # gRPC: RESOURCE_EXHAUSTED. gRPC-Web: Envoy answers its local replies in plain HTTP (429),
        # which the gRPC-Web filter reads as UNAVAILABLE, as for the rate-limit service's refusals.
        async with grpc.aio.insecure_channel(envoy.url.removeprefix("http://")) as channel:
            stub = users_pb2_grpc.UserServiceStub(channel)
            metadata = (("authorization", f"Bearer {alice.token}"),)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.GetUser(users_pb2.GetUserRequest(user_id=bob.id), metadata=metadata, timeout=5)
            assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        grpc_web = await grpc_web_get_user(low, alice, bob.id)
        assert (grpc_web.status, grpc_status(grpc_web)) == (429, "14"), grpc_web
        (await call(low, "GET", f"/timeline/stream?user_id={alice.id}", user=alice)).expect(429)

        # Per user: bob reads on; alice still writes (writes are the rate-limit service's).
        (await call(low, "GET", f"/users/{alice.id}", user=bob)).expect(200)
        await tweet(low, alice, "reading is limited, writing is not")
