"""Actor routes: CRUD, nationality validated against ISO 3166-1, search,
soft delete (which also hides the actor's credits) and restore."""

from __future__ import annotations

import datetime as dt
import json
import uuid

import pytest

from catalog.resources import Resources
from tests.api import Api
from tests.catalog.support import (
    assert_invalid,
    assert_problem,
    assert_unauthenticated,
    make_actor,
    make_movie,
    outbox_rows,
)


async def test_create_read_replace_patch(api: Api, admin: Api) -> None:
    status, actor, headers = await admin.call(
        "POST",
        "/api/actors",
        {"name": "Jeanne Moreau", "birth_date": "1928-01-23", "nationality": "fr"},
    )
    assert status == 201, actor
    assert headers["Location"] == f"/api/actors/{actor['id']}"
    assert set(actor) == {
        "id",
        "name",
        "birth_date",
        "nationality",
        "created_at",
        "updated_at",
        "deleted_at",
    }
    assert (actor["nationality"], actor["birth_date"]) == ("FR", "1928-01-23")
    path = f"/api/actors/{actor['id']}"
    assert await api.ok("GET", path) == actor
    patched = await admin.ok("PATCH", path, {"nationality": "DE"})
    assert (patched["name"], patched["nationality"], patched["birth_date"]) == (
        "Jeanne Moreau", "DE", "1928-01-23",
    )  # fmt: skip
    replaced = await admin.ok("PUT", path, {"name": "J. Moreau"})
    assert (replaced["name"], replaced["nationality"], replaced["birth_date"]) == (
        "J. Moreau",
        None,
        None,
    )
    assert replaced["created_at"] == actor["created_at"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "name"),
        ({"name": ""}, "name"),
        ({"name": None}, "name"),
        ({"name": "N", "nationality": "XX"}, "nationality"),  # right shape, not a country
        ({"name": "N", "nationality": "FRA"}, "nationality"),
        ({"name": "N", "nationality": 33}, "nationality"),
        ({"name": "N", "birth_date": "1990-02-30"}, "birth_date"),
        (
            {"name": "N", "birth_date": (dt.date.today() + dt.timedelta(days=2)).isoformat()},
            "birth_date",
        ),
        ({"name": "N", "birth_date": 19900101}, "birth_date"),
        ({"name": "N", "height_cm": 180}, "height_cm"),
    ],
)
async def test_actor_validation(admin: Api, body: dict, field: str) -> None:
    assert_invalid(await admin.call("POST", "/api/actors", body), field)


async def test_patch_cannot_null_the_name(admin: Api) -> None:
    actor = await make_actor(admin)
    assert_invalid(await admin.call("PATCH", f"/api/actors/{actor['id']}", {"name": None}), "name")


async def test_list_filters_and_search(api: Api, admin: Api) -> None:
    for name, country in [
        ("Tom Hanks", "US"),
        ("Tom Hardy", "GB"),
        ("Tomas Milian", "CU"),
        ("Audrey Tautou", "FR"),
        ("Isabelle Huppert", "FR"),
    ]:
        await make_actor(admin, name, nationality=country)

    def names(page: dict) -> list[str]:
        return [actor["name"] for actor in page["items"]]

    everyone = await api.ok("GET", "/api/actors")
    assert names(everyone) == sorted(names(everyone)) and everyone["total"] == 5
    assert names(await api.ok("GET", "/api/actors?nationality=fr")) == [
        "Audrey Tautou",
        "Isabelle Huppert",
    ]
    assert names(await api.ok("GET", "/api/actors?q=tom")) == [
        "Tom Hanks",
        "Tom Hardy",
        "Tomas Milian",
    ]
    assert names(await api.ok("GET", "/api/actors?q=tom%20har")) == ["Tom Hardy"]
    assert names(await api.ok("GET", "/api/actors?q=huppert")) == ["Isabelle Huppert"]
    assert names(await api.ok("GET", "/api/actors?q=%26%7C!")) == []
    assert names(await api.ok("GET", "/api/actors?sort=-name&per_page=2")) == [
        "Tomas Milian",
        "Tom Hardy",
    ]
    assert_invalid(await api.call("GET", "/api/actors?nationality=ZZ"), "nationality")
    assert_invalid(await api.call("GET", "/api/actors?sort=age"), "sort")
    assert_invalid(await api.call("GET", "/api/actors?per_page=1000"), "per_page")


