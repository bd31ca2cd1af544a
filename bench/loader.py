"""Bulk-load a Dataset with COPY straight into the services' tables: graph.users, graph.follows,
tweets.tweets and tweets.tweet_versions, in one transaction, then VACUUM ANALYZE them so the
planner and the index-only scans see the data as a long-running system would.

The schemas must be migrated already (the services migrate at start; `migrate_all` does it
without starting them). The follower / following count columns are filled when the graph's
migrations have them. Every account gets the same password hash: one argon2id hash made once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import psycopg
from argon2 import PasswordHasher

from bench.graphgen import Dataset

# Cheap argon2id parameters: still a real argon2id hash the graph service verifies, but a login
# costs about a millisecond, so logging the benchmark's accounts in does not dominate a phase.
BENCH_HASHER = PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1)
BENCH_PASSWORD = "bench password 1"
TABLES = ("graph.users", "graph.follows", "tweets.tweets", "tweets.tweet_versions")
MIGRATIONS = (("graph", "graph_svc.migrations"), ("tweets", "tweets_svc.migrations"))


@dataclass(frozen=True)
class LoadResult:
    rows: dict[str, int]
    seconds: float
    vacuum_seconds: float

    @property
    def rows_per_second(self) -> float:
        return sum(self.rows.values()) / self.seconds if self.seconds else 0.0


async def migrate_all(database_url: str) -> None:
    """Apply every service's migrations, as the services would at start."""
    from chirp_core.db import migrate

    for schema, package in MIGRATIONS:
        await migrate(database_url, schema, package)


def password_hash() -> str:
    return BENCH_HASHER.hash(BENCH_PASSWORD)


def load(
    database_url: str,
    dataset: Dataset,
    hashed_password: str,
    *,
    progress: Callable[[int], None] | None = None,
) -> LoadResult:
    """COPY the dataset in; `progress` is called with the rows written since its last call."""
    began = time.perf_counter()
    advance = progress or (lambda rows: None)
    rows: dict[str, int] = {}
    with psycopg.connect(database_url) as conn:
        with conn.transaction():
            rows["graph.users"] = _copy_users(conn, dataset, hashed_password, advance)
            rows["graph.follows"] = _copy_follows(conn, dataset, advance)
            rows["tweets.tweets"], rows["tweets.tweet_versions"] = _copy_tweets(conn, dataset, advance)
        loaded = time.perf_counter()
        conn.autocommit = True
        for table in TABLES:
            conn.execute(f"VACUUM (ANALYZE) {table}")
    return LoadResult(rows, loaded - began, time.perf_counter() - loaded)


def _has_counts(conn: psycopg.Connection[tuple[object, ...]]) -> bool:
    found = conn.execute(
        "SELECT count(*) FROM information_schema.columns WHERE table_schema = 'graph'"
        " AND table_name = 'users' AND column_name IN ('follower_count', 'following_count')"
    ).fetchone()
    return found is not None and found[0] == 2


def _at(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def _copy_users(
    conn: psycopg.Connection[tuple[object, ...]],
    dataset: Dataset,
    hashed_password: str,
    advance: Callable[[int], None],
) -> int:
    counts = _has_counts(conn)
    columns = "user_id, handle, display_name, password_hash, created_at"
    followers = dataset.follower_counts() if counts else []
    followees = dataset.followee_counts() if counts else []
    if counts:
        columns += ", follower_count, following_count"
    with conn.cursor().copy(f"COPY graph.users ({columns}) FROM STDIN") as copy:
        for index, user_id in enumerate(dataset.user_ids):
            handle = dataset.handles[index]
            row: tuple[object, ...] = (
                user_id,
                handle,
                handle,
                hashed_password,
                _at(dataset.created_ms[index]),
            )
            if counts:
                row += (followers[index], followees[index])
            copy.write_row(row)
    advance(dataset.users)
    return dataset.users


def _copy_follows(
    conn: psycopg.Connection[tuple[object, ...]], dataset: Dataset, advance: Callable[[int], None]
) -> int:
    ids = dataset.user_ids
    step = 50_000
    total = len(dataset.follower_idx)
    with conn.cursor().copy("COPY graph.follows (follower_id, followee_id, created_at) FROM STDIN") as copy:
        for start in range(0, total, step):
            for i in range(start, min(start + step, total)):
                copy.write_row(
                    (ids[dataset.follower_idx[i]], ids[dataset.followee_idx[i]], _at(dataset.follow_ms[i]))
                )
            advance(min(step, total - start))
    return total


def _copy_tweets(
    conn: psycopg.Connection[tuple[object, ...]], dataset: Dataset, advance: Callable[[int], None]
) -> tuple[int, int]:
    ids = dataset.user_ids
    total = len(dataset.tweet_ids)
    columns = "tweet_id, user_id, content, conversation_id, version, created_at"
    with conn.cursor().copy(f"COPY tweets.tweets ({columns}) FROM STDIN") as copy:
        for i, tweet_id in enumerate(dataset.tweet_ids):
            at = _at(dataset.tweet_ms[i])
            copy.write_row((tweet_id, ids[dataset.tweet_author[i]], dataset.tweet_text[i], tweet_id, 1, at))
    advance(total)
    versions = "tweet_id, version, content, created_at"
    with conn.cursor().copy(f"COPY tweets.tweet_versions ({versions}) FROM STDIN") as copy:
        for i, tweet_id in enumerate(dataset.tweet_ids):
            copy.write_row((tweet_id, 1, dataset.tweet_text[i], _at(dataset.tweet_ms[i])))
    advance(total)
    return total, total
