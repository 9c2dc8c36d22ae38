"""initial schema

Revision ID: e59612667e1c
Revises:
Create Date: 2026-11-25 16:02:48.150387
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import reelgate.db

# Full-text search, PostgreSQL only (SQLite falls back to LIKE); see
# catalog.models. The movie document is a stored generated column so ranking
# reads it instead of recomputing to_tsvector for every match.
_POSTGRES_SEARCH = [
    """ALTER TABLE movies ADD COLUMN search_vector tsvector GENERATED ALWAYS AS (
        setweight(to_tsvector('simple'::regconfig, title), 'A')
        || setweight(to_tsvector('simple'::regconfig, description), 'D')
    ) STORED""",
    "CREATE INDEX ix_movies_search ON movies USING gin (search_vector)",
    "CREATE INDEX ix_actors_search ON actors USING gin ((to_tsvector('simple'::regconfig, name)))",
]

revision: str = "e59612667e1c"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "actors",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("birth_date", sa.Date(), nullable=True),
        sa.Column("nationality", sa.String(length=2), nullable=True),
        sa.Column("created_at", reelgate.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", reelgate.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("deleted_at", reelgate.db.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_actors")),
    )
    with op.batch_alter_table("actors", schema=None) as batch_op:
        batch_op.create_index("ix_actors_created_at_id", ["created_at", "id"], unique=False)
        batch_op.create_index("ix_actors_name_id", ["name", "id"], unique=False)
        batch_op.create_index(batch_op.f("ix_actors_nationality"), ["nationality"], unique=False)

    op.create_table(
        "catalog_outbox",
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("type", sa.String(length=40), nullable=False),
        sa.Column("envelope", sa.Text(), nullable=False),
        sa.Column("created_at", reelgate.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("sent_at", reelgate.db.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_catalog_outbox")),
        sa.UniqueConstraint("event_id", name=op.f("uq_catalog_outbox_event_id")),
    )
    with op.batch_alter_table("catalog_outbox", schema=None) as batch_op:
        batch_op.create_index(
            "ix_catalog_outbox_unsent",
            ["seq"],
            unique=False,
            postgresql_where=sa.text("sent_at IS NULL"),
            sqlite_where=sa.text("sent_at IS NULL"),
        )

    op.create_table(
        "movies",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("title", sa.String(length=300), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("release_year", sa.Integer(), nullable=True),
        sa.Column("genres", sa.JSON(), nullable=False),
        sa.Column("age_rating", sa.String(length=16), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("duration_s", sa.Float(), nullable=True),
        sa.Column("media", sa.JSON(), nullable=True),
        sa.Column("media_key", sa.String(length=120), nullable=True),
        sa.Column("poster_key", sa.String(length=120), nullable=True),
        sa.Column("created_at", reelgate.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", reelgate.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("deleted_at", reelgate.db.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_movies")),
    )
    with op.batch_alter_table("movies", schema=None) as batch_op:
        batch_op.create_index("ix_movies_created_at_id", ["created_at", "id"], unique=False)
        batch_op.create_index(batch_op.f("ix_movies_media_key"), ["media_key"], unique=False)
        batch_op.create_index(batch_op.f("ix_movies_poster_key"), ["poster_key"], unique=False)
        batch_op.create_index("ix_movies_release_year_id", ["release_year", "id"], unique=False)
        batch_op.create_index(batch_op.f("ix_movies_status"), ["status"], unique=False)
        batch_op.create_index("ix_movies_title_id", ["title", "id"], unique=False)

    op.create_table(
        "movie_actors",
        sa.Column("movie_id", sa.Uuid(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("actor_id", sa.Uuid(), nullable=False),
        sa.Column("character", sa.String(length=200), nullable=True),
        sa.ForeignKeyConstraint(
            ["actor_id"], ["actors.id"], name=op.f("fk_movie_actors_actor_id_actors")
        ),
        sa.ForeignKeyConstraint(
            ["movie_id"],
            ["movies.id"],
            name=op.f("fk_movie_actors_movie_id_movies"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("movie_id", "position", name=op.f("pk_movie_actors")),
    )
    with op.batch_alter_table("movie_actors", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_movie_actors_actor_id"), ["actor_id"], unique=False)

    op.create_table(
        "movie_genres",
        sa.Column("genre", sa.String(length=40), nullable=False),
        sa.Column("movie_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["movie_id"],
            ["movies.id"],
            name=op.f("fk_movie_genres_movie_id_movies"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("genre", "movie_id", name=op.f("pk_movie_genres")),
    )
    with op.batch_alter_table("movie_genres", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_movie_genres_movie_id"), ["movie_id"], unique=False)

    if op.get_bind().dialect.name == "postgresql":
        for statement in _POSTGRES_SEARCH:
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP INDEX IF EXISTS ix_actors_search")
        op.execute("DROP INDEX IF EXISTS ix_movies_search")
        op.execute("ALTER TABLE movies DROP COLUMN IF EXISTS search_vector")
    with op.batch_alter_table("movie_genres", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_movie_genres_movie_id"))

    op.drop_table("movie_genres")
    with op.batch_alter_table("movie_actors", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_movie_actors_actor_id"))

    op.drop_table("movie_actors")
    with op.batch_alter_table("movies", schema=None) as batch_op:
        batch_op.drop_index("ix_movies_title_id")
        batch_op.drop_index(batch_op.f("ix_movies_status"))
        batch_op.drop_index("ix_movies_release_year_id")
        batch_op.drop_index(batch_op.f("ix_movies_poster_key"))
        batch_op.drop_index(batch_op.f("ix_movies_media_key"))
        batch_op.drop_index("ix_movies_created_at_id")

    op.drop_table("movies")
    with op.batch_alter_table("catalog_outbox", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_catalog_outbox_unsent",
            postgresql_where=sa.text("sent_at IS NULL"),
            sqlite_where=sa.text("sent_at IS NULL"),
        )

    op.drop_table("catalog_outbox")
    with op.batch_alter_table("actors", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_actors_nationality"))
        batch_op.drop_index("ix_actors_name_id")
        batch_op.drop_index("ix_actors_created_at_id")

    op.drop_table("actors")
