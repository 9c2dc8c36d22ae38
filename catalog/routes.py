"""HTTP routes of the catalog node, readable top to bottom (see the table at
the end of the file). Reads are public; every write needs the admin role."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from aiohttp import ClientPayloadError, web
from aiohttp.http_exceptions import HttpProcessingError
from pydantic import BaseModel

from catalog import media, schemas, service
from catalog.models import GENRES
from catalog.resources import RESOURCES, Resources
from reelgate.auth import is_service_call, require_admin
from reelgate.http import json_response, parse_body, parse_query, parse_uuid
from reelgate.openapi import Raw, Reply, documented
from reelgate.pagination import Page, PageQuery
from reelgate.problems import Problem, not_found, validation_failed
from storage import DigestMismatch, ObjectNotFound, TooLarge, parse_key

log = logging.getLogger("reelgate.catalog")

POSTER_CACHE_CONTROL = "public, max-age=300"


def _resources(request: web.Request) -> Resources:
    return request.app[RESOURCES]


def _json(
    model: BaseModel, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        status=status,
        body=model.model_dump_json().encode(),
        content_type="application/json",
        headers=headers,
    )


def _page(items: list[Any], total: int, query: PageQuery) -> web.Response:
    return _json(Page[Any](items=items, page=query.page, per_page=query.per_page, total=total))


def _movie_json(movie: schemas.MovieOut, status: int = 200) -> web.Response:
    headers = {"Location": f"/api/movies/{movie.id}"} if status == 201 else None
    return _json(movie, status, headers)


def _with_deleted(request: web.Request) -> bool:
    """`?with_deleted=true` shows soft-deleted rows, to admins only."""
    wanted = parse_query(request, schemas.DeletedQuery).with_deleted
    if wanted:
        require_admin(request)
    return wanted


def _movie_id(request: web.Request) -> uuid.UUID:
    return parse_uuid(request.match_info["movie_id"], "Movie")


def _actor_id(request: web.Request) -> uuid.UUID:
    return parse_uuid(request.match_info["actor_id"], "Actor")


# ---------------------------------------------------------------- movies


@documented(
    "List and search movies",
    description="`q` searches titles and descriptions; `with_deleted=true` needs the admin role.",
    tags=("movies",),
    auth="optional",
    query=schemas.MovieQuery,
    responses={200: Page[schemas.MovieOut], 401: "invalid_token", 403: "admin_required"},
)
async def list_movies(request: web.Request) -> web.Response:
    query = parse_query(request, schemas.MovieQuery)
    if query.with_deleted:
        require_admin(request)
    async with _resources(request).db.transaction() as session:
        movies, total = await service.list_movies(session, query)
    return _page(movies, total, query)


@documented(
    "Read a movie with its cast",
    tags=("movies",),
    auth="optional",
    query=schemas.DeletedQuery,
    responses={200: schemas.MovieOut, 401: "invalid_token", 403: "admin_required"},
)
async def get_movie(request: web.Request) -> web.Response:
    movie_id = _movie_id(request)
    with_deleted = _with_deleted(request)
    async with _resources(request).db.transaction() as session:
        movie = await service.get_movie(session, movie_id, with_deleted=with_deleted)
        view = await service.movie_view(session, movie)
    return _movie_json(view)


@documented(
    "Create a draft movie (emits `movie.created`)",
    tags=("movies",),
    auth="admin",
    body=schemas.MovieIn,
    responses={201: Reply(schemas.MovieOut, headers={"Location": "The new resource's URL."})},
)
async def create_movie(request: web.Request) -> web.Response:
    require_admin(request)
    body = await parse_body(request, schemas.MovieIn)
    async with _resources(request).writing() as session:
        movie = await service.create_movie(session, body)
    return _movie_json(movie, status=201)


@documented(
    "Replace a movie's editable fields (left-out fields are reset; a given cast replaces it)",
    tags=("movies",),
    auth="admin",
    body=schemas.MovieIn,
    responses={200: schemas.MovieOut},
)
async def put_movie(request: web.Request) -> web.Response:
    require_admin(request)
    movie_id = _movie_id(request)
    body = await parse_body(request, schemas.MovieIn)
    async with _resources(request).writing() as session:
        movie = await service.get_movie(session, movie_id, for_update=True)
        view = await service.replace_movie(session, movie, body)
    return _movie_json(view)


@documented(
    "Update some of a movie's fields",
    tags=("movies",),
    auth="admin",
    body=schemas.MoviePatch,
    responses={200: schemas.MovieOut},
)
async def patch_movie(request: web.Request) -> web.Response:
    require_admin(request)
    movie_id = _movie_id(request)
    body = await parse_body(request, schemas.MoviePatch)
    async with _resources(request).writing() as session:
        movie = await service.get_movie(session, movie_id, for_update=True)
        view = await service.patch_movie(session, movie, body)
    return _movie_json(view)


@documented("Soft-delete a movie (emits `movie.deleted`; its streams stop)",
            tags=("movies",), auth="admin", responses={204: None})
async def delete_movie(request: web.Request) -> web.Response:
    require_admin(request)
    movie_id = _movie_id(request)
    async with _resources(request).writing() as session:
        movie = await service.get_movie(session, movie_id, for_update=True)
        await service.delete_movie(session, movie)
    return web.Response(status=204)


@documented("Restore a soft-deleted movie", tags=("movies",), auth="admin",
            responses={200: schemas.MovieOut})
async def restore_movie(request: web.Request) -> web.Response:
    require_admin(request)
    movie_id = _movie_id(request)
    async with _resources(request).writing() as session:
        movie = await service.get_movie(session, movie_id, with_deleted=True, for_update=True)
        view = await service.restore_movie(session, movie)
    return _movie_json(view)


# ---------------------------------------------------------------- media


def _expected_digest(request: web.Request) -> str | None:
    try:
        return media.parse_content_digest(request.headers.get("Content-Digest"))
    except ValueError as exc:
        raise validation_failed([{"field": "Content-Digest", "message": str(exc)}]) from None


def _too_large(limit: int) -> Problem:
    return Problem(413, "payload_too_large", f"The video may be at most {limit} bytes.")


@documented(
    "Upload a movie's video (streamed to storage, probed with ffprobe)",
    description="The raw video as the body, never held whole in memory. A body that is not a "
    "playable video is 422 `unplayable_media` and nothing is kept; an optional "
    "`Content-Digest: sha-256=:<base64>:` is verified (mismatch: 422 `digest_mismatch`).",
    tags=("movies",),
    auth="admin",
    body=Raw(("video/mp4", "video/webm", "video/x-matroska", "video/quicktime",
              "application/octet-stream")),
    headers={"Content-Digest": ("`sha-256=:<base64 of the SHA-256>:` (RFC 9530)",
                                {"type": "string"})},
    responses={
        200: schemas.MovieOut,
        400: "upload_incomplete",
        422: ("validation_failed", "digest_mismatch", "unplayable_media"),
    },
)
async def put_media(request: web.Request) -> web.Response:
    """The raw video body, streamed to storage (never read whole: client_max_size
    only limits request.read()/post(), and this reads request.content)."""
    require_admin(request)
    movie_id = _movie_id(request)
    res = _resources(request)
    limit = res.settings.max_upload_bytes
    if request.content_length is not None and request.content_length > limit:
        raise _too_large(limit)
    expected = _expected_digest(request)
    async with res.db.transaction() as session:
        await service.get_movie(session, movie_id)  # 404 before taking any bytes
    chunks = request.content.iter_chunked(media.UPLOAD_CHUNK_BYTES)
    try:
        movie = await res.ingestor.ingest(
            movie_id, chunks, max_bytes=limit, expected_sha256=expected
        )
    except TooLarge:
        raise _too_large(limit) from None
    except DigestMismatch:
        raise Problem(
            422, "digest_mismatch", "The body does not match its Content-Digest; nothing was kept."
        ) from None
    except media.Unplayable as exc:
        raise Problem(
            422, "unplayable_media", f"Not a playable video ({exc}); nothing was kept."
        ) from None
    except (ClientPayloadError, HttpProcessingError):
        # The client went away or broke the framing mid-upload; storage kept nothing.
        log.info("upload of movie %s cut short", movie_id)
        raise Problem(
            400, "upload_incomplete", "The upload ended early; nothing was kept."
        ) from None
    return _movie_json(movie)


@documented(
    "The poster: a JPEG frame taken from the video at ingest",
    tags=("movies",),
    headers={"If-None-Match": ("ETags that make the answer a 304.", {"type": "string"})},
    responses={
        200: Reply(Raw(("image/jpeg",)), headers={"ETag": "Strong validator."}),
        304: Reply(None, "Not modified.", {"ETag": "Strong validator."}),
    },
)
async def get_poster(request: web.Request) -> web.StreamResponse:
    movie_id = _movie_id(request)
    res = _resources(request)
    async with res.db.transaction() as session:
        movie = await service.get_movie(session, movie_id)
    if movie.poster_key is None:
        raise not_found("Poster")
    digest, _ = parse_key(movie.poster_key)
    # Strong validator: the key is the SHA-256 of the bytes.
    etag = f'"{digest}"'
    headers = {"ETag": etag, "Cache-Control": POSTER_CACHE_CONTROL}
    if etag in _etags(request.headers.get("If-None-Match", "")):
        return web.Response(status=304, headers=headers)
    try:
        info = await res.storage.stat(movie.poster_key)
        body = b"".join(
            [c async for c in res.storage.open_range(movie.poster_key, 0, info.size - 1)]
        )
    except ObjectNotFound:
        log.error("poster object %s of movie %s is missing", movie.poster_key, movie_id)
        raise not_found("Poster") from None
    return web.Response(body=body, content_type="image/jpeg", headers=headers)


@documented(
    "Which stored object plays for a movie (media nodes)",
    tags=("movies",),
    auth="admin_or_service",
    public=False,
    responses={200: schemas.InternalMediaOut},
)
async def internal_media(request: web.Request) -> web.Response:
    """For media nodes (service key): which stored object plays for this movie.
    404 for unknown, deleted or media-less movies; never exposed by the balancer."""
    if not is_service_call(request):
        require_admin(request)
    movie_id = _movie_id(request)
    async with _resources(request).db.transaction() as session:
        movie = await service.get_movie(session, movie_id)
    if movie.media_key is None or movie.status != "ready" or not movie.media:
        raise not_found("Media")
    return json_response(
        {
            "movie_id": str(movie.id),
            "key": movie.media_key,
            "size_bytes": movie.media.get("size_bytes"),
            "content_type": movie.media.get("content_type"),
            "sha256": movie.media.get("sha256"),
        }
    )


def _etags(header: str) -> set[str]:
    return {tag.strip().removeprefix("W/") for tag in header.split(",") if tag.strip()}


# ---------------------------------------------------------------- actors


@documented(
    "List and search actors",
    description="`with_deleted=true` needs the admin role.",
    tags=("actors",),
    auth="optional",
    query=schemas.ActorQuery,
    responses={200: Page[schemas.ActorOut], 401: "invalid_token", 403: "admin_required"},
)
async def list_actors(request: web.Request) -> web.Response:
    query = parse_query(request, schemas.ActorQuery)
    if query.with_deleted:
        require_admin(request)
    async with _resources(request).db.transaction() as session:
        actors, total = await service.list_actors(session, query)
    return _page([service.actor_out(actor) for actor in actors], total, query)


@documented(
    "Read an actor",
    tags=("actors",),
    auth="optional",
    query=schemas.DeletedQuery,
    responses={200: schemas.ActorOut, 401: "invalid_token", 403: "admin_required"},
)
async def get_actor(request: web.Request) -> web.Response:
    actor_id = _actor_id(request)
    with_deleted = _with_deleted(request)
    async with _resources(request).db.transaction() as session:
        actor = await service.get_actor(session, actor_id, with_deleted=with_deleted)
    return _json(service.actor_out(actor))


@documented(
    "Create an actor",
    tags=("actors",),
    auth="admin",
    body=schemas.ActorIn,
    responses={201: Reply(schemas.ActorOut, headers={"Location": "The new resource's URL."})},
)
async def create_actor(request: web.Request) -> web.Response:
    require_admin(request)
    body = await parse_body(request, schemas.ActorIn)
    async with _resources(request).db.transaction() as session:
        actor = await service.create_actor(session, body)
    return _json(service.actor_out(actor), 201, {"Location": f"/api/actors/{actor.id}"})


async def _update_actor(request: web.Request, changes: dict[str, Any]) -> web.Response:
    actor_id = _actor_id(request)
    # `writing`: the movies the actor is cast in get events (see service.update_actor).
    async with _resources(request).writing() as session:
        actor = await service.get_actor(session, actor_id)
        actor = await service.update_actor(session, actor, changes)
    return _json(service.actor_out(actor))


@documented("Replace an actor (emits `movie.updated` for each of their movies)",
            tags=("actors",), auth="admin", body=schemas.ActorIn,
            responses={200: schemas.ActorOut})
async def put_actor(request: web.Request) -> web.Response:
    require_admin(request)
    body = await parse_body(request, schemas.ActorIn)
    return await _update_actor(request, body.model_dump(include=service.ACTOR_FIELDS))


@documented("Update some of an actor's fields (emits `movie.updated` for each of their movies)",
            tags=("actors",), auth="admin", body=schemas.ActorPatch,
            responses={200: schemas.ActorOut})
async def patch_actor(request: web.Request) -> web.Response:
    require_admin(request)
    body = await parse_body(request, schemas.ActorPatch)
    return await _update_actor(request, body.model_dump(exclude_unset=True))


@documented("Soft-delete an actor (their credits leave their movies: `movie.updated` for each)",
            tags=("actors",), auth="admin", responses={204: None})
async def delete_actor(request: web.Request) -> web.Response:
    require_admin(request)
    actor_id = _actor_id(request)
    async with _resources(request).writing() as session:
        actor = await service.get_actor(session, actor_id)
        await service.delete_actor(session, actor)
    return web.Response(status=204)


@documented("Restore a soft-deleted actor (their credits return: `movie.updated` for each)",
            tags=("actors",), auth="admin", responses={200: schemas.ActorOut})
async def restore_actor(request: web.Request) -> web.Response:
    require_admin(request)
    actor_id = _actor_id(request)
    async with _resources(request).writing() as session:
        actor = await service.get_actor(session, actor_id, with_deleted=True)
        actor = await service.restore_actor(session, actor)
    return _json(service.actor_out(actor))


@documented(
    "The movies an actor plays in (every movie filter and sort applies)",
    tags=("actors",),
    auth="optional",
    query=schemas.MovieQuery,
    responses={200: Page[schemas.MovieOut], 401: "invalid_token", 403: "admin_required"},
)
async def actor_movies(request: web.Request) -> web.Response:
    """The actor's movies, with every movie-list filter and sort available."""
    actor_id = _actor_id(request)
    query = parse_query(request, schemas.MovieQuery)
    if query.with_deleted:
        require_admin(request)
    query = query.model_copy(update={"actor_id": actor_id})
    async with _resources(request).db.transaction() as session:
        await service.get_actor(session, actor_id, with_deleted=query.with_deleted)
        movies, total = await service.list_movies(session, query)
    return _page(movies, total, query)


