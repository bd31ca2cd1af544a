"""Access tokens made by hand, as an attacker (or a clock) would make them: signed with the stack's
real key, with another key, with none; with claims of the test's choosing."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from graph_svc.tokens import KeyRing


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def claims(user_id: int, *, session_id: int = 1, lifetime: float = 600, **changes: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {
        "iss": "chirp",
        "sub": str(user_id),
        "sid": str(session_id),
        "iat": now,
        "exp": now + int(lifetime),
    }
    base.update(changes)
    return base


def sign(payload: dict[str, Any], key: Ed25519PrivateKey, kid: str, *, alg: str = "EdDSA") -> str:
    header = b64(json.dumps({"alg": alg, "typ": "JWT", "kid": kid}).encode())
    body = b64(json.dumps(payload).encode())
    return f"{header}.{body}.{b64(key.sign(f'{header}.{body}'.encode()))}"


def sign_with_stack_key(key_dir: Path, payload: dict[str, Any]) -> str:
    """A token the real signing key signed: what the graph service would issue."""
    signer = KeyRing(key_dir).signer()
    return sign(payload, signer.key, signer.kid)


def unsigned(payload: dict[str, Any], kid: str) -> str:
    """`alg: none` with an empty signature."""
    header = b64(json.dumps({"alg": "none", "typ": "JWT", "kid": kid}).encode())
    return f"{header}.{b64(json.dumps(payload).encode())}."


def with_payload(token: str, **changes: Any) -> str:
    """The token with its payload changed and its signature kept."""
    header, body, signature = token.split(".")
    payload = json.loads(unb64(body))
    payload.update(changes)
    return f"{header}.{b64(json.dumps(payload).encode())}.{signature}"


def decode(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    header, body, _ = token.split(".")
    return json.loads(unb64(header)), json.loads(unb64(body))


def verify(token: str, jwks: dict[str, Any]) -> dict[str, Any]:
    """The payload of a token whose EdDSA signature one of the JWKS's keys checks (else raises)."""
    header, payload = decode(token)
    assert header["alg"] == "EdDSA", header
    [jwk] = [k for k in jwks["keys"] if k["kid"] == header["kid"]]
    public = Ed25519PublicKey.from_public_bytes(unb64(jwk["x"]))
    signing_input, _, signature = token.rpartition(".")
    public.verify(unb64(signature), signing_input.encode())
    return payload


def private_pem(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
