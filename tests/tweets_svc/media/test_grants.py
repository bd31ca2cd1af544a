"""CreateMediaUpload: what may be uploaded, and the grant that comes back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import aiohttp
import grpc
import pytest

from chirp.tweets.v1 import tweets_pb2 as pb
from chirp_app.stack import Stack
from tests.helpers.api import Api, error_reason, rpc_error
from tests.helpers.media import grant
from tests.helpers.rest import call, sign_up

MB = 1024 * 1024


async def test_a_grant_is_a_presigned_post_for_one_object(api: Api, stack: Stack) -> None:
    user = await api.new_user()
    granted = await grant(api, user.user_id, "image/png", 1234)
    assert granted.media_id > 0
    assert granted.upload.url == stack.settings.media_gateway_url
    fields = dict(granted.upload.fields)
    assert fields["Content-Type"] == "image/png"
    assert {"key", "policy", "signature"} <= set(fields)
    assert fields["key"].endswith(".png") and len(fields["key"]) == 32 + 4
    expires = granted.upload.expires_at.ToDatetime(tzinfo=UTC)
    expected = datetime.now(UTC) + timedelta(seconds=stack.settings.media_upload_grant_seconds)
    assert abs(expires - expected) < timedelta(seconds=5)
    again = await grant(api, user.user_id, "image/png", 1234)
    assert again.media_id != granted.media_id
    assert again.upload.fields["key"] != fields["key"]


@pytest.mark.parametrize(
    ("content_type", "size"),
    [
        ("image/jpeg", 1),
        ("image/png", 8 * MB),
        ("image/gif", 8 * MB),
        ("image/webp", 100),
        ("video/mp4", 64 * MB),
        ("IMAGE/PNG", 10),
    ],
)
async def test_images_up_to_8_mb_and_video_up_to_64_mb_are_granted(
    api: Api, content_type: str, size: int
) -> None:
    user = await api.new_user()
    granted = await grant(api, user.user_id, content_type, size)
    assert granted.upload.fields["Content-Type"] == content_type.lower()


@pytest.mark.parametrize(
    ("content_type", "size", "field", "reason"),
    [
        ("image/svg+xml", 100, "content_type", "MEDIA_TYPE_NOT_ALLOWED"),
        ("text/html", 100, "content_type", "MEDIA_TYPE_NOT_ALLOWED"),
        ("", 100, "content_type", "MEDIA_TYPE_NOT_ALLOWED"),
        ("video/quicktime", 100, "content_type", "MEDIA_TYPE_NOT_ALLOWED"),
        ("image/png", 8 * MB + 1, "size_bytes", "MEDIA_TOO_LARGE"),
        ("video/mp4", 64 * MB + 1, "size_bytes", "MEDIA_TOO_LARGE"),
        ("image/png", 0, "size_bytes", "INVALID_FIELD"),
        ("image/png", -5, "size_bytes", "INVALID_FIELD"),
    ],
)
async def test_anything_else_is_invalid_and_names_the_field(
    api: Api, content_type: str, size: int, field: str, reason: str
) -> None:
    user = await api.new_user()
    error = await rpc_error(grant(api, user.user_id, content_type, size))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (error.details() or "").startswith(f"{field}:")
    assert error_reason(error) == reason


async def test_a_grant_needs_a_caller(api: Api) -> None:
    error = await rpc_error(
        api.tweets.CreateMediaUpload(pb.CreateMediaUploadRequest(content_type="image/png", size_bytes=10))
    )
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_post_media_over_rest(http: aiohttp.ClientSession) -> None:
    user = await sign_up(http)
    reply = await call(
        http, "POST", "/media", user=user, json={"content_type": "image/gif", "size_bytes": 42}
    )
    reply.expect(200)
    body = reply.json
    assert isinstance(body["media_id"], str) and int(body["media_id"]) > 0
    assert set(body["upload"]) == {"url", "fields", "expires_at"}
    assert body["upload"]["fields"]["Content-Type"] == "image/gif"

    (await call(http, "POST", "/media", json={"content_type": "image/gif", "size_bytes": 42})).expect(401)
    refused = await call(
        http, "POST", "/media", user=user, json={"content_type": "image/tiff", "size_bytes": 42}
    )
    refused.field_error("content_type")
