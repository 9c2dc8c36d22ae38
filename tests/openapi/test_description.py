"""The served API description: valid OpenAPI 3.1, every route of the public
contract (shared/API.md) in it, the same document on every node, and the
reference page that renders it."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from openapi_spec_validator import validate
from openapi_spec_validator.validation.exceptions import OpenAPIValidationError

from reelgate.openapi import SERVICES, merged_openapi, node_openapi

# The contract lives in ../shared/API.md beside the checkout; docs/contract/API.md
# is the copy this code was built against, for checkouts without shared/.
_REPO = Path(__file__).resolve().parents[2]
_SHARED = _REPO.parent / "shared" / "API.md"
CONTRACT = Path(
    os.environ.get(
        "REELGATE_API_CONTRACT",
        _SHARED if _SHARED.is_file() else _REPO / "docs" / "contract" / "API.md",
    )
)
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
MENTION_RE = re.compile(r"\b(GET|HEAD|POST|PUT|PATCH|DELETE)`?\s+`?(/(?:api|stream)/[^\s`?,;)]*)")


def normalized(path: str) -> str:
    """Templates compare without parameter names: /api/plans/{id} == /api/plans/{plan_id}."""
    return re.sub(r"\{[^}]*\}", "{}", path.split("?")[0].rstrip("/") or "/")


def _row_routes(methods_cell: str, paths_cell: str) -> set[tuple[str, str]]:
    methods = [m.strip().upper() for m in methods_cell.split("/") if m.strip()]
    # Backticked parts of a path cell are bodies (`{movie_id}`), not path segments.
    paths = [
        normalized(p.strip()) for p in re.sub(r"`[^`]*`", "", paths_cell).split(",") if p.strip()
    ]
    if len(paths) == 1:
        return {(m, paths[0]) for m in methods}
    # "POST/PATCH/DELETE | /api/plans, /api/plans/{id}": create on the collection,
    # update and delete on the item; reads on both.
    routes = set()
    for method in methods:
        for path in paths:
            item = path.endswith("{}")
            if method in ("GET", "HEAD") or (method == "POST") != item:
                routes.add((method, path))
    return routes


def contract_routes(text: str) -> set[tuple[str, str]]:
    routes: set[tuple[str, str]] = set()
    for line in text.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.lstrip().startswith("|") and len(cells) >= 2:
            methods = cells[0].replace("`", "")
            if methods and all(m.strip() in METHODS for m in methods.split("/")):
                routes |= _row_routes(methods, cells[1])
        for method, path in MENTION_RE.findall(line):
            if "..." not in path:  # "GET/HEAD /stream/..." names a family, not a route
                routes.add((method, normalized(path)))
    # Streaming: "`GET` and `HEAD /stream/{movie_id}?token=...`".
    for path in re.findall(r"`GET` and `HEAD (/stream/[^?`\s]+)", text):
        routes.add(("GET", normalized(path)))
    return routes


def described_routes(document: dict) -> set[tuple[str, str]]:
    return {
        (method.upper(), normalized(path))
        for path, item in document["paths"].items()
        for method in item
        if method.upper() in METHODS
    }


def test_the_contract_parser_expands_rows():
    text = (
        "| GET/PATCH | /api/users/me | user | x |\n"
        "| POST/PATCH/DELETE | /api/plans, /api/plans/{id} | admin | create / update |\n"
        "| GET/PATCH/DELETE | /api/users/{id} | admin | read; POST /api/users/{id}/restore |\n"
        "| POST | /api/playback `{movie_id}` | user | 201 |\n"
        "| GET | /api/entitlements/check?user_id=&movie_id= | admin | x |\n"
        "`GET` and `HEAD /stream/{movie_id}?token=<playback token>`\n"
    )
    assert contract_routes(text) == {
        ("GET", "/api/users/me"),
        ("PATCH", "/api/users/me"),
        ("POST", "/api/plans"),
        ("PATCH", "/api/plans/{}"),
        ("DELETE", "/api/plans/{}"),
        ("GET", "/api/users/{}"),
        ("PATCH", "/api/users/{}"),
        ("DELETE", "/api/users/{}"),
        ("POST", "/api/users/{}/restore"),
        ("POST", "/api/playback"),
        ("GET", "/api/entitlements/check"),
        ("GET", "/stream/{}"),
        ("HEAD", "/stream/{}"),
    }


def test_every_route_of_the_contract_is_described():
    assert CONTRACT.is_file(), f"the public contract is missing: {CONTRACT} (REELGATE_API_CONTRACT)"
    wanted = contract_routes(CONTRACT.read_text())
    assert len(wanted) > 50, sorted(wanted)  # the parser found the tables
    missing = wanted - described_routes(merged_openapi())
    assert not missing, f"routes of API.md missing from /api/openapi.json: {sorted(missing)}"


@pytest.mark.parametrize("service", ["all", *SERVICES])
def test_descriptions_are_valid_openapi_3_1(service):
    document = merged_openapi() if service == "all" else node_openapi(service)
    assert document["openapi"].startswith("3.1.")
    try:
        validate(document)
    except OpenAPIValidationError as exc:  # pragma: no cover - the message is the point
        pytest.fail(f"{service}: {exc}")


def test_the_merged_description_is_the_public_side():
    document = merged_openapi()
    for path, item in document["paths"].items():
        assert path.startswith(("/api/", "/stream/")), path
        for operation in item.values():
            assert not operation.get("x-internal"), path
    nodes = set()
    for service in ("entitlements", "catalog", "media"):
        nodes |= {
            (method, path)
            for method, path in described_routes(node_openapi(service))
            if not path.startswith("/internal/") and path.startswith(("/api/", "/stream/"))
        }
    assert described_routes(document) == nodes


def test_errors_security_and_roles_are_described():
    document = merged_openapi()
    schemas = document["components"]["schemas"]
    assert {"Problem", "ValidationProblem"} <= set(schemas)
    assert set(schemas["Problem"]["required"]) == {"type", "title", "status", "detail", "code"}
    assert "errors" in schemas["ValidationProblem"]["required"]
    schemes = document["components"]["securitySchemes"]
    assert schemes["bearerAuth"] == {
        **schemes["bearerAuth"],
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
    }
    assert schemes["serviceKey"]["name"] == "X-Reelgate-Service-Key"

    create_plan = document["paths"]["/api/plans"]["post"]
    assert create_plan["x-required-role"] == "admin"
    assert create_plan["security"] == [{"bearerAuth": []}]
    assert {"201", "400", "401", "403", "413", "415", "422"} <= set(create_plan["responses"])
    assert "WWW-Authenticate" in create_plan["responses"]["401"]["headers"]
    assert "application/problem+json" in create_plan["responses"]["422"]["content"]
    assert create_plan["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/PlanIn"
    }
    # An unreachable database or Redis is a 503 with Retry-After (reelgate.http), not a 500.
    assert "Retry-After" in create_plan["responses"]["503"]["headers"]
    assert "503" not in document["paths"]["/api/genres"]["get"]["responses"]
    register = document["paths"]["/api/auth/register"]["post"]
    assert "security" not in register and "409" in register["responses"]
    assert "429" in document["paths"]["/api/auth/login"]["post"]["responses"]

    item = document["paths"]["/api/users/{user_id}"]
    assert item["get"]["parameters"][0] == {
        "name": "user_id",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "format": "uuid"},
    }
    check = document["paths"]["/api/entitlements/check"]["get"]
    assert check["security"] == [{"bearerAuth": []}, {"serviceKey": []}]
    assert {p["name"] for p in check["parameters"]} == {"user_id", "movie_id"}


def test_the_stream_is_described_with_ranges_and_conditionals():
    item = node_openapi("media")["paths"]["/stream/{movie_id}"]
    assert set(item) == {"get", "head"}
    get = item["get"]
    assert {"200", "206", "304", "401", "403", "404", "412", "416"} <= set(get["responses"])
    assert "multipart/byteranges" in get["responses"]["206"]["content"]
    assert "Content-Range" in get["responses"]["416"]["headers"]
    headers = {p["name"] for p in get["parameters"] if p["in"] == "header"}
    assert {
        "Range",
        "If-Range",
        "If-Match",
        "If-None-Match",
        "If-Modified-Since",
        "If-Unmodified-Since",
    } <= headers
    assert get["security"] == [{"playbackToken": []}, {"playbackBearer": []}]


def test_internal_routes_are_marked_and_left_out_of_the_public_description():
    entitlements = node_openapi("entitlements")["paths"]
    assert entitlements["/internal/entitlements/check"]["get"]["x-internal"] is True
    assert node_openapi("catalog")["paths"]["/internal/movies/{movie_id}/media"]["get"][
        "x-internal"
    ]
    assert not any(p.startswith("/internal/") for p in merged_openapi()["paths"])


async def test_every_node_serves_the_description_and_the_reference_page(settings):
    from catalog.app import create_app as catalog_app
    from entitlements.app import create_app as entitlements_app
    from server.app import create_app as media_app

    for app in (entitlements_app(settings), catalog_app(settings), media_app(settings)):
        # Only the routes: no start-up (no database or Redis needed for these handlers).
        app.cleanup_ctx.clear()
        async with TestClient(TestServer(app)) as client:
            response = await client.get("/api/openapi.json")
            assert response.status == 200
            assert response.content_type == "application/json"
            assert await response.json() == merged_openapi()
            response = await client.get("/api/openapi.json?service=media")
            assert await response.json() == node_openapi("media")
            response = await client.get("/api/openapi.json?service=nope")
            assert response.status == 422
            assert response.content_type == "application/problem+json"
            response = await client.get("/api/docs")
            assert response.status == 200
            assert response.content_type == "text/html"
            page = await response.text()
            assert "openapi.json" in page
            # Works offline: nothing is loaded from anywhere else.
            assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)
            assert "default-src 'none'" in response.headers["Content-Security-Policy"]
