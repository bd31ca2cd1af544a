"""Authentication and acting for oneself: 401 without a valid token, 403 for another user."""

from __future__ import annotations

import aiohttp
import psycopg
import pytest

from tests.helpers.rest import PASSWORD, call, new_handle, sign_up, tweet

# Every route of the public API except the public ones (POST /users, POST /sessions, GET /healthz).
PROTECTED = [
    ("GET", "/users/1"),
    ("POST", "/tweets"),
    ("GET", "/tweets/1"),
    ("PATCH", "/tweets/1"),
    ("DELETE", "/tweets/1"),
    ("GET", "/tweets/1/replies"),
    ("GET", "/tweets/1/versions"),
    ("GET", "/users/1/tweets"),
    ("POST", "/follow"),
    ("DELETE", "/follow"),
    ("GET", "/users/1/followers"),
    ("GET", "/users/1/following"),
    ("GET", "/users/1/relationships/2"),
    ("GET", "/timeline?user_id=1"),
    ("GET", "/timeline/stream?user_id=1"),
]


def _unauthenticated(status: int, body: dict[str, object]) -> None:
    assert status == 401, body
    assert body["code"] == 16
    details = body["details"]
    assert isinstance(details, list) and details[0]["@type"] == "type.googleapis.com/google.rpc.ErrorInfo"
    assert details[0]["domain"] == "chirp.dev" and details[0]["reason"]


@pytest.mark.parametrize(("method", "path"), PROTECTED)
async def test_no_token_is_401(http: aiohttp.ClientSession, method: str, path: str) -> None:
    reply = await call(http, method, path, json={} if method in ("POST", "PATCH", "DELETE") else None)
    _unauthenticated(reply.status, reply.json)


@pytest.mark.parametrize(
    "authorization",
    ["Bearer forged-token-that-was-never-issued", "Bearer ", "Basic dXNlcjpwYXNz", "forged", "Bearer a b"],
)
async def test_forged_or_malformed_token_is_401(http: aiohttp.ClientSession, authorization: str) -> None:
    reply = await call(
        http, "GET", "/timeline", params={"user_id": "1"}, headers={"Authorization": authorization}
    )
    _unauthenticated(reply.status, reply.json)


async def test_expired_token_is_401(http: aiohttp.ClientSession, database_url: str) -> None:
    user = await sign_up(http)  # the token is never used before it expires, so no cache holds it
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE graph.sessions SET expires_at = now() - interval '1 minute' WHERE user_id = %s",
            (user.id,),
        )
    reply = await call(http, "GET", f"/users/{user.id}", user=user)
    _unauthenticated(reply.status, reply.json)
    again = await call(http, "POST", "/sessions", json={"handle": user.handle, "password": PASSWORD})
    fresh = again.expect(200).json["token"]
    ok = await call(http, "GET", f"/users/{user.id}", headers={"Authorization": f"Bearer {fresh}"})
    ok.expect(200)


async def test_public_routes_need_no_token(http: aiohttp.ClientSession) -> None:
    handle = new_handle()
    (await call(http, "POST", "/users", json={"handle": handle, "password": PASSWORD})).expect(200)
    (await call(http, "POST", "/sessions", json={"handle": handle, "password": PASSWORD})).expect(200)
    (await call(http, "GET", "/healthz")).expect(200)


async def test_a_client_cannot_name_the_caller_itself(http: aiohttp.ClientSession) -> None:
    alice = await sign_up(http)
    bob = await sign_up(http)
    spoof = {"x-chirp-user-id": str(bob.id)}
    without_token = await call(
        http, "POST", "/tweets", json={"user_id": str(bob.id), "content": "as bob"}, headers=spoof
    )
    _unauthenticated(without_token.status, without_token.json)
    with_token = await call(
        http, "POST", "/tweets", user=alice, json={"user_id": str(bob.id), "content": "as bob"}, headers=spoof
    )
    with_token.expect(403, "NOT_YOURSELF")


async def test_acting_as_another_user_is_403(http: aiohttp.ClientSession) -> None:
    alice = await sign_up(http)
    bob = await sign_up(http)
    body = {"user_id": str(bob.id), "content": "hi"}
    (await call(http, "POST", "/tweets", user=alice, json=body)).expect(403, "NOT_YOURSELF")
    edge_body = {"follower_id": str(bob.id), "followee_id": str(alice.id)}
    (await call(http, "POST", "/follow", user=alice, json=edge_body)).expect(403, "NOT_YOURSELF")
    (await call(http, "DELETE", "/follow", user=alice, json=edge_body)).expect(403, "NOT_YOURSELF")
    timeline = await call(http, "GET", "/timeline", user=alice, params={"user_id": str(bob.id)})
    timeline.expect(403, "NOT_YOURSELF")
    assert timeline.json["code"] == 7


async def test_editing_or_deleting_another_users_tweet_is_403(http: aiohttp.ClientSession) -> None:
    alice = await sign_up(http)
    bob = await sign_up(http)
    posted = await tweet(http, alice, "mine")
    tweet_path = f"/tweets/{posted['tweet_id']}"
    (await call(http, "PATCH", tweet_path, user=bob, json={"content": "yours now"})).expect(403, "NOT_AUTHOR")
    (await call(http, "DELETE", tweet_path, user=bob)).expect(403, "NOT_AUTHOR")
    still = (await call(http, "GET", tweet_path, user=bob)).expect(200)
    assert still.json["content"] == "mine"
    assert still.json["version"] == 1
