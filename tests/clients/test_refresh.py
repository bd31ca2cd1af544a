"""The SDK keeps its session alive by itself: with access tokens that live 2 s, a client keeps
working for longer by refreshing before the token expires, refreshes once and retries a call the
server refused as UNAUTHENTICATED, shares one refresh among concurrent calls (a second exchange of
one refresh token would end the session), and log_out ends the session."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio
from chirp_client import AsyncClient, Client, Unauthenticated

from chirp_app.stack import Stack
from tests.clients.conftest import PASSWORD
from tests.e2e.conftest import Edge
from tests.helpers.rest import new_handle
from tests.helpers.token_edge import TokenEdge, token_edge
from tests.helpers.tokens import claims, decode, sign_with_stack_key

LIFETIME = 2


@pytest_asyncio.fixture(loop_scope="session")
async def short_lived(stack: Stack, edge: Edge, tmp_path: Path) -> AsyncIterator[TokenEdge]:
    async with token_edge(stack, edge, tmp_path, access_token_ttl_seconds=LIFETIME) as running:
        yield running


async def _logged_in(url: str) -> AsyncClient:
    client = AsyncClient(url)
    handle = new_handle("refresh")
    await client.sign_up(handle, PASSWORD)
    session = await client.log_in(handle, PASSWORD)
    assert decode(session.token)[1]["exp"] - decode(session.token)[1]["iat"] == LIFETIME
    assert session.refresh_token
    return client


async def test_the_client_refreshes_before_the_token_expires(short_lived: TokenEdge) -> None:
    async with await _logged_in(short_lived.url) as client:
        first = client.token
        for _ in range(4):  # 4 s of calls, twice the token's lifetime
            assert (await client.get_user(client._me())).user_id == client.user_id
            await asyncio.sleep(1)
        assert client.token != first
        assert decode(client.token)[1]["sid"] == decode(first or "")[1]["sid"]


def _expire(client: AsyncClient, stack: Stack) -> str:
    """Replace the client's access token by an expired one (past Envoy's clock skew) of the same
    user and session, and stop the proactive refresh: the server must refuse the next call."""
    payload = decode(client.token or "")[1]
    now = int(time.time())
    expired = claims(int(payload["sub"]), session_id=int(payload["sid"]), iat=now - 120, exp=now - 60)
    client.token = sign_with_stack_key(stack.settings.jwt_keys, expired)
    client._refresh_after = None
    return client.token


async def test_a_401_refreshes_once_and_retries(short_lived: TokenEdge, stack: Stack) -> None:
    async with await _logged_in(short_lived.url) as client:
        stale = _expire(client, stack)
        user = await client.get_user(client._me())
        assert user.user_id == client.user_id
        assert client.token != stale


async def test_concurrent_calls_share_one_refresh(short_lived: TokenEdge, stack: Stack) -> None:
    async with await _logged_in(short_lived.url) as client:
        _expire(client, stack)
        users = await asyncio.gather(*(client.get_user(client._me()) for _ in range(8)))
        assert {u.user_id for u in users} == {client.user_id}
        # The session survived: had two refreshes used one token, this would be SESSION_REVOKED.
        await client.refresh()


async def test_log_out_ends_the_session(short_lived: TokenEdge) -> None:
    client = await _logged_in(short_lived.url)
    refresh_token = client.refresh_token
    await client.log_out()
    assert client.token is None and client.refresh_token is None
    async with aiohttp.ClientSession() as http:
        body = {"refresh_token": refresh_token}
        async with http.post(short_lived.url + "/sessions/refresh", json=body) as reply:
            assert reply.status == 401
            assert (await reply.json())["details"][0]["reason"] == "SESSION_REVOKED"
    with pytest.raises(Unauthenticated):
        await client.get_user(1)
    await client.close()


async def test_a_dead_refresh_token_raises_unauthenticated(short_lived: TokenEdge, stack: Stack) -> None:
    async with await _logged_in(short_lived.url) as client:
        other = AsyncClient(short_lived.url, refresh_token=client.refresh_token)
        await other.refresh()  # a copy of the refresh token is used elsewhere first
        await other.close()
        _expire(client, stack)
        with pytest.raises(Unauthenticated):
            await client.get_user(client._me())
        assert client.refresh_token is None


async def test_the_blocking_client_refreshes_too(short_lived: TokenEdge) -> None:
    def scenario() -> None:
        client = Client(short_lived.url)
        handle = new_handle("syncrefresh")
        client.sign_up(handle, PASSWORD)
        first = client.log_in(handle, PASSWORD).token
        for _ in range(4):
            assert client.get_user(client._me()).user_id == client.user_id
            time.sleep(1)
        assert client.token != first
        client.log_out()
        assert client.refresh_token is None

    await asyncio.to_thread(scenario)
