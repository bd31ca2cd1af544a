"""The local-disk media store of `chirp up`: the bucket and the CDN on one machine.

Objects are files under `<media dir>/objects/<first two characters of the key>/<key>`, kept across
restarts. Clients upload to Envoy's /media/ (served by tweets_svc.media.local_server) with an
S3-style presigned POST: the grant's form fields carry a policy (key, exact content type, length
range, expiry) signed with HMAC-SHA256 under a key only the tweets service and the gateway hold.
An upload is written to `incoming/` and linked into place only once complete, so a reader never
sees half an object, and an existing object is never replaced.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import hmac
import json
import os
import re
import secrets
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

from chirp_core.settings import Settings
from tweets_svc.media.stores.object_store import ObjectNotFound, StoredObject, UploadForm

POLICY_FIELD = "policy"
SIGNATURE_FIELD = "signature"
KEY_FIELD = "key"
CONTENT_TYPE_FIELD = "Content-Type"
SIGNING_KEY_FILE = "upload-signing.key"
# A key is one path segment: no separators, no dot-dot, nothing a filesystem treats specially.
_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}(\.[a-z0-9]{1,8})?")
_CONTENT_TYPE_OF_EXTENSION = {
    "jpg": "image/jpeg",
    "png": "image/png",
    "gif": "image/gif",
    "webp": "image/webp",
    "mp4": "video/mp4",
}
_UNKNOWN_TYPE = "application/octet-stream"


class PolicyError(Exception):
    """An upload its policy does not allow. `reason` is the ErrorInfo reason the gateway sends."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class ObjectExists(Exception):
    def __init__(self, key: str) -> None:
        super().__init__(f"object {key!r} exists and objects are immutable")
        self.key = key


@dataclass(frozen=True)
class UploadPolicy:
    """What one upload may write: `key`, of `content_type`, min_bytes..max_bytes, before expires_at."""

    key: str
    content_type: str
    min_bytes: int
    max_bytes: int
    expires_at: datetime

    def document(self) -> dict[str, Any]:
        """The policy in the shape of S3's POST policies."""
        return {
            "expiration": self.expires_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "conditions": [
                {KEY_FIELD: self.key},
                {CONTENT_TYPE_FIELD: self.content_type},
                ["content-length-range", self.min_bytes, self.max_bytes],
            ],
        }


def sign_policy(policy: UploadPolicy, secret: bytes) -> dict[str, str]:
    """The form fields of an upload under `policy`."""
    encoded = base64.b64encode(json.dumps(policy.document(), separators=(",", ":")).encode()).decode()
    return {
        KEY_FIELD: policy.key,
        CONTENT_TYPE_FIELD: policy.content_type,
        POLICY_FIELD: encoded,
        SIGNATURE_FIELD: _signature(encoded, secret),
    }


