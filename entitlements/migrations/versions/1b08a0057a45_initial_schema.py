"""initial schema

Revision ID: 1b08a0057a45
Revises: 
Create Date: 2026-11-25 15:49:28.171895
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import reelgate.db


revision: str = '1b08a0057a45'
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('billing_events',
    sa.Column('event_id', sa.String(length=200), nullable=False),
    sa.Column('type', sa.String(length=40), nullable=False),
    sa.Column('subscription_id', sa.Uuid(), nullable=False),
    sa.Column('amount_cents', sa.Integer(), nullable=False),
    sa.Column('occurred_at', reelgate.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('received_at', reelgate.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('outcome', sa.String(length=40), nullable=False),
    sa.PrimaryKeyConstraint('event_id', name=op.f('pk_billing_events'))
    )
    with op.batch_alter_table('billing_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_billing_events_subscription_id'), ['subscription_id'], unique=False)

    op.create_table('catalog_movies',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('title', sa.String(length=500), nullable=False),
    sa.Column('genres', sa.JSON(), nullable=False),
    sa.Column('age_rating', sa.String(length=16), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('height', sa.Integer(), nullable=True),
    sa.Column('deleted', sa.Boolean(), nullable=False),
    sa.Column('updated_at', reelgate.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_catalog_movies'))
    )
    op.create_table('plans',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('price_cents', sa.Integer(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('max_streams', sa.Integer(), nullable=False),
    sa.Column('max_height', sa.Integer(), nullable=False),
    sa.Column('genres', sa.JSON(), nullable=False),
    sa.Column('deleted_at', reelgate.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('created_at', reelgate.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', reelgate.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_plans'))
    )
    op.create_table('users',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('email', sa.String(length=320), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('password_hash', sa.String(length=255), nullable=False),
    sa.Column('deleted_at', reelgate.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('created_at', reelgate.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', reelgate.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_users')),
    sa.UniqueConstraint('email', name=op.f('uq_users_email'))
    )
    op.create_table('plan_movies',
    sa.Column('plan_id', sa.Uuid(), nullable=False),
    sa.Column('movie_id', sa.Uuid(), nullable=False),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('added_at', reelgate.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['movie_id'], ['catalog_movies.id'], name=op.f('fk_plan_movies_movie_id_catalog_movies')),
    sa.ForeignKeyConstraint(['plan_id'], ['plans.id'], name=op.f('fk_plan_movies_plan_id_plans')),
    sa.PrimaryKeyConstraint('plan_id', 'movie_id', name=op.f('pk_plan_movies'))
    )
    with op.batch_alter_table('plan_movies', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_plan_movies_movie_id'), ['movie_id'], unique=False)

    op.create_table('refresh_tokens',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('user_id', sa.Uuid(), nullable=False),
    sa.Column('family_id', sa.Uuid(), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('created_at', reelgate.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', reelgate.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('rotated_at', reelgate.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('revoked_at', reelgate.db.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_refresh_tokens_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_refresh_tokens')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_refresh_tokens_token_hash'))
    )
    with op.batch_alter_table('refresh_tokens', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_refresh_tokens_family_id'), ['family_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_refresh_tokens_user_id'), ['user_id'], unique=False)

    op.create_table('subscriptions',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('user_id', sa.Uuid(), nullable=False),
    sa.Column('plan_id', sa.Uuid(), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('current_period_end', reelgate.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('canceled_at', reelgate.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('billing_as_of', reelgate.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('created_at', reelgate.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', reelgate.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['plan_id'], ['plans.id'], name=op.f('fk_subscriptions_plan_id_plans')),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_subscriptions_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_subscriptions'))
    )
    with op.batch_alter_table('subscriptions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_subscriptions_plan_id'), ['plan_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_subscriptions_user_id'), ['user_id'], unique=False)
        batch_op.create_index('uq_subscriptions_live_user', ['user_id'], unique=True, postgresql_where=sa.text("status IN ('pending_payment', 'trialing', 'active', 'past_due')"), sqlite_where=sa.text("status IN ('pending_payment', 'trialing', 'active', 'past_due')"))

    # ### end Alembic commands ###


def downgrade() -> None:
    with op.batch_alter_table('subscriptions', schema=None) as batch_op:
        batch_op.drop_index('uq_subscriptions_live_user', postgresql_where=sa.text("status IN ('pending_payment', 'trialing', 'active', 'past_due')"), sqlite_where=sa.text("status IN ('pending_payment', 'trialing', 'active', 'past_due')"))
        batch_op.drop_index(batch_op.f('ix_subscriptions_user_id'))
        batch_op.drop_index(batch_op.f('ix_subscriptions_plan_id'))

    op.drop_table('subscriptions')
    with op.batch_alter_table('refresh_tokens', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_refresh_tokens_user_id'))
        batch_op.drop_index(batch_op.f('ix_refresh_tokens_family_id'))

    op.drop_table('refresh_tokens')
    with op.batch_alter_table('plan_movies', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_plan_movies_movie_id'))

    op.drop_table('plan_movies')
    op.drop_table('users')
    op.drop_table('plans')
    op.drop_table('catalog_movies')
    with op.batch_alter_table('billing_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_billing_events_subscription_id'))

    op.drop_table('billing_events')
    # ### end Alembic commands ###
