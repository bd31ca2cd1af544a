"""The rules of the graph service.

Accounts and sessions: sign-up, profiles, login, short-lived access tokens and rotating refresh
tokens. The follow graph: who may
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
from typing import TYPE_CHECKING, Protocol

from chirp_core.errors import InvalidArgument, NotFound, Unauthenticated, require_caller
from chirp_core.paging import decode_cursor, encode_cursor, page_size
from chirp_core.snowflake import SnowflakeGenerator
from graph_svc.models import (
    AccessClaims,
    EdgeUser,
    IssuedSession,
    Keyset,
    RefreshOutcome,
    Relationship,
    Session,
    User,
)

if TYPE_CHECKING:
    from graph_svc.passwords import Passwords
    from graph_svc.storage import GraphStorage

_HANDLE = re.compile(r"[a-z0-9_]{3,30}")
MAX_DISPLAY_NAME = 50
MIN_PASSWORD = 8
MAX_PASSWORD = 256
MAX_BATCH_IDS = 1_000
REFRESH_TOKEN_BYTES = 32
# What secrets.token_urlsafe(REFRESH_TOKEN_BYTES) returns: 43 characters of base64url.
_REFRESH_TOKEN = re.compile(r"[A-Za-z0-9_-]{43}")
_REFRESH_ERRORS: dict[RefreshOutcome, Callable[[], Unauthenticated]] = {
    RefreshOutcome.UNKNOWN: lambda: Unauthenticated(
        "the refresh token is not valid; log in again", reason="REFRESH_TOKEN_INVALID"
    ),
    RefreshOutcome.REUSED: lambda: Unauthenticated(
        "the refresh token was already used, so the session is revoked; log in again",
        reason="REFRESH_TOKEN_REUSED",
    ),
    RefreshOutcome.REVOKED: lambda: Unauthenticated(
        "the session has ended (logged out or revoked); log in again", reason="SESSION_REVOKED"
    ),
    RefreshOutcome.EXPIRED: lambda: Unauthenticated(
        "the refresh token has expired; log in again", reason="REFRESH_TOKEN_EXPIRED"
    ),
}

DEFAULT_BATCH_SIZE = 5_000
MAX_BATCH_SIZE = 50_000
_FOLLOWERS_CURSOR = "followers"
_FOLLOWING_CURSOR = "following"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
# Above every real edge: the keyset position before the first page.
_START: Keyset = (datetime(9999, 12, 31, tzinfo=UTC), 2**63 - 1)


class AccessTokenSigner(Protocol):
    """Signs access tokens (graph_svc.tokens.KeyRing)."""

    def sign(self, claims: AccessClaims) -> str: ...


@dataclass(frozen=True)
class SessionPolicy:
    issuer: str
    access_ttl: timedelta
    refresh_ttl: timedelta


class AccountService:
    def __init__(
        self,
        storage: GraphStorage,
        ids: SnowflakeGenerator,
        passwords: Passwords,
        signer: AccessTokenSigner,
        policy: SessionPolicy,
    ) -> None:
        self._storage = storage
        self._ids = ids
        self._passwords = passwords
        self._signer = signer
        self._policy = policy

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
        now = datetime.now(UTC)
        refresh_token = secrets.token_urlsafe(REFRESH_TOKEN_BYTES)
        session = Session(self._ids.next_id(), credentials.user_id, now, now + self._policy.refresh_ttl)
        await self._storage.insert_session(session, _token_hash(refresh_token))
        return self._issue(session, refresh_token, now)

    async def refresh_session(self, refresh_token: str) -> IssuedSession:
        """Exchange a refresh token for new tokens. The old one stops working; presenting it again
        revokes the session (the token was stolen, or the client is broken)."""
        if not refresh_token:
            raise InvalidArgument("refresh_token", "is required")
        if not _REFRESH_TOKEN.fullmatch(refresh_token):
            raise InvalidArgument("refresh_token", "is not a refresh token this server issued")
        now = datetime.now(UTC)
        new_token = secrets.token_urlsafe(REFRESH_TOKEN_BYTES)
        outcome, session = await self._storage.refresh_session(
            _token_hash(refresh_token), _token_hash(new_token), now, now + self._policy.refresh_ttl
        )
        if outcome is RefreshOutcome.ROTATED and session is not None:
            return self._issue(session, new_token, now)
        raise _REFRESH_ERRORS[outcome]()

    async def delete_session(self, caller: int | None, session_id: int | None) -> None:
        """Log out: the caller's session can no longer be refreshed. Idempotent."""
        if caller is None:
            raise Unauthenticated()
        if session_id is None:
            raise Unauthenticated("the access token names no session", reason="SESSION_MISSING")
        await self._storage.revoke_session(session_id, caller, datetime.now(UTC))

    def _issue(self, session: Session, refresh_token: str, now: datetime) -> IssuedSession:
        # Whole seconds: the JWT's iat and exp are, and expires_at must say what exp says.
        issued_at = now.replace(microsecond=0)
        access_expires_at = issued_at + self._policy.access_ttl
        claims = AccessClaims(
            self._policy.issuer, session.user_id, session.session_id, issued_at, access_expires_at
        )
        return IssuedSession(
            user_id=session.user_id,
            session_id=session.session_id,
            access_token=self._signer.sign(claims),
            access_expires_at=access_expires_at,
            refresh_token=refresh_token,
            refresh_expires_at=session.expires_at,
        )


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
