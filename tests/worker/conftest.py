"""Fixtures of the worker tests: a real SMTP server (aiosmtpd), the worker
against the real PostgreSQL and Redis, with short retry delays."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
import redis.asyncio as redis_async

from entitlements.worker import Worker, create_worker
from reelgate.config import Settings
from reelgate.db import Database
from tests.worker.support import SmtpInbox

PUBLIC_URL = "https://watch.example.test"
FAST = {"backoff_base_s": 0.05, "backoff_max_s": 0.2, "block_ms": 50, "max_attempts": 3}


@pytest.fixture
def smtp() -> Iterator[SmtpInbox]:
    inbox = SmtpInbox()
    inbox.start()
    try:
        yield inbox
    finally:
        inbox.stop()


@pytest.fixture
def worker_settings(settings: Settings, smtp: SmtpInbox) -> Settings:
    return settings.model_copy(update={"smtp_url": smtp.url, "public_url": PUBLIC_URL + "/"})


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[Database]:
    database = Database(settings.database_url_for("entitlements"))
    yield database
    await database.dispose()


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[redis_async.Redis]:
    client = redis_async.Redis.from_url(redis_url, decode_responses=True)
    yield client
    await client.aclose()


StartWorker = Callable[..., Awaitable[Worker]]


@pytest.fixture
async def start_worker(worker_settings: Settings) -> AsyncIterator[StartWorker]:
    """Start workers (short backoff); every one is stopped at the end."""
    started: list[Worker] = []

    async def start(settings: Settings | None = None, **options: Any) -> Worker:
        worker = create_worker(settings or worker_settings, **{**FAST, **options})
        await worker.start()
        started.append(worker)
        return worker

    yield start
    for worker in started:
        await worker.stop()


@pytest.fixture
async def worker(start_worker: StartWorker) -> Worker:
    return await start_worker()
