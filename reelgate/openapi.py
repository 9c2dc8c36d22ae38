"""OpenAPI 3.1 descriptions built from the routers and the pydantic schemas.

Every handler carries a `Doc` (attached with `@documented(...)`): what it reads
(`body`, `query`: the very pydantic models `parse_body`/`parse_query` validate
with), what it answers (`responses`: status -> response model, problem codes,
or a raw body) and who may call it (`auth`). This module walks route tables or
a live router, and turns each (method, path, handler, Doc) into an operation:

- path parameters (`{movie_id}`...) are UUID strings; anything else is a 404;
- a body model becomes the JSON request body (`mode="validation"`) and brings
  the edge's errors with it: 400 malformed JSON, 413, 415, 422;
- a query model becomes the query parameters and a 422;
- response models are shown as they are serialized (`mode="serialization"`);
- `auth` brings the security requirement, a 401 with its `WWW-Authenticate`
  challenge and, for admin-only routes, a 403 and `x-required-role: admin`;
- every error is `application/problem+json` (the shared `Problem` schema, or
  `ValidationProblem` for 422), with the `code` values the route can answer.

The descriptions are built statically from the route tables (no app has to
run), so every node can serve the merged description of the whole system at
`GET /api/openapi.json` (`?service=` narrows it to one node's own routes) and
the browsable reference at `GET /api/docs`. tests/openapi checks that every
route of every router is described and the other way round, and fuzzes the
running nodes with schemathesis against these descriptions.
"""

from __future__ import annotations

import copy
import functools
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from aiohttp import web
from pydantic import BaseModel, ConfigDict
from pydantic.json_schema import models_json_schema

from reelgate.problems import PROBLEM_CONTENT_TYPE

OPENAPI_VERSION = "3.1.0"
API_VERSION = "1.0.0"
REF_PREFIX = "#/components/schemas/"
DOCS_PAGE = Path(__file__).resolve().parent / "api_docs.html"
SERVICES = ("entitlements", "catalog", "media", "worker")

Auth = Literal[
    "user",  # any signed-in user (viewer or admin): bearer access token
    "admin",  # bearer access token with the admin role
    "admin_or_service",  # admin token, or the service key of internal callers
    "optional",  # anyone; a token unlocks more (e.g. ?with_deleted=true for admins)
    "signature",  # billing webhook: HMAC of the raw body
    "playback",  # /stream: a playback token (query or bearer)
]

H = TypeVar("H", bound=Callable[..., Any])


# ---------------------------------------------------------------- the declarative layer


@dataclass(frozen=True)
class Raw:
    """A body that is not a JSON model: a video, an image, an HTML page, or a
    JSON document described by a hand-written schema (`schema`)."""

    content_types: tuple[str, ...]
    schema: Mapping[str, Any] = field(
        default_factory=lambda: {"type": "string", "format": "binary"}
    )
    description: str = ""


@dataclass(frozen=True)
class Reply:
    """A documented answer: a model, a raw body or none, with response headers
    (name -> description) and a description."""

    body: type[BaseModel] | Raw | None = None
    description: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Errors:
    """A problem+json answer: the `code` values it may carry, an optional more
    specific schema (a pydantic model extending `Problem`) and headers."""

    codes: tuple[str, ...]
    model: type[BaseModel] | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    description: str = ""


def problem(
    *codes: str, model: type[BaseModel] | None = None, description: str = "", **headers: str
) -> Errors:
    """`problem("too_many_streams", model=TooManyStreams)`; headers as keyword
    arguments with `_` for `-` (`Retry_After="seconds to wait"`)."""
    return Errors(codes, model, {k.replace("_", "-"): v for k, v in headers.items()}, description)


ResponseSpec = type[BaseModel] | Raw | Reply | Errors | str | tuple[str, ...] | None


@dataclass(frozen=True)
class Doc:
    summary: str
    description: str = ""
    tags: tuple[str, ...] = ()
    auth: Auth | None = None
    body: type[BaseModel] | Raw | None = None
    body_required: bool = True
    # The JSON body is read whatever the Content-Type says (the webhook: its
    # signature covers the raw bytes), so there is no 415.
    any_content_type: bool = False
    query: type[BaseModel] | None = None
    headers: Mapping[str, tuple[str, Mapping[str, Any]]] = field(default_factory=dict)
    responses: Mapping[int, ResponseSpec] = field(default_factory=dict)
    # Also answer HEAD (documented as its own operation); aiohttp adds HEAD to
    # every GET, which is otherwise left out of the description.
    head: bool = False
    # On the public side (behind the balancer): False for probes and /internal.
    public: bool = True
    operation_id: str | None = None
    # Reaches PostgreSQL or Redis: 503 `service_unavailable` (Retry-After) while one is down.
    dependencies: bool = True
    # Path parameters that are not UUIDs: name -> schema.
    path_params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


