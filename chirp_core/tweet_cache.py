"""The Redis keys the tweets service writes for the timelines at once, besides its outbox events.

The timeline service keeps hydrated tweets in Redis (`tweet_key`). An edit or a delete must not
be served from that cache even before the event reaches the workers, so the tweets service
replaces the entry with a tombstone right after its commit; readers treat a tombstone as a miss
and never write over it (SET NX), so a reader that fetched the old version just before the
commit cannot put it back. The tombstone expires after TOMBSTONE_SECONDS, longer than any read
in flight.

A new tweet reaches its author's home timeline through the workers, a moment after CreateTweet
answers. So that the author sees it on their very next read, the tweets service also records the
author's newest tweet (`last_post_key`); a read that finds it missing from the timeline fetches
the author's own newest tweets from PostgreSQL.

Both writes are best effort: writes never depend on Redis. When Redis is unreachable the
workers do the same when the event arrives, and the cache's own TTL bounds what remains.
"""

from __future__ import annotations

import logging
import time

import redis.asyncio

log = logging.getLogger("chirp.tweet_cache")

TOMBSTONE = b"-"
TOMBSTONE_SECONDS = 60
LAST_POST_SECONDS = 3600
TWEET_KEY_PREFIX = "chirp:tw:"
_LAST_POST_PREFIX = "chirp:lastpost:"


def tweet_key(tweet_id: int) -> str:
    return f"{TWEET_KEY_PREFIX}{tweet_id}"


def last_post_key(user_id: int) -> str:
    return f"{_LAST_POST_PREFIX}{user_id}"


def timeline_member(tweet_id: int, author_id: int, reply_to_user_id: int) -> str:
    """How a tweet is stored in a timeline sorted set: its ID zero-padded to 19 digits (so that
    members compare as strings in the order of their IDs), its author and the author of the tweet
    it answers (0 when none), which the read path needs to apply the follow and reply rules."""
    return f"{tweet_id:019d}:{author_id}:{reply_to_user_id}"


class RedisTweetSignals:
    """The tweets service's side: tombstones and last posts, each one best-effort SET.

    After a failure the writes are skipped for PAUSE_SECONDS, so that an unreachable Redis does
    not add a timeout to every write; the relayed events make up for what is skipped.
    """

    PAUSE_SECONDS = 2.0

    def __init__(self, client: redis.asyncio.Redis) -> None:
        self._redis = client
        self._paused_until = 0.0

    async def changed(self, tweet_id: int) -> None:
        await self._set(tweet_key(tweet_id), TOMBSTONE, TOMBSTONE_SECONDS)

    async def posted(self, tweet_id: int, author_id: int, reply_to_user_id: int) -> None:
        member = timeline_member(tweet_id, author_id, reply_to_user_id)
        await self._set(last_post_key(author_id), member.encode(), LAST_POST_SECONDS)

    async def _set(self, key: str, value: bytes, seconds: int) -> None:
        if time.monotonic() < self._paused_until:
            return
        try:
            await self._redis.set(key, value, ex=seconds)
        except (TimeoutError, redis.RedisError, OSError) as exc:
            self._paused_until = time.monotonic() + self.PAUSE_SECONDS
            log.warning("could not write %s to Redis (%s); the workers will", key, exc)
