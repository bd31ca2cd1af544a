"""StreamHomeTimeline over Redis pub/sub (push, hybrid; the pull mode polls), and reconnecting."""

from __future__ import annotations

from tests.helpers.api import Api, eventually
from tests.helpers.fanout import CELEBRITY_THRESHOLD, Timeline
from tests.helpers.graph import follow
from tests.helpers.timeline import next_tweet
from tests.helpers.tweets import post
from tests.timeline_svc.fanout.conftest import StartTimeline


def subscribers(timeline: Timeline, transport: str) -> float:
    return timeline.metrics.value("chirp_stream_subscribers", {"transport": transport})


async def test_a_new_tweet_arrives_live_then_a_reconnect_misses_nothing(api: Api, timeline: Timeline) -> None:
    alice, bob = await api.new_user(), await api.new_user()
    await follow(api, alice.user_id, bob.user_id)
    call = await timeline.stream(alice.user_id)
    try:
        live = await post(api, bob.user_id, "live")
        arrived = await next_tweet(call)
        assert arrived.tweet_id == live.tweet_id
        assert arrived.author.user_id == bob.user_id
        transport = "poll" if timeline.mode == "pull" else "pubsub"
        assert subscribers(timeline, transport) == 1
    finally:
        call.cancel()
    await eventually(lambda: _value(subscribers(timeline, transport)), lambda n: n == 0)

    missed = [await post(api, bob.user_id, "missed 1"), await post(api, alice.user_id, "missed 2")]
    call = await timeline.stream(alice.user_id, since_id=live.tweet_id)
    try:
        replayed = [await next_tweet(call), await next_tweet(call)]
        assert [t.tweet_id for t in replayed] == [t.tweet_id for t in missed]
        again = await post(api, bob.user_id, "live again")
        assert (await next_tweet(call)).tweet_id == again.tweet_id
        # Nothing twice: the next one is the next new tweet.
        last = await post(api, alice.user_id, "last")
        assert (await next_tweet(call)).tweet_id == last.tweet_id
    finally:
        call.cancel()


async def test_a_followed_celebritys_tweet_arrives_on_its_channel(api: Api, timelines: StartTimeline) -> None:
    timeline = await timelines("hybrid")
    star = await api.new_user()
    fans = [await api.new_user() for _ in range(CELEBRITY_THRESHOLD + 1)]
    for fan in fans[1:]:
        await follow(api, fan.user_id, star.user_id)
    reader = fans[0]
    call = await timeline.stream(reader.user_id)
    try:
        # Followed during the stream, as the follower who makes them a celebrity.
        await follow(api, reader.user_id, star.user_id)
        await eventually(
            lambda: timeline.redis.sismember(timeline.store.celebrities_key, str(star.user_id)),
            bool,
        )
        await eventually(
            lambda: timeline.store.followed_celebrities(reader.user_id), lambda c: star.user_id in c
        )
        tweet = await post(api, star.user_id, "to every fan at once")
        arrived = await next_tweet(call)
        assert arrived.tweet_id == tweet.tweet_id
        assert await timeline.pushed(reader.user_id) == []  # never pushed: it came on the star's channel
    finally:
        call.cancel()


async def _value(number: float) -> float:
    return number
