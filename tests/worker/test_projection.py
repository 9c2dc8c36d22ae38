"""The plan-membership listener in the worker: a new movie joins every plan
whose genres match, through real events."""

from __future__ import annotations

import uuid

import redis.asyncio as redis_async
from sqlalchemy import select

from entitlements.models import CatalogMovie, PlanMovie
from reelgate.db import Database
from tests.worker.support import add_plan, movie_event, publish_and_settle

ENTITLEMENTS = ("entitlements",)


async def plans_of(db: Database, movie_id: uuid.UUID) -> dict[uuid.UUID, str]:
    async with db.transaction() as session:
        rows = await session.execute(
            select(PlanMovie.plan_id, PlanMovie.source).where(PlanMovie.movie_id == movie_id)
        )
        return {row.plan_id: row.source for row in rows}


async def test_a_new_movie_joins_the_plans_whose_genres_match(
    worker, db: Database, redis: redis_async.Redis
) -> None:
    drama = await add_plan(db, "Drama", ["drama"])
    everything = await add_plan(db, "All", ["*"])
    comedy = await add_plan(db, "Comedy", ["comedy"])
    manual = await add_plan(db, "Hand-picked", [])
    retired = await add_plan(db, "Old drama", ["drama"], deleted=True)

    thriller = movie_event(genres=["thriller", "drama"], status="draft", title="Undertow")
    thriller_id = uuid.UUID(thriller.data["id"])
    await publish_and_settle(redis, thriller, ENTITLEMENTS)
    await publish_and_settle(redis, thriller, ENTITLEMENTS)  # redelivered: still one join each

    assert await plans_of(db, thriller_id) == {drama: "genre", everything: "genre"}
    async with db.transaction() as session:
        movie = await session.get(CatalogMovie, thriller_id)
    assert movie is not None
    assert (movie.title, movie.genres, movie.status) == ("Undertow", ["thriller", "drama"], "draft")

    documentary = movie_event(genres=["documentary"])
    await publish_and_settle(redis, documentary, ENTITLEMENTS)
    assert await plans_of(db, uuid.UUID(documentary.data["id"])) == {everything: "genre"}
    for plan in (comedy, manual, retired):
        assert plan not in await plans_of(db, thriller_id)


async def test_later_events_do_not_join_plans(
    worker, db: Database, redis: redis_async.Redis
) -> None:
    """Only `movie.created` joins by genre; an update that adds a genre leaves
    the plans to the admin (joins by hand stay the admin's decision)."""
    created = movie_event(genres=["comedy"])
    movie_id = uuid.UUID(created.data["id"])
    await publish_and_settle(redis, created, ENTITLEMENTS)
    drama = await add_plan(db, "Drama", ["drama"])

    await publish_and_settle(
        redis, movie_event("movie.updated", movie_id, genres=["comedy", "drama"]), ENTITLEMENTS
    )

    assert drama not in await plans_of(db, movie_id)
    async with db.transaction() as session:
        movie = await session.get(CatalogMovie, movie_id)
    assert movie is not None and movie.genres == ["comedy", "drama"]
