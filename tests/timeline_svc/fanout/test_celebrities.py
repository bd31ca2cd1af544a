"""Celebrities (more followers than the threshold, 3 here): merged at read time in the hybrid mode,
pushed like everyone in the push mode; crossing the threshold either way."""

from __future__ import annotations

from chirp.users.v1 import users_pb2
from tests.helpers.api import Api, eventually
from tests.helpers.fanout import CELEBRITY_THRESHOLD, Timeline
from tests.helpers.graph import follow, unfollow
from tests.helpers.tweets import post
from tests.timeline_svc.fanout.conftest import StartTimeline


async def celebrity_with_fans(api: Api, timeline: Timeline) -> tuple[users_pb2.User, list[users_pb2.User]]:
    """An author with one follower more than the threshold, every fan's timeline warm."""
    star = await api.new_user()
    fans = [await api.new_user() for _ in range(CELEBRITY_THRESHOLD + 1)]
    for fan in fans:
        await timeline.home_ids(fan.user_id)  # warm first, so each follow event applies
        await follow(api, fan.user_id, star.user_id)
    if timeline.mode != "pull":
        # Every follow event applied (its version recorded): none merges the star's tweets later.
        for fan in fans:
            key = timeline.store.versions_key(fan.user_id)
            await eventually(lambda key=key: timeline.redis.hexists(key, str(star.user_id)), bool)
    return star, fans


async def is_celebrity(timeline: Timeline, user_id: int) -> bool:
    return bool(await timeline.redis.sismember(timeline.store.celebrities_key, str(user_id)))


async def test_a_celebritys_tweets_are_merged_at_read_time_not_pushed(
    api: Api, timelines: StartTimeline
) -> None:
    timeline = await timelines("hybrid")
    star, fans = await celebrity_with_fans(api, timeline)
    await eventually(lambda: is_celebrity(timeline, star.user_id), bool)

    tweet = await post(api, star.user_id, "to my many fans")

    for fan in fans:
        await eventually(lambda fan=fan: timeline.home_ids(fan.user_id), lambda ids: ids == [tweet.tweet_id])
        assert await timeline.pushed(fan.user_id) == []
    lag = timeline.metrics.value("chirp_fanout_lag_seconds_count", {"path": "celebrity"})
    assert lag == 1


async def test_the_push_mode_pushes_everyones_tweets(api: Api, timelines: StartTimeline) -> None:
    timeline = await timelines("push")
    star, fans = await celebrity_with_fans(api, timeline)

    tweet = await post(api, star.user_id, "pushed all the same")

    for fan in fans:
        await eventually(lambda fan=fan: timeline.pushed(fan.user_id), lambda ids: ids == [tweet.tweet_id])
    assert not await is_celebrity(timeline, star.user_id)


async def test_crossing_the_threshold_down_backfills_and_up_stops_pushing(
    api: Api, timelines: StartTimeline
) -> None:
    timeline = await timelines("hybrid")
    star, fans = await celebrity_with_fans(api, timeline)
    await eventually(lambda: is_celebrity(timeline, star.user_id), bool)
    famous = await post(api, star.user_id, "while famous")
    await eventually(lambda: timeline.home_ids(fans[1].user_id), lambda ids: ids == [famous.tweet_id])

    # Down to the threshold: no longer a celebrity; the recent tweets are copied to the timelines.
    await unfollow(api, fans[0].user_id, star.user_id)
    await eventually(lambda: is_celebrity(timeline, star.user_id), lambda yes: not yes)
    for fan in fans[1:]:
        await eventually(lambda fan=fan: timeline.pushed(fan.user_id), lambda ids: ids == [famous.tweet_id])
    ordinary = await post(api, star.user_id, "an ordinary author again")
    for fan in fans[1:]:
        await eventually(
            lambda fan=fan: timeline.pushed(fan.user_id), lambda ids: ids[0] == ordinary.tweet_id
        )
    await eventually(lambda: timeline.home_ids(fans[0].user_id), lambda ids: ids == [])

    # Above it again: new tweets are no longer pushed, and still seen.
    await follow(api, fans[0].user_id, star.user_id)
    await eventually(lambda: is_celebrity(timeline, star.user_id), bool)
    again = await post(api, star.user_id, "famous again")
    expected = [again.tweet_id, ordinary.tweet_id, famous.tweet_id]
    for fan in fans:
        await eventually(lambda fan=fan: timeline.home_ids(fan.user_id), lambda ids: ids == expected)
        assert again.tweet_id not in await timeline.pushed(fan.user_id)


async def test_a_flushed_celebrity_state_is_relearned_from_the_graph(
    api: Api, timelines: StartTimeline
) -> None:
    timeline = await timelines("hybrid")
    star, fans = await celebrity_with_fans(api, timeline)
    await eventually(lambda: is_celebrity(timeline, star.user_id), bool)
    await timeline.redis.flushdb()
    for fan in fans:
        assert await timeline.home_ids(fan.user_id) == []  # rebuilt, warm again

    tweet = await post(api, star.user_id, "after the flush")

    # The worker asked the graph service for the follower count: still not pushed, still seen.
    await eventually(lambda: is_celebrity(timeline, star.user_id), bool)
    for fan in fans:
        await eventually(lambda fan=fan: timeline.home_ids(fan.user_id), lambda ids: ids == [tweet.tweet_id])
        assert await timeline.pushed(fan.user_id) == []
