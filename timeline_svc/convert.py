"""Between the wire messages and timeline_svc.models."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from google.protobuf import timestamp_pb2

from chirp.timeline.v1 import timeline_pb2
from chirp.tweets.v1 import tweets_pb2
from chirp.users.v1 import users_pb2
from timeline_svc.models import CachedTweet, Media, TimelineTweet, Tweet, User


def user_from_proto(message: users_pb2.User) -> User:
    return User(
        user_id=message.user_id,
        handle=message.handle,
        display_name=message.display_name,
        created_at=_time(message.created_at if message.HasField("created_at") else None),
    )


def user_to_proto(user: User) -> users_pb2.User:
    return users_pb2.User(
        user_id=user.user_id,
        handle=user.handle,
        display_name=user.display_name,
        created_at=_timestamp(user.created_at),
    )


def tweet_from_proto(message: tweets_pb2.Tweet) -> Tweet:
    return Tweet(
        tweet_id=message.tweet_id,
        user_id=message.user_id,
        content=message.content,
        created_at=_time(message.created_at if message.HasField("created_at") else None),
        edited_at=_time(message.edited_at if message.HasField("edited_at") else None),
        version=message.version,
        reply_to=message.reply_to,
        reply_to_user_id=message.reply_to_user_id,
        conversation_id=message.conversation_id,
        author=user_from_proto(message.author) if message.HasField("author") else None,
        media=tuple(media_from_proto(m) for m in message.media),
    )


def tweet_to_proto(tweet: Tweet) -> tweets_pb2.Tweet:
    return tweets_pb2.Tweet(
        tweet_id=tweet.tweet_id,
        user_id=tweet.user_id,
        content=tweet.content,
        created_at=_timestamp(tweet.created_at),
        edited_at=_timestamp(tweet.edited_at),
        version=tweet.version,
        reply_to=tweet.reply_to,
        reply_to_user_id=tweet.reply_to_user_id,
        conversation_id=tweet.conversation_id,
        author=user_to_proto(tweet.author) if tweet.author is not None else None,
        media=[media_to_proto(m) for m in tweet.media],
    )


def media_from_proto(message: tweets_pb2.Media) -> Media:
    return Media(
        media_id=message.media_id,
        url=message.url,
        content_type=message.content_type,
        size_bytes=message.size_bytes,
        width=message.width,
        height=message.height,
    )


def media_to_proto(media: Media) -> tweets_pb2.Media:
    return tweets_pb2.Media(
        media_id=media.media_id,
        url=media.url,
        content_type=media.content_type,
        size_bytes=media.size_bytes,
        width=media.width,
        height=media.height,
    )


def _time(stamp: timestamp_pb2.Timestamp | None) -> datetime | None:
    return None if stamp is None else stamp.ToDatetime(tzinfo=UTC)


def _timestamp(moment: datetime | None) -> timestamp_pb2.Timestamp | None:
    if moment is None:
        return None
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def cached_tweet(tweet: Tweet) -> CachedTweet:
    """The tweet as the tweet cache holds it (and as GetHomeTimeline sends it)."""
    return CachedTweet(tweet.tweet_id, tweet_to_proto(tweet).SerializeToString())


def tweet_message(tweet: TimelineTweet) -> tweets_pb2.Tweet:
    if isinstance(tweet, CachedTweet):
        return tweets_pb2.Tweet.FromString(tweet.data)
    return tweet_to_proto(tweet)


def tweet_bytes(tweet: TimelineTweet) -> bytes:
    if isinstance(tweet, CachedTweet):
        return tweet.data
    return tweet_to_proto(tweet).SerializeToString()


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


_TWEETS_TAG = _varint(
    timeline_pb2.GetHomeTimelineResponse.DESCRIPTOR.fields_by_name["tweets"].number << 3 | 2
)


def home_timeline_response(tweets: Sequence[TimelineTweet], next_cursor: str) -> bytes:
    """GetHomeTimelineResponse's wire bytes, built from the tweets' bytes without decoding them: a
    repeated message field is its tag, the length and the message, once per element, and the
    other fields (in field-number order, after `tweets`) are a small message of their own."""
    parts: list[bytes] = []
    for tweet in tweets:
        data = tweet_bytes(tweet)
        parts += (_TWEETS_TAG, _varint(len(data)), data)
    if next_cursor:
        parts.append(timeline_pb2.GetHomeTimelineResponse(next_cursor=next_cursor).SerializeToString())
    return b"".join(parts)