def documented(summary: str, **kwargs: Any) -> Callable[[H], H]:
    """Attach a `Doc` to a handler; the handler itself is returned unchanged."""
    doc = Doc(summary, **kwargs)

    def attach(handler: H) -> H:
        handler.__openapi__ = doc  # type: ignore[attr-defined]
        return handler

    return attach


def without_null(*fields: str) -> Callable[[dict[str, Any], type], None]:
    """`json_schema_extra` of a partial-update model: these fields (every field
    when none is named) may be left out but not sent as null, which the model's
    validators refuse; the description must not offer null either."""

    def hook(schema: dict[str, Any], cls: type) -> None:
        for name, prop in schema.get("properties", {}).items():
            if fields and name not in fields:
                continue
            variants = prop.get("anyOf", [])
            kept = [variant for variant in variants if variant != {"type": "null"}]
            if len(kept) != len(variants):
                del prop["anyOf"]
                if len(kept) == 1:
                    prop.update(kept[0])
                else:
                    prop["anyOf"] = kept
            if "default" in prop and prop["default"] is None:
                del prop["default"]

    return hook


def doc_of(method: str, path: str, handler: Any) -> Doc | None:
    doc = getattr(handler, "__openapi__", None)
    if isinstance(doc, Doc):
        return doc
    return ROUTE_DOCS.get((method, path))


# ---------------------------------------------------------------- shared schemas


class Problem(BaseModel):
    """RFC 9457 problem details. `code` is a stable machine word; more members
    may be present (`errors`, `reason`, `sessions`, `request_id`)."""

    model_config = ConfigDict(extra="allow")

    type: str
    title: str
    status: int
    detail: str
    code: str


class FieldError(BaseModel):
    field: str
    message: str


class ValidationProblem(Problem):
    """422: the request is well-formed but invalid; `errors` names each field."""

    errors: list[FieldError]


PROBLEM_COMPONENTS = (Problem, ValidationProblem)

SECURITY_SCHEMES: dict[str, dict[str, Any]] = {
    "bearerAuth": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "An access token from `POST /api/auth/login` (EdDSA JWT, audience "
        "`reelgate:api`). Missing, invalid or expired: 401 with "
        '`WWW-Authenticate: Bearer error="invalid_token"`.',
    },
    "serviceKey": {
        "type": "apiKey",
        "in": "header",
        "name": "X-Reelgate-Service-Key",
        "description": "The shared key of internal callers (media nodes, the worker).",
    },
    "billingSignature": {
        "type": "apiKey",
        "in": "header",
        "name": "X-Reelgate-Signature",
        "description": "`sha256=<hex HMAC-SHA256 of the raw body with REELGATE_BILLING_SECRET>`.",
    },
    "playbackToken": {
        "type": "apiKey",
        "in": "query",
        "name": "token",
        "description": "The playback token of `POST /api/playback` (audience `reelgate:stream`); "
        "an access token is never accepted here.",
    },
    "playbackBearer": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "The playback token as `Authorization: Bearer <playback token>`.",
    },
}

WWW_AUTHENTICATE = (
    'Bearer error="invalid_token" (RFC 6750): the token is missing, invalid or expired.'
)

_STATUS_TEXT = {
    200: "OK",
    201: "Created",
    204: "No Content",
    206: "Partial Content",
    304: "Not Modified",
    400: "Malformed request",
    401: "Unauthenticated",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    412: "Precondition failed",
    413: "Body too large",
    415: "Unsupported media type",
    416: "Range not satisfiable",
    422: "Validation failed",
    429: "Too many requests",
    503: "Unavailable",
}


# ---------------------------------------------------------------- building


@dataclass
class _Route:
    method: str
    path: str
    handler: Any
    doc: Doc


