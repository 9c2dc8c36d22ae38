"""Request and response shapes of the entitlements API (validated at the edge)."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    field_validator,
)

from entitlements.models import ALL_STATUSES
from reelgate.openapi import Problem, without_null
from reelgate.pagination import PageQuery


def _without_nul(value: object) -> object:
    if isinstance(value, str) and "\x00" in value:
        raise ValueError("may not contain NUL characters")
    if isinstance(value, list):
        for item in value:
            _without_nul(item)
    return value


class Strict(BaseModel):
    """Request bodies: unknown fields are errors, not silently dropped."""

    model_config = ConfigDict(extra="forbid")

    # No field has a use for NUL, and PostgreSQL text cannot store it.
    @field_validator("*", mode="after")
    @classmethod
    def _no_nul(cls, value: object) -> object:
        return _without_nul(value)


class Patch(Strict):
    """Partial updates: a field left out stays as it is. `null` is not a value
    for any of them (the columns are NOT NULL), so it is refused here rather
    than reaching the database (and the API description offers no null)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=without_null())

    # "after": a "before" validator would make strict JSON input (datetimes
    # as strings) be re-validated in Python mode and refused.
    @field_validator("*", mode="after")
    @classmethod
    def _not_null(cls, value: object) -> object:
        if value is None:
            raise ValueError("may not be null; leave the field out to keep it unchanged")
        return value


class Query(BaseModel):
    model_config = ConfigDict(extra="ignore")


def _normalized_email(value: str) -> str:
    return value.strip().lower()


Email = Annotated[EmailStr, AfterValidator(_normalized_email)]
Password = Annotated[str, Field(min_length=8, max_length=256)]
Name = Annotated[str, Field(min_length=1, max_length=200)]
Role = Literal["admin", "viewer"]
_GENRE_RE = re.compile(r"^(\*|[a-z0-9][a-z0-9-]{0,39})$")


def _genre_list(values: list[str]) -> list[str]:
    for value in values:
        if not _GENRE_RE.match(value):
            raise ValueError(f"{value!r} is not a genre (lowercase words with dashes, or '*')")
    return sorted(set(values))


Genre = Annotated[str, Field(pattern=_GENRE_RE.pattern)]
GenreList = Annotated[list[Genre], Field(max_length=50), AfterValidator(_genre_list)]

# Far from datetime's limits, so that period arithmetic can never overflow.
_EARLIEST = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_LATEST = dt.datetime(9000, 1, 1, tzinfo=dt.UTC)


def _plausible_utc(value: dt.datetime) -> dt.datetime:
    try:
        value = value.astimezone(dt.UTC)
    except OverflowError:
        raise ValueError("is out of range") from None
    if not _EARLIEST <= value < _LATEST:
        raise ValueError("must be between 1970 and 9000")
    return value


Timestamp = Annotated[AwareDatetime, AfterValidator(_plausible_utc)]
Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$")]
Status = Literal[ALL_STATUSES]  # type: ignore[valid-type]


# Accounts


class RegisterIn(Strict):
    email: Email
    password: Password
    name: Name


class LoginIn(Strict):
    email: Annotated[str, Field(min_length=1, max_length=320)]
    password: Annotated[str, Field(min_length=1, max_length=256)]


class RefreshIn(Strict):
    refresh_token: Annotated[str, Field(min_length=1, max_length=200)]


class LogoutIn(Strict):
    refresh_token: Annotated[str | None, Field(max_length=200)] = None


class Jwk(BaseModel):
    model_config = ConfigDict(extra="allow")

    kty: str
    kid: str
    alg: str | None = None
    use: str | None = None


class Jwks(BaseModel):
    keys: list[Jwk]


class TokenPair(BaseModel):
    access_token: str
    refresh_token: str
    token_type: Literal["Bearer"] = "Bearer"
    expires_in: int


class UserOut(BaseModel):
    id: uuid.UUID
    email: str
    name: str
    role: Role
    created_at: dt.datetime
    updated_at: dt.datetime
    deleted_at: dt.datetime | None = None


class UserCreateIn(Strict):
    email: Email
    password: Password
    name: Name
    role: Role = "viewer"


class UserUpdateIn(Patch):
    email: Email | None = None
    name: Name | None = None
    role: Role | None = None
    password: Password | None = None


class MeUpdateIn(Patch):
    # A new password needs the current one (checked by the route, with the field named).
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra=lambda schema, cls: (
            without_null()(schema, cls),
            schema.update(dependentRequired={"password": ["current_password"]}),
        ),
    )

    name: Name | None = None
    password: Password | None = None
    current_password: Annotated[str | None, Field(max_length=256)] = None


