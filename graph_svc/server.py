"""Composition root of the graph service."""

from __future__ import annotations

import grpc

from chirp.graph.v1 import graph_pb2, graph_pb2_grpc
from chirp.users.v1 import users_pb2, users_pb2_grpc
from chirp_core.db import migrate, open_pool
from chirp_core.grpc_server import RunningServer, start_server
from chirp_core.settings import Settings

SCHEMA = "graph"


async def start(settings: Settings, database_url: str, port: int) -> RunningServer:
    await migrate(database_url, SCHEMA, "graph_svc.migrations")
    pool = await open_pool(settings, database_url, name=SCHEMA)

    def register(server: grpc.aio.Server) -> list[str]:
        users_pb2_grpc.add_UserServiceServicer_to_server(users_pb2_grpc.UserServiceServicer(), server)
        graph_pb2_grpc.add_GraphServiceServicer_to_server(graph_pb2_grpc.GraphServiceServicer(), server)
        return [
            users_pb2.DESCRIPTOR.services_by_name["UserService"].full_name,
            graph_pb2.DESCRIPTOR.services_by_name["GraphService"].full_name,
        ]

    running = await start_server("graph", f"{settings.host}:{port}", register)
    running.on_stop.append(pool.close)
    return running
