"""Movie lists: filters, sorts, pagination edges and full-text search with
title matches ranked first; the genre vocabulary; an actor's movies."""

from __future__ import annotations

import uuid

import pytest

from catalog.models import GENRES
from tests.api import Api
from tests.catalog.support import assert_invalid, assert_problem, make_actor, make_movie


def titles(page: dict) -> list[str]:
    return [movie["title"] for movie in page["items"]]


@pytest.fixture
async def shelf(admin: Api) -> dict[str, dict]:
    """Five movies with distinct years, genres and casts (created in this order)."""
    hero = await make_actor(admin, "Hero Person")
    villain = await make_actor(admin, "Villain Person")
    specs = [
        ("Brave Little Toaster", 1987, ["animation", "family"], [hero]),
        ("Alien", 1979, ["horror", "science-fiction"], [villain, hero]),
        ("Casablanca", 1942, ["drama", "romance"], []),
        ("Dune", 2021, ["science-fiction", "adventure"], [hero]),
        ("Eraserhead", 1977, ["horror"], [villain]),
    ]
    movies = {}
    for title, year, genres, cast in specs:
        movies[title] = await make_movie(
            admin, title, release_year=year, genres=genres, actor_ids=[a["id"] for a in cast]
        )
    movies["_hero"], movies["_villain"] = hero, villain
    return movies


async def test_default_order_is_newest_first(api: Api, shelf: dict) -> None:
    page = await api.ok("GET", "/api/movies")
    assert titles(page) == ["Eraserhead", "Dune", "Casablanca", "Alien", "Brave Little Toaster"]
    assert (page["page"], page["per_page"], page["total"]) == (1, 20, 5)


@pytest.mark.parametrize(
    ("sort", "expected"),
    [
        ("title", ["Alien", "Brave Little Toaster", "Casablanca", "Dune", "Eraserhead"]),
        ("-title", ["Eraserhead", "Dune", "Casablanca", "Brave Little Toaster", "Alien"]),
        ("release_year", ["Casablanca", "Eraserhead", "Alien", "Brave Little Toaster", "Dune"]),
        ("-release_year", ["Dune", "Brave Little Toaster", "Alien", "Eraserhead", "Casablanca"]),
        ("created_at", ["Brave Little Toaster", "Alien", "Casablanca", "Dune", "Eraserhead"]),
        ("-created_at", ["Eraserhead", "Dune", "Casablanca", "Alien", "Brave Little Toaster"]),
    ],
)
async def test_sorts(api: Api, shelf: dict, sort: str, expected: list[str]) -> None:
    assert titles(await api.ok("GET", f"/api/movies?sort={sort}")) == expected


async def test_filters(api: Api, shelf: dict) -> None:
    hero, villain = shelf["_hero"]["id"], shelf["_villain"]["id"]
    cases = {
        "genre=horror": ["Alien", "Eraserhead"],
        "genre=science-fiction": ["Alien", "Dune"],
        "genre=western": [],
        "year=1979": ["Alien"],
        f"actor_id={hero}": ["Alien", "Brave Little Toaster", "Dune"],
        f"actor_id={villain}&genre=horror&year=1977": ["Eraserhead"],
        f"actor_id={uuid.uuid4()}": [],
        "status=draft": ["Alien", "Brave Little Toaster", "Casablanca", "Dune", "Eraserhead"],
        "status=ready": [],
    }
    for query, expected in cases.items():
        page = await api.ok("GET", f"/api/movies?{query}&sort=title")
        assert titles(page) == expected, query
        assert page["total"] == len(expected), query


