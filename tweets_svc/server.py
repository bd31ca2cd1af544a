"""Composition root of the tweets service."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import grpc
from psycopg_pool import AsyncConnectionPool

from chirp.tweets.v1 import tweets_pb2, tweets_pb2_grpc
from chirp_core.db import migrate, open_pool, open_read_routing
from chirp_core.grpc_server import RunningServer, start_server
from chirp_core.metrics import Metrics
from chirp_core.outbox import start_relay
from chirp_core.redis_client import open_request_redis
from chirp_core.settings import Settings
from chirp_core.snowflake import SnowflakeGenerator
from tweets_svc.media.janitor import MediaJanitor
from tweets_svc.media.service import MediaLimits, MediaService
from tweets_svc.media.storage import MediaStorage
from tweets_svc.media.stores import media_url_base, open_media_store
from tweets_svc.service import TweetService
from tweets_svc.servicer import TweetServicer
from tweets_svc.signals import RedisTweetSignals
from tweets_svc.storage import TweetStorage

SCHEMA = "tweets"


async def start(
    settings: Settings, database_url: str, port: int, *, metrics: Metrics | None = None
) -> RunningServer:
    await migrate(database_url, SCHEMA, "tweets_svc.migrations")
    metrics = metrics or Metrics()
    pool = await open_pool(settings, database_url, name=SCHEMA)
    # What changed and the author's last post, for the timelines, right after the commit.
    signals_redis = open_request_redis(settings.redis_url, settings) if settings.redis_url else None
    signals = RedisTweetSignals(signals_redis) if signals_redis is not None else None
    ids = SnowflakeGenerator(settings.node_id)
    media, stop_media = await start_media(settings, pool, ids)
    routing = await open_read_routing(settings, pool, SCHEMA, metrics)
    service = TweetService(TweetStorage(pool, routing.replicas, routing.marks), ids, signals, media)

    async def close_redis() -> None:
        await routing.close()
        if signals_redis is not None:
            await signals_redis.aclose()

    def register(server: grpc.aio.Server) -> list[str]:
        servicer = TweetServicer(service, media, media_url_base(settings))
        tweets_pb2_grpc.add_TweetServiceServicer_to_server(servicer, server)
        return [tweets_pb2.DESCRIPTOR.services_by_name["TweetService"].full_name]

    try:
        running = await start_server("tweets", f"{settings.host}:{port}", register)
    except BaseException:
        await stop_media()
        await pool.close()
        await close_redis()
        raise
    running.metrics = metrics
    running.on_stop.append(pool.close)
    running.on_stop.append(stop_media)
    running.on_stop.append(close_redis)
    running.on_stop.append(await start_relay(settings, pool, database_url, SCHEMA, metrics))
    return running


async def start_media(
    settings: Settings, pool: AsyncConnectionPool, ids: SnowflakeGenerator
) -> tuple[MediaService, Callable[[], Awaitable[None]]]:
    """The media service over the configured object store, and its janitor running; the
    callable stops the janitor and closes the store."""
    store = await open_media_store(settings)
    storage = MediaStorage(pool)
    limits = MediaLimits(
        settings.media_max_image_bytes, settings.media_max_video_bytes, settings.media_upload_grant_seconds
    )
    janitor = MediaJanitor(
        storage, store, settings.media_pending_ttl_seconds, settings.media_janitor_interval_seconds
    )
    task = asyncio.create_task(janitor.run(), name="media-janitor")

    async def stop() -> None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await store.close()

    return MediaService(storage, store, ids, limits), stop
