"""Tables owned by the catalog node. Nothing else reads them (the entitlements
node learns about movies from the events this node publishes)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    Uuid,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from reelgate.db import NAMING_CONVENTION, UTCDateTime, utcnow

GENRES = (
    "action",
    "adventure",
    "animation",
    "comedy",
    "crime",
    "documentary",
    "drama",
    "family",
    "fantasy",
    "history",
    "horror",
    "music",
    "mystery",
    "romance",
    "science-fiction",
    "thriller",
    "war",
    "western",
)
MOVIE_STATUSES = ("draft", "ready")

# Full-text search on PostgreSQL (SQLite falls back to LIKE). The migration adds
# a generated, stored column `movies.search_vector` (title weighted A,
# description D) with a GIN index; it is not mapped here because SQLite has no
# such type. Storing the vector, rather than indexing an expression, lets the
# ranking read it instead of re-parsing every matching description.
MOVIE_SEARCH_VECTOR = "movies.search_vector"
# Actor names only filter (lists sort by name), so an expression index is
# enough; a query must repeat this exact expression to use it.
ACTOR_SEARCH_DOCUMENT = "to_tsvector('simple'::regconfig, name)"

_unsent_sql = "sent_at IS NULL"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Timestamps:
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    deleted_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)


class Movie(Timestamps, Base):
    __tablename__ = "movies"
    # Every list sort is "<key>, id": with these a page is an index walk, not a sort.
    # The full-text GIN index is PostgreSQL-only and created in the migration.
    __table_args__ = (
        Index("ix_movies_title_id", "title", "id"),
        Index("ix_movies_release_year_id", "release_year", "id"),
        Index("ix_movies_created_at_id", "created_at", "id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    title: Mapped[str] = mapped_column(String(300))
    description: Mapped[str] = mapped_column(Text, default="")
    release_year: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # The genre list as shown; `movie_genres` holds the same set, indexed, for filtering.
    genres: Mapped[list[str]] = mapped_column(JSON, default=list)
    age_rating: Mapped[str | None] = mapped_column(String(16), nullable=True)
    status: Mapped[str] = mapped_column(String(16), default="draft", index=True)
    duration_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    # Measured at ingest (see catalog.media.MediaInfo); null until then.
    media: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    # Storage keys. Objects are content-addressed and may be shared by several
    # movies, so these are indexed for the "is anyone else using it?" check.
    media_key: Mapped[str | None] = mapped_column(String(120), nullable=True, index=True)
    poster_key: Mapped[str | None] = mapped_column(String(120), nullable=True, index=True)


class MovieGenre(Base):
    """One row per (genre, movie): the genre filter is an index range scan."""

    __tablename__ = "movie_genres"

    genre: Mapped[str] = mapped_column(String(40), primary_key=True)
    movie_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("movies.id", ondelete="CASCADE"), primary_key=True, index=True
    )


class Actor(Timestamps, Base):
    __tablename__ = "actors"
    __table_args__ = (
        Index("ix_actors_name_id", "name", "id"),
        Index("ix_actors_created_at_id", "created_at", "id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(200))
    birth_date: Mapped[dt.date | None] = mapped_column(Date, nullable=True)
    nationality: Mapped[str | None] = mapped_column(String(2), nullable=True, index=True)


class CastMember(Base):
    """An actor in a movie, in billing order (`position` 0 is top billing)."""

    __tablename__ = "movie_actors"

    movie_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("movies.id", ondelete="CASCADE"), primary_key=True
    )
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    actor_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("actors.id"), index=True)
    character: Mapped[str | None] = mapped_column(String(200), nullable=True)


class OutboxEvent(Base):
    """Events written in the same transaction as the change they describe; the
    relay (catalog.events) moves them to the Redis stream in `seq` order."""

    __tablename__ = "catalog_outbox"
    __table_args__ = (
        # The relay only ever scans unsent rows: keep that index tiny.
        Index(
            "ix_catalog_outbox_unsent",
            "seq",
            postgresql_where=text(_unsent_sql),
            sqlite_where=text(_unsent_sql),
        ),
    )

    seq: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    event_id: Mapped[uuid.UUID] = mapped_column(Uuid, unique=True)
    type: Mapped[str] = mapped_column(String(40))
    envelope: Mapped[str] = mapped_column(Text)  # the exact JSON published
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    sent_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
