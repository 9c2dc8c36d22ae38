"""Movie routes: create, read, replace, patch, soft delete, restore, and the
validation and role checks in front of them."""

from __future__ import annotations

import json
import uuid

import pytest

from catalog.resources import Resources
from reelgate.tokens import TokenSigner, load_or_create_private_key
from tests.api import Api
from tests.catalog.support import (
    assert_invalid,
    assert_problem,
    assert_unauthenticated,
    make_actor,
    make_movie,
    outbox_rows,
)

MOVIE_KEYS = {
    "id", "title", "description", "release_year", "genres", "age_rating", "duration_s",
    "status", "media", "actors", "poster_url", "created_at", "updated_at", "deleted_at",
}  # fmt: skip


async def test_create_movie_is_a_draft_with_its_cast_in_billing_order(admin: Api, api: Api) -> None:
    lead = await make_actor(admin, "Lead Actor", nationality="fr", birth_date="1970-05-01")
    second = await make_actor(admin, "Second Actor")
    status, movie, headers = await admin.call(
        "POST",
        "/api/movies",
        {
            "title": "  The Test  ",
            "description": "A film about tests.",
            "release_year": 1999,
            "genres": ["thriller", "drama", "drama"],
            "age_rating": "PG-13",
            "actor_ids": [second["id"], lead["id"]],
        },
    )
    assert status == 201, movie
    assert set(movie) == MOVIE_KEYS
    assert headers["Location"] == f"/api/movies/{movie['id']}"
    assert movie["title"] == "The Test"
    assert movie["genres"] == ["drama", "thriller"]  # a set, in vocabulary order
    assert (movie["status"], movie["media"], movie["duration_s"], movie["poster_url"]) == (
        "draft",
        None,
        None,
        None,
    )
    assert [a["id"] for a in movie["actors"]] == [second["id"], lead["id"]]
    assert movie["actors"][1] == {
        "id": lead["id"], "name": "Lead Actor", "birth_date": "1970-05-01",
        "nationality": "FR", "character": None,
    }  # fmt: skip
    assert await api.ok("GET", f"/api/movies/{movie['id']}") == movie


async def test_cast_with_character_names(admin: Api) -> None:
    actor = await make_actor(admin, "Twin Player")
    movie = await make_movie(admin, cast=[{"actor_id": actor["id"], "character": "The Twins"}])
    assert movie["actors"][0]["character"] == "The Twins"


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({}, ["title"]),
        ({"title": ""}, ["title"]),
        ({"title": "   "}, ["title"]),
        ({"title": 42}, ["title"]),
        ({"title": "x" * 301}, ["title"]),
        ({"title": "T", "release_year": "1999"}, ["release_year"]),
        ({"title": "T", "release_year": 1700}, ["release_year"]),
        ({"title": "T", "genres": ["drama", "space-opera"]}, ["genres"]),
        ({"title": "T", "genres": "drama"}, ["genres"]),
        ({"title": "T", "age_rating": "PG 13; DROP"}, ["age_rating"]),
        ({"title": "T", "actor_ids": ["not-a-uuid"]}, ["actor_ids.0"]),
        ({"title": "T", "status": "ready"}, ["status"]),
        ({"title": "T", "media": {"height": 2160}}, ["media"]),
        ({"title": "T", "unknown": 1}, ["unknown"]),
        ({"title": "T", "actor_ids": [], "cast": []}, ["body"]),
    ],
)
async def test_create_movie_validation(admin: Api, body: dict, fields: list[str]) -> None:
    assert_invalid(await admin.call("POST", "/api/movies", body), *fields)


async def test_cast_must_name_live_distinct_actors(admin: Api) -> None:
    live = await make_actor(admin, "Live")
    gone = await make_actor(admin, "Gone")
    await admin.ok("DELETE", f"/api/actors/{gone['id']}", status=204)
    unknown = str(uuid.uuid4())
    errors = assert_invalid(
        await admin.call(
            "POST", "/api/movies", {"title": "T", "actor_ids": [live["id"], unknown, gone["id"]]}
        ),
        "actor_ids.1",
        "actor_ids.2",
    )
    assert "actor_ids.0" not in {error["field"] for error in errors}
    assert_invalid(
        await admin.call("POST", "/api/movies", {"title": "T", "cast": [{"actor_id": unknown}]}),
        "cast.0.actor_id",
    )
    assert_invalid(
        await admin.call("POST", "/api/movies", {"title": "T", "actor_ids": [live["id"]] * 2}),
        "actor_ids",
    )


