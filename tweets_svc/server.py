"""Composition root of the tweets service."""

from __future__ import annotations

import grpc

from chirp.tweets.v1 import tweets_pb2, tweets_pb2_grpc
from chirp_core.db import migrate, open_pool
from chirp_core.grpc_server import RunningServer, start_server
from chirp_core.settings import Settings

SCHEMA = "tweets"


async def start(settings: Settings, database_url: str, port: int) -> RunningServer:
    await migrate(database_url, SCHEMA, "tweets_svc.migrations")
    pool = await open_pool(settings, database_url, name=SCHEMA)

    def register(server: grpc.aio.Server) -> list[str]:
        tweets_pb2_grpc.add_TweetServiceServicer_to_server(tweets_pb2_grpc.TweetServiceServicer(), server)
        return [tweets_pb2.DESCRIPTOR.services_by_name["TweetService"].full_name]

    running = await start_server("tweets", f"{settings.host}:{port}", register)
    running.on_stop.append(pool.close)
    return running
