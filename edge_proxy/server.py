"""Composition root of the edge services: the ext_authz and the rate-limit servicers on one gRPC
server (settings.auth_port), called by Envoy's ext_authz and ratelimit filters."""

from __future__ import annotations

import logging

import grpc

from chirp.users.v1 import users_pb2_grpc
from chirp_core.grpc_server import RunningServer, start_server
from chirp_core.redis_client import open_request_redis
from chirp_core.rpc import downstream_channel
from chirp_core.settings import Settings
from chirp_envoy_api.envoy.service.auth.v3 import external_auth_pb2, external_auth_pb2_grpc
from chirp_envoy_api.envoy.service.ratelimit.v3 import rls_pb2, rls_pb2_grpc
from edge_proxy.authz import AuthorizationServicer, TokenCache
from edge_proxy.limits import limits_file, load_limits
from edge_proxy.ratelimit import RateLimitServicer, WindowCounters

log = logging.getLogger("chirp.edge")


async def start(settings: Settings, redis_url: str, port: int) -> RunningServer:
    """Start both servicers on settings.host:port; a bad limits file fails here, before binding."""
    path = limits_file(settings)
    config = None if path is None else load_limits(path)
    log.info("rate limits: %s", "off" if path is None else path)
    client = open_request_redis(redis_url, settings)
    users_channel = downstream_channel(settings.graph_target, settings.default_rpc_timeout_seconds)
    authorization = AuthorizationServicer(
        users_pb2_grpc.UserServiceStub(users_channel), TokenCache(client, settings.auth_cache_seconds)
    )
    rate_limits = RateLimitServicer(config, WindowCounters(client))

    def register(server: grpc.aio.Server) -> list[str]:
        external_auth_pb2_grpc.add_AuthorizationServicer_to_server(authorization, server)
        rls_pb2_grpc.add_RateLimitServiceServicer_to_server(rate_limits, server)
        return [
            external_auth_pb2.DESCRIPTOR.services_by_name["Authorization"].full_name,
            rls_pb2.DESCRIPTOR.services_by_name["RateLimitService"].full_name,
        ]

    async def close() -> None:
        await users_channel.close(None)
        await client.aclose()

    try:
        running = await start_server(
            "edge", f"{settings.host}:{port}", register, share_port=settings.share_ports
        )
    except BaseException:
        await close()
        raise
    running.on_stop.append(close)
    return running
