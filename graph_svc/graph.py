"""The rules of the follow graph: who may follow whom, and how its lists page and stream."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from chirp_core.errors import InvalidArgument, NotFound, Unauthenticated, require_caller
from chirp_core.paging import decode_cursor, encode_cursor, page_size
from graph_svc.accounts import check_user_id
from graph_svc.models import EdgeUser, Relationship, User

if TYPE_CHECKING:
    from graph_svc.storage import GraphStorage, Keyset

DEFAULT_BATCH_SIZE = 5_000
MAX_BATCH_SIZE = 50_000
_FOLLOWERS_CURSOR = "followers"
_FOLLOWING_CURSOR = "following"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
# Above every real edge: the keyset position before the first page.
_START: Keyset = (datetime(9999, 12, 31, tzinfo=UTC), 2**63 - 1)


@dataclass(frozen=True)
class UserPage:
    users: list[User]
    next_cursor: str


class GraphService:
    def __init__(self, storage: GraphStorage) -> None:
        self._storage = storage

    async def follow(self, caller: int | None, follower_id: int, followee_id: int) -> None:
        """Idempotent: following someone already followed changes nothing and emits no event."""
        self._check_edge(caller, follower_id, followee_id)
        await self._storage.add_follow(follower_id, followee_id)

    async def unfollow(self, caller: int | None, follower_id: int, followee_id: int) -> None:
        """Idempotent: removing an edge that is not there is success."""
        self._check_edge(caller, follower_id, followee_id)
        await self._storage.remove_follow(follower_id, followee_id)

    async def list_followers(self, user_id: int, limit: int, cursor: str) -> UserPage:
        return await self._page(_FOLLOWERS_CURSOR, self._storage.list_followers, user_id, limit, cursor)

    async def list_following(self, user_id: int, limit: int, cursor: str) -> UserPage:
        return await self._page(_FOLLOWING_CURSOR, self._storage.list_following, user_id, limit, cursor)

    async def relationship(self, user_id: int, other_user_id: int) -> Relationship:
        check_user_id(user_id, "user_id")
        check_user_id(other_user_id, "other_user_id")
        row = await self._storage.relationship(user_id, other_user_id)
        for wanted in (user_id, other_user_id):
            if wanted not in row.known_ids:
                raise NotFound("user", wanted)
        return Relationship(following=row.following, followed_by=row.followed_by)

    async def followee_ids(self, user_id: int) -> list[int]:
        check_user_id(user_id, "user_id")
        ids = await self._storage.followee_ids(user_id)
        if not ids:
            await self._require_user(user_id)
        return ids

    async def follower_id_batches(self, user_id: int, batch_size: int) -> AsyncIterator[list[int]]:
        """Every follower ID of user_id, batch_size at a time, each batch ascending.

        Batches run newest edge first, one keyset query each: no transaction stays open while a
        slow reader drains the stream, and a follow made meanwhile may or may not be included.
        """
        check_user_id(user_id, "user_id")
        size = _batch_size(batch_size)
        after = _START
        while True:
            edges = await self._storage.follower_edges(user_id, after, size)
            if edges:
                yield sorted(edge.follower_id for edge in edges)
            elif after == _START:
                await self._require_user(user_id)
            if len(edges) < size:
                return
            after = (edges[-1].created_at, edges[-1].follower_id)

    async def filter_followers(self, user_id: int, candidate_ids: list[int]) -> list[int]:
        """The candidates who follow user_id, ascending and without duplicates."""
        check_user_id(user_id, "user_id")
        if len(candidate_ids) > MAX_BATCH_SIZE:
            raise InvalidArgument("candidate_ids", f"at most {MAX_BATCH_SIZE} IDs (got {len(candidate_ids)})")
        wanted = sorted({c for c in candidate_ids if c > 0})
        return await self._storage.followers_among(user_id, wanted) if wanted else []

    def _check_edge(self, caller: int | None, follower_id: int, followee_id: int) -> None:
        if caller is None:
            raise Unauthenticated()
        check_user_id(follower_id, "follower_id")
        require_caller(caller, follower_id, "follower_id")
        check_user_id(followee_id, "followee_id")
        if followee_id == follower_id:
            raise InvalidArgument("followee_id", "a user cannot follow themself")

    async def _page(
        self,
        kind: str,
        fetch: Callable[[int, Keyset, int], Awaitable[list[EdgeUser]]],
        user_id: int,
        limit: int,
        cursor: str,
    ) -> UserPage:
        check_user_id(user_id, "user_id")
        size = page_size(limit)
        after = _decode_keyset(kind, user_id, cursor)
        rows = await fetch(user_id, after, size + 1)
        if not rows:
            await self._require_user(user_id)
        page = rows[:size]
        next_cursor = _encode_keyset(kind, user_id, page[-1]) if len(rows) > size else ""
        return UserPage([row.profile() for row in page], next_cursor)

    async def _require_user(self, user_id: int) -> None:
        if not await self._storage.user_exists(user_id):
            raise NotFound("user", user_id)


def _batch_size(batch_size: int) -> int:
    if batch_size < 0:
        raise InvalidArgument("batch_size", f"must not be negative (got {batch_size})")
    return min(batch_size or DEFAULT_BATCH_SIZE, MAX_BATCH_SIZE)


# A cursor holds the listed user's ID, so it cannot be replayed against someone else's list.
def _encode_keyset(kind: str, user_id: int, last: EdgeUser) -> str:
    micros = (last.followed_at - _EPOCH) // _MICROSECOND
    return encode_cursor(kind, user_id, micros, last.user_id)


def _decode_keyset(kind: str, user_id: int, cursor: str) -> Keyset:
    keys = decode_cursor(cursor, kind, 3)
    if keys is None:
        return _START
    owner, micros, other_id = keys
    if owner != user_id:
        raise InvalidArgument("cursor", "belongs to another user's list")
    try:
        if other_id > _START[1]:
            raise OverflowError
        return (_EPOCH + micros * _MICROSECOND, other_id)
    except OverflowError:
        raise InvalidArgument("cursor", "is not a cursor this server issued") from None
