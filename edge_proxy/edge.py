"""Composition root of the edge on one machine: Redis (embedded unless settings.redis_url), the
ext_authz and rate-limit services, the guard, and the HTTP gateway in front of the services named
by settings.graph_target / tweets_target / timeline_target. Used by `chirp up` and the tests."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from chirp_core.embedded_redis import EmbeddedRedis
from chirp_core.grpc_server import RunningServer
from chirp_core.settings import Settings
from edge_proxy import edge_services
from edge_proxy.gateway import RunningGateway
from edge_proxy.gateway import start as start_gateway
from edge_proxy.guard import Guard

log = logging.getLogger("chirp.edge")


@dataclass
class RunningEdge:
    """The started edge. `settings` has auth_addr and redis_url filled in with what was started."""

    settings: Settings
    services: RunningServer
    guard: Guard
    gateway: RunningGateway
    redis: EmbeddedRedis | None = None

    @property
    def url(self) -> str:
        return self.gateway.url

    async def stop(self) -> None:
        """In the reverse order of start: the gateway first (in-flight requests finish), Redis last."""
        await self.gateway.stop()
        await self.guard.close()
        await self.services.stop(self.settings.shutdown_grace_seconds)
        if self.redis is not None:
            await asyncio.to_thread(self.redis.stop)


async def start_edge(settings: Settings) -> RunningEdge:
    """Start everything of the edge; on a failure part-way, stop what was started and re-raise."""
    redis: EmbeddedRedis | None = None
    redis_url = settings.redis_url
    if not redis_url:
        redis = EmbeddedRedis(settings.data_dir, port=settings.embedded_redis_port, host=settings.host)
        await asyncio.to_thread(redis.start)
        redis_url = redis.url
    services: RunningServer | None = None
    guard: Guard | None = None
    try:
        services = await edge_services.start(settings, redis_url, settings.auth_port)
        settings = settings.with_changes(redis_url=redis_url, auth_addr=f"{settings.host}:{services.port}")
        guard = Guard(settings)
        gateway = await start_gateway(settings, guard)
    except BaseException:
        if guard is not None:
            await guard.close()
        if services is not None:
            await services.stop(settings.shutdown_grace_seconds)
        if redis is not None:
            await asyncio.to_thread(redis.stop)
        raise
    return RunningEdge(settings, services, guard, gateway, redis)
