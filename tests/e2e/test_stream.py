"""GET /timeline/stream: the live home timeline as server-sent events."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp

from chirp_app.stack import Stack
from tests.e2e.conftest import Edge, another_envoy
from tests.helpers.api import eventually
from tests.helpers.rest import User, call, follow, sign_up, tweet

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
    unknown = await call(http, "GET", "/timeline/stream", user=alice, params=params)
    assert "limit" in unknown.expect(400, "INVALID_ARGUMENT").json["message"]


async def test_a_client_that_disconnects_cancels_the_upstream_stream(
    http: aiohttp.ClientSession, stack: Stack
) -> None:
    """Envoy ends the upstream call when its client goes: the service's open streams go back."""
    alice = await sign_up(http)

    def open_streams() -> float:
        gauge = stack.metrics.stream_subscribers
        return sum(gauge.labels(transport)._value.get() for transport in ("pubsub", "poll"))

    before = open_streams()
    async with _stream(http, alice) as response:
        assert response.status == 200
        await eventually(_async(open_streams), lambda n: n == before + 1)
    await eventually(_async(open_streams), lambda n: n == before)


async def test_a_quiet_stream_outlives_envoys_idle_timeout(edge: Edge, tmp_path: Path) -> None:
    """The stream route has no idle limit: behind an Envoy whose stream idle timeout is one second,
    a listener waits longer than that and still gets the next tweet."""
    async with (
        another_envoy(edge, tmp_path, envoy_stream_idle_timeout_seconds=1.0) as envoy,
        aiohttp.ClientSession(base_url=envoy.url) as http,
    ):
        alice = await sign_up(http)
        async with _stream(http, alice) as response:
            assert response.status == 200
            await asyncio.sleep(2.5)
            posted = await tweet(http, alice, "after a quiet while")
            event = await _next_event(response)
            assert event["tweet"]["tweet_id"] == posted["tweet_id"]


def _async(probe: Any) -> Any:
    async def call_it() -> Any:
        return probe()

    return call_it
