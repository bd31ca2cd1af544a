"""The rules of tweets: who may post, edit and delete, what a tweet may hold, how lists page."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from chirp_core.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unauthenticated,
    Unavailable,
    require_caller,
)
from chirp_core.paging import decode_cursor, encode_cursor, page_size
from chirp_core.snowflake import SnowflakeGenerator, timestamp_of
from tweets_svc.media.service import MediaService, check_media_ids
from tweets_svc.models import Media, Tweet, TweetVersion

if TYPE_CHECKING:
    from tweets_svc.storage import TweetStorage

MAX_CONTENT = 280
MAX_IDEMPOTENCY_KEY = 64
MAX_BATCH_IDS = 1_000
MAX_AUTHORS = 50_000
DEFAULT_AUTHORS_LIMIT = 20
MAX_AUTHORS_LIMIT = 1_000
_REPLIES_CURSOR = "replies"


class TweetSignals(Protocol):
    """What the timelines' Redis is told right after a commit, best effort (the outbox events
    follow): tweets_svc.signals.RedisTweetSignals."""

    async def posted(self, tweet_id: int, author_id: int, reply_to_user_id: int) -> None: ...

    async def changed(self, tweet_id: int) -> None: ...


class NoSignals:
    """For a tweets service without Redis."""

    async def posted(self, tweet_id: int, author_id: int, reply_to_user_id: int) -> None:
        return None

    async def changed(self, tweet_id: int) -> None:
        return None


@dataclass(frozen=True)
class RepliesPage:
    tweets: list[Tweet]
    next_cursor: str


class TweetService:
    def __init__(
        self,
        storage: TweetStorage,
        ids: SnowflakeGenerator,
        signals: TweetSignals | None = None,
        media: MediaService | None = None,
    ) -> None:
        self._storage = storage
        self._ids = ids
        self._signals = signals or NoSignals()
        self._media = media

    async def create_tweet(
        self,
        caller: int | None,
        user_id: int,
        content: str,
        reply_to: int,
        idempotency_key: str,
        media_ids: Sequence[int] = (),
    ) -> Tweet:
        """A new tweet, or the one this author already created with idempotency_key. With
        media_ids, the caller's uploads are checked and bound to it (tweets_svc.media.service)."""
        if caller is None:
            raise Unauthenticated()
        _check_positive(user_id, "user_id")
        require_caller(caller, user_id, "user_id")
        _check_content(content, allow_empty=bool(media_ids))
        if reply_to < 0:
            raise InvalidArgument("reply_to", f"must be a tweet ID or 0 (got {reply_to})")
        key = _idempotency_key(idempotency_key)
        wanted = check_media_ids(media_ids)
        if key is not None:
            prior = await self._replay(user_id, key, content, reply_to)
            if prior is not None:
                return _same_media(prior, wanted)

        parent = None
        if reply_to:
            # A delete of the parent racing this create orders as if it came after the reply.
            parent = await self._storage.get_tweet(reply_to)
            if parent is None:
                raise NotFound("tweet", reply_to)
        media = await self._prepare_media(user_id, wanted)
        tweet_id = self._ids.next_id()
        tweet = Tweet(
            tweet_id=tweet_id,
            user_id=user_id,
            content=content,
            reply_to=parent.tweet_id if parent else None,
            reply_to_user_id=parent.user_id if parent else None,
            conversation_id=parent.conversation_id if parent else tweet_id,
            version=1,
            # The ID's own time: ordering by ID and by created_at always agree.
            created_at=timestamp_of(tweet_id),
            edited_at=None,
            media=media,
        )
        if await self._storage.insert_tweet(tweet, key):
            await self._signals.posted(tweet.tweet_id, user_id, tweet.reply_to_user_id or 0)
            return tweet
        assert key is not None  # only a key conflict makes the insert write nothing
        prior = await self._replay(user_id, key, content, reply_to)
        if prior is None:
            raise Unavailable("the tweet could not be created, retry", reason="CREATE_CONFLICT")
        return _same_media(prior, wanted)

    async def _prepare_media(self, user_id: int, media_ids: list[int]) -> tuple[Media, ...]:
        if not media_ids:
            return ()
        if self._media is None:
            raise Unavailable("media are not available on this server", reason="MEDIA_UNAVAILABLE")
        return await self._media.prepare(user_id, media_ids)

    async def _replay(self, user_id: int, key: str, content: str, reply_to: int) -> Tweet | None:
        """The tweet already created with this key (at its latest version); None when the key is new."""
        prior = await self._storage.find_prior_create(user_id, key)
        if prior is None:
            return None
        if prior.deleted:
            # The create happened and the tweet was deleted since: a retry must not revive it.
            raise NotFound("tweet", prior.tweet_id)
        if prior.first_content != content or (prior.reply_to or 0) != reply_to:
            raise FailedPrecondition(
                "idempotency_key: already used for a different tweet",
                reason="IDEMPOTENCY_KEY_REUSED",
                metadata={"tweet_id": str(prior.tweet_id)},
            )
        tweet = await self._storage.get_tweet(prior.tweet_id)
        if tweet is None:
            raise NotFound("tweet", prior.tweet_id)
        return tweet

    async def get_tweet(self, tweet_id: int) -> Tweet:
        _check_positive(tweet_id, "tweet_id")
        return await self._live(tweet_id)

    async def edit_tweet(self, caller: int | None, tweet_id: int, content: str) -> Tweet:
        """A new version. Content identical to the current one is a no-op: no version, no event."""
        if caller is None:
            raise Unauthenticated()
        _check_positive(tweet_id, "tweet_id")
        _check_content(content)
        tweet = await self._authored(caller, tweet_id)
        if tweet.content == content:
            return tweet
        edited = await self._storage.edit_tweet(tweet_id, content)
        if edited is None:
            raise NotFound("tweet", tweet_id)
        await self._signals.changed(tweet_id)
        return edited

    async def delete_tweet(self, caller: int | None, tweet_id: int) -> None:
        if caller is None:
            raise Unauthenticated()
        _check_positive(tweet_id, "tweet_id")
        await self._authored(caller, tweet_id)
        if not await self._storage.delete_tweet(tweet_id):
            raise NotFound("tweet", tweet_id)
        await self._signals.changed(tweet_id)

    async def list_replies(self, tweet_id: int, limit: int, cursor: str) -> RepliesPage:
        """Live direct replies, oldest first.

        The replies of a deleted tweet are still listed: they are live tweets, and a client
        showing the thread keeps its shape with a placeholder for the deleted parent.
        """
        _check_positive(tweet_id, "tweet_id")
        size = page_size(limit)
        position = decode_cursor(cursor, _REPLIES_CURSOR, 1)
        after_id = position[0] if position else 0
        if not await self._storage.tweet_exists(tweet_id):
            raise NotFound("tweet", tweet_id)
        # One extra row tells whether another page follows, so the last page has no cursor.
        replies = await self._storage.list_replies(tweet_id, after_id, size + 1)
        if len(replies) <= size:
            return RepliesPage(replies, "")
        page = replies[:size]
        return RepliesPage(page, encode_cursor(_REPLIES_CURSOR, page[-1].tweet_id))

    async def list_versions(self, tweet_id: int) -> list[TweetVersion]:
        _check_positive(tweet_id, "tweet_id")
        versions = await self._storage.list_versions(tweet_id)
        if not versions:
            raise NotFound("tweet", tweet_id)
        return versions

    async def batch_get(self, tweet_ids: list[int]) -> list[Tweet]:
        """The live tweets among tweet_ids, newest first. Unknown, deleted and non-positive IDs
        are left out."""
        if len(tweet_ids) > MAX_BATCH_IDS:
            raise InvalidArgument("tweet_ids", f"at most {MAX_BATCH_IDS} IDs (got {len(tweet_ids)})")
        wanted = {i for i in tweet_ids if i > 0}
        return await self._storage.get_tweets(sorted(wanted)) if wanted else []

    async def list_by_authors(
        self, author_ids: list[int], max_id: int, min_id: int, limit: int, home_user_id: int = 0
    ) -> list[Tweet]:
        """Live tweets of the authors with min_id < tweet_id < max_id (0 = no bound), newest first.

        With home_user_id (the reader of a home timeline), a reply by another user appears only
        when the reader follows the user it answers: when that user is one of the authors (the
        reader's followees and themself), the reply's own author, or the reader.
        """
        if not author_ids:
            raise InvalidArgument("author_ids", "must name at least one author")
        if len(author_ids) > MAX_AUTHORS:
            raise InvalidArgument("author_ids", f"at most {MAX_AUTHORS} authors (got {len(author_ids)})")
        for value, field in ((max_id, "max_id"), (min_id, "min_id"), (home_user_id, "home_user_id")):
            if value < 0:
                raise InvalidArgument(field, f"must not be negative (got {value})")
        if limit < 0:
            raise InvalidArgument("limit", f"must not be negative (got {limit})")
        size = min(limit or DEFAULT_AUTHORS_LIMIT, MAX_AUTHORS_LIMIT)
        authors = sorted({a for a in author_ids if a > 0})
        if not authors:
            return []
        return await self._storage.list_by_authors(
            authors, max_id or None, min_id or None, size, home_user_id or None
        )

    async def _live(self, tweet_id: int) -> Tweet:
        tweet = await self._storage.get_tweet(tweet_id)
        if tweet is None:
            raise NotFound("tweet", tweet_id)
        return tweet

    async def _authored(self, caller: int, tweet_id: int) -> Tweet:
        tweet = await self._live(tweet_id)
        if tweet.user_id != caller:
            raise PermissionDenied(f"tweet {tweet_id}: only its author may change it", reason="NOT_AUTHOR")
        return tweet


