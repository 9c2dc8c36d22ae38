"""Helpers shared by the entitlements route tests: problem assertions, raw
requests, small factories and JWT forging for the token-attack tests."""

from __future__ import annotations

import base64
import json
import time
import uuid
from typing import Any

from tests.api import Api, sign

PROBLEM_FIELDS = {"type", "title", "status", "detail", "code"}
INVALID_TOKEN_CHALLENGE = 'Bearer error="invalid_token"'


def assert_problem(
    response: tuple[int, Any, Any], status: int, code: str | None = None
) -> dict[str, Any]:
    """The response is an RFC 9457 problem with this status (and code)."""
    got, data, headers = response
    assert got == status, f"expected {status}, got {got}: {data!r}"
    assert headers["Content-Type"].startswith("application/problem+json"), headers["Content-Type"]
    assert isinstance(data, dict), data
    assert PROBLEM_FIELDS <= data.keys(), data
    assert data["status"] == status
    assert data["type"].endswith("/" + data["code"])
    if code is not None:
        assert data["code"] == code, data
    return data


def assert_invalid_token(response: tuple[int, Any, Any]) -> None:
    assert_problem(response, 401, "invalid_token")
    assert response[2]["WWW-Authenticate"] == INVALID_TOKEN_CHALLENGE


def assert_validation_error(response: tuple[int, Any, Any], field: str | None = None) -> list[dict]:
    """422 `validation_failed` whose `errors` name `field` or a part of it (if given)."""
    data = assert_problem(response, 422, "validation_failed")
    errors = data["errors"]
    assert errors and all(set(error) == {"field", "message"} for error in errors), errors
    if field is not None:
        assert any(error["field"].split(".")[0] == field for error in errors), errors
    return errors


async def send_raw(
    api: Api, method: str, path: str, raw: bytes | Any, content_type: str | None = "application/json",
    headers: dict[str, str] | None = None,
) -> tuple[int, Any, Any]:
    """A request whose body bytes are exactly `raw` (no JSON encoding by the client)."""
    extra = dict(headers or {})
    if content_type is not None:
        extra["Content-Type"] = content_type
    return await api.call(method, path, data=raw, headers=extra)


async def send_billing(api: Api, secret: str, body: Any) -> tuple[int, Any, Any]:
    """POST a billing webhook body, correctly signed."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return await send_raw(api, "POST", "/api/billing/events", raw,
                          headers={"X-Reelgate-Signature": sign(secret, raw)})


def check_path(user_id: Any, movie_id: Any, *, internal: bool = False) -> str:
    prefix = "/internal" if internal else "/api"
    return f"{prefix}/entitlements/check?user_id={user_id}&movie_id={movie_id}"


def plan_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"name": "Basic", "price_cents": 999, "currency": "EUR",
                            "max_streams": 2, "max_height": 1080, "genres": []}
    body.update(overrides)
    return body


async def create_plan(admin: Api, **overrides: Any) -> dict[str, Any]:
    return await admin.ok("POST", "/api/plans", plan_body(**overrides), status=201)


async def token_pair(api: Api, email: str, password: str) -> dict[str, Any]:
    return await api.as_(None).ok("POST", "/api/auth/login", {"email": email, "password": password})


# ---------------------------------------------------------------- JWT forging


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def compact(header: dict[str, Any], payload: dict[str, Any], signer: Any = None) -> str:
    """A JWS compact token; `signer(signing_input) -> signature bytes` (None: empty)."""
    signing_input = (
        b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(payload).encode())
    )
    signature = signer(signing_input.encode()) if signer is not None else b""
    return signing_input + "." + b64url(signature)


def access_claims(user_id: uuid.UUID | str, role: str = "admin", **overrides: Any) -> dict[str, Any]:
    """The claims of a genuine access token, to be bent by the attack tests."""
    now = int(time.time())
    claims: dict[str, Any] = {"iss": "reelgate", "aud": "reelgate:api", "sub": str(user_id),
                              "role": role, "typ": "access", "iat": now, "nbf": now,
                              "exp": now + 600, "jti": uuid.uuid4().hex}
    claims.update(overrides)
    return {key: value for key, value in claims.items() if value is not None}


# ---------------------------------------------------------------- table-driven checks


async def check_rows(rows: list[Any], check: Any) -> None:
    """Run `check(*row)` for every row of a table and report every failing row.

    Used for tables of cheap, state-free checks (validation rules, role
    refusals): one app and one empty database per table instead of per row
    keeps the suite fast, and no row hides another's failure."""
    failures = []
    for row in rows:
        args = row if isinstance(row, tuple) else (row,)
        try:
            await check(*args)
        except AssertionError as exc:
            failures.append(f"{row!r}: {exc}")
    assert not failures, "\n".join(failures)
