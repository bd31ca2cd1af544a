"""The API's resources as frozen dataclasses, parsed from the REST API's JSON.

IDs are Python ints (the API sends int64 values as JSON strings); timestamps are aware
`datetime`s in UTC. The API omits fields at their default value, so an absent field
takes the default documented on each class.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

JsonObject = Mapping[str, Any]

T = TypeVar("T")

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def parse_id(value: object) -> int:
    """An int64 as the API sends it (a JSON string, or a number); absent is 0."""
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError(f"not an integer ID: {value!r}")
    return int(value)


def parse_optional_id(value: object) -> int | None:
    """An ID whose zero value means 'none' (e.g. reply_to of a tweet that is no reply)."""
    return parse_id(value) or None


def parse_timestamp(value: object) -> datetime | None:
    """An RFC 3339 timestamp (`2024-05-01T12:00:00.123456789Z`); absent is None.

    Digits beyond microseconds are dropped: `datetime` cannot hold nanoseconds.
    """
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"not an RFC 3339 timestamp: {value!r}")
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError(f"timestamp without a time zone: {value!r}")
    return parsed.astimezone(UTC)


def _str(data: JsonObject, name: str) -> str:
    value = data.get(name, "")
    if not isinstance(value, str):
        raise ValueError(f"{name}: not a string: {value!r}")
    return value


def _int(data: JsonObject, name: str) -> int:
    value = data.get(name, 0)
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"{name}: not an integer: {value!r}")
    return int(value)


def _bool(data: JsonObject, name: str) -> bool:
    value = data.get(name, False)
    if not isinstance(value, bool):
        raise ValueError(f"{name}: not a boolean: {value!r}")
    return value


def _objects(data: JsonObject, name: str) -> Sequence[JsonObject]:
    value = data.get(name, [])
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise ValueError(f"{name}: not a list of objects")
    return value


@dataclass(frozen=True)
class User:
    """An account's public profile."""

    user_id: int
    handle: str = ""
    display_name: str = ""
    #: When the account was created; the epoch if the server left it out.
    created_at: datetime = EPOCH

    @classmethod
    def from_json(cls, data: JsonObject) -> User:
        return cls(
            user_id=parse_id(data.get("user_id")),
            handle=_str(data, "handle"),
            display_name=_str(data, "display_name"),
            created_at=parse_timestamp(data.get("created_at")) or EPOCH,
        )


@dataclass(frozen=True)
class Media:
    """An image or a video attached to a tweet."""

    media_id: int
    #: Where to download it (the CDN); the URL never changes.
    url: str = ""
    content_type: str = ""
    size_bytes: int = 0
    #: Pixels; 0 for a video.
    width: int = 0
    height: int = 0

    @classmethod
    def from_json(cls, data: JsonObject) -> Media:
        return cls(
            media_id=parse_id(data.get("media_id")),
            url=_str(data, "url"),
            content_type=_str(data, "content_type"),
            size_bytes=_int(data, "size_bytes"),
            width=_int(data, "width"),
            height=_int(data, "height"),
        )


@dataclass(frozen=True)
class MediaUploadGrant:
    """Where and how to upload a file: an HTML-form POST straight to the media store."""

    media_id: int
    url: str
    #: Form fields to send as they are, before the file.
    fields: Mapping[str, str]
    expires_at: datetime | None = None

    @classmethod
    def from_json(cls, data: JsonObject) -> MediaUploadGrant:
        upload = data.get("upload")
        if not isinstance(upload, dict):
            raise ValueError("upload: not an object")
        fields = upload.get("fields", {})
        if not isinstance(fields, dict) or not all(isinstance(v, str) for v in fields.values()):
            raise ValueError("upload.fields: not an object of strings")
        return cls(
            media_id=parse_id(data.get("media_id")),
            url=_str(upload, "url"),
            fields=dict(fields),
            expires_at=parse_timestamp(upload.get("expires_at")),
        )


