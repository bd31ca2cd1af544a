"""The tweets service's domain objects."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class Media:
    """An image or video bound to a tweet. width and height are 0 for a video."""

    media_id: int
    object_key: str
    content_type: str
    size_bytes: int
    width: int = 0
    height: int = 0


@dataclass(frozen=True)
class MediaRecord:
    """An upload as granted: `pending` until bound to `tweet_id`, then `attached` for good."""

    media_id: int
    user_id: int
    object_key: str
    content_type: str
    size_bytes: int
    state: str
    tweet_id: int | None
    created_at: datetime


@dataclass(frozen=True)
class MediaDeletion:
    """An object the media janitor is to delete from the store."""

    id: int
    media_id: int
    object_key: str
    attempts: int


@dataclass(frozen=True)
class Tweet:
    """A live tweet at its latest version. reply_to / reply_to_user_id are None for a new conversation."""

    tweet_id: int
    user_id: int
    content: str
    reply_to: int | None
    reply_to_user_id: int | None
    conversation_id: int
    version: int
    created_at: datetime
    edited_at: datetime | None
    # In display order; loaded separately from the tweet's row (tweets_svc.media.storage).
    media: tuple[Media, ...] = ()


@dataclass(frozen=True)
class TweetVersion:
    version: int
    content: str
    created_at: datetime


@dataclass(frozen=True)
class PriorCreate:
    """The tweet an author already created with an idempotency key, as first requested."""

    tweet_id: int
    reply_to: int | None
    # The content of version 1; None once the tweet is deleted (its history is gone).
    first_content: str | None
    deleted: bool
