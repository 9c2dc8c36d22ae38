"""The worker process: event listeners that need no HTTP API.

Two consumer groups on `reelgate:events`:

- "entitlements": the movie projection and its plan joins (`ProjectionListener`).
  The entitlements node runs the same group, so whichever of them is up
  shares the work; each event is handled by one of them.
- "notifications": the "new movie" e-mail (`MovieNotifier`). A new group
  starts at the end of the stream: news is for movies that become ready from
  now on, not for the whole history a fresh group would otherwise replay.

`create_worker(settings).create_app()` is a small aiohttp application (`/metrics`,
`/healthz`, `/readyz`) whose start-up and clean-up start and stop the
listeners, so `web.run_app` gives the worker its signal handling.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from redis.exceptions import RedisError

from entitlements import cache
from entitlements.events import ProjectionListener
from entitlements.notifications import MovieNotifier
from reelgate.config import Settings
from reelgate.db import Database
from reelgate.events import StreamConsumer, redis_client
from reelgate.http import READINESS_KEY, base_app
from reelgate.kv import KVError, KeyValue, open_kv
from reelgate.mail import Mailer, open_mailer
from reelgate.migrate import ensure_migrated

log = logging.getLogger("reelgate.worker")

PROJECTION_GROUP = "entitlements"
NOTIFICATIONS_GROUP = "notifications"
DEFAULT_PORT = 8009
STOP_TIMEOUT_S = 15.0


class WorkerConfigError(RuntimeError):
    """The worker cannot run with these settings."""


@dataclass
class ListenerResources:
    """What the listeners need of the entitlements node's `Resources`: the
    database and cache invalidation (no token keys, no password hashing)."""

    db: Database
    kv: KeyValue

    async def invalidate(self, **scope: Any) -> None:
        """After a committed change; if Redis is down, decisions expire by TTL."""
        try:
            await cache.invalidate(self.kv, **scope)
        except KVError as exc:
            log.error("could not publish an invalidation (%s): caches expire by TTL", exc)


@dataclass
class Worker:
    settings: Settings
    resources: ListenerResources
    consumers: list[StreamConsumer]
    tasks: list[asyncio.Task] = field(default_factory=list)
    stopped: bool = False

    async def start(self) -> None:
        """Check the database, create the consumer groups, start consuming.
        When this returns with Redis up, every group exists: events published
        from now on reach both listeners."""
        await ensure_migrated(self.resources.db.engine, "entitlements")
        for consumer in self.consumers:
            try:
                await consumer.ensure_group()
            except (RedisError, OSError) as exc:
                # Not fatal: each consumer keeps retrying until Redis is back,
                # and /readyz says 503 meanwhile.
                log.warning("redis unavailable at start (%s); the listeners will retry", exc)
                break
        for consumer in self.consumers:
            self.tasks.append(asyncio.create_task(consumer.run(), name=f"worker-{consumer.group}"))
        log.info("worker consuming as %s", ", ".join(c.consumer for c in self.consumers))

    async def stop(self) -> None:
        """Let each listener finish the event in hand, then release everything."""
        if self.stopped:
            return
        self.stopped = True
        for consumer in self.consumers:
            consumer.stop()
        if self.tasks:
            _, pending = await asyncio.wait(self.tasks, timeout=STOP_TIMEOUT_S)
            for task in pending:
                task.cancel()
            for task in self.tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            self.tasks.clear()
        clients = {id(consumer.client): consumer.client for consumer in self.consumers}
        for client in clients.values():
            await client.aclose()
        await self.resources.kv.close()
        await self.resources.db.dispose()

    async def consumers_running(self) -> None:
        """Readiness: every listener task is alive."""
        stopped = [task.get_name() for task in self.tasks if task.done()]
        if stopped or not self.tasks:
            raise RuntimeError(f"listeners not running: {stopped or 'not started'}")

    def create_app(self) -> web.Application:
        """The metrics application; its start-up and clean-up run the worker."""
        app = base_app("worker")
        app[READINESS_KEY].extend(
            [
                _named(self.resources.db.ping, "database"),
                _named(self.resources.kv.ping, "redis"),
                _named(self.consumers_running, "listeners"),
            ]
        )

        async def lifespan(_app: web.Application) -> AsyncIterator[None]:
            try:
                await self.start()
            except BaseException:
                await self.stop()
                raise
            yield
            await self.stop()

        app.cleanup_ctx.append(lifespan)
        return app


def create_worker(
    settings: Settings, *, mailer: Mailer | None = None, **consumer_options: Any
) -> Worker:
    """Assemble the worker. `consumer_options` go to every `StreamConsumer`
    (tests shorten `backoff_base_s`, `block_ms`...)."""
    if not settings.redis_url.strip():
        raise WorkerConfigError(
            "the worker consumes the Redis event stream: set REELGATE_REDIS_URL "
            "(e.g. redis://127.0.0.1:6379/0)"
        )
    # memory:// is the single-process demo's in-process stream and cache.
    if not settings.redis_url.startswith(("redis://", "rediss://", "unix://", "memory://")):
        raise WorkerConfigError("REELGATE_REDIS_URL must be a redis://host:port/db URL")
    resources = ListenerResources(
        db=Database(settings.database_url_for("entitlements")), kv=open_kv(settings.redis_url)
    )
    notifier = MovieNotifier(
        resources.db,
        mailer or open_mailer(settings),
        settings,
        invalidate=resources.invalidate,
    )
    client = redis_client(settings.redis_url)
    consumers = [
        StreamConsumer(
            client,
            PROJECTION_GROUP,
            ProjectionListener(resources).handle,  # type: ignore[arg-type]
            service="worker",
            **consumer_options,
        ),
        StreamConsumer(
            client,
            NOTIFICATIONS_GROUP,
            notifier.handle,
            service="worker",
            **{"start_id": "$", **consumer_options},
        ),
    ]
    return Worker(settings=settings, resources=resources, consumers=consumers)


def _named(check, name: str):  # type: ignore[no-untyped-def]
    async def probe() -> None:
        await check()

    probe.__name__ = name
    return probe
