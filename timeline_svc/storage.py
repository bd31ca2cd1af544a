"""The timeline service's storage: its state in Redis and every command that touches it (the Lua
scripts in lua/), but the live stream's pub/sub (timeline_svc.live) and the events stream's
consumer group (timeline_svc.events). Redis errors leave here as ports.StoreUnavailable.

Keys, under the namespace prefix P (settings.timeline_namespace); the part in braces is the Redis
Cluster hash tag, which puts a reader's keys (and the reader's last post, timeline_svc.keys) in one
slot, and the keys shared by all authors in the namespace's:
  P:t:{reader}    the home timeline, a string of 16-byte binary records (layout in lua/lib.lua),
                  capped, TTL = warm period: about 16 bytes per entry (a warm 800-entry timeline
                  and a follow set of 100: under 16 KB, tests/timeline_svc/fanout/test_memory.py)
  P:fl:{reader}   whom the reader follows (a set of integers, an intset in Redis, with the user 0
                  so that it exists while empty), kept with the timeline
  P:fv:{reader}   per followee, the seq of the last follow (+) or unfollow (-) event applied
  P:r:{author}    the author's recent tweets, same layout as a timeline, loaded on demand
  {P}:celebs      the authors above the celebrity threshold (hybrid mode)
  {P}:fc, {P}:fcv follower count per author, and the seq of the event that set it
  {P}:backfill    former celebrities whose recent tweets are still being copied to timelines
  P:live:u:{reader}  pub/sub: "t:<entry>" when a tweet entered the timeline, "f" on a follow change
  P:live:a:{author}  pub/sub: "t:<entry>" for each tweet of the author (the celebrities' streams)
An <entry> is timeline_svc.keys.timeline_member: 24 bytes.
The tweet cache is shared by every namespace, and the tweets service's own keys (what changed, the
authors' last posts) are read here too: timeline_svc.keys.

On one Redis a script may read any key, and a warm read is one round trip (read.lua reads the
followed celebrities' recent sets and the cached tweets itself). On a Redis Cluster every script
touches one slot: timeline_svc.cluster_storage reads what lives in other slots around them.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Collection, Coroutine, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any, ParamSpec, TypeVar

import redis.asyncio
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError, RedisClusterException

from chirp_core.redis_client import RedisClient
from timeline_svc.keys import (
    CHANGED_KEY_PREFIX,
    TOMBSTONE,
    TOMBSTONE_SECONDS,
    TWEET_KEY_PREFIX,
    changed_key,
    last_post_key,
    tweet_key,
)
from timeline_svc.models import CachedTweet, Entry
from timeline_svc.ports import StoreUnavailable

# Every Redis failure: raised as StoreUnavailable.
REDIS_ERRORS: tuple[type[BaseException], ...] = (
    redis.RedisError,
    RedisClusterException,  # a Redis Cluster's layout problems (not RedisErrors in redis-py)
    OSError,
    asyncio.TimeoutError,
)
# The horizon of a set being built, and the bound of an unbounded read (lua/lib.lua's INF).
INFINITE = b"\xff" * 8
# A timeline or recent set being built expires after this long if its builder dies.
BUILD_TTL_SECONDS = 30


@dataclass(frozen=True)
class RawPage:
    """What read.lua found: entries (timeline_member) newest first with their cached tweets' bytes
    (None on a miss, or when the tweet changed a moment ago).

    Redis holds every entry of the timeline above `horizon`; below it only PostgreSQL knows.
    `pending_own` is the reader's newest tweet when the workers have not put it in yet (else 0).
    """

    members: list[bytes]
    cached: list[bytes | None]
    horizon: int
    pending_own: int

    @property
    def ids(self) -> list[int]:
        """The entries' tweet IDs (all a read needs of them: read.lua applied the rules)."""
        return [int.from_bytes(m[:8], "big") for m in self.members]

    @property
    def entries(self) -> list[Entry]:
        return [Entry.parse(m) for m in self.members]


@dataclass(frozen=True)
class Cold:
    """The timeline is not in Redis: build it."""


