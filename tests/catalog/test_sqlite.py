"""The embedded demo's backend: the same node on SQLite (migrations, LIKE
search fallback, indexed genre filter, ingest and the outbox relay)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import redis.asyncio as redis_async

from catalog.app import create_app
from reelgate.config import Settings
from reelgate.db import make_engine
from reelgate.migrate import upgrade
from reelgate.tokens import TokenSigner
from tests.api import Api
from tests.catalog.conftest import Videos
from tests.catalog.support import make_actor, make_movie, wait_events


async def test_catalog_on_sqlite(
    aiohttp_client: Any, settings: Settings, signer: TokenSigner, tmp_path: Path,
    videos: Videos, stream: redis_async.Redis,
) -> None:  # fmt: skip
    url = f"sqlite+aiosqlite:///{tmp_path / 'demo.db'}"
    engine = make_engine(url)
    await upgrade(engine, "catalog")
    await engine.dispose()
    client = await aiohttp_client(create_app(settings.model_copy(update={"database_url": url})))
    api = Api(client)
    admin = api.as_(signer.access_token(uuid.uuid4(), "admin", 900))

    actor = await make_actor(admin, "Tom Hanks", nationality="US")
    await make_movie(
        admin, "Quiet Evening", description="A storm at 100% strength", genres=["drama"]
    )
    storm = await make_movie(admin, "The Storm", genres=["drama", "war"], actor_ids=[actor["id"]])
    await make_movie(admin, "Sunny", genres=["comedy"])

    def titles(page: dict) -> list[str]:
        return [m["title"] for m in page["items"]]

    assert titles(await api.ok("GET", "/api/movies?q=storm")) == ["The Storm", "Quiet Evening"]
    assert titles(await api.ok("GET", "/api/movies?q=100%25")) == ["Quiet Evening"]
    assert titles(await api.ok("GET", "/api/movies?q=_")) == []  # wildcards are literal
    assert titles(await api.ok("GET", "/api/movies?genre=drama&sort=-title")) == [
        "The Storm",
        "Quiet Evening",
    ]
    assert titles(await api.ok("GET", f"/api/movies?actor_id={actor['id']}")) == ["The Storm"]
    assert (await api.ok("GET", "/api/actors?q=han"))["total"] == 1

    ready = await admin.ok("PUT", f"/api/movies/{storm['id']}/media", data=videos.mp4.read_bytes())
    assert (ready["status"], ready["media"]["height"]) == ("ready", 240)
    events = await wait_events(stream, 4)
    assert [e["type"] for e in events] == ["movie.created"] * 3 + ["movie.media_ready"]
