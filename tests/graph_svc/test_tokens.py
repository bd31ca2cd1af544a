"""The signing key ring: which key signs, which keys are published, and that a change to the key
directory is seen without a restart."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from graph_svc.models import AccessClaims
from graph_svc.tokens import CURRENT_FILE, KeyRing, KeyRingError, create_key, ensure_key, use_key
from tests.helpers.tokens import decode, verify

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
CLAIMS = AccessClaims("chirp", 42, 7, NOW, NOW + timedelta(minutes=10))


def test_a_token_carries_the_claims_and_the_signers_kid(tmp_path: Path) -> None:
    kid = create_key(tmp_path, "k1", current=True)
    ring = KeyRing(tmp_path)
    token = ring.sign(CLAIMS)
    header, payload = decode(token)
    assert header == {"alg": "EdDSA", "typ": "JWT", "kid": kid}
    assert payload == {
        "iss": "chirp",
        "sub": "42",
        "sid": "7",
        "iat": int(NOW.timestamp()),
        "exp": int(NOW.timestamp()) + 600,
    }
    assert verify(token, ring.jwks()) == payload


def test_every_key_is_published_and_only_public_parts(tmp_path: Path) -> None:
    create_key(tmp_path, "old", current=True)
    create_key(tmp_path, "next")
    jwks = KeyRing(tmp_path).jwks()
    assert sorted(k["kid"] for k in jwks["keys"]) == ["next", "old"]
    for key in jwks["keys"]:
        assert set(key) == {"kty", "crv", "x", "kid", "alg", "use"}
        assert (key["kty"], key["crv"], key["alg"], key["use"]) == ("OKP", "Ed25519", "EdDSA", "sig")


def test_the_current_file_names_the_signer_and_a_change_is_seen(tmp_path: Path) -> None:
    create_key(tmp_path, "old", current=True)
    ring = KeyRing(tmp_path)
    assert ring.signer().kid == "old"
    create_key(tmp_path, "next")
    assert ring.signer().kid == "old"  # published, not signing yet
    use_key(tmp_path, "next")
    assert ring.signer().kid == "next"
    assert decode(ring.sign(CLAIMS))[0]["kid"] == "next"
    (tmp_path / "old.pem").unlink()
    assert [k["kid"] for k in ring.jwks()["keys"]] == ["next"]


def test_without_a_current_file_the_newest_key_signs(tmp_path: Path) -> None:
    create_key(tmp_path, "b")
    create_key(tmp_path, "a")
    os.utime(tmp_path / "b.pem", (1, 1))
    assert KeyRing(tmp_path).signer().kid == "a"


def test_no_key_or_a_current_naming_no_key_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(KeyRingError):
        KeyRing(tmp_path / "missing").signer()
    create_key(tmp_path, "k1")
    (tmp_path / CURRENT_FILE).write_text("gone\n")
    with pytest.raises(KeyRingError, match="gone"):
        KeyRing(tmp_path).signer()


def test_ensure_key_creates_the_first_key_once(tmp_path: Path) -> None:
    directory = tmp_path / "keys"
    kid = ensure_key(directory)
    assert kid is not None
    assert ensure_key(directory) is None
    assert KeyRing(directory).signer().kid == kid
    assert (directory / f"{kid}.pem").stat().st_mode & 0o777 == 0o600


def test_create_key_never_replaces_a_key(tmp_path: Path) -> None:
    create_key(tmp_path, "k1")
    before = (tmp_path / "k1.pem").read_bytes()
    with pytest.raises(FileExistsError):
        create_key(tmp_path, "k1")
    assert (tmp_path / "k1.pem").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k1.pem"]
    with pytest.raises(ValueError, match="kid"):
        create_key(tmp_path, "../escape")