def verify_policy(fields: Mapping[str, str], secret: bytes, now: datetime) -> UploadPolicy:
    """The policy the form fields (everything before the file) carry, once the signature, the
    expiry and every condition hold; PolicyError otherwise. As in S3, every field but the policy,
    the signature and x-ignore-* ones must be named by a condition."""
    encoded = fields.get(POLICY_FIELD)
    signature = fields.get(SIGNATURE_FIELD)
    if not encoded or not signature:
        raise PolicyError("UPLOAD_POLICY_MISSING", "the form must carry the grant's policy and signature")
    if not hmac.compare_digest(_signature(encoded, secret), signature):
        raise PolicyError("UPLOAD_SIGNATURE_INVALID", "the policy's signature does not match")
    try:
        document = json.loads(base64.b64decode(encoded, validate=True))
        expires_at = datetime.strptime(document["expiration"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
        conditions = list(document["conditions"])
    except (binascii.Error, ValueError, KeyError, TypeError) as exc:
        raise PolicyError("UPLOAD_POLICY_INVALID", f"the policy cannot be read: {exc}") from None
    if now >= expires_at:
        raise PolicyError("UPLOAD_EXPIRED", "the upload grant has expired; ask for a new one")

    given = {name.lower(): value for name, value in fields.items()}
    covered = {POLICY_FIELD, SIGNATURE_FIELD}
    length_range: tuple[int, int] | None = None
    for condition in conditions:
        if isinstance(condition, dict) and len(condition) == 1:
            [(name, expected)] = condition.items()
            _require_equal(given, str(name), expected)
            covered.add(str(name).lower())
        elif isinstance(condition, list) and len(condition) == 3 and condition[0] == "eq":
            name = str(condition[1]).removeprefix("$")
            _require_equal(given, name, condition[2])
            covered.add(name.lower())
        elif isinstance(condition, list) and len(condition) == 3 and condition[0] == "content-length-range":
            length_range = (int(condition[1]), int(condition[2]))
        else:
            raise PolicyError("UPLOAD_POLICY_INVALID", f"unknown policy condition {condition!r}")
    extra = sorted(n for n in given if n not in covered and not n.startswith("x-ignore-"))
    if extra:
        raise PolicyError(
            "UPLOAD_POLICY_VIOLATED", f"form field(s) not allowed by the policy: {', '.join(extra)}"
        )
    if length_range is None or KEY_FIELD not in covered or CONTENT_TYPE_FIELD.lower() not in covered:
        raise PolicyError("UPLOAD_POLICY_INVALID", "the policy must fix the key, content type and length")
    return UploadPolicy(
        given[KEY_FIELD], given[CONTENT_TYPE_FIELD.lower()], length_range[0], length_range[1], expires_at
    )


def _require_equal(given: Mapping[str, str], name: str, expected: object) -> None:
    if given.get(name.lower()) != expected:
        raise PolicyError("UPLOAD_POLICY_VIOLATED", f"form field {name!r} does not match the policy")


def _signature(encoded_policy: str, secret: bytes) -> str:
    return hmac.new(secret, encoded_policy.encode(), hashlib.sha256).hexdigest()


def load_signing_key(settings: Settings) -> bytes:
    """settings.media_signing_key, else the key in the media directory, made on first use. The
    tweets service and the gateway of one machine share it, and it outlives restarts, so grants
    handed out before a restart stay good."""
    if settings.media_signing_key:
        return settings.media_signing_key.encode()
    path = settings.media_dir / SIGNING_KEY_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_hex(32))
    # Another process may have created the file a moment ago and not written it yet.
    for _ in range(50):
        text = path.read_text().strip()
        if text:
            return text.encode()
        time.sleep(0.01)
    raise RuntimeError(f"{path} is empty: delete it to have a new upload signing key made")


class LocalMediaStore:
    """A MediaStore over a directory. `upload_url` is where the gateway takes uploads."""

    def __init__(self, root: Path, upload_url: str, secret: bytes) -> None:
        self.root = root
        self.upload_url = upload_url
        self._secret = secret
        (root / "objects").mkdir(parents=True, exist_ok=True)
        (root / "incoming").mkdir(parents=True, exist_ok=True)

    @classmethod
    def from_settings(cls, settings: Settings) -> LocalMediaStore:
        return cls(settings.media_dir, settings.media_gateway_url, load_signing_key(settings))

    def path_of(self, key: str) -> Path:
        """Where the object lives; ObjectNotFound for a key no object can have."""
        if not _KEY.fullmatch(key):
            raise ObjectNotFound(key)
        return self.root / "objects" / key[:2] / key

    @staticmethod
    def content_type_of(key: str) -> str:
        _, _, extension = key.rpartition(".")
        return _CONTENT_TYPE_OF_EXTENSION.get(extension, _UNKNOWN_TYPE)

    # MediaStore.

    async def presign_upload(
        self, key: str, content_type: str, size_bytes: int, expires_in: timedelta
    ) -> UploadForm:
        self.path_of(key)
        expires_at = datetime.now(UTC).replace(microsecond=0) + expires_in
        policy = UploadPolicy(key, content_type, size_bytes, size_bytes, expires_at)
        return UploadForm(self.upload_url, sign_policy(policy, self._secret), expires_at)

    async def head(self, key: str) -> StoredObject | None:
        try:
            stat = await asyncio.to_thread(self.path_of(key).stat)
        except (ObjectNotFound, FileNotFoundError):
            return None
        etag = f'"{stat.st_mtime_ns:x}-{stat.st_size:x}"'
        return StoredObject(key, stat.st_size, self.content_type_of(key), etag)

    async def read(self, key: str, offset: int, length: int) -> bytes:
        path = self.path_of(key)

        def read_range() -> bytes:
            with path.open("rb") as source:
                source.seek(offset)
                return source.read(length)

        try:
            return await asyncio.to_thread(read_range)
        except FileNotFoundError:
            raise ObjectNotFound(key) from None

    async def delete(self, key: str) -> None:
        with contextlib.suppress(ObjectNotFound):
            await asyncio.to_thread(self.path_of(key).unlink, missing_ok=True)

    async def close(self) -> None:
        return None

    # The gateway's side.

    def verify_upload(self, fields: Mapping[str, str], now: datetime | None = None) -> UploadPolicy:
        policy = verify_policy(fields, self._secret, now or datetime.now(UTC))
        self.path_of(policy.key)
        return policy

    async def open_upload(self, policy: UploadPolicy) -> LocalUpload:
        def create() -> IO[bytes]:
            return tempfile.NamedTemporaryFile(dir=self.root / "incoming", prefix="upload-", delete=False)

        return LocalUpload(self, policy, await asyncio.to_thread(create))


class LocalUpload:
    """An object being written: write() the chunks, then commit() or abort()."""

    def __init__(self, store: LocalMediaStore, policy: UploadPolicy, file: IO[bytes]) -> None:
        self._store = store
        self.policy = policy
        self._file = file
        self.size = 0

    async def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        await asyncio.to_thread(self._file.write, chunk)

    async def commit(self) -> None:
        """Put the object in place; ObjectExists when the key already has one (it stays)."""
        target = self._store.path_of(self.policy.key)

        def place() -> None:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(self._file.name, target)  # fails when the target exists: no overwrite
            finally:
                os.unlink(self._file.name)

        try:
            await asyncio.to_thread(place)
        except FileExistsError:
            raise ObjectExists(self.policy.key) from None

    async def abort(self) -> None:
        def discard() -> None:
            self._file.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._file.name)

        await asyncio.to_thread(discard)