# Plans


class PlanIn(Strict):
    name: Name
    price_cents: Annotated[int, Field(ge=0, le=10_000_000)]
    currency: Currency = "EUR"
    max_streams: Annotated[int, Field(ge=1, le=100)]
    max_height: Annotated[int, Field(ge=144, le=8640)]
    genres: GenreList = Field(default_factory=list)


class PlanPatch(Patch):
    name: Name | None = None
    price_cents: Annotated[int | None, Field(ge=0, le=10_000_000)] = None
    currency: Currency | None = None
    max_streams: Annotated[int | None, Field(ge=1, le=100)] = None
    max_height: Annotated[int | None, Field(ge=144, le=8640)] = None
    genres: GenreList | None = None


class PlanOut(BaseModel):
    id: uuid.UUID
    name: str
    price_cents: int
    currency: str
    max_streams: int
    max_height: int
    genres: list[str]
    created_at: dt.datetime
    updated_at: dt.datetime
    deleted_at: dt.datetime | None = None


class PlanMoviesOut(BaseModel):
    plan_id: uuid.UUID
    movie_ids: list[uuid.UUID]


# Subscriptions and billing


class SubscriptionIn(Strict):
    plan_id: uuid.UUID
    user_id: uuid.UUID | None = None


class SubscriptionPatch(Patch):
    plan_id: uuid.UUID | None = None
    status: Status | None = None
    current_period_end: Timestamp | None = None


class SubscriptionOut(BaseModel):
    id: uuid.UUID
    user_id: uuid.UUID
    plan_id: uuid.UUID
    status: str
    current_period_end: dt.datetime | None
    canceled_at: dt.datetime | None = None
    created_at: dt.datetime
    updated_at: dt.datetime


class BillingEventIn(Strict):
    type: Literal["payment_succeeded", "payment_failed"]
    subscription_id: uuid.UUID
    amount_cents: Annotated[int, Field(ge=0, le=100_000_000)]
    event_id: Annotated[str, Field(min_length=1, max_length=200)]
    # When the provider saw the payment; orders events that arrive out of order.
    occurred_at: Timestamp | None = None


class BillingResult(BaseModel):
    event_id: str
    outcome: str
    subscription: SubscriptionOut | None = None


# Decisions


Reason = Literal[
    "ok", "no_subscription", "subscription_inactive", "not_in_plan", "movie_unavailable",
    "user_disabled",
]


class Decision(BaseModel):
    allowed: bool
    reason: Reason
    max_height: int | None = None


class CheckQuery(Query):
    user_id: uuid.UUID
    movie_id: uuid.UUID


class ListQuery(PageQuery):
    with_deleted: bool = False


class DeletedQuery(Query):
    """Reads of one row: soft-deleted rows are shown to admins who ask."""

    with_deleted: bool = False


class SubscriptionListQuery(PageQuery):
    user_id: uuid.UUID | None = None
    status: Status | None = None


class MyMovie(BaseModel):
    id: uuid.UUID
    title: str
    genres: list[str]
    age_rating: str | None


# Playback


class PlaybackIn(Strict):
    movie_id: uuid.UUID
    # Stable per player/device: a player that reconnects with the same id gets
    # its own live session back instead of being counted twice.
    client_id: Annotated[str, Field(max_length=100, pattern=r"^[A-Za-z0-9._:-]*$")] = ""


class HeartbeatIn(Strict):
    position_s: Annotated[float, Field(ge=0, le=1_000_000)]


class SessionOut(BaseModel):
    session_id: str
    movie_id: str
    client_id: str
    started_at: dt.datetime
    expires_at: dt.datetime


class PlaybackOut(BaseModel):
    session_id: str
    token: str
    stream_url: str
    expires_at: dt.datetime
    heartbeat_interval_s: int
    session_expires_at: dt.datetime
    reused: bool


class HeartbeatOut(BaseModel):
    session_id: str
    position_s: float
    session_expires_at: dt.datetime


class ProgressOut(BaseModel):
    movie_id: uuid.UUID
    position_s: float
    updated_at: dt.datetime


# Problems with more members than the shared `Problem` (documentation of the 403/409 bodies)


class NotEntitledProblem(Problem):
    reason: Reason


class TooManyStreamsProblem(Problem):
    sessions: list[SessionOut]
