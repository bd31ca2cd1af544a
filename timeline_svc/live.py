"""Live home timelines over Redis pub/sub, for StreamHomeTimeline.

A stream subscribes to its reader's channel, on which the workers publish each tweet right after
pushing it into the reader's timeline, and to the channels of the celebrities the reader follows,
on which the workers publish each of their tweets (those are never pushed). A follow or unfollow
of the reader is published on the reader's channel too, so the set of celebrity channels follows
the reader's follows. This is storage: Redis errors become LiveUnavailable here, and the reply
rule is the caller's (timeline_svc.visibility).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Collection
from typing import Any, TypeVar

from chirp_core.redis_client import RedisClient
from chirp_core.tasks import raise_if_cancelled
from timeline_svc.models import Entry
from timeline_svc.ports import LiveBatch, LiveUnavailable, StoreUnavailable
from timeline_svc.storage import REDIS_ERRORS, TimelineStore

T = TypeVar("T")


async def _guarded(call: Awaitable[T]) -> T:
    try:
        return await call
    except StoreUnavailable as exc:
        raise LiveUnavailable(str(exc)) from exc
    except REDIS_ERRORS as exc:
        raise LiveUnavailable(f"Redis failed: {exc}") from exc


class LiveFeed:
    def __init__(self, client: RedisClient, store: TimelineStore, *, celebrities: bool) -> None:
        self._redis = client
        self._store = store
        self._celebrities = celebrities

    @contextlib.asynccontextmanager
    async def subscribe(self, reader: int) -> AsyncIterator[RedisSubscription]:
        """Subscribed once entered."""
        pubsub: Any = self._redis.pubsub(ignore_subscribe_messages=True)
        subscription = RedisSubscription(pubsub, self._store, reader, celebrities=self._celebrities)
        try:
            await _guarded(subscription.start())
            yield subscription
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()

    async def touch(self, reader: int) -> bool:
        return await _guarded(self._store.touch(reader))

    async def followed_among(self, reader: int, user_ids: Collection[int]) -> set[int]:
        return await _guarded(self._store.followed_among(reader, user_ids))


class RedisSubscription:
    def __init__(self, pubsub: Any, store: TimelineStore, reader: int, *, celebrities: bool) -> None:
        self._pubsub = pubsub
        self._store = store
        self._reader = reader
        self._celebrities = celebrities
        self._author_channels: set[str] = set()

    async def start(self) -> None:
        await self._pubsub.subscribe(self._store.reader_channel(self._reader))
        await self._refresh()

    async def _refresh(self) -> None:
        """Subscribe to the channels of the celebrities the reader follows now, and only those."""
        if not self._celebrities:
            return
        wanted = {self._store.author_channel(c) for c in await self._store.followed_celebrities(self._reader)}
        if added := wanted - self._author_channels:
            await self._pubsub.subscribe(*added)
        if dropped := self._author_channels - wanted:
            await self._pubsub.unsubscribe(*dropped)
        self._author_channels = wanted

    def from_celebrity(self, entry: Entry) -> bool:
        return self._store.author_channel(entry.author_id) in self._author_channels

    async def next(self, quiet_after: float) -> LiveBatch:
        """What arrives next, with everything already waiting; an empty batch after `quiet_after`
        seconds of silence."""
        return await _guarded(self._next(quiet_after))

    async def _next(self, quiet_after: float) -> LiveBatch:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + quiet_after
        entries: list[Entry] = []
        changed = False
        while True:
            remaining = deadline - loop.time()
            waiting = bool(entries) or changed
            timeout = 0.0 if waiting else min(max(0.0, remaining), 1.0)
            message = await self._pubsub.get_message(timeout=timeout)
            raise_if_cancelled()
            if message is None:
                if waiting or remaining <= 0:
                    return LiveBatch(entries, changed)
                continue
            if message.get("type") != "message":
                continue
            data = message["data"]
            raw = data if isinstance(data, bytes) else str(data).encode()
            if raw == b"f":
                await self._refresh()
                changed = True
            elif raw.startswith(b"t:"):
                with contextlib.suppress(ValueError):
                    entries.append(Entry.parse(raw[2:]))
