"""The S3 store against moto's standalone S3 server (the real S3 protocol over HTTP), and the
tweets service on it."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import boto3
import grpc
import pytest
import pytest_asyncio

from chirp.tweets.v1 import tweets_pb2 as pb
from chirp.tweets.v1 import tweets_pb2_grpc
from chirp_core.errors import Unavailable
from chirp_core.grpc_server import RunningServer
from chirp_core.settings import Settings
from tests.helpers import media_files as files
from tests.helpers.api import Api, as_user, error_reason, free_port, rpc_error
from tests.helpers.media import grant, post_form, tweet_with_media
from tests.tweets_svc.media.conftest import BUCKET, fresh_database
from tweets_svc.media.stores.object_store import CACHE_CONTROL, ObjectNotFound
from tweets_svc.media.stores.s3 import S3MediaStore
from tweets_svc.server import start as start_tweets

PNG = files.png(32, 16)


def s3_settings(moto_url: str, **changes: object) -> Settings:
    return Settings(
        media_store="s3",
        media_s3_bucket=BUCKET,
        media_s3_endpoint_url=moto_url,
        media_s3_region="us-east-1",
        host="127.0.0.1",
    ).with_changes(**changes)


@pytest_asyncio.fixture(loop_scope="session")
async def s3_store(moto_url: str) -> AsyncIterator[S3MediaStore]:
    store = S3MediaStore.from_settings(s3_settings(moto_url))
    yield store
    await store.close()


async def test_a_presigned_post_uploads_straight_to_the_bucket(s3_store: S3MediaStore, moto_url: str) -> None:
    key = "b" * 32 + ".png"
    form = await s3_store.presign_upload(key, "image/png", len(PNG), timedelta(minutes=10))
    assert form.url == f"{moto_url}/{BUCKET}"
    assert abs(form.expires_at - (datetime.now(UTC) + timedelta(minutes=10))) < timedelta(seconds=5)
    policy = json.loads(base64.b64decode(form.fields["policy"]))
    assert {"Content-Type": "image/png"} in policy["conditions"]
    assert ["content-length-range", len(PNG), len(PNG)] in policy["conditions"]
    assert {"Cache-Control": CACHE_CONTROL} in policy["conditions"]

    assert await s3_store.head(key) is None
    status, body = await post_form(form.url, form.fields, PNG)
    assert status == 204, body

    stored = await s3_store.head(key)
    assert stored is not None
    assert (stored.size_bytes, stored.content_type) == (len(PNG), "image/png")
    assert await s3_store.read(key, 0, 8) == PNG[:8]
    assert await s3_store.read(key, len(PNG) - 4, 100) == PNG[-4:]
    assert await s3_store.read(key, len(PNG) + 10, 100) == b""
    metadata = boto3.client("s3", endpoint_url=moto_url).head_object(Bucket=BUCKET, Key=key)
    assert metadata["CacheControl"] == CACHE_CONTROL

    await s3_store.delete(key)
    assert await s3_store.head(key) is None
    await s3_store.delete(key)  # deleting what is gone is no error
    with pytest.raises(ObjectNotFound):
        await s3_store.read(key, 0, 8)


async def test_vendor_errors_become_ours(moto_url: str) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    unreachable = S3MediaStore.from_settings(s3_settings(closed))
    with pytest.raises(Unavailable) as raised:
        await unreachable.head("x.png")
    assert raised.value.reason == "MEDIA_STORE_UNAVAILABLE"
    await unreachable.close()

    no_bucket = S3MediaStore.from_settings(s3_settings(moto_url, media_s3_bucket="no-such-bucket"))
    with pytest.raises(Unavailable):
        await no_bucket.read("x.png", 0, 10)
    await no_bucket.close()


@pytest_asyncio.fixture(loop_scope="session")
async def s3_tweets(
    postgres_server: str, moto_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[Api, RunningServer]]:
    """A tweets service on the S3 store, with no CDN (media URLs are the bucket's)."""
    with fresh_database(postgres_server, "s3") as url:
        settings = s3_settings(
            moto_url, data_dir=tmp_path_factory.mktemp("s3"), media_janitor_interval_seconds=0.2
        )
        server = await start_tweets(settings, url, 0)
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
        stub = tweets_pb2_grpc.TweetServiceStub(channel)
        yield Api(users=None, graph=None, tweets=stub, timeline=None), server  # type: ignore[arg-type]
        await channel.close()
        await server.stop(0.5)


async def test_the_tweets_service_on_s3_checks_and_binds_uploads(
    s3_tweets: tuple[Api, RunningServer], moto_url: str
) -> None:
    api, _ = s3_tweets
    granted = await grant(api, 11, "image/png", len(PNG))
    assert granted.upload.url == f"{moto_url}/{BUCKET}"
    missing = await rpc_error(tweet_with_media(api, 11, [granted.media_id]))
    assert error_reason(missing) == "MEDIA_NOT_UPLOADED"

    assert (await post_form(granted.upload.url, granted.upload.fields, PNG))[0] == 204
    tweet = await tweet_with_media(api, 11, [granted.media_id], "from the bucket")
    [media] = tweet.media
    assert media.url == f"{moto_url}/{BUCKET}/{granted.upload.fields['key']}"
    assert (media.width, media.height, media.size_bytes) == (32, 16, len(PNG))

    jpeg_claim = await grant(api, 11, "image/jpeg", len(PNG))
    assert (await post_form(jpeg_claim.upload.url, jpeg_claim.upload.fields, PNG))[0] == 204
    mismatch = await rpc_error(tweet_with_media(api, 11, [jpeg_claim.media_id]))
    assert error_reason(mismatch) == "MEDIA_TYPE_MISMATCH"


async def test_deleting_a_tweet_deletes_its_object_from_the_bucket(
    s3_tweets: tuple[Api, RunningServer], moto_url: str
) -> None:
    api, _ = s3_tweets
    granted = await grant(api, 12, "image/png", len(PNG))
    assert (await post_form(granted.upload.url, granted.upload.fields, PNG))[0] == 204
    tweet = await tweet_with_media(api, 12, [granted.media_id])
    await api.tweets.DeleteTweet(pb.DeleteTweetRequest(tweet_id=tweet.tweet_id), metadata=as_user(12))

    client = boto3.client("s3", endpoint_url=moto_url)
    key = granted.upload.fields["key"]
    deadline = time.monotonic() + 10
    while client.list_objects_v2(Bucket=BUCKET, Prefix=key).get("KeyCount", 0):
        assert time.monotonic() < deadline, "the object is still in the bucket"
        await asyncio.sleep(0.05)
