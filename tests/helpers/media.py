"""Helpers of the media tests: grants, uploads as a browser would send them, tweets with media."""

from __future__ import annotations

import io
from collections.abc import Mapping

import aiohttp

from chirp.tweets.v1 import tweets_pb2 as pb
from tests.helpers.api import Api, as_user


async def grant(api: Api, user_id: int, content_type: str, size_bytes: int) -> pb.CreateMediaUploadResponse:
    request = pb.CreateMediaUploadRequest(content_type=content_type, size_bytes=size_bytes)
    response: pb.CreateMediaUploadResponse = await api.tweets.CreateMediaUpload(
        request, metadata=as_user(user_id)
    )
    return response


async def post_form(
    url: str, fields: Mapping[str, str], data: bytes, *, file_type: str = "application/octet-stream"
) -> tuple[int, bytes]:
    """A browser-based POST upload: the fields in order, then the file, last, as `file`."""
    form = aiohttp.FormData()
    for name, value in fields.items():
        form.add_field(name, value)
    form.add_field("file", io.BytesIO(data), filename="upload.bin", content_type=file_type)
    async with aiohttp.ClientSession() as session, session.post(url, data=form) as response:
        return response.status, await response.read()


async def upload(
    api: Api, user_id: int, data: bytes, content_type: str, *, declared_size: int | None = None
) -> int:
    """Grant, then upload `data` through the grant; the media ID."""
    granted = await grant(api, user_id, content_type, declared_size or len(data))
    status, body = await post_form(granted.upload.url, granted.upload.fields, data)
    assert status == 204, body
    return granted.media_id


async def tweet_with_media(
    api: Api, user_id: int, media_ids: list[int], content: str = "", **fields: object
) -> pb.Tweet:
    request = pb.CreateTweetRequest(user_id=user_id, content=content, media_ids=media_ids, **fields)  # type: ignore[arg-type]
    tweet: pb.Tweet = await api.tweets.CreateTweet(request, metadata=as_user(user_id))
    return tweet
