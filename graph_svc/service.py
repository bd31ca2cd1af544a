"""The rules of the graph service.

Accounts and sessions: sign-up, profiles, login and bearer tokens. The follow graph: who may
follow whom, and how its lists page and stream.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import unicodedata
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from chirp_core.errors import InvalidArgument, NotFound, Unauthenticated, require_caller
from chirp_core.paging import decode_cursor, encode_cursor, page_size
from chirp_core.snowflake import SnowflakeGenerator
from graph_svc.models import EdgeUser, IssuedSession, Keyset, Relationship, Session, User

if TYPE_CHECKING:
    from graph_svc.passwords import Passwords
    from graph_svc.storage import GraphStorage

_HANDLE = re.compile(r"[a-z0-9_]{3,30}")
MAX_DISPLAY_NAME = 50
MIN_PASSWORD = 8
MAX_PASSWORD = 256
MAX_BATCH_IDS = 1_000

DEFAULT_BATCH_SIZE = 5_000
MAX_BATCH_SIZE = 50_000
_FOLLOWERS_CURSOR = "followers"
_FOLLOWING_CURSOR = "following"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
# Above every real edge: the keyset position before the first page.
_START: Keyset = (datetime(9999, 12, 31, tzinfo=UTC), 2**63 - 1)


class AccountService:
    def __init__(
        self, storage: GraphStorage, ids: SnowflakeGenerator, passwords: Passwords, session_ttl: timedelta
    ) -> None:
        self._storage = storage
        self._ids = ids
        self._passwords = passwords
        self._session_ttl = session_ttl

    async def create_user(self, handle: str, display_name: str, password: str) -> User:
        key = _handle_key(handle)
        name = _display_name(display_name, handle)
        if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
            raise InvalidArgument("password", f"must be {MIN_PASSWORD} to {MAX_PASSWORD} characters")
        if any(unicodedata.category(char) == "Cc" for char in password):
            raise InvalidArgument("password", "must not contain control characters")
        password_hash = await self._passwords.hash(password)
        return await self._storage.insert_user(self._ids.next_id(), key, name, password_hash)

    async def get_user(self, user_id: int) -> User:
        _check_user_id(user_id, "user_id")
        user = await self._storage.get_user(user_id)
        if user is None:
            raise NotFound("user", user_id)
        return user

    async def batch_get_users(self, user_ids: Sequence[int]) -> list[User]:
        """The users found among user_ids; unknown (and impossible, <= 0) IDs are skipped."""
        if len(user_ids) > MAX_BATCH_IDS:
            raise InvalidArgument("user_ids", f"at most {MAX_BATCH_IDS} IDs (got {len(user_ids)})")
        wanted = sorted({user_id for user_id in user_ids if user_id > 0})
        return await self._storage.get_users(wanted) if wanted else []

    async def create_session(self, handle: str, password: str) -> IssuedSession:
        """Log in. An unknown handle and a wrong password fail alike, in about the same time."""
        if not handle:
            raise InvalidArgument("handle", "is required")
        if not password:
            raise InvalidArgument("password", "is required")
        key = _stored_form(handle)
        credentials = await self._storage.get_credentials(key) if key else None
        if credentials is None or len(password) > MAX_PASSWORD:
            await self._passwords.spend_verify(password[:MAX_PASSWORD])
            raise _bad_credentials()
        if not await self._passwords.verify(credentials.password_hash, password):
            raise _bad_credentials()
        token = secrets.token_urlsafe(32)
        now = datetime.now(UTC)
        session = Session(credentials.user_id, now, now + self._session_ttl)
        await self._storage.insert_session(_token_hash(token), session)
        return IssuedSession(token, session.user_id, session.expires_at)

    async def validate_token(self, token: str) -> Session:
        if not token:
            raise InvalidArgument("token", "is required")
        session = await self._storage.get_session(_token_hash(token))
        if session is None:
            raise Unauthenticated("the token is not valid", reason="TOKEN_INVALID")
        if session.expires_at <= datetime.now(UTC):
            raise Unauthenticated("the token has expired", reason="TOKEN_EXPIRED")
        return session


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
        _check_user_id(user_id, "user_id")
        _check_user_id(other_user_id, "other_user_id")
        row = await self._storage.relationship(user_id, other_user_id)
        for wanted in (user_id, other_user_id):
            if wanted not in row.known_ids:
                raise NotFound("user", wanted)
        return Relationship(following=row.following, followed_by=row.followed_by)

    async def followee_ids(self, user_id: int) -> list[int]:
        _check_user_id(user_id, "user_id")
        ids = await self._storage.followee_ids(user_id)
        if not ids:
            await self._require_user(user_id)
        return ids

    async def follower_id_batches(self, user_id: int, batch_size: int) -> AsyncIterator[list[int]]:
        """Every follower ID of user_id, batch_size at a time, each batch ascending.

        Batches run newest edge first, one keyset query each: no transaction stays open while a
        slow reader drains the stream, and a follow made meanwhile may or may not be included.
        """
        _check_user_id(user_id, "user_id")
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
        _check_user_id(user_id, "user_id")
        if len(candidate_ids) > MAX_BATCH_SIZE:
            raise InvalidArgument("candidate_ids", f"at most {MAX_BATCH_SIZE} IDs (got {len(candidate_ids)})")
        wanted = sorted({c for c in candidate_ids if c > 0})
        return await self._storage.followers_among(user_id, wanted) if wanted else []

    def _check_edge(self, caller: int | None, follower_id: int, followee_id: int) -> None:
        if caller is None:
            raise Unauthenticated()
        _check_user_id(follower_id, "follower_id")
        require_caller(caller, follower_id, "follower_id")
        _check_user_id(followee_id, "followee_id")
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
        _check_user_id(user_id, "user_id")
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


def _check_user_id(user_id: int, field: str) -> None:
    if user_id <= 0:
        raise InvalidArgument(field, f"must be a user ID (got {user_id})")


def _handle_key(handle: str) -> str:
    key = _stored_form(handle)
    if key is None:
        raise InvalidArgument("handle", "must be 3 to 30 characters of a-z, 0-9 and _")
    return key


def _stored_form(handle: str) -> str | None:
    """The lower-case form a valid handle is stored in; None for an invalid one."""
    # isascii() because str.lower() maps some non-ASCII letters (the Kelvin sign) to ASCII ones.
    key = handle.lower()
    return key if handle.isascii() and _HANDLE.fullmatch(key) else None


def _display_name(display_name: str, handle: str) -> str:
    name = display_name.strip() or handle
    if len(name) > MAX_DISPLAY_NAME:
        raise InvalidArgument("display_name", f"must be at most {MAX_DISPLAY_NAME} characters")
    if any(unicodedata.category(char) == "Cc" for char in name):
        raise InvalidArgument("display_name", "must not contain control characters")
    return name


def _token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def _bad_credentials() -> Unauthenticated:
    return Unauthenticated("the handle or the password is wrong", reason="BAD_CREDENTIALS")


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
