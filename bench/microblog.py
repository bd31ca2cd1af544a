"""The microblog phase: a graph shaped like the common microblog benchmark (N users, each
following K others drawn at random and posting T tweets), seeded over gRPC, then closed-loop
reads of warm home timelines with each count of clients: through Envoy with wrk (or the Python
driver when wrk is missing), straight to the timeline service over gRPC, and gRPC Health.Check,
the ceiling of that path, all on the same stack in the same run.

Seeding measures the write paths too: follows/s and tweets/s over gRPC with a fixed number of
calls in flight. Users are loaded with COPY (the benchmark's cheap password hash) and logged in
through the gateway as in the other phases.
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
import time
from array import array
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import grpc

from bench import wrk
from bench.config import BenchConfig
from bench.cpu import CpuMeter
from bench.graphgen import Dataset, snowflake
from bench.loader import BENCH_PASSWORD
from bench.phases import READS_ONLY, StackUnderTest, run_phase
from bench.plan import Plan
from bench.probes import LOCAL_POOL, cold_readers, fanout_depth, login, warm_timeline_bytes
from bench.progress import Progress
from bench.stats import summarize
from chirp.graph.v1 import graph_pb2, graph_pb2_grpc
from chirp.tweets.v1 import tweets_pb2, tweets_pb2_grpc
from chirp_core.rpc import USER_ID_HEADER

LIMIT = 20
HANDLE_PREFIX = "mb_"
DATABASE = "bench_microblog"
SEED_CHANNELS = 4
WARM_CONCURRENCY = 8
WARM_PASSES = 6
# The later passes read gently: a Redis slow enough to open the circuit breaker sends every read
# of that second to PostgreSQL, which rebuilds nothing.
REWARM_CONCURRENCY = 2
# Longer than the open period of a Redis circuit breaker (chirp_core.redis_client), which a busy
# Redis may have opened during the first reads.
BREAKER_SECONDS = 1.5
# Tweets of the COPY-loaded history are spread over this last stretch of time.
HISTORY_MS = 86_400_000

T = TypeVar("T")


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# The seeding's fan-out (every tweet pushed to its author's warm followers) must be done before
# the reads are measured, or they measure it too. A bound for a loaded machine.
SETTLE_SECONDS = 600.0
SETTLE_QUIET_SAMPLES = 3


async def settle(stack: StackUnderTest) -> float:
    """Wait until the fan-out workers have taken every event (the stream's depth is 0 for a few
    samples in a row); the seconds waited."""
    started = time.monotonic()
    quiet = 0
    while stack.redis_url and time.monotonic() - started < SETTLE_SECONDS:
        depth = await fanout_depth(stack.redis_url, stack.events_stream)
        quiet = quiet + 1 if not depth else 0
        if quiet >= SETTLE_QUIET_SAMPLES:
            break
        await asyncio.sleep(0.5)
    else:
        if stack.redis_url:
            _say(f"chirp bench: the fan-out still had events after {SETTLE_SECONDS:.0f} s; measuring anyway")
    return time.monotonic() - started


@dataclass(frozen=True)
class SeedPlan:
    """What is loaded with COPY (every user, and the follows and tweets not seeded over gRPC),
    and what is seeded over gRPC, in order."""

    copied: Dataset
    follows: tuple[tuple[int, int], ...]
    tweets: tuple[tuple[int, str], ...]

    @property
    def user_ids(self) -> list[int]:
        return list(self.copied.user_ids)

    def shape(self) -> dict[str, int]:
        return {
            "users": self.copied.users,
            "follows": len(self.copied.follower_idx) + len(self.follows),
            "tweets": len(self.copied.tweet_ids) + len(self.tweets),
            "grpc_follows": len(self.follows),
            "grpc_tweets": len(self.tweets),
            "copied_follows": len(self.copied.follower_idx),
            "copied_tweets": len(self.copied.tweet_ids),
        }


def make_seed_plan(config: BenchConfig, now_ms: int) -> SeedPlan:
    """Every user follows `microblog_follows` others drawn uniformly and posts `microblog_tweets`
    tweets. Follows go out in a random order, tweets one per user in turn; the first
    `microblog_grpc_*` of each go over gRPC (all when None), the rest are copied."""
    rng = random.Random(config.seed + 7)
    users = config.microblog_users
    created = array("q", (now_ms - 2 * HISTORY_MS + index for index in range(users)))
    user_ids = array("q", (snowflake(ms, 0) for ms in created))
    edges = [
        (follower, other if other < follower else other + 1)
        for follower in range(users)
        for other in rng.sample(range(users - 1), config.microblog_follows)
    ]
    rng.shuffle(edges)
    tweets = [
        (author, f"{HANDLE_PREFIX}{author} tweet {number}: the quick brown fox jumps over the lazy dog")
        for number in range(config.microblog_tweets)
        for author in range(users)
    ]
    follows_over_grpc = _count(config.microblog_grpc_follows, len(edges))
    tweets_over_grpc = _count(config.microblog_grpc_tweets, len(tweets))
    copied_edges = sorted(edges[follows_over_grpc:])
    copied_tweets = tweets[tweets_over_grpc:]
    moments = sorted(rng.randint(now_ms - HISTORY_MS, now_ms - 60_000) for _ in copied_tweets)
    copied = Dataset(
        seed=config.seed,
        user_ids=user_ids,
        handles=[f"{HANDLE_PREFIX}{index}" for index in range(users)],
        created_ms=created,
        follower_idx=array("q", (follower for follower, _ in copied_edges)),
        followee_idx=array("q", (followee for _, followee in copied_edges)),
        follow_ms=array("q", (now_ms - 2 * HISTORY_MS + users for _ in copied_edges)),
        celebrities=0,
        threshold=users,
        tweet_ids=array("q", _distinct_ids(moments)),
        tweet_author=array("q", (author for author, _ in copied_tweets)),
        tweet_ms=array("q", moments),
        tweet_text=[text for _, text in copied_tweets],
    )
    return SeedPlan(
        copied=copied,
        follows=tuple((user_ids[a], user_ids[b]) for a, b in edges[:follows_over_grpc]),
        tweets=tuple((user_ids[author], text) for author, text in tweets[:tweets_over_grpc]),
    )


def _count(wanted: int | None, total: int) -> int:
    return total if wanted is None else max(0, min(wanted, total))


def _distinct_ids(moments: Sequence[int]) -> list[int]:
    """Snowflakes for sorted moments: several in one millisecond take increasing sequences."""
    ids, last_ms, sequence = [], -1, 0
    for ms in moments:
        sequence = sequence + 1 if ms == last_ms else 0
        last_ms = ms
        ids.append(snowflake(ms, sequence))
    return ids


def _as(user_id: int) -> tuple[tuple[str, str], ...]:
    return ((USER_ID_HEADER, str(user_id)),)


async def _seed(
    target: str,
    make_stub: Callable[[grpc.aio.Channel], Any],
    items: Sequence[T],
    call: Callable[[Any, T], Awaitable[Any]],
    *,
    concurrency: int,
    label: str,
    meter: CpuMeter,
) -> dict[str, Any]:
    """Every item's call with `concurrency` calls in flight over a few channels: calls/s, latency,
    errors and the CPU each group of processes spent meanwhile."""
    channels = [grpc.aio.insecure_channel(target, options=LOCAL_POOL) for _ in range(SEED_CHANNELS)]
    try:
        await asyncio.gather(*(channel.channel_ready() for channel in channels))
        stubs = [make_stub(channel) for channel in channels]
        pending = iter(items)
        latencies: list[float] = []
        samples: list[str] = []
        errors = 0
        bar = Progress(label, len(items), unit="calls")

        async def client(index: int) -> None:
            nonlocal errors
            stub = stubs[index % len(stubs)]
            for item in pending:
                began = time.perf_counter()
                try:
                    await call(stub, item)
                except grpc.aio.AioRpcError as error:
                    errors += 1
                    if len(samples) < 3:
                        samples.append(f"{error.code().name}: {error.details()}"[:300])
                else:
                    latencies.append(time.perf_counter() - began)
                bar.advance()

        before = meter.snapshot()
        began = time.perf_counter()
        await asyncio.gather(*(client(index) for index in range(concurrency)))
        seconds = time.perf_counter() - began
        cpu = CpuMeter.delta(before, meter.snapshot())
        bar.close()
    finally:
        for channel in channels:
            await channel.close(None)
    return {
        "calls": len(items),
        "ok": len(latencies),
        "errors": errors,
        "error_samples": samples,
        "seconds": seconds,
        "per_second": len(latencies) / seconds if seconds > 0 else None,
        "concurrency": concurrency,
        "latency": summarize(latencies).as_dict(),
        "cpu_seconds": cpu,
    }


async def seed(config: BenchConfig, stack: StackUnderTest, plan: SeedPlan) -> dict[str, Any]:
    """The follows, then the tweets, over gRPC. The bench process's own CPU is the 'load' group."""
    meter = CpuMeter({**stack.pids, "load": lambda: [os.getpid()]})

    async def follow(stub: Any, edge: tuple[int, int]) -> None:
        request = graph_pb2.FollowRequest(follower_id=edge[0], followee_id=edge[1])
        await stub.Follow(request, metadata=_as(edge[0]), timeout=30)

    async def tweet(stub: Any, item: tuple[int, str]) -> None:
        request = tweets_pb2.CreateTweetRequest(user_id=item[0], content=item[1])
        await stub.CreateTweet(request, metadata=_as(item[0]), timeout=30)

    out: dict[str, Any] = {}
    if plan.follows:
        out["follows"] = await _seed(
            stack.targets.graph,
            graph_pb2_grpc.GraphServiceStub,
            plan.follows,
            follow,
            concurrency=config.seed_concurrency,
            label="microblog: follows over gRPC",
            meter=meter,
        )
    if plan.tweets:
        out["tweets"] = await _seed(
            stack.targets.tweets,
            tweets_pb2_grpc.TweetServiceStub,
            plan.tweets,
            tweet,
            concurrency=config.seed_concurrency,
            label="microblog: tweets over gRPC",
            meter=meter,
        )
    return out


