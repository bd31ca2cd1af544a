"""The SQL of media (tables tweets.media and tweets.media_outbox).

MediaStorage holds the statements that stand alone; the module functions run inside a
transaction of tweets_svc.storage.TweetStorage: binding media to a new tweet, letting go of a
deleted tweet's media, and loading the media of the tweets a read returns.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import class_row
from psycopg_pool import AsyncConnectionPool

from chirp_core.db import Connections
from chirp_core.errors import FailedPrecondition
from tweets_svc.models import Media, MediaDeletion, MediaRecord, Tweet

_RECORD_COLUMNS = "media_id, user_id, object_key, content_type, size_bytes, state, tweet_id, created_at"


class MediaStorage:
    def __init__(self, pool: AsyncConnectionPool) -> None:
        # A connection in autocommit, or a transaction when the caller opens one on it.
        self._connection = Connections(pool, "tweets").read

    async def insert_pending(
        self, media_id: int, user_id: int, object_key: str, content_type: str, size_bytes: int
    ) -> None:
        async with self._connection() as conn:
            await conn.execute(
                "INSERT INTO tweets.media (media_id, user_id, object_key, content_type, size_bytes, state)"
                " VALUES (%s, %s, %s, %s, %s, 'pending')",
                (media_id, user_id, object_key, content_type, size_bytes),
            )

    async def get_media(self, media_ids: Sequence[int]) -> dict[int, MediaRecord]:
        async with self._connection() as conn:
            cur = conn.cursor(row_factory=class_row(MediaRecord))
            await cur.execute(
                f"SELECT {_RECORD_COLUMNS} FROM tweets.media WHERE media_id = ANY(%s)", (list(media_ids),)
            )
            return {record.media_id: record for record in await cur.fetchall()}

    async def expire_pending(self, older_than_seconds: float, limit: int) -> int:
        """Forget up to `limit` uploads pending for longer than that, queueing their objects for
        deletion; how many. A CreateTweet binding one of them at the same moment either wins
        (and the row is no longer pending) or finds it gone."""
        async with self._connection() as conn, conn.transaction():
            cur = await conn.execute(
                "WITH expired AS ("
                " DELETE FROM tweets.media WHERE media_id IN ("
                "  SELECT media_id FROM tweets.media"
                "  WHERE state = 'pending' AND created_at < now() - make_interval(secs => %s)"
                "  ORDER BY created_at LIMIT %s FOR UPDATE SKIP LOCKED)"
                " AND state = 'pending'"
                " RETURNING media_id, object_key)"
                " INSERT INTO tweets.media_outbox (event_type, media_id, object_key)"
                " SELECT 'media_deleted', media_id, object_key FROM expired",
                (older_than_seconds, limit),
            )
            return cur.rowcount

    async def claim_deletions(self, limit: int, lease_seconds: float) -> list[MediaDeletion]:
        """Up to `limit` queued deletions, hidden from other janitors for `lease_seconds`: long
        enough to do them, and the retry delay when this janitor fails."""
        async with self._connection() as conn:
            cur = conn.cursor(row_factory=class_row(MediaDeletion))
            await cur.execute(
                "UPDATE tweets.media_outbox SET available_at = now() + make_interval(secs => %s),"
                " attempts = attempts + 1"
                " WHERE id IN (SELECT id FROM tweets.media_outbox WHERE available_at <= now()"
                "  ORDER BY available_at, id LIMIT %s FOR UPDATE SKIP LOCKED)"
                " RETURNING id, media_id, object_key, attempts",
                (lease_seconds, limit),
            )
            return await cur.fetchall()

    async def finish_deletions(self, ids: Sequence[int]) -> None:
        if not ids:
            return
        async with self._connection() as conn:
            await conn.execute("DELETE FROM tweets.media_outbox WHERE id = ANY(%s)", (list(ids),))


async def bind_media(conn: AsyncConnection[Any], tweet: Tweet) -> None:
    """Attach the tweet's media to it, in its transaction. Only rows of the author still pending
    are taken (the row lock orders concurrent binds): a media ID another tweet took first fails
    the whole create."""
    if not tweet.media:
        return
    cur = await conn.execute(
        "UPDATE tweets.media m SET state = 'attached', tweet_id = %(tweet_id)s, position = a.position,"
        " width = a.width, height = a.height, attached_at = now()"
        " FROM unnest(%(ids)s::bigint[], %(positions)s::smallint[], %(widths)s::int[], %(heights)s::int[])"
        " AS a(media_id, position, width, height)"
        " WHERE m.media_id = a.media_id AND m.user_id = %(user_id)s AND m.state = 'pending'"
        " RETURNING m.media_id",
        {
            "tweet_id": tweet.tweet_id,
            "user_id": tweet.user_id,
            "ids": [m.media_id for m in tweet.media],
            "positions": list(range(len(tweet.media))),
            "widths": [m.width for m in tweet.media],
            "heights": [m.height for m in tweet.media],
        },
    )
    bound = {row[0] for row in await cur.fetchall()}
    for index, media in enumerate(tweet.media):
        if media.media_id not in bound:
            raise FailedPrecondition(
                f"media_ids[{index}]: media {media.media_id} is already attached to a tweet",
                reason="MEDIA_ALREADY_ATTACHED",
                metadata={"field": "media_ids", "media_id": str(media.media_id)},
            )


async def release_media(conn: AsyncConnection[Any], tweet_id: int) -> None:
    """In a tweet's delete transaction: drop its media rows and queue their objects for deletion."""
    await conn.execute(
        "WITH gone AS (DELETE FROM tweets.media WHERE tweet_id = %s RETURNING media_id, object_key)"
        " INSERT INTO tweets.media_outbox (event_type, media_id, object_key)"
        " SELECT 'media_deleted', media_id, object_key FROM gone",
        (tweet_id,),
    )


async def with_media(conn: AsyncConnection[Any], tweets: list[Tweet]) -> list[Tweet]:
    """The tweets with their media filled in, in one query for all of them."""
    if not tweets:
        return tweets
    cur = await conn.execute(
        "SELECT tweet_id, media_id, object_key, content_type, size_bytes, width, height"
        " FROM tweets.media WHERE tweet_id = ANY(%s) ORDER BY tweet_id, position",
        ([t.tweet_id for t in tweets],),
    )
    found: dict[int, list[Media]] = {}
    for tweet_id, *fields in await cur.fetchall():
        found.setdefault(tweet_id, []).append(Media(*fields))
    if not found:
        return tweets
    return [dataclasses.replace(t, media=tuple(found.get(t.tweet_id, ()))) for t in tweets]
