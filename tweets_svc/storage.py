"""Every SQL statement of the tweets service (schema `tweets`) but media's (tweets_svc.media.storage)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import AsyncConnection
from psycopg.rows import class_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from chirp_core.db import Connections, Replicas
from chirp_core.write_marks import WriteMarks
from tweets_svc.media.storage import bind_media, release_media, with_media
from tweets_svc.models import PriorCreate, Tweet, TweetVersion

_COLUMNS = (
    "tweet_id, user_id, content, reply_to, reply_to_user_id, conversation_id, version, created_at, edited_at"
)
_IDEMPOTENCY_INDEX = "tweets_user_idempotency_key"
# No tweet ID reaches this: the upper bound when a request sets none.
_NO_MAX_ID = 2**63 - 1


class TweetStorage:
    def __init__(
        self, pool: AsyncConnectionPool, replicas: Replicas | None = None, marks: WriteMarks | None = None
    ) -> None:
        connections = Connections(pool, "tweets", replicas, marks)
        self._read = connections.read
        self._write = connections.write
        self._stale = connections.run_stale
        self._is_replica = connections.is_replica
        # The reads a timeline keeps the result of (its cold rebuild, a celebrity's recent set).
        self._fresh = connections.run_fresh

    async def get_tweet(self, tweet_id: int) -> Tweet | None:
        """The live tweet, or None when it is unknown or deleted."""
        async with self._read() as conn:
            cur = conn.cursor(row_factory=class_row(Tweet))
            await cur.execute(
                f"SELECT {_COLUMNS} FROM tweets.tweets WHERE tweet_id = %s AND deleted_at IS NULL",
                (tweet_id,),
            )
            tweet = await cur.fetchone()
            return None if tweet is None else (await with_media(conn, [tweet]))[0]

    async def tweet_exists(self, tweet_id: int) -> bool:
        """Whether the ID was ever a tweet, deleted or not."""
        async with self._read() as conn:
            cur = await conn.execute("SELECT 1 FROM tweets.tweets WHERE tweet_id = %s", (tweet_id,))
            return await cur.fetchone() is not None

    async def find_prior_create(self, user_id: int, idempotency_key: str) -> PriorCreate | None:
        async with self._read() as conn:
            cur = conn.cursor(row_factory=class_row(PriorCreate))
            await cur.execute(
                "SELECT t.tweet_id, t.reply_to, v.content AS first_content,"
                " t.deleted_at IS NOT NULL AS deleted"
                " FROM tweets.tweets t"
                " LEFT JOIN tweets.tweet_versions v ON v.tweet_id = t.tweet_id AND v.version = 1"
                " WHERE t.user_id = %s AND t.idempotency_key = %s",
                (user_id, idempotency_key),
            )
            return await cur.fetchone()

    async def insert_tweet(self, tweet: Tweet, idempotency_key: str | None) -> bool:
        """Insert a new tweet with its version 1 and its tweet_created event.

        False when the author already used the idempotency key (a concurrent create won): nothing
        is written then.
        """
        try:
            async with self._write() as conn:
                await conn.execute(
                    f"INSERT INTO tweets.tweets ({_COLUMNS}, idempotency_key, has_media)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                    (
                        tweet.tweet_id,
                        tweet.user_id,
                        tweet.content,
                        tweet.reply_to,
                        tweet.reply_to_user_id,
                        tweet.conversation_id,
                        tweet.version,
                        tweet.created_at,
                        tweet.edited_at,
                        idempotency_key,
                        bool(tweet.media),
                    ),
                )
                await conn.execute(
                    "INSERT INTO tweets.tweet_versions (tweet_id, version, content, created_at)"
                    " VALUES (%s, %s, %s, %s)",
                    (tweet.tweet_id, tweet.version, tweet.content, tweet.created_at),
                )
                await _add_event(conn, "tweet_created", tweet)
                await bind_media(conn, tweet)
        except psycopg.errors.UniqueViolation as exc:
            if exc.diag.constraint_name == _IDEMPOTENCY_INDEX:
                return False
            raise
        return True

    async def edit_tweet(self, tweet_id: int, content: str) -> Tweet | None:
        """Write a new version with its tweet_edited event; None when the tweet is not live."""
        async with self._write() as conn:
            cur = conn.cursor(row_factory=class_row(Tweet))
            await cur.execute(
                "UPDATE tweets.tweets SET content = %s, version = version + 1, edited_at = now()"
                f" WHERE tweet_id = %s AND deleted_at IS NULL RETURNING {_COLUMNS}",
                (content, tweet_id),
            )
            tweet = await cur.fetchone()
            if tweet is None:
                return None
            await conn.execute(
                "INSERT INTO tweets.tweet_versions (tweet_id, version, content, created_at)"
                " VALUES (%s, %s, %s, %s)",
                (tweet.tweet_id, tweet.version, tweet.content, tweet.edited_at),
            )
            await _add_event(conn, "tweet_edited", tweet)
            return (await with_media(conn, [tweet]))[0]

    async def delete_tweet(self, tweet_id: int) -> bool:
        """Blank the tweet, drop its history, record tweet_deleted; False when it is not live."""
        async with self._write() as conn:
            cur = conn.cursor(row_factory=class_row(Tweet))
            await cur.execute(
                "UPDATE tweets.tweets SET content = '', deleted_at = now()"
                f" WHERE tweet_id = %s AND deleted_at IS NULL RETURNING {_COLUMNS}",
                (tweet_id,),
            )
            tweet = await cur.fetchone()
            if tweet is None:
                return False
            await conn.execute("DELETE FROM tweets.tweet_versions WHERE tweet_id = %s", (tweet_id,))
            await _add_event(conn, "tweet_deleted", tweet)
            await release_media(conn, tweet_id)
            return True

    async def list_versions(self, tweet_id: int) -> list[TweetVersion]:
        """Every version of a live tweet, oldest first; empty when it is not live."""
        async with self._read() as conn:
            cur = conn.cursor(row_factory=class_row(TweetVersion))
            await cur.execute(
                "SELECT v.version, v.content, v.created_at FROM tweets.tweet_versions v"
                " JOIN tweets.tweets t ON t.tweet_id = v.tweet_id"
                " WHERE v.tweet_id = %s AND t.deleted_at IS NULL ORDER BY v.version",
                (tweet_id,),
            )
            return await cur.fetchall()

    async def list_replies(self, tweet_id: int, after_id: int, limit: int) -> list[Tweet]:
        """Live direct replies with an ID above after_id, oldest first (a replica's, with the
        reader's own replies)."""

        async def query(conn: AsyncConnection[Any]) -> list[Tweet]:
            cur = conn.cursor(row_factory=class_row(Tweet))
            await cur.execute(
                f"SELECT {_COLUMNS} FROM tweets.tweets"
                " WHERE reply_to = %s AND tweet_id > %s AND deleted_at IS NULL"
                " ORDER BY tweet_id LIMIT %s",
                (tweet_id, after_id, limit),
            )
            return await with_media(conn, await cur.fetchall())

        return await self._stale(query)

    async def get_tweets(self, tweet_ids: Sequence[int]) -> list[Tweet]:
        """The live tweets among tweet_ids, newest first.

        Read from a replica where one may serve; the IDs it lacks are asked of the primary, since
        they may be younger than the replica (a timeline holds a tweet as soon as it is written)."""

        async def query(conn: AsyncConnection[Any], ids: list[int]) -> list[Tweet]:
            cur = conn.cursor(row_factory=class_row(Tweet))
            await cur.execute(
                f"SELECT {_COLUMNS} FROM tweets.tweets"
                " WHERE tweet_id = ANY(%s) AND deleted_at IS NULL ORDER BY tweet_id DESC",
                (ids,),
            )
            return await with_media(conn, await cur.fetchall())

        async def on_some_server(conn: AsyncConnection[Any]) -> tuple[list[Tweet], bool]:
            return await query(conn, wanted), self._is_replica(conn)

        wanted = list(tweet_ids)
        found, on_replica = await self._stale(on_some_server)
        missing = sorted(set(wanted) - {t.tweet_id for t in found})
        if not on_replica or not missing:
            return found
        async with self._read() as conn:
            found += await query(conn, missing)
        return sorted(found, key=lambda t: t.tweet_id, reverse=True)

    async def list_by_authors(
        self,
        author_ids: Sequence[int],
        max_id: int | None,
        min_id: int | None,
        limit: int,
        home_user_id: int | None = None,
    ) -> list[Tweet]:
        """The newest live tweets of the authors with min_id < tweet_id < max_id, newest first.

        With home_user_id, replies by others answering someone who is neither their own author,
        home_user_id nor one of the authors are left out, inside each author's probe so that a
        page stays full. That is the home timeline's reply rule, timeline_svc/visibility.py, for
        the pull path: keep the two in step (tests/timeline_svc/test_reply_rule.py checks them).
        """

        # One bounded index-only probe per author of tweets_by_author (at most `limit` entries
        # each), then the rows of the `limit` newest only: the cost follows the number of
        # authors and the page, not how many tweets the authors ever wrote.
        # From a replica once it has every tweet committed before the call: timelines keep it.
        async def query(conn: AsyncConnection[Any]) -> list[Tweet]:
            cur = conn.cursor(row_factory=class_row(Tweet))
            await cur.execute(
                "WITH page AS ("
                " SELECT recent.tweet_id FROM unnest(%(authors)s::bigint[]) AS author(user_id)"
                " CROSS JOIN LATERAL ("
                "  SELECT t.tweet_id FROM tweets.tweets t"
                "  WHERE t.user_id = author.user_id AND t.deleted_at IS NULL"
                "  AND t.tweet_id < %(max_id)s AND t.tweet_id > %(min_id)s"
                "  AND (%(home)s::bigint IS NULL OR t.user_id = %(home)s OR t.reply_to_user_id IS NULL"
                "   OR t.reply_to_user_id = t.user_id OR t.reply_to_user_id = %(home)s"
                "   OR t.reply_to_user_id = ANY(%(authors)s::bigint[]))"
                "  ORDER BY t.tweet_id DESC LIMIT %(limit)s"
                " ) recent"
                " ORDER BY recent.tweet_id DESC LIMIT %(limit)s)"
                f" SELECT {_COLUMNS} FROM tweets.tweets JOIN page USING (tweet_id)"
                " ORDER BY tweet_id DESC",
                {
                    "authors": list(author_ids),
                    "max_id": _NO_MAX_ID if max_id is None else max_id,
                    "min_id": 0 if min_id is None else min_id,
                    "limit": limit,
                    "home": home_user_id,
                },
            )
            return await with_media(conn, await cur.fetchall())

        return await self._fresh(query)


async def _add_event(conn: AsyncConnection[Any], event_type: str, tweet: Tweet) -> None:
    payload = {
        "tweet_id": tweet.tweet_id,
        "user_id": tweet.user_id,
        "reply_to": tweet.reply_to,
        "reply_to_user_id": tweet.reply_to_user_id,
        "conversation_id": tweet.conversation_id,
        "version": tweet.version,
    }
    await conn.execute(
        "INSERT INTO tweets.outbox (event_type, aggregate_id, payload) VALUES (%s, %s, %s)",
        (event_type, tweet.tweet_id, Jsonb(payload)),
    )
