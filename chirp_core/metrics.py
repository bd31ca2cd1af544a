"""Prometheus metrics of a Chirp process, served as the text format over HTTP at /metrics.

Every metric is declared here, on one registry per process (not prometheus_client's global one):
`chirp up` runs the three services in one process and shares one Metrics between them, while
the tests start several servers side by side, each with its own.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

log = logging.getLogger("chirp.metrics")

_LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_READ_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    """The metric families of every service. A service without a Metrics gets a private one."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        self.fanout_lag = Histogram(
            "chirp_fanout_lag_seconds",
            "From a tweet's creation (its ID's time) to the last follower timeline written"
            " (path=push) or its author's recent set written (path=celebrity).",
            ["path"],
            buckets=_LAG_BUCKETS,
            registry=registry,
        )
        self.fanout_events = Counter(
            "chirp_fanout_events_total", "Events applied by the fan-out workers.", ["type"], registry=registry
        )
        self.fanout_failures = Counter(
            "chirp_fanout_failures_total",
            "Event applies that failed, the event left pending to be retried: reason=outage (Redis or"
            " the graph service unreachable; not counted against the attempts) or error.",
            ["reason"],
            registry=registry,
        )
        self.fanout_dead_letters = Counter(
            "chirp_fanout_dead_letters_total",
            "Events moved to the dead-letter stream after failing every attempt, by event type.",
            ["type"],
            registry=registry,
        )
        self.fanout_timelines = Counter(
            "chirp_fanout_timelines_written_total",
            "Warm home timelines a new tweet was pushed into.",
            registry=registry,
        )
        self.timeline_reads = Histogram(
            "chirp_timeline_read_seconds",
            "GetHomeTimeline latency by path: warm (Redis), cold (rebuilt from PostgreSQL), fallback"
            " (Redis failed, pulled from PostgreSQL), pull (the pull mode).",
            ["path"],
            buckets=_READ_BUCKETS,
            registry=registry,
        )
        self.timeline_seams = Counter(
            "chirp_timeline_seam_reads_total",
            "Warm reads that went on in PostgreSQL below what Redis holds.",
            registry=registry,
        )
        self.redis_failures = Counter(
            "chirp_timeline_redis_failures_total",
            "Redis errors on the timeline read path, each answered from PostgreSQL instead.",
            ["operation"],
            registry=registry,
        )
        self.tweet_cache = Counter(
            "chirp_tweet_cache_lookups_total", "Tweet cache lookups by result.", ["result"], registry=registry
        )
        self.tweet_cache_hit_ratio = Gauge(
            "chirp_tweet_cache_hit_ratio",
            "Tweet cache hits / lookups since the process started.",
            registry=registry,
        )
        self._cache_hits = 0
        self._cache_lookups = 0
        self.tweet_cache_hit_ratio.set_function(self._hit_ratio)
        self.stream_subscribers = Gauge(
            "chirp_stream_subscribers", "Open StreamHomeTimeline calls.", ["transport"], registry=registry
        )
        self.relay_backlog = Gauge(
            "chirp_outbox_backlog", "Outbox rows not yet handed to Redis.", ["table"], registry=registry
        )
        self.relayed = Counter(
            "chirp_outbox_relayed_total", "Outbox rows handed to Redis.", ["table"], registry=registry
        )
        self.relay_failures = Counter(
            "chirp_outbox_relay_failures_total",
            "Relay rounds rolled back (Redis or PostgreSQL unreachable).",
            ["table"],
            registry=registry,
        )

        self.db_stale_reads = Counter(
            "chirp_db_stale_reads_total",
            "Reads that may be stale (chirp_core.db read_stale/run_stale) of a service with replicas,"
            " by the server whose connection they got: a replica (host:port/database) or primary.",
            ["database", "server"],
            registry=registry,
        )
        self.db_replica_fallbacks = Counter(
            "chirp_db_replica_fallbacks_total",
            "Reads that may be stale the primary answered instead of a replica, by reason: down (no"
            " replica answered its last check), lagging (none within the lag bound), behind_write (none"
            " has replayed the caller's last write yet), unreachable (no replica connection within the"
            " deadline), failed (the replica failed during the read, which ran again on the primary).",
            ["database", "reason"],
            registry=registry,
        )
        self.db_replica_lag = Gauge(
            "chirp_db_replica_lag_seconds",
            "How old a replica's data was at its last check (+Inf: behind every recent primary position).",
            ["database", "replica"],
            registry=registry,
        )
        self.db_replica_up = Gauge(
            "chirp_db_replica_up",
            "1 while a replica answers its checks as a standby, else 0.",
            ["database", "replica"],
            registry=registry,
        )

    def value(self, name: str, labels: dict[str, str] | None = None) -> float:
        """The current value of one sample (tests and the benchmark read metrics this way)."""
        return self.registry.get_sample_value(name, labels or {}) or 0.0

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    def cache_lookups(self, hits: int, misses: int) -> None:
        self.tweet_cache.labels("hit").inc(hits)
        self.tweet_cache.labels("miss").inc(misses)
        self._cache_hits += hits
        self._cache_lookups += hits + misses

    def _hit_ratio(self) -> float:
        return self._cache_hits / self._cache_lookups if self._cache_lookups else 0.0


@dataclass
class MetricsServer:
    runner: web.AppRunner
    url: str

    async def stop(self) -> None:
        await self.runner.cleanup()


async def serve_metrics(metrics: Metrics, host: str, port: int) -> MetricsServer:
    """GET /metrics on host:port (0 picks a free port)."""

    async def handle(request: web.Request) -> web.Response:
        return web.Response(body=metrics.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/metrics", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = runner.addresses[0][1] if runner.addresses else port
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{bound}/metrics"
    log.info("metrics at %s", url)
    return MetricsServer(runner, url)
