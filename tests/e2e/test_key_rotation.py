"""Rotating the access tokens' signing key on a running stack behind a real Envoy, as the README's
procedure says, while a client keeps calling and refreshing: no request fails. Tokens of the old
key pass while both keys are published, tokens of the new key pass once it is published, and the
old key's tokens stop passing once it is removed."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp

from chirp_app.stack import Stack
from graph_svc.tokens import KeyRing, create_key, use_key
from tests.e2e.conftest import Edge
from tests.helpers.api import eventually
from tests.helpers.rest import PASSWORD, call, sign_up
from tests.helpers.token_edge import token_edge
from tests.helpers.tokens import claims, decode, sign

CACHE_SECONDS = 1.0
LIFETIME = 3


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_keys_rotate_with_no_request_failing(stack: Stack, edge: Edge, tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    create_key(keys, "old", current=True)
    async with (
        token_edge(
            stack,
            edge,
            tmp_path / "envoy",
            jwt_key_dir=keys,
            access_token_ttl_seconds=LIFETIME,
            jwks_cache_seconds=CACHE_SECONDS,
        ) as running,
        aiohttp.ClientSession(base_url=running.url) as http,
    ):
        user = await sign_up(http)
        assert decode(user.token)[0]["kid"] == "old"
        session = await call(http, "POST", "/sessions", json={"handle": user.handle, "password": PASSWORD})
        tokens: dict[str, Any] = session.expect(200).json
        passed: Counter[str] = Counter()
        failures: list[tuple[str, int, bytes]] = []
        done = asyncio.Event()

        async def client() -> None:
            """Calls with the newest access token, refreshing it every half lifetime."""
            refreshed_at = time.monotonic()
            while not done.is_set():
                token = tokens["token"]
                reply = await call(http, "GET", f"/users/{user.id}", headers=_bearer(token))
                kid = decode(token)[0]["kid"]
                if reply.status == 200:
                    passed[kid] += 1
                else:
                    failures.append((kid, reply.status, reply.raw))
                if time.monotonic() - refreshed_at > LIFETIME / 2:
                    body = {"refresh_token": tokens["refresh_token"]}
                    refreshed = await call(http, "POST", "/sessions/refresh", json=body)
                    if refreshed.status == 200:
                        tokens.update(refreshed.json)
                    else:
                        failures.append(("refresh", refreshed.status, refreshed.raw))
                    refreshed_at = time.monotonic()
                await asyncio.sleep(0.05)

        async def published() -> set[str]:
            reply = (await call(http, "GET", "/.well-known/jwks.json")).expect(200)
            return {key["kid"] for key in reply.json["keys"]}

        async def status_with(kid: str) -> int:
            signer = next(k for k in ring_keys if k.kid == kid)
            token = sign(claims(user.id, lifetime=60), signer.key, signer.kid)
            return (await call(http, "GET", f"/users/{user.id}", headers=_bearer(token))).status

        load = asyncio.create_task(client())
        try:
            # 1. The next key is published, not signing; after Envoy's cache duration it knows it.
            create_key(keys, "next")
            ring_keys = KeyRing(keys).keys()
            await eventually(published, lambda kids: kids == {"old", "next"})
            await asyncio.sleep(2 * CACHE_SECONDS + 0.5)
            assert await status_with("next") == 200
            assert await status_with("old") == 200
            # 2. The next key signs; the old key's tokens still pass.
            use_key(keys, "next")
            await eventually(lambda: _refreshed_kid(tokens), lambda kid: kid == "next", within=LIFETIME * 3)
            assert await status_with("old") == 200
            # 3. After the access-token lifetime the old key goes; its tokens stop passing.
            await asyncio.sleep(LIFETIME + 0.5)
            (keys / "old.pem").unlink()
            await eventually(published, lambda kids: kids == {"next"})
            await eventually(lambda: status_with("old"), lambda status: status == 401)
            assert await status_with("next") == 200
            await asyncio.sleep(LIFETIME)
        finally:
            done.set()
            await load
        assert failures == []
        assert passed["old"] > 0 and passed["next"] > 0, passed


async def _refreshed_kid(tokens: dict[str, Any]) -> str:
    return str(decode(tokens["token"])[0]["kid"])
