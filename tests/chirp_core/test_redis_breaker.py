"""The request path's Redis client against a real redis-server that stops answering (SIGSTOP):
a command gives up after the deadline, the breaker then refuses commands without touching the
network, lets one trial through after the open period, and closes once Redis answers again."""

from __future__ import annotations

import asyncio
import os
import signal
import statistics
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import pytest_asyncio
import redis

from chirp_app.embedded_redis import EmbeddedRedis
from chirp_core.redis_client import GuardedRedis, RedisUnavailable, open_request_redis
from chirp_core.settings import Settings

DEADLINE_MS = 50
OPEN_SECONDS = 1.0
# Generous bounds for a loaded machine: a timed-out command takes about the deadline, far less
# than the seconds a default client waits; a refused one takes no network wait at all.
TIMED_OUT_WITHIN = 0.5
REFUSED_WITHIN = 0.005


@pytest_asyncio.fixture(loop_scope="session")
async def client(redis_server: EmbeddedRedis) -> AsyncIterator[GuardedRedis]:
    settings = Settings(redis_timeout_ms=DEADLINE_MS, redis_breaker_open_seconds=OPEN_SECONDS)
    guarded = open_request_redis(redis_server.url, settings)
    try:
        yield guarded
    finally:
        await guarded.aclose()


@contextmanager
def stalled(redis_server: EmbeddedRedis) -> Iterator[None]:
    """The server is stopped (it keeps its connections open but answers nothing) until the end."""
    assert redis_server.pid is not None
    os.kill(redis_server.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(redis_server.pid, signal.SIGCONT)


async def timed(call: Callable[[], Awaitable[Any]], error: type[BaseException]) -> float:
    """Seconds until call() failed with `error`."""
    started = time.perf_counter()
    with pytest.raises(error):
        await call()
    return time.perf_counter() - started


async def test_a_stalled_redis_costs_one_deadline_then_is_skipped_until_it_answers(
    redis_server: EmbeddedRedis, client: GuardedRedis
) -> None:
    await client.mset({"a": "1", "b": "2"})
    script = client.register_script("return redis.call('GET', KEYS[1])")
    assert await script(keys=["a"]) == b"1"

    async def pipelined() -> list[Any]:
        async with client.pipeline(transaction=False) as pipe:
            pipe.get("a")
            await script(keys=["b"], client=pipe)
            return await pipe.execute()

    with stalled(redis_server):
        waited = await timed(lambda: client.get("a"), redis.TimeoutError)
        assert DEADLINE_MS / 1000 * 0.8 <= waited < TIMED_OUT_WITHIN
        assert not client.breaker.closed

        refusals = [
            await timed(call, RedisUnavailable)
            for _ in range(10)
            for call in (lambda: client.get("a"), pipelined, lambda: script(keys=["a"]))
        ]
        assert statistics.median(refusals) < REFUSED_WITHIN, refusals
        assert max(refusals) < DEADLINE_MS / 1000, refusals  # none waited on the network

        # After the open period one trial goes to Redis (and waits its deadline) while the calls
        # beside it are refused; its failure opens the breaker again.
        await asyncio.sleep(OPEN_SECONDS + 0.1)
        trial = asyncio.ensure_future(timed(lambda: client.get("a"), redis.TimeoutError))
        await asyncio.sleep(0)
        assert await timed(lambda: client.get("b"), RedisUnavailable) < REFUSED_WITHIN * 10
        assert await trial < TIMED_OUT_WITHIN
        assert await timed(lambda: client.get("a"), RedisUnavailable) < REFUSED_WITHIN * 10

    # Redis now answers the commands it had queued on the abandoned connections: those were
    # closed, so no reply lands on a later command.
    await asyncio.sleep(OPEN_SECONDS + 0.1)
    assert await client.get("b") == b"2"
    assert client.breaker.closed
    assert await client.get("a") == b"1"
    assert await pipelined() == [b"1", b"2"]
    assert await script(keys=["b"]) == b"2"


async def test_a_restarted_redis_is_used_at_once(redis_server: EmbeddedRedis, client: GuardedRedis) -> None:
    await client.set("kept", "yes")
    redis_server.stop()
    redis_server.start()  # same port, same append-only file

    # The pooled connection the restart closed is replaced by the one immediate retry.
    assert await client.get("kept") == b"yes"
    assert client.breaker.closed


async def test_an_error_reply_is_an_answer_not_an_outage(client: GuardedRedis) -> None:
    await client.set("text", "not a number")
    with pytest.raises(redis.ResponseError):
        await client.incr("text")
    assert client.breaker.closed


async def test_a_slow_call_while_redis_answers_others_does_not_open_the_breaker(
    client: GuardedRedis,
) -> None:
    """Under load a reply can miss the deadline because our event loop was busy, not Redis: while
    other calls are answered, one late call falls back alone and Redis stays in use."""
    await client.delete("nothing-here")

    async def slow() -> Any:
        return await client.blpop(["nothing-here"], timeout=1)  # Redis holds it for a second

    async def answered_meanwhile() -> None:
        for _ in range(5):
            await asyncio.sleep(0.005)
            assert await client.ping()

    slow_call = asyncio.ensure_future(timed(slow, redis.TimeoutError))
    await answered_meanwhile()
    assert await slow_call < TIMED_OUT_WITHIN
    assert client.breaker.closed
    assert await client.set("after", "1")  # not refused

    # With nothing answered while it waited, the same timeout opens it.
    await timed(slow, redis.TimeoutError)
    assert not client.breaker.closed
    await timed(lambda: client.get("after"), RedisUnavailable)
