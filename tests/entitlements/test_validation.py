"""The edge of every route: body rules (content type, size, JSON syntax,
unknown fields, types) and a sweep of garbage input that must never produce
a 500. The route list is read from the node itself, so a new route is swept
without anyone remembering to add it here."""

from __future__ import annotations

import inspect
import json
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from pydantic import BaseModel

from entitlements import schemas
from entitlements.routes import routes as ROUTE_TABLE
from reelgate.config import Settings
from tests.api import Api, sign
from tests.entitlements.conftest import pay
from tests.entitlements.support import (
    INVALID_TOKEN_CHALLENGE,
    PROBLEM_FIELDS,
    assert_problem,
    assert_validation_error,
    check_rows,
    plan_body,
    send_raw,
)

ROUTES = [(route.method, route.path) for route in ROUTE_TABLE]
PARAM_RE = re.compile(r"\{(\w+)\}")
OVERSIZED = 2 * 1024 * 1024


def _reads_a_body(handler: Any) -> bool:
    source = inspect.getsource(handler)
    return "parse_body(" in source or "read_raw_body(" in source


BODY_ROUTES = [(route.method, route.path) for route in ROUTE_TABLE if _reads_a_body(route.handler)]

# What each body route validates against: the sweep tries every field it knows.
BODY_MODELS: dict[tuple[str, str], type[BaseModel]] = {
    ("POST", "/api/auth/register"): schemas.RegisterIn,
    ("POST", "/api/auth/login"): schemas.LoginIn,
    ("POST", "/api/auth/refresh"): schemas.RefreshIn,
    ("POST", "/api/auth/logout"): schemas.LogoutIn,
    ("PATCH", "/api/users/me"): schemas.MeUpdateIn,
    ("POST", "/api/users"): schemas.UserCreateIn,
    ("PATCH", "/api/users/{user_id}"): schemas.UserUpdateIn,
    ("POST", "/api/plans"): schemas.PlanIn,
    ("PATCH", "/api/plans/{plan_id}"): schemas.PlanPatch,
    ("POST", "/api/subscriptions"): schemas.SubscriptionIn,
    ("PATCH", "/api/subscriptions/{subscription_id}"): schemas.SubscriptionPatch,
    ("POST", "/api/billing/events"): schemas.BillingEventIn,
    ("POST", "/api/playback"): schemas.PlaybackIn,
    ("POST", "/api/playback/{session_id}/heartbeat"): schemas.HeartbeatIn,
}


def valid_body(method: str, template: str, ids: dict[str, str], viewer_email: str = "") -> Any:
    """A body the route accepts (None for routes that take none)."""
    return {
        ("POST", "/api/auth/register"): {"email": f"n-{uuid.uuid4().hex[:8]}@example.com",
                                         "password": "long-enough-1", "name": "New"},
        ("POST", "/api/auth/login"): {"email": viewer_email, "password": "viewer-pass-1"},
        ("POST", "/api/auth/refresh"): {"refresh_token": "unknown"},
        ("POST", "/api/auth/logout"): {"refresh_token": "unknown"},
        ("PATCH", "/api/users/me"): {"name": "Me"},
        ("POST", "/api/users"): {"email": f"c-{uuid.uuid4().hex[:8]}@example.com",
                                 "password": "long-enough-1", "name": "C", "role": "viewer"},
        ("PATCH", "/api/users/{user_id}"): {"name": "Renamed"},
        ("POST", "/api/plans"): plan_body(),
        ("PATCH", "/api/plans/{plan_id}"): {"name": "Renamed"},
        ("POST", "/api/subscriptions"): {"plan_id": ids.get("plan_id")},
        ("PATCH", "/api/subscriptions/{subscription_id}"): {"status": "active"},
        ("POST", "/api/billing/events"): {
            "type": "payment_succeeded", "subscription_id": ids.get("subscription_id"),
            "amount_cents": 999, "event_id": uuid.uuid4().hex},
        ("POST", "/api/playback"): {"movie_id": ids.get("movie_id")},
        ("POST", "/api/playback/{session_id}/heartbeat"): {"position_s": 1.5},
    }.get((method, template))


