"""The rules of accounts and sessions: sign-up, profiles, login and bearer tokens."""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import secrets
import unicodedata
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from argon2 import PasswordHasher
from argon2.exceptions import VerifyMismatchError

from chirp_core.errors import InvalidArgument, NotFound, Unauthenticated
from chirp_core.snowflake import SnowflakeGenerator
from graph_svc.models import IssuedSession, Session, User

if TYPE_CHECKING:
    from graph_svc.storage import GraphStorage

_HANDLE = re.compile(r"[a-z0-9_]{3,30}")
MAX_DISPLAY_NAME = 50
MIN_PASSWORD = 8
MAX_PASSWORD = 256
MAX_BATCH_IDS = 1_000


class Passwords:
    """argon2id hashing, off the event loop: it is slow and memory-hard by design.

    At most one hash per CPU runs at once, so a burst of logins queues instead of taking
    64 MiB of memory per request.
    """

    def __init__(self, hasher: PasswordHasher | None = None) -> None:
        self._hasher = hasher or PasswordHasher()
        self._slots = asyncio.Semaphore(os.cpu_count() or 1)
        self._dummy_hash: str | None = None

    async def hash(self, password: str) -> str:
        async with self._slots:
            return await asyncio.to_thread(self._hasher.hash, password)

    async def verify(self, password_hash: str, password: str) -> bool:
        async with self._slots:
            return await asyncio.to_thread(self._verify, password_hash, password)

    async def spend_verify(self, password: str) -> None:
        """Take as long as verify() without a stored hash, so login timing tells no handle apart."""
        if self._dummy_hash is None:
            self._dummy_hash = await self.hash(secrets.token_urlsafe(16))
        await self.verify(self._dummy_hash, password)

    def _verify(self, password_hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(password_hash, password)
        except VerifyMismatchError:
            return False


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
        check_user_id(user_id, "user_id")
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


def check_user_id(user_id: int, field: str) -> None:
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
