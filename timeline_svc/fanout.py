"""The fan-out rules: how each outbox event (chirp_core.outbox) changes the Redis timelines
(timeline_svc.storage). The consumers of the events stream (timeline_svc.events) call apply.

Events come at least once and in any order (two relays, or two consumers, may swap them): every
step is idempotent (ZADD, ZREM, SADD, SREM, SET), follow events carry a sequence number per edge so
that an older one never undoes a newer one, and deleted tweets are filtered at hydration anyway.

  tweet_created  into the author's recent set (when loaded) and own timeline; then, unless the
                 author is a celebrity (hybrid), into each warm follower's timeline, one Redis
                 round trip per batch of follower IDs. A reply goes only to the followers it
                 reaches by timeline_svc.visibility (FilterFollowers on the user it answers).
  tweet_edited   the cached tweet is tombstoned (the tweets service marked it changed already).
  tweet_deleted  tombstoned, and removed from the recent set and the timelines.
  followed       the followee's follower count (celebrity crossing), the reader's following set,
                 and the followee's recent tweets merged into the reader's timeline.
  unfollowed     the count, the following set, and the followee's tweets out of the timeline.

Failures come as the ports' errors (timeline_svc.ports): the consumers retry an Unavailable while
it lasts and dead-letter an event that keeps failing otherwise.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any

from chirp_core.metrics import Metrics
from chirp_core.snowflake import timestamp_of
from timeline_svc import visibility
from timeline_svc.cache import TweetCache
from timeline_svc.home import Builder
from timeline_svc.models import Entry, Event
from timeline_svc.ports import FollowGraph
from timeline_svc.storage import TimelineStore

log = logging.getLogger("chirp.timeline.fanout")

# How long a follow merge waits for a timeline or recent set being built elsewhere.
BUILD_WAIT_SECONDS = 30.0


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
            author, replied = entry.author_id, entry.reply_to_user_id
            async for batch in self._graph.follower_batches(author, self._batch_size):
                if not visibility.reaches_every_follower(author, replied):
                    following = await self._graph.followers_among(replied, batch)
                    batch = [
                        f
                        for f in batch
                        if visibility.reply_reaches(f, author, replied, (replied,) if f in following else ())
                    ]
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
