"""The list envelope every API uses: `{items, page, per_page, total}`."""

from __future__ import annotations

from typing import Annotated, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

T = TypeVar("T")


class PageQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")

    page: Annotated[int, Field(ge=1, le=1_000_000)] = 1
    per_page: Annotated[int, Field(ge=1, le=100)] = 20

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.per_page


class Page(BaseModel, Generic[T]):
    items: list[T]
    page: int
    per_page: int
    total: int