class _Components:
    """Collects the (model, mode) pairs an operation refers to; resolved into
    `components.schemas` in one `models_json_schema` call at the end."""

    def __init__(self) -> None:
        self.pairs: list[tuple[type[BaseModel], str]] = []
        self.extra: dict[str, Any] = {}  # $defs of query models, inlined as parameters
        self.refs: dict[tuple[type[BaseModel], str], dict[str, Any]] = {}

    def ref(self, model: type[BaseModel], mode: str) -> dict[str, Any]:
        key = (model, mode)
        if key not in self.refs:
            self.pairs.append(key)
            self.refs[key] = {"$ref": f"@@{len(self.pairs) - 1}"}  # placeholder until resolved
        return self.refs[key]

    def resolve(self) -> dict[str, Any]:
        if not self.pairs:
            return {}
        key_map, top = models_json_schema(
            self.pairs,  # type: ignore[arg-type]
            ref_template=REF_PREFIX + "{model}",
        )
        for pair in self.pairs:
            self.refs[pair].clear()
            self.refs[pair].update(key_map[pair])  # type: ignore[index]
        return dict(top.get("$defs", {}))


def _problem_schema(
    groups: list[tuple[type[BaseModel], list[str]]],
    comps: _Components,
) -> dict[str, Any]:
    """One schema per problem model, each pinned to the `code` values it carries."""
    merged: dict[type[BaseModel], list[str]] = {}
    for model, codes in groups:
        merged.setdefault(model, []).extend(codes)
    variants = [
        {
            "allOf": [
                comps.ref(model, "serialization"),
                {"properties": {"code": {"enum": sorted(set(codes))}}},
            ]
        }
        for model, codes in merged.items()
    ]
    return variants[0] if len(variants) == 1 else {"anyOf": variants}


@dataclass
class _Answer:
    """The parts of one status code's response, merged from several sources."""

    bodies: list[tuple[str, Any]] = field(default_factory=list)  # (content type, schema or model)
    problems: list[tuple[type[BaseModel], list[str]]] = field(default_factory=list)
    codes: list[str] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)
    descriptions: list[str] = field(default_factory=list)
    empty: bool = False


def _add(answers: dict[int, _Answer], status: int, spec: ResponseSpec) -> None:
    answer = answers.setdefault(status, _Answer())
    if isinstance(spec, str):
        spec = (spec,)
    if isinstance(spec, tuple):
        spec = Errors(spec)
    if isinstance(spec, type) and issubclass(spec, BaseModel):
        spec = Reply(spec)
    if isinstance(spec, Raw):
        spec = Reply(spec)
    if spec is None:
        answer.empty = True
        return
    if isinstance(spec, Errors):
        for code in spec.codes:
            default = ValidationProblem if code == "validation_failed" else Problem
            answer.problems.append((spec.model or default, [code]))
        answer.codes.extend(spec.codes)
        answer.headers.update(spec.headers)
        if spec.description:
            answer.descriptions.append(spec.description)
        return
    assert isinstance(spec, Reply)
    answer.headers.update(spec.headers)
    if spec.description:
        answer.descriptions.append(spec.description)
    if spec.body is None:
        answer.empty = True
    elif isinstance(spec.body, Raw):
        for content_type in spec.body.content_types:
            answer.bodies.append((content_type, dict(spec.body.schema)))
        if spec.body.description:
            answer.descriptions.append(spec.body.description)
    else:
        answer.bodies.append(("application/json", spec.body))


def _path_params(path: str) -> list[str]:
    return re.findall(r"\{(\w+)\}", path)


def _query_parameters(model: type[BaseModel], comps: _Components) -> list[dict[str, Any]]:
    schema = model.model_json_schema(mode="validation", ref_template=REF_PREFIX + "{model}")
    for name, definition in schema.get("$defs", {}).items():
        comps.extra.setdefault(name, definition)
    required = set(schema.get("required", []))
    parameters = []
    for name, prop in schema.get("properties", {}).items():
        prop = dict(prop)
        description = prop.pop("description", None)
        prop.pop("title", None)
        parameter: dict[str, Any] = {
            "name": name,
            "in": "query",
            "required": name in required,
            "schema": prop,
        }
        if description:
            parameter["description"] = description
        parameters.append(parameter)
    return parameters


def _security(auth: Auth | None) -> list[dict[str, list[str]]] | None:
    return {
        None: None,
        "optional": [{}, {"bearerAuth": []}],
        "user": [{"bearerAuth": []}],
        "admin": [{"bearerAuth": []}],
        "admin_or_service": [{"bearerAuth": []}, {"serviceKey": []}],
        "signature": [{"billingSignature": []}],
        "playback": [{"playbackToken": []}, {"playbackBearer": []}],
    }[auth]


def _operation(route: _Route, comps: _Components, operation_ids: set[str]) -> dict[str, Any]:
    doc = route.doc
    answers: dict[int, _Answer] = {}
    for status, spec in doc.responses.items():
        _add(answers, status, spec)
    parameters: list[dict[str, Any]] = []
    for name in _path_params(route.path):
        schema = dict(doc.path_params.get(name, {"type": "string", "format": "uuid"}))
        parameters.append({"name": name, "in": "path", "required": True, "schema": schema})
    if _path_params(route.path) and not doc.path_params:
        _add(
            answers,
            404,
            problem(
                "not_found",
                description="No such resource (an id that is not a UUID cannot exist either).",
            ),
        )
    if doc.query is not None:
        parameters.extend(_query_parameters(doc.query, comps))
        _add(answers, 422, problem("validation_failed"))
    for name, (description, schema) in doc.headers.items():
        parameters.append(
            {
                "name": name,
                "in": "header",
                "required": False,
                "description": description,
                "schema": dict(schema),
            }
        )
    operation: dict[str, Any] = {"summary": doc.summary}
    if doc.description:
        operation["description"] = doc.description
    operation_id = doc.operation_id or route.handler.__name__
    if route.method == "HEAD":
        operation_id += "_head"
    if route.path.startswith("/internal/"):
        operation_id += "_internal"
    while operation_id in operation_ids:
        operation_id += "_"
    operation_ids.add(operation_id)
    operation["operationId"] = operation_id
    if doc.tags:
        operation["tags"] = list(doc.tags)
    if parameters:
        operation["parameters"] = parameters
    if doc.body is not None:
        if isinstance(doc.body, Raw):
            content = {ct: {"schema": dict(doc.body.schema)} for ct in doc.body.content_types}
        else:
            content = {"application/json": {"schema": comps.ref(doc.body, "validation")}}
            _add(answers, 400, problem("malformed_json"))
            _add(answers, 422, problem("validation_failed"))
            if not doc.any_content_type:
                _add(answers, 415, problem("unsupported_media_type"))
        _add(answers, 413, problem("payload_too_large"))
        operation["requestBody"] = {"required": doc.body_required, "content": content}
    security = _security(doc.auth)
    if security is not None:
        operation["security"] = security
    if doc.auth in ("user", "admin", "admin_or_service"):
        _add(answers, 401, problem("invalid_token", WWW_Authenticate=WWW_AUTHENTICATE))
    if doc.auth in ("admin", "admin_or_service"):
        operation["x-required-role"] = "admin"
        role_note = (
            "Needs the **admin** role"
            + (" or the service key" if doc.auth == "admin_or_service" else "")
            + "; other callers get 403 `admin_required`."
        )
        operation["description"] = (operation.get("description", "") + "\n\n" + role_note).strip()
        _add(answers, 403, problem("admin_required"))
    if doc.dependencies:
        _add(
            answers,
            503,
            problem(
                "service_unavailable",
                Retry_After="Seconds to wait",
                description="A database or Redis is unreachable right now.",
            ),
        )
    if route.path.startswith("/internal/") or not doc.public:
        operation["x-internal"] = True
    operation["responses"] = _responses(answers, comps)
    return operation


def _responses(answers: dict[int, _Answer], comps: _Components) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for status in sorted(answers):
        answer = answers[status]
        description = " ".join(answer.descriptions) or _STATUS_TEXT.get(status, "")
        if answer.codes:
            codes = ", ".join(f"`{code}`" for code in dict.fromkeys(answer.codes))
            description = (description + f" (code: {codes})").strip()
        response: dict[str, Any] = {"description": description}
        if answer.headers:
            response["headers"] = {
                name: {"description": text, "schema": {"type": "string"}}
                for name, text in answer.headers.items()
            }
        content: dict[str, Any] = {}
        for content_type, schema in answer.bodies:
            if isinstance(schema, type):
                schema = comps.ref(schema, "serialization")
            if content_type in content:
                previous = content[content_type]["schema"]
                schema = {"anyOf": [previous, schema]}
            content[content_type] = {"schema": schema}
        if answer.problems:
            schema = _problem_schema(answer.problems, comps)
            content[PROBLEM_CONTENT_TYPE] = {"schema": schema}
        if content:
            response["content"] = content
        out[str(status)] = response
    return out


def describe(
    routes: Iterable[tuple[str, str, Any]],
    *,
    title: str,
    description: str = "",
    public_only: bool = False,
) -> dict[str, Any]:
    """The OpenAPI 3.1 document of (method, path, handler) triples. HEAD routes
    are described only when the GET's `Doc` says `head=True`."""
    documented_routes: list[_Route] = []
    missing: list[str] = []
    seen: set[tuple[str, str]] = set()
    for method, path, handler in routes:
        doc = doc_of("GET" if method == "HEAD" else method, path, handler)
        if doc is None:
            missing.append(f"{method} {path}")
            continue
        if method == "HEAD" and not doc.head:
            continue
        if public_only and (not doc.public or path.startswith("/internal/")):
            continue
        if (method, path) in seen:
            continue
        seen.add((method, path))
        documented_routes.append(_Route(method, path, handler, doc))
    if missing:
        raise LookupError("routes without documentation: " + ", ".join(missing))
    comps = _Components()
    paths: dict[str, dict[str, Any]] = {}
    operation_ids: set[str] = set()
    for route in documented_routes:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(
            route, comps, operation_ids
        )
    for model in PROBLEM_COMPONENTS:
        comps.ref(model, "serialization")
    schemas = comps.resolve()
    for name, definition in comps.extra.items():
        schemas.setdefault(name, definition)
    used_tags = sorted(
        {tag for r in documented_routes for tag in r.doc.tags},
        key=lambda t: list(TAGS).index(t) if t in TAGS else len(TAGS),
    )
    document: dict[str, Any] = {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": title,
            "version": API_VERSION,
            "description": description,
        },
        "servers": [{"url": "/"}],
        "tags": [{"name": tag, "description": TAGS.get(tag, "")} for tag in used_tags],
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": dict(sorted(schemas.items())),
            "securitySchemes": copy.deepcopy(SECURITY_SCHEMES),
        },
    }
    return json.loads(json.dumps(document))  # plain JSON types, no shared sub-objects


TAGS = {
    "accounts": "Registration, sign-in, token refresh and keys.",
    "users": "Profiles and user administration.",
    "plans": "Plans and the movies in them.",
    "subscriptions": "Subscriptions of users to plans.",
    "billing": "The payment provider's webhook.",
    "entitlements": "Who may watch what, now.",
    "playback": "Playback sessions, heartbeats and resume positions.",
    "movies": "The movie catalog and media ingest.",
    "actors": "Actors and their movies.",
    "genres": "The genre vocabulary.",
    "streaming": "Byte-range streaming from the media nodes.",
    "docs": "This description and its reference page.",
    "probes": "Liveness, readiness and metrics of one node (not behind the balancer).",
}

INTRO = (
    "Reelgate's HTTP API, generated from the pydantic models that validate every request "
    "and shape every response. JSON in and out; ids are UUIDs; timestamps ISO 8601 UTC. "
    "Errors are RFC 9457 `application/problem+json` with a stable `code`; 422 adds "
    "`errors: [{field, message}]`. Unknown JSON fields are rejected; lists take "
    "`page`/`per_page` (max 100) and answer `{items, page, per_page, total}`."
)


# ---------------------------------------------------------------- the node route tables


def _table(routes: Iterable[web.RouteDef]) -> list[tuple[str, str, Any]]:
    out = []
    for route in routes:
        out.append((route.method, route.path, route.handler))
        if route.method == "GET" and route.kwargs.get("allow_head", True):
            out.append(("HEAD", route.path, route.handler))
    return out


def node_routes(service: str) -> list[tuple[str, str, Any]]:
    """What a node's router holds, from the same tables its app is built from."""
    from reelgate.http import probe_routes

    common = _table(probe_routes()) + _table(docs_routes())
    if service == "entitlements":
        from entitlements.routes import routes as table
    elif service == "catalog":
        from catalog.routes import routes as table
    elif service == "media":
        from server.routes import routes as table
    elif service == "worker":
        table = []
    else:
        raise ValueError(f"unknown service {service!r}")
    return _table(table) + common


def app_routes(app: web.Application) -> list[tuple[str, str, Any]]:
    """The (method, path, handler) of every route of a live router (static files left out)."""
    out = []
    for resource in app.router.resources():
        if isinstance(resource, web.StaticResource):
            continue
        for route in resource:
            out.append((route.method, resource.canonical, route.handler))
    return out


NODE_TITLES = {
    "entitlements": "Reelgate entitlements node",
    "catalog": "Reelgate catalog node",
    "media": "Reelgate media node",
    "worker": "Reelgate worker (metrics and probes)",
}


@functools.cache
def _node_openapi(service: str) -> str:
    document = describe(
        node_routes(service),
        title=NODE_TITLES[service],
        description=INTRO + f"\n\nThe routes of one {service} node, probes "
        "and `/internal/` routes included (`x-internal: true`).",
    )
    return json.dumps(document)


@functools.cache
def _merged_openapi() -> str:
    routes = node_routes("entitlements") + node_routes("catalog") + node_routes("media")
    document = describe(
        routes,
        title="Reelgate API",
        public_only=True,
        description=INTRO + "\n\nEverything reachable through the balancer: "
        "`/api/*` on the entitlements and catalog nodes, `/stream/*` on the "
        "media nodes.",
    )
    return json.dumps(document)


def node_openapi(service: str) -> dict[str, Any]:
    """One node's own description: its routes, probes and internal routes included."""
    return json.loads(_node_openapi(service))


def merged_openapi() -> dict[str, Any]:
    """The public description of the whole system (what the balancer exposes)."""
    return json.loads(_merged_openapi())


# ---------------------------------------------------------------- serving it


class DescriptionQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")

    service: Literal["all", "entitlements", "catalog", "media", "worker"] = "all"


@documented(
    "This API description (OpenAPI 3.1)",
    description="The merged public description of every node (`service=all`), or one "
    "node's own routes, probes and internal routes included.",
    tags=("docs",),
    dependencies=False,
    query=DescriptionQuery,
    responses={
        200: Raw(
            ("application/json",),
            {"type": "object", "required": ["openapi", "paths"]},
            "The OpenAPI 3.1 document.",
        )
    },
)
async def openapi_json(request: web.Request) -> web.Response:
    from reelgate.http import parse_query

    query = parse_query(request, DescriptionQuery)
    text = _merged_openapi() if query.service == "all" else _node_openapi(query.service)
    return web.Response(
        text=text, content_type="application/json", headers={"Cache-Control": "public, max-age=60"}
    )


@documented(
    "Browsable API reference",
    description="A self-contained page (no external resources) that renders `/api/openapi.json`.",
    tags=("docs",),
    dependencies=False,
    responses={200: Raw(("text/html",), {"type": "string"}, "The reference page.")},
)
async def api_docs(request: web.Request) -> web.Response:
    return web.Response(
        body=_docs_page(),
        content_type="text/html",
        charset="utf-8",
        headers={
            "Cache-Control": "public, max-age=60",
            "Content-Security-Policy": "default-src 'none'; script-src 'unsafe-inline'; "
            "style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; "
            "base-uri 'none'; frame-ancestors 'none'",
            "X-Content-Type-Options": "nosniff",
        },
    )


@functools.lru_cache(maxsize=1)
def _docs_page() -> bytes:
    return DOCS_PAGE.read_bytes()


def docs_routes() -> list[web.RouteDef]:
    return [web.get("/api/openapi.json", openapi_json), web.get("/api/docs", api_docs)]


# ---------------------------------------------------------------- routes documented here


class Status(BaseModel):
    status: str


class NotReady(BaseModel):
    status: Literal["unavailable"]
    failing: dict[str, str]


class StreamProblem(Problem):
    """A stream refused: `reason` names the entitlement outcome when there is one."""

    reason: str | None = None


_BYTES = Raw(("video/mp4", "application/octet-stream"), {"type": "string", "format": "binary"})
_RANGES = Raw(
    ("multipart/byteranges",),
    {"type": "string", "format": "binary"},
    "Several ranges, each part with its `Content-Type` and `Content-Range`.",
)
_ENTITY_HEADERS = {
    "Accept-Ranges": "`bytes`",
    "ETag": "Strong validator of the stored object.",
    "Last-Modified": "When the object was stored.",
    "Cache-Control": "`private`",
    "Referrer-Policy": "`no-referrer`",
}
_STRING = {"type": "string"}

