"""The media node's one real route: GET/HEAD /stream/{movie_id}."""

from __future__ import annotations

import time

from aiohttp import web

from reelgate import metrics
from reelgate.http import parse_uuid
from reelgate.problems import Problem, not_found
from server.file_response import send_object
from server.media import CatalogUnavailable
from server.resources import RESOURCES

# Streams are private to one viewer and must not leak their tokenized URL.
STREAM_HEADERS = {"Cache-Control": "private", "Referrer-Policy": "no-referrer"}


async def stream(request: web.Request) -> web.StreamResponse:
    res = request.app[RESOURCES]
    movie_id = parse_uuid(request.match_info["movie_id"], "Movie")
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
    metrics.ACTIVE_STREAMS.labels("media").inc()
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
        )
    finally:
        metrics.ACTIVE_STREAMS.labels("media").dec()
    # sendfile bypasses aiohttp's byte counter, so count what the response promised.
    if request.method == "GET" and response.status in (200, 206):
        metrics.BYTES_SERVED.labels("media").inc(response.content_length or 0)
    if response.status == 206:
        metrics.RANGE_BYTES.observe(response.content_length or 0)
    return response


async def record_time_to_first_byte(request: web.Request, response: web.StreamResponse) -> None:
    started = request.get(STARTED)
    if started is not None:
        metrics.TIME_TO_FIRST_BYTE.labels("media", str(response.status)).observe(
            time.perf_counter() - started
        )


STARTED = web.RequestKey("started", float)


@web.middleware
async def stamp_start(request: web.Request, handler):  # type: ignore[no-untyped-def]
    request[STARTED] = time.perf_counter()
    return await handler(request)


routes = [
    web.get("/stream/{movie_id}", stream, allow_head=True),
]