async def warm_all(stack: StackUnderTest, accounts: Sequence[tuple[int, str]]) -> dict[str, Any]:
    """The first read of every account (measured), then reads of the timelines still cold in
    Redis (a rebuild a busy Redis did not answer in time), up to WARM_PASSES in all, so that the
    measured reads find every timeline warm. Stops early when none warmed (a pull-mode stack)."""
    first = await warm(stack.targets.url, accounts, "microblog: first reads (cold)")
    passes, cold = 1, set[int]()
    if stack.redis_url:
        readers = [user_id for user_id, _ in accounts]
        await asyncio.sleep(1.0)  # the rebuilds' follow-up writes land
        cold = await cold_readers(stack.redis_url, stack.timeline_namespace, readers)
        while cold and len(cold) < len(readers) and passes < WARM_PASSES:
            await asyncio.sleep(BREAKER_SECONDS)
            again = [(user_id, token) for user_id, token in accounts if user_id in cold]
            label = f"microblog: reads of {len(again)} cold timelines"
            await warm(stack.targets.url, again, label, concurrency=REWARM_CONCURRENCY)
            passes += 1
            await asyncio.sleep(1.0)
            cold = await cold_readers(stack.redis_url, stack.timeline_namespace, readers)
        if cold:
            _say(f"chirp bench: {len(cold)} of {len(readers)} microblog timelines are not warm")
    return {**first, "passes": passes, "not_warm": len(cold)}


