"""What the tweets service tells Redis right after a commit, besides its outbox events.

The events reach the timeline service's workers a moment later; until then two keys of the tweets
service's own say what just changed, so that readers see their own writes at once:
  chirp:tweets:changed:{tweet}  an edit or a delete was committed (CHANGED_SECONDS)
  chirp:tweets:last:{author}    the author's newest tweet ID (LAST_POST_SECONDS)
(The braces are literal, a Redis Cluster hash tag: timeline_svc/keys.py.)
The timeline service reads them (timeline_svc/keys.py) and keeps its own formats to itself.

Why keys and not a call to the timeline service: they cost the write one SET and the timeline's
read nothing (its read script fetches them in the same round trip), they need no address of the
timeline service (which starts after this one), and they keep working while it is down.

Both writes are best effort: writes never depend on Redis. After a failure they are skipped for
PAUSE_SECONDS, so that an unreachable Redis does not add a timeout to every write; the relayed
events make up for what is skipped.
"""

from __future__ import annotations

import logging
import time

import redis.asyncio

from chirp_core.redis_client import RedisClient

log = logging.getLogger("chirp.tweets.signals")

CHANGED_KEY_PREFIX = "chirp:tweets:changed:"
LAST_POST_KEY_PREFIX = "chirp:tweets:last:"
# Longer than any read in flight when the change commits.
CHANGED_SECONDS = 60
LAST_POST_SECONDS = 3600


class RedisTweetSignals:
    """The service's TweetSignals over Redis, each one best-effort SET."""

    PAUSE_SECONDS = 2.0

    def __init__(self, client: RedisClient) -> None:
        self._redis = client
        self._paused_until = 0.0

    async def changed(self, tweet_id: int) -> None:
        await self._set(f"{CHANGED_KEY_PREFIX}{{{tweet_id}}}", b"1", CHANGED_SECONDS)

    async def posted(self, tweet_id: int, author_id: int, reply_to_user_id: int) -> None:
        await self._set(f"{LAST_POST_KEY_PREFIX}{{{author_id}}}", str(tweet_id).encode(), LAST_POST_SECONDS)

    async def _set(self, key: str, value: bytes, seconds: int) -> None:
        if time.monotonic() < self._paused_until:
            return
        try:
            await self._redis.set(key, value, ex=seconds)
        except (TimeoutError, redis.RedisError, OSError) as exc:
            self._paused_until = time.monotonic() + self.PAUSE_SECONDS
            log.warning("could not write %s to Redis (%s); the workers will", key, exc)
