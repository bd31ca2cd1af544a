"""The cap of 800 entries, and paging on past it into PostgreSQL with neither gap nor duplicate."""

from __future__ import annotations

import time

import psycopg

from chirp_core.snowflake import lowest_id_at
from tests.helpers.api import Api, eventually
from tests.helpers.fanout import Timeline
from tests.helpers.graph import follow
from tests.helpers.timeline import ids
from tests.helpers.tweets import post
from tests.timeline_svc.fanout.conftest import StartTimeline


async def bulk_tweets(database_url: str, author_id: int, count: int) -> list[int]:
    """`count` tweets of the author straight into PostgreSQL, one per millisecond of the last
    minute, oldest first (no events: the workers never see them)."""
    from datetime import UTC, datetime, timedelta

    start = lowest_id_at(datetime.now(UTC) - timedelta(minutes=1))
    tweet_ids = [start + (i << 22) + 7 for i in range(count)]
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute(
            "INSERT INTO tweets.tweets (tweet_id, user_id, content, conversation_id, created_at)"
            " SELECT id, %s, 'bulk ' || id, id, now() FROM unnest(%s::bigint[]) AS id",
            (author_id, tweet_ids),
        )
    return tweet_ids


async def test_800_are_kept_and_paging_goes_on_in_postgresql(
    api: Api, timeline: Timeline, database_url: str
) -> None:
    alice, bob = await api.new_user(), await api.new_user()
    await follow(api, alice.user_id, bob.user_id)
    bulk = await bulk_tweets(database_url, bob.user_id, 850)
    started = time.monotonic()

    walked = await timeline.walk(alice.user_id, limit=100)

    assert walked == list(reversed(bulk))
    assert time.monotonic() - started < 10
    if timeline.mode != "pull":
        pushed = await timeline.pushed(alice.user_id)
        assert pushed == list(reversed(bulk))[:800]
        assert timeline.metrics.value("chirp_timeline_seam_reads_total") >= 1


async def test_the_seam_has_no_gap_nor_duplicate_while_tweets_arrive(
    api: Api, timelines: StartTimeline, mode: str
) -> None:
    timeline = await timelines(mode, timeline_size=5)
    alice, bob = await api.new_user(), await api.new_user()
    await follow(api, alice.user_id, bob.user_id)
    await timeline.home_ids(alice.user_id)
    posted = [await post(api, bob.user_id, f"tweet {i}") for i in range(9)]
    newest_first = [t.tweet_id for t in reversed(posted)]
    await eventually(lambda: timeline.home_ids(alice.user_id, 3), lambda seen: seen == newest_first[:3])
    if mode != "pull":
        await eventually(lambda: timeline.pushed(alice.user_id), lambda seen: seen == newest_first[:5])

    pages = []
    cursor = ""
    for _ in range(20):
        page = await timeline.home(alice.user_id, limit=2, cursor=cursor)
        pages.append(ids(page.tweets))
        await post(api, bob.user_id, "newer, on no page of this walk")
        if not page.next_cursor:
            break
        cursor = page.next_cursor

    else:
        raise AssertionError(f"no last page: {pages}")
    assert [tweet_id for page in pages for tweet_id in page] == newest_first
    assert [len(page) for page in pages] == [2, 2, 2, 2, 1]
