"""A warm read answers with the cached tweets' bytes as they are (no decode, no encode): page by
page it is the answer the pull mode builds from messages, through misses, hits, replies, edits,
deletes and cursors."""

from __future__ import annotations

import pytest

from chirp.timeline.v1 import timeline_pb2
from tests.helpers.api import Api, eventually
from tests.helpers.fanout import Timeline, reply
from tests.helpers.graph import follow
from tests.helpers.tweets import delete, edit, post
from tests.timeline_svc.fanout.conftest import StartTimeline
from timeline_svc import keys


async def pages(timeline: Timeline, user_id: int, limit: int) -> list[timeline_pb2.GetHomeTimelineResponse]:
    found, cursor = [], ""
    for _ in range(100):
        page = await timeline.home(user_id, limit=limit, cursor=cursor)
        found.append(page)
        if not page.next_cursor:
            return found
        cursor = page.next_cursor
    raise AssertionError("no last page")


@pytest.mark.parametrize("mode", ["push", "hybrid"])
async def test_warm_pages_are_the_pulled_pages(api: Api, timelines: StartTimeline, mode: str) -> None:
    warm, pulled = await timelines(mode), await timelines("pull")
    alice, bob, carol = await api.new_user(), await api.new_user(), await api.new_user()
    await follow(api, alice.user_id, bob.user_id)
    await follow(api, alice.user_id, carol.user_id)
    await warm.home(alice.user_id)
    posted = [await post(api, bob.user_id, f"tweet ✨ {i}") for i in range(5)]
    posted.append(await reply(api, carol.user_id, posted[0].tweet_id, "a reply to bob"))
    posted.append(await post(api, alice.user_id, "my own"))
    await eventually(lambda: warm.pushed(alice.user_id), lambda ids: posted[-1].tweet_id in ids)

    async def same_pages() -> None:
        for limit in (2, 3, 20):
            got = await pages(warm, alice.user_id, limit)
            assert got == await pages(pulled, alice.user_id, limit)
            assert [t.tweet_id for p in got for t in p.tweets] == [t.tweet_id for t in reversed(posted)]

    await same_pages()  # misses, written to the cache
    cached = [await warm.redis.get(keys.tweet_key(t.tweet_id)) for t in posted]
    assert all(c not in (None, keys.TOMBSTONE) for c in cached)
    await same_pages()  # hits

    await edit(api, bob.user_id, posted[1].tweet_id, "edited ✓")
    await delete(api, bob.user_id, posted[2].tweet_id)
    del posted[2]
    await same_pages()
    page = await warm.home(alice.user_id)
    assert [t.content for t in page.tweets if t.tweet_id == posted[1].tweet_id] == ["edited ✓"]
    assert page.tweets[0].author.handle == alice.handle
