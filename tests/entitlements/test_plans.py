"""Plans: CRUD (public reads, admin writes), soft delete and restore, movie
membership and automatic membership by genre from `movie.created` events."""

from __future__ import annotations

import uuid

from tests.entitlements.support import (
    assert_invalid_token,
    assert_problem,
    assert_validation_error,
    check_rows,
    create_plan,
    plan_body,
)

PLAN_FIELDS = {"id", "name", "price_cents", "currency", "max_streams", "max_height", "genres",
               "created_at", "updated_at"}


async def _movie_ids(api, plan_id: str) -> list[str]:
    return (await api.ok("GET", f"/api/plans/{plan_id}/movies"))["items"]


# ---------------------------------------------------------------- CRUD


async def test_admin_creates_a_plan(admin):
    plan = await admin.ok("POST", "/api/plans",
                          plan_body(name="Premium", genres=["drama", "comedy", "drama"]),
                          status=201)
    assert PLAN_FIELDS <= plan.keys()
    assert uuid.UUID(plan["id"])
    assert (plan["name"], plan["price_cents"], plan["currency"]) == ("Premium", 999, "EUR")
    assert (plan["max_streams"], plan["max_height"]) == (2, 1080)
    assert plan["genres"] == ["comedy", "drama"]  # a set: sorted, without duplicates


async def test_currency_defaults_to_eur(admin):
    body = plan_body()
    del body["currency"]
    assert (await admin.ok("POST", "/api/plans", body, status=201))["currency"] == "EUR"


async def test_plans_are_public_to_read(api, admin):
    plan = await create_plan(admin)
    listed = await api.ok("GET", "/api/plans")
    assert set(listed) == {"items", "page", "per_page", "total"}
    assert [p["id"] for p in listed["items"]] == [plan["id"]]
    assert await api.ok("GET", f"/api/plans/{plan['id']}") == plan


async def test_plans_list_in_price_order_and_paginates(api, admin):
    for price in (300, 100, 200):
        await create_plan(admin, name=f"P{price}", price_cents=price)
    listed = await api.ok("GET", "/api/plans?per_page=2")
    assert [p["price_cents"] for p in listed["items"]] == [100, 200]
    assert listed["total"] == 3
    assert_validation_error(await api.call("GET", "/api/plans?per_page=101"), "per_page")


async def test_admin_patches_a_plan(api, admin):
    plan = await create_plan(admin)
    patched = await admin.ok("PATCH", f"/api/plans/{plan['id']}",
                             {"price_cents": 1299, "max_height": 2160, "genres": ["*"]})
    assert (patched["price_cents"], patched["max_height"], patched["genres"]) == (1299, 2160, ["*"])
    assert patched["name"] == plan["name"]
    assert (await api.ok("GET", f"/api/plans/{plan['id']}"))["price_cents"] == 1299


INVALID_PLAN_FIELDS = [
    ("name", ""), ("name", None), ("name", "x" * 201), ("price_cents", -1), ("price_cents", "5"),
    ("price_cents", 1.5), ("price_cents", 10**12), ("price_cents", True), ("currency", "eur"),
    ("currency", "EURO"), ("max_streams", 0), ("max_streams", 101), ("max_height", 100),
    ("max_height", 10**6), ("genres", "comedy"), ("genres", ["Comedy"]), ("genres", ["a b"]),
    ("genres", [1]), ("genres", ["x"] * 51), ("genres", None), ("id", str(uuid.uuid4())),
]


async def test_create_validates_every_field(api, admin):
    async def check(field, value):
        response = await admin.call("POST", "/api/plans", plan_body(**{field: value}))
        assert_validation_error(response, field)

    await check_rows(INVALID_PLAN_FIELDS, check)
    assert (await api.ok("GET", "/api/plans"))["total"] == 0


async def test_create_requires_fields(admin):
    async def check(missing):
        body = plan_body()
        del body[missing]
        assert_validation_error(await admin.call("POST", "/api/plans", body), missing)

    await check_rows(["name", "price_cents", "max_streams", "max_height"], check)


