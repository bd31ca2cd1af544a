"""Home timeline benchmark on a fresh in-process stack (embedded PostgreSQL and Redis, hybrid mode).

    python bench/fanout.py [--followers 5000] [--tweets 40] [--reads 300]

Prints, on this machine:
  fan-out lag p50/p99 of an author with --followers followers, every timeline warm: from the
    tweet's creation (its ID's millisecond) to its author's own timeline holding it, which the
    workers write after the last follower batch;
  GetHomeTimeline latency p50/p99 (20 tweets, through gRPC) for a warm user, for a cold user
    following 1,000 accounts (the first read rebuilds from PostgreSQL), and for a user following
    20 celebrities (merged at read time);
  Redis memory of one warm timeline (MEMORY USAGE of its keys).
The users, follows and the tweets that only need to exist (not be fanned out) are bulk-loaded with
COPY by bench.loader.
"""

from __future__ import annotations

import argparse
import asyncio
import operator
import sys
import tempfile
import time
from array import array
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import grpc
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.graphgen import Dataset
from bench.loader import load, password_hash
from bench.stats import summarize
from chirp.timeline.v1 import timeline_pb2, timeline_pb2_grpc
from chirp.tweets.v1 import tweets_pb2, tweets_pb2_grpc
from chirp_app.stack import start_stack
from chirp_core.redis_client import open_redis
from chirp_core.rpc import USER_ID_HEADER
from chirp_core.settings import Settings
from chirp_core.snowflake import lowest_id_at, timestamp_of
from timeline_svc.storage import TimelineStore

BASE_ID = 10**12  # bulk-loaded users: far below every Snowflake ID
AUTHOR = BASE_ID
FOLLOWERS_START = BASE_ID + 1
WIDE_START = BASE_ID + 100_000  # the 1,000 accounts the cold users follow
COLD_START = BASE_ID + 200_000
CELEB_START = BASE_ID + 300_000
CELEB_READER = BASE_ID + 400_000
WIDE = 1_000
CELEBRITIES = 20


def meta(user_id: int) -> tuple[tuple[str, str], ...]:
    return ((USER_ID_HEADER, str(user_id)),)


def percentiles(samples_s: Sequence[float]) -> str:
    summary = summarize(samples_s)
    return f"p50 {summary.p50:7.2f} ms   p99 {summary.p99:7.2f} ms   (n={summary.count})"


def scenario(followers: list[int], wide: list[int], cold: list[int], celebs: list[int]) -> Dataset:
    """The accounts, follows and tweet history of the runs below, as bench.loader loads them:
    the author and their followers (the first also follows 200 of `wide`), cold users following all
    of `wide`, and a reader following every celebrity; 5 tweets of each `wide` account and 200 of
    each celebrity over the last day."""
    users = [*celebs, AUTHOR, *followers, *wide, *cold, CELEB_READER]
    index = {user: i for i, user in enumerate(users)}
    edges = [(f, AUTHOR) for f in followers]
    edges += [(f, w) for f in followers[:1] for w in wide[:200]]
    edges += [(c, w) for c in cold for w in wide]
    edges += [(CELEB_READER, c) for c in celebs]
    now_ms = int(time.time() * 1000)
    day_ago = now_ms - 24 * 3600 * 1000
    tweets = sorted(
        (tweet_id, author, int(timestamp_of(tweet_id).timestamp() * 1000))
        for authors, each in ((wide, 5), (celebs, 200))
        for tweet_id, author in _history(authors, each, day_ago)
    )
    return Dataset(
        seed=0,
        user_ids=array("q", users),
        handles=[f"b{user}" for user in users],
        created_ms=array("q", [day_ago] * len(users)),
        follower_idx=array("q", (index[f] for f, _ in edges)),
        followee_idx=array("q", (index[f] for _, f in edges)),
        follow_ms=array("q", [day_ago] * len(edges)),
        celebrities=len(celebs),
        threshold=Settings().celebrity_threshold,
        tweet_ids=array("q", (t[0] for t in tweets)),
        tweet_author=array("q", (index[t[1]] for t in tweets)),
        tweet_ms=array("q", (t[2] for t in tweets)),
        tweet_text=[f"bulk tweet of {t[1]}" for t in tweets],
    )


