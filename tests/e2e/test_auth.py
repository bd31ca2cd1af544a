"""Authentication and acting for oneself: 401 without a valid access token (Envoy checks the JWT
alone), 403 for another user."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from chirp_app.stack import Stack
from edge_proxy.envoy_config import JWT_CLOCK_SKEW_SECONDS
from graph_svc.tokens import KeyRing
from tests.helpers.rest import PASSWORD, call, new_handle, sign_up, tweet
from tests.helpers.tokens import claims, sign, sign_with_stack_key, unsigned, with_payload

# Every route of the public API except the public ones (POST /users, POST /sessions,
# POST /sessions/refresh, GET /healthz, GET /.well-known/jwks.json).
PROTECTED = [
    ("DELETE", "/sessions"),
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


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_a_token_signed_by_the_published_key_works(http: aiohttp.ClientSession, stack: Stack) -> None:
    """The control of the forgeries below: the same hand-made token, well signed, passes."""
    user = await sign_up(http)
    token = sign_with_stack_key(stack.settings.jwt_keys, claims(user.id))
    (await call(http, "GET", f"/users/{user.id}", headers=_bearer(token))).expect(200)


async def test_missing_token_is_401_with_a_bearer_challenge(http: aiohttp.ClientSession) -> None:
    reply = await call(http, "GET", "/users/1")
    _unauthenticated(reply.status, reply.json)
    assert reply.reason == "TOKEN_MISSING"
    assert "Authorization: Bearer" in reply.json["message"]
    assert reply.headers["www-authenticate"].startswith("Bearer realm=")
    assert reply.headers["content-type"] == "application/json"


async def test_a_token_verified_before_is_refused_once_it_expires(
    http: aiohttp.ClientSession, stack: Stack
) -> None:
    """Envoy keeps verified tokens to skip their signature check: that must not outlive them."""
    user = await sign_up(http)
    now = int(time.time())
    # Still inside the clock skew Envoy allows past `exp`, for about 3 more seconds.
    exp = now - JWT_CLOCK_SKEW_SECONDS + 3
    token = sign_with_stack_key(stack.settings.jwt_keys, claims(user.id, iat=now - 600, exp=exp))
    for _ in range(3):
        (await call(http, "GET", f"/users/{user.id}", headers=_bearer(token))).expect(200)
    await asyncio.sleep(max(0.0, exp + JWT_CLOCK_SKEW_SECONDS + 1.5 - time.time()))
    reply = await call(http, "GET", f"/users/{user.id}", headers=_bearer(token))
    _unauthenticated(reply.status, reply.json)
    assert reply.reason == "TOKEN_EXPIRED", reply.json


def _other_signature(token: str) -> str:
    head, _, signature = token.rpartition(".")
    flipped = "A" if signature[0] != "A" else "B"
    return f"{head}.{flipped}{signature[1:]}"


FORGERIES = [
    "expired",
    "forged signature",
    "unknown key",
    "wrong key, real kid",
    "alg none",
    "tampered payload",
    "wrong issuer",
    "not yet valid",
]


@pytest.mark.parametrize("forgery", FORGERIES)
async def test_a_bad_token_is_401(http: aiohttp.ClientSession, stack: Stack, forgery: str) -> None:
    user = await sign_up(http)
    victim = await sign_up(http)
    key_dir = stack.settings.jwt_keys
    kid = KeyRing(key_dir).signer().kid
    stranger = Ed25519PrivateKey.generate()
    now = int(time.time())
    tokens = {
        # Past the 10 s of clock skew Envoy allows.
        "expired": lambda: sign_with_stack_key(key_dir, claims(user.id, iat=now - 700, exp=now - 60)),
        "forged signature": lambda: _other_signature(user.token),
        "unknown key": lambda: sign(claims(user.id), stranger, "someone-elses-key"),
        "wrong key, real kid": lambda: sign(claims(user.id), stranger, kid),
        "alg none": lambda: unsigned(claims(user.id), kid),
        "tampered payload": lambda: with_payload(user.token, sub=str(victim.id)),
        "wrong issuer": lambda: sign_with_stack_key(key_dir, claims(user.id, iss="not-chirp")),
        "not yet valid": lambda: sign_with_stack_key(key_dir, claims(user.id, nbf=now + 600)),
    }
    token = tokens[forgery]()
    reply = await call(http, "GET", f"/users/{victim.id}", headers=_bearer(token))
    _unauthenticated(reply.status, reply.json)
    assert reply.reason == ("TOKEN_EXPIRED" if forgery == "expired" else "TOKEN_INVALID"), reply.json
    assert 'error="invalid_token"' in reply.headers["www-authenticate"], reply.headers
    # The genuine token still works: the 401 is the forgery's.
    (await call(http, "GET", f"/users/{victim.id}", user=user)).expect(200)


async def test_public_routes_need_no_token(http: aiohttp.ClientSession) -> None:
    handle = new_handle()
    (await call(http, "POST", "/users", json={"handle": handle, "password": PASSWORD})).expect(200)
    session = await call(http, "POST", "/sessions", json={"handle": handle, "password": PASSWORD})
    refresh = {"refresh_token": session.expect(200).json["refresh_token"]}
    (await call(http, "POST", "/sessions/refresh", json=refresh)).expect(200)
    (await call(http, "GET", "/healthz")).expect(200)
    (await call(http, "GET", "/.well-known/jwks.json")).expect(200)


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