async def test_patch_validates_every_field(api, admin):
    plan = await create_plan(admin)

    async def check(field, value):
        response = await admin.call("PATCH", f"/api/plans/{plan['id']}", {field: value})
        assert_validation_error(response, field)

    await check_rows(INVALID_PLAN_FIELDS + [("max_streams", None), ("currency", None),
                                            ("created_at", "2020-01-01T00:00:00Z")], check)
    assert await api.ok("GET", f"/api/plans/{plan['id']}") == plan


async def test_delete_hides_the_plan_and_restore_brings_it_back(api, admin):
    plan = await create_plan(admin)
    status, body, _ = await admin.call("DELETE", f"/api/plans/{plan['id']}")
    assert (status, body) == (204, b"")
    assert_problem(await api.call("GET", f"/api/plans/{plan['id']}"), 404, "not_found")
    assert (await api.ok("GET", "/api/plans"))["items"] == []
    deleted = await admin.ok("GET", f"/api/plans/{plan['id']}?with_deleted=true")
    assert deleted["deleted_at"] is not None
    listed = await admin.ok("GET", "/api/plans?with_deleted=true")
    assert [p["id"] for p in listed["items"]] == [plan["id"]]
    restored = await admin.ok("POST", f"/api/plans/{plan['id']}/restore")
    assert restored["deleted_at"] is None
    assert (await api.ok("GET", f"/api/plans/{plan['id']}"))["id"] == plan["id"]


async def test_a_deleted_plan_cannot_be_patched_or_subscribed(api, admin):
    plan = await create_plan(admin)
    await admin.ok("DELETE", f"/api/plans/{plan['id']}", status=204)
    assert_problem(await admin.call("PATCH", f"/api/plans/{plan['id']}", {"name": "x"}), 404)
    viewer, _ = await api.register_viewer()
    response = await viewer.call("POST", "/api/subscriptions", {"plan_id": plan["id"]})
    assert_problem(response, 404, "not_found")


async def test_with_deleted_needs_an_admin(api, admin):
    plan = await create_plan(admin)
    assert_invalid_token(await api.call("GET", "/api/plans?with_deleted=true"))
    viewer, _ = await api.register_viewer()
    assert_problem(await viewer.call("GET", f"/api/plans/{plan['id']}?with_deleted=true"), 403)


async def test_unknown_plan_is_404(api):
    for plan_id in (uuid.uuid4(), "nope"):
        assert_problem(await api.call("GET", f"/api/plans/{plan_id}"), 404, "not_found")
        assert_problem(await api.call("GET", f"/api/plans/{plan_id}/movies"), 404, "not_found")


ADMIN_WRITES = [
    ("POST", "/api/plans", plan_body()),
    ("PATCH", "/api/plans/{plan}", {"name": "x"}),
    ("DELETE", "/api/plans/{plan}", None),
    ("POST", "/api/plans/{plan}/restore", None),
    ("PUT", "/api/plans/{plan}/movies/{movie}", None),
    ("DELETE", "/api/plans/{plan}/movies/{movie}", None),
]


async def test_viewers_cannot_write_plans(api, admin, publish_movie):
    plan = await create_plan(admin)
    movie = await publish_movie()
    await admin.ok("PUT", f"/api/plans/{plan['id']}/movies/{movie}", status=204)
    viewer, _ = await api.register_viewer()

    async def check(method, path, body):
        response = await viewer.call(method, path.format(plan=plan["id"], movie=movie), body)
        assert_problem(response, 403, "admin_required")

    await check_rows(ADMIN_WRITES, check)
    assert await api.ok("GET", f"/api/plans/{plan['id']}") == plan
    assert await _movie_ids(api, plan["id"]) == [str(movie)]


async def test_anonymous_callers_cannot_write_plans(api):
    async def check(method, path, body):
        response = await api.call(method, path.format(plan=uuid.uuid4(), movie=uuid.uuid4()),
                                  body)
        assert_invalid_token(response)

    await check_rows(ADMIN_WRITES, check)


# ---------------------------------------------------------------- movies in a plan


async def test_adding_and_removing_a_movie(api, admin, publish_movie):
    plan = await create_plan(admin)
    movie = await publish_movie()
    status, body, _ = await admin.call("PUT", f"/api/plans/{plan['id']}/movies/{movie}")
    assert (status, body) == (204, b"")
    assert await _movie_ids(api, plan["id"]) == [str(movie)]
    status, body, _ = await admin.call("DELETE", f"/api/plans/{plan['id']}/movies/{movie}")
    assert (status, body) == (204, b"")
    assert await _movie_ids(api, plan["id"]) == []


