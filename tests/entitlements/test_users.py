"""Users, for admins: list (paginated), create with a role, read, update,
soft delete and restore."""

from __future__ import annotations

import uuid

import pytest

from entitlements import service
from entitlements.models import User
from entitlements.resources import RESOURCES
from tests.entitlements.support import (
    assert_invalid_token,
    assert_problem,
    assert_validation_error,
    check_path,
    check_rows,
)


def _new_user(**overrides):
    body = {"email": f"u-{uuid.uuid4().hex[:10]}@example.com", "password": "user-pass-1",
            "name": "User"}
    body.update(overrides)
    return body


async def _create(admin, **overrides):
    return await admin.ok("POST", "/api/users", _new_user(**overrides), status=201)


# ---------------------------------------------------------------- list


async def test_list_is_a_paginated_envelope(admin):
    for _ in range(3):
        await _create(admin)
    page = await admin.ok("GET", "/api/users?page=2&per_page=2")
    assert set(page) == {"items", "page", "per_page", "total"}
    assert (page["page"], page["per_page"], page["total"]) == (2, 2, 4)  # 3 + the admin
    assert len(page["items"]) == 2
    first = await admin.ok("GET", "/api/users?page=1&per_page=2")
    ids = {user["id"] for user in first["items"] + page["items"]}
    assert len(ids) == 4


async def test_list_defaults_to_page_one_of_twenty(admin):
    page = await admin.ok("GET", "/api/users")
    assert (page["page"], page["per_page"], page["total"]) == (1, 20, 1)
    assert page["items"][0]["role"] == "admin"


async def test_a_page_past_the_end_is_empty(admin):
    page = await admin.ok("GET", "/api/users?page=50")
    assert page["items"] == [] and page["total"] == 1


async def test_per_page_over_100_is_422(admin):
    assert_validation_error(await admin.call("GET", "/api/users?per_page=101"), "per_page")


async def test_list_rejects_bad_pagination(admin):
    async def check(query, field):
        assert_validation_error(await admin.call("GET", f"/api/users?{query}"), field)

    await check_rows([("per_page=0", "per_page"), ("page=0", "page"), ("page=-1", "page"),
                      ("page=abc", "page"), ("per_page=1.5", "per_page"),
                      ("with_deleted=maybe", "with_deleted"),
                      ("page=99999999999999999999", "page")], check)


async def test_per_page_of_100_is_allowed(admin):
    assert (await admin.ok("GET", "/api/users?per_page=100"))["per_page"] == 100


# ---------------------------------------------------------------- create and read


@pytest.mark.parametrize("role", ["viewer", "admin"])
async def test_admin_creates_a_user_with_a_role(api, admin, role):
    body = _new_user(role=role)
    user = await admin.ok("POST", "/api/users", body, status=201)
    assert user["role"] == role and user["email"] == body["email"]
    assert "password" not in user and "password_hash" not in user
    created = await api.login(body["email"], body["password"])
    assert (await created.ok("GET", "/api/users/me"))["role"] == role


async def test_created_users_default_to_viewer(admin):
    assert (await _create(admin))["role"] == "viewer"


async def test_create_rejects_a_taken_email(admin):
    user = await _create(admin)
    response = await admin.call("POST", "/api/users", _new_user(email=user["email"].upper()))
    assert_problem(response, 409, "email_taken")


async def test_create_validates_its_body(admin):
    async def check(field, value):
        response = await admin.call("POST", "/api/users", _new_user(**{field: value}))
        assert_validation_error(response, field)

    await check_rows([("role", "root"), ("role", None), ("role", 1), ("email", "nope"),
                      ("password", "short"), ("name", ""), ("is_admin", True)], check)
    assert (await admin.ok("GET", "/api/users"))["total"] == 1


async def test_admin_reads_a_user(admin):
    user = await _create(admin, name="Reader")
    got = await admin.ok("GET", f"/api/users/{user['id']}")
    assert got == user


async def test_reading_an_unknown_user_is_404(admin):
    async def check(user_id):
        assert_problem(await admin.call("GET", f"/api/users/{user_id}"), 404, "not_found")

    await check_rows([str(uuid.uuid4()), "not-a-uuid", "123"], check)


# ---------------------------------------------------------------- update


