"""The rules of the home timeline, in every mode (pull, push, hybrid): what a reader sees, and when."""

from __future__ import annotations

import pytest

from chirp_app.stack import Stack
from tests.helpers.api import Api, eventually
from tests.helpers.fanout import Timeline, reply
from tests.helpers.graph import follow, unfollow
from tests.helpers.tweets import delete, edit, post
from tests.timeline_svc.fanout.conftest import StartTimeline


async def test_the_author_sees_their_own_tweet_on_the_very_next_read(api: Api, timeline: Timeline) -> None:
    alice, bob = await api.new_user(), await api.new_user()
    await follow(api, alice.user_id, bob.user_id)
    older = await post(api, bob.user_id, "older")
    assert await timeline.home_ids(alice.user_id) == [older.tweet_id]  # warm from now on

    mine = await post(api, alice.user_id, "mine")

    assert await timeline.home_ids(alice.user_id) == [mine.tweet_id, older.tweet_id]


async def test_a_warm_follower_sees_a_new_tweet_within_a_bounded_lag(api: Api, timeline: Timeline) -> None:
    alice, bob = await api.new_user(), await api.new_user()
    await follow(api, alice.user_id, bob.user_id)
    assert await timeline.home_ids(alice.user_id) == []

    tweet = await post(api, bob.user_id, "news")

    await eventually(lambda: timeline.home_ids(alice.user_id), lambda ids: ids == [tweet.tweet_id])
    if timeline.mode != "pull":
        assert await timeline.pushed(alice.user_id) == [tweet.tweet_id]


async def test_a_cold_reader_is_rebuilt_from_postgresql_and_kept_warm(api: Api, timeline: Timeline) -> None:
    alice, bob, carol = await api.new_user(), await api.new_user(), await api.new_user()
    await follow(api, alice.user_id, bob.user_id)
    for author in (bob, carol):
        await timeline.home_ids(author.user_id)  # warm: their own tweets are pushed to them last
    posted = [await post(api, bob.user_id, "one"), await post(api, carol.user_id, "not followed")]
    await post(api, bob.user_id, "two")
    if timeline.mode != "pull":
        # The workers applied the three tweets, and wrote no cold timeline.
        await eventually(lambda: timeline.pushed(bob.user_id), lambda pushed: len(pushed) == 2)
        await eventually(lambda: timeline.pushed(carol.user_id), lambda pushed: len(pushed) == 1)
        assert not await timeline.redis.exists(timeline.store.timeline_key(alice.user_id))

    first = await timeline.home_ids(alice.user_id)
    second = await timeline.home_ids(alice.user_id)

    assert first == second
    assert len(first) == 2 and posted[1].tweet_id not in first
    if timeline.mode != "pull":
        ttl = await timeline.redis.ttl(timeline.store.timeline_key(alice.user_id))
        assert ttl > 6 * 86400  # the warm period (7 days), refreshed by each read
        # bob's, carol's and alice's first reads were cold, alice's second warm.
        assert timeline.metrics.value("chirp_timeline_read_seconds_count", {"path": "cold"}) == 3
        assert timeline.metrics.value("chirp_timeline_read_seconds_count", {"path": "warm"}) == 1


async def test_an_empty_warm_timeline_is_not_cold(api: Api, timeline: Timeline) -> None:
    if timeline.mode == "pull":
        pytest.skip("no Redis timelines in the pull mode")
    loner = await api.new_user()
    assert await timeline.home_ids(loner.user_id) == []
    assert await timeline.home_ids(loner.user_id) == []
    assert await timeline.redis.exists(timeline.store.timeline_key(loner.user_id)) == 1
    assert timeline.metrics.value("chirp_timeline_read_seconds_count", {"path": "cold"}) == 1
    assert timeline.metrics.value("chirp_timeline_read_seconds_count", {"path": "warm"}) == 1


