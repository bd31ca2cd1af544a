"""The synthetic dataset: a follow graph with a power-law follower distribution, a handful of
celebrities above the celebrity threshold, and a tweet history. Everything but the wall-clock
anchor of the IDs comes from one seed, so a seed always gives the same graph.

Shape. Each user follows a log-normal number of accounts (median `median_followees`). A
celebrity is followed by a uniform random sample of 1.05x to 1.5x the threshold of users. The
other followees are drawn from a Zipf-like popularity (weight 1 / (rank + ZIPF_SHIFT)), which
gives the long tail of follower counts real networks have; no ordinary account may reach
ORDINARY_CAP of the threshold, so exactly the generated celebrities are celebrities.
"""

from __future__ import annotations

import itertools
import math
import random
import statistics
from array import array
from collections.abc import Iterator
from dataclasses import dataclass

from chirp_core.snowflake import EPOCH_MS, NODE_BITS, SEQUENCE_BITS

# The Snowflake node of every generated ID; the stack's own processes use nodes from 0 upwards.
BENCH_NODE = 1023
ZIPF_SHIFT = 50
ORDINARY_CAP = 0.9
_WORDS = (
    "coffee",
    "morning",
    "build",
    "ship",
    "deploy",
    "rain",
    "train",
    "music",
    "garden",
    "river",
    "chirp",
    "timeline",
    "redis",
    "postgres",
    "python",
    "cache",
    "latency",
    "tea",
    "bread",
    "weekend",
    "paper",
    "review",
    "sunset",
    "code",
    "test",
    "fix",
    "idea",
    "launch",
    "city",
    "walk",
    "book",
    "film",
    "dinner",
    "queue",
    "shard",
    "replica",
    "kernel",
    "cores",
    "fanout",
    "hybrid",
    "celebrity",
    "follow",
    "reply",
    "edit",
)


@dataclass
class Dataset:
    """Users are indexed 0..n-1; celebrities are 0..celebrities-1."""

    seed: int
    user_ids: array[int]
    handles: list[str]
    created_ms: array[int]
    # Edge i: follower_idx[i] follows followee_idx[i], since follow_ms[i].
    follower_idx: array[int]
    followee_idx: array[int]
    follow_ms: array[int]
    celebrities: int
    threshold: int
    # Tweets in ID (time) order.
    tweet_ids: array[int]
    tweet_author: array[int]
    tweet_ms: array[int]
    tweet_text: list[str]

    @property
    def users(self) -> int:
        return len(self.user_ids)

    def follower_counts(self) -> list[int]:
        counts = [0] * self.users
        for followee in self.followee_idx:
            counts[followee] += 1
        return counts

    def followee_counts(self) -> list[int]:
        counts = [0] * self.users
        for follower in self.follower_idx:
            counts[follower] += 1
        return counts

    def shape(self) -> dict[str, float | int]:
        """The figures the report prints about the graph."""
        followers = self.follower_counts()
        followees = self.followee_counts()
        ordinary = followers[self.celebrities :]
        return {
            "users": self.users,
            "follows": len(self.follower_idx),
            "tweets": len(self.tweet_ids),
            "celebrities": sum(1 for count in followers if count > self.threshold),
            "celebrity_threshold": self.threshold,
            "followees_median": statistics.median(followees),
            "followees_max": max(followees),
            "followers_median": statistics.median(followers),
            "followers_p99": sorted(followers)[int(0.99 * (self.users - 1))],
            "followers_max": max(followers),
            "ordinary_followers_max": max(ordinary) if ordinary else 0,
            "celebrity_followers_min": min(followers[: self.celebrities]) if self.celebrities else 0,
        }


def snowflake(ms: int, sequence: int) -> int:
    return ((ms - EPOCH_MS) << (NODE_BITS + SEQUENCE_BITS)) | (BENCH_NODE << SEQUENCE_BITS) | sequence


