"""Composition root of the edge service: the rate-limit servicer on one gRPC server
(settings.auth_port), called by Envoy's ratelimit filter. Bearer tokens need no service: Envoy's
jwt_authn filter checks them itself (edge_proxy.envoy_config)."""

from __future__ import annotations

import logging

import grpc

from chirp_core.grpc_server import RunningServer, start_server
from chirp_core.redis_client import open_request_redis
from chirp_core.settings import Settings
from chirp_envoy_api.envoy.service.ratelimit.v3 import rls_pb2, rls_pb2_grpc
from edge_proxy.limits import limits_file, load_limits
from edge_proxy.ratelimit import RateLimitServicer, WindowCounters

log = logging.getLogger("chirp.edge")


async def start(settings: Settings, redis_url: str, port: int) -> RunningServer:
    """Start the servicer on settings.host:port; a bad limits file fails here, before binding."""
    path = limits_file(settings)
    config = None if path is None else load_limits(path)
    log.info("rate limits: %s", "off" if path is None else path)
    client = open_request_redis(redis_url, settings)
    rate_limits = RateLimitServicer(config, WindowCounters(client))

    def register(server: grpc.aio.Server) -> list[str]:
        rls_pb2_grpc.add_RateLimitServiceServicer_to_server(rate_limits, server)
        return [rls_pb2.DESCRIPTOR.services_by_name["RateLimitService"].full_name]

    async def close() -> None:
        await client.aclose()

    try:
        running = await start_server("edge", f"{settings.host}:{port}", register)
    except BaseException:
        await close()
        raise
    running.on_stop.append(close)
    return running
