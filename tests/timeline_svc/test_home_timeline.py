"""GetHomeTimeline: what is in it, in which order, and who may read it."""

from __future__ import annotations

import grpc

from chirp.timeline.v1 import timeline_pb2
from chirp.tweets.v1 import tweets_pb2
from tests.helpers.api import Api, as_user, error_reason, eventually, rpc_error
from tests.helpers.graph import follow, unfollow
from tests.helpers.timeline import home, home_contents, ids, new_users
from tests.helpers.tweets import post


async def test_home_timeline_has_own_and_followees_tweets_newest_first_with_authors(api: Api) -> None:
    alice, bob, carol, stranger = await new_users(api, 4)
    await follow(api, alice.user_id, bob.user_id)
    await follow(api, alice.user_id, carol.user_id)
    await follow(api, stranger.user_id, alice.user_id)
    posted = [
        await post(api, alice.user_id, "alice 1"),
        await post(api, bob.user_id, "bob 1"),
        await post(api, stranger.user_id, "stranger 1"),
        await post(api, carol.user_id, "carol 1"),
        await post(api, alice.user_id, "alice 2"),
    ]

    page = await home(api, alice.user_id, limit=10)

    assert [t.content for t in page.tweets] == ["alice 2", "carol 1", "bob 1", "alice 1"]
    assert ids(page.tweets) == sorted(ids(page.tweets), reverse=True)
    assert posted[2].tweet_id not in ids(page.tweets)
    profiles = {u.user_id: u for u in (alice, bob, carol)}
    for tweet in page.tweets:
        assert tweet.author.user_id == tweet.user_id
        assert tweet.author.handle == profiles[tweet.user_id].handle
        assert tweet.author.display_name == profiles[tweet.user_id].display_name
    assert page.next_cursor == ""


async def test_unfollow_removes_the_followees_tweets(api: Api) -> None:
    alice, bob = await new_users(api, 2)
    await follow(api, alice.user_id, bob.user_id)
    await post(api, bob.user_id, "from bob")
    await post(api, alice.user_id, "from alice")
    assert [t.content for t in (await home(api, alice.user_id)).tweets] == ["from alice", "from bob"]

    await unfollow(api, alice.user_id, bob.user_id)

    await eventually(lambda: home_contents(api, alice.user_id), lambda seen: seen == ["from alice"])


async def test_a_deleted_tweet_disappears_and_an_edit_shows_its_latest_content(api: Api) -> None:
    alice, bob = await new_users(api, 2)
    await follow(api, alice.user_id, bob.user_id)
    kept = await post(api, bob.user_id, "kept")
    doomed = await post(api, bob.user_id, "doomed")
    edited = await post(api, bob.user_id, "first draft")
    assert len((await home(api, alice.user_id)).tweets) == 3

    await api.tweets.DeleteTweet(
        tweets_pb2.DeleteTweetRequest(tweet_id=doomed.tweet_id), metadata=as_user(bob.user_id)
    )
    await api.tweets.EditTweet(
        tweets_pb2.EditTweetRequest(tweet_id=edited.tweet_id, content="final words"),
        metadata=as_user(bob.user_id),
    )

    page = await home(api, alice.user_id)
    assert ids(page.tweets) == [edited.tweet_id, kept.tweet_id]
    assert page.tweets[0].content == "final words"
    assert page.tweets[0].version == 2
    assert page.tweets[0].HasField("edited_at")


async def test_only_the_user_may_read_their_home_timeline(api: Api) -> None:
    alice, bob = await new_users(api, 2)
    request = timeline_pb2.GetHomeTimelineRequest(user_id=alice.user_id)

    denied = await rpc_error(api.timeline.GetHomeTimeline(request, metadata=as_user(bob.user_id)))
    assert denied.code() == grpc.StatusCode.PERMISSION_DENIED
    assert error_reason(denied) == "NOT_YOURSELF"

    anonymous = await rpc_error(api.timeline.GetHomeTimeline(request))
    assert anonymous.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_a_user_id_that_is_not_an_id_is_invalid(api: Api) -> None:
    alice = await api.new_user()
    request = timeline_pb2.GetHomeTimelineRequest(user_id=-1)
    error = await rpc_error(api.timeline.GetHomeTimeline(request, metadata=as_user(alice.user_id)))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (error.details() or "").startswith("user_id")
