"""A timeline server under test, and the verbs of the fan-out tests."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import grpc
import redis.asyncio

from chirp.timeline.v1 import timeline_pb2, timeline_pb2_grpc
from chirp.tweets.v1 import tweets_pb2
from chirp_core.grpc_server import RunningServer
from chirp_core.metrics import Metrics
from chirp_core.redis_client import REDIS_TIMEOUT_SECONDS, RedisClient, open_redis
from chirp_core.settings import Settings
from tests.helpers.api import LAG_SECONDS, Api, as_user, eventually
from tests.helpers.graph import follow, unfollow
from tests.helpers.tweets import post
from timeline_svc.cluster_storage import ClusterTimelineStore, ClusterTweetCacheStorage
from timeline_svc.server import start
from timeline_svc.storage import TimelineStore, TweetCacheStorage

__all__ = ["LAG_SECONDS", "Timeline", "applied", "eventually", "follow", "post", "start_timeline", "unfollow"]

CELEBRITY_THRESHOLD = 3


@dataclass
class Timeline:
    """A running timeline server, a stub for it and a look at its Redis state."""

    mode: str
    settings: Settings
    server: RunningServer
    channel: grpc.aio.Channel
    stub: timeline_pb2_grpc.TimelineServiceStub
    redis: RedisClient
    store: TimelineStore

    @property
    def metrics(self) -> Metrics:
        assert self.server.metrics is not None
        return self.server.metrics

    async def home(
        self, user_id: int, limit: int = 0, cursor: str = ""
    ) -> timeline_pb2.GetHomeTimelineResponse:
        request = timeline_pb2.GetHomeTimelineRequest(user_id=user_id, limit=limit, cursor=cursor)
        return await self.stub.GetHomeTimeline(request, metadata=as_user(user_id), timeout=10)

    async def home_ids(self, user_id: int, limit: int = 100) -> list[int]:
        return [t.tweet_id for t in (await self.home(user_id, limit=limit)).tweets]

    async def walk(self, user_id: int, limit: int) -> list[int]:
        """Every tweet ID of the home timeline, page by page."""
        seen: list[int] = []
        cursor = ""
        for _ in range(1000):
            page = await self.home(user_id, limit=limit, cursor=cursor)
            seen += [t.tweet_id for t in page.tweets]
            if not page.next_cursor:
                return seen
            cursor = page.next_cursor
        raise AssertionError("no last page")

    async def pushed(self, user_id: int) -> list[int]:
        """The tweet IDs in the reader's Redis timeline, newest first (no sentinel)."""
        return [e.tweet_id for e in await self.store.entries(user_id)]

    async def stream(self, user_id: int, since_id: int = 0) -> Any:
        request = timeline_pb2.StreamHomeTimelineRequest(user_id=user_id, since_id=since_id)
        call = self.stub.StreamHomeTimeline(request, metadata=as_user(user_id))
        await call.initial_metadata()
        return call

    async def stop(self) -> None:
        await self.channel.close()
        await self.server.stop(0.1)
        await self.redis.aclose()


async def start_timeline(base: Settings, mode: str, **changes: Any) -> Timeline:
    """A timeline server in `mode` over the stack's services and Redis, in a namespace of its own."""
    defaults: dict[str, Any] = {
        "timeline_namespace": f"t{uuid.uuid4().hex[:8]}",
        "celebrity_threshold": CELEBRITY_THRESHOLD,
    }
    settings = base.with_changes(timeline_mode=mode, **{**defaults, **changes})
    server = await start(settings, 0)
    channel = grpc.aio.insecure_channel(f"{settings.host}:{server.port}")
    client = open_redis_of(settings)
    store = store_of(client, namespace=settings.timeline_namespace, cap=settings.timeline_size)
    return Timeline(
        mode, settings, server, channel, timeline_pb2_grpc.TimelineServiceStub(channel), client, store
    )


def open_redis_of(settings: Settings, *, read_timeout: float = REDIS_TIMEOUT_SECONDS) -> RedisClient:
    """A plain client of the Redis (or Redis Cluster) of settings."""
    assert settings.redis_url
    return open_redis(settings.redis_url, read_timeout=read_timeout, cluster=settings.redis_cluster)


def store_of(client: RedisClient, *, namespace: str, cap: int) -> TimelineStore:
    """The timeline storage over client, as the service builds it."""
    if isinstance(client, redis.asyncio.RedisCluster):
        # The celebrity set read afresh each time: a test looks right after a change.
        return ClusterTimelineStore(
            client, namespace=namespace, cap=cap, ttl_seconds=60, celebrities_seconds=0
        )
    return TimelineStore(client, namespace=namespace, cap=cap, ttl_seconds=60)


def cache_storage_of(client: RedisClient) -> TweetCacheStorage:
    if isinstance(client, redis.asyncio.RedisCluster):
        return ClusterTweetCacheStorage(client, ttl_seconds=60)
    return TweetCacheStorage(client, ttl_seconds=60)


async def applied(timeline: Timeline, event_type: str) -> float:
    """How many events of the type the server's workers applied."""
    return timeline.metrics.value("chirp_fanout_events_total", {"type": event_type})


async def reply(api: Api, user_id: int, to: int, content: str = "a reply") -> tweets_pb2.Tweet:
    request = tweets_pb2.CreateTweetRequest(user_id=user_id, content=content, reply_to=to)
    return await api.tweets.CreateTweet(request, metadata=as_user(user_id))
