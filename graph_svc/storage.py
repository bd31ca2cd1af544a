"""Every SQL statement of the graph service (schema `graph`)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import class_row
from psycopg_pool import AsyncConnectionPool

from chirp_core.db import Connections, Replicas
from chirp_core.errors import AlreadyExists, NotFound
from chirp_core.write_marks import WriteMarks
from graph_svc.models import (
    Credentials,
    EdgeUser,
    FollowEdge,
    Keyset,
    RefreshOutcome,
    RelationshipRow,
    Session,
    User,
)

_USER_COLUMNS = "user_id, handle, display_name, created_at, follower_count, following_count"
_HANDLE_CONSTRAINT = "users_handle_key"
_SESSION_COLUMNS = "session_id, user_id, created_at, expires_at, revoked_at"
_FOLLOWER_CONSTRAINT = "follows_follower_fkey"


class GraphStorage:
    def __init__(
        self, pool: AsyncConnectionPool, replicas: Replicas | None = None, marks: WriteMarks | None = None
    ) -> None:
        connections = Connections(pool, "graph", replicas, marks)
        self._read = connections.read
        self._write = connections.write
        self._stale = connections.run_stale
        # The reads a timeline keeps the result of (its cold rebuild, the fan-out's recipients).
        self._fresh = connections.run_fresh
        self._wrote = connections.wrote

    # Accounts and sessions.

    async def insert_user(self, user_id: int, handle: str, display_name: str, password_hash: str) -> User:
        try:
            async with self._write() as conn:
                cur = conn.cursor(row_factory=class_row(User))
                await cur.execute(
                    "INSERT INTO graph.users (user_id, handle, display_name, password_hash)"
                    f" VALUES (%s, %s, %s, %s) RETURNING {_USER_COLUMNS}",
                    (user_id, handle, display_name, password_hash),
                )
                user = await cur.fetchone()
        except psycopg.errors.UniqueViolation as exc:
            if exc.diag.constraint_name == _HANDLE_CONSTRAINT:
                raise AlreadyExists(
                    f"handle {handle} is taken", reason="HANDLE_TAKEN", metadata={"handle": handle}
                ) from None
            raise
        assert user is not None
        return user

    async def get_user(self, user_id: int) -> User | None:
        async with self._read() as conn:
            cur = conn.cursor(row_factory=class_row(User))
            await cur.execute(f"SELECT {_USER_COLUMNS} FROM graph.users WHERE user_id = %s", (user_id,))
            return await cur.fetchone()

    async def get_users(self, user_ids: Sequence[int]) -> list[User]:
        async with self._read() as conn:
            cur = conn.cursor(row_factory=class_row(User))
            await cur.execute(
                f"SELECT {_USER_COLUMNS} FROM graph.users WHERE user_id = ANY(%s)", (list(user_ids),)
            )
            return await cur.fetchall()

    async def user_exists(self, user_id: int) -> bool:
        async with self._read() as conn:
            cur = await conn.execute("SELECT 1 FROM graph.users WHERE user_id = %s", (user_id,))
            return await cur.fetchone() is not None

    async def get_credentials(self, handle: str) -> Credentials | None:
        async with self._read() as conn:
            cur = conn.cursor(row_factory=class_row(Credentials))
            await cur.execute("SELECT user_id, password_hash FROM graph.users WHERE handle = %s", (handle,))
            return await cur.fetchone()

    async def insert_session(self, session: Session, refresh_hash: bytes) -> None:
        """Store a login, dropping the user's expired and revoked ones so the table does not grow
        forever."""
        async with self._write() as conn:
            await conn.execute(
                "DELETE FROM graph.sessions"
                " WHERE user_id = %s AND (expires_at <= %s OR revoked_at IS NOT NULL)",
                (session.user_id, session.created_at),
            )
            await conn.execute(
                "INSERT INTO graph.sessions"
                " (session_id, user_id, refresh_hash, created_at, refreshed_at, expires_at)"
                " VALUES (%s, %s, %s, %s, %s, %s)",
                (
                    session.session_id,
                    session.user_id,
                    refresh_hash,
                    session.created_at,
                    session.created_at,
                    session.expires_at,
                ),
            )

    async def refresh_session(
        self, old_hash: bytes, new_hash: bytes, now: datetime, expires_at: datetime
    ) -> tuple[RefreshOutcome, Session | None]:
        """Swap the session's refresh token old_hash for new_hash, remembering old_hash as used.

        A used token presented again revokes its session (committed, even though the call fails).
        Two refreshes racing with one token serialise on the session's row: the second no longer
        finds it current, finds it used, and revokes the session."""
        async with self._write() as conn:
            cur = conn.cursor(row_factory=class_row(Session))
            await cur.execute(
                f"SELECT {_SESSION_COLUMNS} FROM graph.sessions WHERE refresh_hash = %s FOR UPDATE",
                (old_hash,),
            )
            session = await cur.fetchone()
            if session is None:
                revoked = await conn.execute(
                    "UPDATE graph.sessions SET revoked_at = coalesce(revoked_at, %s) WHERE session_id ="
                    " (SELECT session_id FROM graph.used_refresh_tokens WHERE refresh_hash = %s)"
                    " RETURNING session_id",
                    (now, old_hash),
                )
                reused = await revoked.fetchone() is not None
                return (RefreshOutcome.REUSED if reused else RefreshOutcome.UNKNOWN), None
            if session.revoked_at is not None:
                return RefreshOutcome.REVOKED, session
            if session.expires_at <= now:
                return RefreshOutcome.EXPIRED, session
            await conn.execute(
                "INSERT INTO graph.used_refresh_tokens (refresh_hash, session_id) VALUES (%s, %s)",
                (old_hash, session.session_id),
            )
            await cur.execute(
                "UPDATE graph.sessions SET refresh_hash = %s, refreshed_at = %s, expires_at = %s"
                f" WHERE session_id = %s RETURNING {_SESSION_COLUMNS}",
                (new_hash, now, expires_at, session.session_id),
            )
            rotated = await cur.fetchone()
        assert rotated is not None
        return RefreshOutcome.ROTATED, rotated

    async def revoke_session(self, session_id: int, user_id: int, now: datetime) -> bool:
        """Revoke the user's session; False when the user has no such session."""
        async with self._write() as conn:
            cur = await conn.execute(
                "UPDATE graph.sessions SET revoked_at = coalesce(revoked_at, %s)"
                " WHERE session_id = %s AND user_id = %s RETURNING 1",
                (now, session_id, user_id),
            )
            return await cur.fetchone() is not None

    # The follow graph.

    async def add_follow(self, follower_id: int, followee_id: int) -> bool:
        """Add the edge, count it and add its `followed` event; False (and no event) when it
        already existed."""
        try:
            async with self._read() as conn:
                cur = await conn.execute(_FOLLOW, {"follower": follower_id, "followee": followee_id})
                added = await cur.fetchone() is not None
        except psycopg.errors.ForeignKeyViolation as exc:
            missing = follower_id if exc.diag.constraint_name == _FOLLOWER_CONSTRAINT else followee_id
            raise NotFound("user", missing) from None
        await self._wrote()
        return added

    async def remove_follow(self, follower_id: int, followee_id: int) -> bool:
        """Remove the edge and add its `unfollowed` event; False (and no event) when there was none."""
        async with self._read() as conn:
            cur = await conn.execute(_UNFOLLOW, {"follower": follower_id, "followee": followee_id})
            removed = await cur.fetchone() is not None
        await self._wrote()
        return removed

    async def list_followers(self, user_id: int, after: Keyset, limit: int) -> list[EdgeUser]:
        """Followers of user_id strictly after the keyset position, newest edge first."""
        return await self._list_edge_users("follower_id", "followee_id", user_id, after, limit)

    async def list_following(self, user_id: int, after: Keyset, limit: int) -> list[EdgeUser]:
        """Followees of user_id strictly after the keyset position, newest edge first."""
        return await self._list_edge_users("followee_id", "follower_id", user_id, after, limit)

    async def _list_edge_users(
        self, other: str, this: str, user_id: int, after: Keyset, limit: int
    ) -> list[EdgeUser]:
        # A list may be a little stale (a replica's), but never without its reader's own follows.
        async def query(conn: psycopg.AsyncConnection[Any]) -> list[EdgeUser]:
            cur = conn.cursor(row_factory=class_row(EdgeUser))
            await cur.execute(
                "SELECT u.user_id, u.handle, u.display_name, u.created_at, u.follower_count,"
                " u.following_count, f.created_at AS followed_at"
                f" FROM graph.follows f JOIN graph.users u ON u.user_id = f.{other}"
                f" WHERE f.{this} = %s AND (f.created_at, f.{other}) < (%s, %s)"
                f" ORDER BY f.created_at DESC, f.{other} DESC LIMIT %s",
                (user_id, *after, limit),
            )
            return await cur.fetchall()

        return await self._stale(query)

    async def follower_edges(self, followee_id: int, after: Keyset, limit: int) -> list[FollowEdge]:
        """One batch of edges into followee_id strictly after the keyset position, newest first."""

        async def query(conn: psycopg.AsyncConnection[Any]) -> list[FollowEdge]:
            cur = conn.cursor(row_factory=class_row(FollowEdge))
            await cur.execute(
                "SELECT follower_id, followee_id, created_at FROM graph.follows"
                " WHERE followee_id = %s AND (created_at, follower_id) < (%s, %s)"
                " ORDER BY created_at DESC, follower_id DESC LIMIT %s",
                (followee_id, *after, limit),
            )
            return await cur.fetchall()

        return await self._fresh(query)

    async def followers_among(self, followee_id: int, candidate_ids: Sequence[int]) -> list[int]:
        """The candidates who follow followee_id, ascending: one probe of the primary key each."""

        async def query(conn: psycopg.AsyncConnection[Any]) -> list[int]:
            cur = await conn.execute(
                "SELECT follower_id FROM graph.follows"
                " WHERE follower_id = ANY(%s) AND followee_id = %s ORDER BY follower_id",
                (list(candidate_ids), followee_id),
            )
            return [row[0] for row in await cur.fetchall()]

        return await self._fresh(query)

    async def followee_ids(self, follower_id: int) -> list[int]:
        async def query(conn: psycopg.AsyncConnection[Any]) -> list[int]:
            cur = await conn.execute(
                "SELECT followee_id FROM graph.follows WHERE follower_id = %s", (follower_id,)
            )
            return [row[0] for row in await cur.fetchall()]

        return await self._fresh(query)

    async def relationship(self, user_id: int, other_user_id: int) -> RelationshipRow:
        async with self._read() as conn:
            cur = conn.cursor(row_factory=class_row(RelationshipRow))
            await cur.execute(
                "SELECT"
                " EXISTS (SELECT 1 FROM graph.follows WHERE follower_id = %(a)s AND followee_id = %(b)s)"
                "  AS following,"
                " EXISTS (SELECT 1 FROM graph.follows WHERE follower_id = %(b)s AND followee_id = %(a)s)"
                "  AS followed_by,"
                " ARRAY(SELECT user_id FROM graph.users WHERE user_id IN (%(a)s, %(b)s)) AS known_ids",
                {"a": user_id, "b": other_user_id},
            )
            row = await cur.fetchone()
        assert row is not None
        return row


