"""Composition root of the edge on one machine: Redis (embedded unless settings.redis_url), the
ext_authz and rate-limit services, the local media store's server (media_store "local"), and
Envoy in front of the services named by settings.graph_target / tweets_target / timeline_target.
Used by `chirp up` and the tests. With envoy=False (the worker processes of `chirp up
--processes N`, whose supervisor runs the one Envoy) everything but Envoy starts."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from chirp_core.embedded_redis import EmbeddedRedis
from chirp_core.grpc_server import RunningServer
from chirp_core.settings import Settings
from edge_proxy import edge_services
from edge_proxy.envoy_process import EnvoyProcess
from edge_proxy.media_local import LocalMediaEndpoint, MediaServer, serve_media

log = logging.getLogger("chirp.edge")


@dataclass
class RunningEdge:
    """The started edge. `settings` has auth_addr, media_store_addr and redis_url filled in with
    what was started, and http_port with Envoy's."""

    settings: Settings
    services: RunningServer
    envoy: EnvoyProcess | None = None
    media: MediaServer | None = None
    redis: EmbeddedRedis | None = None

    @property
    def url(self) -> str:
        return self.envoy.url if self.envoy is not None else ""

    async def stop(self) -> None:
        """In the reverse order of start: Envoy first (in-flight requests finish), Redis last."""
        if self.envoy is not None:
            await self.envoy.stop()
        if self.media is not None:
            await self.media.stop()
        await self.services.stop(self.settings.shutdown_grace_seconds)
        if self.redis is not None:
            await asyncio.to_thread(self.redis.stop)


async def start_edge(settings: Settings, *, envoy: bool = True) -> RunningEdge:
    """Start everything of the edge; on a failure part-way, stop what was started and re-raise."""
    redis: EmbeddedRedis | None = None
    redis_url = settings.redis_url
    if not redis_url:
        redis = EmbeddedRedis(settings.data_dir, port=settings.embedded_redis_port, host=settings.host)
        await asyncio.to_thread(redis.start)
        redis_url = redis.url
    edge: RunningEdge | None = None
    try:
        services = await edge_services.start(settings, redis_url, settings.auth_port)
        settings = settings.with_changes(redis_url=redis_url, auth_addr=f"{settings.host}:{services.port}")
        edge = RunningEdge(settings, services, redis=redis)
        endpoint = LocalMediaEndpoint.from_settings(settings)
        if endpoint is not None:
            edge.media = await serve_media(
                endpoint, settings.host, settings.media_store_port, reuse_port=settings.share_ports
            )
            edge.settings = settings = settings.with_changes(
                media_store_addr=f"{settings.host}:{edge.media.port}"
            )
        if envoy:
            edge.envoy = EnvoyProcess(settings, settings.data_dir / "envoy")
            await edge.envoy.start()
            edge.settings = settings.with_changes(http_port=edge.envoy.port)
    except BaseException:
        if edge is not None:
            await edge.stop()
        elif redis is not None:
            await asyncio.to_thread(redis.stop)
        raise
    return edge
