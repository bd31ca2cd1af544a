"""The binary layout of timelines in Redis (lua/lib.lua) through TimelineStore: entries in any order,
replies, duplicates, the cap and its horizon, deletes, and IDs near 2^63."""

from __future__ import annotations

import random
import uuid
from collections.abc import AsyncIterator

import pytest_asyncio

from chirp_app.stack import Stack
from tests.helpers.fanout import open_redis_of, store_of
from timeline_svc.models import Entry
from timeline_svc.storage import RawPage, TimelineStore

CAP = 50


@pytest_asyncio.fixture(loop_scope="session")
async def store(stack: Stack) -> AsyncIterator[TimelineStore]:
    client = open_redis_of(stack.settings)
    try:
        yield store_of(client, namespace=f"test-layout-{uuid.uuid4().hex[:8]}", cap=CAP)
    finally:
        await client.aclose()


async def warm(store: TimelineStore, reader: int, follows: list[int]) -> None:
    assert await store.begin_build(reader)
    await store.finish_build(reader, follows, [], 0)


async def test_pushes_in_any_order_keep_the_newest_with_their_replies(store: TimelineStore) -> None:
    rng = random.Random(7)
    reader, authors = 11, [2**62 + i for i in range(5)]
    await warm(store, reader, authors)
    base = 2**62 + 12345
    entries = [
        Entry(base + rng.randrange(10**12), rng.choice(authors), rng.choice([0, 0, 0, *authors]))
        for _ in range(4 * CAP)
    ]
    for entry in entries:
        await store.push([reader], entry)
        await store.push([reader], entry)  # twice: no duplicate

    newest = sorted(set(entries), key=lambda e: e.tweet_id, reverse=True)
    assert await store.entries(reader) == newest[:CAP]
    page = await store.read(reader, max_id=0, min_id=0, want=CAP + 10, merge_celebrities=False)
    assert isinstance(page, RawPage)
    assert page.entries == newest[:CAP]
    assert page.horizon == newest[CAP].tweet_id  # the newest entry dropped


async def test_reading_below_a_cursor_and_deleting(store: TimelineStore) -> None:
    reader, author, other = 21, 22, 23
    await warm(store, reader, [author, other])
    entries = [Entry(1000 + i, author, other if i % 3 == 0 else 0) for i in range(30)]
    for entry in entries:
        await store.push([reader], entry)
    newest = list(reversed(entries))

    page = await store.read(reader, max_id=1020, min_id=1005, want=100, merge_celebrities=False)
    assert isinstance(page, RawPage)
    assert page.entries == [e for e in newest if 1005 < e.tweet_id < 1020]

    await store.remove([reader], entries[12])  # a reply
    await store.remove([reader], entries[13])
    await store.remove([reader], entries[13])  # gone already: nothing changes
    assert await store.entries(reader) == [e for e in newest if e.tweet_id not in (1012, 1013)]


async def test_a_read_refreshes_the_ttl_only_once_a_hundredth_of_it_has_passed(store: TimelineStore) -> None:
    reader = 51
    await warm(store, reader, [52])
    key, ttl = store.timeline_key(reader), store.ttl

    async def read_and_ttl(set_to: int) -> int:
        await store.redis.expire(key, set_to)
        assert isinstance(
            await store.read(reader, max_id=0, min_id=0, want=5, merge_celebrities=False), RawPage
        )
        return int(await store.redis.ttl(key))

    # Fresh enough: the read writes nothing (no EXPIRE to the append-only file and the replicas).
    assert ttl - 1 >= await read_and_ttl(ttl - 1) >= ttl - 2
    # Older: the read sets the full TTL again.
    assert await read_and_ttl(ttl // 2) >= ttl - 1


async def test_a_cold_timeline_reads_cold_and_has_no_entries(store: TimelineStore) -> None:
    assert await store.entries(31) == []
    assert not isinstance(await store.read(31, max_id=0, min_id=0, want=10, merge_celebrities=False), RawPage)


async def test_scripts_are_sent_again_after_redis_forgets_them(store: TimelineStore) -> None:
    reader = 41
    await warm(store, reader, [42])
    await store.redis.script_flush()
    await store.push([reader], Entry(5000, 42))
    assert await store.entries(reader) == [Entry(5000, 42)]
