"""A Redis that stops answering (SIGSTOP) behind a whole stack and a real Envoy: every request
still succeeds and pays little for it (each Redis call gives up after tens of milliseconds, then
the circuit breakers skip Redis), and once Redis answers again the timelines converge. Writes
still ask the rate-limit service, whose counters are in that Redis: it answers (failing open)
within its Redis deadline, and Envoy waits for it at most settings.rate_limit_timeout_ms anyway.

Run with -s to see the latency figures."""

from __future__ import annotations

import asyncio
import os
import signal
import statistics
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
import pytest
import pytest_asyncio
import redis.asyncio

from chirp_app.embedded_redis import EmbeddedRedis
from chirp_app.stack import Stack, start_stack
from chirp_core.settings import Settings
from tests.conftest import settings_for_tests
from tests.helpers.api import eventually
from timeline_svc.storage import TimelineStore

STALL_SECONDS = 10.0
# The issue: a stalled Redis costs a request at most about 100 ms more. A warm read through Envoy
# takes a few milliseconds; this bound leaves room for a loaded test machine.
READ_P99_BOUND = 0.250
# A stalled limiter once cost a write seconds; now at most the filter's 50 ms timeout. The bound
# is generous (a loaded test machine); the measured figures are printed.
WRITE_BOUND = 1.0
WRITES_STALLED_SECONDS = 5.0
CONVERGED_WITHIN = 30.0


@dataclass
class Stalling:
    stack: Stack
    redis: EmbeddedRedis

    @contextmanager
    def stalled(self) -> Iterator[None]:
        pid = self.redis.pid
        assert pid is not None
        os.kill(pid, signal.SIGSTOP)
        try:
            yield
        finally:
            os.kill(pid, signal.SIGCONT)


@pytest.fixture
def own_database(postgres_server: str) -> Iterator[str]:
    """A database no other stack of this test session relays events from."""
    name = f"chirp_stall_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield psycopg.conninfo.make_conninfo(postgres_server, dbname=name)
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest_asyncio.fixture(loop_scope="session")
async def stalling(own_database: str, tmp_path: Path) -> AsyncIterator[Stalling]:
    server = EmbeddedRedis(tmp_path / "redis")
    server.start()
    try:
        settings = settings_for_tests(
            own_database,
            tmp_path,
            redis_url=server.url,
            http_port=0,
            auth_port=0,
            upstream_timeout_seconds=5.0,
            envoy_access_log=str(tmp_path / "access.log"),
            redis_timeout_ms=Settings().redis_timeout_ms,  # the default, which this test is about
        )
        stack = await start_stack(settings)
        try:
            yield Stalling(stack, server)
        finally:
            await stack.stop()
    finally:
        server.stop()


