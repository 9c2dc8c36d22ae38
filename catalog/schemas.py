"""Request and response shapes of the catalog API (validated at the edge)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any, Literal

import pycountry
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from catalog.models import GENRES, MOVIE_STATUSES
from reelgate.openapi import without_null
from reelgate.pagination import PageQuery


class Strict(BaseModel):
    """Request bodies: unknown fields are errors, not silently dropped."""

    model_config = ConfigDict(extra="forbid")


# ---------------------------------------------------------------- field types


def _known_genres(values: list[str]) -> list[str]:
    unknown = [value for value in values if value not in GENRES]
    if unknown:
        raise ValueError(f"unknown genre(s) {unknown}; see GET /api/genres")
    # A set, shown in vocabulary order whatever order the client used.
    return [genre for genre in GENRES if genre in values]


def _country_code(value: str) -> str:
    code = value.upper()
    # pycountry carries the ISO 3166-1 list itself, so codes are checked
    # against the standard, not just the two-letter shape.
    if len(code) != 2 or pycountry.countries.get(alpha_2=code) is None:
        raise ValueError(f"{value!r} is not an ISO 3166-1 alpha-2 country code")
    return code


def _past_date(value: dt.date) -> dt.date:
    if value > dt.date.today() or value.year < 1800:
        raise ValueError("must be a date between 1800-01-01 and today")
    return value


def _stripped(value: str) -> str:
    value = value.strip()
    if not value:
        raise ValueError("must not be blank")
    return value


# Not blank: at least one character that is not white space (also checked after stripping).
_NOT_BLANK = r"\S"
Title = Annotated[
    str, Field(min_length=1, max_length=300, pattern=_NOT_BLANK), AfterValidator(_stripped)
]
Description = Annotated[str, Field(max_length=10_000)]
ReleaseYear = Annotated[int, Field(ge=1878, le=2100)]  # 1878: the first motion picture
GenreList = Annotated[
    list[str],
    Field(max_length=len(GENRES), json_schema_extra={"items": {"type": "string", "enum": list(GENRES)}}),
    AfterValidator(_known_genres),
]
AgeRating = Annotated[str, Field(pattern=r"^[A-Za-z0-9+-]{1,16}$")]
PersonName = Annotated[
    str, Field(min_length=1, max_length=200, pattern=_NOT_BLANK), AfterValidator(_stripped)
]
Character = Annotated[
    str, Field(min_length=1, max_length=200, pattern=_NOT_BLANK), AfterValidator(_stripped)
]
CountryCode = Annotated[
    str,
    Field(pattern=r"^[A-Za-z]{2}$", description="ISO 3166-1 alpha-2 (any case)"),
    AfterValidator(_country_code),
]
BirthDate = Annotated[
    dt.date, Field(description="Between 1800-01-01 and today"), AfterValidator(_past_date)
]
ActorIds = Annotated[list[uuid.UUID], Field(max_length=500)]

MovieSort = Literal["title", "-title", "release_year", "-release_year", "created_at", "-created_at"]
ActorSort = Literal["name", "-name", "created_at", "-created_at"]


# ---------------------------------------------------------------- movies


class CastIn(Strict):
    actor_id: uuid.UUID
    character: Character | None = None


def _check_distinct(ids: list[uuid.UUID]) -> None:
    if len(set(ids)) != len(ids):
        raise ValueError("an actor appears at most once in a cast")


class _CastFields(Strict):
    """The cast comes as `actor_ids` (contract) or `cast` (with character names)."""

    actor_ids: ActorIds | None = None
    cast: Annotated[list[CastIn] | None, Field(max_length=500)] = None

    @field_validator("actor_ids")
    @classmethod
    def _distinct_ids(cls, value: list[uuid.UUID] | None) -> list[uuid.UUID] | None:
        _check_distinct(value or [])
        return value

    @field_validator("cast")
    @classmethod
    def _distinct_members(cls, value: list[CastIn] | None) -> list[CastIn] | None:
        _check_distinct([member.actor_id for member in value or []])
        return value

    @model_validator(mode="after")
    def _one_cast_form(self) -> Any:
        if self.actor_ids is not None and self.cast is not None:
            raise ValueError("give either actor_ids or cast, not both")
        return self

    def cast_given(self) -> bool:
        return "actor_ids" in self.model_fields_set or "cast" in self.model_fields_set

    def cast_entries(self) -> list[CastIn]:
        if self.cast is not None:
            return list(self.cast)
        return [CastIn(actor_id=actor_id) for actor_id in self.actor_ids or []]


class MovieIn(_CastFields):
    """POST and PUT: the whole editable movie (PUT resets what is left out)."""

    title: Title
    description: Description = ""
    release_year: ReleaseYear | None = None
    genres: GenreList = Field(default_factory=list)
    age_rating: AgeRating | None = None


_MOVIE_NOT_NULL = ("title", "description", "genres")


class MoviePatch(_CastFields):
    model_config = ConfigDict(extra="forbid", json_schema_extra=without_null(*_MOVIE_NOT_NULL))

    title: Title | None = None
    description: Description | None = None
    release_year: ReleaseYear | None = None
    genres: GenreList | None = None
    age_rating: AgeRating | None = None

    @field_validator(*_MOVIE_NOT_NULL)
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        # Left out means "unchanged"; an explicit null would empty a required field.
        if value is None:
            raise ValueError("may be left out, but not null")
        return value


class MediaOut(BaseModel):
    size_bytes: int
    content_type: str
    sha256: str
    width: int
    height: int
    video_codec: str
    audio_codec: str | None
    bitrate: int | None
    duration_s: float


class CastOut(BaseModel):
    id: uuid.UUID
    name: str
    birth_date: dt.date | None
    nationality: str | None
    character: str | None


class MovieOut(BaseModel):
    id: uuid.UUID
    title: str
    description: str
    release_year: int | None
    genres: list[str]
    age_rating: str | None
    duration_s: float | None
    status: str
    media: MediaOut | None
    actors: list[CastOut]
    poster_url: str | None
    created_at: dt.datetime
    updated_at: dt.datetime
    deleted_at: dt.datetime | None


class MovieQuery(PageQuery):
    q: Annotated[str | None, Field(min_length=1, max_length=200)] = None
    genre: Literal[GENRES] | None = None  # type: ignore[valid-type]
    year: ReleaseYear | None = None
    actor_id: uuid.UUID | None = None
    status: Literal[MOVIE_STATUSES] | None = None  # type: ignore[valid-type]
    sort: MovieSort | None = None  # default: relevance with q, else -created_at
    with_deleted: bool = False


# ---------------------------------------------------------------- actors


class ActorIn(Strict):
    name: PersonName
    birth_date: BirthDate | None = None
    nationality: CountryCode | None = None


class ActorPatch(Strict):
    model_config = ConfigDict(extra="forbid", json_schema_extra=without_null("name"))

    name: PersonName | None = None
    birth_date: BirthDate | None = None
    nationality: CountryCode | None = None

    @field_validator("name")
    @classmethod
    def _not_null(cls, value: str | None) -> str:
        if value is None:
            raise ValueError("may be left out, but not null")
        return value


class ActorOut(BaseModel):
    id: uuid.UUID
    name: str
    birth_date: dt.date | None
    nationality: str | None
    created_at: dt.datetime
    updated_at: dt.datetime
    deleted_at: dt.datetime | None


class ActorQuery(PageQuery):
    q: Annotated[str | None, Field(min_length=1, max_length=200)] = None
    nationality: CountryCode | None = None
    sort: ActorSort = "name"
    with_deleted: bool = False


class DeletedQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")

    with_deleted: bool = False


class GenresOut(BaseModel):
    items: list[str]


class InternalMediaOut(BaseModel):
    movie_id: uuid.UUID
    key: str
    size_bytes: int | None
    content_type: str | None
    sha256: str | None
