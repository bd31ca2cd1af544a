"""What the timeline service works with: tweets and their authors' profiles, free of any wire format."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from timeline_svc.keys import parse_member, timeline_member


@dataclass(frozen=True)
class User:
    """An author's public profile."""

    user_id: int
    handle: str
    display_name: str
    created_at: datetime | None = None


@dataclass(frozen=True)
class Media:
    """An image or video of a tweet, as the tweets service describes it (url on the CDN)."""

    media_id: int
    url: str
    content_type: str
    size_bytes: int
    width: int = 0
    height: int = 0


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
    media: tuple[Media, ...] = ()

    def with_author(self, author: User | None) -> Tweet:
        return replace(self, author=author)


@dataclass(frozen=True)
class CachedTweet:
    """A hydrated tweet as the tweet cache holds it: `data` is its wire message with its author
    (chirp.tweets.v1.Tweet; timeline_svc.convert writes and reads it). The rules never look inside:
    what they need of a tweet (ID, author, reply target) comes from the timeline entries, and the
    servicer sends the bytes as they are."""

    tweet_id: int
    data: bytes


# A tweet of a timeline: decoded (from the other services; its author may be missing) or cached.
TimelineTweet = Tweet | CachedTweet


@dataclass(frozen=True)
class Page:
    """One page of a timeline, newest first; `next_cursor` is empty on the last page."""

    tweets: Sequence[TimelineTweet]
    next_cursor: str


@dataclass(frozen=True)
class Entry:
    """A tweet as a timeline holds it."""

    tweet_id: int
    author_id: int
    reply_to_user_id: int = 0

    @property
    def member(self) -> bytes:
        return timeline_member(self.tweet_id, self.author_id, self.reply_to_user_id)

    @classmethod
    def of(cls, tweet: Tweet) -> Entry:
        return cls(tweet.tweet_id, tweet.user_id, tweet.reply_to_user_id)

    @classmethod
    def parse(cls, member: bytes) -> Entry:
        return cls(*parse_member(member))


@dataclass(frozen=True)
class Event:
    """A change another service relayed from its outbox: tweet_created, followed, ..."""

    type: str
    seq: int
    payload: Mapping[str, Any]
