"""Timeline rules: who may read which timeline, paging, author hydration, and the live stream."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta

from chirp_core.errors import InvalidArgument, NotFound, require_caller
from chirp_core.metrics import Metrics
from chirp_core.paging import decode_cursor, encode_cursor, page_size
from chirp_core.snowflake import lowest_id_at, timestamp_of
from chirp_core.tasks import raise_if_cancelled
from timeline_svc import visibility
from timeline_svc.models import Entry, Page, TimelineTweet, Tweet
from timeline_svc.ports import (
    HomeTimelineSource,
    Hydrator,
    LiveTimelines,
    LiveUnavailable,
    TweetStore,
    UserDirectory,
)

log = logging.getLogger("chirp.timeline")

HOME_CURSOR = "home"
USER_CURSOR = "user"
# A reconnecting stream replays at most this many missed tweets: the newest ones.
STREAM_BACKLOG = 100
# The most tweets one poll of the stream asks for (the most ListTweetsByAuthors returns).
POLL_LIMIT = 1000
# A tweet's ID is taken before its transaction commits, so a poll may see a tweet before an
# older one becomes visible. Each poll therefore looks back this far behind the newest tweet
# yielded, and skips what it already yielded.
STREAM_LOOKBACK = timedelta(seconds=2)
# How long a live stream may be silent before it refreshes its reader's warm TTL.
STREAM_TOUCH_SECONDS = 30.0
# While Redis is down the stream polls the pull path this many times, then tries pub/sub again.
PUBSUB_RETRY_POLLS = 10
SEEN_KEPT = 1024


def _utc_now() -> datetime:
    return datetime.now(UTC)


class TimelineService:
    def __init__(
        self,
        source: HomeTimelineSource,
        users: UserDirectory,
        tweets: TweetStore,
        *,
        poll_seconds: float,
        pull: HomeTimelineSource | None = None,
        live: LiveTimelines | None = None,
        hydrator: Hydrator | None = None,
        metrics: Metrics | None = None,
        now: Callable[[], datetime] = _utc_now,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._source = source
        self._pull = pull or source
        self._users = users
        self._tweets = tweets
        self._poll_seconds = poll_seconds
        self._live = live
        self._hydrator = hydrator
        self._metrics = metrics or Metrics()
        self._now = now
        self._sleep = sleep

    async def home_timeline(self, caller_id: int | None, user_id: int, limit: int, cursor: str) -> Page:
        _check_user_id(user_id)
        require_caller(caller_id, user_id, "user_id")
        size = page_size(limit)
        max_id = _position(cursor, HOME_CURSOR)
        tweets = await self._source.home_tweets(user_id, max_id=max_id, min_id=0, limit=size + 1)
        return _page(await self._hydrate(tweets[:size]), len(tweets) > size, HOME_CURSOR)

    async def user_timeline(self, user_id: int, limit: int, cursor: str) -> Page:
        _check_user_id(user_id)
        size = page_size(limit)
        max_id = _position(cursor, USER_CURSOR)
        author = await self._users.get_user(user_id)
        if author is None:
            raise NotFound("user", user_id)
        tweets = await self._tweets.tweets_by_authors([user_id], max_id=max_id, min_id=0, limit=size + 1)
        return _page([t.with_author(author) for t in tweets[:size]], len(tweets) > size, USER_CURSOR)

    async def open_home_stream(
        self, caller_id: int | None, user_id: int, since_id: int
    ) -> AsyncIterator[TimelineTweet]:
        """Check the request and fix where the stream starts; iterate the result to follow it.

        Nothing posted after this returns is missed. The iterator never ends by itself.
        """
        _check_user_id(user_id)
        require_caller(caller_id, user_id, "user_id")
        if since_id < 0:
            raise InvalidArgument("since_id", f"must not be negative (got {since_id})")
        if since_id > 0:
            # From PostgreSQL: exact, where the Redis timeline may lag the workers by a moment,
            # and then the replay would come out of order. It also warms the timeline.
            backlog = await self._pull.home_tweets(user_id, max_id=0, min_id=since_id, limit=STREAM_BACKLOG)
            await self._source.home_tweets(user_id, max_id=0, min_id=0, limit=1)
            # When more were missed than are replayed, the skipped older ones must stay skipped.
            start = since_id if len(backlog) < STREAM_BACKLOG else min(t.tweet_id for t in backlog) - 1
            return self._stream(user_id, _SeenWindow(start, STREAM_LOOKBACK), backlog)
        # This read also warms the reader's timeline, so the workers publish to it from now on.
        newest = await self._source.home_tweets(user_id, max_id=0, min_id=0, limit=1)
        # "Now" by the clock as well as by the newest tweet, so that someone followed during
        # the stream does not have their older tweets replayed.
        start = max([lowest_id_at(self._now()) - 1, *(t.tweet_id for t in newest)])
        return self._stream(user_id, _SeenWindow(start, STREAM_LOOKBACK), [])

    async def _stream(
        self, user_id: int, window: _SeenWindow, pending: Sequence[TimelineTweet]
    ) -> AsyncIterator[TimelineTweet]:
        for tweet in await self._hydrate(window.admit(pending)):
            yield tweet
        while True:
            if self._live is not None:
                try:
                    async for tweet in self._push_stream(user_id, window):
                        yield tweet
                except LiveUnavailable as exc:
                    log.warning("live stream of %d: %s; polling PostgreSQL", user_id, exc)
            async for tweet in self._poll(user_id, window, PUBSUB_RETRY_POLLS if self._live else None):
                yield tweet

    async def _push_stream(self, user_id: int, window: _SeenWindow) -> AsyncIterator[TimelineTweet]:
        """Tweets as the workers announce them. Each (re)subscription is followed by a read of
        the timeline above the window, so nothing announced before it was listening is missed."""
        assert self._live is not None and self._hydrator is not None
        gauge = self._metrics.stream_subscribers.labels("pubsub")
        gauge.inc()
        try:
            async with self._live.subscribe(user_id) as subscription:
                catch_up = True
                while True:
                    raise_if_cancelled()
                    if catch_up:
                        pending = await self._source.home_tweets(
                            user_id, max_id=0, min_id=window.floor(), limit=POLL_LIMIT
                        )
                        for tweet in await self._hydrate(window.admit(pending)):
                            yield tweet
                    batch = await subscription.next(STREAM_TOUCH_SECONDS)
                    catch_up = batch.follows_changed
                    if not batch.entries and not batch.follows_changed:
                        # Quiet: keep the timeline warm; a cold one (flushed) is rebuilt by a read.
                        catch_up = not await self._live.touch(user_id)
                        continue
                    # The workers pushed only what the reply rule lets through; a celebrity's
                    # tweets are published to all their followers, so the rule is applied here.
                    unfiltered = [e for e in batch.entries if subscription.from_celebrity(e)]
                    rejected = {e.tweet_id for e in await self._replies_not_reaching(user_id, unfiltered)}
                    allowed = [e.tweet_id for e in batch.entries if e.tweet_id not in rejected]
                    tweets = await self._hydrator.hydrate_ids(allowed)
                    for tweet in window.admit(tweets.values()):
                        yield tweet
        finally:
            gauge.dec()

    async def _replies_not_reaching(self, reader: int, entries: Sequence[Entry]) -> list[Entry]:
        """The entries the reply rule keeps from the reader, with one look-up of their follows."""
        assert self._live is not None
        answered = {
            e.reply_to_user_id
            for e in entries
            if not visibility.reaches_every_follower(e.author_id, e.reply_to_user_id)
        }
        following = await self._live.followed_among(reader, answered - {reader}) if answered else set()
        return [
            e
            for e in entries
            if not visibility.reply_reaches(reader, e.author_id, e.reply_to_user_id, following)
        ]

    async def _poll(
        self, user_id: int, window: _SeenWindow, rounds: int | None
    ) -> AsyncIterator[TimelineTweet]:
        """Poll the pull path: the pull mode, or while Redis is down (`rounds` polls, then the
        caller tries pub/sub again)."""
        gauge = self._metrics.stream_subscribers.labels("poll")
        gauge.inc()
        try:
            done = 0
            while rounds is None or done < rounds:
                raise_if_cancelled()
                done += 1
                await self._sleep(self._poll_seconds)
                pending = await self._pull.home_tweets(
                    user_id, max_id=0, min_id=window.floor(), limit=POLL_LIMIT
                )
                for tweet in await self._hydrate(window.admit(pending)):
                    yield tweet
        finally:
            gauge.dec()

    async def _hydrate(self, tweets: Sequence[TimelineTweet]) -> list[TimelineTweet]:
        """Fill in the authors the source did not (tweets from the tweet cache have theirs)."""
        missing = {t.user_id for t in tweets if isinstance(t, Tweet) and t.author is None}
        if not missing:
            return list(tweets)
        authors = await self._users.get_users(missing)
        return [
            t.with_author(authors.get(t.user_id)) if isinstance(t, Tweet) and t.author is None else t
            for t in tweets
        ]


class _SeenWindow:
    """Where a stream stands: tweets at or below `start` are never yielded, and the IDs yielded
    within the lookback (and the last SEEN_KEPT ones, which pub/sub may announce late or twice)
    are remembered so that each tweet is yielded once."""

    def __init__(self, start: int, lookback: timedelta) -> None:
        self._start = start
        self._newest = start
        self._lookback = lookback
        self._seen: set[int] = set()
        self._recent: deque[int] = deque(maxlen=SEEN_KEPT)

    def floor(self) -> int:
        """The exclusive lower bound of the next poll."""
        behind = lowest_id_at(timestamp_of(self._newest) - self._lookback) - 1
        return max(self._start, behind)

    def admit(self, tweets: Iterable[TimelineTweet]) -> list[TimelineTweet]:
        """The tweets not yielded yet, oldest first; from now on they count as yielded."""
        fresh = {t.tweet_id: t for t in tweets if t.tweet_id > self._start and t.tweet_id not in self._seen}
        ordered = [fresh[tweet_id] for tweet_id in sorted(fresh)]
        if ordered:
            self._seen.update(fresh)
            self._recent.extend(fresh)
            self._newest = max(self._newest, ordered[-1].tweet_id)
            floor = self.floor()
            self._seen = {tweet_id for tweet_id in self._seen if tweet_id > floor}
            self._seen.update(self._recent)
        return ordered


def _check_user_id(user_id: int) -> None:
    if user_id <= 0:
        raise InvalidArgument("user_id", f"must be a user ID (got {user_id})")


def _position(cursor: str, kind: str) -> int:
    """The max_id a page starts below: 0 (no bound) for the first page."""
    keys = decode_cursor(cursor, kind, 1)
    if keys is None:
        return 0
    if keys[0] <= 0:
        raise InvalidArgument("cursor", "is not a cursor this server issued for this list")
    return keys[0]


def _page(tweets: Sequence[TimelineTweet], has_more: bool, kind: str) -> Page:
    return Page(tweets, encode_cursor(kind, tweets[-1].tweet_id) if has_more and tweets else "")
