"""Composition root of the edge on one machine: the rate-limit service, the local
media store's server (media_store "local"), and Envoy in front of the services named by
settings.graph_target / tweets_target / timeline_target. Redis is settings.redis_url: the stack
(chirp_app.stack) decides whether it is an embedded one. Used by `chirp up` and the tests. With
envoy=False (the worker processes of `chirp up --processes N`, whose supervisor runs the one
Envoy) everything but Envoy starts."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from chirp_app.envoy_process import EnvoyProcess
from chirp_core.grpc_server import RunningServer
from chirp_core.http_server import HttpServer
from chirp_core.settings import Settings
from edge_proxy import server as edge_server
from tweets_svc.media.local_server import LocalMediaEndpoint, serve_media

log = logging.getLogger("chirp.edge")


@dataclass
class RunningEdge:
    """The started edge. `settings` has auth_addr and media_store_addr filled in with what was
    started, and http_port with Envoy's."""

    settings: Settings
    services: RunningServer
    envoy: EnvoyProcess | None = None
    media: HttpServer | None = None

    @property
    def url(self) -> str:
        return self.envoy.url if self.envoy is not None else ""

    async def stop(self) -> None:
        """In the reverse order of start: Envoy first (in-flight requests finish)."""
        if self.envoy is not None:
            await self.envoy.stop()
        if self.media is not None:
            await self.media.stop()
        await self.services.stop(self.settings.shutdown_grace_seconds)


async def start_edge(settings: Settings, *, envoy: bool = True) -> RunningEdge:
    """Start everything of the edge against settings.redis_url; on a failure part-way, stop what
    was started and re-raise."""
    if not settings.redis_url:
        raise ValueError("the edge needs settings.redis_url (chirp_app.stack starts the embedded Redis)")
    edge: RunningEdge | None = None
    try:
        services = await edge_server.start(settings, settings.redis_url, settings.auth_port)
        settings = settings.with_changes(auth_addr=f"{settings.host}:{services.port}")
        edge = RunningEdge(settings, services)
        endpoint = LocalMediaEndpoint.from_settings(settings)
        if endpoint is not None:
            edge.media = await serve_media(endpoint, settings.host, settings.media_store_port)
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
        raise
    return edge
