"""`python -m bench.cluster_reads`: what a warm hybrid read costs on a Redis Cluster next to one
Redis, measured in one process against real servers started here (the embedded redis-server, and
a 3-master cluster of the same binary).

The same state on both: a reader whose 800-entry timeline holds the tweets of the 100 authors
they follow, three followed celebrities with 100 recent tweets each (on the cluster, one
celebrity's set on each node), and every tweet in the tweet cache (300 bytes each). Closed-loop
readers ask the storage layer for the first page (20 tweets) with the celebrities merged, as the
timeline service does on a warm read; printed: reads/s, p50/p99 latency and the cluster's ratios
to one Redis.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.stats import Summary, summarize
from chirp_app.embedded_redis import EmbeddedRedis
from chirp_app.redis_cluster import LocalRedisCluster
from chirp_core.redis_client import open_cluster, open_redis
from chirp_core.snowflake import lowest_id_at
from timeline_svc.cluster_storage import ClusterTimelineStore, ClusterTweetCacheStorage
from timeline_svc.models import CachedTweet, Entry
from timeline_svc.storage import RawPage, TimelineStore, TweetCacheStorage

NAMESPACE = "bench"
CAP = 800
PAGE = 20
FOLLOWS = 100
CELEBRITY_TWEETS = 100
TWEET_BYTES = 300


async def seed(store: TimelineStore, cache: TweetCacheStorage, reader: int, celebrities: list[int]) -> None:
    base = lowest_id_at(datetime.now(UTC))
    followees = list(range(1_000, 1_000 + FOLLOWS))
    entries = [Entry(base + 10 * n, followees[n % FOLLOWS]) for n in range(CAP)]
    for celebrity in celebrities:
        await store.apply_count(celebrity, 2, 1, 1)
        recent = [
            Entry(base + 10 * n + 1 + celebrities.index(celebrity), celebrity)
            for n in range(CELEBRITY_TWEETS)
        ]
        assert await store.begin_recent(celebrity)
        await store.finish_recent(celebrity, sorted(recent, key=lambda e: -e.tweet_id), 0)
        entries += recent
    assert await store.begin_build(reader)
    own = sorted((e for e in entries if e.author_id not in celebrities), key=lambda e: -e.tweet_id)
    await store.finish_build(reader, [*followees, *celebrities], own, 0)
    await cache.put([CachedTweet(e.tweet_id, b"t" * TWEET_BYTES) for e in entries])


async def readers(store: TimelineStore, reader: int, clients: int, seconds: float) -> Summary:
    latencies: list[float] = []
    errors = 0
    stop = time.monotonic() + seconds

    async def one() -> None:
        nonlocal errors
        while time.monotonic() < stop:
            started = time.perf_counter()
            page = await store.read(reader, max_id=0, min_id=0, want=PAGE, merge_celebrities=True)
            if isinstance(page, RawPage) and len(page.members) == PAGE and all(page.cached):
                latencies.append(time.perf_counter() - started)
            else:
                errors += 1

    began = time.monotonic()
    await asyncio.gather(*(one() for _ in range(clients)))
    return summarize(latencies, errors=errors, seconds=time.monotonic() - began)


async def measure(
    store: TimelineStore, cache: TweetCacheStorage, celebrities: list[int], args: argparse.Namespace
) -> Summary:
    reader = 42
    await seed(store, cache, reader, celebrities)
    await readers(store, reader, args.clients, 1.0)  # warm-up
    return await readers(store, reader, args.clients, args.seconds)


def one_per_node(cluster: LocalRedisCluster, store: TimelineStore) -> list[int]:
    """Three authors whose recent sets live on three different nodes."""
    found: dict[int, int] = {}
    for author in range(2, 1_000):
        found.setdefault(cluster.node_for_key(store.recent_key(author)), author)
        if len(found) == 3:
            return sorted(found.values())
    raise RuntimeError("no author on every node")


def line(label: str, summary: Summary) -> str:
    return (
        f"{label:<28} {summary.throughput:>9,.0f} reads/s  p50 {summary.p50:6.3f} ms  "
        f"p99 {summary.p99:6.3f} ms  errors {summary.errors}"
    )


async def main(args: argparse.Namespace) -> None:
    root = Path(tempfile.mkdtemp(prefix="chirp-cluster-bench-"))
    single = EmbeddedRedis(root / "single")
    cluster = LocalRedisCluster(root / "cluster")
    single.start()
    try:
        cluster.start()
        one = open_redis(single.url, read_timeout=5)
        many = open_cluster(cluster.url, timeout=5)
        try:
            store = TimelineStore(one, namespace=NAMESPACE, cap=CAP, ttl_seconds=3600)
            base = await measure(store, TweetCacheStorage(one, ttl_seconds=3600), [7, 8, 9], args)
            spread_store = ClusterTimelineStore(many, namespace=NAMESPACE, cap=CAP, ttl_seconds=3600)
            spread_cache = ClusterTweetCacheStorage(many, ttl_seconds=3600)
            spread = await measure(spread_store, spread_cache, one_per_node(cluster, spread_store), args)
        finally:
            await one.aclose()
            await many.aclose()
    finally:
        cluster.stop()
        single.stop()
    print(f"warm hybrid reads, {PAGE} of {CAP} entries + 3 celebrities' sets, {args.clients} clients:")
    print(line("one Redis", base))
    print(line("3-master Redis Cluster", spread))
    print(
        f"cluster / one Redis: throughput {spread.throughput / base.throughput:.2f}x, "
        f"p50 {spread.p50 / base.p50:.2f}x, p99 {spread.p99 / base.p99:.2f}x"
    )


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.cluster_reads", description=__doc__)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=10.0)
    return parser.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse()))
