"""TweetService over gRPC: proto in, one call to the domain, proto out."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from chirp.tweets.v1 import tweets_pb2 as pb
from chirp.tweets.v1 import tweets_pb2_grpc
from chirp_core.rpc import caller_id
from tweets_svc.models import Tweet, TweetVersion
from tweets_svc.service import TweetService

Context = grpc.aio.ServicerContext[Any, Any]


class TweetServicer(tweets_pb2_grpc.TweetServiceServicer):
    def __init__(self, service: TweetService) -> None:
        self._service = service

    async def CreateTweet(self, request: pb.CreateTweetRequest, context: Context) -> pb.CreateTweetResponse:
        tweet = await self._service.create_tweet(
            caller_id(context), request.user_id, request.content, request.reply_to, request.idempotency_key
        )
        return pb.CreateTweetResponse(tweet=tweet_proto(tweet))

    async def GetTweet(self, request: pb.GetTweetRequest, context: Context) -> pb.GetTweetResponse:
        return pb.GetTweetResponse(tweet=tweet_proto(await self._service.get_tweet(request.tweet_id)))

    async def EditTweet(self, request: pb.EditTweetRequest, context: Context) -> pb.EditTweetResponse:
        tweet = await self._service.edit_tweet(caller_id(context), request.tweet_id, request.content)
        return pb.EditTweetResponse(tweet=tweet_proto(tweet))

    async def DeleteTweet(self, request: pb.DeleteTweetRequest, context: Context) -> pb.DeleteTweetResponse:
        await self._service.delete_tweet(caller_id(context), request.tweet_id)
        return pb.DeleteTweetResponse()

    async def ListReplies(self, request: pb.ListRepliesRequest, context: Context) -> pb.ListRepliesResponse:
        page = await self._service.list_replies(request.tweet_id, request.limit, request.cursor)
        return pb.ListRepliesResponse(
            tweets=[tweet_proto(t) for t in page.tweets], next_cursor=page.next_cursor
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
        return pb.BatchGetTweetsResponse(tweets=[tweet_proto(t) for t in tweets])

    async def ListTweetsByAuthors(
        self, request: pb.ListTweetsByAuthorsRequest, context: Context
    ) -> pb.ListTweetsByAuthorsResponse:
        tweets = await self._service.list_by_authors(
            list(request.author_ids), request.max_id, request.min_id, request.limit
        )
        return pb.ListTweetsByAuthorsResponse(tweets=[tweet_proto(t) for t in tweets])


def tweet_proto(tweet: Tweet) -> pb.Tweet:
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
    )


def version_proto(version: TweetVersion) -> pb.TweetVersion:
    return pb.TweetVersion(
        version=version.version, content=version.content, created_at=_timestamp(version.created_at)
    )


def _timestamp(moment: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp
