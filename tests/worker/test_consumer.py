"""StreamConsumer on the real Redis: acknowledgement after handling, retries
with backoff, the dead-letter stream, and entries of dead consumers."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import redis.asyncio as redis_async

from reelgate.events import DEAD_LETTER_STREAM, STREAM, Event, StreamConsumer, publish
from tests.worker.support import publish_raw, wait_for

GROUP = "test-group"


class Recorder:
    """A handler that records every call and fails while `failing` says so."""

    def __init__(self, failing: Callable[[Event], bool] = lambda _e: False) -> None:
        self.failing = failing
        self.calls: list[tuple[float, Event]] = []

    async def __call__(self, event: Event) -> None:
        self.calls.append((time.monotonic(), event))
        if self.failing(event):
            raise ValueError(f"cannot handle {event.type}")


def consumer(
    redis: redis_async.Redis, handler: Callable[[Event], Awaitable[None]], **options: Any
) -> StreamConsumer:
    settings = {"backoff_base_s": 0.05, "backoff_max_s": 1.0, "block_ms": 20, "max_attempts": 3}
    return StreamConsumer(redis, GROUP, handler, **{**settings, **options})


async def run_until(worker: StreamConsumer, done: Callable[[], Awaitable[bool]], what: str) -> None:
    task = asyncio.create_task(worker.run())
    try:
        await wait_for(done, what, timeout_s=10)
    finally:
        worker.stop()
        await asyncio.wait_for(task, 5)


async def pending_count(redis: redis_async.Redis) -> int:
    return int((await redis.xpending(STREAM, GROUP))["pending"])


async def test_a_handler_that_always_fails_is_tried_max_attempts_times_then_parked(
    redis: redis_async.Redis,
) -> None:
    handler = Recorder(failing=lambda _e: True)
    worker = consumer(redis, handler)
    event = Event(type="movie.updated", data={"id": "x"})
    entry_id = await publish(redis, event)

    async def parked() -> bool:
        return await redis.xlen(DEAD_LETTER_STREAM) == 1

    await run_until(worker, parked, "the entry on the dead-letter stream")

    assert len(handler.calls) == 3
    gaps = [b[0] - a[0] for a, b in zip(handler.calls, handler.calls[1:])]
    assert gaps[0] >= 0.05 and gaps[1] >= 0.1, gaps  # exponential backoff
    ((_, fields),) = await redis.xrange(DEAD_LETTER_STREAM)
    assert fields["group"] == GROUP and fields["entry_id"] == entry_id
    assert "ValueError" in fields["reason"]
    assert Event.from_json(fields["event"]) == event
    assert await pending_count(redis) == 0


async def test_a_failure_then_success_is_handled_and_acknowledged(redis: redis_async.Redis) -> None:
    attempts = {"n": 0}

    def fail_first(_event: Event) -> bool:
        attempts["n"] += 1
        return attempts["n"] == 1

    handler = Recorder(failing=fail_first)
    worker = consumer(redis, handler)
    await publish(redis, Event(type="movie.updated", data={}))

    async def acknowledged() -> bool:
        return len(handler.calls) == 2 and await pending_count(redis) == 0

    await run_until(worker, acknowledged, "the retry to succeed")
    assert await redis.xlen(DEAD_LETTER_STREAM) == 0


@pytest.mark.parametrize(
    "fields",
    [
        {"event": "{not json"},
        {"event": "[1, 2]"},
        {"event": json.dumps({"type": "movie.created"})},  # no id, data, occurred_at
        {"event": json.dumps({"id": "1", "type": "t", "occurred_at": "now", "data": 7})},
        {"something": "else"},
    ],
    ids=["not-json", "not-an-object", "missing-keys", "data-not-an-object", "no-event-field"],
)
async def test_unparseable_entries_are_parked_without_reaching_the_handler(
    redis: redis_async.Redis, fields: dict[str, str]
) -> None:
    handler = Recorder()
    worker = consumer(redis, handler)
    bad_id = await publish_raw(redis, fields)
    await publish(redis, Event(type="movie.updated", data={}))

    async def done() -> bool:
        return len(handler.calls) == 1 and await pending_count(redis) == 0

    await run_until(worker, done, "both entries to settle")
    ((_, parked),) = await redis.xrange(DEAD_LETTER_STREAM)
    assert parked["entry_id"] == bad_id and parked["reason"] == "unparseable envelope"
    assert parked["event"] == fields.get("event", "")
    assert [event.type for _, event in handler.calls] == ["movie.updated"]


async def test_an_entry_left_pending_by_a_dead_consumer_is_reclaimed(
    redis: redis_async.Redis,
) -> None:
    await redis.xgroup_create(STREAM, GROUP, id="$", mkstream=True)
    event = Event(type="movie.created", data={"id": "m1"})
    entry_id = await publish(redis, event)
    read = await redis.xreadgroup(GROUP, "consumer-a", {STREAM: ">"}, count=1)
    assert read[0][1][0][0] == entry_id  # A has it, and dies without acknowledging

    handler = Recorder()
    worker = consumer(redis, handler, consumer="consumer-b")

    async def taken_over() -> bool:
        return len(handler.calls) == 1 and await pending_count(redis) == 0

    await run_until(worker, taken_over, "consumer B to handle A's entry")
    assert handler.calls[0][1] == event


async def test_an_entry_that_keeps_killing_its_consumers_is_parked_unhandled(
    redis: redis_async.Redis,
) -> None:
    """Three consumers took the entry and died in its handler (no exception
    ever reached their retry logic). The next one must not run it again."""
    await redis.xgroup_create(STREAM, GROUP, id="$", mkstream=True)
    entry_id = await publish(redis, Event(type="movie.created", data={"id": "m1"}))
    await redis.xreadgroup(GROUP, "dead-1", {STREAM: ">"}, count=1)
    for name in ("dead-2", "dead-3"):
        await redis.xclaim(STREAM, GROUP, name, min_idle_time=0, message_ids=[entry_id])
    handler = Recorder()
    worker = consumer(redis, handler)

    async def parked() -> bool:
        return await redis.xlen(DEAD_LETTER_STREAM) == 1

    await run_until(worker, parked, "the entry to be parked")
    assert handler.calls == []
    ((_, fields),) = await redis.xrange(DEAD_LETTER_STREAM)
    assert fields["reason"] == "gave up after 3 deliveries"
    assert await pending_count(redis) == 0


async def test_the_acknowledgement_comes_after_the_handler(redis: redis_async.Redis) -> None:
    release = asyncio.Event()
    started = asyncio.Event()

    async def slow(_event: Event) -> None:
        started.set()
        await release.wait()

    worker = consumer(redis, slow, backoff_base_s=30)
    await publish(redis, Event(type="movie.updated", data={}))
    task = asyncio.create_task(worker.run())
    try:
        await asyncio.wait_for(started.wait(), 5)
        assert await pending_count(redis) == 1  # in hand, not yet acknowledged
        release.set()

        async def acknowledged() -> bool:
            return await pending_count(redis) == 0

        await wait_for(acknowledged, "the acknowledgement")
    finally:
        worker.stop()
        release.set()
        await asyncio.wait_for(task, 5)