# ---------------------------------------------------------------- genres


@documented("The genre vocabulary", tags=("genres",), dependencies=False,
            responses={200: schemas.GenresOut})
async def list_genres(request: web.Request) -> web.Response:
    return json_response({"items": list(GENRES)}, headers={"Cache-Control": "public, max-age=3600"})


routes = [
    web.get("/api/movies", list_movies),
    web.post("/api/movies", create_movie),
    web.get("/api/movies/{movie_id}", get_movie),
    web.put("/api/movies/{movie_id}", put_movie),
    web.patch("/api/movies/{movie_id}", patch_movie),
    web.delete("/api/movies/{movie_id}", delete_movie),
    web.post("/api/movies/{movie_id}/restore", restore_movie),
    web.put("/api/movies/{movie_id}/media", put_media),
    web.get("/api/movies/{movie_id}/poster", get_poster),
    web.get("/api/actors", list_actors),
    web.post("/api/actors", create_actor),
    web.get("/api/actors/{actor_id}", get_actor),
    web.put("/api/actors/{actor_id}", put_actor),
    web.patch("/api/actors/{actor_id}", patch_actor),
    web.delete("/api/actors/{actor_id}", delete_actor),
    web.post("/api/actors/{actor_id}/restore", restore_actor),
    web.get("/api/actors/{actor_id}/movies", actor_movies),
    web.get("/api/genres", list_genres),
    web.get("/internal/movies/{movie_id}/media", internal_media),
]