@dataclass(frozen=True)
class Tweet:
    """A tweet at its latest version."""

    tweet_id: int
    user_id: int = 0
    content: str = ""
    #: The tweet this one replies to; None when it is not a reply.
    reply_to: int | None = None
    #: The first tweet of the conversation (the tweet's own ID when it is not a reply).
    conversation_id: int = 0
    created_at: datetime = EPOCH
    #: When the tweet was last edited; None when never edited.
    edited_at: datetime | None = None
    #: 1 for a tweet never edited, then 2, 3, ...
    version: int = 0
    #: The author's profile; filled in timelines, None from the tweet endpoints.
    author: User | None = None
    #: The author of the tweet replied to; None when it is not a reply.
    reply_to_user_id: int | None = None
    #: Attached images or video, in the order given when posting.
    media: tuple[Media, ...] = ()

    @classmethod
    def from_json(cls, data: JsonObject) -> Tweet:
        author = data.get("author")
        if author is not None and not isinstance(author, dict):
            raise ValueError("author: not an object")
        return cls(
            tweet_id=parse_id(data.get("tweet_id")),
            user_id=parse_id(data.get("user_id")),
            content=_str(data, "content"),
            reply_to=parse_optional_id(data.get("reply_to")),
            conversation_id=parse_id(data.get("conversation_id")),
            created_at=parse_timestamp(data.get("created_at")) or EPOCH,
            edited_at=parse_timestamp(data.get("edited_at")),
            version=_int(data, "version"),
            author=User.from_json(author) if author is not None else None,
            reply_to_user_id=parse_optional_id(data.get("reply_to_user_id")),
            media=tuple(Media.from_json(item) for item in _objects(data, "media")),
        )


@dataclass(frozen=True)
class TweetVersion:
    """One version of a tweet's content."""

    version: int
    content: str = ""
    created_at: datetime = EPOCH

    @classmethod
    def from_json(cls, data: JsonObject) -> TweetVersion:
        return cls(
            version=_int(data, "version"),
            content=_str(data, "content"),
            created_at=parse_timestamp(data.get("created_at")) or EPOCH,
        )


@dataclass(frozen=True)
class Session:
    """A login: the access token (short-lived), the refresh token that gets the next one, and
    whose they are."""

    token: str
    user_id: int
    #: When the access token stops working (minutes); None if the server did not say.
    expires_at: datetime | None = None
    #: Exchanged for a new access token (and a new refresh token) by RefreshSession.
    refresh_token: str = ""
    refresh_token_expires_at: datetime | None = None

    @classmethod
    def from_json(cls, data: JsonObject) -> Session:
        refresh = data.get("refresh_token", "")
        return cls(
            token=_str(data, "token"),
            user_id=parse_id(data.get("user_id")),
            expires_at=parse_timestamp(data.get("expires_at")),
            refresh_token=refresh if isinstance(refresh, str) else "",
            refresh_token_expires_at=parse_timestamp(data.get("refresh_token_expires_at")),
        )


@dataclass(frozen=True)
class Relationship:
    """Both directions of the follow edge between `user_id` and `other_user_id`."""

    user_id: int
    other_user_id: int
    #: user_id follows other_user_id.
    following: bool = False
    #: other_user_id follows user_id.
    followed_by: bool = False

    @classmethod
    def from_json(cls, data: JsonObject, *, user_id: int, other_user_id: int) -> Relationship:
        return cls(
            user_id=user_id,
            other_user_id=other_user_id,
            following=_bool(data, "following"),
            followed_by=_bool(data, "followed_by"),
        )


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a list. An empty `next_cursor` means this is the last page."""

    items: tuple[T, ...]
    next_cursor: str = ""

    @property
    def is_last(self) -> bool:
        return not self.next_cursor


def tweet_page(data: JsonObject) -> Page[Tweet]:
    return Page(tuple(Tweet.from_json(t) for t in _objects(data, "tweets")), _str(data, "next_cursor"))


def user_page(data: JsonObject) -> Page[User]:
    return Page(tuple(User.from_json(u) for u in _objects(data, "users")), _str(data, "next_cursor"))


def tweet_versions(data: JsonObject) -> list[TweetVersion]:
    return [TweetVersion.from_json(v) for v in _objects(data, "versions")]