async def test_adding_a_movie_twice_is_idempotent(api, admin, publish_movie):
    plan = await create_plan(admin)
    movie = await publish_movie()
    for _ in range(2):
        await admin.ok("PUT", f"/api/plans/{plan['id']}/movies/{movie}", status=204)
    assert await _movie_ids(api, plan["id"]) == [str(movie)]


async def test_plan_movies_is_a_paginated_list_of_ids(api, admin, publish_movie):
    plan = await create_plan(admin)
    movies = [await publish_movie() for _ in range(3)]
    for movie in movies:
        await admin.ok("PUT", f"/api/plans/{plan['id']}/movies/{movie}", status=204)
    page = await api.ok("GET", f"/api/plans/{plan['id']}/movies?per_page=2&page=2")
    assert (page["page"], page["per_page"], page["total"]) == (2, 2, 3)
    assert page["items"] == [str(movies[2])]


async def test_adding_an_unknown_movie_is_404(admin):
    plan = await create_plan(admin)
    for movie_id in (uuid.uuid4(), "not-a-uuid"):
        response = await admin.call("PUT", f"/api/plans/{plan['id']}/movies/{movie_id}")
        assert_problem(response, 404, "not_found")


async def test_adding_a_deleted_movie_is_404(admin, publish_movie):
    plan = await create_plan(admin)
    movie = await publish_movie()
    await publish_movie(movie, kind="movie.deleted")
    response = await admin.call("PUT", f"/api/plans/{plan['id']}/movies/{movie}")
    assert_problem(response, 404, "not_found")


async def test_removing_a_movie_not_in_the_plan_is_404(admin, publish_movie):
    plan = await create_plan(admin)
    movie = await publish_movie()
    response = await admin.call("DELETE", f"/api/plans/{plan['id']}/movies/{movie}")
    assert_problem(response, 404, "not_found")


async def test_movies_of_an_unknown_plan_are_404(admin, publish_movie):
    movie = await publish_movie()
    response = await admin.call("PUT", f"/api/plans/{uuid.uuid4()}/movies/{movie}")
    assert_problem(response, 404, "not_found")


async def test_a_deleted_movie_leaves_the_plan_listing(api, admin, publish_movie):
    plan = await create_plan(admin)
    movie = await publish_movie()
    await admin.ok("PUT", f"/api/plans/{plan['id']}/movies/{movie}", status=204)
    await publish_movie(movie, kind="movie.deleted")
    assert await _movie_ids(api, plan["id"]) == []


# ---------------------------------------------------------------- membership by genre


async def test_a_new_movie_joins_plans_of_its_genre_only(api, admin, publish_movie):
    comedy_plan = await create_plan(admin, name="Comedy", genres=["comedy"])
    comedy = await publish_movie(genres=["comedy", "romance"])
    drama = await publish_movie(genres=["drama"])
    ids = await _movie_ids(api, comedy_plan["id"])
    assert str(comedy) in ids
    assert str(drama) not in ids


async def test_a_star_plan_gets_every_new_movie(api, admin, publish_movie):
    everything = await create_plan(admin, name="All", genres=["*"])
    movies = [await publish_movie(genres=["drama"]), await publish_movie(genres=["horror"])]
    assert sorted(await _movie_ids(api, everything["id"])) == sorted(map(str, movies))


async def test_a_plan_without_genres_gets_no_new_movies(api, admin, publish_movie):
    plan = await create_plan(admin, genres=[])
    await publish_movie(genres=["drama"])
    assert await _movie_ids(api, plan["id"]) == []


async def test_a_deleted_plan_gets_no_new_movies(api, admin, publish_movie):
    plan = await create_plan(admin, genres=["*"])
    await admin.ok("DELETE", f"/api/plans/{plan['id']}", status=204)
    await publish_movie()
    await admin.ok("POST", f"/api/plans/{plan['id']}/restore")
    assert await _movie_ids(api, plan["id"]) == []
