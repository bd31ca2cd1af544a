"""UserService sessions: log-in issues an access JWT (signed by the key ring's current key) and an
opaque refresh token kept only as its hash; refresh rotates it, a reused one revokes the session,
DeleteSession logs out. The JWKS the graph service publishes verifies every token it signs."""

from __future__ import annotations

import asyncio
import hashlib
from datetime import UTC, datetime, timedelta

import aiohttp
import grpc
import pytest

from chirp.users.v1 import users_pb2
from chirp_app.stack import Stack
from chirp_core.rpc import SESSION_ID_HEADER, USER_ID_HEADER
from tests.helpers.api import Api, rpc_error
from tests.helpers.database import query
from tests.helpers.graph import assert_error
from tests.helpers.tokens import decode, verify

PASSWORD = "correct horse"
SESSION_TTL = timedelta(days=30)  # the defaults of Settings, kept by the test stack
ACCESS_TTL = timedelta(minutes=10)


async def log_in(api: Api, handle: str) -> users_pb2.CreateSessionResponse:
    await api.users.CreateUser(users_pb2.CreateUserRequest(handle=handle, password=PASSWORD))
    return await api.users.CreateSession(users_pb2.CreateSessionRequest(handle=handle, password=PASSWORD))


async def refresh(api: Api, token: str) -> users_pb2.RefreshSessionResponse:
    return await api.users.RefreshSession(users_pb2.RefreshSessionRequest(refresh_token=token))


def caller(
    session: users_pb2.CreateSessionResponse | users_pb2.RefreshSessionResponse,
) -> list[tuple[str, str]]:
    """The metadata the gateway sets from the session's access token."""
    payload = decode(session.token)[1]
    return [(USER_ID_HEADER, payload["sub"]), (SESSION_ID_HEADER, payload["sid"])]


async def jwks(stack: Stack) -> dict[str, object]:
    url = f"http://{stack.settings.jwks_target}/.well-known/jwks.json"
    async with aiohttp.ClientSession() as http, http.get(url) as reply:
        assert reply.status == 200
        assert reply.headers["content-type"].startswith("application/json")
        body: dict[str, object] = await reply.json()
        return body


async def test_log_in_issues_a_signed_access_token_and_a_refresh_token(api: Api, stack: Stack) -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    session = await log_in(api, "frank")

    payload = verify(session.token, await jwks(stack))
    assert payload["sub"] == str(session.user_id)
    assert payload["iss"] == "chirp"
    assert int(payload["sid"]) > 0
    assert payload["exp"] - payload["iat"] == ACCESS_TTL.total_seconds()
    assert session.expires_at.ToDatetime(tzinfo=UTC) == datetime.fromtimestamp(payload["exp"], UTC)
    assert before <= datetime.fromtimestamp(payload["iat"], UTC) <= datetime.now(UTC)
    refresh_expiry = session.refresh_token_expires_at.ToDatetime(tzinfo=UTC)
    assert before + SESSION_TTL <= refresh_expiry <= datetime.now(UTC) + SESSION_TTL
    assert len(session.refresh_token) == 43


async def test_only_the_refresh_tokens_hash_is_stored(api: Api, database_url: str) -> None:
    first = await log_in(api, "grace")
    second = await api.users.CreateSession(users_pb2.CreateSessionRequest(handle="grace", password=PASSWORD))
    assert first.refresh_token != second.refresh_token
    stored = await query(database_url, "SELECT refresh_hash FROM graph.sessions")
    hashes = {hashlib.sha256(s.refresh_token.encode()).digest() for s in (first, second)}
    assert {bytes(row[0]) for row in stored} == hashes


async def test_refresh_rotates_the_refresh_token(api: Api, stack: Stack) -> None:
    session = await log_in(api, "henry")
    rotated = await refresh(api, session.refresh_token)
    assert rotated.user_id == session.user_id
    assert rotated.refresh_token != session.refresh_token
    assert verify(rotated.token, await jwks(stack))["sid"] == decode(session.token)[1]["sid"]
    again = await refresh(api, rotated.refresh_token)
    assert again.refresh_token not in (session.refresh_token, rotated.refresh_token)


async def test_a_reused_refresh_token_revokes_the_session(api: Api, database_url: str) -> None:
    session = await log_in(api, "ines")
    rotated = await refresh(api, session.refresh_token)

    reused = await rpc_error(refresh(api, session.refresh_token))
    assert_error(reused, grpc.StatusCode.UNAUTHENTICATED, "REFRESH_TOKEN_REUSED")
    current = await rpc_error(refresh(api, rotated.refresh_token))
    assert_error(current, grpc.StatusCode.UNAUTHENTICATED, "SESSION_REVOKED")
    [(revoked_at,)] = await query(database_url, "SELECT revoked_at FROM graph.sessions")
    assert revoked_at is not None