def _history(authors: Sequence[int], each: int, since_ms: int) -> list[tuple[int, int]]:
    """`each` tweet IDs per author spread over the day after since_ms, unique per author."""
    start = lowest_id_at(datetime.fromtimestamp(since_ms / 1000, UTC))
    step = (24 * 3600 * 1000) // (each + 1)
    return [
        (start + (((n + 1) * step) << 22) + (i % 4096), author)
        for i, author in enumerate(authors)
        for n in range(each)
    ]


async def until(probe: Callable[[], Awaitable[Any]], done: Callable[[Any], bool], every: float) -> None:
    """Poll `probe` every `every` seconds until `done`, for 30 seconds at most."""
    deadline = time.monotonic() + 30
    for _ in range(int(30 / every)):
        if done(await probe()) or time.monotonic() > deadline:
            return
        await asyncio.sleep(every)


async def timed(calls: Sequence[Callable[[], Awaitable[object]]], concurrency: int = 1) -> list[float]:
    samples: list[float] = []
    gate = asyncio.Semaphore(concurrency)

    async def one(call: Callable[[], Awaitable[object]]) -> None:
        async with gate:
            began = time.perf_counter()
            await call()
            samples.append(time.perf_counter() - began)

    await asyncio.gather(*(one(c) for c in calls))
    return samples


async def main(args: argparse.Namespace) -> None:
    data_dir = Path(tempfile.mkdtemp(prefix="chirp-bench-"))
    settings = Settings(
        data_dir=data_dir,
        graph_port=0,
        tweets_port=0,
        timeline_port=0,
        metrics_port=None,
        log_level="WARNING",
        fanout_block_seconds=0.5,
    )
    print(f"starting a fresh stack in {data_dir} ...", flush=True)
    stack = await start_stack(settings, with_edge=False)
    try:
        await run(
            stack.database_url, stack.redis_url, stack.address("tweets"), stack.address("timeline"), args
        )
    finally:
        await stack.stop()


