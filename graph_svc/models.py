"""The graph service's domain objects."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

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
    """A stored login. The token itself is never stored, only its hash."""

    user_id: int
    created_at: datetime
    expires_at: datetime


@dataclass(frozen=True)
class IssuedSession:
    """A new login: the bearer token is shown to the client this once."""

    token: str
    user_id: int
    expires_at: datetime


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
