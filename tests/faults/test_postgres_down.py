"""PostgreSQL down behind a whole stack and a real Envoy: warm timelines are still served from
Redis (and cached tokens still authenticate), writes answer 503 with a google.rpc.Status that
says the database is unavailable, within a few seconds; with PostgreSQL back, writes succeed."""

from __future__ import annotations

import shutil
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest_asyncio

from chirp_app.embedded_pg import EmbeddedPostgres
from chirp_app.stack import Stack, start_stack
from tests.conftest import settings_for_tests
from tests.support import eventually

# The pool gives up on a connection after settings.db_connect_timeout_seconds (3 s); the rest is
# room for a loaded machine.
WRITE_FAILS_WITHIN = 8.0
UNAVAILABLE = 14  # google.rpc.Code


@dataclass
class OwnPostgres:
    stack: Stack
    postgres: EmbeddedPostgres


@pytest_asyncio.fixture(loop_scope="session")
async def own_postgres(tmp_path: Path) -> AsyncIterator[OwnPostgres]:
    """A stack on a PostgreSQL the test starts and stops (the stack only has its URL). Its data
    directory is outside pytest's temp root, which the server's system user cannot enter."""
    pg_dir = Path(tempfile.mkdtemp(prefix="chirp-test-pg-down-"))
    postgres = EmbeddedPostgres(pg_dir)
    postgres.start()
    try:
        database_url = postgres.create_database("chirp")
        settings = settings_for_tests(
            database_url,
            tmp_path,
            http_port=0,
            auth_port=0,
            upstream_timeout_seconds=10.0,
            envoy_access_log=str(tmp_path / "access.log"),
        )
        stack = await start_stack(settings)
        try:
            yield OwnPostgres(stack, postgres)
        finally:
            if not postgres.running:
                postgres.start()
            await stack.stop()
    finally:
        postgres.stop()
        shutil.rmtree(pg_dir, ignore_errors=True)


async def call(
    http: aiohttp.ClientSession, method: str, path: str, token: str = "", body: dict[str, Any] | None = None
) -> tuple[int, Any]:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    async with http.request(method, path, json=body, headers=headers) as response:
        return response.status, await response.json(content_type=None)


async def sign_up(http: aiohttp.ClientSession, handle: str) -> tuple[int, str]:
    password = "correct horse battery"
    status, user = await call(http, "POST", "/users", body={"handle": handle, "password": password})
    assert status == 200, user
    status, session = await call(http, "POST", "/sessions", body={"handle": handle, "password": password})
    assert status == 200, session
    return int(user["user_id"]), session["token"]


def assert_database_unavailable(status: int, body: Any) -> None:
    assert status == 503, body
    assert body["code"] == UNAVAILABLE
    assert body["message"] == "the database is unavailable; try again"
    assert any(detail.get("reason") == "DATABASE_UNAVAILABLE" for detail in body.get("details", [])), body


async def test_with_postgresql_down_warm_reads_are_served_and_writes_get_503(
    own_postgres: OwnPostgres,
) -> None:
    stack = own_postgres.stack
    assert stack.edge is not None
    async with aiohttp.ClientSession(base_url=stack.edge.url) as http:
        suffix = uuid.uuid4().hex[:6]
        reader, reader_token = await sign_up(http, f"reader_{suffix}")
        author, author_token = await sign_up(http, f"author_{suffix}")
        other, _ = await sign_up(http, f"other_{suffix}")
        follow = {"follower_id": str(reader), "followee_id": str(author)}
        assert (await call(http, "POST", "/follow", reader_token, follow))[0] == 200
        posted = []
        for n in range(3):
            status, tweet = await call(
                http, "POST", "/tweets", author_token, {"user_id": str(author), "content": f"tweet {n}"}
            )
            assert status == 200, tweet
            posted.append(tweet["tweet_id"])
        timeline = f"/timeline?user_id={reader}&limit=20"

        async def read() -> tuple[int, Any]:
            return await call(http, "GET", timeline, reader_token)

        # Warm: the timeline and the tweets (with their authors) are in Redis.
        _, warm = await eventually(read, lambda r: [t["tweet_id"] for t in r[1]["tweets"]] == posted[::-1])
        assert (await read())[1] == warm

        own_postgres.postgres.stop()

        status, page = await read()
        assert status == 200, page
        assert page == warm

        started = time.monotonic()
        status, body = await call(
            http,
            "POST",
            "/tweets",
            author_token,
            {"user_id": str(author), "content": "while the database is down"},
        )
        assert time.monotonic() - started < WRITE_FAILS_WITHIN
        assert_database_unavailable(status, body)

        started = time.monotonic()
        status, body = await call(
            http, "POST", "/follow", reader_token, {"follower_id": str(reader), "followee_id": str(other)}
        )
        assert time.monotonic() - started < WRITE_FAILS_WITHIN
        assert_database_unavailable(status, body)

        own_postgres.postgres.start()

        async def post() -> tuple[int, Any]:
            return await call(
                http, "POST", "/tweets", author_token, {"user_id": str(author), "content": "back"}
            )

        status, tweet = await eventually(post, lambda r: r[0] == 200)
        assert tweet["content"] == "back"
        status, _ = await call(
            http, "POST", "/follow", reader_token, {"follower_id": str(reader), "followee_id": str(other)}
        )
        assert status == 200
