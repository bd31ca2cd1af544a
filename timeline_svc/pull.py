"""The home timeline computed at read time (fan-out on read) from the graph and tweets services."""

from __future__ import annotations

from collections.abc import Sequence

from timeline_svc.models import Tweet
from timeline_svc.ports import FollowGraph, TweetStore


class PullTimeline:
    """A HomeTimelineSource: the user's own tweets and those of everyone they follow, with the
    replies rule applied by the tweets service (home_user_id).

    The followee list is read on every call, so a follow or unfollow shows on the next read.
    """

    def __init__(self, graph: FollowGraph, tweets: TweetStore) -> None:
        self._graph = graph
        self._tweets = tweets

    async def home_tweets(self, user_id: int, *, max_id: int, min_id: int, limit: int) -> Sequence[Tweet]:
        authors = {user_id, *await self._graph.followee_ids(user_id)}
        return await self._tweets.tweets_by_authors(
            authors, max_id=max_id, min_id=min_id, limit=limit, home_user_id=user_id
        )