async def test_soft_delete_hides_the_actor_and_their_credits(
    api: Api, viewer: Api, admin: Api
) -> None:
    actor = await make_actor(admin, "Vanishing")
    other = await make_actor(admin, "Staying")
    movie = await make_movie(admin, actor_ids=[actor["id"], other["id"]])
    path = f"/api/actors/{actor['id']}"
    await admin.ok("DELETE", path, status=204)
    assert_problem(await api.call("GET", path), 404)
    assert [a["name"] for a in (await api.ok("GET", "/api/actors"))["items"]] == ["Staying"]
    credits = (await api.ok("GET", f"/api/movies/{movie['id']}"))["actors"]
    assert [a["name"] for a in credits] == ["Staying"]
    assert_unauthenticated(await api.call("GET", f"{path}?with_deleted=true"))
    assert_problem(await viewer.call("GET", "/api/actors?with_deleted=true"), 403)
    assert (await admin.ok("GET", f"{path}?with_deleted=true"))["deleted_at"] is not None
    assert (await admin.ok("GET", "/api/actors?with_deleted=true"))["total"] == 2
    assert_problem(await admin.call("PATCH", path, {"name": "x"}), 404)
    restored = await admin.ok("POST", f"{path}/restore")
    assert restored["deleted_at"] is None
    credits = (await api.ok("GET", f"/api/movies/{movie['id']}"))["actors"]
    assert [a["name"] for a in credits] == ["Vanishing", "Staying"]


async def _queued_since(resources: Resources, seen: int) -> list[dict]:
    return [json.loads(row.envelope) for row in (await outbox_rows(resources))[seen:]]


async def test_actor_writes_queue_movie_updated_for_each_of_their_movies(
    api: Api, admin: Api, resources: Resources
) -> None:
    """Movies embed their cast, so consumers must hear of an actor's change."""
    actor = await make_actor(admin, "Old Name")
    other = await make_actor(admin, "Bystander")
    one = await make_movie(admin, "One", actor_ids=[other["id"], actor["id"]])
    two = await make_movie(admin, "Two", actor_ids=[actor["id"]])
    await make_movie(admin, "Elsewhere", actor_ids=[other["id"]])
    gone = await make_movie(admin, "Gone", actor_ids=[actor["id"]])
    await admin.ok("DELETE", f"/api/movies/{gone['id']}", status=204)
    path = f"/api/actors/{actor['id']}"
    cast_in = {one["id"], two["id"]}  # live movies only: a deleted one gets nothing

    for method, body, name in [("PATCH", {"name": "New Name"}, "New Name"),
                               ("PUT", {"name": "Newer", "nationality": "FR"}, "Newer")]:
        seen = len(await outbox_rows(resources))
        await admin.ok(method, path, body)
        queued = await _queued_since(resources, seen)
        assert [e["type"] for e in queued] == ["movie.updated"] * 2, queued
        assert {e["data"]["id"] for e in queued} == cast_in
        for event in queued:
            # The event carries the movie as it now reads: the new name, the same cast.
            assert event["data"] == await api.ok("GET", f"/api/movies/{event['data']['id']}")
            assert name in [a["name"] for a in event["data"]["actors"]]
            updated_at = dt.datetime.fromisoformat(event["data"]["updated_at"])
            assert updated_at > dt.datetime.fromisoformat(one["updated_at"])

    seen = len(await outbox_rows(resources))
    await admin.ok("DELETE", path, status=204)
    queued = await _queued_since(resources, seen)
    assert {e["data"]["id"] for e in queued} == cast_in
    assert all(actor["id"] not in [a["id"] for a in e["data"]["actors"]] for e in queued)
    seen = len(await outbox_rows(resources))
    await admin.ok("POST", f"{path}/restore")
    queued = await _queued_since(resources, seen)
    assert {e["data"]["id"] for e in queued} == cast_in
    assert all(actor["id"] in [a["id"] for a in e["data"]["actors"]] for e in queued)


async def test_an_actor_in_no_movie_queues_nothing(admin: Api, resources: Resources) -> None:
    actor = await make_actor(admin)
    await admin.ok("PATCH", f"/api/actors/{actor['id']}", {"name": "Renamed"})
    await admin.ok("DELETE", f"/api/actors/{actor['id']}", status=204)
    assert await outbox_rows(resources) == []


async def test_actor_writes_need_an_admin(api: Api, viewer: Api, admin: Api) -> None:
    actor = await make_actor(admin)
    path = f"/api/actors/{actor['id']}"
    for method, url, body in [
        ("PUT", path, {"name": "x"}),
        ("PATCH", path, {"name": "x"}),
        ("DELETE", path, None),
        ("POST", f"{path}/restore", None),
    ]:
        assert_unauthenticated(await api.call(method, url, body))
        assert_problem(await viewer.call(method, url, body), 403, "admin_required")
    assert_problem(await api.call("GET", f"/api/actors/{uuid.uuid4()}"), 404)
    assert_problem(await api.call("GET", "/api/actors/..%2F..%2Fetc"), 404)
