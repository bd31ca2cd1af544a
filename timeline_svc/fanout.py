"""The fan-out workers: consumers of the outbox events (chirp_core.outbox) that keep the Redis
timelines (timeline_svc.store) up to date.

N asyncio consumers share one consumer group, so each event is applied by one of them; an event
is acknowledged only after it was applied. A consumer that dies leaves its events pending: every
consumer periodically takes over (XAUTOCLAIM) events idle longer than the claim timeout and
applies them again. Delivery is therefore at-least-once, and in any order (two relays, or two
consumers, may swap events): every step is idempotent (ZADD, ZREM, SADD, SREM, SET), follow
events carry a sequence number per edge so that an older one never undoes a newer one, and
deleted tweets are filtered at hydration anyway.

  tweet_created  into the author's recent set (when loaded) and own timeline; then, unless the
                 author is a celebrity (hybrid), into each warm follower's timeline, one Redis
                 round trip per batch of follower IDs. A reply by A to B (B != A) goes only to
                 followers who also follow B (FilterFollowers); a self-reply to all.
  tweet_edited   the cached tweet is tombstoned (the tweets service did it already, best effort).
  tweet_deleted  tombstoned, and removed from the recent set and the timelines.
  followed       the followee's follower count (celebrity crossing), the reader's following set,
                 and the followee's recent tweets merged into the reader's timeline.
  unfollowed     the count, the following set, and the followee's tweets out of the timeline.

A new consumer group starts from the beginning of the stream (ID 0): replaying what the stream
still holds is harmless, and after a flush of Redis nothing relayed meanwhile is skipped.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import grpc
import redis.asyncio
from redis.exceptions import ResponseError

from chirp_core.metrics import Metrics
from chirp_core.snowflake import timestamp_of
from chirp_core.tasks import raise_if_cancelled, stop_tasks
from timeline_svc.cache import TweetCache
from timeline_svc.home import Builder
from timeline_svc.models import Entry
from timeline_svc.ports import FollowGraph
from timeline_svc.store import REDIS_ERRORS, TimelineStore

log = logging.getLogger("chirp.timeline.fanout")

READ_COUNT = 16
# How long a follow merge waits for a timeline or recent set being built elsewhere.
BUILD_WAIT_SECONDS = 30.0
MAX_BACKOFF_SECONDS = 5.0
MAX_ATTEMPTS = 3
# Transient failures leave the event pending, to be retried; anything else is a bad event.
_RETRYABLE_GRPC = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.ABORTED,
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.UNKNOWN,
    grpc.StatusCode.CANCELLED,
}


@dataclass(frozen=True)
class Event:
    type: str
    seq: int
    payload: Mapping[str, Any]

    @classmethod
    def parse(cls, fields: Mapping[bytes, bytes]) -> Event:
        return cls(
            type=fields[b"type"].decode(),
            seq=int(fields[b"seq"]),
            payload=json.loads(fields[b"payload"]),
        )


class FanoutApplier:
    """How each event changes Redis. `threshold` None: no celebrity path (the push mode)."""

    def __init__(
        self,
        store: TimelineStore,
        builder: Builder,
        cache: TweetCache,
        graph: FollowGraph,
        *,
        threshold: int | None,
        batch_size: int,
        metrics: Metrics,
    ) -> None:
        self._store = store
        self._builder = builder
        self._cache = cache
        self._graph = graph
        self._threshold = threshold
        self._batch_size = batch_size
        self._metrics = metrics

    async def apply(self, event: Event) -> None:
        payload = event.payload
        if event.type == "tweet_created":
            await self._created(_entry(payload))
        elif event.type == "tweet_edited":
            await self._cache.forget(int(payload["tweet_id"]))
        elif event.type == "tweet_deleted":
            await self._deleted(_entry(payload))
        elif event.type in ("followed", "unfollowed"):
            await self._edge(event)
        else:
            log.info("ignoring event type %s", event.type)
            return
        self._metrics.fanout_events.labels(event.type).inc()

    async def _created(self, entry: Entry) -> None:
        celebrity = await self._is_celebrity(entry.author_id)
        await self._store.push_recent(entry, announce=celebrity)
        written = 0
        if not celebrity:
            replied = entry.reply_to_user_id
            async for batch in self._graph.follower_batches(entry.author_id, self._batch_size):
                if replied and replied != entry.author_id:
                    keep = await self._graph.followers_among(replied, batch)
                    keep.add(replied)
                    batch = [f for f in batch if f in keep]
                written += await self._store.push(batch, entry)
        # The author's own timeline last: once it has the tweet, every follower's has too.
        written += await self._store.push([entry.author_id], entry)
        self._metrics.fanout_timelines.inc(written)
        lag = time.time() - timestamp_of(entry.tweet_id).timestamp()
        self._metrics.fanout_lag.labels("celebrity" if celebrity else "push").observe(max(0.0, lag))

    async def _deleted(self, entry: Entry) -> None:
        await self._cache.forget(entry.tweet_id)
        await self._store.remove_recent(entry)
        await self._store.remove([entry.author_id], entry)
        # A celebrity's tweets were never pushed (or only before they became one, which is left
        # to hydration, which drops deleted tweets, and to the cap).
        if await self._is_celebrity(entry.author_id):
            return
        async for batch in self._graph.follower_batches(entry.author_id, self._batch_size):
            await self._store.remove(batch, entry)

    async def _edge(self, event: Event) -> None:
        reader = int(event.payload["follower_id"])
        followee = int(event.payload["followee_id"])
        count = event.payload.get("followee_follower_count")
        if count is not None:
            await self._count(followee, int(count), event.seq)
        follow = event.type == "followed"
        deadline = time.monotonic() + BUILD_WAIT_SECONDS
        delay = 0.02
        while True:
            # A celebrity's tweets are merged at read time, not copied: asked again at each try,
            # as the follower count may have crossed the threshold meanwhile.
            merge = follow and not await self._is_celebrity(followee)
            if time.monotonic() > deadline:
                log.warning("follow %d -> %d: gave up merging, a build did not finish", reader, followee)
                merge = False
            outcome = await self._store.apply_edge(reader, followee, event.seq, follow=follow, merge=merge)
            if outcome != "need_recent":
                return
            await self._builder.load_recent(followee)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)

    async def _is_celebrity(self, author: int) -> bool:
        if self._threshold is None:
            return False
        known = await self._store.celebrity(author)
        if known is None:
            count = await self._graph.follower_count(author)
            if count is None:
                return False
            await self._count(author, count, 0)
            known = await self._store.celebrity(author)
        return bool(known)

    async def _count(self, user: int, count: int, seq: int) -> None:
        if self._threshold is None:
            return
        if await self._store.apply_count(user, count, seq, self._threshold) == "down":
            await self._backfill(user)

    async def _backfill(self, author: int) -> None:
        """A former celebrity's recent tweets into their warm followers' timelines: from now on
        their tweets are pushed, and readers no longer merge their recent set."""
        await self._builder.load_recent(author)
        async for batch in self._graph.follower_batches(author, min(self._batch_size, 1000)):
            for _ in range(int(BUILD_WAIT_SECONDS / 0.05)):
                if await self._store.backfill(author, batch) >= 0:
                    break
                await asyncio.sleep(0.05)  # the recent set is being loaded by another worker
        await self._store.backfill_done(author)


def _entry(payload: Mapping[str, Any]) -> Entry:
    return Entry(int(payload["tweet_id"]), int(payload["user_id"]), int(payload.get("reply_to_user_id") or 0))


class FanoutWorkers:
    """`consumers` asyncio tasks in the consumer group `group` of `stream`."""

    def __init__(
        self,
        client: redis.asyncio.Redis,
        applier: FanoutApplier,
        *,
        stream: str,
        group: str,
        consumers: int,
        block_seconds: float,
        claim_idle_seconds: float,
    ) -> None:
        self._redis = client
        self._applier = applier
        self._stream = stream
        self._group = group
        self._count = consumers
        self._block_ms = max(1, int(block_seconds * 1000))
        self._claim_idle_ms = max(1, int(claim_idle_seconds * 1000))
        self._claim_every = max(0.05, claim_idle_seconds / 2)
        self._tasks: list[asyncio.Task[None]] = []
        self._prefix = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self._group_ready = False
        self._stopping = False
        # Failed attempts per event that failed for a reason a retry does not cure.
        self._failures: dict[Any, int] = {}

    def start(self) -> None:
        for index in range(self._count):
            name = f"{self._prefix}-{index}"
            self._tasks.append(asyncio.create_task(self.consume(name), name=f"fanout {name}"))

    async def stop(self) -> None:
        """Cancel the consumers. An event being applied stays pending and is taken over later."""
        self._stopping = True
        await stop_tasks(self._tasks, "fan-out consumer")
        self._tasks = []

    async def consume(self, consumer: str) -> None:
        """Read, apply, acknowledge; now and then take over what a dead consumer left."""
        backoff = 0.05
        next_claim = time.monotonic() + self._claim_every
        while not self._stopping:
            try:
                await self.ensure_group()
                if time.monotonic() >= next_claim:
                    next_claim = time.monotonic() + self._claim_every
                    await self._claim(consumer)
                await self.read_and_apply(consumer, block_ms=self._block_ms)
                raise_if_cancelled()
                backoff = 0.05
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self._stopping:
                    return
                if "NOGROUP" in str(exc):  # Redis was flushed or restarted empty
                    self._group_ready = False
                    continue
                if not _transient(exc):
                    log.exception("fan-out consumer %s failed", consumer)
                else:
                    log.warning("fan-out consumer %s: %s; retrying in %.2fs", consumer, exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)

    async def read_and_apply(self, consumer: str, *, block_ms: int) -> int:
        """One XREADGROUP and the events it gave; how many were applied and acknowledged."""
        try:
            reply: Any = await self._redis.xreadgroup(
                self._group, consumer, {self._stream: ">"}, count=READ_COUNT, block=block_ms
            )
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            self._group_ready = False
            return 0
        done = 0
        for _stream, messages in reply or []:
            for message_id, fields in messages:
                await self._handle(message_id, fields)
                done += 1
        return done

    async def _claim(self, consumer: str) -> None:
        start = "0-0"
        while True:
            reply: Any = await self._redis.xautoclaim(
                self._stream, self._group, consumer, self._claim_idle_ms, start_id=start, count=READ_COUNT
            )
            start, messages = reply[0], reply[1]
            for message_id, fields in messages:
                log.info("%s took over event %s", consumer, message_id)
                await self._handle(message_id, fields)
            if start in (b"0-0", "0-0") or not messages:
                return

    async def _handle(self, message_id: Any, fields: Mapping[bytes, bytes] | None) -> None:
        """Apply and acknowledge. A transient failure leaves the event pending (it is taken over
        after the claim timeout); one that fails MAX_ATTEMPTS times otherwise is dropped."""
        try:
            event = Event.parse(fields or {})
        except (KeyError, ValueError) as exc:
            log.error("dropping malformed event %s: %s", message_id, exc)
        else:
            try:
                await self._applier.apply(event)
            except Exception as exc:
                if _transient(exc):
                    raise
                attempts = self._failures[message_id] = self._failures.get(message_id, 0) + 1
                if attempts < MAX_ATTEMPTS:
                    raise
                log.exception("dropping event %s after %d failed attempts", message_id, attempts)
            self._failures.pop(message_id, None)
        await self._redis.xack(self._stream, self._group, message_id)

    async def ensure_group(self) -> None:
        if self._group_ready:
            return
        try:
            await self._redis.xgroup_create(self._stream, self._group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._group_ready = True


def _transient(exc: Exception) -> bool:
    if isinstance(exc, REDIS_ERRORS):
        return True
    return isinstance(exc, grpc.aio.AioRpcError) and exc.code() in _RETRYABLE_GRPC