@dataclass
class World:
    """One of everything, so that every route has real ids to act on."""

    settings: Settings
    anonymous: Api
    admin: Api
    viewer: Api
    viewer_email: str
    ids: dict[str, str] = field(default_factory=dict)

    def path(self, template: str, **override: str) -> str:
        return PARAM_RE.sub(lambda m: override.get(m.group(1), self.ids[m.group(1)]), template)

    def valid_body(self, method: str, template: str) -> Any:
        return valid_body(method, template, self.ids, self.viewer_email)

    async def send(self, method: str, path: str, raw: Any, *, template: str,
                   content_type: str = "application/json", client: Api | None = None,
                   headers: dict[str, str] | None = None) -> tuple[int, Any, Any]:
        """Send raw bytes as the admin (signed, for the billing webhook)."""
        extra = dict(headers or {})
        if template == "/api/billing/events" and isinstance(raw, bytes):
            extra.setdefault("X-Reelgate-Signature", sign(self.settings.billing_secret, raw))
        client = client or self.admin
        if raw is None:
            return await client.call(method, path, headers=extra)
        return await send_raw(client, method, path, raw, content_type, headers=extra)


@pytest.fixture
async def world(api, admin, settings, publish_movie) -> AsyncIterator[World]:
    email = f"w-{uuid.uuid4().hex[:8]}@example.com"
    viewer, user = await api.register_viewer(email)
    plan = await admin.ok("POST", "/api/plans", plan_body(genres=["*"]), status=201)
    movie = await publish_movie()
    sub = await viewer.ok("POST", "/api/subscriptions", {"plan_id": plan["id"]}, status=201)
    await pay(api, settings, sub["id"])
    playback = await viewer.ok("POST", "/api/playback", {"movie_id": str(movie)}, status=201)
    yield World(settings=settings, anonymous=api.as_(None), admin=admin, viewer=viewer,
                viewer_email=email,
                ids={"user_id": user["id"], "plan_id": plan["id"], "movie_id": str(movie),
                     "subscription_id": sub["id"], "session_id": playback["session_id"]})


def _is_problem(response: tuple[int, Any, Any]) -> bool:
    status, data, headers = response
    return (headers.get("Content-Type", "").startswith("application/problem+json")
            and isinstance(data, dict) and PROBLEM_FIELDS <= data.keys()
            and data["status"] == status)


def _is_wrong(response: tuple[int, Any, Any]) -> bool:
    status, data, headers = response
    if status >= 500 or (status >= 400 and not _is_problem(response)):
        return True
    # A refused token always comes with the RFC 6750 challenge.
    return (status == 401 and data.get("code") == "invalid_token"
            and headers.get("WWW-Authenticate") != INVALID_TOKEN_CHALLENGE)


def _failures_of(outcomes: list[tuple[str, tuple[int, Any, Any]]]) -> list[str]:
    """Every 5xx, every error that is not problem+json, every 401 without its challenge."""
    return [f"{label} -> {response[0]} {str(response[1])[:200]}"
            for label, response in outcomes if _is_wrong(response)]


def test_the_sweep_knows_every_route_that_reads_a_body():
    # A new route that reads a body must get a valid body and its model above,
    # or the body checks below would not reach its validation.
    assert len(BODY_ROUTES) >= 12
    missing = [route for route in BODY_ROUTES
               if valid_body(*route, ids={}) is None or route not in BODY_MODELS]
    assert not missing, missing


# ---------------------------------------------------------------- body rules, on every body route


