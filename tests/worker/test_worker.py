"""The worker's assembly: its HTTP side (probes, metrics) and its start-up
and shut-down, in process."""

from __future__ import annotations

import pytest
import redis.asyncio as redis_async
from prometheus_client.parser import text_string_to_metric_families

from entitlements.worker import WorkerConfigError, create_worker
from reelgate.config import Settings
from reelgate.db import Database
from tests.harness.ports import free_port
from tests.worker.conftest import FAST
from tests.worker.support import SmtpInbox, add_plan, add_subscriber, movie_event, publish_and_settle


async def test_worker_app_runs_the_worker_and_serves_probes_and_metrics(
    aiohttp_client, worker_settings: Settings, smtp: SmtpInbox, db: Database,
    redis: redis_async.Redis,
) -> None:
    worker = create_worker(worker_settings, **FAST)
    client = await aiohttp_client(worker.create_app())  # its start-up starts the listeners
    assert (await client.get("/healthz")).status == 200
    ready = await client.get("/readyz")
    assert ready.status == 200, await ready.text()
    plan = await add_plan(db)
    viewer = await add_subscriber(db, plan)

    await publish_and_settle(redis, movie_event())

    assert [m.rcpt_tos for m in smtp.messages] == [[viewer.email]]
    metrics = await (await client.get("/metrics")).text()
    handled = {
        (s.labels["service"], s.labels["group"], s.labels["type"], s.labels["outcome"])
        for family in text_string_to_metric_families(metrics)
        if family.name == "reelgate_events_handled"
        for s in family.samples
        if s.name == "reelgate_events_handled_total" and s.value > 0
    }
    assert ("worker", "notifications", "movie.created", "ok") in handled
    await client.close()  # runs the clean-up: listeners stop, connections close
    assert worker.tasks == []


async def test_a_worker_started_while_redis_is_down_is_not_ready_and_stops(
    aiohttp_client, worker_settings: Settings
) -> None:
    down = worker_settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{free_port()}/0"})
    worker = create_worker(down, **FAST)
    client = await aiohttp_client(worker.create_app())

    ready = await client.get("/readyz")
    assert ready.status == 503
    assert (await ready.json())["failing"] == {"redis": "ConnectionError"}
    assert (await client.get("/healthz")).status == 200
    await client.close()
    assert worker.tasks == []


@pytest.mark.parametrize("url", ["", "   ", "http://127.0.0.1:6379"])
def test_the_worker_needs_a_redis_url(worker_settings: Settings, url: str) -> None:
    with pytest.raises(WorkerConfigError, match="REELGATE_REDIS_URL"):
        create_worker(worker_settings.model_copy(update={"redis_url": url}))