async def test_malformed_bodies(admin: Api) -> None:
    raw = {"Content-Type": "application/json"}
    assert_problem(await admin.call("POST", "/api/movies", data=b"{nope", headers=raw), 400)
    assert_invalid(await admin.call("POST", "/api/movies", data=b"[1, 2]", headers=raw), "body")
    assert_problem(
        await admin.call(
            "POST", "/api/movies", data=b"title=x", headers={"Content-Type": "text/plain"}
        ),
        415,
    )
    too_big = b'{"title": "' + b"x" * (1024 * 1024 + 10) + b'"}'
    assert_problem(await admin.call("POST", "/api/movies", data=too_big, headers=raw), 413)


async def test_writes_need_an_admin(
    api: Api, viewer: Api, admin: Api, signer: TokenSigner, tmp_path
) -> None:
    movie = await make_movie(admin)
    path = f"/api/movies/{movie['id']}"
    writes = [
        ("POST", "/api/movies", {"title": "T"}),
        ("PUT", path, {"title": "T"}),
        ("PATCH", path, {"title": "T"}),
        ("DELETE", path, None),
        ("POST", f"{path}/restore", None),
        ("PUT", f"{path}/media", None),
        ("POST", "/api/actors", {"name": "N"}),
    ]
    other_key = TokenSigner(load_or_create_private_key(tmp_path / "other.pem"), "reelgate")
    forged = api.as_(other_key.access_token(uuid.uuid4(), "admin", 900))
    expired = api.as_(signer.access_token(uuid.uuid4(), "admin", -60))
    for method, url, body in writes:
        assert_unauthenticated(await api.call(method, url, body))
        assert_unauthenticated(await forged.call(method, url, body))
        assert_unauthenticated(await expired.call(method, url, body))
        assert_problem(await viewer.call(method, url, body), 403, "admin_required")
    assert (await api.ok("GET", path))["title"] == "A Movie"


async def test_put_replaces_everything_editable(admin: Api) -> None:
    actor = await make_actor(admin)
    movie = await make_movie(
        admin,
        description="old",
        release_year=2001,
        genres=["war"],
        age_rating="R",
        actor_ids=[actor["id"]],
    )
    replaced = await admin.ok("PUT", f"/api/movies/{movie['id']}", {"title": "New"})
    assert (replaced["title"], replaced["description"], replaced["release_year"]) == (
        "New",
        "",
        None,
    )
    assert (replaced["genres"], replaced["age_rating"], replaced["actors"]) == ([], None, [])
    assert replaced["created_at"] == movie["created_at"]
    assert replaced["updated_at"] > movie["updated_at"]
    assert_invalid(
        await admin.call("PUT", f"/api/movies/{movie['id']}", {"description": "no title"}), "title"
    )


async def test_patch_changes_only_what_is_given(admin: Api) -> None:
    a, b = await make_actor(admin, "A"), await make_actor(admin, "B")
    movie = await make_movie(admin, release_year=2001, genres=["war"], actor_ids=[a["id"]])
    path = f"/api/movies/{movie['id']}"
    patched = await admin.ok("PATCH", path, {"description": "better"})
    assert (patched["title"], patched["release_year"], patched["genres"]) == (
        "A Movie",
        2001,
        ["war"],
    )
    assert [x["id"] for x in patched["actors"]] == [a["id"]]
    patched = await admin.ok("PATCH", path, {"actor_ids": [b["id"], a["id"]], "release_year": None})
    assert [x["id"] for x in patched["actors"]] == [b["id"], a["id"]]
    assert patched["release_year"] is None
    patched = await admin.ok("PATCH", path, {"cast": [{"actor_id": a["id"], "character": "Hero"}]})
    assert [(x["id"], x["character"]) for x in patched["actors"]] == [(a["id"], "Hero")]
    assert_invalid(await admin.call("PATCH", path, {"title": None}), "title")
    assert_invalid(await admin.call("PATCH", path, {"genres": None}), "genres")
    assert_invalid(await admin.call("PATCH", path, {"id": str(uuid.uuid4())}), "id")
    assert (await admin.ok("GET", path))["description"] == "better"


