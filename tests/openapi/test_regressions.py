"""What the schema-driven fuzzing found, kept fixed.

1. A NUL character in any catalog string (title, description, actor name,
   character, search query) reached PostgreSQL and failed there: a 500. NUL is
   now refused for every body and every query string by the validation layer
   (`reelgate.http.parse_body` / `parse_query`), as a 422 naming the field.
2. `3.0` for an integer field was refused although the description (JSON
   Schema: 3.0 *is* an integer) allows it; JSON numbers with no fraction are
   now integers for every body, the billing webhook's included.
3. The description offered `null` for partial-update fields whose validators
   refuse it, no constraint for genres, country codes and blank names, and
   described 422 `unplayable_media` as a ValidationProblem (with `errors`); the
   schemas now say what the validation does.
4. The single-process demo mounted GET routes without their HEAD twins, so
   `HEAD /stream/{movie_id}` (in the contract) was a 405 there.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator

import pytest
from jsonschema import Draft202012Validator

from reelgate.openapi import app_routes, node_openapi
from tests.api import Api, sign
from tests.stack import Stack, start_stack


@pytest.fixture
async def stack(settings) -> AsyncIterator[Stack]:
    stack = await start_stack(settings, media_nodes=0)
    try:
        yield stack
    finally:
        await stack.close()


@pytest.fixture
async def admins(stack) -> tuple[Api, Api]:
    ent = await stack.api(stack.entitlements).login(
        stack.settings.admin_email, stack.settings.admin_password
    )
    cat = stack.api(stack.catalog).as_(ent.token)
    await stack.start_clients()
    return ent, cat


def conforms(
    service: str, method: str, path: str, status: int, content_type: str, body: object
) -> list[str]:
    """Errors of a response body against the documented schema of that answer."""
    document = node_openapi(service)
    response = document["paths"][path][method.lower()]["responses"][str(status)]
    schema = response["content"][content_type]["schema"]
    validator = Draft202012Validator({**schema, "components": document["components"]})
    return [error.message for error in validator.iter_errors(body)]


def assert_nul_refused(status: int, body: dict, field: str) -> None:
    assert status == 422, body
    assert body["code"] == "validation_failed"
    assert {"field": field, "message": "may not contain NUL characters"} in body["errors"]


# ---------------------------------------------------------------- 1. NUL


@pytest.mark.parametrize(
    ("method", "path", "payload", "field"),
    [
        ("POST", "/api/movies", {"title": "A\x00B"}, "title"),
        ("POST", "/api/movies", {"title": "T", "description": "x\x00"}, "description"),
        ("POST", "/api/actors", {"name": "\x00"}, "name"),
        (
            "POST",
            "/api/movies",
            {"title": "T", "cast": [{"actor_id": str(uuid.uuid4()), "character": "c\x00"}]},
            "cast.0.character",
        ),
        ("POST", "/api/movies", {"title": "T", "genres": ["drama\x00"]}, "genres.0"),
    ],
)
async def test_nul_in_a_catalog_body_is_422_not_500(admins, method, path, payload, field):
    _, cat = admins
    status, body, _ = await cat.call(method, path, payload)
    assert_nul_refused(status, body, field)


async def test_nul_in_a_replacement_of_an_existing_movie_is_422(admins):
    _, cat = admins
    movie = await cat.ok("POST", "/api/movies", {"title": "Kept"}, status=201)
    status, body, _ = await cat.call("PUT", f"/api/movies/{movie['id']}", {"title": "\x00"})
    assert_nul_refused(status, body, "title")
    assert (await cat.ok("GET", f"/api/movies/{movie['id']}"))["title"] == "Kept"


@pytest.mark.parametrize(
    "path", ["/api/movies?q=%00", "/api/actors?q=a%00b", "/api/actors?nationality=%00"]
)
async def test_nul_in_a_query_string_is_422(admins, path):
    _, cat = admins
    status, body, _ = await cat.call("GET", path)
    assert_nul_refused(status, body, path.split("?")[1].split("=")[0])


async def test_nul_in_an_entitlements_body_or_query_is_422(admins):
    ent, _ = admins
    status, body, _ = await ent.call(
        "POST",
        "/api/plans",
        {"name": "P\x00", "price_cents": 1, "max_streams": 1, "max_height": 720},
    )
    assert_nul_refused(status, body, "name")
    status, body, _ = await ent.call("GET", "/api/subscriptions?status=%00")
    assert_nul_refused(status, body, "status")


# ---------------------------------------------------------------- 2. integral numbers


async def test_an_integral_number_is_an_integer(admins):
    ent, _ = admins
    plan = await ent.ok(
        "POST",
        "/api/plans",
        {"name": "Floats", "price_cents": 100.0, "max_streams": 2.0, "max_height": 7.2e2},
        status=201,
    )
    assert (plan["price_cents"], plan["max_streams"], plan["max_height"]) == (100, 2, 720)
    assert isinstance(plan["price_cents"], int)
    status, body, _ = await ent.call("PATCH", f"/api/plans/{plan['id']}", {"price_cents": 1.5})
    assert status == 422 and body["errors"][0]["field"] == "price_cents"
    # Floats stay floats where floats are wanted; a huge one is still out of range.
    status, body, _ = await ent.call(
        "POST",
        "/api/plans",
        {"name": "Big", "price_cents": 1e300, "max_streams": 1, "max_height": 720},
    )
    assert status == 422 and body["errors"][0]["field"] == "price_cents"


async def test_the_webhook_reads_integral_numbers_as_integers(admins, stack):
    ent, _ = admins
    plan = await ent.ok(
        "POST",
        "/api/plans",
        {"name": "P", "price_cents": 5, "max_streams": 1, "max_height": 720},
        status=201,
    )
    viewer, _ = await ent.as_(None).register_viewer()
    subscription = await viewer.ok(
        "POST", "/api/subscriptions", {"plan_id": plan["id"]}, status=201
    )
    raw = json.dumps(
        {
            "type": "payment_succeeded",
            "subscription_id": subscription["id"],
            "amount_cents": 5.0,
            "event_id": uuid.uuid4().hex,
        }
    ).encode()
    result = await ent.as_(None).ok(
        "POST",
        "/api/billing/events",
        data=raw,
        headers={
            "Content-Type": "application/json",
            "X-Reelgate-Signature": sign(stack.settings.billing_secret, raw),
        },
    )
    assert result["subscription"]["status"] == "active"


# ---------------------------------------------------------------- 3. the description says what is validated


def test_partial_updates_offer_no_null_where_null_is_refused():
    entitlements = node_openapi("entitlements")["components"]["schemas"]
    for name in ("PlanPatch", "UserUpdateIn", "MeUpdateIn", "SubscriptionPatch"):
        for field, prop in entitlements[name]["properties"].items():
            assert {"type": "null"} not in prop.get("anyOf", []), (name, field)
            assert prop.get("type") != "null", (name, field)
    catalog = node_openapi("catalog")["components"]["schemas"]
    movie = catalog["MoviePatch"]["properties"]
    assert movie["title"]["type"] == "string" and "anyOf" not in movie["title"]
    assert {"type": "null"} in movie["release_year"]["anyOf"]  # null clears it: allowed
    assert catalog["ActorPatch"]["properties"]["name"]["type"] == "string"


def test_dependent_and_enumerated_fields_are_described():
    entitlements = node_openapi("entitlements")["components"]["schemas"]
    assert entitlements["MeUpdateIn"]["dependentRequired"] == {"password": ["current_password"]}
    assert "pattern" in entitlements["PlanIn"]["properties"]["genres"]["items"]
    catalog = node_openapi("catalog")["components"]["schemas"]
    from catalog.models import GENRES

    assert catalog["MovieIn"]["properties"]["genres"]["items"]["enum"] == list(GENRES)
    nationality = catalog["ActorIn"]["properties"]["nationality"]["anyOf"][0]
    assert nationality["pattern"] == "^[A-Za-z]{2}$"


async def test_what_the_description_refuses_the_validation_refuses(admins):
    _, cat = admins
    for payload, field in [
        ({"title": "   "}, "title"),
        ({"title": "T", "genres": ["x"]}, "genres"),
        ({"name": "N", "nationality": ""}, "nationality"),
    ]:
        path = "/api/actors" if "name" in payload else "/api/movies"
        status, body, _ = await cat.call("POST", path, payload)
        assert status == 422 and body["errors"][0]["field"].startswith(field), body
    movie = await cat.ok("POST", "/api/movies", {"title": "T"}, status=201)
    status, body, _ = await cat.call("PATCH", f"/api/movies/{movie['id']}", {"title": None})
    assert status == 422 and body["errors"][0]["field"] == "title"


async def test_an_unplayable_upload_conforms_to_its_documented_422(admins):
    _, cat = admins
    movie = await cat.ok("POST", "/api/movies", {"title": "Not a video"}, status=201)
    status, body, _ = await cat.call(
        "PUT",
        f"/api/movies/{movie['id']}/media",
        data=b"%PDF-1.4 not a video",
        headers={"Content-Type": "application/octet-stream"},
    )
    assert (status, body["code"]) == (422, "unplayable_media")
    assert "errors" not in body
    template = "/api/movies/{movie_id}/media"
    assert conforms("catalog", "PUT", template, 422, "application/problem+json", body) == []
    # ...and a validation error of the same route still has to carry `errors`.
    assert conforms(
        "catalog",
        "PUT",
        template,
        422,
        "application/problem+json",
        {**body, "code": "validation_failed"},
    )


# ---------------------------------------------------------------- 4. the demo answers HEAD


def test_the_demo_answers_head_where_the_nodes_do(settings):
    from reelgate.demo import compose

    routes = {(method, path) for method, path, _ in app_routes(compose(settings))}
    assert ("HEAD", "/stream/{movie_id}") in routes
    assert ("HEAD", "/api/movies/{movie_id}/poster") in routes
