"""Every SQL statement of the graph service (schema `graph`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import AsyncConnection
from psycopg.rows import class_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from chirp_core.db import Connections
from chirp_core.errors import AlreadyExists, NotFound
from graph_svc.models import Credentials, EdgeUser, FollowEdge, Keyset, RelationshipRow, Session, User

_USER_COLUMNS = "user_id, handle, display_name, created_at, follower_count, following_count"
_HANDLE_CONSTRAINT = "users_handle_key"
_FOLLOWER_CONSTRAINT = "follows_follower_fkey"


class GraphStorage:
    def __init__(self, pool: AsyncConnectionPool) -> None:
        connections = Connections(pool, "graph")
        self._read = connections.read
        self._write = connections.write

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

    async def insert_session(self, token_hash: bytes, session: Session) -> None:
        """Store a login, dropping the user's expired ones so the table does not grow forever."""
        async with self._write() as conn:
            await conn.execute(
                "DELETE FROM graph.sessions WHERE user_id = %s AND expires_at <= %s",
                (session.user_id, session.created_at),
            )
            await conn.execute(
                "INSERT INTO graph.sessions (token_hash, user_id, created_at, expires_at)"
                " VALUES (%s, %s, %s, %s)",
                (token_hash, session.user_id, session.created_at, session.expires_at),
            )

    async def get_session(self, token_hash: bytes) -> Session | None:
        async with self._read() as conn:
            cur = conn.cursor(row_factory=class_row(Session))
            await cur.execute(
                "SELECT user_id, created_at, expires_at FROM graph.sessions WHERE token_hash = %s",
                (token_hash,),
            )
            return await cur.fetchone()

    # The follow graph.

    async def add_follow(self, follower_id: int, followee_id: int) -> bool:
        """Add the edge, count it and add its `followed` event; False (and no event) when it
        already existed."""
        try:
            async with self._write() as conn:
                cur = await conn.execute(
                    "INSERT INTO graph.follows (follower_id, followee_id) VALUES (%s, %s)"
                    " ON CONFLICT DO NOTHING RETURNING 1",
                    (follower_id, followee_id),
                )
                added = await cur.fetchone() is not None
                if added:
                    followers = await _count_edge(conn, follower_id, followee_id, +1)
                    await _add_event(conn, "followed", follower_id, followee_id, followers)
                return added
        except psycopg.errors.ForeignKeyViolation as exc:
            missing = follower_id if exc.diag.constraint_name == _FOLLOWER_CONSTRAINT else followee_id
            raise NotFound("user", missing) from None

    async def remove_follow(self, follower_id: int, followee_id: int) -> bool:
        """Remove the edge and add its `unfollowed` event; False (and no event) when there was none."""
        async with self._write() as conn:
            cur = await conn.execute(
                "DELETE FROM graph.follows WHERE follower_id = %s AND followee_id = %s RETURNING 1",
                (follower_id, followee_id),
            )
            removed = await cur.fetchone() is not None
            if removed:
                followers = await _count_edge(conn, follower_id, followee_id, -1)
                await _add_event(conn, "unfollowed", follower_id, followee_id, followers)
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
        async with self._read() as conn:
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

    async def follower_edges(self, followee_id: int, after: Keyset, limit: int) -> list[FollowEdge]:
        """One batch of edges into followee_id strictly after the keyset position, newest first."""
        async with self._read() as conn:
            cur = conn.cursor(row_factory=class_row(FollowEdge))
            await cur.execute(
                "SELECT follower_id, followee_id, created_at FROM graph.follows"
                " WHERE followee_id = %s AND (created_at, follower_id) < (%s, %s)"
                " ORDER BY created_at DESC, follower_id DESC LIMIT %s",
                (followee_id, *after, limit),
            )
            return await cur.fetchall()

    async def followers_among(self, followee_id: int, candidate_ids: Sequence[int]) -> list[int]:
        """The candidates who follow followee_id, ascending: one probe of the primary key each."""
        async with self._read() as conn:
            cur = await conn.execute(
                "SELECT follower_id FROM graph.follows"
                " WHERE follower_id = ANY(%s) AND followee_id = %s ORDER BY follower_id",
                (list(candidate_ids), followee_id),
            )
            return [row[0] for row in await cur.fetchall()]

    async def followee_ids(self, follower_id: int) -> list[int]:
        async with self._read() as conn:
            cur = await conn.execute(
                "SELECT followee_id FROM graph.follows WHERE follower_id = %s", (follower_id,)
            )
            return [row[0] for row in await cur.fetchall()]

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


async def _count_edge(conn: AsyncConnection[Any], follower_id: int, followee_id: int, delta: int) -> int:
    """Move both users' counts by delta; the followee's follower count after the change.

    Both rows are locked in ID order first, so that A following B while B follows A cannot
    deadlock. A celebrity's row is a hot spot: its follows serialise on it, one short update each.
    """
    await conn.execute(
        "SELECT 1 FROM graph.users WHERE user_id IN (%s, %s) ORDER BY user_id FOR NO KEY UPDATE",
        (follower_id, followee_id),
    )
    await conn.execute(
        "UPDATE graph.users SET following_count = following_count + %s WHERE user_id = %s",
        (delta, follower_id),
    )
    cur = await conn.execute(
        "UPDATE graph.users SET follower_count = follower_count + %s WHERE user_id = %s"
        " RETURNING follower_count",
        (delta, followee_id),
    )
    row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def _add_event(
    conn: AsyncConnection[Any], event_type: str, follower_id: int, followee_id: int, followee_followers: int
) -> None:
    # Keyed by the follower: the home timeline the event changes. The followee's follower count
    # after the change tells the workers when someone becomes, or stops being, a celebrity.
    payload = {
        "follower_id": follower_id,
        "followee_id": followee_id,
        "followee_follower_count": followee_followers,
    }
    await conn.execute(
        "INSERT INTO graph.outbox (event_type, aggregate_id, payload) VALUES (%s, %s, %s)",
        (event_type, follower_id, Jsonb(payload)),
    )
