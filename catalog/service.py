"""Catalog logic, free of HTTP: movies, actors, casts, search and media
attachment. Functions take an AsyncSession and raise `Problem` for outcomes a
client must see; the caller owns the transaction. Every movie write queues its
event (`events.add`) in that same transaction: the write and its event commit
or vanish together. An actor write is a write of every movie they are cast in
(a movie's JSON embeds its cast), so it queues a `movie.updated` for each."""

from __future__ import annotations

import re
import uuid
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    and_,
    case,
    delete,
    func,
    insert,
    literal_column,
    or_,
    select,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import UnaryExpression

from catalog import events, schemas
from catalog.models import (
    ACTOR_SEARCH_DOCUMENT,
    MOVIE_SEARCH_VECTOR,
    Actor,
    CastMember,
    Movie,
    MovieGenre,
)
from reelgate.db import utcnow
from reelgate.events import Event
from reelgate.pagination import PageQuery
from reelgate.problems import not_found, validation_failed

MOVIE_FIELDS = {"title", "description", "release_year", "genres", "age_rating"}
ACTOR_FIELDS = {"name", "birth_date", "nationality"}
_WORD_RE = re.compile(r"[^\W_]+")

# ---------------------------------------------------------------- output


def movie_out(movie: Movie, cast: list[schemas.CastOut]) -> schemas.MovieOut:
    """The public JSON of a movie; also the `data` of its events."""
    return schemas.MovieOut(
        id=movie.id,
        title=movie.title,
        description=movie.description,
        release_year=movie.release_year,
        genres=list(movie.genres),
        age_rating=movie.age_rating,
        duration_s=movie.duration_s,
        status=movie.status,
        media=schemas.MediaOut.model_validate(movie.media) if movie.media else None,
        actors=cast,
        poster_url=f"/api/movies/{movie.id}/poster" if movie.poster_key else None,
        created_at=movie.created_at,
        updated_at=movie.updated_at,
        deleted_at=movie.deleted_at,
    )


async def casts_of(
    session: AsyncSession, movie_ids: list[uuid.UUID]
) -> dict[uuid.UUID, list[schemas.CastOut]]:
    """The casts of several movies in billing order, in one query.

    Plain rows, not ORM objects: a list page shows a hundred credits, and
    building mapped instances for them cost more than the query itself.
    A soft-deleted actor is gone from every view, credits included;
    restoring the actor brings the credits back.
    """
    casts: dict[uuid.UUID, list[schemas.CastOut]] = {movie_id: [] for movie_id in movie_ids}
    if not movie_ids:
        return casts
    rows = await session.execute(
        select(
            CastMember.movie_id,
            CastMember.character,
            Actor.id,
            Actor.name,
            Actor.birth_date,
            Actor.nationality,
        )
        .join(Actor, Actor.id == CastMember.actor_id)
        .where(CastMember.movie_id.in_(movie_ids), Actor.deleted_at.is_(None))
        .order_by(CastMember.movie_id, CastMember.position)
    )
    for row in rows:
        casts[row.movie_id].append(
            schemas.CastOut(
                id=row.id,
                name=row.name,
                birth_date=row.birth_date,
                nationality=row.nationality,
                character=row.character,
            )
        )
    return casts


async def movie_views(session: AsyncSession, movies: list[Movie]) -> list[schemas.MovieOut]:
    casts = await casts_of(session, [movie.id for movie in movies])
    return [movie_out(movie, casts[movie.id]) for movie in movies]


async def movie_view(session: AsyncSession, movie: Movie) -> schemas.MovieOut:
    return (await movie_views(session, [movie]))[0]


def actor_out(actor: Actor) -> schemas.ActorOut:
    return schemas.ActorOut.model_validate(actor, from_attributes=True)


async def _emit(session: AsyncSession, kind: str, movie: Movie) -> schemas.MovieOut:
    """Queue the event of a movie write; returns the movie as it now is."""
    await session.flush()
    view = await movie_view(session, movie)
    await events.add(session, Event(type=kind, data=view.model_dump(mode="json")))
    return view


# ---------------------------------------------------------------- movies


