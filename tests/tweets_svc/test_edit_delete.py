"""EditTweet, ListTweetVersions and DeleteTweet: authorship, history, and what a delete removes."""

from __future__ import annotations

import grpc

from chirp.tweets.v1 import tweets_pb2 as pb
from tests.helpers.api import Api, as_user
from tests.helpers.database import outbox, query
from tests.helpers.tweets import ALICE, BOB, delete, edit, expect_error, expect_invalid, post


async def versions(api: Api, tweet_id: int) -> list[tuple[int, str]]:
    response = await api.tweets.ListTweetVersions(pb.ListTweetVersionsRequest(tweet_id=tweet_id))
    return [(v.version, v.content) for v in response.versions]


async def test_edits_make_versions_and_get_shows_the_latest(api: Api) -> None:
    tweet = await post(api, ALICE, "v1")
    second = await edit(api, ALICE, tweet.tweet_id, "v2")
    third = await edit(api, ALICE, tweet.tweet_id, "v3 🐦")
    assert (second.version, third.version) == (2, 3)
    assert third.HasField("edited_at")
    assert third.edited_at.ToDatetime() >= second.edited_at.ToDatetime() >= tweet.created_at.ToDatetime()
    assert (third.tweet_id, third.created_at, third.conversation_id) == (
        tweet.tweet_id,
        tweet.created_at,
        tweet.conversation_id,
    )

    got = await api.tweets.GetTweet(pb.GetTweetRequest(tweet_id=tweet.tweet_id))
    assert got == third
    assert await versions(api, tweet.tweet_id) == [(1, "v1"), (2, "v2"), (3, "v3 🐦")]
    history = (
        await api.tweets.ListTweetVersions(pb.ListTweetVersionsRequest(tweet_id=tweet.tweet_id))
    ).versions
    assert history[0].created_at == tweet.created_at
    assert history[2].created_at == third.edited_at


async def test_an_edit_to_the_same_content_changes_nothing(api: Api, database_url: str) -> None:
    tweet = await post(api, ALICE, "steady")
    same = await edit(api, ALICE, tweet.tweet_id, "steady")
    assert same == tweet
    assert await versions(api, tweet.tweet_id) == [(1, "steady")]
    assert [event[0] for event in await outbox(database_url, "tweets")] == ["tweet_created"]


async def test_edit_and_delete_write_events(api: Api, database_url: str) -> None:
    parent = await post(api, BOB, "parent")
    reply = await post(api, ALICE, "reply", reply_to=parent.tweet_id)
    await edit(api, ALICE, reply.tweet_id, "reply, edited")
    await delete(api, ALICE, reply.tweet_id)
    events = [e for e in await outbox(database_url, "tweets") if e[1] == reply.tweet_id]
    assert [(e[0], e[2]["version"]) for e in events] == [
        ("tweet_created", 1),
        ("tweet_edited", 2),
        ("tweet_deleted", 2),
    ]
    for _, _, payload in events:
        assert payload["reply_to"] == parent.tweet_id
        assert payload["reply_to_user_id"] == BOB
        assert payload["conversation_id"] == parent.tweet_id


async def test_only_the_author_edits_or_deletes(api: Api) -> None:
    tweet = await post(api, ALICE, "mine")
    for call in (
        api.tweets.EditTweet(
            pb.EditTweetRequest(tweet_id=tweet.tweet_id, content="ours"), metadata=as_user(BOB)
        ),
        api.tweets.DeleteTweet(pb.DeleteTweetRequest(tweet_id=tweet.tweet_id), metadata=as_user(BOB)),
    ):
        await expect_error(call, grpc.StatusCode.PERMISSION_DENIED, "NOT_AUTHOR")
    for call in (
        api.tweets.EditTweet(pb.EditTweetRequest(tweet_id=tweet.tweet_id, content="ours")),
        api.tweets.DeleteTweet(pb.DeleteTweetRequest(tweet_id=tweet.tweet_id)),
    ):
        await expect_error(call, grpc.StatusCode.UNAUTHENTICATED, "UNAUTHENTICATED")
    assert await versions(api, tweet.tweet_id) == [(1, "mine")]


async def test_edit_validates_its_input(api: Api) -> None:
    tweet = await post(api, ALICE, "fine")
    for content in ("", "x" * 281, "a\x00b"):
        await expect_invalid(
            api.tweets.EditTweet(
                pb.EditTweetRequest(tweet_id=tweet.tweet_id, content=content), metadata=as_user(ALICE)
            ),
            "content",
        )
    await expect_invalid(
        api.tweets.EditTweet(pb.EditTweetRequest(tweet_id=0, content="x"), metadata=as_user(ALICE)),
        "tweet_id",
    )
    await expect_error(
        api.tweets.EditTweet(pb.EditTweetRequest(tweet_id=999, content="x"), metadata=as_user(ALICE)),
        grpc.StatusCode.NOT_FOUND,
        "TWEET_NOT_FOUND",
    )
    assert (await edit(api, ALICE, tweet.tweet_id, "y" * 280)).version == 2


async def test_delete_removes_the_text_and_hides_the_tweet(api: Api, database_url: str) -> None:
    tweet = await post(api, ALICE, "secret")
    await edit(api, ALICE, tweet.tweet_id, "secret, edited")
    await delete(api, ALICE, tweet.tweet_id)

    rows = await query(
        database_url,
        "SELECT content, deleted_at IS NOT NULL FROM tweets.tweets WHERE tweet_id = %s",
        tweet.tweet_id,
    )
    assert rows == [("", True)]
    assert await query(database_url, "SELECT count(*) FROM tweets.tweet_versions") == [(0,)]

    tweet_id = tweet.tweet_id
    for call in (
        api.tweets.GetTweet(pb.GetTweetRequest(tweet_id=tweet_id)),
        api.tweets.ListTweetVersions(pb.ListTweetVersionsRequest(tweet_id=tweet_id)),
        api.tweets.EditTweet(pb.EditTweetRequest(tweet_id=tweet_id, content="back"), metadata=as_user(ALICE)),
        api.tweets.DeleteTweet(pb.DeleteTweetRequest(tweet_id=tweet_id), metadata=as_user(ALICE)),
        api.tweets.DeleteTweet(pb.DeleteTweetRequest(tweet_id=tweet_id), metadata=as_user(BOB)),
    ):
        await expect_error(call, grpc.StatusCode.NOT_FOUND, "TWEET_NOT_FOUND")
    assert [e[0] for e in await outbox(database_url, "tweets")].count("tweet_deleted") == 1


async def test_delete_and_versions_errors(api: Api) -> None:
    await expect_invalid(
        api.tweets.DeleteTweet(pb.DeleteTweetRequest(tweet_id=-3), metadata=as_user(ALICE)), "tweet_id"
    )
    await expect_error(
        api.tweets.DeleteTweet(pb.DeleteTweetRequest(tweet_id=777), metadata=as_user(ALICE)),
        grpc.StatusCode.NOT_FOUND,
        "TWEET_NOT_FOUND",
    )
    await expect_invalid(api.tweets.ListTweetVersions(pb.ListTweetVersionsRequest(tweet_id=0)), "tweet_id")
    await expect_error(
        api.tweets.ListTweetVersions(pb.ListTweetVersionsRequest(tweet_id=777)),
        grpc.StatusCode.NOT_FOUND,
        "TWEET_NOT_FOUND",
    )