def _check_positive(value: int, field: str) -> None:
    if value <= 0:
        raise InvalidArgument(field, f"must be a positive ID (got {value})")


def _check_content(content: str, *, allow_empty: bool = False) -> None:
    """1 to 280 code points (0 to 280 for a tweet with media), taken as sent (no trimming)."""
    if not content and not allow_empty:
        raise InvalidArgument("content", "must not be empty")
    if len(content) > MAX_CONTENT:
        raise InvalidArgument("content", f"at most {MAX_CONTENT} characters (got {len(content)})")
    if "\x00" in content:
        raise InvalidArgument("content", "must not contain NUL characters")


def _same_media(prior: Tweet, media_ids: list[int]) -> Tweet:
    """The tweet an idempotent retry returns, if the retry names the same media."""
    if [m.media_id for m in prior.media] != media_ids:
        raise FailedPrecondition(
            "idempotency_key: already used for a different tweet",
            reason="IDEMPOTENCY_KEY_REUSED",
            metadata={"tweet_id": str(prior.tweet_id)},
        )
    return prior


def _idempotency_key(key: str) -> str | None:
    if not key:
        return None
    if len(key) > MAX_IDEMPOTENCY_KEY:
        raise InvalidArgument("idempotency_key", f"at most {MAX_IDEMPOTENCY_KEY} characters (got {len(key)})")
    if "\x00" in key:
        raise InvalidArgument("idempotency_key", "must not contain NUL characters")
    return key
