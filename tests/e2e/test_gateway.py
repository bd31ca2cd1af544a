"""Envoy's own behaviour at the edge: request IDs and access log, routing errors, body limit,
health, rate limits, headers."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from chirp_core.rpc import RequestIdLogFilter
from tests.e2e.conftest import Edge
from tests.helpers.api import eventually
from tests.helpers.rest import call, sign_up, tweet


async def test_request_id_is_echoed_or_made_up_and_logged_as_json(
    http: aiohttp.ClientSession, edge: Edge
) -> None:
    alice = await sign_up(http)
    given = await call(http, "GET", f"/users/{alice.id}", user=alice, headers={"x-request-id": "trace-me-42"})
    assert given.expect(200).headers["x-request-id"] == "trace-me-42"
    first = (await call(http, "GET", f"/users/{alice.id}", user=alice)).headers["x-request-id"]
    second = (await call(http, "GET", f"/users/{alice.id}", user=alice)).headers["x-request-id"]
    assert first and second and first != second
    failed = await call(http, "GET", "/nowhere", user=alice, headers={"x-request-id": "lost-1"})
    assert failed.headers["x-request-id"] == "lost-1"

    def access_log() -> list[dict[str, Any]]:
        text = Path(edge.settings.envoy_access_log).read_text()
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    async def traced() -> list[dict[str, Any]]:
        return [e for e in access_log() if e["request_id"] in ("trace-me-42", "lost-1")]

    lines = await eventually(traced, lambda found: len(found) == 2)
    by_id = {line["request_id"]: line for line in lines}
    ok, missing = by_id["trace-me-42"], by_id["lost-1"]
    assert (ok["status"], ok["route"], ok["method"]) == (200, "chirp.users.v1.UserService/GetUser", "GET")
    assert ok["path"] == f"/users/{alice.id}" and isinstance(ok["duration_ms"], int)
    assert (missing["status"], missing["route"]) == (404, "not-found")


async def test_unknown_route_is_404_and_wrong_method_405(http: aiohttp.ClientSession) -> None:
    alice = await sign_up(http)
    missing = (await call(http, "GET", "/tweets/1/likes", user=alice)).expect(404, "NOT_FOUND")
    assert missing.headers["Content-Type"] == "application/json"
    # No token needed to learn that a path does not exist.
    (await call(http, "GET", "/tweets/1/likes")).expect(404, "NOT_FOUND")
    wrong = (await call(http, "PUT", "/tweets/1", user=alice, json={})).expect(405, "METHOD_NOT_ALLOWED")
    assert set(wrong.headers["Allow"].split(", ")) == {"GET", "PATCH", "DELETE"}
    healthz = (await call(http, "POST", "/healthz", user=alice)).expect(405, "METHOD_NOT_ALLOWED")
    assert healthz.headers["Allow"] == "GET"


async def test_internal_rpcs_are_not_reachable_from_outside(http: aiohttp.ClientSession) -> None:
    """Only RPCs with a REST binding have routes: the internal ones (hydration) are 404 at the edge,
    as gRPC(-Web) calls too."""
    alice = await sign_up(http)
    for rpc in ("/chirp.users.v1.UserService/BatchGetUsers", "/chirp.tweets.v1.TweetService/BatchGetTweets"):
        headers = {"content-type": "application/grpc-web+proto", "x-grpc-web": "1"}
        reply = await call(http, "POST", rpc, user=alice, data=b"\x00\x00\x00\x00\x00", headers=headers)
        assert reply.status == 404, reply


async def test_unknown_query_parameter_is_400(http: aiohttp.ClientSession) -> None:
    alice = await sign_up(http)
    params = {"user_id": str(alice.id), "colour": "red"}
    reply = (await call(http, "GET", "/timeline", user=alice, params=params)).expect(400, "INVALID_ARGUMENT")
    assert "colour" in reply.json["message"]


async def test_int64_ids_beyond_double_precision_survive(http: aiohttp.ClientSession) -> None:
    alice = await sign_up(http)
    big = "9007199254740993"  # 2**53 + 1: a double would round it to ...992
    for path in (f"/users/{big}", f"/users/{big}/relationships/{alice.id}", f"/tweets/{big}/versions"):
        reply = (await call(http, "GET", path, user=alice)).expect(404)
        assert reply.json["message"].endswith(f" {big} not found"), reply.json
        assert reply.json["details"][0]["metadata"] == {"id": big}


async def test_a_body_over_the_limit_is_413(http: aiohttp.ClientSession, edge: Edge) -> None:
    alice = await sign_up(http)
    limit = edge.settings.max_body_bytes
    body = {"user_id": str(alice.id), "content": "x" * limit}
    reply = await call(http, "POST", "/tweets", user=alice, json=body)
    reply.expect(413, "BODY_TOO_LARGE")
    assert reply.json["code"] == 8

    async def chunks() -> object:  # no Content-Length: the limit holds while reading
        for _ in range(limit // 1024 + 2):
            yield b" " * 1024

    streamed = await call(http, "POST", "/tweets", user=alice, data=chunks())  # type: ignore[arg-type]
    streamed.expect(413, "BODY_TOO_LARGE")
    # Just under the limit is transcoded (and refused by the service for its length).
    (
        await call(http, "POST", "/tweets", user=alice, json={"user_id": str(alice.id), "content": "x" * 300})
    ).expect(400)


async def test_healthz(http: aiohttp.ClientSession) -> None:
    reply = (await call(http, "GET", "/healthz")).expect(200)
    assert reply.json == {"status": "SERVING"}
    assert reply.headers["Content-Type"] == "application/json"


async def test_past_the_tweet_limit_is_429_with_retry_after(http: aiohttp.ClientSession) -> None:
    alice = await sign_up(http)
    bob = await sign_up(http)
    statuses = []
    limited = None
    # limits.yaml allows 5 per minute; a window may turn over once, so at most 2 x 5 + 1 posts.
    for n in range(11):
        reply = await call(
            http, "POST", "/tweets", user=alice, json={"user_id": str(alice.id), "content": f"#{n}"}
        )
        statuses.append(reply.status)
        if reply.status == 429:
            limited = reply
            break
    assert limited is not None, statuses
    assert statuses.count(200) >= 5, statuses
    assert limited.json["code"] == 8  # RESOURCE_EXHAUSTED
    assert limited.headers["Content-Type"] == "application/json"
    assert "tweet creations" in limited.json["message"] and limited.reason == "RATE_LIMITED"
    assert not [name for name in limited.headers if name.lower().startswith("x-envoy-")]
    assert 0 < int(limited.headers["Retry-After"]) <= 60
    # The limit is per user: bob still posts, and alice still reads.
    await tweet(http, bob, "bob is not limited")
    (await call(http, "GET", f"/users/{alice.id}", user=alice)).expect(200)


async def test_compact_json_without_spaces(http: aiohttp.ClientSession) -> None:
    alice = await sign_up(http)
    posted = await call(
        http, "POST", "/tweets", user=alice, json={"user_id": str(alice.id), "content": "nospace"}
    )
    assert b": " not in posted.raw and b", " not in posted.raw
    assert posted.raw.startswith(b'{"tweet_id":"')


async def test_request_id_reaches_the_services_logs(
    http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    alice = await sign_up(http)
    caplog.set_level(logging.INFO, logger="chirp.rpc")
    caplog.handler.addFilter(RequestIdLogFilter())
    missing = await call(http, "GET", "/users/999", user=alice, headers={"x-request-id": "svc-trace-7"})
    missing.expect(404)
    service_lines = [r for r in caplog.records if r.name == "chirp.rpc" and "GetUser" in r.getMessage()]
    assert [getattr(r, "request_id", None) for r in service_lines] == ["svc-trace-7"]
