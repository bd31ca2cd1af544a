"""Composition root of the tweets service."""

from __future__ import annotations

import grpc

from chirp.tweets.v1 import tweets_pb2, tweets_pb2_grpc
from chirp_core.db import migrate, open_pool
from chirp_core.grpc_server import RunningServer, start_server
from chirp_core.settings import Settings
from chirp_core.snowflake import SnowflakeGenerator
from tweets_svc.service import TweetService
from tweets_svc.servicer import TweetServicer
from tweets_svc.storage import TweetStorage

SCHEMA = "tweets"


async def start(settings: Settings, database_url: str, port: int) -> RunningServer:
    await migrate(database_url, SCHEMA, "tweets_svc.migrations")
    pool = await open_pool(settings, database_url, name=SCHEMA)
    service = TweetService(TweetStorage(pool), SnowflakeGenerator(settings.node_id))

    def register(server: grpc.aio.Server) -> list[str]:
        tweets_pb2_grpc.add_TweetServiceServicer_to_server(TweetServicer(service), server)
        return [tweets_pb2.DESCRIPTOR.services_by_name["TweetService"].full_name]

    try:
        running = await start_server("tweets", f"{settings.host}:{port}", register)
    except BaseException:
        await pool.close()
        raise
    running.on_stop.append(pool.close)
    return running
