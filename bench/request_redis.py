"""`python -m bench.request_redis`: what the request path's Redis client costs a warm timeline
read, with scripts over one multiplexed connection (the default) next to redis-py's pooled
connections (the baseline), in one process against the embedded redis-server started here.

One reader's warm 800-entry timeline, every tweet in the tweet cache; closed-loop clients ask the
storage layer for the first page (20 tweets) as the timeline service does on a warm read. The two
clients take turns in short rounds, so that both see the same machine. Printed for each: reads/s,
p50/p99 latency, and this process's CPU microseconds per read (user + system); then the ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.cluster_reads import CAP, NAMESPACE, PAGE, seed
from bench.stats import Summary, summarize
from chirp_app.embedded_redis import EmbeddedRedis
from chirp_app.event_loop import loop_factory
from chirp_core.redis_client import open_redis, open_request_redis
from chirp_core.settings import Settings
from timeline_svc.storage import RawPage, TimelineStore, TweetCacheStorage

READER = 42


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    seconds: float = 0.0
    cpu_seconds: float = 0.0

    def summary(self) -> Summary:
        return summarize(self.latencies, errors=self.errors, seconds=self.seconds)

    def cpu_us_per_read(self) -> float:
        return self.cpu_seconds / max(1, len(self.latencies) + self.errors) * 1e6


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _round(store: TimelineStore, clients: int, seconds: float, tally: Tally) -> None:
    stop = time.monotonic() + seconds

    async def one() -> None:
        while time.monotonic() < stop:
            started = time.perf_counter()
            page = await store.read(READER, max_id=0, min_id=0, want=PAGE, merge_celebrities=True)
            if isinstance(page, RawPage) and len(page.members) == PAGE and all(page.cached):
                tally.latencies.append(time.perf_counter() - started)
            else:
                tally.errors += 1

    began, cpu = time.monotonic(), _cpu()
    await asyncio.gather(*(one() for _ in range(clients)))
    tally.seconds += time.monotonic() - began
    tally.cpu_seconds += _cpu() - cpu


async def measure(url: str, args: argparse.Namespace) -> dict[str, Tally]:
    settings = Settings(redis_url=url)
    clients = {
        "pooled (redis-py)": open_request_redis(url, settings, multiplexed=False),
        "multiplexed": open_request_redis(url, settings),
    }
    seeding = open_redis(url)
    try:
        stores = {
            label: TimelineStore(client, namespace=NAMESPACE, cap=CAP, ttl_seconds=3600)
            for label, client in clients.items()
        }
        await seed(stores["multiplexed"], TweetCacheStorage(seeding, ttl_seconds=3600), READER, [])
        tallies = {label: Tally() for label in clients}
        for store in stores.values():
            await _round(store, args.clients, 0.5, Tally())  # warm-up
        rounds = max(1, round(args.seconds / args.round_seconds))
        for _ in range(rounds):
            for label, store in stores.items():
                await _round(store, args.clients, args.round_seconds, tallies[label])
        return tallies
    finally:
        await seeding.aclose()
        for client in clients.values():
            await client.aclose()


def line(label: str, tally: Tally) -> str:
    summary = tally.summary()
    return (
        f"{label:<20} {summary.throughput:>9,.0f} reads/s  p50 {summary.p50:6.3f} ms  "
        f"p99 {summary.p99:6.3f} ms  CPU {tally.cpu_us_per_read():6.1f} us/read  errors {summary.errors}"
    )


def main(args: argparse.Namespace) -> None:
    server = EmbeddedRedis(Path(tempfile.mkdtemp(prefix="chirp-request-redis-bench-")))
    server.start()
    try:
        with asyncio.Runner(loop_factory=loop_factory(Settings())) as runner:
            tallies = runner.run(measure(server.url, args))
    finally:
        server.stop()
    base, fast = tallies["pooled (redis-py)"], tallies["multiplexed"]
    print(
        f"warm timeline reads ({PAGE} of {CAP} entries, cached tweets), {args.clients} clients, one process:"
    )
    for label, tally in tallies.items():
        print(line(label, tally))
    print(
        f"multiplexed / pooled: throughput {fast.summary().throughput / base.summary().throughput:.2f}x, "
        f"CPU per read {fast.cpu_us_per_read() / base.cpu_us_per_read():.2f}x, "
        f"p50 {fast.summary().p50 / base.summary().p50:.2f}x"
    )


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.request_redis", description=__doc__)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=10.0, help="per client, in all")
    parser.add_argument("--round-seconds", type=float, default=1.0)
    return parser.parse_args(argv)


if __name__ == "__main__":
    main(parse())
