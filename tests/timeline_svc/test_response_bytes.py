"""GetHomeTimelineResponse built from the cached tweets' bytes (convert.home_timeline_response) is
the message GetHomeTimeline would otherwise build and serialize: same bytes, same parse."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from chirp.timeline.v1 import timeline_pb2
from timeline_svc.convert import cached_tweet, home_timeline_response, tweet_message, tweet_to_proto
from timeline_svc.models import Media, TimelineTweet, Tweet, User

AUTHOR = User(7, "ada", "Ada Lovelace ✨", datetime(2024, 3, 1, tzinfo=UTC))
PLAIN = Tweet(2**62 + 3, 7, "hello", datetime(2025, 1, 2, 3, 4, 5, 600000, tzinfo=UTC), author=AUTHOR)
EDITED = Tweet(
    2**62 + 2,
    7,
    "edited ✓",
    PLAIN.created_at,
    edited_at=datetime(2025, 1, 3, tzinfo=UTC),
    version=3,
    author=AUTHOR,
)
REPLY = Tweet(
    2**62 + 1,
    7,
    "a reply",
    PLAIN.created_at,
    reply_to=5,
    reply_to_user_id=9,
    conversation_id=5,
    author=AUTHOR,
)
MEDIA = Tweet(
    2**62,
    7,
    "",
    PLAIN.created_at,
    media=(
        Media(11, "http://cdn/m/11.png", "image/png", 1234, 640, 480),
        Media(12, "http://cdn/m/12.jpg", "image/jpeg", 99, 0, 0),
    ),
    author=AUTHOR,
)
NO_AUTHOR = Tweet(17, 8, "x" * 280, PLAIN.created_at)  # its author could not be found
LONG = [Tweet(100 + i, 7, "y" * (i * 7), PLAIN.created_at, author=AUTHOR) for i in range(40)]


def message_built(tweets: list[Tweet], next_cursor: str) -> timeline_pb2.GetHomeTimelineResponse:
    return timeline_pb2.GetHomeTimelineResponse(
        tweets=[tweet_to_proto(t) for t in tweets], next_cursor=next_cursor
    )


CASES = {
    "empty": ([], ""),
    "the last page": ([PLAIN, EDITED, REPLY, MEDIA], ""),
    "with a cursor": ([PLAIN, REPLY], "aG9tZToxMjM0NTY3ODkw"),
    "only a cursor": ([], "next"),
    "messages over 127 bytes (two-byte lengths)": (LONG, "c" * 200),
    "no author": ([NO_AUTHOR, PLAIN], "x"),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
@pytest.mark.parametrize("cached", ["all cached", "none cached", "every other cached"])
def test_bytes_built_equals_message_built(case: str, cached: str) -> None:
    tweets, cursor = CASES[case]
    items: list[TimelineTweet] = [
        cached_tweet(t) if cached == "all cached" or (cached != "none cached" and i % 2 == 0) else t
        for i, t in enumerate(tweets)
    ]
    expected = message_built(tweets, cursor)

    built = home_timeline_response(items, cursor)

    assert built == expected.SerializeToString()
    assert timeline_pb2.GetHomeTimelineResponse.FromString(built) == expected


def test_a_cached_tweet_reads_back_as_its_message() -> None:
    for tweet in (PLAIN, EDITED, REPLY, MEDIA):
        assert tweet_message(cached_tweet(tweet)) == tweet_to_proto(tweet) == tweet_message(tweet)