async def test_two_refreshes_racing_with_one_token_revoke_the_session(api: Api) -> None:
    """Only one exchange of a token can win; the loser is a reuse (theft detection)."""
    session = await log_in(api, "jack")
    results = await asyncio.gather(
        refresh(api, session.refresh_token), refresh(api, session.refresh_token), return_exceptions=True
    )
    winners = [r for r in results if isinstance(r, users_pb2.RefreshSessionResponse)]
    losers = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(winners) == 1 and len(losers) == 1, results
    assert_error(losers[0], grpc.StatusCode.UNAUTHENTICATED, "REFRESH_TOKEN_REUSED")
    assert_error(
        await rpc_error(refresh(api, winners[0].refresh_token)),
        grpc.StatusCode.UNAUTHENTICATED,
        "SESSION_REVOKED",
    )


async def test_an_expired_refresh_token_fails(api: Api, database_url: str) -> None:
    session = await log_in(api, "kate")
    await query(database_url, "UPDATE graph.sessions SET expires_at = now() - interval '1 second'")
    error = await rpc_error(refresh(api, session.refresh_token))
    assert_error(error, grpc.StatusCode.UNAUTHENTICATED, "REFRESH_TOKEN_EXPIRED")


async def test_an_unknown_refresh_token_fails(api: Api) -> None:
    error = await rpc_error(refresh(api, "A" * 43))
    assert_error(error, grpc.StatusCode.UNAUTHENTICATED, "REFRESH_TOKEN_INVALID")


@pytest.mark.parametrize("token", ["", "short", "A" * 42 + "!", "A" * 44, "\u00e9" * 43])
async def test_a_malformed_refresh_token_is_invalid_argument(api: Api, token: str) -> None:
    error = await rpc_error(refresh(api, token))
    assert_error(error, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_FIELD", "refresh_token")


async def test_delete_session_logs_out_that_session_only(api: Api) -> None:
    session = await log_in(api, "liam")
    other = await api.users.CreateSession(users_pb2.CreateSessionRequest(handle="liam", password=PASSWORD))

    await api.users.DeleteSession(users_pb2.DeleteSessionRequest(), metadata=caller(session))

    error = await rpc_error(refresh(api, session.refresh_token))
    assert_error(error, grpc.StatusCode.UNAUTHENTICATED, "SESSION_REVOKED")
    assert (await refresh(api, other.refresh_token)).user_id == session.user_id
    # Idempotent.
    await api.users.DeleteSession(users_pb2.DeleteSessionRequest(), metadata=caller(session))


async def test_delete_session_cannot_end_another_users_session(api: Api) -> None:
    mine = await log_in(api, "mia")
    theirs = await log_in(api, "noah")
    their_sid = decode(theirs.token)[1]["sid"]
    metadata = [(USER_ID_HEADER, str(mine.user_id)), (SESSION_ID_HEADER, their_sid)]
    await api.users.DeleteSession(users_pb2.DeleteSessionRequest(), metadata=metadata)
    assert (await refresh(api, theirs.refresh_token)).user_id == theirs.user_id


@pytest.mark.parametrize(
    ("metadata", "reason"),
    [([], "UNAUTHENTICATED"), ([(USER_ID_HEADER, "7")], "SESSION_MISSING")],
)
async def test_delete_session_needs_the_caller_and_the_session(
    api: Api, metadata: list[tuple[str, str]], reason: str
) -> None:
    error = await rpc_error(api.users.DeleteSession(users_pb2.DeleteSessionRequest(), metadata=metadata))
    assert_error(error, grpc.StatusCode.UNAUTHENTICATED, reason)


async def test_a_new_login_clears_the_users_expired_and_revoked_sessions(api: Api, database_url: str) -> None:
    first = await log_in(api, "olga")
    second = await api.users.CreateSession(users_pb2.CreateSessionRequest(handle="olga", password=PASSWORD))
    await api.users.DeleteSession(users_pb2.DeleteSessionRequest(), metadata=caller(second))
    await query(
        database_url,
        "UPDATE graph.sessions SET expires_at = now() - interval '1 second' WHERE session_id = %s",
        int(decode(first.token)[1]["sid"]),
    )

    await api.users.CreateSession(users_pb2.CreateSessionRequest(handle="olga", password=PASSWORD))

    [(count,)] = await query(database_url, "SELECT count(*) FROM graph.sessions")
    assert count == 1
