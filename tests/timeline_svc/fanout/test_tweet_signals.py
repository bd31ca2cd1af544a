"""What the tweets service writes right after a commit (tweets_svc/signals.py) and how the
timeline reads it (timeline_svc/keys.py): an edit shows at once, and a copy cached before it is
not served again, even once the tweets service's marker has expired and no worker has run."""

from __future__ import annotations

import pytest

from tests.helpers.api import Api, eventually
from tests.helpers.graph import follow
from tests.helpers.tweets import edit, post
from tests.timeline_svc.fanout.conftest import StartTimeline
from timeline_svc import keys
from tweets_svc import signals


def test_the_timeline_reads_the_keys_the_tweets_service_writes() -> None:
    assert (keys.CHANGED_KEY_PREFIX, keys.LAST_POST_KEY_PREFIX) == (
        signals.CHANGED_KEY_PREFIX,
        signals.LAST_POST_KEY_PREFIX,
    )


@pytest.mark.parametrize("mode", ["push", "hybrid"])
async def test_a_copy_cached_before_an_edit_is_not_served_after_the_marker_expires(
    api: Api, timelines: StartTimeline, mode: str
) -> None:
    alice, bob = await api.new_user(), await api.new_user()
    await follow(api, alice.user_id, bob.user_id)
    tweet = await post(api, bob.user_id, "first draft")
    reader = await timelines(mode, fanout_workers=0)
    assert [t.content for t in (await reader.home(alice.user_id)).tweets] == ["first draft"]
    redis, cached = reader.redis, keys.tweet_key(tweet.tweet_id)
    stale = await redis.get(cached)
    assert stale not in (None, keys.TOMBSTONE)

    await edit(api, bob.user_id, tweet.tweet_id, "final words")
    # The session's workers tombstone the copy when the edit's event comes; put it back, as if
    # no worker had run: only the tweets service's marker tells of the edit now.
    await eventually(lambda: redis.get(cached), lambda value: value == keys.TOMBSTONE)
    await redis.set(cached, stale)
    assert await redis.exists(keys.changed_key(tweet.tweet_id))
    first = await reader.home(alice.user_id)
    await redis.delete(keys.changed_key(tweet.tweet_id))  # as when it expires
    second = await reader.home(alice.user_id)

    assert [t.content for t in first.tweets] == ["final words"]
    assert [t.content for t in second.tweets] == ["final words"]
    assert await redis.get(cached) == keys.TOMBSTONE


async def test_the_authors_newest_tweet_is_marked_for_their_next_read(
    api: Api, timelines: StartTimeline
) -> None:
    timeline = await timelines("push")
    alice = await api.new_user()
    await post(api, alice.user_id, "older")
    tweet = await post(api, alice.user_id, "mine")

    assert await timeline.redis.get(keys.last_post_key(alice.user_id)) == str(tweet.tweet_id).encode()
