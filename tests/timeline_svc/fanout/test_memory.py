"""What a warm reader costs Redis: a full (800-entry) timeline and a follow set of 100 fit in 16 KB
(MEMORY USAGE of every key of the reader), about 16 bytes per entry and 8 more per reply."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from chirp.users.v1 import users_pb2
from chirp_core.snowflake import lowest_id_at
from tests.helpers.api import Api, eventually
from tests.helpers.fanout import Timeline, applied
from tests.helpers.graph import follow
from tests.helpers.tweets import post
from tests.timeline_svc.fanout.conftest import StartTimeline
from timeline_svc.models import Entry

FOLLOWED = 100
BUDGET_BYTES = 16 * 1024


def fanned_out(authors: list[users_pb2.User], count: int) -> list[Entry]:
    """`count` tweets by the authors in turn, one per millisecond of five minutes ago, oldest first;
    every tenth answers the author before it."""
    start = lowest_id_at(datetime.now(UTC) - timedelta(minutes=5))
    entries = []
    for i in range(count):
        author = authors[i % len(authors)].user_id
        reply_to = authors[(i - 1) % len(authors)].user_id if i % 10 == 9 else 0
        entries.append(Entry(start + (i << 22) + 7, author, reply_to))
    return entries


async def reader_bytes(timeline: Timeline, reader: int) -> dict[str, int]:
    store = timeline.store
    keys = {
        "timeline": store.timeline_key(reader),
        "following": store.following_key(reader),
        "edge versions": store.versions_key(reader),
    }
    return {name: int(await timeline.redis.memory_usage(key) or 0) for name, key in keys.items()}


async def test_a_warm_full_timeline_and_100_follows_fit_in_16_kb(api: Api, timelines: StartTimeline) -> None:
    timeline = await timelines("push")
    reader = await api.new_user()
    followees = [await api.new_user() for _ in range(FOLLOWED)]
    await timeline.home(reader.user_id)  # warm: each follow below is applied (an edge version)
    follows = await applied(timeline, "followed")
    for followee in followees:
        await follow(api, reader.user_id, followee.user_id)
    await eventually(lambda: applied(timeline, "followed"), lambda n: n >= follows + FOLLOWED)
    # Their tweets, as the workers push them (a tweet_created each), then new ones through the workers.
    for entry in fanned_out(followees, 820):
        await timeline.store.push([reader.user_id], entry)
    posted = [await post(api, followees[0].user_id, f"fresh {i}") for i in range(3)]
    await eventually(lambda: timeline.pushed(reader.user_id), lambda ids: ids[0] == posted[-1].tweet_id)

    entries = await timeline.store.entries(reader.user_id)
    sizes = await reader_bytes(timeline, reader.user_id)
    total = sum(sizes.values())
    print(f"\nwarm reader, {len(entries)} entries, {FOLLOWED} follows: {total} bytes {sizes}")
    assert len(entries) == 800
    assert sum(1 for e in entries if e.reply_to_user_id) >= 70
    assert await timeline.redis.scard(timeline.store.following_key(reader.user_id)) == FOLLOWED + 1
    assert await timeline.redis.object("encoding", timeline.store.following_key(reader.user_id)) == b"intset"
    assert await timeline.redis.hlen(timeline.store.versions_key(reader.user_id)) == FOLLOWED
    assert total <= BUDGET_BYTES
