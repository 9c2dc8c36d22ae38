"""Every route of every router is described, and nothing else is.

The routers are those of the real apps (built, not started) and of the
single-process demo; the descriptions are the ones the nodes serve. A route
added without `@documented(...)`, or a description entry whose route was
removed, fails here."""

from __future__ import annotations

import pytest
from aiohttp import web

from reelgate.openapi import app_routes, describe, documented, node_openapi

# aiohttp adds HEAD to every GET; the description lists HEAD only where it means
# something more than "GET without a body" (the stream).
METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"}


def router_routes(app: web.Application) -> set[tuple[str, str]]:
    routes = {(method, path) for method, path, _ in app_routes(app) if method in METHODS}
    described_heads = set()
    for service in ("entitlements", "catalog", "media", "worker"):
        described_heads |= {
            p for p, item in node_openapi(service)["paths"].items() if "head" in item
        }
    return {(m, p) for m, p in routes if m != "HEAD" or p in described_heads}


def described(document: dict) -> set[tuple[str, str]]:
    return {
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method in item
        if method.upper() in METHODS
    }


def _apps(settings):
    from catalog.app import create_app as catalog_app
    from entitlements.app import create_app as entitlements_app
    from entitlements.worker import create_worker
    from server.app import create_app as media_app

    return {
        "entitlements": entitlements_app(settings),
        "catalog": catalog_app(settings),
        "media": media_app(settings),
        "worker": create_worker(settings).create_app(),
    }


@pytest.mark.parametrize("service", ["entitlements", "catalog", "media", "worker"])
def test_the_router_and_the_description_list_the_same_routes(settings, service):
    app = _apps(settings)[service]
    in_router = router_routes(app)
    in_description = described(node_openapi(service))
    assert in_router - in_description == set(), "routes without a description"
    assert in_description - in_router == set(), "described routes that no router has"


def test_the_demo_serves_exactly_the_described_routes(settings):
    from reelgate.demo import compose

    in_router = router_routes(compose(settings))
    in_router.discard(("GET", "/"))  # the web player's index (static files are not API)
    in_description = set()
    for service in ("entitlements", "catalog", "media", "worker"):
        in_description |= described(node_openapi(service))
    assert in_router == in_description


def test_a_route_without_documentation_is_refused():
    async def undocumented(request):  # pragma: no cover - never called
        return web.Response()

    with pytest.raises(LookupError, match="GET /api/new"):
        describe([("GET", "/api/new", undocumented)], title="t")

    @documented("Documented")
    async def fine(request):  # pragma: no cover - never called
        return web.Response()

    assert "/api/new" in describe([("GET", "/api/new", fine)], title="t")["paths"]


def test_handlers_are_documented_where_they_are_defined():
    """Catalog and entitlements handlers carry their own `Doc` (not a side table)."""
    from catalog.routes import routes as catalog_routes
    from entitlements.routes import routes as entitlements_routes

    for route in [*catalog_routes, *entitlements_routes]:
        assert hasattr(route.handler, "__openapi__"), route.path
