"""HTTP plumbing shared by every node: middleware, body/query validation, probes.

Validation happens at the edge with pydantic models; handlers receive typed
objects or a `Problem` is raised. The middleware guarantees that nothing a
client sends produces a 500 body with internals in it, and writes one access
log line per request without query strings (they can carry tokens).
"""

from __future__ import annotations

import json
import logging
import random
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg.exceptions
import redis.exceptions
import sqlalchemy.exc
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ValidationError

from reelgate import metrics
from reelgate.logs import install_redaction
from reelgate.openapi import docs_routes
from reelgate.problems import Problem, validation_failed

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
RESPONSE_STARTED = web.RequestKey("response_started", bool)

_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
REQUEST_ID_HEADER = "X-Request-ID"


def request_id_of(request: web.Request) -> str:
    incoming = request.headers.get(REQUEST_ID_HEADER, "")
    if incoming and _REQUEST_ID_RE.match(incoming):
        return incoming
    # 128 random bits as 32 hex digits, like uuid4().hex, from the `random` module: a
    # request id must be unique, not unpredictable, and uuid4() asks the kernel for
    # entropy (a getrandom syscall) on every request (~6% of a media node's time in
    # py-spy). `random` is reseeded in forked children, so processes do not collide.
    return f"{random.getrandbits(128):032x}"


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
    detail = exc.reason if exc.status != 413 else "The request body is too large."
    headers = {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "retry-after")}
    code = codes.get(exc.status, "http_error")
    return Problem(exc.status, code, detail, title=exc.reason, headers=headers).response()


# (service, route, method, status) -> (request counter child, duration histogram child).
# Bounded like the labels themselves (route templates, not paths); saves two `.labels()`
# calls, each a lock and a key build, per request.
_HTTP_METRICS: dict[tuple[str, str, str, int], tuple[Any, Any]] = {}


def _http_metrics(service: str, route: str, method: str, status: int) -> tuple[Any, Any]:
    key = (service, route, method, status)
    children = _HTTP_METRICS.get(key)
    if children is None:
        children = (
            metrics.HTTP_REQUESTS.labels(service, route, method, str(status)),
            metrics.HTTP_DURATION.labels(service, route, method),
        )
        _HTTP_METRICS[key] = children
    return children


# What a database or Redis that cannot be reached (or went away mid-request)
# raises, as itself or as the cause of what reaches the middleware.
_UNREACHABLE = (
    ConnectionError,  # refused, reset, broken pipe
    TimeoutError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,  # shutting down, starting up
    sqlalchemy.exc.TimeoutError,  # no pooled connection in time
)


def _unavailable(request_id: str) -> web.Response:
    return Problem(
        503, "service_unavailable",
        "A service this request needs is unreachable; try again shortly.",
        headers={"Retry-After": "5"}, request_id=request_id,
    ).response()  # fmt: skip


def _internal_error(request_id: str) -> web.Response:
    return Problem(
        500, "internal_error", "An unexpected error occurred; it has been logged.",
        request_id=request_id,
    ).response()  # fmt: skip


def dependency_unreachable(exc: BaseException) -> bool:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, _UNREACHABLE) or (
            isinstance(current, sqlalchemy.exc.DBAPIError) and current.connection_invalidated
        ):
            return True
        current = current.__cause__ or current.__context__
    return False


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
    except Exception as exc:
        if request.get(RESPONSE_STARTED):
            # Headers, maybe body bytes, are out: a problem response now would
            # be spliced into the body. aiohttp closes the connection instead.
            raise
        if isinstance(exc, ConnectionResetError | TimeoutError) and (
            request.transport is None or request.transport.is_closing()
        ):
            # The client went away (mid-body, say). Nobody reads the answer, but
            # re-raising would make aiohttp log a traceback for a client's
            # disconnect: the request ends here as a 400, in the access log too.
            log.info("client aborted %s %s: %s", request.method, request.path, type(exc).__name__)
            response = Problem(
                400, "request_aborted", "The connection closed before the request was complete."
            ).response()
        elif dependency_unreachable(exc):
            # An outage, not a bug: the client may retry; /readyz says the same.
            error_log.warning("%s %s [%s]: a dependency is unreachable (%s)",
                              request.method, request.path, request_id, type(exc).__name__)
            response = _unavailable(request_id)
        else:
            error_log.exception(
                "unhandled error on %s %s [%s]", request.method, request.path, request_id
            )
            response = _internal_error(request_id)
    elapsed = time.perf_counter() - started
    service = request.app.get(SERVICE_KEY, "reelgate")
    route = route_label(request)
    counter, histogram = _http_metrics(service, route, request.method, response.status)
    counter.inc()
    histogram.observe(elapsed)
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
    return decode_json(await read_raw_body(request))


def _json_number(text: str) -> int | float:
    """JSON has numbers, not ints and floats: `3.0` is the integer 3, as JSON
    Schema (and so the API description) says; `3.5` is not an integer."""
    value = float(text)
    return int(value) if value.is_integer() else value


def decode_json(raw: bytes) -> Any:
    try:
        return json.loads(raw, parse_float=_json_number)
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


def _nul_errors(value: Any, location: str = "") -> list[dict[str, str]]:
    """Where a string holds NUL: no field has a use for it, and PostgreSQL text
    cannot store it (the driver would fail mid-transaction: a 500)."""
    if isinstance(value, str):
        return [{"field": location or "body", "message": "may not contain NUL characters"}] if (
            "\x00" in value
        ) else []
    errors: list[dict[str, str]] = []
    if isinstance(value, dict):
        for key, item in value.items():
            path = f"{location}.{key}" if location else str(key)
            errors += _nul_errors(key, path) + _nul_errors(item, path)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            errors += _nul_errors(item, f"{location}.{index}" if location else str(index))
    return errors


async def parse_body(request: web.Request, model: type[ModelT]) -> ModelT:
    """Validate a JSON body strictly: unknown fields, wrong types and NUL
    characters are 422."""
    return validate_object(await read_json(request), model)


def validate_object(data: Any, model: type[ModelT]) -> ModelT:
    """A decoded JSON body against its model (see `parse_body`)."""
    if not isinstance(data, dict):
        raise validation_failed([{"field": "body", "message": "Expected a JSON object"}])
    if nul := _nul_errors(data):
        raise validation_failed(nul)
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
    if nul := _nul_errors(values):
        raise validation_failed(nul, "The query parameters are invalid.")
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
    request[RESPONSE_STARTED] = True
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
    # Every node serves the API description and its reference page (reelgate.openapi).
    app.add_routes(docs_routes())
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