async def test_every_body_route_accepts_its_valid_body(world):
    # The control for the rejections below: the same routes, a good body.
    outcomes = []
    for method, template in BODY_ROUTES:
        raw = json.dumps(world.valid_body(method, template)).encode()
        outcomes.append((f"{method} {template}",
                         await world.send(method, world.path(template), raw, template=template)))
    not_validation = [(label, r) for label, r in outcomes if r[0] in (400, 413, 415, 422)]
    assert not not_validation, not_validation
    assert not _failures_of(outcomes)


BAD_BODIES = [
    # case, raw body, content type, expected status, expected code
    ("malformed_json", b'{"name": ', "application/json", 400, "malformed_json"),
    ("trailing_garbage", b'{"name": "x"} x', "application/json", 400, "malformed_json"),
    ("not_utf8", b'{"name": "\xff\xfe"}', "application/json", 400, "malformed_json"),
    ("too_deeply_nested", b"[" * 100_000, "application/json", 400, "malformed_json"),
    ("empty_body", b"", "application/json", 400, "malformed_json"),
    ("wrong_content_type", b'{"name": "x"}', "text/plain", 415, "unsupported_media_type"),
    ("form_content_type", b"name=x", "application/x-www-form-urlencoded", 415,
     "unsupported_media_type"),
    ("array_instead_of_object", b"[]", "application/json", 422, "validation_failed"),
    ("string_instead_of_object", b'"x"', "application/json", 422, "validation_failed"),
    ("null_instead_of_object", b"null", "application/json", 422, "validation_failed"),
]


async def test_every_body_route_rejects_bad_bodies_with_the_right_problem(world):
    async def check(case, raw, content_type, status, code):
        for method, template in BODY_ROUTES:
            if template == "/api/billing/events" and status == 415:
                continue  # read raw, see test_the_webhook_ignores_the_content_type
            if template == "/api/auth/logout" and raw == b"":
                continue  # no body is a valid logout, see test_accounts
            response = await world.send(method, world.path(template), raw, template=template,
                                        content_type=content_type)
            problem = response[1] if _is_problem(response) else {}
            assert (response[0], problem.get("code")) == (status, code), (
                f"{method} {template} -> {response[0]} {response[1]!r:.200}")

    await check_rows(BAD_BODIES, check)


async def test_the_webhook_ignores_the_content_type(world):
    # The provider signs raw bytes; the body is parsed whatever it is labelled.
    raw = json.dumps(world.valid_body("POST", "/api/billing/events")).encode()
    status, _, _ = await world.send("POST", "/api/billing/events", raw,
                                    template="/api/billing/events", content_type="text/plain")
    assert status == 200


async def test_every_body_route_rejects_unknown_fields(world):
    async def check(method, template):
        body = {**world.valid_body(method, template), "is_admin": True}
        response = await world.send(method, world.path(template), json.dumps(body).encode(),
                                    template=template)
        assert_validation_error(response, "is_admin")

    await check_rows(BODY_ROUTES, check)


async def test_every_body_route_rejects_oversized_bodies(world):
    body = b'{"name": "' + b"x" * OVERSIZED + b'"}'

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: the size shows late
        for start in range(0, len(body), 64 * 1024):
            yield body[start:start + 64 * 1024]

    async def check(method, template, chunked):
        raw = chunks() if chunked else body
        response = await world.send(method, world.path(template), raw, template=template)
        assert_problem(response, 413, "payload_too_large")

    await check_rows([(*route, chunked) for route in BODY_ROUTES for chunked in (False, True)],
                     check)


async def test_a_body_of_exactly_the_limit_is_not_413(world):
    limit = world.settings.max_body_bytes
    padding = limit - len(b'{"name": ""}')
    raw = b'{"name": "' + b"x" * padding + b'"}'
    assert len(raw) == limit
    status, _, _ = await world.send("PATCH", world.path("/api/plans/{plan_id}"), raw,
                                    template="/api/plans/{plan_id}")
    assert status == 422  # too long a name, but read and judged: not too large


# ---------------------------------------------------------------- wrong types, per field


