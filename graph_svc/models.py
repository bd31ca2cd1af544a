"""The graph service's domain objects."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import Enum

# A keyset position in a list of edges, newest first: (edge created_at, the other user's ID).
Keyset = tuple[datetime, int]


@dataclass(frozen=True)
class User:
    """An account's public profile. `handle` is lower-case."""

    user_id: int
    handle: str
    display_name: str
    created_at: datetime
    follower_count: int = 0
    following_count: int = 0


@dataclass(frozen=True)
class Credentials:
    user_id: int
    password_hash: str


@dataclass(frozen=True)
class Session:
    """A stored login. Its refresh token is never stored, only its hash; `expires_at` is when the
    current refresh token stops working."""

    session_id: int
    user_id: int
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None = None


class RefreshOutcome(Enum):
    ROTATED = "rotated"
    UNKNOWN = "unknown"
    # The token was exchanged before: the session is now revoked.
    REUSED = "reused"
    REVOKED = "revoked"
    EXPIRED = "expired"


@dataclass(frozen=True)
class AccessClaims:
    """What an access token says: the JWT claims iss, sub, sid, iat and exp."""

    issuer: str
    user_id: int
    session_id: int
    issued_at: datetime
    expires_at: datetime


@dataclass(frozen=True)
class IssuedSession:
    """New tokens of a session, shown to the client this once."""

    user_id: int
    session_id: int
    access_token: str
    access_expires_at: datetime
    refresh_token: str
    refresh_expires_at: datetime


@dataclass(frozen=True)
class FollowEdge:
    follower_id: int
    followee_id: int
    created_at: datetime


@dataclass(frozen=True)
class EdgeUser:
    """The user at the other end of an edge, with when the edge was made (the keyset of lists)."""

    user_id: int
    handle: str
    display_name: str
    created_at: datetime
    follower_count: int
    following_count: int
    followed_at: datetime

    def profile(self) -> User:
        return User(
            self.user_id,
            self.handle,
            self.display_name,
            self.created_at,
            self.follower_count,
            self.following_count,
        )


@dataclass(frozen=True)
class Relationship:
    following: bool
    followed_by: bool


@dataclass(frozen=True)
class RelationshipRow:
    """Both directions between two users, and which of the two exist."""

    following: bool
    followed_by: bool
    known_ids: list[int]
