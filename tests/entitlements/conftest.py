from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import redis.asyncio as redis_async
from aiohttp.test_utils import TestClient

from entitlements.app import create_app
from entitlements.models import CatalogMovie
from entitlements.resources import RESOURCES
from reelgate.config import Settings
from reelgate.events import STREAM, Event
from tests.api import Api


@pytest.fixture
async def ent_client(aiohttp_client: Any, settings: Settings) -> TestClient:
    return await aiohttp_client(create_app(settings))


@pytest.fixture
def api(ent_client: TestClient) -> Api:
    return Api(ent_client)


@pytest.fixture
async def admin(api: Api, settings: Settings) -> Api:
    return await api.login(settings.admin_email, settings.admin_password)


MoviePublisher = Callable[..., Awaitable[uuid.UUID]]


@pytest.fixture
async def publish_movie(ent_client: TestClient, redis_url: str) -> AsyncIterator[MoviePublisher]:
    """Publish a `movie.*` event on the real stream, as the catalog would, and
    wait until the node's consumer has projected it."""
    client = redis_async.Redis.from_url(redis_url, decode_responses=True)
    resources = ent_client.app[RESOURCES]

    async def publish(
        movie_id: uuid.UUID | None = None,
        *,
        kind: str = "movie.created",
        genres: list[str] | None = None,
        status: str = "ready",
        title: str = "A Movie",
    ) -> uuid.UUID:
        movie_id = movie_id or uuid.uuid4()
        data: dict[str, Any] = {"id": str(movie_id), "title": title, "genres": genres or ["drama"],
                                "status": status, "age_rating": "PG"}
        event = Event(type=kind, data=data)
        await client.xadd(STREAM, {"event": event.to_json()})
        await wait_projected(resources, movie_id, kind, status)
        return movie_id

    yield publish
    await client.aclose()


async def wait_projected(resources: Any, movie_id: uuid.UUID, kind: str, status: str) -> None:
    want_deleted = kind == "movie.deleted"
    for _ in range(200):
        async with resources.db.transaction() as session:
            movie = await session.get(CatalogMovie, movie_id)
            if movie is not None and movie.deleted == want_deleted and (
                want_deleted or kind == "movie.restored" or movie.status == status
            ):
                # The listener invalidates right after its commit; let it finish.
                await asyncio.sleep(0.05)
                return
        await asyncio.sleep(0.025)
    raise AssertionError(f"{kind} for {movie_id} was never projected")


async def entitled_viewer(api: Api, admin: Api, settings: Settings, movie_ids: list[uuid.UUID],
                          *, max_streams: int = 2) -> tuple[Api, dict, dict, dict]:
    """A viewer with a paid, active subscription to a plan holding the movies."""
    plan = await admin.ok("POST", "/api/plans", {"name": "Basic", "price_cents": 999,
                          "currency": "EUR", "max_streams": max_streams, "max_height": 1080,
                          "genres": []}, status=201)
    for movie_id in movie_ids:
        await admin.ok("PUT", f"/api/plans/{plan['id']}/movies/{movie_id}", status=204)
    viewer, user = await api.register_viewer()
    sub = await viewer.ok("POST", "/api/subscriptions", {"plan_id": plan["id"]}, status=201)
    await pay(api, settings, sub["id"])
    return viewer, user, plan, sub


async def pay(api: Api, settings: Settings, subscription_id: str, kind: str = "payment_succeeded",
              event_id: str | None = None, occurred_at: str | None = None) -> tuple[int, Any]:
    from tests.api import sign

    body: dict[str, Any] = {"type": kind, "subscription_id": subscription_id, "amount_cents": 999,
                            "event_id": event_id or uuid.uuid4().hex}
    if occurred_at:
        body["occurred_at"] = occurred_at
    raw = json.dumps(body).encode()
    status, data, _ = await api.call(
        "POST", "/api/billing/events", data=raw,
        headers={"Content-Type": "application/json",
                 "X-Reelgate-Signature": sign(settings.billing_secret, raw)},
    )
    return status, data


@pytest.fixture
async def publish_movie_on(redis_url: str, settings: Settings) -> AsyncIterator[MoviePublisher]:
    """Like `publish_movie`, for tests that run the node as a real server."""
    from reelgate.db import Database

    client = redis_async.Redis.from_url(redis_url, decode_responses=True)
    db = Database(settings.database_url_for("entitlements"))

    class _Probe:
        pass

    probe = _Probe()
    probe.db = db  # type: ignore[attr-defined]

    async def publish(genres: list[str] | None = None) -> uuid.UUID:
        movie_id = uuid.uuid4()
        event = Event(type="movie.created", data={"id": str(movie_id), "title": "M",
                      "genres": genres or ["drama"], "status": "ready"})
        await client.xadd(STREAM, {"event": event.to_json()})
        await wait_projected(probe, movie_id, "movie.created", "ready")
        return movie_id

    yield publish
    await client.aclose()
    await db.dispose()
