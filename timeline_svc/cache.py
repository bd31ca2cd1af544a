"""Hydration: timeline entries to tweets with their authors, through the Redis tweet cache.

A cache entry is the Tweet message with its author, serialized, for settings.tweet_cache_seconds.
Misses are fetched with one BatchGetTweets and one BatchGetUsers and written back with SET NX,
so a tombstone left by an edit or a delete (chirp_core.tweet_cache) is never overwritten. IDs
BatchGetTweets does not return are deleted tweets: they are dropped, whatever a set still holds.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from typing import Any

import redis.asyncio

from chirp.tweets.v1 import tweets_pb2
from chirp_core.metrics import Metrics
from chirp_core.tweet_cache import TOMBSTONE, TOMBSTONE_SECONDS, tweet_key
from timeline_svc.convert import tweet_from_proto, tweet_to_proto
from timeline_svc.models import Tweet
from timeline_svc.ports import TweetStore, UserDirectory
from timeline_svc.store import REDIS_ERRORS

log = logging.getLogger("chirp.timeline.cache")


class TweetCache:
    def __init__(
        self,
        client: redis.asyncio.Redis,
        tweets: TweetStore,
        users: UserDirectory,
        *,
        ttl_seconds: float,
        metrics: Metrics,
    ) -> None:
        self._redis = client
        self._tweets = tweets
        self._users = users
        self._ttl = max(1, int(ttl_seconds))
        self._metrics = metrics

    async def hydrate(self, ids: Sequence[int], cached: Sequence[bytes | None]) -> dict[int, Tweet]:
        """The live tweets among ids, with authors: from `cached` (what MGET gave for ids), the rest
        from the tweets and user services, written back to the cache."""
        found: dict[int, Tweet] = {}
        missing: list[int] = []
        for tweet_id, blob in zip(ids, cached, strict=True):
            tweet = _decode(blob)
            if tweet is None:
                missing.append(tweet_id)
            else:
                found[tweet_id] = tweet
        self._metrics.cache_lookups(len(found), len(missing))
        if missing:
            fetched = await self._fetch(missing)
            found.update(fetched)
            await self._store(fetched.values())
        return found

    async def hydrate_ids(self, ids: Sequence[int]) -> dict[int, Tweet]:
        """As hydrate, with the MGET done here (the live stream's tweets)."""
        if not ids:
            return {}
        try:
            cached: list[Any] = await self._redis.mget([tweet_key(i) for i in ids])
        except REDIS_ERRORS:
            cached = [None] * len(ids)
        return await self.hydrate(ids, cached)

    async def forget(self, tweet_id: int) -> None:
        """Tombstone an edited or deleted tweet (the workers, when its event arrives)."""
        await self._redis.set(tweet_key(tweet_id), TOMBSTONE, ex=TOMBSTONE_SECONDS)

    async def _fetch(self, ids: Collection[int]) -> dict[int, Tweet]:
        tweets = await self._tweets.tweets_by_ids(ids)
        authors = await self._users.get_users({t.user_id for t in tweets})
        return {t.tweet_id: t.with_author(authors.get(t.user_id)) for t in tweets}

    async def _store(self, tweets: Collection[Tweet]) -> None:
        if not tweets:
            return
        try:
            pipe = self._redis.pipeline(transaction=False)
            for tweet in tweets:
                if tweet.author is not None:
                    blob = tweet_to_proto(tweet).SerializeToString()
                    pipe.set(tweet_key(tweet.tweet_id), blob, ex=self._ttl, nx=True)
            await pipe.execute()
        except REDIS_ERRORS as exc:
            log.info("tweet cache not written: %s", exc)


def _decode(blob: bytes | None) -> Tweet | None:
    if blob is None or blob == TOMBSTONE:
        return None
    return tweet_from_proto(tweets_pb2.Tweet.FromString(blob))