WRONG_TYPES = [
    ("POST", "/api/auth/register", "email", 5),
    ("POST", "/api/auth/register", "password", 12345678),
    ("POST", "/api/auth/register", "name", ["x"]),
    ("POST", "/api/auth/login", "email", {"$ne": ""}),
    ("POST", "/api/auth/login", "password", True),
    ("POST", "/api/auth/refresh", "refresh_token", 1),
    ("POST", "/api/auth/logout", "refresh_token", ["x"]),
    ("PATCH", "/api/users/me", "name", 1),
    ("POST", "/api/users", "role", 1),
    ("PATCH", "/api/users/{user_id}", "email", False),
    ("POST", "/api/plans", "price_cents", "5"),
    # 2.5, not 2.0: a JSON number without a fraction is an integer, as the API description
    # (JSON Schema) says (tests/openapi/test_regressions.py).
    ("POST", "/api/plans", "max_streams", 2.5),
    ("POST", "/api/plans", "max_height", "1080"),
    ("POST", "/api/plans", "name", 7),
    ("POST", "/api/plans", "genres", {"drama": True}),
    ("PATCH", "/api/plans/{plan_id}", "price_cents", "100"),
    ("PATCH", "/api/plans/{plan_id}", "max_streams", True),
    ("POST", "/api/subscriptions", "plan_id", 12),
    ("PATCH", "/api/subscriptions/{subscription_id}", "current_period_end", 1700000000),
    ("POST", "/api/billing/events", "amount_cents", "999"),
    ("POST", "/api/billing/events", "subscription_id", ["x"]),
    ("POST", "/api/playback", "movie_id", 5),
    ("POST", "/api/playback/{session_id}/heartbeat", "position_s", "12"),
]


async def test_a_wrong_type_is_422_naming_the_field(world):
    async def check(method, template, field_name, value):
        body = {**world.valid_body(method, template), field_name: value}
        response = await world.send(method, world.path(template), json.dumps(body).encode(),
                                    template=template)
        assert_validation_error(response, field_name)

    await check_rows(WRONG_TYPES, check)


# ---------------------------------------------------------------- the garbage sweep


GARBAGE_IDS = ["not-a-uuid", "..%2F..%2Fetc%2Fpasswd", "%00", "0", "-1",
               "99999999999999999999999999999999", "%C3%B1", "%F0%9F%98%80", "x" * 1000,
               "00000000-0000-0000-0000-000000000000", "{" + str(uuid.uuid4()) + "}",
               "%27%3B%20DROP%20TABLE%20users%3B--", "null", "%20"]

GARBAGE_BODIES = [
    b"null", b"[]", b"[{}]", b'"text"', b"123", b"true", b"{}", b"", b"{", b"}", b"\x00",
    b"[" * 100_000, b'{"a":' * 50_000, b'{"x": 1' + b"0" * 5000 + b"}",
    b'{"x": 1e999}', b'{"x": NaN}', b'{"x": Infinity}', b'{"name": "a", "name": 1}',
    '{"name": "\u202e\u0000\ud800"}'.encode("utf-8", "surrogatepass"),
    b'{"name": "\\ud800", "email": "\\udfff@example.com", "refresh_token": "\\ud800"}',
    b'\xef\xbb\xbf{"name": "bom"}',
]

# Values put in every field of a route's valid body, one at a time: wrong
# types, extremes, nulls, and strings that pass type checks but may trouble
# the database (NUL, lone surrogates escaped, very long, odd unicode).
GARBAGE_VALUES: list[Any] = [
    None, 0, -1, 10**30, -(10**30), 2**63, 1.5, float("1e308"), True, [], [None], {}, {"a": 1},
    "", " ", "\u0000", "a\u0000b", "\\ud800", "\ud800", "a\udfffb", "😀" * 100, "x" * 100_000,
    "\u202e", "null", "1", "-1", "1e999", "NaN", "00000000-0000-0000-0000-000000000000",
    "2038-01-19T03:14:08Z", "9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00",
    "'; DROP TABLE users; --", "../../etc/passwd", "<script>",
]

