"""Fixtures for the fan-out tests: timeline servers in each mode in front of the session's graph and
tweets services and Redis, each in a Redis namespace (and consumer group) of its own; and, for
the tests that stop Redis, a whole stack on a database and an embedded Redis of its own."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from chirp_app.embedded_redis import EmbeddedRedis
from chirp_app.stack import Stack, start_stack
from tests.conftest import settings_for_tests
from tests.helpers.database import own_database
from tests.helpers.fanout import Timeline, start_timeline

MODES = ["pull", "push", "hybrid"]
StartTimeline = Callable[..., Awaitable[Timeline]]


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest_asyncio.fixture(loop_scope="session")
async def timelines(stack: Stack) -> AsyncIterator[StartTimeline]:
    """Start timeline servers (mode, settings overrides) for this test; all stopped after it."""
    started: list[Timeline] = []

    async def start(mode: str, **changes: Any) -> Timeline:
        timeline = await start_timeline(stack.settings, mode, **changes)
        started.append(timeline)
        return timeline

    yield start
    for timeline in reversed(started):
        await timeline.stop()


@pytest_asyncio.fixture(loop_scope="session")
async def timeline(timelines: StartTimeline, mode: str) -> Timeline:
    """A timeline server in `mode`, with the celebrity threshold at 3 followers."""
    return await timelines(mode)


@pytest.fixture
def own_redis() -> Iterator[EmbeddedRedis]:
    """An embedded Redis for this test only, which the test may stop and start again."""
    if os.environ.get("CHIRP_TEST_REDIS_URL"):
        pytest.skip("stops an embedded Redis")
    directory = Path(tempfile.mkdtemp(prefix="chirp-test-redis-"))
    server = EmbeddedRedis(directory)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)


@pytest_asyncio.fixture(loop_scope="session")
async def own_stack(own_redis: EmbeddedRedis, postgres_server: str, tmp_path: Path) -> AsyncIterator[Stack]:
    """Graph, tweets and timeline services on a database and a Redis of their own: their outbox
    relays then hand events only to that Redis (those of the session's stack would compete for
    the rows of a shared database)."""
    async with own_database(postgres_server, "fanout") as url:
        settings = settings_for_tests(url, tmp_path, redis_url=own_redis.url, timeline_namespace="own")
        running = await start_stack(settings, with_edge=False)
        try:
            yield running
        finally:
            await running.stop()
