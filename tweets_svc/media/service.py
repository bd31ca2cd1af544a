"""The rules of media: what may be uploaded, and what an upload must be before a tweet may show it.

An upload is granted first (a media row in state pending and a presigned POST); the client sends
the bytes straight to the store. CreateTweet then checks each media ID against the row (the
caller's, not attached yet) and against the stored object (there, of the declared size, and of
the declared type by its magic numbers, not by any header), and the tweet's transaction binds it.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from chirp_core.errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied, Unauthenticated
from chirp_core.snowflake import SnowflakeGenerator
from tweets_svc.media.probe import HEAD_BYTES, Dimensions, ReadMore, image_size, scan_jpeg, sniff
from tweets_svc.media.stores.object_store import MediaStore, UploadForm
from tweets_svc.models import Media, MediaRecord

if TYPE_CHECKING:
    from tweets_svc.media.storage import MediaStorage

# The types taken, each with the extension its object keys end in.
EXTENSIONS: Mapping[str, str] = {
    "image/jpeg": "jpg",
    "image/png": "png",
    "image/gif": "gif",
    "image/webp": "webp",
    "video/mp4": "mp4",
}
VIDEO_TYPES = frozenset({"video/mp4"})
MAX_MEDIA_PER_TWEET = 4
# A JPEG's size may sit behind metadata segments: follow at most this many of them.
MAX_JPEG_READS = 16
JPEG_READ_BYTES = 2048


@dataclass(frozen=True)
class MediaLimits:
    max_image_bytes: int
    max_video_bytes: int
    grant_seconds: int

    def max_bytes(self, content_type: str) -> int:
        return self.max_video_bytes if content_type in VIDEO_TYPES else self.max_image_bytes


@dataclass(frozen=True)
class UploadGrant:
    media_id: int
    form: UploadForm


class MediaService:
    def __init__(
        self, storage: MediaStorage, store: MediaStore, ids: SnowflakeGenerator, limits: MediaLimits
    ) -> None:
        self._storage = storage
        self._store = store
        self._ids = ids
        self._limits = limits

    async def create_upload(self, caller: int | None, content_type: str, size_bytes: int) -> UploadGrant:
        """A media ID and a presigned POST for exactly this type and size, owned by the caller."""
        if caller is None:
            raise Unauthenticated()
        content_type = content_type.strip().lower()
        if content_type not in EXTENSIONS:
            raise InvalidArgument(
                "content_type",
                f"must be one of {', '.join(EXTENSIONS)} (got {content_type!r})",
                reason="MEDIA_TYPE_NOT_ALLOWED",
            )
        if size_bytes <= 0:
            raise InvalidArgument("size_bytes", f"must be the file's size in bytes (got {size_bytes})")
        limit = self._limits.max_bytes(content_type)
        if size_bytes > limit:
            raise InvalidArgument(
                "size_bytes",
                f"at most {limit} bytes for {content_type} (got {size_bytes})",
                reason="MEDIA_TOO_LARGE",
            )
        media_id = self._ids.next_id()
        key = new_object_key(content_type)
        form = await self._store.presign_upload(
            key, content_type, size_bytes, timedelta(seconds=self._limits.grant_seconds)
        )
        await self._storage.insert_pending(media_id, caller, key, content_type, size_bytes)
        return UploadGrant(media_id, form)

    async def prepare(self, user_id: int, media_ids: Sequence[int]) -> tuple[Media, ...]:
        """The media to bind to a new tweet of user_id, in order, once every check has passed.
        The binding itself (in the tweet's transaction) takes only media still pending, so two
        tweets racing for one upload cannot both have it."""
        records = await self._storage.get_media(media_ids)
        for index, media_id in enumerate(media_ids):
            record = records.get(media_id)
            if record is None:
                raise NotFound("media", media_id)
            if record.user_id != user_id:
                raise PermissionDenied(
                    f"media_ids[{index}]: media {media_id} belongs to another user", reason="MEDIA_NOT_OWNED"
                )
            if record.state != "pending":
                raise _precondition(
                    index, media_id, "is already attached to a tweet", "MEDIA_ALREADY_ATTACHED"
                )
        checked = await asyncio.gather(
            *(self._verify(index, records[media_id]) for index, media_id in enumerate(media_ids))
        )
        return tuple(checked)

    async def _verify(self, index: int, record: MediaRecord) -> Media:
        media_id, key, declared = record.media_id, record.object_key, record.content_type
        stored = await self._store.head(key)
        if stored is None:
            raise _precondition(index, media_id, "has not been uploaded", "MEDIA_NOT_UPLOADED")
        if stored.size_bytes != record.size_bytes:
            raise _precondition(
                index,
                media_id,
                f"is {stored.size_bytes} bytes, not the {record.size_bytes} declared",
                "MEDIA_SIZE_MISMATCH",
            )
        head = await self._store.read(key, 0, HEAD_BYTES)
        found = sniff(head)
        if found != declared:
            shown = found or "not an image or video we take"
            raise _precondition(
                index, media_id, f"was declared {declared} but the file is {shown}", "MEDIA_TYPE_MISMATCH"
            )
        size = Dimensions(0, 0)
        if declared not in VIDEO_TYPES:
            measured = await self._image_size(record, head)
            if measured is None:
                raise _precondition(index, media_id, f"is not a valid {declared} file", "MEDIA_INVALID")
            size = measured
        return Media(media_id, key, declared, record.size_bytes, size.width, size.height)

    async def _image_size(self, record: MediaRecord, head: bytes) -> Dimensions | None:
        found = image_size(record.content_type, head)
        reads = 1
        while isinstance(found, ReadMore):
            if found.offset >= record.size_bytes:
                return None  # the segments run past the end of the file
            if reads >= MAX_JPEG_READS:
                return Dimensions(0, 0)  # a valid JPEG with unusually much metadata: size unknown
            window = await self._store.read(record.object_key, found.offset, JPEG_READ_BYTES)
            reads += 1
            found = scan_jpeg(window, found.offset)
        return found


def check_media_ids(media_ids: Sequence[int]) -> list[int]:
    """Up to MAX_MEDIA_PER_TWEET distinct positive IDs, in the order given."""
    if len(media_ids) > MAX_MEDIA_PER_TWEET:
        raise InvalidArgument(
            "media_ids", f"at most {MAX_MEDIA_PER_TWEET} media per tweet (got {len(media_ids)})"
        )
    for index, media_id in enumerate(media_ids):
        if media_id <= 0:
            raise InvalidArgument(f"media_ids[{index}]", f"must be a positive ID (got {media_id})")
    if len(set(media_ids)) != len(media_ids):
        raise InvalidArgument("media_ids", "must not repeat a media ID")
    return list(media_ids)


def new_object_key(content_type: str) -> str:
    """128 random bits: a key nobody can guess, and so a URL nobody can find without being given it."""
    return f"{secrets.token_hex(16)}.{EXTENSIONS[content_type]}"


def _precondition(index: int, media_id: int, problem: str, reason: str) -> FailedPrecondition:
    return FailedPrecondition(
        f"media_ids[{index}]: media {media_id} {problem}",
        reason=reason,
        metadata={"field": "media_ids", "media_id": str(media_id)},
    )
