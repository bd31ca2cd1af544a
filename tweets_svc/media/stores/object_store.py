"""The object-store interface the media code is written against, and what it returns.

Implementations translate their vendor's exceptions here: a missing object is ObjectNotFound
(or None from head()), a store that cannot be reached or refuses us is chirp_core.errors.Unavailable.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

# Object keys are never reused, so every copy of an object, in any cache, stays valid for good.
CACHE_CONTROL = "public, max-age=31536000, immutable"
# The form field that carries the file in a browser-based (presigned POST) upload; S3 requires it last.
FILE_FIELD = "file"


@dataclass(frozen=True)
class UploadForm:
    """A presigned POST: send `fields` as multipart/form-data fields, then the file as FILE_FIELD."""

    url: str
    fields: Mapping[str, str]
    expires_at: datetime


@dataclass(frozen=True)
class StoredObject:
    key: str
    size_bytes: int
    content_type: str
    etag: str


class ObjectNotFound(Exception):
    def __init__(self, key: str) -> None:
        super().__init__(f"no object {key!r}")
        self.key = key


class MediaStore(Protocol):
    async def presign_upload(
        self, key: str, content_type: str, size_bytes: int, expires_in: timedelta
    ) -> UploadForm:
        """A grant to write exactly `size_bytes` of `content_type` to `key`, until it expires.
        The object is stored with CACHE_CONTROL."""
        ...

    async def head(self, key: str) -> StoredObject | None:
        """The object's metadata, or None when there is no such object."""
        ...

    async def read(self, key: str, offset: int, length: int) -> bytes:
        """Up to `length` bytes from `offset` (fewer at the end of the object); only those bytes
        travel. ObjectNotFound when there is no such object."""
        ...

    async def delete(self, key: str) -> None:
        """Remove the object; removing one that is not there is not an error."""
        ...

    async def close(self) -> None: ...