async def test_unknown_and_malformed_ids_are_404(api: Api, admin: Api) -> None:
    for path in (
        f"/api/movies/{uuid.uuid4()}",
        "/api/movies/not-a-uuid",
        "/api/movies/1%20OR%201=1",
    ):
        assert_problem(await api.call("GET", path), 404, "not_found")
        assert_problem(await admin.call("PATCH", path, {"title": "x"}), 404, "not_found")
        assert_problem(await admin.call("DELETE", path), 404, "not_found")


async def test_soft_delete_and_restore(
    api: Api, viewer: Api, admin: Api, resources: Resources
) -> None:
    movie = await make_movie(admin, "Doomed")
    kept = await make_movie(admin, "Kept")
    path = f"/api/movies/{movie['id']}"
    await admin.ok("DELETE", path, status=204)
    assert_problem(await api.call("GET", path), 404)
    assert_problem(await admin.call("DELETE", path), 404)
    assert_problem(await admin.call("PATCH", path, {"title": "x"}), 404)
    listed = await api.ok("GET", "/api/movies")
    assert [m["id"] for m in listed["items"]] == [kept["id"]]
    # Only admins may look behind the curtain.
    assert_unauthenticated(await api.call("GET", f"{path}?with_deleted=true"))
    assert_problem(await viewer.call("GET", f"{path}?with_deleted=true"), 403)
    assert_problem(await viewer.call("GET", "/api/movies?with_deleted=true"), 403)
    hidden = await admin.ok("GET", f"{path}?with_deleted=true")
    assert hidden["deleted_at"] is not None
    everything = await admin.ok("GET", "/api/movies?with_deleted=true&sort=title")
    assert [m["title"] for m in everything["items"]] == ["Doomed", "Kept"]
    restored = await admin.ok("POST", f"{path}/restore")
    assert restored["deleted_at"] is None
    assert (await api.ok("GET", path))["title"] == "Doomed"
    # Restoring a live movie is a no-op, not an error (and not an event).
    await admin.ok("POST", f"{path}/restore")
    kinds = [row.type for row in await outbox_rows(resources)]
    assert kinds == ["movie.created", "movie.created", "movie.deleted", "movie.restored"]


async def test_every_movie_write_queues_its_event_with_the_public_json(
    admin: Api, resources: Resources
) -> None:
    movie = await make_movie(admin, genres=["drama"], age_rating="PG")
    path = f"/api/movies/{movie['id']}"
    updated = await admin.ok("PUT", path, {"title": "Renamed", "genres": ["comedy"]})
    await admin.ok("PATCH", path, {"age_rating": "R"})
    await admin.ok("DELETE", path, status=204)
    await admin.ok("POST", f"{path}/restore")
    rows = await outbox_rows(resources)
    assert [row.type for row in rows] == [
        "movie.created", "movie.updated", "movie.updated", "movie.deleted", "movie.restored",
    ]  # fmt: skip
    assert [row.seq for row in rows] == sorted(row.seq for row in rows)
    envelopes = [json.loads(row.envelope) for row in rows]
    assert set(envelopes[0]) == {"id", "type", "occurred_at", "data"}
    assert envelopes[0]["data"] == movie
    assert envelopes[1]["data"] == updated
    assert envelopes[2]["data"]["age_rating"] == "R"
    assert envelopes[3]["data"]["deleted_at"] is not None
    assert len({e["id"] for e in envelopes}) == 5


async def test_failed_writes_queue_nothing(admin: Api, resources: Resources) -> None:
    await admin.call("POST", "/api/movies", {"title": "T", "actor_ids": [str(uuid.uuid4())]})
    await admin.call("POST", "/api/movies", {"title": ""})
    assert await outbox_rows(resources) == []