@dataclass(frozen=True)
class MissingRecent:
    """These followed celebrities have no recent set in Redis: load them."""

    authors: list[int]


P = ParamSpec("P")
R = TypeVar("R")


def _translating(call: Callable[P, Coroutine[Any, Any, R]]) -> Callable[P, Coroutine[Any, Any, R]]:
    @functools.wraps(call)
    async def translating(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await call(*args, **kwargs)
        except REDIS_ERRORS as exc:
            raise StoreUnavailable(exc) from exc

    return translating


def _id(value: int) -> bytes:
    return value.to_bytes(8, "big")


class TimelineStore:
    def __init__(self, client: RedisClient, *, namespace: str, cap: int, ttl_seconds: int) -> None:
        self.redis = client
        self.cap = cap
        self.ttl = ttl_seconds
        prefix = f"{namespace}:"
        self._prefix = prefix
        # The keys of every author share one slot of a Redis Cluster (scripts touch them together).
        shared = f"{{{namespace}}}:"
        self.celebrities_key = f"{shared}celebs"
        self._counts = f"{shared}fc"
        self._count_versions = f"{shared}fcv"
        self._backfills = f"{shared}backfill"
        self._scripts = _load_scripts(client)

    # Keys and channels.

    def timeline_key(self, reader: int) -> str:
        return f"{self._prefix}t:{{{reader}}}"

    def following_key(self, reader: int) -> str:
        return f"{self._prefix}fl:{{{reader}}}"

    def versions_key(self, reader: int) -> str:
        return f"{self._prefix}fv:{{{reader}}}"

    def recent_key(self, author: int) -> str:
        return f"{self._prefix}r:{{{author}}}"

    def reader_channel(self, reader: int) -> str:
        return f"{self._prefix}live:u:{{{reader}}}"

    def author_channel(self, author: int) -> str:
        return f"{self._prefix}live:a:{{{author}}}"

    def _reader_keys(self, reader: int) -> list[str]:
        return [self.timeline_key(reader), self.following_key(reader), self.versions_key(reader)]

    # Reads.

    @_translating
    async def read(
        self, reader: int, *, max_id: int, min_id: int, want: int, merge_celebrities: bool
    ) -> RawPage | Cold | MissingRecent:
        """Up to `want` entries with min_id < id < max_id (0 = unbounded) in one round trip."""
        keys = [*self._reader_keys(reader), last_post_key(reader), self.celebrities_key]
        args = self._read_args(reader, max_id, min_id, want, 1 if merge_celebrities else 0)
        return _parse_page(await self._run("read", keys, args))

    def _read_args(
        self,
        reader: int,
        max_id: int,
        min_id: int,
        want: int,
        merge: int,
        *,
        cache_prefix: str = TWEET_KEY_PREFIX,
    ) -> list[Any]:
        """read.lua's arguments (merge: its mode; cache_prefix "": no tweet-cache lookup)."""
        bound = _id(max_id) if max_id else INFINITE
        recent = f"{self._prefix}r:"
        return [reader, bound, _id(min_id), want, merge, self.ttl, recent, cache_prefix, CHANGED_KEY_PREFIX]

    @_translating
    async def touch(self, reader: int) -> bool:
        """Refresh a live reader's TTLs; False when the timeline is cold."""
        return bool(await self._run("touch", self._reader_keys(reader), [self.ttl]))

    @_translating
    async def followed_celebrities(self, reader: int) -> set[int]:
        members = await self.redis.sinter([self.following_key(reader), self.celebrities_key])
        return {int(m) for m in members}

    @_translating
    async def entries(self, reader: int) -> list[Entry]:
        """Every entry of the reader's Redis timeline, newest first (none when it is cold)."""
        return [Entry.parse(m) for m in await self._run("entries", [self.timeline_key(reader)], [])]

    @_translating
    async def follows(self, reader: int, user_id: int) -> bool:
        return bool(await self.redis.sismember(self.following_key(reader), str(user_id)))

    @_translating
    async def followed_among(self, reader: int, user_ids: Collection[int]) -> set[int]:
        wanted = sorted(user_ids)
        if not wanted:
            return set()
        answers = await self.redis.smismember(self.following_key(reader), [str(u) for u in wanted])
        return {user for user, followed in zip(wanted, answers, strict=True) if followed}

    # Building cold state.

    @_translating
    async def begin_build(self, reader: int) -> bool:
        return bool(await self._run("build_begin", self._reader_keys(reader), [BUILD_TTL_SECONDS]))

    @_translating
    async def finish_build(
        self, reader: int, followees: Collection[int], entries: Sequence[Entry], horizon: int
    ) -> None:
        args: list[Any] = [_id(horizon), self.cap, self.ttl, len(followees), *followees]
        args += [entry.member for entry in entries]
        await self._run("build_finish", self._reader_keys(reader), args)

    @_translating
    async def abandon_build(self, reader: int) -> None:
        await self.redis.delete(self.timeline_key(reader), self.following_key(reader))

    @_translating
    async def begin_recent(self, author: int) -> bool:
        return bool(await self._run("recent_begin", [self.recent_key(author)], [BUILD_TTL_SECONDS]))

    @_translating
    async def finish_recent(self, author: int, entries: Sequence[Entry], horizon: int) -> None:
        args: list[Any] = [_id(horizon), self.cap, self.ttl]
        args += [entry.member for entry in entries]
        await self._run("recent_finish", [self.recent_key(author)], args)

    @_translating
    async def abandon_recent(self, author: int) -> None:
        await self.redis.delete(self.recent_key(author))

    # What the workers apply.

    @_translating
    async def push(self, readers: Sequence[int], entry: Entry) -> int:
        """Add the entry to the warm timelines among readers' in one round trip; how many."""
        if not readers:
            return 0
        keys = [self.timeline_key(r) for r in readers]
        args = [entry.member, self.cap, f"{self._prefix}t:", f"{self._prefix}live:u:"]
        return int(await self._run("push", keys, args))

    @_translating
    async def push_recent(self, entry: Entry, *, announce: bool) -> None:
        channel = self.author_channel(entry.author_id) if announce else ""
        args = [entry.member, self.cap, self.ttl, channel]
        await self._run("push_recent", [self.recent_key(entry.author_id)], args)

    @_translating
    async def remove(self, readers: Sequence[int], entry: Entry) -> None:
        keys = [self.timeline_key(r) for r in readers]
        if keys:
            await self._run("remove", keys, [_id(entry.tweet_id)])

    @_translating
    async def remove_recent(self, entry: Entry) -> None:
        await self._run("remove", [self.recent_key(entry.author_id)], [_id(entry.tweet_id)])

    @_translating
    async def apply_edge(self, reader: int, followee: int, seq: int, *, follow: bool, merge: bool) -> str:
        """follow.lua: 'cold', 'stale', 'need_recent' or 'ok'."""
        keys = [*self._reader_keys(reader), self.recent_key(followee)]
        return _text(await self._run("follow", keys, self._edge_args(reader, followee, seq, follow, merge)))

    def _edge_args(self, reader: int, followee: int, seq: int, follow: bool, merge: bool) -> list[Any]:
        channel = self.reader_channel(reader)
        return [reader, followee, seq, 1 if follow else 0, 1 if merge else 0, self.cap, self.ttl, channel]

    @_translating
    async def apply_count(self, user: int, count: int, seq: int, threshold: int | None) -> str:
        """count.lua: 'down' while a former celebrity's tweets must be backfilled, else 'same'.
        threshold None: no celebrities (the push mode)."""
        keys = [self._counts, self._count_versions, self.celebrities_key, self._backfills]
        args = [user, count, seq, -1 if threshold is None else threshold]
        return _text(await self._run("count", keys, args))

    @_translating
    async def celebrity(self, user: int) -> bool | None:
        """Whether the author is a celebrity; None when their follower count is not known yet."""
        answer = int(await self._run("celebrity", [self._counts, self.celebrities_key], [user]))
        return None if answer < 0 else bool(answer)

    @_translating
    async def backfill(self, author: int, readers: Sequence[int]) -> int:
        """backfill.lua over a batch of readers; -1 while the author's recent set is loading."""
        keys = [
            self.recent_key(author),
            *(self.timeline_key(r) for r in readers),
            *(self.following_key(r) for r in readers),
        ]
        return int(await self._run("backfill", keys, [self.cap, author]))

    @_translating
    async def backfill_done(self, author: int) -> None:
        await self.redis.srem(self._backfills, str(author))

    async def _run(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        # EVALSHA directly: redis-py's Script.__call__ costs a warm read a few percent of its CPU.
        script = self._scripts[name]
        try:
            return await self.redis.evalsha(script.sha, len(keys), *keys, *args)
        except NoScriptError:
            # A Redis restarted or flushed since the script was last sent.
            script.sha = await self.redis.script_load(script.script)
            return await self.redis.evalsha(script.sha, len(keys), *keys, *args)


_SCRIPT_NAMES = (
    "read",
    "touch",
    "build_begin",
    "build_finish",
    "recent_begin",
    "recent_finish",
    "push",
    "push_recent",
    "remove",
    "follow",
    "count",
    "celebrity",
    "backfill",
    "entries",
)


def _load_scripts(client: RedisClient) -> dict[str, AsyncScript]:
    folder = resources.files("timeline_svc").joinpath("lua")
    library = folder.joinpath("lib.lua").read_text()
    return {
        name: client.register_script(library + "\n" + folder.joinpath(f"{name}.lua").read_text())
        for name in _SCRIPT_NAMES
    }


class TweetCacheStorage:
    """The tweet cache (timeline_svc.keys): hydrated tweets, each for `ttl_seconds`."""

    def __init__(self, client: RedisClient, *, ttl_seconds: float) -> None:
        self._redis = client
        self._ttl = max(1, int(ttl_seconds))
        self._put = client.register_script(
            resources.files("timeline_svc").joinpath("lua", "cache_put.lua").read_text()
        )

    @_translating
    async def get(self, ids: Sequence[int]) -> list[bytes | None]:
        """The cached tweets (None on a miss, or when the tweet changed a moment ago), one MGET."""
        if not ids:
            return []
        blobs: list[Any] = await self._redis.mget(
            [*(tweet_key(i) for i in ids), *(changed_key(i) for i in ids)]
        )
        count = len(ids)
        return [
            None if changed else _blob(blob)
            for blob, changed in zip(blobs[:count], blobs[count:], strict=True)
        ]

    @_translating
    async def put(self, tweets: Collection[CachedTweet]) -> None:
        """Cache the tweets, unless already there; a tweet that changed a moment ago gets a
        tombstone instead (cache_put.lua)."""
        if not tweets:
            return
        keys = [*(tweet_key(t.tweet_id) for t in tweets), *(changed_key(t.tweet_id) for t in tweets)]
        args = self._put_args([t.data for t in tweets])
        await self._put(keys=keys, args=args, client=self._redis)

    def _put_args(self, blobs: Sequence[bytes]) -> list[Any]:
        """cache_put.lua's arguments for these tweets' bytes."""
        return [self._ttl, TOMBSTONE_SECONDS, TOMBSTONE, *blobs]

    @_translating
    async def forget(self, tweet_id: int) -> None:
        """Tombstone an edited or deleted tweet."""
        await self._redis.set(tweet_key(tweet_id), TOMBSTONE, ex=TOMBSTONE_SECONDS)


def _parse_page(reply: Any) -> RawPage | Cold | MissingRecent:
    """What read.lua returned."""
    status = reply[0]
    if status == b"cold":
        return Cold()
    if status == b"missing":
        return MissingRecent([int(author) for author in reply[1:]])
    count = int(reply[3])
    pending = reply[2]
    return RawPage(
        members=reply[4 : 4 + count],
        cached=[_blob(blob) for blob in reply[4 + count : 4 + 2 * count]],
        horizon=int.from_bytes(reply[1], "big"),
        pending_own=int(pending) if pending else 0,
    )


def _blob(blob: bytes | None) -> bytes | None:
    """A cached tweet's bytes; None for a miss or a tombstone."""
    if blob is None or blob == TOMBSTONE:
        return None
    return blob


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
