"""The S3 media store: any S3-compatible endpoint (AWS, MinIO, Ceph) through boto3.

boto3 blocks, so every call runs in a worker thread (boto3 clients are thread-safe). Credentials
come from boto3's own chain. The identity needs s3:PutObject (the presigned POST is signed with
it), s3:GetObject, s3:DeleteObject and s3:ListBucket: without ListBucket, S3 answers 403 instead
of 404 for an object that is not there, which reads here as an unavailable store.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Literal, TypeVar

import boto3
import botocore.config
import botocore.exceptions

from chirp_core.errors import Unavailable
from chirp_core.settings import Settings
from tweets_svc.media.stores.object_store import CACHE_CONTROL, ObjectNotFound, StoredObject, UploadForm

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

T = TypeVar("T")
_MISSING = frozenset({"404", "NoSuchKey", "NotFound"})
_RANGE_PAST_END = "InvalidRange"


def bucket_url(settings: Settings) -> str:
    """The bucket's own public URL, with a trailing slash: path style on a custom endpoint,
    virtual-hosted style on AWS."""
    bucket = settings.media_s3_bucket
    if settings.media_s3_endpoint_url:
        return f"{settings.media_s3_endpoint_url.rstrip('/')}/{bucket}/"
    return f"https://{bucket}.s3.{settings.media_s3_region or 'us-east-1'}.amazonaws.com/"


class S3MediaStore:
    """A MediaStore over one bucket. `upload_client` only signs grants (no network); its endpoint
    is the one clients reach, which may differ from the one the services use."""

    def __init__(self, client: S3Client, upload_client: S3Client, bucket: str) -> None:
        self._client = client
        self._upload_client = upload_client
        self.bucket = bucket

    @classmethod
    def from_settings(cls, settings: Settings) -> S3MediaStore:
        session = boto3.session.Session()
        # Custom endpoints (MinIO, Ceph, test servers) rarely have per-bucket DNS names.
        style: Literal["path", "auto"] = "path" if settings.media_s3_endpoint_url else "auto"
        config = botocore.config.Config(
            signature_version="s3v4",
            s3={"addressing_style": style},
            retries={"mode": "standard", "max_attempts": 3},
            connect_timeout=5,
            read_timeout=settings.default_rpc_timeout_seconds,
        )
        region = settings.media_s3_region or None

        def client(endpoint: str) -> S3Client:
            return session.client("s3", endpoint_url=endpoint or None, region_name=region, config=config)

        main = client(settings.media_s3_endpoint_url)
        upload_endpoint = settings.media_s3_upload_endpoint_url
        upload = client(upload_endpoint) if upload_endpoint else main
        return cls(main, upload, settings.media_s3_bucket)

    async def presign_upload(
        self, key: str, content_type: str, size_bytes: int, expires_in: timedelta
    ) -> UploadForm:
        fields = {"Content-Type": content_type, "Cache-Control": CACHE_CONTROL}
        conditions: list[dict[str, str] | list[str | int]] = [
            {"Content-Type": content_type},
            {"Cache-Control": CACHE_CONTROL},
            ["content-length-range", size_bytes, size_bytes],
        ]
        post = await self._call(
            key,
            lambda: self._upload_client.generate_presigned_post(
                Bucket=self.bucket,
                Key=key,
                Fields=fields,
                Conditions=conditions,
                ExpiresIn=int(expires_in.total_seconds()),
            ),
        )
        form = {name: str(value) for name, value in post["fields"].items()}
        return UploadForm(post["url"], form, _policy_expiry(form["policy"]))

    async def head(self, key: str) -> StoredObject | None:
        try:
            answer = await self._call(key, lambda: self._client.head_object(Bucket=self.bucket, Key=key))
        except ObjectNotFound:
            return None
        return StoredObject(key, answer["ContentLength"], answer.get("ContentType", ""), answer["ETag"])

    async def read(self, key: str, offset: int, length: int) -> bytes:
        if length <= 0:
            return b""

        def get() -> bytes:
            answer = self._client.get_object(
                Bucket=self.bucket, Key=key, Range=f"bytes={offset}-{offset + length - 1}"
            )
            with answer["Body"] as body:
                return body.read()

        try:
            return await self._call(key, get)
        except _PastEnd:
            return b""

    async def delete(self, key: str) -> None:
        await self._call(key, lambda: self._client.delete_object(Bucket=self.bucket, Key=key))

    async def close(self) -> None:
        await asyncio.to_thread(self._client.close)
        if self._upload_client is not self._client:
            await asyncio.to_thread(self._upload_client.close)

    async def _call(self, key: str, call: Callable[[], T]) -> T:
        """Run a boto3 call in a thread; its exceptions become ours."""
        try:
            return await asyncio.to_thread(call)
        except botocore.exceptions.ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            if code in _MISSING:
                raise ObjectNotFound(key) from None
            if code == _RANGE_PAST_END:
                raise _PastEnd() from None
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            raise _unavailable(f"{code or status}: {error.get('Message', '')}") from exc
        except botocore.exceptions.BotoCoreError as exc:
            raise _unavailable(f"{type(exc).__name__}: {exc}") from exc


class _PastEnd(Exception):
    """A ranged read that starts past the object's end."""


def _unavailable(detail: str) -> Unavailable:
    return Unavailable(f"the media store is unavailable: {detail}", reason="MEDIA_STORE_UNAVAILABLE")


def _policy_expiry(encoded: str) -> datetime:
    document = json.loads(base64.b64decode(encoded))
    expires = datetime.strptime(document["expiration"], "%Y-%m-%dT%H:%M:%SZ")
    return expires.replace(tzinfo=UTC)
