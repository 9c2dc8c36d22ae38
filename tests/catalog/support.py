"""Helpers shared by the catalog tests: problem assertions, factories, and
looks at what is left in storage, the outbox and the event stream."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import redis.asyncio as redis_async
from sqlalchemy import func, select

from catalog.models import Movie, OutboxEvent
from catalog.resources import Resources
from reelgate.events import STREAM
from tests.api import Api

PROBLEM_FIELDS = {"type", "title", "status", "detail", "code"}


def assert_problem(response: tuple[int, Any, Any], status: int, code: str | None = None) -> dict:
    got, data, headers = response
    assert got == status, f"expected {status}, got {got}: {data!r}"
    assert headers["Content-Type"].startswith("application/problem+json"), headers["Content-Type"]
    assert PROBLEM_FIELDS <= data.keys(), data
    assert data["status"] == status
    if code is not None:
        assert data["code"] == code, data
    return data


def assert_invalid(response: tuple[int, Any, Any], *fields: str) -> list[dict]:
    """422 `validation_failed` naming each of `fields`."""
    data = assert_problem(response, 422, "validation_failed")
    errors = data["errors"]
    assert errors and all(set(error) == {"field", "message"} for error in errors), errors
    named = {error["field"] for error in errors}
    assert set(fields) <= named, errors
    return errors


def assert_unauthenticated(response: tuple[int, Any, Any]) -> None:
    assert_problem(response, 401, "invalid_token")
    assert response[2]["WWW-Authenticate"] == 'Bearer error="invalid_token"'


async def make_actor(admin: Api, name: str = "Ada Actor", **fields: Any) -> dict:
    return await admin.ok("POST", "/api/actors", {"name": name, **fields}, status=201)


async def make_movie(admin: Api, title: str = "A Movie", **fields: Any) -> dict:
    return await admin.ok("POST", "/api/movies", {"title": title, **fields}, status=201)


async def upload(
    api: Api, movie_id: str, data: bytes, headers: dict[str, str] | None = None
) -> tuple[int, Any, Any]:
    extra = {"Content-Type": "application/octet-stream", **(headers or {})}
    return await api.call("PUT", f"/api/movies/{movie_id}/media", data=data, headers=extra)


def stored_files(resources: Resources) -> list[Path]:
    """Every file under the storage root: objects and temp files alike."""
    root = Path(resources.storage.root)  # type: ignore[attr-defined]
    return sorted(path for path in root.rglob("*") if path.is_file())


async def outbox_rows(resources: Resources) -> list[OutboxEvent]:
    async with resources.db.transaction() as session:
        return list(await session.scalars(select(OutboxEvent).order_by(OutboxEvent.seq)))


async def movie_count(resources: Resources) -> int:
    async with resources.db.transaction() as session:
        return int(await session.scalar(select(func.count()).select_from(Movie)) or 0)


async def stream_events(client: redis_async.Redis) -> list[dict]:
    entries = await client.xrange(STREAM)
    return [json.loads(fields["event"]) for _, fields in entries]


async def wait_events(client: redis_async.Redis, count: int, timeout_s: float = 10.0) -> list[dict]:
    """The stream's events once there are at least `count` of them."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        found = await stream_events(client)
        if len(found) >= count or asyncio.get_running_loop().time() > deadline:
            return found
        await asyncio.sleep(0.05)