GARBAGE_QUERIES = [
    "page=-1", "page=0", "page=1e9", "page=99999999999999999999999", "per_page=0",
    "per_page=abc", "per_page=100000", "with_deleted=maybe", "with_deleted=", "user_id=x",
    "movie_id=x", "user_id=&movie_id=", "status=%00", "page=%00", "page[]=1", "page=1&page=x",
    "status=canceled&status=bogus", "user_id=" + "a" * 2000, "%ff=%fe", "q=%F0%9F%98%80",
]


async def test_garbage_ids_in_paths_never_500(world):
    outcomes = []
    for method, template in ROUTES:
        params = PARAM_RE.findall(template)
        if not params:
            continue
        body = world.valid_body(method, template)
        raw = json.dumps(body).encode() if body is not None else None
        for garbage in GARBAGE_IDS:
            for param in params:
                path = world.path(template, **{param: garbage})
                outcomes.append((f"{method} {path[:80]}",
                                 await world.send(method, path, raw, template=template)))
    assert not _failures_of(outcomes)


async def test_garbage_bodies_never_500(world):
    outcomes = []
    for raw in GARBAGE_BODIES:
        for method, template in ROUTES:
            if method == "GET":
                continue
            outcomes.append((f"{method} {template} <- {raw[:30]!r}",
                             await world.send(method, world.path(template), raw,
                                              template=template)))
    assert not _failures_of(outcomes)


# One test per route: each starts with fresh login rate limits, so that the
# garbage reaches the database instead of a 429.
@pytest.mark.parametrize(("method", "template"), BODY_ROUTES)
async def test_garbage_field_values_never_500(world, method, template):
    outcomes = []
    for name in BODY_MODELS[(method, template)].model_fields:
        for value in GARBAGE_VALUES:
            garbage = {**world.valid_body(method, template), name: value}
            raw = json.dumps(garbage).encode()
            outcomes.append((f"{name}={value!r:.40}",
                             await world.send(method, world.path(template), raw,
                                              template=template)))
    assert not _failures_of(outcomes)


async def test_garbage_query_strings_never_500(world):
    outcomes = []
    for method, template in ROUTES:
        if method != "GET":
            continue  # only reads take query parameters
        for query in GARBAGE_QUERIES:
            body = world.valid_body(method, template)
            raw = json.dumps(body).encode() if body is not None else None
            path = world.path(template) + "?" + query
            outcomes.append((f"{method} {path[:100]}",
                             await world.send(method, path, raw, template=template)))
    assert not _failures_of(outcomes)


async def test_every_route_as_any_caller_never_500(world):
    callers = {"anonymous": world.anonymous, "viewer": world.viewer,
               "forged": world.anonymous.as_("eyJhbGciOiJub25lIn0.eyJyb2xlIjoiYWRtaW4ifQ.")}
    outcomes = []
    for who, client in callers.items():
        for method, template in ROUTES:
            body = world.valid_body(method, template)
            raw = json.dumps(body).encode() if body is not None else None
            outcomes.append((f"{who}: {method} {template}",
                             await world.send(method, world.path(template), raw,
                                              template=template, client=client)))
    assert not _failures_of(outcomes)


async def test_a_wrong_method_is_a_405_problem(api):
    async def check(method, path):
        response = await api.call(method, path)
        assert_problem(response, 405, "method_not_allowed")
        assert response[2]["Allow"]

    await check_rows([("PUT", "/api/users"), ("DELETE", "/api/plans"), ("POST", "/api/auth/jwks"),
                      ("PATCH", "/api/subscriptions")], check)


async def test_an_unknown_path_is_a_404_problem(api):
    assert_problem(await api.call("GET", "/api/nothing-here"), 404, "not_found")