async def warm(
    url: str, accounts: Sequence[tuple[int, str]], label: str, *, concurrency: int = WARM_CONCURRENCY
) -> dict[str, Any]:
    """One GET /timeline per account through the gateway: each timeline is rebuilt (and kept
    warm) and each token has been checked once before the measured reads."""
    gate = asyncio.Semaphore(concurrency)
    latencies: list[float] = []
    failures: list[str] = []
    bar = Progress(label, len(accounts), unit="reads")

    async def one(http: aiohttp.ClientSession, user_id: int, token: str) -> None:
        async with gate:
            began = time.perf_counter()
            headers = {"Authorization": f"Bearer {token}"}
            params = {"user_id": str(user_id), "limit": str(LIMIT)}
            async with http.get("/timeline", headers=headers, params=params) as response:
                body = await response.read()
                if response.status == 200:
                    latencies.append(time.perf_counter() - began)
                elif len(failures) < 3:
                    failures.append(f"{response.status} {body[:200]!r}")
            bar.advance()

    async with aiohttp.ClientSession(base_url=url) as http:
        await asyncio.gather(*(one(http, user_id, token) for user_id, token in accounts))
    bar.close()
    return {**summarize(latencies, errors=len(accounts) - len(latencies)).as_dict(), "samples": failures}


