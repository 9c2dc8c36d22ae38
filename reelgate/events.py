"""Domain events on the Redis stream `reelgate:events`, and consumer groups.

Envelope: `{id, type, occurred_at, data}`, stored as the JSON field `event` of
one stream entry. Delivery is at least once: a consumer acknowledges only
after its handler succeeded; failures are retried with exponential backoff by
re-claiming the pending entry, and after `max_attempts` deliveries the entry
is parked on the dead-letter stream. Entries left pending by a dead consumer
are re-claimed the same way, so a crash never loses an event.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as redis_async
from redis.exceptions import RedisError, ResponseError

from reelgate import kv, metrics
from reelgate.db import utcnow

log = logging.getLogger("reelgate.events")

STREAM = "reelgate:events"
DEAD_LETTER_STREAM = "reelgate:events:dead"

EVENT_TYPES = (
    "movie.created",
    "movie.updated",
    "movie.deleted",
    "movie.restored",
    "movie.media_ready",
    "subscription.changed",
    "user.deleted",
)


@dataclass(frozen=True)
class Event:
    type: str
    data: dict[str, Any]
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    occurred_at: str = field(default_factory=lambda: utcnow().isoformat())

    def to_json(self) -> str:
        return json.dumps(
            {"id": self.id, "type": self.type, "occurred_at": self.occurred_at, "data": self.data}
        )

    @classmethod
    def from_json(cls, raw: str) -> Event:
        body = json.loads(raw)
        return cls(
            type=str(body["type"]),
            data=dict(body["data"]),
            id=str(body["id"]),
            occurred_at=str(body["occurred_at"]),
        )


def redis_client(url: str) -> redis_async.Redis:
    """A client for the event stream; `memory://` is the demo's in-process stream."""
    if url == "memory://":
        from reelgate.memory_streams import shared_streams

        return shared_streams()  # type: ignore[return-value]
    return kv.connect(url, decode_responses=True, socket_timeout=5, socket_connect_timeout=2)


async def publish(client: redis_async.Redis, event: Event, *, service: str = "reelgate") -> str:
    entry_id = await client.xadd(STREAM, {"event": event.to_json()}, maxlen=1_000_000)
    metrics.EVENTS_PUBLISHED.labels(service, event.type).inc()
    return str(entry_id)


Handler = Callable[[Event], Awaitable[None]]


class StreamConsumer:
    """Runs one consumer of a consumer group until stopped."""

    def __init__(
        self,
        client: redis_async.Redis,
        group: str,
        handler: Handler,
        *,
        consumer: str | None = None,
        service: str = "reelgate",
        max_attempts: int = 5,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 30.0,
        block_ms: int = 1000,
        start_id: str = "0",
    ) -> None:
        self.client = client
        self.group = group
        self.handler = handler
        self.consumer = consumer or f"{group}-{uuid.uuid4().hex[:8]}"
        self.service = service
        self.max_attempts = max_attempts
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.block_ms = block_ms
        self.start_id = start_id
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()

    async def ensure_group(self) -> None:
        try:
            await self.client.xgroup_create(STREAM, self.group, id=self.start_id, mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def backoff_s(self, deliveries: int) -> float:
        return min(self.backoff_max_s, self.backoff_base_s * 2 ** max(0, deliveries - 1))

    async def run(self) -> None:
        """Consume until stop(); survives Redis outages by retrying."""
        while not self._stopping.is_set():
            try:
                await self.ensure_group()
                await self.run_once()
            except (RedisError, OSError) as exc:
                log.warning("consumer %s: redis unavailable (%s); retrying", self.group, exc)
                await self._sleep(1.0)

    async def _sleep(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)
        except TimeoutError:
            pass

    async def run_once(self) -> int:
        """One round: retry what is due, then read new entries. Returns entries handled."""
        handled = await self._retry_due()
        response = await self.client.xreadgroup(
            self.group, self.consumer, {STREAM: ">"}, count=50, block=self.block_ms
        )
        for _stream, entries in response or []:
            for entry_id, fields in entries:
                await self._deliver(entry_id, fields, deliveries=1)
                handled += 1
        return handled

    async def _retry_due(self) -> int:
        pending = await self.client.xpending_range(STREAM, self.group, min="-", max="+", count=100)
        handled = 0
        for item in pending:
            deliveries = int(item["times_delivered"])
            idle_ms = int(item["time_since_delivered"])
            if idle_ms < self.backoff_s(deliveries) * 1000:
                continue
            claimed = await self.client.xclaim(
                STREAM, self.group, self.consumer, min_idle_time=idle_ms, message_ids=[item["message_id"]]
            )
            for entry_id, fields in claimed:
                if fields is None:  # trimmed from the stream meanwhile (entry_id is None too)
                    await self.client.xack(STREAM, self.group, item["message_id"])
                    continue
                await self._deliver(entry_id, fields, deliveries=deliveries + 1)
                handled += 1
        return handled

    async def _deliver(self, entry_id: str, fields: dict[str, str], *, deliveries: int) -> None:
        raw = fields.get("event", "")
        try:
            event = Event.from_json(raw)
        except (ValueError, KeyError, TypeError):
            await self._dead_letter(entry_id, raw, "unparseable envelope", "invalid")
            return
        if deliveries > self.max_attempts:
            # Delivered that often without ever failing cleanly: the handler
            # took its consumer down each time (a crash, a kill). Do not feed
            # it to the next consumer.
            reason = f"gave up after {deliveries - 1} deliveries"
            await self._dead_letter(entry_id, raw, reason, event.type)
            return
        try:
            await self.handler(event)
        except Exception as exc:  # a listener bug must not stop the consumer
            if deliveries >= self.max_attempts:
                await self._dead_letter(entry_id, raw, repr(exc), event.type)
                return
            log.warning(
                "listener %s failed on %s (%s), delivery %d; will retry",
                self.group, event.type, type(exc).__name__, deliveries,
            )
            metrics.EVENTS_HANDLED.labels(self.service, self.group, event.type, "retry").inc()
            return
        await self.client.xack(STREAM, self.group, entry_id)
        metrics.EVENTS_HANDLED.labels(self.service, self.group, event.type, "ok").inc()

    async def _dead_letter(self, entry_id: str, raw: str, reason: str, event_type: str) -> None:
        log.error("parking %s from %s on the dead-letter stream: %s", entry_id, self.group, reason)
        # One transaction: a crash in between must neither lose the entry nor park it twice.
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.xadd(
                DEAD_LETTER_STREAM,
                {"event": raw, "group": self.group, "entry_id": entry_id, "reason": reason[:500]},
                maxlen=100_000,
            )
            pipe.xack(STREAM, self.group, entry_id)
            await pipe.execute()
        metrics.EVENTS_HANDLED.labels(self.service, self.group, event_type, "dead_letter").inc()
