"""playback progress

Revision ID: d326ba2d8b14
Revises: 1b08a0057a45
Create Date: 2026-11-25 16:01:12.298985
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import reelgate.db


revision: str = 'd326ba2d8b14'
down_revision: str | None = '1b08a0057a45'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('playback_progress',
    sa.Column('user_id', sa.Uuid(), nullable=False),
    sa.Column('movie_id', sa.Uuid(), nullable=False),
    sa.Column('position_s', sa.Float(), nullable=False),
    sa.Column('updated_at', reelgate.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_playback_progress_user_id_users')),
    sa.PrimaryKeyConstraint('user_id', 'movie_id', name=op.f('pk_playback_progress'))
    )


def downgrade() -> None:
    op.drop_table('playback_progress')