def _split(config: BenchConfig, clients: int) -> BenchConfig:
    """The Python driver's processes for `clients` closed-loop clients: two when they split
    evenly, so one process's event loop is not what limits the reads."""
    processes = 2 if clients % 2 == 0 else 1
    return replace(config, load_processes=processes, concurrency=clients // processes, timeline_limit=LIMIT)


async def rest_reads(
    config: BenchConfig,
    stack: StackUnderTest,
    accounts: Sequence[tuple[int, str]],
    plan: Plan,
    clients: int,
    wrk_path: str | None,
    folder: Path,
) -> dict[str, Any]:
    """GET /timeline?user_id=..&limit=20 through Envoy, each account's token in turn, `clients`
    connections: wrk when there is one, else the Python driver."""
    label = f"microblog: REST reads, {clients} clients"
    if wrk_path is None:
        result = await run_phase(
            _split(config, clients),
            stack,
            list(accounts),
            plan,
            label=label + " (Python driver)",
            path="rest",
            mix=READS_ONLY,
            seconds=config.microblog_seconds,
        )
        return {**result, "tool": "python", "clients": clients}
    requests = list(
        zip(
            wrk.timeline_paths([user_id for user_id, _ in accounts], LIMIT),
            [token for _, token in accounts],
            strict=True,
        )
    )
    meter = CpuMeter(stack.pids)
    before = meter.snapshot()
    running = asyncio.ensure_future(
        wrk.run(
            wrk_path,
            stack.targets.url,
            requests,
            connections=clients,
            seconds=config.microblog_seconds,
            folder=folder,
        )
    )
    await Progress(label + " (wrk)", config.microblog_seconds, unit="s").follow_clock(
        config.microblog_seconds
    )
    found, load_cpu = await running
    cpu = CpuMeter.delta(before, meter.snapshot())
    return {
        "tool": "wrk",
        "clients": clients,
        "ops": {"timeline_read": found.summary()},
        "errors_by_kind": {
            "connect": found.connect,
            "read": found.read,
            "write": found.write,
            "status": found.status,
            "timeout": found.timeout,
        },
        "cpu_seconds": {**cpu, "load": load_cpu},
        "load_cpu_seconds": load_cpu,
        "window_seconds": found.seconds,
        "path": "rest",
    }


async def measure(
    config: BenchConfig, stack: StackUnderTest, seed_plan: SeedPlan, folder: Path
) -> dict[str, Any]:
    """Seed, log in, warm every timeline, then per client count: REST reads, gRPC reads and the
    Health.Check ceiling."""
    out: dict[str, Any] = {"graph": seed_plan.shape(), "processes": stack.processes}
    out["seeding"] = await seed(config, stack, seed_plan)
    for kind in ("follows", "tweets"):
        if kind in out["seeding"]:
            done = out["seeding"][kind]
            _say(f"chirp bench: microblog seeding: {done['per_second']:,.0f} {kind}/s over gRPC")
    out["settle_seconds"] = await settle(stack)
    _say(f"chirp bench: microblog seeding's fan-out done {out['settle_seconds']:.1f} s after the seeding")
    handles = [(user_id, seed_plan.copied.handles[i]) for i, user_id in enumerate(seed_plan.user_ids)]
    accounts = await login(stack.targets.url, handles, BENCH_PASSWORD)
    out["first_reads"] = await warm_all(stack, accounts)
    plan = Plan(accounts=(), probes=(), population=tuple(seed_plan.user_ids))
    wrk_path = wrk.find_wrk()
    if wrk_path is None:
        _say("chirp bench: wrk is not on PATH; the microblog phase's REST reads use the Python driver")
    out["rest_tool"] = "wrk" if wrk_path else "python"
    runs = []
    for clients in config.microblog_clients:
        split = _split(config, clients)
        runs.append(
            {
                "clients": clients,
                "rest": await rest_reads(config, stack, accounts, plan, clients, wrk_path, folder),
                "grpc": await run_phase(
                    split,
                    stack,
                    accounts,
                    plan,
                    label=f"microblog: gRPC reads, {clients} clients",
                    path="grpc",
                    mix=READS_ONLY,
                    seconds=config.microblog_seconds,
                ),
                "ceiling": await run_phase(
                    split,
                    stack,
                    [],
                    plan,
                    label=f"microblog: Health.Check, {clients} clients",
                    path="grpc",
                    mix=READS_ONLY,
                    seconds=config.microblog_seconds,
                    ceiling=True,
                ),
            }
        )
    out["runs"] = runs
    if stack.redis_url:
        readers = [user_id for user_id, _ in accounts]
        out["redis"] = await warm_timeline_bytes(stack.redis_url, stack.timeline_namespace, readers)
    return out
