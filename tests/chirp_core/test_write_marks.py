"""Each user's last write position in Redis (chirp_core.write_marks), on a real Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from chirp_app.embedded_redis import EmbeddedRedis
from chirp_core.redis_client import GuardedRedis, open_request_redis
from chirp_core.settings import Settings
from chirp_core.write_marks import MarksUnavailable, WriteMarks, mark_key


@pytest_asyncio.fixture(loop_scope="session")
async def client(redis_server: EmbeddedRedis) -> AsyncIterator[GuardedRedis]:
    guarded = open_request_redis(redis_server.url, Settings(redis_timeout_ms=200))
    yield guarded
    await guarded.aclose()


async def test_a_mark_keeps_the_latest_position_for_the_lag_bound(client: GuardedRedis) -> None:
    marks = WriteMarks(client, ttl_seconds=30)
    assert await marks.position(7) is None
    await marks.mark(7, 5_000)
    await marks.mark(7, 4_000)  # an earlier write, recorded late: the later one stays
    assert await marks.position(7) == 5_000
    await marks.mark(7, 6_000)
    assert await marks.position(7) == 6_000
    assert await marks.position(8) is None
    ttl_ms = await client.pttl(mark_key(7))
    assert 0 < ttl_ms <= 30_000


async def test_an_unreachable_redis_is_reported_not_taken_for_no_write(
    client: GuardedRedis, redis_server: EmbeddedRedis
) -> None:
    marks = WriteMarks(client, ttl_seconds=30)
    await marks.mark(7, 5_000)
    redis_server.stop()
    await marks.mark(7, 6_000)  # logged; the write itself stands
    with pytest.raises(MarksUnavailable):
        await marks.position(7)
