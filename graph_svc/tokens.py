"""Access tokens: JWTs signed with Ed25519 (JOSE "EdDSA"), checked by Envoy's jwt_authn filter
against the public keys this module publishes as a JWKS.

The keys live in a directory, one PKCS#8 PEM file each, named `<kid>.pem`. The file `current`
holds the kid that signs; without it the newest file signs. Every key in the directory is
published, so a rotation is: add the next key (published, not signing), wait past Envoy's JWKS
cache duration, write its kid to `current`, and remove the old key once the last token it signed
has expired (the access-token lifetime). The directory is read again when it changes, so none of
these steps needs a restart.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from graph_svc.models import AccessClaims

ALGORITHM = "EdDSA"
CURRENT_FILE = "current"
_KID = re.compile(r"[A-Za-z0-9_-]{1,64}")


class KeyRingError(Exception):
    """The key directory holds no usable signing key."""


@dataclass(frozen=True)
class SigningKey:
    kid: str
    key: Ed25519PrivateKey

    def public_jwk(self) -> dict[str, str]:
        raw = self.key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return {
            "kty": "OKP",
            "crv": "Ed25519",
            "x": _b64(raw),
            "kid": self.kid,
            "alg": ALGORITHM,
            "use": "sig",
        }


class KeyRing:
    """The keys of one directory, read again whenever a file in it changes (its mtimes)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._stamp: tuple[tuple[str, int], ...] | None = None
        self._keys: list[SigningKey] = []
        self._signer: SigningKey | None = None

    def keys(self) -> list[SigningKey]:
        self._reload()
        return list(self._keys)

    def signer(self) -> SigningKey:
        self._reload()
        if self._signer is None:
            raise KeyRingError(f"no signing key in {self.directory}")
        return self._signer

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        return {"keys": [key.public_jwk() for key in self.keys()]}

    def sign(self, claims: AccessClaims) -> str:
        signer = self.signer()
        header = {"alg": ALGORITHM, "typ": "JWT", "kid": signer.kid}
        payload = {
            "iss": claims.issuer,
            "sub": str(claims.user_id),
            "sid": str(claims.session_id),
            "iat": int(claims.issued_at.timestamp()),
            "exp": int(claims.expires_at.timestamp()),
        }
        signing_input = f"{_b64_json(header)}.{_b64_json(payload)}"
        return f"{signing_input}.{_b64(signer.key.sign(signing_input.encode()))}"

    def _reload(self) -> None:
        stamp = _stamp(self.directory)
        if stamp == self._stamp:
            return
        keys: list[tuple[int, SigningKey]] = []
        for name, mtime in stamp:
            kid = name.removesuffix(".pem")
            if name.endswith(".pem") and _KID.fullmatch(kid):
                keys.append((mtime, SigningKey(kid, _load(self.directory / name))))
        keys.sort(key=lambda pair: (pair[0], pair[1].kid))
        by_kid = {key.kid: key for _, key in keys}
        wanted = _read_current(self.directory)
        if wanted is not None:
            self._signer = by_kid.get(wanted)
            if self._signer is None:
                raise KeyRingError(
                    f"{self.directory / CURRENT_FILE} names {wanted!r}, which has no {wanted}.pem"
                )
        else:
            self._signer = keys[-1][1] if keys else None
        self._keys = [key for _, key in keys]
        self._stamp = stamp


def create_key(directory: Path, kid: str | None = None, *, current: bool = False) -> str:
    """Write a new Ed25519 key to directory/<kid>.pem (readable by its owner only) and return its
    kid; with `current`, make it the signing key too. The file appears whole or not at all, and an
    existing one is never replaced."""
    kid = kid or datetime.now(UTC).strftime("%Y%m%d") + "-" + secrets.token_hex(4)
    if not _KID.fullmatch(kid):
        raise ValueError(f"a kid is 1 to 64 characters of A-Z, a-z, 0-9, _ and -: {kid!r}")
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    temporary = directory / f".{kid}.{secrets.token_hex(4)}.tmp"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(pem)
        os.link(temporary, directory / f"{kid}.pem")
    finally:
        temporary.unlink()
    if current:
        use_key(directory, kid)
    return kid


def use_key(directory: Path, kid: str) -> None:
    """Make kid the signing key (atomically: a reader sees the old kid or the new one)."""
    if not (directory / f"{kid}.pem").is_file():
        raise ValueError(f"no key {kid} in {directory}")
    temporary = directory / f".{CURRENT_FILE}.{secrets.token_hex(4)}.tmp"
    temporary.write_text(kid + "\n")
    temporary.replace(directory / CURRENT_FILE)


def ensure_key(directory: Path) -> str | None:
    """Create the first key when the directory has none; its kid, or None when keys exist. Safe
    when several processes start at once (a lock file in the directory)."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    with open(directory / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if any(directory.glob("*.pem")):
            return None
        return create_key(directory, current=True)


def _stamp(directory: Path) -> tuple[tuple[str, int], ...]:
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return ()
    return tuple(sorted((e.name, e.stat().st_mtime_ns) for e in entries if e.is_file()))


def _read_current(directory: Path) -> str | None:
    try:
        return (directory / CURRENT_FILE).read_text().strip() or None
    except FileNotFoundError:
        return None


def _load(path: Path) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyRingError(f"{path} is not an Ed25519 private key")
    return key


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64_json(value: object) -> str:
    return _b64(json.dumps(value, separators=(",", ":")).encode())
