"""Hydration: timeline entries to tweets with their authors, through the tweet cache.

A cache entry is the tweet's wire message with its author for settings.tweet_cache_seconds
(storage's TweetCacheStorage), kept as bytes from the cache to the response (models.CachedTweet).
Misses are fetched with one BatchGetTweets and one BatchGetUsers and written back, never over the
tombstone of an edit or a delete, and as a tombstone when the tweets service marked the tweet
changed a moment ago (timeline_svc.keys). IDs BatchGetTweets does not return are deleted tweets:
they are dropped, whatever a set still holds.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence

from chirp_core.metrics import Metrics
from timeline_svc.convert import cached_tweet
from timeline_svc.models import CachedTweet, TimelineTweet, Tweet
from timeline_svc.ports import StoreUnavailable, TweetStore, UserDirectory
from timeline_svc.storage import TweetCacheStorage

log = logging.getLogger("chirp.timeline.cache")


class TweetCache:
    def __init__(
        self, storage: TweetCacheStorage, tweets: TweetStore, users: UserDirectory, *, metrics: Metrics
    ) -> None:
        self._storage = storage
        self._tweets = tweets
        self._users = users
        self._metrics = metrics

    async def hydrate(self, ids: Sequence[int], cached: Sequence[bytes | None]) -> dict[int, TimelineTweet]:
        """The live tweets among ids, with authors: from `cached` (what the cache gave for ids), the
        rest from the tweets and user services, written back to the cache (those whose author was
        found)."""
        found: dict[int, TimelineTweet] = {}
        missing: list[int] = []
        for tweet_id, data in zip(ids, cached, strict=True):
            if data is None:
                missing.append(tweet_id)
            else:
                found[tweet_id] = CachedTweet(tweet_id, data)
        self._metrics.cache_lookups(len(found), len(missing))
        if missing:
            fetched = await self._fetch(missing)
            encoded = {t.tweet_id: cached_tweet(t) for t in fetched if t.author is not None}
            found.update(encoded)
            # Without its author (the user service failed it), a tweet is left to the caller.
            found.update((t.tweet_id, t) for t in fetched if t.author is None)
            await self._store(encoded.values())
        return found

    async def hydrate_ids(self, ids: Sequence[int]) -> dict[int, TimelineTweet]:
        """As hydrate, with the cache read here (the live stream's tweets)."""
        if not ids:
            return {}
        try:
            cached = await self._storage.get(ids)
        except StoreUnavailable:
            cached = [None] * len(ids)
        return await self.hydrate(ids, cached)

    async def forget(self, tweet_id: int) -> None:
        """Tombstone an edited or deleted tweet (the workers, when its event arrives)."""
        await self._storage.forget(tweet_id)

    async def _fetch(self, ids: Collection[int]) -> list[Tweet]:
        tweets = await self._tweets.tweets_by_ids(ids)
        authors = await self._users.get_users({t.user_id for t in tweets})
        return [t.with_author(authors.get(t.user_id)) for t in tweets]

    async def _store(self, tweets: Collection[CachedTweet]) -> None:
        try:
            await self._storage.put(tweets)
        except StoreUnavailable as exc:
            log.info("tweet cache not written: %s", exc)