@pytest.mark.parametrize(
    ("change", "expected"),
    [({"name": "Renamed"}, {"name": "Renamed"}), ({"role": "admin"}, {"role": "admin"}),
     ({"email": "New@Example.com"}, {"email": "new@example.com"})],
)
async def test_admin_patches_a_user(admin, change, expected):
    user = await _create(admin)
    patched = await admin.ok("PATCH", f"/api/users/{user['id']}", change)
    assert expected.items() <= patched.items()
    assert expected.items() <= (await admin.ok("GET", f"/api/users/{user['id']}")).items()


async def test_admin_resets_a_password(api, admin):
    body = _new_user()
    user = await admin.ok("POST", "/api/users", body, status=201)
    await admin.ok("PATCH", f"/api/users/{user['id']}", {"password": "reset-pass-1"})
    await api.login(body["email"], "reset-pass-1")
    status, _, _ = await api.call("POST", "/api/auth/login",
                                  {"email": body["email"], "password": body["password"]})
    assert status == 401


async def test_patching_to_a_taken_email_is_409(admin, settings):
    user = await _create(admin)
    response = await admin.call("PATCH", f"/api/users/{user['id']}",
                                {"email": settings.admin_email})
    assert_problem(response, 409, "email_taken")


async def test_an_email_taken_between_the_check_and_the_write_is_409(admin, ent_client,
                                                                   monkeypatch):
    """The pre-check and the UPDATE are two statements: another account can take
    the address in between. The unique index refuses the write, and the answer
    is the pre-check's 409, not a 500."""
    user = await _create(admin)
    wanted = f"race-{uuid.uuid4().hex[:10]}@example.com"
    resources = ent_client.app[RESOURCES]
    real_check = service.email_taken

    async def check_then_lose_the_race(session, email):
        taken = await real_check(session, email)
        async with resources.db.transaction() as other:  # another request commits first
            other.add(User(email=email, name="Other", role="viewer", password_hash="x"))
        return taken

    monkeypatch.setattr(service, "email_taken", check_then_lose_the_race)
    response = await admin.call("PATCH", f"/api/users/{user['id']}", {"email": wanted})
    monkeypatch.undo()
    assert_problem(response, 409, "email_taken")
    assert (await admin.ok("GET", f"/api/users/{user['id']}"))["email"] == user["email"]


async def test_patch_validates_its_body(admin):
    user = await _create(admin)

    async def check(body):
        response = await admin.call("PATCH", f"/api/users/{user['id']}", body)
        assert_validation_error(response, next(iter(body)))

    await check_rows([{"name": None}, {"email": None}, {"role": None}, {"password": None},
                      {"role": "owner"}, {"name": 3}, {"deleted_at": None}], check)
    assert await admin.ok("GET", f"/api/users/{user['id']}") == user


async def test_patching_an_unknown_user_is_404(admin):
    response = await admin.call("PATCH", f"/api/users/{uuid.uuid4()}", {"name": "x"})
    assert_problem(response, 404, "not_found")


# ---------------------------------------------------------------- soft delete and restore


async def test_deleted_user_is_404_and_hidden_from_the_list(admin):
    user = await _create(admin)
    status, body, _ = await admin.call("DELETE", f"/api/users/{user['id']}")
    assert (status, body) == (204, b"")
    assert_problem(await admin.call("GET", f"/api/users/{user['id']}"), 404, "not_found")
    listed = await admin.ok("GET", "/api/users")
    assert user["id"] not in {u["id"] for u in listed["items"]}
    assert listed["total"] == 1


async def test_with_deleted_shows_deleted_users(admin):
    user = await _create(admin)
    await admin.ok("DELETE", f"/api/users/{user['id']}", status=204)
    listed = await admin.ok("GET", "/api/users?with_deleted=true")
    [deleted] = [u for u in listed["items"] if u["id"] == user["id"]]
    assert deleted["deleted_at"] is not None
    got = await admin.ok("GET", f"/api/users/{user['id']}?with_deleted=true")
    assert got["deleted_at"] is not None


async def test_a_deleted_user_cannot_log_in(api, admin):
    body = _new_user()
    user = await admin.ok("POST", "/api/users", body, status=201)
    await admin.ok("DELETE", f"/api/users/{user['id']}", status=204)
    response = await api.call("POST", "/api/auth/login",
                              {"email": body["email"], "password": body["password"]})
    assert_problem(response, 401, "invalid_credentials")


