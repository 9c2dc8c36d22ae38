"""The outbox: events survive a Redis outage, go out once and in order, are
never sent for a rolled-back write, and several relays do not interleave."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest
import redis.asyncio as redis_async

from catalog import schemas, service
from catalog.app import create_app
from catalog.events import OutboxRelay
from catalog.resources import RESOURCES, Resources
from reelgate.config import Settings
from reelgate.events import Event, publish
from reelgate.tokens import TokenSigner
from tests.api import Api
from tests.catalog.support import make_movie, outbox_rows, stream_events, wait_events
from tests.harness.services import RedisServer


@pytest.fixture
def own_redis() -> Any:
    """A Redis of this test's own, to stop and start without disturbing the session one."""
    server = RedisServer.start()
    yield server
    server.stop()


async def test_events_wait_out_a_redis_outage(
    aiohttp_client: Any, settings: Settings, signer: TokenSigner, own_redis: RedisServer
) -> None:
    client = await aiohttp_client(
        create_app(settings.model_copy(update={"redis_url": own_redis.url}))
    )
    admin = Api(client, signer.access_token(uuid.uuid4(), "admin", 900))
    await asyncio.to_thread(own_redis.pause)
    ids = [(await make_movie(admin, f"Movie {n}"))["id"] for n in range(3)]  # 201 each
    await asyncio.sleep(0.3)  # the relay has tried, and failed
    assert all(row.sent_at is None for row in await outbox_rows(client.app[RESOURCES]))
    await asyncio.to_thread(own_redis.resume)
    redis = redis_async.Redis.from_url(own_redis.url, decode_responses=True)
    try:
        events = await wait_events(redis, 3, timeout_s=20)
        await asyncio.sleep(1.0)  # a duplicate would show up by now
        events = await stream_events(redis)
    finally:
        await redis.aclose()
    assert [(e["type"], e["data"]["id"]) for e in events] == [("movie.created", i) for i in ids]
    assert len({e["id"] for e in events}) == 3
    assert all(row.sent_at is not None for row in await outbox_rows(client.app[RESOURCES]))


async def test_a_rolled_back_write_sends_nothing(
    admin: Api, resources: Resources, stream: redis_async.Redis
) -> None:
    with pytest.raises(RuntimeError):
        async with resources.writing() as session:
            await service.create_movie(session, schemas.MovieIn(title="Ghost"))
            raise RuntimeError("the transaction fails after the event was queued")
    real = await make_movie(admin, "Real")
    events = await wait_events(stream, 1)
    await asyncio.sleep(0.6)  # more than one poll interval
    events = await stream_events(stream)
    assert [e["data"]["title"] for e in events] == ["Real"]
    rows = await outbox_rows(resources)
    assert [Event.from_json(row.envelope).data["id"] for row in rows] == [real["id"]]


@pytest.fixture
def catalog_settings(settings: Settings, signer: TokenSigner) -> Settings:
    # A slow poll: only the post-commit wake-up can deliver quickly.
    return settings.model_copy(update={"outbox_poll_interval_s": 5.0})


async def test_the_relay_wakes_right_after_a_commit(admin: Api, stream: redis_async.Redis) -> None:
    await wait_events(stream, 0)
    started = time.perf_counter()
    await make_movie(admin, "Prompt")
    events = await wait_events(stream, 1, timeout_s=4)
    assert len(events) == 1
    assert time.perf_counter() - started < 1.0


async def test_concurrent_relays_deliver_once_in_order(
    resources: Resources, redis_url: str, stream: redis_async.Redis
) -> None:
    # Writers racing each other, then three relays racing each other
    # (the node's own and two more, as if from other catalog processes).
    async def write(n: int) -> None:
        async with resources.db.transaction() as session:
            await service.create_movie(session, schemas.MovieIn(title=f"M{n:02d}"))

    await asyncio.gather(*(write(n) for n in range(30)))
    clients = [redis_async.Redis.from_url(redis_url, decode_responses=True) for _ in range(2)]

    def sender(client: redis_async.Redis) -> Any:
        async def send(event: Event) -> None:
            await publish(client, event, service="catalog")

        return send

    relays = [
        OutboxRelay(resources.db, sender(c), poll_interval_s=0.05, batch_size=7) for c in clients
    ]
    tasks = [asyncio.create_task(relay.run()) for relay in relays]
    resources.wake_relay()
    try:
        events = await wait_events(stream, 30)
        await asyncio.sleep(0.3)
        events = await stream_events(stream)
    finally:
        for relay in relays:
            relay.stop()
        await asyncio.gather(*tasks)
        for client in clients:
            await client.aclose()
    rows = await outbox_rows(resources)
    by_seq = [Event.from_json(row.envelope).id for row in rows]
    assert [e["id"] for e in events] == by_seq  # each once, in sequence order
    assert all(row.sent_at is not None for row in rows)


async def test_sent_rows_are_purged_after_the_retention(
    admin: Api, resources: Resources, stream: redis_async.Redis
) -> None:
    await make_movie(admin, "Old news")
    await wait_events(stream, 1)
    assert resources.relay is not None
    for _ in range(100):  # marked sent in the relay's transaction, just after XADD
        if all(row.sent_at is not None for row in await outbox_rows(resources)):
            break
        await asyncio.sleep(0.02)
    assert await resources.relay.purge_sent(older_than_s=3600) == 0
    assert await resources.relay.purge_sent(older_than_s=0) == 1
    assert await outbox_rows(resources) == []
