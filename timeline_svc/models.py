"""What the timeline service works with: tweets and their authors' profiles, free of any wire format."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime


@dataclass(frozen=True)
class User:
    """An author's public profile."""

    user_id: int
    handle: str
    display_name: str
    created_at: datetime | None = None


@dataclass(frozen=True)
class Tweet:
    """A live tweet at its latest version. `author` is set once the timeline has hydrated it."""

    tweet_id: int
    user_id: int
    content: str
    created_at: datetime | None = None
    edited_at: datetime | None = None
    version: int = 1
    reply_to: int = 0
    reply_to_user_id: int = 0
    conversation_id: int = 0
    author: User | None = None

    def with_author(self, author: User | None) -> Tweet:
        return replace(self, author=author)


@dataclass(frozen=True)
class Page:
    """One page of a timeline, newest first; `next_cursor` is empty on the last page."""

    tweets: list[Tweet]
    next_cursor: str
