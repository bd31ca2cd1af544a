"""CreateTweet and GetTweet: content rules, caller checks, idempotency keys, the outbox."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import grpc

from chirp.tweets.v1 import tweets_pb2 as pb
from tests.helpers.api import Api, as_user
from tests.helpers.database import outbox, query
from tests.helpers.tweets import ALICE, BOB, expect_error, expect_invalid, post


async def test_create_returns_the_tweet_and_get_reads_it_back(api: Api) -> None:
    before = datetime.now(UTC)
    tweet = await post(api, ALICE, "first!")
    assert tweet.tweet_id > 0
    assert (tweet.user_id, tweet.content, tweet.version) == (ALICE, "first!", 1)
    assert (tweet.reply_to, tweet.reply_to_user_id) == (0, 0)
    assert tweet.conversation_id == tweet.tweet_id
    assert not tweet.HasField("edited_at")
    created = tweet.created_at.ToDatetime(tzinfo=UTC)
    assert before - timedelta(seconds=1) <= created <= datetime.now(UTC) + timedelta(seconds=1)

    got = await api.tweets.GetTweet(pb.GetTweetRequest(tweet_id=tweet.tweet_id))
    assert got == tweet


async def test_tweet_ids_increase(api: Api) -> None:
    first = await post(api, ALICE, "one")
    second = await post(api, BOB, "two")
    assert second.tweet_id > first.tweet_id


async def test_create_writes_one_row_one_version_and_one_event(api: Api, database_url: str) -> None:
    tweet = await post(api, ALICE, "counted")
    rows = await query(database_url, "SELECT version, content FROM tweets.tweet_versions")
    assert rows == [(1, "counted")]
    assert await outbox(database_url, "tweets") == [
        (
            "tweet_created",
            tweet.tweet_id,
            {
                "tweet_id": tweet.tweet_id,
                "user_id": ALICE,
                "reply_to": None,
                "reply_to_user_id": None,
                "conversation_id": tweet.tweet_id,
                "version": 1,
            },
        )
    ]


async def test_280_code_points_are_accepted_and_kept_as_sent(api: Api) -> None:
    # Astral characters are one code point each but two UTF-16 units and four UTF-8 bytes.
    content = " " + "🐦" * 139 + "𝄞" * 138 + "é "
    assert len(content) == 280
    tweet = await post(api, ALICE, content)
    got = await api.tweets.GetTweet(pb.GetTweetRequest(tweet_id=tweet.tweet_id))
    assert got.content == content


async def test_content_rules(api: Api) -> None:
    for content in ("", "🐦" * 281, "x" * 281, "nul\x00inside"):
        await expect_invalid(
            api.tweets.CreateTweet(
                pb.CreateTweetRequest(user_id=ALICE, content=content), metadata=as_user(ALICE)
            ),
            "content",
        )


async def test_create_needs_a_caller_acting_for_themself(api: Api) -> None:
    request = pb.CreateTweetRequest(user_id=ALICE, content="hi")
    await expect_error(api.tweets.CreateTweet(request), grpc.StatusCode.UNAUTHENTICATED, "UNAUTHENTICATED")
    await expect_error(
        api.tweets.CreateTweet(request, metadata=as_user(BOB)),
        grpc.StatusCode.PERMISSION_DENIED,
        "NOT_YOURSELF",
    )


async def test_create_rejects_a_missing_or_negative_user_id(api: Api) -> None:
    for user_id in (0, -5):
        await expect_invalid(
            api.tweets.CreateTweet(
                pb.CreateTweetRequest(user_id=user_id, content="hi"), metadata=as_user(ALICE)
            ),
            "user_id",
        )


async def test_get_errors(api: Api) -> None:
    await expect_invalid(api.tweets.GetTweet(pb.GetTweetRequest(tweet_id=0)), "tweet_id")
    await expect_invalid(api.tweets.GetTweet(pb.GetTweetRequest(tweet_id=-1)), "tweet_id")
    err = await expect_error(
        api.tweets.GetTweet(pb.GetTweetRequest(tweet_id=12345)), grpc.StatusCode.NOT_FOUND, "TWEET_NOT_FOUND"
    )
    assert "12345" in (err.details() or "")


async def test_same_idempotency_key_returns_the_first_tweet(api: Api, database_url: str) -> None:
    first = await post(api, ALICE, "once", idempotency_key="k-1")
    again = await post(api, ALICE, "once", idempotency_key="k-1")
    assert again == first
    assert await query(database_url, "SELECT count(*) FROM tweets.tweets") == [(1,)]
    assert [event[0] for event in await outbox(database_url, "tweets")] == ["tweet_created"]


async def test_idempotency_keys_belong_to_their_author(api: Api) -> None:
    alice = await post(api, ALICE, "same words", idempotency_key="shared")
    bob = await post(api, BOB, "same words", idempotency_key="shared")
    assert alice.tweet_id != bob.tweet_id


async def test_a_replay_after_an_edit_returns_the_tweet_as_edited(api: Api) -> None:
    first = await post(api, ALICE, "draft", idempotency_key="k-edit")
    await api.tweets.EditTweet(
        pb.EditTweetRequest(tweet_id=first.tweet_id, content="final"), metadata=as_user(ALICE)
    )
    again = await post(api, ALICE, "draft", idempotency_key="k-edit")
    assert (again.tweet_id, again.content, again.version) == (first.tweet_id, "final", 2)


async def test_reusing_a_key_for_another_tweet_is_failed_precondition(api: Api) -> None:
    parent = await post(api, BOB, "parent")
    await post(api, ALICE, "original", idempotency_key="k-2")
    for changed in (
        pb.CreateTweetRequest(user_id=ALICE, content="different", idempotency_key="k-2"),
        pb.CreateTweetRequest(
            user_id=ALICE, content="original", reply_to=parent.tweet_id, idempotency_key="k-2"
        ),
    ):
        await expect_error(
            api.tweets.CreateTweet(changed, metadata=as_user(ALICE)),
            grpc.StatusCode.FAILED_PRECONDITION,
            "IDEMPOTENCY_KEY_REUSED",
        )


async def test_a_replay_after_a_delete_does_not_bring_the_tweet_back(api: Api, database_url: str) -> None:
    tweet = await post(api, ALICE, "gone soon", idempotency_key="k-3")
    await api.tweets.DeleteTweet(pb.DeleteTweetRequest(tweet_id=tweet.tweet_id), metadata=as_user(ALICE))
    await expect_error(
        api.tweets.CreateTweet(
            pb.CreateTweetRequest(user_id=ALICE, content="gone soon", idempotency_key="k-3"),
            metadata=as_user(ALICE),
        ),
        grpc.StatusCode.NOT_FOUND,
        "TWEET_NOT_FOUND",
    )
    assert await query(database_url, "SELECT count(*) FROM tweets.tweets") == [(1,)]


async def test_idempotency_key_length(api: Api) -> None:
    assert (await post(api, ALICE, "ok", idempotency_key="k" * 64)).tweet_id
    await expect_invalid(
        api.tweets.CreateTweet(
            pb.CreateTweetRequest(user_id=ALICE, content="ok", idempotency_key="k" * 65),
            metadata=as_user(ALICE),
        ),
        "idempotency_key",
    )


async def test_concurrent_creates_with_one_key_make_one_tweet(api: Api, database_url: str) -> None:
    for round_ in range(3):
        key = f"race-{round_}"
        tweets = await asyncio.gather(*(post(api, ALICE, "racing", idempotency_key=key) for _ in range(8)))
        assert len({t.tweet_id for t in tweets}) == 1
    assert await query(database_url, "SELECT count(*) FROM tweets.tweets") == [(3,)]
    assert await query(database_url, "SELECT count(*) FROM tweets.outbox") == [(3,)]