class Rest:
    """Plain HTTP calls to the gateway, each timed."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self._session = session

    async def call(
        self, method: str, path: str, token: str = "", body: dict[str, Any] | None = None
    ) -> tuple[int, Any, float]:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        started = time.perf_counter()
        async with self._session.request(method, path, json=body, headers=headers) as response:
            payload = await response.json(content_type=None)
            return response.status, payload, time.perf_counter() - started

    async def sign_up(self, handle: str) -> tuple[int, str]:
        password = "correct horse battery"
        status, user, _ = await self.call("POST", "/users", body={"handle": handle, "password": password})
        assert status == 200, user
        status, session, _ = await self.call(
            "POST", "/sessions", body={"handle": handle, "password": password}
        )
        assert status == 200, session
        return int(user["user_id"]), session["token"]

    async def timeline(self, user_id: int, token: str) -> tuple[int, list[int], float]:
        status, page, seconds = await self.call("GET", f"/timeline?user_id={user_id}&limit=50", token)
        ids = [int(t["tweet_id"]) for t in page.get("tweets", [])] if status == 200 else []
        return status, ids, seconds

    async def post(self, user_id: int, token: str, content: str) -> tuple[int, int, float]:
        status, tweet, seconds = await self.call(
            "POST", "/tweets", token, {"user_id": str(user_id), "content": content}
        )
        return status, int(tweet["tweet_id"]) if status == 200 else 0, seconds


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def test_a_stalled_redis_costs_requests_little_and_timelines_converge_after(
    stalling: Stalling,
) -> None:
    stack = stalling.stack
    assert stack.edge is not None
    async with aiohttp.ClientSession(base_url=stack.edge.url) as session:
        rest = Rest(session)
        suffix = uuid.uuid4().hex[:6]
        reader, reader_token = await rest.sign_up(f"reader_{suffix}")
        author, author_token = await rest.sign_up(f"author_{suffix}")
        status, body, _ = await rest.call(
            "POST", "/follow", reader_token, {"follower_id": str(reader), "followee_id": str(author)}
        )
        assert status == 200, body
        before = [(await rest.post(author, author_token, f"before {n}"))[1] for n in range(3)]
        await eventually(lambda: rest.timeline(reader, reader_token), lambda r: r[1][:3] == before[::-1])
        warm = [(await rest.timeline(reader, reader_token))[2] for _ in range(20)]

        reads: list[tuple[int, float]] = []
        writes: list[tuple[int, float]] = []
        posted: list[int] = []
        with stalling.stalled():
            stall_ends = time.monotonic() + STALL_SECONDS
            while time.monotonic() < stall_ends:
                status, _, seconds = await rest.timeline(reader, reader_token)
                reads.append((status, seconds))
                if len(reads) % 5 == 0:
                    status, tweet_id, seconds = await rest.post(author, author_token, f"stalled {len(reads)}")
                    writes.append((status, seconds))
                    posted.append(tweet_id)
                await asyncio.sleep(0.02)

        read_seconds = [seconds for _, seconds in reads]
        write_seconds = [seconds for _, seconds in writes]
        print(
            f"\nwarm reads before the stall: p50 {statistics.median(warm) * 1000:.1f} ms,"
            f" p99 {percentile(warm, 0.99) * 1000:.1f} ms"
            f"\nRedis stalled {STALL_SECONDS:.0f} s: {len(reads)} reads, p50"
            f" {statistics.median(read_seconds) * 1000:.1f} ms,"
            f" p99 {percentile(read_seconds, 0.99) * 1000:.1f} ms,"
            f" max {max(read_seconds) * 1000:.1f} ms; {len(writes)} tweets posted, p50"
            f" {statistics.median(write_seconds) * 1000:.1f} ms, max {max(write_seconds) * 1000:.1f} ms"
        )
        assert {status for status, _ in reads} == {200}
        assert {status for status, _ in writes} == {200}
        assert percentile(read_seconds, 0.99) < READ_P99_BOUND
        assert len(reads) > STALL_SECONDS * 5  # the loop kept going: nothing waited for seconds

        # Redis answers again: the tweets posted meanwhile reach the reader's Redis timeline (the
        # relay publishes their events, the workers fan them out) and the reads served from it.
        client = redis.asyncio.Redis.from_url(stalling.redis.url)
        try:
            store = TimelineStore(
                client,
                namespace=stack.settings.timeline_namespace,
                cap=stack.settings.timeline_size,
                ttl_seconds=60,
            )

            async def in_redis() -> set[int]:
                return {entry.tweet_id for entry in await store.entries(reader)}

            await eventually(in_redis, lambda ids: set(posted) <= ids, within=CONVERGED_WITHIN)
        finally:
            await client.aclose()
        expected = sorted([*before, *posted], reverse=True)[:50]
        await eventually(lambda: rest.timeline(reader, reader_token), lambda r: r[1] == expected)


def rate_limit_decisions(stack: Stack, cluster: str) -> dict[str, int]:
    """The ratelimit filter's outcomes on the routes to `cluster`: ok and over_limit (the service
    answered), error and failure_mode_allowed (no answer in time: let through)."""
    assert stack.edge is not None and stack.edge.envoy is not None
    prefix = f"cluster.{cluster}.ratelimit."
    stats = stack.edge.envoy.stats(prefix)
    return {
        outcome: stats.get(prefix + outcome, 0)
        for outcome in ("ok", "over_limit", "error", "failure_mode_allowed")
    }


async def test_a_stalled_redis_holds_writes_at_the_rate_limiter_briefly(stalling: Stalling) -> None:
    """Follows and unfollows (the graph service does not use Redis, so what Redis costs them is
    the edge's: the rate limiter and the token check) while Redis is stalled."""
    stack = stalling.stack
    assert stack.edge is not None
    assert stack.settings.rate_limit_timeout_ms == Settings().rate_limit_timeout_ms == 50
    async with aiohttp.ClientSession(base_url=stack.edge.url) as session:
        rest = Rest(session)
        suffix = uuid.uuid4().hex[:6]
        follower, token = await rest.sign_up(f"follower_{suffix}")
        followees = [(await rest.sign_up(f"followee{n}_{suffix}"))[0] for n in range(3)]

        async def write(n: int) -> tuple[int, float]:
            body = {"follower_id": str(follower), "followee_id": str(followees[n // 2 % len(followees)])}
            status, answer, seconds = await rest.call("DELETE" if n % 2 else "POST", "/follow", token, body)
            assert status == 200, answer
            return status, seconds

        warm = [(await write(n))[1] for n in range(12)]
        before = await asyncio.to_thread(rate_limit_decisions, stack, "graph")
        stalled: list[tuple[int, float]] = []
        with stalling.stalled():
            stall_ends = time.monotonic() + WRITES_STALLED_SECONDS
            while time.monotonic() < stall_ends:
                stalled.append(await write(len(stalled)))
                await asyncio.sleep(0.02)
        after = await asyncio.to_thread(rate_limit_decisions, stack, "graph")

    seconds = [s for _, s in stalled]
    decided = {outcome: after[outcome] - before[outcome] for outcome in after}
    print(
        f"\nfollow/unfollow before the stall: p50 {statistics.median(warm) * 1000:.1f} ms,"
        f" max {max(warm) * 1000:.1f} ms"
        f"\nRedis stalled {WRITES_STALLED_SECONDS:.0f} s: {len(stalled)} follows/unfollows, p50"
        f" {statistics.median(seconds) * 1000:.1f} ms, p99 {percentile(seconds, 0.99) * 1000:.1f} ms,"
        f" max {max(seconds) * 1000:.1f} ms; rate-limit decisions meanwhile: {decided}"
    )
    assert {status for status, _ in stalled} == {200}
    # Every write asked the limiter and was let through: answered OK (the service failing open
    # on Redis) or not answered within the filter's timeout (Envoy failing open).
    assert decided["ok"] + decided["error"] == len(stalled), decided
    assert decided["over_limit"] == 0
    assert max(seconds) < WRITE_BOUND
    assert len(stalled) > WRITES_STALLED_SECONDS * 5  # the loop kept going: nothing waited for seconds
