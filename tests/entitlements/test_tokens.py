"""Forged, bent and misplaced tokens: every one is a 401 with the RFC 6750
challenge on an authenticated route, and none of them grants anything."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from entitlements.resources import RESOURCES
from tests.entitlements.support import (
    access_claims,
    assert_invalid_token,
    b64url,
    b64url_decode,
    check_rows,
    compact,
)

ME = "/api/users/me"
ADMIN_ONLY = "/api/users"


@pytest.fixture
def signer(ent_client):
    return ent_client.app[RESOURCES].signer


@pytest.fixture
async def viewer(api):
    viewer, user = await api.register_viewer()
    return viewer, user


def _sign_eddsa(signer, claims: dict, **header) -> str:
    return jwt.encode(claims, signer.private_key, algorithm="EdDSA",
                      headers={"kid": signer.kid, **header})


def _public_key_secrets(signer) -> dict[str, bytes]:
    public = signer.private_key.public_key()
    return {
        "raw": public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw),
        "pem": public.public_bytes(serialization.Encoding.PEM,
                                   serialization.PublicFormat.SubjectPublicKeyInfo),
        "jwk_x": b64url(public.public_bytes(serialization.Encoding.Raw,
                                            serialization.PublicFormat.Raw)).encode(),
    }


async def _assert_rejected(api, token: str) -> None:
    assert_invalid_token(await api.as_(token).call("GET", ME))
    assert_invalid_token(await api.as_(token).call("GET", ADMIN_ONLY))


async def test_a_genuine_token_is_accepted(api, signer, viewer):
    # The control for every forgery below: the same claims, honestly signed.
    _, user = viewer
    token = _sign_eddsa(signer, access_claims(user["id"], role="viewer"))
    assert (await api.as_(token).call("GET", ME))[0] == 200
    hand_made = compact({"alg": "EdDSA", "typ": "JWT", "kid": signer.kid},
                        access_claims(user["id"], role="viewer"), signer.private_key.sign)
    assert (await api.as_(hand_made).call("GET", ME))[0] == 200


async def test_alg_none_is_rejected(api, signer, viewer):
    _, user = viewer
    for alg in ("none", "None", "NONE"):
        token = compact({"alg": alg, "typ": "JWT", "kid": signer.kid},
                        access_claims(user["id"]))
        await _assert_rejected(api, token)


@pytest.mark.parametrize("secret", ["raw", "pem", "jwk_x"])
async def test_hs256_keyed_with_the_public_key_is_rejected(api, signer, viewer, secret):
    _, user = viewer
    key = _public_key_secrets(signer)[secret]
    token = compact({"alg": "HS256", "typ": "JWT", "kid": signer.kid}, access_claims(user["id"]),
                    lambda data: hmac.new(key, data, hashlib.sha256).digest())
    await _assert_rejected(api, token)


@pytest.mark.parametrize(
    ("case", "overrides"),
    [
        ("expired", {"iat": int(time.time()) - 3600, "nbf": int(time.time()) - 3600,
                     "exp": int(time.time()) - 60}),
        ("not_yet_valid", {"nbf": int(time.time()) + 3600}),
        ("wrong_audience", {"aud": "reelgate:stream"}),
        ("foreign_audience", {"aud": "someone-else"}),
        ("wrong_issuer", {"iss": "evil"}),
        ("refresh_typed", {"typ": "refresh"}),
        ("untyped", {"typ": None}),
        ("no_expiry", {"exp": None}),
        ("no_audience", {"aud": None}),
        ("no_subject", {"sub": None}),
        ("subject_not_a_uuid", {"sub": "admin"}),
        ("unknown_role", {"role": "superuser"}),
        ("no_role", {"role": None}),
    ],
)
async def test_validly_signed_tokens_with_bad_claims_are_rejected(api, signer, viewer, case,
                                                                  overrides):
    _, user = viewer
    await _assert_rejected(api, _sign_eddsa(signer, access_claims(user["id"], **overrides)))


async def test_tampered_payload_is_rejected(api, viewer):
    client, _ = viewer
    header, payload, signature = client.token.split(".")
    claims = json.loads(b64url_decode(payload))
    assert claims["role"] == "viewer"
    claims["role"] = "admin"
    forged = ".".join([header, b64url(json.dumps(claims).encode()), signature])
    await _assert_rejected(api, forged)


async def test_truncated_signature_is_rejected(api, viewer):
    client, _ = viewer
    await _assert_rejected(api, client.token[:-4])


@pytest.mark.parametrize("kid", ["unknown-kid", "../../etc/passwd"])
async def test_unknown_or_path_like_kid_is_rejected(api, signer, viewer, kid):
    _, user = viewer
    # Signed with the real key: only the key id is wrong.
    token = compact({"alg": "EdDSA", "typ": "JWT", "kid": kid}, access_claims(user["id"]),
                    signer.private_key.sign)
    await _assert_rejected(api, token)


async def test_missing_or_odd_kids_are_rejected(api, signer, viewer):
    _, user = viewer

    async def check(kid):
        header = {"alg": "EdDSA", "typ": "JWT"} | ({"kid": kid} if kid is not None else {})
        await _assert_rejected(api, compact(header, access_claims(user["id"]),
                                            signer.private_key.sign))

    await check_rows(["/dev/null", "", None, 7, ["k"], {"kid": signer.kid}, "x" * 5000,
                      signer.kid + "\x00", signer.kid.upper()], check)


async def test_a_token_signed_with_another_key_is_rejected(api, signer, viewer):
    _, user = viewer
    other = Ed25519PrivateKey.generate()
    token = jwt.encode(access_claims(user["id"]), other, algorithm="EdDSA",
                       headers={"kid": signer.kid})
    await _assert_rejected(api, token)


async def test_a_refresh_token_is_not_an_access_token(api):
    email = f"r-{uuid.uuid4().hex[:8]}@example.com"
    await api.register_viewer(email)
    pair = await api.ok("POST", "/api/auth/login", {"email": email, "password": "viewer-pass-1"})
    await _assert_rejected(api, pair["refresh_token"])


async def test_a_playback_token_is_not_accepted_on_the_api(api, signer, viewer):
    _, user = viewer
    token = signer.playback_token(uuid.UUID(user["id"]), uuid.uuid4(), uuid.uuid4(),
                                  int(time.time()) + 600)
    await _assert_rejected(api, token)


async def test_malformed_authorization_headers_are_401(api):
    async def check(authorization):
        response = await api.as_(None).call("GET", ME, headers={"Authorization": authorization})
        assert_invalid_token(response)

    await check_rows(["", "Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "Token abc",
                      "Bearer not-a-jwt", "Bearer a.b.c", "Bearer ....", "Bearer " + "A" * 4000,
                      "Bearer e30.e30.", "Bearer W10.W10.", "Bearer bnVsbA.bnVsbA."], check)


async def test_a_viewer_token_is_403_on_admin_routes_not_401(api, viewer):
    client, _ = viewer
    status, body, _ = await client.call("GET", ADMIN_ONLY)
    assert (status, body["code"]) == (403, "admin_required")
