"""The timeline's view of the services and stores it depends on, and of where home timelines come from.

The gRPC implementations live in timeline_svc.upstreams, the Redis ones in timeline_svc.storage and
timeline_svc.live; tests may pass in-memory ones. They raise only the errors below (and ChirpError),
never a gRPC or Redis exception, so the rules decide on failures without knowing the vendors.
ID bounds are exclusive and 0 means unbounded, as in ListTweetsByAuthors.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Protocol

from chirp_core import errors
from timeline_svc.models import Entry, TimelineTweet, Tweet, User

# The gRPC codes of a call that did not get an answer (as opposed to an answer that is an error).
OUTAGE_CODES = frozenset({"UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "CANCELLED"})


class UserDirectory(Protocol):
    async def get_user(self, user_id: int) -> User | None:
        """The profile, or None for an unknown user."""
        ...

    async def get_users(self, user_ids: Collection[int]) -> Mapping[int, User]:
        """The profiles found, by ID, in one round trip; unknown IDs are left out."""
        ...


class Unavailable(errors.Unavailable):
    """A service or store this one depends on did not answer: the same call may succeed later
    (the workers retry it for as long as it lasts)."""


class StoreUnavailable(Unavailable):
    """Redis failed or did not answer: reads are answered from PostgreSQL instead."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(f"Redis failed: {cause}", reason="REDIS_UNAVAILABLE")


class UpstreamError(errors.ChirpError):
    """Another service answered a call with an error, or did not answer (then it is also an
    Unavailable: see upstream_error). Our caller gets the same gRPC code (`code`), message and
    ErrorInfo."""

    def __init__(
        self, code: str, message: str, *, reason: str, metadata: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message, reason=reason, metadata=metadata)
        self.code = code  # type: ignore[misc]  # the class's default, per instance

    @property
    def outage(self) -> bool:
        return self.code in OUTAGE_CODES


class UpstreamUnavailable(UpstreamError, Unavailable):
    """An UpstreamError with one of OUTAGE_CODES."""


def upstream_error(
    code: str, message: str, *, reason: str = "", metadata: Mapping[str, str] | None = None
) -> UpstreamError:
    kind = UpstreamUnavailable if code in OUTAGE_CODES else UpstreamError
    return kind(code, message, reason=reason or code, metadata=metadata)


class UnknownUser(LookupError):
    """The graph service has no such user (Chirp deletes no accounts: the ID came from elsewhere)."""

    def __init__(self, user_id: int) -> None:
        super().__init__(f"the graph service has no user {user_id}")
        self.user_id = user_id


class FollowGraph(Protocol):
    async def followee_ids(self, user_id: int) -> Collection[int]: ...

    def follower_batches(self, user_id: int, batch_size: int) -> AsyncIterator[list[int]]:
        """Every follower of user_id, in batches; raises UnknownUser for an unknown user."""
        ...

    async def followers_among(self, user_id: int, candidate_ids: Collection[int]) -> set[int]:
        """The candidates who follow user_id, in one round trip."""
        ...

    async def follower_count(self, user_id: int) -> int | None:
        """How many follow user_id; None for an unknown user."""
        ...


class TweetStore(Protocol):
    async def tweets_by_authors(
        self, author_ids: Collection[int], *, max_id: int, min_id: int, limit: int, home_user_id: int = 0
    ) -> Sequence[Tweet]:
        """Live tweets of the authors with min_id < tweet_id < max_id, newest first, at most `limit`.
        With home_user_id, replies follow the home timeline's rule (ListTweetsByAuthors)."""
        ...

    async def tweets_by_ids(self, tweet_ids: Collection[int]) -> Sequence[Tweet]:
        """The live tweets among tweet_ids (at most 1,000), in one round trip."""
        ...


class HomeTimelineSource(Protocol):
    """Where home timelines are read from: pulled from the other services (timeline_svc.pull) or
    the Redis fan-out store (timeline_svc.home). Tweets may come without `author`; the caller
    hydrates those. Cached tweets (models.CachedTweet) have theirs."""

    async def home_tweets(
        self, user_id: int, *, max_id: int, min_id: int, limit: int
    ) -> Sequence[TimelineTweet]:
        """The home timeline's tweets with min_id < tweet_id < max_id, newest first, at most `limit`."""
        ...


class LiveUnavailable(Exception):
    """Pub/sub failed (Redis unreachable): the stream polls the pull path meanwhile."""


@dataclass(frozen=True)
class LiveBatch:
    """What came on a live subscription: tweets in their order of arrival, and whether the
    reader's follows changed. Empty when it was quiet for a while."""

    entries: list[Entry]
    follows_changed: bool = False


class Subscription(Protocol):
    def from_celebrity(self, entry: Entry) -> bool:
        """Whether the entry came on a celebrity's channel (not pushed, so not yet filtered)."""
        ...

    async def next(self, quiet_after: float) -> LiveBatch: ...


class LiveTimelines(Protocol):
    """Pub/sub for the live stream (timeline_svc.live.LiveFeed). Every method may raise
    LiveUnavailable."""

    def subscribe(self, reader: int) -> AbstractAsyncContextManager[Subscription]: ...

    async def touch(self, reader: int) -> bool:
        """Keep the reader's timeline warm; False when it is cold."""
        ...

    async def followed_among(self, reader: int, user_ids: Collection[int]) -> set[int]:
        """Those of user_ids the reader follows (the reply rule of a celebrity's tweet)."""
        ...


class Hydrator(Protocol):
    async def hydrate_ids(self, ids: Sequence[int]) -> dict[int, TimelineTweet]:
        """The live tweets among ids, with their authors."""
        ...