async def test_pagination_edges(api: Api, shelf: dict) -> None:
    seen = []
    for number in (1, 2, 3):
        page = await api.ok("GET", f"/api/movies?sort=title&per_page=2&page={number}")
        assert (page["page"], page["per_page"], page["total"]) == (number, 2, 5)
        seen += titles(page)
    assert seen == sorted(seen) and len(set(seen)) == 5
    beyond = await api.ok("GET", "/api/movies?per_page=2&page=4")
    assert (beyond["items"], beyond["total"]) == ([], 5)
    assert len((await api.ok("GET", "/api/movies?per_page=100"))["items"]) == 5


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("per_page=101", "per_page"),
        ("per_page=0", "per_page"),
        ("page=0", "page"),
        ("page=abc", "page"),
        ("sort=rating", "sort"),
        ("sort=title;DROP TABLE movies", "sort"),
        ("genre=space-opera", "genre"),
        ("year=nineteen", "year"),
        ("actor_id=not-a-uuid", "actor_id"),
        ("status=published", "status"),
        ("q=", "q"),
        ("with_deleted=maybe", "with_deleted"),
    ],
)
async def test_bad_list_queries_are_422(api: Api, query: str, field: str) -> None:
    assert_invalid(await api.call("GET", f"/api/movies?{query}"), field)


async def test_search_ranks_title_matches_first(api: Api, admin: Api) -> None:
    await make_movie(admin, "Quiet Evening", description="A storm arrives at the lighthouse.")
    await make_movie(admin, "The Storm", description="Nothing else to say.")
    await make_movie(admin, "Sunny Day", description="No weather at all.")
    await make_movie(admin, "Storm Front", description="A storm, another storm, more storm.")
    page = await api.ok("GET", "/api/movies?q=storm")
    found = titles(page)
    assert page["total"] == 3
    assert set(found[:2]) == {"The Storm", "Storm Front"}
    assert found[2] == "Quiet Evening"
    assert titles(await api.ok("GET", "/api/movies?q=STORM lighthouse")) == ["Quiet Evening"]
    assert titles(await api.ok("GET", "/api/movies?q=nomatchatall")) == []
    # An explicit sort wins over relevance.
    assert titles(await api.ok("GET", "/api/movies?q=storm&sort=title")) == [
        "Quiet Evening", "Storm Front", "The Storm",
    ]  # fmt: skip


@pytest.mark.parametrize(
    "q", ["'", '"', "a & b", "!!!", "storm:*", "(unbalanced", "<->", "%", "_", "\\", "-storm", "or"]
)
async def test_search_survives_any_input(api: Api, admin: Api, q: str) -> None:
    await make_movie(admin, "The Storm")
    status, page, _ = await api.call("GET", "/api/movies", params={"q": q})
    assert status == 200, page
    assert page["total"] == len(page["items"])


async def test_search_combines_with_filters(api: Api, shelf: dict) -> None:
    page = await api.ok("GET", "/api/movies?q=alien&genre=horror")
    assert titles(page) == ["Alien"]
    assert titles(await api.ok("GET", "/api/movies?q=alien&genre=drama")) == []


async def test_genres(api: Api, admin: Api) -> None:
    status, body, headers = await api.call("GET", "/api/genres")
    assert status == 200
    assert body == {"items": list(GENRES)}
    assert len(body["items"]) == 18 and "science-fiction" in body["items"]
    assert "max-age" in headers["Cache-Control"]


async def test_actor_movies(api: Api, admin: Api, shelf: dict) -> None:
    hero = shelf["_hero"]["id"]
    page = await api.ok("GET", f"/api/actors/{hero}/movies?sort=release_year")
    assert titles(page) == ["Alien", "Brave Little Toaster", "Dune"]
    page = await api.ok("GET", f"/api/actors/{hero}/movies?genre=science-fiction&per_page=1")
    assert (len(page["items"]), page["total"]) == (1, 2)
    await admin.ok("DELETE", f"/api/movies/{shelf['Dune']['id']}", status=204)
    assert titles(await api.ok("GET", f"/api/actors/{hero}/movies?sort=title")) == [
        "Alien", "Brave Little Toaster",
    ]  # fmt: skip
    assert_problem(await api.call("GET", f"/api/actors/{uuid.uuid4()}/movies"), 404)
    await admin.ok("DELETE", f"/api/actors/{hero}", status=204)
    assert_problem(await api.call("GET", f"/api/actors/{hero}/movies"), 404)
