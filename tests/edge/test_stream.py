"""GET /timeline/stream: the live home timeline as server-sent events."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp

from tests.edge.conftest import Edge
from tests.edge.helpers import User, call, follow, sign_up, tweet

EVENT_TIMEOUT = 10.0


async def _next_event(response: aiohttp.ClientResponse) -> dict[str, Any]:
    raw = await asyncio.wait_for(response.content.readuntil(b"\n\n"), EVENT_TIMEOUT)
    assert raw.startswith(b"data: "), raw
    assert raw.count(b"\n") == 2, raw  # one data line per event
    event: dict[str, Any] = json.loads(raw[len(b"data: ") : -2])
    return event


def _stream(http: aiohttp.ClientSession, user: User, **params: str) -> Any:
    query = {"user_id": str(user.id), **params}
    return http.get("/timeline/stream", params=query, headers={**user.headers, "Accept": "text/event-stream"})


async def test_a_connected_follower_receives_a_new_tweet(http: aiohttp.ClientSession) -> None:
    alice = await sign_up(http)
    bob = await sign_up(http)
    await follow(http, alice, bob)
    async with _stream(http, alice) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "text/event-stream"
        assert response.headers["x-request-id"]
        posted = await tweet(http, bob, "live from bob")
        event = await _next_event(response)
        assert set(event) == {"tweet"}
        assert event["tweet"]["tweet_id"] == posted["tweet_id"]
        assert event["tweet"]["content"] == "live from bob"
        assert event["tweet"]["author"]["handle"] == bob.handle
        second = await tweet(http, alice, "and alice's own")
        assert (await _next_event(response))["tweet"]["tweet_id"] == second["tweet_id"]


async def test_since_id_replays_what_was_missed(http: aiohttp.ClientSession) -> None:
    alice = await sign_up(http)
    bob = await sign_up(http)
    await follow(http, alice, bob)
    seen = await tweet(http, bob, "seen before the disconnect")
    missed = await tweet(http, bob, "posted while away")
    async with _stream(http, alice, since_id=seen["tweet_id"]) as response:
        assert response.status == 200
        assert (await _next_event(response))["tweet"]["tweet_id"] == missed["tweet_id"]


async def test_streaming_another_users_timeline_is_a_json_403(http: aiohttp.ClientSession) -> None:
    alice = await sign_up(http)
    bob = await sign_up(http)
    reply = await call(http, "GET", "/timeline/stream", user=alice, params={"user_id": str(bob.id)})
    reply.expect(403, "NOT_YOURSELF")
    assert reply.headers["Content-Type"] == "application/json"


async def test_stream_bad_input(http: aiohttp.ClientSession) -> None:
    alice = await sign_up(http)
    params = {"user_id": str(alice.id), "since_id": "-1"}
    (await call(http, "GET", "/timeline/stream", user=alice, params=params)).field_error("since_id")
    params = {"user_id": str(alice.id), "since_id": "yesterday"}
    (await call(http, "GET", "/timeline/stream", user=alice, params=params)).field_error("since_id")
    params = {"user_id": str(alice.id), "limit": "5"}
    (await call(http, "GET", "/timeline/stream", user=alice, params=params)).expect(
        400, "UNKNOWN_QUERY_PARAMETER"
    )


async def test_a_client_that_disconnects_cancels_the_upstream_stream(
    http: aiohttp.ClientSession, edge: Edge
) -> None:
    alice = await sign_up(http)
    live = edge.gateway.gateway.live_streams
    before = len(live)
    async with _stream(http, alice) as response:
        assert response.status == 200
        assert len(live) == before + 1
    for _ in range(100):
        if len(live) == before:
            break
        await asyncio.sleep(0.05)
    assert len(live) == before
