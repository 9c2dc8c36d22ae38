"""movie notifications

Revision ID: 44f895dcfc26
Revises: d326ba2d8b14
Create Date: 2026-11-25 16:07:33.010714
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import reelgate.db


revision: str = '44f895dcfc26'
down_revision: str | None = 'd326ba2d8b14'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('movie_notifications',
    sa.Column('user_id', sa.Uuid(), nullable=False),
    sa.Column('movie_id', sa.Uuid(), nullable=False),
    sa.Column('sent_at', reelgate.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['movie_id'], ['catalog_movies.id'], name=op.f('fk_movie_notifications_movie_id_catalog_movies')),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_movie_notifications_user_id_users')),
    sa.PrimaryKeyConstraint('user_id', 'movie_id', name=op.f('pk_movie_notifications'))
    )


def downgrade() -> None:
    op.drop_table('movie_notifications')
