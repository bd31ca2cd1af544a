"""Object storage for media behind one interface (object_store.MediaStore), chosen by
settings.media_store: a bucket through boto3 (s3.S3MediaStore) or a directory served by the
gateway (local.LocalMediaStore)."""

from __future__ import annotations

import asyncio

from chirp_core.settings import Settings
from tweets_svc.media.stores.object_store import MediaStore


def media_url_base(settings: Settings) -> str:
    """A media URL is this followed by the object key: the CDN when one is configured, else the
    store's own public address."""
    if settings.media_cdn_base:
        return settings.media_cdn_base
    if settings.media_store == "local":
        return settings.media_gateway_url
    from tweets_svc.media.stores.s3 import bucket_url

    return bucket_url(settings)


async def open_media_store(settings: Settings) -> MediaStore:
    """The store settings.media_store names. boto3 is imported only when S3 is in use."""
    if settings.media_store == "s3":
        from tweets_svc.media.stores.s3 import S3MediaStore

        return await asyncio.to_thread(S3MediaStore.from_settings, settings)
    from tweets_svc.media.stores.local import LocalMediaStore

    return await asyncio.to_thread(LocalMediaStore.from_settings, settings)
