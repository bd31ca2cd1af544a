"""The COPY loader against the real test PostgreSQL, with the schemas the services migrate: the
rows land, the counts agree, and a loaded account logs in and reads its home timeline."""

from __future__ import annotations

import psycopg

from bench.graphgen import Dataset, generate
from bench.loader import BENCH_PASSWORD, load, password_hash
from chirp.timeline.v1 import timeline_pb2
from chirp.users.v1 import users_pb2
from chirp_app.stack import Stack
from tests.helpers.api import Api, as_user


def tiny() -> Dataset:
    return generate(
        users=80,
        median_followees=8.0,
        followee_sigma=0.5,
        celebrities=2,
        threshold=30,
        tweets_per_user=3.0,
        celebrity_tweets=5,
        history_days=2.0,
        seed=3,
        now_ms=1_760_000_000_000,
        handle_prefix="loaded_",
    )


def _count(conn: psycopg.Connection[tuple[object, ...]], table: str) -> int:
    row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
    assert row is not None
    return int(str(row[0]))


async def test_copy_loads_every_row_and_the_accounts_work(stack: Stack, api: Api, database_url: str) -> None:
    dataset = tiny()
    result = load(database_url, dataset, password_hash())
    tweets = len(dataset.tweet_ids)
    assert result.rows == {
        "graph.users": 80,
        "graph.follows": len(dataset.follower_idx),
        "tweets.tweets": tweets,
        "tweets.tweet_versions": tweets,
    }
    with psycopg.connect(database_url) as conn:
        assert _count(conn, "graph.users") == 80
        assert _count(conn, "graph.follows") == len(dataset.follower_idx)
        assert _count(conn, "tweets.tweets") == tweets
        assert _count(conn, "tweets.tweet_versions") == tweets
        has_counts = conn.execute(
            "SELECT count(*) FROM information_schema.columns WHERE table_schema = 'graph'"
            " AND table_name = 'users' AND column_name = 'follower_count'"
        ).fetchone()
        if has_counts and has_counts[0]:
            wrong = conn.execute(
                "SELECT count(*) FROM graph.users u WHERE follower_count <>"
                " (SELECT count(*) FROM graph.follows f WHERE f.followee_id = u.user_id)"
                " OR following_count <>"
                " (SELECT count(*) FROM graph.follows f WHERE f.follower_id = u.user_id)"
            ).fetchone()
            assert wrong == (0,)

    # A loaded account logs in with the shared password and sees its followees' tweets.
    reader = 10
    session = await api.users.CreateSession(
        users_pb2.CreateSessionRequest(handle=dataset.handles[reader], password=BENCH_PASSWORD)
    )
    reader_id = dataset.user_ids[reader]
    assert session.user_id == reader_id
    followees = {
        dataset.user_ids[followee]
        for follower, followee in zip(dataset.follower_idx, dataset.followee_idx, strict=True)
        if follower == reader
    }
    page = await api.timeline.GetHomeTimeline(
        timeline_pb2.GetHomeTimelineRequest(user_id=reader_id, limit=20), metadata=as_user(reader_id)
    )
    assert page.tweets
    assert {tweet.user_id for tweet in page.tweets} <= followees | {reader_id}
    newest = max(
        tweet_id
        for tweet_id, author in zip(dataset.tweet_ids, dataset.tweet_author, strict=True)
        if dataset.user_ids[author] in followees
    )
    assert page.tweets[0].tweet_id == newest