async def test_a_deleted_users_refresh_token_stops_working(api, admin):
    body = _new_user()
    user = await admin.ok("POST", "/api/users", body, status=201)
    pair = await api.ok("POST", "/api/auth/login",
                        {"email": body["email"], "password": body["password"]})
    await admin.ok("DELETE", f"/api/users/{user['id']}", status=204)
    assert_invalid_token(await api.call("POST", "/api/auth/refresh",
                                        {"refresh_token": pair["refresh_token"]}))


async def test_a_deleted_user_is_not_entitled(admin, publish_movie):
    movie = await publish_movie()
    user = await _create(admin)
    await admin.ok("DELETE", f"/api/users/{user['id']}", status=204)
    decision = await admin.ok("GET", check_path(user["id"], movie))
    assert decision == {"allowed": False, "reason": "user_disabled", "max_height": None}


async def test_deleting_twice_is_404(admin):
    user = await _create(admin)
    await admin.ok("DELETE", f"/api/users/{user['id']}", status=204)
    assert_problem(await admin.call("DELETE", f"/api/users/{user['id']}"), 404, "not_found")


async def test_restore_brings_a_user_back(api, admin):
    body = _new_user()
    user = await admin.ok("POST", "/api/users", body, status=201)
    await admin.ok("DELETE", f"/api/users/{user['id']}", status=204)
    restored = await admin.ok("POST", f"/api/users/{user['id']}/restore")
    assert restored["id"] == user["id"] and restored["deleted_at"] is None
    assert (await admin.ok("GET", f"/api/users/{user['id']}"))["deleted_at"] is None
    await api.login(body["email"], body["password"])


async def test_restoring_an_unknown_user_is_404(admin):
    assert_problem(await admin.call("POST", f"/api/users/{uuid.uuid4()}/restore"), 404)


# ---------------------------------------------------------------- who may


ADMIN_ROUTES = [
    ("GET", "/api/users"),
    ("POST", "/api/users"),
    ("GET", "/api/users/{id}"),
    ("PATCH", "/api/users/{id}"),
    ("DELETE", "/api/users/{id}"),
    ("POST", "/api/users/{id}/restore"),
]


async def test_viewers_get_403_on_user_administration(api):
    viewer, user = await api.register_viewer()

    async def check(method, path):
        body = _new_user() if (method, path) == ("POST", "/api/users") else (
            {"name": "x", "role": "admin"} if method == "PATCH" else None)
        response = await viewer.call(method, path.format(id=user["id"]), body)
        assert_problem(response, 403, "admin_required")

    await check_rows(ADMIN_ROUTES, check)
    assert await viewer.ok("GET", "/api/users/me") == user


async def test_anonymous_callers_get_401_on_user_administration(api):
    async def check(method, path):
        body = {"name": "x"} if method in ("POST", "PATCH") else None
        assert_invalid_token(await api.call(method, path.format(id=uuid.uuid4()), body))

    await check_rows(ADMIN_ROUTES, check)


async def _second_admin(api, admin):
    body = _new_user(role="admin")
    user = await admin.ok("POST", "/api/users", body, status=201)
    return await api.login(body["email"], body["password"]), user


async def test_a_deleted_admins_token_stops_working_at_once(api, admin):
    """An access token outlives a deletion by up to its TTL; admin powers must not."""
    other, user = await _second_admin(api, admin)
    await other.ok("GET", "/api/users")
    await admin.ok("DELETE", f"/api/users/{user['id']}", status=204)

    async def check(method, path):
        body = {"name": "x"} if method in ("POST", "PATCH") else None
        assert_invalid_token(await other.call(method, path.format(id=user["id"]), body))

    await check_rows(ADMIN_ROUTES + [("POST", "/api/plans"),
                                     ("GET", check_path(user["id"], uuid.uuid4()))], check)


async def test_a_demoted_admins_token_loses_the_role_at_once(api, admin):
    other, user = await _second_admin(api, admin)
    target = await _create(admin)
    await admin.ok("PATCH", f"/api/users/{user['id']}", {"role": "viewer"})

    async def check(method, path):
        body = _new_user() if (method, path) == ("POST", "/api/users") else (
            {"name": "x", "role": "admin"} if method == "PATCH" else None)
        response = await other.call(method, path.format(id=target["id"]), body)
        assert_problem(response, 403, "admin_required")

    await check_rows(ADMIN_ROUTES, check)
    assert await admin.ok("GET", f"/api/users/{target['id']}") == target
    # Still a valid token: the account goes on as the viewer it now is.
    assert (await other.ok("GET", "/api/users/me"))["role"] == "viewer"
