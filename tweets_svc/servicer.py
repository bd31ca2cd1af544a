"""TweetService over gRPC: proto in, one call to the domain, proto out."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from chirp.tweets.v1 import tweets_pb2 as pb
from chirp.tweets.v1 import tweets_pb2_grpc
from chirp_core.rpc import caller_id
from tweets_svc.media.service import MediaService, UploadGrant
from tweets_svc.models import Media, Tweet, TweetVersion
from tweets_svc.service import TweetService

Context = grpc.aio.ServicerContext[Any, Any]


class TweetServicer(tweets_pb2_grpc.TweetServiceServicer):
    def __init__(self, service: TweetService, media: MediaService, media_base: str) -> None:
        """media_base: the URL prefix of media objects (tweets_svc.media.stores.media_url_base)."""
        self._service = service
        self._media = media
        self._media_base = media_base

    async def CreateTweet(self, request: pb.CreateTweetRequest, context: Context) -> pb.Tweet:
        tweet = await self._service.create_tweet(
            caller_id(context),
            request.user_id,
            request.content,
            request.reply_to,
            request.idempotency_key,
            list(request.media_ids),
        )
        return tweet_proto(tweet, self._media_base)

    async def GetTweet(self, request: pb.GetTweetRequest, context: Context) -> pb.Tweet:
        tweet = await self._service.get_tweet(request.tweet_id)
        return tweet_proto(tweet, self._media_base)

    async def EditTweet(self, request: pb.EditTweetRequest, context: Context) -> pb.Tweet:
        tweet = await self._service.edit_tweet(caller_id(context), request.tweet_id, request.content)
        return tweet_proto(tweet, self._media_base)

    async def DeleteTweet(self, request: pb.DeleteTweetRequest, context: Context) -> pb.DeleteTweetResponse:
        await self._service.delete_tweet(caller_id(context), request.tweet_id)
        return pb.DeleteTweetResponse()

    async def ListReplies(self, request: pb.ListRepliesRequest, context: Context) -> pb.ListRepliesResponse:
        page = await self._service.list_replies(request.tweet_id, request.limit, request.cursor)
        return pb.ListRepliesResponse(
            tweets=[tweet_proto(t, self._media_base) for t in page.tweets], next_cursor=page.next_cursor
        )

    async def ListTweetVersions(
        self, request: pb.ListTweetVersionsRequest, context: Context
    ) -> pb.ListTweetVersionsResponse:
        versions = await self._service.list_versions(request.tweet_id)
        return pb.ListTweetVersionsResponse(versions=[version_proto(v) for v in versions])

    async def BatchGetTweets(
        self, request: pb.BatchGetTweetsRequest, context: Context
    ) -> pb.BatchGetTweetsResponse:
        tweets = await self._service.batch_get(list(request.tweet_ids))
        return pb.BatchGetTweetsResponse(tweets=[tweet_proto(t, self._media_base) for t in tweets])

    async def ListTweetsByAuthors(
        self, request: pb.ListTweetsByAuthorsRequest, context: Context
    ) -> pb.ListTweetsByAuthorsResponse:
        tweets = await self._service.list_by_authors(
            list(request.author_ids), request.max_id, request.min_id, request.limit, request.home_user_id
        )
        return pb.ListTweetsByAuthorsResponse(tweets=[tweet_proto(t, self._media_base) for t in tweets])

    async def CreateMediaUpload(
        self, request: pb.CreateMediaUploadRequest, context: Context
    ) -> pb.CreateMediaUploadResponse:
        grant = await self._media.create_upload(caller_id(context), request.content_type, request.size_bytes)
        return upload_proto(grant)


def tweet_proto(tweet: Tweet, media_base: str) -> pb.Tweet:
    return pb.Tweet(
        tweet_id=tweet.tweet_id,
        user_id=tweet.user_id,
        content=tweet.content,
        reply_to=tweet.reply_to or 0,
        reply_to_user_id=tweet.reply_to_user_id or 0,
        conversation_id=tweet.conversation_id,
        created_at=_timestamp(tweet.created_at),
        edited_at=_timestamp(tweet.edited_at) if tweet.edited_at else None,
        version=tweet.version,
        media=[media_proto(m, media_base) for m in tweet.media],
    )


def media_proto(media: Media, media_base: str) -> pb.Media:
    return pb.Media(
        media_id=media.media_id,
        url=media_base + media.object_key,
        content_type=media.content_type,
        size_bytes=media.size_bytes,
        width=media.width,
        height=media.height,
    )


def upload_proto(grant: UploadGrant) -> pb.CreateMediaUploadResponse:
    form = grant.form
    upload = pb.MediaUpload(url=form.url, fields=dict(form.fields), expires_at=_timestamp(form.expires_at))
    return pb.CreateMediaUploadResponse(media_id=grant.media_id, upload=upload)


def version_proto(version: TweetVersion) -> pb.TweetVersion:
    return pb.TweetVersion(
        version=version.version, content=version.content, created_at=_timestamp(version.created_at)
    )


def _timestamp(moment: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp
