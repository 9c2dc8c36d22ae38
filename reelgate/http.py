"""HTTP plumbing shared by every node: middleware, body/query validation, probes.

Validation happens at the edge with pydantic models; handlers receive typed
objects or a `Problem` is raised. The middleware guarantees that nothing a
client sends produces a 500 body with internals in it, and writes one access
log line per request without query strings (they can carry tokens).
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ValidationError

from reelgate import metrics
from reelgate.logs import install_redaction
from reelgate.problems import Problem, problem_response, validation_failed

install_redaction()
log = logging.getLogger("reelgate.access")
error_log = logging.getLogger("reelgate.errors")

ModelT = TypeVar("ModelT", bound=BaseModel)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ReadinessCheck = Callable[[], Awaitable[None]]

SERVICE_KEY = web.AppKey("service_name", str)
READINESS_KEY = web.AppKey("readiness_checks", list)
MAX_BODY_KEY = web.AppKey("max_body_bytes", int)
REQUEST_ID = web.RequestKey("request_id", str)

_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
REQUEST_ID_HEADER = "X-Request-ID"


def request_id_of(request: web.Request) -> str:
    incoming = request.headers.get(REQUEST_ID_HEADER, "")
    return incoming if _REQUEST_ID_RE.match(incoming) else uuid.uuid4().hex


def route_label(request: web.Request) -> str:
    """The route template, never the concrete path (bounded label cardinality)."""
    route = request.match_info.route
    resource = route.resource
    if resource is None:
        return "unmatched"
    return resource.canonical


def _http_exception_problem(exc: web.HTTPException) -> web.Response:
    codes = {
        404: "not_found",
        405: "method_not_allowed",
        413: "payload_too_large",
        415: "unsupported_media_type",
    }
    body = {
        "type": f"https://reelgate.dev/problems/{codes.get(exc.status, 'http_error')}",
        "title": exc.reason,
        "status": exc.status,
        "detail": exc.reason if exc.status != 413 else "The request body is too large.",
        "code": codes.get(exc.status, "http_error"),
    }
    headers = {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "retry-after")}
    return problem_response(exc.status, body, headers)


@web.middleware
async def edge_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Request id, problem+json for every error, metrics and one access-log line."""
    started = time.perf_counter()
    request_id = request_id_of(request)
    request[REQUEST_ID] = request_id
    try:
        response = await handler(request)
    except Problem as problem:
        response = problem.response()
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = _http_exception_problem(exc)
    except (ConnectionResetError, TimeoutError) as exc:
        # The client went away; there is nobody to answer.
        log.info("client aborted %s %s: %s", request.method, request.path, type(exc).__name__)
        raise
    except Exception:
        error_log.exception("unhandled error on %s %s [%s]", request.method, request.path, request_id)
        response = problem_response(
            500,
            {
                "type": "https://reelgate.dev/problems/internal_error",
                "title": "Internal Server Error",
                "status": 500,
                "detail": "An unexpected error occurred; it has been logged.",
                "code": "internal_error",
                "request_id": request_id,
            },
        )
    elapsed = time.perf_counter() - started
    service = request.app.get(SERVICE_KEY, "reelgate")
    route = route_label(request)
    metrics.HTTP_REQUESTS.labels(service, route, request.method, str(response.status)).inc()
    metrics.HTTP_DURATION.labels(service, route, request.method).observe(elapsed)
    # request.path, never request.path_qs: query strings may carry tokens.
    log.info(
        "%s %s %s %d %.1fms rid=%s",
        service,
        request.method,
        request.path,
        response.status,
        elapsed * 1000,
        request_id,
    )
    return response


async def read_json(request: web.Request) -> Any:
    """The request body as JSON, enforcing content type and size (413)."""
    if request.content_type != "application/json":
        raise Problem(415, "unsupported_media_type", "Send the body as application/json.")
    raw = await read_raw_body(request)
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, ValueError):
        raise Problem(400, "malformed_json", "The body is not valid JSON.") from None
    except RecursionError:
        raise Problem(400, "malformed_json", "The body is nested too deeply.") from None