async def get_movie(
    session: AsyncSession,
    movie_id: uuid.UUID,
    *,
    with_deleted: bool = False,
    for_update: bool = False,
) -> Movie:
    statement = select(Movie).where(Movie.id == movie_id)
    if for_update:
        # Writers of one movie queue their events in the order they commit.
        statement = statement.with_for_update()
    movie = await session.scalar(statement.execution_options(populate_existing=True))
    if movie is None or (movie.deleted_at is not None and not with_deleted):
        raise not_found("Movie")
    return movie


async def create_movie(session: AsyncSession, body: schemas.MovieIn) -> schemas.MovieOut:
    cast = await _resolve_cast(session, body)
    movie = Movie(status="draft", **body.model_dump(include=MOVIE_FIELDS))
    session.add(movie)
    await session.flush()
    await _set_genres(session, movie.id, movie.genres)
    await _set_cast(session, movie.id, cast)
    return await _emit(session, "movie.created", movie)


async def replace_movie(
    session: AsyncSession, movie: Movie, body: schemas.MovieIn
) -> schemas.MovieOut:
    """PUT: every editable field takes the body's value or its default."""
    cast = await _resolve_cast(session, body)
    return await _update(session, movie, body.model_dump(include=MOVIE_FIELDS), cast)


async def patch_movie(
    session: AsyncSession, movie: Movie, body: schemas.MoviePatch
) -> schemas.MovieOut:
    cast = await _resolve_cast(session, body) if body.cast_given() else None
    changes = body.model_dump(include=MOVIE_FIELDS, exclude_unset=True)
    return await _update(session, movie, changes, cast)


async def _update(
    session: AsyncSession,
    movie: Movie,
    changes: dict[str, Any],
    cast: list[schemas.CastIn] | None,
) -> schemas.MovieOut:
    for field, value in changes.items():
        setattr(movie, field, value)
    if "genres" in changes:
        await _set_genres(session, movie.id, changes["genres"])
    if cast is not None:
        await _set_cast(session, movie.id, cast)
    movie.updated_at = utcnow()
    return await _emit(session, "movie.updated", movie)


async def delete_movie(session: AsyncSession, movie: Movie) -> None:
    movie.deleted_at = movie.updated_at = utcnow()
    await _emit(session, "movie.deleted", movie)


async def restore_movie(session: AsyncSession, movie: Movie) -> schemas.MovieOut:
    if movie.deleted_at is None:
        return await movie_view(session, movie)  # nothing to restore: no change, no event
    movie.deleted_at = None
    movie.updated_at = utcnow()
    return await _emit(session, "movie.restored", movie)


async def attach_media(
    session: AsyncSession, movie: Movie, media_key: str, poster_key: str, media: dict[str, Any]
) -> schemas.MovieOut:
    movie.media_key, movie.poster_key, movie.media = media_key, poster_key, media
    movie.duration_s = media["duration_s"]
    movie.status = "ready"
    movie.updated_at = utcnow()
    return await _emit(session, "movie.media_ready", movie)


async def _set_genres(session: AsyncSession, movie_id: uuid.UUID, genres: list[str]) -> None:
    await session.execute(delete(MovieGenre).where(MovieGenre.movie_id == movie_id))
    if genres:
        rows = [{"genre": genre, "movie_id": movie_id} for genre in genres]
        await session.execute(insert(MovieGenre), rows)


async def _set_cast(session: AsyncSession, movie_id: uuid.UUID, cast: list[schemas.CastIn]) -> None:
    await session.execute(delete(CastMember).where(CastMember.movie_id == movie_id))
    if cast:
        rows = [
            {
                "movie_id": movie_id,
                "position": position,
                "actor_id": entry.actor_id,
                "character": entry.character,
            }
            for position, entry in enumerate(cast)
        ]
        await session.execute(insert(CastMember), rows)


