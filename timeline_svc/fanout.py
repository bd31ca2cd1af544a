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

An event whose apply fails stays pending and is retried when it is taken over. An outage (Redis
or the graph service unreachable) is retried for as long as it lasts; any other failure (an author
the graph service does not know, a malformed event, a bug) counts as an attempt, in a Redis hash
that outlives the workers, and after `max_attempts` the event moves to the dead-letter stream
(`stream` + ":dead": its own fields plus error, attempts, original_id, group, consumer) and is
acknowledged, in one Lua script. Nothing is acknowledged as done that was not applied.

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
from importlib import resources
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
from timeline_svc.ports import FollowGraph, UnknownUser
from timeline_svc.store import REDIS_ERRORS, TimelineStore

log = logging.getLogger("chirp.timeline.fanout")

READ_COUNT = 16
# How long a follow merge waits for a timeline or recent set being built elsewhere.
BUILD_WAIT_SECONDS = 30.0
MAX_BACKOFF_SECONDS = 5.0
# The graph service did not answer: retried while it lasts, not counted against the attempts.
_OUTAGE_GRPC = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.CANCELLED,
}


class MalformedEvent(ValueError):
    pass


@dataclass(frozen=True)
class Event:
    type: str
    seq: int
    payload: Mapping[str, Any]

    @classmethod
    def parse(cls, fields: Mapping[bytes, bytes]) -> Event:
        try:
            event = cls(
                type=fields[b"type"].decode(),
                seq=int(fields[b"seq"]),
                payload=json.loads(fields[b"payload"]),
            )
        except KeyError as exc:
            raise MalformedEvent(f"no field {exc.args[0]!r}") from None
        except ValueError as exc:
            raise MalformedEvent(str(exc)) from None
        if not isinstance(event.payload, Mapping):
            raise MalformedEvent("the payload is not a JSON object")
        return event


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
        max_attempts: int = 5,
        metrics: Metrics | None = None,
        consumer_prefix: str = "",
    ) -> None:
        self._redis = client
        self._applier = applier
        self._stream = stream
        self._group = group
        self.dead_letter_stream = f"{stream}:dead"
        # Failed attempts per event ID, for this group; an entry goes when its event is acknowledged.
        self._attempts = f"{stream}:attempts:{group}"
        self._max_attempts = max_attempts
        self._metrics = metrics or Metrics()
        self._dead_letter = client.register_script(
            resources.files("timeline_svc").joinpath("lua", "dead_letter.lua").read_text()
        )
        self._count = consumers
        self._block_ms = max(1, int(block_seconds * 1000))
        self._claim_idle_ms = max(1, int(claim_idle_seconds * 1000))
        self._claim_every = max(0.05, claim_idle_seconds / 2)
        self._tasks: list[asyncio.Task[None]] = []
        # A prefix that names the process across its restarts (its Snowflake node) lets a restarted
        # process finish the events it had read before it died at once, not after the claim timeout.
        self._resume = bool(consumer_prefix)
        self._prefix = consumer_prefix or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self._group_ready = False
        self._stopping = False

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
        resume = self._resume
        while not self._stopping:
            try:
                await self.ensure_group()
                if resume:
                    await self.resume_own(consumer)
                    resume = False
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
                if not _outage(exc):
                    log.exception("fan-out consumer %s failed", consumer)
                else:
                    log.warning("fan-out consumer %s: %s; retrying in %.2fs", consumer, exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)

    async def read_and_apply(self, consumer: str, *, block_ms: int) -> int:
        """One XREADGROUP and the events it gave; how many were done with (applied or dead-lettered)."""
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
                done += await self._handle(consumer, message_id, fields)
        return done

    async def resume_own(self, consumer: str) -> int:
        """Handle the events still pending for `consumer` (read by an earlier run of this process
        that died before acknowledging them); how many were done with."""
        done, start = 0, "0"
        while True:
            reply: Any = await self._redis.xreadgroup(
                self._group, consumer, {self._stream: start}, count=READ_COUNT
            )
            messages = reply[0][1] if reply else []
            if not messages:
                return done
            for message_id, fields in messages:
                log.info("%s resumes event %s", consumer, message_id)
                done += await self._handle(consumer, message_id, fields or None)
                start = message_id

    async def _claim(self, consumer: str) -> None:
        start = "0-0"
        while True:
            reply: Any = await self._redis.xautoclaim(
                self._stream, self._group, consumer, self._claim_idle_ms, start_id=start, count=READ_COUNT
            )
            start, messages = reply[0], reply[1]
            for message_id, fields in messages:
                log.info("%s took over event %s", consumer, message_id)
                await self._handle(consumer, message_id, fields)
            if start in (b"0-0", "0-0") or not messages:
                return

    async def _handle(self, consumer: str, message_id: Any, fields: Mapping[bytes, bytes] | None) -> bool:
        """Apply and acknowledge: True when done. An outage is raised (the consumer backs off) and
        any other failure recorded; either way the event stays pending, taken over after the claim
        timeout, until it is applied or has failed max_attempts times (then it is dead-lettered)."""
        if fields is None:  # trimmed from the stream while pending: nothing left to apply
            log.warning("event %s is no longer in the stream; acknowledging it", message_id)
            await self._acknowledge(message_id)
            return True
        try:
            await self._applier.apply(Event.parse(fields))
        except Exception as exc:
            if _outage(exc):
                self._metrics.fanout_failures.labels("outage").inc()
                raise
            self._metrics.fanout_failures.labels("error").inc()
            return await self._failed(consumer, message_id, fields, exc)
        await self._acknowledge(message_id)
        return True

    async def _acknowledge(self, message_id: Any) -> None:
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.xack(self._stream, self._group, message_id)
            pipe.hdel(self._attempts, message_id)
            await pipe.execute()

    async def _failed(
        self, consumer: str, message_id: Any, fields: Mapping[bytes, bytes], exc: Exception
    ) -> bool:
        attempts = int(await self._redis.hincrby(self._attempts, message_id, 1))
        reason = _reason(exc)
        event_type = _text(fields.get(b"type", b"?"))
        if attempts < self._max_attempts:
            log.warning(
                "event %s (%s) failed in group %s, attempt %d of %d, to be retried: %s",
                _text(message_id),
                event_type,
                self._group,
                attempts,
                self._max_attempts,
                reason,
            )
            return False
        letter: list[Any] = [part for field in fields.items() for part in field]
        letter += ["error", reason, "attempts", attempts, "original_id", message_id]
        letter += ["group", self._group, "consumer", consumer]
        moved = await self._dead_letter(
            keys=[self._stream, self.dead_letter_stream, self._attempts],
            args=[self._group, message_id, *letter],
            client=self._redis,
        )
        if moved is None:  # another consumer acknowledged it meanwhile
            return False
        label = "malformed" if isinstance(exc, MalformedEvent) else event_type
        self._metrics.fanout_dead_letters.labels(label).inc()
        log.error(
            "event %s (%s) moved by group %s to the dead-letter stream %s as %s after %d failed attempts: %s",
            _text(message_id),
            event_type,
            self._group,
            self.dead_letter_stream,
            _text(moved),
            attempts,
            reason,
            exc_info=None if isinstance(exc, _EXPLAINED) else exc,
        )
        return True

    async def ensure_group(self) -> None:
        if self._group_ready:
            return
        try:
            await self._redis.xgroup_create(self._stream, self._group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._group_ready = True


# Failures whose message says it all; any other is logged with its traceback when dead-lettered.
_EXPLAINED = (grpc.aio.AioRpcError, UnknownUser, MalformedEvent)


def _outage(exc: Exception) -> bool:
    if isinstance(exc, REDIS_ERRORS):
        return True
    return isinstance(exc, grpc.aio.AioRpcError) and exc.code() in _OUTAGE_GRPC


def _reason(exc: Exception) -> str:
    if isinstance(exc, grpc.aio.AioRpcError):
        return f"{exc.code().name}: {exc.details()}"
    if isinstance(exc, UnknownUser):
        return f"unknown user: {exc}"
    if isinstance(exc, MalformedEvent):
        return f"malformed event: {exc}"
    return f"{type(exc).__name__}: {exc}"


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)
