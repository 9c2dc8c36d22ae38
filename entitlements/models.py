"""Tables owned by the entitlements node. Nothing else reads them."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import (
    JSON,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Uuid,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from reelgate.db import NAMING_CONVENTION, UTCDateTime, utcnow

# Subscription states that count as "the user's live subscription" (one at most).
LIVE_STATUSES = ("pending_payment", "trialing", "active", "past_due")
ENTITLING_STATUSES = ("active", "trialing")
ALL_STATUSES = (*LIVE_STATUSES, "canceled", "expired")

_live_sql = "status IN ('pending_payment', 'trialing', 'active', 'past_due')"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Timestamps:
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class User(Timestamps, Base):
    __tablename__ = "users"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str] = mapped_column(String(255))
    deleted_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)


class RefreshToken(Base):
    """Opaque refresh tokens, stored hashed. A family is one login's rotation chain."""

    __tablename__ = "refresh_tokens"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), index=True)
    family_id: Mapped[uuid.UUID] = mapped_column(Uuid, index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    rotated_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)


class Plan(Timestamps, Base):
    __tablename__ = "plans"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(200))
    price_cents: Mapped[int] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(String(3))
    max_streams: Mapped[int] = mapped_column(Integer)
    max_height: Mapped[int] = mapped_column(Integer)
    genres: Mapped[list[str]] = mapped_column(JSON, default=list)
    deleted_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)


class PlanMovie(Base):
    __tablename__ = "plan_movies"

    plan_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("plans.id"), primary_key=True)
    movie_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("catalog_movies.id"), primary_key=True, index=True
    )
    source: Mapped[str] = mapped_column(String(16), default="explicit")  # explicit | genre
    added_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class Subscription(Timestamps, Base):
    __tablename__ = "subscriptions"
    __table_args__ = (
        # One live subscription per user, enforced by the database itself so
        # two racing requests cannot both win.
        Index(
            "uq_subscriptions_live_user",
            "user_id",
            unique=True,
            postgresql_where=text(_live_sql),
            sqlite_where=text(_live_sql),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), index=True)
    plan_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("plans.id"), index=True)
    status: Mapped[str] = mapped_column(String(20))
    current_period_end: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    canceled_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # occurred_at of the newest billing event applied: older ones cannot undo it.
    billing_as_of: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)


class BillingEvent(Base):
    """Every webhook event received, keyed by the provider's event id (idempotency)."""

    __tablename__ = "billing_events"

    event_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    type: Mapped[str] = mapped_column(String(40))
    subscription_id: Mapped[uuid.UUID] = mapped_column(Uuid, index=True)
    amount_cents: Mapped[int] = mapped_column(Integer)
    occurred_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    received_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    outcome: Mapped[str] = mapped_column(String(40))  # applied | stale | ignored_<status>


class CatalogMovie(Base):
    """Projection of catalog movies, fed by `movie.*` events; decisions never
    call the catalog synchronously."""

    __tablename__ = "catalog_movies"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    title: Mapped[str] = mapped_column(String(500), default="")
    genres: Mapped[list[str]] = mapped_column(JSON, default=list)
    age_rating: Mapped[str | None] = mapped_column(String(16), nullable=True)
    status: Mapped[str] = mapped_column(String(16), default="draft")
    height: Mapped[int | None] = mapped_column(Integer, nullable=True)
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class PlaybackProgress(Base):
    """Resume positions, written by playback heartbeats (the newest wins)."""

    __tablename__ = "playback_progress"

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), primary_key=True)
    movie_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    position_s: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class MovieNotification(Base):
    """One "new movie" e-mail per user and movie. The row is the claim: it is
    inserted before the mail is sent and commits only once the mail was
    accepted, so a redelivered event never mails a user twice."""

    __tablename__ = "movie_notifications"

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), primary_key=True)
    movie_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("catalog_movies.id"), primary_key=True)
    sent_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