def _edge_statement(change: str, delta: int, event_type: str) -> str:
    """One statement, so one round trip and, in autocommit, its own transaction: `change` (an
    INSERT or DELETE of the edge RETURNING a row when it changed it), then, only when it did,
    both users' counts moved by delta and the edge's event added to the outbox. Returns a row
    exactly when the edge changed.

    Both user rows are locked in ID order before they are updated, so that A following B while B
    follows A cannot deadlock. A celebrity's row is a hot spot: its follows serialise on it, one
    short update each. The event is keyed by the follower: the home timeline it changes. The
    followee's follower count after the change tells the workers when someone becomes, or stops
    being, a celebrity.
    """
    return f"""
        WITH changed AS ({change}),
        counted AS (
            UPDATE graph.users AS u
            SET following_count = u.following_count
                    + CASE WHEN u.user_id = %(follower)s THEN {delta} ELSE 0 END,
                follower_count = u.follower_count
                    + CASE WHEN u.user_id = %(followee)s THEN {delta} ELSE 0 END
            FROM (
                SELECT user_id FROM graph.users
                WHERE user_id IN (%(follower)s, %(followee)s) AND EXISTS (SELECT FROM changed)
                ORDER BY user_id
                FOR NO KEY UPDATE
            ) AS locked
            WHERE u.user_id = locked.user_id
            RETURNING u.user_id, u.follower_count
        )
        INSERT INTO graph.outbox (event_type, aggregate_id, payload)
        SELECT '{event_type}', %(follower)s, jsonb_build_object(
            'follower_id', %(follower)s,
            'followee_id', %(followee)s,
            'followee_follower_count', counted.follower_count
        )
        FROM counted
        WHERE counted.user_id = %(followee)s
        RETURNING 1
    """


_FOLLOW = _edge_statement(
    "INSERT INTO graph.follows (follower_id, followee_id) VALUES (%(follower)s, %(followee)s)"
    " ON CONFLICT DO NOTHING RETURNING 1",
    +1,
    "followed",
)
_UNFOLLOW = _edge_statement(
    "DELETE FROM graph.follows WHERE follower_id = %(follower)s AND followee_id = %(followee)s RETURNING 1",
    -1,
    "unfollowed",
)