STREAM_DOC = Doc(
    "Stream a movie (byte ranges, RFC 9110)",
    description=(
        "The movie's media with `Accept-Ranges: bytes`, a strong `ETag` and `Last-Modified`. "
        "One range (`a-b`, `a-`, `-n`) gives 206 with `Content-Range`; several give 206 "
        "`multipart/byteranges` (overlapping or adjacent ones coalesced; too many are answered "
        "with the whole entity or 416, never amplified); an unsatisfiable set gives 416 with "
        "`Content-Range: bytes */<size>`; a malformed Range or an unknown unit is ignored (200). "
        "`If-Range` is honoured; `If-None-Match`/`If-Modified-Since` give 304 and "
        "`If-Match`/`If-Unmodified-Since` failures 412, in RFC order. The token is a playback "
        "token, bound to one user, movie and live session."
    ),
    tags=("streaming",),
    auth="playback",
    head=True,
    headers={
        "Range": ("`bytes=a-b`, `bytes=a-`, `bytes=-n`, or several separated by commas.", _STRING),
        "If-Range": (
            "A strong ETag or an HTTP date: ranges apply only if it still matches.",
            _STRING,
        ),
        "If-Match": ("ETags the entity must match, or `*` (else 412).", _STRING),
        "If-None-Match": ("ETags that make the answer a 304.", _STRING),
        "If-Modified-Since": ("An HTTP date: 304 when not modified since.", _STRING),
        "If-Unmodified-Since": ("An HTTP date: 412 when modified since.", _STRING),
    },
    responses={
        200: Reply(_BYTES, "The whole movie.", {**_ENTITY_HEADERS, "Content-Length": "Size"}),
        206: Reply(
            Raw(_BYTES.content_types + _RANGES.content_types),
            "One or several ranges.",
            {**_ENTITY_HEADERS, "Content-Range": "`bytes a-b/size` (single range)"},
        ),
        304: Reply(
            None,
            "Not modified (`If-None-Match` / `If-Modified-Since`).",
            {"ETag": "Strong validator."},
        ),
        401: problem(
            "invalid_token",
            WWW_Authenticate=WWW_AUTHENTICATE,
            description="Missing, invalid or expired playback token.",
        ),
        403: problem(
            "wrong_movie",
            "session_ended",
            "not_entitled",
            model=StreamProblem,
            description="The token is for another movie, its "
            "session ended, or the entitlement was revoked.",
        ),
        404: problem("not_found", description="Movie unknown, deleted, or without media."),
        412: Reply(
            None,
            "`If-Match` / `If-Unmodified-Since` failed (no body).",
            {"ETag": "Strong validator."},
        ),
        416: Reply(
            None,
            "No requested range is satisfiable (no body).",
            {"Content-Range": "`bytes */<size>`"},
        ),
        503: problem(
            "entitlements_unavailable",
            "catalog_unavailable",
            Retry_After="Seconds to wait",
            description="The decision or the media cannot be looked up right now.",
        ),
    },
)


ROUTE_DOCS: dict[tuple[str, str], Doc] = {
    ("GET", "/healthz"): Doc(
        "Liveness (no dependency checks)",
        dependencies=False,
        tags=("probes",),
        public=False,
        responses={200: Status},
    ),
    ("GET", "/readyz"): Doc(
        "Readiness: 503 while a dependency this node needs is down",
        dependencies=False,
        tags=("probes",),
        public=False,
        responses={200: Status, 503: Reply(NotReady, "Not ready.")},
    ),
    ("GET", "/metrics"): Doc(
        "Prometheus metrics (never exposed by the balancer)",
        dependencies=False,
        tags=("probes",),
        public=False,
        responses={200: Raw(("text/plain",), {"type": "string"}, "Prometheus text format.")},
    ),
    # The media node's handler lives in server/routes.py (kept lean: it is the hot path).
    ("GET", "/stream/{movie_id}"): STREAM_DOC,
}


__all__ = [
    "Doc",
    "Errors",
    "Problem",
    "Raw",
    "Reply",
    "docs_routes",
    "documented",
    "merged_openapi",
    "node_openapi",
    "problem",
    "without_null",
]
