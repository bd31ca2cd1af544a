"""The timeline storage on a Redis Cluster (settings.redis_cluster).

Every key carries a hash tag (storage's module doc): a reader's timeline, follow set and edge
versions share the reader's slot, an author's recent set is in the author's slot, a cached tweet
and its changed marker in the tweet's, and the celebrity set with the follower counts in the
namespace's. Each script then touches one slot; what the one-Redis scripts read across slots is
read here first and handed to them, and what they wrote to many readers at once is sent as one
pipeline, which redis-py splits by node and sends to the nodes in parallel:

  a hybrid read   the reader's followed celebrities (SMISMEMBER against the celebrity set, which
                  a read reuses for CELEBRITIES_SECONDS), their recent sets (one pipeline: one
                  round trip per node that holds any, in parallel), read.lua on the reader's node
                  with those sets, then the cached tweets (one pipeline again)
  a push/remove   push.lua / remove.lua per reader, one pipeline
  a follow merge  the followee's recent set first, then follow.lua with it
  a backfill      the recent set first, then backfill.lua per reader, one pipeline

A node that fails fails the calls that need it (StoreUnavailable): its readers are served from
PostgreSQL, the others go on from Redis. A tweet-cache read that fails is a miss.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Sequence
from typing import Any

import redis.asyncio
from redis.exceptions import NoScriptError

from timeline_svc.keys import CHANGED_KEY_PREFIX, changed_key, last_post_key, tweet_key
from timeline_svc.models import CachedTweet, Entry
from timeline_svc.storage import (
    INFINITE,
    REDIS_ERRORS,
    Cold,
    MissingRecent,
    RawPage,
    TimelineStore,
    TweetCacheStorage,
    _blob,
    _id,
    _parse_page,
    _text,
    _translating,
)

# How long a process reuses the celebrity set: a new celebrity's tweets (no longer pushed) reach
# readers on other nodes at most this much later.
CELEBRITIES_SECONDS = 1.0


class ClusterTimelineStore(TimelineStore):
    def __init__(
        self,
        client: redis.asyncio.RedisCluster,
        *,
        namespace: str,
        cap: int,
        ttl_seconds: int,
        celebrities_seconds: float = CELEBRITIES_SECONDS,
    ) -> None:
        super().__init__(client, namespace=namespace, cap=cap, ttl_seconds=ttl_seconds)
        self.cluster = client
        self._celebrities: list[int] = []
        self._celebrities_seconds = celebrities_seconds
        self._celebrities_until = 0.0

    @_translating
    async def read(
        self, reader: int, *, max_id: int, min_id: int, want: int, merge_celebrities: bool
    ) -> RawPage | Cold | MissingRecent:
        sets: list[bytes] = []
        if merge_celebrities:
            followed = sorted(await self.followed_among(reader, await self._celebrity_set()))
            if followed:
                sets = await self._each([("GETEX", self.recent_key(a), "EX", self.ttl) for a in followed])
                missing = [a for a, blob in zip(followed, sets, strict=True) if blob is None]
                if missing:
                    return MissingRecent(missing)
        reply = await self._run(
            "read",
            [*self._reader_keys(reader), last_post_key(reader)],
            [
                reader,
                _id(max_id) if max_id else INFINITE,
                _id(min_id),
                want,
                2 if merge_celebrities else 0,
                self.ttl,
                "",
                "",  # the cache is read below, in the tweets' own slots
                CHANGED_KEY_PREFIX,
                *sets,
            ],
        )
        page = _parse_page(reply)
        if isinstance(page, RawPage) and page.members:
            cached = await cached_tweets(self.cluster, page.ids)
            page = RawPage(page.members, cached, page.horizon, page.pending_own)
        return page

    @_translating
    async def followed_celebrities(self, reader: int) -> set[int]:
        """As of now (a live stream subscribes to their channels)."""
        return await self.followed_among(reader, await self._celebrity_set(fresh=True))

    async def _celebrity_set(self, *, fresh: bool = False) -> list[int]:
        now = time.monotonic()
        if fresh or now >= self._celebrities_until:
            members = await self.cluster.smembers(self.celebrities_key)
            self._celebrities = sorted(int(m) for m in members)
            self._celebrities_until = now + self._celebrities_seconds
        return self._celebrities

    @_translating
    async def push(self, readers: Sequence[int], entry: Entry) -> int:
        args = [entry.member, self.cap, f"{self._prefix}t:", f"{self._prefix}live:u:"]
        written = await self._run_each("push", [([self.timeline_key(r)], args) for r in readers])
        return sum(int(w) for w in written)

    @_translating
    async def remove(self, readers: Sequence[int], entry: Entry) -> None:
        args = [_id(entry.tweet_id)]
        await self._run_each("remove", [([self.timeline_key(r)], args) for r in readers])

    @_translating
    async def apply_edge(self, reader: int, followee: int, seq: int, *, follow: bool, merge: bool) -> str:
        recent: Any = b""
        if follow and merge:
            recent = await self.cluster.get(self.recent_key(followee)) or b""
        args = [*self._edge_args(reader, followee, seq, follow, merge), recent]
        return _text(await self._run("follow", self._reader_keys(reader), args))

    @_translating
    async def backfill(self, author: int, readers: Sequence[int]) -> int:
        recent = await self.cluster.get(self.recent_key(author))
        if recent is None:
            return -1
        calls = [([self.timeline_key(r), self.following_key(r)], [self.cap, author, recent]) for r in readers]
        written = [int(w) for w in await self._run_each("backfill", calls)]
        return -1 if any(w < 0 for w in written) else sum(written)

    async def _each(self, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
        """Commands of one key each, in one pipeline: one round trip per node, in parallel."""
        if not commands:
            return []
        async with self.cluster.pipeline() as pipe:
            for command in commands:
                pipe.execute_command(*command)
            return list(await pipe.execute())

    async def _run_each(self, name: str, calls: Sequence[tuple[Sequence[str], Sequence[Any]]]) -> list[Any]:
        """A script once per (keys, args), in one pipeline."""
        if not calls:
            return []
        script = self._scripts[name]
        try:
            return await self._each([("EVALSHA", script.sha, len(k), *k, *a) for k, a in calls])
        except NoScriptError:
            # SCRIPT LOAD goes to every primary of the cluster.
            script.sha = await self.cluster.script_load(script.script)
            return await self._each([("EVALSHA", script.sha, len(k), *k, *a) for k, a in calls])


async def cached_tweets(client: redis.asyncio.RedisCluster, ids: Sequence[int]) -> list[bytes | None]:
    """The cached tweets of ids (None for a miss or a changed tweet), by one pipeline; all misses
    when a node holding one of them fails."""
    try:
        async with client.pipeline() as pipe:
            for tweet_id in ids:
                pipe.execute_command("MGET", tweet_key(tweet_id), changed_key(tweet_id))
            replies = await pipe.execute()
    except REDIS_ERRORS:
        return [None] * len(ids)
    return [None if changed else _blob(blob) for blob, changed in replies]


class ClusterTweetCacheStorage(TweetCacheStorage):
    """The tweet cache on a Redis Cluster: each tweet's keys are in its own slot."""

    def __init__(self, client: redis.asyncio.RedisCluster, *, ttl_seconds: float) -> None:
        super().__init__(client, ttl_seconds=ttl_seconds)
        self._cluster = client

    @_translating
    async def get(self, ids: Sequence[int]) -> list[bytes | None]:
        return await cached_tweets(self._cluster, ids) if ids else []

    @_translating
    async def put(self, tweets: Collection[CachedTweet]) -> None:
        if not tweets:
            return
        try:
            await self._put_each(tweets)
        except NoScriptError:
            self._put.sha = await self._cluster.script_load(self._put.script)
            await self._put_each(tweets)

    async def _put_each(self, tweets: Collection[CachedTweet]) -> None:
        """cache_put.lua once per tweet, in one pipeline."""
        async with self._cluster.pipeline() as pipe:
            for t in tweets:
                keys = [tweet_key(t.tweet_id), changed_key(t.tweet_id)]
                pipe.execute_command("EVALSHA", self._put.sha, 2, *keys, *self._put_args([t.data]))
            await pipe.execute()
