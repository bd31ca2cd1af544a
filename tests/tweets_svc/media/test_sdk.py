"""The Python SDK's media calls against the media stack's gateway (local store): upload straight
to the store, post with the media ID, read the media back from its URL; bad input raises the
typed errors with the field or reason named, and posts nothing."""

from __future__ import annotations

import asyncio
import urllib.request
import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from chirp_client import AsyncClient, Client, FailedPrecondition, InvalidArgument, NotFound

from chirp_app.stack import Stack
from tests.helpers import media_files as files
from tests.helpers.rest import PASSWORD


@pytest_asyncio.fixture(loop_scope="session")
async def author(stack: Stack) -> AsyncIterator[AsyncClient]:
    assert stack.edge is not None
    async with AsyncClient(stack.edge.url) as client:
        handle = f"sdk_{uuid.uuid4().hex[:10]}"
        await client.sign_up(handle, PASSWORD)
        await client.log_in(handle, PASSWORD)
        yield client


def download(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:
        return bytes(response.read())


async def test_upload_post_and_download_with_the_async_client(author: AsyncClient) -> None:
    photo = files.png(640, 480)
    media_id = await author.upload_media(photo, "image/png")

    tweet = await author.post_tweet("a photo", media_ids=[media_id])

    [media] = tweet.media
    assert (media.media_id, media.content_type, media.size_bytes) == (media_id, "image/png", len(photo))
    assert (media.width, media.height) == (640, 480)
    assert (await author.get_tweet(tweet.tweet_id)).media == tweet.media
    assert await asyncio.to_thread(download, media.url) == photo


async def test_the_blocking_client_uploads_too(stack: Stack) -> None:
    assert stack.edge is not None
    url = stack.edge.url

    def walk() -> tuple[bytes, str]:
        with Client(url) as client:
            handle = f"sdk_{uuid.uuid4().hex[:10]}"
            client.sign_up(handle, PASSWORD)
            client.log_in(handle, PASSWORD)
            photo = files.jpeg(300, 200)
            media_id = client.upload_media(photo, "image/jpeg")
            tweet = client.post_tweet("blocking", media_ids=[media_id])
            assert [(m.width, m.height) for m in tweet.media] == [(300, 200)]
            return photo, tweet.media[0].url

    photo, media_url = await asyncio.to_thread(walk)
    assert await asyncio.to_thread(download, media_url) == photo


async def test_bad_media_raise_typed_errors_and_post_nothing(author: AsyncClient) -> None:
    with pytest.raises(InvalidArgument) as refused:
        await author.upload_media(b"plain text", "text/plain")
    assert "content_type" in refused.value.message

    with pytest.raises(NotFound) as unknown:
        await author.post_tweet("no such upload", media_ids=[123_456_789])
    assert unknown.value.reason == "MEDIA_NOT_FOUND"

    media_id = await author.upload_media(files.png(10, 10), "image/jpeg")
    with pytest.raises(FailedPrecondition) as mismatch:
        await author.post_tweet("a png called a jpeg", media_ids=[media_id])
    assert mismatch.value.reason == "MEDIA_TYPE_MISMATCH"

    assert author.user_id is not None
    assert [t async for t in author.user_tweets(author.user_id)] == []
