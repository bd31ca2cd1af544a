"""Home timelines read from Redis (push and hybrid modes), with PostgreSQL as the safety net.

A read is one round trip to Redis (lua/read.lua: the reader's timeline and the recent sets of the
celebrities they follow, merged and filtered, with the cached tweets), then hydration of the
cache misses. Paging below what Redis holds (its horizon) goes on through the pull path with the
last ID returned as max_id: the same keyset, so no duplicate and no gap at the seam, and no wall
at the cap. A cold reader's timeline is rebuilt from the pull path first. Any Redis error answers
the read from the pull path instead: availability over freshness. The rules here see Redis only
through timeline_svc.storage.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from typing import Literal

from chirp_core.metrics import Metrics
from timeline_svc.cache import TweetCache
from timeline_svc.models import Entry, TimelineTweet
from timeline_svc.ports import FollowGraph, StoreUnavailable, TweetStore
from timeline_svc.pull import PullTimeline
from timeline_svc.storage import Cold, MissingRecent, RawPage, TimelineStore

log = logging.getLogger("chirp.timeline.home")

Path = Literal["warm", "cold", "fallback"]
# A read that keeps finding the timeline cold (someone flushing Redis in a loop) gives up on
# Redis after this many tries and pulls.
_READ_ATTEMPTS = 3


class _NotReady(Exception):
    pass


class Builder:
    """Fills cold Redis state from PostgreSQL: a reader's timeline, an author's recent set.

    Each build first claims its key (created empty with the horizon INF), so concurrent readers
    go to PostgreSQL and the workers write into it meanwhile; a builder that fails lets go.
    """

    def __init__(self, store: TimelineStore, graph: FollowGraph, tweets: TweetStore) -> None:
        self._store = store
        self._graph = graph
        self._tweets = tweets
        self._cleanups: set[asyncio.Task[None]] = set()

    async def build_timeline(self, reader: int) -> None:
        if not await self._store.begin_build(reader):
            return
        try:
            followees = set(await self._graph.followee_ids(reader))
            tweets = await self._tweets.tweets_by_authors(
                {reader, *followees}, max_id=0, min_id=0, limit=self._store.cap, home_user_id=reader
            )
            entries = [Entry.of(t) for t in tweets]
            await self._store.finish_build(reader, followees, entries, _horizon(entries, self._store.cap))
        except BaseException:
            self._let_go(self._store.abandon_build(reader))
            raise

    async def load_recent(self, author: int) -> None:
        if not await self._store.begin_recent(author):
            return
        try:
            tweets = await self._tweets.tweets_by_authors([author], max_id=0, min_id=0, limit=self._store.cap)
            entries = [Entry.of(t) for t in tweets]
            await self._store.finish_recent(author, entries, _horizon(entries, self._store.cap))
        except BaseException:
            self._let_go(self._store.abandon_recent(author))
            raise

    def _let_go(self, release: object) -> None:
        """Release a claim even when the build was cancelled; the claim's TTL covers a failure."""

        async def run() -> None:
            with contextlib.suppress(StoreUnavailable):
                await release  # type: ignore[misc]  # a coroutine

        task = asyncio.create_task(run())
        self._cleanups.add(task)
        task.add_done_callback(self._cleanups.discard)


def _horizon(entries: Sequence[Entry], cap: int) -> int:
    """A build that got `cap` tweets holds only the newest: complete down to the oldest of them."""
    return entries[-1].tweet_id - 1 if len(entries) >= cap else 0


class FanoutHomeTimeline:
    """A HomeTimelineSource over TimelineStore. merge_celebrities: the hybrid mode."""

    def __init__(
        self,
        store: TimelineStore,
        builder: Builder,
        cache: TweetCache,
        pull: PullTimeline,
        tweets: TweetStore,
        *,
        merge_celebrities: bool,
        metrics: Metrics,
    ) -> None:
        self._store = store
        self._builder = builder
        self._cache = cache
        self._pull = pull
        self._tweets = tweets
        self._merge = merge_celebrities
        self._metrics = metrics

    async def home_tweets(
        self, user_id: int, *, max_id: int, min_id: int, limit: int
    ) -> Sequence[TimelineTweet]:
        started = time.perf_counter()
        path: Path
        try:
            tweets, path = await self._from_redis(user_id, max_id, min_id, limit)
        except StoreUnavailable as exc:
            log.warning("home timeline of %d from PostgreSQL: %s", user_id, exc)
            self._metrics.redis_failures.labels("read").inc()
            path = "fallback"
            tweets = list(await self._pull.home_tweets(user_id, max_id=max_id, min_id=min_id, limit=limit))
        except _NotReady:
            path = "cold"
            tweets = list(await self._pull.home_tweets(user_id, max_id=max_id, min_id=min_id, limit=limit))
        self._metrics.timeline_reads.labels(path).observe(time.perf_counter() - started)
        return tweets

    async def _from_redis(
        self, user_id: int, max_id: int, min_id: int, limit: int
    ) -> tuple[list[TimelineTweet], Path]:
        path: Path = "warm"
        found: dict[int, TimelineTweet] = {}
        upper = max_id
        first = True
        while len(found) < limit:
            want = limit - len(found)
            page, built = await self._page(user_id, upper, min_id, want)
            if built:
                path = "cold"
            if first and page.pending_own:
                found.update(await self._own_tweets(user_id, max_id, max(min_id, page.horizon), limit))
            first = False
            ids = page.ids
            found.update(await self._cache.hydrate(ids, page.cached))
            if len(ids) < want:
                if page.horizon > min_id:
                    # Redis is exhausted above its horizon: PostgreSQL has the rest, below the
                    # last entry Redis gave (or the page's bound).
                    self._metrics.timeline_seams.inc()
                    seam = ids[-1] if ids else upper
                    rest = await self._pull.home_tweets(
                        user_id, max_id=seam, min_id=min_id, limit=max(1, limit - len(found))
                    )
                    found.update((t.tweet_id, t) for t in rest if t.tweet_id not in found)
                break
            # Some entries were deleted tweets: read on below them to fill the page.
            upper = ids[-1]
        newest_first = sorted(found.values(), key=lambda t: t.tweet_id, reverse=True)
        return newest_first[:limit], path

    async def _page(self, user_id: int, upper: int, min_id: int, want: int) -> tuple[RawPage, bool]:
        built = False
        for _ in range(_READ_ATTEMPTS):
            result = await self._store.read(
                user_id, max_id=upper, min_id=min_id, want=want, merge_celebrities=self._merge
            )
            if isinstance(result, RawPage):
                return result, built
            if isinstance(result, Cold):
                built = True
                await self._builder.build_timeline(user_id)
            elif isinstance(result, MissingRecent):
                await asyncio.gather(*(self._builder.load_recent(a) for a in result.authors))
        raise _NotReady

    async def _own_tweets(
        self, user_id: int, max_id: int, min_id: int, limit: int
    ) -> dict[int, TimelineTweet]:
        """The reader's own newest tweets the workers have not put in yet (read-your-writes)."""
        own = await self._tweets.tweets_by_authors([user_id], max_id=max_id, min_id=min_id, limit=limit)
        return {t.tweet_id: t for t in own}
