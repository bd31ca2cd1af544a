"""Replies: conversation roots, ListReplies keyset paging, deleted parents and replies."""

from __future__ import annotations

import grpc

from chirp.tweets.v1 import tweets_pb2 as pb
from tests.helpers.api import Api, as_user
from tests.helpers.tweets import ALICE, BOB, expect_error, expect_invalid, post

CAROL = 1003


async def replies_page(api: Api, tweet_id: int, limit: int = 0, cursor: str = "") -> pb.ListRepliesResponse:
    return await api.tweets.ListReplies(pb.ListRepliesRequest(tweet_id=tweet_id, limit=limit, cursor=cursor))


async def test_a_reply_chain_shares_the_root_as_conversation(api: Api) -> None:
    root = await post(api, ALICE, "root")
    reply = await post(api, BOB, "reply", reply_to=root.tweet_id)
    deeper = await post(api, CAROL, "deeper", reply_to=reply.tweet_id)
    assert (reply.reply_to, reply.reply_to_user_id, reply.conversation_id) == (
        root.tweet_id,
        ALICE,
        root.tweet_id,
    )
    assert (deeper.reply_to, deeper.reply_to_user_id, deeper.conversation_id) == (
        reply.tweet_id,
        BOB,
        root.tweet_id,
    )
    # Only direct replies are listed.
    listed = await replies_page(api, root.tweet_id)
    assert [t.tweet_id for t in listed.tweets] == [reply.tweet_id]
    assert listed.tweets[0] == reply
    assert listed.next_cursor == ""


async def test_replying_to_a_missing_or_deleted_tweet_is_not_found(api: Api) -> None:
    gone = await post(api, BOB, "gone")
    await api.tweets.DeleteTweet(pb.DeleteTweetRequest(tweet_id=gone.tweet_id), metadata=as_user(BOB))
    for reply_to in (gone.tweet_id, 424242):
        await expect_error(
            api.tweets.CreateTweet(
                pb.CreateTweetRequest(user_id=ALICE, content="hey", reply_to=reply_to),
                metadata=as_user(ALICE),
            ),
            grpc.StatusCode.NOT_FOUND,
            "TWEET_NOT_FOUND",
        )
    await expect_invalid(
        api.tweets.CreateTweet(
            pb.CreateTweetRequest(user_id=ALICE, content="hey", reply_to=-1), metadata=as_user(ALICE)
        ),
        "reply_to",
    )


async def test_paging_has_no_gaps_or_duplicates_while_replies_arrive(api: Api) -> None:
    root = await post(api, ALICE, "popular")
    elsewhere = await post(api, ALICE, "other thread")
    expected = [(await post(api, BOB, f"early {i}", reply_to=root.tweet_id)).tweet_id for i in range(5)]
    await post(api, CAROL, "not for this list", reply_to=elsewhere.tweet_id)

    seen: list[int] = []
    cursor = ""
    pages = 0
    while True:
        page = await replies_page(api, root.tweet_id, limit=2, cursor=cursor)
        pages += 1
        assert 0 < len(page.tweets) <= 2
        seen.extend(t.tweet_id for t in page.tweets)
        if not page.next_cursor:
            break
        cursor = page.next_cursor
        if pages <= 3:  # new replies arrive between page fetches
            expected.append((await post(api, CAROL, f"late {pages}", reply_to=root.tweet_id)).tweet_id)
    assert seen == expected == sorted(expected)
    assert pages == 4


async def test_deleted_replies_drop_out_and_a_deleted_parent_keeps_its_replies(api: Api) -> None:
    root = await post(api, ALICE, "root")
    first = await post(api, BOB, "first", reply_to=root.tweet_id)
    second = await post(api, CAROL, "second", reply_to=root.tweet_id)
    page = await replies_page(api, root.tweet_id, limit=1)
    assert [t.tweet_id for t in page.tweets] == [first.tweet_id]

    await api.tweets.DeleteTweet(pb.DeleteTweetRequest(tweet_id=second.tweet_id), metadata=as_user(CAROL))
    rest = await replies_page(api, root.tweet_id, limit=1, cursor=page.next_cursor)
    assert (list(rest.tweets), rest.next_cursor) == ([], "")

    # The thread keeps its shape: the deleted root's replies are still live tweets.
    await api.tweets.DeleteTweet(pb.DeleteTweetRequest(tweet_id=root.tweet_id), metadata=as_user(ALICE))
    after = await replies_page(api, root.tweet_id)
    assert [t.tweet_id for t in after.tweets] == [first.tweet_id]
    assert after.tweets[0].conversation_id == root.tweet_id


async def test_list_replies_errors(api: Api) -> None:
    root = await post(api, ALICE, "root")
    await expect_invalid(api.tweets.ListReplies(pb.ListRepliesRequest(tweet_id=0)), "tweet_id")
    await expect_invalid(
        api.tweets.ListReplies(pb.ListRepliesRequest(tweet_id=root.tweet_id, limit=-1)), "limit"
    )
    for cursor in ("garbage!", "YWJj"):
        await expect_invalid(
            api.tweets.ListReplies(pb.ListRepliesRequest(tweet_id=root.tweet_id, cursor=cursor)), "cursor"
        )
    await expect_error(
        api.tweets.ListReplies(pb.ListRepliesRequest(tweet_id=31337)),
        grpc.StatusCode.NOT_FOUND,
        "TWEET_NOT_FOUND",
    )
