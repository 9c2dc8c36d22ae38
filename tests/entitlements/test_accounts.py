"""Accounts: register, login (and its rate limits), refresh rotation, logout,
JWKS and the caller's own profile."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import uuid

import pytest

from tests.entitlements.support import (
    assert_invalid_token,
    assert_problem,
    assert_validation_error,
    b64url_decode,
    check_rows,
    token_pair,
)

PASSWORD = "viewer-pass-1"


def _email() -> str:
    return f"user-{uuid.uuid4().hex[:10]}@example.com"


async def _register(api, email: str, password: str = PASSWORD, name: str = "Viewer"):
    return await api.call("POST", "/api/auth/register",
                          {"email": email, "password": password, "name": name})


async def _login(api, email: str, password: str):
    return await api.as_(None).call("POST", "/api/auth/login", {"email": email, "password": password})


async def _refresh(api, refresh_token: str):
    return await api.as_(None).call("POST", "/api/auth/refresh", {"refresh_token": refresh_token})


# ---------------------------------------------------------------- register


async def test_register_returns_a_viewer_profile(api):
    status, user, headers = await _register(api, "Ann@Example.com", name="Ann")
    assert status == 201
    assert headers["Content-Type"].startswith("application/json")
    assert {"id", "email", "name", "role", "created_at"} <= user.keys()
    assert uuid.UUID(user["id"])
    assert user["email"] == "ann@example.com"
    assert user["name"] == "Ann"
    assert user["role"] == "viewer"
    created = dt.datetime.fromisoformat(user["created_at"])
    assert created.utcoffset() == dt.timedelta(0)
    assert abs(dt.datetime.now(dt.UTC) - created) < dt.timedelta(minutes=1)
    assert "password" not in user and "password_hash" not in user


@pytest.mark.parametrize("second", ["dup@example.com", "DUP@example.com", "Dup@Example.COM"])
async def test_register_with_a_taken_email_is_409_whatever_the_case(api, second):
    assert (await _register(api, "dup@example.com"))[0] == 201
    assert_problem(await _register(api, second), 409, "email_taken")


async def test_parallel_registrations_of_one_email_yield_exactly_one(api):
    email = _email()
    responses = await asyncio.gather(*(_register(api, email) for _ in range(6)))
    assert sorted(status for status, _, _ in responses) == [201] + [409] * 5
    for response in responses:
        if response[0] == 409:
            assert_problem(response, 409, "email_taken")


async def test_register_cannot_choose_a_role(api):
    response = await api.call("POST", "/api/auth/register", {
        "email": _email(), "password": PASSWORD, "name": "Eve", "role": "admin"})
    assert_validation_error(response, "role")


INVALID_REGISTRATIONS = [
    ("email", "not-an-email"),
    ("email", ""),
    ("email", 5),
    ("password", "short"),
    ("password", "x" * 257),
    ("password", 12345678),
    ("name", ""),
    ("name", "x" * 201),
    ("name", None),
    ("name", ["Ann"]),
    ("name", "nul\x00inside"),
]


async def test_register_rejects_invalid_fields(api):
    async def check(field, value):
        body = {"email": _email(), "password": PASSWORD, "name": "Ann", field: value}
        assert_validation_error(await api.call("POST", "/api/auth/register", body), field)

    await check_rows(INVALID_REGISTRATIONS, check)


async def test_register_requires_every_field(api):
    async def check(missing):
        body = {"email": _email(), "password": PASSWORD, "name": "Ann"}
        del body[missing]
        assert_validation_error(await api.call("POST", "/api/auth/register", body), missing)

    await check_rows(["email", "password", "name"], check)


# ---------------------------------------------------------------- login


async def test_login_returns_a_bearer_token_pair(api, settings):
    email = _email()
    await _register(api, email)
    status, pair, _ = await _login(api, email, PASSWORD)
    assert status == 200
    assert pair["token_type"] == "Bearer"
    assert pair["expires_in"] == settings.access_token_ttl_s
    assert pair["access_token"].count(".") == 2
    assert pair["refresh_token"] and pair["refresh_token"] != pair["access_token"]
    me = await api.as_(pair["access_token"]).ok("GET", "/api/users/me")
    assert me["email"] == email


async def test_login_email_is_case_insensitive(api):
    email = _email()
    await _register(api, email)
    assert (await _login(api, email.upper(), PASSWORD))[0] == 200


@pytest.mark.parametrize("who", ["wrong_password", "unknown_email"])
async def test_login_with_bad_credentials_is_401(api, who):
    email = _email()
    await _register(api, email)
    if who == "wrong_password":
        response = await _login(api, email, "wrong-password")
    else:
        response = await _login(api, _email(), PASSWORD)
    assert_problem(response, 401, "invalid_credentials")


async def test_repeated_failures_lock_the_account_with_retry_after(api, settings):
    email = _email()
    await _register(api, email)
    for _ in range(settings.login_max_per_account):
        assert_problem(await _login(api, email, "wrong-password"), 401, "invalid_credentials")
    locked = await _login(api, email, "wrong-password")
    assert_problem(locked, 429, "too_many_attempts")
    assert 1 <= int(locked[2]["Retry-After"]) <= settings.login_window_s


async def test_a_locked_account_refuses_even_the_right_password(api, settings):
    email = _email()
    await _register(api, email)
    for _ in range(settings.login_max_per_account + 1):
        await _login(api, email, "wrong-password")
    response = await _login(api, email, PASSWORD)
    assert_problem(response, 429, "too_many_attempts")
    assert int(response[2]["Retry-After"]) >= 1


async def test_locking_one_account_leaves_others_alone(api, settings):
    victim, other = _email(), _email()
    await _register(api, victim)
    await _register(api, other)
    for _ in range(settings.login_max_per_account + 1):
        await _login(api, victim, "wrong-password")
    assert (await _login(api, other, PASSWORD))[0] == 200


async def test_too_many_attempts_from_one_address_is_429(api, settings):
    # Distinct unknown accounts: only the per-address limit can trigger.
    for _ in range(settings.login_max_per_address):
        assert (await _login(api, _email(), "wrong-password"))[0] == 401
    response = await _login(api, _email(), "wrong-password")
    assert_problem(response, 429, "too_many_attempts")
    assert int(response[2]["Retry-After"]) >= 1


async def test_login_validates_its_body(api):
    async def check(body):
        assert_validation_error(await api.call("POST", "/api/auth/login", body))

    await check_rows([{"email": "a@example.com"}, {"password": "x"},
                      {"email": "", "password": "x"}, {"email": "a@example.com", "password": ""},
                      {"email": 1, "password": "x"}, {"email": "a\x00@x.io", "password": "x"}],
                     check)


# ---------------------------------------------------------------- refresh and logout


async def test_refresh_returns_a_working_new_pair(api):
    email = _email()
    await _register(api, email)
    first = await token_pair(api, email, PASSWORD)
    status, second, _ = await _refresh(api, first["refresh_token"])
    assert status == 200
    assert second["token_type"] == "Bearer"
    assert second["refresh_token"] != first["refresh_token"]
    assert (await api.as_(second["access_token"]).call("GET", "/api/users/me"))[0] == 200
    assert (await _refresh(api, second["refresh_token"]))[0] == 200


async def test_a_rotated_refresh_token_stops_working(api):
    email = _email()
    await _register(api, email)
    first = await token_pair(api, email, PASSWORD)
    await api.ok("POST", "/api/auth/refresh", {"refresh_token": first["refresh_token"]})
    assert_invalid_token(await _refresh(api, first["refresh_token"]))


async def test_reusing_a_rotated_refresh_token_revokes_the_whole_family(api):
    email = _email()
    await _register(api, email)
    first = await token_pair(api, email, PASSWORD)
    second = await api.ok("POST", "/api/auth/refresh", {"refresh_token": first["refresh_token"]})
    assert_invalid_token(await _refresh(api, first["refresh_token"]))  # the reuse
    assert_invalid_token(await _refresh(api, second["refresh_token"]))  # newest of the family


async def test_reuse_revokes_only_that_login_family(api):
    email = _email()
    await _register(api, email)
    stolen = await token_pair(api, email, PASSWORD)
    other_device = await token_pair(api, email, PASSWORD)
    await api.ok("POST", "/api/auth/refresh", {"refresh_token": stolen["refresh_token"]})
    await _refresh(api, stolen["refresh_token"])
    assert (await _refresh(api, other_device["refresh_token"]))[0] == 200


async def test_parallel_refreshes_with_one_token_let_at_most_one_through(api):
    email = _email()
    await _register(api, email)
    pair = await token_pair(api, email, PASSWORD)
    responses = await asyncio.gather(*(_refresh(api, pair["refresh_token"]) for _ in range(5)))
    statuses = sorted(status for status, _, _ in responses)
    assert statuses.count(200) <= 1 and set(statuses) <= {200, 401}, statuses
    for response in responses:
        if response[0] == 401:
            assert_invalid_token(response)


async def test_refresh_with_an_unknown_token_is_401(api):
    assert_invalid_token(await _refresh(api, "x" * 200))


async def test_refresh_token_longer_than_the_limit_is_422(api):
    assert_validation_error(await _refresh(api, "x" * 201), "refresh_token")


async def test_logout_revokes_the_refresh_token(api):
    email = _email()
    await _register(api, email)
    pair = await token_pair(api, email, PASSWORD)
    user = api.as_(pair["access_token"])
    status, body, _ = await user.call("POST", "/api/auth/logout",
                                      {"refresh_token": pair["refresh_token"]})
    assert (status, body) == (204, b"")
    assert_invalid_token(await _refresh(api, pair["refresh_token"]))


async def test_logout_without_a_body_revokes_every_refresh_token_of_the_user(api):
    email = _email()
    await _register(api, email)
    one, two = await token_pair(api, email, PASSWORD), await token_pair(api, email, PASSWORD)
    await api.as_(one["access_token"]).ok("POST", "/api/auth/logout", status=204)
    assert_invalid_token(await _refresh(api, one["refresh_token"]))
    assert_invalid_token(await _refresh(api, two["refresh_token"]))


async def test_logout_cannot_revoke_another_users_refresh_token(api):
    victim_email, attacker_email = _email(), _email()
    await _register(api, victim_email)
    await _register(api, attacker_email)
    victim = await token_pair(api, victim_email, PASSWORD)
    attacker = await token_pair(api, attacker_email, PASSWORD)
    await api.as_(attacker["access_token"]).ok(
        "POST", "/api/auth/logout", {"refresh_token": victim["refresh_token"]}, status=204)
    assert (await _refresh(api, victim["refresh_token"]))[0] == 200


async def test_logout_needs_an_access_token(api):
    assert_invalid_token(await api.call("POST", "/api/auth/logout", {"refresh_token": "x"}))


# ---------------------------------------------------------------- JWKS


async def test_jwks_publishes_the_ed25519_key_that_verifies_tokens(api, admin):
    status, jwks, headers = await api.call("GET", "/api/auth/jwks")
    assert status == 200
    [key] = jwks["keys"]
    assert key["kty"] == "OKP" and key["crv"] == "Ed25519"
    assert key["kid"] and key["alg"] == "EdDSA"
    assert len(b64url_decode(key["x"])) == 32
    assert "d" not in key  # never the private part
    token_header = admin.token.split(".")[0]
    assert json.loads(b64url_decode(token_header))["kid"] == key["kid"]
    assert "public" in headers.get("Cache-Control", "")


# ---------------------------------------------------------------- own profile


async def test_get_me_returns_the_callers_profile(api):
    viewer, user = await api.register_viewer()
    me = await viewer.ok("GET", "/api/users/me")
    assert me["id"] == user["id"] and me["role"] == "viewer"


async def test_get_me_needs_a_token(api):
    assert_invalid_token(await api.call("GET", "/api/users/me"))


async def test_patch_me_changes_the_name(api):
    viewer, _ = await api.register_viewer()
    assert (await viewer.ok("PATCH", "/api/users/me", {"name": "New Name"}))["name"] == "New Name"
    assert (await viewer.ok("GET", "/api/users/me"))["name"] == "New Name"


async def test_patch_me_cannot_change_protected_fields(api):
    viewer, user = await api.register_viewer()

    async def check(field):
        assert_validation_error(await viewer.call("PATCH", "/api/users/me", {field: "admin"}),
                                field)

    await check_rows(["role", "email", "id", "deleted_at"], check)
    assert await viewer.ok("GET", "/api/users/me") == user


async def test_password_change_replaces_the_old_password(api):
    email = _email()
    viewer, _ = await api.register_viewer(email)
    await viewer.ok("PATCH", "/api/users/me",
                    {"password": "brand-new-pass", "current_password": "viewer-pass-1"})
    assert_problem(await _login(api, email, "viewer-pass-1"), 401, "invalid_credentials")
    assert (await _login(api, email, "brand-new-pass"))[0] == 200


async def test_password_change_signs_out_refresh_tokens(api):
    email = _email()
    viewer, _ = await api.register_viewer(email)
    pair = await token_pair(api, email, "viewer-pass-1")
    await viewer.ok("PATCH", "/api/users/me",
                    {"password": "brand-new-pass", "current_password": "viewer-pass-1"})
    assert_invalid_token(await _refresh(api, pair["refresh_token"]))


async def test_password_change_without_current_password_is_422(api):
    viewer, _ = await api.register_viewer()
    response = await viewer.call("PATCH", "/api/users/me", {"password": "brand-new-pass"})
    assert_validation_error(response, "current_password")


async def test_password_change_with_a_wrong_current_password_is_403(api):
    email = _email()
    viewer, _ = await api.register_viewer(email)
    response = await viewer.call("PATCH", "/api/users/me",
                                 {"password": "brand-new-pass", "current_password": "wrong-pass"})
    assert_problem(response, 403, "wrong_password")
    assert (await _login(api, email, "viewer-pass-1"))[0] == 200


async def test_patch_me_validates_its_body(api):
    viewer, user = await api.register_viewer()

    async def check(body):
        response = await viewer.call("PATCH", "/api/users/me", body)
        assert_validation_error(response, next(iter(body)))

    await check_rows([{"name": None}, {"name": ""}, {"name": 5}, {"name": "x" * 201},
                      {"password": "short", "current_password": "viewer-pass-1"},
                      {"password": None}], check)
    assert await viewer.ok("GET", "/api/users/me") == user


@pytest.mark.parametrize("method", ["GET", "PATCH"])
async def test_a_deleted_accounts_token_no_longer_reaches_its_profile(api, admin, method):
    viewer, user = await api.register_viewer()
    await admin.ok("DELETE", f"/api/users/{user['id']}", status=204)
    body = {"name": "Ghost"} if method == "PATCH" else None
    assert_invalid_token(await viewer.call(method, "/api/users/me", body))