async def _resolve_cast(
    session: AsyncSession, body: schemas.MovieIn | schemas.MoviePatch
) -> list[schemas.CastIn]:
    """The cast in billing order, every actor live; unknown or deleted ones are 422."""
    entries = body.cast_entries()
    live = await _live_actor_ids(session, [entry.actor_id for entry in entries])
    field = "cast.{}.actor_id" if body.cast is not None else "actor_ids.{}"
    errors = [
        {"field": field.format(index), "message": f"No actor {entry.actor_id} (unknown or deleted)"}
        for index, entry in enumerate(entries)
        if entry.actor_id not in live
    ]
    if errors:
        raise validation_failed(errors)
    return entries


async def _live_actor_ids(session: AsyncSession, ids: list[uuid.UUID]) -> set[uuid.UUID]:
    if not ids:
        return set()
    found = await session.scalars(
        select(Actor.id).where(Actor.id.in_(ids), Actor.deleted_at.is_(None))
    )
    return set(found)


# ---------------------------------------------------------------- movie lists and search


def _dialect(session: AsyncSession) -> str:
    return session.get_bind().dialect.name


def _like_all(columns: list[Any], text_query: str) -> ColumnElement[bool]:
    """SQLite fallback: every word appears in one of the columns (LIKE is case-insensitive)."""
    words = _WORD_RE.findall(text_query) or [text_query]
    return and_(
        *(
            or_(*(column.ilike(_like_pattern(word), escape="\\") for column in columns))
            for word in words
        )
    )


def _like_pattern(word: str) -> str:
    escaped = word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _movie_search(dialect: str, text_query: str) -> tuple[ColumnElement[bool], list[Any]]:
    """(condition, relevance ordering) for `q`: title matches first, then rank."""
    if dialect == "postgresql":
        tsquery = func.websearch_to_tsquery(literal_column("'simple'::regconfig"), text_query)
        vector: ColumnElement[Any] = literal_column(MOVIE_SEARCH_VECTOR)
        # Rank with weight only on A (the title) is > 0 exactly when the title matches.
        title_only: ColumnElement[Any] = literal_column("'{0, 0, 0, 1}'::float4[]")
        title_hit = func.ts_rank(title_only, vector, tsquery) > 0
        relevance = func.ts_rank(vector, tsquery)
        return vector.op("@@")(tsquery), [title_hit.desc(), relevance.desc()]
    condition = _like_all([Movie.title, Movie.description], text_query)
    title_hit = _like_all([Movie.title], text_query)
    return condition, [case((title_hit, 0), else_=1)]


_MOVIE_SORTS: dict[str, UnaryExpression[Any]] = {
    "title": Movie.title.asc(),
    "-title": Movie.title.desc(),
    "release_year": Movie.release_year.asc().nulls_last(),
    "-release_year": Movie.release_year.desc().nulls_last(),
    "created_at": Movie.created_at.asc(),
    "-created_at": Movie.created_at.desc(),
}


def movie_list_statement(dialect: str, query: schemas.MovieQuery) -> Select[Movie]:
    statement = select(Movie)
    if not query.with_deleted:
        statement = statement.where(Movie.deleted_at.is_(None))
    if query.genre is not None:
        genre_ids = select(MovieGenre.movie_id).where(MovieGenre.genre == query.genre)
        statement = statement.where(Movie.id.in_(genre_ids))
    if query.year is not None:
        statement = statement.where(Movie.release_year == query.year)
    if query.actor_id is not None:
        cast_ids = select(CastMember.movie_id).where(CastMember.actor_id == query.actor_id)
        statement = statement.where(Movie.id.in_(cast_ids))
    if query.status is not None:
        statement = statement.where(Movie.status == query.status)
    order: list[Any] = []
    if query.q is not None:
        condition, relevance = _movie_search(dialect, query.q)
        statement = statement.where(condition)
        order = relevance if query.sort is None else []
    if query.sort is not None:
        order = [_MOVIE_SORTS[query.sort]]
    elif not order:
        order = [_MOVIE_SORTS["-created_at"]]
    # The id breaks ties, so pages never overlap or skip rows.
    return statement.order_by(*order, Movie.id)


async def list_movies(
    session: AsyncSession, query: schemas.MovieQuery
) -> tuple[list[schemas.MovieOut], int]:
    statement = movie_list_statement(_dialect(session), query)
    movies, total = await paginate(session, statement, query)
    return await movie_views(session, movies), total


