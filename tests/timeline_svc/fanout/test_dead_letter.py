"""Events the fan-out workers cannot apply: retried, then moved to the dead-letter stream and only
then acknowledged; an outage of the graph service is retried until it ends, never dead-lettered."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from chirp_app.stack import Stack
from chirp_core.snowflake import lowest_id_at
from tests.helpers.api import Api, eventually
from tests.helpers.fanout import Timeline, applied
from tests.helpers.graph import follow, unfollow
from tests.helpers.tcp_proxy import CountingProxy
from tests.helpers.tweets import delete, post
from tests.timeline_svc.fanout.conftest import StartTimeline

MAX_ATTEMPTS = 3


async def dead_letters(timeline: Timeline) -> list[tuple[str, dict[str, str]]]:
    """The dead letters of the timeline's consumer group: (ID, fields)."""
    entries = await timeline.redis.xrange(f"{timeline.settings.events_stream}:dead")
    letters = [(_text(id_), {_text(k): _text(v) for k, v in fields.items()}) for id_, fields in entries]
    group = timeline.settings.timeline_namespace
    return [(id_, fields) for id_, fields in letters if fields["group"] == group]


async def pending_ids(timeline: Timeline) -> list[str]:
    settings = timeline.settings
    entries = await timeline.redis.xpending_range(
        settings.events_stream, settings.timeline_namespace, min="-", max="+", count=100
    )
    return [_text(entry["message_id"]) for entry in entries]


async def dead_lettered(timeline: Timeline, event_type: str) -> float:
    return timeline.metrics.value("chirp_fanout_dead_letters_total", {"type": event_type})


async def failures(timeline: Timeline, reason: str) -> float:
    return timeline.metrics.value("chirp_fanout_failures_total", {"reason": reason})


async def test_a_tweet_by_an_author_the_graph_does_not_know_is_retried_then_dead_lettered(
    timelines: StartTimeline, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="chirp.timeline.fanout")
    timeline = await timelines("push", fanout_max_attempts=MAX_ATTEMPTS)
    now = datetime.now(UTC)
    stranger = lowest_id_at(now - timedelta(days=1))  # from another stack's database
    payload = json.dumps({"tweet_id": lowest_id_at(now), "user_id": stranger, "reply_to_user_id": 0})
    fields = {"type": "tweet_created", "source": "tweets.outbox", "seq": "7", "payload": payload}
    event_id = _text(await timeline.redis.xadd(timeline.settings.events_stream, fields))

    # The first failure leaves it pending; the next attempt waits for the claim timeout (1 s).
    await eventually(lambda: failures(timeline, "error"), lambda seen: seen >= 1)
    assert event_id in await pending_ids(timeline)
    assert await dead_letters(timeline) == []

    await eventually(lambda: dead_lettered(timeline, "tweet_created"), lambda count: count == 1)
    letters = await dead_letters(timeline)
    assert len(letters) == 1
    letter = letters[0][1]
    assert {key: letter[key] for key in fields} == fields
    assert letter["error"] == f"unknown user: the graph service has no user {stranger}"
    assert letter["attempts"] == str(MAX_ATTEMPTS)
    assert letter["original_id"] == event_id
    assert letter["consumer"]
    assert await failures(timeline, "error") == MAX_ATTEMPTS
    assert timeline.metrics.value("chirp_fanout_events_total", {"type": "tweet_created"}) == 0
    assert await pending_ids(timeline) == []
    attempts_key = f"{timeline.settings.events_stream}:attempts:{timeline.settings.timeline_namespace}"
    assert await timeline.redis.exists(attempts_key) == 0
    ours = f"by group {timeline.settings.timeline_namespace} to the dead-letter"
    logged = [r for r in caplog.records if r.levelno >= logging.ERROR and ours in r.getMessage()]
    assert len(logged) == 1
    assert event_id in logged[0].getMessage()
    assert f"no user {stranger}" in logged[0].getMessage()


async def test_a_malformed_event_is_dead_lettered(timelines: StartTimeline) -> None:
    timeline = await timelines("push", fanout_max_attempts=MAX_ATTEMPTS, fanout_claim_idle_seconds=0.3)
    fields = {"type": "tweet_created", "source": "tweets.outbox", "seq": "not a number", "payload": "{}"}
    event_id = _text(await timeline.redis.xadd(timeline.settings.events_stream, fields))

    await eventually(lambda: dead_lettered(timeline, "malformed"), lambda count: count == 1)
    letters = await dead_letters(timeline)
    assert len(letters) == 1
    letter = letters[0][1]
    assert letter["original_id"] == event_id
    assert letter["seq"] == "not a number"
    assert letter["error"].startswith("malformed event: ")
    assert letter["attempts"] == str(MAX_ATTEMPTS)
    assert await pending_ids(timeline) == []


async def test_the_graph_service_unreachable_is_retried_until_it_is_back_and_not_dead_lettered(
    api: Api, stack: Stack, timelines: StartTimeline
) -> None:
    host, port = stack.address("graph").rsplit(":", 1)
    proxy = CountingProxy(host, int(port))
    await proxy.start()
    try:
        timeline = await timelines(
            "push",
            graph_addr=f"127.0.0.1:{proxy.port}",
            fanout_max_attempts=2,
            # Far longer than the test: the consumer the outage interrupted applies the event again
            # itself, as soon as the graph service is back, not after a claim timeout.
            fanout_claim_idle_seconds=60.0,
        )
        alice, bob = await api.new_user(), await api.new_user()
        await follow(api, alice.user_id, bob.user_id)
        await eventually(lambda: timeline.home_ids(alice.user_id), lambda seen: seen == [])  # warm
        # Applied in full: a follow merge still running would bring the tweet below along.
        await eventually(lambda: applied(timeline, "followed"), lambda count: count == 1)

        await proxy.close()
        tweet = await post(api, bob.user_id, "while the graph service is away")
        # More failed tries than the attempts allowed: an outage does not count against them.
        await eventually(lambda: failures(timeline, "outage"), lambda seen: seen > 2)
        assert tweet.tweet_id not in await timeline.pushed(alice.user_id)
        assert len(await pending_ids(timeline)) == 1

        await proxy.start()
        await eventually(lambda: timeline.pushed(alice.user_id), lambda pushed: pushed == [tweet.tweet_id])
        await eventually(lambda: pending_ids(timeline), lambda ids: ids == [])
        assert await dead_letters(timeline) == []
        assert await dead_lettered(timeline, "tweet_created") == 0
        assert await failures(timeline, "error") == 0
    finally:
        await proxy.close()


async def test_deletes_and_unfollows_of_known_users_still_apply(api: Api, timelines: StartTimeline) -> None:
    timeline = await timelines("push", fanout_max_attempts=1)
    alice, bob, carol = await api.new_user(), await api.new_user(), await api.new_user()
    await follow(api, alice.user_id, bob.user_id)
    await follow(api, alice.user_id, carol.user_id)
    await timeline.home_ids(alice.user_id)
    kept = await post(api, carol.user_id, "kept")
    gone = await post(api, bob.user_id, "deleted soon")
    both = [gone.tweet_id, kept.tweet_id]
    await eventually(lambda: timeline.pushed(alice.user_id), lambda ids: ids == both)

    await delete(api, bob.user_id, gone.tweet_id)
    await eventually(lambda: timeline.pushed(alice.user_id), lambda ids: ids == [kept.tweet_id])
    await unfollow(api, alice.user_id, carol.user_id)
    await eventually(lambda: timeline.pushed(alice.user_id), lambda ids: ids == [])
    assert await dead_letters(timeline) == []
    assert await failures(timeline, "error") == 0


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
