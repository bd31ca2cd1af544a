"""The composition root of a whole Chirp stack in one process: PostgreSQL and Redis (embedded
unless CHIRP_DATABASE_URL / CHIRP_REDIS_URL name external ones), the three services and the edge
(auth, rate limits, the media store, Envoy). Used by `chirp up` and by the tests."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from chirp_app.embedded_pg import EmbeddedPostgres
from chirp_app.embedded_redis import EmbeddedRedis
from chirp_app.keeper import Keeper, start_server
from chirp_core.grpc_server import RunningServer
from chirp_core.metrics import Metrics, MetricsServer, serve_metrics
from chirp_core.settings import Settings

if TYPE_CHECKING:
    from chirp_app.edge import RunningEdge

log = logging.getLogger("chirp.stack")
EMBEDDED_DATABASE = "chirp"


@dataclass
class Stack:
    """A started stack. `settings` carries the database and Redis URLs actually in use."""

    settings: Settings
    database_url: str
    redis_url: str
    servers: dict[str, RunningServer] = field(default_factory=dict)
    edge: RunningEdge | None = None
    postgres: EmbeddedPostgres | None = None
    redis: EmbeddedRedis | None = None
    # One registry for the three services of this process, served when settings.metrics_port is set.
    metrics: Metrics = field(default_factory=Metrics)
    metrics_server: MetricsServer | None = None
    embedded: EmbeddedServers | None = None

    def address(self, service: str) -> str:
        return f"{self.settings.host}:{self.servers[service].port}"

    async def stop(self) -> None:
        """Stop in the reverse order of start: Envoy first, PostgreSQL last."""
        bound = self.settings.shutdown_grace_seconds + 10
        if self.edge is not None:
            await _bounded(self.edge.stop(), bound, "the edge")
            self.edge = None
        if self.metrics_server is not None:
            await _bounded(self.metrics_server.stop(), bound, "the metrics endpoint")
            self.metrics_server = None
        for name in reversed(list(self.servers)):
            await _bounded(self.servers.pop(name).stop(self.settings.shutdown_grace_seconds), bound, name)
        if self.embedded is None:
            self.embedded = EmbeddedServers(self.postgres, self.redis)
        await self.embedded.stop()
        self.redis = self.postgres = self.embedded = None


async def _bounded(step: Awaitable[None], seconds: float, what: str) -> None:
    """Run a shutdown step, abandoning it after `seconds`: stopping must never hang."""
    try:
        await asyncio.wait_for(step, timeout=seconds)
    except TimeoutError:
        log.warning("stopping %s took over %.0fs; moving on", what, seconds)


def free_port(host: str = "127.0.0.1") -> int:
    """A port no one listens on now (for an internal port several processes must agree on)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


def public_port_fixed(settings: Settings) -> Settings:
    """Envoy's port chosen now when it is 0: the tweets service writes it into media URLs (the
    local store's /media/ is behind Envoy) before Envoy starts."""
    if settings.http_port != 0:
        return settings
    return settings.with_changes(http_port=free_port(settings.host))


async def start_postgres(settings: Settings) -> tuple[str, EmbeddedPostgres | None]:
    if settings.database_url:
        return settings.database_url, None
    postgres = EmbeddedPostgres(settings.data_dir, port=settings.embedded_postgres_port, host=settings.host)
    await asyncio.to_thread(postgres.prepare)
    await start_server(postgres)
    try:
        url = await asyncio.to_thread(postgres.create_database, EMBEDDED_DATABASE)
    except BaseException:
        await asyncio.to_thread(postgres.stop)
        raise
    return url, postgres


async def start_redis(settings: Settings) -> tuple[str, EmbeddedRedis | None]:
    if settings.redis_url:
        return settings.redis_url, None
    redis = EmbeddedRedis(settings.data_dir, port=settings.embedded_redis_port, host=settings.host)
    await start_server(redis)
    return redis.url, redis


class EmbeddedServers:
    """The embedded PostgreSQL and Redis a stack started (None: an external one): watch() keeps
    each running (a Keeper); stop() stops watching, then Redis, then PostgreSQL."""

    def __init__(self, postgres: EmbeddedPostgres | None, redis: EmbeddedRedis | None) -> None:
        self.postgres = postgres
        self.redis = redis
        self.keepers = [
            Keeper(name, server)
            for name, server in (("PostgreSQL", postgres), ("Redis", redis))
            if server is not None
        ]

    def watch(self) -> EmbeddedServers:
        for keeper in self.keepers:
            keeper.start()
        return self

    async def stop(self) -> None:
        for keeper in self.keepers:
            await keeper.stop()
        if self.redis is not None:
            await asyncio.to_thread(self.redis.stop)
        if self.postgres is not None:
            await asyncio.to_thread(self.postgres.stop)


async def start_stack(
    settings: Settings, *, with_edge: bool = True, with_envoy: bool = True, peers: bool = False
) -> Stack:
    """Start everything; on a failure part-way, stop what was started and re-raise. The services
    call the ones started here, or, with `peers` (a worker of `chirp up --processes N`), the ones
    settings.graph_addr, tweets_addr and timeline_addr name: every worker's."""
    from chirp_app.edge import start_edge
    from graph_svc.server import start as start_graph
    from graph_svc.tokens import ensure_key
    from timeline_svc.server import start as start_timeline
    from tweets_svc.server import start as start_tweets

    if with_edge and with_envoy:
        settings = public_port_fixed(settings)
    if settings.jwks_port == 0:
        # Envoy's config names the graph service's JWKS port, which must so be known before.
        settings = settings.with_changes(jwks_port=free_port(settings.host))
    created = await asyncio.to_thread(ensure_key, settings.jwt_keys)
    if created is not None:
        log.info("created the first access-token signing key %s in %s", created, settings.jwt_keys)
    database_url, postgres = await start_postgres(settings)
    stack = Stack(settings, database_url, "", postgres=postgres)
    try:
        stack.redis_url, stack.redis = await start_redis(settings)
        stack.embedded = EmbeddedServers(stack.postgres, stack.redis).watch()
        settings = stack.settings = settings.with_changes(
            database_url=database_url, redis_url=stack.redis_url
        )
        metrics = stack.metrics
        stack.servers["graph"] = await start_graph(
            settings, database_url, settings.graph_port, metrics=metrics
        )
        stack.servers["tweets"] = await start_tweets(
            settings, database_url, settings.tweets_port, metrics=metrics
        )
        if not peers:
            settings = stack.settings = settings.with_changes(
                graph_addr=stack.address("graph"), tweets_addr=stack.address("tweets")
            )
        stack.servers["timeline"] = await start_timeline(settings, settings.timeline_port, metrics=metrics)
        if settings.metrics_port is not None:
            stack.metrics_server = await serve_metrics(metrics, settings.host, settings.metrics_port)
        if not peers:
            settings = stack.settings = settings.with_changes(timeline_addr=stack.address("timeline"))
        if with_edge:
            stack.edge = await start_edge(settings, envoy=with_envoy)
    except BaseException:
        await stack.stop()
        raise
    return stack