async def run(
    database_url: str, redis_url: str, tweets_addr: str, timeline_addr: str, args: argparse.Namespace
) -> None:
    followers = list(range(FOLLOWERS_START, FOLLOWERS_START + args.followers))
    wide = list(range(WIDE_START, WIDE_START + WIDE))
    cold = list(range(COLD_START, COLD_START + args.cold_users))
    celebs = list(range(CELEB_START, CELEB_START + CELEBRITIES))
    began = time.perf_counter()
    dataset = scenario(followers, wide, cold, celebs)
    await asyncio.to_thread(load, database_url, dataset, password_hash())
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        # The celebrities' audiences, as counts only: 50,000 followers each.
        await conn.execute("UPDATE graph.users SET follower_count = 50000 WHERE user_id = ANY(%s)", (celebs,))
    print(
        f"loaded {len(dataset.follower_idx):,} follows, {len(dataset.tweet_ids):,} tweets"
        f" in {time.perf_counter() - began:.1f}s",
        flush=True,
    )

    tweets_channel = grpc.aio.insecure_channel(tweets_addr)
    timeline_channel = grpc.aio.insecure_channel(timeline_addr)
    tweets = tweets_pb2_grpc.TweetServiceStub(tweets_channel)
    timeline = timeline_pb2_grpc.TimelineServiceStub(timeline_channel)
    redis = open_redis(redis_url)
    settings = Settings()
    store = TimelineStore(
        redis, namespace=settings.timeline_namespace, cap=settings.timeline_size, ttl_seconds=60
    )

    async def read(user_id: int, limit: int = 20) -> timeline_pb2.GetHomeTimelineResponse:
        request = timeline_pb2.GetHomeTimelineRequest(user_id=user_id, limit=limit)
        return await timeline.GetHomeTimeline(request, metadata=meta(user_id), timeout=30)

    async def post(user_id: int, content: str) -> tweets_pb2.Tweet:
        request = tweets_pb2.CreateTweetRequest(user_id=user_id, content=content)
        return await tweets.CreateTweet(request, metadata=meta(user_id))

    try:
        # Fan-out lag: every follower (and the author) warm, then one tweet at a time.
        began = time.perf_counter()
        await timed([partial(read, u) for u in [AUTHOR, *followers]], concurrency=32)
        print(f"warmed {len(followers) + 1:,} timelines in {time.perf_counter() - began:.1f}s", flush=True)
        lags: list[float] = []

        async def in_authors_timeline(tweet_id: int) -> bool:
            return any(entry.tweet_id == tweet_id for entry in await store.entries(AUTHOR))

        for n in range(args.tweets):
            tweet = await post(AUTHOR, f"to {len(followers)} followers, #{n}")
            await until(partial(in_authors_timeline, tweet.tweet_id), bool, 0.0005)
            lags.append(time.time() - timestamp_of(tweet.tweet_id).timestamp())
            await asyncio.sleep(0.05)
        probe = followers[-1]
        assert (await read(probe)).tweets[0].tweet_id == tweet.tweet_id, "a follower missed the tweet"
        print(f"fan-out lag, author with {len(followers):,} warm followers:  {percentiles(lags)}")

        # A warm user: follows the author and 200 accounts; timeline full.
        warm_user = followers[0]
        await read(warm_user)
        warm = await timed([partial(read, warm_user) for _ in range(args.reads)])
        print(f"read, warm user (following 201):                {percentiles(warm)}")

        # Cold users following 1,000 accounts: each one's first read.
        cold_samples = await timed([partial(read, u) for u in cold])
        print(f"read, cold user following 1,000 (first read):   {percentiles(cold_samples)}")
        again = await timed([partial(read, u) for u in cold])
        print(f"read, the same users once warm:                 {percentiles(again)}")

        # A user following 20 celebrities: one new tweet each (the workers learn they are
        # celebrities: 50,000 followers), then reads merging 20 recent sets.
        for celeb in celebs:
            await post(celeb, "a celebrity speaks")
        await read(CELEB_READER)
        await until(partial(redis.scard, store.celebrities_key), partial(operator.le, CELEBRITIES), 0.05)
        await read(CELEB_READER)
        celeb_samples = await timed([partial(read, CELEB_READER) for _ in range(args.reads)])
        loaded = sum([await redis.exists(store.recent_key(c)) for c in celebs])
        print(
            f"read, user following 20 celebrities:           {percentiles(celeb_samples)}"
            f"   ({loaded} recent sets merged per read)"
        )

        # Redis memory of one full warm timeline.
        full = store.timeline_key(warm_user)
        entries = len(await store.entries(warm_user))
        usage = {
            "timeline": await redis.memory_usage(full) or 0,
            "following set": await redis.memory_usage(store.following_key(warm_user)) or 0,
            "edge versions": await redis.memory_usage(store.versions_key(warm_user)) or 0,
        }
        total = sum(usage.values())
        detail = ", ".join(f"{name} {size / 1024:.1f} KiB" for name, size in usage.items())
        print(f"Redis memory, one warm timeline of {entries} entries: {total / 1024:.1f} KiB ({detail})")
        info = await redis.info("memory")
        print(f"Redis used_memory after the run: {info['used_memory'] / 2**20:.1f} MiB")
    finally:
        await redis.aclose()
        await tweets_channel.close(None)
        await timeline_channel.close(None)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--followers", type=int, default=5_000)
    parser.add_argument("--tweets", type=int, default=40, help="tweets timed for the fan-out lag")
    parser.add_argument("--reads", type=int, default=300, help="timed reads per warm case")
    parser.add_argument("--cold-users", type=int, default=50, help="cold users following 1,000 accounts")
    asyncio.run(main(parser.parse_args()))
