"""The media node's one real route: GET/HEAD /stream/{movie_id}."""

from __future__ import annotations

import functools
import time
import uuid
from typing import Any

from aiohttp import web

from reelgate import metrics
from reelgate.http import parse_uuid
from reelgate.problems import Problem, not_found
from server.file_response import send_object
from server.media import CatalogUnavailable
from server.resources import RESOURCES

# Streams are private to one viewer and must not leak their tokenized URL.
STREAM_HEADERS = {"Cache-Control": "private", "Referrer-Policy": "no-referrer"}

STARTED = web.RequestKey("started", float)

# Metric children looked up once, not per request: `.labels()` validates the values, builds
# a key and takes a lock on every call (a few per cent of a 64 KiB range in py-spy).
_ACTIVE_STREAMS = metrics.ACTIVE_STREAMS.labels("media")
_BYTES_SERVED = metrics.BYTES_SERVED.labels("media")
_TIME_TO_FIRST_BYTE: dict[int, Any] = {}  # status -> histogram child


@functools.lru_cache(maxsize=4096)
def _movie_id(value: str) -> uuid.UUID:
    # Every range request of a stream repeats the same path; parsing the UUID each time was
    # ~2% of a request (py-spy). Invalid ids raise, and exceptions are not cached.
    return parse_uuid(value, "Movie")


async def stream(request: web.Request) -> web.StreamResponse:
    # Stamped here rather than by a middleware of its own: one layer less per request, and
    # only /stream responses (errors included) feed the stream time-to-first-byte metric,
    # not /healthz, /metrics or unknown paths.
    request[STARTED] = time.perf_counter()
    res = request.app[RESOURCES]
    movie_id = _movie_id(request.match_info["movie_id"])
    assert res.access is not None, "started by the app's lifespan"
    await res.access.authorize(request, movie_id)
    try:
        media = await res.resolver.resolve(movie_id)
    except CatalogUnavailable:
        raise Problem(
            503, "catalog_unavailable", "The movie cannot be located right now; try again shortly.",
            headers={"Retry-After": "5"},
        ) from None
    if media is None:
        raise not_found("Movie")
    storage = res.storage
    _ACTIVE_STREAMS.inc()
    try:
        response = await send_object(
            request,
            size=media.size,
            mtime=media.mtime,
            etag=media.etag,
            content_type=media.content_type,
            local_path=media.local_path,
            open_range=lambda start, end: storage.open_range(media.key, start, end),
            extra_headers=STREAM_HEADERS,
            use_sendfile=res.use_sendfile,
            open_files=res.open_files,
            eager_sendfile=True,
        )
    finally:
        _ACTIVE_STREAMS.dec()
    # sendfile bypasses aiohttp's byte counter, so count what the response promised.
    if request.method == "GET" and response.status in (200, 206):
        _BYTES_SERVED.inc(response.content_length or 0)
    if response.status == 206:
        metrics.RANGE_BYTES.observe(response.content_length or 0)
    return response


async def record_time_to_first_byte(request: web.Request, response: web.StreamResponse) -> None:
    started = request.get(STARTED)
    if started is not None:
        child = _TIME_TO_FIRST_BYTE.get(response.status)
        if child is None:  # a handful of statuses: the dict stays tiny
            child = metrics.TIME_TO_FIRST_BYTE.labels("media", str(response.status))
            _TIME_TO_FIRST_BYTE[response.status] = child
        child.observe(time.perf_counter() - started)


routes = [
    web.get("/stream/{movie_id}", stream, allow_head=True),
]
