"""Composition root of the timeline service: the pull path, and in the push and hybrid modes the
Redis store, the tweet cache, the live feed and the fan-out workers."""

from __future__ import annotations

import logging
import socket
from collections.abc import Awaitable, Callable

import grpc
import redis.asyncio

from chirp.timeline.v1 import timeline_pb2
from chirp_core.grpc_server import RunningServer, start_server
from chirp_core.metrics import Metrics
from chirp_core.redis_client import RedisClient, open_redis, open_request_redis
from chirp_core.rpc import downstream_channel
from chirp_core.settings import Settings
from timeline_svc.cache import TweetCache
from timeline_svc.cluster_storage import ClusterTimelineStore, ClusterTweetCacheStorage
from timeline_svc.events import FanoutWorkers
from timeline_svc.fanout import FanoutApplier
from timeline_svc.home import Builder, FanoutHomeTimeline
from timeline_svc.live import LiveFeed
from timeline_svc.ports import HomeTimelineSource
from timeline_svc.pull import PullTimeline
from timeline_svc.service import TimelineService
from timeline_svc.servicer import TimelineServicer
from timeline_svc.storage import TimelineStore, TweetCacheStorage
from timeline_svc.upstreams import GrpcFollowGraph, GrpcTweetStore, GrpcUserDirectory

log = logging.getLogger("chirp.timeline")

SERVICE_NAME = timeline_pb2.DESCRIPTOR.services_by_name["TimelineService"].full_name


def _as_is(response: bytes) -> bytes:
    return response


def add_servicer(servicer: TimelineServicer, server: grpc.aio.Server) -> None:
    """As timeline_pb2_grpc.add_TimelineServiceServicer_to_server, but GetHomeTimeline's answer is
    already its wire bytes (servicer.py): gRPC sends them without serializing anything."""
    handlers = {
        "GetHomeTimeline": grpc.unary_unary_rpc_method_handler(
            servicer.GetHomeTimeline,
            request_deserializer=timeline_pb2.GetHomeTimelineRequest.FromString,
            response_serializer=_as_is,
        ),
        "GetUserTimeline": grpc.unary_unary_rpc_method_handler(
            servicer.GetUserTimeline,
            request_deserializer=timeline_pb2.GetUserTimelineRequest.FromString,
            response_serializer=timeline_pb2.GetUserTimelineResponse.SerializeToString,
        ),
        "StreamHomeTimeline": grpc.unary_stream_rpc_method_handler(
            servicer.StreamHomeTimeline,
            request_deserializer=timeline_pb2.StreamHomeTimelineRequest.FromString,
            response_serializer=timeline_pb2.StreamHomeTimelineResponse.SerializeToString,
        ),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))
    server.add_registered_method_handlers(SERVICE_NAME, handlers)  # type: ignore[attr-defined]


async def start(settings: Settings, port: int, *, metrics: Metrics | None = None) -> RunningServer:
    metrics = metrics or Metrics()
    timeout = settings.default_rpc_timeout_seconds
    graph_channel = downstream_channel(settings.graph_target, timeout)
    tweets_channel = downstream_channel(settings.tweets_target, timeout)
    graph = GrpcFollowGraph(graph_channel)
    tweets = GrpcTweetStore(tweets_channel)
    users = GrpcUserDirectory(graph_channel)
    pull = PullTimeline(graph, tweets)
    closers: list[Callable[[], Awaitable[None]]] = []

    async def close_channels() -> None:
        await graph_channel.close(None)
        await tweets_channel.close(None)

    closers.append(close_channels)
    mode = settings.timeline_mode
    if mode != "pull" and not settings.redis_url:
        log.warning("timeline mode %s needs CHIRP_REDIS_URL; pulling instead", mode)
        mode = "pull"
    source: HomeTimelineSource = pull
    live: LiveFeed | None = None
    cache: TweetCache | None = None
    if mode != "pull":
        assert settings.redis_url
        client = open_request_redis(settings.redis_url, settings)
        # Blocking reads (XREADGROUP BLOCK, pub/sub) need a longer read timeout than requests, and
        # the workers' scripts (a push to thousands of timelines) more than a request's deadline.
        cluster = settings.redis_cluster
        blocking = open_redis(
            settings.redis_url, read_timeout=settings.fanout_block_seconds + 5.0, cluster=cluster
        )
        background = open_redis(settings.redis_url, cluster=cluster)
        closers += [client.aclose, blocking.aclose, background.aclose]
        hybrid = mode == "hybrid"

        def timelines(over: RedisClient) -> tuple[TimelineStore, Builder, TweetCache]:
            namespace, cap = settings.timeline_namespace, settings.timeline_size
            ttl = max(1, int(settings.timeline_warm_days * 86400))
            store: TimelineStore
            cache_storage: TweetCacheStorage
            if isinstance(over, redis.asyncio.RedisCluster):
                store = ClusterTimelineStore(over, namespace=namespace, cap=cap, ttl_seconds=ttl)
                cache_storage = ClusterTweetCacheStorage(over, ttl_seconds=settings.tweet_cache_seconds)
            else:
                store = TimelineStore(over, namespace=namespace, cap=cap, ttl_seconds=ttl)
                cache_storage = TweetCacheStorage(over, ttl_seconds=settings.tweet_cache_seconds)
            cache = TweetCache(cache_storage, tweets, users, metrics=metrics)
            return store, Builder(store, graph, tweets), cache

        store, builder, cache = timelines(client)
        source = FanoutHomeTimeline(
            store, builder, cache, pull, tweets, merge_celebrities=hybrid, metrics=metrics
        )
        live = LiveFeed(blocking, store, celebrities=hybrid)
        if settings.fanout_workers:
            applier = FanoutApplier(
                *timelines(background),
                graph,
                threshold=settings.celebrity_threshold if hybrid else None,
                batch_size=settings.fanout_batch_size,
                metrics=metrics,
            )
            workers = FanoutWorkers(
                blocking,
                applier,
                stream=settings.events_stream,
                group=settings.timeline_namespace,
                consumers=settings.fanout_workers,
                block_seconds=settings.fanout_block_seconds,
                claim_idle_seconds=settings.fanout_claim_idle_seconds,
                max_attempts=settings.fanout_max_attempts,
                metrics=metrics,
                consumer_prefix=f"{socket.gethostname()}-node{settings.node_id}",
            )
            workers.start()
            closers.append(workers.stop)
    service = TimelineService(
        source,
        users,
        tweets,
        poll_seconds=settings.stream_poll_seconds,
        pull=pull,
        live=live,
        hydrator=cache,
        metrics=metrics,
    )

    def register(server: grpc.aio.Server) -> list[str]:
        add_servicer(TimelineServicer(service), server)
        return [SERVICE_NAME]

    try:
        running = await start_server("timeline", f"{settings.host}:{port}", register)
    except BaseException:
        for close in reversed(closers):
            await close()
        raise
    running.metrics = metrics
    running.on_stop.extend(closers)
    log.info("timeline mode %s, %d fan-out workers", mode, settings.fanout_workers if mode != "pull" else 0)
    return running
