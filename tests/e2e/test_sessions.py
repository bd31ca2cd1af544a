"""Sessions through the gateway: log-in gives a short-lived access token (a JWT Envoy checks) and
a refresh token; refreshing rotates the refresh token, presenting a used one revokes the session,
logging out ends it. The identity headers are Envoy's to set, whatever a client sends."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from chirp.tweets.v1 import tweets_pb2
from tests.e2e.test_envoy import GRPC_WEB, grpc_web_frame, grpc_web_frames
from tests.helpers.rest import PASSWORD, Reply, call, new_handle, parse_time, sign_up
from tests.helpers.tokens import decode


async def _log_in(http: aiohttp.ClientSession) -> tuple[str, dict[str, Any]]:
    handle = new_handle()
    (await call(http, "POST", "/users", json={"handle": handle, "password": PASSWORD})).expect(200)
    session = await call(http, "POST", "/sessions", json={"handle": handle, "password": PASSWORD})
    body: dict[str, Any] = session.expect(200).json
    return handle, body


async def _refresh(http: aiohttp.ClientSession, refresh_token: str) -> Reply:
    return await call(http, "POST", "/sessions/refresh", json={"refresh_token": refresh_token})


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_log_in_gives_a_short_lived_jwt_and_a_refresh_token(http: aiohttp.ClientSession) -> None:
    _, session = await _log_in(http)
    header, payload = decode(session["token"])
    assert header["alg"] == "EdDSA" and header["kid"]
    assert payload["sub"] == session["user_id"]
    assert payload["iss"] == "chirp" and payload["sid"]
    assert payload["exp"] - payload["iat"] == 600
    assert parse_time(session["expires_at"]).timestamp() == payload["exp"]
    assert parse_time(session["refresh_token_expires_at"]) > parse_time(session["expires_at"])
    assert len(session["refresh_token"]) == 43
    jwks = (await call(http, "GET", "/.well-known/jwks.json")).expect(200).json
    published = {key["kid"]: key for key in jwks["keys"]}
    assert published[header["kid"]]["kty"] == "OKP" and published[header["kid"]]["alg"] == "EdDSA"
    assert all("d" not in key for key in jwks["keys"]), "a private key is published"


async def test_refresh_rotates_the_refresh_token(http: aiohttp.ClientSession) -> None:
    _, session = await _log_in(http)
    refreshed = (await _refresh(http, session["refresh_token"])).expect(200).json
    assert refreshed["user_id"] == session["user_id"]
    assert refreshed["refresh_token"] != session["refresh_token"]
    assert decode(refreshed["token"])[1]["sid"] == decode(session["token"])[1]["sid"]
    me = await call(http, "GET", f"/users/{refreshed['user_id']}", headers=_bearer(refreshed["token"]))
    me.expect(200)
    again = (await _refresh(http, refreshed["refresh_token"])).expect(200).json
    assert again["refresh_token"] not in (session["refresh_token"], refreshed["refresh_token"])


async def test_a_used_refresh_token_revokes_the_session(http: aiohttp.ClientSession) -> None:
    _, session = await _log_in(http)
    first = (await _refresh(http, session["refresh_token"])).expect(200).json
    # The old token again, as a thief who copied it would send it.
    (await _refresh(http, session["refresh_token"])).expect(401, "REFRESH_TOKEN_REUSED")
    # The rightful holder's current token is now dead too: the whole session is revoked.
    (await _refresh(http, first["refresh_token"])).expect(401, "SESSION_REVOKED")


async def test_log_out_ends_the_refresh_token(http: aiohttp.ClientSession) -> None:
    handle, session = await _log_in(http)
    _, other = await _log_in(http)
    (await call(http, "DELETE", "/sessions", headers=_bearer(session["token"]))).expect(200)
    (await _refresh(http, session["refresh_token"])).expect(401, "SESSION_REVOKED")
    # Another user's session is untouched, and so is a new log-in of the same user.
    (await _refresh(http, other["refresh_token"])).expect(200)
    again = await call(http, "POST", "/sessions", json={"handle": handle, "password": PASSWORD})
    (await _refresh(http, again.expect(200).json["refresh_token"])).expect(200)
    # Logging out twice is no error.
    (await call(http, "DELETE", "/sessions", headers=_bearer(session["token"]))).expect(200)


async def test_log_out_needs_an_access_token(http: aiohttp.ClientSession) -> None:
    _, session = await _log_in(http)
    (await call(http, "DELETE", "/sessions")).expect(401)
    spoofed = {
        "x-chirp-user-id": session["user_id"],
        "x-chirp-session-id": decode(session["token"])[1]["sid"],
    }
    (await call(http, "DELETE", "/sessions", headers=spoofed)).expect(401)
    (await _refresh(http, session["refresh_token"])).expect(200)


async def test_a_client_sent_session_header_is_ignored(http: aiohttp.ClientSession) -> None:
    """Alice logging out with Bob's session ID in the header ends her session, not his."""
    _, alice = await _log_in(http)
    _, bob = await _log_in(http)
    bob_sid = decode(bob["token"])[1]["sid"]
    headers = {**_bearer(alice["token"]), "x-chirp-session-id": bob_sid, "x-chirp-user-id": bob["user_id"]}
    (await call(http, "DELETE", "/sessions", headers=headers)).expect(200)
    (await _refresh(http, bob["refresh_token"])).expect(200)
    (await _refresh(http, alice["refresh_token"])).expect(401, "SESSION_REVOKED")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "refresh_token"),
        ({"refresh_token": ""}, "refresh_token"),
        ({"refresh_token": "not a token"}, "refresh_token"),
        ({"refresh_token": "x" * 500}, "refresh_token"),
    ],
)
async def test_bad_refresh_input_is_400_naming_the_field(
    http: aiohttp.ClientSession, body: dict[str, str], field: str
) -> None:
    (await call(http, "POST", "/sessions/refresh", json=body)).field_error(field)


async def test_an_unknown_refresh_token_is_401(http: aiohttp.ClientSession) -> None:
    reply = await _refresh(http, "A" * 43)
    reply.expect(401, "REFRESH_TOKEN_INVALID")


async def test_a_refresh_token_is_no_access_token(http: aiohttp.ClientSession) -> None:
    _, session = await _log_in(http)
    reply = await call(http, "GET", f"/users/{session['user_id']}", headers=_bearer(session["refresh_token"]))
    reply.expect(401)


async def test_grpc_web_callers_cannot_name_themselves(http: aiohttp.ClientSession) -> None:
    """On the gRPC-Web route too (which keeps the grpc-* response headers), a client-sent
    x-chirp-user-id is removed: Alice posting as Bob with Bob's ID in the header is refused."""
    alice = await sign_up(http)
    bob = await sign_up(http)
    request = tweets_pb2.CreateTweetRequest(user_id=bob.id, content="as bob").SerializeToString()
    headers = {**GRPC_WEB, "x-chirp-user-id": str(bob.id)}
    path = "/chirp.tweets.v1.TweetService/CreateTweet"
    reply = await call(http, "POST", path, user=alice, data=grpc_web_frame(request), headers=headers)
    _, trailers = grpc_web_frames(reply.raw)
    status = trailers.get("grpc-status") or reply.headers.get("grpc-status")
    assert status == "7", (reply.status, reply.headers, trailers)  # PERMISSION_DENIED
    anonymous = await call(http, "POST", path, data=grpc_web_frame(request), headers=headers)
    assert anonymous.headers.get("grpc-status") == "16" or anonymous.status == 401, anonymous