async def test_a_deleted_tweet_is_never_returned_and_an_edit_shows_at_once(
    api: Api, stack: Stack, timelines: StartTimeline, mode: str
) -> None:
    alice, bob = await api.new_user(), await api.new_user()
    await follow(api, alice.user_id, bob.user_id)
    with_workers = await timelines(mode)
    await with_workers.home_ids(alice.user_id)
    doomed = await post(api, bob.user_id, "doomed")
    edited = await post(api, bob.user_id, "first draft")
    await eventually(lambda: with_workers.home_ids(alice.user_id), lambda ids: len(ids) == 2)
    # The same Redis state, read by a server whose workers are stopped: nothing will clean the
    # sets. The tweets are cached now (the read above hydrated them).
    without_workers = await timelines(
        mode, fanout_workers=0, timeline_namespace=with_workers.settings.timeline_namespace
    )
    await with_workers.stop()

    await delete(api, bob.user_id, doomed.tweet_id)
    await edit(api, bob.user_id, edited.tweet_id, "final words")

    page = await without_workers.home(alice.user_id)
    assert [t.tweet_id for t in page.tweets] == [edited.tweet_id]
    assert page.tweets[0].content == "final words"
    assert page.tweets[0].version == 2
    if mode != "pull":
        assert doomed.tweet_id in await without_workers.pushed(alice.user_id)  # still in the set


async def test_unfollow_removes_and_follow_merges_the_followees_tweets(api: Api, timeline: Timeline) -> None:
    alice, bob, carol = await api.new_user(), await api.new_user(), await api.new_user()
    await follow(api, alice.user_id, bob.user_id)
    bobs = [await post(api, bob.user_id, f"bob {i}") for i in range(2)]
    carols = [await post(api, carol.user_id, f"carol {i}") for i in range(2)]
    assert await timeline.home_ids(alice.user_id) == [t.tweet_id for t in reversed(bobs)]

    await follow(api, alice.user_id, carol.user_id)
    merged = sorted([t.tweet_id for t in bobs + carols], reverse=True)
    await eventually(lambda: timeline.home_ids(alice.user_id), lambda ids: ids == merged)

    await unfollow(api, alice.user_id, bob.user_id)
    only_carol = [t.tweet_id for t in reversed(carols)]
    await eventually(lambda: timeline.home_ids(alice.user_id), lambda ids: ids == only_carol)
    if timeline.mode != "pull":
        await eventually(lambda: timeline.pushed(alice.user_id), lambda ids: ids == only_carol)


async def test_a_reply_reaches_only_followers_of_both_ends_and_a_thread_reaches_all(
    api: Api, timeline: Timeline
) -> None:
    author, other, both, only_author = [await api.new_user() for _ in range(4)]
    for reader in (both, only_author):
        await follow(api, reader.user_id, author.user_id)
    await follow(api, both.user_id, other.user_id)
    others = await post(api, other.user_id, "a question")
    own = await post(api, author.user_id, "a thread")
    for reader in (both, only_author):
        await timeline.home_ids(reader.user_id)  # warm

    answer = await reply(api, author.user_id, others.tweet_id, "an answer to other")
    thread = await reply(api, author.user_id, own.tweet_id, "the thread goes on")

    # Both readers are in one batch of the author's followers: once one has a tweet, the other's
    # timeline is final for it too.
    await eventually(
        lambda: timeline.home_ids(both.user_id),
        lambda ids: ids == [thread.tweet_id, answer.tweet_id, own.tweet_id, others.tweet_id],
    )
    await eventually(
        lambda: timeline.home_ids(only_author.user_id), lambda ids: ids == [thread.tweet_id, own.tweet_id]
    )
    # The replier sees their own reply; the one answered sees it as a reply to them.
    assert answer.tweet_id in await timeline.home_ids(author.user_id)
    await follow(api, other.user_id, author.user_id)
    await eventually(lambda: timeline.home_ids(other.user_id), lambda ids: answer.tweet_id in ids)
