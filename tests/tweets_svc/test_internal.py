"""The internal reads of the timeline service: BatchGetTweets and ListTweetsByAuthors."""

from __future__ import annotations

import psycopg

from chirp.tweets.v1 import tweets_pb2 as pb
from chirp_core.snowflake import EPOCH_MS
from tests.helpers.api import Api, as_user
from tests.helpers.tweets import ALICE, BOB, expect_invalid, post

CAROL = 1003


async def by_authors(api: Api, authors: list[int], **fields: int) -> list[int]:
    request = pb.ListTweetsByAuthorsRequest(author_ids=authors, **fields)
    return [t.tweet_id for t in (await api.tweets.ListTweetsByAuthors(request)).tweets]


async def test_batch_get_returns_live_tweets_newest_first(api: Api) -> None:
    a = await post(api, ALICE, "a")
    b = await post(api, BOB, "b")
    c = await post(api, ALICE, "c")
    await api.tweets.DeleteTweet(pb.DeleteTweetRequest(tweet_id=b.tweet_id), metadata=as_user(BOB))
    ids = [a.tweet_id, b.tweet_id, 987654321, c.tweet_id, a.tweet_id, 0]
    response = await api.tweets.BatchGetTweets(pb.BatchGetTweetsRequest(tweet_ids=ids))
    assert list(response.tweets) == [c, a]
    assert not (await api.tweets.BatchGetTweets(pb.BatchGetTweetsRequest())).tweets


async def test_batch_get_takes_up_to_1000_ids(api: Api) -> None:
    tweet = await post(api, ALICE, "needle")
    ids = [tweet.tweet_id, *range(1, 1000)]
    found = await api.tweets.BatchGetTweets(pb.BatchGetTweetsRequest(tweet_ids=ids))
    assert [t.tweet_id for t in found.tweets] == [tweet.tweet_id]
    await expect_invalid(
        api.tweets.BatchGetTweets(pb.BatchGetTweetsRequest(tweet_ids=[*ids, 1000])), "tweet_ids"
    )


async def test_by_authors_merges_authors_newest_first_within_exclusive_bounds(api: Api) -> None:
    t = [(await post(api, author, f"t{i}")).tweet_id for i, author in enumerate([ALICE, BOB, CAROL] * 3)]
    mine_and_bobs = [tid for i, tid in enumerate(t) if i % 3 != 2]
    assert await by_authors(api, [ALICE, BOB]) == sorted(mine_and_bobs, reverse=True)
    assert await by_authors(api, [ALICE, BOB], limit=2) == sorted(mine_and_bobs, reverse=True)[:2]
    # Bounds are exclusive: the tweets at max_id and min_id are left out.
    assert await by_authors(api, [ALICE, BOB, CAROL], max_id=t[7], min_id=t[2]) == t[6:2:-1]
    assert await by_authors(api, [ALICE], max_id=t[0]) == []
    # Deleted tweets, unknown authors and duplicate authors add nothing.
    await api.tweets.DeleteTweet(pb.DeleteTweetRequest(tweet_id=t[6]), metadata=as_user(ALICE))
    assert await by_authors(api, [ALICE, ALICE, 5555]) == [t[3], t[0]]


async def test_by_authors_limits(api: Api, database_url: str) -> None:
    # 1,001 tweets written straight to the table: the RPC path is not what this test is about.
    base = 3_600_000 << 22  # an hour after the Snowflake epoch
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute(
            "INSERT INTO tweets.tweets (tweet_id, user_id, content, conversation_id, created_at)"
            " SELECT %s + g, %s, 'bulk', %s + g, to_timestamp(%s / 1000.0) FROM generate_series(1, 1001) g",
            (base, ALICE, base, EPOCH_MS),
        )
    assert len(await by_authors(api, [ALICE])) == 20
    page = await by_authors(api, [ALICE], limit=5000)
    assert len(page) == 1000
    assert page[0] == base + 1001


async def test_by_authors_accepts_50000_authors(api: Api) -> None:
    tweet = await post(api, BOB, "found among many")
    authors = [*range(2_000_000, 2_049_999), BOB]
    assert len(authors) == 50_000
    assert await by_authors(api, authors) == [tweet.tweet_id]


async def test_by_authors_errors(api: Api) -> None:
    await expect_invalid(api.tweets.ListTweetsByAuthors(pb.ListTweetsByAuthorsRequest()), "author_ids")
    too_many = pb.ListTweetsByAuthorsRequest(author_ids=range(1, 50_002))
    await expect_invalid(api.tweets.ListTweetsByAuthors(too_many), "author_ids")
    for field in ("max_id", "min_id", "limit"):
        request = pb.ListTweetsByAuthorsRequest(author_ids=[ALICE], **{field: -1})
        await expect_invalid(api.tweets.ListTweetsByAuthors(request), field)