async def paginate(session: AsyncSession, statement: Select, query: PageQuery) -> tuple[list, int]:
    total = await session.scalar(
        select(func.count()).select_from(statement.order_by(None).subquery())
    )
    rows = await session.scalars(statement.offset(query.offset).limit(query.per_page))
    return list(rows), int(total or 0)


# ---------------------------------------------------------------- actors


async def get_actor(
    session: AsyncSession, actor_id: uuid.UUID, *, with_deleted: bool = False
) -> Actor:
    actor = await session.get(Actor, actor_id)
    if actor is None or (actor.deleted_at is not None and not with_deleted):
        raise not_found("Actor")
    return actor


async def create_actor(session: AsyncSession, body: schemas.ActorIn) -> Actor:
    actor = Actor(**body.model_dump(include=ACTOR_FIELDS))
    session.add(actor)
    await session.flush()
    return actor


async def update_actor(session: AsyncSession, actor: Actor, changes: dict[str, Any]) -> Actor:
    for field, value in changes.items():
        setattr(actor, field, value)
    actor.updated_at = utcnow()
    await session.flush()
    await _recast_movies_of(session, actor.id)
    return actor


async def delete_actor(session: AsyncSession, actor: Actor) -> None:
    actor.deleted_at = actor.updated_at = utcnow()
    await session.flush()
    await _recast_movies_of(session, actor.id)  # their credits leave every cast


async def restore_actor(session: AsyncSession, actor: Actor) -> Actor:
    if actor.deleted_at is not None:
        actor.deleted_at = None
        actor.updated_at = utcnow()
        await session.flush()
        await _recast_movies_of(session, actor.id)  # and come back
    return actor


async def _recast_movies_of(session: AsyncSession, actor_id: uuid.UUID) -> None:
    """Queue `movie.updated` for every live movie the actor is cast in.

    A movie's JSON (its events' data) embeds its cast, so an actor's change is
    a change of each of those movies: without the events, consumers would keep
    the old cast. The movies are locked in id order, like a movie write locks
    its movie, so each one's events queue in commit order and two such writes
    cannot deadlock; `updated_at` moves because the movie's JSON did."""
    credited = select(CastMember.movie_id).where(CastMember.actor_id == actor_id)
    movies = list(
        await session.scalars(
            select(Movie)
            .where(Movie.id.in_(credited), Movie.deleted_at.is_(None))
            .order_by(Movie.id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    )
    if not movies:
        return
    now = utcnow()
    for movie in movies:
        movie.updated_at = now
    await session.flush()
    for view in await movie_views(session, movies):
        await events.add(session, Event(type="movie.updated", data=view.model_dump(mode="json")))


_ACTOR_SORTS: dict[str, UnaryExpression[Any]] = {
    "name": Actor.name.asc(),
    "-name": Actor.name.desc(),
    "created_at": Actor.created_at.asc(),
    "-created_at": Actor.created_at.desc(),
}


def _actor_search(dialect: str, text_query: str) -> ColumnElement[bool]:
    """Names match by word prefix ("tom han" finds "Tom Hanks")."""
    words = _WORD_RE.findall(text_query.lower())
    if not words:
        return literal_column("1") == 0  # only punctuation: nothing can match
    if dialect == "postgresql":
        # Words are [^\W_]+ only, so they cannot smuggle tsquery operators in.
        tsquery = func.to_tsquery(
            literal_column("'simple'::regconfig"), " & ".join(f"{w}:*" for w in words)
        )
        return literal_column(ACTOR_SEARCH_DOCUMENT).op("@@")(tsquery)
    return _like_all([Actor.name], text_query)


async def list_actors(session: AsyncSession, query: schemas.ActorQuery) -> tuple[list[Actor], int]:
    statement = select(Actor)
    if not query.with_deleted:
        statement = statement.where(Actor.deleted_at.is_(None))
    if query.nationality is not None:
        statement = statement.where(Actor.nationality == query.nationality)
    if query.q is not None:
        statement = statement.where(_actor_search(_dialect(session), query.q))
    statement = statement.order_by(_ACTOR_SORTS[query.sort], Actor.id)
    return await paginate(session, statement, query)
