"""Composition root of the graph service."""

from __future__ import annotations

from datetime import timedelta

import grpc

from chirp.graph.v1 import graph_pb2, graph_pb2_grpc
from chirp.users.v1 import users_pb2, users_pb2_grpc
from chirp_core.db import migrate, open_pool, open_read_routing
from chirp_core.grpc_server import RunningServer, start_server
from chirp_core.metrics import Metrics
from chirp_core.outbox import start_relay
from chirp_core.settings import Settings
from chirp_core.snowflake import SnowflakeGenerator
from graph_svc.jwks_server import serve_jwks
from graph_svc.passwords import Passwords
from graph_svc.service import AccountService, GraphService, SessionPolicy
from graph_svc.servicer import GraphServicer, UserServicer
from graph_svc.storage import GraphStorage
from graph_svc.tokens import KeyRing

SCHEMA = "graph"


async def start(
    settings: Settings, database_url: str, port: int, *, metrics: Metrics | None = None
) -> RunningServer:
    await migrate(database_url, SCHEMA, "graph_svc.migrations")
    metrics = metrics or Metrics()
    pool = await open_pool(settings, database_url, name=SCHEMA)
    routing = await open_read_routing(settings, pool, SCHEMA, metrics)
    storage = GraphStorage(pool, routing.replicas, routing.marks)
    keys = KeyRing(settings.jwt_keys)
    policy = SessionPolicy(
        issuer=settings.jwt_issuer,
        access_ttl=timedelta(seconds=settings.access_token_ttl_seconds),
        refresh_ttl=timedelta(seconds=settings.session_ttl_seconds),
    )
    accounts = AccountService(storage, SnowflakeGenerator(settings.node_id), Passwords(), keys, policy)
    graph = GraphService(storage)

    def register(server: grpc.aio.Server) -> list[str]:
        users_pb2_grpc.add_UserServiceServicer_to_server(UserServicer(accounts), server)
        graph_pb2_grpc.add_GraphServiceServicer_to_server(GraphServicer(graph), server)
        return [
            users_pb2.DESCRIPTOR.services_by_name["UserService"].full_name,
            graph_pb2.DESCRIPTOR.services_by_name["GraphService"].full_name,
        ]

    keys.signer()  # no signing key is a configuration error, told before anything listens
    try:
        jwks = await serve_jwks(
            keys,
            settings.host,
            settings.jwks_port,
            max_age_seconds=settings.jwks_cache_seconds,
        )
    except BaseException:
        await routing.close()
        await pool.close()
        raise
    try:
        running = await start_server("graph", f"{settings.host}:{port}", register)
    except BaseException:
        await jwks.stop()
        await routing.close()
        await pool.close()
        raise
    running.metrics = metrics
    running.on_stop.append(pool.close)
    running.on_stop.append(routing.close)
    running.on_stop.append(jwks.stop)
    running.on_stop.append(await start_relay(settings, pool, database_url, SCHEMA, metrics))
    return running