def generate(
    *,
    users: int,
    median_followees: float,
    followee_sigma: float,
    celebrities: int,
    threshold: int,
    tweets_per_user: float,
    celebrity_tweets: int,
    history_days: float,
    seed: int,
    now_ms: int,
    handle_prefix: str = "bench_",
) -> Dataset:
    rng = random.Random(seed)
    history_ms = int(history_days * 86_400_000)
    start_ms = now_ms - 3 * history_ms
    # One millisecond apart, so user IDs are distinct Snowflakes at sequence 0.
    created = array("q", (start_ms + index for index in range(users)))
    user_ids = array("q", (snowflake(ms, 0) for ms in created))
    handles = [f"{handle_prefix}{index}" for index in range(users)]

    follower_idx, followee_idx = _follow_graph(
        rng, users, median_followees, followee_sigma, celebrities, threshold
    )
    follow_ms = array("q", (rng.randint(start_ms + users, now_ms - 60_000) for _ in follower_idx))

    counts = [
        celebrity_tweets if index < celebrities else int(rng.expovariate(1.0 / tweets_per_user))
        for index in range(users)
    ]
    authors = [author for author, count in enumerate(counts) for _ in range(count)]
    moments = [rng.randint(now_ms - history_ms, now_ms - 60_000) for _ in authors]
    order = sorted(range(len(authors)), key=moments.__getitem__)
    tweet_ms = array("q", (moments[i] for i in order))
    tweet_author = array("q", (authors[i] for i in order))
    tweet_ids = array("q", _ids_in_order(tweet_ms))
    texts = [_text(rng, number) for number in range(len(tweet_ids))]
    return Dataset(
        seed=seed,
        user_ids=user_ids,
        handles=handles,
        created_ms=created,
        follower_idx=follower_idx,
        followee_idx=followee_idx,
        follow_ms=follow_ms,
        celebrities=celebrities,
        threshold=threshold,
        tweet_ids=tweet_ids,
        tweet_author=tweet_author,
        tweet_ms=tweet_ms,
        tweet_text=texts,
    )


def _follow_graph(
    rng: random.Random, users: int, median: float, sigma: float, celebrities: int, threshold: int
) -> tuple[array[int], array[int]]:
    wanted = [
        max(1, min(users - 1, round(rng.lognormvariate(math.log(median), sigma)))) for _ in range(users)
    ]
    followees: list[set[int]] = [set() for _ in range(users)]
    for celebrity in range(celebrities):
        share = 1.05 + 0.45 * (celebrity / max(1, celebrities - 1))
        size = min(users - 1, int(threshold * share))
        others = [user for user in range(users) if user != celebrity]
        for follower in rng.sample(others, size):
            followees[follower].add(celebrity)

    ordinary = list(range(celebrities, users))
    cumulative = list(itertools.accumulate(1.0 / (rank + ZIPF_SHIFT) for rank in range(len(ordinary))))
    cap = int(threshold * ORDINARY_CAP)
    in_degree = [0] * users
    for user in range(users):
        chosen = followees[user]
        missing = wanted[user] - len(chosen)
        if missing <= 0:
            continue
        for _ in range(4):  # a few rounds of over-drawing fill almost every user's quota
            for followee in rng.choices(ordinary, cum_weights=cumulative, k=int(missing * 1.2) + 2):
                if followee != user and followee not in chosen and in_degree[followee] < cap:
                    chosen.add(followee)
                    in_degree[followee] += 1
                    missing -= 1
                    if missing == 0:
                        break
            if missing == 0:
                break
    follower_idx = array("q")
    followee_idx = array("q")
    for user in range(users):
        for followee in sorted(followees[user]):
            follower_idx.append(user)
            followee_idx.append(followee)
    return follower_idx, followee_idx


def _ids_in_order(moments: array[int]) -> Iterator[int]:
    """Snowflakes for sorted moments: several in one millisecond take increasing sequences."""
    last_ms, sequence = -1, 0
    for ms in moments:
        sequence = sequence + 1 if ms == last_ms else 0
        last_ms = ms
        yield snowflake(ms, sequence)


def _text(rng: random.Random, number: int) -> str:
    words = rng.choices(_WORDS, k=rng.randint(6, 22))
    return f"{' '.join(words)} #{number}"[:280]
