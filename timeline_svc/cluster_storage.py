"""The timeline storage on a Redis Cluster (settings.redis_cluster).

Every key carries a hash tag (storage's module doc): a reader's timeline, follow set and edge
versions share the reader's slot, an author's recent set is in the author's slot, a cached tweet
and its changed marker in the tweet's, and the celebrity set with the follower counts in the
namespace's. Each script then touches one slot; what the one-Redis scripts read across slots is
read here first and handed to them, and what they wrote to many readers at once goes as one
pipeline per node, the nodes in parallel:

  a hybrid read   the reader's followed celebrities (SMISMEMBER against the celebrity set, which
                  a read reuses for CELEBRITIES_SECONDS), their recent sets (one pipeline: one
                  round trip per node that holds any, in parallel), read.lua on the reader's node
                  with those sets, then the cached tweets (one pipeline again)
  a push/remove   push.lua / remove.lua per reader
  a follow merge  the followee's recent set first, then follow.lua with it
  a backfill      the recent set first, then backfill.lua per reader

A node that fails fails the calls that need it (StoreUnavailable): its readers are served from
PostgreSQL, the others go on from Redis; the fan-out's writes to it are skipped once it has
failed for a while (NodeOutages). A tweet-cache read that fails is a miss.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Collection, Sequence
from typing import Any, TypeVar

import redis.asyncio
from redis.exceptions import SlotNotCoveredError

from chirp_core.redis_client import ScriptCall, run_script_each
from timeline_svc.keys import changed_key, last_post_key, tweet_key
from timeline_svc.models import CachedTweet, Entry
from timeline_svc.ports import StoreUnavailable
from timeline_svc.storage import (
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
# After this long failing, a node's share of the fan-out's writes is skipped (NodeOutages).
OUTAGE_SECONDS = 5.0

T = TypeVar("T")
_WRITE_FAILURES: tuple[type[BaseException], ...] = (*REDIS_ERRORS, StoreUnavailable)
log = logging.getLogger("chirp.timeline.cluster")


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
        self.outages = NodeOutages()

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
        # Mode 2: the sets given; no cache lookup in the script, it is read below in its own slots.
        args = self._read_args(reader, max_id, min_id, want, 2 if merge_celebrities else 0, cache_prefix="")
        reply = await self._run("read", [*self._reader_keys(reader), last_post_key(reader)], [*args, *sets])
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
        written = await self._write_each("push", [([self.timeline_key(r)], args) for r in readers])
        return sum(int(w) for w in written)

    @_translating
    async def remove(self, readers: Sequence[int], entry: Entry) -> None:
        args = [_id(entry.tweet_id)]
        await self._write_each("remove", [([self.timeline_key(r)], args) for r in readers])

    @_translating
    async def push_recent(self, entry: Entry, *, announce: bool) -> None:
        node = await node_of(self.cluster, self.recent_key(entry.author_id))
        await self.outages.write(node, super().push_recent(entry, announce=announce), None)

    @_translating
    async def remove_recent(self, entry: Entry) -> None:
        node = await node_of(self.cluster, self.recent_key(entry.author_id))
        await self.outages.write(node, super().remove_recent(entry), None)

    @_translating
    async def apply_edge(self, reader: int, followee: int, seq: int, *, follow: bool, merge: bool) -> str:
        async def apply() -> str:
            recent: Any = b""
            if follow and merge:
                recent = await self.cluster.get(self.recent_key(followee)) or b""
            args = [*self._edge_args(reader, followee, seq, follow, merge), recent]
            return _text(await self._run("follow", self._reader_keys(reader), args))

        # A reader on a node down for long is as good as cold: their timeline is rebuilt later.
        node = await node_of(self.cluster, self.timeline_key(reader))
        return await self.outages.write(node, apply(), "cold")

    @_translating
    async def backfill(self, author: int, readers: Sequence[int]) -> int:
        recent = await self.cluster.get(self.recent_key(author))
        if recent is None:
            return -1
        calls = [([self.timeline_key(r), self.following_key(r)], [self.cap, author, recent]) for r in readers]
        written = [int(w) for w in await self._write_each("backfill", calls)]
        return -1 if any(w < 0 for w in written) else sum(written)

    async def _write_each(self, name: str, calls: Sequence[ScriptCall]) -> list[Any]:
        """A script once per call: one pipeline per node, the nodes in parallel, each under the
        outage rule (NodeOutages), so that one dead node does not hold up the others."""
        by_node: dict[str, list[ScriptCall]] = {}
        for call in calls:
            by_node.setdefault(await node_of(self.cluster, call[0][0]), []).append(call)
        script = self._scripts[name]
        writes = [
            self.outages.write(node, run_script_each(self.cluster, script, node_calls), [])
            for node, node_calls in by_node.items()
        ]
        results: list[Any] = await asyncio.gather(*writes, return_exceptions=True)
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures:
            raise failures[0]
        return [reply for node_replies in results for reply in node_replies]

    async def _each(self, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
        """Commands of one key each, in one pipeline: one round trip per node, in parallel."""
        async with self.cluster.pipeline() as pipe:
            for command in commands:
                pipe.execute_command(*command)
            return list(await pipe.execute())


class NodeOutages:
    """When each node of the cluster began to fail the fan-out's writes. A write to a node that
    has failed for less than OUTAGE_SECONDS raises (the event is applied again later, as after any
    Redis outage); after that it is skipped, so that the other nodes' readers keep getting their
    tweets while a master is down. What a skipped node would have held is lost with it: readers
    on it are served from PostgreSQL until it is back, and a master that comes back with its old
    data (its append-only file) lacks what was skipped: give masters replicas, or let them restart
    empty (the timelines are rebuilt from PostgreSQL)."""

    def __init__(self, seconds: float = OUTAGE_SECONDS) -> None:
        self._seconds = seconds
        self._since: dict[str, float] = {}

    async def write(self, node: str, write: Awaitable[T], skipped: T) -> T:
        """Await `write`, which writes to `node` (node_of), under the rule above."""
        try:
            result = await write
        except _WRITE_FAILURES as exc:
            began = self._since.setdefault(node, time.monotonic())
            down = time.monotonic() - began
            if down < self._seconds:
                raise
            log.warning("Redis node %s has failed for %.0f s; its write is skipped (%s)", node, down, exc)
            return skipped
        self._since.pop(node, None)
        return result


async def node_of(client: redis.asyncio.RedisCluster, key: str) -> str:
    """The name (host:port) of the master serving `key`."""
    await client.initialize()  # learns the layout once, and again after a failure
    node = client.get_node_from_key(key)
    if node is None:
        raise SlotNotCoveredError(f"no node serves {key}")
    return str(node.name)


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
        self.outages = NodeOutages()

    @_translating
    async def get(self, ids: Sequence[int]) -> list[bytes | None]:
        return await cached_tweets(self._cluster, ids) if ids else []

    async def forget(self, tweet_id: int) -> None:
        # The tombstone goes where the tweet's cache entry is: if that node is down, so is the entry.
        node = await node_of(self._cluster, tweet_key(tweet_id))
        await self.outages.write(node, super().forget(tweet_id), None)

    @_translating
    async def put(self, tweets: Collection[CachedTweet]) -> None:
        """cache_put.lua once per tweet (its keys share the tweet's slot)."""
        calls = [([tweet_key(t.tweet_id), changed_key(t.tweet_id)], self._put_args([t.data])) for t in tweets]
        await run_script_each(self._cluster, self._put, calls)
