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
from tests.helpers.api import eventually
from tests.helpers.rest import Reply, call, sign_up

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
        reader = await sign_up(http, f"reader_{suffix}")
        author = await sign_up(http, f"author_{suffix}")
        other = await sign_up(http, f"other_{suffix}")
        follow = {"follower_id": str(reader.id), "followee_id": str(author.id)}
        (await call(http, "POST", "/follow", user=reader, json=follow)).expect(200)
        posted = []
        for n in range(3):
            tweet = {"user_id": str(author.id), "content": f"tweet {n}"}
            posted.append(
                (await call(http, "POST", "/tweets", user=author, json=tweet)).expect(200).json["tweet_id"]
            )
        timeline = f"/timeline?user_id={reader.id}&limit=20"

        async def read() -> Reply:
            return await call(http, "GET", timeline, user=reader)

        # Warm: the timeline and the tweets (with their authors) are in Redis.
        warm = (
            await eventually(read, lambda r: [t["tweet_id"] for t in r.json["tweets"]] == posted[::-1])
        ).json
        assert (await read()).json == warm

        own_postgres.postgres.stop()

        page = (await read()).expect(200).json
        assert page == warm

        started = time.monotonic()
        down = {"user_id": str(author.id), "content": "while the database is down"}
        reply = await call(http, "POST", "/tweets", user=author, json=down)
        assert time.monotonic() - started < WRITE_FAILS_WITHIN
        assert_database_unavailable(reply.status, reply.json)

        started = time.monotonic()
        follow_other = {"follower_id": str(reader.id), "followee_id": str(other.id)}
        reply = await call(http, "POST", "/follow", user=reader, json=follow_other)
        assert time.monotonic() - started < WRITE_FAILS_WITHIN
        assert_database_unavailable(reply.status, reply.json)

        own_postgres.postgres.start()

        async def post() -> Reply:
            back = {"user_id": str(author.id), "content": "back"}
            return await call(http, "POST", "/tweets", user=author, json=back)

        assert (await eventually(post, lambda r: r.status == 200)).json["content"] == "back"
        (await call(http, "POST", "/follow", user=reader, json=follow_other)).expect(200)
