"""The synthetic graph: seeded, power-law-ish, with exactly the celebrities asked for."""

from __future__ import annotations

import statistics

import pytest

from bench.graphgen import BENCH_NODE, Dataset, generate
from chirp_core.snowflake import NODE_BITS, SEQUENCE_BITS

NOW_MS = 1_760_000_000_000


def small(seed: int = 7, **changes: object) -> Dataset:
    options: dict[str, object] = {
        "users": 2_000,
        "median_followees": 30.0,
        "followee_sigma": 0.9,
        "celebrities": 3,
        "threshold": 800,
        "tweets_per_user": 3.0,
        "celebrity_tweets": 10,
        "history_days": 7.0,
        "seed": seed,
        "now_ms": NOW_MS,
    }
    options.update(changes)
    return generate(**options)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def dataset() -> Dataset:
    return small()


def test_the_same_seed_gives_the_same_graph(dataset: Dataset) -> None:
    again = small()
    assert again.follower_idx == dataset.follower_idx
    assert again.followee_idx == dataset.followee_idx
    assert again.tweet_ids == dataset.tweet_ids
    assert again.tweet_text == dataset.tweet_text
    other = small(seed=8)
    assert other.followee_idx != dataset.followee_idx


def test_followers_follow_a_power_law_with_the_celebrities_on_top(dataset: Dataset) -> None:
    followers = dataset.follower_counts()
    shape = dataset.shape()
    # Exactly the generated celebrities are above the threshold; every other account stays below.
    assert [i for i, count in enumerate(followers) if count > dataset.threshold] == [0, 1, 2]
    assert shape["celebrities"] == 3
    assert shape["ordinary_followers_max"] < dataset.threshold
    # A long tail: the most followed ordinary account has many times the median's followers, and
    # the top tenth of ordinary accounts holds far more than a tenth of the ordinary edges.
    ordinary = sorted(followers[dataset.celebrities :], reverse=True)
    median = statistics.median(ordinary)
    assert ordinary[0] > 10 * median
    top = ordinary[: len(ordinary) // 10]
    assert sum(top) > 0.3 * sum(ordinary)


def test_users_follow_about_the_median_asked_for(dataset: Dataset) -> None:
    followees = dataset.followee_counts()
    assert 25 <= statistics.median(followees) <= 35
    assert min(followees) >= 1


def test_edges_are_unique_and_never_self_follows(dataset: Dataset) -> None:
    edges = list(zip(dataset.follower_idx, dataset.followee_idx, strict=True))
    assert len(edges) == len(set(edges))
    assert all(follower != followee for follower, followee in edges)


def test_ids_are_increasing_snowflakes_of_the_bench_node(dataset: Dataset) -> None:
    ids = list(dataset.tweet_ids)
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert len(set(dataset.user_ids)) == dataset.users
    node = (ids[0] >> SEQUENCE_BITS) & ((1 << NODE_BITS) - 1)
    assert node == BENCH_NODE
    assert all(0 < len(text) <= 280 for text in dataset.tweet_text)
    # Celebrities write the history they were given; everyone's tweets are in the past.
    authors = list(dataset.tweet_author)
    assert authors.count(0) == 10
    assert max(dataset.tweet_ms) < NOW_MS


def test_too_few_users_for_the_celebrities_is_refused() -> None:
    from bench.config import FULL

    with pytest.raises(ValueError, match="threshold"):
        FULL.__class__(users=1_000, celebrity_threshold=1_000).validate()