def _field_path(location: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in location) or "body"


def errors_from(exc: ValidationError) -> list[dict[str, str]]:
    return [
        {"field": _field_path(error["loc"]), "message": error["msg"]}
        for error in exc.errors(include_url=False)
    ]


async def parse_body(request: web.Request, model: type[ModelT]) -> ModelT:
    """Validate a JSON body strictly: unknown fields and wrong types are 422."""
    data = await read_json(request)
    if not isinstance(data, dict):
        raise validation_failed([{"field": "body", "message": "Expected a JSON object"}])
    try:
        return model.model_validate_json(json.dumps(data), strict=True)
    except ValidationError as exc:
        raise validation_failed(errors_from(exc)) from None


def parse_query(request: web.Request, model: type[ModelT]) -> ModelT:
    """Validate query parameters (strings, so coercion is allowed here)."""
    values: dict[str, Any] = {}
    for key in request.query.keys():
        items = request.query.getall(key)
        field = model.model_fields.get(key)
        is_list = field is not None and "list" in str(field.annotation)
        values[key] = items if is_list else items[-1]
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        raise validation_failed(errors_from(exc), "The query parameters are invalid.") from None


def parse_uuid(value: str, what: str = "Resource") -> uuid.UUID:
    """Path ids: an id that is not a UUID cannot exist, so it is a 404."""
    try:
        return uuid.UUID(value)
    except ValueError:
        raise Problem(404, "not_found", f"{what} not found.") from None


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status,
        body=json.dumps(data, default=str).encode(),
        content_type="application/json",
        headers=headers,
    )


def model_response(model: BaseModel, status: int = 200) -> web.Response:
    return web.Response(
        status=status, body=model.model_dump_json().encode(), content_type="application/json"
    )


async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    failures: dict[str, str] = {}
    for check in request.app.get(READINESS_KEY, []):
        try:
            await check()
        except Exception as exc:  # a probe reports, it never raises
            failures[getattr(check, "__name__", "check")] = type(exc).__name__
    if failures:
        return json_response({"status": "unavailable", "failing": failures}, status=503)
    return json_response({"status": "ready"})


async def metrics_endpoint(request: web.Request) -> web.Response:
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})


def probe_routes() -> list[web.RouteDef]:
    return [
        web.get("/healthz", healthz),
        web.get("/readyz", readyz),
        web.get("/metrics", metrics_endpoint),
    ]


async def _stamp_request_id(request: web.Request, response: web.StreamResponse) -> None:
    """Every response, streamed ones included, names its request id."""
    request_id = request.get(REQUEST_ID)
    if request_id is not None and REQUEST_ID_HEADER not in response.headers:
        response.headers[REQUEST_ID_HEADER] = request_id


def base_app(service: str, *, max_body_bytes: int = 1024 * 1024) -> web.Application:
    """An application with the shared middleware, probes and limits in place."""
    app = web.Application(middlewares=[edge_middleware], client_max_size=max_body_bytes)
    app[SERVICE_KEY] = service
    app[READINESS_KEY] = []
    app[MAX_BODY_KEY] = max_body_bytes
    app.add_routes(probe_routes())
    app.on_response_prepare.append(_stamp_request_id)
    return app


async def read_raw_body(request: web.Request) -> bytes:
    """The exact bytes sent (for signatures), within the body size limit."""
    limit = request.app.get(MAX_BODY_KEY, 1024 * 1024)
    if request.content_length is not None and request.content_length > limit:
        raise Problem(413, "payload_too_large", f"The body may be at most {limit} bytes.")
    # `read(n)` returns what has arrived so far, up to n bytes: read to the end.
    raw = bytearray()
    async for chunk in request.content.iter_any():
        raw += chunk
        if len(raw) > limit:
            raise Problem(413, "payload_too_large", f"The body may be at most {limit} bytes.")
    return bytes(raw)
