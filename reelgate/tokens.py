"""Signed tokens: access tokens for `/api`, playback tokens for `/stream`.

Ed25519 (JWS alg `EdDSA`): the entitlements node signs with the private key;
every other node verifies with the public key alone. Verification pins the
algorithm, the key id, the audience, the issuer and the token type, so the
classic attacks (`alg: none`, HS256 keyed with the public key, a playback token
on `/api`, a refresh token as an access token) all fail the same way.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

ALGORITHM = "EdDSA"
ACCESS_AUDIENCE = "reelgate:api"
PLAYBACK_AUDIENCE = "reelgate:stream"


class InvalidToken(Exception):
    """Any reason a token is not acceptable; the reason is for logs, not clients."""


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def public_jwk(key: Ed25519PublicKey) -> dict[str, str]:
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return {"crv": "Ed25519", "kty": "OKP", "x": _b64url(raw)}


def key_id(key: Ed25519PublicKey) -> str:
    """RFC 7638 JWK thumbprint: stable, derived from the key, nothing to configure."""
    canonical = json.dumps(public_jwk(key), separators=(",", ":"), sort_keys=True)
    return _b64url(hashlib.sha256(canonical.encode()).digest())


def load_or_create_private_key(path: Path) -> Ed25519PrivateKey:
    """Load a PEM key, or create one for development (0600, written atomically)."""
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"{path} is not an Ed25519 private key")
        return key
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    # Another process may have raced us; link-or-keep keeps the first key.
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)
    return load_or_create_private_key(path)


def load_public_key(path: Path) -> Ed25519PublicKey:
    data = path.read_bytes()
    if b"PRIVATE KEY" in data:
        private = serialization.load_pem_private_key(data, password=None)
        if not isinstance(private, Ed25519PrivateKey):
            raise ValueError(f"{path} is not an Ed25519 key")
        return private.public_key()
    key = serialization.load_pem_public_key(data)
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"{path} is not an Ed25519 public key")
    return key


def public_key_from_jwk(jwk: dict[str, Any]) -> Ed25519PublicKey:
    if jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519":
        raise ValueError("only Ed25519 keys are supported")
    x = str(jwk["x"])
    return Ed25519PublicKey.from_public_bytes(base64.urlsafe_b64decode(x + "=" * (-len(x) % 4)))


@dataclass(frozen=True)
class Claims:
    subject: uuid.UUID
    token_type: str
    raw: dict[str, Any]

    @property
    def role(self) -> str:
        return str(self.raw.get("role", ""))


class TokenVerifier:
    """Verifies tokens against a fixed set of public keys."""

    def __init__(self, keys: list[Ed25519PublicKey], issuer: str) -> None:
        self.keys = {key_id(key): key for key in keys}
        self.issuer = issuer

    def jwks(self) -> dict[str, Any]:
        return {
            "keys": [
                {**public_jwk(key), "kid": kid, "alg": ALGORITHM, "use": "sig"}
                for kid, key in self.keys.items()
            ]
        }

    def verify(self, token: str, *, audience: str, token_type: str) -> Claims:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise InvalidToken(f"malformed token: {type(exc).__name__}") from None
        kid = header.get("kid")
        # Exact lookup in our own table: a path-like or unknown kid never reaches a file.
        key = self.keys.get(kid) if isinstance(kid, str) else None
        if key is None:
            raise InvalidToken("unknown key id")
        if header.get("alg") != ALGORITHM:
            raise InvalidToken("unexpected algorithm")
        try:
            payload = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                audience=audience,
                issuer=self.issuer,
                options={"require": ["exp", "iat", "sub", "aud", "iss", "typ"]},
                leeway=5,
            )
        except jwt.PyJWTError as exc:
            raise InvalidToken(type(exc).__name__) from None
        if payload.get("typ") != token_type:
            raise InvalidToken("wrong token type")
        try:
            subject = uuid.UUID(str(payload["sub"]))
        except ValueError:
            raise InvalidToken("bad subject") from None
        return Claims(subject=subject, token_type=token_type, raw=payload)


class TokenSigner:
    """Issues tokens; only the entitlements node holds one."""

    def __init__(self, private_key: Ed25519PrivateKey, issuer: str) -> None:
        self.private_key = private_key
        self.kid = key_id(private_key.public_key())
        self.issuer = issuer

    def verifier(self) -> TokenVerifier:
        return TokenVerifier([self.private_key.public_key()], self.issuer)

    def _sign(self, claims: dict[str, Any]) -> str:
        return jwt.encode(claims, self.private_key, algorithm=ALGORITHM, headers={"kid": self.kid})

    def access_token(self, user_id: uuid.UUID, role: str, ttl_s: int) -> str:
        now = int(time.time())
        return self._sign(
            {
                "iss": self.issuer,
                "aud": ACCESS_AUDIENCE,
                "sub": str(user_id),
                "role": role,
                "typ": "access",
                "iat": now,
                "nbf": now,
                "exp": now + ttl_s,
                "jti": uuid.uuid4().hex,
            }
        )

    def playback_token(
        self, user_id: uuid.UUID, movie_id: uuid.UUID, session_id: uuid.UUID, expires_at: int
    ) -> str:
        now = int(time.time())
        return self._sign(
            {
                "iss": self.issuer,
                "aud": PLAYBACK_AUDIENCE,
                "sub": str(user_id),
                "mid": str(movie_id),
                "sid": str(session_id),
                "typ": "playback",
                "iat": now,
                "nbf": now,
                "exp": expires_at,
            }
        )


async def load_verifier(
    public_key_file: Path | None, private_key_file: Path, jwks_url: str, issuer: str
) -> TokenVerifier:
    """How a node that does not sign learns the public key, in order of preference:
    an explicit public key file; the signing key file when this machine has it
    (demo, `reelgate cluster`); else the entitlements node's JWKS."""
    if public_key_file is not None:
        return TokenVerifier([load_public_key(public_key_file)], issuer)
    if private_key_file.exists():
        return TokenVerifier([load_public_key(private_key_file)], issuer)
    import aiohttp

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
        async with http.get(jwks_url) as response:
            response.raise_for_status()
            document = await response.json()
    keys = [public_key_from_jwk(jwk) for jwk in document.get("keys", [])]
    if not keys:
        raise RuntimeError(f"no usable keys at {jwks_url}")
    return TokenVerifier(keys, issuer)
