"""The timeline's view of the services it reads from, and of where home timelines come from.

The gRPC implementations live in timeline_svc.upstreams; tests may pass in-memory ones.
ID bounds are exclusive and 0 means unbounded, as in ListTweetsByAuthors.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Protocol

from timeline_svc.models import Tweet, User


class UserDirectory(Protocol):
    async def get_user(self, user_id: int) -> User | None:
        """The profile, or None for an unknown user."""
        ...

    async def get_users(self, user_ids: Collection[int]) -> Mapping[int, User]:
        """The profiles found, by ID, in one round trip; unknown IDs are left out."""
        ...


class FollowGraph(Protocol):
    async def followee_ids(self, user_id: int) -> Collection[int]: ...


class TweetStore(Protocol):
    async def tweets_by_authors(
        self, author_ids: Collection[int], *, max_id: int, min_id: int, limit: int
    ) -> Sequence[Tweet]:
        """Live tweets of the authors with min_id < tweet_id < max_id, newest first, at most `limit`."""
        ...


class HomeTimelineSource(Protocol):
    """Where home timelines are read from: pulled from the other services now, a Redis
    fan-out store later. Tweets come without `author`; the caller hydrates them."""

    async def home_tweets(self, user_id: int, *, max_id: int, min_id: int, limit: int) -> Sequence[Tweet]:
        """The home timeline's tweets with min_id < tweet_id < max_id, newest first, at most `limit`."""
        ...
